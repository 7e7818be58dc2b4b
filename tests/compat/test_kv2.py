"""KV v2 at `secret/`: each scenario runs on OpenBao, then on Lockana, step by step.

Every step compares the HTTP status (or hvac exception) and the response shape;
the scenario's own asserts pin concrete values on both servers.
"""

from __future__ import annotations

from compat_util import Recorder

M = "secret"


def _read(c, path, version=None, raise_on_deleted=False):
    return c.secrets.kv.v2.read_secret_version(
        path=path, version=version, mount_point=M, raise_on_deleted_version=raise_on_deleted
    )


def test_write_read_latest_and_version(pair):
    def s(r: Recorder):
        p = r.key
        w1 = r.hvac("write v1", lambda c: c.secrets.kv.v2.create_or_update_secret(p, {"a": "1", "n": {"x": 1}}))
        assert w1["data"]["version"] == 1, r.t.name
        assert w1["data"]["destroyed"] is False and w1["data"]["deletion_time"] == ""
        w2 = r.hvac("write v2", lambda c: c.secrets.kv.v2.create_or_update_secret(p, {"a": "2"}))
        assert w2["data"]["version"] == 2
        latest = r.hvac("read latest", lambda c: _read(c, p))
        assert latest["data"]["data"] == {"a": "2"}
        assert latest["data"]["metadata"]["version"] == 2
        v1 = r.hvac("read version=1", lambda c: _read(c, p, version=1))
        assert v1["data"]["data"] == {"a": "1", "n": {"x": 1}}
        assert v1["data"]["metadata"]["version"] == 1
        # The same over raw HTTP, envelope included.
        st, b = r.http("raw read ?version=1", "GET", f"{M}/data/{p}?version=1")
        assert st == 200 and b["data"]["data"]["a"] == "1"
        for k in ("request_id", "lease_id", "renewable", "lease_duration", "data", "wrap_info", "warnings", "auth"):
            assert k in b, f"{r.t.name}: envelope lacks {k}"
        st, b = r.http("raw read missing version", "GET", f"{M}/data/{p}?version=99")
        assert st == 404

    pair.run(s)


def test_read_missing_secret_is_404_with_empty_errors(pair):
    def s(r: Recorder):
        st, b = r.http("read missing", "GET", f"{M}/data/{r.key}")
        assert st == 404 and b == {"errors": []}, (r.t.name, st, b)
        e = r.hvac("hvac read missing", lambda c: _read(c, r.key))
        assert type(e).__name__ == "InvalidPath"

    pair.run(s)


def test_cas_match_and_mismatch(pair):
    def s(r: Recorder):
        p = r.key
        r.hvac("cas=0 create", lambda c: c.secrets.kv.v2.create_or_update_secret(p, {"a": "1"}, cas=0))
        e = r.hvac("cas=0 again fails", lambda c: c.secrets.kv.v2.create_or_update_secret(p, {"a": "x"}, cas=0))
        assert type(e).__name__ == "InvalidRequest", r.t.name
        st, b = r.http("raw cas mismatch", "POST", f"{M}/data/{p}", {"options": {"cas": 5}, "data": {"a": "x"}})
        assert st == 400 and isinstance(b["errors"], list) and b["errors"], (r.t.name, st, b)
        ok = r.hvac("cas=1 match", lambda c: c.secrets.kv.v2.create_or_update_secret(p, {"a": "2"}, cas=1))
        assert ok["data"]["version"] == 2
        assert _read(r.t.client, p)["data"]["data"] == {"a": "2"}

    pair.run(s)


def test_patch_merge(pair):
    def s(r: Recorder):
        p = r.key
        r.hvac("write", lambda c: c.secrets.kv.v2.create_or_update_secret(p, {"a": "1", "b": "2"}))
        res = r.hvac("hvac patch", lambda c: c.secrets.kv.v2.patch(p, {"b": "3", "c": "4"}))
        assert res["data"]["version"] == 2
        assert _read(r.t.client, p)["data"]["data"] == {"a": "1", "b": "3", "c": "4"}
        # Real HTTP PATCH with JSON merge-patch: null removes a key.
        st, b = r.patch("http PATCH", f"{M}/data/{p}", {"data": {"a": None, "d": "5"}})
        assert st == 200 and b["data"]["version"] == 3, (r.t.name, st, b)
        assert _read(r.t.client, p)["data"]["data"] == {"b": "3", "c": "4", "d": "5"}
        st, _ = r.patch(
            "PATCH wrong content-type", f"{M}/data/{p}", {"data": {"x": "1"}}, content_type="application/json"
        )
        assert st == 415, (r.t.name, st)
        st, _ = r.patch("PATCH missing secret", f"{M}/data/{p}-nope", {"data": {"x": "1"}})
        assert st == 404, (r.t.name, st)

    pair.run(s)


