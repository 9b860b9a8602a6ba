//! Helpers for driving `archive-dump`: test zips built with the zip crate, runs of the real
//! binary, and checks of its output with the real `tar` and `gzip`.

#![allow(dead_code)]

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use chrono::{DateTime, Datelike, Local, NaiveDateTime, Timelike};
use serde_json::Value;
use sha2::{Digest, Sha256};
use zip::write::{ExtendedFileOptions, FileOptions, SimpleFileOptions};
use zip::{CompressionMethod, ZipWriter};

pub const BIN: &str = env!("CARGO_BIN_EXE_archive-dump");

/// A SQL-like dump of about `bytes` bytes, different for each `seed`.
pub fn dump(bytes: usize, seed: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes + 128);
    out.extend_from_slice(
        b"-- dump\nCREATE TABLE orders (id bigint, customer text, total numeric);\n",
    );
    let mut i: u64 = 0;
    while out.len() < bytes {
        let line = format!(
            "INSERT INTO orders VALUES ({i}, 'customer-{}', {}.{:02});\n",
            (i * 7919 + u64::from(seed)) % 100_003,
            (i * 31) % 9_973,
            i % 100
        );
        out.extend_from_slice(line.as_bytes());
        i += 1;
    }
    out
}

/// How an entry's modification time is stored.
#[derive(Debug, Clone, Copy)]
pub enum Stamp {
    /// DOS time only, the given local wall-clock time.
    Dos(NaiveDateTime),
    /// DOS time `dos` plus the UTC extended-timestamp field saying `utc`.
    Extended { dos: NaiveDateTime, utc: DateTime<Local> },
}

impl Stamp {
    /// Both fields saying "now".
    pub fn now() -> Self {
        let now = Local::now();
        Stamp::Extended { dos: now.naive_local(), utc: now }
    }

    /// Both fields saying `hours` ago.
    pub fn hours_ago(hours: i64) -> Self {
        let then = Local::now() - chrono::Duration::hours(hours);
        Stamp::Extended { dos: then.naive_local(), utc: then }
    }
}

fn dos(time: NaiveDateTime) -> zip::DateTime {
    zip::DateTime::from_date_and_time(
        u16::try_from(time.year()).unwrap(),
        u8::try_from(time.month()).unwrap(),
        u8::try_from(time.day()).unwrap(),
        u8::try_from(time.hour()).unwrap(),
        u8::try_from(time.minute()).unwrap(),
        u8::try_from(time.second()).unwrap(),
    )
    .unwrap()
}

/// One regular entry of a test zip.
pub struct Entry<'a> {
    pub name: &'a str,
    pub data: &'a [u8],
    pub stamp: Stamp,
}

impl<'a> Entry<'a> {
    pub fn new(name: &'a str, data: &'a [u8]) -> Self {
        Entry { name, data, stamp: Stamp::now() }
    }

    pub fn stamped(mut self, stamp: Stamp) -> Self {
        self.stamp = stamp;
        self
    }
}

/// Writes a deflated zip with `entries` at `path`.
pub fn make_zip(path: &Path, entries: &[Entry<'_>]) {
    let mut zip = ZipWriter::new(File::create(path).unwrap());
    for entry in entries {
        let options = entry_options(entry.stamp);
        zip.start_file(entry.name, options).unwrap();
        zip.write_all(entry.data).unwrap();
    }
    zip.finish().unwrap();
}

fn entry_options(stamp: Stamp) -> FileOptions<'static, ExtendedFileOptions> {
    let base = FileOptions::<ExtendedFileOptions>::default()
        .compression_method(CompressionMethod::Deflated)
        .large_file(false);
    match stamp {
        Stamp::Dos(time) => base.last_modified_time(dos(time)),
        Stamp::Extended { dos: local, utc } => {
            let mut options = base.last_modified_time(dos(local));
            let mut field = vec![1u8];
            field.extend_from_slice(&u32::try_from(utc.timestamp()).unwrap().to_le_bytes());
            options.add_extra_data(0x5455, field.into_boxed_slice(), false).unwrap();
            options
        }
    }
}

/// Writes a zip whose only entry is a symbolic link named `name`.
pub fn make_symlink_zip(path: &Path, name: &str, target: &str) {
    let mut zip = ZipWriter::new(File::create(path).unwrap());
    let options = SimpleFileOptions::default().last_modified_time(dos(Local::now().naive_local()));
    zip.add_symlink(name, target, options).unwrap();
    zip.finish().unwrap();
}

/// One run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub records: Vec<Value>,
    pub stderr: String,
}

impl Run {
    /// The single record the run printed.
    pub fn record(&self) -> &Value {
        assert_eq!(self.records.len(), 1, "one record expected: {self:#?}");
        &self.records[0]
    }

    /// The record's `archive` object.
    pub fn archive(&self) -> &Value {
        &self.record()["archive"]
    }

    /// The record's error message.
    pub fn error(&self) -> &str {
        self.record()["error"]["message"].as_str().unwrap_or_else(|| panic!("no error: {self:#?}"))
    }
}

/// Runs `archive-dump` with `args` and extra environment variables.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(BIN);
    command.args(args).stdin(Stdio::null()).env_remove("ARCHIVE_DUMP_PASSWORD");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().expect("archive-dump runs");
    parse(&output)
}

fn parse(output: &Output) -> Run {
    let records = output
        .stdout
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| serde_json::from_slice(line).expect("stdout holds only JSON records"))
        .collect();
    Run {
        code: output.status.code(),
        records,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The names in a folder, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Extracts `tgz` with the real `tar xzf` into a new folder and returns that folder, after
/// checking the file with `gzip -t`.
pub fn extract(tgz: &Path) -> tempfile::TempDir {
    let gzip = Command::new("gzip").arg("-t").arg(tgz).output().expect("gzip runs");
    assert!(gzip.status.success(), "gzip -t: {}", String::from_utf8_lossy(&gzip.stderr));
    let dir = tempfile::tempdir().unwrap();
    let tar = Command::new("tar").arg("xzf").arg(tgz).arg("-C").arg(dir.path()).output().unwrap();
    assert!(tar.status.success(), "tar xzf: {}", String::from_utf8_lossy(&tar.stderr));
    dir
}

pub fn sha256_hex(path: &Path) -> String {
    let digest = Sha256::digest(fs::read(path).unwrap());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A scratch folder with `out/` for archives.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("out")).unwrap();
        Scratch { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn out(&self) -> PathBuf {
        self.path("out")
    }

    pub fn out_str(&self) -> String {
        self.out().to_str().unwrap().to_owned()
    }
}

/// A one-shot HTTP server on 127.0.0.1 that sends `body` in `chunks` pieces with `pause`
/// between them: a slow download whose bytes keep flowing. Returns the URL; the server thread
/// ends after one response.
pub fn trickle_server(body: Vec<u8>, chunks: usize, pause: std::time::Duration) -> String {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 2 {
            line.clear();
        }
        let mut stream = stream;
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        for piece in body.chunks(body.len().div_ceil(chunks)) {
            std::thread::sleep(pause);
            if stream.write_all(piece).and_then(|()| stream.flush()).is_err() {
                return;
            }
        }
    });
    format!("http://{addr}/slow.zip")
}
