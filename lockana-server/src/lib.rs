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

mod config;
mod http;
mod server;
mod tls;
mod unseal;

pub use config::{Config, ConfigError, DEFAULT_ADDRESS, Declared, ListenerConfig};
pub use http::{
    DEFAULT_MAX_JSON_DEPTH, DEFAULT_MAX_REQUEST_SIZE, DEFAULT_RATE_BURST, DEFAULT_RATE_PER_SECOND,
    DEFAULT_REQUEST_TIMEOUT, Limits, RateBuckets, RateLimit,
};
pub use server::{Server, ServerError, ServerOptions, serve, shutdown_signal};
pub use tls::TlsFiles;
pub use unseal::{AutoUnseal, auto_unseal};
