//! The time zone the log's wall-clock times are in (`--tz`), and the conversions between
//! those times, Unix seconds and RFC 3339.

use std::str::FromStr;

use chrono::{
    DateTime, FixedOffset, Local, LocalResult, NaiveDate, NaiveDateTime, Offset, SecondsFormat,
    TimeZone, Utc,
};

/// `local` (the default), `UTC`, a fixed offset such as `+01:00`, or an IANA name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    /// The machine's zone (`TZ` or /etc/localtime).
    Local,
    /// A fixed offset from UTC.
    Fixed(FixedOffset),
    /// A named zone with its daylight-saving rules.
    Named(chrono_tz::Tz),
}

impl FromStr for Zone {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("local") {
            return Ok(Zone::Local);
        }
        if s.eq_ignore_ascii_case("utc") || s == "Z" {
            return Ok(Zone::Fixed(Utc.fix()));
        }
        if let Ok(offset) = FixedOffset::from_str(s) {
            return Ok(Zone::Fixed(offset));
        }
        s.parse::<chrono_tz::Tz>().map(Zone::Named).map_err(|_| {
            format!("unknown time zone {s:?} (use local, UTC, +HH:MM or a name like Europe/Berlin)")
        })
    }
}

/// A wall-clock time that falls in a spring-forward gap is moved past the gap; one that occurs
/// twice (autumn) is taken at its first occurrence.
fn resolve<Tz: TimeZone>(tz: &Tz, naive: NaiveDateTime) -> i64 {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.timestamp(),
        LocalResult::None => resolve(tz, naive + chrono::Duration::hours(1)) - 3600,
    }
}

fn fmt<Tz: TimeZone>(tz: &Tz, epoch: i64) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let utc = DateTime::from_timestamp(epoch, 0).unwrap_or_default();
    utc.with_timezone(tz).to_rfc3339_opts(SecondsFormat::Secs, false)
}

fn local_naive<Tz: TimeZone>(tz: &Tz, epoch: i64) -> NaiveDateTime {
    DateTime::from_timestamp(epoch, 0).unwrap_or_default().with_timezone(tz).naive_local()
}

impl Zone {
    /// Unix seconds of a wall-clock time in this zone.
    pub fn to_epoch(&self, naive: NaiveDateTime) -> i64 {
        match self {
            Zone::Local => resolve(&Local, naive),
            Zone::Fixed(z) => resolve(z, naive),
            Zone::Named(z) => resolve(z, naive),
        }
    }

    /// RFC 3339 with this zone's offset, to the second.
    pub fn format(&self, epoch: i64) -> String {
        match self {
            Zone::Local => fmt(&Local, epoch),
            Zone::Fixed(z) => fmt(z, epoch),
            Zone::Named(z) => fmt(z, epoch),
        }
    }

    /// The wall-clock time of Unix seconds in this zone.
    pub fn naive(&self, epoch: i64) -> NaiveDateTime {
        match self {
            Zone::Local => local_naive(&Local, epoch),
            Zone::Fixed(z) => local_naive(z, epoch),
            Zone::Named(z) => local_naive(z, epoch),
        }
    }

    /// Unix seconds of midnight starting `date`.
    pub fn midnight(&self, date: NaiveDate) -> i64 {
        self.to_epoch(date.and_hms_opt(0, 0, 0).unwrap_or_default())
    }
}

/// Turns (date, seconds of the day) into Unix seconds, with a fast path for days whose UTC
/// offset does not change (every day but two a year): one addition per line.
#[derive(Debug, Clone)]
pub struct DayClock {
    zone: Zone,
    day: Option<(NaiveDate, Option<i64>)>,
}

impl DayClock {
    /// A clock for `zone`.
    pub fn new(zone: Zone) -> Self {
        DayClock { zone, day: None }
    }

    /// Unix seconds of `secs` after midnight of `date`, wall-clock in the zone.
    #[inline]
    pub fn epoch(&mut self, date: NaiveDate, secs: u32) -> i64 {
        let base = match self.day {
            Some((d, base)) if d == date => base,
            _ => {
                let base = self.fixed_base(date);
                self.day = Some((date, base));
                base
            }
        };
        match base {
            Some(base) => base + i64::from(secs),
            None => self.zone.to_epoch(naive(date, secs)),
        }
    }

    /// The Unix seconds of the day's midnight when the offset holds all day.
    fn fixed_base(&self, date: NaiveDate) -> Option<i64> {
        let start = self.zone.midnight(date);
        let end = self.zone.to_epoch(naive(date, 86_399));
        (end - start == 86_399).then_some(start)
    }
}

fn naive(date: NaiveDate, secs: u32) -> NaiveDateTime {
    date.and_hms_opt(secs / 3600, secs / 60 % 60, secs % 60).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dst_days_take_the_slow_path() {
        let zone: Zone = "Europe/Berlin".parse().unwrap();
        let mut clock = DayClock::new(zone);
        let day = NaiveDate::from_ymd_opt(2026, 10, 25).unwrap();
        assert_eq!(zone.format(clock.epoch(day, 3600)), "2026-10-25T01:00:00+02:00");
        assert_eq!(zone.format(clock.epoch(day, 4 * 3600)), "2026-10-25T04:00:00+01:00");
        let plain = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        assert_eq!(zone.format(clock.epoch(plain, 9 * 3600)), "2026-11-23T09:00:00+01:00");
    }

    #[test]
    fn zone_names() {
        assert!("+05:30".parse::<Zone>().is_ok());
        assert!("UTC".parse::<Zone>().is_ok());
        assert!("Mars/Olympus".parse::<Zone>().is_err());
    }
}
