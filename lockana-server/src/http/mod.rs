//! The HTTP side of the vault: one dispatch function from an HTTP request to an HTTP
//! answer, with the limits applied before any parsing.

mod forward;
mod json;
mod metrics;
mod rate;
mod request;
mod response;

pub use forward::HaForwarding;
pub use json::{
    DEFAULT_MAX_JSON_ARRAY_ELEMENT_COUNT, DEFAULT_MAX_JSON_DEPTH,
    DEFAULT_MAX_JSON_OBJECT_ENTRY_COUNT, DEFAULT_MAX_JSON_STRING_VALUE_LENGTH,
    DEFAULT_MAX_REQUEST_JSON_MEMORY, DEFAULT_MAX_REQUEST_JSON_STRINGS, JsonLimits,
};
pub use metrics::Telemetry;
pub use rate::{DEFAULT_RATE_BURST, DEFAULT_RATE_PER_SECOND, RateLimit};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use lockana::{Connection, Operation, Vault};

use crate::conn::InFlight;

pub(crate) use response::HttpResponse;

/// Vault's default `max_request_size`: 32 MiB.
pub const DEFAULT_MAX_REQUEST_SIZE: usize = 32 * 1024 * 1024;
/// Largest snapshot a restore accepts (held in memory while it is checked).
pub const MAX_SNAPSHOT_SIZE: usize = 1 << 30;
/// Vault's default `default_max_request_duration`: 90 s.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(90);
/// Vault's default `http_read_header_timeout`: 10 s.
pub const DEFAULT_READ_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Vault's default `http_read_timeout`: 30 s.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Vault's default `http_idle_timeout`: 5 min.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Lockana's default `max_connections` (lowered at start to what the open-file limit
/// allows).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Lockana's default `max_connections_per_client`.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 256;

/// Limits applied to every request before it reaches the vault.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted body in bytes; larger bodies get 413 before being parsed.
    pub max_request_size: usize,
    /// How complex a JSON body may be; more complex bodies get 400 as soon as the
    /// bytes read so far show it.
    pub json: JsonLimits,
    /// Time allowed for reading the body and answering; after it the client gets 503.
    pub request_timeout: Duration,
    /// `http_read_header_timeout`: time from a connection's opening (or, between
    /// requests, the first byte of the next one) to the end of the request headers;
    /// zero: none.
    pub read_header_timeout: Duration,
    /// `http_read_timeout`: time to read a whole request, body included, from its
    /// first byte; zero: none.
    pub read_timeout: Duration,
    /// `http_idle_timeout`: how long a kept-alive connection may wait for its next
    /// request; zero: `read_timeout`, then `read_header_timeout`, as in Vault.
    pub idle_timeout: Duration,
    /// `http_write_timeout`: time from the end of a request's headers to the end of
    /// writing its answer; past it the connection is closed (a client that stops
    /// reading is let go). Zero, Vault's default: none.
    pub write_timeout: Duration,
    /// Open connections allowed at once; past it new ones are closed at accept.
    pub max_connections: usize,
    /// Open connections allowed at once from one client address (0: no cap);
    /// loopback is exempt when `rate_limit.exempt_loopback` is.
    pub max_connections_per_client: usize,
    /// Requests per second per client address; over it the client gets 429.
    pub rate_limit: RateLimit,
    /// The per-address buckets, made from `rate_limit` at the first request (leave it
    /// at its default).
    pub buckets: RateBuckets,
    /// What `sys/metrics` serves on this listener, and to whom. (Not a limit, but
    /// per listener like the limits, and needed where they are.)
    pub telemetry: Telemetry,
    /// What an HA standby does with requests: relay them to the active node, or
    /// redirect the client there. (Per listener too.)
    pub ha: HaForwarding,
}

/// Where a listener keeps its rate-limit state; opaque, shared by clones.
#[derive(Debug, Clone, Default)]
pub struct RateBuckets(std::sync::Arc<std::sync::OnceLock<rate::RateLimiter>>);

impl Limits {
    /// How long a kept-alive connection may idle, with Vault's fallbacks.
    pub(crate) fn effective_idle_timeout(&self) -> Duration {
        [
            self.idle_timeout,
            self.read_timeout,
            self.read_header_timeout,
        ]
        .into_iter()
        .find(|d| !d.is_zero())
        .unwrap_or(Duration::ZERO)
    }

