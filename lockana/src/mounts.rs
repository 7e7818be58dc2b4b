//! The mount table and router: a request path goes to the engine mounted at its
//! longest matching prefix. Each mount's data lives under its own storage view
//! (`logical/<uuid>/`), so disabling a mount deletes exactly its data.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::barrier::{Barrier, Op};
use crate::engine::{AUTH_METHODS, Backend, Registration, SECRETS_ENGINES};
use crate::{Error, Result};

const MOUNTS_PATH: &str = "core/mounts";
/// Default and max lease TTL of a mount when unset: Vault's 768h.
pub(crate) const SYSTEM_MAX_TTL: u64 = 768 * 3600;

/// The system-wide default and maximum TTL (seconds): Vault's `default_lease_ttl`
/// and `max_lease_ttl` server settings, 768h each unless the config file sets them.
/// Mounts and tokens without a TTL of their own fall back to these.
#[derive(Debug)]
pub(crate) struct SystemTtls {
    default: std::sync::atomic::AtomicU64,
    max: std::sync::atomic::AtomicU64,
}

impl Default for SystemTtls {
    fn default() -> Self {
        SystemTtls {
            default: SYSTEM_MAX_TTL.into(),
            max: SYSTEM_MAX_TTL.into(),
        }
    }
}

impl SystemTtls {
    /// Sets both; a zero keeps 768h, and a default above the maximum is refused
    /// (Vault refuses that config too).
    pub(crate) fn set(&self, default: u64, max: u64) -> Result<()> {
        let or_system = |t: u64| if t == 0 { SYSTEM_MAX_TTL } else { t };
        let (default, max) = (or_system(default), or_system(max));
        if default > max {
            return Err(Error::invalid(
                "default_lease_ttl must not be greater than max_lease_ttl",
            ));
        }
        self.default
            .store(default, std::sync::atomic::Ordering::Relaxed);
        self.max.store(max, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// The default TTL.
    pub(crate) fn default_ttl(&self) -> u64 {
        self.default.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The maximum TTL.
    pub(crate) fn max_ttl(&self) -> u64 {
        self.max.load(std::sync::atomic::Ordering::Relaxed)
    }
}
/// Paths no secrets engine may be mounted at or below.
const RESERVED: [&str; 5] = ["sys/", "auth/", "cubbyhole/", "identity/", "lockana/"];

/// The backend instance serving a mount. Not stored: made from the mount's type and
/// options by the registry when the mount is enabled or loaded.
#[derive(Clone)]
pub(crate) struct Instance(Arc<dyn Backend>);

impl Instance {
    pub(crate) fn new(backend: Arc<dyn Backend>) -> Self {
        Instance(backend)
    }
}

impl Default for Instance {
    fn default() -> Self {
        Instance(Arc::new(crate::engine::Unavailable))
    }
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Instance")
    }
}

/// Per-mount settings that `sys/mounts/<path>/tune` changes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct MountConfig {
    #[serde(default)]
    pub default_lease_ttl: u64,
    #[serde(default)]
    pub max_lease_ttl: u64,
    #[serde(default)]
    pub force_no_cache: bool,
}

/// One row of the mount table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MountEntry {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub description: String,
    pub accessor: String,
    pub uuid: String,
    pub options: BTreeMap<String, String>,
    pub config: MountConfig,
    #[serde(default)]
    pub local: bool,
    #[serde(default)]
    pub seal_wrap: bool,
    #[serde(skip)]
    pub backend: Instance,
}

impl MountEntry {
    /// The backend serving this mount.
    pub(crate) fn backend(&self) -> &dyn Backend {
        &*self.backend.0
    }

    /// Gives the entry the instance `registry` makes for its stored type and options;
    /// a type no backend serves (written by another version) gets one that answers
    /// nothing.
    fn instantiate(&mut self, registry: &'static [Registration]) {
        let made = crate::engine::lookup(registry, &self.kind)
            .map(|r| (r.factory)(&self.kind, &mut self.options.clone()));
        self.backend = match made {
            Some(Ok((_, backend))) => Instance(backend),
            _ => {
                tracing::warn!(kind = %self.kind, path = %self.path, "no backend serves this mount type");
                Instance::default()
            }
        };
    }

