"""`capataz ctl` and the control socket (issue 6 item 4): every subcommand
with its exit code (0 ok, 1 failure, 2 usage, 3 not running), the socket's
0600 mode, and SO_PEERCRED rejection of another uid."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time

import pytest

from support.ctl import ctl, start_with, status, wait_state
from support.server import capataz_bin, clean_env

PROGRAMS = (
    "[program:sleeper]\ncommand = sh -c 'echo hello from sleeper; sleep 600'\n"
    "[program:lazy]\ncommand = sleep 600\nautostart = false\n"
)


@pytest.fixture
def running(server_factory):
    srv, sock = start_with(server_factory, PROGRAMS, processes=2)
    wait_state(sock, "sleeper", "RUNNING")
    wait_state(sock, "web:2", "RUNNING")
    return srv, sock


def test_status_table_and_json(running):
    srv, sock = running
    r = ctl(sock, "status")
    # lazy (autostart = false) is STOPPED: status says so with exit 3.
    assert r.returncode == 3, r
    header, *rows = r.stdout.splitlines()
    assert header.split() == ["NAME", "STATE", "PID", "UPTIME", "REQUESTS", "RSS"]
    names = [row.split()[0] for row in rows]
    assert names == ["web:1", "web:2", "sleeper", "lazy"]
    r = ctl(sock, "status", "--json")
    data = json.loads(r.stdout)
    rows = {p["name"]: p for p in data["processes"]}
    assert rows["web:1"]["requests"] is not None and rows["web:1"]["rss_bytes"] > 0
    assert rows["sleeper"]["pid"] > 0 and rows["sleeper"]["uptime_secs"] is not None
    assert rows["lazy"]["state"] == "STOPPED" and rows["lazy"]["pid"] is None
    assert ctl(sock, "status", "sleeper").returncode == 0
    assert ctl(sock, "status", "lazy").returncode == 3
    assert ctl(sock, "status", "nope").returncode == 2


def test_start_stop_restart(running):
    srv, sock = running
    r = ctl(sock, "start", "lazy")
    assert r.returncode == 0 and "started" in r.stdout, r
    assert status(sock)["lazy"]["state"] == "RUNNING"
    old = status(sock)["sleeper"]["pid"]
    r = ctl(sock, "restart", "sleeper")
    assert r.returncode == 0, r
    new = status(sock)["sleeper"]
    assert new["state"] == "RUNNING" and new["pid"] != old
    r = ctl(sock, "stop", "all")
    assert r.returncode == 0, r
    rows = status(sock)
    assert rows["sleeper"]["state"] == rows["lazy"]["state"] == "STOPPED"
    assert rows["web:1"]["state"] == "RUNNING", "stop all is about programs"
    r = ctl(sock, "stop", "sleeper")
    assert r.returncode == 3 and "not running" in r.stderr, r
    assert ctl(sock, "start", "all").returncode == 0
    assert ctl(sock, "start", "nope").returncode == 2
    assert ctl(sock, "stop").returncode == 2


def test_start_of_a_failing_program_fails(server_factory):
    srv, sock = start_with(
        server_factory, "[program:bad]\ncommand = sh -c 'exit 1'\nautostart = false\nstartretries = 0\n"
    )
    r = ctl(sock, "start", "bad")
    assert r.returncode == 1 and "failed to start" in r.stderr, r


def test_signal(running):
    srv, sock = running
    pid = status(sock)["sleeper"]["pid"]
    r = ctl(sock, "signal", "sleeper", "KILL")
    assert r.returncode == 0, r
    # Killed by a signal is unexpected: it is restarted.
    deadline = time.monotonic() + 10
    while status(sock)["sleeper"]["pid"] in (pid, None) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status(sock)["sleeper"]["pid"] not in (pid, None)
    assert ctl(sock, "signal", "lazy", "HUP").returncode == 3
    assert ctl(sock, "signal", "sleeper", "NOSUCH").returncode == 2
    assert ctl(sock, "signal", "web", "USR1").returncode == 0


def test_scale_and_reload(running):
    srv, sock = running
    assert ctl(sock, "scale", "web", "+1").returncode == 0
    wait_state(sock, "web:3", "RUNNING")
    assert ctl(sock, "scale", "web", "-1").returncode == 0
    deadline = time.monotonic() + 10
    while "web:3" in status(sock) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "web:3" not in status(sock)
    r = ctl(sock, "scale", "web", "=1")
    assert r.returncode == 0 and "1 worker" in r.stdout, r
    assert ctl(sock, "scale", "sleeper", "+1").returncode == 2
    assert ctl(sock, "scale", "web", "lots").returncode == 2
    old = status(sock)["web:1"]["pid"]
    assert ctl(sock, "reload").returncode == 0
    srv.wait_log("ctl reload: starting new workers")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        rows = status(sock)
        if rows.get("web:1", {}).get("pid") not in (old, None) and len([r for r in rows if r.startswith("web:")]) == 1:
            break
        time.sleep(0.1)
    assert status(sock)["web:1"]["pid"] != old


def test_tail_and_follow(running):
    srv, sock = running
    r = ctl(sock, "tail", "sleeper")
    assert r.returncode == 0 and "hello from sleeper" in r.stdout, r
    proc = subprocess.Popen(
        [str(capataz_bin()), "ctl", "--control-socket", str(sock), "tail", "-f", "sleeper"],
        stdout=subprocess.PIPE,
        env=clean_env(),
    )
    try:
        assert b"hello from sleeper" in proc.stdout.readline()
        ctl(sock, "restart", "sleeper")
        assert b"hello from sleeper" in proc.stdout.readline(), "follows new output"
    finally:
        proc.kill()
        proc.wait(5)
    assert ctl(sock, "tail", "nope").returncode == 2


def test_reread_and_update(running):
    srv, sock = running
    r = ctl(sock, "reread")
    assert r.returncode == 0 and "no changes" in r.stdout, r
    text = srv.ini.read_text()
    text = text.replace("[program:lazy]\ncommand = sleep 600\nautostart = false\n", "")
    text = text.replace("sleep 600'", "sleep 601'")
    text += "[program:fresh]\ncommand = sleep 602\n"
    srv.ini.write_text(text)
    r = ctl(sock, "reread")
    assert r.returncode == 0, r
    assert sorted(r.stdout.split("\n")) == sorted(["fresh: added", "sleeper: changed", "lazy: removed", ""]), r.stdout
    assert "lazy" in status(sock), "reread changes nothing"
    old = status(sock)["sleeper"]["pid"]
    assert ctl(sock, "update").returncode == 0
    wait_state(sock, "fresh", "RUNNING")
    row = wait_state(sock, "sleeper", "RUNNING")
    assert row["pid"] != old
    assert "lazy" not in status(sock)
    assert "no changes" in ctl(sock, "update").stdout


def test_shutdown(running):
    srv, sock = running
    pid = status(sock)["sleeper"]["pid"]
    r = ctl(sock, "shutdown")
    assert r.returncode == 0, r
    assert srv.wait_exit(20) == 0
    assert not os.path.exists(pid and f"/proc/{pid}/cmdline") or open(f"/proc/{pid}/stat").read().split(") ")[1][0] in "ZX"
    assert not sock.exists(), "the control socket is removed on exit"
    r = ctl(sock, "status")
    assert r.returncode == 1 and "cannot connect" in r.stderr


def test_usage_errors_and_ini_lookup(running):
    srv, sock = running
    r = subprocess.run([str(capataz_bin()), "ctl", "bogus"], capture_output=True, text=True, env=clean_env())
    assert r.returncode == 2 and "usage:" in r.stderr
    r = subprocess.run([str(capataz_bin()), "ctl", "--help"], capture_output=True, text=True, env=clean_env())
    assert r.returncode == 0 and "exit codes" in r.stdout
    r = subprocess.run(
        [str(capataz_bin()), "ctl", "--ini", str(srv.ini), "status", "sleeper"],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=srv.dir,
    )
    assert r.returncode == 0 and "sleeper" in r.stdout, r


def test_control_socket_is_owner_only(running):
    srv, sock = running
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600


PEER_SCRIPT = """
import json, os, pwd, socket, sys
os.setgid(pwd.getpwnam('nobody').pw_gid)
os.setuid(pwd.getpwnam('nobody').pw_uid)
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print('EACCES'); sys.exit(0)
s.sendall(b'{"cmd":"shutdown"}\\n')
print(s.makefile().readline().strip())
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a peer as another user (nobody)")
def test_peer_with_another_uid_is_rejected(running):
    srv, sock = running
    run = lambda: subprocess.run(  # noqa: E731
        [sys.executable, "-c", PEER_SCRIPT, str(sock)], capture_output=True, text=True, timeout=20
    )
    # The file mode alone keeps another user out...
    assert run().stdout.strip() == "EACCES"
    # ...and with the mode opened up, SO_PEERCRED still does.
    os.chmod(sock, 0o666)
    os.chmod(sock.parent, 0o755)
    out = run()
    answer = json.loads(out.stdout)
    assert answer["ok"] is False and answer["message"] == "permission denied", out
    srv.wait_log("rejected a peer with uid")
    assert srv.proc.poll() is None, "the shutdown was not obeyed"


