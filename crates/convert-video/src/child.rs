//! Running ffmpeg and ffprobe: argv only, no standard input, both output pipes drained at once
//! (ffmpeg blocks on a full stderr pipe otherwise), and a wall-clock deadline that ends the
//! program with SIGTERM, then SIGKILL after a grace period. A stop of the tool (SIGTERM/SIGINT)
//! ends it the same way.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, after, never, select};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, waitid};
use nix::unistd::Pid;
use opsline::Shutdown;

/// How many of the last stderr lines are kept to explain a failure.
const STDERR_TAIL_LINES: usize = 12;

/// When a running program must be stopped.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The wall-clock time by which the program must have finished.
    pub deadline: Option<Instant>,
    /// How long the program may take to exit after SIGTERM before it gets SIGKILL.
    pub grace: Duration,
    /// The tool's own stop request.
    pub shutdown: Shutdown,
}

/// Why a program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It exited by itself with this status.
    Exited(ExitStatus),
    /// The deadline passed and it was stopped.
    TimedOut,
    /// The tool was asked to stop and stopped it.
    Stopped,
}

/// What a finished program left behind.
#[derive(Debug)]
pub struct Finished {
    /// Why it ended.
    pub ending: Ending,
    /// Its exit status, as reaped.
    pub status: ExitStatus,
    /// The last lines it wrote to standard error.
    pub stderr_tail: String,
}

impl Finished {
    /// True when it exited by itself with status 0.
    pub fn succeeded(&self) -> bool {
        matches!(self.ending, Ending::Exited(status) if status.success())
    }

    /// The last stderr line, or the exit status when it printed nothing: the program's own
    /// explanation of a failure. ffmpeg's closing "Conversion failed!" says nothing and is
    /// passed over.
    pub fn last_complaint(&self) -> String {
        let telling = |l: &&str| !l.trim().is_empty() && l.trim() != "Conversion failed!";
        match self.stderr_tail.lines().rev().find(telling) {
            Some(line) => line.trim().to_owned(),
            None => match self.ending {
                Ending::Exited(status) => format!("it ended with {status}"),
                Ending::TimedOut => "it ran out of time".to_owned(),
                Ending::Stopped => "it was stopped".to_owned(),
            },
        }
    }
}

/// Runs `command` to its end, handing each line of its standard output to `on_line` while it
/// runs.
pub fn run(
    mut command: Command,
    limits: &Limits,
    on_line: &mut (dyn FnMut(&str) + Send),
) -> io::Result<Finished> {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn()?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pids fit in i32"));
    std::thread::scope(|scope| {
        let errors = scope.spawn(move || stderr_tail(stderr));
        scope.spawn(move || each_line(stdout, on_line));
        let exited = exit_signal(scope, pid);
        let ending = supervise(pid, &exited, limits);
        let status = reap(&mut child)?;
        let stderr_tail = errors.join().unwrap_or_default();
        let ending = ending.unwrap_or(Ending::Exited(status));
        Ok(Finished { ending, status, stderr_tail })
    })
}

/// A channel that disconnects once the child has exited. The child is not reaped (WNOWAIT),
/// so its pid cannot be reused by another process while we may still signal it.
fn exit_signal<'scope>(scope: &'scope std::thread::Scope<'scope, '_>, pid: Pid) -> Receiver<()> {
    let (sender, receiver) = crossbeam_channel::bounded::<()>(0);
    scope.spawn(move || {
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
        while let Err(nix::errno::Errno::EINTR) = waitid(Id::Pid(pid), flags) {}
        drop(sender);
    });
    receiver
}

/// Waits for the child's exit, the deadline or a stop; returns how it was stopped, if it was.
fn supervise(pid: Pid, exited: &Receiver<()>, limits: &Limits) -> Option<Ending> {
    let deadline = match limits.deadline {
        Some(at) => after(at.saturating_duration_since(Instant::now())),
        None => never(),
    };
    let ending = select! {
        recv(exited) -> _ => return None,
        recv(deadline) -> _ => Ending::TimedOut,
        recv(limits.shutdown.receiver()) -> _ => Ending::Stopped,
    };
    terminate(pid, exited, limits.grace);
    Some(ending)
}

/// SIGTERM (ffmpeg then closes its outputs), SIGKILL if it is still there after `grace`.
fn terminate(pid: Pid, exited: &Receiver<()>, grace: Duration) {
    let _ = kill(pid, Signal::SIGTERM);
    if exited.recv_timeout(grace) != Err(RecvTimeoutError::Timeout) {
        return;
    }
    tracing::warn!(pid = pid.as_raw(), "no exit after SIGTERM, sending SIGKILL");
    let _ = kill(pid, Signal::SIGKILL);
    let _ = exited.recv();
}

fn reap(child: &mut Child) -> io::Result<ExitStatus> {
    child.wait()
}

fn each_line(stream: impl Read, on_line: &mut (dyn FnMut(&str) + Send)) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
        on_line(String::from_utf8_lossy(&line).trim_end());
        line.clear();
    }
}

fn stderr_tail(stream: impl Read) -> String {
    let mut tail = VecDeque::with_capacity(STDERR_TAIL_LINES);
    each_line(stream, &mut |line: &str| {
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.chars().take(400).collect::<String>());
    });
    Vec::from(tail).join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn limits(deadline: Option<Duration>) -> Limits {
        Limits {
            deadline: deadline.map(|d| Instant::now() + d),
            grace: Duration::from_millis(300),
            shutdown: Shutdown::detached(),
        }
    }

    #[test]
    fn both_pipes_are_drained_and_lines_delivered() {
        let mut command = Command::new("sh");
        command.args([
            "-c",
            "i=0; while [ $i -lt 2000 ]; do echo out$i; echo err-line-$i >&2; i=$((i+1)); done",
        ]);
        let mut lines = Vec::new();
        let finished =
            run(command, &limits(None), &mut |l: &str| lines.push(l.to_owned())).unwrap();
        assert!(finished.succeeded());
        assert_eq!(lines.len(), 2000);
        assert_eq!(finished.last_complaint(), "err-line-1999");
    }

    #[test]
    fn deadline_stops_the_program() {
        let mut command = Command::new("sleep");
        command.arg("30");
        let finished =
            run(command, &limits(Some(Duration::from_millis(100))), &mut |_: &str| {}).unwrap();
        assert_eq!(finished.ending, Ending::TimedOut);
        assert_eq!(finished.status.signal(), Some(Signal::SIGTERM as i32));
    }

    #[test]
    fn sigkill_follows_an_ignored_sigterm() {
        let mut command = Command::new("sh");
        command.args(["-c", "trap '' TERM; exec sleep 30"]);
        let finished =
            run(command, &limits(Some(Duration::from_millis(100))), &mut |_: &str| {}).unwrap();
        assert_eq!(finished.ending, Ending::TimedOut);
        assert_eq!(finished.status.signal(), Some(Signal::SIGKILL as i32));
    }

    #[test]
    fn a_stop_request_ends_the_program() {
        let limits = limits(None);
        limits.shutdown.request();
        let mut command = Command::new("sleep");
        command.arg("30");
        let finished = run(command, &limits, &mut |_: &str| {}).unwrap();
        assert_eq!(finished.ending, Ending::Stopped);
    }
}
