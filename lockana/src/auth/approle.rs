//! The `approle` auth method: machines log in with a role ID and a secret ID.
//!
//! Neither ID is stored in the clear: both are found through a salted HMAC (the salt
//! random per mount, behind the barrier), as tokens are. Storage under the mount:
//! - `salt`: the HMAC key;
//! - `role/<name>`: the role (names are lower-cased, as Vault does);
//! - `role_id/<hmac(role id)>`: the role's name;
//! - `secret_id/<role>/<hmac(secret id)>`: one secret ID's entry (uses, expiry, CIDRs);
//! - `accessor/<role>/<accessor>`: the HMAC of that secret ID.
//!
//! Every failed login answers [`INVALID_LOGIN`] with 400, whether the role ID or the
//! secret ID was wrong, expired, used up, or the role ID is locked out.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{Answer, TokenFields, opt_strings};
use crate::clock::rfc3339;
use crate::kv::{Ctx, list_response, opt_bool, opt_duration, opt_u64};
use crate::{Error, Operation, Request, Response, Result};

/// The one answer for every failed login.
pub(crate) const INVALID_LOGIN: &str = "invalid role or secret ID";

#[derive(Serialize, Deserialize)]
struct Role {
    role_id: String,
    bind_secret_id: bool,
    secret_id_num_uses: u64,
    secret_id_ttl: u64,
    secret_id_bound_cidrs: Option<Vec<String>>,
    /// The deprecated `period`, kept when a write named it (the `period` sub-path
    /// then reads it back beside `token_period`, as Vault does).
    #[serde(default)]
    legacy_period: u64,
    #[serde(flatten)]
    token: TokenFields,
}

#[derive(Serialize, Deserialize)]
struct SecretIdEntry {
    accessor: String,
    creation_time: String,
    last_updated_time: String,
    /// Unix seconds; 0: never expires.
    expiration: u64,
    ttl: u64,
    /// Uses left; 0: unlimited.
    num_uses: u64,
    metadata: BTreeMap<String, String>,
    cidr_list: Vec<String>,
    token_bound_cidrs: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct AccessorEntry {
    secret_id_hmac: String,
}

#[derive(Serialize, Deserialize)]
struct RoleIdEntry {
    name: String,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn ct_eq(a: &str, b: &str) -> bool {
    subtle::ConstantTimeEq::ct_eq(a.as_bytes(), b.as_bytes()).into()
}

/// A stored salt that is not hex: damage naming its storage key.
fn salt_damaged(ctx: &Ctx<'_>) -> crate::Error {
    crate::barrier::integrity(&ctx.key("salt"), crate::IntegrityKind::Malformed)
}

/// The mount's HMAC key, created on first use.
fn salt(ctx: &Ctx<'_>) -> Result<Zeroizing<Vec<u8>>> {
    #[derive(Serialize, Deserialize)]
    struct Salt {
        key: String,
    }
    if let Some(s) = ctx.get_json::<Salt>("salt")? {
        return Ok(Zeroizing::new(
            hex::decode(&s.key).map_err(|_| salt_damaged(ctx))?,
        ));
    }
    let _g = ctx.lock("salt");
    if let Some(s) = ctx.get_json::<Salt>("salt")? {
        return Ok(Zeroizing::new(
            hex::decode(&s.key).map_err(|_| salt_damaged(ctx))?,
        ));
    }
    let key = crate::barrier::random_key()?;
    let s = Salt {
        key: hex::encode(&key[..]),
    };
    ctx.apply(vec![ctx.put_op("salt", &s)?])?;
    Ok(Zeroizing::new(key.to_vec()))
}

fn hmac_hex(salt: &[u8], kind: &str, input: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(salt).expect("HMAC takes any key size");
    mac.update(kind.as_bytes());
    mac.update(b"\0");
    mac.update(input.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn normalize_role_name(name: &str) -> Result<String> {
    let n = name.trim().to_lowercase();
    if n.is_empty()
        || n.len() > 4096
        || !n
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | ' '))
    {
        return Err(Error::invalid("invalid role name"));
    }
    Ok(n)
}

fn role_key(name: &str) -> String {
    format!("role/{name}")
}

fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn opt_string(d: &Map<String, Value>, name: &str) -> Result<Option<String>> {
    match d.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Error::invalid(format!("'{name}' must be a string"))),
    }
}

fn required_string(d: &Map<String, Value>, name: &'static str) -> Result<String> {
    match opt_string(d, name)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(Error::invalid(format!("missing {name}"))),
    }
}

