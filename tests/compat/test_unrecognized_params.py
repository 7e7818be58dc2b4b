"""Vault's warning for unknown request fields, and HEAD and other methods (issue 10).

OpenBao's framework answers fields a path does not declare with the warning
`Endpoint ignored these unrecognized parameters: [a b]` (sorted, space-separated), on
every answer that has a body; a 204 stays a 204. Free-form paths (KV v1, cubbyhole) take
any field. Lockana derives the same from each backend's declared path table.

HEAD is Vault's header operation, which no path but `sys/health` serves: the token is
checked (403), then the route (404 where nothing is mounted), then 405.
"""

from __future__ import annotations

import pytest

from compat_util import Recorder

WARN = "Endpoint ignored these unrecognized parameters: [{}]"


def _warned(r: Recorder, label: str, method: str, path: str, body, expect: str | None, status: int = 200, **kw):
    """One write (or read) carrying unknown fields: same status on both, and exactly the
    expected warning (or none). Bodies are compared whole where they are stable."""
    st, b = r.http(label, method, path, body, **kw)
    assert st == status, (r.t.name, label, st, b)
    warnings = (b or {}).get("warnings") or []
    unknown = [w for w in warnings if w.startswith("Endpoint ignored")]
    assert unknown == ([expect] if expect else []), (r.t.name, label, b)
    return b


def test_unknown_fields_warned_on_declared_paths(pair):
    def s(r: Recorder):
        k = r.key
        # KV v2: top-level unknown fields are warned about, data keys are the caller's.
        _warned(r, "kv2 data write", "POST", f"secret/data/{k}", {"data": {"x": 1}, "zz": 1, "bogus": 2},
                WARN.format("bogus zz"), shape=False)
        _warned(r, "kv2 data read", "GET", f"secret/data/{k}?bogus=1", None, WARN.format("bogus"), shape=False)
        _warned(r, "kv2 config write", "POST", "secret/config", {"max_versions": 0, "bogus": 1}, None, 204)
        _warned(r, "kv2 config read", "GET", "secret/config?bogus=1", None, WARN.format("bogus"))
        _warned(r, "kv2 metadata write", "POST", f"secret/metadata/{k}", {"max_versions": 3, "bogus": 1}, None, 204)
        _warned(r, "kv2 delete", "POST", f"secret/delete/{k}", {"versions": [1], "bogus": 1}, None, 204)
        # KV v1 and cubbyhole store any field (their writes answer 204, so nothing is
        # warned), but a read's query fields are warned about.
        r.http("kv1 mount", "POST", f"sys/mounts/kv1-{k}", {"type": "kv"})
        _warned(r, "kv1 write", "POST", f"kv1-{k}/a", {"x": 1, "bogus": 2}, None, 204)
        _warned(r, "kv1 read", "GET", f"kv1-{k}/a?bogus=1", None, WARN.format("bogus"))
        _warned(r, "cubbyhole write", "POST", f"cubbyhole/{k}", {"bogus": 1}, None, 204)
        _warned(r, "wrap", "POST", "sys/wrapping/wrap", {"bogus": 1}, None, shape=False,
                headers={"X-Vault-Wrap-TTL": "60"})
        # Tokens.
        _warned(r, "token create", "POST", "auth/token/create",
                {"policies": ["default"], "ttl": "10m", "bogus": 1, "a": 2}, WARN.format("a bogus"), shape=False)
        _warned(r, "token create known fields", "POST", "auth/token/create",
                {"policies": ["default"], "display_name": "x", "no_parent": True, "renewable": True,
                 "explicit_max_ttl": "1h", "num_uses": 0, "meta": {"a": "b"}}, None, shape=False)
        _warned(r, "token lookup", "POST", "auth/token/lookup", {"token": "root", "bogus": 1},
                WARN.format("bogus"), shape=False)
        _warned(r, "token role write", "POST", f"auth/token/roles/r-{k}", {"allowed_policies": ["default"], "bogus": 1},
                None, 204)
        # AppRole.
        r.http("approle enable", "POST", f"sys/auth/ar-{k}", {"type": "approle"})
        _warned(r, "approle role write", "POST", f"auth/ar-{k}/role/web",
                {"token_ttl": "1h", "secret_id_num_uses": 2, "bogus": 1}, None, 204)
        _warned(r, "approle role-id read", "GET", f"auth/ar-{k}/role/web/role-id?bogus=1", None,
                WARN.format("bogus"), shape=False)
        _warned(r, "approle secret-id", "POST", f"auth/ar-{k}/role/web/secret-id", {"bogus": 1, "ttl": "5m"},
                WARN.format("bogus"), shape=False)
        # Userpass: the login answers with a token, so it warns.
        r.http("userpass enable", "POST", f"sys/auth/up-{k}", {"type": "userpass"})
        _warned(r, "userpass user", "POST", f"auth/up-{k}/users/bob", {"password": "pw-123456", "bogus": 1}, None, 204)
        _warned(r, "userpass login", "POST", f"auth/up-{k}/login/bob", {"password": "pw-123456", "bogus": 1},
                WARN.format("bogus"), shape=False, token=None)
        # Transit.
        r.http("transit enable", "POST", f"sys/mounts/tr-{k}", {"type": "transit"})
        _warned(r, "transit key create", "POST", f"tr-{k}/keys/k1", {"type": "aes256-gcm96", "bogus": 1},
                WARN.format("bogus"), shape=False)
        _warned(r, "transit key config", "POST", f"tr-{k}/keys/k1/config", {"deletion_allowed": True, "zz": 1},
                WARN.format("zz"), shape=False)
        _warned(r, "transit encrypt", "POST", f"tr-{k}/encrypt/k1", {"plaintext": "aGk=", "bogus": 1},
                WARN.format("bogus"), shape=False)
        # sys: mounts, tune, capabilities.
        _warned(r, "mounts read", "GET", "sys/mounts?bogus=1", None, WARN.format("bogus"), shape=False)
        _warned(r, "tune write", "POST", f"sys/mounts/kv1-{k}/tune", {"default_lease_ttl": "1h", "bogus": 1}, None, 204)
        _warned(r, "tune read", "GET", "sys/mounts/secret/tune?bogus=1", None, WARN.format("bogus"))
        _warned(r, "auth tune read", "GET", f"sys/auth/ar-{k}/tune?bogus=1", None, WARN.format("bogus"))
        _warned(r, "capabilities-self", "POST", "sys/capabilities-self", {"paths": ["secret/x"], "bogus": 1},
                WARN.format("bogus"))

    pair.run(s)


