//! fork+exec of a worker: our own binary in the worker role (DESIGN §1).
//!
//! The child gets the boot message (config and listener facts, JSON in a
//! memfd) at fd 3, the scoreboard at fd 4 and the listeners at fds 5.., and
//! dies with the master (PR_SET_PDEATHSIG).
//!
//! With `log-master` (the default), its fds 1 and 2 are a pipe to the
//! master's [`super::worker_output`] relay, and the master's log destination
//! (its fd 2) follows the listeners, for the worker's access log and server
//! log (`BootMessage::log_fd`).

use std::io::{self, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::config::Config;
use crate::worker::{BootMessage, ListenerMeta, BOOT_FD, FIRST_LISTENER_FD, SCOREBOARD_FD};

/// Where a worker finds its scoreboard slot.
#[derive(Clone, Copy)]
pub struct ScoreboardRef {
    pub fd: RawFd,
    pub slots: usize,
    pub slot: usize,
}

/// Lowest descriptor used while shuffling fds in the child, above any target.
const SHUFFLE_BASE: RawFd = 512;

fn boot_memfd(msg: &BootMessage) -> io::Result<OwnedFd> {
    // SAFETY: memfd_create with a static name; the fd is owned below.
    let fd = unsafe { libc::memfd_create(c"capataz-boot".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is fresh and ours.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    let json = serde_json::to_vec(msg).map_err(io::Error::other)?;
    file.write_all(&json)?;
    file.rewind()?;
    Ok(file.into())
}

/// Starts worker `worker_id`; returns its pid.
pub fn spawn_worker(
    config: &Config,
    worker_id: usize,
    scoreboard: ScoreboardRef,
    listeners: &[(RawFd, ListenerMeta)],
) -> io::Result<i32> {
    // SAFETY: F_GETFD only asks whether fd 2 is open.
    let have_log_fd = unsafe { libc::fcntl(2, libc::F_GETFD) } >= 0;
    let output = if config.log_master && have_log_fd {
        super::worker_output::pipe().unwrap_or_else(|e| {
            tracing::error!(
                "worker {worker_id}: no output pipe ({e}); it writes to the log directly"
            );
            None
        })
    } else {
        None
    };
    let mut sources: Vec<RawFd> = vec![scoreboard.fd];
    sources.extend(listeners.iter().map(|(fd, _)| *fd));
    // The master's log destination, after the listeners.
    let log_fd = output.as_ref().map(|_| {
        sources.push(2);
        BOOT_FD + sources.len() as RawFd
    });
    let msg = BootMessage {
        config: config.clone(),
        worker_id,
        slot: scoreboard.slot,
        scoreboard_slots: scoreboard.slots,
        listeners: listeners.iter().map(|(_, m)| m.clone()).collect(),
        log_fd,
    };
    let memfd = boot_memfd(&msg)?;
    sources.insert(0, memfd.as_raw_fd());
    // The pipe's write end goes to fds 1 and 2; it is shuffled with the rest.
    let pipe_write = output.as_ref().map(|(_, w)| w.as_raw_fd());
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("__worker__").arg(worker_id.to_string());
    // Socket activation variables were meant for the master only.
    for var in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] {
        cmd.env_remove(var);
    }
    for (k, v) in &config.env {
        cmd.env(k, v);
    }
    if let Some(dir) = &config.chdir {
        cmd.current_dir(dir);
    }
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe calls (prctl, fcntl, dup2, close).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // Move every source above the targets first, so no dup2 below
            // overwrites a source that is still needed.
            let mut high = [0 as RawFd; 64];
            let n = sources.len().min(high.len());
            for i in 0..n {
                let fd = libc::fcntl(sources[i], libc::F_DUPFD_CLOEXEC, SHUFFLE_BASE);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                high[i] = fd;
            }
            let pipe_high = match pipe_write {
                Some(w) => {
                    let fd = libc::fcntl(w, libc::F_DUPFD_CLOEXEC, SHUFFLE_BASE);
                    if fd < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Some(fd)
                }
                None => None,
            };
            for (i, &fd) in high.iter().enumerate().take(n) {
                // dup2 clears FD_CLOEXEC on the target: these survive exec.
                if libc::dup2(fd, BOOT_FD + i as RawFd) < 0 {
                    return Err(io::Error::last_os_error());
                }
                libc::close(fd);
            }
            if let Some(fd) = pipe_high {
                for target in [1, 2] {
                    if libc::dup2(fd, target) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                libc::close(fd);
            }
            Ok(())
        });
    }
    debug_assert_eq!(
        (SCOREBOARD_FD, FIRST_LISTENER_FD),
        (BOOT_FD + 1, BOOT_FD + 2)
    );
    let child = cmd.spawn()?;
    let pid = child.id() as i32;
    if let Some((read, write)) = output {
        // Only the worker may hold the write end, or the pipe never ends.
        drop(write);
        super::worker_output::watch(read, worker_id, pid);
    }
    // The master reaps with waitpid(-1); the Child handle is not needed.
    Ok(pid)
}
