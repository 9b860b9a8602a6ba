//! One behaviour at a time, on real files: positions, rotation kinds, odd bytes, state
//! trouble, errors and options.

#![allow(clippy::print_stderr)] // seeds and run summaries help replay a failure

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use common::{Rotation, gzip, numbered, run, shift};
use serde_json::{Value, json};

fn append(path: &Path, text: &str) {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

fn lines(from: u32, to: u32) -> String {
    (from..=to).map(|n| format!("{n:08} line\n")).collect()
}

fn numbers(run: &common::Run) -> Vec<u64> {
    run.records.iter().map(common::number).collect()
}

fn range(from: u64, to: u64) -> Vec<u64> {
    (from..=to).collect()
}

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Self {
        Case { dir: tempfile::tempdir().unwrap() }
    }
    fn log(&self) -> std::path::PathBuf {
        self.dir.path().join("auth.log")
    }
    fn state(&self) -> std::path::PathBuf {
        self.dir.path().join("state.json")
    }
    fn tail(&self, extra: &[&str]) -> common::Run {
        let state = self.state();
        let log = self.log();
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"--state", &state];
        for arg in extra {
            args.push(arg);
        }
        args.push(&log);
        let run = run(self.dir.path(), &args);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        run
    }
}

#[test]
fn new_lines_only_with_inode_and_offset() {
    let case = Case::new();
    append(&case.log(), &lines(1, 3));
    let first = case.tail(&[]);
    assert_eq!(numbers(&first), range(1, 3));
    let record = &first.records[1];
    assert_eq!(record["kind"], "line");
    assert_eq!(record["path"], case.log().to_str().unwrap());
    assert_eq!(record["offset"], 14);
    let inode = std::os::unix::fs::MetadataExt::ino(&fs::metadata(case.log()).unwrap());
    assert_eq!(record["inode"], inode);
    assert!(record["ts"].as_str().unwrap().contains('T'));
    assert!(case.tail(&[]).records.is_empty());
    append(&case.log(), &lines(4, 5));
    assert_eq!(numbers(&case.tail(&[])), range(4, 5));
}

