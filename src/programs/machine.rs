//! The process state machine (supervisord's), pure: no processes, no
//! clocks. The caller feeds events (`start`, `spawned`, `exited`, `stop`)
//! and the time, and performs the [`Action`]s it gets back.
//!
//! ```text
//!            start                 startsecs passed
//! STOPPED ──────────> STARTING ───────────────────────> RUNNING
//!   ^                  │   ^                              │ exit
//!   │          exit    v   │ after backoff(n)             v
//!   │  (too soon)   BACKOFF ─── retries > startretries ─> FATAL
//!   │                                                     (start again by hand)
//!   │            EXITED <─────────────────────────────────┘
//!   │              │ autorestart (true, or unexpected exit code): STARTING
//!   └── STOPPING <─┴── stop (from STARTING or RUNNING): stopsignal,
//!                       then SIGKILL after stopwait
//! ```
//!
//! Nothing here is specific to `[program:x]`: a [`Policy`] holds every knob.
//! The same machine runs the `[program:x]` processes (policy from their
//! section, see [`crate::programs`]) and each web worker id (policy
//! `crate::master::supervise::worker_policy`). The knobs that exist for the
//! workers' sake:
//!
//! - [`Backoff::Exponential`]: programs back off linearly (supervisord's
//!   `n × backoffsecs`), workers exponentially;
//! - [`Policy::wait_ready`]: a process leaves STARTING only once it said it
//!   is ready ([`Machine::ready`]; a worker: accepting connections) *and*
//!   lived `startsecs`;
//! - [`Policy::fatal_exitcodes`]: exit codes that mean "retrying cannot
//!   help" and go to FATAL at once (a worker that cannot import the app);
//! - [`Machine::detach`]: the process is handed off and drains on its own
//!   (a worker retired by a reload or recycling); the machine is free for a
//!   successor at once.
//!   [`Machine::attach`] takes a handed-off process back (an aborted reload
//!   keeps the previous generation).

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
    /// Every state, in the order of the diagram above.
    pub const ALL: [State; 7] = [
        State::Stopped,
        State::Starting,
        State::Running,
        State::Backoff,
        State::Stopping,
        State::Exited,
        State::Fatal,
    ];

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

/// How long BACKOFF waits before the n-th retry (n counts from 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backoff {
    /// n × step (supervisord's), capped at [`MAX_BACKOFF`].
    Linear(Duration),
    /// first × 2^(n-1), capped at `max` (and at [`MAX_BACKOFF`]).
    Exponential { first: Duration, max: Duration },
}

impl Backoff {
    pub fn delay(self, retry: u32) -> Duration {
        match self {
            Backoff::Linear(step) => step.saturating_mul(retry).min(MAX_BACKOFF),
            Backoff::Exponential { first, max } => {
                let doublings = retry.saturating_sub(1).min(20);
                first
                    .saturating_mul(1 << doublings)
                    .min(max)
                    .min(MAX_BACKOFF)
            }
        }
    }
}

/// Every knob of the machine.
#[derive(Clone, Debug)]
pub struct Policy {
    /// How long a process must live to count as started.
    pub startsecs: Duration,
    /// Also wait for [`Machine::ready`] before RUNNING.
    pub wait_ready: bool,
    /// Failed starts allowed before FATAL; `None` retries forever.
    pub startretries: Option<u32>,
    pub backoff: Backoff,
    /// Exit codes that go to FATAL at once, without retrying.
    pub fatal_exitcodes: Vec<i32>,
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
    /// The current process said it is ready (see [`Policy::wait_ready`]).
    ready: bool,
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
            ready: false,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn last_exit(&self) -> Option<Exit> {
        self.last_exit
    }

    /// Failed starts in a row.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// When BACKOFF will try again.
    pub fn next_try(&self) -> Option<Instant> {
        self.next_try
    }

    /// The process reports it is ready (a worker accepts connections).
    pub fn ready(&mut self) {
        if self.state == State::Starting && self.spawned_at.is_some() {
            self.ready = true;
        }
    }

    /// The process was handed off: it goes on (draining) outside this
    /// machine, which becomes STOPPED and can start a successor at once.
    /// A clean hand-off is not a failure: the retry count resets.
    pub fn detach(&mut self) {
        if self.state.has_process() {
            self.state = State::Stopped;
            self.spawned_at = None;
            self.kill_at = None;
            self.ready = false;
            self.retries = 0;
        }
    }

    /// The inverse of [`Machine::detach`]: a process handed off while
    /// RUNNING is this machine's again, RUNNING (a worker of the previous
    /// generation kept when a reload is aborted).
    pub fn attach(&mut self, now: Instant) {
        self.state = State::Running;
        self.spawned_at = Some(now);
        self.next_try = None;
        self.kill_at = None;
        self.ready = true;
        self.retries = 0;
    }

