//! `sys/rotate/keyring` (the same operation as `sys/rotate`) and
//! `sys/rotate/keyring/config` (alias `sys/rotate/config`): when the keyring rotates
//! by itself. The config is stored behind the barrier; the interval is applied —
//! checked as requests arrive, so an idle vault rotates on its next request — and
//! `max_operations` is stored, validated and reported (Lockana counts no
//! encryptions; see docs/compat.md).

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{obj, sys_response};
use crate::kv::{opt_bool, opt_duration};
use crate::vault::Core;
use crate::{Error, Operation, Request, Response, Result};

const CONFIG_PATH: &str = "core/keyring-rotation";
/// OpenBao's bounds and default (about 2^32 * 0.9 encryptions per term).
const MAX_OPERATIONS: i64 = 3_865_470_566;
const MIN_OPERATIONS: i64 = 1_000_000;
/// The shortest automatic rotation interval Vault accepts: one day.
const MIN_INTERVAL: u64 = 24 * 3600;

/// The automatic rotation settings.
#[derive(Clone, Copy, Serialize, Deserialize, PartialEq, Debug)]
pub(crate) struct RotationConfig {
    max_operations: i64,
    /// Seconds after a term's installation that it is replaced; 0 never.
    interval: u64,
    enabled: bool,
}

impl Default for RotationConfig {
    fn default() -> Self {
        RotationConfig {
            max_operations: MAX_OPERATIONS,
            interval: 0,
            enabled: true,
        }
    }
}

/// The config as last read or written while unsealed.
#[derive(Default)]
pub(crate) struct RotationState(RwLock<Option<RotationConfig>>);

impl RotationState {
    pub(crate) fn clear(&self) {
        *self.0.write() = None;
    }
}

fn config(core: &Core) -> Result<RotationConfig> {
    if let Some(c) = *core.operator.rotation.0.read() {
        return Ok(c);
    }
    let c = match core.barrier.get(CONFIG_PATH)? {
        None => RotationConfig::default(),
        Some(b) => crate::barrier::decode_record(CONFIG_PATH, &b)?,
    };
    *core.operator.rotation.0.write() = Some(c);
    Ok(c)
}

/// `sys/rotate/keyring` and `sys/rotate`.
pub(super) fn rotate(core: &Core, req: &Request) -> Result<Response> {
    if !matches!(req.operation, Operation::Create | Operation::Update) {
        return Err(Error::UnsupportedOperation);
    }
    core.barrier.rotate(core.unix_now())?;
    Ok(Response::empty())
}

/// `sys/rotate/keyring/config` and `sys/rotate/config`.
pub(super) fn handle_config(core: &Core, req: &Request) -> Result<Response> {
    match req.operation {
        Operation::Read => {
            let c = config(core)?;
            let interval = if c.interval > 0 {
                json!(crate::clock::go_duration(c.interval))
            } else {
                json!(0)
            };
            Ok(sys_response(obj(json!({
                "max_operations": c.max_operations,
                "enabled": c.enabled,
                "interval": interval,
            }))))
        }
        Operation::Create | Operation::Update => {
            let next = apply(config(core)?, &req.data)?;
            let bytes = serde_json::to_vec(&next).map_err(|_| crate::StorageError::Corrupt)?;
            core.barrier.put(CONFIG_PATH, &bytes)?;
            *core.operator.rotation.0.write() = Some(next);
            Ok(Response::empty())
        }
        _ => Err(Error::UnsupportedOperation),
    }
}

fn apply(mut c: RotationConfig, d: &Map<String, Value>) -> Result<RotationConfig> {
    match d.get("max_operations") {
        None | Some(Value::Null) => {}
        Some(v) => {
            c.max_operations = v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                .ok_or_else(|| Error::invalid("'max_operations' must be an integer"))?;
        }
    }
    if let Some(i) = opt_duration(d, "interval")? {
        c.interval = i;
    }
    if let Some(e) = opt_bool(d, "enabled")? {
        c.enabled = e;
    }
    if c.interval != 0 && c.interval < MIN_INTERVAL {
        return Err(Error::invalid(
            "interval must be greater or equal to 24h0m0s",
        ));
    }
    if !(MIN_OPERATIONS..=MAX_OPERATIONS).contains(&c.max_operations) {
        return Err(Error::invalid(format!(
            "max_operations must be in the range [{MIN_OPERATIONS},{MAX_OPERATIONS}]"
        )));
    }
    Ok(c)
}

/// Rotates the keyring if automatic rotation is on and the active term is older
/// than the interval. Called as requests arrive; failures are logged, not served.
pub(crate) fn rotate_if_due(core: &Core) {
    let Ok(c) = config(core) else { return };
    if !c.enabled || c.interval == 0 {
        return;
    }
    let Ok((_, installed)) = core.barrier.key_status() else {
        return;
    };
    let now = core.unix_now();
    if now < installed.saturating_add(c.interval) {
        return;
    }
    // Two requests may see the term as due at once; only one rotates.
    let _l = core.lifecycle.lock();
    match core.barrier.key_status() {
        Ok((_, again)) if now >= again.saturating_add(c.interval) => {
            match core.barrier.rotate(now) {
                Ok((term, _)) => tracing::info!(term, "keyring rotated automatically"),
                Err(e) => tracing::error!(error = %e, "automatic keyring rotation failed"),
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_config_bounds_are_vaults() {
        let d = |v: Value| v.as_object().unwrap().clone();
        let c = RotationConfig::default();
        assert!(apply(c, &d(json!({"interval": "1h"}))).is_err());
        assert!(apply(c, &d(json!({"max_operations": 10}))).is_err());
        assert!(apply(c, &d(json!({"max_operations": 4_000_000_000u64}))).is_err());
        let ok = apply(
            c,
            &d(json!({"interval": "48h", "enabled": false, "max_operations": 2_000_000})),
        )
        .unwrap();
        assert_eq!(
            (ok.interval, ok.enabled, ok.max_operations),
            (172_800, false, 2_000_000)
        );
        assert_eq!(apply(ok, &d(json!({"interval": 0}))).unwrap().interval, 0);
    }
}
