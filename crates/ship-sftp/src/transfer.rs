//! One file's upload over a live connection: temporary name in the target folder, large writes,
//! size (and hash) check, mtime, rename.

use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use ssh2::{ErrorCode, FileStat, OpenFlags, OpenType, Sftp};

use crate::args::Verify;
use crate::bulk::{self, BulkWriter};
use crate::connect::{self, Connection};
use crate::limit::RateLimit;
use crate::segments;
use crate::settings::Connect;

/// libssh2 pipelines only the packets of one write call: hand it megabytes at a time.
pub const SLICE: usize = 2 << 20;

/// Files from this size on are written over a [`BulkWriter`]: its larger requests save more
/// than its own SFTP channel costs to open.
const BULK_MIN: u64 = 8 << 20;

/// What to do when the final name already exists on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Same size and mtime: already shipped, skip. Different: replace only if `overwrite`.
    SkipIdentical {
        /// Replace a different file.
        overwrite: bool,
    },
    /// Replace it (mirror: the tree under the agent's folder is ours).
    Replace,
}

/// One file to send.
#[derive(Debug, Clone)]
pub struct Job {
    /// The local file.
    pub local: PathBuf,
    /// The remote folder ("" is the login folder).
    pub remote_dir: String,
    /// The remote file name.
    pub name: String,
    /// Policy for an existing final name.
    pub existing: Existing,
}

impl Job {
    /// The final remote path.
    pub fn remote(&self) -> String {
        remote_join(&self.remote_dir, &self.name)
    }

    /// The temporary remote path: hidden, in the same folder, so the rename is within one file
    /// system, and fixed, so a retry overwrites what a broken attempt left.
    pub fn temp(&self) -> String {
        remote_join(&self.remote_dir, &format!(".{}.ship-sftp.part", self.name))
    }
}

/// `dir/name` with `/` as separator whatever the local system.
pub fn remote_join(dir: &str, name: &str) -> String {
    match dir {
        "" => name.to_owned(),
        _ if dir.ends_with('/') => format!("{dir}{name}"),
        _ => format!("{dir}/{name}"),
    }
}

/// A finished upload (or a skip).
#[derive(Debug, Clone)]
pub struct Shipped {
    /// Final remote path.
    pub remote: String,
    /// Bytes sent (the remote size for a skip).
    pub bytes: u64,
    /// SHA-256 of the bytes sent, with `--verify sha256`.
    pub sha256: Option<String>,
    /// Time the upload took.
    pub seconds: f64,
    /// True when an identical file was already there.
    pub skipped: bool,
    /// The local size seen before reading.
    pub size: u64,
    /// The local mtime seen before reading.
    pub mtime: SystemTime,
}

/// Why an upload failed.
#[derive(Debug)]
pub enum Failure {
    /// The file cannot be shipped (local error, refused by policy or by the server): no retry.
    File(String),
    /// The connection broke or stalled, or the check failed: reconnect and try again.
    Connection(String),
}

impl Failure {
    /// The message.
    pub fn message(&self) -> &str {
        match self {
            Failure::File(m) | Failure::Connection(m) => m,
        }
    }
}

/// Sorts an ssh2 error: an SFTP status from the server concerns the file; anything else (socket,
/// timeout, protocol) the connection.
pub(crate) fn classify(what: &str, e: &ssh2::Error) -> Failure {
    let message = format!("{what}: {e}");
    match e.code() {
        // SSH_FX_NO_CONNECTION and SSH_FX_CONNECTION_LOST
        ErrorCode::SFTP(6 | 7) => Failure::Connection(message),
        ErrorCode::SFTP(_) => Failure::File(message),
        ErrorCode::Session(_) => Failure::Connection(message),
    }
}

pub(crate) fn io_failure(what: &str, e: &io::Error) -> Failure {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<ssh2::Error>()) {
        Some(ssh) => classify(what, ssh),
        None => Failure::Connection(format!("{what}: {e}")),
    }
}

/// What the transfer needs besides the connection.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    /// How to check.
    pub verify: Verify,
    /// Copy the mtime.
    pub preserve: bool,
    /// Shared rate limit.
    pub limit: Option<&'a RateLimit>,
    /// Where extra sessions for the ranges of a large file connect to (none: one session).
    pub connect: Option<&'a Connect>,
    /// Sessions a large file may use.
    pub sessions: usize,
}

