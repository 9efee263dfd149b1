"""Streaming responses for tests/test_streaming.py: generators with bursts,
pauses and large chunks, write(), and write() followed by a file_wrapper."""

import hashlib
import os
import tempfile
import time
from urllib.parse import parse_qs

_FILE = os.path.join(tempfile.gettempdir(), f"capataz-stream-{os.getpid()}.bin")
FILE_BYTES = bytes((i * 13) % 251 for i in range(200_000))
CLOSED = {"count": 0}
PRODUCED = {"bytes": 0}


class Tracked:
    """An iterable whose close() is counted (PEP 3333: called exactly once)."""

    def __init__(self, gen):
        self.gen = gen

    def __iter__(self):
        return self.gen

    def close(self):
        CLOSED["count"] += 1
        self.gen.close()


def chunk(i, size):
    return (b"%08d" % i + b"x" * size)[:size]


def application(environ, start_response):
    q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    path = environ["PATH_INFO"]
    n = int(q.get("n", "10"))
    size = int(q.get("size", "100"))
    if path == "/burst-then-stall":
        # n chunks at once, then a long pause before the last one.
        def gen():
            for i in range(n):
                yield chunk(i, size)
            time.sleep(float(q.get("stall", "3")))
            yield b"END"

        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Tracked(gen())
    if path == "/paced":
        # One chunk per gap: each must reach the client before the next is made.
        def gen():
            for i in range(n):
                yield b"%d@%.6f;" % (i, time.time())
                time.sleep(float(q.get("gap", "0.2")))

        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()
    if path == "/many":
        def gen():
            for i in range(n):
                yield chunk(i, size)

        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Tracked(gen())
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
        for i in range(n):
            write(chunk(i, size))
        return []
    if path == "/write-then-file":
        if not os.path.exists(_FILE):
            with open(_FILE, "wb") as f:
                f.write(FILE_BYTES)
        write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
        for i in range(n):
            write(chunk(i, size))
        return environ["wsgi.file_wrapper"](open(_FILE, "rb"))
    if path == "/counted":
        # Like /many, counting what the generator has produced so far
        # (/produced reads it): a slow reader must make it wait.
        def gen():
            for i in range(n):
                PRODUCED["bytes"] += size
                yield chunk(i, size)

        PRODUCED["bytes"] = 0
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return gen()
    if path == "/produced":
        body = str(PRODUCED["bytes"]).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    if path == "/closed":
        body = str(CLOSED["count"]).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    if path == "/sha":
        # The digest of what /many would send, for a cross-check.
        h = hashlib.sha256()
        for i in range(n):
            h.update(chunk(i, size))
        body = h.hexdigest().encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    start_response("200 OK", [("Content-Length", "2")])
    return [b"ok"]
