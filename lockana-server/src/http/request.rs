//! HTTP request -> [`lockana::Request`]: method, path, token, query and JSON body.
//!
//! Everything here sees untrusted bytes, so each step is a small pure function that
//! fails with an [`HttpError`] (status + Vault-style message) and never panics.

use http::{HeaderMap, Method, StatusCode};
use lockana::{ClientToken, Operation};
use serde_json::{Map, Value};

use serde::Deserialize;

use super::HttpError;
use super::json::TooComplex;
#[cfg(test)]
use super::json::{JsonLimits, Scanner};

/// The API prefix every Vault path lives under.
const API_PREFIX: &str = "/v1/";

/// Maps an HTTP method (and GET's `list` query flag) to a logical operation.
///
/// `None` means the method is not part of Vault's API (answered with 405).
pub(crate) fn operation_for(method: &Method, list: bool) -> Option<Operation> {
    let op = match method.as_str() {
        "GET" | "HEAD" if list => Operation::List,
        "GET" | "HEAD" => Operation::Read,
        "LIST" => Operation::List,
        "POST" | "PUT" => Operation::Update,
        "PATCH" => Operation::Patch,
        "DELETE" => Operation::Delete,
        _ => return None,
    };
    Some(op)
}

/// Whether the method carries its parameters in the query string rather than a body.
pub(crate) fn uses_query(method: &Method) -> bool {
    matches!(method.as_str(), "GET" | "HEAD" | "LIST" | "DELETE")
}

/// Whether a PATCH says its body is a JSON merge patch (RFC 7386), as Vault requires.
pub(crate) fn is_merge_patch(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/merge-patch+json")
        })
}

/// Whether the request asks for help (`bao path-help`): a non-empty `help` query
/// parameter on any method, or the `HELP` method, as Vault's help handler decides.
pub(crate) fn wants_help(method: &Method, query: Option<&str>) -> bool {
    method.as_str() == "HELP"
        || query.is_some_and(|q| {
            form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "help" && !v.is_empty())
        })
}

/// Whether the method carries a JSON body.
pub(crate) fn uses_body(method: &Method) -> bool {
    matches!(method.as_str(), "POST" | "PUT" | "PATCH")
}

/// Extracts the logical path from a URI path (`/v1/secret/data/x` -> `secret/data/x`).
///
/// Returns `Ok(None)` when the URI is not under `/v1/` (a plain 404, as Vault answers).
/// The path is percent-decoded first, so `%2e%2e` is caught like `..`. A single
/// trailing slash is kept: it is meaningful to Vault (`LIST secret/metadata/`).
pub(crate) fn logical_path(uri_path: &str) -> Result<Option<String>, HttpError> {
    let decoded = percent_encoding::percent_decode_str(uri_path)
        .decode_utf8()
        .map_err(|_| HttpError::invalid_path())?;
    let Some(rest) = decoded.strip_prefix(API_PREFIX) else {
        return Ok(None);
    };
    validate_path(rest)?;
    Ok(Some(rest.to_owned()))
}

/// Rejects paths that could mean something else after normalisation: empty segments
/// (`a//b`, a leading `/`), `.` and `..` segments, and control characters.
pub(crate) fn validate_path(path: &str) -> Result<(), HttpError> {
    if path.chars().any(char::is_control) || path.contains('\\') {
        return Err(HttpError::invalid_path());
    }
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    if trimmed.is_empty() {
        // `/v1/` or `/v1//`: no route, not an attack.
        return if path.is_empty() {
            Ok(())
        } else {
            Err(HttpError::invalid_path())
        };
    }
    for segment in trimmed.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(HttpError::invalid_path());
        }
    }
    Ok(())
}

