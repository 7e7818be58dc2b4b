//! Snapshots through the vault's entry point (issue 14): save, restore into this
//! vault and another, refusals, and what a restore leaves sealed.

use lockana::{Error, Operation, Request, Response, StorageConfig, Vault};
use serde_json::{Value, json};

use Operation::*;

struct Node {
    vault: Vault,
    key: String,
    token: String,
}

impl Node {
    fn new(storage: StorageConfig) -> Node {
        use base64::Engine as _;
        let vault = Vault::open(storage).unwrap();
        let init = vault.init(1, 1, lockana::Cipher::default()).unwrap();
        let key = base64::engine::general_purpose::STANDARD.encode(&init.keys[0][..]);
        vault.unseal(&key).unwrap();
        let node = Node {
            vault,
            key,
            token: init.root_token.expose().to_owned(),
        };
        node.ok(Update, "sys/mounts/secret", json!({"type": "kv-v2"}));
        node
    }

    fn call(&self, req: Request) -> Result<Response, Error> {
        self.vault.handle(req.with_token(&self.token))
    }

    fn ok(&self, op: Operation, path: &str, data: Value) -> Response {
        self.call(Request::new(op, path).with_data(data))
            .unwrap_or_else(|e| panic!("{op:?} {path}: {e}"))
    }

    fn read(&self, path: &str) -> Result<Value, Error> {
        self.call(Request::new(Read, path))
            .map(|r| Value::Object(r.data.unwrap_or_default()))
    }

    fn save(&self) -> Vec<u8> {
        let resp = self.ok(Read, "sys/storage/raft/snapshot", json!({}));
        let raw = resp.raw_body.expect("a snapshot body");
        assert_eq!(raw.content_type, "application/gzip");
        raw.bytes
    }

    fn restore(&self, snapshot: &[u8], force: bool) -> Result<Response, Error> {
        let path = if force {
            "sys/storage/raft/snapshot-force"
        } else {
            "sys/storage/raft/snapshot"
        };
        self.call(Request::new(Update, path).with_raw_body(snapshot.to_vec()))
    }
}

