//! The KV secrets engines (v1 and v2) and the pieces they share.

pub(crate) mod v1;
pub(crate) mod v2;

use std::time::SystemTime;

use parking_lot::{ReentrantMutex, ReentrantMutexGuard};
use serde_json::{Map, Value};

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::barrier::{Barrier, Op};
use crate::engine::{Backend, Registration};
use crate::mounts::MountEntry;
use crate::{Error, Result};

/// `kv` (with a `version` option of 1 or 2), and its aliases.
pub(crate) const REGISTRATION: Registration = Registration {
    names: &["kv", "generic", "kv-v1", "kv-v2"],
    factory: new_kv,
    mountable: true,
};

/// The per-token store every vault has at `cubbyhole/`.
pub(crate) const CUBBYHOLE: Registration = Registration {
    names: &["cubbyhole"],
    factory: new_cubbyhole,
    mountable: false,
};

/// KV is stored as `kv` with `version` "1" or "2", whichever alias enabled it.
fn new_kv(
    kind: &str,
    options: &mut BTreeMap<String, String>,
) -> Result<(&'static str, Arc<dyn Backend>)> {
    let version = match kind {
        "kv-v1" => "1".to_owned(),
        "kv-v2" => "2".to_owned(),
        _ => options
            .get("version")
            .cloned()
            .unwrap_or_else(|| "1".into()),
    };
    let backend: Arc<dyn Backend> = match version.as_str() {
        "1" => Arc::new(v1::KvV1),
        "2" => Arc::new(v2::KvV2),
        _ => {
            return Err(Error::invalid(
                "kv mount option 'version' must be \"1\" or \"2\"",
            ));
        }
    };
    options.insert("version".into(), version);
    Ok(("kv", backend))
}

fn new_cubbyhole(
    _kind: &str,
    options: &mut BTreeMap<String, String>,
) -> Result<(&'static str, Arc<dyn Backend>)> {
    options.clear();
    Ok(("cubbyhole", Arc::new(v1::Cubbyhole)))
}

/// Whether `mount` is a KV version 2 mount (projects keep their variables on one).
pub(crate) fn is_v2(mount: &MountEntry) -> bool {
    mount.kind == "kv" && mount.options.get("version").map(String::as_str) == Some("2")
}

/// Everything an engine needs to answer one request.
pub(crate) struct Ctx<'a> {
    pub barrier: &'a Barrier,
    pub mount: &'a MountEntry,
    /// Storage prefix of this request's data: the mount's view, or for cubbyhole the
    /// calling token's own corner of it.
    pub prefix: String,
    pub now: SystemTime,
    pub locks: &'a KeyLocks,
    /// KV v2's parsed metadata, shared across requests.
    pub meta_cache: &'a v2::MetaCache,
    /// Failed-login counters (auth methods with lockout).
    pub lockouts: &'a crate::auth::lockout::Lockouts,
    /// The system default and maximum TTL.
    pub ttls: &'a crate::mounts::SystemTtls,
}

impl Ctx<'_> {
    pub(crate) fn key(&self, rel: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + rel.len());
        k.push_str(&self.prefix);
        k.push_str(rel);
        k
    }

    /// The JSON record at `rel`; one that does not decode is an integrity error
    /// naming its storage key.
    pub(crate) fn get_json<T: serde::de::DeserializeOwned>(&self, rel: &str) -> Result<Option<T>> {
        let key = self.key(rel);
        match self.barrier.get(&key)? {
            None => Ok(None),
            Some(b) => Ok(Some(crate::barrier::decode_record(&key, &b)?)),
        }
    }

    pub(crate) fn put_op<T: serde::Serialize>(&self, rel: &str, v: &T) -> Result<Op> {
        let bytes = serde_json::to_vec(v).map_err(|_| crate::StorageError::Corrupt)?;
        Ok(Op::Put(self.key(rel), bytes))
    }

    pub(crate) fn delete_op(&self, rel: &str) -> Op {
        Op::Delete(self.key(rel))
    }

    pub(crate) fn apply(&self, ops: Vec<Op>) -> Result<()> {
        self.barrier.apply(ops)
    }

    pub(crate) fn list(&self, rel_prefix: &str) -> Result<Vec<String>> {
        self.barrier.list(&self.key(rel_prefix))
    }

    /// Serializes writers of one key (read-modify-write of KV v2 metadata).
    pub(crate) fn lock(&self, rel: &str) -> KeyGuard<'_> {
        self.locks.lock(&self.key(rel))
    }
}

