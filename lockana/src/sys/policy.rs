//! `sys/policies/acl/*`, legacy `sys/policy/*` and `sys/capabilities*`.

use serde_json::{Map, Value, json};

use super::{obj, sys_response};
use crate::auth::token_api::capabilities_answer;
use crate::policy::{Acl, normalize_name};
use crate::vault::Core;
use crate::{ClientToken, Error, Operation, Request, Response, Result};

/// The policy text from `policy` (or legacy `rules`), plain or base64.
fn policy_text(d: &Map<String, Value>) -> Result<String> {
    let raw = match d.get("policy").or_else(|| d.get("rules")) {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => return Err(Error::invalid("'policy' parameter not supplied or empty")),
    };
    // Vault accepts base64-encoded policies too.
    use base64::Engine as _;
    if !raw.contains(['{', '"', ' ', '\n'])
        && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(raw.trim())
        && let Ok(text) = String::from_utf8(bytes)
    {
        return Ok(text);
    }
    Ok(raw)
}

/// `sys/policies/acl[/<name>]` (`legacy = false`) and `sys/policy[/<name>]` (`legacy = true`).
pub(crate) fn handle(
    core: &Core,
    req: &Request,
    name: Option<&str>,
    legacy: bool,
) -> Result<Response> {
    let op = req.operation;
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        return match (op, legacy) {
            (Operation::List, false) => crate::kv::list_response(core.policies.names()),
            (Operation::Read, true) => {
                let names = core.policies.names();
                let mut r = sys_response(obj(json!({"policies": names, "keys": names})));
                r.format = crate::ResponseFormat::EnvelopeWithTopLevelData;
                Ok(r)
            }
            (Operation::Read, false) => crate::kv::list_response(core.policies.names()),
            _ => Err(Error::UnsupportedOperation),
        }
        .map(|mut r| {
            r.mount_type = "system".into();
            r
        });
    };
    let name = normalize_name(name)?;
    match op {
        Operation::Read => {
            if name == "root" {
                let mut r = sys_response(obj(json!({"name": "root", "policy": "", "rules": ""})));
                r.format = crate::ResponseFormat::EnvelopeWithTopLevelData;
                return Ok(r);
            }
            let p = core.policies.get(&name).ok_or(Error::NotFound)?;
            let mut r = if legacy {
                sys_response(obj(json!({"name": p.name, "rules": p.raw})))
            } else {
                sys_response(obj(json!({"name": p.name, "policy": p.raw})))
            };
            // Only the legacy endpoint copies the data to the top level (as Vault).
            if legacy {
                r.format = crate::ResponseFormat::EnvelopeWithTopLevelData;
            }
            Ok(r)
        }
        Operation::Create | Operation::Update => {
            core.policies
                .put(&core.barrier, &name, &policy_text(&req.data)?)?;
            Ok(Response::empty())
        }
        Operation::Delete => {
            core.policies.delete(&core.barrier, &name)?;
            Ok(Response::empty())
        }
        _ => Err(Error::UnsupportedOperation),
    }
}

fn paths_param(d: &Map<String, Value>) -> Result<Vec<String>> {
    let v = crate::auth::opt_strings(d, "paths")?
        .or(crate::auth::opt_strings(d, "path")?)
        .unwrap_or_default();
    if v.is_empty() {
        return Err(Error::invalid("missing 'paths'"));
    }
    Ok(v)
}

/// `sys/capabilities`, `sys/capabilities-self`, `sys/capabilities-accessor`.
pub(crate) fn capabilities(
    core: &Core,
    req: &Request,
    which: &str,
    caller_acl: &Acl,
) -> Result<Response> {
    if !matches!(req.operation, Operation::Update | Operation::Create) {
        return Err(Error::UnsupportedOperation);
    }
    let d = &req.data;
    let paths = paths_param(d)?;
    let acl = match which {
        "capabilities-self" => return Ok(capabilities_answer(caller_acl, &paths)),
        "capabilities" => {
            let t = match d.get("token") {
                Some(Value::String(s)) if !s.is_empty() => ClientToken::new(s.clone()),
                _ => return Err(Error::invalid("missing 'token'")),
            };
            let e = core
                .tokens
                .lookup(&core.barrier, &t, core.now())?
                .ok_or(Error::BadToken)?;
            core.policies.acl(&e.policies)
        }
        _ => {
            let a = match d.get("accessor") {
                Some(Value::String(s)) if !s.is_empty() => s,
                _ => return Err(Error::invalid("missing 'accessor'")),
            };
            let e = core
                .tokens
                .lookup_accessor(&core.barrier, a, core.now())?
                .ok_or_else(|| Error::invalid("invalid accessor"))?;
            core.policies.acl(&e.policies)
        }
    };
    Ok(capabilities_answer(&acl, &paths))
}