    /// The storage prefix of this mount's data.
    pub(crate) fn view_prefix(&self) -> String {
        format!("logical/{}/", self.uuid)
    }

    /// Vault's JSON for one mount (`sys/mounts`, `sys/internal/ui/mounts`).
    pub(crate) fn to_json(&self) -> Value {
        let mut v = json!({
            "accessor": self.accessor,
            "config": {
                "default_lease_ttl": self.config.default_lease_ttl,
                "force_no_cache": self.config.force_no_cache,
                "max_lease_ttl": self.config.max_lease_ttl,
            },
            "description": self.description,
            "external_entropy_access": false,
            "local": self.local,
            "options": if self.options.is_empty() { Value::Null } else { json!(self.options) },
            "plugin_version": "",
            "running_plugin_version": format!("v{}+builtin.lockana", env!("CARGO_PKG_VERSION")),
            "running_sha256": "",
            "seal_wrap": self.seal_wrap,
            "type": self.kind,
            "uuid": self.uuid,
        });
        // Vault reports a deprecation status for plugin engines, not for built-ins.
        if self.kind == "kv"
            && let Value::Object(m) = &mut v
        {
            m.insert("deprecation_status".into(), json!("supported"));
        }
        v
    }

    /// The lease TTL KV v1 reports for its reads.
    pub(crate) fn effective_ttl(&self, system: &SystemTtls) -> u64 {
        match self.config.default_lease_ttl {
            0 => system.default_ttl(),
            t => t,
        }
    }
}

/// The per-token private store every vault has at `cubbyhole/`.
pub(crate) fn cubbyhole_entry() -> MountEntry {
    let uuid = uuid::Uuid::new_v4().to_string();
    let mut e = MountEntry {
        path: "cubbyhole/".into(),
        kind: "cubbyhole".into(),
        description: "per-token private secret storage".into(),
        accessor: format!("cubbyhole_{}", &uuid.replace('-', "")[..8]),
        uuid,
        options: BTreeMap::new(),
        config: MountConfig::default(),
        local: true,
        seal_wrap: false,
        backend: Instance::default(),
    };
    e.instantiate(SECRETS_ENGINES);
    e
}

/// Builds a new mount entry after validating the request of `sys/mounts/<path>`.
pub(crate) fn new_entry(path: &str, data: &Map<String, Value>) -> Result<MountEntry> {
    let path = normalize_mount_path(path)?;
    let kind = match data.get("type") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) | None => {
            return Err(Error::invalid("backend type must be specified as a string"));
        }
        // Vault reads the field weakly typed: `5` is the type "5".
        Some(other) => other.to_string(),
    };
    let mut options = parse_options(data.get("options"))?;
    let Some(registration) = crate::engine::lookup(SECRETS_ENGINES, &kind).filter(|r| r.mountable)
    else {
        // Vault appends `: <type>`; the type is not echoed (a value typed into the
        // wrong field could be a secret, and error texts reach audit logs in the
        // clear). docs/compat.md lists the difference.
        return Err(Error::invalid("plugin not found in the catalog"));
    };
    let (kind, backend) = (registration.factory)(&kind, &mut options)?;
    let mut entry = engine_entry(path, kind, options, data)?;
    entry.backend = Instance(backend);
    Ok(entry)
}

/// The mount entry for an engine `kind` whose type and options were validated (its
/// backend instance is the caller's to set).
fn engine_entry(
    path: String,
    kind: &str,
    options: BTreeMap<String, String>,
    data: &Map<String, Value>,
) -> Result<MountEntry> {
    let mut config = MountConfig::default();
    if let Some(c) = data.get("config").filter(|c| !c.is_null()) {
        apply_tune(&mut config, c)?;
    }
    let description = match data.get("description") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(Error::invalid("'description' must be a string")),
    };
    let uuid = uuid::Uuid::new_v4().to_string();
    Ok(MountEntry {
        path,
        kind: kind.into(),
        description,
        accessor: format!("{kind}_{}", &uuid.replace('-', "")[..8]),
        uuid,
        options,
        config,
        local: matches!(data.get("local"), Some(Value::Bool(true))),
        seal_wrap: matches!(data.get("seal_wrap"), Some(Value::Bool(true))),
        backend: Instance::default(),
    })
}

