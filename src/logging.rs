//! The server's own log (`tracing`, to stderr) and the access log.
//!
//! The access log is a separate, fast writer: each app thread formats lines
//! into its own buffer and writes whole lines with one `write(2)` when the
//! buffer fills or the thread goes idle, so lines from threads and processes
//! never interleave mid-line and a busy server does not pay a syscall per
//! request. The line is uWSGI's default shape.
//!
//! Both go to the *log destination* ([`log_fd`]): fd 2 (stderr, or the
//! `logto` file put there) in the master. In a worker whose stdout/stderr
//! the master captures (`log-master`, the default; see
//! [`crate::master::worker_output`]), fds 1 and 2 are a pipe to the master
//! and the log destination is a duplicate of the master's fd 2, so the
//! access log and the worker's own server log skip the pipe entirely.

use std::collections::VecDeque;
use std::io::Write;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// How many of the master's own log lines [`recent`] keeps.
const RECENT_LINES: usize = 500;
static RECENT: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());

/// The last `n` lines the master's server log (`tracing`, not the access log
/// nor worker output) wrote, oldest first; for the stats dashboard.
pub fn recent(n: usize) -> Vec<String> {
    let ring = RECENT.lock().unwrap_or_else(|p| p.into_inner());
    ring.iter()
        .skip(ring.len().saturating_sub(n))
        .cloned()
        .collect()
}

/// Where this process's server log and access log go (see the module doc).
static LOG_FD: AtomicI32 = AtomicI32::new(2);
/// The log destination is a pipe (or socket), where only writes of up to
/// `PIPE_BUF` bytes are atomic; refreshed whenever the destination changes.
static LOG_IS_PIPE: AtomicBool = AtomicBool::new(false);

/// The descriptor of the log destination.
pub fn log_fd() -> RawFd {
    LOG_FD.load(Ordering::Relaxed)
}

/// Makes `fd` this process's log destination (a worker with captured
/// output, before its first log line).
pub fn set_log_fd(fd: RawFd) {
    LOG_FD.store(fd, Ordering::Relaxed);
    refresh_destination();
}

/// Re-reads what kind of file the log destination is.
fn refresh_destination() {
    // SAFETY: fstat into a zeroed stat; a bad fd just fails.
    let is_pipe = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(log_fd(), &mut st) == 0
            && matches!(st.st_mode & libc::S_IFMT, libc::S_IFIFO | libc::S_IFSOCK)
    };
    LOG_IS_PIPE.store(is_pipe, Ordering::Relaxed);
}

/// Writes whole lines to the log destination so they can never be spliced
/// with other processes' lines: one `write_all` for a file (O_APPEND, or a
/// shared offset, keeps each write whole); for a pipe, pieces of at most
/// `PIPE_BUF` bytes cut at line ends (a single longer line goes alone).
pub fn write_log_lines(buf: &[u8]) -> std::io::Result<()> {
    // SAFETY: the log fd stays open for the life of the process (it is only
    // ever replaced with dup2); ManuallyDrop keeps File from closing it.
    let mut out = std::mem::ManuallyDrop::new(unsafe {
        <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(log_fd())
    });
    if !LOG_IS_PIPE.load(Ordering::Relaxed) || buf.len() <= libc::PIPE_BUF {
        return out.write_all(buf);
    }
    for piece in pipe_sized_pieces(buf) {
        out.write_all(piece)?;
    }
    Ok(())
}

/// `buf` cut after newlines into pieces of at most `PIPE_BUF` bytes where
/// possible; a line longer than that is a piece of its own.
fn pipe_sized_pieces(mut buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if buf.is_empty() {
            return None;
        }
        let window = &buf[..buf.len().min(libc::PIPE_BUF)];
        let end = if window.len() == buf.len() {
            buf.len()
        } else {
            match memchr::memrchr(b'\n', window) {
                Some(nl) => nl + 1,
                None => memchr::memchr(b'\n', buf).map_or(buf.len(), |nl| nl + 1),
            }
        };
        let (piece, rest) = buf.split_at(end);
        buf = rest;
        Some(piece)
    })
}

