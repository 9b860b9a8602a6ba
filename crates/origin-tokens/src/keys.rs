//! Session keys (daemon, feature, user, host) as small integers.
//!
//! Every usage line needs its key's id. Looking up the whole key text in one table of tens of
//! thousands of entries missed the cache on almost every line; instead the daemon, the feature
//! and the `user@host` are looked up in small tables of names held inline (no pointer to
//! follow, compared as words), and the key in the feature's list of keys by client number
//! (four bytes a client, so that the lists stay in the cache).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::engine::KeyInfo;
use crate::fasthash::FastMap;
use crate::parse::Usage;

/// Index of a (daemon, feature, user, host) key.
pub type KeyId = u32;

const NO_KEY: KeyId = KeyId::MAX;

/// A name of up to [`Short::MAX`] bytes held inline, zero-padded, with its length in the last
/// byte (so that trailing NUL bytes still make a different name).
#[derive(Debug, Clone, Copy, Eq)]
struct Short([u64; 3]);

/// Word by word, in registers: a derived compare loaded a name just built on the stack as
/// one 16-byte vector, which waits for the eight-byte stores to retire.
impl PartialEq for Short {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        let [a, b, c] = self.0;
        let [x, y, z] = other.0;
        (a ^ x) | (b ^ y) | (c ^ z) == 0
    }
}

impl Short {
    const MAX: usize = 23;

    #[inline]
    fn new(name: &[u8]) -> Option<Short> {
        let len = name.len();
        if len > Self::MAX {
            return None;
        }
        // Whole words are loaded as they are, without a loop: copying into a byte array and
        // reading it back as words stalls on store forwarding.
        let word = |i: usize| {
            let start = 8 * i;
            if len >= start + 8 {
                word_at(&name[start..])
            } else if len <= start {
                0
            } else if len >= 8 {
                // The last eight bytes, shifted so that only those past `start` remain
                // (little-endian: the first byte is the lowest).
                word_at(&name[len - 8..]) >> (8 * (start + 8 - len))
            } else {
                short_word(name)
            }
        };
        Some(Short([word(0), word(1), word(2) | (len as u64) << 56]))
    }
}

/// A name of fewer than eight bytes as a word, zero-padded: from two overlapping four-byte
/// loads when it has four or more (the bytes both hold are the same), else byte by byte.
#[inline]
fn short_word(name: &[u8]) -> u64 {
    let len = name.len();
    let half = |at: usize| {
        name.get(at..).and_then(|b| b.first_chunk::<4>()).map(|b| u32::from_le_bytes(*b))
    };
    match (half(0), len.checked_sub(4).and_then(half)) {
        (Some(low), Some(high)) => u64::from(low) | u64::from(high) << (8 * (len - 4)),
        _ => name.iter().rev().fold(0, |word, &b| word << 8 | u64::from(b)),
    }
}

/// The eight bytes at the start of `bytes` (which holds at least eight) as a little-endian word.
#[inline]
fn word_at(bytes: &[u8]) -> u64 {
    bytes.first_chunk::<8>().map_or(0, |word| u64::from_le_bytes(*word))
}

/// Ids of [`Short`] names in one array, probed linearly from a slot picked by the words: a
/// lookup is a multiply and, at a load under one half, nearly always one compare of three
/// words (a general hash map costs several times the instructions, on every line twice).
#[derive(Debug, Default)]
struct ShortTable {
    /// A power of two long (or empty); unused slots hold [`ShortTable::EMPTY`].
    slots: Vec<Slot>,
    /// 64 less the number of bits of a slot number.
    shift: u32,
    len: usize,
}

/// A name and its id, aligned so that no slot straddles two cache lines.
#[derive(Debug, Clone, Copy)]
#[repr(align(32))]
struct Slot {
    name: Short,
    id: u32,
}

impl ShortTable {
    /// No name has 255 bytes: a length byte no [`Short`] has.
    const EMPTY: Short = Short([0, 0, u64::MAX]);

