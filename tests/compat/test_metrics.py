"""`sys/metrics`: Vault's JSON telemetry shape and the Prometheus text format.

- The JSON answer of both dev servers (which, as Vault's, serve metrics without a
  token) is compared by shape: the same top-level keys, and for every metric both
  report, the same section and the same entry keys (values differ by nature).
- Lockana's Prometheus scrape is read with prometheus_client's own text parser, and
  the counters must move after real requests: KV writes and reads per mount, a
  failed login series ending in a lockout, a new token.
- Config-file servers check the access rules: a token with `read` on `sys/metrics`
  (403 without), `unauthenticated_metrics_access` on the listener, and Prometheus
  refused as Vault refuses it when `prometheus_retention_time` is 0.
"""

from __future__ import annotations

import signal

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from compat_util import Http, free_port, selected_targets, start_server, stop_server, uid

SECTIONS = ("Gauges", "Counters", "Samples")


def scrape(h: Http, **kw) -> dict[str, list]:
    """`?format=prometheus` parsed by prometheus_client: family name -> samples."""
    r = h.get("sys/metrics", params={"format": "prometheus"}, **kw)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {f.name: f.samples for f in text_string_to_metric_families(r.text)}


def value(fams: dict[str, list], family: str, sample: str | None = None, **labels) -> float:
    """One sample's value (0 when the family or series is absent: nothing counted yet)."""
    for s in fams.get(family, []):
        if s.name == (sample or family) and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return 0.0


def entries(body: dict) -> dict[str, tuple[str, frozenset]]:
    """Metric name -> (section, entry keys) of a go-metrics JSON answer."""
    out = {}
    for section in SECTIONS:
        for e in body[section]:
            out[e["Name"]] = (section, frozenset(e))
    return out


# Names Lockana borrows from Vault that OpenBao reports in the interval of a request.
# Its periodic gauges (vault.core.unsealed, vault.expire.num_leases, ...) show only in
# some intervals; they are compared whenever both report them.
SHARED = (
    "vault.core.handle_request",
    "vault.audit.log_request_failure",
    "vault.audit.log_response_failure",
)


def metrics_json(t) -> dict:
    """The JSON answer right after a request. OpenBao reports only the current 10-second
    interval, so a request is made first, and again if the interval turned in between."""
    for _ in range(3):
        assert t.http.get("sys/mounts").status_code == 200
        # Both dev servers serve metrics without a token, as Vault's does.
        r = Http(t.addr, None).get("sys/metrics")
        assert r.status_code == 200, (t.name, r.text)
        assert r.headers["Content-Type"] == "application/json", t.name
        body = r.json()
        if all(name in entries(body) for name in SHARED):
            break
    return body


def test_metrics_json_shape_matches_openbao(openbao, lockana):
    ref, got = metrics_json(openbao), metrics_json(lockana)
    assert set(got) == set(ref) == {"Timestamp", "Gauges", "Points", "Counters", "Samples"}
    assert isinstance(got["Timestamp"], str) and got["Timestamp"].endswith(" +0000 UTC")
    ref_e, got_e = entries(ref), entries(got)
    common = set(ref_e) & set(got_e)
    for name in SHARED:
        assert name in common, f"{name} not reported by both: bao={name in ref_e} lockana={name in got_e}"
    assert len(common) >= 5, sorted(common)
    for name in sorted(common):
        assert got_e[name] == ref_e[name], f"{name}: lockana {got_e[name]} vs openbao {ref_e[name]}"


def test_metrics_unknown_format_is_refused_as_vault_does(target):
    r = Http(target.addr, None).get("sys/metrics", params={"format": "xml"})
    assert (r.status_code, r.headers["Content-Type"], r.text) == (
        400,
        "text/plain",
        'metric response format "xml" unknown',
    )


@pytest.mark.skipif("lockana" not in selected_targets(), reason="COMPAT_TARGETS excludes lockana")
def test_lockana_prometheus_counters_move(lockana):
    h = Http(lockana.addr, "root")
    before = scrape(h)
    # KV v2 at secret/: two writes, three reads.
    path = f"secret/data/{uid('m')}"
    for i in range(2):
        assert h.post(path, {"data": {"n": str(i)}}).status_code == 200
    for _ in range(3):
        assert h.get(path).status_code == 200
    # A token, then a user locked out by five bad passwords.
    assert h.post("auth/token/create", {"ttl": "1h"}).status_code == 200
    mount = uid("upm")
    assert h.post(f"sys/auth/{mount}", {"type": "userpass"}).status_code == 204
    assert h.post(f"auth/{mount}/users/dana", {"password": "right"}).status_code == 204
    for _ in range(5):
        assert h.post(f"auth/{mount}/login/dana", {"password": "wrong"}, token=None).status_code == 400
    after = scrape(h)

    def grew(family, sample=None, by=1.0, **labels):
        b, a = value(before, family, sample, **labels), value(after, family, sample, **labels)
        assert a - b >= by, f"{sample or family}{labels}: {b} -> {a}, expected +{by}"

    grew("vault_route_update_secret_", "vault_route_update_secret__count", by=2)
    grew("vault_route_read_secret_", "vault_route_read_secret__count", by=3)
    # Every bucket agrees with the count (+Inf) and only grows.
    grew("vault_route_read_secret_", "vault_route_read_secret__bucket", by=3, le="+Inf")
    grew("vault_core_handle_request", "vault_core_handle_request_count", by=5)
    grew("vault_core_handle_login_request", "vault_core_handle_login_request_count", by=5)
    grew("lockana_auth_login_failure", "lockana_auth_login_failure_total", by=5)
    grew("lockana_auth_lockouts", "lockana_auth_lockouts_total", by=1)
    grew("vault_token_count", by=1)
    grew("vault_expire_num_leases", by=1)
    grew("lockana_storage_commit", "lockana_storage_commit_count", by=3)
    route = f"vault_route_update_auth_{mount.replace('-', '_')}_"
    grew(route, f"{route}_count", by=5)
    assert value(after, "vault_core_locked_users") >= 1
    assert value(after, "vault_core_unsealed") == 1
    # A route series is a histogram: buckets are cumulative and end at the count.
    buckets = [s for s in after["vault_route_read_secret_"] if s.name.endswith("_bucket")]
    counts = [s.value for s in buckets]
    assert counts == sorted(counts) and buckets[-1].labels["le"] == "+Inf"
    assert counts[-1] == value(after, "vault_route_read_secret_", "vault_route_read_secret__count")


