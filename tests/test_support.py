"""Self-tests of the suite's own machinery, which need no capataz binary:
the raw-socket response parser, `Conn` against canned servers, the `Server`
helper against a stand-in process, and the test apps under wsgiref and the
Flask/Django test clients (so a failure elsewhere is capataz's, not the app's).
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from support import server as server_mod
from support.rawhttp import (
    ConnectionClosedEarly,
    Conn,
    NeedMore,
    get,
    parse_response,
    parse_responses,
    request_bytes,
)
from support.server import APPS, Server, children, pid_alive

# --- parse_response ---------------------------------------------------------


def test_parse_content_length():
    buf = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhelloEXTRA"
    resp, used = parse_response(buf)
    assert (resp.status, resp.reason, resp.body, resp.framing) == (200, "OK", b"hello", "length")
    assert resp.header("x-a") == "b"
    assert buf[used:] == b"EXTRA"


def test_parse_needs_more():
    with pytest.raises(NeedMore):
        parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel")
    with pytest.raises(NeedMore):
        parse_response(b"HTTP/1.1 200 OK\r\nContent-")
    with pytest.raises(NeedMore):
        parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")


def test_parse_chunked_with_extensions_and_trailers():
    buf = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nT: 1\r\n\r\nNEXT"
    )
    resp, used = parse_response(buf)
    assert resp.body == b"hello world"
    assert resp.chunk_sizes == [5, 6]
    assert resp.trailers == [("T", "1")]
    assert resp.complete and buf[used:] == b"NEXT"


def test_parse_incomplete_at_eof():
    resp, _ = parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", eof=True)
    assert resp.body == b"hello" and not resp.complete
    resp, _ = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", eof=True)
    assert resp.body == b"abc" and not resp.complete


def test_parse_close_delimited_and_head_and_interim():
    resp, _ = parse_response(b"HTTP/1.0 200 OK\r\n\r\nuntil close", eof=True)
    assert resp.framing == "close" and resp.body == b"until close"
    with pytest.raises(NeedMore):
        parse_response(b"HTTP/1.0 200 OK\r\n\r\nuntil close")
    resp, used = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", method="HEAD")
    assert resp.body == b"" and used == len(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n")
    many = parse_responses(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"
    )
    assert [r.status for r in many] == [100, 204, 200]


def test_request_bytes():
    raw = request_bytes("POST", "/x", body=b"abc", headers=[("X-A", "1")])
    assert raw == b"POST /x HTTP/1.1\r\nHost: localhost\r\nX-A: 1\r\nContent-Length: 3\r\n\r\nabc"


# --- Conn against canned servers -----------------------------------------


class Canned:
    """A one-shot TCP server that answers the first read with fixed bytes."""

    def __init__(self, reply: bytes, close: bool = True):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.reply, self.close = reply, close
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        conn, _ = self.sock.accept()
        conn.recv(65536)
        conn.sendall(self.reply)
        if self.close:
            conn.close()
        else:
            threading.Event().wait(3)
            conn.close()
        self.sock.close()


def test_conn_reads_pipelined_responses_in_order():
    canned = Canned(
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n",
        close=False,
    )
    with Conn(canned.port) as conn:
        conn.send(b"anything")
        first = conn.read_response()
        second = conn.read_response()
        assert (first.body, [i.status for i in first.interim]) == (b"one", [100])
        assert second.body == b"two" and second.framing == "chunked"
        assert conn.is_open(0.2)


def test_conn_detects_close_and_truncation():
    canned = Canned(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
    with Conn(canned.port) as conn:
        conn.send(b"x")
        resp = conn.read_response()
        assert not resp.complete and resp.body == b"short"
        assert conn.eof and conn.wait_closed(1)
    canned = Canned(b"")
    with Conn(canned.port) as conn:
        conn.send(b"x")
        with pytest.raises(ConnectionClosedEarly):
            conn.read_response()


def test_get_against_http_server():
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            body = self.path.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        port = httpd.server_address[1]
        resp = get(port, "/some/path?x=1")
        assert resp.status == 200 and resp.body == b"/some/path?x=1"
        assert resp.header("Date")
        with Conn(port) as conn:  # keep-alive with the stdlib server
            for i in range(3):
                conn.send(request_bytes("GET", f"/k{i}"))
                assert conn.read_response().body == f"/k{i}".encode()
    finally:
        httpd.shutdown()
        httpd.server_close()


# --- Server helper against a stand-in binary -------------------------------

STAND_IN = textwrap.dedent(
    """\
    import os, signal, sys, time, importlib.util
    from wsgiref.simple_server import make_server, WSGIRequestHandler
    args = sys.argv[1:]
    addr = args[args.index("--http") + 1]
    host, port = addr.rsplit(":", 1)
    spec = importlib.util.spec_from_file_location("app", args[args.index("--wsgi-file") + 1])
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    if os.fork() == 0:  # a child, like a worker, to check teardown reaps it
        time.sleep(120); os._exit(0)
    print("stand-in starting", file=sys.stderr, flush=True)
    httpd = make_server(host, int(port), mod.application)
    httpd.serve_forever()
    """
)


def test_server_helper_lifecycle(tmp_path, monkeypatch):
    script = tmp_path / "stand-in"
    script.write_text(f"#!{sys.executable}\n" + STAND_IN)
    script.chmod(0o755)
    monkeypatch.setenv("CAPATAZ_BIN", str(script))
    srv = Server(["--wsgi-file", APPS / "plain_app.py"], workdir=tmp_path / "w")
    try:
        assert get(srv.port, "/hello").body == b"Hello, World!"
        srv.wait_log(r"stand-in starting")
        mark = srv.mark()
        get(srv.port, "/errors?tag=zzz")
        srv.wait_log(r"wsgi-errors-marker zzz", since=mark)
        kids = children(srv.pid)
        assert len(kids) == 1
    finally:
        srv.stop()
    assert srv.proc.returncode is not None
    assert not pid_alive(kids[0]), "teardown must reap what the master left behind"


def test_server_helper_reports_early_exit(tmp_path, monkeypatch):
    script = tmp_path / "dies"
    script.write_text(f"#!{sys.executable}\nimport sys\nprint('boom: bad config', file=sys.stderr)\nsys.exit(64)\n")
    script.chmod(0o755)
    monkeypatch.setenv("CAPATAZ_BIN", str(script))
    with pytest.raises(server_mod.ServerExited, match="boom: bad config"):
        Server([], workdir=tmp_path / "w")
    r = server_mod.run_capataz(["--anything"])
    assert r.returncode == 64 and "boom" in r.stderr


def test_clean_env_strips_capataz_and_python_vars(monkeypatch):
    monkeypatch.setenv("CAPATAZ_PROCESSES", "9")
    monkeypatch.setenv("PYTHONPATH", "/nowhere")
    env = server_mod.clean_env({"CAPATAZ_THREADS": "2"})
    assert "CAPATAZ_PROCESSES" not in env and "PYTHONPATH" not in env
    assert env["CAPATAZ_THREADS"] == "2"


# --- the apps, checked without capataz --------------------------------------


def load(name):
    spec = importlib.util.spec_from_file_location(f"selftest_{name}", APPS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def wsgiref_call(app, method, target, body=b"", headers=()):
    """Run a WSGI app once under wsgiref (the PEP 3333 reference handler)."""
    from wsgiref.handlers import SimpleHandler
    from wsgiref.util import setup_testing_defaults

    path, _, query = target.partition("?")
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query,
               "CONTENT_LENGTH": str(len(body)), "SERVER_PROTOCOL": "HTTP/1.1"}
    for k, v in headers:
        environ["HTTP_" + k.upper().replace("-", "_")] = v
    setup_testing_defaults(environ)
    out, err = io.BytesIO(), io.StringIO()
    handler = SimpleHandler(io.BytesIO(body), out, err, environ, multithread=False)
    handler.http_version = "1.1"
    handler.run(app)
    resp, _ = parse_response(out.getvalue(), method, eof=True)
    return resp, err.getvalue()


@pytest.fixture(scope="module")
def plain():
    return load("plain_app")


def test_plain_app_input_modes(plain):
    body = b"line one\nline two\n\nlast line without newline"
    for mode in ("read", "read-n", "readline", "readline-n", "readlines", "iter", "read-none", "read-negative"):
        resp, _ = wsgiref_call(plain.application, "POST", f"/input?mode={mode}&n=4", body)
        got = json.loads(resp.body)
        assert "".join(got["pieces"]).encode("latin-1") == body, mode
        assert got["after"] == ["", "", "", "", []], mode


def test_plain_app_endpoints(plain):
    app = plain.application
    assert wsgiref_call(app, "GET", "/hello")[0].body == b"Hello, World!"
    assert wsgiref_call(app, "GET", "/write")[0].body == b"part1-part2-part3"
    resp, _ = wsgiref_call(app, "GET", "/lazy")
    assert resp.body == b"lazy-body" and resp.header("X-Lazy") == "yes"
    resp, _ = wsgiref_call(app, "GET", "/exc-info-before")
    assert resp.status == 500 and resp.header("X-Replaced") == "1" and not resp.has_header("X-Original")
    resp, err = wsgiref_call(app, "GET", "/exc-info-after?key=ea")
    assert resp.status == 200 and b"should never be sent" not in resp.body
    assert "ValueError: error after headers were sent" in err
    assert wsgiref_call(app, "GET", "/state?key=ea")[0].body.count(b'"reraised": true') == 1
    assert wsgiref_call(app, "GET", "/file?offset=5")[0].body == plain.file_bytes()[5:]
    data = os.urandom(3000)
    got = json.loads(wsgiref_call(app, "POST", "/echo", data)[0].body)
    assert got["sha256"] == hashlib.sha256(data).hexdigest() and got["len"] == 3000
    assert wsgiref_call(app, "GET", "/close?mode=ok&key=k1")[0].body == b"c" * 30
    wsgiref_call(app, "GET", "/close?mode=error&key=k2")
    for key in ("k1", "k2"):
        assert json.loads(wsgiref_call(app, "GET", f"/state?key={key}")[0].body)["close"] == 1, key
    resp, err = wsgiref_call(app, "GET", "/error-before")
    assert resp.status == 500 and "boom-before-headers" in err
    env = json.loads(wsgiref_call(app, "GET", "/environ", headers=[("X-A", "b")])[0].body)
    assert env["HTTP_X_A"] == ["str", "b"] and env["wsgi.version"] == ["tuple", [1, 0]]
    assert wsgiref_call(app, "GET", "/single")[0].body == b"s" * 100


def test_plain_app_file_bytes_formula_matches_tests(plain):
    from test_wsgi_contract import file_bytes

    assert plain.file_bytes() == file_bytes()


def test_flask_app_under_test_client():
    flask_app = load("flask_app")
    c = flask_app.app.test_client()
    assert c.get("/").data == b"flask ok"
    assert c.post("/form", data={"name": "a", "color": "b"}).data == b"hello a, you like b"
    r = c.post("/upload", data={"file": (io.BytesIO(b"abc"), "f.txt"), "note": "n"})
    assert r.json["sha256"] == hashlib.sha256(b"abc").hexdigest()
    assert c.get("/redirect").status_code == 302
    assert b"chunk 2" in c.get("/stream?n=3&delay=0").data


def test_django_project_under_test_client():
    pytest.importorskip("django", reason="django comes with .venv-test")

    code = textwrap.dedent(
        """
        import os, sys, json, hashlib
        sys.path.insert(0, sys.argv[1])
        os.environ["DJANGO_SETTINGS_MODULE"] = "djproject.settings"
        import django; django.setup()
        from django.test import Client
        from django.core.files.uploadedfile import SimpleUploadedFile
        c = Client(enforce_csrf_checks=True)
        r = c.get("/form/"); assert r.status_code == 200, r
        token = r.cookies["csrftoken"].value
        import re
        form_token = re.search(r"value='([^']+)'", r.content.decode()).group(1)
        assert c.post("/form/", {"name": "x"}).status_code == 403
        r = c.post("/form/", {"name": "x", "csrfmiddlewaretoken": form_token})
        assert r.content == b"hello x from django", r.content
        big = os.urandom(5 * 1024 * 1024)
        r = c.post("/upload/", {"csrfmiddlewaretoken": form_token, "file": SimpleUploadedFile("b.bin", big)})
        got = json.loads(r.content)
        assert got["storage"] == "TemporaryUploadedFile" and got["sha256"] == hashlib.sha256(big).hexdigest(), got
        r = c.get("/redirect/"); assert r.status_code == 302 and r["Location"] == "/target/"
        r = c.get("/stream/?n=2&delay=0"); assert r.streaming
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(APPS / "djproject")], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


def test_sigint_reaches_stand_in(tmp_path, monkeypatch):
    """Server.stop sends SIGINT first: a process that exits on SIGINT is not SIGKILLed."""
    script = tmp_path / "polite"
    script.write_text(
        f"#!{sys.executable}\n"
        "import signal, sys, time, socket\n"
        "signal.signal(signal.SIGINT, lambda *a: sys.exit(7))\n"
        "time.sleep(60)\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("CAPATAZ_BIN", str(script))
    srv = Server([], workdir=tmp_path / "w", wait=False)
    time.sleep(0.5)
    srv.stop()
    assert srv.proc.returncode == 7
