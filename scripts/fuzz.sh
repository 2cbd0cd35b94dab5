#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time, for CI and by hand.
#
#   scripts/fuzz.sh [seconds-per-target]      (default 60)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain
# (`rustup toolchain install nightly`). FUZZ_TARGETS="a b" picks targets;
# FUZZ_TOOLCHAIN overrides "nightly". New inputs go to fuzz/work/<target>
# (ignored by git); the seeds in fuzz/corpus/<target> are only read. A crash
# is saved in fuzz/artifacts/<target>/ and makes the script exit 1 after the
# other targets ran; copy the input into fuzz/corpus/<target>/ once fixed, so
# that `cargo test --test ltx_fuzz_replay` keeps it fixed.
set -uo pipefail

secs="${1:-60}"
toolchain="${FUZZ_TOOLCHAIN:-nightly}"
cd "$(dirname "$0")/../fuzz" || exit 2

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is missing: cargo install cargo-fuzz" >&2
    exit 2
fi
if ! cargo "+$toolchain" --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo fuzz needs nightly: rustup toolchain install nightly" >&2
    echo "fuzz.sh: on stable, cargo test --test ltx_fuzz_replay replays the seeds" >&2
    exit 2
fi

targets="$(echo ${FUZZ_TARGETS:-$(cargo "+$toolchain" fuzz list)})"
cargo "+$toolchain" fuzz build || exit 2

failed=()
for t in $targets; do
    case "$t" in
        config_url) max_len=1024 ;;
        *) max_len=16384 ;;
    esac
    mkdir -p "work/$t"
    echo "== $t: ${secs}s"
    if ! cargo "+$toolchain" fuzz run "$t" "work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -max_len="$max_len" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1; then
        failed+=("$t")
    fi
done

if ((${#failed[@]})); then
    echo "fuzz.sh: crashes in: ${failed[*]} (see fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz.sh: no crash in $targets (${secs}s each)"
