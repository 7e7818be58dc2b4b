//! An in-memory backend for dev mode and tests.

use std::collections::BTreeMap;

use parking_lot::RwLock;

use super::{Backend, BatchOp};
use crate::StorageError;

#[derive(Default)]
pub(crate) struct MemoryBackend {
    map: RwLock<BTreeMap<String, Vec<u8>>>,
}

impl Backend for MemoryBackend {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.map.read().get(key).cloned())
    }

    fn scan(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let map = self.map.read();
        Ok(map
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect())
    }

    fn batch(&self, ops: Vec<BatchOp>) -> Result<(), StorageError> {
        let mut map = self.map.write();
        for op in ops {
            match op {
                BatchOp::Put(k, v) => {
                    map.insert(k, v);
                }
                BatchOp::Delete(k) => {
                    map.remove(&k);
                }
                BatchOp::Clear => map.clear(),
            }
        }
        Ok(())
    }

    fn entries(&self) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        Ok(self
            .map
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn kind(&self) -> &'static str {
        "inmem"
    }
}
