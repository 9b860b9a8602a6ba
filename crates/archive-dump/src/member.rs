//! Finding the dump inside the zip and deciding whether it may be read: safe name, regular
//! file, not encrypted, within the size cap, and fresh enough.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path};
use std::time::Duration;

use chrono::{DateTime, Local, NaiveDate, TimeZone, Utc};
use globset::{Glob, GlobMatcher};
use opsline::exit::err;
use opsline::{Code, WithCode};
use zip::read::ZipFile;
use zip::{CompressionMethod, ExtraField, ZipArchive};

/// How many entry names an error about a missing member lists.
const LISTED_ENTRIES: usize = 50;

/// Which entry of the zip is the dump: an exact name, or a glob when the text has `*?[{`.
#[derive(Debug, Clone)]
pub enum Selector {
    /// The entry's full name inside the zip.
    Exact(String),
    /// A glob over the entry's full name (`*` also crosses `/`).
    Glob(GlobMatcher),
}

impl Selector {
    /// A selector for `pattern`.
    pub fn new(pattern: &str) -> anyhow::Result<Selector> {
        if pattern.contains(['*', '?', '[', '{']) {
            let glob = Glob::new(pattern)
                .with_code(Code::Usage, || format!("--member {pattern:?} is not a valid glob"))?;
            Ok(Selector::Glob(glob.compile_matcher()))
        } else {
            Ok(Selector::Exact(pattern.to_owned()))
        }
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Selector::Exact(exact) => name == exact,
            Selector::Glob(glob) => glob.is_match(name),
        }
    }

    fn describe(&self) -> String {
        match self {
            Selector::Exact(exact) => format!("no entry named {exact:?}"),
            Selector::Glob(glob) => format!("no entry matches {:?}", glob.glob().glob()),
        }
    }
}

/// The dump entry, checked and ready to read.
#[derive(Debug, Clone)]
pub struct Member {
    /// Index in the zip's central directory.
    pub index: usize,
    /// Full name inside the zip.
    pub name: String,
    /// Last component of the name: what the tar archive calls it.
    pub file_name: String,
    /// Uncompressed size the zip declares (enforced while reading).
    pub size: u64,
    /// Modification time.
    pub mtime: DateTime<Local>,
}

/// Opens a zip; a truncated or corrupt one is a clear data error.
pub fn open(path: &Path) -> anyhow::Result<ZipArchive<File>> {
    let file =
        File::open(path).with_code(Code::NoInput, || format!("cannot open {}", path.display()))?;
    ZipArchive::new(file).with_code(Code::DataErr, || {
        format!("{} is not a readable zip (truncated or corrupt)", path.display())
    })
}

/// Finds the single entry `selector` names and checks it can be read safely.
pub fn find(
    archive: &mut ZipArchive<File>,
    selector: &Selector,
    max_bytes: u64,
) -> anyhow::Result<Member> {
    let candidates: Vec<(usize, String)> = (0..archive.len())
        .filter_map(|i| archive.name_for_index(i).map(|name| (i, name.to_owned())))
        .filter(|(_, name)| !name.ends_with('/') && selector.matches(name))
        .collect();
    match candidates.as_slice() {
        [] => Err(err(
            Code::DataErr,
            format!("{} in the zip; it holds: {}", selector.describe(), listing(archive)),
        )),
        [(index, name)] => inspect(archive, *index, name, max_bytes),
        many => {
            let names: Vec<&str> = many.iter().map(|(_, name)| name.as_str()).collect();
            Err(err(
                Code::DataErr,
                format!(
                    "--member matches {} entries, expected one: {}",
                    names.len(),
                    names.join(", ")
                ),
            ))
        }
    }
}

