//! Workflow 5, license usage: the daily report of who used OriginLab licenses how long, as a
//! spreadsheet, and who holds licenses now.

use std::fmt;
use std::fs;
use std::path::PathBuf;

use anyhow::Context as _;
use chrono::NaiveDate;
use serde_json::Value;

use crate::lab::{Lab, RUN_TIMEOUT};
use crate::sample;
use crate::shell::{Pipeline, Run};
use crate::workflows::text;

/// The daily report, as the 06:00 timer runs it.
pub const REPORT_COMMAND: &str =
    "origin-tokens report --by user --per day \"$LICENSE_LOG\" --xlsx \"$XLSX\" --format json";

/// Who is connected now.
pub const CONNECTED_COMMAND: &str = "origin-tokens connected \"$LICENSE_LOG\" --format json";

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
