//! `[program:NAME]` and `[socket:NAME]` ini sections (supervisord's and
//! circus's keys), read from every ini file the configuration loaded.
//!
//! These sections are not options: their keys are validated here, each
//! unknown key is an error naming the file and line (with a did-you-mean),
//! and values are kept raw where they hold supervisord templates
//! (`%(program_name)s`, `%(process_num)02d`, `%(here)s`, `%(ENV_X)s`), which
//! [`expand_template`] fills per process when the program is spawned.
//! uWSGI's `%(option)` / `$(VAR)` expansion does not apply inside them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::error::{ConfigError, Location};
use super::ini::{parse_sections, IniEntry, IniSection};
use super::values::{closest, parse_bool, parse_size, parse_uint};

/// supervisord's default `stdout_logfile_maxbytes`.
pub const DEFAULT_LOG_MAXBYTES: u64 = 50 << 20;
/// supervisord's default `stdout_logfile_backups`.
pub const DEFAULT_LOG_BACKUPS: u32 = 10;

/// `autorestart`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AutoRestart {
    Always,
    Never,
    /// Restart only when the exit code is not in `exitcodes` (the default).
    Unexpected,
}

/// Where a program's stdout or stderr goes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LogTarget {
    /// Unset: capataz's own stderr, each line prefixed `[program NAME] `.
    Prefixed,
    /// `-`: capataz's own stdout (for stdout) or stderr (for stderr), as is.
    Inherit,
    /// `NONE`: discarded.
    Discard,
    /// A file, rotated at `maxbytes` (0 = never) keeping `backups` old files.
    File {
        path: String,
        maxbytes: u64,
        backups: u32,
    },
}

/// One `[program:NAME]` section.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProgramConfig {
    pub name: String,
    /// Raw template; split shell-like (no shell) after expansion.
    pub command: String,
    pub numprocs: usize,
    pub numprocs_start: usize,
    /// Raw template.
    pub process_name: String,
    pub directory: Option<String>,
    /// `KEY="val",KEY2=val2`; values are raw templates.
    pub environment: Vec<(String, String)>,
    pub user: Option<String>,
    pub umask: Option<u32>,
    pub autostart: bool,
    pub autorestart: AutoRestart,
    pub exitcodes: Vec<i32>,
    pub startsecs: u64,
    /// `None` for `startretries = -1`: retry forever.
    pub startretries: Option<u32>,
    /// The linear backoff step: the n-th retry waits n × this many seconds.
    pub backoffsecs: u64,
    pub stopsignal: i32,
    pub stopwaitsecs: u64,
    pub stopasgroup: bool,
    pub killasgroup: bool,
    pub priority: i32,
    pub redirect_stderr: bool,
    pub stdout: LogTarget,
    pub stderr: LogTarget,
    /// `%(here)s`: the directory of the file holding the section.
    pub here: PathBuf,
    /// "file:line" of the section header, for messages.
    pub origin: String,
}

/// One `[socket:NAME]` section: bound by the master, passed to programs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SocketConfig {
    pub name: String,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: Option<PathBuf>,
    /// Applied to a unix socket's mode (0o777 & !umask).
    pub umask: u32,
    pub backlog: u32,
    pub origin: String,
}

const PROGRAM_KEYS: &[&str] = &[
    "command",
    "numprocs",
    "numprocs_start",
    "process_name",
    "directory",
    "environment",
    "user",
    "umask",
    "autostart",
    "autorestart",
    "exitcodes",
    "startsecs",
    "startretries",
    "backoffsecs",
    "stopsignal",
    "stopwaitsecs",
    "stopasgroup",
    "killasgroup",
    "priority",
    "redirect_stderr",
    "stdout_logfile",
    "stdout_logfile_maxbytes",
    "stdout_logfile_backups",
    "stderr_logfile",
    "stderr_logfile_maxbytes",
    "stderr_logfile_backups",
];

