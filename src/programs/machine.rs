//! The process state machine (supervisord's), pure: no processes, no
//! clocks. The caller feeds events (`start`, `spawned`, `exited`, `stop`)
//! and the time, and performs the [`Action`]s it gets back.
//!
//! ```text
//!            start                 startsecs passed
//! STOPPED ──────────> STARTING ───────────────────────> RUNNING
//!   ^                  │   ^                              │ exit
//!   │          exit    v   │ after n × backoff            v
//!   │  (too soon)   BACKOFF ─── retries > startretries ─> FATAL
//!   │                                                     (start again by hand)
//!   │            EXITED <─────────────────────────────────┘
//!   │              │ autorestart (true, or unexpected exit code): STARTING
//!   └── STOPPING <─┴── stop (from STARTING or RUNNING): stopsignal,
//!                       then SIGKILL after stopwait
//! ```
//!
//! Nothing here is specific to `[program:x]`: a [`Policy`] holds every knob,
//! so the worker table can adopt the same machine with its own policy.

use std::time::{Duration, Instant};

use crate::config::sections::AutoRestart;

/// The longest wait between two start attempts, however many failed.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Stopped,
    Starting,
    Running,
    Backoff,
    Stopping,
    Exited,
    Fatal,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Stopped => "STOPPED",
            State::Starting => "STARTING",
            State::Running => "RUNNING",
            State::Backoff => "BACKOFF",
            State::Stopping => "STOPPING",
            State::Exited => "EXITED",
            State::Fatal => "FATAL",
        }
    }

    /// A process exists in these states.
    pub fn has_process(self) -> bool {
        matches!(self, State::Starting | State::Running | State::Stopping)
    }
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// It could not be started at all (exec failed).
    SpawnError,
}

impl Exit {
    /// From a waitpid status.
    pub fn from_status(status: i32) -> Exit {
        if libc::WIFSIGNALED(status) {
            Exit::Signal(libc::WTERMSIG(status))
        } else {
            Exit::Code(libc::WEXITSTATUS(status))
        }
    }

    pub fn describe(self) -> String {
        match self {
            Exit::Code(c) => format!("exited with code {c}"),
            Exit::Signal(s) => format!("was killed by {}", crate::master::signals::name(s)),
            Exit::SpawnError => "could not be started".into(),
        }
    }
}

/// Every knob of the machine.
#[derive(Clone, Debug)]
pub struct Policy {
    /// How long a process must live to count as started.
    pub startsecs: Duration,
    /// Failed starts allowed before FATAL; `None` retries forever.
    pub startretries: Option<u32>,
    /// The n-th retry waits n × this (capped at [`MAX_BACKOFF`]).
    pub backoff_step: Duration,
    pub autorestart: AutoRestart,
    pub exitcodes: Vec<i32>,
    pub stopsignal: i32,
    pub stopwait: Duration,
}

/// What the caller must do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Spawn,
    /// Send this signal (the stop signal).
    Signal(i32),
    /// SIGKILL: the stop wait ran out.
    Kill,
}

#[derive(Debug)]
pub struct Machine {
    state: State,
    /// When the current process was spawned.
    spawned_at: Option<Instant>,
    /// Failed starts in a row.
    retries: u32,
    next_try: Option<Instant>,
    kill_at: Option<Instant>,
    last_exit: Option<Exit>,
}

impl Default for Machine {
    fn default() -> Self {
        Machine::new()
    }
}