    fn limiter(&self) -> &rate::RateLimiter {
        self.buckets
            .0
            .get_or_init(|| rate::RateLimiter::new(self.rate_limit))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_size: DEFAULT_MAX_REQUEST_SIZE,
            json: JsonLimits::default(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            read_header_timeout: DEFAULT_READ_HEADER_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            write_timeout: Duration::ZERO,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            rate_limit: RateLimit::default(),
            buckets: RateBuckets::default(),
            telemetry: Telemetry::default(),
            ha: HaForwarding::default(),
        }
    }
}

/// A failure answered before (or instead of) the vault: status plus an optional
/// message for Vault's `{"errors": [...]}` (no message: an empty list).
#[derive(Debug, Clone)]
pub(crate) struct HttpError {
    pub(crate) status: StatusCode,
    pub(crate) message: Option<String>,
}

impl HttpError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        HttpError {
            status,
            message: Some(message.into()),
        }
    }

    pub(crate) fn empty(status: StatusCode) -> Self {
        HttpError {
            status,
            message: None,
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        HttpError::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn invalid_path() -> Self {
        HttpError::bad_request("invalid path")
    }
}

/// What the HTTP layer needs from the vault; a trait so unit tests can use a fake.
pub(crate) trait Handler: Clone + Send + Sync + 'static {
    /// Answers one logical request (may block: storage and audit writes fsync).
    fn handle(&self, req: lockana::Request) -> lockana::Result<lockana::Response>;

    /// Whether `handle` would refuse the request whatever its body (no valid token
    /// where one is needed, or sealed): then the body is not read.
    fn refuses_whatever_the_body(&self, req: &lockana::Request) -> bool;

    /// The vault's metrics now, if it keeps any.
    fn metrics(&self) -> Option<lockana::MetricsSnapshot> {
        None
    }

    /// Whether this node serves requests or (an HA standby) sends them on.
    fn routing(&self) -> lockana::Routing {
        lockana::Routing::Local
    }

    /// Whether `handle` may write to storage (and so fsync) for this request beyond
    /// what every request may: then it runs on the blocking pool.
    fn may_write(&self, req: &lockana::Request) -> bool {
        !matches!(req.operation, Operation::Read | Operation::List)
    }
}

impl Handler for Vault {
    fn handle(&self, req: lockana::Request) -> lockana::Result<lockana::Response> {
        Vault::handle(self, req)
    }

    fn may_write(&self, req: &lockana::Request) -> bool {
        Vault::may_write(self, req)
    }

    fn refuses_whatever_the_body(&self, req: &lockana::Request) -> bool {
        Vault::refuses_whatever_the_body(self, req)
    }

    fn metrics(&self) -> Option<lockana::MetricsSnapshot> {
        Some(Vault::metrics(self))
    }

    fn routing(&self) -> lockana::Routing {
        Vault::routing(self)
    }
}

/// Set by the connection: when the request's first byte arrived (so
/// `http_read_timeout` counts the headers too), and its in-flight guard, which a drain
/// of the body holds too. Absent, the body's clock starts when the request reaches
/// [`dispatch`].
#[derive(Clone)]
pub(crate) struct RequestStart {
    pub(crate) at: Instant,
    pub(crate) in_flight: Option<Arc<InFlight>>,
}

/// Answers one HTTP request the way a listener does (limits, translation, the vault,
/// Vault's error shapes), without a socket: for embedding tests and the fuzz targets.
pub async fn respond<B>(
    vault: Vault,
    limits: &Limits,
    req: http::Request<B>,
) -> http::Response<Full<Bytes>>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    dispatch(vault, limits, None, req).await
}

/// Answers one HTTP request; never fails and never panics on input.
pub(crate) async fn dispatch<H, B>(
    handler: H,
    limits: &Limits,
    remote_addr: Option<SocketAddr>,
    req: http::Request<B>,
) -> HttpResponse
where
    H: Handler,
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let head = req.method() == Method::HEAD;
    let result = tokio::time::timeout(
        limits.request_timeout,
        answer(handler, limits, remote_addr, req),
    )
    .await
    .unwrap_or_else(|_| {
        Err(HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "request timed out",
        ))
    });
    let mut resp = match result {
        Ok(resp) => resp,
        Err(err) => response::render_error(&err),
    };
    if head {
        *resp.body_mut() = Full::new(Bytes::new());
    }
    resp
}

