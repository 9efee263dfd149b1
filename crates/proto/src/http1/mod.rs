//! HTTP/1.x: request head parsing, chunked body decoding and response head encoding.
//!
//! - [`request`] — [`parse_request_head`], httparse underneath, plus the RFC 9112 framing
//!   rules httparse leaves to its caller (Content-Length / Transfer-Encoding, bare LF,
//!   limits, keep-alive, `Expect`).
//! - [`chunked`] — [`ChunkedDecoder`], an explicit state machine for `chunked` bodies.
//! - [`response`] — validation and encoding helpers for response heads, and canned error
//!   responses.
//!
//! Everything here is sans-IO: bytes in, a result or "need more bytes" out. Parsed items
//! are [`Span`]s into the caller's buffer, so parsing allocates nothing per request.

pub mod chunked;
pub mod request;
pub mod response;

pub use chunked::ChunkedDecoder;
pub use request::parse_request_head;
pub use response::{
    error_response, is_token, is_valid_field_value, is_valid_status, push_chunk_header,
    push_header, push_status_line, status_reason, CHUNK_TRAILER_CRLF, LAST_CHUNK,
};

/// A byte range `[start, end)` into the caller's buffer.
///
/// `u32` keeps [`Header`] at 16 bytes; heads are capped far below 4 GiB by
/// [`crate::limits::Limits::max_head`].
pub type Span = (u32, u32);

/// Returns the bytes of `buf` that `s` covers.
///
/// Panics if `s` is out of bounds, which only happens when the span came from a
/// different buffer.
#[inline]
pub fn span(buf: &[u8], s: Span) -> &[u8] {
    &buf[s.0 as usize..s.1 as usize]
}

/// The HTTP versions we speak. `HTTP/1.2` to `HTTP/1.9` are processed as `Http11`
/// (RFC 9110 §2.5), so the response and `SERVER_PROTOCOL` say `HTTP/1.1`. Another major
/// version is rejected with 505, anything else with 400 (see
/// [`ParseError::UnsupportedMajorVersion`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// `HTTP/1.0`
    Http10,
    /// `HTTP/1.1`
    Http11,
}

impl Version {
    /// The version as it appears on the wire, e.g. `b"HTTP/1.1"`.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Version::Http10 => b"HTTP/1.0",
            Version::Http11 => b"HTTP/1.1",
        }
    }
}

/// One header field; both spans index the buffer given to [`parse_request_head`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The field name, as sent (case preserved).
    pub name: Span,
    /// The field value with leading and trailing SP/HTAB removed.
    pub value: Span,
}

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No Content-Length and no Transfer-Encoding: the body is empty (§6.3 rule 7).
    None,
    /// `Content-Length: n` (§6.3 rule 6).
    Length(u64),
    /// `Transfer-Encoding: chunked`; decode with [`ChunkedDecoder`] (§6.3 rule 4).
    Chunked,
}

/// A parsed request head. Spans index the buffer given to [`parse_request_head`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// Bytes of the head, including any skipped leading CRLFs and the final CRLFCRLF.
    /// The body (or the next pipelined request) starts at this offset.
    pub len: usize,
    /// The method token, e.g. `GET`.
    pub method: Span,
    /// The raw request-target.
    pub target: Span,
    /// For an absolute-form target (`http://h:1/p?q`), its authority (`h:1`), validated
    /// as a Host value. RFC 9112 §3.2.2: the server MUST ignore the Host header then and
    /// use this instead. `None` for every other form.
    pub authority: Option<Span>,
    /// The path of the target, raw (not percent-decoded). For absolute-form
    /// (`http://h/p?q`) the `/p` part, which is empty when the URI has no path (treat as
    /// `/`); `*` for asterisk-form; the whole target for authority-form (CONNECT).
    pub path: Span,
    /// Everything after the first `?` of the target; an empty span when there is no `?`.
    pub query: Span,
    /// The protocol version.
    pub version: Version,
    /// How the body is delimited.
    pub framing: BodyFraming,
    /// Whether the connection may stay open after this exchange (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request (RFC 9110 §10.1.1: ignored on 1.0).
    pub expect_continue: bool,
    /// Index into the header list of the (first) Content-Length header.
    pub content_length_idx: Option<u16>,
    /// Index into the header list of the first Content-Type header.
    pub content_type_idx: Option<u16>,
}

