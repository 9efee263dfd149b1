//! Response bytes the app produced, lent to the I/O side without copying.
//!
//! A large body (Flask's `return b"x" * 30_000_000`) is sent from the app's
//! own `bytes` object: the I/O side keeps a strong reference while the
//! socket drains, so the app thread is free as soon as the app is done and
//! no second copy of the body is made. A `bytes` object is immutable and its
//! buffer never moves, so reading it without the GIL is sound while the
//! reference is held.
//!
//! The reference must be dropped with the GIL, which the I/O side does not
//! hold: dropping a [`HeldBytes`] queues the object, and an app thread
//! releases the queue the next time it holds the GIL anyway (after a
//! request), or, on an idle worker, at its next epoll timeout.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use pyo3::ffi;

/// Objects whose last reference we dropped without the GIL.
static DEFERRED: Mutex<Vec<usize>> = Mutex::new(Vec::new());
/// Set while `DEFERRED` is non-empty: checked without the lock.
static ANY_DEFERRED: AtomicBool = AtomicBool::new(false);

/// A strong reference to a `bytes` object and the part of it to send.
pub struct HeldBytes {
    obj: NonNull<ffi::PyObject>,
    data: *const u8,
    len: usize,
}

impl HeldBytes {
    /// Holds the first `len` bytes of `obj`.
    ///
    /// # Safety
    /// The GIL is held; `obj` is a `bytes` object of at least `len` bytes.
    pub unsafe fn new(obj: *mut ffi::PyObject, len: usize) -> HeldBytes {
        // SAFETY: per the caller, obj is a live bytes object and the GIL is held.
        unsafe {
            ffi::Py_INCREF(obj);
            HeldBytes {
                obj: NonNull::new(obj).expect("a bytes object pointer is non-null"),
                data: ffi::PyBytes_AsString(obj) as *const u8,
                len,
            }
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the bytes object is alive (we hold a reference) and
        // immutable, and `len` is within it (see `new`).
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }
}

impl Drop for HeldBytes {
    fn drop(&mut self) {
        let mut q = DEFERRED.lock().unwrap_or_else(|e| e.into_inner());
        q.push(self.obj.as_ptr() as usize);
        ANY_DEFERRED.store(true, Ordering::Release);
    }
}

// SAFETY: the object is only read (immutable bytes) and its reference is
// released under the GIL (see the module doc).
unsafe impl Send for HeldBytes {}

/// Whether some held objects wait for the GIL to be released.
pub fn any_deferred() -> bool {
    ANY_DEFERRED.load(Ordering::Acquire)
}

/// Drops the references queued by [`HeldBytes`]' `Drop`.
///
/// # Safety
/// The GIL is held.
pub unsafe fn release_deferred() {
    if !any_deferred() {
        return;
    }
    let objs = {
        let mut q = DEFERRED.lock().unwrap_or_else(|e| e.into_inner());
        ANY_DEFERRED.store(false, Ordering::Release);
        std::mem::take(&mut *q)
    };
    for obj in objs {
        // SAFETY: each entry is a strong reference a HeldBytes owned; GIL held.
        unsafe { ffi::Py_DECREF(obj as *mut ffi::PyObject) };
    }
}
