"""Raw uwsgi-protocol client, for talking to a `--socket` listener the way
nginx's `uwsgi_pass` does (../shared/uwsgi-protocol.md).

`encode_vars` / `encode_packet` build the bytes by hand (4-byte header with a
little-endian datasize, then u16le-length-prefixed keys and values), so a
test can also send broken or oversized packets.  `request` sends one packet
plus body and reads the raw HTTP response until the server closes the
connection, which it must do after every uwsgi response.

Every socket operation has a timeout; nothing here can block forever.
"""

from __future__ import annotations

import socket
import struct

from support.rawhttp import parse_response

# What nginx's stock uwsgi_params sends for `GET /` (plus a Host header).
BASE_VARS = {
    "QUERY_STRING": "",
    "REQUEST_METHOD": "GET",
    "CONTENT_TYPE": "",
    "CONTENT_LENGTH": "",
    "REQUEST_URI": "/",
    "PATH_INFO": "/",
    "DOCUMENT_ROOT": "/usr/share/nginx/html",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REQUEST_SCHEME": "http",
    "REMOTE_ADDR": "203.0.113.7",
    "REMOTE_PORT": "51234",
    "SERVER_PORT": "80",
    "SERVER_NAME": "example.com",
    "HTTP_HOST": "example.com",
}


def _b(s: str | bytes) -> bytes:
    return s if isinstance(s, bytes) else s.encode("latin-1")


def encode_vars(pairs) -> bytes:
    """pairs: a dict or a list of (key, value) (str or bytes), in wire order."""
    items = pairs.items() if isinstance(pairs, dict) else pairs
    out = bytearray()
    for k, v in items:
        k, v = _b(k), _b(v)
        out += struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
    return bytes(out)


def encode_packet(pairs, modifier1: int = 0, modifier2: int = 0) -> bytes:
    block = encode_vars(pairs)
    if len(block) > 0xFFFF:
        raise ValueError(f"vars block of {len(block)} bytes does not fit a uwsgi packet")
    return struct.pack("<BHB", modifier1, len(block), modifier2) + block


def make_vars(method="GET", uri="/", body=b"", **extra) -> dict:
    """BASE_VARS for METHOD URI, with CONTENT_LENGTH for the body and `extra`
    overriding or adding vars."""
    path, _, query = uri.partition("?")
    v = dict(BASE_VARS)
    v.update(
        REQUEST_METHOD=method,
        REQUEST_URI=uri,
        PATH_INFO=path,
        QUERY_STRING=query,
        CONTENT_LENGTH=str(len(body)) if body else "",
    )
    v.update(extra)
    return v


def connect(address, timeout: float = 10.0) -> socket.socket:
    """address: (host, port) for TCP or a str path for a unix socket."""
    if isinstance(address, str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(address)
    else:
        s = socket.create_connection(address, timeout=timeout)
    return s


def read_to_eof(s: socket.socket, limit: int = 64 << 20) -> bytes:
    """Everything the server sends until it closes (or resets) the connection."""
    data = bytearray()
    while len(data) < limit:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return bytes(data)


def exchange(address, raw: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes, return all bytes received until the server closes."""
    with connect(address, timeout) as s:
        try:
            s.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_to_eof(s)


def request(address, vars, body: bytes = b"", timeout: float = 10.0):
    """One uwsgi request; returns (parsed HTTP response, raw bytes).
    The server must close the connection after the response."""
    raw = exchange(address, encode_packet(vars) + body, timeout)
    method = dict(vars.items() if isinstance(vars, dict) else vars).get("REQUEST_METHOD", "GET")
    resp, used = parse_response(raw, _b(method).decode("latin-1"), eof=True)
    assert used == len(raw), f"bytes after the response: {raw[used:][:200]!r}"
    return resp, raw
