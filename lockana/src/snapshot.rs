//! Snapshots: a point-in-time copy of every stored entry exactly as the backend holds
//! it — values still sealed by the barrier, names still encrypted, the key hierarchy
//! still wrapped — so a snapshot is as safe as the storage file, and it restores into
//! any backend (see "Backup and restore" in `docs/operations.md`).
//!
//! The archive has the shape of Vault's raft snapshots, so `bao operator raft
//! snapshot save/restore` handle it: a gzip'd tar holding
//! - `meta.json`: format name and version, entry count, source storage, time taken;
//! - `state.bin`: the entries in key order, each `u32 BE key length || key || u32 BE
//!   value length || value`;
//! - `SHA256SUMS`: SHA-256 of both files, as `sha256sum` prints them;
//! - `SHA256SUMS.sealed`: the same list encrypted under the vault's root key, so a
//!   restore tells a snapshot of this vault from another's (Vault seals it with its
//!   seal for the same purpose).
//!
//! Reading checks every sum before anything is returned, so a damaged file is refused
//! before a restore replaces a single entry. Parsing sees untrusted bytes: lengths are
//! checked against what is left, the decompressed size is bounded, nothing panics.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `meta.json`'s `format`.
const FORMAT: &str = "lockana-snapshot";
/// The archive layout this code writes and reads.
const VERSION: u32 = 1;
const META: &str = "meta.json";
const STATE: &str = "state.bin";
const SUMS: &str = "SHA256SUMS";
const SEALED_SUMS: &str = "SHA256SUMS.sealed";
/// Largest small file (meta, sums) read from an archive, as Vault bounds them.
const SMALL_FILE: u64 = 8192;
/// Longest storage key accepted (encrypted names of long paths stay well below).
const MAX_KEY: usize = 64 * 1024;
/// Decompressed bytes allowed per compressed byte (plus a floor): stored values are
/// ciphertext and barely compress, so only a decompression bomb goes past this.
const MAX_RATIO: u64 = 64;
const MIN_ALLOWANCE: u64 = 64 * 1024 * 1024;

/// One stored entry, as the backend holds it.
pub(crate) type Entry = (String, Vec<u8>);

/// What `meta.json` says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub format: String,
    pub version: u32,
    /// Entries in `state.bin`.
    pub entries: u64,
    /// The storage the snapshot was taken from (`redb`, `postgresql`, `inmem`).
    pub storage_type: String,
    /// When it was taken (Unix seconds).
    pub created: u64,
}

/// A read, checked archive.
pub(crate) struct Archive {
    pub meta: Meta,
    pub entries: Vec<Entry>,
    /// The sums as computed from the files read, by file name.
    sums: BTreeMap<&'static str, [u8; 32]>,
    /// `SHA256SUMS.sealed` as found (empty when absent).
    sealed_sums: Vec<u8>,
}

/// Writes the archive of `entries` (in key order). `seal` encrypts the sum list.
pub(crate) fn write(
    entries: &[Entry],
    storage_type: &str,
    created: u64,
    seal: impl FnOnce(&[u8]) -> crate::Result<Vec<u8>>,
) -> crate::Result<Vec<u8>> {
    let io = |_| crate::Error::from(crate::StorageError::Backend("writing the snapshot".into()));
    let meta = Meta {
        format: FORMAT.into(),
        version: VERSION,
        entries: entries.len() as u64,
        storage_type: storage_type.into(),
        created,
    };
    let meta = serde_json::to_vec(&meta).map_err(|_| crate::StorageError::Corrupt)?;
    let state_len: usize = entries.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let mut state = Vec::with_capacity(state_len);
    for (k, v) in entries {
        for part in [k.as_bytes(), v.as_slice()] {
            let len = u32::try_from(part.len()).map_err(|_| crate::StorageError::Corrupt)?;
            state.extend_from_slice(&len.to_be_bytes());
            state.extend_from_slice(part);
        }
    }
    let sums = sum_list(&BTreeMap::from([
        (META, sha256(&meta)),
        (STATE, sha256(&state)),
    ]));
    let sealed = seal(&sums)?;
    let gz = GzEncoder::new(Vec::with_capacity(state_len / 2), Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, bytes) in [
        (META, &meta[..]),
        (STATE, &state[..]),
        (SUMS, &sums[..]),
        (SEALED_SUMS, &sealed[..]),
    ] {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(created);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, bytes).map_err(io)?;
    }
    let gz = tar.into_inner().map_err(io)?;
    gz.finish().map_err(io)
}

