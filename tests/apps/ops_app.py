"""A small WSGI app for the supervision tests (tests/test_supervision.py):
harakiri, reload-on-rss and uid/gid need endpoints plain_app.py lacks.

Endpoints (PATH_INFO):
  /                 "ok"
  /pid              the worker's pid
  /sleep?s=N|ms=N   sleeps (in stuck_here(), so a traceback names it), returns the pid
  /alloc?mb=N       allocates N MiB, touches every page and keeps it in a
                    module-level list (so the worker's RSS stays up); returns the pid
  /ids              JSON: pid, uid, euid, gid, egid
"""

import json
import os
import time
from urllib.parse import parse_qs

# Kept for the life of the worker: reload-on-rss must see the RSS stay high.
HOARD = []


def _query(environ):
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _ok(start_response, body, ctype="text/plain"):
    if isinstance(body, str):
        body = body.encode("utf-8")
    start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def stuck_here(seconds):
    """Sleep in a named function: the harakiri traceback must show it."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.5))


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    q = _query(environ)

    if path == "/":
        return _ok(start_response, "ok")

    if path == "/pid":
        return _ok(start_response, str(os.getpid()))

    if path == "/sleep":
        if "s" in q:
            seconds = float(q["s"])
        else:
            seconds = int(q.get("ms", "10")) / 1000.0
        stuck_here(seconds)
        return _ok(start_response, str(os.getpid()))

    if path == "/alloc":
        mb = int(q.get("mb", "100"))
        block = bytearray(mb * 1024 * 1024)
        # bytearray() memory is zeroed by calloc/mmap and may not be resident
        # yet: write one byte per page so it counts in RSS.
        for i in range(0, len(block), 4096):
            block[i] = 1
        HOARD.append(block)
        return _ok(start_response, str(os.getpid()))

    if path == "/ids":
        return _ok(
            start_response,
            json.dumps(
                {
                    "pid": os.getpid(),
                    "uid": os.getuid(),
                    "euid": os.geteuid(),
                    "gid": os.getgid(),
                    "egid": os.getegid(),
                }
            ),
            "application/json",
        )

    body = b"not found: " + path.encode("latin-1")
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