/// Striped locks: writers of the same key serialize, others rarely contend. A writer
/// holds its stripe across the fsync, so stripes are plenty (1,024) to keep 64
/// concurrent writers of different keys from waiting on each other.
///
/// A stripe is re-entrant: a thread that holds one key's lock and takes another's
/// (an AppRole role, then the mount's salt) would otherwise wait on itself whenever
/// both keys fall in the same stripe, one time in 1,024.
pub(crate) struct KeyLocks(Vec<ReentrantMutex<()>>);

/// A held [`KeyLocks`] stripe.
pub(crate) type KeyGuard<'a> = ReentrantMutexGuard<'a, ()>;

impl Default for KeyLocks {
    fn default() -> Self {
        KeyLocks((0..1024).map(|_| ReentrantMutex::new(())).collect())
    }
}

impl KeyLocks {
    pub(crate) fn lock(&self, key: &str) -> KeyGuard<'_> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        self.0[(h.finish() as usize) % self.0.len()].lock()
    }
}

/// The text Vault's field parser gives when a JSON value is not the object a field
/// expects; clients and scripts match on it. Only the value's type is named.
pub(crate) fn go_conversion_error(field: &str, v: &Value) -> String {
    // A list is converted element by element, so the first element is the one named.
    let (at, ty) = match v {
        Value::Array(items) if !items.is_empty() => ("[0]", go_type(&items[0])),
        other => ("", go_type(other)),
    };
    format!(
        "error converting input for field \"{field}\": '{at}' expected type 'map[string]interface {{}}', got unconvertible type '{ty}'"
    )
}

/// The Go type Vault's JSON decoding gives a value, as its error texts name it.
pub(crate) fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "json.Number",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

// Request fields are read the one way Vault reads them (see `crate::fields`).
pub(crate) use crate::fields::{opt_bool, opt_duration, opt_u64};

/// A list answer: `{"keys": [...]}`, or 404 when there is nothing.
pub(crate) fn list_response(keys: Vec<String>) -> Result<crate::Response> {
    if keys.is_empty() {
        return Err(Error::NotFound);
    }
    let mut m = Map::new();
    m.insert("keys".into(), Value::from(keys));
    Ok(crate::Response::with_data(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two keys in the same stripe, taken one inside the other on one thread (an
    /// AppRole role, then its mount's salt): this used to wait forever.
    #[test]
    fn nested_keys_in_one_stripe_do_not_deadlock() {
        let locks = std::sync::Arc::new(KeyLocks::default());
        let stripe = |k: &str| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            k.hash(&mut h);
            (h.finish() as usize) % 1024
        };
        let outer = "auth/approle/salt";
        let inner = (0..100_000)
            .map(|i| format!("auth/approle/role/r{i}"))
            .find(|k| stripe(k) == stripe(outer))
            .expect("a colliding key");
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let held = std::sync::Arc::clone(&locks);
        std::thread::spawn(move || {
            let _a = held.lock(&inner);
            let _b = held.lock(outer);
            let _ = done_tx.send(());
        });
        done_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("a thread waited on its own stripe");
        // Other threads still wait for a held stripe.
        let _g = locks.lock(outer);
        let other = std::sync::Arc::clone(&locks);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _g = other.lock(outer);
            let _ = tx.send(());
        });
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(200))
                .is_err()
        );
    }
}
