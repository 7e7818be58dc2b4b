//! `sign/<name>[/<algorithm>]`, `verify/<name>[/<algorithm>]` and
//! `hmac/<name>[/<algorithm>]` (OpenBao's path_sign_verify.go and path_hmac.go).

use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq as _;

use super::policy::{Hash, OpError, Policy, SaltLength, SignOpts, hmac_sum};
use super::{
    TransitCtx, b64, b64_decode, bad, batch_input, batch_response, int_field, load, str_field,
};
use crate::{Response, Result};

/// One input of sign, verify or hmac: the batch item or the request's own fields.
fn inputs(d: &Map<String, Value>, fields: &[&str]) -> Result<(bool, Vec<Map<String, Value>>)> {
    if let Some(batch) = batch_input(d)? {
        return Ok((true, batch));
    }
    let mut m = Map::new();
    for f in fields {
        if let Some(v) = d.get(*f).filter(|v| !v.is_null()) {
            m.insert((*f).into(), v.clone());
        }
    }
    Ok((false, vec![m]))
}

fn text(item: &Map<String, Value>, name: &str) -> Option<String> {
    match item.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// The hash algorithm: from the URL, else `hash_algorithm`, else `algorithm`, else
/// sha2-256.
fn hash_name(url: &str, d: &Map<String, Value>) -> Result<String> {
    if !url.is_empty() {
        return Ok(url.to_owned());
    }
    for f in ["hash_algorithm", "algorithm"] {
        let v = str_field(d, f)?;
        if !v.is_empty() {
            return Ok(v);
        }
    }
    Ok("sha2-256".into())
}

fn sign_opts(url_alg: &str, d: &Map<String, Value>) -> Result<(SignOpts, bool)> {
    let hash = Hash::parse(&hash_name(url_alg, d)?).ok_or_else(|| bad("invalid hash algorithm"))?;
    let jws = match str_field(d, "marshaling_algorithm")?.as_str() {
        "" | "asn1" => false,
        "jws" => true,
        _ => return Err(bad("invalid marshaling type")),
    };
    let prehashed = super::bool_field(d, "prehashed")?;
    let sig_alg = str_field(d, "signature_algorithm")?;
    let pkcs1v15 = match sig_alg.as_str() {
        "" | "pss" => false,
        "pkcs1v15" => true,
        _ => return Err(bad("unsupported rsa signature algorithm")),
    };
    let salt = match str_field(d, "salt_length")?.as_str() {
        "" | "auto" => SaltLength::Auto,
        "hash" => SaltLength::Hash,
        n => SaltLength::Custom(
            n.parse()
                .map_err(|_| bad(format!("salt length value {n:?} is invalid")))?,
        ),
    };
    if hash == Hash::None && (!prehashed || !pkcs1v15) {
        return Err(bad(
            "hash_algorithm=none requires both prehashed=true and signature_algorithm=pkcs1v15",
        ));
    }
    Ok((
        SignOpts {
            hash,
            jws,
            pkcs1v15,
            salt,
        },
        prehashed,
    ))
}

/// The bytes that get signed: the input, hashed unless prehashed (RSA and ECDSA).
fn signed_input(
    p: &Policy,
    raw: &str,
    opts: SignOpts,
    prehashed: bool,
) -> Result<Vec<u8>, OpError> {
    let input = b64_decode(raw)
        .map_err(|e| OpError::user(format!("unable to decode input as base64: {e}")))?;
    if p.key_type().hash_signature_input() && !prehashed {
        return Ok(opts.hash.sum(&input));
    }
    Ok(input)
}

fn decode_context(item: &Map<String, Value>) -> Result<Vec<u8>, OpError> {
    match text(item, "context") {
        Some(c) if !c.is_empty() => {
            b64_decode(&c).map_err(|_| OpError::user("failed to base64-decode context"))
        }
        _ => Ok(Vec::new()),
    }
}

fn reply(
    d: &Map<String, Value>,
    batch: bool,
    on_error: &[(&str, Value)],
    items: &[Map<String, Value>],
    results: Vec<Result<Map<String, Value>, OpError>>,
) -> Result<Response> {
    if !batch {
        let one = results.into_iter().next().expect("one item");
        return Ok(Response::with_data(one.map_err(super::op_error)?));
    }
    let out = results
        .into_iter()
        .zip(items)
        .map(|(r, item)| {
            let mut m = r.unwrap_or_else(|e| {
                let mut m: Map<String, Value> = on_error
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect();
                m.insert("error".into(), json!(e.text()));
                m
            });
            m.insert(
                "reference".into(),
                json!(text(item, "reference").unwrap_or_default()),
            );
            Value::Object(m)
        })
        .collect();
    // Sign, verify and hmac batches answer 200 even when items failed (as OpenBao).
    batch_response(d, out, true, false)
}

pub(super) fn sign(
    ctx: &TransitCtx<'_>,
    name: &str,
    url_alg: &str,
    d: &Map<String, Value>,
) -> Result<Response> {
    let ver = int_field(d, "key_version")?.unwrap_or(0);
    let (opts, prehashed) = sign_opts(url_alg, d)?;
    let p = load(ctx, name)?.ok_or_else(|| bad("signing key not found"))?;
    if !p.key_type().signing_supported() {
        return Err(bad(format!("key type {} does not support signing", p.kind)));
    }
    let (batch, items) = inputs(d, &["input", "context"])?;
    let results = items
        .iter()
        .map(|item| {
            let Some(raw) = text(item, "input") else {
                return Err(OpError::user("missing input"));
            };
            let input = signed_input(&p, &raw, opts, prehashed)?;
            let context = decode_context(item)?;
            let (sig, public) = p.sign(ver, &context, &input, opts)?;
            let mut m = Map::new();
            m.insert("signature".into(), json!(sig));
            m.insert(
                "key_version".into(),
                json!(if ver == 0 { p.latest_version } else { ver }),
            );
            if let Some(pk) = public {
                m.insert(
                    if batch { "publickey" } else { "public_key" }.into(),
                    json!(b64(&pk)),
                );
            }
            Ok(m)
        })
        .collect();
    reply(d, batch, &[("key_version", json!(0))], &items, results)
}

pub(super) fn verify(
    ctx: &TransitCtx<'_>,
    name: &str,
    url_alg: &str,
    d: &Map<String, Value>,
) -> Result<Response> {
    let (batch, items) = inputs(d, &["input", "signature", "hmac", "context"])?;
    let (mut sig_found, mut hmac_found, mut missing) = (false, false, false);
    for item in &items {
        if item.contains_key("signature") {
            sig_found = true;
        } else if item.contains_key("hmac") {
            hmac_found = true;
        } else {
            missing = true;
        }
    }
    let refuse = match () {
        _ if !batch && sig_found && hmac_found => Some("provide one of 'signature' or 'hmac'"),
        _ if !batch && !sig_found && !hmac_found => {
            Some("neither a 'signature' nor an 'hmac' were given to verify")
        }
        _ if sig_found && hmac_found => {
            Some("elements of batch_input must all provide 'signature' or all provide 'hmac'")
        }
        _ if missing && sig_found => Some("some elements of batch_input are missing 'signature'"),
        _ if missing && hmac_found => Some("some elements of batch_input are missing 'hmac'"),
        _ if missing => Some("no batch_input elements have 'signature' or 'hmac'"),
        _ => None,
    };
    if let Some(msg) = refuse {
        return Err(bad(msg));
    }
    if hmac_found {
        return hmac_verify(ctx, name, url_alg, d, batch, &items);
    }
    let (opts, prehashed) = sign_opts(url_alg, d)?;
    let p = load(ctx, name)?.ok_or_else(|| bad("signature verification key not found"))?;
    if !p.key_type().signing_supported() {
        return Err(bad(format!(
            "key type {} does not support verification",
            p.kind
        )));
    }
    let results = items
        .iter()
        .map(|item| {
            let Some(raw) = text(item, "input") else {
                return Err(OpError::user("missing input"));
            };
            let input = signed_input(&p, &raw, opts, prehashed)?;
            let Some(sig) = text(item, "signature") else {
                return Err(OpError::user("missing signature"));
            };
            let context = decode_context(item)?;
            let valid = p.verify(&context, &input, &sig, opts)?;
            let mut m = Map::new();
            m.insert("valid".into(), json!(valid));
            Ok(m)
        })
        .collect();
    reply(d, batch, &[("valid", json!(false))], &items, results)
}

/// An item's base64 `input`, decoded.
fn decode_input(item: &Map<String, Value>, missing: &str) -> Result<Vec<u8>, OpError> {
    let Some(raw) = text(item, "input") else {
        return Err(OpError::user(missing));
    };
    b64_decode(&raw).map_err(|e| OpError::user(format!("unable to decode input as base64: {e}")))
}

fn hmac_alg(url_alg: &str, d: &Map<String, Value>) -> Result<Hash> {
    let name = hash_name(url_alg, d)?;
    Hash::parse(&name)
        .filter(|h| hmac_sum(*h, b"k", b"").is_some())
        .ok_or_else(|| bad("unsupported algorithm"))
}

pub(super) fn hmac(
    ctx: &TransitCtx<'_>,
    name: &str,
    url_alg: &str,
    d: &Map<String, Value>,
) -> Result<Response> {
    let ver = int_field(d, "key_version")?.unwrap_or(0);
    let p = load(ctx, name)?.ok_or_else(|| bad("encryption key not found"))?;
    let ver = match ver {
        0 => p.latest_version,
        v if v == p.latest_version => v,
        v if p.min_encryption_version > 0 && v < p.min_encryption_version => {
            return Err(bad(
                "cannot generate HMAC: version is too old (disallowed by policy)",
            ));
        }
        v => v,
    };
    let key = p.hmac_key(ver).map_err(super::op_error)?;
    let hash = hmac_alg(url_alg, d)?;
    let (batch, items) = inputs(d, &["input"])?;
    if !batch && !items[0].contains_key("input") {
        return Err(bad("missing input for HMAC"));
    }
    let results = items
        .iter()
        .map(|item| {
            let input = decode_input(item, "missing input for HMAC")?;
            let mac = hmac_sum(hash, key.bytes(), &input).unwrap_or_default();
            let mut m = Map::new();
            m.insert("hmac".into(), json!(format!("vault:v{ver}:{}", b64(&mac))));
            Ok(m)
        })
        .collect();
    reply(d, batch, &[], &items, results)
}

fn hmac_verify(
    ctx: &TransitCtx<'_>,
    name: &str,
    url_alg: &str,
    d: &Map<String, Value>,
    batch: bool,
    items: &[Map<String, Value>],
) -> Result<Response> {
    let p = load(ctx, name)?.ok_or_else(|| bad("encryption key not found"))?;
    let hash = hmac_alg(url_alg, d).map_err(|_| bad("invalid hash algorithm"))?;
    let results = items
        .iter()
        .map(|item| {
            let input = decode_input(item, "missing input")?;
            let Some(given) = text(item, "hmac") else {
                return Err(OpError::user("missing hmac"));
            };
            let rest = given
                .strip_prefix("vault:v")
                .ok_or_else(|| OpError::user("invalid HMAC to verify: no prefix"))?;
            let (ver, body) = rest
                .split_once(':')
                .ok_or_else(|| OpError::user("invalid HMAC: wrong number of fields"))?;
            let ver: i64 = ver
                .parse()
                .map_err(|_| OpError::user("invalid HMAC: version number could not be decoded"))?;
            let given = b64_decode(body).map_err(|e| {
                OpError::user(format!("unable to decode verification HMAC as base64: {e}"))
            })?;
            if ver > p.latest_version {
                return Err(OpError::user("invalid HMAC: version is too new"));
            }
            if p.min_decryption_version > 0 && ver < p.min_decryption_version {
                return Err(OpError::user(
                    "cannot verify HMAC: version is too old (disallowed by policy)",
                ));
            }
            let key = p.hmac_key(ver)?;
            let mac = hmac_sum(hash, key.bytes(), &input).unwrap_or_default();
            let valid: bool = mac.ct_eq(&given).into();
            let mut m = Map::new();
            if valid || !batch {
                m.insert("valid".into(), json!(valid));
            }
            Ok(m)
        })
        .collect();
    reply(d, batch, &[], items, results)
}
