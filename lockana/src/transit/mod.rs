//! Vault's transit secrets engine (mount type `transit`), answering as OpenBao's does:
//! encryption as a service with named, versioned keys that never leave the vault
//! unless marked exportable.
//!
//! One file per path family, as OpenBao's `builtin/logical/transit/path_*.go`:
//! [`path_keys`] (keys, config, rotate, trim), [`path_encrypt`] (encrypt, decrypt,
//! rewrap, datakey), [`path_sign`] (sign, verify, hmac), [`path_export`] (export,
//! backup, restore) and [`path_tools`] (random, hash, cache-config). [`policy`] holds
//! the keys and their cryptography.
//!
//! Storage under the mount's view: `policy/<name>` (the key, JSON with base64 key
//! material, behind the barrier like every value) and `config/cache`.

pub(crate) mod path_encrypt;
pub(crate) mod path_export;
pub(crate) mod path_keys;
pub(crate) mod path_sign;
pub(crate) mod path_tools;
pub(crate) mod policy;

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value};

use crate::kv::{Ctx, go_type};
use crate::{Error, Operation, Request, Response, Result};
use policy::{OpError, Policy};

/// The `transit` mount type (it takes no options).
pub(crate) const REGISTRATION: crate::engine::Registration = crate::engine::Registration {
    names: &["transit"],
    factory: new_transit,
    mountable: true,
};

fn new_transit(
    _kind: &str,
    options: &mut std::collections::BTreeMap<String, String>,
) -> Result<(&'static str, std::sync::Arc<dyn crate::engine::Backend>)> {
    options.clear();
    Ok(("transit", Arc::new(TransitEngine::default())))
}

/// Vault's transit secrets engine: one per mount, with its keys' cache.
#[derive(Default)]
pub(crate) struct TransitEngine {
    cache: KeyCache,
}

impl TransitEngine {
    fn ctx<'a>(&'a self, ctx: &'a Ctx<'a>) -> TransitCtx<'a> {
        TransitCtx {
            ctx,
            cache: &self.cache,
        }
    }
}

impl crate::engine::Backend for TransitEngine {
    fn doc(&self) -> &'static crate::help::BackendDoc {
        &DOC
    }

    fn handle(&self, ctx: &Ctx<'_>, req: &Request, rel: &str) -> Result<crate::engine::Answer> {
        Ok(handle(&self.ctx(ctx), req, rel)?.into())
    }

    fn existence(&self, ctx: &Ctx<'_>, rel: &str) -> Result<crate::engine::Existence> {
        Ok(match existence_name(rel) {
            None => crate::engine::Existence::NoCheck,
            Some(name) => crate::engine::Existence::found(load(&self.ctx(ctx), name)?.is_some()),
        })
    }

    /// Encrypting, decrypting, signing and the rest compute without writing; only
    /// an encrypt to a key not yet known here may create it (OpenBao's upsert). A
    /// backup (a read) records its time in the key.
    fn may_write(&self, rel: &str, op: Operation) -> bool {
        if matches!(op, Operation::Read | Operation::List) {
            return rel.starts_with("backup/");
        }
        let mut segs = rel.split('/');
        match (segs.next(), segs.next()) {
            (Some("encrypt"), Some(name)) => !self.cache.contains(name),
            (
                Some(
                    "decrypt" | "rewrap" | "datakey" | "sign" | "verify" | "hmac" | "hash"
                    | "random",
                ),
                _,
            ) => false,
            _ => true,
        }
    }

    fn initialize(&self, ctx: &Ctx<'_>) -> Result<()> {
        self.load(ctx)
    }

    /// The cache size `cache-config` stored.
    fn load(&self, ctx: &Ctx<'_>) -> Result<()> {
        let size: i64 = ctx.get_json(path_tools::CACHE_CONFIG)?.unwrap_or(0);
        self.cache.set_size(usize::try_from(size).unwrap_or(0));
        Ok(())
    }
}

