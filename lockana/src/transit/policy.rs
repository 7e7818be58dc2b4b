//! A named transit key (OpenBao's `keysutil.Policy`): its type, its versions and the
//! cryptography each version does. All private-key work goes through aws-lc-rs
//! (constant-time RSA, ECDSA, Ed25519, AES-GCM, ChaCha20-Poly1305, HMAC, HKDF); no
//! RSA private key ever reaches the `rsa` crate (RUSTSEC-2023-0071).
//!
//! Key material is stored behind the barrier as JSON with base64 fields, and held in
//! memory only in [`Secret`] (zeroized on drop, no `Debug`).

use std::collections::BTreeMap;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rand::SecureRandom as _;
use aws_lc_rs::signature::{self, KeyPair as _};
use aws_lc_rs::{aead, digest, hkdf, hmac, rsa};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The kinds of key transit creates (OpenBao's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyType {
    Aes128Gcm96,
    Aes256Gcm96,
    ChaCha20Poly1305,
    Ed25519,
    EcdsaP256,
    EcdsaP384,
    EcdsaP521,
    Rsa2048,
    Rsa3072,
    Rsa4096,
    Hmac,
}

impl KeyType {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "aes128-gcm96" => KeyType::Aes128Gcm96,
            "aes256-gcm96" => KeyType::Aes256Gcm96,
            "chacha20-poly1305" => KeyType::ChaCha20Poly1305,
            "ed25519" => KeyType::Ed25519,
            "ecdsa-p256" => KeyType::EcdsaP256,
            "ecdsa-p384" => KeyType::EcdsaP384,
            "ecdsa-p521" => KeyType::EcdsaP521,
            "rsa-2048" => KeyType::Rsa2048,
            "rsa-3072" => KeyType::Rsa3072,
            "rsa-4096" => KeyType::Rsa4096,
            "hmac" => KeyType::Hmac,
            _ => return None,
        })
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            KeyType::Aes128Gcm96 => "aes128-gcm96",
            KeyType::Aes256Gcm96 => "aes256-gcm96",
            KeyType::ChaCha20Poly1305 => "chacha20-poly1305",
            KeyType::Ed25519 => "ed25519",
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
            KeyType::EcdsaP521 => "ecdsa-p521",
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::Rsa3072 => "rsa-3072",
            KeyType::Rsa4096 => "rsa-4096",
            KeyType::Hmac => "hmac",
        }
    }

    pub(crate) fn is_symmetric(self) -> bool {
        matches!(
            self,
            KeyType::Aes128Gcm96 | KeyType::Aes256Gcm96 | KeyType::ChaCha20Poly1305
        )
    }

    pub(crate) fn is_rsa(self) -> bool {
        matches!(self, KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096)
    }

    pub(crate) fn is_ecdsa(self) -> bool {
        matches!(
            self,
            KeyType::EcdsaP256 | KeyType::EcdsaP384 | KeyType::EcdsaP521
        )
    }

    pub(crate) fn encryption_supported(self) -> bool {
        self.is_symmetric() || self.is_rsa()
    }

    pub(crate) fn signing_supported(self) -> bool {
        self.is_ecdsa() || self.is_rsa() || self == KeyType::Ed25519
    }

    pub(crate) fn derivation_supported(self) -> bool {
        self.is_symmetric() || self == KeyType::Ed25519
    }

    /// Whether sign/verify hash the input first (Ed25519 signs the message itself).
    pub(crate) fn hash_signature_input(self) -> bool {
        self.is_ecdsa() || self.is_rsa()
    }

    fn sym_len(self) -> usize {
        if self == KeyType::Aes128Gcm96 { 16 } else { 32 }
    }
}

/// Bytes that must not outlive their use: zeroized on drop, never printed.
#[derive(Clone, Default)]
pub(crate) struct Secret(pub Zeroizing<Vec<u8>>);

impl Secret {
    pub(crate) fn new(b: Vec<u8>) -> Self {
        Secret(Zeroizing::new(b))
    }
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = Zeroizing::new(B64.encode(self.bytes()));
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(d)?);
        B64.decode(text.as_bytes())
            .map(Secret::new)
            .map_err(|_| serde::de::Error::custom("invalid key material"))
    }
}

/// One version of a key.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct KeyVersion {
    /// Symmetric or HMAC key; Ed25519's 64-byte private key (seed and public key);
    /// RSA and ECDSA private keys as PKCS#8 DER.
    #[serde(default)]
    pub key: Secret,
    /// The version's HMAC key (transit's `hmac` endpoint works with every key type).
    #[serde(default)]
    pub hmac_key: Secret,
    /// RFC 3339 creation time.
    pub creation_time: String,
    /// Creation time in Unix seconds (what symmetric keys report in `keys`).
    pub time: i64,
    /// ECDSA: PEM public key; Ed25519: base64 public key; others empty.
    #[serde(default)]
    pub public_key: String,
    #[serde(default)]
    pub convergent_version: i64,
}

/// When a key was backed up or restored, and its latest version then.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct VersionInfo {
    pub time: String,
    pub version: i64,
}

/// A named key as stored under `policy/<name>`.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Policy {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub derived: bool,
    pub convergent_encryption: bool,
    pub keys: BTreeMap<i64, KeyVersion>,
    pub latest_version: i64,
    pub min_decryption_version: i64,
    pub min_encryption_version: i64,
    pub min_available_version: i64,
    pub deletion_allowed: bool,
    pub exportable: bool,
    pub allow_plaintext_backup: bool,
    pub auto_rotate_period: i64,
    #[serde(default)]
    pub key_size: i64,
    #[serde(default)]
    pub backup_info: Option<VersionInfo>,
    #[serde(default)]
    pub restore_info: Option<VersionInfo>,
}

