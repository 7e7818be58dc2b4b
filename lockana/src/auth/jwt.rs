//! The `jwt` auth method: machines that already hold a signed identity (CI jobs with
//! OIDC tokens, Kubernetes service accounts) trade it for a Lockana token.
//!
//! Keys come from PEM public keys in the config or from a JWKS URL (fetched with a
//! short timeout and cached). Signatures are checked by `jsonwebtoken` (aws-lc
//! backend); the claims — `exp`, `nbf`, `aud`, `iss`, `sub`, bound claims — are checked
//! here against the vault's clock. Only asymmetric algorithms are accepted: never
//! `none`, never HMAC (a public key used as an HMAC secret would let anyone sign).
//! Error messages never echo the token.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;
use std::time::{Duration, Instant, UNIX_EPOCH};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{Answer, TokenFields, opt_strings};
use crate::kv::{Ctx, list_response};
use crate::{Error, Operation, Request, Response, Result};

/// Leeway for `exp` and `nbf` (Vault's `clock_skew_leeway` default).
pub(crate) const LEEWAY_SECS: u64 = 60;
/// How long a fetched JWKS is trusted before it is fetched again.
const JWKS_CACHE: Duration = Duration::from_secs(300);
/// A JWKS fetch gives up after this long.
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS document accepted.
const JWKS_MAX_BYTES: u64 = 1 << 20;

#[derive(Serialize, Deserialize, Default)]
struct Config {
    jwt_validation_pubkeys: Vec<String>,
    jwks_url: String,
    jwks_ca_pem: String,
    bound_issuer: String,
    jwt_supported_algs: Vec<String>,
    default_role: String,
}

#[derive(Serialize, Deserialize)]
struct Role {
    bound_audiences: Vec<String>,
    bound_subject: String,
    bound_claims: Map<String, Value>,
    user_claim: String,
    claim_mappings: BTreeMap<String, String>,
    #[serde(flatten)]
    token: TokenFields,
}

super::auth_method!(Jwt, "jwt", JWT, &["login"]);

fn handle(ctx: &Ctx<'_>, req: &Request, rel: &str) -> Result<Answer> {
    let op = req.operation;
    let resp = match rel.trim_end_matches('/') {
        "login" => return login(ctx, req),
        "config" => config(ctx, req)?,
        "role" if op == Operation::List => list_response(ctx.list("role/")?)?,
        r => match r.strip_prefix("role/") {
            Some(name) if !name.is_empty() && !name.contains('/') => role(ctx, req, name)?,
            _ => return Err(Error::NoRoute(req.path.clone())),
        },
    };
    Ok(Answer::Response(Box::new(resp)))
}

fn opt_str(d: &Map<String, Value>, name: &str) -> Result<Option<String>> {
    match d.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(_) => Err(Error::invalid(format!("'{name}' must be a string"))),
    }
}

/// Algorithms a config may allow: asymmetric only.
fn parse_alg(name: &str) -> Result<Algorithm> {
    let alg = match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => {
            return Err(Error::invalid(
                "unsupported signing algorithm in 'jwt_supported_algs' (RS256/384/512, PS256/384/512, ES256/384 and EdDSA are accepted; none and HS* never are)",
            ));
        }
    };
    Ok(alg)
}

fn parse_pubkey(pem: &str) -> Result<DecodingKey> {
    let b = pem.as_bytes();
    DecodingKey::from_rsa_pem(b)
        .or_else(|_| DecodingKey::from_ec_pem(b))
        .or_else(|_| DecodingKey::from_ed_pem(b))
        .map_err(|_| {
            Error::invalid("error parsing public key: data does not contain any valid public keys")
        })
}

