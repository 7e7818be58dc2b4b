"""``lockana.Client``: a small HTTP client for a remote Lockana (or Vault) server,
standard library only. For the full Vault API use hvac; this covers what apps that
only read secrets need: KV and a project's environment by TOTP code."""

from __future__ import annotations

import json
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Optional, Union

from . import _projects
from ._kv import KV, cached_kv
from ._totp import check_env_args
from ._lockana import (
    AlreadyInitializedError,
    CasMismatch,
    InvalidRequest,
    LockanaError,
    NoRouteError,
    NotFound,
    NotInitializedError,
    PermissionDenied,
    Response,
    SealedError,
    UnsupportedOperation,
)

_METHODS = {
    "read": "GET",
    "list": "GET",  # with ?list=true, which proxies pass more readily than LIST
    "create": "POST",
    "update": "POST",
    "write": "POST",
    "patch": "PATCH",
    "delete": "DELETE",
}


def _error(status: int, body: Any) -> LockanaError:
    """Maps an HTTP error answer onto the same exception classes the in-process vault
    raises (whose status codes the server picks in one place)."""
    errors = body.get("errors") if isinstance(body, dict) else None
    msg = "; ".join(str(e) for e in errors) if errors else f"HTTP {status}"
    low = msg.lower()
    if status == 400:
        if "check-and-set" in low:
            cls = CasMismatch
        elif "already initialized" in low:
            cls = AlreadyInitializedError
        else:
            cls = InvalidRequest
    elif status == 403:
        cls = PermissionDenied
    elif status == 404:
        cls = NoRouteError if "no handler for route" in low else NotFound
    elif status == 405:
        cls = UnsupportedOperation
    elif status == 503 and "sealed" in low:
        cls = SealedError
    elif status == 501 or "not initialized" in low:
        cls = NotInitializedError
    else:
        cls = LockanaError
    exc = cls(msg)
    exc.status = status  # type: ignore[attr-defined]
    return exc


