//! The watcher: turns inotify events, scans and deadlines into upload records.
//!
//! A file is reported once it is *finished*: renamed or linked into its final name, or closed
//! after writing and then quiet for the settle time (same inode, size and mtime, no process
//! holding it open for writing), and the SFTP log (when given) does not veto it. Every report
//! goes into the ledger first, so no path to a report (event, scan, rescan) repeats one.

use std::collections::{HashMap, HashSet};
use std::fs::{self, Metadata};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use inotify::EventMask;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use opsline::{Code, Record, RecordWriter, Shutdown, StateFile, WithCode};
use walkdir::WalkDir;

use crate::ledger::{Entry, Key, Ledger};
use crate::pending::{Candidate, Pending, Via};
use crate::select::Selector;
use crate::sftplog::{Handle, SftpLog};
use crate::tree::{Event, Tree};
use crate::upload::Upload;
use crate::users::Owners;
use crate::writers::{self, Inode};

/// Format version of the state file.
pub const STATE_VERSION: u32 = 1;

/// How long reported uploads may wait before the state file is saved (a burst of uploads
/// costs one save per second, not one per file).
const SAVE_DELAY: Duration = Duration::from_secs(1);

/// How the trees are followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// inotify watches, until stopped.
    Watch,
    /// Scan every interval, until stopped (NFS changes made by other machines).
    Poll(Duration),
    /// Scan once, report what is complete, exit.
    Once,
}

/// Everything the engine is told.
#[derive(Debug)]
pub struct Config {
    /// The watched trees (canonical).
    pub roots: Vec<PathBuf>,
    /// Which names count.
    pub select: Selector,
    /// Quiet time after the last close.
    pub settle: Duration,
    /// How the trees are followed.
    pub mode: Mode,
    /// Full rescan period in watch mode; `None` for never.
    pub rescan_every: Option<Duration>,
    /// Report deletions too.
    pub deletes: bool,
    /// Rename uploads with spaces in their names.
    pub sanitize: bool,
    /// On a first run (no saved state), take what is already there as reported.
    pub skip_existing: bool,
}

/// Counters for the closing log line (`stopping reported=… overflows=…`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Upload records written.
    pub reported: u64,
    /// Error records written.
    pub failed: u64,
    /// Files the SFTP log vetoed.
    pub vetoed: u64,
    /// inotify queue overflows.
    pub overflows: u64,
    /// Full scans.
    pub scans: u64,
}

/// The watcher's state.
#[derive(Debug)]
pub struct Engine<W: Write> {
    tool: &'static str,
    config: Config,
    owners: Owners,
    log: Option<SftpLog>,
    state: Option<StateFile>,
    ledger: Ledger,
    pending: Pending,
    closed: HashMap<Key, Instant>,
    vanished: HashMap<PathBuf, Instant>,
    own_renames: HashSet<PathBuf>,
    log_waited: HashSet<PathBuf>,
    tree: Option<Tree>,
    out: RecordWriter<W>,
    writers: Option<(Instant, HashSet<Inode>)>,
    save_at: Option<Instant>,
    rescan_at: Option<Instant>,
    watch_limit_warned: bool,
    stats: Stats,
}

/// How long a file waits, once, for the SFTP log to catch up: when the log does not mention it
/// yet, or still shows its handle open although the file was closed or renamed into place.
/// Log lines travel through syslog and can lag the file system under load.
const LOG_GRACE: Duration = Duration::from_secs(2);

/// How long one look at the open writers is trusted.
const WRITERS_FRESH: Duration = Duration::from_millis(50);

/// A name that was closed after writing but gone when its event was read stays a clue this
/// long: the events that explain it (its link elsewhere, its unlink) were already queued then.
const VANISHED_MEMORY: Duration = Duration::from_secs(5);
/// … and the clues are dropped when there are more than this many.
const VANISHED_LIMIT: usize = 10_000;

