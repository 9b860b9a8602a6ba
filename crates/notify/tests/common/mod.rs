//! Running the `notify` binary as a pipeline would: records on stdin, records on stdout, logs
//! on stderr.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// What one run produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub records: Vec<Value>,
    pub stdout: String,
    pub stderr: String,
}

/// The notify command with a clean environment for its own variables.
pub fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_notify"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("NOTIFY_") || name == "OPSLINE_LOG" {
            command.env_remove(name);
        }
    }
    command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    command
}

/// Runs notify with `args` and `env`, feeding `input` on stdin.
pub fn notify(args: &[&str], env: &[(&str, &str)], input: &str) -> Run {
    let mut command = command();
    command.args(args).envs(env.iter().copied());
    let mut child = command.spawn().expect("notify starts");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let records = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    Run {
        code: output.status.code().expect("exited"),
        records,
        stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Records as JSON lines.
pub fn lines(records: &[Value]) -> String {
    records.iter().map(|r| format!("{r}\n")).collect()
}

/// Writes a secret file (mode 0600) and returns its path.
pub fn secret_file(dir: &Path, name: &str, value: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("{value}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Asserts that no secret appears anywhere in the run's output, not even in pieces (as in a
/// hex dump of a request, which splits it across lines): no 8 characters of it in a row.
pub fn assert_no_secrets(run: &Run, secrets: &[&str]) {
    for secret in secrets {
        let chars: Vec<char> = secret.chars().collect();
        for window in chars.windows(8.min(chars.len())) {
            let piece: String = window.iter().collect();
            assert!(
                !run.stderr.contains(&piece),
                "{piece:?} of a secret in the log:\n{}",
                run.stderr
            );
            assert!(
                !run.stdout.contains(&piece),
                "{piece:?} of a secret in a record:\n{}",
                run.stdout
            );
        }
    }
}
