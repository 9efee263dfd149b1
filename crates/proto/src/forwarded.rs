//! What a trusted proxy says about the client: `X-Forwarded-For`,
//! `X-Forwarded-Proto` and RFC 7239 `Forwarded`.
//!
//! Only header values are parsed here; whether the peer is trusted to send them
//! (`forwarded-allow-ips`) is the server's decision. Each function reads the
//! leftmost element, the client as the first proxy saw it (gunicorn's and
//! werkzeug's convention for one trusted proxy hop), and answers `None` for
//! anything it cannot use, so a bad value leaves the connection's own address.

use std::net::{IpAddr, SocketAddr};

/// A request scheme a proxy may report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// `http` or `https`, any letter case; anything else is `None`.
    pub fn parse(value: &[u8]) -> Option<Scheme> {
        if value.eq_ignore_ascii_case(b"https") {
            Some(Scheme::Https)
        } else if value.eq_ignore_ascii_case(b"http") {
            Some(Scheme::Http)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// The client a proxy names: an address, with a port when one was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Client {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&c| c != b' ' && c != b'\t');
    let end = b.iter().rposition(|&c| c != b' ' && c != b'\t');
    match (start, end) {
        (Some(s), Some(e)) => &b[s..=e],
        _ => &[],
    }
}

/// The leftmost comma-separated element of a list header, trimmed.
fn leftmost(value: &[u8]) -> &[u8] {
    trim(value.split(|&b| b == b',').next().unwrap_or_default())
}

/// An address as proxies write it: `192.0.2.1`, `2001:db8::1`, `192.0.2.1:4711`
/// or `[2001:db8::1]:4711`.
fn parse_node(node: &[u8]) -> Option<Client> {
    let text = std::str::from_utf8(node).ok()?;
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(Client { ip, port: None });
    }
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Some(Client {
            ip: sa.ip(),
            port: Some(sa.port()),
        });
    }
    // RFC 7239 §6: a bracketed IPv6 address without a port.
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    Some(Client {
        ip: inner.parse::<std::net::Ipv6Addr>().ok()?.into(),
        port: None,
    })
}

/// `X-Forwarded-For: client, proxy1, proxy2` → the client.
pub fn x_forwarded_for(value: &[u8]) -> Option<Client> {
    parse_node(leftmost(value))
}

/// `X-Forwarded-Proto: https` → the scheme (leftmost, when a chain appended more).
pub fn x_forwarded_proto(value: &[u8]) -> Option<Scheme> {
    Scheme::parse(leftmost(value))
}

/// What the first element of a `Forwarded` header says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// `for=`, when it is an address (not `unknown` or an obfuscated `_name`).
    pub client: Option<Client>,
    /// `proto=`, when it is http or https.
    pub proto: Option<Scheme>,
}

/// Splits `value` at `sep` outside double quotes (RFC 9110 §5.6.4 quoted-string,
/// with backslash escapes).
fn split_unquoted(value: &[u8], sep: u8) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let s = rest?;
        let (mut quoted, mut escaped) = (false, false);
        for (i, &b) in s.iter().enumerate() {
            if escaped {
                escaped = false;
            } else if quoted && b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                quoted = !quoted;
            } else if b == sep && !quoted {
                rest = Some(&s[i + 1..]);
                return Some(&s[..i]);
            }
        }
        rest = None;
        Some(s)
    })
}

/// RFC 7239 `Forwarded: for=192.0.2.60;proto=https;by=203.0.113.43, for=…`.
/// Reads the first (leftmost) element; parameter names are case-insensitive.
pub fn forwarded(value: &[u8]) -> Forwarded {
    let mut out = Forwarded::default();
    let Some(element) = split_unquoted(value, b',').next() else {
        return out;
    };
    for pair in split_unquoted(element, b';') {
        let pair = trim(pair);
        let Some(eq) = pair.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (name, raw) = (trim(&pair[..eq]), trim(&pair[eq + 1..]));
        let value = raw
            .strip_prefix(b"\"")
            .and_then(|v| v.strip_suffix(b"\""))
            .unwrap_or(raw);
        if name.eq_ignore_ascii_case(b"for") {
            out.client = parse_node(value);
        } else if name.eq_ignore_ascii_case(b"proto") {
            out.proto = Scheme::parse(value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(s: &str, port: Option<u16>) -> Option<Client> {
        Some(Client {
            ip: s.parse().unwrap(),
            port,
        })
    }

    #[test]
    fn xff_takes_the_leftmost_address() {
        assert_eq!(
            x_forwarded_for(b"203.0.113.9, 10.0.0.1, 10.0.0.2"),
            client("203.0.113.9", None)
        );
        assert_eq!(
            x_forwarded_for(b"  2001:db8::7 "),
            client("2001:db8::7", None)
        );
        assert_eq!(
            x_forwarded_for(b"198.51.100.4:5555"),
            client("198.51.100.4", Some(5555))
        );
        assert_eq!(
            x_forwarded_for(b"[2001:db8::7]:443,1.2.3.4"),
            client("2001:db8::7", Some(443))
        );
        for bad in [
            &b""[..],
            b",1.2.3.4",
            b"unknown",
            b"evil.example",
            b"1.2.3.4.5",
        ] {
            assert_eq!(x_forwarded_for(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn xfp_is_http_or_https() {
        assert_eq!(x_forwarded_proto(b"https"), Some(Scheme::Https));
        assert_eq!(x_forwarded_proto(b"HTTPS, http"), Some(Scheme::Https));
        assert_eq!(x_forwarded_proto(b" http "), Some(Scheme::Http));
        assert_eq!(x_forwarded_proto(b"wss"), None);
        assert_eq!(x_forwarded_proto(b""), None);
    }

    #[test]
    fn forwarded_rfc7239_examples() {
        // RFC 7239 §4 and §7.1 examples.
        assert_eq!(
            forwarded(b"for=\"_gazonk\""),
            Forwarded {
                client: None,
                proto: None
            }
        );
        assert_eq!(
            forwarded(b"For=\"[2001:db8:cafe::17]:4711\""),
            Forwarded {
                client: client("2001:db8:cafe::17", Some(4711)),
                proto: None
            }
        );
        assert_eq!(
            forwarded(b"for=192.0.2.60;proto=http;by=203.0.113.43"),
            Forwarded {
                client: client("192.0.2.60", None),
                proto: Some(Scheme::Http)
            }
        );
        assert_eq!(
            forwarded(b"for=192.0.2.43, for=198.51.100.17"),
            Forwarded {
                client: client("192.0.2.43", None),
                proto: None
            }
        );
        assert_eq!(
            forwarded(b"proto=HTTPS ; FOR=\"[2001:db8::1]\""),
            Forwarded {
                client: client("2001:db8::1", None),
                proto: Some(Scheme::Https)
            }
        );
        assert_eq!(forwarded(b"for=unknown").client, None);
        assert_eq!(forwarded(b"").client, None);
        // A quoted comma or semicolon does not split.
        assert_eq!(
            forwarded(b"by=\"a,b;c\";for=10.1.2.3;proto=https, for=1.1.1.1"),
            Forwarded {
                client: client("10.1.2.3", None),
                proto: Some(Scheme::Https)
            }
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = forwarded(&data);
            let _ = x_forwarded_for(&data);
            let _ = x_forwarded_proto(&data);
        }
    }
}
