//! The worker table: which process runs which worker id in which scoreboard
//! slot, and each id's supervision state.
//!
//! Every worker id (`web:1`, `web:2`, ...) runs through the same state
//! machine as the `[program:x]` processes ([`crate::programs::machine`]),
//! with [`worker_policy`]:
//!
//! ```text
//!  spawn                  accepting, and alive WORKER_STARTSECS
//! ───────> STARTING ──────────────────────────────────────────> RUNNING
//!             │  ^                                                 │ died
//!   died      v  │ after 0.1 s, 0.2 s, 0.4 s ... 10 s              v
//!          BACKOFF                              EXITED ── respawned at once
//!             ^
//!             │ another id is RUNNING (it keeps serving)
//!  EXIT_BOOT_ERROR ──┤
//!                    │ no other id is RUNNING
//!                    v
//!                  FATAL: the master stops, or aborts the reload
//! ```
//!
//! - **RUNNING** means the worker imported the app, accepts connections
//!   (its scoreboard slot says so) *and* has lived [`WORKER_STARTSECS`]. A
//!   worker that dies before that, whatever the reason (an exit code or a
//!   signal), had a failed start and waits in BACKOFF, exponentially longer
//!   each time, so a crash loop does not spin. A worker that dies while
//!   RUNNING is EXITED and respawned at once (a SIGKILL from harakiri or the
//!   OOM killer is no reason to wait); its signal is named in the log.
//! - **FATAL** for workers means only "the app cannot be loaded": the
//!   worker exited with [`EXIT_BOOT_ERROR`] after printing the traceback,
//!   and no other worker id is RUNNING. Retrying cannot help, and a web
//!   server without its app is no use, so at startup the master stops
//!   (exit 1) instead of looping. During a reload it is the *new*
//!   generation that cannot load the app while the old one (retired, so not
//!   RUNNING here) still serves: the master aborts the reload and
//!   [restores](Workers::restore_generation) the old generation instead.
//!   Any other failure is retried forever (`startretries` is unlimited),
//!   uWSGI-style: a worker that crashed a hundred times may still be fixed
//!   by the 101st try (a database back up, a disk no longer full). There is
//!   no option for this; uWSGI has none either.
//! - **A boot failure while other ids are RUNNING** (a worker of a
//!   generation kept by an aborted reload died, or was recycled, and its
//!   successor imports the broken code now on disk) is not FATAL: the id
//!   waits in BACKOFF and retries (0.1 s ... 10 s, forever, each try logging
//!   the traceback), and the RUNNING workers keep serving. The site runs
//!   with fewer workers until the code is fixed and reloaded, and stops
//!   only if the last RUNNING worker goes too ([`ExitKind::BootRetry`]).
//! - **Retired** processes belong to an older generation (reload,
//!   recycling, scale-down) and drain on their own: their id's machine is
//!   [detached](crate::programs::machine::Machine::detach) from them, so a
//!   successor can start at once, overlapping them (zero-downtime reload).
//!   They are not respawned, and their exit is not a failure.
//! - **Stopping** (TERM or INT): every id goes STOPPING, then STOPPED when
//!   its process exits. The master's shutdown deadline sends the SIGKILLs.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::programs::machine::{self, Action, Backoff, Machine, Policy, State};
use crate::worker::EXIT_BOOT_ERROR;

/// A worker must accept and live this long to count as started (RUNNING).
pub const WORKER_STARTSECS: Duration = Duration::from_secs(1);
/// The first BACKOFF wait after a failed start; it doubles each time.
pub const WORKER_BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// The longest BACKOFF wait.
pub const WORKER_BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The supervision policy of a web worker id (see the module doc).
/// `mercy` is `worker-reload-mercy`: how long a graceful stop waits.
pub fn worker_policy(mercy: Duration) -> Policy {
    Policy {
        startsecs: WORKER_STARTSECS,
        wait_ready: true,
        startretries: None,
        backoff: Backoff::Exponential {
            first: WORKER_BACKOFF_FIRST,
            max: WORKER_BACKOFF_MAX,
        },
        fatal_exitcodes: vec![EXIT_BOOT_ERROR],
        autorestart: crate::config::sections::AutoRestart::Always,
        exitcodes: vec![0],
        stopsignal: libc::SIGTERM,
        stopwait: mercy,
    }
}

