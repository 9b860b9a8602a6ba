//! One log: find where reading stopped (through rotation and truncation), read what is new,
//! and move the saved position along only after the lines were written.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flate2::read::MultiGzDecoder;
use opsline::exit::err;
use opsline::{Code, StateFile, WithCode};
use tracing::{info, warn};

use crate::emit::{Emitter, Origin};
use crate::reader::{Block, LineReader, LineSink};
use crate::rotation::{self, Candidate, Finder};
use crate::state::{FINGERPRINT_LEN, Fingerprint, Position, State};

/// How often the position is saved during a long read or while following.
pub const SAVE_EVERY: Duration = Duration::from_secs(1);

/// How often, and how far apart, the rotated files are looked at again when the file last read
/// is not among them.
const SETTLE_ATTEMPTS: u32 = 3;
const SETTLE_PAUSE: Duration = Duration::from_millis(50);

/// Options that shape how a log is tailed.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Without a saved position, start at the end.
    pub from_end: bool,
    /// Extra patterns for rotated files.
    pub rotated_globs: Vec<String>,
}

/// Output, state and the shared line buffer of one run.
#[derive(Debug)]
pub struct Session {
    reader: LineReader,
    core: Core,
}

#[derive(Debug)]
struct Core {
    emitter: Emitter,
    statefile: StateFile,
    state: State,
    dirty: bool,
    last_save: Instant,
}

impl Session {
    /// A session writing through `emitter` and saving `state` to `statefile`, reading `chunk`
    /// bytes at a time.
    pub fn new(
        emitter: Emitter,
        statefile: StateFile,
        state: State,
        chunk: usize,
        max_line: usize,
    ) -> Self {
        let core = Core { emitter, statefile, state, dirty: false, last_save: Instant::now() };
        Session { reader: LineReader::new(chunk, max_line), core }
    }

    /// The state as it stands (possibly not saved yet).
    pub fn state(&self) -> &State {
        &self.core.state
    }

    /// Changes the state; it is saved at the next checkpoint.
    pub fn update(&mut self, change: impl FnOnce(&mut State)) {
        change(&mut self.core.state);
        self.core.dirty = true;
    }

    /// The emitter, for sources other than files.
    pub fn emitter(&mut self) -> &mut Emitter {
        &mut self.core.emitter
    }

    /// Flushes the records written so far and then saves the position that covers them.
    pub fn save(&mut self) -> anyhow::Result<()> {
        self.core.save()
    }

    /// Saves when there is unsaved progress and the last save is a second old.
    pub fn maybe_save(&mut self) -> anyhow::Result<()> {
        self.core.maybe_save()
    }

    /// How long until unsaved progress is due to be saved; `None` when all is saved.
    pub fn save_due_in(&self) -> Option<Duration> {
        self.core.dirty.then(|| SAVE_EVERY.saturating_sub(self.core.last_save.elapsed()))
    }

    /// Saves, flushes and returns the exit status.
    pub fn finish(mut self) -> anyhow::Result<Code> {
        self.core.save()?;
        self.core.emitter.finish()
    }
}

impl Core {
    fn save(&mut self) -> anyhow::Result<()> {
        self.emitter.flush()?;
        self.statefile.save(&self.state)?;
        self.dirty = false;
        self.last_save = Instant::now();
        Ok(())
    }

    fn set_position(&mut self, key: &str, position: Position) {
        if self.state.files.get(key) != Some(&position) {
            self.state.files.insert(key.to_owned(), position);
            self.dirty = true;
        }
    }

    fn maybe_save(&mut self) -> anyhow::Result<()> {
        if self.dirty && self.last_save.elapsed() >= SAVE_EVERY { self.save() } else { Ok(()) }
    }
}

/// One log given on the command line.
#[derive(Debug)]
pub struct Tailer {
    log: PathBuf,
    key: String,
    finder: Finder,
    from_end: bool,
    open: Option<Held>,
    warned_missing: bool,
}

/// The file being read, kept open while following so that lines written to it after a rename
/// or deletion are not lost.
#[derive(Debug)]
struct Held {
    file: File,
    dev: u64,
    inode: u64,
}

