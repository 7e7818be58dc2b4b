"""Lockana only: projects end to end against `lockana server --dev`.

Create a project, put its variables with hvac (KV v2 at secret/projects/<name>),
compute codes with pyotp from the returned otpauth URL, fetch the env as JSON and
dotenv (read back by bash and python-dotenv), `lockana run -- ...`, replay refused,
TOTP login, and lockout after 5 wrong codes.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import hvac
import pyotp
import pytest

from compat_util import clean_env, selected_targets, start_server, stop_server, uid

pytestmark = pytest.mark.skipif("lockana" not in selected_targets(), reason="COMPAT_TARGETS excludes lockana")

CLI_TIMEOUT_S = 30

VARS = {
    "PLAIN": "hello",
    "QUOTES": "it's \"quoted\"",
    "DOLLAR": "$HOME and ${PATH} and `whoami`",
    "NEWLINES": "line1\nline2\n",
    "BACKSLASH": "C:\\path\\to\\n and \\\\ two",
    "UNICODE": "héllo ✓ 日本",
    "EMPTY": "",
    "SPACES": "  padded  ",
    # A quote or backslash together with `$`: POSIX shells read it back exactly;
    # python-dotenv cannot (see projects/env.rs).
    "MIXED": "it's $5 \\o/",
}
SHELL_ONLY = {"MIXED"}


def _create(target, name: str) -> pyotp.TOTP:
    r = target.http.post(f"lockana/projects/{name}", {"owner": "tests"})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    png = base64.b64decode(data["barcode"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert data["otpauth_url"].startswith("otpauth://totp/Lockana:")
    target.client.secrets.kv.v2.create_or_update_secret(path=f"projects/{name}", secret=VARS, mount_point="secret")
    return pyotp.parse_uri(data["otpauth_url"])


def _env(target, name: str, code: str, fmt: str | None = None):
    params = {"format": fmt} if fmt else None
    return target.http.get(f"lockana/projects/{name}/env", token=None, headers={"X-Lockana-TOTP": code}, params=params)


def _next_code(t: pyotp.TOTP) -> str:
    """The next step's code (accepted now: one step of skew)."""
    return t.at(time.time() + 30)


def test_project_env_json_dotenv_and_replay(lockana, tmp_path):
    name = uid("proj")
    t = _create(lockana, name)
    shown = lockana.http.get(f"lockana/projects/{name}").json()["data"]
    assert shown["owner"] == "tests" and "otpauth_url" not in shown and "barcode" not in shown
    assert name in lockana.http.list("lockana/projects").json()["data"]["keys"]

    code = t.now()
    r = _env(lockana, name, code)
    assert r.status_code == 200, r.text
    assert r.json()["data"] == VARS
    replay = _env(lockana, name, code)
    assert replay.status_code == 403 and replay.json() == {"errors": ["permission denied"]}
    assert _env(lockana, name, "12345x").status_code == 403

    r = _env(lockana, name, _next_code(t), "dotenv")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain")
    env_file = tmp_path / "project.env"
    env_file.write_bytes(r.content)

    # POSIX shell semantics: every value exactly.
    out = subprocess.run(
        ["bash", "-c", 'set -a; . "$1"; set +a; exec env -0', "_", str(env_file)],
        capture_output=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        timeout=CLI_TIMEOUT_S,
        check=True,
    ).stdout.decode()
    seen = dict(kv.split("=", 1) for kv in out.split("\0") if "=" in kv)
    for k, v in VARS.items():
        assert seen.get(k) == v, k

    # python-dotenv, without its ${VAR} interpolation.
    dotenv = pytest.importorskip("dotenv")
    parsed = dotenv.dotenv_values(env_file, interpolate=False)
    for k, v in VARS.items():
        if k not in SHELL_ONLY:
            assert parsed.get(k) == v, k


def _cli(lockana_bin: Path, addr: str, *args: str, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(lockana_bin), *args],
        capture_output=True,
        env=clean_env({"VAULT_ADDR": addr, "LOCKANA_TOTP_CODE": code}),
        timeout=CLI_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )


def test_lockana_run_and_env_cli(lockana, lockana_bin):
    name = uid("run")
    t = _create(lockana, name)
    script = "import os,json,sys; print(json.dumps({k: os.environ.get(k) for k in sys.argv[1:]}))"
    p = _cli(lockana_bin, lockana.addr, "run", "--project", name, "--", sys.executable, "-c", script, *VARS, code=t.now())
    assert p.returncode == 0, p.stderr.decode()
    assert json.loads(p.stdout) == VARS
    # The child's exit status is the CLI's; the same code again is refused.
    code2 = _next_code(t)
    p = _cli(lockana_bin, lockana.addr, "run", "--project", name, "--", "sh", "-c", "exit 3", code=code2)
    assert p.returncode == 3, p.stderr.decode()
    p = _cli(lockana_bin, lockana.addr, "env", "--project", name, "--format", "json", code=code2)
    assert p.returncode == 1 and b"403" in p.stderr and b"already used" in p.stderr

    name2 = uid("cli")
    t2 = _create(lockana, name2)
    p = _cli(lockana_bin, lockana.addr, "env", "--project", name2, code=t2.now())
    assert p.returncode == 0, p.stderr.decode()
    assert p.stdout.decode().startswith("BACKSLASH=")
    p = _cli(lockana_bin, lockana.addr, "project", "list", code="")
    assert p.returncode != 0  # no token: permission denied


