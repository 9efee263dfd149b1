#!/usr/bin/env python3
"""capataz benchmark harness: capataz against bjoern, granian, uWSGI, gunicorn
(and nginx as the machine's ceiling), all serving bench/app.py.

Run through bench/run.sh, which makes the venv and calls this with its python.
Stdlib only.

Environment:
  SERVERS     comma list, default capataz,bjoern,granian,uwsgi,gunicorn,nginx
  WORKLOADS   comma list, default hello,get10k,post10k,stream,sleep10,hello-2proc,hello-log,
              static-1k,static-1m ("static" stands for both static rows: capataz
              --static-map against nginx serving the same files)
  DURATION    seconds per measured wrk run (default 10)
  WARMUP      seconds of the warm-up wrk run before each measured run (default 2)
  REPEAT      rounds per (server, workload), servers interleaved (default 1)
  AGG         best (default): report each row's best round, the least disturbed;
              median: report medians of the rounds
  CAPATAZ_BIN path of the capataz binary (default <repo>/target/release/capataz)
  GRANIAN_TUNE  1 (default): sweep granian's settings on hello and use the best;
                0: use GRANIAN_OPTS (or the built-in default setting) as is
  GRANIAN_OPTS  granian options for the one-process rows when GRANIAN_TUNE=0
  TUNE_DURATION seconds per granian sweep run (default 5)
  TUNE_ROUNDS   rounds of the granian sweep; each setting scores its best (default 2)
  RESULTS     output markdown path (default bench/results-<date>.md)
  KEEP_TMP    1: keep the temp dir with the servers' stderr and the access log
  RERENDER    path of a results-<date>.json a run wrote: print its report again
"""

import datetime
import http.client
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))

ALL_SERVERS = ["capataz", "bjoern", "granian", "uwsgi", "gunicorn", "nginx"]
PEERS = ["bjoern", "granian", "uwsgi", "gunicorn"]

# workload name -> (path, wrk lua script or None, description)
WORKLOADS = {
    "hello": ("/hello", None, "hello (13 B), 1 process"),
    "get10k": ("/10k", None, "GET 10 KiB, 1 process"),
    "post10k": ("/echo", "post10k.lua", "POST-echo 10 KiB, 1 process"),
    "stream": ("/stream", None, "streaming response, 100 chunks x 100 B via a generator, 1 process"),
    "sleep10": ("/sleep10", None, "10 ms time.sleep endpoint, 1 process, 32 threads"),
    "hello-2proc": ("/hello", None, "hello, 2 processes (server not pinned)"),
    "hello-log": ("/hello", None, "hello, access log ON to a file (capataz only)"),
    "static-1k": ("/static/1k.bin", None, "static file, 1 KiB: capataz --static-map vs nginx, 1 worker each"),
    "static-1m": ("/static/1m.bin", None, "static file, 1 MiB: capataz --static-map vs nginx, 1 worker each"),
}
ALL_WORKLOADS = list(WORKLOADS)
# WORKLOADS=static means both static rows.
WORKLOAD_GROUPS = {"static": ["static-1k", "static-1m"]}
STATIC_WORKLOADS = WORKLOAD_GROUPS["static"]
# The files both servers serve, made once per run in TMP/static.
STATIC_FILES = {"1k.bin": 1024, "1m.bin": 1024 * 1024}

# Granian settings tried on hello when GRANIAN_TUNE=1. The first is the
# fallback used when tuning is off and GRANIAN_OPTS is unset.
GRANIAN_BASE = ["--interface", "wsgi", "--no-log", "--no-access-log"]
GRANIAN_CANDIDATES = [
    "--runtime-mode st --http 1 --no-ws",
    "",
    "--runtime-mode mt --runtime-threads 2",
    "--runtime-mode st --http 1 --no-ws --blocking-threads 1",
    "--runtime-mode st --http 1 --no-ws --backpressure 64",
    "--runtime-mode st --http 1 --no-ws --http1-pipeline-flush",
]

# uWSGI's --http-socket does not keep connections alive: it closes the
# connection after every response but does not say so (no "Connection:
# close"), and wrk counts each of those closes as a read error. Saying it
# makes wrk reconnect cleanly: a valid connection-per-request figure, the same
# mode gunicorn's sync worker runs in. (--http11-socket keeps connections
# alive but serves one connection at a time, starving the other 63: see
# MIN_EFFECTIVE_CONCURRENCY.)
UWSGI_DEFAULT_OPTS = "--add-header 'Connection: close'"

# A closed-loop run with 64 connections should have about 64 requests in
# flight: req/s x mean latency. Far below that, most connections were starved
# (never served) without wrk counting an error, and the figure measures a
# different, lower concurrency. Connection-per-request servers show less than
# 64 because the reconnect gap is not in wrk's latency; they stay well above
# this floor.
MIN_EFFECTIVE_CONCURRENCY = 8

# Cache-line round trip between CPU 0 and CPU 1 (bench/xcpu.c), measured
# right before and right after each measured run. On this 2-vCPU virtual
# machine the host places the two vCPUs either on one core complex (about
# 90 ns) or on two (about 400 ns), and moves them now and then; every
# server's loopback req/s follows (hello: about 165k against 133k for
# capataz, alike for bjoern). Runs are only compared under the same
# placement; see "vCPU placement" in RESULTS.md.
XCPU_FAR_NS = 200
XCPU_BIN = None  # built into TMP by build_xcpu()

LIVE = {}  # pgid -> Popen, for cleanup on any exit path
TMP = tempfile.mkdtemp(prefix="capataz-bench-")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def proc_table():
    """pid -> (ppid, pgid, utime+stime ticks) for every process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rindex(")") + 2 :].split()
        # rest[0]=state, [1]=ppid, [2]=pgrp, [11]=utime, [12]=stime
        out[int(d)] = (int(rest[1]), int(rest[2]), int(rest[11]) + int(rest[12]))
    return out


def system_busy_ticks():
    """Busy jiffies of all CPUs (everything but idle and iowait)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4] - (v[8] if len(v) > 8 else 0) - (v[9] if len(v) > 9 else 0)


def busy_fraction(seconds=1.0):
    """Cores' worth of CPU in use on the whole machine over `seconds`."""
    b0, t0 = system_busy_ticks(), time.monotonic()
    time.sleep(seconds)
    return (system_busy_ticks() - b0) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - t0)


def group_pids(pgid):
    return [pid for pid, (_, g, _) in proc_table().items() if g == pgid]


