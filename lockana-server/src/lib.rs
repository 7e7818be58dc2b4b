//! Lockana's HTTP server: Vault's HTTP API in front of a [`lockana::Vault`].
//!
//! The server only translates: HTTP method, path, headers and JSON to a
//! [`lockana::Request`], the [`lockana::Response`] back to Vault's JSON shapes, and
//! [`lockana::Error`] to Vault's `{"errors": [...]}` with the right status.
//!
//! ```no_run
//! # async fn run() -> Result<(), lockana_server::ServerError> {
//! let (vault, _creds) = lockana::Vault::dev(None)?;
//! let server = lockana_server::Server::bind(vault, lockana_server::ServerOptions::default()).await?;
//! println!("listening on {}", server.local_addr());
//! server.run(lockana_server::shutdown_signal()).await
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod api_client;
mod config;
mod conn;
mod harden;
mod http;
mod server;
mod tls;
mod transit_seal;
mod unseal;

pub use api_client::api_agent;
pub use config::{
    Config, ConfigError, DEFAULT_ADDRESS, Declared, ListenerConfig, LogFormat,
    REDB_FILE_IN_DIRECTORY, Seal, StorageOptions,
};
pub use harden::{Hardening, MemoryLock, harden_process};
pub use http::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
    DEFAULT_MAX_JSON_ARRAY_ELEMENT_COUNT, DEFAULT_MAX_JSON_DEPTH,
    DEFAULT_MAX_JSON_OBJECT_ENTRY_COUNT, DEFAULT_MAX_JSON_STRING_VALUE_LENGTH,
    DEFAULT_MAX_REQUEST_JSON_MEMORY, DEFAULT_MAX_REQUEST_JSON_STRINGS, DEFAULT_MAX_REQUEST_SIZE,
    DEFAULT_RATE_BURST, DEFAULT_RATE_PER_SECOND, DEFAULT_READ_HEADER_TIMEOUT, DEFAULT_READ_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT, HaForwarding, JsonLimits, Limits, RateBuckets, RateLimit, Telemetry,
    respond,
};
pub use server::{Server, ServerError, ServerOptions, serve, shutdown_signal};
pub use tls::{TlsFiles, TlsVersion};
pub use unseal::{AutoUnseal, auto_unseal, read_shares};
