//! Login MFA with TOTP, as Vault does it: TOTP methods (`identity/mfa/method/totp`),
//! per-entity seeds (`admin-generate`, `generate`, `admin-destroy`), login
//! enforcements (`identity/mfa/login-enforcement/<name>`), and the two ways to pass
//! a login that an enforcement applies to — the `X-Vault-MFA: <method>:<code>`
//! header on the login itself, or the login's `mfa_requirement` answered at
//! `sys/mfa/validate`.
//!
//! A login an enforcement applies to never yields a token without a valid code: the
//! token is minted only after every matching enforcement is satisfied. Codes work
//! once: the last accepted time step per (method, entity) is stored behind the
//! barrier (OpenBao remembers used codes in memory for a few periods), so a code of
//! that step or an older one is refused, also after a restart.
//!
//! Storage (behind the barrier):
//! - `identity/mfa/method/<id>`: a TOTP method's settings;
//! - `identity/mfa/secret/<method id>/<entity id>`: an entity's seed for a method,
//!   with the parameters it was made with (never returned after `generate`);
//! - `identity/mfa/used/<method id>/<entity id>`: the last accepted time step;
//! - `identity/mfa/enforcement/<name>`: a login enforcement.
//!
//! In memory: pending two-step logins (5 minutes) and the per (method, entity)
//! attempt counters; both are dropped at seal.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::{Entity, get_json, opt_str, put_op};
use crate::auth::LoginGrant;
use crate::auth::token::TokenEntry;
use crate::barrier::Op;
use crate::kv::{opt_duration, opt_u64};
use crate::mounts::MountEntry;
use crate::totp::code;
use crate::vault::Core;
use crate::{Auth, Error, Operation, Request, Response, Result};

const METHOD_PREFIX: &str = "identity/mfa/method/";
const SECRET_PREFIX: &str = "identity/mfa/secret/";
const USED_PREFIX: &str = "identity/mfa/used/";
const ENFORCEMENT_PREFIX: &str = "identity/mfa/enforcement/";

/// How long a login waits for `sys/mfa/validate` (Vault: 5 minutes).
const PENDING_TTL: u64 = 300;
/// Most pending logins kept; the oldest go first beyond this.
const MAX_PENDING: usize = 10_000;
/// Vault's default `max_validation_attempts`.
const DEFAULT_MAX_ATTEMPTS: u64 = 5;
/// Seeds: at least RFC 4226's 128 bits, at most what the TOTP engine allows.
const MIN_KEY_SIZE: u64 = 16;
const MAX_KEY_SIZE: u64 = 1024;

const MFA_WARNING: &str = "A login request was issued that is subject to MFA validation. Please make sure to validate the login by sending another request to mfa/validate endpoint.";

/// A TOTP method's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TotpMethod {
    pub id: String,
    pub name: String,
    pub issuer: String,
    pub period: u64,
    pub key_size: u64,
    pub algorithm: String,
    pub digits: u8,
    pub skew: u8,
    pub max_validation_attempts: u64,
    pub qr_size: u64,
}

/// An entity's seed for one method, with the parameters it was generated with.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct EntitySecret {
    key: String,
    period: u64,
    algorithm: String,
    digits: u8,
    skew: u8,
}

/// A login enforcement: which logins need which methods.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Enforcement {
    pub id: String,
    pub name: String,
    pub mfa_method_ids: Vec<String>,
    pub auth_method_accessors: Vec<String>,
    pub auth_method_types: Vec<String>,
    pub identity_group_ids: Vec<String>,
    pub identity_entity_ids: Vec<String>,
}

/// A login waiting for its MFA codes.
struct Pending {
    grant: LoginGrant,
    mount: MountEntry,
    path: String,
    entity_id: String,
    expires: u64,
    failures: u64,
}

/// In-memory MFA state of a vault.
#[derive(Default)]
pub(crate) struct MfaState {
    pending: Mutex<HashMap<String, Pending>>,
    /// (method id, entity id) -> (attempts, end of the window).
    attempts: Mutex<HashMap<(String, String), (u64, u64)>>,
}

impl MfaState {
    /// Forgets pending logins and counters (at seal).
    pub(crate) fn clear(&self) {
        self.pending.lock().clear();
        self.attempts.lock().clear();
    }
}

fn method_key(id: &str) -> String {
    format!("{METHOD_PREFIX}{id}")
}