/// What a step reads.
enum Plan {
    /// These files, in order.
    Read(Vec<Source>),
    /// Nothing: the log is gone (its position is kept).
    Missing,
    /// The log changed while being looked at: look again.
    Moving,
}

/// A file to read from some offset on.
struct Source {
    file: File,
    path: PathBuf,
    gz: bool,
    dev: u64,
    inode: u64,
    start: u64,
    head: Vec<u8>,
    has_data: bool,
}

impl Source {
    fn open(path: &Path, gz: bool, start: u64) -> io::Result<Self> {
        let file = File::open(path)?;
        Source::from_file(file, path, gz, start)
    }

    /// Opens a listed rotated file, making sure the name still leads to the file that was
    /// listed (a rotation may have moved names along in between).
    fn open_candidate(candidate: &Candidate, start: u64) -> io::Result<Self> {
        let source = Source::open(&candidate.path, candidate.gz, start)?;
        if (source.dev, source.inode) != (candidate.dev, candidate.inode) {
            return Err(io::Error::other("it was replaced while being looked at"));
        }
        Ok(source)
    }

    fn from_file(file: File, path: &Path, gz: bool, start: u64) -> io::Result<Self> {
        let meta = file.metadata()?;
        let head = rotation::head(&file, gz)?;
        Ok(Source {
            file,
            path: path.to_owned(),
            gz,
            dev: meta.dev(),
            inode: meta.ino(),
            start,
            has_data: meta.len() > 0,
            head,
        })
    }

    fn position(&self, offset: u64) -> Position {
        Position {
            source: self.path.to_string_lossy().into_owned(),
            dev: self.dev,
            inode: self.inode,
            offset,
            fingerprint: self.fingerprint(),
        }
    }

    /// The fingerprint covers the file's first bytes as read at open (bytes once written do
    /// not change unless the file is truncated), up to [`FINGERPRINT_LEN`].
    fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.head)
    }

    /// Re-reads a short head, so that a file that has grown gets a longer fingerprint.
    fn refresh_head(&mut self) -> io::Result<()> {
        if !self.gz && self.head.len() < FINGERPRINT_LEN {
            self.head = rotation::head(&self.file, false)?;
        }
        Ok(())
    }

    fn stream(&mut self) -> io::Result<Box<dyn Read + '_>> {
        if self.gz {
            // The head was read through a duplicate of this descriptor, which shares its offset.
            (&self.file).seek(SeekFrom::Start(0))?;
            let mut decoder =
                MultiGzDecoder::new(io::BufReader::with_capacity(1 << 16, &self.file));
            let skipped = io::copy(&mut (&mut decoder).take(self.start), &mut io::sink())?;
            if skipped < self.start {
                self.start = skipped;
            }
            return Ok(Box::new(decoder));
        }
        (&self.file).seek(SeekFrom::Start(self.start))?;
        Ok(Box::new(&self.file))
    }
}

impl Tailer {
    /// A tailer for `log`.
    pub fn new(log: &Path, options: &Options) -> anyhow::Result<Self> {
        let log = absolute(log);
        Ok(Tailer {
            key: log.to_string_lossy().into_owned(),
            finder: Finder::new(&log, &options.rotated_globs)?,
            log,
            from_end: options.from_end,
            open: None,
            warned_missing: false,
        })
    }

    /// The folders to watch for this log.
    pub fn folders(&self) -> Vec<PathBuf> {
        self.finder.folders()
    }

    /// True when a change to `name` in a watched folder may concern this log.
    pub fn concerns(&self, name: &std::ffi::OsStr) -> bool {
        self.finder.concerns(name)
    }

    /// Reads everything new and moves the position along.
    pub fn step(&mut self, session: &mut Session) -> anyhow::Result<()> {
        for attempt in 1..=SETTLE_ATTEMPTS {
            match self.plan(session, attempt == SETTLE_ATTEMPTS)? {
                Plan::Read(sources) => return self.read_sources(session, sources),
                Plan::Missing => return Ok(()),
                Plan::Moving if attempt < SETTLE_ATTEMPTS => std::thread::sleep(SETTLE_PAUSE),
                Plan::Moving => {}
            }
        }
        info!("{} kept changing while being looked at; trying again later", self.log.display());
        Ok(())
    }

