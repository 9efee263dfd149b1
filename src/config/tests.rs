//! `load` end to end: all sources together, precedence, validation,
//! `--print-config`.

use super::testutil::TempDir;
use super::*;

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(OsString::from).collect()
}

fn env(list: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    list.iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect()
}

fn serve(cli: &[&str], vars: &[(&str, &str)]) -> Config {
    match load(args(cli), env(vars)) {
        Ok(Command::Serve(config)) => *config,
        Ok(other) => panic!("expected Serve, got {other:?}"),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn error(cli: &[&str], vars: &[(&str, &str)]) -> String {
    match load(args(cli), env(vars)) {
        Err(e) => e.to_string(),
        Ok(other) => panic!("expected an error, got {other:?}"),
    }
}

const APP: [&str; 4] = ["--module", "app", "--http", ":8000"];

fn with_app<'a>(more: &[&'a str]) -> Vec<&'a str> {
    APP.iter().copied().chain(more.iter().copied()).collect()
}

#[test]
fn minimal_config_uses_defaults() {
    let config = serve(&APP, &[]);
    assert_eq!(config.module.as_deref(), Some("app"));
    assert_eq!(config.http, [":8000"]);
    assert_eq!(config.processes, 1);
    assert_eq!(config.origins["processes"], Origin::Default);
    assert_eq!(config.origins["module"], Origin::Cli);
    assert!(config.notices.is_empty() && config.config_files.is_empty());
}

#[test]
fn precedence_default_ini_env_cli() {
    let dir = TempDir::new();
    let ini = dir.write("p.ini", "[uwsgi]\nthreads = 2\nprocesses = 2\nlisten = 2\n");
    let ini = ini.to_str().unwrap();

    // A scalar: each source overrides the one before.
    let config = serve(&with_app(&[]), &[]);
    assert_eq!(
        (config.threads, config.origins["threads"].clone()),
        (1, Origin::Default)
    );

    let config = serve(&with_app(&["--ini", ini]), &[]);
    assert_eq!(config.threads, 2);
    assert_eq!(
        config.origins["threads"],
        Origin::File {
            path: ini.into(),
            line: 2
        }
    );

    let vars = [("CAPATAZ_THREADS", "3"), ("CAPATAZ_PROCESSES", "3")];
    let config = serve(&with_app(&["--ini", ini]), &vars);
    assert_eq!((config.threads, config.processes, config.listen), (3, 3, 2));
    assert_eq!(
        config.origins["threads"],
        Origin::Env {
            var: "CAPATAZ_THREADS".into()
        }
    );

    // The CLI wins even when it comes before --ini on the command line.
    let config = serve(&with_app(&["--threads", "4", "--ini", ini]), &vars);
    assert_eq!((config.threads, config.processes, config.listen), (4, 3, 2));
    assert_eq!(config.origins["threads"], Origin::Cli);
}

#[test]
fn repeatable_options_accumulate_in_source_order() {
    let dir = TempDir::new();
    let ini = dir.write("r.ini", "[uwsgi]\npythonpath = ini1\npythonpath = ini2\n");
    let config = serve(
        &with_app(&[
            "--pythonpath",
            "cli1",
            "--ini",
            ini.to_str().unwrap(),
            "--pp",
            "cli2",
        ]),
        &[("CAPATAZ_PYTHONPATH", "env1")],
    );
    let expected: Vec<PathBuf> = ["ini1", "ini2", "env1", "cli1", "cli2"]
        .iter()
        .map(PathBuf::from)
        .collect();
    assert_eq!(config.pythonpath, expected);
    assert_eq!(config.origins["pythonpath"], Origin::Cli);
    let config = serve(
        &with_app(&["--http", ":9000"]),
        &[("CAPATAZ_HTTP", ":7000")],
    );
    assert_eq!(config.http, [":7000", ":8000", ":9000"]);
}

