"""Identity and access (issue 3): tokens, policies, userpass, approle, sys/auth.

Each `pair` scenario runs on OpenBao first, then on Lockana, comparing statuses and
response shapes step by step. hvac logins always pass `use_token=False`: the clients
are shared by the session and must keep the root token.
"""

from __future__ import annotations

from compat_util import Recorder


def _create_token(r: Recorder, label: str, body: dict, token=None):
    kw = {} if token is None else {"token": token}
    st, b = r.http(label, "POST", "auth/token/create", body, **kw)
    assert st == 200, (r.t.name, label, st, b)
    return b["auth"]["client_token"], b["auth"]["accessor"]


# --------------------------------------------------------------------------- tokens


def test_token_lifecycle(pair):
    def s(r: Recorder):
        tok, acc = _create_token(
            r, "create", {"policies": ["default"], "ttl": "1h", "meta": {"app": "web"}, "display_name": "web"}
        )
        st, b = r.http("lookup-self", "GET", "auth/token/lookup-self", token=tok)
        assert st == 200 and b["data"]["meta"] == {"app": "web"}, b
        assert b["data"]["type"] == "service" and b["data"]["renewable"] is True
        st, b = r.http("lookup", "POST", "auth/token/lookup", {"token": tok})
        assert st == 200 and b["data"]["accessor"] == acc
        st, b = r.http("lookup-accessor", "POST", "auth/token/lookup-accessor", {"accessor": acc})
        assert st == 200 and b["data"]["id"] == ""
        st, b = r.http("renew-self", "POST", "auth/token/renew-self", {"increment": "30m"}, token=tok)
        assert st == 200 and b["auth"]["lease_duration"] <= 3600
        st, _ = r.http("revoke-accessor", "POST", "auth/token/revoke-accessor", {"accessor": acc})
        assert st == 204
        st, _ = r.http("lookup-self revoked", "GET", "auth/token/lookup-self", token=tok)
        assert st == 403
        tok2, _ = _create_token(r, "create 2", {"policies": ["default"]})
        st, _ = r.http("revoke", "POST", "auth/token/revoke", {"token": tok2})
        assert st == 204
        st, _ = r.http("lookup revoked", "POST", "auth/token/lookup", {"token": tok2})
        assert st in (400, 403), st

    pair.run(s)


def test_token_child_revoked_with_parent_but_not_orphan(pair):
    def s(r: Recorder):
        st, _ = r.http(
            "policy", "PUT", f"sys/policies/acl/{r.key}",
            {"policy": 'path "auth/token/create" { capabilities = ["create", "update"] }'},
        )
        assert st == 204
        parent, _ = _create_token(r, "parent", {"policies": ["default", r.key], "ttl": "1h"})
        child, _ = _create_token(r, "child", {"policies": ["default"]}, token=parent)
        orphan, _ = _create_token(r, "orphan", {"policies": ["default"]})
        st, b = r.http("create-orphan", "POST", "auth/token/create-orphan", {"policies": ["default"]})
        assert st == 200 and b["auth"]["orphan"] is True
        st, _ = r.http("revoke parent", "POST", "auth/token/revoke", {"token": parent})
        assert st == 204
        st, _ = r.http("child gone", "GET", "auth/token/lookup-self", token=child)
        assert st == 403
        st, _ = r.http("orphan alive", "GET", "auth/token/lookup-self", token=orphan)
        assert st == 200

    pair.run(s)


def test_token_hvac_calls(pair):
    def s(r: Recorder):
        res = r.hvac("hvac create", lambda c: c.auth.token.create(policies=["default"], ttl="1h"))
        tok = res["auth"]["client_token"]
        acc = res["auth"]["accessor"]
        r.hvac("hvac lookup", lambda c: c.auth.token.lookup(tok))
        r.hvac("hvac lookup_accessor", lambda c: c.auth.token.lookup_accessor(acc))
        r.hvac("hvac renew", lambda c: c.auth.token.renew(tok, increment="10m"))
        r.hvac("hvac revoke", lambda c: c.auth.token.revoke(tok))
        r.hvac("hvac lookup revoked", lambda c: c.auth.token.lookup(tok))

    pair.run(s)


# --------------------------------------------------------------------------- policies


POLICY = """
path "secret/data/{key}/*" {{
  capabilities = ["create", "read", "update", "list"]
}}
path "secret/data/{key}/locked" {{
  capabilities = ["deny"]
}}
"""


