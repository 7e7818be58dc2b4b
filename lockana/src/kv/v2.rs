//! KV version 2: versioned secrets with soft delete, undelete, destroy, check-and-set
//! and per-key metadata, answering exactly as Vault's `kv` plugin (version 2) does.
//!
//! Storage under the mount's view:
//! - `config`: the mount-wide settings;
//! - `meta/<key>`: one record per secret with its versions map (listed for `metadata/` LIST);
//! - `versions/<sha256(key)>/<n>`: the data of version `n`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{Ctx, list_response, opt_bool, opt_duration, opt_u64};
use crate::clock::{go_duration, parse_rfc3339, rfc3339};
use crate::{Error, Operation, Request, Response, Result};

/// Versions kept when neither the mount nor the key sets `max_versions`.
const DEFAULT_MAX_VERSIONS: u64 = 10;
const MAX_CUSTOM_METADATA_KEYS: usize = 64;
const MAX_CUSTOM_METADATA_KEY_LEN: usize = 128;
const MAX_CUSTOM_METADATA_VALUE_LEN: usize = 512;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Config {
    max_versions: u64,
    cas_required: bool,
    delete_version_after: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct VersionMeta {
    created_time: String,
    deletion_time: String,
    destroyed: bool,
}

impl VersionMeta {
    fn deleted(&self, now: SystemTime) -> bool {
        !self.deletion_time.is_empty()
            && parse_rfc3339(&self.deletion_time).is_none_or(|t| t <= now)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    versions: BTreeMap<u64, VersionMeta>,
    current_version: u64,
    oldest_version: u64,
    max_versions: u64,
    cas_required: bool,
    delete_version_after: u64,
    custom_metadata: Option<BTreeMap<String, String>>,
    created_time: String,
    updated_time: String,
}

impl Meta {
    fn new(now: SystemTime) -> Self {
        Meta {
            versions: BTreeMap::new(),
            current_version: 0,
            oldest_version: 0,
            max_versions: 0,
            cas_required: false,
            delete_version_after: 0,
            custom_metadata: None,
            created_time: rfc3339(now),
            updated_time: rfc3339(now),
        }
    }

    fn version_json(&self, version: u64) -> Value {
        let (created, deletion, destroyed) = match self.versions.get(&version) {
            Some(v) => (
                v.created_time.as_str(),
                v.deletion_time.as_str(),
                v.destroyed,
            ),
            None => ("", "", false),
        };
        json!({
            "created_time": created,
            "custom_metadata": self.custom_metadata,
            "deletion_time": deletion,
            "destroyed": destroyed,
            "version": version,
        })
    }

    fn to_json(&self) -> Map<String, Value> {
        let versions: Map<String, Value> = self
            .versions
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    json!({"created_time": v.created_time, "deletion_time": v.deletion_time, "destroyed": v.destroyed}),
                )
            })
            .collect();
        let v = json!({
            "cas_required": self.cas_required,
            "created_time": self.created_time,
            "current_version": self.current_version,
            "custom_metadata": self.custom_metadata,
            "delete_version_after": go_duration(self.delete_version_after),
            "max_versions": self.max_versions,
            "oldest_version": self.oldest_version,
            "updated_time": self.updated_time,
            "versions": versions,
        });
        into_map(v)
    }
}

#[derive(Serialize, Deserialize)]
struct VersionData {
    data: Map<String, Value>,
}

fn into_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn meta_key(key: &str) -> String {
    format!("meta/{key}")
}

fn version_key(key: &str, version: u64) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!("versions/{}/{version}", hex::encode(digest))
}

/// The KV version 2 engine.
pub(crate) struct KvV2;

impl crate::engine::Backend for KvV2 {
    fn doc(&self) -> &'static crate::help::BackendDoc {
        &crate::help::KV_V2
    }

    fn handle(&self, ctx: &Ctx<'_>, req: &Request, rel: &str) -> Result<crate::engine::Answer> {
        Ok(handle(ctx, req, rel)?.into())
    }

    /// `data/` and `metadata/` writes create a key when its metadata does not exist.
    fn existence(&self, ctx: &Ctx<'_>, rel: &str) -> Result<crate::engine::Existence> {
        Ok(match rel.split_once('/') {
            Some(("data" | "metadata", key)) => crate::engine::Existence::found(
                ctx.barrier.get(&ctx.key(&meta_key(key)))?.is_some(),
            ),
            _ => crate::engine::Existence::NoCheck,
        })
    }
}

