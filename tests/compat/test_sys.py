"""sys/* endpoints and KV v1 mounts: OpenBao vs Lockana."""

from __future__ import annotations

import pytest

from compat_util import Recorder, assert_same_shape, body_json, uid


# --------------------------------------------------------------------------- health / init / seal


def test_health_unsealed_active(target):
    r = target.http.get("sys/health", token=None)
    assert r.status_code == 200, (target.name, r.status_code, r.text)
    b = r.json()
    assert b["initialized"] is True and b["sealed"] is False and b["standby"] is False
    assert isinstance(b["version"], str) and isinstance(b["server_time_utc"], int)
    assert r.headers.get("Content-Type", "").startswith("application/json")


def test_health_code_overrides(target):
    # Overrides for states the server is not in are accepted and change nothing.
    for q in ("sealedcode=299", "uninitcode=298", "standbycode=297", "standbyok=true"):
        r = target.http.get(f"sys/health?{q}", token=None)
        assert r.status_code == 200, (target.name, q, r.status_code)
    r = target.http.get("sys/health?activecode=299", token=None)
    assert r.status_code == 299, (target.name, r.status_code)


def test_health_head(target):
    r = target.http.request("HEAD", "sys/health", token=None)
    assert r.status_code == 200, (target.name, r.status_code)
    assert target.client.sys.read_health_status(method="HEAD").status_code == 200


def test_health_shape(pair):
    def s(r: Recorder):
        st, b = r.http("health", "GET", "sys/health", token=None)
        assert st == 200
        res = r.hvac("hvac health GET", lambda c: c.sys.read_health_status(method="GET"))
        assert res["initialized"] is True

    pair.run(s)


def test_seal_status_and_init(pair):
    def s(r: Recorder):
        st, b = r.http("seal-status", "GET", "sys/seal-status", token=None)
        assert st == 200
        assert b["type"] == "shamir" and b["initialized"] is True and b["sealed"] is False
        assert b["t"] >= 1 and b["n"] >= b["t"] and b["progress"] == 0
        res = r.hvac("hvac seal status", lambda c: c.sys.read_seal_status())
        assert res["sealed"] is False
        st, b = r.http("init GET", "GET", "sys/init", token=None)
        assert st == 200 and b == {"initialized": True}, (r.t.name, b)
        assert r.t.client.sys.is_initialized() is True
        st, b = r.http("init PUT when initialized", "PUT", "sys/init", {"secret_shares": 1, "secret_threshold": 1})
        assert st == 400 and b["errors"], (r.t.name, st, b)

    pair.run(s)


# --------------------------------------------------------------------------- mounts


def _secret_entry(body):
    """sys/mounts lists mounts both at the top level (legacy) and under data."""
    return body["data"]["secret/"]


def test_mounts_list_secret_entry(pair):
    ref = pair.openbao.http.get("sys/mounts")
    assert ref.status_code == 200
    ref_b = ref.json()
    assert _secret_entry(ref_b)["type"] == "kv" and _secret_entry(ref_b)["options"] == {"version": "2"}
    if pair.lockana is None:
        return
    got = pair.lockana.http.get("sys/mounts")
    assert got.status_code == 200, got.text
    got_b = got.json()
    # Compare only entries both servers have; OpenBao also mounts identity/ etc.
    # Collect every difference so one run reports them all.
    problems = []
    missing = {"secret/", "sys/", "cubbyhole/"} - set(got_b["data"])
    if missing:
        problems.append(f"data lacks mounts {sorted(missing)} (has {sorted(got_b['data'])})")
    for m in sorted(set(ref_b["data"]) & set(got_b["data"])):
        try:
            assert_same_shape(ref_b["data"][m], got_b["data"][m], f"sys/mounts data[{m!r}]")
        except AssertionError as e:
            problems.append(str(e))
    sec = got_b["data"].get("secret/", {})
    if sec.get("type") != "kv" or sec.get("options") != {"version": "2"}:
        problems.append(f"secret/ is not kv v2: {sec}")
    # Vault also repeats each mount at the top level of the body (older clients read it).
    if "secret/" not in got_b:
        problems.append("no top-level legacy copy of secret/")
    env = {k for k in ref_b if not k.endswith("/")}
    if not env <= set(got_b):
        problems.append(f"envelope lacks {sorted(env - set(got_b))}")
    assert not problems, "\n".join(problems)