def test_policies_crud_hvac_and_legacy(pair):
    def s(r: Recorder):
        name = r.key
        body = POLICY.format(key=name)
        r.hvac("create acl", lambda c: c.sys.create_or_update_acl_policy(name=name, policy=body))
        # OpenBao adds its policy-CAS fields (version, modified, cas_required, ...):
        # compared by hand, not by shape.
        res = r.hvac("read acl", lambda c: c.sys.read_acl_policy(name), shape=False)
        assert res["data"]["name"] == name and res["data"]["policy"] == body
        assert "name" not in res, "sys/policies/acl is not copied to the top level"
        res = r.hvac("list acl", lambda c: c.sys.list_acl_policies())
        assert name in res["data"]["keys"]
        st, b = r.http("legacy read", "GET", f"sys/policy/{name}", shape=False)
        assert st == 200 and b["rules"].strip() == body.strip()
        st, b = r.http("legacy list", "GET", "sys/policy")
        assert st == 200 and name in b["policies"]
        st, _ = r.http("legacy write", "PUT", f"sys/policy/{name}-l", {"policy": body})
        assert st == 204
        st, _ = r.http("legacy delete", "DELETE", f"sys/policy/{name}-l")
        assert st == 204
        r.hvac("delete acl", lambda c: c.sys.delete_acl_policy(name))
        st, _ = r.http("read deleted", "GET", f"sys/policies/acl/{name}")
        assert st == 404
        st, b = r.http("read default", "GET", "sys/policies/acl/default", shape=False)
        assert st == 200

    pair.run(s)


def test_policy_allow_deny_on_kv_paths(pair):
    def s(r: Recorder):
        name = r.key
        st, _ = r.http("policy", "PUT", f"sys/policies/acl/{name}", {"policy": POLICY.format(key=name)})
        assert st == 204
        tok, _ = _create_token(r, "token", {"policies": [name]})
        st, _ = r.http("write allowed", "POST", f"secret/data/{name}/app", {"data": {"k": "v"}}, token=tok)
        assert st == 200
        st, b = r.http("read allowed", "GET", f"secret/data/{name}/app", token=tok)
        assert st == 200 and b["data"]["data"] == {"k": "v"}
        st, _ = r.http("read denied path", "GET", f"secret/data/{name}/locked", token=tok)
        assert st == 403
        st, _ = r.http("read other team", "GET", f"secret/data/{name}-b/app", token=tok)
        assert st == 403
        st, _ = r.http("delete not granted", "DELETE", f"secret/data/{name}/app", token=tok)
        assert st == 403
        st, _ = r.http("sys denied", "GET", "sys/mounts", token=tok)
        assert st == 403
        st, b = r.http(
            "capabilities-self",
            "POST",
            "sys/capabilities-self",
            {"paths": [f"secret/data/{name}/app", f"secret/data/{name}/locked"]},
            token=tok,
        )
        assert st == 200
        assert sorted(b[f"secret/data/{name}/app"]) == ["create", "list", "read", "update"]
        assert b[f"secret/data/{name}/locked"] == ["deny"]

    pair.run(s)


# --------------------------------------------------------------------------- sys/auth


def test_sys_auth_enable_tune_disable(pair):
    def s(r: Recorder):
        path = f"up-{r.key}"
        st, _ = r.http("enable", "POST", f"sys/auth/{path}", {"type": "userpass", "description": "d"})
        assert st == 204
        st, b = r.http("list", "GET", "sys/auth")
        assert b["data"][f"{path}/"]["type"] == "userpass"
        st, _ = r.http("enable twice", "POST", f"sys/auth/{path}", {"type": "userpass"})
        assert st == 400
        st, _ = r.http("tune", "POST", f"sys/auth/{path}/tune", {"default_lease_ttl": "1h", "max_lease_ttl": "2h"})
        assert st == 204
        st, b = r.http("read tune", "GET", f"sys/auth/{path}/tune")
        assert b["data"]["default_lease_ttl"] == 3600 and b["data"]["max_lease_ttl"] == 7200
        r.hvac("hvac list_auth_methods", lambda c: c.sys.list_auth_methods(), shape=False)
        st, _ = r.http("disable", "DELETE", f"sys/auth/{path}")
        assert st == 204
        st, b = r.http("list after", "GET", "sys/auth")
        assert f"{path}/" not in b["data"]

    pair.run(s)


