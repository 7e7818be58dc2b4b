//! `keys/`, `keys/<name>`, `keys/<name>/config`, `keys/<name>/rotate` and
//! `keys/<name>/trim` (OpenBao's path_keys.go, path_keys_config.go, path_rotate.go,
//! path_trim.go).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::policy::{HMAC_MAX_KEY_SIZE, HMAC_MIN_KEY_SIZE, KeyType, Policy};
use super::{
    TransitCtx, bad, bool_field, int_field, load, load_owned, now, op_error, remove, save,
    str_field,
};
use crate::kv::list_response;
use crate::{Response, Result};

/// The smallest `auto_rotate_period` besides 0 (OpenBao: one hour).
const MIN_AUTO_ROTATE: i64 = 3600;

pub(super) fn list(ctx: &TransitCtx<'_>) -> Result<Response> {
    list_response(ctx.list("policy/")?)
}

/// What a new key is asked to be.
pub(super) struct NewKey {
    pub kind: KeyType,
    pub derived: bool,
    pub convergent: bool,
    pub exportable: bool,
    pub allow_plaintext_backup: bool,
    pub auto_rotate_period: i64,
    pub key_size: i64,
}

/// Creates and stores a key (the caller holds the name's lock and saw it absent).
pub(super) fn create(ctx: &TransitCtx<'_>, name: &str, k: &NewKey) -> Result<Policy> {
    let kind = k.kind;
    if k.convergent && !k.derived {
        return Err(bad(
            "convergent encryption requires derivation to be enabled",
        ));
    }
    if (kind.is_ecdsa() || kind.is_rsa() || kind == KeyType::Hmac) && (k.derived || k.convergent) {
        return Err(bad(format!(
            "key derivation and convergent encryption not supported for keys of type {}",
            kind.as_str()
        )));
    }
    if kind == KeyType::Ed25519 && k.convergent {
        return Err(bad(format!(
            "convergent encryption not supported for keys of type {}",
            kind.as_str()
        )));
    }
    let mut p = Policy {
        name: name.to_owned(),
        kind: kind.as_str().to_owned(),
        derived: k.derived,
        convergent_encryption: k.convergent,
        keys: BTreeMap::new(),
        latest_version: 0,
        min_decryption_version: 1,
        min_encryption_version: 0,
        min_available_version: 0,
        deletion_allowed: false,
        exportable: k.exportable,
        allow_plaintext_backup: k.allow_plaintext_backup,
        auto_rotate_period: k.auto_rotate_period,
        key_size: if kind == KeyType::Hmac {
            if k.key_size == 0 { 32 } else { k.key_size }
        } else {
            0
        },
        backup_info: None,
        restore_info: None,
    };
    let (t, unix) = now(ctx);
    p.rotate(&t, unix).map_err(op_error)?;
    save(ctx, &p)?;
    Ok(p)
}

pub(super) fn write(ctx: &TransitCtx<'_>, name: &str, d: &Map<String, Value>) -> Result<Response> {
    let derived = bool_field(d, "derived")?;
    let convergent = bool_field(d, "convergent_encryption")?;
    let type_name = match str_field(d, "type")?.as_str() {
        "" => "aes256-gcm96".to_owned(),
        t => t.to_owned(),
    };
    let key_size = int_field(d, "key_size")?.unwrap_or(0);
    let auto_rotate_period = auto_rotate(d)?.unwrap_or(0);
    if auto_rotate_period != 0 && auto_rotate_period < MIN_AUTO_ROTATE {
        return Err(bad(
            "auto rotate period must be 0 to disable or at least an hour",
        ));
    }
    if !derived && convergent {
        return Err(bad(
            "convergent encryption requires derivation to be enabled",
        ));
    }
    // The type is not echoed when unknown: a value typed into the wrong field could
    // be a secret (docs/compat.md).
    let kind = KeyType::parse(&type_name).ok_or_else(|| bad("unknown key type"))?;
    if kind == KeyType::Hmac && key_size == 0 {
        return Err(bad(
            "invalid key size for HMAC key, must be between 32 and 512 bytes",
        ));
    }
    if key_size != 0 {
        if kind != KeyType::Hmac {
            return Err(bad(format!(
                "key_size is not valid for algorithm {}",
                kind.as_str()
            )));
        }
        if !(HMAC_MIN_KEY_SIZE..=HMAC_MAX_KEY_SIZE).contains(&key_size) {
            return Err(bad(format!("invalid key_size {key_size}")));
        }
    }
    let _guard = ctx.lock(&format!("policy/{name}"));
    // An existing key is answered as it is; the request's settings are ignored (as
    // OpenBao, which warns of nothing here).
    if let Some(p) = load(ctx, name)? {
        return format_policy(&p, &[]);
    }
    let p = create(
        ctx,
        name,
        &NewKey {
            kind,
            derived,
            convergent,
            exportable: bool_field(d, "exportable")?,
            allow_plaintext_backup: bool_field(d, "allow_plaintext_backup")?,
            auto_rotate_period,
            key_size,
        },
    )?;
    format_policy(&p, &[])
}

