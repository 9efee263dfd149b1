//! Request head parsing: httparse tokenises the head; this module adds what httparse
//! leaves to its caller — the limits, bare-LF rejection, target splitting and the
//! RFC 9112 §6 message-body framing rules.

use std::mem::MaybeUninit;

use memchr::{memchr, memchr_iter, memrchr};

use super::bytes::trim_ows;
use super::{BodyFraming, Header, ParseError, RequestHead, Span, Version};
use crate::limits::Limits;

/// Header slots kept on the stack for httparse. Uninitialised, so they cost nothing;
/// only a `max_headers` above this falls back to a heap buffer per call.
const STACK_HEADER_SLOTS: usize = 128;

/// Parses one request head from the start of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, `Ok(Some(head))` once the head is
/// complete (the body or the next pipelined request starts at `head.len`), or the
/// reason to reject the request. `headers` is cleared and filled with one [`Header`]
/// per field; reuse it across requests so that parsing allocates nothing once warm.
///
/// The parse is stateless: on `Ok(None)`, call again with the same bytes plus more.
/// Limits are enforced while partial too, so a peer cannot make the caller buffer
/// more than [`Limits::max_head`] bytes.
pub fn parse_request_head(
    buf: &[u8],
    limits: &Limits,
    headers: &mut Vec<Header>,
) -> Result<Option<RequestHead>, ParseError> {
    headers.clear();
    // Spans are u32: a head can never be allowed to outgrow them.
    let max_head = limits.max_head.min(u32::MAX as usize);

    let Some(start) = skip_leading_crlf(buf, max_head)? else {
        return Ok(None);
    };
    if !request_line_may_complete(buf, start, limits)? {
        return if buf.len() > max_head {
            Err(ParseError::HeadTooLarge)
        } else {
            Ok(None)
        };
    }

    // Feeding httparse at most `max_head` bytes bounds its work and turns "no end of
    // head within the cap" into a Partial we can recognise below.
    let parse_end = buf.len().min(max_head);
    let parse_buf = &buf[start..parse_end];
    let max_headers = limits.max_headers.min(u16::MAX as usize);
    let mut stack_slots: [MaybeUninit<httparse::Header<'_>>; STACK_HEADER_SLOTS] =
        [const { MaybeUninit::uninit() }; STACK_HEADER_SLOTS];
    let mut heap_slots = Vec::new();
    let slots = if max_headers <= STACK_HEADER_SLOTS {
        &mut stack_slots[..max_headers]
    } else {
        heap_slots.resize_with(max_headers, MaybeUninit::uninit);
        &mut heap_slots[..]
    };
    let mut req = httparse::Request::new(&mut []);
    let head_len = match req.parse_with_uninit_headers(parse_buf, slots) {
        Ok(httparse::Status::Complete(n)) => start + n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > max_head {
                return Err(ParseError::HeadTooLarge);
            }
            check_incomplete_field(&buf[..parse_end], start, limits)?;
            return Ok(None);
        }
        // httparse says only "bad version" and knows only 1.0 and 1.1. A look at the
        // request line, on this error path only, tells a higher 1.x (processed as 1.1)
        // from another major version (505) and from garbage (400).
        Err(httparse::Error::Version) => {
            return match classify_version(&buf[start..parse_end]) {
                VersionClass::HigherMinor { digit } => {
                    parse_higher_minor(buf, start + digit, parse_end, limits, headers)
                }
                VersionClass::OtherMajor => Err(ParseError::UnsupportedMajorVersion),
                VersionClass::Malformed => Err(ParseError::UnsupportedVersion),
            }
        }
        Err(e) => return Err(map_httparse_error(e)),
    };

    // httparse accepts bare LF as a line ending; RFC 9112 §2.2 lets a recipient do so
    // but disagreeing with a front proxy about line ends is a smuggling vector, so we
    // require CRLF everywhere. The same pass measures each line against the limits.
    check_lines(&buf[start..head_len], limits)?;

    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        // httparse fills all three before reporting Complete.
        return Err(ParseError::InvalidRequestLine);
    };
    let version = match minor {
        0 => Version::Http10,
        1 => Version::Http11,
        _ => return Err(ParseError::UnsupportedVersion),
    };
    let method_span = span_of(buf, method.as_bytes());
    let target_span = span_of(buf, target.as_bytes());
    let (path, query, authority) =
        split_target(target.as_bytes(), method.as_bytes(), target_span.0)?;

    let mut fields = FieldSummary::default();
    for (i, h) in req.headers.iter().enumerate() {
        let value = trim_ows(h.value);
        headers.push(Header {
            name: span_of(buf, h.name.as_bytes()),
            value: span_of(buf, value),
        });
        // `i` fits: max_headers was clamped to u16::MAX above.
        fields.observe(i as u16, h.name.as_bytes(), value)?;
    }

    // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to
    // any HTTP/1.1 request message that lacks a Host header field and to any request
    // message that contains more than one Host header field line".
    if fields.hosts > 1 {
        return Err(ParseError::DuplicateHost);
    }
    if fields.hosts == 0 && version == Version::Http11 {
        return Err(ParseError::MissingHost);
    }
    let framing = fields.framing(version)?;
    if let (BodyFraming::Length(n), Some(max)) = (framing, limits.max_body) {
        if n > max {
            return Err(ParseError::BodyTooLarge);
        }
    }
    // RFC 9112 §9.3: 1.1 is persistent unless "close"; 1.0 only with "keep-alive".
    let keep_alive = match version {
        Version::Http11 => !fields.connection_close,
        Version::Http10 => fields.connection_keep_alive && !fields.connection_close,
    };
    Ok(Some(RequestHead {
        len: head_len,
        method: method_span,
        target: target_span,
        authority,
        path,
        query,
        version,
        framing,
        keep_alive,
        // RFC 9110 §10.1.1: a 100-continue expectation in HTTP/1.0 MUST be ignored.
        expect_continue: fields.expect_continue && version == Version::Http11,
        content_length_idx: fields.content_length_idx,
        content_type_idx: fields.content_type_idx,
    }))
}

