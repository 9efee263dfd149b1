//! Unit tests for the request head parser; every input goes through the shotgun helper.

use super::*;
use crate::http1::span;
use crate::shotgun;

fn parse_with(input: &[u8], limits: &Limits) -> Result<(RequestHead, Vec<Header>), ParseError> {
    match shotgun::parse_head(input, limits)? {
        Some(parsed) => Ok(parsed),
        None => panic!("incomplete: {:?}", String::from_utf8_lossy(input)),
    }
}

fn parse(input: &[u8]) -> (RequestHead, Vec<Header>) {
    parse_with(input, &Limits::default()).expect("valid request")
}

fn err(input: &[u8]) -> ParseError {
    err_with(input, &Limits::default())
}

fn err_with(input: &[u8], limits: &Limits) -> ParseError {
    match shotgun::parse_head(input, limits) {
        Err(e) => e,
        other => panic!("accepted {:?}: {other:?}", String::from_utf8_lossy(input)),
    }
}

fn text(buf: &[u8], s: Span) -> &str {
    std::str::from_utf8(span(buf, s)).unwrap()
}

fn fields<'a>(buf: &'a [u8], headers: &[Header]) -> Vec<(&'a str, &'a str)> {
    headers
        .iter()
        .map(|h| (text(buf, h.name), text(buf, h.value)))
        .collect()
}

const BROWSER: &[u8] = b"GET /static/app.js?v=3&lang=en HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://www.example.com/index.html\r\n\
Connection: keep-alive\r\n\
Cookie: session=0123456789abcdef0123456789abcdef; theme=dark; _ga=GA1.2.3.4\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Site: same-origin\r\n\
Priority: u=0, i\r\n\r\n";

#[test]
fn minimal_get() {
    let buf = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let (head, headers) = parse(buf);
    assert_eq!(head.len, buf.len());
    assert_eq!(text(buf, head.method), "GET");
    assert_eq!(text(buf, head.target), "/");
    assert_eq!(text(buf, head.path), "/");
    assert_eq!(text(buf, head.query), "");
    assert_eq!(head.version, Version::Http11);
    assert_eq!(head.framing, BodyFraming::None);
    assert!(head.keep_alive);
    assert!(!head.expect_continue);
    assert_eq!(head.content_length_idx, None);
    assert_eq!(head.content_type_idx, None);
    assert_eq!(fields(buf, &headers), [("Host", "x")]);
}

#[test]
fn browser_request() {
    let (head, headers) = parse(BROWSER);
    assert_eq!(head.len, BROWSER.len());
    assert_eq!(text(BROWSER, head.path), "/static/app.js");
    assert_eq!(text(BROWSER, head.query), "v=3&lang=en");
    assert_eq!(headers.len(), 13);
    assert_eq!(fields(BROWSER, &headers)[12], ("Priority", "u=0, i"));
}

#[test]
fn pipelined_requests_in_one_buffer() {
    let buf = b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: b\r\n\r\n";
    let (first, _) = parse(buf);
    assert_eq!(first.framing, BodyFraming::Length(5));
    assert_eq!(&buf[first.len..first.len + 5], b"hello");
    let rest = &buf[first.len + 5..];
    let (second, headers) = parse(rest);
    assert_eq!(second.len, rest.len());
    assert_eq!(text(rest, second.path), "/b");
    assert_eq!(fields(rest, &headers), [("Host", "b")]);
}

#[test]
fn headers_vec_is_cleared_and_reused() {
    let mut headers = Vec::with_capacity(16);
    let capacity = headers.capacity();
    let limits = Limits::default();
    parse_request_head(BROWSER, &limits, &mut headers)
        .unwrap()
        .unwrap();
    assert_eq!(headers.len(), 13);
    let tiny = b"GET / HTTP/1.1\r\nHost: b\r\n\r\n";
    parse_request_head(tiny, &limits, &mut headers)
        .unwrap()
        .unwrap();
    assert_eq!(headers.len(), 1);
    assert_eq!(headers.capacity(), capacity);
    assert_eq!(
        parse_request_head(b"GET /", &limits, &mut headers),
        Ok(None)
    );
    assert!(headers.is_empty());
}

