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

/// The token store's root-protected paths (relative to `auth/token/`).
pub(crate) const SPECIAL: crate::engine::SpecialPaths = crate::engine::SpecialPaths {
    unauthenticated: &[],
    root: &["revoke-orphan*", "accessors*", "create-orphan"],
    root_writes: &[],
};

fn token_response(data: Map<String, Value>) -> Response {
    let mut r = Response::with_data(data);
    r.mount_type = "token".into();
    r
}

fn auth_response(token: Option<ClientToken>, entry: &TokenEntry) -> Response {
    let mut r = Response::empty();
    r.auth = Some(entry.to_auth(token));
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
        .ok_or_else(|| Error::refused("invalid accessor"))
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
        "roles" | "roles/" if matches!(op, Operation::List) => {
            let keys = core.barrier.list(ROLE_PREFIX)?;
            Ok(token_response(
                crate::kv::list_response(keys)?.data.unwrap_or_default(),
            ))
        }
        _ if rest.starts_with("roles/") => roles(core, req, &rest["roles/".len()..]),
        _ if rest.starts_with("create/") && write => {
            let name = &rest["create/".len()..];
            let role = load_role(core, name)?
                .ok_or_else(|| Error::invalid(format!("unknown role {name}")))?;
            create(core, req, caller, acl, false, Some((name, role)))
        }
        "create" | "create-orphan" if write => {
            create(core, req, caller, acl, rest == "create-orphan", None)
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
            // Vault gives the renewed token back (clients read it from `auth`);
            // only renew-accessor leaves it out, since its caller may not hold it.
            Ok(auth_response(req.token.clone(), &e))
        }
        "renew" if write => {
            let inc = opt_duration(d, "increment")?.unwrap_or(0);
            // Vault's renew names an unknown token differently from lookup's `bad token`.
            let (t, e) = named_token(core, d).map_err(|e| match e {
                Error::BadToken => Error::invalid("token not found"),
                other => other,
            })?;
            let e = core.tokens.renew(&core.barrier, &e, inc, now)?;
            Ok(auth_response(Some(t), &e))
        }
        "renew-accessor" if write => {
            let inc = opt_duration(d, "increment")?.unwrap_or(0);
            let e = by_accessor(core, d)?;
            let e = core.tokens.renew(&core.barrier, &e, inc, now)?;
            Ok(auth_response(None, &e))
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
            let a = str_param(d, "accessor")?;
            // Like revoking an unknown token, not an error: Vault answers with a warning.
            let Some(e) = core.tokens.lookup_accessor(&core.barrier, a, now)? else {
                let mut r = Response::empty();
                r.warnings = vec!["No token found with this accessor".into()];
                return Ok(r);
            };
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
    role: Option<(&str, Role)>,
) -> Result<Response> {
    let d = &req.data;
    // As Vault: children would let a limited-use token escape its count.
    if caller.num_uses > 0 {
        return Err(Error::invalid(
            "restricted use token cannot generate child tokens",
        ));
    }
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
        None => match &role {
            Some((_, r)) if !r.allowed_policies.is_empty() => r
                .allowed_policies
                .iter()
                .filter(|p| !r.disallowed_policies.contains(p))
                .cloned()
                .collect(),
            _ => caller.policies.clone(),
        },
    };
    let mut policies: Vec<String> = Vec::new();
    for p in requested {
        if !policies.contains(&p) {
            policies.push(p);
        }
    }
    let no_default = opt_bool(d, "no_default_policy")?.unwrap_or(false)
        || role
            .as_ref()
            .is_some_and(|(_, r)| r.token_no_default_policy);
    let has_root = policies.iter().any(|p| p == "root");
    if let Some((_, r)) = &role {
        // A role, not the parent, bounds the policies: that is what roles are for.
        if policies.iter().any(|p| r.disallowed_policies.contains(p)) {
            return Err(Error::invalid(
                "token policies include a policy the role disallows",
            ));
        }
        if !r.allowed_policies.is_empty()
            && policies
                .iter()
                .any(|p| p != "default" && !r.allowed_policies.contains(p))
        {
            return Err(Error::invalid(
                "token policies must be a subset of the role's allowed_policies",
            ));
        }
        if has_root && !acl.is_root() {
            return Err(Error::invalid(
                "root tokens may only be created by a root token",
            ));
        }
    } else if !acl.is_root() {
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
    let role_orphan = role.as_ref().is_some_and(|(_, r)| r.orphan);
    let no_parent = orphan_path || role_orphan || opt_bool(d, "no_parent")?.unwrap_or(false);
    if no_parent && !privileged && !role_orphan {
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
    let path = match (&role, orphan_path) {
        (Some((name, r)), _) if !r.path_suffix.is_empty() => {
            format!("auth/token/create/{name}/{}", r.path_suffix)
        }
        (Some((name, _)), _) => format!("auth/token/create/{name}"),
        (None, true) => "auth/token/create-orphan".into(),
        (None, false) => "auth/token/create".into(),
    };
    let r = role.as_ref().map(|(_, r)| r);
    // The role's limits win over the request's: a period or explicit max it sets holds.
    let pick = |asked: u64, role_value: u64| if role_value > 0 { role_value } else { asked };
    let t = NewToken {
        id,
        policies,
        meta,
        display_name,
        path,
        ttl: opt_duration(d, "ttl")?.unwrap_or(0),
        explicit_max_ttl: pick(
            opt_duration(d, "explicit_max_ttl")?.unwrap_or(0),
            r.map_or(0, |r| r.token_explicit_max_ttl),
        ),
        max_ttl: 0,
        period: pick(
            opt_duration(d, "period")?.unwrap_or(0),
            r.map_or(0, |r| r.token_period),
        ),
        num_uses: pick(
            opt_u64(d, "num_uses")?.unwrap_or(0),
            r.map_or(0, |r| r.token_num_uses),
        ),
        renewable: opt_bool(d, "renewable")?.unwrap_or(true) && r.is_none_or(|r| r.renewable),
        parent: if no_parent {
            String::new()
        } else {
            caller.hash.clone()
        },
        entity_id: String::new(),
        role: role
            .as_ref()
            .map(|(name, _)| (*name).to_owned())
            .unwrap_or_default(),
    };
    let (token, entry) = core.tokens.create(&core.barrier, core.now(), t)?;
    Ok(auth_response(Some(token), &entry))
}

const ROLE_PREFIX: &str = "sys/token/role/";

/// A token role: what `auth/token/create/<role>` may hand out.
#[derive(serde::Serialize, serde::Deserialize, Default)]
pub(crate) struct Role {
    allowed_policies: Vec<String>,
    disallowed_policies: Vec<String>,
    orphan: bool,
    renewable: bool,
    path_suffix: String,
    token_explicit_max_ttl: u64,
    token_period: u64,
    token_num_uses: u64,
    token_no_default_policy: bool,
}

fn role_name(name: &str) -> Result<String> {
    let n = name.trim().to_ascii_lowercase();
    if n.is_empty() || n.contains('/') || n.chars().any(char::is_control) {
        return Err(Error::invalid("invalid role name"));
    }
    Ok(n)
}

fn load_role(core: &Core, name: &str) -> Result<Option<Role>> {
    let key = format!("{ROLE_PREFIX}{}", role_name(name)?);
    match core.barrier.get(&key)? {
        None => Ok(None),
        Some(b) => Ok(Some(crate::barrier::decode_record(&key, &b)?)),
    }
}

/// `auth/token/roles/<name>`: read, write, delete.
fn roles(core: &Core, req: &Request, name: &str) -> Result<Response> {
    let name = role_name(name)?;
    let key = format!("{ROLE_PREFIX}{name}");
    match req.operation {
        Operation::Read => {
            let r = load_role(core, &name)?.ok_or(Error::NotFound)?;
            let v = json!({
                "name": name,
                "allowed_policies": r.allowed_policies,
                "disallowed_policies": r.disallowed_policies,
                "orphan": r.orphan,
                "renewable": r.renewable,
                "path_suffix": r.path_suffix,
                "token_explicit_max_ttl": r.token_explicit_max_ttl,
                "explicit_max_ttl": r.token_explicit_max_ttl,
                "token_period": r.token_period,
                "period": r.token_period,
                "token_no_default_policy": r.token_no_default_policy,
                "token_type": "default-service",
                "allowed_entity_aliases": null,
                "allowed_policies_glob": [],
                "disallowed_policies_glob": [],
            });
            Ok(token_response(match v {
                Value::Object(m) => m,
                _ => Map::new(),
            }))
        }
        Operation::Create | Operation::Update => {
            let d = &req.data;
            let mut r = load_role(core, &name)?.unwrap_or(Role {
                renewable: true,
                ..Role::default()
            });
            let names = |key: &str| -> Result<Option<Vec<String>>> {
                opt_strings(d, key)?
                    .map(|v| {
                        v.iter()
                            .map(|n| normalize_name(n))
                            .collect::<Result<Vec<_>>>()
                    })
                    .transpose()
            };
            if let Some(v) = names("allowed_policies")? {
                r.allowed_policies = v;
            }
            if let Some(v) = names("disallowed_policies")? {
                r.disallowed_policies = v;
            }
            if let Some(v) = opt_bool(d, "orphan")? {
                r.orphan = v;
            }
            if let Some(v) = opt_bool(d, "renewable")? {
                r.renewable = v;
            }
            if let Some(v) = d.get("path_suffix").and_then(Value::as_str) {
                if v.contains("..") || v.starts_with('/') {
                    return Err(Error::invalid(
                        "path_suffix must not contain '..' or start with '/'",
                    ));
                }
                r.path_suffix = v.to_owned();
            }
            if let Some(v) =
                opt_duration(d, "token_explicit_max_ttl")?.or(opt_duration(d, "explicit_max_ttl")?)
            {
                r.token_explicit_max_ttl = v;
            }
            if let Some(v) = opt_duration(d, "token_period")?.or(opt_duration(d, "period")?) {
                r.token_period = v;
            }
            if let Some(v) = opt_u64(d, "token_num_uses")? {
                r.token_num_uses = v;
            }
            if let Some(v) = opt_bool(d, "token_no_default_policy")? {
                r.token_no_default_policy = v;
            }
            let bytes = serde_json::to_vec(&r).map_err(|_| crate::StorageError::Corrupt)?;
            core.barrier.put(&key, &bytes)?;
            Ok(Response::empty())
        }
        Operation::Delete => {
            core.barrier.apply(vec![crate::barrier::Op::Delete(key)])?;
            Ok(Response::empty())
        }
        _ => Err(Error::UnsupportedOperation),
    }
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
