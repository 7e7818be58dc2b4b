//! Corruption must look like corruption (issue 11): damaged storage answers integrity
//! errors naming the key, never "permission denied", "not found" or a wrong value;
//! unseal is all or nothing; `verify-storage` finds what is damaged.

use std::time::Instant;

use lockana::{Cipher, Error, IntegrityKind, Request, StorageConfig, Vault};
use serde_json::{Value, json};

use super::{Operation::*, hex_encode};

/// What a small vault holds, and how to check a reopened copy of it.
struct Fixture {
    keys: Vec<String>,
    root: String,
    /// A non-root token with the `team` policy.
    user: String,
}

const SECRETS: [(&str, &str); 3] = [
    ("secret/data/db", "pw-1f3a"),
    ("secret/data/api", "key-77b2"),
    ("secret/data/team/x", "team-9c0d"),
];
const POLICY: &str = "path \"secret/data/team/*\" { capabilities = [\"read\"] }";

fn call(
    vault: &Vault,
    op: lockana::Operation,
    path: &str,
    token: &str,
    data: Value,
) -> lockana::Result<lockana::Response> {
    vault.handle(Request::new(op, path).with_data(data).with_token(token))
}

fn build(storage: StorageConfig) -> Fixture {
    let vault = Vault::open(storage).unwrap();
    let init = vault.init(3, 2, Cipher::default()).unwrap();
    let keys: Vec<String> = init.keys.iter().map(|k| hex_encode(k)).collect();
    vault.unseal(&keys[0]).unwrap();
    vault.unseal(&keys[1]).unwrap();
    let root = init.root_token.expose().to_owned();
    call(
        &vault,
        Update,
        "sys/mounts/secret",
        &root,
        json!({"type": "kv-v2"}),
    )
    .unwrap();
    for (path, v) in SECRETS {
        call(&vault, Update, path, &root, json!({"data": {"v": v}})).unwrap();
    }
    call(
        &vault,
        Update,
        "sys/policies/acl/team",
        &root,
        json!({"policy": POLICY}),
    )
    .unwrap();
    let r = call(
        &vault,
        Update,
        "auth/token/create",
        &root,
        json!({"policies": ["team"]}),
    )
    .unwrap();
    let user = r.auth.unwrap().client_token.unwrap().expose().to_owned();
    vault.close().unwrap();
    Fixture { keys, root, user }
}

/// Every read a client of `f` makes, on a reopened vault: each must give the right
/// answer or an integrity error. Returns how many reads answered integrity errors.
fn read_everything(vault: &Vault, f: &Fixture) -> Result<usize, String> {
    let mut integrity = 0;
    let mut check = |what: &str, got: lockana::Result<Value>, want: Value| match got {
        Ok(v) if v == want => Ok(()),
        Ok(v) => Err(format!("{what}: wrong value {v}")),
        Err(Error::Integrity(_)) => {
            integrity += 1;
            Ok(())
        }
        Err(e) => Err(format!("{what}: {e}")),
    };
    let data = |r: lockana::Result<lockana::Response>| {
        r.map(|r| Value::Object(r.data.unwrap_or_default()))
    };
    for (path, v) in SECRETS {
        check(
            path,
            data(call(vault, Read, path, &f.root, json!({}))).map(|d| d["data"]["v"].clone()),
            json!(v),
        )?;
    }
    check(
        "team read with the user token",
        data(call(vault, Read, "secret/data/team/x", &f.user, json!({})))
            .map(|d| d["data"]["v"].clone()),
        json!("team-9c0d"),
    )?;
    check(
        "user token lookup",
        data(call(
            vault,
            Read,
            "auth/token/lookup-self",
            &f.user,
            json!({}),
        ))
        .map(|d| d["policies"].clone()),
        json!(["default", "team"]),
    )?;
    check(
        "policy",
        data(call(
            vault,
            Read,
            "sys/policies/acl/team",
            &f.root,
            json!({}),
        ))
        .map(|d| d["policy"].clone()),
        json!(POLICY),
    )?;
    Ok(integrity)
}

