"""KV helpers shared by the in-process :class:`Vault` and the HTTP :class:`Client`:
both offer ``request(operation, path, data=None)`` returning a :class:`Response`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional

from ._lockana import InvalidRequest, NoRouteError, NotFound, PermissionDenied, UnsupportedOperation

if TYPE_CHECKING:  # pragma: no cover
    from typing import Protocol

    from ._lockana import Response

    class Transport(Protocol):
        def request(
            self,
            operation: str,
            path: str,
            data: Optional[Dict[str, Any]] = None,
            token: Optional[str] = None,
        ) -> Response: ...


def detect_kv_version(transport: "Transport", mount: str) -> int:
    """The version (1 or 2) of the KV engine at ``mount``, from
    ``sys/internal/ui/mounts/<mount>`` — what the ``vault kv`` CLI asks too."""
    try:
        resp = transport.request("read", f"sys/internal/ui/mounts/{mount}/")
    except PermissionDenied:
        # Vault answers "permission denied" for a mount that does not exist too. If the
        # token itself is good, say what most likely happened.
        try:
            transport.request("read", "auth/token/lookup-self")
        except PermissionDenied:
            raise
        raise NoRouteError(
            f"no KV mount at {mount}/ (or this token may not use it); a new vault has "
            "none until one is enabled (Vault.enable_kv, or sys/mounts/<path>)"
        ) from None
    data = resp.data or {}
    kind = data.get("type")
    if kind not in ("kv", "generic", "cubbyhole"):
        raise InvalidRequest(f"{mount}/ is not a KV mount (type {kind!r})")
    options = data.get("options") or {}
    try:
        return int(options.get("version") or 1)
    except (TypeError, ValueError):
        return 1


def _versions(versions: Iterable[int]) -> List[int]:
    out = [int(v) for v in versions]
    if not out:
        raise ValueError("give at least one version")
    return out


class KV:
    """Typed helpers for one KV mount (version 1 or 2); get one with
    ``vault.kv("secret")`` or ``client.kv("secret")``.

    ``path`` arguments are relative to the mount (``"app/db"``, not
    ``"secret/data/app/db"``). Operations that only KV v2 has (versions, patch,
    metadata, ...) raise :class:`UnsupportedOperation` on a v1 mount.
    """

    def __init__(self, transport: "Transport", mount: str, version: int) -> None:
        if version not in (1, 2):
            raise ValueError("KV version must be 1 or 2")
        self._t = transport
        self.mount = mount.strip("/")
        """The mount path, without slashes."""
        self.version = version
        """The engine version, 1 or 2."""

    def __repr__(self) -> str:
        return f"<lockana.KV {self.mount}/ v{self.version}>"

    def _path(self, kind: str, path: str) -> str:
        path = path.strip("/")
        if self.version == 1:
            return f"{self.mount}/{path}"
        return f"{self.mount}/{kind}/{path}" if path else f"{self.mount}/{kind}"

    def _v2(self, what: str) -> None:
        if self.version != 2:
            raise UnsupportedOperation(f"{what} needs a KV version 2 mount; {self.mount}/ is v1")

    # ---------------------------------------------------------------- reads

    def get(self, path: str, version: Optional[int] = None) -> Dict[str, Any]:
        """The secret's key/value pairs (its latest version, or ``version``). Raises
        :class:`NotFound` if it does not exist or that version is deleted or destroyed."""
        if self.version == 1:
            if version is not None:
                self._v2("reading a version")
            resp = self._t.request("read", self._path("data", path))
            return resp.data or {}
        params = None if version is None else {"version": str(int(version))}
        resp = self._t.request("read", self._path("data", path), params)
        secret = (resp.data or {}).get("data")
        if resp.status == 404 or secret is None:
            raise NotFound(f"secret {self.mount}/{path.strip('/')} is deleted or destroyed")
        return secret

    def read(self, path: str, version: Optional[int] = None) -> Dict[str, Any]:
        """The whole answer of a KV v2 read: ``{"data": ..., "metadata": ...}``. A
        deleted or destroyed version comes back with ``data`` None instead of raising.
        On KV v1, ``{"data": ..., "metadata": None}``."""
        if self.version == 1:
            return {"data": self.get(path, version), "metadata": None}
        params = None if version is None else {"version": str(int(version))}
        resp = self._t.request("read", self._path("data", path), params)
        return dict(resp.data or {})

    def list(self, path: str = "") -> List[str]:
        """The keys under ``path`` (folders end with ``/``); empty if there are none."""
        kind = "metadata"
        try:
            resp = self._t.request("list", self._path(kind, path))
        except NotFound:
            return []
        return list((resp.data or {}).get("keys") or [])

    def metadata(self, path: str) -> Dict[str, Any]:
        """KV v2 metadata: versions, ``current_version``, ``max_versions``, ``cas_required``,
        ``custom_metadata``, ..."""
        self._v2("metadata")
        return dict(self._t.request("read", self._path("metadata", path)).data or {})

    def subkeys(self, path: str, depth: Optional[int] = None) -> Dict[str, Any]:
        """The secret's key structure with values replaced by None (KV v2)."""
        self._v2("subkeys")
        params = None if depth is None else {"depth": str(int(depth))}
        resp = self._t.request("read", self._path("subkeys", path), params)
        return dict((resp.data or {}).get("subkeys") or {})

    # ---------------------------------------------------------------- writes

    def put(self, path: str, data: Dict[str, Any], cas: Optional[int] = None) -> Optional[Dict[str, Any]]:
        """Writes a new version of the secret. With ``cas`` the write only succeeds if
        the current version is ``cas`` (0: only if it does not exist yet), else raises
        :class:`CasMismatch`. Returns the new version's metadata (KV v2) or None (v1)."""
        if self.version == 1:
            if cas is not None:
                self._v2("check-and-set")
            self._t.request("update", self._path("data", path), dict(data))
            return None
        body: Dict[str, Any] = {"data": dict(data)}
        if cas is not None:
            body["options"] = {"cas": int(cas)}
        return dict(self._t.request("update", self._path("data", path), body).data or {})

    def patch(self, path: str, data: Dict[str, Any], cas: Optional[int] = None) -> Dict[str, Any]:
        """Merges ``data`` into the latest version as a new version (JSON merge patch: a
        key set to None is removed). KV v2 only; raises :class:`NotFound` if the secret
        does not exist."""
        self._v2("patch")
        body: Dict[str, Any] = {"data": dict(data)}
        if cas is not None:
            body["options"] = {"cas": int(cas)}
        return dict(self._t.request("patch", self._path("data", path), body).data or {})

    def delete(self, path: str, versions: Optional[Iterable[int]] = None) -> None:
        """Soft-deletes the latest version, or the given ``versions`` (KV v2: they can be
        undeleted); on KV v1 removes the secret."""
        if versions is None:
            self._t.request("delete", self._path("data", path))
            return
        self._v2("deleting versions")
        self._t.request("update", self._path("delete", path), {"versions": _versions(versions)})

    def undelete(self, path: str, versions: Iterable[int]) -> None:
        """Restores soft-deleted ``versions`` (KV v2)."""
        self._v2("undelete")
        self._t.request("update", self._path("undelete", path), {"versions": _versions(versions)})

    def destroy(self, path: str, versions: Iterable[int]) -> None:
        """Permanently removes the data of ``versions`` (KV v2); the metadata stays."""
        self._v2("destroy")
        self._t.request("update", self._path("destroy", path), {"versions": _versions(versions)})

    def delete_metadata(self, path: str) -> None:
        """Permanently removes the secret: every version and its metadata (KV v2)."""
        self._v2("delete_metadata")
        self._t.request("delete", self._path("metadata", path))


def cached_kv(owner: Any, mount: str, version: Optional[int]) -> "KV":
    """A :class:`KV` for ``mount`` on a Vault or Client, asking the engine's version
    once (``owner._kv_versions`` under ``owner._kv_lock``) unless given."""
    mount = mount.strip("/")
    if version is None:
        with owner._kv_lock:
            version = owner._kv_versions.get(mount)
        if version is None:
            version = detect_kv_version(owner, mount)
            with owner._kv_lock:
                owner._kv_versions[mount] = version
    return KV(owner, mount, version)