#[test]
fn value_ows_is_trimmed_and_empty_values_kept() {
    let buf = b"GET / HTTP/1.1\r\nX-A:  a b \t\r\nX-B:\r\nX-C: \t \r\nHost:\r\n\r\n";
    let (_, headers) = parse(buf);
    assert_eq!(
        fields(buf, &headers),
        [("X-A", "a b"), ("X-B", ""), ("X-C", ""), ("Host", "")]
    );
}

#[test]
fn obs_text_in_values_is_kept_raw() {
    let buf = b"GET / HTTP/1.1\r\nX-Name: caf\xe9\r\nHost: x\r\n\r\n";
    let (_, headers) = parse(buf);
    assert_eq!(span(buf, headers[0].value), b"caf\xe9");
}

#[test]
fn leading_crlfs_are_skipped() {
    let buf = b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let (head, _) = parse(buf);
    assert_eq!(head.len, buf.len());
    assert_eq!(head.method, (4, 7));
    assert_eq!(
        parse_request_head(b"\r\n\r", &Limits::default(), &mut Vec::new()),
        Ok(None)
    );
}

#[test]
fn query_splitting() {
    for (target, path, query) in [
        ("/a/b?x=1&y=2", "/a/b", "x=1&y=2"),
        ("/a?b=1?c", "/a", "b=1?c"),
        ("/a?", "/a", ""),
        ("/a", "/a", ""),
        ("/%7Euser/a%20b?q=%20", "/%7Euser/a%20b", "q=%20"),
        ("//double", "//double", ""),
    ] {
        let buf = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        let buf = buf.as_bytes();
        let (head, _) = parse(buf);
        assert_eq!(text(buf, head.target), target);
        assert_eq!((text(buf, head.path), text(buf, head.query)), (path, query));
    }
    let buf = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    let (head, _) = parse(buf);
    assert_eq!(head.query.0, head.query.1, "no '?' gives an empty span");
}

#[test]
fn absolute_form_targets() {
    for (target, path, query) in [
        ("http://example.com/p/q?x=1", "/p/q", "x=1"),
        ("https://example.com:8443/", "/", ""),
        ("HTTP://example.com/p", "/p", ""),
        ("http://example.com", "", ""),
        ("http://example.com?q", "", "q"),
    ] {
        let buf = format!("GET {target} HTTP/1.1\r\nHost: example.com\r\n\r\n");
        let buf = buf.as_bytes();
        let (head, _) = parse(buf);
        assert_eq!(text(buf, head.target), target);
        assert_eq!(
            (text(buf, head.path), text(buf, head.query)),
            (path, query),
            "{target}"
        );
    }
}

#[test]
fn absolute_form_authority_replaces_host() {
    // RFC 9112 §3.2.2: the server MUST ignore Host and use the target's authority.
    for (target, authority) in [
        ("http://example.com/env?x=1", "example.com"),
        ("https://example.com:8443/", "example.com:8443"),
        ("HTTP://Example.COM", "Example.COM"),
        ("http://example.com?q", "example.com"),
        ("http://[::1]:8080/a", "[::1]:8080"),
        ("http://10.0.0.1:/a", "10.0.0.1:"),
    ] {
        let buf = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        let buf = buf.as_bytes();
        let (head, _) = parse(buf);
        let got = head.authority.map(|a| text(buf, a));
        assert_eq!(got, Some(authority), "{target}");
    }
    // Only absolute-form has one.
    for buf in [
        &b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    ] {
        assert_eq!(parse(buf).0.authority, None);
    }
    // Without Host on HTTP/1.0, the authority is still there to use.
    let buf = b"GET http://example.com/ HTTP/1.0\r\n\r\n";
    assert_eq!(
        parse(buf).0.authority.map(|a| text(buf, a)),
        Some("example.com")
    );
}

#[test]
fn absolute_form_authority_must_be_a_valid_host() {
    for target in [
        // RFC 9110 §4.2.4: userinfo is treated as an error.
        "http://user@h:1/a?b",
        "http://user:pw@example.com/",
        // RFC 9110 §4.2.1: an http(s) URI with an empty host is invalid.
        "http:///a",
        "https://:443/a",
        "http://",
        // Not uri-host [ ":" port ].
        "http://a\"b/",
        "http://a:b/",
        "http://[::1/",
        "http://[::1]x/",
        "http://h#f/",
        "http://h%zz/",
    ] {
        let buf = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        let e = err(buf.as_bytes());
        assert_eq!(
            (e, e.status()),
            (ParseError::InvalidTarget, 400),
            "{target}"
        );
    }
}

