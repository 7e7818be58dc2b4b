//! The `sys/` backend: health, init, seal and unseal, and the mount table.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};

use crate::barrier::{Cipher, decode_share};
use crate::engine::{Existence, SpecialPaths};
use crate::kv::{opt_bool, opt_u64};
use crate::mounts::MountEntry;
use crate::mounts::{apply_tune, new_entry, normalize_mount_path};
use crate::policy::Acl;
use crate::vault::{Core, Handler};

mod audit;
mod auth;
mod generate_root;
mod host_info;
mod notify;
pub(crate) mod operator;
mod policy;
mod rekey;
mod remount;
pub(crate) mod rotation;
pub(crate) mod snapshot;
mod verify;
pub(crate) mod wrapping;
use crate::{Error, Operation, Request, Response, ResponseFormat, Result};
pub use verify::StorageReport;

/// The `sys/` backend's root-protected paths (relative to `sys/`): Vault's, which
/// need `sudo` besides the operation's capability.
pub(crate) const SPECIAL: SpecialPaths = SpecialPaths {
    unauthenticated: &[],
    root: &[
        "seal",
        "audit",
        "audit/*",
        "rotate",
        "rotate/keyring",
        "remount",
        "host-info",
        "step-down",
        "storage/verify",
        "lockana/audit-head*",
        "raw*",
    ],
    root_writes: &["auth/*"],
};

/// Paths served without a token, even while sealed.
pub(crate) fn is_unauthenticated(path: &str) -> bool {
    matches!(
        path,
        "sys/health" | "sys/seal-status" | "sys/init" | "sys/unseal" | "sys/leader"
    ) || operator::is_unauthenticated(path)
}

/// The handler of a `sys/` request whose credential is in its body: completing a
/// two-step MFA login (`sys/mfa/validate`), and `sys/wrapping/{unwrap,lookup,rewrap}`,
/// which take the wrapping token in the body or as the request's token.
pub(crate) fn tokenless(req: &Request) -> Option<Handler> {
    let write = matches!(req.operation, Operation::Update | Operation::Create);
    Some(match req.path.as_str() {
        "sys/mfa/validate" | "sys/mfa/validate/" if write => crate::identity::mfa::validate,
        "sys/wrapping/unwrap" if write => wrapping::unwrap,
        "sys/wrapping/lookup" if write || req.operation == Operation::Read => wrapping::lookup,
        "sys/wrapping/rewrap" if write => wrapping::rewrap,
        _ => return None,
    })
}

/// The existence check of a write below `sys/` (`rest`): policies tell create from
/// update.
pub(crate) fn existence(core: &Core, rest: &str) -> Existence {
    match rest
        .strip_prefix("policies/acl/")
        .or_else(|| rest.strip_prefix("policy/"))
    {
        Some(name) => Existence::found(
            crate::policy::normalize_name(name).is_ok_and(|n| core.policies.get(&n).is_some()),
        ),
        None => Existence::NoCheck,
    }
}

/// The version string Lockana reports where Vault reports its own.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

pub(crate) fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

pub(crate) fn sys_response(data: Map<String, Value>) -> Response {
    let mut r = Response::with_data(data);
    r.mount_type = "system".into();
    r
}

fn seal_status_json(core: &Core) -> Map<String, Value> {
    let s = core.seal_status();
    let (_, nonce) = core.barrier.progress();
    let kind = core.barrier.seal_kind();
    let mut m = obj(json!({
        "type": kind,
        "initialized": s.initialized,
        "sealed": s.sealed,
        "t": s.threshold,
        "n": s.shares,
        "progress": s.progress,
        "nonce": nonce,
        "version": VERSION,
        "build_date": "",
        "migration": false,
        "recovery_seal": kind != "shamir",
        "storage_type": core.barrier.storage_kind(),
    }));
    if !s.sealed {
        m.insert(
            "cluster_name".into(),
            json!(core.cluster_name.read().as_str()),
        );
        m.insert("cluster_id".into(), json!(cluster_id(core)));
    }
    m
}

fn cluster_id(core: &Core) -> String {
    core.barrier
        .seal_config()
        .ok()
        .flatten()
        .map(|c| c.nonce_seed.clone())
        .unwrap_or_default()
}