/// One transit field, for [`path_doc!`].
const fn field(
    name: &'static str,
    kind: &'static str,
    description: &'static str,
) -> crate::help::FieldDoc {
    crate::help::FieldDoc {
        name,
        kind,
        description,
    }
}

macro_rules! path_doc {
    // A path whose field list is complete: others are warned about as unrecognized.
    ($pattern:expr, [$($op:ident),*], $synopsis:expr, fields: [$($f:expr),* $(,)?]) => {
        crate::help::PathDoc {
            pattern: $pattern,
            input: crate::help::Input::Fields,
            operations: &[$(Operation::$op),*],
            synopsis: $synopsis,
            description: $synopsis,
            fields: &[$($f),*],
        }
    };
    ($pattern:expr, [$($op:ident),*], $synopsis:expr) => {
        crate::help::PathDoc {
            pattern: $pattern,
            input: crate::help::Input::Partial,
            operations: &[$(Operation::$op),*],
            synopsis: $synopsis,
            description: $synopsis,
            fields: &[],
        }
    };
}

/// `path-help` for a transit mount (the routes and their operations).
static DOC: crate::help::BackendDoc = crate::help::BackendDoc {
    description: "Encryption as a service: named, versioned keys that encrypt, decrypt, sign, verify and HMAC data without leaving the vault.",
    paths: &[
        path_doc!("keys/", [List], "Managed named encryption keys"),
        path_doc!(
            "keys/{name}",
            [Read, Create, Update, Delete],
            "Managed named encryption keys",
            fields: [
                field("allow_plaintext_backup", "bool", "Enables taking a backup of the named key in plaintext format."),
                field("auto_rotate_period", "duration", "Amount of time the key should live before being automatically rotated (0: never)."),
                field("context", "string", "Base64 encoded context for key derivation, when convergent encryption is enabled."),
                field("convergent_encryption", "bool", "Whether to support convergent encryption (needs derived)."),
                field("derived", "bool", "Enables key derivation mode."),
                field("exportable", "bool", "Enables keys to be exportable."),
                field("external_key_ref", "string", "Not served by Lockana (external keys)."),
                field("key_size", "int", "The key size in bytes for HMAC keys."),
                field("type", "string", "The type of key to create."),
            ]
        ),
        path_doc!(
            "keys/{name}/config",
            [Update],
            "Configure a named encryption key",
            fields: [
                field("allow_plaintext_backup", "bool", "Enables taking a backup of the named key in plaintext format. Once set, this cannot be disabled."),
                field("auto_rotate_period", "duration", "Amount of time the key should live before being automatically rotated (0: never)."),
                field("deletion_allowed", "bool", "Whether to allow deletion of the key."),
                field("exportable", "bool", "Enables export of the key. Once set, this cannot be disabled."),
                field("min_decryption_version", "int", "The minimum version of the key allowed to be used for decryption."),
                field("min_encryption_version", "int", "The minimum version of the key allowed to be used for encryption (0: the latest)."),
            ]
        ),
        path_doc!(
            "keys/{name}/rotate",
            [Update],
            "Rotate named encryption key"
        ),
        path_doc!(
            "keys/{name}/trim",
            [Update],
            "Trim key versions of a named key"
        ),
        path_doc!(
            "encrypt/{name}",
            [Create, Update],
            "Encrypt a plaintext value or a batch of plaintext blocks using a named key",
            fields: [
                field("associated_data", "string", "Base64 encoded associated data for AEAD ciphers."),
                field("batch_input", "list", "A list of items to encrypt in one request."),
                field("context", "string", "Base64 encoded context for key derivation."),
                field("convergent_encryption", "bool", "Deprecated: set on the key."),
                field("key_version", "int", "The version of the key to use for encryption (0: the latest)."),
                field("nonce", "string", "Base64 encoded nonce, for convergent encryption of older key versions."),
                field("partial_failure_response_code", "int", "The status code of a batch in which some items failed."),
                field("plaintext", "string", "Base64 encoded plaintext value to be encrypted."),
                field("type", "string", "The type of key to create when upserting."),
            ]
        ),
        path_doc!(
            "decrypt/{name}",
            [Update],
            "Decrypt a ciphertext value using a named key",
            fields: [
                field("associated_data", "string", "Base64 encoded associated data for AEAD ciphers."),
                field("batch_input", "list", "A list of items to decrypt in one request."),
                field("ciphertext", "string", "The ciphertext to decrypt."),
                field("context", "string", "Base64 encoded context for key derivation."),
                field("nonce", "string", "Base64 encoded nonce, for convergent encryption of older key versions."),
                field("partial_failure_response_code", "int", "The status code of a batch in which some items failed."),
            ]
        ),
        path_doc!("rewrap/{name}", [Update], "Rewrap ciphertext"),
        path_doc!(
            "datakey/{plaintext}/{name}",
            [Update],
            "Generate a data key"
        ),
        path_doc!(
            "sign/{name*}",
            [Update],
            "Generate a signature for input data using the named key"
        ),
        path_doc!(
            "verify/{name*}",
            [Update],
            "Verify a signature or HMAC for input data created using the named key"
        ),
        path_doc!(
            "hmac/{name*}",
            [Update],
            "Generate an HMAC for input data using the named key"
        ),
        path_doc!("random/{urlbytes*}", [Update], "Generate random bytes"),
        path_doc!(
            "hash/{urlalgorithm*}",
            [Update],
            "Generate a hash sum for input data"
        ),
        path_doc!(
            "export/{type}/{name*}",
            [Read],
            "Export named encryption or signing key"
        ),
        path_doc!("backup/{name}", [Read], "Backup the named key"),
        path_doc!("restore/{name*}", [Update], "Restore the named key"),
        path_doc!(
            "cache-config",
            [Read, Update],
            "Returns the size of the active cache"
        ),
    ],
};

