//! `archive-dump`: fetch the zip a database server publishes, check that the dump inside is
//! today's, and repack the dump alone as a dated `.tgz`, reporting what happened as one record.

pub mod fetch;
pub mod member;
pub mod progress;
pub mod repack;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Local};
use clap::{ArgGroup, Parser};
use opsline::exit::err;
use opsline::man::Example;
use opsline::{
    Code, CommonArgs, Context, Flush, Record, RecordWriter, Secret, StateFile, WithCode,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::fetch::{Fetched, HttpOptions, Validators};
use crate::member::{Freshness, Member, Selector};
use crate::progress::Progress;
use crate::repack::{Packed, Packing, TarEntry};
use opsline::units::{parse_duration, parse_size};

/// The tool's name.
pub const TOOL: &str = "archive-dump";

/// Format version of the state file.
const STATE_VERSION: u32 = 1;

/// Fetch a zip, check its dump is today's, repack it as a dated .tgz.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Fetch a zip over HTTP(S), check the dump inside is today's, repack it as a dated .tgz",
    long_about = "Downloads the zip a database server publishes (or reads a local one), finds the dump in it \
(--member, a name or a glob), checks that the dump was modified today (or within --max-age), and compresses \
that one file as a tar.gz named after today's local date (--name, default %Y%m%d.tgz) in --out-dir. It prints \
one record: {\"kind\":\"archive\",\"path\":…,\"archive\":{\"status\":\"created\",…}} for a new archive; a stale dump \
gives status \"stale\" and an unchanged zip (with --state) status \"unchanged\", both without \"path\" and with exit \
status 0, so the pipeline and the daily recap go on. Any failure prints a record with an \"error\" field and \
exits with a status that tells a retry (75) from a permanent problem.\n\n\
The download is streamed to a temp file in --out-dir, with TLS verified against the system's CA bundle (or the \
built-in Mozilla roots) plus --ca-cert, a connect timeout, a stall timeout that only fires when no data arrives \
for that long (a slow, big download is never cut), and --retries with exponential backoff on timeouts, \
resets, 5xx, 408 and 429; a retry after a broken-off body asks only for the rest (Range with If-Range). \
Other 4xx statuses fail at once. With --state the ETag and Last-Modified of the last \
fetch are sent as a conditional GET, so an unchanged zip is not downloaded again.\n\n\
Nothing is extracted to disk: the dump is streamed from the zip through tar into a parallel gzip writer \
(one standard gzip stream, like pigz) and a temp file that is fsynced and renamed into place. Entries with \
absolute names, \"..\", symbolic links or encryption are refused; the dump is read through --max-bytes and to \
its end, so a zip bomb stops at the cap and a CRC mismatch is an error. An existing archive is never \
replaced without --overwrite, and temp files are removed on every failure."
)]
#[command(group(ArgGroup::new("source").required(true).args(["url", "zip"])))]
pub struct Cli {
    /// URL of the zip (http:// or https://)
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,

    /// Read this local zip instead of downloading one
    #[arg(long, value_name = "FILE")]
    pub zip: Option<PathBuf>,

    /// The dump in the zip: its full name, or a glob such as '*.sql' that must match exactly one entry
    #[arg(long, value_name = "NAME")]
    pub member: String,

    /// Folder for the archive (created mode 0600: a dump is private) and the temp files; it must exist
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,

    /// File name of the archive: a strftime pattern on the current local time
    #[arg(long, value_name = "PATTERN", default_value = "%Y%m%d.tgz")]
    pub name: String,

    /// Replace an archive that already exists (by default that is an error)
    #[arg(long)]
    pub overwrite: bool,

    /// Keep the downloaded zip beside the archive, named like it with .zip
    #[arg(long)]
    pub keep_zip: bool,

    /// Accept a dump modified at most this long ago (30m, 26h, 2d) instead of "today, local time"
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_age: Option<Duration>,

    /// Largest uncompressed dump read (K, M, G, T suffixes); more is refused as a zip bomb
    #[arg(long, value_name = "SIZE", default_value = "256G", value_parser = parse_size)]
    pub max_bytes: u64,

    /// Largest zip downloaded
    #[arg(long, value_name = "SIZE", default_value = "64G", value_parser = parse_size)]
    pub max_download: u64,

    /// gzip compression level, 0 (none) to 9 (smallest)
    #[arg(long, value_name = "0-9", default_value_t = 6, value_parser = clap::value_parser!(u32).range(0..=9))]
    pub level: u32,

    /// Compression threads [default: the number of CPUs]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,

    /// User for HTTP basic authentication; the password comes from --password-file or ARCHIVE_DUMP_PASSWORD
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,

    /// File whose first line is the HTTP password
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// Also trust the CA certificates in this PEM file (a private CA)
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

