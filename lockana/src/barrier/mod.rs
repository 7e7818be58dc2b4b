//! The barrier: everything the vault stores passes through here and is encrypted with
//! an AEAD, the storage path bound in as associated data.
//!
//! Key hierarchy, as in Vault: data keys live in a keyring (one per term, for
//! rotation); the keyring is encrypted by the root key; the root key is encrypted by
//! the unseal key; the unseal key is split with Shamir and never stored.

mod cipher;
mod rekey;
mod shamir;

pub use self::cipher::Cipher;

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::storage::{Backend, BatchOp};
use crate::{BarrierError, Error, Result};

const SEAL_CONFIG_PATH: &str = "core/seal-config";
const ROOT_KEY_PATH: &str = "core/root-key";
const KEYRING_PATH: &str = "core/keyring";
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
}

#[derive(Serialize, Deserialize)]
struct KeyringFile {
    cipher: String,
    active_term: u32,
    keys: Vec<KeyringEntry>,
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
        };
        let out =
            Zeroizing::new(serde_json::to_vec(&file).map_err(|_| crate::StorageError::Corrupt)?);
        for mut e in file.keys {
            zeroize::Zeroize::zeroize(&mut e.key);
        }
        Ok(out)
    }

    fn decode(bytes: &[u8], root: Zeroizing<[u8; 32]>) -> Result<Keyring, Error> {
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
        Ok(Keyring {
            cipher,
            active_term: file.active_term,
            keys,
            installed,
            root,
        })
    }
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

