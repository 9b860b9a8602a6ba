//! What was reported: one entry per upload, keyed by the file's identity (device, inode, size,
//! modification time). A file renamed after it was reported keeps its identity and is not
//! reported again; a new upload under the same name has a new identity and is.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A file's identity as far as "was this upload reported?" goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
}

impl Key {
    /// The identity of the file `meta` describes.
    pub fn of(meta: &Metadata) -> Key {
        Key {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec()),
        }
    }
}

/// One saved entry of the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The identity.
    #[serde(flatten)]
    pub key: Key,
    /// The path it was reported under (lossy for names that are not UTF-8).
    pub path: String,
}

/// The set of reported uploads. Entries of files that are gone are dropped on a delete event,
/// or once two full scans in a row did not see them (one miss may be a rename racing the scan).
#[derive(Debug, Default)]
pub struct Ledger {
    entries: HashMap<Key, (PathBuf, u32)>,
    by_path: HashMap<PathBuf, Key>,
    generation: u32,
}

impl Ledger {
    /// A ledger holding the saved `entries`.
    pub fn from_entries(entries: Vec<Entry>) -> Self {
        let mut ledger = Ledger::default();
        for entry in entries {
            ledger.insert(entry.key, PathBuf::from(entry.path));
        }
        ledger
    }

    /// The entries to save, in a stable order.
    pub fn entries(&self) -> Vec<Entry> {
        let mut entries: Vec<Entry> = self
            .entries
            .iter()
            .map(|(key, (path, _))| Entry { key: *key, path: path.to_string_lossy().into_owned() })
            .collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path).then(a.key.cmp(&b.key)));
        entries
    }

    /// True when this upload was reported.
    pub fn contains(&self, key: &Key) -> bool {
        self.entries.contains_key(key)
    }

    /// Marks an upload as reported.
    pub fn insert(&mut self, key: Key, path: PathBuf) {
        if let Some(old) = self.by_path.insert(path.clone(), key)
            && old != key
        {
            self.entries.remove(&old);
        }
        self.entries.insert(key, (path, self.generation));
    }

    /// Notes that a full scan saw this upload still present.
    pub fn seen(&mut self, key: &Key) {
        if let Some((_, generation)) = self.entries.get_mut(key) {
            *generation = self.generation;
        }
    }

    /// Forgets the upload that was reported under `path` (it was deleted).
    pub fn forget_path(&mut self, path: &Path) {
        if let Some(key) = self.by_path.remove(path) {
            self.entries.remove(&key);
        }
    }

    /// Starts a full scan.
    pub fn begin_scan(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    /// Ends a full scan: drops entries that neither this scan nor the one before saw. Returns
    /// how many were dropped.
    pub fn end_scan(&mut self) -> usize {
        let current = self.generation;
        let before = self.entries.len();
        self.entries.retain(|_, (_, seen)| current.wrapping_sub(*seen) < 2);
        let entries = &self.entries;
        self.by_path.retain(|_, key| entries.contains_key(key));
        before - self.entries.len()
    }

    /// The number of remembered uploads.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ino: u64) -> Key {
        Key { dev: 1, ino, size: 10, mtime_ns: 5 }
    }

    #[test]
    fn replaced_names_and_missed_scans() {
        let mut ledger = Ledger::default();
        ledger.insert(key(1), "/a.mp4".into());
        ledger.insert(key(2), "/a.mp4".into());
        assert!(!ledger.contains(&key(1)), "a new upload under the same name replaces the old");
        assert!(ledger.contains(&key(2)));
        ledger.insert(key(3), "/b.mp4".into());
        ledger.begin_scan();
        ledger.seen(&key(2));
        assert_eq!(ledger.end_scan(), 0, "one missed scan keeps the entry");
        ledger.begin_scan();
        ledger.seen(&key(2));
        assert_eq!(ledger.end_scan(), 1);
        assert!(!ledger.contains(&key(3)));
        ledger.forget_path(Path::new("/a.mp4"));
        assert!(ledger.is_empty());
    }

    #[test]
    fn entries_round_trip_through_json() {
        let mut ledger = Ledger::default();
        ledger.insert(key(7), "/x y.mp4".into());
        let json = serde_json::to_string(&ledger.entries()).unwrap();
        let back = Ledger::from_entries(serde_json::from_str(&json).unwrap());
        assert!(back.contains(&key(7)));
        assert_eq!(back.len(), 1);
    }
}
