//! Watchdogs the master runs on every tick: harakiri (per-request deadline),
//! touch-reload (file mtimes) and the adaptive "cheaper" scaler. They only
//! read the scoreboard and the filesystem, so the master never blocks on a
//! worker (DESIGN §2.1).

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use super::scoreboard::{now_ms, Scoreboard, WorkerState};
use super::supervise::{kill, Workers};

/// Time between the traceback request (SIGUSR2, faulthandler in the worker)
/// and the SIGKILL, so the traceback reaches the log.
pub const HARAKIRI_GRACE: Duration = Duration::from_millis(1000);

/// Finds requests running longer than `harakiri` seconds; logs them, asks the
/// worker for its Python tracebacks and schedules the SIGKILL.
/// Returns the ids of the workers it fired on.
pub fn harakiri(harakiri_s: u64, scoreboard: &Scoreboard, workers: &mut Workers) -> Vec<usize> {
    if harakiri_s == 0 {
        return Vec::new();
    }
    let now = now_ms();
    let limit_ms = harakiri_s * 1000;
    let mut fired = Vec::new();
    for (pid, p) in workers.all_mut() {
        if p.kill_at.is_some() {
            continue;
        }
        for core in 0..scoreboard.threads() {
            let slot = scoreboard.core(p.slot, core);
            let Some((started, request)) = slot.current() else {
                continue;
            };
            let elapsed = now.saturating_sub(started);
            if elapsed >= limit_ms {
                tracing::error!(
                    "HARAKIRI: worker {} (pid: {pid}) core {core} (thread 0x{:x}): {request} running for {:.1} s \
                     (harakiri = {harakiri_s} s); Python tracebacks follow, then SIGKILL",
                    p.id,
                    slot.thread_id.load(std::sync::atomic::Ordering::Relaxed),
                    elapsed as f64 / 1000.0
                );
                p.kill_at = Some(Instant::now() + HARAKIRI_GRACE);
                fired.push((pid, p.id));
                break;
            }
        }
    }
    for (pid, _) in &fired {
        kill(*pid, libc::SIGUSR2);
    }
    fired.into_iter().map(|(_, id)| id).collect()
}

/// Sends the scheduled SIGKILLs.
pub fn harakiri_kills(workers: &mut Workers) {
    let now = Instant::now();
    for (pid, p) in workers.all_mut() {
        if p.kill_at.is_some_and(|t| now >= t) {
            p.kill_at = Some(now + Duration::from_secs(3600));
            kill(pid, libc::SIGKILL);
        }
    }
}

/// Workers that asked to be replaced (max-requests, reload-on-rss): retire
/// them and return their ids, for the caller to start successors at once.
pub fn recycled(scoreboard: &Scoreboard, workers: &mut Workers) -> Vec<(usize, i32, String)> {
    let mut out = Vec::new();
    for (pid, p) in workers.all_mut() {
        if p.retired || p.replaced {
            continue;
        }
        let slot = scoreboard.worker(p.slot);
        if slot.state() == WorkerState::Recycling {
            p.replaced = true;
            out.push((p.id, pid, slot.recycle_reason()));
        }
    }
    for (_, pid, _) in &out {
        workers.retire(*pid);
    }
    out
}

/// Watches files for `touch-reload`.
pub struct TouchReload {
    files: Vec<(PathBuf, Option<SystemTime>)>,
}

fn mtime(p: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl TouchReload {
    pub fn new(paths: &[PathBuf]) -> TouchReload {
        TouchReload {
            files: paths.iter().map(|p| (p.clone(), mtime(p))).collect(),
        }
    }

    /// The first file whose mtime changed since the last check.
    pub fn changed(&mut self) -> Option<PathBuf> {
        let mut hit = None;
        for (path, seen) in &mut self.files {
            let now = mtime(path);
            if now != *seen {
                *seen = now;
                hit.get_or_insert_with(|| path.clone());
            }
        }
        hit
    }
}

/// uWSGI's "spare" cheaper algorithm: keep at least `cheaper` workers; add
/// one when every worker has been busy for `OVERLOAD_CHECKS` checks in a row;
/// retire one that has been idle for `IDLE_CHECKS` checks.
pub struct Cheaper {
    busy_streak: u32,
    idle_streak: u32,
    last_check: Instant,
}

const CHECK_EVERY: Duration = Duration::from_secs(1);
const OVERLOAD_CHECKS: u32 = 3;
const IDLE_CHECKS: u32 = 10;

pub enum Scale {
    Up,
    Down,
    Hold,
}

impl Cheaper {
    pub fn new() -> Cheaper {
        Cheaper {
            busy_streak: 0,
            idle_streak: 0,
            last_check: Instant::now(),
        }
    }

    pub fn decide(
        &mut self,
        scoreboard: &Scoreboard,
        workers: &Workers,
        running: usize,
        min: usize,
        max: usize,
    ) -> Scale {
        if self.last_check.elapsed() < CHECK_EVERY {
            return Scale::Hold;
        }
        self.last_check = Instant::now();
        let mut busy_workers = 0;
        let mut idle_workers = 0;
        let mut count = 0;
        for (_, p) in workers.current() {
            count += 1;
            let busy_cores = (0..scoreboard.threads())
                .filter(|&c| scoreboard.core(p.slot, c).current().is_some())
                .count();
            if busy_cores == scoreboard.threads() {
                busy_workers += 1;
            } else if busy_cores == 0 {
                idle_workers += 1;
            }
        }
        if count > 0 && busy_workers == count {
            self.busy_streak += 1;
        } else {
            self.busy_streak = 0;
        }
        if idle_workers >= 2 || (count > 0 && idle_workers == count) {
            self.idle_streak += 1;
        } else {
            self.idle_streak = 0;
        }
        if self.busy_streak >= OVERLOAD_CHECKS && running < max {
            self.busy_streak = 0;
            return Scale::Up;
        }
        if self.idle_streak >= IDLE_CHECKS && running > min {
            self.idle_streak = 0;
            return Scale::Down;
        }
        Scale::Hold
    }
}
