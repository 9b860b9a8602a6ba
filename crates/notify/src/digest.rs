//! The digest: records collected into one message (the nightly recap). Counts are kept for
//! every record; only the first few of each list are kept whole, so memory stays flat however
//! long the input.

use std::collections::BTreeMap;

use minijinja::value::Value as TemplateValue;
use opsline::Record;
use serde::Serialize;
use serde_json::Value;

/// How a record went, for counting and ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Some tool failed on it.
    Error,
    /// It went through but something deserves a look (a stale dump, a warning field).
    Warning,
    /// Nothing to report.
    Ok,
}

impl Status {
    /// The status of a record: `error` if it carries an error; `warning` if it has a
    /// `warning`/`warnings` field or a tool's `status` of `stale`/`warning`; else `ok`.
    pub fn of(record: &Record) -> Status {
        if record.has_error() {
            Status::Error
        } else if warning_in(record.as_map()).is_some() {
            Status::Warning
        } else {
            Status::Ok
        }
    }

    /// `ok`, `warning` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Error => "error",
            Status::Warning => "warning",
            Status::Ok => "ok",
        }
    }
}

const WARNING_STATUSES: [&str; 3] = ["stale", "warning", "warn"];

fn warning_in(map: &serde_json::Map<String, Value>) -> Option<String> {
    if let Some(text) = map.get("warning").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        return Some(text.to_owned());
    }
    if let Some(list) = map.get("warnings").and_then(Value::as_array).filter(|l| !l.is_empty()) {
        return Some(list.iter().map(plain).collect::<Vec<_>>().join("; "));
    }
    map.iter().find_map(|(key, value)| {
        let status = value.get("status")?.as_str()?;
        WARNING_STATUSES.contains(&status).then(|| format!("{key} {status}"))
    })
}

fn plain(value: &Value) -> String {
    value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string())
}

/// The warning of a record seen from a template, for the `summary` filter.
pub fn warning_text(value: &TemplateValue) -> Option<String> {
    let json: Value = serde_json::to_value(value).ok()?;
    warning_in(json.as_object()?)
}

/// Records collected since the last digest was sent.
#[derive(Debug)]
pub struct Digest {
    limit: usize,
    count: u64,
    kinds: BTreeMap<String, u64>,
    statuses: BTreeMap<&'static str, u64>,
    error_count: u64,
    warning_count: u64,
    errors: Vec<Value>,
    warnings: Vec<Value>,
    records: Vec<Value>,
    first_ts: Option<String>,
    last_ts: Option<String>,
}

/// What a digest template sees.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// `OK`, `N warnings`, `N errors` or `N errors, M warnings`.
    pub summary: String,
    /// Records in the digest.
    pub count: u64,
    /// `[kind, count]` pairs, most frequent first.
    pub kinds: Vec<(String, u64)>,
    /// `[status, count]` pairs: error, warning, ok.
    pub statuses: Vec<(&'static str, u64)>,
    /// Records with an error.
    pub error_count: u64,
    /// Records with a warning.
    pub warning_count: u64,
    /// The first error records, whole.
    pub errors: Vec<Value>,
    /// The first warning records, whole.
    pub warnings: Vec<Value>,
    /// The first records of any status, whole.
    pub records: Vec<Value>,
    /// `ts` of the first record.
    pub first_ts: Option<String>,
    /// `ts` of the last record.
    pub last_ts: Option<String>,
}

impl Digest {
    /// An empty digest that keeps up to `limit` whole records per list.
    pub fn new(limit: usize) -> Self {
        Digest {
            limit,
            count: 0,
            kinds: BTreeMap::new(),
            statuses: BTreeMap::new(),
            error_count: 0,
            warning_count: 0,
            errors: Vec::new(),
            warnings: Vec::new(),
            records: Vec::new(),
            first_ts: None,
            last_ts: None,
        }
    }