    /// Do not verify the server's TLS certificate (dangerous; a warning says so on every run)
    #[arg(long)]
    pub insecure: bool,

    /// Give up connecting (TCP and TLS) after this long
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Give up when the server sends nothing for this long; restarts whenever data arrives
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub stall_timeout: Duration,

    /// Further attempts after a timeout, a reset, a 5xx, 408 or 429 (a Retry-After of up to 5 minutes is honoured)
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub retries: u32,

    /// Wait before the first retry; doubled for each further one (up to a minute)
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub retry_delay: Duration,

    /// State file remembering the last download's ETag/Last-Modified, for a conditional GET
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// Forget the saved state first (the next download is unconditional)
    #[arg(long, requires = "state")]
    pub reset: bool,

    #[command(flatten)]
    pub common: CommonArgs,
}

impl opsline::Tool for Cli {
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}

/// Examples for the man page.
pub const EXAMPLES: &[Example] = &[
    Example {
        title: "The nightly job: fetch the dump zip from the database server, keep the validators for tomorrow, ship the archive.",
        command: "archive-dump --url https://db1.example.org/backup/nightly.zip --member 'nightly-*.sql' --out-dir /srv/backup/out --ca-cert /etc/ssl/private-ca.pem --state /var/lib/opsline/archive-dump.json | ship-sftp --host backup.example.org",
    },
    Example {
        title: "Repack a zip already on disk, accepting a dump up to 26 hours old.",
        command: "archive-dump --zip /tmp/nightly.zip --member dump.sql --out-dir /srv/backup/out --max-age 26h",
    },
    Example {
        title: "With basic authentication, the password in a file only root can read.",
        command: "archive-dump --url https://db1.example.org/nightly.zip --user backup --password-file /etc/opsline/db1.pass --member dump.sql --out-dir /srv/backup/out",
    },
];

/// What the state file keeps between runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Saved {
    /// The URL the validators belong to (without credentials).
    url: String,
    /// The validators of the zip last fetched.
    validators: Validators,
    /// What that run did.
    status: String,
    /// The archive it wrote, if any.
    path: Option<PathBuf>,
}

/// What one run did.
#[derive(Debug)]
enum Outcome {
    Created { member: Member, packed: Packed, kept_zip: Option<PathBuf> },
    Stale { member: Member, reason: String },
    Unchanged { previous: Option<Saved> },
}

impl Outcome {
    fn status(&self) -> &'static str {
        match self {
            Outcome::Created { .. } => "created",
            Outcome::Stale { .. } => "stale",
            Outcome::Unchanged { .. } => "unchanged",
        }
    }
}

/// Runs the tool.
pub fn run(cli: Cli, ctx: &Context) -> anyhow::Result<Code> {
    ctx.shutdown.watch();
    let started = Instant::now();
    let mut out = RecordWriter::stdout(ctx.tool, Flush::EachRecord)?;
    let source = match (&cli.url, &cli.zip) {
        (Some(url), _) => fetch::redact(url),
        (None, Some(zip)) => zip.display().to_string(),
        (None, None) => return Err(err(Code::Usage, "give --url or --zip")),
    };
    let mut archive = Map::new();
    archive.insert("source".into(), source.into());
    match job(&cli, ctx) {
        Ok(outcome) => {
            let record = record_of(&outcome, archive, &cli.member, started.elapsed())?;
            out.write(&record)?;
            Ok(out.finish()?)
        }
        Err(e) => {
            archive.insert("status".into(), "failed".into());
            archive.insert("member".into(), cli.member.clone().into());
            archive.insert("seconds".into(), seconds(started.elapsed()));
            let mut record = Record::error("archive", ctx.tool, format!("{e:#}"));
            record.insert("archive", Value::Object(archive));
            out.write(&record)?;
            out.flush()?;
            Err(e)
        }
    }
}

fn job(cli: &Cli, ctx: &Context) -> anyhow::Result<Outcome> {
    let now = Local::now();
    let out_dir = cli.out_dir.canonicalize().with_code(Code::NoInput, || {
        format!("the output folder {} is not usable", cli.out_dir.display())
    })?;
    let dest = output_path(&out_dir, &cli.name, now)?;
    // With --state an unchanged zip is a normal outcome even when today's archive exists, so
    // the check waits until a new zip has arrived.
    if cli.state.is_none() || cli.url.is_none() {
        refuse_existing(&dest, cli.overwrite)?;
    }
    let selector = Selector::new(&cli.member)?;
    if cli.zip.is_some() && (cli.keep_zip || cli.state.is_some()) {
        tracing::warn!("--keep-zip and --state apply to downloads only; ignored with --zip");
    }
    let progress = Progress::new(cli.common.quiet);
    let task = Task { cli, ctx, selector, dest, now, progress };
    match (&cli.url, &cli.zip) {
        (Some(url), _) => task.fetch_and_pack(url),
        (None, Some(zip)) => task.pack_zip(zip),
        (None, None) => Err(err(Code::Usage, "give --url or --zip")),
    }
}

