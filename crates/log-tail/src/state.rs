//! What the state file holds: per log, the identity of the file being read and how far.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The state file's format version.
pub const STATE_VERSION: u32 = 1;

/// How many of a file's first bytes identify it.
pub const FINGERPRINT_LEN: usize = 1024;

/// Everything log-tail remembers between runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Per log path as given on the command line.
    #[serde(default)]
    pub files: BTreeMap<String, Position>,
    /// The journal cursor of the last entry written (with --journal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal_cursor: Option<String>,
}

/// Where reading stopped in one log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The file it stopped in (the log itself or a rotated file), as a hint for people.
    pub source: String,
    /// Device and inode of that file.
    pub dev: u64,
    /// Inode of that file.
    pub inode: u64,
    /// Bytes consumed (of the uncompressed content): the start of the first unread line.
    pub offset: u64,
    /// The file's first bytes, so that a truncated or replaced file is recognised.
    pub fingerprint: Fingerprint,
}

/// A hash of a file's first `len` bytes (at most [`FINGERPRINT_LEN`], never past the offset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// How many bytes were hashed.
    pub len: u64,
    /// Their SHA-256, hex.
    pub sha256: String,
}

impl Fingerprint {
    /// The fingerprint of `head` (a file's first bytes).
    pub fn of(head: &[u8]) -> Self {
        let digest = Sha256::digest(head);
        let sha256 = digest.iter().map(|b| format!("{b:02x}")).collect();
        Fingerprint { len: head.len() as u64, sha256 }
    }

    /// True when `head`, the first bytes of some file, starts with the fingerprinted bytes.
    pub fn matches(&self, head: &[u8]) -> bool {
        let Ok(len) = usize::try_from(self.len) else { return false };
        head.len() >= len && Fingerprint::of(&head[..len]) == *self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_matches_a_longer_head_with_the_same_start() {
        let fp = Fingerprint::of(b"line 1\n");
        assert!(fp.matches(b"line 1\nline 2\n"));
        assert!(!fp.matches(b"line 1"));
        assert!(!fp.matches(b"line 9\nline 2\n"));
        assert!(Fingerprint::of(b"").matches(b"anything"));
    }
}
