//! Files are parsed in blocks on several threads, standard input line by line: on a log of
//! several blocks, with lines cut at every place a block can end, both must give the same
//! records and the same count of bad lines.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::Value;

/// About 4 MiB: sixty days of checkouts by 40 users at a time (new ones every four days) on
/// 3 features, a restart every ten days,
/// CRLF endings on some days, bad lines, and one line longer than a block.
fn log() -> String {
    let mut log = String::new();
    let mut seed = 7u64;
    let mut next = |n: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    for day in 0..60u32 {
        let eol = if day % 7 == 3 { "\r\n" } else { "\n" };
        let (month, date) = (1 + day / 28, 1 + day % 28);
        if day % 10 == 0 {
            let _ = write!(
                log,
                " 0:00:01 (lmgrd) FlexNet Licensing (v11) started on srv (linux) ({month}/{date}/2026){eol}"
            );
            let _ = write!(log, " 0:00:02 (orglab) FlexNet Licensing version v11 build 1{eol}");
        }
        let _ = write!(log, " 0:00:03 (lmgrd) TIMESTAMP {month}/{date}/2026{eol}");
        for minute in (1..1440u32).step_by(3) {
            // New users come every few days, so that keys are first met in every block.
            let user = next(40) + 40 * u64::from(day / 4);
            let feature = ["Origin", "OriginPro", "Viewer"][usize::try_from(next(3)).unwrap()];
            let kind = ["OUT", "IN", "OUT", "IN", "DENIED"][usize::try_from(next(5)).unwrap()];
            let count = if next(6) == 0 { "(2 licenses)" } else { "" };
            let (h, m) = (minute / 60, minute % 60);
            let _ = write!(
                log,
                "{h:2}:{m:02}:{:02} (orglab) {kind}: \"{feature}\" user {user}@PC-{user:02}  {count}{eol}",
                next(60)
            );
        }
        if day % 9 == 5 {
            let _ = writeln!(log, "not a log line{eol}");
        }
    }
    log.push_str(&"x".repeat(3 << 20));
    log.push_str("\n 23:59:59 (orglab) OUT: \"Origin\" last@PC-99  ");
    log
}

struct Output {
    records: Vec<Value>,
    stderr: String,
}

fn origin_tokens(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_origin-tokens"))
        .args(args)
        .args(["--tz", "UTC", "--format", "json"])
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("origin-tokens starts");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || pipe.write_all(&input).unwrap());
    }
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let records = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let mut record: Value = serde_json::from_str(line).unwrap();
            record.as_object_mut().unwrap().remove("ts");
            record
        })
        .collect();
    Output { records, stderr: String::from_utf8_lossy(&output.stderr).into_owned() }
}

/// "N of M lines were not debug-log lines", as the summary says it.
fn bad_lines(stderr: &str) -> &str {
    let at = stderr.find(" lines were not").expect("a summary of bad lines");
    let start = stderr[..at].rfind("warning: ").map_or(0, |w| w + 9);
    &stderr[start..at]
}

#[test]
fn blocks_on_threads_give_what_line_by_line_gives() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orglabdebug.log");
    let text = log();
    std::fs::write(&path, &text).unwrap();
    let file = path.to_str().unwrap();
    for args in [&["sessions"][..], &["report", "--by", "user", "--per", "day"], &["events"]] {
        let from_file = origin_tokens(&[args, &[file]].concat(), None);
        let from_stdin = origin_tokens(args, Some(text.as_bytes()));
        assert!(from_file.records.len() > 100, "{args:?}: {} records", from_file.records.len());
        assert_eq!(from_file.records, from_stdin.records, "{args:?}");
        assert_eq!(bad_lines(&from_file.stderr), bad_lines(&from_stdin.stderr), "{args:?}");
    }
    let last = origin_tokens(&["events", file], None).records.pop().unwrap();
    assert_eq!(last["user"], "last", "the line after the long one is read: {last}");
}