fn listing(archive: &ZipArchive<File>) -> String {
    if archive.is_empty() {
        return "nothing (the zip is empty)".to_owned();
    }
    let mut names: Vec<&str> = archive.file_names().take(LISTED_ENTRIES).collect();
    names.sort_unstable();
    let mut text = names.join(", ");
    if archive.len() > LISTED_ENTRIES {
        text.push_str(&format!(" and {} more", archive.len() - LISTED_ENTRIES));
    }
    text
}

fn inspect(
    archive: &mut ZipArchive<File>,
    index: usize,
    name: &str,
    max_bytes: u64,
) -> anyhow::Result<Member> {
    let entry = archive
        .by_index_raw(index)
        .with_code(Code::DataErr, || format!("cannot read the zip entry {name:?}"))?;
    let refuse = |why: &str| err(Code::DataErr, format!("refusing zip entry {name:?}: {why}"));
    if entry.is_symlink() {
        return Err(refuse("it is a symbolic link"));
    }
    let file_name = safe_file_name(&entry).ok_or_else(|| {
        refuse("its name is absolute or contains \"..\" or a backslash (a zip-slip entry)")
    })?;
    if entry.encrypted() {
        return Err(refuse("it is encrypted; archive-dump does not decrypt zips"));
    }
    if !matches!(entry.compression(), CompressionMethod::Stored | CompressionMethod::Deflated) {
        return Err(refuse(&format!(
            "it is compressed with {}, only stored and deflate are supported",
            entry.compression()
        )));
    }
    if entry.size() > max_bytes {
        return Err(refuse(&format!(
            "it declares {} bytes uncompressed, more than --max-bytes {max_bytes} (a zip bomb?)",
            entry.size()
        )));
    }
    let mtime = member_mtime(&entry).ok_or_else(|| refuse("it has no valid modification time"))?;
    Ok(Member { index, name: name.to_owned(), file_name, size: entry.size(), mtime })
}

/// The entry's last name component, or `None` when any part of its name could lead out of a
/// folder: absolute, a drive prefix, `..` anywhere (even where it would stay inside).
fn safe_file_name<R: Read>(entry: &ZipFile<'_, R>) -> Option<String> {
    let raw = entry.name();
    if raw.starts_with('/') || raw.contains('\\') || raw.contains('\0') {
        return None;
    }
    let enclosed = entry.enclosed_name()?;
    if Path::new(raw).components().any(|c| matches!(c, Component::ParentDir)) {
        return None;
    }
    let last = enclosed.file_name()?.to_str()?.to_owned();
    Some(last)
}

/// The modification time: the UTC extended-timestamp extra field when present, else the DOS
/// time, which has no zone and is taken as local time (as Info-ZIP does).
fn member_mtime<R: Read>(entry: &ZipFile<'_, R>) -> Option<DateTime<Local>> {
    let extended = entry.extra_data_fields().find_map(|field| match field {
        ExtraField::ExtendedTimestamp(ts) => ts.mod_time(),
        ExtraField::Ntfs(_) => None,
    });
    if let Some(seconds) = extended {
        return Utc.timestamp_opt(i64::from(seconds), 0).single().map(|t| t.with_timezone(&Local));
    }
    let dos = entry.last_modified()?;
    let naive = NaiveDate::from_ymd_opt(
        i32::from(dos.year()),
        u32::from(dos.month()),
        u32::from(dos.day()),
    )?
    .and_hms_opt(u32::from(dos.hour()), u32::from(dos.minute()), u32::from(dos.second()))?;
    Local.from_local_datetime(&naive).earliest()
}

/// What counts as a fresh dump.
#[derive(Debug, Clone, Copy)]
pub enum Freshness {
    /// Modified on the current local calendar day.
    Today,
    /// Modified at most this long ago.
    MaxAge(Duration),
}