/// The offset of `part` (a subslice of `buf`) as a span.
#[inline]
fn span_of(buf: &[u8], part: &[u8]) -> Span {
    // Address arithmetic only (no dereference): httparse hands back subslices of `buf`.
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    (start as u32, (start + part.len()) as u32)
}

/// RFC 9112 §2.2: "a server that is expecting to receive and parse a request-line SHOULD
/// ignore at least one empty line (CRLF) received prior to the request-line". We skip
/// any number, CRLF only, and count them against `max_head`.
/// Returns the offset of the request line, or `None` if more bytes are needed.
fn skip_leading_crlf(buf: &[u8], max_head: usize) -> Result<Option<usize>, ParseError> {
    let mut i = 0;
    loop {
        match &buf[i..] {
            [b'\r', b'\n', ..] => i += 2,
            [b'\n', ..] | [b'\r', _, ..] => return Err(ParseError::BareLineEnding),
            rest => {
                if i >= max_head {
                    return Err(ParseError::HeadTooLarge);
                }
                // Empty or a lone trailing CR: need more. Anything else starts the
                // request line.
                return Ok(match rest {
                    [] | [b'\r'] => None,
                    _ => Some(i),
                });
            }
        }
    }
}

/// Whether the request line has ended (its LF is in `buf`). Rejects with 414 as soon as
/// `max_request_line` bytes have arrived without an LF, so a peer cannot stream an
/// endless request line up to `max_head`.
fn request_line_may_complete(
    buf: &[u8],
    start: usize,
    limits: &Limits,
) -> Result<bool, ParseError> {
    // Content up to the cap, then CR and LF: any longer line cannot be within the cap.
    let window_end = buf.len().min(
        start
            .saturating_add(limits.max_request_line)
            .saturating_add(2),
    );
    match memchr(b'\n', &buf[start..window_end]) {
        Some(_) => Ok(true),
        None if window_end - start >= limits.max_request_line.saturating_add(2) => {
            Err(ParseError::RequestLineTooLong)
        }
        None => Ok(false),
    }
}

/// While partial: rejects a header line that is already longer than `max_header_field`
/// (plus room for its CR) instead of waiting for `max_head`.
fn check_incomplete_field(buf: &[u8], start: usize, limits: &Limits) -> Result<(), ParseError> {
    if let Some(nl) = memrchr(b'\n', &buf[start..]) {
        let tail = buf.len() - (start + nl + 1);
        if tail > limits.max_header_field.saturating_add(1) {
            return Err(ParseError::HeaderFieldTooLong);
        }
    }
    Ok(())
}

/// One pass over a complete head (leading CRLFs excluded): every LF must follow a CR
/// (RFC 9112 §2.2, strict), the request line must fit `max_request_line` (414) and each
/// field line `max_header_field` (431).
fn check_lines(head: &[u8], limits: &Limits) -> Result<(), ParseError> {
    let mut line_start = 0;
    for nl in memchr_iter(b'\n', head) {
        if nl == 0 || head[nl - 1] != b'\r' {
            return Err(ParseError::BareLineEnding);
        }
        let len = nl - 1 - line_start;
        if line_start == 0 {
            if len > limits.max_request_line {
                return Err(ParseError::RequestLineTooLong);
            }
        } else if len > limits.max_header_field {
            return Err(ParseError::HeaderFieldTooLong);
        }
        line_start = nl + 1;
    }
    Ok(())
}

