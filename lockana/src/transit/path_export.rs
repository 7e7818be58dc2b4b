//! `export/<type>/<name>[/<version>]`, `backup/<name>` and `restore[/<name>]`
//! (OpenBao's path_export.go, path_backup.go, path_restore.go).
//!
//! A backup is Lockana's own: base64 of the stored key as JSON. It restores on Lockana,
//! not on OpenBao (and OpenBao's backups do not restore here): docs/compat.md.

use aws_lc_rs::encoding::{AsDer, EcPrivateKeyRfc5915Der, Pkcs8V1Der};
use aws_lc_rs::signature;
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::policy::{KeyType, OpError, OpResult, Policy, VersionInfo, der, pem};
use super::{
    TransitCtx, b64, b64_decode, bad, bool_field, load, load_owned, now, op_error, save, str_field,
    valid_name,
};
use crate::{Error, Response, Result};

fn internal<E>(_: E) -> OpError {
    OpError::Internal("internal cryptographic failure".into())
}

pub(super) fn export(
    ctx: &TransitCtx<'_>,
    kind: &str,
    name: &str,
    version: &str,
    d: &Map<String, Value>,
) -> Result<Response> {
    if !matches!(
        kind,
        "encryption-key" | "signing-key" | "hmac-key" | "public-key"
    ) {
        return Err(bad("invalid export type"));
    }
    let format = str_field(d, "format")?;
    if !matches!(format.as_str(), "" | "raw" | "der" | "pem") {
        return Err(bad("invalid format"));
    }
    let Some(p) = load(ctx, name)? else {
        return Err(Error::NotFound);
    };
    let t = p.key_type();
    if !p.exportable && kind != "public-key" {
        return Err(bad("private key material is not exportable"));
    }
    match kind {
        "encryption-key" if !t.encryption_supported() => {
            return Err(bad("encryption not supported for the key"));
        }
        "signing-key" if !t.signing_supported() => {
            return Err(bad("signing not supported for the key"));
        }
        _ => {}
    }
    let mut keys = Map::new();
    if version.is_empty() {
        for ver in p.keys.keys() {
            keys.insert(
                ver.to_string(),
                json!(export_key(&p, *ver, kind, &format).map_err(op_error)?),
            );
        }
    } else {
        let ver = if version == "latest" {
            p.latest_version
        } else {
            version
                .trim_start_matches('v')
                .parse()
                .map_err(|_| bad("invalid key version"))?
        };
        if ver < p.min_decryption_version {
            return Err(bad(
                "version for export is below minimum decryption version",
            ));
        }
        if !p.keys.contains_key(&ver) {
            return Err(bad("version does not exist or cannot be found"));
        }
        keys.insert(
            ver.to_string(),
            json!(export_key(&p, ver, kind, &format).map_err(op_error)?),
        );
    }
    let mut m = Map::new();
    m.insert("name".into(), json!(p.name));
    m.insert("type".into(), json!(t.as_str()));
    m.insert("keys".into(), Value::Object(keys));
    Ok(Response::with_data(m))
}

fn trimmed_pem(label: &str, der: &[u8]) -> String {
    pem(label, der).trim_end().to_owned()
}

