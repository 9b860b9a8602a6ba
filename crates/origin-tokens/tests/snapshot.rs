//! `snapshot` with the real `ss` against a real TCP connection on 127.0.0.1, and the side file it
//! writes read back by `--snapshots`.

use std::net::{TcpListener, TcpStream};
use std::process::Command;

use chrono::{DateTime, Utc};
use serde_json::Value;

fn origin_tokens(args: &[&str]) -> (i32, Vec<Value>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_origin-tokens")).args(args).output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let records = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (
        output.status.code().unwrap_or(-1),
        records,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn snapshots_of_a_real_connection_give_the_checkout_its_ip() {
    let dir = tempfile::tempdir().unwrap();
    let side = dir.path().join("ss.log");
    let side_arg = side.to_str().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();

    let (code, records, stderr) =
        origin_tokens(&["snapshot", "--port", &port, "--output", side_arg]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(records[0]["peers"], serde_json::json!([]));

    let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (_server_side, _) = listener.accept().unwrap();
    let (code, records, stderr) = origin_tokens(&[
        "snapshot",
        "--port",
        &port,
        "--output",
        side_arg,
        "--trigger",
        "OUT-LINE-PLACEHOLDER",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(records[0]["peers"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(records[0]["port"], serde_json::json!(port.parse::<u16>().unwrap()));

    // A log whose checkout happened at the second snapshot's time, named as its trigger.
    let text = std::fs::read_to_string(&side).unwrap();
    let blocks: Vec<&str> =
        text.lines().filter(|l| DateTime::parse_from_rfc3339(l).is_ok()).collect();
    assert_eq!(blocks.len(), 2, "{text}");
    let at: DateTime<Utc> = DateTime::parse_from_rfc3339(blocks[1]).unwrap().with_timezone(&Utc);
    let out_line = format!("{} (orglab) OUT: \"Origin\" alice@PC-01  ", at.format("%k:%M:%S"));
    std::fs::write(&side, text.replace("OUT-LINE-PLACEHOLDER", out_line.trim())).unwrap();
    let log = dir.path().join("orglabdebug.log");
    let banner = format!(
        "{} (lmgrd) FlexNet Licensing (v11.16.2.0 build 1 x64_lsb) started on srv (linux) ({})\n",
        at.format("%k:%M:%S"),
        at.format("%-m/%-d/%Y")
    );
    std::fs::write(&log, format!("{banner}{out_line}\n")).unwrap();

    let (code, records, stderr) = origin_tokens(&[
        "events",
        "--tz",
        "UTC",
        "--port",
        &port,
        "--snapshots",
        side_arg,
        log.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let out = records.iter().find(|r| r["event"] == "out").expect("the checkout");
    assert_eq!(out["ip"], "127.0.0.1", "{records:?}");
    assert_eq!(out["ip_confidence"], "unique");
}

#[test]
fn snapshot_takes_the_port_from_the_log_and_fails_clearly_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("orglabdebug.log");
    std::fs::write(&log, " 9:00:00 (lmgrd) orglab using TCP-port 1\n").unwrap();
    let side = dir.path().join("ss.log");
    let (code, records, stderr) = origin_tokens(&[
        "snapshot",
        "--log",
        log.to_str().unwrap(),
        "--output",
        side.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(records[0]["port"], 1);
    std::fs::write(&log, " 9:00:00 (lmgrd) nothing here\n").unwrap();
    let (code, _, stderr) = origin_tokens(&[
        "snapshot",
        "--log",
        log.to_str().unwrap(),
        "--output",
        side.to_str().unwrap(),
    ]);
    assert_eq!(code, 65);
    assert!(stderr.contains("announces no vendor daemon port"), "{stderr}");
}

#[test]
fn follow_takes_a_snapshot_after_every_checkout_line() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let side = dir.path().join("ss.log");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (_server_side, _) = listener.accept().unwrap();
    let out_line = " 9:00:00 (orglab) OUT: \"Origin\" alice@PC-01  ";
    let record = serde_json::json!({"kind": "line", "line": " 9:01:00 (orglab) OUT: \"Origin\" bob@PC-02  "});
    let input = format!(
        " 8:59:59 (orglab) OUT: \"Origin\" early@PC-00  \n 9:00:00 (lmgrd) orglab using TCP-port {port}\n{out_line}\n 9:00:30 (orglab) IN: \"Origin\" alice@PC-01  \n{record}\n"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_origin-tokens"))
        .args(["snapshot", "--follow", "--output", side.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("no port known yet"), "{stderr}");
    let records: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2, "one snapshot per checkout after the port is known: {records:?}");
    assert!(
        records.iter().all(|r| r["peers"] == serde_json::json!(["127.0.0.1"]) && r["port"] == port)
    );
    let text = std::fs::read_to_string(&side).unwrap();
    let triggers: Vec<&str> = text.lines().filter(|l| l.contains("OUT:")).collect();
    assert_eq!(triggers, [out_line.trim(), "9:01:00 (orglab) OUT: \"Origin\" bob@PC-02"]);
}
