//! The master: binds the listeners, spawns and supervises the workers.
//! It never runs Python and never blocks on a worker (DESIGN §2.1).
//!
//! Lifecycle phases (pingora-style), each logged as `phase: <name>`:
//!
//! ```text
//! Bootstrap ──> Running ──HUP──> Reloading ──> Running
//!                  │                  │ a new worker cannot load the app:
//!                  │                  └──> Running (reload aborted, the old
//!                  │                        generation kept)
//!                  ├─TERM──> Draining ──(workers gone or mercy)──> Stopped
//!                  └─INT/QUIT──────────────────────────────────────> Stopped
//! ```
//!
//! **A reload that cannot load the app is aborted.** The old generation is
//! told to drain only once every new worker is RUNNING, so until then it
//! serves untouched. If a new worker exits with `EXIT_BOOT_ERROR` (a syntax
//! error or an ImportError in the code now on disk; the worker logged the
//! traceback), the master logs `reload aborted: ...`, SIGTERMs the new
//! workers that did boot, gives the old workers their ids back
//! ([`supervise::Workers::restore_generation`]) and goes back to Running
//! (and READY=1 for systemd). A later reload, once the code is fixed, works
//! as usual. At startup there is no old generation, and the master exits 1.
//!
//! The limitation: the kept workers re-exec when they are respawned (a
//! crash, harakiri, recycling), so their successors import the broken code
//! too. Such a boot failure is not fatal while other workers are RUNNING:
//! the id retries in BACKOFF (up to every 10 s, logging the traceback each
//! time) and the others keep serving, with less capacity, until the code is
//! fixed and reloaded. Only when no worker is left RUNNING does the master
//! stop (see [`supervise`]).
//!
//! - [`listeners`]: binding TCP and unix sockets.
//! - [`spawn`]: fork+exec of a worker with its fds.
//! - [`supervise`]: the worker table: each worker id runs through the same
//!   state machine as the side programs (STARTING, RUNNING, BACKOFF,
//!   EXITED, FATAL), logged on every transition and shown by `ctl status`.
//! - [`signals`]: signal flags and the self-pipe.
//! - [`fifo`]: uWSGI's `master-fifo` single-character commands.
//! - `reread`: what a reload takes from the config files read again.
//! - [`privileges`]: dropping to `uid`/`gid` after binding.
//! - [`scoreboard`]: the shared-memory table workers report into.
//! - [`watchdog`]: harakiri, touch-reload, recycling and adaptive scaling.
//! - [`worker_output`]: workers' stdout/stderr relayed into the log.
//! - `ctl`: answering `capataz ctl` requests (see [`crate::control`]).
//!
//! The loop also owns the `[program:x]` processes ([`crate::programs`]):
//! they start after the workers, stop with them on TERM/INT, and their
//! exits come through the worker table's `waitpid(-1)`.

pub mod fifo;
pub mod listeners;
pub mod privileges;
pub mod scoreboard;
pub mod signals;
pub mod spawn;
pub mod supervise;
pub mod watchdog;
pub mod worker_output;

mod ctl;
mod reread;

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::programs::machine::State;
use crate::stats::{MasterView, SocketView, StatsSource, WorkerView};
use crate::worker::ListenerMeta;
use scoreboard::{Scoreboard, WorkerState};
use supervise::{Event, ExitKind, Workers};

/// Scoreboard slots: every live worker process, old generations included.
pub const SCOREBOARD_SLOTS: usize = 256;
/// The most workers TTIN or cheaper may run, leaving slots for a reload's
/// second generation.
const MAX_PROCESSES: usize = SCOREBOARD_SLOTS / 2 - 1;
/// How long a reload waits for the new workers to accept before draining the
/// old ones anyway.
const RELOAD_WAIT: Duration = Duration::from_secs(60);

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
    /// The config as last read from the files (at startup or a reload), to
    /// tell what a reload's re-read changed.
    last_read: Config,
    listeners: Vec<listeners::Listener>,
    scoreboard: Arc<Scoreboard>,
    /// What the stats threads read; refreshed every tick.
    view: Arc<Mutex<MasterView>>,
    respawns: BTreeMap<usize, u64>,
    respawn_reasons: BTreeMap<&'static str, u64>,
    harakiri_count: BTreeMap<usize, u64>,
    workers: Workers,
    phase: Phase,
    exit_code: i32,
    stop_deadline: Option<Instant>,
    /// How many workers should run now (`processes`, or fewer under `cheaper`).
    target: usize,
    /// A reload in progress: the old generation's pids and when it began.
    reload: Option<(Vec<i32>, Instant)>,
    touch_reload: watchdog::TouchReload,
    cheaper: watchdog::Cheaper,
    fifo: Option<fifo::MasterFifo>,
    /// READY=1 was sent to systemd for the current generation.
    notified_ready: bool,
    /// `[program:x]` side processes.
    programs: crate::programs::Supervisor,
    /// The `capataz ctl` socket, if it could be had.
    control: Option<crate::control::server::ControlServer>,
    /// `ctl start/stop/restart` requests waiting for their processes.
    pending: Vec<ctl::Pending>,
    /// The environment `ctl update` read, for the workers' next reload.
    pending_env: Option<PendingEnv>,
}

