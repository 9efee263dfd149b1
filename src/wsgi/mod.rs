//! The only module that touches CPython (DESIGN §1, §6, §8).
//!
//! - [`interpreter`]: PyConfig start-up, virtualenv activation.
//! - [`environ`]: the environ dict for a request.
//! - [`input`]: `wsgi.input` over the already-read body.
//! - [`response`]: `start_response`, `write()`, framing of the app's output.
//! - [`file_wrapper`]: `wsgi.file_wrapper` with sendfile.
//! - [`held`]: the app's `bytes` objects lent to the I/O side uncopied.
//!
//! The worker calls [`Wsgi::boot`] once, then [`Wsgi::handle`] per request
//! from its threads, each of which holds a [`ThreadState`].

pub mod environ;
pub mod file_wrapper;
pub mod held;
pub mod input;
pub mod interpreter;
pub mod py;
pub mod response;

use std::ffi::CString;
use std::path::PathBuf;

use capataz_proto::http1::{Header, RequestHead, Span, Version};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyModule, PyTuple};

use self::interpreter::{BootError, PythonSetup};
use self::py::Owned;
use self::response::Exchange;
use crate::worker::output::Output;

const SUPPORT_SOURCE: &str = include_str!("support.py");

/// The request body, read completely before the app sees it (DESIGN §2.2).
pub enum Body<'a> {
    Memory(&'a [u8]),
    /// A temp file holding the whole body, and its length.
    Spooled(std::fs::File, u64),
}

/// A request head of either protocol; spans index [`Request::head_buf`].
pub enum Head<'a> {
    /// An HTTP/1.x request head and its header fields.
    Http {
        head: &'a RequestHead,
        headers: &'a [Header],
        /// The peer is in `forwarded-allow-ips`: X-Forwarded-For/-Proto and
        /// Forwarded set REMOTE_ADDR and wsgi.url_scheme.
        trusted_proxy: bool,
    },
    /// A uwsgi packet's vars, in wire order (the last duplicate wins).
    Uwsgi { vars: &'a [(Span, Span)] },
}

/// One parsed request, borrowed from the connection.
pub struct Request<'a> {
    pub head_buf: &'a [u8],
    pub head: Head<'a>,
    pub body: Body<'a>,
    pub remote_addr: &'a str,
    pub remote_port: &'a str,
    pub listener: usize,
    /// The method and target as sent, for messages about this request.
    pub method: &'a [u8],
    pub uri: &'a [u8],
}

/// What the connection and the access log need to know afterwards.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub status: u16,
    pub body_bytes: u64,
    pub headers_count: usize,
    pub headers_bytes: usize,
    pub keep_alive: bool,
    /// Close after sending what is buffered (app error after headers, or the
    /// client went away).
    pub aborted: bool,
    pub client_gone: bool,
    pub vars: usize,
    pub vars_bytes: usize,
    /// The body went out with sendfile (`wsgi.file_wrapper`), for `log-sendfile`.
    pub via_sendfile: bool,
}

thread_local! {
    /// Set by `consume` when the response went out with sendfile.
    static VIA_SENDFILE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Per-listener values of the environ template.
pub struct ListenerEnv {
    pub server_name: String,
    pub server_port: String,
}

/// What the worker tells the interpreter about the app.
pub struct AppSpec<'a> {
    pub module: Option<&'a str>,
    pub wsgi_file: Option<&'a std::path::Path>,
    pub callable: &'a str,
    pub virtualenv: Option<&'a std::path::Path>,
    pub pythonpath: &'a [PathBuf],
    pub threads: usize,
    pub processes: usize,
}

/// Attribute names looked up on response objects.
pub struct Names {
    pub close: Owned,
    pub filelike: Owned,
    pub fileno: Owned,
    pub tell: Owned,
}

/// The loaded app and every object the request path reuses.
pub struct Wsgi {
    app: Owned,
    start_response: Owned,
    write: Owned,
    bytes_io: Owned,
    spooled_input: Owned,
    file_wrapper_type: Owned,
    templates: Vec<Owned>,
    keys: environ::Keys,
    names: Names,
}

