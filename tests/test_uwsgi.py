"""The uwsgi protocol on `socket` / `uwsgi-socket` listeners (issue 5 item 1),
spoken with a raw client (tests/support/uwsgi.py) exactly as nginx's
`uwsgi_pass` speaks it; tests/test_nginx.py repeats the key cases through a
real nginx.

Spec: ../shared/uwsgi-protocol.md.  Each server also has an `--http`
listener, which the test helper probes for readiness.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct

import pytest

from support import uwsgi
from support.server import Server, free_port, plain_args


def environ_of(resp) -> dict:
    """The plain app's /environ JSON as {key: value}."""
    assert resp.status == 200, resp
    return {k: v[1] for k, v in json.loads(resp.body).items()}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    work = tmp_path_factory.mktemp("uwsgi-srv")
    static = work / "static"
    static.mkdir()
    (static / "hello.txt").write_bytes(b"static over uwsgi\n")
    port = free_port()
    s = Server(
        plain_args(
            "--socket", f"127.0.0.1:{port}",
            "--uwsgi-socket", str(work / "app.sock"),
            "--threads", "2",
            "--static-map", f"/static={static}",
        ),
        workdir=work,
        name="uwsgi",
    )
    s.tcp = ("127.0.0.1", port)
    s.unix = str(work / "app.sock")
    yield s
    s.stop()


@pytest.fixture(params=["tcp", "unix"])
def addr(request, srv):
    return srv.tcp if request.param == "tcp" else srv.unix


# -- vars -> environ ------------------------------------------------------


def test_vars_become_the_environ(srv, addr):
    """Every var as given (latin-1), SCRIPT_NAME defaults to "", PATH_INFO is
    taken as nginx sent it (already decoded), duplicates: the last wins."""
    pairs = list(
        uwsgi.make_vars(
            "GET",
            "/environ/caf%C3%A9?x=1&y=%20",
            PATH_INFO=b"/environ/caf\xc3\xa9",
            SERVER_NAME="app.example",
            SERVER_PORT="8443",
            HTTP_X_CUSTOM="one",
            HTTP_ACCEPT_LANGUAGE="es-AR",
        ).items()
    )
    pairs.append(("HTTP_X_CUSTOM", "two"))
    pairs.append(("HTTP_X_LATIN1", b"caf\xe9"))
    resp, raw = uwsgi.request(addr, pairs)
    env = environ_of(resp)
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/environ/caf\xc3\xa9"  # bytes as latin-1 str (PEP 3333)
    assert env["REQUEST_URI"] == "/environ/caf%C3%A9?x=1&y=%20"
    assert env["QUERY_STRING"] == "x=1&y=%20"
    assert env["SCRIPT_NAME"] == ""
    assert env["SERVER_NAME"] == "app.example"
    assert env["SERVER_PORT"] == "8443"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["REMOTE_PORT"] == "51234"
    assert env["DOCUMENT_ROOT"] == "/usr/share/nginx/html"
    assert env["HTTP_HOST"] == "example.com"
    assert env["HTTP_ACCEPT_LANGUAGE"] == "es-AR"
    assert env["HTTP_X_CUSTOM"] == "two"
    assert env["HTTP_X_LATIN1"] == "caf\xe9"
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.input_terminated"] is True
    assert env["CONTENT_LENGTH"] == ""


def test_script_name_var_and_content_headers_as_http_vars(srv):
    """A SCRIPT_NAME var is used; HTTP_CONTENT_TYPE / HTTP_CONTENT_LENGTH
    (nginx sends both spellings) never reach the environ (DESIGN §6)."""
    v = uwsgi.make_vars(
        "POST", "/environ", body=b"abc",
        SCRIPT_NAME="/mounted", CONTENT_TYPE="text/plain",
        HTTP_CONTENT_TYPE="text/plain", HTTP_CONTENT_LENGTH="3",
    )
    resp, _ = uwsgi.request(srv.tcp, v, b"abc")
    env = environ_of(resp)
    assert env["SCRIPT_NAME"] == "/mounted"
    assert env["CONTENT_TYPE"] == "text/plain" and env["CONTENT_LENGTH"] == "3"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env