#[test]
fn invalid_host_value_is_rejected() {
    // RFC 9112 §3.2: "a Host header field with an invalid field value" MUST get 400.
    for value in [
        "a b",
        "a/b",
        "a@b",
        "user@example.com",
        "example.com:80x",
        "example.com:80:80",
        "[::1",
        "[]",
        "[::1]x",
        "[::1]:a",
        "a\\b",
        "caf\u{e9}.example",
        "a%zz",
        "a%4",
        "a?b",
        "a#b",
        "<a>",
    ] {
        for version in ["HTTP/1.0", "HTTP/1.1"] {
            let req = format!("GET / {version}\r\nHost: {value}\r\n\r\n");
            let e = err(req.as_bytes());
            assert_eq!((e, e.status()), (ParseError::InvalidHost, 400), "{req:?}");
        }
    }
    // Also with an absolute-form target, whose authority wins.
    let e = err(b"GET http://example.com/ HTTP/1.1\r\nHost: a b\r\n\r\n");
    assert_eq!(e, ParseError::InvalidHost);
}

#[test]
fn valid_host_values_are_accepted() {
    for value in [
        "example.com",
        "example.com:8080",
        "localhost:",
        "127.0.0.1",
        "127.0.0.1:65535",
        "[::1]",
        "[::1]:8080",
        "[fe80::1%25eth0]",
        "[v1.fe80::a+en1]",
        "xn--caf-dma.example",
        "a_b-c~d.e",
        "a%20b",
        "!$&'()*+,;=",
        "EXAMPLE.COM",
    ] {
        let buf = format!("GET / HTTP/1.1\r\nHost: {value}\r\n\r\n");
        let buf = buf.as_bytes();
        let (_, headers) = parse(buf);
        assert_eq!(fields(buf, &headers), [("Host", value)]);
    }
}

#[test]
fn asterisk_and_authority_form() {
    let buf = b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n";
    let (head, _) = parse(buf);
    assert_eq!((text(buf, head.path), text(buf, head.query)), ("*", ""));
    let buf = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n";
    let (head, _) = parse(buf);
    assert_eq!(text(buf, head.path), "example.com:443");
    for bad in [
        &b"GET example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"GET a/b HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        assert_eq!(err(bad), ParseError::InvalidTarget);
    }
}

#[test]
fn keep_alive_rules() {
    for (req, keep_alive) in [
        ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", true),
        (
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            false,
        ),
        (
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: CLOSE\r\n\r\n",
            false,
        ),
        (
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Close\r\n\r\n",
            false,
        ),
        (
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nConnection: close\r\n\r\n",
            false,
        ),
        (
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: closed\r\n\r\n",
            true,
        ),
        ("GET / HTTP/1.0\r\n\r\n", false),
        ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
        (
            "GET / HTTP/1.0\r\nConnection: foo ,Keep-Alive\r\n\r\n",
            true,
        ),
        (
            "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
            false,
        ),
        (
            "GET / HTTP/1.0\r\nConnection: keep-alive-ish\r\n\r\n",
            false,
        ),
    ] {
        let (head, _) = parse(req.as_bytes());
        assert_eq!(head.keep_alive, keep_alive, "{req:?}");
    }
}

#[test]
fn expect_continue() {
    for (req, expect) in [
        (
            "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            true,
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nEXPECT:  100-Continue \r\n\r\n",
            true,
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\n\r\n",
            false,
        ),
        ("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", false),
    ] {
        let (head, _) = parse(req.as_bytes());
        assert_eq!(head.expect_continue, expect, "{req:?}");
    }
}

#[test]
fn content_length_and_type_indices() {
    let buf = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: a/b\r\ncontent-length: 12\r\n\
content-type: c/d\r\n\r\n";
    let (head, _) = parse(buf);
    assert_eq!(head.framing, BodyFraming::Length(12));
    assert_eq!(head.content_type_idx, Some(1));
    assert_eq!(head.content_length_idx, Some(2));
}

