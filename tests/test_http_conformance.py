"""HTTP/1.1 message syntax and connection handling, by RFC 9112 (and RFC 9110
where it governs), over raw sockets so every byte is ours.

Each test's docstring cites the section it checks.  Every malformed request
must get a 400 (RFC 9112 and DESIGN §2.6) and then the server must close the
connection.
"""

from __future__ import annotations

import email.utils
import json
import time
from datetime import datetime, timezone

import pytest

from support.rawhttp import Conn, request_bytes
from support.server import Server, plain_args


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(
        plain_args("--processes", "1", "--threads", "2"),
        workdir=tmp_path_factory.mktemp("http"),
        name="http",
    )
    yield s
    s.stop()


def assert_rejected(srv, raw: bytes, statuses=(400,), method="GET"):
    """Send raw bytes; expect one of `statuses` and then the connection closed."""
    with Conn(srv.port, timeout=5) as conn:
        conn.send(raw)
        resp = conn.read_response(method)
        assert resp.status in statuses, f"expected {statuses}, got {resp!r} for {raw[:300]!r}"
        assert conn.wait_closed(3), f"connection still open after {resp.status} for {raw[:300]!r}"
    return resp


# --- persistence ----------------------------------------------------------


def test_keep_alive_serves_several_requests(srv):
    """RFC 9112 §9.3: HTTP/1.1 connections persist by default; requests are
    answered one after another on the same connection."""
    with Conn(srv.port) as conn:
        for i in range(5):
            conn.send(request_bytes("GET", f"/path/{i}"))
            resp = conn.read_response()
            assert resp.status == 200
            assert resp.body == f"/path/{i}".encode()
        assert conn.is_open(0.3)


def test_connection_close_honoured(srv):
    """RFC 9112 §9.6: a server that receives "Connection: close" MUST close
    the connection after sending the final response."""
    with Conn(srv.port) as conn:
        conn.send(request_bytes("GET", "/hello", headers=[("Connection", "close")]))
        resp = conn.read_response()
        assert resp.body == b"Hello, World!"
        assert conn.wait_closed(3)


def test_http10_closes_by_default(srv):
    """RFC 9112 §9.3: an HTTP/1.0 request without the keep-alive option does not persist."""
    with Conn(srv.port) as conn:
        conn.send(request_bytes("GET", "/hello", "HTTP/1.0"))
        resp = conn.read_response()
        assert resp.status == 200 and resp.body == b"Hello, World!"
        assert conn.wait_closed(3)


def test_http10_keep_alive_when_asked(srv):
    """RFC 9112 §9.3 and Appendix C.2.2: HTTP/1.0 with "Connection: keep-alive" may persist;
    capataz honours it for responses of known length."""
    with Conn(srv.port) as conn:
        for _ in range(3):
            conn.send(request_bytes("GET", "/hello", "HTTP/1.0", [("Connection", "keep-alive")]))
            resp = conn.read_response()
            assert resp.status == 200 and resp.body == b"Hello, World!"
            assert resp.framing == "length"
        assert conn.is_open(0.3)


def test_pipelined_requests_answered_in_order(srv):
    """RFC 9112 §9.3.2: a server MAY process pipelined requests in parallel but
    MUST send the responses in the same order the requests were received."""
    raw = (
        request_bytes("GET", "/sleep?ms=200")  # slow first: order must still hold
        + request_bytes("GET", "/path/1")
        + request_bytes("POST", "/echo-raw", body=b"middle-body")
        + request_bytes("HEAD", "/single")
        + request_bytes("GET", "/path/3")
    )
    with Conn(srv.port) as conn:
        conn.send(raw)
        r0 = conn.read_response()
        r1 = conn.read_response()
        r2 = conn.read_response()
        r3 = conn.read_response("HEAD")
        r4 = conn.read_response()
    assert r0.status == 200 and r0.body.isdigit()
    assert r1.body == b"/path/1"
    assert r2.body == b"middle-body"
    assert r3.status == 200 and r3.body == b""
    assert r4.body == b"/path/3"


