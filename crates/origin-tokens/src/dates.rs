//! The running date: debug-log lines carry only the time of day, so the date is carried from
//! line to line, set by the anchors (TIMESTAMP, the lmgrd banner, summary-log dates) and moved
//! on by one day whenever the clock jumps backwards by more than a few hours (no line marks
//! midnight).

use chrono::{Days, NaiveDate};
use serde::{Deserialize, Serialize};

/// A backwards jump larger than this is a new day; smaller ones are clock adjustments
/// (daylight saving) or daemons writing slightly out of order.
pub const ROLLOVER_SECS: u32 = 4 * 3600;

/// The running date and the last time of day seen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DateTracker {
    /// The date of the last line; `None` until an anchor or `--start-date`.
    pub date: Option<NaiveDate>,
    /// The last line's seconds since midnight.
    pub last: Option<u32>,
}

/// An anchor that disagreed with the running date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resync {
    /// What the running date said.
    pub was: NaiveDate,
    /// What the anchor said (now the running date).
    pub now: NaiveDate,
}

impl DateTracker {
    /// A tracker that dates lines before the first anchor with `start` when given.
    pub fn new(start: Option<NaiveDate>) -> Self {
        DateTracker { date: start, last: None }
    }

    /// The date of a line at `secs` after midnight, rolling over to the next day on a
    /// backwards jump.
    #[inline]
    pub fn clock(&mut self, secs: u32) -> Option<NaiveDate> {
        if self.last.is_some_and(|last| secs + ROLLOVER_SECS < last) {
            self.date = self.date.and_then(|d| d.checked_add_days(Days::new(1)));
        }
        self.last = Some(secs);
        self.date
    }

    /// A line at `secs` that states its date: the running date follows it. Returns the
    /// disagreement when there was a running date and it differed.
    pub fn anchor(&mut self, date: NaiveDate, secs: u32) -> Option<Resync> {
        let was = self.clock(secs);
        self.date = Some(date);
        was.filter(|&was| was != date).map(|was| Resync { was, now: date })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
    }

    #[test]
    fn backwards_jumps_roll_over_small_ones_do_not() {
        let mut t = DateTracker::new(Some(day(1)));
        assert_eq!(t.clock(23 * 3600), Some(day(1)));
        assert_eq!(t.clock(22 * 3600), Some(day(1)), "one hour back is not a new day");
        assert_eq!(t.clock(60), Some(day(2)));
        assert_eq!(t.clock(7 * 3600), Some(day(2)));
    }

    #[test]
    fn anchors_resync_and_report_disagreement() {
        let mut t = DateTracker::new(None);
        assert_eq!(t.clock(100), None);
        assert_eq!(t.anchor(day(5), 200), None);
        assert_eq!(t.anchor(day(7), 300), Some(Resync { was: day(5), now: day(7) }));
        assert_eq!(t.clock(400), Some(day(7)));
    }
}
