//! approle, jwt and user lockout through `Vault::handle` (issue 3), on a fake clock.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lockana::{Connection, Error, Operation, Request, Vault};
use serde_json::{Value, json};

use super::{call_as, clocked};
use Operation::*;

const RSA_PRIVATE: &str = include_str!("fixtures/jwt_rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("fixtures/jwt_rsa_public.pem");
const EC_PRIVATE: &str = include_str!("fixtures/jwt_ec_private.pem");
const EC_PUBLIC: &str = include_str!("fixtures/jwt_ec_public.pem");
/// `RSA_PUBLIC` as a JWK (n, e).
const RSA_JWK_N: &str = "ugb4KtOickgpsN9sB45KiDis8mlN6exvauDi4SMeEX-Voa2dPSh8HTXdBjccMZb_ImY6FxNybQGvznBkyFyQKdBerYXD1w0qHNBSXuNLPbRY4qLd7oqB5ua1xDIy_x1nVmLf9TwLaEh99mFc339dhXxMiMsF8Cpk8tb1dK_4m40VnvpHESYdbCBAeQURGQA_vcp8I5oO-wguoZuig8c6QPE-wcQtfgNlS5MN71_P_oEmiOPR5y4ljl-RNMxwBwPD9vNvP3lfUynHB-DSlgzxU_dPZf3GYwLkkeKDc_3ub_8KUJD5X4XVSMY0-VIcjWDonuIlUO_tP8QTbH4Ifmga9Q";

fn ok(vault: &Vault, token: &str, op: Operation, path: &str, body: Value) -> Value {
    match call_as(vault, token, op, path, body) {
        Ok(r) => r.data.map(Value::Object).unwrap_or(Value::Null),
        Err(e) => panic!("{op:?} {path}: {e}"),
    }
}

fn login(vault: &Vault, path: &str, body: Value) -> Result<lockana::Response, Error> {
    vault.handle(Request::new(Update, path).with_data(body))
}

fn login_from(
    vault: &Vault,
    path: &str,
    body: Value,
    ip: &str,
) -> Result<lockana::Response, Error> {
    vault.handle(
        Request::new(Update, path)
            .with_data(body)
            .with_connection(Connection {
                remote_addr: Some(format!("{ip}:5000").parse().unwrap()),
                user_agent: None,
            }),
    )
}

fn err_text(r: Result<lockana::Response, Error>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn approle_role(vault: &Vault, root: &str, name: &str, body: Value) -> String {
    ok(
        vault,
        root,
        Update,
        "sys/auth/approle",
        json!({"type": "approle"}),
    );
    ok(
        vault,
        root,
        Update,
        &format!("auth/approle/role/{name}"),
        body,
    );
    ok(
        vault,
        root,
        Read,
        &format!("auth/approle/role/{name}/role-id"),
        json!({}),
    )["role_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn approle_login_spends_secret_id_uses_and_answers_one_error() {
    let (vault, _clock, root) = clocked();
    let role_id = approle_role(
        &vault,
        &root,
        "Web",
        json!({"token_policies": "app", "secret_id_num_uses": 2, "token_ttl": "1h"}),
    );
    let role = ok(&vault, &root, Read, "auth/approle/role/web", json!({}));
    assert_eq!(role["bind_secret_id"], true);
    assert_eq!(role["secret_id_num_uses"], 2);
    assert_eq!(role["token_policies"], json!(["app"]));
    assert_eq!(role["secret_id_bound_cidrs"], Value::Null);
    let generated = ok(
        &vault,
        &root,
        Update,
        "auth/approle/role/web/secret-id",
        json!({}),
    );
    assert_eq!(generated["secret_id_num_uses"], 2);
    let sid = generated["secret_id"].as_str().unwrap().to_owned();
    let body = json!({"role_id": role_id, "secret_id": sid});
    for _ in 0..2 {
        let r = login(&vault, "auth/approle/login", body.clone()).unwrap();
        let auth = r.auth.unwrap();
        assert_eq!(auth.policies, vec!["app", "default"]);
        assert_eq!(auth.metadata.unwrap()["role_name"], "web");
        assert_eq!(auth.lease_duration, 3600);
    }
    // Used up: the third login fails like a wrong secret ID or a wrong role ID.
    let used_up = err_text(login(&vault, "auth/approle/login", body.clone()));
    let wrong_sid = err_text(login(
        &vault,
        "auth/approle/login",
        json!({"role_id": role_id, "secret_id": "nope"}),
    ));
    let wrong_rid = err_text(login(
        &vault,
        "auth/approle/login",
        json!({"role_id": "nope", "secret_id": sid}),
    ));
    assert_eq!(used_up, "invalid role or secret ID");
    assert_eq!(wrong_sid, used_up);
    assert_eq!(wrong_rid, used_up);
    let gone = call_as(
        &vault,
        &root,
        Update,
        "auth/approle/role/web/secret-id/lookup",
        json!({"secret_id": sid}),
    )
    .unwrap();
    assert!(gone.data.is_none());
    assert!(matches!(
        login(&vault, "auth/approle/login", json!({"role_id": role_id})),
        Err(Error::InvalidRequest(m)) if m == "missing secret_id"
    ));
}

#[test]
fn approle_secret_id_ttl_runs_on_the_vault_clock() {
    let (vault, clock, root) = clocked();
    let role_id = approle_role(&vault, &root, "ci", json!({"secret_id_ttl": "10m"}));
    let sid = ok(
        &vault,
        &root,
        Update,
        "auth/approle/role/ci/secret-id",
        json!({}),
    )["secret_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = json!({"role_id": role_id, "secret_id": sid});
    // A secret ID may not outlive the role's secret_id_ttl.
    assert!(
        call_as(
            &vault,
            &root,
            Update,
            "auth/approle/role/ci/secret-id",
            json!({"ttl": "1h"})
        )
        .is_err()
    );
    clock.advance(Duration::from_secs(599));
    login(&vault, "auth/approle/login", body.clone()).unwrap();
    clock.advance(Duration::from_secs(1));
    assert!(login(&vault, "auth/approle/login", body).is_err());
}

#[test]
fn approle_custom_ids_accessors_and_destroy() {
    let (vault, _clock, root) = clocked();
    approle_role(&vault, &root, "svc", json!({}));
    ok(
        &vault,
        &root,
        Update,
        "auth/approle/role/svc/role-id",
        json!({"role_id": "svc-role"}),
    );
    let generated = ok(
        &vault,
        &root,
        Update,
        "auth/approle/role/svc/custom-secret-id",
        json!({"secret_id": "s3cret-value", "metadata": "{\"team\":\"a\"}"}),
    );
    assert_eq!(generated["secret_id"], "s3cret-value");
    let acc = generated["secret_id_accessor"].as_str().unwrap().to_owned();
    let keys = ok(
        &vault,
        &root,
        List,
        "auth/approle/role/svc/secret-id",
        json!({}),
    );
    assert_eq!(keys["keys"], json!([acc]));
    let look = ok(
        &vault,
        &root,
        Update,
        "auth/approle/role/svc/secret-id-accessor/lookup",
        json!({"secret_id_accessor": acc}),
    );
    assert_eq!(look["metadata"], json!({"team": "a"}));
    assert_eq!(look["expiration_time"], "0001-01-01T00:00:00Z");
    // Another role cannot take the same role ID.
    ok(&vault, &root, Update, "auth/approle/role/other", json!({}));
    assert!(
        call_as(
            &vault,
            &root,
            Update,
            "auth/approle/role/other/role-id",
            json!({"role_id": "svc-role"})
        )
        .is_err()
    );
    let body = json!({"role_id": "svc-role", "secret_id": "s3cret-value"});
    login(&vault, "auth/approle/login", body.clone()).unwrap();
    ok(
        &vault,
        &root,
        Update,
        "auth/approle/role/svc/secret-id-accessor/destroy",
        json!({"secret_id_accessor": acc}),
    );
    assert!(login(&vault, "auth/approle/login", body).is_err());
    let unknown = call_as(
        &vault,
        &root,
        Update,
        "auth/approle/role/svc/secret-id-accessor/lookup",
        json!({"secret_id_accessor": acc}),
    )
    .unwrap();
    assert_eq!(unknown.status, Some(404));
    // Deleting the role deletes its role ID index and secret IDs.
    ok(&vault, &root, Delete, "auth/approle/role/svc", json!({}));
    assert!(matches!(
        call_as(&vault, &root, Read, "auth/approle/role/svc", json!({})),
        Err(Error::NotFound)
    ));
    ok(
        &vault,
        &root,
        Update,
        "auth/approle/role/other/role-id",
        json!({"role_id": "svc-role"}),
    );
}

#[test]
fn approle_bound_cidrs_check_the_peer_address() {
    let (vault, _clock, root) = clocked();
    let role_id = approle_role(
        &vault,
        &root,
        "edge",
        json!({"bind_secret_id": false, "secret_id_bound_cidrs": "10.0.0.0/8"}),
    );
    let body = json!({"role_id": role_id});
    login_from(&vault, "auth/approle/login", body.clone(), "10.1.2.3").unwrap();
    assert!(login_from(&vault, "auth/approle/login", body.clone(), "192.168.1.1").is_err());
    // No peer address (a library caller): a CIDR-bound role refuses.
    assert!(login(&vault, "auth/approle/login", body).is_err());
    // A role with no constraint at all is refused.
    assert!(
        call_as(
            &vault,
            &root,
            Update,
            "auth/approle/role/open",
            json!({"bind_secret_id": false})
        )
        .is_err()
    );
}

fn userpass(vault: &Vault, root: &str) -> String {
    ok(
        vault,
        root,
        Update,
        "sys/auth/userpass",
        json!({"type": "userpass"}),
    );
    ok(
        vault,
        root,
        Update,
        "auth/userpass/users/alice",
        json!({"password": "right", "token_policies": "p"}),
    );
    let auth = ok(vault, root, Read, "sys/auth", json!({}));
    auth["userpass/"]["accessor"].as_str().unwrap().to_owned()
}

#[test]
fn userpass_lockout_after_five_failures_looks_like_a_wrong_password() {
    let (vault, clock, root) = clocked();
    let accessor = userpass(&vault, &root);
    let wrong = err_text(login(
        &vault,
        "auth/userpass/login/alice",
        json!({"password": "wrong"}),
    ));
    // One counter for every spelling of the name.
    for name in ["Alice", "alice%20", "ALICE", "alice"] {
        let path = format!("auth/userpass/login/{}", name.replace("%20", " "));
        assert_eq!(
            err_text(login(&vault, &path, json!({"password": "wrong"}))),
            wrong
        );
    }
    let locked = login(
        &vault,
        "auth/userpass/login/alice",
        json!({"password": "right"}),
    );
    assert_eq!(
        err_text(locked),
        wrong,
        "locked looks like a wrong password"
    );
    let listed = ok(&vault, &root, Read, "sys/locked-users", json!({}));
    assert_eq!(listed["total"], 1);
    assert_eq!(
        listed["by_namespace"][0]["mount_accessors"][0]["mount_accessor"],
        json!(accessor)
    );
    clock.advance(Duration::from_secs(15 * 60 - 1));
    assert!(
        login(
            &vault,
            "auth/userpass/login/alice",
            json!({"password": "right"})
        )
        .is_err()
    );
    clock.advance(Duration::from_secs(1));
    login(
        &vault,
        "auth/userpass/login/alice",
        json!({"password": "right"}),
    )
    .unwrap();
    assert_eq!(
        ok(&vault, &root, Read, "sys/locked-users", json!({}))["total"],
        0
    );
}

#[test]
fn userpass_success_resets_the_failure_counter_and_unlock_works() {
    let (vault, _clock, root) = clocked();
    let accessor = userpass(&vault, &root);
    let fail = |n: usize| {
        for _ in 0..n {
            let _ = login(
                &vault,
                "auth/userpass/login/alice",
                json!({"password": "x"}),
            );
        }
    };
    fail(4);
    login(
        &vault,
        "auth/userpass/login/alice",
        json!({"password": "right"}),
    )
    .unwrap();
    fail(4);
    login(
        &vault,
        "auth/userpass/login/alice",
        json!({"password": "right"}),
    )
    .unwrap();
    fail(5);
    assert!(
        login(
            &vault,
            "auth/userpass/login/alice",
            json!({"password": "right"})
        )
        .is_err()
    );
    ok(
        &vault,
        &root,
        Update,
        &format!("sys/locked-users/{accessor}/unlock/alice"),
        json!({}),
    );
    login(
        &vault,
        "auth/userpass/login/alice",
        json!({"password": "right"}),
    )
    .unwrap();
}

#[test]
fn userpass_counter_resets_fifteen_minutes_after_the_last_failure() {
    let (vault, clock, root) = clocked();
    userpass(&vault, &root);
    for _ in 0..4 {
        let _ = login(
            &vault,
            "auth/userpass/login/alice",
            json!({"password": "x"}),
        );
    }
    clock.advance(Duration::from_secs(15 * 60));
    let _ = login(
        &vault,
        "auth/userpass/login/alice",
        json!({"password": "x"}),
    );
    login(
        &vault,
        "auth/userpass/login/alice",
        json!({"password": "right"}),
    )
    .unwrap();
}

#[test]
fn approle_lockout_does_not_spend_secret_id_uses() {
    let (vault, clock, root) = clocked();
    let role_id = approle_role(&vault, &root, "batch", json!({"secret_id_num_uses": 1}));
    let sid = ok(
        &vault,
        &root,
        Update,
        "auth/approle/role/batch/secret-id",
        json!({}),
    )["secret_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..5 {
        assert!(
            login(
                &vault,
                "auth/approle/login",
                json!({"role_id": role_id, "secret_id": "bad"})
            )
            .is_err()
        );
    }
    let good = json!({"role_id": role_id, "secret_id": sid});
    assert_eq!(
        err_text(login(&vault, "auth/approle/login", good.clone())),
        "invalid role or secret ID"
    );
    clock.advance(Duration::from_secs(15 * 60));
    login(&vault, "auth/approle/login", good).unwrap();
}

/// A redb vault on a fake clock, reopened by `restart` as a new process would.
struct Restartable {
    dir: tempfile::TempDir,
    clock: std::sync::Arc<lockana::FakeClock>,
    key: String,
}

impl Restartable {
    fn new() -> (Restartable, Vault, String) {
        let dir = tempfile::tempdir().unwrap();
        let clock = std::sync::Arc::new(lockana::FakeClock::new(SystemTime::now()));
        let vault = Vault::open_with_clock(
            lockana::StorageConfig::Redb(dir.path().join("v.redb")),
            clock.clone(),
        )
        .unwrap();
        let (key, root) = super::init_unsealed(&vault);
        (Restartable { dir, clock, key }, vault, root)
    }

    fn restart(&self, vault: Vault) -> Vault {
        vault.close().unwrap();
        drop(vault);
        let vault = Vault::open_with_clock(
            lockana::StorageConfig::Redb(self.dir.path().join("v.redb")),
            self.clock.clone(),
        )
        .unwrap();
        vault.unseal(&self.key).unwrap();
        vault
    }
}

#[test]
fn userpass_lockout_survives_a_restart_until_it_expires() {
    let (r, vault, root) = Restartable::new();
    let accessor = userpass(&vault, &root);
    let alice =
        |v: &Vault, pw: &str| login(v, "auth/userpass/login/alice", json!({"password": pw}));
    for _ in 0..5 {
        assert!(alice(&vault, "wrong").is_err());
    }
    let vault = r.restart(vault);
    assert_eq!(
        err_text(alice(&vault, "right")),
        "invalid username or password",
        "a restart must not lift the lockout"
    );
    let listed = ok(&vault, &root, Read, "sys/locked-users", json!({}));
    assert_eq!(
        listed["by_namespace"][0]["mount_accessors"][0]["mount_accessor"],
        json!(accessor)
    );
    // A seal and unseal neither.
    vault.seal().unwrap();
    vault.unseal(&r.key).unwrap();
    assert!(alice(&vault, "right").is_err());
    // The lock still lifts on time.
    r.clock.advance(Duration::from_secs(15 * 60));
    let vault = r.restart(vault);
    alice(&vault, "right").unwrap();
    // Partial counts persist too: four failures, a restart, one more locks.
    for _ in 0..4 {
        assert!(alice(&vault, "wrong").is_err());
    }
    let vault = r.restart(vault);
    assert!(alice(&vault, "wrong").is_err());
    assert!(
        alice(&vault, "right").is_err(),
        "fifth failure after restart"
    );
    // An unlock is stored as well.
    ok(
        &vault,
        &root,
        Update,
        &format!("sys/locked-users/{accessor}/unlock/alice"),
        json!({}),
    );
    let vault = r.restart(vault);
    alice(&vault, "right").unwrap();
}

#[test]
fn approle_lockout_survives_a_restart_until_it_expires() {
    let (r, vault, root) = Restartable::new();
    let role_id = approle_role(&vault, &root, "batch", json!({}));
    let sid = ok(
        &vault,
        &root,
        Update,
        "auth/approle/role/batch/secret-id",
        json!({}),
    )["secret_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..5 {
        assert!(
            login(
                &vault,
                "auth/approle/login",
                json!({"role_id": role_id, "secret_id": "bad"})
            )
            .is_err()
        );
    }
    let good = json!({"role_id": role_id, "secret_id": sid});
    let vault = r.restart(vault);
    assert_eq!(
        err_text(login(&vault, "auth/approle/login", good.clone())),
        "invalid role or secret ID",
        "a restart must not lift the lockout"
    );
    r.clock.advance(Duration::from_secs(15 * 60));
    let vault = r.restart(vault);
    login(&vault, "auth/approle/login", good).unwrap();
}

/// A redb file written by Lockana before storage key names were encrypted (commit
/// fad38d7's server: init with one share, KV v2 at `secret/` holding `probe/canary`
/// and `probe/second`, policy `oldpolicy`, project `oldproject`, userpass user
/// `olduser` with password `oldpw`, and a child token). Throwaway credentials.
const PRE_NAMES_DB: &[u8] = include_bytes!("fixtures/pre-names.redb");
const PRE_NAMES_KEY: &str = "2flEZpqYKjVdvHxDxO2W3YuipKzoRp3wJ4FA/5Q5eW4=";
const PRE_NAMES_ROOT: &str = "lvs.t1gwAF8QUYigRj1EJsg55LAV";
const PRE_NAMES_CHILD: &str = "lvs.X21DNgDZNU3HNxIs85DHwlos";

#[test]
fn vault_written_before_encrypted_names_opens_reads_and_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.redb");
    std::fs::write(&path, PRE_NAMES_DB).unwrap();
    let has = |bytes: &[u8], word: &str| bytes.windows(word.len()).any(|w| w == word.as_bytes());
    assert!(
        has(PRE_NAMES_DB, "probe/canary"),
        "the fixture has clear names"
    );
    let open = || {
        let vault = Vault::open(lockana::StorageConfig::Redb(path.clone())).unwrap();
        vault.unseal(PRE_NAMES_KEY).unwrap();
        vault
    };
    let check = |vault: &Vault| {
        let r = ok(
            vault,
            PRE_NAMES_ROOT,
            Read,
            "secret/data/probe/canary",
            json!({}),
        );
        assert_eq!(r["data"]["pw"], "old-layout-value");
        let keys = ok(
            vault,
            PRE_NAMES_ROOT,
            List,
            "secret/metadata/probe",
            json!({}),
        );
        let keys = keys["keys"].as_array().unwrap();
        assert_eq!(keys[..2], [json!("canary"), json!("second")]);
        let p = ok(
            vault,
            PRE_NAMES_ROOT,
            Read,
            "sys/policies/acl/oldpolicy",
            json!({}),
        );
        assert!(
            p["policy"]
                .as_str()
                .unwrap()
                .contains("secret/data/probe/*")
        );
        let p = ok(
            vault,
            PRE_NAMES_ROOT,
            Read,
            "lockana/projects/oldproject",
            json!({}),
        );
        assert_eq!(p["name"], "oldproject");
        // Tokens (their salt and entries) and userpass users came along.
        let r = ok(
            vault,
            PRE_NAMES_CHILD,
            Read,
            "secret/data/probe/second",
            json!({}),
        );
        assert_eq!(r["data"]["pw"], "v2");
        login(
            vault,
            "auth/userpass/login/olduser",
            json!({"password": "oldpw"}),
        )
        .unwrap();
    };
    let vault = open();
    check(&vault);
    ok(
        &vault,
        PRE_NAMES_ROOT,
        Update,
        "secret/data/probe/third",
        json!({"data": {"pw": "new"}}),
    );
    vault.close().unwrap();
    drop(vault);
    // For this small file redb reused the pages that held the old keys. (It does not
    // promise to overwrite free pages: see docs/operations.md.)
    let after = std::fs::read(&path).unwrap();
    for name in ["probe/canary", "oldpolicy", "oldproject", "olduser"] {
        assert!(
            !has(&after, name),
            "{name} still readable after the migration"
        );
    }
    // Migrated once: a second start reads the same, and new writes are there too.
    let vault = open();
    check(&vault);
    let keys = ok(
        &vault,
        PRE_NAMES_ROOT,
        List,
        "secret/metadata/probe/",
        json!({}),
    );
    assert_eq!(keys["keys"], json!(["canary", "second", "third"]));
}

// ----------------------------------------------------------------------------- jwt

fn now_secs(clock_now: SystemTime) -> u64 {
    clock_now.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn sign(alg: Algorithm, pem: &str, kid: Option<&str>, claims: Value) -> String {
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    };
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&h, &claims, &key).unwrap()
}

fn jwt_setup(vault: &Vault, root: &str, config: Value) {
    ok(vault, root, Update, "sys/auth/jwt", json!({"type": "jwt"}));
    ok(vault, root, Update, "auth/jwt/config", config);
    ok(
        vault,
        root,
        Update,
        "auth/jwt/role/ci",
        json!({
            "role_type": "jwt",
            "user_claim": "sub",
            "bound_audiences": ["lockana"],
            "bound_claims": {"repo": ["org/app", "org/lib"]},
            "claim_mappings": {"ref": "git_ref"},
            "token_policies": ["deploy"],
            "token_ttl": 600,
        }),
    );
}

fn claims(now: u64) -> Value {
    json!({
        "iss": "https://ci.example",
        "sub": "job-42",
        "aud": "lockana",
        "repo": "org/app",
        "ref": "main",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    })
}

#[test]
fn jwt_login_with_pem_keys_checks_claims_on_the_clock() {
    let (vault, clock, root) = clocked();
    jwt_setup(
        &vault,
        &root,
        json!({"jwt_validation_pubkeys": [RSA_PUBLIC], "bound_issuer": "https://ci.example"}),
    );
    let cfg = ok(&vault, &root, Read, "auth/jwt/config", json!({}));
    assert_eq!(cfg["bound_issuer"], "https://ci.example");
    let role = ok(&vault, &root, Read, "auth/jwt/role/ci", json!({}));
    assert_eq!(
        role["bound_claims"],
        json!({"repo": ["org/app", "org/lib"]})
    );
    assert_eq!(role["user_claim"], "sub");
    let now = now_secs(clock.as_ref().now_for_tests());
    let good = sign(Algorithm::RS256, RSA_PRIVATE, None, claims(now));
    let r = login(&vault, "auth/jwt/login", json!({"role": "ci", "jwt": good})).unwrap();
    let auth = r.auth.unwrap();
    assert_eq!(auth.policies, vec!["default", "deploy"]);
    let meta = auth.metadata.unwrap();
    assert_eq!(meta["role"], "ci");
    assert_eq!(meta["git_ref"], "main");
    assert_eq!(auth.lease_duration, 600);

    let try_claims = |c: Value| {
        let t = sign(Algorithm::RS256, RSA_PRIVATE, None, c);
        let e = err_text(login(
            &vault,
            "auth/jwt/login",
            json!({"role": "ci", "jwt": t.clone()}),
        ));
        assert!(
            !e.contains(&t) && !e.contains(t.split('.').nth(1).unwrap()),
            "{e}"
        );
        e
    };
    let mut c = claims(now);
    c["aud"] = json!("someone-else");
    assert!(try_claims(c).contains("audience"));
    let mut c = claims(now);
    c["repo"] = json!("evil/app");
    assert!(try_claims(c).contains("bound claim"));
    let mut c = claims(now);
    c["iss"] = json!("https://evil.example");
    assert!(try_claims(c).contains("issuer"));
    let mut c = claims(now);
    c["nbf"] = json!(now + 3600);
    assert!(try_claims(c).contains("not yet valid"));
    let mut c = claims(now);
    c.as_object_mut().unwrap().remove("exp");
    assert!(try_claims(c).contains("exp"));
    let mut c = claims(now);
    c.as_object_mut().unwrap().remove("sub");
    assert!(try_claims(c).contains("user claim"));

    // Expiry runs on the vault's clock, with 60 s of leeway.
    clock.advance(Duration::from_secs(300 + 59));
    login(&vault, "auth/jwt/login", json!({"role": "ci", "jwt": good})).unwrap();
    clock.advance(Duration::from_secs(1));
    let e = err_text(login(
        &vault,
        "auth/jwt/login",
        json!({"role": "ci", "jwt": good}),
    ));
    assert!(e.contains("expired"), "{e}");
}

#[test]
fn jwt_algorithm_allow_list_refuses_none_hmac_and_other_keys() {
    let (vault, clock, root) = clocked();
    jwt_setup(
        &vault,
        &root,
        json!({"jwt_validation_pubkeys": [RSA_PUBLIC]}),
    );
    let now = now_secs(clock.as_ref().now_for_tests());
    let mut c = claims(now);
    c.as_object_mut().unwrap().remove("iss");
    // ES256 is not in the default allow-list (RS256).
    let es = sign(Algorithm::ES256, EC_PRIVATE, None, c.clone());
    assert!(login(&vault, "auth/jwt/login", json!({"role": "ci", "jwt": es})).is_err());
    // HS256 keyed with the public key: the classic algorithm-confusion forgery.
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &c,
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
    )
    .unwrap();
    assert!(login(&vault, "auth/jwt/login", json!({"role": "ci", "jwt": hs})).is_err());
    // alg "none", unsigned.
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let none = format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(c.to_string())
    );
    assert!(login(&vault, "auth/jwt/login", json!({"role": "ci", "jwt": none})).is_err());
    // The config never allows HMAC or none.
    for alg in ["HS256", "none"] {
        assert!(
            call_as(
                &vault,
                &root,
                Update,
                "auth/jwt/config",
                json!({"jwt_validation_pubkeys": [RSA_PUBLIC], "jwt_supported_algs": [alg]})
            )
            .is_err()
        );
    }
    // Allowing ES256 with the EC key makes the ES256 token good.
    ok(
        &vault,
        &root,
        Update,
        "auth/jwt/config",
        json!({"jwt_validation_pubkeys": [EC_PUBLIC], "jwt_supported_algs": ["ES256"]}),
    );
    let es = sign(Algorithm::ES256, EC_PRIVATE, None, c);
    login(&vault, "auth/jwt/login", json!({"role": "ci", "jwt": es})).unwrap();
}