/// What one damaged copy did.
enum Outcome {
    /// Opened, unsealed, every read right.
    Intact,
    /// Refused to unseal with an integrity error, or some reads answered integrity
    /// errors and the rest were right.
    Detected,
}

/// Opens a damaged copy, unseals it with the right shares and reads everything.
/// The vault comes back too, so the caller can close it off the clock.
fn try_copy(path: &std::path::Path, f: &Fixture) -> (Result<Outcome, String>, Option<Vault>) {
    match Vault::open(StorageConfig::Redb(path.to_owned())) {
        Ok(v) => (check_copy(&v, f), Some(v)),
        Err(Error::Integrity(_)) => (Ok(Outcome::Detected), None),
        Err(e) => (Err(format!("open: {e}")), None),
    }
}

fn check_copy(vault: &Vault, f: &Fixture) -> Result<Outcome, String> {
    let status = vault.seal_status();
    if !status.sealed {
        return Err("a reopened vault claims to be unsealed".into());
    }
    for k in &f.keys[..2] {
        match vault.unseal(k) {
            Ok(_) => {}
            Err(Error::Integrity(_)) => {
                // All or nothing: still sealed, and requests say so.
                if !vault.seal_status().sealed {
                    return Err("a failed unseal left the vault unsealed".into());
                }
                return match call(vault, Read, "secret/data/db", &f.root, json!({})) {
                    Err(Error::Sealed) => Ok(Outcome::Detected),
                    other => Err(format!("after a failed unseal: {:?}", other.map(|_| ()))),
                };
            }
            Err(e) => return Err(format!("unseal: {e}")),
        }
    }
    if vault.seal_status().sealed {
        return Err("unseal with the right shares left it sealed without an error".into());
    }
    match read_everything(vault, f)? {
        0 => Ok(Outcome::Intact),
        _ => Ok(Outcome::Detected),
    }
}

/// A directory for the many copies: tmpfs where there is one, as each open fsyncs.
fn scratch_dir() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap()
}

/// One byte flipped anywhere in a small vault's redb file (every byte of the first
/// 512, which hold redb's header and commit slots, then every 37th byte of the
/// 72 KiB file; a different bit each time): every read gives the right value or an
/// integrity error. Never a wrong value, a "permission denied", a "not found", an
/// "uninitialized", a panic escaping or a hang. ~2,500 copies, ~20 s in a debug
/// build on tmpfs.
#[test]
fn every_flipped_byte_reads_right_or_reports_integrity() {
    const HEADER: usize = 512;
    const STRIDE: usize = 37;
    let dir = scratch_dir();
    let path = dir.path().join("v.redb");
    let f = std::sync::Arc::new(build(StorageConfig::Redb(path.clone())));
    let clean = std::fs::read(&path).unwrap();
    let offsets: Vec<usize> = (0..clean.len())
        .filter(|&i| i < HEADER || i % STRIDE == 0)
        .collect();
    let started = Instant::now();
    let (mut intact, mut detected) = (0usize, 0usize);
    for &offset in &offsets {
        let copy = dir.path().join(format!("copy-{offset}.redb"));
        let mut bytes = clean.clone();
        bytes[offset] ^= 1 << (offset % 8);
        std::fs::write(&copy, &bytes).unwrap();
        // A hang is a failure too: each copy gets its own thread and a deadline.
        let (tx, rx) = std::sync::mpsc::channel();
        let (f2, copy2) = (std::sync::Arc::clone(&f), copy.clone());
        std::thread::spawn(move || {
            let (outcome, vault) = try_copy(&copy2, &f2);
            let _ = tx.send(outcome);
            drop(vault);
            let _ = std::fs::remove_file(&copy2);
        });
        match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(Ok(Outcome::Intact)) => intact += 1,
            Ok(Ok(Outcome::Detected)) => detected += 1,
            Ok(Err(e)) => panic!("byte {offset}: {e}"),
            Err(_) => panic!("byte {offset}: no answer in 30 s (hang or escaped panic)"),
        }
    }
    eprintln!(
        "{} flips: {intact} read back intact, {detected} reported as integrity failures, {:?}",
        offsets.len(),
        started.elapsed()
    );
    assert!(
        detected > 100 && intact > 100,
        "flips hit both data and free space"
    );
}

