//! The audit broker: every authenticated request and its response are written to the
//! enabled audit devices before the client hears anything (fail-closed).
//!
//! - Entries follow Vault's shape (`type`, `time`, `auth`, `request`, `response`,
//!   `error`); every string value, token and accessor is `hmac-sha256:<hex>` under a
//!   per-vault salt kept behind the barrier (`core/audit-salt`).
//! - Each line also carries a hash chain (see [`chain`]) that `lockana audit verify`
//!   checks; it continues across reopened (rotated) files and restarts.
//! - Each device's chain head (`lockana_seq` and hash of its last line) is recorded
//!   behind the barrier (`core/audit-chain`) before a response is returned, so lines
//!   cut from the end of a file are detected (`sys/lockana/audit-head`). Every
//!   `checkpoint_interval` entries a checkpoint line signed with the vault's Ed25519
//!   audit key (`core/audit-signing-key`) vouches for the chain up to it.
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

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};

use self::entry::{Hashing, Kind};
use self::sink::{Sink, Target};
use crate::auth::token::TokenEntry;
use crate::barrier::{Barrier, Op, random_key};
use crate::{Error, IntegrityError, IntegrityKind, Request, Response, Result, StorageError, Vault};

pub use self::chain::{
    ChainBreak, ChainSummary, VerifyOptions, audit_key_id, verify_audit_chain, verify_audit_log,
};

