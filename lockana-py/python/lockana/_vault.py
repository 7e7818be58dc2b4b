"""``lockana.Vault``: the vault in this process, on a redb file or in memory."""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, Iterable, Optional, Union

from . import _lockana, _projects
from ._kv import KV, cached_kv
from ._totp import TOTP, check_env_args
from ._lockana import (
    InitResult,
    NotInitializedError,
    Response,
    SealedError,
    SealStatus,
)

PathLike = Union[str, "os.PathLike[str]"]


def parse_key_shares(text: str) -> list:
    """Splits unseal key shares as the server's ``auto_unseal`` reads them: one per line
    or comma-separated; blank lines and lines starting with ``#`` are skipped."""
    shares = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        shares.extend(s.strip() for s in line.split(",") if s.strip())
    return shares


class Vault:
    """A Lockana vault running in this process.

    Every call goes through the same ``Vault::handle`` as the HTTP server: the same
    token and policy checks, audit and routing. The GIL is released while the vault
    works, and one ``Vault`` may be shared by many threads.

    Create one with :meth:`Vault.open` (a redb file, the server's format) or
    :meth:`Vault.dev` (in memory, unsealed, KV v2 at ``secret/``). Use it as a context
    manager, or call :meth:`close`, to seal it and release the file.
    """

    def __init__(self, native: "_lockana.NativeVault", token: Optional[str] = None) -> None:
        # Users call Vault.open / Vault.dev; this wraps an already opened native vault.
        self._native = native
        self.token: Optional[str] = token
        """The token sent with requests that do not pass their own."""
        self.dev_unseal_key: Optional[str] = None
        """The dev vault's single unseal key (base64); None for other vaults."""
        self._kv_versions: Dict[str, int] = {}
        self._kv_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def open(
        cls,
        path: Optional[PathLike],
        *,
        unseal_key: Union[str, Iterable[str], None] = None,
        key_file: Optional[PathLike] = None,
        token: Optional[str] = None,
    ) -> "Vault":
        """Opens (or creates) the vault stored in the redb file at ``path``; ``None``
        keeps it in memory. The file is the server's format: a ``lockana server`` can
        open it later (not at the same time: one process holds the file).

        ``unseal_key`` (one share, or several) or ``key_file`` (shares one per line or
        comma-separated, ``#`` comments, as the server's ``auto_unseal`` reads) unseal it
        right away; raises :class:`SealedError` if they do not reach the threshold, and
        :class:`NotInitializedError` if the vault was never initialized. ``token`` is
        sent with every request that does not pass its own.
        """
        if unseal_key is not None and key_file is not None:
            raise ValueError("pass unseal_key or key_file, not both")
        shares: list = []
        if isinstance(unseal_key, str):
            shares = [unseal_key]
        elif unseal_key is not None:
            shares = list(unseal_key)
        elif key_file is not None:
            with open(key_file, encoding="utf-8") as f:
                shares = parse_key_shares(f.read())
            if not shares:
                raise ValueError(f"no unseal key shares found in {os.fspath(key_file)}")
        native = _lockana.NativeVault.open(None if path is None else os.fspath(path))
        vault = cls(native, token=token)
        if shares:
            try:
                vault.unseal(shares)
            except BaseException:
                vault.close()
                raise
        return vault

    @classmethod
    def dev(cls, root_token_id: Optional[str] = None) -> "Vault":
        """An in-memory vault, initialized and unsealed, with KV v2 at ``secret/`` — as
        ``vault server -dev`` gives. ``token`` is set to the root token (``root_token_id``
        if given); the unseal key is in :attr:`dev_unseal_key`."""
        native, root_token, unseal_key = _lockana.NativeVault.dev(root_token_id)
        vault = cls(native, token=root_token)
        vault.dev_unseal_key = unseal_key
        return vault

    def init(
        self, shares: int = 5, threshold: int = 3, cipher: str = "chacha20-poly1305"
    ) -> InitResult:
        """Initializes a new vault: ``shares`` unseal key shares, ``threshold`` of which
        unseal it, and the cipher for data at rest (``chacha20-poly1305``,
        ``xchacha20-poly1305`` or ``aes-256-gcm``). The vault stays sealed. If this
        object has no token yet, it takes the new root token."""
        result = self._native.init(shares, threshold, cipher)
        if self.token is None:
            self.token = result.root_token
        return result

    def unseal(self, key: Union[str, Iterable[str]]) -> SealStatus:
        """Submits one unseal key share (hex or base64), or several in turn; stops as
        soon as the vault is unsealed. Raises :class:`SealedError` if shares remain to
        be given after all of ``key`` was submitted as a list."""
        if isinstance(key, str):
            return self._native.unseal(key)
        status = self._native.seal_status()
        if not status.initialized:
            raise NotInitializedError("Vault is not initialized")
        if not status.sealed:
            return status
        for share in key:
            status = self._native.unseal(share)
            if not status.sealed:
                return status
        if status.sealed:
            raise SealedError(
                f"unseal key shares submitted but the vault needs {status.threshold}"
            )
        return status

    def seal(self) -> None:
        """Seals the vault: keys leave memory; only status and unseal work until the
        next unseal."""
        self._native.seal()

    @property
    def sealed(self) -> bool:
        """Whether the vault is sealed."""
        return self._native.seal_status().sealed

    def seal_status(self) -> SealStatus:
        """Seal state: initialized, sealed, threshold, shares, progress."""
        return self._native.seal_status()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._native.closed

    def close(self) -> None:
        """Seals the vault and releases its file. Idempotent."""
        self._native.close()

    def __enter__(self) -> "Vault":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<lockana.Vault closed>" if self.closed else "<lockana.Vault>"

    # ------------------------------------------------------------------ requests

    def request(
        self,
        operation: str,
        path: str,
        data: Optional[Dict[str, Any]] = None,
        token: Optional[str] = None,
        totp_code: Optional[str] = None,
    ) -> Response:
        """Sends one request through the vault, as the HTTP API would.

        ``operation`` is ``read``, ``create``, ``update`` (or ``write``), ``patch``,
        ``delete`` or ``list``; ``path`` is the API path below ``/v1/`` (for example
        ``secret/data/app``); ``data`` is the JSON body, or the query parameters of a
        read; ``token`` defaults to :attr:`token`. Errors raise subclasses of
        :class:`LockanaError`. A deleted KV v2 version answers status 404 *with* data,
        as Vault does, rather than raising.
        """
        if path.startswith(("sys/mounts", "sys/remount")) and operation != "read":
            # A mount may have been replaced by one of another KV version.
            with self._kv_lock:
                self._kv_versions.clear()
        return self._native.handle(
            operation, path, data, self.token if token is None else token, totp_code
        )

    def enable_kv(self, mount: str = "secret", version: int = 2) -> None:
        """Mounts a KV secrets engine (``vault secrets enable -path=secret kv-v2``).
        A new vault has no ``secret/`` mount; :meth:`dev` vaults do."""
        body = {"type": "kv", "options": {"version": str(version)}}
        self.request("update", f"sys/mounts/{mount.strip('/')}", body)

    # ------------------------------------------------------------------ TOTP and projects

    def totp(self, mount: str = "totp") -> TOTP:
        """Typed helpers for Vault's TOTP secrets engine at ``mount`` (enable it with
        ``request("update", "sys/mounts/totp", {"type": "totp"})``)."""
        return TOTP(self, mount)

    def create_project(
        self,
        name: str,
        *,
        owner: Optional[str] = None,
        mount: Optional[str] = None,
        encryption: str = "chacha20",
    ) -> Dict[str, Any]:
        """Creates a project: its variables are the KV v2 secret
        ``<mount>/projects/<name>`` (``mount`` defaults to ``secret``). Returns the
        project with ``otpauth_url`` and ``barcode`` (PNG, base64) — the seed, shown
        only this once: scan it into an authenticator app.

        ``encryption="rsa-3072"`` or ``"rsa-4096"``: the key pair is generated here and
        only the public key is stored; the result's ``private_key`` (PEM, shown once)
        is the only way to read the variables. Write them with
        :meth:`set_project_variables`, read them with ``project_env(...,
        private_key=...)``."""
        return _projects.create_project(self, name, owner, mount, encryption)

    def set_project_variables(self, name: str, variables: Dict[str, str]) -> int:
        """Adds or replaces variables (others stay); for an RSA project each value is
        encrypted to its public key before it reaches the vault. Returns the new KV
        version."""
        return _projects.set_variables(self, name, variables)

    def rotate_project_key(
        self, name: str, private_key: "_projects.PrivateKey", *, encryption: Optional[str] = None
    ) -> str:
        """RSA projects: re-encrypts the variables to a new key pair (generated here)
        and returns its private key (PEM); ``private_key`` is the current one."""
        return _projects.rotate_key(self, name, private_key, encryption)

    def project(self, name: str) -> Dict[str, Any]:
        """A project's settings (never its seed)."""
        return dict(self.request("read", f"lockana/projects/{name}").data or {})

    def list_projects(self) -> list:
        """Project names; empty when there are none."""
        from ._lockana import NotFound

        try:
            r = self.request("list", "lockana/projects")
        except NotFound:
            return []
        return list((r.data or {}).get("keys", []))

    def delete_project(self, name: str) -> None:
        self.request("delete", f"lockana/projects/{name}")

    def rotate_project_totp(self, name: str) -> Dict[str, Any]:
        """Issues a new seed (returned once, like :meth:`create_project`); codes from
        the old one stop working."""
        r = self.request("update", f"lockana/projects/{name}/rotate-totp", {})
        return dict(r.data or {})

    def project_env(
        self,
        name: str,
        code: str,
        *,
        format: str = "json",
        private_key: Optional["_projects.PrivateKey"] = None,
    ) -> Union[Dict[str, str], str]:
        """A project's variables, unlocked by a one-time ``code`` from its
        authenticator — in process, with the same checks as
        ``GET /v1/lockana/projects/<name>/env`` (single use, lockout, audit,
        notification). Returns a dict, or the text of a ``.env`` file with
        ``format="dotenv"``. A wrong, reused or locked-out code raises
        :class:`PermissionDenied`. No token is used: the code is the credential.

        RSA projects: pass ``private_key`` (PEM text or bytes, or the key file's path);
        the values are decrypted here after the code is accepted. A wrong key raises
        :class:`ProjectKeyError`."""
        check_env_args(code, format)
        if private_key is not None:
            key = _projects.private_key_text(private_key)
            r = self._native.handle("read", f"lockana/projects/{name}/env", None, None, code)
            return _projects.open_env(name, dict(r.data or {}), key, format)
        query = {"format": "dotenv"} if format == "dotenv" else None
        r = self._native.handle("read", f"lockana/projects/{name}/env", query, None, code)
        if format == "dotenv":
            return r.text or ""
        return _projects.open_env(name, dict(r.data or {}), None, format)

    def kv(self, mount: str = "secret", version: Optional[int] = None) -> KV:
        """Typed helpers for the KV engine at ``mount``. Without ``version`` the
        engine's version (1 or 2) is asked once from ``sys/internal/ui/mounts/<mount>``
        and remembered."""
        return cached_kv(self, mount, version)
