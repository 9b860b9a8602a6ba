//! `log-tail`: the lines a log gained since the previous run, as records, through log
//! rotation (rename + create, `.gz`, `copytruncate`, `dateext`), crashes and huge files; or the
//! new entries of the systemd journal.
//!
//! The position (device, inode, offset and a fingerprint of the file's first bytes) lives in
//! an atomic, locked state file and is saved only after the records it covers were written.

pub mod emit;
pub mod filter;
pub mod follow;
pub mod journal;
pub mod json;
pub mod literals;
pub mod parse;
pub mod reader;
pub mod rotation;
pub mod state;
pub mod tail;
pub mod workers;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use opsline::man::Example;
use opsline::{Code, CommonArgs, Context, Flush, RecordWriter, StateFile, WithCode};

use crate::emit::{Emitter, Format};
use crate::filter::Filter;
use crate::state::{STATE_VERSION, State};
use crate::tail::{Session, Tailer};

/// The tool's name.
pub const TOOL: &str = "log-tail";

/// Print the lines a log gained since the last run, as records.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Print the lines a log gained since the last run, as records",
    long_about = "Prints the lines each FILE gained since the previous run as records \
{\"kind\":\"line\",\"ts\",\"path\",\"line\",\"inode\",\"offset\"} (inode and offset let a consumer drop a \
duplicate), or as bare lines with --format raw (like pygtail), and remembers where it stopped in a \
state file: device, inode, offset and a fingerprint of the file's first bytes. The first run starts \
at the beginning of the file, or at its end with --from-end.\n\n\
Rotation is followed whether log-tail was running or not. After rename + create (logrotate's \
default) the rotated file is found by inode among FILE.1, FILE-YYYYMMDD and --rotated-glob, its \
unread rest is read first (through gzip when it was compressed), then every newer rotated file, then \
the new FILE from its start; nothing is read twice. Lines read from a rotated file name it in \
\"rotated\". A file that shrank below the saved offset or \
whose first bytes changed (copytruncate) is read again from its start, after the unread rest of its \
copy when a rotated file starts with the same bytes, with a warning that lines written between the \
copy and the truncation may be missing. A copy found while FILE still starts with the same bytes \
(copied, not yet truncated) is waited for, and read once the truncation is done. A file that \
disappeared keeps its position until it returns.\n\n\
A last line without a newline is held back until it is complete, or until the file has been \
rotated away and the writer has moved on to the new file. Lines that are not UTF-8 are converted \
lossily and flagged \"lossy\"; lines longer than --max-line are cut and flagged \"truncated\". \
The position is saved only after the records were written (at least once; a clean stop is \
exactly once), at the end of the run and every second during a long one: after kill -9 the next \
run repeats at most the lines of the last second.\n\n\
--journal reads the systemd journal through journalctl -o json instead, keeping the journal \
cursor in the state; each entry becomes a line record with a \"syslog\" object made from the \
journal's own fields. --follow keeps running like tail -F, woken by inotify, flushing every record \
and saving the state every second and on SIGTERM or SIGINT.\n\n\
When standard output is a pipe, log-tail asks for a 1 MiB pipe buffer (where the system allows \
it), so that large outputs go into the pipe in a few big writes."
)]
pub struct Cli {
    /// The log files to read (not with --journal)
    #[arg(value_name = "FILE", required_unless_present = "journal", conflicts_with = "journal")]
    pub files: Vec<PathBuf>,

    /// The state file [default: $STATE_DIRECTORY, $XDG_STATE_HOME/opsline or ~/.local/state/opsline, under log-tail/, named after the log's path]
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// Forget the saved position and start over (from the start, or the end with --from-end)
    #[arg(long)]
    pub reset: bool,

    /// Without a saved position, start at the current end instead of the start
    #[arg(long)]
    pub from_end: bool,

    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Json, value_name = "FORMAT")]
    pub format: Format,

    /// Also look for rotated files matching this glob (relative to the log's folder unless
    /// absolute; repeatable)
    #[arg(long, value_name = "GLOB")]
    pub rotated_glob: Vec<String>,

    /// Keep running and print new lines as they come, like tail -F
    #[arg(short, long)]
    pub follow: bool,

    /// Only lines matching this regular expression (repeatable: any of them)
    #[arg(long = "match", value_name = "REGEX")]
    pub matches: Vec<String>,

    /// Drop lines matching this regular expression (repeatable)
    #[arg(long, value_name = "REGEX")]
    pub exclude: Vec<String>,

    /// Add parsed fields: "syslog" (time, host, program, pid, message) or "sshd" (event, user,
    /// ip, port, method; implies syslog); repeatable
    #[arg(long, value_enum, value_name = "WHAT")]
    pub parse: Vec<ParseKind>,

    /// Longest line kept in bytes (K, M suffixes); longer lines are cut and flagged "truncated"
    #[arg(long, value_name = "BYTES", default_value = "1M", value_parser = parse_size)]
    pub max_line: usize,

    /// Read the systemd journal through journalctl instead of files
    #[arg(long)]
    pub journal: bool,

    /// With --journal: only entries of this systemd unit (repeatable)
    #[arg(long, value_name = "UNIT", requires = "journal")]
    pub unit: Vec<String>,

    /// With --journal: only entries with this syslog identifier (repeatable)
    #[arg(long, value_name = "ID", requires = "journal")]
    pub identifier: Vec<String>,

    /// With --journal: read the journal files in this folder instead of the system journal
    #[arg(long, value_name = "DIR", requires = "journal")]
    pub directory: Option<PathBuf>,

    /// With --journal: read this journal file (repeatable)
    #[arg(long = "file", value_name = "FILE", requires = "journal", conflicts_with = "directory")]
    pub journal_files: Vec<PathBuf>,

    #[command(flatten)]
    pub common: CommonArgs,
}