impl Freshness {
    /// `None` when a dump modified at `mtime` is fresh at `now`, else why it is stale.
    pub fn stale_reason(self, mtime: DateTime<Local>, now: DateTime<Local>) -> Option<String> {
        match self {
            Freshness::Today if mtime.date_naive() == now.date_naive() => None,
            Freshness::Today => Some(format!(
                "the dump was modified on {}, not today ({})",
                mtime.date_naive(),
                now.date_naive()
            )),
            Freshness::MaxAge(max) => {
                let age = (now - mtime).to_std().unwrap_or(Duration::ZERO);
                (age > max).then(|| {
                    format!(
                        "the dump is {} old, more than --max-age {}",
                        human_duration(age),
                        human_duration(max)
                    )
                })
            }
        }
    }
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// Reads an entry's data as the declared size says, no more and no less, and then once more to
/// the end so that the zip reader verifies the CRC. A header that understates the size (a
/// zip bomb) fails instead of filling the disk.
#[derive(Debug)]
pub struct SizedReader<R> {
    inner: R,
    remaining: u64,
    declared: u64,
    at_end: bool,
}

impl<R: Read> SizedReader<R> {
    /// Wraps `inner`, which must yield exactly `declared` bytes.
    pub fn new(inner: R, declared: u64) -> Self {
        SizedReader { inner, remaining: declared, declared, at_end: false }
    }
}

impl<R: Read> Read for SizedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.at_end {
            return Ok(0);
        }
        if self.remaining == 0 {
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => {
                    self.at_end = true;
                    Ok(0)
                }
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the entry holds more than the {} bytes its header declares",
                        self.declared
                    ),
                )),
            };
        }
        let want = usize::try_from(self.remaining).map_or(buf.len(), |r| r.min(buf.len()));
        let got = self.inner.read(&mut buf[..want])?;
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the entry ends after {} of the {} bytes its header declares",
                    self.declared - self.remaining,
                    self.declared
                ),
            ));
        }
        self.remaining -= got as u64;
        Ok(got)
    }
}

/// Opens the checked member for reading its uncompressed data.
pub fn reader<'a>(
    archive: &'a mut ZipArchive<File>,
    member: &Member,
) -> anyhow::Result<SizedReader<ZipFile<'a, File>>> {
    let entry = archive
        .by_index(member.index)
        .with_code(Code::DataErr, || format!("cannot read the zip entry {:?}", member.name))?;
    Ok(SizedReader::new(entry, member.size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(y: i32, mo: u32, d: u32, h: u32) -> DateTime<Local> {
        Local.with_ymd_and_hms(y, mo, d, h, 0, 0).earliest().unwrap()
    }

    #[test]
    fn today_is_the_local_calendar_day() {
        let now = local(2026, 11, 23, 1);
        assert_eq!(Freshness::Today.stale_reason(local(2026, 11, 23, 0), now), None);
        let reason = Freshness::Today.stale_reason(local(2026, 11, 22, 23), now).unwrap();
        assert!(reason.contains("2026-11-22"), "{reason}");
    }

    #[test]
    fn max_age_replaces_today() {
        let now = local(2026, 11, 23, 1);
        let rule = Freshness::MaxAge(Duration::from_secs(26 * 3600));
        assert_eq!(rule.stale_reason(local(2026, 11, 22, 0), now), None);
        assert!(rule.stale_reason(local(2026, 11, 21, 22), now).unwrap().contains("27h00m"));
    }

    #[test]
    fn sized_reader_refuses_more_or_less_than_declared() {
        let mut out = Vec::new();
        SizedReader::new(&b"abcd"[..], 4).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abcd");
        let long = SizedReader::new(&b"abcde"[..], 4).read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(long.kind(), io::ErrorKind::InvalidData);
        let short = SizedReader::new(&b"abc"[..], 4).read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(short.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn globs_only_when_asked() {
        assert!(Selector::new("dump.sql").unwrap().matches("dump.sql"));
        assert!(!Selector::new("dump.sql").unwrap().matches("x/dump.sql"));
        assert!(Selector::new("*.sql").unwrap().matches("backup/db-2026.sql"));
    }
}
