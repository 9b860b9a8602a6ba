//! Session keys (daemon, feature, user, host) as small integers.
//!
//! Every usage line needs its key's id. Looking up the whole key text in one table of tens of
//! thousands of entries missed the cache on almost every line; instead the feature and the
//! `user@host` are looked up in small tables of names held inline (no pointer to follow, compared
//! as words), and their ids in a table of integers.

use crate::fasthash::FastMap;
use crate::parse::Usage;

/// Index of a (daemon, feature, user, host) key.
pub type KeyId = u32;

/// A name of up to [`Short::MAX`] bytes held inline, zero-padded, with its length in the last
/// byte (so that trailing NUL bytes still make a different name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Short([u64; 3]);

impl Short {
    const MAX: usize = 23;

    fn new(name: &[u8]) -> Option<Short> {
        let len = u8::try_from(name.len()).ok().filter(|&n| usize::from(n) <= Self::MAX)?;
        let mut bytes = [0u8; 24];
        bytes[..name.len()].copy_from_slice(name);
        bytes[23] = len;
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        Some(Short([word(0), word(1), word(2)]))
    }
}

/// Ids for byte strings of one kind.
#[derive(Debug, Default)]
struct Names {
    short: FastMap<Short, u32>,
    long: FastMap<Box<[u8]>, u32>,
}

impl Names {
    fn id(&mut self, name: &[u8]) -> u32 {
        let next = u32::try_from(self.short.len() + self.long.len()).unwrap_or(u32::MAX);
        match Short::new(name) {
            Some(short) => *self.short.entry(short).or_insert(next),
            None => match self.long.get(name) {
                Some(&id) => id,
                None => *self.long.entry(name.into()).or_insert(next),
            },
        }
    }
}

/// The key table.
#[derive(Debug, Default)]
pub struct Keys {
    /// Daemon names, lower-case: a log has one or two, so a scan beats hashing.
    daemons: Vec<Box<[u8]>>,
    features: Names,
    clients: Names,
    ids: FastMap<(u32, u32, u32), KeyId>,
    buf: Vec<u8>,
}

/// What a key lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// A key seen before.
    Known(KeyId),
    /// A key seen for the first time, now given this id.
    New(KeyId),
}

impl Keys {
    /// The id of the key of a usage line of `daemon`; `fold_case` compares user names in lower
    /// case.
    pub fn usage(&mut self, daemon: &[u8], usage: &Usage<'_>, fold_case: bool) -> Lookup {
        let daemon = self.daemon(daemon);
        let feature = self.features.id(usage.feature);
        let client = match usage.client {
            Some(client) if !fold_case => self.clients.id(client),
            _ => self.client(usage.user, usage.host, fold_case),
        };
        self.key(daemon, feature, client)
    }

    /// The id of a key given as text (as `--state` keeps it).
    pub fn text(&mut self, daemon: &str, feature: &str, user: &str, host: &str) -> Lookup {
        let daemon = self.daemon(daemon.as_bytes());
        let feature = self.features.id(feature.as_bytes());
        let client = self.client(user.as_bytes(), host.as_bytes(), false);
        self.key(daemon, feature, client)
    }

    fn key(&mut self, daemon: u32, feature: u32, client: u32) -> Lookup {
        let next = KeyId::try_from(self.ids.len()).unwrap_or(KeyId::MAX);
        let id = *self.ids.entry((daemon, feature, client)).or_insert(next);
        if id == next { Lookup::New(id) } else { Lookup::Known(id) }
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

    fn daemon(&mut self, daemon: &[u8]) -> u32 {
        let found = self.daemons.iter().position(|d| d.eq_ignore_ascii_case(daemon));
        let index = found.unwrap_or_else(|| {
            self.daemons.push(daemon.to_ascii_lowercase().into());
            self.daemons.len() - 1
        });
        u32::try_from(index).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Line, Message, Parsed, parse_line};

    fn lookup(keys: &mut Keys, line: &str, fold_case: bool) -> Lookup {
        match parse_line(line.as_bytes()) {
            Parsed::Line(Line { daemon, message: Message::Usage(usage), .. }) => {
                keys.usage(daemon, &usage, fold_case)
            }
            other => panic!("not a usage line: {other:?}"),
        }
    }

    #[test]
    fn daemon_feature_user_and_host_make_the_key() {
        let mut keys = Keys::default();
        let mut id = |line: &str| lookup(&mut keys, line, false);
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
        assert_eq!(keys.text("orglab", "Origin", "ann", "pc2"), Lookup::Known(1));
    }

    #[test]
    fn folding_joins_user_names_that_differ_in_case_only() {
        let mut keys = Keys::default();
        let mut id = |line: &str| lookup(&mut keys, line, true);
        assert_eq!(id(r#"1:00:00 (orglab) OUT: "Origin" Ann@pc1"#), Lookup::New(0));
        assert_eq!(id(r#"1:00:00 (orglab) OUT: "Origin" ANN@pc1"#), Lookup::Known(0));
        assert_eq!(id(r#"1:00:00 (orglab) OUT: "Origin" ann@PC1"#), Lookup::New(1));
        assert_eq!(id(r#"1:00:00 (orglab) OUT: "Origin" JOSÉ@pc1"#), Lookup::New(2));
        assert_eq!(id(r#"1:00:00 (orglab) OUT: "Origin" josé@pc1"#), Lookup::Known(2));
    }

    #[test]
    fn short_names_keep_their_length() {
        assert_ne!(Short::new(b"ab"), Short::new(b"ab\0"));
        assert!(Short::new(&[b'x'; 23]).is_some());
        assert!(Short::new(&[b'x'; 24]).is_none());
    }
}
