"""JWT auth (issue 3): the same login scenario on OpenBao and Lockana, with tokens
signed here (PyJWT) and validated by each server against a PEM public key."""

from __future__ import annotations

import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from compat_util import Recorder

_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_PUB = _KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
).decode()


def _token(**claims) -> str:
    now = int(time.time())
    body = {"iss": "https://ci.example", "sub": "job-42", "aud": "lockana", "iat": now, "nbf": now - 5,
            "exp": now + 300, "project": "billing"}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, _KEY, algorithm="RS256")


def test_jwt_config_role_and_login(pair):
    def s(r: Recorder):
        mp = f"jwt-{r.key}"
        st, _ = r.http("enable", "POST", f"sys/auth/{mp}", {"type": "jwt"})
        assert st == 204
        st, _ = r.http("config", "POST", f"auth/{mp}/config",
                       {"jwt_validation_pubkeys": [_PUB], "bound_issuer": "https://ci.example"})
        assert st == 204
        st, _ = r.http("role", "POST", f"auth/{mp}/role/ci", {
            "role_type": "jwt", "user_claim": "sub", "bound_audiences": ["lockana"],
            "bound_claims": {"project": "billing"}, "token_policies": ["default"], "token_ttl": "10m",
        })
        assert st == 204
        st, b = r.http("read role", "GET", f"auth/{mp}/role/ci")
        assert st == 200 and b["data"]["user_claim"] == "sub"
        st, b = r.http("list roles", "LIST", f"auth/{mp}/role")
        assert st == 200 and b["data"]["keys"] == ["ci"]
        st, b = r.http("login", "POST", f"auth/{mp}/login", {"role": "ci", "jwt": _token()}, token=None)
        assert st == 200 and b["auth"]["client_token"], b
        assert b["auth"]["lease_duration"] == 600 and "default" in b["auth"]["policies"]
        tok = b["auth"]["client_token"]
        st, b = r.http("lookup-self", "GET", "auth/token/lookup-self", token=tok)
        assert st == 200 and b["data"]["path"] == f"auth/{mp}/login"
        for label, bad in [
            ("expired", _token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200, nbf=int(time.time()) - 7200)),
            ("wrong audience", _token(aud="someone-else")),
            ("wrong bound claim", _token(project="payroll")),
            ("wrong issuer", _token(iss="https://evil.example")),
            ("unsigned", jwt.encode({"sub": "x", "aud": "lockana"}, None, algorithm="none")),
        ]:
            st, b = r.http(label, "POST", f"auth/{mp}/login", {"role": "ci", "jwt": bad}, token=None)
            assert st in (400, 403), (label, st, b)
            assert bad not in str(b), "an error must not echo the token"
        st, _ = r.http("disable", "DELETE", f"sys/auth/{mp}")
        assert st == 204

    pair.run(s)