/// One run's settled inputs.
struct Task<'a> {
    cli: &'a Cli,
    ctx: &'a Context,
    selector: Selector,
    dest: PathBuf,
    now: DateTime<Local>,
    progress: Progress,
}

impl Task<'_> {
    fn fetch_and_pack(&self, url: &str) -> anyhow::Result<Outcome> {
        let cli = self.cli;
        let state = match &cli.state {
            Some(path) => Some(StateFile::lock(path, TOOL, STATE_VERSION)?),
            None => None,
        };
        if cli.reset {
            state.as_ref().map(StateFile::reset).transpose()?;
        }
        let saved: Option<Saved> = match &state {
            Some(state) => state.load()?,
            None => None,
        };
        let saved = saved.filter(|s| s.url == fetch::redact(url));
        let options = http_options(cli, url)?;
        let bar = self.progress.bytes("download", None);
        let fetched = fetch::fetch(
            &options,
            saved.as_ref().map(|s| &s.validators),
            self.dest.parent().unwrap_or(&cli.out_dir),
            &bar,
            &self.ctx.shutdown,
        )?;
        bar.finish_and_clear();
        let download = match fetched {
            Fetched::Unchanged => return Ok(Outcome::Unchanged { previous: saved }),
            Fetched::Downloaded(download) => download,
        };
        tracing::info!(bytes = download.bytes, "downloaded {}", fetch::redact(url));
        refuse_existing(&self.dest, cli.overwrite)?;
        if cli.keep_zip {
            refuse_existing(&zip_beside(&self.dest), cli.overwrite)?;
        }
        let mut outcome = self.pack_zip(download.file.path())?;
        if let (Outcome::Created { kept_zip, .. }, true) = (&mut outcome, cli.keep_zip) {
            let path = zip_beside(&self.dest);
            download
                .file
                .as_file()
                .sync_all()
                .with_code(Code::IoErr, || "cannot fsync the downloaded zip".to_owned())?;
            repack::place(download.file, &path, cli.overwrite)?;
            *kept_zip = Some(path);
        }
        if let Some(state) = &state {
            state.save(&Saved {
                url: fetch::redact(url),
                validators: download.validators,
                status: outcome.status().to_owned(),
                path: match &outcome {
                    Outcome::Created { packed, .. } => Some(packed.path.clone()),
                    _ => None,
                },
            })?;
        }
        Ok(outcome)
    }

    fn pack_zip(&self, zip: &Path) -> anyhow::Result<Outcome> {
        let cli = self.cli;
        let mut archive = member::open(zip)?;
        let member = member::find(&mut archive, &self.selector, cli.max_bytes)?;
        let freshness = cli.max_age.map_or(Freshness::Today, Freshness::MaxAge);
        if let Some(reason) = freshness.stale_reason(member.mtime, self.now) {
            tracing::warn!("{reason}; no archive made");
            return Ok(Outcome::Stale { member, reason });
        }
        let reader = member::reader(&mut archive, &member)?;
        let entry = TarEntry {
            name: member.file_name.clone(),
            size: member.size,
            mtime: member.mtime.timestamp(),
        };
        let packing = Packing {
            level: cli.level,
            threads: cli.threads.map_or_else(cpus, usize::from),
            overwrite: cli.overwrite,
        };
        let bar = self.progress.bytes("compress", Some(member.size));
        let packed = repack::repack(reader, &entry, &self.dest, packing, &bar, &self.ctx.shutdown)?;
        bar.finish_and_clear();
        Ok(Outcome::Created { member, packed, kept_zip: None })
    }
}

/// Fails early when the archive exists and may not be replaced (placing it checks again).
fn refuse_existing(dest: &Path, overwrite: bool) -> anyhow::Result<()> {
    if !overwrite && dest.symlink_metadata().is_ok() {
        return Err(repack::exists(dest));
    }
    Ok(())
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn http_options(cli: &Cli, url: &str) -> anyhow::Result<HttpOptions> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(err(
            Code::Usage,
            format!("--url {url:?} is not an http:// or https:// URL; use --zip for a local file"),
        ));
    }
    let password = Secret::resolve(TOOL, "password", cli.password_file.as_deref())?;
    let credentials = match (&cli.user, password) {
        (Some(user), Some(password)) => Some((user.clone(), password)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(err(
                Code::Config,
                "--user needs a password: --password-file FILE or ARCHIVE_DUMP_PASSWORD",
            ));
        }
        (None, Some(_)) => {
            return Err(err(Code::Config, "a password was given without --user"));
        }
    };
    if credentials.is_some() && url.starts_with("http://") {
        tracing::warn!("sending the password over plain http://; anyone on the path can read it");
    }
    Ok(HttpOptions {
        url: url.to_owned(),
        credentials,
        ca_cert: cli.ca_cert.clone(),
        insecure: cli.insecure,
        connect_timeout: cli.connect_timeout,
        stall_timeout: cli.stall_timeout,
        retries: cli.retries,
        retry_delay: cli.retry_delay,
        max_download: cli.max_download,
    })
}

