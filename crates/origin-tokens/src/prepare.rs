//! What can be worked out of a line on its own, ahead of the engine: parsing it and finding
//! its session key.
//!
//! The engine must take lines in order (the running date, the sessions), but what a line says
//! and which key it concerns do not depend on the lines before it. So a [`Preparer`] can do
//! that part for a whole [`Block`] of lines on another thread. Each preparer numbers keys in
//! its own table and tells, with each block, which keys it met for the first time; the engine
//! maps those numbers onto its own.

use crate::engine::KeyInfo;
use crate::keys::{KeyId, Keys, Lookup};
use crate::parse::{Kind, LineTime, Message, Parsed, Usage, parse_line};

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

/// A usage line, its key found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageEntry {
    /// The time prefix.
    pub time: LineTime,
    /// What happened.
    pub kind: Kind,
    /// The key, numbered by the preparer that read the line.
    pub key: KeyId,
    /// `(N licenses)`, 1 when absent.
    pub licenses: u32,
    /// The daemon as written, within the line.
    pub daemon: Span,
    /// The reason text, within the line.
    pub reason: Option<Span>,
}

/// What one line turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Nothing but white space.
    Blank,
    /// Not a debug-log line.
    Malformed(&'static str),
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
    /// The keys the preparer met for the first time in this block, with its numbers.
    pub new_keys: Vec<(KeyId, KeyInfo)>,
    /// Which preparer numbered the keys.
    pub preparer: usize,
}

/// Parses lines and numbers their keys.
#[derive(Debug)]
pub struct Preparer {
    id: usize,
    fold_case: bool,
    keys: Keys,
}

impl Preparer {
    /// Preparer number `id`; `fold_case` makes user names that differ in case one key.
    pub fn new(id: usize, fold_case: bool) -> Self {
        Preparer { id, fold_case, keys: Keys::default() }
    }

    /// Fills `block.lines` and `block.new_keys` from `block.bytes`.
    pub fn block(&mut self, block: &mut Block) {
        block.lines.clear();
        block.new_keys.clear();
        block.preparer = self.id;
        let bytes = &block.bytes;
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', bytes).chain(std::iter::once(bytes.len())) {
            if start == bytes.len() {
                break;
            }
            let line = &bytes[start..end];
            let entry = self.line(line, &mut block.new_keys);
            block.lines.push((Span::within(bytes, line), entry));
            start = end + 1;
        }
    }

    /// The entry of one line (its spans relative to `line`); a key met for the first time
    /// is added to `new_keys`.
    pub fn line(&mut self, line: &[u8], new_keys: &mut Vec<(KeyId, KeyInfo)>) -> Entry {
        let parsed = match parse_line(line) {
            Parsed::Blank => return Entry::Blank,
            Parsed::Malformed(why) => return Entry::Malformed(why),
            Parsed::Line(parsed) => parsed,
        };
        let Message::Usage(usage) = parsed.message else { return Entry::Other };
        let key = match self.keys.usage(parsed.daemon, &usage, self.fold_case) {
            Lookup::Known(key) => key,
            Lookup::New(key) => {
                new_keys.push((key, self.key_info(parsed.daemon, &usage)));
                key
            }
        };
        Entry::Usage(UsageEntry {
            time: parsed.time,
            kind: usage.kind,
            key,
            licenses: usage.licenses,
            daemon: Span::within(line, parsed.daemon),
            reason: usage.reason.map(|reason| Span::within(line, reason)),
        })
    }

    fn key_info(&self, daemon: &[u8], usage: &Usage<'_>) -> KeyInfo {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let user = text(usage.user);
        KeyInfo {
            daemon: text(daemon).to_ascii_lowercase(),
            feature: text(usage.feature),
            user: if self.fold_case { user.to_lowercase() } else { user },
            host: text(usage.host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_gives_every_line_its_entry_and_new_keys_once() {
        let text = " 9:00:00 (orglab) OUT: \"Origin\" Ann@pc1  (2 licenses)\n\n\
                    garbage\n 9:00:01 (lmgrd) TIMESTAMP 11/23/2026\n\
                    9:00:02 (ORGLAB) IN: \"Origin\" ann@pc1  (INACTIVE)";
        let mut block = Block { bytes: text.as_bytes().to_vec(), ..Block::default() };
        Preparer::new(3, true).block(&mut block);
        assert_eq!(block.preparer, 3);
        assert_eq!(block.lines.len(), 5);
        let entries: Vec<Entry> = block.lines.iter().map(|l| l.1).collect();
        assert_eq!(entries[1], Entry::Blank);
        assert!(matches!(entries[2], Entry::Malformed(_)));
        assert_eq!(entries[3], Entry::Other);
        let (Entry::Usage(out), Entry::Usage(checkin)) = (entries[0], entries[4]) else {
            panic!("{entries:?}")
        };
        assert_eq!((out.kind, out.key, out.licenses), (Kind::Out, 0, 2));
        assert_eq!((checkin.kind, checkin.key), (Kind::In, 0));
        let last = block.lines[4].0.of(&block.bytes);
        assert_eq!(checkin.reason.map(|r| r.of(last)), Some(&b"INACTIVE"[..]));
        assert_eq!(checkin.daemon.of(last), b"ORGLAB");
        assert_eq!(block.new_keys.len(), 1);
        let info = &block.new_keys[0].1;
        assert_eq!((&*info.daemon, &*info.user, &*info.host), ("orglab", "ann", "pc1"));
    }
}
