//! One line of a FlexLM/FlexNet debug log, parsed from bytes without allocating.
//!
//! A line is `H:MM:SS (daemon) message` (hour space- or zero-padded) or, on servers started
//! with `-datestamp`, an ISO date and time before the daemon. The parser never panics: any
//! bytes give [`Parsed::Blank`], [`Parsed::Malformed`] or a [`Line`].

use chrono::NaiveDate;
use memchr::memmem;

/// What one input line turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Nothing but white space (and a byte-order mark).
    Blank,
    /// Not a debug-log line; the reason says why.
    Malformed(&'static str),
    /// A prefixed line.
    Line(Line<'a>),
}

/// A prefixed line: when, which daemon, and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line<'a> {
    /// The time prefix.
    pub time: LineTime,
    /// The name between the parentheses (`lmgrd`, `orglab`, `@orglab-SLOG@`), as written.
    pub daemon: &'a [u8],
    /// The message after the daemon.
    pub message: Message<'a>,
}

/// The time prefix of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineTime {
    /// Time of day only, in seconds since midnight (the usual form).
    Clock(u32),
    /// A full date and time (`-datestamp`), with the UTC offset in seconds when written.
    Stamp {
        /// The date written on the line.
        date: NaiveDate,
        /// Seconds since midnight.
        secs: u32,
        /// The offset east of UTC, when the line has one.
        offset: Option<i32>,
    },
}

/// What a line says, as far as license use and dates are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// A checkout, checkin, denial and the like.
    Usage(Usage<'a>),
    /// A usage-shaped line of a kind this tool does not know (`KIND: "FEATURE" …`).
    UnknownUsage(&'a [u8]),
    /// `TIMESTAMP M/D/YYYY`, written by lmgrd and every vendor daemon every six hours.
    Timestamp(NaiveDate),
    /// The lmgrd start banner `… started on HOST (…) (M/D/YYYY)`: every daemon starts anew.
    LmgrdStart(Option<NaiveDate>),
    /// A full date written by the summary log (`Start-Date:`, `Server's System Date and Time:`).
    DateLine(NaiveDate),
    /// lmgrd's `Started VENDOR (…)` or, after a crash, `REStarted VENDOR (…)`: that daemon
    /// starts anew.
    VendorStart {
        /// The vendor daemon.
        daemon: &'a [u8],
        /// `REStarted`: the daemon had died without writing IN lines.
        after_crash: bool,
    },
    /// The vendor daemon's own version banner: it has just started.
    VendorBanner,
    /// `Server started on HOST for: …`, also printed after a license reread.
    Reread,
    /// lmgrd is exiting (`EXITING DUE TO SIGNAL 15`).
    LmgrdExit,
    /// `(lmgrd) VENDOR using TCP-port N`.
    Port {
        /// The vendor daemon.
        daemon: &'a [u8],
        /// Its TCP port.
        port: u16,
    },
    /// Anything else: informational.
    Other,
}

impl Message<'_> {
    /// The date this message states, if it is a date anchor.
    pub fn anchor(&self) -> Option<(NaiveDate, Anchor)> {
        match *self {
            Message::Timestamp(date) => Some((date, Anchor::Timestamp)),
            Message::LmgrdStart(Some(date)) => Some((date, Anchor::Banner)),
            Message::DateLine(date) => Some((date, Anchor::DateLine)),
            _ => None,
        }
    }
}

/// Which kind of line gave a date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// The periodic `TIMESTAMP` line: a disagreement with it is worth a warning.
    Timestamp,
    /// The lmgrd start banner (a start after days of downtime legitimately jumps ahead).
    Banner,
    /// A summary-log date line.
    DateLine,
}

/// The kinds of usage line that matter to sessions and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A license was checked out.
    Out,
    /// A license was checked in.
    In,
    /// A request was refused.
    Denied,
    /// A request waits in the queue.
    Queued,
    /// A queued request left the queue.
    Dequeued,
    /// The feature is not served.
    Unsupported,
}

