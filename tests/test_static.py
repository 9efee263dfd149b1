"""Static files served by capataz itself (issue 5 item 4): static-map,
static-expires, static-index, static-gzip.

One server maps /static (and /assets) onto temp directories built here, in
front of tests/apps/plain_app.py.  The plain app answers any path it does
not know with 404 and the body "not found: PATH", which is how a missing
static file is seen to fall through to the app, as uWSGI does.

RFC 9110 sections are cited per test: §8.8 validators, §13 conditional
requests, §14 ranges, §12.5.3 Accept-Encoding, §15.5.6 405; RFC 9111 §5.2
and §5.3 for Cache-Control and Expires.
"""

from __future__ import annotations

import email.utils
import gzip
import hashlib
import os
import re

import pytest

from support.rawhttp import Conn, request_bytes
from support.server import Server, plain_args

# Every file gets this mtime: a fixed second well in the past, so
# Last-Modified is predictable and strong (RFC 9110 §8.8.2.2).
MTIME = 1_704_164_645  # 2024-01-02 03:04:05 UTC
MTIME_HTTP = "Tue, 02 Jan 2024 03:04:05 GMT"

HELLO = b"Hello from a static file!\n"
DIGITS = b"0123456789" * 10  # 100 bytes, easy to slice
BIG_SIZE = 5 * 1024 * 1024
APP_JS = b"console.log('precompressed');\n" * 50
BR_BYTES = b"BROTLI-BYTES-NOT-REALLY-COMPRESSED"
SECRET = b"TOP-SECRET-OUTSIDE-THE-MOUNT"

TYPES = {
    "page.html": "text/html; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "app.mjs": "text/javascript; charset=utf-8",
    "plain.js": "text/javascript; charset=utf-8",
    "data.json": "application/json",
    "notes.txt": "text/plain; charset=utf-8",
    "logo.svg": "image/svg+xml",
    "pic.png": "image/png",
    "pic.JPG": "image/jpeg",
    "font.woff2": "font/woff2",
    "mod.wasm": "application/wasm",
    "doc.pdf": "application/pdf",
    "blob.unknownext": "application/octet-stream",
    "README": "application/octet-stream",
}


def _write(path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (MTIME, MTIME))


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """The mounted directories and a directory outside them."""
    root = tmp_path_factory.mktemp("static-tree")
    site, assets, outside = root / "site", root / "assets", root / "outside"
    _write(outside / "secret.txt", SECRET)
    _write(site / "hello.txt", HELLO)
    _write(site / "digits.txt", DIGITS)
    _write(site / "empty.txt", b"")
    for name in TYPES:
        _write(site / "types" / name, b"x" * 10)
    big = os.urandom(BIG_SIZE)
    _write(site / "big.bin", big)
    _write(site / "app.js", APP_JS)
    _write(site / "app.js.gz", gzip.compress(APP_JS, mtime=0))
    _write(site / "app.js.br", BR_BYTES)
    _write(site / "only-gz.css", b"body { color: red }\n")
    _write(site / "only-gz.css.gz", gzip.compress(b"body { color: red }\n", mtime=0))
    _write(site / "docs" / "index.html", b"<h1>docs index</h1>\n")
    (site / "noindex").mkdir()
    _write(site / "noindex" / "file.txt", b"in noindex\n")
    _write(site / "sub dir" / "a b.txt", b"spaces\n")
    _write(assets / "asset.txt", b"from assets\n")
    # Symlinks: one inside the mount (fine), three pointing outside it.
    (site / "alias.txt").symlink_to(site / "hello.txt")
    (site / "passwd-link").symlink_to("/etc/passwd")
    (site / "secret-link.txt").symlink_to(outside / "secret.txt")
    (site / "outdir").symlink_to(outside)
    return {"site": site, "assets": assets, "outside": outside, "big": big}


@pytest.fixture(scope="module")
def srv(tree, tmp_path_factory):
    s = Server(
        plain_args(
            "--processes", "1",
            "--threads", "2",
            "--static-map", f"/static={tree['site']}",
            "--static-map", f"/assets={tree['assets']}",
            "--static-expires", r"\.css$ 3600",
            "--static-index", "index.html",
            "--static-gzip",
        ),
        workdir=tmp_path_factory.mktemp("static-srv"),
        name="static",
    )
    yield s
    s.stop()


def fetch(srv, target, headers=(), method="GET", version="HTTP/1.1", body=b""):
    """One request on a fresh connection (closed afterwards)."""
    hdrs = list(headers) + [("Connection", "close")]
    with Conn(srv.port, timeout=10) as conn:
        conn.send(request_bytes(method, target, version, hdrs, body=body))
        return conn.read_response(method, timeout=20)