/// Paths that answer without a token (and while sealed).
pub(crate) fn handle_unauthenticated(core: &Core, req: &Request) -> Result<Response> {
    match (req.path.as_str(), req.operation) {
        ("sys/health", Operation::Read) => health(core, &req.data),
        ("sys/seal-status", Operation::Read) => Ok(Response::raw(seal_status_json(core))),
        ("sys/leader", Operation::Read) => Ok(Response::raw(match &core.ha {
            Some(ha) => ha.leader_json(),
            None => obj(json!({
                "ha_enabled": false,
                "is_self": false,
                "active_time": "0001-01-01T00:00:00Z",
                "leader_address": "",
                "leader_cluster_address": "",
                "performance_standby": false,
                "performance_standby_last_remote_wal": 0,
            })),
        })),
        ("sys/init", Operation::Read) => Ok(Response::raw(obj(
            json!({"initialized": core.seal_status().initialized}),
        ))),
        ("sys/init", Operation::Create | Operation::Update) => init(core, &req.data),
        ("sys/unseal", Operation::Create | Operation::Update) => unseal(core, &req.data),
        (p, _) if operator::is_unauthenticated(p) => operator::handle_unauthenticated(core, req),
        _ => Err(Error::UnsupportedOperation),
    }
}

fn health(core: &Core, q: &Map<String, Value>) -> Result<Response> {
    let s = core.seal_status();
    let code = |name: &str, default: u16| -> Result<u16> {
        match opt_u64(q, name)? {
            Some(c) if (100..=599).contains(&c) => Ok(c as u16),
            Some(_) => Err(Error::invalid(format!(
                "'{name}' must be an HTTP status code"
            ))),
            None => Ok(default),
        }
    };
    // Validate every override so a typo is an error whatever the state.
    let (active, uninit, sealed) = (
        code("activecode", 200)?,
        code("uninitcode", 501)?,
        code("sealedcode", 503)?,
    );
    let standby_code = code("standbycode", 429)?;
    let _ = code("perfstandbyokcode", 473)?;
    let standby_ok = opt_bool(q, "standbyok")?.unwrap_or(false);
    // An unsealed HA node that is not active (OpenBao: `core.Standby()`).
    let standby = !s.sealed && core.ha.as_ref().is_some_and(|h| !h.is_active());
    let status = if !s.initialized {
        uninit
    } else if s.sealed {
        sealed
    } else if standby && !standby_ok {
        standby_code
    } else {
        active
    };
    let mut r = Response::raw(obj(json!({
        "initialized": s.initialized,
        "sealed": s.sealed,
        "standby": standby,
        "performance_standby": false,
        "replication_performance_mode": "disabled",
        "replication_dr_mode": "disabled",
        "server_time_utc": core.now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "version": VERSION,
        "enterprise": false,
        "cluster_name": if s.sealed { Value::Null } else { json!(core.cluster_name.read().as_str()) },
        "cluster_id": if s.sealed { Value::Null } else { json!(cluster_id(core)) },
    })));
    r.status = Some(status);
    Ok(r)
}

fn init(core: &Core, d: &Map<String, Value>) -> Result<Response> {
    if d.get("pgp_keys").is_some_and(|v| !v.is_null())
        || d.get("root_token_pgp_key")
            .is_some_and(|v| v.as_str().is_some_and(|s| !s.is_empty()))
    {
        return Err(Error::invalid(
            "PGP-encrypted unseal keys are not supported by Lockana yet; omit pgp_keys and root_token_pgp_key",
        ));
    }
    let small = |name: &str| -> Result<u8> {
        let v = opt_u64(d, name)?.ok_or_else(|| Error::invalid(format!("'{name}' is required")))?;
        u8::try_from(v).map_err(|_| Error::invalid(format!("'{name}' must be at most 255")))
    };
    // With an auto-unseal seal the shares are recovery keys, asked for as Vault asks:
    // `recovery_shares`/`recovery_threshold`, and the barrier's parameters refused.
    let recovery = core.barrier.has_seal();
    let (shares_key, threshold_key) = if recovery {
        let mut misplaced = Vec::new();
        for name in ["secret_shares", "secret_threshold"] {
            if opt_u64(d, name)?.is_some_and(|n| n != 0) {
                misplaced.push(name);
            }
        }
        if !misplaced.is_empty() {
            return Err(Error::invalid(format!(
                "parameters {} not applicable to seal type {}",
                misplaced.join(","),
                core.barrier.seal_kind()
            )));
        }
        ("recovery_shares", "recovery_threshold")
    } else {
        ("secret_shares", "secret_threshold")
    };
    let shares = small(shares_key)?;
    let threshold = small(threshold_key)?;
    let cipher = match d.get("cipher") {
        None | Some(Value::Null) => Cipher::default(),
        Some(Value::String(s)) => Cipher::from_name(s).ok_or_else(|| {
            Error::invalid(
                "unknown cipher: use chacha20-poly1305, xchacha20-poly1305 or aes-256-gcm",
            )
        })?,
        Some(_) => return Err(Error::invalid("'cipher' must be a string")),
    };
    let result = core.init(shares, threshold, cipher, None)?;
    let keys: Vec<String> = result.keys.iter().map(|k| hex::encode(&k[..])).collect();
    let keys_b64: Vec<String> = result.keys.iter().map(|k| B64.encode(&k[..])).collect();
    if recovery {
        return Ok(Response::raw(obj(json!({
            "keys": [],
            "keys_base64": [],
            "recovery_keys": keys,
            "recovery_keys_base64": keys_b64,
            "root_token": result.root_token.expose(),
        }))));
    }
    Ok(Response::raw(obj(json!({
        "keys": keys,
        "keys_base64": keys_b64,
        "root_token": result.root_token.expose(),
    }))))
}