/// Why a request was rejected. Each maps to the status the client gets
/// ([`ParseError::status`]); the connection is closed afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The request line is longer than `max_request_line`.
    #[error("request line too long")]
    RequestLineTooLong,
    /// More header fields than `max_headers`.
    #[error("too many header fields")]
    TooManyHeaders,
    /// One header line is longer than `max_header_field`.
    #[error("header field too long")]
    HeaderFieldTooLong,
    /// The head did not complete within `max_head` bytes.
    #[error("request head too large")]
    HeadTooLarge,
    /// The declared or decoded body exceeds `max_body`.
    #[error("request body too large")]
    BodyTooLarge,
    /// The trailer section of a chunked body exceeds `max_trailers`.
    #[error("chunked trailer section too large")]
    TrailersTooLarge,
    /// A line ends in LF without CR, or CR is not followed by LF.
    #[error("bare LF or CR line ending")]
    BareLineEnding,
    /// The method is not a token, or the request line is otherwise malformed.
    #[error("malformed request line")]
    InvalidRequestLine,
    /// The request-target is not origin-, absolute-, authority- or asterisk-form, or an
    /// absolute-form authority has userinfo (RFC 9110 §4.2.4) or an invalid host.
    #[error("invalid request target")]
    InvalidTarget,
    /// The version is malformed (not `HTTP/` DIGIT `.` DIGIT).
    #[error("unsupported HTTP version")]
    UnsupportedVersion,
    /// A well-formed version whose major number is not 1 (`HTTP/2.0`, `HTTP/0.9`):
    /// 505 (RFC 9110 §15.6.6).
    #[error("HTTP major version not supported")]
    UnsupportedMajorVersion,
    /// An HTTP/1.1 request without a Host field (RFC 9112 §3.2: MUST be 400).
    #[error("missing Host header")]
    MissingHost,
    /// More than one Host field line (RFC 9112 §3.2: MUST be 400).
    #[error("more than one Host header")]
    DuplicateHost,
    /// A Host value that is not `uri-host [ ":" port ]` (RFC 9112 §3.2: MUST be 400).
    #[error("invalid Host header")]
    InvalidHost,
    /// A header name has an invalid byte, whitespace before the colon, or is an
    /// obs-fold continuation line.
    #[error("invalid header name")]
    InvalidHeaderName,
    /// A header value contains CR, LF, NUL or another forbidden control byte.
    #[error("invalid header value")]
    InvalidHeaderValue,
    /// Content-Length is empty, signed, non-numeric or overflows u64.
    #[error("invalid Content-Length")]
    InvalidContentLength,
    /// Several Content-Length values that differ.
    #[error("conflicting Content-Length values")]
    ConflictingContentLength,
    /// Both Content-Length and Transfer-Encoding are present.
    #[error("both Content-Length and Transfer-Encoding")]
    ContentLengthWithTransferEncoding,
    /// Transfer-Encoding other than exactly `chunked`.
    #[error("unsupported Transfer-Encoding")]
    UnsupportedTransferEncoding,
    /// Transfer-Encoding on an HTTP/1.0 request.
    #[error("Transfer-Encoding on HTTP/1.0")]
    TransferEncodingOnHttp10,
    /// A chunk-size that is not 1 to 16 hex digits.
    #[error("invalid chunk size")]
    InvalidChunkSize,
    /// A chunk extension with a forbidden byte.
    #[error("invalid chunk extension")]
    InvalidChunkExtension,
    /// Chunk extensions on one line exceed `max_chunk_ext`.
    #[error("chunk extension too long")]
    ChunkExtensionTooLong,
    /// Chunk data not followed by CRLF.
    #[error("missing CRLF after chunk data")]
    InvalidChunkTerminator,
    /// A trailer field with bad syntax.
    #[error("invalid trailer field")]
    InvalidTrailer,
}