/// Uploads one file.
pub fn upload(conn: &mut Connection, job: &Job, opts: Options<'_>) -> Result<Shipped, Failure> {
    let started = Instant::now();
    let mut local = File::open(&job.local)
        .map_err(|e| Failure::File(format!("cannot open {}: {e}", job.local.display())))?;
    let meta = local
        .metadata()
        .map_err(|e| Failure::File(format!("cannot stat {}: {e}", job.local.display())))?;
    if !meta.is_file() {
        return Err(Failure::File(format!("{} is not a regular file", job.local.display())));
    }
    let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
    ensure_dir(conn, &job.remote_dir)?;
    let remote = job.remote();
    let existing = match job.existing {
        Existing::SkipIdentical { overwrite } => {
            match check_existing(&conn.sftp, &remote, &meta, opts.preserve, overwrite)? {
                Some(stat) => {
                    return Ok(Shipped {
                        remote,
                        bytes: stat.size.unwrap_or(0),
                        sha256: None,
                        seconds: started.elapsed().as_secs_f64(),
                        skipped: true,
                        size: meta.len(),
                        mtime,
                    });
                }
                None => ExistingState::Known(remote_exists(&conn.sftp, &remote)?),
            }
        }
        Existing::Replace => ExistingState::Unknown,
    };
    let temp = job.temp();
    let sent = send(conn, &mut local, &job.local, &meta, &temp, opts).inspect_err(|failure| {
        if matches!(failure, Failure::File(_)) {
            conn.sftp.unlink(Path::new(&temp)).ok();
        }
    })?;
    let result = finish(conn, &temp, &remote, &meta, &sent, existing, opts);
    if result.is_err() {
        conn.sftp.unlink(Path::new(&temp)).ok();
    }
    result?;
    Ok(Shipped {
        remote,
        bytes: sent.bytes,
        sha256: sent.sha256,
        seconds: started.elapsed().as_secs_f64(),
        skipped: false,
        size: meta.len(),
        mtime,
    })
}

#[derive(Debug, Clone, Copy)]
enum ExistingState {
    Known(bool),
    Unknown,
}

struct Sent {
    bytes: u64,
    sha256: Option<String>,
}

/// `Some(stat)` when an identical file is already there (skip); an error when a different one
/// is there and may not be replaced.
fn check_existing(
    sftp: &Sftp,
    remote: &str,
    meta: &Metadata,
    preserve: bool,
    overwrite: bool,
) -> Result<Option<FileStat>, Failure> {
    let stat = match sftp.stat(Path::new(remote)) {
        Ok(stat) => stat,
        Err(e) if matches!(e.code(), ErrorCode::SFTP(2)) => return Ok(None),
        Err(e) => return Err(classify(&format!("stat {remote}"), &e)),
    };
    let same_size = stat.size == Some(meta.len());
    let local_mtime = u64::try_from(meta.mtime()).unwrap_or(0);
    let remote_mtime = stat.mtime.unwrap_or(0);
    // Without --no-preserve the upload carried the mtime over; with it, the copy is at least
    // as new as the original.
    let same_time =
        if preserve { remote_mtime == local_mtime } else { remote_mtime >= local_mtime };
    if same_size && same_time && stat.is_file() {
        return Ok(Some(stat));
    }
    if overwrite && stat.is_file() {
        return Ok(None);
    }
    Err(Failure::File(format!(
        "{remote} already exists on the server and differs (size {} vs {} here, mtime {} vs {}); \
         not replacing it without --overwrite",
        stat.size.map_or_else(|| "?".to_owned(), |s| s.to_string()),
        meta.len(),
        remote_mtime,
        local_mtime
    )))
}

fn remote_exists(sftp: &Sftp, remote: &str) -> Result<bool, Failure> {
    match sftp.lstat(Path::new(remote)) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.code(), ErrorCode::SFTP(2)) => Ok(false),
        Err(e) => Err(classify(&format!("stat {remote}"), &e)),
    }
}

/// Creates the remote folder and its parents, once per connection.
pub fn ensure_dir(conn: &mut Connection, dir: &str) -> Result<(), Failure> {
    if dir.is_empty() || dir == "/" || conn.made_dirs.contains(dir) {
        return Ok(());
    }
    match conn.sftp.stat(Path::new(dir)) {
        Ok(stat) if stat.is_dir() => {}
        Ok(_) => {
            return Err(Failure::File(format!("{dir} exists on the server and is not a folder")));
        }
        Err(e) if matches!(e.code(), ErrorCode::SFTP(2)) => {
            if let Some((parent, _)) = dir.trim_end_matches('/').rsplit_once('/') {
                ensure_dir(conn, parent)?;
            }
            if let Err(e) = conn.sftp.mkdir(Path::new(dir), 0o755) {
                // Another session may have made it meanwhile.
                let made = conn.sftp.stat(Path::new(dir)).is_ok_and(|s| s.is_dir());
                if !made {
                    return Err(classify(&format!("mkdir {dir}"), &e));
                }
            }
        }
        Err(e) => return Err(classify(&format!("stat {dir}"), &e)),
    }
    conn.made_dirs.insert(dir.to_owned());
    Ok(())
}

