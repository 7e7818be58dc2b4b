//! Audit entries in Vault's shape, with every string value HMAC'd.

use std::time::SystemTime;

use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use crate::auth::token::TokenEntry;
use crate::clock::rfc3339;
use crate::{Error, Request, Response, Result};

/// `hmac-sha256:<hex>` of `input` under the audit salt, as Vault writes it.
pub(crate) fn hmac_id(salt: &[u8; 32], input: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(salt).expect("HMAC takes any key size");
    mac.update(input.as_bytes());
    format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
}

/// How one device wants its entries.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hashing {
    /// `log_raw`: nothing is hashed (tokens and secrets in the clear!).
    pub raw: bool,
    /// `hmac_accessor`: token accessors are hashed too (Vault's default).
    pub accessor: bool,
}

struct Hasher<'a> {
    salt: &'a [u8; 32],
    how: Hashing,
}

impl Hasher<'_> {
    fn secret(&self, s: &str) -> Value {
        if self.how.raw {
            Value::String(s.to_owned())
        } else {
            Value::String(hmac_id(self.salt, s))
        }
    }

    fn accessor(&self, s: &str) -> Value {
        if self.how.accessor {
            self.secret(s)
        } else {
            Value::String(s.to_owned())
        }
    }

    /// Vault's HashStructure: every string (at any depth) hashed; keys, numbers and
    /// booleans kept.
    fn structure(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => self.secret(s),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.structure(x)).collect()),
            Value::Object(m) => Value::Object(self.map(m)),
            other => other.clone(),
        }
    }

    fn map(&self, m: &Map<String, Value>) -> Map<String, Value> {
        m.iter()
            .map(|(k, v)| (k.clone(), self.structure(v)))
            .collect()
    }
}

/// Which of the two lines Vault writes per request.
#[derive(Clone, Copy)]
pub(crate) enum Kind<'a> {
    Request,
    Response(&'a Result<Response>),
}

/// One entry, serialized as JSON (`{...}`, keys sorted), before the chain fields.
pub(crate) fn build(
    salt: &[u8; 32],
    how: Hashing,
    id: &str,
    time: SystemTime,
    req: &Request,
    auth: Option<&TokenEntry>,
    kind: Kind<'_>,
) -> String {
    let h = Hasher { salt, how };
    let mut entry = Map::new();
    entry.insert("time".into(), json!(rfc3339(time)));
    let mut request = Map::new();
    request.insert("id".into(), json!(id));
    request.insert("operation".into(), json!(req.operation.as_str()));
    request.insert("namespace".into(), json!({"id": "root"}));
    request.insert("path".into(), json!(req.path));
    if let Some(token) = &req.token {
        request.insert("client_token".into(), h.secret(token.expose()));
    }
    if let Some(a) = auth {
        request.insert("client_token_accessor".into(), h.accessor(&a.accessor));
        request.insert("client_id".into(), json!(""));
    }
    if !req.data.is_empty() {
        request.insert("data".into(), Value::Object(h.map(&req.data)));
    }
    if let Some(addr) = req.connection.remote_addr {
        request.insert("remote_address".into(), json!(addr.ip().to_string()));
        request.insert("remote_port".into(), json!(addr.port()));
    }
    if let Some(ua) = &req.connection.user_agent {
        // Vault audits headers only when configured to; the user agent is not secret
        // and notifications already show it.
        request.insert("headers".into(), json!({"user-agent": [ua]}));
    }
    entry.insert("auth".into(), auth_json(&h, req, auth));
    match kind {
        Kind::Request => {
            entry.insert("type".into(), json!("request"));
        }
        Kind::Response(outcome) => {
            entry.insert("type".into(), json!("response"));
            match outcome {
                Ok(resp) => {
                    if !resp.mount_type.is_empty() {
                        request.insert("mount_type".into(), json!(resp.mount_type));
                    }
                    entry.insert("response".into(), response_json(&h, resp));
                }
                Err(err) => {
                    entry.insert("error".into(), json!(error_text(err)));
                }
            }
        }
    }
    entry.insert("request".into(), Value::Object(request));
    Value::Object(entry).to_string()
}

/// Error messages never hold request values (the `Error` contract), so they go in
/// the clear, as Vault's do.
fn error_text(err: &Error) -> String {
    match err {
        Error::NotFound => String::new(),
        e => e.to_string(),
    }
}

