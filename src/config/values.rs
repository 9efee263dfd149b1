//! Parsers for option values, one per value kind. Each returns the reason a
//! value is wrong as a short phrase ("expected a whole number"); the caller
//! adds the location and option name.

use std::net::Ipv6Addr;
use std::path::PathBuf;

/// on/off, yes/no, true/false, 1/0 (any letter case).
pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "on" | "yes" | "true" | "1" => Ok(true),
        "off" | "no" | "false" | "0" => Ok(false),
        _ => Err("expected a boolean (on/off, yes/no, true/false, 1/0)".into()),
    }
}

/// A plain decimal number: digits only, no sign, no spaces.
pub fn parse_uint(value: &str) -> Result<u64, String> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a whole number".into());
    }
    value
        .parse()
        .map_err(|_| format!("number too large (maximum {})", u64::MAX))
}

/// A number with a lower bound, converted to the field's integer type.
pub fn parse_count<T: TryFrom<u64>>(value: &str, min: u64) -> Result<T, String> {
    let n = parse_uint(value)?;
    if n < min {
        return Err(format!("must be at least {min}"));
    }
    T::try_from(n).map_err(|_| "number too large".to_string())
}

/// Bytes: a plain number (as uWSGI takes them), or with a binary suffix
/// `K`, `M` or `G` (any case; 1K = 1024).
pub fn parse_size(value: &str) -> Result<u64, String> {
    const EXPECTED: &str = "expected a size in bytes, optionally with a K, M or G suffix";
    let (digits, multiplier) = match value.as_bytes().last().map(u8::to_ascii_lowercase) {
        Some(b'k') => (&value[..value.len() - 1], 1u64 << 10),
        Some(b'm') => (&value[..value.len() - 1], 1u64 << 20),
        Some(b'g') => (&value[..value.len() - 1], 1u64 << 30),
        _ => (value, 1),
    };
    let n = parse_uint(digits).map_err(|_| EXPECTED.to_string())?;
    n.checked_mul(multiplier)
        .ok_or_else(|| "size too large".to_string())
}

/// A size with a lower bound, converted to the field's integer type.
pub fn parse_size_at_least<T: TryFrom<u64>>(value: &str, min: u64) -> Result<T, String> {
    let n = parse_size(value)?;
    if n < min {
        return Err(format!("must be at least {min}"));
    }
    T::try_from(n).map_err(|_| "size too large".to_string())
}

/// A non-empty path, kept exactly as given (resolved later, relative to
/// `chdir`).
pub fn parse_path(value: &str) -> Result<PathBuf, String> {
    if value.is_empty() {
        return Err("expected a path".into());
    }
    Ok(PathBuf::from(value))
}

/// `KEY=VALUE`: the key is non-empty (and so has no `=`); the value may be
/// empty.
pub fn parse_key_value(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((key, val)) if !key.is_empty() => Ok((key.to_string(), val.to_string())),
        Some(_) => Err("the KEY in KEY=VALUE is empty".into()),
        None => Err("expected KEY=VALUE".into()),
    }
}

/// A Python identifier (ASCII letters, digits, `_`, and other Unicode
/// alphanumerics; not starting with a digit).
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c == '_' || c.is_alphabetic() => {}
        _ => return false,
    }
    chars.all(|c| c == '_' || c.is_alphanumeric())
}

/// `pkg.mod` or `pkg.mod:callable`.
pub fn parse_module(value: &str) -> Result<String, String> {
    const EXPECTED: &str = "expected a dotted module name, optionally followed by ':callable'";
    let (module, callable) = match value.split_once(':') {
        Some((m, c)) => (m, Some(c)),
        None => (value, None),
    };
    if !module.split('.').all(is_identifier) || !callable.is_none_or(is_identifier) {
        return Err(EXPECTED.into());
    }
    Ok(value.to_string())
}

/// A Python identifier, for `callable`.
pub fn parse_identifier(value: &str) -> Result<String, String> {
    if !is_identifier(value) {
        return Err("expected a Python identifier".into());
    }
    Ok(value.to_string())
}

/// What a bare `chmod-socket` (no value) means: `rw-rw-rw-`.
pub const BARE_SOCKET_MODE: &str = "666";

/// A unix socket mode: exactly 3 octal digits ("660").
pub fn parse_socket_mode(value: &str) -> Result<u32, String> {
    if value.len() != 3 || !value.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err("expected 3 octal digits, like 660".into());
    }
    u32::from_str_radix(value, 8).map_err(|_| "expected 3 octal digits, like 660".into())
}

