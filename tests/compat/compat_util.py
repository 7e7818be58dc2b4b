"""Helpers for the compatibility suite: servers, HTTP, shape comparison, scenarios."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import hvac
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]

HEALTH_WAIT_S = 20.0
HTTP_TIMEOUT_S = 30.0

# Keys OpenBao returns that HashiCorp Vault's documented API does not have; Lockana
# follows Vault, so they are dropped from OpenBao's side before comparing shapes.
OPENBAO_ONLY_KEYS = frozenset(
    {
        "current_metadata_version",  # KV v2 metadata: OpenBao's metadata CAS
        "metadata_cas_required",  # KV v2 metadata/config: OpenBao's metadata CAS
        "commit_date",  # sys/seal-status: OpenBao's name for Vault's build_date
    }
)
# Keys Vault returns that OpenBao dropped; Lockana may return them.
VAULT_ONLY_KEYS = frozenset(
    {
        "mount_type",  # response envelope, Vault >= 1.15
        "build_date",  # sys/seal-status
        "enterprise",  # sys/health
        "performance_standby",  # sys/health
    }
)


# --------------------------------------------------------------------------- servers

ALL_TARGETS = ("openbao", "lockana")


def selected_targets() -> list[str]:
    """COMPAT_TARGETS=openbao narrows the run while working on the suite; CI never sets it."""
    raw = os.environ.get("COMPAT_TARGETS", "")
    chosen = [t.strip() for t in raw.split(",") if t.strip()] or list(ALL_TARGETS)
    unknown = set(chosen) - set(ALL_TARGETS)
    if unknown:
        raise ValueError(f"COMPAT_TARGETS has unknown targets: {sorted(unknown)}")
    return chosen


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    addr: str  # http://127.0.0.1:PORT
    proc: subprocess.Popen
    log_path: Path

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "<no log>"
        return "\n".join(lines[-n:])


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env.update(extra or {})
    return env


def wait_healthy(addr: str, proc: subprocess.Popen | None, timeout: float, ok=(200,)) -> int:
    """Poll sys/health until its status is in `ok`; returns that status. Raises on timeout."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before becoming healthy")
        try:
            r = requests.get(f"{addr}/v1/sys/health", timeout=2)
            if r.status_code in ok:
                return r.status_code
            last = f"HTTP {r.status_code}: {r.text[:200]}"
        except requests.RequestException as e:
            last = repr(e)
        time.sleep(0.2)
    raise TimeoutError(f"sys/health not in {ok} after {timeout}s (last: {last})")


def start_server(
    name: str,
    argv_for: Callable[[str], list[str]],
    logs_dir: Path,
    extra_env: dict[str, str] | None = None,
    health_ok=(200,),
    port: int | None = None,
) -> Server:
    """Start a server (on a free port unless given), wait for health; kill it and raise with its log on failure."""
    port = port or free_port()
    hostport = f"127.0.0.1:{port}"
    log_path = logs_dir / f"{name}-{port}.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        argv_for(hostport),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=clean_env(extra_env),
        start_new_session=True,
    )
    log.close()
    srv = Server(name, f"http://{hostport}", proc, log_path)
    try:
        wait_healthy(srv.addr, proc, HEALTH_WAIT_S, ok=health_ok)
    except Exception as e:
        stop_server(srv)
        raise RuntimeError(
            f"{name} server did not come up at {srv.addr}: {e}\n--- log {log_path} ---\n{srv.log_tail()}"
        ) from None
    return srv


