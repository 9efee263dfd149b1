"""Flask and Django end to end, through `requests` (issue 2 "Done when":
forms, uploads, redirects, streaming responses), with --processes 2
--threads 4 and the frameworks coming from --virtualenv .venv-test.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from support.server import APPS, VENV_TEST, Server

BIG = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def flask_srv(tmp_path_factory, venv_test):
    s = Server(
        [
            "--wsgi-file", APPS / "flask_app.py", "--callable", "app",
            "--processes", "2", "--threads", "4", "--virtualenv", VENV_TEST,
        ],
        workdir=tmp_path_factory.mktemp("flask"),
        name="flask",
    )
    yield s
    s.stop()


@pytest.fixture(scope="module")
def django_srv(tmp_path_factory, venv_test):
    # The command from the issue: --chdir the project, --module its wsgi.
    s = Server(
        [
            "--chdir", APPS / "djproject", "--module", "djproject.wsgi:application",
            "--processes", "2", "--threads", "4", "--virtualenv", VENV_TEST,
        ],
        workdir=tmp_path_factory.mktemp("django"),
        name="django",
    )
    yield s
    s.stop()


def read_stream(url) -> tuple[list[str], list[float], requests.Response]:
    """Read a streaming response line by line, noting when each line arrived."""
    lines, arrivals = [], []
    with requests.get(url, stream=True, timeout=10) as r:
        for line in r.iter_lines(chunk_size=1):
            if line:
                lines.append(line.decode())
                arrivals.append(time.monotonic())
        return lines, arrivals, r


# --- Flask ----------------------------------------------------------------


def test_flask_index_and_json(flask_srv):
    r = requests.get(flask_srv.url + "/", timeout=5)
    assert r.status_code == 200 and r.text == "flask ok"
    r = requests.get(flask_srv.url + "/json", timeout=5)
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"framework": "flask", "items": [1, 2, 3], "nested": {"ok": True}}


def test_flask_404(flask_srv):
    r = requests.get(flask_srv.url + "/no/such/page", timeout=5)
    assert r.status_code == 404


def test_flask_form_post(flask_srv):
    with requests.Session() as s:
        assert "<form" in s.get(flask_srv.url + "/form", timeout=5).text
        r = s.post(flask_srv.url + "/form", data={"name": "Zoë", "color": "blue & green"}, timeout=5)
    assert r.status_code == 200
    assert r.text == "hello Zoë, you like blue & green"


@pytest.mark.parametrize("size", [1024, BIG], ids=["1KiB", "5MiB"])
def test_flask_upload(flask_srv, size):
    data = os.urandom(size)
    r = requests.post(
        flask_srv.url + "/upload",
        files={"file": ("data.bin", data, "application/octet-stream")},
        data={"note": "attached"},
        timeout=30,
    )
    assert r.status_code == 200, r.text[:500]
    got = r.json()
    assert got == {
        "filename": "data.bin",
        "size": size,
        "sha256": hashlib.sha256(data).hexdigest(),
        "note": "attached",
    }


def test_flask_redirect_followed(flask_srv):
    r = requests.get(flask_srv.url + "/redirect", timeout=5)
    assert [h.status_code for h in r.history] == [302]
    assert r.url == flask_srv.url + "/target"
    assert r.text == "flask target reached"


def test_flask_head_of_streamed_response_gets_no_invented_length(flask_srv):
    """Werkzeug answers HEAD with an empty body and no Content-Length for a
    streamed response; the server must not add `Content-Length: 0` (the GET
    is chunked and has data). gunicorn and uWSGI send what the app gave."""
    from support.rawhttp import Conn, request_bytes

    with Conn(flask_srv.port) as conn:
        conn.send(request_bytes("HEAD", "/stream?n=2&delay=0") + request_bytes("GET", "/stream?n=2&delay=0"))
        head = conn.read_response("HEAD")
        get = conn.read_response()
    assert head.status == 200
    assert not head.has_header("Content-Length"), head.headers
    assert not head.has_header("Transfer-Encoding"), head.headers
    assert get.header("Transfer-Encoding") == "chunked" and get.body.startswith(b"chunk 0")


def test_flask_streaming_response_read_incrementally(flask_srv):
    """A generator response streams: lines arrive spread over its ~1.5 s."""
    lines, arrivals, r = read_stream(flask_srv.url + "/stream?n=5&delay=0.3")
    assert r.headers.get("Transfer-Encoding") == "chunked"
    assert [line.split()[1] for line in lines] == ["0", "1", "2", "3", "4"]
    assert arrivals[-1] - arrivals[0] >= 0.6, "all lines arrived together: the response was buffered"


def test_flask_keep_alive_session(flask_srv):
    with requests.Session() as s:
        for _ in range(20):
            assert s.get(flask_srv.url + "/json", timeout=5).status_code == 200


# --- Django ---------------------------------------------------------------

TOKEN_RX = re.compile(r"name='csrfmiddlewaretoken' value='([^']+)'")


def csrf_session(url) -> tuple[requests.Session, str]:
    s = requests.Session()
    r = s.get(url, timeout=5)
    assert r.status_code == 200, r.text[:500]
    assert "csrftoken" in s.cookies, r.headers
    m = TOKEN_RX.search(r.text)
    assert m, r.text
    return s, m.group(1)


def test_django_index(django_srv):
    r = requests.get(django_srv.url + "/", timeout=5)
    assert r.status_code == 200 and r.text == "django ok"


def test_django_404(django_srv):
    assert requests.get(django_srv.url + "/nope/", timeout=5).status_code == 404


def test_django_form_post_with_csrf(django_srv):
    s, token = csrf_session(django_srv.url + "/form/")
    with s:
        r = s.post(django_srv.url + "/form/", data={"csrfmiddlewaretoken": token, "name": "Ada"}, timeout=5)
    assert r.status_code == 200, r.text[:500]
    assert r.text == "hello Ada from django"


def test_django_form_post_without_csrf_is_refused(django_srv):
    """CSRF protection is on, so the POST above proves the token round trip."""
    r = requests.post(django_srv.url + "/form/", data={"name": "Mallory"}, timeout=5)
    assert r.status_code == 403


@pytest.mark.parametrize(
    "size,storage",
    [(1024, "InMemoryUploadedFile"), (BIG, "TemporaryUploadedFile")],
    ids=["1KiB-in-memory", "5MiB-spooled-by-django"],
)
def test_django_upload(django_srv, size, storage):
    s, token = csrf_session(django_srv.url + "/upload/")
    data = os.urandom(size)
    with s:
        r = s.post(
            django_srv.url + "/upload/",
            data={"csrfmiddlewaretoken": token},
            files={"file": ("upload.bin", data, "application/octet-stream")},
            timeout=30,
        )
    assert r.status_code == 200, r.text[:500]
    assert r.json() == {
        "filename": "upload.bin",
        "size": size,
        "sha256": hashlib.sha256(data).hexdigest(),
        "storage": storage,
    }


def test_django_redirect_followed(django_srv):
    r = requests.get(django_srv.url + "/redirect/", timeout=5)
    assert [h.status_code for h in r.history] == [302]
    assert r.url == django_srv.url + "/target/"
    assert r.text == "django target reached"


def test_django_streaming_response_read_incrementally(django_srv):
    lines, arrivals, r = read_stream(django_srv.url + "/stream/?n=5&delay=0.3")
    assert r.headers.get("Transfer-Encoding") == "chunked"
    assert [line.split()[1] for line in lines] == ["0", "1", "2", "3", "4"]
    assert arrivals[-1] - arrivals[0] >= 0.6, "all lines arrived together: the response was buffered"


def test_django_concurrent_requests(django_srv):
    """40 concurrent clients (processes 2 x threads 4 busy at once) all get answers."""

    def one(i):
        return requests.get(django_srv.url + "/pid/", timeout=10).status_code

    with ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(one, range(200)))
    assert statuses == [200] * 200
