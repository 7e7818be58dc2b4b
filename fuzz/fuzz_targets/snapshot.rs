//! Snapshot archives (`sys/storage/raft/snapshot` restores, `lockana operator snapshot
//! restore`): gzip, tar, sums and entries from untrusted bytes. Garbage is refused,
//! never a panic, and never a restore: the vault keeps serving what it had.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lockana::{Cipher, Operation, Request, StorageConfig, Vault};

static VAULT: OnceLock<(Vault, String)> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    if lockana::inspect_snapshot(data).is_ok() {
        // A well-formed archive (the seed is one, of another vault): restoring it is
        // allowed and would replace this vault, so only garbage goes on to the restore.
        return;
    }
    let (vault, token) = VAULT.get_or_init(|| {
        let v = Vault::open(StorageConfig::Memory).expect("vault");
        let init = v.init(1, 1, Cipher::default()).expect("init");
        let key: String = init.keys[0].iter().map(|b| format!("{b:02x}")).collect();
        v.unseal(&key).expect("unseal");
        (v, init.root_token.expose().to_owned())
    });
    let restored = vault.handle(
        Request::new(Operation::Update, "sys/storage/raft/snapshot-force")
            .with_raw_body(data.to_vec())
            .with_token(token.as_str()),
    );
    assert!(restored.is_err(), "garbage restored as a snapshot");
    assert!(!vault.seal_status().sealed, "a refused snapshot sealed the vault");
});