/// Serves a request to a transit mount; `rel` is the path below the mount.
pub(crate) fn handle(ctx: &TransitCtx<'_>, req: &Request, rel: &str) -> Result<Response> {
    let mut resp = route(ctx, req, rel)?;
    resp.mount_type = "transit".into();
    // OpenBao's framework says so when a body field repeats a path parameter (hvac
    // sends `name` in the body of verify and sign).
    let named = rel.contains('/') && !rel.starts_with("random") && !rel.starts_with("hash");
    if named && req.data.contains_key("name") {
        resp.warnings.push(
            "Endpoint replaced the value of these parameters with the values captured from the endpoint's path: [name]"
                .into(),
        );
    }
    Ok(resp)
}

/// Whether a write to `rel` tells create from update (OpenBao's existence checks on
/// `keys/<name>` and `encrypt/<name>`).
pub(crate) fn has_existence_check(rel: &str) -> bool {
    let segs: Vec<&str> = rel.split('/').collect();
    matches!(segs.as_slice(), ["keys" | "encrypt", name] if valid_name(name))
}

/// The key whose presence decides create vs update for `rel`.
pub(crate) fn existence_name(rel: &str) -> Option<&str> {
    let (_, name) = rel.split_once('/')?;
    has_existence_check(rel).then_some(name)
}