def group_cpu_ticks(pgid):
    return sum(t for pid, (_, g, t) in proc_table().items() if g == pgid)


def worker_pids(root):
    """The worker processes of a server started as pid `root`: its direct
    children when it has any (a master/supervisor with workers: capataz,
    uWSGI --master, gunicorn, granian, nginx), else the process itself
    (bjoern)."""
    table = proc_table()
    kids = [pid for pid, (ppid, _, _) in table.items() if ppid == root]
    return kids or [root]


def status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Server:
    def __init__(self, name, argv, cwd, port, stderr_path, env=None, pin=True):
        self.name, self.port, self.stderr_path = name, port, stderr_path
        if pin:
            argv = ["taskset", "-c", "1"] + argv
        self.argv = argv
        self.cmdline = " ".join(shlex.quote(a) for a in argv)
        self.err = open(stderr_path, "wb")
        if env is None:
            # capataz reads CAPATAZ_* as options and rejects unknown ones, so
            # the harness's own CAPATAZ_BIN must not reach it.
            env = {k: v for k, v in os.environ.items() if not k.startswith("CAPATAZ_")}
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self.err,
            stderr=self.err,
            env=env,
            start_new_session=True,
        )
        self.pgid = self.proc.pid
        LIVE[self.pgid] = self.proc

    def tail(self, n=12):
        try:
            with open(self.stderr_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def wait_ready(self, timeout=30.0):
        """Wait until GET /hello answers 200. Returns None or an error string."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                return f"exited with code {rc} before answering"
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/hello")
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 200:
                    return None
                last = f"GET /hello answered {r.status}"
            except OSError as e:
                last = str(e)
            time.sleep(0.1)
        return f"no 200 on /hello within {timeout:.0f} s ({last})"

    def stop(self):
        """SIGINT the whole group (immediate stop for every server here; uWSGI
        treats TERM as reload), then SIGKILL whatever is left after 5 s."""
        try:
            os.killpg(self.pgid, signal.SIGINT)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            self.proc.poll()
            if not group_pids(self.pgid):
                break
            time.sleep(0.05)
        else:
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        # Leftovers (e.g. a child that left the group) are not ours to hunt by
        # name; but anything still in the group gets a final KILL.
        if group_pids(self.pgid):
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        LIVE.pop(self.pgid, None)
        self.err.close()


def cleanup(*_):
    for pgid in list(LIVE):
        for sig in (signal.SIGINT, signal.SIGKILL):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            time.sleep(0.3)
    LIVE.clear()


def on_signal(signum, _frame):
    cleanup()
    sys.exit(128 + signum)


# ---------------------------------------------------------------- servers


def capataz_bin():
    return os.environ.get("CAPATAZ_BIN") or os.path.join(REPO, "target", "release", "capataz")


def static_dir():
    """TMP/static with the static workloads' files (deterministic bytes, so
    the pre-check can verify them), made on first use. World-readable: an
    nginx started as root serves them from its unprivileged worker."""
    d = os.path.join(TMP, "static")
    if not os.path.isdir(d):
        os.chmod(TMP, 0o755)
        os.makedirs(d, mode=0o755)
        for name, size in STATIC_FILES.items():
            path = os.path.join(d, name)
            with open(path, "wb") as f:
                f.write(static_bytes(size))
            os.chmod(path, 0o644)
    return d


def static_bytes(size):
    return bytes((i * 31 + i // 251) % 256 for i in range(size))


def server_argv(name, workload, port, granian_opts):
    """(argv, cwd, pin, setting-description) or a string reason for n/a."""
    threads = 32 if workload == "sleep10" else 1
    procs = 2 if workload == "hello-2proc" else 1
    pin = procs == 1
    app = os.path.join(BENCH, "app.py")
    if name == "capataz":
        argv = [
            capataz_bin(),
            "--http", f"127.0.0.1:{port}",
            "--wsgi-file", app,
            "--processes", str(procs),
            "--threads", str(threads),
        ]
        # Every Python server runs from bench/.venv, so all of them see the
        # same site-packages. The base interpreter's may hold .pth files that
        # import packages at start-up (on the reference machine one imports
        # certifi, and with it pathlib, tempfile, zipfile: 3.7 MiB of worker
        # RSS that no peer pays).
        venv = os.path.dirname(VENV_BIN)
        if os.path.isfile(os.path.join(venv, "pyvenv.cfg")):
            argv += ["--virtualenv", venv]
        if workload != "hello-log":
            argv.append("--disable-logging")
        if workload in STATIC_WORKLOADS:
            argv += ["--static-map", f"/static={static_dir()}"]
            return argv, BENCH, pin, f"processes {procs}, threads {threads}, --static-map /static=DIR, logging off"
        return argv, BENCH, pin, f"processes {procs}, threads {threads}" + (
            ", access log ON (stderr to a file)" if workload == "hello-log" else ", logging off")
    if workload == "hello-log":
        return "n/a (capataz-only row)"
    if workload in STATIC_WORKLOADS and name != "nginx":
        return "n/a (static rows: capataz and nginx only)"
    if name == "bjoern":
        if workload in ("sleep10", "hello-2proc"):
            return "n/a (bjoern has no threads or processes)"
        code = f"import bjoern, app; bjoern.run(app.application, '127.0.0.1', {port})"
        return [os.path.join(VENV_BIN, "python"), "-c", code], BENCH, pin, "single C event loop"
    if name == "granian":
        opts = shlex.split(granian_opts)
        if workload == "sleep10":
            # 32 app threads, and let at least 32 requests in concurrently.
            opts = strip_opts(opts, ("--blocking-threads", "--backpressure"))
            opts += ["--blocking-threads", "32", "--backpressure", "64"]
        argv = [os.path.join(VENV_BIN, "granian")] + GRANIAN_BASE + [
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(procs)
        ] + opts + ["app:application"]
        return argv, BENCH, pin, " ".join(["--workers", str(procs)] + opts)
    if name == "uwsgi":
        sock = os.environ.get("UWSGI_SOCKET", "http-socket")
        extra = shlex.split(os.environ.get("UWSGI_OPTS", UWSGI_DEFAULT_OPTS))
        argv = [
            os.path.join(VENV_BIN, "uwsgi"),
            f"--{sock}", f"127.0.0.1:{port}",
            "--wsgi-file", "app.py",
            "--processes", str(procs),
            "--threads", str(threads),
            "--disable-logging",
            "--master",
        ] + extra
        return argv, BENCH, pin, " ".join([f"--{sock} --master --processes {procs} --threads {threads}"]
                                          + [shlex.quote(e) for e in extra])
    if name == "gunicorn":
        argv = [os.path.join(VENV_BIN, "gunicorn"), "-w", str(procs), "-b", f"127.0.0.1:{port}",
                "--log-level", "warning"]
        desc = f"-w {procs} sync"
        if workload == "sleep10":
            argv += ["-k", "gthread", "--threads", "32"]
            desc = f"-w {procs} -k gthread --threads 32"
        return argv + ["app:application"], BENCH, pin, desc
    if name == "nginx":
        if workload in STATIC_WORKLOADS:
            return (nginx_argv(port, static=static_dir()), BENCH, pin,
                    "1 worker, location /static/ { alias DIR/; }, sendfile on, tcp_nopush on, access_log off")
        if workload != "hello":
            return "n/a (ceiling row for hello only)"
        return nginx_argv(port), BENCH, pin, "1 worker, return 200, access_log off"
    return f"n/a (unknown server {name})"


def strip_opts(opts, names):
    out, skip = [], False
    for o in opts:
        if skip:
            skip = False
            continue
        if o in names:
            skip = True
            continue
        if any(o.startswith(n + "=") for n in names):
            continue
        out.append(o)
    return out


def nginx_argv(port, static=None):
    """nginx with one worker: `return 200` for hello, or (static=DIR) serving
    DIR at /static/ the way a production config does (sendfile, tcp_nopush),
    with /hello for the readiness check."""
    prefix = os.path.join(TMP, f"nginx-{port}")
    files = ""
    if static:
        files = f"""
        sendfile on;
        tcp_nopush on;
        location /static/ {{
            alias {static}/;
        }}"""
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type text/plain;
            return 200 "Hello, World!";
        }}{files}
    }}
}}
""")
    return [shutil.which("nginx") or "/usr/sbin/nginx", "-p", prefix, "-c", conf]