/// The log destination, and (in the master) a copy of each line into [`RECENT`].
struct Tee {
    keep: bool,
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // tracing-subscriber hands over one whole event per write.
        write_log_lines(buf)?;
        if self.keep {
            let mut ring = RECENT.lock().unwrap_or_else(|p| p.into_inner());
            for line in String::from_utf8_lossy(buf).lines() {
                if ring.len() >= RECENT_LINES {
                    ring.pop_front();
                }
                ring.push_back(line.to_string());
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sets up `tracing` for the master or a worker.
pub fn init(role: &str) {
    refresh_destination();
    let role = role.to_string();
    let keep = role == "master";
    let _ = tracing_subscriber::fmt()
        .with_writer(move || Tee { keep })
        .with_ansi(false)
        .with_target(false)
        .with_max_level(if std::env::var_os("CAPATAZ_DEBUG").is_some() {
            tracing::Level::DEBUG
        } else {
            tracing::Level::INFO
        })
        .with_thread_names(false)
        .without_time()
        .event_format(Format { role })
        .try_init();
}

struct Format {
    role: String,
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Format
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut clock = Clock::default();
        let level = event.metadata().level();
        write!(
            writer,
            "[{}] capataz {}[{}] {}: ",
            String::from_utf8_lossy(clock.ctime()),
            self.role,
            std::process::id(),
            level
        )?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Per-thread cache of the formatted current second: the HTTP `Date` value
/// and the ctime-style stamp of the access log.
#[derive(Default)]
pub struct Clock {
    second: u64,
    http: [u8; 29],
    ctime: [u8; 24],
}

impl Clock {
    fn refresh(&mut self) {
        let now = SystemTime::now();
        let secs = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if secs == self.second && self.http[0] != 0 {
            return;
        }
        self.second = secs;
        let date = httpdate::fmt_http_date(now);
        let n = date.len().min(29);
        self.http[..n].copy_from_slice(&date.as_bytes()[..n]);
        // ctime format ("Wed Nov 25 17:52:18 2026"), local time, via the C library.
        let t = secs as libc::time_t;
        // SAFETY: tm is plain data filled by localtime_r; buf is large enough
        // for strftime's output, whose length it returns.
        unsafe {
            let mut tm: libc::tm = std::mem::zeroed();
            libc::localtime_r(&t, &mut tm);
            let mut buf = [0u8; 64];
            let len = libc::strftime(
                buf.as_mut_ptr().cast(),
                buf.len(),
                c"%a %b %e %H:%M:%S %Y".as_ptr(),
                &tm,
            );
            let len = len.min(24);
            self.ctime = [b' '; 24];
            self.ctime[..len].copy_from_slice(&buf[..len]);
        }
    }

    pub fn http_date(&mut self) -> [u8; 29] {
        self.refresh();
        self.http
    }

    pub fn ctime(&mut self) -> &[u8] {
        self.refresh();
        &self.ctime
    }
}

/// One access-log line's facts.
pub struct RequestLine<'a> {
    pub pid: u32,
    pub requests: u64,
    pub total: u64,
    pub remote_addr: &'a str,
    pub vars: usize,
    pub vars_bytes: usize,
    pub ctime: &'a [u8],
    pub method: &'a [u8],
    pub uri: &'a [u8],
    pub body_bytes: u64,
    /// Response time in microseconds.
    pub micros: u64,
    pub protocol: &'a [u8],
    pub status: u16,
    pub headers: usize,
    pub headers_bytes: usize,
    pub core: usize,
    /// The body went out with sendfile (a static file, `wsgi.file_wrapper`).
    pub via_sendfile: bool,
    /// The request's headers (`log-format`'s `%({name}i)s`).
    pub header: &'a dyn HeaderLookup,
    /// The encoded response head, if still in the output buffer
    /// (`%({name}o)s`); empty when already sent.
    pub response_head: &'a [u8],
}

/// A request header by lowercase name.
pub trait HeaderLookup {
    fn get(&self, name: &[u8]) -> Option<&[u8]>;
}

/// What the request log writes and when; built once from the config at
/// worker start.
#[derive(Default)]
pub struct LogSettings {
    /// Not `disable-logging`.
    pub all: bool,
    pub log_4xx: bool,
    pub log_5xx: bool,
    /// `log-slow`: milliseconds; 0 = off.
    pub slow_ms: u64,
    pub format: LineFormat,
    /// `log-date`: the strftime format of the line prefix.
    pub date: Option<std::ffi::CString>,
    pub micros: bool,
    pub memory_report: bool,
    /// `log-sendfile`: log sendfile requests even with `disable-logging`.
    pub sendfile: bool,
}

/// The shape of a request line.
#[derive(Default, Debug, PartialEq)]
pub enum LineFormat {
    /// uWSGI's default line.
    #[default]
    Uwsgi,
    /// `log-format` with gunicorn's atoms, compiled.
    Atoms(Vec<Part>),
    /// `log-format = json`.
    Json,
}

/// One piece of a compiled `log-format`.
#[derive(Debug, PartialEq)]
pub enum Part {
    Text(Vec<u8>),
    /// A gunicorn atom letter (`h`, `s`, `D` ...).
    Atom(u8),
    /// `%({name}i)s`, name lowercased.
    RequestHeader(Vec<u8>),
    /// `%({name}o)s`, name lowercased.
    ResponseHeader(Vec<u8>),
}

/// The date format a bare `log-date` means (uWSGI's ctime stamp).
pub const DEFAULT_LOG_DATE: &str = "%a %b %e %H:%M:%S %Y";

impl LogSettings {
    pub fn from_config(cfg: &crate::config::Config) -> LogSettings {
        LogSettings {
            all: !cfg.disable_logging,
            log_4xx: cfg.log_4xx,
            log_5xx: cfg.log_5xx,
            slow_ms: cfg.log_slow,
            format: match cfg.log_format.as_deref() {
                None => LineFormat::Uwsgi,
                Some("json") => LineFormat::Json,
                Some(f) => LineFormat::Atoms(compile_format(f)),
            },
            date: cfg
                .log_date
                .as_deref()
                .and_then(|d| std::ffi::CString::new(d).ok()),
            micros: cfg.log_micros,
            memory_report: cfg.memory_report,
            sendfile: cfg.log_sendfile,
        }
    }

    /// The default line with nothing added: the fast path.
    fn is_plain(&self) -> bool {
        self.date.is_none()
            && !self.memory_report
            && !self.micros
            && matches!(self.format, LineFormat::Uwsgi)
    }

    /// Whether any request may be logged (the hot path skips the log
    /// entirely otherwise).
    pub fn any(&self) -> bool {
        self.all || self.log_4xx || self.log_5xx || self.slow_ms > 0 || self.sendfile
    }

    /// uWSGI's conditional logging: everything, or only what a `log-*`
    /// option asks for.
    fn wants(&self, status: u16, micros: u64, via_sendfile: bool) -> bool {
        self.all
            || (self.sendfile && via_sendfile)
            || (self.log_4xx && (400..500).contains(&status))
            || (self.log_5xx && status >= 500)
            || (self.slow_ms > 0 && micros >= self.slow_ms.saturating_mul(1000))
    }
}

/// Compiles a log format into parts: gunicorn `access_log_format` atoms
/// (`%(x)s`, `%({name}i)s`, `%({name}o)s`), uWSGI `log-format` variables
/// (`%(addr)`, `%(method)`, ...; see [`uwsgi_variable`]), `%%` and literal
/// text. An unknown uWSGI variable stays as written, as in uWSGI.
pub fn compile_format(f: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut text = Vec::new();
    let b = f.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && b.get(i + 1) == Some(&b'%') {
            text.push(b'%');
            i += 2;
            continue;
        }
        if b[i] == b'%' && b.get(i + 1) == Some(&b'(') {
            if let Some(close) = f[i + 2..].find(')') {
                let name = &b[i + 2..i + 2 + close];
                let gunicorn = b.get(i + 2 + close + 1) == Some(&b's');
                let part = if let (false, Some(part)) =
                    (gunicorn && name.len() == 1, uwsgi_variable(name))
                {
                    // uWSGI's %(name) has no trailing 's'; a following one is text.
                    Some((part, i + 2 + close + 1))
                } else if gunicorn {
                    let part = if name.len() > 3 && name[0] == b'{' && name[name.len() - 2] == b'}'
                    {
                        let header = name[1..name.len() - 2].to_ascii_lowercase();
                        match name[name.len() - 1] {
                            b'i' => Some(Part::RequestHeader(header)),
                            b'o' => Some(Part::ResponseHeader(header)),
                            _ => None,
                        }
                    } else if name.len() == 1 {
                        Some(Part::Atom(name[0]))
                    } else {
                        None
                    };
                    // Unknown atoms print "-", as gunicorn's do.
                    Some((part.unwrap_or(Part::Text(b"-".to_vec())), i + 2 + close + 2))
                } else {
                    None
                };
                if let Some((part, next)) = part {
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(part);
                    i = next;
                    continue;
                }
            }
        }
        text.push(b[i]);
        i += 1;
    }
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    parts
}

/// Atom for the full request URI (path and query), which gunicorn's atoms
/// lack; not a gunicorn letter, so `%(x)s` cannot reach it.
const ATOM_URI: u8 = 0x01;
/// Atom for the bare worker pid (gunicorn's `p` is `<pid>`).
const ATOM_PID: u8 = 0x02;
/// uWSGI's `%(size)`: response headers plus body bytes.
const ATOM_SIZE: u8 = 0x03;
/// uWSGI's `%(hsize)`: response headers bytes.
const ATOM_HSIZE: u8 = 0x04;
/// uWSGI's `%(ltime)`: the Apache-style time, without gunicorn's brackets.
const ATOM_LTIME: u8 = 0x05;
/// uWSGI's `%(core)`: the thread that ran the request.
const ATOM_CORE: u8 = 0x06;
/// uWSGI's `%(vars)`: how many CGI variables the request had.
const ATOM_VARS: u8 = 0x07;
/// uWSGI's `%(headers)`: how many response headers were sent.
const ATOM_HEADERS: u8 = 0x08;
/// uWSGI's `%(ctime)`: the ctime stamp of the request.
const ATOM_CTIME: u8 = 0x09;
/// uWSGI's `%(epoch)`: the current Unix time.
const ATOM_EPOCH: u8 = 0x0a;

/// The uWSGI `log-format` variables capataz knows, as the gunicorn atom
/// (or header) that prints the same thing.
fn uwsgi_variable(name: &[u8]) -> Option<Part> {
    Some(Part::Atom(match name {
        b"addr" => b'h',
        b"method" => b'm',
        b"uri" => ATOM_URI,
        b"proto" => b'H',
        b"status" => b's',
        b"rsize" => b'b',
        b"size" => ATOM_SIZE,
        b"hsize" => ATOM_HSIZE,
        b"ltime" => ATOM_LTIME,
        b"user" => b'u',
        b"core" => ATOM_CORE,
        b"vars" => ATOM_VARS,
        b"headers" => ATOM_HEADERS,
        b"ctime" => ATOM_CTIME,
        b"epoch" => ATOM_EPOCH,
        b"msecs" => b'M',
        b"micros" => b'D',
        b"secs" => b'L',
        b"pid" => ATOM_PID,
        b"uagent" => b'a',
        b"referer" => b'f',
        b"host" => return Some(Part::RequestHeader(b"host".to_vec())),
        _ => return None,
    }))
}

/// Buffered access log of one thread; written to stderr.
pub struct AccessLog {
    buf: Vec<u8>,
    settings: std::sync::Arc<LogSettings>,
    /// The second `date_prefix` and `clf_time` were made for.
    stamp_second: u64,
    date_prefix: Vec<u8>,
    clf_time: Vec<u8>,
}

const LOG_FLUSH_AT: usize = 8 * 1024;

/// Appends `bytes` with control characters escaped, so a request cannot
/// forge log lines.
fn push_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        if b < 0x20 || b == 0x7f {
            let _ = write!(out, "\\x{b:02x}");
        } else {
            out.push(b);
        }
    }
}

