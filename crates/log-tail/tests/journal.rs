//! `--journal` against real journal files written by `systemd-journal-remote` from
//! export-format entries the test makes, with the cursor resumed across runs.

#![allow(clippy::print_stderr)] // seeds and run summaries help replay a failure

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::json;

const JOURNAL_REMOTE: &str = "/lib/systemd/systemd-journal-remote";

struct Entry<'a> {
    unit: &'a str,
    program: &'a str,
    pid: u32,
    message: &'a [u8],
}

/// Appends entries to `dir/remote.journal` through systemd-journal-remote.
fn write_journal(dir: &Path, first_seq: u64, entries: &[Entry<'_>]) {
    let mut export = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let seq = first_seq + i as u64;
        write!(
            export,
            "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID=0123456789abcdef0123456789abcdef\n\
             _HOSTNAME=web1\n_SYSTEMD_UNIT={}\nSYSLOG_IDENTIFIER={}\n_PID={}\n",
            1_763_880_000_000_000 + seq * 1_000_000,
            1_000 + seq,
            entry.unit,
            entry.program,
            entry.pid
        )
        .unwrap();
        if entry.message.contains(&b'\n') || std::str::from_utf8(entry.message).is_err() {
            export.extend_from_slice(b"MESSAGE\n");
            export.extend_from_slice(&(entry.message.len() as u64).to_le_bytes());
            export.extend_from_slice(entry.message);
            export.push(b'\n');
        } else {
            export.extend_from_slice(b"MESSAGE=");
            export.extend_from_slice(entry.message);
            export.push(b'\n');
        }
        export.push(b'\n');
    }
    let mut child = Command::new(JOURNAL_REMOTE)
        .arg("-o")
        .arg(dir.join("remote.journal"))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{JOURNAL_REMOTE} (Debian package systemd-journal-remote): {e}")
        });
    child.stdin.take().unwrap().write_all(&export).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

fn logins(first: u32) -> Vec<Entry<'static>> {
    let messages: [&'static [u8]; 4] = [
        b"Accepted publickey for ann from 192.0.2.7 port 50122 ssh2: ED25519 SHA256:abc",
        b"Failed password for invalid user john smith from 2001:db8::5 port 2222 ssh2",
        b"pam_unix(cron:session): session opened for user root(uid=0)",
        b"Connection closed by 203.0.113.9 port 41000 [preauth] \xff",
    ];
    messages
        .into_iter()
        .enumerate()
        .map(|(i, message)| {
            let cron = i == 2;
            Entry {
                unit: if cron { "cron.service" } else { "ssh.service" },
                program: if cron {
                    "CRON"
                } else if i == 1 {
                    "sshd-session"
                } else {
                    "sshd"
                },
                pid: first + i as u32,
                message,
            }
        })
        .collect()
}

fn tail(home: &Path, journal: &Path, state: &Path, extra: &[&str]) -> common::Run {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
        vec![&"--journal", &"--directory", &journal, &"--state", &state];
    for arg in extra {
        args.push(arg);
    }
    let run = common::run(home, &args);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    run
}

#[test]
fn journal_entries_resume_from_the_saved_cursor() {
    let home = tempfile::tempdir().unwrap();
    let journal = home.path().join("journal");
    std::fs::create_dir(&journal).unwrap();
    let state = home.path().join("state.json");
    write_journal(&journal, 0, &logins(100));

    let first = tail(home.path(), &journal, &state, &["--parse", "sshd"]);
    assert_eq!(first.records.len(), 4, "{:?}", first.lines());
    let accepted = &first.records[0];
    assert_eq!(accepted["kind"], "line");
    assert_eq!(accepted["syslog"]["host"], "web1");
    assert_eq!(accepted["syslog"]["program"], "sshd");
    assert_eq!(accepted["syslog"]["pid"], 100);
    assert_eq!(accepted["syslog"]["unit"], "ssh.service");
    assert_eq!(accepted["syslog"]["time"], "2025-11-23T06:40:00+00:00");
    assert_eq!(
        accepted["sshd"],
        json!({"event":"accepted","user":"ann","ip":"192.0.2.7","port":50122,"method":"publickey"})
    );
    assert_eq!(first.records[1]["sshd"]["user"], "john smith");
    assert_eq!(first.records[2].get("sshd"), None);
    assert_eq!(first.records[3]["lossy"], true);
    assert!(accepted["cursor"].as_str().unwrap().contains("i=1"));

    assert!(tail(home.path(), &journal, &state, &[]).records.is_empty());
    write_journal(&journal, 10, &logins(200));
    let second = tail(home.path(), &journal, &state, &[]);
    let pids: Vec<u64> =
        second.records.iter().map(|r| r["syslog"]["pid"].as_u64().unwrap()).collect();
    assert_eq!(pids, [200, 201, 202, 203]);

    let ssh_state = home.path().join("ssh.json");
    let ssh =
        tail(home.path(), &journal, &ssh_state, &["--unit", "ssh.service", "--exclude", "closed"]);
    assert_eq!(ssh.records.len(), 4, "two ssh logins per batch: {:?}", ssh.lines());

    let end_state = home.path().join("end.json");
    assert!(tail(home.path(), &journal, &end_state, &["--from-end"]).records.is_empty());
    write_journal(&journal, 20, &logins(300));
    let fresh = tail(home.path(), &journal, &end_state, &["--identifier", "CRON"]);
    assert_eq!(fresh.lines(), ["pam_unix(cron:session): session opened for user root(uid=0)"]);
}

#[test]
fn a_missing_journal_folder_is_missing_input() {
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state.json");
    let gone = home.path().join("gone");
    let run = common::run(home.path(), &[&"--journal", &"--directory", &gone, &"--state", &state]);
    assert_eq!(run.code, Some(66), "{}", run.stderr);
}

#[test]
fn journal_follow_prints_new_entries_and_saves_the_cursor_on_sigterm() {
    use std::io::BufRead;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    let home = tempfile::tempdir().unwrap();
    let journal = home.path().join("journal");
    std::fs::create_dir(&journal).unwrap();
    let state = home.path().join("state.json");
    write_journal(&journal, 0, &logins(100));
    let mut child = common::command(
        home.path(),
        &[&"--journal", &"--follow", &"--directory", &journal, &"--state", &state],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let seen = seen.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let record: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
                seen.lock().unwrap().push(record["syslog"]["pid"].as_u64().unwrap());
            }
        })
    };
    let count =
        |n: usize| common::wait_for(Duration::from_secs(20), || seen.lock().unwrap().len() >= n);
    assert!(count(4), "first entries: {:?}", seen.lock().unwrap());
    write_journal(&journal, 10, &logins(200));
    assert!(count(8), "followed entries: {:?}", seen.lock().unwrap());
    common::terminate(&child);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    reader.join().unwrap();
    assert_eq!(*seen.lock().unwrap(), [100, 101, 102, 103, 200, 201, 202, 203]);
    assert!(tail(home.path(), &journal, &state, &[]).records.is_empty(), "cursor saved on SIGTERM");
}
