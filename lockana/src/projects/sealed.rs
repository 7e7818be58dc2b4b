//! RSA projects: variables encrypted on the client, so the server stores and hands
//! out only ciphertext and never holds a key that opens it.
//!
//! Each value written is sealed on its own: a fresh random ChaCha20-Poly1305 key
//! encrypts it (the associated data binds the project, the variable's name and the
//! key id, so the server cannot swap values between variables), and that key is
//! wrapped with RSA-OAEP-SHA256 (MGF1-SHA256) to the project's public key. The stored
//! value is one string, an *envelope*:
//!
//! ```text
//! lockana:rsa1:<key id>:<base64(wrapped key || nonce || ciphertext and tag)>
//! ```
//!
//! The key id is the first 8 bytes of SHA-256 of the public key's DER
//! (SubjectPublicKeyInfo), in hex. The server checks that every value written to an
//! RSA project is an envelope for the project's current key ([`check_envelope`]);
//! it never decrypts one.
//!
//! Crypto: all RSA work goes through aws-lc-rs — key generation, PKCS#8 export,
//! OAEP encryption and, above all, OAEP decryption, whose implementation is constant
//! time. The `rsa` crate (RUSTSEC-2023-0071, Marvin) is not used. Private keys live
//! in `Zeroizing` buffers; any failure to open a value is one generic error.

use std::collections::BTreeMap;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey,
};
use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::barrier::Cipher;
use crate::{Error, Result};

/// What every envelope starts with.
const PREFIX: &str = "lockana:rsa1:";
const KEY_ID_HEX: usize = 16;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const DATA_KEY_LEN: usize = 32;
/// Largest value an envelope may carry (KV's own limits are lower).
const MAX_VALUE: usize = 1 << 20;
const PUBLIC_PEM: &str = "PUBLIC KEY";
const PRIVATE_PEM: &str = "PRIVATE KEY";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// How a project's variables are encrypted, chosen when it is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProjectEncryption {
    /// The server's barrier cipher only (the default): the server can read the
    /// values once unsealed.
    ChaCha20,
    /// Encrypted on the client to a 3072-bit RSA key the server never sees.
    Rsa3072,
    /// Encrypted on the client to a 4096-bit RSA key the server never sees.
    Rsa4096,
}

impl ProjectEncryption {
    /// The name used in the API and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectEncryption::ChaCha20 => "chacha20",
            ProjectEncryption::Rsa3072 => "rsa-3072",
            ProjectEncryption::Rsa4096 => "rsa-4096",
        }
    }

    /// Parses `chacha20`, `rsa-3072` or `rsa-4096`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "chacha20" => Some(ProjectEncryption::ChaCha20),
            "rsa-3072" => Some(ProjectEncryption::Rsa3072),
            "rsa-4096" => Some(ProjectEncryption::Rsa4096),
            _ => None,
        }
    }

    /// Whether values are encrypted on the client.
    pub fn is_rsa(self) -> bool {
        self != ProjectEncryption::ChaCha20
    }

    fn bits(self) -> Option<usize> {
        match self {
            ProjectEncryption::ChaCha20 => None,
            ProjectEncryption::Rsa3072 => Some(3072),
            ProjectEncryption::Rsa4096 => Some(4096),
        }
    }

    fn from_bits(bits: usize) -> Option<Self> {
        match bits {
            3072 => Some(ProjectEncryption::Rsa3072),
            4096 => Some(ProjectEncryption::Rsa4096),
            _ => None,
        }
    }
}

/// Client-side failures with a project's keys. `Display` never includes a value or
/// key material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectKeyError {
    /// One answer for every failure to open a value: a wrong key, a value written
    /// for another key, or a damaged or altered value.
    #[error(
        "cannot decrypt the project's variables: this private key is not the project's key (or the values were damaged)"
    )]
    WrongKey,
    /// The private key file is not what `lockana project create` writes.
    #[error(
        "the private key is not an RSA private key in PKCS#8 PEM (-----BEGIN PRIVATE KEY-----) of 3072 or 4096 bits"
    )]
    InvalidPrivateKey,
    /// The public key is not an RSA public key of a supported size.
    #[error(
        "the public key is not an RSA public key in PEM (-----BEGIN PUBLIC KEY-----) of 3072 or 4096 bits"
    )]
    InvalidPublicKey,
    /// The values are not envelopes: the project is not an RSA project.
    #[error(
        "the project's variables are not encrypted to a key (it is a chacha20 project): read them without a private key"
    )]
    NotEncrypted,
    /// The values are envelopes and no private key was given.
    #[error(
        "the project's variables are encrypted on the client (an RSA project): give its private key to decrypt them"
    )]
    KeyNeeded,
    /// Key generation, the random source or RSA encryption failed.
    #[error("an RSA operation failed")]
    Crypto,
}

