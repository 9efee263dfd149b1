//! The environment: `CAPATAZ_<NAME>=value`, where NAME is an option's name
//! or alias uppercased with `-` → `_` (`CAPATAZ_PROCESSES`,
//! `CAPATAZ_WORKERS`, `CAPATAZ_HTTP_SOCKET`). `CAPATAZ_INI` works like
//! `--ini`.
//!
//! Each variable carries exactly one value, also for repeatable options
//! (`CAPATAZ_HTTP=:8000` adds one listener; use an ini file or the command
//! line for more). Two variables naming the same non-repeatable option (an
//! option and its alias) are an error rather than a silent pick.
//!
//! An unknown `CAPATAZ_*` variable is an error with a did-you-mean. Names
//! starting with `CAPATAZ__` (two underscores) are reserved for capataz's
//! own use between processes and are ignored here.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;

use super::error::{ConfigError, Location};
use super::options::{Kind, OptionSpec, INI, OPTIONS};
use super::{Origin, Setting};

pub(super) const PREFIX: &str = "CAPATAZ_";
/// Reserved for internal use (for example master → worker hand-over).
pub(super) const RESERVED_PREFIX: &str = "CAPATAZ__";

/// What the environment contributes.
#[derive(Debug, Default)]
pub(super) struct Environment {
    /// Every variable with a UTF-8 name and value, for `$(VAR)` in ini files.
    pub vars: HashMap<String, String>,
    /// `CAPATAZ_*` options, sorted by variable name.
    pub settings: Vec<Setting>,
    /// `CAPATAZ_INI`.
    pub ini: Vec<(String, Location)>,
}

/// The variable name for an option name or alias.
pub(super) fn var_name(option: &str) -> String {
    format!("{PREFIX}{}", option.to_ascii_uppercase().replace('-', "_"))
}

pub(super) fn parse(env: Vec<(OsString, OsString)>) -> Result<Environment, ConfigError> {
    let by_var: HashMap<String, (&'static OptionSpec, &'static str)> = OPTIONS
        .iter()
        .flat_map(|spec| spec.names().map(move |name| (var_name(name), (spec, name))))
        .collect();

    let mut result = Environment::default();
    let mut ours = BTreeMap::new();
    for (key, value) in env {
        let Some(key) = key.to_str() else {
            if key.as_encoded_bytes().starts_with(PREFIX.as_bytes()) {
                return Err(not_utf8(&key.to_string_lossy(), "name"));
            }
            continue;
        };
        let key = key.to_string();
        let is_ours = key.starts_with(PREFIX) && !key.starts_with(RESERVED_PREFIX);
        match value.into_string() {
            Ok(value) if is_ours => {
                ours.insert(key.clone(), value.clone());
                result.vars.insert(key, value);
            }
            Ok(value) => {
                result.vars.insert(key, value);
            }
            Err(_) if is_ours => return Err(not_utf8(&key, "value")),
            Err(_) => {}
        }
    }

    let mut seen: HashMap<&'static str, String> = HashMap::new();
    for (var, value) in ours {
        let Some(&(spec, name)) = by_var.get(&var) else {
            // Candidates in table order, so ties resolve the same way every run.
            let candidates: Vec<String> = OPTIONS
                .iter()
                .flat_map(OptionSpec::names)
                .map(var_name)
                .collect();
            let suggestion = super::values::closest(
                &var[PREFIX.len()..],
                candidates.iter().map(|v| &v[PREFIX.len()..]),
            );
            return Err(ConfigError::UnknownEnvVar {
                suggestion: suggestion.map(|s| format!("{PREFIX}{s}")),
                var,
            });
        };
        let at = Location::Environment {
            var: Some(var.clone()),
        };
        if spec.kind == Kind::NotYet {
            return Err(ConfigError::NotSupportedYet {
                at,
                option: name.to_string(),
            });
        }
        if !spec.repeats {
            if let Some(other) = seen.insert(spec.name, var.clone()) {
                return Err(ConfigError::Syntax {
                    at: Location::Environment { var: None },
                    message: format!(
                        "{other} and {var} both set option '{}': use only one",
                        spec.name
                    ),
                });
            }
        }
        if spec.name == INI {
            result.ini.push((value, at));
        } else {
            result.settings.push(Setting {
                spec,
                value,
                origin: Origin::Env { var },
                written: name.to_string(),
            });
        }
    }
    Ok(result)
}

