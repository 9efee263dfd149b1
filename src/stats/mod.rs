//! What the server tells operators: the uWSGI-compatible stats document,
//! Prometheus metrics, and health endpoints. All of it is read from the
//! scoreboard and a small view the master publishes each tick; serving it
//! runs on master threads that never touch worker state directly.
//!
//! Endpoints:
//! - `stats ADDR`: one JSON document per connection (uWSGI's field names, so
//!   uwsgitop works); with `stats-http`, the same listener speaks HTTP.
//! - `metrics ADDR` (HTTP), and the HTTP stats listener:
//!   - `/` and `/stats`: the JSON document;
//!   - `/metrics`: Prometheus text format 0.0.4;
//!   - `/health/live`: 200 while the master runs;
//!   - `/health/ready`: 200 once every worker has booted and accepts, 503
//!     while booting, reloading the first generation, or draining.
//!
//! - [`json`]: the stats document.
//! - [`prometheus`]: the metrics text.
//! - [`server`]: the listeners and the tiny HTTP front.

pub mod json;
pub mod prometheus;
pub mod server;

use std::sync::{Arc, Mutex};

use crate::master::scoreboard::Scoreboard;

/// One worker process as the master sees it.
#[derive(Clone, Debug)]
pub struct WorkerView {
    pub id: usize,
    pub pid: i32,
    pub slot: usize,
    pub retired: bool,
}

/// One listening socket.
#[derive(Clone, Debug)]
pub struct SocketView {
    pub name: String,
    pub proto: &'static str,
    pub fd: i32,
    pub backlog: u32,
}

/// What the master publishes for the stats threads, refreshed every tick.
#[derive(Clone, Debug, Default)]
pub struct MasterView {
    pub workers: Vec<WorkerView>,
    pub sockets: Vec<SocketView>,
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
