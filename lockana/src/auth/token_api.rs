//! `auth/token/...`: Vault's token store API.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::opt_strings;
use super::token::{NewToken, TokenEntry};
use crate::kv::{opt_bool, opt_duration, opt_u64};
use crate::policy::{Acl, Caps, normalize_name};
use crate::vault::Core;
use crate::{ClientToken, Error, Operation, Request, Response, Result};

fn token_response(data: Map<String, Value>) -> Response {
    let mut r = Response::with_data(data);
    r.mount_type = "token".into();
    r
}

fn auth_response(core: &Core, token: Option<ClientToken>, entry: &TokenEntry) -> Response {
    let mut r = Response::empty();
    r.auth = Some(entry.to_auth(token, core.unix_now()));
    r.mount_type = "token".into();
    r
}

fn str_param<'a>(d: &'a Map<String, Value>, name: &str) -> Result<&'a str> {
    match d.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(Error::invalid(format!("missing '{name}'"))),
    }
}

/// Resolves the token named in the body (`token`), refusing unknown ones as Vault does.
fn named_token(core: &Core, d: &Map<String, Value>) -> Result<(ClientToken, Arc<TokenEntry>)> {
    let t = ClientToken::new(str_param(d, "token")?);
    let e = core
        .tokens
        .lookup(&core.barrier, &t, core.now())?
        .ok_or(Error::BadToken)?;
    Ok((t, e))
}

fn by_accessor(core: &Core, d: &Map<String, Value>) -> Result<Arc<TokenEntry>> {
    let a = str_param(d, "accessor")?;
    core.tokens
        .lookup_accessor(&core.barrier, a, core.now())?
        .ok_or_else(|| Error::invalid("invalid accessor"))
}

pub(crate) fn handle(
    core: &Core,
    req: &Request,
    rest: &str,
    caller: &TokenEntry,
    acl: &Acl,
) -> Result<Response> {
    let d = &req.data;
    let op = req.operation;
    let write = matches!(op, Operation::Update | Operation::Create);
    let now = core.now();
    match rest {
        "create" | "create-orphan" if write => {
            create(core, req, caller, acl, rest == "create-orphan")
        }
        "lookup-self" if matches!(op, Operation::Read) || write => Ok(token_response(
            caller.lookup_data(req.token.as_ref(), core.unix_now()),
        )),
        "lookup" if matches!(op, Operation::Read) || write => {
            let (t, e) = named_token(core, d)?;
            Ok(token_response(e.lookup_data(Some(&t), core.unix_now())))
        }
        "lookup-accessor" if write => {
            let e = by_accessor(core, d)?;
            Ok(token_response(e.lookup_data(None, core.unix_now())))
        }
        "renew-self" if write => {
            let inc = opt_duration(d, "increment")?.unwrap_or(0);
            let e = core.tokens.renew(&core.barrier, caller, inc, now)?;
            Ok(auth_response(core, None, &e))
        }
        "renew" if write => {
            let inc = opt_duration(d, "increment")?.unwrap_or(0);
            let (_, e) = named_token(core, d)?;
            let e = core.tokens.renew(&core.barrier, &e, inc, now)?;
            Ok(auth_response(core, None, &e))
        }
        "renew-accessor" if write => {
            let inc = opt_duration(d, "increment")?.unwrap_or(0);
            let e = by_accessor(core, d)?;
            let e = core.tokens.renew(&core.barrier, &e, inc, now)?;
            Ok(auth_response(core, None, &e))
        }
        "revoke-self" if write => {
            core.tokens.revoke_tree(&core.barrier, &caller.hash)?;
            Ok(Response::empty())
        }
        "revoke" if write => {
            // Revoking an unknown token is not an error in Vault.
            let t = str_param(d, "token")?;
            let hash = core.tokens.hash_of(t)?;
            core.tokens.revoke_tree(&core.barrier, &hash)?;
            Ok(Response::empty())
        }
        "revoke-accessor" if write => {
            let e = by_accessor(core, d)?;
            core.tokens.revoke_tree(&core.barrier, &e.hash)?;
            Ok(Response::empty())
        }
        "revoke-orphan" if write => {
            let t = str_param(d, "token")?;
            let hash = core.tokens.hash_of(t)?;
            core.tokens.revoke_orphan(&core.barrier, &hash)?;
            Ok(Response::empty())
        }
        "accessors" | "accessors/" if matches!(op, Operation::List) => {
            let keys = core.tokens.accessors(&core.barrier)?;
            Ok(token_response(
                crate::kv::list_response(keys)?.data.unwrap_or_default(),
            ))
        }
        "lookup-self" | "lookup" | "lookup-accessor" | "renew-self" | "renew"
        | "renew-accessor" | "revoke-self" | "revoke" | "revoke-accessor" | "revoke-orphan"
        | "create" | "create-orphan" => Err(Error::UnsupportedOperation),
        _ => Err(Error::NoRoute(req.path.clone())),
    }
}