fn secret_key(method: &str, entity: &str) -> String {
    format!("{SECRET_PREFIX}{method}/{entity}")
}

fn used_key(method: &str, entity: &str) -> String {
    format!("{USED_PREFIX}{method}/{entity}")
}

fn enforcement_key(name: &str) -> String {
    format!("{ENFORCEMENT_PREFIX}{name}")
}

/// Ids are uuids; names are Vault's generic names. Anything else is unknown, so no
/// input reaches a storage path with a `/` in it.
fn is_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn method(core: &Core, id: &str) -> Result<Option<TotpMethod>> {
    if !is_id(id) {
        return Ok(None);
    }
    get_json(core, &method_key(id))
}

fn all_methods(core: &Core) -> Result<Vec<TotpMethod>> {
    let mut out = Vec::new();
    for id in core.barrier.list(METHOD_PREFIX)? {
        if let Some(m) = method(core, &id)? {
            out.push(m);
        }
    }
    Ok(out)
}

fn enforcement(core: &Core, name: &str) -> Result<Option<Enforcement>> {
    if !is_name(name) {
        return Ok(None);
    }
    get_json(core, &enforcement_key(name))
}

fn all_enforcements(core: &Core) -> Result<Vec<Enforcement>> {
    let mut out = Vec::new();
    for name in core.barrier.list(ENFORCEMENT_PREFIX)? {
        if let Some(e) = enforcement(core, &name)? {
            out.push(e);
        }
    }
    Ok(out)
}

fn method_json(m: &TotpMethod) -> Map<String, Value> {
    crate::sys::obj(json!({
        "type": "totp",
        "id": m.id,
        "name": m.name,
        "namespace_id": "root",
        "namespace_path": "",
        "issuer": m.issuer,
        "period": m.period,
        "digits": m.digits,
        "skew": m.skew,
        "key_size": m.key_size,
        "qr_size": m.qr_size,
        "algorithm": m.algorithm,
        "max_validation_attempts": m.max_validation_attempts,
    }))
}

fn enforcement_json(e: &Enforcement) -> Map<String, Value> {
    crate::sys::obj(json!({
        "id": e.id,
        "name": e.name,
        "namespace_id": "root",
        "namespace_path": "",
        "mfa_method_ids": e.mfa_method_ids,
        "auth_method_accessors": e.auth_method_accessors,
        "auth_method_types": e.auth_method_types,
        "identity_group_ids": e.identity_group_ids,
        "identity_entity_ids": e.identity_entity_ids,
    }))
}

fn identity_response(data: Map<String, Value>) -> Response {
    let mut r = Response::with_data(data);
    r.mount_type = "identity".into();
    r
}

fn list_with_info(info: Map<String, Value>) -> Result<Response> {
    if info.is_empty() {
        return Err(Error::NotFound);
    }
    let keys: Vec<String> = info.keys().cloned().collect();
    Ok(identity_response(crate::sys::obj(
        json!({"keys": keys, "key_info": info}),
    )))
}

/// Serves `identity/mfa/...`; `p` is the path after `identity/mfa/`.
pub(crate) fn handle(core: &Core, req: &Request, p: &str, token: &TokenEntry) -> Result<Response> {
    let op = req.operation;
    let write = matches!(op, Operation::Update | Operation::Create);
    let p = p.trim_end_matches('/');
    match (p, op) {
        ("method", Operation::List) | ("method/totp", Operation::List) => {
            let mut info = Map::new();
            for m in all_methods(core)? {
                info.insert(m.id.clone(), Value::Object(method_json(&m)));
            }
            list_with_info(info)
        }
        ("method/totp", _) if write => write_method(core, None, &req.data),
        ("method/totp/admin-generate", _) if write => {
            let entity_id = opt_str(&req.data, "entity_id")?;
            generate(core, &opt_str(&req.data, "method_id")?, &entity_id)
        }
        ("method/totp/generate", _) if write => {
            generate(core, &opt_str(&req.data, "method_id")?, &token.entity_id)
        }
        ("method/totp/admin-destroy", _) if write => admin_destroy(core, &req.data),
        ("login-enforcement", Operation::List) => {
            let mut info = Map::new();
            for e in all_enforcements(core)? {
                info.insert(e.name.clone(), Value::Object(enforcement_json(&e)));
            }
            list_with_info(info)
        }
        _ => {
            if let Some(id) = p.strip_prefix("method/totp/") {
                return match op {
                    Operation::Read => read_method(core, id),
                    Operation::Update | Operation::Create => {
                        write_method(core, Some(id), &req.data)
                    }
                    Operation::Delete => delete_method(core, id),
                    _ => Err(Error::UnsupportedOperation),
                };
            }
            if let Some(id) = p.strip_prefix("method/")
                && !id.contains('/')
            {
                return match op {
                    Operation::Read => read_method(core, id),
                    _ => Err(Error::UnsupportedOperation),
                };
            }
            if let Some(name) = p.strip_prefix("login-enforcement/") {
                return match op {
                    Operation::Read => {
                        let e = enforcement(core, name)?.ok_or(Error::NotFound)?;
                        Ok(identity_response(enforcement_json(&e)))
                    }
                    Operation::Update | Operation::Create => {
                        write_enforcement(core, name, &req.data)
                    }
                    Operation::Delete => {
                        if is_name(name) {
                            core.barrier
                                .apply(vec![Op::Delete(enforcement_key(name))])?;
                        }
                        Ok(Response::empty())
                    }
                    _ => Err(Error::UnsupportedOperation),
                };
            }
            Err(Error::NoRoute(req.path.clone()))
        }
    }
}

