//! `sys/generate-root/*` (Vault's share-gated, tokenless form), the authenticated
//! `sys/generate-root-token/*` that the `bao` CLI calls, and `sys/decode-token`.
//! A quorum of unseal key shares mints a new root token, handed out XOR'd with a
//! one-time password (the OTP flow: `encoded_token = base64(token XOR otp)`, no
//! padding). PGP-encrypted tokens are refused: no well-kept Rust OpenPGP crate
//! small enough for this workspace does the encryption Vault expects.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64_RAW;
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::operator::{already_given, new_nonce, nonce_from, share_from};
use super::{obj, sys_response};
use crate::barrier::Share;
use crate::vault::Core;
use crate::{Error, Operation, Request, Response, Result};

/// Length of a Lockana token (`lvs.` + 24 characters), hence of the OTP.
pub(crate) const OTP_LENGTH: usize = 28;

/// A root generation in progress. No `Debug`: it holds the OTP and shares.
pub(crate) struct RootGeneration {
    nonce: String,
    otp: Zeroizing<String>,
    progress: Vec<Share>,
}

/// The two shapes answers take: Vault's bare JSON (`sys/generate-root/*`) or
/// OpenBao's logical envelope (`sys/generate-root-token/*`).
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Bare,
    Envelope,
}

pub(super) fn handle_unauthenticated(core: &Core, req: &Request) -> Result<Response> {
    match req.path.as_str() {
        "sys/generate-root/attempt" => attempt(core, req, Shape::Bare),
        _ => update(core, &req.data, Shape::Bare),
    }
}

/// `sys/generate-root-token/{attempt,update}`; `rest` follows `generate-root-token/`.
pub(super) fn handle_authenticated(core: &Core, req: &Request, rest: &str) -> Result<Response> {
    match rest {
        "attempt" => attempt(core, req, Shape::Envelope),
        "update" if matches!(req.operation, Operation::Create | Operation::Update) => {
            update(core, &req.data, Shape::Envelope)
        }
        _ => Err(Error::UnsupportedOperation),
    }
}

fn answer(m: Map<String, Value>, shape: Shape) -> Response {
    match shape {
        Shape::Bare => Response::raw(m),
        Shape::Envelope => sys_response(m),
    }
}

fn attempt(core: &Core, req: &Request, shape: Shape) -> Result<Response> {
    match req.operation {
        Operation::Read => Ok(answer(status(core, "", shape)?, shape)),
        Operation::Create | Operation::Update => init(core, &req.data, shape),
        Operation::Delete => {
            *core.operator.root_generation.lock() = None;
            Ok(Response::empty())
        }
        _ => Err(Error::UnsupportedOperation),
    }
}

fn required(core: &Core) -> Result<u8> {
    Ok(core
        .barrier
        .seal_config()?
        .ok_or(Error::NotInitialized)?
        .secret_threshold)
}

fn status(core: &Core, otp: &str, shape: Shape) -> Result<Map<String, Value>> {
    let required = required(core)?;
    let guard = core.operator.root_generation.lock();
    let mut m = obj(json!({
        "started": guard.is_some(),
        "progress": guard.as_ref().map_or(0, |g| g.progress.len()),
        "required": required,
        "complete": false,
        "otp": otp,
        "otp_length": OTP_LENGTH,
    }));
    let nonce = guard.as_ref().map(|g| g.nonce.clone());
    match shape {
        Shape::Bare => {
            m.insert("nonce".into(), json!(nonce.unwrap_or_default()));
            m.insert("encoded_token".into(), json!(""));
            m.insert("encoded_root_token".into(), json!(""));
            m.insert("pgp_fingerprint".into(), json!(""));
        }
        Shape::Envelope => {
            if let Some(n) = nonce {
                m.insert("nonce".into(), json!(n));
                m.insert("pgp_fingerprint".into(), json!(""));
            }
        }
    }
    Ok(m)
}

fn init(core: &Core, d: &Map<String, Value>, shape: Shape) -> Result<Response> {
    let text = |name: &str| -> Result<String> {
        match d.get(name) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(Error::invalid(format!("'{name}' must be a string"))),
        }
    };
    let otp = Zeroizing::new(text("otp")?);
    if !text("pgp_key")?.is_empty() {
        return Err(Error::invalid(
            "PGP-encrypted root tokens are not supported by Lockana; omit pgp_key to use a one-time password",
        ));
    }
    let (otp, generated) = if otp.is_empty() {
        (
            Zeroizing::new(crate::auth::token::random_base62(OTP_LENGTH)?),
            true,
        )
    } else {
        if otp.len() != OTP_LENGTH {
            return Err(Error::invalid("OTP string has incorrect length"));
        }
        (otp, false)
    };
    {
        let mut guard = core.operator.root_generation.lock();
        if guard.is_some() {
            return Err(Error::invalid(
                "root generation already in progress for this namespace",
            ));
        }
        *guard = Some(RootGeneration {
            nonce: new_nonce(),
            otp: otp.clone(),
            progress: Vec::new(),
        });
    }
    tracing::info!("root generation initialized");
    let shown = if generated { otp.as_str() } else { "" };
    Ok(answer(status(core, shown, shape)?, shape))
}

