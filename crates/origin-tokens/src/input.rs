//! Where lines come from: log files (plain or gzip, put in order by their first date),
//! standard input, and `kind: "line"` records from `log-tail` on either.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;
use crossbeam_channel::select;
use flate2::read::MultiGzDecoder;
use opsline::{Code, Shutdown, WithCode};

use crate::engine::Flow;
use crate::parse::{LineTime, Parsed, parse_line};
use crate::prepare::{Block, Preparer};

const BUFFER: usize = 1 << 20;
/// The size of a block for the preparers: the blocks in flight (the bytes and an entry a line)
/// are most of the memory a run takes.
const BLOCK: usize = 512 << 10;
/// Blocks handed to each preparer at a time: enough to keep it busy while the engine works.
const BLOCKS_AHEAD: usize = 2;
/// How far into a file to look for its first date when ordering files.
const ORDER_SCAN_LINES: usize = 200_000;

/// Opens a log file, decompressing it when it starts with the gzip magic bytes. A plain file
/// is read directly: [`feed`] does its own buffering.
pub fn open(path: &Path) -> anyhow::Result<Box<dyn Read + Send>> {
    let mut file =
        File::open(path).with_code(Code::NoInput, || format!("cannot open {}", path.display()))?;
    let mut magic = Vec::with_capacity(2);
    (&mut file)
        .take(2)
        .read_to_end(&mut magic)
        .with_code(Code::IoErr, || format!("cannot read {}", path.display()))?;
    file.seek(SeekFrom::Start(0))
        .with_code(Code::IoErr, || format!("cannot read {}", path.display()))?;
    if magic == [0x1f, 0x8b] {
        Ok(Box::new(MultiGzDecoder::new(BufReader::with_capacity(BUFFER, file))))
    } else {
        Ok(Box::new(file))
    }
}

/// The files in the order of the first date each states; files with no date in their first
/// lines keep their place after the dated ones.
pub fn order_by_first_date(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    if paths.len() < 2 {
        return Ok(paths.to_vec());
    }
    let mut keyed = Vec::with_capacity(paths.len());
    for path in paths {
        let first = first_date(open(path)?)
            .with_code(Code::IoErr, || format!("cannot read {}", path.display()))?;
        if first.is_none() {
            tracing::warn!(
                "{}: no date in its first lines; read after the dated files",
                path.display()
            );
        }
        keyed.push((first.is_none(), first, path.clone()));
    }
    keyed.sort_by_key(|(undated, first, _)| (*undated, *first));
    Ok(keyed.into_iter().map(|(_, _, p)| p).collect())
}

fn first_date(reader: impl Read) -> io::Result<Option<NaiveDateTime>> {
    let mut found = None;
    let mut seen = 0;
    feed(reader, |raw| {
        seen += 1;
        if let Parsed::Line(line) = parse_line(&unwrap_record(raw).unwrap_or_default()) {
            let secs = match line.time {
                LineTime::Clock(secs) | LineTime::Stamp { secs, .. } => secs,
            };
            let date = match line.time {
                LineTime::Stamp { date, .. } => Some(date),
                LineTime::Clock(_) => line.message.anchor().map(|(date, _)| date),
            };
            found = date.and_then(|d| d.and_hms_opt(secs / 3600, secs / 60 % 60, secs % 60));
        }
        Ok(if found.is_some() || seen >= ORDER_SCAN_LINES { Flow::Stop } else { Flow::Continue })
    })
    .map_err(io::Error::other)?;
    Ok(found)
}

/// A log line as given, or the `line` field of a JSON record (`log-tail` output). `None` for
/// a record without one.
pub fn unwrap_record(raw: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    if raw.first() != Some(&b'{') {
        return Some(std::borrow::Cow::Borrowed(raw));
    }
    let value: serde_json::Value = serde_json::from_slice(raw).ok()?;
    let line = value.get("line")?.as_str()?;
    Some(std::borrow::Cow::Owned(line.as_bytes().to_vec()))
}

