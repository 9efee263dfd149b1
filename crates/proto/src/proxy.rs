//! The PROXY protocol header (HAProxy's spec, versions 1 and 2) that a load balancer
//! puts at the very start of a connection to say who the client is.
//!
//! ```text
//! v1: "PROXY TCP4 192.0.2.1 198.51.100.2 51000 443\r\n"   (text, at most 107 bytes)
//!     "PROXY UNKNOWN ...\r\n"
//! v2: 12-byte signature | ver_cmd | family_transport | u16be len | addresses | TLVs
//! ```
//!
//! [`parse_proxy_header`] is pure: bytes in, `Ok(None)` for "need more",
//! [`ProxyError::NotProxy`] as soon as the bytes cannot start a header (so a server
//! can treat the header as optional), or the parsed header and its length.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The v1 text prefix.
pub const V1_PREFIX: &[u8; 6] = b"PROXY ";
/// The longest v1 line, CRLF included (the spec's worst case: `UNKNOWN` followed by
/// two full IPv6 addresses and two 5-digit ports).
pub const V1_MAX_LEN: usize = 107;
/// The v2 binary signature.
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The fixed part of a v2 header: signature, version/command, family, length.
pub const V2_HEADER_LEN: usize = 16;

/// A parsed PROXY header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyHeader {
    /// Bytes the header takes at the start of the stream; the client's data follows.
    pub len: usize,
    /// The original client, when the header names one. `None` for v1 `UNKNOWN`, v2
    /// `LOCAL` (a health check from the balancer itself), and unix or unspecified
    /// families: the connection's own peer address stands.
    pub source: Option<SocketAddr>,
    /// The address the client connected to, when given.
    pub destination: Option<SocketAddr>,
}

/// Why a PROXY header was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The bytes do not start with a PROXY header at all.
    #[error("no PROXY protocol header")]
    NotProxy,
    /// A v1 line without its CRLF within 107 bytes.
    #[error("PROXY v1 line longer than 107 bytes")]
    V1TooLong,
    /// A v1 line that does not follow the grammar.
    #[error("malformed PROXY v1 line: {0}")]
    V1Malformed(&'static str),
    /// A v2 header with a version other than 2, or a command other than LOCAL/PROXY.
    #[error("unsupported PROXY v2 version or command")]
    V2Unsupported,
    /// A v2 address block shorter than its family needs.
    #[error("PROXY v2 address block too short for its family")]
    V2Truncated,
}

