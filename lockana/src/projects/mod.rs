//! Projects: Lockana's own API on top of Vault's. A project is a named set of
//! variables — the KV v2 secret `<mount>/projects/<name>`, which any Vault client can
//! write — with an owner and a TOTP seed. Its variables are handed out for a one-time
//! code: as a short-lived token (`auth/totp/login`) or directly
//! (`lockana/projects/<name>/env` with `X-Lockana-TOTP`).
//!
//! Storage behind the barrier: `lockana/projects/config/<name>` (the record, with the
//! seed) and `lockana/projects/step/<name>` (the last accepted time step, so a code
//! stays used across restarts). Each project has a policy `lockana-project-<name>`
//! that reads only its secret and its env.

mod access;
mod env;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use zeroize::{Zeroize, ZeroizeOnDrop};

use self::access::{Failure, Purpose};
use crate::auth::token::NewToken;
use crate::totp::{self, code};
use crate::vault::Core;
use crate::{Error, Operation, RawBody, Request, Response, Result};

const CONFIG_PREFIX: &str = "lockana/projects/config/";
const STEP_PREFIX: &str = "lockana/projects/step/";
/// Authenticator apps expect SHA1, 6 digits, 30 s: the project seed uses them.
pub(crate) const DIGITS: usize = 6;
const PERIOD: u64 = 30;
/// One step either side of now, for clock drift and typing time.
pub(crate) const SKEW: u64 = 1;
const SEED_BYTES: usize = 20;
const ISSUER: &str = "Lockana";
const QR_SIZE: u32 = 256;
/// Where project code logins are served; their tokens carry it as their path.
const LOGIN_PATH: &str = "auth/totp/login";
/// Lifetime of a token from `auth/totp/login` (non-renewable).
pub(crate) const LOGIN_TTL: u64 = 15 * 60;
const MAX_NAME: usize = 64;
const MAX_OWNER: usize = 256;
/// The body of `?format=dotenv` answers.
const DOTENV_TYPE: &str = "text/plain; charset=utf-8";

/// A project as stored. Holds the seed: no `Debug`, zeroized on drop.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub(crate) struct ProjectRecord {
    pub name: String,
    pub owner: String,
    /// The KV v2 mount holding the variables, with its trailing slash.
    pub mount: String,
    /// The TOTP seed, base32.
    seed: String,
    pub created_time: String,
    pub totp_rotated_time: String,
}

impl ProjectRecord {
    fn totp(&self) -> Result<totp_rs::Totp> {
        let secret = code::decode_base32(&self.seed).ok_or(crate::StorageError::Corrupt)?;
        Ok(code::generator(
            &secret,
            totp_rs::Algorithm::SHA1,
            DIGITS as u8,
            PERIOD,
        ))
    }

    /// Path of the variables below the mount (`projects/<name>`).
    fn secret_key(&self) -> String {
        format!("projects/{}", self.name)
    }

    fn view(&self) -> Map<String, Value> {
        let mount = self.mount.trim_end_matches('/');
        into_map(json!({
            "name": self.name,
            "owner": self.owner,
            "mount": mount,
            "secret_path": self.secret_key(),
            "api_path": format!("{mount}/data/projects/{}", self.name),
            "policy": policy_name(&self.name),
            "created_time": self.created_time,
            "totp_rotated_time": self.totp_rotated_time,
        }))
    }
}

/// Project names: 1 to 64 of `a-z 0-9 - _`, starting with a letter or digit (they go
/// into KV paths and policy names, which are lower-case).
pub(crate) fn valid_name(name: &str) -> bool {
    name.len() <= MAX_NAME
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn check_name(name: &str) -> Result<()> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(Error::invalid(
            "invalid project name: use 1 to 64 lower-case letters, digits, '-' and '_', starting with a letter or digit",
        ))
    }
}

/// The policy of tokens from `auth/totp/login` for `name`.
pub(crate) fn policy_name(name: &str) -> String {
    format!("lockana-project-{name}")
}

fn config_key(name: &str) -> String {
    format!("{CONFIG_PREFIX}{name}")
}

pub(crate) fn step_key(name: &str) -> String {
    format!("{STEP_PREFIX}{name}")
}

pub(crate) fn load(core: &Core, name: &str) -> Result<Option<ProjectRecord>> {
    match core.barrier.get(&config_key(name))? {
        None => Ok(None),
        Some(b) => Ok(Some(
            serde_json::from_slice(&b).map_err(|_| crate::StorageError::Corrupt)?,
        )),
    }
}

