//! THE option table. Each option is one [`OptionSpec`]: its name, aliases,
//! kind, default, help text, whether it repeats, and an `apply` function
//! (ripgrep's `update`) that validates a value and writes it into
//! [`Config`]. The CLI, the ini parser, the environment, `--help` and
//! `--print-config` are all generated from this one table.

use super::values::{
    parse_address, parse_bool, parse_count, parse_file_name, parse_identifier, parse_key_value,
    parse_module, parse_path, parse_size, parse_size_at_least, parse_socket_mode,
    parse_static_expires, parse_static_map, parse_user_or_group, BARE_SOCKET_MODE,
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
    /// A file mode of 3 octal digits, or nothing: a bare `--name` (when the
    /// next argument is another option, or there is none) or a bare ini key
    /// means [`BARE_SOCKET_MODE`]. The environment needs a value.
    OptionalMode,
    /// `static-map`: `MOUNT=DIR`.
    StaticMap,
    /// `static-expires`: `REGEX SECONDS`.
    StaticExpires,
    /// `log-date`: a strftime format, or nothing (a bare key, or a boolean
    /// true): uWSGI's ctime stamp.
    OptionalDate,
    /// A uWSGI boolean that means nothing for capataz: accepted, with a
    /// one-time notice.
    NoEffect,
    /// A uWSGI option with a value that means nothing for capataz
    /// (`plugins = python3`): accepted, with a one-time notice.
    NoEffectValue,
    /// A uWSGI option capataz will implement later: rejected by name.
    NotYet,
}

impl Kind {
    /// Accepted for uWSGI compatibility, ignored with a notice.
    pub fn has_no_effect(self) -> bool {
        matches!(self, Kind::NoEffect | Kind::NoEffectValue)
    }

    /// Booleans take a value on the command line only as `--flag=value`.
    pub fn is_boolean(self) -> bool {
        matches!(self, Kind::Flag | Kind::NoEffect)
    }

    /// What a bare `--name` or a bare ini key stands for, for the kinds that
    /// may be given without a value.
    pub fn bare_value(self) -> Option<&'static str> {
        match self {
            Kind::Flag | Kind::NoEffect => Some("true"),
            Kind::OptionalMode => Some(BARE_SOCKET_MODE),
            Kind::OptionalDate => Some(crate::logging::DEFAULT_LOG_DATE),
            _ => None,
        }
    }

    /// The placeholder shown by `--help` after the option name.
    pub fn value_name(self) -> &'static str {
        match self {
            Kind::Flag | Kind::NoEffect | Kind::NotYet => "",
            Kind::NoEffectValue => "VALUE",
            Kind::Uint => "N",
            Kind::Size => "BYTES",
            Kind::Str => "NAME",
            Kind::Module => "MODULE[:CALLABLE]",
            Kind::Path => "PATH",
            Kind::Address => "ADDR",
            Kind::KeyValue => "KEY=VALUE",
            Kind::OptionalMode => "[MODE]",
            Kind::OptionalDate => "[STRFTIME]",
            Kind::StaticMap => "MOUNT=DIR",
            Kind::StaticExpires => "'REGEX SECONDS'",
        }
    }
}

/// The `--help` section an option is listed under, in display order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    Listening,
    Application,
    Processes,
    Supervision,
    StaticFiles,
    Limits,
    Timeouts,
    Logging,
    ConfigFiles,
    NoEffect,
    NotYet,
}

impl Group {
    pub const ALL: [Group; 11] = [
        Group::Listening,
        Group::Application,
        Group::Processes,
        Group::Supervision,
        Group::StaticFiles,
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
            Group::Supervision => "Supervision and recycling",
            Group::StaticFiles => "Static files",
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
/// `env-file`, whose `apply` reads the file (skipped by `capataz ctl`).
pub const ENV_FILE: &str = "env-file";
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

/// A no-effect option that takes a value; `apply` validates it.
const fn no_effect_value(
    name: &'static str,
    aliases: &'static [&'static str],
    apply: Apply,
) -> OptionSpec {
    OptionSpec {
        name,
        aliases,
        kind: Kind::NoEffectValue,
        group: Group::NoEffect,
        default: None,
        help: "",
        repeats: true,
        apply,
    }
}

fn validate_nonempty(_: &mut Config, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err("expected a value".into());
    }
    Ok(())
}

