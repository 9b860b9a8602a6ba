//! Turning lines into output: the filter first, then a hand-written JSON record (the hot path
//! of a 10-million-line file) or the bare line.

use std::borrow::Cow;
use std::fs::File;
use std::io::Write;
use std::sync::Arc;

use chrono::{DateTime, Local};
use clap::ValueEnum;
use memchr::memchr_iter;
use opsline::{Code, Record, RecordWriter};

use crate::ParseKind;
use crate::filter::{Filter, trim_cr};
use crate::json::{self, Json};
use crate::parse;
use crate::reader::Block;
use crate::workers::{Done, Workers};

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
    /// `,"inode":N,"offset":`, the same for every record.
    inode_field: String,
}

impl Origin {
    /// Lines of `log` read from `file` (the log itself or one of its rotated files).
    pub fn new(log: &str, file: &str, inode: u64) -> Self {
        let rotated = (file != log).then(|| json::string(file));
        let inode_field = format!(",\"inode\":{inode},\"offset\":");
        Origin { path: json::string(log), rotated, inode_field }
    }
}

/// Filters and writes lines.
#[derive(Debug)]
pub struct Emitter {
    out: RecordWriter<File>,
    /// Encodes on this thread: long lines, and every line on a machine with one core.
    encoder: Encoder,
    /// Encode blocks while this thread reads and writes; started at the first block.
    workers: Option<Workers>,
    /// How many workers to start (none: encode on this thread).
    threads: usize,
    /// Output of `encoder`.
    buffer: Vec<u8>,
    /// Read buffers to reuse.
    spare: Vec<Vec<u8>>,
    /// Flush after every block (following: records reach the reader at once).
    flush_each: bool,
}

/// The capacity asked for a pipe on standard output: the most Linux gives an unprivileged
/// process by default.
const PIPE_SIZE: i32 = 1 << 20;

/// When standard output is a pipe, lets it hold 1 MiB instead of 64 KiB, so that the blocks
/// of records go into it in a few large writes instead of waking the reader and this process
/// in turn every 64 KiB. Where that is refused (not a pipe, the user's pipe quota used up)
/// the output stays as it is.
pub fn widen_stdout_pipe() {
    nix::fcntl::fcntl(std::io::stdout(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE)).ok();
}

/// Worker threads at most: two keep the output flowing; more would hold more blocks in
/// memory at once.
const MAX_WORKERS: usize = 2;

/// Picks the lines of a block and turns them into output bytes.
#[derive(Debug, Clone)]
pub struct Encoder {
    filter: Filter,
    lines: LineEncoder,
}

/// The time records are stamped with, taken once per block (the clock is not read per
/// line).
#[derive(Debug, Clone)]
pub struct Stamp {
    ts: String,
    now: DateTime<Local>,
}

impl Stamp {
    fn take() -> Self {
        let now = Local::now();
        Stamp { ts: opsline::time::rfc3339(&now), now }
    }
}

