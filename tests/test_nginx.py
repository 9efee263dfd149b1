"""A real nginx in front of capataz (issue 5 item 2): the production picture
nginx -> uwsgi_pass -> capataz, and nginx -> proxy_pass -> http-socket.

nginx runs with a generated config in a temp dir on free loopback ports
(tests/support/nginx.py).  Ports:
  unix_port   uwsgi_pass unix:app.sock   (with `include uwsgi_params`)
  tcp_port    uwsgi_pass 127.0.0.1:N     (and a /stream location, unbuffered)
  proxy_port  proxy_pass to capataz's http-socket, setting X-Forwarded-*
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import time
from pathlib import Path

import pytest

from support.nginx import Nginx
from support.server import Server, free_port, plain_args


def env_of(resp_body: bytes) -> dict:
    return {k: v[1] for k, v in json.loads(resp_body).items()}


def fetch(port, method, path, body=None, headers=None, source="127.0.0.1", timeout=30):
    """One request through nginx from `source` (any 127/8 address works on lo)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def nginx_conf(ports, sock, uwsgi_port, http_socket_port) -> str:
    return f"""
    server {{
        listen 127.0.0.1:{ports['unix']};
        location / {{
            include {{uwsgi_params}};
            uwsgi_pass unix:{sock};
        }}
    }}
    server {{
        listen 127.0.0.1:{ports['tcp']};
        location / {{
            include {{uwsgi_params}};
            uwsgi_pass 127.0.0.1:{uwsgi_port};
        }}
        location /gen {{
            include {{uwsgi_params}};
            uwsgi_pass 127.0.0.1:{uwsgi_port};
            uwsgi_buffering off;
        }}
    }}
    server {{
        listen 127.0.0.1:{ports['proxy']};
        location / {{
            proxy_pass http://127.0.0.1:{http_socket_port};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto https;
        }}
    }}
"""


def start_pair(workdir, extra_args=()):
    """capataz (uwsgi on a unix socket and TCP, HTTP on an http-socket) and
    an nginx in front of it."""
    workdir.mkdir(parents=True, exist_ok=True)
    sock = str(workdir / "app.sock")
    uwsgi_port, http_socket_port = free_port(), free_port()
    srv = Server(
        plain_args(
            "--socket", sock,
            "--socket", f"127.0.0.1:{uwsgi_port}",
            "--http-socket", f"127.0.0.1:{http_socket_port}",
            "--threads", "4",
            *extra_args,
        ),
        workdir=workdir / "capataz",
        name="behind-nginx",
    )
    ports = {"unix": free_port(), "tcp": free_port(), "proxy": free_port()}
    try:
        nginx = Nginx(
            workdir / "nginx",
            nginx_conf(ports, sock, uwsgi_port, http_socket_port),
            list(ports.values()),
            http_extra="client_max_body_size 10m; large_client_header_buffers 4 32k;",
        )
    except BaseException:
        srv.stop()
        raise
    return srv, nginx, ports


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    srv, nginx, ports = start_pair(tmp_path_factory.mktemp("nginx"))
    yield srv, nginx, ports
    nginx.stop()
    srv.stop()


@pytest.fixture(params=["unix", "tcp"])
def uwsgi_port(request, pair):
    return pair[2][request.param]


def test_uwsgi_pass(pair, uwsgi_port):
    status, headers, body = fetch(uwsgi_port, "GET", "/environ/caf%C3%A9?a=1&b=%20")
    assert status == 200, (body, pair[1].errors())
    env = env_of(body)
    assert env["PATH_INFO"] == "/environ/caf\xc3\xa9"  # decoded by nginx, as bytes
    assert env["QUERY_STRING"] == "a=1&b=%20"
    assert env["REQUEST_URI"] == "/environ/caf%C3%A9?a=1&b=%20"
    assert env["SCRIPT_NAME"] == ""
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(uwsgi_port)
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] == "127.0.0.1"
    status, headers, body = fetch(uwsgi_port, "GET", "/hello")
    assert (status, body) == (200, b"Hello, World!")
    assert headers["Content-Length"] == "13"


def test_5mib_upload(pair, uwsgi_port):
    body = os.urandom(5 * 1024 * 1024)
    status, _, resp = fetch(uwsgi_port, "POST", "/echo", body=body, headers={"Content-Type": "application/octet-stream"})
    assert status == 200, pair[1].errors()
    got = json.loads(resp)
    assert got["len"] == len(body)
    assert got["sha256"] == hashlib.sha256(body).hexdigest()
    assert got["spooled"] is True
    assert got["content_type"] == "application/octet-stream"


def test_20k_of_cookies(pair, uwsgi_port):
    cookie = "; ".join(f"session{i}={'c' * 100}" for i in range(190))
    assert len(cookie) > 20 * 1024
    status, _, body = fetch(uwsgi_port, "GET", "/environ", headers={"Cookie": cookie})
    assert status == 200, pair[1].errors()
    assert env_of(body)["HTTP_COOKIE"] == cookie


