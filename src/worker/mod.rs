//! The worker process: boots the app, then serves the inherited listeners.
//!
//! - [`poll`]: the shared epoll instance and the parked connections' deadlines.
//! - [`accept`]: accepting connections.
//! - [`conn`]: one connection's read/parse/dispatch/write loop.
//! - [`output`]: response buffering and the only socket writes.
//! - [`trust`]: `forwarded-allow-ips`, the peers believed about the client.
//!
//! Model: `threads` identical threads share one epoll set with one-shot
//! registrations, so a connection is handled by one thread at a time and any
//! idle thread picks up the next ready one. A thread reads and parses
//! without the GIL, takes the GIL only to run the app, and writes without it.
//! That runs the app on the thread that parsed the request (no handoff, no
//! GIL ping-pong, DESIGN §7), while a slow client only ever costs a parked
//! connection, never a thread (DESIGN §2.2): a response the app has
//! finished producing is finished by the event loop (see [`output`]); only
//! a generator still producing waits for a slow reader, bounded. The main thread is the reaper:
//! timeouts, listener back-pressure and the graceful drain on SIGTERM.

pub mod accept;
pub mod conn;
pub mod output;
pub mod poll;
pub mod stream;
pub mod trust;

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capataz_proto::limits::Limits;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::logging::{AccessLog, Clock as LogClock};
use crate::master::scoreboard::{Scoreboard, WorkerSlot, WorkerState};
use crate::wsgi::{AppSpec, ListenerEnv, ThreadState, Wsgi};
use poll::{Clock, Poller, Registry};

/// Exit status of a worker whose app could not be loaded (uWSGI's value).
pub const EXIT_BOOT_ERROR: i32 = 22;
/// The descriptor the boot message arrives on; the scoreboard and the
/// listeners follow it.
pub const BOOT_FD: RawFd = 3;
pub const SCOREBOARD_FD: RawFd = 4;
pub const FIRST_LISTENER_FD: RawFd = 5;

/// Everything the master hands a worker, as JSON on [`BOOT_FD`].
#[derive(Serialize, Deserialize)]
pub struct BootMessage {
    pub config: Config,
    pub worker_id: usize,
    /// This worker's scoreboard slot, and the table's size.
    pub slot: usize,
    pub scoreboard_slots: usize,
    pub listeners: Vec<ListenerMeta>,
    /// The log destination when fds 1 and 2 are the master's output pipe.
    #[serde(default)]
    pub log_fd: Option<RawFd>,
}

/// What a listener speaks: `http` / `http-socket` are HTTP/1.x, `socket`
/// (`uwsgi-socket`) is the uwsgi protocol.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    #[default]
    Http,
    Uwsgi,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http => "HTTP",
            Protocol::Uwsgi => "uwsgi",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ListenerMeta {
    /// As configured, for messages.
    pub address: String,
    pub unix: bool,
    pub protocol: Protocol,
    pub server_name: String,
    pub server_port: String,
}

/// State shared by the worker's threads.
pub struct Shared {
    pub poller: Poller,
    pub registry: Registry,
    pub clock: Clock,
    pub wsgi: Wsgi,
    pub static_files: Option<crate::static_files::StaticFiles>,
    pub limits: Limits,
    pub listeners: Vec<(OwnedFd, ListenerMeta)>,
    paused: Vec<AtomicBool>,
    pub open: AtomicUsize,
    pub max_connections: usize,
    draining: Arc<AtomicBool>,
    pub scoreboard: Scoreboard,
    pub slot: usize,
    /// Recycle after this many requests (max-requests plus this worker's
    /// share of max-requests-delta); 0 = never.
    pub max_requests: u64,
    pub pid: u32,
    pub log_requests: bool,
    /// The request log's format and filters, shared by the threads.
    pub log_settings: Arc<crate::logging::LogSettings>,
    pub post_buffering: usize,
    pub header_timeout_ms: u64,
    pub body_timeout_ms: u64,
    pub send_timeout_ms: u64,
    pub keepalive_timeout_ms: u64,
    pub send_timeout: Duration,
    pub threads: usize,
    /// `forwarded-allow-ips`.
    pub trusted_peers: trust::TrustedPeers,
    /// `proxy-protocol`.
    pub proxy_protocol: bool,
}