/// A Python thread state owned by one worker thread; the GIL is taken and
/// released per request with it (no thread-state churn per request).
pub struct ThreadState(*mut ffi::PyThreadState);

impl ThreadState {
    /// Creates a thread state for the calling thread and leaves the GIL released.
    pub fn attach_current_thread() -> ThreadState {
        // SAFETY: Python is initialised (after Wsgi::boot); PyGILState_Ensure
        // creates this thread's state and takes the GIL, which
        // PyEval_SaveThread releases, handing back the state to restore later.
        unsafe {
            ffi::PyGILState_Ensure();
            ThreadState(ffi::PyEval_SaveThread())
        }
    }
}

/// Builds a module-level function object from a static method definition.
unsafe fn make_function(def: ffi::PyMethodDef) -> Owned {
    let def: &'static mut ffi::PyMethodDef = Box::leak(Box::new(def));
    // SAFETY: def lives forever; GIL held by the caller.
    unsafe {
        Owned::from_new(ffi::PyCFunction_NewEx(
            def,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        ))
    }
    .expect("creating a builtin function cannot fail")
}

impl Wsgi {
    /// Initialises Python, imports the app and prepares the per-request objects.
    /// On success the GIL is released; on an app error the traceback has been printed.
    pub fn boot(spec: &AppSpec<'_>, listeners: &[ListenerEnv]) -> Result<Wsgi, BootError> {
        let mut search_path: Vec<PathBuf> = spec.pythonpath.to_vec();
        if let Ok(cwd) = std::env::current_dir() {
            search_path.push(cwd);
        }
        interpreter::initialize(&PythonSetup {
            virtualenv: spec.virtualenv,
            search_path,
        })?;
        let wsgi = Python::attach(|py| Self::load(py, spec, listeners));
        // SAFETY: initialize() left the GIL held by this thread; release it so
        // the worker threads can take it. This thread never runs Python again.
        unsafe {
            ffi::PyEval_SaveThread();
        }
        wsgi
    }