/// A user or group for `uid` / `gid`: a name or a number, resolved when
/// privileges are dropped. Non-empty, without whitespace.
pub fn parse_user_or_group(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err("expected a name or a number".into());
    }
    if value.chars().any(char::is_whitespace) {
        return Err("contains whitespace".into());
    }
    Ok(value.to_string())
}

/// `static-map MOUNT=DIR`: MOUNT starts with '/' and loses any trailing
/// '/' (except "/" itself); DIR is non-empty.
pub fn parse_static_map(value: &str) -> Result<(String, PathBuf), String> {
    let Some((mount, dir)) = value.split_once('=') else {
        return Err("expected MOUNT=DIR".into());
    };
    if !mount.starts_with('/') {
        return Err("the MOUNT in MOUNT=DIR must start with '/'".into());
    }
    if dir.is_empty() {
        return Err("the DIR in MOUNT=DIR is empty".into());
    }
    let mount = match mount.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    };
    Ok((mount.to_string(), PathBuf::from(dir)))
}

/// `static-expires REGEX SECONDS`, split at the last run of ASCII
/// whitespace (so the regex may contain spaces). The regex must compile.
pub fn parse_static_expires(value: &str) -> Result<(String, u64), String> {
    const EXPECTED: &str = "expected REGEX SECONDS";
    let value = value.trim_end_matches(|c: char| c.is_ascii_whitespace());
    let Some(space) = value.rfind(|c: char| c.is_ascii_whitespace()) else {
        return Err(EXPECTED.into());
    };
    let seconds = &value[space + 1..];
    let pattern = value[..space].trim_end_matches(|c: char| c.is_ascii_whitespace());
    if pattern.is_empty() {
        return Err(EXPECTED.into());
    }
    let seconds = parse_uint(seconds).map_err(|e| format!("SECONDS: {e}"))?;
    regex::Regex::new(pattern).map_err(|e| regex_error(pattern, &e))?;
    Ok((pattern.to_string(), seconds))
}

/// A one-line reason for a regex that does not compile (the regex crate's
/// own message spans several lines, with a caret under the problem).
fn regex_error(pattern: &str, error: &regex::Error) -> String {
    let text = error.to_string();
    let reason = text
        .lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("error: "))
        .or_else(|| text.lines().next())
        .unwrap_or("does not compile");
    format!("invalid regex '{pattern}': {reason}")
}

/// A file name for `static-index` ("index.html"): non-empty, no '/', not
/// "." or "..".
pub fn parse_file_name(value: &str) -> Result<String, String> {
    if value.is_empty() || value == "." || value == ".." {
        return Err("expected a file name, like index.html".into());
    }
    if value.contains('/') {
        return Err("a file name cannot contain '/'".into());
    }
    Ok(value.to_string())
}

/// A listening address, parsed (see [`parse_address`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddress {
    /// `host:port`, `:port` (empty host: all interfaces) or `[v6]:port`
    /// (host without brackets). The host is resolved by the listener.
    Tcp { host: String, port: u16 },
    /// Any other text: a unix socket path, as given.
    Unix(PathBuf),
    /// `@name`: a Linux abstract socket (name without the `@`).
    Abstract(String),
}

/// Classifies an address the way uWSGI users write them:
/// - `@name` is a Linux abstract socket;
/// - `[v6]:port` is IPv6 TCP;
/// - text with a `/` is a unix socket path;
/// - `host:port` or `:port` is TCP, and the port must be a number;
/// - anything else (`app.sock`) is a unix socket path, except a bare number,
///   which is rejected as ambiguous.
pub fn parse_address(value: &str) -> Result<ListenAddress, String> {
    if value.is_empty() {
        return Err("expected an address (host:port, :port, [v6]:port, a path or @name)".into());
    }
    if let Some(name) = value.strip_prefix('@') {
        if name.is_empty() {
            return Err("abstract socket name after '@' is empty".into());
        }
        return Ok(ListenAddress::Abstract(name.to_string()));
    }
    if let Some(rest) = value.strip_prefix('[') {
        let Some((host, port)) = rest.split_once("]:") else {
            return Err("expected [IPv6]:port".into());
        };
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!("'{host}' is not an IPv6 address"));
        }
        return Ok(ListenAddress::Tcp {
            host: host.to_string(),
            port: parse_port(port)?,
        });
    }
    if value.contains('/') {
        return Ok(ListenAddress::Unix(PathBuf::from(value)));
    }
    if let Some((host, port)) = value.rsplit_once(':') {
        if host.contains(':') {
            return Err("an IPv6 address needs brackets: [v6]:port".into());
        }
        if host.contains(char::is_whitespace) {
            return Err("the host contains spaces".into());
        }
        return Ok(ListenAddress::Tcp {
            host: host.to_string(),
            port: parse_port(port)?,
        });
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "a bare number is ambiguous: write ':{value}' for TCP or './{value}' for a unix socket"
        ));
    }
    Ok(ListenAddress::Unix(PathBuf::from(value)))
}