pub(crate) fn last_step(core: &Core, name: &str) -> Result<Option<u64>> {
    match core.barrier.get(&step_key(name))? {
        None => Ok(None),
        Some(b) => Ok(Some(
            std::str::from_utf8(&b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(crate::StorageError::Corrupt)?,
        )),
    }
}

fn store(core: &Core, rec: &ProjectRecord, reset_step: bool) -> Result<()> {
    let bytes = serde_json::to_vec(rec).map_err(|_| crate::StorageError::Corrupt)?;
    let mut ops = vec![crate::barrier::Op::Put(config_key(&rec.name), bytes)];
    if reset_step {
        ops.push(crate::barrier::Op::Delete(step_key(&rec.name)));
    }
    core.barrier.apply(ops)
}

/// A fresh seed and what to show the user once: `otpauth_url` and `barcode`.
fn new_seed(name: &str) -> Result<(String, Map<String, Value>)> {
    let mut raw = zeroize::Zeroizing::new([0u8; SEED_BYTES]);
    crate::barrier::random_fill(&mut raw[..])?;
    let seed = code::encode_base32(&raw[..]);
    let url = totp::otpauth_url(ISSUER, name, &seed, "SHA1", DIGITS as u8, PERIOD)?;
    let mut m = Map::new();
    m.insert(
        "barcode".into(),
        json!(totp::qr::png_base64(&url, QR_SIZE)?),
    );
    m.insert("otpauth_url".into(), json!(*url));
    Ok((seed, m))
}

/// The policy text for a project's login tokens: read its secret and its env, and
/// look up or revoke the token itself.
fn policy_text(rec: &ProjectRecord) -> String {
    let mount = rec.mount.trim_end_matches('/');
    let name = &rec.name;
    format!(
        r#"# Managed by Lockana for project "{name}": tokens from auth/totp/login.
path "{mount}/data/projects/{name}" {{
    capabilities = ["read"]
}}
path "lockana/projects/{name}/env" {{
    capabilities = ["read"]
}}
path "auth/token/lookup-self" {{
    capabilities = ["read"]
}}
path "auth/token/revoke-self" {{
    capabilities = ["update"]
}}
"#
    )
}

/// Creates the project's policy, or rewrites it if it differs.
fn ensure_policy(core: &Core, rec: &ProjectRecord) -> Result<()> {
    let name = policy_name(&rec.name);
    let text = policy_text(rec);
    if core.policies.get(&name).is_some_and(|p| p.raw == text) {
        return Ok(());
    }
    core.policies.put(&core.barrier, &name, &text)
}

fn now_rfc3339(core: &Core) -> String {
    crate::clock::rfc3339(core.now())
}

/// Mount paths allowed for projects: they are written into policy text.
fn mount_for(core: &Core, data: &Map<String, Value>, current: Option<&str>) -> Result<String> {
    let given = match data.get("mount") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(Error::invalid("'mount' must be a string")),
    };
    let path = match (given, current) {
        (Some(m), _) => crate::mounts::normalize_mount_path(m)?,
        (None, Some(c)) => return Ok(c.to_owned()),
        (None, None) => "secret/".to_owned(),
    };
    if !path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
    {
        return Err(Error::invalid(
            "a project's mount path may only hold letters, digits, '-', '_', '.' and '/'",
        ));
    }
    let mounts = core.mounts.read();
    match mounts.get(&path) {
        Some(m) if crate::kv::is_v2(m) => Ok(path),
        _ => Err(Error::invalid(format!(
            "mount \"{path}\" is not a KV version 2 mount: enable one first (vault secrets enable -path={} kv-v2)",
            path.trim_end_matches('/')
        ))),
    }
}

fn owner_from(data: &Map<String, Value>) -> Result<Option<String>> {
    match data.get("owner") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= MAX_OWNER && !s.chars().any(char::is_control) => {
            Ok(Some(s.trim().to_owned()))
        }
        Some(_) => Err(Error::invalid(
            "'owner' must be a string of at most 256 characters, without control characters",
        )),
    }
}

