//! `--parse syslog` and `--parse sshd`: fields from the syslog prefix and from the OpenSSH
//! login lines that matter for alerts.

use std::sync::LazyLock;

use chrono::{DateTime, Datelike, Local, NaiveDate, NaiveDateTime, TimeZone};
use regex::Regex;
use serde_json::{Map, Value, json};

/// The fields of a syslog prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Syslog<'a> {
    /// RFC 3339 (the classic form's year inferred, never in the future).
    pub time: Option<String>,
    /// The host name.
    pub host: &'a str,
    /// The program (`sshd`, `postfix/smtpd`, …).
    pub program: &'a str,
    /// The process id, when the prefix has one.
    pub pid: Option<u64>,
    /// The rest of the line.
    pub message: &'a str,
}

impl Syslog<'_> {
    /// The `syslog` object of a record.
    pub fn to_json(&self) -> Value {
        json!({
            "time": self.time,
            "host": self.host,
            "program": self.program,
            "pid": self.pid,
            "message": self.message,
        })
    }
}

static CLASSIC: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^([A-Z][a-z]{2}) +(\d{1,2}) (\d\d:\d\d:\d\d) (\S+) ([^\s\[:]+)(?:\[(\d+)\])?: ?(.*)$",
    )
    .expect("valid regex")
});

static RFC3339: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)) (\S+) ([^\s\[:]+)(?:\[(\d+)\])?: ?(.*)$",
    )
    .expect("valid regex")
});

/// Parses a classic (`Nov 23 07:12:40 host sshd[123]: …`) or RFC 3339 syslog prefix; `now`
/// decides the year of the classic form.
pub fn syslog<'a>(line: &'a str, now: DateTime<Local>) -> Option<Syslog<'a>> {
    if let Some(c) = CLASSIC.captures(line) {
        let time = classic_time(&c[1], &c[2], &c[3], now);
        return Some(Syslog {
            time,
            host: c.get(4)?.as_str(),
            program: c.get(5)?.as_str(),
            pid: c.get(6).and_then(|p| p.as_str().parse().ok()),
            message: c.get(7)?.as_str(),
        });
    }
    let c = RFC3339.captures(line)?;
    let time = DateTime::parse_from_rfc3339(&c[1])
        .or_else(|_| DateTime::parse_from_str(&c[1], "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.to_rfc3339());
    Some(Syslog {
        time,
        host: c.get(2)?.as_str(),
        program: c.get(3)?.as_str(),
        pid: c.get(4).and_then(|p| p.as_str().parse().ok()),
        message: c.get(5)?.as_str(),
    })
}

/// The latest year (this one or before) in which the classic time is not in the future; Feb
/// 29 looks back to a leap year.
fn classic_time(month: &str, day: &str, time: &str, now: DateTime<Local>) -> Option<String> {
    let month = MONTHS.iter().position(|m| *m == month)? as u32 + 1;
    let day: u32 = day.parse().ok()?;
    let time = chrono::NaiveTime::parse_from_str(time, "%H:%M:%S").ok()?;
    (0..8).find_map(|back| {
        let date = NaiveDate::from_ymd_opt(now.year() - back, month, day)?;
        let local = Local.from_local_datetime(&NaiveDateTime::new(date, time)).earliest()?;
        (local <= now).then(|| local.to_rfc3339())
    })
}

const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/// The programs whose lines `--parse sshd` reads (OpenSSH 9.8 split sshd into sshd-session
/// and sshd-auth).
pub fn is_sshd(program: &str) -> bool {
    matches!(program, "sshd" | "sshd-session" | "sshd-auth")
}

/// What an sshd line says about a login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshdEvent {
    /// `accepted`, `failed`, `invalid_user`, `connection_closed`, `disconnected`,
    /// `too_many_failures`.
    pub event: &'static str,
    /// The user name (may contain spaces).
    pub user: Option<String>,
    /// The client address (IPv4 or IPv6).
    pub ip: String,
    /// The client port.
    pub port: Option<u16>,
    /// `password`, `publickey`, `keyboard-interactive/pam`, …
    pub method: Option<String>,
}

impl SshdEvent {
    /// The `sshd` object of a record.
    pub fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("event".into(), self.event.into());
        map.insert("user".into(), self.user.clone().into());
        map.insert("ip".into(), self.ip.clone().into());
        map.insert("port".into(), self.port.into());
        map.insert("method".into(), self.method.clone().into());
        Value::Object(map)
    }
}

struct Pattern {
    event: &'static str,
    regex: Regex,
}

