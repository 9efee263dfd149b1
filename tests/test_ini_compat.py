"""A production-shaped uwsgi.ini runs unchanged (issue 6 item 1), and one
ini holds the web app, a side program and a shared socket (the README's
"One config for everything").

Every option of the issue's list is in it, the logging ones included:
log-master (workers' output relayed by the master, prefixed; on by
default, tests/test_logging.py) and log-sendfile (sendfile requests logged
despite disable-logging), memory-report, log-date, log-slow, log-4xx,
log-micros (tests/test_request_log.py).
"""

from __future__ import annotations

import os
import time

import requests

from support import uwsgi
from support.ctl import ctl, short_dir, status, wait_state
from support.server import APPS, VENV_TEST, free_port


def production_ini(d, port) -> str:
    (d / "static").mkdir()
    (d / "static" / "site.css").write_text("body{}")
    (d / "reload.touch").write_text("")
    # Our own ids: the test venv's interpreter lives under a 0700 home, so
    # another user could not run it; the option path is exercised all the same.
    user = f"uid = {os.geteuid()}\ngid = {os.getegid()}\n"
    return f"""; The shape most production uwsgi.ini files have.
[uwsgi]
socket = {d}/app.sock
http = 127.0.0.1:{port}
chmod-socket = 666
master = true
processes = 2
threads = 2
harakiri = 30
max-requests = 1000
chdir = {APPS}
pythonpath = {APPS}
virtualenv = {VENV_TEST}
env = DJANGO_SETTINGS_MODULE=project.settings
module = plain_app:application
{user}vacuum = true
touch-reload = {d}/reload.touch
static-map = /static={d}/static
disable-logging = true
memory-report = true
log-master = true
log-date = true
log-slow = 5000
log-4xx = true
log-sendfile = true
log-micros = true
control-socket = {d}/ctl.sock
"""


def test_production_shaped_uwsgi_ini_serves(server_factory):
    d = short_dir()
    port = free_port()
    ini = d / "uwsgi.ini"
    ini.write_text(production_ini(d, port))
    srv = server_factory(["--ini", str(ini)], http=None, port=port, workdir=d)
    r = requests.get(f"http://127.0.0.1:{port}/hello", timeout=5)
    assert (r.status_code, r.text) == (200, "Hello, World!")
    r = requests.get(f"http://127.0.0.1:{port}/static/site.css", timeout=5)
    assert (r.status_code, r.text) == (200, "body{}")
    resp, _ = uwsgi.request(str(d / "app.sock"), uwsgi.make_vars(uri="/hello"))
    assert resp.status == 200 and resp.body == b"Hello, World!"
    assert oct(os.stat(d / "app.sock").st_mode & 0o777) == "0o666"
    assert "option 'master' has no effect in capataz" in srv.log()
    assert "GET /hello" not in srv.log(), "disable-logging"
    # log-sendfile: the static file went out with sendfile, so it is logged,
    # with log-date's stamp, memory-report and log-micros.
    srv.wait_log(r"rss usage: .* GET /static/site\.css => generated 6 bytes in \d+ micros")
    # log-4xx
    assert requests.get(f"http://127.0.0.1:{port}/static/missing.css", timeout=5).status_code == 404
    srv.wait_log(r"GET /static/missing\.css => generated \d+ bytes in \d+ micros \(HTTP/1\.1 404\)")


def test_one_config_for_everything(server_factory):
    """The README example: web app, a side program and a shared socket."""
    d = short_dir()
    port, shared_port = free_port(), free_port()
    (d / "worker.py").write_text(
        "import socket, sys, time\n"
        "s = socket.fromfd(int(sys.argv[1]), socket.AF_INET, socket.SOCK_STREAM)\n"
        "print('side worker up', flush=True)\n"
        "while True:\n"
        "    c, _ = s.accept(); c.sendall(b'pong\\n'); c.close()\n"
    )
    ini = d / "app.ini"
    ini.write_text(
        f"""[uwsgi]
http = 127.0.0.1:{port}
wsgi-file = {APPS}/plain_app.py
processes = 2
control-socket = %d/ctl.sock

[socket:pong]
host = 127.0.0.1
port = {shared_port}

[program:pong]
command = python3 %(here)s/worker.py $(capataz.sockets.pong)
stdout_logfile = %(here)s/pong.log
"""
    )
    srv = server_factory(["--ini", str(ini)], http=None, port=port, workdir=d)
    sock = d / "ctl.sock"
    wait_state(sock, "pong", "RUNNING")
    import socket as so

    with so.create_connection(("127.0.0.1", shared_port), timeout=5) as c:
        assert c.recv(10) == b"pong\n"
    assert requests.get(f"http://127.0.0.1:{port}/hello", timeout=5).text == "Hello, World!"
    r = ctl(sock, "status")
    assert r.returncode == 0, r
    assert [line.split()[:2] for line in r.stdout.splitlines()[1:]] == [
        ["web:1", "RUNNING"],
        ["web:2", "RUNNING"],
        ["pong", "RUNNING"],
    ]
    deadline = time.monotonic() + 5
    while "side worker up" not in (d / "pong.log").read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "side worker up" in (d / "pong.log").read_text()
    assert status(sock)["pong"]["pid"] > 0
