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

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use redb::{Database, DatabaseError, Durability, ReadableDatabase, TableDefinition};

use super::{Backend, BatchOp};
use crate::StorageError;

const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");

/// Most batches one commit takes, so a burst cannot build an unbounded transaction.
const MAX_GROUP: usize = 1024;

pub(crate) struct RedbBackend {
    db: Arc<Database>,
    committer: Option<Committer>,
}

/// The committer thread and the queue into it. Dropping the sender ends the thread.
struct Committer {
    queue: mpsc::Sender<Pending>,
    thread: JoinHandle<()>,
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
        let db = Arc::new(Database::create(path).map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => StorageError::AlreadyOpen,
            other => backend_err(other),
        })?);
        let (queue, rx) = mpsc::channel::<Pending>();
        let thread_db = Arc::clone(&db);
        let thread = std::thread::Builder::new()
            .name("lockana-redb-commit".into())
            .spawn(move || run_committer(&thread_db, &rx))
            .map_err(backend_err)?;
        let backend = RedbBackend {
            db,
            committer: Some(Committer { queue, thread }),
        };
        // Create the table up front so readers never see "table does not exist".
        backend.batch(Vec::new())?;
        Ok(backend)
    }
}

/// The committer loop: wait for one batch, sweep up whatever else is queued, commit
/// them together, answer everyone.
fn run_committer(db: &Database, rx: &mpsc::Receiver<Pending>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(p) => group.push(p),
                Err(_) => break,
            }
        }
        commit_group(db, group);
    }
}

fn commit_group(db: &Database, group: Vec<Pending>) {
    let outcome = commit(db, group.iter().map(|p| &p.ops));
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
                let _ = p.done.send(Err(backend_err(&e)));
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
                let result = commit(db, std::iter::once(&p.ops)).map_err(|e| match e {
                    GroupError::Apply(e) | GroupError::Commit(e) => e,
                });
                let _ = p.done.send(result);
            }
        }
    }
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
        if let Some(Committer { queue, thread }) = self.committer.take() {
            drop(queue);
            if thread.join().is_err() {
                tracing::error!("the storage committer thread panicked");
            }
        }
    }
}

impl Backend for RedbBackend {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let txn = self.db.begin_read().map_err(backend_err)?;
        let table = txn.open_table(ENTRIES).map_err(backend_err)?;
        let value = table.get(key).map_err(backend_err)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    fn scan(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let txn = self.db.begin_read().map_err(backend_err)?;
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
    }

    /// Queues the batch for the next group commit and blocks until that commit is
    /// durable (or failed).
    fn batch(&self, ops: Vec<BatchOp>) -> Result<(), StorageError> {
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
}
