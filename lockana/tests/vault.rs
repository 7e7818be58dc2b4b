//! The vault through its one entry point, as every transport sees it.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lockana::{Cipher, Error, FakeClock, Operation, Request, Response, StorageConfig, Vault};
use serde_json::{Value, json};

struct Dev {
    vault: Vault,
    token: String,
}

impl Dev {
    fn new() -> Self {
        let (vault, creds) = Vault::dev(Some("root".into())).unwrap();
        assert_eq!(creds.root_token.expose(), "root");
        Dev {
            vault,
            token: "root".into(),
        }
    }

    fn call(&self, op: Operation, path: &str, data: Value) -> Result<Response, Error> {
        self.vault.handle(
            Request::new(op, path)
                .with_data(data)
                .with_token(&self.token),
        )
    }

    fn ok(&self, op: Operation, path: &str, data: Value) -> Response {
        match self.call(op, path, data) {
            Ok(r) => r,
            Err(e) => panic!("{op:?} {path}: {e}"),
        }
    }

    fn data(&self, op: Operation, path: &str, data: Value) -> Value {
        Value::Object(self.ok(op, path, data).data.expect("response data"))
    }
}

use Operation::*;

// Audit devices and notifications (issue 5): a module of this one test binary.
#[path = "audit_notify/mod.rs"]
mod audit_notify;

// TOTP engine and projects (issue 4).
#[path = "projects/mod.rs"]
mod projects;

// approle, jwt and user lockout (issue 3): a module of this one test binary.
#[path = "vault/auth_methods.rs"]
mod auth_methods;

// Identity entities and login MFA (issue 3).
#[path = "vault/mfa.rs"]
mod mfa;

// Operator endpoints: rekey, generate-root, rotation config, remount, host-info (issue 10).
#[path = "vault/operator.rs"]
mod operator;

#[test]
fn kv2_write_read_versions_and_cas() {
    let d = Dev::new();
    let w = d.data(Update, "secret/data/app", json!({"data": {"user": "a"}}));
    assert_eq!(w["version"], 1);
    assert_eq!(w["destroyed"], false);
    assert_eq!(w["deletion_time"], "");
    d.ok(
        Update,
        "secret/data/app",
        json!({"data": {"user": "b"}, "options": {"cas": 1}}),
    );
    let err = d
        .call(
            Update,
            "secret/data/app",
            json!({"data": {"user": "c"}, "options": {"cas": 1}}),
        )
        .err()
        .unwrap();
    assert!(matches!(err, Error::CasMismatch), "{err}");
    assert_eq!(
        err.to_string(),
        "check-and-set parameter did not match the current version"
    );
    let r = d.data(Read, "secret/data/app", json!({}));
    assert_eq!(r["data"], json!({"user": "b"}));
    assert_eq!(r["metadata"]["version"], 2);
    let r = d.data(Read, "secret/data/app", json!({"version": "1"}));
    assert_eq!(r["data"], json!({"user": "a"}));
    assert!(matches!(
        d.call(Read, "secret/data/app", json!({"version": "9"})),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        d.call(Read, "secret/data/missing", json!({})),
        Err(Error::NotFound)
    ));
}

#[test]
fn kv2_lowering_max_versions_prunes_at_the_next_write_not_at_once() {
    let d = Dev::new();
    for i in 1..=3 {
        d.ok(Update, "secret/data/p", json!({"data": {"i": i}}));
    }
    d.ok(Update, "secret/metadata/p", json!({"max_versions": 1}));
    let m = d.data(Read, "secret/metadata/p", json!({}));
    assert_eq!(m["oldest_version"], 0);
    assert_eq!(m["versions"].as_object().unwrap().len(), 3);
    assert_eq!(
        d.data(Read, "secret/data/p", json!({"version": 1}))["data"]["i"],
        1
    );
    d.ok(Update, "secret/data/p", json!({"data": {"i": 4}}));
    let m = d.data(Read, "secret/metadata/p", json!({}));
    assert_eq!(m["oldest_version"], 4);
    let versions = m["versions"].as_object().unwrap();
    assert_eq!(versions.keys().collect::<Vec<_>>(), vec!["4"]);
}

#[test]
fn kv2_soft_delete_answers_404_with_metadata_then_undelete_and_destroy() {
    let d = Dev::new();
    d.ok(Update, "secret/data/x", json!({"data": {"k": "v1"}}));
    d.ok(Update, "secret/data/x", json!({"data": {"k": "v2"}}));
    let r = d.ok(Delete, "secret/data/x", json!({}));
    assert!(r.data.is_none(), "soft delete answers 204");
    let r = d.ok(Read, "secret/data/x", json!({}));
    assert_eq!(r.status, Some(404));
    let body = Value::Object(r.data.unwrap());
    assert_eq!(body["data"], Value::Null);
    assert_ne!(body["metadata"]["deletion_time"], "");
    d.ok(Update, "secret/undelete/x", json!({"versions": [2]}));
    assert_eq!(d.data(Read, "secret/data/x", json!({}))["data"]["k"], "v2");
    d.ok(Update, "secret/destroy/x", json!({"versions": [1]}));
    let r = d.ok(Read, "secret/data/x", json!({"version": 1}));
    assert_eq!(r.status, Some(404));
    assert_eq!(
        Value::Object(r.data.unwrap())["metadata"]["destroyed"],
        true
    );
    d.ok(Update, "secret/delete/x", json!({"versions": [2]}));
    assert_eq!(d.ok(Read, "secret/data/x", json!({})).status, Some(404));
    let err = d.call(Update, "secret/delete/x", json!({})).err().unwrap();
    assert_eq!(err.to_string(), "No version number provided");
}

#[test]
fn kv2_patch_merges_and_needs_a_live_version() {
    let d = Dev::new();
    let r = d.ok(Patch, "secret/data/p", json!({"data": {"a": "1"}}));
    assert!(
        r.status == Some(404) && r.data.is_none(),
        "bare 404 for a missing secret"
    );
    d.ok(
        Update,
        "secret/data/p",
        json!({"data": {"a": "1", "b": {"c": "2", "d": "3"}}}),
    );
    let w = d.data(
        Patch,
        "secret/data/p",
        json!({"data": {"a": null, "b": {"d": "4"}, "e": "5"}}),
    );
    assert_eq!(w["version"], 2);
    assert_eq!(
        d.data(Read, "secret/data/p", json!({}))["data"],
        json!({"b": {"c": "2", "d": "4"}, "e": "5"})
    );
}

#[test]
fn kv2_metadata_write_without_fields_creates_nothing() {
    let d = Dev::new();
    let r = d.ok(Update, "secret/metadata/none", json!({}));
    assert!(r.data.is_none() && r.warnings.is_empty());
    assert!(matches!(
        d.call(Read, "secret/metadata/none", json!({})),
        Err(Error::NotFound)
    ));
}

