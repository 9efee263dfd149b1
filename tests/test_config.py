"""Configuration: one option table feeding the CLI, ini files and CAPATAZ_*
environment variables (DESIGN §4; issue 2 item 1).

Precedence is defaults < ini < env < CLI; unknown options exit 64 naming the
file, line and option with a did-you-mean; options from uWSGI that capataz
does not implement yet are refused by name.
"""

from __future__ import annotations

import re
import sys
import time
import tomllib

import pytest
import requests

from support.rawhttp import get
from support.server import APPS, REPO, children, free_port, probe_http, run_capataz

CALLABLES = APPS / "callables_app.py"

OPTIONS = [
    "http", "http-socket", "module", "wsgi-file", "callable", "chdir", "pythonpath", "env",
    "virtualenv", "processes", "threads", "listen", "post-buffering", "limit-post",
    "buffer-size", "header-timeout", "body-timeout", "send-timeout", "keepalive-timeout",
    "worker-connections", "worker-reload-mercy", "disable-logging", "ini", "help",
    "version", "print-config",
]
ALIASES = ["venv", "home", "workers", "keep-alive"]


def flag_rx(name: str) -> str:
    # "--http" must not be satisfied by "--http-socket"
    return rf"--{re.escape(name)}(?![\w-])"


def nonempty_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def cargo_version() -> str:
    with open(REPO / "Cargo.toml", "rb") as f:
        return tomllib.load(f)["package"]["version"]


# --- --help / --version / --print-config --------------------------------------


def test_help_lists_every_option():
    """Issue 2 item 1: --help is generated from the option table, so it names every option."""
    r = run_capataz(["--help"])
    assert r.returncode == 0, r.stderr
    missing = [o for o in OPTIONS if not re.search(flag_rx(o), r.stdout)]
    assert not missing, f"--help does not list {missing}\n{r.stdout}"


def test_help_lists_aliases():
    """DESIGN §4: each table entry has its aliases; --help shows them."""
    r = run_capataz(["--help"])
    assert r.returncode == 0
    missing = [o for o in ALIASES if not re.search(flag_rx(o), r.stdout)]
    assert not missing, f"--help does not list aliases {missing}\n{r.stdout}"


def test_version_names_capataz_and_embedded_python():
    """DESIGN §8: --version prints capataz's version and the embedded Python's."""
    r = run_capataz(["--version"])
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert "capataz" in out.lower()
    assert cargo_version() in out
    assert "3.11" in out


def test_version_shows_the_build_pythons_prefix():
    """DESIGN §8: the binary loads the libpython it was built against (rpath),
    so the prefix it prints is that Python's (pyenv's), not Debian's."""
    r = run_capataz(["--version"])
    assert r.returncode == 0
    assert sys.base_prefix in r.stdout + r.stderr, (sys.base_prefix, r.stdout)


def test_print_config_shows_resolved_values():
    """--print-config prints the resolved configuration and exits 0."""
    r = run_capataz(
        ["--http", f"127.0.0.1:{free_port()}", "--wsgi-file", APPS / "plain_app.py",
         "--processes", "3", "--threads", "5", "--print-config"]
    )
    assert r.returncode == 0, r.stderr
    assert re.search(r"processes\W+3\b", r.stdout), r.stdout
    assert re.search(r"threads\W+5\b", r.stdout), r.stdout


# --- precedence -----------------------------------------------------------


def write_ini(path, body: str):
    path.write_text(body)
    return path


@pytest.mark.parametrize(
    "use_ini,use_env,use_cli,expected",
    [
        (False, False, False, b"default"),
        (True, False, False, b"ini"),
        (True, True, False, b"env"),
        (True, True, True, b"cli"),
        (False, True, True, b"cli"),
    ],
    ids=["default", "ini-over-default", "env-over-ini", "cli-over-env-and-ini", "cli-over-env"],
)
def test_precedence_defaults_ini_env_cli(server_factory, tmp_path, use_ini, use_env, use_cli, expected):
    """DESIGN §4: defaults < ini < env < CLI, shown with `callable`.  --ini is
    placed last on the command line, so the CLI wins by source, not by position."""
    args = ["--wsgi-file", CALLABLES]
    if use_cli:
        args += ["--callable", "app_cli"]
    if use_ini:
        ini = write_ini(tmp_path / "deploy.ini", "[capataz]\ncallable = app_ini\n")
        args += ["--ini", ini]
    env = {"CAPATAZ_CALLABLE": "app_env"} if use_env else {}
    s = server_factory(args, env=env)
    assert requests.get(s.url, timeout=5).content == expected


