//! Response head encoding: validators for what the app hands us, writers for status
//! lines, header lines and chunk framing, and canned error responses.
//!
//! The server decides framing policy (Content-Length, chunked or close-delimited);
//! these helpers only validate and encode.

use super::bytes::{is_field_byte, TCHAR};
use super::Version;

/// Ends each chunk's data.
pub const CHUNK_TRAILER_CRLF: &[u8] = b"\r\n";
/// The last chunk with an empty trailer section: ends a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Whether `b` is a non-empty RFC 9110 §5.6.2 token (a valid field name or method).
pub fn is_token(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().all(|&c| TCHAR[usize::from(c)])
}

/// Whether `b` may be sent as a field value: no CR, LF, NUL, other control bytes or
/// DEL; HTAB is allowed (RFC 9110 §5.5). A CR or LF from the app would let it inject
/// headers, so the server must check every value it did not write itself.
pub fn is_valid_field_value(b: &[u8]) -> bool {
    b.iter().all(|&c| is_field_byte(c))
}

/// Whether `b` is a WSGI status: three digits from 100 to 999, then either nothing or
/// a space and a reason phrase without control bytes (RFC 9112 §4).
pub fn is_valid_status(b: &[u8]) -> bool {
    match b {
        [b'1'..=b'9', b'0'..=b'9', b'0'..=b'9', rest @ ..] => match rest {
            [] => true,
            [b' ', reason @ ..] => reason.iter().all(|&c| is_field_byte(c)),
            _ => false,
        },
        _ => false,
    }
}

/// Appends `"HTTP/1.1 200 OK\r\n"`. `status` is the WSGI status; validate it with
/// [`is_valid_status`] first.
pub fn push_status_line(out: &mut Vec<u8>, version: Version, status: &[u8]) {
    out.extend_from_slice(version.as_bytes());
    out.push(b' ');
    out.extend_from_slice(status);
    out.extend_from_slice(b"\r\n");
}

/// Appends `"name: value\r\n"`. Validate app-supplied parts with [`is_token`] and
/// [`is_valid_field_value`] first.
pub fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.reserve(name.len() + value.len() + 4);
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends a chunk-size line, `"{len:x}\r\n"`, without allocating.
pub fn push_chunk_header(out: &mut Vec<u8>, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // 16 hex digits hold any 64-bit usize; 2 more for CRLF.
    let mut buf = [0u8; 18];
    let mut i = 16;
    let mut n = len;
    loop {
        i -= 1;
        buf[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    buf[16] = b'\r';
    buf[17] = b'\n';
    out.extend_from_slice(&buf[i..]);
}

/// A canned response whose body is the reason phrase and a newline. `$len` is that
/// body's length, spelled out because `concat!` cannot compute it; a unit test checks
/// every one.
macro_rules! canned {
    ($code:literal, $reason:literal, $len:literal) => {
        concat!(
            "HTTP/1.1 ",
            $code,
            " ",
            $reason,
            "\r\nContent-Length: ",
            $len,
            "\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\n",
            $reason,
            "\n"
        )
        .as_bytes()
    };
}

/// A complete canned response for a status the server sends on its own: status line,
/// Content-Length, `Connection: close`, `Content-Type: text/plain` and a one-line body.
/// Covers 400, 404, 405, 408, 413, 414, 417, 431, 500, 503 and 505; any other code gets the 500
/// response.
pub fn error_response(status: u16) -> &'static [u8] {
    match status {
        400 => canned!("400", "Bad Request", "12"),
        404 => canned!("404", "Not Found", "10"),
        405 => canned!("405", "Method Not Allowed", "19"),
        408 => canned!("408", "Request Timeout", "16"),
        413 => canned!("413", "Content Too Large", "18"),
        414 => canned!("414", "URI Too Long", "13"),
        417 => canned!("417", "Expectation Failed", "19"),
        431 => canned!("431", "Request Header Fields Too Large", "32"),
        503 => canned!("503", "Service Unavailable", "20"),
        505 => canned!("505", "HTTP Version Not Supported", "27"),
        _ => canned!("500", "Internal Server Error", "22"),
    }
}

/// The standard reason phrase for `code` (RFC 9110 §15), or `"Unknown"`.
pub fn status_reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        101 => "Switching Protocols",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_responses_are_well_formed() {
        for code in [400, 408, 413, 414, 417, 431, 500, 503, 505] {
            let resp = error_response(code);
            let text = std::str::from_utf8(resp).unwrap();
            assert!(text.starts_with(&format!("HTTP/1.1 {code} {}\r\n", status_reason(code))));
            assert!(text.contains("\r\nConnection: close\r\n"));
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let declared: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(declared, body.len(), "status {code}");
        }
        assert_eq!(error_response(999), error_response(500));
    }

    #[test]
    fn status_validation() {
        for ok in [
            &b"200 OK"[..],
            b"404 Not Found",
            b"999 x",
            b"100",
            b"204 ",
            b"200 A\tB",
        ] {
            assert!(is_valid_status(ok), "{:?}", ok);
        }
        for bad in [
            &b""[..],
            b"20",
            b"099 Low",
            b"2000 OK",
            b"200OK",
            b"abc OK",
            b"200 OK\r\nX: y",
            b"200 OK\n",
            b"200 \0",
        ] {
            assert!(!is_valid_status(bad), "{:?}", bad);
        }
    }

    #[test]
    fn token_and_value_validation() {
        assert!(is_token(b"Content-Type"));
        assert!(is_token(b"X-!#$%&'*+.^_`|~9"));
        assert!(!is_token(b""));
        assert!(!is_token(b"Bad Name"));
        assert!(!is_token(b"Bad:Name"));
        assert!(!is_token("é".as_bytes()));
        assert!(is_valid_field_value(b"text/html; charset=utf-8"));
        assert!(is_valid_field_value(b"a\tb"));
        assert!(is_valid_field_value(b""));
        assert!(is_valid_field_value("caf\u{e9}".as_bytes()));
        for bad in [&b"a\rb"[..], b"a\nb", b"a\0b", b"a\x01b", b"a\x7fb"] {
            assert!(!is_valid_field_value(bad), "{:?}", bad);
        }
    }

    #[test]
    fn encoders() {
        let mut out = Vec::new();
        push_status_line(&mut out, Version::Http11, b"200 OK");
        push_header(&mut out, b"Content-Length", b"5");
        assert_eq!(out, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n");
        out.clear();
        push_status_line(&mut out, Version::Http10, b"404 Not Found");
        assert_eq!(out, b"HTTP/1.0 404 Not Found\r\n");
        for (len, want) in [
            (0usize, &b"0\r\n"[..]),
            (1, b"1\r\n"),
            (15, b"f\r\n"),
            (16, b"10\r\n"),
            (0xdead_beef, b"deadbeef\r\n"),
            (usize::MAX, usize_max_hex()),
        ] {
            out.clear();
            push_chunk_header(&mut out, len);
            assert_eq!(out, want, "{len}");
        }
    }

    fn usize_max_hex() -> &'static [u8] {
        if cfg!(target_pointer_width = "64") {
            b"ffffffffffffffff\r\n"
        } else {
            b"ffffffff\r\n"
        }
    }

    #[test]
    fn reasons() {
        assert_eq!(status_reason(200), "OK");
        assert_eq!(status_reason(404), "Not Found");
        assert_eq!(status_reason(599), "Unknown");
    }
}