/// `plugins = python3`: capataz has Python built in, so a Python plugin
/// means nothing; any other plugin (php, rack, ...) is a language capataz
/// does not serve, and saying so beats a silent no-op.
fn validate_plugins(_: &mut Config, value: &str) -> Result<(), String> {
    let names: Vec<&str> = value
        .split([',', ' '])
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Err("expected a plugin name".into());
    }
    for name in names {
        // uWSGI plugin files are python, python3, python311, python3_12 ...
        // and some distributions install them as python3_plugin.so.
        let bare = name
            .trim_end_matches("_plugin.so")
            .trim_end_matches("_plugin");
        let bare = bare.rsplit('/').next().unwrap_or(bare);
        let is_python = bare.strip_prefix("python").is_some_and(|v| {
            v.bytes()
                .all(|b| b.is_ascii_digit() || b == b'_' || b == b'.')
        });
        if !is_python {
            return Err(format!(
                "plugin '{name}': capataz serves Python WSGI apps only (Python is built in; \
                 'plugins = python3' is accepted and has no effect)"
            ));
        }
    }
    Ok(())
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
        name: "socket",
        aliases: &["uwsgi-socket"],
        kind: Kind::Address,
        group: Group::Listening,
        default: None,
        help: "Speak the uwsgi protocol on ADDR, for nginx `uwsgi_pass` (same address forms as --http).",
        repeats: true,
        apply: |c, v| {
            parse_address(v)?;
            c.socket.push(v.to_string());
            Ok(())
        },
    },
    OptionSpec {
        name: "forwarded-allow-ips",
        aliases: &[],
        kind: Kind::Str,
        group: Group::Listening,
        default: Some(crate::worker::trust::DEFAULT_ALLOWED),
        help: "Peers (IPs or CIDRs, comma-separated; '*' = all) whose X-Forwarded-For/-Proto, \
               Forwarded and PROXY headers are believed. Default: loopback. Unix-socket peers are always trusted.",
        repeats: true,
        apply: |c, v| {
            let entries = crate::worker::trust::parse_entries(v)?;
            // The first value a user gives replaces the loopback default.
            if c.origins.get("forwarded-allow-ips") == Some(&super::Origin::Default) {
                c.forwarded_allow_ips.clear();
            }
            c.forwarded_allow_ips.extend(entries);
            Ok(())
        },
    },
    OptionSpec {
        name: "proxy-protocol",
        aliases: &[],
        kind: Kind::Flag,
        group: Group::Listening,
        default: Some("false"),
        help: "Accept a PROXY protocol v1/v2 header (HAProxy, cloud load balancers) at the start of \
               connections from forwarded-allow-ips peers; it sets REMOTE_ADDR.",
        repeats: false,
        apply: |c, v| {
            c.proxy_protocol = parse_bool(v)?;
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
    OptionSpec {
        name: "chmod-socket",
        aliases: &[],
        kind: Kind::OptionalMode,
        group: Group::Listening,
        default: None,
        help: "Permissions of unix sockets, as 3 octal digits (660); without a value, 666.",
        repeats: false,
        apply: |c, v| {
            c.chmod_socket = Some(parse_socket_mode(v)?);
            Ok(())
        },
    },
    OptionSpec {
        name: "chown-socket",
        aliases: &[],
        kind: Kind::Str,
        group: Group::Listening,
        default: None,
        help: "Owner of unix sockets, as USER or USER:GROUP (names or numbers), set after binding.",
        repeats: false,
        apply: |c, v| {
            let (user, group) = v.split_once(':').unwrap_or((v, ""));
            parse_user_or_group(user)?;
            if v.contains(':') {
                parse_user_or_group(group)?;
            }
            c.chown_socket = Some(v.to_string());
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
        name: "cheaper",
        aliases: &[],
        kind: Kind::Uint,
        group: Group::Processes,
        default: Some("0"),
        help: "Adaptive scaling: keep at least N workers, up to --processes (spare algorithm); 0 is off. Must be lower than --processes.",
        repeats: false,
        apply: |c, v| {
            c.cheaper = parse_count(v, 0)?;
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
        aliases: &["reload-mercy"],
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
    OptionSpec {
        name: "uid",
        aliases: &[],
        kind: Kind::Str,
        group: Group::Processes,
        default: None,
        help: "Run as this user (name or number), dropping privileges after binding sockets.",
        repeats: false,
        apply: |c, v| {
            c.uid = Some(parse_user_or_group(v)?);
            Ok(())
        },
    },
    OptionSpec {
        name: "gid",
        aliases: &[],
        kind: Kind::Str,
        group: Group::Processes,
        default: None,
        help: "Run as this group (name or number), dropping privileges after binding sockets.",
        repeats: false,
        apply: |c, v| {
            c.gid = Some(parse_user_or_group(v)?);
            Ok(())
        },
    },
    OptionSpec {
        name: "no-root-workers",
        aliases: &[],
        kind: Kind::Flag,
        group: Group::Processes,
        default: Some("false"),
        help: "Refuse to run workers as root (set --uid to drop privileges).",
        repeats: false,
        apply: |c, v| {
            c.no_root_workers = parse_bool(v)?;
            Ok(())
        },
    },
    // --- Supervision and recycling ---
    OptionSpec {
        name: "harakiri",
        aliases: &[],
        kind: Kind::Uint,
        group: Group::Supervision,
        default: Some("0"),
        help: "Per-request deadline in seconds, from the moment the app gets the request; past it the worker is logged, traced and killed. 0 is off.",
        repeats: false,
        apply: |c, v| {
            c.harakiri = parse_count(v, 0)?;
            Ok(())
        },
    },
    OptionSpec {
        name: "max-requests",
        aliases: &[],
        kind: Kind::Uint,
        group: Group::Supervision,
        default: Some("0"),
        help: "Recycle a worker gracefully after it has served N requests; 0 is off.",
        repeats: false,
        apply: |c, v| {
            c.max_requests = parse_count(v, 0)?;
            Ok(())
        },
    },
    OptionSpec {
        name: "max-requests-delta",
        aliases: &["max-requests-jitter"],
        kind: Kind::Uint,
        group: Group::Supervision,
        default: Some("0"),
        help: "Spread --max-requests by up to N per worker, so workers do not all recycle at once.",
        repeats: false,
        apply: |c, v| {
            c.max_requests_delta = parse_count(v, 0)?;
            Ok(())
        },
    },
    OptionSpec {
        name: "reload-on-rss",
        aliases: &[],
        kind: Kind::Uint,
        group: Group::Supervision,
        default: Some("0"),
        help: "Recycle a worker gracefully, after its current request, once its RSS exceeds N megabytes; 0 is off.",
        repeats: false,
        apply: |c, v| {
            c.reload_on_rss = parse_count(v, 0)?;
            Ok(())
        },
    },
    OptionSpec {
        name: "touch-reload",
        aliases: &[],
        kind: Kind::Path,
        group: Group::Supervision,
        default: None,
        help: "Reload gracefully when the modification time of PATH changes.",
        repeats: true,
        apply: |c, v| {
            c.touch_reload.push(parse_path(v)?);
            Ok(())
        },
    },
    OptionSpec {
        name: "pidfile",
        aliases: &[],
        kind: Kind::Path,
        group: Group::Supervision,
        default: None,
        help: "Write the master's pid to PATH.",
        repeats: false,
        apply: |c, v| {
            c.pidfile = Some(parse_path(v)?);
            Ok(())
        },
    },
    OptionSpec {
        name: "master-fifo",
        aliases: &[],
        kind: Kind::Path,
        group: Group::Supervision,
        default: None,
        help: "Create a FIFO at PATH for one-letter master commands: r, q, Q, w, +, -, l.",
        repeats: false,
        apply: |c, v| {
            c.master_fifo = Some(parse_path(v)?);
            Ok(())
        },
    },
    OptionSpec {
        name: "vacuum",
        aliases: &[],
        kind: Kind::Flag,
        group: Group::Supervision,
        default: Some("false"),
        help: "On exit, remove our unix sockets (if still ours) and the pidfile.",
        repeats: false,
        apply: |c, v| {
            c.vacuum = parse_bool(v)?;
            Ok(())
        },
    },
    // --- Static files ---
    OptionSpec {
        name: "static-map",
        aliases: &[],
        kind: Kind::StaticMap,
        group: Group::StaticFiles,
        default: None,
        help: "Serve files under URL prefix MOUNT from DIR; a missing file falls through to the app.",
        repeats: true,
        apply: |c, v| {
            c.static_map.push(parse_static_map(v)?);
            Ok(())
        },
    },
    OptionSpec {
        name: "static-expires",
        aliases: &[],
        kind: Kind::StaticExpires,
        group: Group::StaticFiles,
        default: None,
        help: "Set Expires and Cache-Control max-age to SECONDS on static files whose path matches REGEX.",
        repeats: true,
        apply: |c, v| {
            c.static_expires.push(parse_static_expires(v)?);
            Ok(())
        },
    },
    OptionSpec {
        name: "static-index",
        aliases: &[],
        kind: Kind::Str,
        group: Group::StaticFiles,
        default: None,
        help: "File to serve for a directory under a static mount (index.html); tried in order.",
        repeats: true,
        apply: |c, v| {
            c.static_index.push(parse_file_name(v)?);
            Ok(())
        },
    },
    OptionSpec {
        name: "static-gzip",
        aliases: &[],
        kind: Kind::Flag,
        group: Group::StaticFiles,
        default: Some("false"),
        help: "Serve a precompressed .br or .gz sibling of a static file when the client accepts it.",
        repeats: false,
        apply: |c, v| {
            c.static_gzip = parse_bool(v)?;
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
        name: "stream-flush-us",
        aliases: &[],
        kind: Kind::Uint,
        group: Group::Timeouts,
        default: Some("1000"),
        help: "Microseconds a streamed response chunk may wait to leave with the next ones \
               (the first chunk, and any after a pause this long, go at once); 0 sends each \
               chunk at once.",
        repeats: false,
        apply: |c, v| {
            c.stream_flush_us = parse_count(v, 0)?;
            if c.stream_flush_us > 1_000_000 {
                return Err("must be at most 1000000 (one second)".into());
            }
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
    OptionSpec {
        name: "logto",
        aliases: &[],
        kind: Kind::Path,
        group: Group::Logging,
        default: None,
        help: "Write the server log, the request log and the app's stdout/stderr to PATH (appending). SIGUSR1 to the master (or `l` on the master-fifo) reopens it.",
        repeats: false,
        apply: |c, v| {
            c.logto = Some(parse_path(v)?);
            Ok(())
        },
    },
    OptionSpec {
        name: "log-maxsize",
        aliases: &[],
        kind: Kind::Size,
        group: Group::Logging,
        default: Some("0"),
        help: "Rotate the logto file when it reaches this size (to PATH.1 .. PATH.N); 0 = never.",
        repeats: false,
        apply: |c, v| {
            c.log_maxsize = parse_size(v)?;
            Ok(())
        },
    },
    OptionSpec {
        name: "log-backups",
        aliases: &[],
        kind: Kind::Uint,
        group: Group::Logging,
        default: Some("5"),
        help: "Rotated log files kept by log-maxsize.",
        repeats: false,
        apply: |c, v| {
            c.log_backups = parse_count(v, 0)?;
            Ok(())
        },
    },
    OptionSpec {
        name: "log-format",
        aliases: &["logformat"],
        kind: Kind::Str,
        group: Group::Logging,
        default: None,
        help: "Request line format with gunicorn's atoms (%(h)s %(t)s \"%(r)s\" %(s)s %(b)s %(D)s %({header}i)s ...), or json.",
        repeats: false,
        apply: |c, v| {
            if v.is_empty() {
                return Err("expected a format".into());
            }
            c.log_format = Some(v.to_string());
            Ok(())
        },
    },
    OptionSpec {
        name: "log-4xx",
        aliases: &[],
        kind: Kind::Flag,
        group: Group::Logging,
        default: Some("false"),
        help: "Log 4xx responses even with disable-logging.",
        repeats: false,
        apply: |c, v| {
            c.log_4xx = parse_bool(v)?;
            Ok(())
        },
    },
    OptionSpec {
        name: "log-5xx",
        aliases: &[],
        kind: Kind::Flag,
        group: Group::Logging,
        default: Some("false"),
        help: "Log 5xx responses even with disable-logging.",
        repeats: false,
        apply: |c, v| {
            c.log_5xx = parse_bool(v)?;
            Ok(())
        },
    },
    OptionSpec {
        name: "log-slow",
        aliases: &[],
        kind: Kind::Uint,
        group: Group::Logging,
        default: Some("0"),
        help: "Log requests slower than N milliseconds even with disable-logging; 0 = off.",
        repeats: false,
        apply: |c, v| {
            c.log_slow = parse_count(v, 0)?;
            Ok(())
        },
    },
    OptionSpec {
        name: "log-date",
        aliases: &[],
        kind: Kind::OptionalDate,
        group: Group::Logging,
        default: None,
        help: "Prefix request lines with the date, as a strftime format; without a value, uWSGI's ctime stamp.",
        repeats: false,
        apply: |c, v| {
            c.log_date = match v {
                "" | "true" | "yes" | "on" | "1" => Some(crate::logging::DEFAULT_LOG_DATE.into()),
                "false" | "no" | "off" | "0" => None,
                v if v.contains('\0') => return Err("NUL in the format".into()),
                v => Some(v.to_string()),
            };
            Ok(())
        },
    },
    OptionSpec {
        name: "log-micros",
        aliases: &[],
        kind: Kind::Flag,
        group: Group::Logging,
        default: Some("false"),
        help: "Report response times in microseconds (\"in N micros\").",
        repeats: false,
        apply: |c, v| {
            c.log_micros = parse_bool(v)?;
            Ok(())
        },
    },
    OptionSpec {
        name: "log-master",
        aliases: &[],
        kind: Kind::Flag,
        group: Group::Logging,
        default: Some("true"),
        help: "The master relays workers' stdout/stderr (print, tracebacks) into the log, each line prefixed \"[worker N|pid P] \"; off: workers write to the log directly.",
        repeats: false,
        apply: |c, v| {
            c.log_master = parse_bool(v)?;
            Ok(())
        },
    },
    OptionSpec {
        name: "log-sendfile",
        aliases: &[],
        kind: Kind::Flag,
        group: Group::Logging,
        default: Some("false"),
        help: "Log requests answered with sendfile (static files, wsgi.file_wrapper) even with disable-logging.",
        repeats: false,
        apply: |c, v| {
            c.log_sendfile = parse_bool(v)?;
            Ok(())
        },
    },
    OptionSpec {
        name: "memory-report",
        aliases: &[],
        kind: Kind::Flag,
        group: Group::Logging,
        default: Some("false"),
        help: "Add the worker's address space and RSS to each request line, as uWSGI does.",
        repeats: false,
        apply: |c, v| {
            c.memory_report = parse_bool(v)?;
            Ok(())
        },
    },
    OptionSpec {
        name: "stats",
        aliases: &["stats-server"],
        kind: Kind::Address,
        group: Group::Logging,
        default: None,
        help: "Serve uWSGI-compatible stats JSON on ADDR (one document per connection; uwsgitop works).",
        repeats: false,
        apply: |c, v| {
            parse_address(v)?;
            c.stats = Some(v.to_string());
            Ok(())
        },
    },
    OptionSpec {
        name: "stats-http",
        aliases: &[],
        kind: Kind::Flag,
        group: Group::Logging,
        default: Some("false"),
        help: "Speak HTTP on the stats address: / (dashboard), /stats (JSON), /metrics, /health/live, /health/ready.",
        repeats: false,
        apply: |c, v| {
            c.stats_http = parse_bool(v)?;
            Ok(())
        },
    },
    OptionSpec {
        name: "stats-token",
        aliases: &[],
        kind: Kind::Str,
        group: Group::Logging,
        default: None,
        help: "Enable the dashboard's reload/scale/restart buttons on the stats-http listener; their POSTs must carry this token (Authorization: Bearer TOKEN).",
        repeats: false,
        apply: |c, v| {
            if v.trim().is_empty() {
                return Err("stats-token must not be empty".into());
            }
            c.stats_token = Some(v.to_string());
            Ok(())
        },
    },
    OptionSpec {
        name: "metrics",
        aliases: &[],
        kind: Kind::Address,
        group: Group::Logging,
        default: None,
        help: "Serve Prometheus /metrics and /health/live, /health/ready over HTTP on ADDR.",
        repeats: false,
        apply: |c, v| {
            parse_address(v)?;
            c.metrics = Some(v.to_string());
            Ok(())
        },
    },
    OptionSpec {
        name: "control-socket",
        aliases: &[],
        kind: Kind::Path,
        group: Group::Supervision,
        default: None,
        help: "Unix socket for `capataz ctl` (mode 0600, owner only). Default: $XDG_RUNTIME_DIR/capataz.ctl, else /tmp/capataz-<euid>.ctl.",
        repeats: false,
        apply: |c, v| {
            c.control_socket = Some(parse_path(v)?);
            Ok(())
        },
    },
    // --- Configuration files ---
    OptionSpec {
        name: ENV_FILE,
        aliases: &[],
        kind: Kind::Path,
        group: Group::ConfigFiles,
        default: None,
        help: "Read KEY=VALUE lines (# comments, optional `export `, quotes stripped) into the environment of workers and [program:x] processes.",
        repeats: true,
        apply: |c, v| {
            let path = parse_path(v)?;
            let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read: {e}"))?;
            let entries = super::sections::parse_env_file(&text)
                .map_err(|(line, msg)| format!("{}:{line}: {msg}", path.display()))?;
            c.env.extend(entries);
            c.env_files.push(path);
            Ok(())
        },
    },
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
    no_effect("harakiri-verbose"),
    no_effect("auto-procname"),
    no_effect("no-orphans"),
    no_effect_value("plugins", &["plugin"], validate_plugins),
    no_effect_value("plugins-dir", &["plugin-dir"], validate_nonempty),
    no_effect_value("procname-prefix", &[], validate_nonempty),
    no_effect_value("procname-prefix-spaced", &[], validate_nonempty),
    no_effect_value("procname-append", &[], validate_nonempty),
    no_effect_value("procname", &[], validate_nonempty),
    no_effect_value("procname-master", &[], validate_nonempty),
    // --- uWSGI options not supported yet ---
    not_yet("mount"),
    not_yet("offload-threads"),
    not_yet("max-worker-lifetime"),
    not_yet("max-worker-lifetime-delta"),
    not_yet("reload-on-exception"),
    not_yet("add-header"),
    not_yet("py-autoreload"),
    not_yet("socket-timeout"),
    not_yet("http-timeout"),
    not_yet("log-x-forwarded-for"),
    not_yet("manage-script-name"),
    not_yet("cheaper-algo"),
    not_yet("cheaper-initial"),
    not_yet("cheaper-step"),
    not_yet("cheaper-overload"),
    not_yet("cheaper-rss-limit-soft"),
    not_yet("cheaper-rss-limit-hard"),
    not_yet("attach-daemon"),
    not_yet("attach-daemon2"),
    not_yet("smart-attach-daemon"),
    not_yet("static-expires-uri"),
    not_yet("static-expires-type"),
    not_yet("static-skip-ext"),
    not_yet("check-static"),
    not_yet("static-safe"),
    not_yet("route"),
    not_yet("route-uri"),
    not_yet("route-host"),
    not_yet("response-route"),
    not_yet("emperor"),
    not_yet("vassals-include"),
    not_yet("daemonize"),
    not_yet("daemonize2"),
    not_yet("logger"),
    not_yet("req-logger"),
    not_yet("log-reopen"),
    not_yet("log-syslog"),
    not_yet("logfile-chown"),
    not_yet("logfile-chmod"),
    not_yet("umask"),
    not_yet("cron"),
    not_yet("unique-cron"),
    not_yet("spooler"),
    not_yet("spooler-processes"),
    not_yet("mule"),
    not_yet("mules"),
    not_yet("cache2"),
    not_yet("cache"),
    not_yet("touch-chain-reload"),
    not_yet("touch-workers-reload"),
    not_yet("fs-reload"),
    not_yet("py-call-osafterfork"),
    not_yet("import"),
    not_yet("shared-import"),
    not_yet("pyargv"),
    not_yet("harakiri-graceful-timeout"),
    not_yet("worker-exec"),
    not_yet("hook-pre-app"),
    not_yet("hook-post-app"),
    not_yet("exec-pre-app"),
    not_yet("exec-post-app"),
    not_yet("exec-asap"),
    not_yet("http-to"),
    not_yet("http-keepalive"),
    not_yet("http-auto-chunked"),
    not_yet("https"),
    not_yet("ssl-socket"),
    not_yet("so-keepalive"),
    not_yet("reuse-port"),
    not_yet("freebind"),
    not_yet("ignore-sigpipe"),
    not_yet("ignore-write-errors"),
    not_yet("disable-write-exception"),
    not_yet("limit-as"),
    not_yet("evil-reload-on-rss"),
    not_yet("evil-reload-on-as"),
    not_yet("reload-on-as"),
    not_yet("gevent"),
    not_yet("async"),
    not_yet("ugreen"),
    not_yet("http-websockets"),
    not_yet("wsgi-disable-file-wrapper"),
    not_yet("listen-queue-alarm"),
    not_yet("alarm"),
    not_yet("subscribe-to"),
    not_yet("carbon"),
    not_yet("stats-push"),
    not_yet("cpu-affinity"),
    not_yet("threads-stacksize"),
    not_yet("vhost"),
    not_yet("no-default-app"),
    not_yet("touch-logreopen"),
    not_yet("python-autoreload"),
    not_yet("max-fd"),
    not_yet("idle"),
    not_yet("die-on-idle"),
    not_yet("enable-metrics"),
    not_yet("http-processes"),
    not_yet("disable-sendfile"),
    not_yet("logto2"),
    not_yet("log-encoder"),
    not_yet("upload-progress"),
    not_yet("honour-stdin"),
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
