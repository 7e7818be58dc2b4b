//! The request and response every transport exchanges with [`crate::Vault::handle`].

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// What a request asks to do, as Vault's logical layer names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// `GET`: read one entry.
    Read,
    /// Create a new entry. Transports send [`Operation::Update`]; the vault decides
    /// between create and update where the difference matters (policies).
    Create,
    /// `POST`/`PUT`: create or update.
    Update,
    /// `PATCH`: partial update (JSON merge patch for KV v2).
    Patch,
    /// `DELETE`.
    Delete,
    /// `LIST` or `GET ?list=true`.
    List,
}

impl Operation {
    /// The lower-case name Vault uses in audit entries and policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Patch => "patch",
            Operation::Delete => "delete",
            Operation::List => "list",
        }
    }
}

/// A client token as presented by a caller. Never printed, compared in constant time.
#[derive(Clone)]
pub struct ClientToken(Zeroizing<String>);

impl ClientToken {
    /// Wraps a token string.
    pub fn new(token: impl Into<String>) -> Self {
        ClientToken(Zeroizing::new(token.into()))
    }

    /// The token's characters, for hashing and forwarding; never log them.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Where a request came from, for audit and notifications.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// The peer's address, when the transport has one.
    pub remote_addr: Option<SocketAddr>,
    /// The `User-Agent` the client sent.
    pub user_agent: Option<String>,
}

/// One request to the vault. For reads and lists, query parameters arrive in `data`
/// as strings, as Vault does. Build it with [`Request::new`] and the `with_*` methods
/// (fields may be added, so it cannot be built as a struct literal outside the crate).
#[non_exhaustive]
pub struct Request {
    /// What to do.
    pub operation: Operation,
    /// The path below `/v1/`, without leading slash (for example `secret/data/app`).
    pub path: String,
    /// The JSON body (writes) or query parameters (reads).
    pub data: Map<String, Value>,
    /// The caller's token, if any.
    pub token: Option<ClientToken>,
    /// Who is asking.
    pub connection: Connection,
    /// `X-Vault-Wrap-TTL`: answer with a response-wrapping token of this TTL (seconds).
    pub wrap_ttl: Option<u64>,
    /// `X-Vault-MFA` values (`method_id:passcode`), for login MFA in one step.
    pub mfa: Vec<String>,
    /// `X-Lockana-TOTP`: a project's one-time code, the credential of
    /// `lockana/projects/<name>/env` when no token is used.
    pub totp_code: Option<String>,
    /// `?help=1` or the `HELP` method: answer with the path's help instead of serving
    /// it (`bao path-help`).
    pub help: bool,
    /// `HEAD` (Vault's header operation), which no path serves: answered after the
    /// token and route checks, 405 where a backend routes the path and 404 where none
    /// does. `operation` is [`Operation::Read`] then.
    pub head: bool,
    /// The body as sent, for the paths that take bytes rather than JSON (a snapshot
    /// to restore); `data` is empty then. Never audited.
    pub raw_body: Option<Vec<u8>>,
}

impl Request {
    /// A request with no data, token or connection info.
    pub fn new(operation: Operation, path: impl Into<String>) -> Self {
        Request {
            operation,
            path: path.into(),
            data: Map::new(),
            token: None,
            connection: Connection::default(),
            wrap_ttl: None,
            mfa: Vec::new(),
            totp_code: None,
            help: false,
            head: false,
            raw_body: None,
        }
    }

    /// Sets the body or query data.
    pub fn with_data(mut self, data: Value) -> Self {
        if let Value::Object(map) = data {
            self.data = map;
        }
        self
    }

    /// Sets where the request came from.
    pub fn with_connection(mut self, connection: Connection) -> Self {
        self.connection = connection;
        self
    }

    /// Sets the one-time TOTP code (`X-Lockana-TOTP`) of a project env fetch.
    pub fn with_totp_code(mut self, code: impl Into<String>) -> Self {
        self.totp_code = Some(code.into());
        self
    }

    /// Sets the raw body (a snapshot to restore).
    pub fn with_raw_body(mut self, body: Vec<u8>) -> Self {
        self.raw_body = Some(body);
        self
    }

    /// Sets the client token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(ClientToken::new(token));
        self
    }
}