/// Why one operation failed: a caller's mistake (400) or the vault's (500). The text
/// is OpenBao's and never contains key material or the caller's data.
#[derive(Debug)]
pub(crate) enum OpError {
    User(String),
    Internal(String),
}

impl OpError {
    pub(crate) fn user(s: impl Into<String>) -> Self {
        OpError::User(s.into())
    }
    pub(crate) fn text(&self) -> &str {
        match self {
            OpError::User(s) | OpError::Internal(s) => s,
        }
    }
}

pub(crate) type OpResult<T> = std::result::Result<T, OpError>;

fn internal<E>(_: E) -> OpError {
    OpError::Internal("internal cryptographic failure".into())
}

/// Current convergent-encryption scheme (nonce = HMAC of the plaintext).
const CONVERGENT_VERSION: i64 = 3;
/// Smallest and largest HMAC key (bytes), as OpenBao.
pub(crate) const HMAC_MIN_KEY_SIZE: i64 = 32;
pub(crate) const HMAC_MAX_KEY_SIZE: i64 = 512;

pub(crate) const DERIVE_MISSING_CONTEXT: &str = "missing 'context' for key derivation; the key was created using a derived key, which means additional, per-request information must be included in order to perform operations with the key";

pub(crate) fn random_bytes(n: usize) -> OpResult<Vec<u8>> {
    let mut out = vec![0u8; n];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut out)
        .map_err(internal)?;
    Ok(out)
}

/// PEM text of DER bytes (64-column base64, trailing newline, as Go's `pem`).
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    let b = B64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

struct Len(usize);
impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-SHA256 with no salt and the context as info (OpenBao's `Kdf_hkdf_sha256`).
fn hkdf_sha256(ikm: &[u8], info: &[u8], n: usize) -> OpResult<Secret> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(ikm);
    let info = [info];
    let okm = prk.expand(&info, Len(n)).map_err(internal)?;
    let mut out = Zeroizing::new(vec![0u8; n]);
    okm.fill(&mut out).map_err(internal)?;
    Ok(Secret(out))
}

/// A hash algorithm of sign, verify, hmac and hash (OpenBao's `HashTypeMap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hash {
    None,
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
    Sha3_256,
    Sha3_384,
    Sha3_512,
}

impl Hash {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Hash::None,
            "sha1" => Hash::Sha1,
            "sha2-224" => Hash::Sha224,
            "sha2-256" => Hash::Sha256,
            "sha2-384" => Hash::Sha384,
            "sha2-512" => Hash::Sha512,
            "sha3-256" => Hash::Sha3_256,
            "sha3-384" => Hash::Sha3_384,
            "sha3-512" => Hash::Sha3_512,
            _ => return None,
        })
    }

    fn algorithm(self) -> Option<&'static digest::Algorithm> {
        Some(match self {
            Hash::None => return None,
            Hash::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            Hash::Sha224 => &digest::SHA224,
            Hash::Sha256 => &digest::SHA256,
            Hash::Sha384 => &digest::SHA384,
            Hash::Sha512 => &digest::SHA512,
            Hash::Sha3_256 => &digest::SHA3_256,
            Hash::Sha3_384 => &digest::SHA3_384,
            Hash::Sha3_512 => &digest::SHA3_512,
        })
    }

    /// The digest of `data` (`none` passes the input through).
    pub(crate) fn sum(self, data: &[u8]) -> Vec<u8> {
        match self.algorithm() {
            None => data.to_vec(),
            Some(a) => digest::digest(a, data).as_ref().to_vec(),
        }
    }

    fn hmac_algorithm(self) -> Option<hmac::Algorithm> {
        Some(match self {
            Hash::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Hash::Sha224 => hmac::HMAC_SHA224,
            Hash::Sha256 => hmac::HMAC_SHA256,
            Hash::Sha384 => hmac::HMAC_SHA384,
            Hash::Sha512 => hmac::HMAC_SHA512,
            _ => return None,
        })
    }
}

/// HMAC of `data` under `key`, or `None` for a hash HMAC does not support here.
pub(crate) fn hmac_sum(hash: Hash, key: &[u8], data: &[u8]) -> Option<Vec<u8>> {
    let alg = hash.hmac_algorithm()?;
    Some(
        hmac::sign(&hmac::Key::new(alg, key), data)
            .as_ref()
            .to_vec(),
    )
}

/// RSA-PSS salt length choice of sign/verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SaltLength {
    /// Sign with the largest salt; verify whatever length was used.
    Auto,
    /// The digest's length.
    Hash,
    Custom(u16),
}

/// Options of one sign or verify call.
#[derive(Clone, Copy)]
pub(crate) struct SignOpts {
    pub hash: Hash,
    pub jws: bool,
    pub pkcs1v15: bool,
    pub salt: SaltLength,
}

macro_rules! rsa_encoding {
    ($name:ident, $base:expr, $salt:expr) => {
        static $name: signature::RsaSignatureEncoding = $base.with_pss_salt_length($salt);
    };
}
rsa_encoding!(
    PSS256_MAX,
    signature::RSA_PSS_SHA256,
    signature::RsaPssSaltLength::Max
);
rsa_encoding!(
    PSS384_MAX,
    signature::RSA_PSS_SHA384,
    signature::RsaPssSaltLength::Max
);
rsa_encoding!(
    PSS512_MAX,
    signature::RSA_PSS_SHA512,
    signature::RsaPssSaltLength::Max
);

