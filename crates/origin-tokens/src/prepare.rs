//! What can be worked out of a line on its own, ahead of the engine: parsing it and finding
//! its session key.
//!
//! The engine must take lines in order (the running date, the sessions), but what a line says
//! and which key it concerns do not depend on the lines before it. So a [`Preparer`] can do
//! that part for a whole [`Block`] of lines on another thread. Each preparer finds keys in a
//! table of its own and gets the number of a key it meets for the first time from the
//! [`SharedRegistry`], which the engine reads the keys' names from.

use crate::engine::KeyInfo;
use crate::keys::{KeyId, Keys, SharedRegistry};
use crate::parse::{Kind, Line, LineTime, Message, Parsed, Usage, parse_common_usage, parse_line};

/// Where some bytes lie in a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn within(whole: &[u8], part: &[u8]) -> Span {
        let offset = part.as_ptr().addr() - whole.as_ptr().addr();
        let start = u32::try_from(offset).unwrap_or(u32::MAX);
        Span { start, len: u32::try_from(part.len()).unwrap_or(0) }
    }

    /// The bytes of the span.
    pub fn of<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        let start = self.start as usize;
        bytes.get(start..start + self.len as usize).unwrap_or_default()
    }
}

/// Where a part of a line lies within it, in 16 bits a number: entries are kept small, as
/// a block holds one a line and the engine reads them as they stream by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Within {
    start: u16,
    len: u16,
}

impl Within {
    /// `part` of `line`, if it lies within its first 64 KiB.
    fn new(line: &[u8], part: &[u8]) -> Option<Within> {
        let offset = part.as_ptr().addr() - line.as_ptr().addr();
        Some(Within { start: u16::try_from(offset).ok()?, len: u16::try_from(part.len()).ok()? })
    }

    /// The bytes of the part.
    pub fn of<'a>(&self, line: &'a [u8]) -> &'a [u8] {
        let start = usize::from(self.start);
        line.get(start..start + usize::from(self.len)).unwrap_or_default()
    }
}

/// A usage line, its key found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageEntry {
    /// Seconds since midnight, or [`UsageEntry::PARSE_AGAIN`] for a line that states its date
    /// or whose parts lie too far in (rare: the engine parses such a line again for them).
    clock: u32,
    /// What happened.
    pub kind: Kind,
    /// The key's number in the registry.
    pub key: KeyId,
    /// `(N licenses)`, 1 when absent.
    pub licenses: u32,
    daemon: Within,
    reason: Option<Within>,
}

/// The parts of a usage line the engine takes from the line itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageParts<'a> {
    /// The time prefix.
    pub time: LineTime,
    /// The daemon as written.
    pub daemon: &'a [u8],
    /// The reason text.
    pub reason: Option<&'a [u8]>,
}

impl UsageEntry {
    const PARSE_AGAIN: u32 = u32::MAX;

    fn new(
        line: &[u8],
        time: LineTime,
        daemon: &[u8],
        usage: &Usage<'_>,
        key: KeyId,
    ) -> UsageEntry {
        let daemon = Within::new(line, daemon);
        let reason = usage.reason.map(|reason| Within::new(line, reason));
        let (clock, daemon, reason) = match (time, daemon, reason) {
            (LineTime::Clock(secs), Some(daemon), None) => (secs, daemon, None),
            (LineTime::Clock(secs), Some(daemon), Some(Some(reason))) => {
                (secs, daemon, Some(reason))
            }
            _ => (Self::PARSE_AGAIN, Within { start: 0, len: 0 }, None),
        };
        UsageEntry { clock, kind: usage.kind, key, licenses: usage.licenses, daemon, reason }
    }

    /// The time, daemon and reason of `line`, the line this entry was made of (`None` only if
    /// it was not).
    pub fn parts<'a>(&self, line: &'a [u8]) -> Option<UsageParts<'a>> {
        if self.clock != Self::PARSE_AGAIN {
            let daemon = self.daemon.of(line);
            let reason = self.reason.map(|reason| reason.of(line));
            return Some(UsageParts { time: LineTime::Clock(self.clock), daemon, reason });
        }
        match parse_line(line) {
            Parsed::Line(Line { time, daemon, message: Message::Usage(usage) }) => {
                Some(UsageParts { time, daemon, reason: usage.reason })
            }
            _ => None,
        }
    }
}

/// What one line turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Nothing but white space.
    Blank,
    /// Not a debug-log line: rare, so the engine parses it again for the reason.
    Malformed,
    /// A checkout, checkin, denial and the like.
    Usage(UsageEntry),
    /// Any other debug-log line: rare (dates, starts, ports), so the engine parses it again
    /// rather than have it carried here.
    Other,
}

/// Whole lines and what they are.
#[derive(Debug, Default)]
pub struct Block {
    /// The lines, each ending in a newline (but perhaps the last).
    pub bytes: Vec<u8>,
    /// Each line and its entry, in order.
    pub lines: Vec<(Span, Entry)>,
    /// Every key of the block is numbered below this.
    pub keys: usize,
}

/// Parses lines and numbers their keys.
#[derive(Debug)]
pub struct Preparer {
    fold_case: bool,
    /// The keys met so far, with their numbers in the registry.
    keys: Keys,
    registry: SharedRegistry,
    /// Every number handed out so far is below this.
    horizon: usize,
}