# ---------------------------------------------------------------- checks


def check_response(port, workload):
    """One request of the workload, checked for status and body. None if OK."""
    path = WORKLOADS[workload][0]
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        if workload == "post10k":
            body = bytes(range(256)) * 40
            c.request("POST", path, body=body, headers={"Content-Type": "application/octet-stream"})
        else:
            body = None
            c.request("GET", path)
        r = c.getresponse()
        data = r.read()
        c.close()
    except (OSError, http.client.HTTPException) as e:
        return f"{workload} request failed: {e}"
    if r.status != 200:
        return f"{path} answered {r.status}"
    want = {
        "/hello": lambda d: d == b"Hello, World!",
        "/10k": lambda d: len(d) == 10240,
        "/echo": lambda d: d == body,
        "/stream": lambda d: len(d) == 10000,
        "/sleep10": lambda d: len(d) > 0,
        "/static/1k.bin": lambda d: d == static_bytes(STATIC_FILES["1k.bin"]),
        "/static/1m.bin": lambda d: d == static_bytes(STATIC_FILES["1m.bin"]),
    }[path]
    if not want(data):
        return f"{path} returned a wrong body ({len(data)} bytes)"
    return None


def idle_rss(server):
    """Serve /hello once, wait 1 s, sum VmRSS (and PSS) of the worker
    process(es). Returns (rss_kb, pss_kb, pids)."""
    check_response(server.port, "hello")
    time.sleep(1)
    pids = worker_pids(server.proc.pid)
    return (sum(status_kb(p, "VmRSS") for p in pids), sum(pss_kb(p) for p in pids), pids)


# ---------------------------------------------------------------- wrk

UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def to_ms(s):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    return float(m.group(1)) * UNIT_MS[m.group(2)] if m else None


