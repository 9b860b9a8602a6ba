//! Mirror mode (the log archive agent): the matching files of a local tree go to
//! `DIR/AGENT_ID/` with the same relative paths; a state file remembers what was sent so a
//! restart re-sends nothing and misses nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::select;
use globset::{Glob, GlobSet, GlobSetBuilder};
use opsline::{Code, Context, Flush, Record, RecordWriter, StateFile, WithCode, exit::err};
use serde::{Deserialize, Serialize};

use crate::TOOL;
use crate::pool::{Done, Outcome, Pool};
use crate::settings::Settings;
use crate::ship::sftp_field;
use crate::transfer::{Existing, Job, remote_join};

/// State format version.
const STATE_VERSION: u32 = 1;

/// Longest time between two saves of the state while files arrive: one save (two fsyncs)
/// per small file would cost more than sending it.
const SAVE_EVERY: Duration = Duration::from_millis(200);

/// What was sent of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// Size when it was read.
    pub size: u64,
    /// Modification time when it was read, in nanoseconds since the epoch.
    pub mtime_ns: i128,
}

/// The saved state of a mirror.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct MirrorState {
    /// `user@host:port/DIR/AGENT_ID`: a state never applies to another target.
    pub target: String,
    /// Relative path → what was sent.
    pub files: BTreeMap<String, Sent>,
}

/// What a mirror run was asked to do.
#[derive(Debug)]
pub struct MirrorPlan {
    /// Connection and transfer settings.
    pub settings: Arc<Settings>,
    /// The local tree.
    pub local_dir: PathBuf,
    /// Which files.
    pub globs: GlobSet,
    /// The agent's folder under the target folder.
    pub agent_id: String,
    /// State file.
    pub state: PathBuf,
    /// Files modified more recently wait for the next pass.
    pub min_age: Duration,
    /// Loop with this pause between passes.
    pub every: Option<Duration>,
    /// Forget the saved state first.
    pub reset: bool,
}

/// Builds the glob set (`*` crosses folders, so `*.log` matches `a/b.log`).
pub fn glob_set(globs: &[String]) -> anyhow::Result<GlobSet> {
    let mut builder = GlobSetBuilder::new();
    for glob in globs {
        builder
            .add(Glob::new(glob).map_err(|e| err(Code::Usage, format!("--glob {glob:?}: {e}")))?);
    }
    if globs.is_empty() {
        builder.add(Glob::new("*").expect("a valid glob"));
    }
    builder.build().map_err(|e| err(Code::Usage, format!("--glob: {e}")))
}

/// Refuses agent ids that are not a single plain folder name.
pub fn check_agent_id(id: &str) -> anyhow::Result<()> {
    let bad = id.is_empty() || id == "." || id == ".." || id.contains(['/', '\0', '\n']);
    if bad {
        return Err(err(Code::Usage, format!("--agent-id {id:?} must be a plain folder name")));
    }
    Ok(())
}

/// Runs the mirror: one pass, or passes every `--every` seconds until stopped.
pub fn run(plan: &MirrorPlan, ctx: &Context) -> anyhow::Result<Code> {
    let base = fs::canonicalize(&plan.local_dir).with_code(Code::NoInput, || {
        format!("cannot open the local folder {}", plan.local_dir.display())
    })?;
    if !base.is_dir() {
        return Err(err(Code::NoInput, format!("{} is not a folder", base.display())));
    }
    ctx.shutdown.watch();
    let state_file = StateFile::lock(&plan.state, ctx.tool, STATE_VERSION)?;
    if plan.reset {
        state_file.reset()?;
    }
    let target = target_key(plan);
    let mut state = load_state(&state_file, &target)?;
    let mut out = RecordWriter::stdout(ctx.tool, Flush::EachRecord)?;
    let pool = Pool::start(&plan.settings, &ctx.shutdown);
    let mut code;
    loop {
        code = pass(plan, &base, &pool, &state_file, &mut state, &mut out, ctx)?;
        let Some(every) = plan.every else { break };
        if ctx.shutdown.requested() || !wait(every, ctx) {
            break;
        }
    }
    pool.finish().for_each(drop);
    let written = out.finish()?;
    Ok(code.worst(written))
}

fn wait(every: Duration, ctx: &Context) -> bool {
    select! {
        recv(ctx.shutdown.receiver()) -> _ => false,
        default(every) => !ctx.shutdown.requested(),
    }
}

fn target_key(plan: &MirrorPlan) -> String {
    let t = &plan.settings.connect.target;
    format!("{}@{}/{}", t.user, t.display_host(), remote_join(&t.dir, &plan.agent_id))
}

fn load_state(file: &StateFile, target: &str) -> anyhow::Result<MirrorState> {
    match file.load::<MirrorState>()? {
        None => Ok(MirrorState { target: target.to_owned(), files: BTreeMap::new() }),
        Some(state) if state.target == target => Ok(state),
        Some(state) => Err(err(
            Code::Config,
            format!(
                "state file {} belongs to the mirror to {}, not {target}; give another --state or \
                 run with --reset to start over",
                file.path().display(),
                state.target
            ),
        )),
    }
}

