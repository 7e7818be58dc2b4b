//! A project's variables as an environment: names that can be environment variables,
//! values as strings, and the dotenv text.
//!
//! Dotenv quoting is chosen so that POSIX shells (`set -a; . ./.env; set +a`) read
//! back every value exactly — quotes, newlines, `$`, backticks, backslashes, unicode:
//!
//! - by default a value goes in single quotes, where a shell expands nothing; a `'`
//!   inside is written `'\''` (close, escaped quote, reopen);
//! - a value with a `'` or a `\` but no `$` or backtick goes in double quotes with
//!   `\` and `"` escaped, which shells and python-dotenv decode alike.
//!
//! So python-dotenv (with `interpolate=False`; its default expands `${VAR}` even in
//! single quotes) reads back every value too, except one holding a `'` or `\`
//! together with a `$` or backtick: there no quoting agrees with both, and the
//! shell wins.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Whether `name` can be an environment variable a shell will set.
pub(crate) fn valid_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The variables of a KV secret: values become strings (JSON text for objects and
/// lists, `""` for null). Keys that cannot be variable names and values with a NUL
/// (which no environment can hold) are left out and named in the second list.
pub(crate) fn variables(data: Map<String, Value>) -> (BTreeMap<String, String>, Vec<String>) {
    let mut vars = BTreeMap::new();
    let mut skipped = Vec::new();
    for (k, v) in data {
        let value = match v {
            Value::String(s) => s,
            Value::Null => String::new(),
            other => other.to_string(),
        };
        if valid_var_name(&k) && !value.contains('\0') {
            vars.insert(k, value);
        } else {
            skipped.push(k);
        }
    }
    (vars, skipped)
}

/// One value quoted for a dotenv file (see the module docs).
pub(crate) fn quote(value: &str) -> String {
    let tricky = value.contains('\'') || value.contains('\\');
    let expands = value.contains('$') || value.contains('`');
    let mut out = String::with_capacity(value.len() + 2);
    if tricky && !expands {
        out.push('"');
        for c in value.chars() {
            if c == '\\' || c == '"' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push('\'');
        out.push_str(&value.replace('\'', r"'\''"));
        out.push('\'');
    }
    out
}

/// The dotenv text: one `NAME=<quoted value>` line per variable, sorted by name.
pub(crate) fn dotenv(vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (k, v) in vars {
        out.push_str(k);
        out.push('=');
        out.push_str(&quote(v));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_and_values() {
        let data = json!({"A": "x", "B_2": 3, "c": null, "D": {"k": [1]}, "1X": "no",
            "bad-name": "no", "NUL": "a\u{0}b", "E": true});
        let Value::Object(m) = data else {
            unreachable!()
        };
        let (vars, skipped) = variables(m);
        assert_eq!(vars["A"], "x");
        assert_eq!(vars["B_2"], "3");
        assert_eq!(vars["c"], "");
        assert_eq!(vars["D"], r#"{"k":[1]}"#);
        assert_eq!(vars["E"], "true");
        assert_eq!(skipped, vec!["1X", "NUL", "bad-name"]);
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("plain"), "'plain'");
        assert_eq!(quote("$HOME `x`"), "'$HOME `x`'");
        assert_eq!(quote("it's"), r#""it's""#);
        assert_eq!(quote(r"a\b"), r#""a\\b""#);
        assert_eq!(quote(r#"say "hi""#), r#"'say "hi"'"#);
        assert_eq!(quote("it's $5"), r"'it'\''s $5'");
        assert_eq!(quote("two\nlines"), "'two\nlines'");
    }

    #[test]
    fn dotenv_lines_are_sorted() {
        let vars: BTreeMap<String, String> = [("B", "2"), ("A", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(dotenv(&vars), "A='1'\nB='2'\n");
    }
}
