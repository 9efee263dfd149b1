//! Coalescing the chunks of a streamed response (a generator or `write()`).
//!
//! Sending every chunk with its own `send(2)` costs a trip through the TCP
//! stack per chunk: a generator of 100 small chunks pays for 100 segments.
//! PEP 3333 forbids a server to *delay* a block, but allows the other way
//! out: "guarantee that they will continue transmission even while the
//! application is producing its next block". So:
//!
//! - The first chunk of a response, and any chunk that comes after a quiet
//!   spell of at least the flush delay, is sent at once (a slow generator,
//!   server-sent events: every chunk leaves as it is produced).
//! - A chunk that follows another within the delay joins a pending batch
//!   owned by this app thread's [`Slot`].
//! - The batch leaves when the response ends (in one write with the last
//!   chunk), when it passes the flush threshold, or at the latest one delay
//!   after it began: a per-worker timer thread sends it then, while the app
//!   is still busy producing (or blocked in) its next chunk. The timer thread
//!   only ever sends without blocking; what the socket does not take stays
//!   pending. The app thread waits for the socket (GIL released) only
//!   before producing more while [`FLUSH_THRESHOLD`] bytes are pending; what
//!   is pending when the response ends goes to the event loop.
//! - A chunk the socket does not take whole at once (a large one, held
//!   uncopied, see [`super::output::Tail`]) becomes the pending batch, so
//!   the timer thread goes on sending it while the app produces the next.
//!
//! The delay is `stream-flush-us` (default 1000 µs); 0 sends every chunk at
//! once. Ownership of the socket is simple: the timer thread touches a
//! slot's descriptor only while the slot holds pending bytes, and the app
//! thread takes the pending bytes back ([`reclaim`]) before its response
//! ends, so the descriptor is always open while the timer can see it.

use std::cell::RefCell;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::output::{append_pending, send_vectored, Output, SendError, Tail, FLUSH_THRESHOLD};

/// `stream-flush-us`: the longest a streamed chunk waits for company.
static DELAY_US: AtomicU64 = AtomicU64::new(1000);

pub fn set_delay(us: u64) {
    DELAY_US.store(us, Ordering::Relaxed);
}

fn delay() -> Duration {
    Duration::from_micros(DELAY_US.load(Ordering::Relaxed))
}

#[derive(Default)]
struct SlotState {
    /// Bytes produced but not yet sent, oldest first: `buf`, then `tail`
    /// (large pieces sent from the app's objects, see [`Tail`]).
    buf: Vec<u8>,
    tail: Tail,
    fd: RawFd,
    /// When the timer thread must send `buf` (set while `buf` is non-empty).
    due: Option<Instant>,
    /// The timer thread is sending bytes it took from `buf`.
    busy: bool,
    /// The timer thread's send failed: the client is gone.
    failed: bool,
    /// The last chunk sent at once by the app thread.
    last_direct: Option<Instant>,
}

impl SlotState {
    fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.tail.is_empty()
    }

    fn pending_len(&self) -> usize {
        self.buf.len() + self.tail.len()
    }
}

/// One app thread's pending stream bytes.
struct Slot {
    state: Mutex<SlotState>,
    idle: Condvar,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct TimerState {
    slots: Vec<Arc<Slot>>,
    /// When the timer thread wakes next; `None` while it waits for a kick.
    wake_at: Option<Instant>,
    kicked: bool,
}

struct Timer {
    state: Mutex<TimerState>,
    wake: Condvar,
}

impl Timer {
    fn lock(&self) -> MutexGuard<'_, TimerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes sure the timer thread wakes by `due`.
    fn arm(&self, due: Instant) {
        let mut st = self.lock();
        if st.wake_at.is_none_or(|w| w > due) {
            st.kicked = true;
            self.wake.notify_one();
        }
    }

