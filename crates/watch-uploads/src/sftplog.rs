//! The SFTP server's own account of each upload, from `sftp-server -l INFO` log lines: which
//! session user wrote a file, and whether its handle was closed normally (`close`), cut off
//! (`forced close`, the session died) or never closed at all (the server was killed).
//!
//! Lines are read from the log file on demand, right before a file is judged, so following
//! the log costs no wake-ups. Lines are keyed by the process id in a syslog prefix
//! (`sftp-server[PID]:`, `internal-sftp[PID]:`); lines without one (`sftp-server -e`) form a
//! single stream.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;

/// What the log says about the last write handle on a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handle {
    /// Opened for writing, not closed yet (or never: the server died).
    Writing,
    /// Closed by the client.
    Closed,
    /// Closed by the server because the session ended with the handle open.
    Forced,
}

/// One path's last write handle and the session user who opened it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    /// How the handle ended.
    pub handle: Handle,
    /// The session's local user, when the log named it.
    pub login: Option<String>,
}

/// Where SFTP paths of a user live on this machine: a chroot (paths are inside it) or a home
/// (relative paths start there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `ChrootDirectory`: the logged path is under this folder.
    Chroot(PathBuf),
    /// The user's home: relative logged paths are under it.
    Home(PathBuf),
}

/// The parsed state of the log so far, and the file being followed.
#[derive(Debug)]
pub struct SftpLog {
    path: PathBuf,
    file: Option<(File, u64)>,
    partial: Vec<u8>,
    sessions: HashMap<u32, String>,
    files: HashMap<PathBuf, FileState>,
    bases: HashMap<String, Base>,
}

impl SftpLog {
    /// Follows the log at `path` from its beginning; `bases` places users' paths.
    pub fn new(path: &Path, bases: HashMap<String, Base>) -> Self {
        SftpLog {
            path: path.to_owned(),
            file: None,
            partial: Vec::new(),
            sessions: HashMap::new(),
            files: HashMap::new(),
            bases,
        }
    }

    /// What the log says about `path`, after reading the lines written since the last call.
    pub fn status(&mut self, path: &Path) -> Option<&FileState> {
        if let Err(e) = self.refresh() {
            tracing::warn!("cannot read the SFTP log {}: {e}", self.path.display());
        }
        self.files.get(path)
    }

