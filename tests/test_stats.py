"""Issue 7 items 2-4: the uWSGI stats document (and uwsgitop reading it),
Prometheus metrics parsed by prometheus_client, and the health endpoints."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.server import APPS, VENV_TEST, Server, free_port, plain_args


def wait_for(predicate, timeout: float = 3.0):
    """Polls until predicate() is truthy (the master refreshes its view every
    100 ms); returns the last value."""
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value or time.time() > deadline:
            return value
        time.sleep(0.05)


def raw_stats(port: int) -> dict:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return json.loads(data)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def srv():
    stats, metrics = free_port(), free_port()
    with Server(
        plain_args("--processes", "2", "--threads", "2", "--stats", f"127.0.0.1:{stats}", "--metrics", f"127.0.0.1:{metrics}"),
        name="stats",
    ) as s:
        s.stats_port, s.metrics_port = stats, metrics
        for _ in range(20):
            urllib.request.urlopen(s.url + "/", timeout=5).read()
        yield s


def test_stats_document_has_uwsgi_fields(srv):
    """uWSGI's top-level and per-worker field names, with real values."""
    def full():
        d = raw_stats(srv.stats_port)
        booted = all(w["accepting"] for w in d["workers"])
        return d if len(d["workers"]) == 2 and d["phase"] == "running" and booted else None

    doc = wait_for(full) or raw_stats(srv.stats_port)
    for key in ("version", "listen_queue", "listen_queue_errors", "load", "pid", "uid", "gid", "cwd", "sockets", "workers"):
        assert key in doc, key
    assert doc["pid"] == srv.pid
    assert len(doc["workers"]) == 2, json.dumps(doc)
    worker_fields = (
        "id", "pid", "accepting", "requests", "delta_requests", "exceptions", "harakiri_count", "status",
        "rss", "vsz", "running_time", "last_spawn", "respawn_count", "tx", "avg_rt", "cores",
    )
    for w in doc["workers"]:
        for key in worker_fields:
            assert key in w, key
        assert w["accepting"] == 1
        assert w["status"] in ("idle", "busy")
        assert w["rss"] > 1_000_000
        assert len(w["cores"]) == 2
    assert sorted(w["pid"] for w in doc["workers"]) == sorted(srv.workers())
    assert sum(w["requests"] for w in doc["workers"]) >= 20
    assert sum(w["tx"] for w in doc["workers"]) > 0


def test_busy_core_shows_the_current_request(srv):
    """A request in flight is visible per core (in_request, req_info)."""
    import threading

    t = threading.Thread(target=lambda: urllib.request.urlopen(srv.url + "/sleep?ms=1500", timeout=10).read())
    t.start()
    try:
        deadline = time.time() + 5
        seen = None
        while time.time() < deadline and not seen:
            for w in raw_stats(srv.stats_port)["workers"]:
                for c in w["cores"]:
                    if c["in_request"]:
                        seen = (w, c)
            time.sleep(0.1)
        assert seen, "no busy core seen while a request was in flight"
        assert "/sleep" in seen[1]["req_info"]["request"]
        assert seen[0]["status"] == "busy"
    finally:
        t.join()


def test_uwsgi_socket_reported_as_uwsgi_and_cores_count_requests(tmp_path):
    """uWSGI's stats name each socket's protocol ("uwsgi" for `socket`,
    "http" for `http`), and cores[].requests counts the requests each thread
    served: with one thread, all of the worker's."""
    stats, uwsgi_port = free_port(), free_port()
    with Server(
        plain_args("--processes", "1", "--threads", "1", "--stats", f"127.0.0.1:{stats}",
                   "--socket", f"127.0.0.1:{uwsgi_port}"),
        workdir=tmp_path, name="stats-proto",
    ) as s:
        for _ in range(7):
            urllib.request.urlopen(s.url + "/", timeout=5).read()

        def counted():
            d = raw_stats(stats)
            return d if d["workers"] and d["workers"][0]["requests"] >= 7 else None

        doc = wait_for(counted) or raw_stats(stats)
    protos = {sock["name"]: sock["proto"] for sock in doc["sockets"]}
    assert protos == {f"127.0.0.1:{s.port}": "http", f"127.0.0.1:{uwsgi_port}": "uwsgi"}, doc["sockets"]
    (worker,) = doc["workers"]
    # 7, plus the helper's readiness probe.
    assert worker["requests"] >= 7, json.dumps(worker)
    assert [c["requests"] for c in worker["cores"]] == [worker["requests"]], json.dumps(worker)


