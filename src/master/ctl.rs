//! The master loop's side of `capataz ctl`: answers the requests the
//! control server queued (see `crate::control` for the protocol). Runs on
//! the loop, so it owns worker and program state; `start`, `stop` and
//! `restart` are answered later, from [`Master::control_tick`], once the
//! processes got where they were sent.

use std::sync::mpsc::Sender;
use std::time::Instant;

use super::scoreboard::WorkerState;
use super::{Master, Phase};
use crate::config::sections::parse_signal;
use crate::control::server::{Envelope, Reply};
use crate::control::{
    proc_facts, ProcessStatus, Request, Response, FAILURE, NOT_RUNNING, OK, USAGE,
};
use crate::programs::machine::State;

/// The name `ctl` uses for the web workers.
const WEB: &str = "web";

#[derive(Debug)]
enum Waiting {
    /// Answer once the processes are down; then start them if `restart`.
    Stop { restart: bool },
    /// Answer once none is STARTING.
    Start,
}

/// A `start`/`stop`/`restart` waiting for its processes.
#[derive(Debug)]
pub(super) struct Pending {
    names: Vec<String>,
    waiting: Waiting,
    reply: Sender<Reply>,
}

/// The configuration as it reads now: the master's own command line and
/// environment, with the ini and env files as they are on disk.
pub(super) fn read_config_again() -> Result<Box<crate::config::Config>, String> {
    let args = std::env::args_os().skip(1).collect();
    let env = std::env::vars_os().collect();
    match crate::config::load(args, env) {
        Ok(crate::config::Command::Serve(config)) => Ok(config),
        Ok(_) => Err("the command line no longer starts a server".into()),
        Err(e) => Err(e.to_string()),
    }
}

fn done(reply: &Sender<Reply>, response: Response) {
    // The client may have gone; nothing to do then.
    let _ = reply.send(Reply::Done(response));
}

impl Master {
    /// Handles queued control requests and finished waits; never blocks.
    pub(super) fn control_tick(&mut self) {
        let requests = self
            .control
            .as_ref()
            .map(|c| c.pending())
            .unwrap_or_default();
        for Envelope { request, reply } in requests {
            self.on_control(request, reply);
        }
        let now = Instant::now();
        let pending = std::mem::take(&mut self.pending);
        for p in pending {
            let states: Vec<(String, State, String)> = p
                .names
                .iter()
                .filter_map(|n| {
                    self.programs
                        .processes()
                        .iter()
                        .find(|q| q.name == *n && !q.removing)
                        .map(|q| (q.name.clone(), q.state(), q.description()))
                })
                .collect();
            match p.waiting {
                Waiting::Stop { restart } => {
                    if states.iter().any(|(_, s, _)| s.has_process()) {
                        self.pending.push(p);
                    } else if restart {
                        let idx: Vec<usize> = p
                            .names
                            .iter()
                            .flat_map(|n| self.programs.select(n))
                            .collect();
                        self.programs.start(&idx, now);
                        self.pending.push(Pending {
                            waiting: Waiting::Start,
                            ..p
                        });
                    } else {
                        done(
                            &p.reply,
                            Response::ok(format!("stopped: {}", p.names.join(", "))),
                        );
                    }
                }
                Waiting::Start => {
                    if states.iter().any(|(_, s, _)| *s == State::Starting) {
                        self.pending.push(p);
                        continue;
                    }
                    let failed: Vec<String> = states
                        .iter()
                        .filter(|(_, s, _)| !matches!(s, State::Running | State::Exited))
                        .map(|(n, s, d)| format!("{n}: {} {d}", s.name()))
                        .collect();
                    if failed.is_empty() {
                        done(
                            &p.reply,
                            Response::ok(format!("started: {}", p.names.join(", "))),
                        );
                    } else {
                        done(
                            &p.reply,
                            Response::error(
                                FAILURE,
                                format!("failed to start: {}", failed.join("; ")),
                            ),
                        );
                    }
                }
            }
        }
    }

    fn selection(&self, name: &str) -> Result<Vec<usize>, Response> {
        let selected = self.programs.select(name);
        if selected.is_empty() && name != "all" {
            return Err(Response::error(USAGE, format!("no such process: {name}")));
        }
        Ok(selected)
    }

