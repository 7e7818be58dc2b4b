//! Operator procedures that unseal key shares gate rather than tokens: `sys/rekey/*`
//! and `sys/generate-root/*` (Vault serves them without a token), plus the state
//! they keep between calls. Progress lives in memory only, as in Vault: a restart or
//! a seal forgets a half-done procedure, and nothing is stored until it completes.

use parking_lot::Mutex;
use serde_json::Value;

use super::generate_root::RootGeneration;
use super::rekey::Rekey;
use super::remount::Migrations;
use crate::barrier::Share;
use crate::vault::Core;
use crate::{Error, Request, Response, Result};

/// In-progress operator procedures of one vault.
#[derive(Default)]
pub(crate) struct OperatorState {
    pub(super) rekey: Mutex<Option<Rekey>>,
    pub(super) root_generation: Mutex<Option<RootGeneration>>,
    pub(super) migrations: Migrations,
    pub(super) rotation: super::rotation::RotationState,
}

impl OperatorState {
    /// Forgets half-done procedures (at seal: their shares must not outlive it).
    pub(crate) fn clear(&self) {
        *self.rekey.lock() = None;
        *self.root_generation.lock() = None;
        self.rotation.clear();
    }
}

/// Whether `path` is one of the share-gated paths served without a token.
pub(crate) fn is_unauthenticated(path: &str) -> bool {
    matches!(
        path,
        "sys/rekey/init"
            | "sys/rekey/update"
            | "sys/rekey/verify"
            | "sys/generate-root/attempt"
            | "sys/generate-root/update"
            | "sys/decode-token"
    )
}

/// Serves a path [`is_unauthenticated`] accepts. These need an unsealed vault, so
/// they are audited like any request (without a token entry).
pub(crate) fn handle_unauthenticated(core: &Core, req: &Request) -> Result<Response> {
    if req.path == "sys/decode-token" {
        return super::generate_root::decode_token_request(req);
    }
    if core.barrier.seal_config()?.is_none() {
        return Err(Error::invalid("server is not yet initialized"));
    }
    if core.barrier.is_sealed() {
        return Err(Error::Sealed);
    }
    core.audit.log_request(req, None)?;
    let outcome = match req.path.strip_prefix("sys/rekey/") {
        Some(rest) => super::rekey::handle(core, req, rest, super::rekey::Shape::Bare),
        None => super::generate_root::handle_unauthenticated(core, req),
    };
    core.audit
        .log_response(&core.barrier, req, None, &outcome)?;
    outcome
}

/// Vault's key bounds for a share: at least 16 bytes, at most a 32-byte key plus
/// the share's x coordinate.
const MIN_KEY: usize = 16;
const MAX_KEY: usize = 33;

/// The `key` field of a share-submitting request, decoded and length-checked.
pub(super) fn share_from(data: &serde_json::Map<String, Value>) -> Result<Share> {
    let key = match data.get("key") {
        Some(Value::String(s)) if !s.is_empty() => s,
        _ => {
            return Err(Error::invalid(
                "'key' must be specified in request body as JSON",
            ));
        }
    };
    let share = crate::barrier::decode_share(key)?;
    if share.len() < MIN_KEY {
        return Err(Error::invalid(format!(
            "key is shorter than minimum {MIN_KEY} bytes"
        )));
    }
    if share.len() > MAX_KEY {
        return Err(Error::invalid(format!(
            "key is longer than maximum {MAX_KEY} bytes"
        )));
    }
    Ok(share)
}

/// The `nonce` field (empty when missing, which then fails the nonce check).
pub(super) fn nonce_from(data: &serde_json::Map<String, Value>) -> &str {
    data.get("nonce").and_then(Value::as_str).unwrap_or("")
}

/// Whether `share` is already among `shares` (constant time per comparison).
pub(super) fn already_given(shares: &[Share], share: &[u8]) -> bool {
    shares
        .iter()
        .any(|s| subtle::ConstantTimeEq::ct_eq(&s[..], share).into())
}

pub(super) fn new_nonce() -> String {
    uuid::Uuid::new_v4().to_string()
}