def test_ctl_ini_never_reaches_another_instance_on_the_default_socket(server_factory, tmp_path):
    """Two instances of one user without control-socket: the second finds the
    default path taken and runs without a control socket. `ctl --ini b.ini`
    must then refuse, naming whose socket it reached, instead of acting on
    the instance of a.ini (it used to shut the wrong one down)."""
    from support.server import APPS, free_port

    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    env = {"XDG_RUNTIME_DIR": str(xdg)}
    inis = []
    for name in ("a", "b"):
        port = free_port()
        ini = tmp_path / f"{name}.ini"
        ini.write_text(f"[uwsgi]\nhttp = 127.0.0.1:{port}\nwsgi-file = {APPS / 'plain_app.py'}\n")
        inis.append((ini, server_factory(["--ini", str(ini)], http=None, port=port, env=env)))
    (a_ini, a), (b_ini, b) = inis
    b.wait_log(r"served by another capataz; running without one")

    def run(ini, *words):
        return subprocess.run(
            [str(capataz_bin()), "ctl", "--ini", str(ini), *words],
            capture_output=True, text=True, timeout=30, env=clean_env(env),
        )

    # (exit 3 while the fresh worker is still STARTING)
    ok = run(a_ini, "status")
    assert ok.returncode in (0, 3) and "web:1" in ok.stdout, ok
    refused = run(b_ini, "shutdown")
    assert refused.returncode == 1, refused
    assert f"started from {a_ini}" in refused.stderr and f"set control-socket in {b_ini}" in refused.stderr, refused
    time.sleep(0.5)
    assert a.proc.poll() is None and b.proc.poll() is None, "an instance was shut down"
    assert "shutting down" not in a.log()
    # A request without --ini (the default socket, as documented) still works.
    plain = subprocess.run(
        [str(capataz_bin()), "ctl", "status"], capture_output=True, text=True, timeout=30, env=clean_env(env)
    )
    assert plain.returncode in (0, 3) and "web:1" in plain.stdout, plain


