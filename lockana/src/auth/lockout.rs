//! User lockout as in Vault 1.13: after [`THRESHOLD`] failed logins for one alias on
//! one mount, further logins fail for [`LOCK_DURATION`] whatever the credentials; the
//! failure counter resets [`COUNTER_RESET`] after the last failure, and a successful
//! login resets it at once.
//!
//! Every counter is also stored behind the barrier (`sys/lockout/<sha256(mount, alias)>`,
//! the alias inside the encrypted value), written before the failed login answers and
//! loaded at unseal, so neither a restart nor a seal lifts a lockout. Vault keeps only
//! locked users in storage (`core/login/lockedUsers/`); Lockana keeps the counts too,
//! so four failures, a restart and one more still lock. Aliases are trimmed and
//! lower-cased, so `Alice`, `alice ` and `ALICE` share one counter. The login methods
//! answer a locked alias exactly as a wrong password (same error, same status, same
//! work done).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::barrier::{Barrier, Op};
use crate::{Result, StorageError};

/// Failed attempts that lock an alias (Vault's `lockout_threshold`).
pub(crate) const THRESHOLD: u32 = 5;
/// How long a locked alias stays locked (Vault's `lockout_duration`).
pub(crate) const LOCK_DURATION: Duration = Duration::from_secs(15 * 60);
/// Quiet time after the last failure that clears the counter (`lockout_counter_reset`).
pub(crate) const COUNTER_RESET: Duration = Duration::from_secs(15 * 60);
/// Entries kept at most: a spray of unknown names must not grow memory without bound.
const MAX_ENTRIES: usize = 100_000;
/// Where the counters are stored, behind the barrier.
const PREFIX: &str = "sys/lockout/";
/// Writers of one counter serialize on a stripe, across the durable write.
const STRIPES: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: SystemTime,
}

impl Entry {
    fn stale(&self, now: SystemTime) -> bool {
        let since = now
            .duration_since(self.last_failure)
            .unwrap_or(Duration::ZERO);
        if self.failures >= THRESHOLD {
            since >= LOCK_DURATION
        } else {
            since >= COUNTER_RESET
        }
    }

    fn locked(&self, now: SystemTime) -> bool {
        self.failures >= THRESHOLD && !self.stale(now)
    }
}

/// A counter as stored.
#[derive(Serialize, Deserialize)]
struct Stored {
    mount: String,
    alias: String,
    failures: u32,
    /// The last failure, unix seconds and nanoseconds.
    secs: u64,
    nanos: u32,
}

impl Stored {
    fn entry(&self) -> Entry {
        Entry {
            failures: self.failures,
            last_failure: SystemTime::UNIX_EPOCH + Duration::new(self.secs, self.nanos),
        }
    }
}

type Key = (String, String);

/// The storage path of a counter: fixed length whatever the alias holds.
fn storage_key(key: &Key) -> String {
    let mut h = Sha256::new();
    h.update(key.0.as_bytes());
    h.update([0u8]);
    h.update(key.1.as_bytes());
    format!("{PREFIX}{}", hex::encode(h.finalize()))
}

fn put_op(key: &Key, e: &Entry) -> Result<Op> {
    let since = e
        .last_failure
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let stored = Stored {
        mount: key.0.clone(),
        alias: key.1.clone(),
        failures: e.failures,
        secs: since.as_secs(),
        nanos: since.subsec_nanos(),
    };
    let bytes = serde_json::to_vec(&stored).map_err(|_| StorageError::Corrupt)?;
    Ok(Op::Put(storage_key(key), bytes))
}

/// Failed-login counters, keyed by (mount accessor, normalized alias), in memory and
/// behind the barrier.
pub(crate) struct Lockouts {
    map: Mutex<HashMap<Key, Entry>>,
    stripes: Vec<Mutex<()>>,
    /// Times an alias became locked out.
    pub(crate) lockouts: crate::metrics::Counter,
}

impl Default for Lockouts {
    fn default() -> Self {
        Lockouts {
            map: Mutex::new(HashMap::new()),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            lockouts: Default::default(),
        }
    }
}

/// The counter key for an alias: trimmed and lower-cased.
pub(crate) fn normalize_alias(alias: &str) -> String {
    alias.trim().to_lowercase()
}

impl Lockouts {
    /// Whether logins for `alias` on the mount are refused right now.
    pub(crate) fn is_locked(&self, mount_accessor: &str, alias: &str, now: SystemTime) -> bool {
        let key = (mount_accessor.to_owned(), normalize_alias(alias));
        self.map.lock().get(&key).is_some_and(|e| e.locked(now))
    }