#[test]
fn aliases_in_every_source() {
    let dir = TempDir::new();
    let ini = dir.write("a.ini", "[uwsgi]\nworkers = 2\nvenv = /v\nfile = w.py\n");
    let ini = ini.to_str().unwrap();
    let config = serve(&["--http", ":1", "--ini", ini], &[]);
    assert_eq!(config.processes, 2);
    assert_eq!(config.virtualenv, Some("/v".into()));
    assert_eq!(config.wsgi_file, Some("w.py".into()));
    let config = serve(&["--http", ":1", "--ini", ini], &[("CAPATAZ_WORKERS", "3")]);
    assert_eq!(config.processes, 3);
    let config = serve(
        &[
            "--http",
            ":1",
            "--ini",
            ini,
            "--workers=4",
            "--home",
            "/h",
            "--keep-alive",
            "0",
        ],
        &[("CAPATAZ_WORKERS", "3"), ("CAPATAZ_PYHOME", "/e")],
    );
    assert_eq!(config.processes, 4);
    assert_eq!(config.virtualenv, Some("/h".into()));
    assert_eq!(config.keepalive_timeout, 0);
    // Origins are keyed by canonical name.
    assert_eq!(config.origins["processes"], Origin::Cli);
    assert!(!config.origins.contains_key("workers"));
}

#[test]
fn ini_from_environment_and_positional() {
    let dir = TempDir::new();
    let a = dir.write("a.ini", "[uwsgi]\nmodule = a\nhttp = :1\n");
    let b = dir.write("b.ini", "[capataz]\nmodule = b\n");
    let config = serve(
        &[b.to_str().unwrap()],
        &[("CAPATAZ_INI", a.to_str().unwrap())],
    );
    assert_eq!(config.module.as_deref(), Some("b"));
    assert_eq!(config.config_files, [a.clone(), b.clone()]);
}

#[test]
fn booleans_everywhere() {
    let dir = TempDir::new();
    for spelling in ["on", "yes", "true", "1", "TRUE"] {
        let ini = dir.write("b.ini", &format!("[uwsgi]\ndisable-logging = {spelling}\n"));
        assert!(serve(&with_app(&["--ini", ini.to_str().unwrap()]), &[]).disable_logging);
        assert!(serve(&with_app(&[]), &[("CAPATAZ_DISABLE_LOGGING", spelling)]).disable_logging);
        let flag = format!("--disable-logging={spelling}");
        assert!(serve(&with_app(&[&flag]), &[]).disable_logging);
    }
    for spelling in ["off", "no", "false", "0"] {
        let ini = dir.write("b.ini", &format!("[uwsgi]\ndisable-logging = {spelling}\n"));
        assert!(!serve(&with_app(&["--ini", ini.to_str().unwrap()]), &[]).disable_logging);
    }
    let bare = dir.write("bare.ini", "[uwsgi]\ndisable-logging\n");
    let config = serve(&with_app(&["--ini", bare.to_str().unwrap()]), &[]);
    assert!(config.disable_logging);
    // CLI overrides the file.
    let config = serve(
        &with_app(&["--ini", bare.to_str().unwrap(), "--disable-logging=off"]),
        &[],
    );
    assert!(!config.disable_logging);
}

#[test]
fn invalid_values_name_the_source() {
    let dir = TempDir::new();
    let ini = dir.write("deploy.ini", "[uwsgi]\nmodule = app\n\nprocesses = four\n");
    assert_eq!(
        error(&["--ini", ini.to_str().unwrap()], &[]),
        format!(
            "{}:4: option 'processes': invalid value 'four': expected a whole number",
            ini.display()
        )
    );
    assert_eq!(
        error(&with_app(&["--workers", "0"]), &[]),
        "command line: option '--workers': invalid value '0': must be at least 1"
    );
    assert_eq!(
        error(&APP, &[("CAPATAZ_THREADS", "x")]),
        "environment variable CAPATAZ_THREADS: option 'threads': invalid value 'x': \
         expected a whole number"
    );
    assert_eq!(
        error(&with_app(&["--http", "8000"]), &[]),
        "command line: option '--http': invalid value '8000': a bare number is ambiguous: \
         write ':8000' for TCP or './8000' for a unix socket"
    );
}

