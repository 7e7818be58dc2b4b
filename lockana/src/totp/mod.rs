//! Vault's TOTP secrets engine (mount type `totp`), answering as OpenBao's does:
//! `keys/<name>` (generate or import, read without the seed, list, delete) and
//! `code/<name>` (GET generates a code, POST validates one).
//!
//! A code is accepted once. OpenBao remembers used codes in memory for a few periods;
//! Lockana stores the last accepted time step per key behind the barrier, so a code
//! stays used across restarts, and a code of an older step is refused once a newer
//! one was accepted.
//!
//! Storage under the mount's view: `key/<name>` (the seed and parameters) and
//! `used/<name>` (the last accepted step).

pub(crate) mod code;
pub(crate) mod qr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::kv::{Ctx, list_response, opt_bool};
use crate::{Error, Operation, Request, Response, Result};

/// Default size of generated seeds in bytes (Vault's `key_size`).
const DEFAULT_KEY_SIZE: i64 = 20;
/// Smallest generated seed: RFC 4226's 128 bits.
const MIN_KEY_SIZE: i64 = 16;
/// Largest generated seed.
const MAX_KEY_SIZE: i64 = 1024;

/// One key as stored. The seed is base32 (no padding); never in a response after
/// creation.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub(crate) struct KeyEntry {
    pub key: String,
    pub issuer: String,
    pub account_name: String,
    pub period: u64,
    pub algorithm: String,
    pub digits: u8,
    pub skew: u8,
}

impl KeyEntry {
    pub(crate) fn totp(&self) -> Result<totp_rs::Totp> {
        let secret = code::decode_base32(&self.key).ok_or(crate::StorageError::Corrupt)?;
        let alg = code::algorithm(&self.algorithm).ok_or(crate::StorageError::Corrupt)?;
        Ok(code::generator(&secret, alg, self.digits, self.period))
    }
}

/// Vault's key names (`framework.GenericNameWithAtRegex`): word characters, with
/// `-`, `.` and `@` inside.
fn valid_name(name: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let (Some(first), Some(last)) = (name.chars().next(), name.chars().last()) else {
        return false;
    };
    word(first) && word(last) && name.chars().all(|c| word(c) || "-.@".contains(c))
}

/// Serves a request to a TOTP mount; `rel` is the path below the mount.
/// The `totp` mount type (it takes no options).
pub(crate) const REGISTRATION: crate::engine::Registration = crate::engine::Registration {
    names: &["totp"],
    factory: new_totp,
    mountable: true,
};

fn new_totp(
    _kind: &str,
    options: &mut std::collections::BTreeMap<String, String>,
) -> Result<(&'static str, std::sync::Arc<dyn crate::engine::Backend>)> {
    options.clear();
    Ok(("totp", std::sync::Arc::new(TotpEngine)))
}

/// Vault's TOTP secrets engine.
pub(crate) struct TotpEngine;

impl crate::engine::Backend for TotpEngine {
    fn doc(&self) -> &'static crate::help::BackendDoc {
        &crate::help::TOTP
    }

    fn handle(&self, ctx: &Ctx<'_>, req: &Request, rel: &str) -> Result<crate::engine::Answer> {
        Ok(handle(ctx, req, rel)?.into())
    }
}

fn handle(ctx: &Ctx<'_>, req: &Request, rel: &str) -> Result<Response> {
    let mut resp = route(ctx, req, rel)?;
    resp.mount_type = "totp".into();
    Ok(resp)
}

fn route(ctx: &Ctx<'_>, req: &Request, rel: &str) -> Result<Response> {
    let no_route = || Error::NoRoute(req.path.clone());
    if rel == "keys" || rel == "keys/" {
        return match req.operation {
            Operation::List => list_response(ctx.list("key/")?),
            _ => Err(Error::UnsupportedOperation),
        };
    }
    if let Some(name) = rel.strip_prefix("keys/") {
        if !valid_name(name) {
            return Err(no_route());
        }
        return match req.operation {
            Operation::Read => read_key(ctx, name),
            Operation::Create | Operation::Update => create_key(ctx, name, &req.data),
            Operation::Delete => {
                ctx.apply(vec![
                    ctx.delete_op(&format!("key/{name}")),
                    ctx.delete_op(&format!("used/{name}")),
                ])?;
                Ok(Response::empty())
            }
            _ => Err(Error::UnsupportedOperation),
        };
    }
    if let Some(name) = rel.strip_prefix("code/") {
        if !valid_name(name) {
            return Err(no_route());
        }
        return match req.operation {
            Operation::Read => generate_code(ctx, name),
            Operation::Create | Operation::Update => validate_code(ctx, name, &req.data),
            _ => Err(Error::UnsupportedOperation),
        };
    }
    Err(no_route())
}

fn load(ctx: &Ctx<'_>, name: &str) -> Result<Option<KeyEntry>> {
    ctx.get_json(&format!("key/{name}"))
}

fn unknown_key(name: &str) -> Error {
    Error::invalid(format!("unknown key: {name}"))
}

