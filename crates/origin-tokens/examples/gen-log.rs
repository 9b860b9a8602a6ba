//! Writes a synthetic orglab debug log to standard output for the benchmark:
//! `gen-log [BYTES] [USERS] [FEATURES] [DAYS]` (defaults 1 GiB, 500, 20, 90). Sessions, the
//! six-hourly TIMESTAMP lines, every two weeks a clean start and a crash restart, and denials
//! (some followed by a quick successful retry). Deterministic: the same arguments give the same
//! bytes.

use std::io::{self, BufWriter, Write};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Clone, Copy)]
enum Ev {
    Out { user: u64, feature: u64, licenses: u64 },
    In { user: u64, feature: u64, licenses: u64 },
    Denied { user: u64, feature: u64 },
    Timestamp,
    Start,
    Crash,
}

fn arg(n: usize, default: u64) -> u64 {
    std::env::args().nth(n).and_then(|a| a.parse().ok()).unwrap_or(default)
}

fn main() -> io::Result<()> {
    let bytes = arg(1, 1 << 30);
    let users = arg(2, 500);
    let features = arg(3, 20);
    let days = arg(4, 90);
    let per_day = bytes / days / 101;
    let mut out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut year, mut month, mut day) = (2026u32, 1u32, 5u32);
    for d in 0..days {
        let mut events: Vec<(u32, Ev)> = Vec::with_capacity(per_day as usize * 2 + 8);
        if d.is_multiple_of(14) {
            events.push((1, Ev::Start));
            events.push((13 * 3600, Ev::Crash));
        }
        for hour in [2u32, 8, 14, 20] {
            events.push((hour * 3600, Ev::Timestamp));
        }
        for _ in 0..per_day {
            let user = rng.below(users);
            let feature = rng.below(features);
            let start = 7 * 3600 + rng.below(14 * 3600) as u32;
            let end = (start + 60 + rng.below(4 * 3600) as u32).min(86_399);
            let licenses = if rng.below(20) == 0 { 2 + rng.below(3) } else { 1 };
            if rng.below(50) == 0 {
                events.push((start.saturating_sub(2), Ev::Denied { user, feature }));
            }
            events.push((start, Ev::Out { user, feature, licenses }));
            events.push((end, Ev::In { user, feature, licenses }));
        }
        events.sort_by_key(|e| e.0);
        for (secs, ev) in &events {
            line(&mut out, *secs, *ev, (month, day, year))?;
        }
        (year, month, day) = next_day(year, month, day);
    }
    out.flush()
}

/// A clean start just after midnight.
fn banner(out: &mut impl Write, (m, d, y): (u32, u32, u32)) -> io::Result<()> {
    writeln!(out, "(lmgrd) EXITING DUE TO SIGNAL 15")?;
    writeln!(
        out,
        " 0:00:01 (lmgrd) FlexNet Licensing (v11.16.2.0 build 242433 x64_lsb) started on licsrv (linux) ({m}/{d}/{y})"
    )?;
    writeln!(out, " 0:00:01 (lmgrd) Started orglab (internet tcp_port 27001 pid 4242)")?;
    writeln!(out, " 0:00:02 (orglab) FlexNet Licensing version v11.16.2.0 build 242433 x64_lsb")?;
    writeln!(out, " 0:00:02 (orglab) Server started on licsrv for:\tOrigin\tOriginPro")?;
    writeln!(out, " 0:00:02 (lmgrd) orglab using TCP-port 27001")
}

fn line(out: &mut impl Write, secs: u32, ev: Ev, (m, d, y): (u32, u32, u32)) -> io::Result<()> {
    let (h, mi, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    write!(out, "{h:>2}:{mi:02}:{s:02} ")?;
    match ev {
        Ev::Out { user, feature, licenses } | Ev::In { user, feature, licenses } => {
            let kind = if matches!(ev, Ev::Out { .. }) { "OUT" } else { "IN" };
            write!(
                out,
                "(orglab) {kind}: \"Feature{feature:02}\" user{user:03}@PC-{:03}  ",
                user % 400
            )?;
            if licenses > 1 {
                write!(out, "({licenses} licenses)")?;
            }
            writeln!(out)
        }
        Ev::Denied { user, feature } => writeln!(
            out,
            "(orglab) DENIED: \"Feature{feature:02}\" user{user:03}@PC-{:03}  (Licensed number of users already reached. (-4,342))",
            user % 400
        ),
        Ev::Timestamp => writeln!(out, "(orglab) TIMESTAMP {m}/{d}/{y}"),
        Ev::Start => banner(out, (m, d, y)),
        Ev::Crash => {
            writeln!(out, "(lmgrd) REStarted orglab (internet tcp_port 27001 pid 4343)")?;
            writeln!(
                out,
                "{h:>2}:{mi:02}:{s:02} (orglab) FlexNet Licensing version v11.16.2.0 build 242433 x64_lsb"
            )
        }
    }
}

fn next_day(y: u32, m: u32, d: u32) -> (u32, u32, u32) {
    let len = match m {
        2 if y.is_multiple_of(4) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    match (d < len, m < 12) {
        (true, _) => (y, m, d + 1),
        (false, true) => (y, m + 1, 1),
        (false, false) => (y + 1, 1, 1),
    }
}
