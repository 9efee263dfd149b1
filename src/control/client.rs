//! `capataz ctl`: the command-line client of the control socket.
//!
//! ```text
//! capataz ctl [--control-socket PATH | --ini FILE] COMMAND
//!   status [NAME] [--json]     workers (web:N) and programs
//!   start|stop|restart NAME    a program, a process, or all
//!   signal NAME SIG            (NAME may be web: every worker)
//!   scale web +N|-N|=N
//!   tail NAME [-f] [--bytes N]
//!   reload | reread | update | shutdown
//! ```
//!
//! Exit codes: 0 ok, 1 failure (including no connection), 2 usage error,
//! 3 a named process is not running, 64 (EX_USAGE) an error in the
//! `--ini` file.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use anyhow::{bail, Context};

use super::{Call, ProcessStatus, Request, Response, FAILURE, USAGE};

const USAGE_TEXT: &str = "usage: capataz ctl [--control-socket PATH | --ini FILE] COMMAND

commands:
  status [NAME] [--json]    state, pid, uptime, requests and RSS of the workers
                            (web:N) and programs; exit 3 if one is not running
  start NAME|all            start a program (all its processes), a process, or all
  stop NAME|all             stop them (stopsignal, then SIGKILL after stopwaitsecs)
  restart NAME|all          stop, then start
  signal NAME SIG           send SIG (TERM, HUP, USR1, ... or a number); NAME may be web
  scale web +N|-N|=N        change the number of web workers
  tail NAME [-f] [--bytes N]  the last output of a process; -f follows it
  reload                    zero-downtime reload of the web workers (like SIGHUP)
  reread                    show what changed in the ini files: [program:x] and
                            [socket:x] sections, and the env/env-file environment
  update                    apply it: restart changed programs, stop removed ones,
                            start new ones; bind new sockets, close removed ones
  shutdown                  graceful shutdown of everything (like SIGTERM)

exit codes: 0 ok, 1 failure, 2 usage error, 3 a named process is not running,
64 an error in the --ini file";

struct Args {
    socket: Option<PathBuf>,
    ini: Option<String>,
    json: bool,
    follow: bool,
    bytes: usize,
    words: Vec<String>,
}

fn parse_args(args: Vec<String>) -> Result<Args, String> {
    let mut out = Args {
        socket: None,
        ini: None,
        json: false,
        follow: false,
        bytes: 1600,
        words: Vec::new(),
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--control-socket" => {
                out.socket = Some(it.next().ok_or("--control-socket needs a PATH")?.into())
            }
            "--ini" => out.ini = Some(it.next().ok_or("--ini needs a FILE")?),
            "--json" => out.json = true,
            "-f" | "--follow" => out.follow = true,
            "--bytes" => {
                out.bytes = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or("--bytes needs a number")?
            }
            a if a.starts_with("--control-socket=") => {
                out.socket = Some(a["--control-socket=".len()..].into())
            }
            a if a.starts_with("--ini=") => out.ini = Some(a["--ini=".len()..].into()),
            a if a.starts_with('-')
                && !a.starts_with("-1")
                && a.len() > 1
                && !a[1..].starts_with(|c: char| c.is_ascii_digit()) =>
            {
                return Err(format!("unknown flag '{a}'"))
            }
            _ => out.words.push(arg),
        }
    }
    if out.socket.is_some() && out.ini.is_some() {
        return Err("give --control-socket or --ini, not both".into());
    }
    Ok(out)
}

fn request(words: &[String], args: &Args) -> Result<Request, String> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let name = |what: &str| format!("'{what}' needs a NAME (a program, a process, or all)");
    Ok(match w.as_slice() {
        ["status"] => Request::Status { name: None },
        ["status", n] => Request::Status {
            name: Some(n.to_string()),
        },
        ["start", n] => Request::Start {
            name: n.to_string(),
        },
        ["stop", n] => Request::Stop {
            name: n.to_string(),
        },
        ["restart", n] => Request::Restart {
            name: n.to_string(),
        },
        ["start" | "stop" | "restart"] => return Err(name(w[0])),
        ["signal", n, sig] => Request::Signal {
            name: n.to_string(),
            signal: sig.to_string(),
        },
        ["scale", n, change] => Request::Scale {
            name: n.to_string(),
            change: change.to_string(),
        },
        ["tail", n] => Request::Tail {
            name: n.to_string(),
            bytes: args.bytes,
            follow: args.follow,
        },
        ["reload"] => Request::Reload,
        ["reread"] => Request::Reread,
        ["update"] => Request::Update,
        ["shutdown"] => Request::Shutdown,
        [] => return Err("no command".into()),
        [cmd, ..] => return Err(format!("bad arguments for '{cmd}'")),
    })
}

/// Where the master's control socket is. With `--ini FILE`, the file is
/// loaded as the master loads it, minus the checks that only matter for
/// serving ([`crate::config::load_for_ctl`]): ctl may run from any
/// directory, where a relative `chdir` does not resolve.
fn socket_path(args: &Args) -> Result<PathBuf, crate::config::ConfigError> {
    if let Some(p) = &args.socket {
        return Ok(p.clone());
    }
    if let Some(ini) = &args.ini {
        let env: Vec<_> = std::env::vars_os().collect();
        let loaded = crate::config::load_for_ctl(vec!["--ini".into(), ini.into()], env)?;
        return Ok(match loaded {
            crate::config::Command::Serve(config) => config.control_socket.clone(),
            _ => None,
        }
        .unwrap_or_else(super::default_path));
    }
    Ok(super::default_path())
}

