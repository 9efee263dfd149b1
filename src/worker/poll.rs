//! The worker's one epoll instance, shared by its threads (EPOLLONESHOT), and
//! the registry of parked connections' deadlines.
//!
//! A connection is owned by exactly one thread while it is handled; it is
//! "parked" when re-armed in epoll. Parked connections have a deadline the
//! reaper thread checks: on expiry it sets `expired` and shuts the socket's
//! read side (both sides for a connection waiting to send), which wakes the
//! connection so a worker thread can answer 408 or close it. The reaper
//! never touches a connection's state.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub const READ: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
pub const WRITE: u32 = libc::EPOLLOUT as u32;
const ONESHOT: u32 = libc::EPOLLONESHOT as u32;

pub struct Poller {
    epfd: OwnedFd,
    /// Edge-triggered mode, for a single thread: connections are registered
    /// once for both directions and never re-armed, saving an epoll_ctl per
    /// request. With several threads, one-shot registrations hand each ready
    /// connection to exactly one thread.
    edge: bool,
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

impl Poller {
    pub fn new(edge: bool) -> io::Result<Poller> {
        // SAFETY: plain syscall; the returned fd is owned by OwnedFd.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: fd was just created and is not owned elsewhere.
        Ok(Poller {
            epfd: unsafe { OwnedFd::from_raw_fd(fd) },
            edge,
        })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: ev is a valid epoll_event for the call.
        check(unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut ev) }).map(|_| ())
    }

    /// Registers a new connection, waiting to read.
    pub fn add_conn(&self, fd: RawFd, token: u64) -> io::Result<()> {
        if self.edge {
            self.ctl(
                libc::EPOLL_CTL_ADD,
                fd,
                token,
                READ | WRITE | libc::EPOLLET as u32,
            )
        } else {
            self.ctl(libc::EPOLL_CTL_ADD, fd, token, READ | ONESHOT)
        }
    }

    /// Waits for `events` on a parked connection (a no-op in edge mode,
    /// where both directions stay registered).
    pub fn rearm_conn(&self, fd: RawFd, token: u64, events: u32) -> io::Result<()> {
        if self.edge {
            Ok(())
        } else {
            self.ctl(libc::EPOLL_CTL_MOD, fd, token, events | ONESHOT)
        }
    }

    /// Registers a listener: level-triggered in edge mode (one thread), else one-shot.
    pub fn add_listener(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let events = if self.edge { READ } else { READ | ONESHOT };
        self.ctl(libc::EPOLL_CTL_ADD, fd, token, events)
    }

    /// After accepting: one-shot listeners must be re-armed.
    pub fn rearm_listener(&self, fd: RawFd, token: u64) -> io::Result<()> {
        if self.edge {
            Ok(())
        } else {
            self.ctl(libc::EPOLL_CTL_MOD, fd, token, READ | ONESHOT)
        }
    }

    /// Stops reporting a listener until [`Self::resume_listener`].
    pub fn pause_listener(&self, fd: RawFd, token: u64) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, 0)
    }

    pub fn resume_listener(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let events = if self.edge { READ } else { READ | ONESHOT };
        self.ctl(libc::EPOLL_CTL_MOD, fd, token, events)
    }

    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0)
    }

    /// Waits for events; returns how many were filled in.
    pub fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> usize {
        // SAFETY: events is a valid writable buffer of the given length.
        let n = unsafe {
            libc::epoll_wait(
                self.epfd.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                timeout_ms,
            )
        };
        n.max(0) as usize
    }
}

/// While draining, an idle keep-alive connection is closed only after it has
/// been idle this long. A client that reuses connections continuously gets
/// its next request served (with `Connection: close`) instead of racing our
/// close, which is what makes reloads lose nothing.
pub const DRAIN_IDLE_GRACE_MS: u64 = 1000;

/// What kind of wait a parked connection is in (for draining and 408s).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Wait {
    /// Held by a thread, or no deadline.
    None = 0,
    /// Keep-alive, between requests, nothing received.
    Idle = 1,
    /// Inside a request head or body.
    Request = 2,
    /// Waiting to send.
    Send = 3,
}

