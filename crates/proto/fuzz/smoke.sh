#!/usr/bin/env bash
# Fuzz smoke run for CI: builds every cargo-fuzz target of capataz-proto and runs each
# for a few seconds from the checked-in seeds. Exits non-zero if a build fails or a
# target finds a crash (the reproducer is kept under fuzz/artifacts/<target>/).
#
# Only the stable toolchain exists on our machines; cargo-fuzz needs nightly flags
# (-Zsanitizer), which RUSTC_BOOTSTRAP=1 unlocks on stable.
#
# Environment:
#   FUZZ_SECONDS     seconds per target (default 10)
#   FUZZ_TARGET_DIR  cargo target dir for the fuzz build (default fuzz/target); kept
#                    apart from the main workspace's, whose flags differ.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
seconds="${FUZZ_SECONDS:-10}"
target_dir="${FUZZ_TARGET_DIR:-$here/target}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz smoke: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

cd "$here/.."
targets=$(cargo fuzz list --fuzz-dir "$here")
echo "fuzz smoke: building $(echo $targets)" >&2
cargo fuzz build --fuzz-dir "$here" --target-dir "$target_dir"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failed=()
for target in $targets; do
    corpus="$work/corpus/$target"
    artifacts="$here/artifacts/$target"
    mkdir -p "$corpus" "$artifacts"
    echo "fuzz smoke: running $target for ${seconds}s" >&2
    # New corpus entries go to the throwaway dir (first corpus); the seeds are read only.
    if ! cargo fuzz run --fuzz-dir "$here" --target-dir "$target_dir" "$target" \
        "$corpus" "$here/seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="$artifacts/" -print_final_stats=1; then
        echo "fuzz smoke: $target FAILED; reproducer in $artifacts" >&2
        failed+=("$target")
    fi
done

if ((${#failed[@]})); then
    echo "fuzz smoke: failed targets: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz smoke: all targets ran ${seconds}s without a crash" >&2