# --- request bodies -------------------------------------------------------


def test_chunked_request_with_extensions_and_trailers(srv):
    """RFC 9112 §7.1, §7.1.1 (chunk extensions are ignored when not understood)
    and §7.1.2 (trailer section): the body is decoded, and the connection
    stays usable, so the framing was consumed exactly."""
    raw = (
        b"POST /echo-raw HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n"
        b"6;quoted=\"a b\";flag\r\n world\r\n"
        b"0;last\r\nX-Trailer: one\r\nX-Other: two\r\n\r\n"
    )
    with Conn(srv.port) as conn:
        conn.send(raw + request_bytes("GET", "/path/after"))
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.body == b"hello world"
        nxt = conn.read_response()
        assert nxt.body == b"/path/after"


def test_chunked_request_hex_sizes_case_insensitive(srv):
    """RFC 9112 §7.1: chunk-size = 1*HEXDIG, either case."""
    raw = (
        b"POST /echo-raw HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n"
        b"a\r\n0123456789\r\nA\r\nabcdefghij\r\n0\r\n\r\n"
    )
    with Conn(srv.port) as conn:
        conn.send(raw)
        resp = conn.read_response()
    assert resp.body == b"0123456789abcdefghij"


def test_chunked_request_split_across_writes(srv):
    """RFC 9112 §7.1: framing must not depend on how TCP splits the bytes."""
    raw = (
        b"POST /echo-raw HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n3\r\nabc\r\n4;x=y\r\ndefg\r\n0\r\nT: 1\r\n\r\n"
    )
    with Conn(srv.port) as conn:
        conn.send_slowly(raw, piece=3, delay=0.002)
        resp = conn.read_response()
    assert resp.body == b"abcdefg"


def test_content_length_body(srv):
    """RFC 9112 §6.2: Content-Length gives the body length exactly."""
    with Conn(srv.port) as conn:
        conn.send(request_bytes("POST", "/echo-raw", body=b"x" * 1000) + request_bytes("GET", "/path/z"))
        assert conn.read_response().body == b"x" * 1000
        assert conn.read_response().body == b"/path/z"


