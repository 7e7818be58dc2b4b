"""Process hardening of a running `lockana server` (issue 13), read from /proc.

What Vault's `disable_mlock` guards and more: no core dumps (RLIMIT_CORE 0, soft
and hard), not dumpable (the kernel then gives the process's /proc files to root:
the same uid can neither ptrace it nor read /proc/<pid>/mem), memory locked where
permitted (CAP_IPC_LOCK or an unlimited memlock limit) and a clear warning where not,
and `disable_mlock = true` honoured.

Run as root (as CI does), the not-dumpable and not-permitted cases start the server
as `nobody`, which has neither CAP_IPC_LOCK nor an unlimited memlock limit.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534
IS_ROOT = os.geteuid() == 0


def lockana_bin() -> Path:
    p = Path(os.environ.get("LOCKANA_BIN", "target/debug/lockana"))
    if not p.is_absolute():
        p = REPO_ROOT / p
    if not (p.is_file() and os.access(p, os.X_OK)):
        pytest.fail(f"Lockana binary not found at {p}: cargo build -p lockana-server, or set LOCKANA_BIN",
                    pytrace=False)
    return p


class Running:
    def __init__(self, proc: subprocess.Popen, log: Path):
        self.proc = proc
        self.log = log

    def status(self, field: str) -> str:
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        return re.search(rf"^{field}:\s*(.*)$", text, re.M).group(1)

    def limit(self, name: str) -> list[str]:
        for line in Path(f"/proc/{self.proc.pid}/limits").read_text().splitlines():
            if line.startswith(name):
                return line[len(name):].split()[:2]
        raise AssertionError(f"no {name!r} in /proc/{self.proc.pid}/limits")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start(extra_config: str = "", as_nobody: bool = False):
    """A server on a fresh redb file, as `nobody` if asked (root only); waits until
    it listens."""
    work = Path(tempfile.mkdtemp(prefix="lockana-harden-"))
    config = work / "lockana.hcl"
    config.write_text(f"""
storage "redb" {{ path = "{work}/lockana.redb" }}
listener "tcp" {{
  address     = "127.0.0.1:0"
  tls_disable = true
}}
{extra_config}
""")
    log = work / "server.log"
    user = {}
    if as_nobody:
        for p in (work, config):
            os.chown(p, NOBODY, NOBODY)
        user = {"user": NOBODY, "group": NOBODY, "extra_groups": []}
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(lockana_bin()), "server", "--config", str(config)],
                                stdout=out, stderr=subprocess.STDOUT, **user)
    running = Running(proc, log)
    deadline = time.monotonic() + 60
    while "listening" not in running.log_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the server did not start:\n{running.log_text()}")
        time.sleep(0.1)
    try:
        yield running
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def server():
    yield from start(as_nobody=IS_ROOT)


@pytest.fixture
def root_server():
    if not IS_ROOT:
        pytest.skip("needs root (CAP_IPC_LOCK) to lock memory")
    yield from start()


@pytest.fixture
def root_server_disable_mlock():
    if not IS_ROOT:
        pytest.skip("needs root to show that memory that could be locked is not")
    yield from start("disable_mlock = true")


def test_no_core_dumps_and_not_dumpable(server):
    assert server.limit("Max core file size") == ["0", "0"]
    uid = server.status("Uid").split()[0]
    assert uid != "0", "run as root, the server should be running as nobody here"
    # Dumpable processes' /proc files belong to their own uid.
    owner = os.stat(f"/proc/{server.proc.pid}/mem").st_uid
    assert owner == 0, f"/proc/<pid>/mem belongs to uid {owner}: the process is dumpable"
    assert "core dumps disabled, process not dumpable" in server.log_text()


def test_memory_is_locked_where_permitted(root_server):
    locked_kb = int(root_server.status("VmLck").split()[0])
    assert locked_kb > 0
    assert "memory locked (mlockall)" in root_server.log_text()


def test_memory_lock_not_permitted_is_a_clear_warning_not_a_failure(server):
    if server.limit("Max locked memory")[0] == "unlimited":
        pytest.skip("this user may lock unlimited memory")
    assert int(server.status("VmLck").split()[0]) == 0
    log = server.log_text()
    assert "WARN" in log and "memory NOT locked" in log
    # The warning says what to do about it.
    assert "CAP_IPC_LOCK" in log and "LimitMEMLOCK=infinity" in log and "disable_mlock" in log


def test_disable_mlock_is_honoured(root_server_disable_mlock):
    assert int(root_server_disable_mlock.status("VmLck").split()[0]) == 0
    log = root_server_disable_mlock.log_text()
    assert "memory locking disabled (disable_mlock)" in log
    assert "memory NOT locked" not in log
