//! The barrier: everything the vault stores passes through here and is encrypted with
//! an AEAD, the storage path bound in as associated data.
//!
//! Key hierarchy, as in Vault: data keys live in a keyring (one per term, for
//! rotation); the keyring is encrypted by the root key; the root key is encrypted by
//! the unseal key; the unseal key is split with Shamir and never stored.
//!
//! Callers name values by logical path; the storage keys are those paths with every
//! segment encrypted ([`names`]), so no secret, project or policy name is stored in
//! the clear. The logical path stays the value's associated data.

mod cipher;
mod names;
mod rekey;
mod seal;
mod shamir;

pub use self::cipher::Cipher;
use self::seal::SEAL_WRAPPED_KEY_PATH;
pub use self::seal::{KeyWrapper, SealError, StaticKey, StaticSeal};

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::storage::{Backend, BatchOp};
use crate::{BarrierError, Error, IntegrityError, IntegrityKind, Result};

const SEAL_CONFIG_PATH: &str = "core/seal-config";
const ROOT_KEY_PATH: &str = "core/root-key";
const KEYRING_PATH: &str = "core/keyring";
/// Keys written to the backend as they are, read before unseal. Everything else goes
/// through the barrier and is stored under its encrypted name; anything new written
/// directly to the backend must be listed here, or the name migration would move it.
pub(crate) const CLEAR_KEYS: [&str; 4] = [
    SEAL_CONFIG_PATH,
    ROOT_KEY_PATH,
    KEYRING_PATH,
    SEAL_WRAPPED_KEY_PATH,
];
/// The clear keys every initialized vault has (an auto-unseal adds the wrapped key).
pub(crate) const REQUIRED_CLEAR_KEYS: [&str; 3] = [SEAL_CONFIG_PATH, ROOT_KEY_PATH, KEYRING_PATH];
/// Associated data of a snapshot's sealed sum list.
const SNAPSHOT_SUMS_AAD: &[u8] = b"core/snapshot-sums";
/// Version byte of barrier ciphertexts: `1 || term (u32 BE) || nonce || ct || tag`.
const CT_VERSION: u8 = 1;

pub(crate) fn random_fill(buf: &mut [u8]) -> Result<(), BarrierError> {
    getrandom::fill(buf).map_err(|_| BarrierError::Random)
}

/// 32 random bytes, zeroized on drop.
pub(crate) fn random_key() -> Result<Zeroizing<[u8; 32]>, BarrierError> {
    let mut k = Zeroizing::new([0u8; 32]);
    random_fill(&mut k[..])?;
    Ok(k)
}

/// How the vault was initialized; stored in the clear (it holds no secret).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SealConfig {
    #[serde(rename = "type")]
    pub kind: String,
    pub secret_shares: u8,
    pub secret_threshold: u8,
    pub cipher: String,
    pub nonce_seed: String,
}

impl SealConfig {
    pub(crate) fn cipher(&self) -> Cipher {
        Cipher::from_name(&self.cipher).unwrap_or_default()
    }
}

/// The data keys, by term. No `Debug`: it holds key material.
struct Keyring {
    cipher: Cipher,
    active_term: u32,
    keys: BTreeMap<u32, Zeroizing<[u8; 32]>>,
    /// When each term was installed (unix seconds; 0 for keyrings written before
    /// install times were kept).
    installed: BTreeMap<u32, u64>,
    /// The root key that encrypts the keyring, kept while unsealed for `sys/rotate`.
    root: Zeroizing<[u8; 32]>,
    /// The key that encrypts storage key names (one per vault, not rotated).
    names: Arc<names::Names>,
}

#[derive(Serialize, Deserialize)]
struct KeyringFile {
    cipher: String,
    active_term: u32,
    keys: Vec<KeyringEntry>,
    /// The name key, base64; absent in keyrings written before names were encrypted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    names: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct KeyringEntry {
    term: u32,
    key: String,
    #[serde(default)]
    installed: u64,
}

impl Keyring {
    fn encode(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        let file = KeyringFile {
            cipher: self.cipher.name().to_owned(),
            active_term: self.active_term,
            keys: self
                .keys
                .iter()
                .map(|(t, k)| KeyringEntry {
                    term: *t,
                    key: B64.encode(&k[..]),
                    installed: self.installed.get(t).copied().unwrap_or(0),
                })
                .collect(),
            names: Some(B64.encode(self.names.key())),
        };
        let out =
            Zeroizing::new(serde_json::to_vec(&file).map_err(|_| crate::StorageError::Corrupt)?);
        for mut e in file.keys {
            zeroize::Zeroize::zeroize(&mut e.key);
        }
        if let Some(mut n) = file.names {
            zeroize::Zeroize::zeroize(&mut n);
        }
        Ok(out)
    }

    /// Reads a stored keyring. The flag is true when it predates encrypted names: a
    /// name key was made up and the stored keys still need renaming.
    fn decode(bytes: &[u8], root: Zeroizing<[u8; 32]>) -> Result<(Keyring, bool), Error> {
        let mut file: KeyringFile =
            serde_json::from_slice(bytes).map_err(|_| crate::StorageError::Corrupt)?;
        let cipher = Cipher::from_name(&file.cipher).ok_or(crate::StorageError::Corrupt)?;
        let mut keys = BTreeMap::new();
        let mut installed = BTreeMap::new();
        for e in &mut file.keys {
            installed.insert(e.term, e.installed);
            let raw = Zeroizing::new(
                B64.decode(&e.key)
                    .map_err(|_| crate::StorageError::Corrupt)?,
            );
            zeroize::Zeroize::zeroize(&mut e.key);
            let mut k = Zeroizing::new([0u8; 32]);
            if raw.len() != 32 {
                return Err(crate::StorageError::Corrupt.into());
            }
            k.copy_from_slice(&raw);
            keys.insert(e.term, k);
        }
        let (names, fresh) = match file.names.as_mut() {
            Some(text) => {
                let raw = Zeroizing::new(
                    B64.decode(&*text)
                        .map_err(|_| crate::StorageError::Corrupt)?,
                );
                zeroize::Zeroize::zeroize(text);
                let mut k = Zeroizing::new([0u8; names::KEY_LEN]);
                if raw.len() != names::KEY_LEN {
                    return Err(crate::StorageError::Corrupt.into());
                }
                k.copy_from_slice(&raw);
                (k, false)
            }
            None => (random_name_key()?, true),
        };
        Ok((
            Keyring {
                cipher,
                active_term: file.active_term,
                keys,
                installed,
                root,
                names: Arc::new(names::Names::new(names)),
            },
            fresh,
        ))
    }
}

fn random_name_key() -> Result<Zeroizing<[u8; names::KEY_LEN]>, BarrierError> {
    let mut k = Zeroizing::new([0u8; names::KEY_LEN]);
    random_fill(&mut k[..])?;
    Ok(k)
}

