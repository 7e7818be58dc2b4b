//! The TOTP engine and projects (issue 4), on a fake clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lockana::{Connection, Error, FakeClock, Operation, Request, StorageConfig, Vault};
use serde_json::{Value, json};

use super::{call_as, clocked};
use Operation::*;

/// RFC 6238's SHA1 seed, base32.
const SEED: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

fn unix(clock: &FakeClock) -> u64 {
    use lockana::Clock;
    clock.now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn totp_from_url(url: &str) -> totp_rs::Totp {
    totp_rs::Totp::from_url_unchecked(url).unwrap()
}

fn code(t: &totp_rs::Totp, at: u64) -> String {
    t.generate(at).to_string()
}

fn data(r: lockana::Response) -> Value {
    Value::Object(r.data.unwrap())
}

fn invalid(e: Error) -> String {
    match e {
        Error::InvalidRequest(m) => m.into_owned(),
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
}

/// A clock at the start of a 30 s step (plus 5 s), so tests control step changes.
fn aligned(clock: &FakeClock) {
    let now = unix(clock);
    clock.advance(Duration::from_secs(30 - now % 30 + 5));
}

#[test]
fn totp_engine_generate_validate_and_code_reuse_rejected() {
    let (vault, clock, root) = clocked();
    aligned(&clock);
    call_as(
        &vault,
        &root,
        Update,
        "sys/mounts/totp",
        json!({"type": "totp"}),
    )
    .unwrap();
    let mounts = data(call_as(&vault, &root, Read, "sys/mounts", json!({})).unwrap());
    assert_eq!(mounts["totp/"]["type"], "totp");

    let r = call_as(
        &vault,
        &root,
        Update,
        "totp/keys/gen",
        json!({"generate": true, "issuer": "Lockana", "account_name": "ops@example.com"}),
    )
    .unwrap();
    let d = data(r);
    assert!(d["barcode"].as_str().unwrap().len() > 100);
    let url = d["url"].as_str().unwrap();
    assert!(url.starts_with("otpauth://totp/Lockana:ops%40example.com?"));
    let t = totp_from_url(url);

    // The server's code validates once, then is "already used".
    let c = data(call_as(&vault, &root, Read, "totp/code/gen", json!({})).unwrap());
    assert_eq!(c["code"], code(&t, unix(&clock)));
    assert_eq!(c["period"], "30s");
    let ok = call_as(
        &vault,
        &root,
        Update,
        "totp/code/gen",
        json!({"code": c["code"]}),
    )
    .unwrap();
    assert_eq!(data(ok)["valid"], true);
    let err = call_as(
        &vault,
        &root,
        Update,
        "totp/code/gen",
        json!({"code": c["code"]}),
    );
    assert_eq!(
        invalid(err.err().unwrap()),
        "code already used; wait until the next time period"
    );

    // Read never shows the seed.
    let k = data(call_as(&vault, &root, Read, "totp/keys/gen", json!({})).unwrap());
    assert_eq!(
        k,
        json!({"issuer": "Lockana", "account_name": "ops@example.com", "period": 30, "algorithm": "SHA1", "digits": 6})
    );

    // Wrong codes are not valid, malformed ones are refused like OpenBao does.
    let wrong = call_as(
        &vault,
        &root,
        Update,
        "totp/code/gen",
        json!({"code": "000000"}),
    );
    let expected_wrong = code(&t, unix(&clock)) != "000000";
    assert_eq!(data(wrong.unwrap())["valid"], !expected_wrong);
    for bad in [" 12345", "1234567"] {
        let e = call_as(&vault, &root, Update, "totp/code/gen", json!({"code": bad}));
        assert_eq!(
            invalid(e.err().unwrap()),
            "invalid number of digits for the code"
        );
    }
    let e = call_as(&vault, &root, Update, "totp/code/gen", json!({}));
    assert_eq!(invalid(e.err().unwrap()), "the code value is required");
    let e = call_as(
        &vault,
        &root,
        Update,
        "totp/code/nope",
        json!({"code": "123456"}),
    );
    assert_eq!(invalid(e.err().unwrap()), "unknown key: nope");
    let e = call_as(&vault, &root, Read, "totp/code/nope", json!({}));
    assert_eq!(invalid(e.err().unwrap()), "unknown key: nope");

    // List and delete.
    call_as(
        &vault,
        &root,
        Update,
        "totp/keys/imported",
        json!({"key": SEED}),
    )
    .unwrap();
    let l = data(call_as(&vault, &root, List, "totp/keys/", json!({})).unwrap());
    assert_eq!(l["keys"], json!(["gen", "imported"]));
    call_as(&vault, &root, Delete, "totp/keys/gen", json!({})).unwrap();
    call_as(&vault, &root, Delete, "totp/keys/imported", json!({})).unwrap();
    assert!(matches!(
        call_as(&vault, &root, Read, "totp/keys/gen", json!({})),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        call_as(&vault, &root, List, "totp/keys/", json!({})),
        Err(Error::NotFound)
    ));
}

#[test]
fn totp_engine_previous_step_fails_after_a_newer_one_and_skew_is_honoured() {
    let (vault, clock, root) = clocked();
    aligned(&clock);
    call_as(
        &vault,
        &root,
        Update,
        "sys/mounts/totp",
        json!({"type": "totp"}),
    )
    .unwrap();
    call_as(&vault, &root, Update, "totp/keys/k", json!({"key": SEED})).unwrap();
    call_as(
        &vault,
        &root,
        Update,
        "totp/keys/strict",
        json!({"key": SEED, "skew": 0}),
    )
    .unwrap();
    let t = totp_from_url(&format!("otpauth://totp/x:y?secret={SEED}"));
    let now = unix(&clock);
    let (prev, cur, next) = (code(&t, now - 30), code(&t, now), code(&t, now + 30));
    let valid = |key: &str, c: &str| {
        call_as(
            &vault,
            &root,
            Update,
            &format!("totp/code/{key}"),
            json!({"code": c}),
        )
        .map(|r| data(r)["valid"].as_bool().unwrap())
    };
    // skew 1: the next step's code is accepted now...
    assert!(valid("k", &next).unwrap());
    // ...and then the current and previous steps' codes, never used, are refused.
    assert!(valid("k", &cur).is_err());
    assert!(valid("k", &prev).is_err());
    // skew 0: only the current step.
    assert!(!valid("strict", &prev).unwrap());
    assert!(!valid("strict", &next).unwrap());
    assert!(valid("strict", &cur).unwrap());
    // Two steps later the code of the step after `next` works on `k`.
    clock.advance(Duration::from_secs(60));
    assert!(valid("k", &code(&t, unix(&clock))).unwrap());
    // Re-importing the key starts a fresh replay record.
    call_as(&vault, &root, Update, "totp/keys/k", json!({"key": SEED})).unwrap();
    assert!(valid("k", &code(&t, unix(&clock) - 30)).unwrap());
}

#[test]
fn totp_engine_import_by_url_and_parameter_checks() {
    let (vault, _clock, root) = clocked();
    call_as(
        &vault,
        &root,
        Update,
        "sys/mounts/totp",
        json!({"type": "totp"}),
    )
    .unwrap();
    let url = format!(
        "otpauth://totp/Acme:alice@example.com?secret={SEED}&issuer=Acme&digits=8&algorithm=SHA256&period=60"
    );
    let r = call_as(&vault, &root, Update, "totp/keys/u", json!({"url": url})).unwrap();
    assert!(r.data.is_none(), "import answers 204");
    let k = data(call_as(&vault, &root, Read, "totp/keys/u", json!({})).unwrap());
    assert_eq!(
        k,
        json!({"issuer": "Acme", "account_name": "alice@example.com", "period": 60, "algorithm": "SHA256", "digits": 8})
    );
    let c = data(call_as(&vault, &root, Read, "totp/code/u", json!({})).unwrap());
    assert_eq!(c["code"].as_str().unwrap().len(), 8);
    assert_eq!(c["period"], "1m0s");
    for (body, msg) in [
        (
            json!({"generate": true, "issuer": "a"}),
            "the account_name value is required for generated keys",
        ),
        (
            json!({"generate": true, "account_name": "a"}),
            "the issuer value is required for generated keys",
        ),
        (
            json!({"generate": true, "key": SEED}),
            "a key should not be passed if generate is true",
        ),
        (
            json!({"key": SEED, "digits": 7}),
            "the digits value can only be 6 or 8",
        ),
        (
            json!({"key": SEED, "algorithm": "MD5"}),
            "the algorithm value is not valid",
        ),
        (
            json!({"key": SEED, "skew": 2}),
            "the skew value must be 0 or 1",
        ),
        (
            json!({"key": SEED, "period": 0}),
            "the period value must be greater than zero",
        ),
        (json!({}), "the key value is required"),
        (
            json!({"key": "not base32!"}),
            "invalid key value: illegal base32 data",
        ),
    ] {
        let e = call_as(&vault, &root, Update, "totp/keys/bad", body.clone());
        assert_eq!(invalid(e.err().unwrap()), msg, "{body}");
    }
    // A generated seed is at least 128 bits.
    let e = call_as(
        &vault,
        &root,
        Update,
        "totp/keys/bad",
        json!({"generate": true, "issuer": "a", "account_name": "b", "key_size": 10}),
    );
    assert!(invalid(e.err().unwrap()).contains("128 bits"));
    // exported=false answers nothing; qr_size=0 gives the url alone.
    let r = call_as(
        &vault,
        &root,
        Update,
        "totp/keys/quiet",
        json!({"generate": true, "issuer": "a", "account_name": "b", "exported": false}),
    )
    .unwrap();
    assert!(r.data.is_none());
    let r = call_as(
        &vault,
        &root,
        Update,
        "totp/keys/noqr",
        json!({"generate": true, "issuer": "a", "account_name": "b", "qr_size": 0}),
    )
    .unwrap();
    assert_eq!(
        data(r).as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["url"]
    );
}

// ---- projects ---------------------------------------------------------------

fn create_project(vault: &Vault, root: &str, name: &str) -> totp_rs::Totp {
    let r = call_as(
        vault,
        root,
        Update,
        &format!("lockana/projects/{name}"),
        json!({"owner": "ops"}),
    )
    .unwrap();
    let d = data(r);
    assert!(d["barcode"].as_str().unwrap().len() > 100);
    totp_from_url(d["otpauth_url"].as_str().unwrap())
}

fn env_req(name: &str, code: &str, addr: &str) -> Request {
    let mut req =
        Request::new(Read, format!("lockana/projects/{name}/env")).with_connection(Connection {
            remote_addr: Some(addr.parse().unwrap()),
            user_agent: Some("tests".into()),
        });
    req.totp_code = Some(code.to_owned());
    req
}

const ADDR_A: &str = "203.0.113.7:5000";
const ADDR_B: &str = "198.51.100.9:5000";

#[test]
fn project_env_by_code_works_once_and_never_shows_the_seed() {
    let (vault, clock, root) = clocked();
    aligned(&clock);
    let t = create_project(&vault, &root, "billing");
    call_as(
        &vault,
        &root,
        Update,
        "secret/data/projects/billing",
        json!({"data": {"DB_URL": "postgres://u:p@db/x", "QUOTE": "it's \"q\" $HOME\n", "N": 5}}),
    )
    .unwrap();
    let p = data(call_as(&vault, &root, Read, "lockana/projects/billing", json!({})).unwrap());
    assert_eq!(p["owner"], "ops");
    assert_eq!(p["secret_path"], "projects/billing");
    assert!(p.get("otpauth_url").is_none() && p.get("seed").is_none());
    let l = data(call_as(&vault, &root, List, "lockana/projects/", json!({})).unwrap());
    assert_eq!(l["keys"], json!(["billing"]));

    let c = code(&t, unix(&clock));
    let env = vault.handle(env_req("billing", &c, ADDR_A)).unwrap();
    let env = data(env);
    assert_eq!(env["DB_URL"], "postgres://u:p@db/x");
    assert_eq!(env["N"], "5");
    // The same code again: refused, with the answer any failure gets.
    assert!(matches!(
        vault.handle(env_req("billing", &c, ADDR_A)),
        Err(Error::Unauthenticated)
    ));
    // The next step's code, typed with a space, works; then the previous one cannot.
    let next = code(&t, unix(&clock) + 30);
    let spaced = format!(" {} {} ", &next[..3], &next[3..]);
    let mut dot = env_req("billing", &spaced, ADDR_A);
    dot.data.insert("format".into(), json!("dotenv"));
    let raw = vault.handle(dot).unwrap().raw_body.unwrap();
    assert_eq!(raw.content_type, "text/plain; charset=utf-8");
    let text = String::from_utf8(raw.bytes).unwrap();
    assert!(text.contains("DB_URL='postgres://u:p@db/x'\n"), "{text}");
    assert!(text.contains("QUOTE='it'\\''s \"q\" $HOME\n'\n"), "{text}");
    clock.advance(Duration::from_secs(30));
    let prev = code(&t, unix(&clock) - 30);
    assert!(vault.handle(env_req("billing", &prev, ADDR_B)).is_err());

    // Full-width digits are the same code.
    clock.advance(Duration::from_secs(30));
    let c = code(&t, unix(&clock));
    let wide: String = c
        .chars()
        .map(|d| char::from_u32(0xFF10 + d.to_digit(10).unwrap()).unwrap())
        .collect();
    assert!(vault.handle(env_req("billing", &wide, ADDR_A)).is_ok());
    assert!(
        vault.handle(env_req("billing", &c, ADDR_A)).is_err(),
        "same step, other spelling"
    );

    // Without a code or a token: denied. A token with the project's policy may read.
    let no_code = Request::new(Read, "lockana/projects/billing/env");
    assert!(matches!(vault.handle(no_code), Err(Error::Unauthenticated)));
    assert!(
        call_as(
            &vault,
            &root,
            Read,
            "lockana/projects/billing/env",
            json!({})
        )
        .is_ok()
    );
}

#[test]
fn project_login_gives_a_short_lived_token_for_that_project_only() {
    let (vault, clock, root) = clocked();
    aligned(&clock);
    let t = create_project(&vault, &root, "billing");
    create_project(&vault, &root, "payroll");
    for p in ["billing", "payroll"] {
        call_as(
            &vault,
            &root,
            Update,
            &format!("secret/data/projects/{p}"),
            json!({"data": {"K": p}}),
        )
        .unwrap();
    }
    let login = |c: &str| {
        vault.handle(
            Request::new(Update, "auth/totp/login")
                .with_data(json!({"project": "billing", "code": c})),
        )
    };
    let c = code(&t, unix(&clock));
    let auth = login(&c).unwrap().auth.unwrap();
    assert_eq!(auth.policies, vec!["lockana-project-billing"]);
    assert_eq!(auth.lease_duration, 15 * 60);
    assert!(!auth.renewable);
    let tok = auth.client_token.unwrap().expose().to_owned();
    let r = call_as(
        &vault,
        &tok,
        Read,
        "secret/data/projects/billing",
        json!({}),
    )
    .unwrap();
    assert_eq!(data(r)["data"]["K"], "billing");
    assert!(
        call_as(
            &vault,
            &tok,
            Read,
            "lockana/projects/billing/env",
            json!({})
        )
        .is_ok()
    );
    for path in [
        "secret/data/projects/payroll",
        "lockana/projects/payroll/env",
        "lockana/projects/billing",
        "secret/data/other",
    ] {
        assert!(
            matches!(
                call_as(&vault, &tok, Read, path, json!({})),
                Err(Error::PermissionDenied)
            ),
            "{path}"
        );
    }
    assert!(matches!(
        call_as(
            &vault,
            &tok,
            Update,
            "secret/data/projects/billing",
            json!({"data": {}})
        ),
        Err(Error::PermissionDenied)
    ));
    // Replay of a login code.
    assert_eq!(
        invalid(login(&c).err().unwrap()),
        "TOTP code already used; wait for the next code"
    );
    assert_eq!(
        invalid(login("12345x").err().unwrap()),
        "invalid project or TOTP code"
    );
    let other = vault.handle(
        Request::new(Update, "auth/totp/login").with_data(json!({"project": "nope", "code": c})),
    );
    assert_eq!(
        invalid(other.err().unwrap()),
        "invalid project or TOTP code"
    );
    // The token expires after 15 minutes.
    clock.advance(Duration::from_secs(15 * 60 + 1));
    assert!(
        call_as(
            &vault,
            &tok,
            Read,
            "secret/data/projects/billing",
            json!({})
        )
        .is_err()
    );
    // Deleting the project removes its policy.
    call_as(&vault, &root, Delete, "lockana/projects/billing", json!({})).unwrap();
    assert!(matches!(
        call_as(
            &vault,
            &root,
            Read,
            "sys/policies/acl/lockana-project-billing",
            json!({})
        ),
        Err(Error::NotFound)
    ));
}

#[test]
fn deleting_a_project_revokes_its_login_tokens() {
    let (vault, clock, root) = clocked();
    aligned(&clock);
    let billing = create_project(&vault, &root, "billing");
    let payroll = create_project(&vault, &root, "payroll");
    for p in ["billing", "payroll"] {
        call_as(
            &vault,
            &root,
            Update,
            &format!("secret/data/projects/{p}"),
            json!({"data": {"K": p}}),
        )
        .unwrap();
    }
    let login = |project: &str, t: &totp_rs::Totp| {
        let r = vault
            .handle(
                Request::new(Update, "auth/totp/login")
                    .with_data(json!({"project": project, "code": code(t, unix(&clock))})),
            )
            .unwrap();
        r.auth.unwrap().client_token.unwrap().expose().to_owned()
    };
    let tok = login("billing", &billing);
    let other = login("payroll", &payroll);
    call_as(&vault, &tok, Read, "auth/token/lookup-self", json!({})).unwrap();

    call_as(&vault, &root, Delete, "lockana/projects/billing", json!({})).unwrap();
    // Unauthenticated (an unknown token), not merely a token without a policy.
    assert!(matches!(
        call_as(&vault, &tok, Read, "auth/token/lookup-self", json!({})),
        Err(Error::Unauthenticated)
    ));
    assert!(
        call_as(
            &vault,
            &root,
            Update,
            "auth/token/lookup",
            json!({"token": tok})
        )
        .is_err(),
        "the token is gone, not only its policy"
    );
    // A project created again under the name does not bring the old token back.
    create_project(&vault, &root, "billing");
    for path in [
        "secret/data/projects/billing",
        "lockana/projects/billing/env",
    ] {
        assert!(
            matches!(
                call_as(&vault, &tok, Read, path, json!({})),
                Err(Error::Unauthenticated)
            ),
            "{path}"
        );
    }
    // Other projects' tokens are untouched.
    let r = call_as(
        &vault,
        &other,
        Read,
        "secret/data/projects/payroll",
        json!({}),
    )
    .unwrap();
    assert_eq!(data(r)["data"]["K"], "payroll");
}

#[test]
fn project_lockout_after_five_wrong_codes_and_recovery() {
    let (vault, clock, root) = clocked();
    aligned(&clock);
    let t = create_project(&vault, &root, "billing");
    let t2 = create_project(&vault, &root, "payroll");
    let good = code(&t, unix(&clock));
    let wrong = if good == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        assert!(vault.handle(env_req("billing", wrong, ADDR_A)).is_err());
    }
    // Locked: the right code gets the wrong code's answer, from any address, and is
    // not consumed.
    assert!(matches!(
        vault.handle(env_req("billing", &good, ADDR_B)),
        Err(Error::Unauthenticated)
    ));
    // The address is locked for other projects too.
    let other = code(&t2, unix(&clock));
    assert!(vault.handle(env_req("payroll", &other, ADDR_A)).is_err());
    // ...but not from another address.
    assert!(vault.handle(env_req("payroll", &other, ADDR_B)).is_ok());
    // Recovery when the window passes.
    clock.advance(Duration::from_secs(15 * 60));
    let now_code = code(&t, unix(&clock));
    assert!(vault.handle(env_req("billing", &now_code, ADDR_A)).is_ok());
}

#[test]
fn project_last_used_step_survives_a_restart_on_redb() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lockana.redb");
    let clock = Arc::new(FakeClock::new(SystemTime::now()));
    aligned(&clock);
    let (key, t, c) = {
        let vault =
            Vault::open_with_clock(StorageConfig::Redb(path.clone()), clock.clone()).unwrap();
        let (key, root) = super::init_unsealed(&vault);
        let t = create_project(&vault, &root, "billing");
        let c = code(&t, unix(&clock));
        assert!(vault.handle(env_req("billing", &c, ADDR_A)).is_ok());
        vault.close().unwrap();
        (key, t, c)
    };
    let vault = Vault::open_with_clock(StorageConfig::Redb(path), clock.clone()).unwrap();
    vault.unseal(&key).unwrap();
    assert!(
        vault.handle(env_req("billing", &c, ADDR_A)).is_err(),
        "a used code stays used after a restart"
    );
    let next = code(&t, unix(&clock) + 30);
    assert!(vault.handle(env_req("billing", &next, ADDR_A)).is_ok());
}

