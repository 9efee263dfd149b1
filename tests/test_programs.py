"""[program:x] side processes and [socket:x] shared sockets (issue 6 items
2, 3 and 5): supervisord's state machine and keys, log capture and
rotation, shutdown with the master, and a socket bound by the master served
by a program through socket.fromfd."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import sys
import time

import pytest
import requests

from support.ctl import ctl, short_dir, start_with, status, wait_state
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


# An HTTP server on an inherited socket: `fdserver.py FD [TAG]` answers
# "TAG from the shared socket fd FD".
FD_SERVER_PY = (
    "import socket, sys, http.server\n"
    "fd = int(sys.argv[1])\n"
    "tag = sys.argv[2].encode() + b' ' if len(sys.argv) > 2 else b''\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        body = tag + b'from the shared socket fd %d' % fd\n"
    "        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()\n"
    "        self.wfile.write(body)\n"
    "class S(http.server.HTTPServer):\n"
    "    def server_bind(self): pass\n"
    "    def server_activate(self): pass\n"
    "srv = S(('127.0.0.1', 0), H, bind_and_activate=False)\n"
    "srv.socket = socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM)\n"
    "srv.serve_forever()\n"
)


def test_shared_socket_served_by_a_program_via_fromfd(server_factory):
    port = free_port()
    server_py = FD_SERVER_PY
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


def write_env_app(tmp_path):
    """An app answering with its FROM_ENV_FILE environment variable."""
    app = tmp_path / "envapp.py"
    app.write_text(
        "import os\n"
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [os.environ.get('FROM_ENV_FILE', 'unset').encode()]\n"
    )
    return app


def test_env_file_reaches_workers_and_programs(server_factory, tmp_path):
    app = write_env_app(tmp_path)
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


# -- reread / update of env-file and [socket:x] ------------------------------


def reread_lines(sock) -> list[str]:
    r = ctl(sock, "reread")
    assert r.returncode == 0, r
    return sorted(line for line in r.stdout.splitlines() if line)


def test_reread_and_update_pick_up_a_changed_env_file(server_factory, tmp_path):
    """Issue 6 item 5 with reread/update: a changed env-file is reported
    (`env: changed`, and every program, since they all get it); update
    restarts the programs with the new values; the web workers keep theirs
    until their next reload, then have the new ones too."""
    app = write_env_app(tmp_path)
    envfile = tmp_path / "app.env"
    envfile.write_text("FROM_ENV_FILE=one\n")
    srv, sock = start_with(
        server_factory,
        "[program:envy]\ncommand = sh -c 'echo \"$FROM_ENV_FILE\" >> %(here)s/env.txt; sleep 600'\n",
        extra=f"env-file = {envfile}\n",
        app=app,
    )
    wait_for(lambda: lines(srv.dir / "env.txt") == ["one"], what="the program's first env")
    assert reread_lines(sock) == ["no changes"]
    envfile.write_text("FROM_ENV_FILE=two\n")
    assert reread_lines(sock) == ["env: changed", "envy: changed"]
    assert lines(srv.dir / "env.txt") == ["one"], "reread changes nothing"
    old = status(sock)["envy"]["pid"]
    r = ctl(sock, "update")
    assert r.returncode == 0 and "next reload" in r.stdout, r
    wait_for(lambda: lines(srv.dir / "env.txt") == ["one", "two"], what="the program restarted with the new env")
    row = wait_state(sock, "envy", "RUNNING")
    assert row["pid"] != old
    assert "no changes" in ctl(sock, "reread").stdout
    assert requests.get(srv.url + "/", timeout=5).text == "one", "workers keep their env until a reload"
    mark = srv.mark()
    assert ctl(sock, "reload").returncode == 0
    srv.wait_log("new workers accepting; draining", since=mark, timeout=15)
    assert requests.get(srv.url + "/", timeout=5).text == "two"


def test_reread_and_update_bind_change_and_close_shared_sockets(server_factory):
    """Issue 6 item 3 with reread/update: an added [socket:x] is bound and
    its program serves on it; a changed one (here: same port, new backlog,
    which cannot be bound while the old one listens) is closed once its
    program stopped, bound again, and its program restarted on it; a
    removed one is closed once its program is gone."""
    keep, gone, new = free_port(), free_port(), free_port()
    prog = "[program:{p}]\ncommand = {py} %(here)s/fdserver.py $(capataz.sockets.{s}) {p}\n"
    before = (
        f"[socket:keep]\nhost = 127.0.0.1\nport = {keep}\n"
        f"[socket:gone]\nhost = 127.0.0.1\nport = {gone}\n"
        + prog.format(p="onkeep", py=PY, s="keep")
        + prog.format(p="ongone", py=PY, s="gone")
    )
    srv, sock = start_with(server_factory, before)
    (srv.dir / "fdserver.py").write_text(FD_SERVER_PY)
    assert ctl(sock, "restart", "all").returncode == 0

    def get(port):
        return requests.get(f"http://127.0.0.1:{port}/", timeout=5).text

    assert get(keep).startswith("onkeep from the shared socket")
    assert get(gone).startswith("ongone from the shared socket")
    # Each program holds only the sockets its command names.
    keep_fd = re.search(rf"shared socket keep on 127.0.0.1:{keep} \(fd (\d+)\)", srv.log()).group(1)
    keep_inode = os.readlink(f"/proc/{srv.pid}/fd/{keep_fd}")
    gone_pid = status(sock)["ongone"]["pid"]
    held = [os.readlink(f"/proc/{gone_pid}/fd/{n}") for n in os.listdir(f"/proc/{gone_pid}/fd")]
    assert keep_inode not in held, f"ongone inherited [socket:keep] ({keep_inode}): {held}"
    old_pid = status(sock)["onkeep"]["pid"]
    text = srv.ini.read_text().replace(before, "")
    text += (
        f"[socket:keep]\nhost = 127.0.0.1\nport = {keep}\nbacklog = 64\n"
        f"[socket:fresh]\nhost = 127.0.0.1\nport = {new}\n"
        + prog.format(p="onkeep", py=PY, s="keep")
        + prog.format(p="onfresh", py=PY, s="fresh")
    )
    srv.ini.write_text(text)
    assert reread_lines(sock) == sorted(
        ["onkeep: changed", "socket:keep: changed", "onfresh: added", "socket:fresh: added", "ongone: removed", "socket:gone: removed"]
    )
    assert get(gone).startswith("ongone"), "reread changes nothing"
    mark = srv.mark()
    r = ctl(sock, "update")
    assert r.returncode == 0, r
    row = wait_state(sock, "onkeep", "RUNNING")
    assert row["pid"] != old_pid
    wait_state(sock, "onfresh", "RUNNING")
    assert get(keep).startswith("onkeep from the shared socket")
    assert get(new).startswith("onfresh from the shared socket")
    wait_for(lambda: "ongone" not in status(sock), what="ongone to be removed")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{gone}/", timeout=5)
    log = srv.log_since(mark)
    assert f"shared socket gone on 127.0.0.1:{gone} closed" in log
    # The old `keep` is closed before the new one is bound on the same port.
    closed = log.index(f"shared socket keep on 127.0.0.1:{keep} closed")
    assert log.index(f"shared socket keep on 127.0.0.1:{keep} (fd", closed) > closed
    assert "no changes" in ctl(sock, "reread").stdout


def test_update_reports_a_socket_that_cannot_be_bound(server_factory):
    """An added [socket:x] whose address is taken: update fails (exit 1)
    naming it; its program cannot start and says why."""
    import socket as pysocket

    taken = pysocket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        srv, sock = start_with(server_factory, "")
        srv.ini.write_text(
            srv.ini.read_text()
            + f"[socket:busy]\nhost = 127.0.0.1\nport = {port}\n"
            + "[program:onbusy]\ncommand = sleep 600 $(capataz.sockets.busy)\nstartretries = 0\n"
        )
        r = ctl(sock, "update")
        assert r.returncode == 1 and "[socket:busy]" in r.stderr, r
        assert sorted(line for line in r.stdout.splitlines() if line) == ["onbusy: added", "socket:busy: added"]
        row = wait_state(sock, "onbusy", "FATAL")
        assert "[socket:busy] is not bound" in row["description"], row
    finally:
        taken.close()


# -- [socket:x] unix socket files: vacuum, update ------------------------------


def is_socket(path) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_vacuum_removes_a_shared_unix_socket(server_factory, sig):
    """With `vacuum`, a [socket:x] unix socket's file is removed at exit,
    like the listeners' (graceful or fast stop)."""
    path = short_dir() / "shared.sock"
    srv, _ = start_with(server_factory, f"[socket:u]\npath = {path}\n", extra="vacuum = true\n")
    assert is_socket(path)
    srv.signal(sig)
    assert srv.wait_exit(15) == 0
    assert not path.exists(), f"vacuum left {path} behind\n{srv.log()}"
    assert f"vacuum: removed {path}" in srv.log()


