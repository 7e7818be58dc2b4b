//! Engines as plug-ins, in the manner of Vault's `logical.Backend`: every secrets engine
//! and auth method is a [`Backend`] that describes itself — its paths and their help,
//! its existence check, its special paths, its lifecycle — and the core reads that
//! description instead of naming engines. The [`registry`](SECRETS_ENGINES) maps the type
//! names `sys/mounts` and `sys/auth` accept to factories; the mount tables hold the
//! instances.
//!
//! Adding an engine is a new folder with a `Backend` impl plus one line in
//! [`SECRETS_ENGINES`] (or [`AUTH_METHODS`]); see docs/architecture.md.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::help::BackendDoc;
use crate::{Error, Operation, Request, Response, Result};

pub(crate) use crate::auth::{Answer, LoginGrant};
/// Everything a backend needs to answer one request: its mount, its storage view
/// (through the barrier), the clock's `now` and the shared locks.
pub(crate) use crate::kv::Ctx;

/// What a backend's existence check found for a write (Vault's `ExistenceCheck`):
/// it decides whether an `update` needs the `create` capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Existence {
    /// The path has no existence check: `update` covers new and existing entries.
    NoCheck,
    /// The entry the write targets exists (`update` capability).
    Exists,
    /// It does not (`create` capability).
    Missing,
}

impl Existence {
    /// `Exists` or `Missing`.
    pub(crate) fn found(exists: bool) -> Self {
        if exists {
            Existence::Exists
        } else {
            Existence::Missing
        }
    }
}

/// A backend's special paths, relative to its mount (Vault's `PathsSpecial`). A pattern
/// is a literal path, or a prefix when it ends in `*`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SpecialPaths {
    /// Served without a token on writes: the body is the credential (logins). The
    /// backend answers them with [`Answer::Login`] and the core mints the token.
    pub unauthenticated: &'static [&'static str],
    /// Root-protected: the `sudo` capability is needed besides the operation's.
    pub root: &'static [&'static str],
    /// Root-protected for every operation but `read`.
    pub root_writes: &'static [&'static str],
}

impl SpecialPaths {
    /// No special paths.
    pub(crate) const NONE: SpecialPaths = SpecialPaths {
        unauthenticated: &[],
        root: &[],
        root_writes: &[],
    };

    /// Whether `rel` is an unauthenticated path for `op` (logins are writes).
    pub(crate) fn is_unauthenticated(&self, rel: &str, op: Operation) -> bool {
        matches!(op, Operation::Update | Operation::Create)
            && self.unauthenticated.iter().any(|p| pattern_matches(p, rel))
    }

    /// Whether `rel` needs `sudo` for `op`.
    pub(crate) fn needs_sudo(&self, rel: &str, op: Operation) -> bool {
        self.root.iter().any(|p| pattern_matches(p, rel))
            || (op != Operation::Read && self.root_writes.iter().any(|p| pattern_matches(p, rel)))
    }
}

/// A special-path pattern: literal, or a prefix when it ends in `*`.
fn pattern_matches(pattern: &str, rel: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => rel.starts_with(prefix),
        None => rel == pattern,
    }
}

/// A secrets engine or auth method. One instance per mount, created by its registry
/// factory when the mount is enabled or loaded at unseal, dropped at seal and unmount.
///
/// `rel` is always the request path below the mount (`data/app` for `secret/data/app`).
pub(crate) trait Backend: Send + Sync {
    /// The paths served — pattern, operations, fields, help — for `path-help`.
    fn doc(&self) -> &'static BackendDoc;