#[test]
fn unknown_options_in_every_source() {
    let dir = TempDir::new();
    let ini = dir.write("deploy.ini", "[uwsgi]\nprocesess = 4\n");
    assert_eq!(
        error(&["--ini", ini.to_str().unwrap()], &[]),
        format!(
            "{}:2: unknown option 'procesess' (did you mean 'processes'?) (a key that is not \
             an option is a placeholder only when a value uses it as %(procesess))",
            ini.display()
        )
    );
    assert_eq!(
        error(&["--thread", "2"], &[]),
        "command line: unknown option '--thread' (did you mean '--threads'?)"
    );
    assert_eq!(
        error(&APP, &[("CAPATAZ_PROCESES", "2")]),
        "environment: unknown variable CAPATAZ_PROCESES (did you mean CAPATAZ_PROCESSES?)"
    );
}

#[test]
fn no_effect_options_give_one_notice_each() {
    let dir = TempDir::new();
    let ini = dir.write("c.ini", "[uwsgi]\nmaster = true\nenable-threads\nmaster\n");
    let config = serve(
        &with_app(&[
            "--ini",
            ini.to_str().unwrap(),
            "--master",
            "--lazy-apps=false",
        ]),
        &[("CAPATAZ_THUNDER_LOCK", "1")],
    );
    assert_eq!(
        config.notices,
        [
            "option 'master' has no effect in capataz",
            "option 'enable-threads' has no effect in capataz",
            "option 'thunder-lock' has no effect in capataz",
            "option 'lazy-apps' has no effect in capataz",
        ]
    );
    assert_eq!(
        error(&with_app(&["--master=maybe"]), &[]),
        "command line: option '--master': invalid value 'maybe': \
         expected a boolean (on/off, yes/no, true/false, 1/0)"
    );
}

#[test]
fn not_yet_options_are_rejected_everywhere() {
    let dir = TempDir::new();
    let ini = dir.write("n.ini", "[uwsgi]\noffload-threads = 2\n");
    assert_eq!(
        error(&["--ini", ini.to_str().unwrap()], &[]),
        format!(
            "{}:2: option 'offload-threads' is not supported yet",
            ini.display()
        )
    );
    assert_eq!(
        error(&with_app(&["--offload-threads", "2"]), &[]),
        "command line: option '--offload-threads' is not supported yet"
    );
    assert_eq!(
        error(&APP, &[("CAPATAZ_MOUNT", "/app=app.py")]),
        "environment variable CAPATAZ_MOUNT: option 'mount' is not supported yet"
    );
}

#[test]
fn validation() {
    assert_eq!(
        error(&["--http", ":1"], &[]),
        "no app: set `module` or `wsgi-file`"
    );
    assert_eq!(
        error(&["--module", "app"], &[]),
        "no listener: set `http`, `http-socket` or `socket`"
    );
    let config = serve(&["--wsgi-file", "w.py", "--uwsgi-socket", ":3031"], &[]);
    assert_eq!(config.socket, [":3031"]);
    assert_eq!(
        error(
            &with_app(&["--wsgi-file", "w.py"]),
            &[("CAPATAZ_MODULE", "x")]
        ),
        "options 'module' (command line) and 'wsgi-file' (command line) are both set: \
         use only one"
    );
    let config = serve(
        &["--wsgi-file", "w.py", "--http-socket", "/run/s.sock"],
        &[],
    );
    assert_eq!(config.http_socket, ["/run/s.sock"]);
    let mut config = Config {
        module: Some("app".into()),
        http: vec![":1".into()],
        ..Config::default()
    };
    assert!(config.validate().is_ok());
    config.threads = 0;
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        "option 'threads': must be at least 1"
    );
    config.threads = 1;
    config.processes = 0;
    assert_eq!(
        config.validate().unwrap_err().to_string(),
        "option 'processes': must be at least 1"
    );
}

#[test]
fn missing_ini_file_is_named() {
    let dir = TempDir::new();
    let path = dir.path().join("missing.ini");
    let message = error(&["--ini", path.to_str().unwrap()], &[]);
    assert!(
        message.starts_with(&format!("{}: cannot read config file:", path.display())),
        "{message}"
    );
}