/// The client token: `X-Vault-Token`, else `Authorization: Bearer <token>`.
///
/// Headers that are not visible ASCII, and empty tokens, count as no token (the vault
/// then answers 403 where a token is needed).
pub(crate) fn token(headers: &HeaderMap) -> Option<ClientToken> {
    if let Some(value) = headers.get("x-vault-token") {
        let t = value.to_str().ok()?.trim();
        return (!t.is_empty()).then(|| ClientToken::new(t));
    }
    let auth = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, t) = auth.trim().split_once(' ')?;
    let t = t.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !t.is_empty()).then(|| ClientToken::new(t))
}

/// `X-Vault-Wrap-TTL`: seconds or a duration such as `5m`.
pub(crate) fn wrap_ttl(headers: &HeaderMap) -> Result<Option<u64>, HttpError> {
    let Some(v) = headers.get("x-vault-wrap-ttl") else {
        return Ok(None);
    };
    let bad = || {
        HttpError::bad_request(
            "X-Vault-Wrap-TTL must be a number of seconds or a duration such as \"5m\"",
        )
    };
    let s = v.to_str().map_err(|_| bad())?.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Ok(Some(n));
    }
    humantime::parse_duration(s)
        .map(|d| Some(d.as_secs()))
        .map_err(|_| bad())
}

/// `X-Vault-MFA` values (`method_id:passcode`), possibly several.
pub(crate) fn mfa_values(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("x-vault-mfa")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect()
}

/// Parsed query string: the `list` flag and the remaining parameters as Vault's
/// `parseQuery` builds them (one value: a string; repeated: a list of strings).
#[derive(Debug, Default)]
pub(crate) struct Query {
    /// `list=true` was given.
    pub(crate) list: bool,
    /// Everything else except `help` (reserved by Vault).
    pub(crate) data: Map<String, Value>,
}

/// Parses a query string (percent- and `+`-decoded, like Go's `url.ParseQuery`).
pub(crate) fn parse_query(query: Option<&str>) -> Result<Query, HttpError> {
    let mut out = Query::default();
    let Some(query) = query else {
        return Ok(out);
    };
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "list" => {
                out.list = parse_bool(&value).ok_or_else(|| {
                    HttpError::bad_request("invalid value for the list parameter")
                })?;
            }
            "help" => {}
            _ => match out.data.get_mut(key.as_ref()) {
                Some(Value::Array(values)) => values.push(Value::String(value.into_owned())),
                Some(first) => {
                    let first = first.take();
                    out.data.insert(
                        key.into_owned(),
                        Value::Array(vec![first, Value::String(value.into_owned())]),
                    );
                }
                None => {
                    out.data
                        .insert(key.into_owned(), Value::String(value.into_owned()));
                }
            },
        }
    }
    Ok(out)
}

/// Go's `strconv.ParseBool`, which Vault uses for `list`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Parses a request body: empty (or whitespace) and `null` are an empty object, as
/// Vault's decoder leaves its map empty for them (Vault's Go client sends `null` when
/// it has no data: `bao write -f`, `bao unwrap`); anything else must be a JSON object
/// within `limits`. Errors never echo the body. (The server scans
/// as the body arrives and calls [`parse_scanned`]; this is the whole-body form.)
#[cfg(test)]
pub(crate) fn parse_body(
    body: &[u8],
    limits: &JsonLimits,
) -> Result<Map<String, Value>, HttpError> {
    Scanner::new(*limits).feed(body).map_err(too_complex)?;
    parse_scanned(body)
}

/// Parses a body that a [`Scanner`] has already passed whole.
pub(crate) fn parse_scanned(body: &[u8]) -> Result<Map<String, Value>, HttpError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    // The scanner has bounded the depth (`max_json_depth`, up to Vault's 500), which
    // serde's fixed guard of 128 would otherwise cut short.
    de.disable_recursion_limit();
    let parsed = Value::deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match parsed {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Map::new()),
        // Go's decoder text, naming only the JSON type.
        Ok(other) => Err(HttpError::bad_request(format!(
            "failed to decode JSON input: json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
            match other {
                Value::Array(_) => "array",
                Value::String(_) => "string",
                Value::Number(_) => "number",
                Value::Bool(_) => "bool",
                Value::Null | Value::Object(_) => "object",
            }
        ))),
        Err(err) => Err(HttpError::bad_request(json_error_message(&err))),
    }
}

