//! The uWSGI stats document: same field names and shape as uWSGI 2.0's, so
//! uwsgitop and existing dashboards read it.
//!
//! Added to uWSGI's worker fields: `supervisor_state`, the state `capataz
//! ctl status` shows. `workers` lists the current generation's processes by
//! id (an older generation draining after a reload is not listed, as
//! before), plus each id that has no process now (BACKOFF between crashes,
//! EXITED for the moment before its respawn, FATAL). uWSGI also lists a
//! worker whose process is gone; like it, such an entry has `pid` 0 and
//! zero counters, and its `status` is the state in lower case (`backoff`).

use std::sync::atomic::Ordering::Relaxed;

use serde_json::{json, Value};

use super::{listen_queue, StatsSource};
use crate::master::scoreboard::WorkerState;

pub fn document(src: &StatsSource) -> Value {
    let view = src.snapshot();
    let sb = &src.scoreboard;
    let now_ms = crate::master::scoreboard::now_ms();
    let now_s = now_ms / 1000;
    let mut listen_queue_total = 0u64;
    let sockets: Vec<Value> = view
        .sockets
        .iter()
        .map(|s| {
            let (queue, max) = if s.proto_is_unix() { (0, s.backlog) } else { listen_queue(s.fd).unwrap_or((0, s.backlog)) };
            listen_queue_total += u64::from(queue);
            json!({"name": s.name, "proto": s.proto, "queue": queue, "max_queue": max, "shared": 0, "can_offload": 0})
        })
        .collect();
    let mut workers: Vec<(usize, Value)> = view
        .workers
        .iter()
        .filter(|w| !w.retired)
        .map(|w| {
            let slot = sb.worker(w.slot);
            let requests = slot.requests.load(Relaxed);
            let busy_us = slot.busy_us.load(Relaxed);
            let cores: Vec<Value> = (0..sb.threads())
                .map(|c| {
                    let core = sb.core(w.slot, c);
                    let current = core.current();
                    json!({
                        "id": c,
                        "requests": core.requests.load(Relaxed),
                        "static_requests": 0,
                        "routed_requests": 0,
                        "offloaded_requests": 0,
                        "write_errors": 0,
                        "read_errors": 0,
                        "in_request": u8::from(current.is_some()),
                        "vars": [],
                        "req_info": current.map_or_else(|| json!({}), |(started_ms, request)| json!({
                            "request_start": started_ms / 1000,
                            "request": request,
                        })),
                    })
                })
                .collect();
            let busy = cores.iter().any(|c| c["in_request"] == 1);
            let state = slot.state();
            (w.id, json!({
                "id": w.id,
                "pid": w.pid,
                "accepting": u8::from(state == WorkerState::Accepting),
                "requests": requests,
                "delta_requests": 0,
                "exceptions": slot.exceptions.load(Relaxed),
                "harakiri_count": view.harakiri_count.get(&w.id).copied().unwrap_or(0),
                "signals": 0,
                "signal_queue": 0,
                "status": match state {
                    WorkerState::Booting => "booting",
                    WorkerState::Draining | WorkerState::Recycling => "draining",
                    _ if busy => "busy",
                    _ => "idle",
                },
                "rss": slot.rss_bytes.load(Relaxed),
                "vsz": slot.vsz_bytes.load(Relaxed),
                "running_time": busy_us,
                "last_spawn": slot.spawned_s.load(Relaxed),
                "respawn_count": view.respawns.get(&w.id).copied().unwrap_or(0) + 1,
                "tx": slot.tx.load(Relaxed),
                "avg_rt": busy_us.checked_div(requests).unwrap_or(0),
                "apps": [{"id": 0, "modifier1": 0, "mountpoint": "", "requests": requests, "exceptions": 0, "chdir": ""}],
                "cores": cores,
                "supervisor_state": w.supervisor_state,
            }))
        })
        .collect();
    // An id without a process (BACKOFF between crashes, say) is listed too,
    // as uWSGI lists a worker whose process is gone: pid 0, no counters.
    workers.extend(view.waiting_workers.iter().map(|w| {
        let cores: Vec<Value> = (0..sb.threads())
            .map(|c| {
                json!({
                    "id": c, "requests": 0, "static_requests": 0, "routed_requests": 0,
                    "offloaded_requests": 0, "write_errors": 0, "read_errors": 0,
                    "in_request": 0, "vars": [], "req_info": {},
                })
            })
            .collect();
        (
            w.id,
            json!({
                "id": w.id,
                "pid": 0,
                "accepting": 0,
                "requests": 0,
                "delta_requests": 0,
                "exceptions": 0,
                "harakiri_count": view.harakiri_count.get(&w.id).copied().unwrap_or(0),
                "signals": 0,
                "signal_queue": 0,
                "status": w.supervisor_state.to_ascii_lowercase(),
                "rss": 0,
                "vsz": 0,
                "running_time": 0,
                "last_spawn": 0,
                "respawn_count": view.respawns.get(&w.id).copied().unwrap_or(0) + 1,
                "tx": 0,
                "avg_rt": 0,
                "apps": [],
                "cores": cores,
                "supervisor_state": w.supervisor_state,
            }),
        )
    }));
    workers.sort_by_key(|(id, _)| *id);
    let workers: Vec<Value> = workers.into_iter().map(|(_, w)| w).collect();
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    json!({
        "version": concat!("capataz-", env!("CARGO_PKG_VERSION")),
        "listen_queue": listen_queue_total,
        "listen_queue_errors": 0,
        "signal_queue": 0,
        "load": listen_queue_total,
        "pid": src.master_pid,
        "uid": uid,
        "gid": gid,
        "cwd": cwd,
        "phase": view.phase,
        "time": now_s,
        "time_ms": now_ms,
        "sockets": sockets,
        "workers": workers,
        "programs": view.programs.iter().map(|p| json!({
            "name": p.name,
            "group": p.group,
            "state": p.state,
            "pid": p.pid,
            "description": p.description,
        })).collect::<Vec<Value>>(),
    })
}

