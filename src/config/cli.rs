//! The command line: `--name value`, `--name=value`, bare boolean `--flag`
//! (a boolean takes a value only as `--flag=false`), an optional value
//! (`--chmod-socket` alone, when the next argument is another option or
//! there is none, means 666), `-h`, `--help`,
//! `--version` / `-V`, `--print-config`, and a positional `FILE.ini` as a
//! shorthand for `--ini FILE.ini` (as uWSGI allows). `--help` is generated
//! from the option table.

use std::ffi::OsString;
use std::fmt::Write as _;

use super::error::{ConfigError, Location};
use super::options::{lookup, Group, Kind, Lookup, INI, OPTIONS};
use super::{Origin, Setting};

/// Flags that are commands rather than options; not in the table because
/// they make no sense in an ini file or the environment.
const META_FLAGS: [&str; 3] = ["help", "version", "print-config"];

/// What the command line asks for.
#[derive(Debug)]
pub(super) enum Outcome {
    Help,
    Version,
    Run(Args),
}

/// The options given on the command line, in order.
#[derive(Debug, Default)]
pub(super) struct Args {
    pub settings: Vec<Setting>,
    /// `--ini` requests (`FILE` or `FILE:SECTION`), in order.
    pub ini: Vec<(String, Location)>,
    pub print_config: bool,
}

/// Parses the arguments (without argv[0]).
pub(super) fn parse(args: Vec<OsString>) -> Result<Outcome, ConfigError> {
    let args = args
        .into_iter()
        .map(|arg| {
            arg.into_string().map_err(|arg| ConfigError::Syntax {
                at: Location::CommandLine,
                message: format!("argument is not valid UTF-8: {}", arg.to_string_lossy()),
            })
        })
        .collect::<Result<Vec<String>, _>>()?;

    // Help and version win over everything else, even a broken option
    // before them: asking for help should never produce an error.
    for arg in &args {
        match arg.as_str() {
            "-h" | "--help" => return Ok(Outcome::Help),
            "-V" | "--version" => return Ok(Outcome::Version),
            _ => {}
        }
    }

    let mut parsed = Args::default();
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        if arg == "--print-config" {
            parsed.print_config = true;
            continue;
        }
        let Some(body) = arg.strip_prefix("--") else {
            if arg.starts_with('-') && arg.len() > 1 {
                // `-processes 4`: suggest the long form if it exists.
                let suggestion = match lookup(&arg[1..]) {
                    Lookup::Found(_) | Lookup::NotYet(_) => Some(format!("-{arg}")),
                    Lookup::Unknown { .. } => None,
                };
                return Err(ConfigError::UnknownOption {
                    at: Location::CommandLine,
                    option: arg,
                    suggestion,
                });
            }
            if arg.ends_with(".ini") {
                parsed.ini.push((arg, Location::CommandLine));
                continue;
            }
            return Err(ConfigError::Syntax {
                at: Location::CommandLine,
                message: format!("unexpected argument '{arg}' (options start with --)"),
            });
        };
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (body, None),
        };
        let written = format!("--{name}");
        let spec = match lookup(name) {
            Lookup::Found(spec) => spec,
            Lookup::NotYet(_) => {
                return Err(ConfigError::NotSupportedYet {
                    at: Location::CommandLine,
                    option: written,
                })
            }
            Lookup::Unknown { suggestion } => {
                let suggestion = suggestion.or_else(|| {
                    super::values::closest(name, META_FLAGS).filter(|_| !name.is_empty())
                });
                return Err(ConfigError::UnknownOption {
                    at: Location::CommandLine,
                    option: written,
                    suggestion: suggestion.map(|s| format!("--{s}")),
                });
            }
        };
        let bare = spec.kind.bare_value().filter(|_| {
            // A boolean never takes the next word; an optional value takes
            // it unless it is another option.
            spec.kind.is_boolean() || args.peek().is_none_or(|next| next.starts_with('-'))
        });
        let value = match (inline, bare) {
            (Some(value), _) => value,
            (None, Some(bare)) => bare.to_string(),
            (None, None) => args.next().ok_or_else(|| ConfigError::MissingValue {
                at: Location::CommandLine,
                option: written.clone(),
            })?,
        };
        if spec.name == INI {
            parsed.ini.push((value, Location::CommandLine));
        } else {
            parsed.settings.push(Setting {
                spec,
                value,
                origin: Origin::Cli,
                written,
            });
        }
    }
    Ok(Outcome::Run(parsed))
}

/// Column where help text starts.
const HELP_COLUMN: usize = 34;
/// Width `--help` wraps to.
const HELP_WIDTH: usize = 80;

