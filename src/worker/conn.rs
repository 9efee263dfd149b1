//! One client connection: the only read loop (mini-redis's `connection.rs`).
//!
//! Drives `capataz_proto` over a non-blocking socket. A request reaches the
//! app only once its head and whole body are here (DESIGN §2.2): bodies up
//! to `post-buffering` stay in memory, larger ones are spooled to a temp
//! file. Responses are written in request order, so pipelining is safe.
//!
//! The head is an HTTP/1.x request head or, on `socket` listeners, a uwsgi
//! packet whose body is `CONTENT_LENGTH` bytes on the same stream; both go
//! through the same body machinery and limits. A uwsgi connection carries one
//! request and closes after its response (nginx never reuses it). With
//! `proxy-protocol`, a PROXY v1/v2 header may come first (see
//! [`Conn::take_proxy_header`]).

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use capataz_proto::http1::{
    self as h1, BodyFraming, ChunkedDecoder, Header, RequestHead, Span, Version,
};
use capataz_proto::proxy::{self, ProxyError};
use capataz_proto::uwsgi::{self, UwsgiError, UwsgiRequest};

use super::output::{Output, WriteStatus};
use super::poll::{ConnTimer, Wait, READ, WRITE};
use super::{Protocol, ThreadCx};
use crate::wsgi::{Body, Head, Request};

/// Bytes read per `recv` call at least.
const READ_CHUNK: usize = 16 * 1024;
/// Files at least this large are sent with TCP_CORK around head and body.
const CORK_MIN_FILE: u64 = 64 * 1024;
/// How long a rejected client may keep sending before we close (lingering
/// close, so it reads our error instead of a reset).
const LINGER_MS: u64 = 2000;

/// What the event loop does with the connection next.
pub enum Next {
    Park {
        events: u32,
        wait: Wait,
        timeout_ms: u64,
    },
    Close,
}

enum BodyProgress {
    /// Content-Length body, collected in `rbuf` right after the head.
    InPlace { len: usize },
    /// Content-Length body larger than `post-buffering`, written to a file.
    Spool {
        remaining: u64,
        file: File,
        total: u64,
    },
    Chunked {
        decoder: ChunkedDecoder,
        mem: Vec<u8>,
        spool: Option<File>,
        total: u64,
    },
}

/// A complete request head, of either protocol.
enum Parsed {
    Http(RequestHead),
    Uwsgi(UwsgiRequest),
}

impl Parsed {
    /// Bytes of the head in `rbuf`; the body follows.
    fn len(&self) -> usize {
        match self {
            Parsed::Http(h) => h.len,
            Parsed::Uwsgi(u) => u.len,
        }
    }
}

/// The connection's peer, as the access log and the environ see it.
pub struct Peer {
    /// REMOTE_ADDR / REMOTE_PORT strings; empty for unix sockets.
    pub addr: String,
    pub port: String,
    /// In `forwarded-allow-ips` (or a unix socket): its X-Forwarded-* and
    /// PROXY headers are believed.
    pub trusted: bool,
}

enum State {
    Head,
    Body {
        head: Parsed,
        progress: BodyProgress,
    },
    Writing {
        close_after: bool,
        /// A large response handed to the event loop unfinished: its
        /// access-log line waits for the outcome of the send (see
        /// [`PendingLog`]); `None` for everything else.
        log: Option<Box<PendingLog>>,
    },
    /// A static file: the head is in `out`, then `remaining` bytes of `file`
    /// from `offset` go out with sendfile.
    File {
        file: File,
        offset: u64,
        remaining: u64,
        close_after: bool,
        /// TCP_CORK is set while head and file go out, so they leave in
        /// full-sized segments (nginx's `tcp_nopush`).
        corked: bool,
    },
    /// After an error response: discard input until EOF or timeout.
    Lingering {
        until_ms: u64,
    },
}

pub struct Conn {
    fd: OwnedFd,
    pub slot: usize,
    pub timer: Arc<ConnTimer>,
    listener: usize,
    protocol: Protocol,
    remote_addr: String,
    remote_port: String,
    trusted: bool,
    /// `proxy-protocol` is on and no data has been read yet: the stream may
    /// start with a PROXY header.
    expect_proxy: bool,
    rbuf: Vec<u8>,
    headers: Vec<Header>,
    /// The vars of the current uwsgi packet (empty and unallocated on HTTP).
    vars: Vec<(Span, Span)>,
    state: State,
    out: Output,
    /// When the current request head started (clock ms): when its first
    /// bytes were parked waiting for the rest, or when a pipelined head was
    /// left in `rbuf`. 0: none yet; `u64::MAX`: a fresh connection.
    head_started_ms: u64,
    /// The last recv emptied the socket (a short read or EAGAIN), so after a
    /// response with nothing buffered we can wait for readiness without
    /// trying another recv that would only say EAGAIN.
    socket_drained: bool,
}

