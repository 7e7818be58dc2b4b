//! The Python exception hierarchy, and the one place that maps the library's `Error`
//! onto it. The HTTP `Client` (pure Python) maps status codes onto the same classes.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    lockana,
    LockanaError,
    PyException,
    "Base class of every error the vault reports."
);
create_exception!(
    lockana,
    SealedError,
    LockanaError,
    "The vault is sealed: unseal it with enough key shares first."
);
create_exception!(
    lockana,
    NotInitializedError,
    LockanaError,
    "The vault has not been initialized (`Vault.init`)."
);
create_exception!(
    lockana,
    AlreadyInitializedError,
    LockanaError,
    "`init` was called on a vault that is already initialized."
);
create_exception!(
    lockana,
    PermissionDenied,
    LockanaError,
    "No token, an unknown token, or a token whose policies do not allow the request."
);
create_exception!(
    lockana,
    NotFound,
    LockanaError,
    "The entry does not exist (or the secret version is deleted or destroyed)."
);
create_exception!(
    lockana,
    NoRouteError,
    LockanaError,
    "No mount serves the path (for example `secret/` is not enabled)."
);
create_exception!(
    lockana,
    UnsupportedOperation,
    LockanaError,
    "The path exists but does not support the operation."
);
create_exception!(
    lockana,
    InvalidRequest,
    LockanaError,
    "The request is malformed; the message says why (it never echoes values)."
);
create_exception!(
    lockana,
    CasMismatch,
    InvalidRequest,
    "A KV v2 check-and-set version did not match the secret's current version."
);
create_exception!(
    lockana,
    StorageError,
    LockanaError,
    "The storage backend failed (for example the file is open in another process)."
);
create_exception!(
    lockana,
    BarrierError,
    LockanaError,
    "The encryption layer failed: a wrong unseal key share, or tampered data."
);

create_exception!(
    lockana,
    ProjectKeyError,
    LockanaError,
    "An RSA project's key could not open its variables (a wrong key, a damaged value), or a key is not valid."
);

/// An RSA project key failure (client side) as [`ProjectKeyError`].
pub(crate) fn key_to_py(err: lockana::ProjectKeyError) -> PyErr {
    ProjectKeyError::new_err(err.to_string())
}

/// The one mapping from the library's errors to Python exceptions. `lockana::Error`
/// is `#[non_exhaustive]`: variants added later fall back to `LockanaError` until they
/// get a class of their own. The message is the library's `Display`, which never
/// contains request values.
pub(crate) fn to_py(err: lockana::Error) -> PyErr {
    use lockana::Error as E;
    let msg = err.to_string();
    match err {
        E::Sealed => SealedError::new_err(msg),
        E::NotInitialized => NotInitializedError::new_err(msg),
        E::AlreadyInitialized => AlreadyInitializedError::new_err(msg),
        // A token named in a request body (lookup, revoke) is unknown: Vault's 403 too.
        E::PermissionDenied | E::Unauthenticated | E::BadToken => PermissionDenied::new_err(msg),
        E::NotFound | E::Missing(_) => NotFound::new_err(msg),
        E::NoRoute(_) => NoRouteError::new_err(msg),
        E::UnsupportedOperation => UnsupportedOperation::new_err(msg),
        E::CasMismatch => CasMismatch::new_err(msg),
        E::InvalidRequest(_) | E::Refused(_) => InvalidRequest::new_err(msg),
        E::Storage(_) | E::Integrity(_) => StorageError::new_err(msg),
        E::Barrier(_) => BarrierError::new_err(msg),
        E::ProjectKey(_) => ProjectKeyError::new_err(msg),
        _ => LockanaError::new_err(msg),
    }
}

/// Adds the exception classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("LockanaError", py.get_type::<LockanaError>())?;
    m.add("SealedError", py.get_type::<SealedError>())?;
    m.add("NotInitializedError", py.get_type::<NotInitializedError>())?;
    m.add(
        "AlreadyInitializedError",
        py.get_type::<AlreadyInitializedError>(),
    )?;
    m.add("PermissionDenied", py.get_type::<PermissionDenied>())?;
    m.add("NotFound", py.get_type::<NotFound>())?;
    m.add("NoRouteError", py.get_type::<NoRouteError>())?;
    m.add(
        "UnsupportedOperation",
        py.get_type::<UnsupportedOperation>(),
    )?;
    m.add("InvalidRequest", py.get_type::<InvalidRequest>())?;
    m.add("CasMismatch", py.get_type::<CasMismatch>())?;
    m.add("StorageError", py.get_type::<StorageError>())?;
    m.add("BarrierError", py.get_type::<BarrierError>())?;
    m.add("ProjectKeyError", py.get_type::<ProjectKeyError>())?;
    Ok(())
}
