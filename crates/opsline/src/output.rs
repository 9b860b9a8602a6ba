//! Writing records to standard output: one JSON object per line, nothing else on stdout.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::AsFd;

use crate::exit::Code;
use crate::record::Record;

/// When records reach the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// After every record, so the next tool in a pipeline reacts at once (streaming tools).
    EachRecord,
    /// When the buffer fills and at the end (batch runs).
    Buffered,
}

/// Writes records and counts the ones this tool failed on.
#[derive(Debug)]
pub struct RecordWriter<W: Write = File> {
    out: BufWriter<W>,
    tool: &'static str,
    flush: Flush,
    written: u64,
    failed: u64,
}

impl RecordWriter<File> {
    /// A writer on standard output. It writes to the file descriptor directly, past the line
    /// buffering of `std::io::Stdout`.
    pub fn stdout(tool: &'static str, flush: Flush) -> io::Result<Self> {
        let fd = io::stdout().as_fd().try_clone_to_owned()?;
        Ok(RecordWriter::new(File::from(fd), tool, flush))
    }
}

impl<W: Write> RecordWriter<W> {
    /// A writer on any byte sink.
    pub fn new(out: W, tool: &'static str, flush: Flush) -> Self {
        RecordWriter {
            out: BufWriter::with_capacity(1 << 16, out),
            tool,
            flush,
            written: 0,
            failed: 0,
        }
    }

    /// Writes one record as a line.
    pub fn write(&mut self, record: &Record) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, record.as_map())?;
        self.end_record(record.error_tool() == Some(self.tool))
    }

    /// Writes one record that the caller serialised itself (a hot path that builds JSON
    /// without a [`Record`]); `json` must be one JSON object without a newline.
    pub fn write_json(&mut self, json: &[u8], failed: bool) -> io::Result<()> {
        self.out.write_all(json)?;
        self.end_record(failed)
    }

    /// Writes one line of text output (`--format raw`, tables) in place of a record.
    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.out.write_all(line)?;
        self.end_record(false)
    }

    /// The buffered sink, for serialisers that write a record in pieces; finish each record
    /// with [`RecordWriter::end_record`].
    pub fn sink(&mut self) -> &mut BufWriter<W> {
        &mut self.out
    }

    /// Ends the record written through [`RecordWriter::sink`]; `failed` counts it as a record
    /// this tool failed on.
    pub fn end_record(&mut self, failed: bool) -> io::Result<()> {
        self.out.write_all(b"\n")?;
        self.written += 1;
        self.failed += u64::from(failed);
        if self.flush == Flush::EachRecord { self.out.flush() } else { Ok(()) }
    }

    /// Records written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Records this tool failed on so far.
    pub fn failed(&self) -> u64 {
        self.failed
    }

    /// Flushes everything (batch runs call this at the end).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// Flushes and returns the exit status the records call for: 1 if any failed.
    pub fn finish(mut self) -> io::Result<Code> {
        self.out.flush()?;
        Ok(if self.failed > 0 { Code::SomeFailed } else { Code::Ok })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_records_of_this_tool_are_counted() {
        let mut out = RecordWriter::new(Vec::new(), "t", Flush::EachRecord);
        out.write(&Record::error("x", "upstream", "their failure")).unwrap();
        assert_eq!(out.failed(), 0);
        out.write(&Record::error("x", "t", "ours")).unwrap();
        assert_eq!((out.written(), out.failed()), (2, 1));
        assert_eq!(out.finish().unwrap(), Code::SomeFailed);
    }
}
