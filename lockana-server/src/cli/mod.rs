//! The `lockana` command line: `server` and `operator` commands.
//!
//! This is the binary's edge: errors are `anyhow`, and output goes to stdout/stderr.
// Printing is this module's job (banners, tables, keys for the operator).
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod audit;
mod client;
mod log;
mod operator;
mod operator_keys;
mod project;
mod server;
mod snapshot;
mod user;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

const ROOT_EXAMPLES: &str = "\
Examples:
  Start a throwaway in-memory server, unsealed, with root token \"root\":
    $ lockana server --dev --dev-root-token-id=root

  Start a server from a config file:
    $ lockana server --config /etc/lockana/lockana.hcl

  Initialize and unseal it:
    $ export VAULT_ADDR='https://127.0.0.1:8200'
    $ lockana operator init --key-shares 5 --key-threshold 3
    $ lockana operator unseal      # repeat with 3 different keys

Vault-style single-dash flags (-dev, -key-shares=5) are accepted too.";

/// Lockana: a secrets manager that speaks HashiCorp Vault's HTTP API.
#[derive(Debug, Parser)]
#[command(name = "lockana", version, after_help = ROOT_EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a Lockana server (Vault's HTTP API).
    #[command(after_help = server::EXAMPLES)]
    Server(ServerArgs),
    /// Initialize, unseal, seal a server and show its seal status.
    Operator(OperatorArgs),
    /// Work with audit log files.
    Audit(audit::AuditArgs),
    /// Manage Lockana users and their roles (reader, manager, admin) on the server.
    #[command(after_help = user::EXAMPLES)]
    User(user::UserArgs),
    /// Manage projects: variables unlocked by a one-time TOTP code.
    #[command(after_help = project::PROJECT_EXAMPLES)]
    Project(project::ProjectArgs),
    /// Print a project's variables (dotenv or JSON), unlocked by a TOTP code.
    Env(project::EnvArgs),
    /// Run a command with a project's variables in its environment (never on disk).
    Run(project::RunArgs),
    /// Check that a server answers, for container and service health checks. Exit
    /// code: 0 it answers (sealed or not, unless --unsealed), 2 sealed or not
    /// initialized with --unsealed, 1 unreachable or not a Vault API.
    #[command(after_help = HEALTH_EXAMPLES)]
    Health(HealthArgs),
}

const HEALTH_EXAMPLES: &str = "\
Examples:
  The container image's HEALTHCHECK (the server on this host, VAULT_ADDR by default):
    $ lockana health
  Healthy only once unsealed:
    $ lockana health --unsealed
  A TLS listener:
    $ VAULT_ADDR=https://127.0.0.1:8200 VAULT_CACERT=/etc/lockana/ca.pem lockana health";

/// `lockana health` flags.
#[derive(Debug, Args)]
pub(crate) struct HealthArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Healthy only when initialized and unsealed (exit 2 otherwise).
    #[arg(long)]
    unsealed: bool,
}

/// `lockana server` flags.
#[derive(Debug, Args)]
pub(crate) struct ServerArgs {
    /// Path to the HCL config file (storage, listener, auto_unseal, log_level).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "dev",
        conflicts_with = "dev"
    )]
    pub(crate) config: Option<PathBuf>,

    /// Development mode: in-memory storage, initialized and unsealed, plain HTTP,
    /// root token printed. Never use it for real secrets.
    #[arg(long)]
    pub(crate) dev: bool,

    /// Dev mode: use this as the root token instead of a random one
    /// (also VAULT_DEV_ROOT_TOKEN_ID).
    #[arg(
        long,
        value_name = "ID",
        env = "LOCKANA_DEV_ROOT_TOKEN_ID",
        hide_env_values = true
    )]
    pub(crate) dev_root_token_id: Option<String>,

    /// Dev mode: address to listen on (also VAULT_DEV_LISTEN_ADDRESS).
    #[arg(long, value_name = "ADDR", env = "LOCKANA_DEV_LISTEN_ADDRESS")]
    pub(crate) dev_listen_address: Option<SocketAddr>,

    /// Log level: trace, debug, info, warn or error (overrides the config file;
    /// LOCKANA_LOG takes a full tracing filter).
    #[arg(long, value_name = "LEVEL")]
    pub(crate) log_level: Option<String>,
}

/// `lockana operator` flags shared by its subcommands.
#[derive(Debug, Args)]
struct OperatorArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: OperatorCommand,
}

