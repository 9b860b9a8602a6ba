//! `--journal`: the new entries of the systemd journal through `journalctl -o json`, resumed
//! from the cursor of the last entry written.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use chrono::{Local, TimeZone};
use crossbeam_channel::{Receiver, after, never, select};
use opsline::exit::err;
use opsline::{Code, Context, Record, WithCode};
use serde_json::{Map, Value};

use crate::Cli;
use crate::tail::Session;

/// Reads the journal entries after the saved cursor (all of them the first time, or none with
/// --from-end), then keeps following with --follow.
pub fn run(cli: &Cli, mut session: Session, ctx: &Context) -> anyhow::Result<Code> {
    for path in cli.directory.iter().chain(&cli.journal_files) {
        if !path.exists() {
            return Err(err(
                Code::NoInput,
                format!("{}: no such journal file or folder", path.display()),
            ));
        }
    }
    if cli.follow {
        ctx.shutdown.watch();
    }
    let mut cursor = session.state().journal_cursor.clone();
    if cursor.is_none() && cli.from_end && !cli.follow {
        cursor = last_cursor(cli)?;
        session.update(|state| state.journal_cursor = cursor.clone());
        return session.finish();
    }
    let mut child = spawn(cli, cursor.as_deref())?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let lines = read_lines(stdout);
    let outcome = pump(&lines, cursor.as_deref(), &mut session, ctx);
    if cli.follow || outcome.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().code(Code::Unavailable, "waiting for journalctl")?;
    outcome?;
    if !cli.follow && !status.success() {
        let mut message = String::new();
        if let Some(mut stderr) = child.stderr.take() {
            let _ = stderr.read_to_string(&mut message);
        }
        return Err(err(
            Code::Unavailable,
            format!("journalctl failed ({status}): {}", message.trim()),
        ));
    }
    session.finish()
}

/// Writes every entry as it arrives (but the one at `resumed`, written last time); saves the
/// cursor every second and at the end.
fn pump(
    lines: &Receiver<String>,
    resumed: Option<&str>,
    session: &mut Session,
    ctx: &Context,
) -> anyhow::Result<()> {
    let mut resumed = resumed;
    loop {
        let timer = match session.save_due_in() {
            Some(due) => after(due.max(Duration::from_millis(1))),
            None => never(),
        };
        select! {
            recv(lines) -> line => match line {
                Ok(line) => entry(&line, resumed.take(), session)?,
                Err(_) => return Ok(()),
            },
            recv(ctx.shutdown.receiver()) -> _ => return Ok(()),
            recv(timer) -> _ => {}
        }
        session.maybe_save()?;
    }
}

fn entry(line: &str, resumed: Option<&str>, session: &mut Session) -> anyhow::Result<()> {
    let Ok(fields) = serde_json::from_str::<Map<String, Value>>(line) else {
        tracing::warn!("journalctl printed a line that is not a JSON object; skipped");
        return Ok(());
    };
    let cursor = fields.get("__CURSOR").and_then(Value::as_str);
    if resumed.is_some() && cursor == resumed {
        return Ok(());
    }
    let (mut record, message) = record(&fields);
    session.emitter().record(&mut record, &message)?;
    if let Some(cursor) = cursor {
        session.update(|state| state.journal_cursor = Some(cursor.to_owned()));
    }
    Ok(())
}

/// A journal entry as a `line` record with the journal's own fields mapped onto `syslog`.
pub fn record(fields: &Map<String, Value>) -> (Record, String) {
    let (message, lossy) = text(fields.get("MESSAGE"));
    let text_of = |name: &str| fields.get(name).map(|v| text(Some(v)).0);
    let pid = ["SYSLOG_PID", "_PID"].iter().find_map(|name| text_of(name)?.parse::<u64>().ok());
    let time = fields
        .get("__REALTIME_TIMESTAMP")
        .and_then(Value::as_str)
        .and_then(|us| us.parse::<i64>().ok())
        .and_then(|us| Local.timestamp_micros(us).single())
        .map(|t| t.to_rfc3339());
    let program = text_of("SYSLOG_IDENTIFIER").or_else(|| text_of("_COMM"));
    let mut syslog = Map::new();
    syslog.insert("time".into(), time.into());
    syslog.insert("host".into(), text_of("_HOSTNAME").into());
    syslog.insert("program".into(), program.into());
    syslog.insert("pid".into(), pid.into());
    syslog.insert("unit".into(), text_of("_SYSTEMD_UNIT").into());
    syslog.insert("message".into(), message.clone().into());
    let mut record = Record::new("line");
    record.insert("line", message.clone());
    if let Some(cursor) = fields.get("__CURSOR") {
        record.insert("cursor", cursor.clone());
    }
    if lossy {
        record.insert("lossy", true);
    }
    record.insert("syslog", Value::Object(syslog));
    (record, message)
}

