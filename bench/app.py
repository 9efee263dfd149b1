"""The one WSGI app every server in the benchmark serves. Stdlib only.

Endpoints:
  /hello    13-byte "Hello, World!" (text/plain, Content-Length)
  /10k      10240-byte body (Content-Length)
  /echo     POST: echoes the request body (CONTENT_LENGTH bytes of wsgi.input)
  /sleep10  time.sleep(0.01), then a small body
  /stream   generator of 100 chunks of 100 bytes, no Content-Length
  anything else -> same as /hello
"""

import time

HELLO = b"Hello, World!"
TEN_K = b"x" * 10240
CHUNK = b"y" * 100
SLEPT = b"slept 10 ms\n"

_HELLO_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))]
_TEN_K_HEADERS = [
    ("Content-Type", "application/octet-stream"),
    ("Content-Length", str(len(TEN_K))),
]
_SLEPT_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(SLEPT)))]


def _stream():
    for _ in range(100):
        yield CHUNK


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")

    if path == "/10k":
        start_response("200 OK", list(_TEN_K_HEADERS))
        return [TEN_K]

    if path == "/echo":
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", str(len(body))),
            ],
        )
        return [body]

    if path == "/sleep10":
        time.sleep(0.01)
        start_response("200 OK", list(_SLEPT_HEADERS))
        return [SLEPT]

    if path == "/stream":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return _stream()

    start_response("200 OK", list(_HELLO_HEADERS))
    return [HELLO]
