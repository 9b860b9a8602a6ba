//! Pipelines run as a sysadmin runs them: `bash -o pipefail -c '…'` with the tools on `PATH`.
//!
//! The command text keeps its settings in shell variables (`"$SMTP_URL"`), so what is shown is
//! the line one would paste; the values come from the environment of the run.

use std::ffi::OsString;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::Value;

/// How often a waiting run looks at its processes.
const POLL: Duration = Duration::from_millis(50);

/// A pipeline: its text and the variables it uses.
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// The bash command line.
    pub command: String,
    vars: Vec<(String, OsString)>,
}

impl Pipeline {
    /// A pipeline with `command` as its text.
    pub fn new(command: &str) -> Self {
        Self { command: command.to_owned(), vars: Vec::new() }
    }

    /// Sets a variable the command refers to as `"$NAME"`.
    pub fn var(mut self, name: &str, value: impl Into<OsString>) -> Self {
        self.vars.push((name.to_owned(), value.into()));
        self
    }
}

/// Runs pipelines with the tools of one folder, writing their output into a work folder.
#[derive(Debug)]
pub struct Shell {
    bin_dir: PathBuf,
    logs: PathBuf,
    state_home: PathBuf,
    counter: std::cell::Cell<u32>,
}

impl Shell {
    /// A shell whose `PATH` starts with `bin_dir`, whose runs keep their output under
    /// `work/runs` and whose tools keep their state under `work/state` (`XDG_STATE_HOME`).
    pub fn new(bin_dir: &Path, work: &Path) -> anyhow::Result<Self> {
        let logs = work.join("runs");
        let state_home = work.join("state");
        fs::create_dir_all(&logs)?;
        fs::create_dir_all(&state_home)?;
        Ok(Self { bin_dir: bin_dir.to_path_buf(), logs, state_home, counter: 0.into() })
    }

    /// Runs `pipeline` to its end (at most `timeout`).
    pub fn run(&self, name: &str, pipeline: &Pipeline, timeout: Duration) -> anyhow::Result<Run> {
        self.spawn(name, pipeline)?.wait(timeout)
    }

    /// Runs `pipeline` to its end and fails unless it exited 0.
    pub fn run_ok(
        &self,
        name: &str,
        pipeline: &Pipeline,
        timeout: Duration,
    ) -> anyhow::Result<Run> {
        let run = self.run(name, pipeline, timeout)?;
        run.ensure_success()?;
        Ok(run)
    }

    /// Starts `pipeline` in its own process group and returns at once.
    pub fn spawn(&self, name: &str, pipeline: &Pipeline) -> anyhow::Result<Background> {
        let n = self.counter.get() + 1;
        self.counter.set(n);
        let stdout_path = self.logs.join(format!("{n:02}-{name}.out"));
        let stderr_path = self.logs.join(format!("{n:02}-{name}.err"));
        let mut command = Command::new("/bin/bash");
        command
            .args(["-o", "pipefail", "-c", &pipeline.command])
            .env("PATH", self.path_var())
            .env("XDG_STATE_HOME", &self.state_home)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout_path)?)
            .stderr(File::create(&stderr_path)?);
        for (var, value) in &pipeline.vars {
            command.env(var, value);
        }
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().context("starting /bin/bash")?;
        Ok(Background { child: Some(child), pipeline: pipeline.clone(), stdout_path, stderr_path })
    }

    fn path_var(&self) -> OsString {
        let mut path = self.bin_dir.clone().into_os_string();
        path.push(":");
        path.push(std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()));
        path
    }
}

/// A pipeline that runs while the caller does something else.
#[derive(Debug)]
pub struct Background {
    child: Option<Child>,
    pipeline: Pipeline,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
}

