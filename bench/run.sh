#!/usr/bin/env bash
# capataz benchmark entry point. Installs what the benchmark needs (wrk and
# nginx from apt, libev-dev for bjoern; the Python peers pinned in
# requirements.txt into bench/.venv), then runs bench.py with the venv's python.
#
#   bench/run.sh                                  # everything, ~10-15 min
#   SERVERS=capataz,bjoern WORKLOADS=hello,get10k DURATION=5 bench/run.sh
#   CAPATAZ_BIN=/path/to/capataz bench/run.sh
#   GRANIAN_TUNE=0 GRANIAN_OPTS="--runtime-mode st" bench/run.sh
#
# See bench/RESULTS.md for the method. Output goes to stdout and to
# bench/results-<date>.md.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

need_apt=()
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
dpkg -s libev-dev >/dev/null 2>&1 || need_apt+=(libev-dev)
command -v taskset >/dev/null 2>&1 || need_apt+=(util-linux)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing from apt: ${need_apt[*]}" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq >&2
    # nginx is optional: do not fail the run if it cannot be installed.
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >&2 || {
        rest=("${need_apt[@]/nginx/}")
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ${rest[@]} >&2
    }
fi

PY="${PYTHON:-python3}"
stamp=".venv/.installed"
if [ ! -x .venv/bin/python ] || ! cmp -s requirements.txt "$stamp" 2>/dev/null; then
    echo "setting up bench/.venv from requirements.txt" >&2
    [ -x .venv/bin/python ] || "$PY" -m venv .venv
    .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt >&2
    cp requirements.txt "$stamp"
fi

exec .venv/bin/python bench.py "$@"
