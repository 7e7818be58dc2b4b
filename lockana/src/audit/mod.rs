//! The audit broker: every authenticated request and its response are written to the
//! enabled audit devices before the client hears anything (fail-closed).
//!
//! - Entries follow Vault's shape (`type`, `time`, `auth`, `request`, `response`,
//!   `error`); every string value, token and accessor is `hmac-sha256:<hex>` under a
//!   per-vault salt kept behind the barrier (`core/audit-salt`).
//! - Each line also carries a hash chain (see [`chain`]) that `lockana audit verify`
//!   checks; it continues across reopened (rotated) files and restarts.
//! - The device table lives behind the barrier (`core/audit`); devices declared in the
//!   server's config file are held in memory and reopened on every unseal.
//! - If at least one device is enabled and none accepts a line, the request fails
//!   with [`Error::Audit`](crate::Error::Audit) (HTTP 500) and nothing is returned.

pub(crate) mod chain;
mod entry;
mod sink;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use self::entry::{Hashing, Kind};
use self::sink::{Sink, Target};
use crate::auth::token::TokenEntry;
use crate::barrier::{Barrier, random_key};
use crate::{Error, Request, Response, Result, StorageError, Vault};

pub use self::chain::{ChainBreak, ChainSummary, verify_audit_chain};

const SALT_PATH: &str = "core/audit-salt";
const TABLE_PATH: &str = "core/audit";
const HEADS_PATH: &str = "core/audit-chain";

/// Failures of the audit log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Devices are enabled but none could record the entry: the request is refused.
    #[error("no enabled audit device could record the request; it was not served")]
    Unavailable,
}

thread_local! {
    // `log_request` and `log_response` run on the same thread for one request
    // (`Core::handle` is synchronous), so the pair shares its id through here
    // without widening `Request`.
    static REQUEST_ID: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A device as the table stores it and `sys/audit` lists it. Options are strings,
/// as Vault keeps them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DeviceConfig {
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub description: String,
    pub options: BTreeMap<String, String>,
    pub local: bool,
    /// Declared in the server config file (not in the table; not removable by API).
    #[serde(skip)]
    pub declared: bool,
}

