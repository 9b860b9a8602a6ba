//! Helpers for driving the real binary against real files: a log writer that rotates its log
//! the ways logrotate does, a small seeded random source, and run/record parsing.

#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_log-tail")
}

/// A `log-tail` command with its state kept under `state_home`.
pub fn command(state_home: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Command {
    let mut command = Command::new(bin());
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("XDG_STATE_HOME", state_home)
        .env("TZ", "UTC")
        .stdin(Stdio::null());
    for arg in args {
        command.arg(arg.as_ref());
    }
    command
}

/// What one run printed.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub records: Vec<Value>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    /// The parsed records of complete output lines (a killed run may end in a partial one).
    pub fn from_output(output: Output) -> Self {
        Run {
            code: output.status.code(),
            records: records(&output.stdout),
            stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// The `line` fields.
    pub fn lines(&self) -> Vec<String> {
        self.records.iter().map(|r| r["line"].as_str().unwrap().to_owned()).collect()
    }
}

/// Runs to completion.
pub fn run(state_home: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Run {
    Run::from_output(command(state_home, args).output().unwrap())
}

/// Complete JSON lines of `stdout` as values.
pub fn records(stdout: &[u8]) -> Vec<Value> {
    let complete = match stdout.iter().rposition(|&b| b == b'\n') {
        Some(at) => &stdout[..=at],
        None => &[][..],
    };
    complete
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(l)))
        })
        .collect()
}

/// The number a test line starts with.
pub fn number(record: &Value) -> u64 {
    let line = record["line"].as_str().unwrap_or_else(|| panic!("no line in {record}"));
    line[..8].parse().unwrap_or_else(|_| panic!("not a numbered line: {line:?}"))
}

/// A small deterministic random source (xorshift), seeded per test and printed so that a
/// failure can be replayed with LOG_TAIL_TEST_SEED.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn seeded(name: &str) -> Self {
        let seed = std::env::var("LOG_TAIL_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{name}: LOG_TAIL_TEST_SEED={seed}");
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// In `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() % 1_000_000) as f64 / 1_000_000.0 < p
    }
}

/// How the writer rotates its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// logrotate's default: rename to .1, create a new file; the writer writes `late` more
    /// lines to the renamed file before it reopens (the window before its HUP).
    RenameCreate { late: u32 },
    /// `compress` without `delaycompress`: the rotated file is .1.gz at once.
    Compress,
    /// `copytruncate`, done by the writer itself so that no line falls into the window.
    CopyTruncate,
    /// The log deleted (after `late` lines to the deleted file) and created again, shorter.
    DeleteRecreate { late: u32 },
}

/// A process-like log writer: numbered lines, each written with one or two write calls.
#[derive(Debug)]
pub struct LogWriter {
    pub path: PathBuf,
    file: File,
    pub next: u64,
    rng: Rng,
}

impl LogWriter {
    pub fn create(path: &Path, rng: Rng) -> Self {
        LogWriter { path: path.to_owned(), file: open_append(path), next: 1, rng }
    }

    /// The text of line `n` (with its newline); lengths vary.
    pub fn text(&mut self, n: u64) -> String {
        let pad = self.rng.range(0, 120) as usize;
        format!("{n:08} sshd[{}]: test line {}\n", n % 65536, "x".repeat(pad))
    }

    /// Appends `count` lines, some split across two writes with a pause between.
    pub fn append(&mut self, count: u64) {
        for _ in 0..count {
            let n = self.next;
            let text = self.text(n);
            if self.rng.chance(0.05) {
                let cut = self.rng.range(1, text.len() as u64) as usize;
                self.file.write_all(&text.as_bytes()[..cut]).unwrap();
                std::thread::sleep(Duration::from_micros(self.rng.range(50, 2000)));
                self.file.write_all(&text.as_bytes()[cut..]).unwrap();
            } else {
                self.file.write_all(text.as_bytes()).unwrap();
            }
            self.next += 1;
        }
    }

    /// Lines written so far: 1..next.
    pub fn written(&self) -> u64 {
        self.next - 1
    }

