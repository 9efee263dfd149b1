"""The WSGI contract (PEP 3333; DESIGN §6), one test per bullet.

One server (1 process, 1 thread) serves tests/apps/plain_app.py for the
whole file, so module-level counters in the app (close() calls) are seen by
every request.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest
import requests

from support.rawhttp import ConnectionClosedEarly, Conn, request_bytes
from support.server import Server, plain_args


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(
        plain_args("--processes", "1", "--threads", "1", "--post-buffering", "65536"),
        workdir=tmp_path_factory.mktemp("wsgi"),
        name="wsgi",
    )
    yield s
    s.stop()


def environ_of(srv, target="/environ", headers=None, version="HTTP/1.1", method="GET", body=b""):
    hdrs = list(headers or []) + [("Connection", "close")]
    with Conn(srv.port) as conn:
        conn.send(request_bytes(method, target, version, hdrs, body))
        resp = conn.read_response(method)
    assert resp.status == 200, resp
    return json.loads(resp.body)


def value(env, key):
    assert key in env, f"{key} missing from environ: {sorted(env)}"
    return env[key][1]


def file_bytes():
    # same formula as plain_app.file_bytes()
    return bytes((i * 7 + i // 256) % 256 for i in range(300_000))


def state(srv, key):
    return requests.get(f"{srv.url}/state", params={"key": key}, timeout=5).json()


def pid_of(srv):
    r = requests.get(f"{srv.url}/pid", timeout=5)
    assert r.status_code == 200
    return int(r.text)


# --- environ ------------------------------------------------------------


def test_environ_keys_and_values_are_native_strings(srv):
    """PEP 3333 "Native strings": every CGI key and value is a str."""
    env = environ_of(srv, headers=[("X-Thing", "abc")])
    for key, (typ, _val) in env.items():
        if "." in key or key.startswith("__"):
            continue  # wsgi.* and server extension keys (capataz.*) are not CGI strings
        assert typ == "str", f"environ[{key!r}] is {typ}, not str"
    assert value(env, "HTTP_X_THING") == "abc"


def test_environ_header_latin1_round_trip(srv):
    """PEP 3333: header bytes are decoded as latin-1, so 0xE9 arrives as 'é' (U+00E9)."""
    raw = b"GET /environ HTTP/1.1\r\nHost: localhost\r\nX-Latin: caf\xe9\r\nConnection: close\r\n\r\n"
    with Conn(srv.port) as conn:
        conn.send(raw)
        resp = conn.read_response()
    assert resp.status == 200, resp
    env = json.loads(resp.body)
    assert value(env, "HTTP_X_LATIN") == "caf\xe9"


def test_content_type_and_length_not_duplicated_as_http_vars(srv):
    """PEP 3333 / CGI: CONTENT_TYPE and CONTENT_LENGTH, never HTTP_CONTENT_*."""
    env = environ_of(
        srv, method="POST", headers=[("Content-Type", "text/x-test")], body=b"12345"
    )
    assert value(env, "CONTENT_TYPE") == "text/x-test"
    assert value(env, "CONTENT_LENGTH") == "5"
    assert "HTTP_CONTENT_TYPE" not in env
    assert "HTTP_CONTENT_LENGTH" not in env


def test_headers_with_underscore_are_dropped(srv):
    """DESIGN §6: X_Forwarded_For would collide with X-Forwarded-For as HTTP_X_FORWARDED_FOR."""
    env = environ_of(srv, headers=[("X_Evil", "underscore"), ("X-Good", "dash")])
    assert value(env, "HTTP_X_GOOD") == "dash"
    assert "HTTP_X_EVIL" not in env
    env = environ_of(srv, headers=[("X-Auth-User", "real"), ("X_Auth_User", "spoofed")])
    assert value(env, "HTTP_X_AUTH_USER") == "real"


def test_script_name_empty_by_default(srv):
    """PEP 3333 SCRIPT_NAME: "" when the app is mounted at the root (no `mount`)."""
    env = environ_of(srv, target="/environ/sub")
    assert value(env, "SCRIPT_NAME") == ""
    assert value(env, "PATH_INFO") == "/environ/sub"


def test_url_scheme_http(srv):
    """PEP 3333 wsgi.url_scheme: "http" on a plain TCP listener."""
    assert value(environ_of(srv), "wsgi.url_scheme") == "http"


def test_wsgi_version_run_once_and_flags_single(srv):
    """PEP 3333: wsgi.version (1, 0); run_once False; multithread/multiprocess False with 1x1."""
    env = environ_of(srv)
    assert env["wsgi.version"] == ["tuple", [1, 0]]
    assert env["wsgi.run_once"] == ["bool", False]
    assert env["wsgi.multithread"] == ["bool", False]
    assert env["wsgi.multiprocess"] == ["bool", False]
    assert env["wsgi.input_terminated"] == ["bool", True]


def test_multithread_and_multiprocess_reflect_options(server_factory):
    """PEP 3333: wsgi.multithread is true with threads > 1, wsgi.multiprocess with processes > 1."""
    s = server_factory(plain_args("--processes", "2", "--threads", "2"))
    env = environ_of(s)
    assert env["wsgi.multithread"] == ["bool", True]
    assert env["wsgi.multiprocess"] == ["bool", True]
    assert env["wsgi.run_once"] == ["bool", False]


def test_wsgi_errors_writable(srv):
    """PEP 3333 wsgi.errors: write(), writelines(), flush(); text lands in the server log."""
    mark = srv.mark()
    environ_of(srv)
    srv.wait_log(r"wsgi\.errors is writable", since=mark)
    srv.wait_log(r"wsgi\.errors writelines", since=mark)


def test_cgi_variables_present(srv):
    """PEP 3333 required CGI variables, plus REMOTE_ADDR/REMOTE_PORT/REQUEST_URI."""
    with Conn(srv.port) as conn:
        local_port = conn.sock.getsockname()[1]
        conn.send(request_bytes("GET", "/environ/a%20b?x=1&y=%20", headers=[("Connection", "close")]))
        resp = conn.read_response()
    env = json.loads(resp.body)
    assert value(env, "REQUEST_METHOD") == "GET"
    assert value(env, "PATH_INFO") == "/environ/a b"
    assert value(env, "QUERY_STRING") == "x=1&y=%20"
    assert value(env, "REQUEST_URI") == "/environ/a%20b?x=1&y=%20"
    assert value(env, "SERVER_PROTOCOL") == "HTTP/1.1"
    assert value(env, "SERVER_NAME") != ""
    assert value(env, "SERVER_PORT") == str(srv.port)
    assert value(env, "REMOTE_ADDR") == "127.0.0.1"
    assert value(env, "REMOTE_PORT") == str(local_port)
    assert value(env, "HTTP_HOST") == "localhost"


def test_server_protocol_http10(srv):
    """PEP 3333 SERVER_PROTOCOL is the request's version."""
    env = environ_of(srv, version="HTTP/1.0")
    assert value(env, "SERVER_PROTOCOL") == "HTTP/1.0"