def test_soft_delete_latest_then_read_404_with_metadata(pair):
    def s(r: Recorder):
        p = r.key
        r.hvac("write", lambda c: c.secrets.kv.v2.create_or_update_secret(p, {"a": "1"}))
        st, b = r.http("delete latest", "DELETE", f"{M}/data/{p}")
        assert st == 204 and b is None, (r.t.name, st, b)
        st, b = r.http("read deleted", "GET", f"{M}/data/{p}")
        assert st == 404, (r.t.name, st)
        assert b["data"]["data"] is None
        assert b["data"]["metadata"]["deletion_time"] != "", r.t.name
        assert b["data"]["metadata"]["destroyed"] is False
        res = r.hvac("hvac read deleted (no raise)", lambda c: _read(c, p, raise_on_deleted=False))
        assert res["data"]["metadata"]["deletion_time"]
        e = r.hvac("hvac read deleted (raise)", lambda c: _read(c, p, raise_on_deleted=True))
        assert type(e).__name__ == "InvalidPath"
        r.hvac("hvac delete latest again", lambda c: c.secrets.kv.v2.delete_latest_version_of_secret(p))

    pair.run(s)


def test_delete_undelete_destroy_versions(pair):
    def s(r: Recorder):
        p = r.key
        for i in (1, 2, 3):
            r.hvac(f"write v{i}", lambda c, i=i: c.secrets.kv.v2.create_or_update_secret(p, {"v": str(i)}))
        r.hvac("delete v1,v2", lambda c: c.secrets.kv.v2.delete_secret_versions(p, [1, 2]))
        st, b = r.http("read v1 deleted", "GET", f"{M}/data/{p}?version=1")
        assert st == 404 and b["data"]["metadata"]["deletion_time"]
        r.hvac("undelete v1", lambda c: c.secrets.kv.v2.undelete_secret_versions(p, [1]))
        assert _read(r.t.client, p, version=1)["data"]["data"] == {"v": "1"}
        st, b = r.http("read v2 still deleted", "GET", f"{M}/data/{p}?version=2")
        assert st == 404
        r.hvac("destroy v1", lambda c: c.secrets.kv.v2.destroy_secret_versions(p, [1]))
        st, b = r.http("read v1 destroyed", "GET", f"{M}/data/{p}?version=1")
        assert st == 404, (r.t.name, st)
        assert b["data"]["data"] is None and b["data"]["metadata"]["destroyed"] is True, (r.t.name, b)
        r.hvac("undelete destroyed v1 (no-op)", lambda c: c.secrets.kv.v2.undelete_secret_versions(p, [1]))
        st, b = r.http("read v1 still destroyed", "GET", f"{M}/data/{p}?version=1")
        assert st == 404 and b["data"]["metadata"]["destroyed"] is True
        md = r.hvac("metadata", lambda c: c.secrets.kv.v2.read_secret_metadata(p))
        vs = md["data"]["versions"]
        assert set(vs) == {"1", "2", "3"}, (r.t.name, vs)
        assert vs["1"]["destroyed"] is True and vs["2"]["deletion_time"] and vs["3"]["deletion_time"] == ""
        # Raw endpoints with bad input.
        st, _ = r.http("delete/ without versions", "POST", f"{M}/delete/{p}", {})
        assert st == 400, (r.t.name, st)
        st, _ = r.http("undelete/ without versions", "POST", f"{M}/undelete/{p}", {})
        assert st == 400, (r.t.name, st)
        st, _ = r.http("destroy/ without versions", "POST", f"{M}/destroy/{p}", {})
        assert st == 400, (r.t.name, st)

    pair.run(s)


