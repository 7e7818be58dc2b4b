//! The hash chain that makes an audit file tamper-evident (Lockana's addition to
//! Vault's entry format).
//!
//! Each line is Vault's JSON entry with two fields appended by hand, last:
//!
//! ```text
//! {...vault entry...,"lockana_prev_hash":"<P>","lockana_hash":"<H>"}
//! ```
//!
//! `H = sha256(line bytes up to, not including, ,"lockana_hash":")` covers the entry
//! and `P`; `P` is the previous line's `H` (64 zeros for a device's first line). An
//! edited line fails its own `H`; a deleted, inserted or reordered line breaks the
//! next line's `P`; a torn last write has no newline or no `H`. Whole lines cut from
//! the end leave a valid shorter chain: compare the last hash with a head recorded
//! elsewhere (`verify --head`).

use std::fmt;
use std::io::BufRead;

use sha2::{Digest, Sha256};

/// `P` of the first line a device ever writes.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const HASH_FIELD: &str = ",\"lockana_hash\":\"";
const PREV_FIELD: &str = ",\"lockana_prev_hash\":\"";

/// Appends the chain fields to a serialized entry (`{...}`); returns the line
/// (with its newline) and its hash.
pub(crate) fn seal_line(body: &str, prev: &str) -> (Vec<u8>, String) {
    let open = body.strip_suffix('}').unwrap_or(body);
    let mut line = Vec::with_capacity(body.len() + 2 * 64 + 48);
    line.extend_from_slice(open.as_bytes());
    line.extend_from_slice(PREV_FIELD.as_bytes());
    line.extend_from_slice(prev.as_bytes());
    line.push(b'"');
    let hash = hex::encode(Sha256::digest(&line));
    line.extend_from_slice(HASH_FIELD.as_bytes());
    line.extend_from_slice(hash.as_bytes());
    line.extend_from_slice(b"\"}\n");
    (line, hash)
}

/// The `H` a well-formed line claims, without checking it (used to resume a chain
/// from the tail of an existing file).
pub(crate) fn claimed_hash(line: &[u8]) -> Option<String> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let tail = line.strip_suffix(b"\"}")?;
    if tail.len() < 64 + HASH_FIELD.len() {
        return None;
    }
    let (head, hash) = tail.split_at(tail.len() - 64);
    if !head.ends_with(HASH_FIELD.as_bytes()) || !hash.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    String::from_utf8(hash.to_vec()).ok()
}

/// Where and why a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// Index of the file in the list given to [`verify_audit_chain`] (0-based).
    pub file: usize,
    /// Line number in that file (1-based).
    pub line: u64,
    /// What is wrong, for an operator.
    pub reason: String,
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// The outcome of checking an intact chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    /// Lines checked, all files together.
    pub lines: u64,
    /// The first line's `lockana_prev_hash`: [`GENESIS`]-like zeros when the chain
    /// starts in these files, otherwise the hash of an earlier (rotated) file's last line.
    pub starts_from: Option<String>,
    /// The last line's hash (the chain head), to compare with a recorded one.
    pub head: Option<String>,
}

impl ChainSummary {
    /// Whether the first file begins the device's chain (rather than continuing a
    /// rotated-away file).
    pub fn starts_at_genesis(&self) -> bool {
        self.starts_from.as_deref() == Some(GENESIS)
    }
}

