"""Helpers for the compatibility suite: servers, HTTP, shape comparison, scenarios."""

from __future__ import annotations

import fnmatch
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time
import tomllib
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


# --------------------------------------------------------------------------- differential
#
# The suite compares whole answers, not shapes: status, Content-Type and the JSON body
# after `normalize`, which replaces only values that differ between any two runs of the
# same server (random ids, tokens, accessors, timestamps, nonces, countdowns). Every other
# difference must be listed in divergences.toml with its reason, or the step fails.

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Service/batch/recovery tokens: Vault `hvs.`, OpenBao `s.`/`b.`, Lockana `lvs.`/`lvb.`.
_TOKEN = re.compile(r"\b(?:hv[sbr]|lv[sbr]|[sbr])\.[A-Za-z0-9_-]{16,}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)")
# The product's own version in builtin plugin versions: `v2.7.2+builtin.bao`.
_BUILTIN = re.compile(r"v\d+\.\d+\.\d+[^\s\"]*\+builtin(?:\.[a-z]+)?")
_ADDR = re.compile(r"https?://127\.0\.0\.1:\d+")
# A generated TOTP key inside an otpauth URL.
_OTP_SECRET = re.compile(r"([?&]secret=)[A-Z2-7]+=*")
# A mount's accessor in CLI tables: `kv_3a2ed264`, `auth_token_7a815f56`.
_MOUNT_ACCESSOR = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)*_[0-9a-f]{8}\b")
_ACCESSOR_LINE = re.compile(r"^(\S*accessor\S*\s+)\S+$", re.M)
_TTL_LINE = re.compile(r"^(ttl\s+)\S+$", re.M)
# `bao secrets move`/`auth move` print this line only while a poll finds the move still
# running: a matter of timing (OpenBao moves in the background, Lockana in one commit).
_MOVE_WAIT_LINE = re.compile(r"^Waiting for terminal status in migration of .*\n", re.M)
# Table rows with a human-readable time (`bao operator key-status`, `rotate`).
_HUMAN_TIME_LINE = re.compile(r"^(Install Time\s+).*$", re.M)
_TIME_LINE = re.compile(r"^((?:creation_time|expire_time|issue_time|last_renewal\S*)\s+)\S+$", re.M)

# Keys whose value is a per-run id or instant, whatever its form (integers included).
_VOLATILE_KEYS = {
    "request_id": "<request_id>",
    "nonce": "<nonce>",
    "cluster_id": "<cluster_id>",
    "cluster_name": "<cluster_name>",
    "server_time_utc": "<time>",
    "creation_time": "<time>",
    "issue_time": "<time>",
    "expire_time": "<time>",
    "last_renewal_time": "<time>",
    "last_renewal": "<time>",
    "last_update_time": "<time>",
    "generated": "<time>",  # TOTP code: the second it was made
}


def _norm_str(s: str) -> str:
    s = _UUID.sub("<uuid>", s)
    s = _TOKEN.sub("<token>", s)
    s = _TIME.sub("<time>", s)
    s = _BUILTIN.sub("<builtin>", s)
    s = _OTP_SECRET.sub(r"\1<secret>", s)
    return _ADDR.sub("<addr>", s)


def normalize(v: Any, volatile: frozenset[str] = frozenset()) -> Any:
    """The one normalizer (README.md, docs/compat.md): random values become placeholders.

    `volatile` names extra keys a scenario declares random (TOTP key material, unseal keys).
    """

    def walk(x: Any, key: str | None) -> Any:
        if key is not None and x not in (None, "", 0):
            if key in volatile:
                return f"<{key}>"
            if key in _VOLATILE_KEYS:
                return _VOLATILE_KEYS[key]
            if key.endswith("accessor") and isinstance(x, str):
                return "<accessor>"
            if key.endswith("accessors") and isinstance(x, list):
                return ["<accessor>" for _ in x]
            if key in ("ttl", "lease_duration") and isinstance(x, int) and not isinstance(x, bool):
                # A countdown: one second may pass between the two servers' answers.
                return f"<ttl~{round(x / 60)}m>"
            if key == "version" and isinstance(x, str) and re.match(r"^v?\d+\.\d+", x):
                return "<product-version>"
            if key == "lease_id" and isinstance(x, str) and "/" in x:
                return x.rsplit("/", 1)[0] + "/<lease>"
        if isinstance(x, dict):
            return {_norm_str(k): walk(val, k) for k, val in x.items()}
        if isinstance(x, list):
            return [walk(e, None) for e in x]
        if isinstance(x, str):
            return _norm_str(x)
        return x

    return walk(v, None)