const SOCKET_KEYS: &[&str] = &["host", "port", "path", "umask", "backlog"];

/// Reads the `[program:*]` and `[socket:*]` sections of every file, in order.
/// Names must be unique across files.
pub fn load(files: &[PathBuf]) -> Result<(Vec<ProgramConfig>, Vec<SocketConfig>), ConfigError> {
    let mut programs: Vec<ProgramConfig> = Vec::new();
    let mut sockets: Vec<SocketConfig> = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            path: file.clone(),
            source,
        })?;
        let sections = parse_sections(&text).map_err(|(line, message)| ConfigError::Syntax {
            at: at(file, line),
            message,
        })?;
        let here = file.parent().unwrap_or(Path::new("/")).to_path_buf();
        for section in &sections {
            let header_line = section
                .entries
                .first()
                .map_or(1, |e| e.line.saturating_sub(1));
            if let Some(name) = section.name.strip_prefix("program:") {
                let program = parse_program(file, &here, name, section)?;
                if let Some(other) = programs.iter().find(|p| p.name == program.name) {
                    return Err(ConfigError::Syntax {
                        at: at(file, header_line.max(1)),
                        message: format!(
                            "[program:{name}] is defined twice (first at {})",
                            other.origin
                        ),
                    });
                }
                programs.push(program);
            } else if let Some(name) = section.name.strip_prefix("socket:") {
                let socket = parse_socket(file, name, section)?;
                if sockets.iter().any(|s| s.name == socket.name) {
                    return Err(ConfigError::Syntax {
                        at: at(file, header_line.max(1)),
                        message: format!("[socket:{name}] is defined twice"),
                    });
                }
                sockets.push(socket);
            }
        }
    }
    // `$(capataz.sockets.NAME)` must name a declared socket.
    for program in &programs {
        for name in socket_references(&program.command) {
            if !sockets.iter().any(|s| s.name == name) {
                return Err(ConfigError::Invalid(format!(
                    "{}: [program:{}] command uses $(capataz.sockets.{name}) but there is no [socket:{name}] section",
                    program.origin, program.name
                )));
            }
        }
    }
    programs.sort_by_key(|p| p.priority);
    Ok((programs, sockets))
}

fn at(file: &Path, line: usize) -> Location {
    Location::File {
        path: file.to_path_buf(),
        line: Some(line),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Checks keys against `known`; returns (key, value, line) with bare keys as "true".
fn entries<'a>(
    file: &Path,
    section: &'a IniSection,
    known: &'static [&'static str],
) -> Result<Vec<(&'a str, String, usize)>, ConfigError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for IniEntry { line, key, value } in &section.entries {
        if !known.contains(&key.as_str()) {
            let hint = match closest(key, known.iter().copied()) {
                Some(s) => format!(" (did you mean '{s}'?)"),
                None => String::new(),
            };
            return Err(ConfigError::Syntax {
                at: at(file, *line),
                message: format!("unknown key '{key}' in [{}]{hint}", section.name),
            });
        }
        if !seen.insert(key.as_str()) {
            return Err(ConfigError::Syntax {
                at: at(file, *line),
                message: format!("'{key}' is set twice in [{}]", section.name),
            });
        }
        out.push((
            key.as_str(),
            value.clone().unwrap_or_else(|| "true".into()),
            *line,
        ));
    }
    Ok(out)
}

