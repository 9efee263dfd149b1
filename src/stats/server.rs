//! The stats and metrics listeners: one blocking accept thread each, on the
//! master. Requests are tiny and answered inline; a slow client is cut off by
//! a 2 s socket timeout, so it cannot pin a thread for long.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::time::Duration;

use super::{dashboard, json, prometheus, StatsSource};

const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// How a listener answers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// uWSGI's raw stats socket: the JSON document, then close.
    RawJson,
    /// HTTP (`stats-http`): the dashboard and its endpoints, JSON,
    /// /metrics and the health endpoints.
    Http,
    /// HTTP (`metrics`): JSON, /metrics and the health endpoints; no
    /// dashboard and no actions.
    Metrics,
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

/// One parsed HTTP request: what the endpoints need of it.
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The `Authorization` header's value, if any.
    pub authorization: Option<String>,
    pub body: Vec<u8>,
}

/// Largest request body accepted (the dashboard's forms are tiny).
const MAX_BODY: usize = 4096;

/// Reads one request head (and a small body), if it arrives in time.
fn read_request(stream: &mut dyn Stream) -> Option<HttpRequest> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 || buf.len() > 8192 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut authorization = None;
    let mut length = 0usize;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("authorization") {
            authorization = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().ok()?;
        }
    }
    if length > MAX_BODY {
        return None;
    }
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Some(HttpRequest {
        method,
        path: path.to_string(),
        query: query.to_string(),
        authorization,
        body,
    })
}

fn serve_one<S: Stream + Send + 'static>(mut stream: S, mode: Mode, src: &StatsSource) {
    stream.set_timeouts();
    if mode == Mode::RawJson {
        let _ = stream.write_all(json::document(src).to_string().as_bytes());
        return;
    }
    let Some(req) = read_request(&mut stream) else {
        return;
    };
    let dashboard_path =
        req.path == "/" || req.path == "/dashboard" || req.path.starts_with("/api/");
    if mode == Mode::Metrics && (dashboard_path || req.method != "GET") {
        http_reply(&mut stream, "404 Not Found", "text/plain", b"not found\n");
        return;
    }
    if req.method == "POST" {
        if let Err((status, body)) = dashboard::authorize(&req, src) {
            http_reply(&mut stream, status, "application/json", body.as_bytes());
            return;
        }
        // Actions wait for the master loop (a program restart can take
        // seconds): answer them on their own thread so polling goes on.
        let src = src.clone();
        let spawned = std::thread::Builder::new()
            .name("capataz-stats-action".into())
            .spawn(move || {
                let (status, body) = dashboard::action(&req, &src);
                http_reply(&mut stream, status, "application/json", body.as_bytes());
            });
        if spawned.is_err() {
            tracing::warn!("stats: cannot start an action thread");
        }
        return;
    }
    let stream: &mut dyn Stream = &mut stream;
    match req.path.as_str() {
        "/" | "/dashboard" => http_reply(
            stream,
            "200 OK",
            "text/html; charset=utf-8",
            dashboard::page(src).as_bytes(),
        ),
        "/stats" | "/stats.json" => http_reply(
            stream,
            "200 OK",
            "application/json",
            json::document(src).to_string().as_bytes(),
        ),
        "/api/log" => http_reply(
            stream,
            "200 OK",
            "application/json",
            dashboard::log_tail(&req, src).to_string().as_bytes(),
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
                        Ok(s) => serve_one(s, mode, &src),
                        Err(e) => tracing::debug!("stats accept: {e}"),
                    }
                }
            } else {
                let listener = std::net::TcpListener::from(fd);
                for conn in listener.incoming() {
                    match conn {
                        Ok(s) => serve_one(s, mode, &src),
                        Err(e) => tracing::debug!("stats accept: {e}"),
                    }
                }
            }
        })?;
    Ok(())
}