/// Serves `lockana/...` for an authenticated, authorized request; `rest` is the path
/// below `lockana/`.
pub(crate) fn handle(core: &Core, req: &Request, rest: &str) -> Result<Response> {
    let no_route = || Error::NoRoute(req.path.clone());
    let Some(rest) = rest
        .strip_prefix("projects")
        .map(|r| r.strip_prefix('/').unwrap_or(r))
    else {
        return Err(no_route());
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return match req.operation {
            Operation::List => list(core),
            _ => Err(Error::UnsupportedOperation),
        };
    }
    let (name, action) = match rest.split_once('/') {
        Some((n, a)) => (n, Some(a)),
        None => (rest, None),
    };
    match (action, req.operation) {
        (None, Operation::Read) => {
            check_name(name)?;
            let rec = load(core, name)?.ok_or(Error::NotFound)?;
            Ok(Response::with_data(rec.view()))
        }
        (None, Operation::Create | Operation::Update) => write(core, name, &req.data),
        (None, Operation::Delete) => delete(core, name),
        (None, Operation::List) => list(core),
        (Some("rotate-totp"), Operation::Create | Operation::Update) => rotate(core, name),
        (Some("env"), Operation::Read) => {
            check_name(name)?;
            let rec = load(core, name)?.ok_or(Error::NotFound)?;
            let resp = env_response(core, &rec, &req.data)?;
            core.emit(
                crate::notify::Event::new(crate::notify::EventKind::ProjectEnvFetched, core.now())
                    .project(name.to_owned())
                    .path(req.path.clone())
                    .outcome("environment fetched with a token")
                    .connection(&req.connection),
            );
            Ok(resp)
        }
        (None | Some("rotate-totp" | "env"), _) => Err(Error::UnsupportedOperation),
        _ => Err(no_route()),
    }
}

/// Names of the projects whose variables live on `mount` (with its trailing slash):
/// `sys/remount` refuses to move such a mount from under them.
pub(crate) fn names_on_mount(core: &Core, mount: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for name in core.barrier.list(CONFIG_PREFIX)? {
        if load(core, &name)?.is_some_and(|r| r.mount == mount) {
            out.push(name);
        }
    }
    Ok(out)
}

fn list(core: &Core) -> Result<Response> {
    let keys = core.barrier.list(CONFIG_PREFIX)?;
    crate::kv::list_response(keys)
}

fn write(core: &Core, name: &str, data: &Map<String, Value>) -> Result<Response> {
    check_name(name)?;
    let owner = owner_from(data)?;
    let _guard = core.locks.lock(&config_key(name));
    if let Some(mut rec) = load(core, name)? {
        // An update: owner and mount only; the seed stays (rotate-totp replaces it).
        rec.mount = mount_for(core, data, Some(&rec.mount))?;
        if let Some(o) = owner {
            rec.owner = o;
        }
        store(core, &rec, false)?;
        ensure_policy(core, &rec)?;
        return Ok(Response::with_data(rec.view()));
    }
    let mount = mount_for(core, data, None)?;
    let (seed, shown) = new_seed(name)?;
    let now = now_rfc3339(core);
    let rec = ProjectRecord {
        name: name.to_owned(),
        owner: owner.unwrap_or_default(),
        mount,
        seed,
        created_time: now.clone(),
        totp_rotated_time: now,
    };
    store(core, &rec, true)?;
    ensure_policy(core, &rec)?;
    let mut m = rec.view();
    m.extend(shown);
    let mut r = Response::with_data(m);
    r.warnings.push(
        "the TOTP seed is shown only now: scan the barcode or the otpauth_url into an authenticator app".into(),
    );
    Ok(r)
}

fn rotate(core: &Core, name: &str) -> Result<Response> {
    check_name(name)?;
    let _guard = core.locks.lock(&config_key(name));
    let mut rec = load(core, name)?.ok_or(Error::NotFound)?;
    let (seed, shown) = new_seed(name)?;
    rec.seed.zeroize();
    rec.seed = seed;
    rec.totp_rotated_time = now_rfc3339(core);
    store(core, &rec, true)?;
    let mut m = rec.view();
    m.extend(shown);
    Ok(Response::with_data(m))
}

/// Deletes the project, its policy and every token its code logins issued (so a
/// project created later under the same name does not hand them its secrets). Logins
/// hold the same lock, so none lands half-way.
fn delete(core: &Core, name: &str) -> Result<Response> {
    check_name(name)?;
    let _guard = core.locks.lock(&config_key(name));
    core.barrier.apply(vec![
        crate::barrier::Op::Delete(config_key(name)),
        crate::barrier::Op::Delete(step_key(name)),
    ])?;
    let policy = policy_name(name);
    if core.policies.get(&policy).is_some() {
        core.policies.delete(&core.barrier, &policy)?;
    }
    let revoked = core.tokens.revoke_where(&core.barrier, |e| {
        e.path == LOGIN_PATH
            && e.meta
                .as_ref()
                .and_then(|m| m.get("project"))
                .is_some_and(|p| p == name)
    })?;
    tracing::info!(project = %name, tokens = revoked, "project deleted; its login tokens revoked");
    Ok(Response::empty())
}