super::auth_method!(AppRole, "approle", APPROLE, &["login"]);

fn handle(ctx: &Ctx<'_>, req: &Request, rel: &str) -> Result<Answer> {
    let op = req.operation;
    if rel == "login" {
        return login(ctx, req);
    }
    if rel == "tidy/secret-id" {
        return match op {
            Operation::Create | Operation::Update => tidy_secret_ids(ctx),
            _ => Err(Error::UnsupportedOperation),
        };
    }
    if matches!(rel, "role" | "role/") && op == Operation::List {
        let keys = ctx.list("role/")?;
        return respond(list_response(keys));
    }
    let Some(rest) = rel.strip_prefix("role/") else {
        return Err(Error::NoRoute(req.path.clone()));
    };
    let (name, sub) = rest.split_once('/').unwrap_or((rest, ""));
    let name = normalize_role_name(name)?;
    let sub = sub.trim_end_matches('/');
    match sub {
        "" => role_crud(ctx, req, &name),
        "role-id" => role_id(ctx, req, &name),
        "secret-id" if op == Operation::List => {
            let keys = ctx.list(&format!("accessor/{name}/"))?;
            if ctx.get_json::<Role>(&role_key(&name))?.is_none() {
                // Vault's listing names the role, and answers 400 rather than 404.
                return Err(Error::invalid(format!("role \"{name}\" does not exist")));
            }
            respond(list_response(keys))
        }
        "secret-id" | "custom-secret-id" if is_write(op) => {
            generate_secret_id(ctx, req, &name, sub == "custom-secret-id")
        }
        "secret-id/lookup" if is_write(op) => {
            let sid = required_string(&req.data, "secret_id")?;
            let h = hmac_hex(&salt(ctx)?, "secret_id", &sid);
            lookup_secret_id(ctx, &name, &h)
        }
        "secret-id/destroy" if is_write(op) || op == Operation::Delete => {
            let sid = required_string(&req.data, "secret_id")?;
            let h = hmac_hex(&salt(ctx)?, "secret_id", &sid);
            destroy_secret_id(ctx, &name, &h)?;
            respond(Ok(Response::empty()))
        }
        "secret-id-accessor/lookup" if is_write(op) => {
            let acc = required_string(&req.data, "secret_id_accessor")?;
            match accessor_hmac(ctx, &name, &acc)? {
                Some(h) => lookup_secret_id(ctx, &name, &h),
                None => accessor_not_found(),
            }
        }
        "secret-id-accessor/destroy" if is_write(op) || op == Operation::Delete => {
            let acc = required_string(&req.data, "secret_id_accessor")?;
            let h = accessor_hmac(ctx, &name, &acc)?.ok_or_else(|| {
                Error::invalid("failed to find accessor entry for secret_id_accessor")
            })?;
            destroy_secret_id(ctx, &name, &h)?;
            respond(Ok(Response::empty()))
        }
        _ if ROLE_FIELDS.contains(&sub) => role_field(ctx, req, &name, sub),
        "secret-id"
        | "custom-secret-id"
        | "secret-id/lookup"
        | "secret-id/destroy"
        | "secret-id-accessor/lookup"
        | "secret-id-accessor/destroy" => Err(Error::UnsupportedOperation),
        _ => Err(Error::UnsupportedPath),
    }
}

fn is_write(op: Operation) -> bool {
    matches!(op, Operation::Create | Operation::Update)
}

fn respond(r: Result<Response>) -> Result<Answer> {
    r.map(|r| Answer::Response(Box::new(r)))
}

/// Vault answers an unknown accessor's lookup with 404 and an `error` in `data`.
fn accessor_not_found() -> Result<Answer> {
    let mut r = Response::with_data(crate::sys::obj(
        json!({"error": "failed to find accessor entry for secret_id_accessor"}),
    ));
    r.status = Some(404);
    respond(Ok(r))
}

