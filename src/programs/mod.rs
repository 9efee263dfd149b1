//! `[program:NAME]` side processes (supervisord's model), owned by the
//! master loop: it alone starts, stops and reaps them, through
//! [`Supervisor`], which never blocks.
//!
//! - [`machine`]: the pure state machine (STOPPED, STARTING, RUNNING,
//!   BACKOFF, STOPPING, EXITED, FATAL), unit-tested without processes;
//! - [`spawn`]: fork+exec of one process (own session, PDEATHSIG, sockets);
//! - [`logs`]: output capture threads, line-atomic writes, rotation, and the
//!   in-memory tail for `capataz ctl tail`;
//! - [`sockets`]: `[socket:NAME]` shared sockets.
//!
//! A program with `numprocs = N` is a group of N processes named by
//! `process_name`. Programs start in `priority` order and stop in reverse.
//!
//! # `reread` and `update` (supervisord's semantics)
//!
//! `reread` compares the configuration read again (ini files, `env`,
//! `env-file` contents) with what runs and reports it; `update` applies it:
//!
//! - a program whose section changed is stopped and started anew, and so
//!   is every program when capataz's `env`/`env-file` environment changed
//!   (they all get it), and every program whose command uses a changed
//!   `[socket:x]`; removed programs are stopped and dropped; added ones are
//!   added (and started if `autostart`);
//! - an added `[socket:x]` is bound at once; a removed one is closed (a
//!   unix socket's file removed, if still ours) once no process that uses
//!   it is left; a changed one is closed the same way,
//!   then bound again, and only then are its programs started.
//!
//! Where a section is written (its file and line) is not a change.

pub mod logs;
pub mod machine;
pub mod sockets;
pub mod spawn;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::sections::{expand_template, socket_references, ProgramConfig, SocketConfig};
use logs::{LogRing, Sink};
use machine::{Action, Exit, Machine, Policy, State};

/// One process of a program.
#[derive(Debug)]
pub struct Process {
    pub name: String,
    pub group: String,
    pub num: usize,
    pub program: Arc<ProgramConfig>,
    pub machine: Machine,
    pub policy: Policy,
    pub pid: Option<i32>,
    pub log: Arc<LogRing>,
    /// Being removed by `update`: stopped, then dropped.
    pub removing: bool,
    /// Added by `update` while an old process of the same name stops:
    /// started once that one is gone.
    pub start_when_clear: bool,
    /// Why the last spawn failed, for `status`.
    pub spawn_error: Option<String>,
}

impl Process {
    pub fn state(&self) -> State {
        self.machine.state()
    }

    /// supervisord-like status text.
    pub fn description(&self) -> String {
        match (self.state(), self.machine.last_exit()) {
            (State::Fatal, _) => match &self.spawn_error {
                Some(e) => format!("spawn error: {e}"),
                None => "exited too quickly (gave up)".into(),
            },
            (State::Backoff, Some(e)) => format!("exited too quickly ({})", e.describe()),
            (State::Exited, Some(e)) => {
                let how = if self.machine.exit_expected(&self.policy) {
                    "expected"
                } else {
                    "unexpected"
                };
                format!("{} ({how})", e.describe())
            }
            _ => String::new(),
        }
    }
}

fn policy(p: &ProgramConfig) -> Policy {
    Policy {
        startsecs: Duration::from_secs(p.startsecs),
        wait_ready: false,
        startretries: p.startretries,
        backoff: machine::Backoff::Linear(Duration::from_secs(p.backoffsecs)),
        fatal_exitcodes: Vec::new(),
        autorestart: p.autorestart,
        exitcodes: p.exitcodes.clone(),
        stopsignal: p.stopsignal,
        stopwait: Duration::from_secs(p.stopwaitsecs),
    }
}

/// The names of a program's processes.
pub fn process_names(p: &ProgramConfig) -> Result<Vec<(usize, String)>, String> {
    (p.numprocs_start..p.numprocs_start + p.numprocs)
        .map(|num| {
            Ok((
                num,
                expand_template(&p.process_name, &spawn::template_lookup(p, num))?,
            ))
        })
        .collect()
}

