//! The streaming core: dates each line, keeps the open sessions with their reference counts,
//! closes them on IN, restart or end of input, pairs denials with a quick successful retry,
//! and tells a [`Sink`] what happened. Memory grows with the keys and open sessions, never
//! with the length of the log.

use std::collections::{HashSet, VecDeque};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::dates::{DateTracker, Resync};
pub use crate::keys::KeyId;
use crate::keys::SharedRegistry;
use crate::net::{Enricher, IpMatch};
use crate::open::OpenTable;
use crate::parse::{Anchor, Kind, Line, LineTime, Message, Parsed, parse_line};
use crate::prepare::{Block, Entry, Preparer, UsageEntry};
use crate::zone::DayClock;

/// One session key, as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    /// The vendor daemon, lower-case.
    pub daemon: String,
    /// The feature.
    pub feature: String,
    /// The user (lower-case with `--fold-case`).
    pub user: String,
    /// The client host.
    pub host: String,
}

/// The checkouts a key holds right now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenSession {
    /// When the first of the overlapping checkouts happened.
    pub start: i64,
    /// The open checkouts: (time, licenses); almost always one or two, held inline.
    pub checkouts: SmallVec<[(i64, u32); 2]>,
    /// The most licenses held at once during the session.
    pub max_licenses: u32,
    /// How many OUT lines the session had.
    pub outs: u32,
    /// The client address guessed for the first checkout (boxed: rare, and large).
    pub ip: Option<Box<IpMatch>>,
}

impl OpenSession {
    /// Licenses held now.
    pub fn held(&self) -> u32 {
        self.checkouts.iter().map(|c| c.1).sum()
    }
}

/// A session that ended (or is still open at the end of the input).
#[derive(Debug, Clone, Copy)]
pub struct ClosedSession<'a> {
    /// Its key.
    pub key: &'a KeyInfo,
    /// The session itself.
    pub session: &'a OpenSession,
    /// When it ended; `None` when still open.
    pub end: Option<i64>,
    /// The time it ended or, when open, the last time in the log.
    pub until: i64,
    /// `in`, `shutdown`, `inactive`, `removed`, `restart` or `open`.
    pub closed_by: &'static str,
}

/// A usage line as the sink sees it.
#[derive(Debug, Clone, Copy)]
pub struct UsageEvent<'a> {
    /// What happened.
    pub kind: Kind,
    /// Its key.
    pub key: &'a KeyInfo,
    /// Licenses on the line.
    pub licenses: u32,
    /// The reason text, raw.
    pub reason: Option<&'a [u8]>,
    /// The client address, for checkouts when snapshots were given.
    pub ip: Option<&'a IpMatch>,
}

/// A server lifecycle line as the sink sees it.
#[derive(Debug, Clone, Copy)]
pub struct ServerEvent<'a> {
    /// `lmgrd_start`, `vendor_start`, `vendor_restart`, `vendor_banner`, `reread`,
    /// `lmgrd_exit` or `port`.
    pub event: &'static str,
    /// The daemon it concerns.
    pub daemon: &'a str,
    /// Sessions it closed.
    pub closed: u32,
    /// The TCP port, for `port`.
    pub port: Option<u16>,
}

/// A change in what a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delta {
    /// Licenses taken (positive) or given back (negative).
    pub licenses: i64,
    /// Checkouts opened (+1) or closed (-1).
    pub checkouts: i32,
    /// This change opened a new session.
    pub session_started: bool,
}

/// What the engine tells the subcommands.
pub trait Sink {
    /// A usage line of a selected key.
    fn usage(&mut self, _time: i64, _event: &UsageEvent<'_>) -> anyhow::Result<()> {
        Ok(())
    }
    /// A server lifecycle line.
    fn server(&mut self, _time: i64, _event: &ServerEvent<'_>) -> anyhow::Result<()> {
        Ok(())
    }
    /// A number of the sink's choosing for a key, handed back with each of its changes: the
    /// engine keeps it in the key's state, which every line reads anyway, so that the sink
    /// need not look the key up again (a cache miss on nearly every change).
    fn tag(&mut self, _key: KeyId, _info: &KeyInfo) -> u32 {
        0
    }
    /// A key took or gave back licenses; `tag` is what [`Sink::tag`] gave for it.
    fn change(
        &mut self,
        _time: i64,
        _key: KeyId,
        _tag: u32,
        _info: &KeyInfo,
        _delta: Delta,
    ) -> anyhow::Result<()> {
        Ok(())
    }
    /// A session ended (or is open at the end).
    fn session(&mut self, _session: &ClosedSession<'_>) -> anyhow::Result<()> {
        Ok(())
    }
    /// A denial, once it is known whether a successful OUT followed it quickly.
    fn denial(
        &mut self,
        _time: i64,
        _key: KeyId,
        _info: &KeyInfo,
        _transient: bool,
    ) -> anyhow::Result<()> {
        Ok(())
    }
}

