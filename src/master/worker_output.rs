//! Workers' stdout and stderr, relayed into the log (`log-master`, on by
//! default): print(), tracebacks, Python warnings, C-level writes.
//!
//! Each worker gets one pipe for both fd 1 and fd 2 (so its stdout and
//! stderr keep their relative order). One relay thread in the master polls
//! every worker's pipe, cuts the bytes into lines and writes each batch of
//! complete lines, every line prefixed with `[worker ID|pid PID] `, to the
//! master's log destination (stderr or `logto`, so rotation and the SIGUSR1
//! reopen apply) with one write(2) (see [`crate::logging::write_log_lines`]).
//! So lines of different workers are never spliced mid-line.
//!
//! A partial line is held until its newline; until it reaches
//! [`MAX_LINE`] bytes, when that much is written ending in
//! [`CUT_MARKER`] and the rest follows on the next line; or until the pipe
//! closes (the worker exited, even mid-line), when the remainder is written
//! with a newline added.
//!
//! Within one worker, the pipe keeps a write(2) of up to `PIPE_BUF` (4 KiB)
//! bytes whole; threads of the same worker writing longer pieces at once
//! may interleave, as they would on any shared fd.
//!
//! The access log does not come through here: a worker writes it straight
//! to a duplicate of the master's log fd (see [`crate::logging`]), so the
//! request path pays nothing for this relay.
//!
//! The master loop never waits on the relay: registering a pipe is a
//! channel send and an eventfd write. At shutdown, [`drain`] gives the
//! relay a bounded time to write what the last workers left.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::programs::logs::{LineSplitter, MAX_LINE};

/// Ends a line cut at [`MAX_LINE`]; the rest of it follows on the next line.
pub const CUT_MARKER: &[u8] = b" [line continues]";

/// One worker's pipe as the relay sees it.
struct Stream {
    pipe: File,
    prefix: Vec<u8>,
    lines: LineSplitter,
}

/// The handle the master's spawn code talks to.
struct Relay {
    streams: Mutex<Sender<Stream>>,
    /// Wakes the relay thread's poll when a stream is sent.
    wake: OwnedFd,
    /// Streams registered and not yet at end of file.
    open: Arc<(Mutex<usize>, Condvar)>,
}

static RELAY: OnceLock<Option<Relay>> = OnceLock::new();

fn relay() -> Option<&'static Relay> {
    RELAY
        .get_or_init(|| match start() {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!(
                    "cannot start the worker output relay: {e}; workers write to the log directly"
                );
                None
            }
        })
        .as_ref()
}

fn start() -> io::Result<Relay> {
    // SAFETY: eventfd with flags only; the fd is owned below.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd, ours alone.
    let wake = unsafe { OwnedFd::from_raw_fd(fd) };
    let thread_wake = wake.try_clone()?;
    let (tx, rx) = channel();
    let open = Arc::new((Mutex::new(0usize), Condvar::new()));
    let thread_open = open.clone();
    std::thread::Builder::new()
        .name("capataz-worker-output".into())
        .spawn(move || run(rx, thread_wake, thread_open))?;
    Ok(Relay {
        streams: Mutex::new(tx),
        wake,
        open,
    })
}

/// A close-on-exec pipe for a worker's fds 1 and 2: (read end, write end).
/// None when output is not relayed (the relay could not start).
pub fn pipe() -> io::Result<Option<(OwnedFd, OwnedFd)>> {
    if relay().is_none() {
        return Ok(None);
    }
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills the two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds are fresh and ours.
    Ok(Some(unsafe {
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    }))
}

/// The prefix of worker `id`'s lines.
pub fn prefix(id: usize, pid: i32) -> Vec<u8> {
    format!("[worker {id}|pid {pid}] ").into_bytes()
}

