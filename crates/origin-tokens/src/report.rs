//! `report`: per user, host or feature and per day, week or month, the connection time as the
//! union of intervals, token-hours, sessions, the peak of concurrent licenses with its time,
//! and denials (transient ones apart). Computed in one pass with a gauge per group; memory is
//! one row per group and period.

use std::collections::HashMap;

use chrono::{Datelike, Days, Months, NaiveDate};

use crate::engine::{Delta, KeyId, KeyInfo, Sink};
use crate::fasthash::FastMap;
use crate::zone::Zone;

/// What the rows are grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    /// The user name
    User,
    /// The client host
    Host,
    /// The feature
    Feature,
}

impl By {
    /// The field name in records.
    pub fn field(self) -> &'static str {
        match self {
            By::User => "user",
            By::Host => "host",
            By::Feature => "feature",
        }
    }

    fn of(self, key: &KeyInfo) -> &str {
        match self {
            By::User => &key.user,
            By::Host => &key.host,
            By::Feature => &key.feature,
        }
    }
}

/// The length of a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Per {
    /// Calendar days (local midnight to midnight)
    Day,
    /// ISO weeks, Monday to Sunday
    Week,
    /// Calendar months
    Month,
}

/// Turns times into periods in the report's zone.
#[derive(Debug, Clone)]
pub struct Periods {
    per: Option<Per>,
    zone: Zone,
    cached: (i64, i64),
}

impl Periods {
    /// Periods of `per` (one period for all time when `None`).
    pub fn new(per: Option<Per>, zone: Zone) -> Self {
        Periods { per, zone, cached: (0, 0) }
    }

    /// `[start, end)` of the period holding `t`.
    pub fn bounds(&mut self, t: i64) -> (i64, i64) {
        if t >= self.cached.0 && t < self.cached.1 {
            return self.cached;
        }
        let Some(per) = self.per else { return (i64::MIN, i64::MAX) };
        let date = self.zone.naive(t).date();
        let (first, next) = match per {
            Per::Day => (date, date + Days::new(1)),
            Per::Week => {
                let monday = date - Days::new(u64::from(date.weekday().num_days_from_monday()));
                (monday, monday + Days::new(7))
            }
            Per::Month => {
                let first = date.with_day(1).unwrap_or(date);
                (first, first + Months::new(1))
            }
        };
        self.cached = (self.zone.midnight(first), self.zone.midnight(next));
        self.cached
    }

    /// The period's name: `2026-11-23`, `2026-W48` or `2026-11`.
    pub fn label(&self, start: i64) -> Option<String> {
        let date: NaiveDate = self.zone.naive(start).date();
        Some(match self.per? {
            Per::Day => date.format("%Y-%m-%d").to_string(),
            Per::Week => date.format("%G-W%V").to_string(),
            Per::Month => date.format("%Y-%m").to_string(),
        })
    }
}

/// One row of the report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row {
    /// Seconds with at least one license held (union of intervals).
    pub connected: i64,
    /// License-seconds.
    pub license_seconds: i64,
    /// Sessions that started in the period.
    pub sessions: u32,
    /// The most licenses held at once.
    pub peak: u32,
    /// When the peak was first reached.
    pub peak_at: Option<i64>,
    /// Denials not followed by a quick successful checkout.
    pub denials: u32,
    /// Denials followed by a successful checkout within the transient window.
    pub transient_denials: u32,
}

/// A group's running state, one a cache line: changes come to groups at random, and a gauge
/// across two lines would cost two misses.
#[derive(Debug, Clone, Copy, Default)]
#[repr(align(64))]
struct Gauge {
    checkouts: i64,
    held: i64,
    last: i64,
    /// The row of the period last touched, sparing a map lookup and the period's bounds on
    /// almost every change.
    row: Option<RowAt>,
}

impl Gauge {
    /// Takes in a change at `t`; gives the licenses held after it.
    #[inline]
    fn apply(&mut self, t: i64, delta: Delta) -> i64 {
        self.last = t;
        self.checkouts = (self.checkouts + i64::from(delta.checkouts)).max(0);
        self.held = (self.held + delta.licenses).max(0);
        self.held
    }
}

/// A group's row of one period.
#[derive(Debug, Clone, Copy)]
struct RowAt {
    /// The period, `[start, end)`.
    start: i64,
    end: i64,
    /// The row's place in `Report::rows`.
    index: usize,
}

/// The report sink.
#[derive(Debug)]
pub struct Report {
    by: By,
    periods: Periods,
    since: i64,
    until: i64,
    names: Vec<String>,
    group_ids: HashMap<String, u32>,
    key_group: Vec<u32>,
    gauges: Vec<Gauge>,
    index: FastMap<(i64, u32), usize>,
    row_keys: Vec<(i64, u32)>,
    rows: Vec<Row>,
}

impl Report {
    /// A report grouped `by`, split into `periods`, limited to `[since, until)`.
    pub fn new(by: By, periods: Periods, since: Option<i64>, until: Option<i64>) -> Self {
        Report {
            by,
            periods,
            since: since.unwrap_or(i64::MIN),
            until: until.unwrap_or(i64::MAX),
            names: Vec::new(),
            group_ids: HashMap::new(),
            key_group: Vec::new(),
            gauges: Vec::new(),
            index: FastMap::default(),
            row_keys: Vec::new(),
            rows: Vec::new(),
        }
    }

    #[inline]
    fn group(&mut self, key: KeyId, info: &KeyInfo) -> u32 {
        match self.key_group.get(key as usize) {
            Some(&g) if g != u32::MAX => g,
            _ => self.new_group(key, info),
        }
    }

