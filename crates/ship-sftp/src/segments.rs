//! Large files over several SSH sessions at once. libssh2 encrypts in portable C and needs about
//! twice the CPU per byte that OpenSSH does, so one session is bound by one core; ranges of the
//! same file written in parallel over extra sessions (to the same temporary file, each at its
//! own offset) use the other cores.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use ssh2::{OpenFlags, OpenType};

use crate::connect::Connection;
use crate::limit::RateLimit;
use crate::transfer::{Failure, SLICE, classify, io_failure};

/// Files are split only into ranges at least this large: below, another session's handshake
/// costs more than it saves.
pub const MIN_RANGE: u64 = 32 << 20;

/// `(start, length)` of each range: at most `sessions`, none under [`MIN_RANGE`], starting on
/// slice boundaries.
pub fn ranges(size: u64, sessions: usize) -> Vec<(u64, u64)> {
    let count = (size / MIN_RANGE).clamp(1, sessions.max(1) as u64);
    let slice = SLICE as u64;
    let per = (size / count).div_ceil(slice) * slice;
    (0..count)
        .map(|i| (i * per, per.min(size.saturating_sub(i * per))))
        .filter(|&(_, len)| len > 0)
        .collect()
}

/// Writes `ranges` of `local` into `temp` (already created and truncated through `first`),
/// the first range over `conn`, the others over `helpers`, and closes every handle.
pub fn send_ranges(
    conn: &Connection,
    mut first: ssh2::File,
    helpers: Vec<Connection>,
    local: &Path,
    temp: &str,
    ranges: &[(u64, u64)],
    limit: Option<&RateLimit>,
) -> Result<u64, Failure> {
    let results: Vec<Result<(), Failure>> = std::thread::scope(|scope| {
        let workers: Vec<_> = helpers
            .into_iter()
            .zip(&ranges[1..])
            .map(|(helper, &range)| {
                scope.spawn(move || {
                    let result = helper_range(&helper, local, temp, range, limit);
                    if matches!(result, Err(Failure::Connection(_))) {
                        helper.abandon();
                    }
                    result
                })
            })
            .collect();
        let mut results = vec![
            write_range(conn, &mut first, local, temp, ranges[0], limit)
                .and_then(|()| first.close().map_err(|e| classify(&format!("close {temp}"), &e))),
        ];
        results.extend(workers.into_iter().map(|w| {
            w.join().unwrap_or_else(|_| Err(Failure::File("a transfer thread panicked".into())))
        }));
        results
    });
    for result in results {
        result?;
    }
    Ok(ranges.iter().map(|(_, len)| len).sum())
}

fn helper_range(
    helper: &Connection,
    local: &Path,
    temp: &str,
    range: (u64, u64),
    limit: Option<&RateLimit>,
) -> Result<(), Failure> {
    let mut remote = helper
        .sftp
        .open_mode(Path::new(temp), OpenFlags::WRITE, 0o600, OpenType::File)
        .map_err(|e| classify(&format!("open {temp}"), &e))?;
    write_range(helper, &mut remote, local, temp, range, limit)?;
    remote.close().map_err(|e| classify(&format!("close {temp}"), &e))
}

/// Sends bytes `start..start + len` of `local`; the file must still be that long.
fn write_range(
    conn: &Connection,
    remote: &mut ssh2::File,
    local: &Path,
    temp: &str,
    (start, len): (u64, u64),
    limit: Option<&RateLimit>,
) -> Result<(), Failure> {
    let local_err = |e: io::Error| Failure::File(format!("reading {}: {e}", local.display()));
    let mut file = File::open(local).map_err(local_err)?;
    file.seek(SeekFrom::Start(start)).map_err(local_err)?;
    remote.seek(SeekFrom::Start(start)).map_err(|e| io_failure(&format!("seek {temp}"), &e))?;
    let mut buf = vec![0u8; limit.map_or(SLICE, |l| l.slice(SLICE))];
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        file.read_exact(&mut buf[..want]).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                Failure::File(format!("{} shrank while it was being sent", local.display()))
            }
            _ => local_err(e),
        })?;
        if let Some(limit) = limit {
            limit.take(want);
        }
        if let Err(e) = remote.write_all(&buf[..want]) {
            let failure = io_failure(&format!("write {temp}"), &e);
            if matches!(failure, Failure::Connection(_)) {
                conn.abandon();
            }
            return Err(failure);
        }
        left -= want as u64;
        conn.session.keepalive_send().ok();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_file_on_slice_boundaries() {
        assert_eq!(ranges(10 << 20, 4), [(0, 10 << 20)]);
        let big = (1 << 30) + 12345;
        let parts = ranges(big, 4);
        assert_eq!(parts.len(), 4);
        assert_eq!(parts.iter().map(|p| p.1).sum::<u64>(), big);
        assert!(parts.iter().all(|p| p.0 % SLICE as u64 == 0));
        assert!(parts.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0));
        assert_eq!(ranges(100 << 20, 8).len(), 3);
        assert_eq!(ranges(0, 4), Vec::<(u64, u64)>::new());
    }
}