/// A project's public key: what the server stores, and all a writer needs.
#[derive(Clone)]
pub struct ProjectPublicKey {
    key: PublicEncryptingKey,
    der: Vec<u8>,
    key_id: String,
}

impl ProjectPublicKey {
    /// Parses a `-----BEGIN PUBLIC KEY-----` PEM (SubjectPublicKeyInfo) RSA key of
    /// 3072 or 4096 bits.
    pub fn from_pem(pem: &str) -> std::result::Result<Self, ProjectKeyError> {
        let der = pem_decode(pem, PUBLIC_PEM).ok_or(ProjectKeyError::InvalidPublicKey)?;
        let key =
            PublicEncryptingKey::from_der(&der).map_err(|_| ProjectKeyError::InvalidPublicKey)?;
        ProjectEncryption::from_bits(key.key_size_bits())
            .ok_or(ProjectKeyError::InvalidPublicKey)?;
        Ok(Self::from_parts(key, der.to_vec()))
    }

    fn from_parts(key: PublicEncryptingKey, der: Vec<u8>) -> Self {
        let key_id = key_id_of(&der);
        ProjectPublicKey { key, der, key_id }
    }

    /// The key as PEM.
    pub fn to_pem(&self) -> String {
        String::from(pem_encode(&self.der, PUBLIC_PEM).as_str())
    }

    /// The key id envelopes carry (16 hex digits).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// `rsa-3072` or `rsa-4096`.
    pub fn encryption(&self) -> ProjectEncryption {
        ProjectEncryption::from_bits(self.key.key_size_bits()).unwrap_or(ProjectEncryption::Rsa4096)
    }

    fn modulus_bytes(&self) -> usize {
        self.key.key_size_bytes()
    }

    /// Encrypts `value` of variable `name` in `project` into an envelope.
    pub fn seal(
        &self,
        project: &str,
        name: &str,
        value: &str,
    ) -> std::result::Result<String, ProjectKeyError> {
        if value.len() > MAX_VALUE {
            return Err(ProjectKeyError::Crypto);
        }
        let data_key = crate::barrier::random_key().map_err(|_| ProjectKeyError::Crypto)?;
        let oaep =
            OaepPublicEncryptingKey::new(self.key.clone()).map_err(|_| ProjectKeyError::Crypto)?;
        let mut wrapped = vec![0u8; oaep.ciphertext_size()];
        let n = oaep
            .encrypt(&OAEP_SHA256_MGF1SHA256, &data_key[..], &mut wrapped, None)
            .map_err(|_| ProjectKeyError::Crypto)?
            .len();
        wrapped.truncate(n);
        let aad = aad(&self.key_id, project, name);
        // nonce || ciphertext || tag
        let sealed = Cipher::ChaCha20Poly1305
            .seal(&data_key, value.as_bytes(), aad.as_bytes())
            .map_err(|_| ProjectKeyError::Crypto)?;
        let mut blob = wrapped;
        blob.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}:{}", self.key_id, B64.encode(blob)))
    }

    /// Seals every variable of `vars` (see [`ProjectPublicKey::seal`]).
    pub fn seal_variables(
        &self,
        project: &str,
        vars: &BTreeMap<String, String>,
    ) -> std::result::Result<Map<String, Value>, ProjectKeyError> {
        vars.iter()
            .map(|(k, v)| Ok((k.clone(), Value::String(self.seal(project, k, v)?))))
            .collect()
    }
}

/// A project's private key, held only by its users. Zeroized on drop; no `Debug`.
pub struct ProjectKey {
    key: OaepPrivateDecryptingKey,
    pkcs8: Zeroizing<Vec<u8>>,
    public: ProjectPublicKey,
}

impl ProjectKey {
    /// A new key pair for an RSA project (aws-lc-rs's generator).
    pub fn generate(encryption: ProjectEncryption) -> std::result::Result<Self, ProjectKeyError> {
        let size = match encryption.bits() {
            Some(3072) => KeySize::Rsa3072,
            Some(4096) => KeySize::Rsa4096,
            _ => return Err(ProjectKeyError::InvalidPrivateKey),
        };
        let key = PrivateDecryptingKey::generate(size).map_err(|_| ProjectKeyError::Crypto)?;
        let der = key.as_der().map_err(|_| ProjectKeyError::Crypto)?;
        Self::from_key(key, Zeroizing::new(der.as_ref().to_vec()))
    }

    /// Parses a `-----BEGIN PRIVATE KEY-----` (PKCS#8) RSA key of 3072 or 4096 bits,
    /// as `lockana project create` writes it.
    pub fn from_pem(pem: &str) -> std::result::Result<Self, ProjectKeyError> {
        let der = pem_decode(pem, PRIVATE_PEM).ok_or(ProjectKeyError::InvalidPrivateKey)?;
        let key = PrivateDecryptingKey::from_pkcs8(&der)
            .map_err(|_| ProjectKeyError::InvalidPrivateKey)?;
        Self::from_key(key, der)
    }

