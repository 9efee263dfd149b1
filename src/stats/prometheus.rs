//! Prometheus text exposition format (version 0.0.4).

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use super::{listen_queue, StatsSource};
use crate::master::scoreboard::{WorkerState, DURATION_BUCKETS_US};
use crate::programs::machine::State;

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

pub fn render(src: &StatsSource) -> String {
    let view = src.snapshot();
    let sb = &src.scoreboard;
    let live: Vec<_> = view.workers.iter().filter(|w| !w.retired).collect();
    let mut out = String::with_capacity(4096);

    family(
        &mut out,
        "capataz_requests_total",
        "counter",
        "Requests answered, by worker and status class.",
    );
    for w in &live {
        let slot = sb.worker(w.slot);
        for (i, class) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
            let _ = writeln!(
                out,
                "capataz_requests_total{{worker=\"{}\",status=\"{class}\"}} {}",
                w.id,
                slot.status_classes[i].load(Relaxed)
            );
        }
    }

    family(
        &mut out,
        "capataz_request_duration_seconds",
        "histogram",
        "Time from a complete request to the end of the app's response.",
    );
    let mut buckets = [0u64; DURATION_BUCKETS_US.len() + 1];
    let mut sum_us = 0u64;
    for w in &live {
        let slot = sb.worker(w.slot);
        for (i, b) in buckets.iter_mut().enumerate() {
            *b += slot.duration_buckets[i].load(Relaxed);
        }
        sum_us += slot.busy_us.load(Relaxed);
    }
    let mut cumulative = 0;
    for (i, upper) in DURATION_BUCKETS_US.iter().enumerate() {
        cumulative += buckets[i];
        let _ = writeln!(
            out,
            "capataz_request_duration_seconds_bucket{{le=\"{}\"}} {cumulative}",
            *upper as f64 / 1e6
        );
    }
    cumulative += buckets[DURATION_BUCKETS_US.len()];
    let _ = writeln!(
        out,
        "capataz_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
    );
    let _ = writeln!(
        out,
        "capataz_request_duration_seconds_sum {}",
        sum_us as f64 / 1e6
    );
    let _ = writeln!(out, "capataz_request_duration_seconds_count {cumulative}");

    family(
        &mut out,
        "capataz_response_bytes_total",
        "counter",
        "Response bytes sent.",
    );
    let tx: u64 = live
        .iter()
        .map(|w| sb.worker(w.slot).tx.load(Relaxed))
        .sum();
    let _ = writeln!(out, "capataz_response_bytes_total {tx}");

    family(
        &mut out,
        "capataz_workers",
        "gauge",
        "Worker processes by state.",
    );
    for state in ["booting", "idle", "busy", "draining"] {
        let n = live
            .iter()
            .filter(|w| {
                let s = sb.worker(w.slot).state();
                let busy = (0..sb.threads()).any(|c| sb.core(w.slot, c).current().is_some());
                match state {
                    "booting" => s == WorkerState::Booting,
                    "draining" => matches!(s, WorkerState::Draining | WorkerState::Recycling),
                    "busy" => s == WorkerState::Accepting && busy,
                    _ => s == WorkerState::Accepting && !busy,
                }
            })
            .count();
        let _ = writeln!(out, "capataz_workers{{state=\"{state}\"}} {n}");
    }

    family(
        &mut out,
        "capataz_worker_state",
        "gauge",
        "Supervisor state of each worker id, as capataz ctl status shows it (1 for the current state, 0 for the others).",
    );
    let mut ids: Vec<(usize, &str)> = live
        .iter()
        .map(|w| (w.id, w.supervisor_state))
        .chain(
            view.waiting_workers
                .iter()
                .map(|w| (w.id, w.supervisor_state)),
        )
        .collect();
    ids.sort_unstable();
    // One series per id, even if the table were ever caught mid-change: a
    // duplicate series would make Prometheus reject the whole scrape.
    ids.dedup_by_key(|(id, _)| *id);
    for (id, current) in ids {
        for state in State::ALL.map(State::name) {
            let _ = writeln!(
                out,
                "capataz_worker_state{{worker=\"{id}\",state=\"{state}\"}} {}",
                u8::from(state == current)
            );
        }
    }

    family(
        &mut out,
        "capataz_worker_rss_bytes",
        "gauge",
        "Resident memory of each worker.",
    );
    for w in &live {
        let _ = writeln!(
            out,
            "capataz_worker_rss_bytes{{worker=\"{}\"}} {}",
            w.id,
            sb.worker(w.slot).rss_bytes.load(Relaxed)
        );
    }

    family(
        &mut out,
        "capataz_worker_respawns_total",
        "counter",
        "Worker respawns by reason.",
    );
    for reason in ["crash", "max-requests", "rss", "harakiri", "reload"] {
        let n = view.respawn_reasons.get(reason).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "capataz_worker_respawns_total{{reason=\"{reason}\"}} {n}"
        );
    }

    family(
        &mut out,
        "capataz_harakiri_total",
        "counter",
        "Requests killed by harakiri.",
    );
    let _ = writeln!(
        out,
        "capataz_harakiri_total {}",
        view.harakiri_count.values().sum::<u64>()
    );

    family(
        &mut out,
        "capataz_listen_queue",
        "gauge",
        "Connections waiting in each listener's accept queue.",
    );
    for s in &view.sockets {
        let q = listen_queue(s.fd).map_or(0, |(q, _)| q);
        let _ = writeln!(
            out,
            "capataz_listen_queue{{socket=\"{}\"}} {q}",
            s.name.replace('"', "'")
        );
    }

    family(
        &mut out,
        "capataz_ready",
        "gauge",
        "1 when every worker accepts (the readiness probe).",
    );
    let _ = writeln!(out, "capataz_ready {}", u8::from(view.ready));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_state_is_one_hot_per_id() {
        let text = render(&crate::stats::tests::source_with_backoff());
        assert!(
            text.contains("# TYPE capataz_worker_state gauge\n"),
            "{text}"
        );
        assert!(text.contains("# HELP capataz_worker_state "), "{text}");
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("capataz_worker_state{"))
            .collect();
        assert_eq!(lines.len(), 2 * State::ALL.len(), "{text}");
        let ones: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.ends_with(" 1"))
            .collect();
        assert_eq!(
            ones,
            [
                "capataz_worker_state{worker=\"1\",state=\"RUNNING\"} 1",
                "capataz_worker_state{worker=\"2\",state=\"BACKOFF\"} 1",
            ]
        );
        assert!(lines.contains(&"capataz_worker_state{worker=\"1\",state=\"BACKOFF\"} 0"));
    }
}