#[test]
fn project_rotate_totp_invalidates_the_old_seed_and_names_are_checked() {
    let (vault, clock, root) = clocked();
    aligned(&clock);
    let old = create_project(&vault, &root, "billing");
    let r = call_as(
        &vault,
        &root,
        Update,
        "lockana/projects/billing/rotate-totp",
        json!({}),
    )
    .unwrap();
    let new = totp_from_url(data(r)["otpauth_url"].as_str().unwrap());
    assert!(
        vault
            .handle(env_req("billing", &code(&old, unix(&clock)), ADDR_A))
            .is_err()
    );
    assert!(
        vault
            .handle(env_req("billing", &code(&new, unix(&clock)), ADDR_A))
            .is_ok()
    );
    // Updating keeps the seed and never returns it.
    let r = call_as(
        &vault,
        &root,
        Update,
        "lockana/projects/billing",
        json!({"owner": "new"}),
    )
    .unwrap();
    let d = data(r);
    assert_eq!(d["owner"], "new");
    assert!(d.get("otpauth_url").is_none());
    for bad in ["Billing", "a.b", "-x"] {
        let e = call_as(
            &vault,
            &root,
            Update,
            &format!("lockana/projects/{bad}"),
            json!({}),
        );
        assert!(
            invalid(e.err().unwrap()).starts_with("invalid project name"),
            "{bad}"
        );
    }
    let e = call_as(
        &vault,
        &root,
        Update,
        "lockana/projects/x",
        json!({"mount": "nope"}),
    );
    assert!(invalid(e.err().unwrap()).contains("not a KV version 2 mount"));
    // `lockana/` is reserved for this API.
    assert!(
        call_as(
            &vault,
            &root,
            Update,
            "sys/mounts/lockana",
            json!({"type": "kv-v2"})
        )
        .is_err()
    );
}

