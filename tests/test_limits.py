"""Size limits and timeouts (DESIGN §2.4, issue 2 item 3 "Limits").

Defaults: request line 8 KiB (414), 100 header fields and 8 KiB per field
(431), limit-post (413), header/body timeouts (408 or a clean close).  The
shared server uses small values (--limit-post 1000, 2 s timeouts) so the
tests are quick.
"""

from __future__ import annotations

import time

import pytest

from support.rawhttp import Conn, request_bytes
from support.server import Server, plain_args

LIMIT_POST = 1000
TIMEOUT = 2


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(
        plain_args(
            "--processes", "1",
            "--threads", "2",
            "--limit-post", str(LIMIT_POST),
            "--header-timeout", str(TIMEOUT),
            "--body-timeout", str(TIMEOUT),
            "--keepalive-timeout", str(TIMEOUT),
        ),
        workdir=tmp_path_factory.mktemp("limits"),
        name="limits",
    )
    yield s
    s.stop()


def expect_status(srv, raw: bytes, status: int, close: bool = True, method="GET"):
    with Conn(srv.port, timeout=5) as conn:
        try:
            conn.send(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before it read everything
        resp = conn.read_response(method)
        assert resp.status == status, f"expected {status}, got {resp!r}"
        if close:
            assert conn.wait_closed(3), f"connection still open after {status}"
        return resp


# --- request line and header limits -----------------------------------------


def test_request_line_within_limit_ok(srv):
    """RFC 9112 §3: request lines up to the 8 KiB limit are served."""
    target = "/path/" + "a" * 7000
    with Conn(srv.port) as conn:
        conn.send(request_bytes("GET", target))
        resp = conn.read_response()
    assert resp.status == 200 and resp.body == target.encode()


def test_request_line_too_long_414(srv):
    """RFC 9112 §3: "A server that receives a request-target longer than any URI
    it wishes to parse MUST respond with a 414 (URI Too Long)"; limit 8 KiB."""
    target = "/path/" + "a" * 9000
    expect_status(srv, request_bytes("GET", target), 414)


def test_request_line_too_long_414_before_head_ends(srv):
    """RFC 9112 §3 / DESIGN §2.4: the limit applies while the line is still
    arriving; the server answers without waiting for the rest of the head."""
    raw = b"GET /" + b"a" * 20000  # no CRLF at all
    expect_status(srv, raw, 414)


def test_100_header_fields_ok(srv):
    """DESIGN §2.4: up to 100 header fields (Host included) are accepted."""
    headers = [(f"X-H{i}", "v") for i in range(99)]
    with Conn(srv.port) as conn:
        conn.send(request_bytes("GET", "/hello", headers=headers))
        resp = conn.read_response()
    assert resp.status == 200


def test_too_many_header_fields_431(srv):
    """RFC 6585 §5 (431 Request Header Fields Too Large); limit 100 fields."""
    headers = [(f"X-H{i}", "v") for i in range(100)]  # + Host = 101
    expect_status(srv, request_bytes("GET", "/hello", headers=headers), 431)


def test_many_more_header_fields_431(srv):
    """RFC 6585 §5: 1000 fields, well past the limit, is still a clean 431."""
    headers = [(f"X-H{i}", "v") for i in range(1000)]
    expect_status(srv, request_bytes("GET", "/hello", headers=headers), 431)


def test_large_header_within_limit_ok(srv):
    """DESIGN §2.4: a 7 KiB field is under the 8 KiB per-field limit."""
    with Conn(srv.port) as conn:
        conn.send(request_bytes("GET", "/hello", headers=[("X-Big", "b" * 7000)]))
        assert conn.read_response().status == 200


def test_header_field_too_large_431(srv):
    """RFC 6585 §5: a single field over 8 KiB -> 431."""
    expect_status(srv, request_bytes("GET", "/hello", headers=[("X-Big", "b" * 9000)]), 431)


def test_buffer_size_bounds_whole_head(server_factory):
    """--buffer-size bounds the whole request head: many fields, each under the
    per-field limit, that add up past it -> 431."""
    s = server_factory(plain_args("--buffer-size", "4096"))
    with Conn(s.port) as conn:
        conn.send(request_bytes("GET", "/hello", headers=[("X-A", "a" * 1000)]))
        assert conn.read_response().status == 200
    headers = [(f"X-H{i}", "a" * 1000) for i in range(8)]
    expect_status(s, request_bytes("GET", "/hello", headers=headers), 431)


# --- limit-post -----------------------------------------------------------


def test_body_at_limit_ok(srv):
    """--limit-post N accepts a body of exactly N bytes."""
    with Conn(srv.port) as conn:
        conn.send(request_bytes("POST", "/echo-raw", body=b"p" * LIMIT_POST))
        resp = conn.read_response()
    assert resp.status == 200 and len(resp.body) == LIMIT_POST


def test_content_length_over_limit_413(srv):
    """RFC 9110 §15.5.14 (413 Content Too Large): Content-Length over
    limit-post is refused from the head alone, before any body is sent."""
    raw = b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % (LIMIT_POST + 1)
    expect_status(srv, raw, 413)


def test_huge_content_length_413(srv):
    """RFC 9110 §15.5.14: a Content-Length of 10**15 bytes is 413, not a crash."""
    raw = b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000000000000\r\n\r\n"
    expect_status(srv, raw, 413)


def test_chunked_body_over_limit_413(srv):
    """RFC 9110 §15.5.14 / DESIGN §2.2: a chunked body that grows past
    limit-post is refused with 413."""
    chunks = b"".join(b"c8\r\n" + b"z" * 200 + b"\r\n" for _ in range(8)) + b"0\r\n\r\n"  # 1600 bytes
    raw = b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
    expect_status(srv, raw, 413)


def test_expect_100_continue_over_limit_gets_413(srv):
    """RFC 9110 §10.1.1: a server may answer an Expect: 100-continue request
    with a final status instead of 100; here it must be 413 (a 100 first is tolerated)."""
    raw = (
        b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n"
        b"Expect: 100-continue\r\n\r\n" % (LIMIT_POST * 10)
    )
    expect_status(srv, raw, 413)


# --- timeouts -------------------------------------------------------------


def assert_timed_out(conn: Conn, started: float, low: float, high: float):
    """The server closed (optionally after a 408) between low and high seconds."""
    closed = conn.wait_closed(high - (time.monotonic() - started))
    elapsed = time.monotonic() - started
    assert closed, f"connection still open after {elapsed:.1f}s"
    assert elapsed >= low, f"closed after {elapsed:.2f}s, before the {TIMEOUT}s timeout"
    if conn.buf:
        assert conn.buf.startswith(b"HTTP/1.1 408") or conn.buf.startswith(b"HTTP/1.0 408"), conn.buf[:200]


def test_header_timeout_incomplete_head(srv):
    """RFC 9110 §15.5.9 (408): a head not completed within --header-timeout
    (2 s) gets a 408 or a close."""
    with Conn(srv.port, timeout=10) as conn:
        started = time.monotonic()
        conn.send(b"GET /hello HTTP/1.1\r\nHost: loc")
        assert_timed_out(conn, started, TIMEOUT - 0.5, TIMEOUT + 4)


def test_header_timeout_is_a_deadline_not_idle(srv):
    """DESIGN §2.2/§2.4: trickling one byte every 0.3 s does not extend the
    header timeout (slowloris): the head must be complete within 2 s overall."""
    raw = b"GET /hello HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"s" * 100
    with Conn(srv.port, timeout=10) as conn:
        started = time.monotonic()
        closed = False
        for byte in raw:
            try:
                conn.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if not conn.is_open(0.3):
                closed = True
                break
            if time.monotonic() - started > TIMEOUT + 4:
                break
        elapsed = time.monotonic() - started
        assert closed or conn.wait_closed(1), f"still open after {elapsed:.1f}s of trickling"
        assert elapsed < TIMEOUT + 4
        assert elapsed >= TIMEOUT - 0.5


def test_body_timeout_incomplete_body(srv):
    """RFC 9110 §15.5.9 (408): a body not completed within --body-timeout
    (2 s) gets a 408 or a close."""
    with Conn(srv.port, timeout=10) as conn:
        conn.send(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nonly-some")
        started = time.monotonic()
        assert_timed_out(conn, started, TIMEOUT - 0.5, TIMEOUT + 4)


def test_body_timeout_incomplete_chunked_body(srv):
    """RFC 9110 §15.5.9: the same for a chunked body with no last chunk."""
    with Conn(srv.port, timeout=10) as conn:
        conn.send(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        started = time.monotonic()
        assert_timed_out(conn, started, TIMEOUT - 0.5, TIMEOUT + 4)


def test_keepalive_idle_connection_closed(srv):
    """RFC 9112 §9.5: a server may close an idle persistent connection; capataz
    does so after --keepalive-timeout (2 s), without sending anything."""
    with Conn(srv.port, timeout=10) as conn:
        conn.send(request_bytes("GET", "/hello"))
        assert conn.read_response().status == 200
        started = time.monotonic()
        assert conn.wait_closed(TIMEOUT + 4), "idle keep-alive connection never closed"
        elapsed = time.monotonic() - started
        assert elapsed >= TIMEOUT - 0.5
        assert conn.buf == b"", f"nothing may be sent on an idle close: {conn.buf[:200]!r}"


def test_server_still_serves_after_limits(srv):
    """DESIGN §2.6: none of the above hurt the worker."""
    with Conn(srv.port) as conn:
        conn.send(request_bytes("GET", "/hello", headers=[("Connection", "close")]))
        assert conn.read_response().body == b"Hello, World!"