/// `env` entries (with the `env-file` contents) and the files they came from.
struct PendingEnv {
    env: Vec<(String, String)>,
    files: Vec<std::path::PathBuf>,
}

/// Sends a systemd notification (`Type=notify`) when NOTIFY_SOCKET is set.
fn sd_notify(message: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    let sent = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|a| sock.send_to_addr(message.as_bytes(), &a))
        }
        None => sock.send_to(message.as_bytes(), &path),
    };
    if let Err(e) = sent {
        tracing::warn!("sd_notify {message:?}: {e}");
    }
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
        let Some(slot) = self.workers.alloc_slot() else {
            tracing::error!("no free scoreboard slot for worker {id}; not spawning");
            self.workers.spawn_failed(id, None, Instant::now());
            return;
        };
        self.scoreboard.reset(slot, 0);
        let sb = spawn::ScoreboardRef {
            fd: self.scoreboard.fd(),
            slots: self.scoreboard.slots(),
            slot,
        };
        match spawn::spawn_worker(&self.config, id, sb, &fds) {
            Ok(pid) => {
                tracing::info!("spawned worker {id} (pid: {pid})");
                self.scoreboard
                    .worker(slot)
                    .pid
                    .store(pid as u32, std::sync::atomic::Ordering::Relaxed);
                self.workers.started(id, pid, slot, Instant::now());
            }
            Err(e) => {
                tracing::error!("cannot spawn worker {id}: {e}");
                self.workers.spawn_failed(id, Some(slot), Instant::now());
            }
        }
    }

    /// Runs the worker ids' state machines: spawns what is due (new ids,
    /// successors of retired workers, BACKOFF retries, EXITED respawns) and
    /// logs the ids that became RUNNING.
    fn supervise_workers(&mut self) {
        let scoreboard = &self.scoreboard;
        let events = self.workers.tick(self.target, Instant::now(), |slot| {
            scoreboard.worker(slot).state() == WorkerState::Accepting
        });
        for event in events {
            match event {
                Event::Spawn(id) => self.spawn(id),
                Event::Running { id, pid } => {
                    tracing::info!("worker {id} (pid: {pid}) is RUNNING (accepting)")
                }
            }
        }
    }

    /// Zero-downtime reload: start a new generation now; the old one is told
    /// to drain once every new worker is RUNNING (accepting, and alive for
    /// `WORKER_STARTSECS`), or after RELOAD_WAIT anyway.
    fn begin_reload(&mut self, why: &str) {
        if self.reload.is_some() {
            tracing::info!("{why}: a reload is already in progress");
            return;
        }
        if let Err(e) = self.reread_config(why) {
            tracing::error!(
                "{why}: reload refused, the config cannot be read again: {e}; \
                 the workers keep running as they are: fix the config and reload again"
            );
            return;
        }
        self.set_phase(Phase::Reloading);
        self.notified_ready = false;
        sd_notify("RELOADING=1");
        tracing::info!("{why}: starting new workers, then draining the old ones");
        if let Some(pending) = self.pending_env.take() {
            tracing::info!("the new workers get the env that ctl update read");
            self.config.env = pending.env;
            self.config.env_files = pending.files;
        }
        let old = self.workers.retire_all();
        *self.respawn_reasons.entry("reload").or_default() += old.len() as u64;
        for id in self.workers.restart_all(self.target) {
            self.spawn(id);
        }
        self.reload = Some((old, Instant::now()));
    }

    /// Reads the config files again (DESIGN §5) for the generation a reload
    /// starts; see [`reread`] for what takes effect.
    fn reread_config(&mut self, why: &str) -> Result<(), String> {
        let new = ctl::read_config_again()?;
        let r = reread::merge(&self.config, &self.last_read, &new)?;
        if !r.applied.is_empty() {
            tracing::info!(
                "{why}: config read again; the new workers get the changed {}",
                r.applied.join(", ")
            );
        }
        if !r.need_restart.is_empty() {
            tracing::warn!(
                "{why}: {} changed in the config; that takes a restart of capataz, \
                 the running value is kept until then",
                r.need_restart.join(", ")
            );
        }
        if r.need_update {
            tracing::info!(
                "{why}: [program:x]/[socket:x] sections changed; `capataz ctl update` applies them"
            );
        }
        let changed = |name: &str| r.applied.iter().any(|k| k == name);
        if changed("env") {
            // The files' env supersedes one `ctl update` staged.
            self.pending_env = None;
        }
        if changed("processes") {
            self.target = if r.config.cheaper > 0 {
                self.target.min(r.config.processes)
            } else {
                r.config.processes
            }
            .clamp(1, MAX_PROCESSES);
        }
        if changed("touch-reload") {
            self.touch_reload = watchdog::TouchReload::new(&r.config.touch_reload);
        }
        self.config = r.config;
        self.last_read = *new;
        Ok(())
    }

    /// A new worker cannot load the app: keep the old generation (never
    /// told to drain, see [`Master::finish_reload_if_ready`]), retire the
    /// new one, and go back to Running.
    fn abort_reload(&mut self, id: usize, pid: i32) {
        let Some((old, _)) = self.reload.take() else {
            return;
        };
        let new = self.workers.restore_generation(&old, Instant::now());
        let kept = self.workers.current().count();
        tracing::error!(
            "reload aborted: worker {id} (pid: {pid}) cannot load the app (see the traceback above); \
             the previous {kept} worker(s) keep serving; fix the code and reload again"
        );
        if !new.is_empty() {
            tracing::info!("retiring {} new worker(s) of the aborted reload", new.len());
        }
        for pid in new {
            supervise::kill(pid, libc::SIGTERM);
        }
        self.set_phase(Phase::Running);
        // systemd got RELOADING=1: the reload is over, serving as before.
        self.notified_ready = true;
        sd_notify("READY=1\nSTATUS=reload aborted: the new code cannot be loaded; the previous workers keep serving");
    }

    fn finish_reload_if_ready(&mut self) {
        let Some((_, started)) = &self.reload else {
            return;
        };
        // Every id RUNNING: accepting, and alive long enough not to be a
        // generation that crashes right after boot (nor one in BACKOFF).
        let ready = (1..=self.target).all(|id| self.workers.state(id) == Some(State::Running));
        let timed_out = started.elapsed() >= RELOAD_WAIT;
        if !(ready || timed_out) {
            return;
        }
        if timed_out && !ready {
            tracing::warn!(
                "new workers not accepting after {:?}; draining the old ones anyway",
                RELOAD_WAIT
            );
        }
        if let Some((old, _)) = self.reload.take() {
            tracing::info!(
                "new workers accepting; draining {} old worker(s)",
                old.len()
            );
            for pid in old {
                supervise::kill(pid, libc::SIGTERM);
            }
        }
        self.set_phase(Phase::Running);
    }

    fn begin_stop(&mut self, graceful: bool) {
        sd_notify("STOPPING=1");
        self.programs.stop_all(!graceful, Instant::now());
        self.workers.stop_all(Instant::now());
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

    /// SIGUSR1 (logrotate's `postrotate kill -USR1`) and master-fifo `l`
    /// (`why` names which): reopen `logto` here and in the workers, and the
    /// side programs' log files.
    fn reopen_logs(&mut self, why: &str) {
        crate::programs::logs::reopen_files();
        let Some(path) = &self.config.logto else {
            return;
        };
        if let Err(e) = crate::logging::open_logto(path) {
            tracing::error!("logto {}: {e}", path.display());
            return;
        }
        tracing::info!("{why}: reopened {}", path.display());
        self.workers.signal_all(libc::SIGUSR1);
    }

    /// `log-maxsize`: rotate `logto` when it is full, then have the workers
    /// reopen it.
    fn rotate_logs(&mut self) {
        let Some(path) = &self.config.logto else {
            return;
        };
        if crate::logging::rotate_if_needed(path, self.config.log_maxsize, self.config.log_backups)
        {
            tracing::info!("rotated {}", path.display());
            self.workers.signal_all(libc::SIGUSR1);
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
            libc::SIGHUP if !stopping => self.begin_reload("SIGHUP"),
            libc::SIGTTIN if !stopping => self.scale_to(self.target + 1, "SIGTTIN"),
            libc::SIGTTOU if !stopping => self.scale_to(self.target.saturating_sub(1), "SIGTTOU"),
            libc::SIGUSR1 => self.reopen_logs("SIGUSR1"),
            _ => {}
        }
    }

    /// Refreshes what the stats threads see.
    fn publish_view(&self) {
        let scoreboard = &self.scoreboard;
        let rows = self.workers.rows(Instant::now(), |slot| {
            scoreboard.worker(slot).state() == WorkerState::Recycling
        });
        let (workers, waiting_workers) = crate::stats::worker_views(&rows);
        let current: Vec<&WorkerView> = workers.iter().filter(|w| !w.retired).collect();
        let ready = self.phase == Phase::Running
            && self.reload.is_none()
            && current.len() >= self.target
            && current
                .iter()
                .all(|w| self.scoreboard.worker(w.slot).state() == WorkerState::Accepting);
        let view = MasterView {
            sockets: self
                .listeners
                .iter()
                .map(|l| SocketView {
                    name: l.meta.address.clone(),
                    proto: crate::stats::socket_proto(l.meta.protocol),
                    fd: l.fd.as_raw_fd(),
                    backlog: self.config.listen,
                })
                .collect(),
            workers,
            waiting_workers,
            programs: self
                .programs
                .processes()
                .iter()
                .filter(|p| !p.removing)
                .map(|p| crate::stats::ProgramView {
                    name: p.name.clone(),
                    group: p.group.clone(),
                    state: p.state().name(),
                    pid: p.pid,
                    description: p.description(),
                })
                .collect(),
            respawns: self.respawns.clone(),
            respawn_reasons: self.respawn_reasons.clone(),
            harakiri_count: self.harakiri_count.clone(),
            ready,
            phase: match self.phase {
                Phase::Bootstrap => "bootstrap",
                Phase::Running => "running",
                Phase::Reloading => "reloading",
                Phase::Draining => "draining",
                Phase::Stopped => "stopped",
            },
        };
        *self.view.lock().unwrap_or_else(|p| p.into_inner()) = view;
    }

    /// Tells systemd once every worker of the generation accepts.
    fn notify_ready(&mut self) {
        if !self.notified_ready && self.view.lock().unwrap_or_else(|p| p.into_inner()).ready {
            self.notified_ready = true;
            sd_notify("READY=1\nSTATUS=all workers accepting");
        }
    }

    /// uWSGI's master-fifo commands.
    fn on_fifo(&mut self, command: u8) {
        let stopping = matches!(self.phase, Phase::Draining | Phase::Stopped);
        match command {
            b'r' | b'w' if !stopping => self.begin_reload("master-fifo 'r'"),
            b'q' => self.on_signal(libc::SIGTERM),
            b'Q' => self.on_signal(libc::SIGINT),
            b'+' if !stopping => self.scale_to(self.target + 1, "master-fifo '+'"),
            b'-' if !stopping => self.scale_to(self.target.saturating_sub(1), "master-fifo '-'"),
            b'l' => self.reopen_logs("master-fifo 'l'"),
            b'\n' | b'\r' | b' ' => {}
            other => tracing::warn!("master-fifo: unknown command {:?}", other as char),
        }
    }

    /// `vacuum`: removes our unix sockets, the listeners' and the
    /// `[socket:x]` ones (only if still ours), and the pidfile.
    fn vacuum(&self) {
        let listener_files = self.listeners.iter().filter_map(|l| l.unix_path.as_ref());
        listeners::vacuum(listener_files.chain(self.programs.unix_socket_files()));
        if let Some(path) = &self.config.pidfile {
            let ours = std::fs::read_to_string(path)
                .is_ok_and(|t| t.trim() == std::process::id().to_string());
            if ours {
                match std::fs::remove_file(path) {
                    Ok(()) => tracing::info!("vacuum: removed {}", path.display()),
                    Err(e) => tracing::warn!("vacuum: {}: {e}", path.display()),
                }
            }
        }
        if let Some(f) = &self.fifo {
            f.remove();
        }
    }

    /// Sets the number of running workers (TTIN/TTOU, cheaper).
    fn scale_to(&mut self, n: usize, why: &str) {
        let n = n.clamp(1, MAX_PROCESSES);
        if n == self.target {
            tracing::info!("{why}: staying at {n} worker(s)");
            return;
        }
        tracing::info!("{why}: scaling from {} to {n} worker(s)", self.target);
        self.target = n;
        if n > self.config.processes {
            // TTIN past `processes` raises the ceiling for cheaper too.
            self.config.processes = n;
        }
        while let Some(pid) = self.workers.retire_highest(self.target) {
            supervise::kill(pid, libc::SIGTERM);
        }
    }

    fn reap(&mut self) {
        let now = Instant::now();
        let scoreboard = &self.scoreboard;
        let exits = self.workers.reap(now, |slot| {
            scoreboard.worker(slot).state() == WorkerState::Recycling
        });
        for (pid, status) in self.workers.take_foreign() {
            self.programs.on_exit(pid, status, now);
        }
        let stopping = matches!(self.phase, Phase::Draining | Phase::Stopped);
        // A boot failure in a reload is one of the new generation's (the
        // old one's processes are retired); all of this batch's are, even
        // after the first one aborted the reload.
        let reloading = self.reload.is_some();
        for exit in exits {
            let reason = match exit.kind {
                _ if exit.harakiri => Some("harakiri"),
                ExitKind::Recycled => Some("recycle"),
                ExitKind::Backoff(_) | ExitKind::Exited => Some("crash"),
                ExitKind::BootRetry(_) if !reloading => Some("crash"),
                _ => None,
            };
            if let Some(reason) = reason {
                if !stopping {
                    *self.respawns.entry(exit.id).or_default() += 1;
                    if reason != "recycle" {
                        *self.respawn_reasons.entry(reason).or_default() += 1;
                    }
                }
            }
            let (id, pid, how) = (exit.id, exit.pid, exit.describe());
            match exit.kind {
                ExitKind::Recycled => {
                    tracing::info!("worker {id} (pid: {pid}) recycled; respawning")
                }
                ExitKind::Retired | ExitKind::Stopped => {
                    tracing::info!("worker {id} (pid: {pid}) {how}")
                }
                _ if stopping => tracing::info!("worker {id} (pid: {pid}) {how}"),
                ExitKind::BootFailure | ExitKind::BootRetry(_) if reloading => {
                    if self.reload.is_some() {
                        self.abort_reload(id, pid);
                    } else {
                        tracing::info!(
                            "worker {id} (pid: {pid}) of the aborted reload could not load the app either"
                        );
                    }
                }
                ExitKind::BootRetry(wait) => tracing::error!(
                    "worker {id} (pid: {pid}) cannot load the app (see the traceback above); \
                     retrying in {:.1} s (BACKOFF, failed start {}); the other RUNNING worker(s) \
                     keep serving; fix the code and reload",
                    wait.as_secs_f64(),
                    exit.retries
                ),
                ExitKind::BootFailure => {
                    tracing::error!(
                        "worker {id} (pid: {pid}) could not load the app: FATAL; stopping (the reason is above)"
                    );
                    self.exit_code = 1;
                    self.begin_stop(false);
                }
                ExitKind::Backoff(wait) => tracing::warn!(
                    "worker {id} (pid: {pid}) {how}; respawning in {:.1} s (BACKOFF: it died {:.1} s \
                     after spawn, before it was RUNNING; failed start {})",
                    wait.as_secs_f64(),
                    exit.lived.as_secs_f64(),
                    exit.retries
                ),
                ExitKind::Exited => tracing::warn!(
                    "worker {id} (pid: {pid}) {how}; respawning (EXITED after {:.1} s)",
                    exit.lived.as_secs_f64()
                ),
            }
        }
    }

    fn run(&mut self, signals: &signals::Signals) -> i32 {
        self.supervise_workers();
        let programs = self.config.programs.clone();
        self.programs.start_configured(&programs, Instant::now());
        self.set_phase(Phase::Running);
        self.publish_view();
        loop {
            let fifo_fd = self.fifo.as_ref().map(|f| f.fd());
            for sig in signals.wait(100, fifo_fd) {
                self.on_signal(sig);
            }
            let commands = self
                .fifo
                .as_mut()
                .map(|f| f.read_commands())
                .unwrap_or_default();
            for c in commands {
                self.on_fifo(c);
            }
            self.reap();
            if self.config.log_maxsize > 0 {
                self.rotate_logs();
            }
            self.programs.tick(Instant::now());
            self.control_tick();
            for id in watchdog::harakiri(self.config.harakiri, &self.scoreboard, &mut self.workers)
            {
                *self.harakiri_count.entry(id).or_default() += 1;
            }
            watchdog::harakiri_kills(&mut self.workers);
            self.publish_view();
            self.notify_ready();
            match self.phase {
                Phase::Running | Phase::Reloading => {
                    for (id, pid, reason) in watchdog::recycled(&self.scoreboard, &mut self.workers)
                    {
                        tracing::info!("worker {id} (pid: {pid}) is recycling ({reason}); starting its successor");
                    }
                    // Starts the recycled workers' successors too.
                    self.supervise_workers();
                    self.finish_reload_if_ready();
                    if let Some(path) = self.touch_reload.changed() {
                        self.begin_reload(&format!("touch-reload: {} changed", path.display()));
                    }
                    if self.config.cheaper > 0 && self.reload.is_none() {
                        let running = self.workers.current().count();
                        match self.cheaper.decide(
                            &self.scoreboard,
                            &self.workers,
                            running,
                            self.config.cheaper,
                            self.config.processes,
                        ) {
                            watchdog::Scale::Up => {
                                self.scale_to(self.target + 1, "cheaper: all workers busy")
                            }
                            watchdog::Scale::Down => {
                                self.scale_to(self.target - 1, "cheaper: workers idle")
                            }
                            watchdog::Scale::Hold => {}
                        }
                    }
                }
                Phase::Draining | Phase::Stopped => {
                    if self.workers.alive() == 0 && self.programs.all_down() {
                        self.set_phase(Phase::Stopped);
                        if let Some(control) = &self.control {
                            control.remove();
                        }
                        if self.config.vacuum {
                            self.vacuum();
                        }
                        worker_output::drain(Duration::from_secs(2));
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
    // Before the first line, so everything (and the workers, which inherit
    // fds 1 and 2) goes to the file.
    if let Some(path) = &config.logto {
        if let Err(e) = crate::logging::open_logto(path) {
            eprintln!("capataz: logto {}: {e}", path.display());
            return 1;
        }
    }
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
    let addresses: Vec<(String, crate::worker::Protocol)> = config
        .http
        .iter()
        .chain(config.http_socket.iter())
        .map(|a| (a.clone(), crate::worker::Protocol::Http))
        .chain(
            config
                .socket
                .iter()
                .map(|a| (a.clone(), crate::worker::Protocol::Uwsgi)),
        )
        .collect();
    let perms = listeners::SocketFilePerms::from_config(&config);
    let bound = match listeners::bind_all(&addresses, backlog, &perms) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!("{e}");
            return 1;
        }
    };
    // [socket:x] for programs, bound like the listeners: before dropping
    // privileges.
    let shared_sockets = match crate::programs::sockets::bind_all(&config.sockets) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return 1;
        }
    };
    for s in &shared_sockets {
        tracing::info!(
            "shared socket {} on {} (fd {})",
            s.name,
            s.address,
            s.raw().1
        );
    }
    if let Some(path) = &config.pidfile {
        if let Err(e) = std::fs::write(path, format!("{}\n", std::process::id())) {
            tracing::error!("pidfile {}: {e}", path.display());
            return 1;
        }
    }
    let identity = match privileges::Identity::resolve(config.uid.as_deref(), config.gid.as_deref())
    {
        Ok(i) => i,
        Err(e) => {
            tracing::error!("{e}");
            return 1;
        }
    };
    // The master's own sockets (and the master fifo) are made while still
    // root too, as uWSGI binds its sockets: their directory may be root's
    // (/run/capataz/). They are given to the user the master becomes, who
    // serves them and may use them.
    let control_path = config
        .control_socket
        .clone()
        .unwrap_or_else(|| crate::control::default_path_for(identity.effective_uid()));
    let control = match crate::control::server::BoundControl::bind(
        &control_path,
        config.control_socket.is_some(),
        |p| identity.chown(p),
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return 1;
        }
    };
    let stats_modes = [
        (
            config.stats.as_ref(),
            if config.stats_http {
                crate::stats::server::Mode::Http
            } else {
                crate::stats::server::Mode::RawJson
            },
        ),
        (config.metrics.as_ref(), crate::stats::server::Mode::Metrics),
    ];
    let mut stats_listeners = Vec::new();
    for (address, mode) in stats_modes {
        let Some(address) = address else { continue };
        let bound = listeners::bind(address, 128, None)
            .map_err(|e| e.to_string())
            .and_then(|l| match &l.unix_path {
                Some(file) => identity
                    .chown(&file.path)
                    .map(|()| l)
                    .map_err(|e| format!("chown to uid/gid: {e}")),
                None => Ok(l),
            });
        match bound {
            Ok(l) => stats_listeners.push((address, mode, l)),
            Err(e) => {
                tracing::error!("stats/metrics on {address}: {e}");
                return 1;
            }
        }
    }
    let fifo = match &config.master_fifo {
        Some(path) => {
            match fifo::MasterFifo::open(path).and_then(|f| identity.chown(path).map(|()| f)) {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::error!("master-fifo {}: {e}", path.display());
                    return 1;
                }
            }
        }
        None => None,
    };
    // Bound (possibly to privileged ports) as whoever started us; now become
    // the configured user before any worker or master thread exists.
    if let Err(e) = identity.switch() {
        tracing::error!("{e}");
        return 1;
    }
    if config.no_root_workers && privileges::is_root() {
        tracing::error!("refusing to run workers as root (no-root-workers is set; set uid/gid)");
        return 1;
    }
    let control = match control.map(|bound| {
        signals
            .waker()
            .map_err(|e| e.to_string())
            .and_then(|waker| bound.serve(&config.config_files, waker))
    }) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => {
            tracing::error!("{e}");
            return 1;
        }
    };
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
    let scoreboard = match Scoreboard::create(SCOREBOARD_SLOTS, config.threads) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!("cannot create the scoreboard: {e}");
            return 1;
        }
    };
    let view = Arc::new(Mutex::new(MasterView::default()));
    let source = StatsSource {
        scoreboard: scoreboard.clone(),
        view: view.clone(),
        master_pid: std::process::id(),
        control: control.as_ref().map(|c| c.handle()),
        token: config.stats_token.clone(),
    };
    for (address, mode, l) in stats_listeners {
        let http = mode != crate::stats::server::Mode::RawJson;
        let started = crate::stats::server::spawn(l.fd, l.meta.unix, mode, source.clone())
            .map_err(|e| e.to_string());
        match started {
            Ok(()) => tracing::info!(
                "stats on {address} ({})",
                if http { "HTTP" } else { "JSON" }
            ),
            Err(e) => {
                tracing::error!("stats/metrics on {address}: {e}");
                return 1;
            }
        }
    }
    let target = if config.cheaper > 0 {
        config.cheaper
    } else {
        config.processes
    };
    let programs = crate::programs::Supervisor::new(
        config.env.clone(),
        crate::programs::sockets::SocketTable::new(&config.sockets, shared_sockets),
    );
    let worker_policy = supervise::worker_policy(Duration::from_secs(config.worker_reload_mercy));
    let mut master = Master {
        programs,
        control,
        pending: Vec::new(),
        pending_env: None,
        touch_reload: watchdog::TouchReload::new(&config.touch_reload),
        cheaper: watchdog::Cheaper::new(),
        last_read: config.clone(),
        config,
        listeners: bound,
        scoreboard,
        view,
        respawns: BTreeMap::new(),
        respawn_reasons: BTreeMap::new(),
        harakiri_count: BTreeMap::new(),
        workers: Workers::new(SCOREBOARD_SLOTS, worker_policy),
        phase: Phase::Bootstrap,
        exit_code: 0,
        stop_deadline: None,
        target,
        reload: None,
        fifo,
        notified_ready: false,
    };
    master.run(&signals)
}