/// How the operator commands reach the server.
#[derive(Debug, Args)]
pub(crate) struct ClientArgs {
    /// Server address.
    #[arg(
        long,
        global = true,
        env = "VAULT_ADDR",
        default_value = "http://127.0.0.1:8200",
        value_name = "URL"
    )]
    pub(crate) address: String,

    /// Token for authenticated calls (`operator seal`).
    #[arg(long, global = true, env = "VAULT_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,

    /// PEM file with the CA certificate(s) that signed the server's certificate.
    #[arg(long, global = true, env = "VAULT_CACERT", value_name = "FILE")]
    pub(crate) ca_cert: Option<PathBuf>,

    /// Do not verify the server's TLS certificate (insecure; for testing only).
    #[arg(long, global = true, env = "VAULT_SKIP_VERIFY")]
    pub(crate) tls_skip_verify: bool,

    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

/// Output format of the operator commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Human-readable.
    Table,
    /// The server's JSON answer.
    Json,
}

/// `lockana operator snapshot` subcommands.
#[derive(Debug, Subcommand)]
enum SnapshotCommand {
    /// Save a snapshot of the running, unsealed server to FILE (mode 0600). Needs a
    /// token allowed to `read` sys/storage/raft/snapshot.
    #[command(after_help = "\
Examples:
  $ lockana operator snapshot save backup.snap
  $ bao operator raft snapshot save backup.snap     # the same file, with the bao CLI")]
    Save {
        /// Where to write the snapshot (written to FILE.partial, then renamed).
        file: PathBuf,
    },
    /// Replace everything the server stores with the snapshot in FILE.
    ///
    /// The file's checksums are checked before anything is replaced, and the
    /// replacement is atomic. A snapshot of this vault restores as is and the vault
    /// stays unsealed. A snapshot of another vault (or of this one before a new init)
    /// needs --force, and afterwards the server is sealed: unseal it with the unseal
    /// keys of the vault the snapshot was taken from, as with Vault.
    #[command(after_help = "\
Examples:
  $ lockana operator snapshot restore backup.snap
  $ lockana operator snapshot restore --force other-vault.snap && lockana operator unseal")]
    Restore {
        /// The snapshot file.
        file: PathBuf,
        /// Restore a snapshot taken by another vault (skips the check that it was
        /// sealed with this vault's keys).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum OperatorCommand {
    /// Initialize a new server: prints the unseal key shares and the root token.
    #[command(after_help = "\
Examples:
  $ lockana operator init
  $ lockana operator init --key-shares 1 --key-threshold 1 --format json
  $ lockana operator init --cipher aes-256-gcm")]
    Init {
        /// Number of unseal key shares to split the unseal key into.
        #[arg(long, default_value_t = 5, value_name = "N")]
        key_shares: u8,
        /// Number of shares needed to unseal.
        #[arg(long, default_value_t = 3, value_name = "T")]
        key_threshold: u8,
        /// Cipher for data at rest (default: the server's, chacha20-poly1305).
        #[arg(long, value_enum)]
        cipher: Option<CipherArg>,
    },
    /// Submit one unseal key share (prompted for, hidden, if not given).
    #[command(after_help = "\
Examples:
  $ lockana operator unseal                 # prompts for the key
  $ lockana operator unseal abcd1234...     # key on the command line (lands in shell history)
  $ lockana operator unseal --reset         # forget shares submitted so far")]
    Unseal {
        /// The unseal key share (hex or base64). Omit to be prompted.
        key: Option<String>,
        /// Discard the shares submitted so far.
        #[arg(long, conflicts_with = "key")]
        reset: bool,
    },
    /// Seal the server (needs a token allowed to `update` sys/seal).
    Seal,
    /// Make the active node of an HA cluster give up the lock, so another node takes
    /// over (needs `sudo` on sys/step-down).
    StepDown,
    /// Show seal status. Exit code: 0 unsealed, 2 sealed, 1 error.
    Status,
    /// Replace the unseal key shares, authorized by a quorum of the current ones.
    #[command(after_help = "\
Examples:
  $ lockana operator rekey --init --key-shares 5 --key-threshold 3 --verify
  $ lockana operator rekey --nonce <nonce>                # each holder: prompts for a current share
  $ lockana operator rekey --verify --nonce <vnonce>      # each new holder: a new share
  $ lockana operator rekey --status
  $ lockana operator rekey --cancel")]
    Rekey {
        /// A share (hex or base64). Omit to be prompted.
        key: Option<String>,
        /// Start a rekey.
        #[arg(long, conflicts_with_all = ["cancel", "status", "key"])]
        init: bool,
        /// Cancel the rekey (with --verify: restart the verification).
        #[arg(long, conflicts_with_all = ["status", "key"])]
        cancel: bool,
        /// Show progress (with --verify: of the verification).
        #[arg(long, conflicts_with = "key")]
        status: bool,
        /// With --init: require the new shares to be entered before they replace the
        /// old ones. Otherwise: submit a new share to that verification.
        #[arg(long)]
        verify: bool,
        /// The nonce printed by --init (or the verification nonce).
        #[arg(long)]
        nonce: Option<String>,
        /// Number of new shares (with --init).
        #[arg(long, default_value_t = 5, value_name = "N")]
        key_shares: u8,
        /// Number of new shares needed to unseal (with --init).
        #[arg(long, default_value_t = 3, value_name = "T")]
        key_threshold: u8,
    },
    /// Mint a new root token with a quorum of unseal key shares (no token needed).
    #[command(after_help = "\
Examples:
  $ lockana operator generate-root --init                # prints the OTP and nonce
  $ lockana operator generate-root --nonce <nonce>       # each holder: prompts for a share
  $ lockana operator generate-root --decode <encoded token> --otp <otp>")]
    GenerateRoot {
        /// An unseal key share (hex or base64). Omit to be prompted.
        key: Option<String>,
        /// Start a root token generation (the server makes the OTP unless --otp).
        #[arg(long, conflicts_with_all = ["cancel", "status", "key", "decode"])]
        init: bool,
        /// Cancel the generation.
        #[arg(long, conflicts_with_all = ["status", "key", "decode"])]
        cancel: bool,
        /// Show progress.
        #[arg(long, conflicts_with_all = ["key", "decode"])]
        status: bool,
        /// The nonce printed by --init.
        #[arg(long)]
        nonce: Option<String>,
        /// Decode this encoded token with --otp (done locally, nothing is sent).
        #[arg(long, value_name = "ENCODED_TOKEN", conflicts_with = "key")]
        decode: Option<String>,
        /// The one-time password (28 characters) for --init or --decode.
        #[arg(long)]
        otp: Option<String>,
    },
    /// Save or restore a snapshot of the whole vault (any storage backend).
    ///
    /// A snapshot is a consistent point-in-time copy of every stored entry, still
    /// encrypted (a stolen snapshot is as safe as the storage file), in the archive
    /// shape of Vault's raft snapshots (`bao operator raft snapshot` reads and writes
    /// the same files). It restores into a server on any backend (redb into
    /// PostgreSQL and back).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Check that every stored entry decrypts; list the damaged ones. Exit code: 0
    /// clean, 2 damage found, 1 error.
    ///
    /// Online (default): asks the running, unsealed server (`sys/storage/verify`;
    /// the token needs `sudo` there). Offline (`--config` or `--path`): opens a
    /// stopped server's storage itself with unseal key shares from `--key-file`,
    /// `--key-env` or the config's `auto_unseal`; it never unseals and writes nothing.
    #[command(
        name = "verify-storage",
        after_help = "\
Examples:
  $ lockana operator verify-storage                                  # the running server
  $ lockana operator verify-storage --config /etc/lockana/lockana.hcl
  $ lockana operator verify-storage --path data/lockana.redb --key-file unseal.keys"
    )]
    VerifyStorage {
        /// Offline: the server's config file (its storage; its auto_unseal shares).
        #[arg(long, value_name = "FILE", conflicts_with = "path")]
        config: Option<PathBuf>,
        /// Offline: a redb data file.
        #[arg(long, value_name = "FILE")]
        path: Option<PathBuf>,
        /// Offline: a file of unseal key shares (one per line or comma-separated).
        #[arg(long, value_name = "FILE", conflicts_with = "key_env")]
        key_file: Option<PathBuf>,
        /// Offline: an environment variable holding the unseal key shares.
        #[arg(long, value_name = "VAR")]
        key_env: Option<String>,
    },
}