fn as_key(bytes: &[u8]) -> Result<Zeroizing<[u8; 32]>, BarrierError> {
    if bytes.len() != 32 {
        return Err(BarrierError::InvalidShare);
    }
    let mut k = Zeroizing::new([0u8; 32]);
    k.copy_from_slice(bytes);
    Ok(k)
}

/// One Shamir share of the unseal key.
pub(crate) type Share = Zeroizing<Vec<u8>>;

/// Progress towards the next unseal.
#[derive(Default)]
struct Progress {
    shares: Vec<Zeroizing<Vec<u8>>>,
    nonce: String,
}

/// Whether the root key a keyring is opened with is known to be this vault's.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RootKey {
    /// Opened from the stored root key, or held since: a keyring it does not open
    /// was damaged.
    Known,
    /// Tried on storage that may be another vault's (a snapshot restore).
    Tried,
}

/// One step of a storage walk ([`Barrier::verify`]).
#[derive(Default)]
pub(crate) struct VerifyChunk {
    /// Entries in storage.
    pub total: usize,
    /// Entries walked so far, this chunk included.
    pub position: usize,
    /// Entries checked by this chunk.
    pub checked: usize,
    /// The entries that failed.
    pub corrupt: Vec<IntegrityError>,
    /// Where the next chunk starts (after this key), or `None` when done.
    pub next: Option<String>,
}

/// Encryption at rest and seal state.
pub(crate) struct Barrier {
    storage: Arc<dyn Backend>,
    keyring: RwLock<Option<Keyring>>,
    progress: Mutex<Progress>,
    /// The seal configuration once read: it changes only at init, and `sys/health` and
    /// `sys/seal-status` read it on every call.
    config: RwLock<Option<Arc<SealConfig>>>,
    /// Whether the vault serves: set only once everything the unseal loads has loaded.
    /// Until then the keyring is usable by the unseal itself, but the vault reports
    /// (and behaves) sealed, so a failed unseal never leaves it half open.
    active: AtomicBool,
    /// Time each write batch took to become durable, as its writer waited for it.
    commits: crate::metrics::Histogram,
    /// The auto-unseal seal, if the server has one (`seal "static"`, `seal "transit"`).
    seal: RwLock<Option<Arc<dyn KeyWrapper>>>,
}

/// A change behind the barrier, applied atomically with others.
pub(crate) enum Op {
    Put(String, Vec<u8>),
    Delete(String),
}

impl Barrier {
    pub(crate) fn new(storage: Arc<dyn Backend>) -> Self {
        Barrier {
            storage,
            keyring: RwLock::new(None),
            progress: Mutex::new(Progress::default()),
            config: RwLock::new(None),
            active: AtomicBool::new(false),
            commits: crate::metrics::Histogram::latency(),
            seal: RwLock::new(None),
        }
    }

    /// Sets the auto-unseal seal: init wraps the unseal key with it, and
    /// [`Barrier::unseal_with_seal`] opens the vault with it.
    pub(crate) fn set_seal(&self, seal: Arc<dyn KeyWrapper>) {
        *self.seal.write() = Some(seal);
    }

    /// The seal type `sys/seal-status` reports: the one the vault was initialized
    /// with, or before init the configured one.
    pub(crate) fn seal_kind(&self) -> String {
        match self.seal_config() {
            Ok(Some(c)) => c.kind.clone(),
            _ => self
                .seal
                .read()
                .as_ref()
                .map_or_else(|| "shamir".to_owned(), |s| s.kind().to_owned()),
        }
    }

    /// Whether the server has an auto-unseal seal.
    pub(crate) fn has_seal(&self) -> bool {
        self.seal.read().is_some()
    }

    /// Opens the key hierarchy with the unseal key the seal unwraps. Where the seal
    /// says the stored wrapping is stale (a rotated static key), the key is wrapped
    /// again with the current one. The barrier stays inactive until activated.
    pub(crate) fn unseal_with_seal(&self) -> Result<()> {
        let seal =
            self.seal.read().clone().ok_or_else(|| {
                Error::invalid("no seal is configured: unseal with the key shares")
            })?;
        let config = self.seal_config()?.ok_or(Error::NotInitialized)?;
        if config.kind != seal.kind() {
            return Err(Error::Refused(
                format!(
                    "the vault was initialized with the {} seal, not {}: seal migration is not supported",
                    config.kind,
                    seal.kind()
                )
                .into(),
            ));
        }
        let blob = self
            .storage
            .get(SEAL_WRAPPED_KEY_PATH)?
            .ok_or_else(|| integrity(SEAL_WRAPPED_KEY_PATH, IntegrityKind::Missing))?;
        let key = seal
            .unwrap(&blob, SEAL_WRAPPED_KEY_PATH.as_bytes())
            .map_err(|e| Error::Refused(e.to_string().into()))?;
        self.unseal_with_key(&key)?;
        if seal.is_stale(&blob) {
            let again = seal
                .wrap(&key, SEAL_WRAPPED_KEY_PATH.as_bytes())
                .map_err(|e| Error::Refused(e.to_string().into()))?;
            self.storage
                .batch(vec![BatchOp::Put(SEAL_WRAPPED_KEY_PATH.into(), again)])?;
            tracing::info!("the unseal key was wrapped again with the seal's current key");
        }
        Ok(())
    }

    /// The unseal key wrapped by the seal, for a batch that installs `key`; `None`
    /// for a Shamir vault. A vault initialized with a seal cannot change its unseal
    /// key without that seal (the stored copy would go stale).
    fn wrapped_for(&self, kind: &str, key: &[u8]) -> Result<Option<BatchOp>> {
        if kind == "shamir" {
            return Ok(None);
        }
        let seal = self.seal.read().clone().ok_or_else(|| {
            Error::Refused(
                format!("the vault uses the {kind} seal, which is not configured").into(),
            )
        })?;
        let blob = seal
            .wrap(key, SEAL_WRAPPED_KEY_PATH.as_bytes())
            .map_err(|e| Error::Refused(e.to_string().into()))?;
        Ok(Some(BatchOp::Put(SEAL_WRAPPED_KEY_PATH.into(), blob)))
    }

    /// Commit latency, and batches per commit where the storage groups them.
    pub(crate) fn commit_stats(
        &self,
    ) -> (
        &crate::metrics::Histogram,
        Option<&crate::metrics::Histogram>,
    ) {
        (&self.commits, self.storage.group_commit_sizes())
    }

    /// Why the storage cannot be trusted as a whole, if it cannot.
    pub(crate) fn storage_damage(&self) -> Option<String> {
        self.storage.damage()
    }

