//! `encrypt/<name>`, `decrypt/<name>`, `rewrap/<name>` and
//! `datakey/<plaintext|wrapped>/<name>` (OpenBao's path_encrypt.go, path_decrypt.go,
//! path_rewrap.go, path_datakey.go).

use serde_json::{Map, Value, json};

use super::path_keys::{NewKey, create};
use super::policy::{KeyType, OpError, Policy, Secret, random_bytes};
use super::{
    TransitCtx, b64, b64_decode, bad, batch_input, batch_response, bool_field, int_field, item_str,
    load, op_error, str_field,
};
use crate::{Response, Result};

/// One item of a batch (or the single request).
struct Item {
    plaintext: Option<String>,
    ciphertext: Option<String>,
    context: String,
    key_version: i64,
    associated_data: String,
    reference: Value,
    /// A decoding error found before the key is consulted.
    error: Option<String>,
}

impl Item {
    /// The ciphertext of a decrypt or rewrap item, or why it cannot be opened.
    fn ciphertext_to_open(&self) -> std::result::Result<&str, OpError> {
        if let Some(e) = &self.error {
            return Err(OpError::user(e.clone()));
        }
        match self.ciphertext.as_deref() {
            None | Some("") => Err(OpError::user("missing ciphertext to decrypt")),
            Some(ct) => Ok(ct),
        }
    }
}

/// Reads the items of encrypt, decrypt or rewrap, single or batch. The batch field
/// errors are collected as OpenBao does (`errors.Join`: one line each).
fn items(d: &Map<String, Value>, single_field: &str) -> Result<(bool, Vec<Item>)> {
    if let Some(batch) = batch_input(d)? {
        let mut out = Vec::with_capacity(batch.len());
        let mut errs = Vec::new();
        for (i, m) in batch.iter().enumerate() {
            let mut get = |name: &str| match item_str(m, i, name) {
                Ok(v) => v,
                Err(e) => {
                    errs.push(e);
                    None
                }
            };
            let plaintext = get("plaintext");
            let ciphertext = get("ciphertext");
            let context = get("context").unwrap_or_default();
            let associated_data = get("associated_data").unwrap_or_default();
            let key_version = match m.get("key_version") {
                None | Some(Value::Null) => 0,
                Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
                Some(Value::String(s)) => s.parse().unwrap_or(0),
                Some(_) => {
                    errs.push(format!(
                        "'[{i}].key_version' expected type 'int', got unconvertible type"
                    ));
                    0
                }
            };
            if single_field == "plaintext" && !m.contains_key("plaintext") {
                errs.push(format!("'[{i}].plaintext' missing plaintext to encrypt"));
            }
            if single_field == "decrypt" && !m.contains_key("ciphertext") {
                errs.push(format!("'[{i}].ciphertext' missing ciphertext to decrypt"));
            }
            out.push(Item {
                plaintext,
                ciphertext,
                context,
                key_version,
                associated_data,
                reference: m.get("reference").cloned().unwrap_or(json!("")),
                error: None,
            });
        }
        if !errs.is_empty() {
            return Err(bad(format!(
                "failed to parse batch input: {}",
                errs.join("\n")
            )));
        }
        return Ok((true, out));
    }
    let plaintext = crate::fields::opt_string(d, "plaintext")?;
    let ciphertext = str_field(d, "ciphertext")?;
    match single_field {
        "plaintext" if plaintext.is_none() => return Err(bad("missing plaintext to encrypt")),
        "decrypt" | "rewrap" if ciphertext.is_empty() => {
            return Err(bad("missing ciphertext to decrypt"));
        }
        _ => {}
    }
    Ok((
        false,
        vec![Item {
            plaintext,
            ciphertext: Some(ciphertext),
            context: str_field(d, "context")?,
            key_version: int_field(d, "key_version")?.unwrap_or(0),
            associated_data: str_field(d, "associated_data")?,
            reference: json!(""),
            error: None,
        }],
    ))
}

/// Checks the context rule and decodes contexts; returns them per item.
fn contexts(items: &mut [Item]) -> Result<Vec<Vec<u8>>> {
    let set = !items[0].context.is_empty();
    let mut out = Vec::with_capacity(items.len());
    for item in items.iter_mut() {
        if item.context.is_empty() == set {
            return Err(bad(
                "context should be set either in all the request blocks or in none",
            ));
        }
        let ctx = if item.context.is_empty() {
            Vec::new()
        } else {
            match b64_decode(&item.context) {
                Ok(c) => c,
                Err(e) => {
                    item.error.get_or_insert(e);
                    Vec::new()
                }
            }
        };
        out.push(ctx);
    }
    Ok(out)
}

