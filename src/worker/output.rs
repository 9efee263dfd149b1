//! The response byte buffer of one connection, and the only places that write
//! it to the socket.
//!
//! Small responses are buffered whole and written by the event loop without
//! blocking (it parks the connection on EAGAIN): one buffer, one write.
//!
//! Body pieces that would take the buffer past [`FLUSH_THRESHOLD`] are not
//! copied: they follow the buffer as a [`Tail`] of
//! segments that reference the app's own `bytes` objects ([`HeldBytes`]),
//! written with one `sendmsg` per batch of segments. A response the app has
//! finished producing (a list, or a generator's last chunk) is therefore
//! handed to the event loop whole, however large, and the app thread moves
//! on while the socket drains (DESIGN §2.2). A generator that keeps
//! producing while more than [`FLUSH_THRESHOLD`] bytes are pending waits for
//! the socket before its next chunk, with the GIL released and bounded by
//! the send timeout: that bounds what a streaming response holds.
//!
//! A `wsgi.file_wrapper` body is a [`Segment::File`] in the same tail: a
//! descriptor of our own (a dup of the app's, so the app may close its file
//! at once) and the range to send, which the event loop sends with
//! sendfile(2) as the socket drains, never the app thread.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::wsgi::held::HeldBytes;

/// Pending response bytes above which a streaming response waits for the
/// socket before producing more, and past which body bytes are not copied.
pub const FLUSH_THRESHOLD: usize = 256 * 1024;

/// Segments per `sendmsg` (well under IOV_MAX).
const MAX_IOV: usize = 64;

pub struct Output {
    pub buf: Vec<u8>,
    /// What follows `buf` on the wire; empty for every small response.
    pub tail: Tail,
    pub fd: RawFd,
    pub send_timeout: Duration,
}

/// A piece of response after the buffer.
pub enum Segment {
    /// Bytes of an app's `bytes` object, sent from it.
    Held(HeldBytes),
    /// Bytes we framed ourselves (chunk headers, small pieces) between them.
    Copied(Vec<u8>),
    /// Part of a file, sent with sendfile(2).
    File(FileRange),
}

/// `len` bytes of a file from `offset`, through a descriptor the tail owns
/// (closing it is all dropping takes: no GIL). Sending advances `offset`;
/// the descriptor's own file offset is never used or moved.
pub struct FileRange {
    fd: OwnedFd,
    offset: u64,
    len: u64,
}

impl Segment {
    /// The bytes of a memory segment; `None` for a file.
    fn bytes(&self) -> Option<&[u8]> {
        match self {
            Segment::Held(h) => Some(h.as_slice()),
            Segment::Copied(v) => Some(v),
            Segment::File(_) => None,
        }
    }

    fn len(&self) -> usize {
        match self {
            Segment::File(f) => f.len as usize,
            _ => self.bytes().map_or(0, <[u8]>::len),
        }
    }
}

/// The segments after the buffer, in wire order; `sent` bytes of the first
/// one are already out. `sent` only ever counts into a memory segment: a
/// file segment advances its own offset instead.
#[derive(Default)]
pub struct Tail {
    segments: VecDeque<Segment>,
    sent: usize,
}

impl Tail {
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Bytes still to send.
    pub fn len(&self) -> usize {
        self.segments.iter().map(Segment::len).sum::<usize>() - self.sent
    }

    pub fn clear(&mut self) {
        self.segments.clear();
        self.sent = 0;
    }

    pub fn hold(&mut self, bytes: HeldBytes) {
        if !bytes.as_slice().is_empty() {
            self.segments.push_back(Segment::Held(bytes));
        }
    }

    /// Appends `len` bytes of the file `fd` from `offset`.
    pub fn hold_file(&mut self, fd: OwnedFd, offset: u64, len: u64) {
        if len > 0 {
            self.segments
                .push_back(Segment::File(FileRange { fd, offset, len }));
        }
    }

    /// The buffer that copied bytes go to after the last held segment.
    fn copy_buf(&mut self) -> &mut Vec<u8> {
        if !matches!(self.segments.back(), Some(Segment::Copied(_))) {
            self.segments.push_back(Segment::Copied(Vec::new()));
        }
        match self.segments.back_mut() {
            Some(Segment::Copied(v)) => v,
            _ => unreachable!("a Copied segment was just pushed"),
        }
    }

    /// Moves `other`'s segments after ours.
    fn append(&mut self, other: &mut Tail) {
        if other.segments.is_empty() {
            return;
        }
        if self.segments.is_empty() {
            std::mem::swap(self, other);
            return;
        }
        if other.sent > 0 {
            // `sent > 0`: the first segment is in memory (see `Tail`).
            if let Some(first) = other.segments.pop_front() {
                let rest = first.bytes().map_or(&[][..], |b| &b[other.sent..]);
                self.copy_buf().extend_from_slice(rest);
            }
            other.sent = 0;
        }
        self.segments.append(&mut other.segments);
    }

