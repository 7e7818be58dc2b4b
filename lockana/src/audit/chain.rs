//! The hash chain that makes an audit file tamper-evident (Lockana's addition to
//! Vault's entry format).
//!
//! Each line is Vault's JSON entry with three fields appended by hand, last:
//!
//! ```text
//! {...vault entry...,"lockana_seq":N,"lockana_prev_hash":"<P>","lockana_hash":"<H>"}
//! ```
//!
//! `H = sha256(line bytes up to, not including, ,"lockana_hash":")` covers the entry,
//! `N` and `P`; `P` is the previous line's `H` (64 zeros for a device's first line) and
//! `N` counts the device's lines from 1 (files written before `lockana_seq` existed
//! lack it). An edited line fails its own `H`; a deleted, inserted or reordered line
//! breaks the next line's `P`, and `N` says how many lines went missing.
//!
//! Whole lines cut from the end leave a valid shorter chain. Two things catch that:
//! the vault records each device's head `(N, H)` behind the barrier before it answers
//! a request (`sys/lockana/audit-head`, `verify --address` / `--head`), and every
//! `checkpoint_interval` entries the device writes a checkpoint line, signed with the
//! vault's Ed25519 audit key (see [`checkpoint_message`]): with the public key pinned,
//! nobody without the vault's key can rewrite the chain up to the last checkpoint.
//!
//! A write that failed mid-line (disk full) leaves a partial line; the device starts
//! its next line on a fresh line and continues the chain from the last complete one,
//! so the verifier skips such a line when the next line continues the chain over it.

use std::fmt;
use std::io::BufRead;

use aws_lc_rs::signature::{ED25519, UnparsedPublicKey};
use sha2::{Digest, Sha256};

/// `P` of the first line a device ever writes.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const HASH_FIELD: &str = ",\"lockana_hash\":\"";
const PREV_FIELD: &str = ",\"lockana_prev_hash\":\"";
const SEQ_FIELD: &str = ",\"lockana_seq\":";
/// The `type` of a checkpoint line: tools that read Vault audit logs select
/// `request` and `response` entries, so they skip it.
pub(crate) const CHECKPOINT_TYPE: &str = "lockana_checkpoint";

/// Appends the chain fields to a serialized entry (`{...}`); returns the line
/// (with its newline) and its hash.
pub(crate) fn seal_line(body: &str, seq: u64, prev: &str) -> (Vec<u8>, String) {
    let open = body.strip_suffix('}').unwrap_or(body);
    let mut line = Vec::with_capacity(body.len() + 2 * 64 + 72);
    line.extend_from_slice(open.as_bytes());
    line.extend_from_slice(SEQ_FIELD.as_bytes());
    line.extend_from_slice(seq.to_string().as_bytes());
    line.extend_from_slice(PREV_FIELD.as_bytes());
    line.extend_from_slice(prev.as_bytes());
    line.push(b'"');
    let hash = hex::encode(Sha256::digest(&line));
    line.extend_from_slice(HASH_FIELD.as_bytes());
    line.extend_from_slice(hash.as_bytes());
    line.extend_from_slice(b"\"}\n");
    (line, hash)
}

/// What a checkpoint signs: the device, the checkpoint line's own sequence number, the
/// hash of the line before it (which chains every earlier line), the interval (so a
/// verifier knows when the next one is due) and the time.
pub(crate) fn checkpoint_message(
    device: &str,
    seq: u64,
    prev: &str,
    interval: u64,
    time: &str,
) -> Vec<u8> {
    format!("lockana-audit-checkpoint/v1\n{device}\n{seq}\n{prev}\n{interval}\n{time}").into_bytes()
}