fn route(ctx: &TransitCtx<'_>, req: &Request, rel: &str) -> Result<Response> {
    let segs: Vec<&str> = rel.split('/').collect();
    let op = req.operation;
    let write = matches!(op, Operation::Create | Operation::Update);
    let d = &req.data;
    let unsupported = || Err(Error::UnsupportedOperation);
    match segs.as_slice() {
        ["keys"] | ["keys", ""] => match op {
            Operation::List => path_keys::list(ctx),
            _ => unsupported(),
        },
        ["keys", name] if valid_name(name) => match op {
            Operation::Read => path_keys::read(ctx, name, d),
            Operation::Delete => path_keys::delete(ctx, name),
            _ if write => path_keys::write(ctx, name, d),
            _ => unsupported(),
        },
        ["keys", name, action] if valid_name(name) => match (*action, write) {
            ("config", true) => path_keys::config(ctx, name, d),
            ("rotate", true) => path_keys::rotate(ctx, name),
            ("trim", true) => path_keys::trim(ctx, name, d),
            ("config" | "rotate" | "trim", false) => unsupported(),
            _ => Err(Error::NoRoute(req.path.clone())),
        },
        ["encrypt", name] if valid_name(name) && write => path_encrypt::encrypt(ctx, name, d),
        ["decrypt", name] if valid_name(name) && write => path_encrypt::decrypt(ctx, name, d),
        ["rewrap", name] if valid_name(name) && write => path_encrypt::rewrap(ctx, name, d),
        ["datakey", kind, name] if valid_name(kind) && valid_name(name) && write => {
            path_encrypt::datakey(ctx, kind, name, d)
        }
        ["sign", name] if valid_name(name) && write => path_sign::sign(ctx, name, "", d),
        ["sign", name, alg] if valid_name(name) && write => path_sign::sign(ctx, name, alg, d),
        ["verify", name] if valid_name(name) && write => path_sign::verify(ctx, name, "", d),
        ["verify", name, alg] if valid_name(name) && write => path_sign::verify(ctx, name, alg, d),
        ["hmac", name] if valid_name(name) && write => path_sign::hmac(ctx, name, "", d),
        ["hmac", name, alg] if valid_name(name) && write => path_sign::hmac(ctx, name, alg, d),
        ["random", rest @ ..] if write && rest.len() <= 2 => path_tools::random(rest, d),
        ["hash"] if write => path_tools::hash("", d),
        ["hash", alg] if write => path_tools::hash(alg, d),
        ["export", kind, name] if op == Operation::Read && valid_name(name) => {
            path_export::export(ctx, kind, name, "", d)
        }
        ["export", kind, name, ver] if op == Operation::Read && valid_name(name) => {
            path_export::export(ctx, kind, name, ver, d)
        }
        ["backup", name] if op == Operation::Read && valid_name(name) => {
            path_export::backup(ctx, name)
        }
        ["restore"] if write => path_export::restore(ctx, "", d),
        ["restore", name] if write => path_export::restore(ctx, name, d),
        ["cache-config"] => match op {
            Operation::Read => path_tools::cache_config_read(ctx),
            _ if write => path_tools::cache_config_write(ctx, d),
            _ => unsupported(),
        },
        [
            "encrypt" | "decrypt" | "rewrap" | "sign" | "verify" | "hmac" | "random" | "hash"
            | "restore",
            ..,
        ]
        | ["datakey", _, _]
        | ["export", _, _, ..]
        | ["backup", _] => unsupported(),
        _ => Err(Error::NoRoute(req.path.clone())),
    }
}

/// Vault's `framework.GenericNameRegex`: word characters with `-` and `.` inside.
pub(crate) fn valid_name(name: &str) -> bool {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let (Some(first), Some(last)) = (name.chars().next(), name.chars().last()) else {
        return false;
    };
    word(first) && word(last) && name.chars().all(|c| word(c) || "-.".contains(c))
}

/// A transit request's context: the mount's [`Ctx`] and its keys' cache.
pub(crate) struct TransitCtx<'a> {
    ctx: &'a Ctx<'a>,
    cache: &'a KeyCache,
}

impl<'a> std::ops::Deref for TransitCtx<'a> {
    type Target = Ctx<'a>;

    fn deref(&self) -> &Ctx<'a> {
        self.ctx
    }
}

/// The keys of one mount as decoded from storage, shared by its requests, as OpenBao's
/// policy cache: without it every request read `policy/<name>` through the barrier
/// (key-name encryption, AEAD open) and decoded its JSON and base64 key material.
///
/// Write-through: every change to a key is stored here under the key's lock, after
/// its commit. A reader that missed inserts what it read only if no change or
/// eviction happened since it looked (the generation), so it never puts back an older
/// key. The engine (and its cache) is dropped at seal, step-down, snapshot restore and
/// unmount, so what it holds never outlives the storage it came from.
#[derive(Default)]
pub(crate) struct KeyCache {
    inner: parking_lot::RwLock<KeyCacheInner>,
}