class Client:
    """A client for a Lockana server at ``url`` (``http://127.0.0.1:8200``).

    ``request`` and ``kv`` mirror :class:`Vault`'s, so code written against one works
    against the other; errors raise the same :class:`LockanaError` subclasses (with the
    HTTP status in ``.status``). Network failures raise :class:`urllib.error.URLError`.
    """

    def __init__(
        self,
        url: str,
        token: Optional[str] = None,
        *,
        timeout: float = 30.0,
        ssl_context: Optional[ssl.SSLContext] = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError("url must look like http(s)://host:port")
        self.url = url.rstrip("/")
        """The server's base address."""
        self.token = token
        """The token sent with requests that do not pass their own."""
        self.timeout = timeout
        self._ssl = ssl_context
        self._kv_versions: Dict[str, int] = {}
        self._kv_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<lockana.Client {self.url}>"

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Dict[str, Any]] = None,
        body: Optional[Dict[str, Any]] = None,
        headers: Optional[Dict[str, str]] = None,
    ) -> "tuple[int, bytes, str]":
        url = f"{self.url}/v1/{urllib.parse.quote(path.lstrip('/'), safe='/')}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("X-Vault-Request", "true")
        if data is not None:
            ctype = "application/merge-patch+json" if method == "PATCH" else "application/json"
            req.add_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._ssl) as r:
                return r.status, r.read(), r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            with e:
                return e.code, e.read(), e.headers.get("Content-Type", "")

    def request(
        self,
        operation: str,
        path: str,
        data: Optional[Dict[str, Any]] = None,
        token: Optional[str] = None,
    ) -> Response:
        """Sends one request to ``/v1/<path>``; same arguments and answer as
        :meth:`Vault.request`. For reads and lists ``data`` becomes query parameters."""
        method = _METHODS.get(operation)
        if method is None:
            raise ValueError(
                "operation must be one of: read, create, update (or write), patch, delete, list"
            )
        query: Optional[Dict[str, Any]] = None
        body: Optional[Dict[str, Any]] = None
        if method in ("GET", "DELETE"):
            query = dict(data or {})
            if operation == "list":
                query["list"] = "true"
        else:
            body = dict(data or {})
        headers = {}
        tok = self.token if token is None else token
        if tok:
            headers["X-Vault-Token"] = tok
        if path.startswith(("sys/mounts", "sys/remount")) and operation != "read":
            with self._kv_lock:
                self._kv_versions.clear()
        status, raw, _ = self._send(method, path, query=query, body=body, headers=headers)
        parsed: Any = None
        if raw.strip():
            try:
                parsed = json.loads(raw)
            except ValueError:
                raise LockanaError(f"HTTP {status}: the server's answer is not JSON") from None
        # KV v2 answers a deleted or destroyed version with 404 *and* its metadata.
        deleted_version = status == 404 and isinstance(parsed, dict) and parsed.get("data")
        if status >= 400 and not deleted_version:
            raise _error(status, parsed)
        if not isinstance(parsed, dict):
            return Response(status=status)
        if "request_id" not in parsed:
            # Raw answers (sys/health, sys/seal-status, ...) are the data themselves.
            return Response(status=status, data=parsed)
        return Response(
            status=status,
            data=parsed.get("data"),
            warnings=list(parsed.get("warnings") or []),
            auth=parsed.get("auth"),
            lease_duration=int(parsed.get("lease_duration") or 0),
            lease_id=parsed.get("lease_id") or "",
            renewable=bool(parsed.get("renewable")),
            mount_type=parsed.get("mount_type") or "",
        )

    def kv(self, mount: str = "secret", version: Optional[int] = None) -> KV:
        """Typed helpers for the KV engine at ``mount``, as :meth:`Vault.kv`."""
        return cached_kv(self, mount, version)

    def seal_status(self) -> Dict[str, Any]:
        """``sys/seal-status`` as a dict (no token needed)."""
        return dict(self.request("read", "sys/seal-status").data or {})

    def project_env(
        self,
        name: str,
        code: str,
        *,
        format: str = "json",
        private_key: Optional["_projects.PrivateKey"] = None,
    ) -> Union[Dict[str, str], str]:
        """A project's variables, unlocked by a one-time TOTP ``code`` from the
        project's authenticator (``GET /v1/lockana/projects/<name>/env`` with header
        ``X-Lockana-TOTP``). Returns a dict, or the text of a ``.env`` file with
        ``format="dotenv"``. A wrong, reused or locked-out code raises
        :class:`PermissionDenied`. No token is sent: the code is the credential.

        RSA projects: pass ``private_key`` (PEM text or bytes, or the key file's path);
        the server sends only ciphertext, decrypted here after the code is accepted.
        A wrong key raises :class:`ProjectKeyError`."""
        check_env_args(code, format)
        key = None if private_key is None else _projects.private_key_text(private_key)
        path = f"lockana/projects/{urllib.parse.quote(name, safe='')}/env"
        query = {"format": "dotenv"} if format == "dotenv" and key is None else None
        status, raw, _ = self._send("GET", path, query=query, headers={"X-Lockana-TOTP": code})
        if status >= 400:
            try:
                parsed = json.loads(raw) if raw.strip() else None
            except ValueError:
                parsed = None
            raise _error(status, parsed)
        if format == "dotenv" and key is None:
            return raw.decode("utf-8")
        parsed = json.loads(raw) if raw.strip() else {}
        if isinstance(parsed, dict) and "request_id" in parsed and isinstance(parsed.get("data"), dict):
            parsed = dict(parsed["data"])  # Vault's envelope
        if not isinstance(parsed, dict):
            raise LockanaError("unexpected answer from the project env endpoint")
        return _projects.open_env(name, parsed, key, format)

    def create_project(
        self,
        name: str,
        *,
        owner: Optional[str] = None,
        mount: Optional[str] = None,
        encryption: str = "chacha20",
    ) -> Dict[str, Any]:
        """As :meth:`Vault.create_project`, over HTTP (needs a token allowed to
        write ``lockana/projects/<name>``). For RSA the key pair is generated here and
        the result's ``private_key`` is shown only this once."""
        return _projects.create_project(self, name, owner, mount, encryption)

    def set_project_variables(self, name: str, variables: Dict[str, str]) -> int:
        """As :meth:`Vault.set_project_variables`: RSA values are encrypted here."""
        return _projects.set_variables(self, name, variables)

    def rotate_project_key(
        self, name: str, private_key: "_projects.PrivateKey", *, encryption: Optional[str] = None
    ) -> str:
        """As :meth:`Vault.rotate_project_key`: returns the new private key (PEM)."""
        return _projects.rotate_key(self, name, private_key, encryption)
