"""lockana.Vault: dev and redb-backed vaults, init/unseal/seal, close and reopen."""

from __future__ import annotations

import pytest

import lockana


def test_dev_vault_is_unsealed_with_kv2_at_secret(vault):
    assert vault.sealed is False
    st = vault.seal_status()
    assert (st.initialized, st.sealed, st.threshold, st.shares) == (True, False, 1, 1)
    assert vault.token and vault.dev_unseal_key
    assert vault.kv().version == 2
    vault.kv().put("app", {"password": "s3cret"})
    assert vault.kv().get("app") == {"password": "s3cret"}


def test_dev_root_token_id_is_the_token():
    with lockana.Vault.dev("my-root") as v:
        assert v.token == "my-root"
        v.kv().put("x", {"a": "1"})
        v.token = "someone-else"
        with pytest.raises(lockana.PermissionDenied):
            v.kv().get("x")
        assert v.request("read", "secret/data/x", token="my-root").data["data"] == {"a": "1"}


def test_seal_then_unseal_keeps_data(vault):
    vault.kv().put("app", {"k": "v"})
    vault.seal()
    assert vault.sealed
    with pytest.raises(lockana.SealedError):
        vault.kv().get("app")
    st = vault.unseal(vault.dev_unseal_key)
    assert st.sealed is False
    assert vault.kv().get("app") == {"k": "v"}


def test_context_manager_closes_and_close_is_idempotent():
    with lockana.Vault.dev() as v:
        v.kv().put("a", {"b": "c"})
    assert v.closed
    v.close()
    with pytest.raises(lockana.LockanaError, match="closed"):
        v.request("read", "secret/data/a")
    with pytest.raises(lockana.LockanaError, match="closed"):
        v.seal_status()


def test_redb_vault_write_close_reopen_unseal_read(tmp_path):
    path = tmp_path / "vault.redb"
    with lockana.Vault.open(path) as v:
        st = v.seal_status()
        assert (st.initialized, st.sealed) == (False, True)
        with pytest.raises(lockana.SealedError):  # as Vault: uninitialized is sealed
            v.kv()
        init = v.init(shares=3, threshold=2)
        assert len(init.keys) == len(init.keys_base64) == 3
        assert v.token == init.root_token  # adopted: it had none
        assert v.sealed
        assert v.unseal(init.keys[0]).progress == 1
        assert v.unseal(init.keys_base64[2]).sealed is False  # hex or base64
        # A new vault has no secret/ mount (dev vaults do).
        with pytest.raises(lockana.NoRouteError):
            v.request("read", "secret/data/app")
        with pytest.raises(lockana.NoRouteError, match="secret/"):
            v.kv("secret")
        v.enable_kv("secret")
        meta = v.kv().put("app", {"password": "s3cret"})
        assert meta["version"] == 1
        v.kv().put("app", {"password": "rotated"})
    assert path.stat().st_size > 0

    # Reopen: sealed until unsealed, with the data intact.
    with lockana.Vault.open(path, token=init.root_token) as v:
        assert v.sealed
        with pytest.raises(lockana.SealedError):
            v.kv()
        v.unseal([init.keys[1], init.keys[2]])
        assert v.kv().get("app") == {"password": "rotated"}
        assert v.kv().get("app", version=1) == {"password": "s3cret"}

    with lockana.Vault.open(path, unseal_key=init.keys[:2], token=init.root_token) as v:
        assert not v.sealed
        assert v.kv().get("app")["password"] == "rotated"

    keys = tmp_path / "unseal.keys"
    keys.write_text(f"# unseal keys\n{init.keys[0]}\n\n  {init.keys_base64[1]} , {init.keys[2]}\n")
    with lockana.Vault.open(str(keys.parent / "vault.redb"), key_file=keys, token=init.root_token) as v:
        assert v.kv().get("app")["password"] == "rotated"


def test_open_with_too_few_shares_raises_sealed_and_releases_the_file(tmp_path):
    path = tmp_path / "v.redb"
    with lockana.Vault.open(path) as v:
        init = v.init(3, 2)
    with pytest.raises(lockana.SealedError):
        lockana.Vault.open(path, unseal_key=init.keys[0])
    # The failed open closed the file: it can be opened again.
    with lockana.Vault.open(path, unseal_key=init.keys[:2]) as v:
        assert not v.sealed