/// The paths Vault serves with HTTP handlers of their own rather than through its
/// logical router (they answer an OPTIONS with 405, not the router's 400).
const VAULT_HTTP_HANDLERS: &[&str] = &[
    "sys/health",
    "sys/init",
    "sys/leader",
    "sys/unseal",
    "sys/seal-status",
    "sys/seal",
    "sys/step-down",
    "sys/metrics",
];

async fn answer<H, B>(
    handler: H,
    limits: &Limits,
    remote_addr: Option<SocketAddr>,
    req: http::Request<B>,
) -> Result<HttpResponse, HttpError>
where
    H: Handler,
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    if let Some(addr) = remote_addr
        && !limits.limiter().allow(addr.ip(), std::time::Instant::now())
    {
        // Vault's answer to a rate-limit quota, before anything is read or parsed.
        return Err(HttpError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate limit quota exceeded",
        ));
    }
    let (parts, body) = req.into_parts();
    let start = parts.extensions.get::<RequestStart>().cloned();
    let started = start.as_ref().map_or_else(Instant::now, |s| s.at);
    // Whatever answer comes first, a body it did not read is drained, not dropped.
    let mut body = RequestBody {
        body: Some(body),
        limit: limits.max_request_size,
        deadline: (!limits.read_timeout.is_zero()).then(|| started + limits.read_timeout),
        timeout: limits.read_timeout,
        in_flight: start.and_then(|s| s.in_flight),
    };
    let Some(mut path) = request::logical_path(parts.uri.path())? else {
        return Err(HttpError::empty(StatusCode::NOT_FOUND));
    };
    if path.is_empty() {
        return Err(HttpError::empty(StatusCode::NOT_FOUND));
    }
    if parts.method == Method::OPTIONS {
        // Vault's own HTTP handlers for these paths serve their methods only; every
        // other path maps OPTIONS to no operation, which its core refuses as internal.
        if VAULT_HTTP_HANDLERS.contains(&path.as_str()) {
            return Err(HttpError::empty(StatusCode::METHOD_NOT_ALLOWED));
        }
        return Err(HttpError::bad_request(
            "cannot handle internal-only request operation",
        ));
    }
    let own_answer = forward::served_locally(&path)
        || (path == "sys/metrics" && limits.telemetry.unauthenticated_metrics_access);
    if !own_answer {
        match handler.routing() {
            lockana::Routing::Local => {}
            lockana::Routing::NoLeader => return Err(forward::no_leader()),
            lockana::Routing::Forward(_)
                if parts.headers.contains_key(forward::FORWARDED_HEADER) =>
            {
                // Forwarded to this node as the active one, which it no longer is.
                return Err(forward::no_leader());
            }
            lockana::Routing::Forward(leader) => {
                let raw = Vault::takes_raw_body(&path);
                let limit = if raw {
                    MAX_SNAPSHOT_SIZE.max(limits.max_request_size)
                } else {
                    limits.max_request_size
                };
                body.limit = limit;
                if limits.ha.redirect {
                    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                    return forward::redirect(&leader, pq);
                }
                let bytes = read_raw(&mut body).await?;
                return forward::relay(&limits.ha, &leader, &parts, bytes.into(), remote_addr)
                    .await;
            }
        }
    }
    let help = request::wants_help(&parts.method, parts.uri.query());
    let query = if request::uses_query(&parts.method) && !help {
        request::parse_query(parts.uri.query())?
    } else {
        request::Query::default()
    };
    let operation = if help {
        Operation::Read
    } else {
        request::operation_for(&parts.method, query.list)
            .ok_or_else(|| HttpError::empty(StatusCode::METHOD_NOT_ALLOWED))?
    };
    if operation == Operation::List && !path.ends_with('/') {
        // Vault lists a directory: `LIST secret/metadata` means `secret/metadata/`.
        path.push('/');
    }

    if operation == Operation::Patch
        && parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_none_or(|v| v.as_bytes().iter().all(u8::is_ascii_whitespace))
    {
        // Go's mime.ParseMediaType on an empty Content-Type, as Vault reports it.
        return Err(HttpError::bad_request("mime: no media type"));
    }
    if operation == Operation::Patch && !request::is_merge_patch(&parts.headers) {
        // Vault's text, naming the type sent (a header, not a body value; bounded).
        let provided: String = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .chars()
                    .take(128)
                    .collect()
            })
            .unwrap_or_default();
        return Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "PATCH requires Content-Type of application/merge-patch+json, provided {provided}"
            ),
        ));
    }
    let user_agent = parts
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut logical = lockana::Request::new(operation, path).with_connection(Connection {
        remote_addr,
        user_agent,
    });
    logical.help = help;
    // Vault's backends serve no HEAD (header) operation; only the health check answers
    // it. Elsewhere the vault checks the token and the route first (403, 404, 405).
    logical.head = parts.method == Method::HEAD && logical.path != "sys/health";
    logical.token = request::token(&parts.headers);
    logical.wrap_ttl = request::wrap_ttl(&parts.headers)?;
    logical.mfa = request::mfa_values(&parts.headers);
    // A project's one-time code; non-ASCII bytes are kept (full-width digits are
    // normalized by the vault, anything else refused there).
    logical.totp_code = parts
        .headers
        .get("x-lockana-totp")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());

    // A snapshot to restore is bytes, not JSON, and as large as the vault: Vault
    // exempts it from `max_request_size` too.
    let raw = request::uses_body(&parts.method) && !help && Vault::takes_raw_body(&logical.path);
    let limit = if raw {
        MAX_SNAPSHOT_SIZE.max(limits.max_request_size)
    } else {
        limits.max_request_size
    };
    if request::uses_body(&parts.method)
        && !help
        && request::content_length(&parts.headers).is_some_and(|len| len > limit as u64)
    {
        return Err(request::too_large(limit));
    }
    body.limit = limit;
    logical.data = if !request::uses_body(&parts.method) || help {
        query.data
    } else if handler.refuses_whatever_the_body(&logical) {
        // No token that could serve this path: answer (the vault's own 403, audited)
        // without reading, let alone parsing, the body. The body is discarded in the
        // background so a client that sends it whole before reading still gets the
        // answer rather than a reset (`RequestBody`'s drop).
        serde_json::Map::new()
    } else if raw {
        logical.raw_body = Some(read_raw(&mut body).await?);
        serde_json::Map::new()
    } else {
        read_json(&mut body, limits.json).await?
    };

    if logical.path == "sys/metrics"
        && limits.telemetry.unauthenticated_metrics_access
        && operation != Operation::Read
    {
        // Vault's unauthenticated metrics handler serves GET and nothing else.
        return Err(HttpError::empty(StatusCode::METHOD_NOT_ALLOWED));
    }
    if logical.path == "sys/metrics" && operation == Operation::Read && !help {
        let accept = parts
            .headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok());
        return metrics::answer(&handler, &limits.telemetry, logical, accept);
    }
    // A code check stores the used step (fsync) even on a read.
    let result = if handler.may_write(&logical) || logical.totp_code.is_some() {
        tokio::task::spawn_blocking(move || handler.handle(logical))
            .await
            .map_err(|_| {
                tracing::error!("request handler panicked");
                HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            })?
    } else {
        handler.handle(logical)
    };
    match result {
        Ok(resp) => Ok(response::render(resp)),
        Err(err) => Err(response::error_response(&err)),
    }
}