/// A file that is due, with what it looked like before it was read.
struct Due {
    rel: String,
    seen: Sent,
}

/// One pass over the tree. Fatal connection errors end the run; a file that fails is reported
/// and tried again on the next pass.
fn pass(
    plan: &MirrorPlan,
    base: &Path,
    pool: &Pool,
    state_file: &StateFile,
    state: &mut MirrorState,
    out: &mut RecordWriter,
    ctx: &Context,
) -> anyhow::Result<Code> {
    let mut progress = Progress {
        plan,
        state_file,
        state,
        out,
        due: HashMap::new(),
        code: Code::Ok,
        fatal: None,
        settled: Vec::new(),
        last_save: Instant::now(),
    };
    let mut next_id = 0u64;
    let mut waiting_young = 0u64;
    let now = SystemTime::now();
    let remote_root = remote_join(&plan.settings.connect.target.dir, &plan.agent_id);
    let mut present = HashSet::new();
    let mut complete = true;
    for found in walk(base, &plan.globs) {
        if progress.fatal.is_some() {
            // No connection can be made: the files still queued are skipped.
            pool.abort();
            complete = false;
            break;
        }
        if ctx.shutdown.requested() {
            complete = false;
            break;
        }
        let (rel, path, meta) = match found {
            Ok(found) => found,
            Err(message) => {
                progress.out.write(&Record::error("shipped", TOOL, message))?;
                continue;
            }
        };
        present.insert(rel.clone());
        let seen = Sent { size: meta.len(), mtime_ns: mtime_ns(&meta) };
        if progress.state.files.get(&rel) == Some(&seen) {
            continue;
        }
        let modified = meta.modified().unwrap_or(now);
        if now.duration_since(modified).unwrap_or_default() < plan.min_age {
            waiting_young += 1;
            continue;
        }
        let job = match job_for(&remote_root, &rel, path) {
            Ok(job) => job,
            Err(e) => {
                progress.out.write(&Record::error("shipped", TOOL, format!("{e:#}")))?;
                continue;
            }
        };
        next_id += 1;
        progress.due.insert(next_id, Due { rel, seen });
        let mut item = Some((next_id, job));
        while let Some(sending) = item.take() {
            select! {
                send(pool.jobs(), sending) -> sent => sent.map_err(|_| anyhow::anyhow!("transfer threads ended"))?,
                recv(pool.results()) -> done => {
                    item = Some(sending);
                    if let Ok(done) = done {
                        progress.settle_batch(pool, done)?;
                    }
                }
            }
        }
    }
    while !progress.due.is_empty() {
        let Ok(done) = pool.results().recv() else { break };
        progress.settle_batch(pool, done)?;
    }
    if waiting_young > 0 {
        tracing::info!(
            files = waiting_young,
            "files modified within --min-age wait for the next pass"
        );
    }
    progress.save()?;
    if complete && progress.fatal.is_none() {
        forget_removed(progress.state_file, progress.state, &present)?;
    }
    match progress.fatal {
        Some(error) => Err(error),
        None => Ok(progress.code),
    }
}

/// Drops the entries of files that are gone (rotated away, deleted), so the state does not grow
/// without end. Only after a complete pass: a file the pass did not reach is not gone.
fn forget_removed(
    state_file: &StateFile,
    state: &mut MirrorState,
    present: &HashSet<String>,
) -> anyhow::Result<()> {
    let before = state.files.len();
    state.files.retain(|rel, _| present.contains(rel));
    if state.files.len() != before {
        state_file.save(&*state)?;
    }
    Ok(())
}

/// The results of a pass as they come in.
struct Progress<'a> {
    plan: &'a MirrorPlan,
    state_file: &'a StateFile,
    state: &'a mut MirrorState,
    out: &'a mut RecordWriter,
    due: HashMap<u64, Due>,
    code: Code,
    fatal: Option<anyhow::Error>,
    settled: Vec<Record>,
    last_save: Instant,
}

impl Progress<'_> {
    /// Settles `done` and every result already waiting. The state is saved when the last save
    /// is [`SAVE_EVERY`] old or nothing is in flight any more, and a file's record is written
    /// only once the state holding it is saved: a crash re-sends at most the files of that
    /// last moment, and never misses one.
    fn settle_batch(&mut self, pool: &Pool, done: Done) -> anyhow::Result<()> {
        self.settle(done);
        while let Ok(done) = pool.results().try_recv() {
            self.settle(done);
        }
        if self.due.is_empty() || self.last_save.elapsed() >= SAVE_EVERY {
            self.save()?;
        }
        Ok(())
    }

    fn save(&mut self) -> anyhow::Result<()> {
        if self.settled.is_empty() {
            return Ok(());
        }
        self.state_file.save(&*self.state)?;
        self.last_save = Instant::now();
        for record in self.settled.drain(..) {
            self.out.write(&record)?;
        }
        Ok(())
    }

    fn settle(&mut self, done: Done) {
        let Some(item) = self.due.remove(&done.id) else { return };
        let path = self.plan.local_dir.join(&item.rel);
        let mut record = Record::new("shipped");
        if let Err(e) = record.set_path(&path) {
            record.set_error(TOOL, e);
        }
        match done.outcome {
            Outcome::Shipped(shipped) => {
                self.state.files.insert(item.rel, item.seen);
                record.insert("sftp", sftp_field(&self.plan.settings, &shipped));
            }
            Outcome::Failed { temporary, message } => {
                if temporary {
                    self.code = self.code.worst(Code::TempFail);
                }
                record.set_error(TOOL, message);
            }
            Outcome::Fatal(error) => {
                record.set_error(TOOL, format!("{error:#}"));
                self.fatal.get_or_insert(error);
            }
        }
        self.settled.push(record);
    }
}