def strong_etag(resp) -> str:
    etag = resp.header("ETag")
    assert etag and re.fullmatch(r'"[^"]+"', etag), f"not a strong ETag: {etag!r}"
    return etag


# --- plain GET ---------------------------------------------------------------


def test_serves_file_with_metadata(srv):
    """RFC 9110 §8.3 Content-Type, §8.6 Content-Length, §8.8.2 Last-Modified,
    §8.8.3 a strong ETag, §14.3 Accept-Ranges."""
    r = fetch(srv, "/static/hello.txt")
    assert r.status == 200, r
    assert r.body == HELLO
    assert r.header("Content-Type") == "text/plain; charset=utf-8"
    assert r.header("Content-Length") == str(len(HELLO))
    assert r.header("Last-Modified") == MTIME_HTTP
    assert r.header("Accept-Ranges") == "bytes"
    assert r.header("Date")
    strong_etag(r)
    assert not r.has_header("Vary"), "no precompressed sibling, nothing varies"
    # The tag is derived from metadata, so it is stable across requests.
    assert fetch(srv, "/static/hello.txt").header("ETag") == r.header("ETag")


@pytest.mark.parametrize("name,ctype", sorted(TYPES.items()))
def test_content_type_from_extension(srv, name, ctype):
    """RFC 9110 §8.3: the type comes from the extension; unknown ones are
    application/octet-stream."""
    r = fetch(srv, f"/static/types/{name}")
    assert r.status == 200, r
    assert r.header("Content-Type") == ctype


def test_symlink_inside_the_mount_is_served(srv):
    r = fetch(srv, "/static/alias.txt")
    assert r.status == 200, r
    assert r.body == HELLO


def test_percent_encoded_names_are_decoded(srv):
    r = fetch(srv, "/static/sub%20dir/a%20b.txt")
    assert r.status == 200, r
    assert r.body == b"spaces\n"
    r = fetch(srv, "/static//./hello.txt")
    assert r.status == 200, r
    assert r.body == HELLO


def test_second_mount(srv):
    r = fetch(srv, "/assets/asset.txt")
    assert r.status == 200, r
    assert r.body == b"from assets\n"


def test_empty_file(srv):
    r = fetch(srv, "/static/empty.txt")
    assert r.status == 200, r
    assert r.header("Content-Length") == "0"
    assert r.body == b""


def test_head_same_headers_no_body(srv):
    """RFC 9110 §9.3.2: HEAD is GET without the content."""
    get = fetch(srv, "/static/digits.txt")
    with Conn(srv.port, timeout=10) as conn:
        conn.send(request_bytes("HEAD", "/static/digits.txt", headers=[("Connection", "close")]))
        head = conn.read_response("HEAD")
        assert conn.wait_closed(3)
        assert conn.buf == b"", "HEAD response carried a body"
    assert head.status == 200, head
    for name in ("Content-Type", "Content-Length", "Last-Modified", "ETag", "Accept-Ranges"):
        assert head.header(name) == get.header(name), name
    assert head.header("Content-Length") == "100"


def test_large_file_sendfile(srv, tree):
    """A 5 MiB file arrives whole and intact (served with sendfile)."""
    r = fetch(srv, "/static/big.bin")
    assert r.status == 200, r
    assert r.header("Content-Length") == str(BIG_SIZE)
    assert r.header("Content-Type") == "application/octet-stream"
    assert len(r.body) == BIG_SIZE
    assert hashlib.sha256(r.body).hexdigest() == hashlib.sha256(tree["big"]).hexdigest()


def test_large_file_range_from_the_middle(srv, tree):
    first, last = 3_000_001, 4_500_000
    r = fetch(srv, "/static/big.bin", [("Range", f"bytes={first}-{last}")])
    assert r.status == 206, r
    assert r.header("Content-Range") == f"bytes {first}-{last}/{BIG_SIZE}"
    assert r.body == tree["big"][first : last + 1]


# --- conditional requests -----------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_if_none_match_304(srv, method):
    """RFC 9110 §13.1.2: a matching If-None-Match on GET/HEAD is 304, which
    has no content and repeats ETag (§15.4.5)."""
    etag = strong_etag(fetch(srv, "/static/hello.txt"))
    for value in (etag, f'"nope", {etag}', f"W/{etag}", "*"):
        with Conn(srv.port, timeout=10) as conn:
            conn.send(
                request_bytes(method, "/static/hello.txt",
                              headers=[("If-None-Match", value), ("Connection", "close")])
            )
            r = conn.read_response(method)
            assert conn.wait_closed(3)
            assert conn.buf == b"", "304 carried a body"
        assert r.status == 304, (value, r)
        assert r.header("ETag") == etag
        assert r.header("Last-Modified") == MTIME_HTTP
        assert r.header("Date")