/// Appends `bytes` as a JSON string (with the quotes): `"` `\` and control
/// characters escaped, invalid UTF-8 replaced by U+FFFD.
pub fn push_json_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    for ch in String::from_utf8_lossy(bytes).chars() {
        match ch {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let mut tmp = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// `strftime(fmt)` of `secs` in local time.
fn strftime_local(secs: u64, fmt: &std::ffi::CStr) -> Vec<u8> {
    let t = secs as libc::time_t;
    // SAFETY: tm is plain data filled by localtime_r; strftime writes at most
    // buf.len() bytes and returns how many.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        let mut buf = [0u8; 256];
        let len = libc::strftime(buf.as_mut_ptr().cast(), buf.len(), fmt.as_ptr(), &tm);
        buf[..len.min(buf.len())].to_vec()
    }
}

/// (address space, rss) in bytes, from /proc/self/statm.
fn memory_usage() -> (u64, u64) {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let mut fields = statm
        .split_whitespace()
        .map(|f| f.parse::<u64>().unwrap_or(0));
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    let vsz = fields.next().unwrap_or(0) * page;
    let rss = fields.next().unwrap_or(0) * page;
    (vsz, rss)
}

/// `[pid: P|app: 0|req: n/total] ADDR () {N vars in B bytes} [DATE] METHOD URI
/// => generated X bytes in T msecs (PROTO STATUS) H headers in Y bytes (1 switches on core C)`
fn uwsgi_line(b: &mut Vec<u8>, l: &RequestLine<'_>, micros: bool, memory_report: bool) {
    let mut num = itoa::Buffer::new();
    if memory_report {
        let (vsz, rss) = memory_usage();
        let _ = write!(
            b,
            "{{address space usage: {vsz} bytes/{}MB}} {{rss usage: {rss} bytes/{}MB}} ",
            vsz / (1024 * 1024),
            rss / (1024 * 1024)
        );
    }
    b.extend_from_slice(b"[pid: ");
    b.extend_from_slice(num.format(l.pid).as_bytes());
    b.extend_from_slice(b"|app: 0|req: ");
    b.extend_from_slice(num.format(l.requests).as_bytes());
    b.push(b'/');
    b.extend_from_slice(num.format(l.total).as_bytes());
    b.extend_from_slice(b"] ");
    b.extend_from_slice(l.remote_addr.as_bytes());
    b.extend_from_slice(b" () {");
    b.extend_from_slice(num.format(l.vars).as_bytes());
    b.extend_from_slice(b" vars in ");
    b.extend_from_slice(num.format(l.vars_bytes).as_bytes());
    b.extend_from_slice(b" bytes} [");
    b.extend_from_slice(l.ctime);
    b.extend_from_slice(b"] ");
    push_escaped(b, l.method);
    b.push(b' ');
    push_escaped(b, l.uri);
    b.extend_from_slice(b" => generated ");
    b.extend_from_slice(num.format(l.body_bytes).as_bytes());
    b.extend_from_slice(b" bytes in ");
    if micros {
        b.extend_from_slice(num.format(l.micros).as_bytes());
        b.extend_from_slice(b" micros (");
    } else {
        b.extend_from_slice(num.format(l.micros / 1000).as_bytes());
        b.extend_from_slice(b" msecs (");
    }
    b.extend_from_slice(l.protocol);
    b.push(b' ');
    b.extend_from_slice(num.format(l.status).as_bytes());
    b.extend_from_slice(b") ");
    b.extend_from_slice(num.format(l.headers).as_bytes());
    b.extend_from_slice(b" headers in ");
    b.extend_from_slice(num.format(l.headers_bytes).as_bytes());
    b.extend_from_slice(b" bytes (1 switches on core ");
    b.extend_from_slice(num.format(l.core).as_bytes());
    b.extend_from_slice(b")\n");
}

/// The value of header `name` in an encoded response head.
fn response_header<'h>(head: &'h [u8], name: &[u8]) -> Option<&'h [u8]> {
    if !head.starts_with(b"HTTP/") {
        return None;
    }
    let end = head
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(head.len());
    head[..end].split(|&b| b == b'\n').skip(1).find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        line[..colon]
            .eq_ignore_ascii_case(name)
            .then(|| line[colon + 1..].trim_ascii())
    })
}