def test_prometheus_text_parses(srv):
    status, body = http_get(f"http://127.0.0.1:{srv.metrics_port}/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    for name in (
        "capataz_requests", "capataz_request_duration_seconds", "capataz_response_bytes",
        "capataz_workers", "capataz_worker_respawns", "capataz_harakiri", "capataz_listen_queue",
    ):
        assert name in families, (name, sorted(families))
    ok = sum(s.value for s in families["capataz_requests"].samples if s.labels.get("status") == "2xx")
    assert ok >= 20
    count = [s for s in families["capataz_request_duration_seconds"].samples if s.name.endswith("_count")]
    assert count and count[0].value >= 20
    idle_or_busy = sum(s.value for s in families["capataz_workers"].samples if s.labels["state"] in ("idle", "busy"))
    assert idle_or_busy == 2


def worker_states(metrics_port: int) -> dict[str, list[str]]:
    """capataz_worker_state from /metrics: worker id -> the states whose
    sample is 1 (exactly one each, if the gauge is one-hot)."""
    status, body = http_get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert "capataz_worker_state" in families, sorted(families)
    family = families["capataz_worker_state"]
    assert family.type == "gauge"
    states: dict[str, list[str]] = {}
    for sample in family.samples:
        assert sample.value in (0, 1), sample
        ones = states.setdefault(sample.labels["worker"], [])
        if sample.value == 1:
            ones.append(sample.labels["state"])
    return states


def test_supervisor_state_of_healthy_workers_is_running(srv):
    """Each worker's supervisor state, named as `capataz ctl status` names
    it, is in the stats JSON (next to the unchanged uWSGI fields) and in
    /metrics as a one-hot gauge with HELP and TYPE: RUNNING once a worker
    has accepted for startsecs (1 s)."""
    def all_running():
        d = raw_stats(srv.stats_port)
        states = [w.get("supervisor_state") for w in d["workers"]]
        return d if states == ["RUNNING", "RUNNING"] else None

    doc = wait_for(all_running, 5) or raw_stats(srv.stats_port)
    assert [w.get("supervisor_state") for w in doc["workers"]] == ["RUNNING", "RUNNING"], json.dumps(doc)
    assert sorted(w["pid"] for w in doc["workers"]) == sorted(srv.workers())
    assert all(w["status"] in ("idle", "busy") and w["accepting"] == 1 for w in doc["workers"])

    body = http_get(f"http://127.0.0.1:{srv.metrics_port}/metrics")[1].decode()
    assert "# HELP capataz_worker_state " in body
    assert "# TYPE capataz_worker_state gauge" in body
    assert 'capataz_worker_state{worker="1",state="RUNNING"} 1' in body
    assert 'capataz_worker_state{worker="1",state="BACKOFF"} 0' in body
    states = worker_states(srv.metrics_port)
    assert states == {"1": ["RUNNING"], "2": ["RUNNING"]}, states
    family = next(f for f in text_string_to_metric_families(body) if f.name == "capataz_worker_state")
    named = {s.labels["state"] for s in family.samples}
    assert named == {"STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL"}, named


CRASHY_APP = APPS / "crashy_app.py"


class StateLog:
    """Every supervisor state the stats JSON and /metrics showed, per worker
    id, in order (consecutive repeats collapsed)."""

    def __init__(self, stats_port: int, metrics_port: int):
        self.stats_port, self.metrics_port = stats_port, metrics_port
        self.json: dict[int, list[tuple[str, int, str]]] = {}
        self.metrics: dict[str, list[str]] = {}

    def poll(self) -> dict:
        doc = raw_stats(self.stats_port)
        for w in doc["workers"]:
            seen = self.json.setdefault(w["id"], [])
            entry = (w["supervisor_state"], w["pid"], w["status"])
            if not seen or seen[-1] != entry:
                seen.append(entry)
        for worker, ones in worker_states(self.metrics_port).items():
            assert len(ones) == 1, (worker, ones)
            seen = self.metrics.setdefault(worker, [])
            if not seen or seen[-1] != ones[0]:
                seen.append(ones[0])
        return doc

    def json_states(self, wid: int) -> list[str]:
        return [state for state, _, _ in self.json.get(wid, [])]