fn handle(ctx: &Ctx<'_>, req: &Request, rel: &str) -> Result<Response> {
    let (section, key) = match rel.split_once('/') {
        Some((s, k)) => (s, k),
        None => (rel, ""),
    };
    let op = req.operation;
    let d = &req.data;
    let mut resp = match (section, op) {
        ("config", Operation::Read) if key.is_empty() => read_config(ctx)?,
        ("config", Operation::Create | Operation::Update) if key.is_empty() => {
            write_config(ctx, d)?
        }
        ("metadata", Operation::List) => list_response(ctx.list(&meta_key(key))?)?,
        (_, Operation::List) => return Err(Error::UnsupportedOperation),
        ("data" | "metadata" | "delete" | "undelete" | "destroy" | "subkeys", _)
            if key.is_empty() || key.ends_with('/') =>
        {
            return Err(Error::invalid(
                "missing secret path: give the key after the mount, as in secret/data/my-app",
            ));
        }
        ("data", Operation::Read) => read_data(ctx, key, d, false)?,
        ("data", Operation::Create | Operation::Update) => write_data(ctx, key, d, false, None)?,
        ("data", Operation::Patch) => write_data(ctx, key, d, true, None)?,
        ("data", Operation::Delete) => delete_latest(ctx, key)?,
        ("subkeys", Operation::Read) => read_data(ctx, key, d, true)?,
        ("delete", Operation::Create | Operation::Update) => {
            change_versions(ctx, key, d, Change::Delete)?
        }
        ("undelete", Operation::Create | Operation::Update) => {
            change_versions(ctx, key, d, Change::Undelete)?
        }
        ("destroy", Operation::Create | Operation::Update) => {
            change_versions(ctx, key, d, Change::Destroy)?
        }
        ("metadata", Operation::Read) => {
            let meta = load_meta(ctx, key)?.ok_or(Error::NotFound)?;
            Response::with_data(meta.to_json())
        }
        ("metadata", Operation::Create | Operation::Update) => write_metadata(ctx, key, d, false)?,
        ("metadata", Operation::Patch) => write_metadata(ctx, key, d, true)?,
        ("metadata", Operation::Delete) => delete_metadata(ctx, key)?,
        ("delete" | "undelete" | "destroy" | "subkeys", _) | ("config", _) if key.is_empty() => {
            return Err(Error::UnsupportedOperation);
        }
        _ => {
            let mut r = Response::empty();
            r.status = Some(404);
            r.warnings.push(
                "Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate API endpoints to use. If using the Vault CLI, use 'vault kv get' for this operation."
                    .into(),
            );
            r
        }
    };
    resp.mount_type = "kv".into();
    Ok(resp)
}

fn load_config(ctx: &Ctx<'_>) -> Result<Config> {
    Ok(ctx.get_json("config")?.unwrap_or_default())
}

fn read_config(ctx: &Ctx<'_>) -> Result<Response> {
    let c = load_config(ctx)?;
    Ok(Response::with_data(into_map(json!({
        "cas_required": c.cas_required,
        "delete_version_after": go_duration(c.delete_version_after),
        "max_versions": c.max_versions,
    }))))
}

/// Vault validates a path's typed fields before the handler runs and says so.
fn field_validation(e: Error) -> Error {
    match e {
        Error::InvalidRequest(m) => Error::invalid(format!("Field validation failed: {m}")),
        e => e,
    }
}

fn write_config(ctx: &Ctx<'_>, d: &Map<String, Value>) -> Result<Response> {
    let _g = ctx.lock("config");
    let mut c = load_config(ctx)?;
    let field = field_validation;
    if let Some(v) = opt_u64(d, "max_versions").map_err(field)? {
        c.max_versions = v;
    }
    if let Some(v) = opt_bool(d, "cas_required").map_err(field)? {
        c.cas_required = v;
    }
    if let Some(v) = opt_duration(d, "delete_version_after").map_err(field)? {
        c.delete_version_after = v;
    }
    ctx.apply(vec![ctx.put_op("config", &c)?])?;
    Ok(Response::empty())
}

