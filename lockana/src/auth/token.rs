//! The token store. Token ids are never stored: entries live under a salted HMAC of
//! the id, so a storage dump does not reveal usable tokens, and lookup compares the
//! fixed-length digest (through the key lookup), never the raw token.
//!
//! Storage (behind the barrier):
//! - `sys/token/salt`: the per-vault HMAC key;
//! - `sys/token/id/<hash>`: the entry;
//! - `sys/token/accessor/<hmac(accessor)>`: the id hash, for accessor operations;
//! - `sys/token/parent/<parent hash>/<child hash>`: the tree, for cascading revocation.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::barrier::{Barrier, Op, random_fill, random_key};
use crate::clock::rfc3339;
use crate::mounts::SystemTtls;
use crate::{Auth, ClientToken, Error, Result};

const SALT_PATH: &str = "sys/token/salt";
const ID_PREFIX: &str = "sys/token/id/";
const ACCESSOR_PREFIX: &str = "sys/token/accessor/";
const PARENT_PREFIX: &str = "sys/token/parent/";

/// What the store knows about a token (never the token itself).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TokenEntry {
    /// HMAC of the token id: the storage key. Not serialized (it is the key).
    #[serde(skip)]
    pub hash: String,
    pub accessor: String,
    #[serde(default)]
    pub parent: String,
    pub policies: Vec<String>,
    pub display_name: String,
    pub path: String,
    pub creation_time: u64,
    /// TTL asked for at creation (seconds; 0: never expires).
    pub ttl: u64,
    /// Absolute expiry (unix seconds; 0: never).
    #[serde(default)]
    pub expire_time: u64,
    /// Absolute limit renewals cannot pass (unix seconds; 0: none).
    #[serde(default)]
    pub max_expire_time: u64,
    #[serde(default)]
    pub explicit_max_ttl: u64,
    #[serde(default)]
    pub period: u64,
    /// Uses left (0: unlimited).
    pub num_uses: u64,
    pub orphan: bool,
    #[serde(default)]
    pub renewable: bool,
    #[serde(default)]
    pub entity_id: String,
    pub meta: Option<BTreeMap<String, String>>,
    /// Last renewal (unix seconds; 0: never renewed).
    #[serde(default)]
    pub last_renewal: u64,
    /// The token role it was created through, if any.
    #[serde(default)]
    pub role: String,
    /// Set on a limited-use token's last use, as Vault's "revocation pending": the
    /// token serves that one request (where it reports `num_uses: -1`) and is revoked
    /// right after; no other request finds it meanwhile.
    #[serde(default)]
    pub last_use: bool,
}

impl TokenEntry {
    pub(crate) fn is_root(&self) -> bool {
        self.policies.iter().any(|p| p == "root")
    }

    fn remaining_ttl(&self, now: u64) -> u64 {
        if self.expire_time == 0 {
            0
        } else {
            self.expire_time.saturating_sub(now)
        }
    }

    /// The TTL granted at creation or at the last renewal (Vault's `lease_duration`):
    /// measured from that instant, not from "now", so an answer that crosses a second
    /// boundary still says 3600 for a one-hour token.
    fn granted_ttl(&self) -> u64 {
        if self.expire_time == 0 {
            0
        } else {
            let from = self.creation_time.max(self.last_renewal);
            self.expire_time.saturating_sub(from)
        }
    }

    /// The `auth` block a login, create or renew answers with.
    pub(crate) fn to_auth(&self, token: Option<ClientToken>) -> Auth {
        Auth {
            client_token: token,
            accessor: self.accessor.clone(),
            policies: self.policies.clone(),
            token_policies: self.policies.clone(),
            metadata: self.meta.clone(),
            lease_duration: self.granted_ttl(),
            renewable: self.renewable,
            entity_id: self.entity_id.clone(),
            token_type: "service".into(),
            orphan: self.orphan,
            num_uses: self.num_uses,
            mfa_requirement: None,
        }
    }

