//! `sys/rekey/{init,update,verify,backup}`: new unseal key shares for the same root
//! key. A quorum of the current shares authorizes it; with `require_verification`
//! the new shares must be entered once before they replace the old ones. The switch
//! is one durable commit (see `Barrier::install_unseal_key`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::obj;
use super::operator::{already_given, new_nonce, nonce_from, share_from};
use crate::barrier::Share;
use crate::kv::{opt_bool, opt_u64};
use crate::vault::Core;
use crate::{Error, Operation, Request, Response, Result};

/// A rekey in progress. No `Debug`: it holds shares and, once generated, the new key.
pub(crate) struct Rekey {
    nonce: String,
    shares: u8,
    threshold: u8,
    verification_required: bool,
    /// Current-key shares entered so far.
    progress: Vec<Share>,
    /// Set once the new key exists and waits for verification.
    verification: Option<Verification>,
}

struct Verification {
    nonce: String,
    key: Zeroizing<[u8; 32]>,
    progress: Vec<Share>,
}

/// Vault's bare JSON (`sys/rekey/*`, served without a token) or OpenBao's logical
/// envelope (`sys/rotate/root/*`, which `bao operator rotate-keys` calls with one).
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Shape {
    Bare,
    Envelope,
}

/// Vault's `sys/rekey` wording or OpenBao's `sys/rotate/root` wording.
fn text(shape: Shape, bare: &'static str, envelope: &'static str) -> &'static str {
    match shape {
        Shape::Bare => bare,
        Shape::Envelope => envelope,
    }
}

fn answer(m: Map<String, Value>, shape: Shape) -> Response {
    match shape {
        Shape::Bare => Response::raw(m),
        Shape::Envelope => super::sys_response(m),
    }
}

/// `rest` is the path after `sys/rekey/` (or `sys/rotate/root/`); the vault is
/// initialized and unsealed.
pub(super) fn handle(core: &Core, req: &Request, rest: &str, shape: Shape) -> Result<Response> {
    if shape == Shape::Envelope
        && matches!(req.operation, Operation::Create | Operation::Update)
        && matches!(rest, "update" | "verify")
    {
        let missing = |n: &str| {
            req.data
                .get(n)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        };
        if missing("key") {
            return Err(Error::invalid("missing required field 'key'"));
        }
        if missing("nonce") {
            return Err(Error::invalid("missing required field 'nonce'"));
        }
    }
    if shape == Shape::Envelope
        && rest == "verify"
        && req.operation == Operation::Read
        && core.operator.rekey.lock().is_none()
    {
        return Err(Error::invalid("no rotation configuration found"));
    }
    let r = handle_inner(core, req, rest, shape)?;
    Ok(match (r.data, shape) {
        (Some(m), Shape::Envelope) => answer(m, shape),
        (data, _) => Response { data, ..r },
    })
}

fn handle_inner(core: &Core, req: &Request, rest: &str, shape: Shape) -> Result<Response> {
    match (rest, req.operation) {
        ("init", Operation::Read) => Ok(Response::raw(status(core, shape)?)),
        ("init", Operation::Create | Operation::Update) => init(core, &req.data, shape),
        ("init", Operation::Delete) => {
            *core.operator.rekey.lock() = None;
            Ok(Response::empty())
        }
        ("update", Operation::Create | Operation::Update) => update(core, &req.data, shape),
        ("verify", Operation::Read) => verify_status(core).map(Response::raw),
        ("verify", Operation::Create | Operation::Update) => verify(core, &req.data, shape),
        ("verify", Operation::Delete) => {
            if let Some(v) = core
                .operator
                .rekey
                .lock()
                .as_mut()
                .and_then(|r| r.verification.as_mut())
            {
                v.progress.clear();
                v.nonce = new_nonce();
            }
            verify_status(core).map(Response::raw)
        }
        _ => Err(Error::UnsupportedOperation),
    }
}

fn required(core: &Core) -> Result<u8> {
    Ok(core
        .barrier
        .seal_config()?
        .ok_or(Error::NotInitialized)?
        .secret_threshold)
}

/// `GET sys/rekey/init`.
fn status(core: &Core, shape: Shape) -> Result<Map<String, Value>> {
    let required = required(core)?;
    let guard = core.operator.rekey.lock();
    if shape == Shape::Envelope {
        let mut m = obj(json!({"started": false, "t": 0, "n": 0, "required": required}));
        if let Some(r) = guard.as_ref() {
            m.insert("nonce".into(), json!(r.nonce));
            m.insert("started".into(), json!(true));
            m.insert("t".into(), json!(r.threshold));
            m.insert("n".into(), json!(r.shares));
            m.insert("progress".into(), json!(r.progress.len()));
            m.insert(
                "verification_required".into(),
                json!(r.verification_required),
            );
            let vn = r
                .verification
                .as_ref()
                .map(|v| v.nonce.clone())
                .unwrap_or_default();
            m.insert("verification_nonce".into(), json!(vn));
        }
        return Ok(m);
    }
    let mut m = obj(json!({
        "nonce": "",
        "started": false,
        "t": 0,
        "n": 0,
        "progress": 0,
        "required": required,
        "pgp_fingerprints": null,
        "backup": false,
        "verification_required": false,
    }));
    if let Some(r) = guard.as_ref() {
        m.insert("nonce".into(), json!(r.nonce));
        m.insert("started".into(), json!(true));
        m.insert("t".into(), json!(r.threshold));
        m.insert("n".into(), json!(r.shares));
        m.insert("progress".into(), json!(r.progress.len()));
        m.insert(
            "verification_required".into(),
            json!(r.verification_required),
        );
        if let Some(v) = &r.verification {
            m.insert("verification_nonce".into(), json!(v.nonce));
        }
    }
    Ok(m)
}

