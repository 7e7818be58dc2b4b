//! The vault: storage, barrier, seal state, token store and router behind one handle.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::{Mutex, RwLock};

use crate::audit::AuditBroker;
use crate::auth::token::{NewToken, TokenEntry, TokenStore};
use crate::barrier::{Barrier, Cipher, decode_share};
use crate::clock::{Clock, SystemClock};
use crate::engine::{Answer, Existence, LoginGrant};
use crate::ha::{HaConfig, Routing};
use crate::kv::{self, KeyLocks};
use crate::mounts::{MountEntry, MountTable};
use crate::notify::{Event, EventKind, Notifier};
use crate::policy::{Acl, Caps, PolicyStore};
use crate::storage::{Backend, MemoryBackend, PostgresBackend, RedbBackend};
use crate::{ClientToken, Error, Operation, Request, Response, Result};

/// Where the vault keeps its (encrypted) data.
#[derive(Clone)]
pub enum StorageConfig {
    /// Nothing survives the process: dev mode and tests.
    Memory,
    /// One redb file (created if missing); every commit is fsync'd.
    Redb(PathBuf),
    /// A PostgreSQL table (created if missing), reached with a libpq-style URL.
    Postgres {
        /// `postgres://user:password@host:port/database`.
        url: String,
        /// Table name (letters, digits, `_`).
        table: String,
    },
}

// The PostgreSQL URL may carry a password: never print it.
impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageConfig::Memory => f.write_str("Memory"),
            StorageConfig::Redb(path) => f.debug_tuple("Redb").field(path).finish(),
            StorageConfig::Postgres { table, .. } => f
                .debug_struct("Postgres")
                .field("url", &"<redacted>")
                .field("table", table)
                .finish(),
        }
    }
}

/// Seal state, as `sys/seal-status` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealStatus {
    /// Whether `sys/init` has run.
    pub initialized: bool,
    /// Whether the vault is sealed.
    pub sealed: bool,
    /// Shares needed to unseal.
    pub threshold: u8,
    /// Shares handed out at init.
    pub shares: u8,
    /// Shares submitted so far towards the next unseal.
    pub progress: u8,
}

/// What a dev-mode vault hands its operator.
pub struct DevCredentials {
    /// The root token.
    pub root_token: ClientToken,
    /// The single unseal key, base64.
    pub unseal_key_base64: String,
}

/// What `init` returns: the unseal key shares and the initial root token.
pub struct InitResult {
    /// Unseal key shares (raw bytes; transports encode them as hex and base64).
    pub keys: Vec<zeroize::Zeroizing<Vec<u8>>>,
    /// The initial root token.
    pub root_token: ClientToken,
}

/// A vault. Cheap to clone; clones share the same state.
#[derive(Clone)]
pub struct Vault {
    pub(crate) core: Arc<Core>,
}

pub(crate) struct Core {
    pub barrier: Barrier,
    pub clock: Arc<dyn Clock>,
    pub mounts: RwLock<MountTable>,
    pub tokens: TokenStore,
    pub policies: PolicyStore,
    pub auth_mounts: RwLock<MountTable>,
    pub locks: KeyLocks,
    pub kv_meta: kv::v2::MetaCache,
    pub audit: AuditBroker,
    pub notify: Notifier,
    /// Failed-login counters of userpass, approle and project codes (stored behind
    /// the barrier, loaded at unseal).
    pub lockouts: crate::auth::lockout::Lockouts,
    /// Pending two-step MFA logins and TOTP attempt counters (in memory).
    pub mfa: crate::identity::mfa::MfaState,
    /// Serializes init, unseal and seal so they never interleave.
    pub lifecycle: Mutex<()>,
    /// Rekey, root generation, remount and rotation-config state.
    pub operator: crate::sys::operator::OperatorState,
    /// Keys whose integrity failure was already notified.
    pub integrity_reported: Mutex<std::collections::HashSet<String>>,
    /// Request counters and latencies (`sys/metrics`).
    pub metrics: crate::metrics::Metrics,
    /// The system default and maximum TTL (`default_lease_ttl`, `max_lease_ttl`).
    pub ttls: Arc<crate::mounts::SystemTtls>,
    /// The `cluster_name` health and seal-status report (`lockana` unless set).
    pub cluster_name: RwLock<String>,
    /// This node's part in an HA cluster, if it is in one.
    pub ha: Option<crate::ha::Ha>,
}

/// Serves a request whose credential is in its body or a code header, not a token.
pub(crate) type Handler = fn(&Core, &Request) -> Result<Response>;

/// Refuses paths that could mean something other than they look: `..`, `.`, empty
/// segments and control characters.
fn check_path(path: &str) -> Result<()> {
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    if trimmed.is_empty() {
        return Err(Error::NoRoute(path.to_owned()));
    }
    if path.chars().any(|c| c.is_control())
        || trimmed
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(Error::invalid(
            "invalid request path: empty, '.' and '..' segments are not allowed",
        ));
    }
    Ok(())
}

impl Vault {
    /// Opens (or creates) a vault on the given storage. The vault starts sealed, or
    /// uninitialized on empty storage.
    pub fn open(storage: StorageConfig) -> Result<Vault> {
        Self::open_with_clock(storage, Arc::new(SystemClock))
    }

    /// As [`Vault::open`], with a clock of the caller's (tests use a fake one).
    pub fn open_with_clock(storage: StorageConfig, clock: Arc<dyn Clock>) -> Result<Vault> {
        Self::build(storage, None, clock)
    }

    /// Opens a node of a high-availability cluster: PostgreSQL storage shared with
    /// the other nodes, the lock in `ha.ha_table`. The node is unsealed on its own
    /// and then serves as a standby until it holds the lock (see `docs/operations.md`).
    pub fn open_ha(storage: StorageConfig, ha: HaConfig) -> Result<Vault> {
        Self::build(storage, Some(ha), Arc::new(SystemClock))
    }

