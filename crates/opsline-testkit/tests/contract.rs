//! The JSON-lines contract, checked through `opsline-echo`, a minimal tool on the shared crate:
//! records are compared as JSON values, never as strings.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Output, Stdio};

use serde_json::{Value, json};

const ECHO: &str = env!("CARGO_BIN_EXE_opsline-echo");

fn echo(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = spawn(args);
    let mut input = child.stdin.take().expect("piped stdin");
    let bytes = stdin.to_vec();
    let writer = std::thread::spawn(move || input.write_all(&bytes));
    let output = child.wait_with_output().expect("opsline-echo runs");
    let written = writer.join().expect("writer thread");
    assert!(
        written.as_ref().map_or_else(|e| e.kind() == std::io::ErrorKind::BrokenPipe, |()| true),
        "stdin written: {written:?}"
    );
    output
}

fn spawn(args: &[&str]) -> Child {
    Command::new(ECHO)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("opsline-echo starts")
}

fn records(output: &Output) -> Vec<Value> {
    output
        .stdout
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).expect("stdout carries only JSON objects"))
        .collect()
}

fn without(mut value: Value, keys: &[&str]) -> Value {
    let map = value.as_object_mut().expect("an object");
    for key in keys {
        map.remove(*key);
    }
    value
}

fn signal(child: &Child, name: &str) {
    let status =
        Command::new("kill").args([name, &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
}

fn read_record(lines: &mut BufReader<ChildStdout>) -> Value {
    let mut line = String::new();
    lines.read_line(&mut line).expect("a line");
    serde_json::from_str(&line).expect("a record")
}

#[test]
fn bare_paths_become_records_and_blank_lines_are_ignored() {
    let output = echo(&[], b"/srv/a b.mp4\n\n   \n/srv/c.mov\r\n");
    assert_eq!(output.status.code(), Some(0));
    let out = records(&output);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0]["kind"], "path");
    assert_eq!(out[0]["path"], "/srv/a b.mp4");
    assert_eq!(out[0]["echo"], json!({"path": "/srv/a b.mp4"}));
    assert_eq!(out[1]["path"], "/srv/c.mov");
    let ts = out[0]["ts"].as_str().expect("ts is a string");
    chrono::DateTime::parse_from_rfc3339(ts).expect("ts is RFC 3339 with offset");
}

#[test]
fn positional_paths_are_records_and_stdin_is_not_read() {
    let output = echo(&["/x/one", "/x/two"], b"/never/read\n");
    assert_eq!(
        records(&output).iter().map(|r| r["path"].clone()).collect::<Vec<_>>(),
        ["/x/one", "/x/two"]
    );
}

#[test]
fn unknown_fields_are_kept_as_values() {
    let input = json!({"kind": "upload", "ts": "2026-11-23T07:12:40+01:00", "path": "/up/v.mp4",
        "user": {"login": "ann", "email": "ann@example.org", "tags": [1, 2.5, null, "é"]},
        "big": 12345678901234567u64, "nested": {"deep": {"deeper": [{"x": true}]}}});
    let output = echo(&[], format!("{input}\n").as_bytes());
    let out = records(&output);
    assert_eq!(without(out[0].clone(), &["echo"]), input);
}

#[test]
fn nested_field_selects_the_path() {
    let input =
        json!({"kind": "video", "path": "/out/v.flv", "video": {"thumbnail": "/out/v.png"}});
    let output = echo(&["--field", "video.thumbnail"], format!("{input}\n/bare\n").as_bytes());
    let out = records(&output);
    assert_eq!(out[0]["echo"], json!({"path": "/out/v.png"}));
    assert_eq!(out[1]["video"], json!({"thumbnail": "/bare"}), "bare paths go into the field");
}

#[test]
fn environment_sets_long_options() {
    let mut child = Command::new(ECHO)
        .env("OPSLINE_ECHO_FIELD", "a.b")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starts");
    child.stdin.take().expect("stdin").write_all(b"{\"a\":{\"b\":\"/p\"}}\n").expect("write");
    let output = child.wait_with_output().expect("runs");
    assert_eq!(records(&output)[0]["echo"], json!({"path": "/p"}));
}

#[test]
fn error_records_and_pathless_records_pass_through_untouched() {
    let failed = json!({"kind": "upload", "ts": "2026-11-23T07:12:40Z", "path": "/a",
        "error": {"tool": "watch-uploads", "message": "gone"}});
    let pathless = json!({"kind": "report", "ts": "2026-11-23T07:12:40Z", "n": 3});
    let output = echo(&[], format!("{failed}\n{pathless}\n").as_bytes());
    assert_eq!(records(&output), [failed, pathless]);
    assert_eq!(output.status.code(), Some(0), "upstream failures are not this tool's");
}

#[test]
fn malformed_json_becomes_an_error_record_and_the_stream_goes_on() {
    let output = echo(&[], b"/first\n{\"broken\": \n/third\n");
    let out = records(&output);
    assert_eq!(out.len(), 3);
    assert_eq!(out[1]["error"]["tool"], "opsline-echo");
    assert_eq!(out[1]["line"], 2);
    assert_eq!(out[1]["input"], "{\"broken\": ");
    let message = out[1]["error"]["message"].as_str().expect("message");
    assert!(message.contains("standard input, line 2"), "{message}");
    assert_eq!(out[2]["path"], "/third");
    assert_eq!(output.status.code(), Some(1), "some records failed");
}