fn rsa_sign_encoding(
    hash: Hash,
    pkcs1: bool,
    salt: SaltLength,
) -> OpResult<&'static signature::RsaSignatureEncoding> {
    let unsupported = || OpError::Internal("unsupported hash algorithm".into());
    Ok(match (hash, pkcs1, salt) {
        (Hash::Sha256, true, _) => &signature::RSA_PKCS1_SHA256,
        (Hash::Sha384, true, _) => &signature::RSA_PKCS1_SHA384,
        (Hash::Sha512, true, _) => &signature::RSA_PKCS1_SHA512,
        (Hash::Sha256, false, SaltLength::Auto) => &PSS256_MAX,
        (Hash::Sha384, false, SaltLength::Auto) => &PSS384_MAX,
        (Hash::Sha512, false, SaltLength::Auto) => &PSS512_MAX,
        (Hash::Sha256, false, SaltLength::Hash) => &signature::RSA_PSS_SHA256,
        (Hash::Sha384, false, SaltLength::Hash) => &signature::RSA_PSS_SHA384,
        (Hash::Sha512, false, SaltLength::Hash) => &signature::RSA_PSS_SHA512,
        _ => return Err(unsupported()),
    })
}

/// Verification parameters for RSA; PSS with `Auto` tries the largest salt, then the
/// digest-length one.
fn rsa_verify_params(
    hash: Hash,
    pkcs1: bool,
    salt: SaltLength,
) -> OpResult<Vec<&'static signature::RsaParameters>> {
    static P256_MAX: signature::RsaParameters =
        signature::RSA_PSS_2048_8192_SHA256.with_pss_salt_length(signature::RsaPssSaltLength::Max);
    static P384_MAX: signature::RsaParameters =
        signature::RSA_PSS_2048_8192_SHA384.with_pss_salt_length(signature::RsaPssSaltLength::Max);
    static P512_MAX: signature::RsaParameters =
        signature::RSA_PSS_2048_8192_SHA512.with_pss_salt_length(signature::RsaPssSaltLength::Max);
    let unsupported = || OpError::Internal("unsupported hash algorithm".into());
    Ok(match (hash, pkcs1, salt) {
        (Hash::Sha256, true, _) => vec![&signature::RSA_PKCS1_2048_8192_SHA256],
        (Hash::Sha384, true, _) => vec![&signature::RSA_PKCS1_2048_8192_SHA384],
        (Hash::Sha512, true, _) => vec![&signature::RSA_PKCS1_2048_8192_SHA512],
        (Hash::Sha256, false, SaltLength::Auto) => {
            vec![&P256_MAX, &signature::RSA_PSS_2048_8192_SHA256]
        }
        (Hash::Sha384, false, SaltLength::Auto) => {
            vec![&P384_MAX, &signature::RSA_PSS_2048_8192_SHA384]
        }
        (Hash::Sha512, false, SaltLength::Auto) => {
            vec![&P512_MAX, &signature::RSA_PSS_2048_8192_SHA512]
        }
        (Hash::Sha256, false, SaltLength::Hash) => vec![&signature::RSA_PSS_2048_8192_SHA256],
        (Hash::Sha384, false, SaltLength::Hash) => vec![&signature::RSA_PSS_2048_8192_SHA384],
        (Hash::Sha512, false, SaltLength::Hash) => vec![&signature::RSA_PSS_2048_8192_SHA512],
        _ => return Err(unsupported()),
    })
}

/// ECDSA signs the leftmost bits of any digest: pad or cut it to the curve's digest
/// size so aws-lc-rs (which pairs each curve with one digest) signs the same integer
/// Go's `ecdsa.Sign` would.
fn ecdsa_digest(kind: KeyType, input: &[u8]) -> OpResult<digest::Digest> {
    let (alg, n) = match kind {
        KeyType::EcdsaP256 => (&digest::SHA256, 32),
        KeyType::EcdsaP384 => (&digest::SHA384, 48),
        _ => (&digest::SHA512, 64),
    };
    let mut buf = vec![0u8; n];
    if input.len() >= n {
        buf.copy_from_slice(&input[..n]);
    } else {
        buf[n - input.len()..].copy_from_slice(input);
    }
    digest::Digest::import_less_safe(&buf, alg).map_err(internal)
}

fn ecdsa_signing_alg(kind: KeyType) -> &'static signature::EcdsaSigningAlgorithm {
    match kind {
        KeyType::EcdsaP256 => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        KeyType::EcdsaP384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        _ => &signature::ECDSA_P521_SHA512_ASN1_SIGNING,
    }
}

fn ecdsa_verify_alg(kind: KeyType) -> &'static signature::EcdsaVerificationAlgorithm {
    match kind {
        KeyType::EcdsaP256 => &signature::ECDSA_P256_SHA256_ASN1,
        KeyType::EcdsaP384 => &signature::ECDSA_P384_SHA384_ASN1,
        _ => &signature::ECDSA_P521_SHA512_ASN1,
    }
}

fn curve_bytes(kind: KeyType) -> usize {
    match kind {
        KeyType::EcdsaP256 => 32,
        KeyType::EcdsaP384 => 48,
        _ => 66,
    }
}

/// A minimal DER reader for the few structures transit re-encodes.
pub(crate) mod der {
    /// Reads one TLV; returns (tag, contents, rest).
    pub(crate) fn read(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, mut rest) = rest.split_first()?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let mut len = 0usize;
            for &b in &rest[..n] {
                len = (len << 8) | usize::from(b);
            }
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return None;
        }
        Some((tag, &rest[..len], &rest[len..]))
    }

    fn write_len(out: &mut Vec<u8>, len: usize) {
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().take_while(|&&b| b == 0).count();
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
    }

    pub(crate) fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        write_len(&mut out, contents.len());
        out.extend_from_slice(contents);
        out
    }

    /// A positive INTEGER from big-endian bytes.
    pub(crate) fn uint(bytes: &[u8]) -> Vec<u8> {
        let start = bytes.iter().take_while(|&&b| b == 0).count();
        let mut v = bytes[start..].to_vec();
        if v.first().is_none_or(|&b| b & 0x80 != 0) {
            v.insert(0, 0);
        }
        tlv(0x02, &v)
    }

    /// The private-key OCTET STRING of a PKCS#8 `PrivateKeyInfo`.
    pub(crate) fn pkcs8_inner(pkcs8: &[u8]) -> Option<&[u8]> {
        let (0x30, seq, _) = read(pkcs8)? else {
            return None;
        };
        let (0x02, _, rest) = read(seq)? else {
            return None;
        };
        let (0x30, _, rest) = read(rest)? else {
            return None;
        };
        let (0x04, key, _) = read(rest)? else {
            return None;
        };
        Some(key)
    }
}

