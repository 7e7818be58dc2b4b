"""Helpers for the Python module suite: free ports and `lockana server` processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
HEALTH_WAIT_S = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lockana_binary() -> Path:
    p = Path(os.environ.get("LOCKANA_BIN", "target/debug/lockana"))
    if not p.is_absolute():
        p = REPO_ROOT / p
    if not (p.is_file() and os.access(p, os.X_OK)):
        pytest.fail(
            f"Lockana binary not found at {p}; build it with `cargo build -p lockana-server` "
            "or set LOCKANA_BIN",
            pytrace=False,
        )
    return p


@dataclass
class Server:
    addr: str
    proc: subprocess.Popen
    log_path: Path

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "<no log>"

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)


def health(addr: str) -> Optional[dict]:
    try:
        with urllib.request.urlopen(f"{addr}/v1/sys/health", timeout=2) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        with e:
            return json.loads(e.read() or b"{}")
    except (OSError, ValueError):
        return None


def start_server(args: list, port: int, log_path: Path) -> Server:
    """Starts ``lockana`` with ``args`` and waits until it answers sys/health unsealed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(lockana_binary()), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    srv = Server(f"http://127.0.0.1:{port}", proc, log_path)
    deadline = time.monotonic() + HEALTH_WAIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        h = health(srv.addr)
        if h is not None and h.get("sealed") is False:
            return srv
        time.sleep(0.1)
    srv.stop()
    raise RuntimeError(f"lockana server did not come up unsealed at {srv.addr}\n{srv.log_tail()}")
