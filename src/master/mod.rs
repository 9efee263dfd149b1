//! The master: binds the listeners, spawns and supervises the workers.
//! It never runs Python and never blocks on a worker (DESIGN §2.1).
//!
//! Lifecycle phases (pingora-style), each logged as `phase: <name>`:
//!
//! ```text
//! Bootstrap ──> Running ──HUP──> Reloading ──> Running
//!                  │
//!                  ├─TERM──> Draining ──(workers gone or mercy)──> Stopped
//!                  └─INT/QUIT──────────────────────────────────────> Stopped
//! ```
//!
//! - [`listeners`]: binding TCP and unix sockets.
//! - [`spawn`]: fork+exec of a worker with its fds.
//! - [`supervise`]: the worker table, exits, respawn with backoff.
//! - [`signals`]: signal flags and the self-pipe.

pub mod listeners;
pub mod signals;
pub mod spawn;
pub mod supervise;

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::worker::ListenerMeta;
use supervise::{ExitKind, Workers};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Bootstrap,
    Running,
    Reloading,
    Draining,
    Stopped,
}

struct Master {
    config: Config,
    listeners: Vec<listeners::Listener>,
    workers: Workers,
    phase: Phase,
    exit_code: i32,
    stop_deadline: Option<Instant>,
}

impl Master {
    fn set_phase(&mut self, phase: Phase) {
        if self.phase != phase {
            tracing::info!("phase: {:?}", phase);
            self.phase = phase;
        }
    }

    fn listener_fds(&self) -> Vec<(i32, ListenerMeta)> {
        self.listeners
            .iter()
            .map(|l| (l.fd.as_raw_fd(), l.meta.clone()))
            .collect()
    }

    fn spawn(&mut self, id: usize) {
        let fds = self.listener_fds();
        match spawn::spawn_worker(&self.config, id, &fds) {
            Ok(pid) => {
                tracing::info!("spawned worker {id} (pid: {pid})");
                self.workers.started(id, pid);
            }
            Err(e) => {
                tracing::error!("cannot spawn worker {id}: {e}");
                self.workers.spawn_failed(id);
            }
        }
    }

    fn begin_stop(&mut self, graceful: bool) {
        if graceful {
            self.set_phase(Phase::Draining);
            self.workers.signal_all(libc::SIGTERM);
            self.stop_deadline =
                Some(Instant::now() + Duration::from_secs(self.config.worker_reload_mercy));
        } else {
            self.workers.signal_all(libc::SIGINT);
            self.set_phase(Phase::Stopped);
            // Workers die on SIGINT at once; SIGKILL whatever is left soon after.
            self.stop_deadline = Some(Instant::now() + Duration::from_secs(3));
        }
    }

    fn on_signal(&mut self, sig: i32) {
        let stopping = matches!(self.phase, Phase::Draining | Phase::Stopped);
        match sig {
            libc::SIGTERM if !stopping => {
                tracing::info!("SIGTERM: graceful shutdown");
                self.begin_stop(true);
            }
            libc::SIGINT | libc::SIGQUIT => {
                tracing::info!("{}: fast shutdown", signals::name(sig));
                self.begin_stop(false);
            }
            libc::SIGHUP if !stopping => {
                self.set_phase(Phase::Reloading);
                tracing::info!("SIGHUP: starting new workers, then draining the old ones");
                let old = self.workers.retire_all();
                for id in self.workers.missing_ids(self.config.processes) {
                    self.spawn(id);
                }
                for pid in old {
                    supervise::kill(pid, libc::SIGTERM);
                }
                self.set_phase(Phase::Running);
            }
            libc::SIGTTIN if !stopping => {
                self.config.processes += 1;
                tracing::info!("SIGTTIN: scaling up to {} workers", self.config.processes);
            }
            libc::SIGTTOU if !stopping && self.config.processes > 1 => {
                self.config.processes -= 1;
                tracing::info!("SIGTTOU: scaling down to {} workers", self.config.processes);
                if let Some(pid) = self.workers.retire_highest(self.config.processes) {
                    supervise::kill(pid, libc::SIGTERM);
                }
            }
            _ => {}
        }
    }

    fn reap(&mut self) {
        for exit in self.workers.reap() {
            match exit.kind {
                ExitKind::Retired => {
                    tracing::info!("worker {} (pid: {}) {}", exit.id, exit.pid, exit.describe())
                }
                _ if matches!(self.phase, Phase::Draining | Phase::Stopped) => {
                    tracing::info!("worker {} (pid: {}) {}", exit.id, exit.pid, exit.describe())
                }
                ExitKind::BootFailure => {
                    tracing::error!(
                        "worker {} (pid: {}) could not load the app; stopping (the reason is above)",
                        exit.id,
                        exit.pid
                    );
                    self.exit_code = 1;
                    self.begin_stop(false);
                }
                ExitKind::Died => {
                    tracing::warn!(
                        "worker {} (pid: {}) {}; respawning",
                        exit.id,
                        exit.pid,
                        exit.describe()
                    )
                }
            }
        }
    }

    fn run(&mut self, signals: &signals::Signals) -> i32 {
        for id in 1..=self.config.processes {
            self.spawn(id);
        }
        self.set_phase(Phase::Running);
        loop {
            for sig in signals.wait(200) {
                self.on_signal(sig);
            }
            self.reap();
            match self.phase {
                Phase::Running | Phase::Reloading => {
                    let now = Instant::now();
                    for id in self.workers.due_for_spawn(self.config.processes, now) {
                        self.spawn(id);
                    }
                }
                Phase::Draining | Phase::Stopped => {
                    if self.workers.alive() == 0 {
                        self.set_phase(Phase::Stopped);
                        tracing::info!("goodbye");
                        return self.exit_code;
                    }
                    if self.stop_deadline.is_some_and(|d| Instant::now() >= d) {
                        tracing::warn!(
                            "{} worker(s) still running; sending SIGKILL",
                            self.workers.alive()
                        );
                        self.workers.signal_all(libc::SIGKILL);
                        self.stop_deadline = None;
                    }
                }
                Phase::Bootstrap => {}
            }
        }
    }
}

/// Runs the master until shutdown; returns the process exit code.
pub fn run(config: Config) -> i32 {
    crate::logging::init("master");
    tracing::info!(
        "capataz {} (Python {}) master pid {}",
        env!("CARGO_PKG_VERSION"),
        crate::wsgi::interpreter::embedded_version(),
        std::process::id()
    );
    tracing::info!("phase: {:?}", Phase::Bootstrap);
    for notice in &config.notices {
        tracing::info!("{notice}");
    }
    let signals = match signals::Signals::install() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot install signal handlers: {e}");
            return 1;
        }
    };
    let backlog = listeners::effective_backlog(config.listen);
    let mut bound = Vec::new();
    for address in config.http.iter().chain(config.http_socket.iter()) {
        match listeners::bind(address, backlog) {
            Ok(l) => {
                tracing::info!("listening on {} (HTTP)", l.meta.address);
                bound.push(l);
            }
            Err(e) => {
                tracing::error!("{e}");
                return 1;
            }
        }
    }
    tracing::info!(
        "{} worker(s) with {} thread(s) each; app: {}",
        config.processes,
        config.threads,
        config
            .module
            .clone()
            .or_else(|| config.wsgi_file.as_ref().map(|p| p.display().to_string()))
            .unwrap_or_default()
    );
    let mut master = Master {
        config,
        listeners: bound,
        workers: Workers::new(),
        phase: Phase::Bootstrap,
        exit_code: 0,
        stop_deadline: None,
    };
    master.run(&signals)
}