    /// A start request (autostart, or by hand). Resets the retry count.
    pub fn start(&mut self) -> Option<Action> {
        match self.state {
            State::Stopped | State::Exited | State::Fatal | State::Backoff => {
                self.ready = false;
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
        self.ready = false;
        if policy.startsecs.is_zero() && !policy.wait_ready {
            self.state = State::Running;
            self.retries = 0;
        }
    }

    /// The process exited (or could not be spawned).
    pub fn exited(&mut self, policy: &Policy, now: Instant, exit: Exit) {
        self.last_exit = Some(exit);
        self.kill_at = None;
        self.ready = false;
        let hopeless = matches!(exit, Exit::Code(c) if policy.fatal_exitcodes.contains(&c));
        match self.state {
            State::Stopping => self.state = State::Stopped,
            State::Starting | State::Running if hopeless => {
                self.next_try = None;
                self.state = State::Fatal;
            }
            State::Starting => {
                self.retries = self.retries.saturating_add(1);
                self.next_try = Some(now + policy.backoff.delay(self.retries));
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
                    if now.saturating_duration_since(at) >= policy.startsecs
                        && (self.ready || !policy.wait_ready)
                    {
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
            wait_ready: false,
            startretries: Some(2),
            backoff: Backoff::Linear(Duration::from_secs(1)),
            fatal_exitcodes: Vec::new(),
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

    #[test]
    fn exponential_backoff_doubles_up_to_its_cap() {
        let b = Backoff::Exponential {
            first: Duration::from_millis(100),
            max: Duration::from_secs(10),
        };
        let ms = |n| b.delay(n).as_millis();
        assert_eq!([ms(1), ms(2), ms(3), ms(4)], [100, 200, 400, 800]);
        assert_eq!(b.delay(8), Duration::from_secs(10));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(10));
        let linear = Backoff::Linear(Duration::from_secs(7));
        assert_eq!(linear.delay(3), Duration::from_secs(21));
        assert_eq!(linear.delay(1000), MAX_BACKOFF);
    }

    #[test]
    fn wait_ready_needs_both_ready_and_startsecs() {
        let mut p = policy();
        p.wait_ready = true;
        let t0 = Instant::now();
        let mut m = Machine::new();
        m.start();
        m.spawned(&p, t0);
        m.tick(&p, secs(t0, 5));
        assert_eq!(m.state(), State::Starting, "lived long enough, not ready");
        m.ready();
        m.tick(&p, secs(t0, 5));
        assert_eq!(m.state(), State::Running);

        let mut m = Machine::new();
        m.start();
        m.spawned(&p, t0);
        m.ready();
        m.tick(&p, t0);
        assert_eq!(m.state(), State::Starting, "ready, but not for startsecs");
        m.exited(&p, t0, Exit::Code(1));
        assert_eq!(
            m.state(),
            State::Backoff,
            "a death while STARTING is a failed start"
        );
    }

    #[test]
    fn fatal_exit_codes_give_up_at_once() {
        let mut p = policy();
        p.startretries = None;
        p.fatal_exitcodes = vec![22];
        let t0 = Instant::now();
        let mut m = Machine::new();
        m.start();
        m.spawned(&p, t0);
        m.exited(&p, t0, Exit::Code(22));
        assert_eq!(m.state(), State::Fatal);
        assert_eq!(m.tick(&p, secs(t0, 100)), None);
    }

    #[test]
    fn detach_frees_the_machine_for_a_successor() {
        let (p, t0) = (policy(), Instant::now());
        let mut m = Machine::new();
        m.start();
        m.spawned(&p, t0);
        m.exited(&p, t0, Exit::Code(1));
        m.tick(&p, secs(t0, 1));
        m.spawned(&p, secs(t0, 1));
        assert_eq!(m.retries(), 1);
        m.detach();
        assert_eq!(m.state(), State::Stopped);
        assert_eq!(m.retries(), 0);
        assert_eq!(m.start(), Some(Action::Spawn));
        m.detach();
        m.detach();
        assert_eq!(m.state(), State::Stopped);
        let mut idle = Machine::new();
        idle.detach();
        assert_eq!(idle.state(), State::Stopped);
    }

    #[test]
    fn attach_takes_a_handed_off_process_back_running() {
        let (p, t0) = (policy(), Instant::now());
        let mut m = Machine::new();
        m.start();
        m.spawned(&p, t0);
        m.tick(&p, secs(t0, 1));
        assert_eq!(m.state(), State::Running);
        m.detach();
        m.attach(secs(t0, 2));
        assert_eq!(m.state(), State::Running);
        assert_eq!(m.tick(&p, secs(t0, 3)), None);
        m.exited(&p, secs(t0, 4), Exit::Signal(libc::SIGKILL));
        assert_eq!(
            m.state(),
            State::Exited,
            "a RUNNING death, not a failed start"
        );
    }
}