def test_path_info_percent_decoded_as_latin1(srv):
    """PEP 3333: PATH_INFO is the percent-decoded path, bytes decoded as latin-1."""
    env = environ_of(srv, target="/environ/caf%C3%A9/%E9?q=caf%C3%A9")
    assert value(env, "PATH_INFO") == "/environ/caf\xc3\xa9/\xe9"
    assert value(env, "QUERY_STRING") == "q=caf%C3%A9"
    assert value(env, "REQUEST_URI") == "/environ/caf%C3%A9/%E9?q=caf%C3%A9"


def test_query_string_empty_when_absent(srv):
    """PEP 3333: QUERY_STRING may be empty but is a str ("" when no '?')."""
    env = environ_of(srv)
    assert env.get("QUERY_STRING", ["str", ""])[1] == ""


# --- wsgi.input -----------------------------------------------------------

BODY = b"line one\nline two\n\nlast line without newline"


@pytest.mark.parametrize(
    "mode,expected",
    [
        ("read", [BODY]),
        ("read-negative", [BODY]),
        ("read-none", [BODY]),
        ("read-n", [BODY[i : i + 7] for i in range(0, len(BODY), 7)] + [b""]),
        ("readline", BODY.splitlines(keepends=True) + [b""]),
        (
            "readline-n",
            [b"line", b" one", b"\n", b"line", b" two", b"\n", b"\n", b"last", b" lin", b"e wi", b"thou", b"t ne",
             b"wlin", b"e", b""],
        ),
        ("readlines", BODY.splitlines(keepends=True)),
        ("iter", BODY.splitlines(keepends=True)),
    ],
)
def test_wsgi_input_methods(srv, mode, expected):
    """PEP 3333 wsgi.input: read(), read(n), readline(), readline(n), readlines(), __iter__;
    past the end every call returns b'' immediately (the server must not block)."""
    n = {"read-n": "7", "readline-n": "4"}.get(mode, "1")
    r = requests.post(f"{srv.url}/input", params={"mode": mode, "n": n}, data=BODY, timeout=10)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["types"] == ["bytes"] or got["types"] == [], got
    assert [p.encode("latin-1") for p in got["pieces"]] == expected
    assert got["after"] == ["", "", "", "", []]