def test_project_cli_create_show_delete(lockana, lockana_bin):
    name = uid("mgmt")
    env = clean_env({"VAULT_ADDR": lockana.addr, "VAULT_TOKEN": "root"})
    run = lambda *a: subprocess.run(  # noqa: E731
        [str(lockana_bin), "project", *a], capture_output=True, env=env, timeout=CLI_TIMEOUT_S, stdin=subprocess.DEVNULL
    )
    p = run("create", name, "--owner", "ops@example.com")
    assert p.returncode == 0, p.stderr.decode()
    out = p.stdout.decode()
    assert "otpauth://totp/Lockana:" in out and "█" in out
    p = run("show", name)
    assert p.returncode == 0 and b"ops@example.com" in p.stdout and b"otpauth" not in p.stdout
    assert name.encode() in run("list").stdout
    p = run("rotate-totp", name, "--no-qr", "--format", "json")
    assert json.loads(p.stdout)["data"]["otpauth_url"].startswith("otpauth://")
    assert run("delete", name).returncode == 0
    assert run("show", name).returncode != 0


def test_totp_login_token_reads_only_its_project(lockana):
    name, other = uid("login"), uid("other")
    t = _create(lockana, name)
    _create(lockana, other)
    code = t.now()
    r = lockana.http.post("auth/totp/login", {"project": name, "code": code}, token=None)
    assert r.status_code == 200, r.text
    auth = r.json()["auth"]
    assert auth["policies"] == [f"lockana-project-{name}"]
    assert auth["lease_duration"] == 900 and auth["renewable"] is False
    c = hvac.Client(url=lockana.addr, token=auth["client_token"])
    got = c.secrets.kv.v2.read_secret_version(path=f"projects/{name}", mount_point="secret", raise_on_deleted_version=True)
    assert got["data"]["data"] == VARS
    with pytest.raises(hvac.exceptions.Forbidden):
        c.secrets.kv.v2.read_secret_version(path=f"projects/{other}", mount_point="secret", raise_on_deleted_version=True)
    again = lockana.http.post("auth/totp/login", {"project": name, "code": code}, token=None)
    assert again.status_code == 400 and "already used" in again.json()["errors"][0]


def test_deleting_a_project_revokes_its_login_tokens(lockana):
    """Issue 11: a TOTP login's token dies with its project (403), even if a project of
    the same name is created again."""
    name = uid("gone")
    t = _create(lockana, name)
    r = lockana.http.post("auth/totp/login", {"project": name, "code": t.now()}, token=None)
    assert r.status_code == 200, r.text
    token = r.json()["auth"]["client_token"]
    assert lockana.http.get("auth/token/lookup-self", token=token).status_code == 200
    assert lockana.http.delete(f"lockana/projects/{name}").status_code == 204
    assert lockana.http.get("auth/token/lookup-self", token=token).status_code == 403
    _create(lockana, name)
    denied = lockana.http.get(f"secret/data/projects/{name}", token=token)
    assert denied.status_code == 403, denied.text


def test_project_lockout_after_five_wrong_codes(lockana_bin, tmp_path):
    """On its own server: the lockout is per client address, and every test runs on 127.0.0.1."""
    srv = start_server(
        "lockana-lockout",
        lambda addr: [str(lockana_bin), "server", "--dev", "--dev-root-token-id", "root", "--dev-listen-address", addr],
        tmp_path,
        extra_env={"HOME": str(tmp_path)},
    )
    try:
        from compat_util import Target

        target = Target.for_server(srv, token="root")
        t = _create(target, "locked")
        good = t.now()
        wrong = "000000" if good != "000000" else "111111"
        for _ in range(5):
            assert _env(target, "locked", wrong).status_code == 403
        # Locked out: the right code gets the same answer, and login too.
        r = _env(target, "locked", good)
        assert r.status_code == 403 and r.json() == {"errors": ["permission denied"]}
        r = target.http.post("auth/totp/login", {"project": "locked", "code": good}, token=None)
        assert r.status_code == 400 and r.json()["errors"] == ["invalid project or TOTP code"]
    finally:
        stop_server(srv)
