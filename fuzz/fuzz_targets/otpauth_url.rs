//! otpauth:// URLs given to the TOTP engine (`totp/keys/<name>` with `url`): a key
//! is made or the request is refused with a 400-class error.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lockana::{Error, Operation, Request, Vault};
use serde_json::json;

static VAULT: OnceLock<(Vault, String)> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let (vault, root) = VAULT.get_or_init(|| {
        let (v, c) = Vault::dev(None).expect("dev vault");
        let mount = Request::new(Operation::Update, "sys/mounts/totp")
            .with_token(c.root_token.expose())
            .with_data(json!({"type": "totp"}));
        v.handle(mount).expect("mount totp");
        (v, c.root_token.expose().to_owned())
    });
    let url = String::from_utf8_lossy(data);
    let create = Request::new(Operation::Update, "totp/keys/k")
        .with_token(root)
        .with_data(json!({"url": url}));
    match vault.handle(create) {
        Ok(_) => {
            let code = Request::new(Operation::Read, "totp/code/k").with_token(root);
            let _ = vault.handle(code);
            let delete = Request::new(Operation::Delete, "totp/keys/k").with_token(root);
            vault.handle(delete).expect("delete the key");
        }
        Err(Error::InvalidRequest(_)) => {}
        Err(e) => panic!("url refused with a non-400 error: {e}"),
    }
});
