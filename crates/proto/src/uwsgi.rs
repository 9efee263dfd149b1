//! The uwsgi packet (what nginx `uwsgi_pass` sends): a 4-byte header, then a block of
//! length-prefixed key/value vars. The body follows on the stream and is not parsed here.
//!
//! ```text
//! u8 modifier1 | u16le datasize | u8 modifier2 | datasize bytes of:
//!     u16le key_len | key | u16le value_len | value   (repeated, no count, no terminator)
//! ```

use crate::http1::{span, Span, Version};

/// Size of the fixed packet header.
pub const HEADER_LEN: usize = 4;

/// A parsed packet header. Its vars were written to the caller's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UwsgiPacket {
    /// Bytes of the packet, `4 + datasize`: the body starts at this offset.
    pub len: usize,
    /// 0 for a WSGI request, the only kind served.
    pub modifier1: u8,
    /// Normally 0; passed through, not checked.
    pub modifier2: u8,
}

/// Why a uwsgi packet was rejected. The connection is closed; the server logs the
/// reason with the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UwsgiError {
    /// The vars block is larger than `buffer-size`.
    #[error("uwsgi vars block of {datasize} bytes exceeds buffer-size")]
    TooLarge {
        /// The declared vars block size.
        datasize: u16,
    },
    /// A var with an empty key.
    #[error("uwsgi var with a zero-length key")]
    ZeroLengthKey,
    /// A var whose length prefix runs past the end of the vars block.
    #[error("truncated uwsgi var")]
    Truncated,
    /// The first bytes look like an HTTP request: an HTTP client reached a uwsgi socket.
    #[error("HTTP sent to a uwsgi socket (HTTP clients need `http` or `http-socket`)")]
    LooksLikeHttp,
    /// `CONTENT_LENGTH` is not empty and not a decimal number.
    #[error("invalid uwsgi CONTENT_LENGTH")]
    BadContentLength,
    /// A modifier1 other than 0 (WSGI).
    #[error("unsupported uwsgi modifier1 {0}")]
    UnsupportedModifier(u8),
}

/// What the first four bytes of an HTTP request can look like.
const HTTP_PREFIXES: [&[u8; 4]; 9] = [
    b"GET ", b"POST", b"HEAD", b"PUT ", b"DELE", b"OPTI", b"PATC", b"CONN", b"TRAC",
];

/// Parses one uwsgi packet from the start of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed. On success `vars` is cleared and
/// filled with `(key, value)` spans into `buf` (absolute offsets), in wire order;
/// duplicate keys are kept, and the last one should win. `max_vars` is `buffer-size`,
/// the largest vars block accepted. Checks the header as soon as it arrives, so an
/// oversized or foreign packet is refused before its vars are buffered.
pub fn parse_packet(
    buf: &[u8],
    max_vars: usize,
    vars: &mut Vec<(Span, Span)>,
) -> Result<Option<UwsgiPacket>, UwsgiError> {
    vars.clear();
    let Some(&[modifier1, size_lo, size_hi, modifier2]) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let header = [modifier1, size_lo, size_hi, modifier2];
    if HTTP_PREFIXES.iter().any(|p| **p == header) {
        return Err(UwsgiError::LooksLikeHttp);
    }
    if modifier1 != 0 {
        return Err(UwsgiError::UnsupportedModifier(modifier1));
    }
    let datasize = u16::from_le_bytes([size_lo, size_hi]);
    if usize::from(datasize) > max_vars {
        return Err(UwsgiError::TooLarge { datasize });
    }
    let len = HEADER_LEN + usize::from(datasize);
    let Some(block) = buf.get(HEADER_LEN..len) else {
        return Ok(None);
    };

    let mut pos = 0;
    while pos < block.len() {
        let key = take_field(block, &mut pos)?;
        if key.0 == key.1 {
            return Err(UwsgiError::ZeroLengthKey);
        }
        let value = take_field(block, &mut pos)?;
        vars.push((key, value));
    }
    Ok(Some(UwsgiPacket {
        len,
        modifier1,
        modifier2,
    }))
}