/// Calls `f` with every line of `reader` (without the newline), reading large blocks and
/// never copying a line.
pub fn feed(
    mut reader: impl Read,
    mut f: impl FnMut(&[u8]) -> anyhow::Result<Flow>,
) -> anyhow::Result<Flow> {
    let mut buf = vec![0u8; BUFFER];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        let n = match reader.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            if filled > 0 {
                return f(&buf[..filled]);
            }
            return Ok(Flow::Continue);
        }
        let end = filled + n;
        let (consumed, flow) = lines(&buf[..end], &mut f)?;
        if flow == Flow::Stop {
            return Ok(Flow::Stop);
        }
        buf.copy_within(consumed..end, 0);
        filled = end - consumed;
    }
}

/// Calls `f` for each complete line in `data`; returns how many bytes were consumed.
fn lines(
    data: &[u8],
    f: &mut impl FnMut(&[u8]) -> anyhow::Result<Flow>,
) -> anyhow::Result<(usize, Flow)> {
    let mut start = 0;
    for nl in memchr::memchr_iter(b'\n', data) {
        if f(&data[start..nl])? == Flow::Stop {
            return Ok((nl + 1, Flow::Stop));
        }
        start = nl + 1;
    }
    Ok((start, Flow::Continue))
}

/// Reads `reader` in blocks of whole lines, has `preparers` work on them on threads of their
/// own, and gives them back to `f` in order. Reading has a thread of its own too, so that the
/// calling thread does nothing but `f`: it is the one that cannot be shared.
pub fn feed_blocks(
    reader: impl Read + Send,
    preparers: &mut [Preparer],
    mut f: impl FnMut(&mut Block) -> anyhow::Result<Flow>,
) -> anyhow::Result<Flow> {
    std::thread::scope(|scope| {
        let mut jobs = Vec::with_capacity(preparers.len());
        let mut done = Vec::with_capacity(preparers.len());
        for preparer in preparers.iter_mut() {
            let (job_sender, job_receiver) = crossbeam_channel::bounded::<Block>(BLOCKS_AHEAD);
            let (done_sender, done_receiver) = crossbeam_channel::bounded::<Block>(BLOCKS_AHEAD);
            scope.spawn(move || {
                for mut block in job_receiver {
                    preparer.block(&mut block);
                    if done_sender.send(block).is_err() {
                        return;
                    }
                }
            });
            jobs.push(job_sender);
            done.push(done_receiver);
        }
        let (order_sender, order) = crossbeam_channel::unbounded::<io::Result<usize>>();
        // Room for every block that can be in flight, so that none is dropped and made anew
        // (a new block's memory is faulted in and zeroed page by page by the kernel).
        let in_flight = jobs.len() * (2 * BLOCKS_AHEAD + 1) + 2;
        let (spare_sender, spare) = crossbeam_channel::bounded::<Block>(in_flight);
        scope.spawn(move || {
            if let Err(e) = deal(reader, &jobs, &order_sender, &spare) {
                let _ = order_sender.send(Err(e));
            }
        });
        for worker in order {
            let mut block = done[worker?].recv()?;
            if f(&mut block)? == Flow::Stop {
                return Ok(Flow::Stop);
            }
            let _ = spare_sender.try_send(block);
        }
        Ok(Flow::Continue)
    })
}

/// Reads blocks and deals them to the preparers in turn, telling `order` whose turn it was;
/// buffers come back through `spare`. Ends at the end of the input or when nobody listens.
fn deal(
    reader: impl Read,
    jobs: &[crossbeam_channel::Sender<Block>],
    order: &crossbeam_channel::Sender<io::Result<usize>>,
    spare: &crossbeam_channel::Receiver<Block>,
) -> io::Result<()> {
    let mut blocks = Blocks::new(reader);
    for worker in (0..jobs.len()).cycle() {
        let Some(block) = blocks.next(spare.try_recv().unwrap_or_default())? else { break };
        if jobs[worker].send(block).is_err() || order.send(Ok(worker)).is_err() {
            break;
        }
    }
    Ok(())
}

