//! The live dashboard at `/` of the HTTP stats listener: one static page
//! (`dashboard.html`, compiled in; no CDN, works offline) that polls
//! `/stats` every second and `/api/log` every few seconds, and draws its
//! charts itself from the request counters.
//!
//! Endpoints behind it:
//! - `GET /api/log?n=N`: the last N lines of the master's own server log
//!   (see [`crate::logging::recent`]); `?program=NAME` instead returns the
//!   tail of a side program's output through `ctl tail`'s request.
//! - `POST /api/reload`, `POST /api/scale` (`change=+1|-1|=N`),
//!   `POST /api/restart` (`name=PROGRAM`): the same control requests
//!   `capataz ctl reload|scale web|restart` sends, handed to the master loop
//!   through [`crate::control::server::ControlHandle`]. They answer 403
//!   unless `stats-token` is set and the request carries it, as
//!   `Authorization: Bearer TOKEN` or a `token` form field.

use std::time::Duration;

use serde_json::{json, Value};

use super::server::HttpRequest;
use super::StatsSource;
use crate::control::{Request, Response};

const PAGE: &str = include_str!("dashboard.html");

/// How long an action waits for the master loop's answer.
const ACTION_WAIT: Duration = Duration::from_secs(15);

/// The page, told whether its buttons work.
pub fn page(src: &StatsSource) -> String {
    PAGE.replace(
        "\"__CAPATAZ_ACTIONS__\"",
        if src.token.is_some() { "true" } else { "false" },
    )
}

/// Decodes an `application/x-www-form-urlencoded` string (or a query).
fn form(data: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = |b: u8| (b as char).to_digit(16);
                    match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                        (Some(h), Some(l)) => {
                            out.push((h * 16 + l) as u8);
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    data.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Compares without an early exit, so timing does not tell the token.
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn answer(status: &'static str, response: &Response) -> (&'static str, String) {
    (
        status,
        serde_json::to_string(response).unwrap_or_else(|_| "{}".into()),
    )
}

/// Whether a POST may act: the 403 answer when not. Cheap, so the server
/// checks it before giving the action a thread.
pub fn authorize(req: &HttpRequest, src: &StatsSource) -> Result<(), (&'static str, String)> {
    let fields = form(&String::from_utf8_lossy(&req.body));
    let Some(token) = src.token.as_deref() else {
        return Err(answer(
            "403 Forbidden",
            &Response::error(1, "dashboard actions are disabled (set stats-token)"),
        ));
    };
    let given = req
        .authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim)
        .or_else(|| field(&fields, "token"));
    if !given.is_some_and(|g| same(g, token)) {
        return Err(answer(
            "403 Forbidden",
            &Response::error(1, "bad or missing token"),
        ));
    }
    Ok(())
}

/// Handles an authorized POST to an action endpoint: (HTTP status, JSON
/// body). Blocks until the master loop answers (at most [`ACTION_WAIT`]).
pub fn action(req: &HttpRequest, src: &StatsSource) -> (&'static str, String) {
    if let Err(denied) = authorize(req, src) {
        return denied;
    }
    let fields = form(&String::from_utf8_lossy(&req.body));
    let request = match req.path.as_str() {
        "/api/reload" => Request::Reload,
        "/api/scale" => Request::Scale {
            name: "web".into(),
            change: field(&fields, "change").unwrap_or("").to_string(),
        },
        "/api/restart" => match field(&fields, "name") {
            Some(name) if !name.is_empty() => Request::Restart { name: name.into() },
            _ => {
                return answer(
                    "400 Bad Request",
                    &Response::error(2, "restart needs a program name"),
                )
            }
        },
        _ => return answer("404 Not Found", &Response::error(2, "no such action")),
    };
    let Some(control) = &src.control else {
        return answer(
            "503 Service Unavailable",
            &Response::error(1, "this master has no control socket"),
        );
    };
    let response = control.call(request, ACTION_WAIT);
    let status = match response.code {
        0 | 3 => "200 OK",
        2 => "400 Bad Request",
        _ => "500 Internal Server Error",
    };
    answer(status, &response)
}

/// `GET /api/log`: the master's recent log lines, or a program's tail.
pub fn log_tail(req: &HttpRequest, src: &StatsSource) -> Value {
    let fields = form(&req.query);
    let n = field(&fields, "n")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(100)
        .min(500);
    match field(&fields, "program") {
        Some(name) if !name.is_empty() => {
            let Some(control) = &src.control else {
                return json!({"source": name, "error": "no control socket", "lines": []});
            };
            match control.tail(name, 16 * 1024, Duration::from_secs(2)) {
                Ok(data) => {
                    let text = String::from_utf8_lossy(&data);
                    let lines: Vec<&str> = text.lines().collect();
                    let from = lines.len().saturating_sub(n);
                    json!({"source": name, "lines": &lines[from..]})
                }
                Err(r) => json!({"source": name, "error": r.message, "lines": []}),
            }
        }
        _ => json!({"source": "master", "lines": crate::logging::recent(n)}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        let f = form("change=%2B1&name=a+b&token=x%3Dy&bad=%zz&t=%4");
        assert_eq!(field(&f, "change"), Some("+1"));
        assert_eq!(field(&f, "name"), Some("a b"));
        assert_eq!(field(&f, "token"), Some("x=y"));
        assert_eq!(field(&f, "bad"), Some("%zz"));
        assert_eq!(field(&f, "t"), Some("%4"));
        assert_eq!(field(&f, "nope"), None);
    }

    #[test]
    fn token_comparison() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }

    #[test]
    fn page_is_self_contained() {
        assert!(PAGE.contains("\"__CAPATAZ_ACTIONS__\""));
        assert!(!PAGE.contains("http://") && !PAGE.contains("https://"));
    }
}
