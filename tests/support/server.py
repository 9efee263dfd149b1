"""Start the real capataz binary for a test, and stop it whatever happens.

`Server` picks a free loopback port, runs
`capataz --http 127.0.0.1:PORT <args>` in its own temp dir and process group,
sends stdout+stderr to a log file there, and waits until the port answers
an HTTP request (or the process dies, in which case the log is shown).

`run_capataz` runs the binary to completion, for --help, --version and
config errors.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent.parent
REPO = TESTS_DIR.parent
APPS = TESTS_DIR / "apps"
VENV_TEST = REPO / ".venv-test"

# Servers that are running now, so a failing test can show their logs.
LIVE: list["Server"] = []


def plain_args(*extra: str) -> list[str]:
    """Arguments serving tests/apps/plain_app.py."""
    return ["--wsgi-file", str(APPS / "plain_app.py"), *extra]


def capataz_bin() -> Path:
    env = os.environ.get("CAPATAZ_BIN")
    return Path(env) if env else REPO / "target" / "release" / "capataz"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for capataz: ours, minus anything that would change
    which Python or which config it uses behind the test's back."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CAPATAZ_")
        and k not in ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONSTARTUP")
    }
    env.pop("CAPATAZ_BIN", None)
    if extra:
        env.update(extra)
    return env


def pid_alive(pid: int) -> bool:
    """True if pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def _live_processes() -> list[tuple[int, list[str]]]:
    """(pid, /proc/PID/stat fields after the command) of every live process."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] not in ("Z", "X"):
            out.append((int(entry), fields))
    return out


def children(pid: int) -> list[int]:
    """Live (non-zombie) child pids of pid, found by scanning /proc."""
    return sorted(p for p, fields in _live_processes() if int(fields[1]) == pid)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is pgid."""
    return [p for p, fields in _live_processes() if int(fields[2]) == pgid]


