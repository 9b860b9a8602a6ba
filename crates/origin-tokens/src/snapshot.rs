//! `snapshot`: the established connections to the vendor daemon's port, from
//! `ss -H -n -t state established '( sport = :PORT )'` (run with argv, never a shell), appended
//! as one block to the side file that `--snapshots` reads.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use opsline::{Code, WithCode};

use crate::cli::SnapshotArgs;
use crate::engine::Flow;
use crate::input::{feed, open, unwrap_record};
use crate::net::parse_ss_line;
use crate::parse::{Kind, Line, Message, Parsed, parse_line};

/// One snapshot taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// The port whose connections were listed.
    pub port: u16,
    /// The peers.
    pub peers: Vec<IpAddr>,
    /// The block as appended.
    pub block: String,
}

/// Takes the snapshot and appends it.
pub fn take(args: &SnapshotArgs, now: &str) -> anyhow::Result<Taken> {
    let port = configured_port(args)?
        .ok_or_else(|| opsline::exit::err(Code::Usage, "give --port or --log"))?;
    take_at(args, port, args.trigger.as_deref(), now)
}

/// The port from `--port`, else from the log `--log` names.
pub fn configured_port(args: &SnapshotArgs) -> anyhow::Result<Option<u16>> {
    match (args.port, &args.log) {
        (Some(port), _) => Ok(Some(port)),
        (None, Some(log)) => port_from_log(log).map(Some),
        (None, None) => Ok(None),
    }
}

/// Lists the connections to `port` and appends the block, ending with `trigger`.
pub fn take_at(
    args: &SnapshotArgs,
    port: u16,
    trigger: Option<&str>,
    now: &str,
) -> anyhow::Result<Taken> {
    let listing = run_ss(&args.ss, port)?;
    let mut block = format!("{now}\n");
    let mut peers = Vec::new();
    for line in listing.lines().filter(|l| !l.trim().is_empty()) {
        if let Some((_, peer)) = parse_ss_line(line).filter(|(local, _)| *local == port) {
            peers.push(peer);
            block.push_str(line.trim_end());
            block.push('\n');
        }
    }
    if let Some(trigger) = trigger {
        block.push_str(trigger.trim());
        block.push('\n');
    }
    append(&args.output, &block)?;
    Ok(Taken { port, peers, block })
}

/// What `--follow` makes of one input line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cue {
    /// A checkout: take a snapshot.
    Checkout,
    /// The vendor daemon's port announcement.
    Port(u16),
    /// Nothing to do.
    Nothing,
}

/// Classifies a followed line.
pub fn cue(line: &[u8]) -> Cue {
    match parse_line(line) {
        Parsed::Line(Line { message: Message::Usage(u), .. }) if u.kind == Kind::Out => {
            Cue::Checkout
        }
        Parsed::Line(Line { message: Message::Port { port, .. }, .. }) => Cue::Port(port),
        _ => Cue::Nothing,
    }
}

fn run_ss(program: &Path, port: u16) -> anyhow::Result<String> {
    let filter = format!("( sport = :{port} )");
    let output = Command::new(program)
        .args(["-H", "-n", "-t", "state", "established", &filter])
        .output()
        .with_code(Code::Unavailable, || format!("cannot run {}", program.display()))?;
    if !output.status.success() {
        return Err(opsline::exit::err(
            Code::Unavailable,
            format!(
                "{} failed ({}): {}",
                program.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The last `VENDOR using TCP-port N` the log announces.
pub fn port_from_log(log: &Path) -> anyhow::Result<u16> {
    let mut port = None;
    feed(open(log)?, |raw| {
        if let Some(line) = unwrap_record(raw)
            && let Parsed::Line(Line { message: Message::Port { port: p, .. }, .. }) =
                parse_line(&line)
        {
            port = Some(p);
        }
        Ok(Flow::Continue)
    })?;
    port.ok_or_else(|| {
        opsline::exit::err(
            Code::DataErr,
            format!("{} announces no vendor daemon port; give --port", log.display()),
        )
    })
}

fn append(path: &Path, block: &str) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_code(Code::IoErr, || format!("cannot open {}", path.display()))?;
    file.write_all(block.as_bytes())
        .with_code(Code::IoErr, || format!("cannot append to {}", path.display()))
}
