"""dist/lockana.service: systemd accepts it, and its sandbox scores as documented.

`systemd-analyze verify` checks the unit as systemd would load it (unknown or
misspelled settings, bad values, a missing ExecStart binary); it is pointed at the
binary built here in place of /usr/local/bin/lockana. `systemd-analyze security
--offline=true` scores the sandbox without a running systemd; docs/operations.md
prints the score, and this test keeps the two in step. tests/run-all.sh installs
systemd's tools when missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
UNIT = REPO_ROOT / "dist" / "lockana.service"


def lockana_bin() -> Path:
    p = Path(os.environ.get("LOCKANA_BIN", "target/debug/lockana"))
    return p if p.is_absolute() else REPO_ROOT / p


@pytest.fixture
def unit(tmp_path) -> Path:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is not installed: apt-get install -y systemd (tests/run-all.sh does)",
                    pytrace=False)
    text = UNIT.read_text()
    assert "ExecStart=/usr/local/bin/lockana server" in text
    copy = tmp_path / "lockana.service"
    copy.write_text(text.replace("/usr/local/bin/lockana", str(lockana_bin())))
    return copy


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_unit_verifies(unit):
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "lockana.service" not in out.stderr, out.stderr


def test_unit_has_the_sandbox_the_issue_asks_for():
    s = unit_settings()
    for key, value in {
        "ProtectSystem": "strict", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "CAP_IPC_LOCK", "MemoryDenyWriteExecute": "yes", "LimitCORE": "0",
        "User": "lockana",
    }.items():
        assert s.get(key) == [value], f"{key}={s.get(key)}"
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    # The server drains for up to 30 s before it seals: systemd must wait longer.
    assert int(s["TimeoutStopSec"][0]) > 30


def test_security_score_is_the_documented_one(unit):
    out = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
                         capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for lockana\.service: (\d+\.\d+) (\w+)", out.stdout)
    assert m, out.stdout + out.stderr
    score, verdict = float(m.group(1)), m.group(2)
    print(f"\nsystemd-analyze security: {score} {verdict}")
    assert verdict in ("SAFE", "OK"), out.stdout
    documented = (REPO_ROOT / "docs" / "operations.md").read_text()
    assert f"exposure level {score} {verdict}" in documented, \
        f"docs/operations.md should print the score {score} {verdict}"
