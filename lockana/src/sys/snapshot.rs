//! `sys/storage/raft/snapshot` and `snapshot-force`: save and restore snapshots on
//! any backend (Vault serves them on raft storage only), so `bao operator raft
//! snapshot save/restore` and `lockana operator snapshot` work alike. The archive
//! is described in [`crate::snapshot`].

use crate::barrier::REQUIRED_CLEAR_KEYS;
use crate::snapshot;
use crate::vault::Core;
use crate::{Error, Operation, RawBody, Request, Response, Result};

/// OpenBao's answer when the sealed sums do not open (Shamir seals).
const OTHER_VAULT: &str = "could not verify hash file, possibly the snapshot is using a different set of unseal keys; use the snapshot-force API to bypass this check";

/// `rest` is the path after `sys/`.
pub(crate) fn handle(core: &Core, req: &Request, rest: &str) -> Result<Response> {
    match (rest, req.operation) {
        ("storage/raft/snapshot", Operation::Read) => save(core),
        ("storage/raft/snapshot", Operation::Update | Operation::Create) => {
            restore(core, req, false)
        }
        ("storage/raft/snapshot-force", Operation::Update | Operation::Create) => {
            restore(core, req, true)
        }
        _ => Err(Error::UnsupportedOperation),
    }
}

/// Whether `path` (below `/v1/`) takes a snapshot as its raw body.
pub(crate) fn takes_raw_body(path: &str) -> bool {
    matches!(
        path,
        "sys/storage/raft/snapshot" | "sys/storage/raft/snapshot-force"
    )
}

fn save(core: &Core) -> Result<Response> {
    let started = std::time::Instant::now();
    let entries = core.barrier.export()?;
    let bytes = snapshot::write(
        &entries,
        core.barrier.storage_kind(),
        core.unix_now(),
        |sums| core.barrier.seal_snapshot_sums(sums),
    )?;
    tracing::info!(
        entries = entries.len(),
        bytes = bytes.len(),
        millis = started.elapsed().as_millis() as u64,
        "snapshot taken"
    );
    Ok(Response {
        raw_body: Some(RawBody {
            content_type: "application/gzip",
            bytes,
        }),
        ..Default::default()
    })
}

fn restore(core: &Core, req: &Request, force: bool) -> Result<Response> {
    let body = req.raw_body.as_deref().unwrap_or_default();
    // Everything is checked before anything is replaced.
    let archive = snapshot::read(body).map_err(Error::invalid)?;
    if !force && !archive.sealed_by(|sealed| core.barrier.open_snapshot_sums(sealed)) {
        return Err(Error::invalid(OTHER_VAULT));
    }
    if REQUIRED_CLEAR_KEYS.iter().any(|k| archive.get(k).is_none()) {
        return Err(Error::invalid(
            "the snapshot holds no initialized vault (its key hierarchy is missing)",
        ));
    }
    let started = std::time::Instant::now();
    let count = archive.entries.len();
    let unsealed = core.restore_storage(archive.entries)?;
    tracing::info!(
        entries = count,
        from = %archive.meta.storage_type,
        millis = started.elapsed().as_millis() as u64,
        unsealed,
        "snapshot restored"
    );
    Ok(Response::empty())
}
