"""The master as a supervisor (issue 4): listeners (unix, abstract, inherited
LISTEN_FDS sockets, pidfile, vacuum, uid/gid), the lifecycle phases, signals
and the master fifo, zero-downtime reload under load, harakiri, recycling
(max-requests, reload-on-rss, touch-reload) and scaling (TTIN/TTOU, cheaper).

Everything runs the real binary with real signals and real load; every wait
is bounded, and every server is killed in teardown (server_factory).

Run:
    .venv-test/bin/python -m pytest tests/test_supervision.py -v -p no:cacheprovider --timeout=120
The reload-under-load figures are printed (add -s or -rP to see them).
"""

from __future__ import annotations

import grp
import http.client
import json
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from support.rawhttp import Conn, parse_responses, request_bytes
from support.server import APPS, LIVE, Server, clean_env, fifo_write, pid_alive, plain_args

OPS_APP = APPS / "ops_app.py"


def ops_args(*extra: str) -> list[str]:
    """Arguments serving tests/apps/ops_app.py."""
    return ["--wsgi-file", str(OPS_APP), *extra]


# -- small helpers ---------------------------------------------------------


def fetch(port: int, target: str = "/pid", timeout: float = 5.0):
    """One GET on a fresh connection (Connection: close); the Response."""
    with Conn(port, timeout=timeout) as conn:
        conn.send(request_bytes("GET", target, headers=[("Connection", "close")]))
        return conn.read_response()


def get_pid(srv, timeout: float = 5.0, target: str = "/pid") -> int:
    resp = fetch(srv.port, target, timeout)
    assert resp.status == 200, resp
    return int(resp.body.split(b"\n")[0])


