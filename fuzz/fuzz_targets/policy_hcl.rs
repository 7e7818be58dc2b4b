//! ACL policy documents (HCL) through `sys/policies/acl/<name>`: stored or refused
//! with a 400-class error; a stored policy then answers a capability check.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lockana::{Error, Operation, Request, Vault};
use serde_json::json;

static VAULT: OnceLock<(Vault, String)> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let (vault, root) = VAULT.get_or_init(|| {
        let (v, c) = Vault::dev(None).expect("dev vault");
        (v, c.root_token.expose().to_owned())
    });
    let text = String::from_utf8_lossy(data);
    let put = Request::new(Operation::Update, "sys/policies/acl/fuzz")
        .with_token(root)
        .with_data(json!({"policy": text}));
    match vault.handle(put) {
        Ok(_) => {
            let check = Request::new(Operation::Update, "sys/capabilities")
                .with_token(root)
                .with_data(json!({"token": root, "paths": ["secret/data/a/b", "sys/mounts"]}));
            let _ = vault.handle(check);
        }
        Err(Error::InvalidRequest(_)) => {}
        Err(e) => panic!("policy refused with a non-400 error: {e}"),
    }
});
