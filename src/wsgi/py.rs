//! Thin helpers over the CPython C API used on the request path.
//!
//! The request path uses the C API directly (no per-call pyo3 bookkeeping),
//! so every function here requires the GIL to be held by the caller.

use std::borrow::Cow;
use std::ffi::CStr;
use std::ptr::NonNull;

use pyo3::ffi;

/// An owned (strong) reference. Dropping it decrements the refcount, so it
/// must only be dropped while the GIL is held.
pub struct Owned(NonNull<ffi::PyObject>);

impl Owned {
    /// Takes ownership of a new reference; `None` when `ptr` is NULL (a Python
    /// error is then set).
    ///
    /// # Safety
    /// `ptr` is NULL or a new strong reference; the GIL is held.
    pub unsafe fn from_new(ptr: *mut ffi::PyObject) -> Option<Owned> {
        NonNull::new(ptr).map(Owned)
    }

    /// Takes a new strong reference to a borrowed object.
    ///
    /// # Safety
    /// `ptr` is a valid object; the GIL is held.
    pub unsafe fn from_borrowed(ptr: *mut ffi::PyObject) -> Owned {
        // SAFETY: the caller guarantees a valid object and the GIL.
        unsafe { ffi::Py_INCREF(ptr) };
        Owned(NonNull::new(ptr).expect("borrowed object pointer is non-null"))
    }

    pub fn as_ptr(&self) -> *mut ffi::PyObject {
        self.0.as_ptr()
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: Owned values are only created and dropped with the GIL held
        // (module doc); the pointer is a strong reference we own.
        unsafe { ffi::Py_DECREF(self.0.as_ptr()) }
    }
}

// SAFETY: the objects are only touched with the GIL held, which serialises
// all access; the pointer itself may move between threads.
unsafe impl Send for Owned {}
// SAFETY: as above: shared references are only dereferenced under the GIL.
unsafe impl Sync for Owned {}

/// A `str` made from latin-1 bytes (PEP 3333 "native strings").
///
/// # Safety
/// The GIL is held.
pub unsafe fn latin1(bytes: &[u8]) -> Option<Owned> {
    // SAFETY: pointer/length describe a valid slice; GIL held by the caller.
    unsafe {
        Owned::from_new(ffi::PyUnicode_DecodeLatin1(
            bytes.as_ptr().cast(),
            bytes.len() as ffi::Py_ssize_t,
            std::ptr::null(),
        ))
    }
}

/// An interned `str`, for dict keys used on every request.
///
/// # Safety
/// The GIL is held.
pub unsafe fn interned(s: &CStr) -> Owned {
    // SAFETY: s is NUL-terminated; GIL held by the caller.
    unsafe { Owned::from_new(ffi::PyUnicode_InternFromString(s.as_ptr())) }
        .expect("interning a static string cannot fail")
}

/// The latin-1 bytes of a `str`, borrowed when the string is stored as one
/// byte per character (the common case), or `None` if it holds characters
/// above U+00FF (not a valid WSGI native string).
///
/// # Safety
/// `obj` is a `str` object that outlives the returned slice; the GIL is held.
pub unsafe fn str_latin1<'a>(obj: *mut ffi::PyObject) -> Option<Cow<'a, [u8]>> {
    // SAFETY: obj is a str per the caller; these macros read its header.
    unsafe {
        if ffi::PyUnicode_KIND(obj) == ffi::PyUnicode_1BYTE_KIND {
            let len = ffi::PyUnicode_GET_LENGTH(obj) as usize;
            let data = ffi::PyUnicode_1BYTE_DATA(obj);
            return Some(Cow::Borrowed(std::slice::from_raw_parts(data, len)));
        }
    }
    None
}

/// The bytes of a `bytes` object.
///
/// # Safety
/// `obj` is a `bytes` object that outlives the slice; the GIL is held.
pub unsafe fn bytes_of<'a>(obj: *mut ffi::PyObject) -> &'a [u8] {
    // SAFETY: obj is bytes per the caller.
    unsafe {
        let len = ffi::PyBytes_Size(obj) as usize;
        let data = ffi::PyBytes_AsString(obj) as *const u8;
        std::slice::from_raw_parts(data, len)
    }
}

/// Sets a Python exception of type `exc` with a static message.
///
/// # Safety
/// The GIL is held.
pub unsafe fn raise(exc: *mut ffi::PyObject, msg: &CStr) {
    // SAFETY: exc is an exception type; msg is NUL-terminated.
    unsafe { ffi::PyErr_SetString(exc, msg.as_ptr()) }
}

/// Sets a Python exception with a formatted message.
///
/// # Safety
/// The GIL is held.
pub unsafe fn raise_msg(exc: *mut ffi::PyObject, msg: &str) {
    let c = std::ffi::CString::new(msg.replace('\0', "?")).unwrap_or_default();
    // SAFETY: as in raise().
    unsafe { ffi::PyErr_SetString(exc, c.as_ptr()) }
}

/// Prints and clears the current Python exception (to `sys.stderr`, i.e. the
/// log), whatever its class.
///
/// Not `PyErr_Print`/`PyErr_PrintEx`: on `SystemExit` those do not print but
/// call `exit()` (Python's `handle_system_exit`), which from an app thread
/// tries to finalize the interpreter under the other threads' feet and hangs
/// the request, the thread and the worker's shutdown. `PyErr_Display` only
/// prints, so a `sys.exit()` in a view is an app error like any other.
///
/// # Safety
/// The GIL is held.
pub unsafe fn print_error() {
    // SAFETY: GIL held; Fetch hands us the three references (or NULLs),
    // which we release after displaying them.
    unsafe {
        let (mut t, mut v, mut tb) = (
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        ffi::PyErr_Fetch(&mut t, &mut v, &mut tb);
        if t.is_null() {
            return;
        }
        ffi::PyErr_NormalizeException(&mut t, &mut v, &mut tb);
        if !tb.is_null() && !v.is_null() {
            ffi::PyException_SetTraceback(v, tb);
        }
        let none = ffi::Py_None();
        ffi::PyErr_Display(
            t,
            if v.is_null() { none } else { v },
            if tb.is_null() { none } else { tb },
        );
        // Displaying can itself fail (a broken sys.stderr): never leave an
        // error set behind, it would surface in an unrelated call.
        ffi::PyErr_Clear();
        ffi::Py_XDECREF(t);
        ffi::Py_XDECREF(v);
        ffi::Py_XDECREF(tb);
    }
}