def test_expect_100_continue(srv):
    """RFC 9110 §10.1.1: a server that receives "Expect: 100-continue" sends
    a 100 (Continue) before it waits for the content."""
    with Conn(srv.port) as conn:
        conn.send(
            b"POST /echo-raw HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        interim = conn.read_response(timeout=3, skip_interim=False)
        assert interim.status == 100, interim
        assert interim.version == "HTTP/1.1"
        conn.send(b"hello")
        final = conn.read_response()
        assert final.status == 200
        assert final.body == b"hello"


def test_expect_100_continue_ignored_for_http10(srv):
    """RFC 9110 §10.1.1: a server that receives a 100-continue expectation in
    an HTTP/1.0 request MUST ignore that expectation."""
    with Conn(srv.port) as conn:
        conn.send(
            b"POST /echo-raw HTTP/1.0\r\nHost: localhost\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\nhello"
        )
        resp = conn.read_response()
    assert resp.status == 200 and resp.body == b"hello"
    assert resp.interim == [], "no 1xx may be sent to an HTTP/1.0 client (RFC 9110 §15.2)"


# --- responses ------------------------------------------------------------


def test_chunked_response_when_length_unknown(srv):
    """RFC 9112 §6.1/§7.1: an HTTP/1.1 response of unknown length uses chunked."""
    with Conn(srv.port) as conn:
        conn.send(request_bytes("GET", "/gen?n=5&size=10"))
        resp = conn.read_response()
        assert resp.header("Transfer-Encoding", "").lower() == "chunked"
        assert not resp.has_header("Content-Length"), "RFC 9112 §6.2: no Content-Length with Transfer-Encoding"
        assert resp.complete
        assert resp.body == b"".join((b"%d" % i) * 10 for i in range(5))
        assert conn.is_open(0.2), "a chunked response keeps the connection reusable"


def test_response_streamed_not_buffered(srv):
    """RFC 9112 §7.1 / PEP 3333 "Buffering and Streaming": chunks go out as
    the app yields them (coarse: the first arrives well before the last)."""
    with Conn(srv.port, timeout=10) as conn:
        conn.send(request_bytes("GET", "/gen?n=4&size=10&delay=0.3", headers=[("Connection", "close")]))
        conn.recv_some(timeout=5)
        while b"\r\n\r\n" not in conn.buf:
            conn.recv_some(timeout=5)
        head_end = conn.buf.index(b"\r\n\r\n") + 4
        while len(conn.buf) <= head_end:
            conn.recv_some(timeout=5)
        first_body = time.monotonic()
        conn.read_until_close(timeout=10)
        finished = time.monotonic()
    assert finished - first_body >= 0.5, "the whole body arrived at once: the response was buffered"


def test_http10_response_of_unknown_length_is_close_delimited(srv):
    """RFC 9112 §6.3 (rule 8) and §7: chunked is HTTP/1.1 only; for an HTTP/1.0
    client an unknown length is delimited by closing the connection."""
    with Conn(srv.port) as conn:
        conn.send(request_bytes("GET", "/gen?n=5&size=10", "HTTP/1.0"))
        data = conn.read_until_close(timeout=5)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200"), head
    assert b"transfer-encoding" not in head.lower()
    assert b"content-length" not in head.lower(), "DESIGN §6: several chunks on 1.0 -> close-delimited"
    assert body == b"".join((b"%d" % i) * 10 for i in range(5))


def test_content_length_set_for_single_element_list(srv):
    """RFC 9112 §6.2 / DESIGN §6: a one-element response gets a Content-Length."""
    with Conn(srv.port) as conn:
        conn.send(request_bytes("GET", "/single"))
        resp = conn.read_response()
    assert resp.framing == "length"
    assert resp.header("Content-Length") == "100"


def test_head_has_headers_but_no_body(srv):
    """RFC 9110 §9.3.2: the server MUST NOT send content in the response to HEAD.
    A GET pipelined behind it must parse cleanly, so no stray body bytes."""
    with Conn(srv.port) as conn:
        conn.send(request_bytes("HEAD", "/single") + request_bytes("GET", "/hello"))
        head = conn.read_response("HEAD")
        nxt = conn.read_response()
    assert head.status == 200
    assert head.header("Content-Type") == "text/plain"
    if head.has_header("Content-Length"):
        assert head.header("Content-Length") == "100"
    assert nxt.status == 200 and nxt.body == b"Hello, World!"


def test_head_of_streamed_response_has_no_body(srv):
    """RFC 9110 §9.3.2 for a generator response: nothing after the head."""
    with Conn(srv.port) as conn:
        conn.send(request_bytes("HEAD", "/gen?n=3") + request_bytes("GET", "/hello"))
        head = conn.read_response("HEAD")
        nxt = conn.read_response()
    assert head.status == 200
    assert nxt.body == b"Hello, World!"


def test_date_header(srv):
    """RFC 9110 §6.6.1: an origin server with a clock MUST send Date (IMF-fixdate)."""
    with Conn(srv.port) as conn:
        conn.send(request_bytes("GET", "/hello"))
        resp = conn.read_response()
    date = resp.header("Date")
    assert date, resp
    assert date.endswith(" GMT"), date
    parsed = email.utils.parsedate_to_datetime(date)
    assert abs((parsed - datetime.now(timezone.utc)).total_seconds()) < 60


def test_date_header_on_error_responses(srv):
    """RFC 9110 §6.6.1: Date on 4xx responses too (here a 400 from the parser)."""
    resp = assert_rejected(srv, b"GET / HTTP/1.1\r\nHost: localhost\r\nBad Header: x\r\n\r\n")
    assert resp.header("Date")


def test_absolute_form_target(srv):
    """RFC 9112 §3.2.2: a server MUST accept the absolute-form in requests."""
    with Conn(srv.port) as conn:
        conn.send(request_bytes("GET", "http://localhost/environ?k=v", headers=[("Connection", "close")]))
        resp = conn.read_response()
    assert resp.status == 200
    env = json.loads(resp.body)
    assert env["PATH_INFO"][1] == "/environ"
    assert env["QUERY_STRING"][1] == "k=v"


def test_absolute_form_authority_replaces_host(srv):
    """RFC 9112 §3.2.2: "When an origin server receives a request with an
    absolute-form of request-target, the origin server MUST ignore the
    received Host header field (if any) and instead use the host information
    of the request-target."
    """
    with Conn(srv.port) as conn:
        conn.send(b"GET http://example.com/environ?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        resp = conn.read_response()
    assert resp.status == 200, resp
    env = json.loads(resp.body)
    assert env["HTTP_HOST"] == ["str", "example.com"]
    assert env["PATH_INFO"] == ["str", "/environ"]
    assert env["QUERY_STRING"] == ["str", "x=1"]
    # SERVER_NAME comes from the listener's address, as for every request.
    assert env["SERVER_NAME"] == ["str", "127.0.0.1"]
    # The port is part of the authority, and HTTP/1.0 without Host gets it too.
    with Conn(srv.port) as conn:
        conn.send(b"GET http://example.com:8080/environ HTTP/1.0\r\n\r\n")
        resp = conn.read_response()
    env = json.loads(resp.body)
    assert env["HTTP_HOST"] == ["str", "example.com:8080"]
    assert env["PATH_INFO"] == ["str", "/environ"]


# --- rejections -----------------------------------------------------------

H = b"Host: localhost\r\n"

REJECTIONS = {
    # RFC 9112 §6.1: "A server MAY reject a request that contains both
    # Content-Length and Transfer-Encoding ... [and] MUST close the connection".
    "content-length-and-transfer-encoding": b"POST /echo HTTP/1.1\r\n" + H
    + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    # RFC 9112 §6.3 rule 5: an invalid Content-Length is an unrecoverable
    # framing error; the server MUST respond 400 and close.
    "content-length-plus-sign": b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello",
    "content-length-list-conflicting": b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5,6\r\n\r\nhello!",
    "content-length-two-different-fields": b"POST /echo HTTP/1.1\r\n" + H
    + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "content-length-not-a-number": b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: abc\r\n\r\nhello",
    "content-length-negative": b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\nhello",
    "content-length-inner-space": b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 1 2\r\n\r\nhello",
    "content-length-hex": b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 0x5\r\n\r\nhello",
    # RFC 9112 §6.3 rule 4: chunked not the final coding -> 400 and close.
    "transfer-encoding-gzip": b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\nhello",
    "transfer-encoding-chunked-then-gzip": b"POST /echo HTTP/1.1\r\n" + H
    + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    "transfer-encoding-identity": b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\nhello",
    "transfer-encoding-split-fields-gzip-last": b"POST /echo HTTP/1.1\r\n" + H
    + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n",
    # RFC 9112 §6.1: HTTP/1.0 + Transfer-Encoding means faulty framing.
    "transfer-encoding-on-http10": b"POST /echo HTTP/1.0\r\n" + H
    + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    # RFC 9112 §7.1: chunk-size = 1*HEXDIG, no sign, no prefix, bounded.
    "chunk-size-plus-sign": b"POST /echo HTTP/1.1\r\n" + H
    + b"Transfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n",
    "chunk-size-0x-prefix": b"POST /echo HTTP/1.1\r\n" + H
    + b"Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
    "chunk-size-overflow": b"POST /echo HTTP/1.1\r\n" + H
    + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
    "chunk-size-missing": b"POST /echo HTTP/1.1\r\n" + H
    + b"Transfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n",
    "chunk-size-not-hex": b"POST /echo HTTP/1.1\r\n" + H
    + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    # RFC 9112 §7.1: chunk-data is followed by CRLF.
    "chunk-data-without-crlf": b"POST /echo HTTP/1.1\r\n" + H
    + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
    # RFC 9112 §5.1: "A server MUST reject, with a response status code of
    # 400 (Bad Request), any received request message that contains
    # whitespace between a header field name and colon."
    "whitespace-before-colon": b"GET / HTTP/1.1\r\n" + H + b"X-Test : value\r\n\r\n",
    "tab-before-colon": b"GET / HTTP/1.1\r\n" + H + b"X-Test\t: value\r\n\r\n",
    # RFC 9110 §5.1: field-name = token; a space is not a tchar.
    "space-in-field-name": b"GET / HTTP/1.1\r\n" + H + b"X Test: value\r\n\r\n",
    "empty-field-name": b"GET / HTTP/1.1\r\n" + H + b": value\r\n\r\n",
    # RFC 9112 §5.2: obs-fold in a request -> reject with 400 (or replace
    # with SP); capataz rejects.
    "obs-fold": b"GET / HTTP/1.1\r\n" + H + b"X-Test: first\r\n  continued\r\n\r\n",
    "obs-fold-tab": b"GET / HTTP/1.1\r\n" + H + b"X-Test: first\r\n\tcontinued\r\n\r\n",
    # RFC 9110 §5.5: CR, LF and NUL in field values are invalid and dangerous.
    "nul-in-field-value": b"GET / HTTP/1.1\r\n" + H + b"X-Test: a\x00b\r\n\r\n",
    "cr-in-field-value": b"GET / HTTP/1.1\r\n" + H + b"X-Test: a\rb\r\n\r\n",
    # RFC 9112 §2.2: the line terminator is CRLF; capataz does not accept a
    # bare LF (the MAY is declined) nor a bare CR.
    "bare-lf-everywhere": b"GET / HTTP/1.1\nHost: localhost\n\n",
    "bare-lf-in-one-header": b"GET / HTTP/1.1\r\nHost: localhost\nX-Test: a\r\n\r\n",
    "bare-lf-after-request-line": b"GET / HTTP/1.1\nHost: localhost\r\n\r\n",
    # RFC 9112 §2.3: HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive.
    "version-lowercase": b"GET / http/1.1\r\n" + H + b"\r\n",
    "version-garbage": b"GET / HTTP/1.x\r\n" + H + b"\r\n",
    "version-missing": b"GET /\r\n" + H + b"\r\n",
    # RFC 9112 §3: request-line = method SP request-target SP HTTP-version.
    "request-line-extra-space": b"GET  / HTTP/1.1\r\n" + H + b"\r\n",
    # RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status
    # code to any HTTP/1.1 request message that lacks a Host header field and
    # to any request message that contains more than one Host header field".
    "host-missing": b"GET / HTTP/1.1\r\nX-Test: 1\r\n\r\n",
    "host-twice": b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
    "host-twice-same-value": b"GET / HTTP/1.1\r\nHost: localhost\r\nhost: localhost\r\n\r\n",
    "host-twice-http10": b"GET / HTTP/1.0\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
    "host-missing-absolute-form": b"GET http://localhost/ HTTP/1.1\r\n\r\n",
    # RFC 9112 §3.2: "... or a Host header field with an invalid field value".
    "host-with-space": b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
    "host-with-userinfo": b"GET / HTTP/1.1\r\nHost: user@localhost\r\n\r\n",
    "host-with-path": b"GET / HTTP/1.1\r\nHost: localhost/x\r\n\r\n",
    "host-bad-port": b"GET / HTTP/1.1\r\nHost: localhost:80x\r\n\r\n",
    "host-unclosed-ipv6": b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
    # RFC 9110 §4.2.4 and §4.2.1: userinfo or an empty host in an http URI.
    "absolute-form-userinfo": b"GET http://user@localhost/ HTTP/1.1\r\n" + H + b"\r\n",
    "absolute-form-empty-host": b"GET http:///x HTTP/1.1\r\n" + H + b"\r\n",
}


@pytest.mark.parametrize("raw", list(REJECTIONS.values()), ids=list(REJECTIONS))
def test_malformed_request_rejected_with_400_and_close(srv, raw):
    """RFC 9112 (section cited beside each case in REJECTIONS): 400, then close."""
    assert_rejected(srv, raw)


@pytest.mark.parametrize("version", ["HTTP/2.0", "HTTP/3.0", "HTTP/0.9"])
def test_other_major_version_gets_505(srv, version):
    """RFC 9110 §15.6.6: 505 (HTTP Version Not Supported) for a major version
    the server does not support, then close; logged like the 400s."""
    mark = srv.mark()
    raw = f"GET / {version}\r\nHost: localhost\r\n\r\n".encode()
    resp = assert_rejected(srv, raw, statuses=(505,))
    assert resp.reason == "HTTP Version Not Supported"
    assert resp.version == "HTTP/1.1"
    srv.wait_log(r"bad request from 127\.0\.0\.1: HTTP major version not supported \(505\)", since=mark)


@pytest.mark.parametrize("version", ["HTTP/2", "HTTP/2.0 ", "http/2.0", "HTTP/1.x", "HTTP/1.10"])
def test_unknown_version_rejected(srv, version):
    """RFC 9112 §2.3: a malformed version gets 400."""
    raw = f"GET / {version}\r\nHost: localhost\r\n\r\n".encode()
    assert_rejected(srv, raw, statuses=(400,))


def test_higher_minor_version_is_processed_as_http11(srv):
    """RFC 9110 §2.5 / RFC 9112 §2.3: a request in HTTP/1.2 (a higher minor
    version of a major we implement) is processed as HTTP/1.1, the highest
    minor we implement: 200, a status line saying HTTP/1.1, a persistent
    connection. It used to get 400. SERVER_PROTOCOL says HTTP/1.1 too: that
    is how the request was processed (gunicorn echoes the client's string,
    but does not document it)."""
    with Conn(srv.port) as conn:
        conn.send(b"GET /environ HTTP/1.2\r\nHost: localhost\r\n\r\n")
        resp = conn.read_response()
        assert resp.status == 200, resp
        assert resp.version == "HTTP/1.1"
        environ = json.loads(resp.body)
        assert environ["SERVER_PROTOCOL"] == ["str", "HTTP/1.1"], environ["SERVER_PROTOCOL"]
        # Persistent, as HTTP/1.1: a second request (with a body) on the same connection.
        conn.send(b"POST /echo HTTP/1.9\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello")
        resp = conn.read_response()
        assert resp.status == 200 and resp.version == "HTTP/1.1", resp
        assert json.loads(resp.body)["body"] == "hello"
        assert conn.is_open(0.3)
        # HTTP/1.1's rules apply: Host is required.
        conn.send(b"GET / HTTP/1.2\r\n\r\n")
        resp = conn.read_response()
        assert resp.status == 400, resp
        assert conn.wait_closed(3)


@pytest.mark.parametrize("version", ["HTTP/1.0", "HTTP/1.1"])
def test_http1_versions_still_served(srv, version):
    """The 505 check leaves HTTP/1.0 and HTTP/1.1 alone."""
    with Conn(srv.port) as conn:
        conn.send(f"GET /hello {version}\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        resp = conn.read_response()
    assert resp.status == 200 and resp.body == b"Hello, World!"


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n", "more than one Host header"),
        (b"GET / HTTP/1.1\r\nX-Test: 1\r\n\r\n", "missing Host header"),
        (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "invalid Host header"),
    ],
    ids=["twice", "missing", "invalid"],
)
def test_host_rejections_are_logged(srv, raw, reason):
    """RFC 9112 §3.2: 400 for a duplicate, missing (HTTP/1.1) or invalid Host,
    logged with the peer and the reason like every other 400."""
    mark = srv.mark()
    assert_rejected(srv, raw)
    srv.wait_log(rf"bad request from 127\.0\.0\.1: {reason} \(400\)", since=mark)


def test_worker_survives_rejections(srv):
    """DESIGN §2.6: malformed input never crashes a worker (same pid before and after)."""
    def pid():
        with Conn(srv.port) as conn:
            conn.send(request_bytes("GET", "/pid", headers=[("Connection", "close")]))
            return int(conn.read_response().body)

    before = pid()
    for raw in list(REJECTIONS.values())[:10]:
        assert_rejected(srv, raw)
    assert pid() == before