/// Cuts a reader into blocks of whole lines.
struct Blocks<R> {
    reader: R,
    /// The start of a line that the previous block could not hold whole.
    carry: Vec<u8>,
    end: bool,
}

impl<R: Read> Blocks<R> {
    fn new(reader: R) -> Self {
        Blocks { reader, carry: Vec::new(), end: false }
    }

    /// The next block, in `block`'s buffer; `None` at the end of the input.
    fn next(&mut self, mut block: Block) -> io::Result<Option<Block>> {
        let bytes = &mut block.bytes;
        bytes.clear();
        bytes.append(&mut self.carry);
        // The carried start of a line holds no line end; only what is read next is searched.
        let mut last_end = None;
        while !self.end {
            // Read no more than the buffer holds: growing it would copy the block.
            bytes.reserve(BLOCK.saturating_sub(bytes.len()).max(BLOCK / 4));
            let (before, want) = (bytes.len(), bytes.capacity() - bytes.len());
            let n = (&mut self.reader).take(want as u64).read_to_end(bytes)?;
            self.end = n == 0;
            if let Some(at) = memchr::memrchr(b'\n', &bytes[before..]) {
                last_end = Some(before + at);
            }
            if let Some(last) = last_end.filter(|_| bytes.len() >= BLOCK) {
                self.carry.extend_from_slice(&bytes[last + 1..]);
                bytes.truncate(last + 1);
                break;
            }
        }
        Ok((!bytes.is_empty()).then_some(block))
    }
}

/// Like [`feed`] on standard input, read on a thread of its own so that a stop (SIGTERM) is
/// noticed while the input is idle (`log-tail --follow | origin-tokens …`). `idle` is called
/// after each block, for periodic work such as saving state.
pub fn feed_stdin(
    shutdown: &Shutdown,
    mut f: impl FnMut(&[u8]) -> anyhow::Result<Flow>,
    mut idle: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Flow> {
    let (sender, blocks) = crossbeam_channel::bounded::<io::Result<Vec<u8>>>(16);
    std::thread::Builder::new().name("stdin".into()).spawn(move || {
        let mut stdin = io::stdin().lock();
        loop {
            let mut block = vec![0u8; BUFFER / 4];
            let n = match stdin.read(&mut block) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = sender.send(Err(e));
                    return;
                }
            };
            block.truncate(n);
            if sender.send(Ok(block)).is_err() || n == 0 {
                return;
            }
        }
    })?;
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let block = select! {
            recv(blocks) -> block => block.unwrap_or_else(|_| Ok(Vec::new())),
            recv(shutdown.receiver()) -> _ => return Ok(Flow::Stop),
        }
        .code(Code::IoErr, "cannot read standard input")?;
        if block.is_empty() {
            return if carry.is_empty() { Ok(Flow::Continue) } else { f(&carry) };
        }
        carry.extend_from_slice(&block);
        let (consumed, flow) = lines(&carry, &mut f)?;
        if flow == Flow::Stop {
            return Ok(Flow::Stop);
        }
        carry.drain(..consumed);
        idle()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_splits_lines_across_blocks_and_keeps_the_last_partial_line() {
        let data = b"one\ntwo\r\n\nthree".repeat(100_000);
        let mut count = 0;
        feed(&data[..], |_| {
            count += 1;
            Ok(Flow::Continue)
        })
        .unwrap();
        assert_eq!(count, 3 * 100_000 + 1);
    }

    #[test]
    fn records_give_their_line() {
        assert_eq!(
            unwrap_record(br#"{"kind":"line","line":" 9:00:00 (x) y"}"#).unwrap().as_ref(),
            b" 9:00:00 (x) y"
        );
        assert!(unwrap_record(br#"{"kind":"other"}"#).is_none());
    }
}