fn read_method(core: &Core, id: &str) -> Result<Response> {
    let m = method(core, id)?.ok_or(Error::NotFound)?;
    Ok(identity_response(method_json(&m)))
}

/// Creates (`id` None) or replaces a TOTP method. As in Vault, an update takes every
/// setting from the request, with the defaults for those left out.
fn write_method(core: &Core, id: Option<&str>, d: &Map<String, Value>) -> Result<Response> {
    let name = opt_str(d, "method_name")?;
    let _guard = core.locks.lock(METHOD_PREFIX);
    let existing = match id {
        Some(id) => Some(method(core, id)?.ok_or(Error::NotFound)?),
        None => None,
    };
    let mut target = existing.clone();
    if !name.is_empty()
        && let Some(named) = all_methods(core)?.into_iter().find(|m| m.name == name)
    {
        match &target {
            Some(t) if t.id != named.id => {
                return Err(Error::invalid(format!(
                    "a login MFA method configuration with the method name {name} already exists"
                )));
            }
            Some(_) => {}
            None => target = Some(named),
        }
    }
    let algorithm = match opt_str(d, "algorithm")?.as_str() {
        "" => "SHA1".to_owned(),
        a if code::algorithm(a).is_some() => a.to_owned(),
        _ => return Err(Error::invalid("unrecognized algorithm")),
    };
    let digits: u8 = match opt_u64(d, "digits")?.unwrap_or(6) {
        6 => 6,
        8 => 8,
        _ => return Err(Error::invalid("digits can only be 6 or 8")),
    };
    let period = opt_duration(d, "period")?.unwrap_or(30);
    if period == 0 {
        return Err(Error::invalid("period must be greater than zero"));
    }
    let skew: u8 = match opt_u64(d, "skew")?.unwrap_or(1) {
        0 => 0,
        1 => 1,
        _ => return Err(Error::invalid("skew must be 0 or 1")),
    };
    let key_size = opt_u64(d, "key_size")?.unwrap_or(20);
    if key_size == 0 {
        return Err(Error::invalid("key_size must be greater than zero"));
    }
    if !(MIN_KEY_SIZE..=MAX_KEY_SIZE).contains(&key_size) {
        return Err(Error::invalid(format!(
            "key_size must be between {MIN_KEY_SIZE} and {MAX_KEY_SIZE} bytes (at least 128 bits)"
        )));
    }
    let issuer = opt_str(d, "issuer")?;
    if issuer.is_empty() {
        return Err(Error::invalid("issuer must be set"));
    }
    let max_validation_attempts = match opt_u64(d, "max_validation_attempts")? {
        None | Some(0) => DEFAULT_MAX_ATTEMPTS,
        Some(n) => n,
    };
    let qr_size = opt_u64(d, "qr_size")?.unwrap_or(200);
    if qr_size > u64::from(crate::totp::qr::MAX_SIZE) {
        return Err(Error::invalid(format!(
            "qr_size must be at most {}",
            crate::totp::qr::MAX_SIZE
        )));
    }
    let (id, old_name) = match &target {
        Some(t) => (t.id.clone(), t.name.clone()),
        None => (uuid::Uuid::new_v4().to_string(), String::new()),
    };
    let m = TotpMethod {
        id,
        name: if name.is_empty() { old_name } else { name },
        issuer,
        period,
        key_size,
        algorithm,
        digits,
        skew,
        max_validation_attempts,
        qr_size,
    };
    core.barrier.apply(vec![put_op(method_key(&m.id), &m)?])?;
    if existing.is_none() {
        return Ok(identity_response(crate::sys::obj(
            json!({"method_id": m.id}),
        )));
    }
    Ok(Response::empty())
}