/// Streams the local file into `temp` and closes it.
fn send(
    conn: &mut Connection,
    local: &mut File,
    local_path: &Path,
    meta: &Metadata,
    temp: &str,
    opts: Options<'_>,
) -> Result<Sent, Failure> {
    let mode = i32::try_from(meta.mode() & 0o666).unwrap_or(0o644) | 0o600;
    let mut hasher = (opts.verify == Verify::Sha256).then(Sha256::new);
    let flags = bulk::OPEN_WRITE | bulk::OPEN_CREATE | bulk::OPEN_TRUNCATE;
    let bulk = match meta.len() >= BULK_MIN {
        true => BulkWriter::open(&conn.session, temp, flags, mode.unsigned_abs()),
        false => Ok(None),
    };
    let sent = bulk.and_then(|bulk| match bulk {
        Some(first) => {
            // The SHA-256 needs the bytes in order, so a checked file goes over one session.
            let helpers = match (opts.verify, opts.connect) {
                (Verify::Size, Some(settings)) => {
                    range_helpers(settings, meta.len(), opts.sessions)
                }
                _ => Vec::new(),
            };
            match helpers.is_empty() {
                true => send_bulk(conn, first, local, opts.limit, hasher.as_mut()),
                false => send_in_ranges(conn, first, helpers, local_path, meta.len(), temp, opts),
            }
        }
        None => send_small(conn, local, temp, mode, opts.limit, hasher.as_mut()),
    });
    let bytes = sent.inspect_err(|failure| {
        if matches!(failure, Failure::Connection(_)) {
            conn.abandon();
        }
    })?;
    Ok(Sent { bytes, sha256: hasher.map(|h| hex(&h.finalize())) })
}

/// Streams `local` to its end into `temp` through libssh2's SFTP, in slices of [`SLICE`].
fn send_small(
    conn: &mut Connection,
    local: &mut File,
    temp: &str,
    mode: i32,
    limit: Option<&RateLimit>,
    mut hasher: Option<&mut Sha256>,
) -> Result<u64, Failure> {
    let flags = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE;
    let mut remote = conn
        .sftp
        .open_mode(Path::new(temp), flags, mode, OpenType::File)
        .map_err(|e| classify(&format!("open {temp}"), &e))?;
    let slice = limit.map_or(SLICE, |l| l.slice(SLICE));
    let mut buf = vec![0u8; slice];
    let mut bytes = 0u64;
    loop {
        let n = read_full(local, &mut buf)
            .map_err(|e| Failure::File(format!("reading local file: {e}")))?;
        if n == 0 {
            break;
        }
        if let Some(limit) = limit {
            limit.take(n);
        }
        if let Some(hasher) = hasher.as_mut() {
            hasher.update(&buf[..n]);
        }
        // write_all keeps handing libssh2 the rest of the same slice after a short write, as
        // its pipelining requires.
        remote.write_all(&buf[..n]).map_err(|e| io_failure(&format!("write {temp}"), &e))?;
        bytes += n as u64;
        conn.session.keepalive_send().ok();
    }
    remote.close().map_err(|e| classify(&format!("close {temp}"), &e))?;
    Ok(bytes)
}

/// Streams `local` to its end into `remote`, a [`BulkWriter`] of `conn`'s session.
fn send_bulk(
    conn: &Connection,
    mut remote: BulkWriter,
    local: &mut File,
    limit: Option<&RateLimit>,
    mut hasher: Option<&mut Sha256>,
) -> Result<u64, Failure> {
    let request = limit.map_or(remote.max_data(), |l| l.slice(remote.max_data()));
    let mut bytes = 0u64;
    loop {
        let n = remote.write_at(bytes, request, |buf| {
            let n = read_full(local, buf)
                .map_err(|e| Failure::File(format!("reading local file: {e}")))?;
            if let Some(limit) = limit {
                limit.take(n);
            }
            if let Some(hasher) = hasher.as_mut() {
                hasher.update(&buf[..n]);
            }
            Ok(n)
        })?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        conn.session.keepalive_send().ok();
    }
    remote.close()?;
    Ok(bytes)
}

/// The extra sessions for the ranges of a file of `size` bytes: none when it is too small to
/// split or no extra session could be made.
fn range_helpers(settings: &Connect, size: u64, sessions: usize) -> Vec<Connection> {
    match segments::ranges(size, sessions).len() {
        0 | 1 => Vec::new(),
        ranges => helpers(settings, ranges - 1),
    }
}

