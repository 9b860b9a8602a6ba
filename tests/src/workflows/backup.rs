//! Workflow 2, nightly backup: fetch the database server's dump zip over HTTPS, repack the dump
//! as a dated .tgz, ship it to the backup server over SFTP keeping 30 days, and send a recap by
//! mail (the run's log attached) and to Mattermost.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::{Days, Local};
use opsline_testkit::http::Reply;
use opsline_testkit::sshd::SshAccount;
use serde_json::Value;

use crate::lab::{Lab, MATTERMOST_PATH, RUN_TIMEOUT};
use crate::sample;
use crate::shell::{Pipeline, Run};
use crate::summary::{MailSummary, file_sha256, names_in};
use crate::workflows::{of_kind, text};

/// The pipeline, as the 23:00 crontab line runs it.
pub const COMMAND: &str = "( archive-dump -v --url \"$DUMP_URL\" --ca-cert \"$CA_CERT\" --member dump.sql --out-dir \"$DUMPS\" \
| ship-sftp -v \"$BACKUP_TARGET\" --known-hosts \"$KNOWN_HOSTS\" --identity \"$IDENTITY\" --verify sha256 --keep-days 30 ) 2>\"$RUN_LOG\" \
| notify --digest --smtp \"$SMTP_URL\" --from 'Backups <backup@example.org>' --to admin@example.org --attach \"$RUN_LOG\" \
--mattermost --mattermost-url-file \"$MATTERMOST_URL_FILE\"";

/// The recap's recipient.
pub const ADMIN_EMAIL: &str = "admin@example.org";

/// The folder on the backup server.
pub const REMOTE_DIR: &str = "TSE-INFORX";

/// Ages (days) of the archives already on the server: 40 and 31 go, 29 and 5 stay.
pub const OLD_ARCHIVE_AGES: &[u64] = &[40, 31, 29, 5];

/// What arrived.
#[derive(Debug)]
pub struct BackupSummary {
    /// The pipeline.
    pub run: Run,
    /// The archive made tonight, locally.
    pub archive: PathBuf,
    /// Its SHA-256.
    pub local_sha256: String,
    /// The SHA-256 of the copy on the backup server.
    pub remote_sha256: String,
    /// The SHA-256 ship-sftp reported for the upload.
    pub reported_sha256: String,
    /// The names pre-placed on the server before the run.
    pub before: Vec<String>,
    /// The names on the server after the run.
    pub after: Vec<String>,
    /// The files ship-sftp reported as pruned (remote paths).
    pub pruned: Vec<String>,
    /// The run's log (standard error of archive-dump and ship-sftp), attached to the recap.
    pub run_log: String,
    /// The recap mail.
    pub mail: MailSummary,
    /// The Mattermost posts (JSON bodies).
    pub mattermost: Vec<Value>,
    /// The database server's downloads seen by the HTTPS server.
    pub downloads: usize,
}

/// `YYYYMMDD.tgz` for the archive made `days` ago.
pub fn archive_name(days_ago: u64) -> String {
    let day = Local::now().date_naive() - Days::new(days_ago);
    format!("{}.tgz", day.format("%Y%m%d"))
}

/// Runs the workflow.
pub fn run(lab: &Lab) -> anyhow::Result<BackupSummary> {
    let zip = lab.dir("samples")?.join("dump.zip");
    sample::dump_zip(&zip, "dump.sql", 50_000, 0)?;
    lab.https.set_default(Reply::file(&zip)?);
    let before = place_old_archives(lab)?;
    let dumps = lab.dir("var/backups/dumps")?;
    let run_log = lab.work().join("runs/backup.log");
    let pipeline = pipeline(lab, &dumps, &run_log)?;
    let mails_before = lab.smtp.messages()?.len();
    let mattermost_before = lab.api_requests(MATTERMOST_PATH).len();
    let run = lab.shell.run_ok("nightly-backup", &pipeline, RUN_TIMEOUT)?;
    let records = run.records()?;

    let archive = dumps.join(archive_name(0));
    let remote_file = remote_dir(lab).join(archive_name(0));
    let shipped = of_kind(&records, "shipped");
    let [shipped] = shipped.as_slice() else {
        bail!("expected one shipped record, got {records:?}");
    };
    let mails = lab.smtp.wait_for_messages(mails_before + 1, Duration::from_secs(10))?;
    let mattermost = posts(lab, mattermost_before)?;
    Ok(BackupSummary {
        local_sha256: file_sha256(&archive)?,
        remote_sha256: file_sha256(&remote_file)?,
        reported_sha256: text(shipped, "sftp.sha256").to_owned(),
        before,
        after: names_in(&remote_dir(lab))?,
        pruned: of_kind(&records, "pruned")
            .iter()
            .map(|r| text(r, "sftp.remote").to_owned())
            .collect(),
        run_log: std::fs::read_to_string(&run_log)?,
        mail: MailSummary::from(mails.last().context("no recap mail")?),
        mattermost,
        downloads: lab.https.requests().len(),
        archive,
        run,
    })
}