fn map_httparse_error(e: httparse::Error) -> ParseError {
    match e {
        // Includes whitespace before the colon and obs-fold (a line starting with SP or
        // HTAB), which RFC 9112 §5.1 and §5.2 tell a server to reject with 400.
        httparse::Error::HeaderName => ParseError::InvalidHeaderName,
        httparse::Error::HeaderValue => ParseError::InvalidHeaderValue,
        httparse::Error::NewLine => ParseError::BareLineEnding,
        httparse::Error::TooManyHeaders => ParseError::TooManyHeaders,
        httparse::Error::Version => ParseError::UnsupportedVersion,
        httparse::Error::Token | httparse::Error::Status => ParseError::InvalidRequestLine,
    }
}

/// What a request line httparse refused at its version carries.
#[derive(Debug, PartialEq, Eq)]
enum VersionClass {
    /// `HTTP/1.2` to `HTTP/1.9`; `digit` is the minor digit's offset in the line.
    HigherMinor { digit: usize },
    /// A well-formed `HTTP/x.y` with a major version other than 1: 505
    /// (RFC 9110 §15.6.6).
    OtherMajor,
    /// Anything else: 400.
    Malformed,
}

/// Classifies the version of a request line httparse refused there. `line` starts at
/// the request line, whose LF is known to be in it.
#[cold]
fn classify_version(line: &[u8]) -> VersionClass {
    let line = &line[..memchr(b'\n', line).unwrap_or(line.len())];
    let Some(line) = line.strip_suffix(b"\r") else {
        return VersionClass::Malformed;
    };
    // request-line = method SP request-target SP HTTP-version (RFC 9112 §3); httparse
    // has checked the method and the target, so three SP-separated parts remain.
    // HTTP-version = "HTTP/" DIGIT "." DIGIT (RFC 9112 §2.3).
    let mut parts = line.split(|&b| b == b' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (
            Some([_, ..]),
            Some([_, ..]),
            Some([b'H', b'T', b'T', b'P', b'/', major, b'.', minor]),
            None,
        ) if major.is_ascii_digit() && minor.is_ascii_digit() => {
            if *major != b'1' {
                VersionClass::OtherMajor
            } else if *minor >= b'2' {
                VersionClass::HigherMinor {
                    digit: line.len() - 1,
                }
            } else {
                // httparse accepts 1.0 and 1.1: not a version problem after all.
                VersionClass::Malformed
            }
        }
        _ => VersionClass::Malformed,
    }
}

/// Parses a request whose version is `HTTP/1.2` to `HTTP/1.9` as `HTTP/1.1`, whose
/// minor digit is at `buf[digit]`.
///
/// RFC 9110 §2.5: "A recipient that receives a message with a major version number
/// that it implements and a minor version number higher than what it implements
/// SHOULD process the message as if it were in the highest minor version within that
/// major version to which the recipient is conformant." The response then says
/// `HTTP/1.1` (§6.2 of RFC 9112: a server sends the highest version it conforms to).
///
/// httparse has no switch for this, so the head (at most `max_head` bytes, up to
/// `parse_end`) is copied with the digit rewritten to `1` and parsed again. The copy
/// keeps every offset, so the spans returned index `buf` as usual. Such requests are
/// rare, and only they pay for the copy.
#[cold]
fn parse_higher_minor(
    buf: &[u8],
    digit: usize,
    parse_end: usize,
    limits: &Limits,
    headers: &mut Vec<Header>,
) -> Result<Option<RequestHead>, ParseError> {
    let mut patched = buf[..parse_end].to_vec();
    patched[digit] = b'1';
    match parse_request_head(&patched, limits, headers)? {
        // The copy stops at the head cap, which the original ran past.
        None if buf.len() > parse_end => Err(ParseError::HeadTooLarge),
        head => Ok(head),
    }
}