fn parse_options(v: Option<&Value>) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let s = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return Err(Error::invalid("mount options must be strings")),
                };
                out.insert(k.clone(), s);
            }
        }
        Some(_) => return Err(Error::invalid("'options' must be an object")),
    }
    Ok(out)
}

/// Applies `default_lease_ttl` / `max_lease_ttl` / `force_no_cache` from a tune body.
pub(crate) fn apply_tune(config: &mut MountConfig, v: &Value) -> Result<()> {
    let Value::Object(m) = v else {
        return Err(Error::invalid("'config' must be an object"));
    };
    for (key, slot) in [
        ("default_lease_ttl", &mut config.default_lease_ttl),
        ("max_lease_ttl", &mut config.max_lease_ttl),
    ] {
        match m.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == "system" => *slot = 0,
            Some(v) => {
                *slot = crate::clock::parse_duration(v)
                    .ok_or_else(|| Error::invalid(crate::clock::duration_error(v)))?
            }
        }
    }
    if config.max_lease_ttl != 0 && config.default_lease_ttl > config.max_lease_ttl {
        return Err(Error::invalid(
            "default lease TTL cannot be greater than max lease TTL",
        ));
    }
    if let Some(b) = crate::fields::opt_bool(m, "force_no_cache")? {
        config.force_no_cache = b;
    }
    Ok(())
}

/// `secret` / `/secret/` -> `secret/`; refuses empty, reserved and odd paths.
pub(crate) fn normalize_mount_path(path: &str) -> Result<String> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Err(Error::invalid("mount path must not be empty"));
    }
    let p = format!("{trimmed}/");
    if RESERVED.iter().any(|r| p.starts_with(r)) {
        return Err(Error::invalid(format!("cannot mount {p:?}")));
    }
    Ok(p)
}

/// The in-memory mount table, loaded from storage at unseal.
pub(crate) struct MountTable {
    entries: Vec<MountEntry>,
    /// Where the table is stored: `core/mounts` (secrets engines) or `core/auth`.
    key: &'static str,
}

impl Default for MountTable {
    fn default() -> Self {
        MountTable {
            entries: Vec::new(),
            key: MOUNTS_PATH,
        }
    }
}

/// Storage key of the auth method table.
pub(crate) const AUTH_PATH: &str = "core/auth";

impl MountTable {
    /// An empty auth method table.
    pub(crate) fn auth() -> Self {
        MountTable {
            entries: Vec::new(),
            key: AUTH_PATH,
        }
    }

    /// Loads the secrets-engine table.
    pub(crate) fn load(barrier: &Barrier) -> Result<Self> {
        Self::load_from(barrier, MOUNTS_PATH)
    }

    /// Loads a table stored at `key`, with a backend instance per mount.
    pub(crate) fn load_from(barrier: &Barrier, key: &'static str) -> Result<Self> {
        let mut entries: Vec<MountEntry> = match barrier.get(key)? {
            None => Vec::new(),
            Some(b) => crate::barrier::decode_record(key, &b)?,
        };
        let registry = if key == AUTH_PATH {
            AUTH_METHODS
        } else {
            SECRETS_ENGINES
        };
        for e in &mut entries {
            e.instantiate(registry);
        }
        Ok(MountTable { entries, key })
    }