/// The archive's path: `pattern` formatted with `now`, which must give a plain file name.
fn output_path(dir: &Path, pattern: &str, now: DateTime<Local>) -> anyhow::Result<PathBuf> {
    if !dir.is_dir() {
        return Err(err(
            Code::NoInput,
            format!("the output folder {} does not exist or is not a folder", dir.display()),
        ));
    }
    let mut name = String::new();
    write!(name, "{}", now.format(pattern)).map_err(|_| {
        err(Code::Usage, format!("--name {pattern:?} is not a valid strftime pattern"))
    })?;
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(err(
            Code::Usage,
            format!("--name {pattern:?} gives {name:?}, which is not a plain file name"),
        ));
    }
    Ok(dir.join(name))
}

/// Where `--keep-zip` puts the zip: the archive's name with `.zip` for `.tgz`/`.tar.gz`.
fn zip_beside(archive: &Path) -> PathBuf {
    let name = archive.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = name.strip_suffix(".tar.gz").or_else(|| name.strip_suffix(".tgz")).unwrap_or(&name);
    archive.with_file_name(format!("{stem}.zip"))
}

fn seconds(elapsed: Duration) -> Value {
    json!((elapsed.as_secs_f64() * 1000.0).round() / 1000.0)
}

fn record_of(
    outcome: &Outcome,
    mut archive: Map<String, Value>,
    selector: &str,
    elapsed: Duration,
) -> anyhow::Result<Record> {
    let mut record = Record::new("archive");
    archive.insert("status".into(), outcome.status().into());
    match outcome {
        Outcome::Created { member, packed, kept_zip } => {
            record
                .set_path(&packed.path)
                .map_err(|e| err(Code::Usage, format!("the archive path is not UTF-8: {e}")))?;
            describe_member(&mut archive, member);
            archive.insert("bytes_in".into(), packed.bytes_in.into());
            archive.insert("bytes_out".into(), packed.bytes_out.into());
            archive.insert("sha256".into(), packed.sha256.clone().into());
            if let Some(zip) = kept_zip {
                archive.insert("zip".into(), zip.display().to_string().into());
            }
        }
        Outcome::Stale { member, reason } => {
            describe_member(&mut archive, member);
            archive.insert("member_size".into(), member.size.into());
            archive.insert("reason".into(), reason.clone().into());
        }
        Outcome::Unchanged { previous } => {
            archive.insert("member".into(), selector.into());
            if let Some(previous) = previous {
                archive.insert("previous_status".into(), previous.status.clone().into());
                if let Some(path) = &previous.path {
                    archive.insert("previous_path".into(), path.display().to_string().into());
                }
            }
        }
    }
    archive.insert("seconds".into(), seconds(elapsed));
    record.insert("archive", Value::Object(archive));
    Ok(record)
}

fn describe_member(archive: &mut Map<String, Value>, member: &Member) {
    archive.insert("member".into(), member.name.clone().into());
    archive.insert("member_mtime".into(), opsline::time::rfc3339(&member.mtime).into());
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn names_come_from_the_local_date_and_stay_in_the_folder() {
        let dir = std::env::temp_dir();
        let now = Local.with_ymd_and_hms(2026, 11, 23, 2, 0, 0).unwrap();
        assert_eq!(output_path(&dir, "%Y%m%d.tgz", now).unwrap(), dir.join("20261123.tgz"));
        assert_eq!(
            output_path(&dir, "db-%F.tar.gz", now).unwrap(),
            dir.join("db-2026-11-23.tar.gz")
        );
        assert!(output_path(&dir, "../%Y.tgz", now).is_err());
        assert!(output_path(&dir, "%Q.tgz", now).is_err());
        assert!(output_path(&dir.join("no-such-folder-here"), "%Y", now).is_err());
    }

    #[test]
    fn kept_zips_are_named_like_the_archive() {
        assert_eq!(zip_beside(Path::new("/o/20261123.tgz")), Path::new("/o/20261123.zip"));
        assert_eq!(zip_beside(Path::new("/o/db.tar.gz")), Path::new("/o/db.zip"));
        assert_eq!(zip_beside(Path::new("/o/db.gz")), Path::new("/o/db.gz.zip"));
    }
}