def test_metadata_read_write_patch(pair):
    def s(r: Recorder):
        p = r.key
        r.hvac("write", lambda c: c.secrets.kv.v2.create_or_update_secret(p, {"a": "1"}))
        md = r.hvac("read metadata", lambda c: c.secrets.kv.v2.read_secret_metadata(p))
        d = md["data"]
        assert d["current_version"] == 1 and d["oldest_version"] == 0 and d["max_versions"] == 0
        assert d["cas_required"] is False and d["delete_version_after"] == "0s" and d["custom_metadata"] is None
        assert set(d["versions"]) == {"1"}
        r.hvac(
            "update metadata",
            lambda c: c.secrets.kv.v2.update_metadata(
                p, max_versions=7, cas_required=True, custom_metadata={"owner": "ops"}
            ),
        )
        d = r.hvac("read metadata 2", lambda c: c.secrets.kv.v2.read_secret_metadata(p))["data"]
        assert d["max_versions"] == 7 and d["cas_required"] is True and d["custom_metadata"] == {"owner": "ops"}
        st, b = r.patch("PATCH metadata", f"{M}/metadata/{p}", {"custom_metadata": {"team": "x"}, "max_versions": 9})
        assert st == 204, (r.t.name, st, b)
        st, b = r.http("read metadata 3", "GET", f"{M}/metadata/{p}")
        assert b["data"]["custom_metadata"] == {"owner": "ops", "team": "x"}, (r.t.name, b["data"])
        assert b["data"]["max_versions"] == 9 and b["data"]["cas_required"] is True
        # Secret reads carry custom_metadata in their metadata block.
        st, b = r.http("read data shows custom_metadata", "GET", f"{M}/data/{p}")
        assert b["data"]["metadata"]["custom_metadata"] == {"owner": "ops", "team": "x"}
        st, _ = r.http("metadata for missing", "GET", f"{M}/metadata/{p}-missing")
        assert st == 404
        # Metadata can be created before any data.
        st, _ = r.http("metadata-only create", "POST", f"{M}/metadata/{p}-meta", {"max_versions": 3})
        assert st == 204
        st, b = r.http("read metadata-only", "GET", f"{M}/metadata/{p}-meta")
        assert st == 200 and b["data"]["current_version"] == 0 and b["data"]["versions"] == {}

    pair.run(s)


def test_list_and_delete_all(pair):
    def s(r: Recorder):
        base = r.key
        for name in ("a", "b", "dir/c"):
            r.hvac(f"write {name}", lambda c, n=name: c.secrets.kv.v2.create_or_update_secret(f"{base}/{n}", {"x": "1"}))
        res = r.hvac("hvac list", lambda c: c.secrets.kv.v2.list_secrets(base))
        assert sorted(res["data"]["keys"]) == ["a", "b", "dir/"], (r.t.name, res)
        st, b = r.http("LIST method", "LIST", f"{M}/metadata/{base}/")
        assert st == 200 and sorted(b["data"]["keys"]) == ["a", "b", "dir/"]
        st, b = r.http("GET ?list=true", "GET", f"{M}/metadata/{base}?list=true")
        assert st == 200 and sorted(b["data"]["keys"]) == ["a", "b", "dir/"]
        st, b = r.http("LIST missing prefix", "LIST", f"{M}/metadata/{base}-none/")
        assert st == 404 and b == {"errors": []}, (r.t.name, st, b)
        r.hvac("delete all a", lambda c: c.secrets.kv.v2.delete_metadata_and_all_versions(f"{base}/a"))
        st, b = r.http("read a gone", "GET", f"{M}/data/{base}/a")
        assert st == 404 and b == {"errors": []}, (r.t.name, st, b)
        st, _ = r.http("metadata a gone", "GET", f"{M}/metadata/{base}/a")
        assert st == 404
        res = r.hvac("list after delete", lambda c: c.secrets.kv.v2.list_secrets(base))
        assert sorted(res["data"]["keys"]) == ["b", "dir/"]
        # A soft-deleted secret still lists (its metadata exists).
        r.hvac("soft delete b", lambda c: c.secrets.kv.v2.delete_latest_version_of_secret(f"{base}/b"))
        res = r.hvac("list after soft delete", lambda c: c.secrets.kv.v2.list_secrets(base))
        assert sorted(res["data"]["keys"]) == ["b", "dir/"]

    pair.run(s)


def test_version_pruning_beyond_max_versions(pair):
    def s(r: Recorder):
        p = r.key
        r.hvac("set max_versions=2", lambda c: c.secrets.kv.v2.update_metadata(p, max_versions=2))
        for i in (1, 2, 3, 4):
            r.hvac(f"write v{i}", lambda c, i=i: c.secrets.kv.v2.create_or_update_secret(p, {"v": str(i)}))
        d = r.hvac("metadata", lambda c: c.secrets.kv.v2.read_secret_metadata(p))["data"]
        assert set(d["versions"]) == {"3", "4"}, (r.t.name, d["versions"])
        assert d["current_version"] == 4 and d["oldest_version"] == 3, (r.t.name, d)
        st, b = r.http("read pruned v1", "GET", f"{M}/data/{p}?version=1")
        assert st == 404 and b == {"errors": []}, (r.t.name, st, b)
        assert _read(r.t.client, p, version=3)["data"]["data"] == {"v": "3"}

    pair.run(s)


