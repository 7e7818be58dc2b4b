//! `lockana._lockana`: the Lockana vault in a Python process.
//!
//! A thin layer over the `lockana` library's public surface: every request goes through
//! [`lockana::Vault::handle`], so Python gets the same checks, audit and routing as the
//! HTTP server. The GIL is released while the vault works. The user-facing API (the
//! `Vault` wrapper, KV helpers, the HTTP `Client`) is Python, in `python/lockana/`.
#![forbid(unsafe_code)]

mod convert;
mod errors;
mod sealed;
mod vault;

use pyo3::prelude::*;

/// The extension module. maturin installs it as `lockana._lockana`; `lockana/__init__.py`
/// re-exports what users need.
#[pymodule]
#[pyo3(name = "_lockana")]
fn lockana_py(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<vault::NativeVault>()?;
    m.add_class::<vault::Response>()?;
    m.add_class::<vault::SealStatus>()?;
    m.add_class::<vault::InitResult>()?;
    errors::register(m)?;
    sealed::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
