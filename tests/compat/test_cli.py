"""The real `bao` CLI pointed at each server: exit codes and JSON output shapes."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from compat_util import Target, assert_same_shape, clean_env, uid

CLI_TIMEOUT_S = 60


@dataclass
class CliResult:
    rc: int
    out: str
    err: str

    def json(self):
        try:
            return json.loads(self.out)
        except ValueError:
            raise AssertionError(f"not JSON (rc={self.rc}): {self.out[:300]!r} / {self.err[:300]!r}") from None


def bao(bao_bin: Path, t: Target, home: Path, *args: str) -> CliResult:
    env = clean_env({"VAULT_ADDR": t.addr, "VAULT_TOKEN": t.token, "HOME": str(home), "NO_COLOR": "1"})
    p = subprocess.run(
        [str(bao_bin), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    return CliResult(p.returncode, p.stdout, p.stderr)


def kv_session(bao_bin, t: Target, home: Path, key: str) -> list[tuple[str, CliResult]]:
    """One fixed sequence of `bao kv` commands; returns (label, result) for each."""
    p = f"secret/{key}"
    steps: list[tuple[str, list[str]]] = [
        ("put v1", ["kv", "put", p, "a=1"]),
        ("put v2 json", ["kv", "put", "-format=json", p, "a=2", "b=x"]),
        ("get", ["kv", "get", p]),
        ("get json", ["kv", "get", "-format=json", p]),
        ("get -version=1 json", ["kv", "get", "-format=json", "-version=1", p]),
        ("get -field=a", ["kv", "get", "-field=a", p]),
        ("patch json", ["kv", "patch", "-format=json", p, "c=3"]),
        ("list json", ["kv", "list", "-format=json", "secret/"]),
        ("delete", ["kv", "delete", p]),
        ("get deleted json", ["kv", "get", "-format=json", p]),
        ("undelete v1", ["kv", "undelete", "-versions=1", p]),
        ("destroy v1", ["kv", "destroy", "-versions=1", p]),
        ("get destroyed v1", ["kv", "get", "-format=json", "-version=1", p]),
        ("metadata get json", ["kv", "metadata", "get", "-format=json", p]),
        ("metadata put", ["kv", "metadata", "put", "-max-versions=5", "-custom-metadata=owner=ops", p]),
        ("metadata get after put", ["kv", "metadata", "get", "-format=json", p]),
        ("get missing", ["kv", "get", f"{p}-missing"]),
        ("metadata delete", ["kv", "metadata", "delete", p]),
        ("get after metadata delete", ["kv", "get", p]),
    ]
    return [(label, bao(bao_bin, t, home, *args)) for label, args in steps]


@pytest.fixture
def cli_home(tmp_path) -> Path:
    return tmp_path


def test_cli_kv_roundtrip(bao_bin, target, cli_home):
    key = uid("cli")
    res = dict(kv_session(bao_bin, target, cli_home, key))
    n = target.name
    assert res["put v1"].rc == 0, (n, res["put v1"])
    assert res["put v2 json"].json()["data"]["version"] == 2, n
    assert res["get"].rc == 0 and "a" in res["get"].out, (n, res["get"])
    got = res["get json"].json()
    assert got["data"]["data"] == {"a": "2", "b": "x"}, (n, got)
    assert res["get -version=1 json"].json()["data"]["data"] == {"a": "1"}, n
    assert res["get -field=a"].out.strip() == "2", (n, res["get -field=a"])
    assert res["patch json"].rc == 0 and res["patch json"].json()["data"]["version"] == 3, (n, res["patch json"])
    assert key in res["list json"].json(), (n, res["list json"].out[:300])
    assert res["delete"].rc == 0, (n, res["delete"])
    deleted = res["get deleted json"].json()
    assert deleted["data"]["data"] is None and deleted["data"]["metadata"]["deletion_time"], (n, deleted)
    assert res["undelete v1"].rc == 0, (n, res["undelete v1"])
    assert res["destroy v1"].rc == 0, (n, res["destroy v1"])
    assert res["get destroyed v1"].json()["data"]["metadata"]["destroyed"] is True, n
    md = res["metadata get json"].json()["data"]
    assert md["current_version"] == 3 and md["versions"]["1"]["destroyed"] is True, (n, md)
    assert res["metadata put"].rc == 0, (n, res["metadata put"])
    md = res["metadata get after put"].json()["data"]
    assert md["max_versions"] == 5 and md["custom_metadata"] == {"owner": "ops"}, (n, md)
    assert res["get missing"].rc == 2, (n, res["get missing"])
    assert "No value found" in res["get missing"].err, (n, res["get missing"])
    assert res["metadata delete"].rc == 0, (n, res["metadata delete"])
    assert res["get after metadata delete"].rc == 2, (n, res["get after metadata delete"])


def test_cli_openbao_vs_lockana(bao_bin, pair, cli_home):
    if pair.lockana is None:
        pytest.skip("COMPAT_TARGETS excludes lockana")
    key = uid("cli")
    ref = kv_session(bao_bin, pair.openbao, cli_home, key)
    got = kv_session(bao_bin, pair.lockana, cli_home, key)
    problems = []
    for (label, r), (_, g) in zip(ref, got):
        if r.rc != g.rc:
            problems.append(f"[{label}] exit code: openbao {r.rc} vs lockana {g.rc}; lockana stderr: {g.err[:200]!r}")
            continue
        if "json" in label and r.rc == 0:
            try:
                assert_same_shape(r.json(), g.json(), f"[{label}]")
            except AssertionError as e:
                problems.append(str(e))
    assert not problems, "\n".join(problems)


def test_cli_status_and_secrets_list(bao_bin, target, cli_home):
    r = bao(bao_bin, target, cli_home, "status", "-format=json")
    assert r.rc == 0, (target.name, r)
    st = r.json()
    assert st["initialized"] is True and st["sealed"] is False, (target.name, st)
    r = bao(bao_bin, target, cli_home, "secrets", "list", "-format=json")
    assert r.rc == 0, (target.name, r)
    assert r.json()["secret/"]["type"] == "kv", target.name


def test_cli_kv_v1_mount(bao_bin, target, cli_home):
    m = uid("clikv1")
    r = bao(bao_bin, target, cli_home, "secrets", "enable", f"-path={m}", "-version=1", "kv")
    assert r.rc == 0, (target.name, r)
    try:
        assert bao(bao_bin, target, cli_home, "kv", "put", f"{m}/x", "a=1").rc == 0
        g = bao(bao_bin, target, cli_home, "kv", "get", "-format=json", f"{m}/x")
        assert g.rc == 0 and g.json()["data"] == {"a": "1"}, (target.name, g)
    finally:
        r = bao(bao_bin, target, cli_home, "secrets", "disable", m)
        assert r.rc == 0, (target.name, r)


def test_cli_bad_token_exit_code(bao_bin, target, cli_home):
    bad = Target(target.name, target.addr, "bogus", target.client, target.http)
    r = bao(bao_bin, bad, cli_home, "kv", "get", "secret/whatever")
    assert r.rc == 2, (target.name, r)
    assert "403" in r.err or "permission denied" in r.err, (target.name, r.err[:300])