/// The data of `key`'s current version, or `None` when there is none or it is
/// deleted or destroyed (projects read their variables through this).
pub(crate) fn read_current(ctx: &Ctx<'_>, key: &str) -> Result<Option<Map<String, Value>>> {
    let Some(meta) = load_meta(ctx, key)? else {
        return Ok(None);
    };
    match meta.versions.get(&meta.current_version) {
        Some(vm) if !vm.destroyed && !vm.deleted(ctx.now) => {}
        _ => return Ok(None),
    }
    let vd: Option<VersionData> = ctx.get_json(&version_key(key, meta.current_version))?;
    Ok(vd.map(|v| v.data))
}

/// Reads a version (`data/`) or its key tree (`subkeys/`).
fn read_data(ctx: &Ctx<'_>, key: &str, d: &Map<String, Value>, subkeys: bool) -> Result<Response> {
    let requested = opt_u64(d, "version")
        .map_err(field_validation)?
        .unwrap_or(0);
    let depth = if subkeys {
        opt_u64(d, "depth")?.unwrap_or(0)
    } else {
        0
    };
    // Reads take no lock, so a write may prune the version between the metadata read
    // and the data read; then the metadata has moved on and is read again.
    let mut attempts = 0;
    loop {
        attempts += 1;
        match read_version(ctx, key, requested, depth, subkeys) {
            Err(Error::NotFound) if attempts < 3 => continue,
            other => return other,
        }
    }
}

fn read_version(
    ctx: &Ctx<'_>,
    key: &str,
    requested: u64,
    depth: u64,
    subkeys: bool,
) -> Result<Response> {
    let meta = load_meta(ctx, key)?.ok_or(Error::NotFound)?;
    let version = if requested == 0 {
        meta.current_version
    } else {
        requested
    };
    let vm = meta.versions.get(&version).ok_or(Error::NotFound)?;
    let payload_name = if subkeys { "subkeys" } else { "data" };
    if vm.destroyed || vm.deleted(ctx.now) {
        let mut m = Map::new();
        m.insert(payload_name.into(), Value::Null);
        m.insert("metadata".into(), meta.version_json(version));
        let mut r = Response::with_data(m);
        r.status = Some(404);
        return Ok(r);
    }
    let vd: VersionData = ctx
        .get_json(&version_key(key, version))?
        .ok_or(Error::NotFound)?;
    let payload = if subkeys {
        subkey_tree(&vd.data, depth, 1)
    } else {
        Value::Object(vd.data)
    };
    let mut m = Map::new();
    m.insert(payload_name.into(), payload);
    m.insert("metadata".into(), meta.version_json(version));
    Ok(Response::with_data(m))
}

/// Replaces leaves with `null`, descending into objects up to `depth` levels (0: all).
fn subkey_tree(data: &Map<String, Value>, depth: u64, level: u64) -> Value {
    let out: Map<String, Value> = data
        .iter()
        .map(|(k, v)| {
            let sub = match v {
                Value::Object(inner) if depth == 0 || level < depth => {
                    subkey_tree(inner, depth, level + 1)
                }
                _ => Value::Null,
            };
            (k.clone(), sub)
        })
        .collect();
    Value::Object(out)
}

/// `options.cas`, read as Vault reads it (weakly typed; a negative number never matches).
fn cas_param(d: &Map<String, Value>) -> Result<Option<u64>> {
    let bad = || Error::invalid("error parsing check-and-set parameter");
    let o = match d.get("options") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(o)) => o,
        Some(other) => return Err(Error::invalid(super::go_conversion_error("options", other))),
    };
    let cas = match o.get("cas") {
        None => return Ok(None),
        Some(Value::Null) => 0,
        Some(Value::Bool(b)) => u64::from(*b),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => u,
            (None, Some(_)) => u64::MAX,
            _ => return Err(bad()),
        },
        Some(Value::String(s)) if s.is_empty() => 0,
        Some(Value::String(s)) => match s.parse::<i64>().map_err(|_| bad())? {
            n if n < 0 => u64::MAX,
            n => n.unsigned_abs(),
        },
        Some(_) => return Err(bad()),
    };
    Ok(Some(cas))
}

