//! One test per option's `apply`, and checks on the table itself.

use super::*;
use std::collections::HashSet;
use std::path::PathBuf;

fn spec(name: &str) -> &'static OptionSpec {
    match lookup(name) {
        Lookup::Found(spec) | Lookup::NotYet(spec) => spec,
        Lookup::Unknown { .. } => panic!("no option {name}"),
    }
}

fn apply(name: &str, value: &str) -> Result<Config, String> {
    let mut config = Config::default();
    (spec(name).apply)(&mut config, value)?;
    Ok(config)
}

#[test]
fn names_and_aliases_are_unique_and_well_formed() {
    let mut seen = HashSet::new();
    for spec in OPTIONS {
        for name in spec.names() {
            assert!(seen.insert(name), "duplicate option name {name}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "bad name {name}"
            );
        }
        let documented = !spec.kind.has_no_effect() && spec.kind != Kind::NotYet;
        assert_eq!(documented, !spec.help.is_empty(), "{}", spec.name);
        assert_eq!(spec.kind.has_no_effect(), spec.group == Group::NoEffect);
        assert_eq!(spec.kind == Kind::NotYet, spec.group == Group::NotYet);
    }
}

#[test]
fn every_default_applies_cleanly() {
    for spec in OPTIONS {
        if let Some(default) = spec.default {
            let mut config = Config::default();
            assert_eq!((spec.apply)(&mut config, default), Ok(()), "{}", spec.name);
        }
    }
}

#[test]
fn defaults_match_the_documented_values() {
    let c = Config::default();
    assert_eq!(c.callable, "application");
    assert_eq!((c.processes, c.threads, c.listen), (1, 1, 1024));
    assert_eq!(
        (c.post_buffering, c.limit_post, c.buffer_size),
        (65536, 0, 65535)
    );
    assert_eq!((c.header_timeout, c.body_timeout), (30, 30));
    assert_eq!((c.send_timeout, c.keepalive_timeout), (60, 5));
    assert_eq!((c.worker_connections, c.worker_reload_mercy), (1000, 60));
    assert!(!c.disable_logging);
    assert!(c.http.is_empty() && c.module.is_none() && c.wsgi_file.is_none());
    assert_eq!(
        (c.harakiri, c.max_requests, c.max_requests_delta),
        (0, 0, 0)
    );
    assert_eq!((c.reload_on_rss, c.cheaper), (0, 0));
    assert!(!c.vacuum && !c.no_root_workers && !c.static_gzip);
    assert_eq!(
        (c.chmod_socket, c.pidfile.clone(), c.master_fifo.clone()),
        (None, None, None)
    );
    assert!(c.uid.is_none() && c.gid.is_none() && c.touch_reload.is_empty());
    assert!(c.static_map.is_empty() && c.static_expires.is_empty() && c.static_index.is_empty());
}

#[test]
fn lookup_finds_aliases_and_suggests() {
    assert_eq!(spec("workers").name, "processes");
    assert_eq!(spec("pp").name, "pythonpath");
    assert_eq!(spec("home").name, "virtualenv");
    assert_eq!(spec("file").name, "wsgi-file");
    assert_eq!(spec("keep-alive").name, "keepalive-timeout");
    assert_eq!(spec("max-requests-jitter").name, "max-requests-delta");
    assert!(matches!(lookup("harakiri"), Lookup::Found(_)));
    assert!(matches!(lookup("offload-threads"), Lookup::NotYet(_)));
    assert_eq!(spec("uwsgi-socket").name, "socket");
    assert!(matches!(
        lookup("procesess"),
        Lookup::Unknown {
            suggestion: Some("processes")
        }
    ));
    assert!(matches!(
        lookup("zzzzzz"),
        Lookup::Unknown { suggestion: None }
    ));
}

#[test]
fn update_http_and_http_socket() {
    let c = apply("http", ":8000").unwrap();
    assert_eq!(c.http, [":8000"]);
    let c = apply("http-socket", "/run/x.sock").unwrap();
    assert_eq!(c.http_socket, ["/run/x.sock"]);
    assert!(apply("http", "host:port").is_err());
}

#[test]
fn update_socket_and_proxy_trust() {
    let c = apply("socket", "/run/app.sock").unwrap();
    assert_eq!(c.socket, ["/run/app.sock"]);
    assert!(apply("socket", "8000").is_err());
    let d = Config::default();
    assert_eq!(d.forwarded_allow_ips, ["127.0.0.1", "::1"]);
    assert!(!d.proxy_protocol);
    // A user value replaces the loopback default; later values add to it.
    let mut c = apply("forwarded-allow-ips", "10.0.0.0/8, 192.168.0.1").unwrap();
    assert_eq!(c.forwarded_allow_ips, ["10.0.0.0/8", "192.168.0.1"]);
    c.origins
        .insert("forwarded-allow-ips".into(), crate::config::Origin::Cli);
    let spec = spec("forwarded-allow-ips");
    (spec.apply)(&mut c, "*").unwrap();
    assert_eq!(c.forwarded_allow_ips, ["10.0.0.0/8", "192.168.0.1", "*"]);
    assert!(apply("forwarded-allow-ips", "10.0.0.0/40").is_err());
    assert!(apply("forwarded-allow-ips", "proxy.internal").is_err());
    assert!(apply("proxy-protocol", "on").unwrap().proxy_protocol);
}