/// What the engine needs of a usage line.
#[derive(Debug, Clone, Copy)]
struct UsageLine<'a> {
    kind: Kind,
    licenses: u32,
    reason: Option<&'a [u8]>,
}

/// Whether to go on reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Next line, please.
    Continue,
    /// A line beyond `--at`/`--until` came: the rest cannot matter.
    Stop,
}

/// Options of the engine.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Date for lines before the first anchor.
    pub start_date: Option<NaiveDate>,
    /// Fold user names to lower case.
    pub fold_case: bool,
    /// Only these users (compared folded with `fold_case`).
    pub users: Vec<String>,
    /// Only these features.
    pub features: Vec<String>,
    /// Stop at the first line after this time.
    pub stop_after: Option<i64>,
    /// A denial followed within this many seconds by an OUT of the same key is transient.
    pub transient_secs: i64,
}

/// Counts of what the input held, for the summary on standard error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Lines read.
    pub lines: u64,
    /// Blank lines.
    pub blank: u64,
    /// Lines that are not debug-log lines.
    pub malformed: u64,
    /// The first few malformed lines: "SOURCE:LINE: why".
    pub first_malformed: Vec<String>,
    /// Usage lines before any date was known.
    pub undated: u64,
    /// Usage-shaped lines of unknown kinds.
    pub unknown_kinds: u64,
    /// IN lines with no open checkout to match.
    pub unmatched_in: u64,
    /// TIMESTAMP anchors that disagreed with the running date.
    pub resyncs: u64,
}

const FIRST_MALFORMED: usize = 5;

/// What a line needs to know of its key: with the key's session slot, twelve bytes in
/// sixteen, so that none straddles two cache lines.
#[derive(Debug, Clone, Copy)]
struct KeyState {
    /// Whether `--user`/`--feature` let the key through.
    selected: bool,
    /// The key's daemon's place in `Engine::daemons`, once known ([`NO_DAEMON`] before, and
    /// for the rare daemons past the first 65,535, which are looked up every time).
    daemon: u16,
    /// The sink's [`Sink::tag`] for the key, once asked ([`NO_TAG`] before).
    tag: u32,
}

const NO_DAEMON: u16 = u16::MAX;
const NO_TAG: u32 = u32::MAX;

/// What `--state` keeps between runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Saved {
    tracker: DateTracker,
    last_epoch: Option<i64>,
    port: Option<u16>,
    daemons: Vec<(String, i64)>,
    open: Vec<(KeyInfo, OpenSession)>,
}

/// The streaming core.
#[derive(Debug)]
pub struct Engine {
    tracker: DateTracker,
    clock: DayClock,
    options: Options,
    users: HashSet<String>,
    features: HashSet<String>,
    keys: Vec<KeyInfo>,
    /// Numbers the keys for every preparer; `keys` follows it.
    registry: SharedRegistry,
    /// Prepares the lines fed one by one with [`Engine::line`].
    preparer: Preparer,
    /// The open sessions, and what a line needs of its key (apart from `keys`, which is large
    /// and rarely needed on a line).
    open: OpenTable<KeyState>,
    daemons: Vec<(String, i64)>,
    port: Option<u16>,
    pending: VecDeque<(i64, KeyId)>,
    last_epoch: Option<i64>,
    enricher: Option<Enricher>,
    /// The daemon of the previous line as written, and its index in `daemons`.
    last_daemon: (Vec<u8>, usize),
    /// Counts for the summary.
    pub stats: Stats,
    source: String,
    line_no: u64,
}