    /// Drops `n` sent bytes from the front.
    fn consume(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.segments.front_mut() else {
                return;
            };
            if let Segment::File(file) = front {
                let took = (n as u64).min(file.len);
                file.offset += took;
                file.len -= took;
                n -= took as usize;
                if file.len == 0 {
                    self.segments.pop_front();
                }
                continue;
            }
            let left = front.len() - self.sent;
            if n < left {
                self.sent += n;
                return;
            }
            n -= left;
            self.sent = 0;
            self.segments.pop_front();
        }
    }
}

/// The buffer in front of where the next bytes go: `buf` while nothing
/// follows it, else a copied segment at the end of `tail`.
#[inline]
pub fn append_target<'a>(buf: &'a mut Vec<u8>, tail: &'a mut Tail) -> &'a mut Vec<u8> {
    if tail.is_empty() {
        buf
    } else {
        tail.copy_buf()
    }
}

/// Moves `src` (buffer and tail) after `dst`, keeping wire order.
#[inline]
pub fn append_pending(dst: (&mut Vec<u8>, &mut Tail), src: (&mut Vec<u8>, &mut Tail)) {
    let (dst_buf, dst_tail) = dst;
    let (src_buf, src_tail) = src;
    if !src_buf.is_empty() {
        append_target(dst_buf, dst_tail).extend_from_slice(src_buf);
        src_buf.clear();
    }
    dst_tail.append(src_tail);
}

/// Sends `buf` then `tail` without waiting: one `sendmsg` per batch of
/// memory segments, sendfile(2) for a file segment. Ok(true) when
/// everything went.
pub fn send_vectored(
    fd: RawFd,
    buf: &mut Vec<u8>,
    tail: &mut Tail,
    flags: libc::c_int,
) -> io::Result<bool> {
    loop {
        let mut iov: [libc::iovec; MAX_IOV] = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_IOV];
        let mut n_iov = 0;
        if !buf.is_empty() {
            iov[0] = libc::iovec {
                iov_base: buf.as_ptr() as *mut libc::c_void,
                iov_len: buf.len(),
            };
            n_iov = 1;
        }
        // The batch ends at the first file segment.
        let mut file_follows = false;
        for (i, seg) in tail.segments.iter().enumerate() {
            if n_iov == MAX_IOV {
                break;
            }
            let Some(bytes) = seg.bytes() else {
                file_follows = true;
                break;
            };
            let bytes = if i == 0 { &bytes[tail.sent..] } else { bytes };
            if bytes.is_empty() {
                continue;
            }
            iov[n_iov] = libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            };
            n_iov += 1;
        }
        if n_iov == 0 {
            // Only empty memory segments (if any) before a file, or nothing.
            while tail.segments.front().is_some_and(|s| s.bytes().is_some()) {
                tail.segments.pop_front();
                tail.sent = 0;
            }
            if !send_file_front(fd, tail)? {
                return Ok(false);
            }
            if tail.segments.is_empty() {
                tail.clear();
                return Ok(true);
            }
            continue;
        }
        // SAFETY: a zeroed msghdr is valid; we set only the iovec fields.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = n_iov as _;
        // MSG_MORE before a file: the head leaves with its first bytes.
        let more = if file_follows { libc::MSG_MORE } else { 0 };
        // SAFETY: every iovec points into memory alive for the call (buf,
        // and segments we own); fd is a socket we own.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL | flags | more) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(false),
                _ => return Err(e),
            }
        }
        let mut n = n as usize;
        let from_buf = n.min(buf.len());
        buf.drain(..from_buf);
        n -= from_buf;
        tail.consume(n);
    }
}

