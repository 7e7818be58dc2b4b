//! The vault: storage, barrier, seal state, token store and router behind one handle.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::{Mutex, RwLock};

use crate::audit::AuditBroker;
use crate::auth::token::{TokenEntry, TokenStore};
use crate::barrier::{Barrier, Cipher, decode_share};
use crate::clock::{Clock, SystemClock};
use crate::kv::{self, KeyLocks};
use crate::mounts::{EngineKind, MountTable};
use crate::storage::{Backend, MemoryBackend, RedbBackend};
use crate::{ClientToken, Error, Operation, Request, Response, Result};

/// Where the vault keeps its (encrypted) data.
#[derive(Debug, Clone)]
pub enum StorageConfig {
    /// Nothing survives the process: dev mode and tests.
    Memory,
    /// One redb file (created if missing); every commit is fsync'd.
    Redb(PathBuf),
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
    pub locks: KeyLocks,
    pub audit: AuditBroker,
    /// Serializes init, unseal and seal so they never interleave.
    pub lifecycle: Mutex<()>,
}

/// Paths served without a token, even while sealed.
fn is_unauthenticated(path: &str) -> bool {
    matches!(
        path,
        "sys/health" | "sys/seal-status" | "sys/init" | "sys/unseal" | "sys/leader"
    )
}

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
        let backend: Arc<dyn Backend> = match storage {
            StorageConfig::Memory => Arc::new(MemoryBackend::default()),
            StorageConfig::Redb(path) => Arc::new(RedbBackend::open(&path)?),
        };
        Ok(Vault {
            core: Arc::new(Core {
                barrier: Barrier::new(backend),
                clock,
                mounts: RwLock::new(MountTable::default()),
                tokens: TokenStore::new(),
                locks: KeyLocks::default(),
                audit: AuditBroker::default(),
                lifecycle: Mutex::new(()),
            }),
        })
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
        vault.core.mounts.write().add(&vault.core.barrier, entry)?;
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

    /// Seals the vault: key material is dropped (and zeroized).
    pub fn seal(&self) -> Result<()> {
        self.core.seal();
        Ok(())
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
        let config = self.barrier.seal_config().ok().flatten();
        let (progress, _) = self.barrier.progress();
        SealStatus {
            initialized: config.is_some(),
            sealed: self.barrier.is_sealed(),
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
        let _l = self.lifecycle.lock();
        let (unseal_key, keys) = self.barrier.initialize(shares, threshold, cipher)?;
        // Unseal briefly to write the first root token, then seal again, as Vault does.
        self.barrier.unseal_with_key(&unseal_key[..])?;
        let result = self.tokens.load(&self.barrier).and_then(|()| {
            MountTable::default().add_builtins(&self.barrier)?;
            self.tokens.create_root(&self.barrier, root_id, self.now())
        });
        self.barrier.seal();
        self.tokens.unload();
        Ok(InitResult {
            keys,
            root_token: result?,
        })
    }

    pub(crate) fn submit_share(&self, share: zeroize::Zeroizing<Vec<u8>>) -> Result<u8> {
        let _l = self.lifecycle.lock();
        let was_sealed = self.barrier.is_sealed();
        let progress = self.barrier.submit_share(share)?;
        if was_sealed && !self.barrier.is_sealed() {
            if let Err(e) = self.post_unseal() {
                self.barrier.seal();
                return Err(e);
            }
            tracing::info!("vault unsealed");
        }
        Ok(progress)
    }

    fn post_unseal(&self) -> Result<()> {
        self.tokens.load(&self.barrier)?;
        *self.mounts.write() = MountTable::load(&self.barrier)?;
        Ok(())
    }

    pub(crate) fn seal(&self) {
        let _l = self.lifecycle.lock();
        self.barrier.seal();
        self.tokens.unload();
        *self.mounts.write() = MountTable::default();
        tracing::info!("vault sealed");
    }

    fn authenticate(&self, token: Option<&ClientToken>) -> Result<TokenEntry> {
        let token = token.ok_or(Error::PermissionDenied)?;
        self.tokens
            .lookup(&self.barrier, token)?
            .ok_or(Error::PermissionDenied)
    }

    fn handle(&self, mut req: Request) -> Result<Response> {
        if req.path.starts_with('/') {
            req.path = req.path.trim_start_matches('/').to_owned();
        }
        check_path(&req.path)?;
        if is_unauthenticated(&req.path) {
            return crate::sys::handle_unauthenticated(self, &req);
        }
        if self.barrier.is_sealed() {
            return Err(Error::Sealed);
        }
        let entry = match self.authenticate(req.token.as_ref()) {
            Ok(entry) => entry,
            // Vault answers the UI mount listing without a valid token, with nothing in it.
            Err(Error::PermissionDenied) if req.path == "sys/internal/ui/mounts" => {
                return Ok(crate::sys::empty_ui_mounts());
            }
            Err(e) => return Err(e),
        };
        // The ACL policies of the identity issue plug in here; today only root exists.
        if !entry.is_root() {
            return Err(Error::PermissionDenied);
        }
        // Fail closed: a request no audit device accepted is not served, and a response
        // no device accepted is not returned.
        self.audit.log_request(&req, Some(&entry))?;
        let outcome = self.route(&req, &entry);
        self.audit.log_response(&req, Some(&entry), &outcome)?;
        outcome
    }

    fn route(&self, req: &Request, entry: &TokenEntry) -> Result<Response> {
        let path = req.path.as_str();
        if let Some(rest) = path.strip_prefix("sys/") {
            return crate::sys::handle(self, req, rest);
        }
        if let Some(rest) = path.strip_prefix("auth/token/") {
            return match (rest, req.operation) {
                ("lookup-self", Operation::Read | Operation::Update) => {
                    let token = req.token.as_ref().ok_or(Error::PermissionDenied)?;
                    let mut r =
                        Response::with_data(crate::auth::token::lookup_self_data(entry, token));
                    r.mount_type = "token".into();
                    Ok(r)
                }
                _ => Err(Error::NoRoute(path.to_owned())),
            };
        }
        let mounts = self.mounts.read();
        let mount = mounts
            .route(path)
            .ok_or_else(|| Error::NoRoute(path.to_owned()))?;
        let rel = path.get(mount.path.len()..).unwrap_or("");
        let mut prefix = mount.view_prefix();
        if mount.engine() == EngineKind::Cubbyhole {
            prefix.push_str(&entry.accessor);
            prefix.push('/');
        }
        let ctx = kv::Ctx {
            barrier: &self.barrier,
            mount,
            prefix,
            now: self.now(),
            locks: &self.locks,
        };
        match mount.engine() {
            EngineKind::KvV1 | EngineKind::Cubbyhole => kv::v1::handle(&ctx, req, rel),
            EngineKind::KvV2 => kv::v2::handle(&ctx, req, rel),
        }
    }
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
}