/// Splits a request-target into path and query spans (RFC 9112 §3.2), plus the
/// authority of an absolute-form target. `base` is the target's offset in the caller's
/// buffer.
fn split_target(
    target: &[u8],
    method: &[u8],
    base: u32,
) -> Result<(Span, Span, Option<Span>), ParseError> {
    let at = |i: usize| base + i as u32;
    let (path_start, authority) = match target {
        // origin-form, by far the most common.
        [b'/', ..] => (0, None),
        // asterisk-form, only meaningful for OPTIONS; the server decides.
        b"*" => return Ok(((at(0), at(1)), (at(1), at(1)), None)),
        _ => match absolute_form_authority(target) {
            // absolute-form: the authority runs to the first '/' or '?', where the
            // path starts; the path is empty when the URI has none.
            Some((scheme, start)) => {
                let rest = &target[start..];
                let len = rest
                    .iter()
                    .position(|&b| b == b'/' || b == b'?')
                    .unwrap_or(rest.len());
                check_authority(scheme, &rest[..len])?;
                (start + len, Some((at(start), at(start + len))))
            }
            // authority-form (host:port) is only valid for CONNECT.
            None if method == b"CONNECT" => {
                let end = at(target.len());
                return Ok(((at(0), end), (end, end), None));
            }
            None => return Err(ParseError::InvalidTarget),
        },
    };
    let end = target.len();
    Ok(match memchr(b'?', &target[path_start..]) {
        Some(q) => {
            let q = path_start + q;
            ((at(path_start), at(q)), (at(q + 1), at(end)), authority)
        }
        None => ((at(path_start), at(end)), (at(end), at(end)), authority),
    })
}

/// If `target` is `scheme "://" ...` (RFC 3986 scheme syntax), the scheme and the
/// offset just past the `//`, where the authority starts.
fn absolute_form_authority(target: &[u8]) -> Option<(&[u8], usize)> {
    let first = *target.first()?;
    if !first.is_ascii_alphabetic() {
        return None;
    }
    let scheme_len = target
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))?;
    target[scheme_len..]
        .starts_with(b"://")
        .then_some((&target[..scheme_len], scheme_len + 3))
}

/// An absolute-form authority stands in for Host, so it must be a valid Host value.
/// RFC 9110 §4.2.4: userinfo in an http(s) URI is an error (it hides the real host
/// from a human reader); §4.2.1/§4.2.2: an http(s) URI with an empty host is invalid.
fn check_authority(scheme: &[u8], authority: &[u8]) -> Result<(), ParseError> {
    let web = scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https");
    let empty_host = matches!(authority, [] | [b':', ..]);
    if !is_valid_host(authority) || (web && empty_host) {
        return Err(ParseError::InvalidTarget);
    }
    Ok(())
}

/// RFC 3986 §2.3 unreserved and §2.2 sub-delims: the bytes of a reg-name other than
/// `%` (checked with its two hex digits), and of an IP-literal other than `:`.
static HOST_BYTE: [bool; 256] = super::bytes::alnum_and(b"-._~!$&'()*+,;=");

/// RFC 9110 §7.2: `Host = uri-host [ ":" port ]`, with RFC 3986's `uri-host =
/// IP-literal / IPv4address / reg-name` and `port = *DIGIT`. An empty value is valid
/// (an empty reg-name). IPv4 addresses are reg-name syntax; IP-literals are checked for
/// their alphabet only (hex digits, `:`, `.`, an IPvFuture's or a zone id's bytes).
///
/// Runs on every request: one pass, one table lookup per byte, no call for the usual
/// `name[:port]`.
#[inline]
pub(crate) fn is_valid_host(value: &[u8]) -> bool {
    if let [b'[', literal @ ..] = value {
        return is_valid_ip_literal_host(literal);
    }
    let mut i = 0;
    while i < value.len() {
        let b = value[i];
        if HOST_BYTE[usize::from(b)] {
            i += 1;
        } else if b == b':' {
            return is_port(&value[i + 1..]);
        } else if b == b'%'
            && value.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && value.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
        {
            i += 3;
        } else {
            return false;
        }
    }
    true
}

/// The rest of a Host that starts with `[`: `IP-literal "]" [ ":" port ]`.
#[cold]
fn is_valid_ip_literal_host(literal: &[u8]) -> bool {
    let Some(close) = memchr(b']', literal) else {
        return false;
    };
    let inside = &literal[..close];
    !inside.is_empty()
        && inside
            .iter()
            .all(|&b| HOST_BYTE[usize::from(b)] || b == b':' || b == b'%')
        && match &literal[close + 1..] {
            [] => true,
            [b':', port @ ..] => is_port(port),
            _ => false,
        }
}

/// RFC 3986 §3.2.3: `port = *DIGIT`.
#[inline]
fn is_port(port: &[u8]) -> bool {
    port.iter().all(u8::is_ascii_digit)
}

/// What the header fields say about framing and the connection, gathered in one pass.
#[derive(Default)]
struct FieldSummary {
    content_length: Option<u64>,
    content_length_idx: Option<u16>,
    content_type_idx: Option<u16>,
    transfer_encoding: bool,
    /// Non-empty transfer codings seen, over all Transfer-Encoding fields.
    codings: u32,
    /// Whether every coding seen is `chunked`.
    only_chunked: bool,
    connection_close: bool,
    connection_keep_alive: bool,
    expect_continue: bool,
    /// Host field lines seen.
    hosts: u32,
}