impl Engine {
    /// A new engine for wall-clock times in `clock`'s zone.
    pub fn new(clock: DayClock, options: Options, enricher: Option<Enricher>) -> Self {
        let fold = |u: &String| if options.fold_case { u.to_lowercase() } else { u.clone() };
        let registry = SharedRegistry::default();
        let preparer = Preparer::new(registry.clone(), options.fold_case);
        Engine {
            tracker: DateTracker::new(options.start_date),
            clock,
            users: options.users.iter().map(fold).collect(),
            features: options.features.iter().cloned().collect(),
            options,
            registry,
            preparer,
            keys: Vec::new(),
            open: OpenTable::default(),
            daemons: Vec::new(),
            port: None,
            pending: VecDeque::new(),
            last_epoch: None,
            enricher,
            last_daemon: (Vec::new(), usize::MAX),
            stats: Stats::default(),
            source: String::new(),
            line_no: 0,
        }
    }

    /// Names the input the following lines come from (for messages about bad lines).
    pub fn set_source(&mut self, source: &str) {
        source.clone_into(&mut self.source);
        self.line_no = 0;
    }

    /// The time of the last dated line.
    pub fn last_epoch(&self) -> Option<i64> {
        self.last_epoch
    }

    /// The sessions open now, ordered by start.
    pub fn open_sessions(&self) -> Vec<(&KeyInfo, &OpenSession)> {
        self.open_by_start()
            .into_iter()
            .filter(|&id| self.open.state(id).selected)
            .filter_map(|id| self.open.get(id).map(|s| (&self.keys[id as usize], s)))
            .collect()
    }

    /// The keys with a session open, by the session's start, then user, host, feature and
    /// daemon: an order that does not hang on the numbers keys got, which depend on which
    /// preparer thread met a key first.
    fn open_by_start(&self) -> Vec<KeyId> {
        let order = |id: KeyId| {
            let key = &self.keys[id as usize];
            let start = self.open.get(id).map(|s| s.start);
            (start, &key.user, &key.host, &key.feature, &key.daemon)
        };
        let mut ids = self.open.keys();
        ids.sort_by(|&a, &b| order(a).cmp(&order(b)));
        ids
    }

    /// Feeds one line (with or without its ending).
    pub fn line<S: Sink>(&mut self, raw: &[u8], sink: &mut S) -> anyhow::Result<Flow> {
        let entry = self.preparer.line(raw);
        self.learn(self.preparer.horizon());
        self.entry(raw, entry, sink)
    }

    /// A preparer for [`Engine::block`], on another thread.
    pub fn preparer(&self) -> Preparer {
        Preparer::new(self.registry.clone(), self.options.fold_case)
    }

    /// Feeds the lines of a block that a preparer from [`Engine::preparer`] has been through.
    pub fn block<S: Sink>(&mut self, block: &Block, sink: &mut S) -> anyhow::Result<Flow> {
        self.learn(block.keys);
        for &(span, entry) in &block.lines {
            if self.entry(span.of(&block.bytes), entry, sink)? == Flow::Stop {
                return Ok(Flow::Stop);
            }
        }
        Ok(Flow::Continue)
    }

    /// Takes in the keys the registry numbered below `horizon` that are new to the engine.
    fn learn(&mut self, horizon: usize) {
        if horizon <= self.keys.len() {
            return;
        }
        let registry = self.registry.clone();
        for info in registry.lock().since(self.keys.len()) {
            let selected = (self.users.is_empty() || self.users.contains(&info.user))
                && (self.features.is_empty() || self.features.contains(&info.feature));
            self.keys.push(info.clone());
            self.open.add_key(KeyState { selected, daemon: NO_DAEMON, tag: NO_TAG });
        }
    }

    fn entry<S: Sink>(&mut self, raw: &[u8], entry: Entry, sink: &mut S) -> anyhow::Result<Flow> {
        self.stats.lines += 1;
        self.line_no += 1;
        match entry {
            Entry::Blank => {
                self.stats.blank += 1;
                Ok(Flow::Continue)
            }
            Entry::Malformed => {
                let why = match parse_line(raw) {
                    Parsed::Malformed(why) => why,
                    Parsed::Blank | Parsed::Line(_) => "not a debug-log line",
                };
                self.malformed(why);
                Ok(Flow::Continue)
            }
            Entry::Usage(usage) => self.usage_line(raw, &usage, sink),
            Entry::Other => match parse_line(raw) {
                Parsed::Line(line) => self.other_line(&line, sink),
                Parsed::Blank | Parsed::Malformed(_) => Ok(Flow::Continue),
            },
        }
    }