    fn build(
        storage: StorageConfig,
        ha_config: Option<HaConfig>,
        clock: Arc<dyn Clock>,
    ) -> Result<Vault> {
        let mut ha = None;
        let backend: Arc<dyn Backend> = match (storage, &ha_config) {
            (StorageConfig::Memory, None) => Arc::new(MemoryBackend::default()),
            (StorageConfig::Redb(path), None) => Arc::new(RedbBackend::open(&path)?),
            (StorageConfig::Postgres { url, table }, None) => {
                Arc::new(PostgresBackend::open(&url, &table)?)
            }
            (StorageConfig::Postgres { url, table }, Some(config)) => {
                let (backend, fence) = PostgresBackend::open_ha(&url, &table, &config.ha_table)?;
                ha = Some(crate::ha::Ha::new(config, &url, fence));
                Arc::new(backend)
            }
            (_, Some(_)) => {
                return Err(Error::invalid(
                    "high availability needs the postgresql storage backend",
                ));
            }
        };
        let ttls = Arc::new(crate::mounts::SystemTtls::default());
        let vault = Vault {
            core: Arc::new(Core {
                barrier: Barrier::new(backend),
                clock,
                mounts: RwLock::new(MountTable::default()),
                tokens: TokenStore::new(ttls.clone()),
                policies: PolicyStore::default(),
                auth_mounts: RwLock::new(MountTable::auth()),
                locks: KeyLocks::default(),
                kv_meta: kv::v2::MetaCache::default(),
                audit: AuditBroker::default(),
                notify: Notifier::default(),
                lockouts: Default::default(),
                mfa: Default::default(),
                lifecycle: Mutex::new(()),
                operator: Default::default(),
                integrity_reported: Default::default(),
                metrics: Default::default(),
                ttls,
                cluster_name: RwLock::new("lockana".into()),
                ha,
            }),
        };
        vault.core.notify.start(Arc::downgrade(&vault.core));
        if let Some(ha) = &vault.core.ha {
            ha.start(Arc::downgrade(&vault.core))?;
        }
        Ok(vault)
    }

    /// An in-memory vault, initialized with one unseal key, unsealed, with KV v2
    /// mounted at `secret/` — as `vault server -dev` gives.
    pub fn dev(root_token_id: Option<String>) -> Result<(Vault, DevCredentials)> {
        use base64::Engine as _;
        let vault = Vault::open(StorageConfig::Memory)?;
        let init = vault
            .core
            .init(1, 1, Cipher::default(), root_token_id.as_deref())?;
        let key = init.keys.first().ok_or(Error::NotInitialized)?;
        let unseal_key_base64 = base64::engine::general_purpose::STANDARD.encode(&key[..]);
        vault.core.submit_share(key.clone())?;
        let body = serde_json::json!({"type": "kv", "options": {"version": "2"}, "description": "key/value secret storage"});
        let entry =
            crate::mounts::new_entry("secret", body.as_object().ok_or(Error::NotInitialized)?)?;
        vault.core.enable_mount(&vault.core.mounts, entry)?;
        Ok((
            vault,
            DevCredentials {
                root_token: init.root_token,
                unseal_key_base64,
            },
        ))
    }

    /// Initializes the vault: `shares` unseal key shares, `threshold` of which unseal.
    /// The vault stays sealed afterwards, as Vault's does.
    pub fn init(&self, shares: u8, threshold: u8, cipher: Cipher) -> Result<InitResult> {
        self.core.init(shares, threshold, cipher, None)
    }

    /// The single entry point: checks the token, routes and answers.
    pub fn handle(&self, req: Request) -> Result<Response> {
        self.core.handle(req)
    }

    /// Whether [`handle`](Vault::handle) would refuse `req` whatever its body: the
    /// path needs a token and the request has none that resolves, or the vault is
    /// sealed. Judged from the operation, path, token and code header only, so a
    /// transport can answer without reading the body, by passing the request on
    /// with empty data (the answer and the audit entry are then the same as with
    /// the body, less the body). Logins, project codes, unwrapping and the
    /// init/unseal/health family are never refused here: their body is their
    /// credential.
    pub fn refuses_whatever_the_body(&self, req: &Request) -> bool {
        self.core.refuses_whatever_the_body(req)
    }

    /// Whether serving `req` may write to storage itself (and so wait on an fsync),
    /// beyond what every request may write (audit, a limited-use token's count): a
    /// server runs those where blocking is allowed and the rest inline. A mount's
    /// engine says for its paths (reads and lists do not write unless it says so;
    /// other operations do unless it declares them pure computations, as transit's
    /// encrypt, decrypt, sign); elsewhere every operation but a read or list may. A
    /// response to wrap always does, and with an audit device enabled every request
    /// does (its chain heads are stored before the answer).
    pub fn may_write(&self, req: &Request) -> bool {
        if req.wrap_ttl.is_some() || self.core.audit.is_enabled() {
            return true;
        }
        let path = req.path.trim_start_matches('/');
        self.core
            .with_mount(path, |mount, rel| {
                mount.backend().may_write(rel, req.operation)
            })
            .unwrap_or(!matches!(req.operation, Operation::Read | Operation::List))
    }

    /// Whether a write to `path` (below `/v1/`) takes its body as bytes, passed in
    /// [`Request::raw_body`], rather than JSON: a snapshot to restore.
    pub fn takes_raw_body(path: &str) -> bool {
        crate::sys::snapshot::takes_raw_body(path)
    }

    /// Current seal state.
    pub fn seal_status(&self) -> SealStatus {
        self.core.seal_status()
    }

    /// Submits one unseal key share (hex or base64), as `sys/unseal` does.
    pub fn unseal(&self, share: &str) -> Result<SealStatus> {
        let share = decode_share(share)?;
        self.core.submit_share(share)?;
        Ok(self.core.seal_status())
    }

