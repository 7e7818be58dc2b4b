"""vault.kv(): every helper on KV v2 and KV v1, and what Python values survive."""

from __future__ import annotations

import pytest

import lockana


def test_kv2_put_get_versions_and_metadata(vault):
    kv = vault.kv()
    assert kv.put("app/db", {"user": "u", "password": "p1"})["version"] == 1
    assert kv.put("app/db", {"user": "u", "password": "p2"})["version"] == 2
    assert kv.get("app/db") == {"user": "u", "password": "p2"}
    assert kv.get("app/db", version=1)["password"] == "p1"
    full = kv.read("app/db")
    assert full["data"]["password"] == "p2" and full["metadata"]["version"] == 2
    meta = kv.metadata("app/db")
    assert meta["current_version"] == 2 and set(meta["versions"]) == {"1", "2"}
    assert kv.subkeys("app/db") == {"user": None, "password": None}


def test_kv2_check_and_set(vault):
    kv = vault.kv()
    kv.put("cas", {"a": "1"}, cas=0)  # only if new
    with pytest.raises(lockana.CasMismatch):
        kv.put("cas", {"a": "2"}, cas=0)
    with pytest.raises(lockana.InvalidRequest):  # CasMismatch is an InvalidRequest
        kv.put("cas", {"a": "2"}, cas=5)
    kv.put("cas", {"a": "2"}, cas=1)
    assert kv.get("cas") == {"a": "2"}


def test_kv2_patch_is_a_merge_patch(vault):
    kv = vault.kv()
    kv.put("p", {"keep": "k", "drop": "d", "nested": {"x": 1, "y": 2}})
    meta = kv.patch("p", {"drop": None, "new": "n", "nested": {"y": None, "z": 3}})
    assert meta["version"] == 2
    assert kv.get("p") == {"keep": "k", "new": "n", "nested": {"x": 1, "z": 3}}
    with pytest.raises(lockana.CasMismatch):
        kv.patch("p", {"a": "b"}, cas=1)
    with pytest.raises(lockana.NotFound):
        kv.patch("missing", {"a": "b"})


def test_kv2_delete_undelete_destroy(vault):
    kv = vault.kv()
    for i in range(3):
        kv.put("d", {"v": str(i)})
    kv.delete("d")  # latest (3)
    with pytest.raises(lockana.NotFound):
        kv.get("d")
    body = kv.read("d")
    assert body["data"] is None and body["metadata"]["deletion_time"]
    r = vault.request("read", "secret/data/d")
    assert r.status == 404 and r.data["data"] is None  # Vault's shape, no exception
    kv.undelete("d", [3])
    assert kv.get("d") == {"v": "2"}
    kv.delete("d", versions=[1, 2])
    with pytest.raises(lockana.NotFound):
        kv.get("d", version=1)
    kv.undelete("d", versions=[1])
    assert kv.get("d", version=1) == {"v": "0"}
    kv.destroy("d", [1])
    assert kv.metadata("d")["versions"]["1"]["destroyed"] is True
    with pytest.raises(lockana.NotFound):
        kv.get("d", version=1)
    kv.undelete("d", [1])  # destroyed stays destroyed
    with pytest.raises(lockana.NotFound):
        kv.get("d", version=1)
    with pytest.raises(ValueError):
        kv.destroy("d", [])
    kv.delete_metadata("d")
    with pytest.raises(lockana.NotFound):
        kv.metadata("d")


def test_kv2_list(vault):
    kv = vault.kv()
    assert kv.list() == []
    kv.put("a", {"x": "1"})
    kv.put("dir/b", {"x": "1"})
    kv.put("dir/sub/c", {"x": "1"})
    assert kv.list() == ["a", "dir/"]
    assert kv.list("dir") == ["b", "sub/"]
    assert kv.list("dir/") == ["b", "sub/"]
    assert kv.list("nothing-here") == []


