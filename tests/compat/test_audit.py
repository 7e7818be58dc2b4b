"""Audit devices (OpenBao vs Lockana) and Lockana's own audit chain and notifications.

OpenBao only enables audit devices through the API when its config says
``unsafe_allow_api_audit_creation = true``, so this module starts its own pair of dev
servers: OpenBao with that config, Lockana ``--dev`` (where API creation is allowed).

Lockana-only tests start config-file servers: fail-closed on ``/dev/full``, the canary
(secret and root token never in the audit file, server log, error bodies or webhook
payloads), the hash chain checked by ``lockana audit verify`` (including across a
SIGHUP rotation), and the notification outbox surviving a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from compat_util import (
    Http,
    Pair,
    Recorder,
    Target,
    free_port,
    selected_targets,
    start_server,
    stop_server,
    uid,
    wait_healthy,
)

lockana_only = pytest.mark.skipif("lockana" not in selected_targets(), reason="COMPAT_TARGETS excludes lockana")

# Keys both products put in every audit entry (checked on OpenBao too, so the list is true).
ENTRY_KEYS = {"time", "type", "auth", "request"}
AUTH_KEYS = {"client_token", "accessor", "display_name", "policies", "token_policies", "policy_results", "token_type", "token_issue_time"}
REQUEST_KEYS = {"id", "operation", "namespace", "path", "client_token", "client_token_accessor", "remote_address", "remote_port"}
WEBHOOK_SECRET = "compat-webhook-secret-0123456789"


# --------------------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def audit_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("audit")


@pytest.fixture(scope="module")
def bao_audit(bao_bin, logs_dir, audit_dir):
    cfg = audit_dir / "bao.hcl"
    cfg.write_text("unsafe_allow_api_audit_creation = true\n")
    srv = start_server(
        "openbao-audit",
        lambda addr: [str(bao_bin), "server", "-dev", "-dev-root-token-id=root", f"-dev-listen-address={addr}", "-dev-no-store-token", f"-config={cfg}"],
        logs_dir,
        extra_env={"HOME": str(logs_dir)},
    )
    yield Target.for_server(srv, token="root")
    stop_server(srv)


@pytest.fixture(scope="module")
def lockana_audit(request, logs_dir):
    if "lockana" not in selected_targets():
        yield None
        return
    lockana_bin = request.getfixturevalue("lockana_bin")
    srv = start_server(
        "lockana-audit",
        lambda addr: [str(lockana_bin), "server", "--dev", "--dev-root-token-id", "root", "--dev-listen-address", addr],
        logs_dir,
        extra_env={"HOME": str(logs_dir)},
    )
    yield Target.for_server(srv, token="root")
    stop_server(srv)


@pytest.fixture
def audit_pair(bao_audit, lockana_audit, request) -> Pair:
    return Pair(bao_audit, lockana_audit, scenario=request.node.nodeid.rsplit("/", 1)[-1])


def entries(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------- OpenBao vs Lockana


def test_audit_enable_list_hash_disable_match_openbao(audit_pair, audit_dir):
    def scenario(r: Recorder):
        name = f"{r.key}-{r.t.name}"
        path = audit_dir / f"{name}.log"
        r.http("enable", "PUT", f"sys/audit/{r.key}", {"type": "file", "options": {"file_path": str(path)}})
        r.http("enable again: path in use", "PUT", f"sys/audit/{r.key}", {"type": "file", "options": {"file_path": str(path)}}, shape=False)
        r.http("enable /dev/full: test message fails", "PUT", f"sys/audit/{r.key}-full", {"type": "file", "options": {"file_path": "/dev/full"}}, shape=False)
        r.http("unknown type", "PUT", f"sys/audit/{r.key}-x", {"type": "nope"}, shape=False)
        status, body = r.http("list", "GET", "sys/audit", shape=False)
        dev = body["data"][f"{r.key}/"]
        assert dev["type"] == "file" and dev["options"]["file_path"] == str(path) and dev["path"] == f"{r.key}/"
        assert_same_keys(dev, {"type", "description", "options", "local", "path"})
        # The hash is keyed by each server's own audit salt.
        r.http("audit-hash", "PUT", f"sys/audit-hash/{r.key}", {"input": "hello"}, volatile={"hash"})
        r.http("disable", "DELETE", f"sys/audit/{r.key}")
        r.http("disable again", "DELETE", f"sys/audit/{r.key}")
        _, body = r.http("list after", "GET", "sys/audit", shape=False)
        assert f"{r.key}/" not in body["data"]

    audit_pair.run(scenario)


def assert_same_keys(d: dict, keys: set[str]) -> None:
    assert set(d) == keys, f"keys {sorted(d)} != {sorted(keys)}"


@pytest.mark.parametrize("which", ["openbao", "lockana"])
def test_audit_entries_shape_and_hmac_behaviour(which, bao_audit, lockana_audit, audit_dir):
    t = bao_audit if which == "openbao" else lockana_audit
    if t is None:
        pytest.skip("COMPAT_TARGETS excludes lockana")
    h = t.http
    key = uid("a")
    canary = f"canary-{uuid.uuid4().hex}"
    files = {n: audit_dir / f"{key}-{which}-{n}.log" for n in ("hashed", "raw", "acc")}
    opts = {"hashed": {}, "raw": {"log_raw": True}, "acc": {"hmac_accessor": False}}
    for n, f in files.items():
        r = h.put(f"sys/audit/{key}-{n}", {"type": "file", "options": {"file_path": str(f), **opts[n]}})
        assert r.status_code == 204, r.text
    try:
        assert h.put(f"secret/data/{key}", {"data": {"pw": canary}}).status_code == 200
        assert h.get(f"secret/data/{key}").json()["data"]["data"]["pw"] == canary
        assert h.get(f"secret/data/{key}", token="not-a-token").status_code == 403
        hashed = h.put(f"sys/audit-hash/{key}-hashed", {"input": canary}).json()["data"]["hash"]
    finally:
        for n in files:
            h.delete(f"sys/audit/{key}-{n}")
    assert hashed.startswith("hmac-sha256:") and len(hashed) == len("hmac-sha256:") + 64

    log = entries(files["hashed"])
    text = files["hashed"].read_text()
    assert canary not in text and "root" not in [e.get("auth", {}).get("client_token") for e in log]
    write = [e for e in log if e["type"] == "request" and e["request"].get("path") == f"secret/data/{key}" and e["request"]["operation"] in ("create", "update")]
    assert write, "no request entry for the write"
    w = write[0]
    assert ENTRY_KEYS <= set(w), sorted(w)
    assert AUTH_KEYS <= set(w["auth"]), sorted(w["auth"])
    assert REQUEST_KEYS <= set(w["request"]), sorted(w["request"])
    assert w["request"]["namespace"] == {"id": "root"}
    assert w["request"]["data"]["data"]["pw"] == hashed, "audit-hash gives the value in the log"
    for field in (w["auth"]["client_token"], w["auth"]["accessor"], w["request"]["client_token"]):
        assert field.startswith("hmac-sha256:")
    read = [e for e in log if e["type"] == "response" and e["request"].get("path") == f"secret/data/{key}" and e["request"]["operation"] == "read" and "response" in e]
    assert read and read[0]["response"]["data"]["data"]["pw"] == hashed
    assert any(e["request"]["id"] == read[0]["request"]["id"] and e["type"] == "request" for e in log), "request and response share an id"
    denied = [e for e in log if e.get("error") and "permission denied" in e["error"]]
    assert denied and denied[0]["request"]["client_token"].startswith("hmac-sha256:")

    assert canary in files["raw"].read_text(), "log_raw writes values in the clear"
    acc = [e for e in entries(files["acc"]) if e["type"] == "request" and e["request"].get("path") == f"secret/data/{key}"]
    assert not acc[0]["auth"]["accessor"].startswith("hmac-sha256:"), "hmac_accessor=false"
    assert acc[0]["auth"]["client_token"].startswith("hmac-sha256:")


# --------------------------------------------------------------------------- Lockana only: config-file servers


class Node:
    """A config-file Lockana server (inmem or redb), initialized and unsealed over HTTP."""

    def __init__(self, lockana_bin: Path, workdir: Path, extra_config: str, storage: str = 'storage "inmem" {}'):
        self.bin, self.dir = lockana_bin, workdir
        self.port = free_port()
        self.addr = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "lockana.hcl"
        self.config.write_text(f'{storage}\nlistener "tcp" {{\n  address = "127.0.0.1:{self.port}"\n  tls_disable = true\n}}\n{extra_config}\n')
        self.srv = None
        self.root = None
        self.keys: list[str] = []
        self.runs = 0

    def start(self, health_ok=(200, 501, 503), wrap: list[str] | None = None):
        self.runs += 1
        argv = [*(wrap or []), str(self.bin), "server", "--config", str(self.config)]
        self.srv = start_server(f"lockana-cfg-{self.runs}", lambda _a: argv, self.dir, health_ok=health_ok, port=self.port)
        return self

    def init_unseal(self):
        r = requests.put(f"{self.addr}/v1/sys/init", json={"secret_shares": 1, "secret_threshold": 1}, timeout=30)
        assert r.status_code == 200, r.text
        self.root, self.keys = r.json()["root_token"], r.json()["keys"]
        self.unseal()
        return self

    def unseal(self):
        r = requests.put(f"{self.addr}/v1/sys/unseal", json={"key": self.keys[0]}, timeout=30)
        assert r.status_code == 200 and not r.json()["sealed"], r.text
        wait_healthy(self.addr, self.srv.proc, 20)

    def http(self) -> Http:
        return Http(self.addr, self.root)

    def stop(self):
        if self.srv:
            stop_server(self.srv)

    def log(self) -> str:
        return self.srv.log_path.read_text(errors="replace")


@pytest.fixture
def node_factory(request, tmp_path):
    if "lockana" not in selected_targets():
        pytest.skip("COMPAT_TARGETS excludes lockana")
    nodes = []

    def make(extra: str, storage: str = 'storage "inmem" {}') -> Node:
        n = Node(request.getfixturevalue("lockana_bin"), tmp_path, extra, storage)
        nodes.append(n)
        return n

    yield make
    for n in nodes:
        n.stop()


class Receiver:
    """A webhook receiver on 127.0.0.1 that records bodies and checks signatures."""

    def __init__(self, port: int = 0):
        hits = self.hits = []

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hits.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, n: int, timeout: float = 20.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.hits) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.hits)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def signed_ok(hit: dict) -> bool:
    want = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), hit["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(hit["headers"].get("x-lockana-signature", ""), want)


def verify(lockana_bin: Path, *files: Path, args: tuple[str, ...] = (), env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(lockana_bin), "audit", "verify", *map(str, files), *args], capture_output=True, text=True, timeout=30, env=env)


@lockana_only
def test_fail_closed_dev_full_every_authenticated_request_gets_5xx_and_no_secret(node_factory):
    n = node_factory('audit "file" "full" {\n  options {\n    file_path = "/dev/full"\n  }\n}').start().init_unseal()
    h = n.http()
    canary = f"canary-{uuid.uuid4().hex}"
    for method, path, body in [
        ("PUT", "sys/mounts/secret", {"type": "kv", "options": {"version": "2"}}),
        ("PUT", "secret/data/x", {"data": {"pw": canary}}),
        ("GET", "secret/data/x", None),
        ("GET", "sys/mounts", None),
        ("GET", "sys/audit", None),
        ("GET", "auth/token/lookup-self", None),
    ]:
        r = h.request(method, path, json=body)
        assert 500 <= r.status_code < 600, f"{method} {path}: {r.status_code} {r.text}"
        assert canary not in r.text and n.root not in r.text
    # Unaudited paths keep answering, as in Vault.
    assert requests.get(f"{n.addr}/v1/sys/health", timeout=10).status_code == 200


@lockana_only
def test_canary_never_in_audit_log_server_log_errors_or_webhooks(node_factory, tmp_path):
    rx = Receiver()
    audit = tmp_path / "audit.log"
    n = node_factory(f'audit "file" "file" {{\n  options {{\n    file_path = "{audit}"\n  }}\n}}').start().init_unseal()
    h = n.http()
    canary = f"canary-{uuid.uuid4().hex}"
    try:
        assert h.put("sys/lockana/notify/channels/hook", {"type": "webhook", "url": f"http://127.0.0.1:{rx.port}/hook", "secret": WEBHOOK_SECRET}).status_code == 204
        assert h.put("sys/lockana/notify/routes/all", {"events": ["*"], "channels": ["hook"]}).status_code == 204
        assert h.put("sys/mounts/secret", {"type": "kv", "options": {"version": "2"}}).status_code == 204
        assert h.put("secret/data/app", {"data": {"pw": canary}}).status_code == 200
        assert h.get("secret/data/app").json()["data"]["data"]["pw"] == canary
        bodies = []
        for method, path, kw in [
            ("PUT", "secret/data/app", {"data": '{"data": {"pw": "' + canary + '"'}),  # truncated JSON
            ("PUT", "secret/data/app", {"data": '{"data": "' + canary + '"}'}),
            ("PUT", "secret/data/app", {"json": {"data": {"pw": canary}, "options": {"cas": canary}}}),
            ("PUT", "sys/audit/x", {"json": {"type": canary, "options": {"file_path": canary}}}),
            ("PUT", "sys/lockana/notify/channels/x", {"json": {"type": "webhook", "url": canary, "secret": canary}}),
            ("GET", f"secret/data/app?version={canary}", {}),
            ("PUT", "sys/mounts/canary", {"json": {"type": canary}}),  # once echoed in the error
        ]:
            r = h.request(method, path, **kw)
            assert r.status_code >= 400, f"{path}: {r.status_code}"
            bodies.append(r.text)
        bodies.append(h.get("secret/data/app", token=canary).text)
        bodies.append(h.get("secret/data/app", token=n.root + "x").text)
        hits = rx.wait(2)
        assert hits and all(signed_ok(x) for x in hits), "webhook signature"
        payloads = "".join(x["body"].decode() for x in rx.hits)
    finally:
        rx.close()
    n.stop()
    server_log = "\n".join(line for line in n.log().splitlines())
    for what, hay in [("audit file", audit.read_text()), ("server log", server_log), ("error bodies", "\n".join(bodies)), ("webhook payloads", payloads)]:
        assert canary not in hay, f"canary in {what}"
        assert n.root not in hay, f"root token in {what}"
    assert verify(n.bin, audit).returncode == 0


@lockana_only
def test_audit_verify_names_first_bad_line_and_chain_survives_sighup_rotation(node_factory, tmp_path):
    audit = tmp_path / "audit.log"
    rotated = tmp_path / "audit.log.1"
    n = node_factory(f'audit "file" "file" {{\n  options {{\n    file_path = "{audit}"\n  }}\n}}').start().init_unseal()
    h = n.http()
    assert h.put("sys/mounts/kv", {"type": "kv", "options": {"version": "1"}}).status_code == 204
    for i in range(3):
        assert h.put(f"kv/k{i}", {"v": str(i)}).status_code == 204
    audit.rename(rotated)
    n.srv.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while not audit.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    for i in range(3):
        assert h.get(f"kv/k{i}").status_code == 200
    n.stop()

    ok = verify(n.bin, rotated, audit)
    assert ok.returncode == 0 and ok.stdout.startswith("OK:"), ok.stdout + ok.stderr
    assert verify(n.bin, audit).returncode == 0, "a rotated-to file verifies alone (continues an earlier file)"
    swapped_files = verify(n.bin, audit, rotated)
    assert swapped_files.returncode == 1 and ":1:" in swapped_files.stderr

    lines = rotated.read_text().splitlines(keepends=True)
    assert len(lines) >= 8

    def check(mutated: list[str], line_no: int, label: str):
        p = tmp_path / f"tampered-{label}.log"
        p.write_text("".join(mutated))
        r = verify(n.bin, p)
        assert r.returncode == 1, f"{label}: {r.stdout}{r.stderr}"
        assert f"{p}:{line_no}:" in r.stderr, f"{label}: {r.stderr}"

    edited = list(lines)
    edited[4] = edited[4].replace('"update"', '"delete"', 1)
    assert edited[4] != lines[4]
    check(edited, 5, "edit")
    check(lines[:2] + lines[3:], 3, "delete")
    check(lines[:5] + [lines[6], lines[5]] + lines[7:], 6, "swap")
    # A partial last line (a torn write, or a cut mid-line) is not a break: the chain
    # verifies up to the line before it, and the report says so.
    torn = tmp_path / "torn.log"
    torn.write_text("".join(lines[:-1] + [lines[-1][: len(lines[-1]) // 2]]))
    r = verify(n.bin, torn)
    assert r.returncode == 0 and "last line is incomplete" in r.stderr, r.stdout + r.stderr


def audit_config(path: Path, extra: str = "") -> str:
    return f'audit "file" "file" {{\n  options {{\n    file_path = "{path}"\n{extra}  }}\n}}'


@lockana_only
def test_audit_verify_address_detects_lines_cut_from_the_end(node_factory, tmp_path):
    audit = tmp_path / "audit.log"
    n = node_factory(audit_config(audit, '    checkpoint_interval = "5"\n')).start().init_unseal()
    h = n.http()
    assert h.put("sys/mounts/kv", {"type": "kv", "options": {"version": "1"}}).status_code == 204
    for i in range(6):
        assert h.put(f"kv/k{i}", {"v": str(i)}).status_code == 204
    env = {**os.environ, "VAULT_TOKEN": n.root}
    ok = verify(n.bin, audit, args=("--address", n.addr), env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "head:" in ok.stderr and "signed checkpoint(s) verified" in ok.stderr, ok.stderr
    # Offline, with the head and key copied from the vault.
    head = h.get("sys/lockana/audit-head/file").json()["data"]
    dev = head["devices"]["file/"]
    lines = audit.read_text().splitlines(keepends=True)
    cut = tmp_path / "cut.log"
    cut.write_text("".join(lines[:-4]))
    assert verify(n.bin, cut).returncode == 0, "the chain alone cannot see a cut tail"
    online = verify(n.bin, cut, args=("--address", n.addr, "--device", "file"), env=env)
    assert online.returncode == 1 and "line(s) are missing from the end" in online.stderr, online.stderr
    offline = verify(n.bin, cut, args=("--head", dev["hash"], "--head-seq", str(dev["seq"]), "--public-key", head["public_key"]))
    assert offline.returncode == 1 and "line(s) are missing from the end" in offline.stderr, offline.stderr
    # A token without sudo cannot read the head.
    bad = verify(n.bin, audit, args=("--address", n.addr), env={**os.environ, "VAULT_TOKEN": "nope"})
    assert bad.returncode == 2, bad.stderr


@lockana_only
def test_disk_full_mid_line_fails_closed_and_file_verifies_to_last_complete_line(node_factory, tmp_path):
    """A real size limit (RLIMIT_FSIZE, SIGXFSZ ignored): the write that crosses it is
    cut mid-line, as on a full disk. inmem storage, so only the audit file grows."""
    audit = tmp_path / "audit.log"
    n = node_factory(audit_config(audit))
    n.start(wrap=["sh", "-c", 'trap "" XFSZ; ulimit -f 40; exec "$@"', "sh"]).init_unseal()
    h = n.http()
    assert h.put("sys/mounts/kv", {"type": "kv", "options": {"version": "1"}}).status_code == 204
    canary = f"canary-{uuid.uuid4().hex}"
    status = None
    for i in range(500):
        r = h.put(f"kv/k{i}", {"v": canary + "x" * 300})
        status = r.status_code
        assert canary not in r.text
        if status != 204:
            break
    assert status == 500, f"the size limit was never hit ({status})"
    # Fails closed from then on.
    r = h.get("kv/k0")
    assert r.status_code == 500 and canary not in r.text, r.text
    n.stop()
    data = audit.read_bytes()
    assert len(data) % 512 == 0, "the file stopped at the size limit"
    complete = data[: data.rfind(b"\n") + 1]
    for line in complete.splitlines():
        json.loads(line)
    r = verify(n.bin, audit)
    assert r.returncode == 0, r.stdout + r.stderr
    if not data.endswith(b"\n"):
        assert "last line is incomplete" in r.stderr, r.stderr


@lockana_only
def test_outbox_delivers_every_event_after_restart_once_receiver_is_up(node_factory, tmp_path):
    port = free_port()  # nothing listens here yet: the receiver is down
    n = node_factory("", storage=f'storage "redb" {{ path = "{tmp_path / "v.redb"}" }}').start().init_unseal()
    h = n.http()
    assert h.put("sys/lockana/notify/channels/hook", {"type": "webhook", "url": f"http://127.0.0.1:{port}/hook", "secret": WEBHOOK_SECRET}).status_code == 204
    assert h.put("sys/lockana/notify/routes/w", {"events": ["watched_path_written"], "paths": ["kv/*"], "channels": ["hook"]}).status_code == 204
    assert h.put("sys/mounts/kv", {"type": "kv", "options": {"version": "1"}}).status_code == 204
    for i in range(5):
        assert h.put(f"kv/k{i}", {"v": "x"}).status_code == 204
    n.stop()
    n.start()
    n.unseal()
    rx = Receiver(port)
    try:
        hits = rx.wait(5, timeout=30)
    finally:
        rx.close()
    ids = {json.loads(x["body"])["id"] for x in hits}
    paths = {json.loads(x["body"])["path"] for x in hits}
    assert len(ids) == 5 and paths == {f"kv/k{i}" for i in range(5)}, hits
    assert all(signed_ok(x) for x in hits)