/// Files remembered as closed (for link renames) are kept this long at most.
const CLOSED_MEMORY: Duration = Duration::from_secs(600);
/// … and pruned when there are more than this many.
const CLOSED_LIMIT: usize = 100_000;

impl<W: Write> Engine<W> {
    /// An engine writing to `out`, remembering reports in `state` (loaded here).
    pub fn new(
        tool: &'static str,
        config: Config,
        owners: Owners,
        log: Option<SftpLog>,
        state: Option<StateFile>,
        out: RecordWriter<W>,
    ) -> anyhow::Result<Self> {
        let saved = match &state {
            Some(state) => state.load::<Vec<Entry>>()?,
            None => None,
        };
        let first_run = saved.is_none();
        let ledger = Ledger::from_entries(saved.unwrap_or_default());
        let mut config = config;
        config.skip_existing &= first_run;
        Ok(Engine {
            tool,
            config,
            owners,
            log,
            state,
            ledger,
            pending: Pending::default(),
            closed: HashMap::new(),
            vanished: HashMap::new(),
            own_renames: HashSet::new(),
            log_waited: HashSet::new(),
            tree: None,
            out,
            writers: None,
            save_at: None,
            rescan_at: None,
            watch_limit_warned: false,
            stats: Stats::default(),
        })
    }

    /// Runs until `shutdown` (or, with [`Mode::Once`], until every found file is judged);
    /// saves the state and returns the exit status of the records written.
    pub fn run(mut self, shutdown: &Shutdown) -> anyhow::Result<Code> {
        let wake = shutdown.wake_socket().code(Code::IoErr, "cannot set up signal handling")?;
        if self.config.mode == Mode::Watch {
            self.tree = Some(Tree::new().code(Code::IoErr, "cannot start inotify")?);
        }
        let sleeper =
            Sleeper::new(&wake, self.tree.as_ref()).code(Code::IoErr, "cannot set up epoll")?;
        self.full_scan(true)?;
        self.config.skip_existing = false;
        self.save()?;
        self.log_start();
        let mut poll_at = self.poll_interval().map(|every| Instant::now() + every);
        self.schedule_rescan();
        while !shutdown.requested() {
            let now = Instant::now();
            self.judge_due(now)?;
            if self.config.mode == Mode::Once && self.pending.is_empty() {
                break;
            }
            if self.rescan_at.is_some_and(|at| at <= now) {
                tracing::info!("periodic rescan");
                self.full_scan(false)?;
                self.schedule_rescan();
            }
            if let (Some(at), Some(every)) = (poll_at, self.poll_interval())
                && at <= now
            {
                self.full_scan(false)?;
                poll_at = Some(Instant::now() + every);
            }
            if self.save_at.is_some_and(|at| at <= now) {
                self.save()?;
            }
            let next = [self.pending.next_deadline(), self.rescan_at, poll_at, self.save_at]
                .into_iter()
                .flatten()
                .min();
            if sleeper.wait(next).code(Code::IoErr, "epoll failed")? {
                self.drain_events()?;
            }
        }
        self.save()?;
        let stats = self.stats;
        tracing::info!(
            reported = stats.reported,
            failed = stats.failed,
            vetoed = stats.vetoed,
            overflows = stats.overflows,
            scans = stats.scans,
            "stopping"
        );
        Ok(self.out.finish()?)
    }

    fn log_start(&self) {
        let roots: Vec<String> =
            self.config.roots.iter().map(|r| r.display().to_string()).collect();
        match &self.tree {
            Some(tree) => tracing::info!(
                "watching {} folders under {}; {} uploads remembered",
                tree.len(),
                roots.join(", "),
                self.ledger.len()
            ),
            None => tracing::info!(
                "scanning {}; {} uploads remembered",
                roots.join(", "),
                self.ledger.len()
            ),
        }
    }

    fn poll_interval(&self) -> Option<Duration> {
        match self.config.mode {
            Mode::Poll(every) => Some(every),
            _ => None,
        }
    }

