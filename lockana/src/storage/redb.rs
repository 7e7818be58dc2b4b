//! The embedded default: one redb file, with group commit.
//!
//! Every write transaction is committed with immediate durability and two-phase
//! commit, so it is on disk before `batch` returns. One fsync'd commit per request
//! would cap durable writes at the disk's fsync rate, so concurrent batches share a
//! commit: callers hand their batch to one committer thread and block; the committer
//! takes everything queued (what arrived while the previous commit was syncing),
//! applies it in arrival order in one transaction, commits, and only then answers
//! each caller. No batch is acknowledged before the commit holding it is durable, and
//! each batch stays atomic (it is inside one transaction either way). A lone writer
//! pays nothing extra but a thread hand-off; there is no timer waiting for company.
//!
//! Reads go straight to redb (MVCC read transactions) and never wait for the
//! committer.
//!
//! Damage. redb keeps a Merkle tree of page checksums but only verifies it after a
//! crash, and a plain open of a file damaged on disk may panic deep in its b-tree.
//! So every open verifies the whole tree (`set_check_integrity_on_open`; it reads
//! the file once, which for a secrets store is small), and every call into redb runs
//! under `catch_unwind`: a panic becomes an integrity error naming the key, never a
//! dead thread or a crashed process. A file that fails the check is opened read-only
//! and marked damaged: its values can still be walked (`verify-storage` lists which
//! keys still decrypt), but the vault refuses to unseal on it, because a damaged
//! tree can hide entries or serve stale pages that per-value authentication cannot
//! see.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use redb::{
    Builder, Database, DatabaseError, Durability, ReadOnlyDatabase, ReadableDatabase,
    TableDefinition,
};

use super::{Backend, BatchOp};
use crate::metrics::{Histogram, SIZE_BOUNDS};
use crate::{IntegrityError, IntegrityKind, StorageError};

const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");

/// Most batches one commit takes, so a burst cannot build an unbounded transaction.
const MAX_GROUP: usize = 1024;

pub(crate) struct RedbBackend {
    db: Db,
    committer: Option<Committer>,
    /// Why the file is not trusted, if it failed its integrity check at open.
    damage: Option<String>,
}

/// The open file: writable when it verified, read-only when damaged, or nothing
/// when even a read-only open failed.
enum Db {
    Writable(Arc<Database>),
    ReadOnly(ReadOnlyDatabase),
    Unreadable,
}

/// Runs `f`, turning a panic inside the storage engine into an integrity error that
/// names `key`. redb panics (rather than erroring) on some damaged pages.
fn guarded<T>(key: &str, f: impl FnOnce() -> Result<T, StorageError>) -> Result<T, StorageError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| Err(engine_panic(key)))
}

fn engine_panic(key: &str) -> StorageError {
    tracing::error!(key = %key, "storage integrity failure: the storage engine panicked");
    StorageError::Integrity(IntegrityError::at(key, IntegrityKind::EnginePanic))
}

/// The committer thread and the queue into it. Dropping the sender ends the thread.
struct Committer {
    queue: mpsc::Sender<Pending>,
    thread: JoinHandle<()>,
    /// Batches per group commit.
    sizes: Arc<Histogram>,
}

/// One caller's batch and where to send its outcome.
struct Pending {
    ops: Vec<BatchOp>,
    done: mpsc::SyncSender<Result<(), StorageError>>,
}

fn backend_err(e: impl std::fmt::Display) -> StorageError {
    StorageError::Backend(e.to_string())
}

/// Where a group failed: applying a batch (that batch's fault, retried alone) or
/// committing (nothing in the group is durable; all of it fails).
enum GroupError {
    Apply(StorageError),
    Commit(StorageError),
}