fn auto_rotate(d: &Map<String, Value>) -> Result<Option<i64>> {
    Ok(crate::fields::opt_duration(d, "auto_rotate_period")?.map(|s| s as i64))
}

pub(super) fn read(ctx: &TransitCtx<'_>, name: &str, d: &Map<String, Value>) -> Result<Response> {
    let Some(p) = load(ctx, name)? else {
        return Err(crate::Error::NotFound);
    };
    let context = str_field(d, "context")?;
    let context = if context.is_empty() {
        Vec::new()
    } else {
        super::b64_decode(&context).map_err(|_| bad("failed to base64-decode context"))?
    };
    format_policy(&p, &context)
}

/// A key as OpenBao shows it (`formatKeyPolicy`): settings, capabilities, and the
/// versions (creation times; public keys for asymmetric types). Never key material.
pub(super) fn format_policy(p: &Policy, context: &[u8]) -> Result<Response> {
    let kind = p.key_type();
    let mut m = json!({
        "name": p.name,
        "type": kind.as_str(),
        "derived": p.derived,
        "deletion_allowed": p.deletion_allowed,
        "min_available_version": p.min_available_version,
        "min_decryption_version": p.min_decryption_version,
        "min_encryption_version": p.min_encryption_version,
        "latest_version": p.latest_version,
        "exportable": p.exportable,
        "allow_plaintext_backup": p.allow_plaintext_backup,
        "supports_encryption": kind.encryption_supported(),
        "supports_decryption": kind.encryption_supported(),
        "supports_signing": kind.signing_supported(),
        "supports_derivation": kind.derivation_supported(),
        "auto_rotate_period": p.auto_rotate_period,
        "imported_key": false,
        "soft_deleted": false,
    });
    let obj = m.as_object_mut().expect("object literal");
    if p.key_size != 0 {
        obj.insert("key_size".into(), json!(p.key_size));
    }
    for (field, info) in [
        ("backup_info", &p.backup_info),
        ("restore_info", &p.restore_info),
    ] {
        if let Some(i) = info {
            obj.insert(field.into(), json!({"time": i.time, "version": i.version}));
        }
    }
    if p.derived {
        obj.insert("kdf".into(), json!("hkdf_sha256"));
        obj.insert(
            "convergent_encryption".into(),
            json!(p.convergent_encryption),
        );
        if p.convergent_encryption {
            obj.insert("convergent_encryption_version".into(), json!(-1));
        }
    }
    let mut keys = Map::new();
    for (ver, k) in &p.keys {
        let v = if kind.is_symmetric() || kind == KeyType::Hmac {
            json!(k.time)
        } else {
            let name = match kind {
                KeyType::EcdsaP256 => "P-256",
                KeyType::EcdsaP384 => "P-384",
                KeyType::EcdsaP521 => "P-521",
                other => other.as_str(),
            };
            let public_key = if kind == KeyType::Ed25519 && p.derived {
                if context.is_empty() {
                    String::new()
                } else {
                    p.derived_ed25519_public(context, *ver).map_err(op_error)?
                }
            } else {
                p.formatted_public_key(*ver).map_err(op_error)?
            };
            json!({
                "name": name,
                "public_key": public_key,
                "certificate_chain": "",
                "creation_time": k.creation_time,
            })
        };
        keys.insert(ver.to_string(), v);
    }
    // OpenBao reports no `keys` for HMAC keys.
    if kind != KeyType::Hmac {
        obj.insert("keys".into(), Value::Object(keys));
    }
    Ok(Response::with_data(obj.clone()))
}

pub(super) fn delete(ctx: &TransitCtx<'_>, name: &str) -> Result<Response> {
    let _guard = ctx.lock(&format!("policy/{name}"));
    let Some(p) = load(ctx, name)? else {
        return Err(bad(format!(
            "error deleting policy {name}: could not delete key; not found"
        )));
    };
    if !p.deletion_allowed {
        return Err(bad(format!(
            "error deleting policy {name}: deletion is not allowed for this key"
        )));
    }
    remove(ctx, name)?;
    Ok(Response::empty())
}

pub(super) fn rotate(ctx: &TransitCtx<'_>, name: &str) -> Result<Response> {
    let _guard = ctx.lock(&format!("policy/{name}"));
    let mut p = load_owned(ctx, name)?.ok_or_else(|| bad("key not found"))?;
    let (t, unix) = now(ctx);
    p.rotate(&t, unix).map_err(op_error)?;
    save(ctx, &p)?;
    format_policy(&p, &[])
}