impl DeviceConfig {
    /// Parses an enable request (`sys/audit/<path>` body, or a config-file block).
    pub(crate) fn parse(path: &str, body: &Map<String, Value>) -> Result<DeviceConfig> {
        let path = normalize_path(path)?;
        let kind = match body.get("type") {
            Some(Value::String(t)) => t.clone(),
            _ => {
                return Err(Error::invalid(
                    "'type' is required (Lockana supports \"file\")",
                ));
            }
        };
        if kind != "file" {
            // The type is not echoed: error texts never carry request values.
            return Err(Error::invalid(
                "unsupported audit device type: Lockana supports type \"file\" \
                 (file_path = \"stdout\" writes to standard output)",
            ));
        }
        let description = match body.get("description") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(Error::invalid("'description' must be a string")),
        };
        let local = matches!(body.get("local"), Some(Value::Bool(true)));
        let mut options = BTreeMap::new();
        match body.get("options") {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    let s = match v {
                        Value::String(s) => s.clone(),
                        // As OpenBao stores them ("1"/"0").
                        Value::Bool(b) => {
                            if *b {
                                "1".into()
                            } else {
                                "0".into()
                            }
                        }
                        Value::Number(n) => n.to_string(),
                        _ => {
                            return Err(Error::invalid(format!(
                                "audit option '{k}' must be a string"
                            )));
                        }
                    };
                    options.insert(k.clone(), s);
                }
            }
            Some(_) => return Err(Error::invalid("'options' must be an object")),
        }
        let cfg = DeviceConfig {
            path,
            kind,
            description,
            options,
            local,
            declared: false,
        };
        cfg.settings()?;
        Ok(cfg)
    }

    fn settings(&self) -> Result<Settings> {
        let flag = |name: &str, default: bool| -> Result<bool> {
            match self.options.get(name).map(|s| s.to_ascii_lowercase()) {
                None => Ok(default),
                Some(s) if s == "true" || s == "1" => Ok(true),
                Some(s) if s == "false" || s == "0" => Ok(false),
                Some(_) => Err(Error::invalid(format!(
                    "audit option '{name}' must be true or false"
                ))),
            }
        };
        for k in self.options.keys() {
            if !matches!(
                k.as_str(),
                "file_path"
                    | "path"
                    | "log_raw"
                    | "hmac_accessor"
                    | "format"
                    | "mode"
                    | "fsync"
                    | "elide_list_responses"
            ) {
                return Err(Error::invalid(format!(
                    "audit option '{k}' is not supported by Lockana (known: file_path, log_raw, \
                     hmac_accessor, format, mode, fsync)"
                )));
            }
        }
        match self.options.get("format").map(String::as_str) {
            None | Some("json") => {}
            Some(_) => {
                return Err(Error::invalid(
                    "audit option 'format' must be \"json\" (jsonx is not supported by Lockana)",
                ));
            }
        }
        let file_path = self
            .options
            .get("file_path")
            .or_else(|| self.options.get("path"))
            .filter(|p| !p.is_empty())
            .ok_or_else(|| Error::invalid("file_path is required"))?;
        let mode = match self.options.get("mode") {
            None => 0o600,
            Some(m) => u32::from_str_radix(m, 8)
                .ok()
                .filter(|m| *m <= 0o777)
                .ok_or_else(|| Error::invalid("audit option 'mode' must be an octal file mode"))?,
        };
        Ok(Settings {
            target: Target::from_file_path(file_path),
            mode,
            hashing: Hashing {
                raw: flag("log_raw", false)?,
                accessor: flag("hmac_accessor", true)?,
            },
            fsync: flag("fsync", false)?,
        })
    }

    fn to_json(&self) -> Value {
        json!({
            "type": self.kind,
            "description": self.description,
            "options": self.options,
            "local": self.local,
            "path": self.path,
        })
    }
}

fn normalize_path(p: &str) -> Result<String> {
    let p = p.trim_matches('/');
    if p.is_empty() {
        return Err(Error::invalid("audit device path must not be empty"));
    }
    if p.chars().any(|c| c.is_control()) {
        return Err(Error::invalid("invalid audit device path"));
    }
    Ok(format!("{p}/"))
}

struct Settings {
    target: Target,
    mode: u32,
    hashing: Hashing,
    fsync: bool,
}

/// An enabled device: its settings and its open sink, with the chain head.
struct Device {
    config: DeviceConfig,
    settings: Settings,
    state: Mutex<DeviceState>,
}

struct DeviceState {
    sink: Option<Sink>,
    /// The last written line's hash.
    head: String,
    /// The file ended mid-line when opened: start the next write on a new line.
    torn: bool,
}

impl Device {
    fn open(config: DeviceConfig, stored_head: Option<&String>) -> Result<Device> {
        let settings = config.settings()?;
        let (tail, torn) = Sink::tail_head(&settings.target);
        let head = tail
            .or_else(|| stored_head.cloned())
            .unwrap_or_else(|| chain::GENESIS.to_owned());
        let sink = match Sink::open(&settings.target, settings.mode) {
            Ok(s) => Some(s),
            Err(e) => {
                // Kept enabled: writes retry the open and fail closed meanwhile.
                tracing::error!(device = %config.path, error = %e, "cannot open audit device");
                None
            }
        };
        Ok(Device {
            config,
            settings,
            state: Mutex::new(DeviceState { sink, head, torn }),
        })
    }

    fn write(&self, body: &str) -> std::io::Result<()> {
        let mut st = self.state.lock();
        if st.sink.is_none() {
            st.sink = Some(Sink::open(&self.settings.target, self.settings.mode)?);
        }
        let (mut line, hash) = chain::seal_line(body, &st.head);
        if st.torn {
            line.insert(0, b'\n');
        }
        let sink = st.sink.as_mut().ok_or(std::io::ErrorKind::NotConnected)?;
        match sink.write_line(&line, self.settings.fsync) {
            Ok(()) => {
                st.head = hash;
                st.torn = false;
                Ok(())
            }
            Err(e) => {
                // A partial line may be in the file now; the next line starts fresh.
                st.torn = true;
                st.sink = None;
                Err(e)
            }
        }
    }