def test_ini_section_selection(server_factory, tmp_path):
    """Issue 2 item 1: `--ini FILE:section` reads that section instead."""
    ini = write_ini(
        tmp_path / "multi.ini",
        f"[capataz]\nwsgi-file = {CALLABLES}\ncallable = app_ini\n\n"
        f"[staging]\nwsgi-file = {CALLABLES}\ncallable = app_section\n",
    )
    s = server_factory(["--ini", f"{ini}:staging"])
    assert requests.get(s.url, timeout=5).content == b"section"


def test_uwsgi_ini_serves(server_factory, tmp_path):
    """Issue 2: an existing uwsgi.ini works as it is: [uwsgi] section with
    http, module, processes, threads and `master = true` (accepted, no effect)."""
    port = free_port()
    ini = write_ini(
        tmp_path / "uwsgi.ini",
        "[uwsgi]\n"
        f"http = 127.0.0.1:{port}\n"
        f"pythonpath = {APPS}\n"
        "module = plain_app:application\n"
        "master = true\n"
        "processes = 2\n"
        "threads = 4\n",
    )
    s = server_factory(["--ini", ini], http=None, port=port)
    assert get(s.port, "/hello").body == b"Hello, World!"
    env = requests.get(f"{s.url}/environ", timeout=5).json()
    assert env["wsgi.multiprocess"] == ["bool", True]
    assert env["wsgi.multithread"] == ["bool", True]
    assert len(children(s.pid)) == 2


def test_env_var_sets_option(server_factory):
    """DESIGN §4: CAPATAZ_PROCESSES=2 works like --processes 2."""
    s = server_factory(["--wsgi-file", APPS / "plain_app.py"], env={"CAPATAZ_PROCESSES": "2"})
    deadline = time.monotonic() + 10
    while len(children(s.pid)) != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(children(s.pid)) == 2


def test_http_repeats(server_factory):
    """Issue 2 item 1: --http repeats; every listener serves."""
    second = free_port()
    s = server_factory(["--http", f"127.0.0.1:{second}", "--wsgi-file", APPS / "plain_app.py"])
    assert get(s.port, "/hello").body == b"Hello, World!"
    assert get(second, "/hello").body == b"Hello, World!"


def test_http_socket(server_factory):
    """--http-socket ADDR serves HTTP on that address too."""
    s = server_factory(["--wsgi-file", APPS / "plain_app.py"], http="--http-socket")
    assert get(s.port, "/hello").body == b"Hello, World!"


def test_module_with_callable(server_factory):
    """--module pkg.mod:callable, found through --pythonpath."""
    s = server_factory(["--pythonpath", APPS, "--module", "callables_app:app_cli"])
    assert get(s.port, "/").body == b"cli"


def test_module_default_callable(server_factory):
    """--module without ':callable' uses `application` (or --callable)."""
    s = server_factory(["--pythonpath", APPS, "--module", "callables_app"])
    assert get(s.port, "/").body == b"default"


def test_wsgi_file_with_callable(server_factory):
    """--wsgi-file PATH --callable NAME."""
    s = server_factory(["--wsgi-file", CALLABLES, "--callable", "app_section"])
    assert get(s.port, "/").body == b"section"


def test_listen_and_worker_connections_accepted(server_factory):
    """--listen and --worker-connections are real options (values accepted)."""
    s = server_factory(["--wsgi-file", APPS / "plain_app.py", "--listen", "512", "--worker-connections", "300"])
    assert get(s.port, "/hello").status == 200


# --- errors ---------------------------------------------------------------


def assert_config_error(r, *patterns):
    assert r.returncode == 64, f"exit {r.returncode}, expected 64 (EX_USAGE)\nstderr: {r.stderr}"
    lines = nonempty_lines(r.stderr)
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{r.stderr}"
    for p in patterns:
        assert re.search(p, lines[0]), f"{p!r} not in {lines[0]!r}"