def stop_server(srv: Server, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
    """Signal the server and wait (bounded); SIGKILL if it does not exit in time."""
    if srv.proc.poll() is None:
        try:
            srv.proc.send_signal(sig)
            srv.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            srv.proc.kill()
            srv.proc.wait(timeout=timeout)
    return srv.proc.returncode


# --------------------------------------------------------------------------- HTTP

_DEFAULT = object()


class Http:
    """Raw HTTP against /v1/<path>; never follows redirects, always bounded."""

    def __init__(self, addr: str, token: str | None):
        self.addr = addr
        self.token = token
        self.session = requests.Session()

    def request(self, method: str, path: str, *, token: Any = _DEFAULT, headers=None, **kw):
        tok = self.token if token is _DEFAULT else token
        h = dict(headers or {})
        if tok is not None:
            h["X-Vault-Token"] = tok
        kw.setdefault("timeout", HTTP_TIMEOUT_S)
        kw.setdefault("allow_redirects", False)
        return self.session.request(method, f"{self.addr}/v1/{path.lstrip('/')}", headers=h, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, json_body=None, **kw):
        if json_body is not None:
            kw["json"] = json_body
        return self.request("POST", path, **kw)

    def put(self, path, json_body=None, **kw):
        if json_body is not None:
            kw["json"] = json_body
        return self.request("PUT", path, **kw)

    def patch(self, path, json_body, content_type="application/merge-patch+json", **kw):
        h = dict(kw.pop("headers", None) or {})
        h["Content-Type"] = content_type
        return self.request("PATCH", path, data=json.dumps(json_body), headers=h, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def list(self, path, **kw):
        return self.request("LIST", path, **kw)

    def raw(self, method: str, raw_path: str, body: bytes | None = None, headers=None, token: Any = _DEFAULT):
        """Send the path bytes exactly as given (no dot-segment or slash normalisation)."""
        host, port = self.addr.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=HTTP_TIMEOUT_S)
        h = dict(headers or {})
        tok = self.token if token is _DEFAULT else token
        if tok is not None:
            h["X-Vault-Token"] = tok
        try:
            conn.request(method, raw_path, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, data
        finally:
            conn.close()


@dataclass
class Target:
    name: str
    addr: str
    token: str
    client: hvac.Client
    http: Http
    server: Server | None = None

    @classmethod
    def for_server(cls, srv: Server, token: str) -> "Target":
        client = hvac.Client(url=srv.addr, token=token, timeout=HTTP_TIMEOUT_S)
        return cls(srv.name, srv.addr, token, client, Http(srv.addr, token), srv)

    def __repr__(self) -> str:
        return f"Target({self.name} @ {self.addr})"


def uid(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def body_json(resp: requests.Response) -> Any:
    if not resp.content:
        return None
    try:
        return resp.json()
    except ValueError:
        return {"<non-json>": resp.text[:200]}


# --------------------------------------------------------------------------- shapes


def shape(v: Any, drop: frozenset[str] = frozenset()) -> Any:
    """The type structure of a JSON value: dict keys kept, leaves replaced by type names."""
    if isinstance(v, dict):
        return {k: shape(x, drop) for k, x in sorted(v.items()) if k not in drop}
    if isinstance(v, list):
        elems = sorted({json.dumps(shape(x, drop), sort_keys=True) for x in v})
        return ["list", *[json.loads(e) for e in elems]]
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "str"
    if v is None:
        return "null"
    return type(v).__name__


def shape_diff(ref: Any, got: Any, where: str = "$") -> list[str]:
    """Human-readable differences between two shapes (ref = OpenBao, got = Lockana)."""
    out: list[str] = []
    if isinstance(ref, dict) and isinstance(got, dict):
        for k in sorted(set(ref) - set(got)):
            out.append(f"{where}.{k}: missing (openbao has {json.dumps(ref[k])[:80]})")
        for k in sorted(set(got) - set(ref)):
            out.append(f"{where}.{k}: unexpected extra key ({json.dumps(got[k])[:80]})")
        for k in sorted(set(ref) & set(got)):
            out.extend(shape_diff(ref[k], got[k], f"{where}.{k}"))
    elif ref != got:
        out.append(f"{where}: openbao {json.dumps(ref)[:120]} vs lockana {json.dumps(got)[:120]}")
    return out


def assert_same_shape(ref_body: Any, got_body: Any, label: str = "") -> None:
    # Either side may carry the other product's extra keys; neither is required.
    drop = OPENBAO_ONLY_KEYS | VAULT_ONLY_KEYS
    d = shape_diff(shape(ref_body, drop), shape(got_body, drop))
    assert not d, f"shape differs {label}:\n  " + "\n  ".join(d)


# --------------------------------------------------------------------------- scenarios


@dataclass
class Step:
    label: str
    status: Any  # HTTP status, or hvac exception class name / "ok"
    body: Any


@dataclass
class Recorder:
    """Runs a scenario's requests on one target; compares each step with a reference run."""

    t: Target
    key: str  # unique name shared by both runs so paths and listings match
    reference: list[Step] | None = None
    steps: list[Step] = field(default_factory=list)
    compare_shape: bool = True

    def _record(self, label: str, status: Any, body: Any, compare_shape: bool | None) -> None:
        step = Step(label, status, body)
        idx = len(self.steps)
        self.steps.append(step)
        if self.reference is None:
            return
        assert idx < len(self.reference), f"step {label!r} has no reference step"
        ref = self.reference[idx]
        assert ref.label == label, f"scenario diverged: {ref.label!r} vs {label!r}"
        assert step.status == ref.status, (
            f"[{label}] status: openbao {ref.status} vs {self.t.name} {step.status}\n"
            f"  openbao body: {json.dumps(ref.body)[:400]}\n  {self.t.name} body: {json.dumps(body)[:400]}"
        )
        if compare_shape if compare_shape is not None else self.compare_shape:
            assert_same_shape(ref.body, body, f"[{label}]")

    def http(self, label: str, method: str, path: str, json_body=None, shape: bool | None = None, **kw):
        """One raw HTTP request; returns (status, parsed body)."""
        if json_body is not None:
            kw["json"] = json_body
        r = self.t.http.request(method, path, **kw)
        b = body_json(r)
        self._record(label, r.status_code, b, shape)
        return r.status_code, b

    def patch(self, label: str, path: str, json_body, shape: bool | None = None, **kw):
        r = self.t.http.patch(path, json_body, **kw)
        b = body_json(r)
        self._record(label, r.status_code, b, shape)
        return r.status_code, b

    def hvac(self, label: str, fn: Callable[[hvac.Client], Any], shape: bool | None = None):
        """One hvac call; records 'ok' + result, or the hvac exception's class name."""
        try:
            res = fn(self.t.client)
        except hvac.exceptions.VaultError as e:
            self._record(label, type(e).__name__, {"errors": list(e.errors or [])}, False)
            return e
        if isinstance(res, requests.Response):
            res = body_json(res) if res.content else {"<status>": res.status_code}
        self._record(label, "ok", res, shape)
        return res


@dataclass
class Pair:
    openbao: Target
    lockana: Target | None

    def run(self, scenario: Callable[[Recorder], None], compare_shape: bool = True) -> None:
        """Run on OpenBao (validates the test), then on Lockana comparing every step."""
        key = uid("p")
        ref = Recorder(self.openbao, key, compare_shape=compare_shape)
        scenario(ref)
        if self.lockana is None:
            return
        got = Recorder(self.lockana, key, reference=ref.steps, compare_shape=compare_shape)
        scenario(got)
        assert len(got.steps) == len(ref.steps)