    fn schedule_rescan(&mut self) {
        self.rescan_at = match (self.config.mode, self.config.rescan_every) {
            (Mode::Watch, Some(every)) => Some(Instant::now() + every),
            _ => None,
        };
    }

    /// Handles one read's worth of events. The loop polls again before the next read: when the
    /// queue is empty, that poll is the sleep, with no read that only says EAGAIN in between
    /// the record just written and the sleep (the reader of our output often waits for this
    /// CPU). The first upload of a burst goes out before the rest of the queue is read.
    fn drain_events(&mut self) -> anyhow::Result<()> {
        let Some(tree) = self.tree.as_mut() else { return Ok(()) };
        let Some(events) = tree.read().code(Code::IoErr, "cannot read inotify events")? else {
            return Ok(());
        };
        let mut overflowed = false;
        for (i, event) in events.iter().enumerate() {
            if event.mask.contains(EventMask::Q_OVERFLOW) {
                overflowed = true;
                continue;
            }
            if !closed_further_on(event, &events[i + 1..]) {
                self.on_event(event)?;
            }
        }
        if overflowed {
            self.stats.overflows += 1;
            tracing::warn!(
                "inotify event queue overflowed (raise the sysctl fs.inotify.max_queued_events); rescanning every tree"
            );
            self.vanished.clear();
            self.full_scan(false)?;
        }
        Ok(())
    }

