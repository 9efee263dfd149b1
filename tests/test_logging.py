"""Logging (issue 2 item 7): one access-log line per request in uWSGI's
default shape, --disable-logging, quiet client disconnects, app tracebacks.

uWSGI's shape, for reference:
[pid: 1234|app: 0|req: 1/1] 127.0.0.1 () {32 vars in 345 bytes} [Wed Nov 25 17:52:18 2026]
GET /hello?x=1 => generated 13 bytes in 0 msecs (HTTP/1.1 200) 2 headers in 79 bytes
(1 switches on core 0)   (all on one line)
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
import requests

from support.rawhttp import Conn, ConnectionClosedEarly, request_bytes
from support.ctl import start_with
from support.server import APPS, Server, capataz_bin, clean_env, fifo_write, free_port, plain_args, probe_http, wait_file


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(
        plain_args("--processes", "1", "--threads", "2", "--limit-post", "1000", "--header-timeout", "2"),
        workdir=tmp_path_factory.mktemp("logging"),
        name="logging",
    )
    yield s
    s.stop()


def access_rx(method: str, uri: str, status: int = 200, proto: str = "HTTP/1.1", size: str = r"\d+") -> str:
    return (
        r"\[pid: (?P<pid>\d+)\|app: \d+\|req: (?P<wreq>\d+)/(?P<treq>\d+)\] "
        r"(?P<addr>127\.0\.0\.1) \(\S*\) \{\d+ vars in \d+ bytes\} "
        r"\[(?P<date>[A-Z][a-z]{2} [A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2} \d{4})\] "
        + re.escape(method) + " " + re.escape(uri)
        + rf" => generated (?P<bytes>{size}) bytes in (?P<ms>\d+) msecs "
        + r"\(" + re.escape(proto) + rf" {status}\) \d+ headers in \d+ bytes "
        r"\(\d+ switches on core \d+\)"
    )


def raw_get(srv, target, version="HTTP/1.1", method="GET", body=b""):
    with Conn(srv.port) as conn:
        conn.send(request_bytes(method, target, version, [("Connection", "close")], body))
        return conn.read_response(method)


def test_access_log_line_has_uwsgi_shape(srv):
    """Issue 2 item 7: pid, worker, client address, method, URI, status, bytes, time."""
    worker = int(raw_get(srv, "/pid").body)
    mark = srv.mark()
    resp = raw_get(srv, "/hello?x=1")
    assert resp.body == b"Hello, World!"
    m = srv.wait_log(access_rx("GET", "/hello?x=1", 200, size="13"), since=mark)
    assert int(m["pid"]) == worker
    logged = datetime.strptime(re.sub(" +", " ", m["date"]), "%a %b %d %H:%M:%S %Y")
    assert abs((logged - datetime.now()).total_seconds()) < 120, m["date"]


def test_one_line_per_request(srv):
    """Issue 2 item 7: exactly one line per request; the request counters advance."""
    mark = srv.mark()
    for i in range(3):
        raw_get(srv, f"/hello?n={i}")
    srv.wait_log(access_rx("GET", "/hello?n=2"), since=mark)
    time.sleep(0.2)
    text = srv.log_since(mark)
    counters = []
    for i in range(3):
        found = list(re.finditer(access_rx("GET", f"/hello?n={i}"), text))
        assert len(found) == 1, f"{len(found)} lines for request {i}:\n{text}"
        counters.append(int(found[0]["wreq"]))
    assert counters == sorted(counters) and len(set(counters)) == 3, counters


def test_access_log_status_method_and_protocol(srv):
    """The line carries the real method, status and protocol version."""
    mark = srv.mark()
    raw_get(srv, "/nope", method="POST", body=b"abc")
    srv.wait_log(access_rx("POST", "/nope", 404), since=mark)
    mark = srv.mark()
    raw_get(srv, "/hello", version="HTTP/1.0")
    srv.wait_log(access_rx("GET", "/hello", 200, proto="HTTP/1.0"), since=mark)


def test_access_log_time_in_msecs(srv):
    """The time field is the request's duration in milliseconds."""
    mark = srv.mark()
    raw_get(srv, "/sleep?ms=300")
    m = srv.wait_log(access_rx("GET", "/sleep?ms=300"), since=mark)
    assert 300 <= int(m["ms"]) < 5000, m["ms"]