def test_wsgi_input_does_not_read_past_body_on_keepalive(srv):
    """PEP 3333 + RFC 9112 §6.3: read() on a Content-Length body returns exactly it,
    even when the next pipelined request already sits in the socket."""
    first = request_bytes("POST", "/input?mode=read", body=b"exactly-this")
    second = request_bytes("GET", "/hello")
    with Conn(srv.port) as conn:
        conn.send(first + second)
        r1 = conn.read_response()
        r2 = conn.read_response()
    assert r1.status == 200
    assert json.loads(r1.body)["pieces"] == ["exactly-this"]
    assert r2.status == 200 and r2.body == b"Hello, World!"


def test_wsgi_input_read_on_empty_body(srv):
    """PEP 3333: a GET without a body reads b'' at once."""
    r = requests.get(f"{srv.url}/input", params={"mode": "read"}, timeout=5)
    assert r.json()["pieces"] == [""]


def test_chunked_request_body_decoded(srv):
    """PEP 3333 wsgi.input_terminated / RFC 9112 §7.1: the app sees the decoded body."""
    raw = (
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: text/plain\r\nConnection: close\r\n\r\n"
        b"5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\n\r\n"
    )
    with Conn(srv.port) as conn:
        conn.send(raw)
        resp = conn.read_response()
    got = json.loads(resp.body)
    assert got["body"] == "hello 0123456789"
    assert got["len"] == 16
    assert got["input_terminated"] is True


def test_small_body_not_spooled(srv):
    """DESIGN §2.2: a body within post-buffering stays in memory (capataz.input_spooled False)."""
    body = os.urandom(1000)
    got = requests.post(f"{srv.url}/echo", data=body, timeout=10).json()
    assert got["len"] == 1000
    assert got["sha256"] == hashlib.sha256(body).hexdigest()
    assert got["spooled"] is False


def test_large_body_spooled_to_temp_file(srv):
    """DESIGN §2.2: a 1 MiB body with post-buffering 65536 is spooled to a temp file."""
    body = os.urandom(1 << 20)
    got = requests.post(f"{srv.url}/echo", data=body, timeout=20).json()
    assert got["len"] == 1 << 20
    assert got["sha256"] == hashlib.sha256(body).hexdigest()
    assert got["spooled"] is True


def test_large_chunked_body_spooled(srv):
    """A 1 MiB chunked body (length unknown up front) is decoded and spooled too."""
    body = os.urandom(1 << 20)

    def gen():
        for i in range(0, len(body), 50_000):
            yield body[i : i + 50_000]

    got = requests.post(f"{srv.url}/echo", data=gen(), timeout=20).json()
    assert got["len"] == len(body)
    assert got["sha256"] == hashlib.sha256(body).hexdigest()
    assert got["spooled"] is True


# --- start_response, write, iterables -----------------------------------


def test_write_callable(srv):
    """PEP 3333: start_response returns write(); its data precedes the iterable's."""
    r = requests.get(f"{srv.url}/write", timeout=5)
    assert r.status_code == 200
    assert r.content == b"part1-part2-part3"


