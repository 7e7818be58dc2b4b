//! Entry points for the fuzz targets in `fuzz/` (cargo feature `fuzzing`, off by
//! default): parsers that see untrusted bytes but cannot be fed arbitrary bytes
//! through [`Vault::handle`](crate::Vault::handle). Everything else is fuzzed through
//! the public API.

use std::sync::Arc;

use crate::barrier::{Barrier, Cipher};
use crate::storage::{Backend, MemoryBackend};

/// Unsealed barriers, one per cipher, whose storage the fuzzer writes directly: what
/// a reader of the storage file (or a tampering attacker) controls.
pub struct StoredValues {
    barriers: Vec<(Arc<MemoryBackend>, Barrier)>,
}

impl StoredValues {
    /// A fresh, unsealed barrier for every cipher.
    pub fn new() -> crate::Result<StoredValues> {
        let mut barriers = Vec::new();
        for cipher in [
            Cipher::ChaCha20Poly1305,
            Cipher::XChaCha20Poly1305,
            Cipher::Aes256Gcm,
        ] {
            let storage = Arc::new(MemoryBackend::default());
            let barrier = Barrier::new(storage.clone());
            let (key, _) = barrier.initialize(1, 1, cipher, 0)?;
            barrier.unseal_with_key(&key[..])?;
            barriers.push((storage, barrier));
        }
        Ok(StoredValues { barriers })
    }

    /// Stores `bytes` raw at a path and reads it back through each barrier.
    /// Returns how many barriers accepted them as a ciphertext (only a forgery would).
    pub fn open(&self, bytes: &[u8]) -> usize {
        let mut opened = 0;
        for (storage, barrier) in &self.barriers {
            if storage.put("fuzz/value", bytes).is_err() {
                continue;
            }
            if let Ok(Some(_)) = barrier.get("fuzz/value") {
                opened += 1;
            }
        }
        opened
    }
}