impl opsline::Tool for Cli {
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}

/// Parsed fields to add to each record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ParseKind {
    /// `syslog`: time, host, program, pid, message from a classic or RFC 3339 prefix
    Syslog,
    /// `sshd`: event, user, ip, port, method of the login lines that matter for alerts
    Sshd,
}

/// Examples for the man page.
pub const EXAMPLES: &[Example] = &[
    Example {
        title: "The SSH alarm from cron: new logins since the last run, routine lines dropped.",
        command: "log-tail /var/log/auth.log --exclude CRON --exclude 'Connection closed' --parse sshd --match 'Accepted|Failed' | notify --pushover",
    },
    Example {
        title: "The same on a system that logs sshd only to the journal.",
        command: "log-tail --journal --unit ssh --parse sshd --match 'Accepted|Failed' | notify --pushover",
    },
    Example {
        title: "Follow a log like tail -F, through rotation, as bare lines.",
        command: "log-tail --follow --format raw /var/log/syslog",
    },
    Example {
        title: "Start at the current end and keep the position in a chosen file.",
        command: "log-tail --from-end --state /var/lib/ssh-alarm/auth.json /var/log/auth.log",
    },
];

/// Runs the tool.
pub fn run(cli: Cli, ctx: &opsline::Context) -> anyhow::Result<Code> {
    let filter = Filter::new(&cli.matches, &cli.exclude)?;
    let state_path = match &cli.state {
        Some(path) => path.clone(),
        None => opsline::state::default_path(TOOL, &state_key(&cli))?,
    };
    let statefile = StateFile::lock(&state_path, ctx.tool, STATE_VERSION)?;
    if cli.reset {
        statefile.reset()?;
    }
    let state: State = statefile.load()?.unwrap_or_default();
    emit::widen_stdout_pipe();
    let flush = if cli.follow { Flush::EachRecord } else { Flush::Buffered };
    let out =
        RecordWriter::stdout(ctx.tool, flush).code(Code::IoErr, "cannot use standard output")?;
    let copy_only = cli.format == Format::Raw && filter.is_empty();
    let chunk = if copy_only { reader::COPY_CHUNK } else { reader::CHUNK };
    let emitter = Emitter::new(out, cli.format, filter, &cli.parse, cli.max_line, cli.follow);
    let session = Session::new(emitter, statefile, state, chunk, cli.max_line);
    if cli.journal {
        return journal::run(&cli, session, ctx);
    }
    run_files(&cli, session, ctx)
}

fn run_files(cli: &Cli, mut session: Session, ctx: &Context) -> anyhow::Result<Code> {
    let options = tail::Options { from_end: cli.from_end, rotated_globs: cli.rotated_glob.clone() };
    let mut tailers = cli
        .files
        .iter()
        .map(|path| Tailer::new(path, &options))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if cli.follow {
        ctx.shutdown.watch();
        return follow::run(&mut tailers, session, ctx);
    }
    for tailer in &mut tailers {
        tailer.step(&mut session)?;
    }
    session.finish()
}

/// What the default state file is named after: the log's path, or the journal selection.
fn state_key(cli: &Cli) -> String {
    if cli.journal {
        let mut key = String::from("journal");
        for part in cli.directory.iter().chain(&cli.journal_files) {
            key.push(':');
            key.push_str(&part.to_string_lossy());
        }
        for part in cli.unit.iter().chain(&cli.identifier) {
            key.push(':');
            key.push_str(part);
        }
        return key;
    }
    let paths: Vec<String> =
        cli.files.iter().map(|p| tail::absolute(p).to_string_lossy().into_owned()).collect();
    paths.join("\n")
}

/// A size in bytes as the shared parser reads it (`1048576`, `64K`, `1M`), at least one byte.
fn parse_size(text: &str) -> Result<usize, String> {
    let bytes = opsline::units::parse_size(text)?;
    usize::try_from(bytes)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("not a usable size: {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("64k"), Ok(64 << 10));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("0").is_err());
        assert!(parse_size("3X").is_err());
    }
}
