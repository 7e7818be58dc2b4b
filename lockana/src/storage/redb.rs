//! The embedded default: one redb file. Each batch is one write transaction with
//! immediate durability and two-phase commit, so a write is on disk before it returns.

use std::path::Path;

use redb::{Database, DatabaseError, Durability, ReadableDatabase, TableDefinition};

use super::{Backend, BatchOp};
use crate::StorageError;

const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entries");

pub(crate) struct RedbBackend {
    db: Database,
}

fn backend_err(e: impl std::fmt::Display) -> StorageError {
    StorageError::Backend(e.to_string())
}

impl RedbBackend {
    pub(crate) fn open(path: &Path) -> Result<Self, StorageError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(backend_err)?;
        }
        let db = Database::create(path).map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => StorageError::AlreadyOpen,
            other => backend_err(other),
        })?;
        let backend = RedbBackend { db };
        // Create the table up front so readers never see "table does not exist".
        backend.batch(Vec::new())?;
        Ok(backend)
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

    fn batch(&self, ops: Vec<BatchOp>) -> Result<(), StorageError> {
        let mut txn = self.db.begin_write().map_err(backend_err)?;
        txn.set_durability(Durability::Immediate)
            .map_err(backend_err)?;
        txn.set_two_phase_commit(true);
        {
            let mut table = txn.open_table(ENTRIES).map_err(backend_err)?;
            for op in &ops {
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
        txn.commit().map_err(backend_err)
    }

    fn kind(&self) -> &'static str {
        "redb"
    }
}