impl Shared {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn worker_slot(&self) -> &WorkerSlot {
        self.scoreboard.worker(self.slot)
    }

    /// Asks the master for a successor and drains (max-requests, reload-on-rss).
    pub fn recycle(&self, reason: &str, detail: &str) {
        if !self.draining.swap(true, Ordering::AcqRel) {
            tracing::info!("{detail}; recycling this worker");
            self.worker_slot().request_recycle(reason);
        }
    }
}

/// Per-thread context passed down the connection code.
pub struct ThreadCx<'a> {
    pub shared: &'a Shared,
    pub thread_state: ThreadState,
    pub core: usize,
    pub log: AccessLog,
    pub clock: LogClock,
    /// A decoded chunked body lent to the app for one request.
    pub body_scratch: Vec<u8>,
}

fn read_boot_message() -> Result<BootMessage, String> {
    // SAFETY: the master placed the boot memfd at BOOT_FD for us alone.
    let mut file = unsafe { std::fs::File::from_raw_fd(BOOT_FD) };
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| format!("cannot read the boot message: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("bad boot message: {e}"))
}

/// Entry point of `capataz __worker__`. Never returns.
pub fn run() -> ! {
    let boot = match read_boot_message() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("capataz worker: {e}");
            std::process::exit(EXIT_BOOT_ERROR);
        }
    };
    if let Some(fd) = boot.log_fd {
        crate::logging::set_log_fd(fd);
    }
    crate::logging::init(&format!("worker {}", boot.worker_id));
    let cfg = &boot.config;
    // Early, so a SIGUSR1 (log reopen) during the app's import does not kill us.
    if let Some(path) = &cfg.logto {
        if let Err(e) = crate::logging::reopen_on_usr1(path.clone()) {
            tracing::error!("logto: cannot install the SIGUSR1 handler: {e}");
        }
    }
    let log_settings = Arc::new(crate::logging::LogSettings::from_config(cfg));
    let scoreboard = match Scoreboard::open(SCOREBOARD_FD, boot.scoreboard_slots, cfg.threads) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot map the scoreboard: {e}");
            std::process::exit(EXIT_BOOT_ERROR);
        }
    };
    let started = Instant::now();
    let listener_env: Vec<ListenerEnv> = boot
        .listeners
        .iter()
        .map(|l| ListenerEnv {
            server_name: l.server_name.clone(),
            server_port: l.server_port.clone(),
        })
        .collect();
    let spec = AppSpec {
        module: cfg.module.as_deref(),
        wsgi_file: cfg.wsgi_file.as_deref(),
        callable: &cfg.callable,
        virtualenv: cfg.virtualenv.as_deref(),
        pythonpath: &cfg.pythonpath,
        threads: cfg.threads,
        processes: cfg.processes,
    };
    let static_files =
        match crate::static_files::StaticFiles::new(&crate::static_files::StaticConfig {
            map: &cfg.static_map,
            expires: &cfg.static_expires,
            index: &cfg.static_index,
            gzip: cfg.static_gzip,
        }) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("static-map: {e}");
                std::process::exit(EXIT_BOOT_ERROR);
            }
        };
    let wsgi = match Wsgi::boot(&spec, &listener_env) {
        Ok(w) => w,
        Err(e) => {
            tracing::error!("{e}");
            std::process::exit(EXIT_BOOT_ERROR);
        }
    };
    // Importing the app compiles and throws away a lot: hand the free pages
    // of the malloc heap back to the kernel before serving, so an idle
    // worker's RSS is what it holds, not what its boot once needed.
    // SAFETY: malloc_trim only releases free memory; no preconditions.
    unsafe { libc::malloc_trim(0) };
    tracing::info!(
        "worker {} (pid: {}) ready in {} ms: {} thread(s)",
        boot.worker_id,
        std::process::id(),
        started.elapsed().as_millis(),
        cfg.threads
    );

    // max-requests-delta staggers recycling: each worker adds its own share.
    let max_requests = match cfg.max_requests {
        0 => 0,
        n if cfg.max_requests_delta == 0 => n,
        n => n + (std::process::id() as u64 % (cfg.max_requests_delta + 1)),
    };
    let draining = Arc::new(AtomicBool::new(false));
    if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGTERM, draining.clone()) {
        tracing::error!("cannot install the SIGTERM handler: {e}");
        std::process::exit(1);
    }
    let poller = match Poller::new(cfg.threads == 1) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!("epoll: {e}");
            std::process::exit(1);
        }
    };
    let listeners: Vec<(OwnedFd, ListenerMeta)> = boot
        .listeners
        .iter()
        .enumerate()
        .map(|(i, meta)| {
            // SAFETY: the master placed listener i at FIRST_LISTENER_FD + i.
            let fd = unsafe { OwnedFd::from_raw_fd(FIRST_LISTENER_FD + i as RawFd) };
            (fd, meta.clone())
        })
        .collect();
    let secs_ms = |s: u64| s.saturating_mul(1000);
    let limits = Limits {
        max_head: cfg.buffer_size,
        max_body: (cfg.limit_post > 0).then_some(cfg.limit_post),
        ..Limits::default()
    };
    let shared = Arc::new(Shared {
        poller,
        registry: Registry::new(),
        clock: Clock::new(),
        wsgi,
        static_files,
        limits,
        paused: listeners.iter().map(|_| AtomicBool::new(false)).collect(),
        listeners,
        open: AtomicUsize::new(0),
        max_connections: cfg.worker_connections,
        draining,
        scoreboard,
        slot: boot.slot,
        max_requests,
        pid: std::process::id(),
        log_requests: log_settings.any(),
        log_settings,
        post_buffering: cfg.post_buffering,
        header_timeout_ms: secs_ms(cfg.header_timeout),
        body_timeout_ms: secs_ms(cfg.body_timeout),
        send_timeout_ms: secs_ms(cfg.send_timeout),
        keepalive_timeout_ms: secs_ms(cfg.keepalive_timeout),
        send_timeout: Duration::from_secs(cfg.send_timeout),
        threads: cfg.threads,
        trusted_peers: trust::TrustedPeers::new(&cfg.forwarded_allow_ips),
        proxy_protocol: cfg.proxy_protocol,
    });
    stream::set_delay(cfg.stream_flush_us);
    for (i, (fd, meta)) in shared.listeners.iter().enumerate() {
        use std::os::fd::AsRawFd;
        if let Err(e) = accept::set_nonblocking(fd.as_raw_fd())
            .and_then(|_| shared.poller.add_listener(fd.as_raw_fd(), i as u64))
        {
            tracing::error!("listener {}: {e}", meta.address);
            std::process::exit(1);
        }
    }
    if let Some((vsz, rss)) = MemoryProbe::new().read() {
        shared.worker_slot().vsz_bytes.store(vsz, Ordering::Relaxed);
        shared.worker_slot().rss_bytes.store(rss, Ordering::Relaxed);
    }
    shared.worker_slot().set_state(WorkerState::Accepting);
    for core in 0..cfg.threads {
        let shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("capataz-core-{core}"))
            .spawn(move || thread_main(&shared, core));
        if let Err(e) = spawned {
            tracing::error!("cannot start thread {core}: {e}");
            std::process::exit(1);
        }
    }
    reaper(&shared, cfg.reload_on_rss)
}

