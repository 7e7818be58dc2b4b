//! The server's configuration file, in Vault's HCL shape.
//!
//! ```hcl
//! storage "redb" { path = "./data/lockana.redb" }   # or: storage "inmem" {}
//! listener "tcp" {
//!   address          = "127.0.0.1:8200"
//!   tls_cert_file    = "/etc/lockana/tls.crt"     # or: tls_disable = true
//!   tls_key_file     = "/etc/lockana/tls.key"
//!   max_request_size = 33554432
//!   rate_limit_per_second      = 2000   # per client address; 0 turns it off
//!   rate_limit_burst           = 4000
//!   rate_limit_exempt_loopback = true   # set false behind a reverse proxy on this host
//!   # JSON body complexity (Vault's and OpenBao's names and defaults)
//!   max_json_depth               = 500
//!   max_json_string_value_length = 1048576
//!   max_json_object_entry_count  = 10000
//!   max_json_array_element_count = 10000
//!   max_request_json_memory      = 34078720
//!   max_request_json_strings     = 1000
//!   # slow and idle clients (Vault's names and defaults)
//!   http_read_header_timeout = "10s"
//!   http_read_timeout        = "30s"
//!   http_idle_timeout        = "5m"
//!   # open connections (Lockana-only)
//!   max_connections            = 4096
//!   max_connections_per_client = 256
//! }
//! auto_unseal { key_file = "/etc/lockana/unseal.keys" }  # or: key_env = "LOCKANA_UNSEAL_KEYS"
//! log_level = "info"
//! disable_mlock = false   # true: do not lock memory (swap off or encrypted)
//!
//! # Audit devices (OpenBao's declarative form; reopened on SIGHUP for rotation)
//! audit "file" "file" {
//!   description = "main audit log"
//!   options { file_path = "/var/log/lockana/audit.log" }   # or "stdout"
//! }
//! unsafe_allow_api_audit_creation = false   # allow `sys/audit/<path>` PUT (default off)
//!
//! # Notifications (Lockana-only): channels, and routes choosing which events go where
//! notify "telegram" "ops" { bot_token_env = "LOCKANA_TG_TOKEN"  chat_id = "-1001234" }
//! notify "webhook" "siem" { url = "https://siem.example/hook"  secret_env = "HOOK_SECRET" }
//! notify_route "billing" {
//!   events   = ["project_login_failed", "project_locked_out", "project_env_fetched"]
//!   projects = ["billing"]
//!   channels = ["ops", "siem"]
//! }
//! ```
//!
//! The file is walked by hand rather than derived with serde so every error can name
//! the block and field at fault and say what to write instead.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hcl::{Map, Value};
use lockana::{StorageConfig, Vault};

use crate::http::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
    DEFAULT_MAX_REQUEST_SIZE, DEFAULT_READ_HEADER_TIMEOUT, DEFAULT_READ_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT, JsonLimits, Limits, RateLimit, Telemetry,
};
use crate::server::ServerOptions;
use crate::tls::TlsFiles;
use crate::unseal::AutoUnseal;

/// The address Vault (and Lockana) listen on by default.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8200";

/// Log levels the `log_level` setting accepts.
const LOG_LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error"];

/// Vault settings that mean nothing to Lockana: accepted with a warning so a Vault
/// config file can be reused.
const IGNORED_TOP_LEVEL: &[&str] = &[
    "ui",
    "api_addr",
    "cluster_addr",
    "cluster_name",
    "disable_cache",
    "plugin_directory",
    "pid_file",
    "default_lease_ttl",
    "max_lease_ttl",
];
const IGNORED_LISTENER: &[&str] = &["cluster_address", "tls_min_version"];

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid HCL.
    #[error("the config file is not valid HCL: {0}")]
    Syntax(String),
    /// A setting is missing, unknown or has a bad value; the message says which and
    /// what to write instead.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

/// Where the listener takes its address, TLS and limits from.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Address to listen on.
    pub address: SocketAddr,
    /// Certificate and key; `None` only with `tls_disable = true`.
    pub tls: Option<TlsFiles>,
    /// Largest accepted request body in bytes.
    pub max_request_size: usize,
    /// Requests per second per client address (`rate_limit_per_second`, 0: off),
    /// bursts (`rate_limit_burst`), and whether loopback clients are exempt.
    pub rate_limit: RateLimit,
    /// JSON body complexity limits (`max_json_*`, `max_request_json_*`).
    pub json: JsonLimits,
    /// `http_read_header_timeout` (zero: none).
    pub read_header_timeout: Duration,
    /// `http_read_timeout` (zero: none).
    pub read_timeout: Duration,
    /// `http_idle_timeout` (zero: falls back as in Vault).
    pub idle_timeout: Duration,
    /// `max_connections`: open connections at once.
    pub max_connections: usize,
    /// `max_connections_per_client`: open connections at once per address (0: no cap).
    pub max_connections_per_client: usize,
    /// `telemetry { unauthenticated_metrics_access }`: `sys/metrics` without a token.
    pub unauthenticated_metrics_access: bool,
}

/// A parsed and checked configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the vault keeps its data.
    pub storage: StorageConfig,
    /// The one TCP listener.
    pub listener: ListenerConfig,
    /// Unseal key shares to submit at start, if configured.
    pub auto_unseal: Option<AutoUnseal>,
    /// `log_level`, if set (one of trace, debug, info, warn, error).
    pub log_level: Option<String>,
    /// `disable_mlock`: do not lock the process's memory (Vault's key; default false).
    pub disable_mlock: bool,
    /// `default_max_request_duration` (default 90 s).
    pub request_timeout: Duration,
    /// Settings that were accepted but ignored, to be logged at start.
    pub warnings: Vec<String>,
    /// `audit "<type>" "<path>" { ... }` blocks: devices opened at every unseal.
    pub audit_devices: Vec<Declared>,
    /// `unsafe_allow_api_audit_creation`: whether `sys/audit/<path>` may enable devices.
    pub allow_api_audit_creation: bool,
    /// `notify "<type>" "<name>" { ... }` blocks: notification channels.
    pub notify_channels: Vec<Declared>,
    /// `notify_route "<name>" { ... }` blocks.
    pub notify_routes: Vec<Declared>,
    /// The `telemetry` block (`unauthenticated_metrics_access` comes from the listener).
    pub telemetry: Telemetry,
}