    /// What to read, in order; [`Plan::Moving`] when the log was renamed or replaced while
    /// the plan was being made. On the `last_try` a copy of the log is read past rather than
    /// waited for.
    fn plan(&mut self, session: &Session, last_try: bool) -> anyhow::Result<Plan> {
        let meta = self.stat()?;
        let saved = session.core.state.files.get(&self.key).cloned();
        let Some(pos) = saved else { return self.first_read(meta) };
        if let Some(meta) = meta.as_ref().filter(|m| (m.dev(), m.ino()) == (pos.dev, pos.inode)) {
            let Some(mut source) = self.open_log(pos.offset, (pos.dev, pos.inode))? else {
                return Ok(Plan::Moving);
            };
            if meta.len() < pos.offset || !pos.fingerprint.matches(&source.head) {
                source.start = 0;
                let (mut sources, complete) = self.copy_of(&pos);
                if !self.is_still((pos.dev, pos.inode))? {
                    // Rotated while its copy was being looked for: the order is unknown.
                    return Ok(Plan::Moving);
                }
                if self.copy_pending(&mut sources, &source, last_try) {
                    return Ok(Plan::Moving);
                }
                warn!(
                    "{} was truncated or replaced (copytruncate?); {}reading it again from the \
                     start: lines written between the copy and the truncation may be missing",
                    self.log.display(),
                    match sources.first() {
                        Some(copy) =>
                            format!("finishing its copy {} first, then ", copy.path.display()),
                        None => String::new(),
                    }
                );
                if complete {
                    sources.push(source);
                }
                return Ok(Plan::Read(sources));
            }
            return Ok(Plan::Read(vec![source]));
        }
        let current = meta.as_ref().map(|m| (m.dev(), m.ino()));
        // The log is opened before its rotated files are listed: a copytruncate that copies
        // it in between is then listed as a copy of what was opened (and waited for), while
        // one done between a listing and the open would leave its copy unread.
        let log = match current {
            Some(id) => match self.open_log(0, id)? {
                Some(source) => Some(source),
                None => return Ok(Plan::Moving),
            },
            None => None,
        };
        let (mut sources, complete) = self.locate_settled(&pos, current);
        if let Some(id) = current
            && !self.is_still(id)?
        {
            // Rotated while its rotated files were listed: the list left it out as the log,
            // and may hold its compressed copy.
            return Ok(Plan::Moving);
        }
        if let Some(source) = log.filter(|_| complete) {
            if self.copy_pending(&mut sources, &source, last_try) {
                return Ok(Plan::Moving);
            }
            if sources.is_empty() {
                warn!(
                    "{} is another file now and the file last read ({}, inode {}) was not found \
                     among its rotated files: reading the new file from the start; lines the old \
                     one had not given yet may be missing",
                    self.log.display(),
                    pos.source,
                    pos.inode
                );
            }
            sources.push(source);
        }
        if sources.is_empty() {
            if !self.warned_missing {
                warn!("{} is missing; keeping its position until it returns", self.log.display());
            }
            self.warned_missing = true;
            return Ok(Plan::Missing);
        }
        self.warned_missing = false;
        Ok(Plan::Read(sources))
    }

    /// True when the newest rotated file after the one last read may be a copy of the log
    /// as it is now: a copytruncate has copied it and not truncated it yet (reading both
    /// would give the same lines twice), or its copy has just been created and holds no
    /// whole line yet (it would be read to its end after the open, and the log's old
    /// first bytes would then name that copy as unread). Both are waited for. On the
    /// `last_try` a copy is dropped instead (one never followed by a truncation, such as a
    /// copy made by hand, holds nothing the log does not), and a file without a whole line
    /// is read.
    fn copy_pending(&self, sources: &mut Vec<Source>, log: &Source, last_try: bool) -> bool {
        let Some(newest) = sources.last().filter(|_| sources.len() > 1) else { return false };
        if is_copy_of(newest, log) {
            if !last_try {
                return true;
            }
            let copy = sources.pop().map(|c| c.path);
            info!(
                "{} still starts like its copy {}: reading the log, not the copy",
                self.log.display(),
                copy.unwrap_or_default().display()
            );
            return false;
        }
        !last_try && has_whole_line(&log.head) && !has_whole_line(&newest.head)
    }