/// The larger of the key's and the mount's `max_versions` (Vault takes the maximum),
/// or the default when neither is set.
fn effective_max_versions(meta: &Meta, config: &Config) -> u64 {
    match meta.max_versions.max(config.max_versions) {
        0 => DEFAULT_MAX_VERSIONS,
        n => n,
    }
}

/// What a caller inside the vault adds to a KV v2 write: its own check of the new
/// version's data (instead of the projects' check every other write gets) and
/// storage operations committed atomically with the version.
pub(crate) struct WriteHook<'a> {
    pub check: &'a dyn Fn(&Map<String, Value>) -> Result<()>,
    pub extra: Vec<crate::barrier::Op>,
}

/// A PUT of `d` (`data`, `options.cas`) to `key` with a [`WriteHook`].
pub(crate) fn write_with(
    ctx: &Ctx<'_>,
    key: &str,
    d: &Map<String, Value>,
    hook: WriteHook<'_>,
) -> Result<Response> {
    write_data(ctx, key, d, false, Some(hook))
}

/// Whether any version of `key` exists (even deleted or destroyed).
pub(crate) fn secret_exists(ctx: &Ctx<'_>, key: &str) -> Result<bool> {
    Ok(load_meta(ctx, key)?.is_some())
}

/// Holds `key`'s write lock (writers of its versions wait).
pub(crate) fn lock_secret<'a>(ctx: &'a Ctx<'_>, key: &str) -> super::KeyGuard<'a> {
    ctx.lock(&meta_key(key))
}