/// A named block handed to the vault as the JSON body its API takes.
#[derive(Clone)]
pub struct Declared {
    /// The device path, channel or route name.
    pub name: String,
    /// The API body (`type`, `options`, ... for devices; `type`, `bot_token`, ... for channels).
    pub body: serde_json::Value,
}

impl std::fmt::Debug for Declared {
    // Bodies can hold bot tokens and webhook secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Declared")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text)
    }

    /// Parses and checks configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let value: Value = hcl::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        let Value::Object(top) = value else {
            return Err(invalid("the config file must be a set of HCL blocks"));
        };
        let mut warnings = Vec::new();
        let mut storage = None;
        let mut listener = None;
        let mut auto_unseal = None;
        let mut log_level = None;
        let mut disable_mlock = false;
        let mut request_timeout = DEFAULT_REQUEST_TIMEOUT;
        let mut audit_devices = Vec::new();
        let mut allow_api_audit_creation = false;
        let mut notify_channels = Vec::new();
        let mut notify_routes = Vec::new();
        let mut telemetry = Telemetry::default();
        for (key, value) in &top {
            match key.as_str() {
                "audit" => audit_devices = parse_audit(value)?,
                "unsafe_allow_api_audit_creation" => {
                    allow_api_audit_creation = match value {
                        Value::Bool(b) => *b,
                        _ => {
                            return Err(invalid(
                                "`unsafe_allow_api_audit_creation` must be true or false",
                            ));
                        }
                    };
                }
                "notify" => notify_channels = parse_notify(value)?,
                "notify_route" => notify_routes = parse_notify_routes(value)?,
                "storage" => storage = Some(parse_storage(value)?),
                "telemetry" => telemetry = parse_telemetry(value, &mut warnings)?,
                "listener" => listener = Some(parse_listener(value, &mut warnings)?),
                "auto_unseal" => auto_unseal = Some(parse_auto_unseal(value)?),
                "log_level" => log_level = Some(parse_log_level(value)?),
                "disable_mlock" => {
                    disable_mlock = match value {
                        Value::Bool(b) => *b,
                        // Vault's parser takes "true"/"false" strings too.
                        Value::String(s) if s == "true" || s == "false" => s == "true",
                        _ => return Err(invalid("`disable_mlock` must be true or false")),
                    };
                }
                "default_max_request_duration" => {
                    request_timeout = parse_duration(value, "default_max_request_duration")?;
                }
                "seal" => {
                    return Err(invalid(
                        "`seal` blocks are not supported: use `auto_unseal { key_file = \"...\" }` \
                         (or `key_env = \"VAR\"`) with the unseal key shares",
                    ));
                }
                "ha_storage" => {
                    return Err(invalid(
                        "`ha_storage` is not supported: use a single `storage` block",
                    ));
                }
                k if IGNORED_TOP_LEVEL.contains(&k) => {
                    warnings.push(format!("`{k}` is a Vault setting Lockana ignores"));
                }
                k => {
                    return Err(invalid(format!(
                        "unknown setting `{k}`: the config file knows storage, listener, \
                         auto_unseal, log_level, disable_mlock, default_max_request_duration, audit, \
                         unsafe_allow_api_audit_creation, notify, notify_route and telemetry"
                    )));
                }
            }
        }
        let storage = storage.ok_or_else(|| {
            invalid(
                "missing `storage` block: add `storage \"redb\" { path = \"./data/lockana.redb\" }` \
                 (or `storage \"inmem\" {}` for a throwaway vault)",
            )
        })?;
        let listener = listener.ok_or_else(|| {
            invalid(
                "missing `listener \"tcp\"` block: add `listener \"tcp\" { address = \"127.0.0.1:8200\" \
                 tls_cert_file = \"...\" tls_key_file = \"...\" }`",
            )
        })?;
        Ok(Config {
            storage,
            listener,
            auto_unseal,
            log_level,
            disable_mlock,
            request_timeout,
            warnings,
            audit_devices,
            allow_api_audit_creation,
            notify_channels,
            notify_routes,
            telemetry,
        })
    }

    /// Hands the audit devices and notification settings to the vault (before
    /// unseal: they take effect at every unseal).
    pub fn apply(&self, vault: &Vault) -> Result<(), ConfigError> {
        vault.set_api_audit_creation(self.allow_api_audit_creation);
        for d in &self.audit_devices {
            vault
                .declare_audit_device(&d.name, &d.body)
                .map_err(|e| invalid(format!("audit \"{}\": {e}", d.name)))?;
        }
        for d in &self.notify_channels {
            vault
                .declare_notify_channel(&d.name, &d.body)
                .map_err(|e| invalid(format!("notify \"{}\": {e}", d.name)))?;
        }
        for d in &self.notify_routes {
            vault
                .declare_notify_route(&d.name, &d.body)
                .map_err(|e| invalid(format!("notify_route \"{}\": {e}", d.name)))?;
        }
        Ok(())
    }

    /// The listener options this configuration gives.
    pub fn server_options(&self) -> ServerOptions {
        ServerOptions {
            address: self.listener.address,
            tls: self.listener.tls.clone(),
            limits: Limits {
                max_request_size: self.listener.max_request_size,
                request_timeout: self.request_timeout,
                rate_limit: self.listener.rate_limit,
                json: self.listener.json,
                read_header_timeout: self.listener.read_header_timeout,
                read_timeout: self.listener.read_timeout,
                idle_timeout: self.listener.idle_timeout,
                max_connections: self.listener.max_connections,
                max_connections_per_client: self.listener.max_connections_per_client,
                telemetry: Telemetry {
                    unauthenticated_metrics_access: self.listener.unauthenticated_metrics_access,
                    ..self.telemetry.clone()
                },
                ..Limits::default()
            },
        }
    }
}