    fn load(
        py: Python<'_>,
        spec: &AppSpec<'_>,
        listeners: &[ListenerEnv],
    ) -> Result<Wsgi, BootError> {
        let report = |e: PyErr| {
            // Not `e.print()`: PyErr_Print exits the process on SystemExit
            // (an app calling sys.exit() at import), with the app's status
            // instead of ours, and without a traceback.
            e.restore(py);
            // SAFETY: GIL held (inside Python::attach); the error is set.
            unsafe { py::print_error() };
            BootError::App
        };
        let source = CString::new(SUPPORT_SOURCE).expect("support.py has no NUL");
        let support = PyModule::from_code(py, &source, c"capataz_support.py", c"capataz_support")
            .map_err(report)?;
        let wsgi_file = spec.wsgi_file.map(|p| p.to_string_lossy().into_owned());
        let app = support
            .call_method1("load_app", (spec.module, wsgi_file, spec.callable))
            .map_err(report)?;
        support
            .call_method0("enable_tracebacks_on_harakiri")
            .map_err(report)?;
        let io = py.import("io").map_err(report)?;
        let bytes_io = io.getattr("BytesIO").map_err(report)?;
        let sys = py.import("sys").map_err(report)?;
        let stderr = sys.getattr("stderr").map_err(report)?;
        let file_wrapper = support.getattr("FileWrapper").map_err(report)?;
        let spooled_input = support.getattr("spooled_input").map_err(report)?;

        let mut templates = Vec::new();
        for l in listeners {
            // SAFETY: GIL held (inside Python::attach); a new reference or NULL.
            let t = unsafe { Bound::from_owned_ptr_or_err(py, environ::new_template_dict()) }
                .and_then(|t| t.cast_into::<PyDict>().map_err(PyErr::from))
                .map_err(report)?;
            let set = |k: &str, v: Bound<'_, PyAny>| t.set_item(k, v);
            (|| -> PyResult<()> {
                set("wsgi.version", PyTuple::new(py, [1, 0])?.into_any())?;
                set("wsgi.url_scheme", "http".into_pyobject(py)?.into_any())?;
                set("wsgi.errors", stderr.clone())?;
                set(
                    "wsgi.multithread",
                    (spec.threads > 1).into_pyobject(py)?.to_owned().into_any(),
                )?;
                set(
                    "wsgi.multiprocess",
                    (spec.processes > 1)
                        .into_pyobject(py)?
                        .to_owned()
                        .into_any(),
                )?;
                set(
                    "wsgi.run_once",
                    false.into_pyobject(py)?.to_owned().into_any(),
                )?;
                set(
                    "wsgi.input_terminated",
                    true.into_pyobject(py)?.to_owned().into_any(),
                )?;
                set("wsgi.file_wrapper", file_wrapper.clone())?;
                set("SCRIPT_NAME", "".into_pyobject(py)?.into_any())?;
                set(
                    "SERVER_NAME",
                    l.server_name.as_str().into_pyobject(py)?.into_any(),
                )?;
                set(
                    "SERVER_PORT",
                    l.server_port.as_str().into_pyobject(py)?.into_any(),
                )?;
                set(
                    "SERVER_SOFTWARE",
                    concat!("capataz/", env!("CARGO_PKG_VERSION"))
                        .into_pyobject(py)?
                        .into_any(),
                )?;
                Ok(())
            })()
            .map_err(report)?;
            // SAFETY: GIL held; into_ptr hands over a strong reference.
            templates.push(unsafe { Owned::from_new(t.into_ptr()) }.expect("non-null dict"));
        }

        // SAFETY: GIL held (inside Python::attach); every pointer handed to
        // Owned below is a new strong reference.
        unsafe {
            let own = |b: Bound<'_, PyAny>| Owned::from_new(b.into_ptr()).expect("non-null object");
            let start_response = make_function(ffi::PyMethodDef {
                ml_name: c"start_response".as_ptr(),
                ml_meth: ffi::PyMethodDefPointer {
                    PyCFunctionFast: response::start_response,
                },
                ml_flags: ffi::METH_FASTCALL,
                ml_doc: c"PEP 3333 start_response(status, headers, exc_info=None)".as_ptr(),
            });
            let write = make_function(ffi::PyMethodDef {
                ml_name: c"write".as_ptr(),
                ml_meth: ffi::PyMethodDefPointer {
                    PyCFunction: response::write,
                },
                ml_flags: ffi::METH_O,
                ml_doc: c"PEP 3333 write(data)".as_ptr(),
            });
            Ok(Wsgi {
                app: own(app),
                start_response,
                write,
                bytes_io: own(bytes_io),
                spooled_input: own(spooled_input),
                file_wrapper_type: own(file_wrapper),
                templates,
                keys: environ::Keys::new(),
                names: Names {
                    close: py::interned(c"close"),
                    filelike: py::interned(c"filelike"),
                    fileno: py::interned(c"fileno"),
                    tell: py::interned(c"tell"),
                },
            })
        }
    }

