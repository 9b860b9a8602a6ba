//! Turning lines into output: the filter first, then a hand-written JSON record (the hot path
//! of a 10-million-line file) or the bare line.

use std::borrow::Cow;
use std::fs::File;
use std::io::Write;

use chrono::Local;
use clap::ValueEnum;
use memchr::memchr_iter;
use opsline::{Code, Record, RecordWriter};

use crate::ParseKind;
use crate::filter::{Filter, trim_cr};
use crate::parse;

/// What each line becomes on standard output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One JSON record per line
    Json,
    /// The bare line, as in the file (pygtail compatible)
    Raw,
}

/// Where the lines being emitted come from.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The log's path as a JSON string.
    path: String,
    /// The rotated file actually read, as a JSON string, when it is not the log itself.
    rotated: Option<String>,
    inode: u64,
}

impl Origin {
    /// Lines of `log` read from `file` (the log itself or one of its rotated files).
    pub fn new(log: &str, file: &str, inode: u64) -> Self {
        let rotated = (file != log).then(|| json_string(file));
        Origin { path: json_string(log), rotated, inode }
    }
}

/// Filters and writes lines.
#[derive(Debug)]
pub struct Emitter {
    out: RecordWriter<File>,
    encoder: Encoder,
    /// Records of the block being written, then those of its second half.
    buffers: [Vec<u8>; 2],
    /// Flush after every block (following: records reach the reader at once).
    flush_each: bool,
    parallel: bool,
}

/// Turns lines into output bytes; cloned for the second half of a large block.
#[derive(Debug, Clone)]
struct Encoder {
    format: Format,
    filter: Filter,
    syslog: bool,
    sshd: bool,
    max_line: usize,
    clock: parse::Clock,
    ts: String,
}

/// Blocks at least this large are encoded by two threads, half each.
const PARALLEL_MIN: usize = 256 * 1024;

impl Emitter {
    /// An emitter writing to `out`; `flush_each` flushes after every block of lines.
    pub fn new(
        out: RecordWriter<File>,
        format: Format,
        filter: Filter,
        parse: &[ParseKind],
        max_line: usize,
        flush_each: bool,
    ) -> Self {
        let sshd = parse.contains(&ParseKind::Sshd);
        let syslog = sshd || parse.contains(&ParseKind::Syslog);
        let encoder = Encoder {
            format,
            filter,
            syslog,
            sshd,
            max_line,
            clock: parse::Clock::new(Local::now()),
            ts: String::new(),
        };
        let parallel = std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
        Emitter { out, encoder, buffers: [Vec::new(), Vec::new()], flush_each, parallel }
    }

    /// Writes the lines of `data` (whole lines; see [`crate::reader::LineSink::block`]) that
    /// pass the filter; `offset` is where `data` starts.
    pub fn block(&mut self, origin: &Origin, data: &[u8], offset: u64) -> anyhow::Result<()> {
        let encoder = &mut self.encoder;
        encoder.stamp();
        if encoder.format == Format::Raw && encoder.filter.is_empty() {
            return self.raw_block(origin, data, offset);
        }
        let [first, second] = &mut self.buffers;
        let half = data.len() / 2;
        let split = memchr::memchr(b'\n', &data[half..]).map(|at| half + at + 1);
        match split.filter(|_| self.parallel && data.len() >= PARALLEL_MIN) {
            Some(split) => {
                let (head, tail) = data.split_at(split);
                let mut helper = encoder.clone();
                std::thread::scope(|scope| {
                    let worker =
                        scope.spawn(|| helper.block(origin, tail, offset + split as u64, second));
                    let done = encoder.block(origin, head, offset, first);
                    let other =
                        worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                    done.and(other)
                })?;
            }
            None => encoder.block(origin, data, offset, first)?,
        }
        self.out.sink().write_all(first)?;
        self.out.sink().write_all(second)?;
        first.clear();
        second.clear();
        self.flushed()
    }

    /// Bare lines without a filter: copied through in pieces of at most `--max-line` bytes
    /// (whole lines, so none of them needs cutting); a longer line goes through the encoder.
    fn raw_block(&mut self, origin: &Origin, data: &[u8], offset: u64) -> anyhow::Result<()> {
        let max_line = self.encoder.max_line;
        let mut rest = data;
        let mut at = offset;
        while !rest.is_empty() {
            let piece = if rest.len() <= max_line {
                rest.len()
            } else {
                memchr::memrchr(b'\n', &rest[..=max_line]).map_or(0, |i| i + 1)
            };
            let piece = if piece > 0 {
                self.out.write_line(rest[..piece].strip_suffix(b"\n").unwrap_or(&rest[..piece]))?;
                piece
            } else {
                let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
                let buffer = &mut self.buffers[0];
                self.encoder.block(origin, &rest[..end], at, buffer)?;
                self.out.sink().write_all(buffer)?;
                buffer.clear();
                end
            };
            rest = &rest[piece..];
            at += piece as u64;
        }
        self.flushed()
    }

