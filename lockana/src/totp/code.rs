//! One-time codes: a generator from a stored seed, a constant-time check across the
//! skew window that reports the matching time step, the replay rule (a step is
//! accepted only if it is newer than the last accepted one), and the normalization
//! of what people type.

use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, Builder, Totp};

/// The hash algorithms TOTP keys may use, by Vault's names.
pub(crate) fn algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "SHA1" => Some(Algorithm::SHA1),
        "SHA256" => Some(Algorithm::SHA256),
        "SHA512" => Some(Algorithm::SHA512),
        _ => None,
    }
}

/// A code generator. Imported keys may be shorter than RFC 4226's 128 bits (Vault
/// accepts them), so the RFC checks are the callers' job: generated seeds are
/// always at least 128 bits.
pub(crate) fn generator(secret: &[u8], algorithm: Algorithm, digits: u8, period: u64) -> Totp {
    Builder::new()
        .with_secret(secret.to_vec())
        .with_algorithm(algorithm)
        .with_digits(digits)
        .with_step_duration(period.max(1))
        .with_skew(0)
        .build_noncompliant()
}

/// The code of the step that contains `unix_secs`.
pub(crate) fn code_at(totp: &Totp, unix_secs: u64) -> String {
    totp.generate(unix_secs).to_string()
}

/// The newest step in `[now - skew, now + skew]` whose code equals `code`. Every step
/// of the window is computed and compared in constant time, so the answer's timing
/// does not depend on which step (if any) matched.
pub(crate) fn matching_step(totp: &Totp, code: &str, unix_secs: u64, skew: u64) -> Option<u64> {
    let period = totp.step().max(1);
    let origin = unix_secs / period;
    let mut found = None;
    for step in origin.saturating_sub(skew)..=origin.saturating_add(skew) {
        let expected = code_at(totp, step.saturating_mul(period));
        if bool::from(expected.as_bytes().ct_eq(code.as_bytes())) {
            found = Some(step);
        }
    }
    found
}

/// Whether a code of `step` may be accepted after `last_used`: only steps newer
/// than the last accepted one are, so a code works once and an older code (even one
/// never used) fails once a newer one was accepted.
pub(crate) fn is_fresh(step: u64, last_used: Option<u64>) -> bool {
    last_used.is_none_or(|last| step > last)
}

/// Longest input looked at; anything longer is refused before any work.
const MAX_INPUT: usize = 64;

/// Normalizes a code as typed by a person: surrounding whitespace is dropped, single
/// whitespace characters between digits are dropped (`"123 456"`), full-width digits
/// (U+FF10..U+FF19) become ASCII digits. Anything else that is not a digit, two
/// separators in a row, or a result of the wrong length is refused (`None`).
pub(crate) fn normalize(input: &str, digits: usize) -> Option<String> {
    if input.len() > MAX_INPUT {
        return None;
    }
    let mut out = String::with_capacity(digits);
    let mut after_separator = false;
    for c in input.trim().chars() {
        match c {
            '0'..='9' => out.push(c),
            '\u{FF10}'..='\u{FF19}' => {
                let d = u32::from(c) - 0xFF10 + u32::from('0');
                out.push(char::from_u32(d)?);
            }
            c if c.is_whitespace() && !after_separator => {
                after_separator = true;
                continue;
            }
            _ => return None,
        }
        after_separator = false;
    }
    (out.len() == digits).then_some(out)
}

/// Decodes a base32 seed as Vault accepts it: case-insensitive, padding optional.
pub(crate) fn decode_base32(s: &str) -> Option<Vec<u8>> {
    let upper = s.trim_end_matches('=').to_ascii_uppercase();
    if upper.is_empty() || upper.contains('=') {
        return None;
    }
    let secret = totp_rs::Secret::try_from_base32(&upper).ok()?;
    Some(secret.as_bytes().to_vec())
}

/// Base32 without padding, as otpauth URLs carry seeds.
pub(crate) fn encode_base32(bytes: &[u8]) -> String {
    totp_rs::Secret::from(bytes).to_base32()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc_totp(alg: Algorithm, secret: &[u8]) -> Totp {
        generator(secret, alg, 8, 30)
    }

    #[test]
    fn rfc6238_vectors() {
        // RFC 6238 appendix B, T = 59 and 1111111109.
        let sha1 = rfc_totp(Algorithm::SHA1, b"12345678901234567890");
        assert_eq!(code_at(&sha1, 59), "94287082");
        assert_eq!(code_at(&sha1, 1_111_111_109), "07081804");
        let sha256 = rfc_totp(Algorithm::SHA256, b"12345678901234567890123456789012");
        assert_eq!(code_at(&sha256, 59), "46119246");
        let sha512 = rfc_totp(
            Algorithm::SHA512,
            b"1234567890123456789012345678901234567890123456789012345678901234",
        );
        assert_eq!(code_at(&sha512, 59), "90693936");
    }

    #[test]
    fn matching_step_honours_the_skew() {
        let t = generator(b"12345678901234567890", Algorithm::SHA1, 6, 30);
        let now = 30 * 1000 + 7;
        let prev = code_at(&t, now - 30);
        let next = code_at(&t, now + 30);
        let far = code_at(&t, now - 60);
        assert_eq!(matching_step(&t, &prev, now, 1), Some(999));
        assert_eq!(matching_step(&t, &next, now, 1), Some(1001));
        assert_eq!(matching_step(&t, &prev, now, 0), None);
        assert_eq!(matching_step(&t, &far, now, 1), None);
        assert_eq!(matching_step(&t, "12345", now, 1), None);
    }

    #[test]
    fn totp_code_reuse_rejected_by_the_step_rule() {
        assert!(is_fresh(5, None));
        assert!(is_fresh(6, Some(5)));
        assert!(!is_fresh(5, Some(5)));
        assert!(!is_fresh(4, Some(5)));
    }

    #[test]
    fn normalization_is_consistent() {
        for ok in [
            "123456",
            " 123456 ",
            "123 456",
            "\t123456\n",
            "１２３４５６",
            "１２３ ４５６",
            "123\u{3000}456",
        ] {
            assert_eq!(normalize(ok, 6).as_deref(), Some("123456"), "{ok:?}");
        }
        for bad in [
            "",
            "12345",
            "1234567",
            "123-456",
            "123  456",
            "12345a",
            "١٢٣٤٥٦", // Arabic-Indic digits are not accepted
            "+123456",
            "123456\u{0}",
            &"1".repeat(100),
        ] {
            assert_eq!(normalize(bad, 6), None, "{bad:?}");
        }
    }

    #[test]
    fn base32_round_trip() {
        let raw = b"12345678901234567890";
        let enc = encode_base32(raw);
        assert!(!enc.contains('='));
        assert_eq!(decode_base32(&enc).as_deref(), Some(&raw[..]));
        assert_eq!(
            decode_base32(&enc.to_ascii_lowercase()).as_deref(),
            Some(&raw[..])
        );
        assert_eq!(decode_base32("not base32!"), None);
        assert_eq!(decode_base32(""), None);
    }
}