    /// Vault's lookup fields (External Secrets Operator reads `type`, `policies`, `ttl`,
    /// `renewable`). `id` is only given back to the token's own holder.
    pub(crate) fn lookup_data(&self, id: Option<&ClientToken>, now: u64) -> Map<String, Value> {
        let at = |secs: u64| rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        let v = json!({
            "accessor": self.accessor,
            "creation_time": self.creation_time,
            "creation_ttl": self.ttl,
            "display_name": self.display_name,
            "entity_id": self.entity_id,
            "expire_time": if self.expire_time == 0 { Value::Null } else { json!(at(self.expire_time)) },
            "explicit_max_ttl": self.explicit_max_ttl,
            "id": id.map(|t| t.expose().to_owned()).unwrap_or_default(),
            "issue_time": at(self.creation_time),
            "meta": self.meta,
            "num_uses": if self.last_use { json!(-1) } else { json!(self.num_uses) },
            "orphan": self.orphan,
            "path": self.path,
            "policies": self.policies,
            "renewable": self.renewable,
            "ttl": self.remaining_ttl(now),
            "type": "service",
        });
        let mut m = match v {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        if self.period > 0 {
            m.insert("period".into(), json!(self.period));
        }
        if !self.role.is_empty() {
            m.insert("role".into(), json!(self.role));
        }
        if self.last_renewal > 0 {
            m.insert("last_renewal".into(), json!(at(self.last_renewal)));
            m.insert("last_renewal_time".into(), json!(self.last_renewal));
        }
        m
    }
}

/// What a new token should be.
#[derive(Default)]
pub(crate) struct NewToken {
    /// A chosen id (root only); otherwise random.
    pub id: Option<String>,
    pub policies: Vec<String>,
    pub meta: Option<BTreeMap<String, String>>,
    pub display_name: String,
    pub path: String,
    pub ttl: u64,
    pub explicit_max_ttl: u64,
    /// The auth mount's or role's max TTL for login tokens (0: the system max).
    pub max_ttl: u64,
    pub period: u64,
    pub num_uses: u64,
    pub renewable: bool,
    /// The parent's hash, or empty for an orphan.
    pub parent: String,
    pub entity_id: String,
    /// The token role, for `auth/token/create/<role>`.
    pub role: String,
}

pub(crate) struct TokenStore {
    salt: RwLock<Option<Zeroizing<[u8; 32]>>>,
    // Entries are shared, not cloned, on the hot path: a lookup is a map hit and an
    // `Arc` bump.
    cache: RwLock<HashMap<String, Arc<TokenEntry>>>,
    /// Serializes use counting, so two requests never spend the same use.
    uses: parking_lot::Mutex<()>,
    /// Bumped at every token write, so metrics know when to recount.
    generation: std::sync::atomic::AtomicU64,
    /// The TTLs a token without its own gets (`default_lease_ttl`, `max_lease_ttl`).
    ttls: Arc<SystemTtls>,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn hmac_hex(salt: &[u8; 32], input: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(salt).expect("HMAC takes any key size");
    mac.update(input.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A fresh random token id with Vault's service-token look (`lvs.` + 24 base62 chars).
pub(crate) fn new_token_id() -> Result<String> {
    Ok(format!("lvs.{}", random_base62(24)?))
}

/// Random characters from `[A-Za-z0-9]` (rejection sampling: no modulo bias).
pub(crate) fn random_base62(len: usize) -> Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        random_fill(&mut buf)?;
        for b in buf {
            // 248 = 4 * 62: bytes above it would bias the draw.
            if b < 248 && out.len() < len {
                out.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    Ok(out)
}

fn new_accessor() -> Result<String> {
    random_base62(24)
}

impl TokenStore {
    pub(crate) fn new(ttls: Arc<SystemTtls>) -> Self {
        TokenStore {
            salt: RwLock::new(None),
            cache: RwLock::new(HashMap::new()),
            uses: parking_lot::Mutex::new(()),
            generation: Default::default(),
            ttls,
        }
    }

    /// Writes token entries (one durable batch) and marks the counts stale.
    fn write(&self, barrier: &Barrier, ops: Vec<Op>) -> Result<()> {
        let r = barrier.apply(ops);
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        r
    }

    /// Changes every time a token is written or revoked.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Live tokens, and those of them with a lease (an expiry), as Vault's
    /// `vault.token.count` and `vault.expire.num_leases` count them. Reads every
    /// entry: callers cache the answer (see `Metrics::usage`).
    pub(crate) fn usage(&self, barrier: &Barrier, now: SystemTime) -> Result<(u64, u64)> {
        let now = unix(now);
        let (mut tokens, mut leases) = (0u64, 0u64);
        for key in barrier.scan(ID_PREFIX)? {
            let Some(e) = self.get_by_hash(barrier, &key[ID_PREFIX.len()..])? else {
                continue;
            };
            if e.last_use || (e.expire_time != 0 && e.expire_time <= now) {
                continue;
            }
            tokens += 1;
            if e.expire_time != 0 {
                leases += 1;
            }
        }
        Ok((tokens, leases))
    }

    /// Creates the salt, at init.
    pub(crate) fn create_salt(&self, barrier: &Barrier) -> Result<()> {
        let k = random_key()?;
        barrier.put(SALT_PATH, &k[..])?;
        *self.salt.write() = Some(k);
        Ok(())
    }

    /// Loads the salt after unseal. Every initialized vault has one: a missing salt is
    /// damage, and making a new one would silently turn every token into a bad token.
    pub(crate) fn load(&self, barrier: &Barrier) -> Result<()> {
        let salt = match barrier.get(SALT_PATH)? {
            Some(b) if b.len() == 32 => {
                let mut k = Zeroizing::new([0u8; 32]);
                k.copy_from_slice(&b);
                k
            }
            Some(_) => {
                return Err(
                    crate::IntegrityError::at(SALT_PATH, crate::IntegrityKind::Malformed).into(),
                );
            }
            None => {
                return Err(
                    crate::IntegrityError::at(SALT_PATH, crate::IntegrityKind::Missing).into(),
                );
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

    fn hash(&self, input: &str) -> Result<String> {
        let guard = self.salt.read();
        let salt = guard.as_ref().ok_or(Error::Sealed)?;
        Ok(hmac_hex(salt, input))
    }

    fn entry_op(&self, entry: &TokenEntry) -> Result<Op> {
        let bytes = serde_json::to_vec(entry).map_err(|_| crate::StorageError::Corrupt)?;
        Ok(Op::Put(format!("{ID_PREFIX}{}", entry.hash), bytes))
    }

    /// Creates a token. TTLs follow Vault: a period makes a periodic token; no TTL
    /// means the system default (768h unless `default_lease_ttl` says otherwise), except for root tokens, which never expire;
    /// an explicit max TTL caps everything.
    pub(crate) fn create(
        &self,
        barrier: &Barrier,
        now: SystemTime,
        t: NewToken,
    ) -> Result<(ClientToken, TokenEntry)> {
        let id = match t.id {
            Some(id) if !id.trim().is_empty() => id,
            _ => new_token_id()?,
        };
        let hash = self.hash(&id)?;
        if self.get_by_hash(barrier, &hash)?.is_some() {
            return Err(Error::invalid("a token with that id already exists"));
        }
        let now_s = unix(now);
        let root_only = t.policies.iter().any(|p| p == "root");
        let mut ttl = if t.period > 0 {
            t.period
        } else if t.ttl > 0 {
            t.ttl
        } else if root_only && t.explicit_max_ttl == 0 {
            0
        } else {
            self.ttls.default_ttl()
        };
        let mut max_expire = 0;
        if t.explicit_max_ttl > 0 {
            ttl = if ttl == 0 {
                t.explicit_max_ttl
            } else {
                ttl.min(t.explicit_max_ttl)
            };
            max_expire = now_s + t.explicit_max_ttl;
        } else if t.period == 0 && ttl > 0 {
            let max = if t.max_ttl > 0 {
                t.max_ttl
            } else {
                self.ttls.max_ttl()
            };
            ttl = ttl.min(max);
            max_expire = now_s + max;
        }
        let entry = TokenEntry {
            hash: hash.clone(),
            accessor: new_accessor()?,
            parent: t.parent.clone(),
            policies: t.policies,
            display_name: t.display_name,
            path: t.path,
            creation_time: now_s,
            ttl,
            expire_time: if ttl == 0 { 0 } else { now_s + ttl },
            max_expire_time: max_expire,
            explicit_max_ttl: t.explicit_max_ttl,
            period: t.period,
            num_uses: t.num_uses,
            orphan: t.parent.is_empty(),
            renewable: t.renewable && ttl > 0,
            entity_id: t.entity_id,
            meta: t.meta,
            last_renewal: 0,
            role: t.role,
            last_use: false,
        };
        let mut ops = vec![
            self.entry_op(&entry)?,
            Op::Put(
                format!("{ACCESSOR_PREFIX}{}", self.hash(&entry.accessor)?),
                hash.as_bytes().to_vec(),
            ),
        ];
        if !t.parent.is_empty() {
            ops.push(Op::Put(
                format!("{PARENT_PREFIX}{}/{hash}", t.parent),
                Vec::new(),
            ));
        }
        self.write(barrier, ops)?;
        self.cache.write().insert(hash, Arc::new(entry.clone()));
        Ok((ClientToken::new(id), entry))
    }

    /// Creates a root token (at init, or the dev root token with a chosen id).
    pub(crate) fn create_root(
        &self,
        barrier: &Barrier,
        id: Option<&str>,
        now: SystemTime,
    ) -> Result<ClientToken> {
        let t = NewToken {
            id: id.map(str::to_owned),
            policies: vec!["root".into()],
            display_name: "root".into(),
            path: "auth/token/root".into(),
            ..Default::default()
        };
        Ok(self.create(barrier, now, t)?.0)
    }

    fn get_by_hash(&self, barrier: &Barrier, hash: &str) -> Result<Option<Arc<TokenEntry>>> {
        if let Some(e) = self.cache.read().get(hash) {
            return Ok(Some(e.clone()));
        }
        let key = format!("{ID_PREFIX}{hash}");
        let Some(bytes) = barrier.get(&key)? else {
            return Ok(None);
        };
        let mut entry: TokenEntry = crate::barrier::decode_record(&key, &bytes)?;
        entry.hash = hash.to_owned();
        let entry = Arc::new(entry);
        self.cache.write().insert(hash.to_owned(), entry.clone());
        Ok(Some(entry))
    }

    /// A live entry by hash: expired tokens are revoked on sight and reported missing.
    fn live(
        &self,
        barrier: &Barrier,
        hash: &str,
        now: SystemTime,
    ) -> Result<Option<Arc<TokenEntry>>> {
        let Some(entry) = self.get_by_hash(barrier, hash)? else {
            return Ok(None);
        };
        if entry.expire_time != 0 && entry.expire_time <= unix(now) {
            self.revoke_tree(barrier, hash)?;
            return Ok(None);
        }
        if entry.last_use {
            return Ok(None);
        }
        Ok(Some(entry))
    }

    /// Resolves a presented token, or `None` if it is unknown, revoked or expired.
    pub(crate) fn lookup(
        &self,
        barrier: &Barrier,
        token: &ClientToken,
        now: SystemTime,
    ) -> Result<Option<Arc<TokenEntry>>> {
        let hash = self.hash(token.expose())?;
        self.live(barrier, &hash, now)
    }

    /// Resolves a token by its accessor.
    pub(crate) fn lookup_accessor(
        &self,
        barrier: &Barrier,
        accessor: &str,
        now: SystemTime,
    ) -> Result<Option<Arc<TokenEntry>>> {
        let key = format!("{ACCESSOR_PREFIX}{}", self.hash(accessor)?);
        let Some(hash) = barrier.get(&key)? else {
            return Ok(None);
        };
        let hash = String::from_utf8(hash)
            .map_err(|_| crate::barrier::integrity(&key, crate::IntegrityKind::Malformed))?;
        self.live(barrier, &hash, now)
    }

    /// Counts one use of a limited-use token before the request is served, as Vault
    /// does: the entry returned shows the uses left, and on the last use it is marked
    /// [`TokenEntry::last_use`]; the caller then revokes it with [`Self::finish_use`]
    /// once the request is answered.
    pub(crate) fn use_once(
        &self,
        barrier: &Barrier,
        entry: &Arc<TokenEntry>,
    ) -> Result<Arc<TokenEntry>> {
        if entry.num_uses == 0 {
            return Ok(entry.clone());
        }
        let _g = self.uses.lock();
        // Re-read under the lock: a concurrent request may have spent a use already.
        let current = match self.get_by_hash(barrier, &entry.hash)? {
            Some(e) if !e.last_use && e.num_uses > 0 => e,
            _ => return Err(Error::PermissionDenied),
        };
        let mut e = (*current).clone();
        if e.num_uses == 1 {
            e.last_use = true;
        } else {
            e.num_uses -= 1;
        }
        self.write(barrier, vec![self.entry_op(&e)?])?;
        let e = Arc::new(e);
        self.cache.write().insert(e.hash.clone(), e.clone());
        Ok(e)
    }

    /// Revokes a token whose last use was just served (see [`Self::use_once`]).
    pub(crate) fn finish_use(&self, barrier: &Barrier, entry: &TokenEntry) -> Result<()> {
        if entry.last_use {
            self.revoke_tree(barrier, &entry.hash)?;
        }
        Ok(())
    }

    /// Renews a token by `increment` seconds (0: its original TTL), never past its
    /// max; periodic tokens renew to their period.
    pub(crate) fn renew(
        &self,
        barrier: &Barrier,
        entry: &TokenEntry,
        increment: u64,
        now: SystemTime,
    ) -> Result<TokenEntry> {
        if !entry.renewable {
            return Err(Error::invalid("lease is not renewable"));
        }
        let now_s = unix(now);
        let wanted = if entry.period > 0 {
            entry.period
        } else if increment > 0 {
            increment
        } else {
            entry.ttl
        };
        let mut expire = now_s + wanted;
        if entry.max_expire_time > 0 {
            expire = expire.min(entry.max_expire_time);
        }
        let mut e = entry.clone();
        e.expire_time = expire;
        e.last_renewal = now_s;
        self.write(barrier, vec![self.entry_op(&e)?])?;
        self.cache
            .write()
            .insert(e.hash.clone(), Arc::new(e.clone()));
        Ok(e)
    }

    /// Revokes a token and, recursively, every token it created.
    pub(crate) fn revoke_tree(&self, barrier: &Barrier, hash: &str) -> Result<()> {
        let mut ops = Vec::new();
        let mut stack = vec![hash.to_owned()];
        let mut gone = Vec::new();
        while let Some(h) = stack.pop() {
            for child_key in barrier.scan(&format!("{PARENT_PREFIX}{h}/"))? {
                if let Some(child) = child_key.rsplit('/').next() {
                    stack.push(child.to_owned());
                }
                ops.push(Op::Delete(child_key));
            }
            self.collect_delete(barrier, &h, &mut ops)?;
            gone.push(h);
        }
        self.write(barrier, ops)?;
        let mut cache = self.cache.write();
        for h in gone {
            cache.remove(&h);
        }
        Ok(())
    }

    /// Revokes only this token; its children become orphans.
    pub(crate) fn revoke_orphan(&self, barrier: &Barrier, hash: &str) -> Result<()> {
        let mut ops = Vec::new();
        let mut cache_updates = Vec::new();
        for child_key in barrier.scan(&format!("{PARENT_PREFIX}{hash}/"))? {
            if let Some(child) = child_key.rsplit('/').next()
                && let Some(e) = self.get_by_hash(barrier, child)?
            {
                let mut e = (*e).clone();
                e.parent.clear();
                e.orphan = true;
                ops.push(self.entry_op(&e)?);
                cache_updates.push(e);
            }
            ops.push(Op::Delete(child_key));
        }
        self.collect_delete(barrier, hash, &mut ops)?;
        self.write(barrier, ops)?;
        let mut cache = self.cache.write();
        cache.remove(hash);
        for e in cache_updates {
            cache.insert(e.hash.clone(), Arc::new(e));
        }
        Ok(())
    }

    fn collect_delete(&self, barrier: &Barrier, hash: &str, ops: &mut Vec<Op>) -> Result<()> {
        if let Some(e) = self.get_by_hash(barrier, hash)? {
            ops.push(Op::Delete(format!(
                "{ACCESSOR_PREFIX}{}",
                self.hash(&e.accessor)?
            )));
            if !e.parent.is_empty() {
                ops.push(Op::Delete(format!("{PARENT_PREFIX}{}/{hash}", e.parent)));
            }
        }
        ops.push(Op::Delete(format!("{ID_PREFIX}{hash}")));
        Ok(())
    }

    /// Every live token's accessor (`auth/token/accessors`).
    pub(crate) fn accessors(&self, barrier: &Barrier) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for key in barrier.scan(ID_PREFIX)? {
            let hash = &key[ID_PREFIX.len()..];
            if let Some(e) = self.get_by_hash(barrier, hash)? {
                out.push(e.accessor.clone());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Revokes every token (and its children) issued through paths under `prefix`,
    /// e.g. `auth/userpass/` when that method is disabled, as Vault does.
    pub(crate) fn revoke_by_path_prefix(&self, barrier: &Barrier, prefix: &str) -> Result<usize> {
        self.revoke_where(barrier, |e| e.path.starts_with(prefix))
    }

    /// Revokes every token (and its children) whose entry matches `pred`.
    pub(crate) fn revoke_where(
        &self,
        barrier: &Barrier,
        pred: impl Fn(&TokenEntry) -> bool,
    ) -> Result<usize> {
        let mut hashes = Vec::new();
        for key in barrier.scan(ID_PREFIX)? {
            let hash = &key[ID_PREFIX.len()..];
            if let Some(e) = self.get_by_hash(barrier, hash)?
                && pred(&e)
            {
                hashes.push(hash.to_owned());
            }
        }
        for h in &hashes {
            self.revoke_tree(barrier, h)?;
        }
        Ok(hashes.len())
    }

    /// The hash a presented token id would have (for revoking by id).
    pub(crate) fn hash_of(&self, token: &str) -> Result<String> {
        self.hash(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(creation: u64, ttl: u64) -> TokenEntry {
        serde_json::from_value(json!({
            "hash": "h", "accessor": "a", "parent": "", "policies": ["default"],
            "display_name": "token", "path": "auth/token/create",
            "creation_time": creation, "ttl": ttl,
            "expire_time": if ttl == 0 { 0 } else { creation + ttl },
            "num_uses": 0, "orphan": true, "meta": null,
        }))
        .expect("a token entry")
    }

    /// `lease_duration` is the TTL granted, not what is left when the answer is built:
    /// a create that crosses a second boundary on a loaded machine still says 3600.
    #[test]
    fn auth_lease_duration_is_the_granted_ttl() {
        let mut e = entry(1_000, 3_600);
        assert_eq!(e.to_auth(None).lease_duration, 3_600);
        assert_eq!(e.lookup_data(None, 1_001)["ttl"], json!(3_599));
        // A renewal at 2,000 for 600 s grants 600 s.
        e.last_renewal = 2_000;
        e.expire_time = 2_600;
        assert_eq!(e.to_auth(None).lease_duration, 600);
        assert_eq!(entry(1_000, 0).to_auth(None).lease_duration, 0);
    }
}