fn pg_url() -> String {
    std::env::var("LOCKANA_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A vault on its own PostgreSQL table, so a test can damage rows with SQL.
struct PgVault {
    table: String,
    sql: postgres::Client,
}

impl PgVault {
    fn new() -> Self {
        let table = format!("lockana_integrity_{}", uuid::Uuid::new_v4().simple());
        let sql = postgres::Client::connect(&pg_url(), postgres::NoTls).unwrap();
        PgVault { table, sql }
    }

    fn storage(&self) -> StorageConfig {
        StorageConfig::Postgres {
            url: pg_url(),
            table: self.table.clone(),
        }
    }

    /// Flips one bit in the middle of every value whose storage key starts with
    /// `prefix` (a plain prefix: `_`, which encrypted names hold, is no wildcard).
    fn damage(&mut self, prefix: &str) -> u64 {
        self.sql
            .execute(
                &format!(
                    "UPDATE {} SET value = set_byte(value, length(value) / 2, get_byte(value, length(value) / 2) # 1) WHERE left(key, length($1)) = $1",
                    self.table
                ),
                &[&prefix],
            )
            .unwrap()
    }

    /// Every storage key, in order.
    fn keys(&mut self) -> Vec<String> {
        self.sql
            .query(&format!("SELECT key FROM {} ORDER BY key", self.table), &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    fn delete(&mut self, key: &str) {
        let n = self
            .sql
            .execute(
                &format!("DELETE FROM {} WHERE key = $1", self.table),
                &[&key],
            )
            .unwrap();
        assert_eq!(n, 1, "one row stored under {key}");
    }

    /// The storage keys (names are encrypted at rest) of logical keys of `f`'s
    /// vault, or of a directory for one ending in `/`, from a vault unsealed for it.
    fn stored_names<const N: usize>(&self, f: &Fixture, logical: [&str; N]) -> [String; N] {
        let vault = unsealed(self.storage(), f);
        let names = logical.map(|k| vault.storage_key(k).unwrap());
        vault.close().unwrap();
        names
    }
}

impl Drop for PgVault {
    fn drop(&mut self) {
        let _ = self
            .sql
            .batch_execute(&format!("DROP TABLE IF EXISTS {}", self.table));
    }
}

fn unsealed(storage: StorageConfig, f: &Fixture) -> Vault {
    let vault = Vault::open(storage).unwrap();
    vault.unseal(&f.keys[0]).unwrap();
    vault.unseal(&f.keys[1]).unwrap();
    vault
}

fn integrity_key(r: lockana::Result<lockana::Response>) -> String {
    match r {
        Err(Error::Integrity(e)) => e.key().unwrap_or_default().to_owned(),
        other => panic!("want an integrity error, got {:?}", other.map(|_| ())),
    }
}

/// A damaged token entry once answered 403 "permission denied" to its holder: it is
/// an integrity error naming the token's storage key, and other tokens still work.
#[test]
fn damaged_token_entry_is_an_integrity_error_not_permission_denied() {
    let mut pg = PgVault::new();
    let f = build(pg.storage());
    let [tokens] = pg.stored_names(&f, ["sys/token/id/"]);
    assert!(pg.damage(&tokens) >= 2);
    let vault = unsealed(pg.storage(), &f);
    let key = integrity_key(call(
        &vault,
        Read,
        "auth/token/lookup-self",
        &f.user,
        json!({}),
    ));
    assert!(key.starts_with("sys/token/id/"), "{key}");
    let key = integrity_key(call(&vault, Read, "secret/data/db", &f.root, json!({})));
    assert!(key.starts_with("sys/token/id/"), "{key}");
    assert!(!vault.seal_status().sealed);
}

/// A damaged secret reads as an integrity error naming its key; the others read
/// right, and `verify-storage` (online and offline) lists exactly the damaged keys.
#[test]
fn damaged_secret_is_reported_by_reads_and_by_verify_storage() {
    let mut pg = PgVault::new();
    let f = build(pg.storage());
    let vault = unsealed(pg.storage(), &f);
    // The entries one new secret adds (whatever the storage keys look like) are the
    // ones to damage.
    let before = pg.keys();
    call(
        &vault,
        Update,
        "secret/data/victim",
        &f.root,
        json!({"data": {"v": "x"}}),
    )
    .unwrap();
    drop(vault);
    let clean = Vault::verify_storage(pg.storage(), &f.keys[1..], &mut |_, _| {}).unwrap();
    assert!(clean.is_clean() && clean.checked == clean.total && clean.total > 10);
    let mut victims: Vec<String> = pg
        .keys()
        .into_iter()
        .filter(|k| !before.contains(k))
        .collect();
    victims.sort(); // byte order, not the database's collation
    assert!(!victims.is_empty());
    for k in &victims {
        assert!(pg.damage(k) >= 1);
    }
    let vault = unsealed(pg.storage(), &f);
    // Errors name logical keys; the damaged rows are stored under encrypted names.
    let stored = |key: &str| vault.storage_key(key).unwrap();
    let key = integrity_key(call(&vault, Read, "secret/data/victim", &f.root, json!({})));
    assert!(victims.contains(&stored(&key)), "{key}");
    for (path, v) in SECRETS {
        let r = call(&vault, Read, path, &f.root, json!({})).unwrap();
        assert_eq!(Value::Object(r.data.unwrap())["data"]["v"], v);
    }
    // Online: sys/storage/verify, root only (sudo), in chunks.
    let mut after = Value::Null;
    let mut corrupt = Vec::new();
    loop {
        let r = call(
            &vault,
            Update,
            "sys/storage/verify",
            &f.root,
            json!({"after": after, "limit": 5}),
        )
        .unwrap();
        let d = Value::Object(r.data.unwrap());
        corrupt.extend(
            d["corrupt"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["key"].clone()),
        );
        if d["next"].is_null() {
            break;
        }
        after = d["next"].clone();
    }
    let corrupt: Vec<String> = corrupt
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    let mut found: Vec<String> = corrupt.iter().map(|k| stored(k)).collect();
    found.sort();
    assert_eq!(found, victims, "exactly the damaged rows: {corrupt:?}");
    assert!(matches!(
        call(&vault, Update, "sys/storage/verify", &f.user, json!({})),
        Err(Error::PermissionDenied)
    ));
    drop(vault);
    // Offline, with a progress callback that reaches the total.
    let mut last = (0, 0);
    let report =
        Vault::verify_storage(pg.storage(), &f.keys[..2], &mut |d, t| last = (d, t)).unwrap();
    assert_eq!(last, (report.total, report.total));
    let keys: Vec<String> = report
        .corrupt
        .iter()
        .filter_map(|e| e.key())
        .map(str::to_owned)
        .collect();
    assert_eq!(keys, corrupt);
    assert_eq!(report.corrupt[0].kind(), IntegrityKind::Authentication);
}

/// A missing token salt once made the unseal write a new one, turning every token
/// into "permission denied". Now the unseal fails with an integrity error naming the
/// salt, and the vault stays sealed: status and requests agree.
#[test]
fn missing_token_salt_leaves_the_vault_sealed_with_an_integrity_error() {
    let mut pg = PgVault::new();
    let f = build(pg.storage());
    let [salt] = pg.stored_names(&f, ["sys/token/salt"]);
    pg.delete(&salt);
    unseal_fails_and_stays_sealed(&pg, &f, "sys/token/salt", IntegrityKind::Missing);
}

/// Unseals `f`'s vault with the right shares: the last one must fail with an
/// integrity error at `key`, and the vault stay sealed: status and requests agree.
fn unseal_fails_and_stays_sealed(pg: &PgVault, f: &Fixture, key: &str, kind: IntegrityKind) {
    let vault = Vault::open(pg.storage()).unwrap();
    vault.unseal(&f.keys[0]).unwrap();
    match vault.unseal(&f.keys[1]) {
        Err(Error::Integrity(e)) => {
            assert_eq!(e.key(), Some(key));
            assert_eq!(e.kind(), kind);
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    let s = vault.seal_status();
    assert!(s.sealed && s.initialized && s.progress == 0);
    assert!(matches!(
        call(&vault, Read, "secret/data/db", &f.root, json!({})),
        Err(Error::Sealed)
    ));
    let r = vault
        .handle(Request::new(Read, "sys/seal-status"))
        .unwrap()
        .data
        .unwrap();
    assert_eq!(r["sealed"], json!(true));
}

/// A damaged keyring once answered the right shares with "the unseal key shares did
/// not combine into the right key", and a missing one with "corrupt record in
/// storage": the root key opened, so the shares were right, and it is an integrity
/// error naming the keyring (offline verification says the same). Sealed throughout.
#[test]
fn damaged_or_missing_keyring_leaves_the_vault_sealed_with_an_integrity_error() {
    for kind in [IntegrityKind::Authentication, IntegrityKind::Missing] {
        let mut pg = PgVault::new();
        let f = build(pg.storage());
        // The key hierarchy is read before unseal, so its names stay in the clear.
        let [keyring] = pg.stored_names(&f, ["core/keyring"]);
        assert_eq!(keyring, "core/keyring");
        if kind == IntegrityKind::Missing {
            pg.delete(&keyring);
        } else {
            assert_eq!(pg.damage(&keyring), 1);
        }
        unseal_fails_and_stays_sealed(&pg, &f, "core/keyring", kind);
        match Vault::verify_storage(pg.storage(), &f.keys[..2], &mut |_, _| {}) {
            Err(Error::Integrity(e)) => assert_eq!(e.key(), Some("core/keyring")),
            other => panic!("verify-storage: {:?}", other.map(|_| ())),
        }
    }
}

/// A missing audit salt was once made anew at unseal: every HMAC already in the audit
/// logs stopped matching (`sys/audit-hash` answered other values), silently. A vault
/// that has had one (its first unseal wrote it, with the checkpoint signing key) now
/// stays sealed with an integrity error naming it, audit device or not.
#[test]
fn missing_audit_salt_leaves_the_vault_sealed_with_an_integrity_error() {
    let mut pg = PgVault::new();
    let f = build(pg.storage());
    let [salt] = pg.stored_names(&f, ["core/audit-salt"]);
    pg.delete(&salt);
    unseal_fails_and_stays_sealed(&pg, &f, "core/audit-salt", IntegrityKind::Missing);
}

/// A vault with no audit state (initialized and never unsealed, or written before
/// audit salts) still unseals, and gets the salt and the signing key together: from
/// then on a missing salt is damage.
#[test]
fn vault_without_audit_keys_unseals_and_gets_both_together() {
    let mut pg = PgVault::new();
    let f = build(pg.storage());
    let [salt, signing] = pg.stored_names(&f, ["core/audit-salt", "core/audit-signing-key"]);
    pg.delete(&salt);
    pg.delete(&signing);
    let vault = unsealed(pg.storage(), &f);
    assert_eq!(read_everything(&vault, &f), Ok(0));
    vault.close().unwrap();
    let keys = pg.keys();
    assert!(keys.contains(&salt) && keys.contains(&signing));
    pg.delete(&salt);
    unseal_fails_and_stays_sealed(&pg, &f, "core/audit-salt", IntegrityKind::Missing);
}