fn parse_port(port: &str) -> Result<u16, String> {
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{port}' is not a port number"));
    }
    port.parse()
        .map_err(|_| format!("port {port} is out of range (0-65535)"))
}

/// Edit distance between two strings (Levenshtein), for did-you-mean.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// The closest candidate to `input`: within edit distance 2, or one that
/// starts with `input` (at least 3 characters typed). Ties go to the
/// earliest candidate.
pub fn closest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for candidate in candidates {
        let distance = edit_distance(input, candidate);
        let prefix = input.len() >= 3 && candidate.starts_with(input);
        // "x" is two edits from "pp": only suggest when most of it is right.
        let close = distance <= 2 && distance < input.chars().count();
        if !close && !prefix {
            continue;
        }
        // A prefix match ranks just after distance-2 matches.
        let rank = if close { distance } else { 3 };
        if best.is_none_or(|(r, _)| rank < r) {
            best = Some((rank, candidate));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_all_spellings() {
        for v in ["on", "yes", "true", "1", "ON", "Yes", "TRUE"] {
            assert_eq!(parse_bool(v), Ok(true), "{v}");
        }
        for v in ["off", "no", "false", "0", "OFF", "No", "False"] {
            assert_eq!(parse_bool(v), Ok(false), "{v}");
        }
        for v in ["", "2", "y", "enable", " true"] {
            assert!(parse_bool(v).is_err(), "{v}");
        }
    }

    #[test]
    fn whole_numbers() {
        assert_eq!(parse_uint("0"), Ok(0));
        assert_eq!(parse_uint("42"), Ok(42));
        assert_eq!(parse_uint("four"), Err("expected a whole number".into()));
        for v in ["", "-1", "+1", " 1", "1.5", "1k"] {
            assert!(parse_uint(v).is_err(), "{v}");
        }
        assert!(parse_uint("99999999999999999999999").is_err());
        assert_eq!(parse_count::<usize>("3", 1), Ok(3));
        assert_eq!(
            parse_count::<usize>("0", 1),
            Err("must be at least 1".into())
        );
        assert_eq!(
            parse_count::<u32>("4294967296", 1),
            Err("number too large".into())
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("2m"), Ok(2 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        for v in ["", "k", "1.5m", "1kb", "-1", "1 k"] {
            assert!(parse_size(v).is_err(), "{v}");
        }
        assert_eq!(
            parse_size("99999999999999999999g"),
            Err("expected a size in bytes, optionally with a K, M or G suffix".into())
        );
        assert_eq!(parse_size("17179869184g"), Err("size too large".into()));
        assert_eq!(
            parse_size_at_least::<usize>("0", 1),
            Err("must be at least 1".into())
        );
    }

    #[test]
    fn paths() {
        assert_eq!(parse_path("app/wsgi.py"), Ok(PathBuf::from("app/wsgi.py")));
        assert!(parse_path("").is_err());
    }

    #[test]
    fn key_values() {
        assert_eq!(parse_key_value("A=1"), Ok(("A".into(), "1".into())));
        assert_eq!(parse_key_value("A="), Ok(("A".into(), String::new())));
        assert_eq!(parse_key_value("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(parse_key_value("=1").is_err());
        assert!(parse_key_value("A").is_err());
    }

    #[test]
    fn modules_and_identifiers() {
        for v in ["app", "pkg.mod", "pkg.mod:app", "_x.y2:create_app", "café"] {
            assert!(parse_module(v).is_ok(), "{v}");
        }
        for v in [
            "",
            "pkg.",
            ".mod",
            "pkg..mod",
            "1pkg",
            "pkg:",
            "pkg:a:b",
            "pkg:app()",
            "a-b",
        ] {
            assert!(parse_module(v).is_err(), "{v}");
        }
        assert!(parse_identifier("application").is_ok());
        assert!(parse_identifier("app.x").is_err());
        assert!(parse_identifier("").is_err());
    }

    #[test]
    fn socket_modes() {
        assert_eq!(parse_socket_mode("666"), Ok(0o666));
        assert_eq!(parse_socket_mode("660"), Ok(0o660));
        assert_eq!(parse_socket_mode("007"), Ok(0o007));
        assert_eq!(parse_socket_mode(BARE_SOCKET_MODE), Ok(0o666));
        for v in ["", "66", "0666", "668", "rw-", "+66", "6 6"] {
            assert_eq!(
                parse_socket_mode(v),
                Err("expected 3 octal digits, like 660".into()),
                "{v}"
            );
        }
    }

    #[test]
    fn users_and_groups() {
        assert_eq!(parse_user_or_group("www-data"), Ok("www-data".into()));
        assert_eq!(parse_user_or_group("33"), Ok("33".into()));
        assert!(parse_user_or_group("").is_err());
        assert_eq!(
            parse_user_or_group("www data"),
            Err("contains whitespace".into())
        );
        assert!(parse_user_or_group("www\t").is_err());
    }

    #[test]
    fn static_maps() {
        let map = |m: &str, d: &str| Ok((m.to_string(), PathBuf::from(d)));
        assert_eq!(
            parse_static_map("/static=/srv/static"),
            map("/static", "/srv/static")
        );
        assert_eq!(
            parse_static_map("/static/=static/"),
            map("/static", "static/")
        );
        assert_eq!(parse_static_map("/a//=d"), map("/a", "d"));
        assert_eq!(parse_static_map("/=/srv/www"), map("/", "/srv/www"));
        assert_eq!(parse_static_map("//=/srv/www"), map("/", "/srv/www"));
        assert_eq!(parse_static_map("/m=a=b"), map("/m", "a=b"));
        assert_eq!(
            parse_static_map("static=/srv"),
            Err("the MOUNT in MOUNT=DIR must start with '/'".into())
        );
        assert_eq!(
            parse_static_map("/static="),
            Err("the DIR in MOUNT=DIR is empty".into())
        );
        assert_eq!(
            parse_static_map("/static"),
            Err("expected MOUNT=DIR".into())
        );
        assert!(parse_static_map("=/srv").is_err());
    }

    #[test]
    fn static_expires() {
        assert_eq!(
            parse_static_expires(r"\.css$ 86400"),
            Ok((r"\.css$".into(), 86400))
        );
        // The last run of whitespace separates; the regex keeps its spaces.
        assert_eq!(parse_static_expires("a b\t \t60"), Ok(("a b".into(), 60)));
        assert_eq!(parse_static_expires(".* 0 "), Ok((".*".into(), 0)));
        for v in ["", "86400", r"\.css$", " 60", "\t60"] {
            assert_eq!(
                parse_static_expires(v),
                Err("expected REGEX SECONDS".into()),
                "{v:?}"
            );
        }
        assert_eq!(
            parse_static_expires(r"\.css$ 1d"),
            Err("SECONDS: expected a whole number".into())
        );
        let e = parse_static_expires("(css 60").unwrap_err();
        assert_eq!(e, "invalid regex '(css': unclosed group");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn file_names() {
        assert_eq!(parse_file_name("index.html"), Ok("index.html".into()));
        for v in ["", ".", "..", "a/index.html", "/index.html"] {
            assert!(parse_file_name(v).is_err(), "{v}");
        }
    }

    #[test]
    fn addresses() {
        let tcp = |host: &str, port| ListenAddress::Tcp {
            host: host.into(),
            port,
        };
        assert_eq!(parse_address("127.0.0.1:8000"), Ok(tcp("127.0.0.1", 8000)));
        assert_eq!(parse_address(":8000"), Ok(tcp("", 8000)));
        assert_eq!(parse_address("localhost:0"), Ok(tcp("localhost", 0)));
        assert_eq!(parse_address("[::1]:8000"), Ok(tcp("::1", 8000)));
        assert_eq!(
            parse_address("/run/x.sock"),
            Ok(ListenAddress::Unix("/run/x.sock".into()))
        );
        assert_eq!(
            parse_address("app.sock"),
            Ok(ListenAddress::Unix("app.sock".into()))
        );
        assert_eq!(
            parse_address("@capataz"),
            Ok(ListenAddress::Abstract("capataz".into()))
        );
        for v in [
            "",
            "@",
            "[::1]",
            "[nope]:80",
            "::1:80",
            "host:80a",
            "host:",
            "host:70000",
            "8000",
        ] {
            assert!(parse_address(v).is_err(), "{v}");
        }
    }

    #[test]
    fn did_you_mean() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("procesess", "processes"), 2);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        let names = ["processes", "threads", "http", "http-socket"];
        assert_eq!(closest("procesess", names), Some("processes"));
        assert_eq!(closest("thread", names), Some("threads"));
        assert_eq!(closest("proc", names), Some("processes"));
        assert_eq!(closest("htt", names), Some("http"));
        assert_eq!(closest("zzzzzz", names), None);
        assert_eq!(closest("", ["pp"]), None);
        assert_eq!(closest("x", ["pp"]), None);
    }
}
