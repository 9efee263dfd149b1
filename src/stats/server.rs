//! The stats and metrics listeners: one blocking accept thread each, on the
//! master. Requests are tiny and answered inline; a slow client is cut off by
//! a 2 s socket timeout, so it cannot pin a thread for long.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::time::Duration;

use super::{json, prometheus, StatsSource};

const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// How a listener answers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// uWSGI's raw stats socket: the JSON document, then close.
    RawJson,
    /// HTTP: JSON, /metrics and the health endpoints.
    Http,
}

/// A connected client, whatever the socket family.
trait Stream: Read + Write {
    fn set_timeouts(&self);
}

impl Stream for std::net::TcpStream {
    fn set_timeouts(&self) {
        let _ = self.set_read_timeout(Some(IO_TIMEOUT));
        let _ = self.set_write_timeout(Some(IO_TIMEOUT));
    }
}

impl Stream for std::os::unix::net::UnixStream {
    fn set_timeouts(&self) {
        let _ = self.set_read_timeout(Some(IO_TIMEOUT));
        let _ = self.set_write_timeout(Some(IO_TIMEOUT));
    }
}

fn http_reply(stream: &mut dyn Stream, status: &str, content_type: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

/// The request path of an HTTP request head, if one arrives in time.
fn read_path(stream: &mut dyn Stream) -> Option<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 || buf.len() > 8192 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = buf.split(|&b| b == b'\n').next()?;
    let target = line.split(|&b| b == b' ').nth(1)?;
    let path = target.split(|&b| b == b'?').next()?;
    Some(String::from_utf8_lossy(path).into_owned())
}

fn serve_one(stream: &mut dyn Stream, mode: Mode, src: &StatsSource) {
    stream.set_timeouts();
    if mode == Mode::RawJson {
        let _ = stream.write_all(json::document(src).to_string().as_bytes());
        return;
    }
    let Some(path) = read_path(stream) else {
        return;
    };
    match path.as_str() {
        "/" | "/stats" | "/stats.json" => http_reply(
            stream,
            "200 OK",
            "application/json",
            json::document(src).to_string().as_bytes(),
        ),
        "/metrics" => http_reply(
            stream,
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            prometheus::render(src).as_bytes(),
        ),
        "/health/live" => http_reply(stream, "200 OK", "text/plain", b"live\n"),
        "/health/ready" => {
            if src.snapshot().ready {
                http_reply(stream, "200 OK", "text/plain", b"ready\n")
            } else {
                http_reply(
                    stream,
                    "503 Service Unavailable",
                    "text/plain",
                    b"not ready\n",
                )
            }
        }
        _ => http_reply(stream, "404 Not Found", "text/plain", b"not found\n"),
    }
}

/// Serves `fd` (a bound, listening socket) on a new thread.
pub fn spawn(fd: OwnedFd, unix: bool, mode: Mode, src: StatsSource) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("capataz-stats".into())
        .spawn(move || {
            if unix {
                let listener = UnixListener::from(fd);
                for conn in listener.incoming() {
                    match conn {
                        Ok(mut s) => serve_one(&mut s, mode, &src),
                        Err(e) => tracing::debug!("stats accept: {e}"),
                    }
                }
            } else {
                let listener = std::net::TcpListener::from(fd);
                for conn in listener.incoming() {
                    match conn {
                        Ok(mut s) => serve_one(&mut s, mode, &src),
                        Err(e) => tracing::debug!("stats accept: {e}"),
                    }
                }
            }
        })?;
    Ok(())
}
