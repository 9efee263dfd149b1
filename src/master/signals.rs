//! Signal delivery to the master loop: flags set by async-signal-safe
//! handlers, plus a self-pipe that wakes the loop's poll(2).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTTIN, SIGTTOU, SIGUSR1};

pub const HANDLED: [i32; 8] = [
    SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGTTIN, SIGTTOU, SIGUSR1, SIGCHLD,
];

pub struct Signals {
    flags: Vec<(i32, Arc<AtomicBool>)>,
    wake_read: OwnedFd,
    _wake_write: OwnedFd,
}

impl Signals {
    pub fn install() -> io::Result<Signals> {
        let mut fds = [0; 2];
        // SAFETY: fds is a valid 2-element array for pipe2.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 returned two fresh descriptors we now own.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let mut flags = Vec::new();
        for sig in HANDLED {
            let flag = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register(sig, flag.clone())?;
            let wake = w.try_clone()?;
            signal_hook::low_level::pipe::register(sig, wake)?;
            flags.push((sig, flag));
        }
        Ok(Signals {
            flags,
            wake_read: r,
            _wake_write: w,
        })
    }

    /// A write end of the self-pipe: a byte written there wakes `wait`
    /// (the control server uses it after queueing a request).
    pub fn waker(&self) -> io::Result<OwnedFd> {
        self._wake_write.try_clone()
    }

    /// Waits up to `timeout_ms` for a signal (or for `extra` to become
    /// readable); returns the signals that arrived.
    pub fn wait(&self, timeout_ms: i32, extra: Option<i32>) -> Vec<i32> {
        let mut pfds = [
            libc::pollfd {
                fd: self.wake_read.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: extra.unwrap_or(-1),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: pfds is valid for the call; a negative fd is ignored by poll.
        unsafe { libc::poll(pfds.as_mut_ptr(), 2, timeout_ms) };
        let mut sink = [0u8; 64];
        // SAFETY: reading into a local buffer from our non-blocking pipe.
        while unsafe {
            libc::read(
                self.wake_read.as_raw_fd(),
                sink.as_mut_ptr().cast(),
                sink.len(),
            )
        } > 0
        {}
        self.flags
            .iter()
            .filter(|(_, f)| f.swap(false, Ordering::AcqRel))
            .map(|(s, _)| *s)
            .collect()
    }
}

pub fn name(sig: i32) -> String {
    match sig {
        libc::SIGHUP => "SIGHUP".into(),
        libc::SIGINT => "SIGINT".into(),
        libc::SIGQUIT => "SIGQUIT".into(),
        libc::SIGILL => "SIGILL".into(),
        libc::SIGABRT => "SIGABRT".into(),
        libc::SIGBUS => "SIGBUS".into(),
        libc::SIGFPE => "SIGFPE".into(),
        libc::SIGKILL => "SIGKILL".into(),
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGPIPE => "SIGPIPE".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGUSR1 => "SIGUSR1".into(),
        libc::SIGUSR2 => "SIGUSR2".into(),
        other => format!("signal {other}"),
    }
}