def test_magic_uwsgi_vars_are_never_acted_on(srv, tmp_path):
    """UWSGI_SCRIPT / UWSGI_CHDIR / UWSGI_PYHOME would let any peer load code
    in uWSGI; here they are plain environ entries and the app stays the same."""
    evil = tmp_path / "evil.py"
    marker = tmp_path / "loaded"
    evil.write_text(f"open({str(marker)!r}, 'w').write('x')\napplication = None\n")
    v = uwsgi.make_vars(
        "GET", "/environ",
        UWSGI_SCRIPT="evil", UWSGI_FILE=str(evil), UWSGI_CHDIR=str(tmp_path),
        UWSGI_PYHOME="/nonexistent", UWSGI_APPID="other",
    )
    resp, _ = uwsgi.request(srv.tcp, v)
    env = environ_of(resp)
    assert env["UWSGI_SCRIPT"] == "evil"
    assert env["PATH_INFO"] == "/environ"
    assert not marker.exists()
    assert os.getcwd() != str(tmp_path)


@pytest.mark.parametrize(
    "extra, scheme",
    [
        ({}, "http"),
        ({"REQUEST_SCHEME": "https"}, "https"),
        ({"HTTPS": "on"}, "https"),
        ({"HTTPS": "1", "REQUEST_SCHEME": "http"}, "https"),
        ({"HTTPS": "off", "REQUEST_SCHEME": "http"}, "http"),
        ({"UWSGI_SCHEME": "https", "REQUEST_SCHEME": "http"}, "https"),
        ({"UWSGI_SCHEME": "http", "HTTPS": "on"}, "http"),
    ],
)
def test_url_scheme_from_uwsgi_scheme_https_request_scheme(srv, extra, scheme):
    v = uwsgi.make_vars("GET", "/environ")
    v.pop("REQUEST_SCHEME")
    v.update(extra)
    resp, _ = uwsgi.request(srv.tcp, v)
    assert environ_of(resp)["wsgi.url_scheme"] == scheme


def test_minimal_packet_gets_pep3333_defaults(srv):
    """A front-end without `include uwsgi_params`: the required keys are
    filled in, PATH_INFO from REQUEST_URI, REMOTE_ADDR from the socket."""
    resp, raw = uwsgi.request(srv.tcp, {"REQUEST_URI": "/environ/a%20b?q=1"})
    assert raw.startswith(b"HTTP/1.0 200 OK\r\n")
    env = environ_of(resp)
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/environ/a b"
    assert env["QUERY_STRING"] == ""
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert env["REMOTE_ADDR"] == "127.0.0.1"


# -- the response -----------------------------------------------------------


def test_response_is_raw_http_then_close(srv, addr):
    """Status line with the request's SERVER_PROTOCOL, Content-Length when
    known, no Connection header, and the connection closes after it."""
    resp, raw = uwsgi.request(addr, uwsgi.make_vars("GET", "/hello"))
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert resp.header("Content-Length") == "13" and resp.body == b"Hello, World!"
    assert not resp.has_header("Connection") and not resp.has_header("Transfer-Encoding")
    resp, raw = uwsgi.request(addr, uwsgi.make_vars("GET", "/hello", SERVER_PROTOCOL="HTTP/1.0"))
    assert raw.startswith(b"HTTP/1.0 200 OK\r\n") and resp.body == b"Hello, World!"
    resp, raw = uwsgi.request(addr, uwsgi.make_vars("GET", "/hello", SERVER_PROTOCOL="HTTP/2.0"))
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")