def wait_for(pred, timeout: float, what: str, srv=None, interval: float = 0.05):
    """Poll pred() until it returns something truthy; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            tail = f"\n--- log tail ---\n{srv.log()[-4000:]}" if srv else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{tail}")
        time.sleep(interval)


def wait_children(srv, n: int, timeout: float = 10.0) -> list[int]:
    """Wait until the master has exactly n live children."""
    return wait_for(
        lambda: (lambda c: c if len(c) == n else None)(srv.workers()),
        timeout,
        f"{n} worker children (now {srv.workers()})",
        srv,
    )


def wait_new_pid(srv, old: set[int], timeout: float, target: str = "/pid") -> int:
    """Send requests until one is served by a pid not in old."""

    def probe():
        try:
            pid = get_pid(srv, timeout=2.0, target=target)
        except Exception:  # noqa: BLE001 - refused/reset while workers change
            return None
        return pid if pid not in old else None

    return wait_for(probe, timeout, f"a worker pid outside {sorted(old)} to serve", srv)


def phases(log: str) -> list[str]:
    return re.findall(r"phase: (\w+)", log)


def short_tmpdir() -> Path:
    """A short, world-traversable directory (unix socket paths are limited
    to 107 bytes; pytest's tmp_path can be long)."""
    d = Path(tempfile.mkdtemp(prefix="cz-"))
    d.chmod(0o755)
    return d


@pytest.fixture
def sockdir():
    d = short_tmpdir()
    yield d
    shutil.rmtree(d, ignore_errors=True)


def unix_get(address: str, target: str = "/pid", timeout: float = 5.0):
    """One GET over an AF_UNIX stream socket (a path, or "\\0name" for an
    abstract socket); returns the parsed Response."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(address)
        s.sendall(request_bytes("GET", target, headers=[("Connection", "close")]))
        data = b""
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    resps = parse_responses(data)
    assert resps, f"empty reply over {address!r}"
    return resps[0]


class Load:
    """A load generator: `keepalive` threads, each with one persistent
    http.client connection (it reconnects by itself after a response with
    `Connection: close`), and `fresh` threads opening a new connection per
    request.  Every request is recorded as (start, end, ok, pid, error, kind).
    """

    def __init__(self, port: int, path: str = "/sleep?ms=50", keepalive: int = 8, fresh: int = 2, timeout: float = 15.0):
        self.port = port
        self.path = path
        self.timeout = timeout
        self.records: list[tuple[float, float, bool, int | None, str | None, str]] = []
        self.reconnects = 0
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self._keepalive, daemon=True) for _ in range(keepalive)]
        self.threads += [threading.Thread(target=self._fresh, daemon=True) for _ in range(fresh)]

    def start(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def stop(self, timeout: float = 20.0) -> None:
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        alive = [t for t in self.threads if t.is_alive()]
        assert not alive, f"{len(alive)} load threads still blocked after {timeout}s"

    def _record(self, t0, ok, pid, err, kind):
        with self.lock:
            self.records.append((t0, time.monotonic(), ok, pid, err, kind))

    @staticmethod
    def _pid(body: bytes) -> int | None:
        try:
            return int(body.split(b"\n")[0])
        except ValueError:
            return None

    def _keepalive(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        while not self.stop_event.is_set():
            t0 = time.monotonic()
            try:
                conn.request("GET", self.path)
                resp = conn.getresponse()
                body = resp.read()
                ok = resp.status == 200
                self._record(t0, ok, self._pid(body) if ok else None, None if ok else f"status {resp.status}", "keepalive")
                if resp.will_close:
                    # http.client closed the socket; the next request reconnects.
                    with self.lock:
                        self.reconnects += 1
            except Exception as e:  # noqa: BLE001 - counted as a failure
                self._record(t0, False, None, repr(e), "keepalive")
                conn.close()
        conn.close()

    def _fresh(self):
        while not self.stop_event.is_set():
            t0 = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            try:
                conn.request("GET", self.path, headers={"Connection": "close"})
                resp = conn.getresponse()
                body = resp.read()
                ok = resp.status == 200
                self._record(t0, ok, self._pid(body) if ok else None, None if ok else f"status {resp.status}", "fresh")
            except Exception as e:  # noqa: BLE001
                self._record(t0, False, None, repr(e), "fresh")
            finally:
                conn.close()

    # -- results ------------------------------------------------------------
    def snapshot(self):
        with self.lock:
            return list(self.records)

    def failures(self):
        return [r for r in self.snapshot() if not r[2]]

    def max_latency(self) -> float:
        recs = self.snapshot()
        return max((r[1] - r[0] for r in recs), default=0.0)


# -- lifecycle phases ------------------------------------------------------


def test_phase_sequence_start_hup_term(server_factory):
    """Issue 4 item 8: Bootstrap -> Running -> (HUP) Reloading -> Running ->
    (TERM) Draining -> Stopped, exactly, and exit 0."""
    s = server_factory(plain_args("--processes", "2"))
    wait_children(s, 2)
    s.wait_log(r"phase: Running", timeout=10)
    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_log(r"phase: Reloading.*phase: Running", since=mark, timeout=15, flags=re.S)
    s.signal(signal.SIGTERM)
    assert s.wait_exit(15) == 0
    assert phases(s.log()) == ["Bootstrap", "Running", "Reloading", "Running", "Draining", "Stopped"], s.log()


def test_phase_sequence_sigint(server_factory):
    """INT is a fast stop: Bootstrap -> Running -> Stopped (no Draining)."""
    s = server_factory(plain_args("--processes", "1"))
    s.wait_log(r"phase: Running", timeout=10)
    s.signal(signal.SIGINT)
    s.wait_exit(10)
    assert phases(s.log()) == ["Bootstrap", "Running", "Stopped"], s.log()


# -- worker death under load -----------------------------------------------


def test_kill9_worker_under_load(server_factory):
    """Issue 4 item 2: a worker SIGKILLed under load is logged with the
    signal's name, a new worker serves within 2 s, and the only failed
    requests are ones that were in flight when it died."""
    s = server_factory(plain_args("--processes", "2", "--threads", "2"))
    old = set(wait_children(s, 2))
    clients = 4
    load = Load(s.port, "/sleep?ms=50", keepalive=0, fresh=clients).start()
    try:
        time.sleep(1.0)
        before = load.snapshot()
        assert before and all(r[2] for r in before), f"failures before the kill: {load.failures()[:5]}"
        assert {r[3] for r in before} == old, "both workers should be serving before the kill"
        victim = min(old)
        mark = s.mark()
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: not pid_alive(victim), 2.0, f"pid {victim} to die", s, interval=0.001)
        dead_at = time.monotonic()

        def new_served():
            for r in load.snapshot():
                if r[2] and r[3] not in old and r[3] is not None:
                    return r
            return None

        first_new = wait_for(new_served, 3.0, "a new worker pid to serve a load request", s, interval=0.01)
        respawn_s = first_new[1] - killed_at
        time.sleep(1.0)
    finally:
        load.stop()
    s.wait_log(rf"worker \d+ \(pid: {victim}\) was killed by SIGKILL; respawning", since=mark, timeout=2)
    recs = load.snapshot()
    fails = [r for r in recs if not r[2]]
    print(f"\nkill -9 under load: {len(recs)} requests, {len(fails)} failed, new worker served after {respawn_s:.3f}s")
    assert respawn_s <= 2.0, f"new worker first served {respawn_s:.2f}s after the kill"
    late = [r for r in fails if r[0] > dead_at]
    assert not late, f"requests started after the worker died failed: {late[:5]}"
    early = [r for r in fails if r[1] < killed_at]
    assert not early, f"requests that ended before the kill failed: {early[:5]}"
    # Each client has one request at a time, so at most `clients` requests can
    # have been in flight on the victim (it may accept more connections than
    # it has threads, so its thread count is not a bound).
    assert len(fails) <= clients, fails
    assert s.proc.poll() is None
    after = wait_children(s, 2, timeout=3)
    assert victim not in after


# -- worker states (the supervision state machine) ------------------------

CRASHY_APP = APPS / "crashy_app.py"


def ctl_rows(sock: Path) -> dict[str, dict]:
    """`capataz ctl status --json`, by process name ({} if not answering)."""
    from support.ctl import ctl

    r = ctl(sock, "status", "--json", timeout=10)
    if r.returncode not in (0, 3) or not r.stdout:
        return {}
    return {p["name"]: p for p in json.loads(r.stdout)["processes"]}


def test_worker_crash_loop_backs_off_then_runs(server_factory, sockdir):
    """Issue 4 item 2: a worker that crashes right after boot (4 times here)
    is STARTING, then BACKOFF with growing delays (0.1, 0.2, 0.4, 0.8 s),
    shown in the log and in `ctl status`; once it stops crashing it is
    RUNNING and serves. The crashes happen after the worker accepted, so
    RUNNING really waits for startsecs too."""
    sock = sockdir / "ctl.sock"
    counter = sockdir / "boots"
    s = server_factory(
        ["--wsgi-file", str(CRASHY_APP), "--processes", "1", "--control-socket", str(sock)],
        env={"CRASHY_COUNTER": str(counter), "CRASHY_TIMES": "4", "CRASHY_AFTER_MS": "100"},
        wait=False,
    )
    seen: list[tuple[str, str]] = []

    def running():
        row = ctl_rows(sock).get("web:1")
        if row and (not seen or seen[-1][0] != row["state"]):
            seen.append((row["state"], row["description"]))
        return row if row and row["state"] == "RUNNING" else None

    row = wait_for(running, 20, "web:1 to be RUNNING", s)
    states = [state for state, _ in seen]
    assert "BACKOFF" in states, f"never saw BACKOFF in ctl status: {seen}"
    assert "exited too quickly (exited with code 3)" in next(d for st, d in seen if st == "BACKOFF"), seen
    assert states[-1] == "RUNNING" and "RUNNING" not in states[:-1], seen
    log = s.log()
    waits = [float(w) for w in re.findall(r"worker 1 \(pid: \d+\) exited with code 3; respawning in ([\d.]+) s \(BACKOFF", log)]
    assert waits == [0.1, 0.2, 0.4, 0.8], f"backoff delays {waits}\n{log[-3000:]}"
    assert re.search(rf"worker 1 \(pid: {row['pid']}\) is RUNNING", log), log[-2000:]
    assert len(re.findall(r"spawned worker 1 ", log)) == 5
    assert fetch(s.port, "/boots").body == b"5"
    assert get_pid(s) == row["pid"]
    assert s.proc.poll() is None


def test_running_worker_killed_by_signal_is_named_and_respawned_at_once(server_factory, sockdir):
    """Issue 4 item 2: a RUNNING worker killed by a signal is EXITED: the
    log names the signal and it is respawned at once (no backoff), then
    STARTING and RUNNING again."""
    sock = sockdir / "ctl.sock"
    s = server_factory(plain_args("--processes", "1", "--control-socket", str(sock)))
    row = wait_for(lambda: (ctl_rows(sock).get("web:1") or {}).get("state") == "RUNNING" and ctl_rows(sock)["web:1"], 10, "RUNNING", s)
    victim = row["pid"]
    mark = s.mark()
    os.kill(victim, signal.SIGABRT)  # what a C extension's abort() does
    s.wait_log(rf"worker 1 \(pid: {victim}\) was killed by SIGABRT; respawning \(EXITED after", since=mark, timeout=5)
    spawned = s.wait_log(r"spawned worker 1 \(pid: (\d+)\)", since=mark, timeout=2)
    text = s.log_since(mark)
    assert "BACKOFF" not in text, text
    new = int(spawned.group(1))
    assert new != victim
    row = wait_for(lambda: (lambda r: r if r.get("pid") == new and r.get("state") == "RUNNING" else None)(ctl_rows(sock).get("web:1") or {}), 10, "the new worker RUNNING", s)
    s.wait_log(rf"worker 1 \(pid: {new}\) is RUNNING", since=mark, timeout=2)
    assert get_pid(s) == new


def test_reload_waits_until_the_new_generation_is_running(server_factory, sockdir):
    """A HUP whose new worker crashes right after boot (3 times) does not
    drain the old one: it keeps serving until the new worker is RUNNING."""
    counter = sockdir / "boots"
    s = server_factory(
        ["--wsgi-file", str(CRASHY_APP), "--processes", "1"],
        env={"CRASHY_COUNTER": str(counter), "CRASHY_FROM": "2", "CRASHY_TIMES": "3", "CRASHY_AFTER_MS": "100"},
    )
    old = get_pid(s)
    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_log(r"respawning in 0\.4 s \(BACKOFF", since=mark, timeout=10)
    assert "new workers accepting; draining" not in s.log_since(mark), s.log_since(mark)
    assert pid_alive(old)
    s.wait_log(r"new workers accepting; draining 1 old worker", since=mark, timeout=15)
    log = s.log_since(mark)
    assert len(re.findall(r"exited with code 3; respawning in", log)) == 3, log
    assert log.index("is RUNNING") < log.index("new workers accepting; draining"), log
    wait_for(lambda: not pid_alive(old), 10, f"the old worker {old} to exit", s)
    assert fetch(s.port, "/boots").body == b"5"


# -- zero-downtime reload --------------------------------------------------


def test_hup_twice_under_load_zero_failures(server_factory):
    """Issue 4 item 4: under a steady load of 50 ms requests (8 keep-alive
    clients and 2 fresh-connection clients), two HUPs 2 s apart give 0 failed
    requests and 0 connection errors; afterwards only new pids serve."""
    s = server_factory(plain_args("--processes", "2", "--threads", "4"))
    gen0 = set(wait_children(s, 2))
    load = Load(s.port, "/sleep?ms=50", keepalive=8, fresh=2).start()
    try:
        time.sleep(1.0)
        mark1 = s.mark()
        s.signal(signal.SIGHUP)
        hup1 = time.monotonic()
        s.wait_log(r"new workers accepting; draining", since=mark1, timeout=15)
        time.sleep(max(0.0, 2.0 - (time.monotonic() - hup1)))
        gen1 = set(s.workers()) - gen0
        mark2 = s.mark()
        s.signal(signal.SIGHUP)
        s.wait_log(r"new workers accepting; draining", since=mark2, timeout=15)
        previous = gen0 | gen1
        wait_for(lambda: not any(pid_alive(p) for p in previous), 15, "the old generations to exit", s)
        clean_at = time.monotonic()
        time.sleep(2.0)
    finally:
        load.stop()
    recs = load.snapshot()
    fails = [r for r in recs if not r[2]]
    conn_errors = [r for r in fails if r[4] and not r[4].startswith("status")]
    ok_latency = max((r[1] - r[0] for r in recs if r[2]), default=0.0)
    kinds = Counter(f"{r[5]}: {r[4]}" for r in fails)
    print(
        f"\nHUP x2 under load: requests sent={len(recs)} failed={len(fails)} "
        f"connection_errors={len(conn_errors)} longest_latency={load.max_latency() * 1000:.0f} ms "
        f"(successful: {ok_latency * 1000:.0f} ms) "
        f"reconnects_after_Connection_close={load.reconnects} failure_kinds={dict(kinds)}"
    )
    assert len(recs) > 100, f"the load generator sent only {len(recs)} requests"
    assert not fails, f"{len(fails)} failed requests, e.g. {[(r[4], r[5]) for r in fails[:5]]}"
    assert len(gen1) == 2 and not (gen1 & gen0), f"gen0={gen0} gen1={gen1}"
    after = {r[3] for r in recs if r[0] > clean_at}
    assert after, "no request was served after the reload"
    assert not (after & previous), f"old pids served after the reload: {after & previous}"
    assert len(phases(s.log_since(mark1))) >= 4 and phases(s.log_since(mark1)).count("Reloading") == 2
    final = set(wait_children(s, 2, timeout=5))
    assert not (final & previous)


def test_reload_serves_new_code(server_factory, tmp_path):
    """Issue 4 item 4: new workers import the code on disk, so an edit to the
    app is visible once the reload says the new workers are accepting."""
    app = tmp_path / "versioned_app.py"
    template = (
        "BODY = {body!r}\n\n"
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', str(len(BODY)))])\n"
        "    return [BODY]\n"
    )
    app.write_text(template.format(body=b"generation-one"))
    s = server_factory(["--wsgi-file", str(app), "--processes", "2"])
    for _ in range(4):
        assert fetch(s.port, "/").body == b"generation-one"
    # A different length, so even a stale-bytecode check keyed on size sees the edit.
    app.write_text(template.format(body=b"generation-two-edited"))
    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_log(r"new workers accepting; draining", since=mark, timeout=15)
    bodies = [fetch(s.port, "/").body for _ in range(10)]
    assert bodies == [b"generation-two-edited"] * 10, bodies


# -- a reload whose new code cannot be loaded ------------------------------

VERSIONED_APP = (
    "import os\n"
    "{prelude}"
    "VERSION = {version!r}\n\n"
    "def application(environ, start_response):\n"
    "    body = ('%d\\n' % os.getpid()).encode() + VERSION\n"
    "    start_response('200 OK', [('Content-Type', 'text/plain'), ('Content-Length', str(len(body)))])\n"
    "    return [body]\n"
)
BROKEN_PRELUDE = "raise RuntimeError('deploy typo: broken on purpose')\n"


def versioned_app(path: Path, version: bytes, broken: bool = False) -> None:
    """Writes an app answering "PID\\nVERSION"; `broken` raises at import.
    Atomically, so a worker respawned meanwhile never reads half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(VERSIONED_APP.format(prelude=BROKEN_PRELUDE if broken else "", version=version))
    os.replace(tmp, path)


class BodyLoad:
    """A small load: `clients` threads, each sending GET / on a keep-alive
    connection (reconnecting after an error), recording (ok, pid, version,
    error) for every request."""

    def __init__(self, port: int, clients: int = 3):
        self.port = port
        self.records: list[tuple[bool, int | None, bytes | None, str | None]] = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def _run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop_event.is_set():
            try:
                conn.request("GET", "/")
                resp = conn.getresponse()
                body = resp.read()
                pid, _, version = body.partition(b"\n")
                rec = (resp.status == 200, int(pid) if resp.status == 200 else None, version, None)
            except Exception as e:  # noqa: BLE001 - counted as a failure
                rec = (False, None, None, repr(e))
                conn.close()
            with self.lock:
                self.records.append(rec)
            time.sleep(0.01)
        conn.close()

    def stop(self, timeout: float = 15.0) -> list:
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self.threads), "load threads still blocked"
        with self.lock:
            return list(self.records)