/// Serves `body` as JSON to every request on 127.0.0.1; returns the URL.
fn serve_json(body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes());
        }
    });
    format!("http://{addr}/jwks")
}

#[test]
fn jwt_login_with_a_jwks_url() {
    let (vault, clock, root) = clocked();
    let jwks = json!({"keys": [{"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig", "n": RSA_JWK_N, "e": "AQAB"}]});
    let url = serve_json(jwks.to_string());
    jwt_setup(&vault, &root, json!({"jwks_url": url}));
    let now = now_secs(clock.as_ref().now_for_tests());
    let mut c = claims(now);
    c["repo"] = json!("org/lib");
    let t = sign(Algorithm::RS256, RSA_PRIVATE, Some("k1"), c.clone());
    login(&vault, "auth/jwt/login", json!({"role": "ci", "jwt": t})).unwrap();
    let unknown_kid = sign(Algorithm::RS256, RSA_PRIVATE, Some("k2"), c);
    assert!(
        login(
            &vault,
            "auth/jwt/login",
            json!({"role": "ci", "jwt": unknown_kid})
        )
        .is_err()
    );
    // An unreachable JWKS URL is refused at config time.
    assert!(
        call_as(
            &vault,
            &root,
            Update,
            "auth/jwt/config",
            json!({"jwks_url": "http://127.0.0.1:1/jwks"})
        )
        .is_err()
    );
}

/// The fake clock's time (the `Clock` trait, named so the call reads well).
trait NowForTests {
    fn now_for_tests(&self) -> SystemTime;
}

impl NowForTests for lockana::FakeClock {
    fn now_for_tests(&self) -> SystemTime {
        lockana::Clock::now(self)
    }
}