fn small(d: &Map<String, Value>, name: &str) -> Result<u64> {
    Ok(opt_u64(d, name)?.unwrap_or(0))
}

/// Vault's seal-configuration checks, with its texts.
fn validate(shares: u64, threshold: u64, shape: Shape) -> Result<(u8, u8)> {
    let what = text(shape, "rekey", "rotate");
    let bad = |why: &str| Error::invalid(format!("invalid {what} seal configuration: {why}"));
    if shares < 1 {
        return Err(bad("shares must be at least one"));
    }
    if threshold < 1 {
        return Err(bad("threshold must be at least one"));
    }
    if shares > 1 && threshold < 2 {
        return Err(bad(
            "threshold must be greater than one for multiple shares",
        ));
    }
    if shares > 255 {
        return Err(bad("shares must be less than 256"));
    }
    if threshold > 255 {
        return Err(bad("threshold must be less than 256"));
    }
    if threshold > shares {
        return Err(bad("threshold cannot be larger than shares"));
    }
    Ok((shares as u8, threshold as u8))
}

/// `PUT sys/rekey/init`.
fn init(core: &Core, d: &Map<String, Value>, shape: Shape) -> Result<Response> {
    let pgp_keys = match d.get("pgp_keys") {
        None | Some(Value::Null) => 0,
        Some(Value::Array(a)) => a.len(),
        Some(Value::String(s)) => s.split(',').filter(|k| !k.trim().is_empty()).count(),
        Some(_) => return Err(Error::invalid("'pgp_keys' must be a list of strings")),
    };
    let backup = opt_bool(d, "backup")?.unwrap_or(false);
    let verification_required = opt_bool(d, "require_verification")?.unwrap_or(false);
    let shares = small(d, "secret_shares")?;
    let threshold = small(d, "secret_threshold")?;
    if backup && pgp_keys == 0 {
        return Err(Error::invalid(
            "cannot request a backup of the new keys without providing PGP keys for encryption",
        ));
    }
    if pgp_keys > 0 && pgp_keys as u64 != shares {
        return Err(Error::invalid("incorrect number of PGP keys for rekey"));
    }
    if pgp_keys > 0 {
        return Err(Error::invalid(
            "PGP-encrypted key shares are not supported by Lockana; omit pgp_keys and backup",
        ));
    }
    let (shares, threshold) = validate(shares, threshold, shape)?;
    {
        let mut guard = core.operator.rekey.lock();
        if guard.is_some() {
            return Err(Error::invalid(text(
                shape,
                "rekey already in progress",
                "rotation already in progress",
            )));
        }
        *guard = Some(Rekey {
            nonce: new_nonce(),
            shares,
            threshold,
            verification_required,
            progress: Vec::new(),
            verification: None,
        });
    }
    tracing::info!(
        shares,
        threshold,
        verification_required,
        "rekey initialized"
    );
    Ok(Response::raw(status(core, shape)?))
}

/// `PUT sys/rekey/update`: one current share; at the threshold, the new shares.
fn update(core: &Core, d: &Map<String, Value>, shape: Shape) -> Result<Response> {
    let share = share_from(d)?;
    let threshold = required(core)?;
    let mut guard = core.operator.rekey.lock();
    let r = guard.as_mut().ok_or_else(|| {
        Error::invalid(text(
            shape,
            "no barrier rekey in progress",
            "no rotation in progress",
        ))
    })?;
    if let Some(v) = &r.verification {
        return Err(Error::invalid(format!(
            "{} already finished; verification must be performed; nonce for the verification operation is \"{}\"",
            text(shape, "rekey operation", "rotation"),
            v.nonce
        )));
    }
    if nonce_from(d) != r.nonce {
        return Err(Error::invalid(format!(
            "incorrect nonce supplied; nonce for {} is \"{}\"",
            text(shape, "this rekey operation", "rotation"),
            r.nonce
        )));
    }
    if already_given(&r.progress, &share) {
        return Err(Error::invalid(text(
            shape,
            "given key has already been provided during this generation operation",
            "given key has already been provided during this rotation",
        )));
    }
    r.progress.push(share);
    if r.progress.len() < usize::from(threshold) {
        drop(guard);
        return Ok(Response::raw(status(core, shape)?));
    }
    let given = std::mem::take(&mut r.progress);
    let right = match core.barrier.combine_shares(&given, threshold) {
        Ok(key) => core.barrier.verify_unseal_key(&key)?,
        Err(_) => false,
    };
    if !right {
        return Err(Error::invalid(
            "rekey aborted: the unseal key shares did not combine into the current unseal key; progress was reset",
        ));
    }
    let new = core.barrier.new_unseal_key(r.shares, r.threshold)?;
    let mut m = obj(json!({
        "nonce": r.nonce,
        "complete": true,
        "keys": new.shares.iter().map(|k| hex::encode(&k[..])).collect::<Vec<_>>(),
        "keys_base64": new.shares.iter().map(|k| B64.encode(&k[..])).collect::<Vec<_>>(),
        "pgp_fingerprints": null,
        "backup": false,
        "verification_required": r.verification_required,
    }));
    if r.verification_required {
        let nonce = new_nonce();
        m.insert("verification_nonce".into(), json!(nonce));
        r.verification = Some(Verification {
            nonce,
            key: new.key,
            progress: Vec::new(),
        });
        return Ok(Response::raw(m));
    }
    let (shares, threshold) = (r.shares, r.threshold);
    *guard = None;
    drop(guard);
    install(core, &new.key, shares, threshold)?;
    Ok(Response::raw(m))
}