fn not_utf8(var: &str, what: &str) -> ConfigError {
    ConfigError::Syntax {
        at: Location::Environment { var: None },
        message: format!("the {what} of variable {var} is not valid UTF-8"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn error(pairs: &[(&str, &str)]) -> String {
        parse(env(pairs)).unwrap_err().to_string()
    }

    #[test]
    fn names_aliases_and_order() {
        let e = parse(env(&[
            ("HOME", "/root"),
            ("CAPATAZ_WORKERS", "3"),
            ("CAPATAZ_HTTP_SOCKET", ":9000"),
            ("CAPATAZ_DISABLE_LOGGING", "yes"),
            ("CAPATAZ__WORKER_ID", "internal, ignored"),
        ]))
        .unwrap();
        let got: Vec<_> = e
            .settings
            .iter()
            .map(|s| (s.spec.name, s.value.as_str(), s.written.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("disable-logging", "yes", "disable-logging"),
                ("http-socket", ":9000", "http-socket"),
                ("processes", "3", "workers"),
            ]
        );
        assert_eq!(
            e.settings[2].origin,
            Origin::Env {
                var: "CAPATAZ_WORKERS".into()
            }
        );
        assert_eq!(e.vars["HOME"], "/root");
        assert!(e.ini.is_empty());
    }

    #[test]
    fn ini_variable() {
        let e = parse(env(&[("CAPATAZ_INI", "/etc/app.ini:prod")])).unwrap();
        assert_eq!(e.ini[0].0, "/etc/app.ini:prod");
        assert!(e.settings.is_empty());
    }

    #[test]
    fn every_option_has_a_variable() {
        for spec in OPTIONS {
            for name in spec.names() {
                let var = var_name(name);
                let result = parse(env(&[(&var, "1")]));
                if spec.kind == Kind::NotYet {
                    assert!(result
                        .unwrap_err()
                        .to_string()
                        .contains("not supported yet"));
                } else {
                    assert!(result.is_ok(), "{var}");
                }
            }
        }
    }

    #[test]
    fn errors() {
        assert_eq!(
            error(&[("CAPATAZ_PROCESES", "2")]),
            "environment: unknown variable CAPATAZ_PROCESES (did you mean CAPATAZ_PROCESSES?)"
        );
        assert_eq!(
            error(&[("CAPATAZ_ZZZZZZ", "2")]),
            "environment: unknown variable CAPATAZ_ZZZZZZ"
        );
        assert_eq!(
            error(&[("CAPATAZ_OFFLOAD_THREADS", "2")]),
            "environment variable CAPATAZ_OFFLOAD_THREADS: option 'offload-threads' is not supported yet"
        );
        assert_eq!(
            error(&[("CAPATAZ_WORKERS", "2"), ("CAPATAZ_PROCESSES", "3")]),
            "environment: CAPATAZ_PROCESSES and CAPATAZ_WORKERS both set option 'processes': \
             use only one"
        );
    }

    #[test]
    fn non_utf8() {
        let bad = OsString::from_vec(vec![0xff]);
        let ok = parse(vec![(OsString::from("OTHER"), bad.clone())]).unwrap();
        assert!(!ok.vars.contains_key("OTHER"));
        let e = parse(vec![(OsString::from("CAPATAZ_CHDIR"), bad)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment: the value of variable CAPATAZ_CHDIR is not valid UTF-8"
        );
    }
}
