//! Files waiting to be judged, ordered by deadline. The loop sleeps in epoll exactly until
//! the earliest deadline, so an idle watcher never wakes up.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::ledger::Key;

/// How a file came to be judged; the record's `via`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Closed after writing, then quiet for the settle time.
    CloseWrite,
    /// Renamed or linked into its final name.
    MovedTo,
    /// A new name that appeared while we were behind the file system, right after a name closed
    /// after writing vanished: most likely OpenSSH's link+unlink rename, seen too late to tell
    /// the inode. Reported as `moved_to`, but only when no process holds it open for writing.
    LateLink,
    /// Found by a scan (start, new folder, queue overflow, periodic rescan).
    Scan,
    /// Found by `--poll` scanning.
    Poll,
}

impl Via {
    /// The name in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::CloseWrite => "close_write",
            Via::MovedTo | Via::LateLink => "moved_to",
            Via::Scan => "scan",
            Via::Poll => "poll",
        }
    }

    /// True when an event said the writer finished with the file (close or rename), so no
    /// probe for open writers is needed when no settle time is asked for.
    pub fn writer_finished(self) -> bool {
        matches!(self, Via::CloseWrite | Via::MovedTo)
    }
}

/// A file waiting for its deadline, with what it looked like when it was scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Identity (device, inode, size, mtime) when scheduled; any change restarts the settle.
    pub key: Key,
    /// How it was found.
    pub via: Via,
    /// Index of the watched root it is under.
    pub root: usize,
}

/// Deadlines are rounded up to ticks of this length, so that files closed close together are
/// judged in one batch (one probe for open writers serves the whole batch).
const TICK: Duration = Duration::from_millis(100);

/// The deadline queue.
#[derive(Debug)]
pub struct Pending {
    epoch: Instant,
    by_path: HashMap<PathBuf, (Candidate, (Instant, u64))>,
    queue: BTreeMap<(Instant, u64), PathBuf>,
    seq: u64,
}

impl Default for Pending {
    fn default() -> Self {
        Pending { epoch: Instant::now(), by_path: HashMap::new(), queue: BTreeMap::new(), seq: 0 }
    }
}

impl Pending {
    /// Schedules (or reschedules) `path` to be judged at `at`, rounded up to the next tick.
    pub fn schedule(&mut self, path: PathBuf, candidate: Candidate, at: Instant) {
        self.remove(&path);
        let slot = (self.round_up(at), self.seq);
        self.seq += 1;
        self.queue.insert(slot, path.clone());
        self.by_path.insert(path, (candidate, slot));
    }

    fn round_up(&self, at: Instant) -> Instant {
        let since = at.saturating_duration_since(self.epoch);
        let ticks = since.as_nanos().div_ceil(TICK.as_nanos());
        let rounded = u32::try_from(ticks).map_or(since, |t| TICK * t);
        self.epoch + rounded
    }

    /// The candidate waiting for `path`.
    pub fn get(&self, path: &Path) -> Option<&Candidate> {
        self.by_path.get(path).map(|(candidate, _)| candidate)
    }

    /// Stops waiting for `path` (deleted or moved away).
    pub fn remove(&mut self, path: &Path) {
        if let Some((_, slot)) = self.by_path.remove(path) {
            self.queue.remove(&slot);
        }
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.queue.first_key_value().map(|((at, _), _)| *at)
    }

    /// Takes every file whose deadline is at or before `now`, earliest first.
    pub fn take_due(&mut self, now: Instant) -> Vec<(PathBuf, Candidate)> {
        let mut due = Vec::new();
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let path = entry.remove();
            if let Some((candidate, _)) = self.by_path.remove(&path) {
                due.push((path, candidate));
            }
        }
        due
    }

    /// Number of files waiting.
    pub fn len(&self) -> usize {
        self.by_path.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(ino: u64) -> Candidate {
        Candidate { key: Key { dev: 1, ino, size: 0, mtime_ns: 0 }, via: Via::Scan, root: 0 }
    }

    #[test]
    fn rescheduling_moves_the_deadline_and_due_files_come_in_order() {
        let mut pending = Pending::default();
        let now = Instant::now();
        pending.schedule("/a".into(), candidate(1), now + Duration::from_secs(5));
        pending.schedule("/b".into(), candidate(2), now + Duration::from_secs(1));
        pending.schedule("/a".into(), candidate(3), now + Duration::from_secs(2));
        assert_eq!(pending.len(), 2);
        let next = pending.next_deadline().unwrap();
        assert!(next >= now + Duration::from_secs(1) && next < now + Duration::from_millis(1200));
        assert!(pending.take_due(now).is_empty());
        let due = pending.take_due(now + Duration::from_secs(3));
        let paths: Vec<&str> = due.iter().map(|(p, _)| p.to_str().unwrap()).collect();
        assert_eq!(paths, ["/b", "/a"]);
        assert_eq!(due[1].1.key.ino, 3);
        assert!(pending.is_empty() && pending.next_deadline().is_none());
    }

    #[test]
    fn removed_files_are_not_due() {
        let mut pending = Pending::default();
        let now = Instant::now();
        pending.schedule("/a".into(), candidate(1), now);
        pending.remove(Path::new("/a"));
        assert!(pending.take_due(now + Duration::from_secs(1)).is_empty());
    }
}