fn parse_program(
    file: &Path,
    here: &Path,
    name: &str,
    section: &IniSection,
) -> Result<ProgramConfig, ConfigError> {
    let header = section
        .entries
        .first()
        .map_or(1, |e| e.line.saturating_sub(1).max(1));
    let origin = format!("{}:{header}", file.display());
    if !valid_name(name) {
        return Err(ConfigError::Syntax {
            at: at(file, header),
            message: format!(
                "[program:{name}]: a program name uses letters, digits, '_', '-' and '.'"
            ),
        });
    }
    let mut p = ProgramConfig {
        name: name.to_string(),
        command: String::new(),
        numprocs: 1,
        numprocs_start: 0,
        process_name: String::new(),
        directory: None,
        environment: Vec::new(),
        user: None,
        umask: None,
        autostart: true,
        autorestart: AutoRestart::Unexpected,
        exitcodes: vec![0],
        startsecs: 1,
        startretries: Some(3),
        backoffsecs: 1,
        stopsignal: libc::SIGTERM,
        stopwaitsecs: 10,
        stopasgroup: false,
        killasgroup: false,
        priority: 999,
        redirect_stderr: false,
        stdout: LogTarget::Prefixed,
        stderr: LogTarget::Prefixed,
        here: here.to_path_buf(),
        origin,
    };
    let (mut out_file, mut err_file) = (None::<String>, None::<String>);
    let (mut out_max, mut err_max) = (DEFAULT_LOG_MAXBYTES, DEFAULT_LOG_MAXBYTES);
    let (mut out_backups, mut err_backups) = (DEFAULT_LOG_BACKUPS, DEFAULT_LOG_BACKUPS);
    let mut process_name_line = header;
    for (key, value, line) in entries(file, section, PROGRAM_KEYS)? {
        let invalid = |reason: String| ConfigError::InvalidValue {
            at: at(file, line),
            option: key.to_string(),
            value: value.clone(),
            reason,
        };
        let count = |v: &str| -> Result<u64, ConfigError> { parse_uint(v).map_err(invalid) };
        match key {
            "command" => p.command = value.clone(),
            "numprocs" => {
                p.numprocs = count(&value)? as usize;
                if p.numprocs == 0 {
                    return Err(invalid("must be at least 1".into()));
                }
            }
            "numprocs_start" => p.numprocs_start = count(&value)? as usize,
            "process_name" => {
                p.process_name = value.clone();
                process_name_line = line;
            }
            "directory" => p.directory = Some(value.clone()),
            "environment" => p.environment = parse_environment(&value).map_err(invalid)?,
            "user" => p.user = Some(value.clone()),
            "umask" => {
                p.umask = Some(
                    u32::from_str_radix(&value, 8)
                        .ok()
                        .filter(|m| *m <= 0o777)
                        .ok_or_else(|| invalid("expected octal digits, like 022".into()))?,
                )
            }
            "autostart" => p.autostart = parse_bool(&value).map_err(invalid)?,
            "autorestart" => {
                p.autorestart = match value.to_ascii_lowercase().as_str() {
                    "unexpected" => AutoRestart::Unexpected,
                    v => match parse_bool(v) {
                        Ok(true) => AutoRestart::Always,
                        Ok(false) => AutoRestart::Never,
                        Err(_) => return Err(invalid("expected true, false or unexpected".into())),
                    },
                }
            }
            "exitcodes" => {
                p.exitcodes = value
                    .split(',')
                    .map(|c| {
                        c.trim()
                            .parse::<i32>()
                            .ok()
                            .filter(|c| (0..=255).contains(c))
                    })
                    .collect::<Option<Vec<i32>>>()
                    .ok_or_else(|| {
                        invalid("expected exit codes (0-255) separated by commas".into())
                    })?
            }
            "startsecs" => p.startsecs = count(&value)?,
            "startretries" => {
                p.startretries = if value.trim() == "-1" {
                    None
                } else {
                    Some(
                        u32::try_from(count(&value)?)
                            .map_err(|_| invalid("number too large".into()))?,
                    )
                }
            }
            "backoffsecs" => {
                p.backoffsecs = count(&value)?;
                if p.backoffsecs == 0 {
                    return Err(invalid("must be at least 1".into()));
                }
            }
            "stopsignal" => p.stopsignal = parse_signal(&value).map_err(invalid)?,
            "stopwaitsecs" => p.stopwaitsecs = count(&value)?,
            "stopasgroup" => p.stopasgroup = parse_bool(&value).map_err(invalid)?,
            "killasgroup" => p.killasgroup = parse_bool(&value).map_err(invalid)?,
            "priority" => {
                p.priority = value
                    .trim()
                    .parse()
                    .map_err(|_| invalid("expected a whole number".into()))?
            }
            "redirect_stderr" => p.redirect_stderr = parse_bool(&value).map_err(invalid)?,
            "stdout_logfile" => out_file = Some(value.clone()),
            "stderr_logfile" => err_file = Some(value.clone()),
            "stdout_logfile_maxbytes" => out_max = parse_log_size(&value).map_err(invalid)?,
            "stderr_logfile_maxbytes" => err_max = parse_log_size(&value).map_err(invalid)?,
            "stdout_logfile_backups" => {
                out_backups =
                    u32::try_from(count(&value)?).map_err(|_| invalid("number too large".into()))?
            }
            "stderr_logfile_backups" => {
                err_backups =
                    u32::try_from(count(&value)?).map_err(|_| invalid("number too large".into()))?
            }
            _ => unreachable!("key checked against PROGRAM_KEYS"),
        }
    }
    if p.command.trim().is_empty() {
        return Err(ConfigError::Syntax {
            at: at(file, header),
            message: format!("[program:{name}] needs a 'command'"),
        });
    }
    // supervisord: killasgroup follows stopasgroup.
    p.killasgroup |= p.stopasgroup;
    if p.process_name.is_empty() {
        p.process_name = if p.numprocs > 1 {
            "%(program_name)s_%(process_num)s".into()
        } else {
            "%(program_name)s".into()
        };
    } else if p.numprocs > 1 && !p.process_name.contains("%(process_num)") {
        return Err(ConfigError::Syntax {
            at: at(file, process_name_line),
            message: format!(
                "[program:{name}]: numprocs is {} so process_name must contain %(process_num)s",
                p.numprocs
            ),
        });
    }
    // Templates are checked now so their errors carry the line.
    let check = |template: &str| {
        expand_template(template, &|k| match k {
            "program_name" | "group_name" | "here" => Some("x".into()),
            "process_num" | "numprocs" => Some("0".into()),
            _ => Some(String::new()),
        })
    };
    if let Err(message) = check(&p.process_name).and(check(&p.command)) {
        return Err(ConfigError::Syntax {
            at: at(file, header),
            message: format!("[program:{name}]: {message}"),
        });
    }
    p.stdout = log_target(out_file, out_max, out_backups);
    p.stderr = if p.redirect_stderr {
        LogTarget::Discard
    } else {
        log_target(err_file, err_max, err_backups)
    };
    Ok(p)
}