fn config(ctx: &Ctx<'_>, req: &Request) -> Result<Response> {
    let d = &req.data;
    let _g = ctx.lock("config");
    match req.operation {
        Operation::Read => {
            let c: Config = ctx.get_json("config")?.ok_or(Error::NotFound)?;
            Ok(Response::with_data(crate::sys::obj(json!({
                "bound_issuer": c.bound_issuer,
                "default_role": c.default_role,
                "jwks_ca_pem": c.jwks_ca_pem,
                "jwks_url": c.jwks_url,
                "jwt_supported_algs": c.jwt_supported_algs,
                "jwt_validation_pubkeys": c.jwt_validation_pubkeys,
                "namespace_in_state": true,
                "oidc_client_id": "",
                "oidc_discovery_ca_pem": "",
                "oidc_discovery_url": "",
                "oidc_response_mode": "",
                "oidc_response_types": [],
                "override_allowed_server_names": [],
                "provider_config": {},
                "status": "valid",
            }))))
        }
        Operation::Create | Operation::Update => {
            if ["oidc_discovery_url", "jwks_pairs", "provider_config"]
                .iter()
                .any(|k| {
                    d.get(*k)
                        .is_some_and(|v| !v.is_null() && v != "" && v != &json!({}))
                })
            {
                return Err(Error::invalid(
                    "Lockana's jwt method takes 'jwt_validation_pubkeys' or 'jwks_url' (OIDC discovery is not supported)",
                ));
            }
            let c = Config {
                jwt_validation_pubkeys: opt_strings_raw(d, "jwt_validation_pubkeys")?,
                jwks_url: opt_str(d, "jwks_url")?.unwrap_or_default(),
                jwks_ca_pem: opt_str(d, "jwks_ca_pem")?.unwrap_or_default(),
                bound_issuer: opt_str(d, "bound_issuer")?.unwrap_or_default(),
                jwt_supported_algs: opt_strings(d, "jwt_supported_algs")?.unwrap_or_default(),
                default_role: opt_str(d, "default_role")?.unwrap_or_default(),
            };
            match (c.jwt_validation_pubkeys.is_empty(), c.jwks_url.is_empty()) {
                (false, true) | (true, false) => {}
                _ => {
                    return Err(Error::invalid(
                        "exactly one of 'jwt_validation_pubkeys' or 'jwks_url' must be set",
                    ));
                }
            }
            for a in &c.jwt_supported_algs {
                parse_alg(a)?;
            }
            for k in &c.jwt_validation_pubkeys {
                parse_pubkey(k)?;
            }
            if !c.jwks_url.is_empty() {
                // As Vault does: a config whose JWKS cannot be fetched is refused.
                let set = fetch_jwks(&c.jwks_url, &c.jwks_ca_pem)
                    .map_err(|_| Error::invalid("error checking jwks URL"))?;
                jwks_cache()
                    .lock()
                    .insert(cache_key(&c), (Instant::now(), set));
            }
            ctx.apply(vec![ctx.put_op("config", &c)?])?;
            Ok(Response::empty())
        }
        Operation::Delete => {
            ctx.apply(vec![ctx.delete_op("config")])?;
            Ok(Response::empty())
        }
        _ => Err(Error::UnsupportedOperation),
    }
}

/// A list of strings without comma splitting (PEM keys contain no commas, but a
/// single string is one key, not a list).
fn opt_strings_raw(d: &Map<String, Value>, name: &str) -> Result<Vec<String>> {
    match d.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| Error::invalid(format!("'{name}' must be a list of strings")))
            })
            .collect(),
        Some(_) => Err(Error::invalid(format!(
            "'{name}' must be a list of strings"
        ))),
    }
}

