//! `NativeVault`: one `lockana::Vault` behind a lock that `close` can empty, plus the
//! small result classes. Every call that touches storage or keys releases the GIL.

use std::path::PathBuf;

use lockana::{Cipher, Operation, Request, StorageConfig, Vault};
use parking_lot::RwLock;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::convert;
use crate::errors::{self, LockanaError};

/// The vault handle Python's `lockana.Vault` wraps. Safe to share between threads:
/// requests clone the inner `Vault` (an `Arc`) and run without the GIL.
#[pyclass(frozen, module = "lockana._lockana")]
pub(crate) struct NativeVault {
    /// `None` once closed; the store closes when the last in-flight request ends.
    inner: RwLock<Option<Vault>>,
}

impl NativeVault {
    fn new(vault: Vault) -> Self {
        NativeVault {
            inner: RwLock::new(Some(vault)),
        }
    }

    fn vault(&self) -> PyResult<Vault> {
        self.inner
            .read()
            .clone()
            .ok_or_else(|| LockanaError::new_err("the vault is closed"))
    }
}

fn operation(name: &str) -> PyResult<Operation> {
    Ok(match name {
        "read" => Operation::Read,
        "create" => Operation::Create,
        "update" | "write" => Operation::Update,
        "patch" => Operation::Patch,
        "delete" => Operation::Delete,
        "list" => Operation::List,
        _ => {
            return Err(PyValueError::new_err(
                "operation must be one of: read, create, update (or write), patch, delete, list",
            ));
        }
    })
}

#[pymethods]
impl NativeVault {
    /// Opens (or creates) a vault on a redb file, or in memory when `path` is None.
    /// It starts sealed, or uninitialized on a new file.
    #[staticmethod]
    #[pyo3(signature = (path=None))]
    fn open(py: Python<'_>, path: Option<PathBuf>) -> PyResult<Self> {
        let storage = match path {
            Some(p) => StorageConfig::Redb(p),
            None => StorageConfig::Memory,
        };
        py.detach(|| Vault::open(storage))
            .map(NativeVault::new)
            .map_err(errors::to_py)
    }

    /// An in-memory, unsealed vault with KV v2 at `secret/`. Returns the vault, its root
    /// token and its single unseal key (base64).
    #[staticmethod]
    #[pyo3(signature = (root_token_id=None))]
    fn dev(py: Python<'_>, root_token_id: Option<String>) -> PyResult<(Self, String, String)> {
        let (vault, creds) = py
            .detach(|| Vault::dev(root_token_id))
            .map_err(errors::to_py)?;
        let token = creds.root_token.expose().to_owned();
        Ok((NativeVault::new(vault), token, creds.unseal_key_base64))
    }

    /// Initializes the vault with Shamir unseal key shares; it stays sealed.
    fn init(
        &self,
        py: Python<'_>,
        shares: u8,
        threshold: u8,
        cipher: &str,
    ) -> PyResult<InitResult> {
        let cipher = Cipher::from_name(cipher).ok_or_else(|| {
            PyValueError::new_err(
                "unknown cipher: choose chacha20-poly1305, xchacha20-poly1305 or aes-256-gcm",
            )
        })?;
        let vault = self.vault()?;
        let init = py
            .detach(|| vault.init(shares, threshold, cipher))
            .map_err(errors::to_py)?;
        Ok(InitResult {
            keys: init.keys.iter().map(|k| hex_encode(k)).collect(),
            keys_base64: init.keys.iter().map(|k| base64_encode(k)).collect(),
            root_token: init.root_token.expose().to_owned(),
        })
    }

    /// Submits one unseal key share (hex or base64).
    fn unseal(&self, py: Python<'_>, share: &str) -> PyResult<SealStatus> {
        let vault = self.vault()?;
        let status = py.detach(|| vault.unseal(share)).map_err(errors::to_py)?;
        Ok(SealStatus::from(status))
    }

    /// Seals the vault: keys are dropped from memory.
    fn seal(&self, py: Python<'_>) -> PyResult<()> {
        let vault = self.vault()?;
        py.detach(|| vault.seal()).map_err(errors::to_py)
    }