    fn from_key(
        key: PrivateDecryptingKey,
        pkcs8: Zeroizing<Vec<u8>>,
    ) -> std::result::Result<Self, ProjectKeyError> {
        ProjectEncryption::from_bits(key.key_size_bits())
            .ok_or(ProjectKeyError::InvalidPrivateKey)?;
        let public = key.public_key();
        let der = public.as_der().map_err(|_| ProjectKeyError::Crypto)?;
        let public = ProjectPublicKey::from_parts(public, der.as_ref().to_vec());
        let key = OaepPrivateDecryptingKey::new(key).map_err(|_| ProjectKeyError::Crypto)?;
        Ok(ProjectKey { key, pkcs8, public })
    }

    /// The key as PKCS#8 PEM: the text of the key file.
    pub fn to_pem(&self) -> Zeroizing<String> {
        pem_encode(&self.pkcs8, PRIVATE_PEM)
    }

    /// The public half.
    pub fn public_key(&self) -> &ProjectPublicKey {
        &self.public
    }

    /// Opens one envelope of variable `name` in `project`.
    pub fn open(
        &self,
        project: &str,
        name: &str,
        envelope: &str,
    ) -> std::result::Result<Zeroizing<String>, ProjectKeyError> {
        let wrong = ProjectKeyError::WrongKey;
        let (key_id, blob) = split_envelope(envelope).ok_or(wrong)?;
        let k = self.public.modulus_bytes();
        if key_id != self.public.key_id || blob.len() < k + NONCE_LEN + TAG_LEN {
            return Err(wrong);
        }
        let (wrapped, sealed) = blob.split_at(k);
        let mut out = Zeroizing::new(vec![0u8; self.key.min_output_size()]);
        let data_key = self
            .key
            .decrypt(&OAEP_SHA256_MGF1SHA256, wrapped, &mut out, None)
            .map_err(|_| wrong)?;
        let data_key: &[u8; DATA_KEY_LEN] = (&*data_key).try_into().map_err(|_| wrong)?;
        let aad = aad(key_id, project, name);
        let plain = Zeroizing::new(
            Cipher::ChaCha20Poly1305
                .open(data_key, sealed, aad.as_bytes())
                .map_err(|_| wrong)?,
        );
        let text = std::str::from_utf8(&plain).map_err(|_| wrong)?;
        Ok(Zeroizing::new(text.to_owned()))
    }

    /// Opens every variable of an env answer (`lockana/projects/<name>/env`, or the
    /// KV secret's `data`): names to plaintext values.
    pub fn open_variables(
        &self,
        project: &str,
        data: &Map<String, Value>,
    ) -> std::result::Result<BTreeMap<String, String>, ProjectKeyError> {
        let mut out = BTreeMap::new();
        for (name, v) in data {
            let envelope = v.as_str().filter(|s| is_envelope(s));
            let Some(envelope) = envelope else {
                return Err(ProjectKeyError::NotEncrypted);
            };
            out.insert(
                name.clone(),
                String::from(self.open(project, name, envelope)?.as_str()),
            );
        }
        Ok(out)
    }
}

/// Whether `value` looks like an envelope (the server's check is [`check_envelope`]).
pub fn is_envelope(value: &str) -> bool {
    value.starts_with(PREFIX)
}

/// Whether any value of an env answer is an envelope: then it needs a private key.
pub fn has_envelopes(data: &Map<String, Value>) -> bool {
    data.values().any(|v| v.as_str().is_some_and(is_envelope))
}

/// A project's variables as a dotenv file a POSIX shell sources exactly (the text
/// the server sends for `format=dotenv`), for variables decrypted on the client.
pub fn dotenv(vars: &BTreeMap<String, String>) -> String {
    let (vars, _) = super::env::variables(
        vars.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    );
    super::env::dotenv(&vars)
}

fn aad(key_id: &str, project: &str, name: &str) -> String {
    format!("{PREFIX}{key_id}\0{project}\0{name}")
}

fn key_id_of(der: &[u8]) -> String {
    hex::encode(&Sha256::digest(der)[..KEY_ID_HEX / 2])
}

fn split_envelope(envelope: &str) -> Option<(&str, Vec<u8>)> {
    let rest = envelope.strip_prefix(PREFIX)?;
    let (key_id, b64) = rest.split_once(':')?;
    if key_id.len() != KEY_ID_HEX || b64.len() > MAX_VALUE * 2 {
        return None;
    }
    Some((key_id, B64.decode(b64).ok()?))
}

