"""Raw-socket HTTP/1.x client for conformance tests.

Nothing here is clever on purpose: the tests must see exactly the bytes the
server sends.  `Conn` keeps one TCP connection and parses responses out of
it one at a time (so keep-alive and pipelining can be checked), and
`parse_response` is a pure function over a byte buffer, tested against
canned bytes in tests/test_support.py.

Every socket operation has a timeout; nothing here can block forever.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field


class NeedMore(Exception):
    """The buffer does not hold a complete response yet."""


class MalformedResponse(Exception):
    """The bytes cannot be a valid HTTP/1.x response."""


class ConnectionClosedEarly(Exception):
    """The peer closed the connection before sending a response head."""

    def __init__(self, received: bytes):
        super().__init__(f"connection closed; bytes received: {received[:200]!r}")
        self.received = received


@dataclass
class Response:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    # False when the connection ended before the framing said the body was
    # complete (Content-Length short, chunked without its last chunk).
    complete: bool = True
    # "length", "chunked", "close" or "none": how the body was delimited.
    framing: str = "none"
    # Sizes of the chunks as received, for chunked responses.
    chunk_sizes: list[int] = field(default_factory=list)
    trailers: list[tuple[str, str]] = field(default_factory=list)
    # 1xx responses that came before this one on the connection.
    interim: list["Response"] = field(default_factory=list)
    raw_head: bytes = b""

    def header(self, name: str, default: str | None = None) -> str | None:
        values = self.header_all(name)
        return values[0] if values else default

    def header_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self.headers if k.lower() == lname]

    def has_header(self, name: str) -> bool:
        return bool(self.header_all(name))

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def __repr__(self) -> str:  # short, for assertion messages
        return (
            f"<Response {self.version} {self.status} {self.reason!r} "
            f"framing={self.framing} complete={self.complete} "
            f"headers={self.headers!r} body={self.body[:300]!r}>"
        )


def _parse_head(buf: bytes) -> tuple[Response, int]:
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        if len(buf) > 1 << 20:
            raise MalformedResponse("response head larger than 1 MiB")
        raise NeedMore
    head = buf[:end]
    lines = head.split(b"\r\n")
    status_line = lines[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise MalformedResponse(f"bad status line {status_line!r}")
    version, status = parts[0], int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    headers = []
    for line in lines[1:]:
        text = line.decode("latin-1")
        if ":" not in text:
            raise MalformedResponse(f"bad header line {text!r}")
        name, value = text.split(":", 1)
        if name != name.strip() or not name:
            raise MalformedResponse(f"bad header name {name!r}")
        headers.append((name, value.strip(" \t")))
    resp = Response(version, status, reason, headers, raw_head=buf[: end + 4])
    return resp, end + 4


def _parse_chunked(buf: bytes, pos: int, resp: Response, eof: bool) -> int:
    """Decode a chunked body starting at pos; return the index after it."""
    body = bytearray()
    sizes = []
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            break
        size_field = buf[pos:line_end].split(b";", 1)[0].strip(b" \t")
        try:
            size = int(size_field, 16)
        except ValueError:
            raise MalformedResponse(f"bad chunk size {size_field!r}") from None
        if size == 0:
            # trailer section, terminated by an empty line
            tpos = line_end + 2
            trailers = []
            while True:
                tend = buf.find(b"\r\n", tpos)
                if tend < 0:
                    break
                if tend == tpos:
                    resp.body = bytes(body)
                    resp.chunk_sizes = sizes
                    resp.trailers = trailers
                    return tend + 2
                name, _, value = buf[tpos:tend].decode("latin-1").partition(":")
                trailers.append((name, value.strip()))
                tpos = tend + 2
            break
        data_start = line_end + 2
        data_end = data_start + size
        if len(buf) < data_end + 2:
            # partial chunk: keep what arrived for incomplete responses
            body += buf[data_start:data_end]
            break
        if buf[data_end : data_end + 2] != b"\r\n":
            raise MalformedResponse("chunk data not followed by CRLF")
        body += buf[data_start:data_end]
        sizes.append(size)
        pos = data_end + 2
    if not eof:
        raise NeedMore
    resp.body = bytes(body)
    resp.chunk_sizes = sizes
    resp.complete = False
    return len(buf)


def parse_response(buf: bytes, method: str = "GET", eof: bool = False) -> tuple[Response, int]:
    """Parse one response from the start of buf.

    Returns (response, bytes consumed).  Raises NeedMore when more bytes are
    needed; when eof is True, a response whose head is complete but whose
    body is cut short is returned with complete=False instead.
    """
    resp, pos = _parse_head(buf)
    te = ",".join(resp.header_all("Transfer-Encoding")).lower()
    cls = resp.header_all("Content-Length")
    if method.upper() == "HEAD" or 100 <= resp.status < 200 or resp.status in (204, 304):
        resp.framing = "none"
        return resp, pos
    if te:
        codings = [c.strip() for c in te.split(",") if c.strip()]
        if codings[-1] != "chunked":
            raise MalformedResponse(f"response Transfer-Encoding not ending in chunked: {te!r}")
        resp.framing = "chunked"
        return resp, _parse_chunked(buf, pos, resp, eof)
    if cls:
        if len(set(cls)) != 1 or not cls[0].isdigit():
            raise MalformedResponse(f"bad response Content-Length {cls!r}")
        length = int(cls[0])
        resp.framing = "length"
        if len(buf) - pos >= length:
            resp.body = buf[pos : pos + length]
            return resp, pos + length
        if not eof:
            raise NeedMore
        resp.body = buf[pos:]
        resp.complete = False
        return resp, len(buf)
    resp.framing = "close"
    if not eof:
        raise NeedMore
    resp.body = buf[pos:]
    return resp, len(buf)


def parse_responses(buf: bytes, methods: list[str] | None = None) -> list[Response]:
    """Parse every response in a buffer read until the connection closed.

    1xx responses are returned in the list like any other.
    """
    out = []
    pos = 0
    i = 0
    while pos < len(buf):
        method = "GET"
        if methods and i < len(methods):
            method = methods[i]
        resp, used = parse_response(buf[pos:], method, eof=True)
        out.append(resp)
        pos += used
        if not (100 <= resp.status < 200):
            i += 1
    return out


class Conn:
    """One client connection, with a read buffer shared by successive responses."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 5.0):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.eof = False

    # -- sending --------------------------------------------------------
    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_slowly(self, data: bytes, piece: int = 1, delay: float = 0.01) -> None:
        for i in range(0, len(data), piece):
            self.sock.sendall(data[i : i + piece])
            time.sleep(delay)

    # -- receiving ------------------------------------------------------
    def _recv_more(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("timed out waiting for the server")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
        self.buf += data

    def recv_some(self, timeout: float | None = None) -> bytes:
        """One recv (waiting up to timeout); the data is also kept in .buf."""
        before = len(self.buf)
        self._recv_more(time.monotonic() + (timeout if timeout is not None else self.timeout))
        return self.buf[before:]

    def read_response(
        self, method: str = "GET", timeout: float | None = None, skip_interim: bool = True
    ) -> Response:
        """Read the next response; 1xx responses are collected into .interim."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        interim = []
        while True:
            try:
                resp, used = parse_response(self.buf, method, eof=self.eof)
            except NeedMore:
                if self.eof:
                    raise ConnectionClosedEarly(self.buf) from None
                self._recv_more(deadline)
                continue
            self.buf = self.buf[used:]
            if skip_interim and 100 <= resp.status < 200:
                interim.append(resp)
                continue
            resp.interim = interim
            return resp

    def read_until_close(self, timeout: float | None = None) -> bytes:
        """Everything until the peer closes; raises socket.timeout if it does not."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while not self.eof:
            self._recv_more(deadline)
        data, self.buf = self.buf, b""
        return data

    def wait_closed(self, timeout: float = 3.0) -> bool:
        """True if the peer closes (FIN or RST) within timeout.

        Bytes that arrive meanwhile are kept in .buf.
        """
        try:
            self.read_until_close(timeout)
        except (socket.timeout, TimeoutError):
            return False
        except OSError:
            return True
        return True

    def is_open(self, wait: float = 0.2) -> bool:
        """True if the connection is still open after waiting up to `wait` s."""
        return not self.wait_closed(wait)

    def close(self, reset: bool = False) -> None:
        try:
            if reset:
                # SO_LINGER 0: close sends RST, like a client that vanished.
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Conn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def request_bytes(
    method: str = "GET",
    target: str = "/",
    version: str = "HTTP/1.1",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    host: str | None = "localhost",
) -> bytes:
    """Build a well-formed request (Host first, Content-Length when body)."""
    lines = [f"{method} {target} {version}"]
    names = {k.lower() for k, _ in headers or []}
    if host is not None and "host" not in names:
        lines.append(f"Host: {host}")
    for k, v in headers or []:
        lines.append(f"{k}: {v}")
    if body and "content-length" not in names and "transfer-encoding" not in names:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def exchange(port: int, data: bytes, method: str = "GET", timeout: float = 5.0) -> tuple[Response, Conn]:
    """Send raw bytes, read one response; returns it and the still-open Conn."""
    conn = Conn(port, timeout=timeout)
    conn.send(data)
    return conn.read_response(method), conn


def get(port: int, target: str = "/", headers=None, timeout: float = 5.0, version="HTTP/1.1") -> Response:
    """One GET on a fresh connection, closed afterwards."""
    hdrs = list(headers or []) + [("Connection", "close")]
    with Conn(port, timeout=timeout) as conn:
        conn.send(request_bytes("GET", target, version, hdrs))
        return conn.read_response("GET")