def test_mount_enable_tune_disable(pair):
    def s(r: Recorder):
        m = f"kvt-{r.key[-8:]}"
        r.hvac(
            "enable",
            lambda c: c.sys.enable_secrets_engine("kv", path=m, description="d1", options={"version": "2"}),
        )
        st, b = r.http("list shows it", "GET", "sys/mounts", shape=False)
        e = b["data"][f"{m}/"]
        assert e["type"] == "kv" and e["description"] == "d1" and e["options"] == {"version": "2"}
        st, b = r.http("enable again conflicts", "POST", f"sys/mounts/{m}", {"type": "kv"})
        assert st == 400, (r.t.name, st)
        st, b = r.http("read tune", "GET", f"sys/mounts/{m}/tune")
        assert st == 200 and b["data"]["options"] == {"version": "2"}
        r.hvac(
            "tune",
            lambda c: c.sys.tune_mount_configuration(m, default_lease_ttl="1h", description="tuned"),
        )
        res = r.hvac("hvac read tune", lambda c: c.sys.read_mount_configuration(m))
        assert res["data"]["default_lease_ttl"] == 3600 and res["data"]["description"] == "tuned", (r.t.name, res)
        # The mount works.
        r.hvac("write in mount", lambda c: c.secrets.kv.v2.create_or_update_secret("x", {"a": "1"}, mount_point=m))
        r.hvac("disable", lambda c: c.sys.disable_secrets_engine(m))
        st, b = r.http("list no longer shows it", "GET", "sys/mounts", shape=False)
        assert f"{m}/" not in b["data"]
        st, _ = r.http("read in disabled mount", "GET", f"{m}/data/x", shape=False)
        assert st == 404, (r.t.name, st)
        st, _ = r.http("disable unmounted is 204", "DELETE", f"sys/mounts/{m}")
        assert st == 204, (r.t.name, st)

    pair.run(s)


def test_mount_enable_errors(pair):
    def s(r: Recorder):
        st, _ = r.http("remount secret/", "POST", "sys/mounts/secret", {"type": "kv"})
        assert st == 400
        st, _ = r.http("unknown type", "POST", f"sys/mounts/{r.key}", {"type": "no-such-engine"})
        assert st == 400
        st, _ = r.http("under sys/", "POST", "sys/mounts/sys/x", {"type": "kv"})
        assert st == 400
        st, _ = r.http("no type", "POST", f"sys/mounts/{r.key}", {})
        assert st == 400

    pair.run(s, compare_shape=True)


def test_ui_mounts(pair):
    def s(r: Recorder):
        st, b = r.http("ui mounts", "GET", "sys/internal/ui/mounts", shape=False)
        assert st == 200
        assert set(b["data"]) >= {"auth", "secret"}
        assert b["data"]["secret"]["secret/"]["type"] == "kv"
        assert b["data"]["secret"]["secret/"]["options"] == {"version": "2"}
        st, b = r.http("ui mount for path", "GET", "sys/internal/ui/mounts/secret/foo")
        assert st == 200
        assert b["data"]["path"] == "secret/" and b["data"]["type"] == "kv"
        assert b["data"]["options"] == {"version": "2"}
        st, b = r.http("ui mount for deep path", "GET", "sys/internal/ui/mounts/secret/a/b/c", shape=False)
        assert st == 200 and b["data"]["path"] == "secret/"
        st, _ = r.http("ui mount unknown", "GET", f"sys/internal/ui/mounts/{r.key}/foo", shape=False)
        assert st in (403, 404), (r.t.name, st)
        st, b = r.http("ui mounts unauthenticated", "GET", "sys/internal/ui/mounts", token=None, shape=False)
        assert st == 200, (r.t.name, st)

    pair.run(s)


