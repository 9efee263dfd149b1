//! The worker table: which process runs which worker id in which scoreboard
//! slot, their exits, and respawn with backoff.
//!
//! A worker that exits with [`EXIT_BOOT_ERROR`] could not load the app: the
//! master stops instead of respawning forever. A worker that dies soon after
//! starting is respawned with exponential backoff; one that ran for a while
//! is respawned at once. "Retired" processes belong to an older generation
//! (reload, recycling, scale-down) and are draining; they are not respawned.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::worker::EXIT_BOOT_ERROR;

/// A worker that lived less than this counts as a quick death (backoff grows).
const QUICK_DEATH: Duration = Duration::from_secs(1);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct IdState {
    pid: Option<i32>,
    spawned_at: Instant,
    quick_deaths: u32,
    next_spawn: Instant,
}

/// One live worker process.
#[derive(Debug)]
pub struct Proc {
    pub id: usize,
    pub slot: usize,
    pub retired: bool,
    /// Set when harakiri fired: the SIGKILL deadline.
    pub kill_at: Option<Instant>,
    /// Set when the master already started this worker's successor.
    pub replaced: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// A worker we told to go (reload, recycling, scale-down).
    Retired,
    /// A worker that asked to be replaced (max-requests, reload-on-rss)
    /// and exited before the master started its successor.
    Recycled,
    BootFailure,
    Died,
}

pub struct Exit {
    pub id: usize,
    pub pid: i32,
    pub kind: ExitKind,
    /// The master killed it for harakiri.
    pub harakiri: bool,
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
    ids: HashMap<usize, IdState>,
    procs: HashMap<i32, Proc>,
    free_slots: Vec<usize>,
    /// Exits of children that are not workers ([program:x] processes),
    /// reaped by `waitpid(-1)` here and handed on by the master.
    foreign: Vec<(i32, i32)>,
}

impl Workers {
    pub fn new(slots: usize) -> Workers {
        Workers {
            ids: HashMap::new(),
            procs: HashMap::new(),
            free_slots: (0..slots).rev().collect(),
            foreign: Vec::new(),
        }
    }

    pub fn alloc_slot(&mut self) -> Option<usize> {
        self.free_slots.pop()
    }

    fn id_state(&mut self, id: usize) -> &mut IdState {
        let now = Instant::now();
        self.ids.entry(id).or_insert(IdState {
            pid: None,
            spawned_at: now,
            quick_deaths: 0,
            next_spawn: now,
        })
    }

    pub fn started(&mut self, id: usize, pid: i32, slot: usize) {
        let st = self.id_state(id);
        st.pid = Some(pid);
        st.spawned_at = Instant::now();
        self.procs.insert(
            pid,
            Proc {
                id,
                slot,
                retired: false,
                kill_at: None,
                replaced: false,
            },
        );
    }

    pub fn spawn_failed(&mut self, id: usize, slot: usize) {
        self.free_slots.push(slot);
        let st = self.id_state(id);
        st.quick_deaths += 1;
        st.next_spawn = Instant::now() + backoff(st.quick_deaths);
    }