    /// Gives the vault an auto-unseal seal (`seal "static"`, `seal "transit"`). Set it
    /// before [`Vault::init`]: init then wraps the unseal key with the seal and the
    /// key shares it returns are recovery keys. On a vault initialized with the seal,
    /// [`Vault::unseal_with_seal`] opens it without shares.
    pub fn set_seal(&self, seal: Arc<dyn crate::KeyWrapper>) {
        self.core.barrier.set_seal(seal);
    }

    /// Unseals with the configured seal, if the vault is initialized and sealed
    /// (an uninitialized or unsealed vault is left as it is).
    pub fn unseal_with_seal(&self) -> Result<SealStatus> {
        self.core.unseal_with_seal()?;
        Ok(self.core.seal_status())
    }

    /// The system-wide default and maximum TTL of tokens and leases (Vault's
    /// `default_lease_ttl` and `max_lease_ttl`; both 768h unless set). A default
    /// above the maximum is refused.
    pub fn set_system_ttls(
        &self,
        default: std::time::Duration,
        max: std::time::Duration,
    ) -> Result<()> {
        self.core.ttls.set(default.as_secs(), max.as_secs())
    }

    /// The cluster name `sys/health` and `sys/seal-status` report (Vault's
    /// `cluster_name` setting; `lockana` unless set).
    pub fn set_cluster_name(&self, name: &str) {
        *self.core.cluster_name.write() = name.to_owned();
    }

    /// Seals the vault: key material is dropped (and zeroized).
    pub fn seal(&self) -> Result<()> {
        self.core.seal();
        Ok(())
    }

    /// Where a transport should send a request: here, or (on an HA standby) to
    /// the active node.
    pub fn routing(&self) -> Routing {
        self.core
            .ha
            .as_ref()
            .map_or(Routing::Local, |h| h.routing())
    }

    /// Seals the vault; the store closes when the last clone is dropped.
    pub fn close(&self) -> Result<()> {
        self.seal()
    }
}

impl Core {
    pub(crate) fn now(&self) -> SystemTime {
        self.clock.now()
    }

    pub(crate) fn seal_status(&self) -> SealStatus {
        // Storage that cannot be read is not reported uninitialized: that would invite
        // an init over it.
        let (config, readable) = match self.barrier.seal_config() {
            Ok(c) => (c, true),
            Err(_) => (None, false),
        };
        let (progress, _) = self.barrier.progress();
        // An unsealed HA standby holds the keyring but does not serve: it is unsealed.
        let sealed = self.barrier.is_sealed() && !self.ha.as_ref().is_some_and(|h| h.is_unsealed());
        SealStatus {
            initialized: config.is_some() || !readable,
            sealed,
            threshold: config.as_ref().map_or(0, |c| c.secret_threshold),
            shares: config.as_ref().map_or(0, |c| c.secret_shares),
            progress,
        }
    }

    pub(crate) fn init(
        &self,
        shares: u8,
        threshold: u8,
        cipher: Cipher,
        root_id: Option<&str>,
    ) -> Result<InitResult> {
        if shares == 0 || threshold == 0 {
            return Err(Error::invalid(
                "invalid seal configuration: secret_shares and secret_threshold must be at least 1",
            ));
        }
        if threshold > shares {
            return Err(Error::invalid(
                "invalid seal configuration: threshold cannot be larger than shares",
            ));
        }
        if shares > 1 && threshold == 1 {
            return Err(Error::invalid(
                "invalid seal configuration: threshold must be greater than one for multiple shares",
            ));
        }
        let lock = self.lifecycle.lock();
        let (unseal_key, keys) =
            self.barrier
                .initialize(shares, threshold, cipher, self.unix_now())?;
        // Unseal briefly to write the first root token, then seal again, as Vault does.
        self.barrier.unseal_with_key(&unseal_key[..])?;
        let result = self.tokens.create_salt(&self.barrier).and_then(|()| {
            MountTable::default().add_builtins(&self.barrier)?;
            self.tokens.create_root(&self.barrier, root_id, self.now())
        });
        self.barrier.seal();
        self.tokens.unload();
        let root_token = result?;
        drop(lock);
        // With an auto-unseal seal Vault comes up unsealed right after init.
        if self.barrier.has_seal() {
            self.unseal_with_seal()?;
        }
        Ok(InitResult { keys, root_token })
    }

    pub(crate) fn unseal_with_seal(&self) -> Result<()> {
        let _l = self.lifecycle.lock();
        let status = self.seal_status();
        if !status.initialized || !status.sealed {
            return Ok(());
        }
        self.barrier
            .unseal_with_seal()
            .inspect_err(|e| self.report_integrity(e))?;
        self.load_and_activate("at auto-unseal")?;
        tracing::info!("vault unsealed by its seal");
        Ok(())
    }

    pub(crate) fn submit_share(&self, share: zeroize::Zeroizing<Vec<u8>>) -> Result<u8> {
        let _l = self.lifecycle.lock();
        if !self.barrier.is_sealed() || self.ha.as_ref().is_some_and(|h| h.is_unsealed()) {
            return Ok(0);
        }
        let progress = self
            .barrier
            .submit_share(share)
            .inspect_err(|e| self.report_integrity(e))?;
        if progress > 0 {
            return Ok(progress);
        }
        if let Some(ha) = &self.ha {
            // A cluster node loads nothing until it holds the lock (`take_over`).
            ha.join();
            tracing::info!("vault unsealed; standing by for the HA lock");
            return Ok(0);
        }
        self.load_and_activate("at unseal")?;
        tracing::info!("vault unsealed");
        Ok(0)
    }

