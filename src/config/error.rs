//! `ConfigError`: every way a configuration can be rejected, each with a
//! one-line, user-facing message naming the file, line and option.
//!
//! The caller prints `capataz: config error: <message>` and exits with
//! [`super::EXIT_USAGE`].

use std::fmt;
use std::path::PathBuf;

/// Where a setting (or an error) came from, as shown to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An ini file; `line` is 1-based, absent for whole-file errors.
    File {
        path: PathBuf,
        line: Option<usize>,
    },
    CommandLine,
    /// The process environment; `var` names the variable when there is one.
    Environment {
        var: Option<String>,
    },
    /// The built-in defaults (only reachable through a bug in the table).
    Defaults,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File {
                path,
                line: Some(line),
            } => write!(f, "{}:{line}", path.display()),
            Location::File { path, line: None } => write!(f, "{}", path.display()),
            Location::CommandLine => f.write_str("command line"),
            Location::Environment { var: Some(var) } => write!(f, "environment variable {var}"),
            Location::Environment { var: None } => f.write_str("environment"),
            Location::Defaults => f.write_str("defaults"),
        }
    }
}

/// A configuration error. `Display` is the complete message for the user.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `option` is spelled as the user wrote it: `--thread`, `procesess`.
    #[error("{at}: unknown option '{option}'{}", did_you_mean(.suggestion))]
    UnknownOption {
        at: Location,
        option: String,
        suggestion: Option<String>,
    },

    /// An ini key that is no option and is never used as `%(key)`.
    #[error(
        "{at}: unknown option '{option}'{} (a key that is not an option is a placeholder only when \
         a value uses it as %({option}))",
        did_you_mean(.suggestion)
    )]
    UnknownIniKey {
        at: Location,
        option: String,
        suggestion: Option<String>,
    },

    #[error("environment: unknown variable {var}{}", match .suggestion {
        Some(s) => format!(" (did you mean {s}?)"),
        None => String::new(),
    })]
    UnknownEnvVar {
        var: String,
        suggestion: Option<String>,
    },

    #[error("{at}: option '{option}' is not supported yet")]
    NotSupportedYet { at: Location, option: String },

    #[error("{at}: option '{option}' needs a value")]
    MissingValue { at: Location, option: String },

    #[error("{at}: option '{option}': invalid value '{value}': {reason}")]
    InvalidValue {
        at: Location,
        option: String,
        value: String,
        reason: String,
    },

    /// Malformed input that is not about one option's value: ini syntax,
    /// expansion, include cycles, stray arguments, non-UTF-8 text.
    #[error("{at}: {message}")]
    Syntax { at: Location, message: String },

    /// An ini file named on the command line or in the environment that
    /// cannot be read.
    #[error("{}: cannot read config file: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    /// A rule about the merged configuration (no app, no listener, ...).
    #[error("{0}")]
    Invalid(String),
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(s) => format!(" (did you mean '{s}'?)"),
        None => String::new(),
    }
}
