//! The control socket and `capataz ctl`.
//!
//! - [`server`]: the master side: a unix socket (mode 0600) served by a
//!   master thread that checks each peer's SO_PEERCRED uid and hands every
//!   request to the master loop over a channel, waking it; the loop stays
//!   the only owner of worker and program state.
//! - [`client`]: `capataz ctl [--control-socket PATH | --ini FILE] CMD`.
//!
//! # Where the socket is
//!
//! The `control-socket` option; by default `$XDG_RUNTIME_DIR/capataz.ctl`
//! when XDG_RUNTIME_DIR is set, else `/tmp/capataz-<euid>.ctl`. When the
//! default path is already served by a live capataz, a second master runs
//! without a control socket (and warns); an explicit path in use is an error.
//!
//! # Protocol
//!
//! One connection carries one request. The client sends one line of JSON,
//! an object whose `cmd` names the command:
//!
//! ```text
//! {"cmd":"status"}                         {"cmd":"status","name":"celery"}
//! {"cmd":"start","name":"celery"}          (also stop, restart; name "all")
//! {"cmd":"signal","name":"celery","signal":"HUP"}
//! {"cmd":"scale","name":"web","change":"+1"}   ("+N", "-N" or "=N")
//! {"cmd":"reload"}  {"cmd":"reread"}  {"cmd":"update"}  {"cmd":"shutdown"}
//! {"cmd":"tail","name":"celery","bytes":1600,"follow":false}
//! ```
//!
//! The server answers with one line of JSON, a [`Response`]:
//! `{"ok":true,"code":0,"message":"...","processes":[...],"changes":{...}}`.
//! `capataz ctl --ini FILE` adds `"ini":"FILE"` to the request (a [`Call`]);
//! a master started from other files refuses it (code 1) and says whose
//! socket this is.
//! `code` is the exit status `capataz ctl` uses: 0 ok, 1 failure, 2 usage
//! error (bad request, unknown process name), 3 a named process is not
//! running. `processes` (for `status`) lists [`ProcessStatus`] rows: the
//! web workers (`web:N`: the state of the id's supervision machine,
//! STARTING, RUNNING, BACKOFF (no pid; the description says when it
//! retries) or FATAL, STOPPING for a draining old generation; counters from
//! the scoreboard), then the programs.
//!
//! For `tail`, the response line is followed by the raw output bytes; with
//! `follow` the server keeps sending new output until the client hangs up.
//!
//! `start` answers once the processes are RUNNING (or failed: code 1),
//! `stop` once they are down, `restart` after both.
//!
//! The master binds the socket before it drops to `uid`/`gid` (so it can
//! live in a root-owned directory such as `/run/capataz/`) and gives it to
//! that user and group. A peer whose uid is neither the master's nor root's
//! gets `{"ok":false,"code":1,"message":"permission denied"}` and is closed;
//! root may always ask, as it could signal the master anyway.

pub mod client;
pub mod server;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Exit codes of `capataz ctl` (and `Response::code`).
pub const OK: i32 = 0;
pub const FAILURE: i32 = 1;
pub const USAGE: i32 = 2;
pub const NOT_RUNNING: i32 = 3;

/// The default control socket path (see the module doc) for this process.
pub fn default_path() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    default_path_for(unsafe { libc::geteuid() })
}

/// The default control socket path of a master running as `euid`: the
/// master picks it before dropping to `uid`, for the user it becomes, so
/// `capataz ctl` run as that user finds it.
pub fn default_path_for(euid: libc::uid_t) -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("capataz.ctl"),
        _ => PathBuf::from(format!("/tmp/capataz-{euid}.ctl")),
    }
}

/// One request (one JSON line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Status {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    Start {
        name: String,
    },
    Stop {
        name: String,
    },
    Restart {
        name: String,
    },
    Signal {
        name: String,
        signal: String,
    },
    Scale {
        name: String,
        change: String,
    },
    Reload,
    Reread,
    Update,
    Shutdown,
    Tail {
        name: String,
        #[serde(default = "default_tail_bytes")]
        bytes: usize,
        #[serde(default)]
        follow: bool,
    },
}

