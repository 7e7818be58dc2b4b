"""Login MFA with TOTP (issue 3): identity entities, `identity/mfa/method/totp`, login
enforcement, `sys/mfa/validate` and `X-Vault-MFA`, OpenBao vs Lockana through raw HTTP.

Seeds differ between the two servers, so codes come from each server's own
`admin-generate` URL (pyotp). The `auth` block of an MFA-required login is compared by
hand: OpenBao sends `policies: null` where Lockana sends `[]`.
"""

from __future__ import annotations

import time
import urllib.parse

import pyotp

from compat_util import Recorder, shape


def _totp(url: str) -> pyotp.TOTP:
    q = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
    return pyotp.TOTP(q["secret"][0], digits=int(q["digits"][0]), interval=int(q["period"][0]))


def _wrong_code(t: pyotp.TOTP) -> str:
    now = time.time()
    window = {t.at(now + d) for d in (-60, -30, 0, 30, 60)}
    return next(c for c in ("000000", "111111", "222222") if c not in window)


def test_mfa_totp_login_enforcement_and_validate(pair):
    def s(r: Recorder):
        mp = f"up-{r.key}"
        st, _ = r.http("enable userpass", "POST", f"sys/auth/{mp}", {"type": "userpass"})
        assert st == 204
        st, _ = r.http("create user", "POST", f"auth/{mp}/users/alice", {"password": "pw"})
        assert st == 204
        st, b = r.http("sys/auth", "GET", "sys/auth", shape=False)
        accessor = b["data"][f"{mp}/"]["accessor"]

        st, b = r.http("first login", "POST", f"auth/{mp}/login/alice", {"password": "pw"}, token=None)
        assert st == 200 and b["auth"]["client_token"], b
        entity_id = b["auth"]["entity_id"]
        assert entity_id
        st, b = r.http(
            "lookup entity by alias", "POST", "identity/lookup/entity",
            {"alias_name": "alice", "alias_mount_accessor": accessor}, shape=False,
        )
        assert st == 200 and b["data"]["id"] == entity_id, b
        assert b["data"]["aliases"][0]["mount_accessor"] == accessor
        st, b = r.http("read entity", "GET", f"identity/entity/id/{entity_id}", shape=False)
        assert st == 200 and b["data"]["id"] == entity_id and b["data"]["disabled"] is False

        st, b = r.http("create method", "POST", "identity/mfa/method/totp", {"issuer": "Acme"})
        assert st == 200, b
        method = b["data"]["method_id"]
        st, b = r.http("read method", "GET", f"identity/mfa/method/totp/{method}")
        assert st == 200 and b["data"]["period"] == 30 and b["data"]["digits"] == 6, b
        assert b["data"]["algorithm"] == "SHA1" and b["data"]["max_validation_attempts"] == 5
        st, b = r.http("list methods", "LIST", "identity/mfa/method/totp", shape=False)
        assert st == 200 and method in b["data"]["keys"]
        st, b = r.http(
            "admin-generate", "POST", "identity/mfa/method/totp/admin-generate",
            {"method_id": method, "entity_id": entity_id},
        )
        assert st == 200 and b["data"]["url"].startswith("otpauth://totp/Acme:"), b
        totp = _totp(b["data"]["url"])
        st, b = r.http(
            "admin-generate again", "POST", "identity/mfa/method/totp/admin-generate",
            {"method_id": method, "entity_id": entity_id},
        )
        assert st == 200 and b["data"] is None and b["warnings"], b

        enf = f"enf-{r.key}"
        st, b = r.http(
            "enforcement", "POST", f"identity/mfa/login-enforcement/{enf}",
            {"mfa_method_ids": [method], "auth_method_accessors": [accessor]},
        )
        assert st == 204, b
        st, b = r.http("read enforcement", "GET", f"identity/mfa/login-enforcement/{enf}")
        assert st == 200 and b["data"]["auth_method_accessors"] == [accessor], b
        st, b = r.http(
            "enforcement without scope", "POST", "identity/mfa/login-enforcement/bad",
            {"mfa_method_ids": [method]},
        )
        assert st == 400, b

        st, b = r.http("login needs mfa", "POST", f"auth/{mp}/login/alice", {"password": "pw"}, token=None, shape=False)
        assert st == 200, b
        assert b["auth"]["client_token"] == ""
        req = b["auth"]["mfa_requirement"]
        assert shape(req) == {
            "mfa_constraints": {enf: {"any": ["list", {"id": "str", "type": "str", "uses_passcode": "bool"}]}},
            "mfa_request_id": "str",
        }, req
        assert req["mfa_constraints"][enf]["any"][0]["id"] == method
        assert req["mfa_constraints"][enf]["any"][0]["type"] == "totp"
        assert b["warnings"], b
        request_id = req["mfa_request_id"]

        st, b = r.http(
            "validate wrong code", "POST", "sys/mfa/validate",
            {"mfa_request_id": request_id, "mfa_payload": {method: [_wrong_code(totp)]}}, token=None, shape=False,
        )
        assert st == 403, b
        st, b = r.http(
            "validate unknown request", "POST", "sys/mfa/validate",
            {"mfa_request_id": "nope", "mfa_payload": {method: ["123456"]}}, token=None,
        )
        assert st == 400 and b == {"errors": ["invalid request ID"]}, b
        code = totp.now()
        st, b = r.http(
            "validate", "POST", "sys/mfa/validate",
            {"mfa_request_id": request_id, "mfa_payload": {method: [code]}}, token=None,
        )
        assert st == 200 and b["auth"]["client_token"] and b["auth"]["entity_id"] == entity_id, b
        tok = b["auth"]["client_token"]
        st, b = r.http("token works", "GET", "auth/token/lookup-self", token=tok, shape=False)
        assert st == 200 and b["data"]["entity_id"] == entity_id

        st, b = r.http("login again", "POST", f"auth/{mp}/login/alice", {"password": "pw"}, token=None, shape=False)
        request_id = b["auth"]["mfa_requirement"]["mfa_request_id"]
        st, b = r.http(
            "validate replayed code", "POST", "sys/mfa/validate",
            {"mfa_request_id": request_id, "mfa_payload": {method: [code]}}, token=None, shape=False,
        )
        assert st == 403, b
        st, b = r.http(
            "header wrong code", "POST", f"auth/{mp}/login/alice", {"password": "pw"}, token=None,
            headers={"X-Vault-MFA": f"{method}:{_wrong_code(totp)}"}, shape=False,
        )
        assert st == 403, b

        # Refused while an enforcement names it: OpenBao answers 500, Lockana 400.
        resp = r.t.http.delete(f"identity/mfa/method/totp/{method}")
        assert resp.status_code == (500 if r.t.name == "openbao" else 400), resp.text
        st, _ = r.http("delete enforcement", "DELETE", f"identity/mfa/login-enforcement/{enf}")
        assert st == 204
        st, _ = r.http("delete method", "DELETE", f"identity/mfa/method/totp/{method}")
        assert st == 204
        st, b = r.http("login without mfa", "POST", f"auth/{mp}/login/alice", {"password": "pw"}, token=None)
        assert st == 200 and b["auth"]["client_token"], b

    pair.run(s)