    fn reopen(&self) -> std::io::Result<()> {
        let mut st = self.state.lock();
        st.sink = None;
        st.sink = Some(Sink::open(&self.settings.target, self.settings.mode)?);
        st.torn = false;
        Ok(())
    }
}

#[derive(Default)]
struct State {
    salt: Option<Zeroizing<[u8; 32]>>,
    devices: Vec<Arc<Device>>,
}

/// Writes audit entries to every enabled device.
pub(crate) struct AuditBroker {
    state: RwLock<State>,
    declared: Mutex<Vec<DeviceConfig>>,
    /// Whether `sys/audit/<path>` may enable devices (OpenBao's
    /// `unsafe_allow_api_audit_creation`); the server turns it off for config files.
    api_creation: AtomicBool,
}

impl Default for AuditBroker {
    fn default() -> Self {
        AuditBroker {
            state: RwLock::new(State::default()),
            declared: Mutex::new(Vec::new()),
            api_creation: AtomicBool::new(true),
        }
    }
}

impl AuditBroker {
    /// Records a request about to be served. An error refuses the request.
    pub(crate) fn log_request(&self, req: &Request, auth: Option<&TokenEntry>) -> Result<()> {
        let id = uuid::Uuid::new_v4().to_string();
        let r = self.log(req, auth, Kind::Request, &id);
        REQUEST_ID.with(|c| *c.borrow_mut() = Some(id));
        r
    }

    /// Records the outcome of a served request (or of one refused before it was
    /// served: `auth = None`, outcome an error). An error withholds the response.
    pub(crate) fn log_response(
        &self,
        req: &Request,
        auth: Option<&TokenEntry>,
        outcome: &Result<Response>,
    ) -> Result<()> {
        let id = REQUEST_ID
            .with(|c| c.borrow_mut().take())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        self.log(req, auth, Kind::Response(outcome), &id)
    }

    fn log(
        &self,
        req: &Request,
        auth: Option<&TokenEntry>,
        kind: Kind<'_>,
        id: &str,
    ) -> Result<()> {
        let state = self.state.read();
        if state.devices.is_empty() {
            return Ok(());
        }
        let Some(salt) = state.salt.as_ref() else {
            return Err(AuditError::Unavailable.into());
        };
        let now = SystemTime::now();
        // Usually one device; build each hashing variant once.
        let mut built: Vec<(Hashing, String)> = Vec::with_capacity(1);
        let mut written = 0usize;
        for dev in &state.devices {
            let how = dev.settings.hashing;
            let body = match built.iter().find(|(h, _)| *h == how) {
                Some((_, b)) => b,
                None => {
                    let b = entry::build(salt, how, id, now, req, auth, kind);
                    built.push((how, b));
                    &built[built.len() - 1].1
                }
            };
            match dev.write(body) {
                Ok(()) => written += 1,
                Err(e) => {
                    tracing::error!(device = %dev.config.path, error = %e, "audit device write failed");
                }
            }
        }
        if written == 0 {
            return Err(AuditError::Unavailable.into());
        }
        Ok(())
    }

