//! The token store. Token ids are never stored: entries live under a salted HMAC of
//! the id, so a storage dump does not reveal usable tokens, and lookup compares the
//! fixed-length digest (via the key lookup), never the raw token.

use std::collections::HashMap;
use std::time::SystemTime;

use hmac::{Hmac, Mac};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::barrier::{Barrier, random_fill, random_key};
use crate::clock::rfc3339;
use crate::{ClientToken, Error, Result};

const SALT_PATH: &str = "sys/token/salt";
const ID_PREFIX: &str = "sys/token/id/";

/// What the store knows about a token (never the token itself).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TokenEntry {
    pub accessor: String,
    pub policies: Vec<String>,
    pub display_name: String,
    pub path: String,
    pub creation_time: u64,
    pub ttl: u64,
    pub num_uses: u64,
    pub orphan: bool,
    pub meta: Option<Map<String, Value>>,
}

impl TokenEntry {
    pub(crate) fn is_root(&self) -> bool {
        self.policies.iter().any(|p| p == "root")
    }
}

pub(crate) struct TokenStore {
    salt: RwLock<Option<Zeroizing<[u8; 32]>>>,
    cache: RwLock<HashMap<String, TokenEntry>>,
}

fn hmac_hex(salt: &[u8; 32], token: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(salt).expect("HMAC takes any key size");
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A fresh random token id with Vault's service-token look (`lvs.` + 24 base62 chars).
fn new_token_id() -> Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut raw = [0u8; 24];
    random_fill(&mut raw)?;
    // 256 % 62 bias is negligible for 24 chars of 5.95 bits each (143 bits of entropy).
    let body: String = raw
        .iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect();
    Ok(format!("lvs.{body}"))
}

fn new_accessor() -> Result<String> {
    let mut raw = [0u8; 12];
    random_fill(&mut raw)?;
    Ok(hex::encode(raw))
}

impl TokenStore {
    pub(crate) fn new() -> Self {
        TokenStore {
            salt: RwLock::new(None),
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// Loads (or creates) the salt after unseal.
    pub(crate) fn load(&self, barrier: &Barrier) -> Result<()> {
        let salt = match barrier.get(SALT_PATH)? {
            Some(b) if b.len() == 32 => {
                let mut k = Zeroizing::new([0u8; 32]);
                k.copy_from_slice(&b);
                k
            }
            Some(_) => return Err(crate::StorageError::Corrupt.into()),
            None => {
                let k = random_key()?;
                barrier.put(SALT_PATH, &k[..])?;
                k
            }
        };
        *self.salt.write() = Some(salt);
        Ok(())
    }

    /// Forgets the salt and cached entries (on seal).
    pub(crate) fn unload(&self) {
        *self.salt.write() = None;
        self.cache.write().clear();
    }

    fn hash(&self, token: &str) -> Result<String> {
        let guard = self.salt.read();
        let salt = guard.as_ref().ok_or(Error::Sealed)?;
        Ok(hmac_hex(salt, token))
    }

    /// Creates a root token (at init, or the dev root token with a chosen id).
    pub(crate) fn create_root(
        &self,
        barrier: &Barrier,
        id: Option<&str>,
        now: SystemTime,
    ) -> Result<ClientToken> {
        let id = match id {
            Some(id) if !id.trim().is_empty() => id.to_owned(),
            _ => new_token_id()?,
        };
        let entry = TokenEntry {
            accessor: new_accessor()?,
            policies: vec!["root".into()],
            display_name: "root".into(),
            path: "auth/token/root".into(),
            creation_time: now
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            ttl: 0,
            num_uses: 0,
            orphan: true,
            meta: None,
        };
        let hash = self.hash(&id)?;
        let bytes = serde_json::to_vec(&entry).map_err(|_| crate::StorageError::Corrupt)?;
        barrier.put(&format!("{ID_PREFIX}{hash}"), &bytes)?;
        self.cache.write().insert(hash, entry);
        Ok(ClientToken::new(id))
    }

    /// Resolves a presented token, or `None` if it is unknown.
    pub(crate) fn lookup(
        &self,
        barrier: &Barrier,
        token: &ClientToken,
    ) -> Result<Option<TokenEntry>> {
        let hash = self.hash(token.expose())?;
        if let Some(e) = self.cache.read().get(&hash) {
            return Ok(Some(e.clone()));
        }
        let Some(bytes) = barrier.get(&format!("{ID_PREFIX}{hash}"))? else {
            return Ok(None);
        };
        let entry: TokenEntry =
            serde_json::from_slice(&bytes).map_err(|_| crate::StorageError::Corrupt)?;
        self.cache.write().insert(hash, entry.clone());
        Ok(Some(entry))
    }
}

/// `auth/token/lookup-self`: Vault's field set (External Secrets Operator reads
/// `type`, `policies`, `ttl`, `renewable`).
pub(crate) fn lookup_self_data(entry: &TokenEntry, token: &ClientToken) -> Map<String, Value> {
    let created = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(entry.creation_time);
    let v = json!({
        "accessor": entry.accessor,
        "creation_time": entry.creation_time,
        "creation_ttl": entry.ttl,
        "display_name": entry.display_name,
        "entity_id": "",
        "expire_time": Value::Null,
        "explicit_max_ttl": 0,
        "id": token.expose(),
        "issue_time": rfc3339(created),
        "meta": entry.meta,
        "num_uses": entry.num_uses,
        "orphan": entry.orphan,
        "path": entry.path,
        "policies": entry.policies,
        "renewable": false,
        "ttl": entry.ttl,
        "type": "service",
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