/// A journal field as text: journalctl prints non-UTF-8 values as arrays of bytes.
fn text(value: Option<&Value>) -> (String, bool) {
    match value {
        Some(Value::String(s)) => (s.clone(), false),
        Some(Value::Array(items)) => {
            let bytes: Vec<u8> = items
                .iter()
                .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            match String::from_utf8(bytes) {
                Ok(text) => (text, false),
                Err(e) => (String::from_utf8_lossy(e.as_bytes()).into_owned(), true),
            }
        }
        Some(other) if !other.is_null() => (other.to_string(), false),
        _ => (String::new(), false),
    }
}

fn read_lines(stdout: ChildStdout) -> Receiver<String> {
    let (sender, receiver) = crossbeam_channel::bounded(1024);
    std::thread::spawn(move || {
        for line in BufReader::with_capacity(1 << 16, stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// `journalctl` with the selection of the command line (argv, never a shell).
fn journalctl(cli: &Cli) -> Command {
    let mut command = Command::new("journalctl");
    command.args(["--output=json", "--no-pager", "--quiet"]);
    if let Some(dir) = &cli.directory {
        command.arg("--directory").arg(dir);
    }
    for file in &cli.journal_files {
        command.arg("--file").arg(file);
    }
    for unit in &cli.unit {
        command.arg(format!("--unit={unit}"));
    }
    for id in &cli.identifier {
        command.arg(format!("--identifier={id}"));
    }
    command
}

fn spawn(cli: &Cli, cursor: Option<&str>) -> anyhow::Result<Child> {
    let mut command = journalctl(cli);
    match (cursor, cli.follow, cli.from_end) {
        // --cursor (the saved entry included, then skipped) rather than --after-cursor, which
        // in systemd 252 prints nothing when the saved entry does not match --unit or
        // --identifier.
        (Some(cursor), _, _) => {
            command.arg(format!("--cursor={cursor}"));
        }
        (None, true, true) => {
            command.arg("--lines=0");
        }
        (None, _, _) => {
            command.arg("--lines=all");
        }
    }
    if cli.follow {
        command.arg("--follow");
    }
    let stderr = if cli.follow { Stdio::inherit() } else { Stdio::piped() };
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(stderr);
    command.spawn().code(Code::Unavailable, "cannot run journalctl")
}

/// The cursor of the newest entry (for --from-end), `None` for an empty journal.
fn last_cursor(cli: &Cli) -> anyhow::Result<Option<String>> {
    let output = journalctl(cli)
        .arg("--lines=1")
        .stdin(Stdio::null())
        .output()
        .code(Code::Unavailable, "cannot run journalctl")?;
    if !output.status.success() {
        return Err(err(
            Code::Unavailable,
            format!(
                "journalctl failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        ));
    }
    let last = output.stdout.split(|&b| b == b'\n').rev().find(|l| !l.is_empty());
    Ok(last
        .and_then(|l| serde_json::from_slice::<Map<String, Value>>(l).ok())
        .and_then(|f| f.get("__CURSOR").and_then(Value::as_str).map(str::to_owned)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_map_the_journal_fields_onto_syslog() {
        let fields = json!({
            "__CURSOR": "s=1;i=2",
            "__REALTIME_TIMESTAMP": "1763880760000000",
            "_HOSTNAME": "srv",
            "SYSLOG_IDENTIFIER": "sshd",
            "_PID": "812",
            "_SYSTEMD_UNIT": "ssh.service",
            "MESSAGE": [65, 255, 66],
        });
        let (record, message) = record(fields.as_object().unwrap());
        assert_eq!(message, "A\u{fffd}B");
        assert_eq!(record.get("lossy"), Some(&json!(true)));
        let syslog = record.get("syslog").unwrap();
        assert_eq!(syslog["pid"], json!(812));
        assert_eq!(syslog["unit"], json!("ssh.service"));
        assert_eq!(syslog["program"], json!("sshd"));
        assert!(syslog["time"].as_str().unwrap().starts_with("2025-11-2"));
    }
}