# --- config-file servers: access rules ---------------------------------------------


class ConfigServer:
    def __init__(self, lockana_bin, workdir, telemetry: str, listener_extra: str = ""):
        self.port = free_port()
        self.addr = f"http://127.0.0.1:{self.port}"
        cfg = workdir / f"lockana-{self.port}.hcl"
        cfg.write_text(
            f'storage "redb" {{ path = "{workdir / f"m-{self.port}.redb"}" }}\n'
            f'listener "tcp" {{\n  address = "127.0.0.1:{self.port}"\n  tls_disable = true\n{listener_extra}}}\n'
            f"{telemetry}\n"
        )
        self.srv = start_server(
            f"lockana-metrics-{self.port}",
            lambda _addr: [str(lockana_bin), "server", "--config", str(cfg)],
            workdir,
            extra_env={"HOME": str(workdir)},
            health_ok=(501,),
            port=self.port,
        )
        h = Http(self.addr, None)
        init = h.post("sys/init", {"secret_shares": 1, "secret_threshold": 1}).json()
        self.key = init["keys_base64"][0]
        self.root = init["root_token"]

    def unseal(self):
        assert Http(self.addr, None).post("sys/unseal", {"key": self.key}).status_code == 200

    def stop(self):
        stop_server(self.srv, sig=signal.SIGTERM, timeout=15)


@pytest.fixture
def servers(lockana_bin, tmp_path):
    made: list[ConfigServer] = []

    def make(*args, **kw) -> ConfigServer:
        s = ConfigServer(lockana_bin, tmp_path, *args, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


@pytest.mark.skipif("lockana" not in selected_targets(), reason="COMPAT_TARGETS excludes lockana")
def test_lockana_metrics_need_read_on_sys_metrics(servers):
    s = servers('telemetry {\n  prometheus_retention_time = "30s"\n  disable_hostname = true\n}')
    h = Http(s.addr, None)
    # Sealed: the token cannot be checked, so the answer is Vault's 503.
    assert h.get("sys/metrics", token=s.root).status_code == 503
    s.unseal()
    r = h.get("sys/metrics")
    assert r.status_code == 403, r.text
    assert h.get("sys/metrics", token="not-a-token").status_code == 403
    root = Http(s.addr, s.root)
    assert root.get("sys/metrics").headers["Content-Type"] == "application/json"
    fams = scrape(root)
    # redb groups concurrent commits; the group sizes are a histogram of their own.
    assert "lockana_storage_group_commit_batches" in fams
    assert value(fams, "vault_core_unsealed") == 1
    # A policy with `read` on sys/metrics is enough; one without it is not.
    assert root.put("sys/policies/acl/scraper", {"policy": 'path "sys/metrics" { capabilities = ["read"] }'}).status_code == 204
    assert root.put("sys/policies/acl/other", {"policy": 'path "secret/*" { capabilities = ["read"] }'}).status_code == 204
    scraper = root.post("auth/token/create", {"policies": ["scraper"]}).json()["auth"]["client_token"]
    other = root.post("auth/token/create", {"policies": ["other"]}).json()["auth"]["client_token"]
    assert h.get("sys/metrics", token=other).status_code == 403
    scraped = scrape(h, token=scraper)
    assert value(scraped, "vault_token_count") >= 3


@pytest.mark.skipif("lockana" not in selected_targets(), reason="COMPAT_TARGETS excludes lockana")
def test_lockana_unauthenticated_metrics_access_and_prometheus_off(servers):
    s = servers(
        'telemetry {\n  prometheus_retention_time = "0"\n}',
        listener_extra="  telemetry {\n    unauthenticated_metrics_access = true\n  }\n",
    )
    h = Http(s.addr, None)
    # Served without a token, even while sealed (then it says so).
    r = h.get("sys/metrics")
    assert r.status_code == 200, r.text
    gauges = {g["Name"]: g["Value"] for g in r.json()["Gauges"]}
    # Without `disable_hostname`, gauge names carry the host name, as Vault's do.
    unsealed = [v for n, v in gauges.items() if n.startswith("vault.") and n.endswith(".core.unsealed")]
    assert unsealed == [0], gauges
    r = h.get("sys/metrics", params={"format": "prometheus"})
    assert (r.status_code, r.headers["Content-Type"], r.text) == (400, "text/plain", "prometheus is not enabled")
    # The OpenMetrics Accept header asks for Prometheus too.
    r = h.get("sys/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.status_code == 400 and r.text == "prometheus is not enabled"
    s.unseal()
    gauges = {g["Name"]: g["Value"] for g in h.get("sys/metrics").json()["Gauges"]}
    assert [v for n, v in gauges.items() if n.endswith(".core.unsealed")] == [1]
    assert requests.put(f"{s.addr}/v1/sys/metrics", timeout=10).status_code == 405