impl super::SocketView {
    fn proto_is_unix(&self) -> bool {
        self.name.contains('/') || self.name.starts_with('@')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_carry_their_supervisor_state_and_backoff_ids_are_listed() {
        let doc = document(&crate::stats::tests::source_with_backoff());
        let workers = doc["workers"].as_array().unwrap();
        assert_eq!(workers.len(), 2, "{doc}");
        assert_eq!(workers[0]["id"], 1);
        assert_eq!(workers[0]["pid"], 4242);
        assert_eq!(workers[0]["supervisor_state"], "RUNNING");
        assert_eq!(workers[0]["status"], "booting");
        assert_eq!(workers[1]["id"], 2);
        assert_eq!(workers[1]["pid"], 0);
        assert_eq!(workers[1]["supervisor_state"], "BACKOFF");
        assert_eq!(workers[1]["status"], "backoff");
        // Every uWSGI field of a live worker is there for the waiting id too.
        for key in workers[0].as_object().unwrap().keys() {
            assert!(
                workers[1].get(key).is_some(),
                "{key} missing: {}",
                workers[1]
            );
        }
        assert_eq!(workers[1]["cores"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn sockets_name_their_protocol_and_cores_count_their_requests() {
        use crate::stats::{socket_proto, SocketView};
        use crate::worker::Protocol;
        let src = crate::stats::tests::source_with_backoff();
        src.view.lock().unwrap().sockets = [
            ("/tmp/http.sock", Protocol::Http),
            ("/tmp/uwsgi.sock", Protocol::Uwsgi),
        ]
        .into_iter()
        .map(|(name, protocol)| SocketView {
            name: name.into(),
            proto: socket_proto(protocol),
            fd: -1,
            backlog: 100,
        })
        .collect();
        for _ in 0..3 {
            src.scoreboard.core(0, 1).count_request();
        }
        src.scoreboard.core(0, 0).count_request();
        let doc = document(&src);
        let protos: Vec<&str> = doc["sockets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["proto"].as_str().unwrap())
            .collect();
        assert_eq!(protos, ["http", "uwsgi"]);
        let cores = doc["workers"][0]["cores"].as_array().unwrap();
        assert_eq!(cores[0]["requests"], 1, "{doc}");
        assert_eq!(cores[1]["requests"], 3, "{doc}");
        // A new worker in the slot starts from zero.
        src.scoreboard.reset(0, 4243);
        let doc = document(&src);
        assert_eq!(doc["workers"][0]["cores"][1]["requests"], 0);
    }
}