/// Sends a large file in ranges, the first over `first` (on `conn`), the others over `helpers`.
fn send_in_ranges(
    conn: &Connection,
    first: BulkWriter,
    helpers: Vec<Connection>,
    local_path: &Path,
    size: u64,
    temp: &str,
    opts: Options<'_>,
) -> Result<u64, Failure> {
    let ranges = segments::ranges(size, helpers.len() + 1);
    let helpers = helpers.into_iter().take(ranges.len() - 1).collect();
    segments::send_ranges(conn, first, helpers, local_path, temp, &ranges, opts.limit)
}

/// Up to `count` extra sessions, connected in parallel; those that fail are done without.
fn helpers(settings: &Connect, count: usize) -> Vec<Connection> {
    std::thread::scope(|scope| {
        let tries: Vec<_> =
            (0..count).map(|_| scope.spawn(|| connect::connect(settings))).collect();
        tries
            .into_iter()
            .filter_map(|t| match t.join() {
                Ok(Ok(conn)) => Some(conn),
                Ok(Err(e)) => {
                    tracing::debug!("extra session: {:#}", e.error);
                    None
                }
                Err(_) => None,
            })
            .collect()
    })
}

/// Fills `buf` as far as the file allows, so every write call gets a full slice.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Checks size (and hash), sets the times, and renames the temporary file into place.
fn finish(
    conn: &mut Connection,
    temp: &str,
    remote: &str,
    meta: &Metadata,
    sent: &Sent,
    existing: ExistingState,
    opts: Options<'_>,
) -> Result<(), Failure> {
    let temp_path = Path::new(temp);
    let stat = conn.sftp.stat(temp_path).map_err(|e| classify(&format!("stat {temp}"), &e))?;
    if stat.size != Some(sent.bytes) {
        return Err(Failure::Connection(format!(
            "size check failed for {temp}: {} bytes on the server, {} sent",
            stat.size.map_or_else(|| "?".to_owned(), |s| s.to_string()),
            sent.bytes
        )));
    }
    if let Some(local_hash) = &sent.sha256 {
        let remote_hash = crate::verify::remote_sha256(conn, temp)?;
        if &remote_hash != local_hash {
            return Err(Failure::Connection(format!(
                "SHA-256 check failed for {temp}: {remote_hash} on the server, {local_hash} sent"
            )));
        }
    }
    if opts.preserve {
        // Last, so that reading the file back does not move its atime; both times, as an
        // attribute block with only mtime would set atime to 0.
        let times = FileStat {
            size: None,
            uid: None,
            gid: None,
            perm: None,
            atime: Some(u64::try_from(meta.atime()).unwrap_or(0)),
            mtime: Some(u64::try_from(meta.mtime()).unwrap_or(0)),
        };
        conn.sftp
            .setstat(temp_path, times)
            .map_err(|e| classify(&format!("setting the mtime of {temp}"), &e))?;
    }
    rename_into_place(&conn.sftp, temp, remote, existing)
}

/// OpenSSH's SFTP rename is link + unlink and refuses an existing target (the flags asking to
/// overwrite are dropped on protocol 3), so an old file is removed first. Readers may briefly
/// see no file, but never a partial one.
fn rename_into_place(
    sftp: &Sftp,
    temp: &str,
    remote: &str,
    existing: ExistingState,
) -> Result<(), Failure> {
    let (temp_path, remote_path) = (Path::new(temp), Path::new(remote));
    if let ExistingState::Known(true) = existing {
        unlink_old(sftp, remote)?;
    }
    match sftp.rename(temp_path, remote_path, None) {
        Ok(()) => Ok(()),
        Err(e) if matches!(existing, ExistingState::Unknown) && remote_exists(sftp, remote)? => {
            tracing::debug!(remote, error = %e, "replacing the existing file");
            unlink_old(sftp, remote)?;
            sftp.rename(temp_path, remote_path, None)
                .map_err(|e| classify(&format!("rename {temp} to {remote}"), &e))
        }
        Err(e) => Err(classify(&format!("rename {temp} to {remote}"), &e)),
    }
}

fn unlink_old(sftp: &Sftp, remote: &str) -> Result<(), Failure> {
    match sftp.unlink(Path::new(remote)) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.code(), ErrorCode::SFTP(2)) => Ok(()),
        Err(e) => Err(classify(&format!("removing the old {remote}"), &e)),
    }
}

/// Lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_hidden_siblings() {
        let job = Job {
            local: PathBuf::from("/x/backup 1.tar"),
            remote_dir: "/srv/b".to_owned(),
            name: "backup 1.tar".to_owned(),
            existing: Existing::Replace,
        };
        assert_eq!(job.remote(), "/srv/b/backup 1.tar");
        assert_eq!(job.temp(), "/srv/b/.backup 1.tar.ship-sftp.part");
        assert_eq!(remote_join("", "a"), "a");
        assert_eq!(remote_join("/", "a"), "/a");
    }

    #[test]
    fn hex_is_lower_case() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
    }
}