impl Kind {
    /// The name used in records.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Out => "out",
            Kind::In => "in",
            Kind::Denied => "denied",
            Kind::Queued => "queued",
            Kind::Dequeued => "dequeued",
            Kind::Unsupported => "unsupported",
        }
    }

    fn from_bytes(kind: &[u8]) -> Option<Kind> {
        Some(match kind {
            b"OUT" => Kind::Out,
            b"IN" => Kind::In,
            b"DENIED" => Kind::Denied,
            b"QUEUED" => Kind::Queued,
            b"DEQUEUED" => Kind::Dequeued,
            b"UNSUPPORTED" => Kind::Unsupported,
            _ => return None,
        })
    }
}

/// A usage line: `KIND: "FEATURE" user@host  [vendor string] (N licenses) (REASON)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage<'a> {
    /// What happened.
    pub kind: Kind,
    /// The feature between the quotes.
    pub feature: &'a [u8],
    /// Everything before the last `@` (may hold spaces and non-ASCII).
    pub user: &'a [u8],
    /// The run after the last `@`.
    pub host: &'a [u8],
    /// `user@host` as one slice of the line, when the line writes exactly that (no white
    /// space before the `@`): a key for lookups that needs no copying.
    pub client: Option<&'a [u8]>,
    /// `(N licenses)`, 1 when absent.
    pub licenses: u32,
    /// The text of the first parenthesised reason (`INACTIVE`, an error text …).
    pub reason: Option<&'a [u8]>,
}

/// Parses one line (with or without its line ending).
pub fn parse_line(raw: &[u8]) -> Parsed<'_> {
    let line = trim_end(strip_bom(raw));
    let line = trim_start(line);
    if line.is_empty() {
        return Parsed::Blank;
    }
    let Some((time, rest)) = parse_time(line) else {
        return Parsed::Malformed("no time of day at the start");
    };
    let rest = trim_start(rest);
    let Some(rest) = rest.strip_prefix(b"(") else {
        return Parsed::Malformed("no (daemon) after the time");
    };
    let Some(close) = rest.iter().take(80).position(|&b| b == b')') else {
        return Parsed::Malformed("no (daemon) after the time");
    };
    let daemon = &rest[..close];
    let message = trim_start(&rest[close + 1..]);
    match classify(daemon, message) {
        Ok(message) => Parsed::Line(Line { time, daemon, message }),
        Err(why) => Parsed::Malformed(why),
    }
}

/// The usual shape of a checkout, checkin or denial, `H:MM:SS (daemon) OUT: "…` with the
/// hour space- or zero-padded, taken apart without the general parser's trials (byte-order
/// mark, leading white space, `-datestamp` prefix, any kind). Nine lines in ten of a busy log
/// have it. Gives what [`parse_line`] gives for the line, or `None` for a line to leave to it.
/// Inlined: returned through memory, its parts were read back before the stores had landed.
#[inline]
pub fn parse_common_usage(raw: &[u8]) -> Option<CommonUsage<'_>> {
    let (secs, rest) = padded_clock(raw)?;
    let rest = rest.strip_prefix(b" (")?;
    let close = find_byte(rest, b')').filter(|&close| close < 80)?;
    let daemon = &rest[..close];
    let message = rest[close + 1..].strip_prefix(b" ")?;
    let (kind, rest) = common_kind(message)?;
    let usage = common_usage(kind, rest)?;
    Some(CommonUsage { secs, daemon, usage })
}

/// A usage line of the common shape: its parts without the [`Line`] around them, which is
/// several times larger and costs its copies on every line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommonUsage<'a> {
    /// Seconds since midnight.
    pub secs: u32,
    /// The name between the parentheses, as written.
    pub daemon: &'a [u8],
    /// The usage message.
    pub usage: Usage<'a>,
}