// ---- RSA projects (issue 12): values encrypted on the client ----------------

/// The server answers RSA projects with ciphertext only: a plain write is refused,
/// the client's envelopes are stored and handed back, the private key opens them,
/// another key gets one generic error, and rotate-key re-encrypts.
#[test]
fn rsa_project_values_are_opened_only_on_the_client() {
    use lockana::{ProjectEncryption, ProjectKey, ProjectKeyError};
    let (vault, clock, root) = clocked();
    aligned(&clock);
    let key = ProjectKey::generate(ProjectEncryption::Rsa3072).unwrap();
    let r = call_as(
        &vault,
        &root,
        Update,
        "lockana/projects/sealed",
        json!({"encryption": "rsa-3072", "public_key": key.public_key().to_pem()}),
    )
    .unwrap();
    let d = data(r);
    assert_eq!(d["encryption"], "rsa-3072");
    assert_eq!(d["key_id"], key.public_key().key_id());
    let t = totp_from_url(d["otpauth_url"].as_str().unwrap());

    // A plain write (vault kv put) is refused, so no plaintext lands.
    let err = call_as(
        &vault,
        &root,
        Update,
        "secret/data/projects/sealed",
        json!({"data": {"DB_PASSWORD": "hunter2"}}),
    )
    .unwrap_err();
    let msg = invalid(err);
    assert!(
        msg.contains("lockana project set") && !msg.contains("hunter2"),
        "{msg}"
    );

    // What `lockana project set` sends.
    let vars: std::collections::BTreeMap<String, String> =
        [("DB_PASSWORD", "hunter2"), ("API_KEY", "k-123 ✓")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    let sealed = key.public_key().seal_variables("sealed", &vars).unwrap();
    call_as(
        &vault,
        &root,
        Update,
        "secret/data/projects/sealed",
        json!({"data": sealed}),
    )
    .unwrap();
    // A patch adding plaintext is refused too.
    assert!(
        call_as(
            &vault,
            &root,
            Patch,
            "secret/data/projects/sealed",
            json!({"data": {"X": "plain"}}),
        )
        .is_err()
    );

    let now = unix(&clock);
    let env = vault
        .handle(env_req("sealed", &code(&t, now), ADDR_A))
        .unwrap();
    let env = env.data.unwrap();
    assert!(lockana::has_envelopes(&env));
    assert!(!serde_json::to_string(&env).unwrap().contains("hunter2"));
    assert_eq!(key.open_variables("sealed", &env).unwrap(), vars);
    let other = ProjectKey::generate(ProjectEncryption::Rsa3072).unwrap();
    assert_eq!(
        other.open_variables("sealed", &env).unwrap_err(),
        ProjectKeyError::WrongKey
    );
    // Dotenv would be ciphertext: refused with a pointer to the client.
    let mut dotenv = env_req("sealed", &code(&t, now + 30), ADDR_A);
    dotenv.data.insert("format".into(), json!("dotenv"));
    assert!(invalid(vault.handle(dotenv).unwrap_err()).contains("--key"));

    // Rotation: the client re-encrypts to a new key; one atomic write.
    let new = ProjectKey::generate(ProjectEncryption::Rsa3072).unwrap();
    let resealed = new.public_key().seal_variables("sealed", &vars).unwrap();
    let stale = call_as(
        &vault,
        &root,
        Update,
        "lockana/projects/sealed/rotate-key",
        json!({"public_key": new.public_key().to_pem(), "data": resealed, "cas": 0}),
    );
    assert!(matches!(stale, Err(Error::CasMismatch)), "{stale:?}");
    // Values for the old key are not accepted as the new key's.
    assert!(
        call_as(
            &vault,
            &root,
            Update,
            "lockana/projects/sealed/rotate-key",
            json!({"public_key": new.public_key().to_pem(), "data": sealed, "cas": 1}),
        )
        .is_err()
    );
    let r = call_as(
        &vault,
        &root,
        Update,
        "lockana/projects/sealed/rotate-key",
        json!({"public_key": new.public_key().to_pem(), "data": resealed, "cas": 1}),
    )
    .unwrap();
    assert_eq!(data(r)["key_id"], new.public_key().key_id());
    clock.advance(Duration::from_secs(60));
    let env = vault
        .handle(env_req("sealed", &code(&t, unix(&clock)), ADDR_A))
        .unwrap()
        .data
        .unwrap();
    assert_eq!(new.open_variables("sealed", &env).unwrap(), vars);
    assert_eq!(
        key.open_variables("sealed", &env).unwrap_err(),
        ProjectKeyError::WrongKey
    );
    // Writes for the old key are now refused.
    assert!(
        call_as(
            &vault,
            &root,
            Update,
            "secret/data/projects/sealed",
            json!({"data": sealed}),
        )
        .is_err()
    );
}

#[test]
fn rsa_project_cannot_take_over_an_existing_secret() {
    use lockana::{ProjectEncryption, ProjectKey};
    let (vault, _clock, root) = clocked();
    call_as(
        &vault,
        &root,
        Update,
        "secret/data/projects/old",
        json!({"data": {"A": "plain"}}),
    )
    .unwrap();
    let key = ProjectKey::generate(ProjectEncryption::Rsa3072).unwrap();
    let pem = key.public_key().to_pem();
    let err = call_as(
        &vault,
        &root,
        Update,
        "lockana/projects/old",
        json!({"encryption": "rsa-3072", "public_key": pem}),
    )
    .unwrap_err();
    assert!(invalid(err).contains("already exists"));
    // Size mismatch, missing key, key on a chacha20 project: clear refusals.
    for body in [
        json!({"encryption": "rsa-4096", "public_key": pem}),
        json!({"encryption": "rsa-3072"}),
        json!({"public_key": pem}),
        json!({"encryption": "rsa-1024", "public_key": pem}),
    ] {
        assert!(call_as(&vault, &root, Update, "lockana/projects/new", body).is_err());
    }
    // chacha20 stays the default, and a project's encryption cannot change.
    let d = data(call_as(&vault, &root, Update, "lockana/projects/plain", json!({})).unwrap());
    assert_eq!(d["encryption"], "chacha20");
    let err = call_as(
        &vault,
        &root,
        Update,
        "lockana/projects/plain",
        json!({"encryption": "rsa-3072", "public_key": pem}),
    )
    .unwrap_err();
    assert!(invalid(err).contains("cannot change"));
}