fn log_target(file: Option<String>, maxbytes: u64, backups: u32) -> LogTarget {
    match file.as_deref() {
        None | Some("") => LogTarget::Prefixed,
        Some("-") => LogTarget::Inherit,
        Some("NONE") | Some("none") => LogTarget::Discard,
        Some(path) => LogTarget::File {
            path: path.to_string(),
            maxbytes,
            backups,
        },
    }
}

fn parse_socket(
    file: &Path,
    name: &str,
    section: &IniSection,
) -> Result<SocketConfig, ConfigError> {
    let header = section
        .entries
        .first()
        .map_or(1, |e| e.line.saturating_sub(1).max(1));
    if !valid_name(name) {
        return Err(ConfigError::Syntax {
            at: at(file, header),
            message: format!(
                "[socket:{name}]: a socket name uses letters, digits, '_', '-' and '.'"
            ),
        });
    }
    let mut s = SocketConfig {
        name: name.to_string(),
        host: None,
        port: None,
        path: None,
        umask: 0o022,
        backlog: 1024,
        origin: format!("{}:{header}", file.display()),
    };
    for (key, value, line) in entries(file, section, SOCKET_KEYS)? {
        let invalid = |reason: &str| ConfigError::InvalidValue {
            at: at(file, line),
            option: key.to_string(),
            value: value.clone(),
            reason: reason.to_string(),
        };
        match key {
            "host" => s.host = Some(value.clone()),
            "port" => {
                s.port = Some(
                    value
                        .parse()
                        .map_err(|_| invalid("expected a port number"))?,
                )
            }
            "path" => s.path = Some(PathBuf::from(&value)),
            "umask" => {
                s.umask = u32::from_str_radix(&value, 8)
                    .ok()
                    .filter(|m| *m <= 0o777)
                    .ok_or_else(|| invalid("expected octal digits, like 022"))?
            }
            "backlog" => {
                s.backlog = value
                    .parse()
                    .ok()
                    .filter(|b| *b > 0)
                    .ok_or_else(|| invalid("expected a positive number"))?
            }
            _ => unreachable!("key checked against SOCKET_KEYS"),
        }
    }
    let inet = s.host.is_some() || s.port.is_some();
    if s.path.is_some() && inet {
        return Err(ConfigError::Syntax {
            at: at(file, header),
            message: format!("[socket:{name}]: set either 'path' or 'host' and 'port', not both"),
        });
    }
    if s.path.is_none() && s.port.is_none() {
        return Err(ConfigError::Syntax {
            at: at(file, header),
            message: format!("[socket:{name}] needs 'path', or 'port' (and 'host')"),
        });
    }
    if s.port.is_some() && s.host.is_none() {
        s.host = Some("127.0.0.1".into());
    }
    Ok(s)
}