    /// After unseal: the salt, the table and the declared devices, opened.
    pub(crate) fn load(&self, barrier: &Barrier) -> Result<()> {
        let salt = match barrier.get(SALT_PATH)? {
            Some(b) if b.len() == 32 => {
                let mut k = Zeroizing::new([0u8; 32]);
                k.copy_from_slice(&b);
                k
            }
            Some(_) => return Err(StorageError::Corrupt.into()),
            None => {
                let k = random_key()?;
                barrier.put(SALT_PATH, &k[..])?;
                k
            }
        };
        let heads = load_heads(barrier)?;
        let mut configs = load_table(barrier)?;
        for d in self.declared.lock().iter() {
            if let Some(pos) = configs.iter().position(|c| c.path == d.path) {
                tracing::warn!(device = %d.path, "config file audit device replaces the API-enabled one at the same path");
                configs.remove(pos);
            }
            configs.push(d.clone());
        }
        configs.sort_by(|a, b| a.path.cmp(&b.path));
        let mut devices = Vec::with_capacity(configs.len());
        for c in configs {
            let head = heads.get(&c.path);
            devices.push(Arc::new(Device::open(c, head)?));
        }
        let mut st = self.state.write();
        st.salt = Some(salt);
        st.devices = devices;
        Ok(())
    }

    /// Before seal: records the chain heads (so a fresh file after a restart still
    /// continues the chain), then closes every device and forgets the salt.
    pub(crate) fn unload(&self, barrier: &Barrier) {
        if let Err(e) = self.save_heads(barrier) {
            tracing::warn!(error = %e, "could not record the audit chain heads");
        }
        let mut st = self.state.write();
        st.devices.clear();
        st.salt = None;
    }

    fn save_heads(&self, barrier: &Barrier) -> Result<()> {
        let st = self.state.read();
        if st.devices.is_empty() || barrier.is_sealed() {
            return Ok(());
        }
        let mut heads = load_heads(barrier)?;
        for d in &st.devices {
            heads.insert(d.config.path.clone(), d.state.lock().head.clone());
        }
        let bytes = serde_json::to_vec(&heads).map_err(|_| StorageError::Corrupt)?;
        barrier.put(HEADS_PATH, &bytes)
    }

    /// Reopens every device's file (log rotation); chains continue in the new files.
    pub(crate) fn reopen(&self, barrier: &Barrier) -> Result<()> {
        let mut failed = 0;
        for d in &self.state.read().devices {
            if let Err(e) = d.reopen() {
                failed += 1;
                tracing::error!(device = %d.config.path, error = %e, "cannot reopen audit device");
            }
        }
        self.save_heads(barrier)?;
        if failed > 0 {
            return Err(AuditError::Unavailable.into());
        }
        Ok(())
    }

    /// `sys/audit`: every device, keyed by path.
    pub(crate) fn list(&self) -> Map<String, Value> {
        self.state
            .read()
            .devices
            .iter()
            .map(|d| (d.config.path.clone(), d.config.to_json()))
            .collect()
    }

    /// `sys/audit/<path>` PUT.
    pub(crate) fn enable(&self, barrier: &Barrier, config: DeviceConfig) -> Result<()> {
        if !self.api_creation.load(Ordering::Relaxed) {
            return Err(Error::invalid(
                "cannot enable audit device via API; declare it in the server config file \
                 (`audit \"file\" \"<path>\" { options { file_path = \"...\" } }`) or set \
                 unsafe_allow_api_audit_creation = true",
            ));
        }
        let mut st = self.state.write();
        if st.devices.iter().any(|d| d.config.path == config.path) {
            return Err(Error::invalid(format!(
                "path already in use: an audit device is enabled at \"{}\"",
                config.path
            )));
        }
        let device = Device::open(config.clone(), None)?;
        // Vault refuses a device it cannot write to.
        device.write(&enabled_marker()).map_err(|e| {
            Error::invalid(format!(
                "audit backend failed test message: cannot write to \"{}\": {e}",
                config.path
            ))
        })?;
        let mut table = load_table(barrier)?;
        table.push(config);
        let bytes = serde_json::to_vec(&table).map_err(|_| StorageError::Corrupt)?;
        barrier.put(TABLE_PATH, &bytes)?;
        st.devices.push(Arc::new(device));
        st.devices.sort_by(|a, b| a.config.path.cmp(&b.config.path));
        Ok(())
    }

