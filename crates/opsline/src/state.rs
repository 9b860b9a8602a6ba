//! State files: written atomically (temp file, fsync, rename, fsync the folder), mode 0600, and
//! locked so that two overlapping runs (cron) never clobber each other.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::exit::{Code, WithCode, err};

const FORMAT: &str = "opsline-state";

/// The envelope every state file has, so a file from another tool or format version is told
/// apart from a corrupt one.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope<T> {
    format: String,
    tool: String,
    version: u32,
    saved: String,
    data: T,
}

/// A locked state file. The lock is held until the value is dropped.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    tool: &'static str,
    version: u32,
    _lock: File,
}

impl StateFile {
    /// Locks the state file at `path` for `tool` (format `version`), creating its folder (0700).
    ///
    /// Another process holding the lock is a temporary failure (exit 75): the run that would
    /// overlap stops at once instead of waiting or clobbering.
    pub fn lock(path: &Path, tool: &'static str, version: u32) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_code(Code::IoErr, || {
                    format!("cannot create state folder {}", dir.display())
                })?;
        }
        let lock_path = sibling(path, ".lock");
        let mut lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .with_code(Code::IoErr, || format!("cannot open lock file {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(err(
                    Code::TempFail,
                    format!(
                        "another run holds the state file {}{}; not starting a second one",
                        path.display(),
                        holder(&mut lock)
                    ),
                ));
            }
            Err(TryLockError::Error(e)) => {
                return Err(e)
                    .with_code(Code::IoErr, || format!("cannot lock {}", lock_path.display()));
            }
        }
        record_holder(&mut lock).with_context(|| format!("writing {}", lock_path.display()))?;
        Ok(StateFile { path: path.to_owned(), tool, version, _lock: lock })
    }

    /// The state file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the saved value; `None` when there is no state yet.
    ///
    /// A file that does not parse, or was written by another tool or format version, is an
    /// error (exit 65) that says how to start over; it is never silently replaced.
    pub fn load<T: DeserializeOwned>(&self) -> anyhow::Result<Option<T>> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_code(Code::IoErr, || {
                    format!("cannot read state file {}", self.path.display())
                });
            }
        };
        let envelope: Envelope<Value> =
            serde_json::from_slice(&bytes).map_err(|e| self.corrupt(&e.to_string()))?;
        if envelope.format != FORMAT || envelope.tool != self.tool {
            return Err(
                self.corrupt(&format!("it belongs to {:?}, not {}", envelope.tool, self.tool))
            );
        }
        if envelope.version != self.version {
            return Err(self.corrupt(&format!(
                "it has format version {}, this {} reads version {}",
                envelope.version, self.tool, self.version
            )));
        }
        let data =
            serde_json::from_value(envelope.data).map_err(|e| self.corrupt(&e.to_string()))?;
        Ok(Some(data))
    }

    fn corrupt(&self, why: &str) -> anyhow::Error {
        err(
            Code::DataErr,
            format!(
                "state file {} is not usable ({why}); move it away or run with --reset to start over",
                self.path.display()
            ),
        )
    }

    /// Saves `value` atomically: after a crash at any moment the file holds either the old
    /// or the new value, never a mix.
    pub fn save<T: Serialize>(&self, value: &T) -> anyhow::Result<()> {
        let envelope = Envelope {
            format: FORMAT.to_owned(),
            tool: self.tool.to_owned(),
            version: self.version,
            saved: crate::time::now_rfc3339(),
            data: value,
        };
        let mut bytes = serde_json::to_vec(&envelope).context("serialising state")?;
        bytes.push(b'\n');
        write_atomic(&self.path, &bytes)
            .with_code(Code::IoErr, || format!("cannot save state file {}", self.path.display()))
    }

    /// Deletes the saved state (`--reset`).
    pub fn reset(&self) -> anyhow::Result<()> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(e).with_code(Code::IoErr, || format!("cannot remove {}", self.path.display()))
            }
            _ => Ok(()),
        }
    }
}

/// Writes `bytes` to `path` through a temp file in the same folder, fsyncs it, renames it into
/// place and fsyncs the folder. The file is created mode 0600.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temp = sibling(path, ".tmp");
    let mut file =
        OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, path)?;
    sync_parent(path)
}

/// Fsyncs the folder that holds `path`, so a rename into it survives a crash.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn record_holder(lock: &mut File) -> io::Result<()> {
    lock.set_len(0)?;
    writeln!(lock, "{}", std::process::id())
}

fn holder(lock: &mut File) -> String {
    let mut text = String::new();
    match lock.read_to_string(&mut text) {
        Ok(_) if !text.trim().is_empty() => format!(" (pid {})", text.trim()),
        _ => String::new(),
    }
}

/// The default state file of `tool` for `key` (for example a log's path):
/// `$STATE_DIRECTORY` (systemd), else `$XDG_STATE_HOME/opsline`, else `~/.local/state/opsline`.
pub fn default_path(tool: &str, key: &str) -> anyhow::Result<PathBuf> {
    let base = state_home().ok_or_else(|| {
        err(
            Code::Config,
            "no state folder: set --state, $STATE_DIRECTORY, $XDG_STATE_HOME or $HOME",
        )
    })?;
    Ok(base.join(tool).join(format!("{}.json", file_key(key))))
}

fn state_home() -> Option<PathBuf> {
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("STATE_DIRECTORY")
        .or_else(|| var("XDG_STATE_HOME").map(|p| p.join("opsline")))
        .or_else(|| var("HOME").map(|p| p.join(".local/state/opsline")))
}

/// A file name for `key` that a person can still recognise: unsafe bytes become `_`, and a
/// hash keeps different keys apart.
fn file_key(key: &str) -> String {
    let readable: String = key
        .trim_start_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' })
        .take(80)
        .collect();
    format!("{readable}-{:016x}", fnv1a(key.as_bytes()))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::code_of;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn saves_loads_and_sets_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        let state = StateFile::lock(&path, "t", 1).unwrap();
        assert_eq!(state.load::<Vec<u32>>().unwrap(), None);
        state.save(&vec![1u32, 2]).unwrap();
        assert_eq!(state.load::<Vec<u32>>().unwrap(), Some(vec![1, 2]));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700);
    }

    #[test]
    fn second_lock_is_a_temporary_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let _first = StateFile::lock(&path, "t", 1).unwrap();
        let second = StateFile::lock(&path, "t", 1).unwrap_err();
        assert_eq!(code_of(&second), Code::TempFail);
        assert!(second.to_string().contains(&format!("pid {}", std::process::id())), "{second}");
    }

    #[test]
    fn corrupt_or_foreign_state_is_refused_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let state = StateFile::lock(&path, "t", 2).unwrap();
        fs::write(&path, b"{not json").unwrap();
        let e = state.load::<u32>().unwrap_err();
        assert_eq!(code_of(&e), Code::DataErr);
        assert!(e.to_string().contains("--reset"), "{e}");
        state.save(&1u32).unwrap();
        drop(state);
        let older = StateFile::lock(&path, "t", 1).unwrap();
        assert!(older.load::<u32>().unwrap_err().to_string().contains("version 2"));
        older.reset().unwrap();
        assert_eq!(older.load::<u32>().unwrap(), None);
    }

    #[test]
    fn default_paths_keep_keys_apart() {
        assert_ne!(file_key("/var/log/a_b"), file_key("/var/log/a/b"));
        assert!(file_key("/var/log/auth.log").starts_with("var_log_auth.log-"));
    }
}