/// One version's key in the export format OpenBao gives it.
fn export_key(p: &Policy, ver: i64, kind: &str, format: &str) -> OpResult<String> {
    let t = p.key_type();
    let entry = p.version(ver)?;
    let unknown = |what: &str| {
        OpError::user(format!(
            "unknown key format for {what} key; supported values are ``, `der`, or `pem`"
        ))
    };
    match kind {
        "hmac-key" => {
            if matches!(format, "der" | "pem") {
                return Err(OpError::user(
                    "unknown format for HMAC key; supported values are `` or `raw`",
                ));
            }
            Ok(b64(p.hmac_key(ver)?.bytes()))
        }
        "encryption-key" | "signing-key" if t.is_symmetric() => {
            if matches!(format, "der" | "pem") {
                return Err(OpError::user(
                    "unknown format for HMAC key; supported values are `` or `raw`",
                ));
            }
            Ok(b64(entry.key.bytes()))
        }
        "encryption-key" | "signing-key" if t.is_rsa() => {
            if format == "raw" {
                return Err(unknown("rsa"));
            }
            let pkcs8 = entry.key.bytes();
            Ok(match format {
                "" => {
                    let pkcs1 = der::pkcs8_inner(pkcs8).ok_or_else(|| internal(()))?;
                    pem("RSA PRIVATE KEY", pkcs1)
                }
                "der" => b64(pkcs8),
                _ => pem("PRIVATE KEY", pkcs8),
            })
        }
        "signing-key" if t.is_ecdsa() => {
            if format == "raw" {
                return Err(unknown("ec"));
            }
            let pkcs8 = entry.key.bytes();
            Ok(match format {
                "" => {
                    let alg = match t {
                        KeyType::EcdsaP256 => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                        KeyType::EcdsaP384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
                        _ => &signature::ECDSA_P521_SHA512_ASN1_SIGNING,
                    };
                    let kp = signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8).map_err(internal)?;
                    let sec1: EcPrivateKeyRfc5915Der<'_> =
                        kp.private_key().as_der().map_err(internal)?;
                    trimmed_pem("EC PRIVATE KEY", sec1.as_ref())
                }
                "der" => b64(pkcs8),
                _ => trimmed_pem("PRIVATE KEY", pkcs8),
            })
        }
        "signing-key" if t == KeyType::Ed25519 => {
            if matches!(format, "" | "raw") {
                return Ok(b64(entry.key.bytes()));
            }
            let seed =
                Zeroizing::new(entry.key.bytes()[..32.min(entry.key.bytes().len())].to_vec());
            let kp = signature::Ed25519KeyPair::from_seed_unchecked(&seed).map_err(internal)?;
            let doc: Pkcs8V1Der<'_> = kp.as_der().map_err(internal)?;
            Ok(if format == "der" {
                b64(doc.as_ref())
            } else {
                trimmed_pem("PRIVATE KEY", doc.as_ref())
            })
        }
        "public-key" if t.is_rsa() => {
            if format == "raw" {
                return Err(unknown("rsa"));
            }
            let spki = p.public_key_der(ver)?;
            Ok(if format == "der" {
                b64(&spki)
            } else {
                pem("PUBLIC KEY", &spki)
            })
        }
        "public-key" if t.is_ecdsa() => {
            if format == "raw" {
                return Err(unknown("ec"));
            }
            let spki = p.public_key_der(ver)?;
            Ok(if format == "der" {
                b64(&spki)
            } else {
                trimmed_pem("PUBLIC KEY", &spki)
            })
        }
        "public-key" if t == KeyType::Ed25519 => {
            if matches!(format, "" | "raw") {
                return Ok(entry.public_key.trim().to_owned());
            }
            let spki = p.public_key_der(ver)?;
            Ok(if format == "der" {
                b64(&spki)
            } else {
                trimmed_pem("PUBLIC KEY", &spki)
            })
        }
        _ => Err(OpError::user(format!(
            "unknown key type {} for export type {kind}",
            t.as_str()
        ))),
    }
}

pub(super) fn backup(ctx: &TransitCtx<'_>, name: &str) -> Result<Response> {
    let _guard = ctx.lock(&format!("policy/{name}"));
    let mut p = load_owned(ctx, name)?.ok_or_else(|| bad(format!("key {name:?} not found")))?;
    if !p.exportable {
        return Err(bad("exporting is disallowed on the policy"));
    }
    if !p.allow_plaintext_backup {
        return Err(bad("plaintext backup is disallowed on the policy"));
    }
    let (t, _) = now(ctx);
    p.backup_info = Some(VersionInfo {
        time: t,
        version: p.latest_version,
    });
    save(ctx, &p)?;
    let json = Zeroizing::new(
        serde_json::to_vec(&json!({ "policy": p })).map_err(|_| crate::StorageError::Corrupt)?,
    );
    let mut m = Map::new();
    m.insert("backup".into(), json!(b64(&json)));
    Ok(Response::with_data(m))
}

pub(super) fn restore(
    ctx: &TransitCtx<'_>,
    name: &str,
    d: &Map<String, Value>,
) -> Result<Response> {
    let backup = Zeroizing::new(str_field(d, "backup")?);
    let force = bool_field(d, "force")?;
    if backup.is_empty() {
        return Err(bad("'backup' must be supplied"));
    }
    if !name.is_empty() && !valid_name(name) {
        return Err(bad("key names cannot be paths"));
    }
    let raw = Zeroizing::new(b64_decode(&backup).map_err(bad)?);
    #[derive(serde::Deserialize)]
    struct KeyData {
        policy: Policy,
    }
    let mut data: KeyData =
        serde_json::from_slice(&raw).map_err(|_| bad("failed to decode the backed up key"))?;
    if !data.policy.is_well_formed() {
        return Err(bad("failed to decode the backed up key"));
    }
    let name = if name.is_empty() {
        data.policy.name.clone()
    } else {
        name.to_owned()
    };
    if !valid_name(&name) {
        return Err(bad("failed to decode the backed up key"));
    }
    let _guard = ctx.lock(&format!("policy/{name}"));
    if !force && load(ctx, &name)?.is_some() {
        return Err(bad(format!("key {name:?} already exists")));
    }
    let (t, _) = now(ctx);
    data.policy.name = name;
    data.policy.restore_info = Some(VersionInfo {
        time: t,
        version: data.policy.latest_version,
    });
    save(ctx, &data.policy)?;
    Ok(Response::empty())
}