#[test]
fn default_state_is_per_log_under_xdg_state_home() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    append(&a, &lines(1, 2));
    append(&b, &lines(1, 1));
    assert_eq!(run(dir.path(), &[&a]).records.len(), 2);
    assert_eq!(run(dir.path(), &[&b]).records.len(), 1);
    assert_eq!(run(dir.path(), &[&a]).records.len(), 0);
    let states: Vec<_> = fs::read_dir(dir.path().join("opsline/log-tail"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    assert_eq!(states.len(), 2, "{states:?}");
}

#[test]
fn from_end_starts_at_the_current_end() {
    let case = Case::new();
    append(&case.log(), &lines(1, 3));
    assert!(case.tail(&["--from-end"]).records.is_empty());
    append(&case.log(), &lines(4, 4));
    assert_eq!(numbers(&case.tail(&["--from-end"])), [4]);
}

#[test]
fn partial_last_line_waits_until_complete() {
    let case = Case::new();
    append(&case.log(), "00000001 done\n00000002 half");
    assert_eq!(numbers(&case.tail(&[])), [1]);
    assert!(case.tail(&[]).records.is_empty());
    append(&case.log(), " and the rest\n");
    let run = case.tail(&[]);
    assert_eq!(run.lines(), ["00000002 half and the rest"]);
    assert_eq!(run.records[0]["offset"], 14);
}

#[test]
fn a_partial_line_is_emitted_when_its_file_is_rotated_away() {
    let case = Case::new();
    append(&case.log(), "00000001 a\n00000002 cut off");
    assert_eq!(numbers(&case.tail(&[])), [1]);
    fs::rename(case.log(), numbered(&case.log(), 1, false)).unwrap();
    append(&case.log(), "");
    assert!(case.tail(&[]).records.is_empty(), "the writer has not moved on yet");
    append(&case.log(), &lines(3, 3));
    let run = case.tail(&[]);
    assert_eq!(run.lines(), ["00000002 cut off", "00000003 line"]);
    assert!(run.records[0]["rotated"].as_str().unwrap().ends_with("auth.log.1"));
}

#[test]
fn two_rotations_while_down_are_read_oldest_first_once() {
    let case = Case::new();
    let log = case.log();
    append(&log, &lines(1, 10));
    assert_eq!(case.tail(&[]).records.len(), 10);
    append(&log, &lines(11, 20));
    fs::rename(&log, numbered(&log, 1, false)).unwrap();
    append(&log, &lines(21, 30));
    shift(&log);
    fs::rename(&log, numbered(&log, 1, false)).unwrap();
    gzip(&numbered(&log, 2, false), &numbered(&log, 2, true));
    fs::remove_file(numbered(&log, 2, false)).unwrap();
    append(&log, &lines(31, 40));
    assert_eq!(numbers(&case.tail(&[])), range(11, 40));
    assert!(case.tail(&[]).records.is_empty());
}

#[test]
fn compressed_rotation_is_read_through_gzip() {
    let case = Case::new();
    let log = case.log();
    let mut writer = common::LogWriter::create(&log, common::Rng::seeded("gz"));
    writer.append(100);
    assert_eq!(case.tail(&[]).records.len(), 100);
    writer.append(50);
    writer.rotate(Rotation::Compress);
    writer.append(5);
    let run = case.tail(&[]);
    assert_eq!(numbers(&run), range(101, 155));
    assert!(run.records[0]["rotated"].as_str().unwrap().ends_with(".1.gz"));
}

#[test]
fn dateext_and_globbed_rotations_are_found() {
    let case = Case::new();
    let log = case.log();
    append(&log, &lines(1, 2));
    case.tail(&[]);
    append(&log, &lines(3, 4));
    fs::rename(&log, case.dir.path().join("auth.log-20261122")).unwrap();
    append(&log, &lines(5, 6));
    fs::create_dir(case.dir.path().join("old")).unwrap();
    fs::rename(&log, case.dir.path().join("old/auth-b.log")).unwrap();
    append(&log, &lines(7, 8));
    assert_eq!(numbers(&case.tail(&["--rotated-glob", "old/auth-*.log"])), range(3, 8));
}

#[test]
fn copytruncate_rereads_from_the_start_and_warns_about_the_window() {
    let case = Case::new();
    let log = case.log();
    append(&log, &lines(1, 5));
    case.tail(&[]);
    append(&log, &lines(6, 8));
    fs::copy(&log, numbered(&log, 1, false)).unwrap();
    // Written after the copy, before the truncation: lost by design.
    append(&log, &lines(9, 9));
    truncate(&log);
    append(&log, &lines(10, 30));
    let run = case.tail(&[]);
    assert_eq!(numbers(&run), [range(6, 8), range(10, 30)].concat());
    assert!(run.stderr.contains("truncated"), "{}", run.stderr);
    assert!(run.stderr.contains("may be missing"), "{}", run.stderr);
}

#[test]
fn a_second_copytruncate_caught_between_copy_and_truncation_is_read_once() {
    copy_caught_before_truncation_is_read_once(|log| {
        fs::copy(log, numbered(log, 1, false)).unwrap();
        truncate(log);
    });
}

#[test]
fn a_copytruncate_caught_between_copy_and_truncation_after_a_rename_is_read_once() {
    copy_caught_before_truncation_is_read_once(|log| {
        fs::rename(log, numbered(log, 1, false)).unwrap();
    });
}

/// After lines 1-3 were read, `rotate` moves them aside; lines 4-6 go to the log, and the
/// next copytruncate has made its copy but not truncated yet: the copy and the log hold the
/// same lines, and reading both would give them twice.
fn copy_caught_before_truncation_is_read_once(rotate: impl Fn(&Path)) {
    let case = Case::new();
    let log = case.log();
    append(&log, &lines(1, 3));
    case.tail(&[]);
    rotate(&log);
    append(&log, &lines(4, 6));
    fs::rename(numbered(&log, 1, false), numbered(&log, 2, false)).unwrap();
    fs::copy(&log, numbered(&log, 1, false)).unwrap();
    let waiting = case.tail(&[]);
    assert_eq!(waiting.code, Some(0), "{}", waiting.stderr);
    truncate(&log);
    append(&log, &lines(7, 8));
    let after = case.tail(&[]);
    assert_eq!([numbers(&waiting), numbers(&after)].concat(), range(4, 8));
}

fn truncate(log: &Path) {
    OpenOptions::new().write(true).open(log).unwrap().set_len(0).unwrap();
}

#[test]
fn truncated_and_grown_past_the_offset_is_noticed_by_its_first_bytes() {
    let case = Case::new();
    let log = case.log();
    append(&log, &lines(1, 3));
    case.tail(&[]);
    truncate(&log);
    append(&log, &lines(4, 40));
    assert_eq!(numbers(&case.tail(&[])), range(4, 40));
}

#[test]
fn deleted_and_recreated_shorter_is_read_from_its_start() {
    let case = Case::new();
    let log = case.log();
    append(&log, &lines(1, 50));
    case.tail(&[]);
    fs::remove_file(&log).unwrap();
    append(&log, &lines(51, 52));
    let run = case.tail(&[]);
    assert_eq!(numbers(&run), range(51, 52));
}

#[test]
fn a_missing_file_keeps_its_position_until_it_returns() {
    let case = Case::new();
    let log = case.log();
    append(&log, &lines(1, 3));
    case.tail(&[]);
    append(&log, &lines(4, 4));
    fs::rename(&log, case.dir.path().join("elsewhere")).unwrap();
    let run = case.tail(&[]);
    assert!(run.records.is_empty());
    assert!(run.stderr.contains("missing"), "{}", run.stderr);
    fs::rename(case.dir.path().join("elsewhere"), &log).unwrap();
    assert_eq!(numbers(&case.tail(&[])), [4]);
}

#[test]
fn crlf_and_non_utf8_lines() {
    let case = Case::new();
    fs::write(case.log(), b"00000001 dos\r\n00000002 bad \xff\xfe bytes\n00000003 caf\xc3\xa9\n")
        .unwrap();
    let run = case.tail(&[]);
    assert_eq!(
        run.lines(),
        ["00000001 dos", "00000002 bad \u{fffd}\u{fffd} bytes", "00000003 café"]
    );
    assert_eq!(run.records[0].get("lossy"), None);
    assert_eq!(run.records[1]["lossy"], true);
    fs::write(case.dir.path().join("raw.log"), b"a\r\nb \xff\n").unwrap();
    let raw = run_raw(&case, "raw.log");
    assert_eq!(raw, b"a\r\nb \xff\n");
}

fn run_raw(case: &Case, name: &str) -> Vec<u8> {
    let path = case.dir.path().join(name);
    let state = case.dir.path().join(format!("{name}.state"));
    let output =
        common::command(case.dir.path(), &[&"--format", &"raw", &"--state", &state, &path])
            .output()
            .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

#[test]
fn a_10_mib_line_is_cut_and_flagged_and_reading_goes_on() {
    let case = Case::new();
    let mut data = b"00000001 before\n".to_vec();
    data.extend(std::iter::repeat_n(b'x', 10 << 20));
    data.extend_from_slice(b"\n00000003 after\n");
    fs::write(case.log(), &data).unwrap();
    let run = case.tail(&[]);
    assert_eq!(run.records.len(), 3);
    assert_eq!(run.records[1]["truncated"], true);
    assert_eq!(run.records[1]["line"].as_str().unwrap().len(), 1 << 20);
    assert_eq!(run.records[2]["line"], "00000003 after");
    let small = case.tail(&["--max-line", "4"]);
    assert!(small.records.is_empty());
    append(&case.log(), "123456\n");
    assert_eq!(case.tail(&["--max-line", "4"]).records[0]["line"], "1234");
}

#[test]
fn match_and_exclude_filter_before_encoding() {
    let case = Case::new();
    append(
        &case.log(),
        "a CRON x\nb sshd Accepted\nc sshd Connection closed\nd sshd Failed\ne other\n",
    );
    let run = case.tail(&["--match", "sshd", "--match", "other", "--exclude", "Connection closed"]);
    assert_eq!(run.lines(), ["b sshd Accepted", "d sshd Failed", "e other"]);
}

#[test]
fn parse_sshd_on_debian_rhel_and_rfc3339_lines() {
    let case = Case::new();
    let text = "\
Nov  3 07:12:40 web1 sshd[1234]: Accepted publickey for ann from 192.0.2.7 port 50122 ssh2: ED25519 SHA256:Zm9v\n\
Nov 23 07:13:01 web1 sshd[1240]: Failed password for invalid user john smith from 2001:db8::5 port 2222 ssh2\n\
Nov 23 07:13:02 rhel9 sshd[77]: Invalid user admin from 203.0.113.9 port 41000\n\
2026-11-23T07:14:00.123456+01:00 deb13 sshd-session[4242]: Connection closed by authenticating user root 198.51.100.4 port 5555 [preauth]\n\
2026-11-23T07:15:00.000000+00:00 deb13 sshd-auth[4243]: Disconnected from user ann 192.0.2.7 port 50122\n\
Nov 23 07:16:00 web1 CRON[99]: pam_unix(cron:session): session opened for user root\n";
    append(&case.log(), text);
    let run = case.tail(&["--parse", "sshd"]);
    let sshd: Vec<Value> =
        run.records.iter().map(|r| r.get("sshd").cloned().unwrap_or(Value::Null)).collect();
    assert_eq!(
        sshd[0],
        json!({"event":"accepted","user":"ann","ip":"192.0.2.7","port":50122,"method":"publickey"})
    );
    assert_eq!(sshd[1]["user"], "john smith");
    assert_eq!(sshd[1]["ip"], "2001:db8::5");
    assert_eq!(sshd[2]["event"], "invalid_user");
    assert_eq!(sshd[3]["event"], "connection_closed");
    assert_eq!(sshd[4]["event"], "disconnected");
    assert_eq!(sshd[5], Value::Null);
    let syslog = &run.records[0]["syslog"];
    assert_eq!(
        (syslog["host"].as_str(), syslog["program"].as_str(), syslog["pid"].as_u64()),
        (Some("web1"), Some("sshd"), Some(1234))
    );
    assert!(syslog["time"].as_str().unwrap().contains("-11-03T07:12:40"));
    assert_eq!(run.records[3]["syslog"]["time"], "2026-11-23T07:14:00.123456+01:00");
    assert_eq!(run.records[5]["syslog"]["program"], "CRON");
}

#[test]
fn corrupt_or_older_state_is_refused_until_reset() {
    let case = Case::new();
    append(&case.log(), &lines(1, 2));
    fs::write(case.state(), "{ not json").unwrap();
    let state = case.state();
    let log = case.log();
    let refused = run(case.dir.path(), &[&"--state", &state, &log]);
    assert_eq!(refused.code, Some(65));
    assert!(refused.stderr.contains("--reset"), "{}", refused.stderr);
    fs::write(
        case.state(),
        r#"{"format":"opsline-state","tool":"log-tail","version":0,"saved":"x","data":{}}"#,
    )
    .unwrap();
    let older = run(case.dir.path(), &[&"--state", &state, &log]);
    assert_eq!(older.code, Some(65));
    assert!(older.stderr.contains("version 0"), "{}", older.stderr);
    assert_eq!(numbers(&case.tail(&["--reset"])), [1, 2]);
    assert!(case.tail(&[]).records.is_empty());
}

#[test]
fn a_second_concurrent_run_exits_75() {
    let case = Case::new();
    append(&case.log(), &lines(1, 1));
    let state = case.state();
    let log = case.log();
    let mut follower = common::command(case.dir.path(), &[&"--follow", &"--state", &state, &log])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(follower.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    let second = run(case.dir.path(), &[&"--state", &state, &log]);
    common::terminate(&follower);
    let status = follower.wait().unwrap();
    assert_eq!(second.code, Some(75), "{}", second.stderr);
    assert!(second.stderr.contains("another run"), "{}", second.stderr);
    assert_eq!(status.code(), Some(0));
}

#[test]
fn errors_have_their_exit_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let missing = run(dir.path(), &[&dir.path().join("nope.log")]);
    assert_eq!(missing.code, Some(66));
    assert!(missing.stderr.contains("no such file"), "{}", missing.stderr);
    assert_eq!(run(dir.path(), &[&dir.path()]).code, Some(2));
    // Opens fine, fails on read: an I/O error.
    assert_eq!(run(dir.path(), &[&"/proc/self/mem"]).code, Some(74));
    assert_eq!(run(dir.path(), &[&"--match", &"(", &"x"]).code, Some(2));
}

#[test]
fn large_blocks_keep_every_line_in_order() {
    let case = Case::new();
    let text: String = (1..=60_000)
        .map(|n| {
            format!(
                "{n:08} Nov 23 07:12:40 web1 sshd[{n}]: {} for ann\n",
                if n % 3 == 0 { "Accepted" } else { "Other" }
            )
        })
        .collect();
    append(&case.log(), &text);
    let every = case.tail(&[]);
    assert_eq!(numbers(&every), range(1, 60_000));
    let offsets: Vec<u64> = every.records.iter().map(|r| r["offset"].as_u64().unwrap()).collect();
    let expected: Vec<u64> = text
        .split_inclusive('\n')
        .scan(0, |at, l| {
            let o = *at;
            *at += l.len() as u64;
            Some(o)
        })
        .collect();
    assert_eq!(offsets, expected);
    let state = case.dir.path().join("match.json");
    let log = case.log();
    let matched = run(case.dir.path(), &[&"--state", &state, &"--match", &"Accepted", &log]);
    assert_eq!(numbers(&matched), (1..=20_000).map(|n| n * 3).collect::<Vec<_>>());
    fs::write(case.dir.path().join("copy.log"), &text).unwrap();
    assert!(run_raw(&case, "copy.log") == text.as_bytes(), "raw output differs from the file");
}
