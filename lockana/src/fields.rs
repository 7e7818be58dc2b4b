//! Request fields read the way Vault reads them (`framework.FieldData` with
//! `parseutil`/`strutil`): weakly typed, so a client may send `3600`, `"3600"` or `"1h"`
//! for a duration, `true`, `"true"` or `1` for a flag, `"a,b"` or `["a","b"]` for a list,
//! and `{"k":"v"}`, `"k=v,k2=v2"` (or the same as JSON text) for free-form metadata — the
//! forms the `bao` CLI, hvac and the Go client send.
//!
//! Every engine reads its request fields through these functions, so a value means the
//! same everywhere and is stored as OpenBao would store it. Absent and `null` fields are
//! `None`. Error messages name the field, never echo its value (it may be a secret).
//!
//! When engines declare their paths in a table, each field's type there maps onto one
//! of these readers.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::{Error, Result};

fn invalid(name: &str, what: &str) -> Error {
    Error::invalid(format!("'{name}' must be {what}"))
}

/// Vault's text for a value its field parser cannot convert (mapstructure's words):
/// clients and scripts match on it. Only the field and the JSON value's Go type are
/// named, never the value.
fn conversion_error(name: &str, go_target: &str, v: &Value) -> Error {
    let detail = match v {
        // Text (JSON numbers are text to Vault's decoder) that does not parse.
        Value::String(_) | Value::Number(_) => {
            let func = match go_target {
                "bool" => "strconv.ParseBool",
                _ => "strconv.ParseInt",
            };
            format!("'' cannot parse value as '{go_target}': {func}: invalid syntax")
        }
        Value::Array(_) => {
            format!("'' expected type '{go_target}', got unconvertible type '[]interface {{}}'")
        }
        Value::Object(_) => format!(
            "'' expected type '{go_target}', got unconvertible type 'map[string]interface {{}}'"
        ),
        Value::Bool(_) => {
            format!("'' expected type '{go_target}', got unconvertible type 'bool'")
        }
        Value::Null => format!("'' expected type '{go_target}', got unconvertible type '<nil>'"),
    };
    Error::invalid(format!(
        "error converting input for field \"{name}\": {detail}"
    ))
}

/// Go's `strconv.ParseBool`.
fn go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A boolean (`TypeBool`): `true`, `"true"`/`"t"`/`"1"`, `1`/`0`; `""` is false.
pub(crate) fn opt_bool(d: &Map<String, Value>, name: &str) -> Result<Option<bool>> {
    let v = match d.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let bad = || conversion_error(name, "bool", v);
    match v {
        Value::Bool(b) => Ok(Some(*b)),
        // Vault decodes JSON numbers as text, so `1` and `0` parse like `"1"`/`"0"`.
        Value::Number(n) => go_bool(&n.to_string()).map(Some).ok_or_else(bad),
        Value::String(s) if s.trim().is_empty() => Ok(Some(false)),
        Value::String(s) => go_bool(s.trim()).map(Some).ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// A signed integer (`TypeInt`): a JSON integer, an integer string (`""` is 0) or a
/// boolean (1/0).
pub(crate) fn opt_i64(d: &Map<String, Value>, name: &str) -> Result<Option<i64>> {
    let v = match d.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let bad = || conversion_error(name, "int", v);
    match v {
        Value::Number(n) => n.as_i64().map(Some).ok_or_else(bad),
        Value::Bool(b) => Ok(Some(i64::from(*b))),
        Value::String(s) if s.trim().is_empty() => Ok(Some(0)),
        Value::String(s) => s.trim().parse().map(Some).map_err(|_| bad()),
        _ => Err(bad()),
    }
}

/// A non-negative integer: [`opt_i64`], refusing negative values (Lockana is stricter
/// than Vault here on purpose: a negative count is a mistake, see docs/compat.md).
pub(crate) fn opt_u64(d: &Map<String, Value>, name: &str) -> Result<Option<u64>> {
    opt_i64(d, name)?
        .map(u64::try_from)
        .transpose()
        .map_err(|_| invalid(name, "a non-negative integer"))
}

/// A duration in seconds (`TypeDurationSecond`): a number of seconds (number or
/// string), or a Go duration (`"90s"`, `"1h30m"`) or whole days (`"7d"`); `""` is 0.
/// Negative durations are refused, as Vault refuses them.
pub(crate) fn opt_duration(d: &Map<String, Value>, name: &str) -> Result<Option<u64>> {
    match d.get(name) {
        None | Some(Value::Null) => Ok(None),
        // Vault's text without the value Go's parser quotes (it may be a typo'd secret).
        Some(v) => crate::clock::parse_duration(v).map(Some).ok_or_else(|| {
            Error::invalid(format!(
                "error converting input for field \"{name}\": time: invalid duration"
            ))
        }),
    }
}

/// A string (`TypeString`): strings as they are; numbers as their text and booleans as
/// `"1"`/`"0"`, as Vault's weak decoding turns them.
pub(crate) fn opt_string(d: &Map<String, Value>, name: &str) -> Result<Option<String>> {
    match d.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => scalar_text(v)
            .map(Some)
            .ok_or_else(|| invalid(name, "a string")),
    }
}

/// The text of a scalar as Vault's weak decoding gives it.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_owned()),
        _ => None,
    }
}