/// A block's labels and body.
type Block = (Vec<String>, Map<String, Value>);

/// Every `name "l1" ... "ln" { body }` block under a top-level key, however hcl-rs
/// grouped repeated blocks (objects keyed by label, or lists of them).
fn labeled_blocks(
    name: &str,
    value: &Value,
    depth: usize,
    labels: &mut Vec<String>,
    out: &mut Vec<Block>,
) -> Result<(), ConfigError> {
    match value {
        Value::Array(items) => {
            for v in items {
                labeled_blocks(name, v, depth, labels, out)?;
            }
            Ok(())
        }
        Value::Object(m) if labels.len() == depth => {
            out.push((labels.clone(), m.clone()));
            Ok(())
        }
        Value::Object(m) => {
            for (label, v) in m {
                labels.push(label.clone());
                labeled_blocks(name, v, depth, labels, out)?;
                labels.pop();
            }
            Ok(())
        }
        _ => Err(invalid(format!(
            "`{name}` must be a block with {depth} label(s)"
        ))),
    }
}

fn blocks(name: &str, value: &Value, depth: usize) -> Result<Vec<Block>, ConfigError> {
    let mut out = Vec::new();
    labeled_blocks(name, value, depth, &mut Vec::new(), &mut out)?;
    Ok(out)
}

fn to_json(body: &Map<String, Value>) -> serde_json::Value {
    serde_json::to_value(body).unwrap_or_default()
}

/// `audit "file" "<path>" { description = "..." options { file_path = "..." } }`.
fn parse_audit(value: &Value) -> Result<Vec<Declared>, ConfigError> {
    let mut out: Vec<Declared> = Vec::new();
    for (labels, body) in blocks("audit", value, 2)? {
        let (kind, path) = (&labels[0], &labels[1]);
        let ctx = format!("audit \"{kind}\" \"{path}\"");
        check_fields(
            &ctx,
            &body,
            &["description", "options", "local"],
            &[],
            &mut Vec::new(),
        )?;
        if out
            .iter()
            .any(|d| d.name.trim_matches('/') == path.trim_matches('/'))
        {
            return Err(invalid(format!(
                "{ctx}: two audit blocks share the path `{path}`"
            )));
        }
        let mut json = to_json(&body);
        if let serde_json::Value::Object(m) = &mut json {
            m.insert("type".into(), serde_json::Value::String(kind.clone()));
        }
        out.push(Declared {
            name: path.clone(),
            body: json,
        });
    }
    Ok(out)
}

/// Reads `<key>_env = "VAR"` into `<key>`, so secrets can stay out of the file.
fn secret_from_env(ctx: &str, body: &mut Map<String, Value>, key: &str) -> Result<(), ConfigError> {
    let env_key = format!("{key}_env");
    if let Some(var) = get_str(ctx, body, &env_key)? {
        if body.contains_key(key) {
            return Err(invalid(format!(
                "{ctx}: set `{key}` or `{env_key}`, not both"
            )));
        }
        let v = std::env::var(&var).map_err(|_| {
            invalid(format!(
                "{ctx}: `{env_key}` names the environment variable {var}, which is not set"
            ))
        })?;
        body.shift_remove(&env_key);
        body.insert(key.to_owned(), Value::String(v));
    }
    Ok(())
}

/// `notify "telegram" "<name>" { bot_token chat_id api_url }` and
/// `notify "webhook" "<name>" { url secret }`.
fn parse_notify(value: &Value) -> Result<Vec<Declared>, ConfigError> {
    let mut out = Vec::new();
    for (labels, mut body) in blocks("notify", value, 2)? {
        let (kind, name) = (&labels[0], &labels[1]);
        let ctx = format!("notify \"{kind}\" \"{name}\"");
        let known: &[&str] = match kind.as_str() {
            "telegram" => &["bot_token", "bot_token_env", "chat_id", "api_url"],
            "webhook" => &["url", "secret", "secret_env"],
            _ => {
                return Err(invalid(format!(
                    "{ctx}: unknown channel type: use notify \"telegram\" or notify \"webhook\""
                )));
            }
        };
        check_fields(&ctx, &body, known, &[], &mut Vec::new())?;
        secret_from_env(&ctx, &mut body, "bot_token")?;
        secret_from_env(&ctx, &mut body, "secret")?;
        let mut json = to_json(&body);
        if let serde_json::Value::Object(m) = &mut json {
            m.insert("type".into(), serde_json::Value::String(kind.clone()));
        }
        out.push(Declared {
            name: name.clone(),
            body: json,
        });
    }
    Ok(out)
}

/// `notify_route "<name>" { events = [...] projects = [...] paths = [...] channels = [...] }`.
fn parse_notify_routes(value: &Value) -> Result<Vec<Declared>, ConfigError> {
    let mut out = Vec::new();
    for (labels, body) in blocks("notify_route", value, 1)? {
        let ctx = format!("notify_route \"{}\"", labels[0]);
        check_fields(
            &ctx,
            &body,
            &["events", "projects", "paths", "channels"],
            &[],
            &mut Vec::new(),
        )?;
        out.push(Declared {
            name: labels[0].clone(),
            body: to_json(&body),
        });
    }
    Ok(out)
}