def test_if_none_match_other_tag_200(srv):
    r = fetch(srv, "/static/hello.txt", [("If-None-Match", '"some-other-tag"')])
    assert r.status == 200, r
    assert r.body == HELLO


def test_if_modified_since_304(srv):
    """RFC 9110 §13.1.3: not modified since the date given: 304."""
    r = fetch(srv, "/static/hello.txt", [("If-Modified-Since", MTIME_HTTP)])
    assert r.status == 304, r
    assert r.body == b""
    later = email.utils.formatdate(MTIME + 3600, usegmt=True)
    assert fetch(srv, "/static/hello.txt", [("If-Modified-Since", later)]).status == 304


def test_if_modified_since_older_200(srv):
    earlier = email.utils.formatdate(MTIME - 1, usegmt=True)
    r = fetch(srv, "/static/hello.txt", [("If-Modified-Since", earlier)])
    assert r.status == 200, r
    assert r.body == HELLO
    r = fetch(srv, "/static/hello.txt", [("If-Modified-Since", "not a date")])
    assert r.status == 200, r


def test_if_none_match_takes_precedence_over_if_modified_since(srv):
    """RFC 9110 §13.2.2: If-Modified-Since is ignored when If-None-Match is sent."""
    r = fetch(
        srv,
        "/static/hello.txt",
        [("If-None-Match", '"other"'), ("If-Modified-Since", MTIME_HTTP)],
    )
    assert r.status == 200, r


# --- ranges ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec,first,last",
    [
        ("bytes=0-9", 0, 9),
        ("bytes=10-19", 10, 19),
        ("bytes=95-", 95, 99),  # open-ended
        ("bytes=-7", 93, 99),  # suffix
        ("bytes=90-1000", 90, 99),  # last-pos clamped
        ("bytes=-1000", 0, 99),  # suffix longer than the file
    ],
)
def test_range_206(srv, spec, first, last):
    """RFC 9110 §14.1.2, §15.3.7: one satisfiable range is a 206 with
    Content-Range."""
    r = fetch(srv, "/static/digits.txt", [("Range", spec)])
    assert r.status == 206, r
    assert r.header("Content-Range") == f"bytes {first}-{last}/100"
    assert r.header("Content-Length") == str(last - first + 1)
    assert r.header("Content-Type") == "text/plain; charset=utf-8"
    assert r.body == DIGITS[first : last + 1]


@pytest.mark.parametrize("spec", ["bytes=100-", "bytes=500-600", "bytes=-0"])
def test_range_unsatisfiable_416(srv, spec):
    """RFC 9110 §15.5.17: 416 with Content-Range: bytes */LENGTH."""
    r = fetch(srv, "/static/digits.txt", [("Range", spec)])
    assert r.status == 416, r
    assert r.header("Content-Range") == "bytes */100"
    assert DIGITS not in r.body


@pytest.mark.parametrize("spec", ["bytes=0-1,5-6", "bytes=abc", "lines=1-2", "bytes=9-2"])
def test_unusable_range_serves_whole_file(srv, spec):
    """RFC 9110 §14.2: a server may ignore Range (several ranges, other
    units, invalid syntax) and send 200 with the whole representation."""
    r = fetch(srv, "/static/digits.txt", [("Range", spec)])
    assert r.status == 200, r
    assert r.body == DIGITS


def test_range_ignored_on_head(srv):
    """RFC 9110 §14.2: only GET has range semantics."""
    with Conn(srv.port, timeout=10) as conn:
        conn.send(request_bytes("HEAD", "/static/digits.txt",
                                headers=[("Range", "bytes=0-1"), ("Connection", "close")]))
        r = conn.read_response("HEAD")
    assert r.status == 200, r
    assert r.header("Content-Length") == "100"


def test_if_range(srv):
    """RFC 9110 §13.1.5: the range is sent only if If-Range matches (strong
    ETag or the exact Last-Modified); otherwise the whole file, 200."""
    etag = strong_etag(fetch(srv, "/static/digits.txt"))
    rng = ("Range", "bytes=0-4")
    r = fetch(srv, "/static/digits.txt", [rng, ("If-Range", etag)])
    assert (r.status, r.body) == (206, DIGITS[:5]), r
    r = fetch(srv, "/static/digits.txt", [rng, ("If-Range", MTIME_HTTP)])
    assert (r.status, r.body) == (206, DIGITS[:5]), r
    for stale in ('"stale-tag"', f"W/{etag}", email.utils.formatdate(MTIME - 60, usegmt=True)):
        r = fetch(srv, "/static/digits.txt", [rng, ("If-Range", stale)])
        assert r.status == 200, (stale, r)
        assert r.body == DIGITS


