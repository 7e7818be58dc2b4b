//! Storage key names, encrypted segment by segment (see "Names at rest" in
//! `docs/architecture.md`).
//!
//! Every segment of a logical path is sealed with AES-SIV under the vault's name key,
//! with the logical directory above it as associated data, and written as unpadded
//! base64url. The encryption is deterministic, so a path always maps to the same
//! physical key (a get is one lookup) and a directory listing decrypts back to names.

use std::collections::HashMap;

use aes_siv::KeyInit;
use aes_siv::siv::Aes256Siv;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use parking_lot::RwLock;
use zeroize::Zeroizing;

use crate::{BarrierError, Result};

/// Length of the name key: AES-256-SIV takes two 256-bit keys (S2V and CTR).
pub(super) const KEY_LEN: usize = 64;
/// Names are padded to a multiple of this, so only a rounded length shows.
const PAD: usize = 16;
/// Entries kept in each cache while unsealed; a full cache starts over.
const MAX_CACHED: usize = 16_384;

/// The name key and caches of what it encrypted and decrypted (so a read encrypts
/// only its last segment, and a repeated LIST decrypts nothing). No `Debug`: it holds
/// key material. Dropped, caches and all, when the vault seals.
pub(super) struct Names {
    key: Zeroizing<[u8; KEY_LEN]>,
    /// Logical directory (ending in `/`) -> its physical form (ending in `/`).
    dirs: RwLock<HashMap<String, String>>,
    /// Physical path (no trailing `/`) -> the logical name of its last segment.
    opened: RwLock<HashMap<String, String>>,
}

fn remember(cache: &RwLock<HashMap<String, String>>, key: String, value: String) {
    let mut cache = cache.write();
    if cache.len() >= MAX_CACHED {
        cache.clear();
    }
    cache.insert(key, value);
}

/// `a/b/c` -> (`a/b/`, `c`); `c` -> (``, `c`); `a/b/` -> (`a/b/`, ``).
fn split_last(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => path.split_at(i + 1),
        None => ("", path),
    }
}

impl Names {
    pub(super) fn new(key: Zeroizing<[u8; KEY_LEN]>) -> Names {
        Names {
            key,
            dirs: RwLock::new(HashMap::new()),
            opened: RwLock::new(HashMap::new()),
        }
    }

    pub(super) fn key(&self) -> &[u8; KEY_LEN] {
        &self.key
    }

    fn siv(&self) -> Result<Aes256Siv, BarrierError> {
        // A fresh instance per call: `Siv` needs `&mut self`, and it re-keys its CTR
        // cipher on every message anyway, so sharing one would only add a lock.
        Aes256Siv::new_from_slice(&self.key[..]).map_err(|_| BarrierError::Malformed)
    }

    /// Appends the physical form of `segment` (whose logical directory is `parent`).
    fn seal_segment(&self, parent: &str, segment: &str, out: &mut String) -> Result<()> {
        let padded = (segment.len() / PAD + 1) * PAD;
        let mut buf = Vec::with_capacity(padded + PAD);
        buf.extend_from_slice(segment.as_bytes());
        buf.push(0x80);
        buf.resize(padded, 0);
        let ct = self
            .siv()?
            .encrypt([parent.as_bytes()], &buf)
            .map_err(|_| BarrierError::Malformed)?;
        B64URL.encode_string(&ct, out);
        Ok(())
    }

    /// The logical name of the last segment of `path` (physical, no trailing `/`),
    /// whose logical directory is `parent`.
    fn open_last(&self, parent: &str, path: &str) -> Result<String> {
        if let Some(name) = self.opened.read().get(path) {
            return Ok(name.clone());
        }
        let (_, segment) = split_last(path);
        let name = self.open_segment(parent, segment)?;
        remember(&self.opened, path.to_owned(), name.clone());
        Ok(name)
    }

    /// The logical name of one physical segment found under logical directory `parent`.
    fn open_segment(&self, parent: &str, physical: &str) -> Result<String> {
        let ct = B64URL
            .decode(physical)
            .map_err(|_| BarrierError::Malformed)?;
        let mut pt = self
            .siv()?
            .decrypt([parent.as_bytes()], &ct)
            .map_err(|_| BarrierError::Authentication)?;
        while pt.last() == Some(&0) {
            pt.pop();
        }
        if pt.pop() != Some(0x80) {
            return Err(BarrierError::Malformed.into());
        }
        String::from_utf8(pt).map_err(|_| BarrierError::Malformed.into())
    }

    /// The physical key of a logical path.
    pub(super) fn encode(&self, path: &str) -> Result<String> {
        let (dir, last) = split_last(path);
        let mut out = self.encode_dir(dir)?;
        self.seal_segment(dir, last, &mut out)?;
        Ok(out)
    }