    fn stripe(&self, key: &Key) -> parking_lot::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        self.stripes[(h.finish() as usize) % self.stripes.len()].lock()
    }

    /// Counts one failed login; returns once the count is durable.
    pub(crate) fn record_failure(
        &self,
        barrier: &Barrier,
        mount_accessor: &str,
        alias: &str,
        now: SystemTime,
    ) -> Result<()> {
        let key = (mount_accessor.to_owned(), normalize_alias(alias));
        let _stripe = self.stripe(&key);
        let mut ops = Vec::new();
        {
            let mut map = self.map.lock();
            if map.len() >= MAX_ENTRIES && !map.contains_key(&key) {
                map.retain(|k, e| {
                    let keep = !e.stale(now);
                    if !keep {
                        ops.push(Op::Delete(storage_key(k)));
                    }
                    keep
                });
                if map.len() >= MAX_ENTRIES {
                    // Still full of live counters: forget the oldest non-locked one.
                    let oldest = map
                        .iter()
                        .filter(|(_, e)| !e.locked(now))
                        .min_by_key(|(_, e)| e.last_failure)
                        .map(|(k, _)| k.clone());
                    match oldest {
                        Some(k) => {
                            map.remove(&k);
                            ops.push(Op::Delete(storage_key(&k)));
                        }
                        None => return flush(barrier, ops),
                    }
                }
            }
            let e = map.entry(key.clone()).or_insert(Entry {
                failures: 0,
                last_failure: now,
            });
            if e.stale(now) {
                e.failures = 0;
            }
            // While locked, failures do not extend the lock (Vault counts from the
            // failure that locked the user).
            if e.failures < THRESHOLD {
                e.failures += 1;
                e.last_failure = now;
                if e.failures == THRESHOLD {
                    self.lockouts.incr();
                }
                ops.push(put_op(&key, e)?);
            }
        }
        flush(barrier, ops)
    }

    /// Forgets the alias's failures (after a successful login, or an unlock); durable
    /// before it returns. True if there were any.
    pub(crate) fn reset(
        &self,
        barrier: &Barrier,
        mount_accessor: &str,
        alias: &str,
    ) -> Result<bool> {
        let key = (mount_accessor.to_owned(), normalize_alias(alias));
        let _stripe = self.stripe(&key);
        let had = self.map.lock().remove(&key).is_some();
        if had {
            barrier.apply(vec![Op::Delete(storage_key(&key))])?;
        }
        Ok(had)
    }

    /// Loads the stored counters (at unseal); expired ones are deleted.
    pub(crate) fn load(&self, barrier: &Barrier, now: SystemTime) -> Result<()> {
        let mut map = HashMap::new();
        let mut stale = Vec::new();
        for path in barrier.scan(PREFIX)? {
            let Some(bytes) = barrier.get(&path)? else {
                continue;
            };
            let s: Stored = crate::barrier::decode_record(&path, &bytes)?;
            let e = s.entry();
            if e.stale(now) {
                stale.push(Op::Delete(path));
            } else {
                map.insert((s.mount, s.alias), e);
            }
        }
        flush(barrier, stale)?;
        *self.map.lock() = map;
        Ok(())
    }

    /// How many aliases are locked out right now (Vault's `vault.core.locked_users`).
    pub(crate) fn locked_count(&self, now: SystemTime) -> usize {
        self.map.lock().values().filter(|e| e.locked(now)).count()
    }

    /// Locked aliases by mount accessor, sorted.
    pub(crate) fn locked(&self, now: SystemTime) -> Vec<(String, Vec<String>)> {
        let map = self.map.lock();
        let mut by_mount: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for ((mount, alias), e) in map.iter() {
            if e.locked(now) {
                by_mount
                    .entry(mount.clone())
                    .or_default()
                    .push(alias.clone());
            }
        }
        by_mount
            .into_iter()
            .map(|(m, mut a)| {
                a.sort();
                (m, a)
            })
            .collect()
    }

    /// Forgets the in-memory copy (on seal); the stored counters stay.
    pub(crate) fn clear(&self) {
        self.map.lock().clear();
    }
}

fn flush(barrier: &Barrier, ops: Vec<Op>) -> Result<()> {
    if ops.is_empty() {
        Ok(())
    } else {
        barrier.apply(ops)
    }
}

