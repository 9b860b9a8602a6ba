//! `--parse syslog` and `--parse sshd`: fields from the syslog prefix and from the OpenSSH
//! login lines that matter for alerts.

use chrono::{DateTime, Datelike, Local, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use serde::Serialize;

/// The fields of a syslog prefix (serialised as the record's `syslog` object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Syslog<'a> {
    /// RFC 3339 (the classic form's year inferred, never in the future).
    pub time: Option<&'a str>,
    /// The host name.
    pub host: &'a str,
    /// The program (`sshd`, `postfix/smtpd`, …).
    pub program: &'a str,
    /// The process id, when the prefix has one.
    pub pid: Option<u64>,
    /// The rest of the line.
    pub message: &'a str,
}

/// Decides the year of classic timestamps and formats them, remembering the year and the
/// local UTC offset of the last hour seen (asking the time zone database, or even the
/// calendar, for every line would dominate the run).
#[derive(Debug, Clone)]
pub struct Clock {
    now: DateTime<Local>,
    hour: Option<Hour>,
}

/// An hour of local time as last seen.
#[derive(Debug, Clone)]
struct Hour {
    year: i32,
    month: u32,
    day: u32,
    hour: u32,
    /// Its times as RFC 3339, `2026-11-23T07:MM:SS+01:00`: the minutes and seconds of the
    /// last time formatted.
    text: Vec<u8>,
    /// All of the hour falls in `year` (so its year need not be decided again).
    whole: bool,
}

/// Where the minutes and the seconds are in [`Hour::text`].
const MINUTE_AT: usize = 14;
const SECOND_AT: usize = 17;

impl Clock {
    /// A clock that treats `now` as the present.
    pub fn new(now: DateTime<Local>) -> Self {
        Clock { now, hour: None }
    }

    /// Moves the present on (once per block of lines): the year of an hour may change.
    pub fn set_now(&mut self, now: DateTime<Local>) {
        self.now = now;
        if let Some(hour) = &mut self.hour {
            hour.whole = false;
        }
    }

    /// `Nov 23 07:12:40` as RFC 3339 in local time, in the latest year that is not in the
    /// future (Feb 29 looks back to a leap year).
    fn classic(&mut self, month: u32, day: u32, time: Hms) -> Option<&str> {
        let (hour, minute, second) = time;
        let known = self
            .hour
            .as_ref()
            .is_some_and(|h| h.whole && (h.month, h.day, h.hour) == (month, day, hour));
        if !known {
            self.look_up(month, day, time)?;
        }
        let text = &mut self.hour.as_mut()?.text;
        text[MINUTE_AT..MINUTE_AT + 2].copy_from_slice(&two_digits(minute));
        text[SECOND_AT..SECOND_AT + 2].copy_from_slice(&two_digits(second));
        std::str::from_utf8(text).ok()
    }

    /// Decides the year of the time and its offset, into `self.hour`.
    fn look_up(&mut self, month: u32, day: u32, time: Hms) -> Option<()> {
        let hour = time.0;
        let year = self.year(month, day, time)?;
        // The later a time, the earlier its year may be: an hour whose first and last second
        // fall in the same year falls in it whole.
        let whole = self.year(month, day, (hour, 0, 0)) == Some(year)
            && self.year(month, day, (hour, 59, 59)) == Some(year);
        let same = |h: &Hour| (h.year, h.month, h.day, h.hour) == (year, month, day, hour);
        let text = match self.hour.take() {
            Some(known) if same(&known) => known.text,
            _ => {
                let date = NaiveDate::from_ymd_opt(year, month, day)?;
                let clock = NaiveTime::from_hms_opt(time.0, time.1, time.2)?;
                let local =
                    Local.from_local_datetime(&NaiveDateTime::new(date, clock)).earliest()?;
                local.format("%Y-%m-%dT%H:%M:%S%:z").to_string().into_bytes()
            }
        };
        self.hour = Some(Hour { year, month, day, hour, text, whole });
        Some(())
    }