fn delete_method(core: &Core, id: &str) -> Result<Response> {
    let _guard = core.locks.lock(METHOD_PREFIX);
    if method(core, id)?.is_none() {
        return Ok(Response::empty());
    }
    if let Some(e) = all_enforcements(core)?
        .into_iter()
        .find(|e| e.mfa_method_ids.iter().any(|m| m == id))
    {
        return Err(Error::invalid(format!(
            "methodID is still used by an enforcement configuration with ID: {}",
            e.id
        )));
    }
    let mut ops = vec![Op::Delete(method_key(id))];
    for prefix in [SECRET_PREFIX, USED_PREFIX] {
        for key in core.barrier.scan(&format!("{prefix}{id}/"))? {
            ops.push(Op::Delete(key));
        }
    }
    core.barrier.apply(ops)?;
    Ok(Response::empty())
}

/// `admin-generate` and `generate`: a new seed for (method, entity), returned once as
/// an otpauth URL and a QR code. An entity that already has one gets a warning and no
/// seed, as in Vault.
fn generate(core: &Core, method_id: &str, entity_id: &str) -> Result<Response> {
    if method_id.is_empty() {
        return Err(Error::invalid("missing method ID"));
    }
    if entity_id.is_empty() {
        return Err(Error::invalid("missing entityID"));
    }
    let m = method(core, method_id)?.ok_or_else(|| {
        Error::invalid(format!(
            "configuration for method ID \"{method_id}\" does not exist"
        ))
    })?;
    let e = super::entity(core, entity_id)?.ok_or_else(|| Error::invalid("invalid entity ID"))?;
    let skey = secret_key(&m.id, &e.id);
    let _guard = core.locks.lock(&skey);
    if core.barrier.get(&skey)?.is_some() {
        let mut r = Response::empty();
        r.warnings.push(format!(
            "Entity already has a secret for MFA method \"{}\"",
            m.name
        ));
        return Ok(r);
    }
    let mut seed = Zeroizing::new(vec![0u8; usize::try_from(m.key_size).unwrap_or(20)]);
    crate::barrier::random_fill(&mut seed)?;
    let secret = EntitySecret {
        key: code::encode_base32(&seed),
        period: m.period,
        algorithm: m.algorithm.clone(),
        digits: m.digits,
        skew: m.skew,
    };
    let url = crate::totp::otpauth_url(
        &m.issuer,
        &e.id,
        &secret.key,
        &m.algorithm,
        m.digits,
        m.period,
    )?;
    let barcode = if m.qr_size > 0 {
        crate::totp::qr::png_base64(&url, u32::try_from(m.qr_size).unwrap_or(200))?
    } else {
        String::new()
    };
    core.barrier.apply(vec![
        put_op(skey, &secret)?,
        Op::Delete(used_key(&m.id, &e.id)),
    ])?;
    Ok(identity_response(crate::sys::obj(
        json!({"url": *url, "barcode": barcode}),
    )))
}

fn admin_destroy(core: &Core, d: &Map<String, Value>) -> Result<Response> {
    let method_id = opt_str(d, "method_id")?;
    if method_id.is_empty() {
        return Err(Error::invalid("missing method ID"));
    }
    let entity_id = opt_str(d, "entity_id")?;
    if entity_id.is_empty() {
        return Err(Error::invalid("missing entity ID"));
    }
    let e = super::entity(core, &entity_id)?.ok_or_else(|| Error::invalid("invalid entity ID"))?;
    let m = method(core, &method_id)?.ok_or_else(|| {
        Error::invalid(format!(
            "configuration for method ID \"{method_id}\" does not exist"
        ))
    })?;
    core.barrier.apply(vec![
        Op::Delete(secret_key(&m.id, &e.id)),
        Op::Delete(used_key(&m.id, &e.id)),
    ])?;
    Ok(Response::empty())
}