def test_without_vacuum_a_shared_unix_socket_stays(server_factory):
    """uWSGI's semantics: without `vacuum` socket files are left alone."""
    path = short_dir() / "shared.sock"
    srv, _ = start_with(server_factory, f"[socket:u]\npath = {path}\n")
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(15) == 0
    assert is_socket(path), "the [socket:x] file was removed without vacuum"


def test_a_shared_unix_socket_path_another_server_listens_on_is_refused(server_factory):
    """A [socket:x] path with a live server behind it is not taken over (the
    listeners' rule): capataz exits with an error naming it, and the other
    server's socket file is left in place."""
    path = short_dir() / "shared.sock"
    other = socket.socket(socket.AF_UNIX)
    try:
        other.bind(str(path))
        other.listen()
        theirs = os.stat(path).st_ino
        srv, _ = start_with(server_factory, f"[socket:u]\npath = {path}\n", wait=False)
        assert srv.wait_exit(15) != 0
        assert str(path) in srv.log() and "another server is listening on it" in srv.log(), srv.log()
        assert is_socket(path) and os.stat(path).st_ino == theirs
    finally:
        other.close()


def test_vacuum_leaves_a_shared_socket_path_that_is_no_longer_ours(server_factory):
    """Another server bound the path since: its file is not ours to remove."""
    path = short_dir() / "shared.sock"
    srv, _ = start_with(server_factory, f"[socket:u]\npath = {path}\n", extra="vacuum = true\n")
    path.unlink()
    other = socket.socket(socket.AF_UNIX)
    try:
        other.bind(str(path))
        theirs = os.stat(path).st_ino
        srv.signal(signal.SIGTERM)
        assert srv.wait_exit(15) == 0
        assert is_socket(path) and os.stat(path).st_ino == theirs, "vacuum removed a file not ours"
    finally:
        other.close()