    fn usage_line<S: Sink>(
        &mut self,
        raw: &[u8],
        usage: &UsageEntry,
        sink: &mut S,
    ) -> anyhow::Result<Flow> {
        let Some(parts) = usage.parts(raw) else { return Ok(Flow::Continue) };
        let t = match parts.time {
            // Nearly every line: the running date's clock, without the anchors' cases.
            LineTime::Clock(secs) => {
                self.tracker.clock(secs).map(|date| self.clock.epoch(date, secs))
            }
            LineTime::Stamp { .. } => self.date(parts.time, None),
        };
        let Some(t) = t else {
            // Usage before any date cannot be placed: count what is lost.
            self.stats.undated += 1;
            return Ok(Flow::Continue);
        };
        if self.advance(t, sink)? == Flow::Stop {
            return Ok(Flow::Stop);
        }
        let id = usage.key;
        let line = UsageLine { kind: usage.kind, licenses: usage.licenses, reason: parts.reason };
        self.usage(t, id, &line, raw, sink)?;
        self.seen_key(id, parts.daemon, t);
        Ok(Flow::Continue)
    }

    fn other_line<S: Sink>(&mut self, line: &Line<'_>, sink: &mut S) -> anyhow::Result<Flow> {
        // lmgrd writes a few notes before its dated banner: nothing is lost with them.
        let Some(t) = self.date(line.time, line.message.anchor()) else {
            return Ok(Flow::Continue);
        };
        if self.advance(t, sink)? == Flow::Stop {
            return Ok(Flow::Stop);
        }
        self.message(t, line, sink)?;
        self.seen(line.daemon, t);
        Ok(Flow::Continue)
    }

    /// Moves the clock on to a line at `t`; stops after `--until`/`--at`.
    #[inline]
    fn advance<S: Sink>(&mut self, t: i64, sink: &mut S) -> anyhow::Result<Flow> {
        if let Some(stop) = self.options.stop_after.filter(|&stop| t > stop) {
            // What was open is known to have lasted until the stop time.
            self.last_epoch = Some(stop);
            return Ok(Flow::Stop);
        }
        self.last_epoch = Some(self.last_epoch.map_or(t, |l| l.max(t)));
        self.expire_denials(t, sink)?;
        Ok(Flow::Continue)
    }

    /// Counts an input record that carried no `line` field.
    pub fn record_without_line(&mut self) {
        self.stats.lines += 1;
        self.line_no += 1;
        self.malformed("record without a \"line\" field");
    }

    fn malformed(&mut self, why: &str) {
        self.stats.malformed += 1;
        if self.stats.first_malformed.len() < FIRST_MALFORMED {
            self.stats.first_malformed.push(format!("{}:{}: {why}", self.source, self.line_no));
        }
    }

    /// The Unix time of a line at `time`, from the running date or the date the line states.
    #[inline]
    fn date(&mut self, time: LineTime, anchor: Option<(NaiveDate, Anchor)>) -> Option<i64> {
        match time {
            LineTime::Clock(secs) => {
                let date = match anchor {
                    Some((date, anchor)) => {
                        let resync = self.tracker.anchor(date, secs);
                        self.warn_resync(resync, anchor);
                        date
                    }
                    None => self.tracker.clock(secs)?,
                };
                Some(self.clock.epoch(date, secs))
            }
            LineTime::Stamp { date, secs, offset } => {
                self.tracker.anchor(date, secs);
                Some(match offset {
                    Some(offset) => {
                        let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
                        midnight.and_utc().timestamp() + i64::from(secs) - i64::from(offset)
                    }
                    None => self.clock.epoch(date, secs),
                })
            }
        }
    }

    fn warn_resync(&mut self, resync: Option<Resync>, anchor: Anchor) {
        let Some(Resync { was, now }) = resync else { return };
        if anchor == Anchor::Timestamp {
            self.stats.resyncs += 1;
            tracing::warn!(
                "{}:{}: TIMESTAMP says {now} but the running date was {was}; following the TIMESTAMP",
                self.source,
                self.line_no
            );
        } else {
            tracing::info!(
                "{}:{}: date anchor {now} (running date was {was})",
                self.source,
                self.line_no
            );
        }
    }

