//! The response byte buffer of one connection, and the only places that write
//! it to the socket.
//!
//! Small responses are buffered whole and written by the event loop without
//! blocking (it parks the connection on EAGAIN). Streaming responses larger
//! than [`FLUSH_THRESHOLD`] are flushed while the app still runs; those
//! flushes wait for the socket with the GIL released, bounded by the send
//! timeout. That bounds memory per connection.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// Buffered response bytes above which a streaming response is flushed.
pub const FLUSH_THRESHOLD: usize = 256 * 1024;

pub struct Output {
    pub buf: Vec<u8>,
    pub fd: RawFd,
    pub send_timeout: Duration,
}

#[derive(Debug, PartialEq, Eq)]
pub enum WriteStatus {
    Done,
    WouldBlock,
}

/// Why bytes could not be delivered: the peer went away or stopped reading.
#[derive(Debug)]
pub enum SendError {
    Closed(#[allow(dead_code)] io::Error),
    Timeout,
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

fn wait_writable(fd: RawFd, deadline: Instant) -> Result<(), SendError> {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(SendError::Timeout);
        }
        let ms = (deadline - now).as_millis().min(i32::MAX as u128) as i32;
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: pfd is a valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms.max(1)) };
        if n > 0 {
            return Ok(());
        }
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(SendError::Closed(e));
            }
        }
    }
}

/// One non-blocking `send` of `data`. MSG_NOSIGNAL: a closed peer is an
/// error, never a SIGPIPE.
pub fn send_some(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    send_with_flags(fd, data, 0)
}

fn send_with_flags(fd: RawFd, data: &[u8], flags: libc::c_int) -> io::Result<usize> {
    loop {
        // SAFETY: data is a valid slice; fd is a socket we own.
        let n = unsafe {
            libc::send(
                fd,
                data.as_ptr().cast(),
                data.len(),
                libc::MSG_NOSIGNAL | flags,
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

impl Output {
    pub fn new(fd: RawFd, send_timeout: Duration) -> Output {
        Output {
            buf: Vec::with_capacity(16 * 1024),
            fd,
            send_timeout,
        }
    }

    /// Writes as much as the socket takes now, without waiting.
    pub fn write_nonblocking(&mut self) -> Result<WriteStatus, SendError> {
        self.write_with_flags(0)
    }

    /// As [`Self::write_nonblocking`], telling the kernel more data follows
    /// at once (MSG_MORE): a response head before its sendfile body, so both
    /// leave in one segment.
    pub fn write_nonblocking_more(&mut self) -> Result<WriteStatus, SendError> {
        self.write_with_flags(libc::MSG_MORE)
    }

    fn write_with_flags(&mut self, flags: libc::c_int) -> Result<WriteStatus, SendError> {
        let mut sent = 0;
        let result = loop {
            if sent == self.buf.len() {
                break Ok(WriteStatus::Done);
            }
            match send_with_flags(self.fd, &self.buf[sent..], flags) {
                Ok(n) => sent += n,
                Err(e) if would_block(&e) => break Ok(WriteStatus::WouldBlock),
                Err(e) => break Err(SendError::Closed(e)),
            }
        };
        self.buf.drain(..sent);
        result
    }

    /// Writes the whole buffer, waiting for the socket up to the send timeout.
    /// Call it without the GIL.
    pub fn flush_blocking(&mut self) -> Result<(), SendError> {
        self.flush_blocking_with_flags(0)
    }

    fn flush_blocking_with_flags(&mut self, flags: libc::c_int) -> Result<(), SendError> {
        let deadline = Instant::now() + self.send_timeout;
        loop {
            match self.write_with_flags(flags)? {
                WriteStatus::Done => return Ok(()),
                WriteStatus::WouldBlock => wait_writable(self.fd, deadline)?,
            }
        }
    }

    /// Sends `len` bytes of `file_fd` from `offset` with sendfile(2), after
    /// flushing the buffer. Does not move the file's own offset. Call it
    /// without the GIL.
    pub fn sendfile_blocking(
        &mut self,
        file_fd: RawFd,
        offset: u64,
        len: u64,
    ) -> Result<u64, SendError> {
        // MSG_MORE: the head leaves with the first bytes of the file.
        self.flush_blocking_with_flags(if len > 0 { libc::MSG_MORE } else { 0 })?;
        let deadline = Instant::now() + self.send_timeout;
        let mut off = offset as libc::off_t;
        let mut left = len;
        while left > 0 {
            let chunk = left.min(1 << 30) as usize;
            // SAFETY: both descriptors are open; off is a valid pointer.
            let n = unsafe { libc::sendfile(self.fd, file_fd, &mut off, chunk) };
            if n > 0 {
                left -= n as u64;
                continue;
            }
            if n == 0 {
                break; // the file is shorter than announced
            }
            let e = io::Error::last_os_error();
            if would_block(&e) {
                wait_writable(self.fd, deadline)?;
            } else if e.kind() != io::ErrorKind::Interrupted {
                return Err(SendError::Closed(e));
            }
        }
        Ok(len - left)
    }
}

/// Appends the canned error response for `status` with a `Date` field, which
/// RFC 9110 §6.6.1 requires on 4xx responses from a server with a clock.
pub fn push_error_response(out: &mut Vec<u8>, status: u16, date: &[u8]) {
    let canned = capataz_proto::http1::error_response(status);
    // The canned head ends at its first blank line; Date goes just before it.
    let end = canned
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(canned.len(), |p| p + 2);
    out.extend_from_slice(&canned[..end]);
    out.extend_from_slice(b"Date: ");
    out.extend_from_slice(date);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&canned[end..]);
}

#[cfg(test)]
mod tests {
    use super::push_error_response;

    #[test]
    fn error_responses_carry_a_date() {
        let mut out = Vec::new();
        push_error_response(&mut out, 400, b"Wed, 25 Nov 2026 18:00:00 GMT");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(text.contains("\r\nDate: Wed, 25 Nov 2026 18:00:00 GMT\r\n\r\nBad Request\n"));
    }
}