def test_update_removes_or_rebinds_a_shared_unix_socket_file(server_factory):
    """ctl update closing a removed unix [socket:x] removes its file; a
    changed one (same path, new backlog) is closed, its file removed, and
    bound again at the same path (a new file that accepts connections)."""
    d = short_dir()
    gone, kept = d / "gone.sock", d / "kept.sock"
    before = f"[socket:gone]\npath = {gone}\n[socket:kept]\npath = {kept}\n"
    srv, sock = start_with(server_factory, before)
    assert is_socket(gone) and is_socket(kept)
    old_inode = os.stat(kept).st_ino
    srv.ini.write_text(srv.ini.read_text().replace(before, f"[socket:kept]\npath = {kept}\nbacklog = 64\n"))
    mark = srv.mark()
    r = ctl(sock, "update")
    assert r.returncode == 0, r
    srv.wait_log(rf"shared socket kept on {re.escape(str(kept))} \(fd", since=mark)
    wait_for(lambda: not gone.exists(), what=f"{gone} to be removed")
    assert is_socket(kept) and os.stat(kept).st_ino != old_inode
    with socket.socket(socket.AF_UNIX) as c:
        c.connect(str(kept))



def test_a_missing_command_is_named(server_factory):
    """It used to log only "cannot start: No such file or directory"."""
    srv, sock = start_with(
        server_factory, "[program:missing]\ncommand = capataz-no-such-command --x\nstartretries = 0\n"
    )
    row = wait_state(sock, "missing", "FATAL", timeout=20)
    assert "command 'capataz-no-such-command'" in row["description"], row
    srv.wait_log(r"program missing: cannot start: command 'capataz-no-such-command': No such file")