def test_crash_loop_shows_backoff_in_stats_and_metrics(tmp_path):
    """Two workers; whichever got boot 2 crashes 0.1 s after it accepts, five
    boots in a row (a crash loop: BACKOFF 0.1, 0.2, 0.4, 0.8, 1.6 s). While
    it waits in BACKOFF it has no process, and the stats JSON still lists its
    id (pid 0, status "backoff", supervisor_state "BACKOFF") next to the
    healthy worker's RUNNING; /metrics shows the same. Then it is STARTING
    again, and finally RUNNING."""
    stats, metrics = free_port(), free_port()
    env = {"CRASHY_COUNTER": str(tmp_path / "boots"), "CRASHY_FROM": "2", "CRASHY_TIMES": "5", "CRASHY_AFTER_MS": "100"}
    with Server(
        ["--wsgi-file", str(CRASHY_APP), "--processes", "2", "--stats", f"127.0.0.1:{stats}", "--metrics", f"127.0.0.1:{metrics}"],
        env=env,
        name="crashloop",
    ):
        log = StateLog(stats, metrics)
        mixed = None
        deadline = time.time() + 30
        while time.time() < deadline:
            doc = log.poll()
            by_state = {w["supervisor_state"]: w for w in doc["workers"]}
            if mixed is None and set(by_state) == {"RUNNING", "BACKOFF"}:
                mixed = doc
            if mixed and [w["supervisor_state"] for w in doc["workers"]] == ["RUNNING", "RUNNING"]:
                break
            time.sleep(0.05)
        assert mixed, f"never saw one worker RUNNING and the other in BACKOFF: {log.json}"
        assert len(mixed["workers"]) == 2, json.dumps(mixed)
        waiting = next(w for w in mixed["workers"] if w["supervisor_state"] == "BACKOFF")
        serving = next(w for w in mixed["workers"] if w["supervisor_state"] == "RUNNING")
        assert waiting["pid"] == 0 and waiting["status"] == "backoff" and waiting["accepting"] == 0, waiting
        assert waiting["respawn_count"] > 1, waiting
        assert serving["pid"] > 0 and serving["accepting"] == 1, serving
        crashy = waiting["id"]
        states = log.json_states(crashy)
        assert "STARTING" in states and states[-1] == "RUNNING", log.json
        assert states.count("BACKOFF") >= 2, log.json
        # No RUNNING until the crashes are over: the crashy worker accepted
        # each time, but never lived the 1 s startsecs.
        assert "RUNNING" not in states[:-1], log.json
        assert log.json_states(3 - crashy)[-1] == "RUNNING", log.json
        # /metrics followed the same machine.
        assert "BACKOFF" in log.metrics[str(crashy)], log.metrics
        assert log.metrics[str(crashy)][-1] == "RUNNING", log.metrics
        assert log.metrics[str(3 - crashy)][-1] == "RUNNING", log.metrics


def test_reload_whose_new_worker_crashes_shows_backoff(tmp_path):
    """A HUP whose new worker crashes right after boot, 3 times: the stats
    show the new worker STARTING, then its id in BACKOFF (pid 0) while the
    old worker keeps serving, and finally RUNNING with the new pid."""
    stats, metrics = free_port(), free_port()
    env = {"CRASHY_COUNTER": str(tmp_path / "boots"), "CRASHY_FROM": "2", "CRASHY_TIMES": "3", "CRASHY_AFTER_MS": "100"}
    with Server(
        ["--wsgi-file", str(CRASHY_APP), "--processes", "1", "--stats", f"127.0.0.1:{stats}", "--metrics", f"127.0.0.1:{metrics}"],
        env=env,
        name="reloadcrash",
    ) as s:
        log = StateLog(stats, metrics)
        assert wait_for(lambda: [w["supervisor_state"] for w in log.poll()["workers"]] == ["RUNNING"], 5), log.json
        old = raw_stats(stats)["workers"][0]["pid"]
        log.json.clear()
        log.metrics.clear()
        s.signal(signal.SIGHUP)
        backoff_while_reloading = None
        deadline = time.time() + 30
        while time.time() < deadline:
            doc = log.poll()
            states = [(w["supervisor_state"], w["pid"]) for w in doc["workers"]]
            if doc["phase"] == "reloading" and states == [("BACKOFF", 0)]:
                backoff_while_reloading = doc
            if doc["phase"] == "running" and len(states) == 1 and states[0][0] == "RUNNING" and states[0][1] != old:
                break
            time.sleep(0.05)
        assert backoff_while_reloading, f"never saw the new worker in BACKOFF: {log.json}"
        w = backoff_while_reloading["workers"][0]
        assert w["id"] == 1 and w["status"] == "backoff", w
        # The first polls may still see the old worker, before the master
        # handled the HUP.
        states = [state for state, pid, _ in log.json[1] if pid != old]
        assert states[0] == "STARTING" and states[-1] == "RUNNING", log.json
        assert states.count("BACKOFF") >= 2, log.json
        pids = [pid for state, pid, _ in log.json[1] if state == "STARTING"]
        assert old not in pids and all(pids), log.json
        assert "BACKOFF" in log.metrics["1"] and log.metrics["1"][-1] == "RUNNING", log.metrics