def parse_wrk(out):
    r = {"rps": None, "p50": None, "p99": None, "non2xx": 0, "sockerr": 0, "sockerr_text": "",
         "requests": None}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"^\s*Latency\s+(\S+)", out, re.M)
    if m:
        r["lat_avg"] = to_ms(m.group(1))
    m = re.search(r"^\s*50%\s+(\S+)", out, re.M)
    if m:
        r["p50"] = to_ms(m.group(1))
    m = re.search(r"^\s*99%\s+(\S+)", out, re.M)
    if m:
        r["p99"] = to_ms(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        r["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors:\s+(.*)", out)
    if m:
        r["sockerr_text"] = m.group(1).strip()
        r["sockerr"] = sum(int(x) for x in re.findall(r"\d+", m.group(1)))
    m = re.search(r"(\d+) requests in", out)
    if m:
        r["requests"] = int(m.group(1))
    return r


def wrk_cmd(url, duration, script):
    argv = ["taskset", "-c", "0", "wrk", "-t1", "-c64", f"-d{duration}s", "--latency"]
    if script:
        argv += ["-s", os.path.join(BENCH, script)]
    return argv + [url]


def run_wrk(url, duration, script):
    argv = wrk_cmd(url, duration, script)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    out = p.stdout + p.stderr
    r = parse_wrk(out)
    r["raw"] = out
    r["wrk_cpu"] = wrk_cpu
    if p.returncode != 0 and r["rps"] is None:
        r["error"] = f"wrk exited {p.returncode}: {out.strip()[-300:]}"
    return r


# ---------------------------------------------------------------- vCPU placement


def build_xcpu():
    """Compiles bench/xcpu.c into TMP; without a C compiler the placement
    column reads "—" and ratios are not checked for placement."""
    global XCPU_BIN
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        log("no C compiler: vCPU placement not measured")
        return
    out = os.path.join(TMP, "xcpu")
    r = subprocess.run([cc, "-O2", "-pthread", "-o", out, os.path.join(BENCH, "xcpu.c")],
                       capture_output=True, text=True)
    if r.returncode != 0:
        log(f"cannot build bench/xcpu.c, vCPU placement not measured: {r.stderr.strip()[-300:]}")
        return
    XCPU_BIN = out


def xcpu_ns():
    if not XCPU_BIN or (os.cpu_count() or 1) < 2:
        return None
    try:
        r = subprocess.run([XCPU_BIN], capture_output=True, text=True, timeout=10)
        return int(r.stdout.strip())
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def placement(row):
    """near / far / moved (changed during the run) / None (not measured)."""
    x = (row or {}).get("xcpu")
    if not x or None in x:
        return None
    near = [v < XCPU_FAR_NS for v in x]
    return "near" if all(near) else "far" if not any(near) else "moved"


def fmt_xcpu(row):
    x = row.get("xcpu")
    if not x or None in x:
        return "—"
    return f"{x[0]}→{x[1]} ({placement(row)})"


# ---------------------------------------------------------------- one row


def bench_one(name, workload, duration, warmup, granian_opts, want_rss=False, tag=None):
    """Start the server, check it, warm up, measure, stop. Returns a row dict."""
    port = free_port()
    spec = server_argv(name, workload, port, granian_opts)
    row = {"server": name, "workload": workload, "status": "", "setting": ""}
    if isinstance(spec, str):
        row["status"] = spec
        return row
    argv, cwd, pin, setting = spec
    row["setting"] = setting
    row["pinned"] = pin
    if name == "capataz" and not os.access(argv[0], os.X_OK):
        row["status"] = f"failed to start (no executable at {argv[0]})"
        return row
    label = tag or f"{name}-{workload}"
    if workload == "hello-log":
        err_path = os.path.join(TMP, f"{label}.access.log")
    else:
        err_path = os.path.join(TMP, f"{label}.stderr")
    log(f"  {name:9s} {workload:12s} port {port}: {setting}")
    srv = Server(name, argv, cwd, port, err_path, pin=pin)
    row["cmd"] = srv.cmdline
    try:
        err = srv.wait_ready()
        if err:
            row["status"] = f"failed to start: {err}"
            tail = srv.tail()
            if tail:
                row["stderr_tail"] = tail
            return row
        if want_rss:
            rss, pss, pids = idle_rss(srv)
            row["rss_kb"], row["pss_kb"], row["rss_pids"] = rss, pss, len(pids)
        bad = check_response(port, workload)
        if bad:
            row["status"] = f"VOID (bad response: {bad})"
            row["void"] = True
            return row
        url = f"http://127.0.0.1:{port}{WORKLOADS[workload][0]}"
        script = WORKLOADS[workload][1]
        if warmup > 0:
            run_wrk(url, warmup, script)
        hz = os.sysconf("SC_CLK_TCK")
        x0 = xcpu_ns()
        t0, c0, b0 = time.monotonic(), group_cpu_ticks(srv.pgid), system_busy_ticks()
        r = run_wrk(url, duration, script)
        t1, c1, b1 = time.monotonic(), group_cpu_ticks(srv.pgid), system_busy_ticks()
        row["xcpu"] = (x0, xcpu_ns())
        row.update(r)
        wall = max(t1 - t0, 1e-9)
        row["srv_cpu"] = (c1 - c0) / hz / wall
        row["conc"] = (r["rps"] * r["lat_avg"] / 1000.0
                       if r.get("rps") and r.get("lat_avg") is not None else None)
        row["wrk_cpu"] = r["wrk_cpu"] / wall
        # CPU used by anything else on the machine (other jobs, kernel threads
        # not charged to either side): a large value means a disturbed run.
        row["other_cpu"] = max(0.0, (b1 - b0) / hz / wall - row["srv_cpu"] - row["wrk_cpu"])
        if srv.proc.poll() is not None:
            row["died"] = True
        if "error" in r or r["rps"] is None:
            row["status"] = "VOID (" + r.get("error", "wrk output not understood") + ")"
            row["void"] = True
        elif not r["rps"] or not r.get("requests"):
            row["status"] = "VOID (no request completed)"
            row["void"] = True
        elif r["non2xx"] or r["sockerr"]:
            row["status"] = "VOID"
            row["void"] = True
        elif row["conc"] is not None and row["conc"] < MIN_EFFECTIVE_CONCURRENCY:
            row["status"] = (f"VOID (starved: only {row['conc']:.1f} of 64 connections in flight "
                             "on average)")
            row["void"] = True
        elif row.get("died"):
            row["status"] = "VOID (server exited during the run)"
            row["void"] = True
        else:
            row["status"] = "OK"
            row["void"] = False
        if workload == "hello-log":
            srv.err.flush()
            try:
                with open(err_path, "rb") as f:
                    n = sum(1 for _ in f)
            except OSError:
                n = 0
            row["log_lines"] = n
            row["log_path"] = err_path
        return row
    finally:
        srv.stop()


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def combine(rounds):
    """One row from the REPEAT rounds of a (server, workload). AGG=best (the
    default) shows the round with the highest req/s, all its figures from
    that round: a disturbance from other jobs only ever slows a run, so the
    best round is the least disturbed. AGG=median shows medians instead.
    Error counts are summed over the rounds; the row is VOID if any round is."""
    if len(rounds) == 1:
        return dict(rounds[0], rounds=rounds)
    first = rounds[0]
    if any(r.get("rps") is None for r in rounds):
        bad = next(r for r in rounds if r.get("rps") is None)
        return dict(first, status=bad["status"], rps=None)
    if os.environ.get("AGG", "best") == "median":
        row = dict(first)
        for k in ("rps", "p50", "p99", "srv_cpu", "wrk_cpu", "other_cpu", "conc"):
            row[k] = median(r.get(k) for r in rounds)
    else:
        row = dict(max(rounds, key=lambda r: r["rps"]))
        for k in ("rss_kb", "pss_kb", "rss_pids"):
            if k in first:
                row[k] = first[k]
    row["non2xx"] = sum(r["non2xx"] for r in rounds)
    row["sockerr"] = sum(r["sockerr"] for r in rounds)
    row["sockerr_text"] = " / ".join(r["sockerr_text"] for r in rounds if r["sockerr"])
    row["round_rps"] = [r["rps"] for r in rounds]
    row["rounds"] = rounds
    voids = [r["status"] for r in rounds if r["status"] != "OK"]
    row["void"] = bool(voids)
    row["status"] = voids[0] if voids else "OK"
    if "log_lines" in first:
        row["log_lines"] = sum(r.get("log_lines", 0) for r in rounds)
    return row


# ---------------------------------------------------------------- granian sweep


def tune_granian(duration, warmup, rounds):
    """Each candidate setting `rounds` times, interleaved; a setting scores its
    best round (a disturbance only ever lowers a figure). When every setting
    has an OK round under one vCPU placement (near first, then far), only
    rounds under that placement score, so no setting wins by placement."""
    log(f"granian sweep on hello ({len(GRANIAN_CANDIDATES)} settings x {rounds} rounds, {duration} s each)")
    runs = {opts: [] for opts in GRANIAN_CANDIDATES}
    for rnd in range(rounds):
        for i, opts in enumerate(GRANIAN_CANDIDATES):
            row = bench_one("granian", "hello", duration, warmup, opts, tag=f"granian-tune{rnd}-{i}")
            runs[opts].append(row)
            log(f"    {opts or '(defaults)':60s} {fmt_rps(row)} {row['status']} "
                f"other CPU {row.get('other_cpu', 0):.2f}, x-CPU {fmt_xcpu(row)}")
    oks = [[r for r in runs[o] if r.get("status") == "OK"] for o in GRANIAN_CANDIDATES]
    same = next((cls for cls in ("near", "far")
                 if all(any(placement(r) == cls for r in ok) for ok in oks if ok)), None)
    if same:
        log(f"  granian settings scored on their {same}-placement rounds")
    results = []
    for opts in GRANIAN_CANDIDATES:
        ok = [r for r in runs[opts] if r.get("status") == "OK" and (same is None or placement(r) == same)]
        best = max(ok, key=lambda r: r["rps"]) if ok else runs[opts][0]
        results.append((opts, dict(best, round_rps=[r.get("rps") or 0 for r in runs[opts]])))
    ok = [(o, r) for o, r in results if r.get("status") == "OK"]
    best = max(ok, key=lambda x: x[1]["rps"])[0] if ok else GRANIAN_CANDIDATES[0]
    return best, results


# ---------------------------------------------------------------- report


def fmt_rps(row):
    return f"{row['rps']:,.0f}" if row.get("rps") is not None else "—"


def fmt_num(v):
    return "—" if v is None else f"{v:.1f}"


def fmt_rounds(row):
    rr = row.get("round_rps")
    if not rr:
        return ""
    if any(placement(r) for r in row.get("rounds", [])):
        return " (" + ", ".join(f"{r['rps'] / 1000:.1f}k {placement(r) or '?'}"
                                for r in row["rounds"]) + ")"
    return f" ({min(rr) / 1000:.1f}k–{max(rr) / 1000:.1f}k)"


def fmt_ms(v):
    return "—" if v is None else (f"{v * 1000:.0f} µs" if v < 1 else f"{v:.2f} ms")


def usable(row):
    return row is not None and row.get("status") == "OK" and row.get("rps")


def comparable(a, b):
    """(a', b', note): the rows to compare for a ratio between combined rows a
    and b. Rows under different vCPU placements (see XCPU_FAR_NS), or both
    "moved", are not compared when both sides have rounds under a common one: then each side's
    best round under that placement is used (near first), and the note says
    so. With no common placement the best rows are compared and the note
    warns that the ratio is not like for like."""
    pa, pb = placement(a), placement(b)
    if (pa == pb and pa != "moved") or pa is None or pb is None:
        return a, b, ""
    # Two "moved" runs may each have spent most of their time under a
    # different placement: they are not like for like either.
    for cls in ("near", "far"):
        ra = [r for r in a.get("rounds", [a]) if placement(r) == cls and usable(r)]
        rb = [r for r in b.get("rounds", [b]) if placement(r) == cls and usable(r)]
        if ra and rb:
            return (max(ra, key=lambda r: r["rps"]), max(rb, key=lambda r: r["rps"]),
                    f" (best rounds ran {pa}/{pb}; compared: best {cls} rounds)")
    return a, b, f" *(not like for like: vCPU placement {pa} against {pb}; rerun)*"


def machine_info(peer_versions):
    lines = []
    model = "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        m = re.search(r"Model name:\s+(.*)", out)
        model = m.group(1).strip() if m else "?"
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f"{kb / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    osname = "?"
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    osname = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    wrkv = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    wrkv = (wrkv.stdout + wrkv.stderr).splitlines()[0].split(" Copyright")[0] if (wrkv.stdout + wrkv.stderr) else "?"
    lines.append(f"- CPU: {model}, {os.cpu_count()} cores; RAM {mem}")
    lines.append(f"- OS: {osname}, kernel {platform.release()}")
    lines.append(f"- Python: {platform.python_implementation()} {platform.python_version()} ({sys.executable})")
    lines.append(f"- load generator: {wrkv}")
    for k, v in peer_versions.items():
        lines.append(f"- {k}: {v}")
    return lines


def versions(servers):
    out = {}
    py = os.path.join(VENV_BIN, "python")

    def pyver(mod, attr="__version__"):
        try:
            r = subprocess.run([py, "-c", f"import importlib.metadata as m; print(m.version('{mod}'))"],
                               capture_output=True, text=True, timeout=30)
            return r.stdout.strip() or "?"
        except Exception:
            return "?"

    if "capataz" in servers:
        b = capataz_bin()
        if os.access(b, os.X_OK):
            try:
                r = subprocess.run([b, "--version"], capture_output=True, text=True, timeout=10)
                v = (r.stdout or r.stderr).strip().splitlines()
                out["capataz"] = f"{v[0] if v else '?'} ({b})"
            except Exception as e:
                out["capataz"] = f"? ({b}: {e})"
        else:
            out["capataz"] = f"not built ({b} missing)"
        try:
            rev = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True).stdout.strip()
            dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True).stdout.strip()
            out["capataz"] += f", repo at {rev}{' (dirty)' if dirty else ''}"
        except OSError:
            pass
    for name, mod in (("bjoern", "bjoern"), ("granian", "granian"), ("uwsgi", "uwsgi"),
                      ("gunicorn", "gunicorn")):
        if name in servers:
            out[name] = pyver(mod)
    if "nginx" in servers:
        n = shutil.which("nginx")
        if n:
            r = subprocess.run([n, "-v"], capture_output=True, text=True)
            out["nginx"] = (r.stderr or r.stdout).strip()
        else:
            out["nginx"] = "not installed"
    return out


