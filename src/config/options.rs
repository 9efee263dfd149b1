//! THE option table. Each option is one [`OptionSpec`]: its name, aliases,
//! kind, default, help text, whether it repeats, and an `apply` function
//! (ripgrep's `update`) that validates a value and writes it into
//! [`Config`]. The CLI, the ini parser, the environment, `--help` and
//! `--print-config` are all generated from this one table.

use super::values::{
    parse_address, parse_bool, parse_count, parse_identifier, parse_key_value, parse_module,
    parse_path, parse_size, parse_size_at_least,
};
use super::Config;

/// What kind of value an option takes. Decides how the CLI reads it (a
/// boolean takes a value only with `=`), how the ini treats a bare key, and
/// how `--help` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// on/off, yes/no, true/false, 1/0; a bare `--flag` or ini key is true.
    Flag,
    /// A plain whole number.
    Uint,
    /// Bytes, with an optional K/M/G suffix.
    Size,
    /// A non-empty string with option-specific validation.
    Str,
    /// `pkg.mod` or `pkg.mod:callable`.
    Module,
    /// A filesystem path, kept as given.
    Path,
    /// A listening address (see [`super::values::parse_address`]).
    Address,
    /// `KEY=VALUE`.
    KeyValue,
    /// A uWSGI boolean that means nothing for capataz: accepted, with a
    /// one-time notice.
    NoEffect,
    /// A uWSGI option capataz will implement later: rejected by name.
    NotYet,
}

impl Kind {
    /// Booleans take a value on the command line only as `--flag=value`.
    pub fn is_boolean(self) -> bool {
        matches!(self, Kind::Flag | Kind::NoEffect)
    }

    /// The placeholder shown by `--help` after the option name.
    pub fn value_name(self) -> &'static str {
        match self {
            Kind::Flag | Kind::NoEffect | Kind::NotYet => "",
            Kind::Uint => "N",
            Kind::Size => "BYTES",
            Kind::Str => "NAME",
            Kind::Module => "MODULE[:CALLABLE]",
            Kind::Path => "PATH",
            Kind::Address => "ADDR",
            Kind::KeyValue => "KEY=VALUE",
        }
    }
}

/// The `--help` section an option is listed under, in display order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    Listening,
    Application,
    Processes,
    Limits,
    Timeouts,
    Logging,
    ConfigFiles,
    NoEffect,
    NotYet,
}

impl Group {
    pub const ALL: [Group; 9] = [
        Group::Listening,
        Group::Application,
        Group::Processes,
        Group::Limits,
        Group::Timeouts,
        Group::Logging,
        Group::ConfigFiles,
        Group::NoEffect,
        Group::NotYet,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Group::Listening => "Listening",
            Group::Application => "Application",
            Group::Processes => "Processes",
            Group::Limits => "Buffers and limits",
            Group::Timeouts => "Timeouts (seconds)",
            Group::Logging => "Logging",
            Group::ConfigFiles => "Configuration files",
            Group::NoEffect => "Accepted for uWSGI compatibility, no effect in capataz",
            Group::NotYet => "uWSGI options not supported yet (rejected)",
        }
    }
}

/// Validates `value` and writes it into the config; returns the reason on
/// error ("expected a whole number").
pub type Apply = fn(&mut Config, &str) -> Result<(), String>;

/// One option.
#[derive(Debug)]
pub struct OptionSpec {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub kind: Kind,
    pub group: Group,
    /// The default as the user would write it; applied through `apply` to
    /// build [`Config::default`], so the table is the only place it lives.
    pub default: Option<&'static str>,
    pub help: &'static str,
    /// Repeatable options accumulate values across all sources; the others
    /// keep the last value set.
    pub repeats: bool,
    pub apply: Apply,
}

impl OptionSpec {
    /// The canonical name and the aliases.
    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.name).chain(self.aliases.iter().copied())
    }
}

/// `ini FILE[:SECTION]` is handled by the sources (it loads a file), not by
/// `apply`.
pub const INI: &str = "ini";
/// `set-placeholder NAME=VALUE` defines a `%(NAME)` for ini expansion.
pub const SET_PLACEHOLDER: &str = "set-placeholder";