/// Sends the file segment at the front of `tail`, if there is one, until it
/// is done (Ok(true)) or the socket is full (Ok(false)). A file that ends
/// before its announced length is an error: the response cannot be
/// completed, and what follows it must not be read as its body.
fn send_file_front(fd: RawFd, tail: &mut Tail) -> io::Result<bool> {
    while let Some(Segment::File(file)) = tail.segments.front() {
        let mut off = file.offset as libc::off_t;
        let chunk = file.len.min(1 << 30) as usize;
        // SAFETY: both descriptors are open (the tail owns the file's); off
        // is a valid pointer.
        let n = unsafe { libc::sendfile(fd, file.fd.as_raw_fd(), &mut off, chunk) };
        if n > 0 {
            tail.consume(n as usize);
            continue;
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file is shorter than the response announced",
            ));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(false),
            _ => return Err(e),
        }
    }
    Ok(true)
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
            tail: Tail::default(),
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

    /// Bytes not yet sent.
    pub fn pending_len(&self) -> usize {
        self.buf.len() + self.tail.len()
    }

    /// Where the next copied bytes go, after everything pending.
    pub fn append_buf(&mut self) -> &mut Vec<u8> {
        append_target(&mut self.buf, &mut self.tail)
    }

    fn write_with_flags(&mut self, flags: libc::c_int) -> Result<WriteStatus, SendError> {
        if !self.tail.is_empty() {
            return match send_vectored(self.fd, &mut self.buf, &mut self.tail, flags) {
                Ok(true) => Ok(WriteStatus::Done),
                Ok(false) => Ok(WriteStatus::WouldBlock),
                Err(e) => Err(SendError::Closed(e)),
            };
        }
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
        let deadline = Instant::now() + self.send_timeout;
        loop {
            match self.write_with_flags(0)? {
                WriteStatus::Done => return Ok(()),
                WriteStatus::WouldBlock => wait_writable(self.fd, deadline)?,
            }
        }
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
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn tail_of(pieces: &[&[u8]]) -> Tail {
        let mut t = Tail::default();
        for p in pieces {
            t.segments.push_back(Segment::Copied(p.to_vec()));
        }
        t
    }

    /// Sends `buf` and `tail` through the non-blocking `a`, reading `b`
    /// whenever the socket is full, until everything went; returns what was
    /// read. Nothing is lost or duplicated on the way (`total` bytes).
    fn send_all_reading(
        a: &UnixStream,
        b: &mut UnixStream,
        buf: &mut Vec<u8>,
        tail: &mut Tail,
        total: usize,
    ) -> Vec<u8> {
        let mut got = Vec::new();
        let mut chunk = vec![0; 64 * 1024];
        loop {
            let done = send_vectored(a.as_raw_fd(), buf, tail, 0).unwrap();
            assert!(buf.len() + tail.len() + got.len() <= total);
            if done {
                return got;
            }
            let n = b.read(&mut chunk).unwrap();
            got.extend_from_slice(&chunk[..n]);
        }
    }

    #[test]
    fn a_tail_goes_out_after_the_buffer_in_order_across_partial_sends() {
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let big = vec![7u8; 1 << 20];
        let mut buf = b"head|".to_vec();
        let mut tail = tail_of(&[&big, b"|mid|", &big, b"|end"]);
        let total = 5 + big.len() * 2 + 5 + 4;
        assert_eq!(tail.len(), total - 5);
        let mut got = send_all_reading(&a, &mut b, &mut buf, &mut tail, total);
        drop(a);
        b.read_to_end(&mut got).unwrap();
        let mut want = b"head|".to_vec();
        want.extend_from_slice(&big);
        want.extend_from_slice(b"|mid|");
        want.extend_from_slice(&big);
        want.extend_from_slice(b"|end");
        assert!(got == want, "bytes out of order or lost");
    }

    /// A temp file holding `data`, and a descriptor of it.
    fn file_of(data: &[u8]) -> OwnedFd {
        use std::io::Write;
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(data).unwrap();
        OwnedFd::from(f)
    }

    #[test]
    fn a_file_range_goes_out_between_memory_segments_across_partial_sends() {
        let (a, mut b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let content: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut buf = b"head|".to_vec();
        let mut tail = tail_of(&[b"chunk|"]);
        tail.hold_file(file_of(&content), 10, content.len() as u64 - 20);
        tail.copy_buf().extend_from_slice(b"|end");
        let total = 5 + 6 + content.len() - 20 + 4;
        assert_eq!(buf.len() + tail.len(), total);
        let mut got = send_all_reading(&a, &mut b, &mut buf, &mut tail, total);
        assert!(tail.is_empty());
        drop(a);
        b.read_to_end(&mut got).unwrap();
        let mut want = b"head|chunk|".to_vec();
        want.extend_from_slice(&content[10..content.len() - 10]);
        want.extend_from_slice(b"|end");
        assert!(got == want, "bytes out of order or lost");
    }

    #[test]
    fn a_file_shorter_than_its_range_is_an_error_not_a_short_body() {
        let (a, _b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let mut buf = Vec::new();
        let mut tail = Tail::default();
        tail.hold_file(file_of(b"0123456789"), 0, 20);
        let err = send_vectored(a.as_raw_fd(), &mut buf, &mut tail, 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn appending_keeps_wire_order_behind_a_partly_sent_tail() {
        let mut buf = Vec::new();
        let mut tail = tail_of(&[b"abc", b"def"]);
        tail.consume(2);
        let (mut b2, mut t2) = (b"xy".to_vec(), tail_of(&[b"z"]));
        append_pending((&mut buf, &mut tail), (&mut b2, &mut t2));
        append_target(&mut buf, &mut tail).extend_from_slice(b"!");
        let mut dst = Vec::new();
        let mut dst_tail = Tail::default();
        append_pending((&mut dst, &mut dst_tail), (&mut buf, &mut tail));
        let flat: Vec<u8> = dst
            .iter()
            .copied()
            .chain(dst_tail.segments.iter().enumerate().flat_map(|(i, s)| {
                s.bytes().unwrap()[if i == 0 { dst_tail.sent } else { 0 }..].to_vec()
            }))
            .collect();
        assert_eq!(flat, b"cdefxyz!");
    }

    #[test]
    fn error_responses_carry_a_date() {
        let mut out = Vec::new();
        push_error_response(&mut out, 400, b"Wed, 25 Nov 2026 18:00:00 GMT");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(text.contains("\r\nDate: Wed, 25 Nov 2026 18:00:00 GMT\r\n\r\nBad Request\n"));
    }
}