/// `name "label" { ... }`: exactly one block with one label.
fn single_labeled<'a>(
    name: &str,
    value: &'a Value,
) -> Result<(&'a str, &'a Map<String, Value>), ConfigError> {
    let one = match value {
        Value::Array(blocks) if blocks.len() == 1 => &blocks[0],
        Value::Array(_) => {
            return Err(invalid(format!("only one `{name}` block is supported")));
        }
        other => other,
    };
    let shape = || {
        invalid(format!(
            "`{name}` must be a block with one label, like `{name} \"{}\" {{ ... }}`",
            if name == "storage" { "redb" } else { "tcp" }
        ))
    };
    let Value::Object(labels) = one else {
        return Err(shape());
    };
    let mut iter = labels.iter();
    match (iter.next(), iter.next()) {
        (Some((label, Value::Object(body))), None) => Ok((label, body)),
        // hcl-rs groups repeated `name "label" {}` blocks into a list under the label.
        (Some((_, Value::Array(_))), None) | (Some(_), Some(_)) => {
            Err(invalid(format!("only one `{name}` block is supported")))
        }
        _ => Err(shape()),
    }
}

fn parse_storage(value: &Value) -> Result<StorageConfig, ConfigError> {
    let (kind, body) = single_labeled("storage", value)?;
    let ctx = format!("storage \"{kind}\"");
    match kind {
        "redb" => {
            check_fields(&ctx, body, &["path"], &[], &mut Vec::new())?;
            let path = get_str(&ctx, body, "path")?.ok_or_else(|| {
                invalid(format!(
                    "{ctx}: missing `path`: set it to the database file, e.g. `path = \"./data/lockana.redb\"`"
                ))
            })?;
            if path.is_empty() {
                return Err(invalid(format!("{ctx}: `path` must not be empty")));
            }
            Ok(StorageConfig::Redb(PathBuf::from(path)))
        }
        "inmem" => {
            check_fields(&ctx, body, &[], &[], &mut Vec::new())?;
            Ok(StorageConfig::Memory)
        }
        "postgresql" => {
            check_fields(
                &ctx,
                body,
                &["connection_url", "connection_url_env", "table"],
                &[],
                &mut Vec::new(),
            )?;
            // The URL may hold a password: it can come from an environment variable.
            let url = match (
                get_str(&ctx, body, "connection_url")?,
                get_str(&ctx, body, "connection_url_env")?,
            ) {
                (Some(url), None) => url,
                (None, Some(var)) => std::env::var(&var).map_err(|_| {
                    invalid(format!(
                        "{ctx}: `connection_url_env` names `{var}`, which is not set"
                    ))
                })?,
                _ => {
                    return Err(invalid(format!(
                        "{ctx}: set one of `connection_url` (\"postgres://user@host/db\") or \
                         `connection_url_env` (the name of a variable holding it)"
                    )));
                }
            };
            let table = get_str(&ctx, body, "table")?.unwrap_or_else(|| "lockana_kv".into());
            Ok(StorageConfig::Postgres { url, table })
        }
        other => Err(invalid(format!(
            "storage \"{other}\" is not supported: use `storage \"redb\" {{ path = \"...\" }}`, \
             `storage \"postgresql\" {{ connection_url = \"...\" }}` or `storage \"inmem\" {{}}`"
        ))),
    }
}

