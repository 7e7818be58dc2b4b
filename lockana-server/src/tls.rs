//! TLS for the listener: rustls with the ring provider, certificates from PEM files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::ServerError;

/// The certificate chain and private key a TLS listener serves, and how it treats
/// client certificates.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM file with the server certificate, followed by any intermediates.
    pub cert_file: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// Lowest protocol version served (`tls_min_version`; Vault's default is TLS 1.2).
    pub min_version: TlsVersion,
    /// PEM file of CA certificates that client certificates must chain to
    /// (`tls_client_ca_file`). A client that offers a certificate is verified
    /// against it; without `require_client_cert` a client may offer none.
    pub client_ca_file: Option<PathBuf>,
    /// `tls_require_and_verify_client_cert`: every client must present a certificate
    /// that chains to `client_ca_file`.
    pub require_client_cert: bool,
}

impl TlsFiles {
    /// A certificate and key, TLS 1.2 and up, no client certificates.
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> TlsFiles {
        TlsFiles {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            min_version: TlsVersion::Tls12,
            client_ca_file: None,
            require_client_cert: false,
        }
    }
}

/// A TLS protocol version, as Vault's `tls_min_version` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// `tls12`.
    Tls12,
    /// `tls13`.
    Tls13,
}

/// Builds the rustls server config (TLS 1.2 and 1.3, or 1.3 only; ALPN `h2` and
/// `http/1.1`; client certificates checked against `client_ca_file` if set).
pub(crate) fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let certs = load_certs(&files.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&files.key_file).map_err(|e| ServerError::Tls {
        path: files.key_file.clone(),
        reason: format!("cannot read a PEM private key: {e}"),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match files.min_version {
        TlsVersion::Tls12 => rustls::DEFAULT_VERSIONS,
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| ServerError::Tls {
            path: files.cert_file.clone(),
            reason: e.to_string(),
        })?;
    let builder = match &files.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca_file) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in load_certs(ca_file)? {
                roots.add(ca).map_err(|e| ServerError::Tls {
                    path: ca_file.clone(),
                    reason: format!("not a usable CA certificate: {e}"),
                })?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider);
            // Without "require", a client may connect without a certificate, but one
            // it offers must verify (Vault's `tls_client_ca_file` alone).
            let verifier = if files.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier.build().map_err(|e| ServerError::Tls {
                path: ca_file.clone(),
                reason: format!("cannot verify client certificates with it: {e}"),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| ServerError::Tls {
            path: files.cert_file.clone(),
            reason: format!("the certificate and key do not form a usable pair: {e}"),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ServerError> {
    let err = |reason: String| ServerError::Tls {
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(format!("cannot read: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err("no CERTIFICATE block found".into()));
    }
    Ok(certs)
}
