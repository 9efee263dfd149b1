"""Logging (issue 2 item 7): one access-log line per request in uWSGI's
default shape, --disable-logging, quiet client disconnects, app tracebacks.

uWSGI's shape, for reference:
[pid: 1234|app: 0|req: 1/1] 127.0.0.1 () {32 vars in 345 bytes} [Wed Nov 25 17:52:18 2026]
GET /hello?x=1 => generated 13 bytes in 0 msecs (HTTP/1.1 200) 2 headers in 79 bytes
(1 switches on core 0)   (all on one line)
"""

from __future__ import annotations

import re
import time
from datetime import datetime

import pytest
import requests

from support.rawhttp import Conn, ConnectionClosedEarly, request_bytes
from support.server import Server, plain_args


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(
        plain_args("--processes", "1", "--threads", "2", "--limit-post", "1000", "--header-timeout", "2"),
        workdir=tmp_path_factory.mktemp("logging"),
        name="logging",
    )
    yield s
    s.stop()


def access_rx(method: str, uri: str, status: int = 200, proto: str = "HTTP/1.1", size: str = r"\d+") -> str:
    return (
        r"\[pid: (?P<pid>\d+)\|app: \d+\|req: (?P<wreq>\d+)/(?P<treq>\d+)\] "
        r"(?P<addr>127\.0\.0\.1) \(\S*\) \{\d+ vars in \d+ bytes\} "
        r"\[(?P<date>[A-Z][a-z]{2} [A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2} \d{4})\] "
        + re.escape(method) + " " + re.escape(uri)
        + rf" => generated (?P<bytes>{size}) bytes in (?P<ms>\d+) msecs "
        + r"\(" + re.escape(proto) + rf" {status}\) \d+ headers in \d+ bytes "
        r"\(\d+ switches on core \d+\)"
    )


def raw_get(srv, target, version="HTTP/1.1", method="GET", body=b""):
    with Conn(srv.port) as conn:
        conn.send(request_bytes(method, target, version, [("Connection", "close")], body))
        return conn.read_response(method)


def test_access_log_line_has_uwsgi_shape(srv):
    """Issue 2 item 7: pid, worker, client address, method, URI, status, bytes, time."""
    worker = int(raw_get(srv, "/pid").body)
    mark = srv.mark()
    resp = raw_get(srv, "/hello?x=1")
    assert resp.body == b"Hello, World!"
    m = srv.wait_log(access_rx("GET", "/hello?x=1", 200, size="13"), since=mark)
    assert int(m["pid"]) == worker
    logged = datetime.strptime(re.sub(" +", " ", m["date"]), "%a %b %d %H:%M:%S %Y")
    assert abs((logged - datetime.now()).total_seconds()) < 120, m["date"]


def test_one_line_per_request(srv):
    """Issue 2 item 7: exactly one line per request; the request counters advance."""
    mark = srv.mark()
    for i in range(3):
        raw_get(srv, f"/hello?n={i}")
    srv.wait_log(access_rx("GET", "/hello?n=2"), since=mark)
    time.sleep(0.2)
    text = srv.log_since(mark)
    counters = []
    for i in range(3):
        found = list(re.finditer(access_rx("GET", f"/hello?n={i}"), text))
        assert len(found) == 1, f"{len(found)} lines for request {i}:\n{text}"
        counters.append(int(found[0]["wreq"]))
    assert counters == sorted(counters) and len(set(counters)) == 3, counters


def test_access_log_status_method_and_protocol(srv):
    """The line carries the real method, status and protocol version."""
    mark = srv.mark()
    raw_get(srv, "/nope", method="POST", body=b"abc")
    srv.wait_log(access_rx("POST", "/nope", 404), since=mark)
    mark = srv.mark()
    raw_get(srv, "/hello", version="HTTP/1.0")
    srv.wait_log(access_rx("GET", "/hello", 200, proto="HTTP/1.0"), since=mark)


def test_access_log_time_in_msecs(srv):
    """The time field is the request's duration in milliseconds."""
    mark = srv.mark()
    raw_get(srv, "/sleep?ms=300")
    m = srv.wait_log(access_rx("GET", "/sleep?ms=300"), since=mark)
    assert 300 <= int(m["ms"]) < 5000, m["ms"]


