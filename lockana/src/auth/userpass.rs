//! The `userpass` auth method: users with argon2id-hashed passwords.
//!
//! Usernames are case-insensitive (stored lower-case, as Vault does). A login for an
//! unknown user still verifies a password against a dummy hash, so neither the answer
//! nor its timing says which usernames exist.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::{Answer, TokenFields};
use crate::kv::{Ctx, list_response};
use crate::{Error, Operation, Request, Response, Result};

/// The one answer for every failed login: wrong password, unknown user, locked out.
pub(crate) const INVALID_LOGIN: &str = "invalid username or password";

#[derive(Serialize, Deserialize)]
struct User {
    password_hash: String,
    #[serde(flatten)]
    token: TokenFields,
}

fn user_key(name: &str) -> String {
    format!("users/{name}")
}

/// Lower-cases and trims a username, and refuses empty or odd ones.
pub(crate) fn normalize_username(name: &str) -> Result<String> {
    let n = name.trim().to_lowercase();
    if n.is_empty() || n.len() > 256 || n.chars().any(|c| c.is_control() || c == '/') {
        return Err(Error::invalid("invalid username"));
    }
    Ok(n)
}

fn hash_password(password: &str) -> Result<String> {
    let hash: PasswordHash = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|_| Error::invalid("could not hash the password"))?;
    Ok(hash.to_string())
}

fn verify(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash of a random password, to spend the same time on unknown users.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let pw =
            super::token::random_base62(32).unwrap_or_else(|_| "lockana-dummy-password".into());
        hash_password(&pw).unwrap_or_default()
    })
}

fn password_param(d: &Map<String, Value>) -> Result<Option<Zeroizing<String>>> {
    match d.get("password") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => {
            Err(Error::invalid("'password' must not be empty"))
        }
        Some(Value::String(s)) => Ok(Some(Zeroizing::new(s.clone()))),
        Some(_) => Err(Error::invalid("'password' must be a string")),
    }
}

super::auth_method!(Userpass, "userpass", USERPASS, &["login/*"]);

fn handle(ctx: &Ctx<'_>, req: &Request, rel: &str) -> Result<Answer> {
    let d = &req.data;
    if let Some(name) = rel.strip_prefix("login/") {
        return login(ctx, name, d);
    }
    if matches!(rel, "users" | "users/") && req.operation == Operation::List {
        let keys = ctx.list("users/")?;
        return list_response(keys).map(|r| Answer::Response(Box::new(r)));
    }
    let Some(rest) = rel.strip_prefix("users/") else {
        return Err(Error::NoRoute(req.path.clone()));
    };
    let (name, sub) = match rest.split_once('/') {
        Some((n, s)) => (n, s),
        None => (rest, ""),
    };
    let name = normalize_username(name)?;
    let key = user_key(&name);
    let _g = ctx.lock(&key);
    let existing: Option<User> = ctx.get_json(&key)?;
    let resp = match (sub, req.operation) {
        ("", Operation::Read) => {
            let user = existing.ok_or(Error::NotFound)?;
            let mut m = Map::new();
            user.token.write_to(&mut m);
            Response::with_data(m)
        }
        ("", Operation::Create | Operation::Update) => {
            let password = password_param(d)?;
            let mut user = match (existing, password) {
                (Some(mut u), pw) => {
                    if let Some(pw) = pw {
                        u.password_hash = hash_password(&pw)?;
                    }
                    u
                }
                (None, Some(pw)) => User {
                    password_hash: hash_password(&pw)?,
                    token: TokenFields::default(),
                },
                (None, None) => return Err(Error::invalid("missing password")),
            };
            user.token.update(d)?;
            ctx.apply(vec![ctx.put_op(&key, &user)?])?;
            Response::empty()
        }
        ("", Operation::Delete) => {
            ctx.apply(vec![ctx.delete_op(&key)])?;
            Response::empty()
        }
        ("password", Operation::Create | Operation::Update) => {
            let mut user = existing.ok_or_else(|| Error::invalid("username does not exist"))?;
            let pw = password_param(d)?.ok_or_else(|| Error::invalid("missing password"))?;
            user.password_hash = hash_password(&pw)?;
            ctx.apply(vec![ctx.put_op(&key, &user)?])?;
            Response::empty()
        }
        ("policies", Operation::Create | Operation::Update) => {
            let mut user = existing.ok_or_else(|| Error::invalid("username does not exist"))?;
            user.token.update(d)?;
            ctx.apply(vec![ctx.put_op(&key, &user)?])?;
            Response::empty()
        }
        _ => return Err(Error::UnsupportedOperation),
    };
    Ok(Answer::Response(Box::new(resp)))
}

fn login(ctx: &Ctx<'_>, name: &str, d: &Map<String, Value>) -> Result<Answer> {
    let password = match d.get("password") {
        Some(Value::String(s)) => Zeroizing::new(s.clone()),
        _ => return Err(Error::invalid("missing password")),
    };
    let name = normalize_username(name).map_err(|_| Error::invalid(INVALID_LOGIN))?;
    let user: Option<User> = ctx.get_json(&user_key(&name))?;
    let hash: &str = match &user {
        Some(u) => &u.password_hash,
        None => dummy_hash(),
    };
    // A locked user still costs a hash check, so the answer and its timing match a
    // wrong password's.
    let lockouts = ctx.lockouts;
    let locked = lockouts.is_locked(&ctx.mount.accessor, &name, ctx.now);
    let ok = verify(hash, &password) && user.is_some() && !locked;
    match user {
        Some(u) if ok => {
            lockouts.reset(ctx.barrier, &ctx.mount.accessor, &name)?;
            let mut grant = u.token.grant(&name);
            grant.meta.insert("username".into(), name);
            Ok(Answer::Login(grant))
        }
        _ => {
            lockouts.record_failure(ctx.barrier, &ctx.mount.accessor, &name, ctx.now)?;
            Err(Error::invalid(INVALID_LOGIN))
        }
    }
}