    fn slot(short: &Short, shift: u32) -> usize {
        let [a, b, c] = short.0;
        let mixed = (a ^ b.rotate_left(21) ^ c.rotate_left(42)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // The multiply carries every bit upwards: only the top bits depend on all of them.
        (mixed >> shift) as usize
    }

    /// The id of `short`, if it has one.
    #[inline]
    fn get(&self, short: &Short) -> Option<u32> {
        let mask = self.slots.len().checked_sub(1)?;
        let mut i = Self::slot(short, self.shift);
        loop {
            let Slot { name, id } = self.slots[i];
            if name == *short {
                return Some(id);
            }
            if name == Self::EMPTY {
                return None;
            }
            i = (i + 1) & mask;
        }
    }

    /// The id of `short`, given `next` if it has none yet.
    fn id(&mut self, short: Short, next: u32) -> u32 {
        if 2 * (self.len + 1) > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut i = Self::slot(&short, self.shift);
        loop {
            let Slot { name, id } = self.slots[i];
            if name == short {
                return id;
            }
            if name == Self::EMPTY {
                self.slots[i] = Slot { name: short, id: next };
                self.len += 1;
                return next;
            }
            i = (i + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let size = (2 * self.slots.len()).max(64);
        let empty = Slot { name: Self::EMPTY, id: 0 };
        let old = std::mem::replace(&mut self.slots, vec![empty; size]);
        self.shift = 64 - size.trailing_zeros();
        let mask = size - 1;
        for Slot { name, id } in old.into_iter().filter(|slot| slot.name != Self::EMPTY) {
            let mut i = Self::slot(&name, self.shift);
            while self.slots[i].name != Self::EMPTY {
                i = (i + 1) & mask;
            }
            self.slots[i] = Slot { name, id };
        }
    }
}

/// Ids for byte strings of one kind.
#[derive(Debug, Default)]
struct Names {
    short: ShortTable,
    long: FastMap<Box<[u8]>, u32>,
}

impl Names {
    /// The id of `name`: inlined for the names met before (nearly every line's), which need
    /// no more than a probe.
    #[inline]
    fn id(&mut self, name: &[u8]) -> u32 {
        match Short::new(name).and_then(|short| self.short.get(&short)) {
            Some(id) => id,
            None => self.new_or_long(name),
        }
    }

    #[cold]
    #[inline(never)]
    fn new_or_long(&mut self, name: &[u8]) -> u32 {
        let next = u32::try_from(self.short.len + self.long.len()).unwrap_or(u32::MAX);
        match Short::new(name) {
            Some(short) => self.short.id(short, next),
            None => match self.long.get(name) {
                Some(&id) => id,
                None => *self.long.entry(name.into()).or_insert(next),
            },
        }
    }
}

/// The keys of one daemon.
#[derive(Debug, Default)]
struct Daemon {
    /// The name, lower-case.
    name: Box<[u8]>,
    features: Names,
    /// For each feature, the key of each client ([`NO_KEY`] for none yet).
    keys: Vec<Vec<KeyId>>,
}

/// The key table.
#[derive(Debug, Default)]
pub struct Keys {
    /// A log has one or two daemons, so a scan beats hashing.
    daemons: Vec<Daemon>,
    /// The daemon of the last lookup as written, and its place in `daemons`: lines of one
    /// daemon come in long runs, and comparing three words is cheaper than a case-blind scan.
    last_daemon: Option<(Short, usize)>,
    clients: Names,
    buf: Vec<u8>,
}

impl Keys {
    /// The id of the key of a usage line of `daemon`, given by `new` the first time;
    /// `fold_case` compares user names in lower case.
    pub fn usage(
        &mut self,
        daemon: &[u8],
        usage: &Usage<'_>,
        fold_case: bool,
        new: impl FnOnce() -> KeyId,
    ) -> KeyId {
        let client = match usage.client {
            Some(client) if !fold_case => self.clients.id(client),
            _ => self.client(usage.user, usage.host, fold_case),
        };
        self.key(daemon, usage.feature, client, new)
    }

    /// The id of a key given as text (as `--state` keeps it), given by `new` the first time.
    pub fn text(&mut self, key: &KeyInfo, new: impl FnOnce() -> KeyId) -> KeyId {
        let client = self.client(key.user.as_bytes(), key.host.as_bytes(), false);
        self.key(key.daemon.as_bytes(), key.feature.as_bytes(), client, new)
    }

    fn key(
        &mut self,
        daemon: &[u8],
        feature: &[u8],
        client: u32,
        new: impl FnOnce() -> KeyId,
    ) -> KeyId {
        let daemon = self.daemon(daemon);
        let feature = daemon.features.id(feature) as usize;
        if daemon.keys.len() <= feature {
            daemon.keys.resize_with(feature + 1, Vec::new);
        }
        let clients = &mut daemon.keys[feature];
        let client = client as usize;
        if clients.len() <= client {
            clients.resize(client + 1, NO_KEY);
        }
        if clients[client] == NO_KEY {
            clients[client] = new();
        }
        clients[client]
    }

    fn client(&mut self, user: &[u8], host: &[u8], fold_case: bool) -> u32 {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        if !fold_case {
            buf.extend_from_slice(user);
        } else if user.is_ascii() {
            buf.extend(user.iter().map(u8::to_ascii_lowercase));
        } else {
            buf.extend_from_slice(String::from_utf8_lossy(user).to_lowercase().as_bytes());
        }
        buf.push(b'@');
        buf.extend_from_slice(host);
        let id = self.clients.id(&buf);
        self.buf = buf;
        id
    }

    #[inline]
    fn daemon(&mut self, daemon: &[u8]) -> &mut Daemon {
        let short = Short::new(daemon);
        let index = match self.last_daemon {
            Some((last, index)) if short == Some(last) => index,
            _ => {
                let index = self.daemon_index(daemon);
                self.last_daemon = short.map(|short| (short, index));
                index
            }
        };
        &mut self.daemons[index]
    }

    fn daemon_index(&mut self, daemon: &[u8]) -> usize {
        let found = self.daemons.iter().position(|d| d.name.eq_ignore_ascii_case(daemon));
        found.unwrap_or_else(|| {
            let name = daemon.to_ascii_lowercase().into();
            self.daemons.push(Daemon { name, ..Daemon::default() });
            self.daemons.len() - 1
        })
    }
}

/// The numbers of keys for all threads: each preparer looks keys up in a table of its own and
/// asks here only for a key it meets for the first time, so that every line reaches the engine
/// with a number the engine knows and the lock is taken once a key and thread.
#[derive(Debug, Default)]
pub struct Registry {
    keys: Keys,
    infos: Vec<KeyInfo>,
}

/// A [`Registry`] to share between threads.
#[derive(Debug, Default, Clone)]
pub struct SharedRegistry(Arc<Mutex<Registry>>);

impl SharedRegistry {
    /// The registry, for a moment.
    pub fn lock(&self) -> MutexGuard<'_, Registry> {
        // The registry only grows, one whole entry at a time: a panic elsewhere cannot leave
        // it half changed.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Registry {
    /// The number of the key, given a new one if it has none yet.
    pub fn register(&mut self, info: KeyInfo) -> KeyId {
        let next = KeyId::try_from(self.infos.len()).unwrap_or(NO_KEY);
        let id = self.keys.text(&info, || next);
        if id == next {
            self.infos.push(info);
        }
        id
    }

    /// How many keys have numbers.
    pub fn len(&self) -> usize {
        self.infos.len()
    }

    /// Whether none has.
    pub fn is_empty(&self) -> bool {
        self.infos.is_empty()
    }

    /// The keys from number `start` on.
    pub fn since(&self, start: usize) -> &[KeyInfo] {
        self.infos.get(start..).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Line, Message, Parsed, parse_line};

    /// Whether the line's key is new, and its id (numbered in the order met).
    fn lookup(keys: &mut Keys, count: &mut KeyId, line: &str, fold_case: bool) -> Lookup {
        let Parsed::Line(Line { daemon, message: Message::Usage(usage), .. }) =
            parse_line(line.as_bytes())
        else {
            panic!("not a usage line: {line}")
        };
        let next = *count;
        let id = keys.usage(daemon, &usage, fold_case, || next);
        if id == next {
            *count += 1;
            Lookup::New(id)
        } else {
            Lookup::Known(id)
        }
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Lookup {
        Known(KeyId),
        New(KeyId),
    }

    #[test]
    fn daemon_feature_user_and_host_make_the_key() {
        let (mut keys, mut count) = (Keys::default(), 0);
        let mut id = |line: &str| lookup(&mut keys, &mut count, line, false);
        assert_eq!(id(r#"1:00:00 (orglab) OUT: "Origin" ann@pc1"#), Lookup::New(0));
        assert_eq!(id(r#"1:00:00 (ORGLAB) IN: "Origin" ann@pc1  (INACTIVE)"#), Lookup::Known(0));
        assert_eq!(id(r#"1:00:00 (orglab) OUT: "Origin" ann @pc1"#), Lookup::Known(0));
        assert_eq!(id(r#"1:00:00 (orglab) OUT: "Origin" ann@pc2"#), Lookup::New(1));
        assert_eq!(id(r#"1:00:00 (orglab) OUT: "Origin" Ann@pc1"#), Lookup::New(2));
        assert_eq!(id(r#"1:00:00 (orglab) OUT: "OriginPro" ann@pc1"#), Lookup::New(3));
        assert_eq!(id(r#"1:00:00 (orglab_1) OUT: "Origin" ann@pc1"#), Lookup::New(4));
        let long = r#"1:00:00 (orglab) OUT: "Origin" a user with a very long name@pc1"#;
        assert_eq!(id(long), Lookup::New(5));
        assert_eq!(id(long), Lookup::Known(5));
        let text = |user: &str, host: &str| KeyInfo {
            daemon: "orglab".into(),
            feature: "Origin".into(),
            user: user.into(),
            host: host.into(),
        };
        assert_eq!(keys.text(&text("ann", "pc2"), || 99), 1);
        assert_eq!(keys.text(&text("bob", "pc2"), || 99), 99);
    }

    #[test]
    fn folding_joins_user_names_that_differ_in_case_only() {
        let (mut keys, mut count) = (Keys::default(), 0);
        let mut id = |line: &str| lookup(&mut keys, &mut count, line, true);
        assert_eq!(id(r#"1:00:00 (orglab) OUT: "Origin" Ann@pc1"#), Lookup::New(0));
        assert_eq!(id(r#"1:00:00 (orglab) OUT: "Origin" ANN@pc1"#), Lookup::Known(0));
        assert_eq!(id(r#"1:00:00 (orglab) OUT: "Origin" ann@PC1"#), Lookup::New(1));
        assert_eq!(id(r#"1:00:00 (orglab) OUT: "Origin" JOSÉ@pc1"#), Lookup::New(2));
        assert_eq!(id(r#"1:00:00 (orglab) OUT: "Origin" josé@pc1"#), Lookup::Known(2));
    }

    #[test]
    fn names_keep_their_ids_as_the_table_grows() {
        let mut names = Names::default();
        let name = |i: u32| format!("user{i:03}@PC-{:03}", i % 400);
        for i in 0..1000 {
            assert_eq!(names.id(name(i).as_bytes()), i);
        }
        assert_eq!(names.id(b""), 1000);
        for i in (0..1000).rev() {
            assert_eq!(names.id(name(i).as_bytes()), i);
        }
        assert_eq!(names.id(b""), 1000);
    }

    #[test]
    fn short_names_keep_their_length() {
        assert_ne!(Short::new(b"ab"), Short::new(b"ab\0"));
        assert!(Short::new(&[b'x'; 23]).is_some());
        assert!(Short::new(&[b'x'; 24]).is_none());
        let name = b"user466@PC-066 feature";
        for len in 0..=name.len() {
            let mut bytes = [0u8; 24];
            bytes[..len].copy_from_slice(&name[..len]);
            bytes[23] = u8::try_from(len).unwrap();
            let words: Vec<u64> =
                bytes.chunks(8).map(|w| u64::from_le_bytes(w.try_into().unwrap())).collect();
            assert_eq!(Short::new(&name[..len]).unwrap().0, words[..], "{len} bytes");
        }
    }
}