#[test]
fn update_app_options() {
    assert_eq!(
        apply("module", "app.wsgi:app").unwrap().module.as_deref(),
        Some("app.wsgi:app")
    );
    assert!(apply("module", "app/wsgi.py").is_err());
    assert_eq!(
        apply("wsgi-file", "wsgi.py").unwrap().wsgi_file,
        Some("wsgi.py".into())
    );
    assert_eq!(apply("callable", "app").unwrap().callable, "app");
    assert!(apply("callable", "app()").is_err());
    assert_eq!(apply("chdir", "/srv").unwrap().chdir, Some("/srv".into()));
    assert_eq!(
        apply("pythonpath", "src").unwrap().pythonpath,
        [std::path::PathBuf::from("src")]
    );
    assert_eq!(
        apply("env", "A=1").unwrap().env,
        [("A".to_string(), "1".to_string())]
    );
    assert!(apply("env", "A").is_err());
    assert_eq!(
        apply("virtualenv", "/venv").unwrap().virtualenv,
        Some("/venv".into())
    );
}

#[test]
fn update_numbers() {
    assert_eq!(apply("processes", "4").unwrap().processes, 4);
    assert_eq!(apply("processes", "0"), Err("must be at least 1".into()));
    assert_eq!(
        apply("processes", "four"),
        Err("expected a whole number".into())
    );
    assert_eq!(apply("threads", "8").unwrap().threads, 8);
    assert!(apply("threads", "0").is_err());
    assert_eq!(apply("listen", "4096").unwrap().listen, 4096);
    assert_eq!(
        apply("worker-connections", "10")
            .unwrap()
            .worker_connections,
        10
    );
    assert_eq!(
        apply("worker-reload-mercy", "0")
            .unwrap()
            .worker_reload_mercy,
        0
    );
    assert_eq!(
        apply("keepalive-timeout", "0").unwrap().keepalive_timeout,
        0
    );
    assert!(apply("header-timeout", "0").is_err());
    assert_eq!(apply("body-timeout", "7").unwrap().body_timeout, 7);
    assert_eq!(apply("send-timeout", "9").unwrap().send_timeout, 9);
}

#[test]
fn update_sizes_and_flags() {
    assert_eq!(
        apply("post-buffering", "1m").unwrap().post_buffering,
        1 << 20
    );
    assert_eq!(apply("limit-post", "10G").unwrap().limit_post, 10 << 30);
    assert_eq!(apply("buffer-size", "8192").unwrap().buffer_size, 8192);
    assert!(apply("buffer-size", "0").is_err());
    assert!(apply("disable-logging", "yes").unwrap().disable_logging);
    assert!(apply("disable-logging", "maybe").is_err());
    assert!(apply("master", "true").is_ok());
    assert!(apply("master", "sure").is_err());
    assert!(apply("set-placeholder", "base=/srv").is_ok());
    assert!(apply("set-placeholder", "base").is_err());
}

#[test]
fn update_supervision() {
    assert_eq!(apply("harakiri", "30").unwrap().harakiri, 30);
    assert_eq!(apply("harakiri", "0").unwrap().harakiri, 0);
    assert_eq!(
        apply("harakiri", "-1"),
        Err("expected a whole number".into())
    );
    assert_eq!(apply("max-requests", "5000").unwrap().max_requests, 5000);
    assert!(apply("max-requests", "5k").is_err());
    assert_eq!(
        apply("max-requests-delta", "100")
            .unwrap()
            .max_requests_delta,
        100
    );
    assert_eq!(
        apply("max-requests-jitter", "7")
            .unwrap()
            .max_requests_delta,
        7
    );
    assert_eq!(apply("reload-on-rss", "512").unwrap().reload_on_rss, 512);
    assert!(apply("reload-on-rss", "512M").is_err());
    assert_eq!(apply("cheaper", "2").unwrap().cheaper, 2);
    assert!(apply("cheaper", "two").is_err());
    let mut c = Config::default();
    (spec("touch-reload").apply)(&mut c, "/srv/reload").unwrap();
    (spec("touch-reload").apply)(&mut c, "app.py").unwrap();
    assert_eq!(
        c.touch_reload,
        [PathBuf::from("/srv/reload"), PathBuf::from("app.py")]
    );
    assert!(apply("touch-reload", "").is_err());
    assert_eq!(
        apply("pidfile", "/run/app.pid").unwrap().pidfile,
        Some("/run/app.pid".into())
    );
    assert!(apply("pidfile", "").is_err());
    assert_eq!(
        apply("master-fifo", "/run/app.fifo").unwrap().master_fifo,
        Some("/run/app.fifo".into())
    );
    assert!(apply("master-fifo", "").is_err());
    assert!(apply("vacuum", "true").unwrap().vacuum);
    assert!(!apply("vacuum", "off").unwrap().vacuum);
    assert!(apply("vacuum", "sometimes").is_err());
}