/// Writes a new version: the body's `data` (`PUT`/`POST`), or the current version
/// with `data` applied as a JSON merge patch (RFC 7386, `PATCH`). The new data must
/// pass the hook's check, or by default the projects' (an RSA project's variables
/// are envelopes only).
fn write_data(
    ctx: &Ctx<'_>,
    key: &str,
    d: &Map<String, Value>,
    patch: bool,
    hook: Option<WriteHook<'_>>,
) -> Result<Response> {
    let input = match d.get("data") {
        Some(Value::Object(m)) => m,
        None | Some(Value::Null) => return Err(Error::invalid("no data provided")),
        Some(other) => return Err(Error::invalid(super::go_conversion_error("data", other))),
    };
    let cas = cas_param(d)?;
    let _g = ctx.lock(&meta_key(key));
    let config = load_config(ctx)?;
    let existing: Option<Meta> = ctx.get_json(&meta_key(key))?;
    // Vault's order for PATCH: no secret is a bare 404, then the check-and-set
    // option, then a deleted or destroyed current version is a 404 with its metadata.
    let bare_404 = || {
        let mut r = Response::empty();
        r.status = Some(404);
        r.format = crate::ResponseFormat::Raw;
        Ok(r)
    };
    if patch && existing.is_none() {
        return bare_404();
    }
    let mut meta = existing.unwrap_or_else(|| Meta::new(ctx.now));
    if (config.cas_required || meta.cas_required) && cas.is_none() {
        return Err(Error::invalid(
            "check-and-set parameter required for this call",
        ));
    }
    if let Some(cas) = cas
        && cas != meta.current_version
    {
        return Err(Error::CasMismatch);
    }
    if patch {
        match meta.versions.get(&meta.current_version) {
            None => return bare_404(),
            Some(v) if v.destroyed || v.deleted(ctx.now) => {
                let mut r = match meta.version_json(meta.current_version) {
                    Value::Object(m) => Response::with_data(m),
                    _ => Response::empty(),
                };
                r.status = Some(404);
                return Ok(r);
            }
            Some(_) => {}
        }
    }
    let new_data = if patch {
        let current: VersionData = ctx
            .get_json(&version_key(key, meta.current_version))?
            .ok_or(Error::NotFound)?;
        let mut merged = Value::Object(current.data);
        merge_patch(&mut merged, &Value::Object(input.clone()));
        match merged {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    } else {
        input.clone()
    };
    let extra = match hook {
        Some(h) => {
            (h.check)(&new_data)?;
            h.extra
        }
        None => {
            crate::projects::check_kv_write(ctx, key, &new_data)?;
            Vec::new()
        }
    };
    let version = meta.current_version + 1;
    let dva = if meta.delete_version_after > 0 {
        meta.delete_version_after
    } else {
        config.delete_version_after
    };
    let deletion_time = if dva > 0 {
        rfc3339(ctx.now + Duration::from_secs(dva))
    } else {
        String::new()
    };
    meta.versions.insert(
        version,
        VersionMeta {
            created_time: rfc3339(ctx.now),
            deletion_time,
            destroyed: false,
        },
    );
    meta.current_version = version;
    meta.updated_time = rfc3339(ctx.now);
    let mut ops = vec![ctx.put_op(&version_key(key, version), &VersionData { data: new_data })?];
    ops.extend(extra);
    let max = effective_max_versions(&meta, &config);
    ops.extend(prune(ctx, key, &mut meta, max));
    commit(ctx, key, ops, Some(meta.clone()))?;
    Ok(Response::with_data(into_map(meta.version_json(version))))
}

/// Parsed metadata records, shared by readers so a read opens one ciphertext (the
/// version) instead of two. Write-through: every commit that changes a record stores
/// the new one (or a tombstone) while holding the key's lock; a reader that missed
/// inserts what it read only if nothing newer arrived meanwhile (`or_insert`) and no
/// clear happened since it looked (the generation). Metadata holds no secret values.
#[derive(Default)]
pub(crate) struct MetaCache {
    inner: parking_lot::RwLock<MetaCacheInner>,
}

#[derive(Default)]
struct MetaCacheInner {
    generation: u64,
    map: std::collections::HashMap<String, Option<std::sync::Arc<Meta>>>,
}

/// Entries kept before the cache starts over.
const META_CACHE_CAP: usize = 100_000;

impl MetaCache {
    /// Forgets everything (on seal).
    pub(crate) fn clear(&self) {
        let mut c = self.inner.write();
        c.map.clear();
        c.generation += 1;
    }

    fn store(&self, path: String, meta: Option<Meta>) {
        let mut c = self.inner.write();
        if c.map.len() >= META_CACHE_CAP && !c.map.contains_key(&path) {
            c.map.clear();
            c.generation += 1;
        }
        c.map.insert(path, meta.map(std::sync::Arc::new));
    }
}

fn load_meta(ctx: &Ctx<'_>, key: &str) -> Result<Option<std::sync::Arc<Meta>>> {
    let rel = meta_key(key);
    let path = ctx.key(&rel);
    let generation = {
        let c = ctx.meta_cache.inner.read();
        if let Some(hit) = c.map.get(&path) {
            return Ok(hit.clone());
        }
        c.generation
    };
    let meta = ctx.get_json::<Meta>(&rel)?.map(std::sync::Arc::new);
    let mut c = ctx.meta_cache.inner.write();
    if c.generation == generation && c.map.len() < META_CACHE_CAP {
        c.map.entry(path).or_insert_with(|| meta.clone());
    }
    Ok(meta)
}

/// Commits `ops` plus the key's new metadata (`None`: deleted) and updates the cache.
/// Callers hold the key's lock.
fn commit(
    ctx: &Ctx<'_>,
    key: &str,
    mut ops: Vec<crate::barrier::Op>,
    meta: Option<Meta>,
) -> Result<()> {
    let rel = meta_key(key);
    ops.push(match &meta {
        Some(m) => ctx.put_op(&rel, m)?,
        None => ctx.delete_op(&rel),
    });
    ctx.apply(ops)?;
    ctx.meta_cache.store(ctx.key(&rel), meta);
    Ok(())
}

/// Drops the oldest versions beyond `max`, returning the deletions to commit.
/// Drops the versions a new current version pushes out, by Vault's arithmetic: once
/// `current - oldest` reaches `max`, everything up to `current - max` goes and
/// `oldest_version` becomes `current - max + 1` (so it is 1 when exactly `max`
/// versions exist, before anything is removed).
fn prune(ctx: &Ctx<'_>, key: &str, meta: &mut Meta, max: u64) -> Vec<crate::barrier::Op> {
    let mut ops = Vec::new();
    if meta.current_version.saturating_sub(meta.oldest_version) < max {
        return ops;
    }
    let last_gone = meta.current_version - max;
    let gone: Vec<u64> = meta.versions.range(..=last_gone).map(|(n, _)| *n).collect();
    for n in gone {
        meta.versions.remove(&n);
        ops.push(ctx.delete_op(&version_key(key, n)));
    }
    meta.oldest_version = last_gone + 1;
    ops
}

/// RFC 7386 JSON merge patch: `null` removes, objects merge, everything else replaces.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

fn delete_latest(ctx: &Ctx<'_>, key: &str) -> Result<Response> {
    let _g = ctx.lock(&meta_key(key));
    let Some(mut meta) = ctx.get_json::<Meta>(&meta_key(key))? else {
        return Ok(Response::empty());
    };
    let now = ctx.now;
    let current = meta.current_version;
    if let Some(v) = meta.versions.get_mut(&current)
        && !v.destroyed
        && !v.deleted(now)
    {
        v.deletion_time = rfc3339(now);
        commit(ctx, key, Vec::new(), Some(meta))?;
    }
    Ok(Response::empty())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    Delete,
    Undelete,
    Destroy,
}

fn versions_param(d: &Map<String, Value>) -> Result<Vec<u64>> {
    let bad = || Error::invalid("'versions' must be a list of version numbers");
    // Vault's text for a list element that is not a number.
    let not_int = |i: usize| {
        Error::invalid(format!(
            "Field validation failed: error converting input for field \"versions\": decoding failed due to the following error(s):\n\n'[{i}]' cannot parse value as 'int': strconv.ParseInt: invalid syntax"
        ))
    };
    let list: Vec<u64> = match d.get("versions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::Number(n) => n.as_u64().ok_or_else(bad),
                Value::String(s) => s.trim().parse().map_err(|_| not_int(i)),
                _ => Err(bad()),
            })
            .collect::<Result<_>>()?,
        Some(Value::Number(n)) => vec![n.as_u64().ok_or_else(bad)?],
        Some(Value::String(s)) => s
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .enumerate()
            .map(|(i, p)| p.trim().parse().map_err(|_| not_int(i)))
            .collect::<Result<_>>()?,
        Some(_) => return Err(bad()),
    };
    if list.is_empty() {
        // Vault capitalizes this on delete/undelete but not on destroy (see the caller).
        return Err(Error::invalid("No version number provided"));
    }
    Ok(list)
}