impl<'a> From<CommonUsage<'a>> for Line<'a> {
    fn from(common: CommonUsage<'a>) -> Self {
        let message = Message::Usage(common.usage);
        Line { time: LineTime::Clock(common.secs), daemon: common.daemon, message }
    }
}

/// ` H:MM:SS` or `HH:MM:SS` at the very start, as seconds since midnight.
#[inline]
fn padded_clock(line: &[u8]) -> Option<(u32, &[u8])> {
    let [h1, h2, b':', m1, m2, b':', s1, s2, ..] = *line else { return None };
    let digit = |b: u8| b.is_ascii_digit().then(|| u32::from(b - b'0'));
    let tens = if h1 == b' ' { 0 } else { digit(h1)? };
    let (h, m, s) =
        (tens * 10 + digit(h2)?, digit(m1)? * 10 + digit(m2)?, digit(s1)? * 10 + digit(s2)?);
    (h < 24 && m < 60 && s < 61).then_some((h * 3600 + m * 60 + s.min(59), &line[8..]))
}

/// The kinds of nearly every usage line, and the rest after their `: "`.
fn common_kind(message: &[u8]) -> Option<(Kind, &[u8])> {
    if let Some(rest) = message.strip_prefix(b"OUT: \"") {
        Some((Kind::Out, rest))
    } else if let Some(rest) = message.strip_prefix(b"IN: \"") {
        Some((Kind::In, rest))
    } else {
        message.strip_prefix(b"DENIED: \"").map(|rest| (Kind::Denied, rest))
    }
}

fn strip_bom(line: &[u8]) -> &[u8] {
    line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line)
}

/// Tab, line feed, vertical tab, form feed, carriage return and space, as bits by value.
const SPACES: u64 = 0b11111 << 9 | 1 << 32;

/// One comparison and a bit test: `matches!` over the six bytes became a chain of branches on
/// the per-byte loops.
fn is_space(b: u8) -> bool {
    b <= b' ' && SPACES >> b & 1 == 1
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| is_space(b)).count();
    &s[n..]
}

fn trim_end(s: &[u8]) -> &[u8] {
    let n = s.iter().rev().take_while(|&&b| is_space(b)).count();
    &s[..s.len() - n]
}

fn trim(s: &[u8]) -> &[u8] {
    trim_end(trim_start(s))
}

/// A run of 1 to `max` ASCII digits at the start of `s`, as a number, and the rest.
fn digits(s: &[u8], min: usize, max: usize) -> Option<(u32, &[u8])> {
    let n = s.iter().take(max).take_while(|b| b.is_ascii_digit()).count();
    if n < min {
        return None;
    }
    let value = s[..n].iter().fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0'));
    Some((value, &s[n..]))
}

fn parse_time(line: &[u8]) -> Option<(LineTime, &[u8])> {
    if let Some(stamp) = parse_stamp(line) {
        return Some(stamp);
    }
    let (secs, rest) = clock(line)?;
    Some((LineTime::Clock(secs), rest))
}