#[test]
fn kv2_metadata_cas_required_false_under_a_mount_that_requires_it_warns() {
    let d = Dev::new();
    d.ok(Update, "secret/config", json!({"cas_required": true}));
    let r = d.ok(Update, "secret/metadata/w", json!({"cas_required": false}));
    assert_eq!(
        r.warnings,
        vec![
            "\"cas_required\" set to false, but is mandated by backend config. This value will be ignored."
        ]
    );
    let r = d.ok(Update, "secret/metadata/w", json!({"cas_required": true}));
    assert!(r.warnings.is_empty());
}

#[test]
fn kv2_oldest_version_and_max_versions_follow_vaults_arithmetic() {
    let d = Dev::new();
    // The larger of the mount's and the key's max_versions wins.
    d.ok(Update, "secret/config", json!({"max_versions": 3}));
    d.ok(Update, "secret/metadata/o", json!({"max_versions": 2}));
    for i in 1..=3 {
        d.ok(Update, "secret/data/o", json!({"data": {"i": i}}));
    }
    let m = d.data(Read, "secret/metadata/o", json!({}));
    // Exactly max versions: nothing removed yet, but oldest_version moves to 1.
    assert_eq!(m["oldest_version"], 1);
    assert_eq!(m["versions"].as_object().unwrap().len(), 3);
    d.ok(Update, "secret/data/o", json!({"data": {"i": 4}}));
    let m = d.data(Read, "secret/metadata/o", json!({}));
    assert_eq!(m["oldest_version"], 2);
    let versions = m["versions"].as_object().unwrap();
    assert_eq!(versions.keys().collect::<Vec<_>>(), vec!["2", "3", "4"]);
}

#[test]
fn kv2_patch_of_a_deleted_version_checks_cas_first_then_404s_with_its_metadata() {
    let d = Dev::new();
    d.ok(Update, "secret/data/q", json!({"data": {"a": "1"}}));
    d.ok(Delete, "secret/data/q", json!({}));
    assert!(matches!(
        d.call(
            Patch,
            "secret/data/q",
            json!({"data": {"a": "2"}, "options": {"cas": 5}})
        ),
        Err(Error::CasMismatch)
    ));
    let r = d.ok(Patch, "secret/data/q", json!({"data": {"a": "2"}}));
    assert_eq!(r.status, Some(404));
    let body = Value::Object(r.data.expect("metadata in the 404"));
    assert_eq!(body["version"], 1);
    assert_ne!(body["deletion_time"], "");
    assert_eq!(body["destroyed"], false);
}

#[test]
fn kv2_metadata_pruning_list_and_delete_all() {
    let d = Dev::new();
    d.ok(
        Update,
        "secret/metadata/m",
        json!({"max_versions": 2, "custom_metadata": {"owner": "ops"}}),
    );
    for i in 1..=4 {
        d.ok(Update, "secret/data/m", json!({"data": {"i": i}}));
    }
    let m = d.data(Read, "secret/metadata/m", json!({}));
    assert_eq!(m["current_version"], 4);
    assert_eq!(m["oldest_version"], 3);
    assert_eq!(m["max_versions"], 2);
    assert_eq!(m["custom_metadata"], json!({"owner": "ops"}));
    let versions = m["versions"].as_object().unwrap();
    assert_eq!(versions.keys().collect::<Vec<_>>(), vec!["3", "4"]);
    assert!(matches!(
        d.call(Read, "secret/data/m", json!({"version": 1})),
        Err(Error::NotFound)
    ));
    d.ok(
        Patch,
        "secret/metadata/m",
        json!({"custom_metadata": {"owner": null, "team": "x"}}),
    );
    assert_eq!(
        d.data(Read, "secret/metadata/m", json!({}))["custom_metadata"],
        json!({"team": "x"})
    );
    d.ok(Update, "secret/data/dir/a", json!({"data": {"x": 1}}));
    let l = d.data(List, "secret/metadata/", json!({}));
    assert_eq!(l["keys"], json!(["dir/", "m"]));
    d.ok(Delete, "secret/metadata/m", json!({}));
    assert!(matches!(
        d.call(Read, "secret/metadata/m", json!({})),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        d.call(List, "secret/metadata/nothing/", json!({})),
        Err(Error::NotFound)
    ));
    let err = d
        .call(Update, "secret/metadata/m", json!({"max_versions": "abc"}))
        .err()
        .unwrap();
    assert!(matches!(err, Error::InvalidRequest(_)));
}

#[test]
fn kv2_cas_required_from_mount_config() {
    let d = Dev::new();
    d.ok(
        Update,
        "secret/config",
        json!({"cas_required": true, "max_versions": 5}),
    );
    let c = d.data(Read, "secret/config", json!({}));
    assert_eq!(
        c,
        json!({"cas_required": true, "delete_version_after": "0s", "max_versions": 5})
    );
    let err = d
        .call(Update, "secret/data/c", json!({"data": {"a": 1}}))
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "check-and-set parameter required for this call"
    );
    d.ok(
        Update,
        "secret/data/c",
        json!({"data": {"a": 1}, "options": {"cas": 0}}),
    );
}

#[test]
fn kv2_subkeys() {
    let d = Dev::new();
    d.ok(
        Update,
        "secret/data/s",
        json!({"data": {"a": {"b": {"c": "x"}}, "z": "y"}}),
    );
    let r = d.data(Read, "secret/subkeys/s", json!({"depth": "1"}));
    assert_eq!(r["subkeys"], json!({"a": null, "z": null}));
    let r = d.data(Read, "secret/subkeys/s", json!({}));
    assert_eq!(r["subkeys"], json!({"a": {"b": {"c": null}}, "z": null}));
}