def test_exc_info_replaces_headers_before_body(srv):
    """PEP 3333: start_response(..., exc_info) before any body is sent replaces status and headers."""
    r = requests.get(f"{srv.url}/exc-info-before", timeout=5)
    assert r.status_code == 500
    assert r.headers.get("X-Replaced") == "1"
    assert "X-Original" not in r.headers
    assert r.content == b"replaced"


def test_exc_info_reraised_after_headers_sent(srv):
    """PEP 3333: start_response(..., exc_info) after headers went out re-raises the exception;
    the response is then aborted (not completed)."""
    key = "exc-after"
    with Conn(srv.port) as conn:
        conn.send(request_bytes("GET", f"/exc-info-after?key={key}"))
        resp = conn.read_response(timeout=10)
        assert resp.status == 200, f"the head went out with the first chunk (PEP 3333 buffering rules): {resp!r}"
        assert resp.body.startswith(b"first chunk;")
        assert b"should never be sent" not in resp.body
        assert not resp.complete, f"aborted response must not look complete: {resp!r}"
        assert conn.eof, "connection should be closed after an aborted response"
    assert state(srv, key)["reraised"] is True


def test_lazy_start_response(srv):
    """PEP 3333: start_response may be called on the first iteration of the returned generator."""
    r = requests.get(f"{srv.url}/lazy", timeout=5)
    assert r.status_code == 200
    assert r.headers.get("X-Lazy") == "yes"
    assert r.content == b"lazy-body"