/// Reads and checks an archive: every file Vault's layout names, nothing else, and
/// `SHA256SUMS` matching what was read. Errors carry OpenBao's texts.
pub(crate) fn read(bytes: &[u8]) -> Result<Archive, String> {
    let allowance = (bytes.len() as u64)
        .saturating_mul(MAX_RATIO)
        .max(MIN_ALLOWANCE);
    let mut gz = GzDecoder::new(bytes);
    // A gzip header is checked at the first read: report a file that is not gzip as
    // Vault does, before the tar layer words it differently.
    let mut first = [0u8; 1];
    let peeked = gz
        .read(&mut first)
        .map_err(|e| format!("failed to decompress snapshot: {e}"))?;
    let stream = first[..peeked].chain(gz).take(allowance);
    read_tar(stream).map_err(|e| format!("failed to read snapshot file: {e}"))
}

fn read_tar(stream: impl Read) -> Result<Archive, String> {
    let mut tar = tar::Archive::new(stream);
    let mut meta: Option<Vec<u8>> = None;
    let mut state: Option<Vec<u8>> = None;
    let mut sums: Option<Vec<u8>> = None;
    let mut sealed = Vec::new();
    let files = tar
        .entries()
        .map_err(|e| format!("failed reading snapshot: {e}"))?;
    for file in files {
        let mut file = file.map_err(|e| format!("failed reading snapshot: {e}"))?;
        let name = file
            .path()
            .map_err(|e| format!("failed reading snapshot: {e}"))?
            .to_string_lossy()
            .chars()
            .take(100)
            .collect::<String>();
        let small = |file: &mut dyn Read, what: &str| -> Result<Vec<u8>, String> {
            let mut buf = Vec::new();
            file.take(SMALL_FILE + 1)
                .read_to_end(&mut buf)
                .map_err(|e| format!("failed to read snapshot {what}: {e}"))?;
            if buf.len() as u64 > SMALL_FILE {
                return Err(format!(
                    "failed to read snapshot {what}: read max specified bytes ({SMALL_FILE}) without EOF - possible truncation"
                ));
            }
            Ok(buf)
        };
        match name.as_str() {
            META => meta = Some(small(&mut file, "metadata")?),
            SUMS => sums = Some(small(&mut file, "hashes")?),
            SEALED_SUMS => sealed = small(&mut file, "hashes")?,
            STATE => {
                let mut buf = Vec::with_capacity(file.size().min(1 << 30) as usize);
                file.read_to_end(&mut buf)
                    .map_err(|e| format!("failed to read or write snapshot data: {e}"))?;
                state = Some(buf);
            }
            other => return Err(format!("unexpected file {other:?} in snapshot")),
        }
    }
    // Read to the end of the gzip stream, so its CRC is checked too: tar stops at
    // its end marker and never sees a change to the padding after it.
    std::io::copy(&mut tar.into_inner(), &mut std::io::sink())
        .map_err(|e| format!("failed reading snapshot: {e}"))?;
    let computed = BTreeMap::from([
        (META, sha256(meta.as_deref().unwrap_or_default())),
        (STATE, sha256(state.as_deref().unwrap_or_default())),
    ]);
    check_sums(sums.as_deref().unwrap_or_default(), &computed)
        .map_err(|e| format!("failed checking integrity of snapshot: {e}"))?;
    let (Some(meta), Some(state)) = (meta, state) else {
        return Err("failed checking integrity of snapshot: file missing".into());
    };
    let meta: Meta = serde_json::from_slice(&meta)
        .map_err(|_| "failed to decode snapshot metadata: not a Lockana snapshot".to_owned())?;
    if meta.format != FORMAT || meta.version != VERSION {
        return Err(format!(
            "not a Lockana snapshot of format version {VERSION} (found {:?} version {})",
            meta.format.chars().take(40).collect::<String>(),
            meta.version
        ));
    }
    let entries = parse_state(&state)?;
    if entries.len() as u64 != meta.entries {
        return Err(format!(
            "snapshot data holds {} entries, its metadata says {}",
            entries.len(),
            meta.entries
        ));
    }
    Ok(Archive {
        meta,
        entries,
        sums: computed,
        sealed_sums: sealed,
    })
}