/// Checks the hash chain across `files`, in order (a rotated file first, then its
/// successor). Returns the first broken line, or a summary. I/O errors are returned
/// as `Err(Err(io))`.
pub fn verify_audit_chain<R: BufRead>(
    files: impl IntoIterator<Item = R>,
) -> Result<ChainSummary, Result<ChainBreak, std::io::Error>> {
    let mut prev: Option<String> = None;
    let mut summary = ChainSummary {
        lines: 0,
        starts_from: None,
        head: None,
    };
    for (file, mut reader) in files.into_iter().enumerate() {
        let mut line_no = 0u64;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf).map_err(Err)?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let brk = |reason: String| {
                Err(Ok(ChainBreak {
                    file,
                    line: line_no,
                    reason,
                }))
            };
            let Some(body) = buf.strip_suffix(b"\n") else {
                return brk(
                    "the file ends in the middle of this line (truncated tail or torn write)"
                        .into(),
                );
            };
            let Some(claimed) = claimed_hash(body) else {
                return brk("no lockana_hash at the end of the line (edited, truncated, or not a Lockana audit line)".into());
            };
            let content = &body[..body.len() - 64 - HASH_FIELD.len() - 2];
            if hex::encode(Sha256::digest(content)) != claimed {
                return brk(
                    "the line's content does not match its lockana_hash: this line was edited"
                        .into(),
                );
            }
            let parsed: serde_json::Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(_) => return brk("the line is not valid JSON: this line was edited".into()),
            };
            let Some(p) = parsed.get("lockana_prev_hash").and_then(|v| v.as_str()) else {
                return brk("the line has no lockana_prev_hash: this line was edited".into());
            };
            match &prev {
                None => summary.starts_from = Some(p.to_owned()),
                Some(expected) if expected != p => {
                    let what = if line_no == 1 {
                        "this file does not continue the previous file: a file is missing, out of order, or lines were cut from the end of the previous file".to_owned()
                    } else {
                        format!(
                            "this line does not follow line {}: lines were deleted, inserted or reordered here",
                            line_no - 1
                        )
                    };
                    return brk(what);
                }
                Some(_) => {}
            }
            prev = Some(claimed);
            summary.lines += 1;
        }
    }
    summary.head = prev;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<Vec<u8>> {
        let mut prev = GENESIS.to_owned();
        (0..n)
            .map(|i| {
                let (line, h) = seal_line(&format!("{{\"n\":{i},\"type\":\"request\"}}"), &prev);
                prev = h;
                line
            })
            .collect()
    }

    fn verify(lines: &[Vec<u8>]) -> Result<ChainSummary, ChainBreak> {
        let all: Vec<u8> = lines.concat();
        verify_audit_chain([&all[..]]).map_err(|e| e.expect("no io error"))
    }

    #[test]
    fn untouched_chain_verifies_and_lines_parse() {
        let lines = chain(5);
        let s = verify(&lines).expect("intact");
        assert_eq!(s.lines, 5);
        assert!(s.starts_at_genesis());
        assert_eq!(s.head, claimed_hash(&lines[4]));
        let v: serde_json::Value = serde_json::from_slice(&lines[2]).expect("json");
        assert_eq!(v["n"], 2);
    }

    #[test]
    fn edit_delete_swap_truncate_name_the_first_bad_line() {
        let lines = chain(5);
        let mut edited = lines.clone();
        edited[2] = String::from_utf8(edited[2].clone())
            .expect("utf8")
            .replace("\"n\":2", "\"n\":7")
            .into_bytes();
        assert_eq!(verify(&edited).expect_err("edited").line, 3);

        let mut deleted = lines.clone();
        deleted.remove(1);
        assert_eq!(verify(&deleted).expect_err("deleted").line, 2);

        let mut swapped = lines.clone();
        swapped.swap(3, 4);
        assert_eq!(verify(&swapped).expect_err("swapped").line, 4);

        let mut truncated = lines.clone();
        let last = truncated.last_mut().expect("line");
        last.truncate(last.len() - 10);
        assert_eq!(verify(&truncated).expect_err("truncated").line, 5);
    }

    #[test]
    fn chain_continues_across_rotated_files() {
        let lines = chain(4);
        let (a, b) = (lines[..2].concat(), lines[2..].concat());
        let s = verify_audit_chain([&a[..], &b[..]]).expect("intact");
        assert_eq!(s.lines, 4);
        // The second file alone verifies, and says it continues an earlier one.
        let s = verify_audit_chain([&b[..]]).expect("intact");
        assert!(!s.starts_at_genesis());
        // Files in the wrong order: the break is at line 1 of the second file given.
        let e = verify_audit_chain([&b[..], &a[..]])
            .expect_err("out of order")
            .expect("break");
        assert_eq!((e.file, e.line), (1, 1));
    }
}