#[derive(Default)]
struct KeyCacheInner {
    generation: u64,
    /// At most this many keys (0: no limit), as `cache-config`'s `size`.
    size: usize,
    keys: HashMap<String, Arc<Policy>>,
}

impl KeyCache {
    /// Bounds the cache from now on, dropping keys beyond the new size.
    fn set_size(&self, size: usize) {
        let mut c = self.inner.write();
        c.size = size;
        if size != 0 && c.keys.len() > size {
            c.generation += 1;
            let gone: Vec<String> = c.keys.keys().skip(size).cloned().collect();
            for name in gone {
                c.keys.remove(&name);
            }
        }
    }

    fn contains(&self, name: &str) -> bool {
        self.inner.read().keys.contains_key(name)
    }

    /// The cached key, or the generation to fill with.
    fn get(&self, name: &str) -> std::result::Result<Arc<Policy>, u64> {
        let c = self.inner.read();
        c.keys.get(name).cloned().ok_or(c.generation)
    }

    /// Inserts a key read from storage, unless anything changed since `generation`.
    fn fill(&self, generation: u64, p: &Arc<Policy>) {
        let mut c = self.inner.write();
        if c.generation != generation {
            return;
        }
        if c.size != 0 && c.keys.len() >= c.size && !c.keys.contains_key(&p.name) {
            // Room for one more: drop any one (OpenBao's LRU drops the oldest).
            if let Some(gone) = c.keys.keys().next().cloned() {
                c.keys.remove(&gone);
            }
        }
        c.keys.insert(p.name.clone(), Arc::clone(p));
    }

    /// A key as just committed (`None`: deleted). Callers hold the key's lock.
    fn store(&self, name: &str, p: Option<Arc<Policy>>) {
        let mut c = self.inner.write();
        c.generation += 1;
        match p {
            Some(p) => {
                c.keys.insert(name.to_owned(), p);
            }
            None => {
                c.keys.remove(name);
            }
        }
        if c.size != 0 && c.keys.len() > c.size {
            let gone = c.keys.keys().find(|k| k.as_str() != name).cloned();
            if let Some(gone) = gone {
                c.keys.remove(&gone);
            }
        }
    }
}

/// The key `name`, from the cache or storage.
pub(crate) fn load(ctx: &TransitCtx<'_>, name: &str) -> Result<Option<Arc<Policy>>> {
    let generation = match ctx.cache.get(name) {
        Ok(hit) => return Ok(Some(hit)),
        Err(generation) => generation,
    };
    let Some(p) = ctx.get_json::<Policy>(&format!("policy/{name}"))? else {
        return Ok(None);
    };
    let p = Arc::new(p);
    ctx.cache.fill(generation, &p);
    Ok(Some(p))
}

/// The key `name` to change and [`save`]; callers hold its lock.
pub(crate) fn load_owned(ctx: &TransitCtx<'_>, name: &str) -> Result<Option<Policy>> {
    Ok(load(ctx, name)?.map(Arc::unwrap_or_clone))
}

/// Commits a key, then caches it; callers hold its lock.
pub(crate) fn save(ctx: &TransitCtx<'_>, p: &Policy) -> Result<()> {
    ctx.apply(vec![ctx.put_op(&format!("policy/{}", p.name), p)?])?;
    ctx.cache.store(&p.name, Some(Arc::new(p.clone())));
    Ok(())
}

/// Deletes a key, in storage and in the cache; callers hold its lock.
pub(crate) fn remove(ctx: &TransitCtx<'_>, name: &str) -> Result<()> {
    ctx.apply(vec![ctx.delete_op(&format!("policy/{name}"))])?;
    ctx.cache.store(name, None);
    Ok(())
}

/// A 400 with OpenBao's text.
pub(crate) fn bad(msg: impl Into<String>) -> Error {
    Error::invalid(msg.into())
}