#[test]
fn identical_content_lengths_are_accepted() {
    for req in [
        &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 005\r\n\r\n",
    ] {
        let (head, _) = parse(req);
        assert_eq!(head.framing, BodyFraming::Length(5));
        assert_eq!(head.content_length_idx, Some(1));
    }
    let (head, _) = parse(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(head.framing, BodyFraming::Length(0));
}

#[test]
fn differing_content_lengths_are_rejected() {
    for req in [
        &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\n",
    ] {
        assert_eq!(err(req), ParseError::ConflictingContentLength);
    }
}

#[test]
fn malformed_content_length() {
    for value in [
        "",
        "+5",
        "-5",
        "5a",
        "0x5",
        "5.0",
        "5,",
        ",5",
        "5 5",
        "18446744073709551616",
    ] {
        let req = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {value}\r\n\r\n");
        assert_eq!(
            err(req.as_bytes()),
            ParseError::InvalidContentLength,
            "{value:?}"
        );
    }
    let (head, _) =
        parse(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n");
    assert_eq!(head.framing, BodyFraming::Length(u64::MAX));
}

#[test]
fn chunked_transfer_encoding() {
    for value in ["chunked", "Chunked", "CHUNKED", "chunked,", " , chunked"] {
        let req = format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {value}\r\n\r\n");
        let (head, _) = parse(req.as_bytes());
        assert_eq!(head.framing, BodyFraming::Chunked, "{value:?}");
    }
}

#[test]
fn unsupported_transfer_encodings() {
    for value in [
        "gzip",
        "gzip, chunked",
        "chunked, gzip",
        "chunked, chunked",
        "identity",
        "",
    ] {
        let req = format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {value}\r\n\r\n");
        assert_eq!(
            err(req.as_bytes()),
            ParseError::UnsupportedTransferEncoding,
            "{value:?}"
        );
    }
    let two =
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(err(two), ParseError::UnsupportedTransferEncoding);
}

#[test]
fn content_length_with_transfer_encoding() {
    for req in [
        &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
    ] {
        assert_eq!(err(req), ParseError::ContentLengthWithTransferEncoding);
    }
}

#[test]
fn transfer_encoding_on_http10() {
    let req = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(err(req), ParseError::TransferEncodingOnHttp10);
}

#[test]
fn whitespace_before_colon() {
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n"),
        ParseError::InvalidHeaderName
    );
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost\t: x\r\n\r\n"),
        ParseError::InvalidHeaderName
    );
}

#[test]
fn obs_fold_is_rejected() {
    for req in [
        &b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n",
        b"GET / HTTP/1.1\r\n Host: x\r\n\r\n",
    ] {
        assert_eq!(err(req), ParseError::InvalidHeaderName, "{req:?}");
    }
}

#[test]
fn bad_header_names() {
    for req in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n: x\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nX(A): x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n",
    ] {
        assert_eq!(err(req).status(), 400, "{req:?}");
    }
}

