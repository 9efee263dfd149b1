#!/usr/bin/env python3
"""Writes link/capataz.order: the functions a worker runs, then the ones the
master runs, for lld's --symbol-ordering-file (build.rs passes it).

Why: a worker is a fresh exec of the capataz binary, so its RSS counts every
page of the binary it touches, and the kernel maps file pages in 64 KiB
blocks around each fault. Left to the default layout, the few hundred KiB of
code a worker runs are spread over most of the 2.5 MiB of text, with master,
config and error code in between. Put first, they share few blocks.

How: valgrind's callgrind runs the master and its worker (--trace-children)
while a client sends a spread of ordinary requests (GET, POST with a body,
streamed and file_wrapper responses, errors, a 404, a static file, the
uwsgi protocol) to tests/apps/plain_app.py: one app thread with the access log on, and four
in a virtualenv with it off. Every function with a cost in the capataz object is listed, the
worker's by cost (hot first), then the master's. The order only moves code;
a symbol that is no longer in the binary is ignored by the linker, so a
stale file costs RSS, not correctness (tests/test_symbol_order.py says when
it has gone stale).

Run after a change that renames or adds much worker code:
    cargo build --release && python3 scripts/symbol_order.py
Needs valgrind (apt-get install -y valgrind).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "capataz")
OUT = os.path.join(ROOT, "link", "capataz.order")
APP = os.path.join(ROOT, "tests", "apps", "plain_app.py")
MASTER_MARK = "# master-only functions from here"

# A spread of what real traffic does; nothing here is a benchmark path.
REQUESTS = [
    ("GET", "/", None),
    ("GET", "/hello", None),
    ("GET", "/environ?a=1&b=2", None),
    ("POST", "/echo", b"x" * 20000),
    ("POST", "/echo-raw", b"field=value&other=1"),
    ("GET", "/write", None),
    ("GET", "/single", None),
    ("GET", "/gen?n=20&size=500", None),
    ("GET", "/lazy", None),
    ("GET", "/file", None),
    ("GET", "/error-before", None),
    ("GET", "/status?code=404", None),
    ("HEAD", "/hello", None),
    ("GET", "/static/order.txt", None),
    ("GET", "/static/missing.txt", None),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def uwsgi_packet(path):
    """One uwsgi-protocol request (modifier1 0), as nginx's uwsgi_pass sends."""
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1",
           "SERVER_NAME": "localhost", "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "localhost"}
    body = b""
    for k, v in env.items():
        kb, vb = k.encode(), v.encode()
        body += len(kb).to_bytes(2, "little") + kb + len(vb).to_bytes(2, "little") + vb
    return bytes([0]) + len(body).to_bytes(2, "little") + bytes([0]) + body


def drive(http_port, uwsgi_port):
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{http_port}/", timeout=5).read()
            break
        except OSError:
            time.sleep(0.2)
    else:
        sys.exit("capataz under valgrind did not answer in 120 s")
    for _ in range(3):
        for method, path, body in REQUESTS:
            req = urllib.request.Request(f"http://127.0.0.1:{http_port}{path}", data=body, method=method)
            try:
                urllib.request.urlopen(req, timeout=30).read()
            except urllib.error.HTTPError as e:
                e.read()
        with socket.create_connection(("127.0.0.1", uwsgi_port), timeout=30) as s:
            s.sendall(uwsgi_packet("/hello"))
            while s.recv(65536):
                pass


def run(threads, workdir, extra):
    http_port, uwsgi_port = free_port(), free_port()
    static = os.path.join(workdir, "static")
    os.makedirs(static, exist_ok=True)
    with open(os.path.join(static, "order.txt"), "w") as f:
        f.write("a static file\n")
    out = os.path.join(workdir, f"t{threads}")
    os.makedirs(out)
    argv = ["valgrind", "--tool=callgrind", "--trace-children=yes", "--demangle=no",
            f"--callgrind-out-file={out}/cg.%p", BIN,
            "--http", f"127.0.0.1:{http_port}", "--socket", f"127.0.0.1:{uwsgi_port}",
            "--wsgi-file", APP, "--processes", "1", "--threads", str(threads),
            "--static-map", f"/static={static}", "--logto", os.path.join(workdir, "log")] + extra
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        drive(http_port, uwsgi_port)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=300)
    return [os.path.join(out, f) for f in os.listdir(out) if f.startswith("cg.")]


def functions(path, binary):
    """(is_worker, {mangled name: self cost}) of the capataz object in one
    callgrind output file."""
    objs, fns, costs = {}, {}, {}
    is_worker = False
    cur_ob = cur_fn = cur_cob = None
    in_call = False
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("cmd:"):
                is_worker = "__worker__" in line
                continue
            m = re.match(r"(c?ob)=\((\d+)\)(?: (.*))?$", line)
            if m:
                kind, ident, name = m.groups()
                if name:
                    objs[ident] = name
                if kind == "ob":
                    cur_ob = objs.get(ident)
                else:
                    cur_cob = objs.get(ident)
                continue
            m = re.match(r"(c?fn)=\((\d+)\)(?: (.*))?$", line)
            if m:
                kind, ident, name = m.groups()
                if name:
                    fns[ident] = name
                ob = cur_ob if kind == "fn" else (cur_cob or cur_ob)
                if ob == binary:
                    costs.setdefault(fns[ident], 0)
                if kind == "fn":
                    cur_fn = fns[ident] if cur_ob == binary else None
                continue
            if line.startswith("calls="):
                in_call = True
                continue
            if line[:1].isdigit() or line[:1] in "+-*":
                # A cost line: after calls= it is the call's inclusive cost.
                if in_call:
                    in_call = False
                    cur_cob = None
                elif cur_fn is not None:
                    parts = line.split()
                    if len(parts) > 1 and parts[1].isdigit():
                        costs[cur_fn] = costs.get(cur_fn, 0) + int(parts[1])
    return is_worker, costs


def main():
    if not shutil.which("valgrind"):
        sys.exit("needs valgrind: apt-get install -y valgrind")
    if not os.access(BIN, os.X_OK):
        sys.exit(f"build first: cargo build --release ({BIN} is missing)")
    binary = os.path.realpath(BIN)
    worker, master = {}, {}
    with tempfile.TemporaryDirectory() as work:
        # One app thread with the access log on; four threads in a
        # virtualenv with it off.
        venv = os.path.join(work, "venv")
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
        for threads, extra in ((1, []), (4, ["--virtualenv", venv, "--disable-logging"])):
            for path in run(threads, work, extra):
                is_worker, costs = functions(path, binary)
                into = worker if is_worker else master
                for name, cost in costs.items():
                    into[name] = into.get(name, 0) + cost
    if not worker:
        sys.exit("no worker profile was written")
    first = sorted(worker, key=lambda n: (-worker[n], n))
    then = sorted((n for n in master if n not in worker), key=lambda n: (-master[n], n))
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        f.write("# Written by scripts/symbol_order.py: the functions a capataz worker runs\n"
                "# (hottest first), then the master's. lld's --symbol-ordering-file; see build.rs.\n")
        f.write("".join(n + "\n" for n in first))
        f.write(MASTER_MARK + "\n")
        f.write("".join(n + "\n" for n in then))
    print(f"{OUT}: {len(first)} worker functions, {len(then)} master-only")


if __name__ == "__main__":
    main()