    /// [`Engine::seen`] for a usage line of key `id`, whose daemon is found once a key.
    fn seen_key(&mut self, id: KeyId, daemon: &[u8], t: i64) {
        let known = self.open.state(id).daemon;
        match self.daemons.get_mut(usize::from(known)).filter(|_| known != NO_DAEMON) {
            Some((_, last)) => *last = (*last).max(t),
            None => self.open.state_mut(id).daemon = self.seen(daemon, t),
        }
    }

    /// Notes that `daemon` wrote a line at `t`; gives its place in `daemons`.
    fn seen(&mut self, daemon: &[u8], t: i64) -> u16 {
        let index = if self.last_daemon.1 < self.daemons.len() && self.last_daemon.0 == daemon {
            self.last_daemon.1
        } else {
            let found =
                self.daemons.iter().position(|(d, _)| d.as_bytes().eq_ignore_ascii_case(daemon));
            let index = found.unwrap_or_else(|| {
                self.daemons.push((String::from_utf8_lossy(daemon).to_ascii_lowercase(), t));
                self.daemons.len() - 1
            });
            self.last_daemon.0.clear();
            self.last_daemon.0.extend_from_slice(daemon);
            self.last_daemon.1 = index;
            index
        };
        let entry = &mut self.daemons[index].1;
        *entry = (*entry).max(t);
        u16::try_from(index).unwrap_or(NO_DAEMON)
    }

    /// The last time `daemon` wrote a line before `t` (a crash leaves no IN lines: its
    /// sessions end when it was last heard of).
    fn last_seen(&self, daemon: &str, t: i64) -> i64 {
        self.daemons.iter().find(|(d, _)| d.eq_ignore_ascii_case(daemon)).map_or(t, |(_, s)| *s)
    }

    /// A line other than usage (those come prepared, as [`Entry::Usage`]).
    fn message<S: Sink>(&mut self, t: i64, line: &Line<'_>, sink: &mut S) -> anyhow::Result<()> {
        let daemon = line.daemon;
        match line.message {
            Message::UnknownUsage(_) => {
                self.stats.unknown_kinds += 1;
                Ok(())
            }
            Message::LmgrdStart(_) => {
                let closed = self.close_restarted(None, t, sink)?;
                self.server(t, "lmgrd_start", daemon, closed, None, sink)
            }
            Message::VendorStart { daemon: vendor, after_crash } => {
                let closed = self.close_restarted(Some(vendor), t, sink)?;
                let event = if after_crash { "vendor_restart" } else { "vendor_start" };
                self.server(t, event, vendor, closed, None, sink)
            }
            Message::VendorBanner => {
                let closed = self.close_restarted(Some(daemon), t, sink)?;
                self.server(t, "vendor_banner", daemon, closed, None, sink)
            }
            Message::Reread => self.server(t, "reread", daemon, 0, None, sink),
            Message::LmgrdExit => self.server(t, "lmgrd_exit", daemon, 0, None, sink),
            Message::Port { daemon: vendor, port } => {
                self.port = Some(port);
                self.server(t, "port", vendor, 0, Some(port), sink)
            }
            Message::Usage(_) | Message::Timestamp(_) | Message::DateLine(_) | Message::Other => {
                Ok(())
            }
        }
    }

    fn server<S: Sink>(
        &self,
        t: i64,
        event: &'static str,
        daemon: &[u8],
        closed: u32,
        port: Option<u16>,
        sink: &mut S,
    ) -> anyhow::Result<()> {
        let daemon = String::from_utf8_lossy(daemon).to_ascii_lowercase();
        sink.server(t, &ServerEvent { event, daemon: &daemon, closed, port })
    }

    /// The number of a key read back from `--state`.
    fn key(&mut self, info: KeyInfo) -> KeyId {
        let id = self.registry.lock().register(info);
        self.learn(id as usize + 1);
        id
    }