/// ECDSA `r||s` (JWS) from an ASN.1 `SEQUENCE { r, s }`.
fn ecdsa_asn1_to_fixed(sig: &[u8], n: usize) -> Option<Vec<u8>> {
    let (0x30, seq, _) = der::read(sig)? else {
        return None;
    };
    let (0x02, r, rest) = der::read(seq)? else {
        return None;
    };
    let (0x02, s, _) = der::read(rest)? else {
        return None;
    };
    let mut out = vec![0u8; 2 * n];
    for (i, x) in [r, s].into_iter().enumerate() {
        let x = &x[x.iter().take_while(|&&b| b == 0).count()..];
        if x.len() > n {
            return None;
        }
        out[(i + 1) * n - x.len()..(i + 1) * n].copy_from_slice(x);
    }
    Some(out)
}

fn ecdsa_fixed_to_asn1(sig: &[u8]) -> Vec<u8> {
    let half = sig.len() / 2;
    let mut body = der::uint(&sig[..half]);
    body.extend(der::uint(&sig[half..]));
    der::tlv(0x30, &body)
}

fn rsa_bits(kind: KeyType) -> rsa::KeySize {
    match kind {
        KeyType::Rsa3072 => rsa::KeySize::Rsa3072,
        KeyType::Rsa4096 => rsa::KeySize::Rsa4096,
        _ => rsa::KeySize::Rsa2048,
    }
}

/// Creates the key material of a new version.
pub(crate) fn generate(
    kind: KeyType,
    key_size: usize,
    now: &str,
    unix: i64,
) -> OpResult<KeyVersion> {
    let hmac_key = Secret::new(random_bytes(32)?);
    let mut v = KeyVersion {
        key: Secret::default(),
        hmac_key,
        creation_time: now.to_owned(),
        time: unix,
        public_key: String::new(),
        convergent_version: 0,
    };
    match kind {
        KeyType::Aes128Gcm96 | KeyType::Aes256Gcm96 | KeyType::ChaCha20Poly1305 => {
            v.key = Secret::new(random_bytes(kind.sym_len())?);
        }
        KeyType::Hmac => {
            v.key = Secret::new(random_bytes(key_size)?);
            v.hmac_key = v.key.clone();
        }
        KeyType::Ed25519 => {
            let kp = signature::Ed25519KeyPair::generate().map_err(internal)?;
            let seed = kp.seed().map_err(internal)?;
            let seed: aws_lc_rs::encoding::Curve25519SeedBin<'_> =
                aws_lc_rs::encoding::AsBigEndian::as_be_bytes(&seed).map_err(internal)?;
            let mut full = Zeroizing::new(seed.as_ref().to_vec());
            full.extend_from_slice(kp.public_key().as_ref());
            v.key = Secret(full);
            v.public_key = B64.encode(kp.public_key().as_ref());
        }
        KeyType::EcdsaP256 | KeyType::EcdsaP384 | KeyType::EcdsaP521 => {
            let kp =
                signature::EcdsaKeyPair::generate(ecdsa_signing_alg(kind)).map_err(internal)?;
            let doc = kp.to_pkcs8v1().map_err(internal)?;
            v.key = Secret::new(doc.as_ref().to_vec());
            let spki: PublicKeyX509Der<'_> = kp.public_key().as_der().map_err(internal)?;
            v.public_key = pem("PUBLIC KEY", spki.as_ref());
        }
        KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => {
            let kp = rsa::KeyPair::generate(rsa_bits(kind)).map_err(internal)?;
            let der: Pkcs8V1Der<'_> = kp.as_der().map_err(internal)?;
            v.key = Secret::new(der.as_ref().to_vec());
        }
    }
    Ok(v)
}

impl Policy {
    pub(crate) fn key_type(&self) -> KeyType {
        KeyType::parse(&self.kind).unwrap_or(KeyType::Aes256Gcm96)
    }

    /// Whether a key read from a backup is one this engine can use without surprises:
    /// known type, key lengths and encodings that match it, consistent versions.
    pub(crate) fn is_well_formed(&self) -> bool {
        let Some(kind) = KeyType::parse(&self.kind) else {
            return false;
        };
        if (self.convergent_encryption && !self.derived)
            || (self.derived && !kind.derivation_supported())
            || self.keys.is_empty()
            || self.keys.keys().next_back() != Some(&self.latest_version)
            || self.min_decryption_version < 1
            || self.min_decryption_version > self.latest_version
            || self.min_encryption_version > self.latest_version
        {
            return false;
        }
        self.keys.values().all(|v| {
            let k = v.key.bytes();
            v.hmac_key.bytes().len() >= 16
                && match kind {
                    KeyType::Aes128Gcm96 | KeyType::Aes256Gcm96 | KeyType::ChaCha20Poly1305 => {
                        k.len() == kind.sym_len()
                    }
                    KeyType::Hmac => {
                        (HMAC_MIN_KEY_SIZE..=HMAC_MAX_KEY_SIZE).contains(&(k.len() as i64))
                    }
                    KeyType::Ed25519 => k.len() == 64,
                    KeyType::EcdsaP256 | KeyType::EcdsaP384 | KeyType::EcdsaP521 => {
                        signature::EcdsaKeyPair::from_pkcs8(ecdsa_signing_alg(kind), k).is_ok()
                    }
                    _ => rsa::KeyPair::from_pkcs8(k).is_ok(),
                }
        })
    }