fn change_versions(
    ctx: &Ctx<'_>,
    key: &str,
    d: &Map<String, Value>,
    change: Change,
) -> Result<Response> {
    let versions = match versions_param(d) {
        Err(Error::InvalidRequest(m)) if change == Change::Destroy && m.starts_with("No ") => {
            return Err(Error::invalid("no version number provided"));
        }
        other => other?,
    };
    let _g = ctx.lock(&meta_key(key));
    let Some(mut meta) = ctx.get_json::<Meta>(&meta_key(key))? else {
        return Ok(Response::empty());
    };
    let now = ctx.now;
    let mut ops = Vec::new();
    for n in versions {
        let Some(v) = meta.versions.get_mut(&n) else {
            continue;
        };
        match change {
            Change::Delete if !v.destroyed && !v.deleted(now) => v.deletion_time = rfc3339(now),
            Change::Undelete if !v.destroyed => v.deletion_time = String::new(),
            Change::Destroy if !v.destroyed => {
                v.destroyed = true;
                ops.push(ctx.delete_op(&version_key(key, n)));
            }
            _ => {}
        }
    }
    commit(ctx, key, ops, Some(meta.clone()))?;
    Ok(Response::empty())
}

fn custom_metadata_param(
    d: &Map<String, Value>,
    patch: bool,
) -> Result<Option<BTreeMap<String, Option<String>>>> {
    let m = match d.get("custom_metadata") {
        None => return Ok(None),
        Some(Value::Null) => return Ok(Some(BTreeMap::new())),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(Error::invalid(super::go_conversion_error(
                "custom_metadata",
                other,
            )));
        }
    };
    let mut out = BTreeMap::new();
    for (k, v) in m {
        let v = match v {
            Value::String(s) => Some(s.clone()),
            Value::Null if patch => None,
            _ => return Err(Error::invalid("'custom_metadata' values must be strings")),
        };
        if k.is_empty() || k.len() > MAX_CUSTOM_METADATA_KEY_LEN {
            return Err(Error::invalid(format!(
                "custom_metadata keys must be 1 to {MAX_CUSTOM_METADATA_KEY_LEN} bytes long"
            )));
        }
        if v.as_ref()
            .is_some_and(|v| v.len() > MAX_CUSTOM_METADATA_VALUE_LEN)
        {
            return Err(Error::invalid(format!(
                "custom_metadata values must be at most {MAX_CUSTOM_METADATA_VALUE_LEN} bytes long"
            )));
        }
        out.insert(k.clone(), v);
    }
    Ok(Some(out))
}