fn invalid(r: Result<Response, Error>) -> String {
    match r {
        Err(Error::InvalidRequest(m)) => m.into_owned(),
        other => panic!("expected a 400, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn snapshot_restores_into_its_own_vault_and_stays_unsealed() {
    let a = Node::new(StorageConfig::Memory);
    a.ok(Update, "secret/data/app", json!({"data": {"v": "one"}}));
    let snap = a.save();
    let info = lockana::inspect_snapshot(&snap).unwrap();
    assert_eq!(info.storage_type, "inmem");
    assert!(info.entries > 5);
    a.ok(Update, "secret/data/app", json!({"data": {"v": "two"}}));
    a.ok(Update, "secret/data/later", json!({"data": {"v": "x"}}));
    a.restore(&snap, false).unwrap();
    assert!(!a.vault.seal_status().sealed);
    let got = a.read("secret/data/app").unwrap();
    assert_eq!(got["data"], json!({"v": "one"}));
    assert_eq!(got["metadata"]["version"], 1);
    assert!(matches!(a.read("secret/data/later"), Err(Error::NotFound)));
    // Caches were dropped: the metadata of the restored secret is the restored one.
    let meta = a.read("secret/metadata/app").unwrap();
    assert_eq!(meta["current_version"], 1);
}

#[test]
fn another_vaults_snapshot_needs_force_and_its_unseal_key_across_backends() {
    let dir = tempfile::tempdir().unwrap();
    let a = Node::new(StorageConfig::Redb(dir.path().join("a.redb")));
    for i in 0..50 {
        a.ok(
            Update,
            &format!("secret/data/dir{}/s{i}", i % 3),
            json!({"data": {"i": i}}),
        );
    }
    a.ok(
        Update,
        "sys/policies/acl/ops",
        json!({"policy": "path \"secret/*\" { capabilities = [\"read\"] }"}),
    );
    let snap = a.save();

    let b = Node::new(StorageConfig::Memory);
    b.ok(Update, "secret/data/own", json!({"data": {"mine": true}}));
    assert_eq!(
        invalid(b.restore(&snap, false)),
        "could not verify hash file, possibly the snapshot is using a different set of unseal keys; use the snapshot-force API to bypass this check"
    );
    // Damage is refused before anything is replaced, forced or not.
    let mut damaged = snap.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x10;
    assert!(invalid(b.restore(&damaged, true)).starts_with("failed to"));
    assert!(invalid(b.restore(&snap[..snap.len() - 10], true)).starts_with("failed to"));
    assert!(!b.vault.seal_status().sealed);
    assert_eq!(b.read("secret/data/own").unwrap()["data"]["mine"], true);

    b.restore(&snap, true).unwrap();
    assert!(b.vault.seal_status().sealed, "another vault's keys: sealed");
    assert!(
        b.vault.unseal(&b.key).is_err(),
        "b's own key no longer opens it"
    );
    b.vault.unseal(&a.key).unwrap();
    let b = Node {
        token: a.token.clone(),
        ..b
    };
    assert!(matches!(b.read("secret/data/own"), Err(Error::NotFound)));
    for i in 0..50 {
        let got = b.read(&format!("secret/data/dir{}/s{i}", i % 3)).unwrap();
        assert_eq!(got["data"]["i"], i);
    }
    let keys = b.ok(List, "secret/metadata/", json!({})).data.unwrap();
    assert_eq!(keys["keys"], json!(["dir0/", "dir1/", "dir2/"]));
    assert!(b.read("sys/policies/acl/ops").is_ok());
    // And back: the memory vault's snapshot is the same vault as a's now.
    let back = b.save();
    a.ok(
        Update,
        "secret/data/dir0/s0",
        json!({"data": {"i": "changed"}}),
    );
    a.restore(&back, false).unwrap();
    assert_eq!(a.read("secret/data/dir0/s0").unwrap()["data"]["i"], 0);
}

#[test]
fn snapshot_of_a_vault_with_nothing_initialized_is_refused() {
    let a = Node::new(StorageConfig::Memory);
    let bad = Vec::from(&b"\x1f\x8b not really"[..]);
    assert!(invalid(a.restore(&bad, true)).starts_with("failed to"));
    assert!(invalid(a.restore(&[], true)).starts_with("failed to"));
    assert!(!a.vault.seal_status().sealed);
}

#[test]
fn snapshots_need_an_unsealed_vault() {
    let a = Node::new(StorageConfig::Memory);
    let snap = a.save();
    a.vault.seal().unwrap();
    assert!(matches!(
        a.call(Request::new(Read, "sys/storage/raft/snapshot")),
        Err(Error::Sealed)
    ));
    assert!(matches!(a.restore(&snap, true), Err(Error::Sealed)));
}

/// Transit keys are cached per mount; a restore drops the cache with the mount table,
/// so the restored key is the one served: its rotation after the snapshot is gone,
/// and a ciphertext made with the lost version no longer decrypts.
#[test]
fn restore_serves_the_restored_transit_key_not_a_cached_one() {
    let a = Node::new(StorageConfig::Memory);
    a.ok(Update, "sys/mounts/transit", json!({"type": "transit"}));
    a.ok(Update, "transit/keys/k", json!({}));
    let plaintext = json!({"plaintext": "aGVsbG8="});
    let v1 = a.ok(Update, "transit/encrypt/k", plaintext.clone());
    assert_eq!(v1.data.as_ref().unwrap()["key_version"], 1);
    let snap = a.save();
    a.ok(Update, "transit/keys/k/rotate", json!({}));
    let v2 = a.ok(Update, "transit/encrypt/k", plaintext.clone());
    let v2_ct = v2.data.as_ref().unwrap()["ciphertext"].clone();
    assert!(v2_ct.as_str().unwrap().starts_with("vault:v2:"), "{v2_ct}");
    a.restore(&snap, false).unwrap();
    assert_eq!(a.read("transit/keys/k").unwrap()["latest_version"], 1);
    let again = a.ok(Update, "transit/encrypt/k", plaintext);
    assert_eq!(again.data.as_ref().unwrap()["key_version"], 1);
    let lost =
        a.call(Request::new(Update, "transit/decrypt/k").with_data(json!({"ciphertext": v2_ct})));
    assert!(
        matches!(lost, Err(Error::InvalidRequest(_))),
        "a ciphertext of the lost version decrypted: {:?}",
        lost.map(|r| r.data)
    );
}

/// Changes to a transit key are seen by the next request at once (the cache is
/// written through): rotation, a new minimum version, deletion and re-creation.
#[test]
fn transit_key_changes_are_served_at_once() {
    let a = Node::new(StorageConfig::Memory);
    a.ok(Update, "sys/mounts/transit", json!({"type": "transit"}));
    let pt = json!({"plaintext": "aGVsbG8="});
    let v1 = a.ok(Update, "transit/encrypt/k", pt.clone());
    let v1_ct = v1.data.as_ref().unwrap()["ciphertext"].clone();
    a.ok(Update, "transit/keys/k/rotate", json!({}));
    let v2 = a.ok(Update, "transit/encrypt/k", pt.clone());
    assert_eq!(v2.data.as_ref().unwrap()["key_version"], 2);
    a.ok(
        Update,
        "transit/keys/k/config",
        json!({"min_decryption_version": 2, "deletion_allowed": true}),
    );
    let old = a.call(
        Request::new(Update, "transit/decrypt/k").with_data(json!({"ciphertext": v1_ct.clone()})),
    );
    assert!(matches!(old, Err(Error::InvalidRequest(_))));
    a.ok(Delete, "transit/keys/k", json!({}));
    // Encrypting to a deleted key creates a new one, at version 1.
    let fresh = a.ok(Update, "transit/encrypt/k", pt);
    assert_eq!(fresh.data.as_ref().unwrap()["key_version"], 1);
    let gone =
        a.call(Request::new(Update, "transit/decrypt/k").with_data(json!({"ciphertext": v1_ct})));
    assert!(
        matches!(gone, Err(Error::InvalidRequest(_))),
        "the deleted key's ciphertext decrypted"
    );
}