def test_reload_that_cannot_load_the_app_is_aborted(server_factory, tmp_path):
    """A HUP after a deploy with a typo (the new code raises at import) does
    not take the site down: the new worker logs its traceback, the reload is
    aborted with a clear error, the old workers (never told to drain) keep
    serving the old code with 0 failed requests, and the master stays up in
    phase Running. Once the code is fixed, the next HUP reloads normally."""
    app = tmp_path / "deploy_app.py"
    versioned_app(app, b"old-code")
    s = server_factory(["--wsgi-file", str(app), "--processes", "2", "--threads", "2"])
    master = s.pid
    old = set(s.wait_workers_loaded(2))
    load = BodyLoad(s.port)
    try:
        time.sleep(0.5)
        versioned_app(app, b"new-code-with-a-typo", broken=True)
        mark = s.mark()
        s.signal(signal.SIGHUP)
        s.wait_log(r"reload aborted: worker \d+ \(pid: \d+\) cannot load the app", since=mark, timeout=15)
        # The retired new workers (if any got that far) are gone; the old ones remain.
        wait_for(lambda: set(s.workers()) == old, 10, f"only the old workers {sorted(old)} to remain", s)
        time.sleep(1.5)  # keep serving under load after the abort
    finally:
        recs = load.stop()
    log = s.log_since(mark)
    fails = [r for r in recs if not r[0]]
    print(f"\naborted reload under load: requests={len(recs)} failed={len(fails)}")
    assert len(recs) > 50, f"the load sent only {len(recs)} requests"
    assert not fails, f"{len(fails)} failed requests, e.g. {fails[:5]}"
    assert {r[2] for r in recs} == {b"old-code"}, Counter(r[2] for r in recs)
    assert {r[1] for r in recs} <= old, f"served by {set(r[1] for r in recs) - old}, not the old workers"
    assert "Traceback (most recent call last)" in log, log[-4000:]
    assert "RuntimeError: deploy typo: broken on purpose" in log, log[-4000:]
    assert "the previous 2 worker(s) keep serving" in log, log[-4000:]
    assert "new workers accepting; draining" not in log, log[-4000:]
    assert "FATAL" not in log, log[-4000:]
    assert phases(log) == ["Reloading", "Running"], phases(log)
    assert s.proc.poll() is None and s.pid == master and pid_alive(master)
    assert set(s.workers()) == old
    assert all(pid_alive(p) for p in old)

    # Fixed: the next HUP reloads as usual.
    versioned_app(app, b"fixed-new-code!")
    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_log(r"new workers accepting; draining 2 old worker", since=mark, timeout=15)
    bodies = {fetch(s.port, "/").body.partition(b"\n")[2] for _ in range(6)}
    assert bodies == {b"fixed-new-code!"}, bodies
    wait_for(lambda: not any(pid_alive(p) for p in old), 15, "the old workers to exit", s)
    assert phases(s.log_since(mark)) == ["Reloading", "Running"]
    assert s.proc.poll() is None


