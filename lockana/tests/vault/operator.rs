//! Operator endpoints (issue 10): rekey, root generation, keyring rotation config,
//! remount and host-info, through `Vault::handle` like every transport.

use std::time::Duration;

use base64::Engine as _;
use lockana::{Cipher, Error, Operation, Request, Response, StorageConfig, Vault};
use serde_json::{Value, json};

use super::{call_as, clocked, hex_encode, init_unsealed};
use Operation::*;

/// A request without a token (the share-gated paths take none).
fn anon(vault: &Vault, op: Operation, path: &str, body: Value) -> Result<Response, Error> {
    vault.handle(Request::new(op, path).with_data(body))
}

fn body(r: Response) -> Value {
    r.data.map(Value::Object).unwrap_or(Value::Null)
}

fn msg(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Inits with `n` shares / threshold `t`, unseals; returns (hex shares, root token).
fn init_shares(vault: &Vault, n: u8, t: u8) -> (Vec<String>, String) {
    let init = vault.init(n, t, Cipher::default()).unwrap();
    let keys: Vec<String> = init.keys.iter().map(|k| hex_encode(k)).collect();
    for k in &keys[..usize::from(t)] {
        vault.unseal(k).unwrap();
    }
    (keys, init.root_token.expose().to_owned())
}

fn rekey_to(vault: &Vault, old: &[String], n: u8, t: u8, verify: bool) -> Value {
    let init = body(
        anon(
            vault,
            Update,
            "sys/rekey/init",
            json!({"secret_shares": n, "secret_threshold": t, "require_verification": verify}),
        )
        .unwrap(),
    );
    assert_eq!(init["started"], true);
    let nonce = init["nonce"].as_str().unwrap().to_owned();
    let mut last = Value::Null;
    for k in old {
        last = body(
            anon(
                vault,
                Update,
                "sys/rekey/update",
                json!({"key": k, "nonce": nonce}),
            )
            .unwrap(),
        );
    }
    last
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn rekey_replaces_the_shares_durably_and_old_shares_stop_unsealing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.redb");
    let (old, new, root) = {
        let vault = Vault::open(StorageConfig::Redb(path.clone())).unwrap();
        let (old, root) = init_shares(&vault, 3, 2);
        call_as(
            &vault,
            &root,
            Update,
            "sys/mounts/kv",
            json!({"type": "kv"}),
        )
        .unwrap();
        call_as(
            &vault,
            &root,
            Update,
            "kv/app",
            json!({"pw": "survives rekey"}),
        )
        .unwrap();
        let status = body(anon(&vault, Read, "sys/rekey/init", json!({})).unwrap());
        assert_eq!(status["started"], false);
        assert_eq!(status["required"], 2);
        assert_eq!(status["nonce"], "");
        let done = rekey_to(&vault, &old[1..3], 5, 3, false);
        assert_eq!(done["complete"], true);
        assert_eq!(done["verification_required"], false);
        let new = strings(&done["keys"]);
        assert_eq!((new.len(), strings(&done["keys_base64"]).len()), (5, 5));
        assert_eq!(
            (vault.seal_status().shares, vault.seal_status().threshold),
            (5, 3)
        );
        // Nothing is left in progress.
        let status = body(anon(&vault, Read, "sys/rekey/init", json!({})).unwrap());
        assert_eq!(
            (status["started"].clone(), status["required"].clone()),
            (json!(false), json!(3))
        );
        vault.seal().unwrap();
        (old, new, root)
    };
    // A new process on the same file: the old shares are refused, three new ones open it.
    let vault = Vault::open(StorageConfig::Redb(path)).unwrap();
    assert_eq!(vault.seal_status().shares, 5);
    vault.unseal(&old[0]).unwrap();
    vault.unseal(&old[1]).unwrap();
    assert!(vault.unseal(&old[2]).is_err(), "old shares must not unseal");
    assert!(vault.seal_status().sealed);
    for k in &new[2..5] {
        vault.unseal(k).unwrap();
    }
    assert!(!vault.seal_status().sealed);
    let r = body(call_as(&vault, &root, Read, "kv/app", json!({})).unwrap());
    assert_eq!(r["pw"], "survives rekey");
}

#[test]
fn rekey_with_verification_keeps_old_shares_until_the_new_ones_are_entered() {
    let vault = Vault::open(StorageConfig::Memory).unwrap();
    let (old, _) = init_shares(&vault, 1, 1);
    let done = rekey_to(&vault, &old, 3, 2, true);
    assert_eq!(done["complete"], true);
    assert_eq!(done["verification_required"], true);
    let vnonce = done["verification_nonce"].as_str().unwrap().to_owned();
    let new = strings(&done["keys"]);
    // Still the old configuration and the old key.
    assert_eq!(vault.seal_status().shares, 1);
    let err = anon(
        &vault,
        Update,
        "sys/rekey/update",
        json!({"key": old[0], "nonce": "x"}),
    )
    .unwrap_err();
    assert!(
        msg(err).starts_with("rekey operation already finished; verification must be performed")
    );
    let st = body(anon(&vault, Read, "sys/rekey/verify", json!({})).unwrap());
    assert_eq!(st["started"], true);
    assert_eq!(st["nonce"], vnonce.as_str());
    assert_eq!(
        (st["t"].clone(), st["n"].clone(), st["progress"].clone()),
        (json!(2), json!(3), json!(0))
    );

    // Wrong nonce, then a wrong pair of shares: refused, and the nonce changes.
    let err = anon(
        &vault,
        Update,
        "sys/rekey/verify",
        json!({"key": new[0], "nonce": "nope"}),
    )
    .unwrap_err();
    assert!(msg(err).starts_with("incorrect nonce supplied; nonce for this verify operation is"));
    anon(
        &vault,
        Update,
        "sys/rekey/verify",
        json!({"key": new[0], "nonce": vnonce}),
    )
    .unwrap();
    let err = anon(
        &vault,
        Update,
        "sys/rekey/verify",
        json!({"key": new[0], "nonce": vnonce}),
    )
    .unwrap_err();
    assert_eq!(
        msg(err),
        "given key has already been provided during this verify operation"
    );
    let bogus = hex_encode(&[7u8; 33]);
    let err = anon(
        &vault,
        Update,
        "sys/rekey/verify",
        json!({"key": bogus, "nonce": vnonce}),
    )
    .unwrap_err();
    assert_eq!(
        msg(err),
        "rekey verification failed; incorrect key shares supplied"
    );
    let st = body(anon(&vault, Read, "sys/rekey/verify", json!({})).unwrap());
    assert_ne!(
        st["nonce"],
        vnonce.as_str(),
        "a failed verification rotates the nonce"
    );
    assert_eq!(vault.seal_status().shares, 1, "nothing switched yet");
    let vnonce = st["nonce"].as_str().unwrap().to_owned();

    // DELETE restarts the verification under a fresh nonce.
    let restarted = body(anon(&vault, Delete, "sys/rekey/verify", json!({})).unwrap());
    assert_ne!(restarted["nonce"], vnonce.as_str());
    let vnonce = restarted["nonce"].as_str().unwrap().to_owned();

    anon(
        &vault,
        Update,
        "sys/rekey/verify",
        json!({"key": new[2], "nonce": vnonce}),
    )
    .unwrap();
    let fin = body(
        anon(
            &vault,
            Update,
            "sys/rekey/verify",
            json!({"key": new[1], "nonce": vnonce}),
        )
        .unwrap(),
    );
    assert_eq!(fin["complete"], true);
    assert_eq!(fin["nonce"], vnonce.as_str());
    assert_eq!(
        (vault.seal_status().shares, vault.seal_status().threshold),
        (3, 2)
    );
    vault.seal().unwrap();
    // The old key is not a share of the new scheme (shares are 33 bytes): it is
    // refused and unseals nothing.
    assert!(matches!(
        vault.unseal(&old[0]),
        Err(lockana::Error::InvalidRequest(_))
    ));
    assert!(vault.seal_status().sealed);
    assert_eq!(vault.seal_status().progress, 0);
    anon(&vault, Update, "sys/unseal", json!({"reset": true})).unwrap();
    vault.unseal(&new[0]).unwrap();
    vault.unseal(&new[2]).unwrap();
    assert!(!vault.seal_status().sealed);
}

#[test]
fn rekey_refuses_bad_requests_with_vaults_messages() {
    let vault = Vault::open(StorageConfig::Memory).unwrap();
    let e = anon(&vault, Read, "sys/rekey/init", json!({})).unwrap_err();
    assert_eq!(msg(e), "server is not yet initialized");
    let (old, _) = init_shares(&vault, 3, 2);
    let init = |b: Value| anon(&vault, Update, "sys/rekey/init", b).map(body);
    let cases = [
        (
            json!({"secret_shares": 3, "secret_threshold": 4}),
            "invalid rekey seal configuration: threshold cannot be larger than shares",
        ),
        (
            json!({"secret_shares": 3, "secret_threshold": 1}),
            "invalid rekey seal configuration: threshold must be greater than one for multiple shares",
        ),
        (
            json!({"secret_shares": 0, "secret_threshold": 0}),
            "invalid rekey seal configuration: shares must be at least one",
        ),
        (
            json!({"secret_shares": 300, "secret_threshold": 2}),
            "invalid rekey seal configuration: shares must be less than 256",
        ),
        (
            json!({"secret_shares": 1, "secret_threshold": 1, "backup": true}),
            "cannot request a backup of the new keys without providing PGP keys for encryption",
        ),
        (
            json!({"secret_shares": 2, "secret_threshold": 2, "pgp_keys": ["a"]}),
            "incorrect number of PGP keys for rekey",
        ),
    ];
    for (b, want) in cases {
        assert_eq!(msg(init(b.clone()).unwrap_err()), want, "{b}");
    }
    let e =
        init(json!({"secret_shares": 1, "secret_threshold": 1, "pgp_keys": ["a"]})).unwrap_err();
    assert!(msg(e).contains("not supported"));
    let e = anon(
        &vault,
        Update,
        "sys/rekey/update",
        json!({"key": old[0], "nonce": "n"}),
    )
    .unwrap_err();
    assert_eq!(msg(e), "no barrier rekey in progress");

    let st = init(json!({"secret_shares": 1, "secret_threshold": 1})).unwrap();
    let nonce = st["nonce"].as_str().unwrap().to_owned();
    assert_eq!(
        msg(init(json!({"secret_shares": 1, "secret_threshold": 1})).unwrap_err()),
        "rekey already in progress"
    );
    let upd = |b: Value| anon(&vault, Update, "sys/rekey/update", b).map(body);
    assert_eq!(
        msg(upd(json!({"nonce": nonce})).unwrap_err()),
        "'key' must be specified in request body as JSON"
    );
    assert_eq!(
        msg(upd(json!({"key": "zz!!", "nonce": nonce})).unwrap_err()),
        "'key' must be a valid hex or base64 string"
    );
    assert_eq!(
        msg(upd(json!({"key": "abcd", "nonce": nonce})).unwrap_err()),
        "key is shorter than minimum 16 bytes"
    );
    let e = upd(json!({"key": old[0], "nonce": "wrong"})).unwrap_err();
    assert_eq!(
        msg(e),
        format!("incorrect nonce supplied; nonce for this rekey operation is \"{nonce}\"")
    );
    assert_eq!(
        upd(json!({"key": old[0], "nonce": nonce})).unwrap()["progress"],
        1
    );
    assert_eq!(
        msg(upd(json!({"key": old[0], "nonce": nonce})).unwrap_err()),
        "given key has already been provided during this generation operation"
    );
    // A share that is not part of the current key: the attempt aborts, nothing changes.
    let e = upd(json!({"key": hex_encode(&[9u8; 33]), "nonce": nonce})).unwrap_err();
    assert!(msg(&e).starts_with("rekey aborted"), "{e}");
    assert_eq!(vault.seal_status().shares, 3);
    let st = body(anon(&vault, Read, "sys/rekey/init", json!({})).unwrap());
    assert_eq!(
        (st["started"].clone(), st["progress"].clone()),
        (json!(true), json!(0))
    );
    // DELETE cancels.
    let r = anon(&vault, Delete, "sys/rekey/init", json!({})).unwrap();
    assert!(r.data.is_none());
    assert_eq!(
        body(anon(&vault, Read, "sys/rekey/init", json!({})).unwrap())["started"],
        false
    );
    // Sealed: 503, and a seal forgets progress.
    init(json!({"secret_shares": 1, "secret_threshold": 1})).unwrap();
    vault.seal().unwrap();
    assert!(matches!(
        anon(&vault, Read, "sys/rekey/init", json!({})),
        Err(Error::Sealed)
    ));
    vault.unseal(&old[0]).unwrap();
    vault.unseal(&old[1]).unwrap();
    assert_eq!(
        body(anon(&vault, Read, "sys/rekey/init", json!({})).unwrap())["started"],
        false
    );
}

#[test]
fn rotate_root_is_the_authenticated_rekey_bao_rotate_keys_calls() {
    let vault = Vault::open(StorageConfig::Memory).unwrap();
    let (old, root) = init_shares(&vault, 1, 1);
    assert!(matches!(
        anon(&vault, Read, "sys/rotate/root/init", json!({})),
        Err(Error::Unauthenticated)
    ));
    let st = body(call_as(&vault, &root, Read, "sys/rotate/root/init", json!({})).unwrap());
    assert_eq!(st, json!({"started": false, "t": 0, "n": 0, "required": 1}));
    let st = body(
        call_as(
            &vault,
            &root,
            Update,
            "sys/rotate/root/init",
            json!({"secret_shares": 2, "secret_threshold": 2}),
        )
        .unwrap(),
    );
    let nonce = st["nonce"].as_str().unwrap().to_owned();
    let e = call_as(
        &vault,
        &root,
        Update,
        "sys/rotate/root/update",
        json!({"nonce": nonce}),
    )
    .unwrap_err();
    assert_eq!(msg(e), "missing required field 'key'");
    let done = body(
        call_as(
            &vault,
            &root,
            Update,
            "sys/rotate/root/update",
            json!({"key": old[0], "nonce": nonce}),
        )
        .unwrap(),
    );
    assert_eq!(done["complete"], true);
    assert_eq!(strings(&done["keys"]).len(), 2);
    assert_eq!(vault.seal_status().threshold, 2);
    let e = call_as(&vault, &root, Read, "sys/rekey/backup", json!({})).unwrap_err();
    assert_eq!(msg(e), "no backed-up keys found");
}

fn decode(encoded: &str, otp: &str) -> String {
    let raw = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(encoded)
        .unwrap();
    assert_eq!(raw.len(), otp.len());
    String::from_utf8(raw.iter().zip(otp.bytes()).map(|(a, b)| a ^ b).collect()).unwrap()
}

#[test]
fn generate_root_with_shares_mints_a_working_root_token_without_any_token() {
    let vault = Vault::open(StorageConfig::Memory).unwrap();
    let (keys, _) = init_shares(&vault, 3, 2);
    let st = body(anon(&vault, Read, "sys/generate-root/attempt", json!({})).unwrap());
    assert_eq!(st["started"], false);
    assert_eq!(st["otp_length"], 28);
    assert_eq!(st["required"], 2);
    let e = anon(
        &vault,
        Update,
        "sys/generate-root/attempt",
        json!({"otp": "short"}),
    )
    .unwrap_err();
    assert_eq!(msg(e), "OTP string has incorrect length");
    let e = anon(
        &vault,
        Update,
        "sys/generate-root/attempt",
        json!({"pgp_key": "abc"}),
    )
    .unwrap_err();
    assert!(msg(e).contains("not supported"));
    let st = body(anon(&vault, Update, "sys/generate-root/attempt", json!({})).unwrap());
    let otp = st["otp"].as_str().unwrap().to_owned();
    assert_eq!(otp.len(), 28);
    let nonce = st["nonce"].as_str().unwrap().to_owned();
    let e = anon(&vault, Update, "sys/generate-root/attempt", json!({})).unwrap_err();
    assert_eq!(
        msg(e),
        "root generation already in progress for this namespace"
    );

    // A wrong share aborts the attempt's progress (and mints nothing).
    let upd = |k: &str, n: &str| {
        anon(
            &vault,
            Update,
            "sys/generate-root/update",
            json!({"key": k, "nonce": n}),
        )
        .map(body)
    };
    assert_eq!(upd(&keys[0], &nonce).unwrap()["progress"], 1);
    let e = upd(&hex_encode(&[3u8; 33]), &nonce).unwrap_err();
    assert!(msg(&e).starts_with("root generation aborted"), "{e}");
    let e = upd(&keys[0], "other").unwrap_err();
    assert!(
        msg(e).starts_with("incorrect nonce supplied; nonce for this root generation operation is")
    );

    assert_eq!(upd(&keys[2], &nonce).unwrap()["complete"], false);
    let done = upd(&keys[1], &nonce).unwrap();
    assert_eq!(done["complete"], true);
    let encoded = done["encoded_token"].as_str().unwrap();
    assert_eq!(done["encoded_root_token"], encoded);
    let token = decode(encoded, &otp);
    let via_api = body(
        anon(
            &vault,
            Update,
            "sys/decode-token",
            json!({"encoded_token": encoded, "otp": otp}),
        )
        .unwrap(),
    );
    assert_eq!(via_api["token"], token.as_str());
    let me = body(call_as(&vault, &token, Read, "auth/token/lookup-self", json!({})).unwrap());
    assert_eq!(me["policies"], json!(["root"]));
    call_as(
        &vault,
        &token,
        Update,
        "sys/mounts/x",
        json!({"type": "kv"}),
    )
    .unwrap();
    // The attempt is over.
    let st = body(anon(&vault, Read, "sys/generate-root/attempt", json!({})).unwrap());
    assert_eq!(
        (st["started"].clone(), st["nonce"].clone()),
        (json!(false), json!(""))
    );
}

#[test]
fn generate_root_token_path_answers_in_the_envelope_and_needs_a_token() {
    let vault = Vault::open(StorageConfig::Memory).unwrap();
    let (keys, root) = init_shares(&vault, 1, 1);
    assert!(matches!(
        anon(&vault, Read, "sys/generate-root-token/attempt", json!({})),
        Err(Error::Unauthenticated)
    ));
    let st = body(
        call_as(
            &vault,
            &root,
            Update,
            "sys/generate-root-token/attempt",
            json!({}),
        )
        .unwrap(),
    );
    let (otp, nonce) = (
        st["otp"].as_str().unwrap().to_owned(),
        st["nonce"].as_str().unwrap().to_owned(),
    );
    let e = call_as(
        &vault,
        &root,
        Update,
        "sys/generate-root-token/update",
        json!({"key": keys[0]}),
    )
    .unwrap_err();
    assert_eq!(msg(e), "nonce is required");
    let done = body(
        call_as(
            &vault,
            &root,
            Update,
            "sys/generate-root-token/update",
            json!({"key": keys[0], "nonce": nonce}),
        )
        .unwrap(),
    );
    let token = decode(done["encoded_token"].as_str().unwrap(), &otp);
    assert!(call_as(&vault, &token, Read, "sys/mounts", json!({})).is_ok());
    // Cancel answers 204 and leaves nothing started.
    call_as(
        &vault,
        &root,
        Update,
        "sys/generate-root-token/attempt",
        json!({}),
    )
    .unwrap();
    assert!(
        call_as(
            &vault,
            &root,
            Delete,
            "sys/generate-root-token/attempt",
            json!({})
        )
        .unwrap()
        .data
        .is_none()
    );
    let st = body(
        call_as(
            &vault,
            &root,
            Read,
            "sys/generate-root-token/attempt",
            json!({}),
        )
        .unwrap(),
    );
    assert_eq!(st["started"], false);
}

#[test]
fn remount_moves_secrets_and_auth_mounts_with_their_data() {
    let vault = Vault::open(StorageConfig::Memory).unwrap();
    let (keys, root) = init_unsealed(&vault);
    let call = |op, p: &str, b| call_as(&vault, &root, op, p, b);
    call(Update, "secret/data/app", json!({"data": {"k": "v"}})).unwrap();
    let r = body(
        call(
            Update,
            "sys/remount",
            json!({"from": "secret", "to": "moved"}),
        )
        .unwrap(),
    );
    let id = r["migration_id"].as_str().unwrap().to_owned();
    let st = body(call(Read, &format!("sys/remount/status/{id}"), json!({})).unwrap());
    assert_eq!(
        st,
        json!({"migration_id": id, "migration_info": {"source_mount": "secret/", "target_mount": "moved/", "status": "success"}})
    );
    assert!(matches!(
        call(Read, "sys/remount/status/nope", json!({})),
        Err(Error::NotFound)
    ));
    let v = body(call(Read, "moved/data/app", json!({})).unwrap());
    assert_eq!(v["data"]["k"], "v");
    assert!(call(Read, "secret/data/app", json!({})).is_err());

    call(Update, "sys/auth/userpass", json!({"type": "userpass"})).unwrap();
    call(
        Update,
        "auth/userpass/users/bob",
        json!({"password": "pw", "token_policies": "default"}),
    )
    .unwrap();
    let login = vault
        .handle(
            Request::new(Update, "auth/userpass/login/bob").with_data(json!({"password": "pw"})),
        )
        .unwrap();
    let bob = login
        .auth
        .unwrap()
        .client_token
        .unwrap()
        .expose()
        .to_owned();
    call(
        Update,
        "sys/remount",
        json!({"from": "auth/userpass", "to": "auth/people"}),
    )
    .unwrap();
    assert!(
        call_as(&vault, &bob, Read, "auth/token/lookup-self", json!({})).is_err(),
        "tokens of the moved method are revoked, as in Vault"
    );
    vault
        .handle(Request::new(Update, "auth/people/login/bob").with_data(json!({"password": "pw"})))
        .unwrap();

    // The move is stored: it survives seal and unseal.
    vault.seal().unwrap();
    vault.unseal(&keys).unwrap();
    assert_eq!(
        body(call(Read, "moved/data/app", json!({})).unwrap())["data"]["k"],
        "v"
    );
    assert!(call(Read, "sys/auth/people", json!({})).is_ok());

    let refused = [
        (
            json!({"from": "moved"}),
            "both 'from' and 'to' path must be specified as a string",
        ),
        (
            json!({"from": "nope", "to": "x"}),
            "no matching mount at \"nope/\"",
        ),
        (
            json!({"from": "moved", "to": "sys/x"}),
            "cannot remount to destination sys/x/",
        ),
        (
            json!({"from": "moved", "to": "cubbyhole"}),
            "cannot remount to destination cubbyhole/",
        ),
        (
            json!({"from": "cubbyhole", "to": "c2"}),
            "cannot remount \"cubbyhole/\"",
        ),
        (
            json!({"from": "auth/people", "to": "x"}),
            "cannot remount auth mount to non-auth mount \"x/\"",
        ),
        (
            json!({"from": "auth/token", "to": "auth/t2"}),
            "cannot remount \"auth/token/\"",
        ),
        (
            json!({"from": "moved", "to": "moved/sub"}),
            "path already in use at \"moved/\"",
        ),
    ];
    call(Update, "sys/mounts/other", json!({"type": "kv"})).unwrap();
    for (b, want) in refused {
        assert_eq!(
            msg(call(Update, "sys/remount", b.clone()).unwrap_err()),
            want,
            "{b}"
        );
    }
    let e = call(
        Update,
        "sys/remount",
        json!({"from": "moved", "to": "other"}),
    )
    .unwrap_err();
    assert_eq!(msg(e), "path already in use at \"other/\"");

    // A mount holding a Lockana project's variables stays put while the project uses it.
    call(Update, "sys/mounts/projkv", json!({"type": "kv-v2"})).unwrap();
    call(
        Update,
        "lockana/projects/billing",
        json!({"mount": "projkv"}),
    )
    .unwrap();
    let e = call(
        Update,
        "sys/remount",
        json!({"from": "projkv", "to": "projkv2"}),
    )
    .unwrap_err();
    assert!(
        msg(&e).starts_with(
            "cannot remount \"projkv/\": Lockana projects keep their variables there (billing)"
        ),
        "{e}"
    );
    assert!(call(Read, "sys/mounts/projkv", json!({})).is_ok());
}

#[test]
fn operator_paths_need_sudo() {
    let (vault, _, root) = clocked();
    call_as(
        &vault,
        &root,
        Update,
        "sys/policies/acl/ops",
        json!({"policy": r#"
        path "sys/*" { capabilities = ["create", "read", "update", "delete", "list"] }
    "#}),
    )
    .unwrap();
    let r = call_as(
        &vault,
        &root,
        Update,
        "auth/token/create",
        json!({"policies": ["ops"]}),
    )
    .unwrap();
    let ops = r.auth.unwrap().client_token.unwrap().expose().to_owned();
    for (op, path, b) in [
        (Update, "sys/remount", json!({"from": "secret", "to": "s2"})),
        (Update, "sys/rotate/keyring", json!({})),
        (Read, "sys/host-info", json!({})),
    ] {
        assert!(
            matches!(
                call_as(&vault, &ops, op, path, b),
                Err(Error::PermissionDenied)
            ),
            "{path}"
        );
    }
    // Config needs no sudo (as in OpenBao).
    call_as(&vault, &ops, Read, "sys/rotate/keyring/config", json!({})).unwrap();
}

#[test]
fn keyring_rotates_on_demand_and_by_interval() {
    let (vault, clock, root) = clocked();
    let call = |op, p: &str, b| call_as(&vault, &root, op, p, b);
    call(Update, "sys/rotate/keyring", json!({})).unwrap();
    assert_eq!(
        body(call(Read, "sys/key-status", json!({})).unwrap())["term"],
        2
    );
    let c = body(call(Read, "sys/rotate/keyring/config", json!({})).unwrap());
    assert_eq!(
        c,
        json!({"enabled": true, "interval": 0, "max_operations": 3_865_470_566u64})
    );
    let e = call(
        Update,
        "sys/rotate/keyring/config",
        json!({"interval": "1h"}),
    )
    .unwrap_err();
    assert_eq!(msg(e), "interval must be greater or equal to 24h0m0s");
    let e = call(Update, "sys/rotate/config", json!({"max_operations": 5})).unwrap_err();
    assert_eq!(
        msg(e),
        "max_operations must be in the range [1000000,3865470566]"
    );
    call(
        Update,
        "sys/rotate/keyring/config",
        json!({"interval": "48h"}),
    )
    .unwrap();
    let c = body(call(Read, "sys/rotate/config", json!({})).unwrap());
    assert_eq!(c["interval"], "48h0m0s");

    clock.advance(Duration::from_secs(47 * 3600));
    assert_eq!(
        body(call(Read, "sys/key-status", json!({})).unwrap())["term"],
        2
    );
    clock.advance(Duration::from_secs(2 * 3600));
    assert_eq!(
        body(call(Read, "sys/key-status", json!({})).unwrap())["term"],
        3,
        "due: rotated on the next request"
    );
    call(
        Update,
        "sys/rotate/keyring/config",
        json!({"enabled": false}),
    )
    .unwrap();
    clock.advance(Duration::from_secs(100 * 3600));
    assert_eq!(
        body(call(Read, "sys/key-status", json!({})).unwrap())["term"],
        3
    );
}

#[test]
fn host_info_reports_cpu_disk_host_and_memory() {
    let (vault, _, root) = clocked();
    let r = call_as(&vault, &root, Read, "sys/host-info", json!({})).unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let d = body(r);
    assert!(d["cpu"].as_array().is_some_and(|a| !a.is_empty()));
    assert!(d["cpu"][0]["modelName"].is_string());
    assert!(
        d["cpu_times"][0]["cpu"]
            .as_str()
            .unwrap()
            .starts_with("cpu")
    );
    assert_eq!(d["disk"][0]["path"], "/");
    assert!(d["disk"][0]["total"].as_u64().unwrap() > 0);
    assert!(d["host"]["hostname"].is_string());
    assert!(d["host"]["uptime"].as_u64().unwrap() > 0);
    assert!(d["memory"]["total"].as_u64().unwrap() > d["memory"]["free"].as_u64().unwrap());
    assert!(d["timestamp"].is_string());
}