/// The pipeline with its settings for the lab's servers.
fn pipeline(lab: &Lab, dumps: &Path, run_log: &Path) -> anyhow::Result<Pipeline> {
    let mattermost_url = lab.secret("mattermost-url", &lab.api.url(MATTERMOST_PATH))?;
    Ok(Pipeline::new(COMMAND)
        .var("DUMP_URL", lab.https.url("/export/dump.zip"))
        .var("CA_CERT", lab.ca.ca_cert_path())
        .var("DUMPS", dumps)
        .var("BACKUP_TARGET", lab.sftp_url(SshAccount::Shell, REMOTE_DIR))
        .var("KNOWN_HOSTS", lab.known_hosts()?)
        .var("IDENTITY", lab.sshd.client_key_path())
        .var("RUN_LOG", run_log)
        .var("SMTP_URL", lab.smtp_url())
        .var("MATTERMOST_URL_FILE", &mattermost_url))
}

/// The Mattermost posts after the first `skip`, as JSON.
fn posts(lab: &Lab, skip: usize) -> anyhow::Result<Vec<Value>> {
    lab.api_requests(MATTERMOST_PATH).iter().skip(skip).map(|r| r.json()).collect()
}

fn remote_dir(lab: &Lab) -> PathBuf {
    lab.sshd.upload_dir(SshAccount::Shell).join(REMOTE_DIR)
}

/// Puts last month's archives on the server the way they got there: through SFTP.
fn place_old_archives(lab: &Lab) -> anyhow::Result<Vec<String>> {
    let local = lab.dir("samples/old-archives")?;
    let remote = format!("{}/{REMOTE_DIR}", lab.sshd.remote_dir(SshAccount::Shell));
    let mut batch = format!("-mkdir {remote}\n");
    let mut names = Vec::new();
    for &days in OLD_ARCHIVE_AGES {
        let name = archive_name(days);
        std::fs::write(local.join(&name), format!("archive of {days} days ago\n"))?;
        batch.push_str(&format!("put {} {remote}/{name}\n", local.join(&name).display()));
        names.push(name);
    }
    let output = lab.sshd.sftp(SshAccount::Shell, &batch)?;
    if !output.status.success() {
        bail!("placing the old archives failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    names.sort();
    Ok(names)
}

impl BackupSummary {
    /// What differs from the workflow's promise: tonight's archive is on the server intact,
    /// the archives older than 30 days are gone, the recap went by mail with the log and to
    /// Mattermost.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.remote_sha256 != self.local_sha256 {
            problems.push("the archive on the server differs from the local one".to_owned());
        }
        let expected: Vec<String> = OLD_ARCHIVE_AGES
            .iter()
            .filter(|&&days| days > 30)
            .map(|&days| archive_name(days))
            .collect();
        let pruned: Vec<String> = self
            .pruned
            .iter()
            .map(|p| p.rsplit('/').next().unwrap_or_default().to_owned())
            .collect();
        if pruned != expected {
            problems.push(format!("pruned {pruned:?}, expected {expected:?}"));
        }
        if self.after.iter().any(|name| expected.contains(name)) {
            problems.push(format!("old archives are still on the server: {:?}", self.after));
        }
        if self.mail.recipients != [ADMIN_EMAIL] || self.mail.attachments.len() != 1 {
            problems.push(format!("the recap mail is not as expected: {}", self.mail));
        }
        if self.mattermost.len() != 1 {
            problems.push(format!("{} Mattermost posts, expected 1", self.mattermost.len()));
        }
        problems
    }
}