    pub(crate) fn version(&self, ver: i64) -> OpResult<&KeyVersion> {
        self.keys
            .get(&ver)
            .ok_or_else(|| OpError::user("no such key version"))
    }

    /// Adds a new latest version.
    pub(crate) fn rotate(&mut self, now: &str, unix: i64) -> OpResult<()> {
        let kind = self.key_type();
        let size = usize::try_from(self.key_size.max(HMAC_MIN_KEY_SIZE)).unwrap_or(32);
        let mut v = generate(kind, size, now, unix)?;
        if self.convergent_encryption {
            v.convergent_version = CONVERGENT_VERSION;
        }
        self.latest_version += 1;
        self.keys.insert(self.latest_version, v);
        if self.min_decryption_version == 0 {
            self.min_decryption_version = 1;
        }
        Ok(())
    }

    /// The symmetric (or Ed25519) key of `ver`, derived from the context when the key
    /// is derived.
    fn get_key(&self, context: &[u8], ver: i64, n: usize) -> OpResult<Secret> {
        let entry = self.version(ver)?;
        if !self.derived {
            return Ok(entry.key.clone());
        }
        if context.is_empty() {
            return Err(OpError::user(DERIVE_MISSING_CONTEXT));
        }
        hkdf_sha256(entry.key.bytes(), context, n)
    }

    fn check_encrypt_version(&self, ver: i64, what: &str) -> OpResult<i64> {
        match ver {
            0 => Ok(self.latest_version),
            v if v < 0 => Err(OpError::user(format!(
                "requested version for {what} is negative"
            ))),
            v if v > self.latest_version => Err(OpError::user(format!(
                "requested version for {what} is higher than the latest key version"
            ))),
            v if self.min_encryption_version > 0 && v < self.min_encryption_version => {
                Err(OpError::user(format!(
                    "requested version for {what} is less than the minimum encryption key version"
                )))
            }
            v => Ok(v),
        }
    }

    /// Encrypts `plaintext` with version `ver` (0: latest) into `vault:vN:<base64>`.
    pub(crate) fn encrypt(
        &self,
        ver: i64,
        context: &[u8],
        plaintext: &[u8],
        aad: &[u8],
    ) -> OpResult<String> {
        let kind = self.key_type();
        if !kind.encryption_supported() {
            return Err(OpError::user(format!(
                "message encryption not supported for key type {}",
                kind.as_str()
            )));
        }
        let ver = self.check_encrypt_version(ver, "encryption")?;
        let ct = if kind.is_rsa() {
            let entry = self.version(ver)?;
            let kp = rsa::PrivateDecryptingKey::from_pkcs8(entry.key.bytes()).map_err(internal)?;
            let public = rsa::OaepPublicEncryptingKey::new(kp.public_key()).map_err(internal)?;
            if plaintext.len() > public.max_plaintext_size(&rsa::OAEP_SHA256_MGF1SHA256) {
                return Err(OpError::Internal(
                    "failed to RSA encrypt the plaintext: crypto/rsa: message too long for RSA key size".into(),
                ));
            }
            let mut out = vec![0u8; public.ciphertext_size()];
            let n = public
                .encrypt(&rsa::OAEP_SHA256_MGF1SHA256, plaintext, &mut out, None)
                .map_err(internal)?
                .len();
            out.truncate(n);
            out
        } else {
            let entry = self.version(ver)?;
            let enc_len = kind.sym_len();
            let convergent = self.convergent_encryption && entry.convergent_version >= 3;
            let key = self.get_key(context, ver, enc_len + if convergent { 32 } else { 0 })?;
            let (enc_key, nonce) = if convergent {
                let mac = hmac::sign(
                    &hmac::Key::new(hmac::HMAC_SHA256, &key.bytes()[enc_len..]),
                    plaintext,
                );
                let mut nonce = [0u8; 12];
                nonce.copy_from_slice(&mac.as_ref()[..12]);
                (&key.bytes()[..enc_len], nonce)
            } else {
                let mut nonce = [0u8; 12];
                aws_lc_rs::rand::SystemRandom::new()
                    .fill(&mut nonce)
                    .map_err(internal)?;
                (key.bytes(), nonce)
            };
            seal(kind, enc_key, nonce, plaintext, aad)?
        };
        Ok(format!("vault:v{ver}:{}", B64.encode(ct)))
    }

    /// Splits `vault:vN:<base64>` into its checked version and decoded bytes.
    pub(crate) fn parse_versioned(&self, value: &str, what: &str) -> OpResult<(i64, String)> {
        let rest = value
            .strip_prefix("vault:v")
            .ok_or_else(|| OpError::user(format!("invalid {what}: no prefix")))?;
        let (ver, body) = rest
            .split_once(':')
            .ok_or_else(|| OpError::user(format!("invalid {what}: wrong number of fields")))?;
        let ver: i64 = ver.parse().map_err(|_| {
            OpError::user(format!(
                "invalid {what}: version number could not be decoded"
            ))
        })?;
        let ver = if ver == 0 { 1 } else { ver };
        if ver > self.latest_version {
            return Err(OpError::user(format!("invalid {what}: version is too new")));
        }
        if self.min_decryption_version > 0 && ver < self.min_decryption_version {
            return Err(OpError::user(
                "ciphertext or signature version is disallowed by policy (too old)",
            ));
        }
        Ok((ver, body.to_owned()))
    }

