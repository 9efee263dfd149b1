//! Configuration: one option table, three sources, one validated [`Config`].
//!
//! - `options`: THE option table (name, aliases, kind, default, help,
//!   repeats, `apply`);
//! - `cli`: the command line, and `--help` generated from the table;
//! - `ini`: uWSGI-style ini files (`[capataz]` / `[uwsgi]`, includes,
//!   `%(option)` / `$(VAR)` / `%d` / `%n` / `%%` expansion);
//! - `env`: `CAPATAZ_<NAME>` variables;
//! - `values`: the value parsers, one per kind; public because
//!   [`values::parse_address`] classifies listener addresses for the master;
//! - `error`: [`ConfigError`], one-line messages naming file, line and option.
//!
//! Like ripgrep, every source is turned into one list of [`Setting`]s in
//! precedence order (defaults < ini < env < CLI), and that list is applied
//! to the defaults front to back: a scalar keeps the last value, a repeatable
//! option accumulates. There is a single precedence path.
//!
//! [`load`] is for serving. [`load_for_ctl`] is for `capataz ctl --ini FILE`,
//! which only has to find the master: it runs the same sources and value
//! parsers (a syntax error or a bad value still names the file, line and
//! option), but skips what only matters for serving and may depend on the
//! directory ctl runs from ([`Purpose::Control`]).

mod cli;
mod env;
mod error;
mod ini;
mod options;
pub mod sections;
pub mod values;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::PathBuf;

pub use error::{ConfigError, Location};

use options::{Kind, OptionSpec, OPTIONS};

/// Exit status for a configuration error (EX_USAGE).
pub const EXIT_USAGE: i32 = 64;

/// What a configuration is loaded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// Serving: every check, including [`Config::validate`] (an app, a
    /// listener, `chdir` exists) and reading `env-file`.
    Serve,
    /// `capataz ctl --ini FILE`, run from any directory: no
    /// [`Config::validate`], and `env-file` is taken as a path, not read
    /// (relative paths there resolve against the master's directory).
    Control,
}

/// What `capataz` was asked to do.
#[derive(Debug)]
pub enum Command {
    /// Run the server with this configuration.
    Serve(Box<Config>),
    /// Print this help text and exit 0.
    Help(String),
    /// Print the version (the caller adds the embedded Python's) and exit 0.
    Version,
    /// Print this rendering of the configuration and exit 0.
    PrintConfig(String),
}

/// Where an option's value came from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Origin {
    Default,
    File { path: PathBuf, line: usize },
    Env { var: String },
    Cli,
}

impl Origin {
    fn location(&self) -> Location {
        match self {
            Origin::Default => Location::Defaults,
            Origin::File { path, line } => Location::File {
                path: path.clone(),
                line: Some(*line),
            },
            Origin::Env { var } => Location::Environment {
                var: Some(var.clone()),
            },
            Origin::Cli => Location::CommandLine,
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Env { var } => write!(f, "environment {var}"),
            Origin::Cli => f.write_str("command line"),
        }
    }
}