def probe_http(port: int, timeout: float = 1.0, path: str = "/") -> bytes | None:
    """Send one GET; return the first bytes of the answer, or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while len(data) < 12:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data or None
    except OSError:
        return None


class ServerExited(AssertionError):
    pass


class Server:
    """One capataz master (and its workers) for a test.

    args: everything after `--http 127.0.0.1:PORT`.
    http: the flag used for the listener ("--http", "--http-socket"), or
          None when the args (an ini file, say) already say where to listen;
          then pass `port` so the helper knows where to probe.
    """

    def __init__(
        self,
        args: list[str],
        *,
        env: dict[str, str] | None = None,
        http: str | None = "--http",
        port: int | None = None,
        workdir: str | Path | None = None,
        wait: bool = True,
        ready_timeout: float = 20.0,
        name: str = "capataz",
    ):
        self.args = [str(a) for a in args]
        self.extra_env = env or {}
        self.http = http
        self.port = port if port is not None else free_port()
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"{name}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{name}-{self.port}.log"
        self.proc: subprocess.Popen | None = None
        self.name = name
        auto_port = port is None
        for attempt in range(3):
            try:
                self.start(wait=wait, ready_timeout=ready_timeout)
                return
            except ServerExited:
                self.stop()
                # Another process took the free port between our probe and
                # capataz's bind: try a new one.
                if not (auto_port and self.http and "in use" in self.log().lower() and attempt < 2):
                    raise
                self.port = free_port()
                self.log_path = self.workdir / f"{name}-{self.port}.log"
            except BaseException:
                self.stop()
                raise

    # -- lifecycle ------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def argv(self) -> list[str]:
        argv = [str(capataz_bin())]
        if self.http:
            argv += [self.http, f"127.0.0.1:{self.port}"]
        return argv + self.args

    def start(self, wait: bool = True, ready_timeout: float = 20.0) -> None:
        binary = capataz_bin()
        if not binary.exists():
            raise AssertionError(
                f"capataz binary not found at {binary}; run `cargo build --release` or set CAPATAZ_BIN"
            )
        self._logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv(),
            cwd=self.workdir,
            env=clean_env(self.extra_env),
            stdin=subprocess.DEVNULL,
            stdout=self._logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so teardown can reap workers
        )
        LIVE.append(self)
        if wait:
            self.wait_ready(ready_timeout)

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerExited(
                    f"capataz exited with {self.proc.returncode} before serving.\n"
                    f"argv: {self.argv()}\n--- log ---\n{self.log()}"
                )
            data = probe_http(self.port, timeout=1.0)
            if data and data.startswith(b"HTTP/"):
                return
            time.sleep(0.05)
        raise AssertionError(
            f"capataz did not answer HTTP on port {self.port} within {timeout}s.\n"
            f"argv: {self.argv()}\n--- log ---\n{self.log()}"
        )

    def wait_exit(self, timeout: float) -> int:
        """Wait for the master to exit; returns its returncode."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"capataz did not exit within {timeout}s\n--- log ---\n{self.log()}"
            ) from None

    def signal(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def workers(self) -> list[int]:
        return children(self.pid)

    def wait_workers_loaded(self, n: int, timeout: float = 15.0) -> list[int]:
        """Wait until the master has exactly n children and each has logged
        that it loaded the app ("(pid: P) ready in"). The first answer on the
        port only proves one worker is up; a test that needs every worker
        serving, or that changes the app on disk, waits for this."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.workers()
            log = self.log()
            if len(pids) == n and all(f"(pid: {p}) ready in " in log for p in pids):
                return pids
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{n} loaded workers not seen within {timeout}s (children now {pids})\n"
                    f"--- log ---\n{log[-5000:]}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
        finally:
            # Workers left behind by a broken master: same process group.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            deadline = time.monotonic() + 3
            while group_members(self.proc.pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            self._logf.close()
            if self in LIVE:
                LIVE.remove(self)

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- log ------------------------------------------------------------
    def log(self) -> str:
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def mark(self) -> int:
        """Current log length in bytes; pass to log_since."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, mark: int) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(mark)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def wait_log(self, pattern: str, timeout: float = 5.0, since: int = 0, flags: int = 0) -> re.Match:
        """Wait until the log (from byte `since`) matches pattern."""
        rx = re.compile(pattern, flags)
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_since(since)
            m = rx.search(text)
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"log did not match {pattern!r} within {timeout}s\n--- log since mark ---\n{text[-5000:]}"
                )
            time.sleep(0.05)


def run_capataz(
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = 20.0,
) -> subprocess.CompletedProcess:
    """Run capataz to completion (it must exit by itself within timeout)."""
    binary = capataz_bin()
    if not binary.exists():
        raise AssertionError(f"capataz binary not found at {binary}")
    proc = subprocess.Popen(
        [str(binary)] + [str(a) for a in args],
        cwd=cwd or tempfile.mkdtemp(prefix="capataz-run-"),
        env=clean_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # The whole group: workers hold the pipes open too.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        out, err = proc.communicate(timeout=5)
        raise AssertionError(
            f"capataz {args} did not exit within {timeout}s\nstdout: {out[-3000:]!r}\nstderr: {err[-3000:]!r}"
        ) from None
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    )


def wait_file(path: Path, pattern: str, timeout: float = 5.0) -> re.Match:
    """Wait until the file at path (a logto file, say) matches pattern
    (multi-line: ^ and $ match at line ends)."""
    rx = re.compile(pattern, re.M)
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        m = rx.search(text)
        if m:
            return m
        time.sleep(0.05)
    raise AssertionError(f"{path} did not match {pattern!r}:\n{text[-4000:]}")


def fifo_write(path: Path, command: bytes, timeout: float = 5.0) -> None:
    """Write `command` to a `master-fifo`, waiting (up to timeout) until it
    exists and the master holds it open."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError:  # not created yet, or nobody reading (ENXIO)
            if time.monotonic() > deadline:
                raise AssertionError(f"cannot open master fifo {path} for writing") from None
            time.sleep(0.05)
    try:
        os.write(fd, command)
    finally:
        os.close(fd)