#[test]
fn tool_failures_mark_records_and_exit_one() {
    let output = echo(&["--fail-on", "bad"], b"{\"path\":\"/a\",\"bad\":1}\n{\"path\":\"/b\"}\n");
    let out = records(&output);
    assert_eq!(out[0]["error"], json!({"tool": "opsline-echo", "message": "asked to fail"}));
    assert!(out[1].get("error").is_none());
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn non_utf8_paths_become_error_records_naming_them() {
    let output = echo(&[], b"/up/caf\xe9.mp4\n/up/ok.mp4\n");
    let out = records(&output);
    let message = out[0]["error"]["message"].as_str().expect("message");
    assert!(message.contains("/up/caf\u{fffd}.mp4"), "{message}");
    assert_eq!(out[1]["path"], "/up/ok.mp4");
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn a_ten_mebibyte_line_is_one_record() {
    let blob = "x".repeat(10 << 20);
    let input = json!({"path": "/big", "blob": blob});
    let output = echo(&[], format!("{input}\n").as_bytes());
    let out = records(&output);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["blob"].as_str().map(str::len), Some(10 << 20));
}

#[test]
fn usage_errors_exit_two_and_missing_inputs_exit_sixty_six() {
    let output = echo(&["--no-such-option"], b"");
    assert_eq!(output.status.code(), Some(2));
    let output = echo(&["--input", "/nonexistent/records.jsonl"], b"");
    assert_eq!(output.status.code(), Some(66));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(
            "opsline-echo: error: cannot read records from /nonexistent/records.jsonl: "
        ),
        "{stderr}"
    );
}

#[test]
fn broken_pipe_exits_zero_silently() {
    let mut child = spawn(&[]);
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        for i in 0..200_000 {
            if writeln!(stdin, "/file/{i}").is_err() {
                break;
            }
        }
    });
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    read_record(&mut stdout);
    drop(stdout);
    let output = child.wait_with_output().expect("exits");
    writer.join().expect("writer");
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&output.stderr), "");
}

#[test]
fn sigterm_finishes_the_stream_and_saves_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.json");
    let mut child = spawn(&["--state", state.to_str().expect("utf-8")]);
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    for i in 0..3 {
        writeln!(stdin, "/f/{i}").expect("write");
        assert_eq!(read_record(&mut stdout)["path"], format!("/f/{i}"));
    }
    signal(&child, "-TERM");
    let status = child.wait().expect("exits");
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean stop");
    let saved: Value =
        serde_json::from_slice(&std::fs::read(&state).expect("state saved")).expect("JSON");
    assert_eq!(saved["data"]["records"], 3);
    assert_eq!(std::fs::metadata(&state).expect("meta").permissions().mode() & 0o777, 0o600);
    drop(stdin);
}

#[test]
fn sigint_saves_state_and_exits_130() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.json");
    let mut child = spawn(&["--state", state.to_str().expect("utf-8")]);
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    writeln!(stdin, "/f").expect("write");
    read_record(&mut stdout);
    signal(&child, "-INT");
    assert_eq!(child.wait().expect("exits").code(), Some(130));
    assert!(state.exists());
}

#[test]
fn a_second_run_on_the_same_state_exits_75() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.json");
    let state_arg = state.to_str().expect("utf-8");
    let mut first = spawn(&["--state", state_arg]);
    let mut stdin = first.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(first.stdout.take().expect("stdout"));
    writeln!(stdin, "/held").expect("write");
    read_record(&mut stdout);
    let second = echo(&["--state", state_arg], b"/other\n");
    assert_eq!(second.status.code(), Some(75));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("another run holds the state file"), "{stderr}");
    assert!(stderr.contains(&format!("pid {}", first.id())), "{stderr}");
    assert!(second.stdout.is_empty());
    drop(stdin);
    assert_eq!(first.wait().expect("first exits").code(), Some(0));
}

#[test]
fn kill_nine_during_saves_leaves_a_whole_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state.json");
    let state_arg = state.to_str().expect("utf-8");
    let first = echo(&["--state", state_arg, "--churn", "1"], b"");
    assert_eq!(first.status.code(), Some(0));
    let mut last_generation = 1;
    for round in 0..25u64 {
        let mut child = spawn(&["--state", state_arg, "--churn", "1000"]);
        std::thread::sleep(std::time::Duration::from_millis(5 + (round * 7) % 40));
        signal(&child, "-KILL");
        child.wait().expect("killed");
        let generation = saved_generation(&state);
        assert!(generation >= 1, "round {round}: the state is whole");
        last_generation = generation;
    }
    assert!(last_generation >= 1);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(leftovers.len() <= 3, "only state, lock and at most one temp file: {leftovers:?}");
}

fn saved_generation(state: &Path) -> u64 {
    let mut text = Vec::new();
    std::fs::File::open(state).expect("state exists").read_to_end(&mut text).expect("read");
    let saved: Value = serde_json::from_slice(&text).expect("state is whole JSON after kill -9");
    let generation = saved["data"]["records"].as_u64().expect("generation");
    let padding = saved["data"]["padding"].as_str().expect("padding");
    assert_eq!(
        padding.len(),
        format!("{generation:x}").len() << 19,
        "padding matches its generation"
    );
    generation
}

#[test]
fn bare_path_bytes_survive_as_argv() {
    let name = std::ffi::OsStr::from_bytes(b"-x y'z\".mp4");
    let output = Command::new(ECHO).arg("--").arg(name).output().expect("runs");
    assert_eq!(records(&output)[0]["path"], "-x y'z\".mp4");
}
