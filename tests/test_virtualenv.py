"""Virtualenv activation and the import environment (issue 2 item 6).

`--virtualenv DIR` (aliases --venv, --home) makes a `python -m venv` venv's
packages importable the way its own bin/python would; a venv of another
Python minor version is a clear error; --chdir, --pythonpath and --env apply
before the app is imported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from support.server import APPS

PYVER = f"python{sys.version_info.major}.{sys.version_info.minor}"
BASE_PYTHON = Path(sys.base_prefix) / "bin" / PYVER  # the pyenv 3.11 capataz embeds


def make_venv(path: Path) -> Path:
    python = str(BASE_PYTHON) if BASE_PYTHON.exists() else (shutil.which("python3") or sys.executable)
    subprocess.run([python, "-m", "venv", "--without-pip", str(path)], check=True, timeout=60)
    site = path / "lib" / PYVER / "site-packages"
    assert site.is_dir(), f"{site} missing"
    (site / "venvmarker.py").write_text('MARK = "from-the-venv"\n')
    return path


@pytest.fixture(scope="module")
def marker_venv(tmp_path_factory) -> Path:
    return make_venv(tmp_path_factory.mktemp("venv") / "v")


def venv_sys_path(venv: Path) -> list[str]:
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sys, json; print(json.dumps(sys.path))"],
        check=True, capture_output=True, text=True, timeout=30,
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize("flag", ["--virtualenv", "--venv", "--home"])
def test_virtualenv_activates_site_packages(server_factory, marker_venv, flag):
    """Issue 2 item 6: with --virtualenv (or its aliases), the venv's
    site-packages is importable and sys.prefix is the venv."""
    s = server_factory(["--wsgi-file", APPS / "venv_app.py", flag, marker_venv])
    got = requests.get(s.url, timeout=5).json()
    real = os.path.realpath(marker_venv)
    assert os.path.realpath(got["prefix"]) == real
    assert got["mark"] == "from-the-venv"
    assert os.path.realpath(got["marker"]).startswith(os.path.join(real, "lib", PYVER, "site-packages"))
    assert got["version"][:2] == list(sys.version_info[:2])


def test_virtualenv_site_packages_match_its_own_python(server_factory, marker_venv):
    """Issue 2 item 6: "the way its own bin/python would": the same
    site-packages directories on sys.path (and not the base Python's, since
    the venv does not include system site-packages)."""
    s = server_factory(["--wsgi-file", APPS / "venv_app.py", "--virtualenv", marker_venv])
    got = requests.get(s.url, timeout=5).json()

    def sites(paths):
        return {os.path.realpath(p) for p in paths if p.endswith("site-packages")}

    assert sites(got["path"]) == sites(venv_sys_path(marker_venv))


def test_without_virtualenv_import_fails(server_factory):
    """Without --virtualenv the venv-only module is missing: boot fails, non-zero exit."""
    s = server_factory(["--wsgi-file", APPS / "venv_app.py"], wait=False)
    rc = s.wait_exit(15)
    assert rc > 0, rc
    assert "ModuleNotFoundError" in s.log()
    assert "venvmarker" in s.log()


def test_venv_of_other_minor_version_is_a_clear_error(server_factory, marker_venv, tmp_path):
    """Issue 2 item 6: a venv made by another minor version gets a clear error
    naming both versions, and a normal non-zero exit (not a crash by signal)."""
    fake = tmp_path / "venv310"
    shutil.copytree(marker_venv, fake, symlinks=True)
    cfg = fake / "pyvenv.cfg"
    lines = []
    for line in cfg.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if key == "version":
            line = "version = 3.10.12"
        elif key == "version_info":
            line = "version_info = 3.10.12.final.0"
        lines.append(line)
    cfg.write_text("\n".join(lines) + "\n")
    (fake / "lib" / PYVER).rename(fake / "lib" / "python3.10")
    s = server_factory(["--wsgi-file", APPS / "venv_app.py", "--virtualenv", fake], wait=False)
    rc = s.wait_exit(15)
    assert rc > 0, f"expected a plain non-zero exit, got {rc} (negative = killed by a signal)"
    log = s.log()
    assert "3.10" in log and "3.11" in log, log[-3000:]
    assert "panicked" not in log and "Segmentation" not in log


def test_missing_virtualenv_dir_is_an_error(server_factory, tmp_path):
    """A --virtualenv that does not exist is refused with a message naming it."""
    missing = tmp_path / "no-such-venv"
    s = server_factory(["--wsgi-file", APPS / "plain_app.py", "--virtualenv", missing], wait=False)
    rc = s.wait_exit(15)
    assert rc > 0
    assert "no-such-venv" in s.log()


def test_chdir_pythonpath_env_apply_before_import(server_factory, tmp_path):
    """Issue 2 item 6: chdir, pythonpath (repeated) and env (repeated) are in
    place when the app module is imported."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "startup_helper.py").write_text("HELPER = True\n")
    s = server_factory(
        [
            "--chdir", workdir,
            "--pythonpath", APPS,
            "--pythonpath", extra,
            "--env", "STARTUP_FOO=bar",
            "--env", "STARTUP_BAR=a=b",
            "--module", "startup_app:application",
        ]
    )
    got = requests.get(s.url, timeout=5).json()
    assert os.path.realpath(got["cwd"]) == os.path.realpath(workdir)
    paths = {os.path.realpath(p) for p in got["path"] if p}
    assert os.path.realpath(APPS) in paths
    assert os.path.realpath(extra) in paths
    assert got["helper"] and os.path.realpath(got["helper"]).startswith(os.path.realpath(extra))
    assert got["foo"] == "bar"
    assert got["bar"] == "a=b"


def test_relative_wsgi_file_resolved_after_chdir(server_factory):
    """uWSGI semantics: --chdir happens first, so a relative --wsgi-file is
    found in that directory."""
    s = server_factory(["--chdir", APPS, "--wsgi-file", "callables_app.py", "--callable", "app_cli"])
    assert requests.get(s.url, timeout=5).content == b"cli"


def test_ini_virtualenv_pythonpath_env(server_factory, marker_venv, tmp_path):
    """The same options from an ini file: `home`, and `pythonpath` and `env` repeated."""
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "startup_helper.py").write_text("HELPER = True\n")
    ini = tmp_path / "deploy.ini"
    ini.write_text(
        "[uwsgi]\n"
        f"home = {marker_venv}\n"
        f"pythonpath = {APPS}\n"
        f"pythonpath = {extra}\n"
        "module = startup_app:application\n"
        "env = STARTUP_FOO=one\n"
        "env = STARTUP_BAR=two\n"
    )
    s = server_factory(["--ini", ini])
    got = requests.get(s.url, timeout=5).json()
    assert os.path.realpath(got["prefix"]) == os.path.realpath(marker_venv)
    assert got["helper"] and os.path.realpath(got["helper"]).startswith(os.path.realpath(extra))
    assert (got["foo"], got["bar"]) == ("one", "two")
