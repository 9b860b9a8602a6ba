//! Drives the real `watch-uploads` binary: records from stdout arrive on a channel, stderr is
//! collected, and the process is stopped with SIGTERM like a service manager would.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_watch-uploads");

/// Generous bound for anything that should happen within a second or two.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A running watcher.
pub struct Watcher {
    child: Child,
    records: Receiver<Value>,
    stderr: Arc<Mutex<String>>,
    stderr_done: Option<thread::JoinHandle<()>>,
}

impl Watcher {
    /// Starts `watch-uploads -v ARGS…` and waits until it says it is watching.
    pub fn start<S: AsRef<OsStr>>(args: &[S]) -> Watcher {
        let watcher = Watcher::spawn(args);
        watcher.wait_stderr("watching ");
        watcher
    }

    /// Starts `watch-uploads -v ARGS…` without waiting.
    pub fn spawn<S: AsRef<OsStr>>(args: &[S]) -> Watcher {
        let mut command = Command::new(BIN);
        command.arg("-v").args(args);
        Watcher::spawn_command(command)
    }

    /// Starts a prepared command whose output is watch-uploads' own.
    pub fn spawn_command(mut command: Command) -> Watcher {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("watch-uploads starts");
        let (send, records) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let line = line.expect("stdout is UTF-8 lines");
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout carries only JSON records ({e}): {line}"));
                if send.send(value).is_err() {
                    return;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let pipe = child.stderr.take().expect("piped stderr");
        let stderr_done = thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        Watcher { child, records, stderr, stderr_done: Some(stderr_done) }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Standard error so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until standard error contains `needle`.
    pub fn wait_stderr(&self, needle: &str) {
        let deadline = Instant::now() + TIMEOUT;
        while !self.stderr().contains(needle) {
            assert!(Instant::now() < deadline, "no {needle:?} on stderr:\n{}", self.stderr());
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The next record, waiting up to `timeout`.
    pub fn next_within(&self, timeout: Duration) -> Option<Value> {
        match self.records.recv_timeout(timeout) {
            Ok(value) => Some(value),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    /// The next record; fails the test after [`TIMEOUT`].
    pub fn next(&self) -> Value {
        self.next_within(TIMEOUT)
            .unwrap_or_else(|| panic!("no record within {TIMEOUT:?}; stderr:\n{}", self.stderr()))
    }

    /// Exactly `n` records (fails the test when they do not come within [`TIMEOUT`] of each
    /// other).
    pub fn take(&self, n: usize) -> Vec<Value> {
        (0..n).map(|_| self.next()).collect()
    }

    /// Records that arrive within `period` (for "nothing more is reported": the period must
    /// cover the settle time).
    pub fn drain_for(&self, period: Duration) -> Vec<Value> {
        let deadline = Instant::now() + period;
        let mut out = Vec::new();
        while let Some(value) = self.next_within(deadline.saturating_duration_since(Instant::now()))
        {
            out.push(value);
        }
        out
    }

    /// Sends a signal by name (`-STOP`, `-CONT`, `-TERM`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").args([name, &self.pid().to_string()]).status().unwrap();
        assert!(status.success(), "kill {name}");
    }

    /// Stops the process (SIGSTOP) and waits until it is stopped: what happens on the file
    /// system meanwhile is queued for it to read later, as on a busy machine.
    pub fn freeze(&self) {
        self.signal("-STOP");
        let stat = format!("/proc/{}/stat", self.pid());
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let text = std::fs::read_to_string(&stat).unwrap();
            // The state follows the command name, which is in parentheses.
            if text[text.rfind(')').unwrap() + 1..].trim_start().starts_with('T') {
                return;
            }
            assert!(Instant::now() < deadline, "the watcher did not stop");
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops with SIGTERM; returns the exit status, the records written meanwhile and stderr.
    pub fn stop(self) -> (ExitStatus, Vec<Value>, String) {
        self.signal("-TERM");
        self.finish()
    }

    /// Waits for the process to exit by itself.
    pub fn finish(mut self) -> (ExitStatus, Vec<Value>, String) {
        let status = self.child.wait().expect("wait");
        let mut rest = Vec::new();
        while let Ok(value) = self.records.recv_timeout(Duration::from_secs(5)) {
            rest.push(value);
        }
        if let Some(handle) = self.stderr_done.take() {
            handle.join().unwrap();
        }
        let stderr = self.stderr();
        (status, rest, stderr)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The record's `path` as text.
pub fn path_of(record: &Value) -> &str {
    record["path"].as_str().unwrap_or_else(|| panic!("record without path: {record}"))
}

/// Writes `bytes` to `path` the way an upload does (create, write, close).
pub fn upload(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// `path` as the watcher reports it (canonical).
pub fn canonical(path: &Path) -> String {
    let parent = std::fs::canonicalize(path.parent().unwrap()).unwrap();
    parent.join(path.file_name().unwrap()).to_str().unwrap().to_owned()
}
