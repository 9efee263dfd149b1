"""The request log (issue 7 item 1): logto and its reopen on SIGUSR1,
log-maxsize rotation, log-4xx / log-5xx / log-slow with disable-logging,
log-format (gunicorn atoms and json), log-date, log-micros, memory-report.

The app's own stdout/stderr (print, tracebacks) go to the logto file too,
relayed by the master with a "[worker N|pid P] " prefix (tests/test_logging.py
has the relay's own tests); Python still buffers print() on a pipe unless it
is flushed (flush=True, or a line-buffered stream). Access-log flushes are
always whole lines in one write to an O_APPEND file, straight from the
worker.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import requests

from support.server import plain_args, run_capataz
from support.server import wait_file as wait_for

APP = '''
import sys, time
def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    q = environ.get("QUERY_STRING", "")
    if path == "/print":
        print("app-says-" + q, flush=True)
        sys.stderr.write("app-err-" + q + "\\n"); sys.stderr.flush()
    if path == "/sleep":
        time.sleep(int(q) / 1000)
    status = "200 OK"
    if path.startswith("/status/"):
        status = path[len("/status/"):] + " X"
    start_response(status, [("Content-Type", "text/plain"), ("X-Out", "out-" + q)])
    return [b"hi"]
'''


def app_args(tmp_path: Path, *extra: str) -> list[str]:
    (tmp_path / "rl_app.py").write_text(APP)
    return ["--wsgi-file", str(tmp_path / "rl_app.py"), "--processes", "1", "--threads", "1", *extra]


def get(srv, target, **kw):
    return requests.get(srv.url + target, timeout=5, **kw)


def test_logto_gets_master_worker_access_and_app_output(server_factory, tmp_path):
    logf = tmp_path / "app.log"
    srv = server_factory(app_args(tmp_path, "--logto", str(logf)))
    assert get(srv, "/print?one").text == "hi"
    wait_for(logf, r"^\[worker 1\|pid \d+\] app-says-one$")
    wait_for(logf, r"^\[worker 1\|pid \d+\] app-err-one$")
    wait_for(logf, r"^\[pid: \d+\|app: 0\|req: \d+/\d+\] 127\.0\.0\.1 .* GET /print\?one => generated 2 bytes")
    text = logf.read_text()
    assert "capataz master[" in text and "capataz worker 1[" in text
    # Nothing of it went to the old stderr.
    assert "GET /print" not in srv.log()


def test_usr1_reopens_after_logrotate_moves_the_file(server_factory, tmp_path):
    logf = tmp_path / "app.log"
    srv = server_factory(app_args(tmp_path, "--logto", str(logf)))
    get(srv, "/print?before")
    wait_for(logf, r"GET /print\?before")
    os.rename(logf, tmp_path / "app.log.old")
    srv.signal(signal.SIGUSR1)
    wait_for(logf, r"SIGUSR1: reopened")
    deadline = time.monotonic() + 5
    # The workers reopen asynchronously: retry until the new file gets the line.
    while time.monotonic() < deadline:
        get(srv, "/print?after")
        if "GET /print?after" in logf.read_text():
            break
        time.sleep(0.1)
    wait_for(logf, r"^\[worker 1\|pid \d+\] app-says-after$")
    wait_for(logf, r"GET /print\?after")
    assert srv.proc.poll() is None and len(srv.workers()) == 1


def test_rotation_by_size_keeps_backups(server_factory, tmp_path):
    logf = tmp_path / "app.log"
    srv = server_factory(
        app_args(tmp_path, "--logto", str(logf), "--log-maxsize", "2000", "--log-backups", "2")
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not (tmp_path / "app.log.2").exists():
        for _ in range(10):
            get(srv, "/x" + "y" * 100)
        time.sleep(0.15)
    assert (tmp_path / "app.log.1").exists() and (tmp_path / "app.log.2").exists()
    assert not (tmp_path / "app.log.3").exists()
    assert (tmp_path / "app.log.1").stat().st_size >= 2000
    get(srv, "/still-logging")
    wait_for(logf, r"GET /still-logging")


def test_disabled_logging_still_logs_4xx_5xx_and_slow(server_factory, tmp_path):
    srv = server_factory(
        app_args(tmp_path, "--disable-logging", "--log-4xx", "--log-5xx", "--log-slow", "150")
    )
    mark = srv.mark()
    get(srv, "/fast")
    get(srv, "/status/404")
    get(srv, "/status/503")
    get(srv, "/sleep?300")
    get(srv, "/status/302", allow_redirects=False)
    srv.wait_log(r"GET /sleep\?300 => generated", since=mark)
    text = srv.log_since(mark)
    assert "GET /status/404 " in text and "GET /status/503 " in text
    assert "GET /fast " not in text and "GET /status/302 " not in text


def test_only_4xx_without_5xx(server_factory, tmp_path):
    srv = server_factory(app_args(tmp_path, "--disable-logging", "--log-4xx"))
    mark = srv.mark()
    get(srv, "/status/500")
    get(srv, "/status/400")
    srv.wait_log(r"GET /status/400 ", since=mark)
    assert "GET /status/500 " not in srv.log_since(mark)


def test_gunicorn_atoms(server_factory, tmp_path):
    fmt = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(D)s %(T)s %(L)s %(m)s %(U)s %(q)s %(H)s %(p)s %({x-req}i)s %({X-Out}o)s %({content-type}o)s %({absent}i)s %%'
    srv = server_factory(app_args(tmp_path, "--log-format", fmt))
    mark = srv.mark()
    r = get(srv, "/status/201?a=1", headers={"Referer": "http://ref/", "User-Agent": "ua/1", "X-Req": "rv 1"})
    assert r.status_code == 201
    m = srv.wait_log(
        r'127\.0\.0\.1 - - \[(\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] '
        r'"GET /status/201\?a=1 HTTP/1\.1" 201 2 "http://ref/" "ua/1" (\d+) (\d+) (\d+\.\d{6}) '
        r'GET /status/201 a=1 HTTP/1\.1 <(\d+)> rv 1 out-a=1 text/plain - %\n',
        since=mark,
    )
    assert int(m[3]) == int(m[2]) // 1_000_000


def test_json_format_escapes(server_factory, tmp_path):
    srv = server_factory(app_args(tmp_path, "--log-format", "json"))
    mark = srv.mark()
    get(srv, '/q?x="\\', headers={"User-Agent": 'a"b\\c\td\xe9'})
    m = srv.wait_log(r'^\{"time".*"uri":"/q.*\}$', since=mark, flags=re.M)
    doc = json.loads(m[0])
    assert doc["uri"] == '/q?x=%22%5C' or doc["uri"] == '/q?x="\\'
    # requests sends the header in latin-1: the lone 0xe9 byte is not UTF-8,
    # so the log writes U+FFFD and the line stays valid JSON.
    assert doc["user_agent"] == 'a"b\\c\td\ufffd'
    assert doc["status"] == 200 and doc["bytes"] == 2 and doc["method"] == "GET"
    assert doc["referer"] is None and isinstance(doc["micros"], int)


def test_log_date_micros_memory_report(server_factory, tmp_path):
    srv = server_factory(app_args(tmp_path, "--log-date", "--log-micros", "--memory-report"))
    mark = srv.mark()
    get(srv, "/m")
    srv.wait_log(
        r"^[A-Z][a-z]{2} [A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2} \d{4} - "
        r"\{address space usage: \d+ bytes/\d+MB\} \{rss usage: \d+ bytes/\d+MB\} "
        r"\[pid: \d+.* GET /m => generated 2 bytes in \d+ micros \(HTTP/1\.1 200\)",
        since=mark,
        flags=re.M,
    )


def test_log_date_strftime(server_factory, tmp_path):
    srv = server_factory(app_args(tmp_path, "--log-date", "%Y@%H"))
    mark = srv.mark()
    get(srv, "/d")
    srv.wait_log(r"^\d{4}@\d{2} - \[pid: .* GET /d => generated 2 bytes in \d+ msecs", since=mark, flags=re.M)


def test_log_sendfile_logs_static_files_with_logging_disabled(server_factory, tmp_path):
    """uWSGI's log-sendfile: with disable-logging, requests answered with
    sendfile (a static-map file) are still logged; others are not."""
    static = tmp_path / "static"
    static.mkdir()
    (static / "big.bin").write_bytes(b"z" * 100_000)
    srv = server_factory(plain_args("--disable-logging", "--log-sendfile", "--static-map", f"/s={static}"))
    mark = srv.mark()
    assert len(get(srv, "/s/big.bin").content) == 100_000
    assert get(srv, "/file").status_code == 200  # wsgi.file_wrapper
    assert get(srv, "/hello").status_code == 200
    srv.wait_log(r"GET /s/big\.bin => generated 100000 bytes", since=mark)
    srv.wait_log(r"GET /file => generated \d+ bytes", since=mark)
    time.sleep(0.3)
    assert "GET /hello" not in srv.log_since(mark)


def test_log_master_and_log_sendfile_are_accepted(tmp_path):
    for option in ("log-master", "log-sendfile"):
        ini = tmp_path / "uwsgi.ini"
        ini.write_text(f"[uwsgi]\nhttp = :0\nmodule = app\n{option} = true\n")
        r = run_capataz(["--ini", ini, "--print-config"])
        assert r.returncode == 0, r.stderr
        assert re.search(rf"^{option}\s*=\s*true\b.*uwsgi\.ini:4", r.stdout, re.M), r.stdout