    /// Writes a line that was cut at the length limit, if it passes the filter.
    pub fn long_line(&mut self, origin: &Origin, prefix: &[u8], offset: u64) -> anyhow::Result<()> {
        self.encoder.stamp();
        if self.encoder.filter.keeps(prefix) {
            let buffer = &mut self.buffers[0];
            self.encoder.line(origin, prefix, offset, true, buffer)?;
            self.out.sink().write_all(buffer)?;
            buffer.clear();
        }
        self.flushed()
    }

    fn flushed(&mut self) -> anyhow::Result<()> {
        if self.flush_each {
            self.out.flush()?;
        }
        Ok(())
    }

    /// Writes a record made elsewhere (journal entries) if its `line` passes the filter.
    pub fn record(&mut self, record: &mut Record, line: &str) -> anyhow::Result<()> {
        if !self.encoder.filter.keeps(line.as_bytes()) {
            return Ok(());
        }
        if self.encoder.format == Format::Raw {
            self.out.write_line(line.as_bytes())?;
            return Ok(());
        }
        if self.encoder.sshd
            && let Some(event) = record
                .get("syslog")
                .and_then(|s| Some((s.get("program")?.as_str()?, s.get("message")?.as_str()?)))
                .filter(|(program, _)| parse::is_sshd(program))
                .and_then(|(_, message)| parse::sshd(message))
        {
            record.insert("sshd", serde_json::to_value(&event)?);
        }
        self.out.write(record)?;
        Ok(())
    }

    /// Pushes buffered records out (before the position that covers them is saved).
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// Flushes and returns the exit status the records call for.
    pub fn finish(self) -> std::io::Result<Code> {
        self.out.finish()
    }
}

impl Encoder {
    /// Takes the time for the records that follow (once per block: the clock is not read
    /// per line).
    fn stamp(&mut self) {
        let now = Local::now();
        self.ts = opsline::time::rfc3339(&now);
        self.clock.set_now(now);
    }

    /// Encodes the lines of `data` that pass the filter into `out`.
    fn block(
        &mut self,
        origin: &Origin,
        data: &[u8],
        offset: u64,
        out: &mut Vec<u8>,
    ) -> anyhow::Result<()> {
        if self.filter.has_match() {
            let filter = self.filter.clone();
            return filter.each_match(data, |start, end| {
                self.line(origin, &data[start..end], offset + start as u64, false, out)
            });
        }
        let mut start = 0;
        for end in memchr_iter(b'\n', data) {
            self.filtered_line(origin, &data[start..end], offset + start as u64, out)?;
            start = end + 1;
        }
        if start < data.len() {
            self.filtered_line(origin, &data[start..], offset + start as u64, out)?;
        }
        Ok(())
    }

    fn filtered_line(
        &mut self,
        origin: &Origin,
        raw: &[u8],
        offset: u64,
        out: &mut Vec<u8>,
    ) -> anyhow::Result<()> {
        if self.filter.is_empty() || self.filter.keeps(trim_cr(raw)) {
            self.line(origin, raw, offset, false, out)
        } else {
            Ok(())
        }
    }

    fn line(
        &mut self,
        origin: &Origin,
        raw: &[u8],
        offset: u64,
        cut: bool,
        sink: &mut Vec<u8>,
    ) -> anyhow::Result<()> {
        let (bytes, shortened) = cut_at(raw, self.max_line);
        let truncated = cut || shortened;
        if self.format == Format::Raw {
            sink.extend_from_slice(bytes);
            sink.push(b'\n');
            return Ok(());
        }
        let (text, lossy) = match std::str::from_utf8(trim_cr(bytes)) {
            Ok(text) => (Cow::Borrowed(text), false),
            Err(_) => (String::from_utf8_lossy(trim_cr(bytes)), true),
        };
        sink.write_all(b"{\"kind\":\"line\",\"ts\":\"")?;
        sink.write_all(self.ts.as_bytes())?;
        sink.write_all(b"\",\"path\":")?;
        sink.write_all(origin.path.as_bytes())?;
        sink.write_all(b",\"line\":")?;
        write_json_str(sink, &text)?;
        sink.write_all(b",\"inode\":")?;
        write_u64(sink, origin.inode)?;
        sink.write_all(b",\"offset\":")?;
        write_u64(sink, offset)?;
        if let Some(rotated) = &origin.rotated {
            sink.write_all(b",\"rotated\":")?;
            sink.write_all(rotated.as_bytes())?;
        }
        if lossy {
            sink.write_all(b",\"lossy\":true")?;
        }
        if truncated {
            sink.write_all(b",\"truncated\":true")?;
        }
        if self.syslog {
            write_parsed(sink, &text, &mut self.clock, self.sshd)?;
        }
        sink.write_all(b"}\n")?;
        Ok(())
    }
}