/// `sys/locked-users` (GET) and `sys/locked-users/<mount accessor>/unlock/<alias>`
/// (POST), as Vault 1.13 answers them.
pub(crate) fn sys_handle(
    lockouts: &Lockouts,
    barrier: &Barrier,
    req: &crate::Request,
    rest: &str,
    now: SystemTime,
) -> crate::Result<crate::Response> {
    use crate::{Error, Operation, Response};
    use serde_json::{Map, json};
    let rest = rest.trim_matches('/');
    if rest.is_empty() {
        if req.operation != Operation::Read {
            return Err(Error::UnsupportedOperation);
        }
        let locked = lockouts.locked(now);
        let total: usize = locked.iter().map(|(_, a)| a.len()).sum();
        let mounts: Vec<_> = locked
            .iter()
            .map(|(m, a)| json!({"mount_accessor": m, "counts": a.len(), "alias_identifiers": a}))
            .collect();
        let by_namespace = if mounts.is_empty() {
            json!([])
        } else {
            json!([{"namespace_id": "root", "namespace_path": "", "counts": total, "mount_accessors": mounts}])
        };
        let mut m = Map::new();
        m.insert("by_namespace".into(), by_namespace);
        m.insert("total".into(), json!(total));
        let mut r = Response::with_data(m);
        r.mount_type = "system".into();
        return Ok(r);
    }
    let Some((accessor, alias)) = rest.split_once("/unlock/") else {
        return Err(Error::NoRoute(req.path.clone()));
    };
    if !matches!(req.operation, Operation::Update | Operation::Create) {
        return Err(Error::UnsupportedOperation);
    }
    if accessor.is_empty() || alias.is_empty() {
        return Err(Error::invalid("missing mount_accessor or alias_identifier"));
    }
    lockouts.reset(barrier, accessor, alias)?;
    Ok(Response::empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn barrier() -> Barrier {
        let b = Barrier::new(Arc::new(crate::storage::MemoryBackend::default()));
        let (key, _) = b
            .initialize(1, 1, crate::barrier::Cipher::default(), 0)
            .unwrap();
        b.unseal_with_key(&key[..]).unwrap();
        b
    }

    #[test]
    fn five_failures_lock_and_the_lock_lifts_after_fifteen_minutes() {
        let b = barrier();
        let l = Lockouts::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        for i in 0..THRESHOLD {
            assert!(!l.is_locked("m", "alice", t0), "attempt {i}");
            l.record_failure(&b, "m", "alice", t0).unwrap();
        }
        assert!(l.is_locked("m", "Alice", t0));
        assert!(l.is_locked("m", " ALICE ", t0 + Duration::from_secs(899)));
        assert!(!l.is_locked("other", "alice", t0));
        assert!(!l.is_locked("m", "alice", t0 + LOCK_DURATION));
        // After the lock lifts, the count starts again from zero.
        l.record_failure(&b, "m", "alice", t0 + LOCK_DURATION)
            .unwrap();
        assert!(!l.is_locked("m", "alice", t0 + LOCK_DURATION));
    }

    #[test]
    fn counter_resets_fifteen_minutes_after_the_last_failure() {
        let b = barrier();
        let l = Lockouts::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        for _ in 0..THRESHOLD - 1 {
            l.record_failure(&b, "m", "bob", t0).unwrap();
        }
        let later = t0 + COUNTER_RESET;
        l.record_failure(&b, "m", "bob", later).unwrap();
        assert!(!l.is_locked("m", "bob", later));
        assert!(l.locked(later).is_empty());
    }

    #[test]
    fn lockouts_and_partial_counts_survive_a_reload_from_storage() {
        let b = barrier();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let l = Lockouts::default();
        for _ in 0..THRESHOLD {
            l.record_failure(&b, "m", "alice", t0).unwrap();
        }
        for _ in 0..THRESHOLD - 1 {
            l.record_failure(&b, "m", "bob", t0).unwrap();
        }
        l.record_failure(&b, "m", "carol", t0).unwrap();
        l.reset(&b, "m", "carol").unwrap();
        // A new process: only what storage holds.
        let later = t0 + Duration::from_secs(60);
        let l = Lockouts::default();
        l.load(&b, later).unwrap();
        assert!(l.is_locked("m", "alice", later));
        assert!(!l.is_locked("m", "bob", later));
        l.record_failure(&b, "m", "bob", later).unwrap();
        assert!(l.is_locked("m", "bob", later), "the count went on");
        assert_eq!(b.scan(PREFIX).unwrap().len(), 2, "carol's reset was stored");
        // The lock still lifts on time, and expired counters leave storage at load.
        let expired = later + LOCK_DURATION;
        let l = Lockouts::default();
        l.load(&b, expired).unwrap();
        assert!(!l.is_locked("m", "alice", expired));
        assert!(b.scan(PREFIX).unwrap().is_empty());
    }
}