/// The 400 for a body over a complexity limit, in OpenBao's words.
pub(crate) fn too_complex(reason: TooComplex) -> HttpError {
    HttpError::bad_request(reason.message())
}

/// A parse error described by category and position only: serde_json's own messages
/// are safe for `Value` today, but a body may hold secrets, so we do not rely on that.
fn json_error_message(err: &serde_json::Error) -> String {
    use serde_json::error::Category;
    if err.classify() == Category::Eof {
        // Go's decoder says exactly this for a cut-off body.
        return "failed to decode JSON input: unexpected EOF".to_owned();
    }
    let what = match err.classify() {
        Category::Eof => "unexpected end of input",
        Category::Syntax => "syntax error",
        Category::Data => "invalid data",
        Category::Io => "read error",
    };
    format!(
        "failed to decode JSON input: {what} at line {} column {}",
        err.line(),
        err.column()
    )
}

/// The `Content-Length` header, when present and valid.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The error for a body over the size limit.
pub(crate) fn too_large(limit: usize) -> HttpError {
    HttpError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body exceeds the maximum request size of {limit} bytes"),
    )
}

#[cfg(test)]
mod tests {
    /// The default limits with another depth.
    fn with_depth(max_depth: usize) -> JsonLimits {
        JsonLimits {
            max_depth,
            ..JsonLimits::default()
        }
    }

    proptest::proptest! {
        /// Fuzz twin for the request body parser: any bytes give a map or a 400,
        /// and nesting past the limit is refused before serde sees it.
        #[test]
        fn any_body_parses_or_is_refused(body in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            match super::parse_body(&body, &with_depth(8)) {
                Ok(_) => {}
                Err(e) => proptest::prop_assert_eq!(e.status, http::StatusCode::BAD_REQUEST),
            }
        }

        #[test]
        fn nesting_past_the_limit_is_refused(depth in 9usize..200, open in "[\\[{]") {
            let close = if open == "[" { "]" } else { "}" };
            let mut v = String::from("{\"k\":");
            for _ in 0..depth {
                v.push_str(&open);
                if open == "{" { v.push_str("\"a\":"); }
            }
            v.push('1');
            for _ in 0..depth { v.push_str(close); }
            v.push('}');
            proptest::prop_assert!(super::parse_body(v.as_bytes(), &with_depth(8)).is_err(), "{}", v);
        }
    }

    #[test]
    fn merge_patch_content_type_is_recognized() {
        let mut h = http::HeaderMap::new();
        assert!(!super::is_merge_patch(&h));
        h.insert(
            http::header::CONTENT_TYPE,
            "application/json".parse().unwrap(),
        );
        assert!(!super::is_merge_patch(&h));
        h.insert(
            http::header::CONTENT_TYPE,
            "application/merge-patch+json; charset=utf-8"
                .parse()
                .unwrap(),
        );
        assert!(super::is_merge_patch(&h));
    }

    use super::*;
    use http::HeaderValue;

    fn status(r: Result<impl std::fmt::Debug, HttpError>) -> StatusCode {
        r.expect_err("expected an error").status
    }

    #[test]
    fn methods_map_to_vault_operations() {
        let cases = [
            ("GET", false, Some(Operation::Read)),
            ("GET", true, Some(Operation::List)),
            ("HEAD", false, Some(Operation::Read)),
            ("LIST", false, Some(Operation::List)),
            ("POST", false, Some(Operation::Update)),
            ("PUT", false, Some(Operation::Update)),
            ("PATCH", false, Some(Operation::Patch)),
            ("DELETE", false, Some(Operation::Delete)),
            ("OPTIONS", false, None),
            ("TRACE", false, None),
        ];
        for (m, list, want) in cases {
            let method = Method::from_bytes(m.as_bytes()).expect("method");
            assert_eq!(operation_for(&method, list), want, "{m} list={list}");
        }
    }

