//! The uwsgi packet (what nginx `uwsgi_pass` sends): a 4-byte header, then a block of
//! length-prefixed key/value vars. The body follows on the stream and is not parsed here.
//!
//! ```text
//! u8 modifier1 | u16le datasize | u8 modifier2 | datasize bytes of:
//!     u16le key_len | key | u16le value_len | value   (repeated, no count, no terminator)
//! ```

use crate::http1::Span;

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
    #[error("HTTP request sent to a uwsgi socket (use http-socket for HTTP)")]
    LooksLikeHttp,
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
    use crate::http1::span;

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
    fn unsupported_modifier() {
        assert_eq!(
            parse_packet(&[5, 0, 0, 0], 65535, &mut Vec::new()),
            Err(UwsgiError::UnsupportedModifier(5))
        );
    }
}