# --- precompressed siblings ---------------------------------------------------


def test_precompressed_gzip(srv):
    """--static-gzip: app.js.gz is sent to a client that accepts gzip, with
    the original Content-Type (RFC 9110 §8.4 Content-Encoding, §12.5.5 Vary)."""
    r = fetch(srv, "/static/app.js", [("Accept-Encoding", "gzip")])
    assert r.status == 200, r
    assert r.header("Content-Encoding") == "gzip"
    assert r.header("Content-Type") == "text/javascript; charset=utf-8"
    assert "accept-encoding" in r.header("Vary", "").lower()
    assert gzip.decompress(r.body) == APP_JS
    assert r.header("Content-Length") == str(len(r.body))


def test_precompressed_br_preferred(srv):
    r = fetch(srv, "/static/app.js", [("Accept-Encoding", "gzip, deflate, br")])
    assert r.status == 200, r
    assert r.header("Content-Encoding") == "br"
    assert r.body == BR_BYTES
    assert "accept-encoding" in r.header("Vary", "").lower()
    # q=0 excludes a coding (RFC 9110 §12.5.3).
    r = fetch(srv, "/static/app.js", [("Accept-Encoding", "br;q=0, gzip")])
    assert r.header("Content-Encoding") == "gzip"


def test_precompressed_not_accepted_sends_identity(srv):
    for headers in ([], [("Accept-Encoding", "identity")], [("Accept-Encoding", "deflate")]):
        r = fetch(srv, "/static/app.js", headers)
        assert r.status == 200, r
        assert not r.has_header("Content-Encoding")
        assert r.body == APP_JS
        assert "accept-encoding" in r.header("Vary", "").lower()


def test_precompressed_only_gz_sibling(srv):
    r = fetch(srv, "/static/only-gz.css", [("Accept-Encoding", "br, gzip")])
    assert r.header("Content-Encoding") == "gzip"
    assert gzip.decompress(r.body) == b"body { color: red }\n"


def test_precompressed_variants_have_distinct_etags_and_ranges(srv):
    """Each encoding is its own representation: its own strong ETag, and a
    Range counts bytes of the encoded content."""
    tags = {
        strong_etag(fetch(srv, "/static/app.js", [("Accept-Encoding", ae)]))
        for ae in ("identity", "gzip", "br")
    }
    assert len(tags) == 3, tags
    br_tag = strong_etag(fetch(srv, "/static/app.js", [("Accept-Encoding", "br")]))
    r = fetch(srv, "/static/app.js", [("Accept-Encoding", "br"), ("If-None-Match", br_tag)])
    assert r.status == 304, r
    r = fetch(srv, "/static/app.js", [("Accept-Encoding", "br"), ("Range", "bytes=0-5")])
    assert r.status == 206, r
    assert r.header("Content-Encoding") == "br"
    assert r.body == BR_BYTES[:6]
    assert r.header("Content-Range") == f"bytes 0-5/{len(BR_BYTES)}"


# --- static-expires, static-index ---------------------------------------------


def test_static_expires(srv):
    """RFC 9111 §5.2.2.1 max-age and §5.3 Expires, from --static-expires."""
    r = fetch(srv, "/static/types/style.css")
    assert r.status == 200, r
    assert r.header("Cache-Control") == "max-age=3600"
    date = email.utils.parsedate_to_datetime(r.header("Date"))
    expires = email.utils.parsedate_to_datetime(r.header("Expires"))
    assert (expires - date).total_seconds() == 3600
    # Only files matching the regex get them.
    r = fetch(srv, "/static/hello.txt")
    assert not r.has_header("Expires") and not r.has_header("Cache-Control")
    # A 304 repeats them (RFC 9110 §15.4.5).
    r = fetch(srv, "/static/types/style.css", [("If-None-Match", "*")])
    assert r.status == 304, r
    assert r.header("Cache-Control") == "max-age=3600"


def test_static_index(srv):
    for target in ("/static/docs/", "/static/docs"):
        r = fetch(srv, target)
        assert r.status == 200, (target, r)
        assert r.body == b"<h1>docs index</h1>\n"
        assert r.header("Content-Type") == "text/html; charset=utf-8"


def test_directory_without_index_falls_through(srv):
    r = fetch(srv, "/static/noindex/")
    assert r.status == 404, r
    assert r.body == b"not found: /static/noindex/"