#[test]
fn control_bytes_in_values() {
    for req in [
        &b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
    ] {
        assert_eq!(err(req), ParseError::InvalidHeaderValue, "{req:?}");
    }
    // An LF inside a value ends the line early: caught as a bare LF.
    assert_eq!(
        err(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\nb: c\r\n\r\n"),
        ParseError::BareLineEnding
    );
}

#[test]
fn bare_lf_is_rejected_everywhere() {
    for req in [
        &b"GET / HTTP/1.1\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\n",
        b"GET / HTTP/1.1\n\n",
        b"\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\r\n\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\rGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\rX",
    ] {
        assert_eq!(err(req), ParseError::BareLineEnding, "{req:?}");
    }
}

#[test]
fn unknown_versions() {
    // Not HTTP-version syntax: 400.
    for version in [
        "http/1.1", "HTTP/1", "HTTP/2", "HTTP/2.x", "HTTP/1.x", "HTTP/1.",
    ] {
        let req = format!("GET / {version}\r\nHost: x\r\n\r\n");
        let e = err(req.as_bytes());
        assert_eq!(
            (e, e.status()),
            (ParseError::UnsupportedVersion, 400),
            "{version}"
        );
    }
    // httparse reads "HTTP/1.1" and then finds no CRLF.
    assert_eq!(err(b"GET / HTTP/1.10\r\nHost: x\r\n\r\n").status(), 400);
    assert_eq!(err(b"GET /\r\nHost: x\r\n\r\n").status(), 400);
}

#[test]
fn higher_minor_versions_are_processed_as_1_1() {
    // RFC 9110 §2.5: a higher minor version of a major we implement is processed as
    // the highest minor we implement, with 1.1's rules (Host required, persistent).
    for minor in 2..=9 {
        let req = format!(
            "\r\nPOST /up?x=1 HTTP/1.{minor}\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET"
        );
        let (head, headers) = parse(req.as_bytes());
        let buf = req.as_bytes();
        assert_eq!(head.version, Version::Http11, "{req:?}");
        assert!(head.keep_alive);
        assert_eq!(head.framing, BodyFraming::Length(3));
        assert_eq!(head.len, req.len() - "abcGET".len());
        assert_eq!(text(buf, head.method), "POST");
        assert_eq!(text(buf, head.target), "/up?x=1");
        assert_eq!(text(buf, head.query), "x=1");
        assert_eq!(
            fields(buf, &headers),
            [("Host", "h"), ("Content-Length", "3")]
        );

        let no_host = format!("GET / HTTP/1.{minor}\r\n\r\n");
        assert_eq!(err(no_host.as_bytes()), ParseError::MissingHost);
        let close = format!("GET / HTTP/1.{minor}\r\nHost: h\r\nConnection: close\r\n\r\n");
        assert!(!parse(close.as_bytes()).0.keep_alive);
    }
    // The rest of the head is still checked as strictly.
    assert_eq!(
        err(b"GET / HTTP/1.2\r\nHost: h\r\nbad header\r\n\r\n"),
        ParseError::InvalidHeaderName
    );
    assert_eq!(
        err(b"GET / HTTP/1.2\r\nHost: h\nX: y\r\n\r\n"),
        ParseError::BareLineEnding
    );
    // The head cap holds as for any request.
    let small = Limits {
        max_head: 64,
        ..Limits::default()
    };
    let long = format!(
        "GET / HTTP/1.2\r\nHost: h\r\nX: {}\r\n\r\n",
        "a".repeat(100)
    );
    assert_eq!(err_with(long.as_bytes(), &small).status(), 431);
}

#[test]
fn other_major_versions_get_505() {
    // RFC 9110 §15.6.6: 505 for a major version the server does not support.
    for version in ["HTTP/2.0", "HTTP/3.0", "HTTP/0.9", "HTTP/9.9"] {
        for req in [
            format!("GET / {version}\r\nHost: x\r\n\r\n"),
            format!("\r\nPOST http://h/a?b {version}\r\n\r\n"),
            format!("PRI * {version}\r\n\r\nSM\r\n\r\n"),
        ] {
            let e = err(req.as_bytes());
            assert_eq!(
                (e, e.status()),
                (ParseError::UnsupportedMajorVersion, 505),
                "{req:?}"
            );
        }
    }
    // A request line that is malformed besides stays a 400.
    for req in [
        &b"GET / HTTP/2.0 \r\nHost: x\r\n\r\n"[..],
        b"GET /a b HTTP/2.0\r\nHost: x\r\n\r\n",
        b"GET / HTTP/2.0\nHost: x\r\n\r\n",
        b"GET / HTTP/20.0\r\nHost: x\r\n\r\n",
        b"GET / HTTP/2.00\r\nHost: x\r\n\r\n",
    ] {
        assert_eq!(err(req).status(), 400, "{req:?}");
    }
}

#[test]
fn method_must_be_a_token() {
    for req in [
        &b"GE(T / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"G\"T / HTTP/1.1\r\nHost: x\r\n\r\n",
        b" GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        assert_eq!(err(req), ParseError::InvalidRequestLine, "{req:?}");
    }
    let (head, _) = parse(b"M-SEARCH * HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(head.method, (0, 8));
}

#[test]
fn missing_host_on_http11_is_rejected() {
    // RFC 9112 §3.2: an HTTP/1.1 request without Host MUST get a 400.
    for req in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nX-Host: x\r\nHosts: x\r\nHos: x\r\n\r\n",
        b"GET http://example.com/ HTTP/1.1\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
    ] {
        let e = err(req);
        assert_eq!((e, e.status()), (ParseError::MissingHost, 400), "{req:?}");
    }
}

#[test]
fn missing_host_on_http10_is_accepted() {
    let buf = b"GET / HTTP/1.0\r\n\r\n";
    let (head, headers) = parse(buf);
    assert_eq!(head.len, buf.len());
    assert_eq!(head.version, Version::Http10);
    assert!(headers.is_empty());
    let (head, _) = parse(b"POST /a HTTP/1.0\r\nContent-Length: 3\r\n\r\n");
    assert_eq!(head.framing, BodyFraming::Length(3));
}

#[test]
fn duplicate_host_is_rejected() {
    // RFC 9112 §3.2: more than one Host field line is a 400 whatever the version,
    // even when the values agree or are empty.
    for version in ["HTTP/1.0", "HTTP/1.1"] {
        for fields in [
            "Host: a\r\nHost: b\r\n",
            "Host: a\r\nHost: a\r\n",
            "Host: a\r\nX-A: 1\r\nhost: a\r\n",
            "Host:\r\nHost:\r\n",
            "Host: a\r\nHost: b\r\nHost: c\r\n",
        ] {
            let req = format!("GET / {version}\r\n{fields}\r\n");
            let e = err(req.as_bytes());
            assert_eq!((e, e.status()), (ParseError::DuplicateHost, 400), "{req:?}");
        }
    }
}

#[test]
fn empty_host_on_http11_is_accepted() {
    // RFC 9112 §3.2: an empty Host is allowed when the target has no authority.
    for buf in [
        &b"GET / HTTP/1.1\r\nHost:\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: \t \r\n\r\n",
    ] {
        let (head, headers) = parse(buf);
        assert_eq!(head.len, buf.len());
        assert_eq!(head.version, Version::Http11);
        assert_eq!(fields(buf, &headers), [("Host", "")]);
    }
}

#[test]
fn host_name_is_case_insensitive() {
    for name in ["host", "HOST", "hOsT"] {
        let buf = format!("GET / HTTP/1.1\r\n{name}: example.com\r\n\r\n");
        let buf = buf.as_bytes();
        let (_, headers) = parse(buf);
        assert_eq!(fields(buf, &headers), [(name, "example.com")]);
        let dup = format!("GET / HTTP/1.1\r\nHost: a\r\n{name}: b\r\n\r\n");
        assert_eq!(err(dup.as_bytes()), ParseError::DuplicateHost, "{name}");
    }
}

fn limits(f: impl FnOnce(&mut Limits)) -> Limits {
    let mut l = Limits::default();
    f(&mut l);
    l
}

#[test]
fn request_line_limit() {
    let l = limits(|l| l.max_request_line = 20);
    // "GET /aaaaa HTTP/1.1" is 19 bytes, then 20 (the cap), then 21.
    parse_with(b"GET /aaaaa HTTP/1.1\r\nHost: x\r\n\r\n", &l).unwrap();
    parse_with(b"GET /aaaaaa HTTP/1.1\r\nHost: x\r\n\r\n", &l).unwrap();
    assert_eq!(
        err_with(b"GET /aaaaaaa HTTP/1.1\r\nHost: x\r\n\r\n", &l),
        ParseError::RequestLineTooLong
    );
    assert_eq!(ParseError::RequestLineTooLong.status(), 414);
    // Detected while partial: no LF within the cap.
    // 21 bytes could still be 20 and a CR; 22 without an LF cannot fit.
    let mut headers = Vec::new();
    let line = format!("GET /{}", "a".repeat(16));
    assert_eq!(
        parse_request_head(line.as_bytes(), &l, &mut headers),
        Ok(None)
    );
    let line = format!("GET /{}", "a".repeat(17));
    assert_eq!(
        parse_request_head(line.as_bytes(), &l, &mut headers),
        Err(ParseError::RequestLineTooLong)
    );
}

#[test]
fn header_count_limit() {
    // Host counts as one of the fields.
    let l = limits(|l| l.max_headers = 3);
    let (_, headers) =
        parse_with(b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n", &l).unwrap();
    assert_eq!(headers.len(), 3);
    let e = err_with(
        b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
        &l,
    );
    assert_eq!((e, e.status()), (ParseError::TooManyHeaders, 431));
    // Above the stack slots, the heap fallback applies the same cap.
    let l = limits(|l| l.max_headers = 200);
    let mut req = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..199 {
        req.extend_from_slice(format!("X-{i}: {i}\r\n").as_bytes());
    }
    let mut headers = Vec::new();
    let ok = [&req[..], b"\r\n"].concat();
    assert_eq!(
        parse_request_head(&ok, &l, &mut headers)
            .unwrap()
            .unwrap()
            .len,
        ok.len()
    );
    assert_eq!(headers.len(), 200);
    let over = [&req[..], b"X: y\r\n\r\n"].concat();
    assert_eq!(
        parse_request_head(&over, &l, &mut headers),
        Err(ParseError::TooManyHeaders)
    );
}

#[test]
fn header_field_limit() {
    let l = limits(|l| l.max_header_field = 10);
    parse_with(b"GET / HTTP/1.1\r\nHost: x\r\nAbcd: 1234\r\n\r\n", &l).unwrap();
    let e = err_with(b"GET / HTTP/1.1\r\nHost: x\r\nAbcd: 12345\r\n\r\n", &l);
    assert_eq!((e, e.status()), (ParseError::HeaderFieldTooLong, 431));
    // Detected while partial.
    let mut headers = Vec::new();
    let long = b"GET / HTTP/1.1\r\nHost: x\r\nAbcd: 1234567890";
    assert_eq!(
        parse_request_head(long, &l, &mut headers),
        Err(ParseError::HeaderFieldTooLong)
    );
}

#[test]
fn head_size_limit() {
    let buf = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n";
    let l = limits(|l| l.max_head = buf.len());
    parse_with(buf, &l).unwrap();
    let l = limits(|l| l.max_head = buf.len() - 1);
    let e = err_with(buf, &l);
    assert_eq!((e, e.status()), (ParseError::HeadTooLarge, 431));
    // Detected while partial, and for a flood of leading CRLFs.
    let l = limits(|l| l.max_head = 40);
    let mut headers = Vec::new();
    let partial = b"GET / HTTP/1.1\r\nHost: x\r\nB: 2\r\nC: 3\r\nD: 4";
    assert_eq!(partial.len(), 41);
    assert_eq!(
        parse_request_head(&partial[..40], &l, &mut headers),
        Ok(None)
    );
    assert_eq!(
        parse_request_head(partial, &l, &mut headers),
        Err(ParseError::HeadTooLarge)
    );
    assert_eq!(
        parse_request_head(&b"\r\n".repeat(21), &l, &mut headers),
        Err(ParseError::HeadTooLarge)
    );
}

#[test]
fn body_size_limit() {
    let l = limits(|l| l.max_body = Some(10));
    let (head, _) = parse_with(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n",
        &l,
    )
    .unwrap();
    assert_eq!(head.framing, BodyFraming::Length(10));
    let e = err_with(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n",
        &l,
    );
    assert_eq!((e, e.status()), (ParseError::BodyTooLarge, 413));
}

#[test]
fn every_error_has_a_status_and_reason() {
    use ParseError::*;
    for e in [
        RequestLineTooLong,
        TooManyHeaders,
        HeaderFieldTooLong,
        HeadTooLarge,
        BodyTooLarge,
        TrailersTooLarge,
        BareLineEnding,
        InvalidRequestLine,
        InvalidTarget,
        UnsupportedVersion,
        UnsupportedMajorVersion,
        MissingHost,
        DuplicateHost,
        InvalidHost,
        InvalidHeaderName,
        InvalidHeaderValue,
        InvalidContentLength,
        ConflictingContentLength,
        ContentLengthWithTransferEncoding,
        UnsupportedTransferEncoding,
        TransferEncodingOnHttp10,
        InvalidChunkSize,
        InvalidChunkExtension,
        ChunkExtensionTooLong,
        InvalidChunkTerminator,
        InvalidTrailer,
    ] {
        assert!([400, 413, 414, 431, 505].contains(&e.status()));
        assert_eq!(e.reason(), e.to_string());
    }
}