    /// The log itself, if it is still the file `id` (device, inode) that was looked at.
    fn open_log(&self, start: u64, id: (u64, u64)) -> anyhow::Result<Option<Source>> {
        let what = || format!("cannot read {}", self.log.display());
        let file = match self.held(id) {
            Some(file) => file,
            None => match File::open(&self.log) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e).with_code(Code::IoErr, what),
            },
        };
        let source =
            Source::from_file(file, &self.log, false, start).with_code(Code::IoErr, what)?;
        Ok(((source.dev, source.inode) == id).then_some(source))
    }

    /// True when the log is still the file `id` (device, inode).
    fn is_still(&self, id: (u64, u64)) -> anyhow::Result<bool> {
        Ok(self.stat()?.is_some_and(|m| (m.dev(), m.ino()) == id))
    }

    fn stat(&self) -> anyhow::Result<Option<fs::Metadata>> {
        match fs::metadata(&self.log) {
            Ok(meta) if meta.is_dir() => Err(err(
                Code::Usage,
                format!("{} is a directory, not a log file", self.log.display()),
            )),
            Ok(meta) => Ok(Some(meta)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => {
                Err(e).with_code(Code::IoErr, || format!("cannot read {}", self.log.display()))
            }
        }
    }

    fn first_read(&self, meta: Option<fs::Metadata>) -> anyhow::Result<Plan> {
        let Some(meta) = meta else {
            return Err(err(
                Code::NoInput,
                format!("{}: no such file (and no saved position for it)", self.log.display()),
            ));
        };
        let file = File::open(&self.log)
            .with_code(Code::IoErr, || format!("cannot open {}", self.log.display()))?;
        let start = if self.from_end { last_line_end(&file, meta.len()) } else { 0 };
        let source = Source::from_file(file, &self.log, false, start)
            .with_code(Code::IoErr, || format!("cannot read {}", self.log.display()))?;
        Ok(Plan::Read(vec![source]))
    }

    /// A second descriptor of the file kept open, if it is the file `id`; the original stays
    /// held until reading has moved on.
    fn held(&self, id: (u64, u64)) -> Option<File> {
        self.open
            .as_ref()
            .filter(|held| (held.dev, held.inode) == id)
            .and_then(|held| held.file.try_clone().ok())
    }

    /// After copytruncate: the copy of the truncated file (found by its first bytes) from the
    /// saved offset, and the rotated files newer than it.
    /// The flag is false when a rotated file could not be opened: reading must stop there.
    fn copy_of(&self, pos: &Position) -> (Vec<Source>, bool) {
        let mut attempt = 0;
        let (candidates, (index, copy)) = loop {
            let candidates = self.finder.candidates(Some((pos.dev, pos.inode)));
            if let Some(found) = find(pos, &candidates) {
                break (candidates, found);
            }
            attempt += 1;
            if attempt == SETTLE_ATTEMPTS {
                return (Vec::new(), true);
            }
            std::thread::sleep(SETTLE_PAUSE);
        };
        let mut sources = vec![copy];
        let complete = open_all(&candidates[index + 1..], &mut sources);
        (sources, complete)
    }

    /// [`Tailer::locate`], looking again a few times when the file is not found: logrotate
    /// may be between writing `X.gz` and deleting `X` right then.
    fn locate_settled(
        &mut self,
        pos: &Position,
        current: Option<(u64, u64)>,
    ) -> (Vec<Source>, bool) {
        let mut attempt = 0;
        loop {
            let candidates = self.finder.candidates(current);
            let found = self.locate(pos, &candidates);
            attempt += 1;
            if !found.0.is_empty() || attempt == SETTLE_ATTEMPTS {
                return found;
            }
            std::thread::sleep(SETTLE_PAUSE);
        }
    }

    /// The file last read (from its saved offset) and every rotated file newer than it; the
    /// flag is false when one could not be opened and reading must stop there.
    fn locate(&self, pos: &Position, candidates: &[Candidate]) -> (Vec<Source>, bool) {
        let held = self.held((pos.dev, pos.inode));
        let (index, found) = find(pos, candidates).unzip();
        let old = match (held, found) {
            (Some(file), _) => {
                let path = index
                    .map_or_else(|| PathBuf::from(&pos.source), |i| candidates[i].path.clone());
                Source::from_file(file, &path, false, pos.offset).ok()
            }
            (None, found) => found,
        };
        let Some(mut old) = old else { return (Vec::new(), true) };
        if old.gz {
            (old.dev, old.inode) = (pos.dev, pos.inode);
        }
        let newer = index.map_or(candidates.len(), |i| i + 1);
        let mut sources = vec![old];
        let complete = open_all(&candidates[newer..], &mut sources);
        (sources, complete)
    }

    /// Reads the sources in order. Each but the last is read to its end, a last line without
    /// newline included, once a later file holds data (the writer has moved on); until then
    /// reading stops in it, so lines still written to it are not lost.
    fn read_sources(&mut self, session: &mut Session, sources: Vec<Source>) -> anyhow::Result<()> {
        let data_after: Vec<bool> = {
            let mut later = false;
            let mut flags: Vec<bool> = sources
                .iter()
                .rev()
                .map(|s| {
                    let flag = later;
                    later |= s.has_data;
                    flag
                })
                .collect();
            flags.reverse();
            flags
        };
        for (mut source, finish) in sources.into_iter().zip(data_after) {
            let first = !session.core.state.files.contains_key(&self.key);
            session.core.set_position(&self.key, source.position(source.start));
            if first {
                // Saved before reading: a first run killed half-way must leave the file it
                // started on, or the next run would start on whatever the log is by then.
                session.core.save()?;
            }
            if source.path != self.log {
                info!("reading {} from offset {}", source.path.display(), source.start);
            }
            let truncated = self.read_one(session, &mut source, finish)?;
            if truncated || !finish {
                if !source.gz {
                    self.open =
                        Some(Held { file: source.file, dev: source.dev, inode: source.inode });
                }
                return Ok(());
            }
        }
        Ok(())
    }

    /// Reads one file; true when it was truncated during the read (reading stops there).
    fn read_one(
        &self,
        session: &mut Session,
        source: &mut Source,
        finish: bool,
    ) -> anyhow::Result<bool> {
        let origin = Arc::new(Origin::new(&self.key, &source.path.to_string_lossy(), source.inode));
        let message = format!("cannot read {}", source.path.display());
        let what = || message.clone();
        let start = source.start;
        let check = match source.gz {
            true => None,
            false => {
                Some((source.file.try_clone().with_code(Code::IoErr, what)?, source.head.clone()))
            }
        };
        let mut stream = source.stream().with_code(Code::IoErr, what)?;
        let mut sink = Checkpoints {
            core: &mut session.core,
            key: &self.key,
            origin: &origin,
            check,
            changed: false,
        };
        let read = session.reader.read(&mut stream, start, finish, &mut sink);
        let changed = sink.changed;
        drop(stream);
        let end = read.with_code(Code::IoErr, what)?;
        if !changed {
            source.refresh_head().with_code(Code::IoErr, what)?;
        }
        session.core.set_position(&self.key, source.position(end));
        Ok(changed)
    }
}

