"""Typed helpers for Vault's TOTP secrets engine (``vault.totp(mount)``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional

from ._lockana import NotFound

if TYPE_CHECKING:
    from ._vault import Vault


class TOTP:
    """The TOTP engine mounted at ``mount``: keys that generate and check codes.

    A code is accepted once: validating it again raises :class:`InvalidRequest`
    ("code already used"), as Vault's engine answers 400."""

    def __init__(self, vault: "Vault", mount: str) -> None:
        self._vault = vault
        self.mount = mount.strip("/")

    def create_key(self, name: str, *, generate: bool = True, **options: Any) -> Dict[str, Any]:
        """Creates key ``name``. With ``generate=True`` (the default) the vault makes the
        seed and returns ``url`` (otpauth) and ``barcode`` (PNG, base64) once; pass
        ``issuer`` and ``account_name``. With ``generate=False`` import ``key`` (base32)
        or ``url``. Other options: ``period``, ``algorithm``, ``digits``, ``skew``,
        ``key_size``, ``qr_size``, ``exported``."""
        body = dict(options, generate=generate)
        r = self._vault.request("update", f"{self.mount}/keys/{name}", body)
        return dict(r.data or {})

    def read_key(self, name: str) -> Dict[str, Any]:
        """A key's settings (never its seed)."""
        return dict(self._vault.request("read", f"{self.mount}/keys/{name}").data or {})

    def list_keys(self) -> List[str]:
        """Key names; empty when there are none."""
        try:
            r = self._vault.request("list", f"{self.mount}/keys")
        except NotFound:
            return []
        return list((r.data or {}).get("keys", []))

    def delete_key(self, name: str) -> None:
        self._vault.request("delete", f"{self.mount}/keys/{name}")

    def generate_code(self, name: str) -> str:
        """The current code of a key the vault generated."""
        r = self._vault.request("read", f"{self.mount}/code/{name}")
        return str((r.data or {})["code"])

    def validate_code(self, name: str, code: str) -> bool:
        """Whether ``code`` is valid now. A code that was already accepted raises
        :class:`InvalidRequest` instead: it is a replay, not just a wrong code."""
        r = self._vault.request("update", f"{self.mount}/code/{name}", {"code": code})
        return bool((r.data or {}).get("valid"))


def project_body(owner: Optional[str], mount: Optional[str]) -> Dict[str, str]:
    body: Dict[str, str] = {}
    if owner is not None:
        body["owner"] = owner
    if mount is not None:
        body["mount"] = mount
    return body


def check_env_args(code: Any, format: str) -> None:
    """Refuses a code that is not a string (an int would lose leading zeros, "012345")
    and an unknown output format."""
    if not isinstance(code, str):
        raise TypeError("code must be a string of digits")
    if format not in ("json", "dotenv"):
        raise ValueError("format must be 'json' or 'dotenv'")