impl Machine {
    pub fn new() -> Machine {
        Machine {
            state: State::Stopped,
            spawned_at: None,
            retries: 0,
            next_try: None,
            kill_at: None,
            last_exit: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn last_exit(&self) -> Option<Exit> {
        self.last_exit
    }

    /// A start request (autostart, or by hand). Resets the retry count.
    pub fn start(&mut self) -> Option<Action> {
        match self.state {
            State::Stopped | State::Exited | State::Fatal | State::Backoff => {
                self.retries = 0;
                self.next_try = None;
                self.state = State::Starting;
                self.spawned_at = None;
                Some(Action::Spawn)
            }
            State::Starting | State::Running | State::Stopping => None,
        }
    }

    /// The caller spawned the process.
    pub fn spawned(&mut self, policy: &Policy, now: Instant) {
        self.spawned_at = Some(now);
        if policy.startsecs.is_zero() {
            self.state = State::Running;
            self.retries = 0;
        }
    }

    /// The process exited (or could not be spawned).
    pub fn exited(&mut self, policy: &Policy, now: Instant, exit: Exit) {
        self.last_exit = Some(exit);
        self.kill_at = None;
        match self.state {
            State::Stopping => self.state = State::Stopped,
            State::Starting => {
                self.retries = self.retries.saturating_add(1);
                let wait = policy
                    .backoff_step
                    .saturating_mul(self.retries)
                    .min(MAX_BACKOFF);
                self.next_try = Some(now + wait);
                self.state = State::Backoff;
            }
            State::Running => self.state = State::Exited,
            // An exit we did not expect a process for: nothing to track.
            State::Stopped | State::Backoff | State::Exited | State::Fatal => {}
        }
    }

    /// A stop request. `wait` overrides the policy's stop wait (fast shutdown).
    pub fn stop(
        &mut self,
        policy: &Policy,
        now: Instant,
        wait: Option<Duration>,
    ) -> Option<Action> {
        match self.state {
            State::Starting | State::Running => {
                self.state = State::Stopping;
                self.kill_at = Some(now + wait.unwrap_or(policy.stopwait).min(policy.stopwait));
                Some(Action::Signal(policy.stopsignal))
            }
            State::Stopping => {
                // A second, more urgent stop shortens the wait.
                if let (Some(w), Some(at)) = (wait, self.kill_at) {
                    self.kill_at = Some(at.min(now + w));
                }
                None
            }
            State::Backoff => {
                self.state = State::Stopped;
                self.next_try = None;
                None
            }
            State::Stopped | State::Exited | State::Fatal => None,
        }
    }

    /// Time-driven transitions; call often.
    pub fn tick(&mut self, policy: &Policy, now: Instant) -> Option<Action> {
        match self.state {
            State::Starting => {
                if let Some(at) = self.spawned_at {
                    if now.saturating_duration_since(at) >= policy.startsecs {
                        self.state = State::Running;
                        self.retries = 0;
                    }
                }
                None
            }
            State::Backoff => {
                if policy.startretries.is_some_and(|max| self.retries > max) {
                    self.state = State::Fatal;
                    return None;
                }
                if self.next_try.is_some_and(|t| now >= t) {
                    self.state = State::Starting;
                    self.spawned_at = None;
                    self.next_try = None;
                    return Some(Action::Spawn);
                }
                None
            }
            State::Exited => {
                let expected =
                    matches!(self.last_exit, Some(Exit::Code(c)) if policy.exitcodes.contains(&c));
                let restart = match policy.autorestart {
                    AutoRestart::Always => true,
                    AutoRestart::Never => false,
                    AutoRestart::Unexpected => !expected,
                };
                if restart {
                    self.state = State::Starting;
                    self.spawned_at = None;
                    return Some(Action::Spawn);
                }
                None
            }
            State::Stopping => {
                if self.kill_at.is_some_and(|t| now >= t) {
                    self.kill_at = None;
                    return Some(Action::Kill);
                }
                None
            }
            State::Stopped | State::Running | State::Fatal => None,
        }
    }

    /// Whether the last exit was expected (for status text).
    pub fn exit_expected(&self, policy: &Policy) -> bool {
        matches!(self.last_exit, Some(Exit::Code(c)) if policy.exitcodes.contains(&c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            startsecs: Duration::from_secs(1),
            startretries: Some(2),
            backoff_step: Duration::from_secs(1),
            autorestart: AutoRestart::Unexpected,
            exitcodes: vec![0],
            stopsignal: libc::SIGTERM,
            stopwait: Duration::from_secs(10),
        }
    }

    fn secs(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn starts_then_runs_after_startsecs() {
        let (p, t0) = (policy(), Instant::now());
        let mut m = Machine::new();
        assert_eq!(m.start(), Some(Action::Spawn));
        m.spawned(&p, t0);
        assert_eq!(m.tick(&p, t0), None);
        assert_eq!(m.state(), State::Starting);
        m.tick(&p, secs(t0, 1));
        assert_eq!(m.state(), State::Running);
        assert_eq!(m.start(), None, "already running");
    }

    #[test]
    fn early_exits_back_off_linearly_then_fatal() {
        let (p, t0) = (policy(), Instant::now());
        let mut m = Machine::new();
        m.start();
        m.spawned(&p, t0);
        m.exited(&p, t0, Exit::Code(1));
        assert_eq!(m.state(), State::Backoff);
        assert_eq!(m.tick(&p, t0), None, "waits 1 s");
        assert_eq!(m.tick(&p, secs(t0, 1)), Some(Action::Spawn));
        m.spawned(&p, secs(t0, 1));
        m.exited(&p, secs(t0, 1), Exit::Code(1));
        assert_eq!(m.tick(&p, secs(t0, 2)), None, "the second retry waits 2 s");
        assert_eq!(m.tick(&p, secs(t0, 3)), Some(Action::Spawn));
        m.spawned(&p, secs(t0, 3));
        m.exited(&p, secs(t0, 3), Exit::Code(1));
        assert_eq!(m.state(), State::Backoff);
        assert_eq!(m.tick(&p, secs(t0, 3)), None);
        assert_eq!(
            m.state(),
            State::Fatal,
            "1 start + startretries (2) attempts failed"
        );
        assert_eq!(m.tick(&p, secs(t0, 100)), None);
        assert_eq!(
            m.start(),
            Some(Action::Spawn),
            "FATAL can be started by hand"
        );
    }

    #[test]
    fn retry_forever_caps_the_backoff() {
        let mut p = policy();
        p.startretries = None;
        let t0 = Instant::now();
        let mut m = Machine::new();
        m.start();
        let mut now = t0;
        for _ in 0..100 {
            m.spawned(&p, now);
            m.exited(&p, now, Exit::Code(1));
            now += MAX_BACKOFF;
            assert_eq!(m.tick(&p, now), Some(Action::Spawn));
        }
        assert_eq!(m.state(), State::Starting);
    }

    #[test]
    fn exit_after_running_restarts_per_autorestart() {
        let t0 = Instant::now();
        for (mode, exit, restarts) in [
            (AutoRestart::Unexpected, Exit::Code(0), false),
            (AutoRestart::Unexpected, Exit::Code(2), true),
            (AutoRestart::Unexpected, Exit::Signal(libc::SIGSEGV), true),
            (AutoRestart::Always, Exit::Code(0), true),
            (AutoRestart::Never, Exit::Code(2), false),
        ] {
            let mut p = policy();
            p.autorestart = mode;
            let mut m = Machine::new();
            m.start();
            m.spawned(&p, t0);
            m.tick(&p, secs(t0, 5));
            m.exited(&p, secs(t0, 6), exit);
            assert_eq!(m.state(), State::Exited);
            let action = m.tick(&p, secs(t0, 6));
            assert_eq!(action == Some(Action::Spawn), restarts, "{mode:?} {exit:?}");
        }
    }

    #[test]
    fn stop_signals_then_kills_after_stopwait() {
        let (p, t0) = (policy(), Instant::now());
        let mut m = Machine::new();
        m.start();
        m.spawned(&p, t0);
        assert_eq!(m.stop(&p, t0, None), Some(Action::Signal(libc::SIGTERM)));
        assert_eq!(m.state(), State::Stopping);
        assert_eq!(m.tick(&p, secs(t0, 9)), None);
        assert_eq!(m.tick(&p, secs(t0, 10)), Some(Action::Kill));
        assert_eq!(m.tick(&p, secs(t0, 11)), None, "one SIGKILL");
        m.exited(&p, secs(t0, 11), Exit::Signal(libc::SIGKILL));
        assert_eq!(m.state(), State::Stopped);
        assert_eq!(m.tick(&p, secs(t0, 20)), None, "stopped stays stopped");
    }

    #[test]
    fn fast_stop_shortens_the_wait_and_backoff_stops_at_once() {
        let (p, t0) = (policy(), Instant::now());
        let mut m = Machine::new();
        m.start();
        m.spawned(&p, t0);
        m.stop(&p, t0, None);
        m.stop(&p, t0, Some(Duration::from_secs(3)));
        assert_eq!(m.tick(&p, secs(t0, 3)), Some(Action::Kill));

        let mut m = Machine::new();
        m.start();
        m.spawned(&p, t0);
        m.exited(&p, t0, Exit::Code(1));
        assert_eq!(m.stop(&p, t0, None), None);
        assert_eq!(m.state(), State::Stopped);
    }

    #[test]
    fn startsecs_zero_is_running_at_once() {
        let mut p = policy();
        p.startsecs = Duration::ZERO;
        let mut m = Machine::new();
        m.start();
        m.spawned(&p, Instant::now());
        assert_eq!(m.state(), State::Running);
    }
}
