//! The one error type of the library. `Display` never includes request values: they
//! might be secrets. Paths are not secret (Vault audits them in the clear).

use std::borrow::Cow;

/// Everything that can go wrong in the vault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The vault is sealed; only `sys/` status and unseal paths answer.
    #[error("Vault is sealed")]
    Sealed,
    /// The vault has not been initialized.
    #[error("Vault is not initialized")]
    NotInitialized,
    /// Init was called twice.
    #[error("Vault is already initialized")]
    AlreadyInitialized,
    /// A valid token whose policies do not grant the operation (or another refusal made
    /// after the caller was identified). Over HTTP Vault reports it through its request
    /// pipeline, in the multierror form.
    #[error("permission denied")]
    PermissionDenied,
    /// No token, or a token that is unknown, revoked or expired: refused before any policy
    /// is consulted (Vault's plain `permission denied`).
    #[error("permission denied")]
    Unauthenticated,
    /// A token named in the request body is unknown, revoked or expired.
    #[error("bad token")]
    BadToken,
    /// The entry does not exist (Vault answers 404 with an empty error list).
    #[error("not found")]
    NotFound,
    /// No mount or handler serves the path.
    #[error("no handler for route \"{0}\". route entry not found.")]
    NoRoute(String),
    /// The path exists but does not support the operation.
    #[error("unsupported operation")]
    UnsupportedOperation,
    /// A KV v2 check-and-set version did not match the current version.
    #[error("check-and-set parameter did not match the current version")]
    CasMismatch,
    /// The request is malformed: the message says what is wrong and never echoes values.
    #[error("{0}")]
    InvalidRequest(Cow<'static, str>),
    /// A storage failure.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// An encryption-layer failure.
    #[error(transparent)]
    Barrier(#[from] BarrierError),
    /// The audit log could not record the request (fail-closed: it was not served).
    #[error(transparent)]
    Audit(#[from] crate::AuditError),
}

impl Error {
    /// An [`Error::InvalidRequest`] with the given message.
    pub fn invalid(msg: impl Into<Cow<'static, str>>) -> Self {
        Error::InvalidRequest(msg.into())
    }
}

/// Failures of the storage backend.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// Another process holds the database file.
    #[error(
        "the database file is already open in another process (is another lockana server running on the same storage path?)"
    )]
    AlreadyOpen,
    /// The backend failed; the text comes from the storage engine, never from values.
    #[error("storage error: {0}")]
    Backend(String),
    /// A stored record could not be decoded.
    #[error("corrupt record in storage")]
    Corrupt,
}

/// Failures of the encryption barrier.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BarrierError {
    /// Decryption failed: wrong key, tampered or moved ciphertext.
    #[error("cipher: message authentication failed")]
    Authentication,
    /// A ciphertext refers to a key term the keyring does not hold.
    #[error("no key for the ciphertext's key term")]
    UnknownTerm,
    /// A ciphertext is too short or has an unknown version.
    #[error("malformed ciphertext")]
    Malformed,
    /// An unseal key share could not be decoded or combined.
    #[error("invalid unseal key share")]
    InvalidShare,
    /// The system random generator failed.
    #[error("random number generator failure")]
    Random,
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