    fn on_event(&mut self, event: &Event) -> anyhow::Result<()> {
        let Some(tree) = self.tree.as_mut() else { return Ok(()) };
        if event.mask.contains(EventMask::IGNORED) {
            tree.forget(event.wd);
            return Ok(());
        }
        let (Some((dir, root)), Some(name)) = (tree.dir(event.wd), &event.name) else {
            return Ok(());
        };
        let path = dir.join(name);
        if event.mask.contains(EventMask::ISDIR) {
            if event.mask.intersects(EventMask::CREATE | EventMask::MOVED_TO) {
                self.scan_dir(&path, root, Via::Scan, false)?;
            } else if event.mask.intersects(EventMask::MOVED_FROM | EventMask::DELETE) {
                tree.unwatch_under(&path);
            }
            return Ok(());
        }
        if event.mask.intersects(EventMask::DELETE | EventMask::MOVED_FROM) {
            self.pending.remove(&path);
            self.vanished.remove(&path);
            if event.mask.contains(EventMask::DELETE) {
                self.on_delete(&path, root)?;
            }
            return Ok(());
        }
        let wanted = self.wants(&path, root);
        if !wanted && !event.mask.contains(EventMask::CLOSE_WRITE) {
            // Only the close of another name (a client's temporary name) matters: its inode
            // may be linked to a wanted name next.
            return Ok(());
        }
        let now = Instant::now();
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => meta,
            Ok(_) => return Ok(()),
            Err(_) => {
                if event.mask.contains(EventMask::CLOSE_WRITE) {
                    self.remember_vanished(path, now);
                }
                return Ok(());
            }
        };
        let key = Key::of(&meta);
        if event.mask.contains(EventMask::CLOSE_WRITE) {
            if wanted {
                self.offer_at(
                    path,
                    Candidate { key, via: Via::CloseWrite, root },
                    now + self.config.settle,
                    &meta,
                )?;
            }
            // After the report (with --settle 0): only a later link of this inode needs it.
            self.remember_closed(key, now);
        } else if event.mask.contains(EventMask::MOVED_TO) {
            if wanted {
                self.offer_at(path, Candidate { key, via: Via::MovedTo, root }, now, &meta)?;
            }
        } else if event.mask.contains(EventMask::CREATE) {
            if self.is_link_rename(&key, &meta) {
                // OpenSSH's plain SFTP rename: link(old, new) + unlink(old) of a closed file.
                self.offer_at(path, Candidate { key, via: Via::MovedTo, root }, now, &meta)?;
            } else if self.lagging_behind_a_close(now) {
                // Perhaps that rename, seen too late to know the inode: judged once the
                // queued events were read (a close of this name cancels it) and only if no
                // process holds it open for writing.
                tracing::debug!("{} appeared as a closed name vanished", path.display());
                self.pending.schedule(path, Candidate { key, via: Via::LateLink, root }, now);
            }
        }
        Ok(())
    }

    /// Notes a name whose close after writing we read only after the name was gone (renamed,
    /// linked elsewhere and unlinked, or deleted): we are behind the file system, and a file
    /// it was linked to may show up with one link and an inode we never saw closed.
    fn remember_vanished(&mut self, path: PathBuf, now: Instant) {
        remember(&mut self.vanished, path, now, VANISHED_LIMIT, VANISHED_MEMORY);
    }

    /// True when a closed name vanished before we read its close, and its unlink has not been
    /// read yet: a link made in between (OpenSSH's link+unlink rename) is still to come.
    fn lagging_behind_a_close(&mut self, now: Instant) -> bool {
        self.vanished.retain(|_, at| now.duration_since(*at) < VANISHED_MEMORY);
        !self.vanished.is_empty()
    }

    /// A new name for an inode that was already closed after writing (seen by us), or that
    /// still has another name: a link made by a rename, not a file being written.
    fn is_link_rename(&mut self, key: &Key, meta: &Metadata) -> bool {
        self.closed.remove(key).is_some() || meta.nlink() > 1
    }

    fn remember_closed(&mut self, key: Key, now: Instant) {
        remember(&mut self.closed, key, now, CLOSED_LIMIT, CLOSED_MEMORY);
    }

    fn on_delete(&mut self, path: &Path, root: usize) -> anyhow::Result<()> {
        if self.own_renames.remove(path) {
            return Ok(());
        }
        self.ledger.forget_path(path);
        self.mark_dirty();
        if self.config.deletes && self.wants(path, root) {
            let mut record = Record::new("delete");
            if let Err(e) = record.set_path(path) {
                record = Record::error("delete", self.tool, e);
            }
            self.write(&record)?;
        }
        Ok(())
    }

    fn wants(&self, path: &Path, root: usize) -> bool {
        let rel = path.strip_prefix(&self.config.roots[root]).unwrap_or(path);
        self.config.select.wants(rel)
    }

    /// Scans every tree: adds missing watches, offers every complete file not yet reported,
    /// and drops remembered uploads that are gone.
    fn full_scan(&mut self, initial: bool) -> anyhow::Result<()> {
        self.stats.scans += 1;
        self.ledger.begin_scan();
        let via = if self.poll_interval().is_some() { Via::Poll } else { Via::Scan };
        for root in 0..self.config.roots.len() {
            let dir = self.config.roots[root].clone();
            self.scan_dir(&dir, root, via, initial)?;
        }
        let dropped = self.ledger.end_scan();
        if dropped > 0 {
            tracing::debug!("forgot {dropped} uploads that are gone");
            self.mark_dirty();
        }
        Ok(())
    }

    /// Scans one folder tree. Each folder is watched before it is listed, so a file created
    /// in between raises an event instead of being missed.
    fn scan_dir(&mut self, dir: &Path, root: usize, via: Via, initial: bool) -> anyhow::Result<()> {
        let walk = WalkDir::new(dir).follow_links(false).follow_root_links(false);
        for entry in walk {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    tracing::warn!("cannot scan: {e}");
                    continue;
                }
            };
            if entry.file_type().is_dir() {
                self.watch_dir(entry.path(), root, initial)?;
                continue;
            }
            if !entry.file_type().is_file() || !self.wants(entry.path(), root) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            let key = Key::of(&meta);
            self.ledger.seen(&key);
            if self.ledger.contains(&key) {
                continue;
            }
            if self.config.skip_existing {
                self.ledger.insert(key, entry.path().to_owned());
                self.mark_dirty();
                continue;
            }
            self.offer_found(entry.into_path(), Candidate { key, via, root }, &meta)?;
        }
        Ok(())
    }

    fn watch_dir(&mut self, dir: &Path, root: usize, initial: bool) -> anyhow::Result<()> {
        let Some(tree) = self.tree.as_mut() else { return Ok(()) };
        if tree.is_watched(dir) && !initial {
            return Ok(());
        }
        match tree.watch(dir, root) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => {
                let message = format!(
                    "cannot watch {}: the inotify watch limit is reached ({} folders watched); raise the sysctl fs.inotify.max_user_watches",
                    dir.display(),
                    tree.len()
                );
                if initial {
                    return Err(opsline::exit::err(Code::TempFail, message));
                }
                if !std::mem::replace(&mut self.watch_limit_warned, true) {
                    tracing::error!("{message}; uploads there are found only by rescans");
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!("cannot watch {}: {e}", dir.display());
                Ok(())
            }
        }
    }

    /// Offers a file found by a scan: due at once when it has been quiet for the settle time
    /// already (by its mtime), else when it will have been.
    fn offer_found(
        &mut self,
        path: PathBuf,
        candidate: Candidate,
        meta: &Metadata,
    ) -> anyhow::Result<()> {
        if self.pending.get(&path).is_some_and(|waiting| waiting.key == candidate.key) {
            return Ok(());
        }
        let settle = self.settle_for(candidate.via);
        let age = meta
            .modified()
            .ok()
            .and_then(|mtime| SystemTime::now().duration_since(mtime).ok())
            .unwrap_or_default();
        let now = Instant::now();
        self.offer_at(path, candidate, now + settle.saturating_sub(age), meta)
    }

    /// The settle time for files found by `via`. Polling cannot see a remote writer finish,
    /// so a polled file must at least stay unchanged from one scan to the next.
    fn settle_for(&self, via: Via) -> Duration {
        match (via, self.poll_interval()) {
            (Via::Poll, Some(every)) => self.config.settle.max(every),
            _ => self.config.settle,
        }
    }

    /// Schedules `path` for judgement at `at`, or judges it now when that is due (with
    /// `meta`, just read, instead of looking again).
    fn offer_at(
        &mut self,
        path: PathBuf,
        candidate: Candidate,
        at: Instant,
        meta: &Metadata,
    ) -> anyhow::Result<()> {
        if at <= Instant::now() {
            self.pending.remove(&path);
            self.judge(path, candidate, Some(meta.clone()))
        } else {
            self.pending.schedule(path, candidate, at);
            Ok(())
        }
    }

    fn judge_due(&mut self, now: Instant) -> anyhow::Result<()> {
        let due = self.pending.take_due(now);
        for (path, candidate) in due {
            self.judge(path, candidate, None)?;
        }
        Ok(())
    }

    /// Decides on a file whose wait is over: report it, wait again, or drop it.
    fn judge(
        &mut self,
        path: PathBuf,
        candidate: Candidate,
        fresh: Option<Metadata>,
    ) -> anyhow::Result<()> {
        let waited_for_log = self.log_waited.remove(&path);
        let Some(meta) = fresh.or_else(|| fs::symlink_metadata(&path).ok()) else {
            return Ok(());
        };
        if !meta.is_file() {
            return Ok(());
        }
        let key = Key::of(&meta);
        if self.ledger.contains(&key) {
            return Ok(());
        }
        let settle = self.settle_for(candidate.via);
        if key != candidate.key {
            // Written again while settling: start the wait over with what it is now.
            let again = Candidate { key, ..candidate };
            self.pending.schedule(path, again, Instant::now() + settle);
            return Ok(());
        }
        let login = match self.sftp_verdict(&path) {
            Verdict::Veto(why) => {
                self.stats.vetoed += 1;
                tracing::info!("not reporting {}: {why}", path.display());
                return Ok(());
            }
            Verdict::Allow(login) => login,
            Verdict::Unknown | Verdict::Open if !waited_for_log => {
                // The server logs before it acts, but the line may still be on its way
                // (syslog): give it a moment once.
                self.log_waited.insert(path.clone());
                self.pending.schedule(path, candidate, Instant::now() + LOG_GRACE);
                return Ok(());
            }
            Verdict::Open => {
                self.stats.vetoed += 1;
                tracing::info!(
                    "not reporting {}: the SFTP log shows its handle was never closed",
                    path.display()
                );
                return Ok(());
            }
            Verdict::Unknown => None,
        };
        let probe = !settle.is_zero() || !candidate.via.writer_finished();
        if probe && self.open_writers().contains(&(key.dev, key.ino)) {
            if self.config.mode == Mode::Once {
                tracing::info!("not reporting {}: still open for writing", path.display());
            } else {
                let wait = settle.max(Duration::from_millis(500));
                self.pending.schedule(path, candidate, Instant::now() + wait);
            }
            return Ok(());
        }
        self.report(path, candidate, &meta, login.as_deref())
    }

    /// Files open for writing. One look at /proc serves every file judged within
    /// [`WRITERS_FRESH`], so a batch of thousands costs one scan, not thousands.
    fn open_writers(&mut self) -> &HashSet<Inode> {
        let now = Instant::now();
        if self.writers.as_ref().is_none_or(|(at, _)| now.duration_since(*at) > WRITERS_FRESH) {
            self.writers = Some((now, writers::open_for_writing()));
        }
        &self.writers.as_ref().expect("set above").1
    }

    fn sftp_verdict(&mut self, path: &Path) -> Verdict {
        let Some(log) = self.log.as_mut() else { return Verdict::Allow(None) };
        match log.status(path) {
            None => Verdict::Unknown,
            Some(state) => match state.handle {
                Handle::Closed => Verdict::Allow(state.login.clone()),
                Handle::Forced => {
                    Verdict::Veto("the SFTP log shows the upload was cut off (forced close)")
                }
                Handle::Writing => Verdict::Open,
            },
        }
    }

    fn report(
        &mut self,
        path: PathBuf,
        candidate: Candidate,
        meta: &Metadata,
        login: Option<&str>,
    ) -> anyhow::Result<()> {
        let renamed = self.sanitize(&path);
        self.write_upload(renamed.as_deref().unwrap_or(&path), candidate, meta, login)?;
        // Remembered once the record is out: the reader waits for nothing else, and a record
        // that could not be written leaves its upload to be reported again.
        self.ledger.insert(candidate.key, path);
        if let Some(renamed) = renamed {
            self.ledger.insert(candidate.key, renamed);
        }
        self.mark_dirty();
        Ok(())
    }

    fn write_upload(
        &mut self,
        path: &Path,
        candidate: Candidate,
        meta: &Metadata,
        login: Option<&str>,
    ) -> anyhow::Result<()> {
        let root = &self.config.roots[candidate.root];
        let user = self.owners.user_json(root, path, meta.uid(), login);
        let via = candidate.via.as_str();
        match opsline::record::path_to_str(path) {
            Ok(text) => {
                let mtime =
                    meta.modified().map(opsline::time::system_time_rfc3339).unwrap_or_default();
                let upload = Upload { path: text, size: meta.size(), mtime: &mtime, user, via };
                self.stats.reported += 1;
                upload.write(&mut self.out).code(Code::IoErr, "cannot write to standard output")
            }
            Err(e) => {
                let mut record = Record::error("upload", self.tool, e);
                record.insert("size", meta.size());
                record.insert("via", via);
                self.stats.failed += 1;
                self.write(&record)
            }
        }
    }

    /// With --sanitize-names, renames an upload with spaces in its name; the new name.
    fn sanitize(&mut self, path: &Path) -> Option<PathBuf> {
        if !self.config.sanitize {
            return None;
        }
        match crate::sanitize::rename(path) {
            Ok(Some(renamed)) => {
                self.own_renames.insert(path.to_owned());
                Some(renamed)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!("cannot rename {} to a name without spaces: {e}", path.display());
                None
            }
        }
    }

    fn write(&mut self, record: &Record) -> anyhow::Result<()> {
        self.out.write(record).code(Code::IoErr, "cannot write to standard output")
    }

    fn mark_dirty(&mut self) {
        if self.state.is_some() && self.save_at.is_none() {
            self.save_at = Some(Instant::now() + SAVE_DELAY);
        }
    }

    fn save(&mut self) -> anyhow::Result<()> {
        self.save_at = None;
        match &self.state {
            Some(state) => state.save(&self.ledger.entries()),
            None => Ok(()),
        }
    }
}