fn parse_listener(
    value: &Value,
    warnings: &mut Vec<String>,
) -> Result<ListenerConfig, ConfigError> {
    let (kind, body) = single_labeled("listener", value)?;
    if kind != "tcp" {
        return Err(invalid(format!(
            "listener \"{kind}\" is not supported: use `listener \"tcp\" {{ ... }}`"
        )));
    }
    let ctx = "listener \"tcp\"";
    check_fields(
        ctx,
        body,
        &[
            "address",
            "tls_disable",
            "tls_cert_file",
            "tls_key_file",
            "max_request_size",
            "rate_limit_per_second",
            "rate_limit_burst",
            "rate_limit_exempt_loopback",
            "max_json_depth",
            "max_json_string_value_length",
            "max_json_object_entry_count",
            "max_json_array_element_count",
            "max_request_json_memory",
            "max_request_json_strings",
            "http_read_header_timeout",
            "http_read_timeout",
            "http_idle_timeout",
            "max_connections",
            "max_connections_per_client",
            "telemetry",
        ],
        IGNORED_LISTENER,
        warnings,
    )?;
    let address_text = get_str(ctx, body, "address")?.unwrap_or_else(|| DEFAULT_ADDRESS.into());
    let address = resolve_address(&address_text).ok_or_else(|| {
        invalid(format!(
            "{ctx}: `address` = \"{address_text}\" is not a host:port address, e.g. \"127.0.0.1:8200\""
        ))
    })?;
    let tls_disable = get_bool(ctx, body, "tls_disable")?.unwrap_or(false);
    let cert = get_str(ctx, body, "tls_cert_file")?;
    let key = get_str(ctx, body, "tls_key_file")?;
    let tls = match (tls_disable, cert, key) {
        (true, None, None) => None,
        (true, _, _) => {
            return Err(invalid(format!(
                "{ctx}: `tls_disable = true` conflicts with `tls_cert_file`/`tls_key_file`: \
                 remove one or the other"
            )));
        }
        (false, Some(cert_file), Some(key_file)) => Some(TlsFiles {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
        }),
        (false, None, None) => {
            return Err(invalid(format!(
                "{ctx}: TLS is on but `tls_cert_file` and `tls_key_file` are not set: set both, \
                 or set `tls_disable = true` for plain HTTP (only on localhost or behind a TLS proxy)"
            )));
        }
        (false, Some(_), None) => {
            return Err(invalid(format!(
                "{ctx}: `tls_cert_file` is set but `tls_key_file` is missing"
            )));
        }
        (false, None, Some(_)) => {
            return Err(invalid(format!(
                "{ctx}: `tls_key_file` is set but `tls_cert_file` is missing"
            )));
        }
    };
    let max_request_size = match get_int(ctx, body, "max_request_size")? {
        None | Some(0) => DEFAULT_MAX_REQUEST_SIZE,
        Some(n) if n < 0 => {
            return Err(invalid(format!(
                "{ctx}: `max_request_size` must be positive (Lockana always limits request size; \
                 0 means the default of {DEFAULT_MAX_REQUEST_SIZE})"
            )));
        }
        Some(n) => usize::try_from(n).map_err(|_| {
            invalid(format!(
                "{ctx}: `max_request_size` is too large for this machine"
            ))
        })?,
    };
    let mut rate_limit = RateLimit::default();
    for (key, slot) in [
        ("rate_limit_per_second", &mut rate_limit.per_second),
        ("rate_limit_burst", &mut rate_limit.burst),
    ] {
        match get_int(ctx, body, key)? {
            None => {}
            Some(n) if n >= 0 => *slot = n as f64,
            Some(_) => {
                return Err(invalid(format!(
                    "{ctx}: `{key}` must be 0 or more (0 turns the rate limit off)"
                )));
            }
        }
    }
    if rate_limit.per_second > 0.0 && rate_limit.burst < 1.0 {
        return Err(invalid(format!(
            "{ctx}: `rate_limit_burst` must be at least 1 when a rate limit is set"
        )));
    }
    if let Some(b) = get_bool(ctx, body, "rate_limit_exempt_loopback")? {
        rate_limit.exempt_loopback = b;
    }
    let mut json = JsonLimits::default();
    for (key, slot) in [
        ("max_json_depth", &mut json.max_depth),
        ("max_json_string_value_length", &mut json.max_string_length),
        ("max_json_object_entry_count", &mut json.max_object_entries),
        ("max_json_array_element_count", &mut json.max_array_elements),
        ("max_request_json_memory", &mut json.max_memory),
        ("max_request_json_strings", &mut json.max_strings),
    ] {
        // As in Vault and OpenBao, 0 (or unset) means the default.
        if let Some(n) = get_count(ctx, body, key)?
            && n > 0
        {
            *slot = n;
        }
    }
    let timeout = |key: &str, default: Duration| -> Result<Duration, ConfigError> {
        match body.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => parse_duration_or_zero(v, &format!("{ctx}: `{key}`")),
        }
    };
    let read_header_timeout = timeout("http_read_header_timeout", DEFAULT_READ_HEADER_TIMEOUT)?;
    let read_timeout = timeout("http_read_timeout", DEFAULT_READ_TIMEOUT)?;
    let idle_timeout = timeout("http_idle_timeout", DEFAULT_IDLE_TIMEOUT)?;
    let max_connections = match get_count(ctx, body, "max_connections")? {
        None => DEFAULT_MAX_CONNECTIONS,
        Some(0) => {
            return Err(invalid(format!(
                "{ctx}: `max_connections` must be at least 1"
            )));
        }
        Some(n) => n,
    };
    let max_connections_per_client = get_count(ctx, body, "max_connections_per_client")?
        .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_CLIENT);
    Ok(ListenerConfig {
        address,
        tls,
        max_request_size,
        rate_limit,
        json,
        read_header_timeout,
        read_timeout,
        idle_timeout,
        max_connections,
        max_connections_per_client,
        unauthenticated_metrics_access: parse_listener_telemetry(ctx, body.get("telemetry"))?,
    })
}

fn parse_auto_unseal(value: &Value) -> Result<AutoUnseal, ConfigError> {
    let ctx = "auto_unseal";
    let body = match value {
        Value::Object(body) => body,
        Value::Array(blocks) if blocks.len() == 1 => match &blocks[0] {
            Value::Object(body) => body,
            _ => {
                return Err(invalid(
                    "`auto_unseal` must be a block: auto_unseal { key_file = \"...\" }",
                ));
            }
        },
        _ => {
            return Err(invalid(
                "`auto_unseal` must be one block: auto_unseal { key_file = \"...\" }",
            ));
        }
    };
    check_fields(ctx, body, &["key_file", "key_env"], &[], &mut Vec::new())?;
    match (
        get_str(ctx, body, "key_file")?,
        get_str(ctx, body, "key_env")?,
    ) {
        (Some(file), None) => Ok(AutoUnseal::KeyFile(file.into())),
        (None, Some(var)) => Ok(AutoUnseal::KeyEnv(var)),
        (Some(_), Some(_)) => Err(invalid(format!(
            "{ctx}: set either `key_file` or `key_env`, not both"
        ))),
        (None, None) => Err(invalid(format!(
            "{ctx}: set `key_file = \"/path/to/unseal.keys\"` or `key_env = \"LOCKANA_UNSEAL_KEYS\"`"
        ))),
    }
}

fn parse_log_level(value: &Value) -> Result<String, ConfigError> {
    let Value::String(level) = value else {
        return Err(invalid(
            "`log_level` must be a string, e.g. log_level = \"info\"",
        ));
    };
    let level = level.to_ascii_lowercase();
    let level = match level.as_str() {
        "err" => "error".to_owned(),
        "warning" => "warn".to_owned(),
        _ => level,
    };
    if !LOG_LEVELS.contains(&level.as_str()) {
        return Err(invalid(format!(
            "`log_level` = \"{level}\" is not a level: use one of {}",
            LOG_LEVELS.join(", ")
        )));
    }
    Ok(level)
}

fn parse_duration(value: &Value, name: &str) -> Result<Duration, ConfigError> {
    let d = match value {
        Value::Number(n) => n.as_u64().map(Duration::from_secs),
        Value::String(s) => humantime::parse_duration(s).ok(),
        _ => None,
    };
    match d {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(invalid(format!(
            "`{name}` must be a positive duration, e.g. \"90s\" or \"5m\""
        ))),
    }
}