    #[test]
    fn help_is_a_non_empty_help_parameter_or_the_help_method() {
        assert!(wants_help(&Method::GET, Some("help=1")));
        assert!(wants_help(&Method::POST, Some("x=y&help=true")));
        assert!(!wants_help(&Method::GET, Some("help=")));
        assert!(!wants_help(&Method::GET, None));
        let help = Method::from_bytes(b"HELP").expect("method");
        assert!(wants_help(&help, None));
    }

    #[test]
    fn list_flag_is_ignored_for_writes() {
        assert_eq!(operation_for(&Method::POST, true), Some(Operation::Update));
    }

    #[test]
    fn paths_outside_v1_are_not_ours() {
        assert_eq!(logical_path("/").expect("ok"), None);
        assert_eq!(logical_path("/ui/").expect("ok"), None);
        assert_eq!(logical_path("/v2/secret").expect("ok"), None);
        assert_eq!(logical_path("/v1").expect("ok"), None);
    }

    #[test]
    fn v1_paths_are_stripped_and_trailing_slash_kept() {
        assert_eq!(
            logical_path("/v1/secret/data/x").expect("ok").as_deref(),
            Some("secret/data/x")
        );
        assert_eq!(
            logical_path("/v1/secret/metadata/").expect("ok").as_deref(),
            Some("secret/metadata/")
        );
        assert_eq!(
            logical_path("/v1/secret/data/a%20b")
                .expect("ok")
                .as_deref(),
            Some("secret/data/a b")
        );
    }

    #[test]
    fn traversal_and_empty_segments_are_rejected_with_400() {
        for p in [
            "/v1/secret/../sys/seal",
            "/v1/secret/..",
            "/v1/../sys",
            "/v1/secret/./x",
            "/v1/./secret",
            "/v1/secret//x",
            "/v1//secret",
            "/v1//",
            "/v1/secret/%2e%2e/sys",
            "/v1/secret/%2E/x",
            "/v1/secret%2f%2fx",
            "/v1/secret/x%00",
            "/v1/secret/%ff",
            "/v1/secret\\..\\x",
        ] {
            assert_eq!(status(logical_path(p)), StatusCode::BAD_REQUEST, "{p}");
        }
    }

    #[test]
    fn dots_inside_segments_are_fine() {
        for p in [
            "/v1/secret/data/.env",
            "/v1/secret/data/a..b",
            "/v1/secret/data/x.",
        ] {
            assert!(logical_path(p).expect(p).is_some(), "{p}");
        }
    }

    #[test]
    fn token_from_x_vault_token() {
        let mut h = HeaderMap::new();
        h.insert("x-vault-token", HeaderValue::from_static("hvs.abc"));
        h.insert("authorization", HeaderValue::from_static("Bearer other"));
        assert_eq!(
            token(&h).map(|t| t.expose().to_owned()).as_deref(),
            Some("hvs.abc")
        );
    }

