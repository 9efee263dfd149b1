"""A reload reads the config files again (DESIGN §5, as uWSGI's and
gunicorn's reloads do): worker options take effect with the new generation,
options the master acted on at startup are logged as needing a restart, and a
config that no longer parses refuses the reload instead of stopping capataz."""

from __future__ import annotations

import signal
import time

from support.server import free_port
from test_supervision import fetch

APP = """
import os

def application(environ, start_response):
    body = f"{os.getpid()} {os.environ.get('MODE', '-')}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


def write_ini(ini, port, extra=""):
    ini.write_text(f"[uwsgi]\nhttp = 127.0.0.1:{port}\nwsgi-file = {ini.parent / 'app.py'}\n{extra}")


def start(server_factory, tmp_path, extra):
    (tmp_path / "app.py").write_text(APP)
    port = free_port()
    ini = tmp_path / "app.ini"
    write_ini(ini, port, extra)
    srv = server_factory(["--ini", str(ini)], http=None, port=port)
    srv.ini = ini
    return srv


def served(srv, n=40):
    """(pids, modes) over n fresh connections."""
    answers = [fetch(srv.port, "/").body.decode().split() for _ in range(n)]
    return {int(p) for p, _ in answers}, {m for _, m in answers}


def test_hup_applies_changed_processes_and_env(server_factory, tmp_path):
    srv = start(server_factory, tmp_path, "processes = 2\nenv = MODE=old\n")
    old = set(srv.wait_workers_loaded(2))
    assert served(srv)[1] == {"old"}
    write_ini(srv.ini, srv.port, "processes = 3\nenv = MODE=new\n")
    mark = srv.mark()
    srv.signal(signal.SIGHUP)
    srv.wait_log(r"config read again; the new workers get the changed env, processes", since=mark, timeout=10)
    srv.wait_log(r"draining 2 old worker", since=mark, timeout=20)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        now = srv.workers()
        if len(now) == 3 and not old & set(now):
            break
        time.sleep(0.1)
    assert len(srv.workers()) == 3 and not old & set(srv.workers()), srv.log()[-3000:]
    pids, modes = served(srv, 60)
    assert modes == {"new"} and not pids & old


def test_hup_keeps_listeners_and_says_a_restart_is_needed(server_factory, tmp_path):
    srv = start(server_factory, tmp_path, "processes = 1\n")
    srv.wait_workers_loaded(1)
    other = free_port()
    write_ini(srv.ini, other, "processes = 1\nharakiri = 30\n")
    mark = srv.mark()
    srv.signal(signal.SIGHUP)
    srv.wait_log(r"the new workers get the changed harakiri", since=mark, timeout=10)
    srv.wait_log(r"http changed in the config; that takes a restart of capataz", since=mark, timeout=10)
    srv.wait_log(r"draining 1 old worker", since=mark, timeout=20)
    assert fetch(srv.port, "/").status == 200  # still on the port it bound


def test_hup_with_a_broken_config_is_refused_and_serving_goes_on(server_factory, tmp_path):
    srv = start(server_factory, tmp_path, "processes = 2\nenv = MODE=old\n")
    old = set(srv.wait_workers_loaded(2))
    write_ini(srv.ini, srv.port, "processes = 2\nenv = MODE=new\nharakri = 30\n")
    mark = srv.mark()
    srv.signal(signal.SIGHUP)
    m = srv.wait_log(r"reload refused, the config cannot be read again: (.*)", since=mark, timeout=10)
    assert "app.ini:6" in m[1] and "harakri" in m[1] and "harakiri" in m[1], m[0]
    time.sleep(1)
    assert set(srv.workers()) == old and srv.proc.poll() is None
    assert "phase: Reloading" not in srv.log_since(mark)
    pids, modes = served(srv)
    assert pids <= old and modes == {"old"}
    # Fixed: the next HUP reloads.
    write_ini(srv.ini, srv.port, "processes = 2\nenv = MODE=new\nharakiri = 30\n")
    mark = srv.mark()
    srv.signal(signal.SIGHUP)
    srv.wait_log(r"draining 2 old worker", since=mark, timeout=20)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and served(srv, 10)[1] != {"new"}:
        time.sleep(0.1)
    assert served(srv)[1] == {"new"}


def test_hup_of_unchanged_files_reports_no_change(server_factory, tmp_path):
    srv = start(server_factory, tmp_path, "processes = 1\nenv = MODE=old\n")
    srv.wait_workers_loaded(1)
    mark = srv.mark()
    srv.signal(signal.SIGHUP)
    srv.wait_log(r"draining 1 old worker", since=mark, timeout=20)
    log = srv.log_since(mark)
    assert "config read again" not in log and "takes a restart" not in log, log