/// The validated configuration. The master sends it to workers as JSON.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Config {
    /// `http` (repeats): addresses as given ("127.0.0.1:8000", ":8000",
    /// "[::1]:8000", "/run/x.sock", "@abstract"); see
    /// [`values::parse_address`].
    pub http: Vec<String>,
    /// `http-socket` (repeats).
    pub http_socket: Vec<String>,
    /// `socket` (alias `uwsgi-socket`, repeats): addresses speaking uwsgi.
    pub socket: Vec<String>,
    /// `forwarded-allow-ips` (repeats): IPs, CIDRs or "*", validated by
    /// [`crate::worker::trust::parse_entries`]; default loopback.
    pub forwarded_allow_ips: Vec<String>,
    /// `proxy-protocol`: accept a PROXY v1/v2 header from allowed peers.
    pub proxy_protocol: bool,
    /// `module`: "pkg.mod" or "pkg.mod:callable".
    pub module: Option<String>,
    /// `wsgi-file` (alias `file`).
    pub wsgi_file: Option<PathBuf>,
    /// `callable`, default "application".
    pub callable: String,
    pub chdir: Option<PathBuf>,
    /// `pythonpath` (repeats; aliases `python-path`, `pp`).
    pub pythonpath: Vec<PathBuf>,
    /// `env KEY=VAL` (repeats).
    pub env: Vec<(String, String)>,
    /// `virtualenv` (aliases `venv`, `home`, `pyhome`).
    pub virtualenv: Option<PathBuf>,
    /// `processes` (alias `workers`), >= 1.
    pub processes: usize,
    /// `threads` per worker, >= 1.
    pub threads: usize,
    /// `listen` backlog.
    pub listen: u32,
    pub post_buffering: usize,
    /// 0 = unlimited.
    pub limit_post: u64,
    pub buffer_size: usize,
    /// Seconds.
    pub header_timeout: u64,
    pub body_timeout: u64,
    pub send_timeout: u64,
    /// `stream-flush-us`: microseconds a streamed chunk may wait to be
    /// batched with the next ones; 0 sends every chunk at once.
    pub stream_flush_us: u64,
    /// `keepalive-timeout` (alias `keep-alive`); 0 disables keep-alive.
    pub keepalive_timeout: u64,
    /// Most open connections per worker.
    pub worker_connections: usize,
    pub worker_reload_mercy: u64,
    /// `cheaper`: the fewest workers under adaptive scaling; 0 = off.
    /// When set, lower than `processes` (checked by [`Config::validate`]).
    pub cheaper: usize,
    /// `uid`: a user name or number, as given; resolved when dropping
    /// privileges (after binding).
    pub uid: Option<String>,
    /// `gid`: a group name or number, as given.
    pub gid: Option<String>,
    /// `no-root-workers`: refuse to run workers as root.
    pub no_root_workers: bool,
    /// `chmod-socket`: the mode for unix sockets (0o666 for a bare key).
    pub chmod_socket: Option<u32>,
    /// `chown-socket`: "user" or "user:group" (names or numbers) to give
    /// the unix listener sockets, right after binding.
    pub chown_socket: Option<String>,
    /// `harakiri`: per-request deadline in seconds; 0 = off.
    pub harakiri: u64,
    /// `max-requests`: recycle a worker after this many requests; 0 = off.
    pub max_requests: u64,
    /// `max-requests-delta` (alias `max-requests-jitter`).
    pub max_requests_delta: u64,
    /// `reload-on-rss`: megabytes; 0 = off.
    pub reload_on_rss: u64,
    /// `touch-reload` (repeats): files whose mtime change triggers a reload.
    pub touch_reload: Vec<PathBuf>,
    pub pidfile: Option<PathBuf>,
    pub master_fifo: Option<PathBuf>,
    /// `vacuum`: remove our unix sockets and the pidfile on exit.
    pub vacuum: bool,
    /// `static-map MOUNT=DIR` (repeats): MOUNT starts with '/' and has no
    /// trailing '/' (unless it is "/").
    pub static_map: Vec<(String, PathBuf)>,
    /// `static-expires REGEX SECONDS` (repeats): the regex source, known to
    /// compile with the `regex` crate, and the seconds.
    pub static_expires: Vec<(String, u64)>,
    /// `static-index` (repeats): file names ("index.html"), tried in order.
    pub static_index: Vec<String>,
    /// `static-gzip`: serve precompressed `.br` / `.gz` siblings.
    pub static_gzip: bool,
    pub disable_logging: bool,
    /// `logto`: the log file of the master, the workers and the app's
    /// stdout/stderr.
    pub logto: Option<PathBuf>,
    /// `log-maxsize`: rotate `logto` at this size; 0 = never.
    pub log_maxsize: u64,
    /// `log-backups`: rotated files kept (`logto.1` .. `logto.N`).
    pub log_backups: u64,
    /// `log-format`: gunicorn atoms, or "json".
    pub log_format: Option<String>,
    pub log_4xx: bool,
    pub log_5xx: bool,
    /// `log-slow`: milliseconds; 0 = off.
    pub log_slow: u64,
    /// `log-date`: strftime format of the request line prefix.
    pub log_date: Option<String>,
    pub log_micros: bool,
    pub memory_report: bool,
    /// `log-master`: the master relays workers' stdout/stderr into the log,
    /// each line prefixed with the worker (on by default).
    pub log_master: bool,
    /// `log-sendfile`: log sendfile requests (static files,
    /// `wsgi.file_wrapper`) even with `disable-logging`.
    pub log_sendfile: bool,
    /// `stats`: address of the uWSGI-compatible stats server.
    pub stats: Option<String>,
    /// `stats-http`: the stats address speaks HTTP.
    pub stats_http: bool,
    /// `stats-token`: enables the dashboard's action buttons, which must send it.
    pub stats_token: Option<String>,
    /// `metrics`: address of the Prometheus / health HTTP server.
    pub metrics: Option<String>,
    /// "option 'master' has no effect in capataz" etc., each once, for the
    /// master to log.
    pub notices: Vec<String>,
    /// Canonical option name → where its value came from. For a repeatable
    /// option, the origin of the last value added.
    pub origins: BTreeMap<String, Origin>,
    /// The ini files read (absolute, symlinks kept), for reloads.
    pub config_files: Vec<PathBuf>,
    /// `env-file` (repeats): the files read; their entries are in `env`.
    pub env_files: Vec<PathBuf>,
    /// `control-socket`: the `capataz ctl` socket; `None` = the default
    /// (see `control::default_path`).
    pub control_socket: Option<PathBuf>,
    /// `[program:NAME]` sections from the ini files, by priority.
    pub programs: Vec<sections::ProgramConfig>,
    /// `[socket:NAME]` sections from the ini files.
    pub sockets: Vec<sections::SocketConfig>,
}