fn read_key(ctx: &Ctx<'_>, name: &str) -> Result<Response> {
    let k = load(ctx, name)?.ok_or(Error::NotFound)?;
    Ok(Response::with_data(into_map(json!({
        "issuer": k.issuer,
        "account_name": k.account_name,
        "period": k.period,
        "algorithm": k.algorithm,
        "digits": k.digits,
    }))))
}

fn unix(ctx: &Ctx<'_>) -> u64 {
    ctx.now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn generate_code(ctx: &Ctx<'_>, name: &str) -> Result<Response> {
    let k = load(ctx, name)?.ok_or_else(|| unknown_key(name))?;
    let now = unix(ctx);
    let code = code::code_at(&k.totp()?, now);
    let period = k.period.max(1);
    Ok(Response::with_data(into_map(json!({
        "code": code,
        "generated": now,
        "expire_time": (now / period) * period + period,
        "period": crate::clock::go_duration(period),
    }))))
}

fn validate_code(ctx: &Ctx<'_>, name: &str, data: &Map<String, Value>) -> Result<Response> {
    let k = load(ctx, name)?.ok_or_else(|| unknown_key(name))?;
    let code = match data.get("code") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(Error::invalid("'code' must be a string")),
    };
    if code.is_empty() {
        return Err(Error::invalid("the code value is required"));
    }
    if code.trim() != code || code.len() != usize::from(k.digits) {
        return Err(Error::invalid("invalid number of digits for the code"));
    }
    let used_key = format!("used/{name}");
    let _guard = ctx.lock(&used_key);
    let step = code::matching_step(&k.totp()?, &code, unix(ctx), u64::from(k.skew));
    let valid = match step {
        None => false,
        Some(step) => {
            let last: Option<u64> = ctx.get_json(&used_key)?;
            if !code::is_fresh(step, last) {
                return Err(Error::invalid(
                    "code already used; wait until the next time period",
                ));
            }
            ctx.apply(vec![ctx.put_op(&used_key, &step)?])?;
            true
        }
    };
    Ok(Response::with_data(into_map(json!({ "valid": valid }))))
}

/// An integer parameter as Vault's `TypeInt` reads it (number or numeric string).
fn opt_int(data: &Map<String, Value>, name: &str) -> Result<Option<i64>> {
    let bad = || Error::invalid(format!("'{name}' must be an integer"));
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(bad),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

fn opt_str(data: &Map<String, Value>, name: &str) -> Result<String> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(Error::invalid(format!("'{name}' must be a string"))),
    }
}

/// `period` as Vault's `TypeDurationSecond`: seconds or a duration string.
fn opt_period(data: &Map<String, Value>) -> Result<Option<i64>> {
    match data.get("period") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| Error::invalid("'period' must be a duration")),
        Some(v) => crate::clock::parse_duration(v)
            .and_then(|p| i64::try_from(p).ok())
            .map(Some)
            .ok_or_else(|| Error::invalid("'period' must be a duration")),
    }
}

/// What an otpauth URL sets, as OpenBao reads it.
struct FromUrl {
    issuer: String,
    account_name: String,
    key: String,
    period: i64,
    digits: i64,
    algorithm: String,
}

fn parse_url(url: &str) -> Result<FromUrl> {
    // The parser's error text may quote the URL, which carries the seed: one message.
    let bad = || Error::invalid("an error occurred while parsing url string");
    let t = totp_rs::Totp::from_url_unchecked(url).map_err(|_| bad())?;
    let algorithm = match t.algorithm() {
        totp_rs::Algorithm::SHA1 => "SHA1",
        totp_rs::Algorithm::SHA256 => "SHA256",
        totp_rs::Algorithm::SHA512 => "SHA512",
        _ => return Err(Error::invalid("the algorithm value is not valid")),
    };
    Ok(FromUrl {
        issuer: t.issuer().unwrap_or_default().to_owned(),
        account_name: t.account_name().to_owned(),
        key: code::encode_base32(t.secret().as_bytes()),
        period: i64::try_from(t.step()).map_err(|_| bad())?,
        digits: i64::from(t.digits()),
        algorithm: algorithm.to_owned(),
    })
}