    /// The current seal state.
    fn seal_status(&self, py: Python<'_>) -> PyResult<SealStatus> {
        let vault = self.vault()?;
        Ok(SealStatus::from(py.detach(|| vault.seal_status())))
    }

    /// Seals and closes the vault. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let taken = self.inner.write().take();
        match taken {
            // Dropping the last clone closes the storage file: do it without the GIL.
            Some(vault) => py.detach(move || vault.close()).map_err(errors::to_py),
            None => Ok(()),
        }
    }

    /// Whether `close` has been called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.read().is_none()
    }

    /// Sends one request through `Vault::handle`.
    #[pyo3(signature = (operation, path, data=None, token=None, totp_code=None))]
    fn handle(
        &self,
        py: Python<'_>,
        operation: &str,
        path: String,
        data: Option<&Bound<'_, PyAny>>,
        token: Option<String>,
        totp_code: Option<String>,
    ) -> PyResult<Response> {
        let op = self::operation(operation)?;
        let mut path = path;
        if op == Operation::List && !path.ends_with('/') {
            // As the HTTP server does (and Vault): a LIST is of a folder.
            path.push('/');
        }
        let mut req = Request::new(op, path);
        if let Some(data) = data.filter(|d| !d.is_none()) {
            if !data.is_instance_of::<PyDict>() {
                return Err(PyTypeError::new_err("request data must be a dict"));
            }
            req = req.with_data(convert::to_json(data)?);
        }
        if let Some(token) = token {
            req = req.with_token(token);
        }
        if let Some(code) = totp_code {
            req = req.with_totp_code(code);
        }
        let vault = self.vault()?;
        let resp = py
            .detach(move || vault.handle(req))
            .map_err(errors::to_py)?;
        Response::from_vault(py, resp)
    }

    fn __repr__(&self) -> &'static str {
        if self.closed() {
            "<NativeVault closed>"
        } else {
            "<NativeVault>"
        }
    }
}

/// The vault's answer to a request.
#[pyclass(frozen, module = "lockana")]
pub(crate) struct Response {
    /// The HTTP status the server would answer with (200, 204, or 404 for a deleted
    /// KV v2 version, which still carries data).
    #[pyo3(get)]
    status: u16,
    /// The payload, or None.
    #[pyo3(get)]
    data: Option<Py<PyDict>>,
    /// Non-fatal notes.
    #[pyo3(get)]
    warnings: Vec<String>,
    /// Token info from logins and token creation, including `client_token`.
    #[pyo3(get)]
    auth: Option<Py<PyDict>>,
    /// A body that is not JSON (a project's dotenv file), as text.
    #[pyo3(get)]
    text: Option<String>,
    /// Lease length in seconds.
    #[pyo3(get)]
    lease_duration: u64,
    /// Lease id, if any.
    #[pyo3(get)]
    lease_id: String,
    /// Whether the lease is renewable.
    #[pyo3(get)]
    renewable: bool,
    /// The type of the mount that answered.
    #[pyo3(get)]
    mount_type: String,
}

impl Response {
    fn from_vault(py: Python<'_>, resp: lockana::Response) -> PyResult<Self> {
        let status = resp
            .status
            .unwrap_or(if resp.data.is_some() { 200 } else { 204 });
        if status == 404 && resp.data.is_none() {
            // What the server sends as an empty 404 (KV v2 patch of a missing secret):
            // raise as the HTTP client does. A 404 *with* data (a deleted KV v2
            // version) stays a response, as in Vault.
            return Err(errors::to_py(lockana::Error::NotFound));
        }
        let data = match &resp.data {
            Some(map) => Some(convert::map_to_dict(py, map)?.unbind()),
            None => None,
        };
        let auth = match &resp.auth {
            Some(auth) => {
                let value = serde_json::to_value(auth)
                    .map_err(|_| LockanaError::new_err("cannot encode auth info"))?;
                let dict = match &value {
                    serde_json::Value::Object(map) => convert::map_to_dict(py, map)?,
                    _ => PyDict::new(py),
                };
                // Skipped by serde on purpose (never serialized by accident); the caller
                // asked for this token, so hand it over.
                let token = auth.client_token.as_ref().map(|t| t.expose().to_owned());
                dict.set_item("client_token", token)?;
                Some(dict.unbind())
            }
            None => None,
        };
        let text = resp
            .raw_body
            .map(|b| String::from_utf8_lossy(&b.bytes).into_owned());
        let status = if text.is_some() && resp.status.is_none() {
            200
        } else {
            status
        };
        Ok(Response {
            status,
            data,
            warnings: resp.warnings,
            auth,
            text,
            lease_duration: resp.lease_duration,
            lease_id: resp.lease_id,
            renewable: resp.renewable,
            mount_type: resp.mount_type,
        })
    }
}

