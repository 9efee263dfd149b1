"""A pure-WSGI app (no dependencies) with one endpoint per bullet of the WSGI
contract (PEP 3333, DESIGN §6), plus helpers for the HTTP and master tests.

Endpoints (PATH_INFO):
  /                      "ok"
  /hello                 "Hello, World!" (13 bytes)
  /pid                   the worker's pid
  /path/...              echoes PATH_INFO (latin-1 -> utf-8 of the str)
  /environ               JSON description of the environ: {key: [type, value]}
  /echo                  reads wsgi.input.read(); JSON with len, sha256, body
                         (latin-1), spooled flag, CONTENT_* values
  /echo-raw              the request body, as the response body
  /input?mode=...        exercises one wsgi.input method, JSON result
  /write                 uses the write() callable, then returns an iterable
  /single                one-element list, 100 bytes
  /gen?n=&size=          generator of n chunks
  /lazy                  generator that calls start_response on first next()
  /exc-info-before       start_response(..., exc_info) before any body: replaces headers
  /exc-info-after        start_response(..., exc_info) after the first body chunk
  /error-before          raises before start_response
  /error-after           raises after the first body chunk
  /close?mode=ok|error|disconnect&key=K   iterable whose close() is counted
  /state?key=K           JSON of the counters for key K
  /file?offset=N         wsgi.file_wrapper over file_bytes(), seeked to N
  /file?size=S&offset=N  the same over sized_file_bytes(S), a file of S bytes
  /sleep?ms=N            sleeps, returns the pid; logs "sleep-start" to wsgi.errors
  /big?n=N&chunk=C       N bytes of b"x" in chunks of C (streamed slowly if delay=)
  /errors                writes a marker line to wsgi.errors
  /status?code=N         responds with that status
"""

import hashlib
import json
import os
import random
import sys
import tempfile
import threading
import time
from urllib.parse import parse_qs

STATE_LOCK = threading.Lock()
# key -> {"close": int, "iter": int, "reraised": bool, ...}
STATE = {}

FILE_SIZE = 300_000


def file_bytes():
    """The content served by /file; tests compute the same bytes."""
    return bytes((i * 7 + i // 256) % 256 for i in range(FILE_SIZE))


def sized_file_bytes(size):
    """The content served by /file?size=N (pseudo-random, so a byte sent from
    the wrong offset shows); tests compute the same bytes."""
    if size == FILE_SIZE:
        return file_bytes()
    return random.Random(size).randbytes(size)


# One file per size shared by every worker and run: its content is
# deterministic, and it is written atomically, so concurrent writers are
# harmless.
def file_path(size=FILE_SIZE):
    path = os.path.join(tempfile.gettempdir(), f"capataz-test-file-{size}.bin")
    try:
        if os.path.getsize(path) == size:
            return path
    except OSError:
        pass
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "wb") as f:
        f.write(sized_file_bytes(size))
    os.replace(tmp, path)
    return path


def _state(key):
    with STATE_LOCK:
        return STATE.setdefault(key, {"close": 0, "iter": 0, "reraised": False, "done": False})


def _bump(key, field, by=1):
    with STATE_LOCK:
        st = STATE.setdefault(key, {"close": 0, "iter": 0, "reraised": False, "done": False})
        st[field] += by


def _query(environ):
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True).items()}


def _ok(start_response, body, ctype="text/plain"):
    if isinstance(body, str):
        body = body.encode("utf-8")
    start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def _json(start_response, obj, status="200 OK"):
    body = json.dumps(obj).encode("utf-8")
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _describe(value):
    if isinstance(value, (str, bool, int, float)) or value is None:
        return [type(value).__name__, value]
    if isinstance(value, tuple):
        return [type(value).__name__, list(value)]
    return [type(value).__name__, repr(value)]


class CountingIterable:
    """An iterable whose close() calls and iterations are counted under a key."""

    def __init__(self, key, mode, chunks, chunk_size, delay):
        self.key = key
        self.mode = mode
        self.remaining = chunks
        self.chunk = b"c" * chunk_size
        self.delay = delay

    def __iter__(self):
        return self

    def __next__(self):
        if self.remaining <= 0:
            _state(self.key)["done"] = True
            raise StopIteration
        _bump(self.key, "iter")
        self.remaining -= 1
        if self.mode == "error" and _state(self.key)["iter"] == 2:
            raise RuntimeError("close-test: error in the middle of the iteration")
        if self.delay:
            time.sleep(self.delay)
        return self.chunk

    def close(self):
        _bump(self.key, "close")


