"""Issue 7 item 5: the live dashboard at `/` of the stats-http listener.

A real headless Chromium (Debian's `chromium`, installed by scripts/test.sh)
loads the page against a capataz under load; the rendered DOM must show a
row per worker pid and a non-zero requests/s, and a screenshot is saved to
tests/artifacts/dashboard.png. The action endpoints (reload, scale, restart)
answer 403 without `stats-token`, and with a missing or wrong token; with
the right one, a reload goes through the master loop like `capataz ctl
reload` does. Chromium missing is a failure, not a skip."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from support.ctl import short_dir
from support.server import APPS, TESTS_DIR, Server, free_port

TOKEN = "s3cret-dashboard-token"
ARTIFACTS = TESTS_DIR / "artifacts"
PROGRAMS = "[program:ticker]\ncommand = sh -c 'while true; do echo tick; sleep 1; done'\n"


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("chromium is not installed (scripts/test.sh installs Debian's chromium package)")


def http(url: str, *, data: bytes | None = None, headers: dict | None = None, timeout: float = 20.0):
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def post(url: str, fields: dict, token: str | None = None):
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return http(url, data=urllib.parse.urlencode(fields).encode(), headers=headers)


def start(
    server_factory,
    *,
    token: str | None,
    processes: int = 2,
    metrics: int | None = None,
    app: str = "plain_app.py",
    env: dict | None = None,
) -> tuple[Server, int]:
    d = short_dir()
    port, stats = free_port(), free_port()
    ini = d / "app.ini"
    ini.write_text(
        f"[uwsgi]\nhttp = 127.0.0.1:{port}\nwsgi-file = {APPS / app}\n"
        f"processes = {processes}\nthreads = 2\ncontrol-socket = {d / 'ctl.sock'}\n"
        f"stats = 127.0.0.1:{stats}\nstats-http = true\n"
        + (f"stats-token = {token}\n" if token else "")
        + (f"metrics = 127.0.0.1:{metrics}\n" if metrics else "")
        + PROGRAMS
    )
    srv = server_factory(["--ini", str(ini)], http=None, port=port, workdir=d, env=env)
    return srv, stats


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value or time.time() > deadline:
            return value
        time.sleep(0.1)


class Load:
    """A few threads hitting the app until stopped."""

    def __init__(self, url: str, threads: int = 3):
        self.url = url
        self.stop_event = threading.Event()
        self.count = 0
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self):
        while not self.stop_event.is_set():
            try:
                urllib.request.urlopen(self.url + "/sleep?ms=5", timeout=5).read()
                self.count += 1
            except OSError:
                time.sleep(0.05)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        for t in self.threads:
            t.join(10)


def run_chromium(url: str, *extra: str, budget_ms: int = 6000) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="cz-chromium-")
    try:
        return subprocess.run(
            [
                chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
                *extra, url,
            ],
            capture_output=True,
            text=True,
            timeout=90,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def test_dashboard_in_headless_chromium(server_factory):
    srv, stats = start(server_factory, token=TOKEN)
    base = f"http://127.0.0.1:{stats}"
    assert wait_for(lambda: len(json.loads(http(f"{base}/stats")[1])["workers"]) == 2)
    status, body, headers = http(base + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    # One self-contained asset: nothing fetched from elsewhere.
    assert b"https://" not in body and b"http://" not in body
    with Load(srv.url) as load:
        assert wait_for(lambda: load.count > 20), "the load generator got no answers"
        # The side program is a child too: the workers are what /stats lists.
        pids = [w["pid"] for w in json.loads(http(f"{base}/stats")[1])["workers"]]
        assert len(pids) == 2
        # The side program is RUNNING once it has lived `startsecs`.
        assert wait_for(
            lambda: any(p.get("name") == "ticker" and p.get("state") == "RUNNING" for p in json.loads(http(f"{base}/stats")[1]).get("programs", []))
        ), "the side program never reached RUNNING"
        run = run_chromium(base + "/", "--dump-dom")
        assert run.returncode == 0, run.stderr[-3000:]
        dom = run.stdout
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "dashboard.html").write_text(dom)
        shot = ARTIFACTS / "dashboard.png"
        shot.unlink(missing_ok=True)
        run = run_chromium(base + "/", f"--screenshot={shot}", "--window-size=1280,900", "--hide-scrollbars")
        assert run.returncode == 0, run.stderr[-3000:]
    rows = re.findall(r"<tr class=\"worker\" data-pid=\"(\d+)\">", dom)
    assert sorted(int(p) for p in rows) == sorted(pids), dom[-4000:]
    rps = re.search(r'id="rps">([^<]*)<', dom)
    assert rps, dom[-4000:]
    assert float(rps.group(1)) > 0, f"req/s shown: {rps.group(1)!r}"
    assert re.search(r'id="latency">[0-9.]+ ms<', dom), dom[-4000:]
    # The side program is listed with its state, and the log tail is filled.
    assert re.search(r"<td>ticker</td><td><span class=\"state s-RUNNING\">RUNNING</span>", dom), dom[-4000:]
    log = re.search(r'<pre id="log">(.*?)</pre>', dom, re.S)
    assert log and "phase: Running" in html.unescape(log.group(1)), dom[-4000:]
    # With stats-token set the buttons are enabled.
    assert re.search(r'<button id="btn-reload" data-action="reload">', dom), dom[:3000]
    assert shot.exists() and shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dashboard_shows_each_workers_supervisor_state(server_factory, tmp_path):
    """The workers table shows the supervisor state `ctl status` shows: two
    workers, one of them in a crash loop (crashy_app: every boot from the
    second on exits 0.1 s after it accepts). Once its BACKOFF wait is long
    (6.4 s), the page rendered in headless Chromium has the healthy worker
    RUNNING and the crashing id's row, without a process, in BACKOFF."""
    env = {"CRASHY_COUNTER": str(tmp_path / "boots"), "CRASHY_FROM": "2", "CRASHY_TIMES": "100", "CRASHY_AFTER_MS": "100"}
    srv, stats = start(server_factory, token=None, app="crashy_app.py", env=env)
    base = f"http://127.0.0.1:{stats}"
    # 0.1 + 0.2 + ... + 3.2 s of BACKOFF, and seven short-lived boots.
    srv.wait_log(r"exited with code 3; respawning in 6\.4 s \(BACKOFF", timeout=40)
    doc = json.loads(http(f"{base}/stats")[1])
    assert sorted(w["supervisor_state"] for w in doc["workers"]) == ["BACKOFF", "RUNNING"], doc["workers"]
    run = run_chromium(base + "/", "--dump-dom", budget_ms=3000)
    assert run.returncode == 0, run.stderr[-3000:]
    dom = run.stdout
    rows = re.findall(
        r'<tr class="worker" data-pid="(\d+)"><td>(\d+)</td><td class="pid">[^<]*</td>'
        r'<td class="supervisor"><span class="state s-(\w+)">(\w+)</span></td>'
        r'<td><span class="state s-(\w+)">',
        dom,
    )
    assert len(rows) == 2, dom[-4000:]
    by_state = {row[3]: row for row in rows}
    assert set(by_state) == {"RUNNING", "BACKOFF"}, rows
    running, backoff = by_state["RUNNING"], by_state["BACKOFF"]
    assert int(running[0]) in srv.workers() and running[2] == "RUNNING" and running[4] in ("idle", "busy"), rows
    assert backoff[0] == "0" and backoff[2] == "BACKOFF" and backoff[4] == "backoff", rows
    assert {running[1], backoff[1]} == {"1", "2"}, rows
    assert re.search(r'id="worker-count">1<', dom), dom[-4000:]