/// The one place the watcher sleeps: epoll on the signal wake socket and the inotify
/// descriptor, registered once (poll(2) registers both again on every sleep and wake-up).
#[derive(Debug)]
struct Sleeper {
    epoll: Epoll,
}

/// epoll's tag for the inotify descriptor (the wake socket's is 0).
const INOTIFY: u64 = 1;

impl Sleeper {
    fn new(wake: &UnixStream, tree: Option<&Tree>) -> io::Result<Sleeper> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        epoll.add(wake, EpollEvent::new(EpollFlags::EPOLLIN, 0))?;
        if let Some(tree) = tree {
            epoll.add(tree.fd(), EpollEvent::new(EpollFlags::EPOLLIN, INOTIFY))?;
        }
        Ok(Sleeper { epoll })
    }

    /// Sleeps until inotify has events (true), a signal arrives or `until` passes. Nothing
    /// else wakes the process.
    fn wait(&self, until: Option<Instant>) -> io::Result<bool> {
        let timeout = match until {
            None => EpollTimeout::NONE,
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                let millis = left.as_micros().div_ceil(1000);
                EpollTimeout::try_from(i32::try_from(millis).unwrap_or(i32::MAX))
                    .unwrap_or(EpollTimeout::MAX)
            }
        };
        let mut ready = [EpollEvent::empty(); 2];
        let count = match self.epoll.wait(&mut ready, timeout) {
            Ok(count) => count,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => return Err(io::Error::from(e)),
        };
        Ok(ready[..count].iter().any(|event| event.data() == INOTIFY))
    }
}