fn write_enforcement(core: &Core, name: &str, d: &Map<String, Value>) -> Result<Response> {
    if !is_name(name) {
        return Err(Error::invalid(
            "invalid login enforcement name: use letters, digits, '-', '_' and '.'",
        ));
    }
    let _guard = core.locks.lock(ENFORCEMENT_PREFIX);
    let mut e = enforcement(core, name)?.unwrap_or_else(|| Enforcement {
        id: uuid::Uuid::new_v4().to_string(),
        name: name.to_owned(),
        ..Default::default()
    });
    let list = |n: &str| crate::auth::opt_strings(d, n);
    let Some(ids) = list("mfa_method_ids")? else {
        return Err(Error::invalid("missing method ids"));
    };
    for id in &ids {
        if method(core, id)?.is_none() {
            return Err(Error::invalid(
                "one of the provided method ids doesn't exist",
            ));
        }
    }
    e.mfa_method_ids = ids;
    let mut scoped = false;
    if let Some(accessors) = list("auth_method_accessors")? {
        let mounts = core.auth_mounts.read();
        if !accessors
            .iter()
            .all(|a| mounts.entries().iter().any(|m| &m.accessor == a))
        {
            return Err(Error::invalid(
                "one of the auth method accessors provided is invalid",
            ));
        }
        e.auth_method_accessors = accessors;
        scoped = true;
    }
    if let Some(types) = list("auth_method_types")? {
        let mounts = core.auth_mounts.read();
        if !types
            .iter()
            .all(|t| mounts.entries().iter().any(|m| &m.kind == t))
        {
            return Err(Error::invalid(
                "one of the auth method types provided is invalid",
            ));
        }
        e.auth_method_types = types;
        scoped = true;
    }
    if let Some(groups) = list("identity_group_ids")? {
        // Lockana has no identity groups yet, so no group id exists.
        if !groups.is_empty() {
            return Err(Error::invalid(
                "one of the provided group ids doesn't exist",
            ));
        }
        e.identity_group_ids = groups;
        scoped = true;
    }
    if let Some(entities) = list("identity_entity_ids")? {
        for id in &entities {
            if super::entity(core, id)?.is_none() {
                return Err(Error::invalid(
                    "one of the provided entity ids doesn't exist",
                ));
            }
        }
        e.identity_entity_ids = entities;
        scoped = true;
    }
    if !scoped {
        return Err(Error::invalid(
            "One of auth_method_accessors, auth_method_types, identity_group_ids, identity_entity_ids must be specified",
        ));
    }
    core.barrier
        .apply(vec![put_op(enforcement_key(name), &e)?])?;
    Ok(Response::empty())
}

// --------------------------------------------------------------------------- login

/// What a login an auth method accepted may get.
pub(crate) enum LoginCheck {
    /// No enforcement applies, or the `X-Vault-MFA` codes satisfied them all: mint
    /// the token (with these warnings).
    Issue(Vec<String>),
    /// An enforcement applies and no code came with the login: this answer carries
    /// the `mfa_requirement`, and the login waits for `sys/mfa/validate`.
    Required(Box<Response>),
}

/// The enforcements that apply to a login on `mount` by `entity_id`.
fn matching(core: &Core, mount: &MountEntry, entity_id: &str) -> Result<Vec<Enforcement>> {
    Ok(all_enforcements(core)?
        .into_iter()
        .filter(|e| {
            e.identity_entity_ids.iter().any(|id| id == entity_id)
                || e.auth_method_accessors.contains(&mount.accessor)
                || e.auth_method_types.contains(&mount.kind)
        })
        .collect())
}