def test_disable_logging(server_factory):
    """Issue 2 item 7: --disable-logging removes access lines (the log itself still works)."""
    s = server_factory(plain_args("--disable-logging"))
    for _ in range(3):
        assert requests.get(f"{s.url}/hello", timeout=5).status_code == 200
    requests.get(f"{s.url}/errors", params={"tag": "still-logging"}, timeout=5)
    s.wait_log(r"wsgi-errors-marker still-logging")
    time.sleep(0.3)
    assert not re.search(r"=> generated \d+ bytes", s.log()), s.log()


def test_wsgi_errors_goes_to_log(srv):
    """PEP 3333 wsgi.errors: what the app writes there appears in the server log."""
    mark = srv.mark()
    requests.get(f"{srv.url}/errors", params={"tag": "abc123"}, timeout=5)
    srv.wait_log(r"wsgi-errors-marker abc123", since=mark)


def test_app_exception_logs_traceback(srv):
    """DESIGN §6: an app exception is logged with its Python traceback."""
    mark = srv.mark()
    assert requests.get(f"{srv.url}/error-before", timeout=5).status_code == 500
    srv.wait_log(r"Traceback \(most recent call last\):", since=mark)
    srv.wait_log(r'File ".*plain_app\.py", line \d+', since=mark)
    srv.wait_log(r"RuntimeError: boom-before-headers", since=mark)


QUIET = re.compile(r"ERROR|Traceback|panicked")


def test_client_disconnect_mid_response_is_not_an_error(srv):
    """Issue 2 item 7 / Conventions: a client that goes away mid-response is not
    an error: no ERROR, no traceback, no panic in the log."""
    mark = srv.mark()
    conn = Conn(srv.port)
    conn.send(request_bytes("GET", "/big?n=104857600&chunk=65536"))
    got = 0
    while got < 200_000:
        got += len(conn.recv_some(timeout=5))
    conn.close(reset=True)
    # and a polite close (FIN) mid-response, too
    conn = Conn(srv.port)
    conn.send(request_bytes("GET", "/big?n=104857600&chunk=65536"))
    conn.recv_some(timeout=5)
    conn.close()
    time.sleep(1.5)
    assert requests.get(f"{srv.url}/hello", timeout=5).status_code == 200
    text = srv.log_since(mark)
    assert not QUIET.search(text), text[-3000:]


def test_client_disconnect_mid_request_is_not_an_error(srv):
    """The same when the client leaves during the head or the body."""
    mark = srv.mark()
    c = Conn(srv.port)
    c.send(b"GET /hello HTTP/1.1\r\nHost: lo")
    c.close(reset=True)
    c = Conn(srv.port)
    c.send(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 500\r\n\r\nabc")
    c.close()
    time.sleep(1.0)
    assert requests.get(f"{srv.url}/hello", timeout=5).status_code == 200
    text = srv.log_since(mark)
    assert not QUIET.search(text), text[-3000:]


BAD_REQUESTS = {
    "400-cl-and-te": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        r"\b400\b|Bad Request",
    ),
    "414-uri": (b"GET /" + b"u" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", r"\b414\b|URI Too Long"),
    "431-headers": (
        b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(150)) + b"\r\n",
        r"\b431\b|Header Fields Too Large",
    ),
    "413-body": (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", r"\b413\b|Too Large"),
}


@pytest.mark.parametrize("raw,rx", list(BAD_REQUESTS.values()), ids=list(BAD_REQUESTS))
def test_bad_request_is_logged(srv, raw, rx):
    """Issue 2 item 7: a rejected request leaves a line naming its status or reason."""
    mark = srv.mark()
    with Conn(srv.port) as conn:
        conn.send(raw)
        try:
            conn.read_response()
        except ConnectionClosedEarly:
            pass
    srv.wait_log(rx, since=mark, timeout=3)


def test_header_timeout_is_logged(srv):
    """A head that never completes (2 s header timeout) leaves a line too."""
    mark = srv.mark()
    with Conn(srv.port, timeout=8) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHo")
        conn.wait_closed(6)
    srv.wait_log(r"(?i)\b408\b|time(d)?[ -]?out", since=mark, timeout=3)
