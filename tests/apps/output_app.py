"""A WSGI app that writes to its stdout/stderr in every awkward way, for the
worker-output relay tests (tests/test_logging.py).

/pid                     this worker's pid
/print?tag=T             print() and a line on sys.stderr, neither flushed (stdio is unbuffered)
/partial?tag=T           one line in four os.write(1) pieces, with pauses
/long?tag=T&n=N          one os.write of a line of N 'x' bytes
/burst?tag=T&threads=K&lines=N
                         K threads each os.write N whole lines to fd 1 or 2;
                         answers the worker's pid
/child?tag=T             a subprocess that prints (it inherits fds 1 and 2)
/warn?tag=T              warnings.warn
/raise?tag=T             an exception: the server logs its traceback
/crash?tag=T             writes half a line, then os._exit(3)
"""

import os
import subprocess
import sys
import threading
import time
import warnings
from urllib.parse import parse_qs

BURST_PAD = "y" * 200


def burst(tag, threads, lines):
    pid = os.getpid()

    def run(t):
        fd = 1 if t % 2 == 0 else 2
        for i in range(lines):
            os.write(fd, f"burst-{tag}-{pid}-{t}-{i}-{BURST_PAD}-end\n".encode())
            if i % 10 == 0:
                time.sleep(0.001)

    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    tag = q.get("tag", "")
    body = b"ok"
    if path == "/pid":
        body = str(os.getpid()).encode()
    elif path == "/print":
        print(f"print-{tag}")
        sys.stderr.write(f"stderr-{tag}\n")
    elif path == "/partial":
        for piece in (f"partial-{tag}-a", "-b", "-c", "-end\n"):
            os.write(1, piece.encode())
            time.sleep(0.05)
    elif path == "/long":
        n = int(q.get("n", "100000"))
        os.write(1, f"long-{tag}:".encode() + b"x" * n + b"\n")
    elif path == "/burst":
        burst(tag, int(q.get("threads", "4")), int(q.get("lines", "50")))
        body = str(os.getpid()).encode()
    elif path == "/child":
        subprocess.run(["/bin/sh", "-c", f"echo child-{tag}"], check=True)
    elif path == "/warn":
        warnings.warn(f"warned-{tag}")
    elif path == "/raise":
        raise RuntimeError(f"raised-{tag}")
    elif path == "/crash":
        os.write(1, f"crash-{tag}-half".encode())
        os._exit(3)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