fn unseal(core: &Core, d: &Map<String, Value>) -> Result<Response> {
    if !core.seal_status().initialized {
        return Err(Error::invalid("Vault is not initialized"));
    }
    if opt_bool(d, "reset")? == Some(true) {
        core.barrier.reset_progress();
        return Ok(Response::raw(seal_status_json(core)));
    }
    let key = match d.get("key") {
        Some(Value::String(s)) if !s.is_empty() => s,
        _ => {
            return Err(Error::invalid(
                "'key' must be specified in request body as JSON, or 'reset' set to true",
            ));
        }
    };
    core.submit_share(decode_share(key)?)?;
    Ok(Response::raw(seal_status_json(core)))
}

/// Authenticated `sys/` paths; `rest` is the path after `sys/`.
pub(crate) fn handle(core: &Core, req: &Request, rest: &str, acl: &Acl) -> Result<Response> {
    let op = req.operation;
    let d = &req.data;
    match (rest, op) {
        ("seal", Operation::Create | Operation::Update) => {
            core.seal();
            Ok(Response::empty())
        }
        // Answered (and audited) first; then the election thread gives the lock up,
        // as Vault does.
        ("step-down", Operation::Create | Operation::Update) => {
            crate::ha::step_down_after_response();
            Ok(Response::empty())
        }
        ("ha-status", Operation::Read) => match &core.ha {
            Some(ha) => Ok(sys_response(obj(json!({"nodes": ha.nodes_json()})))),
            None => Err(Error::invalid(
                "high availability is not enabled on this node",
            )),
        },
        ("mounts", Operation::Read) => {
            let mounts = core.mounts.read();
            let mut m = Map::new();
            for e in mounts.entries() {
                m.insert(e.path.clone(), e.to_json());
            }
            insert_builtin_mounts(core, &mut m);
            let mut r = sys_response(m);
            r.format = ResponseFormat::EnvelopeWithTopLevelData;
            Ok(r)
        }
        ("internal/ui/mounts", Operation::Read) => {
            let mounts = core.mounts.read();
            let mut secret = Map::new();
            for e in mounts.entries() {
                secret.insert(e.path.clone(), e.to_json());
            }
            insert_builtin_mounts(core, &mut secret);
            Ok(sys_response(obj(
                json!({"secret": secret, "auth": auth::auth_mounts_json(core)}),
            )))
        }
        // The table itself is read-only: mounts change through `sys/mounts/<path>`.
        ("mounts", _) => Err(Error::UnsupportedOperation),
        ("auth", Operation::Read) => Ok(auth::list(core)),
        ("rotate" | "rotate/keyring", _) => rotation::rotate(core, req),
        ("rotate/keyring/config" | "rotate/config", _) => rotation::handle_config(core, req),
        ("remount", _) => remount::remount(core, req),
        ("host-info" | "host-info/", _) => host_info::handle(core, req),
        // The check (token, policy, audit) is the vault's; the transport renders
        // `Vault::metrics` in the format asked for.
        ("metrics", Operation::Read) => Ok(Response::empty()),
        ("metrics", _) => Err(Error::UnsupportedOperation),
        ("rekey/backup" | "rekey/recovery-key-backup", _) => rekey::backup(req),
        ("key-status", Operation::Read) => {
            let (term, installed) = core.barrier.key_status()?;
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(installed);
            Ok(sys_response(obj(json!({
                "term": term,
                "install_time": crate::clock::rfc3339(at),
                "encryptions": 0,
            }))))
        }
        ("wrapping/wrap", Operation::Update | Operation::Create) => wrapping::wrap_data(core, req),
        ("storage/verify", _) => verify::handle(core, req),
        ("storage/raft/snapshot" | "storage/raft/snapshot-force", _) => {
            snapshot::handle(core, req, rest)
        }
        ("policies/acl" | "policies/acl/", _) => policy::handle(core, req, None, false),
        ("policy" | "policy/", _) => policy::handle(core, req, None, true),
        ("capabilities" | "capabilities-self" | "capabilities-accessor", _) => {
            policy::capabilities(core, req, rest, acl)
        }
        _ => {
            if rest == "audit" || rest.starts_with("audit/") || rest.starts_with("audit-hash/") {
                return audit::handle(core, req, rest);
            }
            if rest == "lockana/audit-head" || rest.starts_with("lockana/audit-head/") {
                return audit::head(core, req, rest);
            }
            if let Some(p) = rest.strip_prefix("lockana/notify/") {
                return notify::handle(core, req, p);
            }
            if let Some(p) = rest.strip_prefix("locked-users") {
                return crate::auth::lockout::sys_handle(
                    &core.lockouts,
                    &core.barrier,
                    req,
                    p,
                    core.now(),
                );
            }
            if let Some(p) = rest.strip_prefix("internal/ui/mounts/") {
                return ui_mount(core, p);
            }
            if let Some(p) = rest.strip_prefix("rotate/root/") {
                return match p {
                    "backup" => rekey::backup(req),
                    _ => rekey::handle(core, req, p, rekey::Shape::Envelope),
                };
            }
            if let Some(id) = rest.strip_prefix("remount/status/") {
                return remount::status(core, req, id);
            }
            if let Some(p) = rest.strip_prefix("generate-root-token/") {
                return generate_root::handle_authenticated(core, req, p);
            }
            if let Some(p) = rest.strip_prefix("mounts/") {
                return mounts(core, req, p);
            }
            if let Some(p) = rest.strip_prefix("auth/") {
                return auth::handle(core, req, p);
            }
            if let Some(name) = rest.strip_prefix("policies/acl/") {
                return policy::handle(core, req, Some(name), false);
            }
            if let Some(name) = rest.strip_prefix("policy/") {
                return policy::handle(core, req, Some(name), true);
            }
            let _ = (d, op);
            Err(Error::NoRoute(req.path.clone()))
        }
    }
}