    /// The physical form of a logical directory (empty, or ending in `/`).
    pub(super) fn encode_dir(&self, dir: &str) -> Result<String> {
        if dir.is_empty() {
            return Ok(String::new());
        }
        if let Some(p) = self.dirs.read().get(dir) {
            return Ok(p.clone());
        }
        let (parent, segment) = split_last(&dir[..dir.len() - 1]);
        let mut out = self.encode_dir(parent)?;
        self.seal_segment(parent, segment, &mut out)?;
        out.push('/');
        remember(&self.dirs, dir.to_owned(), out.clone());
        Ok(out)
    }

    /// The logical path of a physical key. `memo` maps physical directories already
    /// decoded in this pass to their logical form (a scan's keys share them).
    pub(super) fn decode(
        &self,
        physical: &str,
        memo: &mut HashMap<String, String>,
    ) -> Result<String> {
        let (pdir, _) = split_last(physical);
        let mut logical = self.decode_dir(pdir, memo)?;
        let name = self.open_last(&logical, physical)?;
        logical.push_str(&name);
        Ok(logical)
    }

    fn decode_dir(&self, pdir: &str, memo: &mut HashMap<String, String>) -> Result<String> {
        if pdir.is_empty() {
            return Ok(String::new());
        }
        if let Some(l) = memo.get(pdir) {
            return Ok(l.clone());
        }
        let inner = &pdir[..pdir.len() - 1];
        let (pparent, _) = split_last(inner);
        let mut logical = self.decode_dir(pparent, memo)?;
        let name = self.open_last(&logical, inner)?;
        logical.push_str(&name);
        logical.push('/');
        memo.insert(pdir.to_owned(), logical.clone());
        Ok(logical)
    }

    /// Decodes a listing of physical children (`x` or `x/`) of logical directory `dir`,
    /// whose physical form is `pdir`.
    pub(super) fn decode_children(
        &self,
        dir: &str,
        pdir: &str,
        children: Vec<String>,
    ) -> Result<Vec<String>> {
        let mut out = Vec::with_capacity(children.len());
        let mut path = String::with_capacity(pdir.len() + 64);
        for child in children {
            let (physical, is_dir) = match child.strip_suffix('/') {
                Some(p) => (p, true),
                None => (child.as_str(), false),
            };
            path.clear();
            path.push_str(pdir);
            path.push_str(physical);
            let mut name = self.open_last(dir, &path)?;
            if is_dir {
                name.push('/');
            }
            out.push(name);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names::new(Zeroizing::new([7u8; KEY_LEN]))
    }

    #[test]
    fn paths_round_trip_and_show_no_name() {
        let n = names();
        let mut memo = HashMap::new();
        for path in [
            "logical/1234/meta/probe/canary",
            "a",
            "",
            "dir/",
            "x//y",
            "sys/policy/ops-\u{e9}t\u{e9}",
            &"long-name".repeat(40),
        ] {
            let physical = n.encode(path).unwrap();
            assert_eq!(n.decode(&physical, &mut memo).unwrap(), path);
            assert_eq!(physical.matches('/').count(), path.matches('/').count());
            for word in ["logical", "meta", "probe", "canary", "policy", "long-name"] {
                assert!(!physical.contains(word), "{word} in {physical}");
            }
        }
    }

    #[test]
    fn same_name_in_two_directories_encodes_differently() {
        let n = names();
        let a = n.encode("one/db").unwrap();
        let b = n.encode("two/db").unwrap();
        assert_ne!(a.rsplit('/').next(), b.rsplit('/').next());
        assert_eq!(n.encode("one/db").unwrap(), a, "deterministic");
    }

    #[test]
    fn a_segment_moved_to_another_directory_fails_to_decode() {
        let n = names();
        let a = n.encode("one/db").unwrap();
        let two = n.encode_dir("two/").unwrap();
        let moved = format!("{two}{}", a.rsplit('/').next().unwrap());
        assert!(n.decode(&moved, &mut HashMap::new()).is_err());
        let other = Names::new(Zeroizing::new([8u8; KEY_LEN]));
        assert!(other.decode(&a, &mut HashMap::new()).is_err(), "other key");
    }

    #[test]
    fn lengths_show_only_rounded_up() {
        let n = names();
        let seg = |s: &str| n.encode(s).unwrap().len();
        assert_eq!(seg("a"), seg("fifteen-chars-x"));
        assert!(seg("sixteen-chars-xx") > seg("a"));
    }

    proptest::proptest! {
        /// Fuzz twin: any text a physical key could hold decodes or errors, no panic.
        #[test]
        fn arbitrary_physical_keys_never_panic(key in "[A-Za-z0-9_/-]{0,120}") {
            let _ = names().decode(&key, &mut HashMap::new());
        }

        #[test]
        fn any_path_round_trips(path in "\\PC{0,60}") {
            let n = names();
            let physical = n.encode(&path).unwrap();
            proptest::prop_assert_eq!(n.decode(&physical, &mut HashMap::new()).unwrap(), path);
        }
    }
}
