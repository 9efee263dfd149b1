//! Every cap the protocol parsers enforce, with its default and the status a breach maps to.
//!
//! The defaults follow DESIGN.md §2.4: 8 KiB request line, 100 header fields, 8 KiB per
//! field, 64 KiB of head (`buffer-size`). Parsers never allocate in proportion to input
//! beyond these caps, so a hostile peer can cost at most `max_head` bytes of buffer.

/// Default [`Limits::max_request_line`]: 8 KiB, as nginx's `large_client_header_buffers`.
pub const DEFAULT_MAX_REQUEST_LINE: usize = 8192;
/// Default [`Limits::max_headers`]: 100 header fields, as gunicorn's `limit_request_fields`.
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Default [`Limits::max_header_field`]: 8 KiB for one header line (name, colon and value).
pub const DEFAULT_MAX_HEADER_FIELD: usize = 8192;
/// Default [`Limits::max_head`]: 65535 bytes, the largest uwsgi `datasize`, so one
/// `buffer-size` option means the same for both protocols.
pub const DEFAULT_MAX_HEAD: usize = 65535;
/// Default [`Limits::max_body`]: unlimited, as uWSGI's `limit-post` default.
pub const DEFAULT_MAX_BODY: Option<u64> = None;
/// Default [`Limits::max_chunk_ext`]: 4 KiB of extensions on one chunk-size line. Nobody
/// sends extensions in practice; the cap stops a peer from streaming an endless line.
pub const DEFAULT_MAX_CHUNK_EXT: usize = 4096;
/// Default [`Limits::max_trailers`]: 8 KiB of trailer section after the last chunk.
pub const DEFAULT_MAX_TRAILERS: usize = 8192;

/// Caps applied while parsing one request. Cheap to clone; parsers only read it.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Longest request line, without its CRLF. Exceeding it gives 414 URI Too Long.
    pub max_request_line: usize,
    /// Most header fields in one head. Exceeding it gives 431.
    pub max_headers: usize,
    /// Longest single header line (name, colon, whitespace and value; no CRLF). Gives 431.
    pub max_header_field: usize,
    /// Largest whole request head, request line and final blank line included
    /// (the `buffer-size` option). Gives 431.
    pub max_head: usize,
    /// Largest request body (`limit-post`); `None` is unlimited. Gives 413.
    pub max_body: Option<u64>,
    /// Most bytes of chunk extensions on one chunk-size line. Gives 400.
    pub max_chunk_ext: usize,
    /// Largest trailer section of a chunked body, final CRLF included. Gives 431.
    pub max_trailers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: DEFAULT_MAX_REQUEST_LINE,
            max_headers: DEFAULT_MAX_HEADERS,
            max_header_field: DEFAULT_MAX_HEADER_FIELD,
            max_head: DEFAULT_MAX_HEAD,
            max_body: DEFAULT_MAX_BODY,
            max_chunk_ext: DEFAULT_MAX_CHUNK_EXT,
            max_trailers: DEFAULT_MAX_TRAILERS,
        }
    }
}