def test_mount_config_and_cas_required(pair):
    def s(r: Recorder):
        # A fresh KV v2 mount so config changes cannot disturb other tests.
        mount = f"kv2-{r.key[-8:]}"
        r.hvac("enable kv2", lambda c: c.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"}))
        try:
            cfg = r.hvac("read config", lambda c: c.secrets.kv.v2.read_configuration(mount_point=mount))
            assert cfg["data"]["max_versions"] == 0 and cfg["data"]["cas_required"] is False
            assert cfg["data"]["delete_version_after"] == "0s"
            r.hvac(
                "configure",
                lambda c: c.secrets.kv.v2.configure(max_versions=3, cas_required=True, mount_point=mount),
            )
            st, b = r.http("read config raw", "GET", f"{mount}/config")
            assert st == 200 and b["data"]["max_versions"] == 3 and b["data"]["cas_required"] is True
            st, b = r.http("write without cas", "POST", f"{mount}/data/x", {"data": {"a": "1"}})
            assert st == 400, (r.t.name, st, b)
            st, b = r.http("write with cas=0", "POST", f"{mount}/data/x", {"options": {"cas": 0}, "data": {"a": "1"}})
            assert st == 200 and b["data"]["version"] == 1
            st, b = r.http("metadata inherits", "GET", f"{mount}/metadata/x")
            # Per-key values stay 0/false; the mount config applies on top.
            assert b["data"]["max_versions"] == 0 and b["data"]["cas_required"] is False, (r.t.name, b["data"])
            for i in (1, 2, 3):
                r.http(f"cas write {i + 1}", "POST", f"{mount}/data/x", {"options": {"cas": i}, "data": {"a": str(i)}})
            st, b = r.http("metadata pruned by mount max_versions", "GET", f"{mount}/metadata/x")
            assert sorted(b["data"]["versions"], key=int) == ["2", "3", "4"], (r.t.name, b["data"]["versions"])
            st, _ = r.http("config bad type", "POST", f"{mount}/config", {"max_versions": "abc"})
            assert st == 400, (r.t.name, st)
        finally:
            r.t.client.sys.disable_secrets_engine(mount)

    pair.run(s)


def test_cas_required_per_key(pair):
    def s(r: Recorder):
        p = r.key
        st, _ = r.http("metadata cas_required", "POST", f"{M}/metadata/{p}", {"cas_required": True})
        assert st == 204
        st, b = r.http("write without cas", "POST", f"{M}/data/{p}", {"data": {"a": "1"}})
        assert st == 400 and b["errors"], (r.t.name, st, b)
        st, b = r.http("write cas=0", "POST", f"{M}/data/{p}", {"options": {"cas": 0}, "data": {"a": "1"}})
        assert st == 200
        st, b = r.http("write stale cas", "POST", f"{M}/data/{p}", {"options": {"cas": 0}, "data": {"a": "2"}})
        assert st == 400

    pair.run(s)


def test_subkeys_with_depth(pair):
    def s(r: Recorder):
        p = r.key
        secret = {"a": "1", "b": {"c": {"d": "x"}, "e": "y"}, "f": [1, 2]}
        r.hvac("write", lambda c: c.secrets.kv.v2.create_or_update_secret(p, secret))
        st, b = r.http("subkeys", "GET", f"{M}/subkeys/{p}")
        assert st == 200, (r.t.name, st, b)
        assert b["data"]["subkeys"] == {"a": None, "b": {"c": {"d": None}, "e": None}, "f": None}, (r.t.name, b)
        assert b["data"]["metadata"]["version"] == 1
        st, b = r.http("subkeys depth=1", "GET", f"{M}/subkeys/{p}?depth=1")
        assert b["data"]["subkeys"] == {"a": None, "b": None, "f": None}, (r.t.name, b)
        st, b = r.http("subkeys depth=2", "GET", f"{M}/subkeys/{p}?depth=2")
        assert b["data"]["subkeys"] == {"a": None, "b": {"c": None, "e": None}, "f": None}, (r.t.name, b)
        r.hvac("write v2", lambda c: c.secrets.kv.v2.create_or_update_secret(p, {"z": "1"}))
        st, b = r.http("subkeys version=1", "GET", f"{M}/subkeys/{p}?version=1&depth=1")
        assert b["data"]["subkeys"] == {"a": None, "b": None, "f": None}
        st, b = r.http("subkeys missing", "GET", f"{M}/subkeys/{p}-none")
        assert st == 404

    pair.run(s)


def test_write_response_custom_metadata_and_body_shapes(pair):
    """Writes to data/ with a non-object `data` or no `data` are 400s."""

    def s(r: Recorder):
        p = r.key
        st, _ = r.http("data is a string", "POST", f"{M}/data/{p}", {"data": "str"})
        assert st == 400, (r.t.name, st)
        st, _ = r.http("cas is a string", "POST", f"{M}/data/{p}", {"options": {"cas": "x"}, "data": {"a": "1"}})
        assert st == 400, (r.t.name, st)

    pair.run(s)
