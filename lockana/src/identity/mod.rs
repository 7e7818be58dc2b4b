//! A minimal identity store, as Vault clients and login MFA need it: one entity per
//! (auth mount accessor, alias name), made at that alias's first login; the entity id
//! goes on the token. Entities have no policies, groups or metadata yet.
//!
//! Storage (behind the barrier, read on demand, so nothing is loaded at unseal):
//! - `identity/entity/<id>`: the entity with its aliases;
//! - `identity/alias/<mount accessor>/<hex(alias name)>`: the entity id, the index
//!   logins look up.
//!
//! Login MFA (`identity/mfa/...`, `sys/mfa/validate`) lives in [`mfa`].

pub(crate) mod mfa;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::auth::token::TokenEntry;
use crate::barrier::Op;
use crate::mounts::MountEntry;
use crate::vault::Core;
use crate::{Error, Operation, Request, Response, Result};

const ENTITY_PREFIX: &str = "identity/entity/";
const ALIAS_PREFIX: &str = "identity/alias/";

/// One alias of an entity: who it is on one auth mount.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Alias {
    pub id: String,
    pub name: String,
    pub mount_accessor: String,
    pub creation_time: u64,
}

/// An identity entity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entity {
    pub id: String,
    pub name: String,
    pub aliases: Vec<Alias>,
    pub creation_time: u64,
    pub last_update_time: u64,
}

fn entity_key(id: &str) -> String {
    format!("{ENTITY_PREFIX}{id}")
}

fn alias_key(accessor: &str, name: &str) -> String {
    format!("{ALIAS_PREFIX}{accessor}/{}", hex::encode(name.as_bytes()))
}

pub(crate) fn get_json<T: serde::de::DeserializeOwned>(
    core: &Core,
    key: &str,
) -> Result<Option<T>> {
    match core.barrier.get(key)? {
        None => Ok(None),
        Some(b) => Ok(Some(crate::barrier::decode_record(key, &b)?)),
    }
}

pub(crate) fn put_op<T: Serialize>(key: String, v: &T) -> Result<Op> {
    let bytes = serde_json::to_vec(v).map_err(|_| crate::StorageError::Corrupt)?;
    Ok(Op::Put(key, bytes))
}

/// The entity with this id, if any. Ids are uuids; anything else is simply unknown
/// (and never reaches a storage path with a `/` in it).
pub(crate) fn entity(core: &Core, id: &str) -> Result<Option<Entity>> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Ok(None);
    }
    get_json(core, &entity_key(id))
}

/// The entity of `alias` on `mount`, made (with its alias) at the first login.
pub(crate) fn entity_for_login(core: &Core, mount: &MountEntry, alias: &str) -> Result<Entity> {
    let akey = alias_key(&mount.accessor, alias);
    // Two first logins of one alias must not make two entities.
    let _guard = core.locks.lock(&akey);
    if let Some(id) = get_json::<String>(core, &akey)?
        && let Some(e) = entity(core, &id)?
    {
        return Ok(e);
    }
    let now = core.unix_now();
    let id = uuid::Uuid::new_v4().to_string();
    let e = Entity {
        name: format!("entity_{}", &id[..8]),
        aliases: vec![Alias {
            id: uuid::Uuid::new_v4().to_string(),
            name: alias.to_owned(),
            mount_accessor: mount.accessor.clone(),
            creation_time: now,
        }],
        id,
        creation_time: now,
        last_update_time: now,
    };
    core.barrier
        .apply(vec![put_op(entity_key(&e.id), &e)?, put_op(akey, &e.id)?])?;
    tracing::debug!(mount = %mount.path, "identity entity created at first login");
    Ok(e)
}

