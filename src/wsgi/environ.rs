//! Building the WSGI environ dict (PEP 3333) for one request.
//!
//! Per DESIGN §7 the cost is kept to: one `PyDict_Copy` of a per-listener
//! template holding every constant key, interned keys for the CGI variables,
//! a per-thread cache of `HTTP_*` key objects, and one latin-1 `str` per value.

use std::cell::RefCell;
use std::collections::HashMap;

use capataz_proto::forwarded as fwd;
use capataz_proto::http1::{span, Header, RequestHead, Span, Version};
use pyo3::ffi;

use super::py::{self, Owned};
use super::{Head, Request, Wsgi};

/// Keys the environ template's hash table is sized for: CPython gives 42 a
/// 64-slot table, all 42 usable. `PyDict_Copy` of the template keeps its
/// table, so a request adding up to 30 keys to the template's 12 (7 CGI
/// variables, `wsgi.input` and `capataz.input_spooled`, then one per header:
/// up to 21 headers) never grows its copy.
/// With a default-sized template, the 22nd key of every request (even wrk's
/// one-header GET) grew it: 795 of the 4,600 instructions of an environ
/// build (callgrind).
pub const ENVIRON_CAPACITY: isize = 42;

extern "C" {
    /// CPython's dict constructor with room for `minused` items (what
    /// `BUILD_MAP` uses). Exported by libpython, not in pyo3-ffi.
    fn _PyDict_NewPresized(minused: ffi::Py_ssize_t) -> *mut ffi::PyObject;
}

/// A new, empty dict whose table holds [`ENVIRON_CAPACITY`] keys without
/// growing, for the environ templates.
///
/// # Safety
/// The GIL is held.
pub unsafe fn new_template_dict() -> *mut ffi::PyObject {
    // SAFETY: GIL held by the caller; returns a new reference or NULL.
    unsafe { _PyDict_NewPresized(ENVIRON_CAPACITY) }
}

/// Header names cached per thread; beyond this, keys are built per request,
/// so a client sending random names cannot grow memory without bound.
const KEY_CACHE_MAX: usize = 512;

/// Interned CGI keys set on every request.
pub struct Keys {
    pub request_method: Owned,
    pub path_info: Owned,
    pub query_string: Owned,
    pub request_uri: Owned,
    pub server_protocol: Owned,
    pub remote_addr: Owned,
    pub remote_port: Owned,
    pub content_type: Owned,
    pub content_length: Owned,
    pub http_host: Owned,
    pub wsgi_input: Owned,
    pub input_spooled: Owned,
    pub http_10: Owned,
    pub http_11: Owned,
    pub url_scheme: Owned,
    pub http: Owned,
    pub https: Owned,
}

impl Keys {
    /// # Safety
    /// The GIL is held.
    pub unsafe fn new() -> Keys {
        // SAFETY: GIL held by the caller.
        unsafe {
            Keys {
                request_method: py::interned(c"REQUEST_METHOD"),
                path_info: py::interned(c"PATH_INFO"),
                query_string: py::interned(c"QUERY_STRING"),
                request_uri: py::interned(c"REQUEST_URI"),
                server_protocol: py::interned(c"SERVER_PROTOCOL"),
                remote_addr: py::interned(c"REMOTE_ADDR"),
                remote_port: py::interned(c"REMOTE_PORT"),
                content_type: py::interned(c"CONTENT_TYPE"),
                content_length: py::interned(c"CONTENT_LENGTH"),
                http_host: py::interned(c"HTTP_HOST"),
                wsgi_input: py::interned(c"wsgi.input"),
                input_spooled: py::interned(c"capataz.input_spooled"),
                http_10: py::interned(c"HTTP/1.0"),
                http_11: py::interned(c"HTTP/1.1"),
                url_scheme: py::interned(c"wsgi.url_scheme"),
                http: py::interned(c"http"),
                https: py::interned(c"https"),
            }
        }
    }
}

