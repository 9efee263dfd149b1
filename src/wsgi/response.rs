//! `start_response`, `write()` and consuming the app's iterable into HTTP.
//!
//! One `start_response` and one `write` function object exist per worker;
//! they find the request they belong to through a thread-local pointer to the
//! current [`Exchange`], as each app thread runs one request at a time. That
//! avoids allocating two callables per request.
//!
//! Framing (DESIGN §6): Content-Length when the app gave one or the body is
//! known to be a single chunk (or a list); otherwise chunked on HTTP/1.1 and
//! close-delimited on HTTP/1.0. A response to a uwsgi front-end is never
//! chunked (it reads to EOF) and carries no Connection header.

use std::cell::Cell;
use std::ptr;

use capataz_proto::http1::{self as h1, Version};
use pyo3::ffi;

use super::held::HeldBytes;
use super::py::{self, Owned};
use crate::worker::output::{Output, FLUSH_THRESHOLD};
use crate::worker::stream::{self, Pushed};

thread_local! {
    static CURRENT: Cell<*mut Exchange<'static>> = const { Cell::new(ptr::null_mut()) };
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Framing {
    /// Not decided yet (headers not sent).
    Pending,
    Length {
        remaining: u64,
    },
    Chunked,
    Close,
    /// 1xx, 204, 304, or HEAD: no body on the wire.
    NoBody,
}

/// The state of one request/response exchange while the app runs.
pub struct Exchange<'o> {
    status: Option<Owned>,
    headers: Option<Owned>,
    pub headers_sent: bool,
    pub out: &'o mut Output,
    resp_start: usize,
    version: Version,
    head_only: bool,
    pub keep_alive: bool,
    date: &'o [u8],
    framing: Framing,
    pub code: u16,
    pub headers_count: usize,
    pub headers_bytes: usize,
    pub body_bytes: u64,
    /// The client went away or stopped reading: stop producing output.
    pub client_gone: bool,
    /// The response cannot be completed: close the connection after what was sent.
    pub aborted: bool,
    /// The response goes to a uwsgi front-end: close-delimited, not chunked.
    pub uwsgi: bool,
    /// A streamed chunk went out (or is pending): later ones may be batched.
    streamed: bool,
    /// At most what this thread's stream batch holds (what the last push
    /// left there; the timer thread only takes from it).
    batched: usize,
    write_fn: *mut ffi::PyObject,
    /// The request's method and target, for error messages.
    pub method: &'o [u8],
    pub uri: &'o [u8],
}