def test_streaming_response(pair):
    """A generator's chunks reach the client as they are produced (nginx
    with uwsgi_buffering off relays them chunked), and the body is whole."""
    port = pair[2]["tcp"]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/gen?n=8&size=1000&delay=0.25")
        resp = conn.getresponse()
        assert resp.status == 200
        first = resp.read1(65536)
        t_first = time.monotonic()
        rest = resp.read()
        t_last = time.monotonic()
    finally:
        conn.close()
    assert first + rest == b"".join(str(i).encode() * 1000 for i in range(8))
    # Coarse: the last chunk came about 7 x 0.25 s after the first.
    assert t_last - t_first > 0.8


def test_connection_closes_after_each_uwsgi_response(pair, uwsgi_port):
    """capataz closes; nginx keeps answering (no 502 on a reused upstream)."""
    for _ in range(20):
        status, _, body = fetch(uwsgi_port, "GET", "/hello")
        assert (status, body) == (200, b"Hello, World!")
    assert "upstream prematurely closed" not in pair[1].errors()


def test_proxy_pass_with_x_forwarded(pair):
    """nginx on loopback is trusted by default: its X-Forwarded-For (the
    client's own address, 127.0.0.3 here) and X-Forwarded-Proto apply."""
    status, _, body = fetch(pair[2]["proxy"], "GET", "/environ", source="127.0.0.3")
    assert status == 200, pair[1].errors()
    env = env_of(body)
    assert env["REMOTE_ADDR"] == "127.0.0.3"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_X_FORWARDED_FOR"] == "127.0.0.3"


def test_proxy_pass_from_an_untrusted_peer(tmp_path):
    """With forwarded-allow-ips 10.0.0.0/8 the nginx on loopback is not
    trusted: REMOTE_ADDR is nginx's own, the scheme stays http, and the
    headers are only headers."""
    srv, nginx, ports = start_pair(tmp_path, ["--forwarded-allow-ips", "10.0.0.0/8"])
    try:
        status, _, body = fetch(ports["proxy"], "GET", "/environ", source="127.0.0.3")
        assert status == 200
        env = env_of(body)
        assert env["REMOTE_ADDR"] == "127.0.0.1"
        assert env["wsgi.url_scheme"] == "http"
        assert env["HTTP_X_FORWARDED_FOR"] == "127.0.0.3"
        assert env["HTTP_X_FORWARDED_PROTO"] == "https"
        # uwsgi_pass is unaffected: nginx states REMOTE_ADDR in the packet.
        status, _, body = fetch(ports["unix"], "GET", "/environ", source="127.0.0.3")
        assert env_of(body)["REMOTE_ADDR"] == "127.0.0.3"
    finally:
        nginx.stop()
        srv.stop()


def test_buffer_size_overflow_is_a_502_and_a_log_line(tmp_path):
    """A packet bigger than buffer-size: nginx answers 502, capataz says why."""
    srv, nginx, ports = start_pair(tmp_path, ["--buffer-size", "4096"])
    try:
        mark = srv.mark()
        status, _, _ = fetch(ports["tcp"], "GET", "/environ", headers={"Cookie": "x" * 6000})
        assert status == 502
        srv.wait_log(r"exceeds buffer-size \(raise buffer-size", since=mark)
        status, _, body = fetch(ports["tcp"], "GET", "/hello")
        assert (status, body) == (200, b"Hello, World!")
    finally:
        nginx.stop()
        srv.stop()


def test_nginx_serves_static_and_passes_the_rest(tmp_path):
    """The README's `server {}` block, as written there: nginx serves /static
    from disk, the app gets everything else."""
    static = tmp_path / "static"
    static.mkdir()
    (static / "site.css").write_text("body{}")
    sock = str(tmp_path / "app.sock")
    port = free_port()
    srv = Server(plain_args("--socket", sock, "--chmod-socket", "660"), workdir=tmp_path / "capataz")
    try:
        readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
        block = readme.split("## Behind nginx", 1)[1].split("```nginx", 1)[1].split("```", 1)[0]
        block = (
            block.replace("listen 80;", f"listen 127.0.0.1:{port};")
            .replace("/srv/app/static/", f"{static}/")
            .replace("/run/capataz/app.sock", sock)
            .replace("/etc/nginx/uwsgi_params", "{uwsgi_params}")
        )
        with Nginx(tmp_path / "nginx", block, [port]) as nginx:
            status, _, body = fetch(port, "GET", "/static/site.css")
            assert (status, body) == (200, b"body{}")
            status, _, body = fetch(port, "GET", "/hello")
            assert (status, body) == (200, b"Hello, World!"), nginx.errors()
            assert "/static/site.css" not in srv.log()
    finally:
        srv.stop()
