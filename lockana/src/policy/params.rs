//! Parameter constraints on a policy path: `required_parameters`,
//! `allowed_parameters`, `denied_parameters`, and the wrapping-TTL bounds
//! `min_wrapping_ttl` / `max_wrapping_ttl`. They apply to create, update and patch.
//!
//! Parameter names compare case-insensitively, as in Vault: names are lowercased
//! when the policy is parsed and each request key is lowercased before the lookup,
//! so `{"ADMIN": ..}` meets the same rule as `{"admin": ..}`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::{Error, Result};

/// Constraints of one rule, or of several merged rules on the same pattern.
#[derive(Debug, Clone, Default)]
pub(crate) struct Params {
    /// `None`: any parameter may be given. A key with an empty list allows any value.
    pub allowed: Option<BTreeMap<String, Vec<String>>>,
    /// A key with an empty list is refused whatever its value.
    pub denied: BTreeMap<String, Vec<String>>,
    pub required: BTreeSet<String>,
    pub min_wrapping_ttl: u64,
    pub max_wrapping_ttl: u64,
}

fn value_list(v: &Value) -> Result<Vec<String>> {
    let bad =
        || Error::invalid("parameter constraints map names to lists of allowed or denied values");
    match v {
        Value::Array(a) => a
            .iter()
            .map(scalar)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad),
        Value::Null => Ok(Vec::new()),
        other => scalar(other).map(|s| vec![s]).ok_or_else(bad),
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn constraint_map(v: &Value) -> Result<BTreeMap<String, Vec<String>>> {
    // HCL gives a map, or a list of one-entry maps when written as several blocks.
    let maps: Vec<&Map<String, Value>> = match v {
        Value::Object(m) => vec![m],
        Value::Array(a) => a.iter().filter_map(Value::as_object).collect(),
        _ => {
            return Err(Error::invalid(
                "allowed_parameters and denied_parameters must be maps",
            ));
        }
    };
    let mut out = BTreeMap::new();
    for m in maps {
        for (k, v) in m {
            out.entry(k.to_lowercase())
                .or_insert_with(Vec::new)
                .extend(value_list(v)?);
        }
    }
    Ok(out)
}

impl Params {
    /// Reads the constraint keys of one `path` block.
    pub(crate) fn parse(block: &Map<String, Value>) -> Result<Option<Params>> {
        let mut p = Params::default();
        let mut any = false;
        if let Some(v) = block.get("allowed_parameters") {
            p.allowed = Some(constraint_map(v)?);
            any = true;
        }
        if let Some(v) = block.get("denied_parameters") {
            p.denied = constraint_map(v)?;
            any = true;
        }
        if let Some(v) = block.get("required_parameters") {
            let list = v
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|x| x.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| Error::invalid("required_parameters must be a list of names"))?;
            p.required = list.into_iter().map(|n| n.to_lowercase()).collect();
            any = true;
        }
        for (key, slot) in [
            ("min_wrapping_ttl", &mut p.min_wrapping_ttl),
            ("max_wrapping_ttl", &mut p.max_wrapping_ttl),
        ] {
            if let Some(v) = block.get(key) {
                *slot = crate::clock::parse_duration(v).ok_or_else(|| {
                    Error::invalid(format!("{key} must be a duration such as \"1m\""))
                })?;
                any = true;
            }
        }
        Ok(any.then_some(p))
    }

    /// Merges another rule's constraints on the same pattern, as Vault merges
    /// policies: allowed lists widen (no list anywhere means anything goes), denied
    /// and required lists add up, wrapping bounds take the widest.
    pub(crate) fn merge(a: Option<&Params>, b: Option<&Params>) -> Option<Params> {
        match (a, b) {
            (None, None) => None,
            (Some(x), None) | (None, Some(x)) => Some(Params {
                allowed: None,
                ..x.clone()
            }),
            (Some(x), Some(y)) => {
                let allowed = match (&x.allowed, &y.allowed) {
                    (Some(ax), Some(ay)) => {
                        let mut m = ax.clone();
                        for (k, v) in ay {
                            let e = m.entry(k.clone()).or_default();
                            if e.is_empty() || v.is_empty() {
                                e.clear();
                            } else {
                                e.extend(v.iter().cloned());
                            }
                        }
                        Some(m)
                    }
                    _ => None,
                };
                let mut denied = x.denied.clone();
                for (k, v) in &y.denied {
                    denied
                        .entry(k.clone())
                        .or_default()
                        .extend(v.iter().cloned());
                }
                Some(Params {
                    allowed,
                    denied,
                    required: x.required.union(&y.required).cloned().collect(),
                    min_wrapping_ttl: match (x.min_wrapping_ttl, y.min_wrapping_ttl) {
                        (0, m) | (m, 0) => m,
                        (m, n) => m.min(n),
                    },
                    max_wrapping_ttl: match (x.max_wrapping_ttl, y.max_wrapping_ttl) {
                        (0, _) | (_, 0) => 0,
                        (m, n) => m.max(n),
                    },
                })
            }
        }
    }

    /// Checks a write's parameters (when `data` is given) and any request's wrap TTL.
    pub(crate) fn check(
        &self,
        data: Option<&Map<String, Value>>,
        wrap_ttl: Option<u64>,
    ) -> Result<()> {
        if let Some(data) = data {
            self.check_data(data)?;
        }
        if self.min_wrapping_ttl > 0 || self.max_wrapping_ttl > 0 {
            let Some(ttl) = wrap_ttl else {
                return Err(Error::PermissionDenied);
            };
            if ttl < self.min_wrapping_ttl
                || (self.max_wrapping_ttl > 0 && ttl > self.max_wrapping_ttl)
            {
                return Err(Error::PermissionDenied);
            }
        }
        Ok(())
    }

    fn check_data(&self, data: &Map<String, Value>) -> Result<()> {
        let denied = || Error::PermissionDenied;
        if !self.required.is_empty() {
            let given: BTreeSet<String> = data.keys().map(|k| k.to_lowercase()).collect();
            if !self.required.is_subset(&given) {
                return Err(denied());
            }
        }
        for (key, value) in data {
            let key = key.to_lowercase();
            let key = key.as_str();
            if let Some(values) = self.denied.get(key).or_else(|| self.denied.get("*"))
                && (values.is_empty() || value_matches(value, values, true))
            {
                return Err(denied());
            }
            if let Some(allowed) = &self.allowed {
                match allowed.get(key).or_else(|| allowed.get("*")) {
                    None => return Err(denied()),
                    Some(values) if !values.is_empty() && !value_matches(value, values, false) => {
                        return Err(denied());
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }
}

/// Whether `value` matches the list: `any` — some element of a list value matches
/// (denied), otherwise every element must (allowed). Patterns may start or end in `*`.
fn value_matches(value: &Value, patterns: &[String], any: bool) -> bool {
    let one = |s: &str| patterns.iter().any(|p| glob_value(p, s));
    match value {
        Value::Array(items) => {
            let mut strs = items.iter().map(|i| scalar(i).unwrap_or_default());
            if any {
                strs.any(|s| one(&s))
            } else {
                strs.all(|s| one(&s))
            }
        }
        other => one(&scalar(other).unwrap_or_default()),
    }
}

fn glob_value(pattern: &str, s: &str) -> bool {
    match (pattern.strip_prefix('*'), pattern.strip_suffix('*')) {
        _ if pattern == "*" => true,
        (Some(rest), _) if rest.ends_with('*') && rest.len() > 1 => {
            s.contains(&rest[..rest.len() - 1])
        }
        (Some(rest), _) => s.ends_with(rest),
        (None, Some(prefix)) => s.starts_with(prefix),
        (None, None) => pattern == s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(v: Value) -> Params {
        Params::parse(v.as_object().unwrap()).unwrap().unwrap()
    }

    fn data(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn allowed_denied_and_required_parameters() {
        let p = params(json!({
            "allowed_parameters": {"role": ["reader", "dev-*"], "ttl": []},
            "denied_parameters": {"ttl": ["0"]},
            "required_parameters": ["role"],
        }));
        assert!(
            p.check(Some(&data(json!({"role": "reader"}))), None)
                .is_ok()
        );
        assert!(
            p.check(Some(&data(json!({"role": "dev-alice", "ttl": "1h"}))), None)
                .is_ok()
        );
        assert!(
            p.check(Some(&data(json!({"role": "admin"}))), None)
                .is_err()
        );
        assert!(
            p.check(Some(&data(json!({"ttl": "1h"}))), None).is_err(),
            "role is required"
        );
        assert!(
            p.check(Some(&data(json!({"role": "reader", "ttl": "0"}))), None)
                .is_err()
        );
        assert!(
            p.check(Some(&data(json!({"role": "reader", "other": 1}))), None)
                .is_err()
        );
        assert!(
            p.check(Some(&data(json!({"role": ["reader", "admin"]}))), None)
                .is_err()
        );
    }

    #[test]
    fn acl_parameter_case_bypass_denied() {
        // Regression: `{"ADMIN": "yes"}` got past `denied_parameters = {"admin" = []}`.
        let p = params(json!({"denied_parameters": {"admin": []}}));
        for key in ["admin", "ADMIN", "Admin", "aDmIn"] {
            assert!(
                p.check(Some(&data(json!({ key: "yes" }))), None).is_err(),
                "{key} must be denied"
            );
        }
        // Names in the policy are case-insensitive too.
        let upper = params(json!({"denied_parameters": {"Admin": []}}));
        assert!(upper.check(Some(&data(json!({"admin": 1}))), None).is_err());
    }

    #[test]
    fn acl_parameter_case_allowed_and_required() {
        let p = params(json!({
            "allowed_parameters": {"Role": ["reader"]},
            "required_parameters": ["ROLE"],
        }));
        assert!(
            p.check(Some(&data(json!({"role": "reader"}))), None)
                .is_ok()
        );
        assert!(
            p.check(Some(&data(json!({"RoLe": "reader"}))), None)
                .is_ok()
        );
        // The allowed values still bind whatever the spelling of the name.
        assert!(
            p.check(Some(&data(json!({"ROLE": "admin"}))), None)
                .is_err()
        );
        assert!(p.check(Some(&data(json!({"other": "x"}))), None).is_err());
    }

    proptest::proptest! {
        /// No spelling of a denied name gets through, whatever else the body holds.
        #[test]
        fn no_spelling_of_a_denied_key_gets_through(
            name in "[a-z_]{1,12}",
            flips in proptest::collection::vec(proptest::bool::ANY, 12),
            others in proptest::collection::btree_map("[a-zA-Z]{1,6}", 0u32..9, 0..4),
            value in "[ -~]{0,8}",
        ) {
            let spelled: String = name
                .chars()
                .zip(flips.iter().chain(std::iter::repeat(&false)))
                .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c })
                .collect();
            let p = params(json!({"denied_parameters": { name.as_str(): [] }}));
            let mut body = Map::new();
            for (k, v) in others {
                body.insert(k, json!(v));
            }
            body.insert(spelled, json!(value));
            proptest::prop_assert!(p.check(Some(&body), None).is_err());
            // An allow-list's values bind every spelling of the name as well.
            let a = params(json!({"allowed_parameters": { name.to_uppercase(): ["\u{1}"], "*": []}}));
            proptest::prop_assert!(a.check(Some(&body), None).is_err());
        }
    }

    #[test]
    fn denied_star_and_wrapping_bounds() {
        let p = params(json!({"denied_parameters": {"*": []}}));
        assert!(p.check(Some(&data(json!({}))), None).is_ok());
        assert!(p.check(Some(&data(json!({"x": 1}))), None).is_err());
        let w = params(json!({"min_wrapping_ttl": "1m", "max_wrapping_ttl": "1h"}));
        assert!(
            w.check(Some(&data(json!({}))), None).is_err(),
            "must be wrapped"
        );
        assert!(w.check(Some(&data(json!({}))), Some(30)).is_err());
        assert!(w.check(Some(&data(json!({}))), Some(600)).is_ok());
        assert!(w.check(Some(&data(json!({}))), Some(7200)).is_err());
    }

    #[test]
    fn merging_widens_allowed_and_adds_denied() {
        let a = params(json!({"allowed_parameters": {"x": ["1"]}}));
        let b = params(json!({"allowed_parameters": {"y": []}, "denied_parameters": {"z": []}}));
        let m = Params::merge(Some(&a), Some(&b)).unwrap();
        assert!(
            m.check(Some(&data(json!({"x": "1", "y": "anything"}))), None)
                .is_ok()
        );
        assert!(m.check(Some(&data(json!({"z": "1"}))), None).is_err());
        let open = Params::merge(Some(&a), None).unwrap();
        assert!(
            open.check(Some(&data(json!({"q": "1"}))), None).is_ok(),
            "a rule without allowed list allows all"
        );
    }
}
