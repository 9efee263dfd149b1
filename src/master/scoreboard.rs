//! The scoreboard: a shared-memory table with one slot per worker process,
//! created by the master (a memfd) and mapped by every worker.
//!
//! Workers write their own slot with plain atomic stores, no locks, on the
//! request path; the master (watchdogs, scaling) and the stats readers only
//! read. A core's current request is published with a sequence counter
//! (odd while it is being written), so a reader that races a writer sees a
//! changed counter and retries instead of reading a torn method or path.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Bytes of "METHOD PATH" kept per core.
pub const REQUEST_TEXT: usize = 128;
const TEXT_WORDS: usize = REQUEST_TEXT / 8;

/// Worker states, as stored in [`WorkerSlot::state`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum WorkerState {
    Empty = 0,
    Booting = 1,
    Accepting = 2,
    /// Finishing its requests before exiting (TERM or reload).
    Draining = 3,
    /// Asked to be replaced (max-requests, reload-on-rss): the master starts
    /// a successor, the worker drains and exits.
    Recycling = 4,
}

impl WorkerState {
    fn from_u32(v: u32) -> WorkerState {
        match v {
            1 => WorkerState::Booting,
            2 => WorkerState::Accepting,
            3 => WorkerState::Draining,
            4 => WorkerState::Recycling,
            _ => WorkerState::Empty,
        }
    }
}

/// Upper bounds (µs) of the request-duration histogram buckets; a last,
/// implicit bucket counts everything slower (+Inf).
pub const DURATION_BUCKETS_US: [u64; 11] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 10_000_000,
];

#[repr(C)]
pub struct WorkerSlot {
    pub pid: AtomicU32,
    state: AtomicU32,
    pub requests: AtomicU64,
    pub exceptions: AtomicU64,
    /// Why the worker asked to be recycled (a short ASCII word), 0 if none.
    pub recycle_reason: AtomicU64,
    pub rss_bytes: AtomicU64,
    pub vsz_bytes: AtomicU64,
    /// Response bytes sent.
    pub tx: AtomicU64,
    /// Sum of request durations, µs.
    pub busy_us: AtomicU64,
    /// Responses by status class: 1xx..5xx (index 0..4).
    pub status_classes: [AtomicU64; 5],
    /// Request durations, cumulative per [`DURATION_BUCKETS_US`] (+Inf last).
    pub duration_buckets: [AtomicU64; 12],
    /// Unix seconds when the master spawned this worker.
    pub spawned_s: AtomicU64,
}

#[repr(C)]
pub struct CoreSlot {
    /// Requests this core has run.
    pub requests: AtomicU64,
    /// Unix time in ms when the current request reached the app; 0 = idle.
    pub started_ms: AtomicU64,
    /// Odd while `text` is being rewritten.
    seq: AtomicU64,
    /// The thread's pthread id, as faulthandler prints it ("Thread 0x...").
    pub thread_id: AtomicU64,
    text_len: AtomicU64,
    text: [AtomicU64; TEXT_WORDS],
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl CoreSlot {
    /// Publishes the request this core starts running.
    pub fn begin(&self, method: &[u8], path: &[u8]) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Release);
        let mut buf = [0u8; REQUEST_TEXT];
        let mut n = 0;
        for part in [method, b" ", path] {
            let take = part.len().min(REQUEST_TEXT - n);
            buf[n..n + take].copy_from_slice(&part[..take]);
            n += take;
        }
        for (i, word) in self.text.iter().enumerate().take(n.div_ceil(8)) {
            let mut w = [0u8; 8];
            w.copy_from_slice(&buf[i * 8..i * 8 + 8]);
            word.store(u64::from_ne_bytes(w), Ordering::Relaxed);
        }
        self.text_len.store(n as u64, Ordering::Relaxed);
        self.started_ms.store(now_ms(), Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }

    pub fn end(&self) {
        self.started_ms.store(0, Ordering::Release);
    }

    /// Counts one finished request on this core (stats `cores[].requests`).
    /// Only the core's own thread writes the counter (the master zeroes it
    /// before the worker exists), so a plain load and store suffice: no
    /// locked read-modify-write on the request path, on a line `begin` and
    /// `end` write anyway.
    #[inline]
    pub fn count_request(&self) {
        let n = self.requests.load(Ordering::Relaxed);
        self.requests.store(n.wrapping_add(1), Ordering::Relaxed);
    }