/// `H:MM:SS` (or `HH:MM:SS`) followed by white space, as seconds since midnight.
fn clock(line: &[u8]) -> Option<(u32, &[u8])> {
    let (h, rest) = digits(line, 1, 2)?;
    let (m, rest) = digits(rest.strip_prefix(b":")?, 2, 2)?;
    let (s, rest) = digits(rest.strip_prefix(b":")?, 2, 2)?;
    let ends = rest.first().is_none_or(|&b| is_space(b) || b == b'(');
    (h < 24 && m < 60 && s < 61 && ends).then_some((h * 3600 + m * 60 + s.min(59), rest))
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.fff][Z|±HH:MM|±HHMM]`.
fn parse_stamp(line: &[u8]) -> Option<(LineTime, &[u8])> {
    let (year, rest) = digits(line, 4, 4)?;
    let (month, rest) = digits(rest.strip_prefix(b"-")?, 2, 2)?;
    let (day, rest) = digits(rest.strip_prefix(b"-")?, 2, 2)?;
    let rest = rest.strip_prefix(b"T").or_else(|| rest.strip_prefix(b" "))?;
    let date = NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day)?;
    let (h, rest) = digits(rest, 2, 2)?;
    let (m, rest) = digits(rest.strip_prefix(b":")?, 2, 2)?;
    let (s, mut rest) = digits(rest.strip_prefix(b":")?, 2, 2)?;
    if h >= 24 || m >= 60 || s >= 61 {
        return None;
    }
    if let Some(frac) = rest.strip_prefix(b".").or_else(|| rest.strip_prefix(b",")) {
        rest = digits(frac, 1, 9).map_or(frac, |(_, r)| r);
    }
    let (offset, rest) = parse_offset(rest);
    Some((LineTime::Stamp { date, secs: h * 3600 + m * 60 + s.min(59), offset }, rest))
}

fn parse_offset(rest: &[u8]) -> (Option<i32>, &[u8]) {
    if let Some(r) = rest.strip_prefix(b"Z") {
        return (Some(0), r);
    }
    let sign = match rest.first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return (None, rest),
    };
    let Some((h, r)) = digits(&rest[1..], 2, 2) else { return (None, rest) };
    let r2 = r.strip_prefix(b":").unwrap_or(r);
    let (m, r) = digits(r2, 2, 2).unwrap_or((0, r));
    let secs = i32::try_from(h * 3600 + m * 60).unwrap_or(0);
    (Some(sign * secs), r)
}

fn classify<'a>(daemon: &'a [u8], message: &'a [u8]) -> Result<Message<'a>, &'static str> {
    if let Some((kind, rest)) = usage_kind(message) {
        return match Kind::from_bytes(kind) {
            Some(kind) => parse_usage(kind, rest).map(Message::Usage),
            None => Ok(Message::UnknownUsage(kind)),
        };
    }
    let lmgrd = daemon.eq_ignore_ascii_case(b"lmgrd");
    if let Some(rest) = message.strip_prefix(b"TIMESTAMP ") {
        return Ok(slash_date(trim(rest)).map_or(Message::Other, Message::Timestamp));
    }
    if lmgrd {
        return Ok(classify_lmgrd(message));
    }
    Ok(classify_vendor(message))
}

fn classify_lmgrd(message: &[u8]) -> Message<'_> {
    if memmem::find(message, b") started on ").is_some() {
        return Message::LmgrdStart(last_paren_date(message));
    }
    let start = match message.strip_prefix(b"REStarted ") {
        Some(rest) => Some((rest, true)),
        None => message.strip_prefix(b"Started ").map(|rest| (rest, false)),
    };
    if let Some((rest, after_crash)) = start {
        let end = rest.iter().position(|&b| is_space(b) || b == b'(').unwrap_or(rest.len());
        return if end == 0 {
            Message::Other
        } else {
            Message::VendorStart { daemon: &rest[..end], after_crash }
        };
    }
    if message.starts_with(b"EXITING DUE TO SIGNAL") || message.starts_with(b"lmgrd exiting") {
        return Message::LmgrdExit;
    }
    if let Some(at) = memmem::find(message, b" using TCP-port ") {
        let port = digits(&message[at + 16..], 1, 5).and_then(|(p, _)| u16::try_from(p).ok());
        if let Some(port) = port.filter(|_| at > 0) {
            return Message::Port { daemon: &message[..at], port };
        }
    }
    Message::Other
}

fn classify_vendor(message: &[u8]) -> Message<'_> {
    if starts_with_ignore_case(message, b"FlexNet Licensing version")
        || starts_with_ignore_case(message, b"FLEXlm version")
    {
        return Message::VendorBanner;
    }
    if message.starts_with(b"Server started on ") {
        return Message::Reread;
    }
    for label in [&b"Start-Date:"[..], b"Server's System Date and Time:"] {
        if let Some(at) = memmem::find(message, label) {
            return text_date(&message[at + label.len()..])
                .map_or(Message::Other, Message::DateLine);
        }
    }
    Message::Other
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// `KIND: "` at the start: the kind is upper-case letters and underscores only, so that
/// `SERVER-OUT:` is not taken for a checkout.
fn usage_kind(message: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = message.iter().take_while(|b| b.is_ascii_uppercase() || **b == b'_').count();
    let rest = message[n..].strip_prefix(b": \"")?;
    (n > 0).then_some((&message[..n], rest))
}

