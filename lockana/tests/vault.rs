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
    assert_eq!(err.to_string(), "no version number provided");
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
    assert!(matches!(r, Err(Error::PermissionDenied)));
    let r = d
        .vault
        .handle(Request::new(Read, "secret/data/x").with_token("not-root"));
    assert!(matches!(r, Err(Error::PermissionDenied)));
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