def test_ui_mount_entry_shape(pair):
    """The per-path entry is what `bao kv` uses to detect KV v1/v2; compare its shape."""

    def s(r: Recorder):
        r.http("ui mount secret/foo", "GET", "sys/internal/ui/mounts/secret/foo")

    pair.run(s)


# --------------------------------------------------------------------------- KV v1


def test_kv_v1_mount_crud(pair):
    def s(r: Recorder):
        m = f"kv1-{r.key[-8:]}"
        st, _ = r.http("enable kv v1", "POST", f"sys/mounts/{m}", {"type": "kv", "options": {"version": "1"}})
        assert st == 204, (r.t.name, st)
        try:
            st, b = r.http("ui mount says v1", "GET", f"sys/internal/ui/mounts/{m}/foo", shape=False)
            assert b["data"]["options"] == {"version": "1"}, (r.t.name, b)
            r.hvac("v1 write", lambda c: c.secrets.kv.v1.create_or_update_secret("foo", {"a": "1"}, mount_point=m))
            res = r.hvac("v1 read", lambda c: c.secrets.kv.v1.read_secret("foo", mount_point=m))
            assert res["data"] == {"a": "1"}, (r.t.name, res)
            st, b = r.http("v1 raw write nested", "POST", f"{m}/dir/bar", {"b": {"c": 2}})
            assert st == 204, (r.t.name, st, b)
            st, b = r.http("v1 raw read", "GET", f"{m}/dir/bar")
            assert st == 200 and b["data"] == {"b": {"c": 2}}
            res = r.hvac("v1 list", lambda c: c.secrets.kv.v1.list_secrets("", mount_point=m))
            assert sorted(res["data"]["keys"]) == ["dir/", "foo"], (r.t.name, res)
            st, b = r.http("v1 LIST sub", "LIST", f"{m}/dir/")
            assert st == 200 and b["data"]["keys"] == ["bar"]
            r.hvac("v1 delete", lambda c: c.secrets.kv.v1.delete_secret("foo", mount_point=m))
            st, b = r.http("v1 read deleted", "GET", f"{m}/foo")
            assert st == 404 and b == {"errors": []}, (r.t.name, st, b)
            st, b = r.http("v1 overwrite replaces", "POST", f"{m}/dir/bar", {"z": "9"})
            st, b = r.http("v1 read overwritten", "GET", f"{m}/dir/bar")
            assert b["data"] == {"z": "9"}
            st, _ = r.http("v1 has no data/ prefix semantics", "GET", f"{m}/data/dir/bar")
            assert st == 404
        finally:
            r.t.client.sys.disable_secrets_engine(m)

    pair.run(s)


@pytest.mark.parametrize("version", ["1", "2"])
def test_kv_enable_via_hvac(target, version):
    m = uid(f"kvh{version}")
    target.client.sys.enable_secrets_engine("kv", path=m, options={"version": version})
    try:
        mounts = target.client.sys.list_mounted_secrets_engines()["data"]
        assert mounts[f"{m}/"]["options"] == {"version": version}
        if version == "1":
            target.client.secrets.kv.v1.create_or_update_secret("k", {"v": "x"}, mount_point=m)
            assert target.client.secrets.kv.v1.read_secret("k", mount_point=m)["data"] == {"v": "x"}
        else:
            target.client.secrets.kv.v2.create_or_update_secret("k", {"v": "x"}, mount_point=m)
            got = target.client.secrets.kv.v2.read_secret_version(
                "k", mount_point=m, raise_on_deleted_version=True
            )
            assert got["data"]["data"] == {"v": "x"}
    finally:
        r = target.http.delete(f"sys/mounts/{m}")
        assert r.status_code == 204, body_json(r)