impl fmt::Display for BackupSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "downloaded the dump zip over HTTPS ({} request(s))", self.downloads)?;
        writeln!(f, "archive: {} sha256 {}", self.archive.display(), self.local_sha256)?;
        let same = if self.remote_sha256 == self.local_sha256 { "same" } else { "DIFFERENT" };
        writeln!(f, "shipped to {REMOTE_DIR}/: remote sha256 {} ({same})", self.remote_sha256)?;
        writeln!(f, "on the server before: {}", self.before.join(" "))?;
        for pruned in &self.pruned {
            writeln!(f, "pruned (older than 30 days): {pruned}")?;
        }
        writeln!(f, "on the server after:  {}", self.after.join(" "))?;
        write!(f, "{}", self.mail)?;
        for post in &self.mattermost {
            let first_line = text(post, "text").lines().next().unwrap_or_default();
            writeln!(f, "mattermost post: {first_line}")?;
        }
        write!(f, "pipeline: {}", self.run.status)
    }
}

/// A night when the database server's export did not run: its zip holds yesterday's dump.
#[derive(Debug)]
pub struct StaleNightSummary {
    /// The pipeline.
    pub run: Run,
    /// Its output records.
    pub records: Vec<Value>,
    /// The names on the server before the run.
    pub before: Vec<String>,
    /// The names on the server after the run.
    pub after: Vec<String>,
    /// The archives in the local dump folder after the run.
    pub local: Vec<String>,
    /// The recap mail.
    pub mail: MailSummary,
    /// The Mattermost posts of this run.
    pub mattermost: Vec<Value>,
}

/// Runs the nightly backup on a night whose dump is stale: nothing is archived or shipped,
/// the pipeline still ends well, and the recap warns.
pub fn run_stale(lab: &Lab) -> anyhow::Result<StaleNightSummary> {
    let zip = lab.dir("samples/stale")?.join("dump.zip");
    sample::dump_zip(&zip, "dump.sql", 1_000, 2)?;
    lab.https.set_default(Reply::file(&zip)?);
    let output = lab.sshd.sftp(
        SshAccount::Shell,
        &format!("-mkdir {}/{REMOTE_DIR}\n", lab.sshd.remote_dir(SshAccount::Shell)),
    )?;
    if !output.status.success() {
        bail!("creating {REMOTE_DIR} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let before = names_in(&remote_dir(lab))?;
    let dumps = lab.dir("var/backups/stale-night")?;
    let pipeline = pipeline(lab, &dumps, &lab.work().join("runs/backup-stale.log"))?;
    let mails_before = lab.smtp.messages()?.len();
    let mattermost_before = lab.api_requests(MATTERMOST_PATH).len();
    let run = lab.shell.run_ok("nightly-backup-stale", &pipeline, RUN_TIMEOUT)?;
    let mails = lab.smtp.wait_for_messages(mails_before + 1, Duration::from_secs(10))?;
    Ok(StaleNightSummary {
        records: run.records()?,
        before,
        after: names_in(&remote_dir(lab))?,
        local: names_in(&dumps)?,
        mail: MailSummary::from(mails.last().context("no recap mail")?),
        mattermost: posts(lab, mattermost_before)?,
        run,
    })
}

impl StaleNightSummary {
    /// What differs from the promise: nothing new on the server, and a recap that warns.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.after != self.before || !self.local.is_empty() {
            problems.push(format!("files were made or shipped: {:?} {:?}", self.local, self.after));
        }
        if !self.mail.subject.contains("warning") {
            problems.push(format!("the recap does not warn: {}", self.mail.subject));
        }
        if self.mattermost.len() != 1 {
            problems.push(format!("{} Mattermost posts, expected 1", self.mattermost.len()));
        }
        problems
    }
}

impl fmt::Display for StaleNightSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for record in &self.records {
            writeln!(f, "archive-dump: {}", text(record, "archive.status"))?;
        }
        writeln!(
            f,
            "on the server: {} (unchanged: {})",
            self.after.join(" "),
            self.after == self.before
        )?;
        write!(f, "{}", self.mail)?;
        for post in &self.mattermost {
            let first_line = text(post, "text").lines().next().unwrap_or_default();
            writeln!(f, "mattermost post: {first_line}")?;
        }
        write!(f, "pipeline: {}", self.run.status)
    }
}