/// Ciphers `sys/init` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CipherArg {
    /// ChaCha20-Poly1305 (default).
    #[value(name = "chacha20-poly1305")]
    ChaCha20Poly1305,
    /// XChaCha20-Poly1305 (192-bit nonces).
    #[value(name = "xchacha20-poly1305")]
    XChaCha20Poly1305,
    /// AES-256-GCM.
    #[value(name = "aes-256-gcm")]
    Aes256Gcm,
}

impl CipherArg {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CipherArg::ChaCha20Poly1305 => "chacha20-poly1305",
            CipherArg::XChaCha20Poly1305 => "xchacha20-poly1305",
            CipherArg::Aes256Gcm => "aes-256-gcm",
        }
    }
}

/// Long flags that Vault spells with one dash (`-dev`, `-key-shares=5`).
const VAULT_STYLE_FLAGS: &[&str] = &[
    "dev",
    "dev-root-token-id",
    "dev-listen-address",
    "config",
    "log-level",
    "key-shares",
    "key-threshold",
    "cipher",
    "reset",
    "format",
    "address",
    "token",
    "ca-cert",
    "tls-skip-verify",
    "role",
    "password-stdin",
    "mount",
];

/// Rewrites Vault's single-dash long flags to clap's double-dash form.
fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut rest_verbatim = false;
    for arg in args {
        if rest_verbatim {
            out.push(arg);
            continue;
        }
        let rewritten = arg.to_str().and_then(|s| {
            if s == "--" {
                return None;
            }
            let flag = s.strip_prefix('-').filter(|f| !f.starts_with('-'))?;
            let name = flag.split_once('=').map_or(flag, |(n, _)| n);
            VAULT_STYLE_FLAGS
                .contains(&name)
                .then(|| OsString::from(format!("-{s}")))
        });
        if arg == "--" {
            rest_verbatim = true;
        }
        out.push(rewritten.unwrap_or(arg));
    }
    out
}

