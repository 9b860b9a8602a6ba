//! Finding a log's rotated files (`FILE.1`, `FILE.2.gz`, `FILE-YYYYMMDD[.gz]`, `--rotated-glob`)
//! and putting them in order, oldest first.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use flate2::read::MultiGzDecoder;
use globset::{Glob, GlobMatcher};
use regex::Regex;

use crate::state::FINGERPRINT_LEN;

/// A rotated file of a log.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Where it is.
    pub path: PathBuf,
    /// Its device.
    pub dev: u64,
    /// Its inode.
    pub inode: u64,
    /// Its size on disk.
    pub size: u64,
    /// True when it is gzip-compressed (by its first bytes, not its name).
    pub gz: bool,
    order: Order,
    mtime: SystemTime,
}

/// How rotated files of one naming scheme sort among themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Order {
    /// `FILE.N`: a higher N is older.
    Numbered(u64),
    /// `FILE-YYYYMMDD…`: a later date is newer.
    Dated(String),
    /// Found by `--rotated-glob`: by modification time.
    Other,
}

/// The rotated-file patterns of one log.
#[derive(Debug, Clone)]
pub struct Finder {
    log: PathBuf,
    names: Regex,
    globs: Vec<(PathBuf, GlobMatcher)>,
}

impl Finder {
    /// The finder for `log` (an absolute path) with extra `globs` (relative to its folder).
    pub fn new(log: &Path, globs: &[String]) -> anyhow::Result<Self> {
        let name = log.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let names = Regex::new(&format!(
            r"^{}(?:\.(?P<n>\d+)|-(?P<date>\d{{8}}[\d-]*))(?:\.gz)?$",
            regex::escape(&name)
        ))?;
        let dir = parent(log);
        let globs = globs
            .iter()
            .map(|pattern| {
                let full = dir.join(pattern);
                let glob = Glob::new(&full.to_string_lossy()).map_err(|e| {
                    opsline::exit::err(opsline::Code::Usage, format!("bad --rotated-glob: {e}"))
                })?;
                Ok((literal_dir(&full), glob.compile_matcher()))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Finder { log: log.to_owned(), names, globs })
    }

    /// The folders whose changes matter to this log (for inotify).
    pub fn folders(&self) -> Vec<PathBuf> {
        let mut dirs = vec![parent(&self.log).to_owned()];
        for (dir, _) in &self.globs {
            if !dirs.contains(dir) {
                dirs.push(dir.clone());
            }
        }
        dirs
    }

    /// True when a file called `name` in one of [`Finder::folders`] may be this log or one of
    /// its rotated files.
    pub fn concerns(&self, name: &std::ffi::OsStr) -> bool {
        let own = self.log.file_name().unwrap_or_default();
        !self.globs.is_empty() || name.as_encoded_bytes().starts_with(own.as_encoded_bytes())
    }

    /// The rotated files, oldest first, without the log itself (`current`: its device and
    /// inode) and without a file seen twice under two names. Listed until two listings in a
    /// row agree, so that a rotation in progress does not leave a file out.
    pub fn candidates(&self, current: Option<(u64, u64)>) -> Vec<Candidate> {
        let mut listed = self.list(current);
        for _ in 0..LISTINGS {
            let again = self.list(current);
            if same_files(&listed, &again) {
                break;
            }
            listed = again;
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        listed
    }

    fn list(&self, current: Option<(u64, u64)>) -> Vec<Candidate> {
        let mut found: Vec<Candidate> = Vec::new();
        let mut add = |path: PathBuf, order: Order| {
            let Ok(meta) = fs::metadata(&path) else { return };
            let id = (meta.dev(), meta.ino());
            if !meta.is_file()
                || Some(id) == current
                || found.iter().any(|c| (c.dev, c.inode) == id)
            {
                return;
            }
            let gz = is_gzip(&path);
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            found.push(Candidate {
                path,
                dev: id.0,
                inode: id.1,
                size: meta.len(),
                gz,
                order,
                mtime,
            });
        };
        for entry in read_dir(parent(&self.log)) {
            let name = entry.to_string_lossy();
            if let Some(c) = self.names.captures(&name) {
                let order = match (c.name("n"), c.name("date")) {
                    (Some(n), _) => Order::Numbered(n.as_str().parse().unwrap_or(u64::MAX)),
                    (None, Some(date)) => Order::Dated(date.as_str().to_owned()),
                    _ => Order::Other,
                };
                add(parent(&self.log).join(&entry), order);
            }
        }
        for (dir, glob) in &self.globs {
            for entry in read_dir(dir) {
                let path = dir.join(&entry);
                if glob.is_match(&path) && path != self.log {
                    add(path, Order::Other);
                }
            }
        }
        drop_compressing(&mut found);
        sort_oldest_first(&mut found);
        found
    }
}

/// How many extra listings a rotation in progress may take.
const LISTINGS: usize = 5;

fn same_files(a: &[Candidate], b: &[Candidate]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (&x.path, x.dev, x.inode, x.gz) == (&y.path, y.dev, y.inode, y.gz))
}

/// `X.gz` next to `X` is a compression in progress (or not yet cleaned up): the plain file is
/// the complete one, and reading both would repeat its lines.
fn drop_compressing(found: &mut Vec<Candidate>) {
    let plain: Vec<PathBuf> = found.iter().filter(|c| !c.gz).map(|c| c.path.clone()).collect();
    found.retain(|c| {
        !(c.path.extension().is_some_and(|e| e == "gz")
            && plain.contains(&c.path.with_extension("")))
    });
}

/// Oldest first: by number or by date when every file follows that scheme, else by
/// modification time (mixed schemes have nothing else in common).
fn sort_oldest_first(found: &mut [Candidate]) {
    if found.iter().all(|c| matches!(c.order, Order::Numbered(_))) {
        found.sort_by_key(|c| {
            std::cmp::Reverse(if let Order::Numbered(n) = c.order { n } else { 0 })
        });
    } else if found.iter().all(|c| matches!(c.order, Order::Dated(_))) {
        found.sort_by(|a, b| match (&a.order, &b.order) {
            (Order::Dated(x), Order::Dated(y)) => x.cmp(y),
            _ => std::cmp::Ordering::Equal,
        });
    } else {
        found.sort_by(|a, b| a.mtime.cmp(&b.mtime).then_with(|| a.path.cmp(&b.path)));
    }
}

/// The first bytes of a file's content (decompressed for gzip), up to the fingerprint length.
pub fn head(file: &File, gz: bool) -> io::Result<Vec<u8>> {
    let mut head = vec![0; FINGERPRINT_LEN];
    let mut len = 0;
    if gz {
        let mut decoder = MultiGzDecoder::new(io::BufReader::new(file.try_clone()?));
        let mut reader = (&mut decoder).take(FINGERPRINT_LEN as u64);
        head.clear();
        reader.read_to_end(&mut head)?;
        return Ok(head);
    }
    while len < head.len() {
        match file.read_at(&mut head[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(len);
    Ok(head)
}

/// True when the file starts with the gzip magic bytes.
pub fn is_gzip(path: &Path) -> bool {
    let mut magic = [0u8; 2];
    File::open(path).and_then(|f| f.read_exact_at(&mut magic, 0)).is_ok() && magic == [0x1f, 0x8b]
}

fn read_dir(dir: &Path) -> Vec<std::ffi::OsString> {
    match fs::read_dir(dir) {
        Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.file_name())).collect(),
        Err(_) => Vec::new(),
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// The folder part of a glob before its first wildcard.
fn literal_dir(glob: &Path) -> PathBuf {
    let mut dir = PathBuf::new();
    for part in glob.parent().unwrap_or(Path::new("/")).components() {
        if part.as_os_str().to_string_lossy().contains(['*', '?', '[', '{']) {
            break;
        }
        dir.push(part);
    }
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(found: &[Candidate]) -> Vec<String> {
        found.iter().map(|c| c.path.file_name().unwrap().to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn finds_numbered_and_dated_files_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("auth.log");
        for name in
            ["auth.log", "auth.log.1", "auth.log.2.gz", "auth.log.10", "auth.log.x", "other.log.1"]
        {
            fs::write(dir.path().join(name), name).unwrap();
        }
        let finder = Finder::new(&log, &[]).unwrap();
        let meta = fs::metadata(&log).unwrap();
        let found = finder.candidates(Some((meta.dev(), meta.ino())));
        assert_eq!(names(&found), ["auth.log.10", "auth.log.2.gz", "auth.log.1"]);

        let dated = tempfile::tempdir().unwrap();
        for name in ["app.log-20261123", "app.log-20261121.gz", "app.log-20261122"] {
            fs::write(dated.path().join(name), name).unwrap();
        }
        let finder = Finder::new(&dated.path().join("app.log"), &[]).unwrap();
        assert_eq!(
            names(&finder.candidates(None)),
            ["app.log-20261121.gz", "app.log-20261122", "app.log-20261123"]
        );
    }

    #[test]
    fn globs_find_files_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("old")).unwrap();
        fs::write(dir.path().join("old/app.log.old"), "x").unwrap();
        let finder = Finder::new(&dir.path().join("app.log"), &["old/*.old".into()]).unwrap();
        assert_eq!(names(&finder.candidates(None)), ["app.log.old"]);
        assert!(finder.folders().contains(&dir.path().join("old")));
    }
}
