//! The open sessions by key, and what else a line needs of its key.
//!
//! Every usage line asks whether its key has a session open. Keys run to tens of thousands
//! but few hold a session at any time, so each key has only a slot number and the sessions
//! themselves sit together in a short list. The key's other per-line state sits beside its
//! slot: one cache miss a line rather than one an array.

use crate::engine::OpenSession;
use crate::keys::KeyId;

const NONE: u32 = u32::MAX;

/// Open sessions, found by key, with a `T` for each key.
#[derive(Debug)]
pub struct OpenTable<T> {
    keys: Vec<PerKey<T>>,
    /// The open sessions, each in a cache line of its own (a line is the unit of every miss,
    /// and a session across two lines costs two).
    live: Vec<Line>,
    /// The key of each of `live`.
    live_keys: Vec<KeyId>,
}

#[derive(Debug)]
#[repr(align(64))]
struct Line(OpenSession);

/// Aligned so that a small state (up to eight bytes) never straddles two cache lines.
#[derive(Debug)]
#[repr(align(16))]
struct PerKey<T> {
    /// The key's place in `live`, or [`NONE`].
    slot: u32,
    state: T,
}

impl<T> Default for OpenTable<T> {
    fn default() -> Self {
        OpenTable { keys: Vec::new(), live: Vec::new(), live_keys: Vec::new() }
    }
}

impl<T> OpenTable<T> {
    /// Makes room for the next key, with its state.
    pub fn add_key(&mut self, state: T) {
        self.keys.push(PerKey { slot: NONE, state });
    }

    /// The key's state.
    #[inline]
    pub fn state(&self, key: KeyId) -> &T {
        &self.keys[key as usize].state
    }

    /// The key's state, to change.
    #[inline]
    pub fn state_mut(&mut self, key: KeyId) -> &mut T {
        &mut self.keys[key as usize].state
    }

    /// Every key's state, to change.
    pub fn states_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.keys.iter_mut().map(|key| &mut key.state)
    }

    #[inline]
    fn place(&self, key: KeyId) -> Option<usize> {
        let slot = self.keys.get(key as usize)?.slot;
        (slot != NONE).then_some(slot as usize)
    }

    /// The key's open session.
    pub fn get(&self, key: KeyId) -> Option<&OpenSession> {
        self.place(key).map(|i| &self.live[i].0)
    }

    /// The key's open session, to change.
    #[inline]
    pub fn get_mut(&mut self, key: KeyId) -> Option<&mut OpenSession> {
        self.place(key).map(|i| &mut self.live[i].0)
    }

    /// Opens a session for the key (replacing one already open).
    pub fn insert(&mut self, key: KeyId, session: OpenSession) {
        match self.place(key) {
            Some(i) => self.live[i].0 = session,
            None => {
                self.open_at_end(key, session);
            }
        }
    }

    /// The key's open session, opened with `open` if there is none; and whether it was.
    #[inline]
    pub fn get_or_open(
        &mut self,
        key: KeyId,
        open: impl FnOnce() -> OpenSession,
    ) -> (&mut OpenSession, bool) {
        let (i, opened) = match self.place(key) {
            Some(i) => (i, false),
            None => {
                self.open_at_end(key, open());
                (self.live.len() - 1, true)
            }
        };
        (&mut self.live[i].0, opened)
    }

    fn open_at_end(&mut self, key: KeyId, session: OpenSession) {
        self.keys[key as usize].slot = u32::try_from(self.live.len()).unwrap_or(NONE);
        self.live.push(Line(session));
        self.live_keys.push(key);
    }

    /// Closes the key's session, giving it back.
    pub fn take(&mut self, key: KeyId) -> Option<OpenSession> {
        let i = self.place(key)?;
        self.keys[key as usize].slot = NONE;
        let Line(session) = self.live.swap_remove(i);
        self.live_keys.swap_remove(i);
        if let Some(&moved) = self.live_keys.get(i) {
            self.keys[moved as usize].slot = u32::try_from(i).unwrap_or(NONE);
        }
        Some(session)
    }

    /// The keys with a session open, in key order.
    pub fn keys(&self) -> Vec<KeyId> {
        let mut keys = self.live_keys.clone();
        keys.sort_unstable();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(start: i64) -> OpenSession {
        OpenSession {
            start,
            checkouts: smallvec::smallvec![(start, 1)],
            max_licenses: 1,
            outs: 1,
            ip: None,
        }
    }

    #[test]
    fn a_session_fills_one_cache_line() {
        assert_eq!(size_of::<Line>(), 64);
    }

    #[test]
    fn a_key_with_a_small_state_takes_sixteen_bytes() {
        assert_eq!(size_of::<PerKey<(bool, u16, u32)>>(), 16);
    }

    #[test]
    fn sessions_come_and_go_by_key() {
        let mut table = OpenTable::default();
        (0..4).for_each(|key| table.add_key(key * 10));
        table.insert(2, session(20));
        table.insert(0, session(0));
        table.insert(3, session(30));
        assert_eq!(table.keys(), [0, 2, 3]);
        assert_eq!(table.take(2).map(|s| s.start), Some(20));
        assert!(table.get(2).is_none());
        assert_eq!(table.take(2), None);
        assert_eq!(table.get(3).map(|s| s.start), Some(30), "the moved session is still found");
        table.get_mut(0).unwrap().outs = 5;
        assert_eq!(table.get(0).map(|s| s.outs), Some(5));
        assert_eq!(table.keys(), [0, 3]);
        assert!(table.get(1).is_none());
        let (opened, new) = table.get_or_open(1, || session(10));
        assert_eq!((opened.start, new), (10, true));
        let (found, new) = table.get_or_open(3, || session(99));
        assert_eq!((found.start, new), (30, false), "an open session is kept");
        assert_eq!(table.keys(), [0, 1, 3]);
        *table.state_mut(1) += 1;
        assert_eq!((*table.state(1), *table.state(2)), (11, 20), "states stay with their keys");
    }
}