/// A duration where zero is allowed and means "none" (Vault's `http_*_timeout`).
fn parse_duration_or_zero(value: &Value, name: &str) -> Result<Duration, ConfigError> {
    let d = match value {
        Value::Number(n) => n.as_u64().map(Duration::from_secs),
        Value::String(s) if s.trim() == "0" => Some(Duration::ZERO),
        Value::String(s) => humantime::parse_duration(s.trim()).ok(),
        _ => None,
    };
    d.ok_or_else(|| {
        invalid(format!(
            "{name} must be a duration, e.g. \"30s\" or \"5m\" (\"0\": no limit)"
        ))
    })
}

/// A non-negative whole number that fits this machine's `usize`.
fn get_count(
    ctx: &str,
    body: &Map<String, Value>,
    key: &str,
) -> Result<Option<usize>, ConfigError> {
    match get_int(ctx, body, key)? {
        None => Ok(None),
        Some(n) => usize::try_from(n)
            .map(Some)
            .map_err(|_| invalid(format!("{ctx}: `{key}` must be 0 or more"))),
    }
}

fn resolve_address(text: &str) -> Option<SocketAddr> {
    text.parse()
        .ok()
        .or_else(|| text.to_socket_addrs().ok()?.next())
}

fn check_fields(
    ctx: &str,
    body: &Map<String, Value>,
    known: &[&str],
    ignored: &[&str],
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    for key in body.keys() {
        if known.contains(&key.as_str()) {
            continue;
        }
        if ignored.contains(&key.as_str()) {
            warnings.push(format!("{ctx}: `{key}` is a Vault setting Lockana ignores"));
            continue;
        }
        let hint = if known.is_empty() {
            "this block takes no settings".to_owned()
        } else {
            format!("known settings: {}", known.join(", "))
        };
        return Err(invalid(format!("{ctx}: unknown setting `{key}` ({hint})")));
    }
    Ok(())
}

fn get_str(ctx: &str, body: &Map<String, Value>, key: &str) -> Result<Option<String>, ConfigError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(format!(
            "{ctx}: `{key}` must be a string in double quotes"
        ))),
    }
}

/// Booleans as Vault reads them: `true`, `"true"`, `1`, `"1"`...
fn get_bool(ctx: &str, body: &Map<String, Value>, key: &str) -> Result<Option<bool>, ConfigError> {
    let bad = || invalid(format!("{ctx}: `{key}` must be true or false"));
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) => Ok(Some(false)),
            Some(1) => Ok(Some(true)),
            _ => Err(bad()),
        },
        Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(Some(true)),
            "false" | "0" => Ok(Some(false)),
            _ => Err(bad()),
        },
        Some(_) => Err(bad()),
    }
}

