"""[program:x] side processes and [socket:x] shared sockets (issue 6 items
2, 3 and 5): supervisord's state machine and keys, log capture and
rotation, shutdown with the master, and a socket bound by the master served
by a program through socket.fromfd."""

from __future__ import annotations

import os
import signal
import sys
import time

import requests

from support.ctl import ctl, start_with, status, wait_state
from support.server import free_port, pid_alive

PY = sys.executable


def lines(path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def wait_for(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not met within {timeout}s")


def test_early_exit_backs_off_then_goes_fatal(server_factory):
    srv, sock = start_with(
        server_factory,
        "[program:early]\ncommand = sh -c 'echo starting; exit 1'\nstartsecs = 1\nstartretries = 2\n",
    )
    seen: list[str] = []
    row = wait_state(sock, "early", "FATAL", timeout=20, seen=seen)
    assert "BACKOFF" in seen, seen
    assert row["pid"] is None and "gave up" in row["description"]
    # 1 start + 2 retries, waiting 1 s then 2 s between them.
    assert srv.log().count("spawned program early") == 3, srv.log()
    assert "[program early] starting" in srv.log()
    # FATAL stays FATAL.
    time.sleep(1.5)
    assert status(sock)["early"]["state"] == "FATAL"


def test_a_program_that_crashes_later_is_restarted(server_factory):
    d_marker = "starts.txt"
    srv, sock = start_with(
        server_factory,
        f"[program:crashy]\ncommand = sh -c 'echo x >> {d_marker}; sleep 1.3; exit 3'\n"
        "startsecs = 1\ndirectory = %(here)s\n",
    )
    marker = srv.dir / d_marker
    wait_for(lambda: len(lines(marker)) >= 2, timeout=15, what="a restart")
    assert "program crashy (pid: " in srv.log() and "exited with code 3" in srv.log()
    wait_state(sock, "crashy", "RUNNING")


def test_autorestart_false_is_honoured(server_factory):
    srv, sock = start_with(
        server_factory,
        "[program:once]\ncommand = sh -c 'echo x >> %(here)s/once.txt; sleep 1.2; exit 7'\n"
        "startsecs = 1\nautorestart = false\n",
    )
    row = wait_state(sock, "once", "EXITED", timeout=10)
    assert "code 7" in row["description"] and "unexpected" in row["description"]
    time.sleep(2)
    assert lines(srv.dir / "once.txt") == ["x"]
    assert status(sock)["once"]["state"] == "EXITED"


def test_expected_exit_code_is_not_restarted_under_unexpected(server_factory):
    srv, sock = start_with(
        server_factory,
        "[program:ok]\ncommand = sh -c 'echo x >> %(here)s/ok.txt; sleep 1.2; exit 5'\n"
        "startsecs = 1\nexitcodes = 0,5\n",
    )
    row = wait_state(sock, "ok", "EXITED", timeout=10)
    assert "(expected)" in row["description"]
    time.sleep(1.5)
    assert lines(srv.dir / "ok.txt") == ["x"]


def test_log_file_rotates_at_maxbytes_keeping_backups(server_factory):
    script = "import sys\nfor i in range(60):\n    print(str(i).rjust(99, '.'), flush=True)\nimport time; time.sleep(600)\n"
    srv, sock = start_with(
        server_factory,
        "[program:chatty]\n"
        f"command = {PY} -c \"exec(open('%(here)s/chatty.py').read())\"\n"
        "stdout_logfile = %(here)s/chatty.log\n"
        "stdout_logfile_maxbytes = 1KB\nstdout_logfile_backups = 2\n",
    )
    (srv.dir / "chatty.py").write_text(script)
    # The program may have started before the script existed: restart it.
    r = ctl(sock, "restart", "chatty")
    assert r.returncode == 0, r
    log = srv.dir / "chatty.log"
    wait_for(lambda: "59".rjust(99, ".") in "".join(lines(log)), what="the last line")
    for name in ["chatty.log", "chatty.log.1", "chatty.log.2"]:
        path = srv.dir / name
        assert path.exists(), name
        size = path.stat().st_size
        assert 0 < size <= 1024, (name, size)
        assert size % 100 == 0, "whole lines only"
    assert not (srv.dir / "chatty.log.3").exists()


def test_default_output_goes_to_our_stderr_prefixed_and_dash_unprefixed(server_factory):
    srv, sock = start_with(
        server_factory,
        "[program:talk]\ncommand = sh -c 'echo out-line; echo err-line >&2; sleep 600'\n"
        "[program:plain]\ncommand = sh -c 'echo dash-line; sleep 600'\nstdout_logfile = -\n",
    )
    srv.wait_log(r"\[program talk\] out-line")
    srv.wait_log(r"\[program talk\] err-line")
    m = srv.wait_log(r"(?m)^.*dash-line$")
    assert "[program" not in m.group(0)


def test_numprocs_and_process_name(server_factory):
    srv, sock = start_with(
        server_factory,
        "[program:pool]\ncommand = sleep 600\nnumprocs = 2\nprocess_name = %(program_name)s-%(process_num)02d\n",
    )
    wait_state(sock, "pool-00", "RUNNING")
    wait_state(sock, "pool-01", "RUNNING")
    r = ctl(sock, "stop", "pool")
    assert r.returncode == 0, r
    rows = status(sock)
    assert rows["pool-00"]["state"] == rows["pool-01"]["state"] == "STOPPED"


def test_programs_stop_with_the_master_then_sigkill_after_stopwaitsecs(server_factory):
    srv, sock = start_with(
        server_factory,
        "[program:polite]\ncommand = sleep 600\n"
        "[program:stubborn]\ncommand = sh -c 'trap \"\" TERM; echo trapped; while :; do sleep 0.1; done'\n"
        "stopwaitsecs = 1\nstopasgroup = true\n",
    )
    srv.wait_log(r"\[program stubborn\] trapped")
    polite = wait_state(sock, "polite", "RUNNING")["pid"]
    stubborn = wait_state(sock, "stubborn", "RUNNING")["pid"]
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(15) == 0
    assert not pid_alive(polite) and not pid_alive(stubborn)
    assert "program stubborn" in srv.log() and "sending SIGKILL" in srv.log()


def test_programs_die_with_the_master(server_factory):
    srv, sock = start_with(server_factory, "[program:orphan]\ncommand = sleep 600\n")
    pid = wait_state(sock, "orphan", "RUNNING")["pid"]
    assert os.getpgid(pid) == pid, "programs lead their own process group"
    srv.proc.kill()
    srv.proc.wait(5)
    wait_for(lambda: not pid_alive(pid), timeout=5, what="the program to die with the master")


def test_shared_socket_served_by_a_program_via_fromfd(server_factory):
    port = free_port()
    server_py = (
        "import socket, sys, http.server\n"
        "fd = int(sys.argv[1])\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        body = b'from the shared socket fd %d' % fd\n"
        "        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()\n"
        "        self.wfile.write(body)\n"
        "class S(http.server.HTTPServer):\n"
        "    def server_bind(self): pass\n"
        "    def server_activate(self): pass\n"
        "srv = S(('127.0.0.1', 0), H, bind_and_activate=False)\n"
        "srv.socket = socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM)\n"
        "srv.serve_forever()\n"
    )
    srv, sock = start_with(
        server_factory,
        f"[socket:web2]\nhost = 127.0.0.1\nport = {port}\n"
        f"[program:fdserver]\ncommand = {PY} %(here)s/fdserver.py $(capataz.sockets.web2)\n",
    )
    (srv.dir / "fdserver.py").write_text(server_py)
    assert ctl(sock, "restart", "fdserver").returncode == 0
    r = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
    assert r.status_code == 200
    assert r.text.startswith("from the shared socket fd ")
    assert f"shared socket web2 on 127.0.0.1:{port}" in srv.log()


def test_unknown_program_key_is_a_config_error_with_line(tmp_path):
    from support.server import run_capataz

    ini = tmp_path / "bad.ini"
    ini.write_text("[uwsgi]\nhttp = :0\nmodule = app\n\n[program:x]\ncommand = true\nautorestrat = true\n")
    r = run_capataz(["--ini", ini])
    assert r.returncode == 64
    assert f"{ini}:7" in r.stderr and "did you mean 'autorestart'" in r.stderr


def test_env_file_reaches_workers_and_programs(server_factory, tmp_path):
    app = tmp_path / "envapp.py"
    app.write_text(
        "import os\n"
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [os.environ.get('FROM_ENV_FILE', 'unset').encode()]\n"
    )
    envfile = tmp_path / "app.env"
    envfile.write_text("# settings\nexport FROM_ENV_FILE=\"hello env\"\n\nOTHER=1\n")
    srv, sock = start_with(
        server_factory,
        "[program:envy]\ncommand = sh -c 'echo \"$FROM_ENV_FILE/$OTHER/$LOCAL\" > %(here)s/env.txt; sleep 600'\n"
        "environment = LOCAL=\"a,b\"\n",
        extra=f"env-file = {envfile}\n",
        app=app,
    )
    assert requests.get(srv.url + "/", timeout=5).text == "hello env"
    wait_for(lambda: lines(srv.dir / "env.txt") == ["hello env/1/a,b"], what="the program's env")
