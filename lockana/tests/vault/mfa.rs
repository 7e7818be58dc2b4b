//! Identity entities and login MFA with TOTP (issue 3), on a fake clock.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use lockana::{Error, FakeClock, Operation, Request, Response, Vault};
use serde_json::{Value, json};

use super::{call_as, clocked};
use Operation::*;

fn ok(vault: &Vault, token: &str, op: Operation, path: &str, body: Value) -> Response {
    match call_as(vault, token, op, path, body) {
        Ok(r) => r,
        Err(e) => panic!("{op:?} {path}: {e}"),
    }
}

fn data(r: &Response) -> Value {
    r.data.clone().map(Value::Object).unwrap_or(Value::Null)
}

fn login(vault: &Vault, user: &str, mfa: &[String]) -> Result<Response, Error> {
    let mut req = Request::new(Update, format!("auth/userpass/login/{user}"))
        .with_data(json!({"password": "pw"}));
    req.mfa = mfa.to_vec();
    vault.handle(req)
}

fn validate(vault: &Vault, request_id: &str, method: &str, code: &str) -> Result<Response, Error> {
    vault.handle(Request::new(Update, "sys/mfa/validate").with_data(json!({
        "mfa_request_id": request_id,
        "mfa_payload": {method: [code]},
    })))
}

