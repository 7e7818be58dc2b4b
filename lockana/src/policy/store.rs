//! Policies kept behind the barrier, with compiled ACLs cached per policy set.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::{Acl, Policy, builtin, normalize_name, parse};
use crate::barrier::Barrier;
use crate::{Error, Result};

const PREFIX: &str = "sys/policy/";

#[derive(Serialize, Deserialize)]
struct Stored {
    name: String,
    raw: String,
}

/// All ACL policies, loaded on unseal.
#[derive(Default)]
pub(crate) struct PolicyStore {
    policies: RwLock<HashMap<String, Arc<Policy>>>,
    acls: RwLock<HashMap<Vec<String>, Arc<Acl>>>,
}

impl PolicyStore {
    /// Loads every stored policy and creates missing built-ins.
    pub(crate) fn load(&self, barrier: &Barrier) -> Result<()> {
        let mut map = HashMap::new();
        for key in barrier.scan(PREFIX)? {
            let Some(bytes) = barrier.get(&key)? else {
                continue;
            };
            let s: Stored = crate::barrier::decode_record(&key, &bytes)?;
            // A stored policy always parsed when written; if a newer parser refuses it,
            // keep the vault usable and log the name.
            match parse(&s.name, &s.raw) {
                Ok(p) => {
                    map.insert(s.name, Arc::new(p));
                }
                Err(_) => {
                    tracing::warn!(policy = %s.name, "stored policy no longer parses; ignored")
                }
            }
        }
        *self.policies.write() = map;
        self.acls.write().clear();
        for (name, raw) in builtin::ALL {
            if self.policies.read().get(name).is_none() {
                self.put(barrier, name, raw)?;
            }
        }
        Ok(())
    }

    pub(crate) fn unload(&self) {
        self.policies.write().clear();
        self.acls.write().clear();
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<Policy>> {
        self.policies.read().get(name).cloned()
    }

    /// Policy names, sorted; `root` included as Vault lists it.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.policies.read().keys().cloned().collect();
        v.push("root".into());
        v.sort();
        v
    }

    pub(crate) fn put(&self, barrier: &Barrier, name: &str, raw: &str) -> Result<()> {
        let name = normalize_name(name)?;
        if name == "root" {
            return Err(Error::invalid("cannot update \"root\" policy"));
        }
        let policy = parse(&name, raw)?;
        let bytes = serde_json::to_vec(&Stored {
            name: name.clone(),
            raw: raw.to_owned(),
        })
        .map_err(|_| crate::StorageError::Corrupt)?;
        barrier.put(&format!("{PREFIX}{name}"), &bytes)?;
        self.policies.write().insert(name, Arc::new(policy));
        self.acls.write().clear();
        Ok(())
    }

    pub(crate) fn delete(&self, barrier: &Barrier, name: &str) -> Result<()> {
        let name = normalize_name(name)?;
        // Vault's texts, quotes and all.
        if name == "root" {
            return Err(Error::invalid("cannot delete \"root\" policy"));
        }
        if name == "default" {
            return Err(Error::invalid("cannot delete default policy"));
        }
        barrier.apply(vec![crate::barrier::Op::Delete(format!("{PREFIX}{name}"))])?;
        self.policies.write().remove(&name);
        self.acls.write().clear();
        Ok(())
    }

    /// The compiled ACL for a set of policy names (unknown names grant nothing).
    pub(crate) fn acl(&self, names: &[String]) -> Arc<Acl> {
        if let Some(a) = self.acls.read().get(names) {
            return a.clone();
        }
        let root = names.iter().any(|n| n == "root");
        let policies = self.policies.read();
        let acl = Arc::new(Acl::for_token(
            names,
            names.iter().filter_map(|n| policies.get(n).map(|p| &**p)),
            root,
        ));
        drop(policies);
        self.acls.write().insert(names.to_vec(), acl.clone());
        acl
    }
}
