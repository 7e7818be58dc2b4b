//! ACL policies: Vault's HCL (or JSON) documents, compiled into path rules with
//! capabilities, evaluated with Vault's precedence rules.

mod builtin;
mod params;
mod store;

pub(crate) use self::store::PolicyStore;

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::Value;

use crate::{Error, Operation, Result};

/// A set of capabilities, as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Caps(u16);

impl Caps {
    pub const CREATE: Caps = Caps(1);
    pub const READ: Caps = Caps(1 << 1);
    pub const UPDATE: Caps = Caps(1 << 2);
    pub const PATCH: Caps = Caps(1 << 3);
    pub const DELETE: Caps = Caps(1 << 4);
    pub const LIST: Caps = Caps(1 << 5);
    pub const SUDO: Caps = Caps(1 << 6);
    pub const DENY: Caps = Caps(1 << 7);
    pub const SUBSCRIBE: Caps = Caps(1 << 8);

    const NAMES: [(&'static str, Caps); 9] = [
        ("create", Caps::CREATE),
        ("delete", Caps::DELETE),
        ("deny", Caps::DENY),
        ("list", Caps::LIST),
        ("patch", Caps::PATCH),
        ("read", Caps::READ),
        ("subscribe", Caps::SUBSCRIBE),
        ("sudo", Caps::SUDO),
        ("update", Caps::UPDATE),
    ];

    pub(crate) fn contains(self, other: Caps) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    fn union(self, other: Caps) -> Caps {
        Caps(self.0 | other.0)
    }

    fn parse(name: &str) -> Option<Caps> {
        let n = name.trim().to_ascii_lowercase();
        Caps::NAMES.iter().find(|(k, _)| *k == n).map(|(_, c)| *c)
    }

    /// Names, sorted, as `sys/capabilities` reports them.
    pub(crate) fn names(self) -> Vec<String> {
        if self.contains(Caps::DENY) || self.0 == 0 {
            return vec!["deny".into()];
        }
        Caps::NAMES
            .iter()
            .filter(|(_, c)| self.contains(*c))
            .map(|(n, _)| (*n).to_owned())
            .collect()
    }

    /// The capability an operation needs.
    pub(crate) fn for_operation(op: Operation) -> Caps {
        match op {
            Operation::Read => Caps::READ,
            Operation::Create => Caps::CREATE,
            Operation::Update => Caps::UPDATE,
            Operation::Patch => Caps::PATCH,
            Operation::Delete => Caps::DELETE,
            Operation::List => Caps::LIST,
        }
    }
}

/// One `path "pattern" { capabilities = [...] }` block.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub pattern: String,
    pub caps: Caps,
    /// Parameter constraints and wrapping-TTL bounds, if the block has any.
    pub params: Option<params::Params>,
}

/// A parsed policy.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub name: String,
    pub raw: String,
    pub rules: Vec<Rule>,
}

/// Normalizes a policy name as Vault does (trimmed, lower-case) and refuses names
/// that could be mistaken for others (Unicode look-alikes, control characters).
pub(crate) fn normalize_name(name: &str) -> Result<String> {
    let n = name.trim().to_ascii_lowercase();
    // Vault takes any name and lower-cases it (hvac's tests use `['testpolicy']`).
    // Lockana keeps to printable ASCII: a Unicode look-alike (`rооt` in Cyrillic,
    // `root` with a zero-width space) would be a different policy that reads the same
    // in a token's policy list.
    if n.is_empty()
        || n.len() > MAX_NAME_LEN
        || !n.chars().all(|c| c.is_ascii() && !c.is_ascii_control())
    {
        return Err(Error::invalid(format!(
            "policy names must be 1 to {MAX_NAME_LEN} printable ASCII characters"
        )));
    }
    Ok(n)
}

/// The longest policy name accepted (Vault has no limit; names are storage keys and
/// appear in every token's policy list).
const MAX_NAME_LEN: usize = 256;