fn create_key(ctx: &Ctx<'_>, name: &str, data: &Map<String, Value>) -> Result<Response> {
    let generate = opt_bool(data, "generate")?.unwrap_or(false);
    let exported = opt_bool(data, "exported")?.unwrap_or(true);
    let mut key = zeroize::Zeroizing::new(opt_str(data, "key")?);
    let mut issuer = opt_str(data, "issuer")?;
    let mut account_name = opt_str(data, "account_name")?;
    let mut period = opt_period(data)?.unwrap_or(30);
    let mut algorithm = opt_str(data, "algorithm")?;
    if algorithm.is_empty() {
        algorithm = "SHA1".into();
    }
    let mut digits = opt_int(data, "digits")?.unwrap_or(6);
    let skew = opt_int(data, "skew")?.unwrap_or(1);
    let qr_size = opt_int(data, "qr_size")?.unwrap_or(200);
    let key_size = opt_int(data, "key_size")?.unwrap_or(DEFAULT_KEY_SIZE);
    let url = zeroize::Zeroizing::new(opt_str(data, "url")?);

    if generate {
        if !key.is_empty() {
            return Err(Error::invalid(
                "a key should not be passed if generate is true",
            ));
        }
        if !url.is_empty() {
            return Err(Error::invalid(
                "a url should not be passed if generate is true",
            ));
        }
    }
    if !url.is_empty() {
        let u = parse_url(&url)?;
        if !u.issuer.is_empty() {
            issuer = u.issuer;
        }
        account_name = u.account_name;
        *key = u.key;
        period = u.period;
        digits = u.digits;
        algorithm = u.algorithm;
    }
    let digits: u8 = match digits {
        6 => 6,
        8 => 8,
        _ => return Err(Error::invalid("the digits value can only be 6 or 8")),
    };
    if code::algorithm(&algorithm).is_none() {
        return Err(Error::invalid("the algorithm value is not valid"));
    }
    if period <= 0 {
        return Err(Error::invalid("the period value must be greater than zero"));
    }
    let skew: u8 = match skew {
        0 => 0,
        1 => 1,
        _ => return Err(Error::invalid("the skew value must be 0 or 1")),
    };
    if qr_size < 0 {
        return Err(Error::invalid(
            "the qr_size value must be greater than or equal to zero",
        ));
    }
    if qr_size > i64::from(qr::MAX_SIZE) {
        return Err(Error::invalid(format!(
            "the qr_size value must be at most {}",
            qr::MAX_SIZE
        )));
    }
    if key_size <= 0 {
        return Err(Error::invalid(
            "the key_size value must be greater than zero",
        ));
    }
    let period = period.unsigned_abs();

    let mut resp = Response::empty();
    if generate {
        if account_name.is_empty() {
            return Err(Error::invalid(
                "the account_name value is required for generated keys",
            ));
        }
        if issuer.is_empty() {
            return Err(Error::invalid(
                "the issuer value is required for generated keys",
            ));
        }
        if !(MIN_KEY_SIZE..=MAX_KEY_SIZE).contains(&key_size) {
            return Err(Error::invalid(format!(
                "the key_size value must be between {MIN_KEY_SIZE} and {MAX_KEY_SIZE} bytes (at least 128 bits)"
            )));
        }
        let mut seed = zeroize::Zeroizing::new(vec![0u8; key_size.unsigned_abs() as usize]);
        crate::barrier::random_fill(&mut seed)?;
        *key = code::encode_base32(&seed);
        if exported {
            let url = otpauth_url(&issuer, &account_name, &key, &algorithm, digits, period)?;
            let mut m = Map::new();
            if qr_size > 0 {
                m.insert(
                    "barcode".into(),
                    json!(qr::png_base64(&url, qr_size.unsigned_abs() as u32)?),
                );
            }
            m.insert("url".into(), json!(*url));
            resp = Response::with_data(m);
        }
    } else {
        if key.is_empty() {
            return Err(Error::invalid("the key value is required"));
        }
        let bytes = code::decode_base32(&key)
            .ok_or_else(|| Error::invalid("invalid key value: illegal base32 data"))?;
        *key = code::encode_base32(&bytes);
    }
    let entry = KeyEntry {
        key: std::mem::take(&mut *key),
        issuer,
        account_name,
        period,
        algorithm,
        digits,
        skew,
    };
    ctx.apply(vec![
        ctx.put_op(&format!("key/{name}"), &entry)?,
        ctx.delete_op(&format!("used/{name}")),
    ])?;
    Ok(resp)
}

/// An otpauth URL in the form authenticator apps read (and OpenBao writes):
/// `otpauth://totp/<issuer>:<account>?algorithm=..&digits=..&issuer=..&period=..&secret=..`.
pub(crate) fn otpauth_url(
    issuer: &str,
    account_name: &str,
    secret_b32: &str,
    algorithm: &str,
    digits: u8,
    period: u64,
) -> Result<zeroize::Zeroizing<String>> {
    if issuer.contains(':') || account_name.contains(':') {
        return Err(Error::invalid(
            "the issuer and account_name values must not contain ':'",
        ));
    }
    let (i, a) = (escape(issuer), escape(account_name));
    Ok(zeroize::Zeroizing::new(format!(
        "otpauth://totp/{i}:{a}?algorithm={algorithm}&digits={digits}&issuer={i}&period={period}&secret={secret_b32}"
    )))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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
    fn key_names_follow_vault() {
        for ok in ["a", "my-key", "user@example.com", "a.b_c", "x1"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a/b", "a b", ".", "é"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn otpauth_url_round_trips_through_the_parser() {
        let secret = code::encode_base32(b"12345678901234567890");
        let url =
            otpauth_url("Lockana Inc", "ops@example.com", &secret, "SHA256", 8, 60).expect("url");
        let back = parse_url(&url).expect("parse");
        assert_eq!(back.issuer, "Lockana Inc");
        assert_eq!(back.account_name, "ops@example.com");
        assert_eq!(back.key, secret);
        assert_eq!((back.period, back.digits), (60, 8));
        assert_eq!(back.algorithm, "SHA256");
        assert!(otpauth_url("a:b", "c", &secret, "SHA1", 6, 30).is_err());
    }
}