/// Commits a new unseal key, serialized with seal and unseal.
fn install(core: &Core, key: &[u8; 32], shares: u8, threshold: u8) -> Result<()> {
    let _l = core.lifecycle.lock();
    if core.barrier.is_sealed() {
        return Err(Error::Sealed);
    }
    core.barrier.install_unseal_key(key, shares, threshold)?;
    tracing::info!(shares, threshold, "unseal key replaced by rekey");
    core.emit(crate::notify::Event::new(
        crate::notify::EventKind::UnsealKeysRekeyed,
        core.now(),
    ));
    Ok(())
}

/// `GET sys/rekey/verify`.
fn verify_status(core: &Core) -> Result<Map<String, Value>> {
    let guard = core.operator.rekey.lock();
    let r = guard
        .as_ref()
        .ok_or_else(|| Error::invalid("no rekey configuration found"))?;
    let (nonce, progress) = r
        .verification
        .as_ref()
        .map_or((String::new(), 0), |v| (v.nonce.clone(), v.progress.len()));
    Ok(obj(json!({
        "nonce": nonce,
        "started": r.verification.is_some(),
        "t": r.threshold,
        "n": r.shares,
        "progress": progress,
    })))
}

/// `PUT sys/rekey/verify`: one new share; at the new threshold, the switch.
fn verify(core: &Core, d: &Map<String, Value>, shape: Shape) -> Result<Response> {
    let share = share_from(d)?;
    let mut guard = core.operator.rekey.lock();
    let r = guard.as_mut().ok_or_else(|| {
        Error::invalid(text(
            shape,
            "no rekey in progress",
            "no rotation in progress",
        ))
    })?;
    let threshold = r.threshold;
    let v = r.verification.as_mut().ok_or_else(|| {
        Error::invalid(text(
            shape,
            "no rekey verification in progress",
            "no rotation verification in progress",
        ))
    })?;
    if nonce_from(d) != v.nonce {
        return Err(Error::invalid(format!(
            "incorrect nonce supplied; nonce for this verify operation is \"{}\"",
            v.nonce
        )));
    }
    if already_given(&v.progress, &share) {
        return Err(Error::invalid(
            "given key has already been provided during this verify operation",
        ));
    }
    v.progress.push(share);
    if v.progress.len() < usize::from(threshold) {
        drop(guard);
        return verify_status(core).map(Response::raw);
    }
    let given = std::mem::take(&mut v.progress);
    let matches = core
        .barrier
        .combine_shares(&given, threshold)
        .is_ok_and(|c| subtle::ConstantTimeEq::ct_eq(&c[..], &v.key[..]).into());
    if !matches {
        // A failed attempt starts over under a new nonce, as in Vault.
        v.nonce = new_nonce();
        return Err(Error::invalid(text(
            shape,
            "rekey verification failed; incorrect key shares supplied",
            "rotation verification failed; incorrect key shares supplied",
        )));
    }
    let nonce = v.nonce.clone();
    let key = v.key.clone();
    let shares = r.shares;
    *guard = None;
    drop(guard);
    install(core, &key, shares, threshold)?;
    Ok(Response::raw(obj(
        json!({"nonce": nonce, "complete": true}),
    )))
}

/// `sys/rekey/backup` and `sys/rekey/recovery-key-backup` (authenticated): backups
/// exist only for PGP-encrypted shares, which Lockana does not produce, so there is
/// never one to read — OpenBao's answer when none was stored.
pub(super) fn backup(req: &Request) -> Result<Response> {
    match req.operation {
        Operation::Read => Err(Error::invalid("no backed-up keys found")),
        Operation::Delete => Ok(Response::empty()),
        _ => Err(Error::UnsupportedOperation),
    }
}
