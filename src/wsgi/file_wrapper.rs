//! `wsgi.file_wrapper` served with sendfile(2) from the file's current offset.
//!
//! The app thread only sets the response up: the head, and the file's range
//! handed to the I/O side through a duplicate descriptor (see
//! [`crate::worker::output`]). The event loop sends it as the socket drains
//! and logs the request when it is done, so a slow client downloading a
//! large file never holds a Python thread (DESIGN §2.2, §2.3).
//!
//! Files of every size take this path, unlike `bytes` bodies, which are
//! copied below [`crate::worker::output::FLUSH_THRESHOLD`]: there is nothing
//! to copy, and a small file leaves in the event loop's first send on this
//! same thread right after the app returns; the price is a dup and a close.

use std::os::fd::{FromRawFd, OwnedFd};

use pyo3::ffi;

use super::py::Owned;
use super::response::Exchange;
use super::Wsgi;

/// Serves a FileWrapper whose file is a regular file with a descriptor:
/// nothing is sent here, and the caller may close the file at once. Returns false
/// (with no Python error set) when the wrapper must be iterated instead.
/// `Err` means a Python error is set.
///
/// # Safety
/// The GIL is held; `result` is a FileWrapper instance.
pub unsafe fn try_sendfile(
    w: &Wsgi,
    ex: &mut Exchange<'_>,
    result: *mut ffi::PyObject,
) -> Result<bool, ()> {
    // SAFETY: GIL held by the caller; all objects are valid.
    unsafe {
        let Some(filelike) =
            Owned::from_new(ffi::PyObject_GetAttr(result, w.names.filelike.as_ptr()))
        else {
            ffi::PyErr_Clear();
            return Ok(false);
        };
        let fd = match Owned::from_new(ffi::PyObject_CallMethodNoArgs(
            filelike.as_ptr(),
            w.names.fileno.as_ptr(),
        )) {
            Some(n) => ffi::PyLong_AsLong(n.as_ptr()),
            None => -1,
        };
        if fd < 0 {
            ffi::PyErr_Clear();
            return Ok(false);
        }
        // The logical position: tell() accounts for Python-side buffering.
        let offset = match Owned::from_new(ffi::PyObject_CallMethodNoArgs(
            filelike.as_ptr(),
            w.names.tell.as_ptr(),
        )) {
            Some(n) => ffi::PyLong_AsLongLong(n.as_ptr()),
            None => {
                ffi::PyErr_Clear();
                libc::lseek(fd as i32, 0, libc::SEEK_CUR)
            }
        };
        let mut st: libc::stat = std::mem::zeroed();
        if offset < 0
            || libc::fstat(fd as i32, &mut st) != 0
            || (st.st_mode & libc::S_IFMT) != libc::S_IFREG
        {
            ffi::PyErr_Clear();
            return Ok(false);
        }
        // A descriptor of our own for the I/O side, which sends the file
        // after we return: the app closes its file (PEP 3333 `close()`) right
        // away. Without one (EMFILE), iterate the wrapper instead.
        let dup = libc::fcntl(fd as i32, libc::F_DUPFD_CLOEXEC, 0);
        if dup < 0 {
            ffi::PyErr_Clear();
            return Ok(false);
        }
        // SAFETY: fcntl just returned this new descriptor; nothing else owns it.
        let dup = OwnedFd::from_raw_fd(dup);
        let size = st.st_size as u64;
        let offset = (offset as u64).min(size);
        let len = size - offset;
        if !ex.headers_sent {
            ex.send_headers(Some(len))?;
        }
        let to_send = ex.begin_file_body(len);
        if to_send > 0 {
            // Bytes an earlier write() left pending go first.
            ex.reclaim_stream()?;
            ex.out.tail.hold_file(dup, offset, to_send);
            ex.end_file_body(to_send);
        }
        ex.finish();
        Ok(true)
    }
}