def normalize_text(s: str) -> str:
    """CLI output that is not JSON: the same placeholders, found by pattern and by table row."""
    s = _norm_str(s)
    s = _ACCESSOR_LINE.sub(r"\1<accessor>", s)
    s = _MOUNT_ACCESSOR.sub("<accessor>", s)
    s = _TTL_LINE.sub(r"\1<ttl>", s)
    s = _MOVE_WAIT_LINE.sub("", s)
    s = _HUMAN_TIME_LINE.sub(r"\1<time>", s)
    return _TIME_LINE.sub(r"\1<time>", s)


def json_diff(ref: Any, got: Any, where: str = "$") -> list[tuple[str, str]]:
    """(path, description) for every place two normalized JSON values differ."""
    out: list[tuple[str, str]] = []
    if isinstance(ref, dict) and isinstance(got, dict):
        for k in sorted(set(ref) - set(got)):
            out.append((f"{where}.{k}", f"missing on lockana (openbao: {json.dumps(ref[k])[:160]})"))
        for k in sorted(set(got) - set(ref)):
            out.append((f"{where}.{k}", f"only on lockana ({json.dumps(got[k])[:160]})"))
        for k in sorted(set(ref) & set(got)):
            out.extend(json_diff(ref[k], got[k], f"{where}.{k}"))
    elif isinstance(ref, list) and isinstance(got, list) and len(ref) == len(got):
        for i, (a, b) in enumerate(zip(ref, got)):
            out.extend(json_diff(a, b, f"{where}[{i}]"))
    elif ref != got or type(ref) is not type(got):
        out.append((where, f"openbao {json.dumps(ref)[:240]} vs lockana {json.dumps(got)[:240]}"))
    return out


def content_type(resp: requests.Response) -> str | None:
    ct = resp.headers.get("Content-Type")
    return ct.split(";")[0].strip() if ct else None


@dataclass
class Divergence:
    """One known difference: where (scenario globs), what (diff-path globs), why."""

    id: str
    scenarios: list[str]
    what: list[str]
    reason: str
    pending: str = ""  # who is expected to remove it (work in flight), if anyone
    used: int = 0
    seen: int = 0  # steps of a matching scenario that ran

    def covers_scenario(self, sid: str) -> bool:
        return any(_glob(sid, g) for g in self.scenarios)

    def covers(self, sid: str, path: str) -> bool:
        return self.covers_scenario(sid) and any(_glob(path, w) for w in self.what)


def _glob(s: str, pattern: str) -> bool:
    """`*` and `?` are wildcards; brackets are literal (`$.errors[0]`)."""
    return fnmatch.fnmatchcase(s, pattern.replace("[", "[[]"))


DIVERGENCES_FILE = Path(__file__).with_name("divergences.toml")


def load_divergences(path: Path = DIVERGENCES_FILE) -> list[Divergence]:
    raw = tomllib.loads(path.read_text())
    out = []
    ids = set()
    for e in raw.get("divergence", []):
        d = Divergence(
            id=e["id"],
            scenarios=list(e["scenarios"]),
            what=list(e["what"]),
            reason=e["reason"].strip(),
            pending=e.get("pending", ""),
        )
        if d.id in ids:
            raise ValueError(f"divergences.toml: duplicate id {d.id!r}")
        if not d.reason:
            raise ValueError(f"divergences.toml: {d.id!r} has no reason")
        ids.add(d.id)
        out.append(d)
    return out


DIVERGENCES: list[Divergence] = load_divergences()


def unexplained(sid: str, diffs: list[tuple[str, str]]) -> list[str]:
    """The differences no divergence covers; marks the ones that are covered as used."""
    for d in DIVERGENCES:
        if d.covers_scenario(sid):
            d.seen += 1
    left = []
    for path, desc in diffs:
        hit = [d for d in DIVERGENCES if d.covers(sid, path)]
        for d in hit:
            d.used += 1
        if not hit:
            left.append(f"{path}: {desc}")
    if left and _RECORD_TO:
        # Maintenance mode (README.md): collect every unexplained difference, fail none.
        with open(_RECORD_TO, "a") as f:
            for line in left:
                f.write(json.dumps({"scenario": sid, "diff": line}) + "\n")
        return []
    return left


_RECORD_TO = os.environ.get("COMPAT_RECORD_DIFFS", "")


def stale_divergences(scenario_prefix: str) -> list[Divergence]:
    """Entries scoped to scenarios under `scenario_prefix` that ran but absorbed nothing."""
    # Entries marked `pending` await work in flight: when that lands they are reported
    # loudly at the end of the run (conftest.py) instead of failing the test.
    return [
        d
        for d in DIVERGENCES
        if d.seen and not d.used and not d.pending and all(g.startswith(scenario_prefix) for g in d.scenarios)
    ]