#[test]
fn kv2_delete_version_after_hides_versions_on_the_clock() {
    let clock = Arc::new(FakeClock::new(SystemTime::now()));
    let vault = Vault::open_with_clock(StorageConfig::Memory, clock.clone()).unwrap();
    let init = vault.init(1, 1, Cipher::XChaCha20Poly1305).unwrap();
    vault.unseal(&hex_encode(&init.keys[0])).unwrap();
    let token = init.root_token.expose().to_owned();
    let call = |op, path: &str, data: Value| {
        vault.handle(Request::new(op, path).with_data(data).with_token(&token))
    };
    call(Update, "sys/mounts/kv", json!({"type": "kv-v2"})).unwrap();
    call(
        Update,
        "kv/metadata/t",
        json!({"delete_version_after": "1h"}),
    )
    .unwrap();
    call(Update, "kv/data/t", json!({"data": {"a": 1}})).unwrap();
    assert_eq!(call(Read, "kv/data/t", json!({})).unwrap().status, None);
    clock.advance(Duration::from_secs(3601));
    assert_eq!(
        call(Read, "kv/data/t", json!({})).unwrap().status,
        Some(404)
    );
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn kv1_read_write_list_delete() {
    let d = Dev::new();
    d.ok(
        Update,
        "sys/mounts/old",
        json!({"type": "kv", "options": {"version": "1"}}),
    );
    assert!(d.ok(Update, "old/a/b", json!({"x": "1"})).data.is_none());
    let r = d.ok(Read, "old/a/b", json!({}));
    assert_eq!(r.lease_duration, 768 * 3600);
    assert_eq!(Value::Object(r.data.unwrap()), json!({"x": "1"}));
    assert_eq!(d.data(List, "old/", json!({}))["keys"], json!(["a/"]));
    d.ok(Delete, "old/a/b", json!({}));
    assert!(matches!(
        d.call(Read, "old/a/b", json!({})),
        Err(Error::NotFound)
    ));
    d.ok(Delete, "sys/mounts/old", json!({}));
    assert!(matches!(
        d.call(Read, "old/a/b", json!({})),
        Err(Error::NoRoute(_))
    ));
}

#[test]
fn tokens_are_checked_and_sealed_vault_answers_sealed() {
    let d = Dev::new();
    let r = d.vault.handle(Request::new(Read, "secret/data/x"));
    assert!(matches!(r, Err(Error::Unauthenticated)));
    let r = d
        .vault
        .handle(Request::new(Read, "secret/data/x").with_token("not-root"));
    assert!(matches!(r, Err(Error::Unauthenticated)));
    let h = d.vault.handle(Request::new(Read, "sys/health")).unwrap();
    assert_eq!(h.status, Some(200));
    d.ok(Update, "sys/seal", json!({}));
    assert!(matches!(
        d.call(Read, "secret/data/x", json!({})),
        Err(Error::Sealed)
    ));
    let h = d
        .vault
        .handle(Request::new(Read, "sys/health").with_data(json!({"sealedcode": "299"})))
        .unwrap();
    assert_eq!(h.status, Some(299));
}

#[test]
fn mounts_enable_tune_disable_and_conflicts() {
    let d = Dev::new();
    d.ok(
        Update,
        "sys/mounts/team/kv",
        json!({"type": "kv", "options": {"version": "2"}}),
    );
    let err = d
        .call(Update, "sys/mounts/team/kv/sub", json!({"type": "kv"}))
        .err()
        .unwrap();
    assert_eq!(err.to_string(), "path is already in use at team/kv/");
    let m = d.data(Read, "sys/mounts", json!({}));
    assert_eq!(m["team/kv/"]["options"]["version"], "2");
    d.ok(
        Update,
        "sys/mounts/team/kv/tune",
        json!({"default_lease_ttl": "1h", "description": "d"}),
    );
    let t = d.data(Read, "sys/mounts/team/kv/tune", json!({}));
    assert_eq!(t["default_lease_ttl"], 3600);
    let ui = d.data(Read, "sys/internal/ui/mounts/team/kv/foo", json!({}));
    assert_eq!(ui["path"], "team/kv/");
    assert_eq!(ui["options"]["version"], "2");
    d.ok(Update, "team/kv/data/a", json!({"data": {"x": 1}}));
    d.ok(Delete, "sys/mounts/team/kv", json!({}));
    d.ok(Update, "sys/mounts/team/kv", json!({"type": "kv-v2"}));
    assert!(
        matches!(
            d.call(Read, "team/kv/data/a", json!({})),
            Err(Error::NotFound)
        ),
        "remount must not see old data"
    );
}

#[test]
fn redb_vault_survives_restart_and_needs_unseal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lockana.redb");
    let (keys, token) = {
        let vault = Vault::open(StorageConfig::Redb(path.clone())).unwrap();
        assert!(!vault.seal_status().initialized);
        let init = vault.init(3, 2, Cipher::Aes256Gcm).unwrap();
        let keys: Vec<String> = init.keys.iter().map(|k| hex_encode(k)).collect();
        assert_eq!(vault.unseal(&keys[0]).unwrap().progress, 1);
        assert!(!vault.unseal(&keys[2]).unwrap().sealed);
        let token = init.root_token.expose().to_owned();
        vault
            .handle(
                Request::new(Update, "sys/mounts/secret")
                    .with_data(json!({"type": "kv-v2"}))
                    .with_token(&token),
            )
            .unwrap();
        vault
            .handle(
                Request::new(Update, "secret/data/db")
                    .with_data(json!({"data": {"pw": "s3cret"}}))
                    .with_token(&token),
            )
            .unwrap();
        vault.close().unwrap();
        (keys, token)
    };
    let vault = Vault::open(StorageConfig::Redb(path.clone())).unwrap();
    let s = vault.seal_status();
    assert!(s.initialized && s.sealed && s.threshold == 2 && s.shares == 3);
    assert!(matches!(
        vault.handle(Request::new(Read, "secret/data/db").with_token(&token)),
        Err(Error::Sealed)
    ));
    vault.unseal(&keys[1]).unwrap();
    vault.unseal(&keys[2]).unwrap();
    let r = vault
        .handle(Request::new(Read, "secret/data/db").with_token(&token))
        .unwrap();
    assert_eq!(Value::Object(r.data.unwrap())["data"]["pw"], "s3cret");
    let raw = std::fs::read(&path).unwrap();
    assert!(
        !raw.windows(6).any(|w| w == b"s3cret"),
        "plaintext found in the redb file"
    );
}

#[test]
fn wrong_share_combination_resets_progress() {
    let vault = Vault::open(StorageConfig::Memory).unwrap();
    let init = vault.init(3, 2, Cipher::default()).unwrap();
    let other = Vault::open(StorageConfig::Memory)
        .unwrap()
        .init(3, 2, Cipher::default())
        .unwrap();
    vault.unseal(&hex_encode(&init.keys[0])).unwrap();
    let err = vault.unseal(&hex_encode(&other.keys[1])).err().unwrap();
    assert!(matches!(err, Error::InvalidRequest(_)));
    let s = vault.seal_status();
    assert!(s.sealed && s.progress == 0);
    assert!(vault.unseal("not hex or base64!").is_err());
}

#[test]
fn cubbyhole_is_mounted_and_private_to_the_token() {
    let d = Dev::new();
    let mounts = d.data(Read, "sys/mounts", json!({}));
    assert_eq!(mounts["cubbyhole/"]["type"], "cubbyhole");
    d.ok(Update, "cubbyhole/note", json!({"k": "v"}));
    let r = d.ok(Read, "cubbyhole/note", json!({}));
    assert_eq!(r.lease_duration, 0);
    assert_eq!(Value::Object(r.data.unwrap()), json!({"k": "v"}));
    assert!(d.call(Delete, "sys/mounts/cubbyhole", json!({})).is_err());
}

#[test]
fn kv2_paths_outside_its_api_answer_404_with_a_hint() {
    let d = Dev::new();
    let r = d.ok(Read, "secret/foo", json!({}));
    assert_eq!(r.status, Some(404));
    assert!(r.warnings[0].contains("versioned K/V"));
    assert_eq!(
        d.ok(Update, "secret/config/x", json!({"a": 1})).status,
        Some(404)
    );
}