    /// Decrypts a `vault:vN:` ciphertext.
    pub(crate) fn decrypt(&self, context: &[u8], value: &str, aad: &[u8]) -> OpResult<Secret> {
        let kind = self.key_type();
        if !kind.encryption_supported() {
            return Err(OpError::user(format!(
                "message decryption not supported for key type {}",
                kind.as_str()
            )));
        }
        let (ver, body) = self.parse_versioned(value, "ciphertext")?;
        let decoded = B64
            .decode(body.as_bytes())
            .map_err(|_| OpError::user("invalid ciphertext: could not decode base64"))?;
        if kind.is_rsa() {
            let entry = self.version(ver)?;
            let key = rsa::PrivateDecryptingKey::from_pkcs8(entry.key.bytes()).map_err(internal)?;
            let key = rsa::OaepPrivateDecryptingKey::new(key).map_err(internal)?;
            let mut out = Zeroizing::new(vec![0u8; key.min_output_size()]);
            // One text for every failure: no padding oracle (RUSTSEC-2023-0071 class).
            let n = key
                .decrypt(&rsa::OAEP_SHA256_MGF1SHA256, &decoded, &mut out, None)
                .map_err(|_| {
                    OpError::user(
                        "failed to RSA decrypt the ciphertext: crypto/rsa: decryption error",
                    )
                })?
                .len();
            out.truncate(n);
            return Ok(Secret(out));
        }
        let key = self.get_key(context, ver, kind.sym_len())?;
        let enc_key = &key.bytes()[..kind.sym_len().min(key.bytes().len())];
        if decoded.len() < 12 {
            return Err(OpError::user("invalid ciphertext length"));
        }
        let (nonce, ct) = decoded.split_at(12);
        open(kind, enc_key, nonce, ct, aad)
    }

    /// The HMAC key of a version (OpenBao's `HMACKey`).
    pub(crate) fn hmac_key(&self, ver: i64) -> OpResult<&Secret> {
        if ver < 0 {
            return Err(OpError::user(
                "key version does not exist (cannot be negative)",
            ));
        }
        if ver > self.latest_version {
            return Err(OpError::user(format!(
                "key version does not exist; latest key version is {}",
                self.latest_version
            )));
        }
        let entry = self.version(ver)?;
        if entry.hmac_key.is_empty() {
            return Err(OpError::user("no HMAC key exists for that key version"));
        }
        Ok(&entry.hmac_key)
    }

    /// The Ed25519 key pair of a version (derived from the context for derived keys).
    fn ed25519(&self, context: &[u8], ver: i64) -> OpResult<signature::Ed25519KeyPair> {
        let seed = if self.derived {
            self.get_key(context, ver, 32)?
        } else {
            let k = self.version(ver)?.key.clone();
            Secret::new(k.bytes()[..32.min(k.bytes().len())].to_vec())
        };
        signature::Ed25519KeyPair::from_seed_unchecked(seed.bytes()).map_err(internal)
    }

    /// Signs `input` (already hashed when the key type hashes) with version `ver`.
    /// Returns the `vault:vN:` signature and, for derived Ed25519 keys, the public key.
    pub(crate) fn sign(
        &self,
        ver: i64,
        context: &[u8],
        input: &[u8],
        opts: SignOpts,
    ) -> OpResult<(String, Option<Vec<u8>>)> {
        let kind = self.key_type();
        let ver = self.check_encrypt_version(ver, "signing")?;
        let entry = self.version(ver)?;
        let mut public = None;
        let sig = match kind {
            KeyType::Ed25519 => {
                let kp = self.ed25519(context, ver)?;
                if self.derived {
                    public = Some(kp.public_key().as_ref().to_vec());
                }
                kp.sign(input).as_ref().to_vec()
            }
            KeyType::EcdsaP256 | KeyType::EcdsaP384 | KeyType::EcdsaP521 => {
                let kp =
                    signature::EcdsaKeyPair::from_pkcs8(ecdsa_signing_alg(kind), entry.key.bytes())
                        .map_err(internal)?;
                let sig = kp
                    .sign_digest(&ecdsa_digest(kind, input)?)
                    .map_err(internal)?;
                if opts.jws {
                    ecdsa_asn1_to_fixed(sig.as_ref(), curve_bytes(kind))
                        .ok_or_else(|| internal(()))?
                } else {
                    sig.as_ref().to_vec()
                }
            }
            _ if kind.is_rsa() => {
                let kp = rsa::KeyPair::from_pkcs8(entry.key.bytes()).map_err(internal)?;
                let enc = rsa_sign_encoding(opts.hash, opts.pkcs1v15, opts.salt)?;
                let alg = opts.hash.algorithm().ok_or_else(|| internal(()))?;
                let d = digest::Digest::import_less_safe(input, alg).map_err(|_| {
                    OpError::user("the input is not a digest of the hash algorithm's length")
                })?;
                let mut out = vec![0u8; kp.public_modulus_len()];
                kp.sign_digest(enc, &d, &mut out).map_err(internal)?;
                out
            }
            _ => {
                return Err(OpError::Internal(format!(
                    "message signing not supported for key type {}",
                    kind.as_str()
                )));
            }
        };
        let encoded = if opts.jws {
            B64URL.encode(sig)
        } else {
            B64.encode(sig)
        };
        Ok((format!("vault:v{ver}:{encoded}"), public))
    }

