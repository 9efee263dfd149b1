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
from support.ctl import ctl, short_dir, start_with, status, wait_state
from support.server import APPS, VENV_TEST, free_port, run_capataz


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


# --- QA migration pass: real uwsgi.ini files --------------------------------


def config_error(r, *patterns):
    import re

    assert r.returncode == 64, f"exit {r.returncode}\nstderr: {r.stderr}"
    for p in patterns:
        assert re.search(p, r.stderr), f"{p!r} not in {r.stderr!r}"


def test_plugins_python3_is_accepted_with_no_effect(server_factory, tmp_path):
    """Debian/Ubuntu packaged inis say `plugins = python3`; Python is built in."""
    port = free_port()
    ini = tmp_path / "uwsgi.ini"
    ini.write_text(
        f"[uwsgi]\nplugins = python3\nplugin = python\nhttp = 127.0.0.1:{port}\n"
        f"pythonpath = {APPS}\nmodule = plain_app:application\n"
    )
    srv = server_factory(["--ini", str(ini)], http=None, port=port)
    assert requests.get(f"http://127.0.0.1:{port}/hello", timeout=5).text == "Hello, World!"
    assert "option 'plugins' has no effect in capataz" in srv.log()


def test_plugins_of_another_language_are_refused(tmp_path):
    ini = tmp_path / "uwsgi.ini"
    ini.write_text(f"[uwsgi]\nplugins = php\npythonpath = {APPS}\nmodule = plain_app\n")
    r = run_capataz(["--ini", str(ini)])
    config_error(r, r"uwsgi\.ini:2\b", r"'plugins'", r"Python WSGI apps only")


def test_any_key_used_as_a_placeholder(server_factory, tmp_path):
    """The DigitalOcean-tutorial style: custom keys as %(placeholders)."""
    port = free_port()
    ini = tmp_path / "uwsgi.ini"
    ini.write_text(
        f"[uwsgi]\nproject = plain_app\nbase = {APPS}\nchdir = %(base)\n"
        f"pythonpath = %(base)\nmodule = %(project):application\nhttp = 127.0.0.1:{port}\n"
    )
    server_factory(["--ini", str(ini)], http=None, port=port)
    assert requests.get(f"http://127.0.0.1:{port}/hello", timeout=5).text == "Hello, World!"


def test_unused_unknown_key_is_still_a_typo(tmp_path):
    ini = tmp_path / "uwsgi.ini"
    ini.write_text(f"[uwsgi]\nproject = plain_app\nmodule = %(project)\npythonpath = {APPS}\nharakri = 30\n")
    r = run_capataz(["--ini", str(ini)])
    config_error(r, r"uwsgi\.ini:5\b", r"unknown option 'harakri'", r"did you mean 'harakiri'", r"%\(harakri\)")


def test_log_format_from_ini_gunicorn_and_uwsgi_styles(server_factory, tmp_path):
    """log-format keeps its own %(...) atoms: the README's gunicorn line and
    uWSGI's variables both come out formatted."""
    for fmt, expected in [
        ('%(h)s "%(r)s" %(s)s', r'127\.0\.0\.1 "GET /hello\?x=1 HTTP/1\.1" 200\n'),
        ("%(addr) %(method) %(uri) %(status) 100%%", r"127\.0\.0\.1 GET /hello\?x=1 200 100%\n"),
        (
            '%(addr) - %(user) [%(ltime)] "%(method) %(uri) %(proto)" %(status) %(size) %(nope)',
            r'127\.0\.0\.1 - - \[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "GET /hello\?x=1 HTTP/1\.1" 200 \d+ %\(nope\)\n',
        ),
    ]:
        port = free_port()
        ini = tmp_path / "uwsgi.ini"
        ini.write_text(
            f"[uwsgi]\nhttp = 127.0.0.1:{port}\npythonpath = {APPS}\n"
            f"module = plain_app:application\nlog-format = {fmt}\n"
        )
        srv = server_factory(["--ini", str(ini)], http=None, port=port)
        assert requests.get(f"http://127.0.0.1:{port}/hello?x=1", timeout=5).status_code == 200
        srv.wait_log(r"(?m)^" + expected)
        srv.stop()


def test_section_header_typo_is_an_error(tmp_path):
    """[uswgi] used to be skipped silently, and its harakiri with it."""
    ini = tmp_path / "uwsgi.ini"
    ini.write_text(f"[uwsgi]\npythonpath = {APPS}\nmodule = plain_app\n\n[uswgi]\nharakiri = 30\n")
    r = run_capataz(["--ini", str(ini)])
    config_error(r, r"uwsgi\.ini:5\b", r"\[uswgi\]", r"did you mean \[uwsgi\]")


def test_chdir_to_a_missing_directory_is_a_config_error(tmp_path):
    """It used to have the master retry spawning forever ("cannot spawn worker 1")."""
    ini = tmp_path / "uwsgi.ini"
    ini.write_text(
        f"[uwsgi]\nhttp = 127.0.0.1:{free_port()}\npythonpath = {APPS}\nmodule = plain_app\n"
        f"chdir = {tmp_path}/nope\n"
    )
    r = run_capataz(["--ini", str(ini)], timeout=10)
    config_error(r, r"uwsgi\.ini:5\b", r"option 'chdir'", r"No such file or directory")


def test_reread_refuses_a_missing_chdir(server_factory):
    srv, sock = start_with(server_factory, "")
    srv.ini.write_text(srv.ini.read_text() + f"chdir = {srv.dir}/nope\n")
    r = ctl(sock, "reread")
    assert r.returncode != 0, r
    assert "option 'chdir'" in r.stdout + r.stderr and "No such file or directory" in r.stdout + r.stderr, r
    assert requests.get(f"http://127.0.0.1:{srv.port}/hello", timeout=5).text == "Hello, World!"


def test_chown_socket_sets_the_unix_socket_owner(server_factory):
    """chown-socket = user[:group] is applied to unix listener sockets after bind."""
    d = short_dir()
    port = free_port()
    # As root, hand it to nobody; otherwise only our own ids are allowed.
    uid, gid = (65534, 65534) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
    ini = d / "uwsgi.ini"
    ini.write_text(
        f"[uwsgi]\nhttp = 127.0.0.1:{port}\nsocket = {d}/app.sock\nchmod-socket = 660\n"
        f"chown-socket = {uid}:{gid}\npythonpath = {APPS}\nmodule = plain_app\n"
    )
    server_factory(["--ini", str(ini)], http=None, port=port, workdir=d)
    st = os.stat(d / "app.sock")
    assert (st.st_uid, st.st_gid, oct(st.st_mode & 0o777)) == (uid, gid, "0o660")


def test_chown_socket_to_an_unknown_user_fails_naming_it(tmp_path):
    ini = tmp_path / "uwsgi.ini"
    ini.write_text(
        f"[uwsgi]\nsocket = {tmp_path}/app.sock\nchown-socket = capataz-no-such-user\n"
        f"pythonpath = {APPS}\nmodule = plain_app\n"
    )
    r = run_capataz(["--ini", str(ini)], timeout=10)
    assert r.returncode != 0
    assert "chown-socket capataz-no-such-user: unknown user 'capataz-no-such-user'" in r.stderr, r.stderr
