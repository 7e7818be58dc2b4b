"""Every library error arrives as the right Python exception class."""

from __future__ import annotations

import pickle

import pytest

import lockana

ALL = [
    lockana.SealedError,
    lockana.NotInitializedError,
    lockana.AlreadyInitializedError,
    lockana.PermissionDenied,
    lockana.NotFound,
    lockana.NoRouteError,
    lockana.UnsupportedOperation,
    lockana.InvalidRequest,
    lockana.CasMismatch,
    lockana.StorageError,
    lockana.BarrierError,
]


def test_hierarchy():
    assert issubclass(lockana.LockanaError, Exception)
    for cls in ALL:
        assert issubclass(cls, lockana.LockanaError), cls
        assert cls.__module__ == "lockana"
        assert cls.__doc__
    assert issubclass(lockana.CasMismatch, lockana.InvalidRequest)


def test_exceptions_pickle_by_their_public_name():
    e = pickle.loads(pickle.dumps(lockana.NotFound("x")))
    assert type(e) is lockana.NotFound and e.args == ("x",)


def test_permission_denied_without_or_with_a_bad_token(vault):
    with pytest.raises(lockana.PermissionDenied):
        vault.request("read", "secret/data/x", token="not-a-token")
    vault.token = None
    with pytest.raises(lockana.PermissionDenied):
        vault.request("read", "secret/data/x")
    # Status endpoints need no token, as in Vault.
    assert vault.request("read", "sys/seal-status").data["sealed"] is False


def test_not_found_no_route_unsupported_invalid(vault):
    with pytest.raises(lockana.NotFound):
        vault.request("read", "secret/data/missing")
    with pytest.raises(lockana.NoRouteError, match="nomount/x"):
        vault.request("read", "nomount/x")
    with pytest.raises(lockana.UnsupportedOperation):
        vault.request("list", "secret/data/x")
    for hostile in ("secret/../sys/seal", "secret//x", "secret/./x", "a\nb"):
        with pytest.raises(lockana.InvalidRequest):
            vault.request("read", hostile)
    with pytest.raises(lockana.InvalidRequest):
        vault.request("update", "secret/data/x", {"data": "not an object"})


def test_sealed_and_not_initialized(tmp_path, vault):
    vault.seal()
    with pytest.raises(lockana.SealedError):
        vault.request("read", "secret/data/x")
    with lockana.Vault.open(None) as v:
        with pytest.raises(lockana.LockanaError) as e:
            v.request("read", "secret/data/x", token="t")
        assert isinstance(e.value, (lockana.SealedError, lockana.NotInitializedError))


def test_messages_never_echo_values(vault):
    with pytest.raises(lockana.InvalidRequest) as e:
        vault.request("update", "secret/data/x", {"data": "supersecretvalue"})
    assert "supersecretvalue" not in str(e.value)
