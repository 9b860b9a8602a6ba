//! Timestamps as the contract writes them: RFC 3339 with the local offset.

use chrono::{DateTime, Local, SecondsFormat, TimeZone};

/// The current time, RFC 3339 with the local offset and millisecond precision.
pub fn now_rfc3339() -> String {
    rfc3339(&Local::now())
}

/// Any zoned time, RFC 3339 with millisecond precision.
pub fn rfc3339<Tz: TimeZone>(time: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    time.to_rfc3339_opts(SecondsFormat::Millis, false)
}

/// A file modification time as RFC 3339 in local time.
pub fn system_time_rfc3339(time: std::time::SystemTime) -> String {
    rfc3339(&DateTime::<Local>::from(time))
}