pub(super) fn config(ctx: &TransitCtx<'_>, name: &str, d: &Map<String, Value>) -> Result<Response> {
    let _guard = ctx.lock(&format!("policy/{name}"));
    let mut p = load_owned(ctx, name)?
        .ok_or_else(|| bad(format!("no existing key named {name} could be found")))?;
    let mut warning = None;
    let mut changed = false;
    if let Some(v) = int_field(d, "min_decryption_version")? {
        if v < 0 {
            return Err(bad("min decryption version cannot be negative"));
        }
        let v = if v == 0 {
            warning = Some(
                "since Vault 0.3 (prior to the OpenBao fork), transit key numbering starts at 1; forcing minimum to 1",
            );
            1
        } else {
            v
        };
        if v != p.min_decryption_version {
            if v > p.latest_version {
                return Err(bad(format!(
                    "cannot set min decryption version of {v}, latest key version is {}",
                    p.latest_version
                )));
            }
            p.min_decryption_version = v;
            changed = true;
        }
    }
    if let Some(v) = int_field(d, "min_encryption_version")? {
        if v < 0 {
            return Err(bad("min encryption version cannot be negative"));
        }
        if v != p.min_encryption_version {
            if v > p.latest_version {
                return Err(bad(format!(
                    "cannot set min encryption version of {v}, latest key version is {}",
                    p.latest_version
                )));
            }
            p.min_encryption_version = v;
            changed = true;
        }
    }
    if p.min_encryption_version > 0 && p.min_encryption_version < p.min_decryption_version {
        return Err(bad(format!(
            "cannot set min encryption/decryption values; min encryption version of {} must be greater than or equal to min decryption version of {}",
            p.min_encryption_version, p.min_decryption_version
        )));
    }
    if let Some(v) = crate::fields::opt_bool(d, "deletion_allowed")?
        && v != p.deletion_allowed
    {
        p.deletion_allowed = v;
        changed = true;
    }
    // Exportable and plaintext backup can be turned on, never off (as OpenBao).
    if crate::fields::opt_bool(d, "exportable")? == Some(true) && !p.exportable {
        p.exportable = true;
        changed = true;
    }
    if crate::fields::opt_bool(d, "allow_plaintext_backup")? == Some(true)
        && !p.allow_plaintext_backup
    {
        p.allow_plaintext_backup = true;
        changed = true;
    }
    if let Some(v) = auto_rotate(d)? {
        if v != 0 && v < MIN_AUTO_ROTATE {
            return Err(bad(
                "auto rotate period must be 0 to disable or at least an hour",
            ));
        }
        if v != p.auto_rotate_period {
            p.auto_rotate_period = v;
            changed = true;
        }
    }
    if changed {
        if p.min_available_version > p.min_encryption_version {
            return Err(bad(
                "min encryption version should not be less than min available version",
            ));
        }
        if p.min_available_version > p.min_decryption_version {
            return Err(bad(
                "min decryption version should not be less then min available version",
            ));
        }
        save(ctx, &p)?;
    }
    let mut resp = format_policy(&p, &[])?;
    if let Some(w) = warning {
        resp.warnings.push(w.into());
    }
    Ok(resp)
}

pub(super) fn trim(ctx: &TransitCtx<'_>, name: &str, d: &Map<String, Value>) -> Result<Response> {
    let _guard = ctx.lock(&format!("policy/{name}"));
    let mut p = load_owned(ctx, name)?.ok_or_else(|| bad("invalid key name"))?;
    let Some(v) = int_field(d, "min_available_version")? else {
        return Err(bad("missing min_available_version"));
    };
    let msg = if v < p.min_available_version {
        Some("minimum available version cannot be decremented")
    } else if p.min_encryption_version == 0 {
        Some("minimum available version cannot be set when minimum encryption version is not set")
    } else if p.min_decryption_version == 0 {
        Some("minimum available version cannot be set when minimum decryption version is not set")
    } else if v > p.min_encryption_version {
        Some("minimum available version cannot be greater than minmum encryption version")
    } else if v > p.min_decryption_version {
        Some("minimum available version cannot be greater than minimum decryption version")
    } else if v < 0 {
        Some("minimum available version cannot be negative")
    } else if v == 0 {
        Some("minimum available version should be positive")
    } else {
        None
    };
    if let Some(msg) = msg {
        return Err(bad(msg));
    }
    p.min_available_version = v;
    p.keys.retain(|ver, _| *ver >= v);
    save(ctx, &p)?;
    format_policy(&p, &[])
}
