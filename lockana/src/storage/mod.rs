//! Physical storage: opaque bytes under string keys. Everything written here by the
//! vault (except the seal configuration and the wrapped root key) has already been
//! encrypted by the barrier.

mod memory;
mod postgres;
mod postgres_ha;
mod redb;

pub(crate) use self::memory::MemoryBackend;
pub(crate) use self::postgres::PostgresBackend;
pub(crate) use self::postgres_ha::{Fence, FenceState, HaLock};
pub(crate) use self::redb::RedbBackend;

use crate::StorageError;

/// One change in an atomic batch.
pub(crate) enum BatchOp {
    Put(String, Vec<u8>),
    Delete(String),
    /// Deletes every entry (a snapshot restore starts its batch with it).
    Clear,
}

/// A key-value store. Every method that writes returns only once the change is
/// durable (or, for the memory backend, visible).
pub(crate) trait Backend: Send + Sync {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    // Single-key shorthands; the vault itself always writes through `batch`.
    #[cfg_attr(not(test), allow(dead_code))]
    fn put(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.batch(vec![BatchOp::Put(key.to_owned(), value.to_vec())])
    }
    #[cfg_attr(not(test), allow(dead_code))]
    fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.batch(vec![BatchOp::Delete(key.to_owned())])
    }
    /// All keys that start with `prefix`, full keys, in order.
    fn scan(&self, prefix: &str) -> Result<Vec<String>, StorageError>;
    /// Applies all changes or none.
    fn batch(&self, ops: Vec<BatchOp>) -> Result<(), StorageError>;
    /// Every entry, in key order, as of one instant: one read transaction, so writes
    /// that land meanwhile are either wholly in or wholly out (snapshots).
    fn entries(&self) -> Result<Vec<(String, Vec<u8>)>, StorageError>;
    /// The immediate children of `prefix`, Vault style: `a`, and `dir/` for deeper keys.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        Ok(children(prefix, self.scan(prefix)?))
    }
    /// A short name for `sys/seal-status` (`storage_type`).
    fn kind(&self) -> &'static str;
    /// Why the storage as a whole cannot be trusted (it failed its integrity check
    /// when opened), if it cannot. The vault refuses to unseal on such storage.
    fn damage(&self) -> Option<String> {
        None
    }
    /// Batches per durable commit, for a backend that groups them.
    fn group_commit_sizes(&self) -> Option<&crate::metrics::Histogram> {
        None
    }
}