    fn usage<S: Sink>(
        &mut self,
        t: i64,
        id: KeyId,
        usage: &UsageLine<'_>,
        raw: &[u8],
        sink: &mut S,
    ) -> anyhow::Result<()> {
        let idx = id as usize;
        if !self.open.state(id).selected {
            return Ok(());
        }
        match usage.kind {
            Kind::Out => self.check_out(t, id, usage, raw, sink),
            Kind::In => self.check_in(t, id, usage, sink),
            kind => {
                if kind == Kind::Denied {
                    self.pending.push_back((t, id));
                }
                let event = UsageEvent {
                    kind,
                    key: &self.keys[idx],
                    licenses: usage.licenses,
                    reason: usage.reason,
                    ip: None,
                };
                sink.usage(t, &event)
            }
        }
    }

    fn check_out<S: Sink>(
        &mut self,
        t: i64,
        id: KeyId,
        usage: &UsageLine<'_>,
        raw: &[u8],
        sink: &mut S,
    ) -> anyhow::Result<()> {
        self.resolve_denials(id, sink)?;
        let tag = self.tag(id, sink);
        let idx = id as usize;
        let ip = self.enricher.as_ref().and_then(|e| e.match_out(t, raw, self.port));
        let (session, started) = self.open.get_or_open(id, || OpenSession {
            start: t,
            checkouts: SmallVec::new(),
            max_licenses: 0,
            outs: 0,
            ip: ip.clone().map(Box::new),
        });
        session.checkouts.push((t, usage.licenses));
        session.outs += 1;
        session.max_licenses = session.max_licenses.max(session.held());
        let key = &self.keys[idx];
        let event = UsageEvent {
            kind: Kind::Out,
            key,
            licenses: usage.licenses,
            reason: usage.reason,
            ip: ip.as_ref(),
        };
        sink.usage(t, &event)?;
        let delta =
            Delta { licenses: i64::from(usage.licenses), checkouts: 1, session_started: started };
        sink.change(t, id, tag, key, delta)
    }

    fn check_in<S: Sink>(
        &mut self,
        t: i64,
        id: KeyId,
        usage: &UsageLine<'_>,
        sink: &mut S,
    ) -> anyhow::Result<()> {
        let tag = self.tag(id, sink);
        let idx = id as usize;
        let key = &self.keys[idx];
        let event = UsageEvent {
            kind: Kind::In,
            key,
            licenses: usage.licenses,
            reason: usage.reason,
            ip: None,
        };
        sink.usage(t, &event)?;
        let Some(session) = self.open.get_mut(id).filter(|s| !s.checkouts.is_empty()) else {
            self.stats.unmatched_in += 1;
            return Ok(());
        };
        let at = session.checkouts.iter().position(|c| c.1 == usage.licenses).unwrap_or(0);
        let (_, licenses) = session.checkouts.remove(at);
        let delta = Delta { licenses: -i64::from(licenses), checkouts: -1, session_started: false };
        sink.change(t, id, tag, key, delta)?;
        if session.checkouts.is_empty()
            && let Some(session) = self.open.take(id)
        {
            let closed_by = closed_by(usage.reason);
            let closed =
                ClosedSession { key, session: &session, end: Some(t), until: t, closed_by };
            sink.session(&closed)?;
        }
        Ok(())
    }

    /// Closes the sessions of `daemon` (every daemon for `None`) at the last line the daemon
    /// wrote before it started again.
    fn close_restarted<S: Sink>(
        &mut self,
        daemon: Option<&[u8]>,
        t: i64,
        sink: &mut S,
    ) -> anyhow::Result<u32> {
        let mut closed = 0;
        for id in self.open_by_start() {
            let idx = id as usize;
            let key = &self.keys[idx];
            if daemon.is_some_and(|d| !key.daemon.as_bytes().eq_ignore_ascii_case(d)) {
                continue;
            }
            let end = self.last_seen(&key.daemon, t);
            let tag = self.tag(id, sink);
            if let Some(session) = self.open.take(id) {
                let at = end.max(session.start);
                self.close((idx, tag), &session, at, "restart", Some(end), sink)?;
                closed += 1;
            }
        }
        Ok(closed)
    }

    /// Reports a session closed: `key` is its number and tag.
    fn close<S: Sink>(
        &self,
        (idx, tag): (usize, u32),
        session: &OpenSession,
        at: i64,
        closed_by: &'static str,
        end: Option<i64>,
        sink: &mut S,
    ) -> anyhow::Result<()> {
        let key = &self.keys[idx];
        let id = KeyId::try_from(idx).unwrap_or(KeyId::MAX);
        let held = i64::from(session.held());
        let count = i32::try_from(session.checkouts.len()).unwrap_or(i32::MAX);
        let delta = Delta { licenses: -held, checkouts: -count, session_started: false };
        sink.change(at, id, tag, key, delta)?;
        let end = end.map(|e| e.max(session.start));
        sink.session(&ClosedSession { key, session, end, until: at, closed_by })
    }