/// Reads a JSON body chunk by chunk, checking size and complexity as the bytes
/// arrive, so a hostile body is refused after the first chunk that shows it rather
/// than after buffering and parsing all of it.
async fn read_json<B>(
    body: &mut RequestBody<B>,
    json_limits: json::JsonLimits,
) -> Result<serde_json::Map<String, serde_json::Value>, HttpError>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let mut scanner = json::Scanner::new(json_limits);
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = body.next_chunk().await? {
        if buf.len() + chunk.len() > body.limit {
            return Err(request::too_large(body.limit));
        }
        if let Err(reason) = scanner.feed(&chunk) {
            return Err(request::too_complex(reason));
        }
        buf.extend_from_slice(&chunk);
    }
    request::parse_scanned(&buf)
}

/// A request's body, read through [`RequestBody::next_chunk`]. Dropped before its end
/// (any answer that did not need it: a refusal, an error, a redirect), what is left is
/// read and dropped in the background (up to `limit` bytes, within `timeout`) while
/// the connection counts as busy. hyper would otherwise close a connection whose body
/// had not all arrived, after an answer that did not say so, and the client's next
/// request on it would get no answer; a client that writes its whole body before
/// reading gets the answer rather than a reset.
struct RequestBody<B>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
{
    /// `None` once abandoned: the connection then closes after the answer.
    body: Option<B>,
    limit: usize,
    /// When the whole request must have arrived (`http_read_timeout` from its first
    /// byte); `None`: no deadline.
    deadline: Option<Instant>,
    /// How long a drain may take (from when it starts).
    timeout: Duration,
    in_flight: Option<Arc<InFlight>>,
}