/// One worker id: its machine and its current process.
#[derive(Debug)]
struct Slot {
    machine: Machine,
    pid: Option<i32>,
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
    pub spawned_at: Instant,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// A worker we told to go (reload, recycling, scale-down).
    Retired,
    /// A worker that asked to be replaced (max-requests, reload-on-rss)
    /// and exited before the master started its successor.
    Recycled,
    /// The app could not be loaded, and no other id is RUNNING: FATAL.
    BootFailure,
    /// The app could not be loaded, but other ids are RUNNING: BACKOFF,
    /// the next try after this wait.
    BootRetry(Duration),
    /// Died while STARTING: BACKOFF, the next try after this wait.
    Backoff(Duration),
    /// Died while RUNNING: EXITED, respawned at once.
    Exited,
    /// Exited after a stop request (shutdown): STOPPED.
    Stopped,
}

pub struct Exit {
    pub id: usize,
    pub pid: i32,
    pub kind: ExitKind,
    /// The master killed it for harakiri.
    pub harakiri: bool,
    pub how: machine::Exit,
    /// How long the process lived.
    pub lived: Duration,
    /// Failed starts in a row, for a BACKOFF.
    pub retries: u32,
}

impl Exit {
    pub fn describe(&self) -> String {
        self.how.describe()
    }
}

/// What [`Workers::tick`] wants the master to do or log.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Start a process for this id now.
    Spawn(usize),
    /// This id's process became RUNNING.
    Running { id: usize, pid: i32 },
}

/// The worker exited because it could not load the app.
fn is_boot_error(how: machine::Exit) -> bool {
    how == machine::Exit::Code(EXIT_BOOT_ERROR)
}

pub fn kill(pid: i32, sig: i32) {
    // SAFETY: plain kill(2) on a child pid we have not reaped yet.
    unsafe { libc::kill(pid, sig) };
}

/// The supervision state of one worker id, for `ctl status`.
pub struct IdStatus {
    pub id: usize,
    pub state: State,
    pub pid: Option<i32>,
    pub description: String,
}

/// One row of the worker table, as `capataz ctl status` and the stats
/// server show it (see [`Workers::rows`]).
#[derive(Debug, PartialEq, Eq)]
pub struct WorkerRow {
    pub id: usize,
    /// None for an id waiting without a process (BACKOFF, EXITED, FATAL).
    pub pid: Option<i32>,
    /// The process's scoreboard slot.
    pub slot: Option<usize>,
    /// An older generation's process, draining.
    pub retired: bool,
    pub state: State,
    pub description: String,
}

pub struct Workers {
    policy: Policy,
    ids: BTreeMap<usize, Slot>,
    procs: HashMap<i32, Proc>,
    free_slots: Vec<usize>,
    /// Exits of children that are not workers ([program:x] processes),
    /// reaped by `waitpid(-1)` here and handed on by the master.
    foreign: Vec<(i32, i32)>,
}

impl Workers {
    pub fn new(slots: usize, policy: Policy) -> Workers {
        Workers {
            policy,
            ids: BTreeMap::new(),
            procs: HashMap::new(),
            free_slots: (0..slots).rev().collect(),
            foreign: Vec::new(),
        }
    }

    pub fn alloc_slot(&mut self) -> Option<usize> {
        self.free_slots.pop()
    }

    fn id(&mut self, id: usize) -> &mut Slot {
        self.ids.entry(id).or_insert_with(|| Slot {
            machine: Machine::new(),
            pid: None,
        })
    }

    /// The process for `id` was spawned into scoreboard slot `slot`.
    pub fn started(&mut self, id: usize, pid: i32, slot: usize, now: Instant) {
        let policy = self.policy.clone();
        let st = self.id(id);
        st.pid = Some(pid);
        st.machine.spawned(&policy, now);
        self.procs.insert(
            pid,
            Proc {
                id,
                slot,
                retired: false,
                kill_at: None,
                replaced: false,
                spawned_at: now,
            },
        );
    }