fn write_metadata(
    ctx: &Ctx<'_>,
    key: &str,
    d: &Map<String, Value>,
    patch: bool,
) -> Result<Response> {
    let max_versions = opt_u64(d, "max_versions")?;
    let cas_required = opt_bool(d, "cas_required")?;
    let dva = opt_duration(d, "delete_version_after")?;
    let custom = custom_metadata_param(d, patch)?;
    if max_versions.is_none() && cas_required.is_none() && dva.is_none() && custom.is_none() {
        // Nothing to set: Vault answers 204 and creates no metadata.
        return Ok(Response::empty());
    }
    let _g = ctx.lock(&meta_key(key));
    let existing: Option<Meta> = ctx.get_json(&meta_key(key))?;
    if patch && existing.is_none() {
        // Vault answers a metadata PATCH of a missing secret with a bare 404, no body.
        let mut r = Response::empty();
        r.status = Some(404);
        r.format = crate::ResponseFormat::Raw;
        return Ok(r);
    }
    let mut meta = existing.unwrap_or_else(|| Meta::new(ctx.now));
    if let Some(v) = max_versions {
        meta.max_versions = v;
    }
    if let Some(v) = cas_required {
        meta.cas_required = v;
    }
    if let Some(v) = dva {
        meta.delete_version_after = v;
    }
    if let Some(custom) = custom {
        let mut merged = if patch {
            meta.custom_metadata.take().unwrap_or_default()
        } else {
            BTreeMap::new()
        };
        for (k, v) in custom {
            match v {
                Some(v) => {
                    merged.insert(k, v);
                }
                None => {
                    merged.remove(&k);
                }
            }
        }
        if merged.len() > MAX_CUSTOM_METADATA_KEYS {
            return Err(Error::invalid(format!(
                "custom_metadata may hold at most {MAX_CUSTOM_METADATA_KEYS} keys"
            )));
        }
        // Vault shows no custom metadata as `null`, however it came to be empty.
        meta.custom_metadata = if merged.is_empty() {
            None
        } else {
            Some(merged)
        };
    }
    meta.updated_time = rfc3339(ctx.now);
    // A lower max_versions takes effect at the next data write, as in Vault: the
    // metadata write itself removes no version.
    commit(ctx, key, Vec::new(), Some(meta.clone()))?;
    let mut resp = Response::empty();
    if cas_required == Some(false) && load_config(ctx)?.cas_required {
        resp.warnings.push(
            "\"cas_required\" set to false, but is mandated by backend config. This value will be ignored.".into(),
        );
    }
    Ok(resp)
}

fn delete_metadata(ctx: &Ctx<'_>, key: &str) -> Result<Response> {
    let _g = ctx.lock(&meta_key(key));
    let Some(meta) = ctx.get_json::<Meta>(&meta_key(key))? else {
        return Ok(Response::empty());
    };
    let ops: Vec<_> = meta
        .versions
        .keys()
        .map(|n| ctx.delete_op(&version_key(key, *n)))
        .collect();
    commit(ctx, key, ops, None)?;
    Ok(Response::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}, "n": [1]}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}, "n": [1]}));
    }

    #[test]
    fn subkeys_respect_depth() {
        let d = into_map(json!({"a": {"b": {"c": 1}}, "x": 2}));
        assert_eq!(
            subkey_tree(&d, 0, 1),
            json!({"a": {"b": {"c": null}}, "x": null})
        );
        assert_eq!(subkey_tree(&d, 1, 1), json!({"a": null, "x": null}));
        assert_eq!(subkey_tree(&d, 2, 1), json!({"a": {"b": null}, "x": null}));
    }
}