    /// Verifies a `vault:vN:` signature of `input`.
    pub(crate) fn verify(
        &self,
        context: &[u8],
        input: &[u8],
        sig: &str,
        opts: SignOpts,
    ) -> OpResult<bool> {
        let kind = self.key_type();
        let (ver, body) = self.parse_versioned(sig, "signature")?;
        let bytes = if opts.jws {
            B64URL.decode(body.as_bytes())
        } else {
            B64.decode(body.as_bytes())
        }
        .map_err(|_| OpError::user("invalid base64 signature value"))?;
        let entry = self.version(ver)?;
        Ok(match kind {
            KeyType::Ed25519 => {
                let kp = self.ed25519(context, ver)?;
                signature::UnparsedPublicKey::new(&signature::ED25519, kp.public_key().as_ref())
                    .verify(input, &bytes)
                    .is_ok()
            }
            KeyType::EcdsaP256 | KeyType::EcdsaP384 | KeyType::EcdsaP521 => {
                let asn1 = if opts.jws {
                    ecdsa_fixed_to_asn1(&bytes)
                } else {
                    let Some((0x30, _, rest)) = der::read(&bytes) else {
                        return Err(OpError::user("supplied signature is invalid"));
                    };
                    if !rest.is_empty() {
                        return Err(OpError::user("supplied signature contains extra data"));
                    }
                    bytes
                };
                let kp =
                    signature::EcdsaKeyPair::from_pkcs8(ecdsa_signing_alg(kind), entry.key.bytes())
                        .map_err(internal)?;
                signature::UnparsedPublicKey::new(ecdsa_verify_alg(kind), kp.public_key().as_ref())
                    .verify_digest(&ecdsa_digest(kind, input)?, &asn1)
                    .is_ok()
            }
            _ if kind.is_rsa() => {
                let kp = rsa::KeyPair::from_pkcs8(entry.key.bytes()).map_err(internal)?;
                let alg = opts.hash.algorithm().ok_or_else(|| internal(()))?;
                let Ok(d) = digest::Digest::import_less_safe(input, alg) else {
                    return Ok(false);
                };
                rsa_verify_params(opts.hash, opts.pkcs1v15, opts.salt)?
                    .into_iter()
                    .any(|p| {
                        signature::UnparsedPublicKey::new(p, kp.public_key().as_ref())
                            .verify_digest(&d, &bytes)
                            .is_ok()
                    })
            }
            _ => {
                return Err(OpError::user(format!(
                    "message verification not supported for key type {}",
                    kind.as_str()
                )));
            }
        })
    }

    /// The public key of a version as OpenBao formats it in `keys` (PEM for RSA and
    /// ECDSA, base64 for Ed25519).
    pub(crate) fn formatted_public_key(&self, ver: i64) -> OpResult<String> {
        let entry = self.version(ver)?;
        if self.key_type().is_rsa() {
            return Ok(pem("PUBLIC KEY", &self.public_key_der(ver)?));
        }
        Ok(entry.public_key.clone())
    }

    /// The SubjectPublicKeyInfo DER of an asymmetric version.
    pub(crate) fn public_key_der(&self, ver: i64) -> OpResult<Vec<u8>> {
        let entry = self.version(ver)?;
        let kind = self.key_type();
        if kind.is_rsa() {
            let kp = rsa::KeyPair::from_pkcs8(entry.key.bytes()).map_err(internal)?;
            let der: PublicKeyX509Der<'_> = kp.public_key().as_der().map_err(internal)?;
            return Ok(der.as_ref().to_vec());
        }
        if kind.is_ecdsa() {
            let kp =
                signature::EcdsaKeyPair::from_pkcs8(ecdsa_signing_alg(kind), entry.key.bytes())
                    .map_err(internal)?;
            let der: PublicKeyX509Der<'_> = kp.public_key().as_der().map_err(internal)?;
            return Ok(der.as_ref().to_vec());
        }
        let kp = self.ed25519(&[], ver)?;
        let der: PublicKeyX509Der<'_> = kp.public_key().as_der().map_err(internal)?;
        Ok(der.as_ref().to_vec())
    }

    /// The public key of a derived Ed25519 key for `context`, base64.
    pub(crate) fn derived_ed25519_public(&self, context: &[u8], ver: i64) -> OpResult<String> {
        let kp = self.ed25519(context, ver)?;
        Ok(B64.encode(kp.public_key().as_ref()))
    }
}

fn aead_alg(kind: KeyType) -> &'static aead::Algorithm {
    match kind {
        KeyType::Aes128Gcm96 => &aead::AES_128_GCM,
        KeyType::Aes256Gcm96 => &aead::AES_256_GCM,
        _ => &aead::CHACHA20_POLY1305,
    }
}

/// AEAD seal: `nonce || ciphertext || tag`.
fn seal(kind: KeyType, key: &[u8], nonce: [u8; 12], pt: &[u8], aad: &[u8]) -> OpResult<Vec<u8>> {
    let key = aead::LessSafeKey::new(aead::UnboundKey::new(aead_alg(kind), key).map_err(internal)?);
    let mut out = Vec::with_capacity(12 + pt.len() + 16);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(pt);
    let tag = key
        .seal_in_place_separate_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(aad),
            &mut out[12..],
        )
        .map_err(internal)?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