/// The part after `KIND: "`.
fn parse_usage(kind: Kind, rest: &[u8]) -> Result<Usage<'_>, &'static str> {
    let close = memchr::memchr(b'"', rest).ok_or("usage line without closing quote")?;
    let feature = &rest[..close];
    let mut rest = trim_start(&rest[close + 1..]);
    if rest.first() == Some(&b'(') {
        // UNSUPPORTED puts a key in parentheses before the user.
        let end = matching_paren(rest);
        rest = trim_start(&rest[end..]);
    }
    let region_end = double_space(rest).unwrap_or(rest.len());
    let region = &rest[..region_end];
    let at = memchr::memrchr(b'@', region).ok_or("usage line without user@host")?;
    let after = &region[at + 1..];
    let host_end = after.iter().position(|&b| is_space(b)).unwrap_or(after.len());
    let host = &after[..host_end];
    let user = trim(&region[..at]);
    if host.is_empty() || user.is_empty() {
        return Err("usage line without user@host");
    }
    let lead = at - trim_start(&region[..at]).len();
    let client = (lead + user.len() == at).then(|| &region[lead..at + 1 + host_end]);
    let tail = &rest[region_end.min(at + 1 + host_end)..];
    let (licenses, reason) = parse_tail(tail);
    Ok(Usage { kind, feature, user, host, client, licenses, reason })
}

/// What [`parse_usage`] gives for the usual `FEATURE" user@host` with no white space in
/// `user@host`, then two spaces or the end, with the line's end not yet trimmed; `None` for
/// any other shape, to leave to it.
#[inline]
fn common_usage(kind: Kind, rest: &[u8]) -> Option<Usage<'_>> {
    let close = find_byte(rest, b'"')?;
    let feature = &rest[..close];
    let rest = rest[close + 1..].strip_prefix(b" ")?;
    let (end, at) = client_end(rest);
    let at = at?;
    let tail = trim_end(&rest[end..]);
    let stops_at_space = rest.get(end).is_none_or(|&b| is_space(b));
    if at == 0 || at + 1 == end || !stops_at_space || !(tail.is_empty() || tail.starts_with(b"  "))
    {
        return None;
    }
    let client = &rest[..end];
    let (user, host) = (&client[..at], &client[at + 1..]);
    // Most checkouts and checkins end with the client.
    let (licenses, reason) = if tail.is_empty() { (1, None) } else { parse_tail(tail) };
    Some(Usage { kind, feature, user, host, client: Some(client), licenses, reason })
}

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const LOW7: u64 = u64::from_ne_bytes([0x7f; 8]);
const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);

/// The spans searched on the common path are a few words long, too short for memchr's set-up
/// to pay: they are searched a word at a time.
fn word_at(s: &[u8], at: usize) -> Option<u64> {
    s.get(at..)?.first_chunk::<8>().map(|word| u64::from_le_bytes(*word))
}

/// The high bit of each zero byte of `x` (exact: no borrow crosses bytes).
fn zero_bytes(x: u64) -> u64 {
    !((((x & LOW7) + LOW7) | x) | LOW7)
}

/// The high bit of each byte of `x` below `n` (at most 0x80; exact).
fn bytes_below(x: u64, n: u8) -> u64 {
    !(((x & LOW7) + u64::from(0x80 - n) * ONES) | x) & HIGH
}

