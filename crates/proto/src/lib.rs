//! Sans-IO protocol code for capataz: bytes in, a parsed value or "need more bytes" out.
//!
//! Components:
//! - [`limits`] — [`Limits`](limits::Limits), every cap the parsers enforce, with defaults.
//! - [`http1`] — HTTP/1.x:
//!   - [`http1::parse_request_head`] — request line and header fields (httparse
//!     underneath) plus RFC 9112 framing: Content-Length / Transfer-Encoding, keep-alive,
//!     `Expect: 100-continue`, strict CRLF, limits.
//!   - [`http1::ChunkedDecoder`] — the `chunked` request body state machine.
//!   - [`http1::response`] — response head validation and encoding, canned error
//!     responses.
//! - [`uwsgi`] — [`uwsgi::parse_packet`], the uwsgi packet header and vars block, and
//!   [`uwsgi::UwsgiRequest`], what the server reads from the vars itself.
//! - [`proxy`] — [`proxy::parse_proxy_header`], the PROXY protocol v1/v2 header.
//! - [`forwarded`] — `X-Forwarded-For`, `X-Forwarded-Proto` and RFC 7239 `Forwarded`
//!   values, for peers in `forwarded-allow-ips`.
//!
//! Nothing here performs I/O, spawns, or allocates per header: parsed items are
//! [`Span`](http1::Span)s into the caller's buffer, and the caller passes the `Vec`s
//! to fill so they are reused across requests.
#![forbid(unsafe_code)]

pub mod forwarded;
pub mod http1;
pub mod limits;
pub mod proxy;
pub mod uwsgi;

#[cfg(test)]
pub(crate) mod shotgun;