    /// (started_ms, "METHOD PATH") of the current request, if any.
    pub fn current(&self) -> Option<(u64, String)> {
        for _ in 0..8 {
            let before = self.seq.load(Ordering::Acquire);
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let started = self.started_ms.load(Ordering::Acquire);
            let len = (self.text_len.load(Ordering::Relaxed) as usize).min(REQUEST_TEXT);
            let mut buf = [0u8; REQUEST_TEXT];
            for (i, word) in self.text.iter().enumerate().take(len.div_ceil(8)) {
                buf[i * 8..i * 8 + 8].copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
            }
            std::sync::atomic::fence(Ordering::Acquire);
            if self.seq.load(Ordering::Relaxed) == before {
                if started == 0 {
                    return None;
                }
                return Some((started, String::from_utf8_lossy(&buf[..len]).into_owned()));
            }
        }
        None
    }
}

/// The mapped table. Slot `i` is followed by its `threads` core slots.
pub struct Scoreboard {
    base: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
    slots: usize,
    threads: usize,
}

// SAFETY: all shared data is accessed through atomics; the mapping lives as
// long as the Scoreboard.
unsafe impl Send for Scoreboard {}
// SAFETY: as above.
unsafe impl Sync for Scoreboard {}

/// Bytes before the first slot: the table-wide counters.
const HEADER: usize = 64;

fn slot_bytes(threads: usize) -> usize {
    std::mem::size_of::<WorkerSlot>() + threads * std::mem::size_of::<CoreSlot>()
}

impl Scoreboard {
    /// Creates a zeroed table for `slots` workers of `threads` cores (master).
    pub fn create(slots: usize, threads: usize) -> io::Result<Scoreboard> {
        // SAFETY: memfd_create with a static name.
        let fd = unsafe { libc::memfd_create(c"capataz-scoreboard".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh descriptor, owned from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let len = HEADER + slots * slot_bytes(threads);
        // SAFETY: ftruncate on our memfd; new bytes read as zero.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Self::map(fd, slots, threads)
    }

    /// Maps a table inherited from the master (worker).
    pub fn open(fd: RawFd, slots: usize, threads: usize) -> io::Result<Scoreboard> {
        // SAFETY: the master passed us this descriptor to own.
        Self::map(unsafe { OwnedFd::from_raw_fd(fd) }, slots, threads)
    }

    fn map(fd: OwnedFd, slots: usize, threads: usize) -> io::Result<Scoreboard> {
        let len = HEADER + slots * slot_bytes(threads);
        // SAFETY: a shared read-write mapping of the whole memfd; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Scoreboard {
            base: NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?,
            len,
            fd,
            slots,
            threads,
        })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    pub fn worker(&self, slot: usize) -> &WorkerSlot {
        assert!(slot < self.slots, "scoreboard slot out of range");
        // SAFETY: in bounds (asserted); the memory is zero-initialised, which
        // is a valid value for every atomic field; alignment holds because
        // slot sizes are multiples of 8 and mmap is page-aligned.
        unsafe {
            &*(self
                .base
                .as_ptr()
                .add(HEADER + slot * slot_bytes(self.threads)) as *const WorkerSlot)
        }
    }

    pub fn core(&self, slot: usize, core: usize) -> &CoreSlot {
        assert!(
            slot < self.slots && core < self.threads,
            "scoreboard core out of range"
        );
        let offset = HEADER
            + slot * slot_bytes(self.threads)
            + std::mem::size_of::<WorkerSlot>()
            + core * std::mem::size_of::<CoreSlot>();
        // SAFETY: as in worker().
        unsafe { &*(self.base.as_ptr().add(offset) as *const CoreSlot) }
    }

    /// Requests served by all workers since the master started.
    pub fn total_requests(&self) -> &AtomicU64 {
        // SAFETY: the header's first 8 bytes, zero-initialised, 8-aligned.
        unsafe { &*(self.base.as_ptr() as *const AtomicU64) }
    }

    /// Clears a slot for a new worker (master, before spawning it).
    pub fn reset(&self, slot: usize, pid: u32) {
        let w = self.worker(slot);
        w.pid.store(pid, Ordering::Relaxed);
        w.requests.store(0, Ordering::Relaxed);
        w.exceptions.store(0, Ordering::Relaxed);
        w.recycle_reason.store(0, Ordering::Relaxed);
        w.rss_bytes.store(0, Ordering::Relaxed);
        w.vsz_bytes.store(0, Ordering::Relaxed);
        w.tx.store(0, Ordering::Relaxed);
        w.busy_us.store(0, Ordering::Relaxed);
        for c in w.status_classes.iter().chain(w.duration_buckets.iter()) {
            c.store(0, Ordering::Relaxed);
        }
        w.spawned_s.store(now_ms() / 1000, Ordering::Relaxed);
        for c in 0..self.threads {
            self.core(slot, c).started_ms.store(0, Ordering::Relaxed);
            self.core(slot, c).requests.store(0, Ordering::Relaxed);
        }
        w.state
            .store(WorkerState::Booting as u32, Ordering::Release);
    }
}

impl WorkerSlot {
    pub fn state(&self) -> WorkerState {
        WorkerState::from_u32(self.state.load(Ordering::Acquire))
    }
    pub fn set_state(&self, s: WorkerState) {
        self.state.store(s as u32, Ordering::Release);
    }
    /// Asks the master for a successor; `reason` is a short word for the log.
    pub fn request_recycle(&self, reason: &str) {
        let mut w = [0u8; 8];
        let n = reason.len().min(8);
        w[..n].copy_from_slice(&reason.as_bytes()[..n]);
        self.recycle_reason
            .store(u64::from_ne_bytes(w), Ordering::Relaxed);
        self.set_state(WorkerState::Recycling);
    }
    /// Accounts one finished request (worker side, lock-free).
    pub fn record(&self, status: u16, bytes: u64, micros: u64) {
        let r = Ordering::Relaxed;
        self.tx.fetch_add(bytes, r);
        self.busy_us.fetch_add(micros, r);
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.status_classes[class].fetch_add(1, r);
        let bucket = DURATION_BUCKETS_US
            .iter()
            .position(|&b| micros <= b)
            .unwrap_or(DURATION_BUCKETS_US.len());
        self.duration_buckets[bucket].fetch_add(1, r);
    }

