"""Lockana: a secrets vault that speaks HashiCorp Vault's API, in your Python process.

>>> import lockana
>>> with lockana.Vault.dev() as vault:
...     _ = vault.kv().put("app", {"password": "s3cret"})
...     vault.kv().get("app")["password"]
's3cret'

* :class:`Vault` — the vault itself, in memory or on a redb file (the server's format);
  every call goes through the same checks as the HTTP server.
* :class:`Client` — a small HTTP client for a remote Lockana server.
* Errors are subclasses of :class:`LockanaError`.
"""

from ._client import Client
from ._kv import KV
from ._totp import TOTP
from ._lockana import (
    AlreadyInitializedError,
    BarrierError,
    CasMismatch,
    InitResult,
    InvalidRequest,
    LockanaError,
    NoRouteError,
    NotFound,
    NotInitializedError,
    PermissionDenied,
    ProjectKeyError,
    Response,
    SealedError,
    SealStatus,
    StorageError,
    UnsupportedOperation,
    __version__,
)
from ._vault import Vault

__all__ = [
    "AlreadyInitializedError",
    "BarrierError",
    "TOTP",
    "CasMismatch",
    "Client",
    "InitResult",
    "InvalidRequest",
    "KV",
    "LockanaError",
    "NoRouteError",
    "NotFound",
    "NotInitializedError",
    "PermissionDenied",
    "ProjectKeyError",
    "Response",
    "SealStatus",
    "SealedError",
    "StorageError",
    "UnsupportedOperation",
    "Vault",
    "__version__",
]