impl FieldSummary {
    fn observe(&mut self, idx: u16, name: &[u8], value: &[u8]) -> Result<(), ParseError> {
        // Dispatch on length first: most fields are none of these and cost one compare.
        match name.len() {
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                let n = parse_content_length(value)?;
                match self.content_length {
                    // RFC 9110 §8.6 lets a recipient accept repeated identical values;
                    // differing ones are an unrecoverable framing error (RFC 9112 §6.3
                    // rule 5).
                    Some(prev) if prev != n => return Err(ParseError::ConflictingContentLength),
                    Some(_) => {}
                    None => {
                        self.content_length = Some(n);
                        self.content_length_idx = Some(idx);
                    }
                }
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                if !self.transfer_encoding {
                    self.transfer_encoding = true;
                    self.only_chunked = true;
                }
                // Codings from repeated fields concatenate (RFC 9110 §5.3); empty list
                // elements are ignored (RFC 9110 §5.6.1).
                for coding in list_elements(value) {
                    self.codings = self.codings.saturating_add(1);
                    self.only_chunked &= coding.eq_ignore_ascii_case(b"chunked");
                }
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for option in list_elements(value) {
                    if option.eq_ignore_ascii_case(b"close") {
                        self.connection_close = true;
                    } else if option.eq_ignore_ascii_case(b"keep-alive") {
                        self.connection_keep_alive = true;
                    }
                }
            }
            6 if name.eq_ignore_ascii_case(b"expect")
                && value.eq_ignore_ascii_case(b"100-continue") =>
            {
                self.expect_continue = true;
            }
            4 if name.eq_ignore_ascii_case(b"host") => {
                self.hosts = self.hosts.saturating_add(1);
                // RFC 9112 §3.2: "... or a Host header field with an invalid field
                // value" MUST get 400, whatever the target's form.
                if !is_valid_host(value) {
                    return Err(ParseError::InvalidHost);
                }
            }
            12 if name.eq_ignore_ascii_case(b"content-type") => {
                self.content_type_idx.get_or_insert(idx);
            }
            _ => {}
        }
        Ok(())
    }

    /// RFC 9112 §6.3, in its order of precedence.
    fn framing(&self, version: Version) -> Result<BodyFraming, ParseError> {
        if !self.transfer_encoding {
            return Ok(match self.content_length {
                Some(n) => BodyFraming::Length(n),
                // Rule 7: a request with neither has no body.
                None => BodyFraming::None,
            });
        }
        // §6.1: "A server or client that receives an HTTP/1.0 message containing a
        // Transfer-Encoding header field MUST treat the message as if the framing is
        // faulty ... and close the connection."
        if version == Version::Http10 {
            return Err(ParseError::TransferEncodingOnHttp10);
        }
        // §6.1: a request with both "ought to be handled as an error" (§6.3 rule 3);
        // we always reject it, since it is the classic request-smuggling shape.
        if self.content_length.is_some() {
            return Err(ParseError::ContentLengthWithTransferEncoding);
        }
        // §6.3 rule 4: if chunked is not the final coding of a request, the length
        // cannot be determined: 400. We decode no other coding, so the only accepted
        // value is exactly one `chunked` (§7.1: it MUST NOT be applied twice).
        if self.codings == 1 && self.only_chunked {
            Ok(BodyFraming::Chunked)
        } else {
            Err(ParseError::UnsupportedTransferEncoding)
        }
    }
}

/// RFC 9110 §5.6.1 list elements: split on commas, trim OWS, skip empty elements.
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// RFC 9110 §8.6: `Content-Length = 1*DIGIT`. A comma list of identical values is
/// accepted as that value; differing values, empty elements, signs and overflow are not.
fn parse_content_length(value: &[u8]) -> Result<u64, ParseError> {
    let mut result = None;
    for element in value.split(|&b| b == b',') {
        let n = parse_decimal(trim_ows(element))?;
        match result {
            Some(prev) if prev != n => return Err(ParseError::ConflictingContentLength),
            _ => result = Some(n),
        }
    }
    result.ok_or(ParseError::InvalidContentLength)
}

fn parse_decimal(digits: &[u8]) -> Result<u64, ParseError> {
    if digits.is_empty() {
        return Err(ParseError::InvalidContentLength);
    }
    let mut n: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return Err(ParseError::InvalidContentLength);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(ParseError::InvalidContentLength)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests;
