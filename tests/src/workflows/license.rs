//! Workflow 5, license usage: the daily report of who used OriginLab licenses how long, as a
//! spreadsheet, and who holds licenses now.

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use chrono::NaiveDate;
use opsline_testkit::net::wait_until;
use serde_json::Value;

use crate::lab::{Lab, RUN_TIMEOUT};
use crate::sample;
use crate::shell::{Background, Pipeline, Run};
use crate::workflows::text;

/// The daily report, as the 06:00 timer runs it.
pub const REPORT_COMMAND: &str =
    "origin-tokens report --by user --per day \"$LICENSE_LOG\" --xlsx \"$XLSX\" --format json";

/// Who is connected now.
pub const CONNECTED_COMMAND: &str = "origin-tokens connected \"$LICENSE_LOG\" --format json";

/// Live: the token events of the log as lines come in, through a rotation and a restart.
pub const FOLLOW_COMMAND: &str = "log-tail --follow \"$LICENSE_LOG\" --state \"$TAIL_STATE\" \
| origin-tokens events --tz UTC --state \"$TOKENS_STATE\" --format json";

/// The same events from the whole log at once.
pub const EVENTS_COMMAND: &str = "origin-tokens events --tz UTC \"$LICENSE_LOG\" --format json";

/// How long the live pipeline may take to pass a line on.
const FOLLOW_TIMEOUT: Duration = Duration::from_secs(30);

/// The first day of the sample log (a day far from daylight saving changes).
pub fn first_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 16).unwrap_or_default()
}

/// One row of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportRow {
    /// The period (the day).
    pub period: String,
    /// The user.
    pub user: String,
    /// Connection time in seconds.
    pub seconds: i64,
    /// Denials.
    pub denials: i64,
}

/// One user holding licenses at the end of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The user.
    pub user: String,
    /// The client host.
    pub host: String,
    /// The feature.
    pub feature: String,
    /// Since when (as the tool writes it).
    pub since: String,
    /// For how long, up to the end of the log.
    pub seconds: i64,
}

/// What came out.
#[derive(Debug)]
pub struct LicenseSummary {
    /// The report run.
    pub report: Run,
    /// Its rows.
    pub rows: Vec<ReportRow>,
    /// The spreadsheet.
    pub xlsx: PathBuf,
    /// Its size.
    pub xlsx_bytes: u64,
    /// The connected run.
    pub connected: Run,
    /// Who holds licenses at the end of the log.
    pub holders: Vec<Holder>,
}

/// Runs the workflow.
pub fn run(lab: &Lab) -> anyhow::Result<LicenseSummary> {
    let log = lab.dir("usr/local/flexlm")?.join("orglabdebug.log");
    sample::license_log(&log, first_day())?;
    let xlsx = lab.dir("srv/reports")?.join("license-usage.xlsx");
    let report = Pipeline::new(REPORT_COMMAND).var("LICENSE_LOG", &log).var("XLSX", &xlsx);
    let report = lab.shell.run_ok("license-report", &report, RUN_TIMEOUT)?;
    let connected = Pipeline::new(CONNECTED_COMMAND).var("LICENSE_LOG", &log);
    let connected = lab.shell.run_ok("license-connected", &connected, RUN_TIMEOUT)?;
    Ok(LicenseSummary {
        rows: report.records()?.iter().map(report_row).collect(),
        xlsx_bytes: fs::metadata(&xlsx)
            .with_context(|| format!("{} is missing", xlsx.display()))?
            .len(),
        xlsx,
        holders: connected.records()?.iter().map(holder).collect(),
        report,
        connected,
    })
}

/// What the live pipeline gave, beside what the whole log gives at once.
#[derive(Debug)]
pub struct FollowSummary {
    /// The two runs of the live pipeline (stopped with SIGTERM to log-tail).
    pub runs: Vec<Run>,
    /// The token events of both runs, without their `ts`.
    pub live: Vec<Value>,
    /// The token events of the whole log read at once, without their `ts`.
    pub batch: Vec<Value>,
}

