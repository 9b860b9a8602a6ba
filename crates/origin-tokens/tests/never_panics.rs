//! The parser and the engine on arbitrary bytes: no panic, and every line is accounted for.

use origin_tokens::engine::{Engine, Options, Sink};
use origin_tokens::parse::parse_line;
use origin_tokens::zone::{DayClock, Zone};
use proptest::prelude::*;

struct Nothing;
impl Sink for Nothing {}

/// Bytes that look like log lines often enough to reach the deep parts of the parser.
fn line() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::sample::select(vec![
        &b" 9:03:12 "[..],
        b"23:59:59 ",
        b"0:00:00",
        b"2026-11-23T09:03:12+01:00 ",
        b"(orglab) ",
        b"(lmgrd) ",
        b"(@orglab-SLOG@) ",
        b"OUT: \"",
        b"IN: \"",
        b"DENIED: \"",
        b"UNSUPPORTED: \"",
        b"SERVER-OUT: ",
        b"Origin\" ",
        b"user",
        b"@",
        b"host",
        b"  ",
        b"(3 licenses)",
        b"(",
        b")",
        b"[",
        b"]",
        b"TIMESTAMP 11/23/2026",
        b"TIMESTAMP 2/30/2026",
        b"started on h (x) (1/2/2026)",
        b"REStarted orglab",
        b"Started ",
        b"Start-Date: Mon Nov 23 2026",
        b"using TCP-port 99999",
        b"\xEF\xBB\xBF",
        b"\r",
        b"\t",
        b"\xff\xfe",
        "é".as_bytes(),
    ]);
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..120),
        prop::collection::vec(pieces, 0..12).prop_map(|p| p.concat()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn parse_line_never_panics(bytes in line()) {
        let _ = parse_line(&bytes);
    }

    #[test]
    fn the_engine_never_panics_and_counts_every_line(lines in prop::collection::vec(line(), 0..40)) {
        let options = Options { transient_secs: 5, start_date: chrono::NaiveDate::from_ymd_opt(2026, 1, 1), ..Options::default() };
        let zone: Zone = "Europe/Berlin".parse().unwrap();
        let mut engine = Engine::new(DayClock::new(zone), options, None);
        for line in &lines {
            engine.line(line, &mut Nothing).unwrap();
        }
        engine.finish(true, &mut Nothing).unwrap();
        prop_assert_eq!(engine.stats.lines, lines.len() as u64);
    }
}