    pub fn rotate(&mut self, how: Rotation) {
        match how {
            Rotation::RenameCreate { late } => {
                shift(&self.path);
                fs::rename(&self.path, numbered(&self.path, 1, false)).unwrap();
                self.append(u64::from(late));
                self.file = open_append(&self.path);
            }
            Rotation::Compress => {
                shift(&self.path);
                let rotated = numbered(&self.path, 1, false);
                fs::rename(&self.path, &rotated).unwrap();
                self.file = open_append(&self.path);
                gzip(&rotated, &numbered(&self.path, 1, true));
                fs::remove_file(&rotated).unwrap();
            }
            Rotation::CopyTruncate => {
                shift(&self.path);
                fs::copy(&self.path, numbered(&self.path, 1, false)).unwrap();
                self.file.set_len(0).unwrap();
            }
            Rotation::DeleteRecreate { late } => {
                fs::remove_file(&self.path).unwrap();
                self.append(u64::from(late));
                self.file = open_append(&self.path);
            }
        }
    }
}

/// `log.N` or `log.N.gz`.
pub fn numbered(log: &Path, n: u32, gz: bool) -> PathBuf {
    let mut name: OsString = log.as_os_str().to_owned();
    name.push(format!(".{n}{}", if gz { ".gz" } else { "" }));
    PathBuf::from(name)
}

/// Moves every rotated file one number up (log.2 → log.3, log.1.gz → log.2.gz).
pub fn shift(log: &Path) {
    let mut top = 1;
    while numbered(log, top, false).exists() || numbered(log, top, true).exists() {
        top += 1;
    }
    for n in (1..top).rev() {
        for gz in [false, true] {
            let from = numbered(log, n, gz);
            if from.exists() {
                fs::rename(&from, numbered(log, n + 1, gz)).unwrap();
            }
        }
    }
}

pub fn open_append(path: &Path) -> File {
    OpenOptions::new().create(true).append(true).open(path).unwrap()
}

pub fn gzip(from: &Path, to: &Path) {
    let mut data = Vec::new();
    File::open(from).unwrap().read_to_end(&mut data).unwrap();
    let mut encoder =
        flate2::write::GzEncoder::new(File::create(to).unwrap(), flate2::Compression::fast());
    encoder.write_all(&data).unwrap();
    encoder.finish().unwrap().sync_all().unwrap();
}

/// Every line emitted, by run: checks that nothing written is missing and that a line
/// comes again only after a run that was killed before saving it.
#[derive(Debug, Default)]
pub struct Ledger {
    /// For each line number, the runs (index, killed) that emitted it.
    seen: HashMap<u64, Vec<(usize, bool)>>,
    runs: usize,
}

impl Ledger {
    pub fn add_run(&mut self, numbers: &[u64], killed: bool) {
        let run = self.runs;
        self.runs += 1;
        for &n in numbers {
            self.seen.entry(n).or_default().push((run, killed));
        }
    }

    pub fn runs(&self) -> usize {
        self.runs
    }

    /// Panics unless every line 1..=written was emitted, and every repeat follows a killed
    /// run's emission.
    pub fn check(&self, written: u64) {
        let missing: Vec<u64> = (1..=written).filter(|n| !self.seen.contains_key(n)).collect();
        assert!(
            missing.is_empty(),
            "{} lines lost, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(20)]
        );
        let extra: Vec<&u64> = self.seen.keys().filter(|&&n| n == 0 || n > written).collect();
        assert!(extra.is_empty(), "lines never written: {extra:?}");
        for (n, runs) in &self.seen {
            for pair in runs.windows(2) {
                let ((first, killed), (second, _)) = (pair[0], pair[1]);
                assert!(
                    killed && second > first,
                    "line {n} emitted again by run {second} after run {first}, which was not killed: {runs:?}"
                );
            }
        }
    }

    /// How many emissions were repeats.
    pub fn repeats(&self) -> usize {
        self.seen.values().map(|runs| runs.len() - 1).sum()
    }
}

/// Waits until `done` holds, for at most `limit`.
pub fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    done()
}

/// Sends SIGTERM to a child we started.
pub fn terminate(child: &Child) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
}