impl Default for AccessLog {
    fn default() -> Self {
        AccessLog::new()
    }
}

impl AccessLog {
    pub fn new() -> AccessLog {
        AccessLog::with(std::sync::Arc::new(LogSettings {
            all: true,
            ..LogSettings::default()
        }))
    }

    pub fn with(settings: std::sync::Arc<LogSettings>) -> AccessLog {
        AccessLog {
            buf: Vec::with_capacity(LOG_FLUSH_AT * 2),
            settings,
            stamp_second: u64::MAX,
            date_prefix: Vec::new(),
            clf_time: Vec::new(),
        }
    }

    fn refresh_stamps(&mut self) {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if secs == self.stamp_second {
            return;
        }
        self.stamp_second = secs;
        if let Some(fmt) = &self.settings.date {
            self.date_prefix = strftime_local(secs, fmt);
            self.date_prefix.extend_from_slice(b" - ");
        }
        if matches!(
            self.settings.format,
            LineFormat::Atoms(_) | LineFormat::Json
        ) {
            self.clf_time = strftime_local(secs, c"[%d/%b/%Y:%H:%M:%S %z]");
        }
    }

    /// Logs one request, if the settings want it.
    pub fn request(&mut self, l: RequestLine<'_>) {
        if !self.settings.wants(l.status, l.micros, l.via_sendfile) {
            return;
        }
        if self.settings.is_plain() {
            uwsgi_line(&mut self.buf, &l, false, false);
        } else {
            self.request_slow(&l);
        }
        if self.buf.len() >= LOG_FLUSH_AT {
            self.flush();
        }
    }