impl<B> RequestBody<B>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    /// The next data chunk (`None` at the end), within `http_read_timeout`.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, HttpError> {
        let deadline = self.deadline;
        let Some(body) = self.body.as_mut() else {
            return Ok(None);
        };
        loop {
            let next = body.frame();
            let frame = match deadline {
                Some(at) => match tokio::time::timeout_at(at, next).await {
                    Ok(frame) => frame,
                    Err(_) => {
                        // Vault's `http_read_timeout`: the connection closes (the
                        // body is dropped unread), after this answer.
                        self.body = None;
                        return Err(HttpError::new(
                            StatusCode::REQUEST_TIMEOUT,
                            "timed out reading the request body",
                        ));
                    }
                },
                None => next.await,
            };
            let Some(frame) = frame else {
                return Ok(None);
            };
            let frame =
                frame.map_err(|_| HttpError::bad_request("failed to read the request body"))?;
            if let Ok(chunk) = frame.into_data() {
                return Ok(Some(chunk));
            }
            // Trailers: read on.
        }
    }
}

impl<B> Drop for RequestBody<B>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
{
    fn drop(&mut self) {
        let Some(body) = self.body.take() else {
            return;
        };
        if body.is_end_stream() {
            return;
        }
        // Outside a runtime (no connection to keep) the body is simply dropped.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(discard(
                body,
                self.limit,
                self.timeout,
                self.in_flight.take(),
            ));
        }
    }
}