/// An operation's failure as the response to a single (non-batch) request. Internal
/// failures keep their status 400 here: their texts are fixed, never the caller's.
pub(crate) fn op_error(e: OpError) -> Error {
    bad(e.text().to_owned())
}

/// The base64 of bytes.
pub(crate) fn b64(b: &[u8]) -> String {
    B64.encode(b)
}

/// Go's base64 error text (`illegal base64 data at input byte N`).
pub(crate) fn b64_decode(s: &str) -> std::result::Result<Vec<u8>, String> {
    B64.decode(s.as_bytes()).map_err(|e| {
        let at = match e {
            base64::DecodeError::InvalidByte(i, _) => i,
            base64::DecodeError::InvalidLength(i) => i,
            base64::DecodeError::InvalidLastSymbol(i, _) => i,
            base64::DecodeError::InvalidPadding => s.len().saturating_sub(1),
        };
        format!("illegal base64 data at input byte {at}")
    })
}

/// A string field (absent: empty). Weakly typed like Vault: numbers and booleans
/// become text.
pub(crate) fn str_field(d: &Map<String, Value>, name: &str) -> Result<String> {
    Ok(crate::fields::opt_string(d, name)?.unwrap_or_default())
}

pub(crate) fn int_field(d: &Map<String, Value>, name: &str) -> Result<Option<i64>> {
    crate::fields::opt_i64(d, name)
}

pub(crate) fn bool_field(d: &Map<String, Value>, name: &str) -> Result<bool> {
    Ok(crate::fields::opt_bool(d, name)?.unwrap_or(false))
}

/// `batch_input`: a list of objects, or `None` when absent.
pub(crate) fn batch_input(d: &Map<String, Value>) -> Result<Option<Vec<Map<String, Value>>>> {
    match d.get("batch_input") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::Object(m) => out.push(m.clone()),
                    _ => {
                        return Err(bad(format!(
                            "failed to parse batch input: [{i}] expected a map, got '{}'",
                            go_type(item)
                        )));
                    }
                }
            }
            if out.is_empty() {
                return Err(bad("missing batch input to process"));
            }
            Ok(Some(out))
        }
        Some(other) => Err(bad(format!(
            "failed to parse batch input: source data must be an array or slice, got {}",
            go_type(other)
        ))),
    }
}

/// The text of a batch item's string field; `Err` names the field and Go type.
pub(crate) fn item_str(
    item: &Map<String, Value>,
    i: usize,
    name: &str,
) -> std::result::Result<Option<String>, String> {
    match item.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(format!(
            "'[{i}].{name}' expected type 'string', got unconvertible type '{}'",
            go_type(other)
        )),
    }
}

/// The batch answer: `batch_results`, with status 400 (or `partial_failure_response_code`
/// when some items succeeded) when any item failed.
pub(crate) fn batch_response(
    d: &Map<String, Value>,
    results: Vec<Value>,
    any_ok: bool,
    any_err: bool,
) -> Result<Response> {
    let mut m = Map::new();
    m.insert("batch_results".into(), Value::Array(results));
    let mut resp = Response::with_data(m);
    if any_err {
        let mut code = 400u16;
        if any_ok && let Some(c) = int_field(d, "partial_failure_response_code")? {
            if (1..=599).contains(&c) {
                code = c as u16;
            } else {
                resp.warnings.push(
                    "invalid HTTP response code override from partial_failure_response_code, reverting to 400"
                        .into(),
                );
            }
        }
        resp.status = Some(code);
    }
    Ok(resp)
}

