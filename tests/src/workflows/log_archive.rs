//! Workflow 3, log archive: a node mirrors its application logs into the central SFTP server
//! (`ship-sftp mirror`, one pass per run as cron or the service's timer makes them); lines
//! appended since are shipped again on the next pass; `archive-web search` finds the files.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use opsline_testkit::net::wait_until;
use opsline_testkit::sshd::SshAccount;
use serde_json::Value;

use crate::lab::{Lab, RUN_TIMEOUT};
use crate::sample;
use crate::shell::{Pipeline, Run};
use crate::workflows::{of_kind, text};

/// One pass of the agent.
pub const MIRROR_COMMAND: &str = "ship-sftp mirror \"$APP_LOGS\" \"$ARCHIVE_TARGET\" --glob '*.log' --agent-id node1 \
--known-hosts \"$KNOWN_HOSTS\" --identity \"$IDENTITY\" --state \"$STATE\"";

/// The agent as `log-archive-agent.service` runs it: a pass every `--every` seconds until
/// SIGTERM (the demo's interval is short so that it does not wait a minute).
pub const SERVICE_COMMAND: &str = "ship-sftp mirror \"$APP_LOGS\" \"$ARCHIVE_TARGET\" --glob '*.log' --agent-id node2 --every 1 \
--known-hosts \"$KNOWN_HOSTS\" --identity \"$IDENTITY\" --state \"$STATE\"";

/// The search on the central server.
pub const SEARCH_COMMAND: &str =
    "archive-web --root \"$ARCHIVE_ROOT\" search --agent node1 --name '*.log'";

/// The folder on the central server.
pub const REMOTE_DIR: &str = "log-archive";

/// The logs of the node, relative to its log folder (`skip.txt` is not a log).
pub const LOG_FILES: &[&str] = &["app.log", "worker/jobs.log"];

/// The lines appended to `app.log` between the two passes.
pub const APPENDED: &[&str] =
    &["12:00:01 INFO order 1001 paid", "12:00:02 WARN order 1002 retried"];

/// What arrived.
#[derive(Debug)]
pub struct LogArchiveSummary {
    /// The first pass.
    pub first: Run,
    /// The files the first pass shipped (local paths relative to the log folder).
    pub first_shipped: Vec<String>,
    /// The second pass, after lines were appended to `app.log`.
    pub second: Run,
    /// The files the second pass shipped.
    pub second_shipped: Vec<String>,
    /// `app.log` as it arrived on the central server after the second pass.
    pub central_app_log: String,
    /// The files on the central server (relative to the agent's folder).
    pub central_files: Vec<String>,
    /// The search.
    pub search: Run,
    /// Its records.
    pub found: Vec<Value>,
}

/// A node's log folder with its logs, written a minute ago, and a file that is not a log.
fn node_logs(lab: &Lab, node: &str) -> anyhow::Result<PathBuf> {
    let logs = lab.dir(&format!("{node}/var/log/app"))?;
    for rel in LOG_FILES {
        let path = logs.join(rel);
        fs::create_dir_all(path.parent().unwrap_or(&logs))?;
        sample::append_lines(&path, &[format!("11:59:00 INFO {rel} started")])?;
        settle(&path)?;
    }
    fs::write(logs.join("skip.txt"), "not a log\n")?;
    Ok(logs)
}

fn mirror(lab: &Lab, command: &str, logs: &Path, node: &str) -> anyhow::Result<Pipeline> {
    Ok(Pipeline::new(command)
        .var("APP_LOGS", logs)
        .var("ARCHIVE_TARGET", lab.sftp_url(SshAccount::Shell, REMOTE_DIR))
        .var("KNOWN_HOSTS", lab.known_hosts()?)
        .var("IDENTITY", lab.sshd.client_key_path())
        .var("STATE", lab.work().join(format!("state/{node}-mirror.json"))))
}

fn archive_root(lab: &Lab) -> PathBuf {
    lab.sshd.upload_dir(SshAccount::Shell).join(REMOTE_DIR)
}

/// Runs the workflow: two passes from cron, lines appended between them, then a search.
pub fn run(lab: &Lab) -> anyhow::Result<LogArchiveSummary> {
    let logs = node_logs(lab, "node1")?;
    let archive_root = archive_root(lab);
    let mirror = mirror(lab, MIRROR_COMMAND, &logs, "node1")?;
    let first = lab.shell.run_ok("log-archive-pass1", &mirror, RUN_TIMEOUT)?;

    let appended: Vec<String> = APPENDED.iter().map(|line| (*line).to_owned()).collect();
    sample::append_lines(&logs.join("app.log"), &appended)?;
    settle(&logs.join("app.log"))?;
    let second = lab.shell.run_ok("log-archive-pass2", &mirror, RUN_TIMEOUT)?;

    let search = Pipeline::new(SEARCH_COMMAND).var("ARCHIVE_ROOT", &archive_root);
    let search = lab.shell.run_ok("archive-search", &search, RUN_TIMEOUT)?;
    let agent_dir = archive_root.join("node1");
    Ok(LogArchiveSummary {
        first_shipped: shipped(&first, &logs)?,
        second_shipped: shipped(&second, &logs)?,
        central_app_log: fs::read_to_string(agent_dir.join("app.log"))
            .with_context(|| format!("reading {}", agent_dir.join("app.log").display()))?,
        central_files: files_under(&agent_dir)?,
        found: search.records()?,
        first,
        second,
        search,
    })
}