#[test]
fn update_sockets_and_privileges() {
    assert_eq!(
        apply("chmod-socket", "660").unwrap().chmod_socket,
        Some(0o660)
    );
    assert_eq!(
        apply("chmod-socket", "666").unwrap().chmod_socket,
        Some(0o666)
    );
    for bad in ["", "0660", "66", "999", "rw"] {
        assert_eq!(
            apply("chmod-socket", bad),
            Err("expected 3 octal digits, like 660".into()),
            "{bad}"
        );
    }
    assert_eq!(Kind::OptionalMode.bare_value(), Some("666"));
    assert_eq!(Kind::Flag.bare_value(), Some("true"));
    assert_eq!(Kind::Uint.bare_value(), None);
    assert_eq!(
        apply("uid", "www-data").unwrap().uid.as_deref(),
        Some("www-data")
    );
    assert_eq!(apply("uid", "33").unwrap().uid.as_deref(), Some("33"));
    assert_eq!(apply("gid", "33").unwrap().gid.as_deref(), Some("33"));
    assert!(apply("uid", "").is_err());
    assert_eq!(apply("gid", "www data"), Err("contains whitespace".into()));
    assert!(apply("no-root-workers", "yes").unwrap().no_root_workers);
    assert!(apply("no-root-workers", "maybe").is_err());
}

#[test]
fn update_static_files() {
    let mut c = Config::default();
    (spec("static-map").apply)(&mut c, "/static/=/srv/static").unwrap();
    (spec("static-map").apply)(&mut c, "/=public").unwrap();
    assert_eq!(
        c.static_map,
        [
            ("/static".to_string(), PathBuf::from("/srv/static")),
            ("/".to_string(), PathBuf::from("public")),
        ]
    );
    assert!(apply("static-map", "static=/srv").is_err());
    assert!(apply("static-map", "/static=").is_err());
    assert_eq!(
        apply("static-expires", r"\.(css|js)$ 86400")
            .unwrap()
            .static_expires,
        [(r"\.(css|js)$".to_string(), 86400)]
    );
    assert!(apply("static-expires", "([ 60").is_err());
    assert!(apply("static-expires", r"\.css$").is_err());
    assert_eq!(
        apply("static-index", "index.html").unwrap().static_index,
        ["index.html"]
    );
    assert!(apply("static-index", "a/index.html").is_err());
    assert!(apply("static-gzip", "on").unwrap().static_gzip);
    assert!(apply("static-gzip", "2").is_err());
}

#[test]
fn update_request_log_options() {
    let c = apply("logto", "/var/log/app.log").unwrap();
    assert_eq!(
        c.logto.as_deref(),
        Some(std::path::Path::new("/var/log/app.log"))
    );
    assert_eq!(
        apply("log-maxsize", "10M").unwrap().log_maxsize,
        10 * 1024 * 1024
    );
    assert_eq!(Config::default().log_backups, 5);
    assert_eq!(apply("log-backups", "0").unwrap().log_backups, 0);
    assert_eq!(
        apply("log-format", "json").unwrap().log_format.as_deref(),
        Some("json")
    );
    assert!(apply("log-format", "").is_err());
    assert!(apply("log-4xx", "yes").unwrap().log_4xx);
    assert!(apply("log-5xx", "1").unwrap().log_5xx);
    assert_eq!(apply("log-slow", "250").unwrap().log_slow, 250);
    assert!(apply("log-slow", "soon").is_err());
    assert!(apply("log-micros", "true").unwrap().log_micros);
    assert!(apply("memory-report", "true").unwrap().memory_report);
    let ctime = Some(crate::logging::DEFAULT_LOG_DATE.to_string());
    assert_eq!(Kind::OptionalDate.bare_value(), ctime.as_deref());
    assert_eq!(apply("log-date", "true").unwrap().log_date, ctime);
    assert_eq!(apply("log-date", "false").unwrap().log_date, None);
    assert_eq!(
        apply("log-date", "%Y-%m-%d").unwrap().log_date.as_deref(),
        Some("%Y-%m-%d")
    );
    assert!(Config::default().log_master);
    assert!(!apply("log-master", "false").unwrap().log_master);
    assert!(!Config::default().log_sendfile);
    assert!(apply("log-sendfile", "true").unwrap().log_sendfile);
}