impl<'o> Exchange<'o> {
    pub fn new(
        out: &'o mut Output,
        version: Version,
        head_only: bool,
        keep_alive: bool,
        date: &'o [u8],
        write_fn: *mut ffi::PyObject,
    ) -> Exchange<'o> {
        let resp_start = out.buf.len();
        Exchange {
            status: None,
            headers: None,
            headers_sent: false,
            out,
            resp_start,
            version,
            head_only,
            keep_alive,
            date,
            framing: Framing::Pending,
            code: 0,
            headers_count: 0,
            headers_bytes: 0,
            body_bytes: 0,
            client_gone: false,
            aborted: false,
            uwsgi: false,
            streamed: false,
            batched: 0,
            write_fn,
            method: b"",
            uri: b"",
        }
    }

    /// Makes this exchange the thread's current one for the duration of `f`.
    pub fn enter<R>(&mut self, f: impl FnOnce(&mut Exchange<'o>) -> R) -> R {
        // The 'static is a lie kept local: CURRENT is cleared before `self` ends.
        let me = (self as *mut Exchange<'o>).cast::<Exchange<'static>>();
        CURRENT.with(|c| c.set(me));
        let r = f(self);
        CURRENT.with(|c| c.set(ptr::null_mut()));
        r
    }

    /// Replaces whatever this response produced with a canned error page.
    pub fn fail(&mut self, code: u16) {
        self.out.buf.truncate(self.resp_start);
        self.out.tail.clear();
        crate::worker::output::push_error_response(&mut self.out.buf, code, self.date);
        self.headers_bytes = self.out.buf.len() - self.resp_start;
        self.code = code;
        self.keep_alive = false;
        self.headers_sent = true;
        self.framing = Framing::NoBody;
    }

    /// Drops the references start_response stored (GIL held).
    pub fn release(&mut self) {
        self.status = None;
        self.headers = None;
    }

    /// Encodes the status line and headers. `known_total` is the body length
    /// when it is known before sending. `Err` means a Python error is set.
    ///
    /// # Safety
    /// The GIL is held.
    pub unsafe fn send_headers(&mut self, known_total: Option<u64>) -> Result<(), ()> {
        // SAFETY: GIL held by the caller.
        unsafe {
            let Some(status) = self.status.as_ref() else {
                py::raise(
                    ffi::PyExc_AssertionError,
                    c"the app returned before calling start_response()",
                );
                return Err(());
            };
            let Some(status) = py::str_latin1(status.as_ptr()) else {
                py::raise(ffi::PyExc_ValueError, c"status must be a latin-1 str");
                return Err(());
            };
            if !h1::is_valid_status(&status) {
                py::raise_msg(
                    ffi::PyExc_ValueError,
                    &format!("invalid status {:?}", String::from_utf8_lossy(&status)),
                );
                return Err(());
            }
            let code = (status[0] - b'0') as u16 * 100
                + (status[1] - b'0') as u16 * 10
                + (status[2] - b'0') as u16;
            let buf = &mut self.out.buf;
            buf.truncate(self.resp_start);
            h1::push_status_line(buf, self.version, &status);
            let headers = self
                .headers
                .as_ref()
                .map(|h| h.as_ptr())
                .unwrap_or(ptr::null_mut());
            let n = if headers.is_null() {
                0
            } else {
                ffi::PyList_GET_SIZE(headers)
            };
            let mut app_length: Option<u64> = None;
            let mut has_date = false;
            let mut count = 0;
            let mut keep_alive = self.keep_alive;
            let fail = |buf: &mut Vec<u8>, start: usize, msg: String| {
                buf.truncate(start);
                py::raise_msg(ffi::PyExc_ValueError, &msg);
                Err(())
            };
            for i in 0..n {
                let item = ffi::PyList_GET_ITEM(headers, i);
                if ffi::PyTuple_Check(item) == 0 || ffi::PyTuple_GET_SIZE(item) != 2 {
                    return fail(
                        buf,
                        self.resp_start,
                        "each header must be a (name, value) tuple".into(),
                    );
                }
                let (name, value) = (
                    ffi::PyTuple_GET_ITEM(item, 0),
                    ffi::PyTuple_GET_ITEM(item, 1),
                );
                if ffi::PyUnicode_Check(name) == 0 || ffi::PyUnicode_Check(value) == 0 {
                    return fail(
                        buf,
                        self.resp_start,
                        "header names and values must be str".into(),
                    );
                }
                let (Some(name), Some(value)) = (py::str_latin1(name), py::str_latin1(value))
                else {
                    return fail(
                        buf,
                        self.resp_start,
                        "header names and values must be latin-1".into(),
                    );
                };
                if !h1::is_token(&name) {
                    return fail(
                        buf,
                        self.resp_start,
                        format!("invalid header name {:?}", String::from_utf8_lossy(&name)),
                    );
                }
                if !h1::is_valid_field_value(&value) {
                    return fail(
                        buf,
                        self.resp_start,
                        format!(
                            "header {} has a control character in its value",
                            String::from_utf8_lossy(&name)
                        ),
                    );
                }
                if name.eq_ignore_ascii_case(b"content-length") {
                    let parsed = std::str::from_utf8(&value)
                        .ok()
                        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
                    match parsed.and_then(|v| v.parse::<u64>().ok()) {
                        Some(len) => app_length = Some(len),
                        None => {
                            return fail(
                                buf,
                                self.resp_start,
                                "invalid Content-Length header".into(),
                            )
                        }
                    }
                } else if name.eq_ignore_ascii_case(b"date") {
                    has_date = true;
                } else if name.eq_ignore_ascii_case(b"connection") {
                    // Hop-by-hop: we write our own, but honour an app asking to close.
                    if value
                        .split(|&b| b == b',')
                        .any(|t| trim(t).eq_ignore_ascii_case(b"close"))
                    {
                        keep_alive = false;
                    }
                    continue;
                } else if is_hop_by_hop(&name) {
                    return fail(
                        buf,
                        self.resp_start,
                        format!(
                            "hop-by-hop header {} is not allowed (PEP 3333)",
                            String::from_utf8_lossy(&name)
                        ),
                    );
                }
                h1::push_header(buf, &name, &value);
                count += 1;
            }
            let no_body = code < 200 || code == 204 || code == 304;
            self.framing = if no_body {
                Framing::NoBody
            } else if let Some(len) = app_length {
                Framing::Length { remaining: len }
            } else if let Some(len) = known_total.filter(|_| !self.head_only) {
                // Not for HEAD: frameworks answer HEAD with an empty body
                // (Werkzeug's `()`), and a measured `Content-Length: 0` would
                // contradict the GET. Like gunicorn and uWSGI, HEAD carries
                // only the length the app itself gave.
                let mut num = itoa::Buffer::new();
                h1::push_header(buf, b"Content-Length", num.format(len).as_bytes());
                count += 1;
                Framing::Length { remaining: len }
            } else if self.head_only {
                Framing::NoBody
            } else if self.version == Version::Http11 && !self.uwsgi {
                h1::push_header(buf, b"Transfer-Encoding", b"chunked");
                count += 1;
                Framing::Chunked
            } else {
                keep_alive = false;
                Framing::Close
            };
            if self.head_only {
                self.framing = Framing::NoBody;
            }
            if !has_date {
                h1::push_header(buf, b"Date", self.date);
                count += 1;
            }
            match (self.version, keep_alive) {
                // The uwsgi front-end knows the connection ends here.
                _ if self.uwsgi => {}
                (Version::Http11, false) => {
                    h1::push_header(buf, b"Connection", b"close");
                    count += 1;
                }
                (Version::Http10, true) => {
                    h1::push_header(buf, b"Connection", b"keep-alive");
                    count += 1;
                }
                _ => {}
            }
            buf.extend_from_slice(b"\r\n");
            self.keep_alive = keep_alive;
            self.code = code;
            self.headers_count = count;
            self.headers_bytes = buf.len() - self.resp_start;
            self.headers_sent = true;
            Ok(())
        }
    }

    /// Appends the `bytes` object `obj` to the body with the chosen framing.
    /// Pieces are copied into the buffer (a small response leaves in one
    /// write), except those that would take it past [`FLUSH_THRESHOLD`],
    /// which are referenced rather than copied (see
    /// [`crate::worker::output`]). Never waits for the socket: a streaming
    /// caller bounds what is pending with [`Self::make_room`].
    ///
    /// # Safety
    /// The GIL is held; `obj` is a `bytes` object.
    pub unsafe fn body(&mut self, obj: *mut ffi::PyObject) {
        // SAFETY: obj is bytes per the caller; the slice is used while it lives.
        let data = unsafe { py::bytes_of(obj) };
        if data.is_empty() {
            return;
        }
        let n = match &mut self.framing {
            Framing::Length { remaining } => {
                let n = (*remaining).min(data.len() as u64) as usize;
                *remaining -= n as u64;
                if n < data.len() {
                    // More than the app's Content-Length: drop the excess and
                    // close, so the client never reads it as the next response.
                    self.keep_alive = false;
                }
                n
            }
            Framing::Chunked | Framing::Close => data.len(),
            Framing::NoBody | Framing::Pending => return,
        };
        if n == 0 {
            return;
        }
        let chunked = self.framing == Framing::Chunked;
        if chunked {
            h1::push_chunk_header(self.out.append_buf(), n);
        }
        // Hold rather than copy only what would take the buffer past the
        // flush threshold: a response up to that size is copied and leaves
        // in one write, exactly as small responses always did.
        // (Once something is held, what follows is held too, so copies
        // never grow behind it.)
        if !self.out.tail.is_empty() || self.out.buf.len() + n > FLUSH_THRESHOLD {
            // SAFETY: GIL held; n <= the object's length.
            self.out.tail.hold(unsafe { HeldBytes::new(obj, n) });
        } else {
            self.out.append_buf().extend_from_slice(&data[..n]);
        }
        if chunked {
            self.out.append_buf().extend_from_slice(b"\r\n");
        }
        self.body_bytes += n as u64;
    }

    /// Streaming: before the app produces more, waits (GIL released) until
    /// what is pending is under [`FLUSH_THRESHOLD`], so a generator feeding
    /// a slow client holds at most that plus one chunk. `Err` = the client
    /// is gone.
    ///
    /// # Safety
    /// The GIL is held.
    #[inline]
    pub unsafe fn make_room(&mut self) -> Result<(), ()> {
        let mut pending = self.out.buf.len() + self.batched;
        if pending < FLUSH_THRESHOLD && !self.out.tail.is_empty() {
            pending += self.out.tail.len();
        }
        if pending >= FLUSH_THRESHOLD {
            // SAFETY: GIL held by the caller.
            unsafe { self.flush_without_gil() }
        } else {
            Ok(())
        }
    }

    /// Streaming: a generator's (or `write()`'s) chunk is framed in the
    /// buffer; it goes out now or joins a batch that leaves within the flush
    /// delay (see [`crate::worker::stream`]). Never waits for the socket,
    /// except to keep a long batch under [`FLUSH_THRESHOLD`].
    ///
    /// # Safety
    /// The GIL is held.
    pub unsafe fn stream_chunk(&mut self) -> Result<(), ()> {
        let first = !std::mem::replace(&mut self.streamed, true);
        match stream::push(self.out, first) {
            // FlushNeeded: the wait, if any, happens before the next chunk
            // (make_room), never after the last one, which the event loop
            // finishes sending on its own.
            Ok((Pushed::Now | Pushed::Deferred | Pushed::FlushNeeded, batched)) => {
                self.batched = batched;
                self.resp_start = 0;
                Ok(())
            }
            Err(_) => {
                self.client_gone = true;
                Err(())
            }
        }
    }

    /// Takes back the stream bytes still pending, in front of the buffer:
    /// before anything else is written and before the response ends.
    pub fn reclaim_stream(&mut self) -> Result<(), ()> {
        if !self.streamed {
            return Ok(());
        }
        self.batched = 0;
        if stream::reclaim(self.out).is_err() {
            self.client_gone = true;
            return Err(());
        }
        Ok(())
    }

    /// # Safety
    /// The GIL is held; it is released during the write.
    pub unsafe fn flush_without_gil(&mut self) -> Result<(), ()> {
        self.reclaim_stream()?;
        // SAFETY: we hold the GIL and take it back before returning.
        let result = unsafe {
            let ts = ffi::PyEval_SaveThread();
            let r = self.out.flush_blocking();
            ffi::PyEval_RestoreThread(ts);
            r
        };
        self.resp_start = 0;
        if result.is_err() {
            self.client_gone = true;
            return Err(());
        }
        Ok(())
    }

    /// Ends the body: the last chunk, or closing when the framing needs it.
    pub fn finish(&mut self) {
        match self.framing {
            Framing::Chunked => self.out.append_buf().extend_from_slice(h1::LAST_CHUNK),
            Framing::Length { remaining } if remaining > 0 => {
                // The app sent less than its Content-Length: the client would
                // wait for the rest, so the connection must end.
                self.keep_alive = false;
            }
            Framing::Close => self.keep_alive = false,
            _ => {}
        }
    }

    /// Prepares to send `len` bytes of a file raw after the buffer; returns
    /// how many bytes the framing allows (a chunk header is buffered first).
    pub fn begin_file_body(&mut self, len: u64) -> u64 {
        match &mut self.framing {
            Framing::Length { remaining } => {
                let n = (*remaining).min(len);
                *remaining -= n;
                n
            }
            Framing::Chunked if len > 0 => {
                h1::push_chunk_header(self.out.append_buf(), len as usize);
                len
            }
            Framing::Close => len,
            _ => 0,
        }
    }

    /// Records the `len` file bytes queued after [`Self::begin_file_body`]
    /// (what the client did not take is subtracted when the send ends).
    pub fn end_file_body(&mut self, len: u64) {
        self.body_bytes += len;
        if self.framing == Framing::Chunked {
            self.out.append_buf().extend_from_slice(b"\r\n");
        }
    }

    /// Sends nothing more; what was already produced stays, then close.
    pub fn abort(&mut self) {
        self.aborted = true;
        self.keep_alive = false;
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|&c| c != b' ' && c != b'\t')
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|&c| c != b' ' && c != b'\t')
        .map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&[u8]; 7] = [
        b"keep-alive",
        b"transfer-encoding",
        b"te",
        b"trailer",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    ];
    HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// The exchange the calling app thread is serving, or `None` with a
