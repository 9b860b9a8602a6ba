//! Workflow 1, video uploads: a user uploads a video with the real `sftp` client into their
//! chrooted SFTP folder; `watch-uploads | convert-video | notify` converts it to FLV and mails
//! the uploader with the thumbnail. A broken upload mails the admin, saying why.

use std::fmt;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};
use opsline_testkit::sshd::SshAccount;
use serde_json::{Value, json};

use crate::lab::{Lab, RUN_TIMEOUT};
use crate::sample;
use crate::shell::{Pipeline, Run};
use crate::summary::{MailSummary, file_sha256};
use crate::workflows::text;

/// The pipeline, as a site runs it (under `watch-uploads@.service`).
pub const COMMAND: &str = "watch-uploads --users \"$USERS\" --sftp-log \"$SFTP_LOG\" --settle 1s \"$UPLOADS\" \
| convert-video --to flv \
| notify --smtp \"$SMTP_URL\" --from 'Videos <videos@example.org>' --to-field user.email --attach-field video.thumbnail --when 'not error' \
| notify --smtp \"$SMTP_URL\" --from 'Videos <videos@example.org>' --to admin@example.org --when error";

/// Where failures go.
pub const ADMIN_EMAIL: &str = "admin@example.org";

/// The uploader's address in the users file.
pub const UPLOADER_EMAIL: &str = "jamie@example.org";

/// The good upload's name on the server.
pub const GOOD_NAME: &str = "holiday.mp4";

/// The broken (truncated) upload's name on the server.
pub const BROKEN_NAME: &str = "broken.mov";

/// How long the mails may take: settle time, conversion, delivery.
const MAIL_TIMEOUT: Duration = Duration::from_secs(90);

/// What arrived.
#[derive(Debug)]
pub struct VideoSummary {
    /// The pipeline, stopped by SIGTERM to watch-uploads after the mails arrived.
    pub run: Run,
    /// The SFTP account the videos were uploaded as.
    pub account: String,
    /// The mails received, in arrival order.
    pub mails: Vec<MailSummary>,
    /// notify's output records.
    pub records: Vec<Value>,
    /// The converted file of the good upload.
    pub converted: PathBuf,
    /// Its container as ffprobe names it.
    pub converted_format: String,
    /// Its size.
    pub converted_bytes: u64,
    /// The SHA-256 of the thumbnail beside it.
    pub thumbnail_sha256: String,
}

/// Runs the workflow.
pub fn run(lab: &Lab) -> anyhow::Result<VideoSummary> {
    let samples = lab.dir("samples")?;
    let good = samples.join(GOOD_NAME);
    sample::video(&good)?;
    let broken = samples.join(BROKEN_NAME);
    sample::truncated_copy(&good, &broken, 4096)?;
    let users = write_users(lab)?;
    let uploads = lab.sshd.upload_dir(SshAccount::Jail);

    let pipeline = Pipeline::new(COMMAND)
        .var("USERS", &users)
        .var("SFTP_LOG", lab.sshd.sftp_log_path())
        .var("UPLOADS", &uploads)
        .var("SMTP_URL", lab.smtp_url());
    let background = lab.shell.spawn("video-uploads", &pipeline)?;

    let remote = lab.sshd.remote_dir(SshAccount::Jail);
    let batch = format!(
        "put {} {remote}/{GOOD_NAME}\nput {} {remote}/{BROKEN_NAME}\n",
        good.display(),
        broken.display()
    );
    let upload = lab.sshd.sftp(SshAccount::Jail, &batch)?;
    if !upload.status.success() {
        bail!("sftp upload failed: {}", String::from_utf8_lossy(&upload.stderr));
    }
    let mails = lab.smtp.wait_for_messages(2, MAIL_TIMEOUT).with_context(|| {
        format!("waiting for the uploader's mails; pipeline log:\n{}", background.stderr())
    })?;
    background.terminate("watch-uploads")?;
    let run = background.wait(RUN_TIMEOUT)?;
    let records = run.records()?;

    let converted = uploads.join(GOOD_NAME).with_extension("flv");
    let thumbnail = records
        .iter()
        .map(|r| text(r, "video.thumbnail"))
        .find(|t| !t.is_empty())
        .map(PathBuf::from)
        .with_context(|| format!("no record names a thumbnail: {records:?}\n{}", run.stderr))?;
    Ok(VideoSummary {
        account: SshAccount::Jail.name().to_owned(),
        mails: mails.iter().map(MailSummary::from).collect(),
        converted_format: container_of(&converted)?,
        converted_bytes: fs::metadata(&converted)
            .with_context(|| format!("{} is missing", converted.display()))?
            .len(),
        thumbnail_sha256: file_sha256(&thumbnail)?,
        converted,
        records,
        run,
    })
}

/// The users file: the SFTP account, who it is, and its chroot (the SFTP log names paths
/// inside it).
fn write_users(lab: &Lab) -> anyhow::Result<PathBuf> {
    let path = lab.dir("etc")?.join("users.json");
    let users = json!([{
        "login": SshAccount::Jail.name(),
        "name": "Jamie Uploader",
        "email": UPLOADER_EMAIL,
        "chroot": lab.sshd.jail_root(),
    }]);
    fs::write(&path, serde_json::to_string_pretty(&users)?)?;
    Ok(path)
}

/// The container of a media file, as ffprobe names it (`flv`).
fn container_of(path: &std::path::Path) -> anyhow::Result<String> {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=format_name", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .context("running ffprobe")?;
    if !output.status.success() {
        bail!("ffprobe {}: {}", path.display(), String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

impl VideoSummary {
    /// What differs from the workflow's promise: the uploader got a mail about the converted
    /// upload with its thumbnail, the admin one about the broken upload, and the FLV exists.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.mails.len() != 2 {
            problems.push(format!("{} mails arrived, expected 2", self.mails.len()));
        }
        for mail in &self.mails {
            let expected =
                if mail.subject.contains(BROKEN_NAME) { ADMIN_EMAIL } else { UPLOADER_EMAIL };
            if mail.recipients != [expected] {
                problems.push(format!(
                    "the mail {:?} went to {:?}, not {expected}",
                    mail.subject, mail.recipients
                ));
            }
        }
        let thumbnail_attached = self.mails.iter().any(|m| {
            m.subject.contains(GOOD_NAME)
                && m.attachments.iter().any(|a| a.sha256 == self.thumbnail_sha256)
        });
        if !thumbnail_attached {
            problems.push("no mail about the converted video carries its thumbnail".to_owned());
        }
        if self.converted_format != "flv" {
            problems.push(format!("the converted file is {:?}, not flv", self.converted_format));
        }
        // The broken upload is a failed record: convert-video exits 1, and pipefail says so.
        if self.run.status.code() != Some(1) {
            problems.push(format!("the pipeline ended with {}, expected 1", self.run.status));
        }
        problems
    }
}

impl fmt::Display for VideoSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "uploaded with sftp as {}: {GOOD_NAME}, {BROKEN_NAME} (truncated)",
            self.account
        )?;
        writeln!(
            f,
            "converted: {} ({}, {} bytes)",
            self.converted.display(),
            self.converted_format,
            self.converted_bytes
        )?;
        for mail in &self.mails {
            write!(f, "{mail}")?;
        }
        for record in &self.records {
            if let Some(error) = record.get("error") {
                writeln!(
                    f,
                    "failed upload reported: {}: {}",
                    text(record, "path"),
                    error["message"]
                )?;
            }
        }
        write!(f, "pipeline ended after SIGTERM to watch-uploads: {}", self.run.status)
    }
}