static SSHD: LazyLock<Vec<Pattern>> = LazyLock::new(|| {
    let pattern = |event, regex: &str| Pattern { event, regex: Regex::new(regex).expect("valid") };
    vec![
        pattern(
            "",
            r"^(?P<what>Accepted|Failed) (?P<method>\S+) for (?:invalid user )?(?P<user>.*) from (?P<ip>\S+) port (?P<port>\d+)",
        ),
        pattern("invalid_user", r"^Invalid user (?P<user>.*) from (?P<ip>\S+) port (?P<port>\d+)"),
        pattern(
            "connection_closed",
            r"^Connection closed by (?:(?:authenticating|invalid) user (?P<user>.*) )?(?P<ip>\S+) port (?P<port>\d+)",
        ),
        pattern(
            "disconnected",
            r"^Disconnected from (?:(?:authenticating |invalid )?user (?P<user>.*) )?(?P<ip>\S+) port (?P<port>\d+)",
        ),
        pattern(
            "too_many_failures",
            r"^Disconnecting (?:authenticating |invalid )?user (?P<user>.*) (?P<ip>\S+) port (?P<port>\d+): Too many authentication failures",
        ),
        pattern(
            "too_many_failures",
            r"^error: maximum authentication attempts exceeded for (?:invalid user )?(?P<user>.*) from (?P<ip>\S+) port (?P<port>\d+)",
        ),
    ]
});

/// The login event in an sshd message (the text after `sshd[PID]: `), if it is one.
pub fn sshd(message: &str) -> Option<SshdEvent> {
    let message = message.trim_end();
    let message = message.strip_suffix("[preauth]").map_or(message, str::trim_end);
    SSHD.iter().find_map(|p| {
        let c = p.regex.captures(message)?;
        let event = match c.name("what").map(|m| m.as_str()) {
            Some("Accepted") => "accepted",
            Some(_) => "failed",
            None => p.event,
        };
        Some(SshdEvent {
            event,
            user: c.name("user").map(|m| m.as_str().to_owned()),
            ip: c.name("ip")?.as_str().to_owned(),
            port: c.name("port").and_then(|m| m.as_str().parse().ok()),
            method: c.name("method").map(|m| m.as_str().to_owned()),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Local> {
        Local.with_ymd_and_hms(2026, 1, 5, 12, 0, 0).unwrap()
    }

    #[test]
    fn classic_prefix_infers_a_year_never_in_the_future() {
        let s =
            syslog("Jan  5 07:12:40 web1 sshd[123]: Accepted publickey for ann", now()).unwrap();
        assert_eq!((s.host, s.program, s.pid), ("web1", "sshd", Some(123)));
        assert!(s.time.as_deref().unwrap().starts_with("2026-01-05T07:12:40"));
        assert_eq!(s.message, "Accepted publickey for ann");
        let s = syslog("Dec 31 23:59:59 web1 CRON[9]: x", now()).unwrap();
        assert!(s.time.unwrap().starts_with("2025-12-31T23:59:59"));
        let s = syslog("Feb 29 10:00:00 h kernel: x", now()).unwrap();
        assert!(s.time.unwrap().starts_with("2024-02-29"), "back to a leap year");
        assert_eq!(syslog("Feb 29 10:00:00 h kernel: x", now()).unwrap().pid, None);
    }

    #[test]
    fn rfc3339_prefix_keeps_its_offset() {
        let s = syslog(
            "2026-11-23T07:12:40.123456+01:00 srv sshd-session[4242]: Failed password for root from ::1 port 22 ssh2",
            now(),
        )
        .unwrap();
        assert_eq!(s.time.as_deref(), Some("2026-11-23T07:12:40.123456+01:00"));
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
                user: Some("ann".into()),
                ip: "192.0.2.7".into(),
                port: Some(50122),
                method: Some("publickey".into()),
            }
        );
        let e = sshd("Failed password for invalid user john smith from 2001:db8::5 port 2222 ssh2")
            .unwrap();
        assert_eq!(
            (e.event, e.user.as_deref(), e.ip.as_str()),
            ("failed", Some("john smith"), "2001:db8::5")
        );
        let e = sshd("Failed keyboard-interactive/pam for root from 10.0.0.1 port 1 ssh2").unwrap();
        assert_eq!(e.method.as_deref(), Some("keyboard-interactive/pam"));
        let e = sshd("Invalid user admin from 203.0.113.9 port 41000").unwrap();
        assert_eq!((e.event, e.user.as_deref()), ("invalid_user", Some("admin")));
        let e =
            sshd("Connection closed by authenticating user root 203.0.113.9 port 41000 [preauth]")
                .unwrap();
        assert_eq!(
            (e.event, e.user.as_deref(), e.port),
            ("connection_closed", Some("root"), Some(41000))
        );
        let e = sshd("Connection closed by 203.0.113.9 port 41000 [preauth]").unwrap();
        assert_eq!((e.event, e.user), ("connection_closed", None));
        let e = sshd("Disconnected from user ann 192.0.2.7 port 50122").unwrap();
        assert_eq!((e.event, e.user.as_deref()), ("disconnected", Some("ann")));
        assert_eq!(sshd("pam_unix(sshd:session): session opened for user ann"), None);
    }
}
