//! `sys/auth`: enabling, tuning and disabling auth methods.

use serde_json::{Map, Value, json};

use super::{obj, sys_response, token_auth_json};
use crate::auth::{new_entry, normalize_auth_path};
use crate::mounts::apply_tune;
use crate::vault::Core;
use crate::{Error, Operation, Request, Response, ResponseFormat, Result};

/// Every auth mount, `token/` included.
pub(crate) fn auth_mounts_json(core: &Core) -> Map<String, Value> {
    let mut m = Map::new();
    for e in core.auth_mounts.read().entries() {
        m.insert(e.path.clone(), auth_entry_json(e));
    }
    m.insert("token/".into(), token_auth_json(core));
    m
}

/// An auth mount as Vault lists it: a mount entry plus the auth-only fields.
fn auth_entry_json(e: &crate::mounts::MountEntry) -> Value {
    let mut v = e.to_json();
    if let Value::Object(m) = &mut v {
        m.insert("deprecation_status".into(), json!("supported"));
        if m.get("options").is_none_or(Value::is_null) {
            m.insert("options".into(), json!({}));
        }
        if let Some(Value::Object(c)) = m.get_mut("config") {
            c.entry("token_type").or_insert(json!("default-service"));
        }
    }
    v
}

pub(crate) fn list(core: &Core) -> Response {
    let mut r = sys_response(auth_mounts_json(core));
    r.format = ResponseFormat::EnvelopeWithTopLevelData;
    r
}

/// `sys/auth/<path>` and `sys/auth/<path>/tune`.
pub(crate) fn handle(core: &Core, req: &Request, p: &str) -> Result<Response> {
    let d = &req.data;
    if let Some(mount) = p.strip_suffix("/tune").or_else(|| p.strip_suffix("/tune/")) {
        let path = normalize_auth_path(mount)?;
        let mut table = core.auth_mounts.write();
        let mut entry = table.get(&path).cloned().ok_or_else(|| {
            Error::invalid(format!("cannot fetch sysview for path \"auth/{path}\""))
        })?;
        return match req.operation {
            Operation::Read => Ok(super::tune_response(
                &core.ttls,
                &entry,
                "token_type",
                json!("default-service"),
            )),
            Operation::Create | Operation::Update => {
                // `force_no_cache` is set at mount time only; Vault's tune ignores it.
                let mut tune = d.clone();
                tune.remove("force_no_cache");
                apply_tune(&mut entry.config, &Value::Object(tune))?;
                if let Some(desc) = crate::fields::opt_string(d, "description")? {
                    entry.description = desc;
                }
                table.update(&core.barrier, entry)?;
                Ok(Response::empty())
            }
            _ => Err(Error::UnsupportedOperation),
        };
    }
    match req.operation {
        Operation::Read => {
            let path = normalize_auth_path(p)?;
            let table = core.auth_mounts.read();
            let e = table
                .get(&path)
                .ok_or_else(|| Error::invalid(format!("no auth method at \"{path}\"")))?;
            Ok(sys_response(obj(auth_entry_json(e))))
        }
        Operation::Create | Operation::Update => {
            let entry = new_entry(p, d)?;
            core.enable_mount(&core.auth_mounts, entry)?;
            Ok(Response::empty())
        }
        Operation::Delete => {
            let path = normalize_auth_path(p)?;
            if core.disable_mount(&core.auth_mounts, &path)? {
                // Tokens the method issued go with it, as in Vault.
                core.tokens
                    .revoke_by_path_prefix(&core.barrier, &format!("auth/{path}"))?;
            }
            Ok(Response::empty())
        }
        _ => Err(Error::UnsupportedOperation),
    }
}