def test_actions_need_the_configured_token(server_factory):
    srv, stats = start(server_factory, token=TOKEN)
    base = f"http://127.0.0.1:{stats}"
    assert wait_for(lambda: len(json.loads(http(f"{base}/stats")[1])["workers"]) == 2)
    for action, fields in (("reload", {}), ("scale", {"change": "+1"}), ("restart", {"name": "ticker"})):
        assert post(f"{base}/api/{action}", fields)[0] == 403
        assert post(f"{base}/api/{action}", fields, token="wrong")[0] == 403
        assert post(f"{base}/api/{action}", {**fields, "token": "wrong"})[0] == 403
    assert "phase: Reloading" not in srv.log()

    mark = srv.mark()
    status, body, _ = post(f"{base}/api/reload", {}, token=TOKEN)
    assert status == 200, body
    assert json.loads(body)["ok"] is True
    srv.wait_log(r"phase: Reloading", since=mark, timeout=10)
    srv.wait_log(r"phase: Running", since=mark, timeout=30)

    # Scale through the form field, as a plain HTML form would send it.
    status, body, _ = post(f"{base}/api/scale", {"change": "+1", "token": TOKEN})
    assert status == 200 and json.loads(body)["message"] == "web: 3 worker(s)", body
    assert wait_for(lambda: len(json.loads(http(f"{base}/stats")[1])["workers"]) == 3, timeout=20)
    status, body, _ = post(f"{base}/api/scale", {"change": "-1"}, token=TOKEN)
    assert status == 200 and json.loads(body)["message"] == "web: 2 worker(s)", body

    # Restart a side program: same answer as `capataz ctl restart ticker`.
    old = next(p for p in json.loads(http(f"{base}/stats")[1])["programs"] if p["name"] == "ticker")
    status, body, _ = post(f"{base}/api/restart", {"name": "ticker"}, token=TOKEN)
    assert status == 200 and json.loads(body)["ok"] is True, body
    # The stats server reads the master's snapshot, refreshed on its own tick.
    def ticker():
        return next(p for p in json.loads(http(f"{base}/stats")[1])["programs"] if p["name"] == "ticker")

    new = wait_for(lambda: (lambda p: p if p["state"] == "RUNNING" and p["pid"] != old["pid"] else None)(ticker()))
    assert new, ticker()
    assert post(f"{base}/api/restart", {"name": "nope"}, token=TOKEN)[0] == 400

    # The log tail endpoint: the master's lines, or a program's output.
    lines = json.loads(http(f"{base}/api/log?n=50")[1])["lines"]
    assert any("phase: Reloading" in line for line in lines), lines
    tail = json.loads(http(f"{base}/api/log?program=ticker&n=5")[1])
    assert "tick" in tail["lines"], tail


def test_without_token_buttons_are_disabled_and_actions_forbidden(server_factory):
    metrics = free_port()
    srv, stats = start(server_factory, token=None, metrics=metrics)
    base = f"http://127.0.0.1:{stats}"
    status, body, _ = http(base + "/")
    assert status == 200
    assert b'const ACTIONS = false;' in body
    status, body, _ = post(f"{base}/api/reload", {}, token="anything")
    assert status == 403 and b"stats-token" in body
    assert post(f"{base}/api/scale", {"change": "+1"})[0] == 403
    # The JSON moved to /stats (and /stats.json); / is the page.
    for path in ("/stats", "/stats.json"):
        doc = json.loads(http(base + path)[1])
        assert "workers" in doc and "programs" in doc
    # The metrics listener has no dashboard and no actions.
    m = f"http://127.0.0.1:{metrics}"
    assert http(m + "/")[0] == 404
    assert post(m + "/api/reload", {}, token="anything")[0] == 404
    assert http(m + "/metrics")[0] == 200 and "workers" in json.loads(http(m + "/stats")[1])
    time.sleep(0.5)
    assert "phase: Reloading" not in srv.log()
