//! The server's own log (`tracing`, to stderr) and the access log.
//!
//! The access log is a separate, fast writer: each app thread formats lines
//! into its own buffer and writes whole lines with one `write(2)` when the
//! buffer fills or the thread goes idle, so lines from threads and processes
//! never interleave mid-line and a busy server does not pay a syscall per
//! request. The line is uWSGI's default shape.

use std::collections::VecDeque;
use std::io::Write;
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

/// stderr, and (in the master) a copy of each line into [`RECENT`].
struct Tee {
    keep: bool,
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().write_all(buf)?;
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
        std::io::stderr().flush()
    }
}

/// Sets up `tracing` for the master or a worker.
pub fn init(role: &str) {
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
    pub msecs: u64,
    pub protocol: &'a [u8],
    pub status: u16,
    pub headers: usize,
    pub headers_bytes: usize,
    pub core: usize,
}

/// Buffered access log of one thread; written to stderr.
pub struct AccessLog {
    buf: Vec<u8>,
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

impl AccessLog {
    pub fn new() -> AccessLog {
        AccessLog {
            buf: Vec::with_capacity(LOG_FLUSH_AT * 2),
        }
    }

    /// `[pid: P|app: 0|req: n/total] ADDR () {N vars in B bytes} [DATE] METHOD URI
    /// => generated X bytes in T msecs (PROTO STATUS) H headers in Y bytes (1 switches on core C)`
    pub fn request(&mut self, l: RequestLine<'_>) {
        let b = &mut self.buf;
        let mut num = itoa::Buffer::new();
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
        b.extend_from_slice(num.format(l.msecs).as_bytes());
        b.extend_from_slice(b" msecs (");
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
        if self.buf.len() >= LOG_FLUSH_AT {
            self.flush();
        }
    }

    /// Writes buffered lines with one syscall.
    pub fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let _ = std::io::stderr().lock().write_all(&self.buf);
        self.buf.clear();
    }
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
            msecs: 0,
            protocol: b"HTTP/1.1",
            status: 200,
            headers: 2,
            headers_bytes: 79,
            core: 0,
        });
        let line = String::from_utf8(log.buf.clone()).unwrap();
        assert_eq!(
            line,
            "[pid: 42|app: 0|req: 7/9] 127.0.0.1 () {30 vars in 400 bytes} [Wed Nov 25 17:52:18 2026] \
             GET /a?b=\\x0a1 => generated 13 bytes in 0 msecs (HTTP/1.1 200) 2 headers in 79 bytes \
             (1 switches on core 0)\n"
        );
    }

    #[test]
    fn clock_formats_both_dates() {
        let mut c = Clock::default();
        let http = c.http_date();
        assert!(http.ends_with(b" GMT"));
        assert_eq!(c.ctime().len(), 24);
    }
}
