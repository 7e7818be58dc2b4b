//! Lockana: a secrets vault that speaks HashiCorp Vault's API.
//!
//! The library holds the whole vault — storage, the encryption barrier, seal and
//! unseal, the mount table and its secrets engines — and has no HTTP in it. Every
//! transport (the `lockana` server, the Python module, a Rust program) calls
//! [`Vault::handle`] with a [`Request`] and gets the same checks.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod audit;
mod auth;
mod barrier;
mod clock;
mod engine;
mod error;
mod fields;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod ha;
mod help;
mod identity;
mod kv;
mod logical;
mod metrics;
mod mounts;
mod notify;
mod policy;
mod projects;
mod snapshot;
mod storage;
mod sys;
mod totp;
mod transit;
mod vault;

pub use audit::{
    AuditError, ChainBreak, ChainSummary, VerifyOptions, audit_key_id, verify_audit_chain,
    verify_audit_log,
};
pub use barrier::{Cipher, KeyWrapper, SealError, StaticKey, StaticSeal};
pub use clock::{Clock, FakeClock, SystemClock};
pub use error::{BarrierError, Error, IntegrityError, IntegrityKind, Result, StorageError};
pub use ha::{HaConfig, Routing};
pub use logical::{
    Auth, ClientToken, Connection, Operation, RawBody, Request, Response, ResponseFormat, WrapInfo,
};
pub use metrics::{HistogramValue, Metric, MetricValue, MetricsSnapshot};
pub use projects::sealed::{
    ProjectEncryption, ProjectKey, ProjectKeyError, ProjectPublicKey, dotenv, has_envelopes,
    is_envelope,
};
pub use snapshot::{SnapshotInfo, inspect_snapshot};
pub use sys::StorageReport;
pub use vault::{DevCredentials, InitResult, SealStatus, StorageConfig, Vault};