impl RedbBackend {
    pub(crate) fn open(path: &Path) -> Result<Self, StorageError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(backend_err)?;
        }
        let checked = catch_unwind(AssertUnwindSafe(|| {
            Builder::new()
                .set_check_integrity_on_open(true)
                .create(path)
        }));
        let damage = match checked {
            Ok(Ok(db)) => return Self::writable(db),
            Ok(Err(DatabaseError::DatabaseAlreadyOpen)) => return Err(StorageError::AlreadyOpen),
            // The file could not be read at all (permissions, disk): not damage. redb
            // reports a file that is not (or no longer) a database as InvalidData.
            Ok(Err(DatabaseError::Storage(redb::StorageError::Io(e))))
                if e.kind() != std::io::ErrorKind::InvalidData =>
            {
                return Err(backend_err(e));
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the storage engine panicked while verifying the file".to_owned(),
        };
        tracing::error!(
            path = %path.display(),
            reason = %damage,
            "storage integrity failure: the storage file failed its checksum verification; the vault will not unseal on it (run `lockana operator verify-storage`, restore a backup)"
        );
        let db = match catch_unwind(AssertUnwindSafe(|| ReadOnlyDatabase::open(path))) {
            Ok(Ok(db)) => Db::ReadOnly(db),
            _ => Db::Unreadable,
        };
        Ok(RedbBackend {
            db,
            committer: None,
            damage: Some(damage),
        })
    }

    fn writable(db: Database) -> Result<Self, StorageError> {
        let db = Arc::new(db);
        let (queue, rx) = mpsc::channel::<Pending>();
        let thread_db = Arc::clone(&db);
        let sizes = Arc::new(Histogram::new(SIZE_BOUNDS));
        let thread_sizes = Arc::clone(&sizes);
        let thread = std::thread::Builder::new()
            .name("lockana-redb-commit".into())
            .spawn(move || run_committer(&thread_db, &rx, &thread_sizes))
            .map_err(backend_err)?;
        let backend = RedbBackend {
            db: Db::Writable(db),
            committer: Some(Committer {
                queue,
                thread,
                sizes,
            }),
            damage: None,
        };
        // Create the table up front so readers never see "table does not exist".
        backend.batch(Vec::new())?;
        Ok(backend)
    }

    fn read_txn(&self) -> Result<redb::ReadTransaction, StorageError> {
        let txn = match &self.db {
            Db::Writable(db) => db.begin_read(),
            Db::ReadOnly(db) => db.begin_read(),
            Db::Unreadable => {
                return Err(StorageError::Integrity(IntegrityError::file(
                    self.damage.clone().unwrap_or_default(),
                )));
            }
        };
        txn.map_err(backend_err)
    }
}

/// The committer loop: wait for one batch, sweep up whatever else is queued, commit
/// them together, answer everyone.
fn run_committer(db: &Database, rx: &mpsc::Receiver<Pending>, sizes: &Histogram) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(p) => group.push(p),
                Err(_) => break,
            }
        }
        sizes.record(group.len() as u64);
        commit_group(db, group);
    }
}

fn commit_group(db: &Database, group: Vec<Pending>) {
    let outcome = guarded_commit(db, group.iter().map(|p| &p.ops));
    match outcome {
        Ok(()) => {
            for p in group {
                // A caller that went away (it cannot, it blocks) just misses the answer.
                let _ = p.done.send(Ok(()));
            }
        }
        Err(GroupError::Commit(e)) => {
            tracing::error!(error = %e, batches = group.len(), "storage commit failed");
            for p in group {
                let e = match &e {
                    StorageError::Integrity(i) => StorageError::Integrity(i.clone()),
                    other => backend_err(other),
                };
                let _ = p.done.send(Err(e));
            }
        }
        Err(GroupError::Apply(e)) if group.len() == 1 => {
            if let Some(p) = group.into_iter().next() {
                let _ = p.done.send(Err(e));
            }
        }
        // The aborted transaction left nothing behind; give each batch its own
        // commit so one bad batch fails alone.
        Err(GroupError::Apply(_)) => {
            for p in group {
                let result = guarded_commit(db, std::iter::once(&p.ops)).map_err(|e| match e {
                    GroupError::Apply(e) | GroupError::Commit(e) => e,
                });
                let _ = p.done.send(result);
            }
        }
    }
}

/// [`commit`], with a panic inside redb contained: nothing of the group is durable
/// then, every caller gets an integrity error, and the committer lives on for the
/// next group.
fn guarded_commit<'a>(
    db: &Database,
    batches: impl Iterator<Item = &'a Vec<BatchOp>>,
) -> Result<(), GroupError> {
    let batches: Vec<&Vec<BatchOp>> = batches.collect();
    catch_unwind(AssertUnwindSafe(|| commit(db, batches.iter().copied()))).unwrap_or_else(|_| {
        let key = batches
            .iter()
            .flat_map(|ops| ops.iter())
            .map(|op| match op {
                BatchOp::Put(k, _) | BatchOp::Delete(k) => k.as_str(),
                BatchOp::Clear => "",
            })
            .next()
            .unwrap_or("");
        Err(GroupError::Commit(engine_panic(key)))
    })
}