def report(rows, rss_rows, servers, workloads, duration, warmup, repeat, granian_best, sweep, started,
           idle_before=None):
    L = []
    date = started.strftime("%Y-%m-%d %H:%M %Z").strip()
    L.append(f"# capataz benchmark — {date}")
    L.append("")
    L.append("## Machine")
    L.append("")
    L += machine_info(versions(servers))
    L.append("")
    L.append("## Method")
    L.append("")
    L.append(f"- Load: `taskset -c 0 wrk -t1 -c64 -d{duration}s --latency` (POST via `bench/post10k.lua`), "
             f"after a {warmup} s warm-up run on the same server process"
             + (f"; {repeat} rounds per row, servers interleaved; shown: the "
                + ("median" if os.environ.get("AGG", "best") == "median" else "best round (least disturbed)")
                + " with the (min–max) req/s of the rounds" if repeat > 1 else "")
             + ". Each server is started fresh "
             "for each workload and stopped (SIGINT to its process group, SIGKILL after 5 s) afterwards.")
    L.append("- Placement: wrk pinned to CPU 0; one-process servers pinned to CPU 1 (`taskset -c 1`, "
             "inherited by all their processes and threads); the 2-process row runs the server unpinned, "
             "so its workers share CPU 0 with wrk.")
    L.append("- App: `bench/app.py` for every server; logging off everywhere except the hello-log row.")
    L.append("- VOID: a run with any non-2xx/3xx response, any wrk socket error (connect/read/write/"
             "timeout), a wrong body in the pre-check, a server exit, no completed request, or fewer than "
             f"{MIN_EFFECTIVE_CONCURRENCY} requests in flight on average (starved connections) is VOID and "
             "excluded from ratios.")
    L.append("- ≈ in flight: req/s × mean latency, roughly the number of requests outstanding: about 64 "
             "for a keep-alive server that serves every connection, lower for connection-per-request "
             "servers (the reconnect gap is outside wrk's latency); it can exceed 64 because wrk's own "
             "delays inflate its latencies. It is there to catch starved connections.")
    L.append("- srv CPU / wrk CPU: CPU time used during the measured run divided by wall time "
             "(1.00 = one full core). other CPU: the rest of the machine's busy CPU in the same interval "
             "(other jobs, unattributed kernel work); more than ~0.1 means the run was disturbed.")
    L.append(f"- x-CPU ns: the cache-line round trip between CPU 0 (wrk) and CPU 1 (the server), "
             f"measured by `bench/xcpu.c` right before and right after the run. Below {XCPU_FAR_NS} ns "
             "the host ran the two vCPUs on one core complex (near), above on two (far); loopback "
             "req/s is about 20% lower when far, for every server. A ratio is computed between runs "
             "under the same placement: when the best rounds differ, the best rounds of a placement "
             "both sides ran under are used, and the ratio says so.")
    if idle_before is not None:
        L.append(f"- Machine busy before the run started: {idle_before:.2f} cores (of {os.cpu_count()})"
                 + ("  **— not idle: numbers are disturbed**" if idle_before > 0.2 else ""))
    if "granian" in servers:
        L.append(f"- granian setting ({'best hello req/s of the sweep below' if sweep else 'fixed by GRANIAN_OPTS'}, used for all its rows): "
                 f"`{' '.join(GRANIAN_BASE)} {granian_best}`")
    L.append("")

    by = {(r["server"], r["workload"]): r for r in rows}
    for w in workloads:
        L.append(f"## {w}: {WORKLOADS[w][2]}")
        L.append("")
        L.append("| server | setting | req/s | p50 | p99 | non-2xx | socket errors | ≈ in flight | srv CPU | wrk CPU | other CPU | x-CPU ns | status |")
        L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
        for s in servers:
            r = by.get((s, w))
            if r is None:
                continue
            if r.get("rps") is None:
                L.append(f"| {s} | {r.get('setting', '')} | — | — | — | — | — | — | — | — | — | — | {r['status']} |")
                continue
            L.append(
                f"| {s} | {r['setting']} | {fmt_rps(r)}{fmt_rounds(r)} | {fmt_ms(r['p50'])} | {fmt_ms(r['p99'])} | "
                f"{r['non2xx']} | {r['sockerr']}{' (' + r['sockerr_text'] + ')' if r['sockerr'] else ''} | "
                f"{fmt_num(r.get('conc'))} | {r['srv_cpu']:.2f} | {r['wrk_cpu']:.2f} | {r['other_cpu']:.2f} | {fmt_xcpu(r)} | {r['status']} |"
            )
        cap = by.get(("capataz", w))
        ratios = []
        for s in servers:
            if s == "capataz":
                continue
            peer = by.get((s, w))
            if peer is None or not peer.get("rps"):
                continue
            if usable(cap) and usable(peer):
                c, p, note = comparable(cap, peer)
                ratios.append(f"capataz/{s} = {c['rps'] / p['rps']:.2f}x{note}")
            else:
                why = "capataz " + (cap["status"] if cap else "not run") if not usable(cap) else f"{s} {peer['status']}"
                ratios.append(f"capataz/{s} = n/a ({why})")
        if ratios:
            L.append("")
            L.append("Ratios: " + "; ".join(ratios))
        if w == "hello-log" and cap and "log_lines" in cap:
            L.append("")
            L.append(f"Access log: {cap['log_lines']:,} lines written to the stderr file during warm-up and run.")
        for s in servers:
            r = by.get((s, w))
            if r and r.get("stderr_tail"):
                L.append("")
                L.append(f"{s} stderr (last lines):")
                L.append("```")
                L.append(r["stderr_tail"])
                L.append("```")
        L.append("")

    if rss_rows:
        L.append("## Idle worker RSS")
        L.append("")
        L.append("Measured on the hello server (one process, 1 thread, logging off) before the load: "
                 "one GET /hello, 1 s idle, then the sum of `VmRSS` from /proc/PID/status over the "
                 "worker process(es): the server's direct children when it has any (capataz worker, "
                 "uWSGI worker under `--master`, gunicorn worker, granian worker, nginx worker), else the "
                 "process itself (bjoern). Masters/supervisors are not counted. VmRSS counts pages shared "
                 "with a master (fork copy-on-write) in full; PSS splits them and is shown for reference.")
        L.append("")
        L.append("| server | processes counted | VmRSS | PSS |")
        L.append("|---|---:|---:|---:|")
        for s in servers:
            r = rss_rows.get(s)
            if r is None:
                continue
            if "rss_kb" in r:
                L.append(f"| {s} | {r['rss_pids']} | {r['rss_kb'] / 1024:.1f} MiB | {r['pss_kb'] / 1024:.1f} MiB |")
            else:
                L.append(f"| {s} | — | — | — ({r['status']}) |")
        L.append("")

    if sweep:
        L.append("## granian settings sweep (hello)")
        L.append("")
        L.append("Each setting's best round is shown (and used to pick); all rounds in the last column.")
        L.append("")
        L.append("| options (besides `" + " ".join(GRANIAN_BASE) + " --workers 1`) | req/s | p99 | other CPU | status | rounds |")
        L.append("|---|---:|---:|---:|---|---|")
        for opts, r in sweep:
            oc = f"{r['other_cpu']:.2f}" if "other_cpu" in r else "—"
            rr = ", ".join(f"{x:,.0f}" for x in r.get("round_rps", []))
            L.append(f"| `{opts or '(defaults)'}` | {fmt_rps(r)} | {fmt_ms(r.get('p99'))} | {oc} | {r['status']} | {rr} |")
        L.append("")

    L += targets(by, rss_rows, servers, workloads)
    return "\n".join(L) + "\n"


