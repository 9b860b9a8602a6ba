//! The five workflows, each run for real on a [`crate::Lab`].

pub mod backup;
pub mod license;
pub mod log_archive;
pub mod ssh_alarm;
pub mod video;

use serde_json::Value;

/// The records of `kind` among `records`.
pub fn of_kind<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["kind"] == kind).collect()
}

/// A record's string field at a dotted path (`sftp.remote`), or "".
pub fn text<'a>(record: &'a Value, path: &str) -> &'a str {
    path.split('.').fold(record, |value, key| &value[key]).as_str().unwrap_or_default()
}
