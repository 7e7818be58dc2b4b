//! The listener: accept loop, TLS, per-connection service and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use lockana::Vault;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower_http::LatencyUnit;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::config::DEFAULT_ADDRESS;
use crate::conn::{Admission, ClockedIo, ConnCaps, ConnClock, InFlight, open_file_limit};
use crate::http::{Limits, RequestStart, dispatch};
use crate::tls::{self, TlsFiles};

/// File descriptors kept back from `max_connections` for storage, audit files and
/// the listener itself.
const RESERVED_FDS: usize = 64;
/// Time a client gets to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for in-flight requests before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Failures of the server (binding, TLS setup, auto-unseal, the vault itself).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {address}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A certificate or key file could not be used.
    #[error("TLS setup failed for {}: {reason}", path.display())]
    Tls {
        /// The file at fault.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Auto-unseal could not unseal the vault.
    #[error("{0}")]
    AutoUnseal(String),
    /// The vault failed (opening, unsealing, closing).
    #[error(transparent)]
    Vault(#[from] lockana::Error),
}

/// How the server listens.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Address to bind; port 0 picks a free port (see [`Server::local_addr`]).
    pub address: SocketAddr,
    /// Certificate and key; `None` serves plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Request limits.
    pub limits: Limits,
}

impl Default for ServerOptions {
    /// Plain HTTP on 127.0.0.1:8200 with the default limits.
    fn default() -> Self {
        ServerOptions {
            address: DEFAULT_ADDRESS
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8200))),
            tls: None,
            limits: Limits::default(),
        }
    }
}

/// A bound server, ready to [`run`](Server::run).
pub struct Server {
    vault: Vault,
    listener: TcpListener,
    local_addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    limits: Arc<Limits>,
}

impl Server {
    /// Binds the listener and loads the TLS certificate, if any. Errors here (port in
    /// use, unreadable certificate) surface before anything is served.
    pub async fn bind(vault: Vault, options: ServerOptions) -> Result<Server, ServerError> {
        let tls = options
            .tls
            .as_ref()
            .map(|files| tls::server_config(files).map(TlsAcceptor::from))
            .transpose()?;
        let listener =
            TcpListener::bind(options.address)
                .await
                .map_err(|source| ServerError::Bind {
                    address: options.address,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
            address: options.address,
            source,
        })?;
        Ok(Server {
            vault,
            listener,
            local_addr,
            tls,
            limits: Arc::new(options.limits),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether the listener speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until `shutdown` completes; then stops accepting, lets in-flight
    /// requests finish (up to 30 s) and closes the vault.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let Server {
            vault,
            listener,
            local_addr,
            tls,
            limits,
        } = self;
        let graceful = GracefulShutdown::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // Header and idle deadlines are kept by `ConnClock`, which also covers a
        // connection that never sends a byte (hyper's header timer starts only once
        // bytes arrive); hyper's own header timer stays off so one clock decides.
        // (hyper's default is 30 s once a timer is set, and it runs while a keep-alive
        // connection waits for its next request: idle connections were closed after
        // 30 s, not Vault's 5 minutes, and a client reusing one just then got no answer.)
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(None);
        let mut max_connections = limits.max_connections;
        if let Some(nofile) = open_file_limit()
            && nofile.saturating_sub(RESERVED_FDS) < max_connections
        {
            max_connections = nofile.saturating_sub(RESERVED_FDS).max(1);
            tracing::warn!(
                configured = limits.max_connections,
                open_file_limit = nofile,
                max_connections,
                "max_connections lowered to fit the open-file limit (raise `ulimit -n` to allow more)"
            );
        }
        let caps = ConnCaps::new(
            max_connections,
            limits.max_connections_per_client,
            limits.rate_limit.exempt_loopback,
        );
        tracing::info!(
            address = %local_addr,
            tls = tls.is_some(),
            max_connections,
            max_connections_per_client = limits.max_connections_per_client,
            "listening"
        );

        let reopen = tokio::spawn(reopen_audit_on_sighup(vault.clone()));
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, remote) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            // Closing at once (dropping the socket) costs the least; the log line
            // is rate-limited inside.
            let Some(admission) = caps.admit(remote.ip()) else {
                drop(stream);
                continue;
            };
            // Answers are small and written whole: don't let Nagle hold the last
            // segment back for the client's delayed ACK (Go, and so OpenBao, does the
            // same by default).
            if let Err(err) = stream.set_nodelay(true) {
                tracing::debug!(%remote, error = %err, "TCP_NODELAY failed");
            }
            let conn = Conn {
                builder: builder.clone(),
                watcher: graceful.watcher(),
                vault: vault.clone(),
                limits: Arc::clone(&limits),
                remote,
                admission,
            };
            match &tls {
                None => {
                    tokio::spawn(conn.serve(stream));
                }
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(stream)) => conn.serve(stream).await,
                            Ok(Err(err)) => {
                                tracing::debug!(%remote, error = %err, "TLS handshake failed");
                            }
                            Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                        }
                    });
                }
            }
        }

        drop(listener);
        tracing::info!("shutting down: waiting for in-flight requests");
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(DRAIN_TIMEOUT) => {
                tracing::warn!("in-flight requests did not finish in time");
            }
        }
        reopen.abort();
        let closing = vault.clone();
        match tokio::task::spawn_blocking(move || closing.close()).await {
            Ok(result) => result?,
            Err(_) => tracing::error!("closing the vault panicked"),
        }
        tracing::info!("vault sealed and closed");
        Ok(())
    }
}