fn role_crud(ctx: &Ctx<'_>, req: &Request, name: &str) -> Result<Answer> {
    let d = &req.data;
    let key = role_key(name);
    let _g = ctx.lock(&key);
    let existing: Option<Role> = ctx.get_json(&key)?;
    match req.operation {
        Operation::Read => {
            let role = existing.ok_or(Error::NotFound)?;
            let mut m = Map::new();
            role.token.write_to(&mut m);
            m.insert("bind_secret_id".into(), json!(role.bind_secret_id));
            m.insert("local_secret_ids".into(), json!(false));
            m.insert(
                "secret_id_bound_cidrs".into(),
                json!(role.secret_id_bound_cidrs),
            );
            m.insert("secret_id_num_uses".into(), json!(role.secret_id_num_uses));
            m.insert("secret_id_ttl".into(), json!(role.secret_id_ttl));
            respond(Ok(Response::with_data(m)))
        }
        Operation::Create | Operation::Update => {
            let salt = salt(ctx)?;
            let is_new = existing.is_none();
            let mut role = existing.unwrap_or(Role {
                role_id: String::new(),
                bind_secret_id: true,
                secret_id_num_uses: 0,
                secret_id_ttl: 0,
                secret_id_bound_cidrs: None,
                legacy_period: 0,
                token: TokenFields::default(),
            });
            if let Some(b) = opt_bool(d, "bind_secret_id")? {
                role.bind_secret_id = b;
            }
            if let Some(n) = opt_u64(d, "secret_id_num_uses")? {
                role.secret_id_num_uses = n;
            }
            if let Some(t) = opt_duration(d, "secret_id_ttl")? {
                role.secret_id_ttl = t;
            }
            if let Some(c) = opt_strings(d, "secret_id_bound_cidrs")? {
                for block in &c {
                    Cidr::parse(block)?;
                }
                role.secret_id_bound_cidrs = if c.is_empty() { None } else { Some(c) };
            }
            role.token.update(d)?;
            if !role.bind_secret_id && role.secret_id_bound_cidrs.is_none() {
                return Err(Error::invalid(
                    "at least one constraint should be enabled on the role",
                ));
            }
            let mut ops = Vec::new();
            let wanted = opt_string(d, "role_id")?.filter(|s| !s.is_empty());
            if is_new || wanted.is_some() {
                let new_id = wanted.unwrap_or_else(new_uuid);
                ops.extend(set_role_id(ctx, &salt, name, &role.role_id, &new_id)?);
                role.role_id = new_id;
            }
            ops.push(ctx.put_op(&key, &role)?);
            ctx.apply(ops)?;
            respond(Ok(Response::empty()))
        }
        Operation::Delete => {
            let Some(role) = existing else {
                return respond(Ok(Response::empty()));
            };
            let salt = salt(ctx)?;
            let mut ops = vec![
                ctx.delete_op(&key),
                ctx.delete_op(&format!(
                    "role_id/{}",
                    hmac_hex(&salt, "role_id", &role.role_id)
                )),
            ];
            for h in ctx.list(&format!("secret_id/{name}/"))? {
                ops.push(ctx.delete_op(&format!("secret_id/{name}/{h}")));
            }
            for a in ctx.list(&format!("accessor/{name}/"))? {
                ops.push(ctx.delete_op(&format!("accessor/{name}/{a}")));
            }
            ctx.apply(ops)?;
            respond(Ok(Response::empty()))
        }
        _ => Err(Error::UnsupportedOperation),
    }
}

/// The role's one-field sub-paths Vault serves (`role/<name>/token-ttl`, ...).
const ROLE_FIELDS: &[&str] = &[
    "policies",
    "secret-id-num-uses",
    "secret-id-ttl",
    "token-ttl",
    "token-max-ttl",
    "token-num-uses",
    "period",
    "bound-cidr-list",
    "secret-id-bound-cidrs",
    "bind-secret-id",
    "local-secret-ids",
];