enum Fill {
    Data,
    WouldBlock,
    Eof,
}

fn spool_file() -> io::Result<File> {
    tempfile::tempfile()
}

impl Conn {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        fd: OwnedFd,
        slot: usize,
        timer: Arc<ConnTimer>,
        listener: usize,
        protocol: Protocol,
        peer: Peer,
        expect_proxy: bool,
        send_timeout: std::time::Duration,
    ) -> Conn {
        let raw = fd.as_raw_fd();
        Conn {
            fd,
            slot,
            timer,
            listener,
            protocol,
            remote_addr: peer.addr,
            remote_port: peer.port,
            trusted: peer.trusted,
            expect_proxy,
            rbuf: Vec::with_capacity(READ_CHUNK),
            headers: match protocol {
                Protocol::Http => Vec::with_capacity(32),
                Protocol::Uwsgi => Vec::new(),
            },
            vars: Vec::new(),
            state: State::Head,
            out: Output::new(raw, send_timeout),
            head_started_ms: 0,
            socket_drained: false,
        }
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    fn fill(&mut self) -> io::Result<Fill> {
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
            self.rbuf.reserve(READ_CHUNK);
        }
        let spare = self.rbuf.spare_capacity_mut();
        loop {
            // SAFETY: spare is writable memory of spare.len() bytes; recv
            // writes at most that many and we only expose what it wrote.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    spare.as_mut_ptr().cast(),
                    spare.len(),
                    0,
                )
            };
            if n > 0 {
                self.socket_drained = (n as usize) < spare.len();
                // SAFETY: recv initialised n bytes of the spare capacity.
                unsafe { self.rbuf.set_len(self.rbuf.len() + n as usize) };
                return Ok(Fill::Data);
            }
            if n == 0 {
                return Ok(Fill::Eof);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    self.socket_drained = true;
                    return Ok(Fill::WouldBlock);
                }
                _ => return Err(e),
            }
        }
    }

    /// Queues an error response and closes after it (lingering).
    fn reject(&mut self, cx: &mut ThreadCx<'_>, status: u16, reason: &str) -> Next {
        if status == 408 {
            tracing::info!("request timeout from {}: {reason}", self.remote_addr);
        } else {
            tracing::warn!("bad request from {}: {reason} ({status})", self.remote_addr);
        }
        let date = cx.clock.http_date();
        super::output::push_error_response(&mut self.out.buf, status, &date);
        match self.out.write_nonblocking() {
            Ok(WriteStatus::Done) => {
                // SAFETY: shutting down our own socket's write side.
                unsafe { libc::shutdown(self.fd.as_raw_fd(), libc::SHUT_WR) };
                self.rbuf.clear();
                self.state = State::Lingering {
                    until_ms: cx.shared.clock.now_ms() + LINGER_MS,
                };
                Next::Park {
                    events: READ,
                    wait: Wait::Request,
                    timeout_ms: LINGER_MS,
                }
            }
            Ok(WriteStatus::WouldBlock) => {
                self.state = State::Writing {
                    close_after: true,
                    log: None,
                };
                Next::Park {
                    events: WRITE,
                    wait: Wait::Send,
                    timeout_ms: cx.shared.send_timeout_ms,
                }
            }
            Err(_) => Next::Close,
        }
    }

    /// Handles readiness: reads, parses, runs the app, writes, until the
    /// socket would block or the connection ends.
    pub fn drive(&mut self, cx: &mut ThreadCx<'_>) -> Next {
        self.timer.hold();
        let expired = self
            .timer
            .expired
            .swap(false, std::sync::atomic::Ordering::AcqRel);
        loop {
            match &mut self.state {
                State::Writing { close_after, log } => {
                    let close_after = *close_after;
                    let written = self.out.write_nonblocking();
                    if !matches!(written, Ok(WriteStatus::WouldBlock)) || expired {
                        if let Some(log) = log.take() {
                            let gone = !matches!(written, Ok(WriteStatus::Done));
                            self.log_deferred(cx, *log, gone);
                        }
                    }
                    match written {
                        Ok(WriteStatus::Done) if close_after => return Next::Close,
                        Ok(WriteStatus::Done) => {
                            self.state = State::Head;
                            if self.rbuf.is_empty() && self.socket_drained && !expired {
                                return Next::Park {
                                    events: READ,
                                    wait: Wait::Idle,
                                    timeout_ms: cx.shared.keepalive_timeout_ms,
                                };
                            }
                        }
                        Ok(WriteStatus::WouldBlock) if expired => return Next::Close,
                        Ok(WriteStatus::WouldBlock) => {
                            return Next::Park {
                                events: WRITE,
                                wait: Wait::Send,
                                timeout_ms: cx.shared.send_timeout_ms,
                            }
                        }
                        Err(_) => return Next::Close,
                    }
                }
                State::File { .. } => match self.send_file() {
                    Ok(Some(close_after)) => {
                        if close_after {
                            return Next::Close;
                        }
                        self.state = State::Head;
                    }
                    Ok(None) if expired => return Next::Close,
                    Ok(None) => {
                        return Next::Park {
                            events: WRITE,
                            wait: Wait::Send,
                            timeout_ms: cx.shared.send_timeout_ms,
                        }
                    }
                    Err(()) => return Next::Close,
                },
                State::Lingering { until_ms } => {
                    let until = *until_ms;
                    self.rbuf.clear();
                    match self.fill() {
                        Ok(Fill::Data) if !expired && cx.shared.clock.now_ms() < until => continue,
                        Ok(Fill::WouldBlock) if !expired => {
                            return Next::Park {
                                events: READ,
                                wait: Wait::Request,
                                timeout_ms: until.saturating_sub(cx.shared.clock.now_ms()).max(1),
                            }
                        }
                        _ => return Next::Close,
                    }
                }
                State::Head => {
                    if !self.rbuf.is_empty() {
                        if self.expect_proxy {
                            match self.take_proxy_header(cx) {
                                Ok(true) => continue,
                                Ok(false) => {}
                                Err(()) => return Next::Close,
                            }
                        }
                        let parsed = match self.protocol {
                            Protocol::Http if !self.expect_proxy => h1::parse_request_head(
                                &self.rbuf,
                                &cx.shared.limits,
                                &mut self.headers,
                            )
                            .map(|head| head.map(Parsed::Http))
                            .map_err(|e| (e.status(), e.reason())),
                            Protocol::Uwsgi if !self.expect_proxy => match self.parse_uwsgi(cx) {
                                Ok(parsed) => Ok(parsed),
                                Err(()) => return Next::Close,
                            },
                            _ => Ok(None),
                        };
                        match parsed {
                            Ok(Some(head)) => {
                                if let Err((status, reason)) = self.start_request(head, cx) {
                                    return self.reject(cx, status, reason);
                                }
                                continue;
                            }
                            Ok(None) => {}
                            Err((status, reason)) => return self.reject(cx, status, reason),
                        }
                    }
                    // Draining does not close a keep-alive connection here:
                    // its client may already be sending the next request,
                    // which is served with `Connection: close`. The reaper
                    // closes it only once it has been idle for a while.
                    match self.fill() {
                        Ok(Fill::Data) => {}
                        Ok(Fill::WouldBlock) | Ok(Fill::Eof) if expired => {
                            if self.rbuf.is_empty() {
                                return Next::Close;
                            }
                            return self.reject(cx, 408, "request head not received in time");
                        }
                        Ok(Fill::WouldBlock) => {
                            if self.rbuf.is_empty() {
                                let timeout_ms = if self.head_started_ms == u64::MAX {
                                    cx.shared.header_timeout_ms // fresh connection
                                } else {
                                    cx.shared.keepalive_timeout_ms
                                };
                                return Next::Park {
                                    events: READ,
                                    wait: Wait::Idle,
                                    timeout_ms,
                                };
                            }
                            // A partial head: its clock starts at the first
                            // wait for the rest (microseconds after its first
                            // byte arrived), so a head that arrives whole, the
                            // usual case, costs no clock read.
                            let now = cx.shared.clock.now_ms();
                            if self.head_started_ms == 0 || self.head_started_ms == u64::MAX {
                                self.head_started_ms = now;
                            }
                            let elapsed = now.saturating_sub(self.head_started_ms);
                            return Next::Park {
                                events: READ,
                                wait: Wait::Request,
                                timeout_ms: cx
                                    .shared
                                    .header_timeout_ms
                                    .saturating_sub(elapsed)
                                    .max(1),
                            };
                        }
                        Ok(Fill::Eof) | Err(_) => return Next::Close,
                    }
                }
                State::Body { .. } => match self.advance_body(cx) {
                    Ok(true) => self.dispatch(cx),
                    Ok(false) => match self.fill() {
                        Ok(Fill::Data) => {}
                        Ok(Fill::WouldBlock) | Ok(Fill::Eof) if expired => {
                            return self.reject(cx, 408, "request body not received in time");
                        }
                        Ok(Fill::WouldBlock) => {
                            return Next::Park {
                                events: READ,
                                wait: Wait::Request,
                                timeout_ms: cx.shared.body_timeout_ms,
                            }
                        }
                        Ok(Fill::Eof) | Err(_) => return Next::Close,
                    },
                    Err((status, reason)) => return self.reject(cx, status, reason),
                },
            }
        }
    }

    /// Parses a uwsgi packet at the front of `rbuf`. `Err` means the packet
    /// was refused (logged with the peer and the reason): close.
    fn parse_uwsgi(&mut self, cx: &ThreadCx<'_>) -> Result<Option<Parsed>, ()> {
        let parsed = uwsgi::parse_packet(&self.rbuf, cx.shared.limits.max_head, &mut self.vars)
            .and_then(|packet| {
                packet
                    .map(|p| UwsgiRequest::from_vars(&self.rbuf, &p, &self.vars))
                    .transpose()
            });
        match parsed {
            Ok(req) => Ok(req.map(Parsed::Uwsgi)),
            Err(e) => {
                let address = &cx.shared.listeners[self.listener].1.address;
                let hint = match e {
                    UwsgiError::TooLarge { .. } => {
                        " (raise buffer-size, at most 65535, or send fewer/smaller headers)"
                    }
                    _ => "",
                };
                tracing::warn!(
                    "uwsgi socket {address}: {e}{hint}; closing the connection from {}",
                    self.peer_name()
                );
                Err(())
            }
        }
    }

    /// The peer for messages ("unix socket peer" when it has no address).
    fn peer_name(&self) -> &str {
        if self.remote_addr.is_empty() {
            "a unix socket peer"
        } else {
            &self.remote_addr
        }
    }

    /// `proxy-protocol`: reads a PROXY v1/v2 header at the start of the
    /// stream. Ok(true): one was taken, parse on. Ok(false): more bytes
    /// needed. Err: refused (malformed, or from a peer not in
    /// `forwarded-allow-ips`), close. The header is optional, as in gunicorn,
    /// so the balancer's own health checks work without one.
    fn take_proxy_header(&mut self, cx: &ThreadCx<'_>) -> Result<bool, ()> {
        let header = match proxy::parse_proxy_header(&self.rbuf) {
            Ok(None) => return Ok(false),
            Err(ProxyError::NotProxy) => {
                self.expect_proxy = false;
                return Ok(true);
            }
            Err(e) => {
                tracing::warn!("{e} from {}; closing", self.peer_name());
                return Err(());
            }
            Ok(Some(h)) => h,
        };
        if !self.trusted {
            tracing::warn!(
                "PROXY header from {}, which is not in forwarded-allow-ips; closing",
                self.peer_name()
            );
            return Err(());
        }
        if let Some(source) = header.source {
            let ip = source.ip().to_canonical();
            self.remote_addr = ip.to_string();
            self.remote_port = source.port().to_string();
            // X-Forwarded-* now come from the client itself: believe them
            // only if the client is itself an allowed proxy.
            self.trusted = cx.shared.trusted_peers.contains(ip);
        }
        self.rbuf.drain(..header.len);
        self.expect_proxy = false;
        Ok(true)
    }

    /// A head has been parsed: decide how to read its body.
    fn start_request(
        &mut self,
        head: Parsed,
        cx: &mut ThreadCx<'_>,
    ) -> Result<(), (u16, &'static str)> {
        let post_buffering = cx.shared.post_buffering;
        let framing = match &head {
            Parsed::Http(h) => h.framing,
            Parsed::Uwsgi(u) => {
                if cx
                    .shared
                    .limits
                    .max_body
                    .is_some_and(|max| u.content_length > max)
                {
                    return Err((413, "request body larger than limit-post"));
                }
                match u.content_length {
                    0 => BodyFraming::None,
                    n => BodyFraming::Length(n),
                }
            }
        };
        let hlen = head.len();
        let progress = match framing {
            BodyFraming::None => BodyProgress::InPlace { len: 0 },
            BodyFraming::Length(n) if n <= post_buffering as u64 => {
                BodyProgress::InPlace { len: n as usize }
            }
            BodyFraming::Length(n) => BodyProgress::Spool {
                remaining: n,
                file: spool_file()
                    .map_err(|_| (500, "cannot create a temp file for the request body"))?,
                total: n,
            },
            BodyFraming::Chunked => BodyProgress::Chunked {
                decoder: ChunkedDecoder::new(&cx.shared.limits),
                mem: Vec::new(),
                spool: None,
                total: 0,
            },
        };
        let needs_body =
            !matches!(progress, BodyProgress::InPlace { len } if self.rbuf.len() >= hlen + len);
        let continue_wanted =
            matches!(&head, Parsed::Http(h) if h.expect_continue && h.version == Version::Http11);
        if needs_body && continue_wanted {
            // RFC 9110 §10.1.1: tell the client to send the body. Tiny, so a
            // fresh socket buffer always takes it.
            let _ = super::output::send_some(self.fd.as_raw_fd(), b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        self.state = State::Body { head, progress };
        Ok(())
    }

    /// Moves body bytes out of `rbuf`. Ok(true) when the body is complete.
    fn advance_body(&mut self, cx: &ThreadCx<'_>) -> Result<bool, (u16, &'static str)> {
        let State::Body { head, progress } = &mut self.state else {
            return Ok(false);
        };
        let hlen = head.len();
        let spool_err = |_| (500, "cannot write the request body to a temp file");
        match progress {
            BodyProgress::InPlace { len } => Ok(self.rbuf.len() >= hlen + *len),
            BodyProgress::Spool {
                remaining, file, ..
            } => {
                let avail = (self.rbuf.len() - hlen) as u64;
                let n = avail.min(*remaining) as usize;
                if n > 0 {
                    file.write_all(&self.rbuf[hlen..hlen + n])
                        .map_err(spool_err)?;
                    self.rbuf.drain(hlen..hlen + n);
                    *remaining -= n as u64;
                }
                Ok(*remaining == 0)
            }
            BodyProgress::Chunked {
                decoder,
                mem,
                spool,
                total,
            } => {
                let (consumed, done) = decoder
                    .decode(&self.rbuf[hlen..], mem)
                    .map_err(|e| (e.status(), e.reason()))?;
                self.rbuf.drain(hlen..hlen + consumed);
                if spool.is_none() && mem.len() > cx.shared.post_buffering {
                    *spool = Some(spool_file().map_err(spool_err)?);
                }
                if let Some(file) = spool {
                    *total += mem.len() as u64;
                    file.write_all(mem).map_err(spool_err)?;
                    mem.clear();
                }
                Ok(done)
            }
        }
    }

    /// Runs the app for the complete request at the front of `rbuf`.
    fn dispatch(&mut self, cx: &mut ThreadCx<'_>) {
        let State::Body { head, progress } = std::mem::replace(&mut self.state, State::Head) else {
            return;
        };
        let shared = cx.shared;
        let hlen = head.len();
        // uwsgi: one request per connection, always.
        let keep_alive = matches!(&head, Parsed::Http(h) if h.keep_alive)
            && shared.keepalive_timeout_ms > 0
            && !shared.is_draining();
        if shared.static_files.is_some() {
            let consumed = match &progress {
                BodyProgress::InPlace { len } => hlen + len,
                _ => hlen,
            };
            if self.try_static(cx, &head, keep_alive, consumed) {
                return;
            }
        }
        let (body, consumed) = match progress {
            BodyProgress::InPlace { len } => {
                (Body::Memory(&self.rbuf[hlen..hlen + len]), hlen + len)
            }
            BodyProgress::Spool { file, total, .. } => (Body::Spooled(file, total), hlen),
            BodyProgress::Chunked {
                spool: Some(file),
                total,
                ..
            } => (Body::Spooled(file, total), hlen),
            BodyProgress::Chunked { mem, .. } => {
                cx.body_scratch = mem;
                (Body::Memory(&cx.body_scratch[..]), hlen)
            }
        };
        let summary = Summary::of(&self.rbuf, &head);
        let head_only = summary.method == b"HEAD";
        let started = Instant::now();
        let core_slot = shared.scoreboard.core(shared.slot, cx.core);
        core_slot.begin(summary.method, summary.target);
        let date = cx.clock.http_date();
        let date = &date[..];
        let wsgi_head = match &head {
            Parsed::Http(h) => Head::Http {
                head: h,
                headers: &self.headers,
                trusted_proxy: self.trusted,
            },
            Parsed::Uwsgi(_) => Head::Uwsgi { vars: &self.vars },
        };
        let outcome = shared.wsgi.handle(
            &cx.thread_state,
            Request {
                head_buf: &self.rbuf,
                head: wsgi_head,
                body,
                remote_addr: &self.remote_addr,
                remote_port: &self.remote_port,
                listener: self.listener,
                method: summary.method,
                uri: summary.target,
            },
            &mut self.out,
            summary.version,
            head_only,
            keep_alive,
            matches!(head, Parsed::Uwsgi(_)),
            date,
        );
        core_slot.end();
        core_slot.count_request();
        shared.worker_slot().record(
            outcome.status,
            outcome.body_bytes + outcome.headers_bytes as u64,
            started.elapsed().as_micros() as u64,
        );
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        let requests = shared.worker_slot().requests.fetch_add(1, relaxed) + 1;
        let total = shared.scoreboard.total_requests().fetch_add(1, relaxed) + 1;
        if shared.max_requests > 0 && requests >= shared.max_requests {
            shared.recycle(
                "requests",
                &format!("max-requests reached ({requests} requests)"),
            );
        }
        let record = LogRecord {
            requests,
            total,
            started,
            core: cx.core,
            outcome,
        };
        if shared.log_requests && !self.out.tail.is_empty() && !record.outcome.client_gone {
            // A large body or a `wsgi.file_wrapper` file the event loop
            // finishes sending: log it once we know how much of it the
            // client took. The request head stays in `rbuf` until then
            // (nothing is read while writing).
            let head_len = record.outcome.headers_bytes.min(self.out.buf.len());
            let response_head = if self.out.buf.starts_with(b"HTTP/") {
                self.out.buf[..head_len].to_vec()
            } else {
                Vec::new()
            };
            self.state = State::Writing {
                close_after: !record.outcome.keep_alive,
                log: Some(Box::new(PendingLog {
                    head,
                    consumed,
                    record,
                    response_head,
                })),
            };
            cx.body_scratch.clear();
            return;
        }
        self.report(
            cx,
            &head,
            &record,
            record.outcome.client_gone,
            &self.out.buf,
        );
        cx.body_scratch.clear();
        self.finish_request(consumed, shared);
        self.state = State::Writing {
            close_after: !record.outcome.keep_alive,
            log: None,
        };
    }

    /// Drops the served request from `rbuf`; a pipelined head behind it
    /// starts its clock now.
    fn finish_request(&mut self, consumed: usize, shared: &super::Shared) {
        self.rbuf.drain(..consumed.min(self.rbuf.len()));
        self.head_started_ms = if self.rbuf.is_empty() {
            0
        } else {
            shared.clock.now_ms()
        };
    }

    /// The one line saying a client left before its response was complete;
    /// debug level, as client disconnects are (CONVENTIONS). The request line
    /// is logged as well, with the bytes actually sent.
    fn client_went_away(&self, head: &Parsed, record: &LogRecord, unsent: u64) {
        let summary = Summary::of(&self.rbuf, head);
        tracing::debug!(
            "client {} went away during {} {}: {} of {} body bytes sent",
            self.remote_addr,
            String::from_utf8_lossy(summary.method),
            String::from_utf8_lossy(summary.target),
            record.outcome.body_bytes.saturating_sub(unsent),
            record.outcome.body_bytes
        );
    }

    /// Logs a request whose line waited for the end of its send.
    fn log_deferred(&mut self, cx: &mut ThreadCx<'_>, log: PendingLog, gone: bool) {
        self.report(cx, &log.head, &log.record, gone, &log.response_head);
        self.finish_request(log.consumed, cx.shared);
    }

    /// The end of an app request: the debug line if the client left (`gone`)
    /// and, with logging on, the access-log line with the bytes it took:
    /// what the app produced less what is still unsent (framing bytes make
    /// this a slight undercount).
    fn report(
        &self,
        cx: &mut ThreadCx<'_>,
        head: &Parsed,
        record: &LogRecord,
        gone: bool,
        response_head: &[u8],
    ) {
        let unsent = if gone {
            self.out.pending_len() as u64
        } else {
            0
        };
        if gone {
            self.client_went_away(head, record, unsent);
        }
        if cx.shared.log_requests {
            self.log_request(cx, head, record, unsent, response_head);
        }
    }

    /// Writes the access-log line of an app request; `unsent`: body bytes
    /// the client did not take.
    fn log_request(
        &self,
        cx: &mut ThreadCx<'_>,
        head: &Parsed,
        record: &LogRecord,
        unsent: u64,
        response_head: &[u8],
    ) {
        let shared = cx.shared;
        let outcome = &record.outcome;
        let summary = Summary::of(&self.rbuf, head);
        let header = LogHeaders {
            buf: &self.rbuf,
            headers: &self.headers,
            vars: &self.vars,
            uwsgi: matches!(head, Parsed::Uwsgi(_)),
        };
        cx.log.request(crate::logging::RequestLine {
            pid: shared.pid,
            requests: record.requests,
            total: record.total,
            remote_addr: summary.remote_addr.unwrap_or(&self.remote_addr),
            vars: outcome.vars,
            vars_bytes: outcome.vars_bytes,
            ctime: cx.clock.ctime(),
            method: summary.method,
            uri: summary.target,
            body_bytes: outcome.body_bytes.saturating_sub(unsent),
            micros: record.started.elapsed().as_micros() as u64,
            protocol: summary.protocol,
            status: outcome.status,
            headers: outcome.headers_count,
            headers_bytes: outcome.headers_bytes,
            core: record.core,
            via_sendfile: outcome.via_sendfile,
            header: &header,
            response_head,
        });
    }

    /// Sends the head, then the file. Ok(Some(close_after)) when done,
    /// Ok(None) when the socket is full.
    fn send_file(&mut self) -> Result<Option<bool>, ()> {
        let State::File {
            file,
            offset,
            remaining,
            close_after,
            corked,
        } = &mut self.state
        else {
            return Err(());
        };
        // A small file fits a segment or two anyway: not worth two syscalls.
        if !*corked && *remaining >= CORK_MIN_FILE {
            set_cork(self.fd.as_raw_fd(), true);
            *corked = true;
        }
        let head = if *remaining > 0 {
            self.out.write_nonblocking_more()
        } else {
            self.out.write_nonblocking()
        };
        match head {
            Ok(WriteStatus::Done) => {}
            Ok(WriteStatus::WouldBlock) => return Ok(None),
            Err(_) => return Err(()),
        }
        while *remaining > 0 {
            let mut off = *offset as libc::off_t;
            let chunk = (*remaining).min(1 << 30) as usize;
            // SAFETY: both descriptors are open; off is a valid pointer.
            let n =
                unsafe { libc::sendfile(self.fd.as_raw_fd(), file.as_raw_fd(), &mut off, chunk) };
            if n > 0 {
                *offset += n as u64;
                *remaining -= n as u64;
                continue;
            }
            if n == 0 {
                return Err(()); // the file shrank: the response cannot be completed
            }
            match io::Error::last_os_error().kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(None),
                _ => return Err(()),
            }
        }
        if *corked {
            set_cork(self.fd.as_raw_fd(), false);
        }
        Ok(Some(*close_after))
    }

    /// Serves a `static-map` file on the I/O side, if the path is one.
    /// Returns false when the app should handle the request.
    fn try_static(
        &mut self,
        cx: &mut ThreadCx<'_>,
        head: &Parsed,
        keep_alive: bool,
        consumed: usize,
    ) -> bool {
        use crate::static_files::{Lookup, RequestInfo};
        let shared = cx.shared;
        let Some(statics) = &shared.static_files else {
            return false;
        };
        let started = Instant::now();
        let summary = Summary::of(&self.rbuf, head);
        let resolved = match statics.lookup(summary.path) {
            Lookup::NotStatic => return false,
            Lookup::Reject(status) => {
                tracing::info!(
                    "static: rejected {} from {} ({status})",
                    String::from_utf8_lossy(summary.path),
                    self.remote_addr
                );
                let date = cx.clock.http_date();
                super::output::push_error_response(&mut self.out.buf, status, &date);
                self.rbuf.drain(..consumed.min(self.rbuf.len()));
                self.state = State::Writing {
                    close_after: true,
                    log: None,
                };
                return true;
            }
            Lookup::File(resolved) => resolved,
        };
        let date = cx.clock.http_date();
        let (buf, headers, vars) = (&self.rbuf, &self.headers, &self.vars);
        let uwsgi = matches!(head, Parsed::Uwsgi(_));
        let lookup = |name: &[u8]| {
            if uwsgi {
                // The header arrives as an HTTP_* var; the last one wins.
                vars.iter()
                    .rev()
                    .find(|(k, _)| is_http_var(h1::span(buf, *k), name))
                    .map(|(_, v)| h1::span(buf, *v))
            } else {
                headers
                    .iter()
                    .find(|h| h1::span(buf, h.name).eq_ignore_ascii_case(name))
                    .map(|h| h1::span(buf, h.value))
            }
        };
        let reply = statics.respond(
            resolved,
            &RequestInfo {
                method: summary.method,
                header: &lookup,
                http11: summary.version == Version::Http11,
                keep_alive,
                date: &date,
            },
        );
        self.out.buf.extend_from_slice(&reply.head);
        self.out.buf.extend_from_slice(&reply.inline_body);
        let body_len = reply
            .body
            .as_ref()
            .map_or(reply.inline_body.len() as u64, |b| b.2);
        shared.worker_slot().record(
            reply.status,
            body_len + reply.head.len() as u64,
            started.elapsed().as_micros() as u64,
        );
        // Counted with logging off too (stats, max-requests would otherwise
        // miss static requests).
        shared.scoreboard.core(shared.slot, cx.core).count_request();
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        let requests = shared.worker_slot().requests.fetch_add(1, relaxed) + 1;
        let total = shared.scoreboard.total_requests().fetch_add(1, relaxed) + 1;
        if shared.log_requests {
            cx.log.request(crate::logging::RequestLine {
                pid: shared.pid,
                requests,
                total,
                remote_addr: summary.remote_addr.unwrap_or(&self.remote_addr),
                vars: headers.len() + vars.len(),
                vars_bytes: head.len(),
                ctime: cx.clock.ctime(),
                method: summary.method,
                uri: summary.target,
                body_bytes: body_len,
                micros: started.elapsed().as_micros() as u64,
                protocol: summary.protocol,
                status: reply.status,
                headers: reply.head.split(|&b| b == b'\n').count().saturating_sub(2),
                headers_bytes: reply.head.len(),
                core: cx.core,
                via_sendfile: reply.body.is_some(),
                header: &LogHeaders {
                    buf,
                    headers,
                    vars,
                    uwsgi,
                },
                response_head: &reply.head,
            });
        }
        self.rbuf.drain(..consumed.min(self.rbuf.len()));
        self.head_started_ms = if self.rbuf.is_empty() {
            0
        } else {
            shared.clock.now_ms()
        };
        self.state = match reply.body {
            Some((file, offset, remaining)) => State::File {
                file,
                offset,
                remaining,
                close_after: !keep_alive,
                corked: false,
            },
            None => State::Writing {
                close_after: !keep_alive,
                log: None,
            },
        };
        true
    }

    /// Marks a brand-new connection, whose first wait uses the header timeout.
    pub fn mark_fresh(&mut self) {
        self.head_started_ms = u64::MAX;
    }
}