/// What `reread` found, by program name, `socket:NAME` for a
/// `[socket:x]`, and `env` for capataz's `env`/`env-file` environment.
#[derive(Debug, Default, serde::Serialize)]
pub struct Changes {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// Shared sockets that could not be bound by `update`.
    #[serde(skip)]
    pub errors: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// Two program sections mean the same program (where they are written does
/// not matter).
fn same_program(a: &ProgramConfig, b: &ProgramConfig) -> bool {
    let origin = String::new();
    ProgramConfig {
        origin: origin.clone(),
        ..a.clone()
    } == ProgramConfig {
        origin,
        ..b.clone()
    }
}

/// Every program process, in priority order.
#[derive(Debug)]
pub struct Supervisor {
    procs: Vec<Process>,
    /// capataz's `env` and `env-file` entries, given to every program.
    env: Vec<(String, String)>,
    /// The `[socket:x]` sockets, for `$(capataz.sockets.NAME)`.
    sockets: sockets::SocketTable,
    /// Whether programs may start (false once shutting down).
    accepting: bool,
}

impl Supervisor {
    pub fn new(env: Vec<(String, String)>, sockets: sockets::SocketTable) -> Supervisor {
        Supervisor {
            procs: Vec::new(),
            env,
            sockets,
            accepting: true,
        }
    }

