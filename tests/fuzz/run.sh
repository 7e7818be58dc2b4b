#!/usr/bin/env bash
# The cargo-fuzz targets in fuzz/ (see docs/security.md for what each covers).
#   tests/fuzz/run.sh build   install cargo-fuzz and a nightly toolchain if missing, build
#   tests/fuzz/run.sh run     run each target FUZZ_SECONDS (default 30) over its committed
#                             corpus; fails on the first crash, leak, timeout or OOM
# New inputs go to a scratch directory, never into fuzz/corpus (minimise and commit
# those by hand: `cargo +nightly fuzz cmin <target>`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
SECS="${FUZZ_SECONDS:-30}"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$ROOT/fuzz/target}"

build() {
    if ! rustup toolchain list | grep -q '^nightly'; then
        rustup toolchain install nightly --profile minimal
    fi
    if ! command -v cargo-fuzz >/dev/null 2>&1; then
        cargo install cargo-fuzz --locked
    fi
    (cd fuzz && cargo +nightly fuzz build -O)
}

run() {
    local work status=0
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' RETURN
    for t in $(cd fuzz && cargo +nightly fuzz list); do
        mkdir -p "$work/$t" "$work/artifacts/$t"
        printf '==> fuzz %s for %ss\n' "$t" "$SECS"
        # The committed corpus is read; new finds land in $work/$t.
        if ! (cd fuzz && cargo +nightly fuzz run -O "$t" "$work/$t" "corpus/$t" -- \
            -max_total_time="$SECS" -print_final_stats=1 -artifact_prefix="$work/artifacts/$t/" \
            >"$work/$t.log" 2>&1); then
            echo "error: fuzz target $t failed; its log:" >&2
            tail -n 60 "$work/$t.log" >&2
            mkdir -p "$ROOT/fuzz/artifacts/$t"
            cp -r "$work/artifacts/$t/." "$ROOT/fuzz/artifacts/$t/" 2>/dev/null || true
            status=1
        else
            grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$work/$t.log" | tr '\n' ' '
            echo
        fi
    done
    return "$status"
}

case "${1:-}" in
    build) build ;;
    run) run ;;
    *) echo "usage: $0 build|run" >&2; exit 2 ;;
esac