def test_ctl_ini_from_another_directory_with_relative_paths(server_factory):
    """Closed issue: `capataz ctl --ini FILE` validated the whole config from
    ctl's own directory, so a relative `chdir` (fine for the master, started
    from the ini's directory) made ctl fail when run from elsewhere. ctl only
    needs to find the master; it must still reject an error in the file,
    naming file, line and option, with exit 64."""
    from support.ctl import short_dir
    from support.server import APPS, free_port

    d = short_dir()
    (d / "app").mkdir()
    (d / "app.env").write_text("GREETING=hi\n")
    port = free_port()
    sock = d / "ctl.sock"
    ini = d / "uwsgi.ini"
    ini.write_text(
        f"[uwsgi]\nhttp = 127.0.0.1:{port}\nchdir = app\nenv-file = app.env\n"
        f"wsgi-file = {APPS / 'plain_app.py'}\nprocesses = 1\ncontrol-socket = {sock}\n"
    )
    srv = server_factory(["--ini", "uwsgi.ini"], http=None, port=port, workdir=d)
    run = lambda ini_file: subprocess.run(  # noqa: E731
        [str(capataz_bin()), "ctl", "--ini", str(ini_file), "status", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        env=clean_env(),
        cwd="/",
    )
    deadline = time.monotonic() + 15
    while (r := run(ini)).returncode == 3 and time.monotonic() < deadline:
        time.sleep(0.2)  # the worker is not RUNNING yet
    assert r.returncode == 0, r
    assert any(p["name"] == "web:1" for p in json.loads(r.stdout)["processes"]), r.stdout
    assert srv.proc.poll() is None

    # A mistake in the file is still an error: file, line, option; exit 64.
    bad = d / "bad.ini"
    bad.write_text(ini.read_text() + "proceses = 2\n")
    r = run(bad)
    assert r.returncode == 64, r
    assert f"{bad}:8" in r.stderr and "proceses" in r.stderr, r.stderr
    bad.write_text(ini.read_text() + "threads = lots\n")
    r = run(bad)
    assert r.returncode == 64, r
    assert f"{bad}:8" in r.stderr and "threads" in r.stderr, r.stderr
