//! Vault's `seal "transit"`: the unseal key is wrapped by the transit secrets engine
//! of another Vault, OpenBao or Lockana server, reached over its HTTP API.
//!
//! Only `encrypt/<key>` and `decrypt/<key>` are called (the token needs `update` on
//! both). The token is not renewed: give the seal a token without a TTL, or a
//! periodic one renewed by something else (docs/operations.md).

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use lockana::{KeyWrapper, SealError};
use serde_json::{Value, json};
use zeroize::Zeroizing;

/// How long one call to the transit server may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A transit seal. No `Debug`: it holds the token.
pub(crate) struct TransitSeal {
    agent: ureq::Agent,
    /// `<address>/v1/<mount_path>`, without a trailing slash.
    base: String,
    key_name: String,
    token: Zeroizing<String>,
}

/// Where the transit seal's server is and how to reach it.
pub(crate) struct TransitSettings {
    pub address: String,
    pub token: Zeroizing<String>,
    pub mount_path: String,
    pub key_name: String,
    pub ca_cert: Option<String>,
    pub skip_verify: bool,
}

impl TransitSeal {
    /// Checks the settings and builds the HTTP client; nothing is sent yet.
    pub(crate) fn new(s: TransitSettings) -> Result<TransitSeal, String> {
        let address = s.address.trim_end_matches('/');
        if !(address.starts_with("http://") || address.starts_with("https://")) {
            return Err(format!(
                "`address` = \"{address}\" must start with http:// or https://"
            ));
        }
        let mount = s.mount_path.trim_matches('/');
        if mount.is_empty() || s.key_name.is_empty() || s.key_name.contains('/') {
            return Err("`mount_path` and `key_name` must name a transit mount and key".into());
        }
        let agent = crate::api_agent(
            s.ca_cert.as_deref().map(Path::new),
            s.skip_verify,
            CALL_TIMEOUT,
        )
        .map_err(|e| format!("`tls_ca_cert`: {e}"))?;
        Ok(TransitSeal {
            agent,
            base: format!("{address}/v1/{mount}"),
            key_name: s.key_name,
            token: s.token,
        })
    }

    /// POSTs `body` to `<mount>/<op>/<key>` and returns the answer's `data`. The
    /// answer text (a decrypted key) is zeroized when dropped.
    fn call(&self, op: &str, body: &Value) -> Result<Value, SealError> {
        let url = format!("{}/{op}/{}", self.base, self.key_name);
        let fail = |why: String| SealError(format!("transit: POST {url}: {why}"));
        let bytes = serde_json::to_vec(body).map_err(|e| fail(e.to_string()))?;
        let req = ureq::http::Request::builder()
            .method("POST")
            .uri(&url)
            .header("X-Vault-Request", "true")
            .header("X-Vault-Token", self.token.as_str())
            .header("Content-Type", "application/json")
            .body(bytes)
            .map_err(|e| fail(e.to_string()))?;
        let resp = self.agent.run(req).map_err(|e| fail(e.to_string()))?;
        let status = resp.status().as_u16();
        let text = Zeroizing::new(
            resp.into_body()
                .read_to_string()
                .map_err(|e| fail(e.to_string()))?,
        );
        let answer: Value = serde_json::from_str(&text)
            .map_err(|_| fail(format!("HTTP {status}, and the answer is not JSON")))?;
        if !(200..300).contains(&status) {
            let errors = answer["errors"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default();
            return Err(fail(format!("HTTP {status}: {errors}")));
        }
        Ok(answer["data"].clone())
    }
}

impl KeyWrapper for TransitSeal {
    fn kind(&self) -> &str {
        "transit"
    }

    // The associated data is not sent: Vault's transit seal sends none either, and
    // not every transit server takes `associated_data`. The blob lives at one path.
    fn wrap(&self, plaintext: &[u8], _aad: &[u8]) -> Result<Vec<u8>, SealError> {
        let data = self.call("encrypt", &json!({"plaintext": B64.encode(plaintext)}))?;
        let ciphertext = data["ciphertext"]
            .as_str()
            .ok_or_else(|| SealError("transit: the encrypt answer has no ciphertext".into()))?;
        serde_json::to_vec(&json!({"key_name": self.key_name, "ciphertext": ciphertext}))
            .map_err(|e| SealError(e.to_string()))
    }

    fn unwrap(&self, blob: &[u8], _aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let stored: Value = serde_json::from_slice(blob)
            .map_err(|_| SealError("the stored seal-wrapped key is malformed".into()))?;
        let ciphertext = stored["ciphertext"]
            .as_str()
            .ok_or_else(|| SealError("the stored seal-wrapped key is malformed".into()))?;
        let data = self.call("decrypt", &json!({"ciphertext": ciphertext}))?;
        let plaintext = Zeroizing::new(
            data["plaintext"]
                .as_str()
                .ok_or_else(|| SealError("transit: the decrypt answer has no plaintext".into()))?
                .to_owned(),
        );
        B64.decode(plaintext.as_bytes())
            .map(Zeroizing::new)
            .map_err(|_| SealError("transit: the decrypt answer is not base64".into()))
    }
}