/// Reopens the audit files on SIGHUP (log rotation); the hash chain continues.
async fn reopen_audit_on_sighup(vault: Vault) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: audit files will not be reopened");
            return;
        };
        while hup.recv().await.is_some() {
            let v = vault.clone();
            match tokio::task::spawn_blocking(move || v.reopen_audit_devices()).await {
                Ok(Ok(())) => tracing::info!("SIGHUP: audit devices reopened"),
                Ok(Err(err)) => {
                    tracing::error!(error = %err, "SIGHUP: reopening audit devices failed")
                }
                Err(_) => tracing::error!("SIGHUP: reopening audit devices panicked"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = vault;
}

/// What one connection task needs.
struct Conn {
    builder: auto::Builder<TokioExecutor>,
    watcher: Watcher,
    vault: Vault,
    limits: Arc<Limits>,
    remote: SocketAddr,
    /// Held while the connection is open: its place under the connection caps.
    admission: Admission,
}

impl Conn {
    async fn serve<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Conn {
            builder,
            watcher,
            vault,
            limits,
            remote,
            admission,
        } = self;
        let clock = ConnClock::new(
            limits.read_header_timeout,
            limits.effective_idle_timeout(),
            limits.write_timeout,
        );
        let io = ClockedIo::new(io, Arc::clone(&clock));
        let service_clock = Arc::clone(&clock);
        // Only method, path, status and latency are traced: never the query string
        // (it can carry parameters), headers (tokens) or bodies (secrets).
        // At debug level: a line per request at info cost about a quarter of the read
        // throughput (docs/performance.md); the audit log is the record of requests.
        let service = tower::ServiceBuilder::new()
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(|req: &http::Request<Incoming>| {
                        tracing::debug_span!(
                            "request",
                            method = %req.method(),
                            path = %req.uri().path(),
                        )
                    })
                    .on_request(())
                    .on_response(
                        DefaultOnResponse::new()
                            .level(Level::DEBUG)
                            .latency_unit(LatencyUnit::Micros),
                    )
                    // 5xx are logged where they are mapped (with the reason).
                    .on_failure(()),
            )
            .service_fn(move |mut req: http::Request<Incoming>| {
                let vault = vault.clone();
                let limits = Arc::clone(&limits);
                // Finished on the clock when the answer and any drain of its
                // body are done, however their futures end.
                let (started, in_flight) = InFlight::start(&service_clock);
                req.extensions_mut().insert(RequestStart {
                    at: started,
                    in_flight: Some(Arc::clone(&in_flight)),
                });
                async move {
                    let resp = dispatch(vault, &limits, Some(remote), req).await;
                    drop(in_flight);
                    Ok::<_, Infallible>(resp)
                }
            });
        let conn = builder
            .serve_connection(TokioIo::new(io), TowerToHyperService::new(service))
            .into_owned();
        tokio::select! {
            result = watcher.watch(conn) => {
                if let Err(err) = result {
                    tracing::debug!(%remote, error = %err, "connection closed with an error");
                }
            }
            why = clock.expired() => {
                // Dropping the connection closes the socket.
                tracing::debug!(%remote, reason = ?why, "connection closed: deadline passed");
            }
        }
        drop(admission);
    }
}

/// Binds and serves until `shutdown` completes, then closes the vault.
pub async fn serve(
    vault: Vault,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    Server::bind(vault, options).await?.run(shutdown).await
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