/// The key id a checkpoint names: the first 16 hex digits of sha256(public key).
pub fn audit_key_id(public_key: &[u8]) -> String {
    hex::encode(&Sha256::digest(public_key)[..8])
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

/// The `lockana_seq` of a well-formed line, if it has one.
pub(crate) fn claimed_seq(line: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    v.get("lockana_seq")?.as_u64()
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

/// What to check besides the chain itself.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// A head hash recorded elsewhere (the vault's, or a copy): the summary says
    /// how many lines follow it in the files, or that it is not there.
    pub expected_head: Option<String>,
    /// The vault's audit public key (Ed25519, 32 bytes): checkpoint signatures are
    /// checked, a bad one is a break, and so is a missing one once it is overdue.
    pub public_key: Option<Vec<u8>>,
}

/// The outcome of checking an intact chain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChainSummary {
    /// Chained lines checked, all files together (checkpoints included, partial
    /// lines not).
    pub lines: u64,
    /// The first line's `lockana_prev_hash`: [`GENESIS`]-like zeros when the chain
    /// starts in these files, otherwise the hash of an earlier (rotated) file's last line.
    pub starts_from: Option<String>,
    /// The last line's hash (the chain head), to compare with a recorded one.
    pub head: Option<String>,
    /// The last line's `lockana_seq`, when it has one.
    pub last_seq: Option<u64>,
    /// With [`VerifyOptions::expected_head`]: how many lines follow that hash in the
    /// files (0: it is the last line), or `None` when it is not in them.
    pub lines_after_expected_head: Option<u64>,
    /// Partial lines (a write that failed mid-line) that the chain continues over:
    /// `(file index, line number)`.
    pub torn_lines: Vec<(usize, u64)>,
    /// The files end with a partial line (a torn last write), not counted.
    pub torn_tail: bool,
    /// Checkpoint lines seen.
    pub checkpoints: u64,
    /// Checkpoint lines whose signature verified under [`VerifyOptions::public_key`].
    pub checkpoints_verified: u64,
    /// Lines after the last verified checkpoint (all lines when none verified): those
    /// a key holder has not vouched for yet.
    pub lines_after_checkpoint: u64,
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
    verify_audit_log(files, &VerifyOptions::default())
}

/// A line that was not a complete chained line, waiting to see whether the next one
/// continues the chain over it (a failed write) or not (tampering).
struct Pending {
    file: usize,
    line: u64,
    reason: String,
}

/// The last checkpoint seen: where the next one is due.
struct LastCheckpoint {
    seq: u64,
    interval: u64,
}

