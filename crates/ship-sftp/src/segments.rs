//! Large files over several SSH sessions at once. libssh2 needs more CPU per byte than OpenSSH
//! (it hands OpenSSL one cipher block per call, and computes chacha20-poly1305 in portable C),
//! so one session is bound by one core; ranges of the same file written in parallel over extra
//! sessions (to the same temporary file, each at its own offset) use the other cores.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use crate::bulk::{self, BulkWriter};
use crate::connect::Connection;
use crate::limit::RateLimit;
use crate::transfer::{Failure, SLICE};

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

/// Writes `ranges` of `local` into `temp`, the first range over `first` (already created and
/// truncated, on `conn`), the others over `helpers`, and closes every handle.
pub fn send_ranges(
    conn: &Connection,
    first: BulkWriter,
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
        let mut results = vec![write_range(conn, first, local, ranges[0], limit)];
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
    // The first session could open a second channel, so this one normally can too.
    let remote =
        BulkWriter::open(&helper.session, temp, bulk::OPEN_WRITE, 0o600)?.ok_or_else(|| {
            Failure::Connection(format!("the server refused a channel for writing {temp}"))
        })?;
    write_range(helper, remote, local, range, limit)
}

/// Sends bytes `start..start + len` of `local` and closes `remote`; the file must still be
/// that long.
fn write_range(
    conn: &Connection,
    mut remote: BulkWriter,
    local: &Path,
    (start, len): (u64, u64),
    limit: Option<&RateLimit>,
) -> Result<(), Failure> {
    let local_err = |e: io::Error| Failure::File(format!("reading {}: {e}", local.display()));
    let mut file = File::open(local).map_err(local_err)?;
    file.seek(SeekFrom::Start(start)).map_err(local_err)?;
    let request = limit.map_or(remote.max_data(), |l| l.slice(remote.max_data()));
    let (mut offset, end) = (start, start + len);
    let result = loop {
        if offset == end {
            break Ok(());
        }
        let want = usize::try_from((end - offset).min(request as u64)).unwrap_or(request);
        let sent = remote.write_at(offset, want, |buf| {
            file.read_exact(buf).map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => {
                    Failure::File(format!("{} shrank while it was being sent", local.display()))
                }
                _ => local_err(e),
            })?;
            if let Some(limit) = limit {
                limit.take(buf.len());
            }
            Ok(buf.len())
        });
        match sent {
            Ok(n) => offset += n as u64,
            Err(failure) => break Err(failure),
        }
        conn.session.keepalive_send().ok();
    };
    let result = result.and_then(|()| remote.close());
    if matches!(result, Err(Failure::Connection(_))) {
        conn.abandon();
    }
    result
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
