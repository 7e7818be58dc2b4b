//! The blocking HTTP client set-up shared by the operator CLI and the transit seal,
//! which both talk to a Vault API (ureq, rustls).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// A ureq agent for a Vault API: non-2xx answers are answers, not errors; the
/// server certificate is checked against `ca_file` (or the web PKI roots) unless
/// `skip_verify`; every call is bounded by `timeout`.
pub fn api_agent(
    ca_file: Option<&Path>,
    skip_verify: bool,
    timeout: Duration,
) -> Result<ureq::Agent, String> {
    let roots = match ca_file {
        Some(path) => RootCerts::Specific(Arc::new(load_ca(path)?)),
        None => RootCerts::WebPki,
    };
    let tls = TlsConfig::builder()
        .root_certs(roots)
        .disable_verification(skip_verify)
        .build();
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .tls_config(tls)
        .build();
    Ok(ureq::Agent::new_with_config(config))
}

fn load_ca(path: &Path) -> Result<Vec<Certificate<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| {
        format!(
            "cannot read the CA certificate file {}: {e}",
            path.display()
        )
    })?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let PemItem::Certificate(cert) =
            item.map_err(|e| format!("invalid PEM in {}: {e}", path.display()))?
        {
            certs.push(cert);
        }
    }
    if certs.is_empty() {
        return Err(format!("no CERTIFICATE found in {}", path.display()));
    }
    Ok(certs)
}
