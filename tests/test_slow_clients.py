"""Threads and slow clients (DESIGN §2.2; issue 2 item 5).

A slow client never holds a Python thread: heads and bodies are read by the
I/O side first.  Timings here are coarse facts ("not delayed by seconds"),
never speed claims.
"""

from __future__ import annotations

import statistics
import threading
import time

import pytest

from support.rawhttp import Conn, ConnectionClosedEarly, request_bytes
from support.server import plain_args


def timed_get(port, target="/hello"):
    started = time.monotonic()
    with Conn(port, timeout=10) as conn:
        conn.send(request_bytes("GET", target, headers=[("Connection", "close")]))
        resp = conn.read_response()
    assert resp.status == 200
    return time.monotonic() - started


@pytest.mark.timeout(90)
def test_slow_header_clients_do_not_delay_others(server_factory):
    """Issue 2 item 5: with threads = 2, 200 connections each sending one byte
    of their head per second do not delay normal requests (median < 50 ms,
    max < 500 ms over 50 requests); the slow ones are then served."""
    s = server_factory(
        plain_args("--processes", "1", "--threads", "2", "--listen", "1024", "--worker-connections", "1000")
    )
    head = request_bytes("GET", "/hello", headers=[("Connection", "close")])
    slow = [Conn(s.port, timeout=10) for _ in range(200)]
    stop = threading.Event()
    sent = {"bytes": 0, "errors": []}

    def trickle():
        for i in range(5):  # ~5 s, one byte per connection per second
            for conn in slow:
                try:
                    conn.send(head[i : i + 1])
                except OSError as e:
                    sent["errors"].append(repr(e))
            sent["bytes"] = i + 1
            if stop.wait(1.0):
                return

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    time.sleep(0.5)
    latencies = []
    for _ in range(50):  # spread over ~3 s, while the slow heads trickle in
        latencies.append(timed_get(s.port))
        time.sleep(0.05)
    t.join(10)
    stop.set()
    assert not sent["errors"], sent["errors"][:5]
    assert len(latencies) == 50
    med, worst = statistics.median(latencies), max(latencies)
    assert med < 0.050, f"median {med * 1000:.1f} ms with slow clients connected"
    assert worst < 0.500, f"max {worst * 1000:.1f} ms with slow clients connected"

    # The slow clients were not dropped (default header timeout is 30 s):
    # finish their heads; each gets its answer.
    served = 0
    for conn in slow:
        conn.send(head[5:])
    for conn in slow:
        try:
            resp = conn.read_response(timeout=10)
        except ConnectionClosedEarly:
            continue
        assert resp.status == 200 and resp.body == b"Hello, World!"
        served += 1
        conn.close()
    assert served == 200, f"only {served}/200 slow clients were served"


@pytest.mark.timeout(60)
def test_slow_body_clients_do_not_hold_the_only_python_thread(server_factory):
    """DESIGN §2.2: bodies are read completely before an app thread sees the
    request, so 20 clients trickling a body do not block --threads 1."""
    s = server_factory(plain_args("--processes", "1", "--threads", "1"))
    body = b"0123456789" * 3
    slow = []
    for _ in range(20):
        c = Conn(s.port, timeout=15)
        c.send(b"POST /echo-raw HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        slow.append(c)
    stop = threading.Event()

    def trickle():
        for i in range(len(body)):
            for c in slow:
                c.send(body[i : i + 1])
            if stop.wait(0.1):
                return

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    time.sleep(0.3)
    latencies = [timed_get(s.port) for _ in range(20)]
    t.join(10)
    stop.set()
    assert max(latencies) < 0.5, [round(x * 1000) for x in latencies]
    for c in slow:
        resp = c.read_response(timeout=10)
        assert resp.body == body
        c.close()


@pytest.mark.timeout(60)
def test_threads_run_requests_concurrently(server_factory):
    """Issue 2 item 5: --threads 4 runs app calls concurrently: 8 clients x 10
    requests to a 10 ms endpoint take well under the serial 800 ms."""
    s = server_factory(plain_args("--processes", "1", "--threads", "4"))
    # warm up: every app thread and the connection path
    for _ in range(8):
        timed_get(s.port, "/sleep?ms=1")

    errors = []

    def client():
        try:
            with Conn(s.port, timeout=10) as conn:
                for _ in range(10):
                    conn.send(request_bytes("GET", "/sleep?ms=10"))
                    assert conn.read_response().status == 200
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=client) for _ in range(8)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    wall = time.monotonic() - started
    assert not errors, errors
    assert wall < 0.600, f"80 x 10 ms took {wall * 1000:.0f} ms: app threads did not overlap"


