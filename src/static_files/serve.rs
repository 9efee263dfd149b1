//! The response to a static-file request: method, content-coding choice,
//! preconditions (RFC 9110 §13), ranges (§14), and the response head.
//!
//! `respond` does no socket I/O: it returns the head and the byte range of
//! an open file, and the connection code writes the head and sendfiles the
//! range (DESIGN §2.3).

use std::fs::File;
use std::time::{Duration, SystemTime};

use super::http::{self, RangeRequest};
use super::{open_regular, Resolved, StaticFiles};

/// What `respond` needs to know about the request.
pub struct RequestInfo<'a> {
    /// GET and HEAD are served; anything else gets 405 with `Allow`.
    pub method: &'a [u8],
    /// Case-insensitive lookup of a request header's value by lowercase
    /// name, e.g. `b"if-none-match"`.
    pub header: &'a dyn Fn(&[u8]) -> Option<&'a [u8]>,
    /// Whether the status line says HTTP/1.1 (else HTTP/1.0).
    pub http11: bool,
    /// Adds `Connection: close` when false on 1.1, `Connection: keep-alive`
    /// when true on 1.0.
    pub keep_alive: bool,
    /// The Date header value to send.
    pub date: &'a [u8],
}

impl<'a> RequestInfo<'a> {
    fn get(&self, name: &[u8]) -> Option<&'a [u8]> {
        (self.header)(name)
    }
}

/// A complete static-file response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// The complete response head, status line to the final CRLF.
    pub head: Vec<u8>,
    /// The body to sendfile: (file, offset, length). None for HEAD, 304,
    /// 405, 412 and 416, and when there is nothing to send (an empty file).
    pub body: Option<(File, u64, u64)>,
    /// The small body of a 405 (empty otherwise).
    pub inline_body: Vec<u8>,
}

/// RFC 9111 §1.2.2: caches treat delta-seconds past 2^31 as 2^31, so
/// larger values mean nothing more. Clamping also keeps `Expires` within
/// the years an HTTP-date can be formatted for.
const MAX_AGE_CAP: u64 = 1 << 31;

/// The representation actually sent: the file, or a precompressed sibling.
struct Representation {
    file: File,
    len: u64,
    mtime: SystemTime,
    inode: u64,
    coding: Option<&'static str>,
}

/// A response head under construction.
struct Head(Vec<u8>);

impl Head {
    fn new(status: u16, http11: bool) -> Head {
        let mut v = Vec::with_capacity(384);
        v.extend_from_slice(if http11 { b"HTTP/1.1 " } else { b"HTTP/1.0 " });
        push_u64(&mut v, u64::from(status));
        v.push(b' ');
        v.extend_from_slice(reason(status).as_bytes());
        v.extend_from_slice(b"\r\n");
        Head(v)
    }

    fn field(&mut self, name: &str, value: &[u8]) -> &mut Head {
        self.0.extend_from_slice(name.as_bytes());
        self.0.extend_from_slice(b": ");
        self.0.extend_from_slice(value);
        self.0.extend_from_slice(b"\r\n");
        self
    }

    fn num(&mut self, name: &str, value: u64) -> &mut Head {
        let mut buf = Vec::with_capacity(20);
        push_u64(&mut buf, value);
        self.field(name, &buf)
    }

    fn finish(mut self, req: &RequestInfo<'_>) -> Vec<u8> {
        // RFC 9112 §9.3: 1.1 persists unless "close" is said; 1.0 closes
        // unless "keep-alive" is said.
        if req.http11 && !req.keep_alive {
            self.field("Connection", b"close");
        } else if !req.http11 && req.keep_alive {
            self.field("Connection", b"keep-alive");
        }
        self.0.extend_from_slice(b"\r\n");
        self.0
    }
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        412 => "Precondition Failed",
        416 => "Range Not Satisfiable",
        _ => "Unknown",
    }
}

fn http_date(t: SystemTime) -> Vec<u8> {
    httpdate::fmt_http_date(t).into_bytes()
}