    /// The latest year in which the date and time is not in the future.
    fn year(&self, month: u32, day: u32, (hour, minute, second): Hms) -> Option<i32> {
        let clock = NaiveTime::from_hms_opt(hour, minute, second)?;
        let now = self.now.naive_local();
        (0..8).map(|back| now.year() - back).find(|&year| {
            NaiveDate::from_ymd_opt(year, month, day)
                .is_some_and(|date| NaiveDateTime::new(date, clock) <= now)
        })
    }
}

/// Two decimal digits of `n` (below 100).
fn two_digits(n: u32) -> [u8; 2] {
    [b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8]
}

/// Parses a classic (`Nov 23 07:12:40 host sshd[123]: …`) or RFC 3339 syslog prefix.
pub fn syslog<'a>(line: &'a str, clock: &'a mut Clock) -> Option<Syslog<'a>> {
    let (time, rest) = match classic_prefix(line) {
        Some((month, day, hms, rest)) => (clock.classic(month, day, hms), rest),
        None => {
            let (stamp, rest) = line.split_once(' ')?;
            if !stamp.as_bytes().first().is_some_and(u8::is_ascii_digit) {
                return None;
            }
            DateTime::parse_from_rfc3339(stamp).ok()?;
            (Some(stamp), rest)
        }
    };
    let (host, rest) = rest.split_once(' ')?;
    let end = rest.bytes().position(|b| matches!(b, b' ' | b'[' | b':'))?;
    let (program, rest) = rest.split_at(end);
    let (pid, rest) = match rest.strip_prefix('[') {
        Some(inner) => {
            let (digits, rest) = inner.split_once(']')?;
            (Some(digits.parse().ok()?), rest)
        }
        None => (None, rest),
    };
    let message = rest.strip_prefix(':')?;
    let message = message.strip_prefix(' ').unwrap_or(message);
    if host.is_empty() || program.is_empty() {
        return None;
    }
    Some(Syslog { time, host, program, pid, message })
}

/// Hours, minutes, seconds.
type Hms = (u32, u32, u32);

/// A client address and port.
type Address<'a> = (&'a str, Option<u16>);

/// `Mmm dd hh:mm:ss ` (the day space-padded or not): month, day, time and the rest.
fn classic_prefix(line: &str) -> Option<(u32, u32, Hms, &str)> {
    let month = MONTHS.iter().position(|m| line.starts_with(m))? as u32 + 1;
    let rest = line.get(3..)?.strip_prefix(' ')?.trim_start_matches(' ');
    let (day, rest) = rest.split_once(' ')?;
    if day.is_empty() || day.len() > 2 {
        return None;
    }
    let day: u32 = day.parse().ok()?;
    let (clock, rest) = rest.split_once(' ')?;
    let b = clock.as_bytes();
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let number = |at: usize| clock.get(at..at + 2)?.parse::<u32>().ok();
    Some((month, day, (number(0)?, number(3)?, number(6)?), rest))
}

const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// The programs whose lines `--parse sshd` reads (OpenSSH 9.8 split sshd into sshd-session
/// and sshd-auth).
pub fn is_sshd(program: &str) -> bool {
    matches!(program, "sshd" | "sshd-session" | "sshd-auth")
}

/// What an sshd line says about a login (serialised as the record's `sshd` object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SshdEvent<'a> {
    /// `accepted`, `failed`, `invalid_user`, `connection_closed`, `disconnected`,
    /// `too_many_failures`.
    pub event: &'static str,
    /// The user name (may contain spaces).
    pub user: Option<&'a str>,
    /// The client address (IPv4 or IPv6).
    pub ip: &'a str,
    /// The client port.
    pub port: Option<u16>,
    /// `password`, `publickey`, `keyboard-interactive/pam`, …
    pub method: Option<&'a str>,
}