#[test]
fn help_version_and_print_config() {
    assert!(
        matches!(load(args(&["--help"]), vec![]), Ok(Command::Help(text)) if text.contains("--processes"))
    );
    assert!(matches!(
        load(args(&["--version"]), vec![]),
        Ok(Command::Version)
    ));
    // Help never fails, even with a broken environment.
    assert!(matches!(
        load(args(&["-h"]), env(&[("CAPATAZ_NOPE", "1")])),
        Ok(Command::Help(_))
    ));

    let dir = TempDir::new();
    let ini = dir.write("show.ini", "[uwsgi]\nhttp = :8000\nmaster\n");
    let text = match load(
        args(&[
            "--ini",
            ini.to_str().unwrap(),
            "--module",
            "app",
            "--print-config",
        ]),
        env(&[("CAPATAZ_HTTP", ":9000"), ("CAPATAZ_THREADS", "2")]),
    ) {
        Ok(Command::PrintConfig(text)) => text,
        other => panic!("expected PrintConfig, got {other:?}"),
    };
    let shown = ini.display();
    for line in [
        format!("# read {shown}"),
        format!("http = :8000  # {shown}:2"),
        "http = :9000  # environment CAPATAZ_HTTP".to_string(),
        "module = app  # command line".to_string(),
        "threads = 2  # environment CAPATAZ_THREADS".to_string(),
        "processes = 1  # default".to_string(),
        "# wsgi-file: not set".to_string(),
        "# env: not set".to_string(),
        format!("master = true  # {shown}:3 (no effect in capataz)"),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(text.lines().any(|l| l == "harakiri = 0  # default"));
    assert!(text.lines().any(|l| l == "# chmod-socket: not set"));
    assert!(text.lines().any(|l| l == "# static-map: not set"));
    // Options not supported yet are not shown.
    assert!(!text.contains("offload-threads"));
}

#[test]
fn config_round_trips_through_json() {
    let dir = TempDir::new();
    let ini = dir.write("j.ini", "[uwsgi]\nenv = A=1\nmaster\n");
    let config = serve(&with_app(&["--ini", ini.to_str().unwrap()]), &[]);
    let json = serde_json::to_string(&config).unwrap();
    let back: Config = serde_json::from_str(&json).unwrap();
    assert_eq!(back, config);
}

#[test]
fn chmod_socket_in_every_source() {
    let dir = TempDir::new();
    let bare = dir.write("bare.ini", "[uwsgi]\nchmod-socket\n");
    let bare = bare.to_str().unwrap();
    assert_eq!(
        serve(&with_app(&["--ini", bare]), &[]).chmod_socket,
        Some(0o666)
    );
    assert_eq!(
        serve(&with_app(&["--chmod-socket"]), &[]).chmod_socket,
        Some(0o666)
    );
    // Bare, followed by another option.
    let config = serve(&["--chmod-socket", "--module", "app", "--http", ":1"], &[]);
    assert_eq!(config.chmod_socket, Some(0o666));
    assert_eq!(
        serve(&with_app(&["--chmod-socket", "660"]), &[]).chmod_socket,
        Some(0o660)
    );
    assert_eq!(
        serve(
            &with_app(&["--ini", bare]),
            &[("CAPATAZ_CHMOD_SOCKET", "600")]
        )
        .chmod_socket,
        Some(0o600)
    );
    assert_eq!(serve(&APP, &[]).chmod_socket, None);
    // The environment needs a value.
    assert_eq!(
        error(&APP, &[("CAPATAZ_CHMOD_SOCKET", "")]),
        "environment variable CAPATAZ_CHMOD_SOCKET: option 'chmod-socket': invalid value '': \
         expected 3 octal digits, like 660"
    );
    assert_eq!(
        error(&with_app(&["--chmod-socket", "0660"]), &[]),
        "command line: option '--chmod-socket': invalid value '0660': \
         expected 3 octal digits, like 660"
    );
}

#[test]
fn supervision_and_static_options_end_to_end() {
    let dir = TempDir::new();
    let ini = dir.write(
        "full.ini",
        "[uwsgi]\n\
         processes = 4\n\
         cheaper = 2\n\
         harakiri = 30\n\
         max-requests = 1000\n\
         max-requests-jitter = 50\n\
         reload-on-rss = 256\n\
         touch-reload = %dreload\n\
         pidfile = /run/app.pid\n\
         master-fifo = /run/app.fifo\n\
         vacuum\n\
         uid = www-data\n\
         gid = 33\n\
         no-root-workers = true\n\
         static-map = /static/=%dstatic\n\
         static-expires = \\.(css|js)$ 86400\n\
         static-index = index.html\n\
         static-gzip\n",
    );
    let config = serve(&with_app(&["--ini", ini.to_str().unwrap()]), &[]);
    // `%d`: the file's absolute directory, with a trailing slash.
    let base = format!("{}/", std::path::absolute(dir.path()).unwrap().display());
    assert_eq!((config.processes, config.cheaper), (4, 2));
    assert_eq!(config.harakiri, 30);
    assert_eq!((config.max_requests, config.max_requests_delta), (1000, 50));
    assert_eq!(config.reload_on_rss, 256);
    assert_eq!(
        config.touch_reload,
        [PathBuf::from(format!("{base}reload"))]
    );
    assert_eq!(config.pidfile, Some("/run/app.pid".into()));
    assert_eq!(config.master_fifo, Some("/run/app.fifo".into()));
    assert!(config.vacuum && config.no_root_workers && config.static_gzip);
    assert_eq!(
        (config.uid.as_deref(), config.gid.as_deref()),
        (Some("www-data"), Some("33"))
    );
    assert_eq!(
        config.static_map,
        [(
            "/static".to_string(),
            PathBuf::from(format!("{base}static"))
        )]
    );
    assert_eq!(config.static_expires, [(r"\.(css|js)$".to_string(), 86400)]);
    assert_eq!(config.static_index, ["index.html"]);
    assert_eq!(
        config.origins["max-requests-delta"],
        Origin::File {
            path: ini.clone(),
            line: 6
        }
    );
    let json = serde_json::to_string(&config).unwrap();
    assert_eq!(serde_json::from_str::<Config>(&json).unwrap(), config);
}

#[test]
fn cheaper_must_be_lower_than_processes() {
    assert_eq!(serve(&with_app(&["--cheaper", "0"]), &[]).cheaper, 0);
    let config = serve(&with_app(&["--processes", "4", "--cheaper", "3"]), &[]);
    assert_eq!(config.cheaper, 3);
    assert_eq!(
        error(&with_app(&["--processes", "4", "--cheaper", "4"]), &[]),
        "option 'cheaper' (command line): cheaper must be lower than processes \
         (cheaper = 4, processes = 4 (command line))"
    );
    assert_eq!(
        error(&with_app(&[]), &[("CAPATAZ_CHEAPER", "2")]),
        "option 'cheaper' (environment CAPATAZ_CHEAPER): cheaper must be lower than \
         processes (cheaper = 2, processes = 1 (default))"
    );
}

#[test]
fn plugins_python_has_no_effect_and_others_are_refused() {
    let dir = TempDir::new();
    let ini = dir.write(
        "deploy.ini",
        "[uwsgi]\nplugins = python3\nplugin = python311,python\nplugins-dir = /usr/lib/uwsgi\n\
         module = app\nhttp = :8000\n",
    );
    let config = serve(&["--ini", ini.to_str().unwrap()], &[]);
    assert!(config
        .notices
        .contains(&"option 'plugins' has no effect in capataz".to_string()));
    let config = serve(&with_app(&["--plugins", "python3"]), &[]);
    assert_eq!(config.notices.len(), 1);

    let ini = dir.write("php.ini", "[uwsgi]\nmodule = app\nplugins = php\n");
    let e = error(&["--ini", ini.to_str().unwrap()], &[]);
    assert!(
        e.starts_with(&format!(
            "{}:3: option 'plugins': invalid value 'php'",
            ini.display()
        )),
        "{e}"
    );
    assert!(e.contains("capataz serves Python WSGI apps only"), "{e}");
}

#[test]
fn uwsgi_options_from_real_inis_are_known() {
    let dir = TempDir::new();
    for option in [
        "max-worker-lifetime",
        "reload-on-exception",
        "add-header",
        "py-autoreload",
        "socket-timeout",
        "http-timeout",
        "log-x-forwarded-for",
        "manage-script-name",
        "cheaper-algo",
        "cheaper-initial",
        "cheaper-step",
        "attach-daemon",
        "static-expires-uri",
    ] {
        let ini = dir.write(
            "deploy.ini",
            &format!("[uwsgi]\nmodule = app\n{option} = 1\n"),
        );
        assert_eq!(
            error(&["--ini", ini.to_str().unwrap()], &[]),
            format!(
                "{}:3: option '{option}' is not supported yet",
                ini.display()
            )
        );
    }
    let ini = dir.write(
        "deploy.ini",
        "[uwsgi]\nmodule = app\nhttp = :8000\nharakiri-verbose = true\nauto-procname = true\n\
         procname-prefix-spaced = myapp\nreload-mercy = 7\n",
    );
    let config = serve(&["--ini", ini.to_str().unwrap()], &[]);
    assert_eq!(config.worker_reload_mercy, 7);
    assert_eq!(config.notices.len(), 3, "{:?}", config.notices);
}

#[test]
fn chdir_must_be_an_existing_directory() {
    let dir = TempDir::new();
    let missing = dir.path().join("missing");
    let ini = dir.write(
        "deploy.ini",
        &format!(
            "[uwsgi]\nmodule = app\nhttp = :8000\nchdir = {}\n",
            missing.display()
        ),
    );
    let e = error(&["--ini", ini.to_str().unwrap()], &[]);
    assert!(
        e.starts_with(&format!(
            "{}:4: option 'chdir': invalid value '{}': No such file or directory",
            ini.display(),
            missing.display()
        )),
        "{e}"
    );
    let e = error(&with_app(&["--chdir", ini.to_str().unwrap()]), &[]);
    assert!(e.starts_with("command line: option 'chdir'"), "{e}");
    assert!(e.ends_with("not a directory"), "{e}");
    let config = serve(&with_app(&["--chdir", dir.path().to_str().unwrap()]), &[]);
    assert_eq!(config.chdir.as_deref(), Some(dir.path()));
}

#[test]
fn ctl_loads_without_the_serving_checks_but_keeps_the_file_checks() {
    let dir = TempDir::new();
    // Relative paths resolve against the master's directory, not ctl's; an
    // app and a listener are the master's business.
    let ini = dir.write(
        "uwsgi.ini",
        "[uwsgi]\nchdir = no/such/dir\nenv-file = no-such.env\ncontrol-socket = /run/x.ctl\n",
    );
    let ini_arg = ini.to_str().unwrap();
    assert!(error(&["--ini", ini_arg], &[]).contains("option 'env-file'"));
    match load_for_ctl(args(&["--ini", ini_arg]), Vec::new()) {
        Ok(Command::Serve(config)) => {
            assert_eq!(config.control_socket, Some(PathBuf::from("/run/x.ctl")));
        }
        other => panic!("{other:?}"),
    }
    // A mistake in the file is still reported with its file, line and option.
    for (line, option) in [("proceses = 2", "proceses"), ("threads = lots", "threads")] {
        let bad = dir.write("bad.ini", &format!("[uwsgi]\nmodule = app\n{line}\n"));
        let e = load_for_ctl(args(&["--ini", bad.to_str().unwrap()]), Vec::new())
            .expect_err(line)
            .to_string();
        assert!(e.starts_with(&format!("{}:3: ", bad.display())), "{e}");
        assert!(e.contains(option), "{e}");
    }
}

#[test]
fn chown_socket_takes_user_or_user_and_group() {
    let config = serve(&with_app(&["--chown-socket", "www-data:www-data"]), &[]);
    assert_eq!(config.chown_socket.as_deref(), Some("www-data:www-data"));
    let config = serve(&with_app(&["--chown-socket", "1000"]), &[]);
    assert_eq!(config.chown_socket.as_deref(), Some("1000"));
    for bad in ["", ":grp", "user:", "a b"] {
        let e = error(&with_app(&["--chown-socket", bad]), &[]);
        assert!(
            e.starts_with("command line: option '--chown-socket'"),
            "{bad}: {e}"
        );
    }
}
