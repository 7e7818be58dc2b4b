//! The AEADs the barrier can use, behind one enum.

use aes_gcm::Aes256Gcm;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305};

use crate::BarrierError;

/// The AEAD that encrypts everything behind the barrier, chosen at init.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cipher {
    /// ChaCha20-Poly1305 (the default).
    #[default]
    ChaCha20Poly1305,
    /// XChaCha20-Poly1305 (192-bit random nonces).
    XChaCha20Poly1305,
    /// AES-256-GCM.
    Aes256Gcm,
}

impl Cipher {
    /// The name used in `sys/init` and the seal configuration.
    pub fn name(self) -> &'static str {
        match self {
            Cipher::ChaCha20Poly1305 => "chacha20-poly1305",
            Cipher::XChaCha20Poly1305 => "xchacha20-poly1305",
            Cipher::Aes256Gcm => "aes-256-gcm",
        }
    }

    /// Parses a name as [`Cipher::name`] gives it (case-insensitive, `_` for `-` allowed).
    pub fn from_name(name: &str) -> Option<Cipher> {
        let n = name.trim().to_ascii_lowercase().replace('_', "-");
        [
            Cipher::ChaCha20Poly1305,
            Cipher::XChaCha20Poly1305,
            Cipher::Aes256Gcm,
        ]
        .into_iter()
        .find(|c| c.name() == n)
    }

    fn nonce_len(self) -> usize {
        match self {
            Cipher::XChaCha20Poly1305 => 24,
            _ => 12,
        }
    }

    /// Encrypts `msg` under `key` with a fresh random nonce: `nonce || ciphertext || tag`.
    pub(crate) fn seal(
        self,
        key: &[u8; 32],
        msg: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, BarrierError> {
        let mut nonce = vec![0u8; self.nonce_len()];
        super::random_fill(&mut nonce)?;
        let payload = Payload { msg, aad };
        let ct = match self {
            Cipher::ChaCha20Poly1305 => ChaCha20Poly1305::new(key.into()).encrypt(
                nonce
                    .as_slice()
                    .try_into()
                    .map_err(|_| BarrierError::Malformed)?,
                payload,
            ),
            Cipher::XChaCha20Poly1305 => XChaCha20Poly1305::new(key.into()).encrypt(
                nonce
                    .as_slice()
                    .try_into()
                    .map_err(|_| BarrierError::Malformed)?,
                payload,
            ),
            Cipher::Aes256Gcm => Aes256Gcm::new(key.into()).encrypt(
                nonce
                    .as_slice()
                    .try_into()
                    .map_err(|_| BarrierError::Malformed)?,
                payload,
            ),
        }
        .map_err(|_| BarrierError::Authentication)?;
        nonce.extend_from_slice(&ct);
        Ok(nonce)
    }

    /// Reverses [`Cipher::seal`]; any tampering, wrong key or wrong `aad` fails.
    pub(crate) fn open(
        self,
        key: &[u8; 32],
        data: &[u8],
        aad: &[u8],
    ) -> Result<Vec<u8>, BarrierError> {
        let n = self.nonce_len();
        if data.len() < n + 16 {
            return Err(BarrierError::Malformed);
        }
        let (nonce, msg) = data.split_at(n);
        let payload = Payload { msg, aad };
        match self {
            Cipher::ChaCha20Poly1305 => ChaCha20Poly1305::new(key.into()).decrypt(
                nonce.try_into().map_err(|_| BarrierError::Malformed)?,
                payload,
            ),
            Cipher::XChaCha20Poly1305 => XChaCha20Poly1305::new(key.into()).decrypt(
                nonce.try_into().map_err(|_| BarrierError::Malformed)?,
                payload,
            ),
            Cipher::Aes256Gcm => Aes256Gcm::new(key.into()).decrypt(
                nonce.try_into().map_err(|_| BarrierError::Malformed)?,
                payload,
            ),
        }
        .map_err(|_| BarrierError::Authentication)
    }
}