/// The numbers of an app request's access-log line, known when the app is done.
struct LogRecord {
    requests: u64,
    total: u64,
    started: Instant,
    core: usize,
    outcome: crate::wsgi::Outcome,
}

/// An access-log line waiting for the end of its response's send, with the
/// request head it names (still at the front of `rbuf`).
struct PendingLog {
    head: Parsed,
    consumed: usize,
    record: LogRecord,
    response_head: Vec<u8>,
}

/// What the server itself reads from a request head, of either protocol,
/// borrowed from the read buffer: for the scoreboard, the access log, static
/// files and the response's status line.
struct Summary<'b> {
    method: &'b [u8],
    /// The request target as sent (REQUEST_URI).
    target: &'b [u8],
    /// The raw (not yet percent-decoded) path of the target.
    path: &'b [u8],
    /// The protocol for the log ("HTTP/1.1").
    protocol: &'b [u8],
    /// The version of the response's status line.
    version: Version,
    /// uwsgi: the client address the front-end reported (REMOTE_ADDR).
    remote_addr: Option<&'b str>,
}

impl<'b> Summary<'b> {
    fn of(buf: &'b [u8], head: &Parsed) -> Summary<'b> {
        match head {
            Parsed::Http(h) => Summary {
                method: h1::span(buf, h.method),
                target: h1::span(buf, h.target),
                path: h1::span(buf, h.path),
                protocol: h.version.as_bytes(),
                version: h.version,
                remote_addr: None,
            },
            Parsed::Uwsgi(u) => {
                let var = |s: Option<Span>| s.map(|s| h1::span(buf, s));
                let target = var(u.uri).unwrap_or_default();
                let path = target
                    .iter()
                    .position(|&b| b == b'?')
                    .map_or(target, |q| &target[..q]);
                Summary {
                    method: var(u.method).unwrap_or(b"GET"),
                    target,
                    path,
                    protocol: var(u.protocol).unwrap_or(b"HTTP/1.0"),
                    version: u.response_version(buf),
                    remote_addr: var(u.remote_addr).and_then(|a| std::str::from_utf8(a).ok()),
                }
            }
        }
    }
}

/// A request's headers, of either protocol (uwsgi: the `HTTP_*` vars), for
/// the access log's `%({name}i)s`.
struct LogHeaders<'b> {
    buf: &'b [u8],
    headers: &'b [Header],
    vars: &'b [(Span, Span)],
    uwsgi: bool,
}

