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
//!
//! A project's encryption is chosen at create: `chacha20` (the default; the barrier
//! alone protects the values) or `rsa-3072` / `rsa-4096`, where clients encrypt every
//! value to the project's public key before it is sent ([`sealed`]); the server then
//! only accepts envelopes for that key on the project's secret and never decrypts.

mod access;
mod env;
pub(crate) mod sealed;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use zeroize::{Zeroize, ZeroizeOnDrop};

use self::access::{Failure, Purpose};
use crate::auth::token::NewToken;
use crate::totp::{self, code};
use crate::vault::Core;
use crate::{Error, Operation, RawBody, Request, Response, Result};
use sealed::{ProjectEncryption, ProjectPublicKey};

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
    /// `chacha20` (records from before the choice existed), `rsa-3072` or `rsa-4096`.
    #[serde(default = "default_encryption")]
    pub encryption: String,
    /// RSA projects: the public key (PEM) every value is encrypted to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

fn default_encryption() -> String {
    ProjectEncryption::ChaCha20.as_str().to_owned()
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

    /// The public key of an RSA project; `None` for chacha20 projects.
    fn rsa_key(&self) -> Result<Option<ProjectPublicKey>> {
        match &self.public_key {
            None => Ok(None),
            Some(pem) => ProjectPublicKey::from_pem(pem)
                .map(Some)
                .map_err(|_| crate::StorageError::Corrupt.into()),
        }
    }

    fn view(&self) -> Map<String, Value> {
        let mount = self.mount.trim_end_matches('/');
        let mut m = into_map(json!({
            "name": self.name,
            "owner": self.owner,
            "mount": mount,
            "secret_path": self.secret_key(),
            "api_path": format!("{mount}/data/projects/{}", self.name),
            "policy": policy_name(&self.name),
            "created_time": self.created_time,
            "totp_rotated_time": self.totp_rotated_time,
            "encryption": self.encryption,
        }));
        if let Ok(Some(key)) = self.rsa_key() {
            m.insert("public_key".into(), json!(key.to_pem()));
            m.insert("key_id".into(), json!(key.key_id()));
        }
        m
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
    load_in(&core.barrier, name)
}

fn load_in(barrier: &crate::barrier::Barrier, name: &str) -> Result<Option<ProjectRecord>> {
    let key = config_key(name);
    match barrier.get(&key)? {
        None => Ok(None),
        Some(b) => Ok(Some(crate::barrier::decode_record(&key, &b)?)),
    }
}

pub(crate) fn last_step(core: &Core, name: &str) -> Result<Option<u64>> {
    let key = step_key(name);
    match core.barrier.get(&key)? {
        None => Ok(None),
        Some(b) => Ok(Some(
            std::str::from_utf8(&b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| crate::barrier::integrity(&key, crate::IntegrityKind::Malformed))?,
        )),
    }
}

fn store_op(rec: &ProjectRecord) -> Result<crate::barrier::Op> {
    let bytes = serde_json::to_vec(rec).map_err(|_| crate::StorageError::Corrupt)?;
    Ok(crate::barrier::Op::Put(config_key(&rec.name), bytes))
}

fn store(core: &Core, rec: &ProjectRecord, reset_step: bool) -> Result<()> {
    let mut ops = vec![store_op(rec)?];
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
        (Some("rotate-key"), Operation::Create | Operation::Update) => {
            rotate_key(core, name, &req.data)
        }
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
        (None | Some("rotate-totp" | "rotate-key" | "env"), _) => Err(Error::UnsupportedOperation),
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
    let encryption = encryption_from(data)?;
    let _guard = core.locks.lock(&config_key(name));
    if let Some(mut rec) = load(core, name)? {
        // An update: owner and mount only; the seed stays (rotate-totp replaces it).
        if encryption.is_some_and(|e| e.as_str() != rec.encryption) {
            return Err(Error::invalid(
                "a project's encryption is chosen when it is created and cannot change",
            ));
        }
        if data.get("public_key").is_some_and(|v| !v.is_null()) {
            return Err(Error::invalid(
                "an RSA project's key changes only through rotate-key (lockana project rotate-key), which re-encrypts its variables",
            ));
        }
        let mount = mount_for(core, data, Some(&rec.mount))?;
        if mount != rec.mount && rec.public_key.is_some() {
            refuse_existing_secret(core, &mount, name)?;
        }
        rec.mount = mount;
        if let Some(o) = owner {
            rec.owner = o;
        }
        store(core, &rec, false)?;
        ensure_policy(core, &rec)?;
        return Ok(Response::with_data(rec.view()));
    }
    let mount = mount_for(core, data, None)?;
    let encryption = encryption.unwrap_or(ProjectEncryption::ChaCha20);
    let public_key = public_key_for(encryption, data)?;
    let (seed, shown) = new_seed(name)?;
    let now = now_rfc3339(core);
    let rec = ProjectRecord {
        name: name.to_owned(),
        owner: owner.unwrap_or_default(),
        mount,
        seed,
        created_time: now.clone(),
        totp_rotated_time: now,
        encryption: encryption.as_str().to_owned(),
        public_key: public_key.map(|k| k.to_pem()),
    };
    if rec.public_key.is_some() {
        // Under the secret's lock, so no plaintext write slips in before the record.
        let mounts = core.mounts.read();
        let entry = mounts.get(&rec.mount).ok_or(Error::NotFound)?;
        let ctx = core.ctx(entry, entry.view_prefix());
        let _secret = crate::kv::v2::lock_secret(&ctx, &rec.secret_key());
        refuse_existing_in(&ctx, &rec.mount, name)?;
        store(core, &rec, true)?;
    } else {
        store(core, &rec, true)?;
    }
    ensure_policy(core, &rec)?;
    let mut m = rec.view();
    m.extend(shown);
    let mut r = Response::with_data(m);
    r.warnings.push(
        "the TOTP seed is shown only now: scan the barcode or the otpauth_url into an authenticator app".into(),
    );
    Ok(r)
}

fn encryption_from(data: &Map<String, Value>) -> Result<Option<ProjectEncryption>> {
    match data.get("encryption") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => ProjectEncryption::from_name(s)
            .map(Some)
            .ok_or_else(|| Error::invalid("'encryption' must be chacha20, rsa-3072 or rsa-4096")),
        Some(_) => Err(Error::invalid("'encryption' must be a string")),
    }
}