fn time(secs: u64) -> String {
    crate::clock::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

fn alias_json(core: &Core, a: &Alias, canonical_id: &str) -> Value {
    let mounts = core.auth_mounts.read();
    let mount = mounts
        .entries()
        .iter()
        .find(|m| m.accessor == a.mount_accessor);
    json!({
        "id": a.id,
        "canonical_id": canonical_id,
        "mount_accessor": a.mount_accessor,
        "mount_type": mount.map(|m| m.kind.clone()).unwrap_or_default(),
        "mount_path": mount.map(|m| format!("auth/{}", m.path)).unwrap_or_default(),
        "metadata": null,
        "custom_metadata": null,
        "name": a.name,
        "merged_from_canonical_ids": null,
        "creation_time": time(a.creation_time),
        "last_update_time": time(a.creation_time),
        "local": false,
    })
}

fn entity_json(core: &Core, e: &Entity) -> Map<String, Value> {
    let aliases: Vec<Value> = e
        .aliases
        .iter()
        .map(|a| alias_json(core, a, &e.id))
        .collect();
    crate::sys::obj(json!({
        "id": e.id,
        "name": e.name,
        "metadata": null,
        "merged_entity_ids": null,
        "policies": [],
        "disabled": false,
        "namespace_id": "root",
        "creation_time": time(e.creation_time),
        "last_update_time": time(e.last_update_time),
        "aliases": aliases,
        "direct_group_ids": [],
        "inherited_group_ids": [],
        "group_ids": [],
    }))
}

fn identity_response(data: Map<String, Value>) -> Response {
    let mut r = Response::with_data(data);
    r.mount_type = "identity".into();
    r
}

/// A string parameter (missing or null: empty).
pub(crate) fn opt_str(d: &Map<String, Value>, name: &str) -> Result<String> {
    match d.get(name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(Error::invalid(format!("'{name}' must be a string"))),
    }
}

/// Serves `identity/...`; `rest` is the path after `identity/`.
pub(crate) fn handle(
    core: &Core,
    req: &Request,
    rest: &str,
    token: &TokenEntry,
) -> Result<Response> {
    let no_route = || Error::NoRoute(req.path.clone());
    if let Some(p) = rest.strip_prefix("mfa/") {
        return mfa::handle(core, req, p, token);
    }
    match (rest.trim_end_matches('/'), req.operation) {
        ("entity/id", Operation::List) => list_entities(core),
        ("lookup/entity", Operation::Update | Operation::Create) => lookup_entity(core, req),
        (p, Operation::Read) if p.starts_with("entity/id/") => {
            let id = &p["entity/id/".len()..];
            let e = entity(core, id)?.ok_or(Error::NotFound)?;
            Ok(identity_response(entity_json(core, &e)))
        }
        (p, _) if p.starts_with("entity/") || p.starts_with("lookup/") => {
            Err(Error::UnsupportedOperation)
        }
        _ => Err(no_route()),
    }
}

fn all_entities(core: &Core) -> Result<Vec<Entity>> {
    let mut out = Vec::new();
    for key in core.barrier.list(ENTITY_PREFIX)? {
        if let Some(e) = entity(core, &key)? {
            out.push(e);
        }
    }
    Ok(out)
}

fn list_entities(core: &Core) -> Result<Response> {
    let entities = all_entities(core)?;
    if entities.is_empty() {
        return Err(Error::NotFound);
    }
    let mut info = Map::new();
    for e in &entities {
        let aliases: Vec<Value> = e
            .aliases
            .iter()
            .map(|a| alias_json(core, a, &e.id))
            .collect();
        info.insert(
            e.id.clone(),
            json!({"name": e.name, "aliases": aliases, "last_update_time": time(e.last_update_time)}),
        );
    }
    let keys: Vec<String> = entities.into_iter().map(|e| e.id).collect();
    Ok(identity_response(crate::sys::obj(
        json!({"keys": keys, "key_info": info}),
    )))
}

/// `identity/lookup/entity`: by `id`, `name`, `alias_id`, or `alias_name` with
/// `alias_mount_accessor`; 204 when nothing matches, as Vault.
fn lookup_entity(core: &Core, req: &Request) -> Result<Response> {
    let d = &req.data;
    let given = |n: &str| d.get(n).is_some_and(|v| !v.is_null());
    let count = [
        "id",
        "name",
        "alias_id",
        "alias_name",
        "alias_mount_accessor",
    ]
    .iter()
    .filter(|n| given(n))
    .count();
    let (id, name, alias_id) = (
        opt_str(d, "id")?,
        opt_str(d, "name")?,
        opt_str(d, "alias_id")?,
    );
    let (alias_name, accessor) = (
        opt_str(d, "alias_name")?,
        opt_str(d, "alias_mount_accessor")?,
    );
    if count == 0 {
        return Err(Error::invalid("query parameter not supplied"));
    }
    let alias_pair = count == 2 && !alias_name.is_empty() && !accessor.is_empty();
    if count > 1 && !alias_pair {
        return Err(Error::invalid(
            "query parameter conflict; please supply distinct set of query parameters",
        ));
    }
    if count == 1 && (!alias_name.is_empty() || !accessor.is_empty()) {
        return Err(Error::invalid(
            "both 'alias_name' and 'alias_mount_accessor' needs to be set",
        ));
    }
    let found = if !id.is_empty() {
        entity(core, &id)?
    } else if alias_pair {
        match get_json::<String>(core, &alias_key(&accessor, &alias_name))? {
            Some(eid) => entity(core, &eid)?,
            None => None,
        }
    } else if !name.is_empty() {
        all_entities(core)?.into_iter().find(|e| e.name == name)
    } else if !alias_id.is_empty() {
        all_entities(core)?
            .into_iter()
            .find(|e| e.aliases.iter().any(|a| a.id == alias_id))
    } else {
        None
    };
    match found {
        Some(e) => Ok(identity_response(entity_json(core, &e))),
        None => Ok(Response::empty()),
    }
}