    /// Reads new lines; starts over when the file was rotated (new inode) or truncated.
    pub fn refresh(&mut self) -> io::Result<()> {
        let current = match std::fs::metadata(&self.path) {
            Ok(meta) => Some((meta.ino(), meta.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let offset = self.offset();
        let replaced = match (&self.file, current) {
            (Some((file, _)), Some((ino, len))) => file.metadata()?.ino() != ino || len < offset,
            (None, Some(_)) => true,
            (_, None) => false,
        };
        if replaced {
            // Finish the old file first: a rotated log may hold lines written before the move.
            self.read_available()?;
            self.file = Some((File::open(&self.path)?, 0));
            self.partial.clear();
        }
        self.read_available()
    }

    fn offset(&self) -> u64 {
        self.file.as_ref().map_or(0, |(_, offset)| *offset)
    }

    fn read_available(&mut self) -> io::Result<()> {
        let Some((file, offset)) = self.file.as_mut() else { return Ok(()) };
        file.seek(SeekFrom::Start(*offset))?;
        let mut bytes = Vec::new();
        let read = file.read_to_end(&mut bytes)?;
        *offset += read as u64;
        self.partial.extend_from_slice(&bytes);
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else { return Ok(()) };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        for line in complete.split(|b| *b == b'\n') {
            self.apply(&String::from_utf8_lossy(line));
        }
        Ok(())
    }

    /// Applies one log line.
    pub fn apply(&mut self, line: &str) {
        let line = line.trim_end_matches(['\r', '\n']);
        let (pid, message) = match PREFIX.captures(line) {
            Some(c) => (c[1].parse().unwrap_or(0), c.get(2).map_or("", |m| m.as_str())),
            None => (0, line),
        };
        if let Some(c) = SESSION.captures(message) {
            self.sessions.insert(pid, c[1].to_owned());
        } else if let Some(c) = OPEN.captures(message) {
            if c[2].split(',').any(|flag| flag == "WRITE") {
                let path = self.place(pid, &c[1]);
                let login = self.sessions.get(&pid).cloned();
                self.files.insert(path, FileState { handle: Handle::Writing, login });
            }
        } else if let Some(c) = CLOSE.captures(message) {
            let handle = if c.get(1).is_some() { Handle::Forced } else { Handle::Closed };
            let path = self.place(pid, &c[2]);
            if let Some(state) = self.files.get_mut(&path).filter(|s| s.handle == Handle::Writing) {
                state.handle = handle;
            }
        } else if let Some(c) = RENAME.captures(message) {
            let (old, new) = (self.place(pid, &c[1]), self.place(pid, &c[2]));
            if let Some(state) = self.files.remove(&old) {
                self.files.insert(new, state);
            }
        } else if let Some(c) = REMOVE.captures(message) {
            let path = self.place(pid, &c[1]);
            self.files.remove(&path);
        }
    }

    /// The local path of a logged (escaped) SFTP path in session `pid`.
    fn place(&self, pid: u32, logged: &str) -> PathBuf {
        let path = PathBuf::from(std::ffi::OsString::from_vec(unescape(logged)));
        let login = self.sessions.get(&pid);
        match login.and_then(|login| self.bases.get(login)) {
            Some(Base::Chroot(root)) => root.join(path.strip_prefix("/").unwrap_or(&path)),
            Some(Base::Home(home)) if path.is_relative() => home.join(path),
            None if path.is_relative() => match login.and_then(uzers::get_user_by_name) {
                Some(user) => uzers::os::unix::UserExt::home_dir(&user).join(path),
                None => path,
            },
            _ => path,
        }
    }
}

static PREFIX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|\s)(?:sftp-server|internal-sftp)\[(\d+)\]:\s?(.*)$").expect("valid")
});
static SESSION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^session opened for local user (\S+) from ").expect("valid"));
static OPEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"^open "(.*)" flags (\S+) mode \d+$"#).expect("valid"));
static CLOSE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"^(forced )?close "(.*)" bytes read \d+ written \d+$"#).expect("valid")
});
static RENAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"^(?:posix-)?rename old "(.*?)" new "(.*)"$"#).expect("valid"));
static REMOVE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"^remove name "(.*)"$"#).expect("valid"));

