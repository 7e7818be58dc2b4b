"""In-process projects and the TOTP engine: vault.create_project / project_env and
vault.totp(), with codes computed by an independent implementation (pyotp)."""

from __future__ import annotations

import subprocess
import time
import urllib.parse
import uuid

import pyotp
import pytest

import lockana


def _totp_from(url: str) -> pyotp.TOTP:
    q = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
    return pyotp.TOTP(q["secret"][0], digits=int(q.get("digits", ["6"])[0]), interval=int(q.get("period", ["30"])[0]))


def _next_step_code(totp: pyotp.TOTP) -> str:
    """A code of a step no earlier call used (codes work once per project)."""
    step = int(time.time()) // totp.interval
    while int(time.time()) // totp.interval == step:
        time.sleep(0.2)
    return totp.now()


def test_project_env_in_process_json_dotenv_and_replay(vault):
    created = vault.create_project("billing", owner="ops@example.com")
    assert created["otpauth_url"].startswith("otpauth://totp/") and created["barcode"]
    assert "billing" in vault.list_projects()
    assert "otpauth_url" not in vault.project("billing"), "the seed is shown once"
    weird = "it's a \"quoted\" $VALUE with \\ and\nnewline"
    vault.kv().put("projects/billing", {"DB_URL": "postgres://db/billing", "WEIRD": weird})
    totp = _totp_from(created["otpauth_url"])

    code = totp.now()
    env = vault.project_env("billing", code)
    assert env == {"DB_URL": "postgres://db/billing", "WEIRD": weird}
    with pytest.raises(lockana.PermissionDenied):
        vault.project_env("billing", code)  # a code works once

    dotenv = vault.project_env("billing", _next_step_code(totp), format="dotenv")
    assert "DB_URL=" in dotenv
    # The dotenv text survives a POSIX shell loader exactly.
    out = subprocess.run(
        ["bash", "-c", 'set -a; eval "$DOTENV"; printf %s "$WEIRD"'],
        env={"DOTENV": dotenv, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=10,
    )
    assert out.stdout == weird, out

    with pytest.raises(lockana.PermissionDenied):
        vault.project_env("billing", "000000" if totp.now() != "000000" else "111111")
    with pytest.raises(TypeError):
        vault.project_env("billing", 123456)  # an int would lose leading zeros

    rotated = vault.rotate_project_totp("billing")
    assert rotated["otpauth_url"] != created["otpauth_url"]
    vault.delete_project("billing")
    assert "billing" not in vault.list_projects()


def test_totp_engine_helpers(vault):
    vault.request("update", "sys/mounts/totp", {"type": "totp"})
    totp = vault.totp()
    key = totp.create_key("web", issuer="Lockana", account_name="alice@example.com")
    assert key["url"].startswith("otpauth://totp/") and key["barcode"]
    assert totp.list_keys() == ["web"]
    assert totp.read_key("web")["account_name"] == "alice@example.com"
    code = totp.generate_code("web")
    assert len(code) == 6 and code.isdigit()
    assert totp.validate_code("web", code) is True
    with pytest.raises(lockana.InvalidRequest, match="already used"):
        totp.validate_code("web", code)  # a code is accepted once
    imported = totp.create_key("imported", generate=False, key=pyotp.random_base32(32), account_name="x")
    assert imported == {}
    totp.delete_key("web")
    assert totp.list_keys() == ["imported"]


def test_rsa_project_in_process_values_opened_only_with_the_key(vault, tmp_path):
    """Issue 12: an RSA project's values are encrypted here; the vault holds only
    envelopes; project_env decrypts with the private key (text, bytes or a path)."""
    created = vault.create_project("payroll", encryption="rsa-3072")
    private = created["private_key"]
    assert private.startswith("-----BEGIN PRIVATE KEY-----")
    assert created["encryption"] == "rsa-3072" and "private_key" not in vault.project("payroll")
    values = {"DB_PASSWORD": "hunter2-" + "x" * 8, "QUOTED": "it's $HOME"}
    assert vault.set_project_variables("payroll", values) == 1
    stored = vault.kv().get("projects/payroll")
    assert all(v.startswith("lockana:rsa1:") and "hunter2" not in v for v in stored.values())
    with pytest.raises(lockana.InvalidRequest, match="lockana project set"):
        vault.kv().put("projects/payroll", {"DB_PASSWORD": "plain"})

    totp = _totp_from(created["otpauth_url"])
    key_file = tmp_path / "payroll.pem"
    key_file.write_text(private)
    assert vault.project_env("payroll", totp.now(), private_key=key_file) == values
    other = vault.create_project("other", encryption="rsa-3072")["private_key"]
    with pytest.raises(lockana.ProjectKeyError, match="not the project's key"):
        vault.project_env("payroll", totp.at(time.time() + 30), private_key=other.encode())


def test_rsa_project_rotate_key_and_env_without_key(vault):
    created = vault.create_project("rot", encryption="rsa-3072")
    old = created["private_key"]
    vault.set_project_variables("rot", {"A": "1"})
    vault.set_project_variables("rot", {"B": "2"})  # others stay
    with pytest.raises(lockana.ProjectKeyError):
        vault.rotate_project_key("rot", vault.create_project("x", encryption="rsa-3072")["private_key"])
    new = vault.rotate_project_key("rot", old)
    assert new != old and vault.project("rot")["key_id"]
    totp = _totp_from(created["otpauth_url"])
    dotenv = vault.project_env("rot", totp.now(), format="dotenv", private_key=new)
    assert dotenv == "A='1'\nB='2'\n"
    # Without a key the envelopes are not handed out as values.
    with pytest.raises(lockana.ProjectKeyError, match="private_key"):
        vault.project_env("rot", totp.at(time.time() + 30))


def test_rsa_project_over_http_client(dev_server, tmp_path):
    client = lockana.Client(dev_server.addr, token="root")
    name = f"httprsa-{uuid.uuid4().hex[:8]}"
    created = client.create_project(name, encryption="rsa-3072")
    client.set_project_variables(name, {"TOKEN": "t-1"})
    totp = _totp_from(created["otpauth_url"])
    assert client.project_env(name, totp.now(), private_key=created["private_key"]) == {"TOKEN": "t-1"}
