//! Streams the dump straight from the zip into a tar entry compressed by a parallel gzip
//! writer, into a temp file that is fsynced and renamed into place only when complete.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use gzp::deflate::Gzip;
use gzp::par::compress::{ParCompress, ParCompressBuilder};
use gzp::{Compression, ZWriter};
use indicatif::ProgressBar;
use opsline::exit::err;
use opsline::{Code, Shutdown, WithCode};
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

/// Read size from the zip: large enough that per-call overhead vanishes.
const READ_BUFFER: usize = 256 << 10;

/// Input per gzip block. The pure-Rust deflate backend cannot prime a block with the previous
/// block's window as pigz does, so blocks are larger than pigz's 128 KiB to keep the ratio.
const BLOCK: usize = 1 << 20;

/// How to compress and where the result may go.
#[derive(Debug, Clone, Copy)]
pub struct Packing {
    /// gzip level, 0–9.
    pub level: u32,
    /// Compression threads.
    pub threads: usize,
    /// Replace an existing archive.
    pub overwrite: bool,
}

/// The tar entry's metadata.
#[derive(Debug, Clone)]
pub struct TarEntry {
    /// File name inside the archive.
    pub name: String,
    /// Exact size of the data.
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
}

/// A finished archive.
#[derive(Debug, Clone)]
pub struct Packed {
    /// Where it is.
    pub path: PathBuf,
    /// Uncompressed bytes of the dump.
    pub bytes_in: u64,
    /// Size of the `.tgz`.
    pub bytes_out: u64,
    /// SHA-256 of the `.tgz`, hex.
    pub sha256: String,
}

/// Writes `data` as the single entry of a gzip-compressed tar at `dest`.
///
/// Nothing appears at `dest` unless the whole archive was written, fsynced and renamed there;
/// on any failure the temp file is removed.
pub fn repack<R: Read>(
    data: R,
    entry: &TarEntry,
    dest: &Path,
    packing: Packing,
    progress: &ProgressBar,
    shutdown: &Shutdown,
) -> anyhow::Result<Packed> {
    let dir = dest.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let temp = tempfile::Builder::new()
        .prefix(".archive-dump-")
        .suffix(".tgz.part")
        .tempfile_in(dir)
        .with_code(Code::IoErr, || format!("cannot create a temp file in {}", dir.display()))?;
    let file = temp.as_file().try_clone()?;
    let compressed = compress(data, entry, file, packing, progress, shutdown)
        .with_context(|| format!("writing the archive in {}", dir.display()))?;
    compressed
        .file
        .sync_all()
        .with_code(Code::IoErr, || format!("cannot fsync {}", temp.path().display()))?;
    place(temp, dest, packing.overwrite)?;
    Ok(Packed {
        path: dest.to_owned(),
        bytes_in: compressed.bytes_in,
        bytes_out: compressed.bytes_out,
        sha256: compressed.sha256,
    })
}

/// The compressed stream written to a file.
struct Compressed {
    file: File,
    bytes_in: u64,
    bytes_out: u64,
    sha256: String,
}

/// Streams `data` through tar and the parallel gzip writer into `file`.
fn compress<R: Read>(
    data: R,
    entry: &TarEntry,
    file: File,
    packing: Packing,
    progress: &ProgressBar,
    shutdown: &Shutdown,
) -> anyhow::Result<Compressed> {
    let sink_failed = Arc::new(AtomicBool::new(false));
    let sink = Sink::new(file, Arc::clone(&sink_failed));
    let gz = ParCompressBuilder::<Gzip>::new()
        .num_threads(packing.threads.max(1))
        .and_then(|b| b.buffer_size(BLOCK))
        .context("configuring the gzip writer")?
        .compression_level(Compression::new(packing.level))
        .from_writer(sink);
    let mut tar = tar::Builder::new(gz);
    let mut source = BufReader::with_capacity(
        READ_BUFFER,
        Watched { inner: data, progress, shutdown, sink_failed: &sink_failed, bytes: 0 },
    );
    let appended = tar.append_data(&mut header(entry), &entry.name, &mut source);
    let finished = finish(tar);
    let bytes_in = source.get_ref().bytes;
    let sink = match (appended, finished) {
        (_, Err(e)) if sink_failed.load(Ordering::Relaxed) => {
            return Err(e).code(Code::IoErr, "the archive cannot be written");
        }
        (Err(_), _) if shutdown.requested() => {
            return Err(err(Code::TempFail, "stopped by a signal while compressing"));
        }
        (Err(e), _) => {
            return Err(e).with_code(Code::DataErr, || {
                format!("reading {:?} from the zip failed after {bytes_in} bytes", entry.name)
            });
        }
        (Ok(()), Err(e)) => return Err(e).context("finishing the tar and gzip streams"),
        (Ok(()), Ok(sink)) => sink,
    };
    let (file, sha256, bytes_out) = sink.into_parts();
    Ok(Compressed { file, bytes_in, bytes_out, sha256 })
}

fn header(entry: &TarEntry) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(entry.size);
    header.set_mode(0o644);
    header.set_mtime(u64::try_from(entry.mtime).unwrap_or(0));
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// Ends the tar stream and the gzip stream and checks both: their `Drop` would ignore errors.
fn finish(tar: tar::Builder<ParCompress<'static, Gzip, Sink>>) -> anyhow::Result<Sink> {
    let mut gz = tar.into_inner().context("ending the tar stream")?;
    let sink = gz.finish().context("ending the gzip stream")?;
    sink.into_result()
}