/// Initializes a new vault with one key share, unseals it and mounts KV v2 at
/// `secret/`; returns the unseal key (hex) and the root token.
fn init_unsealed(vault: &Vault) -> (String, String) {
    let init = vault.init(1, 1, Cipher::default()).unwrap();
    let key = hex_encode(&init.keys[0]);
    vault.unseal(&key).unwrap();
    let root = init.root_token.expose().to_owned();
    vault
        .handle(
            Request::new(Update, "sys/mounts/secret")
                .with_data(json!({"type": "kv-v2"}))
                .with_token(&root),
        )
        .unwrap();
    (key, root)
}

/// A vault on a fake clock, unsealed, with KV v2 at `secret/`; returns the root token.
fn clocked() -> (Vault, Arc<FakeClock>, String) {
    let clock = Arc::new(FakeClock::new(SystemTime::now()));
    let vault = Vault::open_with_clock(StorageConfig::Memory, clock.clone()).unwrap();
    let (_, root) = init_unsealed(&vault);
    (vault, clock, root)
}

fn call_as(
    vault: &Vault,
    token: &str,
    op: Operation,
    path: &str,
    data: Value,
) -> Result<Response, Error> {
    vault.handle(Request::new(op, path).with_data(data).with_token(token))
}

fn new_token(vault: &Vault, parent: &str, body: Value) -> (String, String) {
    let r = call_as(vault, parent, Update, "auth/token/create", body).unwrap();
    let auth = r.auth.unwrap();
    (
        auth.client_token.unwrap().expose().to_owned(),
        auth.accessor,
    )
}

#[test]
fn token_ttl_expires_on_the_clock_and_renewal_is_capped_by_explicit_max() {
    let (vault, clock, root) = clocked();
    let (t, _) = new_token(
        &vault,
        &root,
        json!({"policies": ["default"], "ttl": "1h", "explicit_max_ttl": "90m"}),
    );
    let me = call_as(&vault, &t, Read, "auth/token/lookup-self", json!({}))
        .unwrap()
        .data
        .unwrap();
    assert_eq!(me["ttl"], 3600);
    assert_eq!(me["type"], "service");
    assert_eq!(me["policies"], json!(["default"]));
    clock.advance(Duration::from_secs(3000));
    let r = call_as(
        &vault,
        &t,
        Update,
        "auth/token/renew-self",
        json!({"increment": "1h"}),
    )
    .unwrap();
    // 90m max from creation, 50m gone: only 40m left to give.
    assert_eq!(r.auth.unwrap().lease_duration, 2400);
    clock.advance(Duration::from_secs(2401));
    assert!(matches!(
        call_as(&vault, &t, Read, "auth/token/lookup-self", json!({})),
        Err(Error::Unauthenticated)
    ));
}

#[test]
fn revoking_a_parent_revokes_children_but_revoke_orphan_keeps_them() {
    let (vault, _, root) = clocked();
    let maker = r#"path "auth/token/create" { capabilities = ["update"] }"#;
    call_as(
        &vault,
        &root,
        Update,
        "sys/policies/acl/maker",
        json!({"policy": maker}),
    )
    .unwrap();
    let (parent, _) = new_token(&vault, &root, json!({"policies": ["maker"]}));
    let (child, _) = new_token(&vault, &parent, json!({}));
    let (grandchild, _) = new_token(&vault, &child, json!({}));
    call_as(
        &vault,
        &root,
        Update,
        "auth/token/revoke",
        json!({"token": parent}),
    )
    .unwrap();
    for t in [&parent, &child, &grandchild] {
        assert!(matches!(
            call_as(&vault, t, Read, "auth/token/lookup-self", json!({})),
            Err(Error::Unauthenticated)
        ));
    }
    let (p2, _) = new_token(&vault, &root, json!({"policies": ["maker"]}));
    let (c2, _) = new_token(&vault, &p2, json!({}));
    call_as(
        &vault,
        &root,
        Update,
        "auth/token/revoke-orphan",
        json!({"token": p2}),
    )
    .unwrap();
    let me = call_as(&vault, &c2, Read, "auth/token/lookup-self", json!({}))
        .unwrap()
        .data
        .unwrap();
    assert_eq!(me["orphan"], true);
}

#[test]
fn accessor_lookup_and_revoke_and_num_uses() {
    let (vault, _, root) = clocked();
    let (t, acc) = new_token(
        &vault,
        &root,
        json!({"policies": ["default"], "num_uses": 2}),
    );
    let info = call_as(
        &vault,
        &root,
        Update,
        "auth/token/lookup-accessor",
        json!({"accessor": acc}),
    )
    .unwrap()
    .data
    .unwrap();
    assert_eq!(info["id"], "", "accessor lookups never reveal the token");
    assert_eq!(info["num_uses"], 2);
    call_as(&vault, &t, Read, "auth/token/lookup-self", json!({})).unwrap();
    call_as(&vault, &t, Read, "auth/token/lookup-self", json!({})).unwrap();
    assert!(
        call_as(&vault, &t, Read, "auth/token/lookup-self", json!({})).is_err(),
        "third use must fail"
    );
    let (t2, acc2) = new_token(&vault, &root, json!({"policies": ["default"]}));
    call_as(
        &vault,
        &root,
        Update,
        "auth/token/revoke-accessor",
        json!({"accessor": acc2}),
    )
    .unwrap();
    assert!(call_as(&vault, &t2, Read, "auth/token/lookup-self", json!({})).is_err());
    let err = call_as(
        &vault,
        &root,
        Update,
        "auth/token/lookup",
        json!({"token": "lvs.nope"}),
    )
    .err()
    .unwrap();
    assert!(matches!(err, Error::BadToken));
}

#[test]
fn policy_grant_on_team_a_never_reads_team_b() {
    let (vault, _, root) = clocked();
    for team in ["team-a", "team-b"] {
        call_as(
            &vault,
            &root,
            Update,
            &format!("secret/data/{team}/db"),
            json!({"data": {"pw": team}}),
        )
        .unwrap();
    }
    let policy = r#"path "secret/data/team-a/*" { capabilities = ["read", "create"] }"#;
    call_as(
        &vault,
        &root,
        Update,
        "sys/policies/acl/team-a",
        json!({"policy": policy}),
    )
    .unwrap();
    let (t, _) = new_token(&vault, &root, json!({"policies": ["team-a"]}));
    let r = call_as(&vault, &t, Read, "secret/data/team-a/db", json!({})).unwrap();
    assert_eq!(Value::Object(r.data.unwrap())["data"]["pw"], "team-a");
    for path in [
        "secret/data/team-b/db",
        "secret/data/team-a/../team-b/db",
        "secret/data/team-a//../team-b/db",
        "secret/data/team-a",
        "secret/metadata/team-a/db",
    ] {
        assert!(
            call_as(&vault, &t, Read, path, json!({})).is_err(),
            "{path} must be refused"
        );
    }
    // `create` without `update`: new keys yes, overwriting no.
    call_as(
        &vault,
        &t,
        Update,
        "secret/data/team-a/new",
        json!({"data": {"x": 1}}),
    )
    .unwrap();
    let err = call_as(
        &vault,
        &t,
        Update,
        "secret/data/team-a/db",
        json!({"data": {"x": 1}}),
    )
    .err()
    .unwrap();
    assert!(matches!(err, Error::PermissionDenied));
    let caps = call_as(
        &vault,
        &root,
        Update,
        "sys/capabilities",
        json!({"token": t, "paths": ["secret/data/team-a/x", "secret/data/team-b/x"]}),
    )
    .unwrap()
    .data
    .unwrap();
    assert_eq!(caps["secret/data/team-a/x"], json!(["create", "read"]));
    assert_eq!(caps["secret/data/team-b/x"], json!(["deny"]));
    let own = call_as(
        &vault,
        &t,
        Update,
        "sys/capabilities-self",
        json!({"paths": ["secret/data/team-a/x"]}),
    )
    .unwrap()
    .data
    .unwrap();
    assert_eq!(own["capabilities"], json!(["create", "read"]));
}