fn update(core: &Core, d: &Map<String, Value>, shape: Shape) -> Result<Response> {
    if shape == Shape::Envelope {
        if nonce_from(d).is_empty() {
            return Err(Error::invalid("nonce is required"));
        }
        if d.get("key")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(Error::invalid("key is required"));
        }
    }
    let share = share_from(d)?;
    let required = required(core)?;
    let nonce = nonce_from(d).to_owned();
    let mut guard = core.operator.root_generation.lock();
    let g = guard
        .as_mut()
        .ok_or_else(|| Error::invalid("no root generation in progress"))?;
    if nonce != g.nonce {
        return Err(Error::invalid(format!(
            "incorrect nonce supplied; nonce for this root generation operation is \"{}\"",
            g.nonce
        )));
    }
    if already_given(&g.progress, &share) {
        return Err(Error::invalid(
            "given key has already been provided during this generation operation",
        ));
    }
    g.progress.push(share);
    let progress = g.progress.len();
    let mut m = obj(json!({
        "started": true,
        "complete": false,
        "progress": progress,
        "required": required,
        "nonce": nonce,
        "encoded_token": "",
        "pgp_fingerprint": "",
    }));
    if shape == Shape::Bare {
        m.insert("encoded_root_token".into(), json!(""));
        m.insert("otp".into(), json!(""));
        m.insert("otp_length".into(), json!(0));
    }
    if progress < usize::from(required) {
        return Ok(answer(m, shape));
    }
    let given = std::mem::take(&mut g.progress);
    let right = match core.barrier.combine_shares(&given, required) {
        Ok(key) => core.barrier.verify_unseal_key(&key)?,
        Err(_) => false,
    };
    if !right {
        return Err(Error::invalid(
            "root generation aborted: unable to authenticate: the unseal key shares did not combine into the unseal key; progress was reset",
        ));
    }
    let token = core.tokens.create_root(&core.barrier, None, core.now())?;
    let encoded = encode_token(token.expose(), &g.otp)?;
    *guard = None;
    drop(guard);
    tracing::info!("root generation finished");
    core.emit(crate::notify::Event::new(
        crate::notify::EventKind::RootTokenGenerated,
        core.now(),
    ));
    m.insert("complete".into(), json!(true));
    m.insert("encoded_token".into(), json!(encoded));
    if shape == Shape::Bare {
        m.insert("encoded_root_token".into(), json!(encoded));
    }
    Ok(answer(m, shape))
}

/// `base64(token XOR otp)` without padding, as Vault's `roottoken.EncodeToken`.
fn encode_token(token: &str, otp: &str) -> Result<String> {
    if token.len() != otp.len() {
        return Err(Error::invalid(
            "the one-time password must be as long as a token",
        ));
    }
    let x = Zeroizing::new(
        token
            .bytes()
            .zip(otp.bytes())
            .map(|(a, b)| a ^ b)
            .collect::<Vec<u8>>(),
    );
    Ok(B64_RAW.encode(&x[..]))
}

/// The inverse of [`encode_token`] (`sys/decode-token`, `-decode`).
fn decode_token(encoded: &str, otp: &str) -> Result<Zeroizing<String>> {
    let bytes = Zeroizing::new(
        B64_RAW
            .decode(encoded.trim_end_matches('='))
            .map_err(|_| Error::invalid("error decoding base64'd token"))?,
    );
    if bytes.len() != otp.len() {
        return Err(Error::invalid(format!(
            "error xoring token: length of byte slices is not equivalent: {} != {}",
            bytes.len(),
            otp.len()
        )));
    }
    let x: Vec<u8> = bytes.iter().zip(otp.bytes()).map(|(a, b)| a ^ b).collect();
    String::from_utf8(x)
        .map(Zeroizing::new)
        .map_err(|_| Error::invalid("the decoded token is not text: wrong one-time password"))
}

/// `PUT sys/decode-token {encoded_token, otp}` -> `{token}` (no token needed: it
/// only undoes the XOR the caller could undo itself).
pub(super) fn decode_token_request(req: &Request) -> Result<Response> {
    if !matches!(req.operation, Operation::Create | Operation::Update) {
        return Err(Error::UnsupportedOperation);
    }
    let field = |n: &str| req.data.get(n).and_then(Value::as_str).unwrap_or("");
    let (encoded, otp) = (field("encoded_token"), field("otp"));
    if encoded.is_empty() || otp.is_empty() {
        return Err(Error::invalid("provided 'encoded_token' or 'otp' is empty"));
    }
    let token = decode_token(encoded, otp)?;
    Ok(sys_response(obj(json!({"token": token.as_str()}))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otp_encoding_round_trips_and_matches_vaults_scheme() {
        let token = "lvs.abcdefghijklmnopqrstuvwx";
        let otp = "0123456789ABCDEFGHIJKLMNOPQR";
        assert_eq!((token.len(), otp.len()), (OTP_LENGTH, OTP_LENGTH));
        let enc = encode_token(token, otp).unwrap();
        assert!(!enc.ends_with('='), "Vault uses unpadded base64");
        // Independent of our helpers: XOR of the first byte, then base64 by hand.
        let raw = B64_RAW.decode(&enc).unwrap();
        assert_eq!(raw[0], b'l' ^ b'0');
        assert_eq!(decode_token(&enc, otp).unwrap().as_str(), token);
        assert!(decode_token(&enc, "short").is_err());
        assert!(encode_token(token, "short").is_err());
    }
}
