"""Everyday client commands (the `bao` CLI, hvac, raw HTTP) run against both servers.

Each test runs one scenario on OpenBao and on Lockana and asserts the same outcome:
exit code or status, and the output fields a user reads. A scenario returns a plain
value (the "outcome"); the test compares OpenBao's with Lockana's and also checks
OpenBao's against what the scenario expects, so a test that cannot fail on OpenBao is
caught too.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from compat_util import Target, clean_env, uid

CLI_TIMEOUT_S = 60


def bao(bao_bin: Path, t: Target, home: Path, *args: str, token: str | None = None) -> tuple[int, str, str]:
    """Runs the `bao` CLI against `t`; `token=""` runs it without a token."""
    env = {"VAULT_ADDR": t.addr, "HOME": str(home), "NO_COLOR": "1"}
    tok = t.token if token is None else token
    if tok:
        env["VAULT_TOKEN"] = tok
    p = subprocess.run(
        [str(bao_bin), *args],
        env=clean_env(env),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    return p.returncode, p.stdout, p.stderr


@pytest.fixture
def both(request):
    """Both servers; tests skip when COMPAT_TARGETS leaves Lockana out."""
    ob = request.getfixturevalue("openbao")
    try:
        lk = request.getfixturevalue("lockana")
    except pytest.skip.Exception:
        lk = None
    return ob, lk


def same_outcome(both, scenario: Callable[[Target, str], Any], expect: Any = None) -> Any:
    """Runs `scenario` on OpenBao then Lockana with the same unique `key` (for mount
    paths, so both servers' listings keep the same shape for other tests); their
    outcomes must be equal (and equal `expect`, when given). Auth mounts the scenario
    enabled under `key` are disabled afterwards. Returns OpenBao's outcome."""
    ob, lk = both
    key = uid("cc")

    def run(t: Target) -> Any:
        try:
            return scenario(t, key)
        finally:
            for path in t.client.sys.list_auth_methods()["data"]:
                if key in path:
                    t.client.sys.disable_auth_method(path)

    ref = run(ob)
    if expect is not None:
        assert ref == expect, f"openbao itself: {ref!r} != expected {expect!r}"
    if lk is not None:
        got = run(lk)
        assert got == ref, f"openbao {ref!r}\n  lockana {got!r}"
    return ref


def http_status(t: Target, method: str, path: str, **kw) -> tuple[int, Any]:
    r = t.http.request(method, path, **kw)
    try:
        body = r.json() if r.content else None
    except ValueError:
        body = r.text[:200]
    return r.status_code, body


# --------------------------------------------------------------------------- null bodies


def test_write_f_sends_null_body_and_makes_an_approle_secret_id(bao_bin, both, tmp_path):
    def scenario(t: Target, key: str):
        m = f"ar-{key}"
        assert bao(bao_bin, t, tmp_path, "auth", "enable", f"-path={m}", "approle")[0] == 0
        assert bao(bao_bin, t, tmp_path, "write", f"auth/{m}/role/r1", "token_policies=default")[0] == 0
        rc, out, _ = bao(bao_bin, t, tmp_path, "write", "-format=json", "-f", f"auth/{m}/role/r1/secret-id")
        data = json.loads(out)["data"] if rc == 0 else {}
        rotate_rc = bao(bao_bin, t, tmp_path, "write", "-f", "sys/rotate")[0]
        return rc, sorted(k for k in data if k.startswith("secret_id")), rotate_rc

    same_outcome(
        both,
        scenario,
        expect=(0, ["secret_id", "secret_id_accessor", "secret_id_num_uses", "secret_id_ttl"], 0),
    )


def test_unwrap_with_the_wrapping_token_or_as_an_argument(bao_bin, both, tmp_path):
    def scenario(t: Target, key: str):
        out = []
        for how in ("as VAULT_TOKEN", "as argument without VAULT_TOKEN"):
            rc, w, _ = bao(bao_bin, t, tmp_path, "write", "-field=wrapping_token", "-wrap-ttl=60",
                           "sys/wrapping/wrap", "foo=bar")
            assert rc == 0, (t.name, w)
            w = w.strip()
            if how == "as VAULT_TOKEN":
                rc, o, _ = bao(bao_bin, t, tmp_path, "unwrap", "-format=json", token=w)
            else:
                rc, o, _ = bao(bao_bin, t, tmp_path, "unwrap", "-format=json", w, token="")
            out.append((how, rc, json.loads(o)["data"] if rc == 0 else o))
        return out

    same_outcome(
        both,
        scenario,
        expect=[("as VAULT_TOKEN", 0, {"foo": "bar"}), ("as argument without VAULT_TOKEN", 0, {"foo": "bar"})],
    )


def test_raw_null_and_empty_bodies_are_no_data(both):
    def scenario(t: Target, key: str):
        out = []
        for body in (b"null", b"", b" null \n"):
            st, _ = http_status(t, "POST", "auth/token/create", data=body,
                                headers={"Content-Type": "application/json"})
            out.append(st)
        st, _ = http_status(t, "POST", "auth/token/create", data=b"[1]")
        out.append(st)
        return out

    same_outcome(both, scenario, expect=[200, 200, 200, 400])


# --------------------------------------------------------------------------- auth tune


def test_auth_tune_through_the_cli_and_both_tune_paths(bao_bin, both, tmp_path):
    def scenario(t: Target, key: str):
        m = f"up-{key}"
        assert bao(bao_bin, t, tmp_path, "auth", "enable", f"-path={m}", "userpass")[0] == 0
        rc = bao(bao_bin, t, tmp_path, "auth", "tune", "-default-lease-ttl=1h", "-description=tuned", f"{m}/")[0]
        st1, b1 = http_status(t, "GET", f"sys/auth/{m}/tune")
        st2, b2 = http_status(t, "POST", f"sys/auth/{m}/tune", json={"max_lease_ttl": "2h"})
        st3, b3 = http_status(t, "GET", f"sys/mounts/auth/{m}/tune")
        pick = lambda b: (b or {}).get("data", {})
        return (
            rc,
            st1, pick(b1).get("default_lease_ttl"), pick(b1).get("description"),
            st2,
            st3, pick(b3).get("default_lease_ttl"), pick(b3).get("max_lease_ttl"),
        )

    same_outcome(both, scenario, expect=(0, 200, 3600, "tuned", 204, 200, 3600, 7200))


# --------------------------------------------------------------------------- token uses


def test_kv_get_with_a_use_limited_token(bao_bin, both, tmp_path):
    def scenario(t: Target, key: str):
        kv_path = f"secret/uses-{key}"
        assert bao(bao_bin, t, tmp_path, "kv", "put", kv_path, "a=1")[0] == 0
        _, tok2, _ = bao(bao_bin, t, tmp_path, "token", "create", "-field=token", "-use-limit=2", "-policy=root")
        _, tok1, _ = bao(bao_bin, t, tmp_path, "token", "create", "-field=token", "-use-limit=1", "-policy=root")
        runs = [bao(bao_bin, t, tmp_path, "kv", "get", "-field=a", kv_path, token=tok2.strip()) for _ in range(3)]
        one = bao(bao_bin, t, tmp_path, "kv", "get", "-field=a", kv_path, token=tok1.strip())
        return [(rc, out.strip() if rc == 0 else "") for rc, out, _ in runs + [one]]

    same_outcome(both, scenario, expect=[(0, "1"), (0, "1"), (2, ""), (0, "1")])


def test_lookup_self_shows_uses_left_and_minus_one_on_the_last(bao_bin, both, tmp_path):
    def scenario(t: Target, key: str):
        _, tok, _ = bao(bao_bin, t, tmp_path, "token", "create", "-field=token", "-use-limit=3", "-policy=default")
        seen = []
        for _ in range(4):
            st, b = http_status(t, "GET", "auth/token/lookup-self", token=tok.strip())
            seen.append((st, (b or {}).get("data", {}).get("num_uses") if st == 200 else None))
        return seen

    same_outcome(both, scenario, expect=[(200, 2), (200, 1), (200, -1), (403, None)])


def test_use_limited_tokens_and_children(both):
    def scenario(t: Target, key: str):
        out = []
        for uses in (2, 1):
            st, b = http_status(t, "POST", "auth/token/create", json={"num_uses": uses, "policies": ["root"]})
            parent = b["auth"]["client_token"]
            st, b = http_status(t, "POST", "auth/token/create", json={"policies": ["default"]}, token=parent)
            child = b["auth"]["client_token"] if st == 200 else None
            st_child = http_status(t, "GET", "auth/token/lookup-self", token=child)[0] if child else None
            out.append((uses, st, st_child))
        return out

    same_outcome(both, scenario, expect=[(2, 400, None), (1, 400, None)])


# --------------------------------------------------------------------------- renew


def test_renew_and_renew_self_give_the_token_back(both):
    def scenario(t: Target, key: str):
        tok = t.client.auth.token.create(policies=["default"], ttl="1h")["auth"]["client_token"]
        r1 = t.client.auth.token.renew(tok)["auth"]["client_token"] == tok
        r2 = t.http.post("auth/token/renew-self", json_body={}, token=tok).json()["auth"]["client_token"] == tok
        acc = t.client.auth.token.lookup(tok)["data"]["accessor"]
        r3 = t.client.auth.token.renew_accessor(acc)["auth"]["client_token"]
        return r1, r2, r3

    same_outcome(both, scenario, expect=(True, True, ""))


def test_bao_token_renew_prints_the_token(bao_bin, both, tmp_path):
    def scenario(t: Target, key: str):
        _, tok, _ = bao(bao_bin, t, tmp_path, "token", "create", "-field=token", "-ttl=1h", "-policy=default")
        tok = tok.strip()
        rc, out, _ = bao(bao_bin, t, tmp_path, "token", "renew", "-format=json", tok)
        return rc, json.loads(out)["auth"]["client_token"] == tok

    same_outcome(both, scenario, expect=(0, True))


# --------------------------------------------------------------------------- approle metadata


@pytest.mark.parametrize(
    "metadata_arg",
    ["metadata=env=ci,team=ops", 'metadata={"env":"ci","team":"ops"}', "metadata=Env=CI,team=ops"],
)
def test_approle_secret_id_metadata_reaches_the_login_token(bao_bin, both, tmp_path, metadata_arg):
    def scenario(t: Target, key: str):
        m = f"ar-{key}"
        assert bao(bao_bin, t, tmp_path, "auth", "enable", f"-path={m}", "approle")[0] == 0
        assert bao(bao_bin, t, tmp_path, "write", f"auth/{m}/role/r1", "token_policies=default")[0] == 0
        _, rid, _ = bao(bao_bin, t, tmp_path, "read", "-field=role_id", f"auth/{m}/role/r1/role-id")
        rc, sid, err = bao(bao_bin, t, tmp_path, "write", "-field=secret_id", f"auth/{m}/role/r1/secret-id", metadata_arg)
        if rc != 0:
            return rc, err[-80:]
        rc, out, _ = bao(bao_bin, t, tmp_path, "write", "-format=json", f"auth/{m}/login",
                         f"role_id={rid.strip()}", f"secret_id={sid.strip()}")
        auth = json.loads(out)["auth"]
        st, look = http_status(t, "GET", "auth/token/lookup-self", token=auth["client_token"])
        return rc, auth["metadata"], look["data"]["meta"]

    want = {"env": "ci", "team": "ops", "role_name": "r1"}
    same_outcome(both, scenario, expect=(0, want, want))


# --------------------------------------------------------------------------- wrapping


def test_wrap_of_an_empty_body_and_wrap_without_a_ttl(both):
    def scenario(t: Target, key: str):
        st, b = http_status(t, "POST", "sys/wrapping/wrap", json={}, headers={"X-Vault-Wrap-TTL": "60"})
        wrapped = st == 200 and bool(b["wrap_info"]["token"]) and b["wrap_info"]["ttl"] == 60
        st2, b2 = http_status(t, "POST", "sys/wrapping/unwrap", json={}, token=b["wrap_info"]["token"]) if wrapped else (None, None)
        st3, _ = http_status(t, "POST", "sys/wrapping/wrap", json={"a": "b"})
        return st, wrapped, st2, (b2 or {}).get("data"), st3

    same_outcome(both, scenario, expect=(200, True, 200, {}, 400))


# --------------------------------------------------------------------------- policy names


def test_policy_names_vault_accepts(both):
    rules = 'path "secret/data/x" { capabilities = ["read"] }'

    def scenario(t: Target, key: str):
        out = []
        for name in ("['testpolicy']", "Team Ops", "a:b"):
            t.client.sys.create_or_update_policy(name=name, policy=rules)
            got = t.client.sys.read_policy(name=name)["data"]
            out.append((got["name"], got["rules"] == rules))
            t.client.sys.delete_policy(name=name)
        for name in ("root", "ROOT", " root"):
            st, _ = http_status(t, "PUT", f"sys/policies/acl/{name}", json={"policy": rules})
            out.append((name, st))
        return out

    same_outcome(
        both,
        scenario,
        expect=[("['testpolicy']", True), ("team ops", True), ("a:b", True), ("root", 400), ("ROOT", 400), (" root", 400)],
    )


def test_lockana_refuses_unicode_lookalikes_of_root(lockana):
    # Deliberate difference (docs/compat.md): OpenBao accepts these as new policies.
    for name in ("r\u043e\u043et", "root\u200b", "\uff52oot"):
        st, _ = http_status(lockana, "PUT", f"sys/policies/acl/{name}", json={"policy": ""})
        assert st == 400, name


# --------------------------------------------------------------------------- weak typing


@pytest.mark.parametrize("ttl", [3600, "3600", "1h", "60m"])
def test_token_ttl_in_any_form_vault_takes(both, ttl):
    def scenario(t: Target, key: str):
        st, b = http_status(t, "POST", "auth/token/create", json={"ttl": ttl, "policies": "default"})
        return st, b["auth"]["lease_duration"], b["auth"]["policies"]

    same_outcome(both, scenario, expect=(200, 3600, ["default"]))


@pytest.mark.parametrize(
    "field,value,read_key,want",
    [
        # Stored as given; a login lower-cases them.
        ("token_policies", "a, B ,c", "token_policies", ["a", "B", "c"]),
        ("token_policies", ["a", "b"], "token_policies", ["a", "b"]),
        ("token_ttl", "1h", "token_ttl", 3600),
        ("token_ttl", "90", "token_ttl", 90),
        ("token_num_uses", "3", "token_num_uses", 3),
        ("token_no_default_policy", "true", "token_no_default_policy", True),
        ("token_no_default_policy", 1, "token_no_default_policy", True),
        ("token_no_default_policy", "t", "token_no_default_policy", True),
        ("secret_id_num_uses", "5", "secret_id_num_uses", 5),
    ],
)
def test_approle_role_fields_parse_and_store_as_vault(both, field, value, read_key, want):
    def scenario(t: Target, key: str):
        m = f"ar-{key}"
        t.client.sys.enable_auth_method("approle", path=m)
        st, _ = http_status(t, "POST", f"auth/{m}/role/r1", json={field: value})
        got = t.client.read(f"auth/{m}/role/r1")["data"][read_key] if st == 204 else None
        return st, got

    same_outcome(both, scenario, expect=(204, want))


def test_kv_custom_metadata_is_a_map_and_key_value_strings_are_refused(both):
    def scenario(t: Target, key: str):
        out = []
        for value in ({"owner": "ops", "n": "1"}, ["owner=ops"], "owner=ops"):
            k = uid("cm")
            st, _ = http_status(t, "POST", f"secret/metadata/{k}", json={"custom_metadata": value})
            got = t.client.secrets.kv.v2.read_secret_metadata(k)["data"]["custom_metadata"] if st == 204 else None
            out.append((st, got))
        return out

    same_outcome(both, scenario, expect=[(204, {"owner": "ops", "n": "1"}), (400, None), (400, None)])


# --------------------------------------------------------------------------- path-help


def test_path_help_through_the_cli_and_http(bao_bin, both, tmp_path):
    def scenario(t: Target, key: str):
        m = f"up-{key}"
        assert bao(bao_bin, t, tmp_path, "auth", "enable", f"-path={m}", "userpass")[0] == 0
        out = []
        for p in ("secret/", "secret/data/foo", "sys/mounts", "auth/token/lookup-self", f"auth/{m}/login/bob"):
            rc, text, _ = bao(bao_bin, t, tmp_path, "path-help", p)
            out.append((p.replace(m, "M"), rc, bool(text.strip())))
        rc, text, _ = bao(bao_bin, t, tmp_path, "path-help", "secret/data/foo")
        out.append("Matching Route: ^data/(?P<path>.*)$" in text)
        rc, text, _ = bao(bao_bin, t, tmp_path, "path-help", "secret/")
        out.append(("## DESCRIPTION" in text, "## PATHS" in text, "^data/(?P<path>.*)$" in text))
        st, b = http_status(t, "GET", "secret/data/foo?help=1")
        out.append((st, sorted(b), sorted(b["openapi"]), "/data/{path}" in b["openapi"]["paths"]))
        out.append(http_status(t, "GET", "secret/data/foo?help=1", token=None)[0])
        out.append(http_status(t, "GET", f"{uid('nomount')}/x?help=1")[0])
        return out

    same_outcome(
        both,
        scenario,
        expect=[
            ("secret/", 0, True),
            ("secret/data/foo", 0, True),
            ("sys/mounts", 0, True),
            ("auth/token/lookup-self", 0, True),
            ("auth/M/login/bob", 0, True),
            True,
            (True, True, True),
            (200, ["help", "openapi", "see_also"], ["components", "info", "openapi", "paths"], True),
            403,
            404,
        ],
    )


def test_token_create_fields_in_the_forms_clients_send(both):
    def scenario(t: Target, key: str):
        body = {"policies": "default", "num_uses": "2", "renewable": "false", "explicit_max_ttl": "2h",
                "ttl": 1800, "display_name": key}
        st, b = http_status(t, "POST", "auth/token/create", json=body)
        tok = b["auth"]["client_token"]
        d = http_status(t, "POST", "auth/token/lookup", json={"token": tok})[1]["data"]
        return st, d["num_uses"], d["renewable"], d["explicit_max_ttl"], d["creation_ttl"], d["policies"]

    same_outcome(both, scenario, expect=(200, 2, False, 7200, 1800, ["default"]))


def test_userpass_and_mount_tune_fields_in_the_forms_clients_send(both):
    def scenario(t: Target, key: str):
        m = f"up-{key}"
        t.client.sys.enable_auth_method("userpass", path=m)
        st1, _ = http_status(t, "POST", f"auth/{m}/users/bob",
                             json={"password": "pw-1234567", "token_policies": "a,b", "token_ttl": "1h",
                                   "token_max_ttl": 7200, "token_num_uses": "0"})
        u = t.client.read(f"auth/{m}/users/bob")["data"]
        kv = f"kv-{key}"
        t.client.sys.enable_secrets_engine("kv", path=kv)
        try:
            st2, _ = http_status(t, "POST", f"sys/mounts/{kv}/tune",
                                 json={"default_lease_ttl": "1h", "max_lease_ttl": "7200", "force_no_cache": True})
            tune = http_status(t, "GET", f"sys/mounts/{kv}/tune")[1]["data"]
        finally:
            t.client.sys.disable_secrets_engine(kv)
        return (st1, u["token_policies"], u["token_ttl"], u["token_max_ttl"], u["token_num_uses"],
                # force_no_cache is mount-time only: tune ignores it.
                st2, tune["default_lease_ttl"], tune["max_lease_ttl"], tune["force_no_cache"])

    same_outcome(both, scenario, expect=(204, ["a", "b"], 3600, 7200, 0, 204, 3600, 7200, False))