/// What `capataz ctl` sends: a [`Request`] and, with `--ini FILE`, that
/// file. Two instances of one user without `control-socket` share the
/// default path, and only the first gets it; the master checks `ini`
/// against the files it was started from, so `ctl --ini b.ini` can never
/// act on the instance of `a.ini`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    #[serde(flatten)]
    pub request: Request,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ini: Option<PathBuf>,
}

fn default_tail_bytes() -> usize {
    1600
}

/// One row of `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStatus {
    pub name: String,
    /// `web` for workers, else the program name.
    pub group: String,
    pub state: String,
    pub pid: Option<i32>,
    pub uptime_secs: Option<u64>,
    /// Requests served (workers only).
    pub requests: Option<u64>,
    pub rss_bytes: Option<u64>,
    #[serde(default)]
    pub description: String,
}

/// The answer to one request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    pub code: i32,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub processes: Vec<ProcessStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<serde_json::Value>,
}

impl Response {
    pub fn ok(message: impl Into<String>) -> Response {
        Response {
            ok: true,
            code: OK,
            message: message.into(),
            ..Response::default()
        }
    }

    pub fn error(code: i32, message: impl Into<String>) -> Response {
        Response {
            ok: false,
            code,
            message: message.into(),
            ..Response::default()
        }
    }
}

/// (uptime, RSS bytes) of a live process, from /proc.
pub fn proc_facts(pid: i32) -> (Option<u64>, Option<u64>) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    let fields: Vec<String> = stat
        .as_deref()
        .and_then(|s| s.rsplit_once(')'))
        .map(|(_, rest)| rest.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    // SAFETY: sysconf has no preconditions.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    // After the ")": field 3 is index 0, so starttime (22) is 19, rss (24) is 21.
    let uptime = (|| {
        let start: u64 = fields.get(19)?.parse().ok()?;
        let boot: f64 = std::fs::read_to_string("/proc/uptime")
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some((boot - start as f64 / ticks.max(1) as f64).max(0.0) as u64)
    })();
    let rss = fields
        .get(21)
        .and_then(|r| r.parse::<u64>().ok())
        .map(|pages| pages * page.max(1) as u64);
    (uptime, rss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_the_request_plus_the_ini_it_was_aimed_at() {
        let call = Call {
            request: Request::Shutdown,
            ini: Some("/srv/b.ini".into()),
        };
        let line = serde_json::to_string(&call).unwrap();
        assert_eq!(line, r#"{"cmd":"shutdown","ini":"/srv/b.ini"}"#);
        assert_eq!(serde_json::from_str::<Call>(&line).unwrap(), call);
        // Without --ini (and from older clients) the field is absent.
        let plain: Call = serde_json::from_str(r#"{"cmd":"status","name":"web"}"#).unwrap();
        assert_eq!(plain.ini, None);
        assert_eq!(
            plain.request,
            Request::Status {
                name: Some("web".into())
            }
        );
    }

    #[test]
    fn requests_are_tagged_json() {
        let r: Request = serde_json::from_str(r#"{"cmd":"stop","name":"celery"}"#).unwrap();
        assert_eq!(
            r,
            Request::Stop {
                name: "celery".into()
            }
        );
        let r: Request = serde_json::from_str(r#"{"cmd":"tail","name":"x"}"#).unwrap();
        assert_eq!(
            r,
            Request::Tail {
                name: "x".into(),
                bytes: 1600,
                follow: false
            }
        );
        assert_eq!(
            serde_json::to_string(&Request::Reload).unwrap(),
            r#"{"cmd":"reload"}"#
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"dance"}"#).is_err());
    }

    #[test]
    fn proc_facts_of_ourselves() {
        let (uptime, rss) = proc_facts(std::process::id() as i32);
        assert!(uptime.is_some());
        assert!(rss.unwrap() > 0);
    }
}
