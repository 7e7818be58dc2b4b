//! Response wrapping: an answer handed over as a single-use token instead
//! (`X-Vault-Wrap-TTL`), and `sys/wrapping/{wrap,unwrap,lookup,rewrap}`.
//!
//! The wrapped answer is stored behind the barrier under the wrapping token's hash;
//! unwrapping consumes the token and deletes the answer, so it can be read once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::auth::token::{NewToken, TokenEntry};
use crate::barrier::Op;
use crate::clock::rfc3339;
use crate::vault::Core;
use crate::{Auth, ClientToken, Error, Request, Response, Result, WrapInfo};

/// The policy name that marks wrapping tokens; such a token can only be unwrapped.
pub(crate) const WRAPPING_POLICY: &str = "response-wrapping";
/// TTL of `sys/wrapping/wrap` answers when the client gives none (Vault: 5 minutes).
const DEFAULT_WRAP_TTL: u64 = 300;
const STORE_PREFIX: &str = "sys/wrapping/response/";

#[derive(Serialize, Deserialize)]
struct Stored {
    data: Option<Map<String, Value>>,
    auth: Option<StoredAuth>,
    warnings: Vec<String>,
    lease_duration: u64,
    renewable: bool,
    mount_type: String,
    creation_path: String,
    creation_time: String,
    ttl: u64,
}

#[derive(Serialize, Deserialize)]
struct StoredAuth {
    client_token: String,
    accessor: String,
    policies: Vec<String>,
    metadata: Option<BTreeMap<String, String>>,
    lease_duration: u64,
    renewable: bool,
    orphan: bool,
    num_uses: u64,
}

pub(crate) fn is_wrapping_token(entry: &TokenEntry) -> bool {
    entry.policies.len() == 1 && entry.policies[0] == WRAPPING_POLICY
}

/// Replaces `resp` by a wrapping token that holds it.
pub(crate) fn wrap(core: &Core, resp: Response, ttl: u64, path: &str) -> Result<Response> {
    let ttl = if ttl == 0 { DEFAULT_WRAP_TTL } else { ttl };
    let now = core.now();
    let wrapped_accessor = resp
        .auth
        .as_ref()
        .map(|a| a.accessor.clone())
        .unwrap_or_default();
    let stored = Stored {
        data: resp.data,
        auth: resp.auth.map(|a| StoredAuth {
            client_token: a
                .client_token
                .map(|t| t.expose().to_owned())
                .unwrap_or_default(),
            accessor: a.accessor,
            policies: a.policies,
            metadata: a.metadata,
            lease_duration: a.lease_duration,
            renewable: a.renewable,
            orphan: a.orphan,
            num_uses: a.num_uses,
        }),
        warnings: resp.warnings,
        lease_duration: resp.lease_duration,
        renewable: resp.renewable,
        mount_type: resp.mount_type,
        creation_path: path.to_owned(),
        creation_time: rfc3339(now),
        ttl,
    };
    let t = NewToken {
        policies: vec![WRAPPING_POLICY.into()],
        display_name: "response-wrapping".into(),
        path: path.to_owned(),
        ttl,
        explicit_max_ttl: ttl,
        num_uses: 1,
        renewable: false,
        ..Default::default()
    };
    let (token, entry) = core.tokens.create(&core.barrier, now, t)?;
    let bytes = zeroize::Zeroizing::new(
        serde_json::to_vec(&stored).map_err(|_| crate::StorageError::Corrupt)?,
    );
    core.barrier.apply(vec![Op::Put(
        format!("{STORE_PREFIX}{}", entry.hash),
        bytes.to_vec(),
    )])?;
    let mut out = Response::empty();
    out.wrap_info = Some(WrapInfo {
        token: Some(token),
        accessor: entry.accessor,
        ttl,
        creation_time: stored.creation_time,
        creation_path: path.to_owned(),
        wrapped_accessor,
    });
    Ok(out)
}

