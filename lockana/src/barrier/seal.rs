//! Auto-unseal: a seal that wraps the unseal key, so the vault opens itself at start.
//!
//! Vault and OpenBao encrypt the root key with a KMS ("seal") and hand the operator
//! recovery keys instead of unseal keys. Lockana keeps its key hierarchy as it is
//! and adds one step: at init the unseal key is wrapped by the seal and stored in the
//! clear at [`SEAL_WRAPPED_KEY_PATH`]; the Shamir shares of the same unseal key are
//! returned as the recovery keys. At start the seal unwraps the unseal key and the
//! barrier opens with it. The recovery keys keep working for `sys/unseal`,
//! `sys/generate-root` and `sys/rekey` (a difference from Vault, where recovery keys
//! cannot decrypt anything; docs/compat.md).

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::Cipher;

/// Where the seal-wrapped unseal key is stored (in the clear: it is encrypted by the
/// seal, and it must be readable before the barrier opens).
pub(crate) const SEAL_WRAPPED_KEY_PATH: &str = "core/seal-wrapped-key";

/// A key-wrapping service that auto-unseals the vault: OpenBao's `seal "static"`
/// (a key from the config file) or a remote KMS the server reaches (`seal "transit"`).
///
/// `wrap` and `unwrap` are called at init, at every start and at rekey. The blob
/// `wrap` returns is stored as it is; it must carry whatever `unwrap` needs to find
/// the key again (a key id, a key version).
pub trait KeyWrapper: Send + Sync {
    /// The seal type Vault reports in `sys/seal-status` (`static`, `transit`).
    fn kind(&self) -> &str;
    /// Encrypts `plaintext`, binding `aad` to it.
    fn wrap(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError>;
    /// Reverses [`KeyWrapper::wrap`].
    fn unwrap(&self, blob: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError>;
    /// Whether `blob` was wrapped with a key other than the current one, so it should
    /// be wrapped again (key rotation). False when the seal cannot tell.
    fn is_stale(&self, _blob: &[u8]) -> bool {
        false
    }
}

/// A seal that could not wrap or unwrap. The message names the seal setting at fault
/// and never holds key material.
#[derive(Debug, thiserror::Error)]
#[error("seal: {0}")]
pub struct SealError(pub String);

/// One named 32-byte key of a static seal.
pub struct StaticKey {
    id: String,
    key: Zeroizing<[u8; 32]>,
}

impl StaticKey {
    /// A key and the id that names it (OpenBao's `current_key_id`).
    pub fn new(id: impl Into<String>, key: Zeroizing<[u8; 32]>) -> StaticKey {
        StaticKey { id: id.into(), key }
    }
}

/// OpenBao's `seal "static"`: AES-256-GCM with a key given to the server, and an
/// optional previous key so the key can be rotated (what the previous key wrapped is
/// wrapped again with the current one at the next start).
pub struct StaticSeal {
    current: StaticKey,
    previous: Option<StaticKey>,
}

/// What a static seal stores: the key id and the AES-256-GCM ciphertext.
#[derive(Serialize, Deserialize)]
struct StaticBlob {
    key_id: String,
    #[serde(with = "b64")]
    ciphertext: Vec<u8>,
}

mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

impl StaticSeal {
    /// A static seal with its current key and, while rotating, the previous one.
    pub fn new(current: StaticKey, previous: Option<StaticKey>) -> Result<StaticSeal, SealError> {
        if current.id.is_empty() {
            return Err(SealError("`current_key_id` must not be empty".into()));
        }
        if previous.as_ref().is_some_and(|p| p.id == current.id) {
            return Err(SealError(
                "`previous_key_id` must differ from `current_key_id`".into(),
            ));
        }
        Ok(StaticSeal { current, previous })
    }

    fn key(&self, id: &str) -> Option<&StaticKey> {
        std::iter::once(&self.current)
            .chain(self.previous.as_ref())
            .find(|k| k.id == id)
    }
}

impl KeyWrapper for StaticSeal {
    fn kind(&self) -> &str {
        "static"
    }

    fn wrap(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let ciphertext = Cipher::Aes256Gcm
            .seal(&self.current.key, plaintext, aad)
            .map_err(|e| SealError(format!("cannot encrypt: {e}")))?;
        serde_json::to_vec(&StaticBlob {
            key_id: self.current.id.clone(),
            ciphertext,
        })
        .map_err(|_| SealError("cannot encode the wrapped key".into()))
    }

    fn unwrap(&self, blob: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let blob: StaticBlob = serde_json::from_slice(blob)
            .map_err(|_| SealError("the stored seal-wrapped key is malformed".into()))?;
        let key = self.key(&blob.key_id).ok_or_else(|| {
            SealError(format!(
                "the vault was sealed with the static key `{}`, which is neither \
                 `current_key_id` nor `previous_key_id`",
                blob.key_id
            ))
        })?;
        Cipher::Aes256Gcm
            .open(&key.key, &blob.ciphertext, aad)
            .map(Zeroizing::new)
            .map_err(|_| {
                SealError(format!(
                    "the static key `{}` does not open the stored key: the key's bytes \
                     changed but its id did not",
                    blob.key_id
                ))
            })
    }

    fn is_stale(&self, blob: &[u8]) -> bool {
        serde_json::from_slice::<StaticBlob>(blob).is_ok_and(|b| b.key_id != self.current.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, byte: u8) -> StaticKey {
        StaticKey::new(id, Zeroizing::new([byte; 32]))
    }

    #[test]
    fn static_seal_round_trips_and_binds_the_aad() {
        let seal = StaticSeal::new(key("k1", 1), None).unwrap();
        let blob = seal.wrap(b"unseal key", b"core/x").unwrap();
        assert_eq!(&seal.unwrap(&blob, b"core/x").unwrap()[..], b"unseal key");
        assert!(seal.unwrap(&blob, b"core/y").is_err());
        assert!(!seal.is_stale(&blob));
    }

    #[test]
    fn static_seal_rotation_opens_with_the_previous_key_and_marks_it_stale() {
        let old = StaticSeal::new(key("k1", 1), None).unwrap();
        let blob = old.wrap(b"unseal key", b"a").unwrap();
        let rotated = StaticSeal::new(key("k2", 2), Some(key("k1", 1))).unwrap();
        assert!(rotated.is_stale(&blob));
        assert_eq!(&rotated.unwrap(&blob, b"a").unwrap()[..], b"unseal key");
        let without_previous = StaticSeal::new(key("k2", 2), None).unwrap();
        let e = without_previous
            .unwrap(&blob, b"a")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`k1`"), "{e}");
    }

    #[test]
    fn static_key_changed_under_the_same_id_is_named() {
        let blob = StaticSeal::new(key("k1", 1), None)
            .unwrap()
            .wrap(b"x", b"a")
            .unwrap();
        let e = StaticSeal::new(key("k1", 9), None)
            .unwrap()
            .unwrap(&blob, b"a")
            .unwrap_err()
            .to_string();
        assert!(e.contains("changed"), "{e}");
        assert!(StaticSeal::new(key("", 1), None).is_err());
        assert!(StaticSeal::new(key("a", 1), Some(key("a", 2))).is_err());
    }

    use std::sync::Arc;

    use crate::barrier::Barrier;
    use crate::storage::{Backend, MemoryBackend};

    fn barrier(storage: &Arc<dyn Backend>, seal: StaticSeal) -> Barrier {
        let b = Barrier::new(storage.clone());
        b.set_seal(Arc::new(seal));
        b
    }

    #[test]
    fn a_barrier_opens_with_its_seal_after_restart_rekey_and_key_rotation() {
        let storage: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
        let k1 = || StaticSeal::new(key("k1", 1), None).unwrap();
        let b = barrier(&storage, k1());
        let (_, shares) = b.initialize(3, 2, Cipher::default(), 0).unwrap();
        assert_eq!(b.seal_config().unwrap().unwrap().kind, "static");
        assert_eq!(b.seal_kind(), "static");

        // A new process: the seal alone opens it.
        let b = barrier(&storage, k1());
        b.unseal_with_seal().unwrap();
        assert!(b.has_keyring());
        b.put("logical/x", b"kept").unwrap();

        // Rekey: the seal's copy changes in the same commit.
        let new = b.new_unseal_key(3, 2).unwrap();
        b.install_unseal_key(&new.key, 3, 2).unwrap();
        let b = barrier(&storage, k1());
        b.unseal_with_seal().unwrap();
        assert_eq!(b.get("logical/x").unwrap().unwrap(), b"kept");

        // Rotation: opened with the previous key, then wrapped again with the current.
        let rotated = StaticSeal::new(key("k2", 2), Some(key("k1", 1))).unwrap();
        barrier(&storage, rotated).unseal_with_seal().unwrap();
        let b = barrier(&storage, StaticSeal::new(key("k2", 2), None).unwrap());
        b.unseal_with_seal().unwrap();
        assert!(b.has_keyring());
        assert!(barrier(&storage, k1()).unseal_with_seal().is_err());

        // The recovery keys are shares of the unseal key: the new ones unseal by hand,
        // the ones from before the rekey no longer do.
        let by_hand = Barrier::new(storage.clone());
        assert_eq!(by_hand.submit_share(new.shares[0].clone()).unwrap(), 1);
        by_hand.submit_share(new.shares[2].clone()).unwrap();
        assert!(by_hand.has_keyring());
        let old = Barrier::new(storage);
        old.submit_share(shares[0].clone()).unwrap();
        assert!(old.submit_share(shares[1].clone()).is_err());
    }

    #[test]
    fn a_vault_with_a_seal_is_unsealed_after_init_and_refuses_a_shamir_vault() {
        let vault = crate::Vault::open(crate::StorageConfig::Memory).unwrap();
        vault.set_seal(Arc::new(StaticSeal::new(key("k1", 1), None).unwrap()));
        let init = vault.init(5, 3, Cipher::default()).unwrap();
        assert_eq!(init.keys.len(), 5);
        let status = vault.seal_status();
        assert!(status.initialized && !status.sealed);
        assert_eq!((status.threshold, status.shares), (3, 5));

        // A vault initialized without a seal is not opened by one (no migration).
        let storage: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
        Barrier::new(storage.clone())
            .initialize(1, 1, Cipher::default(), 0)
            .unwrap();
        let e = barrier(&storage, StaticSeal::new(key("k1", 1), None).unwrap())
            .unseal_with_seal()
            .unwrap_err()
            .to_string();
        assert!(e.contains("seal migration is not supported"), "{e}");
    }

    /// A sealed vault whose stored copy of the unseal key is gone is damaged storage
    /// naming the key, not a seal that cannot unwrap.
    #[test]
    fn missing_seal_wrapped_key_is_an_integrity_error_naming_it() {
        let storage: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
        let k1 = || StaticSeal::new(key("k1", 1), None).unwrap();
        barrier(&storage, k1())
            .initialize(3, 2, Cipher::default(), 0)
            .unwrap();
        storage.delete(SEAL_WRAPPED_KEY_PATH).unwrap();
        let b = barrier(&storage, k1());
        match b.unseal_with_seal() {
            Err(crate::Error::Integrity(e)) => {
                assert_eq!(e.key(), Some(SEAL_WRAPPED_KEY_PATH));
                assert_eq!(e.kind(), crate::IntegrityKind::Missing);
            }
            other => panic!("{other:?}"),
        }
        assert!(!b.has_keyring());
    }
}