/// Decides whether a login the auth method accepted gets its token now.
pub(crate) fn check_login(
    core: &Core,
    mount: &MountEntry,
    req: &Request,
    grant: &LoginGrant,
    entity: &Entity,
) -> Result<LoginCheck> {
    let enforcements = matching(core, mount, &entity.id)?;
    if enforcements.is_empty() {
        let mut warnings = Vec::new();
        if !req.mfa.is_empty() {
            warnings.push("Found MFA header but failed to find MFA Enforcement Config".into());
        }
        return Ok(LoginCheck::Issue(warnings));
    }
    if !req.mfa.is_empty() {
        let creds = header_creds(core, &req.mfa)?;
        let mut passed = BTreeSet::new();
        for e in &enforcements {
            if !satisfies(core, e, &entity.id, &creds, &mut passed)? {
                tracing::info!(mount = %mount.path, enforcement = %e.name, "login MFA failed");
                return Err(Error::PermissionDenied);
            }
        }
        return Ok(LoginCheck::Issue(Vec::new()));
    }
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut constraints = Map::new();
    for e in &enforcements {
        let mut any = Vec::new();
        for id in &e.mfa_method_ids {
            let mut c = json!({"type": "totp", "id": id, "uses_passcode": true});
            // As Vault: `name` only for a named method.
            if let Some(name) = method(core, id)?.map(|m| m.name).filter(|n| !n.is_empty()) {
                c["name"] = json!(name);
            }
            any.push(c);
        }
        constraints.insert(e.name.clone(), json!({"any": any}));
    }
    let now = core.unix_now();
    {
        let mut pending = core.mfa.pending.lock();
        pending.retain(|_, p| p.expires > now);
        if pending.len() >= MAX_PENDING
            && let Some(oldest) = pending
                .iter()
                .min_by_key(|(_, p)| p.expires)
                .map(|(k, _)| k.clone())
        {
            pending.remove(&oldest);
        }
        pending.insert(
            request_id.clone(),
            Pending {
                grant: grant.clone(),
                mount: mount.clone(),
                path: req.path.clone(),
                entity_id: entity.id.clone(),
                expires: now + PENDING_TTL,
                failures: 0,
            },
        );
    }
    let mut r = Response::empty();
    r.auth = Some(Auth {
        mfa_requirement: Some(json!({
            "mfa_request_id": request_id,
            "mfa_constraints": constraints,
        })),
        ..Default::default()
    });
    r.warnings.push(MFA_WARNING.into());
    r.mount_type = mount.kind.clone();
    Ok(LoginCheck::Required(Box::new(r)))
}

/// Method id -> passcodes from `X-Vault-MFA` values (`<method id or name>:<code>`).
fn header_creds(core: &Core, values: &[String]) -> Result<BTreeMap<String, Vec<String>>> {
    let methods = all_methods(core)?;
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for v in values {
        let (who, code) = v.split_once(':').unwrap_or((v.as_str(), ""));
        let id = methods
            .iter()
            .find(|m| m.id == who || (!m.name.is_empty() && m.name == who))
            .map_or_else(|| who.to_owned(), |m| m.id.clone());
        out.entry(id).or_default().push(code.to_owned());
    }
    Ok(out)
}

/// Whether the credentials satisfy an enforcement: a valid code for any one of its
/// methods.
fn satisfies(
    core: &Core,
    e: &Enforcement,
    entity_id: &str,
    creds: &BTreeMap<String, Vec<String>>,
    passed: &mut BTreeSet<String>,
) -> Result<bool> {
    for id in &e.mfa_method_ids {
        // One code answers every enforcement that names its method; checking it
        // again would refuse it as a replay.
        if passed.contains(id) {
            return Ok(true);
        }
        let Some(passcodes) = creds.get(id) else {
            continue;
        };
        let Some(m) = method(core, id)? else {
            continue;
        };
        if check_totp(core, &m, entity_id, passcodes)? {
            passed.insert(id.clone());
            return Ok(true);
        }
    }
    Ok(false)
}

/// One passcode (`123456` or `passcode=123456`); several or none is no credential.
fn passcode(passcodes: &[String]) -> Option<&str> {
    let mut found = None;
    for p in passcodes.iter().filter(|p| !p.is_empty()) {
        if found.is_some() {
            return None;
        }
        found = Some(p.strip_prefix("passcode=").unwrap_or(p));
    }
    found.filter(|p| !p.is_empty())
}

