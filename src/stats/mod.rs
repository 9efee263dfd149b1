//! What the server tells operators: the uWSGI-compatible stats document,
//! Prometheus metrics, and health endpoints. All of it is read from the
//! scoreboard and a small view the master publishes each tick; serving it
//! runs on master threads that never touch worker state directly.
//!
//! Endpoints:
//! - `stats ADDR`: one JSON document per connection (uWSGI's field names, so
//!   uwsgitop works); with `stats-http`, the same listener speaks HTTP.
//!
//! Each worker's supervisor state (STARTING, RUNNING, BACKOFF, ... as
//! `capataz ctl status` shows it) lives in the master, not the scoreboard:
//! the master puts it in the view it publishes each tick, from the same
//! table `ctl status` reads ([`crate::master::supervise::Workers::rows`]).
//! Workers never write it, so the request path is untouched.
//! - `metrics ADDR` (HTTP), and the HTTP stats listener:
//!   - `/`: the live dashboard (stats-http listener only; see [`dashboard`]);
//!   - `/stats` and `/stats.json`: the JSON document;
//!   - `/metrics`: Prometheus text format 0.0.4;
//!   - `/health/live`: 200 while the master runs;
//!   - `/health/ready`: 200 once every worker has booted and accepts, 503
//!     while booting, reloading the first generation, or draining.
//!
//! - [`json`]: the stats document.
//! - [`prometheus`]: the metrics text.
//! - [`server`]: the listeners and the tiny HTTP front.
//! - [`dashboard`]: the dashboard page and its action endpoints.

pub mod dashboard;
pub mod json;
pub mod prometheus;
pub mod server;

use std::sync::{Arc, Mutex};

use crate::master::scoreboard::Scoreboard;
use crate::master::supervise::WorkerRow;
use crate::worker::Protocol;

/// One worker process as the master sees it.
#[derive(Clone, Debug)]
pub struct WorkerView {
    pub id: usize,
    pub pid: i32,
    pub slot: usize,
    pub retired: bool,
    /// Its supervisor state, as `capataz ctl status` names it (STARTING,
    /// RUNNING, STOPPING, ...).
    pub supervisor_state: &'static str,
}

/// A worker id that has no process now: waiting to retry (BACKOFF), about
/// to be respawned (EXITED), or given up on (FATAL). The scoreboard has no
/// slot for it, so the master's view is the only place it shows.
#[derive(Clone, Debug)]
pub struct WaitingWorkerView {
    pub id: usize,
    pub supervisor_state: &'static str,
}

/// Splits the master's worker table ([`Workers::rows`]) into the worker
/// processes and the ids waiting without one.
///
/// [`Workers::rows`]: crate::master::supervise::Workers::rows
pub fn worker_views(rows: &[WorkerRow]) -> (Vec<WorkerView>, Vec<WaitingWorkerView>) {
    let mut workers = Vec::with_capacity(rows.len());
    let mut waiting = Vec::new();
    for row in rows {
        match (row.pid, row.slot) {
            (Some(pid), Some(slot)) => workers.push(WorkerView {
                id: row.id,
                pid,
                slot,
                retired: row.retired,
                supervisor_state: row.state.name(),
            }),
            _ => waiting.push(WaitingWorkerView {
                id: row.id,
                supervisor_state: row.state.name(),
            }),
        }
    }
    (workers, waiting)
}

/// One side program (`[program:x]` process), as `capataz ctl status` shows it.
#[derive(Clone, Debug)]
pub struct ProgramView {
    pub name: String,
    pub group: String,
    /// STOPPED, STARTING, RUNNING, BACKOFF, STOPPING, EXITED, FATAL.
    pub state: &'static str,
    pub pid: Option<i32>,
    pub description: String,
}

/// One listening socket.
#[derive(Clone, Debug)]
pub struct SocketView {
    pub name: String,
    /// What it speaks, as uWSGI's stats name it ([`socket_proto`]).
    pub proto: &'static str,
    pub fd: i32,
    pub backlog: u32,
}

/// A listener's protocol as uWSGI's stats document names it: `http` for
/// `http` / `http-socket`, `uwsgi` for `socket` / `uwsgi-socket`.
pub fn socket_proto(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Http => "http",
        Protocol::Uwsgi => "uwsgi",
    }
}

/// What the master publishes for the stats threads, refreshed every tick.
#[derive(Clone, Debug, Default)]
pub struct MasterView {
    /// Worker processes, sorted by id.
    pub workers: Vec<WorkerView>,
    /// Worker ids without a process (not STOPPED ones), sorted.
    pub waiting_workers: Vec<WaitingWorkerView>,
    pub sockets: Vec<SocketView>,
    pub programs: Vec<ProgramView>,
    /// Respawns by worker id.
    pub respawns: std::collections::BTreeMap<usize, u64>,
    /// Respawns by reason, for Prometheus.
    pub respawn_reasons: std::collections::BTreeMap<&'static str, u64>,
    pub harakiri_count: std::collections::BTreeMap<usize, u64>,
    pub ready: bool,
    pub phase: &'static str,
}

/// Everything a stats thread needs.
#[derive(Clone)]
pub struct StatsSource {
    pub scoreboard: Arc<Scoreboard>,
    pub view: Arc<Mutex<MasterView>>,
    pub master_pid: u32,
    /// Into the master loop, for the dashboard's buttons (None without a
    /// control socket).
    pub control: Option<crate::control::server::ControlHandle>,
    /// `stats-token`: the dashboard's buttons are enabled and need it.
    pub token: Option<String>,
}

impl StatsSource {
    pub fn snapshot(&self) -> MasterView {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The number of connections waiting in a TCP listener's accept queue, and
/// its limit (Linux TCP_INFO: `tcpi_unacked` / `tcpi_sacked` on a listener).
pub fn listen_queue(fd: i32) -> Option<(u32, u32)> {
    // SAFETY: tcp_info is plain data; getsockopt writes at most `len` bytes.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        (rc == 0).then_some((info.tcpi_unacked, info.tcpi_sacked))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::programs::machine::State;

    /// A source with one RUNNING worker (id 1, slot 0) and id 2 waiting in
    /// BACKOFF without a process.
    pub(crate) fn source_with_backoff() -> StatsSource {
        let scoreboard = Arc::new(Scoreboard::create(4, 2).unwrap());
        scoreboard.reset(0, 4242);
        let rows = [
            WorkerRow {
                id: 1,
                pid: Some(4242),
                slot: Some(0),
                retired: false,
                state: State::Running,
                description: String::new(),
            },
            WorkerRow {
                id: 2,
                pid: None,
                slot: None,
                retired: false,
                state: State::Backoff,
                description: "exited too quickly".into(),
            },
        ];
        let (workers, waiting_workers) = worker_views(&rows);
        StatsSource {
            scoreboard,
            view: Arc::new(Mutex::new(MasterView {
                workers,
                waiting_workers,
                ..MasterView::default()
            })),
            master_pid: 1,
            control: None,
            token: None,
        }
    }

    #[test]
    fn rows_split_into_processes_and_waiting_ids() {
        let view = source_with_backoff().snapshot();
        assert_eq!(view.workers.len(), 1);
        assert_eq!(view.workers[0].pid, 4242);
        assert_eq!(view.workers[0].supervisor_state, "RUNNING");
        assert_eq!(view.waiting_workers.len(), 1);
        assert_eq!(view.waiting_workers[0].id, 2);
        assert_eq!(view.waiting_workers[0].supervisor_state, "BACKOFF");
    }
}