impl Background {
    /// Sends SIGTERM to the pipeline's process named `program` (as `systemctl stop` would to
    /// the first tool of a pipeline: the others finish the records in flight and see the end of
    /// their input).
    pub fn terminate(&self, program: &str) -> anyhow::Result<()> {
        let group = self.group().context("the pipeline has already ended")?;
        let pids = processes_named(group, program);
        if pids.is_empty() {
            bail!("no {program} process in the pipeline; its log:\n{}", self.stderr());
        }
        for pid in pids {
            kill(pid, Signal::SIGTERM).with_context(|| format!("signalling {program} ({pid})"))?;
        }
        Ok(())
    }

    /// What the pipeline's last command wrote to standard output so far.
    pub fn stdout(&self) -> String {
        fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// What the pipeline wrote to standard error so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits for the end (killing the whole pipeline after `timeout`).
    pub fn wait(mut self, timeout: Duration) -> anyhow::Result<Run> {
        let deadline = Instant::now() + timeout;
        let mut child = self.child.take().context("the pipeline was already waited for")?;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() >= deadline {
                kill_group(&child);
                let _ = child.wait();
                bail!(
                    "`{}` did not finish within {timeout:?} and was killed; its log:\n{}",
                    self.pipeline.command,
                    self.stderr()
                );
            }
            std::thread::sleep(POLL);
        };
        Ok(Run {
            command: self.pipeline.command.clone(),
            status,
            stdout: fs::read_to_string(&self.stdout_path)?,
            stderr: fs::read_to_string(&self.stderr_path)?,
        })
    }

    fn group(&self) -> Option<Pid> {
        let child = self.child.as_ref()?;
        i32::try_from(child.id()).ok().map(Pid::from_raw)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(&child);
            let _ = child.wait();
        }
    }
}

/// Kills every process of the pipeline (bash made each one a member of its group).
fn kill_group(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// The processes of process group `group` whose command name is `program`.
fn processes_named(group: Pid, program: &str) -> Vec<Pid> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
            stat_matches(&stat, group.as_raw(), program)
        })
        .map(Pid::from_raw)
        .collect()
}

/// `/proc/PID/stat`: `pid (comm) state ppid pgrp …`; the name may hold spaces and parentheses.
fn stat_matches(stat: &str, group: i32, program: &str) -> bool {
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { return false };
    let name = &stat[open + 1..close];
    let pgrp = stat[close + 1..].split_whitespace().nth(2).and_then(|f| f.parse::<i32>().ok());
    // The kernel keeps only the first 15 bytes of a command name.
    let wanted = &program[..program.len().min(15)];
    name == wanted && pgrp == Some(group)
}

/// A finished pipeline.
#[derive(Clone, Debug)]
pub struct Run {
    /// The command line.
    pub command: String,
    /// Its exit status (the last failing member's, with pipefail).
    pub status: ExitStatus,
    /// Standard output of the last command.
    pub stdout: String,
    /// Standard error of every command.
    pub stderr: String,
}

impl Run {
    /// Fails with the command and its log unless it exited 0.
    pub fn ensure_success(&self) -> anyhow::Result<()> {
        if !self.status.success() {
            bail!("`{}` failed ({}); its log:\n{}", self.command, self.status, self.stderr);
        }
        Ok(())
    }

    /// The records on standard output.
    pub fn records(&self) -> anyhow::Result<Vec<Value>> {
        self.stdout
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line).with_context(|| format!("not a JSON record: {line}"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_matched_on_name_and_group() {
        let stat = "4242 (watch-uploads) S 4200 4100 4100 0 -1";
        assert!(stat_matches(stat, 4100, "watch-uploads"));
        assert!(!stat_matches(stat, 4200, "watch-uploads"));
        assert!(!stat_matches(stat, 4100, "notify"));
        let spaced = "7 (a (b) c) S 1 9 9 0";
        assert!(stat_matches(spaced, 9, "a (b) c"));
        assert!(stat_matches("8 (a-very-long-pro) S 1 3 3", 3, "a-very-long-program"));
    }
}