# --- falling through to the app ------------------------------------------------


def test_missing_file_falls_through_to_the_app(srv):
    r = fetch(srv, "/static/missing.txt")
    assert r.status == 404, r
    assert r.body == b"not found: /static/missing.txt"


def test_mount_matches_whole_segments_only(srv):
    r = fetch(srv, "/statichello.txt")
    assert r.status == 404, r
    assert r.body == b"not found: /statichello.txt"
    assert fetch(srv, "/hello").body == b"Hello, World!"


# --- traversal ----------------------------------------------------------------------


TRAVERSALS = [
    "/static/../etc/passwd",
    "/static/../../../../../../etc/passwd",
    "/static/%2e%2e/%2e%2e/etc/passwd",
    "/static/%2E%2E/%2E%2E/%2E%2E/%2E%2E/etc/passwd",
    "/static/.%2e/.%2e/.%2e/.%2e/etc/passwd",
    "/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/static/..%5c..%5c..%5c..%5cetc%5cpasswd",
    "/static/docs/../../outside/secret.txt",
    "/static/%2e%2e/outside/secret.txt",
    "/static/%00",
    "/static/hello.txt%00.png",
    "/static/a%2fb",
    "/static/%zz",
    "/static/passwd-link",
    "/static/secret-link.txt",
    "/static/outdir/secret.txt",
    "/static/outdir/",
    "/assets/../site/hello.txt",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_traversal_never_leaks(srv, target):
    """Issue 5: `..`, `%2e%2e`, encoded slashes, NUL and symlinks out of the
    mount get 400 or 404 and never the file."""
    r = fetch(srv, target)
    assert r.status in (400, 404), r
    assert b"root:" not in r.body
    assert SECRET not in r.body
    assert HELLO not in r.body
    # The worker is still fine afterwards.
    assert fetch(srv, "/static/hello.txt").body == HELLO


# --- methods, persistence ----------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_other_methods_405(srv, method):
    """RFC 9110 §15.5.6: 405 lists the allowed methods in Allow."""
    r = fetch(srv, "/static/hello.txt", method=method, body=b"data")
    assert r.status == 405, r
    allow = {m.strip() for m in r.header("Allow", "").split(",")}
    assert allow == {"GET", "HEAD"}
    assert HELLO not in r.body


def test_keep_alive_across_static_and_app_responses(srv):
    """RFC 9112 §9.3: static responses of every kind keep the connection
    usable, interleaved with app responses."""
    etag = strong_etag(fetch(srv, "/static/hello.txt"))
    with Conn(srv.port, timeout=10) as conn:
        steps = [
            ("GET", "/static/hello.txt", [], 200, HELLO),
            ("GET", "/static/hello.txt", [("If-None-Match", etag)], 304, b""),
            ("GET", "/static/digits.txt", [("Range", "bytes=1-3")], 206, b"123"),
            ("HEAD", "/static/digits.txt", [], 200, b""),
            ("GET", "/static/digits.txt", [("Range", "bytes=999-")], 416, None),
            ("GET", "/hello", [], 200, b"Hello, World!"),
            ("GET", "/static/missing", [], 404, b"not found: /static/missing"),
            ("GET", "/static/big.bin", [("Range", "bytes=0-0")], 206, None),
            ("GET", "/static/hello.txt", [], 200, HELLO),
        ]
        for method, target, headers, status, body in steps:
            conn.send(request_bytes(method, target, headers=headers))
            r = conn.read_response(method)
            assert r.status == status, (method, target, r)
            assert r.header("Connection", "").lower() != "close", r
            if body is not None:
                assert r.body == body, (method, target, r)
        assert conn.is_open(0.3)


def test_http10(srv):
    """HTTP/1.0 gets an HTTP/1.0 response and the connection closes."""
    with Conn(srv.port, timeout=10) as conn:
        conn.send(request_bytes("GET", "/static/hello.txt", "HTTP/1.0"))
        r = conn.read_response()
        assert r.version == "HTTP/1.0", r
        assert r.status == 200
        assert r.body == HELLO
        assert conn.wait_closed(3)


def test_missing_static_directory_is_a_clear_error(server_factory, tmp_path):
    """A static-map directory that does not exist stops capataz with a
    message naming it (DESIGN §2.6), instead of serving without it."""
    missing = tmp_path / "no-such-dir"
    s = server_factory(plain_args("--static-map", f"/static={missing}"), wait=False)
    rc = s.wait_exit(30)
    assert rc != 0, s.log()
    assert str(missing) in s.log()