/// What the agent running as a service did.
#[derive(Debug)]
pub struct ServiceSummary {
    /// The service's run, stopped with SIGTERM.
    pub run: Run,
    /// The files it shipped, in order (relative to the log folder).
    pub shipped: Vec<String>,
    /// `app.log` as it arrived on the central server.
    pub central_app_log: String,
}

/// How long the service may take to ship a change.
const SERVICE_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the agent as a service: it ships the logs, then the lines appended while it runs, and
/// stops cleanly on SIGTERM.
pub fn run_service(lab: &Lab) -> anyhow::Result<ServiceSummary> {
    let logs = node_logs(lab, "node2")?;
    let central = archive_root(lab).join("node2/app.log");
    let service =
        lab.shell.spawn("log-archive-agent", &mirror(lab, SERVICE_COMMAND, &logs, "node2")?)?;
    let arrived = |needle: &str| {
        wait_until(SERVICE_TIMEOUT, || {
            fs::read_to_string(&central).is_ok_and(|t| t.contains(needle))
        })
        .with_context(|| {
            format!(
                "{needle:?} did not reach {}; the agent's log:\n{}",
                central.display(),
                service.stderr()
            )
        })
    };
    arrived("app.log started")?;
    let appended: Vec<String> = APPENDED.iter().map(|line| (*line).to_owned()).collect();
    sample::append_lines(&logs.join("app.log"), &appended)?;
    settle(&logs.join("app.log"))?;
    arrived(APPENDED[APPENDED.len() - 1])?;
    service.terminate("ship-sftp")?;
    let run = service.wait(RUN_TIMEOUT)?;
    run.ensure_success()?;
    let records = run.records()?;
    Ok(ServiceSummary {
        shipped: of_kind(&records, "shipped")
            .iter()
            .map(|r| relative(text(r, "path"), &logs))
            .collect(),
        central_app_log: fs::read_to_string(&central)?,
        run,
    })
}

impl ServiceSummary {
    /// What differs from the promise: each log shipped, the grown one again, nothing else.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut shipped = self.shipped.clone();
        shipped.sort();
        if shipped != ["app.log", "app.log", "worker/jobs.log"] {
            problems.push(format!("the service shipped {:?}", self.shipped));
        }
        if !APPENDED.iter().all(|line| self.central_app_log.contains(line)) {
            problems.push("the appended lines did not reach the central server".to_owned());
        }
        problems
    }
}

impl fmt::Display for ServiceSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "the agent shipped, in order: {}", self.shipped.join(", "))?;
        let appended = APPENDED.iter().all(|line| self.central_app_log.contains(line));
        writeln!(
            f,
            "node2/app.log holds the appended lines: {}",
            if appended { "yes" } else { "NO" }
        )?;
        write!(f, "stopped on SIGTERM: {}", self.run.status)
    }
}

fn relative(path: &str, base: &Path) -> String {
    let path = Path::new(path);
    path.strip_prefix(base).unwrap_or(path).display().to_string()
}

/// Dates a log's last write a minute back, as if the pass came a minute later: the mirror
/// leaves files alone while they are still being written (--min-age).
fn settle(log: &Path) -> anyhow::Result<()> {
    let minute_ago = SystemTime::now() - Duration::from_secs(60);
    fs::File::options().append(true).open(log)?.set_modified(minute_ago)?;
    Ok(())
}

/// The files below `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut found = Vec::new();
    let mut pending: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in fs::read_dir(&folder)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                found.push(rel.display().to_string());
            }
        }
    }
    found.sort();
    Ok(found)
}

fn shipped(run: &Run, logs: &Path) -> anyhow::Result<Vec<String>> {
    let records = run.records()?;
    let mut paths: Vec<String> =
        of_kind(&records, "shipped").iter().map(|r| relative(text(r, "path"), logs)).collect();
    paths.sort();
    Ok(paths)
}

impl LogArchiveSummary {
    /// What differs from the workflow's promise: every log arrived, a grown log was sent
    /// again with its new lines, and the search finds the files.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.first_shipped != LOG_FILES {
            problems.push(format!("the first pass shipped {:?}", self.first_shipped));
        }
        if self.second_shipped != ["app.log"] {
            problems.push(format!("the second pass shipped {:?}", self.second_shipped));
        }
        if !APPENDED.iter().all(|line| self.central_app_log.contains(line)) {
            problems.push("the appended lines did not reach the central server".to_owned());
        }
        if self.found.len() != LOG_FILES.len() {
            problems.push(format!("the search found {} files", self.found.len()));
        }
        problems
    }
}

impl fmt::Display for LogArchiveSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "first pass shipped:  {}", self.first_shipped.join(", "))?;
        writeln!(f, "second pass shipped: {} (lines appended)", self.second_shipped.join(", "))?;
        writeln!(f, "central server, node1/: {}", self.central_files.join(", "))?;
        let appended = APPENDED.iter().all(|line| self.central_app_log.contains(line));
        writeln!(
            f,
            "node1/app.log holds the appended lines: {}",
            if appended { "yes" } else { "NO" }
        )?;
        writeln!(f, "archive-web search --agent node1 --name '*.log':")?;
        for record in &self.found {
            writeln!(f, "    {}", text(record, "path"))?;
        }
        Ok(())
    }
}