/// The project's variables: JSON (`data`) or, with `format=dotenv`, a text body.
fn env_response(core: &Core, rec: &ProjectRecord, query: &Map<String, Value>) -> Result<Response> {
    let dotenv = match query.get("format").and_then(Value::as_str) {
        None | Some("" | "json") => false,
        Some("dotenv") => true,
        Some(_) => return Err(Error::invalid("'format' must be json or dotenv")),
    };
    let data = {
        let mounts = core.mounts.read();
        let mount = mounts
            .get(&rec.mount)
            .filter(|m| crate::kv::is_v2(m))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "the project's mount \"{}\" is no longer a KV version 2 mount",
                    rec.mount
                ))
            })?;
        let ctx = core.ctx(mount, mount.view_prefix());
        crate::kv::v2::read_current(&ctx, &rec.secret_key())?.unwrap_or_default()
    };
    let (vars, skipped) = env::variables(data);
    let mut r = if dotenv {
        let mut r = Response::empty();
        r.raw_body = Some(RawBody {
            content_type: DOTENV_TYPE,
            bytes: env::dotenv(&vars).into_bytes(),
        });
        r
    } else {
        Response::with_data(vars.into_iter().map(|(k, v)| (k, json!(v))).collect())
    };
    if !skipped.is_empty() {
        r.warnings.push(format!(
            "left out {} key(s) that cannot be environment variables: {}",
            skipped.len(),
            skipped.join(", ")
        ));
    }
    Ok(r)
}

/// The handler of a request whose credential is a project's one-time code rather
/// than a token: `auth/totp/login`, and `lockana/projects/<name>/env` with a code.
/// `None` for every other request.
pub(crate) fn tokenless(req: &Request) -> Option<crate::vault::Handler> {
    Some(match purpose(req)? {
        Purpose::Login => login,
        Purpose::Env => env_by_code,
    })
}

fn purpose(req: &Request) -> Option<Purpose> {
    if req.path == LOGIN_PATH {
        Some(Purpose::Login)
    } else if req.totp_code.is_some() && env_project(&req.path).is_some() {
        Some(Purpose::Env)
    } else {
        None
    }
}

/// `lockana/projects/<name>/env` -> `<name>`.
fn env_project(path: &str) -> Option<&str> {
    path.strip_prefix("lockana/projects/")?.strip_suffix("/env")
}

fn login(core: &Core, req: &Request) -> Result<Response> {
    if !matches!(req.operation, Operation::Update | Operation::Create) {
        return Err(Error::UnsupportedOperation);
    }
    let project = req
        .data
        .get("project")
        .and_then(Value::as_str)
        .unwrap_or("");
    // Held until the token exists: a delete of the project waits, then revokes it.
    let _guard = core.locks.lock(&config_key(project));
    let code = match req.data.get("code") {
        Some(Value::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let rec = match access::verify(
        core,
        project,
        code,
        &req.connection,
        &req.path,
        Purpose::Login,
    )? {
        Ok(rec) => rec,
        Err(Failure::Replayed) => {
            return Err(Error::invalid(
                "TOTP code already used; wait for the next code",
            ));
        }
        Err(_) => return Err(Error::invalid("invalid project or TOTP code")),
    };
    ensure_policy(core, &rec)?;
    let t = NewToken {
        policies: vec![policy_name(&rec.name)],
        meta: Some([("project".to_owned(), rec.name.clone())].into()),
        display_name: format!("totp-{}", rec.name),
        path: req.path.clone(),
        ttl: LOGIN_TTL,
        max_ttl: LOGIN_TTL,
        renewable: false,
        ..Default::default()
    };
    let (token, entry) = core.tokens.create(&core.barrier, core.now(), t)?;
    let mut r = Response::empty();
    r.auth = Some(entry.to_auth(Some(token), core.unix_now()));
    Ok(r)
}

fn env_by_code(core: &Core, req: &Request) -> Result<Response> {
    if req.operation != Operation::Read {
        return Err(Error::UnsupportedOperation);
    }
    let project = env_project(&req.path).unwrap_or("");
    let _guard = core.locks.lock(&config_key(project));
    match access::verify(
        core,
        project,
        req.totp_code.as_deref(),
        &req.connection,
        &req.path,
        Purpose::Env,
    )? {
        Ok(rec) => env_response(core, &rec, &req.data),
        // One answer for every failure: nothing tells a guess from a lockout.
        Err(_) => Err(Error::Unauthenticated),
    }
}

fn into_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names() {
        for ok in ["billing", "a", "web-app_2", "0x"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Billing",
            "-a",
            "_a",
            "a/b",
            "a.b",
            "a b",
            &"a".repeat(65),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert_eq!(env_project("lockana/projects/p1/env"), Some("p1"));
        assert_eq!(env_project("lockana/projects/p1"), None);
    }
}