#[test]
fn root_policy_cannot_be_attached_or_written_through_lookalike_names() {
    let (vault, _, root) = clocked();
    let (admin, _) = new_token(&vault, &root, json!({"policies": ["lockana-admin"]}));
    for name in [" root", "ROOT", "root\n", "Root "] {
        let r = call_as(
            &vault,
            &admin,
            Update,
            "auth/token/create",
            json!({"policies": [name]}),
        );
        assert!(r.is_err(), "{name:?} must not attach root");
        let r = call_as(
            &vault,
            &root,
            Update,
            &format!("sys/policies/acl/{}", name.trim()),
            json!({"policy": "path \"*\" { capabilities = [\"sudo\"] }"}),
        );
        assert!(r.is_err(), "{name:?} must not overwrite root");
    }
    // Admin can do nearly everything, but not the sudo paths.
    call_as(
        &vault,
        &admin,
        Update,
        "secret/data/x",
        json!({"data": {"a": 1}}),
    )
    .unwrap();
    assert!(matches!(
        call_as(&vault, &admin, Update, "sys/seal", json!({})),
        Err(Error::PermissionDenied)
    ));
    let (reader, _) = new_token(&vault, &root, json!({"policies": ["lockana-reader"]}));
    call_as(&vault, &reader, Read, "secret/data/x", json!({})).unwrap();
    assert!(
        call_as(
            &vault,
            &reader,
            Update,
            "secret/data/x",
            json!({"data": {"a": 2}})
        )
        .is_err()
    );
}

#[test]
fn policies_crud_and_default_policy() {
    let (vault, _, root) = clocked();
    let list = call_as(&vault, &root, List, "sys/policies/acl", json!({}))
        .unwrap()
        .data
        .unwrap();
    for n in [
        "default",
        "lockana-admin",
        "lockana-manager",
        "lockana-reader",
        "root",
    ] {
        assert!(list["keys"].as_array().unwrap().contains(&json!(n)), "{n}");
    }
    let p = r#"{"path": {"kv/*": {"capabilities": ["read"]}}}"#;
    call_as(
        &vault,
        &root,
        Update,
        "sys/policy/json-one",
        json!({"rules": p}),
    )
    .unwrap();
    let r = call_as(&vault, &root, Read, "sys/policies/acl/json-one", json!({}))
        .unwrap()
        .data
        .unwrap();
    assert_eq!(r["policy"], p);
    assert!(
        call_as(
            &vault,
            &root,
            Update,
            "sys/policies/acl/bad",
            json!({"policy": "path {"})
        )
        .is_err()
    );
    assert!(call_as(&vault, &root, Delete, "sys/policies/acl/default", json!({})).is_err());
    call_as(
        &vault,
        &root,
        Delete,
        "sys/policies/acl/json-one",
        json!({}),
    )
    .unwrap();
    assert!(matches!(
        call_as(&vault, &root, Read, "sys/policies/acl/json-one", json!({})),
        Err(Error::NotFound)
    ));
    // The default policy lets any token use its cubbyhole and look itself up.
    let (t, _) = new_token(&vault, &root, json!({"policies": ["default"]}));
    call_as(&vault, &t, Update, "cubbyhole/x", json!({"a": "b"})).unwrap();
    call_as(&vault, &t, Read, "auth/token/lookup-self", json!({})).unwrap();
    assert!(call_as(&vault, &t, Read, "sys/mounts", json!({})).is_err());
}

#[test]
fn userpass_login_is_case_insensitive_and_failures_look_alike() {
    let (vault, _, root) = clocked();
    call_as(
        &vault,
        &root,
        Update,
        "sys/auth/userpass",
        json!({"type": "userpass"}),
    )
    .unwrap();
    call_as(
        &vault,
        &root,
        Update,
        "auth/userpass/users/Alice",
        json!({"password": "correct horse", "token_policies": "lockana-reader", "token_ttl": "1h"}),
    )
    .unwrap();
    let login = |user: &str, pw: &str| {
        vault.handle(
            Request::new(Update, format!("auth/userpass/login/{user}"))
                .with_data(json!({"password": pw})),
        )
    };
    let r = login("ALICE ", "correct horse").unwrap();
    let auth = r.auth.unwrap();
    assert_eq!(auth.policies, vec!["default", "lockana-reader"]);
    assert_eq!(auth.lease_duration, 3600);
    let wrong = login("alice", "wrong").err().unwrap().to_string();
    let unknown = login("mallory", "wrong").err().unwrap().to_string();
    assert_eq!(wrong, unknown);
    let users = call_as(&vault, &root, List, "auth/userpass/users", json!({}))
        .unwrap()
        .data
        .unwrap();
    assert_eq!(users["keys"], json!(["alice"]));
    let info = call_as(&vault, &root, Read, "auth/userpass/users/alice", json!({}))
        .unwrap()
        .data
        .unwrap();
    assert!(info.get("password").is_none() && info.get("password_hash").is_none());
    call_as(
        &vault,
        &root,
        Update,
        "auth/userpass/users/alice/password",
        json!({"password": "new one"}),
    )
    .unwrap();
    assert!(login("alice", "correct horse").is_err());
    let token = login("alice", "new one")
        .unwrap()
        .auth
        .unwrap()
        .client_token
        .unwrap()
        .expose()
        .to_owned();
    call_as(&vault, &token, Read, "auth/token/lookup-self", json!({})).unwrap();
    // Disabling the method revokes what it issued.
    call_as(&vault, &root, Delete, "sys/auth/userpass", json!({})).unwrap();
    assert!(call_as(&vault, &token, Read, "auth/token/lookup-self", json!({})).is_err());
}