    /// Any line but the plain default one.
    fn request_slow(&mut self, l: &RequestLine<'_>) {
        let settings = self.settings.clone();
        self.refresh_stamps();
        if !matches!(settings.format, LineFormat::Json) {
            // A JSON line has its own "time" and must stay one JSON value.
            self.buf.extend_from_slice(&self.date_prefix);
        }
        match &settings.format {
            LineFormat::Uwsgi => {
                uwsgi_line(&mut self.buf, l, settings.micros, settings.memory_report)
            }
            LineFormat::Atoms(parts) => self.atoms_line(l, parts),
            LineFormat::Json => self.json_line(l),
        }
    }

    fn atoms_line(&mut self, l: &RequestLine<'_>, parts: &[Part]) {
        let (path, query) = match l.uri.iter().position(|&c| c == b'?') {
            Some(q) => (&l.uri[..q], &l.uri[q + 1..]),
            None => (l.uri, &b""[..]),
        };
        let b = &mut self.buf;
        let mut num = itoa::Buffer::new();
        let or_dash = |b: &mut Vec<u8>, v: Option<&[u8]>| match v {
            Some(v) if !v.is_empty() => push_escaped(b, v),
            _ => b.push(b'-'),
        };
        for part in parts {
            match part {
                Part::Text(t) => b.extend_from_slice(t),
                Part::RequestHeader(name) => or_dash(b, l.header.get(name)),
                Part::ResponseHeader(name) => or_dash(b, response_header(l.response_head, name)),
                Part::Atom(a) => match *a {
                    b'h' => b.extend_from_slice(l.remote_addr.as_bytes()),
                    b't' => b.extend_from_slice(&self.clf_time),
                    b'r' => {
                        push_escaped(b, l.method);
                        b.push(b' ');
                        push_escaped(b, l.uri);
                        b.push(b' ');
                        b.extend_from_slice(l.protocol);
                    }
                    b's' => b.extend_from_slice(num.format(l.status).as_bytes()),
                    b'b' | b'B' => b.extend_from_slice(num.format(l.body_bytes).as_bytes()),
                    b'f' => or_dash(b, l.header.get(b"referer")),
                    b'a' => or_dash(b, l.header.get(b"user-agent")),
                    b'D' => b.extend_from_slice(num.format(l.micros).as_bytes()),
                    b'M' => b.extend_from_slice(num.format(l.micros / 1000).as_bytes()),
                    b'T' => b.extend_from_slice(num.format(l.micros / 1_000_000).as_bytes()),
                    b'L' => {
                        let _ = write!(b, "{}.{:06}", l.micros / 1_000_000, l.micros % 1_000_000);
                    }
                    b'm' => push_escaped(b, l.method),
                    b'U' => push_escaped(b, path),
                    b'q' => push_escaped(b, query),
                    b'H' => b.extend_from_slice(l.protocol),
                    ATOM_URI => push_escaped(b, l.uri),
                    ATOM_PID => b.extend_from_slice(num.format(l.pid).as_bytes()),
                    ATOM_SIZE => b.extend_from_slice(
                        num.format(l.body_bytes + l.headers_bytes as u64).as_bytes(),
                    ),
                    ATOM_HSIZE => b.extend_from_slice(num.format(l.headers_bytes).as_bytes()),
                    ATOM_LTIME => b.extend_from_slice(
                        self.clf_time
                            .trim_ascii()
                            .strip_prefix(b"[")
                            .and_then(|t| t.strip_suffix(b"]"))
                            .unwrap_or(&self.clf_time),
                    ),
                    ATOM_CORE => b.extend_from_slice(num.format(l.core).as_bytes()),
                    ATOM_VARS => b.extend_from_slice(num.format(l.vars).as_bytes()),
                    ATOM_HEADERS => b.extend_from_slice(num.format(l.headers).as_bytes()),
                    ATOM_CTIME => b.extend_from_slice(l.ctime),
                    ATOM_EPOCH => b.extend_from_slice(num.format(self.stamp_second).as_bytes()),
                    b'p' => {
                        b.push(b'<');
                        b.extend_from_slice(num.format(l.pid).as_bytes());
                        b.push(b'>');
                    }
                    // l (identd), u (user) and anything unknown.
                    _ => b.push(b'-'),
                },
            }
        }
        b.push(b'\n');
    }