/// The public key an RSA project is created with (generated by the client, which
/// keeps the private key); none for chacha20.
fn public_key_for(
    encryption: ProjectEncryption,
    data: &Map<String, Value>,
) -> Result<Option<ProjectPublicKey>> {
    let pem = match data.get("public_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(Error::invalid("'public_key' must be a PEM string")),
    };
    match (encryption.is_rsa(), pem) {
        (false, None) => Ok(None),
        (false, Some(_)) => Err(Error::invalid(
            "'public_key' is for RSA projects: set 'encryption' to rsa-3072 or rsa-4096",
        )),
        (true, None) => Err(Error::invalid(
            "an RSA project needs 'public_key': the client generates the key pair and keeps the private key (lockana project create --encryption rsa-3072)",
        )),
        (true, Some(pem)) => {
            let key = sealed::parse_public_key(pem)?;
            if key.encryption() != encryption {
                return Err(Error::invalid(format!(
                    "the public key is a {} key, not {}",
                    key.encryption().as_str(),
                    encryption.as_str()
                )));
            }
            Ok(Some(key))
        }
    }
}

/// An RSA project cannot take over a KV secret that already has versions: they
/// would hold plaintext the server can read (and `undelete` or a rollback brings back).
fn refuse_existing_secret(core: &Core, mount: &str, name: &str) -> Result<()> {
    let mounts = core.mounts.read();
    let entry = mounts.get(mount).ok_or(Error::NotFound)?;
    let ctx = core.ctx(entry, entry.view_prefix());
    let _secret = crate::kv::v2::lock_secret(&ctx, &format!("projects/{name}"));
    refuse_existing_in(&ctx, mount, name)
}

fn refuse_existing_in(ctx: &crate::kv::Ctx<'_>, mount: &str, name: &str) -> Result<()> {
    if crate::kv::v2::secret_exists(ctx, &format!("projects/{name}"))? {
        return Err(Error::invalid(format!(
            "the KV secret {}/projects/{name} already exists and may hold plaintext: an RSA project needs a new secret (delete it with vault kv metadata delete, or use another mount)",
            mount.trim_end_matches('/')
        )));
    }
    Ok(())
}