/// A built-in mount's uuid and accessor: Vault gives every mount real ones, and the
/// built-in mounts are not in the table, so they are derived from the vault's own id
/// (stable across restarts, different between vaults).
fn builtin_ids(core: &Core, kind: &str, path: &str) -> (String, String) {
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update(cluster_id(core).as_bytes())
        .chain_update([0])
        .chain_update(path.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    let uuid = uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string();
    let accessor = format!("{kind}_{}", &uuid[..8]);
    (uuid, accessor)
}

/// `sys/` and `identity/`, which Vault lists with the mounts although no one mounts them.
fn insert_builtin_mounts(core: &Core, m: &mut Map<String, Value>) {
    m.insert(
        "identity/".into(),
        builtin_mount_json(
            core,
            "identity",
            "identity/",
            "identity store",
            "Authorization",
            false,
        ),
    );
    m.insert(
        "sys/".into(),
        builtin_mount_json(
            core,
            "system",
            "sys/",
            "system endpoints used for control, policy and debugging",
            "Accept",
            true,
        ),
    );
}

fn builtin_mount_json(
    core: &Core,
    kind: &str,
    path: &str,
    description: &str,
    passthrough_header: &str,
    seal_wrap: bool,
) -> Value {
    let (uuid, accessor) = builtin_ids(core, kind, path);
    json!({
        "accessor": accessor,
        "config": {"default_lease_ttl": 0, "force_no_cache": false, "max_lease_ttl": 0, "passthrough_request_headers": [passthrough_header]},
        "description": description,
        "external_entropy_access": false,
        "local": false,
        "options": null,
        "plugin_version": "",
        "running_plugin_version": format!("v{VERSION}+builtin.lockana"),
        "running_sha256": "",
        "seal_wrap": seal_wrap,
        "type": kind,
        "uuid": uuid,
    })
}

pub(crate) fn token_auth_json(core: &Core) -> Value {
    let (uuid, accessor) = builtin_ids(core, "auth_token", "auth/token/");
    json!({
        "accessor": accessor,
        "config": {"default_lease_ttl": 0, "force_no_cache": false, "max_lease_ttl": 0, "token_type": "default-service"},
        "description": "token based credentials",
        "external_entropy_access": false,
        "local": false,
        "options": null,
        "plugin_version": "",
        "running_plugin_version": format!("v{VERSION}+builtin.lockana"),
        "running_sha256": "",
        "seal_wrap": false,
        "type": "token",
        "uuid": uuid,
    })
}

/// `sys/internal/ui/mounts` for a caller without a valid token.
pub(crate) fn empty_ui_mounts() -> Response {
    sys_response(obj(json!({"secret": {}, "auth": {}})))
}

/// `sys/internal/ui/mounts/<path>`: the mount serving `path` (the CLI uses this to
/// learn a KV mount's version).
fn ui_mount(core: &Core, path: &str) -> Result<Response> {
    let mounts = core.mounts.read();
    let e = mounts.route(path).ok_or(Error::PermissionDenied)?;
    let mut m = obj(e.to_json());
    m.insert("path".into(), json!(e.path));
    Ok(sys_response(m))
}

/// A `.../tune` read: the mount's TTLs (0 shown as the system default) and settings,
/// plus one field that differs between secrets engines and auth methods.
pub(crate) fn tune_response(
    system: &crate::mounts::SystemTtls,
    entry: &MountEntry,
    extra_key: &str,
    extra: Value,
) -> Response {
    let or_system = |ttl: u64, system: u64| if ttl == 0 { system } else { ttl };
    let mut m = obj(json!({
        "default_lease_ttl": or_system(entry.config.default_lease_ttl, system.default_ttl()),
        "max_lease_ttl": or_system(entry.config.max_lease_ttl, system.max_ttl()),
        "force_no_cache": entry.config.force_no_cache,
        "description": entry.description,
    }));
    m.insert(extra_key.into(), extra);
    let mut r = sys_response(m);
    r.format = ResponseFormat::EnvelopeWithTopLevelData;
    r
}

fn mounts(core: &Core, req: &Request, p: &str) -> Result<Response> {
    let d = &req.data;
    if let Some(mount) = p.strip_suffix("/tune").or_else(|| p.strip_suffix("/tune/")) {
        // `bao auth tune` goes through `sys/mounts/auth/<path>/tune`, which Vault serves
        // from the auth table, the same as `sys/auth/<path>/tune`.
        if let Some(auth_mount) = mount.strip_prefix("auth/") {
            return auth::handle(core, req, &format!("{auth_mount}/tune"));
        }
        let path = normalize_mount_path(mount)?;
        let mut table = core.mounts.write();
        let mut entry = table
            .get(&path)
            .cloned()
            .ok_or_else(|| Error::invalid(format!("cannot fetch sysview for path \"{path}\"")))?;
        return match req.operation {
            Operation::Read => Ok(tune_response(
                &core.ttls,
                &entry,
                "options",
                json!(entry.options),
            )),
            Operation::Create | Operation::Update => {
                // `force_no_cache` is set at mount time only; Vault's tune ignores it.
                let mut tune = d.clone();
                tune.remove("force_no_cache");
                apply_tune(&mut entry.config, &Value::Object(tune))?;
                if let Some(desc) = crate::fields::opt_string(d, "description")? {
                    entry.description = desc;
                }
                if let Some(Value::Object(opts)) = d.get("options")
                    && let Some(v) = opts.get("version")
                {
                    let v = v
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string());
                    if entry.options.get("version") != Some(&v) {
                        return Err(Error::invalid(
                            "changing a KV mount's version is not supported by Lockana yet; mount a new kv-v2 engine and copy the secrets",
                        ));
                    }
                }
                table.update(&core.barrier, entry)?;
                Ok(Response::empty())
            }
            _ => Err(Error::UnsupportedOperation),
        };
    }
    let path = normalize_mount_path(p)?;
    match req.operation {
        Operation::Read => {
            let table = core.mounts.read();
            let e = table
                .get(&path)
                .ok_or_else(|| Error::invalid(format!("no matching mount at \"{path}\"")))?;
            Ok(sys_response(obj(e.to_json())))
        }
        Operation::Create | Operation::Update => {
            let entry = new_entry(&path, d)?;
            core.enable_mount(&core.mounts, entry)?;
            Ok(Response::empty())
        }
        Operation::Delete => {
            core.disable_mount(&core.mounts, &path)?;
            Ok(Response::empty())
        }
        _ => Err(Error::UnsupportedOperation),
    }
}
