"""A WSGI app whose worker crashes right after boot the first few times,
for the supervision tests (worker STARTING -> BACKOFF -> RUNNING).

The environment says how: CRASHY_COUNTER is a file counting the boots so
far (created if missing), CRASHY_TIMES how many boots crash, starting with
boot number CRASHY_FROM (default 1: the first ones). A crashing
boot imports fine, so the worker starts accepting, then the process exits
with code 3 about CRASHY_AFTER_MS (default 200) milliseconds later, well
within the master's 1 s startsecs. Later boots serve normally:
  /pid    the worker's pid
  /boots  how many boots the counter file has seen
"""

import os
import threading

COUNTER = os.environ["CRASHY_COUNTER"]
TIMES = int(os.environ.get("CRASHY_TIMES", "3"))
FROM = int(os.environ.get("CRASHY_FROM", "1"))
AFTER = int(os.environ.get("CRASHY_AFTER_MS", "200")) / 1000.0

# O_APPEND writes are atomic: each boot adds one byte. The offset right
# after our own write is our boot number, even when two workers boot at
# once (the file's size, read afterwards, may already count the other's).
fd = os.open(COUNTER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
os.write(fd, b".")
BOOT = os.lseek(fd, 0, os.SEEK_CUR)
os.close(fd)

if FROM <= BOOT < FROM + TIMES:
    threading.Timer(AFTER, os._exit, (3,)).start()


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/boots":
        body = str(os.path.getsize(COUNTER)).encode()
    else:
        body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