def test_ini_typo_did_you_mean(tmp_path):
    """DESIGN §4 / §2.6: an unknown ini key -> exit 64, FILE:LINE, did-you-mean."""
    ini = write_ini(
        tmp_path / "deploy.ini",
        f"[capataz]\nwsgi-file = {APPS / 'plain_app.py'}\n# comment\nprocesess = 2\n",
    )
    r = run_capataz(["--ini", ini, "--http", f"127.0.0.1:{free_port()}"])
    assert_config_error(r, r"deploy\.ini:4\b", r"procesess", r"did you mean '?(--)?processes\b")


def test_ini_typo_in_uwsgi_section(tmp_path):
    """Same for the [uwsgi] section: uWSGI ignores typos silently, capataz does not."""
    ini = write_ini(tmp_path / "uwsgi.ini", "[uwsgi]\nmodule = x:y\nthreds = 2\n")
    r = run_capataz(["--ini", ini])
    assert_config_error(r, r"uwsgi\.ini:3\b", r"did you mean '?(--)?threads\b")


def test_cli_typo_did_you_mean():
    """DESIGN §4: an unknown CLI flag -> exit 64 with a did-you-mean."""
    r = run_capataz(["--wsgi-file", APPS / "plain_app.py", "--thread", "2"])
    assert_config_error(r, r"(?<![\w-])(--)?thread(?!\w)", r"did you mean '?(--)?threads\b")


def test_env_typo_did_you_mean():
    """DESIGN §4: an unknown CAPATAZ_* variable -> exit 64 with a did-you-mean."""
    r = run_capataz(["--wsgi-file", APPS / "plain_app.py"], env={"CAPATAZ_PROCESES": "2"})
    assert_config_error(r, r"CAPATAZ_PROCESES", r"did you mean '?(CAPATAZ_PROCESSES|(--)?processes)\b")


def test_uwsgi_option_not_supported_yet(tmp_path):
    """DESIGN §4: uWSGI options not implemented yet are refused by name."""
    ini = write_ini(tmp_path / "deploy.ini", f"[uwsgi]\nwsgi-file = {APPS / 'plain_app.py'}\noffload-threads = 2\n")
    r = run_capataz(["--ini", ini])
    assert_config_error(r, r"deploy\.ini:3\b", r"offload-threads", r"not supported yet")


def test_bad_value_in_ini(tmp_path):
    """A value of the wrong type is a config error with file:line and option."""
    ini = write_ini(tmp_path / "deploy.ini", f"[capataz]\nwsgi-file = {APPS / 'plain_app.py'}\nthreads = lots\n")
    r = run_capataz(["--ini", ini])
    assert_config_error(r, r"deploy\.ini:3\b", r"threads")


def test_bad_value_on_cli():
    """A value of the wrong type on the command line: exit 64 naming the option."""
    r = run_capataz(["--wsgi-file", APPS / "plain_app.py", "--processes", "many"])
    assert_config_error(r, r"processes")


def test_missing_ini_file(tmp_path):
    """A missing --ini file is refused before anything starts (64, or 66 EX_NOINPUT)."""
    r = run_capataz(["--ini", tmp_path / "nope.ini"])
    assert r.returncode in (64, 66), r
    assert "nope.ini" in r.stderr


def test_config_error_binds_nothing(tmp_path):
    """Conventions (linkerd2-proxy): config errors exit before any port is bound."""
    port = free_port()
    r = run_capataz(["--http", f"127.0.0.1:{port}", "--wsgi-file", APPS / "plain_app.py", "--thread", "2"])
    assert r.returncode == 64
    assert probe_http(port, timeout=0.5) is None


def test_print_config_reflects_precedence(tmp_path):
    """--print-config shows the value after precedence (CLI over env over ini)."""
    ini = write_ini(
        tmp_path / "deploy.ini",
        f"[capataz]\nhttp = 127.0.0.1:{free_port()}\nwsgi-file = {CALLABLES}\nthreads = 3\nprocesses = 3\n",
    )
    r = run_capataz(["--ini", ini, "--processes", "5", "--print-config"], env={"CAPATAZ_THREADS": "7"})
    assert r.returncode == 0, r.stderr
    assert re.search(r"processes\W+5\b", r.stdout), r.stdout
    assert re.search(r"threads\W+7\b", r.stdout), r.stdout