    pub fn recycle_reason(&self) -> String {
        let w = self.recycle_reason.load(Ordering::Relaxed).to_ne_bytes();
        String::from_utf8_lossy(&w)
            .trim_end_matches('\0')
            .to_string()
    }
}

impl Drop for Scoreboard {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what map() mapped.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_shared_and_requests_round_trip() {
        let sb = Scoreboard::create(4, 2).unwrap();
        sb.reset(1, 42);
        assert_eq!(sb.worker(1).pid.load(Ordering::Relaxed), 42);
        assert_eq!(sb.worker(1).state(), WorkerState::Booting);
        let core = sb.core(1, 1);
        assert!(core.current().is_none());
        core.begin(b"GET", b"/sleep?s=30");
        let (started, text) = core.current().unwrap();
        assert!(started > 0);
        assert_eq!(text, "GET /sleep?s=30");
        core.end();
        assert!(core.current().is_none());
        // A second mapping of the same memfd sees the same bytes.
        // SAFETY (test): dup gives the second mapping its own descriptor.
        let dup = unsafe { libc::dup(sb.fd()) };
        let other = Scoreboard::open(dup, 4, 2).unwrap();
        other.worker(1).request_recycle("rss");
        assert_eq!(sb.worker(1).state(), WorkerState::Recycling);
        assert_eq!(sb.worker(1).recycle_reason(), "rss");
    }

    #[test]
    fn long_paths_are_truncated() {
        let sb = Scoreboard::create(1, 1).unwrap();
        let path = vec![b'a'; 500];
        sb.core(0, 0).begin(b"POST", &path);
        let (_, text) = sb.core(0, 0).current().unwrap();
        assert_eq!(text.len(), REQUEST_TEXT);
        assert!(text.starts_with("POST aaa"));
    }
}
