//! Unseal key shares (hex or base64 text, `sys/unseal`): up to three per input (one
//! per line) against a 3-of-5 vault. Garbage never unseals and never panics.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lockana::{Cipher, Operation, Request, StorageConfig, Vault};
use serde_json::json;

static VAULT: OnceLock<Vault> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let vault = VAULT.get_or_init(|| {
        let v = Vault::open(StorageConfig::Memory).expect("vault");
        v.init(5, 3, Cipher::default()).expect("init");
        v
    });
    let text = String::from_utf8_lossy(data);
    for share in text.lines().take(3) {
        let _ = vault.unseal(share);
    }
    let _ = vault.handle(Request::new(Operation::Update, "sys/unseal").with_data(json!({"key": text})));
    assert!(vault.seal_status().sealed, "garbage shares unsealed the vault");
    vault
        .handle(Request::new(Operation::Update, "sys/unseal").with_data(json!({"reset": true})))
        .expect("reset");
});