fn mtime_ns(meta: &Metadata) -> i128 {
    i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec())
}

fn job_for(remote_root: &str, rel: &str, local: PathBuf) -> anyhow::Result<Job> {
    // The relative path comes from the local tree; refuse anything that could climb out.
    let inside = opsline::paths::join_inside(Path::new("/"), Path::new(rel))?;
    let inside = inside.to_str().expect("built from UTF-8");
    let (parent, name) = inside.rsplit_once('/').expect("an absolute path has a slash");
    let remote_dir = remote_join(remote_root, parent.trim_start_matches('/'));
    let remote_dir = remote_dir.trim_end_matches('/').to_owned();
    Ok(Job { local, remote_dir, name: name.to_owned(), existing: Existing::Replace })
}

type Found = Result<(String, PathBuf, Metadata), String>;

/// The regular files under `base` that match, in a stable order. Symbolic links are followed
/// only when they stay inside `base`; one that leaves it is refused with an error record.
fn walk<'a>(base: &'a Path, globs: &'a GlobSet) -> impl Iterator<Item = Found> + 'a {
    walkdir::WalkDir::new(base).follow_links(false).sort_by_file_name().into_iter().filter_map(
        move |entry| {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    tracing::warn!("skipping: {e}");
                    return None;
                }
            };
            if entry.file_type().is_dir() {
                return None;
            }
            let rel = entry.path().strip_prefix(base).ok()?;
            if !globs.is_match(rel) {
                return None;
            }
            let Some(rel_text) = rel.to_str() else {
                return Some(Err(format!(
                    "{}: the name is not UTF-8 and cannot be mirrored",
                    entry.path().display()
                )));
            };
            let found = inspect(base, entry.path(), entry.file_type().is_symlink())
                .map(|(path, meta)| (rel_text.to_owned(), path, meta));
            match found {
                Ok((_, _, ref meta)) if !meta.is_file() => None,
                other => Some(other),
            }
        },
    )
}

fn inspect(base: &Path, path: &Path, symlink: bool) -> Result<(PathBuf, Metadata), String> {
    if symlink {
        let resolved = fs::canonicalize(path)
            .map_err(|e| format!("{}: dangling symbolic link: {e}", path.display()))?;
        if !resolved.starts_with(base) {
            return Err(format!(
                "refusing {}: it is a symbolic link to {}, outside {}",
                path.display(),
                resolved.display(),
                base.display()
            ));
        }
    }
    let meta = fs::metadata(path).map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
    Ok((path.to_owned(), meta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_paths_follow_the_tree() {
        let job = job_for("/logs/node1", "app/2025/x y.log", PathBuf::from("/l/x")).unwrap();
        assert_eq!(job.remote(), "/logs/node1/app/2025/x y.log");
        let job = job_for("node1", "top.log", PathBuf::from("/l/x")).unwrap();
        assert_eq!(job.remote(), "node1/top.log");
        assert!(job_for("node1", "../etc/passwd", PathBuf::new()).is_err());
        assert!(job_for("node1", "/etc/passwd", PathBuf::new()).is_err());
    }

    #[test]
    fn agent_ids_are_plain_names() {
        assert!(check_agent_id("node-1.example").is_ok());
        for bad in ["", ".", "..", "a/b"] {
            assert!(check_agent_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn symlinks_leaving_the_tree_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("logs");
        fs::create_dir_all(base.join("sub")).unwrap();
        fs::write(base.join("sub/a.log"), "a").unwrap();
        fs::write(dir.path().join("secret.log"), "s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.log"), base.join("leak.log")).unwrap();
        std::os::unix::fs::symlink(base.join("sub/a.log"), base.join("alias.log")).unwrap();
        let base = fs::canonicalize(&base).unwrap();
        let globs = glob_set(&["*.log".to_owned()]).unwrap();
        let found: Vec<Found> = walk(&base, &globs).collect();
        let ok: Vec<&str> =
            found.iter().filter_map(|f| f.as_ref().ok()).map(|f| f.0.as_str()).collect();
        assert_eq!(ok, ["alias.log", "sub/a.log"]);
        let refused: Vec<&String> = found.iter().filter_map(|f| f.as_ref().err()).collect();
        assert_eq!(refused.len(), 1);
        assert!(refused[0].contains("leak.log") && refused[0].contains("outside"), "{refused:?}");
    }
}