fn thread_main(shared: &Shared, core: usize) {
    // SAFETY: pthread_self has no preconditions.
    let thread_id = unsafe { libc::pthread_self() } as u64;
    shared
        .scoreboard
        .core(shared.slot, core)
        .thread_id
        .store(thread_id, Ordering::Relaxed);
    let mut cx = ThreadCx {
        shared,
        thread_state: ThreadState::attach_current_thread(),
        core,
        log: AccessLog::with(shared.log_settings.clone()),
        clock: LogClock::default(),
        body_scratch: Vec::new(),
    };
    // With several threads, take one event at a time so a thread about to
    // run a slow request does not hold other ready connections hostage.
    let batch = if shared.threads > 1 { 1 } else { 64 };
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; batch];
    loop {
        cx.log.flush();
        let n = shared.poller.wait(&mut events, 1000);
        if n == 0 {
            // Idle: drop the app's response objects sent since the last request.
            shared.wsgi.release_held(&cx.thread_state);
        }
        for ev in &events[..n] {
            let token = ev.u64;
            if (token as usize) < shared.listeners.len() {
                accept::accept_ready(shared, token as usize);
            } else {
                accept::handle_conn(&mut cx, token);
            }
        }
    }
}

/// (virtual size, resident set size) of this process, from /proc/self/statm,
/// read through a descriptor kept open, so a reading costs
/// one pread instead of open, fstat, read and close on the reaper's tick.
struct MemoryProbe {
    statm: Option<std::fs::File>,
}