# --------------------------------------------------------------------------- userpass


def test_userpass_users_and_login(pair):
    def s(r: Recorder):
        mp = f"up-{r.key}"
        r.hvac("enable", lambda c: c.sys.enable_auth_method("userpass", path=mp))
        r.hvac(
            "create user",
            lambda c: c.auth.userpass.create_or_update_user("alice", password="pw1", policies=["p1"], mount_point=mp),
        )
        res = r.hvac("read user", lambda c: c.auth.userpass.read_user("alice", mount_point=mp))
        assert res["data"]["token_policies"] == ["p1"]
        res = r.hvac("list users", lambda c: c.auth.userpass.list_user(mount_point=mp))
        assert res["data"]["keys"] == ["alice"]
        res = r.hvac(
            "login", lambda c: c.auth.userpass.login("alice", "pw1", use_token=False, mount_point=mp)
        )
        assert sorted(res["auth"]["policies"]) == ["default", "p1"]
        assert res["auth"]["metadata"] == {"username": "alice"}
        st, b = r.http("wrong password", "POST", f"auth/{mp}/login/alice", {"password": "nope"}, token=None)
        assert st == 400 and b == {"errors": ["invalid username or password"]}, b
        st, b = r.http("unknown user", "POST", f"auth/{mp}/login/bob", {"password": "nope"}, token=None)
        assert st == 400 and b == {"errors": ["invalid username or password"]}, b
        r.hvac(
            "change password",
            lambda c: c.auth.userpass.update_password_on_user("alice", "pw2", mount_point=mp),
        )
        st, _ = r.http("old password", "POST", f"auth/{mp}/login/alice", {"password": "pw1"}, token=None)
        assert st == 400
        st, b = r.http("new password", "POST", f"auth/{mp}/login/alice", {"password": "pw2"}, token=None)
        assert st == 200
        tok = b["auth"]["client_token"]
        st, b = r.http("login token lookup-self", "GET", "auth/token/lookup-self", token=tok)
        assert st == 200 and b["data"]["path"] == f"auth/{mp}/login/alice"
        r.hvac("delete user", lambda c: c.auth.userpass.delete_user("alice", mount_point=mp))
        st, _ = r.http("read deleted", "GET", f"auth/{mp}/users/alice")
        assert st == 404

    pair.run(s)


# --------------------------------------------------------------------------- approle