/// RuntimeError raised (a callable used after its request ended).
///
/// # Safety
/// The GIL is held; the returned reference is used only within the call.
unsafe fn current_or_raise(outside: &std::ffi::CStr) -> Option<&'static mut Exchange<'static>> {
    let ex = CURRENT.with(|c| c.get());
    if ex.is_null() {
        // SAFETY: GIL held by the caller.
        unsafe { py::raise(ffi::PyExc_RuntimeError, outside) };
        return None;
    }
    // SAFETY: CURRENT points to the live exchange of this thread's request.
    Some(unsafe { &mut *ex })
}

/// `start_response(status, headers, exc_info=None)` (METH_FASTCALL).
///
/// # Safety
/// Called by CPython with the GIL held and `nargs` valid pointers in `args`.
pub unsafe extern "C" fn start_response(
    _slf: *mut ffi::PyObject,
    args: *mut *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: GIL held (CPython calls us); args has nargs entries; the
    // current exchange outlives the app call that reaches here.
    unsafe {
        let Some(ex) = current_or_raise(c"start_response() called outside of a request") else {
            return ptr::null_mut();
        };
        if !(2..=3).contains(&nargs) {
            py::raise(
                ffi::PyExc_TypeError,
                c"start_response() takes 2 or 3 arguments",
            );
            return ptr::null_mut();
        }
        let status = *args;
        let headers = *args.add(1);
        let exc_info = if nargs == 3 {
            *args.add(2)
        } else {
            ffi::Py_None()
        };
        if exc_info != ffi::Py_None() {
            if ex.headers_sent {
                // PEP 3333: re-raise once headers have gone out.
                if ffi::PyTuple_Check(exc_info) != 0 && ffi::PyTuple_GET_SIZE(exc_info) == 3 {
                    let (t, v, tb) = (
                        ffi::PyTuple_GET_ITEM(exc_info, 0),
                        ffi::PyTuple_GET_ITEM(exc_info, 1),
                        ffi::PyTuple_GET_ITEM(exc_info, 2),
                    );
                    ffi::Py_INCREF(t);
                    ffi::Py_INCREF(v);
                    ffi::Py_INCREF(tb);
                    ffi::PyErr_Restore(
                        t,
                        v,
                        if tb == ffi::Py_None() {
                            ffi::Py_DecRef(tb);
                            ptr::null_mut()
                        } else {
                            tb
                        },
                    );
                } else {
                    py::raise(
                        ffi::PyExc_TypeError,
                        c"exc_info must be a (type, value, traceback) tuple",
                    );
                }
                return ptr::null_mut();
            }
        } else if ex.status.is_some() && ex.headers_sent {
            py::raise(
                ffi::PyExc_AssertionError,
                c"start_response() called again after headers were sent",
            );
            return ptr::null_mut();
        } else if ex.status.is_some() {
            py::raise(
                ffi::PyExc_AssertionError,
                c"start_response() called twice without exc_info",
            );
            return ptr::null_mut();
        }
        if ffi::PyUnicode_Check(status) == 0 {
            py::raise(ffi::PyExc_TypeError, c"status must be a str");
            return ptr::null_mut();
        }
        if ffi::PyList_Check(headers) == 0 {
            py::raise(ffi::PyExc_TypeError, c"headers must be a list");
            return ptr::null_mut();
        }
        ex.status = Some(Owned::from_borrowed(status));
        ex.headers = Some(Owned::from_borrowed(headers));
        ffi::Py_INCREF(ex.write_fn);
        ex.write_fn
    }
}

/// The `write(data)` callable returned by start_response (METH_O).
///
/// # Safety
/// Called by CPython with the GIL held.
pub unsafe extern "C" fn write(
    _slf: *mut ffi::PyObject,
    data: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: as in start_response.
    unsafe {
        let Some(ex) = current_or_raise(c"write() called outside of a request") else {
            return ptr::null_mut();
        };
        if ffi::PyBytes_Check(data) == 0 {
            py::raise(ffi::PyExc_TypeError, c"write() argument must be bytes");
            return ptr::null_mut();
        }
        if ex.client_gone {
            py::raise(ffi::PyExc_OSError, c"client disconnected");
            return ptr::null_mut();
        }
        if ex.make_room().is_err() {
            py::raise(ffi::PyExc_OSError, c"client disconnected");
            return ptr::null_mut();
        }
        if !ex.headers_sent && ex.send_headers(None).is_err() {
            return ptr::null_mut();
        }
        ex.body(data);
        if ex.stream_chunk().is_err() {
            py::raise(ffi::PyExc_OSError, c"client disconnected");
            return ptr::null_mut();
        }
        ffi::Py_INCREF(ffi::Py_None());
        ffi::Py_None()
    }
}