    fn json_line(&mut self, l: &RequestLine<'_>) {
        let b = &mut self.buf;
        let mut num = itoa::Buffer::new();
        let key = |b: &mut Vec<u8>, k: &str, first: bool| {
            b.push(if first { b'{' } else { b',' });
            b.push(b'"');
            b.extend_from_slice(k.as_bytes());
            b.extend_from_slice(b"\":");
        };
        key(b, "time", true);
        push_json_string(
            b,
            self.clf_time
                .trim_ascii_start()
                .strip_prefix(b"[")
                .unwrap_or(&[])
                .strip_suffix(b"]")
                .unwrap_or(&[]),
        );
        key(b, "remote_addr", false);
        push_json_string(b, l.remote_addr.as_bytes());
        key(b, "method", false);
        push_json_string(b, l.method);
        key(b, "uri", false);
        push_json_string(b, l.uri);
        key(b, "protocol", false);
        push_json_string(b, l.protocol);
        key(b, "status", false);
        b.extend_from_slice(num.format(l.status).as_bytes());
        key(b, "bytes", false);
        b.extend_from_slice(num.format(l.body_bytes).as_bytes());
        key(b, "micros", false);
        b.extend_from_slice(num.format(l.micros).as_bytes());
        for (k, h) in [("referer", &b"referer"[..]), ("user_agent", b"user-agent")] {
            key(b, k, false);
            match l.header.get(h) {
                Some(v) => push_json_string(b, v),
                None => b.extend_from_slice(b"null"),
            }
        }
        key(b, "pid", false);
        b.extend_from_slice(num.format(l.pid).as_bytes());
        key(b, "core", false);
        b.extend_from_slice(num.format(l.core).as_bytes());
        key(b, "worker_requests", false);
        b.extend_from_slice(num.format(l.requests).as_bytes());
        b.extend_from_slice(b"}\n");
    }

    /// Writes buffered lines with one syscall (straight to the log
    /// destination, never through the master's output pipe).
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let _ = write_log_lines(&self.buf);
        self.buf.clear();
    }
}

/// Opens `path` for appending (created 0644 if missing) and puts it on the
/// log destination: fds 1 and 2 when that is fd 2 (the master, or a worker
/// without captured output, whose print() and tracebacks then go there
/// directly), else on the worker's own log fd (its fds 1 and 2 are the pipe
/// to the master and stay so). Every access-log flush is whole lines in one
/// write(2) to an O_APPEND file, so they never interleave with other
/// processes' lines.
pub fn open_logto(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(path)?;
    let fd = log_fd();
    let targets: &[RawFd] = if fd == 2 { &[1, 2] } else { &[fd] };
    for &target in targets {
        // SAFETY: dup2 onto the standard descriptors or our log fd, which
        // we own.
        if unsafe { libc::dup2(file.as_raw_fd(), target) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    refresh_destination();
    Ok(())
}

/// In a worker with `logto`: reopen the file on SIGUSR1 (sent by the master
/// after rotating, or forwarded from logrotate's `kill -USR1`).
pub fn reopen_on_usr1(path: std::path::PathBuf) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGUSR1])?;
    std::thread::Builder::new()
        .name("capataz-logto".into())
        .spawn(move || {
            for _ in signals.forever() {
                if let Err(e) = open_logto(&path) {
                    tracing::error!("logto {}: {e}", path.display());
                }
            }
        })?;
    Ok(())
}

/// `path` → `path.1`, `path.1` → `path.2` ... up to `path.backups` (the
/// oldest is overwritten); with no backups, `path` is removed.
fn shift_backups(path: &std::path::Path, backups: u64) {
    let numbered = |n: u64| {
        let mut p = path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        std::path::PathBuf::from(p)
    };
    if backups == 0 {
        let _ = std::fs::remove_file(path);
        return;
    }
    for n in (1..backups).rev() {
        let _ = std::fs::rename(numbered(n), numbered(n + 1));
    }
    let _ = std::fs::rename(path, numbered(1));
}

