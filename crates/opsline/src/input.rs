//! Reading records: JSON objects one per line, or bare paths (so `find … | TOOL` works), from
//! standard input, from `--input` files, or from positional arguments.
//!
//! Lines are read on a thread of their own so that a stop (SIGTERM) is noticed even while
//! standard input is idle.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crossbeam_channel::{Receiver, Sender, select};
use serde_json::{Map, Value};

use crate::exit::{Code, Coded};
use crate::record::{FieldPath, Record, path_to_str};
use crate::signal::Shutdown;

/// The options of a tool that consumes records.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct InputArgs {
    /// Files to act on, each taken as a record {"path": …}; without any, records are read from
    /// standard input (or from --input)
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Read records from FILE ("-" is standard input); may be repeated
    #[arg(long = "input", value_name = "FILE")]
    pub inputs: Vec<PathBuf>,

    /// The field of each record that holds the path to act on (dotted, e.g. video.output)
    #[arg(long, value_name = "FIELD", default_value = "path")]
    pub field: FieldPath,
}

/// One item from the input: a record (possibly an error record made from a bad line), or a
/// source that could not be opened or read.
pub type Item = Result<Record, InputError>;

/// A source of records that could not be opened or read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read records from {source_name}")]
pub struct InputError {
    /// The source, as a person would name it.
    pub source_name: String,
    /// What went wrong.
    #[source]
    pub error: io::Error,
}

impl InputError {
    /// The error as the tool's fatal error, with the exit status the contract gives it.
    pub fn into_fatal(self) -> anyhow::Error {
        let code = match self.error.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => Code::NoInput,
            _ => Code::IoErr,
        };
        let message = self.to_string();
        anyhow::Error::new(Coded::caused_by(code, message, self.error))
    }
}

/// Records from the sources an [`InputArgs`] names, in order.
#[derive(Debug)]
pub struct RecordReader {
    items: Receiver<Item>,
    shutdown: Shutdown,
}

impl RecordReader {
    /// Starts reading. Positional paths come first, as bare-path records; then `--input` files;
    /// standard input only when neither was given. The reader stops yielding once a stop is
    /// asked for, so the tool finishes the record it is on.
    pub fn start(tool: &'static str, args: &InputArgs, shutdown: &Shutdown) -> Self {
        shutdown.watch();
        let (sender, items) = crossbeam_channel::bounded(256);
        let paths = args.paths.clone();
        let field = args.field.clone();
        let sources: Vec<PathBuf> = match (args.paths.is_empty(), args.inputs.is_empty()) {
            (true, true) => vec![PathBuf::from("-")],
            _ => args.inputs.clone(),
        };
        std::thread::Builder::new()
            .name("records".into())
            .spawn(move || {
                let parser = LineParser { tool, field };
                let sent = paths.iter().all(|p| sender.send(Ok(parser.bare_path(p))).is_ok());
                if sent {
                    read_sources(&parser, &sources, &sender);
                }
            })
            .expect("the record reader thread starts");
        RecordReader { items, shutdown: shutdown.clone() }
    }
}

impl Iterator for RecordReader {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        if self.shutdown.requested() {
            return None;
        }
        select! {
            recv(self.items) -> item => item.ok(),
            recv(self.shutdown.receiver()) -> _ => None,
        }
    }
}

fn read_sources(parser: &LineParser, sources: &[PathBuf], sender: &Sender<Item>) {
    for source in sources {
        let name = source_name(source);
        let result = open_source(source).and_then(|reader| {
            parser.read_lines(BufReader::with_capacity(1 << 16, reader), &name, sender)
        });
        match result {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => {
                let _ = sender.send(Err(InputError { source_name: name, error }));
                return;
            }
        }
    }
}

fn source_name(path: &Path) -> String {
    if path == Path::new("-") { "standard input".to_owned() } else { path.display().to_string() }
}

fn open_source(path: &Path) -> io::Result<Box<dyn Read + Send>> {
    if path == Path::new("-") { Ok(Box::new(io::stdin())) } else { Ok(Box::new(File::open(path)?)) }
}

/// Turns input lines into records.
#[derive(Debug, Clone)]
pub struct LineParser {
    tool: &'static str,
    field: FieldPath,
}

impl LineParser {
    /// A parser for `tool` that puts bare paths into `field`.
    pub fn new(tool: &'static str, field: FieldPath) -> Self {
        LineParser { tool, field }
    }

    /// Sends every line's record; false when the receiver has gone away.
    fn read_lines(
        &self,
        mut reader: impl BufRead,
        source: &str,
        sender: &Sender<Item>,
    ) -> io::Result<bool> {
        let mut line = Vec::new();
        let mut number = 0u64;
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                return Ok(true);
            }
            number += 1;
            let record = self.parse(&line, source, number);
            if record.is_some_and(|record| sender.send(Ok(record)).is_err()) {
                return Ok(false);
            }
        }
    }

    /// The record for one line (with or without its newline); `None` for a blank line.
    ///
    /// A line that starts with `{` must be a JSON object: if it is not, the result is an error
    /// record that names the source and line number. Any other line is a bare path.
    pub fn parse(&self, line: &[u8], source: &str, number: u64) -> Option<Record> {
        let line = trim_newline(line);
        let first = line.iter().position(|b| !b.is_ascii_whitespace())?;
        if line[first] != b'{' {
            return Some(self.bare_path(Path::new(OsStr::from_bytes(line))));
        }
        Some(match serde_json::from_slice::<Map<String, Value>>(line) {
            Ok(map) => Record::from_map(map),
            Err(e) => self.malformed(line, source, number, &e),
        })
    }

    fn malformed(&self, line: &[u8], source: &str, number: u64, e: &serde_json::Error) -> Record {
        let message = format!("{source}, line {number}: not a valid JSON object: {e}");
        let mut record = Record::error("invalid", self.tool, message);
        record.insert("line", number);
        record.insert("input", String::from_utf8_lossy(line).into_owned());
        record
    }

    /// The record for a path given as a bare line or an argument.
    pub fn bare_path(&self, path: &Path) -> Record {
        match path_to_str(path) {
            Ok(text) => {
                let mut record = Record::new("path");
                record.set_field(&self.field, text);
                record
            }
            Err(e) => Record::error("path", self.tool, e),
        }
    }
}

fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}