fn create(
    core: &Core,
    req: &Request,
    caller: &TokenEntry,
    acl: &Acl,
    orphan_path: bool,
) -> Result<Response> {
    let d = &req.data;
    let privileged = acl.is_root() || acl.allows(&req.path, Caps::SUDO);
    if let Some(t) = d.get("type").and_then(Value::as_str)
        && !matches!(t, "service" | "default" | "")
    {
        return Err(Error::invalid(
            "Lockana issues service tokens only; omit 'type' or use \"service\"",
        ));
    }
    let requested = match opt_strings(d, "policies")? {
        Some(p) => p
            .iter()
            .map(|n| normalize_name(n))
            .collect::<Result<Vec<_>>>()?,
        None => caller.policies.clone(),
    };
    let mut policies: Vec<String> = Vec::new();
    for p in requested {
        if !policies.contains(&p) {
            policies.push(p);
        }
    }
    let no_default = opt_bool(d, "no_default_policy")?.unwrap_or(false);
    let has_root = policies.iter().any(|p| p == "root");
    if !acl.is_root() {
        if has_root {
            return Err(Error::invalid(
                "root tokens may only be created by a root token",
            ));
        }
        if policies
            .iter()
            .any(|p| p != "default" && !caller.policies.contains(p))
        {
            return Err(Error::invalid("child policies must be subset of parent"));
        }
    }
    if !has_root && !no_default && !policies.iter().any(|p| p == "default") {
        policies.push("default".into());
    }
    policies.sort();
    let no_parent = orphan_path || opt_bool(d, "no_parent")?.unwrap_or(false);
    if no_parent && !privileged {
        return Err(Error::invalid(
            "root or sudo privileges required to create orphan token",
        ));
    }
    let id = match d.get("id") {
        Some(Value::String(s)) if !s.is_empty() => {
            if !acl.is_root() {
                return Err(Error::invalid(
                    "root or sudo privileges required to specify token id",
                ));
            }
            Some(s.clone())
        }
        _ => None,
    };
    let meta = match d.get("meta") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(
            m.iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(Error::invalid("'meta' values must be strings")),
                })
                .collect::<Result<BTreeMap<_, _>>>()?,
        ),
        Some(_) => return Err(Error::invalid("'meta' must be an object of strings")),
    };
    let display_name = match d.get("display_name").and_then(Value::as_str) {
        Some(n) if !n.trim().is_empty() => format!("token-{}", n.trim()),
        _ => "token".into(),
    };
    let t = NewToken {
        id,
        policies,
        meta,
        display_name,
        path: if orphan_path {
            "auth/token/create-orphan".into()
        } else {
            "auth/token/create".into()
        },
        ttl: opt_duration(d, "ttl")?.unwrap_or(0),
        explicit_max_ttl: opt_duration(d, "explicit_max_ttl")?.unwrap_or(0),
        max_ttl: 0,
        period: opt_duration(d, "period")?.unwrap_or(0),
        num_uses: opt_u64(d, "num_uses")?.unwrap_or(0),
        renewable: opt_bool(d, "renewable")?.unwrap_or(true),
        parent: if no_parent {
            String::new()
        } else {
            caller.hash.clone()
        },
        entity_id: String::new(),
    };
    let (token, entry) = core.tokens.create(&core.barrier, core.now(), t)?;
    Ok(auth_response(core, Some(token), &entry))
}

/// `sys/capabilities*` answer for a token and paths.
pub(crate) fn capabilities_answer(acl: &Acl, paths: &[String]) -> Response {
    let mut m = Map::new();
    let mut all: Vec<String> = Vec::new();
    for p in paths {
        let caps = acl.capability_names(p.trim_start_matches('/'));
        for c in &caps {
            if !all.contains(c) {
                all.push(c.clone());
            }
        }
        m.insert(p.clone(), json!(caps));
    }
    all.sort();
    // As Vault: the legacy `capabilities` key only for a single path, and the map
    // copied to the top level.
    if paths.len() == 1 {
        m.insert("capabilities".into(), json!(all));
    }
    let mut r = Response::with_data(m);
    r.mount_type = "system".into();
    r.format = crate::ResponseFormat::EnvelopeWithTopLevelData;
    r
}