impl Default for Config {
    /// The table's defaults, each recorded with [`Origin::Default`].
    fn default() -> Self {
        let mut config = Config {
            http: Vec::new(),
            http_socket: Vec::new(),
            socket: Vec::new(),
            forwarded_allow_ips: Vec::new(),
            proxy_protocol: false,
            module: None,
            wsgi_file: None,
            callable: String::new(),
            chdir: None,
            pythonpath: Vec::new(),
            env: Vec::new(),
            virtualenv: None,
            processes: 0,
            threads: 0,
            listen: 0,
            post_buffering: 0,
            limit_post: 0,
            buffer_size: 0,
            header_timeout: 0,
            body_timeout: 0,
            send_timeout: 0,
            stream_flush_us: 0,
            keepalive_timeout: 0,
            worker_connections: 0,
            worker_reload_mercy: 0,
            cheaper: 0,
            uid: None,
            gid: None,
            no_root_workers: false,
            chmod_socket: None,
            chown_socket: None,
            harakiri: 0,
            max_requests: 0,
            max_requests_delta: 0,
            reload_on_rss: 0,
            touch_reload: Vec::new(),
            pidfile: None,
            master_fifo: None,
            vacuum: false,
            static_map: Vec::new(),
            static_expires: Vec::new(),
            static_index: Vec::new(),
            static_gzip: false,
            disable_logging: false,
            logto: None,
            log_maxsize: 0,
            log_backups: 0,
            log_format: None,
            log_4xx: false,
            log_5xx: false,
            log_slow: 0,
            log_date: None,
            log_micros: false,
            memory_report: false,
            log_master: true,
            log_sendfile: false,
            stats: None,
            stats_http: false,
            stats_token: None,
            metrics: None,
            notices: Vec::new(),
            origins: BTreeMap::new(),
            config_files: Vec::new(),
            env_files: Vec::new(),
            control_socket: None,
            programs: Vec::new(),
            sockets: Vec::new(),
        };
        for spec in OPTIONS {
            if let Some(default) = spec.default {
                // The table's own defaults; a unit test applies each one.
                if (spec.apply)(&mut config, default).is_ok() {
                    config
                        .origins
                        .insert(spec.name.to_string(), Origin::Default);
                }
            }
        }
        config
    }
}

