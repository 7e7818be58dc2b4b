"""Lockana only: the PostgreSQL storage backend. A config-file server on a table in the
machine's PostgreSQL (127.0.0.1:5432, trust auth, database `test`) survives a restart
sealed, reads back what it wrote, and the table holds only ciphertext: no secret value,
and no secret, project, policy or user name in its keys or values (issue 11)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from compat_util import clean_env, free_port, selected_targets

pytestmark = pytest.mark.skipif("lockana" not in selected_targets(), reason="COMPAT_TARGETS excludes lockana")

PG_URL = os.environ.get("LOCKANA_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")


def psql(sql: str) -> str:
    assert shutil.which("psql"), "psql is needed to look into the table"
    out = subprocess.run(["psql", PG_URL, "-At", "-c", sql], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def start(bin_: Path, cfg: Path, port: int, log: Path, want: int) -> subprocess.Popen:
    proc = subprocess.Popen([str(bin_), "server", "--config", str(cfg)], stdout=open(log, "ab"),
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=clean_env({"LOCKANA_PG": PG_URL}), start_new_session=True)
    deadline = time.monotonic() + 20
    while True:
        try:
            r = requests.get(f"http://127.0.0.1:{port}/v1/sys/health", timeout=2)
            if r.status_code == want:
                return proc
        except requests.exceptions.ConnectionError:
            pass
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_postgres_storage_survives_restart_and_holds_only_ciphertext(lockana_bin: Path, tmp_path: Path) -> None:
    table = f"lockana_compat_{uuid.uuid4().hex[:12]}"
    port = free_port()
    cfg = tmp_path / "lockana.hcl"
    # The URL comes from an environment variable, as it would carry a password.
    cfg.write_text(
        f'storage "postgresql" {{\n  connection_url_env = "LOCKANA_PG"\n  table = "{table}"\n}}\n'
        f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n  tls_disable = true\n}}\n'
    )
    base = f"http://127.0.0.1:{port}/v1"
    canary = f"canary-{uuid.uuid4().hex}"
    tag = uuid.uuid4().hex[:10]
    names = {"dir": f"probedir{tag}", "secret": f"canaryname{tag}", "project": f"projname{tag}",
             "policy": f"polname{tag}", "user": f"username{tag}"}
    log = tmp_path / "server.log"
    proc = start(lockana_bin, cfg, port, log, 501)
    try:
        init = requests.put(f"{base}/sys/init", json={"secret_shares": 1, "secret_threshold": 1}, timeout=10).json()
        key, root = init["keys_base64"][0], init["root_token"]
        assert requests.put(f"{base}/sys/unseal", json={"key": key}, timeout=10).json()["sealed"] is False
        h = {"X-Vault-Token": root}
        assert requests.post(f"{base}/sys/mounts/secret", json={"type": "kv-v2"}, headers=h, timeout=10).status_code == 204
        assert requests.post(f"{base}/secret/data/db", json={"data": {"pw": canary}}, headers=h, timeout=10).status_code == 200
        secret_path = f"{names['dir']}/{names['secret']}"
        writes = [
            (f"secret/data/{secret_path}", {"data": {"v": "1"}}),
            (f"sys/policies/acl/{names['policy']}", {"policy": 'path "secret/*" { capabilities = ["read"] }'}),
            (f"lockana/projects/{names['project']}", {}),
            ("sys/auth/userpass", {"type": "userpass"}),
            (f"auth/userpass/users/{names['user']}", {"password": "pw"}),
        ]
        for path, body in writes:
            assert requests.post(f"{base}/{path}", json=body, headers=h, timeout=10).status_code in (200, 204), path
        stop(proc)
        proc = start(lockana_bin, cfg, port, log, 503)  # sealed after a restart
        requests.put(f"{base}/sys/unseal", json={"key": key}, timeout=10)
        got = requests.get(f"{base}/secret/data/db", headers=h, timeout=10).json()
        assert got["data"]["data"]["pw"] == canary
        health = requests.get(f"{base}/sys/seal-status", timeout=10).json()
        assert health["storage_type"] == "postgresql"
        rows = int(psql(f"SELECT count(*) FROM {table}").strip())
        assert rows > 5
        dump = psql(f"SELECT key || ':' || encode(value, 'escape') FROM {table}")
        assert canary not in dump and root not in dump, "plaintext in the table"
        for what, name in names.items():
            assert name not in dump, f"the {what} name is readable in the table"
        # ...and every name lists back after the restart.
        def listed(path: str) -> list[str]:
            r = requests.request("LIST", f"{base}/{path}", headers=h, timeout=10)
            assert r.status_code == 200, (path, r.text)
            return r.json()["data"]["keys"]
        assert listed("secret/metadata/") == ["db", f"{names['dir']}/"]
        assert listed(f"secret/metadata/{names['dir']}/") == [names["secret"]]
        assert names["policy"] in listed("sys/policies/acl")
        assert listed("lockana/projects") == [names["project"]]
        assert listed("auth/userpass/users") == [names["user"]]
    finally:
        stop(proc)
        psql(f"DROP TABLE IF EXISTS {table}")
        assert PG_URL not in log.read_text(), "the connection URL reached the log"
