//! [`lockana::Response`] and [`lockana::Error`] -> HTTP, in Vault's shapes.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::Full;
use lockana::{Error, Response, ResponseFormat};
use serde_json::{Map, Value, json};

use super::HttpError;

/// The HTTP response type the server sends.
pub(crate) type HttpResponse = http::Response<Full<Bytes>>;

/// The HTTP status for each library error: the one place this is decided.
pub(crate) fn error_status(err: &Error) -> StatusCode {
    match err {
        Error::Sealed | Error::NotInitialized | Error::Standby => StatusCode::SERVICE_UNAVAILABLE,
        Error::AlreadyInitialized
        | Error::InvalidRequest(_)
        | Error::Refused(_)
        | Error::CasMismatch => StatusCode::BAD_REQUEST,
        Error::PermissionDenied | Error::Unauthenticated | Error::BadToken => StatusCode::FORBIDDEN,
        Error::NotFound | Error::Missing(_) | Error::NoRoute(_) | Error::UnsupportedPath => {
            StatusCode::NOT_FOUND
        }
        Error::UnsupportedOperation => StatusCode::METHOD_NOT_ALLOWED,
        // Damage is never a 403 or a 404: the data exists and cannot be trusted.
        Error::Storage(_) | Error::Barrier(_) | Error::Audit(_) | Error::Integrity(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A library error as Vault's `{"errors": [...]}`; `NotFound` has an empty list.
pub(crate) fn error_response(err: &Error) -> HttpError {
    let status = error_status(err);
    if status.is_server_error()
        && !matches!(err, Error::Sealed | Error::NotInitialized | Error::Standby)
    {
        // The message names the failure, never request values (library contract).
        tracing::error!(error = %err, "request failed");
    }
    match err {
        Error::NotFound => HttpError::empty(status),
        // Vault's request pipeline collects these with go-multierror, and its text is
        // what clients and scripts match on; errors an engine answers with are plain.
        Error::PermissionDenied
        | Error::UnsupportedOperation
        | Error::UnsupportedPath
        | Error::Refused(_) => HttpError::new(status, multierror(&err.to_string())),
        _ => HttpError::new(status, err.to_string()),
    }
}

/// go-multierror's text for a single error: `1 error occurred:\n\t* <msg>\n\n`.
pub(crate) fn multierror(msg: &str) -> String {
    format!("1 error occurred:\n\t* {msg}\n\n")
}

/// Renders an [`HttpError`].
pub(crate) fn render_error(err: &HttpError) -> HttpResponse {
    let errors: Vec<&str> = err.message.iter().map(String::as_str).collect();
    json_response(err.status, &json!({ "errors": errors }))
}

/// Renders a successful library response in the format it asks for.
pub(crate) fn render(resp: Response) -> HttpResponse {
    let status = resp
        .status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    if let Some(raw) = resp.raw_body {
        return raw_response(status, raw);
    }
    match resp.format {
        ResponseFormat::Raw => match resp.data {
            Some(data) => json_response(status, &Value::Object(data)),
            None => empty_response(resp.status.map_or(StatusCode::NO_CONTENT, |_| status)),
        },
        ResponseFormat::Envelope | ResponseFormat::EnvelopeWithTopLevelData => {
            if resp.data.is_none()
                && resp.auth.is_none()
                && resp.wrap_info.is_none()
                && resp.warnings.is_empty()
                && resp.status.is_none()
            {
                return empty_response(StatusCode::NO_CONTENT);
            }
            if status == StatusCode::NO_CONTENT {
                return empty_response(status);
            }
            json_response(status, &Value::Object(envelope(resp)))
        }
    }
}

/// Vault's response envelope.
fn envelope(resp: Response) -> Map<String, Value> {
    let top_level = resp.format == ResponseFormat::EnvelopeWithTopLevelData;
    let auth = resp.auth.map(|auth| {
        let token = auth
            .client_token
            .as_ref()
            .map(|t| t.expose().to_owned())
            .unwrap_or_default();
        let mut value = serde_json::to_value(&auth).unwrap_or_else(|_| json!({}));
        if let Value::Object(map) = &mut value {
            map.insert("client_token".into(), Value::String(token));
        }
        value
    });
    let warnings = if resp.warnings.is_empty() {
        Value::Null
    } else {
        json!(resp.warnings)
    };
    let mount_type = if resp.mount_type.is_empty() {
        Value::Null
    } else {
        Value::String(resp.mount_type)
    };
    let mut body = Map::new();
    if top_level && let Some(data) = &resp.data {
        for (k, v) in data {
            body.insert(k.clone(), v.clone());
        }
    }
    body.insert(
        "request_id".into(),
        // A v4 UUID from the thread's CSPRNG: no system call per answer.
        Value::String(
            uuid::Builder::from_random_bytes(rand::random())
                .into_uuid()
                .to_string(),
        ),
    );
    body.insert("lease_id".into(), Value::String(resp.lease_id));
    body.insert("renewable".into(), Value::Bool(resp.renewable));
    body.insert("lease_duration".into(), Value::from(resp.lease_duration));
    body.insert("data".into(), resp.data.map_or(Value::Null, Value::Object));
    let wrap_info = resp.wrap_info.map(|w| {
        json!({
            "token": w.token.as_ref().map(|t| t.expose().to_owned()).unwrap_or_default(),
            "accessor": w.accessor,
            "ttl": w.ttl,
            "creation_time": w.creation_time,
            "creation_path": w.creation_path,
            "wrapped_accessor": w.wrapped_accessor,
        })
    });
    body.insert("wrap_info".into(), wrap_info.unwrap_or(Value::Null));
    body.insert("warnings".into(), warnings);
    body.insert("auth".into(), auth.unwrap_or(Value::Null));
    body.insert("mount_type".into(), mount_type);
    body
}

/// A JSON answer with the headers every answer carries.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> HttpResponse {
    // Serializing a `Value` cannot fail (keys are strings); fall back to `{}` anyway.
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = http::Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A non-JSON answer (a project's env as dotenv), sent as the library made it.
pub(crate) fn raw_response(status: StatusCode, raw: lockana::RawBody) -> HttpResponse {
    let mut resp = http::Response::new(Full::new(Bytes::from(raw.bytes)));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(raw.content_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// An answer with no body; Vault labels it JSON all the same (clients check the header).
pub(crate) fn empty_response(status: StatusCode) -> HttpResponse {
    let mut resp = http::Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use lockana::{Auth, BarrierError, ClientToken, IntegrityError, IntegrityKind, StorageError};

    fn body_json(resp: HttpResponse) -> Value {
        let bytes = futures_body(resp);
        serde_json::from_slice(&bytes).expect("json body")
    }

    fn futures_body(resp: HttpResponse) -> Bytes {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async { resp.into_body().collect().await.expect("body").to_bytes() })
    }

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn error_statuses() {
        let cases: Vec<(Error, u16)> = vec![
            (Error::Sealed, 503),
            (Error::NotInitialized, 503),
            (Error::AlreadyInitialized, 400),
            (Error::PermissionDenied, 403),
            (Error::Unauthenticated, 403),
            (Error::NotFound, 404),
            (Error::NoRoute("x/".into()), 404),
            (Error::UnsupportedOperation, 405),
            (Error::invalid("bad"), 400),
            (Error::CasMismatch, 400),
            (Error::Storage(StorageError::Corrupt), 500),
            (Error::Barrier(BarrierError::Authentication), 500),
            (
                Error::Integrity(IntegrityError::at(
                    "sys/token/id/abc",
                    IntegrityKind::Authentication,
                )),
                500,
            ),
        ];
        for (err, want) in cases {
            assert_eq!(error_status(&err).as_u16(), want, "{err:?}");
        }
    }

    /// A damaged token entry once answered 403 "permission denied": damage must read
    /// as damage, with the key named and no value.
    #[test]
    fn integrity_failure_is_a_500_naming_the_key() {
        let err = Error::Integrity(IntegrityError::at(
            "sys/token/id/abc",
            IntegrityKind::Authentication,
        ));
        let resp = render_error(&error_response(&err));
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = body_json(resp);
        let msg = body["errors"][0].as_str().unwrap_or_default();
        assert!(
            msg.starts_with("storage integrity failure at key \"sys/token/id/abc\""),
            "{msg}"
        );
    }

    #[test]
    fn not_found_has_an_empty_error_list() {
        let resp = render_error(&error_response(&Error::NotFound));
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(body_json(resp), json!({ "errors": [] }));
    }

    #[test]
    fn errors_carry_their_message() {
        let resp = render_error(&error_response(&Error::Unauthenticated));
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            HeaderValue::from_static("application/json")
        );
        assert_eq!(body_json(resp), json!({ "errors": ["permission denied"] }));
    }

    #[test]
    fn acl_denial_and_unsupported_operation_use_vaults_multierror_text() {
        let resp = render_error(&error_response(&Error::PermissionDenied));
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            body_json(resp),
            json!({ "errors": ["1 error occurred:\n\t* permission denied\n\n"] })
        );
        let resp = render_error(&error_response(&Error::UnsupportedOperation));
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            body_json(resp),
            json!({ "errors": ["1 error occurred:\n\t* unsupported operation\n\n"] })
        );
    }

    #[test]
    fn envelope_shape() {
        let mut resp = Response::with_data(map(json!({"k": "v"})));
        resp.mount_type = "kv".into();
        let http = render(resp);
        assert_eq!(http.status(), StatusCode::OK);
        assert_eq!(http.headers()[header::CACHE_CONTROL], "no-store");
        let body = body_json(http);
        assert_eq!(body["data"], json!({"k": "v"}));
        assert_eq!(body["lease_id"], "");
        assert_eq!(body["renewable"], false);
        assert_eq!(body["lease_duration"], 0);
        assert_eq!(body["wrap_info"], Value::Null);
        assert_eq!(body["warnings"], Value::Null);
        assert_eq!(body["auth"], Value::Null);
        assert_eq!(body["mount_type"], "kv");
        let id = body["request_id"].as_str().expect("request_id");
        assert!(uuid::Uuid::parse_str(id).is_ok());
        assert!(body.get("k").is_none());
    }

    #[test]
    fn top_level_data_is_copied() {
        let mut resp = Response::with_data(map(json!({"secret/": {"type": "kv"}})));
        resp.format = ResponseFormat::EnvelopeWithTopLevelData;
        let body = body_json(render(resp));
        assert_eq!(body["secret/"], json!({"type": "kv"}));
        assert_eq!(body["data"]["secret/"], json!({"type": "kv"}));
    }

    #[test]
    fn nothing_to_say_is_204() {
        let http = render(Response::empty());
        assert_eq!(http.status(), StatusCode::NO_CONTENT);
        // Vault labels even an empty answer JSON.
        assert_eq!(http.headers()[header::CONTENT_TYPE], "application/json");
        assert!(futures_body(http).is_empty());
    }

    #[test]
    fn warnings_alone_give_an_envelope() {
        let mut resp = Response::empty();
        resp.warnings.push("careful".into());
        let http = render(resp);
        assert_eq!(http.status(), StatusCode::OK);
        assert_eq!(body_json(http)["warnings"], json!(["careful"]));
    }

    #[test]
    fn custom_status_with_body() {
        let mut resp = Response::with_data(map(json!({"metadata": {}})));
        resp.status = Some(404);
        let http = render(resp);
        assert_eq!(http.status(), StatusCode::NOT_FOUND);
        assert_eq!(body_json(http)["data"], json!({"metadata": {}}));
    }

    #[test]
    fn raw_format_is_data_alone() {
        let mut resp = Response::raw(map(json!({"sealed": true})));
        resp.status = Some(503);
        let http = render(resp);
        assert_eq!(http.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body_json(http), json!({"sealed": true}));
    }

    #[test]
    fn raw_body_is_sent_as_is() {
        let mut resp = Response::empty();
        resp.raw_body = Some(lockana::RawBody {
            content_type: "text/plain; charset=utf-8",
            bytes: b"A='1'\n".to_vec(),
        });
        let http = render(resp);
        assert_eq!(http.status(), StatusCode::OK);
        assert_eq!(
            http.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        assert_eq!(&futures_body(http)[..], b"A='1'\n");
    }

    #[test]
    fn auth_includes_the_client_token() {
        let mut resp = Response::empty();
        resp.auth = Some(Auth {
            client_token: Some(ClientToken::new("hvs.t")),
            accessor: "acc".into(),
            policies: vec!["root".into()],
            ..Default::default()
        });
        let body = body_json(render(resp));
        assert_eq!(body["auth"]["client_token"], "hvs.t");
        assert_eq!(body["auth"]["accessor"], "acc");
        assert_eq!(body["auth"]["policies"], json!(["root"]));
        assert_eq!(body["data"], Value::Null);
    }
}