    /// True when no record came since the last send.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Counts a record, keeping it whole if its lists have room.
    pub fn add(&mut self, record: &Record) {
        self.count += 1;
        let kind = record.kind().unwrap_or("record");
        match self.kinds.get_mut(kind) {
            Some(n) => *n += 1,
            None => {
                self.kinds.insert(kind.to_owned(), 1);
            }
        }
        let status = Status::of(record);
        *self.statuses.entry(status.as_str()).or_default() += 1;
        let keep = |list: &mut Vec<Value>, limit: usize| {
            if list.len() < limit {
                list.push(Value::Object(record.as_map().clone()));
            }
        };
        match status {
            Status::Error => {
                self.error_count += 1;
                keep(&mut self.errors, self.limit);
            }
            Status::Warning => {
                self.warning_count += 1;
                keep(&mut self.warnings, self.limit);
            }
            Status::Ok => {}
        }
        keep(&mut self.records, self.limit);
        if let Some(ts) = record.get("ts").and_then(Value::as_str) {
            if self.first_ts.is_none() {
                self.first_ts = Some(ts.to_owned());
            }
            self.last_ts = Some(ts.to_owned());
        }
    }

    /// The summary of what was collected, leaving the digest empty for the next period.
    pub fn take(&mut self) -> Summary {
        let taken = std::mem::replace(self, Digest::new(self.limit));
        let mut kinds: Vec<(String, u64)> = taken.kinds.into_iter().collect();
        kinds.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let statuses = ["error", "warning", "ok"]
            .into_iter()
            .filter_map(|s| taken.statuses.get(s).map(|n| (s, *n)))
            .collect();
        Summary {
            summary: summary_text(taken.error_count, taken.warning_count),
            count: taken.count,
            kinds,
            statuses,
            error_count: taken.error_count,
            warning_count: taken.warning_count,
            errors: taken.errors,
            warnings: taken.warnings,
            records: taken.records,
            first_ts: taken.first_ts,
            last_ts: taken.last_ts,
        }
    }
}

fn summary_text(errors: u64, warnings: u64) -> String {
    let plural = |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    match (errors, warnings) {
        (0, 0) => "OK".to_owned(),
        (0, w) => plural(w, "warning"),
        (e, 0) => plural(e, "error"),
        (e, w) => format!("{}, {}", plural(e, "error"), plural(w, "warning")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(value: Value) -> Record {
        Record::from_map(value.as_object().unwrap().clone())
    }

    #[test]
    fn statuses_come_from_errors_and_warnings() {
        assert_eq!(Status::of(&record(json!({"kind": "archive"}))), Status::Ok);
        assert_eq!(
            Status::of(&record(json!({"kind": "archive", "archive": {"status": "stale"}}))),
            Status::Warning
        );
        assert_eq!(Status::of(&record(json!({"warnings": ["disk 91% full"]}))), Status::Warning);
        assert_eq!(
            Status::of(&record(json!({"error": {"tool": "x", "message": "m"}}))),
            Status::Error
        );
    }

    #[test]
    fn counts_everything_and_keeps_a_few() {
        let mut digest = Digest::new(2);
        for i in 0..5 {
            digest.add(&record(json!({"kind": "shipped", "ts": format!("t{i}")})));
        }
        digest.add(&record(json!({"kind": "archive", "archive": {"status": "stale"}})));
        for _ in 0..3 {
            digest.add(&record(json!({"kind": "archive", "error": {"tool": "a", "message": "m"}})));
        }
        let summary = digest.take();
        assert_eq!(summary.count, 9);
        assert_eq!(summary.summary, "3 errors, 1 warning");
        assert_eq!(summary.kinds, [("shipped".to_owned(), 5), ("archive".to_owned(), 4)]);
        assert_eq!(summary.statuses, [("error", 3), ("warning", 1), ("ok", 5)]);
        assert_eq!(
            (summary.errors.len(), summary.warnings.len(), summary.records.len()),
            (2, 1, 2)
        );
        assert_eq!(
            (summary.first_ts.as_deref(), summary.last_ts.as_deref()),
            (Some("t0"), Some("t4"))
        );
        assert!(digest.is_empty(), "take leaves an empty digest");
        assert_eq!(digest.take().summary, "OK");
    }
}