/// The wrapping token a request names: `token` in the body, else the request's token.
fn wrapping_token(core: &Core, req: &Request) -> Result<(std::sync::Arc<TokenEntry>, String)> {
    let presented = match req.data.get("token") {
        Some(Value::String(s)) if !s.is_empty() => ClientToken::new(s.clone()),
        _ => req.token.clone().ok_or_else(invalid)?,
    };
    let entry = core
        .tokens
        .lookup(&core.barrier, &presented, core.now())?
        .ok_or_else(invalid)?;
    if !is_wrapping_token(&entry) {
        return Err(invalid());
    }
    let hash = entry.hash.clone();
    Ok((entry, hash))
}

fn invalid() -> Error {
    Error::invalid("wrapping token is not valid or does not exist")
}

fn load(core: &Core, hash: &str) -> Result<Stored> {
    let key = format!("{STORE_PREFIX}{hash}");
    let bytes = core.barrier.get(&key)?.ok_or_else(invalid)?;
    crate::barrier::decode_record(&key, &bytes)
}

/// `sys/wrapping/unwrap`: the wrapped answer, once.
pub(crate) fn unwrap(core: &Core, req: &Request) -> Result<Response> {
    let (_, hash) = wrapping_token(core, req)?;
    let stored = load(core, &hash)?;
    core.tokens.revoke_tree(&core.barrier, &hash)?;
    core.barrier
        .apply(vec![Op::Delete(format!("{STORE_PREFIX}{hash}"))])?;
    let mut r = Response::empty();
    r.data = stored.data;
    r.warnings = stored.warnings;
    r.lease_duration = stored.lease_duration;
    r.renewable = stored.renewable;
    r.mount_type = stored.mount_type;
    r.auth = stored.auth.map(|a| Auth {
        client_token: Some(ClientToken::new(a.client_token)),
        accessor: a.accessor,
        token_policies: a.policies.clone(),
        policies: a.policies,
        metadata: a.metadata,
        lease_duration: a.lease_duration,
        renewable: a.renewable,
        entity_id: String::new(),
        token_type: "service".into(),
        orphan: a.orphan,
        num_uses: a.num_uses,
        mfa_requirement: None,
    });
    Ok(r)
}

/// `sys/wrapping/lookup`: what a wrapping token holds, without using it.
pub(crate) fn lookup(core: &Core, req: &Request) -> Result<Response> {
    let (_, hash) = wrapping_token(core, req)?;
    let stored = load(core, &hash)?;
    let mut r = Response::with_data(
        match json!({
            "creation_path": stored.creation_path,
            "creation_time": stored.creation_time,
            "creation_ttl": stored.ttl,
        }) {
            Value::Object(m) => m,
            _ => Map::new(),
        },
    );
    r.mount_type = "system".into();
    Ok(r)
}

/// `sys/wrapping/rewrap`: the same answer under a new wrapping token.
pub(crate) fn rewrap(core: &Core, req: &Request) -> Result<Response> {
    let (_, hash) = wrapping_token(core, req)?;
    let stored = load(core, &hash)?;
    let (ttl, path) = (stored.ttl, stored.creation_path.clone());
    let inner = unwrap(core, req)?;
    wrap(core, inner, ttl, &path)
}

/// `sys/wrapping/wrap`: wraps the request body itself, even an empty one (Vault does).
/// The endpoint exists only for wrapping, so a request without `X-Vault-Wrap-TTL` is
/// refused, as Vault refuses it.
pub(crate) fn wrap_data(core: &Core, req: &Request) -> Result<Response> {
    let ttl = match req.wrap_ttl {
        Some(ttl) if ttl > 0 => ttl,
        _ => {
            return Err(Error::invalid(
                "endpoint requires response wrapping to be used",
            ));
        }
    };
    let r = Response::with_data(req.data.clone());
    wrap(core, r, ttl, "sys/wrapping/wrap")
}