/// The login event in an sshd message (the text after `sshd[PID]: `), if it is one.
pub fn sshd(message: &str) -> Option<SshdEvent<'_>> {
    let message = message.trim_end();
    let message = message.strip_suffix("[preauth]").map_or(message, str::trim_end);
    if let Some((what, rest)) =
        ["Accepted ", "Failed "].iter().find_map(|p| Some((*p, message.strip_prefix(p)?)))
    {
        let (method, rest) = split_once(rest, " for ")?;
        let rest = rest.strip_prefix("invalid user ").unwrap_or(rest);
        let (user, address) = rsplit_once(rest, " from ")?;
        let name = if what == "Accepted " { "accepted" } else { "failed" };
        return found(name, Some(method), Some(user), ip_port(address)?);
    }
    if let Some(rest) = message.strip_prefix("Invalid user ") {
        let (user, address) = rsplit_once(rest, " from ")?;
        return found("invalid_user", None, Some(user), ip_port(address)?);
    }
    if let Some(rest) = message.strip_prefix("Connection closed by ") {
        let (user, address) = user_address(rest, &["authenticating user ", "invalid user "])?;
        return found("connection_closed", None, user, address);
    }
    if let Some(rest) = message.strip_prefix("Disconnected from ") {
        let prefixes = ["authenticating user ", "invalid user ", "user "];
        let (user, address) = user_address(rest, &prefixes)?;
        return found("disconnected", None, user, address);
    }
    if let Some(rest) = message.strip_prefix("Disconnecting ") {
        let (rest, _) = split_once(rest, ": Too many authentication failures")?;
        let prefixes = ["authenticating user ", "invalid user ", "user "];
        let (user, address) = user_address(rest, &prefixes)?;
        return found("too_many_failures", None, user, address);
    }
    if let Some(rest) = message.strip_prefix("error: maximum authentication attempts exceeded for ")
    {
        let rest = rest.strip_prefix("invalid user ").unwrap_or(rest);
        let (user, address) = rsplit_once(rest, " from ")?;
        return found("too_many_failures", None, Some(user), ip_port(address)?);
    }
    None
}

fn found<'a>(
    event: &'static str,
    method: Option<&'a str>,
    user: Option<&'a str>,
    (ip, port): Address<'a>,
) -> Option<SshdEvent<'a>> {
    Some(SshdEvent { event, user, ip, port, method })
}

/// `IP port N…`.
fn ip_port(text: &str) -> Option<Address<'_>> {
    let (ip, rest) = text.split_once(' ')?;
    let rest = rest.strip_prefix("port ")?;
    Some((ip, leading_number(rest)))
}

/// The number the text starts with.
fn leading_number(text: &str) -> Option<u16> {
    let end = text.bytes().position(|b| !b.is_ascii_digit()).unwrap_or(text.len());
    text[..end].parse().ok()
}

/// `text` split around the first `separator`, which starts with an ASCII byte (so that every
/// place that byte occurs is a character boundary). Faster than `str::split_once` for the
/// short lines and separators here: no searcher is set up per call.
fn split_once<'a>(text: &'a str, separator: &str) -> Option<(&'a str, &'a str)> {
    let (bytes, wanted) = (text.as_bytes(), separator.as_bytes());
    let at = memchr::memchr_iter(wanted[0], bytes).find(|&at| bytes[at..].starts_with(wanted))?;
    Some((&text[..at], &text[at + wanted.len()..]))
}

/// `text` split around the last `separator` (as in [`split_once`]).
fn rsplit_once<'a>(text: &'a str, separator: &str) -> Option<(&'a str, &'a str)> {
    let (bytes, wanted) = (text.as_bytes(), separator.as_bytes());
    let at = memchr::memrchr_iter(wanted[0], bytes).find(|&at| bytes[at..].starts_with(wanted))?;
    Some((&text[..at], &text[at + wanted.len()..]))
}