impl StaticFiles {
    /// Builds the response for `resolved`.
    pub fn respond(&self, resolved: Resolved, req: &RequestInfo<'_>) -> Reply {
        let head_only = req.method == b"HEAD";
        if !head_only && req.method != b"GET" {
            return method_not_allowed(req);
        }
        // Dates are computed from the Date we send, so Expires and the
        // Last-Modified clamp agree with it.
        let now = http::parse_date(req.date).unwrap_or_else(SystemTime::now);
        let max_age = self.expires_for(&resolved.path).map(|s| s.min(MAX_AGE_CAP));
        // RFC 9110 §12.5.5: the response depends on Accept-Encoding
        // whenever a precompressed sibling exists, whichever is sent.
        let vary = self.gzip() && !resolved.precompressed.is_empty();
        let content_type = resolved.content_type;
        let rep = select(resolved, req.get(b"accept-encoding"));

        let etag = etag(&rep);
        // RFC 9110 §8.8.2.1: never claim a modification later than Date.
        let last_modified = http::truncate_secs(rep.mtime.min(now));

        // Fields a 200 and a 304 both carry (RFC 9110 §15.4.5: a 304
        // repeats ETag, Vary, Cache-Control and Expires).
        let cache_fields = |h: &mut Head| {
            h.field("Date", req.date);
            h.field("Last-Modified", &http_date(last_modified));
            h.field("ETag", etag.as_bytes());
            if vary {
                h.field("Vary", b"Accept-Encoding");
            }
            if let Some(secs) = max_age {
                h.field("Cache-Control", format!("max-age={secs}").as_bytes());
                if let Some(t) = now.checked_add(Duration::from_secs(secs)) {
                    h.field("Expires", &http_date(t));
                }
            }
        };

        match preconditions(req, &etag, last_modified) {
            Precondition::Proceed => {}
            Precondition::NotModified => {
                let mut h = Head::new(304, req.http11);
                cache_fields(&mut h);
                return empty(304, h.finish(req));
            }
            Precondition::Failed => {
                let mut h = Head::new(412, req.http11);
                h.field("Date", req.date).num("Content-Length", 0);
                return empty(412, h.finish(req));
            }
        }

        // RFC 9110 §14.2: only GET has range semantics; a Range on HEAD
        // (or any other method) is ignored. If-Range is evaluated only when
        // there is a Range (§13.1.5).
        let range = match req.get(b"range") {
            Some(r) if !head_only => {
                if if_range_holds(req, &etag, &rep, last_modified, now) {
                    http::parse_range(r, rep.len)
                } else {
                    RangeRequest::Full
                }
            }
            _ => RangeRequest::Full,
        };

        let (status, offset, count) = match range {
            RangeRequest::Full => (200, 0, rep.len),
            RangeRequest::Single { first, last } => (206, first, last - first + 1),
            RangeRequest::Unsatisfiable => {
                // §15.5.17: a 416 to a byte range says the current length.
                let mut h = Head::new(416, req.http11);
                h.field("Date", req.date)
                    .field("Content-Range", format!("bytes */{}", rep.len).as_bytes())
                    .field("Accept-Ranges", b"bytes")
                    .num("Content-Length", 0);
                if vary {
                    h.field("Vary", b"Accept-Encoding");
                }
                return empty(416, h.finish(req));
            }
        };

        let mut h = Head::new(status, req.http11);
        cache_fields(&mut h);
        h.field("Content-Type", content_type.as_bytes())
            .num("Content-Length", count)
            .field("Accept-Ranges", b"bytes");
        if status == 206 {
            let cr = format!("bytes {}-{}/{}", offset, offset + count - 1, rep.len);
            h.field("Content-Range", cr.as_bytes());
        }
        if let Some(coding) = rep.coding {
            h.field("Content-Encoding", coding.as_bytes());
        }
        let body = (!head_only && count > 0).then_some((rep.file, offset, count));
        Reply {
            status,
            head: h.finish(req),
            body,
            inline_body: Vec::new(),
        }
    }
}

fn empty(status: u16, head: Vec<u8>) -> Reply {
    Reply {
        status,
        head,
        body: None,
        inline_body: Vec::new(),
    }
}

/// RFC 9110 §15.5.6: a 405 must list the allowed methods in `Allow`.
fn method_not_allowed(req: &RequestInfo<'_>) -> Reply {
    let body = b"405 Method Not Allowed\n".to_vec();
    let mut h = Head::new(405, req.http11);
    h.field("Date", req.date)
        .field("Allow", b"GET, HEAD")
        .field("Content-Type", b"text/plain; charset=utf-8")
        .num("Content-Length", body.len() as u64);
    Reply {
        status: 405,
        head: h.finish(req),
        body: None,
        inline_body: body,
    }
}