    fn run(&self) {
        let mut st = self.lock();
        loop {
            loop {
                if st.kicked {
                    st.kicked = false;
                    break;
                }
                match st.wake_at {
                    None => st = self.wake.wait(st).unwrap_or_else(|e| e.into_inner()),
                    Some(at) => {
                        let now = Instant::now();
                        if now >= at {
                            break;
                        }
                        st = self
                            .wake
                            .wait_timeout(st, at - now)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                }
            }
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            for slot in &st.slots {
                if let Some(due) = send_due(slot, now) {
                    next = Some(next.map_or(due, |n| n.min(due)));
                }
            }
            st.wake_at = next;
        }
    }
}

/// Sends a slot's pending bytes if they are due, without blocking. Returns
/// when the slot wants the timer next.
fn send_due(slot: &Slot, now: Instant) -> Option<Instant> {
    let mut g = slot.lock();
    match g.due {
        Some(due) if due <= now && !g.busy => {}
        other => return other,
    }
    let mut batch = std::mem::take(&mut g.buf);
    let mut batch_tail = std::mem::take(&mut g.tail);
    let fd = g.fd;
    g.busy = true;
    drop(g);
    let result = send_vectored(fd, &mut batch, &mut batch_tail, 0);
    let mut g = slot.lock();
    g.busy = false;
    match result {
        Ok(false) => {
            // The socket is full: keep the rest in front of anything newer.
            let (mut newer, mut newer_tail) =
                (std::mem::take(&mut g.buf), std::mem::take(&mut g.tail));
            append_pending((&mut batch, &mut batch_tail), (&mut newer, &mut newer_tail));
            g.buf = batch;
            g.tail = batch_tail;
            g.due = Some(now + delay());
        }
        Ok(true) => {
            if g.is_empty() {
                batch.clear();
                g.buf = batch; // keep the allocation
                g.due = None;
            } else {
                g.due = Some(now + delay());
            }
        }
        Err(_) => {
            g.failed = true;
            g.buf.clear();
            g.tail.clear();
            g.due = None;
        }
    }
    let due = g.due;
    drop(g);
    slot.idle.notify_all();
    due
}

static TIMER: OnceLock<Arc<Timer>> = OnceLock::new();

fn timer() -> &'static Arc<Timer> {
    TIMER.get_or_init(|| {
        let timer = Arc::new(Timer {
            state: Mutex::new(TimerState {
                slots: Vec::new(),
                wake_at: None,
                kicked: false,
            }),
            wake: Condvar::new(),
        });
        let t = Arc::clone(&timer);
        std::thread::Builder::new()
            .name("stream-flush".into())
            .stack_size(64 * 1024)
            .spawn(move || t.run())
            .expect("spawning the stream flush thread");
        timer
    })
}

thread_local! {
    static SLOT: RefCell<Option<Arc<Slot>>> = const { RefCell::new(None) };
}

fn my_slot() -> Arc<Slot> {
    SLOT.with(|s| {
        s.borrow_mut()
            .get_or_insert_with(|| {
                let slot = Arc::new(Slot {
                    state: Mutex::new(SlotState::default()),
                    idle: Condvar::new(),
                });
                timer().lock().slots.push(Arc::clone(&slot));
                slot
            })
            .clone()
    })
}

/// What [`push`] did with the bytes in `out.buf`.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Sent, or what the socket did not take is left in `out` (the
    /// pending batch was busy).
    Now,
    /// Moved to this thread's pending batch.
    Deferred,
    /// The pending batch passed the flush threshold: the caller must
    /// [`reclaim`] and flush without the GIL.
    FlushNeeded,
}

/// Hands a streamed chunk (already framed in `out.buf`) to the wire or to
/// the pending batch. `first`: the response's first chunk, which never waits.
/// Also returns the bytes the batch holds afterwards: only this thread adds
/// to its batch, so until its next push that is an upper bound, and the
/// caller need not lock the slot to bound what is pending.
pub fn push(out: &mut Output, first: bool) -> Result<(Pushed, usize), SendError> {
    let delay = delay();
    if delay.is_zero() {
        out.write_nonblocking()?;
        return Ok((Pushed::Now, 0));
    }
    let slot = my_slot();
    let now = Instant::now();
    let mut g = slot.lock();
    if g.failed {
        return Err(gone());
    }
    if g.is_empty() && !g.busy {
        let quiet = g.last_direct.is_none_or(|t| now - t >= delay);
        if first || quiet {
            g.last_direct = Some(now);
            drop(g);
            out.write_nonblocking()?;
            if out.tail.is_empty() {
                return Ok((Pushed::Now, 0));
            }
            // A large piece the socket did not take whole: the timer thread
            // goes on sending it while the app produces its next block
            // (PEP 3333's "continue transmission").
            g = slot.lock();
            if g.failed || !g.is_empty() || g.busy {
                return Ok((Pushed::Now, g.pending_len()));
            }
        }
        std::mem::swap(&mut g.buf, &mut out.buf);
        std::mem::swap(&mut g.tail, &mut out.tail);
        g.fd = out.fd;
        let due = now + delay;
        g.due = Some(due);
        let batched = g.pending_len();
        drop(g);
        timer().arm(due);
        return Ok((Pushed::Deferred, batched));
    }
    // A batch is pending (or being sent by the timer thread): join it.
    let SlotState { buf, tail, .. } = &mut *g;
    append_pending((buf, tail), (&mut out.buf, &mut out.tail));
    if g.due.is_none() {
        // The timer thread is mid-send and will re-arm on return.
        g.due = Some(now + delay);
    }
    let batched = g.pending_len();
    Ok(if batched >= FLUSH_THRESHOLD {
        (Pushed::FlushNeeded, batched)
    } else {
        (Pushed::Deferred, batched)
    })
}