    fn add_program(&mut self, program: ProgramConfig, start_when_clear: bool) {
        let names = match process_names(&program) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("[program:{}]: {e}", program.name);
                return;
            }
        };
        let program = Arc::new(program);
        for (num, name) in names {
            let at = self
                .procs
                .iter()
                .position(|p| p.program.priority > program.priority)
                .unwrap_or(self.procs.len());
            self.procs.insert(
                at,
                Process {
                    name,
                    group: program.name.clone(),
                    num,
                    policy: policy(&program),
                    program: program.clone(),
                    machine: Machine::new(),
                    pid: None,
                    log: Arc::new(LogRing::default()),
                    removing: false,
                    start_when_clear: start_when_clear && program.autostart,
                    spawn_error: None,
                },
            );
        }
    }

    /// Adds the configured programs and starts those with `autostart`.
    pub fn start_configured(&mut self, programs: &[ProgramConfig], now: Instant) {
        for p in programs {
            self.add_program(p.clone(), false);
        }
        for i in 0..self.procs.len() {
            if self.procs[i].program.autostart {
                self.start_index(i, now);
            }
        }
    }

    pub fn processes(&self) -> &[Process] {
        &self.procs
    }

    /// Indexes of the processes `name` selects: `all`, a program (group)
    /// name, `group:*`, or a process name. Empty when none match.
    pub fn select(&self, name: &str) -> Vec<usize> {
        let group = name.strip_suffix(":*").unwrap_or(name);
        self.procs
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.removing)
            .filter(|(_, p)| name == "all" || p.group == group || p.name == name)
            .map(|(i, _)| i)
            .collect()
    }

    fn perform(&mut self, i: usize, action: Action, now: Instant) {
        if action == Action::Spawn {
            return self.spawn_index(i, now);
        }
        let p = &self.procs[i];
        match action {
            Action::Spawn => {}
            Action::Signal(sig) => {
                if let Some(pid) = p.pid {
                    tracing::info!(
                        "program {} (pid: {pid}): sending {}",
                        p.name,
                        crate::master::signals::name(sig)
                    );
                    signal_process(pid, sig, p.program.stopasgroup);
                }
            }
            Action::Kill => {
                if let Some(pid) = p.pid {
                    tracing::warn!(
                        "program {} (pid: {pid}) still running after stopwaitsecs; sending SIGKILL",
                        p.name
                    );
                    signal_process(pid, libc::SIGKILL, p.program.killasgroup);
                }
            }
        }
    }

    fn spawn_index(&mut self, i: usize, now: Instant) {
        if !self.accepting {
            // Shutting down: leave it stopped.
            self.procs[i].machine = Machine::new();
            return;
        }
        let (env, sockets) = (&self.env, self.sockets.fds());
        let p = &mut self.procs[i];
        let result = spawn::spawn(&p.program, p.num, &p.name, env, &sockets).and_then(|started| {
            let lookup = spawn::template_lookup(&p.program, p.num);
            let expand = |s: &str| expand_template(s, &lookup);
            let out = Sink::for_target(&p.program.stdout, true, &p.name, expand)?;
            if let Some(fd) = started.stdout {
                logs::capture(&p.name, fd, out, p.log.clone())?;
            }
            let expand = |s: &str| expand_template(s, &lookup);
            let err = Sink::for_target(&p.program.stderr, false, &p.name, expand)?;
            if let Some(fd) = started.stderr {
                logs::capture(&p.name, fd, err, p.log.clone())?;
            }
            Ok(started.pid)
        });
        match result {
            Ok(pid) => {
                tracing::info!("spawned program {} (pid: {pid})", p.name);
                p.pid = Some(pid);
                p.spawn_error = None;
                p.machine.spawned(&p.policy, now);
            }
            Err(e) => {
                tracing::error!("program {}: cannot start: {e}", p.name);
                p.spawn_error = Some(e.to_string());
                p.machine.exited(&p.policy, now, Exit::SpawnError);
            }
        }
    }

    fn start_index(&mut self, i: usize, now: Instant) -> bool {
        match self.procs[i].machine.start() {
            Some(action) => {
                self.perform(i, action, now);
                true
            }
            None => false,
        }
    }

    /// Starts the selected processes; returns how many were not running.
    pub fn start(&mut self, indexes: &[usize], now: Instant) -> usize {
        indexes
            .iter()
            .filter(|&&i| self.start_index(i, now))
            .count()
    }

    /// Stops the selected processes (in reverse priority order); returns
    /// how many were running.
    pub fn stop(&mut self, indexes: &[usize], now: Instant, wait: Option<Duration>) -> usize {
        let mut stopped = 0;
        for &i in indexes.iter().rev() {
            let had =
                self.procs[i].state().has_process() || self.procs[i].state() == State::Backoff;
            let p = &mut self.procs[i];
            if let Some(action) = p.machine.stop(&p.policy, now, wait) {
                self.perform(i, action, now);
            }
            stopped += usize::from(had);
        }
        stopped
    }

    /// Sends `sig` to the selected processes that run; returns how many.
    pub fn signal(&mut self, indexes: &[usize], sig: i32) -> usize {
        let mut sent = 0;
        for &i in indexes {
            if let Some(pid) = self.procs[i].pid {
                signal_process(pid, sig, false);
                sent += 1;
            }
        }
        sent
    }

    /// Shutdown: stop everything, start nothing new. `fast` caps the wait
    /// before SIGKILL at 3 s.
    pub fn stop_all(&mut self, fast: bool, now: Instant) {
        self.accepting = false;
        let all: Vec<usize> = (0..self.procs.len()).collect();
        self.stop(&all, now, fast.then_some(Duration::from_secs(3)));
    }

    /// The `[socket:x]` unix socket files we bound, for `vacuum`.
    pub fn unix_socket_files(
        &self,
    ) -> impl Iterator<Item = &crate::master::listeners::UnixSocketFile> {
        self.sockets.unix_files()
    }

    /// True once no program process is alive.
    pub fn all_down(&self) -> bool {
        self.procs.iter().all(|p| p.pid.is_none())
    }

    /// A child exited; returns false if it is not one of ours.
    pub fn on_exit(&mut self, pid: i32, status: i32, now: Instant) -> bool {
        let Some(p) = self.procs.iter_mut().find(|p| p.pid == Some(pid)) else {
            return false;
        };
        let exit = Exit::from_status(status);
        p.pid = None;
        let before = p.state();
        p.machine.exited(&p.policy, now, exit);
        let after = p.state();
        match after {
            State::Backoff => tracing::warn!(
                "program {} (pid: {pid}) {} before startsecs ({} s); backing off",
                p.name,
                exit.describe(),
                p.program.startsecs
            ),
            State::Exited if !p.machine.exit_expected(&p.policy) => {
                tracing::warn!("program {} (pid: {pid}) {}", p.name, exit.describe())
            }
            _ => tracing::info!(
                "program {} (pid: {pid}) {} ({} -> {})",
                p.name,
                exit.describe(),
                before.name(),
                after.name()
            ),
        }
        true
    }

    /// Time-driven transitions, starts that wait on a removal, and removal
    /// of stopped processes. Call every loop.
    pub fn tick(&mut self, now: Instant) {
        for i in 0..self.procs.len() {
            let before = self.procs[i].state();
            let p = &mut self.procs[i];
            let action = p.machine.tick(&p.policy, now);
            let after = p.state();
            if before != after {
                match after {
                    State::Running => tracing::info!("program {} is RUNNING", p.name),
                    State::Fatal => tracing::error!(
                        "program {} is FATAL: gave up after {} failed start(s)",
                        p.name,
                        p.program.startretries.map_or(0, |n| n + 1)
                    ),
                    _ => {}
                }
            }
            if let Some(action) = action {
                self.perform(i, action, now);
            }
        }
        self.procs.retain(|p| !(p.removing && p.pid.is_none()));
        if self.sockets.has_retiring() {
            let in_use: Vec<String> = self
                .procs
                .iter()
                .filter(|p| p.pid.is_some())
                .flat_map(|p| socket_references(&p.program.command))
                .collect();
            self.sockets.settle(|name| in_use.iter().any(|n| n == name));
        }
        for i in 0..self.procs.len() {
            if self.procs[i].start_when_clear {
                let name = self.procs[i].name.clone();
                let waits_for_socket = socket_references(&self.procs[i].program.command)
                    .iter()
                    .any(|s| self.sockets.pending(s));
                if !waits_for_socket && !self.procs.iter().any(|p| p.removing && p.name == name) {
                    self.procs[i].start_when_clear = false;
                    self.start_index(i, now);
                }
            }
        }
    }

    /// `reread`/`update` (see the module doc): compares the configuration
    /// read again with what runs. Without `apply`, only reports; with it,
    /// stops and removes the removed and changed programs, adds (and
    /// autostarts) the new versions, takes the new environment and binds,
    /// closes or rebinds the shared sockets.
    pub fn update(
        &mut self,
        programs: &[ProgramConfig],
        sockets: &[SocketConfig],
        env: &[(String, String)],
        apply: bool,
        now: Instant,
    ) -> Changes {
        let mut changes = Changes::default();
        let socket_changes = self.sockets.diff(sockets);
        let env_changed = self.env != env;
        let mut current: Vec<Arc<ProgramConfig>> = Vec::new();
        for p in self.procs.iter().filter(|p| !p.removing) {
            if !current.iter().any(|c| c.name == p.group) {
                current.push(p.program.clone());
            }
        }
        for old in &current {
            let uses_changed_socket = || {
                socket_references(&old.command)
                    .iter()
                    .any(|s| socket_changes.changed.contains(s))
            };
            match programs.iter().find(|p| p.name == old.name) {
                None => changes.removed.push(old.name.clone()),
                Some(new) if !same_program(old, new) || env_changed || uses_changed_socket() => {
                    changes.changed.push(old.name.clone())
                }
                Some(_) => {}
            }
        }
        for new in programs {
            if !current.iter().any(|c| c.name == new.name) {
                changes.added.push(new.name.clone());
            }
        }
        if !apply {
            return Self::with_the_rest(changes, &socket_changes, env_changed);
        }
        if env_changed {
            self.env = env.to_vec();
        }
        // Programs first: a rebind waits for their old processes.
        for name in changes.removed.iter().chain(&changes.changed) {
            let selected: Vec<usize> = self
                .procs
                .iter()
                .enumerate()
                .filter(|(_, p)| !p.removing && p.group == *name)
                .map(|(i, _)| i)
                .collect();
            self.stop(&selected, now, None);
            for i in selected {
                self.procs[i].removing = true;
            }
        }
        changes.errors = self.sockets.apply(sockets, &socket_changes);
        for name in changes.added.iter().chain(&changes.changed) {
            if let Some(p) = programs.iter().find(|p| p.name == *name) {
                self.add_program(p.clone(), true);
            }
        }
        Self::with_the_rest(changes, &socket_changes, env_changed)
    }

    /// Adds the socket and environment changes to the program changes.
    fn with_the_rest(
        mut changes: Changes,
        sockets: &sockets::SocketChanges,
        env_changed: bool,
    ) -> Changes {
        let named = |names: &[String]| {
            names
                .iter()
                .map(|n| format!("socket:{n}"))
                .collect::<Vec<_>>()
        };
        changes.added.extend(named(&sockets.added));
        changes.changed.extend(named(&sockets.changed));
        changes.removed.extend(named(&sockets.removed));
        if env_changed {
            changes.changed.push("env".into());
        }
        changes
    }
}

/// kill(2) on the process, or on its process group (it is a session
/// leader, so its pgid is its pid).
pub fn signal_process(pid: i32, sig: i32, group: bool) {
    let target = if group { -pid } else { pid };
    // SAFETY: plain kill(2) on a child (or its group) we have not reaped.
    unsafe { libc::kill(target, sig) };
}