DISTURBED = 0.2  # other CPU (cores) above which a row counts as disturbed


def targets(by, rss_rows, servers, workloads):
    L = ["## Targets (issues 3 and 5)", "",
         f"A result is marked *disturbed* when a row it uses had more than {DISTURBED} cores of other "
         "CPU during its run: rerun it (REPEAT=3 helps) before trusting it.", "",
         "| workload | target | measured | result |", "|---|---|---|---|"]

    def dist(*keys):
        oc = [by[k].get("other_cpu") or 0 for k in keys if k in by]
        worst = max(oc, default=0)
        return f" *(disturbed: other CPU up to {worst:.2f})*" if worst > DISTURBED else ""

    def rps(s, w):
        r = by.get((s, w))
        return r["rps"] if usable(r) else None

    def ratio_check(w, peer, need, a="capataz"):
        c, p = by.get((a, w)), by.get((peer, w))
        if not usable(c) or not usable(p):
            who = a if not usable(c) else peer
            r = by.get((who, w))
            return f"{a}/{peer}: n/a ({who}: {r['status'] if r else 'not run'})", None
        c, p, note = comparable(c, p)
        x = c["rps"] / p["rps"]
        return f"{a}/{peer} = {x:.2f}x{note}", x >= need

    def verdict(parts):
        vals = [v for _, v in parts]
        if any(v is None for v in vals):
            return "n/a"
        return "PASS" if all(vals) else "MISS"

    for w, label in (("hello", "hello (13 B)"), ("get10k", "GET 10 KiB"), ("post10k", "POST-echo 10 KiB")):
        if w in workloads:
            parts = [ratio_check(w, "bjoern", 1.0), ratio_check(w, "granian", 1.3)]
            L.append(f"| {label} | ≥ 1.0× bjoern and ≥ 1.3× granian | {'; '.join(t for t, _ in parts)} | {verdict(parts)}"
                     f"{dist(('capataz', w), ('bjoern', w), ('granian', w))} |")
    if "stream" in workloads:
        parts = [ratio_check("stream", "granian", 1.3)]
        L.append(f"| streaming (100 chunks) | ≥ 1.3× granian | {parts[0][0]} | {verdict(parts)}"
                 f"{dist(('capataz', 'stream'), ('granian', 'stream'))} |")
    if "sleep10" in workloads:
        c = rps("capataz", "sleep10")
        need = 0.95 * 3200
        if c is None:
            r = by.get(("capataz", "sleep10"))
            L.append(f"| 10 ms blocking, 32 threads | ≥ 0.95 × 3200 = {need:.0f} req/s | n/a ({r['status'] if r else 'not run'}) | n/a |")
        else:
            L.append(f"| 10 ms blocking, 32 threads | ≥ 0.95 × 3200 = {need:.0f} req/s | {c:,.0f} req/s | {'PASS' if c >= need else 'MISS'}"
                     f"{dist(('capataz', 'sleep10'))} |")
    if "hello-2proc" in workloads:
        parts = [ratio_check("hello-2proc", "granian", 1.0)]
        c2, c1 = by.get(("capataz", "hello-2proc")), by.get(("capataz", "hello"))
        if usable(c2) and usable(c1):
            c2, c1, note = comparable(c2, c1)
            x = c2["rps"] / c1["rps"]
            parts.append((f"capataz 2-proc / 1-proc = {x:.2f}x{note}", x >= 1.8))
        else:
            parts.append(("capataz 2-proc / 1-proc: n/a", None))
        r2 = by.get(("capataz", "hello-2proc"))
        note = ""
        if r2 and r2.get("srv_cpu") is not None:
            note = (f" (server used {r2['srv_cpu']:.2f} cores, wrk {r2['wrk_cpu']:.2f} cores of 2: "
                    "the 1.8× part is bounded by the CPU wrk leaves)")
        L.append(f"| 2 processes, hello | ≥ 1.0× granian 2 workers; ≥ 1.8× capataz 1-process where the machine allows | "
                 f"{'; '.join(t for t, _ in parts)}{note} | {verdict(parts[:1])} (granian); "
                 f"{verdict(parts[1:])} (1.8×)"
                 f"{dist(('capataz', 'hello-2proc'), ('granian', 'hello-2proc'), ('capataz', 'hello'))} |")
    if "hello-log" in workloads:
        cl, c1 = by.get(("capataz", "hello-log")), by.get(("capataz", "hello"))
        if usable(cl) and usable(c1):
            cl, c1, note = comparable(cl, c1)
            x = cl["rps"] / c1["rps"]
            L.append(f"| access log on, hello | ≥ 0.9× capataz logging off | {x:.2f}x{note} | {'PASS' if x >= 0.9 else 'MISS'}"
                     f"{dist(('capataz', 'hello-log'), ('capataz', 'hello'))} |")
        else:
            L.append("| access log on, hello | ≥ 0.9× capataz logging off | n/a | n/a |")
    for w, label in (("static-1k", "static file 1 KiB"), ("static-1m", "static file 1 MiB")):
        if w in workloads:
            parts = [ratio_check(w, "nginx", 0.9)]
            L.append(f"| {label} (issue 5) | ≥ 0.9× nginx, 1 worker each | {parts[0][0]} | {verdict(parts)}"
                     f"{dist(('capataz', w), ('nginx', w))} |")
    if rss_rows:
        c, u = rss_rows.get("capataz", {}), rss_rows.get("uwsgi", {})
        others = ", ".join(f"{s} {rss_rows[s]['rss_kb'] / 1024:.1f} MiB" for s in ("gunicorn", "granian", "bjoern")
                           if s in rss_rows and "rss_kb" in rss_rows[s])
        if "rss_kb" in c and "rss_kb" in u:
            L.append(f"| idle worker RSS | ≤ uWSGI's | capataz {c['rss_kb'] / 1024:.1f} MiB, uWSGI {u['rss_kb'] / 1024:.1f} MiB"
                     f" ({others}) | {'PASS' if c['rss_kb'] <= u['rss_kb'] else 'MISS'} |")
        else:
            L.append(f"| idle worker RSS | ≤ uWSGI's | n/a ({others}) | n/a |")
    if "hello" in workloads:
        c, b = by.get(("capataz", "hello")), by.get(("bjoern", "hello"))
        note = ""
        if usable(c) and usable(b):
            c, b, note = comparable(c, b)
        if usable(c) and usable(b) and c.get("p99") is not None and b.get("p99") is not None:
            L.append(f"| p99 at c=64, hello | ≤ bjoern's | capataz {fmt_ms(c['p99'])}, bjoern {fmt_ms(b['p99'])}{note} | "
                     f"{'PASS' if c['p99'] <= b['p99'] else 'MISS'}{dist(('capataz', 'hello'), ('bjoern', 'hello'))} |")
        else:
            L.append("| p99 at c=64, hello | ≤ bjoern's | n/a | n/a |")
    L.append("")
    return L