/// Takes this thread's pending bytes back into the front of `out.buf`, so
/// the app thread sends them itself, in order. Called before any blocking
/// flush and before a response ends. Waits (briefly: the timer thread never
/// blocks) while the timer thread is sending.
pub fn reclaim(out: &mut Output) -> Result<(), SendError> {
    let Some(slot) = SLOT.with(|s| s.borrow().clone()) else {
        return Ok(());
    };
    let mut g = slot.lock();
    while g.busy {
        g = slot.idle.wait(g).unwrap_or_else(|e| e.into_inner());
    }
    g.due = None;
    if std::mem::take(&mut g.failed) {
        g.buf.clear();
        g.tail.clear();
        return Err(gone());
    }
    if !g.is_empty() {
        let SlotState { buf, tail, .. } = &mut *g;
        append_pending((buf, tail), (&mut out.buf, &mut out.tail));
        std::mem::swap(buf, &mut out.buf);
        std::mem::swap(tail, &mut out.tail);
        buf.clear();
    }
    Ok(())
}

fn gone() -> SendError {
    SendError::Closed(io::Error::from(io::ErrorKind::BrokenPipe))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn pair() -> (Output, UnixStream, UnixStream) {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        (Output::new(a.as_raw_fd(), Duration::from_secs(5)), a, b)
    }

    fn readable(s: &mut UnixStream, wait: Duration) -> Vec<u8> {
        s.set_read_timeout(Some(wait)).unwrap();
        let mut buf = vec![0; 65536];
        match s.read(&mut buf) {
            Ok(n) => buf[..n].to_vec(),
            Err(_) => Vec::new(),
        }
    }

    #[test]
    fn first_chunk_goes_at_once_then_quick_ones_batch_and_come_back_in_order() {
        let (mut out, _a, mut peer) = pair();
        out.buf.extend_from_slice(b"one");
        assert_eq!(push(&mut out, true).unwrap().0, Pushed::Now);
        assert_eq!(readable(&mut peer, Duration::from_millis(100)), b"one");
        out.buf.extend_from_slice(b"two");
        assert_eq!(push(&mut out, false).unwrap().0, Pushed::Deferred);
        out.buf.extend_from_slice(b"three");
        assert_eq!(push(&mut out, false).unwrap().0, Pushed::Deferred);
        assert!(out.buf.is_empty());
        out.buf.extend_from_slice(b"|last");
        reclaim(&mut out).unwrap();
        // Unless the timer thread sent the batch first, it is back in front.
        let got = [
            readable(&mut peer, Duration::from_millis(1)),
            out.buf.clone(),
        ]
        .concat();
        assert_eq!(got, b"twothree|last");
    }

    #[test]
    fn the_timer_sends_a_batch_the_app_leaves_pending() {
        let (mut out, _a, mut peer) = pair();
        out.buf.extend_from_slice(b"head");
        push(&mut out, true).unwrap();
        out.buf.extend_from_slice(b"-pending");
        assert_eq!(push(&mut out, false).unwrap().0, Pushed::Deferred);
        let mut got = Vec::new();
        let start = Instant::now();
        while got.len() < b"head-pending".len() && start.elapsed() < Duration::from_secs(2) {
            got.extend(readable(&mut peer, Duration::from_millis(50)));
        }
        assert_eq!(got, b"head-pending");
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "{:?}",
            start.elapsed()
        );
        reclaim(&mut out).unwrap();
        assert!(out.buf.is_empty());
    }

    #[test]
    fn a_closed_peer_is_reported() {
        let (mut out, _a, peer) = pair();
        out.buf.extend_from_slice(b"x");
        push(&mut out, true).unwrap();
        out.buf.extend_from_slice(b"y");
        push(&mut out, false).unwrap();
        drop(peer);
        std::thread::sleep(Duration::from_millis(50));
        // Either the timer thread hit the closed socket, or the batch is
        // still here and the app's own send will.
        match reclaim(&mut out) {
            Err(_) => {}
            Ok(()) => assert!(out.write_nonblocking().is_err() || out.buf.is_empty()),
        }
    }
}