impl Config {
    /// Rules about the merged configuration as a whole.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let origin = |name: &str| match self.origins.get(name) {
            Some(origin) => format!(" ({origin})"),
            None => String::new(),
        };
        match (&self.module, &self.wsgi_file) {
            (None, None) => return Err(invalid("no app: set `module` or `wsgi-file`")),
            (Some(_), Some(_)) => {
                return Err(invalid(format!(
                    "options 'module'{} and 'wsgi-file'{} are both set: use only one",
                    origin("module"),
                    origin("wsgi-file")
                )))
            }
            _ => {}
        }
        if self.http.is_empty() && self.http_socket.is_empty() && self.socket.is_empty() {
            return Err(invalid(
                "no listener: set `http`, `http-socket` or `socket`",
            ));
        }
        if let Some(dir) = &self.chdir {
            // Checked here, not when spawning: a missing directory would
            // otherwise have the master retry workers forever (and a
            // reread/HUP with it is refused with this message).
            let reason = match std::fs::metadata(dir) {
                Ok(meta) if meta.is_dir() => None,
                Ok(_) => Some("not a directory".to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(reason) = reason {
                return Err(ConfigError::InvalidValue {
                    at: self
                        .origins
                        .get("chdir")
                        .map_or(Location::Defaults, Origin::location),
                    option: "chdir".into(),
                    value: dir.display().to_string(),
                    reason,
                });
            }
        }
        if self.processes < 1 {
            return Err(invalid("option 'processes': must be at least 1"));
        }
        if self.threads < 1 {
            return Err(invalid("option 'threads': must be at least 1"));
        }
        if self.cheaper > 0 && self.cheaper >= self.processes {
            return Err(invalid(format!(
                "option 'cheaper'{}: cheaper must be lower than processes \
                 (cheaper = {}, processes = {}{})",
                origin("cheaper"),
                self.cheaper,
                self.processes,
                origin("processes")
            )));
        }
        Ok(())
    }
}

fn invalid(message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(message.into())
}

/// One value for one option, from one source. Every source produces these;
/// [`build`] applies them in order.
#[derive(Debug, Clone)]
struct Setting {
    spec: &'static OptionSpec,
    value: String,
    origin: Origin,
    /// The option as the user wrote it (`--workers`, `workers`), for errors.
    written: String,
}

/// Parses the command line, the environment and the ini files they name,
/// and returns what to do.
///
/// `args` excludes argv[0]; `env` is the process environment
/// (`std::env::vars_os()`), passed in so tests never touch the real one.
pub fn load(args: Vec<OsString>, env: Vec<(OsString, OsString)>) -> Result<Command, ConfigError> {
    load_for(args, env, Purpose::Serve)
}

/// [`load`] for `capataz ctl`, which needs only what finds the master
/// (`control-socket`): see [`Purpose::Control`]. Errors are the same
/// [`ConfigError`]s, so ctl exits [`EXIT_USAGE`] on them too.
pub fn load_for_ctl(
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
) -> Result<Command, ConfigError> {
    load_for(args, env, Purpose::Control)
}