fn auth_json(h: &Hasher<'_>, req: &Request, auth: Option<&TokenEntry>) -> Value {
    let Some(a) = auth else {
        // An unauthenticated or refused request: Vault still names the token it got.
        let mut m = Map::new();
        if let Some(token) = &req.token {
            m.insert("client_token".into(), h.secret(token.expose()));
        }
        return Value::Object(m);
    };
    // Read through serde so the token entry can grow without touching this.
    let t = serde_json::to_value(a).unwrap_or_default();
    let num = |k: &str| t.get(k).and_then(Value::as_u64).unwrap_or(0);
    let issue = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(num("creation_time"));
    let metadata = match t.get("meta") {
        Some(m) if !m.is_null() => h.structure(m),
        _ => Value::Null,
    };
    json!({
        "client_token": req.token.as_ref().map(|t| h.secret(t.expose())),
        "accessor": h.accessor(&a.accessor),
        "display_name": t.get("display_name"),
        "policies": a.policies,
        "token_policies": a.policies,
        "metadata": metadata,
        "entity_id": t.get("entity_id").cloned().unwrap_or_else(|| json!("")),
        "token_type": "service",
        "token_ttl": num("ttl"),
        "token_issue_time": rfc3339(issue),
        "policy_results": {
            "allowed": true,
            "granting_policies": a.policies.iter().map(|p| json!({"name": p, "namespace_id": "root", "type": "acl"})).collect::<Vec<_>>(),
        },
    })
}

fn response_json(h: &Hasher<'_>, resp: &Response) -> Value {
    let mut m = Map::new();
    if !resp.mount_type.is_empty() {
        m.insert("mount_type".into(), json!(resp.mount_type));
    }
    if let Some(data) = &resp.data {
        m.insert("data".into(), Value::Object(h.map(data)));
    }
    if !resp.warnings.is_empty() {
        m.insert("warnings".into(), json!(resp.warnings));
    }
    if let Some(a) = &resp.auth {
        m.insert(
            "auth".into(),
            json!({
                "client_token": a.client_token.as_ref().map(|t| h.secret(t.expose())),
                "accessor": h.accessor(&a.accessor),
                "policies": a.policies,
                "token_policies": a.token_policies,
                "metadata": a.metadata,
                "entity_id": a.entity_id,
                "token_type": a.token_type,
                "token_ttl": a.lease_duration,
            }),
        );
    }
    if resp.lease_duration > 0 || !resp.lease_id.is_empty() {
        m.insert(
            "secret".into(),
            json!({"lease_id": resp.lease_id, "lease_duration": resp.lease_duration}),
        );
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Operation;

    const SALT: [u8; 32] = [7u8; 32];

    fn entry(how: Hashing) -> Value {
        let req = Request::new(Operation::Update, "secret/data/app")
            .with_data(json!({"data": {"password": "hunter2", "n": 3}}))
            .with_token("lvs.secret-token");
        let auth: TokenEntry = serde_json::from_value(json!({
            "accessor": "acc123", "policies": ["root"], "display_name": "root",
            "path": "auth/token/root", "creation_time": 0, "ttl": 0, "num_uses": 0,
            "orphan": true, "meta": null,
        }))
        .expect("token entry");
        let resp = Ok(Response::with_data(
            json!({"version": 1, "note": "hi"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        ));
        let s = build(
            &SALT,
            how,
            "id-1",
            SystemTime::UNIX_EPOCH,
            &req,
            Some(&auth),
            Kind::Response(&resp),
        );
        serde_json::from_str(&s).expect("json")
    }

    #[test]
    fn strings_tokens_and_accessors_are_hmacd_numbers_kept() {
        let e = entry(Hashing {
            raw: false,
            accessor: true,
        });
        let text = e.to_string();
        for secret in ["hunter2", "lvs.secret-token", "acc123", "\"hi\""] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(
            e["request"]["data"]["data"]["password"],
            hmac_id(&SALT, "hunter2")
        );
        assert_eq!(e["request"]["data"]["data"]["n"], 3);
        assert_eq!(
            e["auth"]["client_token"],
            hmac_id(&SALT, "lvs.secret-token")
        );
        assert_eq!(e["response"]["data"]["version"], 1);
        assert_eq!(e["type"], "response");
        assert_eq!(e["request"]["path"], "secret/data/app");
        assert!(
            hmac_id(&SALT, "x").starts_with("hmac-sha256:") && hmac_id(&SALT, "x").len() == 12 + 64
        );
    }

    #[test]
    fn log_raw_and_clear_accessors() {
        let e = entry(Hashing {
            raw: false,
            accessor: false,
        });
        assert_eq!(e["auth"]["accessor"], "acc123");
        assert_eq!(e["request"]["client_token_accessor"], "acc123");
        let e = entry(Hashing {
            raw: true,
            accessor: true,
        });
        assert_eq!(e["request"]["data"]["data"]["password"], "hunter2");
    }
}