/// A list of strings (`TypeCommaStringSlice`): a comma-separated string or a JSON list
/// (of strings, numbers or booleans). Items are trimmed; empty items are dropped.
pub(crate) fn opt_comma_strings(d: &Map<String, Value>, name: &str) -> Result<Option<Vec<String>>> {
    let bad = || invalid(name, "a list of strings or a comma-separated string");
    let items: Vec<String> = match d.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| scalar_text(v).ok_or_else(bad))
            .collect::<Result<_>>()?,
        Some(v) => scalar_text(v)
            .ok_or_else(bad)?
            .split(',')
            .map(str::to_owned)
            .collect(),
    };
    Ok(Some(
        items
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    ))
}

/// Free-form key-value metadata (Vault's `strutil.ParseArbitraryKeyValues`, used for
/// AppRole secret-ID `metadata`): a JSON object, a string holding a JSON object, or
/// comma-separated `k=v` pairs (the CLI's `metadata=env=ci`), either possibly base64.
/// Like Vault, the `k=v` form is lower-cased, sorted and de-duplicated; empty values
/// are refused.
pub(crate) fn opt_arbitrary_kv(
    d: &Map<String, Value>,
    name: &str,
) -> Result<Option<BTreeMap<String, String>>> {
    let bad = || {
        invalid(
            name,
            "a JSON object of strings or comma-separated key=value pairs",
        )
    };
    let object_of_strings = |m: &Map<String, Value>| -> Result<BTreeMap<String, String>> {
        m.iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(bad()),
            })
            .collect()
    };
    let text = match d.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(m)) => return object_of_strings(m).map(Some),
        Some(v) => scalar_text(v).ok_or_else(bad)?,
    };
    let mut text = text.trim().to_owned();
    if text.is_empty() {
        return Ok(Some(BTreeMap::new()));
    }
    if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(&text)
        && let Ok(s) = String::from_utf8(decoded)
    {
        text = s;
    }
    let out = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => object_of_strings(&m)?,
        Ok(Value::Null) => BTreeMap::new(),
        _ => {
            let mut out = BTreeMap::new();
            for item in text.split(',') {
                let item = item.trim().to_lowercase();
                if item.is_empty() {
                    continue;
                }
                let mut parts = item.split('=');
                let (Some(k), Some(v), None) = (parts.next(), parts.next(), parts.next()) else {
                    return Err(bad());
                };
                let (k, v) = (k.trim(), v.trim());
                if k.is_empty() || v.is_empty() {
                    return Err(bad());
                }
                out.insert(k.to_owned(), v.to_owned());
            }
            out
        }
    };
    if out.iter().any(|(k, v)| !k.is_empty() && v.is_empty()) {
        return Err(bad());
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(v: Value) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("f".into(), v);
        m
    }

    #[test]
    fn absent_and_null_are_none_for_every_reader() {
        for d in [Map::new(), data(Value::Null)] {
            assert_eq!(opt_bool(&d, "f").unwrap(), None);
            assert_eq!(opt_i64(&d, "f").unwrap(), None);
            assert_eq!(opt_u64(&d, "f").unwrap(), None);
            assert_eq!(opt_duration(&d, "f").unwrap(), None);
            assert_eq!(opt_string(&d, "f").unwrap(), None);
            assert_eq!(opt_comma_strings(&d, "f").unwrap(), None);
            assert_eq!(opt_arbitrary_kv(&d, "f").unwrap(), None);
        }
    }

    #[test]
    fn bools_decode_weakly_like_vault() {
        for (v, want) in [
            (json!(true), true),
            (json!("true"), true),
            (json!("t"), true),
            (json!("1"), true),
            (json!(1), true),
            (json!(false), false),
            (json!("False"), false),
            (json!(0), false),
            (json!(""), false),
        ] {
            assert_eq!(opt_bool(&data(v.clone()), "f").unwrap(), Some(want), "{v}");
        }
        for v in [json!("yes"), json!(2), json!([true]), json!({})] {
            assert!(opt_bool(&data(v.clone()), "f").is_err(), "{v}");
        }
    }

    #[test]
    fn ints_accept_numbers_numeric_strings_and_bools() {
        assert_eq!(opt_i64(&data(json!(5)), "f").unwrap(), Some(5));
        assert_eq!(opt_i64(&data(json!("5")), "f").unwrap(), Some(5));
        assert_eq!(opt_i64(&data(json!("-5")), "f").unwrap(), Some(-5));
        assert_eq!(opt_i64(&data(json!("")), "f").unwrap(), Some(0));
        assert_eq!(opt_i64(&data(json!(true)), "f").unwrap(), Some(1));
        assert!(opt_i64(&data(json!(1.5)), "f").is_err());
        assert!(opt_i64(&data(json!("ten")), "f").is_err());
        assert!(opt_u64(&data(json!(-1)), "f").is_err());
        assert_eq!(opt_u64(&data(json!("7")), "f").unwrap(), Some(7));
    }

    #[test]
    fn conversion_errors_use_vaults_words_without_the_value() {
        let named = |k: &str, v: Value| {
            let mut m = Map::new();
            m.insert(k.to_owned(), v);
            m
        };
        let msg = |r: Result<Option<i64>>| match r {
            Err(Error::InvalidRequest(m)) => m.into_owned(),
            other => panic!("{:?}", other.map_err(|e| e.to_string())),
        };
        assert_eq!(
            msg(opt_i64(
                &named("max_versions", json!("hunter2")),
                "max_versions"
            )),
            "error converting input for field \"max_versions\": '' cannot parse value as 'int': strconv.ParseInt: invalid syntax"
        );
        assert_eq!(
            msg(opt_i64(&named("max_versions", json!([1])), "max_versions")),
            "error converting input for field \"max_versions\": '' expected type 'int', got unconvertible type '[]interface {}'"
        );
        let Err(Error::InvalidRequest(m)) =
            opt_bool(&named("cas_required", json!("hunter2")), "cas_required")
        else {
            panic!("bool accepted");
        };
        assert_eq!(
            m,
            "error converting input for field \"cas_required\": '' cannot parse value as 'bool': strconv.ParseBool: invalid syntax"
        );
        let Err(Error::InvalidRequest(m)) = opt_duration(&named("ttl", json!("hunter2")), "ttl")
        else {
            panic!("duration accepted");
        };
        assert!(!m.contains("hunter2"), "{m}");
    }

    #[test]
    fn durations_take_seconds_strings_and_go_durations() {
        for (v, want) in [
            (json!(3600), 3600),
            (json!("3600"), 3600),
            (json!("1h"), 3600),
            (json!("1h30m"), 5400),
            (json!("90s"), 90),
            (json!("7d"), 7 * 86400),
            (json!(""), 0),
        ] {
            assert_eq!(
                opt_duration(&data(v.clone()), "f").unwrap(),
                Some(want),
                "{v}"
            );
        }
        for v in [json!("-1h"), json!(-5), json!("soon"), json!(true)] {
            assert!(opt_duration(&data(v.clone()), "f").is_err(), "{v}");
        }
    }

    #[test]
    fn strings_take_scalars_as_text() {
        assert_eq!(
            opt_string(&data(json!("x")), "f").unwrap().as_deref(),
            Some("x")
        );
        assert_eq!(
            opt_string(&data(json!(12)), "f").unwrap().as_deref(),
            Some("12")
        );
        assert_eq!(
            opt_string(&data(json!(true)), "f").unwrap().as_deref(),
            Some("1")
        );
        assert!(opt_string(&data(json!(["x"])), "f").is_err());
    }

    #[test]
    fn comma_lists_take_strings_and_arrays() {
        let want = Some(vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(opt_comma_strings(&data(json!("a,b")), "f").unwrap(), want);
        assert_eq!(
            opt_comma_strings(&data(json!(" a , b ,")), "f").unwrap(),
            want
        );
        assert_eq!(
            opt_comma_strings(&data(json!(["a", "b"])), "f").unwrap(),
            want
        );
        assert_eq!(
            opt_comma_strings(&data(json!([1, "x"])), "f").unwrap(),
            Some(vec!["1".to_owned(), "x".to_owned()])
        );
        assert_eq!(
            opt_comma_strings(&data(json!("")), "f").unwrap(),
            Some(vec![])
        );
        assert!(opt_comma_strings(&data(json!({"a": 1})), "f").is_err());
    }

    #[test]
    fn arbitrary_kv_takes_json_base64_and_cli_pairs() {
        let want = Some(BTreeMap::from([
            ("env".to_owned(), "ci".to_owned()),
            ("team".to_owned(), "ops".to_owned()),
        ]));
        assert_eq!(
            opt_arbitrary_kv(&data(json!("env=ci,team=ops")), "f").unwrap(),
            want
        );
        assert_eq!(
            opt_arbitrary_kv(&data(json!("Env=CI, team=ops")), "f").unwrap(),
            want
        );
        assert_eq!(
            opt_arbitrary_kv(&data(json!(r#"{"env":"ci","team":"ops"}"#)), "f").unwrap(),
            want
        );
        assert_eq!(
            opt_arbitrary_kv(&data(json!({"env": "ci", "team": "ops"})), "f").unwrap(),
            want
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode("env=ci,team=ops");
        assert_eq!(opt_arbitrary_kv(&data(json!(b64)), "f").unwrap(), want);
        // JSON keeps case, as Vault does.
        assert_eq!(
            opt_arbitrary_kv(&data(json!(r#"{"Env":"CI"}"#)), "f").unwrap(),
            Some(BTreeMap::from([("Env".to_owned(), "CI".to_owned())]))
        );
        assert_eq!(
            opt_arbitrary_kv(&data(json!("")), "f").unwrap(),
            Some(BTreeMap::new())
        );
        for bad in [
            json!("env"),
            json!("env="),
            json!("a=b=c"),
            json!(r#"{"k":1}"#),
            json!([1]),
        ] {
            assert!(opt_arbitrary_kv(&data(bad.clone()), "f").is_err(), "{bad}");
        }
    }
}