/// Runs `log-tail --follow | origin-tokens events` on the sample log as it is written: the
/// first lines, then a rotation (rename and create) between the two days, then a stop, more
/// lines, and a second run that takes up from both tools' state.
pub fn run_follow(lab: &Lab) -> anyhow::Result<FollowSummary> {
    let dir = lab.dir("usr/local/flexlm-live")?;
    let log = dir.join("orglabdebug.log");
    let text = sample::license_log_text(first_day());
    let lines: Vec<&str> = text.lines().collect();
    let state = lab.dir("var/lib/license-live")?;
    let pipeline = Pipeline::new(FOLLOW_COMMAND)
        .var("LICENSE_LOG", &log)
        .var("TAIL_STATE", state.join("log-tail.state"))
        .var("TOKENS_STATE", state.join("origin-tokens.state"));
    append(&log, &lines[..11])?;
    let first = lab.shell.spawn("license-follow-1", &pipeline)?;
    wait_for_tokens(&first, 5)?;
    append(&log, &lines[11..14])?;
    sample::rotate(&log)?;
    append(&log, &lines[14..17])?;
    wait_for_tokens(&first, 10)?;
    first.terminate("log-tail")?;
    let first = first.wait(RUN_TIMEOUT)?;
    first.ensure_success()?;
    append(&log, &lines[17..])?;
    let second = lab.shell.spawn("license-follow-2", &pipeline)?;
    wait_for_tokens(&second, 3)?;
    second.terminate("log-tail")?;
    let second = second.wait(RUN_TIMEOUT)?;
    second.ensure_success()?;
    let whole = dir.join("whole.log");
    fs::write(&whole, &text)?;
    let batch = Pipeline::new(EVENTS_COMMAND).var("LICENSE_LOG", &whole);
    let batch = tokens(&lab.shell.run_ok("license-events", &batch, RUN_TIMEOUT)?.records()?);
    let mut live = tokens(&first.records()?);
    live.extend(tokens(&second.records()?));
    Ok(FollowSummary { runs: vec![first, second], live, batch })
}

fn append(log: &std::path::Path, lines: &[&str]) -> anyhow::Result<()> {
    let mut file = fs::OpenOptions::new().create(true).append(true).open(log)?;
    for line in lines {
        writeln!(file, "{line}")?;
    }
    Ok(())
}

/// Waits until the running pipeline has printed `count` token events.
fn wait_for_tokens(service: &Background, count: usize) -> anyhow::Result<()> {
    let printed = || service.stdout().lines().filter(|l| l.contains(r#""kind":"token""#)).count();
    wait_until(FOLLOW_TIMEOUT, || printed() >= count).with_context(|| {
        format!("{} of {count} token events came; the log:\n{}", printed(), service.stderr())
    })
}

/// The token events, without the time they were printed.
fn tokens(records: &[Value]) -> Vec<Value> {
    records
        .iter()
        .filter(|r| r["kind"] == "token")
        .map(|r| {
            let mut r = r.clone();
            if let Some(fields) = r.as_object_mut() {
                fields.remove("ts");
            }
            r
        })
        .collect()
}

impl FollowSummary {
    /// What differs from the promise: every token event once, as the whole log gives it.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.live != self.batch {
            problems.push(format!(
                "live events differ from the whole log's:\nlive:  {:#?}\nwhole: {:#?}",
                self.live, self.batch
            ));
        }
        if self.batch.len() != 13 {
            problems
                .push(format!("{} token events in the sample log, expected 13", self.batch.len()));
        }
        problems
    }
}

fn report_row(record: &Value) -> ReportRow {
    ReportRow {
        period: text(record, "period").to_owned(),
        user: text(record, "user").to_owned(),
        seconds: record["connected_seconds"].as_i64().unwrap_or(-1),
        denials: record["denials"].as_i64().unwrap_or(-1),
    }
}

fn holder(record: &Value) -> Holder {
    Holder {
        user: text(record, "user").to_owned(),
        host: text(record, "host").to_owned(),
        feature: text(record, "feature").to_owned(),
        since: text(record, "since").to_owned(),
        seconds: record["seconds"].as_i64().unwrap_or(-1),
    }
}

impl LicenseSummary {
    /// What differs from the workflow's promise: a row per user and day of the sample log, a
    /// spreadsheet, and the users still connected.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.rows.len() != 8 || self.rows.iter().any(|row| row.seconds <= 0) {
            problems.push(format!("unexpected report rows: {:?}", self.rows));
        }
        if !fs::read(&self.xlsx).is_ok_and(|bytes| bytes.starts_with(b"PK\x03\x04")) {
            problems.push(format!("{} is not a spreadsheet", self.xlsx.display()));
        }
        if self.holders.len() != 2 {
            problems.push(format!("{} users connected at the end, expected 2", self.holders.len()));
        }
        problems
    }
}

/// Seconds as `7h 05m 10s`.
fn duration(seconds: i64) -> String {
    format!("{}h {:02}m {:02}s", seconds / 3600, seconds % 3600 / 60, seconds % 60)
}

impl fmt::Display for LicenseSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<12} {:<12} {:>12} {:>8}", "day", "user", "connected", "denials")?;
        for row in &self.rows {
            writeln!(
                f,
                "{:<12} {:<12} {:>12} {:>8}",
                row.period,
                row.user,
                duration(row.seconds),
                row.denials
            )?;
        }
        writeln!(f, "spreadsheet: {} ({} bytes)", self.xlsx.display(), self.xlsx_bytes)?;
        writeln!(f, "connected at the end of the log:")?;
        for h in &self.holders {
            writeln!(
                f,
                "    {} on {} ({}) since {} ({})",
                h.user,
                h.host,
                h.feature,
                h.since,
                duration(h.seconds)
            )?;
        }
        Ok(())
    }
}
