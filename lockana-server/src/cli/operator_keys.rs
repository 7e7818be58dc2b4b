//! `lockana operator rekey` and `lockana operator generate-root`: the share-gated
//! procedures, with the same flags as `bao operator rekey` / `generate-root`.

use std::process::ExitCode;

use anyhow::{Context, bail};
use base64::Engine as _;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::Format;
use super::client::Client;

/// What `lockana operator rekey` was asked to do.
pub(super) struct RekeyArgs {
    pub key: Option<String>,
    pub init: bool,
    pub cancel: bool,
    pub status: bool,
    pub verify: bool,
    pub nonce: Option<String>,
    pub key_shares: u8,
    pub key_threshold: u8,
}

/// What `lockana operator generate-root` was asked to do.
pub(super) struct GenerateRootArgs {
    pub key: Option<String>,
    pub init: bool,
    pub cancel: bool,
    pub status: bool,
    pub nonce: Option<String>,
    pub decode: Option<String>,
    pub otp: Option<String>,
}

/// Prints `key value` rows of the fields present in `answer`, or the JSON.
fn show(answer: &Value, format: Format, rows: &[(&str, &str)]) -> anyhow::Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(answer)?);
        return Ok(());
    }
    println!("{:<22} Value\n{:<22} -----", "Key", "---");
    for (label, field) in rows {
        match answer.get(*field) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() => {}
            Some(Value::String(s)) => println!("{label:<22} {s}"),
            Some(v) => println!("{label:<22} {v}"),
        }
    }
    Ok(())
}

/// The share to submit: the argument, or one line read (hidden on a terminal).
fn share(key: Option<String>) -> anyhow::Result<Zeroizing<String>> {
    let key = match key {
        Some(k) => Zeroizing::new(k),
        None => super::operator::prompt_key()?,
    };
    if key.trim().is_empty() {
        bail!("no unseal key given");
    }
    Ok(Zeroizing::new(key.trim().to_owned()))
}

fn nonce(nonce: Option<String>) -> anyhow::Result<String> {
    nonce.context("--nonce is required: it is printed by --init and --status")
}

pub(super) fn rekey(client: &Client, format: Format, a: RekeyArgs) -> anyhow::Result<ExitCode> {
    const STATUS: &[(&str, &str)] = &[
        ("Nonce", "nonce"),
        ("Started", "started"),
        ("Progress", "progress"),
        ("Required", "required"),
        ("New Shares", "n"),
        ("New Threshold", "t"),
        ("Verification Required", "verification_required"),
        ("Verification Nonce", "verification_nonce"),
    ];
    let answer = if a.cancel {
        let path = if a.verify {
            "sys/rekey/verify"
        } else {
            "sys/rekey/init"
        };
        client.call("DELETE", path, None)?;
        println!("Success! Canceled rekeying (if it was started)");
        return Ok(ExitCode::SUCCESS);
    } else if a.status {
        let path = if a.verify {
            "sys/rekey/verify"
        } else {
            "sys/rekey/init"
        };
        client.call("GET", path, None)?.1
    } else if a.init {
        let body = json!({
            "secret_shares": a.key_shares,
            "secret_threshold": a.key_threshold,
            "require_verification": a.verify,
        });
        client.call("PUT", "sys/rekey/init", Some(&body))?.1
    } else {
        let key = share(a.key)?;
        let body = json!({"key": key.as_str(), "nonce": nonce(a.nonce)?});
        let path = if a.verify {
            "sys/rekey/verify"
        } else {
            "sys/rekey/update"
        };
        client.call("PUT", path, Some(&body))?.1
    };
    let answer = answer.context("the server sent an empty answer")?;
    if answer.get("complete") != Some(&json!(true)) || format == Format::Json {
        show(&answer, format, STATUS)?;
        return Ok(ExitCode::SUCCESS);
    }
    if a.verify {
        println!("Rekey verification successful. The new unseal key shares are now active.");
        return Ok(ExitCode::SUCCESS);
    }
    let keys = answer
        .get("keys_base64")
        .and_then(Value::as_array)
        .context("the answer has no keys")?;
    for (i, k) in keys.iter().enumerate() {
        println!("Key {}: {}", i + 1, k.as_str().unwrap_or_default());
    }
    if let Some(vn) = answer.get("verification_nonce").and_then(Value::as_str) {
        println!(
            "\nThe new shares are NOT active yet: enter as many as the new threshold with\n  lockana operator rekey --verify --nonce {vn} <new share>"
        );
    } else {
        println!(
            "\nVault unseal keys rekeyed with {} key shares. The old shares no longer unseal;\ndistribute the new ones.",
            keys.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn generate_root(
    client: &Client,
    format: Format,
    a: GenerateRootArgs,
) -> anyhow::Result<ExitCode> {
    const STATUS: &[(&str, &str)] = &[
        ("Nonce", "nonce"),
        ("Started", "started"),
        ("Progress", "progress"),
        ("Required", "required"),
        ("Complete", "complete"),
        ("Encoded Token", "encoded_token"),
        ("OTP", "otp"),
        ("OTP Length", "otp_length"),
    ];
    if let Some(encoded) = a.decode {
        let otp = a.otp.context("--otp is required with --decode")?;
        let token = decode_token(&encoded, &otp)?;
        println!("{}", token.as_str());
        return Ok(ExitCode::SUCCESS);
    }
    let answer = if a.cancel {
        client.call("DELETE", "sys/generate-root/attempt", None)?;
        println!("Success! Root token generation canceled (if it was started)");
        return Ok(ExitCode::SUCCESS);
    } else if a.status {
        client.call("GET", "sys/generate-root/attempt", None)?.1
    } else if a.init {
        let body = json!({"otp": a.otp.unwrap_or_default()});
        client
            .call("PUT", "sys/generate-root/attempt", Some(&body))?
            .1
    } else {
        let key = share(a.key)?;
        let body = json!({"key": key.as_str(), "nonce": nonce(a.nonce)?});
        client
            .call("PUT", "sys/generate-root/update", Some(&body))?
            .1
    };
    let answer = answer.context("the server sent an empty answer")?;
    show(&answer, format, STATUS)?;
    Ok(ExitCode::SUCCESS)
}

/// Undoes `base64(token XOR otp)` (Vault's OTP encoding of a generated root token).
fn decode_token(encoded: &str, otp: &str) -> anyhow::Result<Zeroizing<String>> {
    let raw = Zeroizing::new(
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(encoded.trim().trim_end_matches('='))
            .context("the encoded token is not base64")?,
    );
    if raw.len() != otp.len() {
        bail!(
            "the OTP is {} characters but the encoded token holds {}: wrong OTP?",
            otp.len(),
            raw.len()
        );
    }
    let bytes: Vec<u8> = raw.iter().zip(otp.bytes()).map(|(a, b)| a ^ b).collect();
    String::from_utf8(bytes)
        .map(Zeroizing::new)
        .map_err(|_| anyhow::anyhow!("the decoded token is not text: wrong OTP?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_undoes_the_otp_xor() {
        let token = "lvs.abcdefghijklmnopqrstuvwx";
        let otp = "0123456789ABCDEFGHIJKLMNOPQR";
        let x: Vec<u8> = token.bytes().zip(otp.bytes()).map(|(a, b)| a ^ b).collect();
        let enc = base64::engine::general_purpose::STANDARD_NO_PAD.encode(x);
        assert_eq!(decode_token(&enc, otp).unwrap().as_str(), token);
        assert!(decode_token(&enc, "short").is_err());
    }
}
