//! `lockana operator verify-storage`: walk every stored entry and check that it
//! decrypts. Online through `sys/storage/verify` (sudo; in chunks so a large store
//! never holds one request open for long), offline through
//! [`Vault::verify_storage`] on a stopped server's storage.

use serde_json::{Map, Value, json};

use super::{obj, sys_response};
use crate::barrier::{Barrier, VerifyChunk, decode_share};
use crate::kv::opt_u64;
use crate::vault::Core;
use crate::{Error, IntegrityError, Operation, Request, Response, Result, StorageConfig, Vault};

/// Entries one `sys/storage/verify` call checks unless asked otherwise.
const DEFAULT_LIMIT: usize = 1000;
/// Most entries one call checks.
const MAX_LIMIT: usize = 10_000;

/// What a storage walk found.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct StorageReport {
    /// Entries in storage.
    pub total: usize,
    /// Entries checked.
    pub checked: usize,
    /// Entries that failed their check, in key order: each names its key and what
    /// failed, never a value.
    pub corrupt: Vec<IntegrityError>,
    /// Why the storage as a whole failed its integrity check at open, if it did.
    pub damage: Option<String>,
}

impl StorageReport {
    /// Whether everything checked out.
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty() && self.damage.is_none()
    }
}

impl Vault {
    /// Test support: the storage key (the backend's row name) a logical key is stored
    /// under, or for a key ending in `/` the stored form of that directory, a prefix
    /// of every row below it. Names are encrypted at rest, so a test that damages rows
    /// finds them through this (integrity errors and verify-storage name the logical
    /// keys). Needs the keyring open, except for the key-hierarchy entries read before
    /// unseal, which keep their names.
    #[doc(hidden)]
    pub fn storage_key(&self, logical: &str) -> Result<String> {
        self.core.barrier.storage_key(logical)
    }

    /// Checks a stopped vault's storage offline: opens it, opens the keyring with the
    /// unseal key shares (hex or base64; at least the threshold, or the whole key when
    /// the threshold is one), and walks every entry. The vault is never unsealed and
    /// nothing is written. `progress(done, total)` is called as the walk goes.
    pub fn verify_storage(
        storage: StorageConfig,
        shares: &[String],
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<StorageReport> {
        let vault = Vault::open(storage)?;
        let barrier = &vault.core.barrier;
        let shares = shares
            .iter()
            .map(|s| decode_share(s))
            .collect::<Result<Vec<_>>>()?;
        let mut report = StorageReport {
            damage: barrier.storage_damage(),
            ..Default::default()
        };
        barrier.open_for_verify(shares)?;
        let walked = walk(barrier, &mut report, progress);
        barrier.seal();
        walked?;
        Ok(report)
    }
}

fn walk(
    barrier: &Barrier,
    report: &mut StorageReport,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<()> {
    let mut after: Option<String> = None;
    loop {
        let chunk: VerifyChunk = match barrier.verify(after.as_deref(), DEFAULT_LIMIT) {
            Ok(c) => c,
            // The key listing itself broke: report it as the storage's damage.
            Err(Error::Integrity(e)) => {
                report.damage.get_or_insert_with(|| e.to_string());
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        report.total = chunk.total;
        report.checked += chunk.checked;
        report.corrupt.extend(chunk.corrupt);
        progress(chunk.position, chunk.total);
        match chunk.next {
            Some(next) => after = Some(next),
            None => return Ok(()),
        }
    }
}

/// `sys/storage/verify` (read or update): one chunk of the walk. `after` is the key
/// the previous chunk ended at (its `next`), `limit` how many entries to check.
pub(crate) fn handle(core: &Core, req: &Request) -> Result<Response> {
    if !matches!(
        req.operation,
        Operation::Read | Operation::Update | Operation::Create
    ) {
        return Err(Error::UnsupportedOperation);
    }
    let d = &req.data;
    let after = match d.get("after") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(Error::invalid("'after' must be a string")),
    };
    let limit = match opt_u64(d, "limit")? {
        None | Some(0) => DEFAULT_LIMIT,
        Some(n) => usize::try_from(n).unwrap_or(MAX_LIMIT).min(MAX_LIMIT),
    };
    let chunk = core.barrier.verify(after, limit)?;
    let corrupt: Vec<Map<String, Value>> = chunk
        .corrupt
        .iter()
        .map(|e| obj(json!({"key": e.key(), "error": e.to_string()})))
        .collect();
    for e in &chunk.corrupt {
        core.report_integrity(&Error::Integrity(e.clone()));
    }
    Ok(sys_response(obj(json!({
        "total": chunk.total,
        "position": chunk.position,
        "checked": chunk.checked,
        "corrupt": corrupt,
        "next": chunk.next,
    }))))
}
