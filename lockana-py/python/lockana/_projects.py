"""RSA projects on the client: their variables are encrypted here, to the project's
public key, and decrypted here with its private key. The server stores and returns
only ciphertext. Shared by :class:`Vault` and :class:`Client` (anything with
``request``)."""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple, Union

from . import _lockana
from ._lockana import NotFound, ProjectKeyError

PrivateKey = Union[str, bytes, "os.PathLike[str]"]

RSA_ENCRYPTIONS = ("rsa-3072", "rsa-4096")


def private_key_text(private_key: PrivateKey) -> str:
    """The PEM text of ``private_key``: PEM as ``str`` or ``bytes``, or a path to the
    key file ``lockana project create`` wrote."""
    if isinstance(private_key, bytes):
        return private_key.decode("ascii")
    if isinstance(private_key, str) and "-----BEGIN" in private_key:
        return private_key
    if isinstance(private_key, (str, os.PathLike)):
        with open(private_key, "r", encoding="ascii") as f:
            return f.read()
    raise TypeError("private_key must be PEM text (str or bytes) or a path to the key file")


def open_env(name: str, data: Dict[str, Any], private_key: Optional[PrivateKey], format: str) -> Union[Dict[str, str], str]:
    """Decrypts an env answer's values (or refuses to hand out envelopes as values)."""
    if private_key is None:
        if _lockana.has_envelopes(data):
            raise ProjectKeyError(
                "the project's variables are encrypted on the client (an RSA project): "
                "pass private_key= to decrypt them"
            )
        return data
    values = _lockana.open_project_values(private_key_text(private_key), name, data)
    if format == "dotenv":
        return _lockana.project_dotenv(values)
    return dict(values)


def create_project(
    requester: Any, name: str, owner: Optional[str], mount: Optional[str], encryption: str
) -> Dict[str, Any]:
    """Creates project ``name``; for RSA the key pair is generated here and the
    result's ``private_key`` (PEM) is the only copy."""
    from ._totp import project_body

    body: Dict[str, Any] = dict(project_body(owner, mount))
    private = None
    if encryption != "chacha20":
        if encryption not in RSA_ENCRYPTIONS:
            raise ValueError("encryption must be 'chacha20', 'rsa-3072' or 'rsa-4096'")
        private, public = _lockana.generate_project_key(encryption)
        body.update({"encryption": encryption, "public_key": public})
    out = dict(requester.request("update", f"lockana/projects/{name}", body).data or {})
    if private is not None:
        out["private_key"] = private
    return out


def _current(requester: Any, mount: str, name: str) -> Tuple[int, Dict[str, Any]]:
    try:
        meta = requester.request("read", f"{mount}/metadata/projects/{name}").data or {}
    except NotFound:
        return 0, {}
    version = int(meta.get("current_version") or 0)
    if version == 0:
        return 0, {}
    try:
        r = requester.request("read", f"{mount}/data/projects/{name}", {"version": str(version)})
    except NotFound:
        return version, {}
    if r.status == 404:  # a deleted or destroyed current version
        return version, {}
    return version, dict(((r.data or {}).get("data")) or {})


def set_variables(requester: Any, name: str, variables: Dict[str, str]) -> int:
    """Adds or replaces ``variables`` of project ``name`` (others stay), encrypting
    them here for an RSA project; check-and-set guards against a concurrent write.
    Returns the new KV version."""
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in variables.items()):
        raise TypeError("variables must map names to string values")
    info = requester.request("read", f"lockana/projects/{name}").data or {}
    mount = str(info.get("mount") or "secret").strip("/")
    version, data = _current(requester, mount, name)
    public = info.get("public_key")
    if public:
        data.update(_lockana.seal_project_values(public, name, variables))
    else:
        data.update(variables)
    r = requester.request(
        "update", f"{mount}/data/projects/{name}", {"data": data, "options": {"cas": version}}
    )
    return int((r.data or {}).get("version") or 0)


def rotate_key(requester: Any, name: str, private_key: PrivateKey, encryption: Optional[str]) -> str:
    """Re-encrypts an RSA project's variables to a new key pair; returns the new
    private key (PEM). The old key then opens only older KV versions."""
    info = requester.request("read", f"lockana/projects/{name}").data or {}
    if not info.get("public_key"):
        raise ProjectKeyError("the project is not an RSA project: it has no key to rotate")
    old = private_key_text(private_key)
    if _lockana.private_key_id(old) != info.get("key_id"):
        raise ProjectKeyError("this private key is not the project's current key")
    mount = str(info.get("mount") or "secret").strip("/")
    version, data = _current(requester, mount, name)
    values = _lockana.open_project_values(old, name, data)
    new_private, new_public = _lockana.generate_project_key(encryption or str(info["encryption"]))
    sealed = _lockana.seal_project_values(new_public, name, values)
    requester.request(
        "update",
        f"lockana/projects/{name}/rotate-key",
        {"public_key": new_public, "data": sealed, "cas": version},
    )
    return new_private
