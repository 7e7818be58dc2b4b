"""Type stubs for the Rust extension ``lockana._lockana`` (see ``lockana`` for the API)."""

from os import PathLike
from typing import Any, Dict, List, Optional, Tuple, Union

__version__: str

class LockanaError(Exception):
    """Base class of every error the vault reports."""

class SealedError(LockanaError):
    """The vault is sealed: unseal it with enough key shares first."""

class NotInitializedError(LockanaError):
    """The vault has not been initialized."""

class AlreadyInitializedError(LockanaError):
    """``init`` was called on a vault that is already initialized."""

class PermissionDenied(LockanaError):
    """No token, an unknown token, or a token whose policies do not allow the request."""

class NotFound(LockanaError):
    """The entry does not exist (or the secret version is deleted or destroyed)."""

class NoRouteError(LockanaError):
    """No mount serves the path (for example ``secret/`` is not enabled)."""

class UnsupportedOperation(LockanaError):
    """The path exists but does not support the operation."""

class InvalidRequest(LockanaError):
    """The request is malformed; the message says why (it never echoes values)."""

class CasMismatch(InvalidRequest):
    """A KV v2 check-and-set version did not match the secret's current version."""

class StorageError(LockanaError):
    """The storage backend failed (for example the file is open in another process)."""

class BarrierError(LockanaError):
    """The encryption layer failed: a wrong unseal key share, or tampered data."""

class ProjectKeyError(LockanaError):
    """An RSA project's key could not open its variables (a wrong key, a damaged
    value), or a key is not valid."""

def generate_project_key(encryption: str) -> Tuple[str, str]: ...
def project_key_id(public_key: str) -> str: ...
def seal_project_values(public_key: str, project: str, values: Dict[str, str]) -> Dict[str, str]: ...
def open_project_values(private_key: str, project: str, data: Dict[str, Any]) -> Dict[str, str]: ...
def private_key_id(private_key: str) -> str: ...
def has_envelopes(data: Dict[str, Any]) -> bool: ...
def project_dotenv(vars: Dict[str, str]) -> str: ...

class Response:
    """The vault's answer to a request."""

    status: int
    """The HTTP status the server would answer with (200, 204, or 404 for a deleted KV v2 version)."""
    data: Optional[Dict[str, Any]]
    warnings: List[str]
    auth: Optional[Dict[str, Any]]
    text: Optional[str]
    """A body that is not JSON (a project's dotenv file)."""
    lease_duration: int
    lease_id: str
    renewable: bool
    mount_type: str
    def __init__(
        self,
        status: int = 200,
        data: Optional[Dict[str, Any]] = None,
        warnings: List[str] = ...,
        auth: Optional[Dict[str, Any]] = None,
        lease_duration: int = 0,
        lease_id: str = "",
        renewable: bool = False,
        mount_type: str = "",
    ) -> None: ...

class SealStatus:
    """Seal state, as ``sys/seal-status`` reports it."""

    initialized: bool
    sealed: bool
    threshold: int
    shares: int
    progress: int

class InitResult:
    """The unseal key shares (hex and base64) and the initial root token; shown once."""

    keys: List[str]
    keys_base64: List[str]
    root_token: str

class NativeVault:
    """The Rust vault handle that :class:`lockana.Vault` wraps."""

    @staticmethod
    def open(path: Optional[Union[str, PathLike[str]]] = None) -> NativeVault: ...
    @staticmethod
    def dev(root_token_id: Optional[str] = None) -> Tuple[NativeVault, str, str]: ...
    def init(self, shares: int, threshold: int, cipher: str) -> InitResult: ...
    def unseal(self, share: str) -> SealStatus: ...
    def seal(self) -> None: ...
    def seal_status(self) -> SealStatus: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    def handle(
        self,
        operation: str,
        path: str,
        data: Optional[Dict[str, Any]] = None,
        token: Optional[str] = None,
        totp_code: Optional[str] = None,
    ) -> Response: ...
