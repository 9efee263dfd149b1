//! `wsgi.file_wrapper` served with sendfile(2) from the file's current offset.

use pyo3::ffi;

use super::py::Owned;
use super::response::Exchange;
use super::Wsgi;

/// Serves a FileWrapper whose file has a usable descriptor. Returns false
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
        let size = st.st_size as u64;
        let offset = (offset as u64).min(size);
        let len = size - offset;
        if !ex.headers_sent {
            ex.send_headers(Some(len))?;
        }
        let to_send = ex.begin_file_body(len);
        if to_send == 0 {
            ex.finish();
            return Ok(true);
        }
        // Bytes an earlier write() left pending go first.
        ex.reclaim_stream()?;
        let ts = ffi::PyEval_SaveThread();
        let sent = ex.out.sendfile_blocking(fd as i32, offset, to_send);
        ffi::PyEval_RestoreThread(ts);
        match sent {
            Ok(n) => {
                ex.end_file_body(n);
                ex.finish();
            }
            Err(_) => {
                ex.client_gone = true;
                ex.abort();
            }
        }
        Ok(true)
    }
}
