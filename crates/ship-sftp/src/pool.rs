//! Transfer threads, each with its own SSH session (libssh2 serialises everything on one
//! session), connecting when their first file arrives, reconnecting with backoff after a lost or
//! stalled connection, and sending keepalives while idle.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, select};
use opsline::Shutdown;

use crate::connect::{self, ConnectError, Connection};
use crate::limit::RateLimit;
use crate::settings::Settings;
use crate::transfer::{self, Failure, Job, Options, Shipped};

/// How one job ended.
#[derive(Debug)]
pub enum Outcome {
    /// Uploaded or skipped as identical.
    Shipped(Shipped),
    /// Not shipped. `temporary` when the retries ran out on connection trouble (exit 75).
    Failed {
        /// Worth a retry later.
        temporary: bool,
        /// Why.
        message: String,
    },
    /// No connection can be made at all (host key, credentials): the run must stop.
    Fatal(anyhow::Error),
}

/// A finished job.
#[derive(Debug)]
pub struct Done {
    /// The caller's id for the job.
    pub id: u64,
    /// How it ended.
    pub outcome: Outcome,
}

/// The transfer threads.
#[derive(Debug)]
pub struct Pool {
    jobs: Option<Sender<(u64, Job)>>,
    results: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    abort: Arc<AtomicBool>,
}

impl Pool {
    /// Starts `settings.transfer.transfers` threads; none connects before it has a job.
    pub fn start(settings: &Arc<Settings>, shutdown: &Shutdown) -> Pool {
        let threads = settings.transfer.transfers;
        let (job_tx, job_rx) = crossbeam_channel::bounded::<(u64, Job)>(threads);
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let abort = Arc::new(AtomicBool::new(false));
        let limit = settings.transfer.bwlimit.map(|rate| Arc::new(RateLimit::new(rate)));
        let workers = (0..threads)
            .map(|n| {
                let worker = Worker {
                    settings: Arc::clone(settings),
                    limit: limit.clone(),
                    shutdown: shutdown.clone(),
                    abort: Arc::clone(&abort),
                    conn: None,
                };
                let (jobs, results) = (job_rx.clone(), done_tx.clone());
                std::thread::Builder::new()
                    .name(format!("transfer-{n}"))
                    .spawn(move || worker.run(&jobs, &results))
                    .expect("a transfer thread starts")
            })
            .collect();
        Pool { jobs: Some(job_tx), results: done_rx, workers, abort }
    }

    /// The queue of jobs (bounded: sending waits while every thread is busy).
    pub fn jobs(&self) -> &Sender<(u64, Job)> {
        self.jobs.as_ref().expect("jobs are sent before finish")
    }

    /// Finished jobs.
    pub fn results(&self) -> &Receiver<Done> {
        &self.results
    }

    /// Makes the threads skip the jobs still queued (after a fatal error).
    pub fn abort(&self) {
        self.abort.store(true, Ordering::SeqCst);
    }

    /// No more jobs: returns the results still to come, in order of completion.
    pub fn finish(mut self) -> impl Iterator<Item = Done> {
        self.jobs.take();
        let results = self.results.clone();
        let workers = std::mem::take(&mut self.workers);
        let mut workers = Some(workers);
        std::iter::from_fn(move || match results.recv() {
            Ok(done) => Some(done),
            Err(_) => {
                for worker in workers.take().unwrap_or_default() {
                    worker.join().ok();
                }
                None
            }
        })
    }
}

struct Worker {
    settings: Arc<Settings>,
    limit: Option<Arc<RateLimit>>,
    shutdown: Shutdown,
    abort: Arc<AtomicBool>,
    conn: Option<Connection>,
}

impl Worker {
    fn run(mut self, jobs: &Receiver<(u64, Job)>, results: &Sender<Done>) {
        let idle = Duration::from_secs(u64::from(self.settings.connect.keepalive));
        loop {
            match jobs.recv_timeout(idle) {
                Ok((id, job)) => {
                    let outcome = self.ship(&job);
                    if results.send(Done { id, outcome }).is_err() {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => self.keepalive(),
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// An idle session would otherwise be cut by a firewall or the server's ClientAlive check.
    fn keepalive(&mut self) {
        let dead = self.conn.as_ref().is_some_and(|c| c.session.keepalive_send().is_err());
        if let Some(conn) = self.conn.take_if(|_| dead) {
            conn.abandon();
        }
    }

    fn ship(&mut self, job: &Job) -> Outcome {
        let transfer = self.settings.transfer.clone();
        let limit = self.limit.clone();
        let settings = Arc::clone(&self.settings);
        let mut last = String::new();
        for attempt in 0..=transfer.retries {
            if self.abort.load(Ordering::SeqCst) {
                return Outcome::Failed { temporary: true, message: "run stopped".to_owned() };
            }
            if attempt > 0 && !self.pause(attempt) {
                return Outcome::Failed {
                    temporary: true,
                    message: format!("stopped before retrying: {last}"),
                };
            }
            let conn = match self.connection() {
                Ok(conn) => conn,
                Err(ConnectError { fatal: true, error }) => {
                    self.abort.store(true, Ordering::SeqCst);
                    return Outcome::Fatal(error);
                }
                Err(ConnectError { error, .. }) => {
                    last = format!("{error:#}");
                    tracing::warn!(attempt = attempt + 1, "{last}");
                    continue;
                }
            };
            let opts = Options {
                verify: transfer.verify,
                preserve: transfer.preserve,
                limit: limit.as_deref(),
                connect: Some(&settings.connect),
                sessions: transfer.transfers,
            };
            match transfer::upload(conn, job, opts) {
                Ok(shipped) => return Outcome::Shipped(shipped),
                Err(Failure::File(message)) => {
                    return Outcome::Failed { temporary: false, message };
                }
                Err(Failure::Connection(message)) => {
                    tracing::warn!(file = %job.local.display(), attempt = attempt + 1, "{message}; reconnecting");
                    if let Some(conn) = self.conn.take() {
                        conn.abandon();
                    }
                    last = message;
                }
            }
        }
        Outcome::Failed {
            temporary: true,
            message: format!("gave up after {} attempts: {last}", transfer.retries + 1),
        }
    }

    fn connection(&mut self) -> Result<&mut Connection, ConnectError> {
        if self.conn.is_none() {
            self.conn = Some(connect::connect(&self.settings.connect)?);
        }
        Ok(self.conn.as_mut().expect("set above"))
    }

    /// Waits before retry `attempt` (1-based): the delay doubles each time, up to a minute.
    /// False when a stop was asked for meanwhile.
    fn pause(&self, attempt: u32) -> bool {
        let base = self.settings.transfer.retry_delay;
        let delay = base.saturating_mul(1 << (attempt - 1).min(16)).min(Duration::from_secs(60));
        select! {
            recv(self.shutdown.receiver()) -> _ => false,
            default(delay) => !self.shutdown.requested(),
        }
    }
}