/// As [`verify_audit_chain`], with a recorded head and the audit public key.
pub fn verify_audit_log<R: BufRead>(
    files: impl IntoIterator<Item = R>,
    options: &VerifyOptions,
) -> Result<ChainSummary, Result<ChainBreak, std::io::Error>> {
    let mut prev: Option<String> = None;
    let mut prev_seq: Option<u64> = None;
    let mut summary = ChainSummary::default();
    let mut pending: Option<Pending> = None;
    let mut last_checkpoint: Option<LastCheckpoint> = None;
    let key = options
        .public_key
        .as_ref()
        .map(|k| UnparsedPublicKey::new(&ED25519, k.clone()));
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
            let brk = |line: u64, reason: String| Err(Ok(ChainBreak { file, line, reason }));
            let Some(body) = buf.strip_suffix(b"\n") else {
                // A torn last write: the chain verifies up to the line before it.
                if let Some(p) = pending.take() {
                    return Err(Ok(ChainBreak {
                        file: p.file,
                        line: p.line,
                        reason: p.reason,
                    }));
                }
                pending = Some(Pending {
                    file,
                    line: line_no,
                    reason:
                        "the file ends in the middle of this line (truncated tail or torn write)"
                            .into(),
                });
                break;
            };
            let Some(claimed) = claimed_hash(body) else {
                if let Some(p) = pending.take() {
                    return Err(Ok(ChainBreak {
                        file: p.file,
                        line: p.line,
                        reason: p.reason,
                    }));
                }
                pending = Some(Pending {
                    file,
                    line: line_no,
                    reason: "no lockana_hash at the end of the line (edited, truncated, or not a Lockana audit line)".into(),
                });
                continue;
            };
            let content = &body[..body.len() - 64 - HASH_FIELD.len() - 2];
            if hex::encode(Sha256::digest(content)) != claimed {
                return brk(
                    line_no,
                    "the line's content does not match its lockana_hash: this line was edited"
                        .into(),
                );
            }
            let parsed: serde_json::Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(_) => {
                    return brk(
                        line_no,
                        "the line is not valid JSON: this line was edited".into(),
                    );
                }
            };
            let Some(p) = parsed.get("lockana_prev_hash").and_then(|v| v.as_str()) else {
                return brk(
                    line_no,
                    "the line has no lockana_prev_hash: this line was edited".into(),
                );
            };
            let seq = parsed
                .get("lockana_seq")
                .and_then(serde_json::Value::as_u64);
            match &prev {
                None => summary.starts_from = Some(p.to_owned()),
                Some(expected) if expected != p => {
                    if let Some(p) = pending.take() {
                        return Err(Ok(ChainBreak {
                            file: p.file,
                            line: p.line,
                            reason: p.reason,
                        }));
                    }
                    let missing = match (prev_seq, seq) {
                        (Some(a), Some(b)) if b > a + 1 => {
                            format!(
                                " ({} line(s) missing: lockana_seq jumps from {a} to {b})",
                                b - a - 1
                            )
                        }
                        _ => String::new(),
                    };
                    let what = if line_no == 1 {
                        format!(
                            "this file does not continue the previous file: a file is missing, out of order, or lines were cut from the end of the previous file{missing}"
                        )
                    } else {
                        format!(
                            "this line does not follow the line before it: lines were deleted, inserted or reordered here{missing}"
                        )
                    };
                    return brk(line_no, what);
                }
                Some(_) => {}
            }
            if let Some(p) = pending.take() {
                // The chain continues over it: a write that failed mid-line.
                summary.torn_lines.push((p.file, p.line));
            }
            if let (Some(a), Some(b)) = (prev_seq, seq)
                && b != a + 1
            {
                return brk(
                    line_no,
                    format!("lockana_seq {b} does not follow {a}: this line was edited"),
                );
            }
            let is_checkpoint =
                parsed.get("type").and_then(|v| v.as_str()) == Some(CHECKPOINT_TYPE);
            if is_checkpoint {
                summary.checkpoints += 1;
                if let Some(key) = &key {
                    let cp = &parsed["lockana_checkpoint"];
                    let interval = cp.get("interval").and_then(serde_json::Value::as_u64);
                    let sig = cp
                        .get("signature")
                        .and_then(|v| v.as_str())
                        .and_then(|s| hex::decode(s).ok());
                    let (Some(seq), Some(interval), Some(sig), Some(device), Some(time)) = (
                        seq,
                        interval,
                        sig,
                        cp.get("device").and_then(|v| v.as_str()),
                        parsed.get("time").and_then(|v| v.as_str()),
                    ) else {
                        return brk(
                            line_no,
                            "a checkpoint line lacks its fields: this line was edited".into(),
                        );
                    };
                    let msg = checkpoint_message(device, seq, p, interval, time);
                    if key.verify(&msg, &sig).is_err() {
                        return brk(line_no, "the checkpoint's signature does not verify under the given public key: the lines up to here were rewritten, or another vault signed them".into());
                    }
                    summary.checkpoints_verified += 1;
                    summary.lines_after_checkpoint = 0;
                    last_checkpoint = Some(LastCheckpoint { seq, interval });
                    prev = Some(claimed);
                    prev_seq = Some(seq);
                    summary.lines += 1;
                    bump_expected(&mut summary, options, &prev);
                    continue;
                }
            }
            if key.is_some()
                && let (Some(cp), Some(seq)) = (&last_checkpoint, seq)
                && cp.interval > 0
                && seq > cp.seq + cp.interval + 1
            {
                return brk(
                    line_no,
                    format!(
                        "a checkpoint was due before this line (every {} entries after lockana_seq {}): lines were rewritten or a checkpoint removed",
                        cp.interval, cp.seq
                    ),
                );
            }
            summary.lines_after_checkpoint += 1;
            prev = Some(claimed);
            prev_seq = seq;
            summary.lines += 1;
            bump_expected(&mut summary, options, &prev);
        }
    }
    // A partial line followed by nothing: a torn write at the very end. It proves
    // nothing either way; only a recorded head tells whether lines are missing.
    summary.torn_tail = pending.is_some();
    summary.head = prev;
    summary.last_seq = prev_seq;
    Ok(summary)
}