def test_health_endpoints(srv):
    assert http_get(f"http://127.0.0.1:{srv.metrics_port}/health/live")[0] == 200
    assert wait_for(lambda: http_get(f"http://127.0.0.1:{srv.metrics_port}/health/ready")[0] == 200)
    assert http_get(f"http://127.0.0.1:{srv.metrics_port}/nope")[0] == 404


def test_stats_http_serves_json_and_metrics():
    stats = free_port()
    with Server(plain_args("--stats", f"127.0.0.1:{stats}", "--stats-http"), name="stats-http") as s:
        def with_workers():
            d = json.loads(http_get(f"http://127.0.0.1:{stats}/stats")[1])
            return d if d["workers"] else None

        doc = wait_for(with_workers)
        assert doc, "no workers in the stats document"
        assert doc["workers"][0]["pid"] in s.workers()
        assert http_get(f"http://127.0.0.1:{stats}/metrics")[0] == 200


def test_not_ready_while_draining():
    """Readiness turns 503 once TERM starts the drain."""
    metrics = free_port()
    import threading

    with Server(plain_args("--metrics", f"127.0.0.1:{metrics}"), name="ready") as s:
        assert wait_for(lambda: http_get(f"http://127.0.0.1:{metrics}/health/ready")[0] == 200)
        t = threading.Thread(target=lambda: urllib.request.urlopen(s.url + "/sleep?ms=2000", timeout=10).read())
        t.start()
        time.sleep(0.3)
        s.signal(signal.SIGTERM)
        deadline = time.time() + 3
        status = 200
        while time.time() < deadline and status == 200:
            status = http_get(f"http://127.0.0.1:{metrics}/health/ready", timeout=2)[0]
            time.sleep(0.1)
        assert status == 503
        t.join()


def test_uwsgitop_shows_the_workers(srv):
    """The real uwsgitop, in a pseudo-terminal, draws a row per worker."""
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TERM"] = "xterm"
        os.environ["LINES"], os.environ["COLUMNS"] = "40", "160"
        os.execv(str(VENV_TEST / "bin" / "python"), [str(VENV_TEST / "bin" / "python"), str(VENV_TEST / "bin" / "uwsgitop"), f"127.0.0.1:{srv.stats_port}"])
    screen = b""
    try:
        deadline = time.time() + 6
        while time.time() < deadline:
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                try:
                    screen += os.read(fd, 65536)
                except OSError:
                    break
            if b"WID" in screen and all(str(p).encode() in screen for p in srv.workers()):
                break
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
    assert b"WID" in screen, screen[-2000:]
    for p in srv.workers():
        assert str(p).encode() in screen, (p, screen[-2000:])


def test_sd_notify_ready_reloading_stopping(tmp_path):
    """systemd Type=notify: READY=1 once workers accept, RELOADING=1 then READY=1
    on HUP, STOPPING=1 on TERM."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(10)
    got: list[str] = []

    def expect(word: str) -> None:
        while True:
            msg = sock.recv(4096).decode()
            got.append(msg)
            if word in msg.split("\n"):
                return

    try:
        with Server(plain_args(), env={"NOTIFY_SOCKET": path}, name="notify") as s:
            expect("READY=1")
            s.signal(signal.SIGHUP)
            expect("RELOADING=1")
            expect("READY=1")
            s.signal(signal.SIGTERM)
            expect("STOPPING=1")
            assert s.wait_exit(15) == 0
    finally:
        sock.close()
    words = [w for m in got for w in m.split("\n") if w.endswith("=1")]
    assert words == ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"], got