/// Validates a path pattern: `*` only at the end, `+` only as a whole segment.
fn check_pattern(p: &str) -> Result<String> {
    let p = p.trim().trim_start_matches('/').to_owned();
    let body = p.strip_suffix('*').unwrap_or(&p);
    if body.contains('*') {
        return Err(Error::invalid(
            "policy path patterns may only have '*' at the end",
        ));
    }
    if body.split('/').any(|seg| seg.contains('+') && seg != "+") {
        return Err(Error::invalid(
            "policy path patterns may only use '+' as a whole path segment",
        ));
    }
    Ok(p)
}

/// Vault's shorthand `policy = "read"` from before `capabilities`.
fn legacy_caps(s: &str) -> Option<Caps> {
    Some(match s.trim() {
        "deny" => Caps::DENY,
        "read" => Caps::READ.union(Caps::LIST),
        "write" => Caps::CREATE
            .union(Caps::READ)
            .union(Caps::UPDATE)
            .union(Caps::DELETE)
            .union(Caps::LIST),
        "sudo" => Caps::CREATE
            .union(Caps::READ)
            .union(Caps::UPDATE)
            .union(Caps::DELETE)
            .union(Caps::LIST)
            .union(Caps::SUDO),
        _ => return None,
    })
}

fn rule_caps(v: &Value) -> Result<Caps> {
    let bad = || Error::invalid("each policy path block needs 'capabilities' as a list of strings");
    let obj = v.as_object().ok_or_else(bad)?;
    let mut caps = Caps::default();
    if let Some(list) = obj.get("capabilities") {
        for c in list.as_array().ok_or_else(bad)? {
            let name = c.as_str().ok_or_else(bad)?;
            caps = caps.union(Caps::parse(name).ok_or_else(|| {
                Error::invalid(
                    "unknown capability: use create, read, update, patch, delete, list, sudo or deny",
                )
            })?);
        }
    }
    if let Some(p) = obj.get("policy") {
        let p = p
            .as_str()
            .and_then(legacy_caps)
            .ok_or_else(|| Error::invalid("'policy' must be one of deny, read, write or sudo"))?;
        caps = caps.union(p);
    }
    if caps == Caps::default() && obj.get("capabilities").is_none() && obj.get("policy").is_none() {
        return Err(bad());
    }
    Ok(caps)
}