def test_kept_worker_respawn_that_cannot_load_the_app_backs_off(server_factory, tmp_path):
    """After an aborted reload the broken code is still on disk: a kept
    worker that dies is respawned, its successor cannot load the app either,
    and that is logged and retried with backoff while the other worker keeps
    serving (no exit). A HUP once the code is fixed brings both back."""
    app = tmp_path / "deploy_app.py"
    versioned_app(app, b"old-code")
    s = server_factory(["--wsgi-file", str(app), "--processes", "2"])
    old = s.wait_workers_loaded(2)
    versioned_app(app, b"broken", broken=True)
    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_log(r"reload aborted", since=mark, timeout=15)
    wait_for(lambda: set(s.workers()) == set(old), 10, "only the old workers to remain", s)
    victim, survivor = old
    mark = s.mark()
    os.kill(victim, signal.SIGKILL)
    s.wait_log(r"was killed by SIGKILL; respawning", since=mark, timeout=5)
    s.wait_log(
        r"worker \d+ \(pid: \d+\) cannot load the app \(see the traceback above\); "
        r"retrying in 0\.1 s \(BACKOFF, failed start 1\)",
        since=mark,
        timeout=10,
    )
    s.wait_log(r"retrying in 0\.2 s \(BACKOFF, failed start 2\)", since=mark, timeout=10)
    for _ in range(10):
        resp = fetch(s.port, "/")
        assert resp.status == 200 and resp.body == f"{survivor}\nold-code".encode(), resp
    log = s.log_since(mark)
    assert "RuntimeError: deploy typo: broken on purpose" in log
    assert "FATAL" not in log and s.proc.poll() is None, log[-4000:]
    assert "reload aborted" not in log

    versioned_app(app, b"fixed")
    mark = s.mark()
    s.signal(signal.SIGHUP)
    # 1 old worker, or 2 if a BACKOFF retry started just before the fix.
    s.wait_log(r"new workers accepting; draining [12] old worker", since=mark, timeout=20)
    new = set(wait_for(lambda: (lambda w: w if len(w) == 2 and survivor not in w else None)(s.workers()), 15, "two new workers", s))
    bodies = {fetch(s.port, "/").body for _ in range(6)}
    assert {b.partition(b"\n")[2] for b in bodies} == {b"fixed"}, bodies
    assert {int(b.partition(b"\n")[0]) for b in bodies} <= new


