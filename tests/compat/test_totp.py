"""The TOTP secrets engine (mount type `totp`): OpenBao vs Lockana, statuses and shapes.

Codes are compared by shape only (the seeds differ); a code is computed with pyotp
for imported keys, and a validated code sent again must be refused on both.
"""

from __future__ import annotations

import pyotp
import pytest

from compat_util import Recorder

# RFC 6238's SHA1 seed, base32.
SEED = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"


def _enable(r: Recorder) -> str:
    mount = f"totp-{r.key}"
    r.http("enable totp", "POST", f"sys/mounts/{mount}", {"type": "totp"})
    return mount


def test_totp_generate_read_code_validate_replay_list_delete(pair):
    def scenario(r: Recorder):
        m = _enable(r)
        st, body = r.http(
            "generate",
            "POST",
            f"{m}/keys/gen",
            {"generate": True, "issuer": "Lockana", "account_name": "ops@example.com"},
        )
        assert st == 200 and body["data"]["url"].startswith("otpauth://totp/")
        r.http("read key", "GET", f"{m}/keys/gen")
        _, code = r.http("generate code", "GET", f"{m}/code/gen", volatile={"code"})
        st, body = r.http("validate", "POST", f"{m}/code/gen", {"code": code["data"]["code"]})
        assert body["data"]["valid"] is True
        st, body = r.http("replay", "POST", f"{m}/code/gen", {"code": code["data"]["code"]})
        assert st == 400 and "already used" in body["errors"][0]
        r.http("too long", "POST", f"{m}/code/gen", {"code": "1234567"})
        r.http("missing code", "POST", f"{m}/code/gen", {})
        r.http("unknown key: code", "GET", f"{m}/code/nope")
        r.http("unknown key: validate", "POST", f"{m}/code/nope", {"code": "123456"})
        r.http("unknown key: read", "GET", f"{m}/keys/nope")
        r.http("import by key", "POST", f"{m}/keys/imported", {"key": SEED, "issuer": "Acme", "account_name": "a"})
        r.http(
            "import by url",
            "POST",
            f"{m}/keys/by-url",
            {"url": f"otpauth://totp/Acme:bob@example.com?secret={SEED}&issuer=Acme&digits=8&period=60"},
        )
        r.http("read imported url key", "GET", f"{m}/keys/by-url")
        r.http("list", "LIST", f"{m}/keys")
        r.http("list via get", "GET", f"{m}/keys", params={"list": "true"})
        for k in ("gen", "imported", "by-url"):
            r.http(f"delete {k}", "DELETE", f"{m}/keys/{k}")
        r.http("read deleted", "GET", f"{m}/keys/gen")
        r.http("list empty", "LIST", f"{m}/keys")
        r.http("disable", "DELETE", f"sys/mounts/{m}")

    pair.run(scenario)


def test_totp_imported_key_validates_a_pyotp_code_once(pair):
    def scenario(r: Recorder):
        m = _enable(r)
        r.http("import", "POST", f"{m}/keys/k", {"key": SEED})
        code = pyotp.TOTP(SEED).now()
        st, body = r.http("validate", "POST", f"{m}/code/k", {"code": code})
        assert body["data"]["valid"] is True
        st, body = r.http("replay", "POST", f"{m}/code/k", {"code": code})
        assert st == 400
        r.http("disable", "DELETE", f"sys/mounts/{m}")

    pair.run(scenario)


def test_totp_create_options_and_errors(pair):
    def scenario(r: Recorder):
        m = _enable(r)
        gen = {"generate": True, "issuer": "Acme", "account_name": "a"}
        r.http("not exported", "POST", f"{m}/keys/quiet", {**gen, "exported": False})
        r.http("no qr", "POST", f"{m}/keys/noqr", {**gen, "qr_size": 0})
        r.http("sha512 8 digits", "POST", f"{m}/keys/big", {**gen, "algorithm": "SHA512", "digits": 8, "period": "60s"})
        r.http("read sha512", "GET", f"{m}/keys/big")
        r.http("no account", "POST", f"{m}/keys/bad", {"generate": True, "issuer": "Acme"})
        r.http("no issuer", "POST", f"{m}/keys/bad", {"generate": True, "account_name": "a"})
        r.http("key with generate", "POST", f"{m}/keys/bad", {**gen, "key": SEED})
        r.http("bad digits", "POST", f"{m}/keys/bad", {"key": SEED, "digits": 7})
        r.http("bad algorithm", "POST", f"{m}/keys/bad", {"key": SEED, "algorithm": "MD5"})
        r.http("bad skew", "POST", f"{m}/keys/bad", {"key": SEED, "skew": 2})
        r.http("no key", "POST", f"{m}/keys/bad", {})
        r.http("bad base32", "POST", f"{m}/keys/bad", {"key": "not base32!"})
        r.http("disable", "DELETE", f"sys/mounts/{m}")

    pair.run(scenario)


def test_lockana_totp_older_unused_code_refused_after_a_newer_one(lockana):
    """Lockana stores the last accepted step: an older step's code, never used, is
    refused once a newer one was accepted (OpenBao accepts it within the skew)."""
    h = lockana.http
    m = "totp-lk-steps"
    assert h.post(f"sys/mounts/{m}", {"type": "totp"}).status_code == 204
    try:
        assert h.post(f"{m}/keys/k", {"key": SEED}).status_code == 204
        t = pyotp.TOTP(SEED)
        import time

        now = time.time()
        r = h.post(f"{m}/code/k", {"code": t.at(now + 30)})
        assert r.status_code == 200 and r.json()["data"]["valid"] is True
        r = h.post(f"{m}/code/k", {"code": t.at(now)})
        assert r.status_code == 400, r.text
        assert r.json()["errors"] == ["code already used; wait until the next time period"]
    finally:
        h.delete(f"sys/mounts/{m}")


@pytest.mark.parametrize("bad", ["a", "b-", "x/y"])
def test_totp_odd_key_names_are_not_routes(pair, bad):
    def scenario(r: Recorder):
        m = _enable(r)
        r.http("odd name", "GET", f"{m}/keys/{bad}", shape=False)
        r.http("disable", "DELETE", f"sys/mounts/{m}")

    pair.run(scenario)