def test_streaming_response_is_close_delimited_never_chunked(srv, addr):
    resp, raw = uwsgi.request(addr, uwsgi.make_vars("GET", "/gen?n=50&size=1000"))
    assert resp.status == 200
    assert resp.framing == "close" and not resp.has_header("Transfer-Encoding")
    assert resp.body == b"".join(str(i % 10).encode() * 1000 for i in range(50))


def test_write_callable_and_head(srv):
    resp, _ = uwsgi.request(srv.tcp, uwsgi.make_vars("GET", "/write"))
    assert resp.body == b"part1-part2-part3" and resp.framing == "close"
    resp, raw = uwsgi.request(srv.tcp, uwsgi.make_vars("HEAD", "/hello"))
    assert resp.status == 200 and resp.header("Content-Length") == "13"
    assert raw.endswith(b"\r\n\r\n")


def test_one_request_per_connection(srv):
    """nginx never reuses a uwsgi connection: a second packet on the same
    connection is not answered."""
    two = uwsgi.encode_packet(uwsgi.make_vars("GET", "/hello")) * 2
    raw = uwsgi.exchange(srv.tcp, two)
    assert raw.count(b"HTTP/1.1 200 OK") == 1 and raw.endswith(b"Hello, World!")


def test_static_map_over_uwsgi(srv):
    resp, raw = uwsgi.request(srv.tcp, uwsgi.make_vars("GET", "/static/hello.txt"))
    assert resp.status == 200 and resp.body == b"static over uwsgi\n"
    etag = resp.header("ETag")
    resp, _ = uwsgi.request(srv.tcp, uwsgi.make_vars("GET", "/static/hello.txt", HTTP_IF_NONE_MATCH=etag))
    assert resp.status == 304
    resp, _ = uwsgi.request(srv.tcp, uwsgi.make_vars("GET", "/static/hello.txt", HTTP_RANGE="bytes=0-5"))
    assert resp.status == 206 and resp.body == b"static"


def test_abstract_socket(tmp_path):
    name = f"capataz-test-{os.getpid()}-{free_port()}"
    with Server(plain_args("--socket", f"@{name}"), workdir=tmp_path) as s:
        resp, _ = uwsgi.request("\0" + name, uwsgi.make_vars("GET", "/hello"))
        assert resp.body == b"Hello, World!"
        assert f"listening on @{name} (uwsgi)" in s.log()


# -- bodies -----------------------------------------------------------------


def test_body_follows_the_vars(srv, addr):
    body = b"name=capataz&kind=wsgi"
    resp, _ = uwsgi.request(addr, uwsgi.make_vars("POST", "/echo", body, CONTENT_TYPE="application/x-www-form-urlencoded"), body)
    got = json.loads(resp.body)
    assert got["body"] == body.decode() and got["content_length"] == str(len(body))
    assert got["content_type"] == "application/x-www-form-urlencoded"
    assert got["spooled"] is False


def test_body_in_pieces(srv):
    """Header, vars and body split across many small writes, like a slow
    front-end; the first body bytes may share a read with the vars."""
    body = os.urandom(3000)
    raw = uwsgi.encode_packet(uwsgi.make_vars("POST", "/echo-raw", body)) + body
    with uwsgi.connect(srv.tcp) as s:
        for i in range(0, len(raw), 701):
            s.sendall(raw[i : i + 701])
        data = uwsgi.read_to_eof(s)
    resp, _ = uwsgi.parse_response(data, eof=True)
    assert resp.body == body


def test_big_body_is_spooled(srv, addr):
    """Beyond post-buffering (64 KiB) the body goes to a temp file first."""
    body = os.urandom(3 * 1024 * 1024 + 17)
    resp, _ = uwsgi.request(addr, uwsgi.make_vars("POST", "/echo", body), body, timeout=30)
    got = json.loads(resp.body)
    assert got["len"] == len(body) and got["sha256"] == hashlib.sha256(body).hexdigest()
    assert got["spooled"] is True


