"""A vault file written by the Python module is read by `lockana server`, and back."""

from __future__ import annotations

import lockana
from pymod_util import free_port, start_server


def _config(tmp_path, db, keys, port):
    cfg = tmp_path / "lockana.hcl"
    cfg.write_text(
        f'storage "redb" {{\n  path = "{db}"\n}}\n'
        f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n  tls_disable = true\n}}\n'
        f'auto_unseal {{\n  key_file = "{keys}"\n}}\n'
    )
    return cfg


def test_file_written_by_python_is_served_by_lockana_server(tmp_path):
    db = tmp_path / "data" / "lockana.redb"
    db.parent.mkdir()
    with lockana.Vault.open(db) as v:
        init = v.init(shares=3, threshold=2, cipher="xchacha20-poly1305")
        v.unseal(init.keys[:2])
        v.enable_kv("secret")
        v.enable_kv("legacy", version=1)
        v.kv().put("app", {"password": "from-python", "port": 5432})
        v.kv().put("app", {"password": "from-python-v2", "port": 5432})
        v.kv("legacy").put("svc", {"token": "t1"})

    keys = tmp_path / "unseal.keys"
    keys.write_text("\n".join(init.keys[1:]) + "\n")
    keys.chmod(0o600)
    port = free_port()
    srv = start_server(
        ["server", "--config", str(_config(tmp_path, db, keys, port))], port, tmp_path / "server.log"
    )
    try:
        c = lockana.Client(srv.addr, token=init.root_token)
        assert c.kv().version == 2
        assert c.kv().get("app") == {"password": "from-python-v2", "port": 5432}
        assert c.kv().get("app", version=1)["password"] == "from-python"
        assert c.kv("legacy").get("svc") == {"token": "t1"}
        c.kv().put("from-server", {"written": "over http"})
    finally:
        srv.stop()
    assert srv.proc.returncode == 0, srv.log_tail()

    # And back: the server's write is in the file Python opens.
    with lockana.Vault.open(db, key_file=keys, token=init.root_token) as v:
        assert v.kv().get("from-server") == {"written": "over http"}
        assert v.kv().metadata("app")["current_version"] == 2