#[test]
fn no_raw_token_in_the_redb_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.redb");
    let vault = Vault::open(StorageConfig::Redb(path.clone())).unwrap();
    let (_, root) = init_unsealed(&vault);
    let (child, _) = new_token(&vault, &root, json!({"policies": ["default"]}));
    vault.close().unwrap();
    drop(vault);
    let raw = std::fs::read(&path).unwrap();
    for t in [&root, &child] {
        assert!(
            !raw.windows(t.len()).any(|w| w == t.as_bytes()),
            "token found in the file"
        );
    }
}

/// Issue 11: no secret, project, policy or user name is readable in the data file,
/// and LIST still answers with the names after a restart.
#[test]
fn names_are_not_readable_in_the_redb_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.redb");
    let tag = format!("{:08x}", std::process::id() ^ 0x5eed_0a11);
    let secret_dir = format!("probedir{tag}");
    let secret = format!("canaryname{tag}");
    let project = format!("projname{tag}");
    let policy = format!("polname{tag}");
    let user = format!("username{tag}");
    let role = format!("rolename{tag}");
    let (key, root) = {
        let vault = Vault::open(StorageConfig::Redb(path.clone())).unwrap();
        let (key, root) = init_unsealed(&vault);
        let ok = |op, p: &str, body: Value| call_as(&vault, &root, op, p, body).unwrap();
        ok(
            Update,
            &format!("secret/data/{secret_dir}/{secret}"),
            json!({"data": {"v": "1"}}),
        );
        ok(
            Update,
            &format!("sys/policies/acl/{policy}"),
            json!({"policy": "path \"secret/*\" { capabilities = [\"read\"] }"}),
        );
        ok(Update, &format!("lockana/projects/{project}"), json!({}));
        ok(Update, "sys/auth/userpass", json!({"type": "userpass"}));
        ok(
            Update,
            &format!("auth/userpass/users/{user}"),
            json!({"password": "pw"}),
        );
        ok(Update, "sys/auth/approle", json!({"type": "approle"}));
        ok(Update, &format!("auth/approle/role/{role}"), json!({}));
        // A failed login stores a lockout counter for the name.
        assert!(
            vault
                .handle(
                    Request::new(Update, format!("auth/userpass/login/{user}"))
                        .with_data(json!({"password": "wrong"}))
                )
                .is_err()
        );
        vault.close().unwrap();
        (key, root)
    };
    let raw = std::fs::read(&path).unwrap();
    for name in [&secret_dir, &secret, &project, &policy, &user, &role] {
        assert!(
            !raw.windows(name.len()).any(|w| w == name.as_bytes()),
            "{name} readable in the redb file"
        );
    }
    // After a restart everything lists and reads back by name.
    let vault = Vault::open(StorageConfig::Redb(path)).unwrap();
    vault.unseal(&key).unwrap();
    let keys = |p: &str| -> Vec<String> {
        let r = call_as(&vault, &root, List, p, json!({})).unwrap();
        serde_json::from_value(r.data.unwrap()["keys"].clone()).unwrap()
    };
    assert_eq!(keys("secret/metadata/"), vec![format!("{secret_dir}/")]);
    assert_eq!(
        keys(&format!("secret/metadata/{secret_dir}")),
        vec![secret.clone()]
    );
    assert!(keys("sys/policies/acl").contains(&policy));
    assert_eq!(keys("lockana/projects"), vec![project.clone()]);
    assert_eq!(keys("auth/userpass/users"), vec![user.clone()]);
    assert_eq!(keys("auth/approle/role"), vec![role.clone()]);
    let r = call_as(
        &vault,
        &root,
        Read,
        &format!("secret/data/{secret_dir}/{secret}"),
        json!({}),
    )
    .unwrap();
    assert_eq!(Value::Object(r.data.unwrap())["data"]["v"], "1");
}

#[test]
fn response_wrapping_hands_over_an_answer_once() {
    let (vault, clock, root) = clocked();
    call_as(
        &vault,
        &root,
        Update,
        "secret/data/w",
        json!({"data": {"pw": "x"}}),
    )
    .unwrap();
    let mut req = Request::new(Read, "secret/data/w").with_token(&root);
    req.wrap_ttl = Some(60);
    let r = vault.handle(req).unwrap();
    assert!(r.data.is_none(), "the answer itself is not returned");
    let info = r.wrap_info.unwrap();
    assert_eq!(info.ttl, 60);
    assert_eq!(info.creation_path, "secret/data/w");
    let wt = info.token.unwrap().expose().to_owned();
    // A wrapping token opens nothing but sys/wrapping.
    assert!(call_as(&vault, &wt, Read, "secret/data/w", json!({})).is_err());
    let look = vault
        .handle(Request::new(Update, "sys/wrapping/lookup").with_data(json!({"token": wt})))
        .unwrap();
    assert_eq!(look.data.unwrap()["creation_path"], "secret/data/w");
    let un = call_as(&vault, &wt, Update, "sys/wrapping/unwrap", json!({})).unwrap();
    assert_eq!(Value::Object(un.data.unwrap())["data"]["pw"], "x");
    let again =
        vault.handle(Request::new(Update, "sys/wrapping/unwrap").with_data(json!({"token": wt})));
    assert!(again.is_err(), "a wrapping token works once");
    // Wrapping a token: the unwrapped auth carries a working token; expiry ends it.
    let mut req = Request::new(Update, "auth/token/create")
        .with_data(json!({"policies": ["default"]}))
        .with_token(&root);
    req.wrap_ttl = Some(30);
    let wrapped = vault.handle(req).unwrap().wrap_info.unwrap();
    assert!(!wrapped.wrapped_accessor.is_empty());
    let wt = wrapped.token.unwrap().expose().to_owned();
    let un = vault
        .handle(Request::new(Update, "sys/wrapping/unwrap").with_data(json!({"token": wt})))
        .unwrap();
    let child = un.auth.unwrap().client_token.unwrap().expose().to_owned();
    call_as(&vault, &child, Read, "auth/token/lookup-self", json!({})).unwrap();
    let mut req = Request::new(Update, "sys/wrapping/wrap")
        .with_data(json!({"k": "v"}))
        .with_token(&root);
    req.wrap_ttl = Some(300);
    let w = vault.handle(req).unwrap().wrap_info.unwrap();
    clock.advance(Duration::from_secs(301));
    let gone = vault.handle(
        Request::new(Update, "sys/wrapping/unwrap")
            .with_data(json!({"token": w.token.unwrap().expose()})),
    );
    assert!(gone.is_err(), "expired wrapping tokens unwrap nothing");
}