def test_term_completes_slow_request(server_factory):
    """Issue 4 item 4: a request in flight when TERM arrives completes with
    its full 200 response, then the master exits 0."""
    s = server_factory(plain_args("--processes", "2", "--threads", "2"))
    mark = s.mark()
    result = {}

    def run():
        try:
            started = time.monotonic()
            result["resp"] = fetch(s.port, "/sleep?ms=2000&tag=termslow", timeout=15)
            result["elapsed"] = time.monotonic() - started
        except Exception as e:  # noqa: BLE001
            result["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    s.wait_log(r"sleep-start termslow", since=mark, timeout=5)
    workers = s.workers()
    s.signal(signal.SIGTERM)
    t.join(15)
    assert not t.is_alive(), "the slow request never finished"
    assert "error" not in result, result.get("error")
    resp = result["resp"]
    assert resp.status == 200 and resp.complete, resp
    assert int(resp.body) in workers
    assert result["elapsed"] >= 1.9
    assert s.wait_exit(15) == 0
    assert "Draining" in phases(s.log())


# -- harakiri --------------------------------------------------------------


def test_harakiri_kills_stuck_request_with_traceback(server_factory):
    """Issue 4 item 5: a request past `harakiri` seconds is logged (worker,
    pid, method, URI, elapsed), its Python traceback is logged, the worker is
    SIGKILLed and respawned, the client's connection is closed without a
    200, and a request on the other worker meanwhile is unaffected."""
    s = server_factory(ops_args("--harakiri", "2", "--processes", "2", "--threads", "1"))
    old = set(wait_children(s, 2))
    mark = s.mark()
    conn = Conn(s.port, timeout=15)
    conn.send(request_bytes("GET", "/sleep?s=30", headers=[("Connection", "close")]))
    sent_at = time.monotonic()
    try:
        time.sleep(0.5)
        # The other worker keeps answering while one is stuck.
        fast = []
        while time.monotonic() - sent_at < 1.5:
            started = time.monotonic()
            fast.append((get_pid(s, timeout=3), time.monotonic() - started))
            time.sleep(0.05)
        closed = conn.wait_closed(timeout=2 + 1 + 1 + 2)  # harakiri + check tick + grace + slack
        closed_after = time.monotonic() - sent_at
        got = conn.buf
    finally:
        conn.close()
    assert closed, f"the stuck request's connection was not closed within {closed_after:.1f}s; got {got[:200]!r}"
    assert not got.startswith(b"HTTP/1.1 200") and not got.startswith(b"HTTP/1.0 200"), got[:300]
    if got:
        assert got.startswith(b"HTTP/1.1 504") or got.startswith(b"HTTP/1.0 504"), got[:300]
    assert closed_after >= 1.8, f"harakiri fired after only {closed_after:.2f}s"

    log = s.wait_log(
        r"HARAKIRI: worker (\d+) \(pid: (\d+)\) core 0 \(thread 0x[0-9a-fA-F]+\): GET /sleep\?s=30 running for",
        since=mark,
        timeout=3,
    )
    wid, stuck = log.group(1), int(log.group(2))
    assert stuck in old
    s.wait_log(rf"worker {wid} \(pid: {stuck}\) was killed by SIGKILL; respawning", since=mark, timeout=5)
    text = s.log_since(mark)
    h = text.index("HARAKIRI:")
    k = text.index(f"(pid: {stuck}) was killed by SIGKILL")
    between = text[h:k]
    assert re.search(r"Thread 0x[0-9a-fA-F]+.*File \"[^\"]*ops_app\.py\", line \d+ in stuck_here", between, re.S), (
        f"no Python traceback of the stuck thread between HARAKIRI and the kill:\n{between[-3000:]}"
    )

    other = old - {stuck}
    assert fast and all(pid in other for pid, _ in fast), f"fast requests during the stall: {fast}"
    assert all(el < 1.0 for _, el in fast), f"fast requests were slow during the stall: {fast}"
    new = wait_new_pid(s, old, timeout=5)
    assert new != stuck
    assert not pid_alive(stuck)
    wait_children(s, 2, timeout=5)


# -- recycling -------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [[], ["--max-requests-delta", "3"], ["--max-requests-jitter", "3"]],
    ids=["plain", "delta", "jitter"],
)
def test_max_requests_recycles_without_failures(server_factory, extra):
    """Issue 4 item 6: max-requests recycles workers gracefully: 40
    sequential requests all succeed while the pids change."""
    s = server_factory(plain_args("--max-requests", "5", "--processes", "2", *extra))
    pids = []
    for i in range(40):
        resp = fetch(s.port, "/pid", timeout=5)
        assert resp.status == 200, (i, resp)
        pids.append(int(resp.body))
    assert len(set(pids)) > 2, f"only pids {set(pids)} served 40 requests with max-requests 5"
    s.wait_log(r"max-requests reached \(\d+ requests\); recycling this worker", timeout=5)
    if not extra:
        s.wait_log(r"max-requests reached \(5 requests\); recycling this worker", timeout=5)
    assert s.proc.poll() is None


