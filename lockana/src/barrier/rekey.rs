//! Replacing the unseal key (`sys/rekey`) and proving possession of it
//! (`sys/generate-root`). The root key and the keyring stay as they are: only the
//! wrapping of the root key and the seal configuration change, in one commit.

use zeroize::Zeroizing;

use super::{
    Barrier, ROOT_KEY_PATH, SEAL_CONFIG_PATH, Share, as_key, integrity, random_key, shamir,
};
use crate::storage::BatchOp;
use crate::{Error, IntegrityKind, Result};

/// A freshly generated unseal key and its shares; nothing is stored yet.
pub(crate) struct NewUnsealKey {
    pub key: Zeroizing<[u8; 32]>,
    pub shares: Vec<Share>,
}

impl Barrier {
    /// Recombines unseal key shares with the current threshold.
    pub(crate) fn combine_shares(&self, shares: &[Share], threshold: u8) -> Result<Share> {
        Ok(shamir::combine(shares, threshold)?)
    }

    /// Whether `candidate` is the unseal key in force: it must open the stored root
    /// key, and that root key must be the one the unsealed barrier holds.
    pub(crate) fn verify_unseal_key(&self, candidate: &[u8]) -> Result<bool> {
        let config = self.seal_config()?.ok_or(Error::NotInitialized)?;
        let Ok(candidate) = as_key(candidate) else {
            return Ok(false);
        };
        let wrapped = self
            .storage
            .get(ROOT_KEY_PATH)?
            .ok_or_else(|| integrity(ROOT_KEY_PATH, IntegrityKind::Missing))?;
        let Ok(root) = config
            .cipher()
            .open(&candidate, &wrapped, ROOT_KEY_PATH.as_bytes())
        else {
            return Ok(false);
        };
        let root = Zeroizing::new(root);
        let guard = self.keyring.read();
        let ring = guard.as_ref().ok_or(Error::Sealed)?;
        Ok(subtle::ConstantTimeEq::ct_eq(&root[..], &ring.root[..]).into())
    }

    /// A new random unseal key split into `shares` parts, `threshold` of which
    /// recombine it.
    pub(crate) fn new_unseal_key(&self, shares: u8, threshold: u8) -> Result<NewUnsealKey> {
        let key = random_key()?;
        let shares = shamir::split(&key[..], shares, threshold)?;
        Ok(NewUnsealKey { key, shares })
    }