#[pymethods]
impl Response {
    /// Builds a response (the HTTP client does, so both transports answer alike).
    #[new]
    #[pyo3(signature = (status=200, data=None, warnings=Vec::new(), auth=None, lease_duration=0, lease_id=String::new(), renewable=false, mount_type=String::new()))]
    #[allow(clippy::too_many_arguments)]
    fn py_new(
        status: u16,
        data: Option<Bound<'_, PyDict>>,
        warnings: Vec<String>,
        auth: Option<Bound<'_, PyDict>>,
        lease_duration: u64,
        lease_id: String,
        renewable: bool,
        mount_type: String,
    ) -> Self {
        Response {
            status,
            data: data.map(Bound::unbind),
            warnings,
            auth: auth.map(Bound::unbind),
            text: None,
            lease_duration,
            lease_id,
            renewable,
            mount_type,
        }
    }

    // Never shows values: they are secrets.
    fn __repr__(&self, py: Python<'_>) -> String {
        let data = match &self.data {
            Some(d) => format!("<{} keys>", d.bind(py).len()),
            None => "None".to_owned(),
        };
        format!(
            "Response(status={}, data={data}, warnings={})",
            self.status,
            self.warnings.len()
        )
    }
}

/// Seal state, as `sys/seal-status` reports it.
#[pyclass(frozen, eq, module = "lockana")]
#[derive(PartialEq, Eq)]
pub(crate) struct SealStatus {
    /// Whether the vault has been initialized.
    #[pyo3(get)]
    initialized: bool,
    /// Whether the vault is sealed.
    #[pyo3(get)]
    sealed: bool,
    /// Shares needed to unseal.
    #[pyo3(get)]
    threshold: u8,
    /// Shares handed out at init.
    #[pyo3(get)]
    shares: u8,
    /// Shares submitted so far towards the next unseal.
    #[pyo3(get)]
    progress: u8,
}

impl From<lockana::SealStatus> for SealStatus {
    fn from(s: lockana::SealStatus) -> Self {
        SealStatus {
            initialized: s.initialized,
            sealed: s.sealed,
            threshold: s.threshold,
            shares: s.shares,
            progress: s.progress,
        }
    }
}

#[pymethods]
impl SealStatus {
    fn __repr__(&self) -> String {
        format!(
            "SealStatus(initialized={}, sealed={}, threshold={}, shares={}, progress={})",
            py_bool(self.initialized),
            py_bool(self.sealed),
            self.threshold,
            self.shares,
            self.progress
        )
    }
}

fn py_bool(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// What `init` returns: the unseal key shares and the initial root token. Store them
/// safely: they are shown once.
#[pyclass(frozen, module = "lockana")]
pub(crate) struct InitResult {
    /// The unseal key shares, hex.
    #[pyo3(get)]
    keys: Vec<String>,
    /// The same shares, base64.
    #[pyo3(get)]
    keys_base64: Vec<String>,
    /// The initial root token.
    #[pyo3(get)]
    root_token: String,
}

#[pymethods]
impl InitResult {
    fn __repr__(&self) -> String {
        format!(
            "InitResult(keys=<{} shares>, root_token=<redacted>)",
            self.keys.len()
        )
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