def test_approle_role_secret_id_and_login(pair):
    def s(r: Recorder):
        mp = f"ar-{r.key}"
        r.hvac("enable", lambda c: c.sys.enable_auth_method("approle", path=mp))
        r.hvac(
            "create role",
            lambda c: c.auth.approle.create_or_update_approle(
                "web", token_policies=["p1"], secret_id_num_uses=3, secret_id_ttl="10m", mount_point=mp
            ),
        )
        res = r.hvac("read role", lambda c: c.auth.approle.read_role(role_name="web", mount_point=mp))
        assert res["data"]["secret_id_num_uses"] == 3 and res["data"]["secret_id_ttl"] == 600
        res = r.hvac("list roles", lambda c: c.auth.approle.list_roles(mount_point=mp))
        assert res["data"]["keys"] == ["web"]
        res = r.hvac("role-id", lambda c: c.auth.approle.read_role_id("web", mount_point=mp))
        role_id = res["data"]["role_id"]
        res = r.hvac("secret-id", lambda c: c.auth.approle.generate_secret_id("web", mount_point=mp))
        secret_id = res["data"]["secret_id"]
        accessor = res["data"]["secret_id_accessor"]
        assert res["data"]["secret_id_num_uses"] == 3 and res["data"]["secret_id_ttl"] == 600
        res = r.hvac("list accessors", lambda c: c.auth.approle.list_secret_id_accessors("web", mount_point=mp))
        assert res["data"]["keys"] == [accessor]
        res = r.hvac("lookup secret-id", lambda c: c.auth.approle.read_secret_id("web", secret_id, mount_point=mp))
        assert res["data"]["secret_id_accessor"] == accessor
        res = r.hvac(
            "lookup accessor", lambda c: c.auth.approle.read_secret_id_accessor("web", accessor, mount_point=mp)
        )
        assert res["data"]["secret_id_num_uses"] == 3
        res = r.hvac("login", lambda c: c.auth.approle.login(role_id, secret_id, use_token=False, mount_point=mp))
        assert sorted(res["auth"]["policies"]) == ["default", "p1"]
        assert res["auth"]["metadata"] == {"role_name": "web"}
        st, b = r.http(
            "uses left", "POST", f"auth/{mp}/role/web/secret-id/lookup", {"secret_id": secret_id}
        )
        assert b["data"]["secret_id_num_uses"] == 2
        st, b = r.http(
            "wrong secret-id", "POST", f"auth/{mp}/login", {"role_id": role_id, "secret_id": "nope"}, token=None
        )
        assert st == 400 and b == {"errors": ["invalid role or secret ID"]}, b
        st, b = r.http(
            "wrong role-id", "POST", f"auth/{mp}/login", {"role_id": "nope", "secret_id": secret_id}, token=None
        )
        assert st == 400 and b == {"errors": ["invalid role or secret ID"]}, b
        st, b = r.http("missing secret-id", "POST", f"auth/{mp}/login", {"role_id": role_id}, token=None)
        assert st == 400 and b == {"errors": ["missing secret_id"]}, b
        st, _ = r.http("custom role-id", "POST", f"auth/{mp}/role/web/role-id", {"role_id": f"rid-{r.key}"})
        assert st == 204
        st, b = r.http(
            "custom secret-id", "POST", f"auth/{mp}/role/web/custom-secret-id", {"secret_id": f"sid-{r.key}"}
        )
        assert st == 200 and b["data"]["secret_id"] == f"sid-{r.key}"
        st, b = r.http(
            "login custom", "POST", f"auth/{mp}/login", {"role_id": f"rid-{r.key}", "secret_id": f"sid-{r.key}"},
            token=None,
        )
        assert st == 200
        st, _ = r.http(
            "destroy secret-id", "POST", f"auth/{mp}/role/web/secret-id/destroy", {"secret_id": f"sid-{r.key}"}
        )
        assert st == 204
        st, _ = r.http(
            "lookup destroyed", "POST", f"auth/{mp}/role/web/secret-id/lookup", {"secret_id": f"sid-{r.key}"}
        )
        assert st == 204
        st, _ = r.http(
            "destroy accessor",
            "POST",
            f"auth/{mp}/role/web/secret-id-accessor/destroy",
            {"secret_id_accessor": accessor},
        )
        assert st == 204
        st, _ = r.http(
            "lookup unknown accessor",
            "POST",
            f"auth/{mp}/role/web/secret-id-accessor/lookup",
            {"secret_id_accessor": accessor},
        )
        assert st == 404
        st, _ = r.http("list accessors empty", "LIST", f"auth/{mp}/role/web/secret-id")
        assert st == 404
        # OpenBao names the role in the error; Lockana's 404 is `{"errors": []}`.
        st, _ = r.http("secret-id for missing role", "POST", f"auth/{mp}/role/nope/secret-id", shape=False)
        assert st == 404
        st, _ = r.http("delete role", "DELETE", f"auth/{mp}/role/web")
        assert st == 204
        st, _ = r.http("read deleted role", "GET", f"auth/{mp}/role/web")
        assert st == 404

    pair.run(s)


# --------------------------------------------------------------------------- Lockana-only


def test_lockana_approle_errors_are_400_not_500(lockana):
    # OpenBao answers 500 for a missing role_id and for a role with no constraint
    # (a multierror from the plugin); both are the client's mistake, so Lockana says 400.
    h = lockana.http
    assert h.post("sys/auth/ar-errors", {"type": "approle"}).status_code == 204
    r = h.post("auth/ar-errors/login", {}, token=None)
    assert r.status_code == 400 and r.json() == {"errors": ["missing role_id"]}
    r = h.post("auth/ar-errors/role/open", {"bind_secret_id": False})
    assert r.status_code == 400


def test_lockana_userpass_missing_password_is_400(lockana):
    # OpenBao answers 500 for a login without a password; it is the client's mistake.
    h = lockana.http
    assert h.post("sys/auth/up-nopw", {"type": "userpass"}).status_code == 204
    r = h.post("auth/up-nopw/login/alice", {}, token=None)
    assert r.status_code == 400 and r.json() == {"errors": ["missing password"]}