    /// All or nothing: everything the vault serves from is loaded before it reports
    /// unsealed; any failure (a storage panic included) leaves it sealed.
    fn load_and_activate(&self, when: &'static str) -> Result<()> {
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.post_unseal()))
            .unwrap_or_else(|_| {
                Err(crate::IntegrityError::engine(format!("while loading the vault {when}")).into())
            });
        if let Err(e) = loaded {
            tracing::error!(error = %e, when, "loading the vault failed; it stays sealed");
            self.unload();
            self.report_integrity(&e);
            return Err(e);
        }
        self.barrier.activate();
        self.emit(Event::new(EventKind::Unsealed, self.now()));
        Ok(())
    }

    /// Replaces everything stored with a snapshot's entries (checked by the caller),
    /// as Vault's restore does: nothing is served meanwhile, every cache is dropped,
    /// and the vault reloads from the restored data. Returns whether it is unsealed
    /// afterwards: a snapshot of this vault opens with the root key held now; one of
    /// another vault leaves it sealed, to be unsealed with that vault's keys. A
    /// failure leaves it sealed too, with storage as it was (the replacement is one
    /// atomic batch).
    pub(crate) fn restore_storage(&self, entries: Vec<(String, Vec<u8>)>) -> Result<bool> {
        let _l = self.lifecycle.lock();
        let root = self.barrier.held_root()?;
        self.unload();
        let opened = match self.barrier.replace_storage(entries, root) {
            Ok(opened) => opened,
            Err(e) => {
                tracing::error!(error = %e, "snapshot restore failed; the vault is sealed");
                self.unload();
                return Err(e);
            }
        };
        if !opened {
            tracing::warn!(
                "snapshot restored; its keyring does not open with this vault's root key: the vault is sealed, unseal it with the unseal keys of the vault the snapshot was taken from"
            );
            return Ok(false);
        }
        self.load_and_activate("after a snapshot restore")?;
        tracing::info!("snapshot restored; the vault is unsealed");
        Ok(true)
    }

    fn post_unseal(&self) -> Result<()> {
        self.tokens.load(&self.barrier)?;
        self.policies.load(&self.barrier)?;
        self.lockouts.load(&self.barrier, self.now())?;
        *self.mounts.write() = MountTable::load(&self.barrier)?;
        *self.auth_mounts.write() = MountTable::load_from(&self.barrier, crate::mounts::AUTH_PATH)?;
        for table in [&self.mounts, &self.auth_mounts] {
            let table = table.read();
            for m in table.entries() {
                m.backend().load(&self.ctx(m, m.view_prefix()))?;
            }
        }
        self.audit.load(&self.barrier)?;
        self.notify.load(&self.barrier)?;
        Ok(())
    }

    pub(crate) fn seal(&self) {
        let _l = self.lifecycle.lock();
        if !self.barrier.is_sealed() {
            self.emit(Event::new(EventKind::Sealed, self.now()));
        }
        if let Some(ha) = &self.ha {
            // Heads recorded and outbox left to the next active node, then the lock goes.
            self.audit.unload(&self.barrier);
            self.notify.forget_queue();
            ha.fence_close();
            ha.leave();
        }
        self.unload();
        tracing::info!("vault sealed");
    }

    /// An HA node that now holds the lock: reads the keyring again (the previous
    /// active node may have rotated it) and loads everything as an unseal does,
    /// from storage, into fresh caches; then serves. On failure nothing is served
    /// and the node stays a standby (still unsealed), to try again.
    pub(crate) fn take_over(&self) -> Result<()> {
        let _l = self.lifecycle.lock();
        if !self.ha.as_ref().is_some_and(|h| h.is_unsealed()) || !self.barrier.has_keyring() {
            return Err(Error::Sealed);
        }
        self.unload_caches();
        let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.barrier.reload_keyring()?;
            self.post_unseal()
        }))
        .unwrap_or_else(|_| {
            Err(crate::IntegrityError::engine("while taking over as the active node").into())
        });
        if let Err(e) = loaded {
            self.unload_caches();
            self.report_integrity(&e);
            return Err(e);
        }
        self.barrier.activate();
        Ok(())
    }

    /// An HA node gives up serving and becomes a standby (keyring kept): requests
    /// stop being served and writes are refused at once. (The audit chain heads
    /// need no last write: each response's head was recorded before it was sent.)
    pub(crate) fn step_down(&self) {
        let Some(ha) = &self.ha else { return };
        self.barrier.deactivate();
        ha.fence_close();
        self.audit.withdraw();
        let _l = self.lifecycle.lock();
        // Delivery is the active node's: it reloads the outbox (same event ids).
        self.notify.forget_queue();
        self.unload_caches();
        if ha.is_unsealed() {
            ha.join();
        }
        tracing::warn!("this node is now a standby");
    }

    /// Drops key material and everything loaded at unseal.
    fn unload(&self) {
        self.audit.unload(&self.barrier);
        self.notify.unload();
        self.barrier.seal();
        self.unload_caches();
    }

    /// Drops everything loaded at unseal or takeover, keeping the keyring.
    fn unload_caches(&self) {
        self.audit.unload(&self.barrier);
        self.notify.unload();
        self.kv_meta.clear();
        self.tokens.unload();
        self.policies.unload();
        self.lockouts.clear();
        self.mfa.clear();
        self.operator.clear();
        *self.mounts.write() = MountTable::default();
        *self.auth_mounts.write() = MountTable::auth();
    }

    /// Enables a mount (`sys/mounts`, `sys/auth`): adds it to `table`, persisted, and
    /// runs its backend's initialization; if that fails, the mount is removed again.
    pub(crate) fn enable_mount(&self, table: &RwLock<MountTable>, entry: MountEntry) -> Result<()> {
        let mut table = table.write();
        let path = entry.path.clone();
        table.add(&self.barrier, entry)?;
        let initialized = table.get(&path).map_or(Ok(()), |m| {
            m.backend().initialize(&self.ctx(m, m.view_prefix()))
        });
        if let Err(e) = initialized {
            table.remove(&self.barrier, &path)?;
            return Err(e);
        }
        Ok(())
    }

    /// Disables the mount at `path`: its backend cleans up, then the mount and all of
    /// its data go in one commit. `false` when nothing is mounted there.
    pub(crate) fn disable_mount(&self, table: &RwLock<MountTable>, path: &str) -> Result<bool> {
        let mut table = table.write();
        if let Some(m) = table.get(path) {
            m.backend().cleanup(&self.ctx(m, m.view_prefix()))?;
        }
        table.remove(&self.barrier, path)
    }

    /// Logs an integrity failure (its key, never a value) and raises a notification,
    /// once per key per process so a damaged entry read in a loop does not flood
    /// the channels.
    pub(crate) fn report_integrity(&self, err: &Error) {
        let Error::Integrity(e) = err else { return };
        tracing::error!(key = e.key().unwrap_or(""), error = %e, "storage integrity failure");
        let first = {
            let mut seen = self.integrity_reported.lock();
            let key = e.key().unwrap_or("").to_owned();
            // Bounded: past the cap every failure is reported.
            seen.len() >= 1024 || seen.insert(key)
        };
        if first {
            self.emit(Event::new(EventKind::IntegrityFailure, self.now()).outcome(e.to_string()));
        }
    }

    /// Seconds since the Unix epoch on the vault's clock.
    pub(crate) fn unix_now(&self) -> u64 {
        self.now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    fn authenticate(&self, token: Option<&ClientToken>) -> Result<Arc<TokenEntry>> {
        let token = token.ok_or(Error::Unauthenticated)?;
        self.tokens
            .lookup(&self.barrier, token, self.now())?
            .ok_or(Error::Unauthenticated)
    }

    fn handle(&self, req: Request) -> Result<Response> {
        let timing = self.time_request(&req);
        let outcome = self.serve(req);
        if crate::ha::take_step_down_mark()
            && outcome.is_ok()
            && let Some(ha) = &self.ha
        {
            ha.request_step_down();
        }
        if let Err(e) = &outcome {
            self.report_integrity(e);
        }
        timing.finish(outcome.is_err());
        // A seal that lands while a request runs pulls the mount table and tokens from
        // under it; report that as what it is.
        match outcome {
            Err(
                Error::NoRoute(_)
                | Error::PermissionDenied
                | Error::Unauthenticated
                | Error::NotFound,
            ) if self.barrier.is_sealed() => Err(Error::Sealed),
            other => other,
        }
    }

    fn refuses_whatever_the_body(&self, req: &Request) -> bool {
        let path = req.path.trim_start_matches('/');
        if check_path(path).is_err() || crate::sys::is_unauthenticated(path) {
            return false;
        }
        if self.barrier.is_sealed() {
            return true;
        }
        // The same special paths, in the same order, as `serve`.
        if self.tokenless(req).is_some() || self.is_login(req) || path == "sys/internal/ui/mounts" {
            return false;
        }
        self.authenticate(req.token.as_ref()).is_err()
    }

    fn serve(&self, mut req: Request) -> Result<Response> {
        if req.operation == Operation::List && !req.path.ends_with('/') {
            // Vault lists directories: `LIST secret/metadata/dir` means `.../dir/`.
            req.path.push('/');
        }
        if req.path.starts_with('/') {
            req.path = req.path.trim_start_matches('/').to_owned();
        }
        check_path(&req.path)?;
        if req.head && crate::sys::is_unauthenticated(&req.path) {
            // Vault's raw status handlers (seal-status, init, leader) serve GET only.
            return Err(Error::UnsupportedOperation);
        }
        if crate::sys::is_unauthenticated(&req.path) {
            return crate::sys::handle_unauthenticated(self, &req);
        }
        if let Some(ha) = &self.ha
            && ha.is_unsealed()
            && !ha.is_active()
        {
            return Err(Error::Standby);
        }
        if self.barrier.is_sealed() {
            return Err(Error::Sealed);
        }
        if req.head {
            return self.serve_head(&req);
        }
        crate::sys::rotation::rotate_if_due(self);
        if req.help {
            // Vault lets any valid token read any path's help; no policy applies. Audited
            // like every other request, failed ones included.
            let entry = match self.authenticate(req.token.as_ref()) {
                Ok(entry) => entry,
                Err(e) => {
                    let outcome = Err(e);
                    self.audit.log_request(&req, None)?;
                    self.audit
                        .log_response(&self.barrier, &req, None, &outcome)?;
                    return outcome;
                }
            };
            self.audit.log_request(&req, Some(&entry))?;
            let outcome = crate::help::answer(self, &req.path);
            self.audit
                .log_response(&self.barrier, &req, Some(&entry), &outcome)?;
            return outcome;
        }
        if let Some(serve) = self.tokenless(&req) {
            return self.serve_tokenless(&req, serve);
        }
        if let Some(outcome) = self.try_login(&req) {
            return outcome;
        }
        let entry = match self.authenticate(req.token.as_ref()) {
            Ok(entry) => entry,
            // Vault answers the UI mount listing without a valid token, with nothing in it.
            Err(Error::Unauthenticated) if req.path == "sys/internal/ui/mounts" => {
                return Ok(crate::sys::empty_ui_mounts());
            }
            Err(e) => {
                let outcome = Err(e);
                self.audit.log_request(&req, None)?;
                self.audit
                    .log_response(&self.barrier, &req, None, &outcome)?;
                return outcome;
            }
        };
        let acl = self.policies.acl(&entry.policies);
        if let Err(e) = self.authorize(&req, &acl, &entry) {
            let outcome = Err(e);
            self.audit.log_request(&req, Some(&entry))?;
            self.audit
                .log_response(&self.barrier, &req, Some(&entry), &outcome)?;
            return outcome;
        }
        // Fail closed: a request no audit device accepted is not served, and a response
        // no device accepted is not returned.
        self.audit.log_request(&req, Some(&entry))?;
        // The CLI asks for the mount of every `bao kv` path first; Vault serves that
        // lookup without spending one of the token's uses.
        let entry = if req.path.starts_with("sys/internal/ui/mounts/") {
            entry
        } else {
            self.tokens.use_once(&self.barrier, &entry)?
        };
        let mut outcome = self.route(&req, &entry, &acl);
        if let Ok(resp) = &mut outcome {
            self.warn_unrecognized(&req, resp);
        }
        if let (Some(ttl), Ok(resp)) = (req.wrap_ttl, &outcome)
            && (resp.data.is_some() || resp.auth.is_some())
            && resp.wrap_info.is_none()
        {
            outcome =
                outcome.and_then(|resp| crate::sys::wrapping::wrap(self, resp, ttl, &req.path));
        }
        if let Err(e) = self.tokens.finish_use(&self.barrier, &entry) {
            outcome = Err(e);
        }
        self.audit
            .log_response(&self.barrier, &req, Some(&entry), &outcome)?;
        self.notify_request(&req, &entry, &outcome);
        outcome
    }

    /// Serves a HEAD request (see [`Request::head`]). ACLs grant no capability for
    /// Vault's header operation, so only a root token reaches the route check.
    fn serve_head(&self, req: &Request) -> Result<Response> {
        let entry = match self.authenticate(req.token.as_ref()) {
            Ok(entry) => Some(entry),
            Err(e) => {
                let outcome = Err(e);
                self.audit.log_request(req, None)?;
                self.audit
                    .log_response(&self.barrier, req, None, &outcome)?;
                return outcome;
            }
        };
        let entry = entry.as_deref();
        self.audit.log_request(req, entry)?;
        let is_root = entry.is_some_and(|e| self.policies.acl(&e.policies).is_root());
        let outcome = if !is_root {
            Err(Error::PermissionDenied)
        } else if crate::help::routes(self, &req.path) {
            Err(Error::UnsupportedOperation)
        } else {
            Err(Error::NoRoute(req.path.clone()))
        };
        self.audit
            .log_response(&self.barrier, req, entry, &outcome)?;
        outcome
    }

    /// Adds Vault's warning about request fields the serving path does not take, on
    /// answers that have a body (Vault adds it only to a non-nil response, so a 204
    /// stays a 204).
    fn warn_unrecognized(&self, req: &Request, resp: &mut Response) {
        let has_body = resp.format != crate::logical::ResponseFormat::Raw
            && resp.raw_body.is_none()
            && resp.wrap_info.is_none()
            && resp.status != Some(204)
            && (resp.data.is_some()
                || resp.auth.is_some()
                || !resp.warnings.is_empty()
                || resp.status.is_some());
        if has_body && let Some(w) = crate::help::unrecognized_warning(self, &req.path, &req.data) {
            resp.warnings.push(w);
        }
    }

    /// Checks the token's ACL for the request: create vs update by existence, and
    /// `sudo` on root-protected paths.
    fn authorize(&self, req: &Request, acl: &Acl, entry: &TokenEntry) -> Result<()> {
        if acl.policy_names_only(crate::sys::wrapping::WRAPPING_POLICY) {
            // A wrapping token is good for unwrapping (served before this) and nothing else.
            return Err(Error::PermissionDenied);
        }
        if acl.is_root() {
            return Ok(());
        }
        let path = req.path.as_str();
        let mut needed = Caps::for_operation(req.operation);
        // Where an existence check applies, a write of a new entry needs `create`;
        // without one, `update` covers both, as in Vault.
        if req.operation == Operation::Update && self.existence(path, entry)? == Existence::Missing
        {
            needed = Caps::CREATE;
        }
        let caps = acl.capabilities(path);
        let mut ok = caps.contains(needed);
        if ok && self.needs_sudo(path, req.operation) && !caps.contains(Caps::SUDO) {
            ok = false;
        }
        if ok {
            let writes = matches!(
                req.operation,
                Operation::Create | Operation::Update | Operation::Patch
            );
            acl.check_params(path, writes.then_some(&req.data), req.wrap_ttl)?;
        }
        if ok {
            Ok(())
        } else {
            Err(Error::PermissionDenied)
        }
    }

    /// The existence check of a write to `path`, as the backend serving it declares.
    fn existence(&self, path: &str, token: &TokenEntry) -> Result<Existence> {
        if let Some(rest) = path.strip_prefix("sys/") {
            return Ok(crate::sys::existence(self, rest));
        }
        self.with_mount(path, |mount, rel| {
            mount
                .backend()
                .existence(&self.mount_ctx(mount, token), rel)
        })
        .unwrap_or(Ok(Existence::NoCheck))
    }

    /// Whether `path` is root-protected (needs `sudo`) for `op`, as the backend
    /// serving it declares.
    fn needs_sudo(&self, path: &str, op: Operation) -> bool {
        if let Some(rest) = path.strip_prefix("sys/") {
            return crate::sys::SPECIAL.needs_sudo(rest, op);
        }
        if let Some(rest) = path.strip_prefix("auth/token/") {
            return crate::auth::token_api::SPECIAL.needs_sudo(rest, op);
        }
        self.with_mount(path, |mount, rel| {
            mount.backend().special_paths().needs_sudo(rel, op)
        })
        .unwrap_or(false)
    }

    /// Runs `f` with the mount serving `path` — a secrets engine, or an auth method
    /// below `auth/` — and the path below that mount. `None` for the built-in
    /// backends (`sys/`, `auth/token/`, `identity/`, `lockana/`) and unmounted paths.
    pub(crate) fn with_mount<T>(
        &self,
        path: &str,
        f: impl FnOnce(&MountEntry, &str) -> T,
    ) -> Option<T> {
        let (table, rest) = match path.strip_prefix("auth/") {
            Some(rest) if rest.starts_with("token/") => return None,
            Some(rest) => (&self.auth_mounts, rest),
            None if ["sys/", "identity/", "lockana/"]
                .iter()
                .any(|p| path.starts_with(p)) =>
            {
                return None;
            }
            None => (&self.mounts, path),
        };
        let mounts = table.read();
        let mount = mounts.route(rest)?;
        Some(f(mount, rest.get(mount.path.len()..).unwrap_or("")))
    }

    /// The handler of a request the built-in backends serve without a token, its
    /// credential being in the body (project codes, MFA validation, unwrapping).
    fn tokenless(&self, req: &Request) -> Option<Handler> {
        crate::projects::tokenless(req).or_else(|| crate::sys::tokenless(req))
    }

    /// Serves a [`tokenless`](Core::tokenless) request, audited without a token.
    fn serve_tokenless(&self, req: &Request, serve: Handler) -> Result<Response> {
        self.audit.log_request(req, None)?;
        let outcome = serve(self, req);
        self.audit
            .log_response(&self.barrier, req, None, &outcome)?;
        outcome
    }

    /// Whether the request is a login to an enabled auth method.
    pub(crate) fn is_login(&self, req: &Request) -> bool {
        let Some(rest) = req.path.strip_prefix("auth/") else {
            return false;
        };
        let mounts = self.auth_mounts.read();
        mounts.route(rest).is_some_and(|mount| {
            !rest.starts_with("token/")
                && mount
                    .backend()
                    .special_paths()
                    .is_unauthenticated(rest.get(mount.path.len()..).unwrap_or(""), req.operation)
        })
    }

    /// Serves a login path of an auth method, if the request is one.
    fn try_login(&self, req: &Request) -> Option<Result<Response>> {
        let rest = req.path.strip_prefix("auth/")?;
        if rest.starts_with("token/") {
            return None;
        }
        let mounts = self.auth_mounts.read();
        let mount = mounts.route(rest)?;
        let rel = rest.get(mount.path.len()..).unwrap_or("");
        if !mount
            .backend()
            .special_paths()
            .is_unauthenticated(rel, req.operation)
        {
            return None;
        }
        let ctx = self.ctx(mount, mount.view_prefix());
        let run = || -> Result<Response> {
            self.audit.log_request(req, None)?;
            let mut outcome = match mount.backend().handle(&ctx, req, rel) {
                Ok(Answer::Login(grant)) => self.mint_login_token(mount, req, grant),
                Ok(Answer::Response(r)) => Ok(*r),
                Err(e) => Err(e),
            };
            if let Ok(resp) = &mut outcome {
                self.warn_unrecognized(req, resp);
            }
            self.audit
                .log_response(&self.barrier, req, None, &outcome)?;
            if matches!(
                outcome,
                Err(Error::InvalidRequest(_) | Error::PermissionDenied)
            ) {
                let locked = self.lockouts.is_locked(
                    &mount.accessor,
                    login_alias(rel, &req.data),
                    self.now(),
                );
                let kind = if locked {
                    EventKind::UserLockedOut
                } else {
                    EventKind::LoginFailed {
                        method: mount.kind.clone(),
                    }
                };
                self.emit(
                    Event::new(kind, self.now())
                        .path(req.path.clone())
                        .outcome("login failed")
                        .connection(&req.connection),
                );
            }
            outcome
        };
        Some(run())
    }

    /// Turns a login grant into a token, with the mount's TTL defaults — once the
    /// login's identity entity is known and login MFA, if enforced, is satisfied.
    fn mint_login_token(
        &self,
        mount: &MountEntry,
        req: &Request,
        grant: LoginGrant,
    ) -> Result<Response> {
        let entity = crate::identity::entity_for_login(self, mount, &grant.alias)?;
        match crate::identity::mfa::check_login(self, mount, req, &grant, &entity)? {
            crate::identity::mfa::LoginCheck::Required(resp) => Ok(*resp),
            crate::identity::mfa::LoginCheck::Issue(warnings) => {
                self.issue_login_token(mount, &req.path, grant, &entity.id, warnings)
            }
        }
    }

    /// Mints a login's token (after MFA, when enforced).
    pub(crate) fn issue_login_token(
        &self,
        mount: &MountEntry,
        path: &str,
        grant: LoginGrant,
        entity_id: &str,
        warnings: Vec<String>,
    ) -> Result<Response> {
        let mut policies: Vec<String> = Vec::new();
        for p in &grant.policies {
            let n = crate::policy::normalize_name(p)?;
            // Only a root token may hand out root; a login never does.
            if n != "root" && !policies.contains(&n) {
                policies.push(n);
            }
        }
        if !grant.no_default_policy && !policies.iter().any(|p| p == "default") {
            policies.push("default".into());
        }
        policies.sort();
        let ttl = if grant.ttl > 0 {
            grant.ttl
        } else {
            mount.config.default_lease_ttl
        };
        let max_ttl = if grant.max_ttl > 0 {
            grant.max_ttl
        } else {
            mount.config.max_lease_ttl
        };
        let t = NewToken {
            policies,
            meta: if grant.meta.is_empty() {
                None
            } else {
                Some(grant.meta.clone())
            },
            display_name: format!(
                "{}-{}",
                mount.path.trim_end_matches('/').replace('/', "-"),
                grant.alias
            ),
            path: path.to_owned(),
            ttl,
            max_ttl,
            period: grant.period,
            num_uses: grant.num_uses,
            renewable: true,
            entity_id: entity_id.to_owned(),
            ..Default::default()
        };
        let (token, entry) = self.tokens.create(&self.barrier, self.now(), t)?;
        let mut r = Response::empty();
        r.auth = Some(entry.to_auth(Some(token)));
        r.mount_type = mount.kind.clone();
        r.warnings = warnings;
        Ok(r)
    }

    /// The context of a request to `mount` by `token`: per-token backends
    /// (cubbyhole) see only the token's own corner of the mount's storage.
    pub(crate) fn mount_ctx<'a>(
        &'a self,
        mount: &'a MountEntry,
        token: &TokenEntry,
    ) -> kv::Ctx<'a> {
        let mut prefix = mount.view_prefix();
        if mount.backend().per_token_storage() {
            prefix.push_str(&token.accessor);
            prefix.push('/');
        }
        self.ctx(mount, prefix)
    }

    pub(crate) fn ctx<'a>(&'a self, mount: &'a MountEntry, prefix: String) -> kv::Ctx<'a> {
        kv::Ctx {
            barrier: &self.barrier,
            mount,
            prefix,
            now: self.now(),
            locks: &self.locks,
            meta_cache: &self.kv_meta,
            lockouts: &self.lockouts,
            ttls: &self.ttls,
        }
    }

    fn route(&self, req: &Request, entry: &TokenEntry, acl: &Acl) -> Result<Response> {
        let path = req.path.as_str();
        if let Some(rest) = path.strip_prefix("sys/") {
            return crate::sys::handle(self, req, rest, acl);
        }
        if let Some(rest) = path.strip_prefix("auth/token/") {
            return crate::auth::token_api::handle(self, req, rest, entry, acl);
        }
        if let Some(rest) = path.strip_prefix("identity/") {
            return crate::identity::handle(self, req, rest, entry);
        }
        if let Some(rest) = path.strip_prefix("lockana/") {
            return crate::projects::handle(self, req, rest);
        }
        self.with_mount(path, |mount, rel| {
            let ctx = self.mount_ctx(mount, entry);
            match mount.backend().handle(&ctx, req, rel)? {
                Answer::Response(mut r) => {
                    r.mount_type = mount.kind.clone();
                    Ok(*r)
                }
                Answer::Login(grant) => self.mint_login_token(mount, req, grant),
            }
        })
        .unwrap_or_else(|| Err(Error::NoRoute(path.to_owned())))
    }
}

