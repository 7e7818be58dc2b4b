//! An HA standby's requests: relayed to the active node (the default), or answered
//! with Vault's 307 redirect to it (`ha_redirect = true`).
//!
//! The standby keeps no state it could answer from, so everything but the node's
//! own status and unseal paths goes to the active node, which checks the token,
//! audits and serves it. The client sees the active node's answer unchanged.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{HttpError, HttpResponse};

/// Marks a request one node forwarded to another, so it is never forwarded twice
/// (a node that lost the lock meanwhile answers 503 instead of bouncing it on).
pub(crate) const FORWARDED_HEADER: &str = "x-lockana-forwarded";

/// How a listener treats requests while its node is a standby.
#[derive(Debug, Clone, Default)]
pub struct HaForwarding {
    /// Answer 307 to the active node rather than relaying (Vault's older behaviour).
    pub redirect: bool,
    client: std::sync::Arc<OnceLock<Client<HttpConnector, Full<Bytes>>>>,
}

impl HaForwarding {
    /// Forwarding (or redirecting, with `redirect`) to the active node.
    pub fn new(redirect: bool) -> Self {
        HaForwarding {
            redirect,
            ..Default::default()
        }
    }

    fn client(&self) -> &Client<HttpConnector, Full<Bytes>> {
        self.client.get_or_init(|| {
            let mut connector = HttpConnector::new();
            connector.set_connect_timeout(Some(Duration::from_secs(2)));
            connector.set_nodelay(true);
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector)
        })
    }
}

/// Paths a standby answers itself (its own state), as Vault's standby does.
pub(crate) fn served_locally(path: &str) -> bool {
    matches!(
        path.trim_end_matches('/'),
        "sys/health" | "sys/leader" | "sys/seal-status" | "sys/unseal" | "sys/init"
    )
}

/// Vault's answer when no active node is known.
pub(crate) fn no_leader() -> HttpError {
    HttpError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "local node not active but active cluster node not found",
    )
}

/// Headers that belong to one connection, not to the request.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !hop_by_hop(name) {
            to.append(name.clone(), value.clone());
        }
    }
}

/// The 307 answer pointing at the active node.
pub(crate) fn redirect(leader: &str, path_and_query: &str) -> Result<HttpResponse, HttpError> {
    let location = format!("{leader}{path_and_query}");
    let value = HeaderValue::from_str(&location)
        .map_err(|_| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "bad leader address"))?;
    let mut resp = HttpResponse::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    resp.headers_mut().insert(header::LOCATION, value);
    Ok(resp)
}

/// Sends the request to the active node at `leader` and relays its answer.
pub(crate) async fn relay(
    ha: &HaForwarding,
    leader: &str,
    parts: &http::request::Parts,
    body: Bytes,
    remote: Option<std::net::SocketAddr>,
) -> Result<HttpResponse, HttpError> {
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if ha.redirect || !leader.starts_with("http://") {
        // Forwarding speaks plain HTTP to the active node; an https `api_addr` gets
        // Vault's redirect instead (see docs/operations.md).
        return redirect(leader, &path_and_query);
    }
    let uri: http::Uri = format!("{leader}{path_and_query}")
        .parse()
        .map_err(|_| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "bad leader address"))?;
    let mut req = http::Request::new(Full::new(body));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    copy_headers(&parts.headers, req.headers_mut());
    req.headers_mut()
        .insert(FORWARDED_HEADER, HeaderValue::from_static("1"));
    if let Some(addr) = remote
        && let Ok(v) = HeaderValue::from_str(&addr.ip().to_string())
    {
        req.headers_mut().append("x-forwarded-for", v);
    }
    let resp = ha.client().request(req).await.map_err(|e| {
        tracing::warn!(leader, error = %e, "forwarding to the active node failed");
        HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "local node not active and the active node could not be reached",
        )
    })?;
    let (rparts, rbody) = resp.into_parts();
    let bytes = rbody
        .collect()
        .await
        .map_err(|_| {
            HttpError::new(
                StatusCode::BAD_GATEWAY,
                "the active node's answer was cut off; the request may or may not have been served",
            )
        })?
        .to_bytes();
    let mut out = HttpResponse::new(Full::new(bytes));
    *out.status_mut() = rparts.status;
    copy_headers(&rparts.headers, out.headers_mut());
    Ok(out)
}