def compare_http(
    sid: str,
    ref: tuple[int, str | None, Any],
    got: tuple[int, str | None, Any],
    volatile: frozenset[str] = frozenset(),
    body: bool = True,
) -> list[str]:
    """Unexplained differences between two (status, content-type, body) answers."""
    diffs: list[tuple[str, str]] = []
    if ref[0] != got[0]:
        diffs.append(("status", f"openbao {ref[0]} vs lockana {got[0]}"))
    if ref[1] != got[1]:
        diffs.append(("content-type", f"openbao {ref[1]!r} vs lockana {got[1]!r}"))
    if body:
        diffs.extend(json_diff(normalize(ref[2], volatile), normalize(got[2], volatile)))
    return unexplained(sid, diffs)


# --------------------------------------------------------------------------- scenarios


@dataclass
class Step:
    label: str
    status: Any  # HTTP status, or hvac exception class name / "ok"
    body: Any
    content_type: str | None = None


@dataclass
class Recorder:
    """Runs a scenario's requests on one target; compares each step with a reference run.

    Each step compares status, Content-Type and the whole normalized body (`compare_http`);
    `shape=False` narrows a step to status and Content-Type, for answers that list what
    other tests on the shared servers made (every mount, every policy).
    """

    t: Target
    key: str  # unique name shared by both runs so paths and listings match
    reference: list[Step] | None = None
    steps: list[Step] = field(default_factory=list)
    compare_shape: bool = True
    scenario: str = ""  # the test's id; a step's id is "<scenario>/<label>"

    def _record(
        self,
        label: str,
        status: Any,
        body: Any,
        compare_shape: bool | None,
        ctype: str | None = None,
        volatile: frozenset[str] = frozenset(),
    ) -> None:
        step = Step(label, status, body, ctype)
        idx = len(self.steps)
        self.steps.append(step)
        if self.reference is None:
            return
        assert idx < len(self.reference), f"step {label!r} has no reference step"
        ref = self.reference[idx]
        assert ref.label == label, f"scenario diverged: {ref.label!r} vs {label!r}"
        whole = compare_shape if compare_shape is not None else self.compare_shape
        sid = f"{self.scenario}/{label}"
        left = compare_http(
            sid, (ref.status, ref.content_type, ref.body), (status, ctype, body), volatile, body=whole
        )
        assert not left, (
            f"[{sid}] differs from openbao (not listed in tests/compat/divergences.toml):\n  "
            + "\n  ".join(left)
            + f"\n  openbao: {ref.status} {json.dumps(ref.body)[:600]}\n  lockana: {status} {json.dumps(body)[:600]}"
        )

    def http(
        self, label: str, method: str, path: str, json_body=None, shape: bool | None = None, volatile=(), **kw
    ):
        """One raw HTTP request; returns (status, parsed body)."""
        if json_body is not None:
            kw["json"] = json_body
        r = self.t.http.request(method, path, **kw)
        b = body_json(r)
        self._record(label, r.status_code, b, shape, content_type(r), frozenset(volatile))
        return r.status_code, b

    def patch(self, label: str, path: str, json_body, shape: bool | None = None, **kw):
        r = self.t.http.patch(path, json_body, **kw)
        b = body_json(r)
        self._record(label, r.status_code, b, shape, content_type(r))
        return r.status_code, b

    def hvac(self, label: str, fn: Callable[[hvac.Client], Any], shape: bool | None = None, volatile=()):
        """One hvac call; records 'ok' + result, or the hvac exception's class name and errors."""
        try:
            res = fn(self.t.client)
        except hvac.exceptions.VaultError as e:
            self._record(label, type(e).__name__, {"errors": list(e.errors or [])}, shape, None, frozenset(volatile))
            return e
        if isinstance(res, requests.Response):
            res = body_json(res) if res.content else {"<status>": res.status_code}
        self._record(label, "ok", res, shape, None, frozenset(volatile))
        return res


@dataclass
class Pair:
    openbao: Target
    lockana: Target | None
    scenario: str = "scenario"

    def run(
        self, scenario: Callable[[Recorder], None], compare_shape: bool = True, check_stale: bool = True
    ) -> None:
        """Run on OpenBao (validates the test), then on Lockana comparing every step."""
        key = uid("p")
        ref = Recorder(self.openbao, key, compare_shape=compare_shape, scenario=self.scenario)
        scenario(ref)
        if self.lockana is None:
            return
        got = Recorder(
            self.lockana, key, reference=ref.steps, compare_shape=compare_shape, scenario=self.scenario
        )
        scenario(got)
        assert len(got.steps) == len(ref.steps)
        if not check_stale:
            return
        stale = stale_divergences(self.scenario + "/")
        assert not stale, "listed in tests/compat/divergences.toml but no longer different: " + ", ".join(
            d.id for d in stale
        ) + " (remove them, and their rows in docs/compat.md)"