    /// Makes `key` the unseal key: the root key is wrapped again under it and the
    /// seal configuration records the new share count and threshold, both in one
    /// durable commit — a crash leaves either the old shares working or the new ones.
    pub(crate) fn install_unseal_key(
        &self,
        key: &[u8; 32],
        shares: u8,
        threshold: u8,
    ) -> Result<()> {
        let old = self.seal_config()?.ok_or(Error::NotInitialized)?;
        let guard = self.keyring.read();
        let ring = guard.as_ref().ok_or(Error::Sealed)?;
        let cipher = old.cipher();
        let wrapped_root = cipher.seal(key, &ring.root[..], ROOT_KEY_PATH.as_bytes())?;
        let mut config = (*old).clone();
        config.secret_shares = shares;
        config.secret_threshold = threshold;
        let encoded = serde_json::to_vec(&config).map_err(|_| crate::StorageError::Corrupt)?;
        let mut batch = vec![
            BatchOp::Put(ROOT_KEY_PATH.into(), wrapped_root),
            BatchOp::Put(SEAL_CONFIG_PATH.into(), encoded),
        ];
        // With an auto-unseal the seal's copy of the unseal key changes in the same commit.
        batch.extend(self.wrapped_for(&config.kind, &key[..])?);
        self.storage.batch(batch)?;
        *self.config.write() = Some(std::sync::Arc::new(config));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::barrier::Cipher;
    use crate::storage::{Backend, MemoryBackend};

    #[test]
    fn rekeyed_shares_unseal_and_old_shares_no_longer_do() {
        let storage: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
        let b = Barrier::new(storage.clone());
        let (old_key, _) = b.initialize(1, 1, Cipher::default(), 0).unwrap();
        b.unseal_with_key(&old_key[..]).unwrap();
        b.put("logical/x", b"kept across rekey").unwrap();
        assert!(b.verify_unseal_key(&old_key[..]).unwrap());
        let new = b.new_unseal_key(5, 3).unwrap();
        assert_eq!(new.shares.len(), 5);
        b.install_unseal_key(&new.key, 5, 3).unwrap();
        assert!(!b.verify_unseal_key(&old_key[..]).unwrap());
        assert!(b.verify_unseal_key(&new.key[..]).unwrap());

        // A fresh process on the same storage: only the new shares open it.
        let reopened = Barrier::new(storage);
        let cfg = reopened.seal_config().unwrap().unwrap();
        assert_eq!((cfg.secret_shares, cfg.secret_threshold), (5, 3));
        assert!(reopened.unseal_with_key(&old_key[..]).is_err());
        for s in &new.shares[1..4] {
            reopened.submit_share(s.clone()).unwrap();
        }
        // The keyring is open; the vault activates it once its stores have loaded.
        assert!(reopened.has_keyring());
        assert_eq!(
            reopened.get("logical/x").unwrap().unwrap(),
            b"kept across rekey"
        );
    }

    /// A backend whose batches fail once `fail` is set: a crash or I/O error at the
    /// commit point of a rekey.
    struct Failing {
        inner: MemoryBackend,
        fail: std::sync::atomic::AtomicBool,
    }

    impl Backend for Failing {
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, crate::StorageError> {
            self.inner.get(key)
        }
        fn scan(&self, prefix: &str) -> Result<Vec<String>, crate::StorageError> {
            self.inner.scan(prefix)
        }
        fn batch(&self, ops: Vec<BatchOp>) -> Result<(), crate::StorageError> {
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(crate::StorageError::Backend("injected failure".into()));
            }
            self.inner.batch(ops)
        }
        fn entries(&self) -> Result<Vec<(String, Vec<u8>)>, crate::StorageError> {
            self.inner.entries()
        }
        fn kind(&self) -> &'static str {
            "failing"
        }
    }

    #[test]
    fn a_failed_rekey_commit_leaves_the_old_unseal_key_in_force() {
        let storage = Arc::new(Failing {
            inner: MemoryBackend::default(),
            fail: false.into(),
        });
        let b = Barrier::new(storage.clone());
        let (old_key, _) = b.initialize(1, 1, Cipher::default(), 0).unwrap();
        b.unseal_with_key(&old_key[..]).unwrap();
        let new = b.new_unseal_key(3, 2).unwrap();
        storage
            .fail
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(b.install_unseal_key(&new.key, 3, 2).is_err());
        assert!(b.verify_unseal_key(&old_key[..]).unwrap());
        assert_eq!(b.seal_config().unwrap().unwrap().secret_shares, 1);
        let reopened = Barrier::new(storage);
        reopened.unseal_with_key(&old_key[..]).unwrap();
        assert!(!reopened.verify_unseal_key(&new.key[..]).unwrap());
    }

    /// Checking shares against a vault whose wrapped root key is gone reports the
    /// damage by key, not a bare "corrupt record".
    #[test]
    fn missing_root_key_on_verify_is_an_integrity_error_naming_it() {
        let storage: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
        let b = Barrier::new(storage.clone());
        let (key, _) = b.initialize(1, 1, Cipher::default(), 0).unwrap();
        b.unseal_with_key(&key[..]).unwrap();
        storage.delete(ROOT_KEY_PATH).unwrap();
        match b.verify_unseal_key(&key[..]) {
            Err(Error::Integrity(e)) => {
                assert_eq!(e.key(), Some(ROOT_KEY_PATH));
                assert_eq!(e.kind(), IntegrityKind::Missing);
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    /// A seal configuration that does not decode is damage naming its key: unseal,
    /// rekey and seal-status must not read it as a bare "corrupt record".
    #[test]
    fn malformed_seal_config_is_an_integrity_error_naming_it() {
        let storage: Arc<dyn Backend> = Arc::new(MemoryBackend::default());
        let (key, _) = Barrier::new(storage.clone())
            .initialize(1, 1, Cipher::default(), 0)
            .unwrap();
        let mut config = storage.get(SEAL_CONFIG_PATH).unwrap().unwrap();
        config.truncate(config.len() / 2);
        storage.put(SEAL_CONFIG_PATH, &config).unwrap();
        let b = Barrier::new(storage);
        match b.seal_config() {
            Err(Error::Integrity(e)) => {
                assert_eq!(e.key(), Some(SEAL_CONFIG_PATH));
                assert_eq!(e.kind(), IntegrityKind::Malformed);
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        assert!(matches!(
            b.unseal_with_key(&key[..]),
            Err(Error::Integrity(_))
        ));
    }
}
