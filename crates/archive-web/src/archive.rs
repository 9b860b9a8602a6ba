//! The archive on disk: one folder per agent under the root (as `ship-sftp mirror` writes it),
//! each holding that agent's log tree.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Local, NaiveDate};
use globset::{GlobBuilder, GlobMatcher};
use opsline::{Code, WithCode};

/// One archived file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The agent (node) that shipped it: the first folder under the root.
    pub agent: String,
    /// Its path under the agent's folder.
    pub file: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, local time.
    pub modified: DateTime<Local>,
}

impl Entry {
    /// Its path under the root, as the web pages name it: `AGENT/FILE`.
    pub fn archive_path(&self) -> String {
        format!("{}/{}", self.agent, self.file)
    }
}

/// One line of a folder listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirItem {
    /// The name within the folder.
    pub name: String,
    /// True for a folder.
    pub is_dir: bool,
    /// Size in bytes (0 for folders).
    pub size: u64,
    /// Last modification, local time.
    pub modified: DateTime<Local>,
}

/// What to look for. Empty fields match everything.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Part of the file's path under its agent, case-insensitive; with `*` or `?` a glob.
    pub name: Option<String>,
    /// Exactly this agent.
    pub agent: Option<String>,
    /// Modified on or after this day (local).
    pub from: Option<NaiveDate>,
    /// Modified on or before this day (local).
    pub to: Option<NaiveDate>,
}

/// The matches of a search, newest first, and how many there were before the limit.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The newest matches, at most the limit asked for.
    pub entries: Vec<Entry>,
    /// All matches.
    pub total: usize,
}

/// A read-only view of the archive root.
#[derive(Debug, Clone)]
pub struct Archive {
    root: PathBuf,
}

impl Archive {
    /// Opens the archive at `root`, which must be a readable folder.
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        let root = root
            .canonicalize()
            .with_code(Code::NoInput, || format!("archive root {} is not there", root.display()))?;
        if !root.is_dir() {
            return Err(opsline::exit::err(
                Code::NoInput,
                format!("{} is not a folder", root.display()),
            ));
        }
        Ok(Archive { root })
    }

    /// The archive root, canonical.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The agents: the folders directly under the root, sorted.
    pub fn agents(&self) -> io::Result<Vec<String>> {
        let mut agents: Vec<String> = self
            .list_dir("")?
            .into_iter()
            .filter(|item| item.is_dir)
            .map(|item| item.name)
            .collect();
        agents.sort();
        Ok(agents)
    }

    /// The files that match `query`, newest first, at most `limit` of them.
    pub fn search(&self, query: &Query, limit: usize) -> anyhow::Result<Found> {
        let matcher = NameMatcher::new(query.name.as_deref())?;
        let base = match &query.agent {
            Some(agent) => self.resolve_dir(agent)?,
            None => self.root.clone(),
        };
        let mut entries: Vec<Entry> = walkdir::WalkDir::new(&base)
            .follow_links(false)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .filter_map(|e| self.entry(e.path()))
            .filter(|entry| matcher.matches(&entry.file) && in_range(entry, query))
            .collect();
        entries.sort_by(|a, b| b.modified.cmp(&a.modified).then_with(|| a.file.cmp(&b.file)));
        let total = entries.len();
        entries.truncate(limit);
        Ok(Found { entries, total })
    }

    fn entry(&self, path: &Path) -> Option<Entry> {
        let rel = path.strip_prefix(&self.root).ok()?.to_str()?;
        let (agent, file) = rel.split_once('/')?;
        let meta = fs::symlink_metadata(path).ok()?;
        Some(Entry {
            agent: agent.to_owned(),
            file: file.to_owned(),
            size: meta.len(),
            modified: meta.modified().ok()?.into(),
        })
    }

    /// The folder `rel` (`""` for the root) listed: folders first, then files, by name.
    /// Symbolic links and names that are not UTF-8 are left out.
    pub fn list_dir(&self, rel: &str) -> io::Result<Vec<DirItem>> {
        let dir = self.resolve_dir(rel).map_err(io::Error::other)?;
        let mut items = Vec::new();
        for dirent in fs::read_dir(dir)? {
            let dirent = dirent?;
            let meta = dirent.metadata()?;
            let (Some(name), false) =
                (dirent.file_name().to_str().map(str::to_owned), meta.is_symlink())
            else {
                continue;
            };
            items.push(DirItem {
                name,
                is_dir: meta.is_dir(),
                size: if meta.is_dir() { 0 } else { meta.len() },
                modified: meta.modified()?.into(),
            });
        }
        items.sort_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.name.cmp(&b.name)));
        Ok(items)
    }

    /// The archived file at `rel` (`AGENT/…`), refusing anything outside the root, including
    /// through symbolic links.
    pub fn resolve_file(&self, rel: &str) -> anyhow::Result<PathBuf> {
        let path = self.resolve(rel)?;
        if !path.is_file() {
            return Err(opsline::exit::err(
                Code::NoInput,
                format!("{rel} is not a file in the archive"),
            ));
        }
        Ok(path)
    }

    fn resolve_dir(&self, rel: &str) -> anyhow::Result<PathBuf> {
        let path = if rel.is_empty() { self.root.clone() } else { self.resolve(rel)? };
        if !path.is_dir() {
            return Err(opsline::exit::err(
                Code::NoInput,
                format!("{rel} is not a folder in the archive"),
            ));
        }
        Ok(path)
    }

    fn resolve(&self, rel: &str) -> anyhow::Result<PathBuf> {
        let joined = opsline::paths::join_inside(&self.root, Path::new(rel))?;
        let real = joined
            .canonicalize()
            .with_code(Code::NoInput, || format!("{rel} is not in the archive"))?;
        if !real.starts_with(&self.root) {
            return Err(opsline::exit::err(
                Code::DataErr,
                format!("refusing {rel}: it leads out of the archive"),
            ));
        }
        Ok(real)
    }
}

