//! uWSGI-style ini files.
//!
//! - `--ini FILE` reads the `[uwsgi]` section and then the `[capataz]`
//!   section (either may be missing, not both); `--ini FILE:SECTION` reads
//!   only `[SECTION]`. Other sections (`[program:celery]`, ...) are skipped
//!   here; [`parse_sections`] keeps them for whoever needs them.
//! - Full-line comments start with `;` or `#`. `key = value`; a bare `key`
//!   means true for a boolean, and 666 for `chmod-socket`. A key that repeats appends for a repeatable
//!   option; otherwise the last one wins.
//! - `ini = other.ini[:SECTION]` includes another file at that point,
//!   relative to the including file's directory. Include cycles are errors.
//! - Expansion: `%(option)` is the option's first value so far (or a
//!   `set-placeholder` name, or the option's default), `$(VAR)` an
//!   environment variable (an unset one is an error), `%d` the file's
//!   absolute directory with a trailing slash, `%n` the file name without
//!   its extension, `%k` the CPU count, `%%` a literal `%`. Any other `%X`
//!   is an error naming the line (uWSGI silently deletes it, which breaks
//!   strftime formats).
//! - A key that is no option is a placeholder, as in uWSGI (`project = x`
//!   then `module = %(project).wsgi`), provided some value uses it as
//!   `%(key)`; otherwise it is reported as an unknown option (a typo).
//! - `log-format` is a template: `%(name)` there is expanded only for an
//!   option or placeholder, and other `%X` are kept, so gunicorn atoms
//!   (`%(h)s`) and uWSGI log variables (`%(addr)`) reach the log.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::error::{ConfigError, Location};
use super::options::{lookup, Lookup, INI, SET_PLACEHOLDER};
use super::values::parse_key_value;
use super::{Origin, Setting};

/// Sections read when none is named, in this order.
const DEFAULT_SECTIONS: [&str; 2] = ["uwsgi", "capataz"];
/// Options whose value is itself a `%(name)` template (gunicorn atoms,
/// uWSGI log variables): see [`Loader::expand`].
const TEMPLATE_OPTIONS: [&str; 1] = ["log-format"];
/// Deepest include nesting, a backstop behind cycle detection.
const MAX_INCLUDE_DEPTH: usize = 32;

/// One `key = value` line; `value` is `None` for a bare key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniEntry {
    /// 1-based.
    pub line: usize,
    pub key: String,
    /// Raw, before expansion.
    pub value: Option<String>,
}

/// One `[name]` header and the entries under it. A name that appears twice
/// gives two sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IniSection {
    pub name: String,
    /// 1-based line of the header.
    pub line: usize,
    pub entries: Vec<IniEntry>,
}

/// Splits ini text into sections, without interpreting keys or values.
/// Lines before the first header are ignored. Errors carry the line number.
pub fn parse_sections(text: &str) -> Result<Vec<IniSection>, (usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut sections: Vec<IniSection> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let Some(name) = header.strip_suffix(']') else {
                return Err((number, format!("malformed section header '{line}'")));
            };
            sections.push(IniSection {
                name: name.trim().to_string(),
                line: number,
                entries: Vec::new(),
            });
            continue;
        }
        let Some(section) = sections.last_mut() else {
            continue;
        };
        let (key, value) = match line.split_once('=') {
            Some((key, value)) => (key.trim(), Some(value.trim().to_string())),
            None => (line, None),
        };
        if key.is_empty() {
            return Err((number, "missing option name before '='".to_string()));
        }
        section.entries.push(IniEntry {
            line: number,
            key: key.to_string(),
            value,
        });
    }
    Ok(sections)
}

/// The file being read, for expansion and error locations.
struct FileContext {
    /// As given (or joined to the including file's directory).
    path: PathBuf,
    /// `%d`: absolute directory with a trailing slash.
    dir: String,
    /// `%n`: file name without extension.
    stem: String,
}

/// Reads ini files into settings, following includes.
pub(super) struct Loader<'a> {
    env: &'a HashMap<String, String>,
    placeholders: HashMap<String, String>,
    /// Keys that are not options, read as placeholders (uWSGI lets any key
    /// be one): name and where it was set. Each must be used as `%(name)`
    /// somewhere, or it is reported as an unknown option (a typo).
    custom_keys: Vec<(String, Location, Option<&'static str>)>,
    /// Every `%(name)` written in a value read so far.
    referenced: std::collections::HashSet<String>,
    settings: Vec<Setting>,
    files: Vec<PathBuf>,
    /// Files being read: (canonical path, path as shown), for cycles.
    stack: Vec<(PathBuf, PathBuf)>,
}