/// Encryption at rest and seal state.
pub(crate) struct Barrier {
    storage: Arc<dyn Backend>,
    keyring: RwLock<Option<Keyring>>,
    progress: Mutex<Progress>,
    /// The seal configuration once read: it changes only at init, and `sys/health` and
    /// `sys/seal-status` read it on every call.
    config: RwLock<Option<Arc<SealConfig>>>,
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
        }
    }

    pub(crate) fn storage_kind(&self) -> &'static str {
        self.storage.kind()
    }

    pub(crate) fn seal_config(&self) -> Result<Option<Arc<SealConfig>>> {
        if let Some(c) = self.config.read().as_ref() {
            return Ok(Some(c.clone()));
        }
        match self.storage.get(SEAL_CONFIG_PATH)? {
            None => Ok(None),
            Some(b) => {
                let c: Arc<SealConfig> =
                    Arc::new(serde_json::from_slice(&b).map_err(|_| crate::StorageError::Corrupt)?);
                *self.config.write() = Some(c.clone());
                Ok(Some(c))
            }
        }
    }

    pub(crate) fn is_sealed(&self) -> bool {
        self.keyring.read().is_none()
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
        };
        let wrapped_root = cipher.seal(&unseal_key, &root_key[..], ROOT_KEY_PATH.as_bytes())?;
        let wrapped_ring = cipher.seal(&root_key, &keyring.encode()?, KEYRING_PATH.as_bytes())?;
        let config = SealConfig {
            kind: "shamir".into(),
            secret_shares: shares,
            secret_threshold: threshold,
            cipher: cipher.name().into(),
            nonce_seed: uuid::Uuid::new_v4().to_string(),
        };
        let config = serde_json::to_vec(&config).map_err(|_| crate::StorageError::Corrupt)?;
        let parts = shamir::split(&unseal_key[..], shares, threshold)?;
        self.storage.batch(vec![
            BatchOp::Put(ROOT_KEY_PATH.into(), wrapped_root),
            BatchOp::Put(KEYRING_PATH.into(), wrapped_ring),
            BatchOp::Put(SEAL_CONFIG_PATH.into(), config),
        ])?;
        Ok((unseal_key, parts))
    }

    /// Opens the key hierarchy with the whole unseal key.
    pub(crate) fn unseal_with_key(&self, unseal_key: &[u8]) -> Result<()> {
        let config = self.seal_config()?.ok_or(Error::NotInitialized)?;
        let cipher = config.cipher();
        let unseal_key = as_key(unseal_key)?;
        let wrapped_root = self
            .storage
            .get(ROOT_KEY_PATH)?
            .ok_or(crate::StorageError::Corrupt)?;
        let root =
            Zeroizing::new(cipher.open(&unseal_key, &wrapped_root, ROOT_KEY_PATH.as_bytes())?);
        let root = as_key(&root).map_err(|_| crate::StorageError::Corrupt)?;
        let wrapped_ring = self
            .storage
            .get(KEYRING_PATH)?
            .ok_or(crate::StorageError::Corrupt)?;
        let ring = Zeroizing::new(cipher.open(&root, &wrapped_ring, KEYRING_PATH.as_bytes())?);
        *self.keyring.write() = Some(Keyring::decode(&ring, root)?);
        Ok(())
    }

    /// Adds one share. Returns the progress (0 once unsealed). A wrong combination
    /// resets progress and fails.
    pub(crate) fn submit_share(&self, share: Zeroizing<Vec<u8>>) -> Result<u8> {
        let config = self.seal_config()?.ok_or(Error::NotInitialized)?;
        if !self.is_sealed() {
            return Ok(0);
        }
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
        let key = shamir::combine(&shares, config.secret_threshold)?;
        self.unseal_with_key(&key).map_err(|e| match e {
            Error::Barrier(_) => Error::invalid(
                "failed to unseal: the unseal key shares did not combine into the right key; progress was reset, start again",
            ),
            other => other,
        })?;
        Ok(0)
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

    /// Drops all key material.
    pub(crate) fn seal(&self) {
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

    pub(crate) fn get(&self, path: &str) -> Result<Option<Vec<u8>>> {
        if self.is_sealed() {
            return Err(Error::Sealed);
        }
        match self.storage.get(path)? {
            None => Ok(None),
            Some(ct) => Ok(Some(self.decrypt(path, &ct)?)),
        }
    }

    pub(crate) fn put(&self, path: &str, value: &[u8]) -> Result<()> {
        self.apply(vec![Op::Put(path.to_owned(), value.to_vec())])
    }

    pub(crate) fn list(&self, prefix: &str) -> Result<Vec<String>> {
        if self.is_sealed() {
            return Err(Error::Sealed);
        }
        Ok(self.storage.list(prefix)?)
    }

    pub(crate) fn scan(&self, prefix: &str) -> Result<Vec<String>> {
        if self.is_sealed() {
            return Err(Error::Sealed);
        }
        Ok(self.storage.scan(prefix)?)
    }

    /// Applies changes atomically (one durable commit).
    pub(crate) fn apply(&self, ops: Vec<Op>) -> Result<()> {
        let mut batch = Vec::with_capacity(ops.len());
        for op in ops {
            batch.push(match op {
                Op::Put(path, value) => {
                    let ct = self.encrypt(&path, &value)?;
                    BatchOp::Put(path, ct)
                }
                Op::Delete(path) => BatchOp::Delete(path),
            });
        }
        if self.is_sealed() {
            return Err(Error::Sealed);
        }
        Ok(self.storage.batch(batch)?)
    }

    #[cfg(test)]
    pub(crate) fn raw(&self) -> &Arc<dyn Backend> {
        &self.storage
    }
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
            let raw = b.raw().get("logical/x/secret").unwrap().unwrap();
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
            let raw = b.raw().get("p").unwrap().unwrap();
            for i in 0..raw.len() {
                let mut bad = raw.clone();
                bad[i] ^= 0x01;
                b.raw().put("p", &bad).unwrap();
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
            let raw = b.raw().get("logical/a").unwrap().unwrap();
            b.raw().put("logical/b", &raw).unwrap();
            assert!(matches!(
                b.get("logical/b"),
                Err(Error::Barrier(BarrierError::Authentication))
            ));
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
        assert!(!b.is_sealed());
    }

    proptest::proptest! {
        /// Fuzz twin: arbitrary stored bytes never decrypt and never panic.
        #[test]
        fn arbitrary_ciphertexts_are_refused(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..96)) {
            let b = unsealed(Cipher::ChaCha20Poly1305);
            b.raw().put("p", &bytes).unwrap();
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
        let raw = b.raw().get("new").unwrap().unwrap();
        assert_eq!(u32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]]), 2);
        assert_eq!(b.get("old").unwrap().unwrap(), b"written under term 1");
        assert_eq!(b.key_status().unwrap(), (2, 100));
        b.seal();
        assert!(b.rotate(200).is_err(), "sealed vaults do not rotate");
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