fn role(ctx: &Ctx<'_>, req: &Request, name: &str) -> Result<Response> {
    let d = &req.data;
    let key = format!("role/{name}");
    let _g = ctx.lock(&key);
    let existing: Option<Role> = ctx.get_json(&key)?;
    match req.operation {
        Operation::Read => {
            let r = existing.ok_or(Error::NotFound)?;
            let mut m = Map::new();
            r.token.write_to(&mut m);
            let mappings = if r.claim_mappings.is_empty() {
                Value::Null
            } else {
                json!(r.claim_mappings)
            };
            let bound_claims = if r.bound_claims.is_empty() {
                Value::Null
            } else {
                Value::Object(r.bound_claims)
            };
            for (k, v) in [
                ("role_type", json!("jwt")),
                ("bound_audiences", json!(r.bound_audiences)),
                ("bound_subject", json!(r.bound_subject)),
                ("bound_claims", bound_claims),
                ("bound_claims_type", json!("string")),
                ("user_claim", json!(r.user_claim)),
                ("user_claim_json_pointer", json!(false)),
                ("claim_mappings", mappings),
                ("groups_claim", json!("")),
                ("clock_skew_leeway", json!(0)),
                ("expiration_leeway", json!(0)),
                ("not_before_leeway", json!(0)),
                ("max_age", json!(0)),
                ("allowed_redirect_uris", Value::Null),
                ("callback_mode", json!("client")),
                ("oauth2_metadata", Value::Null),
                ("oidc_disable_confirmation", json!(false)),
                ("oidc_scopes", Value::Null),
                ("token_policies_template_claims", json!(false)),
                ("verbose_oidc_logging", json!(false)),
            ] {
                m.insert(k.into(), v);
            }
            Ok(Response::with_data(m))
        }
        Operation::Create | Operation::Update => {
            match opt_str(d, "role_type")?.as_deref() {
                None | Some("" | "jwt") => {}
                Some(_) => {
                    return Err(Error::invalid(
                        "Lockana supports only role_type \"jwt\" (no OIDC browser flow)",
                    ));
                }
            }
            match opt_str(d, "bound_claims_type")?.as_deref() {
                None | Some("" | "string") => {}
                Some(_) => {
                    return Err(Error::invalid(
                        "Lockana supports only bound_claims_type \"string\"",
                    ));
                }
            }
            let mut r = existing.unwrap_or(Role {
                bound_audiences: Vec::new(),
                bound_subject: String::new(),
                bound_claims: Map::new(),
                user_claim: String::new(),
                claim_mappings: BTreeMap::new(),
                token: TokenFields::default(),
            });
            if let Some(a) = opt_strings(d, "bound_audiences")? {
                r.bound_audiences = a;
            }
            if let Some(s) = opt_str(d, "bound_subject")? {
                r.bound_subject = s;
            }
            if let Some(s) = opt_str(d, "user_claim")? {
                r.user_claim = s;
            }
            match d.get("bound_claims") {
                None | Some(Value::Null) => {}
                Some(Value::Object(m)) => {
                    for v in m.values() {
                        let ok = match v {
                            Value::String(_) => true,
                            Value::Array(a) => a.iter().all(Value::is_string),
                            _ => false,
                        };
                        if !ok {
                            return Err(Error::invalid(
                                "'bound_claims' values must be strings or lists of strings",
                            ));
                        }
                    }
                    r.bound_claims = m.clone();
                }
                Some(_) => return Err(Error::invalid("'bound_claims' must be an object")),
            }
            match d.get("claim_mappings") {
                None | Some(Value::Null) => {}
                Some(Value::Object(m)) => {
                    r.claim_mappings = m
                        .iter()
                        .map(|(k, v)| match v {
                            Value::String(s) => Ok((k.clone(), s.clone())),
                            _ => Err(Error::invalid("'claim_mappings' values must be strings")),
                        })
                        .collect::<Result<_>>()?;
                }
                Some(_) => return Err(Error::invalid("'claim_mappings' must be an object")),
            }
            r.token.update(d)?;
            if r.user_claim.is_empty() {
                return Err(Error::invalid("a user claim must be defined on the role"));
            }
            if r.bound_audiences.is_empty()
                && r.bound_subject.is_empty()
                && r.bound_claims.is_empty()
            {
                return Err(Error::invalid(
                    "must have at least one bound constraint when creating/updating a role",
                ));
            }
            ctx.apply(vec![ctx.put_op(&key, &r)?])?;
            Ok(Response::empty())
        }
        Operation::Delete => {
            ctx.apply(vec![ctx.delete_op(&key)])?;
            Ok(Response::empty())
        }
        _ => Err(Error::UnsupportedOperation),
    }
}

type JwksCache = Mutex<HashMap<String, (Instant, JwkSet)>>;

/// JWKS documents by URL (and CA): public keys only, shared by every mount.
fn jwks_cache() -> &'static JwksCache {
    static CACHE: OnceLock<JwksCache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

fn cache_key(c: &Config) -> String {
    format!("{}\n{}", c.jwks_url, c.jwks_ca_pem)
}