/// How a transport should present a [`Response`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseFormat {
    /// Vault's envelope: `request_id`, `lease_id`, `data`, `warnings`, `auth`, ...
    #[default]
    Envelope,
    /// The envelope, with `data`'s keys also copied to the top level (legacy `sys/mounts`).
    EnvelopeWithTopLevelData,
    /// `data` alone is the body (`sys/health`, `sys/seal-status`, `sys/init`, ...).
    Raw,
}

/// Authentication info a login or token call returns.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Auth {
    /// The new token. Held only to be sent to the client that asked for it.
    #[serde(skip)]
    pub client_token: Option<ClientToken>,
    /// The token's accessor.
    pub accessor: String,
    /// Policies attached to the token.
    pub policies: Vec<String>,
    /// Token policies (same as `policies` for tokens without identity).
    pub token_policies: Vec<String>,
    /// Metadata.
    pub metadata: Option<BTreeMap<String, String>>,
    /// Seconds until expiry (0: never).
    pub lease_duration: u64,
    /// Whether the token can be renewed.
    pub renewable: bool,
    /// Entity id (empty without identity).
    pub entity_id: String,
    /// `service` or `batch`.
    pub token_type: String,
    /// Whether the token has no parent.
    pub orphan: bool,
    /// Uses left (0: unlimited).
    pub num_uses: u64,
    /// Set instead of a token when login MFA must be completed first.
    pub mfa_requirement: Option<serde_json::Value>,
}

impl std::fmt::Debug for ClientToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientToken(<redacted>)")
    }
}

/// The vault's answer to a successful [`Request`].
#[derive(Debug, Clone, Default)]
pub struct Response {
    /// The payload. `None` means "nothing to say" (HTTP 204 in the envelope format).
    pub data: Option<Map<String, Value>>,
    /// Non-fatal notes for the client.
    pub warnings: Vec<String>,
    /// Set by logins and token creation.
    pub auth: Option<Auth>,
    /// Lease length in seconds (KV v1 reports its mount's TTL here).
    pub lease_duration: u64,
    /// Lease id, when the secret has one.
    pub lease_id: String,
    /// Whether the lease can be renewed.
    pub renewable: bool,
    /// The type of the mount that answered (`kv`, `system`, ...).
    pub mount_type: String,
    /// A status other than the default (200, or 204 without data). KV v2 answers
    /// 404 *with* a body for deleted versions; `sys/health` picks its own codes.
    pub status: Option<u16>,
    /// How to present the response.
    pub format: ResponseFormat,
    /// Set when the answer was response-wrapped: the wrapping token's details.
    pub wrap_info: Option<WrapInfo>,
    /// A non-JSON answer (a project's variables as dotenv): sent as is, instead of
    /// `data`, with its content type.
    pub raw_body: Option<RawBody>,
}

/// A response body that is not JSON.
#[derive(Clone)]
pub struct RawBody {
    /// The `Content-Type` to send.
    pub content_type: &'static str,
    /// The body.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for RawBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The body may hold secrets.
        f.debug_struct("RawBody")
            .field("content_type", &self.content_type)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// A response-wrapping token, in place of the answer it wraps.
#[derive(Clone, Default, serde::Serialize)]
pub struct WrapInfo {
    /// The single-use wrapping token. Held only to be sent to the client.
    #[serde(skip)]
    pub token: Option<ClientToken>,
    /// The wrapping token's accessor.
    pub accessor: String,
    /// Seconds the wrapping token lives.
    pub ttl: u64,
    /// When it was made (RFC 3339).
    pub creation_time: String,
    /// The path whose answer it wraps.
    pub creation_path: String,
    /// The accessor of a token it wraps, if it wraps a token.
    pub wrapped_accessor: String,
}

impl std::fmt::Debug for WrapInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrapInfo")
            .field("accessor", &self.accessor)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Response {
    /// A response carrying `data`.
    pub fn with_data(data: Map<String, Value>) -> Self {
        Response {
            data: Some(data),
            ..Default::default()
        }
    }

    /// A response with nothing to say (HTTP 204).
    pub fn empty() -> Self {
        Response::default()
    }

    /// A raw-format response: `body` is the whole answer.
    pub fn raw(body: Map<String, Value>) -> Self {
        Response {
            data: Some(body),
            format: ResponseFormat::Raw,
            ..Default::default()
        }
    }
}
