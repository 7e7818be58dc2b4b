//! `lockana operator snapshot save | restore`: a point-in-time copy of the whole
//! vault (still encrypted) through `sys/storage/raft/snapshot`, on any backend.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::client::Client;

const SNAPSHOT_PATH: &str = "sys/storage/raft/snapshot";
const FORCE_PATH: &str = "sys/storage/raft/snapshot-force";

/// A progress line on stderr: rewritten in place on a terminal, else one line a
/// few seconds apart; always a last line once done.
struct ProgressLine {
    verb: &'static str,
    tty: bool,
    started: Instant,
    last: Option<Instant>,
    /// The amount the last line showed.
    shown: Option<u64>,
}

impl ProgressLine {
    fn new(verb: &'static str) -> Self {
        ProgressLine {
            verb,
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
            last: None,
            shown: None,
        }
    }

    fn update(&mut self, done: u64, total: Option<u64>) {
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(2)
        };
        if self.last.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.last = Some(Instant::now());
        self.print(done, total);
    }

    fn print(&mut self, done: u64, total: Option<u64>) {
        self.shown = Some(done);
        let amount = match total {
            Some(t) => format!("{} of {}", mib(done), mib(t)),
            None => mib(done),
        };
        let line = format!(
            "snapshot: {} {amount} ({:.1} s)",
            self.verb,
            self.started.elapsed().as_secs_f64()
        );
        if self.tty {
            eprint!("\r{line}   ");
        } else {
            eprintln!("{line}");
        }
    }

    fn finish(&mut self, done: u64, total: Option<u64>) {
        if self.shown != Some(done) {
            self.print(done, total);
        }
        if self.tty {
            eprintln!();
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// `snapshot save FILE`: downloads into `FILE.partial`, checks it, then renames it
/// into place, so FILE is never a half-written snapshot.
pub(super) fn save(client: &Client, file: &Path) -> anyhow::Result<ExitCode> {
    let partial = file.with_extension(match file.extension() {
        Some(e) => format!("{}.partial", e.to_string_lossy()),
        None => "partial".into(),
    });
    let mut out = open_private(&partial)?;
    let mut line = ProgressLine::new("received");
    let got = client.download(SNAPSHOT_PATH, &mut out, &mut |n| line.update(n, None));
    let total = match got {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.context("Error taking the snapshot"));
        }
    };
    line.finish(total, None);
    out.sync_all().context("writing the snapshot")?;
    drop(out);
    let bytes = std::fs::read(&partial).context("reading the snapshot back")?;
    let info = match lockana::inspect_snapshot(&bytes) {
        Ok(info) => info,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            bail!("Error taking the snapshot: the server's answer is not a valid snapshot: {e}");
        }
    };
    std::fs::rename(&partial, file)
        .with_context(|| format!("moving the snapshot to {}", file.display()))?;
    println!(
        "Snapshot saved to {}: {} entries from {} storage, {} (still encrypted: restoring it needs the vault's unseal keys).",
        file.display(),
        info.entries,
        info.storage_type,
        mib(total)
    );
    Ok(ExitCode::SUCCESS)
}

/// Creates (truncating) a file only its owner can read.
fn open_private(path: &Path) -> anyhow::Result<std::fs::File> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

/// `snapshot restore FILE [--force]`: checks the file locally, uploads it, and says
/// whether the vault came back unsealed.
pub(super) fn restore(client: &Client, file: &Path, force: bool) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    // The server checks too; checking here refuses a damaged file before sending it.
    let info = lockana::inspect_snapshot(&bytes)
        .map_err(|e| anyhow::anyhow!("Error installing the snapshot: {e}"))?;
    let total = bytes.len() as u64;
    let mut line = ProgressLine::new("sent");
    let path = if force { FORCE_PATH } else { SNAPSHOT_PATH };
    let sent = client.upload(path, bytes, &mut |n, t| line.update(n, Some(t)));
    line.finish(total, Some(total));
    sent.context("Error installing the snapshot")?;
    let (_, status) = client.call("GET", "sys/seal-status", None)?;
    let sealed = status
        .as_ref()
        .and_then(|s| s.get("sealed"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(true);
    println!(
        "Snapshot restored: {} entries from {} storage.",
        info.entries, info.storage_type
    );
    if sealed {
        println!(
            "The vault is sealed: unseal it with the unseal keys of the vault the snapshot was taken from (lockana operator unseal)."
        );
    } else {
        println!("The vault is unsealed and serves the restored data.");
    }
    std::io::stdout().flush().ok();
    Ok(ExitCode::SUCCESS)
}