/// Folds full keys under `prefix` into immediate children (`name` or `dir/`).
pub(crate) fn children(prefix: &str, keys: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for key in keys {
        let Some(rest) = key.strip_prefix(prefix) else {
            continue;
        };
        let child = match rest.find('/') {
            Some(i) => &rest[..=i],
            None => rest,
        };
        if child.is_empty() {
            continue;
        }
        if out.last().map(String::as_str) != Some(child) {
            out.push(child.to_owned());
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn exercise(b: &dyn Backend) {
        b.put("a/b", b"1").unwrap();
        b.put("a/c/d", b"2").unwrap();
        b.put("a/c/e", b"3").unwrap();
        b.put("b", b"4").unwrap();
        assert_eq!(b.get("a/b").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(b.get("missing").unwrap(), None);
        assert_eq!(b.list("a/").unwrap(), vec!["b", "c/"]);
        assert_eq!(b.list("").unwrap(), vec!["a/", "b"]);
        assert_eq!(b.scan("a/c/").unwrap(), vec!["a/c/d", "a/c/e"]);
        b.batch(vec![
            BatchOp::Delete("a/b".into()),
            BatchOp::Put("z".into(), b"5".to_vec()),
        ])
        .unwrap();
        assert_eq!(b.get("a/b").unwrap(), None);
        assert_eq!(b.get("z").unwrap().as_deref(), Some(&b"5"[..]));
        b.delete("z").unwrap();
        assert_eq!(b.get("z").unwrap(), None);
        let all = b.entries().unwrap();
        let keys: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, vec!["a/c/d", "a/c/e", "b"]);
        assert_eq!(all[0].1, b"2");
        b.batch(vec![
            BatchOp::Clear,
            BatchOp::Put("n".into(), b"6".to_vec()),
        ])
        .unwrap();
        assert_eq!(b.scan("").unwrap(), vec!["n"]);
        assert_eq!(b.get("a/c/d").unwrap(), None);
        b.batch(vec![BatchOp::Clear]).unwrap();
        assert!(b.entries().unwrap().is_empty());
        // A long run of puts, one key twice: the later value wins.
        let mut ops: Vec<BatchOp> = (0..2500)
            .map(|i| BatchOp::Put(format!("bulk/{i:05}"), vec![1]))
            .collect();
        ops.push(BatchOp::Put("bulk/00007".into(), vec![2]));
        ops.push(BatchOp::Delete("bulk/00008".into()));
        b.batch(ops).unwrap();
        assert_eq!(b.scan("bulk/").unwrap().len(), 2499);
        assert_eq!(b.get("bulk/00007").unwrap(), Some(vec![2]));
        b.batch(vec![BatchOp::Clear]).unwrap();
        for (k, v) in &all {
            b.put(k, v).unwrap();
        }
    }

    #[test]
    fn memory_backend_semantics() {
        exercise(&MemoryBackend::default());
    }

    #[test]
    fn redb_backend_semantics_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.redb");
        {
            let b = RedbBackend::open(&path).unwrap();
            exercise(&b);
            b.put("kept", b"yes").unwrap();
        }
        let b = RedbBackend::open(&path).unwrap();
        assert_eq!(b.get("kept").unwrap().as_deref(), Some(&b"yes"[..]));
        assert_eq!(b.get("a/c/d").unwrap().as_deref(), Some(&b"2"[..]));
    }

    /// Group commit: many writers at once, each batch atomic and each acknowledged
    /// only once durable, so after the writers return (and after a reopen) every
    /// batch is there in full.
    #[test]
    fn redb_concurrent_batches_all_land() {
        const THREADS: usize = 16;
        const BATCHES: usize = 25;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.redb");
        {
            let b = std::sync::Arc::new(RedbBackend::open(&path).unwrap());
            for t in 0..THREADS {
                b.put(&format!("doomed/{t}"), b"x").unwrap();
            }
            let writers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let b = std::sync::Arc::clone(&b);
                    std::thread::spawn(move || {
                        for i in 0..BATCHES {
                            b.batch(vec![
                                BatchOp::Put(format!("w/{t}/{i}/a"), vec![t as u8, i as u8]),
                                BatchOp::Put(format!("w/{t}/{i}/b"), vec![i as u8]),
                                BatchOp::Delete(format!("doomed/{t}")),
                            ])
                            .unwrap();
                            // Acknowledged means visible to any reader from now on.
                            assert!(b.get(&format!("w/{t}/{i}/b")).unwrap().is_some());
                        }
                    })
                })
                .collect();
            for w in writers {
                w.join().unwrap();
            }
            assert_eq!(b.scan("w/").unwrap().len(), THREADS * BATCHES * 2);
        }
        let b = RedbBackend::open(&path).unwrap();
        assert_eq!(b.scan("w/").unwrap().len(), THREADS * BATCHES * 2);
        assert!(b.scan("doomed/").unwrap().is_empty());
        for t in 0..THREADS {
            for i in 0..BATCHES {
                assert_eq!(
                    b.get(&format!("w/{t}/{i}/a")).unwrap(),
                    Some(vec![t as u8, i as u8])
                );
            }
        }
    }

    /// The PostgreSQL every machine of this project runs (trust auth on loopback);
    /// `LOCKANA_TEST_POSTGRES_URL` points elsewhere.
    fn pg_url() -> String {
        std::env::var("LOCKANA_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    fn pg_table() -> String {
        format!("lockana_test_{}", uuid::Uuid::new_v4().simple())
    }

    fn drop_table(table: &str) {
        let mut c = ::postgres::Client::connect(&pg_url(), ::postgres::NoTls).unwrap();
        c.batch_execute(&format!("DROP TABLE IF EXISTS {table}"))
            .unwrap();
    }

    #[test]
    fn postgres_backend_semantics_and_reconnect() {
        let table = pg_table();
        {
            let b = PostgresBackend::open(&pg_url(), &table).unwrap();
            exercise(&b);
            b.put("kept", b"yes").unwrap();
            // Keys sort bytewise (COLLATE "C"), so prefix scans are exact ranges.
            b.put("a/\u{ff}", b"1").unwrap();
            b.put("a0", b"2").unwrap();
            assert_eq!(b.scan("a/").unwrap(), vec!["a/c/d", "a/c/e", "a/\u{ff}"]);
        }
        let b = PostgresBackend::open(&pg_url(), &table).unwrap();
        assert_eq!(b.get("kept").unwrap().as_deref(), Some(&b"yes"[..]));
        drop(b);
        drop_table(&table);
        assert!(PostgresBackend::open(&pg_url(), "bad; drop table x").is_err());
    }

    #[test]
    fn postgres_connection_failure_is_a_clear_error() {
        let err = PostgresBackend::open("postgres://nobody@127.0.0.1:1/none", "t")
            .err()
            .unwrap();
        assert!(
            err.to_string().starts_with("storage error: postgresql:"),
            "{err}"
        );
    }

    #[test]
    fn redb_second_open_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.redb");
        let _first = RedbBackend::open(&path).unwrap();
        let err = RedbBackend::open(&path)
            .err()
            .expect("second open must fail");
        assert!(matches!(err, StorageError::AlreadyOpen), "{err}");
    }
}