def _input_exercise(inp, mode, q):
    """Run one wsgi.input method; return the pieces read (as latin-1 str)."""
    pieces = []
    if mode == "read":
        pieces.append(inp.read())
    elif mode == "read-n":
        n = int(q.get("n", "3"))
        while True:
            data = inp.read(n)
            pieces.append(data)
            if not data:
                break
            if len(pieces) > 100000:
                raise RuntimeError("read(n) never reached EOF")
    elif mode == "read-negative":
        pieces.append(inp.read(-1))
    elif mode == "read-none":
        pieces.append(inp.read(None))
    elif mode == "readline":
        while True:
            line = inp.readline()
            pieces.append(line)
            if not line:
                break
            if len(pieces) > 100000:
                raise RuntimeError("readline() never reached EOF")
    elif mode == "readline-n":
        n = int(q.get("n", "4"))
        while True:
            line = inp.readline(n)
            pieces.append(line)
            if not line:
                break
            if len(pieces) > 100000:
                raise RuntimeError("readline(n) never reached EOF")
    elif mode == "readlines":
        pieces.extend(inp.readlines())
    elif mode == "iter":
        pieces.extend(iter(inp))
    else:
        raise ValueError(f"unknown mode {mode!r}")
    # Past the end: every method must return b'' at once, never block.
    after = [inp.read(), inp.read(10), inp.readline(), inp.readline(5), inp.readlines()]
    return pieces, after


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    q = _query(environ)

    if path == "/":
        return _ok(start_response, "ok")

    if path == "/hello":
        return _ok(start_response, b"Hello, World!")

    if path == "/pid":
        return _ok(start_response, str(os.getpid()))

    if path.startswith("/path"):
        return _ok(start_response, path.encode("latin-1"), "application/octet-stream")

    if path == "/environ" or path.startswith("/environ/"):
        errors = environ["wsgi.errors"]
        errors.write("wsgi.errors is writable\n")
        errors.writelines(["wsgi.errors writelines\n"])
        errors.flush()
        described = {k: _describe(v) for k, v in environ.items()}
        described["__input_has_methods__"] = [
            "list",
            [m for m in ("read", "readline", "readlines", "__iter__") if hasattr(environ["wsgi.input"], m)],
        ]
        described["__file_wrapper_callable__"] = ["bool", callable(environ.get("wsgi.file_wrapper"))]
        return _json(start_response, described)

    if path == "/echo":
        body = environ["wsgi.input"].read()
        return _json(
            start_response,
            {
                "len": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
                "body": body[:65536].decode("latin-1"),
                "spooled": environ.get("capataz.input_spooled"),
                "content_length": environ.get("CONTENT_LENGTH"),
                "content_type": environ.get("CONTENT_TYPE"),
                "method": environ.get("REQUEST_METHOD"),
                "input_terminated": environ.get("wsgi.input_terminated"),
            },
        )

    if path == "/echo-raw":
        body = environ["wsgi.input"].read()
        start_response(
            "200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(body)))]
        )
        return [body]

    if path == "/input":
        mode = q.get("mode", "read")
        pieces, after = _input_exercise(environ["wsgi.input"], mode, q)
        return _json(
            start_response,
            {
                "pieces": [p.decode("latin-1") for p in pieces],
                "types": sorted({type(p).__name__ for p in pieces}),
                "after": [a.decode("latin-1") if isinstance(a, bytes) else [x.decode("latin-1") for x in a] for a in after],
            },
        )

    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"part1-")
        write(b"part2-")
        return [b"part3"]

    if path == "/single":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"s" * 100]

    if path == "/gen":
        n = int(q.get("n", "5"))
        size = int(q.get("size", "10"))
        delay = float(q.get("delay", "0"))
        start_response("200 OK", [("Content-Type", "text/plain")])

        def gen():
            for i in range(n):
                if delay:
                    time.sleep(delay)
                yield (b"%d" % (i % 10)) * size

        return gen()

    if path == "/lazy":

        def lazy():
            start_response("200 OK", [("Content-Type", "text/plain"), ("X-Lazy", "yes")])
            yield b"lazy-"
            yield b"body"

        return lazy()

    if path == "/exc-info-before":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-Original", "1")])
        try:
            raise ValueError("replaced before any body was sent")
        except ValueError:
            start_response(
                "500 Internal Server Error",
                [("Content-Type", "text/plain"), ("X-Replaced", "1")],
                sys.exc_info(),
            )
        return [b"replaced"]

    if path == "/exc-info-after":
        key = q.get("key", "exc-info-after")

        def gen():
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"first chunk;"
            time.sleep(0.05)
            try:
                raise ValueError("error after headers were sent")
            except ValueError:
                try:
                    start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
                except ValueError:
                    # PEP 3333: start_response re-raised our own exception.
                    _state(key)["reraised"] = True
                    raise
                _state(key)["reraised"] = False
            yield b"should never be sent"

        return gen()

    if path == "/error-before":
        raise RuntimeError("boom-before-headers")

    if path == "/blob":
        # A large body produced in one piece: a list (Content-Length), or a
        # generator's only chunk without a length (chunked).
        n = int(q.get("n", "1048576"))
        data = b"x" * n
        if q.get("chunked"):
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
            return iter([data])
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(n))])
        return [data]

    if path == "/sysexit":
        sys.exit(0)

    if path == "/sysexit-after":

        def gen():
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"partial;"
            time.sleep(0.05)
            sys.exit(3)

        return gen()

    if path == "/error-after":

        def gen():
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"partial;"
            time.sleep(0.05)
            raise RuntimeError("boom-after-headers")

        return gen()

    if path == "/close":
        key = q["key"]
        mode = q.get("mode", "ok")
        _state(key)
        start_response("200 OK", [("Content-Type", "text/plain")])
        if mode == "ok":
            return CountingIterable(key, mode, chunks=3, chunk_size=10, delay=0)
        if mode == "error":
            return CountingIterable(key, mode, chunks=5, chunk_size=10, delay=0)
        if mode == "disconnect":
            # ~400 x 64 KiB with 10 ms pauses: about 4 s and 25 MiB if the
            # server never notices that the client went away.
            return CountingIterable(key, mode, chunks=400, chunk_size=65536, delay=0.01)
        raise ValueError(mode)

    if path == "/state":
        with STATE_LOCK:
            st = dict(STATE.get(q["key"], {}))
        st["pid"] = os.getpid()
        return _json(start_response, st)

    if path == "/file":
        offset = int(q.get("offset", "0"))
        f = open(file_path(int(q.get("size", FILE_SIZE))), "rb")
        f.seek(offset)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](f, 8192)

    if path == "/sleep":
        ms = int(q.get("ms", "10"))
        tag = q.get("tag", "")
        if tag:
            environ["wsgi.errors"].write(f"sleep-start {tag}\n")
            environ["wsgi.errors"].flush()
        time.sleep(ms / 1000.0)
        size = int(q.get("size", "0"))
        body = str(os.getpid()).encode() + (b"\n" + b"z" * size if size else b"")
        return _ok(start_response, body)

    if path == "/big":
        n = int(q.get("n", "1048576"))
        chunk = int(q.get("chunk", "65536"))
        delay = float(q.get("delay", "0"))
        start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(n))])

        def gen():
            left = n
            while left > 0:
                piece = min(chunk, left)
                left -= piece
                if delay:
                    time.sleep(delay)
                yield b"x" * piece

        return gen()

    if path == "/errors":
        environ["wsgi.errors"].write("wsgi-errors-marker " + q.get("tag", "") + "\n")
        environ["wsgi.errors"].flush()
        return _ok(start_response, "logged")

    if path == "/status":
        code = int(q.get("code", "200"))
        reasons = {200: "OK", 201: "Created", 204: "No Content", 404: "Not Found", 418: "I'm a teapot"}
        start_response(f"{code} {reasons.get(code, 'Whatever')}", [("Content-Type", "text/plain")])
        return [] if code == 204 else [b"status %d" % code]

    body = b"not found: " + path.encode("latin-1")
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