    /// Spawning `id` failed (`slot` is given back, if one was taken): a
    /// failed start, so BACKOFF.
    pub fn spawn_failed(&mut self, id: usize, slot: Option<usize>, now: Instant) {
        self.free_slots.extend(slot);
        let policy = self.policy.clone();
        self.id(id)
            .machine
            .exited(&policy, now, machine::Exit::SpawnError);
    }

    /// Collects every exited child without blocking; frees their slots.
    /// `recycling(slot)` tells whether a worker had asked to be replaced.
    pub fn reap(&mut self, now: Instant, recycling: impl Fn(usize) -> bool) -> Vec<Exit> {
        let mut exits = Vec::new();
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid status pointer, non-blocking.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            match self.procs.remove(&pid) {
                Some(proc_) => exits.push(self.on_exit(pid, proc_, status, now, &recycling)),
                // Not a worker: a program process (or a re-parented grandchild).
                None => self.foreign.push((pid, status)),
            }
        }
        exits
    }

    fn on_exit(
        &mut self,
        pid: i32,
        proc_: Proc,
        status: i32,
        now: Instant,
        recycling: impl Fn(usize) -> bool,
    ) -> Exit {
        self.free_slots.push(proc_.slot);
        let how = machine::Exit::from_status(status);
        let mut exit = Exit {
            id: proc_.id,
            pid,
            kind: ExitKind::Retired,
            harakiri: proc_.kill_at.is_some(),
            how,
            lived: now.saturating_duration_since(proc_.spawned_at),
            retries: 0,
        };
        let mut policy = self.policy.clone();
        let others_running = self
            .ids
            .iter()
            .any(|(&id, st)| id != proc_.id && st.machine.state() == State::Running);
        if others_running {
            // A boot failure is not hopeless while others serve: BACKOFF.
            policy.fatal_exitcodes.clear();
        }
        let Some(st) = self.ids.get_mut(&proc_.id).filter(|st| st.pid == Some(pid)) else {
            // Retired: it no longer belongs to its id.
            return exit;
        };
        st.pid = None;
        if recycling(proc_.slot) {
            // It left on purpose: like a retirement, not a failure.
            st.machine.detach();
            exit.kind = ExitKind::Recycled;
            return exit;
        }
        let before = st.machine.state();
        st.machine.exited(&policy, now, how);
        exit.retries = st.machine.retries();
        let wait = st
            .machine
            .next_try()
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
        exit.kind = match st.machine.state() {
            State::Fatal => ExitKind::BootFailure,
            State::Backoff if is_boot_error(how) => ExitKind::BootRetry(wait),
            State::Backoff => ExitKind::Backoff(wait),
            State::Stopped if before == State::Stopping => ExitKind::Stopped,
            _ => ExitKind::Exited,
        };
        exit
    }

    /// Time-driven supervision, every loop while serving: starts ids
    /// `1..=target` that have no process, marks accepting workers ready,
    /// runs each machine's clock (BACKOFF retries, EXITED respawns), and
    /// forgets ids above `target` (scaled down) once they have no process;
    /// one in BACKOFF is not retried.
    pub fn tick(
        &mut self,
        target: usize,
        now: Instant,
        accepting: impl Fn(usize) -> bool,
    ) -> Vec<Event> {
        for id in 1..=target {
            self.id(id);
        }
        self.ids
            .retain(|&id, st| id <= target || st.pid.is_some() || st.machine.state().has_process());
        let mut events = Vec::new();
        for (&id, st) in self.ids.iter_mut() {
            let before = st.machine.state();
            if id > target {
                // Scaled down: its process, retired, drains on its own.
                continue;
            }
            if let Some(p) = st.pid.and_then(|pid| self.procs.get(&pid)) {
                if accepting(p.slot) {
                    st.machine.ready();
                }
            }
            let mut action = match before {
                State::Stopped => st.machine.start(),
                _ => None,
            };
            action = action.or(st.machine.tick(&self.policy, now));
            match action {
                Some(Action::Spawn) => events.push(Event::Spawn(id)),
                // Machines of live workers are in STOPPING only during
                // shutdown, whose deadline the master keeps (it also covers
                // retired workers); tick is not called then.
                Some(Action::Signal(_) | Action::Kill) | None => {}
            }
            if before != State::Running && st.machine.state() == State::Running {
                if let Some(pid) = st.pid {
                    events.push(Event::Running { id, pid });
                }
            }
        }
        events
    }

    /// Starts every id `1..=target` again now, BACKOFF ones included (a
    /// reload after retire_all); returns the ids to spawn.
    pub fn restart_all(&mut self, target: usize) -> Vec<usize> {
        (1..=target)
            .filter(|&id| self.id(id).machine.start() == Some(Action::Spawn))
            .collect()
    }

    /// Shutdown: every id goes STOPPING (or STOPPED if it has no process).
    /// Sending the signals is the caller's, since retired workers get them
    /// too.
    pub fn stop_all(&mut self, now: Instant) {
        for st in self.ids.values_mut() {
            st.machine.stop(&self.policy, now, None);
        }
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
                    st.machine.detach();
                }
            }
        }
    }

    /// Aborts a reload: retires the new generation's processes (returned,
    /// for the caller to SIGTERM) and gives the previous generation's live
    /// processes, `old` (retired by [`Workers::retire_all`] but never told
    /// to drain), their ids back, RUNNING, as if the reload never happened.
    /// An id whose old process died meanwhile starts again from STOPPED
    /// (its next boot may fail too: see [`ExitKind::BootRetry`]).
    pub fn restore_generation(&mut self, old: &[i32], now: Instant) -> Vec<i32> {
        let new = self.retire_all();
        for st in self.ids.values_mut() {
            if st.pid.is_none() {
                // FATAL or BACKOFF after the failed boot; STOPPED if retired.
                st.machine = Machine::new();
            }
        }
        for &pid in old {
            // Gone if it died during the reload.
            let Some(p) = self.procs.get_mut(&pid) else {
                continue;
            };
            let st = self.ids.entry(p.id).or_insert_with(|| Slot {
                machine: Machine::new(),
                pid: None,
            });
            if st.pid.is_none() {
                p.retired = false;
                st.pid = Some(pid);
                st.machine.attach(now);
            }
        }
        new
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

    /// The state of `id`'s machine.
    pub fn state(&self, id: usize) -> Option<State> {
        self.ids.get(&id).map(|st| st.machine.state())
    }

    /// The worker table by (id, pid): every live process, then every id
    /// that has none and is not STOPPED. A process's state is its id's
    /// (STARTING or RUNNING; STOPPING on shutdown), except that a retired
    /// process ("old generation, draining") or one that asked to be
    /// replaced (`recycling(slot)`) is STOPPING: it is on its way out.
    /// `ctl status` and the stats server both show this, so they agree.
    pub fn rows(&self, now: Instant, recycling: impl Fn(usize) -> bool) -> Vec<WorkerRow> {
        let ids = self.id_status(now);
        let mut rows: Vec<WorkerRow> = self
            .all()
            .map(|(pid, p)| {
                let (state, description) = if p.retired {
                    (State::Stopping, "old generation, draining")
                } else if recycling(p.slot) {
                    (State::Stopping, "recycling")
                } else {
                    let state = ids.iter().find(|s| s.pid == Some(pid)).map(|s| s.state);
                    (state.unwrap_or(State::Starting), "")
                };
                WorkerRow {
                    id: p.id,
                    pid: Some(pid),
                    slot: Some(p.slot),
                    retired: p.retired,
                    state,
                    description: description.into(),
                }
            })
            .collect();
        rows.extend(
            ids.into_iter()
                .filter(|s| s.pid.is_none() && s.state != State::Stopped)
                .map(|s| WorkerRow {
                    id: s.id,
                    pid: None,
                    slot: None,
                    retired: false,
                    state: s.state,
                    description: s.description,
                }),
        );
        rows.sort_by_key(|r| (r.id, r.pid.unwrap_or(0)));
        rows
    }

    /// Every worker id with its state, for `ctl status` (supervisord-like
    /// descriptions for BACKOFF and FATAL).
    pub fn id_status(&self, now: Instant) -> Vec<IdStatus> {
        self.ids
            .iter()
            .map(|(&id, st)| {
                let m = &st.machine;
                let retry = || {
                    format!(
                        "failed start {}, retrying in {:.1} s",
                        m.retries(),
                        m.next_try()
                            .map_or(0.0, |t| t.saturating_duration_since(now).as_secs_f64())
                    )
                };
                let description = match (m.state(), m.last_exit()) {
                    (State::Backoff, Some(how)) if is_boot_error(how) => {
                        format!("could not load the app; {}", retry())
                    }
                    (State::Backoff, Some(how)) => {
                        format!("exited too quickly ({}); {}", how.describe(), retry())
                    }
                    (State::Fatal, _) => "could not load the app".into(),
                    _ => String::new(),
                };
                IdStatus {
                    id,
                    state: m.state(),
                    pid: st.pid,
                    description,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workers() -> Workers {
        Workers::new(8, worker_policy(Duration::from_secs(60)))
    }

    fn spawn_all(w: &mut Workers, target: usize, now: Instant, first_pid: i32) -> Vec<i32> {
        let mut pids = Vec::new();
        for (n, e) in w.tick(target, now, |_| false).into_iter().enumerate() {
            let Event::Spawn(id) = e else { continue };
            let slot = w.alloc_slot().unwrap();
            let pid = first_pid + n as i32;
            w.started(id, pid, slot, now);
            pids.push(pid);
        }
        pids
    }

    /// Feeds an exit as `reap` would.
    fn exit(w: &mut Workers, pid: i32, status: i32, now: Instant) -> Exit {
        let p = w.procs.remove(&pid).unwrap();
        w.on_exit(pid, p, status, now, |_| false)
    }

    fn code(c: i32) -> i32 {
        c << 8
    }

    #[test]
    fn worker_policy_backs_off_exponentially_and_never_gives_up() {
        let p = worker_policy(Duration::from_secs(60));
        assert_eq!(p.startretries, None);
        let delays: Vec<u128> = (1..=5).map(|n| p.backoff.delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600]);
        assert_eq!(p.backoff.delay(50), WORKER_BACKOFF_MAX);
    }

    #[test]
    fn a_worker_is_running_once_accepting_for_startsecs() {
        let mut w = workers();
        let t0 = Instant::now();
        let pids = spawn_all(&mut w, 1, t0, 100);
        assert_eq!(pids, [100]);
        assert_eq!(w.state(1), Some(State::Starting));
        let later = t0 + WORKER_STARTSECS;
        assert!(w.tick(1, later, |_| false).is_empty(), "not accepting yet");
        assert_eq!(w.state(1), Some(State::Starting));
        assert_eq!(
            w.tick(1, later, |_| true),
            vec![Event::Running { id: 1, pid: 100 }]
        );
        assert_eq!(w.state(1), Some(State::Running));
    }

    #[test]
    fn quick_deaths_back_off_then_a_running_death_respawns_at_once() {
        let mut w = workers();
        let mut now = Instant::now();
        let mut pid = spawn_all(&mut w, 1, now, 100)[0];
        let mut waits = Vec::new();
        for _ in 0..3 {
            let e = exit(&mut w, pid, code(3), now);
            let ExitKind::Backoff(wait) = e.kind else {
                panic!("{:?}", e.kind)
            };
            waits.push(wait.as_millis());
            assert_eq!(w.state(1), Some(State::Backoff));
            assert!(w.tick(1, now, |_| true).is_empty(), "waits first");
            now += wait;
            pid += 1;
            assert_eq!(spawn_all(&mut w, 1, now, pid), [pid]);
        }
        assert_eq!(waits, [100, 200, 400]);
        now += WORKER_STARTSECS;
        w.tick(1, now, |_| true);
        assert_eq!(w.state(1), Some(State::Running));
        let e = exit(&mut w, pid, libc::SIGKILL, now);
        assert_eq!(e.kind, ExitKind::Exited);
        assert_eq!(e.describe(), "was killed by SIGKILL");
        assert_eq!(w.tick(1, now, |_| true), vec![Event::Spawn(1)]);
    }

    #[test]
    fn rows_show_each_process_and_each_waiting_id() {
        let mut w = workers();
        let now = Instant::now();
        let pids = spawn_all(&mut w, 3, now, 100);
        let state = |w: &Workers| -> Vec<(usize, Option<i32>, State)> {
            w.rows(now, |_| false)
                .into_iter()
                .map(|r| (r.id, r.pid, r.state))
                .collect()
        };
        assert_eq!(
            state(&w),
            [
                (1, Some(100), State::Starting),
                (2, Some(101), State::Starting),
                (3, Some(102), State::Starting)
            ]
        );
        w.tick(3, now + WORKER_STARTSECS, |_| true);
        // Id 2 crashes after RUNNING: EXITED until respawned; id 3 is
        // asked to recycle; id 1's process is retired by a reload.
        exit(&mut w, pids[1], libc::SIGKILL, now);
        w.retire(pids[0]);
        let rows = w.rows(now, |slot| slot == w.procs[&pids[2]].slot);
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.id, r.pid, r.state, r.retired, r.description.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    1,
                    Some(100),
                    State::Stopping,
                    true,
                    "old generation, draining"
                ),
                (2, None, State::Exited, false, ""),
                (3, Some(102), State::Stopping, false, "recycling"),
            ]
        );
        // A quick death: BACKOFF, listed without a process.
        assert_eq!(
            w.tick(3, now, |_| true),
            vec![Event::Spawn(1), Event::Spawn(2)]
        );
        let slot = w.alloc_slot().unwrap();
        w.started(2, 200, slot, now);
        exit(&mut w, 200, code(3), now);
        let row = w
            .rows(now, |_| false)
            .into_iter()
            .find(|r| r.id == 2)
            .unwrap();
        assert_eq!((row.pid, row.slot, row.state), (None, None, State::Backoff));
        assert!(row.description.starts_with("exited too quickly"), "{row:?}");
    }

    #[test]
    fn a_boot_error_is_fatal() {
        let mut w = workers();
        let now = Instant::now();
        let pid = spawn_all(&mut w, 1, now, 100)[0];
        let e = exit(&mut w, pid, code(EXIT_BOOT_ERROR), now);
        assert_eq!(e.kind, ExitKind::BootFailure);
        assert_eq!(w.state(1), Some(State::Fatal));
        assert!(w
            .tick(1, now + Duration::from_secs(60), |_| true)
            .is_empty());
    }

    #[test]
    fn retiring_frees_ids_for_the_next_generation() {
        let mut w = workers();
        let now = Instant::now();
        spawn_all(&mut w, 2, now, 100);
        assert!(w.tick(2, now, |_| false).is_empty());
        let mut old = w.retire_all();
        old.sort();
        assert_eq!(old, vec![100, 101]);
        assert_eq!(w.restart_all(2), vec![1, 2]);
        assert_eq!(w.alive(), 2);
        assert_eq!(w.current().count(), 0);
        // The old generation's exits are not failures.
        let e = exit(&mut w, 100, code(0), now);
        assert_eq!(e.kind, ExitKind::Retired);
        assert_eq!(w.state(1), Some(State::Starting));
    }

    #[test]
    fn scale_down_retires_the_highest_id_and_forgets_it() {
        let mut w = workers();
        let now = Instant::now();
        spawn_all(&mut w, 3, now, 10);
        assert_eq!(w.retire_highest(2), Some(12));
        assert_eq!(w.retire_highest(2), None);
        assert!(w.tick(2, now, |_| true).is_empty());
        assert_eq!(w.state(3), None);
        assert_eq!(w.id_status(now).len(), 2);
    }

    #[test]
    fn shutdown_stops_every_id() {
        let mut w = workers();
        let now = Instant::now();
        let pids = spawn_all(&mut w, 2, now, 10);
        w.stop_all(now);
        assert_eq!(w.state(1), Some(State::Stopping));
        let e = exit(&mut w, pids[0], code(0), now);
        assert_eq!(e.kind, ExitKind::Stopped);
        assert_eq!(w.state(1), Some(State::Stopped));
    }

    /// Spawns ids 1..=target and lets them all become RUNNING.
    fn running(w: &mut Workers, target: usize, now: Instant, first_pid: i32) -> Vec<i32> {
        let pids = spawn_all(w, target, now, first_pid);
        w.tick(target, now + WORKER_STARTSECS, |_| true);
        for id in 1..=target {
            assert_eq!(w.state(id), Some(State::Running));
        }
        pids
    }

    #[test]
    fn a_boot_error_while_others_run_backs_off_instead() {
        let mut w = workers();
        let now = Instant::now();
        let pids = running(&mut w, 2, now, 100);
        let e = exit(&mut w, pids[0], libc::SIGKILL, now);
        assert_eq!(e.kind, ExitKind::Exited);
        assert_eq!(w.tick(2, now, |_| true), vec![Event::Spawn(1)]);
        let slot = w.alloc_slot().unwrap();
        w.started(1, 200, slot, now);
        let e = exit(&mut w, 200, code(EXIT_BOOT_ERROR), now);
        assert_eq!(e.kind, ExitKind::BootRetry(WORKER_BACKOFF_FIRST));
        assert_eq!(w.state(1), Some(State::Backoff));
        assert!(w.id_status(now)[0]
            .description
            .starts_with("could not load the app; failed start 1"));
        assert_eq!(
            w.tick(2, now + WORKER_BACKOFF_FIRST, |_| true),
            vec![Event::Spawn(1)]
        );
        // The last RUNNING worker gone too: a boot failure is FATAL again.
        let slot = w.alloc_slot().unwrap();
        w.started(1, 201, slot, now);
        exit(&mut w, pids[1], libc::SIGKILL, now);
        let e = exit(&mut w, 201, code(EXIT_BOOT_ERROR), now);
        assert_eq!(e.kind, ExitKind::BootFailure);
    }

    #[test]
    fn an_aborted_reload_restores_the_old_generation() {
        let mut w = workers();
        let now = Instant::now();
        let old = running(&mut w, 3, now, 100);
        let retired = w.retire_all();
        assert_eq!(w.restart_all(3), vec![1, 2, 3]);
        for (n, id) in (1..=3).enumerate() {
            let slot = w.alloc_slot().unwrap();
            w.started(id, 200 + n as i32, slot, now);
        }
        // The old worker 3 died during the reload; new worker 1 cannot
        // load the app, new worker 2 is still starting, new 3 accepts.
        assert_eq!(exit(&mut w, old[2], code(0), now).kind, ExitKind::Retired);
        assert_eq!(
            exit(&mut w, 200, code(EXIT_BOOT_ERROR), now).kind,
            ExitKind::BootFailure
        );
        let mut new = w.restore_generation(&retired, now);
        new.sort();
        assert_eq!(new, vec![201, 202]);
        let mut current: Vec<i32> = w.current().map(|(pid, _)| pid).collect();
        current.sort();
        assert_eq!(current, vec![old[0], old[1]]);
        assert_eq!(w.state(1), Some(State::Running));
        assert_eq!(w.state(2), Some(State::Running));
        // Id 3 lost its old worker: started again.
        assert_eq!(w.state(3), Some(State::Stopped));
        assert_eq!(w.tick(3, now, |_| true), vec![Event::Spawn(3)]);
        // The retired new workers' exits are not failures.
        assert_eq!(exit(&mut w, 201, code(0), now).kind, ExitKind::Retired);
        // A restored worker that dies is respawned at once.
        assert_eq!(
            exit(&mut w, old[0], libc::SIGKILL, now).kind,
            ExitKind::Exited
        );
    }
}