/// One durable write transaction holding every batch, in order.
fn commit<'a>(
    db: &Database,
    batches: impl Iterator<Item = &'a Vec<BatchOp>>,
) -> Result<(), GroupError> {
    let mut txn = db
        .begin_write()
        .map_err(|e| GroupError::Commit(backend_err(e)))?;
    txn.set_durability(Durability::Immediate)
        .map_err(|e| GroupError::Commit(backend_err(e)))?;
    txn.set_two_phase_commit(true);
    let applied = (|| {
        let mut table = txn.open_table(ENTRIES).map_err(backend_err)?;
        for ops in batches {
            for op in ops {
                match op {
                    BatchOp::Put(k, v) => {
                        table
                            .insert(k.as_str(), v.as_slice())
                            .map_err(backend_err)?;
                    }
                    BatchOp::Delete(k) => {
                        table.remove(k.as_str()).map_err(backend_err)?;
                    }
                    BatchOp::Clear => {
                        table.retain(|_, _| false).map_err(backend_err)?;
                    }
                }
            }
        }
        Ok::<(), StorageError>(())
    })();
    if let Err(e) = applied {
        // Dropping an uncommitted transaction aborts it; abort explicitly to see errors.
        let _ = txn.abort();
        return Err(GroupError::Apply(e));
    }
    txn.commit().map_err(|e| GroupError::Commit(backend_err(e)))
}

impl Drop for RedbBackend {
    /// Stops the committer (after it has answered everything queued) so the file is
    /// closed when this returns, and a reopen in the same process succeeds.
    fn drop(&mut self) {
        if let Some(Committer { queue, thread, .. }) = self.committer.take() {
            drop(queue);
            if thread.join().is_err() {
                tracing::error!("the storage committer thread panicked");
            }
        }
    }
}

impl Backend for RedbBackend {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        guarded(key, || {
            let txn = self.read_txn()?;
            let table = txn.open_table(ENTRIES).map_err(backend_err)?;
            let value = table.get(key).map_err(backend_err)?;
            Ok(value.map(|v| v.value().to_vec()))
        })
    }

    fn scan(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        guarded(prefix, || {
            let txn = self.read_txn()?;
            let table = txn.open_table(ENTRIES).map_err(backend_err)?;
            let mut out = Vec::new();
            for item in table.range(prefix..).map_err(backend_err)? {
                let (k, _) = item.map_err(backend_err)?;
                let k = k.value();
                if !k.starts_with(prefix) {
                    break;
                }
                out.push(k.to_owned());
            }
            Ok(out)
        })
    }

    /// One read transaction: redb's MVCC keeps its view fixed while commits go on.
    fn entries(&self) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        guarded("", || {
            let txn = self.read_txn()?;
            let table = txn.open_table(ENTRIES).map_err(backend_err)?;
            let mut out = Vec::new();
            for item in table.range::<&str>(..).map_err(backend_err)? {
                let (k, v) = item.map_err(backend_err)?;
                out.push((k.value().to_owned(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    /// Queues the batch for the next group commit and blocks until that commit is
    /// durable (or failed).
    fn batch(&self, ops: Vec<BatchOp>) -> Result<(), StorageError> {
        if let Some(damage) = &self.damage {
            return Err(StorageError::Integrity(
                IntegrityError::file(damage.clone())
                    .with_detail("the damaged storage file is open read-only"),
            ));
        }
        let committer = self
            .committer
            .as_ref()
            .ok_or_else(|| StorageError::Backend("storage is closed".into()))?;
        let (done, outcome) = mpsc::sync_channel(1);
        committer
            .queue
            .send(Pending { ops, done })
            .map_err(|_| StorageError::Backend("the storage committer has stopped".into()))?;
        outcome
            .recv()
            .map_err(|_| StorageError::Backend("the storage committer has stopped".into()))?
    }

    fn kind(&self) -> &'static str {
        "redb"
    }

    fn damage(&self) -> Option<String> {
        self.damage.clone()
    }

    fn group_commit_sizes(&self) -> Option<&Histogram> {
        self.committer.as_ref().map(|c| &*c.sizes)
    }
}