    pub(crate) fn storage_kind(&self) -> &'static str {
        self.storage.kind()
    }

    /// The seal configuration. On storage that failed its integrity check this is an
    /// integrity error: a damaged file must not read as uninitialized (an init over
    /// it) nor hand out a threshold it cannot vouch for.
    pub(crate) fn seal_config(&self) -> Result<Option<Arc<SealConfig>>> {
        self.refuse_damaged_storage()?;
        self.read_seal_config()
    }

    /// The seal configuration as stored, damaged storage or not (`verify-storage`).
    fn read_seal_config(&self) -> Result<Option<Arc<SealConfig>>> {
        if let Some(c) = self.config.read().as_ref() {
            return Ok(Some(c.clone()));
        }
        match self.storage.get(SEAL_CONFIG_PATH)? {
            None => Ok(None),
            Some(b) => {
                let c: Arc<SealConfig> = Arc::new(
                    serde_json::from_slice(&b)
                        .map_err(|_| integrity(SEAL_CONFIG_PATH, IntegrityKind::Malformed))?,
                );
                *self.config.write() = Some(c.clone());
                Ok(Some(c))
            }
        }
    }

    /// Whether the vault is sealed as clients see it: true until an unseal has loaded
    /// everything and called [`Barrier::activate`].
    pub(crate) fn is_sealed(&self) -> bool {
        !self.active.load(Ordering::Acquire) || self.keyring.read().is_none()
    }

    /// Whether the keyring is open (the unseal in progress may read and write).
    pub(crate) fn has_keyring(&self) -> bool {
        self.keyring.read().is_some()
    }

    /// Marks an unsealed barrier as serving. Called once the vault's stores loaded.
    pub(crate) fn activate(&self) {
        if self.has_keyring() {
            self.active.store(true, Ordering::Release);
        }
    }

    /// Creates the key hierarchy. Returns the unseal key and its shares; the barrier
    /// stays sealed.
    pub(crate) fn initialize(
        &self,
        shares: u8,
        threshold: u8,
        cipher: Cipher,
        now_secs: u64,
    ) -> Result<(Zeroizing<[u8; 32]>, Vec<Share>)> {
        if self.seal_config()?.is_some() {
            return Err(Error::AlreadyInitialized);
        }
        let unseal_key = random_key()?;
        let root_key = random_key()?;
        let keyring = Keyring {
            cipher,
            active_term: 1,
            keys: BTreeMap::from([(1, random_key()?)]),
            installed: BTreeMap::from([(1, now_secs)]),
            root: root_key.clone(),
            names: Arc::new(names::Names::new(random_name_key()?)),
        };
        let wrapped_root = cipher.seal(&unseal_key, &root_key[..], ROOT_KEY_PATH.as_bytes())?;
        let wrapped_ring = cipher.seal(&root_key, &keyring.encode()?, KEYRING_PATH.as_bytes())?;
        let kind = self
            .seal
            .read()
            .as_ref()
            .map_or_else(|| "shamir".to_owned(), |s| s.kind().to_owned());
        let wrapped_key = self.wrapped_for(&kind, &unseal_key[..])?;
        let config = SealConfig {
            kind,
            secret_shares: shares,
            secret_threshold: threshold,
            cipher: cipher.name().into(),
            nonce_seed: uuid::Uuid::new_v4().to_string(),
        };
        let config = serde_json::to_vec(&config).map_err(|_| crate::StorageError::Corrupt)?;
        let parts = shamir::split(&unseal_key[..], shares, threshold)?;
        let mut batch = vec![
            BatchOp::Put(ROOT_KEY_PATH.into(), wrapped_root),
            BatchOp::Put(KEYRING_PATH.into(), wrapped_ring),
            BatchOp::Put(SEAL_CONFIG_PATH.into(), config),
        ];
        batch.extend(wrapped_key);
        self.storage.batch(batch)?;
        Ok((unseal_key, parts))
    }

    /// Opens the key hierarchy with the whole unseal key. The barrier stays inactive
    /// (sealed to clients) until [`Barrier::activate`].
    pub(crate) fn unseal_with_key(&self, unseal_key: &[u8]) -> Result<()> {
        self.refuse_damaged_storage()?;
        self.open_keyring(unseal_key)
    }

    /// Opens the keyring, even on damaged storage: `verify-storage` reads with it and
    /// never activates the barrier.
    fn open_keyring(&self, unseal_key: &[u8]) -> Result<()> {
        let config = self.read_seal_config()?.ok_or(Error::NotInitialized)?;
        let cipher = config.cipher();
        let unseal_key = as_key(unseal_key)?;
        let wrapped_root = self
            .storage
            .get(ROOT_KEY_PATH)?
            .ok_or_else(|| integrity(ROOT_KEY_PATH, IntegrityKind::Missing))?;
        // A root key that does not open reads as wrong shares: the two look the same.
        let root =
            Zeroizing::new(cipher.open(&unseal_key, &wrapped_root, ROOT_KEY_PATH.as_bytes())?);
        let root = as_key(&root).map_err(|_| integrity(ROOT_KEY_PATH, IntegrityKind::Malformed))?;
        // With the root key open, the unseal key was right: whatever fails from here
        // on is damage, not a wrong key.
        self.open_with_root(cipher, root, RootKey::Known)
    }

    /// Opens the stored keyring with `root`. A keyring that does not open is damage
    /// when the root key is [`RootKey::Known`] to be right, and a barrier error (not
    /// the key that wrapped it) when it is only [`RootKey::Tried`].
    fn open_with_root(
        &self,
        cipher: Cipher,
        root: Zeroizing<[u8; 32]>,
        how: RootKey,
    ) -> Result<()> {
        let wrapped_ring = self
            .storage
            .get(KEYRING_PATH)?
            .ok_or_else(|| integrity(KEYRING_PATH, IntegrityKind::Missing))?;
        let ring = match cipher.open(&root, &wrapped_ring, KEYRING_PATH.as_bytes()) {
            Ok(ring) => Zeroizing::new(ring),
            Err(e) if how == RootKey::Known => return Err(decrypt_failure(KEYRING_PATH, e)),
            Err(e) => return Err(e.into()),
        };
        let (ring, fresh_names) = Keyring::decode(&ring, root).map_err(|e| match e {
            Error::Storage(crate::StorageError::Corrupt) => {
                integrity(KEYRING_PATH, IntegrityKind::Malformed)
            }
            other => other,
        })?;
        if fresh_names {
            self.encrypt_stored_names(&ring)?;
        }
        *self.keyring.write() = Some(ring);
        Ok(())
    }

    /// Every stored entry exactly as the backend holds it (ciphertext under encrypted
    /// names, the wrapped key hierarchy), from one read: a snapshot's content.
    pub(crate) fn export(&self) -> Result<Vec<(String, Vec<u8>)>> {
        if !self.has_keyring() {
            return Err(Error::Sealed);
        }
        Ok(self.storage.entries()?)
    }

    /// Encrypts a snapshot's sum list under the root key, so a restore can tell
    /// whether a snapshot came from this vault.
    pub(crate) fn seal_snapshot_sums(&self, sums: &[u8]) -> Result<Vec<u8>> {
        let guard = self.keyring.read();
        let ring = guard.as_ref().ok_or(Error::Sealed)?;
        Ok(ring.cipher.seal(&ring.root, sums, SNAPSHOT_SUMS_AAD)?)
    }

    /// Opens what [`Barrier::seal_snapshot_sums`] sealed, if this vault's root key
    /// sealed it.
    pub(crate) fn open_snapshot_sums(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        let guard = self.keyring.read();
        let ring = guard.as_ref()?;
        ring.cipher.open(&ring.root, sealed, SNAPSHOT_SUMS_AAD).ok()
    }

    /// The cipher and root key of the open keyring, for [`Barrier::replace_storage`].
    pub(crate) fn held_root(&self) -> Result<(Cipher, Zeroizing<[u8; 32]>)> {
        let guard = self.keyring.read();
        let ring = guard.as_ref().ok_or(Error::Sealed)?;
        Ok((ring.cipher, ring.root.clone()))
    }

    /// A snapshot restore: seals, replaces every stored entry with `entries` in one
    /// atomic batch (nothing changes if it fails), then reopens the keyring now
    /// stored with `root`, the root key held before. Returns whether that opened it
    /// (a snapshot of this vault); if not, the barrier stays sealed until an unseal
    /// with the snapshot's own unseal keys. The barrier is left inactive either way.
    pub(crate) fn replace_storage(
        &self,
        entries: Vec<(String, Vec<u8>)>,
        (cipher, root): (Cipher, Zeroizing<[u8; 32]>),
    ) -> Result<bool> {
        self.seal();
        let mut batch = Vec::with_capacity(entries.len() + 1);
        batch.push(BatchOp::Clear);
        batch.extend(entries.into_iter().map(|(k, v)| BatchOp::Put(k, v)));
        let replaced = self.storage.batch(batch);
        // The seal configuration came with the snapshot (or stayed, if that failed).
        *self.config.write() = None;
        replaced?;
        let config = self.read_seal_config()?.ok_or(Error::NotInitialized)?;
        if config.cipher() != cipher {
            return Ok(false);
        }
        match self.open_with_root(cipher, root, RootKey::Tried) {
            Ok(()) => Ok(true),
            Err(Error::Barrier(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// One-time migration of a vault written before names were encrypted: renames
    /// every stored key to its encrypted form and stores the keyring with the new name
    /// key, all in one atomic batch. Values move unchanged (their associated data is
    /// the logical path, which is the old key).
    fn encrypt_stored_names(&self, ring: &Keyring) -> Result<()> {
        let mut batch = Vec::new();
        for key in self.storage.scan("")? {
            if CLEAR_KEYS.contains(&key.as_str()) {
                continue;
            }
            let Some(value) = self.storage.get(&key)? else {
                continue;
            };
            let physical = ring.names.encode(&key)?;
            batch.push(BatchOp::Delete(key));
            batch.push(BatchOp::Put(physical, value));
        }
        let moved = batch.len() / 2;
        let wrapped = ring
            .cipher
            .seal(&ring.root, &ring.encode()?, KEYRING_PATH.as_bytes())?;
        batch.push(BatchOp::Put(KEYRING_PATH.into(), wrapped));
        self.storage.batch(batch)?;
        tracing::info!(
            keys = moved,
            "storage key names encrypted (one-time migration)"
        );
        Ok(())
    }

    /// Storage that failed its integrity check as a whole is not unsealed on.
    fn refuse_damaged_storage(&self) -> Result<()> {
        match self.storage.damage() {
            None => Ok(()),
            Some(d) => Err(IntegrityError::file(format!(
                "{d}; the vault stays sealed: run `lockana operator verify-storage` and restore a backup"
            ))
            .into()),
        }
    }

    /// Adds one share. Returns the progress (0 once the key hierarchy is open). A
    /// wrong combination resets progress and fails; so does a failure to open.
    pub(crate) fn submit_share(&self, share: Zeroizing<Vec<u8>>) -> Result<u8> {
        let config = self.seal_config()?.ok_or(Error::NotInitialized)?;
        if !self.is_sealed() {
            return Ok(0);
        }
        self.refuse_damaged_storage()?;
        check_share_length(&share, config.secret_threshold)?;
        let mut p = self.progress.lock();
        if p.shares.is_empty() {
            p.nonce = uuid::Uuid::new_v4().to_string();
        }
        if p.shares
            .iter()
            .any(|s| subtle::ConstantTimeEq::ct_eq(&s[..], &share[..]).into())
        {
            return Err(Error::invalid(
                "given key has already been provided during this generation operation",
            ));
        }
        p.shares.push(share);
        if p.shares.len() < usize::from(config.secret_threshold) {
            return Ok(p.shares.len() as u8);
        }
        let shares = std::mem::take(&mut p.shares);
        p.nonce.clear();
        drop(p);
        let key = combine_shares(&shares, config.secret_threshold)?;
        self.unseal_with_key(&key).map_err(wrong_key)?;
        Ok(0)
    }

    /// Opens the keyring for a read-only walk of damaged (or healthy) storage, from
    /// at least `threshold` shares (or the whole unseal key), without unsealing.
    pub(crate) fn open_for_verify(&self, shares: Vec<Share>) -> Result<()> {
        let config = self.read_seal_config()?.ok_or(Error::NotInitialized)?;
        for s in &shares {
            check_share_length(s, config.secret_threshold)?;
        }
        if shares.len() < usize::from(config.secret_threshold) {
            return Err(Error::invalid(format!(
                "{} unseal key shares are needed, {} given",
                config.secret_threshold,
                shares.len()
            )));
        }
        let key = combine_shares(&shares, config.secret_threshold)?;
        self.open_keyring(&key).map_err(wrong_key)
    }

    /// Checks stored entries in key order: each must decrypt under the keyring (the
    /// cleartext seal configuration must parse). Starts after `after`, checks at most
    /// `limit`. Storage engine failures (panics included) on one entry are reported
    /// for that entry and the walk goes on.
    pub(crate) fn verify(&self, after: Option<&str>, limit: usize) -> Result<VerifyChunk> {
        if !self.has_keyring() {
            return Err(Error::Sealed);
        }
        // Logical keys: names are encrypted at rest, and the cleartext key-hierarchy
        // entries were checked by opening the keyring.
        let keys = self.scan("")?;
        let total = keys.len();
        let start = after.map_or(0, |a| keys.partition_point(|k| k.as_str() <= a));
        let mut chunk = VerifyChunk {
            total,
            position: start,
            ..Default::default()
        };
        for key in keys.iter().skip(start).take(limit) {
            chunk.position += 1;
            chunk.checked += 1;
            chunk.next = Some(key.clone());
            let outcome = match key.as_str() {
                // Opening the keyring already authenticated these two.
                ROOT_KEY_PATH | KEYRING_PATH => Ok(()),
                SEAL_CONFIG_PATH => match self.storage.get(key) {
                    Ok(Some(b)) if serde_json::from_slice::<SealConfig>(&b).is_ok() => Ok(()),
                    Ok(_) => Err(integrity(key, IntegrityKind::Malformed)),
                    Err(e) => Err(e.into()),
                },
                _ => self.get(key).and_then(|v| {
                    v.map(|_| ())
                        .ok_or_else(|| integrity(key, IntegrityKind::Missing))
                }),
            };
            match outcome {
                Ok(()) => {}
                Err(Error::Integrity(e)) => chunk.corrupt.push(e),
                Err(e) => return Err(e),
            }
        }
        if chunk.position >= total {
            chunk.next = None;
        }
        Ok(chunk)
    }

    pub(crate) fn progress(&self) -> (u8, String) {
        let p = self.progress.lock();
        (p.shares.len() as u8, p.nonce.clone())
    }

    pub(crate) fn reset_progress(&self) {
        let mut p = self.progress.lock();
        p.shares.clear();
        p.nonce.clear();
    }

    /// `sys/rotate`: installs a new data key as the active term. Older terms stay to
    /// read what they encrypted; the keyring is rewritten (durably) under the root key
    /// before the new term is used.
    pub(crate) fn rotate(&self, now_secs: u64) -> Result<(u32, u64)> {
        let mut guard = self.keyring.write();
        let ring = guard.as_mut().ok_or(Error::Sealed)?;
        let term = ring
            .active_term
            .checked_add(1)
            .ok_or(BarrierError::UnknownTerm)?;
        let mut next = Keyring {
            cipher: ring.cipher,
            active_term: term,
            keys: ring.keys.clone(),
            installed: ring.installed.clone(),
            root: ring.root.clone(),
            names: ring.names.clone(),
        };
        next.keys.insert(term, random_key()?);
        next.installed.insert(term, now_secs);
        let wrapped = next
            .cipher
            .seal(&next.root, &next.encode()?, KEYRING_PATH.as_bytes())?;
        self.storage
            .batch(vec![BatchOp::Put(KEYRING_PATH.into(), wrapped)])?;
        *ring = next;
        Ok((term, now_secs))
    }

    /// The active term and when it was installed (`sys/key-status`).
    pub(crate) fn key_status(&self) -> Result<(u32, u64)> {
        let guard = self.keyring.read();
        let ring = guard.as_ref().ok_or(Error::Sealed)?;
        Ok((
            ring.active_term,
            ring.installed.get(&ring.active_term).copied().unwrap_or(0),
        ))
    }

    /// Stops serving but keeps the keyring: an HA node that steps down to standby.
    pub(crate) fn deactivate(&self) {
        self.active.store(false, Ordering::Release);
    }

    /// Reads the keyring (and the seal configuration) again with the root key held:
    /// an HA node taking over sees the key rotations the previous active node made.
    pub(crate) fn reload_keyring(&self) -> Result<()> {
        let (cipher, root) = self.held_root()?;
        *self.config.write() = None;
        self.open_with_root(cipher, root, RootKey::Known)
    }

    /// Drops all key material.
    pub(crate) fn seal(&self) {
        self.active.store(false, Ordering::Release);
        *self.keyring.write() = None;
        self.reset_progress();
    }

    fn encrypt(&self, path: &str, plaintext: &[u8]) -> Result<Vec<u8>> {
        let guard = self.keyring.read();
        let ring = guard.as_ref().ok_or(Error::Sealed)?;
        let term = ring.active_term;
        let key = ring.keys.get(&term).ok_or(BarrierError::UnknownTerm)?;
        let mut out = Vec::with_capacity(plaintext.len() + 48);
        out.push(CT_VERSION);
        out.extend_from_slice(&term.to_be_bytes());
        let aad = aad(term, path);
        out.extend_from_slice(&ring.cipher.seal(key, plaintext, &aad)?);
        Ok(out)
    }

    fn decrypt(&self, path: &str, data: &[u8]) -> Result<Vec<u8>> {
        if data.len() < 5 || data[0] != CT_VERSION {
            return Err(BarrierError::Malformed.into());
        }
        let term = u32::from_be_bytes([data[1], data[2], data[3], data[4]]);
        let guard = self.keyring.read();
        let ring = guard.as_ref().ok_or(Error::Sealed)?;
        let key = ring.keys.get(&term).ok_or(BarrierError::UnknownTerm)?;
        Ok(ring.cipher.open(key, &data[5..], &aad(term, path))?)
    }

    /// The name encoder of the unsealed keyring.
    fn names(&self) -> Result<Arc<names::Names>> {
        let guard = self.keyring.read();
        Ok(guard.as_ref().ok_or(Error::Sealed)?.names.clone())
    }

    pub(crate) fn get(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let physical = self.names()?.encode(path)?;
        match self.storage.get(&physical)? {
            None => Ok(None),
            Some(ct) => match self.decrypt(path, &ct) {
                Ok(v) => Ok(Some(v)),
                Err(Error::Barrier(e)) => Err(decrypt_failure(path, e)),
                Err(e) => Err(e),
            },
        }
    }

    pub(crate) fn put(&self, path: &str, value: &[u8]) -> Result<()> {
        self.apply(vec![Op::Put(path.to_owned(), value.to_vec())])
    }

    /// The immediate children of `prefix` (`name`, or `dir/` for deeper keys), sorted,
    /// as [`Backend::list`] gives them for unencrypted keys.
    pub(crate) fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let names = self.names()?;
        let (dir, partial) = split_dir(prefix);
        let pdir = names.encode_dir(dir)?;
        let mut physical = self.storage.list(&pdir)?;
        if dir.is_empty() {
            physical.retain(|c| !CLEAR_KEYS.iter().any(|k| is_clear_child(k, c)));
        }
        let mut out = Vec::with_capacity(physical.len());
        for child in names.decode_children(dir, &pdir, physical)? {
            let Some(rest) = child.strip_prefix(partial) else {
                continue;
            };
            if !rest.is_empty() {
                out.push(rest.to_owned());
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Every logical key starting with `prefix`, in order.
    pub(crate) fn scan(&self, prefix: &str) -> Result<Vec<String>> {
        let names = self.names()?;
        let (dir, _) = split_dir(prefix);
        let mut memo = HashMap::new();
        let mut out = Vec::new();
        for physical in self.storage.scan(&names.encode_dir(dir)?)? {
            if dir.is_empty() && CLEAR_KEYS.contains(&physical.as_str()) {
                continue;
            }
            let logical = names.decode(&physical, &mut memo)?;
            if logical.starts_with(prefix) {
                out.push(logical);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Applies changes atomically (one durable commit).
    pub(crate) fn apply(&self, ops: Vec<Op>) -> Result<()> {
        let names = self.names()?;
        let mut batch = Vec::with_capacity(ops.len());
        for op in ops {
            batch.push(match op {
                Op::Put(path, value) => {
                    let ct = self.encrypt(&path, &value)?;
                    BatchOp::Put(names.encode(&path)?, ct)
                }
                Op::Delete(path) => BatchOp::Delete(names.encode(&path)?),
            });
        }
        if !self.has_keyring() {
            return Err(Error::Sealed);
        }
        let start = std::time::Instant::now();
        let r = self.storage.batch(batch);
        self.commits.record_since(start);
        Ok(r?)
    }

    #[cfg(test)]
    pub(crate) fn raw(&self) -> &Arc<dyn Backend> {
        &self.storage
    }

    /// The storage key a logical path is written under (for tests).
    #[cfg(test)]
    pub(crate) fn physical(&self, path: &str) -> String {
        self.storage_key(path).expect("unsealed")
    }

    /// The storage key a logical path is written under, or for a path ending in `/`
    /// the stored form of that directory (every key below it starts with it). The
    /// clear key-hierarchy entries are stored under their own names.
    pub(crate) fn storage_key(&self, path: &str) -> Result<String> {
        if CLEAR_KEYS.contains(&path) {
            return Ok(path.to_owned());
        }
        let names = self.names()?;
        if path.ends_with('/') {
            names.encode_dir(path)
        } else {
            names.encode(path)
        }
    }
}

/// Whether `child`, listed at the top of storage, is clear key `key` or its directory.
fn is_clear_child(key: &str, child: &str) -> bool {
    match key.split_once('/') {
        Some((top, _)) => child.strip_suffix('/') == Some(top),
        None => child == key,
    }
}

/// `a/b/c` -> (`a/b/`, `c`): the directory part of a prefix and what is left.
fn split_dir(prefix: &str) -> (&str, &str) {
    match prefix.rfind('/') {
        Some(i) => prefix.split_at(i + 1),
        None => ("", prefix),
    }
}

/// Combines shares, refusing shares that share an index (OpenBao's 400 text).
fn combine_shares(shares: &[Share], threshold: u8) -> Result<Zeroizing<Vec<u8>>> {
    if threshold > 1 && has_duplicate_index(shares) {
        return Err(Error::invalid(
            "invalid key: failed to compute combined key: duplicate part detected",
        ));
    }
    shamir::combine(shares, threshold)
        .map_err(|_| Error::invalid("invalid key: failed to compute combined key: invalid share"))
}

/// A root key that does not open under the combined key: the shares were wrong.
fn wrong_key(e: Error) -> Error {
    match e {
        Error::Barrier(_) => Error::invalid(
            "failed to unseal: the unseal key shares did not combine into the right key; progress was reset, start again",
        ),
        other => other,
    }
}

/// An integrity failure of the entry at `key`, logged with the key (never the value).
/// For any record read from storage that is missing or does not decode.
pub(crate) fn integrity(key: &str, kind: IntegrityKind) -> Error {
    tracing::error!(key = %key, "storage integrity failure");
    IntegrityError::at(key, kind).into()
}

/// The JSON record stored at `key`; one that does not decode is damage naming the key.
pub(crate) fn decode_record<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|_| integrity(key, IntegrityKind::Malformed))
}

/// A stored value that does not decrypt under a key the vault holds.
fn decrypt_failure(key: &str, e: BarrierError) -> Error {
    integrity(
        key,
        match e {
            BarrierError::UnknownTerm => IntegrityKind::UnknownTerm,
            BarrierError::Malformed => IntegrityKind::Malformed,
            _ => IntegrityKind::Authentication,
        },
    )
}

/// Unseal key shares are `x || y` for a 32-byte key (33 bytes), or the key itself
/// with a threshold of one. Anything else is refused before it counts towards the
/// threshold (OpenBao's texts; its bounds are looser because its keys vary).
fn check_share_length(share: &[u8], threshold: u8) -> Result<()> {
    let want = if threshold > 1 { 33 } else { 32 };
    if share.len() < want {
        return Err(Error::invalid(format!(
            "invalid key: key is shorter than minimum {want} bytes"
        )));
    }
    if share.len() > want {
        return Err(Error::invalid(format!(
            "invalid key: key is longer than maximum {want} bytes"
        )));
    }
    Ok(())
}

/// Two shares with the same x coordinate (their first byte) cannot be combined.
fn has_duplicate_index(shares: &[Zeroizing<Vec<u8>>]) -> bool {
    let xs: Vec<u8> = shares.iter().filter_map(|s| s.first().copied()).collect();
    (1..xs.len()).any(|i| xs[..i].contains(&xs[i]))
}

fn aad(term: u32, path: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(5 + path.len());
    a.push(CT_VERSION);
    a.extend_from_slice(&term.to_be_bytes());
    a.extend_from_slice(path.as_bytes());
    a
}

/// Decodes an unseal key share given as hex or base64.
pub(crate) fn decode_share(s: &str) -> Result<Zeroizing<Vec<u8>>> {
    let s = s.trim();
    if let Ok(b) = hex::decode(s) {
        return Ok(Zeroizing::new(b));
    }
    B64.decode(s)
        .map(Zeroizing::new)
        .map_err(|_| Error::invalid("'key' must be a valid hex or base64 string"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryBackend;

    fn unsealed(cipher: Cipher) -> Barrier {
        let b = Barrier::new(Arc::new(MemoryBackend::default()));
        let (key, _) = b.initialize(1, 1, cipher, 0).unwrap();
        b.unseal_with_key(&key[..]).unwrap();
        b
    }

    const ALL: [Cipher; 3] = [
        Cipher::ChaCha20Poly1305,
        Cipher::XChaCha20Poly1305,
        Cipher::Aes256Gcm,
    ];

    #[test]
    fn round_trip_all_ciphers_and_no_plaintext_at_rest() {
        for c in ALL {
            let b = unsealed(c);
            b.put("logical/x/secret", b"hunter2-canary").unwrap();
            assert_eq!(
                b.get("logical/x/secret").unwrap().unwrap(),
                b"hunter2-canary"
            );
            let raw = b
                .raw()
                .get(&b.physical("logical/x/secret"))
                .unwrap()
                .unwrap();
            assert!(
                !raw.windows(6).any(|w| w == b"hunter"),
                "{c:?} stored plaintext"
            );
        }
    }

    #[test]
    fn tampered_ciphertext_fails_for_every_byte_flip() {
        for c in ALL {
            let b = unsealed(c);
            b.put("p", b"value").unwrap();
            let raw = b.raw().get(&b.physical("p")).unwrap().unwrap();
            for i in 0..raw.len() {
                let mut bad = raw.clone();
                bad[i] ^= 0x01;
                b.raw().put(&b.physical("p"), &bad).unwrap();
                assert!(
                    b.get("p").is_err(),
                    "{c:?}: flip at byte {i} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn ciphertext_moved_to_another_path_fails() {
        for c in ALL {
            let b = unsealed(c);
            b.put("logical/a", b"for a").unwrap();
            let raw = b.raw().get(&b.physical("logical/a")).unwrap().unwrap();
            b.raw().put(&b.physical("logical/b"), &raw).unwrap();
            match b.get("logical/b") {
                Err(Error::Integrity(e)) => {
                    assert_eq!(e.key(), Some("logical/b"));
                    assert_eq!(e.kind(), IntegrityKind::Authentication);
                }
                other => panic!("{c:?}: {:?}", other.map(|_| ())),
            }
        }
    }

    #[test]
    fn wrong_unseal_key_is_refused_and_sealed_reads_fail() {
        let b = Barrier::new(Arc::new(MemoryBackend::default()));
        let (key, _) = b.initialize(1, 1, Cipher::default(), 0).unwrap();
        let mut wrong = *key;
        wrong[0] ^= 1;
        assert!(b.unseal_with_key(&wrong).is_err());
        assert!(b.is_sealed());
        assert!(matches!(b.get("x"), Err(Error::Sealed)));
        b.unseal_with_key(&key[..]).unwrap();
        b.put("x", b"1").unwrap();
        b.seal();
        assert!(matches!(b.get("x"), Err(Error::Sealed)));
        assert!(matches!(b.put("x", b"2"), Err(Error::Sealed)));
    }

    #[test]
    fn shares_unseal_at_threshold_and_duplicates_are_refused() {
        let b = Barrier::new(Arc::new(MemoryBackend::default()));
        let (_, shares) = b.initialize(5, 3, Cipher::Aes256Gcm, 0).unwrap();
        assert_eq!(b.submit_share(shares[4].clone()).unwrap(), 1);
        assert!(b.submit_share(shares[4].clone()).is_err());
        assert_eq!(b.submit_share(shares[1].clone()).unwrap(), 2);
        assert!(b.is_sealed());
        assert_eq!(b.submit_share(shares[2].clone()).unwrap(), 0);
        assert!(b.has_keyring());
        // Sealed to clients until the vault has loaded what it serves from.
        assert!(b.is_sealed());
        b.activate();
        assert!(!b.is_sealed());
    }

    /// Shares of the wrong length once counted towards the threshold, and shares with
    /// the same index byte answered 500: both are 400s with OpenBao's texts now, and
    /// neither counts.
    #[test]
    fn malformed_shares_are_refused_before_they_count() {
        let b = Barrier::new(Arc::new(MemoryBackend::default()));
        let (_, shares) = b.initialize(5, 3, Cipher::default(), 0).unwrap();
        for (bad, text) in [
            (
                vec![0x01, 0xab],
                "invalid key: key is shorter than minimum 33 bytes",
            ),
            (
                vec![7u8; 5001],
                "invalid key: key is longer than maximum 33 bytes",
            ),
        ] {
            match b.submit_share(Zeroizing::new(bad)) {
                Err(Error::InvalidRequest(m)) => assert_eq!(m, text),
                other => panic!("{:?}", other.map(|_| ())),
            }
            assert_eq!(b.progress().0, 0);
        }
        let mut same_x: Vec<Share> = (0..3).map(|_| shares[0].clone()).collect();
        for (i, s) in same_x.iter_mut().enumerate() {
            s[1] ^= i as u8 + 1;
        }
        assert_eq!(b.submit_share(same_x[0].clone()).unwrap(), 1);
        assert_eq!(b.submit_share(same_x[1].clone()).unwrap(), 2);
        match b.submit_share(same_x[2].clone()) {
            Err(Error::InvalidRequest(m)) => assert_eq!(
                m,
                "invalid key: failed to compute combined key: duplicate part detected"
            ),
            other => panic!("{:?}", other.map(|_| ())),
        }
        assert!(b.is_sealed());
        assert_eq!(b.progress().0, 0, "a failed combination resets progress");
        for s in &shares[..3] {
            b.submit_share(s.clone()).unwrap();
        }
        assert!(b.has_keyring(), "the right shares still open it");
    }

    proptest::proptest! {
        /// Fuzz twin: arbitrary stored bytes never decrypt and never panic.
        #[test]
        fn arbitrary_ciphertexts_are_refused(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..96)) {
            let b = unsealed(Cipher::ChaCha20Poly1305);
            b.raw().put(&b.physical("p"), &bytes).unwrap();
            proptest::prop_assert!(b.get("p").is_err());
        }

        /// Fuzz twin: share decoding takes any text without panicking.
        #[test]
        fn arbitrary_share_text_decodes_or_errors(text in "\\PC{0,100}") {
            let _ = decode_share(&text);
        }
    }

    #[test]
    fn rotation_adds_a_term_and_old_values_still_open() {
        let b = unsealed(Cipher::ChaCha20Poly1305);
        b.put("old", b"written under term 1").unwrap();
        assert_eq!(b.rotate(100).unwrap(), (2, 100));
        b.put("new", b"written under term 2").unwrap();
        let raw = b.raw().get(&b.physical("new")).unwrap().unwrap();
        assert_eq!(u32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]]), 2);
        assert_eq!(b.get("old").unwrap().unwrap(), b"written under term 1");
        assert_eq!(b.key_status().unwrap(), (2, 100));
        b.seal();
        assert!(b.rotate(200).is_err(), "sealed vaults do not rotate");
    }

    /// Model check: with names encrypted, `list` and `scan` through the barrier answer
    /// exactly what a plain backend answers for the same logical keys.
    fn listings_match_plain_keys(keys: &[String], prefixes: &[String]) {
        let b = unsealed(Cipher::ChaCha20Poly1305);
        let plain = MemoryBackend::default();
        for k in keys {
            b.put(k, b"v").unwrap();
            plain.put(k, b"v").unwrap();
        }
        for p in prefixes {
            assert_eq!(b.list(p).unwrap(), plain.list(p).unwrap(), "list {p:?}");
            assert_eq!(b.scan(p).unwrap(), plain.scan(p).unwrap(), "scan {p:?}");
        }
    }

    #[test]
    fn list_and_scan_decode_names_like_plain_storage() {
        let keys: Vec<String> = [
            "logical/m1/meta/app/db",
            "logical/m1/meta/app/web",
            "logical/m1/meta/billing",
            "logical/m1/meta/b/deep/x",
            "logical/m2/meta/app/db",
            "sys/policy/ops",
            "sys/policy/dev",
            "sys/notify/outbox/0002.b.tg",
            "sys/notify/outbox/0001.a.tg",
        ]
        .map(String::from)
        .to_vec();
        let prefixes: Vec<String> = [
            "",
            "logical/m1/meta/",
            "logical/m1/meta/b",
            "logical/m1/meta/app/",
            "logical/m1/",
            "sys/policy/",
            "sys/notify/outbox/",
            "sys/po",
            "nothing/here/",
        ]
        .map(String::from)
        .to_vec();
        listings_match_plain_keys(&keys, &prefixes);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        /// Fuzz twin of the model check, over random trees of short names.
        #[test]
        fn random_trees_list_like_plain_storage(
            keys in proptest::collection::vec("[ab]{1,2}(/[abc]{1,2}){0,3}", 1..12),
            prefixes in proptest::collection::vec("([ab]{1,2}/){0,2}[abc]{0,1}", 1..6),
        ) {
            listings_match_plain_keys(&keys, &prefixes);
        }
    }

    #[test]
    fn stored_keys_show_no_name() {
        let b = unsealed(Cipher::ChaCha20Poly1305);
        b.put("logical/uuid/meta/probe/canary", b"v").unwrap();
        b.put("sys/policy/ops-team", b"v").unwrap();
        let stored = b.raw().scan("").unwrap().join("\n");
        for word in ["logical", "meta", "probe", "canary", "policy", "ops-team"] {
            assert!(!stored.contains(word), "{word} readable in stored keys");
        }
        // A Shamir vault has no seal-wrapped key.
        for clear in REQUIRED_CLEAR_KEYS {
            assert!(
                b.raw().get(clear).unwrap().is_some(),
                "{clear} stays readable"
            );
        }
        assert!(b.scan("").unwrap().iter().all(|k| !k.starts_with("core/")));
    }

    /// Turns a freshly unsealed barrier's storage into what the code before encrypted
    /// names wrote: keys in the clear and a keyring without a name key.
    fn downgrade_to_clear_names(b: &Barrier, values: &[(&str, &[u8])]) {
        let guard = b.keyring.read();
        let ring = guard.as_ref().unwrap();
        let mut file: serde_json::Value = serde_json::from_slice(&ring.encode().unwrap()).unwrap();
        file.as_object_mut().unwrap().remove("names");
        let wrapped = ring
            .cipher
            .seal(
                &ring.root,
                &serde_json::to_vec(&file).unwrap(),
                KEYRING_PATH.as_bytes(),
            )
            .unwrap();
        drop(guard);
        for key in b.raw().scan("").unwrap() {
            if !CLEAR_KEYS.contains(&key.as_str()) {
                b.raw().delete(&key).unwrap();
            }
        }
        b.raw().put(KEYRING_PATH, &wrapped).unwrap();
        for (path, value) in values {
            let ct = b.encrypt(path, value).unwrap();
            b.raw().put(path, &ct).unwrap();
        }
    }

    #[test]
    fn vault_with_clear_names_is_migrated_at_unseal() {
        let b = Barrier::new(Arc::new(MemoryBackend::default()));
        let (key, _) = b.initialize(1, 1, Cipher::Aes256Gcm, 0).unwrap();
        b.unseal_with_key(&key[..]).unwrap();
        downgrade_to_clear_names(
            &b,
            &[
                ("logical/m/meta/probe/canary", b"meta"),
                ("sys/policy/ops", b"policy"),
            ],
        );
        b.seal();
        assert!(
            b.raw().get("sys/policy/ops").unwrap().is_some(),
            "old layout"
        );
        b.unseal_with_key(&key[..]).unwrap();
        assert_eq!(b.get("sys/policy/ops").unwrap().unwrap(), b"policy");
        assert_eq!(
            b.get("logical/m/meta/probe/canary").unwrap().unwrap(),
            b"meta"
        );
        assert_eq!(b.list("logical/m/meta/").unwrap(), vec!["probe/"]);
        let stored = b.raw().scan("").unwrap().join("\n");
        assert!(!stored.contains("canary") && !stored.contains("policy"));
        // The name key is now stored: a second unseal finds the same keys.
        b.seal();
        let before = b.raw().scan("").unwrap();
        b.unseal_with_key(&key[..]).unwrap();
        assert_eq!(b.raw().scan("").unwrap(), before);
        assert_eq!(b.get("sys/policy/ops").unwrap().unwrap(), b"policy");
    }

    #[test]
    fn rotation_keeps_the_name_key() {
        let b = Barrier::new(Arc::new(MemoryBackend::default()));
        let (key, _) = b.initialize(1, 1, Cipher::default(), 0).unwrap();
        b.unseal_with_key(&key[..]).unwrap();
        b.put("sys/policy/ops", b"v").unwrap();
        let before = b.raw().scan("").unwrap();
        b.rotate(1).unwrap();
        b.seal();
        b.unseal_with_key(&key[..]).unwrap();
        assert_eq!(b.raw().scan("").unwrap(), before);
        assert_eq!(b.get("sys/policy/ops").unwrap().unwrap(), b"v");
    }

    /// A damaged keyring once read as wrong shares (flipped) or a bare "corrupt
    /// record" (missing): the root key opened, so the shares were right, and it is an
    /// integrity error naming the keyring. The barrier stays sealed.
    #[test]
    fn damaged_or_missing_keyring_is_an_integrity_error_not_wrong_shares() {
        for missing in [false, true] {
            let b = Barrier::new(Arc::new(MemoryBackend::default()));
            let (_, shares) = b.initialize(3, 2, Cipher::default(), 0).unwrap();
            if missing {
                b.raw().delete(KEYRING_PATH).unwrap();
            } else {
                let mut ring = b.raw().get(KEYRING_PATH).unwrap().unwrap();
                let mid = ring.len() / 2;
                ring[mid] ^= 0x04;
                b.raw().put(KEYRING_PATH, &ring).unwrap();
            }
            b.submit_share(shares[0].clone()).unwrap();
            match b.submit_share(shares[1].clone()) {
                Err(Error::Integrity(e)) => {
                    assert_eq!(e.key(), Some(KEYRING_PATH));
                    let want = if missing {
                        IntegrityKind::Missing
                    } else {
                        IntegrityKind::Authentication
                    };
                    assert_eq!(e.kind(), want);
                }
                other => panic!("missing {missing}: {:?}", other.map(|_| ())),
            }
            assert!(b.is_sealed() && !b.has_keyring());
            assert_eq!(b.progress().0, 0);
        }
    }

    /// Wrong shares still read as wrong shares: only a root key that opened makes a
    /// keyring failure damage.
    #[test]
    fn wrong_shares_are_not_reported_as_damage() {
        let b = Barrier::new(Arc::new(MemoryBackend::default()));
        let (_, shares) = b.initialize(3, 2, Cipher::default(), 0).unwrap();
        let other = Barrier::new(Arc::new(MemoryBackend::default()));
        let (_, foreign) = other.initialize(3, 2, Cipher::default(), 0).unwrap();
        b.submit_share(shares[0].clone()).unwrap();
        assert!(matches!(
            b.submit_share(foreign[1].clone()),
            Err(Error::InvalidRequest(_))
        ));
        assert!(b.is_sealed());
    }

    #[test]
    fn initialize_twice_is_refused() {
        let b = Barrier::new(Arc::new(MemoryBackend::default()));
        b.initialize(1, 1, Cipher::default(), 0).unwrap();
        assert!(matches!(
            b.initialize(1, 1, Cipher::default(), 0),
            Err(Error::AlreadyInitialized)
        ));
    }
}