    #[test]
    fn token_from_bearer_authorization() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("bearer  hvs.xyz "),
        );
        assert_eq!(
            token(&h).map(|t| t.expose().to_owned()).as_deref(),
            Some("hvs.xyz")
        );
    }

    #[test]
    fn no_or_empty_or_basic_token_is_none() {
        assert!(token(&HeaderMap::new()).is_none());
        let mut h = HeaderMap::new();
        h.insert("x-vault-token", HeaderValue::from_static(""));
        assert!(token(&h).is_none());
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("Basic dXNlcjpwdw=="),
        );
        assert!(token(&h).is_none());
    }

    #[test]
    fn query_params_become_string_data() {
        let q = parse_query(Some("version=2&name=a%20b&plus=x+y")).expect("query");
        assert!(!q.list);
        assert_eq!(q.data["version"], Value::from("2"));
        assert_eq!(q.data["name"], Value::from("a b"));
        assert_eq!(q.data["plus"], Value::from("x y"));
    }

    #[test]
    fn repeated_query_params_become_lists() {
        let q = parse_query(Some("v=1&v=2&v=3")).expect("query");
        assert_eq!(q.data["v"], serde_json::json!(["1", "2", "3"]));
    }

    #[test]
    fn list_true_is_taken_out_of_data() {
        let q = parse_query(Some("list=true&help=1&x=y")).expect("query");
        assert!(q.list);
        assert!(!q.data.contains_key("list"));
        assert!(!q.data.contains_key("help"));
        assert_eq!(q.data.len(), 1);
        assert!(parse_query(Some("list=1")).expect("q").list);
        assert!(!parse_query(Some("list=false")).expect("q").list);
        assert_eq!(
            status(parse_query(Some("list=yes"))),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn empty_body_is_an_empty_object() {
        assert!(parse_body(b"", &with_depth(10)).expect("empty").is_empty());
        assert!(
            parse_body(b" \n", &with_depth(10))
                .expect("blank")
                .is_empty()
        );
    }

    #[test]
    fn null_body_from_vault_go_client_is_no_data() {
        assert!(
            parse_body(b"null", &with_depth(10))
                .expect("null")
                .is_empty()
        );
        assert!(
            parse_body(b" null\n", &with_depth(10))
                .expect("null")
                .is_empty()
        );
    }

    #[test]
    fn body_must_be_a_json_object() {
        let m = parse_body(br#"{"data":{"k":"v"}}"#, &with_depth(10)).expect("object");
        assert_eq!(m["data"]["k"], Value::from("v"));
        for bad in [&b"[1]"[..], b"\"s\"", b"42", b"true", b"{} {}"] {
            assert_eq!(
                status(parse_body(bad, &with_depth(10))),
                StatusCode::BAD_REQUEST
            );
        }
    }

    #[test]
    fn json_errors_do_not_echo_the_body() {
        let err = parse_body(br#"{"password": "hunter2" "#, &with_depth(10)).expect_err("bad json");
        let msg = err.message.unwrap_or_default();
        assert!(msg.starts_with("failed to decode JSON input"));
        assert!(!msg.contains("hunter2"));
        let err = parse_body(br#"{"k": tru_hunter2}"#, &with_depth(10)).expect_err("bad json");
        assert!(!err.message.unwrap_or_default().contains("hunter2"));
    }

    #[test]
    fn depth_limit_is_enforced_before_parsing() {
        let deep = format!("{}{}", "[".repeat(101), "]".repeat(101));
        let body = format!(r#"{{"a":{deep}}}"#);
        let err = parse_body(body.as_bytes(), &with_depth(100)).expect_err("too deep");
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            err.message.as_deref(),
            Some("refused JSON input due to high complexity: exceeded maximum nesting depth")
        );
        // An unterminated flood is refused the same way, without recursion.
        let flood = "{".repeat(1_000_000);
        assert_eq!(
            status(parse_body(flood.as_bytes(), &with_depth(100))),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        let body = format!(r#"{{"a":"{}\"{}"}}"#, "[".repeat(500), "{".repeat(500));
        assert!(parse_body(body.as_bytes(), &with_depth(2)).is_ok());
    }

    #[test]
    fn vault_default_depth_of_500_parses_past_serdes_own_guard() {
        let body = |levels: usize| {
            format!(
                "{}{}",
                "{\"a\":".repeat(levels),
                "1".to_owned() + &"}".repeat(levels)
            )
        };
        let limits = JsonLimits::default();
        assert!(parse_body(body(500).as_bytes(), &limits).is_ok());
        assert_eq!(
            status(parse_body(body(501).as_bytes(), &limits)),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn content_length_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(content_length(&h), None);
        h.insert("content-length", HeaderValue::from_static("42"));
        assert_eq!(content_length(&h), Some(42));
        h.insert("content-length", HeaderValue::from_static("nope"));
        assert_eq!(content_length(&h), None);
    }
}
