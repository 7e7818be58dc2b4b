"""Fixtures for the Python module suite (``import lockana``).

The module must be installed in the interpreter running pytest: ``tests/run-all.sh``
builds the wheel with maturin and installs it into ``.venv``. By hand::

    .venv/bin/maturin build --release -m lockana-py/Cargo.toml -o target/wheels
    .venv/bin/pip install --force-reinstall --no-deps target/wheels/lockana-*.whl
    .venv/bin/python -m pytest -q tests/python

Server tests run ``$LOCKANA_BIN`` (default ``target/debug/lockana``) on free loopback
ports, with logs under pytest's tmp dir.
"""

from __future__ import annotations

from typing import Iterator

import pytest

try:
    import lockana
except ImportError as e:  # a broken setup, not a reason to skip
    raise pytest.UsageError(
        f"cannot import the lockana Python module ({e}); build and install it with maturin "
        "(tests/run-all.sh does, see tests/python/conftest.py)"
    ) from None

from pymod_util import Server, free_port, start_server


@pytest.fixture(scope="session")
def dev_server(tmp_path_factory) -> Iterator[Server]:
    """``lockana server --dev`` with root token ``root``, for the HTTP client."""
    port = free_port()
    log = tmp_path_factory.mktemp("pylogs") / f"lockana-dev-{port}.log"
    srv = start_server(
        ["server", "--dev", "--dev-root-token-id", "root", "--dev-listen-address", f"127.0.0.1:{port}"],
        port,
        log,
    )
    yield srv
    srv.stop()


@pytest.fixture
def vault() -> Iterator["lockana.Vault"]:
    """A fresh in-memory dev vault (KV v2 at secret/)."""
    with lockana.Vault.dev() as v:
        yield v
