//! `random[/<source>][/<bytes>]`, `hash[/<algorithm>]` and `cache-config` (OpenBao's
//! path_random.go, path_hash.go, path_cache_config.go).

use serde_json::{Map, Value, json};
use sha3::Digest as _;

use super::policy::{Hash, random_bytes};
use super::{TransitCtx, b64, b64_decode, bad, int_field, op_error, str_field};
use crate::{Response, Result};

/// Most bytes one `random` call returns (OpenBao's `APIMaxBytes`).
const MAX_RANDOM_BYTES: i64 = 128 * 1024;
/// Smallest non-zero cache size OpenBao accepts.
const MIN_CACHE_SIZE: i64 = 10;
/// Where `cache-config` keeps its size.
pub(super) const CACHE_CONFIG: &str = "config/cache";

fn is_source(s: &str) -> bool {
    matches!(s, "platform" | "seal" | "all")
}

fn encode(format: &str, bytes: &[u8]) -> String {
    if format == "hex" {
        hex::encode(bytes)
    } else {
        b64(bytes)
    }
}

pub(super) fn random(segs: &[&str], d: &Map<String, Value>) -> Result<Response> {
    let parse_count = |s: &str| -> Result<i64> {
        s.parse().map_err(|_| {
            bad(format!(
                "error parsing url-set byte count: strconv.Atoi: parsing {s:?}: invalid syntax"
            ))
        })
    };
    let body_bytes = || -> Result<i64> { Ok(int_field(d, "bytes")?.unwrap_or(32)) };
    let (source, bytes) = match segs {
        [] => ("platform".to_owned(), body_bytes()?),
        [s] if is_source(s) => ((*s).to_owned(), body_bytes()?),
        [n] => ("platform".to_owned(), parse_count(n)?),
        [s, n] => ((*s).to_owned(), parse_count(n)?),
        _ => return Err(bad("invalid path")),
    };
    let format = match str_field(d, "format")?.as_str() {
        "" => "base64".to_owned(),
        f => f.to_owned(),
    };
    if bytes < 1 {
        return Err(bad("'bytes' cannot be less than 1"));
    }
    if bytes > MAX_RANDOM_BYTES {
        return Err(bad(format!(
            "'bytes' should be less than {MAX_RANDOM_BYTES}"
        )));
    }
    if format != "hex" && format != "base64" {
        return Err(bad(
            "unsupported encoding format; must be \"hex\" or \"base64\"",
        ));
    }
    let mut warnings = Vec::new();
    match source.as_str() {
        "" | "platform" | "all" => {}
        "seal" => warnings.push(
            "no seal/entropy augmentation available, using platform entropy source".to_owned(),
        ),
        _ => {
            return Err(bad(
                "unsupported entropy source; must be \"platform\" or \"seal\", or \"all\"",
            ));
        }
    }
    let out = random_bytes(bytes as usize).map_err(op_error)?;
    let mut m = Map::new();
    m.insert("random_bytes".into(), json!(encode(&format, &out)));
    let mut resp = Response::with_data(m);
    resp.warnings = warnings;
    Ok(resp)
}

pub(super) fn hash(url_alg: &str, d: &Map<String, Value>) -> Result<Response> {
    let Some(input) = crate::fields::opt_string(d, "input")? else {
        return Err(bad("input missing"));
    };
    let algorithm = match (url_alg, str_field(d, "algorithm")?) {
        ("", a) if a.is_empty() => "sha2-256".to_owned(),
        ("", a) => a,
        (u, _) => u.to_owned(),
    };
    let input =
        b64_decode(&input).map_err(|e| bad(format!("unable to decode input as base64: {e}")))?;
    let format = match str_field(d, "format")?.as_str() {
        "" => "hex".to_owned(),
        f => f.to_owned(),
    };
    if format != "hex" && format != "base64" {
        return Err(bad(
            "unsupported encoding format; must be \"hex\" or \"base64\"",
        ));
    }
    let sum = match algorithm.as_str() {
        "sha3-224" => sha3::Sha3_224::digest(&input).to_vec(),
        "sha2-224" | "sha2-256" | "sha2-384" | "sha2-512" | "sha3-256" | "sha3-384"
        | "sha3-512" => Hash::parse(&algorithm)
            .map(|h| h.sum(&input))
            .unwrap_or_default(),
        _ => return Err(bad("unsupported algorithm")),
    };
    let mut m = Map::new();
    m.insert("sum".into(), json!(encode(&format, &sum)));
    Ok(Response::with_data(m))
}

pub(super) fn cache_config_read(ctx: &TransitCtx<'_>) -> Result<Response> {
    let size: i64 = ctx.get_json(CACHE_CONFIG)?.unwrap_or(0);
    let mut m = Map::new();
    m.insert("size".into(), json!(size));
    Ok(Response::with_data(m))
}

/// Stores the key cache's size (0: no limit) and applies it at once, as OpenBao.
pub(super) fn cache_config_write(ctx: &TransitCtx<'_>, d: &Map<String, Value>) -> Result<Response> {
    let size = int_field(d, "size")?.unwrap_or(0);
    if size != 0 && size < MIN_CACHE_SIZE {
        return Err(bad(format!(
            "size must be 0 or a value greater or equal to {MIN_CACHE_SIZE}"
        )));
    }
    ctx.apply(vec![ctx.put_op(CACHE_CONFIG, &size)?])?;
    ctx.cache.set_size(usize::try_from(size).unwrap_or(0));
    let mut m = Map::new();
    m.insert("size".into(), json!(size));
    Ok(Response::with_data(m))
}
