//! `lockana audit verify FILE...`: checks the hash chain of audit log files.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

/// `lockana audit` flags.
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the hash chain of audit files: names the first edited, deleted,
    /// inserted, reordered or truncated line. Exit code: 0 intact, 1 broken, 2 unreadable.
    #[command(after_help = "\
Examples:
  $ lockana audit verify /var/log/lockana/audit.log
  Rotated files, oldest first (the chain continues across them):
  $ lockana audit verify audit.log.2 audit.log.1 audit.log
  Also detect whole lines cut from the end, against a head hash recorded elsewhere:
  $ lockana audit verify audit.log --head 3f2a...")]
    Verify {
        /// Audit files, oldest first.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// The expected hash of the last line (`lockana_hash`), e.g. from a copy
        /// shipped off the machine: lines cut from the end are then detected too.
        #[arg(long, value_name = "SHA256")]
        head: Option<String>,
    },
}

pub(crate) fn run(args: AuditArgs) -> ExitCode {
    match args.command {
        AuditCommand::Verify { files, head } => verify(&files, head.as_deref()),
    }
}

fn verify(files: &[PathBuf], head: Option<&str>) -> ExitCode {
    let mut readers = Vec::with_capacity(files.len());
    for f in files {
        match File::open(f) {
            Ok(file) => readers.push(BufReader::new(file)),
            Err(e) => {
                eprintln!("Error: cannot read {}: {e}", f.display());
                return ExitCode::from(2);
            }
        }
    }
    match lockana::verify_audit_chain(readers) {
        Ok(summary) => {
            if let Some(expected) = head
                && summary.head.as_deref() != Some(expected.trim())
            {
                eprintln!(
                    "BROKEN: the last line's hash is {} but {expected} was expected: lines were cut from the end",
                    summary.head.as_deref().unwrap_or("(no lines)")
                );
                return ExitCode::from(1);
            }
            let start = if summary.starts_at_genesis() {
                "starts at the device's first entry".to_owned()
            } else {
                match &summary.starts_from {
                    Some(h) => format!("continues from an earlier file (previous hash {h})"),
                    None => "is empty".to_owned(),
                }
            };
            println!(
                "OK: {} line(s) in {} file(s); the chain {start}; head {}",
                summary.lines,
                files.len(),
                summary.head.as_deref().unwrap_or("-")
            );
            ExitCode::SUCCESS
        }
        Err(Ok(brk)) => {
            let file = files
                .get(brk.file)
                .map_or_else(String::new, |f| f.display().to_string());
            eprintln!("BROKEN: {file}:{}: {}", brk.line, brk.reason);
            ExitCode::from(1)
        }
        Err(Err(e)) => {
            eprintln!("Error: reading the audit files failed: {e}");
            ExitCode::from(2)
        }
    }
}