fn ignore(_: &mut Config, _: &str) -> Result<(), String> {
    Ok(())
}

fn validate_bool(_: &mut Config, value: &str) -> Result<(), String> {
    parse_bool(value).map(drop)
}

const fn no_effect(name: &'static str) -> OptionSpec {
    OptionSpec {
        name,
        aliases: &[],
        kind: Kind::NoEffect,
        group: Group::NoEffect,
        default: None,
        help: "",
        repeats: false,
        apply: validate_bool,
    }
}

const fn not_yet(name: &'static str) -> OptionSpec {
    OptionSpec {
        name,
        aliases: &[],
        kind: Kind::NotYet,
        group: Group::NotYet,
        default: None,
        help: "",
        repeats: false,
        apply: ignore,
    }
}

/// Every option capataz knows, in `--help` order within each group.
pub static OPTIONS: &[OptionSpec] = &[
    // --- Listening ---
    OptionSpec {
        name: "http",
        aliases: &[],
        kind: Kind::Address,
        group: Group::Listening,
        default: None,
        help: "Serve HTTP on ADDR: host:port, :port, [v6]:port, a unix socket path or @abstract.",
        repeats: true,
        apply: |c, v| {
            parse_address(v)?;
            c.http.push(v.to_string());
            Ok(())
        },
    },
    OptionSpec {
        name: "http-socket",
        aliases: &[],
        kind: Kind::Address,
        group: Group::Listening,
        default: None,
        help: "Serve HTTP on ADDR behind a proxy (same address forms as --http).",
        repeats: true,
        apply: |c, v| {
            parse_address(v)?;
            c.http_socket.push(v.to_string());
            Ok(())
        },
    },
    OptionSpec {
        name: "listen",
        aliases: &[],
        kind: Kind::Uint,
        group: Group::Listening,
        default: Some("1024"),
        help: "Listen backlog (clamped to net.core.somaxconn).",
        repeats: false,
        apply: |c, v| {
            c.listen = parse_count(v, 1)?;
            Ok(())
        },
    },
    // --- Application ---
    OptionSpec {
        name: "module",
        aliases: &["wsgi"],
        kind: Kind::Module,
        group: Group::Application,
        default: None,
        help: "Python module holding the WSGI app, optionally with ':callable'.",
        repeats: false,
        apply: |c, v| {
            c.module = Some(parse_module(v)?);
            Ok(())
        },
    },
    OptionSpec {
        name: "wsgi-file",
        aliases: &["file"],
        kind: Kind::Path,
        group: Group::Application,
        default: None,
        help: "Python file holding the WSGI app (instead of --module).",
        repeats: false,
        apply: |c, v| {
            c.wsgi_file = Some(parse_path(v)?);
            Ok(())
        },
    },
    OptionSpec {
        name: "callable",
        aliases: &[],
        kind: Kind::Str,
        group: Group::Application,
        default: Some("application"),
        help: "Name of the WSGI callable in the module or file.",
        repeats: false,
        apply: |c, v| {
            c.callable = parse_identifier(v)?;
            Ok(())
        },
    },
    OptionSpec {
        name: "chdir",
        aliases: &[],
        kind: Kind::Path,
        group: Group::Application,
        default: None,
        help: "Change to this directory before loading the app.",
        repeats: false,
        apply: |c, v| {
            c.chdir = Some(parse_path(v)?);
            Ok(())
        },
    },
    OptionSpec {
        name: "pythonpath",
        aliases: &["python-path", "pp"],
        kind: Kind::Path,
        group: Group::Application,
        default: None,
        help: "Add a directory to the front of sys.path.",
        repeats: true,
        apply: |c, v| {
            c.pythonpath.push(parse_path(v)?);
            Ok(())
        },
    },
    OptionSpec {
        name: "env",
        aliases: &[],
        kind: Kind::KeyValue,
        group: Group::Application,
        default: None,
        help: "Set an environment variable for the app.",
        repeats: true,
        apply: |c, v| {
            c.env.push(parse_key_value(v)?);
            Ok(())
        },
    },
    OptionSpec {
        name: "virtualenv",
        aliases: &["venv", "home", "pyhome"],
        kind: Kind::Path,
        group: Group::Application,
        default: None,
        help: "Run the app in this virtualenv.",
        repeats: false,
        apply: |c, v| {
            c.virtualenv = Some(parse_path(v)?);
            Ok(())
        },
    },
    // --- Processes ---
    OptionSpec {
        name: "processes",
        aliases: &["workers"],
        kind: Kind::Uint,
        group: Group::Processes,
        default: Some("1"),
        help: "Number of worker processes.",
        repeats: false,
        apply: |c, v| {
            c.processes = parse_count(v, 1)?;
            Ok(())
        },
    },
    OptionSpec {
        name: "threads",
        aliases: &[],
        kind: Kind::Uint,
        group: Group::Processes,
        default: Some("1"),
        help: "Number of app threads per worker.",
        repeats: false,
        apply: |c, v| {
            c.threads = parse_count(v, 1)?;
            Ok(())
        },
    },
    OptionSpec {
        name: "worker-connections",
        aliases: &[],
        kind: Kind::Uint,
        group: Group::Processes,
        default: Some("1000"),
        help: "Most open client connections per worker.",
        repeats: false,
        apply: |c, v| {
            c.worker_connections = parse_count(v, 1)?;
            Ok(())
        },
    },
    OptionSpec {
        name: "worker-reload-mercy",
        aliases: &[],
        kind: Kind::Uint,
        group: Group::Processes,
        default: Some("60"),
        help: "Seconds a draining worker gets before SIGKILL.",
        repeats: false,
        apply: |c, v| {
            c.worker_reload_mercy = parse_count(v, 0)?;
            Ok(())
        },
    },
    // --- Buffers and limits ---
    OptionSpec {
        name: "post-buffering",
        aliases: &[],
        kind: Kind::Size,
        group: Group::Limits,
        default: Some("65536"),
        help: "Request bodies up to this size stay in memory; larger ones go to a temp file.",
        repeats: false,
        apply: |c, v| {
            c.post_buffering = parse_size_at_least(v, 0)?;
            Ok(())
        },
    },
    OptionSpec {
        name: "limit-post",
        aliases: &[],
        kind: Kind::Size,
        group: Group::Limits,
        default: Some("0"),
        help: "Largest request body accepted (413 past it); 0 means unlimited.",
        repeats: false,
        apply: |c, v| {
            c.limit_post = parse_size(v)?;
            Ok(())
        },
    },
    OptionSpec {
        name: "buffer-size",
        aliases: &[],
        kind: Kind::Size,
        group: Group::Limits,
        default: Some("65535"),
        help: "Largest uwsgi vars block or HTTP request head.",
        repeats: false,
        apply: |c, v| {
            c.buffer_size = parse_size_at_least(v, 1)?;
            Ok(())
        },
    },
    // --- Timeouts ---
    OptionSpec {
        name: "header-timeout",
        aliases: &[],
        kind: Kind::Uint,
        group: Group::Timeouts,
        default: Some("30"),
        help: "Time allowed to read a request head.",
        repeats: false,
        apply: |c, v| {
            c.header_timeout = parse_count(v, 1)?;
            Ok(())
        },
    },
    OptionSpec {
        name: "body-timeout",
        aliases: &[],
        kind: Kind::Uint,
        group: Group::Timeouts,
        default: Some("30"),
        help: "Time allowed to read a request body.",
        repeats: false,
        apply: |c, v| {
            c.body_timeout = parse_count(v, 1)?;
            Ok(())
        },
    },
    OptionSpec {
        name: "send-timeout",
        aliases: &[],
        kind: Kind::Uint,
        group: Group::Timeouts,
        default: Some("60"),
        help: "Time allowed for a client to accept response bytes.",
        repeats: false,
        apply: |c, v| {
            c.send_timeout = parse_count(v, 1)?;
            Ok(())
        },
    },
    OptionSpec {
        name: "keepalive-timeout",
        aliases: &["keep-alive"],
        kind: Kind::Uint,
        group: Group::Timeouts,
        default: Some("5"),
        help: "Idle time before a keep-alive connection is closed; 0 disables keep-alive.",
        repeats: false,
        apply: |c, v| {
            c.keepalive_timeout = parse_count(v, 0)?;
            Ok(())
        },
    },
    // --- Logging ---
    OptionSpec {
        name: "disable-logging",
        aliases: &[],
        kind: Kind::Flag,
        group: Group::Logging,
        default: Some("false"),
        help: "Turn off the request log (the server log stays on).",
        repeats: false,
        apply: |c, v| {
            c.disable_logging = parse_bool(v)?;
            Ok(())
        },
    },
    // --- Configuration files ---
    OptionSpec {
        name: INI,
        aliases: &[],
        kind: Kind::Path,
        group: Group::ConfigFiles,
        default: None,
        help: "Read options from the ini file PATH, or PATH:SECTION (by default the [uwsgi] section, then [capataz]).",
        repeats: true,
        apply: |_, v| parse_path(v).map(drop),
    },
    OptionSpec {
        name: SET_PLACEHOLDER,
        aliases: &["set-ph"],
        kind: Kind::KeyValue,
        group: Group::ConfigFiles,
        default: None,
        help: "Define KEY for %(KEY) expansion in ini files.",
        repeats: true,
        apply: |_, v| parse_key_value(v).map(drop),
    },
    // --- uWSGI options with no effect ---
    no_effect("master"),
    no_effect("enable-threads"),
    no_effect("thunder-lock"),
    no_effect("single-interpreter"),
    no_effect("lazy-apps"),
    no_effect("die-on-term"),
    no_effect("need-app"),
    no_effect("strict"),
    // --- uWSGI options not supported yet ---
    not_yet("socket"),
    not_yet("uwsgi-socket"),
    not_yet("chmod-socket"),
    not_yet("vacuum"),
    not_yet("uid"),
    not_yet("gid"),
    not_yet("pidfile"),
    not_yet("master-fifo"),
    not_yet("harakiri"),
    not_yet("max-requests"),
    not_yet("max-requests-delta"),
    not_yet("max-requests-jitter"),
    not_yet("reload-on-rss"),
    not_yet("touch-reload"),
    not_yet("cheaper"),
    not_yet("static-map"),
    not_yet("static-expires"),
    not_yet("static-index"),
    not_yet("static-gzip"),
    not_yet("stats"),
    not_yet("stats-http"),
    not_yet("metrics"),
    not_yet("logto"),
    not_yet("log-maxsize"),
    not_yet("log-backups"),
    not_yet("log-format"),
    not_yet("log-4xx"),
    not_yet("log-5xx"),
    not_yet("log-slow"),
    not_yet("log-date"),
    not_yet("log-micros"),
    not_yet("memory-report"),
    not_yet("log-master"),
    not_yet("log-sendfile"),
    not_yet("mount"),
    not_yet("forwarded-allow-ips"),
    not_yet("proxy-protocol"),
    not_yet("env-file"),
    not_yet("control-socket"),
    not_yet("no-root-workers"),
    not_yet("offload-threads"),
];

/// The outcome of looking up an option name.
#[derive(Debug)]
pub enum Lookup {
    Found(&'static OptionSpec),
    /// Known to uWSGI, on our list for later: reject by name.
    NotYet(&'static OptionSpec),
    /// `suggestion` is the closest name or alias, if one is close.
    Unknown {
        suggestion: Option<&'static str>,
    },
}

/// Finds an option by its name or an alias (exact, case-sensitive).
pub fn lookup(name: &str) -> Lookup {
    match OPTIONS.iter().find(|o| o.names().any(|n| n == name)) {
        Some(spec) if spec.kind == Kind::NotYet => Lookup::NotYet(spec),
        Some(spec) => Lookup::Found(spec),
        None => Lookup::Unknown {
            suggestion: super::values::closest(name, OPTIONS.iter().flat_map(OptionSpec::names)),
        },
    }
}

#[cfg(test)]
mod tests;