    /// Runs the app for one request, encoding the response into `out`.
    /// Takes and releases the GIL with `ts`. `uwsgi`: the response goes to a
    /// uwsgi front-end (never chunked, the connection closes after it).
    #[allow(clippy::too_many_arguments)]
    pub fn handle(
        &self,
        ts: &ThreadState,
        req: Request<'_>,
        out: &mut Output,
        version: Version,
        head_only: bool,
        keep_alive: bool,
        uwsgi: bool,
        date: &[u8],
    ) -> Outcome {
        // SAFETY: ts belongs to this thread and the GIL is not held here.
        unsafe { ffi::PyEval_RestoreThread(ts.0) };
        // Free the previous large response's objects before this app
        // allocates its own, so the allocator reuses their warm memory.
        // SAFETY: GIL held.
        unsafe { held::release_deferred() };
        let mut ex = Exchange::new(
            out,
            version,
            head_only,
            keep_alive && !uwsgi,
            date,
            self.write.as_ptr(),
        );
        ex.uwsgi = uwsgi;
        ex.method = req.method;
        ex.uri = req.uri;
        let mut outcome = Outcome::default();
        // SAFETY: GIL held from here to PyEval_SaveThread below.
        unsafe {
            match environ::build(self, req) {
                Some((env, stats)) => {
                    outcome.vars = stats.vars;
                    outcome.vars_bytes = stats.bytes;
                    ex.enter(|ex| self.run_app(ex, env));
                    if ex.reclaim_stream().is_err() {
                        ex.abort();
                    }
                }
                None => self.app_error(&mut ex),
            }
            ex.release();
            // The app's objects the I/O side finished sending since the last
            // request: we hold the GIL now anyway.
            held::release_deferred();
            ffi::PyEval_SaveThread();
        }
        outcome.status = ex.code;
        outcome.body_bytes = ex.body_bytes;
        outcome.headers_count = ex.headers_count;
        outcome.headers_bytes = ex.headers_bytes;
        outcome.keep_alive = ex.keep_alive && !ex.aborted;
        outcome.aborted = ex.aborted;
        outcome.client_gone = ex.client_gone;
        outcome.via_sendfile = VIA_SENDFILE.replace(false);
        outcome
    }

    /// Releases the app's objects the I/O side finished sending, taking the
    /// GIL with `ts` (an idle thread's chore; see [`held`]).
    pub fn release_held(&self, ts: &ThreadState) {
        if !held::any_deferred() {
            return;
        }
        // SAFETY: ts belongs to this thread, which does not hold the GIL;
        // it is released again before returning.
        unsafe {
            ffi::PyEval_RestoreThread(ts.0);
            held::release_deferred();
            ffi::PyEval_SaveThread();
        }
    }

    /// Calls the app and consumes its result; always calls `close()` once.
    unsafe fn run_app(&self, ex: &mut Exchange<'_>, env: Owned) {
        // SAFETY: GIL held by the caller.
        unsafe {
            let args = [env.as_ptr(), self.start_response.as_ptr()];
            let result =
                ffi::PyObject_Vectorcall(self.app.as_ptr(), args.as_ptr(), 2, std::ptr::null_mut());
            let Some(result) = Owned::from_new(result) else {
                self.app_error(ex);
                return;
            };
            if self.consume(ex, result.as_ptr()).is_err() {
                if ex.client_gone {
                    ffi::PyErr_Clear();
                    ex.abort();
                } else {
                    self.app_error(ex);
                }
            }
            self.close(ex, result.as_ptr());
        }
    }

    /// An exception from the app (any `BaseException`, `SystemExit`
    /// included): logged with the request it broke and its traceback; 500 if
    /// nothing was sent yet, else the connection is aborted.
    unsafe fn app_error(&self, ex: &mut Exchange<'_>) {
        tracing::error!(
            "exception while serving {} {}: {}",
            String::from_utf8_lossy(ex.method),
            String::from_utf8_lossy(ex.uri),
            if ex.headers_sent {
                "aborting the response"
            } else {
                "500"
            }
        );
        // SAFETY: GIL held by the caller and an exception is set.
        unsafe { py::print_error() };
        if ex.headers_sent {
            ex.abort();
        } else {
            ex.fail(500);
        }
    }