/// What the server itself needs from a packet's vars, found in one pass: the body
/// length, and what the access log, the scoreboard and static files read. Spans index
/// the packet buffer; for duplicate keys the last one wins, as in the environ.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UwsgiRequest {
    /// Bytes of the packet (header and vars): the body starts at this offset.
    pub len: usize,
    /// `CONTENT_LENGTH`; absent or empty means 0.
    pub content_length: u64,
    /// `REQUEST_METHOD`.
    pub method: Option<Span>,
    /// `REQUEST_URI`: the target as the client sent it (not decoded).
    pub uri: Option<Span>,
    /// `SERVER_PROTOCOL`, e.g. `HTTP/1.1`.
    pub protocol: Option<Span>,
    /// `REMOTE_ADDR`: the client as the front-end saw it.
    pub remote_addr: Option<Span>,
}

impl UwsgiRequest {
    /// Scans the vars [`parse_packet`] found in `buf`.
    pub fn from_vars(
        buf: &[u8],
        packet: &UwsgiPacket,
        vars: &[(Span, Span)],
    ) -> Result<UwsgiRequest, UwsgiError> {
        let mut req = UwsgiRequest {
            len: packet.len,
            ..UwsgiRequest::default()
        };
        let mut content_length = None;
        for &(k, v) in vars {
            match span(buf, k) {
                b"CONTENT_LENGTH" => content_length = Some(v),
                b"REQUEST_METHOD" => req.method = Some(v),
                b"REQUEST_URI" => req.uri = Some(v),
                b"SERVER_PROTOCOL" => req.protocol = Some(v),
                b"REMOTE_ADDR" => req.remote_addr = Some(v),
                _ => {}
            }
        }
        if let Some(v) = content_length {
            req.content_length = parse_content_length(span(buf, v))?;
        }
        Ok(req)
    }

    /// The version for the response's status line: the request's `SERVER_PROTOCOL`
    /// when it is HTTP/1.1 or a later major version (nginx passes `HTTP/2.0` through
    /// for h2 clients), HTTP/1.0 when it says so, is absent, or is not HTTP at all.
    pub fn response_version(&self, buf: &[u8]) -> Version {
        match self.protocol.map(|p| span(buf, p)) {
            Some(b"HTTP/1.1") => Version::Http11,
            Some([b'H', b'T', b'T', b'P', b'/', major, ..]) if (b'2'..=b'9').contains(major) => {
                Version::Http11
            }
            _ => Version::Http10,
        }
    }
}

/// Most digits accepted in `CONTENT_LENGTH`: enough for any u64.
const MAX_CONTENT_LENGTH_DIGITS: usize = 19;