/// Parses the command line, runs the command and returns the process exit code.
pub(crate) fn run() -> ExitCode {
    let cli = Cli::parse_from(normalize_args(std::env::args_os()));
    let result = match cli.command {
        Command::Server(args) => server::run(args).map(|()| ExitCode::SUCCESS),
        Command::Operator(op) => operator::run(&op.client, op.command),
        Command::Audit(args) => Ok(audit::run(args)),
        Command::Project(args) => project::run_project(args),
        Command::Env(args) => project::run_env(args),
        Command::Run(args) => project::run_command(args),
        Command::User(args) => user::run(&args),
        Command::Health(args) => operator::health(&args.client, args.unsealed),
    };
    result.unwrap_or_else(|err| {
        eprintln!("Error: {err:#}");
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(normalize_args(args.iter().map(OsString::from)))
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn vault_style_single_dash_flags_are_accepted() {
        let cli = parse(&["lockana", "server", "-dev", "-dev-root-token-id=root"]).expect("parse");
        let Command::Server(args) = cli.command else {
            panic!("not server")
        };
        assert!(args.dev);
        assert_eq!(args.dev_root_token_id.as_deref(), Some("root"));
    }

    #[test]
    fn both_flag_value_forms_are_accepted() {
        for argv in [
            &[
                "lockana",
                "server",
                "--dev",
                "--dev-listen-address",
                "127.0.0.1:0",
            ][..],
            &[
                "lockana",
                "server",
                "--dev",
                "--dev-listen-address=127.0.0.1:0",
            ][..],
        ] {
            let Command::Server(args) = parse(argv).expect("parse").command else {
                panic!("not server")
            };
            assert_eq!(
                args.dev_listen_address,
                Some("127.0.0.1:0".parse().expect("addr"))
            );
        }
    }

    #[test]
    fn server_needs_dev_or_config() {
        assert!(parse(&["lockana", "server"]).is_err());
        assert!(parse(&["lockana", "server", "--dev", "--config", "x.hcl"]).is_err());
        assert!(parse(&["lockana", "server", "--config", "x.hcl"]).is_ok());
    }

    #[test]
    fn operator_init_defaults_and_cipher() {
        let cli = parse(&[
            "lockana",
            "operator",
            "init",
            "-cipher=aes-256-gcm",
            "--format",
            "json",
        ])
        .expect("parse");
        let Command::Operator(op) = cli.command else {
            panic!("not operator")
        };
        assert_eq!(op.client.format, Format::Json);
        let OperatorCommand::Init {
            key_shares,
            key_threshold,
            cipher,
        } = op.command
        else {
            panic!("not init")
        };
        assert_eq!((key_shares, key_threshold), (5, 3));
        assert_eq!(cipher.map(CipherArg::as_str), Some("aes-256-gcm"));
    }

    #[test]
    fn unseal_reset_conflicts_with_key() {
        assert!(parse(&["lockana", "operator", "unseal", "--reset", "abc"]).is_err());
        assert!(parse(&["lockana", "operator", "unseal", "abc"]).is_ok());
    }

    #[test]
    fn run_takes_the_command_after_double_dash() {
        let cli = parse(&[
            "lockana",
            "run",
            "--project",
            "p",
            "--code",
            "123456",
            "--",
            "env",
            "-0",
        ])
        .expect("parse");
        let Command::Run(_) = cli.command else {
            panic!("not run")
        };
        assert!(parse(&["lockana", "run", "--project", "p"]).is_err());
        assert!(parse(&["lockana", "env", "--project", "p", "--format", "json"]).is_ok());
        assert!(parse(&["lockana", "project", "create", "p", "--owner", "o"]).is_ok());
    }

    #[test]
    fn arguments_after_double_dash_are_untouched() {
        let out = normalize_args(["lockana", "--", "-dev"].map(OsString::from));
        assert_eq!(out[2], "-dev");
        let out = normalize_args(["lockana", "-x", "-dev"].map(OsString::from));
        assert_eq!(out[1], "-x");
        assert_eq!(out[2], "--dev");
    }
}