    /// Collects every exited child without blocking; frees their slots.
    /// `recycling(slot)` tells whether a worker had asked to be replaced.
    pub fn reap(&mut self, recycling: impl Fn(usize) -> bool) -> Vec<Exit> {
        let mut exits = Vec::new();
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid status pointer, non-blocking.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            let Some(proc_) = self.procs.remove(&pid) else {
                // Not a worker: a program process (or a re-parented grandchild).
                self.foreign.push((pid, status));
                continue;
            };
            self.free_slots.push(proc_.slot);
            let id = proc_.id;
            if proc_.retired {
                exits.push(Exit {
                    id,
                    pid,
                    kind: ExitKind::Retired,
                    harakiri: proc_.kill_at.is_some(),
                    status,
                });
                continue;
            }
            let recycled = recycling(proc_.slot);
            let st = self.id_state(id);
            st.pid = None;
            let now = Instant::now();
            if recycled {
                st.quick_deaths = 0;
                st.next_spawn = now;
                exits.push(Exit {
                    id,
                    pid,
                    kind: ExitKind::Recycled,
                    harakiri: false,
                    status,
                });
                continue;
            }
            if now.duration_since(st.spawned_at) < QUICK_DEATH {
                st.quick_deaths += 1;
                st.next_spawn = now + backoff(st.quick_deaths);
            } else {
                st.quick_deaths = 0;
                st.next_spawn = now;
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
                harakiri: proc_.kill_at.is_some(),
                status,
            });
        }
        exits
    }

    /// Worker ids in `1..=processes` that have no process and whose backoff passed.
    pub fn due_for_spawn(&self, processes: usize, now: Instant) -> Vec<usize> {
        (1..=processes)
            .filter(|id| match self.ids.get(id) {
                None => true,
                Some(s) => s.pid.is_none() && s.next_spawn <= now,
            })
            .collect()
    }

    /// Marks a process as retired (it drains and is not respawned); its id
    /// becomes free for a successor.
    pub fn retire(&mut self, pid: i32) {
        if let Some(p) = self.procs.get_mut(&pid) {
            p.retired = true;
            let id = p.id;
            if let Some(st) = self.ids.get_mut(&id) {
                if st.pid == Some(pid) {
                    st.pid = None;
                    st.quick_deaths = 0;
                    st.next_spawn = Instant::now();
                }
            }
        }
    }

    /// Retires every current worker; returns their pids.
    pub fn retire_all(&mut self) -> Vec<i32> {
        let pids: Vec<i32> = self
            .procs
            .iter()
            .filter(|(_, p)| !p.retired)
            .map(|(pid, _)| *pid)
            .collect();
        for &pid in &pids {
            self.retire(pid);
        }
        pids
    }

    /// Retires the current worker with the highest id above `processes`.
    pub fn retire_highest(&mut self, processes: usize) -> Option<i32> {
        let (pid, _) = self
            .procs
            .iter()
            .filter(|(_, p)| !p.retired && p.id > processes)
            .max_by_key(|(_, p)| p.id)?;
        let pid = *pid;
        self.retire(pid);
        Some(pid)
    }

    pub fn signal_all(&self, sig: i32) {
        for pid in self.procs.keys() {
            kill(*pid, sig);
        }
    }

    /// (pid, wait status) of reaped children that were not workers.
    pub fn take_foreign(&mut self) -> Vec<(i32, i32)> {
        std::mem::take(&mut self.foreign)
    }

    pub fn alive(&self) -> usize {
        self.procs.len()
    }

    /// Live processes of the current generation.
    pub fn current(&self) -> impl Iterator<Item = (i32, &Proc)> {
        self.procs
            .iter()
            .filter(|(_, p)| !p.retired)
            .map(|(pid, p)| (*pid, p))
    }

    pub fn all(&self) -> impl Iterator<Item = (i32, &Proc)> {
        self.procs.iter().map(|(pid, p)| (*pid, p))
    }

    pub fn all_mut(&mut self) -> impl Iterator<Item = (i32, &mut Proc)> {
        self.procs.iter_mut().map(|(pid, p)| (*pid, p))
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
        let mut w = Workers::new(8);
        let (a, b) = (w.alloc_slot().unwrap(), w.alloc_slot().unwrap());
        w.started(1, 100, a);
        w.started(2, 101, b);
        assert!(w.due_for_spawn(2, Instant::now()).is_empty());
        let mut old = w.retire_all();
        old.sort();
        assert_eq!(old, vec![100, 101]);
        assert_eq!(w.due_for_spawn(2, Instant::now()), vec![1, 2]);
        assert_eq!(w.alive(), 2);
        assert_eq!(w.current().count(), 0);
    }

    #[test]
    fn scale_down_retires_the_highest_id() {
        let mut w = Workers::new(8);
        for (id, pid) in [(1, 10), (2, 11), (3, 12)] {
            let slot = w.alloc_slot().unwrap();
            w.started(id, pid, slot);
        }
        assert_eq!(w.retire_highest(2), Some(12));
        assert_eq!(w.retire_highest(2), None);
    }
}
