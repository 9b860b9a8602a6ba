//! Running ship-sftp against the throwaway OpenSSH server of the test kit.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use opsline_testkit::sshd::{SshAccount, Sshd};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_ship-sftp");

/// A `ship-sftp` command with the connection options for `account`, trusting the server's
/// current host key and using the test client key; no agent, no password, no user config.
pub fn ship(sshd: &Sshd, account: SshAccount, dir: &str) -> Command {
    ship_trusting(sshd, account, dir, &sshd.client_key_path(), &sshd.known_hosts_path())
}

/// Like [`ship`] with another key and known_hosts file.
pub fn ship_trusting(
    sshd: &Sshd,
    account: SshAccount,
    dir: &str,
    key: &Path,
    known_hosts: &Path,
) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["--host", "127.0.0.1", "--port", &sshd.port().to_string()])
        .args(["--user", account.name(), "--dir", dir])
        .arg("--identity")
        .arg(key)
        .arg("--known-hosts")
        .arg(known_hosts)
        .args(["--retry-delay", "0.2", "--connect-timeout", "5", "--timeout", "20"]);
    isolate(&mut command);
    command
}

/// Like [`ship`], for `ship-sftp mirror LOCAL_DIR`.
pub fn mirror(sshd: &Sshd, account: SshAccount, dir: &str, local: &Path, state: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("mirror")
        .arg(local)
        .args(["--host", "127.0.0.1", "--port", &sshd.port().to_string()])
        .args(["--user", account.name(), "--dir", dir])
        .arg("--identity")
        .arg(sshd.client_key_path())
        .arg("--known-hosts")
        .arg(sshd.known_hosts_path())
        .arg("--state")
        .arg(state)
        .args(["--retry-delay", "0.2", "--connect-timeout", "5", "--timeout", "20"]);
    isolate(&mut command);
    command
}

fn isolate(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(|k| k.starts_with("SHIP_SFTP_") || k == "SSH_AUTH_SOCK") {
            command.env_remove(key);
        }
    }
    command.stdin(Stdio::null());
}

/// Runs with `input` on standard input.
pub fn run_with(mut command: Command, input: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ship-sftp starts");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Runs and returns (exit code, records, stderr).
pub fn run(command: Command) -> (i32, Vec<Value>, String) {
    let output = run_with(command, "");
    parse(&output)
}

pub fn parse(output: &Output) -> (i32, Vec<Value>, String) {
    let records = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code().unwrap_or(-1), records, stderr)
}

/// Starts without waiting.
pub fn spawn(mut command: Command) -> Child {
    command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("ship-sftp starts")
}

/// Files in `dir` (not recursive), sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Sets a file's mtime (and atime) to `secs_ago` seconds in the past.
pub fn age(path: &Path, secs_ago: u64) {
    let when = std::time::SystemTime::now() - Duration::from_secs(secs_ago);
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_times(std::fs::FileTimes::new().set_accessed(when).set_modified(when)).unwrap();
}

/// Writes `len` bytes of a pattern that differs per `seed`.
pub fn pattern_file(path: &Path, len: usize, seed: u8) -> PathBuf {
    let bytes: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
    std::fs::write(path, bytes).unwrap();
    path.to_owned()
}

/// `sha256sum` of a local file, as hex.
pub fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_owned()
}

/// Every process below `root` (found through the parent ids in /proc).
pub fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after = &stat[stat.rfind(')')? + 1..];
            Some((pid, after.split_whitespace().nth(1)?.parse().ok()?))
        })
        .collect();
    let mut found = vec![root];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(parents.iter().filter(|(_, p)| *p == parent).map(|(pid, _)| *pid));
        next += 1;
    }
    found.split_off(1)
}

/// Sends `signal` (a name such as STOP) to the processes.
pub fn signal(pids: &[u32], signal: &str) {
    if pids.is_empty() {
        return;
    }
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .args(pids.iter().map(u32::to_string))
        .status()
        .unwrap();
    assert!(status.success());
}
