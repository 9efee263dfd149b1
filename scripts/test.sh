#!/usr/bin/env bash
# The one command that checks everything (README: `bash scripts/test.sh`):
# installs the test dependencies it needs, then runs rustfmt, clippy, the
# unit tests, the fuzz smoke run (when present), a release build, and the
# integration suite in tests/ against that build.  .ci/run calls this.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# --- system packages (nginx is used by later integration tests) -----------
if ! command -v nginx >/dev/null 2>&1; then
    step "installing nginx"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q nginx; then
        apt-get update -q
        apt-get install -y -q nginx
    fi
fi

# Headless Chromium loads the stats dashboard in tests/test_dashboard.py.
if ! command -v chromium >/dev/null 2>&1; then
    step "installing chromium"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q chromium; then
        apt-get update -q
        apt-get install -y -q chromium
    fi
fi

# --- Python test environment ----------------------------------------------
# .venv-test holds pytest, requests, Flask and Django.  capataz embeds the
# python3 on PATH (pyenv's 3.11), and tests activate this venv with
# --virtualenv, so it must be made by that same interpreter.
PYTHON=${PYTHON:-python3}
want_version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ -x .venv-test/bin/python ]; then
    have_version=$(.venv-test/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo none)
    if [ "$have_version" != "$want_version" ]; then
        step "recreating .venv-test (was Python $have_version, want $want_version)"
        rm -rf .venv-test
    fi
fi
if [ ! -x .venv-test/bin/python ]; then
    step "creating .venv-test with $PYTHON"
    "$PYTHON" -m venv .venv-test
fi
step "installing tests/requirements.txt"
.venv-test/bin/python -m pip install -q --disable-pip-version-check -r tests/requirements.txt

# --- Rust -----------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test"
cargo test --workspace

if [ -f crates/proto/fuzz/smoke.sh ]; then
    step "fuzz smoke run"
    bash crates/proto/fuzz/smoke.sh
fi

step "cargo build --release"
cargo build --release

# --- integration suite (last, so the script ends with pytest's summary) ----
ulimit -n 8192 2>/dev/null || true
export CAPATAZ_BIN="$PWD/target/release/capataz"
step "integration tests (pytest)"
exec .venv-test/bin/python -m pytest tests/ -v -rs -p no:cacheprovider --timeout=120