def test_unseal_keys_for_an_uninitialized_vault_raise(tmp_path):
    with pytest.raises(lockana.NotInitializedError):
        lockana.Vault.open(tmp_path / "new.redb", unseal_key="00ff")
    with lockana.Vault.open(tmp_path / "new.redb") as v:  # the file was released
        assert not v.seal_status().initialized


def test_key_file_without_shares_is_refused(tmp_path):
    keys = tmp_path / "k"
    keys.write_text("# nothing here\n\n")
    with pytest.raises(ValueError):
        lockana.Vault.open(tmp_path / "v.redb", key_file=keys)
    with pytest.raises(ValueError):
        lockana.Vault.open(tmp_path / "v.redb", key_file=keys, unseal_key="ab")


def test_second_open_of_the_same_file_is_a_storage_error(tmp_path):
    path = tmp_path / "v.redb"
    with lockana.Vault.open(path):
        with pytest.raises(lockana.StorageError):
            lockana.Vault.open(path)


def test_init_twice_and_bad_init_arguments(tmp_path):
    with lockana.Vault.open(None) as v:  # in memory, uninitialized
        with pytest.raises(ValueError, match="cipher"):
            v.init(1, 1, cipher="rot13")
        with pytest.raises(lockana.InvalidRequest):
            v.init(shares=2, threshold=3)
        v.init(1, 1)
        with pytest.raises(lockana.AlreadyInitializedError):
            v.init(1, 1)


@pytest.mark.parametrize("cipher", ["chacha20-poly1305", "xchacha20-poly1305", "aes-256-gcm"])
def test_every_cipher_round_trips(tmp_path, cipher):
    path = tmp_path / f"{cipher}.redb"
    with lockana.Vault.open(path) as v:
        init = v.init(1, 1, cipher=cipher)
        v.unseal(init.keys[0])
        v.enable_kv()
        v.kv().put("c", {"cipher": cipher})
    with lockana.Vault.open(path, unseal_key=init.keys[0], token=init.root_token) as v:
        assert v.kv().get("c") == {"cipher": cipher}


def test_wrong_unseal_share_is_rejected(tmp_path):
    path = tmp_path / "v.redb"
    with lockana.Vault.open(path) as v:
        init = v.init(1, 1)
    other = lockana.Vault.open(None)
    other_init = other.init(1, 1)
    other.close()
    with lockana.Vault.open(path) as v:
        with pytest.raises(lockana.LockanaError):
            v.unseal(other_init.keys[0])
        with pytest.raises(lockana.LockanaError):
            v.unseal("not a key share")
        assert v.sealed
        assert v.unseal(init.keys[0]).sealed is False


def test_generic_request_reaches_sys_and_mounts(vault):
    mounts = vault.request("read", "sys/mounts").data
    assert "secret/" in mounts
    vault.request("write", "sys/mounts/kv1", {"type": "kv", "options": {"version": "1"}})
    assert vault.kv("kv1").version == 1
    r = vault.request("update", "kv1/thing", {"a": "b"})
    assert r.status == 204 and r.data is None
    assert vault.request("list", "kv1/").data == {"keys": ["thing"]}
    lookup = vault.request("read", "auth/token/lookup-self")
    assert lookup.status == 200 and "policies" in lookup.data
    health = vault.request("read", "sys/health")
    assert health.data["sealed"] is False


def test_reprs_never_show_secrets(tmp_path):
    with lockana.Vault.open(None) as v:
        init = v.init(2, 2)
        for obj in (init, v, v.seal_status()):
            text = repr(obj)
            assert init.root_token not in text
            assert not any(k in text for k in init.keys + init.keys_base64)
        v.unseal(init.keys)
        v.enable_kv()
        v.kv().put("app", {"password": "hunter2-secret"})
        assert "hunter2" not in repr(v.request("read", "secret/data/app"))


def test_response_is_constructible_like_the_clients():
    r = lockana.Response(status=404, data={"a": 1})
    assert (r.status, r.data, r.warnings, r.auth) == (404, {"a": 1}, [], None)
    assert lockana.Response().status == 200


def test_version_is_exposed():
    assert isinstance(lockana.__version__, str) and lockana.__version__