/// Counts lines after the expected head once it has been seen.
fn bump_expected(summary: &mut ChainSummary, options: &VerifyOptions, head: &Option<String>) {
    if let Some(n) = summary.lines_after_expected_head.as_mut() {
        *n += 1;
    } else if options.expected_head.is_some()
        && options.expected_head.as_deref().map(str::trim) == head.as_deref()
    {
        summary.lines_after_expected_head = Some(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<Vec<u8>> {
        let mut prev = GENESIS.to_owned();
        (0..n)
            .map(|i| {
                let (line, h) = seal_line(
                    &format!("{{\"n\":{i},\"type\":\"request\"}}"),
                    i as u64 + 1,
                    &prev,
                );
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

        // A line cut short in the middle (no hash, and the chain does not continue
        // over it) is a break at that line.
        let mut cut = lines.clone();
        let n = cut[2].len() - 10;
        cut[2].truncate(n);
        cut[2].push(b'\n');
        assert_eq!(verify(&cut).expect_err("cut").line, 3);
    }

    #[test]
    fn partial_last_line_is_a_torn_tail_and_the_rest_verifies() {
        let lines = chain(5);
        let mut torn = lines.clone();
        let last = torn.last_mut().expect("line");
        last.truncate(last.len() - 10);
        let s = verify(&torn).expect("verifies up to the last complete line");
        assert!(s.torn_tail);
        assert_eq!((s.lines, s.last_seq), (4, Some(4)));
        assert_eq!(s.head, claimed_hash(&lines[3]));
    }

    #[test]
    fn failed_write_mid_file_is_skipped_when_the_chain_continues_over_it() {
        let lines = chain(4);
        let mut v = lines[..2].concat();
        v.extend_from_slice(&lines[2][..20]); // the failed write
        v.push(b'\n'); // the device starts its next line on a fresh line
        // The next line continues from line 2 (the failed one never became the head).
        let mut prev = claimed_hash(&lines[1]).expect("hash");
        for i in 0..2 {
            let (l, h) = seal_line("{\"type\":\"request\"}", 3 + i, &prev);
            v.extend_from_slice(&l);
            prev = h;
        }
        let s = verify_audit_chain([&v[..]]).expect("intact");
        assert_eq!(s.torn_lines, vec![(0, 3)]);
        assert_eq!((s.lines, s.last_seq), (4, Some(4)));
        // A partial line the chain does not continue over is a break there.
        let mut bad = lines[..2].concat();
        bad.extend_from_slice(&lines[2][..20]);
        bad.push(b'\n');
        bad.extend_from_slice(&lines[3]);
        let e = verify_audit_chain([&bad[..]])
            .expect_err("break")
            .expect("no io");
        assert_eq!(e.line, 3);
    }

    #[test]
    fn deleted_lines_are_counted_from_the_sequence_numbers() {
        let mut lines = chain(8);
        lines.drain(2..5);
        let e = verify(&lines).expect_err("deleted");
        assert_eq!(e.line, 3);
        assert!(e.reason.contains("3 line(s) missing"), "{}", e.reason);
    }

    #[test]
    fn expected_head_is_located_in_the_files() {
        let lines = chain(6);
        let all = lines.concat();
        let at = |i: usize| VerifyOptions {
            expected_head: claimed_hash(&lines[i]),
            public_key: None,
        };
        let s = verify_audit_log([&all[..]], &at(5)).expect("ok");
        assert_eq!(s.lines_after_expected_head, Some(0));
        let s = verify_audit_log([&all[..]], &at(3)).expect("ok");
        assert_eq!(s.lines_after_expected_head, Some(2));
        // Cut after line 3: the recorded head (line 6) is not in the file.
        let cut = lines[..3].concat();
        let s = verify_audit_log([&cut[..]], &at(5)).expect("ok");
        assert_eq!(s.lines_after_expected_head, None);
    }

    proptest::proptest! {
        /// Fuzz twin of `fuzz/fuzz_targets/audit_verify.rs`: any bytes give a summary
        /// or a named break, never a panic.
        #[test]
        fn arbitrary_files_verify_or_break(a in proptest::collection::vec(proptest::num::u8::ANY, 0..300), b in "(\\{\"lockana_seq\":[0-9]{1,3},\"lockana_prev_hash\":\"[0-9a-f]{0,64}\",\"lockana_hash\":\"[0-9a-f]{0,64}\"\\}\n?){0,3}") {
            let _ = verify_audit_chain([&a[..], b.as_bytes()]);
            let _ = verify_audit_log([b.as_bytes()], &VerifyOptions { expected_head: Some(GENESIS.into()), public_key: Some(vec![0; 32]) });
        }
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