mod canonical_paths {
    use super::*;
    use proptest::prelude::*;

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("team-a".to_owned()),
            Just("team-b".to_owned()),
            Just("..".to_owned()),
            Just(".".to_owned()),
            Just(String::new()),
            Just("db".to_owned()),
            Just("%2e%2e".to_owned()),
            Just("team-a\n".to_owned()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Whatever the path looks like, a team-a grant reads only team-a's secret and
        /// non-canonical paths are refused before they are routed.
        #[test]
        fn odd_paths_never_widen_a_grant(segs in proptest::collection::vec(segment(), 1..5)) {
            let (vault, _, root) = clocked();
            call_as(&vault, &root, Update, "secret/data/team-b/db", json!({"data": {"pw": "b"}})).unwrap();
            call_as(&vault, &root, Update, "sys/policies/acl/a", json!({"policy": r#"path "secret/data/team-a/*" { capabilities = ["read"] }"#})).unwrap();
            let (t, _) = new_token(&vault, &root, json!({"policies": ["a"]}));
            let path = format!("secret/data/{}", segs.join("/"));
            let canonical = segs.iter().all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains('\n'));
            match call_as(&vault, &t, Read, &path, json!({})) {
                Ok(_) => prop_assert!(canonical && path.starts_with("secret/data/team-a/"), "{:?} answered", path),
                Err(Error::InvalidRequest(_)) => prop_assert!(!canonical, "{:?} refused as invalid", path),
                Err(_) => {}
            }
        }
    }
}

/// Stable-toolchain twins of fuzz targets: every parser that sees untrusted input,
/// fed arbitrary input through the one entry point, answers or refuses — never panics.
mod fuzz_twins {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        #[test]
        fn policy_documents(doc in "\\PC{0,200}", hcl_ish in "(path \"[a-z/+*]{0,12}\" \\{ capabilities = \\[(\"[a-z]{0,7}\",? ?){0,3}\\] \\}\n?){0,3}") {
            let d = Dev::new();
            for text in [&doc, &hcl_ish] {
                match d.call(Update, "sys/policies/acl/fuzz", json!({"policy": text})) {
                    Ok(_) | Err(Error::InvalidRequest(_)) => {}
                    Err(e) => prop_assert!(false, "unexpected error {e}"),
                }
            }
        }

        #[test]
        fn otpauth_urls(url in "(otpauth://totp/)?\\PC{0,80}(\\?secret=[A-Z2-7]{0,40}(&digits=[0-9]{0,3})?(&period=[0-9-]{0,4})?(&algorithm=[A-Z0-9]{0,7})?)?") {
            let d = Dev::new();
            d.ok(Update, "sys/mounts/totp", json!({"type": "totp"}));
            match d.call(Update, "totp/keys/k", json!({"url": url})) {
                Ok(_) | Err(Error::InvalidRequest(_)) => {}
                Err(e) => prop_assert!(false, "unexpected error {e}"),
            }
        }

        #[test]
        fn unseal_shares(share in "\\PC{0,120}") {
            let vault = Vault::open(StorageConfig::Memory).unwrap();
            vault.init(3, 2, Cipher::default()).unwrap();
            let _ = vault.unseal(&share);
            let _ = vault.handle(Request::new(Update, "sys/unseal").with_data(json!({"key": share})));
            prop_assert!(vault.seal_status().sealed);
        }

        #[test]
        fn request_paths_and_bodies(path in "\\PC{0,60}", key in "\\PC{0,10}", value in "\\PC{0,20}") {
            let d = Dev::new();
            for op in [Read, Update, Patch, Delete, List] {
                let _ = d.call(op, &path, json!({key.clone(): value.clone(), "data": {key.clone(): value.clone()}, "options": {"cas": value.clone()}, "versions": value.clone()}));
            }
        }
    }
}

#[test]
fn reads_never_go_back_behind_an_acknowledged_write() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let d = Arc::new(Dev::new());
    d.ok(Update, "secret/metadata/race", json!({"max_versions": 3}));
    let acked = Arc::new(AtomicU64::new(0));
    let writer = {
        let (d, acked) = (d.clone(), acked.clone());
        std::thread::spawn(move || {
            for i in 1..=150u64 {
                let w = d.data(Update, "secret/data/race", json!({"data": {"i": i}}));
                acked.store(w["version"].as_u64().unwrap(), Ordering::SeqCst);
            }
        })
    };
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (d, acked) = (d.clone(), acked.clone());
            std::thread::spawn(move || {
                for _ in 0..300 {
                    let floor = acked.load(Ordering::SeqCst);
                    if floor == 0 {
                        continue;
                    }
                    let r = d.data(Read, "secret/data/race", json!({}));
                    let seen = r["metadata"]["version"].as_u64().unwrap();
                    assert!(
                        seen >= floor,
                        "read version {seen} after version {floor} was acknowledged"
                    );
                    assert_eq!(r["data"]["i"], seen, "data and metadata from one version");
                }
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        r.join().unwrap();
    }
    d.ok(Delete, "secret/metadata/race", json!({}));
    assert!(matches!(
        d.call(Read, "secret/data/race", json!({})),
        Err(Error::NotFound)
    ));
}

#[test]
fn policy_parameter_constraints_and_wrapping_bounds_are_enforced() {
    let (vault, _, root) = clocked();
    call_as(
        &vault,
        &root,
        Update,
        "sys/mounts/kv1",
        json!({"type": "kv", "options": {"version": "1"}}),
    )
    .unwrap();
    let policy = r#"
path "kv1/app/*" {
  capabilities = ["create", "update", "read"]
  allowed_parameters = { "env" = ["dev", "staging"], "owner" = [] }
  denied_parameters = { "owner" = ["root"] }
  required_parameters = ["env"]
}
path "kv1/wrapped" {
  capabilities = ["read"]
  min_wrapping_ttl = "1m"
  max_wrapping_ttl = "1h"
}
"#;
    call_as(
        &vault,
        &root,
        Update,
        "sys/policies/acl/params",
        json!({"policy": policy}),
    )
    .unwrap();
    let (t, _) = new_token(&vault, &root, json!({"policies": ["params"]}));
    call_as(
        &vault,
        &t,
        Update,
        "kv1/app/a",
        json!({"env": "dev", "owner": "alice"}),
    )
    .unwrap();
    for body in [
        json!({"env": "prod"}),
        json!({"owner": "alice"}),
        json!({"env": "dev", "owner": "root"}),
        json!({"env": "dev", "extra": "x"}),
        // Regression (ACL parameter-case bypass): names compare case-insensitively.
        json!({"env": "dev", "OWNER": "root"}),
        json!({"env": "dev", "Owner": "root", "owner": "alice"}),
        json!({"ENV": "prod"}),
    ] {
        let r = call_as(&vault, &t, Update, "kv1/app/a", body.clone());
        assert!(
            matches!(r, Err(Error::PermissionDenied)),
            "{body} must be refused"
        );
    }
    let t_ok = call_as(
        &vault,
        &t,
        Update,
        "kv1/app/b",
        json!({"ENV": "dev", "Owner": "bob"}),
    );
    assert!(t_ok.is_ok(), "other spellings of allowed names pass");
    // Reads are not constrained by parameters...
    call_as(&vault, &t, Read, "kv1/app/a", json!({})).unwrap();
    // ...but wrapping bounds hold for every request on the path.
    call_as(&vault, &root, Update, "kv1/wrapped", json!({"v": "1"})).unwrap();
    assert!(matches!(
        call_as(&vault, &t, Read, "kv1/wrapped", json!({})),
        Err(Error::PermissionDenied)
    ));
    for (ttl, ok) in [(30, false), (600, true), (7200, false)] {
        let mut req = Request::new(Read, "kv1/wrapped").with_token(&t);
        req.wrap_ttl = Some(ttl);
        assert_eq!(vault.handle(req).is_ok(), ok, "wrap ttl {ttl}");
    }
}

#[test]
fn token_roles_bound_what_create_role_hands_out() {
    let (vault, _, root) = clocked();
    call_as(
        &vault,
        &root,
        Update,
        "sys/policies/acl/ci-read",
        json!({"policy": r#"path "secret/data/ci/*" { capabilities = ["read"] }"#}),
    )
    .unwrap();
    call_as(
        &vault,
        &root,
        Update,
        "sys/policies/acl/role-user",
        json!({"policy": r#"path "auth/token/create/ci" { capabilities = ["update"] }"#}),
    )
    .unwrap();
    call_as(
        &vault,
        &root,
        Update,
        "auth/token/roles/ci",
        json!({"allowed_policies": ["ci-read"], "orphan": true, "token_period": "1h"}),
    )
    .unwrap();
    let role = call_as(&vault, &root, Read, "auth/token/roles/ci", json!({}))
        .unwrap()
        .data
        .unwrap();
    assert_eq!(role["allowed_policies"], json!(["ci-read"]));
    assert_eq!(role["token_period"], 3600);
    let roles = call_as(&vault, &root, List, "auth/token/roles", json!({}))
        .unwrap()
        .data
        .unwrap();
    assert_eq!(roles["keys"], json!(["ci"]));

    // The caller does not hold ci-read: the role, not the parent, bounds the policies.
    let (user, _) = new_token(&vault, &root, json!({"policies": ["role-user"]}));
    let r = call_as(&vault, &user, Update, "auth/token/create/ci", json!({})).unwrap();
    let auth = r.auth.unwrap();
    assert_eq!(auth.policies, vec!["ci-read", "default"]);
    assert!(auth.orphan);
    let t = auth.client_token.unwrap().expose().to_owned();
    let me = call_as(&vault, &t, Read, "auth/token/lookup-self", json!({}))
        .unwrap()
        .data
        .unwrap();
    assert_eq!(me["path"], "auth/token/create/ci");
    assert_eq!(me["period"], 3600);
    for policies in [json!(["role-user"]), json!(["root"])] {
        assert!(
            call_as(
                &vault,
                &user,
                Update,
                "auth/token/create/ci",
                json!({"policies": policies})
            )
            .is_err()
        );
    }
    assert!(call_as(&vault, &user, Update, "auth/token/create/other", json!({})).is_err());
    call_as(&vault, &root, Delete, "auth/token/roles/ci", json!({})).unwrap();
    assert!(call_as(&vault, &user, Update, "auth/token/create/ci", json!({})).is_err());
}

#[test]
fn key_rotation_survives_a_restart_and_keeps_old_values_readable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.redb");
    let (key, root) = {
        let vault = Vault::open(StorageConfig::Redb(path.clone())).unwrap();
        let (key, root) = init_unsealed(&vault);
        call_as(
            &vault,
            &root,
            Update,
            "secret/data/before",
            json!({"data": {"v": 1}}),
        )
        .unwrap();
        call_as(&vault, &root, Update, "sys/rotate", json!({})).unwrap();
        call_as(
            &vault,
            &root,
            Update,
            "secret/data/after",
            json!({"data": {"v": 2}}),
        )
        .unwrap();
        let st = call_as(&vault, &root, Read, "sys/key-status", json!({}))
            .unwrap()
            .data
            .unwrap();
        assert_eq!(st["term"], 2);
        vault.close().unwrap();
        (key, root)
    };
    let vault = Vault::open(StorageConfig::Redb(path)).unwrap();
    vault.unseal(&key).unwrap();
    for (k, v) in [("before", 1), ("after", 2)] {
        let r = call_as(&vault, &root, Read, &format!("secret/data/{k}"), json!({})).unwrap();
        assert_eq!(Value::Object(r.data.unwrap())["data"]["v"], v);
    }
    let st = call_as(&vault, &root, Read, "sys/key-status", json!({}))
        .unwrap()
        .data
        .unwrap();
    assert_eq!(st["term"], 2);
}

/// Whatever `refuses_whatever_the_body` refuses, `handle` refuses too, body or not;
/// and the paths whose body is the credential are never refused by it (a transport
/// skips reading the body on its word).
#[test]
fn refuses_whatever_the_body_agrees_with_handle() {
    let dev = Dev::new();
    dev.ok(
        Operation::Update,
        "sys/auth/userpass",
        json!({"type": "userpass"}),
    );
    let body = json!({"password": "pw", "token": "x", "key": "abc", "code": "123456"});
    let credential_in_body = [
        "sys/init",
        "sys/unseal",
        "sys/rekey/init",
        "auth/userpass/login/bob",
        "auth/totp/login",
        "sys/wrapping/unwrap",
        "sys/wrapping/lookup",
        "sys/mfa/validate",
    ];
    for path in credential_in_body {
        for token in [None, Some("not-a-token")] {
            let mut req = Request::new(Operation::Update, path);
            if let Some(t) = token {
                req = req.with_token(t);
            }
            assert!(
                !dev.vault.refuses_whatever_the_body(&req),
                "{path} {token:?}"
            );
        }
    }
    let needs_token = [
        "secret/data/x",
        "sys/policies/acl/p",
        "sys/mounts/kv",
        "auth/userpass/users/bob",
        "auth/token/create",
        "cubbyhole/x",
    ];
    for path in needs_token {
        for token in [None, Some("not-a-token")] {
            let mut req = Request::new(Operation::Update, path);
            if let Some(t) = token {
                req = req.with_token(t);
            }
            assert!(
                dev.vault.refuses_whatever_the_body(&req),
                "{path} {token:?}"
            );
            let answered = dev.vault.handle(req.with_data(body.clone()));
            assert!(
                matches!(
                    answered,
                    Err(Error::Unauthenticated | Error::PermissionDenied)
                ),
                "{path} {token:?}: {answered:?}"
            );
        }
        // A valid token is for the vault to judge with the body.
        let req = Request::new(Operation::Update, path).with_token("root");
        assert!(!dev.vault.refuses_whatever_the_body(&req), "{path} root");
    }
    dev.vault.seal().unwrap();
    let req = Request::new(Operation::Update, "secret/data/x").with_token("root");
    assert!(dev.vault.refuses_whatever_the_body(&req), "sealed");
    assert!(matches!(dev.vault.handle(req), Err(Error::Sealed)));
}

// Integrity failures and all-or-nothing unseal (issue 11).
#[path = "vault/integrity.rs"]
mod integrity;

// Snapshots: save and restore on any backend (issue 14).
#[path = "vault/snapshot.rs"]
mod snapshot;