# ---------------------------------------------------------------- main


def rerender(path):
    """RERENDER=results-<date>.json: the report again from a run's raw rows
    (after a change to how the report compares rows), without rerunning."""
    import json
    with open(path) as f:
        d = json.load(f)
    d["started"] = datetime.datetime.fromisoformat(d["started"])
    sys.stdout.write(report(**d))


def main():
    if os.environ.get("RERENDER"):
        rerender(os.environ["RERENDER"])
        return
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    started = datetime.datetime.now().astimezone()
    servers = [s.strip() for s in os.environ.get("SERVERS", ",".join(ALL_SERVERS)).split(",") if s.strip()]
    workloads = []
    for w in os.environ.get("WORKLOADS", ",".join(ALL_WORKLOADS)).split(","):
        for one in WORKLOAD_GROUPS.get(w.strip(), [w.strip()] if w.strip() else []):
            if one not in workloads:
                workloads.append(one)
    for s in servers:
        if s not in ALL_SERVERS:
            sys.exit(f"unknown server {s!r}; known: {','.join(ALL_SERVERS)}")
    for w in workloads:
        if w not in WORKLOADS:
            sys.exit(f"unknown workload {w!r}; known: {','.join(ALL_WORKLOADS + list(WORKLOAD_GROUPS))}")
    duration = int(os.environ.get("DURATION", "10"))
    warmup = int(os.environ.get("WARMUP", "2"))
    repeat = max(1, int(os.environ.get("REPEAT", "1")))
    if not shutil.which("wrk"):
        sys.exit("wrk not found (bench/run.sh installs it with apt-get)")
    if "nginx" in servers and not shutil.which("nginx"):
        log("nginx not installed: dropping the nginx row")
        servers.remove("nginx")

    log(f"servers: {','.join(servers)}; workloads: {','.join(workloads)}; {duration} s runs, {warmup} s warm-up")
    log(f"placement: wrk on CPU 0 (taskset -c 0); one-process servers on CPU 1 (taskset -c 1); "
        f"2-process row unpinned; {os.cpu_count()} CPUs online")
    log(f"temp dir (server stderr, logs): {TMP}")
    build_xcpu()
    x = xcpu_ns()
    if x is not None:
        log(f"CPU 0 <-> CPU 1 cache-line round trip now: {x} ns "
            f"({'near' if x < XCPU_FAR_NS else 'far'}; see XCPU_FAR_NS)")
    idle_before = busy_fraction(2.0)
    log(f"machine busy before start: {idle_before:.2f} cores"
        + ("  WARNING: not idle, numbers will be disturbed" if idle_before > 0.2 else ""))

    granian_best, sweep = None, []
    rows, rss_rows = [], {}
    try:
        if "granian" in servers:
            if os.environ.get("GRANIAN_TUNE", "1") != "0" and any(w != "hello-log" for w in workloads):
                granian_best, sweep = tune_granian(int(os.environ.get("TUNE_DURATION", "5")), warmup,
                                                       max(1, int(os.environ.get("TUNE_ROUNDS", "2"))))
            else:
                granian_best = os.environ.get("GRANIAN_OPTS", GRANIAN_CANDIDATES[0])
            log(f"granian setting: {granian_best or '(defaults)'}")

        for w in workloads:
            log(f"workload {w}" + (f" ({repeat} rounds)" if repeat > 1 else ""))
            rounds = {s: [] for s in servers}
            for i in range(repeat):
                order = servers[i % len(servers):] + servers[: i % len(servers)]
                for s in order:
                    prev = rounds[s]
                    if prev and prev[0].get("rps") is None and not prev[0].get("void"):
                        continue  # n/a or failed to start: once is enough
                    row = bench_one(s, w, duration, warmup, granian_best or "",
                                    want_rss=(w == "hello" and i == 0 and s != "nginx"))
                    prev.append(row)
                    rss = f", idle RSS {row['rss_kb'] / 1024:.1f} MiB" if "rss_kb" in row else ""
                    oc = f", other CPU {row['other_cpu']:.2f}" if "other_cpu" in row else ""
                    oc += f", x-CPU {fmt_xcpu(row)}" if "xcpu" in row else ""
                    log(f"    -> {fmt_rps(row)} req/s, p99 {fmt_ms(row.get('p99'))}, {row['status']}{rss}{oc}")
            for s in servers:
                row = combine(rounds[s])
                rows.append(row)
                if w == "hello" and s != "nginx":
                    rss_rows[s] = rounds[s][0]
    finally:
        cleanup()
        if os.environ.get("KEEP_TMP") != "1":
            shutil.rmtree(TMP, ignore_errors=True)

    text = report(rows, rss_rows, servers, workloads, duration, warmup, repeat, granian_best, sweep, started,
                  idle_before)
    sys.stdout.write(text)
    out = os.environ.get("RESULTS") or os.path.join(BENCH, f"results-{started.strftime('%Y-%m-%d-%H%M')}.md")
    with open(out, "w") as f:
        f.write(text)
    log(f"written to {out}")
    import json
    raw = os.path.splitext(out)[0] + ".json"
    with open(raw, "w") as f:
        json.dump({"rows": rows, "rss_rows": rss_rows, "servers": servers, "workloads": workloads,
                   "duration": duration, "warmup": warmup, "repeat": repeat, "granian_best": granian_best,
                   "sweep": sweep, "started": started.isoformat(), "idle_before": idle_before},
                  f, default=str)
    log(f"raw rows (for RERENDER=) in {raw}")


if __name__ == "__main__":
    main()