fn load_for(
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    purpose: Purpose,
) -> Result<Command, ConfigError> {
    let cli = match cli::parse(args)? {
        cli::Outcome::Help => return Ok(Command::Help(cli::help())),
        cli::Outcome::Version => return Ok(Command::Version),
        cli::Outcome::Run(cli) => cli,
    };
    let env = env::parse(env)?;

    // Placeholders set outside ini files are visible to every ini file.
    let seeds = env.settings.iter().chain(&cli.settings);
    let mut loader = ini::Loader::new(&env.vars, seeds);
    for (request, origin) in env.ini.iter().chain(&cli.ini) {
        loader.load(request, origin)?;
    }
    let (ini_settings, config_files) = loader.finish()?;

    let settings: Vec<Setting> = ini_settings
        .into_iter()
        .chain(env.settings)
        .chain(cli.settings)
        .collect();
    let mut config = build(&settings, purpose)?;
    let (programs, sockets) = sections::load(&config_files)?;
    config.programs = programs;
    config.sockets = sockets;
    config.config_files = config_files;
    if purpose == Purpose::Serve {
        config.validate()?;
    }
    if cli.print_config {
        return Ok(Command::PrintConfig(print_config(&config, &settings)));
    }
    Ok(Command::Serve(Box::new(config)))
}

/// Applies the settings, in order, on top of the defaults.
fn build(settings: &[Setting], purpose: Purpose) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    for setting in settings {
        let spec = setting.spec;
        if spec.kind == Kind::NotYet {
            // The sources reject these by name; kept here as a backstop.
            return Err(ConfigError::NotSupportedYet {
                at: setting.origin.location(),
                option: setting.written.clone(),
            });
        }
        let invalid_value = |reason| ConfigError::InvalidValue {
            at: setting.origin.location(),
            option: setting.written.clone(),
            value: setting.value.clone(),
            reason,
        };
        if purpose == Purpose::Control && spec.name == options::ENV_FILE {
            // Its apply reads the file, relative to the master's directory.
            values::parse_path(&setting.value).map_err(invalid_value)?;
            continue;
        }
        (spec.apply)(&mut config, &setting.value).map_err(invalid_value)?;
        if spec.kind.has_no_effect() {
            let notice = format!("option '{}' has no effect in capataz", spec.name);
            if !config.notices.contains(&notice) {
                config.notices.push(notice);
            }
        }
        config
            .origins
            .insert(spec.name.to_string(), setting.origin.clone());
    }
    Ok(config)
}

/// `--print-config`: every option in table order as `name = value  # origin`,
/// showing each value of a repeatable option on its own line.
fn print_config(config: &Config, settings: &[Setting]) -> String {
    let mut out = String::from("# capataz configuration (option = value  # origin)\n");
    for file in &config.config_files {
        let _ = writeln!(out, "# read {}", file.display());
    }
    for spec in OPTIONS {
        let mut mine = settings.iter().filter(|s| std::ptr::eq(s.spec, spec));
        match spec.kind {
            Kind::NotYet => {}
            Kind::NoEffect | Kind::NoEffectValue => {
                if let Some(last) = mine.next_back() {
                    let _ = writeln!(
                        out,
                        "{} = {}  # {} (no effect in capataz)",
                        spec.name, last.value, last.origin
                    );
                }
            }
            _ if spec.repeats => {
                let mut any = false;
                for setting in mine {
                    any = true;
                    let _ = writeln!(
                        out,
                        "{} = {}  # {}",
                        spec.name, setting.value, setting.origin
                    );
                }
                if !any && spec.name != options::INI {
                    let _ = writeln!(out, "# {}: not set", spec.name);
                }
            }
            _ => match (mine.next_back(), spec.default) {
                (Some(last), _) => {
                    let _ = writeln!(out, "{} = {}  # {}", spec.name, last.value, last.origin);
                }
                (None, Some(default)) => {
                    let _ = writeln!(out, "{} = {}  # default", spec.name, default);
                }
                (None, None) => {
                    let _ = writeln!(out, "# {}: not set", spec.name);
                }
            },
        }
    }
    out
}

#[cfg(test)]
mod testutil;

#[cfg(test)]
mod tests;