/// Picks the precompressed sibling the client weights highest (ties go to
/// the earlier one, br before gzip), or the file itself. A sibling that
/// cannot be opened now (deleted since lookup) falls back to the file.
fn select(resolved: Resolved, accept_encoding: Option<&[u8]>) -> Representation {
    let identity = |r: Resolved| Representation {
        file: r.file,
        len: r.len,
        mtime: r.mtime,
        inode: r.inode,
        coding: None,
    };
    // RFC 9110 §12.5.3: no Accept-Encoding means no preference; sending
    // identity is the safe reading, as nginx's gzip_static does.
    let Some(ae) = accept_encoding else {
        return identity(resolved);
    };
    let mut best: Option<(u16, usize)> = None;
    for (i, p) in resolved.precompressed.iter().enumerate() {
        // §8.4.1.3: "x-gzip" is an alias of "gzip".
        let names: &[&str] = match p.coding {
            "gzip" => &["gzip", "x-gzip"],
            _ => std::slice::from_ref(&p.coding),
        };
        let w = http::coding_weight(ae, names);
        if w > 0 && best.is_none_or(|(bw, _)| w > bw) {
            best = Some((w, i));
        }
    }
    let Some((_, i)) = best else {
        return identity(resolved);
    };
    let chosen = &resolved.precompressed[i];
    match open_regular(&chosen.path) {
        Ok((file, meta)) => {
            use std::os::unix::fs::MetadataExt;
            Representation {
                file,
                len: meta.len(),
                mtime: meta.modified().unwrap_or(resolved.mtime),
                inode: meta.ino(),
                coding: Some(chosen.coding),
            }
        }
        Err(e) => {
            tracing::debug!(path = %chosen.path.display(), error = %e, "precompressed sibling vanished");
            identity(resolved)
        }
    }
}

/// A strong ETag (RFC 9110 §8.8.3) from the metadata that changes whenever
/// the content does: mtime to the nanosecond, length and inode (an atomic
/// replace by rename gives a new inode even within one mtime tick). An
/// encoded variant is a different representation, so it gets a suffix
/// (§8.8.3.3 example).
fn etag(rep: &Representation) -> String {
    let d = rep
        .mtime
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let suffix = match rep.coding {
        Some("br") => "-br",
        Some(_) => "-gz",
        None => "",
    };
    format!(
        "\"{:x}.{:x}-{:x}-{:x}{suffix}\"",
        d.as_secs(),
        d.subsec_nanos(),
        rep.len,
        rep.inode
    )
}

enum Precondition {
    Proceed,
    NotModified,
    Failed,
}

/// RFC 9110 §13.2.2, steps 1–4, for GET and HEAD.
fn preconditions(req: &RequestInfo<'_>, etag: &str, last_modified: SystemTime) -> Precondition {
    let ours = etag.trim_matches('"').as_bytes();
    // Step 1: If-Match uses the strong comparison (§13.1.1); a malformed
    // value cannot match.
    if let Some(v) = req.get(b"if-match") {
        let ok = http::parse_etag_list(v).is_some_and(|l| http::etag_list_matches(&l, ours, true));
        if !ok {
            return Precondition::Failed;
        }
    } else if let Some(t) = req.get(b"if-unmodified-since").and_then(http::parse_date) {
        // Step 2 (§13.1.4): only without If-Match; invalid dates ignored.
        if last_modified > t {
            return Precondition::Failed;
        }
    }
    // Step 3: If-None-Match uses the weak comparison (§13.1.2); for GET and
    // HEAD a match is 304. A malformed value matches nothing.
    if let Some(v) = req.get(b"if-none-match") {
        let hit =
            http::parse_etag_list(v).is_some_and(|l| http::etag_list_matches(&l, ours, false));
        return if hit {
            Precondition::NotModified
        } else {
            Precondition::Proceed
        };
    }
    // Step 4 (§13.1.3): If-Modified-Since only without If-None-Match; an
    // invalid date is ignored. Both sides are whole seconds.
    if let Some(t) = req.get(b"if-modified-since").and_then(http::parse_date) {
        if last_modified <= t {
            return Precondition::NotModified;
        }
    }
    Precondition::Proceed
}

/// RFC 9110 §13.1.5: whether the Range may be honoured. Without If-Range,
/// yes. An entity-tag must match strongly; a date must equal Last-Modified
/// exactly, and only counts if Last-Modified is itself strong, i.e. at least
/// a second older than Date (§8.8.2.2), since a file modified within the
/// second could change again with the same date.
fn if_range_holds(
    req: &RequestInfo<'_>,
    etag: &str,
    rep: &Representation,
    last_modified: SystemTime,
    now: SystemTime,
) -> bool {
    let Some(v) = req.get(b"if-range") else {
        return true;
    };
    let v = v.trim_ascii();
    if v.starts_with(b"\"") || v.starts_with(b"W/") {
        let ours = etag.trim_matches('"').as_bytes();
        return match http::parse_etag_list(v) {
            Some(http::EtagList::Tags(tags)) if tags.len() == 1 => {
                http::etag_list_matches(&http::EtagList::Tags(tags), ours, true)
            }
            _ => false,
        };
    }
    let strong_date = now
        .duration_since(rep.mtime)
        .is_ok_and(|d| d >= Duration::from_secs(1));
    strong_date && http::parse_date(v) == Some(last_modified)
}

#[cfg(test)]
#[path = "serve_tests.rs"]
mod tests;