/// Starts relaying worker `id`'s output from `read` (the read end of its
/// [`pipe`]); the master must have closed its copy of the write end.
pub fn watch(read: OwnedFd, id: usize, pid: i32) {
    let Some(relay) = relay() else { return };
    let stream = Stream {
        pipe: File::from(read),
        prefix: prefix(id, pid),
        lines: LineSplitter::with_cut_marker(CUT_MARKER),
    };
    *relay.open.0.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    let sent = relay
        .streams
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send(stream);
    if sent.is_err() {
        *relay.open.0.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        return;
    }
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a u64 to our eventfd (non-blocking).
    unsafe { libc::write(relay.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
}

/// Waits up to `timeout` until every relayed pipe has reached end of file
/// and been written out (before the master exits).
pub fn drain(timeout: Duration) {
    let Some(relay) = RELAY.get().and_then(|r| r.as_ref()) else {
        return;
    };
    let (count, changed) = &*relay.open;
    let deadline = Instant::now() + timeout;
    let mut open = count.lock().unwrap_or_else(|p| p.into_inner());
    while *open > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        open = changed
            .wait_timeout(open, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

/// Reads `stream` once; appends its complete lines, prefixed, to `batch`.
/// Returns false at end of file (the remainder is in `batch` then).
fn pump(stream: &mut Stream, buf: &mut [u8], batch: &mut Vec<u8>) -> bool {
    let Stream {
        pipe,
        prefix,
        lines,
    } = stream;
    let mut emit = |line: &[u8]| {
        batch.extend_from_slice(prefix);
        batch.extend_from_slice(line);
    };
    match pipe.read(buf) {
        Ok(0) => {
            lines.finish(&mut emit);
            false
        }
        Ok(n) => {
            lines.push(&buf[..n], &mut emit);
            true
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
            ) =>
        {
            true
        }
        Err(_) => {
            lines.finish(&mut emit);
            false
        }
    }
}

/// The relay thread: poll the wake fd and every stream, forever.
fn run(incoming: Receiver<Stream>, wake: OwnedFd, open: Arc<(Mutex<usize>, Condvar)>) {
    let mut streams: HashMap<RawFd, Stream> = HashMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut batch = Vec::with_capacity(2 * MAX_LINE);
    let mut fds: Vec<libc::pollfd> = Vec::new();
    loop {
        fds.clear();
        fds.push(libc::pollfd {
            fd: wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        fds.extend(streams.keys().map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        }));
        // SAFETY: fds is a valid array of fds.len() pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                std::thread::sleep(Duration::from_millis(10));
            }
            continue;
        }
        if fds[0].revents != 0 {
            let mut count = 0u64;
            // SAFETY: reads the 8-byte counter of our non-blocking eventfd.
            unsafe { libc::read(wake.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
            for s in incoming.try_iter() {
                streams.insert(s.pipe.as_raw_fd(), s);
            }
        }
        let mut closed = 0;
        for p in &fds[1..] {
            if p.revents == 0 {
                continue;
            }
            let Some(stream) = streams.get_mut(&p.fd) else {
                continue;
            };
            batch.clear();
            let alive = pump(stream, &mut buf, &mut batch);
            if !batch.is_empty() {
                // A failed log write has nowhere to be reported but the log.
                let _ = crate::logging::write_log_lines(&batch);
            }
            if !alive {
                streams.remove(&p.fd);
                closed += 1;
            }
        }
        if closed > 0 {
            let (count, changed) = &*open;
            let mut count = count.lock().unwrap_or_else(|p| p.into_inner());
            *count = count.saturating_sub(closed);
            changed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relayed(chunks: &[&[u8]]) -> Vec<u8> {
        let (r, w) = {
            let mut fds = [0; 2];
            // SAFETY: test pipe.
            assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
            // SAFETY: fresh fds.
            unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
        };
        let mut stream = Stream {
            pipe: r,
            prefix: prefix(2, 77),
            lines: LineSplitter::with_cut_marker(CUT_MARKER),
        };
        let mut w = Some(w);
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        for c in chunks {
            io::Write::write_all(w.as_mut().unwrap(), c).unwrap();
            assert!(pump(&mut stream, &mut buf, &mut out));
        }
        drop(w.take());
        while pump(&mut stream, &mut buf, &mut out) {}
        out
    }

    #[test]
    fn lines_are_prefixed_and_partial_lines_held() {
        let out = relayed(&[b"one\ntw", b"o\nthr", b"ee"]);
        assert_eq!(
            out,
            b"[worker 2|pid 77] one\n[worker 2|pid 77] two\n[worker 2|pid 77] three\n"
        );
    }

    #[test]
    fn long_lines_are_cut_with_a_marker() {
        let mut long = vec![b'x'; MAX_LINE + 5];
        long.push(b'\n');
        let out = relayed(&[&long[..MAX_LINE / 2], &long[MAX_LINE / 2..]]);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            2,
            "{:?}",
            lines.iter().map(|l| l.len()).collect::<Vec<_>>()
        );
        assert!(lines[0].ends_with(" [line continues]"));
        assert_eq!(lines[1], "[worker 2|pid 77] xxxxx");
    }
}