/// Checks a TOTP code for (method, entity): at most `max_validation_attempts`
/// attempts per period, a code of the current window, newer than the last accepted
/// one. Every failure is the same `false`.
fn check_totp(core: &Core, m: &TotpMethod, entity_id: &str, passcodes: &[String]) -> Result<bool> {
    let Some(given) = passcode(passcodes) else {
        return Ok(false);
    };
    let Some(secret) = get_json::<EntitySecret>(core, &secret_key(&m.id, entity_id))? else {
        tracing::info!(method = %m.id, "login MFA: the entity has no TOTP secret for the method");
        return Ok(false);
    };
    let Some(given) = code::normalize(given, usize::from(secret.digits)) else {
        return Ok(false);
    };
    let now = core.unix_now();
    let counter = (m.id.clone(), entity_id.to_owned());
    {
        let mut attempts = core.mfa.attempts.lock();
        attempts.retain(|_, (_, end)| *end > now);
        let slot = attempts
            .entry(counter.clone())
            .or_insert((0, now + secret.period.max(1)));
        slot.0 += 1;
        if slot.0 > m.max_validation_attempts {
            tracing::info!(method = %m.id, "login MFA: too many attempts");
            return Ok(false);
        }
    }
    let seed = code::decode_base32(&secret.key).ok_or(crate::StorageError::Corrupt)?;
    let alg = code::algorithm(&secret.algorithm).ok_or(crate::StorageError::Corrupt)?;
    let totp = code::generator(&seed, alg, secret.digits, secret.period);
    let Some(step) = code::matching_step(&totp, &given, now, u64::from(secret.skew)) else {
        return Ok(false);
    };
    let ukey = used_key(&m.id, entity_id);
    let _guard = core.locks.lock(&ukey);
    let last: Option<u64> = get_json(core, &ukey)?;
    if !code::is_fresh(step, last) {
        return Ok(false);
    }
    core.barrier.apply(vec![put_op(ukey, &step)?])?;
    core.mfa.attempts.lock().remove(&counter);
    Ok(true)
}

/// `sys/mfa/validate`: served without a token, like a login. A wrong code leaves the
/// pending login in place until `max_validation_attempts` failures (of the strictest
/// method) or its 5 minutes are spent.
pub(crate) fn validate(core: &Core, req: &Request) -> Result<Response> {
    let d = &req.data;
    let request_id = opt_str(d, "mfa_request_id")?;
    if request_id.is_empty() {
        return Err(Error::invalid("missing request ID"));
    }
    let creds = match d.get("mfa_payload") {
        None | Some(Value::Null) => return Err(Error::invalid("missing mfa payload")),
        Some(Value::Object(m)) => {
            let mut out = BTreeMap::new();
            for (k, v) in m {
                let codes = match v {
                    Value::Array(a) => a
                        .iter()
                        .map(|c| c.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>(),
                    _ => None,
                };
                out.insert(
                    k.clone(),
                    codes.ok_or_else(|| Error::invalid("invalid mfa payload"))?,
                );
            }
            out
        }
        Some(_) => return Err(Error::invalid("invalid mfa payload")),
    };
    let now = core.unix_now();
    // Taken out while checking, so two validations of one login never both succeed.
    let pending = core.mfa.pending.lock().remove(&request_id);
    let Some(mut p) = pending.filter(|p| p.expires > now) else {
        return Err(Error::invalid("invalid request ID"));
    };
    let enforcements = matching(core, &p.mount, &p.entity_id)?;
    let mut ok = !enforcements.is_empty();
    let mut max_attempts = DEFAULT_MAX_ATTEMPTS;
    let mut passed = BTreeSet::new();
    for e in &enforcements {
        for id in &e.mfa_method_ids {
            if let Some(m) = method(core, id)? {
                max_attempts = max_attempts.min(m.max_validation_attempts);
            }
        }
        if ok && !satisfies(core, e, &p.entity_id, &creds, &mut passed)? {
            ok = false;
        }
    }
    if !ok {
        p.failures += 1;
        if p.failures < max_attempts {
            core.mfa.pending.lock().insert(request_id, p);
        }
        return Err(Error::PermissionDenied);
    }
    core.issue_login_token(&p.mount, &p.path, p.grant, &p.entity_id, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passcode_takes_one_code() {
        let v = |s: &[&str]| s.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(passcode(&v(&["123456"])), Some("123456"));
        assert_eq!(passcode(&v(&["passcode=123456"])), Some("123456"));
        assert_eq!(passcode(&v(&["", "123456"])), Some("123456"));
        assert_eq!(passcode(&v(&["1", "2"])), None);
        assert_eq!(passcode(&v(&[])), None);
        assert_eq!(passcode(&v(&["passcode="])), None);
    }

    #[test]
    fn storage_names_never_carry_a_slash() {
        assert!(is_id("0b5d1d6e-0c5e-4a53-9a4f-2d3f1c6b7e8a"));
        assert!(!is_id("../x"));
        assert!(!is_id("a/b"));
        assert!(is_name("require-totp.v1"));
        assert!(!is_name("a/b"));
        assert!(!is_name(""));
    }
}