    fn names(&self, idx: &[usize]) -> Vec<String> {
        idx.iter()
            .map(|&i| self.programs.processes()[i].name.clone())
            .collect()
    }

    fn on_control(&mut self, request: Request, reply: Sender<Reply>) {
        let stopping = matches!(self.phase, Phase::Draining | Phase::Stopped);
        let now = Instant::now();
        let response = match request {
            Request::Status { name } => self.status(name.as_deref()),
            Request::Start { name } | Request::Restart { name } if stopping => {
                Response::error(FAILURE, format!("cannot start {name}: shutting down"))
            }
            Request::Start { name } => match self.selection(&name) {
                Err(r) => r,
                Ok(idx) if idx.is_empty() => Response::ok("no programs"),
                Ok(idx) => {
                    self.programs.start(&idx, now);
                    let names = self.names(&idx);
                    self.pending.push(Pending {
                        names,
                        waiting: Waiting::Start,
                        reply,
                    });
                    return;
                }
            },
            Request::Stop { name } => match self.selection(&name) {
                Err(r) => r,
                Ok(idx) if idx.is_empty() => Response::ok("no programs"),
                Ok(idx) => {
                    let running = self.programs.stop(&idx, now, None);
                    if running == 0 {
                        Response::error(NOT_RUNNING, format!("{name}: not running"))
                    } else {
                        let names = self.names(&idx);
                        self.pending.push(Pending {
                            names,
                            waiting: Waiting::Stop { restart: false },
                            reply,
                        });
                        return;
                    }
                }
            },
            Request::Restart { name } => match self.selection(&name) {
                Err(r) => r,
                Ok(idx) if idx.is_empty() => Response::ok("no programs"),
                Ok(idx) => {
                    self.programs.stop(&idx, now, None);
                    let names = self.names(&idx);
                    self.pending.push(Pending {
                        names,
                        waiting: Waiting::Stop { restart: true },
                        reply,
                    });
                    return;
                }
            },
            Request::Signal { name, signal } => match parse_signal(&signal) {
                Err(e) => Response::error(USAGE, e),
                Ok(sig) if name == WEB => {
                    let pids: Vec<i32> = self.workers.current().map(|(pid, _)| pid).collect();
                    for &pid in &pids {
                        super::supervise::kill(pid, sig);
                    }
                    Response::ok(format!(
                        "sent {} to {} worker(s)",
                        super::signals::name(sig),
                        pids.len()
                    ))
                }
                Ok(sig) => match self.selection(&name) {
                    Err(r) => r,
                    Ok(idx) => match self.programs.signal(&idx, sig) {
                        0 => Response::error(NOT_RUNNING, format!("{name}: not running")),
                        n => Response::ok(format!(
                            "sent {} to {n} process(es)",
                            super::signals::name(sig)
                        )),
                    },
                },
            },
            Request::Scale { name, change } => self.scale(&name, &change, stopping),
            Request::Reload if stopping => Response::error(FAILURE, "shutting down"),
            Request::Reload => {
                self.begin_reload("ctl reload");
                Response::ok("reloading the web workers")
            }
            Request::Reread | Request::Update => {
                let apply = matches!(request, Request::Update);
                match read_config_again() {
                    Err(e) => Response::error(FAILURE, e),
                    Ok(_) if apply && stopping => Response::error(FAILURE, "shutting down"),
                    Ok(new) => self.reread(*new, apply, now),
                }
            }
            Request::Shutdown => {
                done(&reply, Response::ok("shutting down"));
                self.on_signal(libc::SIGTERM);
                return;
            }
            Request::Tail {
                name,
                bytes,
                follow,
            } => {
                if name == WEB {
                    Response::error(
                        USAGE,
                        "the web workers log to capataz's own output; tail that",
                    )
                } else {
                    match self.selection(&name) {
                        Err(r) => r,
                        Ok(idx) if idx.len() != 1 => Response::error(
                            USAGE,
                            format!("{name}: name one process ({})", self.names(&idx).join(", ")),
                        ),
                        Ok(idx) => {
                            let ring = self.programs.processes()[idx[0]].log.clone();
                            let _ = reply.send(Reply::Tail {
                                response: Response::ok(""),
                                ring,
                                bytes,
                                follow,
                            });
                            return;
                        }
                    }
                }
            }
        };
        done(&reply, response);
    }