def _slow_download(port, target, result, i, rate=4_000_000):
    """Reads a response at about `rate` bytes/s into result[i] (the raw bytes)."""
    import socket

    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.sendall(request_bytes("GET", target, headers=[("Connection", "close")]))
    got = bytearray()
    piece = 64 * 1024
    try:
        while True:
            data = sock.recv(piece)
            if not data:
                break
            got += data
            time.sleep(len(data) / rate)
    except OSError as e:
        result[i] = e
        return
    finally:
        sock.close()
    result[i] = bytes(got)


def _one_thread_args(app, venv_test):
    """One worker with one Python thread, serving the plain or the Flask app."""
    from support.server import APPS

    if app == "flask":
        return [
            "--wsgi-file", str(APPS / "flask_app.py"), "--callable", "app",
            "--virtualenv", str(venv_test), "--processes", "1", "--threads", "1",
        ]
    return plain_args("--processes", "1", "--threads", "1")


def _serve_during_slow_downloads(s, targets):
    """Starts a slow download of each target, checks that /pid answers in
    under 0.5 s meanwhile (three times), and returns what each download got."""
    result = [None] * len(targets)
    downloads = [
        threading.Thread(target=_slow_download, args=(s.port, target, result, i))
        for i, target in enumerate(targets)
    ]
    for t in downloads:
        t.start()
    time.sleep(1.0)
    assert all(t.is_alive() for t in downloads), "the downloads must still be running"
    for _ in range(3):
        took = timed_get(s.port, "/pid")
        assert took < 0.5, f"/pid took {took:.2f} s while {len(targets)} slow clients download"
        time.sleep(0.2)
    for t in downloads:
        t.join(60)
    return result


def _check_download(raw, n, chunked):
    from support.rawhttp import parse_response

    assert isinstance(raw, bytes), raw
    resp, _ = parse_response(raw, eof=True)
    assert resp.status == 200
    if chunked:
        assert resp.header("Transfer-Encoding") == "chunked"
    else:
        assert resp.header("Content-Length") == str(n)
    assert len(resp.body) == n and resp.body.count(b"x") == n


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "app, target, chunked",
    [
        ("flask", "/blob?n=20000000", False),
        ("plain", "/blob?n=20000000", False),
        ("plain", "/blob?n=20000000&chunked=1", True),
    ],
)
def test_slow_downloads_of_a_large_body_do_not_hold_the_only_python_thread(
    server_factory, venv_test, app, target, chunked
):
    """DESIGN §2.2: a body the app has produced whole (Flask's `return
    b"x" * N`, a list, a generator's last chunk) is handed to the I/O side,
    which finishes sending it as the socket drains; the only Python thread
    serves others meanwhile, and the downloads arrive intact."""
    s = server_factory(_one_thread_args(app, venv_test))
    result = _serve_during_slow_downloads(s, [target, target])
    n = int(target.split("n=")[1].split("&")[0])
    for raw in result:
        _check_download(raw, n, chunked)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "target, n",
    [
        # A large body the event loop finishes sending (curl -m1 on it).
        ("/blob?n=20000000", 20_000_000),
        # A streamed response the app thread is still producing.
        ("/big?n=20000000&chunk=65536&delay=0.002", 20_000_000),
        # A wsgi.file_wrapper file the event loop sends with sendfile.
        ("/file?size=20000000", 20_000_000),
    ],
)
def test_a_client_that_leaves_mid_response_is_still_logged(server_factory, target, n):
    """uWSGI logs the request line of an aborted response (and a write
    error); so do we: the status sent, the bytes the client actually took,
    and one line saying it went away."""
    import re
    import socket
    import struct

    s = server_factory(plain_args("--processes", "1", "--threads", "1"))
    mark = s.mark()
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.sendall(request_bytes("GET", target))
    got = 0
    while got < 200_000:
        data = sock.recv(65536)
        assert data
        got += len(data)
    time.sleep(0.3)
    # A reset, as a killed curl leaves.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    path = re.escape(target)
    m = s.wait_log(rf"GET {path} => generated (\d+) bytes .*\(HTTP/1\.1 200\)", since=mark, timeout=10)
    sent = int(m.group(1))
    assert 0 < sent < n, f"the log must show the bytes actually sent, not all {n}: {m.group(0)}"
    # The worker goes on serving.
    assert timed_get(s.port, "/hello") < 5


