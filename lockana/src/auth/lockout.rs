//! User lockout as in Vault 1.13: after [`THRESHOLD`] failed logins for one alias on
//! one mount, further logins fail for [`LOCK_DURATION`] whatever the credentials; the
//! failure counter resets [`COUNTER_RESET`] after the last failure, and a successful
//! login resets it at once.
//!
//! The state is in memory (Vault keeps it in storage so HA standbys share it): a
//! restart or a seal forgets it. Aliases are trimmed and lower-cased, so `Alice`,
//! `alice ` and `ALICE` share one counter. The login methods answer a locked alias
//! exactly as a wrong password (same error, same status, same work done).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

/// Failed attempts that lock an alias (Vault's `lockout_threshold`).
pub(crate) const THRESHOLD: u32 = 5;
/// How long a locked alias stays locked (Vault's `lockout_duration`).
pub(crate) const LOCK_DURATION: Duration = Duration::from_secs(15 * 60);
/// Quiet time after the last failure that clears the counter (`lockout_counter_reset`).
pub(crate) const COUNTER_RESET: Duration = Duration::from_secs(15 * 60);
/// Entries kept at most: a spray of unknown names must not grow memory without bound.
const MAX_ENTRIES: usize = 100_000;

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

/// Failed-login counters, keyed by (mount accessor, normalized alias).
#[derive(Default)]
pub(crate) struct Lockouts {
    map: Mutex<HashMap<(String, String), Entry>>,
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

    /// Counts one failed login.
    pub(crate) fn record_failure(&self, mount_accessor: &str, alias: &str, now: SystemTime) {
        let key = (mount_accessor.to_owned(), normalize_alias(alias));
        let mut map = self.map.lock();
        if map.len() >= MAX_ENTRIES && !map.contains_key(&key) {
            map.retain(|_, e| !e.stale(now));
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
                    }
                    None => return,
                }
            }
        }
        let e = map.entry(key).or_insert(Entry {
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
        }
    }

    /// Forgets the alias's failures (after a successful login, or an unlock).
    pub(crate) fn reset(&self, mount_accessor: &str, alias: &str) -> bool {
        let key = (mount_accessor.to_owned(), normalize_alias(alias));
        self.map.lock().remove(&key).is_some()
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

    /// Forgets everything (on seal).
    pub(crate) fn clear(&self) {
        self.map.lock().clear();
    }
}

/// `sys/locked-users` (GET) and `sys/locked-users/<mount accessor>/unlock/<alias>`
/// (POST), as Vault 1.13 answers them.
pub(crate) fn sys_handle(
    lockouts: &Lockouts,
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
    lockouts.reset(accessor, alias);
    Ok(Response::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_lock_and_the_lock_lifts_after_fifteen_minutes() {
        let l = Lockouts::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        for i in 0..THRESHOLD {
            assert!(!l.is_locked("m", "alice", t0), "attempt {i}");
            l.record_failure("m", "alice", t0);
        }
        assert!(l.is_locked("m", "Alice", t0));
        assert!(l.is_locked("m", " ALICE ", t0 + Duration::from_secs(899)));
        assert!(!l.is_locked("other", "alice", t0));
        assert!(!l.is_locked("m", "alice", t0 + LOCK_DURATION));
        // After the lock lifts, the count starts again from zero.
        l.record_failure("m", "alice", t0 + LOCK_DURATION);
        assert!(!l.is_locked("m", "alice", t0 + LOCK_DURATION));
    }

    #[test]
    fn counter_resets_fifteen_minutes_after_the_last_failure() {
        let l = Lockouts::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        for _ in 0..THRESHOLD - 1 {
            l.record_failure("m", "bob", t0);
        }
        let later = t0 + COUNTER_RESET;
        l.record_failure("m", "bob", later);
        assert!(!l.is_locked("m", "bob", later));
        assert!(l.locked(later).is_empty());
    }
}