# --------------------------------------------------------------------------- methods

# (label, path) — mounted and unmounted, every built-in backend.
PATHS = [
    ("no mount", "nomount-{k}/x"),
    ("no auth mount", "auth/nomount-{k}/x"),
    ("kv2 data", "secret/data/x"),
    ("kv2 metadata", "secret/metadata/x"),
    ("kv1", "kv1h-{k}/x"),
    ("cubbyhole", "cubbyhole/x"),
    ("sys mounts", "sys/mounts"),
    ("sys seal-status", "sys/seal-status"),
    ("sys health", "sys/health"),
    ("token lookup-self", "auth/token/lookup-self"),
    ("identity unknown", "identity/nosuch-{k}"),
    ("approle role", "auth/arh-{k}/role/web"),
    ("approle unknown", "auth/arh-{k}/nosuch"),
]


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "FOO"])
def test_methods_on_mounted_and_unmounted_paths(pair, method):
    def s(r: Recorder):
        k = r.key
        r.http("kv1 mount", "POST", f"sys/mounts/kv1h-{k}", {"type": "kv"})
        r.http("approle enable", "POST", f"sys/auth/arh-{k}", {"type": "approle"})
        st, b = r.http("default token", "POST", "auth/token/create", {"policies": ["default"]}, shape=False)
        tok = b["auth"]["client_token"]
        for label, path in PATHS:
            p = path.format(k=k)
            for who, token in (("root", "root"), ("default", tok), ("bad", "nope"), ("none", None)):
                # sys/health's HEAD answers by seal state, the same on both: compare status only.
                st, b = r.http(f"{method} {label} {who}", method, p, token=token, shape=(p != "sys/health"))
                if method == "HEAD":
                    assert b is None, (r.t.name, label, b)

    pair.run(s)


def test_patch_content_type_errors(pair):
    def s(r: Recorder):
        st, b = r.http("patch no content-type", "PATCH", f"secret/data/{r.key}", data=b"{}")
        assert st == 400 and b == {"errors": ["mime: no media type"]}, (r.t.name, b)
        st, b = r.http("patch json", "PATCH", f"secret/data/{r.key}", data=b"{}",
                       headers={"Content-Type": "application/json"})
        assert st == 415, (r.t.name, b)

    pair.run(s)