/// Server side: whether `value` is a well-formed envelope for the key `key_id` with
/// a modulus of `modulus_bytes`. Nothing is decrypted.
pub(crate) fn check_envelope(value: &Value, key_id: &str, modulus_bytes: usize) -> bool {
    value
        .as_str()
        .and_then(split_envelope)
        .is_some_and(|(id, blob)| id == key_id && blob.len() >= modulus_bytes + NONCE_LEN + TAG_LEN)
}

/// Server side: a project's public key from a request: the key, its normalized PEM,
/// its id and its size.
pub(crate) fn parse_public_key(pem: &str) -> Result<ProjectPublicKey> {
    ProjectPublicKey::from_pem(pem).map_err(|e| Error::invalid(e.to_string()))
}

/// Modulus size in bytes of a stored key (`rsa-3072` -> 384).
pub(crate) fn modulus_bytes(key: &ProjectPublicKey) -> usize {
    key.modulus_bytes()
}

fn pem_encode(der: &[u8], label: &str) -> Zeroizing<String> {
    let b64 = Zeroizing::new(B64.encode(der));
    let mut out = Zeroizing::new(String::with_capacity(b64.len() + b64.len() / 64 + 64));
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// The DER inside the first `label` block of `pem` (text around it is ignored).
fn pem_decode(pem: &str, label: &str) -> Option<Zeroizing<Vec<u8>>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let b64: Zeroizing<String> = Zeroizing::new(
        pem[start..stop]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect(),
    );
    B64.decode(b64.as_bytes()).ok().map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// Key generation is slow in debug builds: the tests share two keys.
    fn keys() -> &'static (ProjectKey, ProjectKey) {
        static KEYS: OnceLock<(ProjectKey, ProjectKey)> = OnceLock::new();
        KEYS.get_or_init(|| {
            (
                ProjectKey::generate(ProjectEncryption::Rsa3072).expect("key"),
                ProjectKey::generate(ProjectEncryption::Rsa3072).expect("key"),
            )
        })
    }

    #[test]
    fn sealed_values_open_with_the_key_only() {
        let (key, other) = keys();
        let e = key
            .public_key()
            .seal("billing", "DB", "s3cret ✓")
            .expect("seal");
        assert!(is_envelope(&e) && !e.contains("s3cret"));
        assert_eq!(
            key.open("billing", "DB", &e).expect("open").as_str(),
            "s3cret ✓"
        );
        assert_eq!(
            other.open("billing", "DB", &e).err(),
            Some(ProjectKeyError::WrongKey)
        );
        // Bound to the variable and the project: a swapped value does not open.
        assert!(key.open("billing", "OTHER", &e).is_err());
        assert!(key.open("web", "DB", &e).is_err());
        let mut tampered = e.clone();
        tampered.replace_range(tampered.len() - 3..tampered.len() - 2, "A");
        if tampered != e {
            assert!(key.open("billing", "DB", &tampered).is_err());
        }
        // Each write gets its own data key.
        assert_ne!(
            key.public_key().seal("billing", "DB", "x").expect("seal"),
            key.public_key().seal("billing", "DB", "x").expect("seal")
        );
    }

    #[test]
    fn pem_round_trips_and_server_check() {
        let (key, other) = keys();
        let again = ProjectKey::from_pem(&key.to_pem()).expect("private pem");
        assert_eq!(again.public_key().key_id(), key.public_key().key_id());
        let public = ProjectPublicKey::from_pem(&key.public_key().to_pem()).expect("public pem");
        assert_eq!(public.key_id(), key.public_key().key_id());
        assert_eq!(public.encryption(), ProjectEncryption::Rsa3072);
        assert!(ProjectKey::from_pem(&key.public_key().to_pem()).is_err());
        assert!(
            ProjectPublicKey::from_pem(
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"
            )
            .is_err()
        );

        let e = Value::String(public.seal("p", "A", "v").expect("seal"));
        assert!(check_envelope(&e, public.key_id(), 384));
        assert!(!check_envelope(&e, other.public_key().key_id(), 384));
        assert!(!check_envelope(
            &Value::String("plain".into()),
            public.key_id(),
            384
        ));
        assert!(!check_envelope(&Value::from(5), public.key_id(), 384));
        let short = format!("{PREFIX}{}:{}", public.key_id(), B64.encode([0u8; 40]));
        assert!(!check_envelope(&Value::String(short), public.key_id(), 384));
    }

    #[test]
    fn open_variables_needs_envelopes() {
        let (key, _) = keys();
        let mut m = Map::new();
        m.insert(
            "A".into(),
            Value::String(key.public_key().seal("p", "A", "1").expect("seal")),
        );
        assert!(has_envelopes(&m));
        assert_eq!(key.open_variables("p", &m).expect("open")["A"], "1");
        m.insert("B".into(), Value::String("plain".into()));
        assert_eq!(
            key.open_variables("p", &m).err(),
            Some(ProjectKeyError::NotEncrypted)
        );
    }
}