impl Preparer {
    /// A preparer getting key numbers from `registry`; `fold_case` makes user names that
    /// differ in case one key.
    pub fn new(registry: SharedRegistry, fold_case: bool) -> Self {
        Preparer { fold_case, keys: Keys::default(), registry, horizon: 0 }
    }

    /// Every key number this preparer has given is below this.
    pub fn horizon(&self) -> usize {
        self.horizon
    }

    /// Fills `block.lines` from `block.bytes`.
    pub fn block(&mut self, block: &mut Block) {
        block.lines.clear();
        let bytes = &block.bytes;
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', bytes).chain(std::iter::once(bytes.len())) {
            if start == bytes.len() {
                break;
            }
            let line = &bytes[start..end];
            let entry = self.line(line);
            block.lines.push((Span::within(bytes, line), entry));
            start = end + 1;
        }
        block.keys = self.horizon;
    }

    /// The entry of one line (its spans relative to `line`).
    pub fn line(&mut self, line: &[u8]) -> Entry {
        if let Some(common) = parse_common_usage(line) {
            return self.usage(line, LineTime::Clock(common.secs), common.daemon, &common.usage);
        }
        match parse_line(line) {
            Parsed::Blank => Entry::Blank,
            Parsed::Malformed(_) => Entry::Malformed,
            Parsed::Line(Line { time, daemon, message: Message::Usage(usage) }) => {
                self.usage(line, time, daemon, &usage)
            }
            Parsed::Line(_) => Entry::Other,
        }
    }

    fn usage(&mut self, line: &[u8], time: LineTime, daemon: &[u8], usage: &Usage<'_>) -> Entry {
        let (registry, horizon, fold_case) = (&self.registry, &mut self.horizon, self.fold_case);
        let key = self.keys.usage(daemon, usage, fold_case, || {
            register(registry, horizon, key_info(daemon, usage, fold_case))
        });
        Entry::Usage(UsageEntry::new(line, time, daemon, usage, key))
    }
}

/// The registry's number for a key this preparer meets for the first time (out of line: the
/// key lookup it is called from is on every line).
#[cold]
#[inline(never)]
fn register(registry: &SharedRegistry, horizon: &mut usize, info: KeyInfo) -> KeyId {
    let mut registry = registry.lock();
    let number = registry.register(info);
    *horizon = registry.len();
    number
}

#[cold]
#[inline(never)]
fn key_info(daemon: &[u8], usage: &Usage<'_>, fold_case: bool) -> KeyInfo {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let user = text(usage.user);
    KeyInfo {
        daemon: text(daemon).to_ascii_lowercase(),
        feature: text(usage.feature),
        user: if fold_case { user.to_lowercase() } else { user },
        host: text(usage.host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_takes_half_a_cache_line_of_a_block() {
        assert!(size_of::<(Span, Entry)>() <= 32, "{}", size_of::<(Span, Entry)>());
    }

    #[test]
    fn lines_that_state_their_date_are_parsed_again_for_their_parts() {
        let line = b"2026-11-23T09:03:12Z (orglab) IN: \"f\" u@h  (INACTIVE)";
        let Entry::Usage(usage) = Preparer::new(SharedRegistry::default(), false).line(line) else {
            panic!("not a usage line")
        };
        let parts = usage.parts(line).unwrap();
        let date = chrono::NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        assert_eq!(parts.time, LineTime::Stamp { date, secs: 32592, offset: Some(0) });
        assert_eq!((parts.daemon, parts.reason), (&b"orglab"[..], Some(&b"INACTIVE"[..])));
    }

    #[test]
    fn a_block_gives_every_line_its_entry_and_keys_their_shared_numbers() {
        let text = " 9:00:00 (orglab) OUT: \"Origin\" Ann@pc1  (2 licenses)\n\n\
                    garbage\n 9:00:01 (lmgrd) TIMESTAMP 11/23/2026\n\
                    9:00:02 (ORGLAB) IN: \"Origin\" ann@pc1  (INACTIVE)";
        let registry = SharedRegistry::default();
        let mut other = Preparer::new(registry.clone(), true);
        let other_line = " 8:00:00 (orglab) OUT: \"Viewer\" zoe@pc9";
        assert!(matches!(other.line(other_line.as_bytes()), Entry::Usage(u) if u.key == 0));
        let mut block = Block { bytes: text.as_bytes().to_vec(), ..Block::default() };
        Preparer::new(registry.clone(), true).block(&mut block);
        assert_eq!(block.keys, 2, "the registry's numbers are shared");
        assert_eq!(block.lines.len(), 5);
        let entries: Vec<Entry> = block.lines.iter().map(|l| l.1).collect();
        assert_eq!(entries[1], Entry::Blank);
        assert_eq!(entries[2], Entry::Malformed);
        assert_eq!(entries[3], Entry::Other);
        let (Entry::Usage(out), Entry::Usage(checkin)) = (entries[0], entries[4]) else {
            panic!("{entries:?}")
        };
        assert_eq!((out.kind, out.key, out.licenses), (Kind::Out, 1, 2));
        assert_eq!((checkin.kind, checkin.key), (Kind::In, 1));
        let last = checkin.parts(block.lines[4].0.of(&block.bytes)).unwrap();
        assert_eq!(last.reason, Some(&b"INACTIVE"[..]));
        assert_eq!((last.daemon, last.time), (&b"ORGLAB"[..], LineTime::Clock(32402)));
        let registry = registry.lock();
        let info = &registry.since(1)[0];
        assert_eq!((&*info.daemon, &*info.user, &*info.host), ("orglab", "ann", "pc1"));
    }
}
