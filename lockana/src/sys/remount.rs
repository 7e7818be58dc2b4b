//! `sys/remount` and `sys/remount/status/<id>`: moving a secrets engine or an auth
//! method to another path. Data is keyed by the mount's UUID, so a move is one
//! durable mount-table commit; it is finished when the answer arrives, and the
//! status reports `success` at once (OpenBao moves in the background and reports
//! `in-progress` first).

use std::collections::VecDeque;

use parking_lot::Mutex;
use serde_json::{Value, json};

use super::{obj, sys_response};
use crate::vault::Core;
use crate::{Error, Operation, Request, Response, Result};

/// How many finished moves `sys/remount/status` remembers (memory stays bounded).
const KEPT: usize = 256;

/// Recent moves by migration id: (id, source, target, status).
#[derive(Default)]
pub(crate) struct Migrations(Mutex<VecDeque<(String, String, String, &'static str)>>);

/// Paths no secrets engine moves from or to.
const PROTECTED_MOUNTS: [&str; 6] = [
    "audit/",
    "auth/",
    "sys/",
    "cubbyhole/",
    "identity/",
    "lockana/",
];

fn sanitize(p: &str) -> String {
    format!("{}/", p.trim_matches('/'))
}

/// `PUT sys/remount {from, to}`.
pub(super) fn remount(core: &Core, req: &Request) -> Result<Response> {
    if !matches!(req.operation, Operation::Create | Operation::Update) {
        return Err(Error::UnsupportedOperation);
    }
    let field = |n: &str| req.data.get(n).and_then(Value::as_str).unwrap_or("");
    let (from, to) = (field("from"), field("to"));
    if from.is_empty() || to.is_empty() {
        return Err(Error::invalid(
            "both 'from' and 'to' path must be specified as a string",
        ));
    }
    if from.starts_with(' ') || from.ends_with(' ') {
        return Err(Error::invalid(
            "'from' path cannot contain trailing whitespace",
        ));
    }
    if to.starts_with(' ') || to.ends_with(' ') {
        return Err(Error::invalid(
            "'to' path cannot contain trailing whitespace",
        ));
    }
    let (from, to) = (sanitize(from), sanitize(to));
    if to == "/" {
        return Err(Error::invalid(format!(
            "invalid destination mount path \"{to}\""
        )));
    }
    if let Some(from_auth) = from.strip_prefix("auth/") {
        let Some(to_auth) = to.strip_prefix("auth/") else {
            return Err(Error::invalid(format!(
                "cannot remount auth mount to non-auth mount \"{to}\""
            )));
        };
        if from_auth.starts_with("token/") {
            return Err(Error::invalid(format!("cannot remount \"{from}\"")));
        }
        if to_auth.starts_with("token/") {
            return Err(Error::invalid(format!(
                "cannot remount to destination \"{to}\""
            )));
        }
        let to_auth = crate::auth::normalize_auth_path(to_auth)?;
        {
            let mut table = core.auth_mounts.write();
            if table.get(from_auth).is_none() {
                return Err(Error::invalid(format!("no matching mount at \"{from}\"")));
            }
            table.rename(&core.barrier, from_auth, &to_auth)?;
        }
        // The method's tokens are its leases: a move revokes them, as in Vault.
        core.tokens.revoke_by_path_prefix(&core.barrier, &from)?;
    } else {
        for p in PROTECTED_MOUNTS {
            if from.starts_with(p) {
                return Err(Error::invalid(format!("cannot remount \"{from}\"")));
            }
            if to.starts_with(p) {
                return Err(Error::invalid(format!(
                    "cannot remount to destination {to}"
                )));
            }
        }
        let to = crate::mounts::normalize_mount_path(&to)?;
        // A project's policy and env path name its mount: moving the mount would cut the
        // project off from its variables, so say which projects to move first.
        let projects = crate::projects::names_on_mount(core, &from)?;
        if !projects.is_empty() {
            return Err(Error::invalid(format!(
                "cannot remount \"{from}\": Lockana projects keep their variables there ({}); delete them or point them at another mount first",
                projects.join(", ")
            )));
        }
        let mut table = core.mounts.write();
        if table.get(&from).is_none() {
            return Err(Error::invalid(format!("no matching mount at \"{from}\"")));
        }
        table.rename(&core.barrier, &from, &to)?;
        drop(table);
        core.kv_meta.clear();
    }
    let id = uuid::Uuid::new_v4().to_string();
    tracing::info!(migration_id = %id, from = %from, to = %to, "mount moved");
    let mut kept = core.operator.migrations.0.lock();
    if kept.len() >= KEPT {
        kept.pop_front();
    }
    kept.push_back((id.clone(), from, to, "success"));
    Ok(sys_response(obj(json!({"migration_id": id}))))
}

/// `GET sys/remount/status/<id>`: 404 for an unknown id, as in OpenBao.
pub(super) fn status(core: &Core, req: &Request, id: &str) -> Result<Response> {
    if req.operation != Operation::Read {
        return Err(Error::UnsupportedOperation);
    }
    let kept = core.operator.migrations.0.lock();
    let (id, from, to, state) = kept.iter().find(|m| m.0 == id).ok_or(Error::NotFound)?;
    Ok(sys_response(obj(json!({
        "migration_id": id,
        "migration_info": {"source_mount": from, "target_mount": to, "status": state},
    }))))
}