impl Archive {
    /// Whether `SHA256SUMS.sealed`, opened by `open`, lists the sums of what was read:
    /// the snapshot was taken by a vault with the same root key.
    pub(crate) fn sealed_by(&self, open: impl FnOnce(&[u8]) -> Option<Vec<u8>>) -> bool {
        !self.sealed_sums.is_empty()
            && open(&self.sealed_sums).is_some_and(|list| check_sums(&list, &self.sums).is_ok())
    }

    /// The stored value of `key`, if the snapshot holds it.
    pub(crate) fn get(&self, key: &str) -> Option<&[u8]> {
        self.entries
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| self.entries[i].1.as_slice())
    }
}

/// What a snapshot file holds, once its checksums verified.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// Stored entries (every key, value, policy, token... of the vault, encrypted).
    pub entries: u64,
    /// The storage of the vault it was taken from (`redb`, `postgresql`, `inmem`).
    pub storage_type: String,
    /// When it was taken (Unix seconds).
    pub created: u64,
}

/// Reads a snapshot file and checks its checksums and layout, as a restore does
/// before it replaces anything (`lockana operator snapshot` checks a file it saved,
/// and one it is about to send). Nothing is decrypted: no key is needed.
pub fn inspect_snapshot(bytes: &[u8]) -> crate::Result<SnapshotInfo> {
    let archive = read(bytes).map_err(crate::Error::invalid)?;
    Ok(SnapshotInfo {
        entries: archive.meta.entries,
        storage_type: archive.meta.storage_type,
        created: archive.meta.created,
    })
}

fn parse_state(mut state: &[u8]) -> Result<Vec<Entry>, String> {
    let bad = || "failed to read snapshot file: snapshot data is malformed".to_owned();
    let take = |state: &mut &[u8], max: usize| -> Result<Vec<u8>, String> {
        let (len, rest) = state.split_first_chunk::<4>().ok_or_else(bad)?;
        let len = u32::from_be_bytes(*len) as usize;
        if len > max || len > rest.len() {
            return Err(bad());
        }
        let (part, rest) = rest.split_at(len);
        *state = rest;
        Ok(part.to_vec())
    };
    let mut entries: Vec<Entry> = Vec::new();
    while !state.is_empty() {
        let key = String::from_utf8(take(&mut state, MAX_KEY)?).map_err(|_| bad())?;
        let value = take(&mut state, usize::MAX)?;
        // Strictly increasing keys: no duplicates, and lookups can bisect.
        if entries.last().is_some_and(|(k, _)| *k >= key) {
            return Err(bad());
        }
        entries.push((key, value));
    }
    Ok(entries)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// `sha256sum` style: `<hex>  <name>\n` per file.
fn sum_list(sums: &BTreeMap<&str, [u8; 32]>) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, sum) in sums {
        // Writing to a Vec cannot fail.
        let _ = writeln!(out, "{}  {name}", hex::encode(sum));
    }
    out
}