impl crate::logging::HeaderLookup for LogHeaders<'_> {
    fn get(&self, name: &[u8]) -> Option<&[u8]> {
        let buf = self.buf;
        if self.uwsgi {
            self.vars
                .iter()
                .rev()
                .find(|(k, _)| is_http_var(h1::span(buf, *k), name))
                .map(|(_, v)| h1::span(buf, *v))
        } else {
            self.headers
                .iter()
                .find(|h| h1::span(buf, h.name).eq_ignore_ascii_case(name))
                .map(|h| h1::span(buf, h.value))
        }
    }
}

/// Sets or clears TCP_CORK; unix sockets refuse it, which is harmless.
fn set_cork(fd: i32, on: bool) {
    let value = libc::c_int::from(on);
    // SAFETY: setsockopt with a valid int option value on our own socket.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            &value as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Whether the uwsgi var `key` carries the header `name` (lowercase), as
/// `HTTP_` + the name upper-cased with '-' as '_'.
fn is_http_var(key: &[u8], name: &[u8]) -> bool {
    key.len() == name.len() + 5
        && key.starts_with(b"HTTP_")
        && key[5..].iter().zip(name).all(|(&k, &n)| {
            k == if n == b'-' {
                b'_'
            } else {
                n.to_ascii_uppercase()
            }
        })
}

#[cfg(test)]
mod tests {
    use super::is_http_var;

    #[test]
    fn header_names_map_to_uwsgi_vars() {
        assert!(is_http_var(b"HTTP_IF_NONE_MATCH", b"if-none-match"));
        assert!(is_http_var(b"HTTP_RANGE", b"range"));
        assert!(!is_http_var(b"HTTP_RANGE", b"rang"));
        assert!(!is_http_var(b"XTTP_RANGE", b"range"));
    }
}