/// The rotated file that holds the saved position: by device and inode (its first bytes
/// unchanged), else a file whose content starts with the saved fingerprint, newest first: a
/// compressed copy, or the copy copytruncate made.
fn find(pos: &Position, candidates: &[Candidate]) -> Option<(usize, Source)> {
    let by_inode = candidates.iter().position(|c| (c.dev, c.inode) == (pos.dev, pos.inode));
    // An empty fingerprint says nothing about content that was read past it.
    let by_content = pos.fingerprint.len > 0 || pos.offset == 0;
    let copies = candidates.iter().enumerate().rev().filter(|_| by_content).map(|(i, _)| i);
    by_inode.into_iter().chain(copies).find_map(|i| {
        let source = Source::open_candidate(&candidates[i], pos.offset).ok()?;
        pos.fingerprint.matches(&source.head).then_some((i, source))
    })
}

/// True when `rotated` and `log` start with the same whole line(s). Either head may be the
/// longer: the log's was read when it was opened, possibly before more was written and
/// copied.
fn is_copy_of(rotated: &Source, log: &Source) -> bool {
    let common = rotated.head.len().min(log.head.len());
    let (a, b) = (&rotated.head[..common], &log.head[..common]);
    a == b && has_whole_line(a)
}

fn has_whole_line(head: &[u8]) -> bool {
    memchr::memchr(b'\n', head).is_some()
}