/// Reads, writes or resets one field of a role, as Vault's sub-paths do: a read of a
/// missing role is 404, a write to one "unsupported path", a delete of one 204; a
/// write without its field is 400 `missing <field>`; a delete resets the default.
fn role_field(ctx: &Ctx<'_>, req: &Request, name: &str, sub: &str) -> Result<Answer> {
    let d = &req.data;
    let op = req.operation;
    if sub == "local-secret-ids" && op != Operation::Read {
        return Err(Error::UnsupportedOperation);
    }
    if !matches!(
        op,
        Operation::Read | Operation::Create | Operation::Update | Operation::Delete
    ) {
        return Err(Error::UnsupportedOperation);
    }
    let key = role_key(name);
    let _g = ctx.lock(&key);
    let Some(mut role) = ctx.get_json::<Role>(&key)? else {
        return match op {
            Operation::Read => Err(Error::NotFound),
            Operation::Delete => respond(Ok(Response::empty())),
            _ => Err(Error::UnsupportedPath),
        };
    };
    let missing = |field: &str| Error::invalid(format!("missing {field}"));
    if op == Operation::Read {
        let mut r = Response::with_data(Map::new());
        let m = r.data.get_or_insert_with(Map::new);
        let t = &role.token;
        match sub {
            "policies" => {
                m.insert("token_policies".into(), json!(t.token_policies));
                if t.legacy_policies && !t.token_policies.is_empty() {
                    m.insert("policies".into(), json!(t.token_policies));
                }
            }
            "secret-id-num-uses" => {
                m.insert("secret_id_num_uses".into(), json!(role.secret_id_num_uses));
            }
            "secret-id-ttl" => {
                m.insert("secret_id_ttl".into(), json!(role.secret_id_ttl));
            }
            "token-ttl" => {
                m.insert("token_ttl".into(), json!(t.token_ttl));
            }
            "token-max-ttl" => {
                m.insert("token_max_ttl".into(), json!(t.token_max_ttl));
            }
            "token-num-uses" => {
                m.insert("token_num_uses".into(), json!(t.token_num_uses));
            }
            "period" => {
                m.insert("token_period".into(), json!(t.token_period));
                if role.legacy_period > 0 {
                    m.insert("period".into(), json!(role.legacy_period));
                }
            }
            "bound-cidr-list" => {
                // The deprecated list is folded into secret_id_bound_cidrs on write,
                // so (as on a role Vault has upgraded) it reads back empty.
                m.insert("bound_cidr_list".into(), Value::Null);
                r.warnings.push(
                    "The \"bound_cidr_list\" field is deprecated and will be removed. Please use \"secret_id_bound_cidrs\" instead.".into(),
                );
            }
            "secret-id-bound-cidrs" => {
                m.insert(
                    "secret_id_bound_cidrs".into(),
                    json!(role.secret_id_bound_cidrs),
                );
            }
            "bind-secret-id" => {
                m.insert("bind_secret_id".into(), json!(role.bind_secret_id));
            }
            _ => {
                m.insert("local_secret_ids".into(), json!(false));
            }
        }
        return respond(Ok(r));
    }
    let delete = op == Operation::Delete;
    match sub {
        "policies" if delete => {
            role.token.token_policies.clear();
            role.token.legacy_policies = false;
        }
        "policies" => {
            if !d.contains_key("token_policies") && !d.contains_key("policies") {
                return Err(missing("token_policies"));
            }
            role.token
                .update(&field_only(d, &["token_policies", "policies"]))?;
        }
        "secret-id-num-uses" if delete => role.secret_id_num_uses = 0,
        "secret-id-num-uses" => {
            if matches!(crate::fields::opt_i64(d, "secret_id_num_uses")?, Some(n) if n < 0) {
                return Err(Error::invalid("secret_id_num_uses cannot be negative"));
            }
            role.secret_id_num_uses =
                opt_u64(d, "secret_id_num_uses")?.ok_or_else(|| missing("secret_id_num_uses"))?;
        }
        "secret-id-ttl" if delete => role.secret_id_ttl = 0,
        "secret-id-ttl" => {
            role.secret_id_ttl =
                opt_duration(d, "secret_id_ttl")?.ok_or_else(|| missing("secret_id_ttl"))?;
        }
        "token-ttl" if delete => role.token.token_ttl = 0,
        "token-ttl" => {
            let v = opt_duration(d, "token_ttl")?.ok_or_else(|| missing("token_ttl"))?;
            if role.token.token_max_ttl > 0 && v > role.token.token_max_ttl {
                return Err(Error::invalid(
                    "token_ttl should not be greater than token_max_ttl",
                ));
            }
            role.token.token_ttl = v;
        }
        "token-max-ttl" if delete => role.token.token_max_ttl = 0,
        "token-max-ttl" => {
            let v = opt_duration(d, "token_max_ttl")?.ok_or_else(|| missing("token_max_ttl"))?;
            if v > 0 && role.token.token_ttl > v {
                return Err(Error::invalid(
                    "token_max_ttl should be greater than or equal to token_ttl",
                ));
            }
            role.token.token_max_ttl = v;
        }
        "token-num-uses" if delete => role.token.token_num_uses = 0,
        "token-num-uses" => {
            role.token.token_num_uses =
                opt_u64(d, "token_num_uses")?.ok_or_else(|| missing("token_num_uses"))?;
        }
        "period" if delete => {
            role.token.token_period = 0;
            role.legacy_period = 0;
        }
        "period" => {
            let modern = opt_duration(d, "token_period")?;
            let legacy = opt_duration(d, "period")?;
            let v = modern.or(legacy).ok_or_else(|| missing("period"))?;
            role.token.token_period = v;
            role.legacy_period = if legacy.is_some() { v } else { 0 };
        }
        // The deprecated list has nothing stored of its own to reset.
        "bound-cidr-list" if delete => return respond(Ok(Response::empty())),
        "secret-id-bound-cidrs" if delete => role.secret_id_bound_cidrs = None,
        "bound-cidr-list" | "secret-id-bound-cidrs" => {
            let given = match opt_strings(d, "secret_id_bound_cidrs")? {
                Some(c) => Some(c),
                None if sub == "bound-cidr-list" => opt_strings(d, "bound_cidr_list")?,
                None => None,
            };
            // Without the field Vault's handler stores the role unchanged.
            let Some(cidrs) = given else {
                return respond(Ok(Response::empty()));
            };
            if cidrs.is_empty() {
                return Err(missing("bound_cidr_list"));
            }
            for block in &cidrs {
                Cidr::parse(block)?;
            }
            role.secret_id_bound_cidrs = Some(cidrs);
        }
        "bind-secret-id" if delete => role.bind_secret_id = true,
        _ => {
            role.bind_secret_id =
                opt_bool(d, "bind_secret_id")?.ok_or_else(|| missing("bind_secret_id"))?;
        }
    }
    if !role.bind_secret_id && role.secret_id_bound_cidrs.is_none() {
        return Err(Error::invalid(
            "at least one constraint should be enabled on the role",
        ));
    }
    ctx.apply(vec![ctx.put_op(&key, &role)?])?;
    respond(Ok(Response::empty()))
}