fn fetch_jwks(url: &str, ca_pem: &str) -> std::result::Result<JwkSet, ureq::Error> {
    let mut builder = ureq::Agent::config_builder()
        .timeout_global(Some(JWKS_TIMEOUT))
        .max_redirects(3);
    if !ca_pem.is_empty() {
        let certs = ureq::tls::parse_pem(ca_pem.as_bytes())
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect::<Vec<_>>();
        builder = builder.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                .build(),
        );
    }
    let agent: ureq::Agent = builder.build().into();
    agent
        .get(url)
        .call()?
        .body_mut()
        .with_config()
        .limit(JWKS_MAX_BYTES)
        .read_json::<JwkSet>()
}

/// The JWKS for a config: cached, refetched when stale or when `kid` is unknown.
fn jwks(c: &Config, kid: Option<&str>) -> Result<JwkSet> {
    let key = cache_key(c);
    if let Some((at, set)) = jwks_cache().lock().get(&key)
        && at.elapsed() < JWKS_CACHE
        && kid.is_none_or(|k| set.find(k).is_some())
    {
        return Ok(set.clone());
    }
    match fetch_jwks(&c.jwks_url, &c.jwks_ca_pem) {
        Ok(set) => {
            jwks_cache()
                .lock()
                .insert(key, (Instant::now(), set.clone()));
            Ok(set)
        }
        Err(e) => {
            tracing::warn!(error = %e, "jwt: fetching the JWKS failed");
            // A stale set is better than none while the issuer is briefly down.
            jwks_cache()
                .lock()
                .get(&key)
                .map(|(_, s)| s.clone())
                .ok_or_else(|| Error::invalid("error validating token: could not fetch the JWKS"))
        }
    }
}

fn invalid_token(why: &'static str) -> Error {
    Error::invalid(why)
}

fn login(ctx: &Ctx<'_>, req: &Request) -> Result<Answer> {
    let d = &req.data;
    let Some(c) = ctx.get_json::<Config>("config")? else {
        return Err(Error::invalid("could not load configuration"));
    };
    let role_name = match opt_str(d, "role")?.filter(|r| !r.is_empty()) {
        Some(r) => r,
        None if !c.default_role.is_empty() => c.default_role.clone(),
        None => return Err(Error::invalid("missing role")),
    };
    let found = if role_name.contains('/') {
        None
    } else {
        ctx.get_json::<Role>(&format!("role/{role_name}"))?
    };
    let Some(role) = found else {
        return Err(Error::invalid("role could not be found"));
    };
    let token = match d.get("jwt") {
        Some(Value::String(s)) if !s.is_empty() => zeroize::Zeroizing::new(s.clone()),
        _ => return Err(Error::invalid("missing token")),
    };
    let claims = verify(&c, &token)?;
    check_claims(&c, &role, &claims, ctx.now)?;
    let alias = match claims.get(&role.user_claim) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err(invalid_token("user claim not found in token")),
    };
    let mut grant = role.token.grant(&alias);
    grant.meta.insert("role".into(), role_name);
    for (claim, meta_key) in &role.claim_mappings {
        match claim_value(&claims, claim) {
            Some(Value::String(s)) => {
                grant.meta.insert(meta_key.clone(), s.clone());
            }
            Some(v @ (Value::Number(_) | Value::Bool(_))) => {
                grant.meta.insert(meta_key.clone(), v.to_string());
            }
            _ => {}
        }
    }
    Ok(Answer::Login(grant))
}