/// The check every KV v2 write runs on its new data: on an RSA project's secret,
/// each value must be an envelope for the project's current key, so no plaintext
/// lands by mistake (a plain `vault kv put` is refused).
pub(crate) fn check_kv_write(
    ctx: &crate::kv::Ctx<'_>,
    key: &str,
    data: &Map<String, Value>,
) -> Result<()> {
    let Some(name) = key.strip_prefix("projects/").filter(|n| valid_name(n)) else {
        return Ok(());
    };
    let Some(rec) = load_in(ctx.barrier, name)? else {
        return Ok(());
    };
    if rec.mount != ctx.mount.path {
        return Ok(());
    }
    match rec.rsa_key()? {
        None => Ok(()),
        Some(public) => check_sealed(&rec, &public, data),
    }
}

fn check_sealed(
    rec: &ProjectRecord,
    public: &ProjectPublicKey,
    data: &Map<String, Value>,
) -> Result<()> {
    let modulus = sealed::modulus_bytes(public);
    match data
        .iter()
        .find(|(_, v)| !sealed::check_envelope(v, public.key_id(), modulus))
    {
        None => Ok(()),
        Some((var, _)) => Err(Error::invalid(format!(
            "project \"{name}\" is encrypted on the client ({enc}): the server accepts only values encrypted to its public key (key id {id}), and \"{var}\" is not one. Write its variables with: lockana project set {name} KEY=value ...",
            name = rec.name,
            enc = rec.encryption,
            id = public.key_id(),
        ))),
    }
}

/// Replaces an RSA project's public key together with its variables, re-encrypted
/// by the client to the new key: one atomic write of the KV version and the record.
/// `options.cas`-style `cas` guards against a write made since the client read them.
fn rotate_key(core: &Core, name: &str, data: &Map<String, Value>) -> Result<Response> {
    check_name(name)?;
    let _guard = core.locks.lock(&config_key(name));
    let mut rec = load(core, name)?.ok_or(Error::NotFound)?;
    let Some(old) = rec.rsa_key()? else {
        return Err(Error::invalid(
            "project is not an RSA project: only RSA projects have a key to rotate",
        ));
    };
    let pem = data
        .get("public_key")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::invalid("'public_key' (PEM) is required"))?;
    let new = sealed::parse_public_key(pem)?;
    if new.key_id() == old.key_id() {
        return Err(Error::invalid(
            "the new public key is the project's current key",
        ));
    }
    let vars = match data.get("data") {
        Some(Value::Object(m)) => m.clone(),
        _ => {
            return Err(Error::invalid(
                "'data' is required: the project's variables, re-encrypted to the new key",
            ));
        }
    };
    rec.encryption = new.encryption().as_str().to_owned();
    rec.public_key = Some(new.to_pem());
    let mut body = Map::new();
    body.insert("data".into(), Value::Object(vars));
    if let Some(cas) = data.get("cas").filter(|v| !v.is_null()) {
        body.insert("options".into(), json!({ "cas": cas }));
    }
    let mounts = core.mounts.read();
    let entry = mounts
        .get(&rec.mount)
        .filter(|m| crate::kv::is_v2(m))
        .ok_or_else(|| Error::invalid("the project's mount is no longer a KV version 2 mount"))?;
    let ctx = core.ctx(entry, entry.view_prefix());
    let check = |d: &Map<String, Value>| check_sealed(&rec, &new, d);
    let hook = crate::kv::v2::WriteHook {
        check: &check,
        extra: vec![store_op(&rec)?],
    };
    let written = crate::kv::v2::write_with(&ctx, &rec.secret_key(), &body, hook)?;
    let mut m = rec.view();
    if let Some(v) = written.data.as_ref().and_then(|d| d.get("version")) {
        m.insert("version".into(), v.clone());
    }
    tracing::info!(project = %name, key_id = new.key_id(), "project key rotated");
    Ok(Response::with_data(m))
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
    if dotenv && rec.public_key.is_some() {
        return Err(Error::invalid(format!(
            "project \"{}\" is encrypted on the client ({}): ask for JSON and decrypt with its private key (lockana env --key FILE)",
            rec.name, rec.encryption
        )));
    }
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
    r.auth = Some(entry.to_auth(Some(token)));
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