/// supervisord sizes: plain bytes or with KB, MB, GB (also K, M, G).
pub fn parse_log_size(value: &str) -> Result<u64, String> {
    let v = value.trim();
    let v = v
        .strip_suffix('B')
        .or_else(|| v.strip_suffix('b'))
        .filter(|s| s.ends_with(|c: char| c.is_ascii_alphabetic()))
        .unwrap_or(v);
    parse_size(v).map_err(|_| "expected bytes, optionally with KB, MB or GB".into())
}

/// A signal by name (`TERM`, `SIGTERM`, any case) or number.
pub fn parse_signal(value: &str) -> Result<i32, String> {
    let upper = value.trim().to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let sig = match name {
        "TERM" => libc::SIGTERM,
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "KILL" => libc::SIGKILL,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "STOP" => libc::SIGSTOP,
        "CONT" => libc::SIGCONT,
        "WINCH" => libc::SIGWINCH,
        "TTIN" => libc::SIGTTIN,
        "TTOU" => libc::SIGTTOU,
        "ALRM" => libc::SIGALRM,
        other => other
            .parse::<i32>()
            .ok()
            .filter(|n| (1..=64).contains(n))
            .ok_or_else(|| format!("unknown signal '{value}'"))?,
    };
    Ok(sig)
}

/// `KEY="val",KEY2=val2` (supervisord): commas inside quotes are kept.
pub fn parse_environment(value: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = value.trim();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or("expected KEY=value pairs separated by commas")?;
        let key = rest[..eq].trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("invalid variable name '{key}'"));
        }
        rest = rest[eq + 1..].trim_start();
        let val;
        if let Some(quote) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') {
            let end = rest[1..]
                .find(quote)
                .ok_or_else(|| format!("unterminated quote in the value of {key}"))?;
            val = rest[1..1 + end].to_string();
            rest = rest[end + 2..].trim_start();
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            val = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        out.push((key.to_string(), val));
        rest = match rest.strip_prefix(',') {
            Some(r) => r.trim_start(),
            None if rest.is_empty() => rest,
            None => return Err(format!("expected ',' after the value of {key}")),
        };
    }
    Ok(out)
}