/// Checks the signature and algorithm; returns the claims.
fn verify(c: &Config, token: &str) -> Result<Map<String, Value>> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| invalid_token("error validating token: malformed token"))?;
    let allowed: Vec<Algorithm> = if c.jwt_supported_algs.is_empty() {
        vec![Algorithm::RS256]
    } else {
        c.jwt_supported_algs
            .iter()
            .map(|a| parse_alg(a))
            .collect::<Result<_>>()?
    };
    if !allowed.contains(&header.alg) {
        return Err(invalid_token(
            "error validating token: signing algorithm is not allowed",
        ));
    }
    let mut v = Validation::new(header.alg);
    // Time, audience and issuer are checked against the vault's clock and role below.
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    let keys: Vec<DecodingKey> = if c.jwks_url.is_empty() {
        c.jwt_validation_pubkeys
            .iter()
            .filter_map(|k| parse_pubkey(k).ok())
            .collect()
    } else {
        let set = jwks(c, header.kid.as_deref())?;
        let chosen: Vec<_> = match header.kid.as_deref() {
            Some(kid) => set.find(kid).into_iter().collect(),
            None => set.keys.iter().collect(),
        };
        chosen
            .into_iter()
            .filter_map(|j| DecodingKey::from_jwk(j).ok())
            .collect()
    };
    for key in &keys {
        if let Ok(data) = jsonwebtoken::decode::<Map<String, Value>>(token, key, &v) {
            return Ok(data.claims);
        }
    }
    Err(invalid_token(
        "error validating token: failed to verify signature",
    ))
}

fn claim_value<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    // A leading `/` makes the name a JSON pointer into nested claims, as Vault allows.
    let Some(pointer) = name.strip_prefix('/') else {
        return claims.get(name);
    };
    let mut segs = pointer
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"));
    let mut cur = claims.get(&segs.next()?)?;
    for seg in segs {
        cur = match cur {
            Value::Object(m) => m.get(&seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn num_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or_else(|| invalid_token("error validating claims: malformed time claim")),
        Some(_) => Err(invalid_token(
            "error validating claims: malformed time claim",
        )),
    }
}

fn check_claims(
    c: &Config,
    role: &Role,
    claims: &Map<String, Value>,
    now: std::time::SystemTime,
) -> Result<()> {
    let now = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match num_claim(claims, "exp")? {
        Some(exp) if now >= exp.saturating_add(LEEWAY_SECS) => {
            return Err(invalid_token(
                "error validating claims: token is expired (exp)",
            ));
        }
        Some(_) => {}
        // Vault accepts tokens without `exp`; Lockana does not hand out tokens for
        // credentials that never expire.
        None => {
            return Err(invalid_token(
                "error validating claims: token has no expiry (exp)",
            ));
        }
    }
    if let Some(nbf) = num_claim(claims, "nbf")?
        && now.saturating_add(LEEWAY_SECS) < nbf
    {
        return Err(invalid_token(
            "error validating claims: token is not yet valid (nbf)",
        ));
    }
    if let Some(iat) = num_claim(claims, "iat")?
        && now.saturating_add(LEEWAY_SECS) < iat
    {
        return Err(invalid_token(
            "error validating claims: token issued in the future (iat)",
        ));
    }
    if !c.bound_issuer.is_empty() {
        match claims.get("iss") {
            Some(Value::String(iss)) if *iss == c.bound_issuer => {}
            _ => {
                return Err(invalid_token(
                    "error validating claims: invalid issuer (iss) claim",
                ));
            }
        }
    }
    let auds: Vec<&str> = match claims.get("aud") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        Some(_) => {
            return Err(invalid_token(
                "error validating claims: malformed audience (aud) claim",
            ));
        }
    };
    if role.bound_audiences.is_empty() {
        if !auds.is_empty() {
            return Err(invalid_token(
                "error validating claims: audience claim found in JWT but no audiences bound to the role",
            ));
        }
    } else if !auds
        .iter()
        .any(|a| role.bound_audiences.iter().any(|b| b == a))
    {
        return Err(invalid_token(
            "error validating claims: invalid audience (aud) claim: audience claim does not match any expected audience",
        ));
    }
    if !role.bound_subject.is_empty()
        && claims.get("sub").and_then(Value::as_str) != Some(&role.bound_subject)
    {
        return Err(invalid_token(
            "error validating claims: invalid subject (sub) claim",
        ));
    }
    for (name, expected) in &role.bound_claims {
        let wanted: Vec<&str> = match expected {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let got: Vec<String> = match claim_value(claims, name) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
                    _ => None,
                })
                .collect(),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => vec![v.to_string()],
            _ => Vec::new(),
        };
        if !got.iter().any(|g| wanted.contains(&g.as_str())) {
            return Err(invalid_token(
                "error validating claims: a claim does not match any associated bound claim values",
            ));
        }
    }
    Ok(())
}