/// The index of the byte a mask's lowest high bit stands for.
fn first_in(mask: u64) -> usize {
    (mask.trailing_zeros() / 8) as usize
}

/// The first `byte` in `s`.
fn find_byte(s: &[u8], byte: u8) -> Option<usize> {
    let pattern = u64::from(byte) * ONES;
    let mut at = 0;
    while let Some(word) = word_at(s, at) {
        let found = zero_bytes(word ^ pattern);
        if found != 0 {
            return Some(at + first_in(found));
        }
        at += 8;
    }
    s[at..].iter().position(|&b| b == byte).map(|i| at + i)
}

/// Where `user@host` at the start of `s` ends (the first byte that is white space or a control
/// byte, or the end), and the last `@` before that.
fn client_end(s: &[u8]) -> (usize, Option<usize>) {
    let ats = u64::from(b'@') * ONES;
    let mut last_at = None;
    let mut at = 0;
    while let Some(word) = word_at(s, at) {
        let mut found = zero_bytes(word ^ ats);
        let stops = bytes_below(word, b' ' + 1);
        if stops != 0 {
            // Only the `@`s before the stop count: keep the bits below it.
            found &= (stops & stops.wrapping_neg()) - 1;
        }
        if found != 0 {
            last_at = Some(at + (63 - found.leading_zeros() as usize) / 8);
        }
        if stops != 0 {
            return (at + first_in(stops), last_at);
        }
        at += 8;
    }
    for (i, &b) in s[at..].iter().enumerate() {
        if b <= b' ' {
            return (at + i, last_at);
        }
        if b == b'@' {
            last_at = Some(at + i);
        }
    }
    (s.len(), last_at)
}

/// Where two spaces (the end of `user@host`) start; a plain scan, since the run is short.
fn double_space(s: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b' ', s).find(|&i| s.get(i + 1) == Some(&b' '))
}

/// The `[vendor string] (N licenses) (REASON)` after the user.
fn parse_tail(mut tail: &[u8]) -> (u32, Option<&[u8]>) {
    let mut licenses = 1;
    let mut reason = None;
    loop {
        tail = trim_start(tail);
        match tail.first() {
            Some(b'[') => {
                let end = memchr::memchr(b']', tail).map_or(tail.len(), |i| i + 1);
                tail = &tail[end..];
            }
            Some(b'(') => {
                let end = matching_paren(tail);
                let inner = tail[1..end].strip_suffix(b")").unwrap_or(&tail[1..end]);
                match license_count(inner) {
                    Some(n) => licenses = n,
                    None if reason.is_none() => reason = Some(trim(inner)),
                    None => {}
                }
                tail = &tail[end..];
            }
            _ => return (licenses, reason),
        }
    }
}