/// Adds `"syslog"` (and `"sshd"` for an sshd login line) to the record being written.
fn write_parsed(
    sink: &mut impl Write,
    text: &str,
    clock: &mut parse::Clock,
    sshd: bool,
) -> anyhow::Result<()> {
    let Some(syslog) = parse::syslog(text, clock) else { return Ok(()) };
    sink.write_all(b",\"syslog\":{\"time\":")?;
    write_json_opt(sink, syslog.time.as_deref())?;
    sink.write_all(b",\"host\":")?;
    write_json_str(sink, syslog.host)?;
    sink.write_all(b",\"program\":")?;
    write_json_str(sink, syslog.program)?;
    sink.write_all(b",\"pid\":")?;
    match syslog.pid {
        Some(pid) => write_u64(sink, pid)?,
        None => sink.write_all(b"null")?,
    }
    sink.write_all(b",\"message\":")?;
    write_json_str(sink, syslog.message)?;
    sink.write_all(b"}")?;
    if sshd
        && parse::is_sshd(syslog.program)
        && let Some(event) = parse::sshd(syslog.message)
    {
        sink.write_all(b",\"sshd\":{\"event\":\"")?;
        sink.write_all(event.event.as_bytes())?;
        sink.write_all(b"\",\"user\":")?;
        write_json_opt(sink, event.user)?;
        sink.write_all(b",\"ip\":")?;
        write_json_str(sink, event.ip)?;
        sink.write_all(b",\"port\":")?;
        match event.port {
            Some(port) => write_u64(sink, u64::from(port))?,
            None => sink.write_all(b"null")?,
        }
        sink.write_all(b",\"method\":")?;
        write_json_opt(sink, event.method)?;
        sink.write_all(b"}")?;
    }
    Ok(())
}

/// At most `max` bytes of `line`, cut at a character boundary when the text is UTF-8; true
/// when something was cut.
fn cut_at(line: &[u8], max: usize) -> (&[u8], bool) {
    if line.len() <= max {
        return (line, false);
    }
    let mut end = max;
    // Step back over UTF-8 continuation bytes so a character is not split.
    while end > 0 && max - end < 3 && (line[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    if (line[end] & 0xC0) == 0x80 {
        end = max;
    }
    (&line[..end], true)
}

/// Writes `text` as a JSON string. Most log lines need no escaping: that is checked eight
/// bytes at a time, and only the others go through serde_json's escaper.
fn write_json_str(sink: &mut impl Write, text: &str) -> std::io::Result<()> {
    if needs_escape(text.as_bytes()) {
        return serde_json::to_writer(sink, text).map_err(std::io::Error::from);
    }
    sink.write_all(b"\"")?;
    sink.write_all(text.as_bytes())?;
    sink.write_all(b"\"")
}

fn write_json_opt(sink: &mut impl Write, text: Option<&str>) -> std::io::Result<()> {
    match text {
        Some(text) => write_json_str(sink, text),
        None => sink.write_all(b"null"),
    }
}

/// True when some byte is a control character, `"` or `\\`.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS != 0;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let x = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        // A byte below 0x20 (a high byte never is), or equal to '"' or '\\'.
        let below = x.wrapping_sub(ONES * 0x20) & !x & HIGHS != 0;
        if below
            || has_zero(x ^ (ONES * u64::from(b'"')))
            || has_zero(x ^ (ONES * u64::from(b'\\')))
        {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string always serialises")
}

fn write_u64(sink: &mut impl Write, mut n: u64) -> std::io::Result<()> {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    sink.write_all(&digits[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0, 7, 10, 1234567890, u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, n).unwrap();
            assert_eq!(out, n.to_string().as_bytes());
        }
    }

    #[test]
    fn strings_are_escaped_exactly_as_serde_json_does() {
        for text in [
            "plain text of some length",
            "q\"uote",
            "back\\slash",
            "tab\tx",
            "\u{1}",
            "é ünï",
            "1234567\"",
            "",
        ] {
            let mut out = Vec::new();
            write_json_str(&mut out, text).unwrap();
            assert_eq!(out, serde_json::to_vec(text).unwrap(), "{text:?}");
        }
        for at in 0..16 {
            let mut bytes = vec![b'a'; 16];
            bytes[at] = b'\\';
            assert!(needs_escape(&bytes));
            bytes[at] = 0x1f;
            assert!(needs_escape(&bytes));
            bytes[at] = 0x20;
            assert!(!needs_escape(&bytes));
        }
    }

    #[test]
    fn cutting_keeps_characters_whole() {
        assert_eq!(cut_at("aé".as_bytes(), 2), (&b"a"[..], true));
        assert_eq!(cut_at(b"abc", 3), (&b"abc"[..], false));
        assert_eq!(cut_at(b"abcd", 2), (&b"ab"[..], true));
    }
}