def test_reload_on_rss(server_factory):
    """Issue 4 item 6: a worker whose RSS passes reload-on-rss is recycled
    gracefully after its request, and a new pid serves; nothing fails."""
    s = server_factory(ops_args("--reload-on-rss", "64", "--processes", "1"))
    first = get_pid(s)
    time.sleep(1.5)
    assert [get_pid(s) for _ in range(3)] == [first] * 3, "the worker recycled before allocating"
    mark = s.mark()
    resp = fetch(s.port, "/alloc?mb=100", timeout=20)
    assert resp.status == 200 and int(resp.body) == first, resp
    s.wait_log(r"exceeds reload-on-rss = 64; recycling this worker", since=mark, timeout=3)
    failures = []
    deadline = time.monotonic() + 5
    new = None
    while time.monotonic() < deadline:
        try:
            pid = get_pid(s, timeout=3)
        except Exception as e:  # noqa: BLE001
            failures.append(repr(e))
            continue
        if pid != first:
            new = pid
            break
        time.sleep(0.05)
    assert not failures, failures[:5]
    assert new is not None, f"no new worker served within 5 s\n{s.log_since(mark)[-3000:]}"
    wait_for(lambda: not pid_alive(first), 10, f"the recycled worker {first} to exit", s)
    assert s.workers() == [new]


def test_touch_reload(server_factory, tmp_path):
    """Issue 4 item 6: a new mtime on a touch-reload file means a graceful
    reload: logged, and a new generation serves."""
    trigger = tmp_path / "reload.trigger"
    trigger.write_text("x")
    s = server_factory(plain_args("--touch-reload", str(trigger), "--processes", "2"))
    old = set(wait_children(s, 2))
    time.sleep(1.2)  # let the watcher see the original mtime at least once
    assert set(s.workers()) == old, "reloaded without a touch"
    mark = s.mark()
    st = trigger.stat()
    os.utime(trigger, (st.st_atime + 10, st.st_mtime + 10))
    s.wait_log(rf"touch-reload: {re.escape(str(trigger))} changed", since=mark, timeout=5)
    wait_new_pid(s, old, timeout=10)
    wait_for(lambda: not (set(s.workers()) & old) and len(s.workers()) == 2, 15, "the old generation to exit", s)


# -- scaling ---------------------------------------------------------------


def test_ttin_ttou(server_factory):
    """Issue 4 item 7: TTIN adds a worker, TTOU retires one; both logged."""
    s = server_factory(plain_args("--processes", "1"))
    wait_children(s, 1)
    mark = s.mark()
    s.signal(signal.SIGTTIN)
    s.wait_log(r"SIGTTIN: scaling from 1 to 2 worker\(s\)", since=mark, timeout=5)
    wait_children(s, 2)
    s.signal(signal.SIGTTIN)
    s.wait_log(r"SIGTTIN: scaling from 2 to 3 worker\(s\)", since=mark, timeout=5)
    three = wait_children(s, 3)
    # ps agrees with /proc.
    out = subprocess.run(["ps", "--ppid", str(s.pid), "-o", "pid="], capture_output=True, text=True, timeout=10)
    assert sorted(int(x) for x in out.stdout.split()) == three
    s.signal(signal.SIGTTOU)
    s.wait_log(r"SIGTTOU: scaling from 3 to 2 worker\(s\)", since=mark, timeout=5)
    two = wait_children(s, 2)
    assert set(two) < set(three)
    for _ in range(5):
        assert get_pid(s) in two


def test_cheaper_scales_up_under_load_and_down_when_idle(server_factory):
    """Issue 4 item 7: with cheaper 1 and processes 3, one worker starts;
    sustained load on every worker adds workers up to 3; once idle, they
    are retired back down to 1. Every decision is logged."""
    s = server_factory(plain_args("--processes", "3", "--cheaper", "1", "--threads", "1"))
    wait_children(s, 1)
    time.sleep(1.5)
    assert len(s.workers()) == 1, "cheaper spawned workers without load"
    mark = s.mark()
    load = Load(s.port, "/sleep?ms=200", keepalive=0, fresh=6, timeout=20).start()
    try:
        s.wait_log(r"cheaper: all workers busy: scaling from 1 to 2 worker\(s\)", since=mark, timeout=8)
        s.wait_log(r"cheaper: all workers busy: scaling from 2 to 3 worker\(s\)", since=mark, timeout=12)
        wait_children(s, 3, timeout=5)
    finally:
        load.stop()
    fails = load.failures()
    assert not fails, f"{len(fails)} requests failed while scaling up: {fails[:5]}"
    idle_mark = s.mark()
    s.wait_log(r"cheaper: workers idle: scaling from", since=idle_mark, timeout=30)
    wait_children(s, 1, timeout=40)
    assert s.proc.poll() is None
    assert get_pid(s) in s.workers()


# -- listeners -------------------------------------------------------------


def test_unix_socket_chmod_and_request(server_factory, sockdir):
    """Issue 4 item 1: `--http PATH` serves HTTP on a unix socket whose mode
    is --chmod-socket's."""
    path = sockdir / "app.sock"
    s = server_factory(plain_args("--http", str(path), "--chmod-socket", "660", "--processes", "1"))
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660, oct(stat.S_IMODE(st.st_mode))
    resp = unix_get(str(path), "/pid")
    assert resp.status == 200 and int(resp.body) in s.workers(), resp
    env = json.loads(unix_get(str(path), "/environ").body)
    assert env["REMOTE_ADDR"][0] == "str", env.get("REMOTE_ADDR")


