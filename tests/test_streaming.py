"""Streamed responses (generators, write()): chunks are batched for speed but
never held back (PEP 3333), arrive whole and in order, and a client that
leaves mid-stream costs nothing but its own response.

The batching rule (src/worker/stream.rs): the first chunk and any chunk after
a pause of `stream-flush-us` go out at once; chunks produced faster than that
leave together, at the latest one delay after the batch began, even while the
app is still busy making the next chunk.
"""

from __future__ import annotations

import hashlib
import re
import socket
import time

import pytest
import requests

from support.rawhttp import Conn, request_bytes
from support.server import APPS, Server


def chunk(i: int, size: int) -> bytes:
    # same as stream_app.chunk
    return (b"%08d" % i + b"x" * size)[:size]


def expected(n: int, size: int) -> bytes:
    return b"".join(chunk(i, size) for i in range(n))


@pytest.fixture(scope="module", params=["default", "2threads"])
def srv(request, tmp_path_factory):
    threads = "1" if request.param == "default" else "2"
    s = Server(
        ["--wsgi-file", str(APPS / "stream_app.py"), "--processes", "1", "--threads", threads],
        workdir=tmp_path_factory.mktemp("stream"),
        name=f"stream-{request.param}",
    )
    yield s
    s.stop()


def test_many_small_chunks_arrive_whole_and_in_order(srv):
    r = requests.get(f"{srv.url}/many", params={"n": 1000, "size": 100}, timeout=10)
    assert r.status_code == 200
    assert r.headers.get("Transfer-Encoding") == "chunked"
    assert r.content == expected(1000, 100)


def test_chunks_larger_than_the_flush_threshold(srv):
    # 40 x 64 KiB = 2.5 MiB: the batch passes the 256 KiB threshold many times.
    r = requests.get(f"{srv.url}/many", params={"n": 40, "size": 65536}, timeout=20)
    assert r.status_code == 200
    assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(expected(40, 65536)).hexdigest()


def test_write_callable_chunks(srv):
    r = requests.get(f"{srv.url}/write", params={"n": 500, "size": 37}, timeout=10)
    assert r.status_code == 200
    assert r.content == expected(500, 37)


def test_write_then_file_wrapper_keeps_order(srv):
    """Bytes write() left pending go out before the file's."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("stream_app_copy", APPS / "stream_app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    r = requests.get(f"{srv.url}/write-then-file", params={"n": 50, "size": 10}, timeout=10)
    assert r.status_code == 200
    assert r.content == expected(50, 10) + mod.FILE_BYTES


def test_http10_close_delimited_stream(srv):
    with Conn(srv.port) as conn:
        conn.send(request_bytes("GET", "/many?n=300&size=50", "HTTP/1.0", []))
        data = conn.read_until_close(timeout=10)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200")
    assert b"transfer-encoding" not in head.lower()
    assert body == expected(300, 50)


def test_pipelined_request_after_a_stream_keeps_order(srv):
    with Conn(srv.port) as conn:
        conn.send(request_bytes("GET", "/many?n=200&size=30") + request_bytes("GET", "/sha?n=200&size=30"))
        first = conn.read_response(timeout=10)
        second = conn.read_response(timeout=10)
    assert first.status == 200 and first.body == expected(200, 30)
    assert second.body == hashlib.sha256(expected(200, 30)).hexdigest().encode()


def test_a_burst_is_sent_while_the_app_stalls(srv):
    """Chunks produced together are not held until the generator's next chunk:
    they reach the client while the app sleeps (PEP 3333: the server must
    continue transmission while the app produces its next block)."""
    n, size = 50, 100
    last_marker = b"%08d" % (n - 1)
    with Conn(srv.port) as conn:
        start = time.monotonic()
        conn.send(request_bytes("GET", f"/burst-then-stall?n={n}&size={size}&stall=3"))
        while last_marker not in conn.buf:
            conn.recv_some(timeout=max(0.01, start + 1.0 - time.monotonic()))
        took = time.monotonic() - start
        assert took < 1.0, f"the burst took {took:.3f}s to arrive; the app stalls for 3s after it"
        resp = conn.read_response(timeout=10)
    assert resp.body == expected(n, size) + b"END"


def test_slow_chunks_each_arrive_before_the_next_is_made(srv):
    gap = 0.2
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
        s.sendall(request_bytes("GET", f"/paced?n=5&gap={gap}"))
        buf = b""
        seen: dict[int, float] = {}
        deadline = time.monotonic() + 10
        while len(seen) < 5 and time.monotonic() < deadline:
            data = s.recv(65536)
            if not data:
                break
            now = time.time()
            buf += data
            for m in re.finditer(rb"(\d+)@(\d+\.\d+);", buf):
                i = int(m.group(1))
                if i not in seen:
                    seen[i] = now - float(m.group(2))
    assert sorted(seen) == list(range(5)), buf
    # Each chunk arrived well within the gap the app waits before the next.
    assert max(seen.values()) < gap / 2, seen


def test_client_leaving_mid_stream_closes_the_iterable_and_spares_the_worker(srv):
    before = int(requests.get(f"{srv.url}/closed", timeout=5).text)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(request_bytes("GET", "/many?n=20000&size=1000"))
        s.recv(1000)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if int(requests.get(f"{srv.url}/closed", timeout=5).text) > before:
            break
        time.sleep(0.05)
    assert int(requests.get(f"{srv.url}/closed", timeout=5).text) == before + 1
    r = requests.get(f"{srv.url}/many", params={"n": 10, "size": 10}, timeout=5)
    assert r.content == expected(10, 10)


def test_a_generator_feeding_a_reader_that_stalls_waits_for_it(tmp_path):
    """What a generator has produced but the socket has not taken stays
    bounded (README: it waits once 256 KiB is unsent), in the stream batch
    as much as in the response buffer; then every byte still arrives."""
    n, size = 5000, 8192  # 40 MB
    with Server(
        ["--wsgi-file", str(APPS / "stream_app.py"), "--threads", "2"],
        workdir=tmp_path,
        name="stream-stall",
    ) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
            s.sendall(b"GET /counted?n=%d&size=%d HTTP/1.0\r\nHost: x\r\n\r\n" % (n, size))
            got = s.recv(1000)
            time.sleep(1.5)
            produced = int(requests.get(f"{srv.url}/produced", timeout=5).text)
            # Loopback send and receive buffers (at most 4 MiB + 32 KiB
            # here), 256 KiB, a chunk: far from all 40 MB.
            assert produced < 12 * 1024 * 1024, produced
            while True:
                data = s.recv(1 << 20)
                if not data:
                    break
                got += data
        body = got.split(b"\r\n\r\n", 1)[1]
        assert hashlib.sha256(body).hexdigest() == hashlib.sha256(expected(n, size)).hexdigest()


def test_flush_delay_zero_sends_every_chunk_at_once(tmp_path):
    with Server(
        ["--wsgi-file", str(APPS / "stream_app.py"), "--stream-flush-us", "0"],
        workdir=tmp_path,
        name="stream-nodelay",
    ) as s:
        r = requests.get(f"{s.url}/many", params={"n": 500, "size": 20}, timeout=10)
        assert r.content == expected(500, 20)


def test_flush_delay_is_validated(tmp_path):
    from support.server import run_capataz

    r = run_capataz(["--wsgi-file", str(APPS / "stream_app.py"), "--stream-flush-us", "5000000"])
    assert r.returncode == 64
    assert "stream-flush-us" in r.stderr
