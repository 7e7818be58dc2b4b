"""Lockana only: RSA projects (issue 12) end to end, black box.

A config-file server on redb, with trace logging and a raw (`log_raw`) audit log, so
anything a request carried would show. `lockana project create --encryption
rsa-3072` keeps the private key on the client; `lockana project set` encrypts
values here; `lockana run/env --key` decrypt here. Afterwards none of the values
appears in the redb file, the audit log or the server log, while a chacha20
project's value does appear in the raw audit log (the grep can find things).
A plain hvac write is refused; a wrong key gives one clear error; rotate-key
re-encrypts to a new key.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import hvac
import pyotp
import pytest

from compat_util import Http, clean_env, free_port, selected_targets, start_server, stop_server, wait_healthy

pytestmark = pytest.mark.skipif("lockana" not in selected_targets(), reason="COMPAT_TARGETS excludes lockana")

CLI_TIMEOUT_S = 120  # RSA key generation in a debug build


class Node:
    def __init__(self, lockana_bin: Path, workdir: Path):
        self.bin = lockana_bin
        self.dir = workdir
        self.db = workdir / "lockana.redb"
        self.audit = workdir / "audit.log"
        self.port = free_port()
        self.addr = f"http://127.0.0.1:{self.port}"
        cfg = workdir / "lockana.hcl"
        cfg.write_text(
            f'storage "redb" {{ path = "{self.db}" }}\n'
            f'listener "tcp" {{\n  address = "127.0.0.1:{self.port}"\n  tls_disable = true\n}}\n'
            'log_level = "trace"\n'
            f'audit "file" "raw" {{\n  options {{\n    file_path = "{self.audit}"\n    log_raw = "true"\n  }}\n}}\n'
        )
        self.srv = start_server(
            "lockana-rsa",
            lambda _addr: [str(lockana_bin), "server", "--config", str(cfg)],
            workdir,
            extra_env={"HOME": str(workdir)},
            health_ok=(501,),
            port=self.port,
        )
        h = Http(self.addr, None)
        init = h.put("sys/init", {"secret_shares": 1, "secret_threshold": 1}).json()
        assert h.put("sys/unseal", {"key": init["keys"][0]}).json()["sealed"] is False
        wait_healthy(self.addr, None, 10.0)
        self.token = init["root_token"]
        self.http = Http(self.addr, self.token)
        assert self.http.post("sys/mounts/secret", {"type": "kv", "options": {"version": "2"}}).status_code == 204
        assert self.http.get("sys/audit").json()["data"]["raw/"]["options"]["log_raw"] == "true"

    def cli(self, *args: str, code: str = "", stdin: str | None = None) -> subprocess.CompletedProcess:
        env = clean_env({"VAULT_ADDR": self.addr, "VAULT_TOKEN": self.token, "LOCKANA_TOTP_CODE": code})
        return subprocess.run(
            [str(self.bin), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=self.dir,
            timeout=CLI_TIMEOUT_S,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
        )


@pytest.fixture
def node(lockana_bin, tmp_path):
    n = Node(lockana_bin, tmp_path)
    yield n
    stop_server(n.srv)


def _create(node: Node, name: str, key_file: Path) -> pyotp.TOTP:
    p = node.cli("project", "create", name, "--encryption", "rsa-3072", "--key-out", str(key_file), "--no-qr")
    assert p.returncode == 0, p.stderr
    assert "-----BEGIN PRIVATE KEY-----" in p.stdout and "WARNING" in p.stdout, "printed once, with a warning"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text() in p.stdout
    url = next(line for line in p.stdout.splitlines() if line.startswith("otpauth://"))
    shown = node.http.get(f"lockana/projects/{name}").json()["data"]
    assert shown["encryption"] == "rsa-3072" and shown["public_key"].startswith("-----BEGIN PUBLIC KEY-----")
    assert "PRIVATE" not in json.dumps(shown)
    return pyotp.parse_uri(url)


def test_rsa_project_values_never_reach_the_server(node, tmp_path):
    canaries = {f"VAR_{i}": f"canary-{uuid.uuid4().hex}" for i in range(3)}
    canaries["QUOTED"] = f"it's \"q\" $HOME {uuid.uuid4().hex}"
    key, wrong_key = tmp_path / "billing.pem", tmp_path / "other.pem"
    t = _create(node, "billing", key)
    # An existing key file is never overwritten.
    p = node.cli("project", "create", "again", "--encryption", "rsa-3072", "--key-out", str(key))
    assert p.returncode != 0 and "never overwritten" in p.stderr
    assert node.http.get("lockana/projects/again").status_code == 404

    p = node.cli("project", "set", "billing", *[f"{k}={v}" for k, v in canaries.items()])
    assert p.returncode == 0, p.stderr
    assert "encrypted here" in p.stdout
    stored = node.http.get("secret/data/projects/billing").json()["data"]["data"]
    assert set(stored) == set(canaries) and all(v.startswith("lockana:rsa1:") for v in stored.values())

    # A plain write is refused with a Vault-format error; nothing lands.
    c = hvac.Client(url=node.addr, token=node.token)
    refused = f"refused-{uuid.uuid4().hex}"
    with pytest.raises(hvac.exceptions.InvalidRequest, match="lockana project set"):
        c.secrets.kv.v2.create_or_update_secret(path="projects/billing", secret={"X": refused}, mount_point="secret")
    r = node.http.post("secret/data/projects/billing", {"data": {"X": refused}})
    assert r.status_code == 400 and list(r.json()) == ["errors"]
    assert node.http.get("secret/metadata/projects/billing").json()["data"]["current_version"] == 1

    # lockana run --key: the values reach the child, decrypted here.
    script = "import os,json,sys; print(json.dumps({k: os.environ.get(k) for k in sys.argv[1:]}))"
    p = node.cli("run", "--project", "billing", "--key", str(key), "--", sys.executable, "-c", script, *canaries, code=t.now())
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == canaries

    # A wrong key: one clear error, nothing printed.
    _create(node, "other", wrong_key)
    p = node.cli("env", "--project", "billing", "--key", str(wrong_key), "--format", "json", code=t.at(time.time() + 30))
    assert p.returncode == 1 and "not the project's key" in p.stderr, p.stderr
    assert not any(v in p.stdout + p.stderr for v in canaries.values())

    # A chacha20 project, for contrast: the raw audit log does hold its value.
    plain = f"plain-{uuid.uuid4().hex}"
    assert node.cli("project", "create", "plainproj", "--no-qr").returncode == 0
    p = node.cli("project", "set", "plainproj", f"P={plain}")
    assert p.returncode == 0, p.stderr

    stop_server(node.srv)
    files = {"redb": node.db.read_bytes(), "audit": node.audit.read_bytes(), "log": node.srv.log_path.read_bytes()}
    assert b"lockana:rsa1:" in files["audit"], "the raw audit log records request bodies"
    assert plain.encode() in files["audit"], "the grep finds a value the server did see"
    assert len(files["log"]) > 0
    for where, blob in files.items():
        for name, value in canaries.items():
            assert value.encode() not in blob, f"{name} found in the {where} file"


def test_rsa_rotate_key_and_env_without_key(node, tmp_path):
    key, new_key = tmp_path / "pay.pem", tmp_path / "pay-2.pem"
    t = _create(node, "payroll", key)
    p = node.cli("project", "set", "payroll", "TOKEN", stdin="s3cret-from-prompt\n")
    assert p.returncode == 0, p.stderr
    p = node.cli("project", "set", "payroll", "A=1", "B=two words")
    assert p.returncode == 0, p.stderr

    p = node.cli("project", "rotate-key", "payroll", "--key", str(new_key), "--new-key-out", str(tmp_path / "x.pem"))
    assert p.returncode != 0  # no such key file
    p = node.cli("project", "rotate-key", "payroll", "--key", str(key), "--new-key-out", str(new_key))
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(new_key.stat().st_mode) == 0o600
    shown = node.http.get("lockana/projects/payroll").json()["data"]
    assert new_key.read_text() and shown["key_id"] in p.stdout

    # The new key opens the re-encrypted values (dotenv, formatted here) ...
    p = node.cli("env", "--project", "payroll", "--key", str(new_key), code=t.now())
    assert p.returncode == 0, p.stderr
    assert p.stdout == "A='1'\nB='two words'\nTOKEN='s3cret-from-prompt'\n"
    # ... and the old one no longer does.
    p = node.cli("env", "--project", "payroll", "--key", str(key), "--format", "json", code=t.at(time.time() + 30))
    assert p.returncode == 1 and "not the project's key" in p.stderr, p.stderr

    # Without --key, env refuses to print ciphertext as values.
    t2 = _create(node, "nokey", tmp_path / "nokey.pem")
    assert node.cli("project", "set", "nokey", "A=1").returncode == 0
    p = node.cli("env", "--project", "nokey", "--format", "json", code=t2.now())
    assert p.returncode == 1 and "--key" in p.stderr, p.stderr
