//! Splitting a byte stream into lines in large blocks, holding back an incomplete last line and
//! cutting lines that would not fit in memory.

use std::io::{self, Read};

use memchr::{memchr, memrchr};

/// Bytes read per system call when lines are encoded: each block is encoded on a worker
/// thread while the next ones are read and the earlier ones written.
pub const CHUNK: usize = 512 << 10;

/// Bytes read per system call when lines are only copied through: small enough to stay in
/// the CPU cache between the read and the write (as cat's buffer does).
pub const COPY_CHUNK: usize = 128 << 10;

/// Whole lines read from a file, handed over by value so that they can be encoded on another
/// thread while the next ones are read.
#[derive(Debug)]
pub struct Block {
    /// The buffer read into; the lines are `buf[start..end]`.
    pub buf: Vec<u8>,
    /// Where the lines start in `buf`.
    pub start: usize,
    /// Where they end.
    pub end: usize,
    /// Where they start in the file.
    pub offset: u64,
}

impl Block {
    /// The lines: each ends in `\n`, except that the last one lacks it when a finished file
    /// ends without a newline.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
}

/// Receives what [`LineReader::read`] finds.
pub trait LineSink {
    /// Whole lines (see [`Block::data`]).
    fn block(&mut self, block: Block) -> anyhow::Result<()>;
    /// A buffer to read the next block into: one of an earlier block that is done with, or a
    /// new empty one.
    fn recycle(&mut self) -> Vec<u8>;
    /// A line longer than the limit: its first `prefix.len()` bytes, starting at `offset`.
    fn long_line(&mut self, prefix: &[u8], offset: u64) -> anyhow::Result<()>;
    /// Everything before `offset` has been handed over (a moment to save the position).
    fn consumed(&mut self, offset: u64) -> anyhow::Result<()>;
    /// Asked after each read: false when the file was truncated meanwhile (its first bytes
    /// changed), so the bytes just read may belong to the new content and are dropped.
    fn unchanged(&mut self) -> anyhow::Result<bool> {
        Ok(true)
    }
}

/// A reusable line splitter. It holds one buffer of about one chunk (up to `max_line` for a
/// long line) at a time, whatever the file's size; the buffers it hands over come back
/// through [`LineSink::recycle`].
#[derive(Debug)]
pub struct LineReader {
    buf: Vec<u8>,
    chunk: usize,
    max_line: usize,
    long: Vec<u8>,
}

impl LineReader {
    /// A splitter that reads `chunk` bytes at a time and cuts lines longer than `max_line`.
    pub fn new(chunk: usize, max_line: usize) -> Self {
        LineReader { buf: Vec::new(), chunk, max_line, long: Vec::new() }
    }

    /// Reads `src` (positioned at file offset `start`) to its end and hands over every complete
    /// line. With `finish` the last line counts even without a newline (the file will not grow
    /// any more). Returns the offset after the last line handed over.
    pub fn read(
        &mut self,
        src: &mut dyn Read,
        start: u64,
        finish: bool,
        sink: &mut dyn LineSink,
    ) -> anyhow::Result<u64> {
        if self.buf.len() < self.chunk {
            self.buf = vec![0; self.chunk];
        }
        let mut lo = 0;
        let mut hi = 0;
        // File offset of buf[lo].
        let mut base = start;
        // The start of a too-long line whose end has not been seen yet; its prefix is in `long`.
        let mut long_start: Option<u64> = None;
        loop {
            if lo == hi {
                (lo, hi) = (0, 0);
            } else if hi == self.buf.len() {
                if lo > 0 {
                    self.buf.copy_within(lo..hi, 0);
                    (lo, hi) = (0, hi - lo);
                } else if self.buf.len() <= self.max_line {
                    let grown = (self.buf.len() * 2).min(self.max_line + 1);
                    self.buf.resize(grown, 0);
                }
            }
            if long_start.is_none() && hi - lo > self.max_line {
                self.long.clear();
                self.long.extend_from_slice(&self.buf[lo..lo + self.max_line]);
                long_start = Some(base);
                base += (hi - lo) as u64;
                (lo, hi) = (0, 0);
            }
            let n = read_some(src, &mut self.buf[hi..])?;
            if n == 0 {
                break;
            }
            if !sink.unchanged()? {
                return Ok(long_start.unwrap_or(base));
            }
            if let Some(line_start) = long_start {
                match memchr(b'\n', &self.buf[hi..hi + n]) {
                    None => {
                        base += n as u64;
                        continue;
                    }
                    Some(at) => {
                        sink.long_line(&self.long, line_start)?;
                        long_start = None;
                        base += (at + 1) as u64;
                        lo = hi + at + 1;
                    }
                }
            }
            hi += n;
            if let Some(at) = memrchr(b'\n', &self.buf[lo..hi]) {
                let end = lo + at + 1;
                self.hand_over(lo, end, hi, base, sink)?;
                base += (end - lo) as u64;
                (lo, hi) = (0, hi - end);
                sink.consumed(base)?;
            }
        }
        self.finish_tail(lo, hi, base, long_start, finish, sink)
    }

