"""Shared fixtures for the integration suite: they start the real capataz binary.

The binary is $CAPATAZ_BIN or <repo>/target/release/capataz (scripts/test.sh
builds it).  Apps live in tests/apps/; Flask and Django come from
<repo>/.venv-test, which capataz activates with --virtualenv.
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.server import APPS, LIVE, REPO, VENV_TEST, Server  # noqa: E402

# 200 slow clients plus their server halves need more than the usual 1024
# descriptors; the servers we spawn inherit this limit.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
_want = 8192 if _hard == resource.RLIM_INFINITY else min(8192, _hard)
if _soft != resource.RLIM_INFINITY and _soft < _want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (_want, _hard))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def apps() -> Path:
    return APPS


@pytest.fixture(scope="session")
def venv_test() -> Path:
    """The test virtualenv with Flask and Django (made by scripts/test.sh)."""
    if not (VENV_TEST / "bin" / "python").exists():
        pytest.fail(f"{VENV_TEST} is missing: run `bash scripts/test.sh` to create it")
    return VENV_TEST


@pytest.fixture
def server_factory(tmp_path):
    """Start servers inside a test; all are stopped when the test ends."""
    started: list[Server] = []

    def make(args, **kw) -> Server:
        kw.setdefault("workdir", tmp_path / f"srv{len(started)}")
        srv = Server(args, **kw)
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the tail of every running server's log to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and LIVE:
        for srv in list(LIVE):
            report.sections.append((f"capataz log ({srv.name} :{srv.port})", srv.log()[-6000:]))

