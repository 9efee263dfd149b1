"""The release binary is laid out for a small worker RSS (build.rs).

A worker is a fresh exec of the binary, so every page of it that the worker
touches is in its RSS. build.rs asks lld for packed relative relocations and
for the order in link/capataz.order (scripts/symbol_order.py), which puts the
functions a worker runs next to each other. These tests check that the build
did both, and that the order file still names the binary's functions: it goes
stale when worker code is renamed, and then this fails and says how to renew
it. (The RSS itself is measured by bench/, not asserted here.)
"""

from __future__ import annotations

import platform
import subprocess

import pytest

from support.server import REPO, capataz_bin

ORDER = REPO / "link" / "capataz.order"
MASTER_MARK = "# master-only functions from here"

pytestmark = pytest.mark.skipif(
    platform.machine() != "x86_64" or platform.system() != "Linux",
    reason="build.rs shapes the layout only on x86_64-unknown-linux-gnu (rustc's lld)",
)


def order_names() -> tuple[list[str], list[str]]:
    worker, master, into = [], [], None
    for line in ORDER.read_text().splitlines():
        if line.strip() == MASTER_MARK:
            into = master
            continue
        if not line.strip() or line.startswith("#"):
            continue
        (worker if into is None else master).append(line.strip())
    return worker, master


def defined_functions() -> dict[str, int]:
    out = subprocess.run(["nm", "--defined-only", str(capataz_bin())], capture_output=True, text=True, check=True)
    funcs = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tT":
            funcs[parts[2]] = int(parts[0], 16)
    return funcs


def test_relative_relocations_are_packed():
    dynamic = subprocess.run(["readelf", "-d", str(capataz_bin())], capture_output=True, text=True, check=True).stdout
    assert "(RELR)" in dynamic, "build.rs should link with -z pack-relative-relocs"
    sections = subprocess.run(["readelf", "-SW", str(capataz_bin())], capture_output=True, text=True, check=True).stdout
    rela = [line for line in sections.splitlines() if " .rela.dyn " in line]
    assert rela, sections
    size = int(rela[0].split()[5], 16)
    assert size < 64 * 1024, f".rela.dyn is {size} bytes: relative relocations were not packed"


def test_order_file_names_the_binarys_functions():
    worker, master = order_names()
    assert len(worker) > 100 and len(master) > 50, "link/capataz.order looks truncated"
    funcs = defined_functions()
    missing = [n for n in worker if n not in funcs]
    assert len(missing) <= len(worker) // 10, (
        f"{len(missing)} of the {len(worker)} worker functions in link/capataz.order are no longer in the "
        f"binary (first: {missing[:3]}); renew it: cargo build --release && python3 scripts/symbol_order.py"
    )


def test_worker_functions_are_first_and_in_order():
    worker, master = order_names()
    funcs = defined_functions()
    placed = [(n, funcs[n]) for n in worker + master if n in funcs]
    for (a, addr_a), (b, addr_b) in zip(placed, placed[1:]):
        assert addr_a <= addr_b, f"{b} is placed before {a}: the build did not use link/capataz.order"
    # Every worker function sits below every function the order file does
    # not name, so the worker's code shares as few pages as it can.
    listed = set(worker) | set(master)
    last_worker = max(funcs[n] for n in worker if n in funcs)
    unlisted_below = [n for n, addr in funcs.items() if n not in listed and addr < last_worker]
    # lld keeps a few sections it cannot reorder (the C runtime's) ahead.
    assert len(unlisted_below) < 50, unlisted_below[:10]