def test_missing_secret_is_not_found(vault):
    with pytest.raises(lockana.NotFound):
        vault.kv().get("nope")
    with pytest.raises(lockana.NotFound):
        vault.kv().metadata("nope")


def test_kv1_mount_autodetected_and_v2_only_helpers_refused(vault):
    vault.enable_kv("old", version=1)
    kv = vault.kv("old")
    assert kv.version == 1
    assert kv.put("svc", {"token": "t"}) is None
    assert kv.get("svc") == {"token": "t"}
    assert kv.read("svc") == {"data": {"token": "t"}, "metadata": None}
    assert kv.list() == ["svc"]
    for call in (
        lambda: kv.patch("svc", {"a": "b"}),
        lambda: kv.metadata("svc"),
        lambda: kv.undelete("svc", [1]),
        lambda: kv.destroy("svc", [1]),
        lambda: kv.get("svc", version=1),
        lambda: kv.put("svc", {"a": "b"}, cas=1),
        lambda: kv.delete("svc", versions=[1]),
    ):
        with pytest.raises(lockana.UnsupportedOperation):
            call()
    kv.delete("svc")
    with pytest.raises(lockana.NotFound):
        kv.get("svc")


def test_explicit_version_skips_detection_and_mounts_path_slashes(vault):
    kv = vault.kv("/secret/", version=2)
    kv.put("/a/", {"b": "c"})
    assert vault.kv("secret").get("a") == {"b": "c"}
    with pytest.raises(ValueError):
        vault.kv("secret", version=3)


def test_kv_on_a_non_kv_or_missing_mount(vault):
    with pytest.raises((lockana.InvalidRequest, lockana.NoRouteError)):
        vault.kv("sys")
    with pytest.raises(lockana.NoRouteError):
        vault.kv("nowhere")


def test_remounting_with_another_version_is_noticed(vault):
    assert vault.kv().version == 2
    vault.request("delete", "sys/mounts/secret")
    vault.enable_kv("secret", version=1)
    assert vault.kv().version == 1


VALUES = {
    "str": "päss wörd ✓ \U0001f511",
    "empty": "",
    "int": 42,
    "neg": -7,
    "big": 2**63 + 5,
    "float": 3.25,
    "true": True,
    "false": False,
    "none": None,
    "list": [1, "two", [3.0], {"four": 4}],
    "tuple": (1, 2),
    "nested": {"a": {"b": {"c": ["d"]}}},
    "newline": "line1\nline2\x00end",
}


def test_python_values_round_trip(vault):
    vault.kv().put("types", VALUES)
    got = vault.kv().get("types")
    expected = dict(VALUES, tuple=[1, 2])
    assert got == expected
    assert type(got["true"]) is bool and type(got["int"]) is int and type(got["float"]) is float


@pytest.mark.parametrize(
    "bad, exc",
    [
        ({"a": object()}, TypeError),
        ({"a": b"bytes"}, TypeError),
        ({"a": {1, 2}}, TypeError),
        ({1: "int key"}, TypeError),
        ({"a": float("nan")}, ValueError),
        ({"a": float("inf")}, ValueError),
        ({"a": 2**64}, ValueError),
        ({"a": -(2**63) - 1}, ValueError),
    ],
)
def test_values_json_cannot_carry_are_refused(vault, bad, exc):
    with pytest.raises(exc):
        vault.kv().put("bad", bad)


def test_self_referencing_data_is_refused_not_a_crash(vault):
    d: dict = {}
    d["self"] = d
    with pytest.raises(ValueError, match="nested"):
        vault.kv().put("loop", d)
    deep: dict = {"v": "x"}
    for _ in range(200):
        deep = {"d": deep}
    with pytest.raises(ValueError):
        vault.kv().put("deep", deep)


def test_request_data_must_be_a_dict(vault):
    with pytest.raises(TypeError):
        vault.request("update", "secret/data/x", ["not", "a", "dict"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="operation"):
        vault.request("frobnicate", "secret/data/x")
