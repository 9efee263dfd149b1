//! The worker table: who runs where, exits, and respawn with backoff.
//!
//! A worker that exits with [`EXIT_BOOT_ERROR`] could not load the app: the
//! master stops instead of respawning forever. A worker that dies soon after
//! starting is respawned with exponential backoff; one that ran for a while
//! is respawned at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::worker::EXIT_BOOT_ERROR;

/// A worker that lived less than this counts as a quick death (backoff grows).
const QUICK_DEATH: Duration = Duration::from_secs(1);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct Slot {
    pid: Option<i32>,
    spawned_at: Instant,
    quick_deaths: u32,
    next_spawn: Instant,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// A worker we told to go (reload, scale down).
    Retired,
    BootFailure,
    Died,
}

pub struct Exit {
    pub id: usize,
    pub pid: i32,
    pub kind: ExitKind,
    status: i32,
}

impl Exit {
    pub fn describe(&self) -> String {
        if libc::WIFSIGNALED(self.status) {
            format!(
                "was killed by {}",
                super::signals::name(libc::WTERMSIG(self.status))
            )
        } else {
            format!("exited with code {}", libc::WEXITSTATUS(self.status))
        }
    }
}

pub fn kill(pid: i32, sig: i32) {
    // SAFETY: plain kill(2) on a child pid we have not reaped yet.
    unsafe { libc::kill(pid, sig) };
}

pub struct Workers {
    slots: HashMap<usize, Slot>,
    /// Draining workers of an earlier generation, pid → id.
    retired: HashMap<i32, usize>,
}

impl Workers {
    pub fn new() -> Workers {
        Workers {
            slots: HashMap::new(),
            retired: HashMap::new(),
        }
    }

    pub fn started(&mut self, id: usize, pid: i32) {
        let now = Instant::now();
        let slot = self.slots.entry(id).or_insert(Slot {
            pid: None,
            spawned_at: now,
            quick_deaths: 0,
            next_spawn: now,
        });
        slot.pid = Some(pid);
        slot.spawned_at = now;
    }

    pub fn spawn_failed(&mut self, id: usize) {
        let now = Instant::now();
        let slot = self.slots.entry(id).or_insert(Slot {
            pid: None,
            spawned_at: now,
            quick_deaths: 0,
            next_spawn: now,
        });
        slot.quick_deaths += 1;
        slot.next_spawn = now + backoff(slot.quick_deaths);
    }

    /// Collects every exited child without blocking.
    pub fn reap(&mut self) -> Vec<Exit> {
        let mut exits = Vec::new();
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid status pointer, non-blocking.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if let Some(id) = self.retired.remove(&pid) {
                exits.push(Exit {
                    id,
                    pid,
                    kind: ExitKind::Retired,
                    status,
                });
                continue;
            }
            let Some((&id, slot)) = self.slots.iter_mut().find(|(_, s)| s.pid == Some(pid)) else {
                continue; // not ours (e.g. a grandchild re-parented to us)
            };
            slot.pid = None;
            let now = Instant::now();
            if now.duration_since(slot.spawned_at) < QUICK_DEATH {
                slot.quick_deaths += 1;
                slot.next_spawn = now + backoff(slot.quick_deaths);
            } else {
                slot.quick_deaths = 0;
                slot.next_spawn = now;
            }
            let boot_failure =
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == EXIT_BOOT_ERROR;
            exits.push(Exit {
                id,
                pid,
                kind: if boot_failure {
                    ExitKind::BootFailure
                } else {
                    ExitKind::Died
                },
                status,
            });
        }
        exits
    }

    /// Worker ids in `1..=processes` that have no process and whose backoff passed.
    pub fn due_for_spawn(&self, processes: usize, now: Instant) -> Vec<usize> {
        (1..=processes)
            .filter(|id| match self.slots.get(id) {
                None => true,
                Some(s) => s.pid.is_none() && s.next_spawn <= now,
            })
            .collect()
    }

    /// Ids in `1..=processes` with no process, regardless of backoff.
    pub fn missing_ids(&self, processes: usize) -> Vec<usize> {
        (1..=processes)
            .filter(|id| self.slots.get(id).is_none_or(|s| s.pid.is_none()))
            .collect()
    }

    /// Moves every current worker to the retired set; returns their pids.
    pub fn retire_all(&mut self) -> Vec<i32> {
        let mut pids = Vec::new();
        for (&id, slot) in self.slots.iter_mut() {
            if let Some(pid) = slot.pid.take() {
                self.retired.insert(pid, id);
                pids.push(pid);
            }
            slot.quick_deaths = 0;
            slot.next_spawn = Instant::now();
        }
        pids
    }

    /// Retires the worker with the highest id above `processes`, if any.
    pub fn retire_highest(&mut self, processes: usize) -> Option<i32> {
        let id = *self
            .slots
            .iter()
            .filter(|(id, s)| **id > processes && s.pid.is_some())
            .map(|(id, _)| id)
            .max()?;
        let slot = self.slots.get_mut(&id)?;
        let pid = slot.pid.take()?;
        self.retired.insert(pid, id);
        Some(pid)
    }

    pub fn signal_all(&self, sig: i32) {
        for pid in self
            .slots
            .values()
            .filter_map(|s| s.pid)
            .chain(self.retired.keys().copied())
        {
            kill(pid, sig);
        }
    }

    pub fn alive(&self) -> usize {
        self.slots.values().filter(|s| s.pid.is_some()).count() + self.retired.len()
    }
}

fn backoff(quick_deaths: u32) -> Duration {
    let factor = 1u32 << quick_deaths.saturating_sub(1).min(10);
    (BACKOFF_START * factor).min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(4), Duration::from_millis(800));
        assert_eq!(backoff(30), BACKOFF_MAX);
    }

    #[test]
    fn retiring_frees_ids_for_the_next_generation() {
        let mut w = Workers::new();
        w.started(1, 100);
        w.started(2, 101);
        assert!(w.due_for_spawn(2, Instant::now()).is_empty());
        let mut old = w.retire_all();
        old.sort();
        assert_eq!(old, vec![100, 101]);
        assert_eq!(w.missing_ids(2), vec![1, 2]);
        assert_eq!(w.alive(), 2);
    }
}