def test_limit_post_gives_413(tmp_path):
    with Server(plain_args("--socket", f"127.0.0.1:{(p := free_port())}", "--limit-post", "1000"), workdir=tmp_path) as s:
        body = b"x" * 1001
        resp, _ = uwsgi.request(("127.0.0.1", p), uwsgi.make_vars("POST", "/echo", body), body)
        assert resp.status == 413
        body = b"x" * 1000
        resp, _ = uwsgi.request(("127.0.0.1", p), uwsgi.make_vars("POST", "/echo", body), body)
        assert resp.status == 200 and json.loads(resp.body)["len"] == 1000
        assert "limit-post" in s.log()


# -- big and bad packets ----------------------------------------------------


def test_20k_of_cookies_fit_the_default_buffer_size(srv, addr):
    """uWSGI's 4 KiB default buffer-size is a famous cause of 502s; ours is
    65535, the most a packet can express."""
    cookie = "; ".join(f"c{i}={'v' * 90}" for i in range(222))
    assert len(cookie) > 20 * 1024
    resp, _ = uwsgi.request(addr, uwsgi.make_vars("GET", "/environ", HTTP_COOKIE=cookie))
    assert environ_of(resp)["HTTP_COOKIE"] == cookie


def test_oversized_packet_is_logged_and_closed(tmp_path):
    port = free_port()
    with Server(plain_args("--socket", f"127.0.0.1:{port}", "--buffer-size", "4096"), workdir=tmp_path) as s:
        mark = s.mark()
        v = uwsgi.make_vars("GET", "/environ", HTTP_COOKIE="x" * 8000)
        assert uwsgi.exchange(("127.0.0.1", port), uwsgi.encode_packet(v)) == b""
        s.wait_log(r"uwsgi socket 127\.0\.0\.1:\d+: uwsgi vars block of \d+ bytes exceeds buffer-size.*"
                   r"closing the connection from 127\.0\.0\.1", since=mark)
        # Just under the limit still works.
        resp, _ = uwsgi.request(("127.0.0.1", port), uwsgi.make_vars("GET", "/hello", HTTP_COOKIE="x" * 3000))
        assert resp.status == 200


def test_http_sent_to_a_uwsgi_socket_gets_a_hint(srv):
    mark = srv.mark()
    raw = uwsgi.exchange(srv.tcp, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert raw == b""
    srv.wait_log(r"HTTP sent to a uwsgi socket", since=mark)


def test_unsupported_modifier1_is_logged_and_closed(srv):
    mark = srv.mark()
    raw = uwsgi.exchange(srv.tcp, uwsgi.encode_packet(uwsgi.make_vars(), modifier1=5))
    assert raw == b""
    srv.wait_log(r"unsupported uwsgi modifier1 5", since=mark)


@pytest.mark.parametrize(
    "packet, reason",
    [
        # A zero-length key.
        (struct.pack("<BHB", 0, 6, 0) + b"\x00\x00\x02\x00ab", "zero-length key"),
        # A value length running past the vars block.
        (struct.pack("<BHB", 0, 7, 0) + b"\x01\x00k\x09\x00ab", "truncated uwsgi var"),
        # CONTENT_LENGTH that is not a number.
        (uwsgi.encode_packet({"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "12abc"}), "invalid uwsgi CONTENT_LENGTH"),
    ],
)
def test_malformed_packets_are_logged_and_closed(srv, packet, reason):
    mark = srv.mark()
    assert uwsgi.exchange(srv.tcp, packet) == b""
    srv.wait_log(reason, since=mark)


def test_worker_survives_bad_packets(srv):
    """After all the garbage above, and a peer that disconnects mid-packet,
    the worker still serves."""
    with socket.create_connection(srv.tcp, timeout=5) as s:
        s.sendall(uwsgi.encode_packet(uwsgi.make_vars())[:20])
    resp, _ = uwsgi.request(srv.tcp, uwsgi.make_vars("GET", "/hello"))
    assert resp.body == b"Hello, World!"