/// Turns one line into output bytes.
#[derive(Debug, Clone)]
struct LineEncoder {
    format: Format,
    syslog: bool,
    sshd: bool,
    max_line: usize,
    clock: parse::Clock,
    ts: String,
    /// `{"kind":"line","ts":…,"path":…,"line":`, the same for every record of a block.
    head: Vec<u8>,
}

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
        let lines = LineEncoder {
            format,
            syslog,
            sshd,
            max_line,
            clock: parse::Clock::new(Local::now()),
            ts: String::new(),
            head: Vec::new(),
        };
        let encoder = Encoder { filter, lines };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = if cores > 1 { cores.min(MAX_WORKERS) } else { 0 };
        Emitter {
            out,
            encoder,
            workers: None,
            threads,
            buffer: Vec::new(),
            spare: Vec::new(),
            flush_each,
        }
    }

    /// Writes the lines of `block` that pass the filter, after those of earlier blocks.
    pub fn block(&mut self, origin: &Arc<Origin>, block: Block) -> anyhow::Result<()> {
        if self.encoder.lines.format == Format::Raw && self.encoder.filter.is_empty() {
            self.raw_block(origin, block.data(), block.offset)?;
            self.spare.push(block.buf);
            return self.flushed();
        }
        let stamp = Stamp::take();
        if self.threads == 0 {
            self.encoder.set_time(&stamp);
            self.encoder.block(origin, block.data(), block.offset, &mut self.buffer);
            self.write_buffer()?;
            self.spare.push(block.buf);
            return self.flushed();
        }
        let workers =
            self.workers.get_or_insert_with(|| Workers::start(&self.encoder, self.threads));
        workers.submit(block, Arc::clone(origin), stamp);
        if workers.full() {
            self.write_oldest()?;
        }
        self.flushed()
    }

    /// A buffer to read into: one of a block already written, or a new one.
    pub fn recycle(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_default()
    }

    /// Bare lines without a filter: copied through in pieces of at most `--max-line` bytes
    /// (whole lines, so none of them needs cutting); a longer line goes through the encoder.
    fn raw_block(&mut self, origin: &Origin, data: &[u8], offset: u64) -> anyhow::Result<()> {
        let max_line = self.encoder.lines.max_line;
        let mut rest = data;
        let mut at = offset;
        while !rest.is_empty() {
            let piece = if rest.len() <= max_line {
                rest.len()
            } else {
                memchr::memrchr(b'\n', &rest[..=max_line]).map_or(0, |i| i + 1)
            };
            let piece = if piece > 0 {
                self.out.sink().write_all(&rest[..piece])?;
                if !rest[..piece].ends_with(b"\n") {
                    self.out.sink().write_all(b"\n")?;
                }
                piece
            } else {
                let end = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
                self.encoder.set_time(&Stamp::take());
                self.encoder.block(origin, &rest[..end], at, &mut self.buffer);
                self.write_buffer()?;
                end
            };
            rest = &rest[piece..];
            at += piece as u64;
        }
        Ok(())
    }

    /// Writes a line that was cut at the length limit, if it passes the filter.
    pub fn long_line(&mut self, origin: &Origin, prefix: &[u8], offset: u64) -> anyhow::Result<()> {
        self.drain()?;
        if self.encoder.filter.keeps(prefix) {
            self.encoder.set_time(&Stamp::take());
            self.encoder.lines.start(origin);
            self.encoder.lines.line(origin, prefix, offset, true, &mut self.buffer);
            self.write_buffer()?;
        }
        self.flushed()
    }

    fn write_buffer(&mut self) -> std::io::Result<()> {
        self.out.sink().write_all(&self.buffer)?;
        self.buffer.clear();
        Ok(())
    }

    /// Writes the output of the oldest block out with the workers; false when none is out.
    fn write_oldest(&mut self) -> anyhow::Result<bool> {
        let Some(Done { out, input }) = self.workers.as_mut().and_then(Workers::take) else {
            return Ok(false);
        };
        self.out.sink().write_all(&out)?;
        self.spare.push(input);
        if let Some(workers) = &mut self.workers {
            workers.give_back(out);
        }
        Ok(true)
    }

    /// Writes the output of every block out with the workers.
    fn drain(&mut self) -> anyhow::Result<()> {
        while self.write_oldest()? {}
        Ok(())
    }

    fn flushed(&mut self) -> anyhow::Result<()> {
        if self.flush_each {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes a record made elsewhere (journal entries) if its `line` passes the filter.
    pub fn record(&mut self, record: &mut Record, line: &str) -> anyhow::Result<()> {
        self.drain()?;
        if !self.encoder.filter.keeps(line.as_bytes()) {
            return Ok(());
        }
        if self.encoder.lines.format == Format::Raw {
            self.out.write_line(line.as_bytes())?;
            return Ok(());
        }
        if self.encoder.lines.sshd
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

    /// Pushes every record of the blocks handed over so far out (before the position that
    /// covers them is saved).
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.drain()?;
        Ok(self.out.flush()?)
    }

    /// Flushes and returns the exit status the records call for.
    pub fn finish(mut self) -> anyhow::Result<Code> {
        self.drain()?;
        Ok(self.out.finish()?)
    }
}

impl Encoder {
    /// Stamps the records that follow with `stamp`.
    pub fn set_time(&mut self, stamp: &Stamp) {
        self.lines.ts.clone_from(&stamp.ts);
        self.lines.clock.set_now(stamp.now);
    }

    /// Encodes the lines of `data` that pass the filter into `out`.
    pub fn block(&mut self, origin: &Origin, data: &[u8], offset: u64, out: &mut Vec<u8>) {
        self.lines.start(origin);
        if self.filter.has_match() {
            let lines = &mut self.lines;
            self.filter.each_match(data, |start, end| {
                lines.line(origin, &data[start..end], offset + start as u64, false, out);
            });
            return;
        }
        let mut start = 0;
        for end in memchr_iter(b'\n', data) {
            self.filtered_line(origin, &data[start..end], offset + start as u64, out);
            start = end + 1;
        }
        if start < data.len() {
            self.filtered_line(origin, &data[start..], offset + start as u64, out);
        }
    }

    fn filtered_line(&mut self, origin: &Origin, raw: &[u8], offset: u64, out: &mut Vec<u8>) {
        if self.filter.is_empty() || self.filter.keeps(trim_cr(raw)) {
            self.lines.line(origin, raw, offset, false, out);
        }
    }
}

impl LineEncoder {
    /// Prepares the part every record of a block from `origin` starts with.
    fn start(&mut self, origin: &Origin) {
        let head = &mut self.head;
        head.clear();
        head.extend_from_slice(b"{\"kind\":\"line\",\"ts\":\"");
        head.extend_from_slice(self.ts.as_bytes());
        head.extend_from_slice(b"\",\"path\":");
        head.extend_from_slice(origin.path.as_bytes());
        head.extend_from_slice(b",\"line\":");
    }

    /// Encodes one line (without its newline) into `sink`; `cut` says it was cut already.
    fn line(&mut self, origin: &Origin, raw: &[u8], offset: u64, cut: bool, sink: &mut Vec<u8>) {
        let (bytes, shortened) = cut_at(raw, self.max_line);
        let truncated = cut || shortened;
        if self.format == Format::Raw {
            sink.extend_from_slice(bytes);
            sink.push(b'\n');
            return;
        }
        let (text, lossy) = match std::str::from_utf8(trim_cr(bytes)) {
            Ok(text) => (Cow::Borrowed(text), false),
            Err(_) => (String::from_utf8_lossy(trim_cr(bytes)), true),
        };
        let mut json = Json::new(sink, &text);
        json.raw(&self.head);
        json.str(&text);
        json.raw(origin.inode_field.as_bytes());
        json.u64(offset);
        if let Some(rotated) = &origin.rotated {
            json.raw(b",\"rotated\":");
            json.raw(rotated.as_bytes());
        }
        if lossy {
            json.raw(b",\"lossy\":true");
        }
        if truncated {
            json.raw(b",\"truncated\":true");
        }
        if self.syslog {
            write_parsed(&mut json, &text, &mut self.clock, self.sshd);
        }
        json.raw(b"}\n");
    }
}

/// Adds `"syslog"` (and `"sshd"` for an sshd login line) to the record being written.
fn write_parsed(json: &mut Json<'_>, text: &str, clock: &mut parse::Clock, sshd: bool) {
    let Some(syslog) = parse::syslog(text, clock) else { return };
    json.raw(b",\"syslog\":{\"time\":");
    json.opt_str(syslog.time);
    json.raw(b",\"host\":");
    json.str(syslog.host);
    json.raw(b",\"program\":");
    json.str(syslog.program);
    json.raw(b",\"pid\":");
    json.opt_u64(syslog.pid);
    json.raw(b",\"message\":");
    json.str(syslog.message);
    json.raw(b"}");
    if sshd
        && parse::is_sshd(syslog.program)
        && let Some(event) = parse::sshd(syslog.message)
    {
        json.raw(b",\"sshd\":{\"event\":\"");
        json.raw(event.event.as_bytes());
        json.raw(b"\",\"user\":");
        json.opt_str(event.user);
        json.raw(b",\"ip\":");
        json.str(event.ip);
        json.raw(b",\"port\":");
        json.opt_u64(event.port.map(u64::from));
        json.raw(b",\"method\":");
        json.opt_str(event.method);
        json.raw(b"}");
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutting_keeps_characters_whole() {
        assert_eq!(cut_at("aé".as_bytes(), 2), (&b"a"[..], true));
        assert_eq!(cut_at(b"abc", 3), (&b"abc"[..], false));
        assert_eq!(cut_at(b"abcd", 2), (&b"ab"[..], true));
    }
}