fn now(clock: &FakeClock) -> u64 {
    use lockana::Clock;
    clock.now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn code(url: &str, at: u64) -> String {
    totp_rs::Totp::from_url_unchecked(url)
        .unwrap()
        .generate(at)
        .to_string()
}

struct Setup {
    vault: Vault,
    clock: Arc<FakeClock>,
    root: String,
    method: String,
    entity: String,
    url: String,
}

/// userpass at `userpass/` with `alice`, a TOTP method, alice's seed, and an
/// enforcement on the userpass mount's accessor.
fn setup() -> Setup {
    let (vault, clock, root) = clocked();
    ok(
        &vault,
        &root,
        Update,
        "sys/auth/userpass",
        json!({"type": "userpass"}),
    );
    ok(
        &vault,
        &root,
        Update,
        "sys/auth/other",
        json!({"type": "userpass"}),
    );
    for mount in ["userpass", "other"] {
        ok(
            &vault,
            &root,
            Update,
            &format!("auth/{mount}/users/alice"),
            json!({"password": "pw"}),
        );
    }
    let accessor = data(&ok(&vault, &root, Read, "sys/auth", json!({})))["userpass/"]["accessor"]
        .as_str()
        .unwrap()
        .to_owned();
    // The first login makes the entity; its id is on the token and in `auth`.
    let first = login(&vault, "alice", &[]).unwrap();
    let auth = first.auth.unwrap();
    let entity = auth.entity_id.clone();
    assert!(!entity.is_empty());
    let lookup = data(&ok(
        &vault,
        &root,
        Update,
        "identity/lookup/entity",
        json!({"alias_name": "alice", "alias_mount_accessor": accessor}),
    ));
    assert_eq!(lookup["id"], entity.as_str());
    assert_eq!(lookup["aliases"][0]["mount_type"], "userpass");
    let read = data(&ok(
        &vault,
        &root,
        Read,
        &format!("identity/entity/id/{entity}"),
        json!({}),
    ));
    assert_eq!(read["name"], lookup["name"]);
    assert_eq!(read["disabled"], false);
    let list = data(&ok(&vault, &root, List, "identity/entity/id", json!({})));
    assert_eq!(list["keys"], json!([entity]));

    let method = data(&ok(
        &vault,
        &root,
        Update,
        "identity/mfa/method/totp",
        json!({"issuer": "Lockana", "max_validation_attempts": 3}),
    ))["method_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let m = data(&ok(
        &vault,
        &root,
        Read,
        &format!("identity/mfa/method/totp/{method}"),
        json!({}),
    ));
    assert_eq!(
        (m["period"].clone(), m["digits"].clone()),
        (json!(30), json!(6))
    );
    assert_eq!(m["algorithm"], "SHA1");
    let gen_ = data(&ok(
        &vault,
        &root,
        Update,
        "identity/mfa/method/totp/admin-generate",
        json!({"method_id": method, "entity_id": entity}),
    ));
    let url = gen_["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with("otpauth://totp/Lockana:"), "{url}");
    assert!(!gen_["barcode"].as_str().unwrap().is_empty());
    // A second generate does not hand out the seed again.
    let again = ok(
        &vault,
        &root,
        Update,
        "identity/mfa/method/totp/admin-generate",
        json!({"method_id": method, "entity_id": entity}),
    );
    assert!(again.data.is_none() && !again.warnings.is_empty());
    ok(
        &vault,
        &root,
        Update,
        "identity/mfa/login-enforcement/require-totp",
        json!({"mfa_method_ids": [method], "auth_method_accessors": [accessor]}),
    );
    let e = data(&ok(
        &vault,
        &root,
        Read,
        "identity/mfa/login-enforcement/require-totp",
        json!({}),
    ));
    assert_eq!(e["mfa_method_ids"], json!([method]));
    Setup {
        vault,
        clock,
        root,
        method,
        entity,
        url,
    }
}

fn requirement(r: &Response) -> (String, Value) {
    let auth = r.auth.as_ref().expect("auth");
    assert!(auth.client_token.is_none(), "no token before MFA");
    let req = auth.mfa_requirement.clone().expect("mfa_requirement");
    (req["mfa_request_id"].as_str().unwrap().to_owned(), req)
}

#[test]
fn mfa_login_needs_a_totp_code_then_validate_gives_a_working_token() {
    let s = setup();
    let (id, req) = requirement(&login(&s.vault, "alice", &[]).unwrap());
    let any = &req["mfa_constraints"]["require-totp"]["any"][0];
    assert_eq!(any["type"], "totp");
    assert_eq!(any["id"], s.method.as_str());
    assert_eq!(any["uses_passcode"], true);
    let c = code(&s.url, now(&s.clock));
    let r = validate(&s.vault, &id, &s.method, &c).unwrap();
    let auth = r.auth.unwrap();
    let token = auth.client_token.unwrap();
    assert_eq!(auth.entity_id, s.entity);
    let me = data(&ok(
        &s.vault,
        token.expose(),
        Read,
        "auth/token/lookup-self",
        json!({}),
    ));
    assert_eq!(me["entity_id"], s.entity.as_str());
    assert_eq!(me["path"], "auth/userpass/login/alice");
    // The pending login is spent.
    assert!(matches!(
        validate(&s.vault, &id, &s.method, &c),
        Err(Error::InvalidRequest(_))
    ));
}

#[test]
fn mfa_wrong_code_refused_and_too_many_failures_drop_the_login() {
    let s = setup();
    let (id, _) = requirement(&login(&s.vault, "alice", &[]).unwrap());
    let right = code(&s.url, now(&s.clock));
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    // max_validation_attempts = 3: two failures keep the login, the third drops it.
    for _ in 0..2 {
        assert!(matches!(
            validate(&s.vault, &id, &s.method, wrong),
            Err(Error::PermissionDenied)
        ));
    }
    assert!(matches!(
        validate(&s.vault, &id, &s.method, "12ab56"),
        Err(Error::PermissionDenied)
    ));
    assert!(matches!(
        validate(&s.vault, &id, &s.method, &right),
        Err(Error::InvalidRequest(_))
    ));
}

#[test]
fn mfa_totp_code_reuse_rejected() {
    let s = setup();
    let c = code(&s.url, now(&s.clock));
    let (id, _) = requirement(&login(&s.vault, "alice", &[]).unwrap());
    validate(&s.vault, &id, &s.method, &c).unwrap();
    let (id2, _) = requirement(&login(&s.vault, "alice", &[]).unwrap());
    assert!(matches!(
        validate(&s.vault, &id2, &s.method, &c),
        Err(Error::PermissionDenied)
    ));
    // Nor through the header, nor an older code of the window.
    let older = code(&s.url, now(&s.clock) - 30);
    assert!(matches!(
        login(&s.vault, "alice", &[format!("{}:{older}", s.method)]),
        Err(Error::PermissionDenied)
    ));
    // The next period's code works.
    s.clock.advance(Duration::from_secs(30));
    let next = code(&s.url, now(&s.clock));
    validate(&s.vault, &id2, &s.method, &next).unwrap();
}

#[test]
fn mfa_one_step_login_with_the_x_vault_mfa_header() {
    let s = setup();
    let c = code(&s.url, now(&s.clock));
    let r = login(&s.vault, "alice", &[format!("{}:{c}", s.method)]).unwrap();
    let auth = r.auth.unwrap();
    assert!(auth.client_token.is_some() && auth.mfa_requirement.is_none());
    // A wrong header code is 403 and no requirement is handed out.
    s.clock.advance(Duration::from_secs(30));
    assert!(matches!(
        login(&s.vault, "alice", &[format!("{}:000000", s.method)]),
        Err(Error::PermissionDenied)
    ));
    assert!(matches!(
        login(&s.vault, "alice", &["not-a-method:123456".to_owned()]),
        Err(Error::PermissionDenied)
    ));
}

#[test]
fn mfa_unrelated_mount_is_not_affected() {
    let s = setup();
    let r = s
        .vault
        .handle(Request::new(Update, "auth/other/login/alice").with_data(json!({"password": "pw"})))
        .unwrap();
    let auth = r.auth.unwrap();
    assert!(auth.client_token.is_some() && auth.mfa_requirement.is_none());
    // A different alias on another mount is another entity.
    assert_ne!(auth.entity_id, s.entity);
}

#[test]
fn mfa_expired_pending_login_refused() {
    let s = setup();
    let (id, _) = requirement(&login(&s.vault, "alice", &[]).unwrap());
    s.clock.advance(Duration::from_secs(301));
    let c = code(&s.url, now(&s.clock));
    assert!(matches!(
        validate(&s.vault, &id, &s.method, &c),
        Err(Error::InvalidRequest(_))
    ));
}

#[test]
fn mfa_entity_without_a_secret_never_gets_a_token() {
    let s = setup();
    ok(
        &s.vault,
        &s.root,
        Update,
        "identity/mfa/method/totp/admin-destroy",
        json!({"method_id": s.method, "entity_id": s.entity}),
    );
    let (id, _) = requirement(&login(&s.vault, "alice", &[]).unwrap());
    let c = code(&s.url, now(&s.clock));
    assert!(matches!(
        validate(&s.vault, &id, &s.method, &c),
        Err(Error::PermissionDenied)
    ));
    // The method cannot go while an enforcement uses it; then it can.
    assert!(
        call_as(
            &s.vault,
            &s.root,
            Delete,
            &format!("identity/mfa/method/totp/{}", s.method),
            json!({})
        )
        .is_err()
    );
    ok(
        &s.vault,
        &s.root,
        Delete,
        "identity/mfa/login-enforcement/require-totp",
        json!({}),
    );
    ok(
        &s.vault,
        &s.root,
        Delete,
        &format!("identity/mfa/method/totp/{}", s.method),
        json!({}),
    );
    let r = login(&s.vault, "alice", &[]).unwrap();
    assert!(r.auth.unwrap().client_token.is_some());
}

#[test]
fn mfa_bad_validate_requests_and_admin_errors() {
    let s = setup();
    let err = |r: Result<Response, Error>| r.err().unwrap().to_string();
    let v = |body: Value| {
        s.vault
            .handle(Request::new(Update, "sys/mfa/validate").with_data(body))
    };
    assert_eq!(err(v(json!({}))), "missing request ID");
    assert_eq!(
        err(v(json!({"mfa_request_id": "x"}))),
        "missing mfa payload"
    );
    assert_eq!(
        err(v(
            json!({"mfa_request_id": "x", "mfa_payload": {"m": "123456"}})
        )),
        "invalid mfa payload"
    );
    assert_eq!(
        err(v(
            json!({"mfa_request_id": "x", "mfa_payload": {"m": ["123456"]}})
        )),
        "invalid request ID"
    );
    let admin = |path: &str, body: Value| call_as(&s.vault, &s.root, Update, path, body);
    assert_eq!(
        err(admin("identity/mfa/method/totp", json!({}))),
        "issuer must be set"
    );
    assert_eq!(
        err(admin(
            "identity/mfa/method/totp",
            json!({"issuer": "x", "digits": 7})
        )),
        "digits can only be 6 or 8"
    );
    assert_eq!(
        err(admin(
            "identity/mfa/method/totp/admin-generate",
            json!({"method_id": s.method, "entity_id": "0000"})
        )),
        "invalid entity ID"
    );
    assert_eq!(
        err(admin(
            "identity/mfa/login-enforcement/x",
            json!({"mfa_method_ids": [s.method]})
        )),
        "One of auth_method_accessors, auth_method_types, identity_group_ids, identity_entity_ids must be specified"
    );
    assert_eq!(
        err(admin(
            "identity/mfa/login-enforcement/x",
            json!({"mfa_method_ids": [s.method], "auth_method_accessors": ["auth_nope"]})
        )),
        "one of the auth method accessors provided is invalid"
    );
    let list = data(&ok(
        &s.vault,
        &s.root,
        List,
        "identity/mfa/method",
        json!({}),
    ));
    assert_eq!(list["keys"], json!([s.method]));
    let list = data(&ok(
        &s.vault,
        &s.root,
        List,
        "identity/mfa/login-enforcement",
        json!({}),
    ));
    assert_eq!(list["keys"], json!(["require-totp"]));
}

#[test]
fn mfa_enforcement_by_entity_id_and_self_generate() {
    let (vault, clock, root) = clocked();
    ok(
        &vault,
        &root,
        Update,
        "sys/auth/userpass",
        json!({"type": "userpass"}),
    );
    ok(
        &vault,
        &root,
        Update,
        "sys/policies/acl/mfa-self",
        json!({"policy": "path \"identity/mfa/method/totp/generate\" { capabilities = [\"update\"] }"}),
    );
    ok(
        &vault,
        &root,
        Update,
        "auth/userpass/users/bob",
        json!({"password": "pw", "token_policies": ["mfa-self"]}),
    );
    let first = login(&vault, "bob", &[]).unwrap().auth.unwrap();
    let token = first.client_token.unwrap();
    let method = data(&ok(
        &vault,
        &root,
        Update,
        "identity/mfa/method/totp",
        json!({"issuer": "L"}),
    ))["method_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The token's own entity enrolls itself.
    let url = data(&ok(
        &vault,
        token.expose(),
        Update,
        "identity/mfa/method/totp/generate",
        json!({"method_id": method}),
    ))["url"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(
        &vault,
        &root,
        Update,
        "identity/mfa/login-enforcement/bob-only",
        json!({"mfa_method_ids": [method], "identity_entity_ids": [first.entity_id]}),
    );
    let (id, _) = requirement(&login(&vault, "bob", &[]).unwrap());
    let c = code(&url, now(&clock));
    assert!(
        validate(&vault, &id, &method, &c)
            .unwrap()
            .auth
            .unwrap()
            .client_token
            .is_some()
    );
}
