//! Encoding blocks of lines on worker threads while the main thread reads the next blocks and
//! writes the finished ones, in order.
//!
//! Each worker has its own lane (a job channel and a result channel) and blocks are handed
//! to the lanes in turn, so the results come back in order by taking them from the lanes in
//! the same turn.

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::emit::{Encoder, Origin, Stamp};
use crate::reader::Block;

/// Blocks handed to one worker and not yet taken back: one being encoded, one waiting, so the
/// worker seldom waits for the main thread.
const PER_WORKER: usize = 2;

/// A block to encode.
struct Job {
    block: Block,
    origin: Arc<Origin>,
    stamp: Stamp,
    out: Vec<u8>,
}

/// An encoded block: its output, and its input buffer to read into again.
#[derive(Debug)]
pub struct Done {
    /// The records (or lines) to write.
    pub out: Vec<u8>,
    /// The buffer the block was read into.
    pub input: Vec<u8>,
}

struct Lane {
    jobs: Option<Sender<Job>>,
    done: Receiver<Done>,
    thread: Option<JoinHandle<()>>,
}

/// The worker threads.
pub struct Workers {
    lanes: Vec<Lane>,
    /// The lane the next block goes to.
    next: usize,
    /// The lanes of the blocks handed out and not taken back, oldest first.
    pending: VecDeque<usize>,
    /// Output buffers to reuse.
    spare: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers").field("threads", &self.lanes.len()).finish_non_exhaustive()
    }
}

impl Workers {
    /// Starts `count` workers, each with its own copy of `encoder` (and so its own regex
    /// caches).
    pub fn start(encoder: &Encoder, count: usize) -> Self {
        let lanes = (0..count)
            .map(|_| {
                let (jobs, inbox) = bounded::<Job>(PER_WORKER);
                let (outbox, done) = bounded(PER_WORKER);
                let mut encoder = encoder.clone();
                let thread = std::thread::spawn(move || {
                    for job in inbox {
                        if outbox.send(encode(&mut encoder, job)).is_err() {
                            break;
                        }
                    }
                });
                Lane { jobs: Some(jobs), done, thread: Some(thread) }
            })
            .collect();
        Workers { lanes, next: 0, pending: VecDeque::new(), spare: Vec::new() }
    }

    /// True when every worker has as many blocks as it should hold.
    pub fn full(&self) -> bool {
        self.pending.len() >= self.lanes.len() * PER_WORKER
    }

    /// Hands `block` to the next worker.
    pub fn submit(&mut self, block: Block, origin: Arc<Origin>, stamp: Stamp) {
        let out = self.spare.pop().unwrap_or_default();
        let lane = self.next;
        self.next = (lane + 1) % self.lanes.len();
        let sender = self.lanes[lane].jobs.as_ref().expect("lanes stay open while in use");
        if sender.send(Job { block, origin, stamp, out }).is_err() {
            self.lost(lane);
        }
        self.pending.push_back(lane);
    }

    /// Waits for the oldest block handed out; `None` when none is out.
    pub fn take(&mut self) -> Option<Done> {
        let lane = self.pending.pop_front()?;
        match self.lanes[lane].done.recv() {
            Ok(done) => Some(done),
            Err(_) => self.lost(lane),
        }
    }

    /// Gives an output buffer back for a later block.
    pub fn give_back(&mut self, mut out: Vec<u8>) {
        out.clear();
        self.spare.push(out);
    }

    /// A worker stopped: only a panic does that; carry it on in this thread.
    fn lost(&mut self, lane: usize) -> ! {
        let thread = self.lanes[lane].thread.take().expect("a worker is lost only once");
        match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("a worker runs until its lane is closed"),
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for lane in &mut self.lanes {
            lane.jobs = None;
        }
        for lane in &mut self.lanes {
            // Results not taken yet (after an error) are dropped with the lane.
            while lane.done.try_recv().is_ok() {}
            if let Some(thread) = lane.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

fn encode(encoder: &mut Encoder, job: Job) -> Done {
    let Job { block, origin, stamp, mut out } = job;
    encoder.set_time(&stamp);
    encoder.block(&origin, block.data(), block.offset, &mut out);
    Done { out, input: block.buf }
}