/// Parses a policy document in HCL or JSON.
pub(crate) fn parse(name: &str, raw: &str) -> Result<Policy> {
    let doc: Value = if raw.trim_start().starts_with('{') {
        serde_json::from_str(raw)
            .map_err(|_| Error::invalid("failed to parse policy: invalid JSON"))?
    } else {
        let v: hcl::Value = hcl::from_str(raw).map_err(|e| {
            Error::invalid(format!(
                "failed to parse policy: {}",
                hcl_error_location(&e)
            ))
        })?;
        serde_json::to_value(v).map_err(|_| Error::invalid("failed to parse policy"))?
    };
    let mut rules = Vec::new();
    let paths = match doc.get("path") {
        None => {
            return Ok(Policy {
                name: name.into(),
                raw: raw.into(),
                rules,
            });
        }
        Some(p) => p,
    };
    let blocks: Vec<&Value> = match paths {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    for block in blocks {
        let map = block.as_object().ok_or_else(|| {
            Error::invalid("failed to parse policy: 'path' blocks need a pattern label")
        })?;
        for (pattern, body) in map {
            let bodies: Vec<&Value> = match body {
                Value::Array(a) => a.iter().collect(),
                other => vec![other],
            };
            for b in bodies {
                let params = match b.as_object() {
                    Some(obj) => params::Params::parse(obj)?,
                    None => None,
                };
                rules.push(Rule {
                    pattern: check_pattern(pattern)?,
                    caps: rule_caps(b)?,
                    params,
                });
            }
        }
    }
    Ok(Policy {
        name: name.into(),
        raw: raw.into(),
        rules,
    })
}

/// The position part of an HCL error, never the offending text (it may be a secret).
fn hcl_error_location(e: &hcl::Error) -> String {
    let s = e.to_string();
    match s.find(" --> ").or_else(|| s.find("-->")) {
        Some(i) => {
            let rest = &s[i..];
            let line = rest.lines().next().unwrap_or("").trim();
            format!("invalid HCL {line}")
        }
        None => "invalid HCL".into(),
    }
}

/// Does `pattern` (with `+` segments and a trailing `*`) match `path`?
pub(crate) fn matches(pattern: &str, path: &str) -> bool {
    let (base, glob) = match pattern.strip_suffix('*') {
        Some(b) => (b, true),
        None => (pattern, false),
    };
    if !base.contains('+') {
        return if glob {
            path.starts_with(base)
        } else {
            path == base
        };
    }
    let ps: Vec<&str> = base.split('/').collect();
    let qs: Vec<&str> = path.split('/').collect();
    if glob {
        if qs.len() < ps.len() {
            return false;
        }
    } else if qs.len() != ps.len() {
        return false;
    }
    let last = ps.len() - 1;
    for (i, p) in ps.iter().enumerate() {
        let q = qs[i];
        let ok = if *p == "+" {
            !q.is_empty() || (glob && i == last)
        } else if glob && i == last {
            q.starts_with(p)
        } else {
            *p == q
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Vault's precedence: `Greater` means `a` wins over `b`.
fn precedence(a: &str, b: &str) -> Ordering {
    let first_wild = |p: &str| p.find(['+', '*']).unwrap_or(usize::MAX);
    let pluses = |p: &str| p.split('/').filter(|s| *s == "+").count();
    first_wild(a)
        .cmp(&first_wild(b))
        .then_with(|| b.ends_with('*').cmp(&a.ends_with('*')))
        .then_with(|| pluses(b).cmp(&pluses(a)))
        .then_with(|| a.len().cmp(&b.len()))
        .then_with(|| a.cmp(b))
}

/// The merged rules of a token's policies.
#[derive(Debug, Default)]
pub(crate) struct Acl {
    root: bool,
    names: Vec<String>,
    rules: BTreeMap<String, Merged>,
}

/// Every policy's rules on one pattern, merged.
#[derive(Debug)]
struct Merged {
    caps: Caps,
    params: Option<params::Params>,
}

impl Acl {
    pub(crate) fn new<'a>(policies: impl IntoIterator<Item = &'a Policy>, root: bool) -> Acl {
        let mut rules: BTreeMap<String, Merged> = BTreeMap::new();
        let mut names = Vec::new();
        for p in policies {
            names.push(p.name.clone());
            for r in &p.rules {
                match rules.get_mut(&r.pattern) {
                    Some(m) => {
                        m.caps = m.caps.union(r.caps);
                        m.params = params::Params::merge(m.params.as_ref(), r.params.as_ref());
                    }
                    None => {
                        rules.insert(
                            r.pattern.clone(),
                            Merged {
                                caps: r.caps,
                                params: r.params.clone(),
                            },
                        );
                    }
                }
            }
        }
        Acl { root, names, rules }
    }

    /// As [`Acl::new`], remembering the token's policy names (some name no stored
    /// policy, like `response-wrapping`).
    pub(crate) fn for_token<'a>(
        names: &[String],
        policies: impl IntoIterator<Item = &'a Policy>,
        root: bool,
    ) -> Acl {
        let mut acl = Acl::new(policies, root);
        acl.names = names.to_vec();
        acl
    }

    pub(crate) fn is_root(&self) -> bool {
        self.root
    }

    /// Whether the ACL was built from exactly one policy, `name`.
    pub(crate) fn policy_names_only(&self, name: &str) -> bool {
        self.names.len() == 1 && self.names[0] == name
    }

    /// The capabilities granted on `path` (deny wins within the winning rule).
    pub(crate) fn capabilities(&self, path: &str) -> Caps {
        if self.root {
            return Caps(0x1ff & !Caps::DENY.0);
        }
        match self.best(path) {
            Some(m) if !m.caps.contains(Caps::DENY) => m.caps,
            _ => Caps::default(),
        }
    }

    /// The rule that governs `path`.
    fn best(&self, path: &str) -> Option<&Merged> {
        self.rules
            .iter()
            .filter(|(pattern, _)| matches(pattern, path))
            .max_by(|(a, _), (b, _)| precedence(a, b))
            .map(|(_, m)| m)
    }

    /// Checks the governing rule's parameter constraints (for writes: pass `data`) and
    /// wrapping-TTL bounds (every request); `PermissionDenied` when they refuse.
    pub(crate) fn check_params(
        &self,
        path: &str,
        data: Option<&serde_json::Map<String, Value>>,
        wrap_ttl: Option<u64>,
    ) -> Result<()> {
        if self.root {
            return Ok(());
        }
        match self.best(path).and_then(|m| m.params.as_ref()) {
            Some(p) => p.check(data, wrap_ttl),
            None => Ok(()),
        }
    }

    /// Whether `needed` is granted on `path`.
    pub(crate) fn allows(&self, path: &str, needed: Caps) -> bool {
        self.root || self.capabilities(path).contains(needed)
    }

    /// `sys/capabilities` answer for one path.
    pub(crate) fn capability_names(&self, path: &str) -> Vec<String> {
        if self.root {
            return vec!["root".into()];
        }
        self.capabilities(path).names()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(src: &str) -> Acl {
        Acl::new([&parse("t", src).unwrap()], false)
    }

    #[test]
    fn hcl_and_json_parse_to_the_same_rules() {
        let h = parse(
            "a",
            r#"
path "secret/data/*" { capabilities = ["read", "list"] }
path "secret/data/admin" { capabilities = ["deny"] }
"#,
        )
        .unwrap();
        let j = parse(
            "a",
            r#"{"path": {"secret/data/*": {"capabilities": ["read","list"]}, "secret/data/admin": {"capabilities": ["deny"]}}}"#,
        )
        .unwrap();
        assert_eq!(h.rules.len(), 2);
        assert_eq!(j.rules.len(), 2);
        let a = Acl::new([&h], false);
        assert!(a.allows("secret/data/x", Caps::READ));
        assert!(!a.allows("secret/data/admin", Caps::READ));
        assert!(!a.allows("secret/data/x", Caps::UPDATE));
    }

    #[test]
    fn bad_documents_are_refused_without_echoing_them() {
        let err = parse("a", "path \"x\" { capabilities = [\"fly-hunter2\"] }").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
        assert!(parse("a", "path \"a*b\" { capabilities = [\"read\"] }").is_err());
        assert!(parse("a", "path \"a/b+/c\" { capabilities = [\"read\"] }").is_err());
        let err = parse("a", "this is { not hcl hunter2").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn glob_and_plus_matching() {
        assert!(matches("secret/*", "secret/a/b"));
        assert!(matches("secret/*", "secret/"));
        assert!(!matches("secret/*", "secret"));
        assert!(matches("secret/data/+/config", "secret/data/team/config"));
        assert!(!matches("secret/data/+/config", "secret/data/a/b/config"));
        assert!(!matches("secret/data/+/config", "secret/data//config"));
        assert!(matches("secret/+/x*", "secret/a/xyz"));
        assert!(matches("secret/data/team-a/*", "secret/data/team-a/k"));
        assert!(!matches("secret/data/team-a/*", "secret/data/team-b/k"));
        assert!(!matches("secret/data/team-a/*", "secret/data/team-a"));
    }

    #[test]
    fn precedence_follows_vault_rules() {
        let a = acl(r#"
path "secret/*" { capabilities = ["read"] }
path "secret/data/*" { capabilities = ["deny"] }
path "secret/data/open" { capabilities = ["update"] }
path "secret/+/wild" { capabilities = ["list"] }
"#);
        // Later first wildcard wins.
        assert!(!a.allows("secret/data/x", Caps::READ));
        assert!(a.allows("secret/other", Caps::READ));
        // Exact beats globs.
        assert!(a.allows("secret/data/open", Caps::UPDATE));
        assert!(!a.allows("secret/data/open", Caps::READ));
        // "secret/+/wild" (wildcard at 7) vs "secret/*" (at 7): the glob loses.
        assert!(a.allows("secret/x/wild", Caps::LIST));
    }

    #[test]
    fn policies_merge_and_deny_wins() {
        let p1 = parse("1", r#"path "kv/a" { capabilities = ["read"] }"#).unwrap();
        let p2 = parse("2", r#"path "kv/a" { capabilities = ["update"] }"#).unwrap();
        let p3 = parse("3", r#"path "kv/a" { capabilities = ["deny"] }"#).unwrap();
        let both = Acl::new([&p1, &p2], false);
        assert!(both.allows("kv/a", Caps::READ) && both.allows("kv/a", Caps::UPDATE));
        let denied = Acl::new([&p1, &p2, &p3], false);
        assert!(!denied.allows("kv/a", Caps::READ));
        assert_eq!(denied.capability_names("kv/a"), vec!["deny"]);
        assert_eq!(both.capability_names("kv/a"), vec!["read", "update"]);
    }

    /// A plain reading of Vault's pattern language, to check `matches` against.
    fn reference_match(pattern: &str, path: &str) -> bool {
        let (body, glob) = match pattern.strip_suffix('*') {
            Some(b) => (b, true),
            None => (pattern, false),
        };
        let ps: Vec<&str> = body.split('/').collect();
        let qs: Vec<&str> = path.split('/').collect();
        if (!glob && qs.len() != ps.len()) || qs.len() < ps.len() {
            return false;
        }
        ps.iter().enumerate().all(|(i, p)| {
            let last = i == ps.len() - 1;
            match (*p, glob && last) {
                ("+", true) => true,
                ("+", false) => !qs[i].is_empty(),
                (p, true) => qs[i].starts_with(p),
                (p, false) => p == qs[i],
            }
        })
    }

    fn segment() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::prop_oneof![
            proptest::strategy::Just("team-a".to_owned()),
            proptest::strategy::Just("team-b".to_owned()),
            proptest::strategy::Just("team".to_owned()),
            proptest::strategy::Just("+".to_owned()),
            proptest::strategy::Just(String::new()),
            "[a-c]{1,3}",
        ]
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        #[test]
        fn matches_agrees_with_a_plain_reading(
            pat in proptest::collection::vec(segment(), 1..5),
            glob in proptest::bool::ANY,
            path in proptest::collection::vec(segment().prop_filter("no + in paths", |s| s != "+"), 1..6),
        ) {
            let mut pattern = pat.join("/");
            if glob {
                pattern.push('*');
            }
            let path = path.join("/");
            proptest::prop_assert_eq!(matches(&pattern, &path), reference_match(&pattern, &path), "{} vs {}", pattern, path);
        }

        #[test]
        fn a_team_a_grant_never_covers_another_team(rest in proptest::collection::vec(segment(), 0..4), other in "[a-z-]{0,8}") {
            let a = acl(r#"path "secret/data/team-a/*" { capabilities = ["read"] }"#);
            let path = format!("secret/data/{other}/{}", rest.join("/"));
            if other != "team-a" {
                proptest::prop_assert!(!a.allows(&path, Caps::READ), "{}", path);
            }
        }
    }

    #[test]
    fn names_normalize_and_lookalikes_collapse() {
        assert_eq!(normalize_name(" ROOT").unwrap(), "root");
        assert_eq!(normalize_name("root\n").unwrap(), "root");
        assert!(normalize_name("").is_err());
        assert!(normalize_name("  ").is_err());
    }

    #[test]
    fn names_vault_accepts_are_accepted() {
        for (raw, want) in [
            ("['testpolicy']", "['testpolicy']"),
            ("ro ot", "ro ot"),
            ("a/b", "a/b"),
            ("Team:Ops,1", "team:ops,1"),
        ] {
            assert_eq!(normalize_name(raw).unwrap(), want, "{raw}");
        }
    }

    #[test]
    fn unicode_lookalikes_of_root_are_refused() {
        for raw in [
            "r\u{43e}\u{43e}t",
            "root\u{200b}",
            "\u{ff52}oot",
            "ro\u{0}ot",
        ] {
            assert!(normalize_name(raw).is_err(), "{raw:?}");
        }
    }
}