impl ParseError {
    /// The HTTP status to answer with: 400, 413, 414, 431 or 505.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::RequestLineTooLong => 414,
            ParseError::TooManyHeaders
            | ParseError::HeaderFieldTooLong
            | ParseError::HeadTooLarge
            | ParseError::TrailersTooLarge => 431,
            ParseError::BodyTooLarge => 413,
            ParseError::UnsupportedMajorVersion => 505,
            _ => 400,
        }
    }

    /// A short human reason for the server log.
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::RequestLineTooLong => "request line too long",
            ParseError::TooManyHeaders => "too many header fields",
            ParseError::HeaderFieldTooLong => "header field too long",
            ParseError::HeadTooLarge => "request head too large",
            ParseError::BodyTooLarge => "request body too large",
            ParseError::TrailersTooLarge => "chunked trailer section too large",
            ParseError::BareLineEnding => "bare LF or CR line ending",
            ParseError::InvalidRequestLine => "malformed request line",
            ParseError::InvalidTarget => "invalid request target",
            ParseError::UnsupportedVersion => "unsupported HTTP version",
            ParseError::UnsupportedMajorVersion => "HTTP major version not supported",
            ParseError::MissingHost => "missing Host header",
            ParseError::DuplicateHost => "more than one Host header",
            ParseError::InvalidHost => "invalid Host header",
            ParseError::InvalidHeaderName => "invalid header name",
            ParseError::InvalidHeaderValue => "invalid header value",
            ParseError::InvalidContentLength => "invalid Content-Length",
            ParseError::ConflictingContentLength => "conflicting Content-Length values",
            ParseError::ContentLengthWithTransferEncoding => {
                "both Content-Length and Transfer-Encoding"
            }
            ParseError::UnsupportedTransferEncoding => "unsupported Transfer-Encoding",
            ParseError::TransferEncodingOnHttp10 => "Transfer-Encoding on HTTP/1.0",
            ParseError::InvalidChunkSize => "invalid chunk size",
            ParseError::InvalidChunkExtension => "invalid chunk extension",
            ParseError::ChunkExtensionTooLong => "chunk extension too long",
            ParseError::InvalidChunkTerminator => "missing CRLF after chunk data",
            ParseError::InvalidTrailer => "invalid trailer field",
        }
    }
}

/// Byte classes shared by the parsers and the encoders.
pub(crate) mod bytes {
    /// A byte class: ASCII letters and digits, and the bytes of `extra`.
    pub(crate) const fn alnum_and(extra: &[u8]) -> [bool; 256] {
        let mut t = [false; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = (i as u8).is_ascii_alphanumeric();
            i += 1;
        }
        let mut j = 0;
        while j < extra.len() {
            t[extra[j] as usize] = true;
            j += 1;
        }
        t
    }

    /// RFC 9110 §5.6.2 tchar.
    pub(crate) static TCHAR: [bool; 256] = alnum_and(b"!#$%&'*+-.^_`|~");

    /// RFC 9110 §5.5 field-vchar plus SP and HTAB: everything but CTLs (HTAB allowed)
    /// and DEL.
    #[inline]
    pub(crate) fn is_field_byte(b: u8) -> bool {
        b == b'\t' || (b >= 0x20 && b != 0x7f)
    }

    /// Trims ASCII SP and HTAB only (RFC 9110 OWS), never Unicode whitespace.
    #[inline]
    pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
        while let [b' ' | b'\t', rest @ ..] = s {
            s = rest;
        }
        while let [rest @ .., b' ' | b'\t'] = s {
            s = rest;
        }
        s
    }
}
