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
    /// This node of an HA cluster is a standby: the active node serves (a transport
    /// forwards the request there).
    #[error("node is not active")]
    Standby,
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
    /// A named entry does not exist, and Vault says which in a 404's error text
    /// (`role "x" does not exist`); names, not values, go in the message.
    #[error("{0}")]
    Missing(Cow<'static, str>),
    /// No mount or handler serves the path.
    #[error("no handler for route \"{0}\". route entry not found.")]
    NoRoute(String),
    /// A mounted backend has no route for the path (Vault's `ErrUnsupportedPath`, also
    /// what a write to a sub-path of a missing entry answers).
    #[error("unsupported path")]
    UnsupportedPath,
    /// The path exists but does not support the operation.
    #[error("unsupported operation")]
    UnsupportedOperation,
    /// A KV v2 check-and-set version did not match the current version.
    #[error("check-and-set parameter did not match the current version")]
    CasMismatch,
    /// The request is malformed: the message says what is wrong and never echoes values.
    #[error("{0}")]
    InvalidRequest(Cow<'static, str>),
    /// A malformed request that Vault refuses in its request pipeline rather than in
    /// the engine: 400 like [`Error::InvalidRequest`], in go-multierror's form over HTTP.
    #[error("{0}")]
    Refused(Cow<'static, str>),
    /// A storage failure.
    #[error(transparent)]
    Storage(StorageError),
    /// Stored data failed an integrity check: it was damaged or tampered with, or the
    /// storage engine broke on it. Never reported as a bad token or a missing entry.
    #[error(transparent)]
    Integrity(IntegrityError),
    /// An encryption-layer failure.
    #[error(transparent)]
    Barrier(#[from] BarrierError),
    /// The audit log could not record the request (fail-closed: it was not served).
    #[error(transparent)]
    Audit(#[from] crate::AuditError),
    /// A client-side operation with an RSA project's keys failed (never raised by the
    /// server, which holds no private key).
    #[error(transparent)]
    ProjectKey(#[from] crate::ProjectKeyError),
}

impl Error {
    /// An [`Error::InvalidRequest`] with the given message.
    pub fn invalid(msg: impl Into<Cow<'static, str>>) -> Self {
        Error::InvalidRequest(msg.into())
    }
}

impl Error {
    /// An [`Error::Missing`] with the given message.
    pub fn missing(msg: impl Into<Cow<'static, str>>) -> Self {
        Error::Missing(msg.into())
    }

    /// An [`Error::Refused`] with the given message.
    pub fn refused(msg: impl Into<Cow<'static, str>>) -> Self {
        Error::Refused(msg.into())
    }
}

impl From<StorageError> for Error {
    /// Integrity failures found by the storage layer surface as [`Error::Integrity`],
    /// whichever layer noticed them.
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Integrity(i) => Error::Integrity(i),
            other => Error::Storage(other),
        }
    }
}

impl From<IntegrityError> for Error {
    fn from(e: IntegrityError) -> Self {
        Error::Integrity(e)
    }
}

/// What an integrity failure found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IntegrityKind {
    /// A stored value failed authentication: damaged, tampered with, or moved from
    /// another key.
    Authentication,
    /// A stored value is not a ciphertext this vault wrote (bad version or length), or
    /// a stored record does not decode.
    Malformed,
    /// A stored value names a key term the keyring does not hold.
    UnknownTerm,
    /// An entry every initialized vault has is missing.
    Missing,
    /// The storage engine panicked reading or writing damaged data.
    EnginePanic,
    /// The storage file failed its checksum verification when it was opened.
    File,
}

impl IntegrityKind {
    fn describe(self) -> &'static str {
        match self {
            IntegrityKind::Authentication => {
                "the stored value failed authentication (damaged, tampered with or moved)"
            }
            IntegrityKind::Malformed => {
                "the stored value is malformed (not a ciphertext or record this vault wrote)"
            }
            IntegrityKind::UnknownTerm => "the stored value names an unknown key term",
            IntegrityKind::Missing => "a required entry is missing",
            IntegrityKind::EnginePanic => "the storage engine failed on damaged data",
            IntegrityKind::File => "the storage file failed its checksum verification",
        }
    }
}

/// Stored data failed an integrity check. `Display` names the storage key (keys are
/// not secret; values are, and never appear) and says what failed.
#[derive(Debug, Clone)]
pub struct IntegrityError {
    key: Option<String>,
    kind: IntegrityKind,
    detail: Option<String>,
}

impl IntegrityError {
    /// An integrity failure of the entry at `key`.
    pub fn at(key: &str, kind: IntegrityKind) -> Self {
        IntegrityError {
            key: Some(printable_key(key)),
            kind,
            detail: None,
        }
    }

    /// An integrity failure of the storage as a whole (no single key to name).
    pub(crate) fn file(detail: impl Into<String>) -> Self {
        IntegrityError {
            key: None,
            kind: IntegrityKind::File,
            detail: Some(detail.into()),
        }
    }

    /// A storage engine failure with no single key to name (`detail` says where).
    pub(crate) fn engine(detail: impl Into<String>) -> Self {
        IntegrityError {
            key: None,
            kind: IntegrityKind::EnginePanic,
            detail: Some(detail.into()),
        }
    }

    /// Adds a value-free explanation (an engine's error text, what to do next).
    pub(crate) fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// The storage key concerned, if the failure concerns one entry. Control and
    /// non-ASCII characters of a damaged key are escaped.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// What failed.
    pub fn kind(&self) -> IntegrityKind {
        self.kind
    }
}

impl std::fmt::Display for IntegrityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("storage integrity failure")?;
        if let Some(key) = &self.key {
            write!(f, " at key \"{key}\"")?;
        }
        write!(f, ": {}", self.kind.describe())?;
        if let Some(d) = &self.detail {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

impl std::error::Error for IntegrityError {}

/// A damaged key can hold any bytes: keep what reaches logs and errors on one line.
fn printable_key(key: &str) -> String {
    const MAX: usize = 256;
    let mut out: String = key
        .chars()
        .flat_map(char::escape_default)
        .take(MAX)
        .collect();
    if key.len() > MAX {
        out.push('…');
    }
    out
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
    /// Stored data failed an integrity check (surfaces as [`Error::Integrity`]).
    #[error(transparent)]
    Integrity(IntegrityError),
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