def test_lockana_userpass_lockout_looks_like_wrong_password(lockana):
    # Vault 1.13's lockout; Lockana answers a locked user exactly as a wrong password.
    h = lockana.http
    assert h.post("sys/auth/up-lockout", {"type": "userpass"}).status_code == 204
    assert h.post("auth/up-lockout/users/carol", {"password": "right"}).status_code == 204
    for name in ["carol", "Carol", "CAROL", "carol", "carol"]:
        r = h.post(f"auth/up-lockout/login/{name}", {"password": "wrong"}, token=None)
        assert r.status_code == 400
    wrong = r.json()
    r = h.post("auth/up-lockout/login/carol", {"password": "right"}, token=None)
    assert r.status_code == 400 and r.json() == wrong
    b = h.get("sys/locked-users").json()["data"]
    assert b["total"] == 1
    acc = b["by_namespace"][0]["mount_accessors"][0]["mount_accessor"]
    assert h.post(f"sys/locked-users/{acc}/unlock/carol", {}).status_code == 204
    r = h.post("auth/up-lockout/login/carol", {"password": "right"}, token=None)
    assert r.status_code == 200


def test_lockana_cli_user_add_list_passwd_remove(lockana, lockana_bin):
    # Lockana's `lockana user` CLI: users with roles on top of userpass.
    import json
    import subprocess

    from compat_util import clean_env

    env = clean_env({"VAULT_ADDR": lockana.addr, "VAULT_TOKEN": lockana.token})

    def run(*args, stdin=""):
        return subprocess.run(
            [str(lockana_bin), "user", "--mount", "users-cli", *args],
            input=stdin, capture_output=True, text=True, env=env, timeout=60,
        )

    p = run("add", "Frank", "--role", "admin", "--password-stdin", stdin="pw-frank\n")
    assert p.returncode == 0, p.stderr
    p = run("list", "--format", "json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == [{"name": "frank", "role": "admin", "policies": ["lockana-admin"]}]
    p = run("passwd", "frank", "--password-stdin", stdin="pw-new\n")
    assert p.returncode == 0, p.stderr
    r = lockana.http.post("auth/users-cli/login/frank", {"password": "pw-new"}, token=None)
    assert r.status_code == 200 and "lockana-admin" in r.json()["auth"]["policies"]
    assert run("remove", "frank").returncode == 0
    p = run("remove", "frank")
    assert p.returncode == 1 and "no user" in p.stderr


# --------------------------------------------------------------------------- token roles


def test_token_roles_create_with_role(pair):
    def s(r: Recorder):
        role = f"role-{r.key}"
        st, _ = r.http("policy", "PUT", f"sys/policies/acl/{r.key}",
                       {"policy": 'path "secret/data/ci/*" { capabilities = ["read"] }'})
        assert st == 204
        st, _ = r.http("role write", "POST", f"auth/token/roles/{role}",
                       {"allowed_policies": [r.key], "orphan": True, "token_period": "1h"})
        assert st == 204
        st, b = r.http("role read", "GET", f"auth/token/roles/{role}")
        assert st == 200 and b["data"]["allowed_policies"] == [r.key] and b["data"]["orphan"] is True
        st, b = r.http("roles list", "LIST", "auth/token/roles")
        assert st == 200 and role in b["data"]["keys"]
        st, b = r.http("create with role", "POST", f"auth/token/create/{role}", {})
        assert st == 200 and sorted(b["auth"]["policies"]) == sorted(["default", r.key]), b
        assert b["auth"]["orphan"] is True
        tok = b["auth"]["client_token"]
        # Differs on purpose: Lockana's lookup shows `period` for a token made periodic
        # by its role, as Vault does for any periodic token; OpenBao omits it there.
        st, b = r.http("lookup-self", "GET", "auth/token/lookup-self", token=tok, shape=False)
        assert st == 200 and b["data"]["path"] == f"auth/token/create/{role}" and 0 < b["data"]["ttl"] <= 3600
        assert b["data"]["role"] == role
        st, _ = r.http("policy outside the role", "POST", f"auth/token/create/{role}", {"policies": ["other"]})
        assert st == 400
        st, _ = r.http("role delete", "DELETE", f"auth/token/roles/{role}")
        assert st == 204
        st, _ = r.http("role read deleted", "GET", f"auth/token/roles/{role}")
        assert st == 404

    pair.run(s)