    /// Calls `result.close()` if it has one (PEP 3333: exactly once, always).
    unsafe fn close(&self, ex: &mut Exchange<'_>, result: *mut ffi::PyObject) {
        // SAFETY: GIL held by the caller; result is a live object.
        unsafe {
            if ffi::PyList_CheckExact(result) != 0
                || ffi::PyTuple_CheckExact(result) != 0
                || ffi::PyBytes_CheckExact(result) != 0
            {
                return;
            }
            let (mut t, mut v, mut tb) = (
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
            ffi::PyErr_Fetch(&mut t, &mut v, &mut tb);
            let close = ffi::PyObject_GetAttr(result, self.names.close.as_ptr());
            if close.is_null() {
                ffi::PyErr_Clear();
            } else {
                let r = ffi::PyObject_CallNoArgs(close);
                ffi::Py_DECREF(close);
                if r.is_null() {
                    py::print_error();
                    if !ex.headers_sent {
                        ex.fail(500);
                    }
                } else {
                    ffi::Py_DECREF(r);
                }
            }
            if !t.is_null() {
                ffi::PyErr_Restore(t, v, tb);
            }
        }
    }

    /// Sends the iterable. `Err`: a Python error is set, or the client left
    /// (`ex.client_gone`).
    unsafe fn consume(&self, ex: &mut Exchange<'_>, result: *mut ffi::PyObject) -> Result<(), ()> {
        // SAFETY: GIL held by the caller; result is a live object.
        unsafe {
            if ffi::Py_TYPE(result) as *mut ffi::PyObject == self.file_wrapper_type.as_ptr()
                && file_wrapper::try_sendfile(self, ex, result)?
            {
                VIA_SENDFILE.set(true);
                return Ok(());
            }
            if ffi::PyList_CheckExact(result) != 0 || ffi::PyTuple_CheckExact(result) != 0 {
                let is_list = ffi::PyList_CheckExact(result) != 0;
                let n = if is_list {
                    ffi::PyList_GET_SIZE(result)
                } else {
                    ffi::PyTuple_GET_SIZE(result)
                };
                let item = |i| {
                    if is_list {
                        ffi::PyList_GET_ITEM(result, i)
                    } else {
                        ffi::PyTuple_GET_ITEM(result, i)
                    }
                };
                let mut total = 0u64;
                for i in 0..n {
                    let it = item(i);
                    if ffi::PyBytes_Check(it) == 0 {
                        py::raise(
                            ffi::PyExc_TypeError,
                            c"the response iterable must yield bytes",
                        );
                        return Err(());
                    }
                    total += ffi::PyBytes_Size(it) as u64;
                }
                if !ex.headers_sent {
                    ex.send_headers(Some(total))?;
                }
                for i in 0..n {
                    // Re-check: the list may have changed since it was measured.
                    let it = item(i);
                    if ffi::PyBytes_Check(it) == 0 {
                        py::raise(
                            ffi::PyExc_TypeError,
                            c"the response iterable must yield bytes",
                        );
                        return Err(());
                    }
                    ex.body(it);
                }
                ex.finish();
                return Ok(());
            }
            let iter = Owned::from_new(ffi::PyObject_GetIter(result)).ok_or(())?;
            let next = |iter: &Owned| -> Result<Option<Owned>, ()> {
                loop {
                    match Owned::from_new(ffi::PyIter_Next(iter.as_ptr())) {
                        None if ffi::PyErr_Occurred().is_null() => return Ok(None),
                        None => return Err(()),
                        Some(chunk) if ffi::PyBytes_Check(chunk.as_ptr()) == 0 => {
                            py::raise(
                                ffi::PyExc_TypeError,
                                c"the response iterable must yield bytes",
                            );
                            return Err(());
                        }
                        // Empty chunks carry nothing (and must not delay the
                        // head, PEP 3333): skip them.
                        Some(chunk) if ffi::PyBytes_Size(chunk.as_ptr()) == 0 => continue,
                        Some(chunk) => return Ok(Some(chunk)),
                    }
                }
            };
            // PEP 3333: the head goes out with the first non-empty chunk, and
            // no chunk is held back waiting for the next one. So only lists
            // and tuples (whose length is known up front) get a
            // Content-Length from us; other iterables stream.
            while let Some(chunk) = next(&iter)? {
                ex.make_room()?;
                if !ex.headers_sent {
                    ex.send_headers(None)?;
                }
                ex.body(chunk.as_ptr());
                ex.stream_chunk()?;
            }
            if !ex.headers_sent {
                ex.send_headers(Some(0))?;
            }
            ex.finish();
            Ok(())
        }
    }
}

// SAFETY: Wsgi's objects are only used with the GIL held (see `py`).
unsafe impl Send for Wsgi {}
// SAFETY: as above.
unsafe impl Sync for Wsgi {}
