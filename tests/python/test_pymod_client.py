"""lockana.Client: the stdlib HTTP client, against `lockana server --dev` and, for the
project-TOTP call, against a stand-in that follows the documented contract."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

import lockana


@pytest.fixture
def client(dev_server) -> "lockana.Client":
    return lockana.Client(dev_server.addr, token="root")


def test_client_kv_round_trip(client):
    kv = client.kv()
    assert kv.version == 2
    name = "client/app"
    kv.put(name, {"password": "over-http", "n": 1})
    kv.put(name, {"password": "v2", "n": 2})
    assert kv.get(name) == {"password": "v2", "n": 2}
    assert kv.get(name, version=1)["password"] == "over-http"
    assert kv.patch(name, {"n": None, "added": "x"})["version"] == 3
    assert kv.get(name) == {"password": "v2", "added": "x"}
    assert "app" in kv.list("client")
    assert kv.metadata(name)["current_version"] == 3
    assert kv.subkeys(name) == {"password": None, "added": None}
    kv.delete(name)
    with pytest.raises(lockana.NotFound):
        kv.get(name)
    assert kv.read(name)["data"] is None  # 404 with data, like the in-process vault
    kv.undelete(name, [3])
    assert kv.get(name)["added"] == "x"
    kv.destroy(name, [1])
    kv.delete_metadata(name)
    with pytest.raises(lockana.NotFound):
        kv.metadata(name)


def test_client_and_vault_answer_alike(client, vault):
    for t in (client, vault):
        t.kv().put("alike", {"a": "b"})
        r = t.request("read", "secret/data/alike")
        assert r.status == 200 and r.data["data"] == {"a": "b"}
        assert r.mount_type == "kv"
        assert t.request("update", "secret/data/alike", {"data": {"c": "d"}}).status == 200


def test_client_errors_map_to_the_same_classes(client, dev_server):
    with pytest.raises(lockana.NotFound) as e:
        client.kv().get("never-written")
    assert e.value.status == 404
    with pytest.raises(lockana.NoRouteError):
        client.request("read", "nomount/x")
    client.kv().put("cas", {"a": "1"})
    with pytest.raises(lockana.CasMismatch) as e:
        client.kv().put("cas", {"a": "2"}, cas=0)
    assert e.value.status == 400
    with pytest.raises(lockana.UnsupportedOperation):
        client.request("list", "secret/data/x")
    bad = lockana.Client(dev_server.addr, token="wrong")
    with pytest.raises(lockana.PermissionDenied) as e:
        bad.request("read", "secret/data/cas")
    assert e.value.status == 403
    with pytest.raises(lockana.PermissionDenied):
        lockana.Client(dev_server.addr).request("read", "secret/data/cas")
    with pytest.raises(ValueError):
        lockana.Client("not a url")


def test_client_raw_answers_and_seal_status(client):
    st = client.seal_status()
    assert st["sealed"] is False and st["initialized"] is True
    assert client.request("read", "sys/health").data["initialized"] is True


def test_client_network_failure_is_an_oserror():
    from pymod_util import free_port

    c = lockana.Client(f"http://127.0.0.1:{free_port()}", token="root", timeout=2)
    with pytest.raises(urllib.error.URLError):
        c.kv("secret", version=2).get("x")


# ----------------------------------------------------------------- project env


class _ProjectEnvStandIn(BaseHTTPRequestHandler):
    """GET /v1/lockana/projects/<name>/env with X-Lockana-TOTP, as docs describe it."""

    code = "012345"
    secrets = {"DB_URL": "postgres://u:p@db/x", "QUOTE": 'it\'s "quoted"'}

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _json(self, status, body):
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/v1/lockana/projects/billing/env":
            return self._json(404, {"errors": []})
        if self.headers.get("X-Vault-Token"):
            return self._json(400, {"errors": ["a token was sent with a TOTP request"]})
        if self.headers.get("X-Lockana-TOTP") != self.code:
            return self._json(403, {"errors": ["permission denied"]})
        if urllib.parse.parse_qs(url.query).get("format") == ["dotenv"]:
            raw = "".join(f"{k}={json.dumps(v)}\n" for k, v in self.secrets.items()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
            return
        self._json(200, {"request_id": "r", "lease_id": "", "data": self.secrets, "warnings": None})


@pytest.fixture
def stand_in() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _ProjectEnvStandIn)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_project_env_contract(stand_in):
    c = lockana.Client(stand_in, token="some-token")  # the token must not be sent
    assert c.project_env("billing", "012345") == _ProjectEnvStandIn.secrets
    text = c.project_env("billing", "012345", format="dotenv")
    assert text.startswith("DB_URL=") and text.endswith("\n")
    with pytest.raises(lockana.PermissionDenied):
        c.project_env("billing", "999999")
    with pytest.raises(lockana.NotFound):
        c.project_env("other", "012345")
    with pytest.raises(TypeError):
        c.project_env("billing", 12345)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        c.project_env("billing", "012345", format="yaml")


def test_project_env_against_lockana(client):
    """Runs once the projects endpoint exists (the projects/TOTP issue); skips until then."""
    pyotp = pytest.importorskip("pyotp")
    try:
        created = client.request("update", "lockana/projects/pyclient", {"owner": "tests"})
    except (lockana.NoRouteError, lockana.NotFound, lockana.UnsupportedOperation):
        pytest.skip("lockana/projects is not implemented yet")
    totp = pyotp.parse_uri(created.data["otpauth_url"])
    client.kv().put("projects/pyclient", {"API_KEY": "k-123"})
    env = client.project_env("pyclient", totp.now())
    assert env == {"API_KEY": "k-123"}
