"""Lockana only (issue 11): a damaged data file looks like damage.

A stopped server's redb file gets one flipped byte; `lockana operator verify-storage`
(offline) finds it; the server still starts (no crash loop), stays sealed when
unsealed with the right shares (500 naming an integrity failure, never 403/404),
and health, seal-status and requests agree. Online verification of a clean server
reports no damage. About 10 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from compat_util import Http, clean_env, free_port, selected_targets, start_server, stop_server

pytestmark = pytest.mark.skipif("lockana" not in selected_targets(), reason="COMPAT_TARGETS excludes lockana")

PAGE = 4096


class Node:
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
        self.srv = None
        self.starts = 0

    def start(self, expect):
        self.starts += 1
        self.srv = start_server(
            f"lockana-integrity{self.starts}",
            lambda _addr: [str(self.bin), "server", "--config", str(self.config)],
            self.dir,
            extra_env={"HOME": str(self.dir)},
            health_ok=expect,
            port=self.port,
        )
        return self.srv

    def stop(self):
        return stop_server(self.srv, sig=signal.SIGTERM, timeout=15)

    def cli(self, *args, token=None, env=None):
        e = clean_env({"VAULT_ADDR": self.addr, **(env or {})})
        if token:
            e["VAULT_TOKEN"] = token
        return subprocess.run([str(self.bin), *args], env=e, capture_output=True, text=True, timeout=60)


@pytest.fixture
def node(lockana_bin, tmp_path):
    n = Node(lockana_bin, tmp_path)
    yield n
    if n.srv is not None:
        stop_server(n.srv, sig=signal.SIGKILL, timeout=5)


def _populated(node: Node) -> tuple[dict, Http]:
    node.start((501,))
    h = Http(node.addr, None)
    init = h.put("sys/init", {"secret_shares": 3, "secret_threshold": 2}).json()
    for k in init["keys"][:2]:
        assert h.put("sys/unseal", {"key": k}).status_code == 200
    root = Http(node.addr, init["root_token"])
    assert root.post("sys/mounts/app", {"type": "kv", "options": {"version": "2"}}).status_code == 204
    for i in range(5):
        assert root.post(f"app/data/s{i}", {"data": {"v": f"value-{i}"}}).status_code == 200
    assert root.put("sys/policies/acl/team", {"policy": 'path "app/*" { capabilities = ["read"] }'}).status_code == 204
    return init, root


def test_online_verify_storage_reports_a_clean_store(node):
    init, root = _populated(node)
    r = node.cli("operator", "verify-storage", token=init["root_token"])
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    assert "0 corrupt" in r.stdout and "verifying storage:" in r.stderr, (r.stdout, r.stderr)
    # Lockana-only and root-protected: a token without sudo is refused.
    tok = root.post("auth/token/create", {"policies": ["team"]}).json()["auth"]["client_token"]
    r = node.cli("operator", "verify-storage", token=tok)
    assert r.returncode == 1 and "permission denied" in r.stderr, (r.returncode, r.stderr)


def test_flipped_byte_is_found_offline_and_keeps_the_server_sealed_and_truthful(node):
    init, root = _populated(node)
    assert node.stop() == 0
    clean = node.db.read_bytes()
    keys_file = node.dir / "unseal.keys"
    keys_file.write_text("\n".join(init["keys"][:2]) + "\n")
    os.chmod(keys_file, 0o600)

    r = node.cli("operator", "verify-storage", "--path", str(node.db), "--key-file", str(keys_file))
    assert r.returncode == 0, (r.stdout, r.stderr)

    # One flipped byte in a page holding data: the middle of each non-empty page in
    # turn until offline verification notices (redb's checksum tree covers live pages).
    found = None
    for page in range(1, len(clean) // PAGE):
        chunk = clean[page * PAGE : (page + 1) * PAGE]
        if not any(chunk):
            continue
        off = page * PAGE + PAGE // 2
        bad = bytearray(clean)
        bad[off] ^= 0x10
        node.db.write_bytes(bytes(bad))
        r = node.cli("operator", "verify-storage", "--path", str(node.db), "--key-file", str(keys_file))
        assert r.returncode in (0, 2), (off, r.returncode, r.stdout, r.stderr)
        if r.returncode == 2:
            found = off
            break
    assert found is not None, "no single flipped byte was noticed"
    assert "damaged" in r.stdout.lower() or "CORRUPT" in r.stdout, r.stdout

    # The server starts on the damaged file (no crash loop) and says sealed.
    node.start((503,))
    h = Http(node.addr, None)
    st = h.get("sys/seal-status").json()
    assert st["initialized"] is True and st["sealed"] is True, st
    answers = [h.put("sys/unseal", {"key": k}) for k in init["keys"][:2]]
    assert all(a.status_code == 500 for a in answers), [(a.status_code, a.text) for a in answers]
    msg = " ".join(answers[-1].json()["errors"])
    assert "integrity failure" in msg, msg
    # Health, seal-status and requests agree: sealed.
    assert h.get("sys/health").status_code == 503
    assert h.get("sys/seal-status").json()["sealed"] is True
    r = root.get("app/data/s1")
    assert r.status_code == 503, (r.status_code, r.text)
    assert node.stop() == 0