fn open(kind: KeyType, key: &[u8], nonce: &[u8], ct: &[u8], aad: &[u8]) -> OpResult<Secret> {
    let key = aead::LessSafeKey::new(aead::UnboundKey::new(aead_alg(kind), key).map_err(internal)?);
    let nonce = aead::Nonce::try_assume_unique_for_key(nonce).map_err(internal)?;
    let mut buf = Zeroizing::new(ct.to_vec());
    let n = key
        .open_in_place(nonce, aead::Aad::from(aad), &mut buf)
        .map_err(|_| {
            OpError::user(if kind == KeyType::ChaCha20Poly1305 {
                "chacha20poly1305: message authentication failed"
            } else {
                "cipher: message authentication failed"
            })
        })?
        .len();
    buf.truncate(n);
    Ok(Secret(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_text(r: OpResult<Secret>) -> String {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.text().to_owned(),
        }
    }

    fn policy(kind: &str, derived: bool, convergent: bool) -> Policy {
        let mut p = Policy {
            name: "k".into(),
            kind: kind.into(),
            derived,
            convergent_encryption: convergent,
            keys: BTreeMap::new(),
            latest_version: 0,
            min_decryption_version: 0,
            min_encryption_version: 0,
            min_available_version: 0,
            deletion_allowed: false,
            exportable: false,
            allow_plaintext_backup: false,
            auto_rotate_period: 0,
            key_size: 0,
            backup_info: None,
            restore_info: None,
        };
        p.rotate("2026-01-01T00:00:00Z", 0).unwrap();
        p
    }

    #[test]
    fn every_symmetric_type_round_trips_with_and_without_aad() {
        for kind in ["aes128-gcm96", "aes256-gcm96", "chacha20-poly1305"] {
            let p = policy(kind, false, false);
            let ct = p.encrypt(0, &[], b"hello", b"ad").unwrap();
            assert!(ct.starts_with("vault:v1:"), "{kind}");
            assert_eq!(p.decrypt(&[], &ct, b"ad").unwrap().bytes(), b"hello");
            assert!(
                p.decrypt(&[], &ct, b"other").is_err(),
                "{kind}: aad is bound"
            );
        }
    }

    #[test]
    fn derived_keys_need_the_same_context_and_convergent_is_deterministic() {
        let p = policy("aes256-gcm96", true, true);
        let a = p.encrypt(0, b"ctx", b"same", &[]).unwrap();
        let b = p.encrypt(0, b"ctx", b"same", &[]).unwrap();
        assert_eq!(a, b, "convergent encryption gives one ciphertext");
        assert_ne!(a, p.encrypt(0, b"other", b"same", &[]).unwrap());
        assert_eq!(p.decrypt(b"ctx", &a, &[]).unwrap().bytes(), b"same");
        assert!(p.decrypt(b"other", &a, &[]).is_err());
        assert_eq!(err_text(p.decrypt(&[], &a, &[])), DERIVE_MISSING_CONTEXT);
    }

    #[test]
    fn rotated_keys_decrypt_old_versions_until_min_decryption_version() {
        let mut p = policy("chacha20-poly1305", false, false);
        let v1 = p.encrypt(0, &[], b"x", &[]).unwrap();
        p.rotate("t", 0).unwrap();
        assert!(
            p.encrypt(0, &[], b"x", &[])
                .unwrap()
                .starts_with("vault:v2:")
        );
        assert_eq!(p.decrypt(&[], &v1, &[]).unwrap().bytes(), b"x");
        p.min_decryption_version = 2;
        assert!(err_text(p.decrypt(&[], &v1, &[])).contains("too old"));
    }

    #[test]
    fn rsa_encrypts_with_oaep_and_signs_both_paddings() {
        let p = policy("rsa-2048", false, false);
        let ct = p.encrypt(0, &[], b"secret", &[]).unwrap();
        assert_eq!(p.decrypt(&[], &ct, &[]).unwrap().bytes(), b"secret");
        let tampered = format!("vault:v1:{}", B64.encode(vec![1u8; 256]));
        assert_eq!(
            err_text(p.decrypt(&[], &tampered, &[])),
            "failed to RSA decrypt the ciphertext: crypto/rsa: decryption error"
        );
        for pkcs1v15 in [false, true] {
            let opts = SignOpts {
                hash: Hash::Sha256,
                jws: false,
                pkcs1v15,
                salt: SaltLength::Auto,
            };
            let d = Hash::Sha256.sum(b"msg");
            let (sig, _) = p.sign(0, &[], &d, opts).unwrap();
            assert!(p.verify(&[], &d, &sig, opts).unwrap());
            assert!(
                !p.verify(&[], &Hash::Sha256.sum(b"other"), &sig, opts)
                    .unwrap()
            );
        }
    }

    #[test]
    fn ecdsa_and_ed25519_sign_and_verify_in_both_marshalings() {
        for kind in ["ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "ed25519"] {
            let p = policy(kind, false, false);
            for jws in [false, true] {
                let opts = SignOpts {
                    hash: Hash::Sha512,
                    jws,
                    pkcs1v15: false,
                    salt: SaltLength::Auto,
                };
                let input = if kind == "ed25519" {
                    b"msg".to_vec()
                } else {
                    Hash::Sha512.sum(b"msg")
                };
                let (sig, _) = p.sign(0, &[], &input, opts).unwrap();
                assert!(
                    p.verify(&[], &input, &sig, opts).unwrap(),
                    "{kind} jws={jws}"
                );
                assert!(
                    !p.verify(&[], b"other input of some length....", &sig, opts)
                        .unwrap()
                );
            }
        }
    }

    #[test]
    fn stored_json_holds_key_material_only_as_base64_and_round_trips() {
        let p = policy("aes256-gcm96", false, false);
        let json = serde_json::to_string(&p).unwrap();
        let back: Policy = serde_json::from_str(&json).unwrap();
        let ct = p.encrypt(0, &[], b"x", &[]).unwrap();
        assert_eq!(back.decrypt(&[], &ct, &[]).unwrap().bytes(), b"x");
    }

    #[test]
    fn backups_with_inconsistent_keys_are_not_well_formed() {
        assert!(policy("aes256-gcm96", false, false).is_well_formed());
        assert!(policy("rsa-2048", false, false).is_well_formed());
        let mut p = policy("aes256-gcm96", false, false);
        p.keys.get_mut(&1).unwrap().key = Secret::new(vec![0; 16]);
        assert!(!p.is_well_formed(), "short key");
        let mut p = policy("aes256-gcm96", false, false);
        p.convergent_encryption = true;
        assert!(!p.is_well_formed(), "convergent without derivation");
        let mut p = policy("ecdsa-p256", false, false);
        p.keys.get_mut(&1).unwrap().key = Secret::new(vec![1; 40]);
        assert!(!p.is_well_formed(), "garbage PKCS#8");
        let mut p = policy("ed25519", false, false);
        p.latest_version = 2;
        assert!(!p.is_well_formed(), "latest version without a key");
    }

    #[test]
    fn der_reader_refuses_truncated_input() {
        assert!(der::read(&[0x30, 0x05, 0x01]).is_none());
        assert!(der::pkcs8_inner(&[0x30, 0x00]).is_none());
        assert_eq!(
            ecdsa_asn1_to_fixed(&ecdsa_fixed_to_asn1(&[0, 1, 0, 2]), 2),
            Some(vec![0, 1, 0, 2])
        );
    }
}
