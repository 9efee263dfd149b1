"""Helpers for tests of [program:x], [socket:x] and `capataz ctl`: write an
ini holding the web app plus extra sections, start it, and run `capataz ctl`
against its control socket."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

from .server import APPS, Server, capataz_bin, clean_env, free_port


def short_dir() -> Path:
    """A short temp dir: unix socket paths must stay under 108 bytes."""
    return Path(tempfile.mkdtemp(prefix="cz-", dir="/tmp"))


def start_with(
    server_factory,
    sections: str,
    *,
    extra: str = "",
    processes: int = 1,
    app: Path | None = None,
    wait: bool = True,
) -> tuple[Server, Path]:
    """Start capataz from an ini with the plain app and `sections`; returns
    the server and the control socket path."""
    d = short_dir()
    port = free_port()
    sock = d / "ctl.sock"
    ini = d / "app.ini"
    ini.write_text(
        f"[uwsgi]\nhttp = 127.0.0.1:{port}\nwsgi-file = {app or APPS / 'plain_app.py'}\n"
        f"processes = {processes}\ncontrol-socket = {sock}\n{extra}\n{sections}"
    )
    srv = server_factory(["--ini", str(ini)], http=None, port=port, workdir=d, wait=wait)
    srv.ini = ini
    srv.dir = d
    return srv, sock


def ctl(sock: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(capataz_bin()), "ctl", "--control-socket", str(sock), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(),
    )


def status(sock: Path) -> dict[str, dict]:
    r = ctl(sock, "status", "--json")
    assert r.returncode in (0, 3), r
    return {p["name"]: p for p in json.loads(r.stdout)["processes"]}


def wait_state(sock: Path, name: str, state: str, timeout: float = 15.0, seen: list | None = None) -> dict:
    """Poll `ctl status --json` until `name` is in `state`; records every
    state seen in `seen`."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = status(sock).get(name)
        if last and seen is not None and (not seen or seen[-1] != last["state"]):
            seen.append(last["state"])
        if last and last["state"] == state:
            return last
        time.sleep(0.05)
    raise AssertionError(f"{name} not {state} within {timeout}s: {last}")