    /// Serves one request. Secrets engines answer `Ok(response.into())`; an auth
    /// method answers its login paths with [`Answer::Login`].
    fn handle(&self, ctx: &Ctx<'_>, req: &Request, rel: &str) -> Result<Answer>;

    /// Unauthenticated and root-protected paths.
    fn special_paths(&self) -> SpecialPaths {
        SpecialPaths::NONE
    }

    /// The existence check of a write to `rel`.
    fn existence(&self, _ctx: &Ctx<'_>, _rel: &str) -> Result<Existence> {
        Ok(Existence::NoCheck)
    }

    /// Whether serving `op` on `rel` may write to storage (and so wait on an fsync).
    /// Every operation but a read or list may, unless the engine knows better (a pure
    /// computation, such as transit's encrypt of an existing key).
    fn may_write(&self, _rel: &str, op: Operation) -> bool {
        !matches!(op, Operation::Read | Operation::List)
    }

    /// Whether each token sees its own corner of the mount's storage (cubbyhole).
    fn per_token_storage(&self) -> bool {
        false
    }

    /// Runs once when the mount is enabled, before it is acknowledged.
    fn initialize(&self, _ctx: &Ctx<'_>) -> Result<()> {
        Ok(())
    }

    /// Runs at unseal, before the vault reports unsealed: load caches from storage.
    fn load(&self, _ctx: &Ctx<'_>) -> Result<()> {
        Ok(())
    }

    /// Runs when the mount is disabled, before its storage view is deleted.
    fn cleanup(&self, _ctx: &Ctx<'_>) -> Result<()> {
        Ok(())
    }
}

impl From<Response> for Answer {
    fn from(r: Response) -> Self {
        Answer::Response(Box::new(r))
    }
}

/// Makes a backend for a mount. Given the type name as requested and the mount's
/// options, it checks and normalizes the options in place and returns the type name
/// the mount table stores (`kv-v2` is stored as `kv` with `version=2`) and the instance.
/// Mounts loaded at unseal go through the same factory with their stored type.
pub(crate) type Factory = fn(
    kind: &str,
    options: &mut BTreeMap<String, String>,
) -> Result<(&'static str, Arc<dyn Backend>)>;

/// One registry row.
pub(crate) struct Registration {
    /// Type names the factory answers to.
    pub names: &'static [&'static str],
    pub factory: Factory,
    /// Whether `sys/mounts` (or `sys/auth`) may enable it; built-ins such as
    /// cubbyhole are mounted by the vault itself.
    pub mountable: bool,
}

/// The secrets engines. Adding one: a row here.
pub(crate) static SECRETS_ENGINES: &[Registration] = &[
    crate::kv::REGISTRATION,
    crate::kv::CUBBYHOLE,
    crate::totp::REGISTRATION,
    crate::transit::REGISTRATION,
];

/// The auth methods (the token store and project logins are built in, not mounted).
pub(crate) static AUTH_METHODS: &[Registration] = &[
    crate::auth::userpass::REGISTRATION,
    crate::auth::approle::REGISTRATION,
    crate::auth::jwt::REGISTRATION,
];

/// Finds the registration of `kind` in `registry`.
pub(crate) fn lookup(
    registry: &'static [Registration],
    kind: &str,
) -> Option<&'static Registration> {
    registry.iter().find(|r| r.names.contains(&kind))
}

/// The mountable type names of `registry`, in registry order (error texts list them).
pub(crate) fn mountable_names(registry: &'static [Registration]) -> Vec<&'static str> {
    registry
        .iter()
        .filter(|r| r.mountable)
        .flat_map(|r| r.names.iter().copied())
        .collect()
}

/// A mount whose stored type no registered backend serves (written by another
/// version): it answers nothing, and the rest of the vault still unseals.
pub(crate) struct Unavailable;

impl Backend for Unavailable {
    fn doc(&self) -> &'static BackendDoc {
        &crate::help::EMPTY
    }

    fn handle(&self, _ctx: &Ctx<'_>, req: &Request, _rel: &str) -> Result<Answer> {
        Err(Error::NoRoute(req.path.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_path_patterns_are_literal_or_prefix() {
        let s = SpecialPaths {
            unauthenticated: &["login/*", "login"],
            root: &["raw*"],
            root_writes: &["auth/*"],
        };
        assert!(s.is_unauthenticated("login/bob", Operation::Update));
        assert!(s.is_unauthenticated("login", Operation::Create));
        assert!(!s.is_unauthenticated("login", Operation::Read));
        assert!(!s.is_unauthenticated("loginx", Operation::Update));
        assert!(s.needs_sudo("raw/x", Operation::Read));
        assert!(s.needs_sudo("auth/x", Operation::Update));
        assert!(!s.needs_sudo("auth/x", Operation::Read));
        assert!(!s.needs_sudo("auth", Operation::Update));
    }

    #[test]
    fn every_registered_name_is_unique() {
        for registry in [SECRETS_ENGINES, AUTH_METHODS] {
            let names: Vec<_> = registry.iter().flat_map(|r| r.names.iter()).collect();
            let mut dedup = names.clone();
            dedup.sort();
            dedup.dedup();
            assert_eq!(names.len(), dedup.len());
        }
    }
}