@pytest.mark.parametrize("position", ["last", "before-option"])
def test_bare_chmod_socket_means_666(server_factory, sockdir, position):
    """A bare `chmod-socket` (no value) means 666, whether it is the last
    argument or followed by another option."""
    path = sockdir / "app.sock"
    if position == "last":
        args = plain_args("--http", str(path), "--chmod-socket")
    else:
        args = plain_args("--http", str(path), "--chmod-socket", "--processes", "1")
    server_factory(args)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666, oct(stat.S_IMODE(os.stat(path).st_mode))
    assert unix_get(str(path), "/").body == b"ok"


def test_vacuum_removes_socket_and_pidfile(server_factory, sockdir):
    """Issue 4 item 1: --pidfile holds the master pid; with --vacuum both the
    unix socket and the pidfile are removed on exit."""
    path = sockdir / "app.sock"
    pidfile = sockdir / "capataz.pid"
    s = server_factory(plain_args("--http", str(path), "--pidfile", str(pidfile), "--vacuum"))
    assert int(pidfile.read_text().strip()) == s.pid
    assert unix_get(str(path), "/").body == b"ok"
    s.signal(signal.SIGTERM)
    assert s.wait_exit(15) == 0
    assert not path.exists(), "vacuum left the unix socket behind"
    assert not pidfile.exists(), "vacuum left the pidfile behind"


def test_no_vacuum_leaves_socket(server_factory, sockdir):
    """Without --vacuum the socket file stays after exit."""
    path = sockdir / "app.sock"
    pidfile = sockdir / "capataz.pid"
    s = server_factory(plain_args("--http", str(path), "--pidfile", str(pidfile)))
    assert int(pidfile.read_text().strip()) == s.pid
    s.signal(signal.SIGTERM)
    assert s.wait_exit(15) == 0
    assert path.exists(), "the unix socket was removed without --vacuum"


def test_abstract_socket(server_factory):
    """Issue 4 item 1: `@name` is a Linux abstract unix socket."""
    name = f"capataz-test-{uuid.uuid4().hex[:12]}"
    s = server_factory(plain_args("--http", f"@{name}", "--processes", "1"))
    resp = unix_get("\0" + name, "/pid")
    assert resp.status == 200 and int(resp.body) in s.workers(), resp
    assert not any(p.name.startswith("@") for p in s.workdir.iterdir()), "made a file instead of an abstract socket"


class InheritedSocketServer(Server):
    """A Server started the way systemd socket activation starts it: the
    listening socket `sock` lands on fd 3, LISTEN_FDS=1, LISTEN_PID=its pid."""

    def __init__(self, sock: socket.socket, args, **kw):
        self.inherited = sock
        super().__init__(args, port=sock.getsockname()[1], **kw)

    def start(self, wait: bool = True, ready_timeout: float = 20.0) -> None:
        fd = self.inherited.fileno()
        wanted = clean_env({"LISTEN_FDS": "1"})

        def preexec():
            os.dup2(fd, 3)  # inheritable: survives the exec
            os.set_inheritable(3, True)
            # env=None, so the exec uses this process's environment.
            for k in list(os.environ):
                if k not in wanted:
                    del os.environ[k]
            os.environ.update(wanted)
            os.environ["LISTEN_PID"] = str(os.getpid())

        self._logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv(),
            cwd=self.workdir,
            env=None,
            stdin=subprocess.DEVNULL,
            stdout=self._logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=False,  # close_fds would close fd 3 after preexec_fn
            preexec_fn=preexec,
        )
        LIVE.append(self)
        if wait:
            self.wait_ready(ready_timeout)


