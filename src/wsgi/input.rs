//! `wsgi.input`: the request body, already read completely by the I/O side.
//!
//! In-memory bodies become an `io.BytesIO`; spooled bodies a buffered reader
//! over the temp file. Both support read(n), readline(n), readlines() and
//! iteration, and both return b"" at the end instead of blocking.

use std::io::{Seek, SeekFrom};
use std::os::fd::IntoRawFd;

use pyo3::ffi;

use super::py::Owned;
use super::{Body, Wsgi};

/// Returns (input object, spooled?, body length). `None` means a Python error is set.
///
/// # Safety
/// The GIL is held.
pub unsafe fn make(w: &Wsgi, body: Body<'_>) -> Option<(Owned, bool, u64)> {
    // SAFETY: GIL held by the caller; objects are valid.
    unsafe {
        match body {
            Body::Memory([]) => Some((
                Owned::from_new(ffi::PyObject_CallNoArgs(w.bytes_io.as_ptr()))?,
                false,
                0,
            )),
            Body::Memory(bytes) => {
                let b = Owned::from_new(ffi::PyBytes_FromStringAndSize(
                    bytes.as_ptr().cast(),
                    bytes.len() as ffi::Py_ssize_t,
                ))?;
                let input =
                    Owned::from_new(ffi::PyObject_CallOneArg(w.bytes_io.as_ptr(), b.as_ptr()))?;
                Some((input, false, bytes.len() as u64))
            }
            Body::Spooled(mut file, len) => {
                if let Err(e) = file.seek(SeekFrom::Start(0)) {
                    super::py::raise_msg(ffi::PyExc_OSError, &format!("spooled body: {e}"));
                    return None;
                }
                let fd = ffi::PyLong_FromLong(file.into_raw_fd() as std::os::raw::c_long);
                let fd = Owned::from_new(fd)?;
                let input = Owned::from_new(ffi::PyObject_CallOneArg(
                    w.spooled_input.as_ptr(),
                    fd.as_ptr(),
                ))?;
                Some((input, true, len))
            }
        }
    }
}