def test_disable_logging(server_factory):
    """Issue 2 item 7: --disable-logging removes access lines (the log itself still works)."""
    s = server_factory(plain_args("--disable-logging"))
    for _ in range(3):
        assert requests.get(f"{s.url}/hello", timeout=5).status_code == 200
    requests.get(f"{s.url}/errors", params={"tag": "still-logging"}, timeout=5)
    s.wait_log(r"wsgi-errors-marker still-logging")
    time.sleep(0.3)
    assert not re.search(r"=> generated \d+ bytes", s.log()), s.log()


def test_wsgi_errors_goes_to_log(srv):
    """PEP 3333 wsgi.errors: what the app writes there appears in the server log."""
    mark = srv.mark()
    requests.get(f"{srv.url}/errors", params={"tag": "abc123"}, timeout=5)
    srv.wait_log(r"wsgi-errors-marker abc123", since=mark)


def test_app_exception_logs_traceback(srv):
    """DESIGN §6: an app exception is logged with its Python traceback."""
    mark = srv.mark()
    assert requests.get(f"{srv.url}/error-before", timeout=5).status_code == 500
    srv.wait_log(r"Traceback \(most recent call last\):", since=mark)
    srv.wait_log(r'File ".*plain_app\.py", line \d+', since=mark)
    srv.wait_log(r"RuntimeError: boom-before-headers", since=mark)


QUIET = re.compile(r"ERROR|Traceback|panicked")


def test_client_disconnect_mid_response_is_not_an_error(srv):
    """Issue 2 item 7 / Conventions: a client that goes away mid-response is not
    an error: no ERROR, no traceback, no panic in the log."""
    mark = srv.mark()
    conn = Conn(srv.port)
    conn.send(request_bytes("GET", "/big?n=104857600&chunk=65536"))
    got = 0
    while got < 200_000:
        got += len(conn.recv_some(timeout=5))
    conn.close(reset=True)
    # and a polite close (FIN) mid-response, too
    conn = Conn(srv.port)
    conn.send(request_bytes("GET", "/big?n=104857600&chunk=65536"))
    conn.recv_some(timeout=5)
    conn.close()
    time.sleep(1.5)
    assert requests.get(f"{srv.url}/hello", timeout=5).status_code == 200
    text = srv.log_since(mark)
    assert not QUIET.search(text), text[-3000:]