/// `[PREFIX USER ]IP port N`: the user (when a prefix names one) and the address.
fn user_address<'a>(text: &'a str, prefixes: &[&str]) -> Option<(Option<&'a str>, Address<'a>)> {
    let (before, port) = rsplit_once(text, " port ")?;
    let port = leading_number(port);
    match prefixes.iter().find_map(|p| before.strip_prefix(p)) {
        Some(named) => {
            let (user, ip) = named.rsplit_once(' ')?;
            Some((Some(user), (ip, port)))
        }
        None => Some((None, (before, port))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Local> {
        Local.with_ymd_and_hms(2026, 1, 5, 12, 0, 0).unwrap()
    }

    #[test]
    fn classic_prefix_infers_a_year_never_in_the_future() {
        let mut clock = Clock::new(now());
        let s = syslog("Jan  5 07:12:40 web1 sshd[123]: Accepted publickey for ann", &mut clock)
            .unwrap();
        assert_eq!((s.host, s.program, s.pid), ("web1", "sshd", Some(123)));
        assert!(s.time.unwrap().starts_with("2026-01-05T07:12:40"));
        assert_eq!(s.message, "Accepted publickey for ann");
        let s = syslog("Dec 31 23:59:59 web1 CRON[9]: x", &mut clock).unwrap();
        assert!(s.time.unwrap().starts_with("2025-12-31T23:59:59"));
        let s = syslog("Feb 29 10:00:00 h kernel: x", &mut clock).unwrap();
        assert!(s.time.unwrap().starts_with("2024-02-29"), "back to a leap year");
        assert_eq!(syslog("Feb 29 10:00:00 h kernel: x", &mut clock).unwrap().pid, None);
    }

    #[test]
    fn the_hour_now_is_split_between_this_year_and_the_last() {
        let mut clock = Clock::new(now());
        let time = |clock: &mut Clock, line| syslog(line, clock).unwrap().time.unwrap().to_owned();
        assert!(time(&mut clock, "Jan  5 12:00:00 h p: x").starts_with("2026-01-05T12:00:00"));
        assert!(time(&mut clock, "Jan  5 12:00:01 h p: x").starts_with("2025-01-05T12:00:01"));
        assert!(time(&mut clock, "Jan  5 11:59:59 h p: x").starts_with("2026-01-05T11:59:59"));
        assert!(time(&mut clock, "Jan  5 12:30:00 h p: x").starts_with("2025-01-05T12:30:00"));
        clock.set_now(Local.with_ymd_and_hms(2026, 1, 5, 13, 0, 0).unwrap());
        assert!(time(&mut clock, "Jan  5 12:30:00 h p: x").starts_with("2026-01-05T12:30:00"));
    }

    #[test]
    fn rfc3339_prefix_keeps_its_offset() {
        let mut clock = Clock::new(now());
        let s = syslog(
            "2026-11-23T07:12:40.123456+01:00 srv sshd-session[4242]: Failed password for root from ::1 port 22 ssh2",
            &mut clock,
        )
        .unwrap();
        assert_eq!(s.time, Some("2026-11-23T07:12:40.123456+01:00"));
        assert_eq!((s.program, s.pid), ("sshd-session", Some(4242)));
    }

    #[test]
    fn sshd_login_lines() {
        let e =
            sshd("Accepted publickey for ann from 192.0.2.7 port 50122 ssh2: ED25519 SHA256:abc")
                .unwrap();
        assert_eq!(
            e,
            SshdEvent {
                event: "accepted",
                user: Some("ann"),
                ip: "192.0.2.7",
                port: Some(50122),
                method: Some("publickey"),
            }
        );
        let e = sshd("Failed password for invalid user john smith from 2001:db8::5 port 2222 ssh2")
            .unwrap();
        assert_eq!((e.event, e.user, e.ip), ("failed", Some("john smith"), "2001:db8::5"));
        let e = sshd("Failed keyboard-interactive/pam for root from 10.0.0.1 port 1 ssh2").unwrap();
        assert_eq!(e.method, Some("keyboard-interactive/pam"));
        let e = sshd("Invalid user admin from 203.0.113.9 port 41000").unwrap();
        assert_eq!((e.event, e.user), ("invalid_user", Some("admin")));
        let e =
            sshd("Connection closed by authenticating user root 203.0.113.9 port 41000 [preauth]")
                .unwrap();
        assert_eq!((e.event, e.user, e.port), ("connection_closed", Some("root"), Some(41000)));
        let e = sshd("Connection closed by 203.0.113.9 port 41000 [preauth]").unwrap();
        assert_eq!((e.event, e.user), ("connection_closed", None));
        let e = sshd("Disconnected from user ann 192.0.2.7 port 50122").unwrap();
        assert_eq!((e.event, e.user), ("disconnected", Some("ann")));
        assert_eq!(sshd("pam_unix(sshd:session): session opened for user ann"), None);
    }
}