/// `log-maxsize` rotation, by the master: when the file on fd 2 has reached
/// `max` bytes, renames `path` to `path.1` (shifting older ones up to
/// `path.N`, dropping the oldest), reopens it and returns true (the caller
/// then tells the workers to reopen).
pub fn rotate_if_needed(path: &std::path::Path, max: u64, backups: u64) -> bool {
    // SAFETY: fstat on fd 2 into a zeroed stat.
    let size = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(2, &mut st) != 0 {
            return false;
        }
        st.st_size as u64
    };
    if max == 0 || size < max {
        return false;
    }
    shift_backups(path, backups);
    if let Err(e) = open_logto(path) {
        tracing::error!("logto {}: {e}", path.display());
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_line_has_uwsgi_shape_and_escapes_controls() {
        let mut log = AccessLog::new();
        log.request(RequestLine {
            pid: 42,
            requests: 7,
            total: 9,
            remote_addr: "127.0.0.1",
            vars: 30,
            vars_bytes: 400,
            ctime: b"Wed Nov 25 17:52:18 2026",
            method: b"GET",
            uri: b"/a?b=\n1",
            body_bytes: 13,
            micros: 999,
            protocol: b"HTTP/1.1",
            status: 200,
            headers: 2,
            headers_bytes: 79,
            core: 0,
            via_sendfile: false,
            header: &NoHeaders,
            response_head: b"",
        });
        let line = String::from_utf8(log.buf.clone()).unwrap();
        assert_eq!(
            line,
            "[pid: 42|app: 0|req: 7/9] 127.0.0.1 () {30 vars in 400 bytes} [Wed Nov 25 17:52:18 2026] \
             GET /a?b=\\x0a1 => generated 13 bytes in 0 msecs (HTTP/1.1 200) 2 headers in 79 bytes \
             (1 switches on core 0)\n"
        );
    }

    struct NoHeaders;
    impl HeaderLookup for NoHeaders {
        fn get(&self, _: &[u8]) -> Option<&[u8]> {
            None
        }
    }

    struct Headers(&'static [(&'static [u8], &'static [u8])]);
    impl HeaderLookup for Headers {
        fn get(&self, name: &[u8]) -> Option<&[u8]> {
            self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
        }
    }

    fn line<'a>(header: &'a dyn HeaderLookup, status: u16, micros: u64) -> RequestLine<'a> {
        RequestLine {
            pid: 42,
            requests: 7,
            total: 9,
            remote_addr: "10.0.0.1",
            vars: 30,
            vars_bytes: 400,
            ctime: b"Wed Nov 25 17:52:18 2026",
            method: b"POST",
            uri: b"/p/a?x=1&y",
            body_bytes: 1234,
            micros,
            protocol: b"HTTP/1.0",
            status,
            headers: 2,
            headers_bytes: 79,
            core: 3,
            via_sendfile: false,
            header,
            response_head:
                b"HTTP/1.0 201 Created\r\nContent-Type: text/html\r\nLocation: /x\r\n\r\nbody",
        }
    }

    fn logged(settings: LogSettings, l: RequestLine<'_>) -> String {
        let mut log = AccessLog::with(std::sync::Arc::new(settings));
        log.request(l);
        String::from_utf8(log.buf.clone()).unwrap()
    }

    #[test]
    fn compiles_gunicorn_format_once() {
        assert_eq!(
            compile_format("%(h)s \"%(r)s\" %({X-Req}i)s %({location}o)s %(zz)s 100%% %(s"),
            vec![
                Part::Atom(b'h'),
                Part::Text(b" \"".to_vec()),
                Part::Atom(b'r'),
                Part::Text(b"\" ".to_vec()),
                Part::RequestHeader(b"x-req".to_vec()),
                Part::Text(b" ".to_vec()),
                Part::ResponseHeader(b"location".to_vec()),
                Part::Text(b" ".to_vec()),
                Part::Text(b"-".to_vec()),
                Part::Text(b" 100% %(s".to_vec()),
            ]
        );
    }

    #[test]
    fn gunicorn_atoms_render() {
        let settings = LogSettings {
            all: true,
            format: LineFormat::Atoms(compile_format(
                "%(h)s %(l)s %(u)s \"%(r)s\" %(s)s %(b)s \"%(f)s\" \"%(a)s\" %(D)s %(T)s %(L)s %(M)s %(m)s %(U)s %(q)s %(H)s %(p)s %({x-a}i)s %({Content-Type}o)s %({location}o)s %({nope}o)s",
            )),
            ..LogSettings::default()
        };
        let h = Headers(&[
            (b"referer", b"http://r/"),
            (b"user-agent", b"ua"),
            (b"x-a", b"v\n"),
        ]);
        assert_eq!(
            logged(settings, line(&h, 201, 2_500_123)),
            "10.0.0.1 - - \"POST /p/a?x=1&y HTTP/1.0\" 201 1234 \"http://r/\" \"ua\" 2500123 2 2.500123 2500 \
             POST /p/a x=1&y HTTP/1.0 <42> v\\x0a text/html /x -\n"
        );
    }

    #[test]
    fn uwsgi_log_variables_render() {
        let settings = LogSettings {
            all: true,
            format: LineFormat::Atoms(compile_format(
                "%(addr) [%(pid)] %(method) %(uri) %(proto) %(status) %(rsize) %(msecs)ms %(micros) \
                 \"%(uagent)\" %(referer) %(host) %(nope) %(status)s %(size) %(hsize) %(user) %(core) \
                 %(headers)",
            )),
            ..LogSettings::default()
        };
        let h = Headers(&[
            (b"referer", b"http://r/"),
            (b"user-agent", b"ua"),
            (b"host", b"example.org"),
        ]);
        assert_eq!(
            logged(settings, line(&h, 201, 2_500_123)),
            "10.0.0.1 [42] POST /p/a?x=1&y HTTP/1.0 201 1234 2500ms 2500123 \"ua\" http://r/ \
             example.org %(nope) 201s 1313 79 - 3 2\n"
        );
    }

    #[test]
    fn json_line_is_valid_json_with_hard_bytes() {
        let settings = LogSettings {
            all: true,
            format: LineFormat::Json,
            ..LogSettings::default()
        };
        let h = Headers(&[(b"user-agent", b"q\"b\\s\x01\x1f\x7f\t\n\xff\xfe \xc3\xa9")]);
        let text = logged(settings, line(&h, 200, 5));
        assert!(text.ends_with("}\n") && text.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(
            v["user_agent"],
            "q\"b\\s\u{1}\u{1f}\u{7f}\t\n\u{fffd}\u{fffd} \u{e9}"
        );
        assert_eq!(v["referer"], serde_json::Value::Null);
        assert_eq!(v["uri"], "/p/a?x=1&y");
        assert_eq!(
            (v["status"].as_u64(), v["micros"].as_u64()),
            (Some(200), Some(5))
        );
        let mut out = Vec::new();
        push_json_string(&mut out, b"a\x00\x08\x0c\r");
        assert_eq!(out, b"\"a\\u0000\\u0008\\u000c\\r\"");
    }

    #[test]
    fn filters_when_disabled() {
        let only = |s: LogSettings, status, micros| {
            !logged(s, line(&NoHeaders, status, micros)).is_empty()
        };
        let off = || LogSettings::default();
        assert!(!off().any());
        assert!(!only(
            LogSettings {
                log_4xx: true,
                ..off()
            },
            500,
            0
        ));
        assert!(only(
            LogSettings {
                log_4xx: true,
                ..off()
            },
            404,
            0
        ));
        assert!(only(
            LogSettings {
                log_5xx: true,
                ..off()
            },
            502,
            0
        ));
        assert!(!only(
            LogSettings {
                log_5xx: true,
                ..off()
            },
            499,
            0
        ));
        assert!(!only(
            LogSettings {
                slow_ms: 10,
                ..off()
            },
            200,
            9_999
        ));
        assert!(only(
            LogSettings {
                slow_ms: 10,
                ..off()
            },
            200,
            10_000
        ));
        assert!(LogSettings {
            slow_ms: 10,
            ..off()
        }
        .any());
    }

    #[test]
    fn date_prefix_micros_and_memory_report() {
        let settings = LogSettings {
            all: true,
            date: Some(c"%Y".into()),
            micros: true,
            memory_report: true,
            ..LogSettings::default()
        };
        let text = logged(settings, line(&NoHeaders, 200, 1500));
        let year = &text[..4];
        assert!(year.bytes().all(|b| b.is_ascii_digit()), "{text}");
        assert!(text[4..].starts_with(" - {address space usage: "), "{text}");
        assert!(
            text.contains("MB} {rss usage: ") && text.contains("MB} [pid: 42|"),
            "{text}"
        );
        assert!(text.contains(" in 1500 micros (HTTP/1.0 200) "), "{text}");
    }

    #[test]
    fn response_header_reads_the_head_only() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  b \r\n\r\nX-B: body";
        assert_eq!(response_header(head, b"content-length"), Some(&b"5"[..]));
        assert_eq!(response_header(head, b"x-a"), Some(&b"b"[..]));
        assert_eq!(response_header(head, b"x-b"), None);
        assert_eq!(response_header(b"body", b"x-a"), None);
    }

    #[test]
    fn rotation_shifts_backups() {
        let dir = std::env::temp_dir().join(format!("capataz-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.log");
        // rotate_if_needed looks at this process's fd 2 (left alone here):
        // check its no-op paths, then the renaming.
        std::fs::write(&path, b"x").unwrap();
        assert!(!rotate_if_needed(&path, u64::MAX, 2));
        assert!(!rotate_if_needed(&path, 0, 2));
        let read = |n: &str| std::fs::read_to_string(dir.join(n)).ok();
        for round in ["1", "2", "3"] {
            std::fs::write(&path, round).unwrap();
            shift_backups(&path, 2);
        }
        assert_eq!(
            (read("a.log"), read("a.log.1"), read("a.log.2")),
            (None, Some("3".into()), Some("2".into()))
        );
        assert_eq!(read("a.log.3"), None);
        std::fs::write(&path, b"x").unwrap();
        shift_backups(&path, 0);
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn pipe_pieces_are_whole_lines_of_at_most_pipe_buf() {
        let mut buf = Vec::new();
        for i in 0..200 {
            buf.extend_from_slice(format!("line {i} {}\n", "z".repeat(i * 7 % 300)).as_bytes());
        }
        let long = format!("{}\n", "L".repeat(libc::PIPE_BUF * 2));
        buf.extend_from_slice(long.as_bytes());
        buf.extend_from_slice(b"tail\n");
        let pieces: Vec<&[u8]> = pipe_sized_pieces(&buf).collect();
        assert_eq!(pieces.concat(), buf);
        for p in &pieces {
            assert!(p.ends_with(b"\n"));
            assert!(
                p.len() <= libc::PIPE_BUF || p == &long.as_bytes(),
                "{}",
                p.len()
            );
        }
        assert!(pieces.len() > 3);
        // An unterminated rest still comes out.
        let odd = [&b"a\n"[..], &[b'b'; libc::PIPE_BUF + 1][..]].concat();
        assert_eq!(pipe_sized_pieces(&odd).collect::<Vec<_>>().concat(), odd);
    }

    #[test]
    fn clock_formats_both_dates() {
        let mut c = Clock::default();
        let http = c.http_date();
        assert!(http.ends_with(b" GMT"));
        assert_eq!(c.ctime().len(), 24);
    }
}
