#!/usr/bin/env python3
"""In-process vs HTTP: one KV v2 read from Python, three ways.

* ``lockana`` in-process — ``vault.kv().get("bench")`` on a ``lockana.Vault.dev()``
  (the pyo3 module: no socket, no JSON text, GIL released inside the vault);
* ``hvac`` over HTTP — ``read_secret_version`` against ``lockana server --dev`` on
  loopback (keep-alive session, as apps use it);
* ``lockana.Client`` over HTTP — the stdlib client (one connection per request).

A benchmark, not a test: it prints per-call latency and the in-process speed-up.
Needs the module and hvac in the interpreter (``tests/run-all.sh`` sets up ``.venv``)::

    cargo build --release -p lockana-server
    .venv/bin/python bench/python_inprocess.py --lockana-bin target/release/lockana
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable, Dict, List

import hvac

import lockana

ROOT = Path(__file__).resolve().parents[1]
SECRET = {"username": "app", "password": "correct-horse-battery-staple", "port": 5432}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_dev_server(binary: Path) -> "tuple[subprocess.Popen, str]":
    port = free_port()
    addr = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(binary), "server", "--dev", "--dev-root-token-id", "root",
         "--dev-listen-address", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "warn"}, start_new_session=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{addr}/v1/sys/health", timeout=1):
                return proc, addr
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"lockana server did not start ({binary})")


def measure(fn: Callable[[], object], n: int, warmup: int) -> Dict[str, float]:
    for _ in range(warmup):
        fn()
    samples: List[int] = []
    clock = time.perf_counter_ns
    start = clock()
    for _ in range(n):
        t0 = clock()
        fn()
        samples.append(clock() - t0)
    total = clock() - start
    samples.sort()
    us = lambda ns: ns / 1000.0  # noqa: E731
    return {
        "n": n,
        "mean_us": us(total / n),
        "p50_us": us(samples[n // 2]),
        "p99_us": us(samples[min(n - 1, int(n * 0.99))]),
        "ops_per_s": n / (total / 1e9),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_bin = ROOT / "target/release/lockana"
    if not default_bin.exists():
        default_bin = ROOT / "target/debug/lockana"
    ap.add_argument("--lockana-bin", type=Path, default=Path(os.environ.get("LOCKANA_BIN", default_bin)))
    ap.add_argument("-n", type=int, default=20000, help="in-process reads")
    ap.add_argument("--http-n", type=int, default=2000, help="reads over HTTP")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()

    results: Dict[str, Dict[str, float]] = {}

    with lockana.Vault.dev() as vault:
        vault.kv().put("bench", SECRET)
        assert vault.kv().get("bench") == SECRET
        results["lockana in-process vault.kv().get()"] = measure(
            lambda: vault.kv().get("bench"), args.n, args.n // 10)
        kv = vault.kv()
        results["lockana in-process kv.get() (KV object kept)"] = measure(
            lambda: kv.get("bench"), args.n, args.n // 10)

    proc, addr = start_dev_server(args.lockana_bin)
    try:
        client = hvac.Client(url=addr, token="root")
        client.secrets.kv.v2.create_or_update_secret(path="bench", secret=SECRET, mount_point="secret")
        read = lambda: client.secrets.kv.v2.read_secret_version(  # noqa: E731
            path="bench", mount_point="secret", raise_on_deleted_version=True)
        assert read()["data"]["data"] == SECRET
        results["hvac over HTTP (lockana server --dev)"] = measure(read, args.http_n, args.http_n // 10)
        lc = lockana.Client(addr, token="root")
        lkv = lc.kv()
        assert lkv.get("bench") == SECRET
        results["lockana.Client over HTTP (urllib)"] = measure(
            lambda: lkv.get("bench"), args.http_n, args.http_n // 10)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)

    inproc = results["lockana in-process vault.kv().get()"]["mean_us"]
    hvac_us = results["hvac over HTTP (lockana server --dev)"]["mean_us"]
    info = {
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus",
        "server_binary": str(args.lockana_bin),
        "speedup_inprocess_vs_hvac": hvac_us / inproc,
        "speedup_inprocess_vs_hvac_p50": results["hvac over HTTP (lockana server --dev)"]["p50_us"]
        / results["lockana in-process vault.kv().get()"]["p50_us"],
    }
    if args.json:
        print(json.dumps({"info": info, "results": results}, indent=2))
        return 0
    print(f"python {info['python']} on {info['machine']}; server {args.lockana_bin}")
    print(f"{'read of one KV v2 secret':48} {'mean µs':>9} {'p50 µs':>9} {'p99 µs':>9} {'ops/s':>10}")
    for name, r in results.items():
        print(f"{name:48} {r['mean_us']:9.1f} {r['p50_us']:9.1f} {r['p99_us']:9.1f} {r['ops_per_s']:10.0f}")
    print(
        f"\nin-process vault.kv().get() is {info['speedup_inprocess_vs_hvac']:.0f}x faster than hvac "
        f"over HTTP by mean, {info['speedup_inprocess_vs_hvac_p50']:.0f}x by median"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