@pytest.mark.timeout(60)
@pytest.mark.parametrize("target", ["/blob?n=20000000", "/file?size=20000000"])
def test_send_timeout_closes_a_parked_large_response_to_a_client_that_never_reads(server_factory, target):
    """The event loop finishing a large body (or a wsgi.file_wrapper file)
    honours send-timeout even with several threads (one-shot EPOLLOUT
    registrations, which a read-side shutdown does not wake)."""
    import re
    import socket

    s = server_factory(plain_args("--processes", "1", "--threads", "2", "--send-timeout", "2"))
    mark = s.mark()
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.sendall(request_bytes("GET", target))
    time.sleep(6)  # never read meanwhile
    path = re.escape(target)
    m = s.wait_log(rf"GET {path} => generated (\d+) bytes in (\d+) msecs", since=mark, timeout=5)
    assert int(m.group(1)) < 20_000_000
    assert int(m.group(2)) < 5000, f"closed only when the client read again: {m.group(0)}"
    sock.close()


def _plain_app():
    """tests/apps/plain_app.py as a module, for the bytes its endpoints serve."""
    import importlib.util

    from support.server import APPS

    spec = importlib.util.spec_from_file_location("plain_app_copy", APPS / "plain_app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


BIG_FILE = 20_000_000


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "app, targets, offsets",
    [
        ("plain", [f"/file?size={BIG_FILE}", f"/file?size={BIG_FILE}&offset=12345"], (0, 12345)),
        ("flask", [f"/send-file?size={BIG_FILE}"] * 2, (0, 0)),
    ],
)
def test_slow_downloads_of_a_large_file_wrapper_file_do_not_hold_the_only_python_thread(
    server_factory, venv_test, app, targets, offsets
):
    """DESIGN §2.2 and §2.3: a wsgi.file_wrapper file (Flask's send_file) is
    handed to the I/O side, which sends it with sendfile as the socket
    drains; the only Python thread serves others meanwhile, the downloads
    arrive intact from the file's offset, and each is logged with its bytes
    once it ends."""
    import hashlib
    import re

    from support.rawhttp import parse_response

    s = server_factory(_one_thread_args(app, venv_test))
    mark = s.mark()
    result = _serve_during_slow_downloads(s, targets)
    content = _plain_app().sized_file_bytes(BIG_FILE)
    for raw, offset in zip(result, offsets):
        assert isinstance(raw, bytes), raw
        resp, _ = parse_response(raw, eof=True)
        assert resp.status == 200
        assert resp.header("Content-Length") == str(BIG_FILE - offset)
        assert len(resp.body) == BIG_FILE - offset
        assert hashlib.sha256(resp.body).hexdigest() == hashlib.sha256(content[offset:]).hexdigest()
    for target, offset in zip(targets, offsets):
        s.wait_log(
            rf"GET {re.escape(target)} => generated {BIG_FILE - offset} bytes .*\(HTTP/1\.1 200\)",
            since=mark,
            timeout=5,
        )
    if app == "flask":
        log = s.log_since(mark)
        assert log.count(f"GET {targets[0]} => generated {BIG_FILE} bytes") == 2, log


@pytest.mark.timeout(60)
def test_keep_alive_goes_on_after_a_large_file_wrapper_file(server_factory):
    """A request pipelined behind a file the event loop is still sending is
    served after it, in order; HEAD of the file sends no body; the
    connection stays usable. The worker's only thread is free meanwhile."""
    import hashlib

    s = server_factory(plain_args("--processes", "1", "--threads", "1"))
    content = _plain_app().sized_file_bytes(BIG_FILE)
    with Conn(s.port, timeout=30) as conn:
        conn.send(
            request_bytes("GET", f"/file?size={BIG_FILE}")
            + request_bytes("GET", "/pid")
            + request_bytes("HEAD", f"/file?size={BIG_FILE}")
            + request_bytes("GET", "/hello")
        )
        time.sleep(1.0)  # read nothing: the file's send is parked
        took = timed_get(s.port, "/pid")
        assert took < 0.5, f"/pid took {took:.2f} s while a client is not reading its file"
        first = conn.read_response()
        assert first.status == 200 and first.header("Content-Length") == str(BIG_FILE)
        assert hashlib.sha256(first.body).hexdigest() == hashlib.sha256(content).hexdigest()
        pid = conn.read_response()
        assert pid.status == 200 and pid.body.strip().isdigit()
        head = conn.read_response("HEAD")
        assert head.status == 200 and head.body == b""
        hello = conn.read_response()
        assert hello.status == 200 and hello.body == b"Hello, World!"
        # Not pipelined: the connection is still open and served.
        conn.send(request_bytes("GET", "/file?offset=5"))
        small = conn.read_response()
        assert small.body == _plain_app().file_bytes()[5:]