def test_client_disconnect_mid_request_is_not_an_error(srv):
    """The same when the client leaves during the head or the body."""
    mark = srv.mark()
    c = Conn(srv.port)
    c.send(b"GET /hello HTTP/1.1\r\nHost: lo")
    c.close(reset=True)
    c = Conn(srv.port)
    c.send(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 500\r\n\r\nabc")
    c.close()
    time.sleep(1.0)
    assert requests.get(f"{srv.url}/hello", timeout=5).status_code == 200
    text = srv.log_since(mark)
    assert not QUIET.search(text), text[-3000:]


BAD_REQUESTS = {
    "400-cl-and-te": (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        r"\b400\b|Bad Request",
    ),
    "414-uri": (b"GET /" + b"u" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", r"\b414\b|URI Too Long"),
    "431-headers": (
        b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(150)) + b"\r\n",
        r"\b431\b|Header Fields Too Large",
    ),
    "413-body": (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", r"\b413\b|Too Large"),
}


@pytest.mark.parametrize("raw,rx", list(BAD_REQUESTS.values()), ids=list(BAD_REQUESTS))
def test_bad_request_is_logged(srv, raw, rx):
    """Issue 2 item 7: a rejected request leaves a line naming its status or reason."""
    mark = srv.mark()
    with Conn(srv.port) as conn:
        conn.send(raw)
        try:
            conn.read_response()
        except ConnectionClosedEarly:
            pass
    srv.wait_log(rx, since=mark, timeout=3)


def test_header_timeout_is_logged(srv):
    """A head that never completes (2 s header timeout) leaves a line too."""
    mark = srv.mark()
    with Conn(srv.port, timeout=8) as conn:
        conn.send(b"GET / HTTP/1.1\r\nHo")
        conn.wait_closed(6)
    srv.wait_log(r"(?i)\b408\b|time(d)?[ -]?out", since=mark, timeout=3)


# -- workers' stdout/stderr, relayed by the master (issue 7 item 1, last bullet)
#
# Every line a worker (or the app, or a process the app starts) writes to
# fd 1 or 2 reaches the log as "[worker ID|pid PID] <line>", one write per
# batch of whole lines, so lines are never spliced. The access log does not
# take that path: its lines keep their plain "[pid: ..." start.

OUTPUT_APP = str(APPS / "output_app.py")
PREFIXED = r"^\[worker (?P<id>\d+)\|pid (?P<pid>\d+)\] "


def output_args(*extra: str) -> list[str]:
    return ["--wsgi-file", OUTPUT_APP, *extra]


def get_pid(srv) -> int:
    return int(requests.get(f"{srv.url}/pid", timeout=5).text)


def prefixed(text: str, rest: str, pid: int | None = None) -> re.Match | None:
    m = re.search(PREFIXED + rest + "$", text, re.M)
    if m and pid is not None:
        assert int(m["pid"]) == pid, m.group(0)
    return m


def test_worker_output_is_prefixed_with_worker_and_pid(server_factory):
    """print(), sys.stderr, a line written in pieces, a warning, a traceback and
    a child process's output all arrive whole, with the worker's prefix."""
    s = server_factory(output_args("--processes", "1"))
    pid = get_pid(s)
    mark = s.mark()
    for path in ("print", "partial", "warn", "child"):
        assert requests.get(f"{s.url}/{path}", params={"tag": "t1"}, timeout=5).status_code == 200
    assert requests.get(f"{s.url}/raise", params={"tag": "t1"}, timeout=5).status_code == 500
    s.wait_log(PREFIXED + r"RuntimeError: raised-t1$", since=mark, flags=re.M)
    text = s.log_since(mark)
    for rest in (
        r"print-t1",
        r"stderr-t1",
        r"partial-t1-a-b-c-end",
        r".*UserWarning: warned-t1",
        r"child-t1",
        r"Traceback \(most recent call last\):",
        r'  File ".*output_app\.py", line \d+, in application',
    ):
        assert prefixed(text, rest, pid), f"{rest!r} not prefixed in:\n{text}"
    assert prefixed(text, r"\[worker 1\|pid \d+\] .*", None) is None, "prefixed twice"
    # The access log went straight to the log, not through the relay.
    assert re.search(r"^\[pid: \d+\|app: 0\|req: \d+/\d+\] .* GET /print\?tag=t1 ", text, re.M), text
    assert not re.search(r"^\[worker \d+\|pid \d+\] \[pid: ", text, re.M), text
    # So did the worker's own server log.
    assert not re.search(r"^\[worker \d+\|pid \d+\] \[.*\] capataz worker", s.log(), re.M)


def test_long_line_is_cut_with_a_marker_and_nothing_is_lost(server_factory):
    s = server_factory(output_args("--processes", "1"))
    pid = get_pid(s)
    mark = s.mark()
    n = 150_000
    requests.get(f"{s.url}/long", params={"tag": "big", "n": n}, timeout=5)
    s.wait_log(PREFIXED + r"x+$", since=mark, flags=re.M)
    time.sleep(0.3)
    pieces = [
        ln for ln in s.log_since(mark).splitlines() if ln.startswith(f"[worker 1|pid {pid}] ") and "x" * 50 in ln
    ]
    prefix = f"[worker 1|pid {pid}] "
    assert len(pieces) == 3, [len(p) for p in pieces]
    assert all(p.endswith(" [line continues]") for p in pieces[:2])
    joined = "".join(p[len(prefix):].removesuffix(" [line continues]") for p in pieces)
    assert joined == "long-big:" + "x" * n


def test_concurrent_workers_and_threads_never_splice_lines(server_factory):
    """Two workers, four threads each writing to fd 1 and fd 2 at once: every
    line arrives whole, under its own worker's prefix, and none is lost."""
    s = server_factory(output_args("--processes", "2", "--threads", "1"))
    s.wait_workers_loaded(2)
    mark = s.mark()
    requests_n, threads, lines = 6, 4, 150
    # Which worker accepts a connection is the kernel's choice: send rounds
    # of concurrent requests until both workers have served one (at most 5).
    served_by, sent = set(), 0
    with ThreadPoolExecutor(requests_n) as pool:
        while len(served_by) < 2 and sent < 5 * requests_n:
            resps = list(
                pool.map(
                    lambda i: requests.get(
                        f"{s.url}/burst", params={"tag": f"r{i}", "threads": threads, "lines": lines}, timeout=30
                    ),
                    range(sent, sent + requests_n),
                )
            )
            assert [r.status_code for r in resps] == [200] * requests_n
            served_by |= {r.text for r in resps}
            sent += requests_n
    want = sent * threads * lines
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and s.log_since(mark).count("-end\n") < want:
        time.sleep(0.1)
    text = s.log_since(mark)
    rx = re.compile(PREFIXED + r"burst-(?P<tag>r\d+)-(?P<wpid>\d+)-(?P<t>\d+)-(?P<i>\d+)-y{200}-end$")
    seen = set()
    pids = set()
    for line in text.splitlines():
        if "burst-" not in line and not re.search(r"y{10}", line):
            continue
        m = rx.match(line)
        assert m, f"spliced or unprefixed line: {line[:300]!r}"
        assert m["pid"] == m["wpid"], line
        seen.add((m["tag"], m["t"], m["i"]))
        pids.add(m["pid"])
    assert len(seen) == want, f"{want - len(seen)} lines lost"
    assert len(pids) == 2, f"only {pids} wrote; the test wants both workers"


def test_no_line_is_spliced_when_the_log_is_a_pipe(tmp_path):
    """On a pipe only writes of up to PIPE_BUF bytes are atomic: relayed
    output and access-log flushes from two workers, all on one stderr pipe,
    still arrive as whole lines."""
    port = free_port()
    proc = subprocess.Popen(
        [str(capataz_bin()), "--http", f"127.0.0.1:{port}", *output_args("--processes", "2")],
        cwd=tmp_path,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(iter(lambda: proc.stderr.read(65536), b"")))
    reader.start()
    try:
        deadline = time.monotonic() + 20
        while not probe_http(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"

        def work(i):
            requests.get(f"{url}/burst", params={"tag": f"p{i}", "threads": 3, "lines": 100}, timeout=30)
            for _ in range(40):
                requests.get(f"{url}/pid", params={"pad": "q" * 300}, timeout=5)

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(work, range(4)))
        time.sleep(1.5)  # idle workers flush their access logs
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            reader.join(10)
    text = b"".join(chunks).decode("utf-8", "replace")
    burst = re.compile(PREFIXED + r"burst-p\d+-(?P<wpid>\d+)-\d+-\d+-y{200}-end$")
    access = re.compile(r"^\[pid: \d+\|app: 0\|req: \d+/\d+\] 127\.0\.0\.1 .* \(1 switches on core 0\)$")
    n_burst = n_access = 0
    for line in text.splitlines():
        if "burst-" in line or "y" * 20 in line:
            m = burst.match(line)
            assert m and m["pid"] == m["wpid"], f"spliced: {line[:300]!r}"
            n_burst += 1
        elif "[pid: " in line or "q" * 20 in line:
            assert access.match(line), f"spliced: {line[:300]!r}"
            n_access += 1
    assert n_burst == 4 * 3 * 100
    assert n_access >= 4 * 41
    assert text.count(" GET /pid?pad=q") == 4 * 40 and text.count(" GET /burst?tag=p") == 4


def test_worker_dying_mid_line_is_flushed_then_respawned(server_factory):
    s = server_factory(output_args("--processes", "1"))
    old = get_pid(s)
    mark = s.mark()
    try:
        requests.get(f"{s.url}/crash", params={"tag": "c1"}, timeout=5)
    except requests.RequestException:
        pass
    m = s.wait_log(PREFIXED + r"crash-c1-half$", since=mark, flags=re.M)
    assert int(m["pid"]) == old
    s.wait_log(r"spawned worker 1", since=mark)
    deadline = time.monotonic() + 10
    new = old
    while new == old and time.monotonic() < deadline:
        try:
            new = get_pid(s)
        except requests.RequestException:
            time.sleep(0.1)
    assert new != old
    mark = s.mark()
    requests.get(f"{s.url}/print", params={"tag": "c2"}, timeout=5)
    m = s.wait_log(PREFIXED + r"print-c2$", since=mark, flags=re.M)
    assert (m["id"], int(m["pid"])) == ("1", new)


def test_reload_relays_both_generations(server_factory):
    s = server_factory(output_args("--processes", "1"))
    old = get_pid(s)
    requests.get(f"{s.url}/print", params={"tag": "gen1"}, timeout=5)
    s.wait_log(rf"^\[worker 1\|pid {old}\] print-gen1$", flags=re.M)
    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_log(r"draining 1 old worker", since=mark, timeout=20)
    deadline = time.monotonic() + 10
    new = old
    while new == old and time.monotonic() < deadline:
        new = get_pid(s)
        time.sleep(0.05)
    assert new != old
    requests.get(f"{s.url}/print", params={"tag": "gen2"}, timeout=5)
    s.wait_log(rf"^\[worker 1\|pid {new}\] print-gen2$", since=mark, flags=re.M)


def test_output_relay_follows_logto_and_usr1(server_factory, tmp_path):
    """The relayed lines go where the master logs: the logto file, and after
    logrotate moves it and sends USR1, the fresh file."""
    logf = tmp_path / "relay.log"
    s = server_factory(output_args("--processes", "2", "--logto", str(logf)))
    requests.get(f"{s.url}/print", params={"tag": "before"}, timeout=5)
    wait_file(logf, PREFIXED + r"print-before$")
    os.rename(logf, tmp_path / "relay.log.1")
    s.signal(signal.SIGUSR1)
    wait_file(logf, r"SIGUSR1: reopened")
    requests.get(f"{s.url}/print", params={"tag": "after"}, timeout=5)
    wait_file(logf, PREFIXED + r"print-after$")
    assert "print-after" not in (tmp_path / "relay.log.1").read_text()
    assert "print-" not in s.log(), "nothing relayed to the old stderr"


def test_master_fifo_l_reopens_logto_like_usr1(server_factory, tmp_path):
    """uWSGI's master-fifo `l` reopens the log: after logrotate moves the
    logto file, `l` does what SIGUSR1 does, so the master and every worker
    write to a fresh file at the path and the moved one stops growing."""
    logf, rotated, fifo = tmp_path / "app.log", tmp_path / "app.log.1", tmp_path / "master.fifo"
    s = server_factory(plain_args("--processes", "2", "--threads", "1", "--logto", str(logf), "--master-fifo", str(fifo)))
    requests.get(f"{s.url}/hello?n=before", timeout=5)
    wait_file(logf, r"GET /hello\?n=before ")
    os.rename(logf, rotated)
    fifo_write(fifo, b"l")
    wait_file(logf, r"master-fifo 'l': reopened")

    def hit(n):
        with Conn(s.port, timeout=10) as conn:
            conn.send(request_bytes("GET", f"/sleep?ms=20&n={n}", headers=[("Connection", "close")]))
            return int(conn.read_response().body)

    # Until both workers have logged a request to the new file.
    workers, logged, n = set(), set(), 0
    deadline = time.monotonic() + 20
    while not (len(workers) == 2 and logged == workers):
        assert time.monotonic() < deadline, f"workers {workers}, logged to the new file: {logged}"
        with ThreadPoolExecutor(4) as pool:
            workers |= set(pool.map(hit, range(n, n + 8)))
        n += 8
        time.sleep(0.1)
        logged = {int(p) for p in re.findall(r"\[pid: (\d+)\|", logf.read_text())}
    size = rotated.stat().st_size
    assert "/sleep" not in rotated.read_text() and "reopened" not in rotated.read_text()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(hit, range(1000, 1008)))
    wait_file(logf, r"GET /sleep\?ms=20&n=1007 ")
    time.sleep(0.2)
    assert rotated.stat().st_size == size, "the rotated file still grows"


def test_log_master_off_leaves_output_unprefixed(server_factory):
    s = server_factory(output_args("--processes", "1", "--log-master=false"))
    mark = s.mark()
    requests.get(f"{s.url}/print", params={"tag": "raw"}, timeout=5)
    s.wait_log(r"^print-raw$", since=mark, flags=re.M)
    assert "[worker 1|pid" not in s.log()


def test_usr1_reopens_side_program_log_files(server_factory):
    """Issue 6: logrotate moves a [program:x] log file and sends USR1; the
    program's next lines go to a fresh file at the original path."""
    srv, _ = start_with(
        server_factory,
        "[program:ticker]\n"
        "command = sh -c 'i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.1; done'\n"
        "stdout_logfile = %(here)s/ticker.log\n",
    )
    log = srv.dir / "ticker.log"
    wait_file(log, r"^tick-3$")
    os.rename(log, srv.dir / "ticker.log.1")
    time.sleep(0.3)
    srv.signal(signal.SIGUSR1)
    m = wait_file(log, r"^tick-(\d+)$")
    moved = (srv.dir / "ticker.log.1").read_text().split()
    first_new = int(m[1])
    # Nothing lost, nothing doubled: the old file ends where the new one starts.
    assert moved[-1] == f"tick-{first_new - 1}", (moved[-3:], first_new)
    assert srv.proc.poll() is None