def test_close_called_once_after_success(srv):
    """PEP 3333: the server calls close() on the iterable once the response is done."""
    key = "close-ok"
    r = requests.get(f"{srv.url}/close", params={"mode": "ok", "key": key}, timeout=5)
    assert r.content == b"c" * 30
    deadline = time.monotonic() + 5
    while state(srv, key)["close"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    st = state(srv, key)
    assert st["close"] == 1, st
    assert st["iter"] == 3


def test_close_called_once_after_error_mid_iteration(srv):
    """PEP 3333: close() is called even when iteration raises."""
    key = "close-error"
    with Conn(srv.port) as conn:
        conn.send(request_bytes("GET", f"/close?mode=error&key={key}"))
        try:
            resp = conn.read_response(timeout=10)
        except ConnectionClosedEarly:
            resp = None  # aborted before the first chunk reached the wire: also fine
    if resp is not None:
        # Either the first chunk went out and the response was aborted, or
        # nothing had been sent yet and a 500 replaced it: close() is the point here.
        assert resp.status == 500 or (resp.status == 200 and not resp.complete), resp
    deadline = time.monotonic() + 5
    while state(srv, key)["close"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    st = state(srv, key)
    assert st["close"] == 1, st


def test_close_called_once_after_client_disconnect(srv):
    """PEP 3333 / DESIGN §6: close() is called once when the client goes away mid-response."""
    key = "close-disconnect"
    pid_before = pid_of(srv)
    conn = Conn(srv.port)
    conn.send(request_bytes("GET", f"/close?mode=disconnect&key={key}"))
    conn.recv_some(timeout=5)
    assert conn.buf.startswith(b"HTTP/1.1 200"), conn.buf[:100]
    conn.close(reset=True)
    deadline = time.monotonic() + 15
    while state(srv, key)["close"] < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    st = state(srv, key)
    assert st["close"] == 1, st
    assert st["pid"] == pid_before, "the worker must survive a client disconnect"


def test_file_wrapper_serves_file(srv):
    """PEP 3333 wsgi.file_wrapper: the whole file, byte for byte."""
    r = requests.get(f"{srv.url}/file", timeout=10)
    assert r.status_code == 200
    assert r.content == file_bytes()


def test_file_wrapper_respects_current_offset(srv):
    """DESIGN §6: file_wrapper over a file seeked to 5 sends from byte 5 (sendfile from the offset)."""
    r = requests.get(f"{srv.url}/file", params={"offset": "5"}, timeout=10)
    assert r.status_code == 200
    assert r.content == file_bytes()[5:]
    if "Content-Length" in r.headers:
        assert int(r.headers["Content-Length"]) == len(file_bytes()) - 5


def test_content_length_for_single_chunk(srv):
    """DESIGN §6: a one-element list without Content-Length gets Content-Length set."""
    with Conn(srv.port) as conn:
        conn.send(request_bytes("GET", "/single"))
        resp = conn.read_response()
    assert resp.header("Content-Length") == "100"
    assert not resp.has_header("Transfer-Encoding")
    assert resp.body == b"s" * 100


def test_exception_before_headers_gives_500_and_worker_survives(srv):
    """DESIGN §6: an exception before start_response -> 500, a logged traceback, same worker."""
    pid = pid_of(srv)
    mark = srv.mark()
    r = requests.get(f"{srv.url}/error-before", timeout=5)
    assert r.status_code == 500
    srv.wait_log(r"Traceback \(most recent call last\)", since=mark)
    srv.wait_log(r"RuntimeError: boom-before-headers", since=mark)
    assert pid_of(srv) == pid
    assert requests.get(f"{srv.url}/hello", timeout=5).text == "Hello, World!"


def test_exception_after_headers_aborts_connection(srv):
    """DESIGN §6: an exception after the head was sent aborts the connection; the worker lives."""
    pid = pid_of(srv)
    mark = srv.mark()
    with Conn(srv.port) as conn:
        conn.send(request_bytes("GET", "/error-after"))
        resp = conn.read_response(timeout=10)
        assert resp.status == 200, f"the head went out with the first chunk (PEP 3333 buffering rules): {resp!r}"
        assert resp.body.startswith(b"partial;")
        assert not resp.complete, f"an aborted response must not look complete: {resp!r}"
        assert conn.eof
    srv.wait_log(r"RuntimeError: boom-after-headers", since=mark)
    assert pid_of(srv) == pid


def _timed_get(url, out, i):
    t0 = time.monotonic()
    r = requests.get(url, timeout=10)
    out[i] = (r.status_code, time.monotonic() - t0)


def test_sys_exit_in_the_app_is_an_app_error_and_keeps_its_thread(server_factory):
    """SystemExit (any BaseException) is an app error: 500 before the head, an
    aborted connection after it, a logged traceback and request line, and the
    thread goes on serving (PyErr_Print would call exit() from the app thread)."""
    import threading

    s = server_factory(plain_args("--processes", "1", "--threads", "2"))
    pid = pid_of(s)
    mark = s.mark()
    r = requests.get(f"{s.url}/sysexit", timeout=5)
    assert r.status_code == 500
    s.wait_log(r"exception while serving GET /sysexit", since=mark)
    s.wait_log(r"Traceback \(most recent call last\)", since=mark)
    s.wait_log(r"SystemExit: 0", since=mark)

    with Conn(s.port) as conn:
        conn.send(request_bytes("GET", "/sysexit-after"))
        resp = conn.read_response(timeout=5)
        assert resp.status == 200
        assert resp.body.startswith(b"partial;")
        assert not resp.complete, f"an aborted response must not look complete: {resp!r}"
        assert conn.eof
    s.wait_log(r"SystemExit: 3", since=mark)

    # Both threads still serve: two 1 s requests run side by side.
    results = [None, None]
    threads = [
        threading.Thread(target=_timed_get, args=(f"{s.url}/sleep?ms=1000", results, i)) for i in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert all(r is not None and r[0] == 200 for r in results), results
    assert all(r[1] < 1.8 for r in results), f"a thread was lost: {results}"
    assert pid_of(s) == pid


def test_status_204_has_no_body(srv):
    """RFC 9110 §15.3.5: a 204 carries no content and no chunked framing."""
    with Conn(srv.port) as conn:
        conn.send(request_bytes("GET", "/status?code=204") + request_bytes("GET", "/hello"))
        r1 = conn.read_response()
        r2 = conn.read_response()
    assert r1.status == 204
    assert not r1.has_header("Transfer-Encoding")
    assert r2.body == b"Hello, World!"
