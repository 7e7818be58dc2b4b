//! Authentication: the token store, and auth methods mounted under `auth/<path>/`
//! (the auth table has the same shape as the secrets mount table, stored at
//! `core/auth`). A method answers its own API and, on its login paths, returns a
//! [`LoginGrant`] from which the vault mints the token.

pub(crate) mod approle;
pub(crate) mod jwt;
pub(crate) mod lockout;
pub(crate) mod token;
pub(crate) mod token_api;
pub(crate) mod userpass;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::mounts::{MountConfig, MountEntry, apply_tune};
use crate::{Error, Response, Result};

/// Declares an auth method type served by its module's `handle`: the `Backend`
/// (struct `$ty`, help from `crate::help::$doc`, login paths `$logins`) and the
/// registry row `REGISTRATION` for the type name `$name`.
macro_rules! auth_method {
    ($ty:ident, $name:literal, $doc:ident, $logins:expr) => {
        /// The registry row of this auth method type.
        pub(crate) const REGISTRATION: crate::engine::Registration = crate::engine::Registration {
            names: &[$name],
            factory: |_, _| Ok(($name, std::sync::Arc::new($ty))),
            mountable: true,
        };

        /// This auth method, as a backend.
        pub(crate) struct $ty;

        impl crate::engine::Backend for $ty {
            fn doc(&self) -> &'static crate::help::BackendDoc {
                &crate::help::$doc
            }

            fn handle(&self, ctx: &Ctx<'_>, req: &Request, rel: &str) -> Result<Answer> {
                handle(ctx, req, rel)
            }

            fn special_paths(&self) -> crate::engine::SpecialPaths {
                crate::engine::SpecialPaths {
                    unauthenticated: $logins,
                    ..crate::engine::SpecialPaths::NONE
                }
            }
        }
    };
}
pub(crate) use auth_method;

/// What a successful login is worth; the vault turns it into a token.
#[derive(Debug, Clone, Default)]
pub(crate) struct LoginGrant {
    /// Policies before `default` is added.
    pub policies: Vec<String>,
    /// Who logged in (user name, role name): the display name and the alias.
    pub alias: String,
    pub meta: BTreeMap<String, String>,
    /// Token TTL (0: the mount's default).
    pub ttl: u64,
    /// Token max TTL (0: the mount's max).
    pub max_ttl: u64,
    pub period: u64,
    pub num_uses: u64,
    /// Whether the token gets the `default` policy too.
    pub no_default_policy: bool,
}

/// An auth method's answer.
pub(crate) enum Answer {
    /// An ordinary response (configuration endpoints).
    Response(Box<Response>),
    /// A successful login.
    Login(LoginGrant),
}

/// Builds an auth table entry from `sys/auth/<path>`'s body.
pub(crate) fn new_entry(path: &str, data: &Map<String, Value>) -> Result<MountEntry> {
    let path = normalize_auth_path(path)?;
    let kind = match data.get("type") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(Error::invalid("'type' must name an auth method")),
    };
    let registry = crate::engine::AUTH_METHODS;
    let Some(registration) = crate::engine::lookup(registry, &kind).filter(|r| r.mountable) else {
        return Err(Error::invalid(format!(
            "unknown auth method type; Lockana supports {}",
            crate::engine::mountable_names(registry).join(", ")
        )));
    };
    let mut options = BTreeMap::new();
    let (kind, backend) = (registration.factory)(&kind, &mut options)?;
    let mut config = MountConfig::default();
    if let Some(c) = data.get("config").filter(|c| !c.is_null()) {
        apply_tune(&mut config, c)?;
    }
    let description = data
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let uuid = uuid::Uuid::new_v4().to_string();
    Ok(MountEntry {
        path,
        accessor: format!("auth_{kind}_{}", &uuid.replace('-', "")[..8]),
        kind: kind.to_owned(),
        description,
        uuid,
        options,
        config,
        local: false,
        seal_wrap: false,
        backend: crate::mounts::Instance::new(backend),
    })
}