fn get_int(ctx: &str, body: &Map<String, Value>, key: &str) -> Result<Option<i64>, ConfigError> {
    let bad = || invalid(format!("{ctx}: `{key}` must be a whole number"));
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(bad),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

/// Vault telemetry settings that choose sinks or tune Vault's own gauges: accepted
/// with a warning, as Lockana serves only `sys/metrics`.
const IGNORED_TELEMETRY: &[&str] = &[
    "usage_gauge_period",
    "maximum_gauge_cardinality",
    "lease_metrics_epsilon",
    "num_lease_metrics_buckets",
    "add_lease_metrics_namespace_labels",
    "filter_default",
    "prefix_filter",
];

/// `telemetry { prometheus_retention_time = "30s" disable_hostname = true }`. As in
/// Vault, a block without `prometheus_retention_time` keeps Prometheus on (24 h),
/// and `0` turns it off; without the block it is off.
fn parse_telemetry(value: &Value, warnings: &mut Vec<String>) -> Result<Telemetry, ConfigError> {
    let body = match value {
        Value::Array(items) if items.len() == 1 => &items[0],
        Value::Array(_) => return Err(invalid("only one `telemetry` block is permitted")),
        other => other,
    };
    let Value::Object(body) = body else {
        return Err(invalid(
            "`telemetry` must be a block: `telemetry { prometheus_retention_time = \"30s\" }`",
        ));
    };
    let ctx = "telemetry";
    check_fields(
        ctx,
        body,
        &["prometheus_retention_time", "disable_hostname"],
        IGNORED_TELEMETRY,
        warnings,
    )?;
    let prometheus_retention_time = match body.get("prometheus_retention_time") {
        None | Some(Value::Null) => Duration::from_secs(24 * 3600),
        Some(v) => parse_duration_or_zero(v, "telemetry: `prometheus_retention_time`")?,
    };
    Ok(Telemetry {
        prometheus_retention_time,
        disable_hostname: get_bool(ctx, body, "disable_hostname")?.unwrap_or(false),
        unauthenticated_metrics_access: false,
    })
}

/// A listener's `telemetry { unauthenticated_metrics_access = true }`.
fn parse_listener_telemetry(listener: &str, value: Option<&Value>) -> Result<bool, ConfigError> {
    let body = match value {
        None | Some(Value::Null) => return Ok(false),
        Some(Value::Array(items)) if items.len() == 1 => &items[0],
        Some(other) => other,
    };
    let ctx = format!("{listener}: telemetry");
    let Value::Object(body) = body else {
        return Err(invalid(format!("{ctx} must be one block")));
    };
    check_fields(
        &ctx,
        body,
        &["unauthenticated_metrics_access"],
        &[],
        &mut Vec::new(),
    )?;
    Ok(get_bool(&ctx, body, "unauthenticated_metrics_access")?.unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::parse(text)
            .expect_err("config should be rejected")
            .to_string()
    }

    #[test]
    fn listener_hardening_keys_have_vault_and_openbao_defaults_and_can_be_set() {
        let c = Config::parse("storage \"inmem\" {}\nlistener \"tcp\" { tls_disable = true }")
            .expect("config");
        let l = c.server_options().limits;
        assert_eq!(l.json, JsonLimits::default());
        assert_eq!(l.read_header_timeout, Duration::from_secs(10));
        assert_eq!(l.read_timeout, Duration::from_secs(30));
        assert_eq!(l.idle_timeout, Duration::from_secs(300));
        assert_eq!(l.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(
            l.max_connections_per_client,
            DEFAULT_MAX_CONNECTIONS_PER_CLIENT
        );

        let c = Config::parse(
            r#"
            storage "inmem" {}
            listener "tcp" {
              tls_disable = true
              max_json_depth = 20
              max_json_string_value_length = 64
              max_json_object_entry_count = 30
              max_json_array_element_count = "40"
              max_request_json_memory = 5000
              max_request_json_strings = 0
              http_read_header_timeout = "2s"
              http_read_timeout = 3
              http_idle_timeout = "0"
              max_connections = 50
              max_connections_per_client = 5
            }
            "#,
        )
        .expect("config");
        let l = c.server_options().limits;
        assert_eq!(
            l.json,
            JsonLimits {
                max_depth: 20,
                max_string_length: 64,
                max_object_entries: 30,
                max_array_elements: 40,
                max_memory: 5000,
                // 0 means the default, as in OpenBao
                max_strings: 1000,
            }
        );
        assert_eq!(l.read_header_timeout, Duration::from_secs(2));
        assert_eq!(l.read_timeout, Duration::from_secs(3));
        // Vault: no idle timeout falls back to the read timeout
        assert_eq!(l.effective_idle_timeout(), Duration::from_secs(3));
        assert_eq!((l.max_connections, l.max_connections_per_client), (50, 5));

        let listener = |extra: &str| {
            err(&format!(
                "storage \"inmem\" {{}}\nlistener \"tcp\" {{\n tls_disable = true\n {extra}\n}}"
            ))
        };
        assert!(listener("max_json_depth = -1").contains("`max_json_depth` must be 0 or more"));
        assert!(
            listener("http_read_timeout = \"soon\"")
                .contains("`http_read_timeout` must be a duration")
        );
        assert!(listener("max_connections = 0").contains("at least 1"));
    }

    #[test]
    fn disable_mlock_is_read_as_vault_writes_it() {
        let base = "storage \"inmem\" {}\nlistener \"tcp\" { tls_disable = true }\n";
        let parse = |extra: &str| Config::parse(&format!("{base}{extra}"));
        assert!(!parse("").expect("config").disable_mlock);
        assert!(parse("disable_mlock = true").expect("config").disable_mlock);
        assert!(
            parse("disable_mlock = \"true\"")
                .expect("config")
                .disable_mlock
        );
        assert!(
            !parse("disable_mlock = false")
                .expect("config")
                .disable_mlock
        );
        // Honoured, so no longer in the "ignored" warnings.
        assert!(
            parse("disable_mlock = true")
                .expect("config")
                .warnings
                .is_empty()
        );
        let err = parse("disable_mlock = 1")
            .expect_err("a number")
            .to_string();
        assert!(
            err.contains("`disable_mlock` must be true or false"),
            "{err}"
        );
    }

    #[test]
    fn audit_devices_and_notifications_are_declared_blocks() {
        let c = Config::parse(
            r#"
            storage "inmem" {}
            listener "tcp" { tls_disable = true }
            audit "file" "file" {
              options {
                file_path = "/var/log/a.log"
              }
            }
            audit "file" "stdout" {
              description = "to stdout"
              options {
                file_path = "stdout"
              }
            }
            unsafe_allow_api_audit_creation = true
            notify "webhook" "siem" {
              url    = "https://siem.example/hook"
              secret = "0123456789abcdef0123"
            }
            notify "telegram" "ops" {
              bot_token = "1:abc"
              chat_id   = "-100"
            }
            notify_route "all" {
              events   = ["*"]
              channels = ["siem", "ops"]
            }
            "#,
        )
        .expect("valid config");
        let names: Vec<&str> = c.audit_devices.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["file", "stdout"]);
        assert_eq!(c.audit_devices[0].body["type"], "file");
        assert_eq!(
            c.audit_devices[0].body["options"]["file_path"],
            "/var/log/a.log"
        );
        assert!(c.allow_api_audit_creation);
        assert_eq!(c.notify_channels.len(), 2);
        assert_eq!(c.notify_routes[0].body["channels"][1], "ops");
        assert!(!format!("{:?}", c.notify_channels).contains("0123456789abcdef"));
        assert!(err("storage \"inmem\" {}\nlistener \"tcp\" { tls_disable = true }\nnotify \"sms\" \"x\" {}").contains("unknown channel type"));
        assert!(err("storage \"inmem\" {}\nlistener \"tcp\" { tls_disable = true }\naudit \"file\" \"a\" { bogus = 1 }").contains("unknown setting `bogus`"));
        assert!(err("storage \"inmem\" {}\nlistener \"tcp\" { tls_disable = true }\nnotify \"webhook\" \"w\" {\nurl = \"https://x\"\nsecret_env = \"LOCKANA_TEST_UNSET_VAR_5\"\n}").contains("not set"));
    }

    #[test]
    fn full_config() {
        let c = Config::parse(
            r#"
            storage "redb" { path = "./data/lockana.redb" }
            listener "tcp" {
              address          = "127.0.0.1:8300"
              tls_cert_file    = "/etc/lockana/tls.crt"
              tls_key_file     = "/etc/lockana/tls.key"
              max_request_size = 1024
            }
            auto_unseal { key_file = "/etc/lockana/unseal.keys" }
            log_level = "debug"
            default_max_request_duration = "30s"
            "#,
        )
        .expect("valid config");
        assert!(
            matches!(c.storage, StorageConfig::Redb(ref p) if p == Path::new("./data/lockana.redb"))
        );
        assert_eq!(c.listener.address, "127.0.0.1:8300".parse().expect("addr"));
        let tls = c.listener.tls.as_ref().expect("tls");
        assert_eq!(tls.cert_file, Path::new("/etc/lockana/tls.crt"));
        assert_eq!(c.listener.max_request_size, 1024);
        assert!(matches!(c.auto_unseal, Some(AutoUnseal::KeyFile(_))));
        assert_eq!(c.log_level.as_deref(), Some("debug"));
        assert_eq!(c.request_timeout, Duration::from_secs(30));
        assert_eq!(c.server_options().limits.max_request_size, 1024);
    }

    #[test]
    fn minimal_inmem_plain_http() {
        let c = Config::parse(
            r#"
            storage "inmem" {}
            listener "tcp" { tls_disable = true }
            "#,
        )
        .expect("valid config");
        assert!(matches!(c.storage, StorageConfig::Memory));
        assert_eq!(c.listener.address.to_string(), DEFAULT_ADDRESS);
        assert!(c.listener.tls.is_none());
        assert_eq!(c.listener.max_request_size, DEFAULT_MAX_REQUEST_SIZE);
        assert_eq!(c.request_timeout, DEFAULT_REQUEST_TIMEOUT);
    }

    #[test]
    fn telemetry_block_and_listener_metrics_access_follow_vault() {
        let parse = |text: &str| Config::parse(text).expect("valid config");
        // No block: no Prometheus, host names in gauges, metrics need a token.
        let t = parse(&format!("{STORAGE}{LISTENER}"))
            .server_options()
            .limits
            .telemetry;
        assert_eq!(t, Telemetry::default());
        // A block without a retention time keeps Prometheus on for 24 h, as Vault's does.
        let t = parse(&format!(
            "{STORAGE}{LISTENER}telemetry {{\n disable_hostname = true\n}}\n"
        ))
        .server_options()
        .limits
        .telemetry;
        assert_eq!(t.prometheus_retention_time, Duration::from_secs(24 * 3600));
        assert!(t.disable_hostname);
        let t = parse(&format!(
            "{STORAGE}telemetry {{\n prometheus_retention_time = \"0\"\n usage_gauge_period = \"10m\"\n}}\n\
             listener \"tcp\" {{\n tls_disable = true\n telemetry {{\n unauthenticated_metrics_access = true\n }}\n}}\n"
        ));
        assert!(t.warnings.iter().any(|w| w.contains("usage_gauge_period")));
        let t = t.server_options().limits.telemetry;
        assert!(t.prometheus_retention_time.is_zero());
        assert!(t.unauthenticated_metrics_access);
        assert!(
            err(&format!(
                "{STORAGE}{LISTENER}telemetry {{\n statsd_address = \"x:1\"\n}}\n"
            ))
            .contains("`statsd_address`")
        );
        assert!(
            err(&format!(
                "{STORAGE}listener \"tcp\" {{\n tls_disable = true\n telemetry {{\n metrics_only = true\n }}\n}}\n"
            ))
            .contains("`metrics_only`")
        );
    }

    #[test]
    fn vault_style_string_booleans_and_env_unseal() {
        let c = Config::parse(
            r#"
            storage "inmem" {}
            listener "tcp" { tls_disable = "1" }
            auto_unseal { key_env = "LOCKANA_UNSEAL_KEYS" }
            ui = true
            "#,
        )
        .expect("valid config");
        assert!(c.listener.tls.is_none());
        assert!(
            matches!(c.auto_unseal, Some(AutoUnseal::KeyEnv(ref v)) if v == "LOCKANA_UNSEAL_KEYS")
        );
        assert_eq!(c.warnings.len(), 1);
    }

    const STORAGE: &str = "storage \"inmem\" {}\n";
    const LISTENER: &str = "listener \"tcp\" {\n tls_disable = true\n}\n";

    #[test]
    fn tls_without_files_names_the_fix() {
        let e = err(&format!(
            "{STORAGE}listener \"tcp\" {{\n address = \"127.0.0.1:8200\"\n}}"
        ));
        assert!(
            e.contains("tls_cert_file") && e.contains("tls_disable = true"),
            "{e}"
        );
    }

    #[test]
    fn missing_blocks_are_named() {
        assert!(err(LISTENER).contains("missing `storage`"));
        assert!(err(STORAGE).contains("missing `listener"));
        assert!(err(&format!("storage \"redb\" {{}}\n{LISTENER}")).contains("missing `path`"));
    }

    #[test]
    fn unknown_and_unsupported_settings_are_named() {
        let base = format!("{STORAGE}{LISTENER}");
        let listener = |extra: &str| {
            err(&format!(
                "{STORAGE}listener \"tcp\" {{\n tls_disable = true\n {extra}\n}}\n"
            ))
        };
        assert!(err(&format!("{base}foo = 1\n")).contains("unknown setting `foo`"));
        assert!(
            err(&format!(
                "storage \"raft\" {{\n path = \"x\"\n}}\n{LISTENER}"
            ))
            .contains("storage \"raft\"")
        );
        assert!(listener("tls_cert = \"x\"").contains("`tls_cert`"));
        assert!(listener("max_request_size = -1").contains("max_request_size"));
        assert!(listener("address = \"nowhere\"").contains("address"));
        assert!(err(&format!("{base}seal \"awskms\" {{}}\n")).contains("auto_unseal"));
        assert!(err(&format!("{base}log_level = \"loud\"\n")).contains("log_level"));
        assert!(err(&format!("{base}auto_unseal {{}}\n")).contains("key_file"));
    }

    #[test]
    fn two_listeners_are_refused() {
        let e = err(&format!("{STORAGE}{LISTENER}{LISTENER}"));
        assert!(e.contains("only one `listener`"), "{e}");
    }

    #[test]
    fn syntax_errors_are_reported() {
        assert!(matches!(
            Config::parse("storage {"),
            Err(ConfigError::Syntax(_))
        ));
    }
}