/// `--help`, generated from the option table: grouped, with aliases,
/// defaults and which options repeat.
pub(super) fn help() -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "capataz {} — an application server for Python WSGI apps\n\n\
         Usage:\n    capataz [OPTIONS]\n    capataz --ini FILE[:SECTION] [OPTIONS]\n\n\
         Every option can also be set in an ini file, as `name = value` in a [capataz]\n\
         or [uwsgi] section, or in the environment as CAPATAZ_NAME (dashes become\n\
         underscores). Precedence: defaults < ini < environment < command line.\n\
         Booleans take on/off, yes/no, true/false, 1/0; a bare --flag means true.\n\
         Sizes are bytes, optionally with a K, M or G suffix.\n\n\
         General:\n    -h, --help                    Print this help.\n    \
         -V, --version                 Print the version.\n    \
         --print-config                Print the configuration, and where each\n    \
         \x20                             value came from, then exit.",
        env!("CARGO_PKG_VERSION")
    );
    for group in Group::ALL {
        let options: Vec<_> = OPTIONS.iter().filter(|o| o.group == group).collect();
        if options.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{}:", group.title());
        if matches!(group, Group::NoEffect | Group::NotYet) {
            let names: Vec<String> = options
                .iter()
                .flat_map(|o| o.names())
                .map(|name| format!("--{name}"))
                .collect();
            wrap_list(&mut out, &names);
            continue;
        }
        for spec in options {
            let mut left = format!("    --{}", spec.name);
            if spec.kind != Kind::Flag {
                let _ = write!(left, " {}", spec.kind.value_name());
            }
            if left.len() + 2 > HELP_COLUMN {
                let _ = writeln!(out, "{left}");
                left.clear();
            }
            for (i, line) in wrap(spec.help, HELP_WIDTH - HELP_COLUMN).iter().enumerate() {
                let left = if i == 0 { left.as_str() } else { "" };
                let _ = writeln!(out, "{left:HELP_COLUMN$}{line}");
            }
            let mut notes = Vec::new();
            if !spec.aliases.is_empty() {
                let aliases: Vec<String> = spec.aliases.iter().map(|a| format!("--{a}")).collect();
                notes.push(format!("[aliases: {}]", aliases.join(", ")));
            }
            if let Some(default) = spec.default {
                notes.push(format!("[default: {default}]"));
            }
            if spec.repeats {
                notes.push("[repeats]".to_string());
            }
            if !notes.is_empty() {
                let _ = writeln!(out, "{:HELP_COLUMN$}{}", "", notes.join(" "));
            }
        }
    }
    out
}

/// Splits `text` into lines of at most `width` characters, at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    lines
}