#[derive(Default)]
struct Scratch {
    key: Vec<u8>,
    path: Vec<u8>,
    /// `HTTP_*` keys and method strings by their bytes. The values are strong
    /// references kept for the life of the thread (never dropped: thread-local
    /// destructors run without the GIL).
    cache: HashMap<Box<[u8]>, *mut ffi::PyObject>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Returns a new reference to the `str` for `bytes`, cached per thread.
unsafe fn cached_str(
    cache: &mut HashMap<Box<[u8]>, *mut ffi::PyObject>,
    bytes: &[u8],
) -> Option<Owned> {
    if let Some(&obj) = cache.get(bytes) {
        // SAFETY: cached objects are kept alive by the cache's own reference.
        return Some(unsafe { Owned::from_borrowed(obj) });
    }
    // SAFETY: GIL held by the caller.
    let obj = unsafe { py::latin1(bytes) }?;
    if cache.len() < KEY_CACHE_MAX {
        // SAFETY: GIL held; the cache takes one extra strong reference.
        unsafe { ffi::Py_INCREF(obj.as_ptr()) };
        cache.insert(bytes.into(), obj.as_ptr());
    }
    Some(obj)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes a path for PATH_INFO (CGI: PATH_INFO is decoded). Invalid
/// escapes are kept as they are.
pub fn percent_decode(input: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'%' && i + 2 < input.len() {
            if let (Some(h), Some(l)) = (hex_value(input[i + 1]), hex_value(input[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
}

/// Sets `env[key] = value`, joining repeated headers with ", " (RFC 9110
/// §5.3), or "; " for Cookie (RFC 6265 §5.4).
unsafe fn set_header(
    env: *mut ffi::PyObject,
    key: &Owned,
    value: &[u8],
    cookie: bool,
) -> Option<()> {
    // SAFETY: GIL held by the caller; env is a dict.
    unsafe {
        let existing = ffi::PyDict_GetItem(env, key.as_ptr());
        let value = if existing.is_null() {
            py::latin1(value)?
        } else {
            let old = py::str_latin1(existing).unwrap_or_default().into_owned();
            let mut joined = old;
            joined.extend_from_slice(if cookie { b"; " } else { b", " });
            joined.extend_from_slice(value);
            py::latin1(&joined)?
        };
        (ffi::PyDict_SetItem(env, key.as_ptr(), value.as_ptr()) == 0).then_some(())
    }
}

/// What the access log reports about the environ.
pub struct EnvironStats {
    pub vars: usize,
    pub bytes: usize,
}

unsafe fn set(env: *mut ffi::PyObject, key: &Owned, value: &Owned) -> Option<()> {
    // SAFETY: GIL held by the caller.
    (unsafe { ffi::PyDict_SetItem(env, key.as_ptr(), value.as_ptr()) } == 0).then_some(())
}

/// Builds the environ for `req`. `None` means a Python error is set.
///
/// # Safety
/// The GIL is held.
pub unsafe fn build(w: &Wsgi, req: Request<'_>) -> Option<(Owned, EnvironStats)> {
    let keys = &w.keys;
    // SAFETY (whole block): GIL held by the caller; all objects are valid.
    unsafe {
        let env = Owned::from_new(ffi::PyDict_Copy(w.templates[req.listener].as_ptr()))?;
        let e = env.as_ptr();
        let (nbytes, known_length) = match req.head {
            Head::Http {
                head,
                headers,
                trusted_proxy,
            } => (
                http_vars(w, e, &req, head, headers, trusted_proxy)?,
                head.content_length_idx.is_some(),
            ),
            Head::Uwsgi { vars } => (uwsgi_vars(w, e, &req, vars)?, true),
        };

        let (input, spooled, body_len) = super::input::make(w, req.body)?;
        set(e, &keys.wsgi_input, &input)?;
        let flag = if spooled {
            ffi::Py_True()
        } else {
            ffi::Py_False()
        };
        ffi::PyDict_SetItem(e, keys.input_spooled.as_ptr(), flag);
        // A chunked body has been decoded and measured: give the app its
        // length, since most frameworks read CONTENT_LENGTH bytes.
        if !known_length && body_len > 0 {
            set(
                e,
                &keys.content_length,
                &py::latin1(body_len.to_string().as_bytes())?,
            )?;
        }
        let vars = ffi::PyDict_Size(e) as usize;
        Some((
            env,
            EnvironStats {
                vars,
                bytes: nbytes,
            },
        ))
    }
}

/// The CGI variables of an HTTP request, and what a trusted proxy says
/// about the client. Returns the bytes of request data, for the log.
unsafe fn http_vars(
    w: &Wsgi,
    e: *mut ffi::PyObject,
    req: &Request<'_>,
    head: &RequestHead,
    headers: &[Header],
    trusted_proxy: bool,
) -> Option<usize> {
    let keys = &w.keys;
    let buf = req.head_buf;
    // SAFETY (whole block): GIL held by the caller; e is a dict.
    unsafe {
        let mut nbytes = 0usize;
        let method = span(buf, head.method);
        let target = span(buf, head.target);
        let query = span(buf, head.query);
        nbytes += method.len() + target.len() * 2 + query.len();
        // X-Forwarded-For, X-Forwarded-Proto, Forwarded (first of each).
        let mut forwarded: [Option<&[u8]>; 3] = [None; 3];

        SCRATCH.with(|s| -> Option<()> {
            let mut s = s.borrow_mut();
            let s = &mut *s;
            let m = cached_str(&mut s.cache, method)?;
            set(e, &keys.request_method, &m)?;
            // An absolute-form target without a path ("http://h?q") means "/".
            let raw_path = span(buf, head.path);
            percent_decode(
                if raw_path.is_empty() { b"/" } else { raw_path },
                &mut s.path,
            );
            set(e, &keys.path_info, &py::latin1(&s.path)?)?;

            for h in headers {
                let name = span(buf, h.name);
                let value = span(buf, h.value);
                if name.contains(&b'_') {
                    // Would collide with the '-' spelling once mapped to HTTP_*.
                    continue;
                }
                nbytes += name.len() + 5 + value.len();
                if name.eq_ignore_ascii_case(b"content-type") {
                    set(e, &keys.content_type, &py::latin1(value)?)?;
                    continue;
                }
                if name.eq_ignore_ascii_case(b"content-length") {
                    set(e, &keys.content_length, &py::latin1(value)?)?;
                    continue;
                }
                if trusted_proxy {
                    let slot = match name.len() {
                        15 if name.eq_ignore_ascii_case(b"x-forwarded-for") => Some(0),
                        17 if name.eq_ignore_ascii_case(b"x-forwarded-proto") => Some(1),
                        9 if name.eq_ignore_ascii_case(b"forwarded") => Some(2),
                        _ => None,
                    };
                    if let Some(i) = slot {
                        forwarded[i].get_or_insert(value);
                    }
                }
                s.key.clear();
                s.key.extend_from_slice(b"HTTP_");
                s.key.extend(name.iter().map(|&c| {
                    if c == b'-' {
                        b'_'
                    } else {
                        c.to_ascii_uppercase()
                    }
                }));
                let key = cached_str(&mut s.cache, &s.key)?;
                set_header(e, &key, value, name.eq_ignore_ascii_case(b"cookie"))?;
            }
            Some(())
        })?;

        // RFC 9112 §3.2.2: with an absolute-form target the server MUST ignore
        // the Host header and use the target's authority. Set after the
        // headers, so it replaces HTTP_HOST; origin-form requests skip this.
        if let Some(authority) = head.authority {
            set(e, &keys.http_host, &py::latin1(span(buf, authority))?)?;
        }
        set(e, &keys.query_string, &py::latin1(query)?)?;
        set(e, &keys.request_uri, &py::latin1(target)?)?;
        let proto = match head.version {
            Version::Http10 => &keys.http_10,
            Version::Http11 => &keys.http_11,
        };
        set(e, &keys.server_protocol, proto)?;
        nbytes += req.remote_addr.len() + req.remote_port.len();
        let [xff, xfp, rfc7239] = forwarded;
        let mut client = xff.and_then(fwd::x_forwarded_for);
        let mut scheme = xfp.and_then(fwd::x_forwarded_proto);
        if let Some(value) = rfc7239 {
            // RFC 7239 is the standard: it wins where it says something.
            let f = fwd::forwarded(value);
            client = f.client.or(client);
            scheme = f.proto.or(scheme);
        }
        match client {
            Some(client) => {
                let ip = client.ip.to_canonical().to_string();
                set(e, &keys.remote_addr, &py::latin1(ip.as_bytes())?)?;
                let port = client.port.map(|p| p.to_string());
                let port = port.as_deref().unwrap_or(req.remote_port);
                set(e, &keys.remote_port, &py::latin1(port.as_bytes())?)?;
            }
            None => {
                set(
                    e,
                    &keys.remote_addr,
                    &py::latin1(req.remote_addr.as_bytes())?,
                )?;
                set(
                    e,
                    &keys.remote_port,
                    &py::latin1(req.remote_port.as_bytes())?,
                )?;
            }
        }
        if let Some(scheme) = scheme {
            let value = match scheme {
                fwd::Scheme::Http => &keys.http,
                fwd::Scheme::Https => &keys.https,
            };
            set(e, &keys.url_scheme, value)?;
        }
        Some(nbytes)
    }
}

/// The environ of a uwsgi request: every var as the front-end sent it
/// (latin-1), with defaults for what PEP 3333 requires and it left out.
/// Returns the bytes of the vars block, for the log.
unsafe fn uwsgi_vars(
    w: &Wsgi,
    e: *mut ffi::PyObject,
    req: &Request<'_>,
    vars: &[(Span, Span)],
) -> Option<usize> {
    let keys = &w.keys;
    let buf = req.head_buf;
    // SAFETY (whole block): GIL held by the caller; e is a dict.
    unsafe {
        let mut nbytes = 0;
        let (mut uwsgi_scheme, mut https, mut request_scheme) = (None, None, None);
        let mut request_uri = None;
        SCRATCH.with(|s| -> Option<()> {
            let mut s = s.borrow_mut();
            let s = &mut *s;
            for &(k, v) in vars {
                let (key, value) = (span(buf, k), span(buf, v));
                nbytes += key.len() + value.len() + 4;
                match key {
                    // DESIGN §6: never as HTTP_* (nginx sends both spellings).
                    b"HTTP_CONTENT_TYPE" | b"HTTP_CONTENT_LENGTH" => continue,
                    // uWSGI's "magic" vars are passed along but never acted
                    // on (they would let any peer load code), except the
                    // harmless scheme.
                    b"UWSGI_SCHEME" => uwsgi_scheme = Some(value),
                    b"HTTPS" => https = Some(value),
                    b"REQUEST_SCHEME" => request_scheme = Some(value),
                    b"REQUEST_URI" => request_uri = Some(value),
                    _ => {}
                }
                let key = cached_str(&mut s.cache, key)?;
                if ffi::PyDict_SetItem(e, key.as_ptr(), py::latin1(value)?.as_ptr()) != 0 {
                    return None;
                }
            }
            // PEP 3333's required keys, when a bare-bones front-end config
            // (no `include uwsgi_params`) left them out.
            let missing = |key: &Owned| ffi::PyDict_Contains(e, key.as_ptr()) == 0;
            if missing(&keys.request_method) {
                set(e, &keys.request_method, &py::latin1(b"GET")?)?;
            }
            if missing(&keys.query_string) {
                set(e, &keys.query_string, &py::latin1(b"")?)?;
            }
            if missing(&keys.server_protocol) {
                set(e, &keys.server_protocol, &keys.http_10)?;
            }
            if missing(&keys.path_info) {
                let uri = request_uri.unwrap_or_default();
                let path = uri.split(|&b| b == b'?').next().unwrap_or_default();
                percent_decode(path, &mut s.path);
                set(e, &keys.path_info, &py::latin1(&s.path)?)?;
            }
            if missing(&keys.remote_addr) {
                set(
                    e,
                    &keys.remote_addr,
                    &py::latin1(req.remote_addr.as_bytes())?,
                )?;
                set(
                    e,
                    &keys.remote_port,
                    &py::latin1(req.remote_port.as_bytes())?,
                )?;
            }
            Some(())
        })?;
        if let Some(scheme) = uwsgi_scheme_of(uwsgi_scheme, https, request_scheme) {
            let value = match scheme {
                fwd::Scheme::Http => &keys.http,
                fwd::Scheme::Https => &keys.https,
            };
            set(e, &keys.url_scheme, value)?;
        }
        Some(nbytes)
    }
}

/// `wsgi.url_scheme` of a uwsgi request: `UWSGI_SCHEME`, then `HTTPS`
/// (`on` or `1`), then `REQUEST_SCHEME`; `None` leaves "http".
fn uwsgi_scheme_of(
    uwsgi_scheme: Option<&[u8]>,
    https: Option<&[u8]>,
    request_scheme: Option<&[u8]>,
) -> Option<fwd::Scheme> {
    uwsgi_scheme
        .and_then(fwd::Scheme::parse)
        .or_else(|| {
            https
                .filter(|v| v.eq_ignore_ascii_case(b"on") || *v == b"1")
                .map(|_| fwd::Scheme::Https)
        })
        .or_else(|| request_scheme.and_then(fwd::Scheme::parse))
}

#[cfg(test)]
mod tests {
    use super::{percent_decode, uwsgi_scheme_of};
    use capataz_proto::forwarded::Scheme;

    #[test]
    fn uwsgi_scheme_precedence() {
        let https = Some(Scheme::Https);
        assert_eq!(uwsgi_scheme_of(None, None, None), None);
        assert_eq!(uwsgi_scheme_of(Some(b"https"), None, Some(b"http")), https);
        assert_eq!(
            uwsgi_scheme_of(Some(b"http"), Some(b"on"), None),
            Some(Scheme::Http)
        );
        assert_eq!(uwsgi_scheme_of(Some(b"bogus"), Some(b"on"), None), https);
        assert_eq!(uwsgi_scheme_of(None, Some(b"1"), None), https);
        assert_eq!(uwsgi_scheme_of(None, Some(b"ON"), None), https);
        assert_eq!(
            uwsgi_scheme_of(None, Some(b"off"), Some(b"http")),
            Some(Scheme::Http)
        );
        assert_eq!(uwsgi_scheme_of(None, None, Some(b"https")), https);
    }

    #[test]
    fn decodes_escapes_and_keeps_invalid_ones() {
        let mut out = Vec::new();
        percent_decode(b"/a%20b/%2Fc%zz%4", &mut out);
        assert_eq!(out, b"/a b//c%zz%4");
        percent_decode(b"/caf%C3%A9%e9", &mut out);
        assert_eq!(out, b"/caf\xc3\xa9\xe9");
        percent_decode(b"%", &mut out);
        assert_eq!(out, b"%");
    }
}
