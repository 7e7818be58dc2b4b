//! `lockana audit verify FILE...`: checks the hash chain of audit log files, and
//! compares its end with the head the vault recorded (`--address`) or a copy
//! (`--head`), so lines cut from the end are detected too.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use lockana::{ChainSummary, VerifyOptions};
use serde_json::Value;

use super::client::Client;
use super::{ClientArgs, Format};

/// `lockana audit` flags.
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the hash chain of audit files: names the first edited, deleted,
    /// inserted or reordered line; with --address or --head also lines cut from the
    /// end. Exit code: 0 intact, 1 broken, 2 unreadable or unreachable.
    #[command(after_help = "\
Examples:
  $ lockana audit verify /var/log/lockana/audit.log
  Rotated files, oldest first (the chain continues across them):
  $ lockana audit verify audit.log.2 audit.log.1 audit.log
  Against the head the vault recorded (needs a token with sudo on sys/lockana/audit-head):
  $ VAULT_TOKEN=... lockana audit verify audit.log --address https://vault:8200
  Offline, against a head and public key copied from `GET /v1/sys/lockana/audit-head`:
  $ lockana audit verify audit.log --head 3f2a... --head-seq 1042 --public-key 9c1d...")]
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// Audit files, oldest first.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// The expected hash of the last line (`lockana_hash`), e.g. from a copy shipped
    /// off the machine: lines cut from the end are then detected too.
    #[arg(long, value_name = "SHA256", conflicts_with = "address")]
    head: Option<String>,
    /// The `lockana_seq` of that head: the report then says how many lines are missing.
    #[arg(long, value_name = "N", requires = "head")]
    head_seq: Option<u64>,
    /// Read the device's recorded head (and the audit public key) from this vault.
    #[arg(long, value_name = "URL")]
    address: Option<String>,
    /// The audit device the files belong to (default: the device whose file_path is
    /// the last FILE, or the only device).
    #[arg(long, value_name = "PATH", requires = "address")]
    device: Option<String>,
    /// The vault's audit public key (hex Ed25519), pinned: checkpoint signatures are
    /// checked with it.
    #[arg(long, value_name = "HEX")]
    public_key: Option<String>,
    /// Token for --address (needs sudo on sys/lockana/audit-head).
    #[arg(long, env = "VAULT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// PEM file with the CA certificate(s) that signed the server's certificate.
    #[arg(long, env = "VAULT_CACERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Do not verify the server's TLS certificate (insecure; for testing only).
    #[arg(long, env = "VAULT_SKIP_VERIFY")]
    tls_skip_verify: bool,
}