/// Reads a body as bytes (a snapshot to restore), up to its limit.
async fn read_raw<B>(body: &mut RequestBody<B>) -> Result<Vec<u8>, HttpError>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = body.next_chunk().await? {
        if buf.len() + chunk.len() > body.limit {
            return Err(request::too_large(body.limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// Reads and drops what is left of a body (up to `limit` bytes, within `timeout`),
/// holding the connection busy meanwhile.
async fn discard<B>(mut body: B, limit: usize, timeout: Duration, in_flight: Option<Arc<InFlight>>)
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
{
    let drain = async move {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(chunk) = frame.into_data() {
                seen += chunk.len();
                if seen > limit {
                    break;
                }
            }
        }
    };
    let timeout = if timeout.is_zero() {
        DEFAULT_READ_TIMEOUT
    } else {
        timeout
    };
    let _ = tokio::time::timeout(timeout, drain).await;
    drop(in_flight);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use lockana::{Error, Request, Response};
    use serde_json::{Map, Value, json};

    /// What the fake saw: operation, path, data, token.
    type Seen = (Operation, String, Map<String, Value>, Option<String>);

    /// Records what it was asked and answers with the request echoed as data.
    #[derive(Clone, Default)]
    struct Echo {
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl Handler for Echo {
        fn handle(&self, req: Request) -> lockana::Result<Response> {
            let token = req.token.as_ref().map(|t| t.expose().to_owned());
            if req.path == "forbidden" {
                return Err(Error::PermissionDenied);
            }
            if req.path == "missing" {
                return Err(Error::NotFound);
            }
            self.seen.lock().expect("lock").push((
                req.operation,
                req.path.clone(),
                req.data.clone(),
                token,
            ));
            let mut data = Map::new();
            data.insert("path".into(), Value::String(req.path));
            data.insert("op".into(), Value::String(req.operation.as_str().into()));
            Ok(Response::with_data(data))
        }

        fn refuses_whatever_the_body(&self, req: &Request) -> bool {
            req.path.starts_with("needs-token") && req.token.is_none()
        }
    }

    fn run(echo: &Echo, limits: &Limits, req: http::Request<Full<Bytes>>) -> (StatusCode, Value) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let resp = dispatch(echo.clone(), limits, None, req).await;
            let status = resp.status();
            let bytes = resp.into_body().collect().await.expect("body").to_bytes();
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).expect("json")
            };
            (status, body)
        })
    }

    fn req(method: &str, uri: &str, body: &str) -> http::Request<Full<Bytes>> {
        http::Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("request")
    }

    #[test]
    fn get_with_list_true_lists_with_trailing_slash() {
        let echo = Echo::default();
        let (status, body) = run(
            &echo,
            &Limits::default(),
            req("GET", "/v1/secret/metadata?list=true", ""),
        );
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["data"]["op"], "list");
        assert_eq!(body["data"]["path"], "secret/metadata/");
        assert!(echo.seen.lock().expect("lock")[0].2.is_empty());
    }

    #[test]
    fn get_query_goes_to_data_and_token_is_passed() {
        let echo = Echo::default();
        let r = http::Request::builder()
            .method("GET")
            .uri("/v1/secret/data/x?version=3")
            .header("X-Vault-Token", "hvs.tok")
            .header("X-Vault-Request", "true")
            .header("X-Vault-Namespace", "ns1/")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let (status, _) = run(&echo, &Limits::default(), r);
        assert_eq!(status, StatusCode::OK);
        let seen = echo.seen.lock().expect("lock");
        let (op, path, data, token) = &seen[0];
        assert_eq!(*op, Operation::Read);
        assert_eq!(path, "secret/data/x");
        assert_eq!(data["version"], "3");
        assert_eq!(token.as_deref(), Some("hvs.tok"));
    }

    #[test]
    fn post_body_becomes_data_and_query_is_ignored() {
        let echo = Echo::default();
        let (status, body) = run(
            &echo,
            &Limits::default(),
            req("POST", "/v1/secret/data/x?foo=bar", r#"{"data":{"a":"b"}}"#),
        );
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["data"]["op"], "update");
        let seen = echo.seen.lock().expect("lock");
        assert_eq!(
            Value::Object(seen[0].2.clone()),
            json!({"data": {"a": "b"}})
        );
    }

    #[test]
    fn outside_v1_is_404_with_empty_errors() {
        for uri in ["/", "/ui", "/v1/", "/v2/x"] {
            let (status, body) = run(&Echo::default(), &Limits::default(), req("GET", uri, ""));
            assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
            assert_eq!(body, json!({"errors": []}), "{uri}");
        }
    }

    #[test]
    fn traversal_is_400_and_never_reaches_the_vault() {
        let echo = Echo::default();
        let (status, body) = run(
            &echo,
            &Limits::default(),
            req("GET", "/v1/secret/%2e%2e/sys/seal", ""),
        );
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body, json!({"errors": ["invalid path"]}));
        assert!(echo.seen.lock().expect("lock").is_empty());
    }

    #[test]
    fn oversize_body_is_413() {
        let limits = Limits {
            max_request_size: 16,
            ..Limits::default()
        };
        let (status, body) = run(
            &Echo::default(),
            &limits,
            req("PUT", "/v1/secret/data/x", r#"{"data":{"k":"0123456789"}}"#),
        );
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body["errors"][0].as_str().is_some());
    }

    /// A body that arrives in chunks without a size hint, like a chunked upload.
    struct Chunks(usize);

    impl hyper::body::Body for Chunks {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
            if self.0 == 0 {
                return std::task::Poll::Ready(None);
            }
            self.0 -= 1;
            std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from_static(
                b"{\"aaaa\":1}",
            )))))
        }
    }

    #[test]
    fn oversize_body_without_content_length_is_413() {
        let limits = Limits {
            max_request_size: 16,
            ..Limits::default()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let status = rt.block_on(async {
            let r = http::Request::builder()
                .method("PUT")
                .uri("/v1/secret/data/x")
                .body(Chunks(8))
                .expect("request");
            dispatch(Echo::default(), &limits, None, r).await.status()
        });
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn deep_json_is_400() {
        let body = format!("{{\"a\":{}{}}}", "[".repeat(600), "]".repeat(600));
        let (status, body) = run(
            &Echo::default(),
            &Limits::default(),
            req("POST", "/v1/secret/data/x", &body),
        );
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["errors"][0]
                .as_str()
                .expect("message")
                .contains("nesting depth")
        );
    }

    #[test]
    fn non_object_body_is_400() {
        let (status, body) = run(
            &Echo::default(),
            &Limits::default(),
            req("PUT", "/v1/secret/data/x", "[1,2]"),
        );
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body["errors"][0],
            "failed to decode JSON input: json: cannot unmarshal array into Go value of type map[string]interface {}"
        );
        let (_, body) = run(
            &Echo::default(),
            &Limits::default(),
            req("PUT", "/v1/secret/data/x", "{\"data\": {"),
        );
        assert_eq!(
            body["errors"][0],
            "failed to decode JSON input: unexpected EOF"
        );
    }

    #[test]
    fn unknown_method_is_405() {
        let (status, _) = run(
            &Echo::default(),
            &Limits::default(),
            req("FOO", "/v1/secret/data/x", ""),
        );
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn options_is_400_internal_only_as_vault_answers() {
        let echo = Echo::default();
        let (status, body) = run(
            &echo,
            &Limits::default(),
            req("OPTIONS", "/v1/secret/data/x", ""),
        );
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            body,
            json!({"errors": ["cannot handle internal-only request operation"]})
        );
        assert!(echo.seen.lock().expect("lock").is_empty());
    }

    #[test]
    fn patch_without_content_type_is_go_mime_error() {
        let (status, body) = run(
            &Echo::default(),
            &Limits::default(),
            req("PATCH", "/v1/secret/data/x", "{}"),
        );
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body, json!({"errors": ["mime: no media type"]}));
    }

    #[test]
    fn library_errors_are_mapped() {
        let (status, body) = run(
            &Echo::default(),
            &Limits::default(),
            req("GET", "/v1/forbidden", ""),
        );
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            body,
            json!({"errors": ["1 error occurred:\n\t* permission denied\n\n"]})
        );
        let (status, body) = run(
            &Echo::default(),
            &Limits::default(),
            req("DELETE", "/v1/missing", ""),
        );
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, json!({"errors": []}));
    }

    #[test]
    fn head_has_no_body() {
        let (status, body) = run(
            &Echo::default(),
            &Limits::default(),
            req("HEAD", "/v1/sys/health", ""),
        );
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, Value::Null);
    }

    #[test]
    fn head_goes_to_the_vault_and_answers_no_body() {
        // The vault decides 403/404/405 (after the token and route checks); the
        // transport only strips the body.
        let echo = Echo::default();
        let (_, body) = run(
            &echo,
            &Limits::default(),
            req("HEAD", "/v1/secret/data/x", ""),
        );
        assert_eq!(body, Value::Null);
        let seen = echo.seen.lock().expect("lock");
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, Operation::Read);
    }

    #[test]
    fn slow_requests_time_out_with_503() {
        #[derive(Clone)]
        struct Slow;
        impl Handler for Slow {
            fn handle(&self, _: Request) -> lockana::Result<Response> {
                std::thread::sleep(Duration::from_millis(300));
                Ok(Response::empty())
            }

            fn refuses_whatever_the_body(&self, _: &Request) -> bool {
                false
            }
        }
        let limits = Limits {
            request_timeout: Duration::from_millis(50),
            ..Limits::default()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let resp = rt.block_on(dispatch(
            Slow,
            &limits,
            None,
            req("PUT", "/v1/secret/data/x", "{}"),
        ));
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    /// An HA standby: answers its own status paths, sends everything else on.
    #[derive(Clone)]
    struct Standby {
        routing: lockana::Routing,
    }

    impl Handler for Standby {
        fn handle(&self, req: Request) -> lockana::Result<Response> {
            assert!(
                forward::served_locally(&req.path),
                "a standby served {} itself",
                req.path
            );
            let mut data = Map::new();
            data.insert("standby".into(), Value::Bool(true));
            Ok(Response::raw(data))
        }

        fn refuses_whatever_the_body(&self, _req: &Request) -> bool {
            false
        }

        fn routing(&self) -> lockana::Routing {
            self.routing.clone()
        }
    }

    /// A dev vault behind a real listener, as the active node; root token "root".
    async fn active_node() -> String {
        let (vault, _creds) = Vault::dev(Some("root".into())).expect("dev vault");
        let options = crate::ServerOptions {
            address: "127.0.0.1:0".parse().expect("addr"),
            ..Default::default()
        };
        let server = crate::Server::bind(vault, options).await.expect("bind");
        let addr = format!("http://{}", server.local_addr());
        tokio::spawn(server.run(std::future::pending()));
        addr
    }

    async fn send(
        h: &Standby,
        limits: &Limits,
        r: http::Request<Full<Bytes>>,
    ) -> (StatusCode, http::HeaderMap, Value) {
        let resp = dispatch(h.clone(), limits, None, r).await;
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (parts.status, parts.headers, v)
    }

    #[test]
    fn standby_relays_to_the_active_node_or_redirects_and_answers_its_status_itself() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let leader = active_node().await;
            let h = Standby {
                routing: lockana::Routing::Forward(leader.clone()),
            };
            let limits = Limits::default();
            // A write and a read, with body, token and query, served by the active node.
            let w = http::Request::builder()
                .method("POST")
                .uri("/v1/secret/data/fw")
                .header("X-Vault-Token", "root")
                .body(Full::new(Bytes::from(r#"{"data":{"a":"b"}}"#)))
                .expect("request");
            let (status, _, body) = send(&h, &limits, w).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let r = http::Request::builder()
                .uri("/v1/secret/data/fw?version=1")
                .header("X-Vault-Token", "root")
                .body(Full::new(Bytes::new()))
                .expect("request");
            let (status, headers, body) = send(&h, &limits, r).await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(body["data"]["data"], json!({"a": "b"}));
            assert_eq!(headers[http::header::CONTENT_TYPE], "application/json");
            // The active node's refusal, relayed as it is.
            let (status, _, _) = send(&h, &limits, req("GET", "/v1/secret/data/fw", "")).await;
            assert_eq!(status, StatusCode::FORBIDDEN);
            // The node's own status is its own.
            let (status, _, body) = send(&h, &limits, req("GET", "/v1/sys/leader", "")).await;
            assert_eq!(
                (status, &body["standby"]),
                (StatusCode::OK, &Value::Bool(true))
            );
            // A request another node already forwarded is not sent on again.
            let twice = http::Request::builder()
                .uri("/v1/secret/data/fw")
                .header(forward::FORWARDED_HEADER, "1")
                .body(Full::new(Bytes::new()))
                .expect("request");
            assert_eq!(
                send(&h, &limits, twice).await.0,
                StatusCode::SERVICE_UNAVAILABLE
            );
            // ha_redirect: Vault's 307 to the same path and query on the active node.
            let redirect = Limits {
                ha: HaForwarding::new(true),
                ..Limits::default()
            };
            let (status, headers, _) = send(
                &h,
                &redirect,
                req("GET", "/v1/secret/data/fw?version=1", ""),
            )
            .await;
            assert_eq!(status, StatusCode::TEMPORARY_REDIRECT);
            assert_eq!(
                headers[http::header::LOCATION],
                format!("{leader}/v1/secret/data/fw?version=1").as_str()
            );
            // No active node known; an active node that does not answer.
            let none = Standby {
                routing: lockana::Routing::NoLeader,
            };
            let (status, _, body) = send(&none, &limits, req("GET", "/v1/sys/mounts", "")).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(
                body["errors"][0],
                "local node not active but active cluster node not found"
            );
            let gone = Standby {
                routing: lockana::Routing::Forward("http://127.0.0.1:1".into()),
            };
            let (status, _, body) = send(&gone, &limits, req("GET", "/v1/sys/mounts", "")).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        });
    }
}