/// Parses a PROXY v1 or v2 header at the start of `buf`.
pub fn parse_proxy_header(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyError> {
    match buf.first() {
        None => Ok(None),
        Some(b'P') => parse_v1(buf),
        Some(b'\r') => parse_v2(buf),
        Some(_) => Err(ProxyError::NotProxy),
    }
}

/// True when `buf` is a prefix of `sig`, or `sig` a prefix of `buf`.
fn matches_prefix(buf: &[u8], sig: &[u8]) -> bool {
    let n = buf.len().min(sig.len());
    buf[..n] == sig[..n]
}

fn parse_v1(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyError> {
    if !matches_prefix(buf, V1_PREFIX) {
        return Err(ProxyError::NotProxy);
    }
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(cr) = window.windows(2).position(|w| w == b"\r\n") else {
        if window.len() == V1_MAX_LEN {
            return Err(ProxyError::V1TooLong);
        }
        // A bare LF can never become valid: fail early rather than wait.
        if window.contains(&b'\n') {
            return Err(ProxyError::V1Malformed("line not ended by CRLF"));
        }
        return Ok(None);
    };
    let len = cr + 2;
    let line = &buf[V1_PREFIX.len()..cr];
    let malformed = ProxyError::V1Malformed;
    // Same verdict as for a prefix that stops at this LF: a bare LF never ends a line.
    if line.contains(&b'\n') {
        return Err(malformed("line not ended by CRLF"));
    }
    let mut fields = line.split(|&b| b == b' ');
    let family = fields.next().unwrap_or_default();
    if family == b"UNKNOWN" {
        // "the receiver must ignore anything presented before the CRLF"
        return Ok(Some(ProxyHeader {
            len,
            source: None,
            destination: None,
        }));
    }
    let v6 = match family {
        b"TCP4" => false,
        b"TCP6" => true,
        _ => return Err(malformed("protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let mut next = |what| fields.next().ok_or(malformed(what));
    let src = v1_ip(next("missing source address")?, v6)?;
    let dst = v1_ip(next("missing destination address")?, v6)?;
    let sport = v1_port(next("missing source port")?)?;
    let dport = v1_port(next("missing destination port")?)?;
    if fields.next().is_some() {
        return Err(malformed("extra fields"));
    }
    Ok(Some(ProxyHeader {
        len,
        source: Some(SocketAddr::new(src, sport)),
        destination: Some(SocketAddr::new(dst, dport)),
    }))
}

fn v1_ip(field: &[u8], v6: bool) -> Result<IpAddr, ProxyError> {
    let text = std::str::from_utf8(field).map_err(|_| ProxyError::V1Malformed("bad address"))?;
    let ip = if v6 {
        text.parse::<Ipv6Addr>().map(IpAddr::V6)
    } else {
        text.parse::<Ipv4Addr>().map(IpAddr::V4)
    };
    ip.map_err(|_| ProxyError::V1Malformed("bad address"))
}

fn v1_port(field: &[u8]) -> Result<u16, ProxyError> {
    let bad = ProxyError::V1Malformed("bad port");
    // The spec forbids leading zeros; "0" alone is a port.
    if field.is_empty()
        || field.len() > 5
        || !field.iter().all(u8::is_ascii_digit)
        || (field.len() > 1 && field[0] == b'0')
    {
        return Err(bad);
    }
    std::str::from_utf8(field)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(bad)
}

fn parse_v2(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyError> {
    if !matches_prefix(buf, V2_SIGNATURE) {
        return Err(ProxyError::NotProxy);
    }
    let Some(fixed) = buf.first_chunk::<V2_HEADER_LEN>() else {
        return Ok(None);
    };
    let (ver_cmd, family, len_hi, len_lo) = (fixed[12], fixed[13], fixed[14], fixed[15]);
    if ver_cmd >> 4 != 2 || ver_cmd & 0x0f > 1 {
        return Err(ProxyError::V2Unsupported);
    }
    let len = V2_HEADER_LEN + usize::from(u16::from_be_bytes([len_hi, len_lo]));
    let Some(block) = buf.get(V2_HEADER_LEN..len) else {
        return Ok(None);
    };
    let local = ver_cmd & 0x0f == 0;
    // High nibble: 0 UNSPEC, 1 INET, 2 INET6, 3 UNIX. Low nibble (transport) is
    // not checked: a stream connection is what we are reading either way.
    let addresses = match family >> 4 {
        1 => {
            let a = block.first_chunk::<12>().ok_or(ProxyError::V2Truncated)?;
            let ip = |i: usize| IpAddr::V4(Ipv4Addr::new(a[i], a[i + 1], a[i + 2], a[i + 3]));
            let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
            Some((
                SocketAddr::new(ip(0), port(8)),
                SocketAddr::new(ip(4), port(10)),
            ))
        }
        2 => {
            let a = block.first_chunk::<36>().ok_or(ProxyError::V2Truncated)?;
            let ip = |i: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&a[i..i + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
            Some((
                SocketAddr::new(ip(0), port(32)),
                SocketAddr::new(ip(16), port(34)),
            ))
        }
        _ => None,
    };
    let (source, destination) = match addresses {
        Some((src, dst)) if !local => (Some(src), Some(dst)),
        _ => (None, None),
    };
    Ok(Some(ProxyHeader {
        len,
        source,
        destination,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every strict prefix of a complete header is "need more"; the whole gives `want`.
    fn shotgun(input: &[u8], want: Result<Option<ProxyHeader>, ProxyError>) {
        assert_eq!(parse_proxy_header(input), want, "whole input");
        if let Ok(Some(h)) = want {
            for cut in 0..h.len {
                assert_eq!(parse_proxy_header(&input[..cut]), Ok(None), "cut {cut}");
            }
            // Whatever follows the header does not change the answer.
            let mut more = input[..h.len].to_vec();
            more.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            assert_eq!(parse_proxy_header(&more), want);
        }
    }

    fn sa(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn v1_tcp4_and_tcp6() {
        let line = b"PROXY TCP4 192.0.2.1 198.51.100.2 51000 443\r\n";
        shotgun(
            line,
            Ok(Some(ProxyHeader {
                len: line.len(),
                source: sa("192.0.2.1:51000"),
                destination: sa("198.51.100.2:443"),
            })),
        );
        let line = b"PROXY TCP6 2001:db8::1 ::1 0 8080\r\n";
        shotgun(
            line,
            Ok(Some(ProxyHeader {
                len: line.len(),
                source: sa("[2001:db8::1]:0"),
                destination: sa("[::1]:8080"),
            })),
        );
        let worst = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(worst.len(), V1_MAX_LEN);
        assert!(parse_proxy_header(worst).unwrap().is_some());
    }

    #[test]
    fn v1_unknown_ignores_the_rest_of_the_line() {
        for line in [&b"PROXY UNKNOWN\r\n"[..], b"PROXY UNKNOWN a b c d\r\n"] {
            shotgun(
                line,
                Ok(Some(ProxyHeader {
                    len: line.len(),
                    source: None,
                    destination: None,
                })),
            );
        }
    }

    #[test]
    fn v1_malformed() {
        for bad in [
            &b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
            // Found by the fuzzer: UNKNOWN ignores the line, but not a bare LF in it.
            b"PROXY UNKNOWN \n\x1f\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        ] {
            assert!(
                matches!(parse_proxy_header(bad), Err(ProxyError::V1Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [&b"PROXY UNKNOWN "[..], &[b'x'; 200]].concat();
        assert_eq!(parse_proxy_header(&long), Err(ProxyError::V1TooLong));
    }

    #[test]
    fn not_proxy_is_known_early() {
        for other in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"POST",
            b"PUT ",
            b"PROXZ",
            b"\r\n\r\nGET",
            b"\x00\x10\x00\x00",
            b"PATCH /",
        ] {
            assert_eq!(
                parse_proxy_header(other),
                Err(ProxyError::NotProxy),
                "{other:?}"
            );
        }
        // Prefixes of both signatures are still undecided.
        for partial in [&b"P"[..], b"PROX", b"\r", b"\r\n\r\n\0\r\nQU"] {
            assert_eq!(parse_proxy_header(partial), Ok(None), "{partial:?}");
        }
    }

    fn v2(ver_cmd: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(ver_cmd);
        out.push(family);
        out.extend_from_slice(&((addresses.len() + tlvs.len()) as u16).to_be_bytes());
        out.extend_from_slice(addresses);
        out.extend_from_slice(tlvs);
        out
    }

    #[test]
    fn v2_inet_with_tlvs() {
        let mut addrs = vec![203, 0, 113, 7, 10, 0, 0, 1];
        addrs.extend_from_slice(&4711u16.to_be_bytes());
        addrs.extend_from_slice(&443u16.to_be_bytes());
        // An AWS-style TLV (type 0xEA) after the addresses is skipped.
        let tlv = [0xEA, 0, 4, b'v', b'p', b'c', b'e'];
        let h = v2(0x21, 0x11, &addrs, &tlv);
        shotgun(
            &h,
            Ok(Some(ProxyHeader {
                len: h.len(),
                source: sa("203.0.113.7:4711"),
                destination: sa("10.0.0.1:443"),
            })),
        );
    }

    #[test]
    fn v2_inet6() {
        let src: Ipv6Addr = "2001:db8::17".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let mut addrs = src.octets().to_vec();
        addrs.extend_from_slice(&dst.octets());
        addrs.extend_from_slice(&1234u16.to_be_bytes());
        addrs.extend_from_slice(&80u16.to_be_bytes());
        let h = v2(0x21, 0x21, &addrs, &[]);
        shotgun(
            &h,
            Ok(Some(ProxyHeader {
                len: h.len(),
                source: sa("[2001:db8::17]:1234"),
                destination: sa("[2001:db8::1]:80"),
            })),
        );
    }

    #[test]
    fn v2_local_unspec_and_unix_keep_the_peer() {
        let addrs = [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2];
        for (ver_cmd, family, body) in [
            (0x20, 0x11, &addrs[..]), // LOCAL: a health check, addresses ignored
            (0x21, 0x00, &[][..]),    // PROXY with UNSPEC
            (0x21, 0x31, &[0u8; 216][..]),
        ] {
            let h = v2(ver_cmd, family, body, &[]);
            shotgun(
                &h,
                Ok(Some(ProxyHeader {
                    len: h.len(),
                    source: None,
                    destination: None,
                })),
            );
        }
    }

    #[test]
    fn v2_errors() {
        assert_eq!(
            parse_proxy_header(&v2(0x11, 0x11, &[0; 12], &[])),
            Err(ProxyError::V2Unsupported)
        );
        assert_eq!(
            parse_proxy_header(&v2(0x22, 0x11, &[0; 12], &[])),
            Err(ProxyError::V2Unsupported)
        );
        assert_eq!(
            parse_proxy_header(&v2(0x21, 0x11, &[0; 8], &[])),
            Err(ProxyError::V2Truncated)
        );
        assert_eq!(
            parse_proxy_header(&v2(0x21, 0x21, &[0; 12], &[])),
            Err(ProxyError::V2Truncated)
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_len_is_in_bounds(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            if let Ok(Some(h)) = parse_proxy_header(&data) {
                proptest::prop_assert!(h.len <= data.len());
            }
        }

        #[test]
        fn v1_round_trips(a in proptest::num::u32::ANY, b in proptest::num::u32::ANY,
                          p in proptest::num::u16::ANY, q in proptest::num::u16::ANY) {
            let (a, b) = (Ipv4Addr::from(a), Ipv4Addr::from(b));
            let line = format!("PROXY TCP4 {a} {b} {p} {q}\r\n");
            let h = parse_proxy_header(line.as_bytes()).unwrap().unwrap();
            proptest::prop_assert_eq!(h.len, line.len());
            proptest::prop_assert_eq!(h.source, Some(SocketAddr::new(a.into(), p)));
            proptest::prop_assert_eq!(h.destination, Some(SocketAddr::new(b.into(), q)));
        }
    }
}