impl<'a> Loader<'a> {
    /// `seeds`: settings from other sources; their `set-placeholder`
    /// values are visible in every file.
    pub fn new<'s>(
        env: &'a HashMap<String, String>,
        seeds: impl IntoIterator<Item = &'s Setting>,
    ) -> Self {
        let mut loader = Loader {
            env,
            placeholders: HashMap::new(),
            custom_keys: Vec::new(),
            referenced: std::collections::HashSet::new(),
            settings: Vec::new(),
            files: Vec::new(),
            stack: Vec::new(),
        };
        for seed in seeds {
            loader.add_placeholder(seed);
        }
        loader
    }

    /// Reads `FILE` or `FILE:SECTION`, relative to the working directory.
    pub fn load(&mut self, request: &str, requested_at: &Location) -> Result<(), ConfigError> {
        if request.is_empty() {
            return Err(ConfigError::Syntax {
                at: requested_at.clone(),
                message: "empty ini file name".to_string(),
            });
        }
        let (path, section) = split_request(request, Path::new(""));
        self.load_file(path, section, None)
    }

    /// The settings read, in order, and the files read (absolute). A key
    /// that is neither an option nor used as `%(key)` anywhere is an
    /// unknown option: most likely a typo.
    pub fn finish(self) -> Result<(Vec<Setting>, Vec<PathBuf>), ConfigError> {
        if let Some((key, at, suggestion)) = self
            .custom_keys
            .into_iter()
            .find(|(key, _, _)| !self.referenced.contains(key))
        {
            return Err(ConfigError::UnknownIniKey {
                at,
                option: key,
                suggestion: suggestion.map(String::from),
            });
        }
        Ok((self.settings, self.files))
    }

    fn load_file(
        &mut self,
        path: PathBuf,
        section: Option<String>,
        included_at: Option<Location>,
    ) -> Result<(), ConfigError> {
        let read_error = |source: std::io::Error| match &included_at {
            Some(at) => ConfigError::Syntax {
                at: at.clone(),
                message: format!("cannot read included file '{}': {source}", path.display()),
            },
            None => ConfigError::Read {
                path: path.clone(),
                source,
            },
        };
        let bytes = std::fs::read(&path).map_err(read_error)?;
        let canonical = std::fs::canonicalize(&path).map_err(read_error)?;
        let absolute = std::path::absolute(&path).map_err(read_error)?;
        let whole_file = Location::File {
            path: path.clone(),
            line: None,
        };
        if let Some(start) = self.stack.iter().position(|(c, _)| *c == canonical) {
            let chain: Vec<String> = self.stack[start..]
                .iter()
                .map(|(_, shown)| shown.display().to_string())
                .chain(std::iter::once(path.display().to_string()))
                .collect();
            return Err(ConfigError::Syntax {
                at: included_at.unwrap_or(whole_file),
                message: format!("include cycle: {}", chain.join(" -> ")),
            });
        }
        if self.stack.len() >= MAX_INCLUDE_DEPTH {
            return Err(ConfigError::Syntax {
                at: included_at.unwrap_or(whole_file),
                message: format!("includes nested deeper than {MAX_INCLUDE_DEPTH} files"),
            });
        }
        let text = String::from_utf8(bytes).map_err(|_| ConfigError::Syntax {
            at: whole_file.clone(),
            message: "not valid UTF-8".to_string(),
        })?;
        let sections = parse_sections(&text).map_err(|(line, message)| ConfigError::Syntax {
            at: Location::File {
                path: path.clone(),
                line: Some(line),
            },
            message,
        })?;

        if section.is_none() {
            check_section_names(&sections, &path)?;
        }
        let wanted: Vec<&str> = match &section {
            Some(name) => vec![name.as_str()],
            None => DEFAULT_SECTIONS.to_vec(),
        };
        if !sections.iter().any(|s| wanted.contains(&s.name.as_str())) {
            let headers: Vec<String> = wanted.iter().map(|w| format!("[{w}]")).collect();
            return Err(ConfigError::Syntax {
                at: whole_file,
                message: format!("no {} section", headers.join(" or ")),
            });
        }

        if !self.files.contains(&absolute) {
            self.files.push(absolute.clone());
        }
        let mut dir = absolute
            .parent()
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !dir.ends_with('/') {
            dir.push('/');
        }
        let context = FileContext {
            stem: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: path.clone(),
            dir,
        };

        self.stack.push((canonical, path));
        for name in wanted {
            for entry in sections
                .iter()
                .filter(|s| s.name == name)
                .flat_map(|s| &s.entries)
            {
                self.entry(&context, entry)?;
            }
        }
        self.stack.pop();
        Ok(())
    }

    fn entry(&mut self, context: &FileContext, entry: &IniEntry) -> Result<(), ConfigError> {
        let at = Location::File {
            path: context.path.clone(),
            line: Some(entry.line),
        };
        let spec = match lookup(&entry.key) {
            Lookup::Found(spec) => spec,
            Lookup::NotYet(_) => {
                return Err(ConfigError::NotSupportedYet {
                    at,
                    option: entry.key.clone(),
                })
            }
            Lookup::Unknown { suggestion } => {
                // uWSGI lets any key define a placeholder; whether this one
                // is (it is used as %(key)) or a typo is known at the end.
                let value = match &entry.value {
                    Some(raw) => {
                        self.note_references(raw);
                        self.expand(raw, context, false)
                            .map_err(|message| ConfigError::Syntax {
                                at: at.clone(),
                                message,
                            })?
                    }
                    None => String::new(),
                };
                self.placeholders.entry(entry.key.clone()).or_insert(value);
                self.custom_keys.push((entry.key.clone(), at, suggestion));
                return Ok(());
            }
        };
        if let Some(raw) = &entry.value {
            self.note_references(raw);
        }
        let template = TEMPLATE_OPTIONS.contains(&spec.name);
        let value = match &entry.value {
            Some(raw) => {
                self.expand(raw, context, template)
                    .map_err(|message| ConfigError::Syntax {
                        at: at.clone(),
                        message,
                    })?
            }
            None => match spec.kind.bare_value() {
                Some(bare) => bare.to_string(),
                None => {
                    return Err(ConfigError::MissingValue {
                        at,
                        option: entry.key.clone(),
                    })
                }
            },
        };
        if spec.name == INI {
            let base = context.path.parent().unwrap_or(Path::new(""));
            let (path, section) = split_request(&value, base);
            return self.load_file(path, section, Some(at));
        }
        let setting = Setting {
            spec,
            value,
            origin: Origin::File {
                path: context.path.clone(),
                line: entry.line,
            },
            written: entry.key.clone(),
        };
        self.add_placeholder(&setting);
        self.settings.push(setting);
        Ok(())
    }

    /// Records a `set-placeholder NAME=VALUE`; the first definition wins.
    fn add_placeholder(&mut self, setting: &Setting) {
        if setting.spec.name == SET_PLACEHOLDER {
            // An invalid value is reported, with its location, when applied.
            if let Ok((name, value)) = parse_key_value(&setting.value) {
                self.placeholders.entry(name).or_insert(value);
            }
        }
    }

    /// Records every `%(name)` in a raw value.
    fn note_references(&mut self, raw: &str) {
        let mut rest = raw;
        while let Some(pos) = rest.find('%') {
            let after = &rest[pos + 1..];
            if let Some(inner) = after.strip_prefix('(') {
                let Some(end) = inner.find(')') else { break };
                self.referenced.insert(inner[..end].to_string());
                rest = &inner[end + 1..];
            } else {
                // Skips the character after '%', so '%%(x)' is no reference.
                rest = after.get(1..).unwrap_or("");
            }
        }
    }

    /// Expands `raw`. In a `template` value (a log format whose own
    /// `%(name)` atoms the ini must not eat), a `%(name)` that is no option
    /// or placeholder, and any `%X` that is no expansion, stay as written;
    /// `%%` is still a literal `%`, as everywhere else.
    fn expand(&self, raw: &str, context: &FileContext, template: bool) -> Result<String, String> {
        let mut out = String::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(pos) = rest.find(['%', '$']) {
            out.push_str(&rest[..pos]);
            let tail = &rest[pos..];
            if let Some(tail) = tail.strip_prefix('$') {
                let Some(inner) = tail.strip_prefix('(') else {
                    out.push('$');
                    rest = tail;
                    continue;
                };
                let end = inner.find(')').ok_or("unterminated '$(' (missing ')')")?;
                let var = &inner[..end];
                let value = self.env.get(var).ok_or_else(|| {
                    format!("environment variable '{var}' is not set (in '$({var})')")
                })?;
                out.push_str(value);
                rest = &inner[end + 1..];
                continue;
            }
            let after = &tail[1..];
            match after.chars().next() {
                Some('%') => out.push('%'),
                Some('d') => out.push_str(&context.dir),
                Some('n') => out.push_str(&context.stem),
                Some('k') => out.push_str(&cpu_count().to_string()),
                Some('(') => {
                    let inner = &after[1..];
                    let end = match inner.find(')') {
                        Some(end) => end,
                        None if template => {
                            out.push('%');
                            rest = after;
                            continue;
                        }
                        None => return Err("unterminated '%(' (missing ')')".into()),
                    };
                    let name = &inner[..end];
                    if template && !self.is_defined(name) {
                        out.push_str("%(");
                        out.push_str(name);
                        out.push(')');
                    } else {
                        out.push_str(&self.option_value(name)?);
                    }
                    rest = &inner[end + 1..];
                    continue;
                }
                Some(_) | None if template => {
                    out.push('%');
                    rest = after;
                    continue;
                }
                Some(c) => {
                    return Err(format!(
                        "unknown expansion '%{c}' (write '%%' for a literal '%')"
                    ))
                }
                None => {
                    return Err("'%' at the end of the value (write '%%' for a literal '%')".into())
                }
            }
            rest = &after[1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Whether `%(name)` has something to expand to: an option or a
    /// placeholder.
    fn is_defined(&self, name: &str) -> bool {
        !matches!(lookup(name), Lookup::Unknown { .. }) || self.placeholders.contains_key(name)
    }

    /// `%(name)`: the option's first value so far in the ini files, else a
    /// placeholder, else the option's default.
    fn option_value(&self, name: &str) -> Result<String, String> {
        let spec = match lookup(name) {
            Lookup::Found(spec) | Lookup::NotYet(spec) => Some(spec),
            Lookup::Unknown { .. } => None,
        };
        if let Some(spec) = spec {
            if let Some(first) = self.settings.iter().find(|s| std::ptr::eq(s.spec, spec)) {
                return Ok(first.value.clone());
            }
        }
        if let Some(value) = self.placeholders.get(name) {
            return Ok(value.clone());
        }
        match spec {
            Some(spec) => spec.default.map(String::from).ok_or_else(|| {
                format!("%({name}): option '{name}' has no value yet (set it on an earlier line)")
            }),
            None => Err(format!(
                "%({name}): no option or placeholder named '{name}'"
            )),
        }
    }
}

/// A header one or two edits from `[uwsgi]` or `[capataz]` is a typo whose
/// options (harakiri!) would silently be off: an error. Other sections
/// (`[app:main]`, `[program:x]`) belong to someone else and are skipped.
fn check_section_names(sections: &[IniSection], path: &Path) -> Result<(), ConfigError> {
    for section in sections {
        if DEFAULT_SECTIONS.contains(&section.name.as_str()) || section.name.contains(':') {
            continue;
        }
        let lower = section.name.to_ascii_lowercase();
        let Some(meant) = DEFAULT_SECTIONS
            .iter()
            .find(|known| super::values::edit_distance(&lower, known) <= 2)
        else {
            continue;
        };
        return Err(ConfigError::Syntax {
            at: Location::File {
                path: path.to_path_buf(),
                line: Some(section.line),
            },
            message: format!(
                "section [{}] looks like a typo of [{meant}] (did you mean [{meant}]?); \
                 its options would be ignored",
                section.name
            ),
        });
    }
    Ok(())
}

/// `%k`: the CPUs this process may run on (affinity and cgroup quota
/// included), as uWSGI's magic variable of the same name.
fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `FILE` or `FILE:SECTION`, relative to `base`. A name that exists as a
/// file is taken whole, so a path containing ':' still works.
fn split_request(request: &str, base: &Path) -> (PathBuf, Option<String>) {
    let whole = base.join(request);
    if whole.exists() {
        return (whole, None);
    }
    match request.rsplit_once(':') {
        Some((file, section))
            if !file.is_empty() && !section.is_empty() && !section.contains('/') =>
        {
            (base.join(file), Some(section.to_string()))
        }
        _ => (whole, None),
    }
}

#[cfg(test)]
mod tests;