const SALT_PATH: &str = "core/audit-salt";
const TABLE_PATH: &str = "core/audit";
const HEADS_PATH: &str = "core/audit-chain";
const SIGNING_KEY_PATH: &str = "core/audit-signing-key";
/// Entries between two signed checkpoint lines, unless a device says otherwise.
const DEFAULT_CHECKPOINT_INTERVAL: u64 = 100;

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
                    | "checkpoint_interval"
            ) {
                return Err(Error::invalid(format!(
                    "audit option '{k}' is not supported by Lockana (known: file_path, log_raw, \
                     hmac_accessor, format, mode, fsync, checkpoint_interval)"
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
        let checkpoint_interval = match self.options.get("checkpoint_interval") {
            None => DEFAULT_CHECKPOINT_INTERVAL,
            Some(n) => n
                .parse::<u64>()
                .ok()
                .filter(|n| *n <= 1_000_000)
                .ok_or_else(|| {
                    Error::invalid(
                        "audit option 'checkpoint_interval' must be a number of entries \
                     (0 turns checkpoints off)",
                    )
                })?,
        };
        Ok(Settings {
            checkpoint_interval,
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
    /// Entries between signed checkpoint lines (0: none).
    checkpoint_interval: u64,
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
    /// The last written line's hash and `lockana_seq`.
    head: Head,
    /// Entries written since the last checkpoint line.
    since_checkpoint: u64,
    /// The file ended mid-line when opened: start the next write on a new line.
    torn: bool,
}

/// A chain head: the `lockana_seq` and hash of a device's last line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Head {
    seq: u64,
    hash: String,
}

impl Head {
    fn genesis() -> Head {
        Head {
            seq: 0,
            hash: chain::GENESIS.to_owned(),
        }
    }
}

/// A recorded head as stored: older vaults stored the hash alone.
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredHead {
    Head(Head),
    Legacy(String),
}

/// Signs checkpoint lines: the vault's Ed25519 audit key (seed behind the barrier).
struct Signer {
    pair: Ed25519KeyPair,
    key_id: String,
}

impl Signer {
    fn from_seed(seed: &[u8]) -> Result<Signer> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(|_| StorageError::Corrupt)?;
        let key_id = chain::audit_key_id(pair.public_key().as_ref());
        Ok(Signer { pair, key_id })
    }

    fn public_key_hex(&self) -> String {
        hex::encode(self.pair.public_key().as_ref())
    }
}

/// Where a device resumes its chain: the file's last line, unless the recorded head
/// is further along (lines were cut from the file while the vault was down, or the
/// file was rotated away); then the chain continues from the recorded head, so the
/// gap stays visible to `audit verify` in the file itself.
fn resume_head(device: &str, tail: Option<(String, Option<u64>)>, stored: Option<&Head>) -> Head {
    match (tail, stored) {
        (None, None) => Head::genesis(),
        (None, Some(s)) => s.clone(),
        // A file written before lines carried `lockana_seq`.
        (Some((hash, None)), _) => Head {
            seq: stored.map_or(0, |s| s.seq),
            hash,
        },
        (Some((hash, Some(seq))), None) => Head { seq, hash },
        (Some((hash, Some(seq))), Some(s)) => {
            if hash == s.hash {
                Head { seq, hash }
            } else if seq > s.seq {
                // The crash window: lines written after the last recorded head.
                tracing::warn!(
                    device,
                    file_seq = seq,
                    recorded_seq = s.seq,
                    "audit file is ahead of its recorded head (written just before a crash); continuing from the file"
                );
                Head { seq, hash }
            } else {
                tracing::error!(
                    device,
                    file_seq = seq,
                    recorded_seq = s.seq,
                    "audit file ends before its recorded head: lines are missing from its end; the chain continues from the recorded head"
                );
                s.clone()
            }
        }
    }
}

impl Device {
    fn open(config: DeviceConfig, stored_head: Option<&Head>) -> Result<Device> {
        let settings = config.settings()?;
        let (tail, torn) = Sink::tail_head(&settings.target);
        let head = resume_head(&config.path, tail, stored_head);
        // Up to `interval - 1` entries may follow the file's last checkpoint: sign
        // right after the first new entry, so the next checkpoint is never later than
        // a verifier expects it.
        let since_checkpoint = settings.checkpoint_interval.saturating_sub(1);
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
            state: Mutex::new(DeviceState {
                sink,
                head,
                since_checkpoint,
                torn,
            }),
        })
    }

    /// Writes one entry, then a signed checkpoint line when one is due.
    fn write(&self, body: &str, signer: Option<&Signer>) -> std::io::Result<()> {
        let mut st = self.state.lock();
        self.append(&mut st, body)?;
        st.since_checkpoint += 1;
        let interval = self.settings.checkpoint_interval;
        if let Some(signer) = signer
            && interval > 0
            && st.since_checkpoint >= interval
        {
            let cp = self.checkpoint(&st, signer);
            self.append(&mut st, &cp)?;
            st.since_checkpoint = 0;
        }
        Ok(())
    }

    fn checkpoint(&self, st: &DeviceState, signer: &Signer) -> String {
        let time = crate::clock::rfc3339(SystemTime::now());
        let interval = self.settings.checkpoint_interval;
        let msg = chain::checkpoint_message(
            &self.config.path,
            st.head.seq + 1,
            &st.head.hash,
            interval,
            &time,
        );
        let signature = hex::encode(signer.pair.sign(&msg).as_ref());
        // A distinct `type`, so readers that select request/response entries skip it;
        // `auth` and `request` shaped like Vault's own audit test entry, so readers that
        // index every line's `request` still get an object.
        json!({
            "type": chain::CHECKPOINT_TYPE,
            "time": time,
            "auth": {"token_type": "default"},
            "request": {
                "id": uuid::Uuid::new_v4().to_string(),
                "operation": "update",
                "namespace": {"id": "root"},
                "path": "sys/lockana/audit-checkpoint",
            },
            "lockana_checkpoint": {
                "device": self.config.path,
                "interval": interval,
                "key_id": signer.key_id,
                "signature": signature,
            },
        })
        .to_string()
    }

    fn append(&self, st: &mut DeviceState, body: &str) -> std::io::Result<()> {
        if st.sink.is_none() {
            st.sink = Some(Sink::open(&self.settings.target, self.settings.mode)?);
        }
        let seq = st.head.seq + 1;
        let (mut line, hash) = chain::seal_line(body, seq, &st.head.hash);
        if st.torn {
            line.insert(0, b'\n');
        }
        let sink = st.sink.as_mut().ok_or(std::io::ErrorKind::NotConnected)?;
        match sink.write_line(&line, self.settings.fsync) {
            Ok(()) => {
                st.head = Head { seq, hash };
                st.torn = false;
                Ok(())
            }
            Err(e) => {
                // A partial line may be in the file now; the next line starts fresh
                // and continues the chain from the last complete one.
                st.torn = true;
                st.sink = None;
                Err(e)
            }
        }
    }

    fn head(&self) -> Head {
        self.state.lock().head.clone()
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
    signer: Option<Arc<Signer>>,
    devices: Vec<Arc<Device>>,
}

/// Writes audit entries to every enabled device.
pub(crate) struct AuditBroker {
    state: RwLock<State>,
    declared: Mutex<Vec<DeviceConfig>>,
    /// The heads recorded behind the barrier, by device path; its lock also makes
    /// concurrent requests share one storage write (group commit).
    anchored: Mutex<BTreeMap<String, Head>>,
    /// Whether `sys/audit/<path>` may enable devices (OpenBao's
    /// `unsafe_allow_api_audit_creation`); the server turns it off for config files.
    api_creation: AtomicBool,
    /// Requests and responses no device accepted (Vault's
    /// `vault.audit.log_{request,response}_failure`).
    pub(crate) request_failures: crate::metrics::Counter,
    pub(crate) response_failures: crate::metrics::Counter,
    /// Writes one device refused (another may have taken the entry).
    pub(crate) device_failures: crate::metrics::Counter,
    /// Set when an HA node steps down, until the next load: a request still running
    /// there is refused rather than served without an audit line. (A seal keeps
    /// Vault's behaviour: `sys/seal`'s own response is not audited.)
    withdrawn: AtomicBool,
}

impl Default for AuditBroker {
    fn default() -> Self {
        AuditBroker {
            state: RwLock::new(State::default()),
            declared: Mutex::new(Vec::new()),
            anchored: Mutex::new(BTreeMap::new()),
            api_creation: AtomicBool::new(true),
            withdrawn: AtomicBool::new(false),
            request_failures: Default::default(),
            response_failures: Default::default(),
            device_failures: Default::default(),
        }
    }
}

impl AuditBroker {
    /// Records a request about to be served. An error refuses the request.
    pub(crate) fn log_request(&self, req: &Request, auth: Option<&TokenEntry>) -> Result<()> {
        let id = uuid::Uuid::new_v4().to_string();
        let r = self.log(req, auth, Kind::Request, &id);
        REQUEST_ID.with(|c| *c.borrow_mut() = Some(id));
        if r.is_err() {
            self.request_failures.incr();
        }
        r
    }

    /// Records the outcome of a served request (or of one refused before it was
    /// served: `auth = None`, outcome an error), then records the chain heads behind
    /// the barrier. An error withholds the response.
    pub(crate) fn log_response(
        &self,
        barrier: &Barrier,
        req: &Request,
        auth: Option<&TokenEntry>,
        outcome: &Result<Response>,
    ) -> Result<()> {
        let id = REQUEST_ID
            .with(|c| c.borrow_mut().take())
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let r = self
            .log(req, auth, Kind::Response(outcome), &id)
            .and_then(|()| self.anchor(barrier));
        if r.is_err() {
            self.response_failures.incr();
        }
        r
    }

    /// Records every device's current head behind the barrier, unless a concurrent
    /// request already recorded these lines (or later ones): every line written before
    /// a response is returned is covered by a durable head. A process crash between
    /// the file write and this leaves the file ahead of the recorded head by the
    /// lines written meanwhile; `audit verify` reports that as "ahead", not missing.
    fn anchor(&self, barrier: &Barrier) -> Result<()> {
        let devices: Vec<Arc<Device>> = self.state.read().devices.clone();
        if devices.is_empty() {
            return Ok(());
        }
        let mut anchored = self.anchored.lock();
        let mut changed = false;
        for d in &devices {
            let head = d.head();
            if anchored
                .get(&d.config.path)
                .is_none_or(|a| a.seq < head.seq || (a.seq == head.seq && a.hash != head.hash))
            {
                anchored.insert(d.config.path.clone(), head);
                changed = true;
            }
        }
        if !changed {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&*anchored).map_err(|_| StorageError::Corrupt)?;
        if let Err(e) = barrier.put(HEADS_PATH, &bytes) {
            tracing::error!(error = %e, "cannot record the audit chain heads; the response is withheld");
            // Forget what was not stored, so the next request tries again.
            *anchored = load_heads(barrier).unwrap_or_default();
            return Err(AuditError::Unavailable.into());
        }
        Ok(())
    }

    fn log(
        &self,
        req: &Request,
        auth: Option<&TokenEntry>,
        kind: Kind<'_>,
        id: &str,
    ) -> Result<()> {
        if self.withdrawn.load(Ordering::Acquire) {
            return Err(AuditError::Unavailable.into());
        }
        let state = self.state.read();
        if state.devices.is_empty() {
            return Ok(());
        }
        let Some(salt) = state.salt.as_ref() else {
            return Err(AuditError::Unavailable.into());
        };
        let now = SystemTime::now();
        // Usually one device; build each hashing variant once.
        let signer = state.signer.as_deref();
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
            match dev.write(body, signer) {
                Ok(()) => written += 1,
                Err(e) => {
                    self.device_failures.incr();
                    tracing::error!(device = %dev.config.path, error = %e, "audit device write failed");
                }
            }
        }
        if written == 0 {
            return Err(AuditError::Unavailable.into());
        }
        Ok(())
    }

    /// Whether any device is enabled: then every request writes its chain heads
    /// behind the barrier (an fsync), reads included.
    pub(crate) fn is_enabled(&self) -> bool {
        !self.state.read().devices.is_empty()
    }

    /// After unseal: the salt, the table and the declared devices, opened.
    pub(crate) fn load(&self, barrier: &Barrier) -> Result<()> {
        let (salt, signer) = load_keys(barrier)?;
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
        *self.anchored.lock() = heads;
        self.withdrawn.store(false, Ordering::Release);
        let mut st = self.state.write();
        st.salt = Some(salt);
        st.signer = Some(Arc::new(signer));
        st.devices = devices;
        Ok(())
    }

    /// An HA node steps down: nothing more is audited (so nothing more is served)
    /// here until the devices are loaded again at a takeover.
    pub(crate) fn withdraw(&self) {
        self.withdrawn.store(true, Ordering::Release);
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
        st.signer = None;
    }

    fn save_heads(&self, barrier: &Barrier) -> Result<()> {
        if barrier.is_sealed() {
            return Ok(());
        }
        self.anchor(barrier)
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
        device
            .write(&enabled_marker(), st.signer.as_deref())
            .map_err(|e| {
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
        drop(st);
        self.anchor(barrier)
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
        drop(st);
        let mut anchored = self.anchored.lock();
        if anchored.remove(&path).is_some() {
            let bytes = serde_json::to_vec(&*anchored).map_err(|_| StorageError::Corrupt)?;
            barrier.put(HEADS_PATH, &bytes)?;
        }
        Ok(())
    }

    /// `sys/lockana/audit-head[/<path>]`: each device's current chain head (or one
    /// device's), with the public key that verifies its checkpoints.
    pub(crate) fn heads(&self, path: Option<&str>) -> Result<Map<String, Value>> {
        let path = path.map(normalize_path).transpose()?;
        let st = self.state.read();
        let signer = st.signer.as_ref().ok_or(Error::Sealed)?;
        let mut devices = Map::new();
        for d in &st.devices {
            if path.as_ref().is_some_and(|p| *p != d.config.path) {
                continue;
            }
            let head = d.head();
            let file_path = d
                .config
                .options
                .get("file_path")
                .or_else(|| d.config.options.get("path"));
            devices.insert(
                d.config.path.clone(),
                json!({
                    "seq": head.seq,
                    "hash": head.hash,
                    "file_path": file_path,
                    "checkpoint_interval": d.settings.checkpoint_interval,
                }),
            );
        }
        if let Some(p) = &path
            && devices.is_empty()
        {
            return Err(Error::invalid(format!("unknown audit backend {p}")));
        }
        let mut m = Map::new();
        m.insert("devices".into(), Value::Object(devices));
        m.insert("public_key".into(), json!(signer.public_key_hex()));
        m.insert("key_id".into(), json!(signer.key_id));
        Ok(m)
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

/// The salt and the checkpoint signing key, made on the first unseal (of a vault
/// that has neither) in one atomic write: a vault with either has had its salt.
///
/// A missing salt is damage once the vault shows it had one: the signing key (always
/// written with or after the salt), the device table or the chain heads (only ever
/// written while a loaded salt was held). A new salt would silently make every HMAC
/// in the audit logs unmatchable (`sys/audit-hash` answering other values), so the
/// unseal fails instead and the vault stays sealed. A vault with none of these
/// (initialized and never unsealed, or by a version before audit state existed) gets
/// them now. A salt present without a signing key is a vault from before signed
/// checkpoints: the key is added.
fn load_keys(barrier: &Barrier) -> Result<(Zeroizing<[u8; 32]>, Signer)> {
    let stored_salt = barrier.get(SALT_PATH)?;
    let stored_seed = barrier.get(SIGNING_KEY_PATH)?;
    let mut new = Vec::new();
    let salt = match stored_salt {
        Some(b) => key32(SALT_PATH, &b)?,
        None => {
            if stored_seed.is_some()
                || barrier.get(TABLE_PATH)?.is_some()
                || barrier.get(HEADS_PATH)?.is_some()
            {
                return Err(IntegrityError::at(SALT_PATH, IntegrityKind::Missing).into());
            }
            let k = random_key()?;
            new.push(Op::Put(SALT_PATH.to_owned(), k.to_vec()));
            k
        }
    };
    let seed = match stored_seed {
        Some(b) => key32(SIGNING_KEY_PATH, &b)?,
        None => {
            let k = random_key()?;
            new.push(Op::Put(SIGNING_KEY_PATH.to_owned(), k.to_vec()));
            k
        }
    };
    let signer = Signer::from_seed(&seed[..])?;
    if !new.is_empty() {
        barrier.apply(new)?;
    }
    Ok((salt, signer))
}

/// A stored 32-byte key; any other length is damage.
fn key32(path: &str, bytes: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
    let k: [u8; 32] = bytes
        .try_into()
        .map_err(|_| IntegrityError::at(path, IntegrityKind::Malformed))?;
    Ok(Zeroizing::new(k))
}

fn load_table(barrier: &Barrier) -> Result<Vec<DeviceConfig>> {
    match barrier.get(TABLE_PATH)? {
        None => Ok(Vec::new()),
        Some(b) => crate::barrier::decode_record(TABLE_PATH, &b),
    }
}

fn load_heads(barrier: &Barrier) -> Result<BTreeMap<String, Head>> {
    let stored: BTreeMap<String, StoredHead> = match barrier.get(HEADS_PATH)? {
        None => BTreeMap::new(),
        Some(b) => crate::barrier::decode_record(HEADS_PATH, &b)?,
    };
    Ok(stored
        .into_iter()
        .map(|(path, h)| {
            let head = match h {
                StoredHead::Head(h) => h,
                // No sequence number then: 0 makes any file line "ahead" of it.
                StoredHead::Legacy(hash) => Head { seq: 0, hash },
            };
            (path, head)
        })
        .collect())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::barrier::Cipher;
    use crate::storage::MemoryBackend;

    fn unsealed() -> Barrier {
        let b = Barrier::new(Arc::new(MemoryBackend::default()));
        let (key, _) = b.initialize(1, 1, Cipher::default(), 0).unwrap();
        b.unseal_with_key(&key[..]).unwrap();
        b
    }

    fn missing_salt(r: Result<(Zeroizing<[u8; 32]>, Signer)>) -> bool {
        matches!(r, Err(Error::Integrity(e))
            if e.key() == Some(SALT_PATH) && e.kind() == IntegrityKind::Missing)
    }

    /// The first unseal writes the salt and the signing key together; later unseals
    /// read the same ones.
    #[test]
    fn audit_keys_are_made_once_and_together() {
        let b = unsealed();
        let (salt, signer) = load_keys(&b).unwrap();
        assert!(b.get(SALT_PATH).unwrap().is_some());
        assert!(b.get(SIGNING_KEY_PATH).unwrap().is_some());
        let (again, signer2) = load_keys(&b).unwrap();
        assert_eq!(salt[..], again[..]);
        assert_eq!(signer.key_id, signer2.key_id);
    }

    /// A missing salt was once made anew at unseal, so the audit logs' HMACs stopped
    /// matching: wherever the vault shows it had a salt, that is damage.
    #[test]
    fn audit_salt_missing_after_the_vault_had_one_is_an_integrity_error() {
        for evidence in [SIGNING_KEY_PATH, TABLE_PATH, HEADS_PATH] {
            let b = unsealed();
            load_keys(&b).unwrap();
            b.apply(vec![Op::Delete(SALT_PATH.into())]).unwrap();
            if evidence != SIGNING_KEY_PATH {
                b.apply(vec![
                    Op::Delete(SIGNING_KEY_PATH.into()),
                    Op::Put(evidence.into(), b"{}".to_vec()),
                ])
                .unwrap();
            }
            assert!(missing_salt(load_keys(&b)), "with {evidence}");
            assert!(b.get(SALT_PATH).unwrap().is_none(), "nothing was written");
        }
    }

    /// A vault from before signed checkpoints has a salt and no signing key: it gets
    /// one, and keeps its salt. One with neither (never unsealed) gets both.
    #[test]
    fn older_vaults_get_the_audit_keys_they_lack() {
        let b = unsealed();
        let (salt, _) = load_keys(&b).unwrap();
        b.apply(vec![Op::Delete(SIGNING_KEY_PATH.into())]).unwrap();
        let (kept, _) = load_keys(&b).unwrap();
        assert_eq!(salt[..], kept[..]);
        assert!(b.get(SIGNING_KEY_PATH).unwrap().is_some());
        b.apply(vec![
            Op::Delete(SALT_PATH.into()),
            Op::Delete(SIGNING_KEY_PATH.into()),
        ])
        .unwrap();
        load_keys(&b).unwrap();
        assert!(b.get(SALT_PATH).unwrap().is_some());
    }

    #[test]
    fn audit_keys_of_the_wrong_length_are_malformed() {
        for path in [SALT_PATH, SIGNING_KEY_PATH] {
            let b = unsealed();
            load_keys(&b).unwrap();
            b.put(path, b"short").unwrap();
            match load_keys(&b) {
                Err(Error::Integrity(e)) => {
                    assert_eq!(e.key(), Some(path));
                    assert_eq!(e.kind(), IntegrityKind::Malformed);
                }
                other => panic!("{path}: {:?}", other.map(|_| ())),
            }
        }
    }
}