/// Python %-style templates as supervisord writes them: `%(name)s`,
/// `%(name)d`, `%(name)02d`, and `%%`. `lookup` answers a name (`None` is an
/// error).
pub fn expand_template(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(r) = after.strip_prefix('%') {
            out.push('%');
            rest = r;
            continue;
        }
        let Some(inner) = after.strip_prefix('(') else {
            return Err(format!(
                "'%' must start %(name)s or be written %% in '{template}'"
            ));
        };
        let close = inner
            .find(')')
            .ok_or_else(|| format!("unterminated '%(' in '{template}'"))?;
        let name = &inner[..close];
        let spec_start = &inner[close + 1..];
        let conv = spec_start
            .find(|c: char| c.is_ascii_alphabetic())
            .ok_or_else(|| format!("missing conversion after %({name}) in '{template}'"))?;
        let flags = &spec_start[..conv];
        let kind = spec_start.as_bytes()[conv];
        let value =
            lookup(name).ok_or_else(|| format!("unknown name %({name}) in '{template}'"))?;
        match kind {
            b's' => out.push_str(&value),
            b'd' => {
                let width: usize = flags.trim_start_matches('0').parse().unwrap_or(0);
                if flags.starts_with('0') {
                    out.push_str(&format!("{value:0>width$}"));
                } else {
                    out.push_str(&format!("{value:>width$}"));
                }
            }
            other => {
                return Err(format!(
                    "unsupported conversion '%({name}){}{}' in '{template}'",
                    flags, other as char
                ))
            }
        }
        rest = &spec_start[conv + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Names used as `$(capataz.sockets.NAME)` in a command.
pub fn socket_references(command: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = command;
    while let Some(pos) = rest.find("$(capataz.sockets.") {
        let after = &rest[pos + "$(capataz.sockets.".len()..];
        match after.find(')') {
            Some(end) => {
                names.push(after[..end].to_string());
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    names
}

/// Reads `env-file` contents: `KEY=VALUE` lines, `#` comments, blank lines,
/// an optional `export ` prefix, and matching surrounding quotes stripped.
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut out = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let Some((key, value)) = line.split_once('=') else {
            return Err((index + 1, format!("expected KEY=VALUE, got '{line}'")));
        };
        let key = key.trim();
        if key.is_empty()
            || key.as_bytes()[0].is_ascii_digit()
            || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err((index + 1, format!("invalid variable name '{key}'")));
        }
        let value = value.trim();
        let value = ['"', '\'']
            .iter()
            .find_map(|q| {
                value
                    .strip_prefix(*q)
                    .and_then(|v| v.strip_suffix(*q))
                    .filter(|_| value.len() >= 2)
            })
            .unwrap_or(value);
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::testutil::TempDir;
    use super::*;

    fn load_text(text: &str) -> Result<(Vec<ProgramConfig>, Vec<SocketConfig>), String> {
        let dir = TempDir::new();
        let path = dir.write("app.ini", text);
        load(&[path]).map_err(|e| e.to_string())
    }

    #[test]
    fn program_defaults_follow_supervisord() {
        let (programs, _) =
            load_text("[uwsgi]\n[program:celery]\ncommand = celery worker\n").unwrap();
        let p = &programs[0];
        assert_eq!(p.name, "celery");
        assert_eq!(p.process_name, "%(program_name)s");
        assert_eq!((p.numprocs, p.startsecs, p.startretries), (1, 1, Some(3)));
        assert_eq!(p.autorestart, AutoRestart::Unexpected);
        assert_eq!(p.exitcodes, vec![0]);
        assert_eq!((p.stopsignal, p.stopwaitsecs), (libc::SIGTERM, 10));
        assert_eq!(p.stdout, LogTarget::Prefixed);
    }

    #[test]
    fn unknown_key_names_line_and_suggests() {
        let err =
            load_text("[uwsgi]\n\n[program:x]\ncommand = true\nautorestrat = false\n").unwrap_err();
        assert!(err.contains("app.ini:5"), "{err}");
        assert!(err.contains("autorestrat"), "{err}");
        assert!(err.contains("did you mean 'autorestart'"), "{err}");
    }

    #[test]
    fn numprocs_needs_process_num_in_process_name() {
        let err =
            load_text("[program:x]\ncommand = true\nnumprocs = 2\nprocess_name = x\n").unwrap_err();
        assert!(
            err.contains("app.ini:4") && err.contains("%(process_num)s"),
            "{err}"
        );
        let (p, _) = load_text("[program:x]\ncommand = true\nnumprocs = 2\n").unwrap();
        assert_eq!(p[0].process_name, "%(program_name)s_%(process_num)s");
    }

    #[test]
    fn log_keys_and_sizes() {
        let (p, _) = load_text(
            "[program:x]\ncommand = true\nstdout_logfile = /tmp/x.log\nstdout_logfile_maxbytes = 1KB\nstdout_logfile_backups = 2\nredirect_stderr = true\n",
        )
        .unwrap();
        assert_eq!(
            p[0].stdout,
            LogTarget::File {
                path: "/tmp/x.log".into(),
                maxbytes: 1024,
                backups: 2
            }
        );
        assert_eq!(p[0].stderr, LogTarget::Discard);
        assert_eq!(parse_log_size("50MB"), Ok(50 << 20));
        assert_eq!(parse_log_size("1GB"), Ok(1 << 30));
        assert_eq!(parse_log_size("10"), Ok(10));
        assert!(parse_log_size("lots").is_err());
    }

    #[test]
    fn startretries_minus_one_is_forever_and_priority_orders() {
        let (p, _) = load_text(
            "[program:b]\ncommand = b\npriority = 20\nstartretries = -1\n[program:a]\ncommand = a\npriority = 10\n",
        )
        .unwrap();
        assert_eq!(p[0].name, "a");
        assert_eq!(p[1].startretries, None);
    }

    #[test]
    fn environment_values_with_quotes_and_commas() {
        assert_eq!(
            parse_environment(r#"A="1,2",B=x, C='y z'"#).unwrap(),
            vec![
                ("A".into(), "1,2".into()),
                ("B".into(), "x".into()),
                ("C".into(), "y z".into())
            ]
        );
        assert!(parse_environment("A=\"open").is_err());
    }

    #[test]
    fn templates_expand_like_python() {
        let lookup = |k: &str| match k {
            "program_name" => Some("web".to_string()),
            "process_num" => Some("3".to_string()),
            _ => None,
        };
        assert_eq!(
            expand_template("%(program_name)s-%(process_num)02d 100%%", &lookup).unwrap(),
            "web-03 100%"
        );
        assert!(expand_template("%(nope)s", &lookup).is_err());
        assert!(expand_template("50%", &lookup).is_err());
    }

    #[test]
    fn sockets_need_an_address_and_references_must_exist() {
        let (_, s) = load_text("[socket:web]\nhost = 127.0.0.1\nport = 8080\n").unwrap();
        assert_eq!((s[0].port, s[0].umask), (Some(8080), 0o022));
        assert!(load_text("[socket:web]\numask = 000\n")
            .unwrap_err()
            .contains("needs"));
        let err =
            load_text("[program:x]\ncommand = srv --fd $(capataz.sockets.nope)\n").unwrap_err();
        assert!(err.contains("[socket:nope]"), "{err}");
    }

    #[test]
    fn env_file_lines() {
        let text = "# c\n\nexport A=1\nB=\"two words\"\nC='x'\nD=\n";
        assert_eq!(
            parse_env_file(text).unwrap(),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "x".into()),
                ("D".into(), "".into())
            ]
        );
        assert_eq!(parse_env_file("ok=1\nbad line\n").unwrap_err().0, 2);
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("TERM"), Ok(libc::SIGTERM));
        assert_eq!(parse_signal("sigquit"), Ok(libc::SIGQUIT));
        assert_eq!(parse_signal("9"), Ok(9));
        assert!(parse_signal("NOPE").is_err());
    }
}