impl MemoryProbe {
    fn new() -> MemoryProbe {
        MemoryProbe {
            statm: std::fs::File::open("/proc/self/statm").ok(),
        }
    }

    fn read(&self) -> Option<(u64, u64)> {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 128];
        let n = self.statm.as_ref()?.read_at(&mut buf, 0).ok()?;
        parse_statm(&buf[..n])
    }
}

fn parse_statm(statm: &[u8]) -> Option<(u64, u64)> {
    let statm = std::str::from_utf8(statm).ok()?;
    let mut fields = statm.split_whitespace();
    let vsz: u64 = fields.next()?.parse().ok()?;
    let rss: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    Some((vsz * page, rss * page))
}

/// The reaper checks deadlines every tick, and memory every this many ticks:
/// the stats and `reload-on-rss` need no finer grain, and each tick runs on
/// a core the request threads use.
const REAPER_TICK: Duration = Duration::from_millis(100);
const MEMORY_EVERY_TICKS: u32 = 10;

/// The main thread's loop: deadlines, paused listeners, RSS, draining.
fn reaper(shared: &Shared, reload_on_rss_mb: u64) -> ! {
    let mut drain_started: Option<Instant> = None;
    let probe = MemoryProbe::new();
    let mut tick: u32 = 0;
    loop {
        std::thread::sleep(REAPER_TICK);
        tick = tick.wrapping_add(1);
        let memory = if tick % MEMORY_EVERY_TICKS == 0 {
            probe.read()
        } else {
            None
        };
        if let Some((vsz, rss)) = memory {
            shared.worker_slot().vsz_bytes.store(vsz, Ordering::Relaxed);
            shared.worker_slot().rss_bytes.store(rss, Ordering::Relaxed);
            if reload_on_rss_mb > 0 && rss > reload_on_rss_mb * 1024 * 1024 {
                shared.recycle(
                    "rss",
                    &format!(
                        "RSS {} MiB exceeds reload-on-rss = {reload_on_rss_mb}",
                        rss / (1024 * 1024)
                    ),
                );
            }
        }
        let draining = shared.is_draining();
        if draining && drain_started.is_none() {
            drain_started = Some(Instant::now());
            if shared.worker_slot().state() != WorkerState::Recycling {
                shared.worker_slot().set_state(WorkerState::Draining);
            }
            tracing::info!("draining: finishing in-flight requests");
            for (fd, _) in &shared.listeners {
                use std::os::fd::AsRawFd;
                let _ = shared.poller.delete(fd.as_raw_fd());
            }
        }
        let open = shared.registry.reap(shared.clock.now_ms(), draining);
        if draining {
            if open == 0 {
                tracing::info!("drained; exiting");
                std::process::exit(0);
            }
            continue;
        }
        if open < shared.max_connections {
            for (i, paused) in shared.paused.iter().enumerate() {
                if paused.swap(false, Ordering::AcqRel) {
                    use std::os::fd::AsRawFd;
                    let fd = shared.listeners[i].0.as_raw_fd();
                    let _ = shared.poller.resume_listener(fd, i as u64);
                }
            }
        }
    }
}

impl Shared {
    pub(crate) fn pause_listener(&self, i: usize) {
        self.paused[i].store(true, Ordering::Release);
    }
}