/// How many events after a file's creation are searched for its close.
const CLOSE_LOOKAHEAD: usize = 8;

/// True for the creation of a file that is closed after writing a few events later in the
/// same read (a small file written at once, or one read late): the close decides about it, as
/// about any file written after it appeared, so the creation needs no look of its own.
fn closed_further_on(event: &Event, rest: &[Event]) -> bool {
    event.mask.contains(EventMask::CREATE)
        && !event.mask.contains(EventMask::ISDIR)
        && rest.iter().take(CLOSE_LOOKAHEAD).any(|later| {
            later.mask.contains(EventMask::CLOSE_WRITE)
                && later.wd == event.wd
                && later.name == event.name
        })
}

/// Remembers `key` as seen at `now` in a map bounded to `limit` entries: when it is full,
/// entries older than `memory` go, and all of them if that is not enough (a flood of events
/// must not grow the map without bound).
fn remember<K: Eq + std::hash::Hash>(
    map: &mut HashMap<K, Instant>,
    key: K,
    now: Instant,
    limit: usize,
    memory: Duration,
) {
    if map.len() >= limit {
        map.retain(|_, at| now.duration_since(*at) < memory);
        if map.len() >= limit {
            map.clear();
        }
    }
    map.insert(key, now);
}

/// What the SFTP log says about a file.
enum Verdict {
    /// Report it (as uploaded by this session user, if known).
    Allow(Option<String>),
    /// The log has no line about it (yet).
    Unknown,
    /// The log shows its handle still open: vetoed unless the close line turns up.
    Open,
    /// Do not report it, for this reason.
    Veto(&'static str),
}