/// The part of a connection the reaper may see.
pub struct ConnTimer {
    pub fd: RawFd,
    /// Milliseconds since the worker's clock base; 0 = no deadline.
    deadline_ms: AtomicU64,
    /// When the connection was last parked (clock ms).
    parked_ms: AtomicU64,
    wait: std::sync::atomic::AtomicU8,
    pub expired: AtomicBool,
}

impl ConnTimer {
    pub fn park(&self, clock: &Clock, wait: Wait, timeout_ms: u64) {
        self.wait.store(wait as u8, Ordering::Relaxed);
        let now = clock.now_ms();
        self.parked_ms.store(now, Ordering::Relaxed);
        let at = now + timeout_ms.max(1);
        self.deadline_ms.store(at, Ordering::Release);
    }

    /// The owning thread took the connection back.
    pub fn hold(&self) {
        self.deadline_ms.store(0, Ordering::Relaxed);
        self.wait.store(Wait::None as u8, Ordering::Relaxed);
    }

    pub fn wait_kind(&self) -> u8 {
        self.wait.load(Ordering::Relaxed)
    }
}

/// Monotonic milliseconds since the worker started.
pub struct Clock {
    base: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            base: Instant::now(),
        }
    }
    pub fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64 + 1
    }
}

/// Timers by slot, and the free slots.
type Slots = (Vec<Option<Arc<ConnTimer>>>, Vec<usize>);

/// All open connections' timers, by slot.
pub struct Registry {
    slots: Mutex<Slots>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry {
            slots: Mutex::new((Vec::new(), Vec::new())),
        }
    }

    pub fn insert(&self, fd: RawFd) -> (usize, Arc<ConnTimer>) {
        let timer = Arc::new(ConnTimer {
            fd,
            deadline_ms: AtomicU64::new(0),
            parked_ms: AtomicU64::new(0),
            wait: std::sync::atomic::AtomicU8::new(0),
            expired: AtomicBool::new(false),
        });
        let mut guard = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let (slots, free) = &mut *guard;
        let slot = match free.pop() {
            Some(s) => {
                slots[s] = Some(timer.clone());
                s
            }
            None => {
                slots.push(Some(timer.clone()));
                slots.len() - 1
            }
        };
        (slot, timer)
    }

    /// Must be called before the connection's fd is closed.
    pub fn remove(&self, slot: usize) {
        let mut guard = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let (slots, free) = &mut *guard;
        slots[slot] = None;
        free.push(slot);
    }

    /// Wakes connections whose deadline passed, and (when `drain_idle`)
    /// keep-alive connections idle for [`DRAIN_IDLE_GRACE_MS`], so they
    /// close. Returns the open count.
    pub fn reap(&self, now_ms: u64, drain_idle: bool) -> usize {
        let guard = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let mut open = 0;
        for timer in guard.0.iter().flatten() {
            open += 1;
            let deadline = timer.deadline_ms.load(Ordering::Acquire);
            if deadline == 0 {
                continue;
            }
            let idle = timer.wait_kind() == Wait::Idle as u8
                && now_ms.saturating_sub(timer.parked_ms.load(Ordering::Relaxed))
                    >= DRAIN_IDLE_GRACE_MS;
            if deadline <= now_ms || (drain_idle && idle) {
                timer.expired.store(true, Ordering::Release);
                timer.deadline_ms.store(0, Ordering::Relaxed);
                // A connection waiting to send is registered for EPOLLOUT
                // only, which shutting the read side does not report;
                // shutting the write side too (it is closing anyway) makes
                // the socket writable, so it wakes and sees the expiry.
                let how = if timer.wait_kind() == Wait::Send as u8 {
                    libc::SHUT_RDWR
                } else {
                    libc::SHUT_RD
                };
                // SAFETY: the fd stays open while the timer is registered
                // (remove() happens before close, under this same lock).
                unsafe { libc::shutdown(timer.fd, how) };
            }
        }
        open
    }
}