    /// `reread` (`apply` false) and `update`: see [`crate::programs`]. The
    /// web workers are not restarted; a changed environment reaches them on
    /// their next reload.
    fn reread(&mut self, new: crate::config::Config, apply: bool, now: Instant) -> Response {
        let changes = self
            .programs
            .update(&new.programs, &new.sockets, &new.env, apply, now);
        let mut message = String::new();
        if changes.is_empty() {
            message.push_str("no changes");
        }
        if apply {
            self.config.programs = new.programs;
            self.config.sockets = new.sockets;
            if new.env != self.config.env {
                message.push_str(
                    "programs restarted with the new env; \
                     the web workers get it on their next reload (capataz ctl reload)",
                );
                self.pending_env = Some(super::PendingEnv {
                    env: new.env,
                    files: new.env_files,
                });
            }
        }
        let mut r = if changes.errors.is_empty() {
            Response::ok(message)
        } else {
            Response::error(FAILURE, changes.errors.join("; "))
        };
        r.changes = serde_json::to_value(&changes).ok();
        r
    }

    fn scale(&mut self, name: &str, change: &str, stopping: bool) -> Response {
        if name != WEB {
            return Response::error(
                USAGE,
                format!("only '{WEB}' (the workers) scales, not '{name}'"),
            );
        }
        if stopping {
            return Response::error(FAILURE, "shutting down");
        }
        let parse = |s: &str| {
            s.parse::<usize>().map_err(|_| {
                Response::error(USAGE, format!("bad scale '{change}': use +N, -N or =N"))
            })
        };
        let target = match change.as_bytes().first() {
            Some(b'+') => parse(&change[1..]).map(|n| self.target + n),
            Some(b'-') => parse(&change[1..]).map(|n| self.target.saturating_sub(n)),
            Some(b'=') => parse(&change[1..]),
            _ => parse(change),
        };
        match target {
            Err(r) => r,
            Ok(n) => {
                self.scale_to(n, "ctl scale");
                Response::ok(format!("{WEB}: {} worker(s)", self.target))
            }
        }
    }

    fn status(&mut self, name: Option<&str>) -> Response {
        let scoreboard = &self.scoreboard;
        let web = self.workers.rows(Instant::now(), |slot| {
            scoreboard.worker(slot).state() == WorkerState::Recycling
        });
        let mut rows: Vec<ProcessStatus> = web
            .into_iter()
            .map(|row| {
                let (uptime, rss) = row.pid.map(proc_facts).unwrap_or((None, None));
                let slot = row.slot.map(|s| scoreboard.worker(s));
                let sb_rss = slot.map_or(0, |w| {
                    w.rss_bytes.load(std::sync::atomic::Ordering::Relaxed)
                });
                ProcessStatus {
                    name: format!("{WEB}:{}", row.id),
                    group: WEB.into(),
                    state: row.state.name().into(),
                    pid: row.pid,
                    uptime_secs: uptime,
                    requests: slot.map(|w| w.requests.load(std::sync::atomic::Ordering::Relaxed)),
                    rss_bytes: if sb_rss > 0 { Some(sb_rss) } else { rss },
                    description: row.description,
                }
            })
            .collect();
        for p in self.programs.processes().iter().filter(|p| !p.removing) {
            let (uptime, rss) = p.pid.map(proc_facts).unwrap_or((None, None));
            rows.push(ProcessStatus {
                name: p.name.clone(),
                group: p.group.clone(),
                state: p.state().name().into(),
                pid: p.pid,
                uptime_secs: uptime,
                requests: None,
                rss_bytes: rss,
                description: p.description(),
            });
        }
        if let Some(name) = name {
            let group = name.strip_suffix(":*").unwrap_or(name);
            rows.retain(|r| name == "all" || r.name == name || r.group == group);
            if rows.is_empty() {
                return Response::error(USAGE, format!("no such process: {name}"));
            }
        }
        // Draining old-generation workers do not count against `status`.
        let all_running = rows
            .iter()
            .all(|r| r.state == "RUNNING" || r.description.starts_with("old generation"));
        Response {
            ok: true,
            code: if all_running { OK } else { NOT_RUNNING },
            message: String::new(),
            processes: rows,
            changes: None,
        }
    }
}