/// `CONTENT_LENGTH`: empty means 0 (nginx sends it empty for bodiless requests);
/// otherwise decimal digits only.
pub fn parse_content_length(value: &[u8]) -> Result<u64, UwsgiError> {
    if value.is_empty() {
        return Ok(0);
    }
    if value.len() > MAX_CONTENT_LENGTH_DIGITS || !value.iter().all(u8::is_ascii_digit) {
        return Err(UwsgiError::BadContentLength);
    }
    Ok(value
        .iter()
        .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// Reads one `u16le length | bytes` field of the vars block at `*pos`, returning its
/// span as an absolute offset into the packet buffer.
fn take_field(block: &[u8], pos: &mut usize) -> Result<Span, UwsgiError> {
    let Some(&[lo, hi]) = block.get(*pos..).and_then(|rest| rest.first_chunk::<2>()) else {
        return Err(UwsgiError::Truncated);
    };
    let start = *pos + 2;
    let end = start + usize::from(u16::from_le_bytes([lo, hi]));
    if end > block.len() {
        return Err(UwsgiError::Truncated);
    }
    *pos = end;
    // The block is at most 64 KiB behind a 4-byte header: offsets fit u32.
    Ok(((start + HEADER_LEN) as u32, (end + HEADER_LEN) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes a packet the way nginx does.
    fn packet(vars: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut block = Vec::new();
        for (k, v) in vars {
            block.extend_from_slice(&(k.len() as u16).to_le_bytes());
            block.extend_from_slice(k);
            block.extend_from_slice(&(v.len() as u16).to_le_bytes());
            block.extend_from_slice(v);
        }
        let mut out = vec![0];
        out.extend_from_slice(&(block.len() as u16).to_le_bytes());
        out.push(0);
        out.extend_from_slice(&block);
        out
    }

    const NGINX_VARS: &[(&[u8], &[u8])] = &[
        (b"QUERY_STRING", b"a=1"),
        (b"REQUEST_METHOD", b"POST"),
        (b"CONTENT_TYPE", b""),
        (b"CONTENT_LENGTH", b"5"),
        (b"REQUEST_URI", b"/x?a=1"),
        (b"PATH_INFO", b"/x"),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"HTTP_HOST", b"example.com"),
        (b"HTTP_HOST", b"dup.example.com"),
    ];

    #[test]
    fn parses_nginx_packet_with_body_following() {
        let mut buf = packet(NGINX_VARS);
        let packet_len = buf.len();
        buf.extend_from_slice(b"hello");
        let mut vars = Vec::new();
        let p = parse_packet(&buf, 65535, &mut vars).unwrap().unwrap();
        assert_eq!(p.len, packet_len);
        assert_eq!((p.modifier1, p.modifier2), (0, 0));
        assert_eq!(&buf[p.len..], b"hello");
        let got: Vec<_> = vars
            .iter()
            .map(|&(k, v)| (span(&buf, k), span(&buf, v)))
            .collect();
        assert_eq!(got, NGINX_VARS);
    }

    #[test]
    fn every_split_is_partial_until_complete() {
        let buf = packet(NGINX_VARS);
        let mut vars = Vec::new();
        for cut in 0..buf.len() {
            assert_eq!(
                parse_packet(&buf[..cut], 65535, &mut vars),
                Ok(None),
                "cut {cut}"
            );
        }
        assert!(parse_packet(&buf, 65535, &mut vars).unwrap().is_some());
    }

    #[test]
    fn empty_vars_block_is_a_packet() {
        let mut vars = vec![((1, 2), (3, 4))];
        let p = parse_packet(&[0, 0, 0, 0], 65535, &mut vars)
            .unwrap()
            .unwrap();
        assert_eq!(p.len, 4);
        assert!(vars.is_empty());
    }

    #[test]
    fn too_large_is_refused_from_the_header_alone() {
        let buf = packet(NGINX_VARS);
        let datasize = (buf.len() - 4) as u16;
        let mut vars = Vec::new();
        assert_eq!(
            parse_packet(&buf[..4], usize::from(datasize) - 1, &mut vars),
            Err(UwsgiError::TooLarge { datasize })
        );
        assert!(parse_packet(&buf, usize::from(datasize), &mut vars).is_ok());
    }

    #[test]
    fn zero_length_key() {
        let buf = packet(&[(b"", b"v")]);
        assert_eq!(
            parse_packet(&buf, 65535, &mut Vec::new()),
            Err(UwsgiError::ZeroLengthKey)
        );
    }

    #[test]
    fn truncated_pairs() {
        // Key length runs past the block.
        let mut buf = vec![0, 3, 0, 0, 5, 0, b'a'];
        assert_eq!(
            parse_packet(&buf, 65535, &mut Vec::new()),
            Err(UwsgiError::Truncated)
        );
        // Half a length prefix.
        buf = vec![0, 1, 0, 0, 5];
        assert_eq!(
            parse_packet(&buf, 65535, &mut Vec::new()),
            Err(UwsgiError::Truncated)
        );
        // A key without its value.
        buf = vec![0, 3, 0, 0, 1, 0, b'k'];
        assert_eq!(
            parse_packet(&buf, 65535, &mut Vec::new()),
            Err(UwsgiError::Truncated)
        );
        // Value length runs past the block.
        buf = vec![0, 6, 0, 0, 1, 0, b'k', 9, 0, b'v'];
        assert_eq!(
            parse_packet(&buf, 65535, &mut Vec::new()),
            Err(UwsgiError::Truncated)
        );
    }

    #[test]
    fn http_on_a_uwsgi_socket() {
        for req in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"POST /x",
            b"HEAD",
            b"PUT /",
            b"DELETE",
            b"OPTIONS *",
        ] {
            assert_eq!(
                parse_packet(req, 65535, &mut Vec::new()),
                Err(UwsgiError::LooksLikeHttp),
                "{:?}",
                req
            );
        }
    }

    #[test]
    fn request_info_from_nginx_vars() {
        let buf = packet(NGINX_VARS);
        let mut vars = Vec::new();
        let p = parse_packet(&buf, 65535, &mut vars).unwrap().unwrap();
        let req = UwsgiRequest::from_vars(&buf, &p, &vars).unwrap();
        assert_eq!(req.len, buf.len());
        assert_eq!(req.content_length, 5);
        assert_eq!(span(&buf, req.method.unwrap()), b"POST");
        assert_eq!(span(&buf, req.uri.unwrap()), b"/x?a=1");
        assert_eq!(req.remote_addr, None);
        assert_eq!(req.response_version(&buf), Version::Http11);
    }

    #[test]
    fn content_length_forms() {
        assert_eq!(parse_content_length(b""), Ok(0));
        assert_eq!(parse_content_length(b"0"), Ok(0));
        assert_eq!(parse_content_length(b"5242880"), Ok(5_242_880));
        assert_eq!(
            parse_content_length(b"9999999999999999999"),
            Ok(9_999_999_999_999_999_999)
        );
        for bad in [
            &b"-1"[..],
            b" 5",
            b"5 ",
            b"0x10",
            b"1e3",
            b"99999999999999999999",
        ] {
            assert_eq!(
                parse_content_length(bad),
                Err(UwsgiError::BadContentLength),
                "{bad:?}"
            );
        }
        let buf = packet(&[(b"CONTENT_LENGTH", b"12a")]);
        let mut vars = Vec::new();
        let p = parse_packet(&buf, 65535, &mut vars).unwrap().unwrap();
        assert_eq!(
            UwsgiRequest::from_vars(&buf, &p, &vars),
            Err(UwsgiError::BadContentLength)
        );
    }

    #[test]
    fn last_duplicate_wins_and_missing_means_zero() {
        let buf = packet(&[
            (b"CONTENT_LENGTH", b"3"),
            (b"REQUEST_METHOD", b"GET"),
            (b"CONTENT_LENGTH", b""),
        ]);
        let mut vars = Vec::new();
        let p = parse_packet(&buf, 65535, &mut vars).unwrap().unwrap();
        let req = UwsgiRequest::from_vars(&buf, &p, &vars).unwrap();
        assert_eq!(req.content_length, 0);
        assert_eq!(req.response_version(&buf), Version::Http10);
    }

    #[test]
    fn response_version_follows_server_protocol() {
        for (protocol, want) in [
            (&b"HTTP/1.0"[..], Version::Http10),
            (b"HTTP/1.1", Version::Http11),
            (b"HTTP/2.0", Version::Http11),
            (b"HTTP/3", Version::Http11),
            (b"HTTP/0.9", Version::Http10),
            (b"SPDY", Version::Http10),
            (b"", Version::Http10),
        ] {
            let buf = packet(&[(b"SERVER_PROTOCOL", protocol)]);
            let mut vars = Vec::new();
            let p = parse_packet(&buf, 65535, &mut vars).unwrap().unwrap();
            let req = UwsgiRequest::from_vars(&buf, &p, &vars).unwrap();
            assert_eq!(req.response_version(&buf), want, "{protocol:?}");
        }
    }

    #[test]
    fn unsupported_modifier() {
        assert_eq!(
            parse_packet(&[5, 0, 0, 0], 65535, &mut Vec::new()),
            Err(UwsgiError::UnsupportedModifier(5))
        );
    }
}