pub(crate) fn run(args: AuditArgs) -> ExitCode {
    match args.command {
        AuditCommand::Verify(v) => match verify(&v) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("Error: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}

/// The head to compare the files' end with.
struct Expected {
    hash: String,
    seq: Option<u64>,
    source: String,
}

fn verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let mut public_key = match &args.public_key {
        Some(k) => Some(
            hex::decode(k.trim())
                .ok()
                .filter(|k| k.len() == 32)
                .context("--public-key must be 64 hex digits (an Ed25519 public key)")?,
        ),
        None => None,
    };
    // The vault's head is read before the files: lines appended meanwhile then show
    // as "ahead", never as missing.
    let expected = match (&args.address, &args.head) {
        (Some(address), _) => {
            let (expected, key) = vault_head(args, address)?;
            match &public_key {
                Some(pinned) if *pinned != key => bail!(
                    "the vault's audit public key ({}) is not the one given with --public-key",
                    hex::encode(&key)
                ),
                _ => public_key = Some(key),
            }
            Some(expected)
        }
        (None, Some(h)) => Some(Expected {
            hash: h.trim().to_owned(),
            seq: args.head_seq,
            source: "--head".into(),
        }),
        (None, None) => None,
    };
    let mut readers = Vec::with_capacity(args.files.len());
    for f in &args.files {
        let file = File::open(f).with_context(|| format!("cannot read {}", f.display()))?;
        readers.push(BufReader::new(file));
    }
    let options = VerifyOptions {
        expected_head: expected.as_ref().map(|e| e.hash.clone()),
        public_key,
    };
    let summary = match lockana::verify_audit_log(readers, &options) {
        Ok(s) => s,
        Err(Ok(brk)) => {
            let file = args
                .files
                .get(brk.file)
                .map_or_else(String::new, |f| f.display().to_string());
            eprintln!("BROKEN: {file}:{}: {}", brk.line, brk.reason);
            return Ok(ExitCode::from(1));
        }
        Err(Err(e)) => bail!("reading the audit files failed: {e}"),
    };
    notes(args, &summary, options.public_key.is_some());
    if let Some(expected) = &expected
        && !head_matches(&summary, expected)
    {
        return Ok(ExitCode::from(1));
    }
    let start = if summary.starts_at_genesis() {
        "starts at the device's first entry".to_owned()
    } else {
        match &summary.starts_from {
            Some(h) => format!("continues from an earlier file (previous hash {h})"),
            None => "is empty".to_owned(),
        }
    };
    let seq = summary
        .last_seq
        .map_or_else(String::new, |s| format!(" (lockana_seq {s})"));
    println!(
        "OK: {} line(s) in {} file(s); the chain {start}; head {}{seq}",
        summary.lines,
        args.files.len(),
        summary.head.as_deref().unwrap_or("-")
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints what verified but deserves a word: partial lines, checkpoints.
fn notes(args: &VerifyArgs, s: &ChainSummary, key: bool) {
    for (file, line) in &s.torn_lines {
        let name = args
            .files
            .get(*file)
            .map_or_else(String::new, |f| f.display().to_string());
        eprintln!(
            "note: {name}:{line}: a partial line from a write that failed mid-line (disk full?); the chain continues over it"
        );
    }
    if s.torn_tail {
        eprintln!(
            "note: the last line is incomplete (a write that failed mid-line, or a cut); the chain verifies up to the line before it"
        );
    }
    if key {
        eprintln!(
            "checkpoints: {} signed checkpoint(s) verified; {} line(s) after the last one",
            s.checkpoints_verified, s.lines_after_checkpoint
        );
    } else if s.checkpoints > 0 {
        eprintln!(
            "checkpoints: {} found, signatures not checked (give --public-key or --address)",
            s.checkpoints
        );
    }
}

/// Compares the files' end with the recorded head; prints the verdict on mismatch.
fn head_matches(s: &ChainSummary, expected: &Expected) -> bool {
    match s.lines_after_expected_head {
        Some(0) => {
            eprintln!(
                "head: the last line is the head recorded by {}",
                expected.source
            );
            true
        }
        Some(n) => {
            eprintln!(
                "head: the files are ahead of the head recorded by {} by {n} line(s) \
                 (written after the head was read, or just before a crash)",
                expected.source
            );
            true
        }
        None => {
            let missing = match (expected.seq, s.last_seq) {
                (Some(want), Some(have)) if want > have => {
                    format!("{} line(s) are missing from the end", want - have)
                }
                (Some(want), None) if !s.starts_at_genesis() || s.lines == 0 => {
                    format!("lines are missing from the end (the head is lockana_seq {want})")
                }
                (Some(want), None) if want > s.lines => {
                    format!("{} line(s) are missing from the end", want - s.lines)
                }
                _ => "lines were cut from the end, or the files belong to another device, \
                      or the newest file is missing"
                    .to_owned(),
            };
            eprintln!(
                "BROKEN: the head recorded by {} ({}{}) is not in these files: {missing}",
                expected.source,
                expected
                    .seq
                    .map_or_else(String::new, |s| format!("lockana_seq {s}, ")),
                expected.hash
            );
            false
        }
    }
}

/// Reads `sys/lockana/audit-head` and picks the device the files belong to.
fn vault_head(args: &VerifyArgs, address: &str) -> anyhow::Result<(Expected, Vec<u8>)> {
    let client = Client::new(&ClientArgs {
        address: address.to_owned(),
        token: args.token.clone(),
        ca_cert: args.ca_cert.clone(),
        tls_skip_verify: args.tls_skip_verify,
        format: Format::Table,
    })?;
    let (_, body) = client.call("GET", "sys/lockana/audit-head", None)?;
    let data = body
        .as_ref()
        .and_then(|b| b.get("data"))
        .context("the vault's answer has no data")?;
    let key = data
        .get("public_key")
        .and_then(Value::as_str)
        .and_then(|k| hex::decode(k).ok())
        .context("the vault's answer has no audit public key")?;
    let devices = data
        .get("devices")
        .and_then(Value::as_object)
        .context("the vault's answer lists no devices")?;
    let name = match &args.device {
        Some(d) => format!("{}/", d.trim_matches('/')),
        None => pick_device(devices, args.files.last().map(PathBuf::as_path))?,
    };
    let dev = devices
        .get(&name)
        .with_context(|| format!("the vault has no audit device {name:?}"))?;
    let hash = dev
        .get("hash")
        .and_then(Value::as_str)
        .context("the vault's answer has no head hash")?
        .to_owned();
    let seq = dev.get("seq").and_then(Value::as_u64);
    Ok((
        Expected {
            hash,
            seq,
            source: format!("the vault (device {name})"),
        },
        key,
    ))
}

fn pick_device(
    devices: &serde_json::Map<String, Value>,
    file: Option<&Path>,
) -> anyhow::Result<String> {
    let canonical = |p: &Path| std::fs::canonicalize(p).ok();
    if let Some(file) = file.and_then(canonical) {
        for (name, d) in devices {
            if let Some(fp) = d.get("file_path").and_then(Value::as_str)
                && canonical(Path::new(fp)).as_ref() == Some(&file)
            {
                return Ok(name.clone());
            }
        }
    }
    if devices.len() == 1
        && let Some(name) = devices.keys().next()
    {
        return Ok(name.clone());
    }
    let names: Vec<&str> = devices.keys().map(String::as_str).collect();
    bail!(
        "cannot tell which audit device the files belong to: give --device (the vault has {})",
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    )
}