/// `userpass` / `/userpass/` -> `userpass/`; `token/` is the token store's.
pub(crate) fn normalize_auth_path(path: &str) -> Result<String> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() || trimmed == "token" {
        return Err(Error::invalid("auth path must not be empty or 'token'"));
    }
    if trimmed
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
        || trimmed.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(Error::invalid("invalid auth path"));
    }
    Ok(format!("{trimmed}/"))
}

/// A list of strings: a JSON list or a comma-separated string (see `crate::fields`).
pub(crate) use crate::fields::opt_comma_strings as opt_strings;

/// Vault's common token fields on roles and users (`token_policies`/`policies`,
/// `token_ttl`/`ttl`, `token_max_ttl`/`max_ttl`, `token_period`, `token_num_uses`,
/// `token_no_default_policy`).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct TokenFields {
    pub token_policies: Vec<String>,
    pub token_ttl: u64,
    pub token_max_ttl: u64,
    pub token_period: u64,
    pub token_num_uses: u64,
    pub token_no_default_policy: bool,
    /// Set when the policies came in the legacy `policies` parameter: reads then echo
    /// `policies` too, as OpenBao does.
    #[serde(default)]
    pub legacy_policies: bool,
}

impl TokenFields {
    /// Applies the fields present in `d`.
    pub(crate) fn update(&mut self, d: &Map<String, Value>) -> Result<()> {
        use crate::kv::{opt_bool, opt_duration, opt_u64};
        let modern = opt_strings(d, "token_policies")?;
        let legacy = opt_strings(d, "policies")?;
        if modern.is_some() || legacy.is_some() {
            self.legacy_policies = modern.is_none();
        }
        if let Some(p) = modern.or(legacy) {
            // Checked now, stored as given (Vault keeps the case; logins lower-case).
            for n in &p {
                crate::policy::normalize_name(n)?;
            }
            self.token_policies = p;
        }
        if let Some(v) = opt_duration(d, "token_ttl")?.or(opt_duration(d, "ttl")?) {
            self.token_ttl = v;
        }
        if let Some(v) = opt_duration(d, "token_max_ttl")?.or(opt_duration(d, "max_ttl")?) {
            self.token_max_ttl = v;
        }
        if let Some(v) = opt_duration(d, "token_period")?.or(opt_duration(d, "period")?) {
            self.token_period = v;
        }
        if let Some(v) = opt_u64(d, "token_num_uses")? {
            self.token_num_uses = v;
        }
        if let Some(v) = opt_bool(d, "token_no_default_policy")? {
            self.token_no_default_policy = v;
        }
        if self.token_max_ttl > 0 && self.token_ttl > self.token_max_ttl {
            return Err(Error::invalid(
                "'token_ttl' cannot be greater than 'token_max_ttl'",
            ));
        }
        Ok(())
    }

    /// Adds the fields to a read response, as OpenBao shows them.
    pub(crate) fn write_to(&self, m: &mut Map<String, Value>) {
        use serde_json::json;
        // OpenBao no longer echoes the legacy aliases (`policies`, `ttl`, `max_ttl`,
        // `period`); they are still accepted on writes.
        m.insert("token_policies".into(), json!(self.token_policies));
        if self.legacy_policies {
            m.insert("policies".into(), json!(self.token_policies));
        }
        m.insert("token_ttl".into(), json!(self.token_ttl));
        m.insert("token_max_ttl".into(), json!(self.token_max_ttl));
        m.insert("token_period".into(), json!(self.token_period));
        m.insert("token_strictly_bind_ip".into(), json!(false));
        m.insert("token_num_uses".into(), json!(self.token_num_uses));
        m.insert(
            "token_no_default_policy".into(),
            json!(self.token_no_default_policy),
        );
        m.insert("token_type".into(), json!("default"));
        m.insert("token_explicit_max_ttl".into(), json!(0));
        m.insert("token_bound_cidrs".into(), json!([]));
    }

    /// A grant carrying these token fields.
    pub(crate) fn grant(&self, alias: &str) -> LoginGrant {
        LoginGrant {
            policies: self.token_policies.clone(),
            alias: alias.to_owned(),
            meta: BTreeMap::new(),
            ttl: self.token_ttl,
            max_ttl: self.token_max_ttl,
            period: self.token_period,
            num_uses: self.token_num_uses,
            no_default_policy: self.token_no_default_policy,
        }
    }
}