    fn finish_tail(
        &mut self,
        lo: usize,
        hi: usize,
        base: u64,
        long_start: Option<u64>,
        finish: bool,
        sink: &mut dyn LineSink,
    ) -> anyhow::Result<u64> {
        match long_start {
            Some(line_start) if !finish => Ok(line_start),
            Some(line_start) => {
                sink.long_line(&self.long, line_start)?;
                sink.consumed(base)?;
                Ok(base)
            }
            None if finish && hi > lo => {
                self.hand_over(lo, hi, hi, base, sink)?;
                let end = base + (hi - lo) as u64;
                sink.consumed(end)?;
                Ok(end)
            }
            None => Ok(base),
        }
    }

    /// Hands `buf[lo..end]` (starting at file offset `offset`) over and goes on in another
    /// buffer, into which the incomplete line `buf[end..hi]` is carried.
    fn hand_over(
        &mut self,
        lo: usize,
        end: usize,
        hi: usize,
        offset: u64,
        sink: &mut dyn LineSink,
    ) -> anyhow::Result<()> {
        let mut next = sink.recycle();
        let size = self.chunk.max(hi - end);
        if next.len() < size {
            next.resize(size, 0);
        }
        next[..hi - end].copy_from_slice(&self.buf[end..hi]);
        let buf = std::mem::replace(&mut self.buf, next);
        sink.block(Block { buf, start: lo, end, offset })
    }
}

fn read_some(src: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match src.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect {
        lines: Vec<(Vec<u8>, u64, bool)>,
        spare: Vec<Vec<u8>>,
    }

    impl LineSink for Collect {
        fn block(&mut self, block: Block) -> anyhow::Result<()> {
            let mut at = 0;
            for line in block.data().split_inclusive(|&b| b == b'\n') {
                let text = line.strip_suffix(b"\n").unwrap_or(line);
                self.lines.push((text.to_vec(), block.offset + at, false));
                at += line.len() as u64;
            }
            self.spare.push(block.buf);
            Ok(())
        }
        fn recycle(&mut self) -> Vec<u8> {
            self.spare.pop().unwrap_or_default()
        }
        fn long_line(&mut self, prefix: &[u8], offset: u64) -> anyhow::Result<()> {
            self.lines.push((prefix.to_vec(), offset, true));
            Ok(())
        }
        fn consumed(&mut self, _offset: u64) -> anyhow::Result<()> {
            Ok(())
        }
    }

    fn read(data: &[u8], max_line: usize, finish: bool) -> (Vec<(Vec<u8>, u64, bool)>, u64) {
        let mut sink = Collect::default();
        let end =
            LineReader::new(CHUNK, max_line).read(&mut &data[..], 10, finish, &mut sink).unwrap();
        (sink.lines, end)
    }

    #[test]
    fn holds_back_a_partial_last_line_unless_finishing() {
        let (lines, end) = read(b"a\nbb\ncc", 100, false);
        assert_eq!(lines, [(b"a".to_vec(), 10, false), (b"bb".to_vec(), 12, false)]);
        assert_eq!(end, 15);
        let (lines, end) = read(b"a\nbb\ncc", 100, true);
        assert_eq!(lines.last(), Some(&(b"cc".to_vec(), 15, false)));
        assert_eq!(end, 17);
    }

    #[test]
    fn cuts_a_line_longer_than_the_buffer_and_carries_on() {
        let mut data = vec![b'x'; 3 * CHUNK];
        data.extend_from_slice(b"\nafter\n");
        let (lines, end) = read(&data, 1000, false);
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[0].0.len(), lines[0].1, lines[0].2), (1000, 10, true));
        assert_eq!(lines[1], (b"after".to_vec(), 10 + 3 * CHUNK as u64 + 1, false));
        assert_eq!(end, 10 + data.len() as u64);
    }

    #[test]
    fn an_unfinished_long_line_is_not_consumed() {
        let data = vec![b'y'; CHUNK + 5];
        let (lines, end) = read(&data, 100, false);
        assert!(lines.is_empty());
        assert_eq!(end, 10);
    }

    #[test]
    fn lines_up_to_the_limit_grow_the_buffer() {
        let mut data = vec![b'z'; CHUNK + 10];
        data.push(b'\n');
        let (lines, _) = read(&data, 2 * CHUNK, false);
        assert_eq!((lines[0].0.len(), lines[0].2), (CHUNK + 10, false));
    }
}