    fn encode(&self) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec(&self.entries).map_err(|_| crate::StorageError::Corrupt)?)
    }

    pub(crate) fn entries(&self) -> &[MountEntry] {
        &self.entries
    }

    /// The mount whose path is the longest prefix of `path`.
    pub(crate) fn route(&self, path: &str) -> Option<&MountEntry> {
        self.entries
            .iter()
            .filter(|e| path.starts_with(&e.path) || e.path.strip_suffix('/') == Some(path))
            .max_by_key(|e| e.path.len())
    }

    pub(crate) fn get(&self, mount_path: &str) -> Option<&MountEntry> {
        self.entries.iter().find(|e| e.path == mount_path)
    }

    /// Adds the built-in mounts a fresh vault has.
    pub(crate) fn add_builtins(&mut self, barrier: &Barrier) -> Result<()> {
        if self.get("cubbyhole/").is_none() {
            self.add(barrier, cubbyhole_entry())?;
        }
        Ok(())
    }

    /// Adds a mount and persists the table.
    pub(crate) fn add(&mut self, barrier: &Barrier, entry: MountEntry) -> Result<()> {
        if let Some(conflict) = self
            .entries
            .iter()
            .find(|e| entry.path.starts_with(&e.path) || e.path.starts_with(&entry.path))
        {
            return Err(Error::invalid(format!(
                "path is already in use at {}",
                conflict.path
            )));
        }
        self.entries.push(entry);
        if let Err(e) = barrier.put(self.key, &self.encode()?) {
            self.entries.pop();
            return Err(e);
        }
        Ok(())
    }

    /// Replaces a mount's entry (tune) and persists the table.
    pub(crate) fn update(&mut self, barrier: &Barrier, entry: MountEntry) -> Result<()> {
        let Some(i) = self.entries.iter().position(|e| e.path == entry.path) else {
            return Err(Error::invalid(format!("no mount at {}", entry.path)));
        };
        let old = std::mem::replace(&mut self.entries[i], entry);
        if let Err(e) = barrier.put(self.key, &self.encode()?) {
            self.entries[i] = old;
            return Err(e);
        }
        Ok(())
    }

    /// Moves the mount at `from` to `to` and persists the table (`sys/remount`). A
    /// mount's data is keyed by its UUID, so nothing else has to move.
    pub(crate) fn rename(&mut self, barrier: &Barrier, from: &str, to: &str) -> Result<()> {
        let Some(i) = self.entries.iter().position(|e| e.path == from) else {
            return Err(Error::invalid(format!("no matching mount at \"{from}\"")));
        };
        if let Some(conflict) = self
            .entries
            .iter()
            .find(|e| to.starts_with(&e.path) || e.path.starts_with(to))
        {
            return Err(Error::invalid(format!(
                "path already in use at \"{}\"",
                conflict.path
            )));
        }
        let old = std::mem::replace(&mut self.entries[i].path, to.to_owned());
        if let Err(e) = barrier.put(self.key, &self.encode()?) {
            self.entries[i].path = old;
            return Err(e);
        }
        Ok(())
    }

    /// Removes a mount and all of its data in one commit.
    pub(crate) fn remove(&mut self, barrier: &Barrier, mount_path: &str) -> Result<bool> {
        let Some(i) = self.entries.iter().position(|e| e.path == mount_path) else {
            return Ok(false);
        };
        let old = self.entries.remove(i);
        let mut ops: Vec<Op> = barrier
            .scan(&old.view_prefix())?
            .into_iter()
            .map(Op::Delete)
            .collect();
        ops.push(Op::Put(self.key.into(), self.encode()?));
        if let Err(e) = barrier.apply(ops) {
            self.entries.insert(i, old);
            return Err(e);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_normalize_and_reserved_are_refused() {
        assert_eq!(normalize_mount_path("/secret").unwrap(), "secret/");
        assert_eq!(normalize_mount_path("a/b/").unwrap(), "a/b/");
        assert!(normalize_mount_path("sys").is_err());
        assert!(normalize_mount_path("auth/x").is_err());
        assert!(normalize_mount_path("//").is_err());
    }

    #[test]
    fn unknown_engine_type_is_refused() {
        let d = json!({"type": "aws"});
        assert!(new_entry("x", d.as_object().unwrap()).is_err());
        let d = json!({"type": "kv", "options": {"version": "3"}});
        assert!(new_entry("x", d.as_object().unwrap()).is_err());
        let d = json!({"type": "cubbyhole"});
        assert!(new_entry("x", d.as_object().unwrap()).is_err());
        let d = json!({"type": "kv-v2"});
        let e = new_entry("x", d.as_object().unwrap()).unwrap();
        assert!(crate::kv::is_v2(&e));
        assert_eq!(e.kind, "kv");
        let d = json!({"type": "totp", "options": {"version": "2"}});
        let e = new_entry("otp", d.as_object().unwrap()).unwrap();
        assert_eq!(e.kind, "totp");
        assert!(e.options.is_empty());
        assert!(e.accessor.starts_with("totp_"));
    }
}
