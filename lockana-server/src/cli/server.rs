//! `lockana server`: dev mode or a config file.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use lockana::{StorageConfig, Vault};
use lockana_server::{
    Config, DEFAULT_ADDRESS, LogFormat, Server, ServerOptions, auto_unseal, harden_process,
    shutdown_signal,
};

use super::ServerArgs;

pub(crate) const EXAMPLES: &str = "\
Examples:
  In-memory dev server on 127.0.0.1:8200 with root token \"root\":
    $ lockana server --dev --dev-root-token-id root

  Dev server on another address:
    $ lockana server --dev --dev-listen-address=127.0.0.1:8300

  Production-style server:
    $ lockana server --config /etc/lockana/lockana.hcl

  A Vault or OpenBao server config works too (Vault's `-config` spelling as well),
  if it uses only what Lockana has: storage \"raft\"/\"file\" become a redb file in
  their directory, seal \"static\" and \"transit\" auto-unseal; anything else is
  listed, with its line, in one error. docs/operations.md has the table.

  Config file:
    storage \"redb\" { path = \"/var/lib/lockana/lockana.redb\" }
    listener \"tcp\" {
      address       = \"0.0.0.0:8200\"
      tls_cert_file = \"/etc/lockana/tls.crt\"
      tls_key_file  = \"/etc/lockana/tls.key\"
    }
    auto_unseal { key_file = \"/etc/lockana/unseal.keys\" }   # optional
    log_level = \"info\"
    disable_mlock = false   # memory is locked where permitted (CAP_IPC_LOCK or
                            # an unlimited memlock limit); a warning says if not

At start the server disables core dumps, makes itself non-dumpable (no ptrace by
the same user) and locks its memory. SIGTERM or SIGINT: finish in-flight requests,
seal, close the storage, exit 0. SIGHUP: reopen the audit files (log rotation).";

pub(crate) fn run(args: ServerArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    if args.dev {
        dev(&args, &runtime)
    } else {
        let path = args
            .config
            .as_deref()
            .context("either --dev or --config FILE is required")?;
        let config =
            Config::from_file(path).with_context(|| format!("config file {}", path.display()))?;
        super::log::init(
            args.log_level.as_deref().or(config.log_level.as_deref()),
            config.log_format,
        )?;
        for warning in &config.warnings {
            tracing::warn!("config: {warning}");
        }
        for notice in &config.notices {
            tracing::info!("config: {notice}");
        }
        // Before the storage is opened and anything is unsealed.
        harden_process(!config.disable_mlock).log();
        with_config(&config, &runtime)
    }
}

fn dev(args: &ServerArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    super::log::init(args.log_level.as_deref(), LogFormat::Standard)?;
    // Dev mode does not lock memory, as Vault's dev mode sets `disable_mlock`.
    harden_process(false).log();
    let root_token_id = args
        .dev_root_token_id
        .clone()
        .or_else(|| std::env::var("VAULT_DEV_ROOT_TOKEN_ID").ok())
        .filter(|t| !t.is_empty());
    let address = match args.dev_listen_address {
        Some(address) => address,
        None => match std::env::var("VAULT_DEV_LISTEN_ADDRESS") {
            Ok(text) => text
                .parse()
                .with_context(|| format!("VAULT_DEV_LISTEN_ADDRESS={text:?} is not host:port"))?,
            Err(_) => DEFAULT_ADDRESS.parse::<SocketAddr>()?,
        },
    };
    let (vault, creds) = Vault::dev(root_token_id).context("starting the dev vault")?;
    let options = ServerOptions {
        address,
        tls: None,
        // As Vault's dev server: Prometheus on, metrics readable without a token.
        limits: lockana_server::Limits {
            telemetry: lockana_server::Telemetry::dev(),
            ..Default::default()
        },
    };
    let server = runtime
        .block_on(Server::bind(vault, options))
        .context("starting the listener")?;
    let addr = format!("http://{}", server.local_addr());
    println!(
        "\
==> Lockana server configuration:

             Api Address: {addr}
                     Cgo: disabled
         Cluster Address: n/a
              Listener 1: tcp (addr: \"{local}\", tls: \"disabled\")
               Log Level: {level}
                 Storage: inmem
                 Version: Lockana v{version}

==> Lockana server started! Log data will stream in below:

WARNING! dev mode is enabled! In this mode, Lockana runs entirely in-memory
and starts unsealed with a single unseal key. The root token is already
authenticated to the CLI, so you can immediately begin using Lockana.

You may need to set the following environment variables:

    $ export VAULT_ADDR='{addr}'

The unseal key and root token are displayed below in case you want to
seal/unseal the Vault or re-authenticate.

Unseal Key: {unseal}
Root Token: {root}

Development mode should NOT be used in production installations!
",
        local = server.local_addr(),
        level = args.log_level.as_deref().unwrap_or("info"),
        version = env!("CARGO_PKG_VERSION"),
        unseal = creds.unseal_key_base64,
        root = creds.root_token.expose(),
    );
    runtime
        .block_on(server.run(shutdown_signal()))
        .context("server stopped with an error")
}

fn with_config(config: &Config, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let storage = match &config.storage {
        StorageConfig::Memory => "inmem".to_owned(),
        StorageConfig::Redb(path) => format!("redb ({})", path.display()),
        // Never the URL: it may hold a password.
        StorageConfig::Postgres { table, .. } => format!("postgresql (table {table})"),
    };
    if let StorageConfig::Redb(file) = &config.storage {
        create_parent(file)?;
    }
    let vault = match &config.ha {
        Some(ha) => Vault::open_ha(config.storage.clone(), ha.clone()),
        None => Vault::open(config.storage.clone()),
    }
    .with_context(|| format!("opening the {storage} storage"))?;
    config.apply(&vault)?;
    if let Some(seal) = &config.seal {
        vault
            .unseal_with_seal()
            .with_context(|| format!("auto-unseal with the {} seal failed", seal.kind))?;
    } else if let Some(source) = &config.auto_unseal {
        auto_unseal(&vault, source)?;
    }
    let _pid_file = config.pid_file.as_ref().map(PidFile::write).transpose()?;
    let server = runtime
        .block_on(Server::bind(vault.clone(), config.server_options()))
        .context("starting the listener")?;
    let scheme = if server.is_tls() { "https" } else { "http" };
    println!(
        "\
==> Lockana server configuration:

             Api Address: {api_addr}
         Cluster Address: {cluster_addr}
                 HA Mode: {ha_mode}
              Listener 1: tcp (addr: \"{addr}\", tls: \"{tls}\", max_request_size: \"{max}\")
                    Seal: {seal}
                 Storage: {storage}
                 Version: Lockana v{version}

==> Lockana server started! Log data will stream in below:
",
        addr = server.local_addr(),
        ha_mode = match &config.ha {
            Some(h) if config.ha_redirect =>
                format!("enabled (lock table {}, redirect)", h.ha_table),
            Some(h) => format!("enabled (lock table {}, forwarding)", h.ha_table),
            None => "disabled".to_owned(),
        },
        tls = if server.is_tls() {
            "enabled"
        } else {
            "disabled"
        },
        max = config.listener.max_request_size,
        version = env!("CARGO_PKG_VERSION"),
        api_addr = config
            .api_addr
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{}", server.local_addr())),
        cluster_addr = config.cluster_addr.as_deref().unwrap_or("n/a"),
        seal = config.seal.as_ref().map_or("shamir", |s| s.kind.as_str()),
    );
    let status = vault.seal_status();
    if !status.initialized {
        tracing::warn!("the vault is not initialized: run `lockana operator init`");
    } else if status.sealed {
        tracing::warn!(
            threshold = status.threshold,
            "the vault is sealed: run `lockana operator unseal` with {} key share(s)",
            status.threshold
        );
    }
    runtime
        .block_on(server.run(shutdown_signal()))
        .context("server stopped with an error")
}

/// Creates the directory a redb file goes in (a Vault raft or file `path`), readable
/// by the server's user only, as Vault's raft directory is.
fn create_parent(file: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the storage directory {}", dir.display()))
}

/// Vault's `pid_file`: the process id, written at start and removed at exit.
struct PidFile(PathBuf);

impl PidFile {
    fn write(path: &PathBuf) -> anyhow::Result<PidFile> {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing pid_file {}", path.display()))?;
        Ok(PidFile(path.clone()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