/// Unix seconds and RFC 3339 text of the request's time.
pub(crate) fn now(ctx: &Ctx<'_>) -> (String, i64) {
    let unix = ctx
        .now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    (crate::clock::rfc3339(ctx.now), unix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_vaults_generic_name_regex() {
        for ok in ["k", "my-key", "a.b_c", "K1"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-k", "k-", "a/b", "a b", ".k"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn existence_checks_cover_keys_and_encrypt_only() {
        assert_eq!(existence_name("keys/k"), Some("k"));
        assert_eq!(existence_name("encrypt/k"), Some("k"));
        assert!(existence_name("decrypt/k").is_none());
        assert!(existence_name("keys/k/rotate").is_none());
    }

    fn policy(name: &str, latest_version: i64) -> Arc<Policy> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "name": name, "type": "aes256-gcm96", "derived": false,
                "convergent_encryption": false, "keys": {}, "latest_version": latest_version,
                "min_decryption_version": 1, "min_encryption_version": 0,
                "min_available_version": 0, "deletion_allowed": false, "exportable": false,
                "allow_plaintext_backup": false, "auto_rotate_period": 0,
            }))
            .expect("policy"),
        )
    }

    #[test]
    fn cache_never_takes_back_a_key_read_before_a_change() {
        let cache = KeyCache::default();
        let Err(generation) = cache.get("k") else {
            panic!("empty cache hit")
        };
        // A writer commits version 2 while a reader still holds version 1 from storage.
        cache.store("k", Some(policy("k", 2)));
        cache.fill(generation, &policy("k", 1));
        assert_eq!(cache.get("k").ok().map(|p| p.latest_version), Some(2));
        cache.store("k", None);
        let Err(generation) = cache.get("k") else {
            panic!("deleted key still cached")
        };
        cache.fill(generation, &policy("k", 3));
        assert_eq!(cache.get("k").ok().map(|p| p.latest_version), Some(3));
    }

    #[test]
    fn cache_keeps_at_most_its_configured_size() {
        let cache = KeyCache::default();
        cache.set_size(10);
        for i in 0..25 {
            let name = format!("k{i}");
            let generation = cache.get(&name).err().expect("miss");
            cache.fill(generation, &policy(&name, 1));
            cache.store(&format!("w{i}"), Some(policy(&format!("w{i}"), 1)));
        }
        {
            let c = cache.inner.read();
            assert_eq!(c.keys.len(), 10);
            assert!(
                c.keys.contains_key("w24"),
                "the key just written was evicted"
            );
        }
        cache.set_size(12);
        assert_eq!(cache.inner.read().keys.len(), 10);
        cache.set_size(0);
        for i in 0..25 {
            cache.store(&format!("u{i}"), Some(policy(&format!("u{i}"), 1)));
        }
        assert_eq!(cache.inner.read().keys.len(), 35, "size 0 means no limit");
        cache.set_size(10);
        assert_eq!(
            cache.inner.read().keys.len(),
            10,
            "a smaller size applies at once"
        );
    }

    #[test]
    fn only_an_encrypt_to_an_unknown_key_may_write_among_the_computations() {
        use crate::engine::Backend as _;
        let engine = TransitEngine::default();
        for rel in [
            "decrypt/k",
            "rewrap/k",
            "datakey/plaintext/k",
            "sign/k",
            "verify/k/sha2-256",
            "hmac/k",
            "hash",
            "random/32",
        ] {
            assert!(!engine.may_write(rel, Operation::Update), "{rel}");
        }
        assert!(
            engine.may_write("encrypt/k", Operation::Update),
            "unknown key: may create it"
        );
        engine.cache.store("k", Some(policy("k", 1)));
        assert!(!engine.may_write("encrypt/k", Operation::Update));
        for rel in [
            "keys/k",
            "keys/k/rotate",
            "keys/k/config",
            "restore",
            "cache-config",
        ] {
            assert!(engine.may_write(rel, Operation::Update), "{rel}");
        }
        assert!(engine.may_write("keys/k", Operation::Delete));
        assert!(!engine.may_write("export/encryption-key/k", Operation::Read));
        assert!(engine.may_write("backup/k", Operation::Read));
    }

    #[test]
    fn go_base64_errors_name_the_byte() {
        assert_eq!(
            b64_decode("a$").unwrap_err(),
            "illegal base64 data at input byte 1"
        );
        assert_eq!(b64_decode("aGk=").unwrap(), b"hi");
    }
}