/// Opens the rotated files in order, stopping at the first that cannot be opened (it may be
/// moving or being compressed right now): skipping it would lose its lines, the next run
/// retries.
/// True when every file could be opened.
fn open_all(candidates: &[Candidate], sources: &mut Vec<Source>) -> bool {
    for candidate in candidates {
        match Source::open_candidate(candidate, 0) {
            Ok(source) => sources.push(source),
            Err(e) => {
                warn!("cannot read rotated file {} yet: {e}", candidate.path.display());
                return false;
            }
        }
    }
    true
}

/// Hands lines to the emitter and saves the position every second, after flushing.
struct Checkpoints<'a> {
    core: &'a mut Core,
    key: &'a str,
    origin: &'a Arc<Origin>,
    /// A plain file and its first bytes, to notice a truncation during the read.
    check: Option<(File, Vec<u8>)>,
    changed: bool,
}

impl LineSink for Checkpoints<'_> {
    fn block(&mut self, block: Block) -> anyhow::Result<()> {
        self.core.emitter.block(self.origin, block)
    }

    fn recycle(&mut self) -> Vec<u8> {
        self.core.emitter.recycle()
    }

    fn long_line(&mut self, prefix: &[u8], offset: u64) -> anyhow::Result<()> {
        self.core.emitter.long_line(self.origin, prefix, offset)
    }

    fn consumed(&mut self, offset: u64) -> anyhow::Result<()> {
        if let Some(position) = self.core.state.files.get_mut(self.key)
            && position.offset != offset
        {
            position.offset = offset;
            self.core.dirty = true;
        }
        self.core.maybe_save()
    }

    fn unchanged(&mut self) -> anyhow::Result<bool> {
        let Some((file, head)) = &self.check else { return Ok(true) };
        let now = rotation::head(file, false)?;
        let same = now.get(..head.len()) == Some(head.as_slice());
        self.changed |= !same;
        Ok(same)
    }
}

/// Where the last complete line ends (`--from-end`): the current end unless the file ends
/// inside a line, which is then read once complete.
fn last_line_end(file: &File, size: u64) -> u64 {
    const LOOK: u64 = 64 * 1024;
    let from = size.saturating_sub(LOOK);
    let mut tail = vec![0; (size - from) as usize];
    if file.read_exact_at(&mut tail, from).is_err() {
        return size;
    }
    match memchr::memrchr(b'\n', &tail) {
        Some(at) => from + at as u64 + 1,
        None if from == 0 => 0,
        None => size,
    }
}

/// The path made absolute without resolving links (a cron job and a shell agree on it).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(dir: &Path, name: &str, content: &str) -> Source {
        let path = dir.join(name);
        fs::write(&path, content).unwrap();
        Source::open(&path, false, 0).unwrap()
    }

    #[test]
    fn a_copy_shares_whole_first_lines_whichever_head_is_longer() {
        let dir = tempfile::tempdir().unwrap();
        let log = source(dir.path(), "log", "00000001 a\n");
        let copy = source(dir.path(), "log.1", "00000001 a\n00000002 b\n");
        assert!(is_copy_of(&copy, &log), "the log was opened before line 2 was written and copied");
        assert!(is_copy_of(&log, &copy));
        let other = source(dir.path(), "log.2", "00000000 z\n00000001 a\n");
        assert!(!is_copy_of(&other, &log));
        let partial = source(dir.path(), "log.3", "0000000");
        assert!(!is_copy_of(&partial, &log), "no whole line in common says nothing");
        let empty = source(dir.path(), "log.4", "");
        assert!(!is_copy_of(&copy, &empty));
    }
}
