//! RSA projects on the client: key generation, sealing values before they are sent
//! and opening the envelopes a project's env answer holds. The Python layer
//! (`lockana/_projects.py`) calls these; the server never sees a private key.

use std::collections::BTreeMap;

use lockana::{ProjectEncryption, ProjectKey, ProjectPublicKey};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::{Map, Value};

use crate::convert;
use crate::errors::key_to_py;

/// A new key pair for an RSA project: `(private key PEM, public key PEM)`.
#[pyfunction]
fn generate_project_key(py: Python<'_>, encryption: &str) -> PyResult<(String, String)> {
    let enc = ProjectEncryption::from_name(encryption)
        .filter(|e| e.is_rsa())
        .ok_or_else(|| PyValueError::new_err("encryption must be rsa-3072 or rsa-4096"))?;
    let key = py.detach(|| ProjectKey::generate(enc)).map_err(key_to_py)?;
    let private = String::from(key.to_pem().as_str());
    Ok((private, key.public_key().to_pem()))
}

/// The key id of a public key (what envelopes carry).
#[pyfunction]
fn project_key_id(public_key: &str) -> PyResult<String> {
    Ok(ProjectPublicKey::from_pem(public_key)
        .map_err(key_to_py)?
        .key_id()
        .to_owned())
}

/// Encrypts `values` (names to strings) of `project` to its public key.
#[pyfunction]
fn seal_project_values<'py>(
    py: Python<'py>,
    public_key: &str,
    project: &str,
    values: BTreeMap<String, String>,
) -> PyResult<Bound<'py, PyDict>> {
    let key = ProjectPublicKey::from_pem(public_key).map_err(key_to_py)?;
    let sealed = py
        .detach(|| key.seal_variables(project, &values))
        .map_err(key_to_py)?;
    convert::map_to_dict(py, &sealed)
}

/// Opens an env answer's envelopes with the project's private key (PEM).
#[pyfunction]
fn open_project_values(
    py: Python<'_>,
    private_key: &str,
    project: &str,
    data: &Bound<'_, PyDict>,
) -> PyResult<BTreeMap<String, String>> {
    let data = json_map(data)?;
    let private_key = zeroize::Zeroizing::new(private_key.to_owned());
    py.detach(|| ProjectKey::from_pem(&private_key)?.open_variables(project, &data))
        .map_err(key_to_py)
}

/// The private key's own key id (to compare with the project's before use).
#[pyfunction]
fn private_key_id(py: Python<'_>, private_key: &str) -> PyResult<String> {
    let private_key = zeroize::Zeroizing::new(private_key.to_owned());
    py.detach(|| ProjectKey::from_pem(&private_key).map(|k| k.public_key().key_id().to_owned()))
        .map_err(key_to_py)
}

/// Whether any value of `data` is an envelope (an RSA project's answer).
#[pyfunction]
fn has_envelopes(data: &Bound<'_, PyDict>) -> PyResult<bool> {
    Ok(lockana::has_envelopes(&json_map(data)?))
}

/// Decrypted variables as a dotenv file (the server's quoting).
#[pyfunction]
fn project_dotenv(vars: BTreeMap<String, String>) -> String {
    lockana::dotenv(&vars)
}

fn json_map(data: &Bound<'_, PyDict>) -> PyResult<Map<String, Value>> {
    match convert::to_json(data.as_any())? {
        Value::Object(m) => Ok(m),
        _ => Err(PyValueError::new_err("expected a dict")),
    }
}

/// Adds the functions to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(generate_project_key, m)?)?;
    m.add_function(wrap_pyfunction!(project_key_id, m)?)?;
    m.add_function(wrap_pyfunction!(seal_project_values, m)?)?;
    m.add_function(wrap_pyfunction!(open_project_values, m)?)?;
    m.add_function(wrap_pyfunction!(private_key_id, m)?)?;
    m.add_function(wrap_pyfunction!(has_envelopes, m)?)?;
    m.add_function(wrap_pyfunction!(project_dotenv, m)?)?;
    Ok(())
}
