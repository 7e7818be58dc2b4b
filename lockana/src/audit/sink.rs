//! Where a device's lines go: a file (append, created 0600), stdout, or nowhere.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use super::chain::{claimed_hash, claimed_seq};

/// How far back from the end of an existing file the chain head is looked for.
const TAIL_SCAN: u64 = 1 << 20;

pub(crate) enum Target {
    File(PathBuf),
    Stdout,
    Discard,
}

impl Target {
    /// Vault's spellings: `stdout` and `discard` are not files.
    pub(crate) fn from_file_path(p: &str) -> Target {
        match p {
            "stdout" => Target::Stdout,
            "discard" => Target::Discard,
            p => Target::File(PathBuf::from(p)),
        }
    }
}

/// An open destination.
pub(crate) enum Sink {
    File(File),
    Stdout,
    Discard,
}

impl Sink {
    pub(crate) fn open(target: &Target, mode: u32) -> std::io::Result<Sink> {
        match target {
            Target::Stdout => Ok(Sink::Stdout),
            Target::Discard => Ok(Sink::Discard),
            Target::File(path) => {
                let mut opts = OpenOptions::new();
                opts.append(true).create(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(mode);
                }
                #[cfg(not(unix))]
                let _ = mode;
                Ok(Sink::File(opts.open(path)?))
            }
        }
    }

    /// One whole line: a single `write_all` on an `O_APPEND` file (no user-space
    /// buffer, so nothing waits in this process), then `fsync` if asked.
    pub(crate) fn write_line(&mut self, line: &[u8], fsync: bool) -> std::io::Result<()> {
        match self {
            Sink::File(f) => {
                f.write_all(line)?;
                if fsync {
                    f.sync_data()?;
                }
                Ok(())
            }
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(line)?;
                out.flush()
            }
            Sink::Discard => Ok(()),
        }
    }

    /// The chain head left by an earlier run: the hash (and `lockana_seq`, if it has
    /// one) of the last chained line in the file's tail, if any. Also whether the file
    /// ends mid-line (a torn write).
    pub(crate) fn tail_head(target: &Target) -> (Option<(String, Option<u64>)>, bool) {
        let Target::File(path) = target else {
            return (None, false);
        };
        let Ok(mut f) = File::open(path) else {
            return (None, false);
        };
        // Devices (/dev/full, /dev/null, a FIFO) have no tail to read: some never end.
        if !f.metadata().is_ok_and(|m| m.is_file()) {
            return (None, false);
        }
        let Ok(len) = f.seek(SeekFrom::End(0)) else {
            return (None, false);
        };
        let start = len.saturating_sub(TAIL_SCAN);
        let mut buf = Vec::new();
        if f.seek(SeekFrom::Start(start)).is_err()
            || (&mut f).take(TAIL_SCAN).read_to_end(&mut buf).is_err()
        {
            return (None, false);
        }
        let torn = !buf.is_empty() && !buf.ends_with(b"\n");
        let head = buf
            .split(|b| *b == b'\n')
            .rev()
            .find_map(|line| claimed_hash(line).map(|h| (h, claimed_seq(line))));
        (head, torn)
    }
}