/// Moves the finished temp file to `dest`: atomically replacing it with `overwrite`, else
/// failing if it exists (a hard link, so a concurrent writer cannot be clobbered either).
pub fn place(temp: NamedTempFile, dest: &Path, overwrite: bool) -> anyhow::Result<()> {
    let placed = if overwrite {
        temp.persist(dest).map(drop)
    } else {
        temp.persist_noclobber(dest).map(drop)
    };
    match placed {
        Ok(()) => {}
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
            return Err(exists(dest));
        }
        Err(e) => {
            return Err(e.error).with_code(Code::IoErr, || {
                format!("cannot move the archive to {}", dest.display())
            });
        }
    }
    opsline::state::sync_parent(dest)
        .with_code(Code::IoErr, || format!("cannot fsync the folder of {}", dest.display()))
}

/// The error for an output file that is already there.
pub fn exists(dest: &Path) -> anyhow::Error {
    err(Code::IoErr, format!("{} already exists; pass --overwrite to replace it", dest.display()))
}

/// The member's data on its way into tar: counts bytes, moves the progress bar, and stops
/// when a signal arrives or the output can no longer be written.
struct Watched<'a, R> {
    inner: R,
    progress: &'a ProgressBar,
    shutdown: &'a Shutdown,
    sink_failed: &'a AtomicBool,
    bytes: u64,
}

impl<R: Read> Read for Watched<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.shutdown.requested() {
            return Err(io::Error::other("stopped by a signal"));
        }
        if self.sink_failed.load(Ordering::Relaxed) {
            return Err(io::Error::other("the archive could not be written"));
        }
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        self.progress.inc(n as u64);
        Ok(n)
    }
}

/// The file under the gzip writer. It hashes and counts what it writes, and it never returns
/// an error to gzp: gzp's `Drop` panics on one. The first error is kept, flagged so that the
/// reading side stops, and reported after `finish`.
struct Sink {
    file: File,
    hasher: Sha256,
    bytes: u64,
    error: Option<io::Error>,
    failed: Arc<AtomicBool>,
}

impl Sink {
    fn new(file: File, failed: Arc<AtomicBool>) -> Self {
        Sink { file, hasher: Sha256::new(), bytes: 0, error: None, failed }
    }

    fn into_result(self) -> anyhow::Result<Sink> {
        match self.error {
            Some(e) => Err(e.into()),
            None => Ok(self),
        }
    }

    fn into_parts(self) -> (File, String, u64) {
        let digest = self.hasher.finalize();
        let hex = digest.iter().map(|b| format!("{b:02x}")).collect();
        (self.file, hex, self.bytes)
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.error.is_none() {
            match self.file.write_all(buf) {
                Ok(()) => {
                    self.hasher.update(buf);
                    self.bytes += buf.len() as u64;
                }
                Err(e) => {
                    self.error = Some(e);
                    self.failed.store(true, Ordering::Relaxed);
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    const PACKING: Packing = Packing { level: 6, threads: 2, overwrite: false };

    fn entry(size: usize) -> TarEntry {
        TarEntry { name: "dump.sql".to_owned(), size: size as u64, mtime: 0 }
    }

    #[test]
    fn a_full_disk_is_an_error_not_a_panic() {
        let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
        let data = vec![b'x'; 8 << 20];
        let shutdown = Shutdown::detached();
        let e = compress(
            &data[..],
            &entry(data.len()),
            full,
            PACKING,
            &ProgressBar::hidden(),
            &shutdown,
        )
        .err()
        .expect("writing to /dev/full fails");
        assert_eq!(opsline::exit::code_of(&e), Code::IoErr);
        assert!(format!("{e:#}").contains("No space left on device"), "{e:#}");
    }

    #[test]
    fn a_stop_request_ends_compression() {
        let shutdown = Shutdown::detached();
        shutdown.request();
        let file = tempfile::tempfile().unwrap();
        let data = vec![b'x'; 1 << 20];
        let e = compress(
            &data[..],
            &entry(data.len()),
            file,
            PACKING,
            &ProgressBar::hidden(),
            &shutdown,
        )
        .err()
        .expect("stopped");
        assert_eq!(opsline::exit::code_of(&e), Code::TempFail);
    }

    #[test]
    fn the_output_is_one_gzip_stream_holding_one_tar_entry() {
        let file = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let shutdown = Shutdown::detached();
        let mut out = compress(
            &data[..],
            &entry(data.len()),
            file,
            PACKING,
            &ProgressBar::hidden(),
            &shutdown,
        )
        .unwrap();
        assert_eq!(out.bytes_in, data.len() as u64);
        assert_eq!(out.file.metadata().unwrap().len(), out.bytes_out);
        use std::io::Seek;
        out.file.rewind().unwrap();
        // flate2's single-member decoder: the whole file must be one gzip member.
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&out.file));
        let mut entries = tar.entries().unwrap();
        let mut first = entries.next().unwrap().unwrap();
        assert_eq!(first.path().unwrap().to_str(), Some("dump.sql"));
        let mut back = Vec::new();
        first.read_to_end(&mut back).unwrap();
        assert!(back == data);
        drop(first);
        assert!(entries.next().is_none());
    }
}
