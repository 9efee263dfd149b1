//! What a reload takes from the config files read again (DESIGN §5: HUP
//! re-reads the config, like uWSGI's and gunicorn's reloads).
//!
//! The new generation of workers is started from the config now on disk.
//! Options the workers read (the app, `processes`, `threads`, `env`,
//! `harakiri`, timeouts, logging format, static files...) take effect with
//! the reload. Options the master acted on once at startup cannot change
//! without a restart: the listeners and their modes, `uid`/`gid`, the
//! control, stats and fifo endpoints, the pidfile and the master's log file.
//! A change to one of those is logged as needing a restart, and the running
//! value is kept. `[program:x]` and `[socket:x]` changes are left to
//! `capataz ctl update`, as before.
//!
//! The comparison is field by field on the config's serialized form, so an
//! option added to [`Config`] later takes effect on reload by default; only
//! the lists below need to know about the master's own options.

use serde_json::{Map, Value};

use crate::config::Config;

/// Config fields the master used once at startup (as `Config` serializes
/// them): changing them needs a restart.
const RESTART_ONLY: &[&str] = &[
    "http",
    "http_socket",
    "socket",
    "listen",
    "chmod_socket",
    "chown_socket",
    "uid",
    "gid",
    "no_root_workers",
    "pidfile",
    "master_fifo",
    "vacuum",
    "stats",
    "stats_http",
    "stats_token",
    "metrics",
    "control_socket",
    "logto",
    "log_maxsize",
    "log_backups",
    "log_master",
    "cheaper",
    "worker_reload_mercy",
];

/// Changed by `capataz ctl update`, not by a reload.
const UPDATE_ONLY: &[&str] = &["programs", "sockets"];

/// Bookkeeping, not options.
const IGNORED: &[&str] = &["notices", "origins", "config_files", "env_files"];

/// The outcome of reading the config again for a reload.
#[derive(Debug)]
pub struct Reread {
    /// The config the new workers get.
    pub config: Config,
    /// Options (as the user spells them) that changed and take effect now.
    pub applied: Vec<String>,
    /// Options that changed but keep their running value until a restart.
    pub need_restart: Vec<String>,
    /// `[program:x]`/`[socket:x]` sections differ from what runs.
    pub need_update: bool,
}

fn option_name(field: &str) -> String {
    field.replace('_', "-")
}

fn fields(config: &Config) -> Result<Map<String, Value>, String> {
    match serde_json::to_value(config) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("the config does not serialize to an object".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Merges `new` (just read) into `running`. `last_read` is the config as
/// last read from disk: an option counts as changed when the files say
/// something new, so a runtime change (TTIN raising `processes`, the env
/// `ctl update` staged) is not undone by a reload of unchanged files.
pub fn merge(running: &Config, last_read: &Config, new: &Config) -> Result<Reread, String> {
    let mut merged = fields(running)?;
    let before = fields(last_read)?;
    let after = fields(new)?;
    let mut out = Reread {
        config: running.clone(),
        applied: Vec::new(),
        need_restart: Vec::new(),
        need_update: false,
    };
    for (key, value) in &after {
        if IGNORED.contains(&key.as_str()) {
            continue;
        }
        if UPDATE_ONLY.contains(&key.as_str()) {
            out.need_update |= merged.get(key) != Some(value);
            continue;
        }
        if before.get(key) == Some(value) {
            continue;
        }
        if RESTART_ONLY.contains(&key.as_str()) {
            out.need_restart.push(option_name(key));
        } else {
            out.applied.push(option_name(key));
            merged.insert(key.clone(), value.clone());
        }
    }
    if out.applied.iter().any(|k| k == "env") {
        merged.insert("env_files".into(), after["env_files"].clone());
    }
    out.config = serde_json::from_value(Value::Object(merged)).map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(ini: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.ini");
        std::fs::write(&path, ini).unwrap();
        match crate::config::load(vec!["--ini".into(), path.into()], Vec::new()).unwrap() {
            crate::config::Command::Serve(c) => *c,
            _ => unreachable!(),
        }
    }

    const BASE: &str = "[uwsgi]\nhttp = 127.0.0.1:9000\nwsgi-file = app.py\nprocesses = 2\n";

    #[test]
    fn worker_options_apply_and_listeners_wait_for_a_restart() {
        let old = load(BASE);
        let new = load(
            "[uwsgi]\nhttp = 127.0.0.1:9001\nwsgi-file = app.py\nprocesses = 3\n\
             harakiri = 30\nenv = MODE=new\n",
        );
        let r = merge(&old, &old, &new).unwrap();
        assert_eq!(r.applied, ["env", "harakiri", "processes"]);
        assert_eq!(r.need_restart, ["http"]);
        assert!(!r.need_update);
        assert_eq!(r.config.processes, 3);
        assert_eq!(r.config.harakiri, 30);
        assert_eq!(r.config.env, [("MODE".to_string(), "new".to_string())]);
        assert_eq!(r.config.http, old.http, "the listeners stay as bound");
    }

    #[test]
    fn every_listed_field_is_a_config_field() {
        // The lists name fields as Config serializes them; a renamed or
        // misspelt entry would silently stop doing anything.
        let fields = fields(&Config::default()).unwrap();
        for name in RESTART_ONLY.iter().chain(UPDATE_ONLY).chain(IGNORED) {
            assert!(fields.contains_key(*name), "{name} is not a Config field");
        }
    }

    #[test]
    fn unchanged_files_keep_runtime_changes() {
        let read = load(BASE);
        let mut running = read.clone();
        running.processes = 5; // TTIN past `processes`
        let r = merge(&running, &read, &load(BASE)).unwrap();
        assert!(r.applied.is_empty() && r.need_restart.is_empty());
        assert_eq!(r.config.processes, 5);
    }

    #[test]
    fn program_sections_are_left_to_ctl_update() {
        let old = load(BASE);
        let new = load(&format!("{BASE}[program:celery]\ncommand = sleep 60\n"));
        let r = merge(&old, &old, &new).unwrap();
        assert!(r.need_update);
        assert!(r.applied.is_empty());
        assert!(r.config.programs.is_empty());
    }
}