fn uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}:{m:02}:{s:02}")
    } else {
        format!("{h}:{m:02}:{s:02}")
    }
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1}G", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1}M", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1}K", n as f64 / (1u64 << 10) as f64),
        n => format!("{n}B"),
    }
}

/// The `status` table.
pub fn table(rows: &[ProcessStatus]) -> String {
    let dash = || "-".to_string();
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.state.clone(),
                r.pid.map_or_else(dash, |p| p.to_string()),
                r.uptime_secs.map_or_else(dash, uptime),
                r.requests.map_or_else(dash, |n| n.to_string()),
                r.rss_bytes.map_or_else(dash, human_bytes),
                r.description.clone(),
            ]
        })
        .collect();
    let header = ["NAME", "STATE", "PID", "UPTIME", "REQUESTS", "RSS", ""];
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header.map(String::from)).chain(cells) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Prints to stdout; a closed pipe (`| head`) is not an error.
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

fn exchange(path: &PathBuf, call: &Call, json: bool) -> anyhow::Result<i32> {
    let request = &call.request;
    let mut stream = UnixStream::connect(path).with_context(|| {
        format!(
            "cannot connect to the control socket {} (is capataz running?)",
            path.display()
        )
    })?;
    let mut line = serde_json::to_vec(call)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    if first.is_empty() {
        bail!("the master closed the connection without answering");
    }
    let response: Response =
        serde_json::from_str(first.trim()).context("bad response from the master")?;
    match request {
        Request::Status { .. } if response.ok || !response.processes.is_empty() => {
            if json {
                say(&format!("{}\n", serde_json::to_string_pretty(&response)?));
            } else {
                say(&table(&response.processes));
            }
        }
        Request::Tail { .. } if response.ok => {
            let mut out = std::io::stdout().lock();
            let mut buf = [0u8; 8192];
            loop {
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                if out.write_all(&buf[..n]).and_then(|()| out.flush()).is_err() {
                    break; // our reader went away
                }
            }
        }
        _ if json => say(&format!("{}\n", serde_json::to_string_pretty(&response)?)),
        _ => {
            if let Some(changes) = &response.changes {
                for (what, names) in changes.as_object().into_iter().flatten() {
                    for name in names.as_array().into_iter().flatten() {
                        say(&format!("{}: {what}\n", name.as_str().unwrap_or_default()));
                    }
                }
            }
            if !response.message.is_empty() {
                if response.ok {
                    say(&format!("{}\n", response.message));
                } else {
                    eprintln!("capataz ctl: {}", response.message);
                }
            }
        }
    }
    Ok(response.code)
}

/// Runs `capataz ctl ARGS`; returns the exit code.
pub fn run(args: Vec<String>) -> i32 {
    if args
        .iter()
        .any(|a| a == "-h" || a == "--help" || a == "help")
    {
        say(&format!("{USAGE_TEXT}\n"));
        return 0;
    }
    let parsed = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("capataz ctl: {e}\n\n{USAGE_TEXT}");
            return USAGE;
        }
    };
    let request = match request(&parsed.words, &parsed) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("capataz ctl: {e}\n\n{USAGE_TEXT}");
            return USAGE;
        }
    };
    let path = match socket_path(&parsed) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("capataz ctl: config error: {e}");
            return crate::config::EXIT_USAGE;
        }
    };
    // Absolute, so the master (whose directory differs) resolves the same
    // file when it checks the ini is one it was started from.
    let call = Call {
        request,
        ini: parsed
            .ini
            .as_ref()
            .map(|f| std::fs::canonicalize(f).unwrap_or_else(|_| PathBuf::from(f))),
    };
    match exchange(&path, &call, parsed.json) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("capataz ctl: {e:#}");
            FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn commands_parse() {
        let a = parse_args(words("--control-socket /x scale web -1")).unwrap();
        assert_eq!(a.socket, Some(PathBuf::from("/x")));
        assert_eq!(
            request(&a.words, &a).unwrap(),
            Request::Scale {
                name: "web".into(),
                change: "-1".into()
            }
        );
        let a = parse_args(words("tail -f celery")).unwrap();
        assert_eq!(
            request(&a.words, &a).unwrap(),
            Request::Tail {
                name: "celery".into(),
                bytes: 1600,
                follow: true
            }
        );
        let a = parse_args(words("stop")).unwrap();
        assert!(request(&a.words, &a).is_err());
        assert!(parse_args(words("--bogus status")).is_err());
    }

    #[test]
    fn table_aligns_and_dashes() {
        let t = table(&[ProcessStatus {
            name: "web:1".into(),
            group: "web".into(),
            state: "RUNNING".into(),
            pid: Some(42),
            uptime_secs: Some(3723),
            requests: Some(7),
            rss_bytes: Some(25 << 20),
            description: String::new(),
        }]);
        assert!(
            t.starts_with("NAME   STATE    PID  UPTIME   REQUESTS  RSS"),
            "{t}"
        );
        assert!(
            t.contains("web:1  RUNNING  42   1:02:03  7         25.0M"),
            "{t}"
        );
    }
}