/// Undoes OpenSSH's C-style escaping of names in log lines: `\\`, `\n` and friends, and
/// three-digit octal bytes for everything else that is not printable ASCII.
pub fn unescape(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' || i + 1 == bytes.len() {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let next = bytes[i + 1];
        let octal = bytes.get(i + 1..i + 4).filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let Some(digits) = octal {
            let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
            out.push(u8::try_from(value).unwrap_or(b'?'));
            i += 4;
            continue;
        }
        out.push(match next {
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'a' => 0x07,
            b'b' => 0x08,
            b'f' => 0x0c,
            b'v' => 0x0b,
            b's' => b' ',
            b'E' => 0x1b,
            other => other,
        });
        i += 2;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn state(log: &mut SftpLog, path: &str) -> Option<FileState> {
        log.files.get(Path::new(path)).cloned()
    }

    #[test]
    fn close_forced_close_and_renames_per_session() {
        let mut log = SftpLog::new(Path::new("/nonexistent"), HashMap::new());
        for line in [
            "Nov 23 10:00:00 h sftp-server[10]: session opened for local user ann from [127.0.0.1]",
            "Nov 23 10:00:00 h sftp-server[11]: session opened for local user bob from [127.0.0.1]",
            "Nov 23 10:00:01 h sftp-server[10]: open \"/up/a.mp4\" flags WRITE,CREATE,TRUNCATE mode 0644",
            "Nov 23 10:00:01 h sftp-server[11]: open \"/up/b.mp4\" flags WRITE,CREATE,TRUNCATE mode 0644",
            "Nov 23 10:00:01 h sftp-server[11]: open \"/up/r.mp4\" flags READ mode 0666",
            "Nov 23 10:00:02 h sftp-server[10]: close \"/up/a.mp4\" bytes read 0 written 5\r",
            "Nov 23 10:00:03 h sftp-server[11]: forced close \"/up/b.mp4\" bytes read 0 written 2",
        ] {
            log.apply(line);
        }
        assert_eq!(
            state(&mut log, "/up/a.mp4"),
            Some(FileState { handle: Handle::Closed, login: Some("ann".into()) })
        );
        assert_eq!(state(&mut log, "/up/b.mp4").unwrap().handle, Handle::Forced);
        assert_eq!(state(&mut log, "/up/r.mp4"), None);
        log.apply(
            "sftp-server[10]: open \"/up/t\"q.mp4.filepart\" flags WRITE,CREATE,TRUNCATE mode 0644",
        );
        log.apply("sftp-server[10]: close \"/up/t\"q.mp4.filepart\" bytes read 0 written 9");
        log.apply("sftp-server[10]: rename old \"/up/t\"q.mp4.filepart\" new \"/up/t\"q.mp4\"");
        assert_eq!(state(&mut log, "/up/t\"q.mp4").unwrap().login.as_deref(), Some("ann"));
        log.apply("sftp-server[10]: posix-rename old \"/up/t\"q.mp4\" new \"/up/u.mp4\"");
        assert!(state(&mut log, "/up/t\"q.mp4").is_none());
        assert_eq!(state(&mut log, "/up/u.mp4").unwrap().handle, Handle::Closed);
        log.apply("sftp-server[10]: remove name \"/up/u.mp4\"");
        assert!(state(&mut log, "/up/u.mp4").is_none());
    }

    #[test]
    fn bare_lines_chroot_and_home_placement() {
        let bases = HashMap::from([
            ("ann".to_owned(), Base::Chroot(PathBuf::from("/srv/jail/ann"))),
            ("bob".to_owned(), Base::Home(PathBuf::from("/home/bob"))),
        ]);
        let mut log = SftpLog::new(Path::new("/nonexistent"), bases);
        log.apply("session opened for local user ann from [::1]");
        log.apply("open \"/in/a.mp4\" flags WRITE,CREATE,TRUNCATE mode 0644");
        assert_eq!(state(&mut log, "/srv/jail/ann/in/a.mp4").unwrap().handle, Handle::Writing);
        log.apply("session opened for local user bob from [::1]");
        log.apply("open \"rel.mp4\" flags WRITE,CREATE mode 0644");
        assert!(state(&mut log, "/home/bob/rel.mp4").is_some());
    }

    #[test]
    fn octal_escapes_become_bytes() {
        assert_eq!(unescape(r"caf\303\251 x.mp4"), "café x.mp4".as_bytes());
        assert_eq!(unescape(r"a\\b\nc\377"), b"a\\b\nc\xff");
        assert_eq!(unescape(r"end\"), b"end\\");
    }

    #[test]
    fn follows_appends_partial_lines_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sftp.log");
        let mut file = File::create(&path).unwrap();
        let mut log = SftpLog::new(&path, HashMap::new());
        write!(
            file,
            "open \"/u/a.mp4\" flags WRITE,CREATE mode 0644\nclose \"/u/a.mp4\" bytes read 0 wri"
        )
        .unwrap();
        assert_eq!(log.status(Path::new("/u/a.mp4")).unwrap().handle, Handle::Writing);
        writeln!(file, "tten 3").unwrap();
        assert_eq!(log.status(Path::new("/u/a.mp4")).unwrap().handle, Handle::Closed);
        std::fs::rename(&path, dir.path().join("sftp.log.1")).unwrap();
        writeln!(file, "open \"/u/b.mp4\" flags WRITE,CREATE mode 0644").unwrap();
        let mut fresh = File::create(&path).unwrap();
        writeln!(fresh, "forced close \"/u/b.mp4\" bytes read 0 written 1").unwrap();
        assert_eq!(log.status(Path::new("/u/b.mp4")).unwrap().handle, Handle::Forced);
    }
}