/// The name a failed login was for, as the lockout counts it: the user in
/// `login/<user>`, else the `role_id` (approle) or `role` (jwt) in the body.
fn login_alias<'a>(rel: &'a str, data: &'a serde_json::Map<String, serde_json::Value>) -> &'a str {
    if let Some(user) = rel.strip_prefix("login/") {
        return user;
    }
    ["role_id", "role"]
        .iter()
        .find_map(|k| data.get(*k).and_then(|v| v.as_str()))
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_dot_segments_or_empty_segments_are_refused() {
        for p in [
            "secret/../sys/seal",
            "secret//x",
            "secret/./x",
            "a\nb",
            "..",
        ] {
            assert!(check_path(p).is_err(), "{p:?}");
        }
        for p in ["secret/data/x", "secret/metadata/", "sys/mounts"] {
            assert!(check_path(p).is_ok(), "{p:?}");
        }
    }

    fn integrity_at(r: Result<impl Sized>) -> (String, crate::IntegrityKind) {
        match r {
            Err(Error::Integrity(e)) => (e.key().unwrap_or_default().to_owned(), e.kind()),
            Err(other) => panic!("want an integrity error, got {other:?}"),
            Ok(_) => panic!("want an integrity error, got a success"),
        }
    }

    /// A record that decrypts but does not decode (a bug, a downgrade, a restore of
    /// the wrong thing) once read as the bare "corrupt record in storage": it is an
    /// integrity error naming its storage key, through the engines' `Ctx::get_json`,
    /// identity's `get_json` and the token role store.
    #[test]
    fn undecodable_records_are_integrity_errors_naming_their_key() {
        let (vault, creds) = Vault::dev(None).unwrap();
        let core = &vault.core;
        let malformed = crate::IntegrityKind::Malformed;

        let mounts = core.mounts.read();
        let mount = mounts.get("secret/").unwrap();
        let ctx = core.ctx(mount, mount.view_prefix());
        let key = ctx.key("engine/record");
        core.barrier.put(&key, b"{not json").unwrap();
        assert_eq!(
            integrity_at(ctx.get_json::<serde_json::Value>("engine/record")),
            (key, malformed)
        );
        drop(mounts);

        core.barrier.put("identity/x/record", b"\xff").unwrap();
        assert_eq!(
            integrity_at(crate::identity::get_json::<serde_json::Value>(
                core,
                "identity/x/record"
            )),
            ("identity/x/record".to_owned(), malformed)
        );

        let root = creds.root_token.expose().to_owned();
        let call = |op, path: &str| {
            vault.handle(
                Request::new(op, path)
                    .with_token(root.clone())
                    .with_data(serde_json::json!({"allowed_policies": "default"})),
            )
        };
        call(Operation::Update, "auth/token/roles/r").unwrap();
        core.barrier.put("sys/token/role/r", b"[]").unwrap();
        assert_eq!(
            integrity_at(call(Operation::Read, "auth/token/roles/r")),
            ("sys/token/role/r".to_owned(), malformed)
        );
    }

    /// Records loaded at unseal (the mount table, a policy) that do not decode leave
    /// the vault sealed with an integrity error naming the record.
    #[test]
    fn undecodable_record_loaded_at_unseal_leaves_the_vault_sealed_naming_it() {
        for key in ["core/mounts", "sys/policy/default", "core/audit"] {
            let (vault, creds) = Vault::dev(None).unwrap();
            vault.core.barrier.put(key, b"{not json").unwrap();
            vault.seal().unwrap();
            assert_eq!(
                integrity_at(vault.unseal(&creds.unseal_key_base64)),
                (key.to_owned(), crate::IntegrityKind::Malformed),
                "{key}"
            );
            assert!(vault.seal_status().sealed, "{key}");
        }
    }
}