/// The associated data of an item, refused for key types without AEAD.
fn aad(p: &Policy, item: &Item, i: usize) -> std::result::Result<Vec<u8>, String> {
    if item.associated_data.is_empty() {
        return Ok(Vec::new());
    }
    if !p.key_type().is_symmetric() {
        return Err(format!(
            "'[{i}].associated_data' provided for non-AEAD cipher suite {}",
            p.kind
        ));
    }
    b64_decode(&item.associated_data)
        .map_err(|e| format!("unable to get associated_data/additional_data from factory[0]: {e}"))
}

/// A single request's failure, or the batch answer.
fn finish(
    d: &Map<String, Value>,
    batch: bool,
    on_error: &[(&str, Value)],
    error_status: bool,
    results: Vec<std::result::Result<Map<String, Value>, OpError>>,
    references: Vec<Value>,
    warnings: Vec<String>,
) -> Result<Response> {
    if !batch {
        let one = results.into_iter().next().expect("one item");
        let mut resp = Response::with_data(one.map_err(op_error)?);
        resp.warnings = warnings;
        return Ok(resp);
    }
    let any_ok = results.iter().any(|r| r.is_ok());
    let any_err = results.iter().any(|r| r.is_err());
    let out = results
        .into_iter()
        .zip(references)
        .map(|(r, reference)| {
            let mut m = match r {
                Ok(m) => m,
                Err(e) => {
                    let mut m: Map<String, Value> = on_error
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), v.clone()))
                        .collect();
                    m.insert("error".into(), json!(e.text()));
                    m
                }
            };
            m.insert("reference".into(), reference);
            Value::Object(m)
        })
        .collect();
    let mut resp = batch_response(d, out, any_ok, any_err && error_status)?;
    resp.warnings.extend(warnings);
    Ok(resp)
}

/// Encrypts for an item: `ciphertext` and the `key_version` used.
fn encrypted(
    p: &Policy,
    item: &Item,
    context: &[u8],
    pt: &[u8],
    ad: &[u8],
) -> std::result::Result<Map<String, Value>, OpError> {
    let ct = p.encrypt(item.key_version, context, pt, ad)?;
    let ver = if item.key_version == 0 {
        p.latest_version
    } else {
        item.key_version
    };
    let mut m = Map::new();
    m.insert("ciphertext".into(), json!(ct));
    m.insert("key_version".into(), json!(ver));
    Ok(m)
}

pub(super) fn encrypt(
    ctx: &TransitCtx<'_>,
    name: &str,
    d: &Map<String, Value>,
) -> Result<Response> {
    let (batch, mut items) = items(d, "plaintext")?;
    let contexts = contexts(&mut items)?;
    for item in &mut items {
        if let Some(pt) = &item.plaintext
            && let Err(e) = b64_decode(pt)
        {
            item.error.get_or_insert(e);
        }
    }
    let mut warnings = Vec::new();
    let p = match load(ctx, name)? {
        Some(p) => p,
        None => {
            // Encrypting to a missing key creates it (OpenBao's upsert).
            let convergent = bool_field(d, "convergent_encryption")?;
            let context_set = !contexts[0].is_empty() || !items[0].context.is_empty();
            if convergent && !context_set {
                return Err(bad(
                    "convergent encryption requires derivation to be enabled, so context is required",
                ));
            }
            let kind = match str_field(d, "type")?.as_str() {
                "" => KeyType::Aes256Gcm96,
                t => match KeyType::parse(t) {
                    Some(k) if k.is_symmetric() => k,
                    Some(k) => {
                        return Err(bad(format!(
                            "key type {} not supported for this operation",
                            k.as_str()
                        )));
                    }
                    None => return Err(bad("unknown key type")),
                },
            };
            let _guard = ctx.lock(&format!("policy/{name}"));
            match load(ctx, name)? {
                Some(p) => {
                    warnings.push("Attempted creation of the key during the encrypt operation, but it was created beforehand".into());
                    p
                }
                None => std::sync::Arc::new(create(
                    ctx,
                    name,
                    &NewKey {
                        kind,
                        derived: context_set,
                        convergent,
                        exportable: false,
                        allow_plaintext_backup: false,
                        auto_rotate_period: 0,
                        key_size: 0,
                    },
                )?),
            }
        }
    };
    let mut results = Vec::with_capacity(items.len());
    for (i, (item, c)) in items.iter().zip(&contexts).enumerate() {
        let r = (|| {
            if let Some(e) = &item.error {
                return Err(OpError::user(e.clone()));
            }
            let pt = Secret::new(
                b64_decode(item.plaintext.as_deref().unwrap_or("")).map_err(OpError::user)?,
            );
            let ad = aad(&p, item, i).map_err(OpError::User)?;
            encrypted(&p, item, c, pt.bytes(), &ad)
        })();
        results.push(r);
    }
    let refs = items.into_iter().map(|i| i.reference).collect();
    finish(d, batch, &[], true, results, refs, warnings)
}