    /// The sink's tag for key `id`.
    #[inline]
    fn tag<S: Sink>(&mut self, id: KeyId, sink: &mut S) -> u32 {
        match self.open.state(id).tag {
            NO_TAG => self.new_tag(id, sink),
            tag => tag,
        }
    }

    /// Asks the sink for the tag of a key met for the first time (out of line: [`Engine::tag`]
    /// is on every checkout and checkin).
    #[cold]
    #[inline(never)]
    fn new_tag<S: Sink>(&mut self, id: KeyId, sink: &mut S) -> u32 {
        let tag = sink.tag(id, &self.keys[id as usize]);
        self.open.state_mut(id).tag = tag;
        tag
    }

    #[inline]
    fn expire_denials<S: Sink>(&mut self, t: i64, sink: &mut S) -> anyhow::Result<()> {
        while let Some(&(when, id)) = self.pending.front() {
            if when + self.options.transient_secs >= t {
                break;
            }
            self.pending.pop_front();
            sink.denial(when, id, &self.keys[id as usize], false)?;
        }
        Ok(())
    }

    #[inline]
    fn resolve_denials<S: Sink>(&mut self, id: KeyId, sink: &mut S) -> anyhow::Result<()> {
        let (front, back) = self.pending.as_slices();
        if !front.iter().chain(back).any(|p| p.1 == id) {
            return Ok(());
        }
        let mut rest = VecDeque::with_capacity(self.pending.len());
        for (when, key) in self.pending.drain(..) {
            if key == id {
                sink.denial(when, id, &self.keys[id as usize], true)?;
            } else {
                rest.push_back((when, key));
            }
        }
        self.pending = rest;
        Ok(())
    }

    /// The end of the input: pending denials count as real ones; with `emit_open`, sessions
    /// still open are reported as `open` (a run that keeps `--state` leaves them for later).
    pub fn finish<S: Sink>(&mut self, emit_open: bool, sink: &mut S) -> anyhow::Result<()> {
        while let Some((when, id)) = self.pending.pop_front() {
            sink.denial(when, id, &self.keys[id as usize], false)?;
        }
        if !emit_open {
            return Ok(());
        }
        let end = self.last_epoch.unwrap_or_default();
        let mut order = self.open_by_start();
        order.retain(|&id| self.open.state(id).selected);
        for id in order {
            let tag = self.tag(id, sink);
            if let Some(session) = self.open.get(id) {
                let at = end.max(session.start);
                self.close((id as usize, tag), session, at, "open", None, sink)?;
            }
        }
        Ok(())
    }

    /// What `--state` keeps.
    pub fn save(&self) -> Saved {
        let open = self
            .open
            .keys()
            .into_iter()
            .filter_map(|id| self.open.get(id).map(|s| (self.keys[id as usize].clone(), s.clone())))
            .collect();
        Saved {
            tracker: self.tracker.clone(),
            last_epoch: self.last_epoch,
            port: self.port,
            daemons: self.daemons.clone(),
            open,
        }
    }

    /// Takes up where a saved run stopped.
    pub fn restore(&mut self, saved: Saved) {
        if saved.tracker.date.is_some() {
            self.tracker = saved.tracker;
        }
        self.last_epoch = saved.last_epoch;
        self.port = self.port.or(saved.port);
        self.daemons = saved.daemons;
        self.last_daemon = (Vec::new(), usize::MAX);
        self.open.states_mut().for_each(|state| state.daemon = NO_DAEMON);
        for (info, session) in saved.open {
            let id = self.key(info);
            self.open.insert(id, session);
        }
    }
}

/// How a session ended, from the reason on its last IN.
pub fn closed_by(reason: Option<&[u8]>) -> &'static str {
    match reason {
        Some(b"SHUTDOWN") => "shutdown",
        Some(b"INACTIVE") => "inactive",
        Some(b"USER_REMOVED") => "removed",
        Some(b"SERVER_CRASH") => "restart",
        _ => "in",
    }
}