fn in_range(entry: &Entry, query: &Query) -> bool {
    let day = entry.modified.date_naive();
    query.from.is_none_or(|from| day >= from) && query.to.is_none_or(|to| day <= to)
}

/// Matches a file's path under its agent: a case-insensitive substring, or a glob when the
/// pattern has `*` or `?`.
enum NameMatcher {
    Any,
    Substring(String),
    Glob(GlobMatcher),
}

impl NameMatcher {
    fn new(pattern: Option<&str>) -> anyhow::Result<Self> {
        let Some(pattern) = pattern.map(str::trim).filter(|p| !p.is_empty()) else {
            return Ok(NameMatcher::Any);
        };
        if !pattern.contains(['*', '?']) {
            return Ok(NameMatcher::Substring(pattern.to_lowercase()));
        }
        let glob = GlobBuilder::new(&format!("*{pattern}"))
            .case_insensitive(true)
            .build()
            .with_code(Code::Usage, || format!("bad name pattern {pattern:?}"))?;
        Ok(NameMatcher::Glob(glob.compile_matcher()))
    }

    fn matches(&self, file: &str) -> bool {
        match self {
            NameMatcher::Any => true,
            NameMatcher::Substring(part) => file.to_lowercase().contains(part),
            NameMatcher::Glob(glob) => glob.is_match(file),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn archive() -> (tempfile::TempDir, Archive) {
        let dir = tempfile::tempdir().unwrap();
        for (path, body) in [
            ("node1/app/app.log", "one\n"),
            ("node1/app/old/app-20261101.log", "old\n"),
            ("node2/web/Access.LOG", "two\n"),
        ] {
            let full = dir.path().join(path);
            fs::create_dir_all(full.parent().unwrap()).unwrap();
            fs::write(full, body).unwrap();
        }
        let archive = Archive::open(dir.path()).unwrap();
        (dir, archive)
    }

    #[test]
    fn searches_by_name_agent_and_glob() {
        let (_dir, archive) = archive();
        let all = archive.search(&Query::default(), 10).unwrap();
        assert_eq!(all.total, 3);
        let by_name =
            archive.search(&Query { name: Some("access".into()), ..Query::default() }, 10).unwrap();
        assert_eq!(
            by_name.entries.iter().map(Entry::archive_path).collect::<Vec<_>>(),
            ["node2/web/Access.LOG"]
        );
        let by_agent =
            archive.search(&Query { agent: Some("node1".into()), ..Query::default() }, 10).unwrap();
        assert_eq!(by_agent.total, 2);
        let glob = archive
            .search(&Query { name: Some("app-2026*.log".into()), ..Query::default() }, 10)
            .unwrap();
        assert_eq!(glob.entries[0].file, "app/old/app-20261101.log");
        let limited = archive.search(&Query::default(), 1).unwrap();
        assert_eq!((limited.entries.len(), limited.total), (1, 3));
    }

    #[test]
    fn dates_filter_by_local_day() {
        let (_dir, archive) = archive();
        let today = Local::now().date_naive();
        let yesterday = today.pred_opt().unwrap();
        let until_yesterday = Query { to: Some(yesterday), ..Query::default() };
        assert_eq!(archive.search(&until_yesterday, 10).unwrap().total, 0);
        let from_today = Query { from: Some(today), ..Query::default() };
        assert_eq!(archive.search(&from_today, 10).unwrap().total, 3);
    }

    #[test]
    fn escapes_and_links_out_are_refused() {
        let (dir, archive) = archive();
        symlink("/etc/passwd", dir.path().join("node1/passwd")).unwrap();
        symlink("/etc", dir.path().join("node2/etc")).unwrap();
        for bad in
            ["../x", "/etc/passwd", "node1/../../etc/passwd", "node1/passwd", "node2/etc/passwd"]
        {
            assert!(archive.resolve_file(bad).is_err(), "{bad}");
        }
        assert!(archive.resolve_file("node1/app/app.log").is_ok());
        let listed: Vec<String> =
            archive.list_dir("node1").unwrap().into_iter().map(|i| i.name).collect();
        assert_eq!(listed, ["app"], "links are not listed");
        assert_eq!(
            archive.search(&Query::default(), 10).unwrap().total,
            3,
            "links are not searched"
        );
    }
}