/// Vault's `DecodeAndVerify`: every line's sum matches, and every file is listed.
fn check_sums(list: &[u8], computed: &BTreeMap<&'static str, [u8; 32]>) -> Result<(), String> {
    let text = std::str::from_utf8(list).map_err(|_| "malformed hash list".to_owned())?;
    let mut seen = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (sum, name) = line
            .split_once("  ")
            .ok_or_else(|| "malformed hash list".to_owned())?;
        let Some((&file, want)) = computed.get_key_value(name.trim()) else {
            return Err(format!(
                "list missing hash for {:?}",
                name.chars().take(100).collect::<String>()
            ));
        };
        let sum = hex::decode(sum.trim()).map_err(|_| "malformed hash list".to_owned())?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&sum[..], &want[..])) {
            return Err(format!("hash check failed for {file:?}"));
        }
        seen.push(file);
    }
    for file in computed.keys() {
        if !seen.contains(file) {
            return Err(format!("file missing for {file:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<Entry> {
        vec![
            ("core/keyring".into(), vec![1, 2, 3]),
            ("core/seal-config".into(), b"{}".to_vec()),
            ("sYx3/aa".into(), vec![0; 100]),
        ]
    }

    fn archive(entries: &[Entry]) -> Vec<u8> {
        write(entries, "redb", 7, |s| {
            Ok(s.iter().rev().copied().collect())
        })
        .unwrap()
    }

    fn unseal(b: &[u8]) -> Option<Vec<u8>> {
        Some(b.iter().rev().copied().collect())
    }

    #[test]
    fn round_trip_keeps_every_entry_and_the_sealed_sums() {
        let bytes = archive(&entries());
        let a = read(&bytes).unwrap();
        assert_eq!(a.entries, entries());
        assert_eq!(a.meta.storage_type, "redb");
        assert_eq!(a.get("core/keyring"), Some(&[1u8, 2, 3][..]));
        assert!(a.sealed_by(unseal));
        assert!(!a.sealed_by(|_| None));
        assert!(!a.sealed_by(|b| Some(b.to_vec())), "other vault's key");
        let empty = read(&archive(&[])).unwrap();
        assert!(empty.entries.is_empty());
    }

    /// Rebuilds an archive from (name, bytes) files, to tamper inside a valid gzip.
    fn rebuild(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        for (name, bytes) in files {
            let mut h = tar::Header::new_ustar();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o600);
            tar.append_data(&mut h, name, &bytes[..]).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap()
    }

    fn files(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut tar = tar::Archive::new(GzDecoder::new(bytes));
        tar.entries()
            .unwrap()
            .map(|f| {
                let mut f = f.unwrap();
                let name = f.path().unwrap().to_string_lossy().into_owned();
                let mut b = Vec::new();
                f.read_to_end(&mut b).unwrap();
                (name, b)
            })
            .collect()
    }

    #[test]
    fn a_changed_byte_of_state_fails_the_sum_check() {
        let good = files(&archive(&entries()));
        let mut bad: Vec<(&str, Vec<u8>)> =
            good.iter().map(|(n, b)| (n.as_str(), b.clone())).collect();
        let last = bad[1].1.len() - 1;
        bad[1].1[last] ^= 1;
        let err = read(&rebuild(&bad)).err().unwrap();
        assert_eq!(
            err,
            "failed to read snapshot file: failed checking integrity of snapshot: hash check failed for \"state.bin\""
        );
        let missing: Vec<(&str, Vec<u8>)> = bad.into_iter().filter(|(n, _)| *n != SUMS).collect();
        assert!(read(&rebuild(&missing)).is_err());
    }

    #[test]
    fn damaged_compressed_bytes_and_other_files_are_refused() {
        let bytes = archive(&entries());
        // Not the gzip header's time and flags (bytes 4..10): nothing checks those.
        for i in [
            0,
            2,
            11,
            100,
            bytes.len() / 2,
            bytes.len() - 30,
            bytes.len() - 3,
        ] {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(read(&bad).is_err(), "flip at {i} went unnoticed");
        }
        assert!(read(&bytes[..bytes.len() / 2]).is_err(), "truncated");
        assert!(
            read(b"not a snapshot")
                .err()
                .unwrap()
                .starts_with("failed to decompress snapshot"),
        );
        let mut extra: Vec<(&str, Vec<u8>)> = Vec::new();
        let good = files(&bytes);
        for (n, b) in &good {
            extra.push((n.as_str(), b.clone()));
        }
        extra.push(("evil", vec![1]));
        assert!(
            read(&rebuild(&extra))
                .err()
                .unwrap()
                .contains("unexpected file \"evil\"")
        );
    }

    proptest::proptest! {
        /// Fuzz twin: arbitrary bytes, raw or gzip'd, never panic.
        #[test]
        fn arbitrary_archives_are_refused_without_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = read(&bytes);
            let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
            gz.write_all(&bytes).unwrap();
            let _ = read(&gz.finish().unwrap());
            let _ = parse_state(&bytes);
        }
    }
}