    /// The group of a key met for the first time (kept out of line: [`Report::group`] is on
    /// every change).
    #[cold]
    #[inline(never)]
    fn new_group(&mut self, key: KeyId, info: &KeyInfo) -> u32 {
        let idx = key as usize;
        let name = self.by.of(info);
        let g = match self.group_ids.get(name) {
            Some(&g) => g,
            None => {
                let g = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
                self.names.push(name.to_owned());
                self.group_ids.insert(name.to_owned(), g);
                self.gauges.push(Gauge::default());
                g
            }
        };
        if self.key_group.len() <= idx {
            self.key_group.resize(idx + 1, u32::MAX);
        }
        self.key_group[idx] = g;
        g
    }

    /// The group's row of the period holding `t`, and the end of that period.
    #[inline]
    fn row(&mut self, t: i64, g: u32) -> (&mut Row, i64) {
        let at = match self.gauges[g as usize].row {
            Some(at) if t >= at.start && t < at.end => at,
            _ => self.find_row(t, g),
        };
        (&mut self.rows[at.index], at.end)
    }

    #[cold]
    #[inline(never)]
    fn find_row(&mut self, t: i64, g: u32) -> RowAt {
        let (start, end) = self.periods.bounds(t);
        let next = self.rows.len();
        let index = *self.index.entry((start, g)).or_insert(next);
        if index == next {
            self.rows.push(Row::default());
            self.row_keys.push((start, g));
        }
        let at = RowAt { start, end, index };
        self.gauges[g as usize].row = Some(at);
        at
    }

    /// Adds the time from the gauge's last change to `t`, split at period boundaries and
    /// clipped to the report's window.
    #[inline]
    fn accrue(&mut self, g: u32, t: i64) {
        let gauge = self.gauges[g as usize];
        let mut from = gauge.last.max(self.since);
        let to = t.min(self.until);
        if gauge.checkouts <= 0 {
            return;
        }
        while from < to {
            let (row, end) = self.row(from, g);
            let upto = end.min(to);
            row.connected += upto - from;
            row.license_seconds += gauge.held * (upto - from);
            peak(row, gauge.held, from);
            from = upto;
        }
    }

    /// [`Sink::change`] when the gauge's last change and this one fall in the period of the
    /// row it touched last, inside the report's window: nearly every change, done without
    /// looking for rows or splitting at periods. `false` when that is not the case.
    #[inline]
    fn change_within_row(&mut self, g: u32, time: i64, delta: Delta) -> bool {
        let gauge = &mut self.gauges[g as usize];
        let (last, t) = (gauge.last, time.max(gauge.last));
        let Some(at) = gauge.row else { return false };
        if !(self.since <= last && at.start <= last && t < at.end && t < self.until) {
            return false;
        }
        let row = &mut self.rows[at.index];
        if gauge.checkouts > 0 && last < t {
            row.connected += t - last;
            row.license_seconds += gauge.held * (t - last);
            peak(row, gauge.held, last);
        }
        let held = gauge.apply(t, delta);
        row.sessions += u32::from(delta.session_started);
        peak(row, held, t);
        true
    }

    #[inline]
    fn in_window(&self, t: i64) -> bool {
        t >= self.since && t < self.until
    }

    /// The rows, ordered by period and group name: (period start, group, row).
    pub fn rows(&self) -> Vec<(i64, &str, &Row)> {
        // Each group's place among the names, so that the sort compares numbers: a group's
        // name is its own, and (period, place) orders the rows as (period, name) would.
        let mut by_name: Vec<usize> = (0..self.names.len()).collect();
        by_name.sort_unstable_by_key(|&g| self.names[g].as_str());
        let mut place = vec![0; self.names.len()];
        for (at, &g) in by_name.iter().enumerate() {
            place[g] = at;
        }
        let mut order: Vec<usize> = (0..self.rows.len()).collect();
        order.sort_unstable_by_key(|&i| {
            let (start, g) = self.row_keys[i];
            (start, place[g as usize])
        });
        order
            .into_iter()
            .map(|i| {
                let (start, g) = self.row_keys[i];
                (start, self.names[g as usize].as_str(), &self.rows[i])
            })
            .collect()
    }

    /// The name of the period starting at `start`; `None` without periods.
    pub fn label(&self, start: i64) -> Option<String> {
        (start != i64::MIN).then(|| self.periods.label(start)).flatten()
    }
}

fn peak(row: &mut Row, held: i64, at: i64) {
    let held = u32::try_from(held).unwrap_or(0);
    if held > row.peak {
        row.peak = held;
        row.peak_at = Some(at);
    }
}

impl Sink for Report {
    /// The key's group.
    fn tag(&mut self, key: KeyId, info: &KeyInfo) -> u32 {
        self.group(key, info)
    }

    fn change(
        &mut self,
        time: i64,
        _key: KeyId,
        g: u32,
        _info: &KeyInfo,
        delta: Delta,
    ) -> anyhow::Result<()> {
        if self.change_within_row(g, time, delta) {
            return Ok(());
        }
        let t = time.max(self.gauges[g as usize].last);
        self.accrue(g, t);
        let held = self.gauges[g as usize].apply(t, delta);
        if self.in_window(t) {
            let (row, _) = self.row(t, g);
            row.sessions += u32::from(delta.session_started);
            peak(row, held, t);
        }
        Ok(())
    }

    fn denial(
        &mut self,
        time: i64,
        key: KeyId,
        info: &KeyInfo,
        transient: bool,
    ) -> anyhow::Result<()> {
        let g = self.group(key, info);
        if self.in_window(time) {
            let (row, _) = self.row(time, g);
            if transient {
                row.transient_denials += 1;
            } else {
                row.denials += 1;
            }
        }
        Ok(())
    }
}
