"""A real nginx for a test, in front of capataz (issue 5 item 2).

`Nginx(tmpdir, servers)` writes nginx.conf into its own directory (pid,
logs and temp paths there too), runs
`nginx -p DIR -c DIR/nginx.conf -e DIR/error.log -g 'daemon off; ...'` in the
foreground, waits until every listen port answers, and stops it by its pid.
scripts/test.sh installs nginx; without it the tests fail and say so.

`servers` is the text of the `server {}` blocks; `{uwsgi_params}` in it is
replaced with the path of the system's stock uwsgi_params.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

UWSGI_PARAMS = "/etc/nginx/uwsgi_params"


def nginx_bin() -> str:
    path = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if not path:
        raise AssertionError("nginx is not installed: run `bash scripts/test.sh`, which installs it")
    return path


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Nginx:
    def __init__(self, workdir: Path, servers: str, ports: list[int], http_extra: str = ""):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ports = ports
        self.error_log = self.dir / "error.log"
        self.access_log = self.dir / "access.log"
        params = UWSGI_PARAMS if os.path.exists(UWSGI_PARAMS) else str(self.dir / "uwsgi_params")
        # Running as root, nginx would switch its workers to "nobody", who
        # cannot enter pytest's private temp dirs or open our sockets.
        user = "user root;" if os.geteuid() == 0 else ""
        conf = f"""
worker_processes 1;
{user}
events {{ worker_connections 256; }}
http {{
    access_log {self.access_log};
    client_body_temp_path {self.dir}/client_body;
    proxy_temp_path {self.dir}/proxy;
    fastcgi_temp_path {self.dir}/fastcgi;
    uwsgi_temp_path {self.dir}/uwsgi;
    scgi_temp_path {self.dir}/scgi;
    {http_extra}
{servers.replace("{uwsgi_params}", params)}
}}
"""
        (self.dir / "nginx.conf").write_text(conf)
        self.log = open(self.dir / "nginx.out", "ab")
        self.proc = subprocess.Popen(
            [
                nginx_bin(),
                "-p", str(self.dir),
                "-c", str(self.dir / "nginx.conf"),
                "-e", str(self.error_log),
                "-g", f"daemon off; pid {self.dir}/nginx.pid;",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def errors(self) -> str:
        try:
            return self.error_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"nginx exited with {self.proc.returncode}\n{(self.dir / 'nginx.out').read_text(errors='replace')}"
                    f"\n{self.errors()}"
                )
            if all(port_open(p) for p in self.ports):
                return
            time.sleep(0.05)
        raise AssertionError(f"nginx did not listen on {self.ports} within {timeout}s\n{self.errors()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # nginx: fast shutdown
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its worker, if left behind
        except (ProcessLookupError, PermissionError):
            pass
        self.log.close()

    def __enter__(self) -> "Nginx":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