pub(super) fn decrypt(
    ctx: &TransitCtx<'_>,
    name: &str,
    d: &Map<String, Value>,
) -> Result<Response> {
    let (batch, mut items) = items(d, "decrypt")?;
    let contexts = contexts(&mut items)?;
    let p = load(ctx, name)?.ok_or_else(|| bad("encryption key not found"))?;
    let mut results = Vec::with_capacity(items.len());
    for (i, (item, c)) in items.iter().zip(&contexts).enumerate() {
        let r = (|| {
            let ct = item.ciphertext_to_open()?;
            let ad = aad(&p, item, i).map_err(OpError::User)?;
            let pt = p.decrypt(c, ct, &ad)?;
            let mut m = Map::new();
            m.insert("plaintext".into(), json!(b64(pt.bytes())));
            Ok(m)
        })();
        results.push(r);
    }
    let refs = items.into_iter().map(|i| i.reference).collect();
    finish(
        d,
        batch,
        &[("plaintext", json!(""))],
        true,
        results,
        refs,
        Vec::new(),
    )
}

pub(super) fn rewrap(ctx: &TransitCtx<'_>, name: &str, d: &Map<String, Value>) -> Result<Response> {
    let (batch, mut items) = items(d, "rewrap")?;
    let contexts = contexts(&mut items)?;
    let p = load(ctx, name)?.ok_or_else(|| bad("encryption key not found"))?;
    let mut results = Vec::with_capacity(items.len());
    for (item, c) in items.iter().zip(&contexts) {
        let r = (|| {
            let ct = item.ciphertext_to_open()?;
            let pt = p.decrypt(c, ct, &[])?;
            encrypted(&p, item, c, pt.bytes(), &[])
        })();
        results.push(r);
    }
    let refs = items.into_iter().map(|i| i.reference).collect();
    // Rewrap answers 200 even when items failed (as OpenBao).
    finish(d, batch, &[], false, results, refs, Vec::new())
}

pub(super) fn datakey(
    ctx: &TransitCtx<'_>,
    kind: &str,
    name: &str,
    d: &Map<String, Value>,
) -> Result<Response> {
    let with_plaintext = match kind {
        "plaintext" => true,
        "wrapped" => false,
        _ => return Err(bad("Invalid path, must be 'plaintext' or 'wrapped'")),
    };
    let ver = int_field(d, "key_version")?.unwrap_or(0);
    let context = str_field(d, "context")?;
    let context = if context.is_empty() {
        Vec::new()
    } else {
        b64_decode(&context).map_err(|_| bad("failed to base64-decode context"))?
    };
    let p = load(ctx, name)?.ok_or_else(|| bad("encryption key not found"))?;
    let bits = int_field(d, "bits")?.unwrap_or(256);
    let len = match bits {
        128 => 16,
        256 => 32,
        512 => 64,
        _ => return Err(bad("invalid bit length")),
    };
    let ad = str_field(d, "associated_data")?;
    if !ad.is_empty() && !p.key_type().is_symmetric() {
        return Err(bad(format!(
            "'associated_data' provided for non-AEAD cipher suite {}",
            p.kind
        )));
    }
    let ad = b64_decode(&ad).map_err(|e| {
        bad(format!(
            "unable to get associated_data/additional_data from factory[0]: {e}"
        ))
    })?;
    let key = Secret::new(random_bytes(len).map_err(op_error)?);
    let ct = p
        .encrypt(ver, &context, key.bytes(), &ad)
        .map_err(op_error)?;
    let mut m = Map::new();
    m.insert("ciphertext".into(), json!(ct));
    m.insert(
        "key_version".into(),
        json!(if ver == 0 { p.latest_version } else { ver }),
    );
    if with_plaintext {
        m.insert("plaintext".into(), json!(b64(key.bytes())));
    }
    Ok(Response::with_data(m))
}
