use super::super::testutil::TempDir;
use super::*;

/// Loads `request` and returns (option, value) pairs, or the error message.
fn load_with(request: &str, env: &[(&str, &str)]) -> Result<Vec<(String, String)>, String> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut loader = Loader::new(&env, []);
    loader
        .load(request, &Location::CommandLine)
        .map_err(|e| e.to_string())?;
    let (settings, _) = loader.finish().map_err(|e| e.to_string())?;
    Ok(settings
        .into_iter()
        .map(|s| (s.spec.name.to_string(), s.value))
        .collect())
}

fn load(path: &Path) -> Result<Vec<(String, String)>, String> {
    load_with(path.to_str().unwrap(), &[])
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn sections_comments_bare_keys_and_repeats() {
    let dir = TempDir::new();
    let path = dir.write(
        "app.ini",
        "; a comment\n\
         # another\n\
         stray = ignored before any section\n\
         [uwsgi]\n\
         http = :8000\n\
         \n\
         http = :8001\n\
         master\n\
         processes=2\n\
         [program:celery]\n\
         command = celery worker\n\
         bogus-option = fine here\n\
         [capataz]\n\
         \x20 workers = 4  \n\
         module = app:application # not a comment\n",
    );
    assert_eq!(
        load(&path).unwrap(),
        pairs(&[
            ("http", ":8000"),
            ("http", ":8001"),
            ("master", "true"),
            ("processes", "2"),
            ("processes", "4"),
            ("module", "app:application # not a comment"),
        ])
    );
}

#[test]
fn capataz_section_is_read_after_uwsgi_wherever_it_is() {
    let dir = TempDir::new();
    let path = dir.write("a.ini", "[capataz]\nthreads = 8\n[uwsgi]\nthreads = 2\n");
    assert_eq!(
        load(&path).unwrap(),
        pairs(&[("threads", "2"), ("threads", "8")])
    );
    let only = dir.write("b.ini", "[capataz]\nthreads = 3\n");
    assert_eq!(load(&only).unwrap(), pairs(&[("threads", "3")]));
}

#[test]
fn named_section() {
    let dir = TempDir::new();
    let path = dir.write(
        "multi.ini",
        "[uwsgi]\nthreads = 1\n[staging]\nthreads = 2\n[prod]\nthreads = 3\n[prod]\nprocesses = 9\n",
    );
    let request = format!("{}:prod", path.display());
    assert_eq!(
        load_with(&request, &[]).unwrap(),
        pairs(&[("threads", "3"), ("processes", "9")])
    );
    let missing = format!("{}:nope", path.display());
    assert_eq!(
        load_with(&missing, &[]).unwrap_err(),
        format!("{}: no [nope] section", path.display())
    );
    let empty = dir.write("empty.ini", "[program:x]\ncommand = y\n");
    assert_eq!(
        load(&empty).unwrap_err(),
        format!("{}: no [uwsgi] or [capataz] section", empty.display())
    );
}

#[test]
fn a_file_name_containing_a_colon_is_taken_whole() {
    let dir = TempDir::new();
    let path = dir.write("odd:name.ini", "[uwsgi]\nthreads = 5\n");
    assert_eq!(load(&path).unwrap(), pairs(&[("threads", "5")]));
}

#[test]
fn missing_file() {
    let dir = TempDir::new();
    let path = dir.path().join("nope.ini");
    let message = load(&path).unwrap_err();
    assert!(
        message.starts_with(&format!("{}: cannot read config file: ", path.display())),
        "{message}"
    );
}

#[test]
fn includes_are_relative_to_the_including_file() {
    let dir = TempDir::new();
    dir.write(
        "conf/base.ini",
        "[uwsgi]\nthreads = 2\nini = more/extra.ini:extra\n",
    );
    dir.write("conf/more/extra.ini", "[extra]\nprocesses = 3\n");
    let main = dir.write(
        "main.ini",
        "[uwsgi]\nhttp = :1\nini = conf/base.ini\nhttp = :2\n",
    );
    assert_eq!(
        load(&main).unwrap(),
        pairs(&[
            ("http", ":1"),
            ("threads", "2"),
            ("processes", "3"),
            ("http", ":2"),
        ])
    );
    let env = HashMap::new();
    let mut loader = Loader::new(&env, []);
    loader
        .load(main.to_str().unwrap(), &Location::CommandLine)
        .unwrap();
    let (settings, files) = loader.finish().unwrap();
    assert_eq!(files.len(), 3);
    assert!(files.iter().all(|f| f.is_absolute()));
    assert_eq!(
        settings[2].origin,
        Origin::File {
            path: dir.path().join("conf/more/extra.ini"),
            line: 2
        }
    );
}

#[test]
fn include_cycle_is_an_error() {
    let dir = TempDir::new();
    let a = dir.write("a.ini", "[uwsgi]\nthreads = 1\nini = b.ini\n");
    let b = dir.write("b.ini", "[uwsgi]\n\nini = a.ini\n");
    assert_eq!(
        load(&a).unwrap_err(),
        format!(
            "{}:3: include cycle: {} -> {} -> {}",
            b.display(),
            a.display(),
            b.display(),
            a.display()
        )
    );
    let own = dir.write("self.ini", "[uwsgi]\nini = %d%n.ini\n");
    assert!(load(&own).unwrap_err().contains("include cycle"));
    // The same file twice, but not inside itself, is fine.
    dir.write("common.ini", "[uwsgi]\nthreads = 4\n");
    let twice = dir.write("twice.ini", "[uwsgi]\nini = common.ini\nini = common.ini\n");
    assert_eq!(
        load(&twice).unwrap(),
        pairs(&[("threads", "4"), ("threads", "4")])
    );
}

#[test]
fn missing_include_names_the_line() {
    let dir = TempDir::new();
    let main = dir.write("main.ini", "[uwsgi]\nini = gone.ini\n");
    let message = load(&main).unwrap_err();
    let expected = format!(
        "{}:2: cannot read included file '{}':",
        main.display(),
        dir.path().join("gone.ini").display()
    );
    assert!(message.starts_with(&expected), "{message}");
}

#[test]
fn every_expansion() {
    let dir = TempDir::new();
    let path = dir.write(
        "site.ini",
        "[uwsgi]\n\
         chdir = %dsrc\n\
         set-placeholder = base=/srv/app\n\
         pythonpath = %(base)/lib\n\
         pythonpath = second\n\
         env = FIRST_PP=%(pp)\n\
         env = CHDIR=%(chdir)\n\
         env = NAME=%n\n\
         env = HOME_DIR=$(HOME)/x\n\
         env = PERCENT=100%%\n\
         env = DATE=%%Y-%%m\n\
         env = DEFAULT=%(callable)\n\
         env = DOLLAR=$5 and $ alone\n\
         env = LITERAL=%%(chdir)\n",
    );
    let dir_with_slash = format!("{}/", dir.path().display());
    let got = load_with(path.to_str().unwrap(), &[("HOME", "/home/u")]).unwrap();
    assert_eq!(
        got,
        pairs(&[
            ("chdir", &format!("{dir_with_slash}src")),
            ("set-placeholder", "base=/srv/app"),
            ("pythonpath", "/srv/app/lib"),
            ("pythonpath", "second"),
            ("env", "FIRST_PP=/srv/app/lib"),
            ("env", &format!("CHDIR={dir_with_slash}src")),
            ("env", "NAME=site"),
            ("env", "HOME_DIR=/home/u/x"),
            ("env", "PERCENT=100%"),
            ("env", "DATE=%Y-%m"),
            ("env", "DEFAULT=application"),
            ("env", "DOLLAR=$5 and $ alone"),
            ("env", "LITERAL=%(chdir)"),
        ])
    );
}

#[test]
fn expansion_uses_the_first_definition_across_files() {
    let dir = TempDir::new();
    dir.write("first.ini", "[uwsgi]\nthreads = 2\n");
    let main = dir.write(
        "main.ini",
        "[uwsgi]\nini = first.ini\nthreads = 3\nenv = T=%(threads)\n",
    );
    assert_eq!(
        load(&main).unwrap()[2],
        ("env".to_string(), "T=2".to_string())
    );
}

#[test]
fn placeholders_from_other_sources() {
    let dir = TempDir::new();
    let path = dir.write("p.ini", "[uwsgi]\nchdir = %(root)/app\n");
    let env = HashMap::new();
    let seed = Setting {
        spec: match lookup("set-ph") {
            Lookup::Found(spec) => spec,
            _ => unreachable!(),
        },
        value: "root=/opt".into(),
        origin: Origin::Cli,
        written: "--set-ph".into(),
    };
    let mut loader = Loader::new(&env, [&seed]);
    loader
        .load(path.to_str().unwrap(), &Location::CommandLine)
        .unwrap();
    assert_eq!(loader.finish().unwrap().0[0].value, "/opt/app");
}

#[test]
fn expansion_errors_name_the_line() {
    let dir = TempDir::new();
    let cases = [
        (
            "env = D=%Y\n",
            "unknown expansion '%Y' (write '%%' for a literal '%')",
        ),
        (
            "env = A=50%\n",
            "'%' at the end of the value (write '%%' for a literal '%')",
        ),
        ("env = A=%(chdir\n", "unterminated '%(' (missing ')')"),
        ("env = A=$(HOME\n", "unterminated '$(' (missing ')')"),
        (
            "env = A=$(NOPE)\n",
            "environment variable 'NOPE' is not set (in '$(NOPE)')",
        ),
        (
            "env = A=%(module)\n",
            "%(module): option 'module' has no value yet (set it on an earlier line)",
        ),
        (
            "env = A=%(base)\n",
            "%(base): no option or placeholder named 'base'",
        ),
    ];
    for (line, message) in cases {
        let path = dir.write("bad.ini", &format!("[uwsgi]\nthreads = 1\n{line}"));
        assert_eq!(
            load(&path).unwrap_err(),
            format!("{}:3: {message}", path.display())
        );
    }
}

#[test]
fn option_errors_name_file_and_line() {
    let dir = TempDir::new();
    let cases = [
        (
            "procesess = 4",
            "unknown option 'procesess' (did you mean 'processes'?) (a key that is not an \
             option is a placeholder only when a value uses it as %(procesess))",
        ),
        (
            "zzzzzz = 1",
            "unknown option 'zzzzzz' (a key that is not an option is a placeholder only when \
             a value uses it as %(zzzzzz))",
        ),
        (
            "offload-threads = 2",
            "option 'offload-threads' is not supported yet",
        ),
        ("harakiri", "option 'harakiri' needs a value"),
        ("processes", "option 'processes' needs a value"),
        ("= 4", "missing option name before '='"),
        ("[uwsgi", "malformed section header '[uwsgi'"),
    ];
    for (line, message) in cases {
        let path = dir.write("deploy.ini", &format!("[uwsgi]\n\n{line}\n"));
        assert_eq!(
            load(&path).unwrap_err(),
            format!("{}:3: {message}", path.display())
        );
    }
}

#[test]
fn not_utf8() {
    let dir = TempDir::new();
    let path = dir.path().join("latin1.ini");
    std::fs::write(&path, b"[uwsgi]\nenv = A=\xe9\n").unwrap();
    assert_eq!(
        load(&path).unwrap_err(),
        format!("{}: not valid UTF-8", path.display())
    );
}

#[test]
fn parse_sections_keeps_other_sections() {
    let sections =
        parse_sections("[program:celery]\ncommand = celery -A x worker\nautorestart\n").unwrap();
    assert_eq!(
        sections,
        [IniSection {
            name: "program:celery".into(),
            line: 1,
            entries: vec![
                IniEntry {
                    line: 2,
                    key: "command".into(),
                    value: Some("celery -A x worker".into())
                },
                IniEntry {
                    line: 3,
                    key: "autorestart".into(),
                    value: None
                },
            ],
        }]
    );
}

#[test]
fn bare_chmod_socket_means_666() {
    let dir = TempDir::new();
    let path = dir.write(
        "sock.ini",
        "[uwsgi]\nchmod-socket\nchmod-socket = 660\nvacuum\n",
    );
    assert_eq!(
        load(&path).unwrap(),
        pairs(&[
            ("chmod-socket", "666"),
            ("chmod-socket", "660"),
            ("vacuum", "true"),
        ])
    );
}

#[test]
fn any_key_used_as_a_placeholder_is_one() {
    // The DigitalOcean tutorial's shape: uWSGI lets any key be a placeholder.
    let dir = TempDir::new();
    let path = dir.write(
        "app.ini",
        "[uwsgi]\nproject = djproject\nbase = /tmp/x\n\
         chdir = %(base)/%(project)\nmodule = %(project).wsgi:application\n",
    );
    assert_eq!(
        load(&path).unwrap(),
        pairs(&[
            ("chdir", "/tmp/x/djproject"),
            ("module", "djproject.wsgi:application")
        ])
    );
    // Defined in [uwsgi], used in [capataz]; a placeholder may use another.
    let path = dir.write(
        "two.ini",
        "[uwsgi]\nroot = /srv\nsite = %(root)/site\n[capataz]\nchdir = %(site)\n",
    );
    assert_eq!(load(&path).unwrap(), pairs(&[("chdir", "/srv/site")]));
}

#[test]
fn an_unused_unknown_key_is_still_a_typo() {
    let dir = TempDir::new();
    // `threds` is never used as %(threds), so it is a typo, reported at its
    // own line even though a placeholder on another line is fine.
    let path = dir.write(
        "app.ini",
        "[uwsgi]\nproject = p\nthreds = 2\nmodule = %(project)\nenv = A=%%(threds)\n",
    );
    let e = load(&path).unwrap_err();
    assert!(
        e.starts_with(&format!(
            "{}:3: unknown option 'threds' (did you mean 'threads'?)",
            path.display()
        )),
        "{e}"
    );
    // A placeholder used before it is defined is an error at the use.
    let path = dir.write("early.ini", "[uwsgi]\nmodule = %(project)\nproject = p\n");
    let e = load(&path).unwrap_err();
    assert!(
        e.contains(":2: %(project): no option or placeholder"),
        "{e}"
    );
}

#[test]
fn log_format_keeps_its_own_atoms() {
    let dir = TempDir::new();
    let path = dir.write(
        "app.ini",
        "[uwsgi]\nsite = shop\n\
         log-format = %(site) %(h)s \"%(r)s\" %(s)s %(addr) %(method) %(uri) 100%% %Z %(\n",
    );
    assert_eq!(
        load(&path).unwrap(),
        pairs(&[(
            "log-format",
            "shop %(h)s \"%(r)s\" %(s)s %(addr) %(method) %(uri) 100% %Z %("
        )])
    );
    // Elsewhere an unknown %(name) is still an error.
    let path = dir.write("bad.ini", "[uwsgi]\nchdir = %(h)s\n");
    assert!(load(&path)
        .unwrap_err()
        .contains(":2: %(h): no option or placeholder named 'h'"));
}

#[test]
fn percent_k_is_the_cpu_count() {
    let dir = TempDir::new();
    let path = dir.write("app.ini", "[uwsgi]\nprocesses = %k\n");
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(
        load(&path).unwrap(),
        pairs(&[("processes", &cpus.to_string())])
    );
}

#[test]
fn section_header_typos_are_errors() {
    let dir = TempDir::new();
    for (header, meant) in [
        ("uswgi", "uwsgi"),
        ("uwsg", "uwsgi"),
        ("UWSGI", "uwsgi"),
        ("capatz", "capataz"),
    ] {
        let path = dir.write(
            "app.ini",
            &format!("[uwsgi]\nmodule = app\n\n[{header}]\nharakiri = 30\n"),
        );
        assert_eq!(
            load(&path).unwrap_err(),
            format!(
                "{}:4: section [{header}] looks like a typo of [{meant}] (did you mean \
                 [{meant}]?); its options would be ignored",
                path.display()
            )
        );
    }
    // Only a typo: with no [uwsgi] at all, the typo is what is reported.
    let path = dir.write("only.ini", "[uswgi]\nmodule = app\n");
    assert!(load(&path)
        .unwrap_err()
        .contains(":1: section [uswgi] looks like a typo"));
    // Other sections stay someone else's.
    let path = dir.write(
        "paste.ini",
        "[uwsgi]\nmodule = app\n[app:main]\nuse = egg:x\n[program:w]\ncommand = w\n[pipeline]\nx = y\n",
    );
    assert_eq!(load(&path).unwrap(), pairs(&[("module", "app")]));
}