    /// `sys/audit/<path>` DELETE. Disabling a missing device is not an error (Vault).
    pub(crate) fn disable(&self, barrier: &Barrier, path: &str) -> Result<()> {
        let path = normalize_path(path)?;
        let mut st = self.state.write();
        if st
            .devices
            .iter()
            .any(|d| d.config.path == path && d.config.declared)
        {
            return Err(Error::invalid(
                "this audit device is declared in the server config file: remove it there",
            ));
        }
        let mut table = load_table(barrier)?;
        let before = table.len();
        table.retain(|c| c.path != path);
        if table.len() != before {
            let bytes = serde_json::to_vec(&table).map_err(|_| StorageError::Corrupt)?;
            barrier.put(TABLE_PATH, &bytes)?;
        }
        st.devices.retain(|d| d.config.path != path);
        Ok(())
    }

    /// `sys/audit-hash/<path>`: the HMAC of `input` as that device writes it.
    pub(crate) fn hash(&self, path: &str, input: &str) -> Result<String> {
        let path = normalize_path(path)?;
        let st = self.state.read();
        let dev = st
            .devices
            .iter()
            .find(|d| d.config.path == path)
            .ok_or_else(|| Error::invalid(format!("unknown audit backend {path}")))?;
        let _ = dev; // one salt per vault; Vault answers the HMAC even for log_raw devices
        let salt = st.salt.as_ref().ok_or(Error::Sealed)?;
        Ok(entry::hmac_id(salt, input))
    }
}

/// The test message Vault and OpenBao write when a device is enabled (a request
/// entry for `sys/audit/test`): proves the file is writable and starts its chain.
fn enabled_marker() -> String {
    json!({
        "time": crate::clock::rfc3339(SystemTime::now()),
        "type": "request",
        "auth": {"token_type": "default"},
        "request": {
            "id": uuid::Uuid::new_v4().to_string(),
            "operation": "update",
            "namespace": {"id": "root"},
            "path": "sys/audit/test",
        },
    })
    .to_string()
}

fn load_table(barrier: &Barrier) -> Result<Vec<DeviceConfig>> {
    match barrier.get(TABLE_PATH)? {
        None => Ok(Vec::new()),
        Some(b) => Ok(serde_json::from_slice(&b).map_err(|_| StorageError::Corrupt)?),
    }
}

fn load_heads(barrier: &Barrier) -> Result<BTreeMap<String, String>> {
    match barrier.get(HEADS_PATH)? {
        None => Ok(BTreeMap::new()),
        Some(b) => Ok(serde_json::from_slice(&b).map_err(|_| StorageError::Corrupt)?),
    }
}

impl Vault {
    /// Declares an audit device, as a server config file's `audit "file" "<path>"`
    /// block does: `body` is the `sys/audit/<path>` body (`type`, `description`,
    /// `options`). Declared devices are opened on every unseal (now, if unsealed),
    /// are not stored, and cannot be disabled through the API.
    pub fn declare_audit_device(&self, path: &str, body: &Value) -> Result<()> {
        let empty = Map::new();
        let mut config = DeviceConfig::parse(path, body.as_object().unwrap_or(&empty))?;
        config.declared = true;
        {
            let mut declared = self.core.audit.declared.lock();
            declared.retain(|c| c.path != config.path);
            declared.push(config);
        }
        if !self.core.barrier.is_sealed() {
            self.core.audit.load(&self.core.barrier)?;
        }
        Ok(())
    }

    /// Whether `sys/audit/<path>` may enable devices. On by default for the library
    /// (the caller is the operator); the server turns it off unless the config file
    /// says `unsafe_allow_api_audit_creation = true`, as OpenBao does, because a file
    /// device lets an API user write to any file the server can.
    pub fn set_api_audit_creation(&self, allow: bool) {
        self.core.audit.api_creation.store(allow, Ordering::Relaxed);
    }

    /// Reopens every audit device's file (after log rotation: SIGHUP). The chain
    /// continues in the new file. An error means some device could not reopen; it
    /// stays enabled and requests fail closed until it can write again.
    pub fn reopen_audit_devices(&self) -> Result<()> {
        self.core.audit.reopen(&self.core.barrier)
    }
}
