"""Lockana only: a config-file server on redb survives restarts (and crashes) sealed.

Flow follows Vault: init (3 shares, threshold 2) -> unseal -> write -> stop ->
start -> sealed (503) -> unseal with a different pair of keys -> same data.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import pytest
import requests

from compat_util import (
    Http,
    Server,
    clean_env,
    free_port,
    selected_targets,
    start_server,
    stop_server,
    wait_healthy,
)

pytestmark = pytest.mark.skipif("lockana" not in selected_targets(), reason="COMPAT_TARGETS excludes lockana")

CLI_TIMEOUT_S = 30


class Node:
    """One config-file Lockana server over a fixed redb file, restartable on the same port."""

    def __init__(self, lockana_bin: Path, workdir: Path):
        self.bin = lockana_bin
        self.dir = workdir
        self.db = workdir / "lockana.redb"
        self.port = free_port()
        self.addr = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "lockana.hcl"
        self.config.write_text(
            f'storage "redb" {{ path = "{self.db}" }}\n'
            f'listener "tcp" {{\n  address = "127.0.0.1:{self.port}"\n  tls_disable = true\n}}\n'
        )
        self.srv: Server | None = None
        self.starts = 0

    def start(self, expect_health: tuple[int, ...]) -> Server:
        self.starts += 1
        # An uninitialized server answers sys/health 501, a sealed one 503 (Vault's codes).
        self.srv = start_server(
            f"lockana-cfg{self.starts}",
            lambda _addr: [str(self.bin), "server", "--config", str(self.config)],
            self.dir,
            extra_env={"HOME": str(self.dir)},
            health_ok=expect_health,
            port=self.port,  # the server takes it from the config file, not argv
        )
        return self.srv

    def stop(self, sig=signal.SIGTERM) -> int | None:
        assert self.srv is not None
        rc = stop_server(self.srv, sig=sig, timeout=15)
        return rc

    def http(self, token=None) -> Http:
        return Http(self.addr, token)


@pytest.fixture
def node(lockana_bin, tmp_path):
    n = Node(lockana_bin, tmp_path)
    yield n
    if n.srv is not None:
        stop_server(n.srv, sig=signal.SIGKILL, timeout=5)


def _start(node: Node, expect: tuple[int, ...]) -> Server:
    return node.start(expect)


def _init(h: Http, shares=3, threshold=2) -> dict:
    r = h.put("sys/init", {"secret_shares": shares, "secret_threshold": threshold})
    assert r.status_code == 200, (r.status_code, r.text[:300])
    b = r.json()
    assert len(b["keys"]) == shares and len(b["keys_base64"]) == shares, b.keys()
    assert isinstance(b["root_token"], str) and b["root_token"]
    return b


def _unseal(h: Http, keys: list[str]) -> dict:
    last = {}
    for i, k in enumerate(keys):
        r = h.put("sys/unseal", {"key": k})
        assert r.status_code == 200, (r.status_code, r.text[:300])
        last = r.json()
        if i < len(keys) - 1:
            assert last["sealed"] is True and last["progress"] == i + 1, last
    assert last["sealed"] is False, last
    # Bounded wait for the node to serve as active (instant for Lockana; raft-backed
    # reference servers pass through standby first).
    wait_healthy(h.addr, None, 10.0)
    return last


def _seal_status(h: Http) -> dict:
    r = h.get("sys/seal-status")
    assert r.status_code == 200, (r.status_code, r.text[:300])
    return r.json()


def _write_dataset(h: Http):
    assert h.post("sys/mounts/app", {"type": "kv", "options": {"version": "2"}}).status_code == 204
    assert h.post("sys/mounts/flat", {"type": "kv", "options": {"version": "1"}}).status_code == 204
    for v in ("one", "two", "three"):
        r = h.post("app/data/db/creds", {"data": {"password": v, "user": "svc"}})
        assert r.status_code == 200, r.text[:300]
    assert h.post("app/metadata/db/creds", {"max_versions": 5, "custom_metadata": {"o": "ops"}}).status_code == 204
    assert h.post("app/data/other", {"data": {"k": "v"}}).status_code == 200
    assert h.delete("app/data/other").status_code == 204
    assert h.post("flat/cfg", {"url": "https://example.invalid", "n": 3}).status_code == 204


def _check_dataset(h: Http):
    r = h.get("app/data/db/creds")
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert r.json()["data"]["data"] == {"password": "three", "user": "svc"}
    assert r.json()["data"]["metadata"]["version"] == 3
    r = h.get("app/data/db/creds?version=1")
    assert r.json()["data"]["data"]["password"] == "one"
    md = h.get("app/metadata/db/creds").json()["data"]
    assert md["max_versions"] == 5 and md["custom_metadata"] == {"o": "ops"} and set(md["versions"]) == {"1", "2", "3"}
    r = h.get("app/data/other")
    assert r.status_code == 404 and r.json()["data"]["metadata"]["deletion_time"], r.text[:300]
    r = h.get("flat/cfg")
    assert r.status_code == 200 and r.json()["data"] == {"url": "https://example.invalid", "n": 3}
    mounts = h.get("sys/mounts").json()["data"]
    assert mounts["app/"]["options"] == {"version": "2"} and mounts["flat/"]["options"] == {"version": "1"}


def test_init_unseal_restart_unseal_reads_back(node):
    _start(node, (501,))
    h = node.http()
    st = _seal_status(h)
    assert st["initialized"] is False, st
    assert h.get("sys/init").json() == {"initialized": False}
    init = _init(h)
    st = _seal_status(h)
    assert st["sealed"] is True and st["t"] == 2 and st["n"] == 3 and st["progress"] == 0, st
    assert h.get("sys/health").status_code == 503
    _unseal(h, init["keys"][:2])
    assert h.get("sys/health").status_code == 200
    root = node.http(init["root_token"])
    _write_dataset(root)
    _check_dataset(root)

    rc = node.stop(signal.SIGTERM)
    assert rc == 0, f"SIGTERM exit code {rc}\n{node.srv.log_tail()}"

    _start(node, (503,))
    st = _seal_status(h)
    assert st["initialized"] is True and st["sealed"] is True and st["t"] == 2 and st["n"] == 3, st
    assert h.get("sys/health?sealedcode=200").status_code == 200
    r = root.get("app/data/db/creds")
    assert r.status_code == 503, (r.status_code, r.text[:200])
    # A different pair of shares, in base64 form this time, must work too.
    _unseal(h, init["keys_base64"][1:3])
    _check_dataset(root)
    assert h.put("sys/init", {"secret_shares": 1, "secret_threshold": 1}).status_code == 400


def test_acknowledged_writes_survive_sigkill(node):
    _start(node, (501,))
    h = node.http()
    init = _init(h, shares=1, threshold=1)
    _unseal(h, init["keys"])
    root = node.http(init["root_token"])
    assert root.post("sys/mounts/app", {"type": "kv", "options": {"version": "2"}}).status_code == 204
    for i in range(20):
        assert root.post(f"app/data/k{i}", {"data": {"i": str(i)}}).status_code == 200
    node.stop(signal.SIGKILL)
    _start(node, (503,))
    _unseal(h, init["keys"])
    for i in range(20):
        r = root.get(f"app/data/k{i}")
        assert r.status_code == 200 and r.json()["data"]["data"] == {"i": str(i)}, (i, r.status_code)


def test_seal_endpoint_and_wrong_key(node):
    _start(node, (501,))
    h = node.http()
    init = _init(h)
    r = h.put("sys/unseal", {"key": "not a key!!"})
    assert r.status_code == 400, (r.status_code, r.text[:200])
    assert _seal_status(h)["progress"] == 0
    _unseal(h, init["keys"][:2])
    root = node.http(init["root_token"])
    assert h.put("sys/seal").status_code == 403  # no token
    assert root.put("sys/seal").status_code == 204
    assert _seal_status(h)["sealed"] is True
    r = h.put("sys/unseal", {"key": init["keys"][0]})
    assert r.json()["progress"] == 1
    r = h.put("sys/unseal", {"reset": True})
    assert r.status_code == 200 and r.json()["progress"] == 0, r.text[:200]


def test_second_server_on_same_db_fails_clearly(node, lockana_bin):
    _start(node, (501,))
    other_port = free_port()
    cfg2 = node.dir / "second.hcl"
    cfg2.write_text(
        f'storage "redb" {{ path = "{node.db}" }}\n'
        f'listener "tcp" {{\n  address = "127.0.0.1:{other_port}"\n  tls_disable = true\n}}\n'
    )
    try:
        p = subprocess.run(
            [str(lockana_bin), "server", "--config", str(cfg2)],
            capture_output=True,
            text=True,
            timeout=20,
            env=clean_env({"HOME": str(node.dir)}),
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("second server on the same redb file kept running instead of exiting")
    out = p.stdout + p.stderr
    assert p.returncode != 0, out[-500:]
    assert re.search(r"(?i)lock|already open|in use|database.*open|open.*database", out), out[-500:]
    # The first server is unaffected.
    assert requests.get(f"{node.addr}/v1/sys/health", timeout=5).status_code == 501


def _cli(lockana_bin: Path, addr: str, *args: str, token: str | None = None):
    extra = {"VAULT_ADDR": addr, "HOME": "/nonexistent"}
    if token:
        extra["VAULT_TOKEN"] = token
    return subprocess.run(
        [str(lockana_bin), *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env=clean_env(extra),
        stdin=subprocess.DEVNULL,
    )


def test_operator_cli_init_unseal_seal_status(node, lockana_bin):
    _start(node, (501,))
    p = _cli(lockana_bin, node.addr, "operator", "init", "--key-shares", "3", "--key-threshold", "2", "--format", "json")
    assert p.returncode == 0, (p.returncode, p.stdout[-300:], p.stderr[-300:])
    out = json.loads(p.stdout)
    # Same field names as `vault operator init -format=json`, so scripts carry over.
    assert out["unseal_shares"] == 3 and len(out["unseal_keys_hex"]) == 3, out.keys()
    keys = out["unseal_keys_b64"]
    assert keys and len(keys) == 3, sorted(out)
    root = out["root_token"]
    # Vault's exit codes for `status`: 0 unsealed, 2 sealed, 1 error.
    assert _cli(lockana_bin, node.addr, "operator", "status").returncode == 2
    for k in keys[:2]:
        p = _cli(lockana_bin, node.addr, "operator", "unseal", k)
        assert p.returncode == 0, (p.stdout[-300:], p.stderr[-300:])
    p = _cli(lockana_bin, node.addr, "operator", "status")
    assert p.returncode == 0, (p.stdout[-300:], p.stderr[-300:])
    p = _cli(lockana_bin, node.addr, "operator", "seal", token=root)
    assert p.returncode == 0, (p.stdout[-300:], p.stderr[-300:])
    assert _cli(lockana_bin, node.addr, "operator", "status").returncode == 2
    p = _cli(lockana_bin, f"http://127.0.0.1:{free_port()}", "operator", "status")
    assert p.returncode not in (0, 2), "status against a closed port must be an error"