/// The entries of `d` named in `names`, so a sub-path's write touches only its field.
fn field_only(d: &Map<String, Value>, names: &[&str]) -> Map<String, Value> {
    d.iter()
        .filter(|(k, _)| names.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// `tidy/secret-id`: removes expired secret IDs and accessors whose secret ID is gone.
/// Vault starts this in the background and answers 202; Lockana's storage is local
/// and the sweep is short, so it runs before the answer (same status and warning).
fn tidy_secret_ids(ctx: &Ctx<'_>) -> Result<Answer> {
    let now = unix(ctx.now);
    let mut ops = Vec::new();
    for role in ctx.list("secret_id/")? {
        let role = role.trim_end_matches('/');
        let _g = ctx.lock(&role_key(role));
        let mut live = std::collections::HashSet::new();
        for h in ctx.list(&format!("secret_id/{role}/"))? {
            let key = format!("secret_id/{role}/{h}");
            match ctx.get_json::<SecretIdEntry>(&key)? {
                Some(e) if e.expiration != 0 && e.expiration <= now => {
                    ops.push(ctx.delete_op(&key))
                }
                Some(_) => {
                    live.insert(h);
                }
                None => {}
            }
        }
        for a in ctx.list(&format!("accessor/{role}/"))? {
            let key = format!("accessor/{role}/{a}");
            if let Some(entry) = ctx.get_json::<AccessorEntry>(&key)?
                && !live.contains(&entry.secret_id_hmac)
            {
                ops.push(ctx.delete_op(&key));
            }
        }
    }
    if !ops.is_empty() {
        ctx.apply(ops)?;
    }
    tracing::info!("approle: tidy of secret IDs finished");
    let mut r = Response::empty();
    r.status = Some(202);
    r.warnings.push(
        "Tidy operation successfully started. Any information from the operation will be printed to Lockana's server logs."
            .into(),
    );
    respond(Ok(r))
}

/// Index updates that move a role from `old` to `new` role ID; refuses an ID in use.
fn set_role_id(
    ctx: &Ctx<'_>,
    salt: &[u8],
    name: &str,
    old: &str,
    new: &str,
) -> Result<Vec<crate::barrier::Op>> {
    if new.len() > 4096 || new.chars().any(char::is_control) {
        return Err(Error::invalid("invalid role_id"));
    }
    let new_key = format!("role_id/{}", hmac_hex(salt, "role_id", new));
    if let Some(owner) = ctx.get_json::<RoleIdEntry>(&new_key)?
        && owner.name != name
    {
        return Err(Error::invalid("role_id already in use"));
    }
    let mut ops = Vec::new();
    if !old.is_empty() {
        ops.push(ctx.delete_op(&format!("role_id/{}", hmac_hex(salt, "role_id", old))));
    }
    ops.push(ctx.put_op(
        &new_key,
        &RoleIdEntry {
            name: name.to_owned(),
        },
    )?);
    Ok(ops)
}

fn role_id(ctx: &Ctx<'_>, req: &Request, name: &str) -> Result<Answer> {
    let key = role_key(name);
    let _g = ctx.lock(&key);
    let mut role: Role = ctx.get_json(&key)?.ok_or(Error::NotFound)?;
    match req.operation {
        Operation::Read => respond(Ok(Response::with_data(crate::sys::obj(
            json!({"role_id": role.role_id}),
        )))),
        Operation::Create | Operation::Update => {
            let new_id = required_string(&req.data, "role_id")?;
            let salt = salt(ctx)?;
            let mut ops = set_role_id(ctx, &salt, name, &role.role_id, &new_id)?;
            role.role_id = new_id;
            ops.push(ctx.put_op(&key, &role)?);
            ctx.apply(ops)?;
            respond(Ok(Response::empty()))
        }
        _ => Err(Error::UnsupportedOperation),
    }
}

/// Secret-ID metadata, in any form Vault's `ParseArbitraryKeyValues` takes (the CLI
/// sends `metadata=env=ci` as a string).
fn metadata_param(d: &Map<String, Value>) -> Result<BTreeMap<String, String>> {
    Ok(crate::fields::opt_arbitrary_kv(d, "metadata")?.unwrap_or_default())
}

fn generate_secret_id(ctx: &Ctx<'_>, req: &Request, name: &str, custom: bool) -> Result<Answer> {
    let d = &req.data;
    let role: Role = ctx
        .get_json(&role_key(name))?
        .ok_or_else(|| Error::missing(format!("role \"{name}\" does not exist")))?;
    if !role.bind_secret_id {
        return Err(Error::invalid(
            "bind_secret_id is not set on the role; secret IDs are not used",
        ));
    }
    let secret_id = if custom {
        let s = required_string(d, "secret_id")?;
        if s.len() > 4096 {
            return Err(Error::invalid("invalid secret_id"));
        }
        Zeroizing::new(s)
    } else {
        Zeroizing::new(new_uuid())
    };
    let metadata = metadata_param(d)?;
    let cidr_list = opt_strings(d, "cidr_list")?.unwrap_or_default();
    let cidrs = cidr_list
        .iter()
        .map(|c| Cidr::parse(c))
        .collect::<Result<Vec<_>>>()?;
    if let Some(bound) = &role.secret_id_bound_cidrs {
        let bound = bound
            .iter()
            .map(|c| Cidr::parse(c))
            .collect::<Result<Vec<_>>>()?;
        if !cidrs
            .iter()
            .all(|c| bound.iter().any(|b| b.contains_block(c)))
        {
            return Err(Error::invalid(
                "failed to verify the CIDR restrictions set on the secret ID: the CIDR blocks must be within the role's secret_id_bound_cidrs",
            ));
        }
    }
    let token_bound_cidrs = opt_strings(d, "token_bound_cidrs")?.unwrap_or_default();
    for c in &token_bound_cidrs {
        Cidr::parse(c)?;
    }
    let num_uses = match opt_u64(d, "num_uses")? {
        Some(n) if role.secret_id_num_uses > 0 && (n == 0 || n > role.secret_id_num_uses) => {
            return Err(Error::invalid(
                "num_uses cannot be higher than the role's secret_id_num_uses",
            ));
        }
        Some(n) => n,
        None => role.secret_id_num_uses,
    };
    let ttl = match opt_duration(d, "ttl")? {
        Some(t) if role.secret_id_ttl > 0 && (t == 0 || t > role.secret_id_ttl) => {
            return Err(Error::invalid(
                "ttl cannot be longer than the role's secret_id_ttl",
            ));
        }
        Some(t) => t,
        None => role.secret_id_ttl,
    };
    let salt = salt(ctx)?;
    let h = hmac_hex(&salt, "secret_id", &secret_id);
    let key = format!("secret_id/{name}/{h}");
    let _g = ctx.lock(&key);
    if ctx.get_json::<SecretIdEntry>(&key)?.is_some() {
        return Err(Error::invalid("secret_id is already registered"));
    }
    let accessor = new_uuid();
    let now = ctx.now;
    let entry = SecretIdEntry {
        accessor: accessor.clone(),
        creation_time: rfc3339(now),
        last_updated_time: rfc3339(now),
        expiration: if ttl > 0 { unix(now) + ttl } else { 0 },
        ttl,
        num_uses,
        metadata,
        cidr_list,
        token_bound_cidrs,
    };
    ctx.apply(vec![
        ctx.put_op(&key, &entry)?,
        ctx.put_op(
            &format!("accessor/{name}/{accessor}"),
            &AccessorEntry { secret_id_hmac: h },
        )?,
    ])?;
    respond(Ok(Response::with_data(crate::sys::obj(json!({
        "secret_id": secret_id.as_str(),
        "secret_id_accessor": accessor,
        "secret_id_num_uses": num_uses,
        "secret_id_ttl": ttl,
    })))))
}

fn accessor_hmac(ctx: &Ctx<'_>, name: &str, accessor: &str) -> Result<Option<String>> {
    if accessor.contains('/') || accessor.is_empty() {
        return Ok(None);
    }
    Ok(ctx
        .get_json::<AccessorEntry>(&format!("accessor/{name}/{accessor}"))?
        .map(|a| a.secret_id_hmac))
}

/// A secret ID's details, or 204 when there is none (as Vault answers).
fn lookup_secret_id(ctx: &Ctx<'_>, name: &str, h: &str) -> Result<Answer> {
    let Some(e) = ctx.get_json::<SecretIdEntry>(&format!("secret_id/{name}/{h}"))? else {
        return respond(Ok(Response::empty()));
    };
    if e.expiration > 0 && unix(ctx.now) >= e.expiration {
        destroy_secret_id(ctx, name, h)?;
        return respond(Ok(Response::empty()));
    }
    let expiration = if e.expiration > 0 {
        rfc3339(UNIX_EPOCH + Duration::from_secs(e.expiration))
    } else {
        "0001-01-01T00:00:00Z".to_owned()
    };
    respond(Ok(Response::with_data(crate::sys::obj(json!({
        "cidr_list": e.cidr_list,
        "creation_time": e.creation_time,
        "expiration_time": expiration,
        "last_updated_time": e.last_updated_time,
        "metadata": e.metadata,
        "secret_id_accessor": e.accessor,
        "secret_id_num_uses": e.num_uses,
        "secret_id_ttl": e.ttl,
        "token_bound_cidrs": e.token_bound_cidrs,
    })))))
}

/// Removes a secret ID and its accessor; nothing to do when it does not exist.
fn destroy_secret_id(ctx: &Ctx<'_>, name: &str, h: &str) -> Result<()> {
    let key = format!("secret_id/{name}/{h}");
    if let Some(e) = ctx.get_json::<SecretIdEntry>(&key)? {
        ctx.apply(vec![
            ctx.delete_op(&key),
            ctx.delete_op(&format!("accessor/{name}/{}", e.accessor)),
        ])?;
    }
    Ok(())
}

fn login(ctx: &Ctx<'_>, req: &Request) -> Result<Answer> {
    let d = &req.data;
    let role_id = Zeroizing::new(required_string(d, "role_id")?);
    let salt = salt(ctx)?;
    let fail = || Err(Error::invalid(INVALID_LOGIN));
    let Some(idx) =
        ctx.get_json::<RoleIdEntry>(&format!("role_id/{}", hmac_hex(&salt, "role_id", &role_id)))?
    else {
        return fail();
    };
    let Some(role) = ctx.get_json::<Role>(&role_key(&idx.name))? else {
        return fail();
    };
    if !ct_eq(&role.role_id, &role_id) {
        return fail();
    }
    let name = idx.name;
    let lockouts = ctx.lockouts;
    let accessor = &ctx.mount.accessor;
    let remote = req.connection.remote_addr.map(|a| a.ip());
    let checked = check_secret_id(ctx, req, &role, &name, &salt, remote, |ok| {
        // Decided before a use is spent: a locked role ID spends nothing.
        ok && !lockouts.is_locked(accessor, &role_id, ctx.now)
    })?;
    let secret_meta = match checked {
        Some(meta) if cidrs_allow(role.secret_id_bound_cidrs.as_deref(), remote)? => meta,
        _ => {
            lockouts.record_failure(ctx.barrier, accessor, &role_id, ctx.now)?;
            return fail();
        }
    };
    lockouts.reset(ctx.barrier, accessor, &role_id)?;
    let mut grant = role.token.grant(&name);
    // As Vault: the secret ID's metadata goes onto the token, `role_name` always wins.
    grant.meta.extend(secret_meta);
    grant.meta.insert("role_name".into(), name);
    Ok(Answer::Login(grant))
}

/// Checks (and spends one use of) the presented secret ID when the role binds one.
/// `admit` sees whether the secret ID is valid and has the last word before a use is
/// spent. Admitted: the secret ID's metadata (empty when the role binds none).
fn check_secret_id(
    ctx: &Ctx<'_>,
    req: &Request,
    role: &Role,
    name: &str,
    salt: &[u8],
    remote: Option<IpAddr>,
    admit: impl FnOnce(bool) -> bool,
) -> Result<Option<BTreeMap<String, String>>> {
    let admitted = |ok: bool| ok.then(BTreeMap::new);
    if !role.bind_secret_id {
        return Ok(admitted(admit(true)));
    }
    let secret_id = Zeroizing::new(required_string(&req.data, "secret_id")?);
    let h = hmac_hex(salt, "secret_id", &secret_id);
    let key = format!("secret_id/{name}/{h}");
    let _g = ctx.lock(&key);
    let Some(mut e) = ctx.get_json::<SecretIdEntry>(&key)? else {
        return Ok(admitted(admit(false)));
    };
    if e.expiration > 0 && unix(ctx.now) >= e.expiration {
        destroy_secret_id(ctx, name, &h)?;
        return Ok(admitted(admit(false)));
    }
    let cidr_ok = e.cidr_list.is_empty() || cidrs_allow(Some(&e.cidr_list), remote)?;
    if !admit(cidr_ok) {
        return Ok(None);
    }
    match e.num_uses {
        0 => {}
        1 => destroy_secret_id(ctx, name, &h)?,
        n => {
            e.num_uses = n - 1;
            e.last_updated_time = rfc3339(ctx.now);
            ctx.apply(vec![ctx.put_op(&key, &e)?])?;
        }
    }
    Ok(Some(e.metadata))
}

/// Whether `remote` is inside one of `blocks` (no blocks: everyone; no address: no one).
fn cidrs_allow(blocks: Option<&[String]>, remote: Option<IpAddr>) -> Result<bool> {
    let Some(blocks) = blocks.filter(|b| !b.is_empty()) else {
        return Ok(true);
    };
    let Some(ip) = remote else {
        return Ok(false);
    };
    for b in blocks {
        if Cidr::parse(b)?.contains(ip) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// An IPv4 or IPv6 network (`10.0.0.0/8`; a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(s: &str) -> Result<Cidr> {
        let bad = || Error::invalid("invalid CIDR block");
        let (a, p) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { addr, prefix })
    }

    fn bits(ip: IpAddr) -> (u128, u8) {
        match ip {
            IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
            IpAddr::V6(v) => match v.to_ipv4_mapped() {
                Some(v4) => (u128::from(u32::from(v4)), 32),
                None => (u128::from(v), 128),
            },
        }
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let (net, width) = Self::bits(self.addr);
        let (ip, ip_width) = Self::bits(ip);
        if width != ip_width {
            return false;
        }
        let shift = u32::from(width - self.prefix.min(width));
        if shift >= 128 {
            return true;
        }
        (net >> shift) == (ip >> shift)
    }

    fn contains_block(&self, other: &Cidr) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_matching() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            Cidr::parse("127.0.0.1")
                .unwrap()
                .contains("127.0.0.1".parse().unwrap())
        );
        assert!(c.contains_block(&Cidr::parse("10.1.5.0/24").unwrap()));
        assert!(!c.contains_block(&Cidr::parse("10.0.0.0/8").unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
    }

    /// A stored salt that is not hex is damage naming the salt's storage key, not
    /// the bare "corrupt record in storage".
    #[test]
    fn stored_salt_that_is_not_hex_is_an_integrity_error_naming_it() {
        let (vault, _) = crate::Vault::dev(None).unwrap();
        let core = &vault.core;
        let mounts = core.mounts.read();
        let mount = mounts.get("secret/").unwrap();
        let ctx = core.ctx(mount, mount.view_prefix());
        core.barrier
            .put(&ctx.key("salt"), br#"{"key":"not hex"}"#)
            .unwrap();
        match salt(&ctx) {
            Err(crate::Error::Integrity(e)) => {
                assert_eq!(e.key(), Some(ctx.key("salt").as_str()));
                assert_eq!(e.kind(), crate::IntegrityKind::Malformed);
            }
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("a salt from damaged storage"),
        }
    }
}