/// Writes `names` comma-separated, wrapped at 80 columns, indented.
fn wrap_list(out: &mut String, names: &[String]) {
    let mut line = String::from("   ");
    for (i, name) in names.iter().enumerate() {
        let item = if i + 1 < names.len() {
            format!(" {name},")
        } else {
            format!(" {name}")
        };
        if line.len() + item.len() > HELP_WIDTH {
            let _ = writeln!(out, "{line}");
            line = String::from("   ");
        }
        line.push_str(&item);
    }
    let _ = writeln!(out, "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Args, ConfigError> {
        match parse(args.iter().map(OsString::from).collect())? {
            Outcome::Run(args) => Ok(args),
            other => panic!("expected Run, got {other:?}"),
        }
    }

    fn pairs(args: &Args) -> Vec<(&str, &str, &str)> {
        args.settings
            .iter()
            .map(|s| (s.spec.name, s.value.as_str(), s.written.as_str()))
            .collect()
    }

    fn error(args: &[&str]) -> String {
        match parse(args.iter().map(OsString::from).collect()) {
            Err(e) => e.to_string(),
            Ok(outcome) => panic!("expected an error, got {outcome:?}"),
        }
    }

    #[test]
    fn value_forms() {
        let args = run(&[
            "--processes",
            "4",
            "--threads=2",
            "--env",
            "A=b=c",
            "--http=",
        ])
        .unwrap();
        assert_eq!(
            pairs(&args),
            [
                ("processes", "4", "--processes"),
                ("threads", "2", "--threads"),
                ("env", "A=b=c", "--env"),
                ("http", "", "--http"),
            ]
        );
        assert!(args.settings.iter().all(|s| s.origin == Origin::Cli));
    }

    #[test]
    fn booleans_take_a_value_only_with_equals() {
        let args = run(&["--disable-logging", "--master", "--disable-logging=false"]).unwrap();
        assert_eq!(
            pairs(&args),
            [
                ("disable-logging", "true", "--disable-logging"),
                ("master", "true", "--master"),
                ("disable-logging", "false", "--disable-logging"),
            ]
        );
        // The next word is not taken as the flag's value.
        assert_eq!(
            error(&["--disable-logging", "false"]),
            "command line: unexpected argument 'false' (options start with --)"
        );
    }

    #[test]
    fn optional_value_of_chmod_socket() {
        let values = |list: &[&str]| -> Vec<String> {
            run(list)
                .unwrap()
                .settings
                .into_iter()
                .filter(|s| s.spec.name == "chmod-socket")
                .map(|s| s.value)
                .collect()
        };
        assert_eq!(values(&["--chmod-socket"]), ["666"]);
        assert_eq!(values(&["--chmod-socket", "--vacuum"]), ["666"]);
        assert_eq!(values(&["--chmod-socket", "660"]), ["660"]);
        assert_eq!(values(&["--chmod-socket=660"]), ["660"]);
        assert_eq!(
            values(&["--chmod-socket=660", "--chmod-socket"]),
            ["660", "666"]
        );
        // An explicit empty value is kept, and rejected when applied.
        assert_eq!(values(&["--chmod-socket="]), [""]);
        let args = run(&["--chmod-socket", "--processes", "2"]).unwrap();
        assert_eq!(
            pairs(&args),
            [
                ("chmod-socket", "666", "--chmod-socket"),
                ("processes", "2", "--processes"),
            ]
        );
    }

    #[test]
    fn aliases() {
        let args = run(&[
            "--workers",
            "3",
            "--pp",
            "src",
            "--venv=/v",
            "--file",
            "w.py",
        ])
        .unwrap();
        let names: Vec<_> = args.settings.iter().map(|s| s.spec.name).collect();
        assert_eq!(
            names,
            ["processes", "pythonpath", "virtualenv", "wsgi-file"]
        );
        assert_eq!(args.settings[0].written, "--workers");
    }

    #[test]
    fn ini_requests_and_print_config() {
        let args = run(&[
            "--ini",
            "a.ini",
            "b.ini",
            "--ini=c.ini:prod",
            "--print-config",
        ])
        .unwrap();
        let files: Vec<_> = args.ini.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(files, ["a.ini", "b.ini", "c.ini:prod"]);
        assert!(args.print_config && args.settings.is_empty());
    }

    #[test]
    fn help_and_version_win() {
        let parse_ = |a: &[&str]| parse(a.iter().map(OsString::from).collect()).unwrap();
        assert!(matches!(parse_(&["-h"]), Outcome::Help));
        assert!(matches!(parse_(&["--bogus", "--help"]), Outcome::Help));
        assert!(matches!(parse_(&["--version"]), Outcome::Version));
        assert!(matches!(parse_(&["-V"]), Outcome::Version));
    }

    #[test]
    fn errors() {
        assert_eq!(
            error(&["--thread", "2"]),
            "command line: unknown option '--thread' (did you mean '--threads'?)"
        );
        assert_eq!(
            error(&["--procesess=2"]),
            "command line: unknown option '--procesess' (did you mean '--processes'?)"
        );
        assert_eq!(
            error(&["--print-confg"]),
            "command line: unknown option '--print-confg' (did you mean '--print-config'?)"
        );
        assert_eq!(
            error(&["--zzzzzz"]),
            "command line: unknown option '--zzzzzz'"
        );
        assert_eq!(
            error(&["-processes", "2"]),
            "command line: unknown option '-processes' (did you mean '--processes'?)"
        );
        assert_eq!(error(&["-x"]), "command line: unknown option '-x'");
        assert_eq!(
            error(&["--processes"]),
            "command line: option '--processes' needs a value"
        );
        assert_eq!(
            error(&["--offload-threads", "2"]),
            "command line: option '--offload-threads' is not supported yet"
        );
        assert_eq!(
            error(&["app.py"]),
            "command line: unexpected argument 'app.py' (options start with --)"
        );
    }

    #[test]
    fn non_utf8_argument() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![b'-', b'-', 0xff]);
        let e = parse(vec![bad]).unwrap_err().to_string();
        assert!(
            e.starts_with("command line: argument is not valid UTF-8"),
            "{e}"
        );
    }

    #[test]
    fn help_lists_every_option_with_aliases_and_defaults() {
        let text = help();
        for spec in OPTIONS {
            assert!(
                text.contains(&format!("--{}", spec.name)),
                "missing --{}",
                spec.name
            );
            for alias in spec.aliases {
                assert!(
                    text.contains(&format!("--{alias}")),
                    "missing alias --{alias}"
                );
            }
            if let Some(default) = spec.default {
                assert!(
                    text.contains(&format!("[default: {default}]")),
                    "{}",
                    spec.name
                );
            }
            let first_word = spec.help.split(' ').next().unwrap_or_default();
            assert!(text.contains(first_word), "{}", spec.name);
        }
        for group in Group::ALL {
            assert!(text.contains(group.title()));
        }
        assert!(
            text.lines().all(|l| l.chars().count() <= 120),
            "overlong help line"
        );
    }
}