/// The index just past the parenthesis that closes the one at `s[0]` (or the end).
fn matching_paren(s: &[u8]) -> usize {
    let mut depth = 0usize;
    for (i, &b) in s.iter().enumerate() {
        match b {
            b'(' => depth += 1,
            b')' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    s.len()
}

fn license_count(inner: &[u8]) -> Option<u32> {
    let (n, rest) = digits(inner, 1, 9)?;
    let rest = rest.strip_prefix(b" ")?;
    (rest == b"licenses" || rest == b"license").then_some(n)
}

/// `M/D/YYYY` at the start of `s`.
fn slash_date(s: &[u8]) -> Option<NaiveDate> {
    let (m, rest) = digits(s, 1, 2)?;
    let (d, rest) = digits(rest.strip_prefix(b"/")?, 1, 2)?;
    let (y, _) = digits(rest.strip_prefix(b"/")?, 4, 4)?;
    NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, m, d)
}

/// The `(M/D/YYYY)` that ends the lmgrd banner.
fn last_paren_date(message: &[u8]) -> Option<NaiveDate> {
    let open = memchr::memrchr(b'(', message)?;
    slash_date(&message[open + 1..])
}

const MONTHS: [&[u8]; 12] = [
    b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec",
];

/// `[Www] Mmm DD YYYY …` (the summary log's form), or an ISO or `M/D/YYYY` date.
fn text_date(s: &[u8]) -> Option<NaiveDate> {
    let s = trim_start(s);
    if let Some((LineTime::Stamp { date, .. }, _)) = parse_stamp(s) {
        return Some(date);
    }
    if let Some(date) = slash_date(s) {
        return Some(date);
    }
    let mut words = s.split(|&b| is_space(b)).filter(|w| !w.is_empty());
    let mut month = None;
    for word in words.by_ref().take(2) {
        if let Some(i) = MONTHS.iter().position(|m| starts_with_ignore_case(word, m)) {
            month = Some(u32::try_from(i).ok()? + 1);
            break;
        }
    }
    let (day, _) = digits(words.next()?, 1, 2)?;
    let (year, _) = digits(words.next()?, 4, 4)?;
    NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month?, day)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn usage(line: &str) -> Usage<'_> {
        match parse_line(line.as_bytes()) {
            Parsed::Line(Line { message: Message::Usage(u), .. }) => u,
            other => panic!("not usage: {other:?}"),
        }
    }

    #[test]
    fn space_and_zero_padded_hours() {
        for (line, secs) in [(" 9:03:12 (orglab) x", 32592), ("09:03:12 (orglab) x", 32592)] {
            match parse_line(line.as_bytes()) {
                Parsed::Line(l) => assert_eq!(l.time, LineTime::Clock(secs)),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn usage_with_spaces_accents_count_and_reason() {
        let u = usage(
            "10:00:00 (orglab) OUT: \"Origin\" José da Silva@LAB-PC7  [vs] (3 licenses) (INACTIVE)",
        );
        assert_eq!(u.kind, Kind::Out);
        assert_eq!(u.user, "José da Silva".as_bytes());
        assert_eq!(u.host, b"LAB-PC7");
        assert_eq!(u.licenses, 3);
        assert_eq!(u.reason, Some(&b"INACTIVE"[..]));
    }

    #[test]
    fn nested_reason_and_unsupported_key() {
        let u = usage(
            "10:00:00 (orglab) DENIED: \"Origin\" a@b  (Licensed number of users already reached. (-4,342))",
        );
        assert_eq!(u.reason, Some(&b"Licensed number of users already reached. (-4,342)"[..]));
        let u = usage("1:00:00 (orglab) UNSUPPORTED: \"X\" (PORT_AT_HOST_PLUS   ) me@h  (nope)");
        assert_eq!((u.user, u.host), (&b"me"[..], &b"h"[..]));
    }

    #[test]
    fn server_out_is_not_a_checkout() {
        let p = parse_line(b"10:00:00 (orglab) SERVER-OUT: \"Origin\" a@b");
        assert!(matches!(p, Parsed::Line(Line { message: Message::Other, .. })), "{p:?}");
    }

    #[test]
    fn anchors_and_lifecycle() {
        let cases: [(&str, Message<'_>); 6] = [
            (
                " 9:00:00 (lmgrd) TIMESTAMP 11/23/2026",
                Message::Timestamp(NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()),
            ),
            (
                " 9:00:00 (lmgrd) FlexNet Licensing (v11.16 build 1 x64_lsb) started on srv (linux) (1/2/2026)",
                Message::LmgrdStart(NaiveDate::from_ymd_opt(2026, 1, 2)),
            ),
            (
                " 9:00:00 (@orglab-SLOG@) Start-Date: Mon Nov 23 2026 09:00:00 CET",
                Message::DateLine(NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()),
            ),
            (
                " 9:00:00 (lmgrd) REStarted orglab (pid 42)",
                Message::VendorStart { daemon: b"orglab", after_crash: true },
            ),
            (
                " 9:00:00 (lmgrd) orglab using TCP-port 27001",
                Message::Port { daemon: b"orglab", port: 27001 },
            ),
            (" 9:00:00 (ORGLAB) Server started on srv for: Origin", Message::Reread),
        ];
        for (line, want) in cases {
            match parse_line(line.as_bytes()) {
                Parsed::Line(l) => assert_eq!(l.message, want, "{line}"),
                other => panic!("{line}: {other:?}"),
            }
        }
    }

    #[test]
    fn datestamp_prefix() {
        match parse_line(b"2026-11-23T09:03:12.5+01:00 (orglab) OUT: \"f\" u@h") {
            Parsed::Line(l) => assert_eq!(
                l.time,
                LineTime::Stamp {
                    date: NaiveDate::from_ymd_opt(2026, 11, 23).unwrap(),
                    secs: 32592,
                    offset: Some(3600)
                }
            ),
            other => panic!("{other:?}"),
        }
    }

    /// Lines near the common shape, with the variations that must send a line to the general
    /// parser (or give the same result on the common path).
    fn near_common() -> impl Strategy<Value = Vec<u8>> {
        let pick = |options: &[&'static str]| prop::sample::select(options.to_vec());
        (
            pick(&[
                " 9:03:12",
                "09:03:12",
                "23:59:60",
                "24:00:00",
                " 9:3:12",
                "  9:03:12",
                "\u{feff} 9:03:12",
            ]),
            pick(&[" (orglab) ", " (ORGLAB) ", "\t(orglab) ", " (orglab)  ", " (lmgrd) "]),
            pick(&["OUT: \"", "IN: \"", "DENIED: \"", "QUEUED: \"", "OUT:\"", "SERVER-OUT: \""]),
            pick(&["Origin\" ", "\" ", "Origin\"  ", "Origin ", "F\"\t"]),
            pick(&["ann", "", "a b", "josé", "@", "a@b", "(K) ann", "a\u{1}"]),
            pick(&["@", "@@", "", " @"]),
            pick(&["pc1", "", "PC-066", "h\u{1}x", "a very long host name here"]),
            pick(&[
                "",
                "  ",
                " ",
                "  (2 licenses)",
                "  [v] (INACTIVE)  ",
                "\r",
                "  \r",
                " x",
                "\t",
            ]),
        )
            .prop_map(|parts| {
                let (a, b, c, d, e, f, g, h) = parts;
                [a, b, c, d, e, f, g, h].concat().into_bytes()
            })
    }

    proptest::proptest! {
        #[test]
        fn the_common_path_agrees_with_the_general_parser(line in near_common()) {
            if let Some(common) = parse_common_usage(&line) {
                proptest::prop_assert_eq!(Parsed::Line(common.into()), parse_line(&line));
            }
        }
    }

    #[test]
    fn the_common_path_takes_the_usual_lines() {
        for line in [
            " 7:00:02 (orglab) OUT: \"Feature13\" user466@PC-066  ",
            "17:00:02 (orglab) IN: \"Feature13\" user466@PC-066  (2 licenses)\r",
            " 7:00:11 (orglab) DENIED: \"F\" u@h  (Licensed number of users already reached. (-4,342))",
            " 7:00:11 (orglab) OUT: \"Feature with a long name\" some.user.name@a-long-host-name.example.org",
        ] {
            let common = parse_common_usage(line.as_bytes());
            assert!(common.is_some(), "{line}");
            assert_eq!(
                common.map(|c| Parsed::Line(c.into())),
                Some(parse_line(line.as_bytes())),
                "{line}"
            );
        }
    }

    #[test]
    fn noise() {
        assert_eq!(parse_line(b"\xEF\xBB\xBF \t\r\n"), Parsed::Blank);
        assert!(matches!(parse_line(b"garbage"), Parsed::Malformed(_)));
        assert!(matches!(parse_line(b"10:00:00 (orglab) OUT: \"f\" nouser"), Parsed::Malformed(_)));
    }
}
