"""Proxy trust (issue 5 item 3): `forwarded-allow-ips` decides whether
X-Forwarded-For / X-Forwarded-Proto / Forwarded (RFC 7239) set REMOTE_ADDR
and wsgi.url_scheme; `proxy-protocol` accepts a PROXY v1/v2 header from
the same peers.  tests/test_nginx.py checks the same through a real nginx.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import struct

import pytest

from support import uwsgi
from support.rawhttp import Conn, parse_response, request_bytes
from support.server import Server, free_port, plain_args, run_capataz

XFF = [
    ("X-Forwarded-For", "203.0.113.9, 10.0.0.1"),
    ("X-Forwarded-Proto", "https"),
]


def environ(port, headers=(), prefix=b"") -> dict:
    with Conn(port, timeout=10) as c:
        c.send(prefix + request_bytes("GET", "/environ", headers=list(headers) + [("Connection", "close")]))
        resp = c.read_response()
    assert resp.status == 200, resp
    return {k: v[1] for k, v in json.loads(resp.body).items()}


@pytest.fixture(scope="module")
def default_srv(tmp_path_factory):
    """Default forwarded-allow-ips: loopback, which is where the tests connect from."""
    s = Server(plain_args(), workdir=tmp_path_factory.mktemp("proxy-default"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def untrusting_srv(tmp_path_factory):
    """Only 10/8 is trusted, so the loopback test client is not; plus a unix
    http-socket, whose peers are always trusted."""
    work = tmp_path_factory.mktemp("proxy-untrusting")
    s = Server(
        plain_args(
            "--forwarded-allow-ips", "10.0.0.0/8",
            "--http-socket", str(work / "http.sock"),
            "--proxy-protocol",
        ),
        workdir=work,
    )
    s.unix = str(work / "http.sock")
    yield s
    s.stop()


# -- X-Forwarded-* and Forwarded ---------------------------------------------


def test_trusted_peer_sets_remote_addr_and_scheme(default_srv):
    env = environ(default_srv.port, XFF)
    assert env["REMOTE_ADDR"] == "203.0.113.9"
    assert env["wsgi.url_scheme"] == "https"
    # Still visible to the app as plain headers.
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.9, 10.0.0.1"
    assert env["HTTP_X_FORWARDED_PROTO"] == "https"


def test_without_headers_the_peer_stands(default_srv):
    env = environ(default_srv.port)
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["wsgi.url_scheme"] == "http"


def test_forwarded_wins_over_x_forwarded(default_srv):
    env = environ(
        default_srv.port,
        [
            ("X-Forwarded-For", "198.51.100.1"),
            ("X-Forwarded-Proto", "http"),
            ("Forwarded", 'for="[2001:db8:cafe::17]:4711";proto=https;by=10.0.0.1, for=10.0.0.2'),
        ],
    )
    assert env["REMOTE_ADDR"] == "2001:db8:cafe::17"
    assert env["REMOTE_PORT"] == "4711"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_FORWARDED"].startswith('for="[2001:db8:cafe::17]')


def test_unusable_values_are_ignored(default_srv):
    env = environ(
        default_srv.port,
        [("X-Forwarded-For", "unknown, 1.2.3.4"), ("X-Forwarded-Proto", "gopher"), ("Forwarded", "for=_hidden")],
    )
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["wsgi.url_scheme"] == "http"


def test_untrusted_peer_headers_are_only_plain_headers(untrusting_srv):
    env = environ(untrusting_srv.port, XFF + [("Forwarded", "for=192.0.2.1;proto=https")])
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.9, 10.0.0.1"
    assert env["HTTP_FORWARDED"] == "for=192.0.2.1;proto=https"


def test_unix_socket_peers_are_trusted(untrusting_srv):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(untrusting_srv.unix)
        s.sendall(request_bytes("GET", "/environ", headers=XFF + [("Connection", "close")]))
        resp, _ = parse_response(uwsgi.read_to_eof(s), eof=True)
    env = {k: v[1] for k, v in json.loads(resp.body).items()}
    assert env["REMOTE_ADDR"] == "203.0.113.9" and env["wsgi.url_scheme"] == "https"


def test_star_trusts_everyone(tmp_path):
    with Server(plain_args("--forwarded-allow-ips", "*"), workdir=tmp_path) as s:
        assert environ(s.port, XFF)["REMOTE_ADDR"] == "203.0.113.9"


@pytest.mark.parametrize("value", ["10.0.0.0/33", "proxy.internal", "1.2.3.4/x"])
def test_bad_forwarded_allow_ips_is_a_config_error(value):
    r = run_capataz(plain_args("--http", ":0", "--forwarded-allow-ips", value))
    assert r.returncode == 64, r.stderr
    assert "forwarded-allow-ips" in r.stderr and value in r.stderr


# -- PROXY protocol ----------------------------------------------------------


def proxy_v2(src: str, sport: int, dst: str, dport: int, command: int = 1, tlvs: bytes = b"") -> bytes:
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    family = 0x11 if s.version == 4 else 0x21
    body = s.packed + d.packed + struct.pack("!HH", sport, dport) + tlvs
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20 | command, family]) + struct.pack("!H", len(body)) + body


@pytest.fixture(scope="module")
def pp_srv(tmp_path_factory):
    port = free_port()
    s = Server(
        plain_args("--proxy-protocol", "--socket", f"127.0.0.1:{port}"),
        workdir=tmp_path_factory.mktemp("proxy-protocol"),
    )
    s.uwsgi = ("127.0.0.1", port)
    yield s
    s.stop()


def test_proxy_v1_sets_remote_addr(pp_srv):
    env = environ(pp_srv.port, prefix=b"PROXY TCP4 198.51.100.22 10.0.0.5 40001 443\r\n")
    assert env["REMOTE_ADDR"] == "198.51.100.22" and env["REMOTE_PORT"] == "40001"


def test_proxy_v1_tcp6_byte_by_byte(pp_srv):
    with Conn(pp_srv.port, timeout=10) as c:
        c.send_slowly(b"PROXY TCP6 2001:db8::42 2001:db8::1 5555 80\r\n", piece=3, delay=0.002)
        c.send(request_bytes("GET", "/environ", headers=[("Connection", "close")]))
        env = {k: v[1] for k, v in json.loads(c.read_response().body).items()}
    assert env["REMOTE_ADDR"] == "2001:db8::42" and env["REMOTE_PORT"] == "5555"


def test_proxy_v2_holds_for_the_whole_connection(pp_srv):
    header = proxy_v2("203.0.113.50", 61000, "10.0.0.5", 80, tlvs=b"\xea\x00\x03abc")
    with Conn(pp_srv.port, timeout=10) as c:
        c.send(header + request_bytes("GET", "/environ"))
        first = json.loads(c.read_response().body)
        c.send(request_bytes("GET", "/environ", headers=[("X-Forwarded-For", "192.0.2.99")]))
        second = json.loads(c.read_response().body)
    assert first["REMOTE_ADDR"][1] == "203.0.113.50" and first["REMOTE_PORT"][1] == "61000"
    # The client behind the balancer is not a trusted proxy: its own
    # X-Forwarded-For is just a header.
    assert second["REMOTE_ADDR"][1] == "203.0.113.50"


def test_proxy_v2_local_keeps_the_peer(pp_srv):
    env = environ(pp_srv.port, prefix=proxy_v2("1.2.3.4", 1, "5.6.7.8", 2, command=0))
    assert env["REMOTE_ADDR"] == "127.0.0.1"


def test_proxy_header_is_optional(pp_srv):
    """Health checks from the balancer itself come without one."""
    assert environ(pp_srv.port)["REMOTE_ADDR"] == "127.0.0.1"


def test_proxy_header_on_a_uwsgi_socket(pp_srv):
    """The front-end's REMOTE_ADDR var wins; without one the PROXY source is used."""
    raw = b"PROXY TCP4 198.51.100.7 10.0.0.1 1234 80\r\n" + uwsgi.encode_packet({"REQUEST_URI": "/environ"})
    resp, _ = parse_response(uwsgi.exchange(pp_srv.uwsgi, raw), eof=True)
    env = {k: v[1] for k, v in json.loads(resp.body).items()}
    assert env["REMOTE_ADDR"] == "198.51.100.7"


def test_malformed_proxy_header_is_logged_and_closed(pp_srv):
    mark = pp_srv.mark()
    with Conn(pp_srv.port, timeout=5) as c:
        c.send(b"PROXY TCP4 999.1.1.1 10.0.0.1 1 2\r\nGET / HTTP/1.1\r\n\r\n")
        assert c.wait_closed(5) and c.buf == b""
    pp_srv.wait_log(r"malformed PROXY v1 line: bad address from 127\.0\.0\.1", since=mark)


def test_proxy_header_from_an_untrusted_peer_is_refused(untrusting_srv):
    mark = untrusting_srv.mark()
    with Conn(untrusting_srv.port, timeout=5) as c:
        c.send(b"PROXY TCP4 198.51.100.22 10.0.0.5 40001 443\r\n" + request_bytes("GET", "/environ"))
        assert c.wait_closed(5) and c.buf == b""
    untrusting_srv.wait_log(r"PROXY header from 127\.0\.0\.1, which is not in forwarded-allow-ips", since=mark)
    # Without the header the same peer is served.
    assert environ(untrusting_srv.port)["REMOTE_ADDR"] == "127.0.0.1"