def test_listen_fds_socket_activation(tmp_path):
    """Issue 4 item 1: with LISTEN_FDS/LISTEN_PID, capataz serves on the
    inherited fd 3. The test keeps that port bound and listening (no
    SO_REUSEPORT), so capataz could not have bound it itself."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv = None
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        srv = InheritedSocketServer(sock, plain_args("--processes", "2"), workdir=tmp_path / "srv")
        srv.wait_log(r"using inherited socket", timeout=5)
        workers = set(wait_children(srv, 2))
        for _ in range(10):
            assert get_pid(srv) in workers
        assert srv.proc.poll() is None
        log = srv.log()
        assert "in use" not in log.lower(), log
        # Control: without the inherited fd, capataz cannot bind the port we
        # hold (SO_REUSEADDR does not allow binding a listening port), so the
        # requests above can only have been served through fd 3.
        control = Server(plain_args(), port=srv.port, wait=False, workdir=tmp_path / "control", name="control")
        try:
            assert control.wait_exit(15) != 0, control.log()
        finally:
            control.stop()
    finally:
        if srv is not None:
            srv.stop()
        sock.close()


# -- privileges ------------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="uid/gid tests need root (the suite is not running as root)")


def _nogroup() -> str:
    for name in ("nogroup", "nobody"):
        try:
            grp.getgrnam(name)
            return name
        except KeyError:
            pass
    pytest.fail("neither group nogroup nor nobody exists")


def _free_privileged_port() -> int:
    for port in range(900, 1000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    pytest.fail("no free port in 900-999")


@needs_root
def test_uid_gid_drop_after_binding(server_factory):
    """Issue 4 item 1: --uid/--gid drop privileges after binding: a port
    below 1024 is served by workers running as nobody/nogroup."""
    group = _nogroup()
    uid = pwd.getpwnam("nobody").pw_uid
    gid = grp.getgrnam(group).gr_gid
    workdir = short_tmpdir()  # readable by nobody
    try:
        port = _free_privileged_port()
        s = server_factory(ops_args("--uid", "nobody", "--gid", group, "--processes", "1"), port=port, workdir=workdir)
        ids = json.loads(fetch(s.port, "/ids").body)
        assert ids["uid"] == uid and ids["euid"] == uid, ids
        assert ids["gid"] == gid and ids["egid"] == gid, ids
        with open(f"/proc/{ids['pid']}/status") as f:
            status = f.read()
        assert re.search(rf"^Uid:\s+{uid}\s+{uid}\s+{uid}\s+{uid}$", status, re.M), status
        assert s.proc.poll() is None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@needs_root
def test_vacuum_after_dropping_privileges_reports_what_it_could_not_remove(server_factory):
    """The pidfile is written as root in a root-owned directory; after the
    drop to nobody, vacuum cannot unlink it and must say so, not claim it did."""
    group = _nogroup()
    workdir = short_tmpdir()
    try:
        run = Path(workdir) / "run"
        run.mkdir(mode=0o755)
        pidfile = run / "app.pid"
        s = server_factory(
            ops_args("--uid", "nobody", "--gid", group, "--pidfile", str(pidfile), "--vacuum"), workdir=workdir
        )
        assert pidfile.read_text().strip() == str(s.pid)
        s.signal(signal.SIGTERM)
        s.wait_exit(15)
        log = s.log()
        if pidfile.exists():
            assert f"vacuum: {pidfile}: Permission denied" in log, log[-3000:]
            assert f"vacuum: removed {pidfile}" not in log, log[-3000:]
        else:
            assert f"vacuum: removed {pidfile}" in log, log[-3000:]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@needs_root
def test_control_and_stats_sockets_are_bound_before_dropping_privileges(server_factory):
    """Closed issue: with uid/gid, the control socket and a unix stats socket
    were bound after the drop, so a root-owned 0755 directory (/run/capataz/)
    made startup fail (the master fifo too). They are bound as root, like the listeners, and given
    to the user the master becomes; `capataz ctl` (as root) and a stats
    reader still work."""
    group = _nogroup()
    uid = pwd.getpwnam("nobody").pw_uid
    gid = grp.getgrnam(group).gr_gid
    workdir = short_tmpdir()
    try:
        run = Path(workdir) / "run"
        run.mkdir(mode=0o755)
        assert run.stat().st_uid == 0 and stat.S_IMODE(run.stat().st_mode) == 0o755
        ctl_sock, stats_sock, fifo = run / "ctl.sock", run / "stats.sock", run / "master.fifo"
        s = server_factory(
            ops_args(
                "--uid", "nobody", "--gid", group, "--processes", "1",
                "--control-socket", str(ctl_sock), "--stats", str(stats_sock), "--master-fifo", str(fifo),
            ),
            workdir=workdir,
        )
        assert s.proc.poll() is None, s.log()[-3000:]
        for path in (ctl_sock, stats_sock, fifo):
            st = path.stat()
            assert (st.st_uid, st.st_gid) == (uid, gid), (path, st)
        assert stat.S_IMODE(ctl_sock.stat().st_mode) == 0o600
        deadline = time.monotonic() + 15
        while True:
            r = subprocess.run(
                [str(s.argv()[0]), "ctl", "--control-socket", str(ctl_sock), "status", "--json"],
                capture_output=True, text=True, timeout=30, env=clean_env(),
            )
            # 3: a worker is not RUNNING yet.
            if r.returncode != 3 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert r.returncode == 0, (r, s.log()[-3000:])
        names = [p["name"] for p in json.loads(r.stdout)["processes"]]
        assert any(n.startswith("web:") for n in names), names
        with socket.socket(socket.AF_UNIX) as c:
            c.settimeout(10)
            c.connect(str(stats_sock))
            doc = b""
            while chunk := c.recv(65536):
                doc += chunk
        stats = json.loads(doc)
        assert stats["pid"] == s.pid and stats["uid"] == uid, stats
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@needs_root
def test_no_root_workers_refuses_without_uid(server_factory):
    """`no-root-workers` as root without --uid: refuse to start, saying why."""
    s = server_factory(plain_args("--no-root-workers"), wait=False)
    rc = s.wait_exit(15)
    assert rc != 0
    assert "root" in s.log().lower(), s.log()


# -- master fifo -----------------------------------------------------------


def test_master_fifo_commands(server_factory, tmp_path):
    """Issue 4 item 4: `r` reloads (new pids), `+`/`-` scale by one, `q`
    stops gracefully (exit 0)."""
    fifo = tmp_path / "master.fifo"
    s = server_factory(plain_args("--master-fifo", str(fifo), "--processes", "2"))
    wait_for(lambda: fifo.exists() and stat.S_ISFIFO(os.stat(fifo).st_mode), 5, "the fifo", s)
    old = set(wait_children(s, 2))

    mark = s.mark()
    fifo_write(fifo, b"r")
    s.wait_log(r"phase: Reloading", since=mark, timeout=5)
    s.wait_log(r"new workers accepting; draining", since=mark, timeout=15)
    new = set(wait_for(lambda: (lambda w: w if len(w) == 2 and not (set(w) & old) else None)(s.workers()), 15, "a new generation", s))
    assert get_pid(s) in new

    fifo_write(fifo, b"+")
    wait_children(s, 3)
    fifo_write(fifo, b"-")
    wait_children(s, 2)

    mark = s.mark()
    fifo_write(fifo, b"q")
    assert s.wait_exit(15) == 0
    assert "Draining" in phases(s.log_since(mark))


def test_master_fifo_fast_stop(server_factory, tmp_path):
    """`Q` is a fast stop: exits promptly even with a 30 s request in flight."""
    fifo = tmp_path / "master.fifo"
    s = server_factory(plain_args("--master-fifo", str(fifo), "--processes", "1", "--threads", "2"))
    mark = s.mark()
    conn = Conn(s.port, timeout=10)
    try:
        conn.send(request_bytes("GET", "/sleep?ms=30000&tag=fifoQ", headers=[("Connection", "close")]))
        s.wait_log(r"sleep-start fifoQ", since=mark, timeout=5)
        started = time.monotonic()
        fifo_write(fifo, b"Q")
        s.wait_exit(5)
        assert time.monotonic() - started < 5
    finally:
        conn.close()
    assert "Draining" not in phases(s.log_since(mark))
