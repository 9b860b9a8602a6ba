//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use opsline::man::Example;

use crate::output::Format;
use crate::report::{By, Per};
use crate::zone::Zone;

/// License usage from FlexLM/FlexNet debug logs: sessions, connection time, peaks, denials,
/// who is on now
#[derive(Debug, Parser)]
#[command(
    version,
    long_about = "Reads the debug log of a FlexLM/FlexNet license server (lmgrd with a vendor \
daemon such as OriginLab's orglab: orglabdebug.log) and tells who used which license and when.\n\n\
Lines carry only the time of day: the date is carried from the anchors in the log (TIMESTAMP \
lines, the lmgrd start banner, summary-log dates) and moved on by a day whenever the clock jumps \
backwards by more than four hours; --start-date dates lines before the first anchor. A server \
start closes the sessions of the daemon that restarted (closed_by \"restart\"); a license reread \
does not. Two OUTs by the same user@host need two INs before their session ends.\n\n\
Input: log files (plain or gzip, read in the order of their first date), or standard input, \
which may also carry log-tail's {\"kind\":\"line\",\"line\":…} records. Lines that are not debug-log \
lines are counted and summarised on standard error; they fail the run only with --strict."
)]
pub struct Cli {
    /// What to produce
    #[command(subcommand)]
    pub command: Command,

    /// Options every opsline tool has
    #[command(flatten)]
    pub common: opsline::CommonArgs,
}

impl opsline::Tool for Cli {
    fn common(&self) -> &opsline::CommonArgs {
        &self.common
    }
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// One record per usage line (OUT, IN, DENIED, QUEUED, DEQUEUED, UNSUPPORTED) and per
    /// server start, restart, reread and exit
    ///
    /// Usage lines give {"kind":"token","event":"out|in|denied|queued|dequeued|unsupported",
    /// "time","daemon","feature","user","host","licenses","reason"}, checkouts with --snapshots
    /// also "ip", "ip_confidence" ("unique" or "ambiguous", never certain), "ip_candidates" and
    /// "pc" {"name","mac"}. Server lines give {"kind":"server","event":"lmgrd_start|vendor_start|
    /// vendor_restart|vendor_banner|reread|lmgrd_exit|port","daemon","closed_sessions"}.
    Events(LogArgs),
    /// One record per session: the time a (daemon, feature, user, host) held at least one
    /// license, with how it ended
    ///
    /// {"kind":"session","daemon","feature","user","host","start","end","seconds","licenses"
    /// (the most held at once),"checkouts","closed_by"}: closed_by is "in", "shutdown", "inactive",
    /// "removed", "restart" (the daemon started again; the session ends at its last line before)
    /// or "open" (still open at the end of the input; "end" is null). Records come as sessions end.
    Sessions(LogArgs),
    /// Connection time (union of intervals), token-hours, sessions, peak concurrent licenses
    /// and denials per user, host or feature, per day, week or month
    ///
    /// {"kind":"report","by","period","period_start", the group ("user", "host" or "feature"),
    /// "connected_seconds","connected_hours" (time with at least one license held: overlapping
    /// sessions count once),"token_seconds","token_hours" (licenses times time),"sessions" (started
    /// in the period),"peak_licenses","peak_at" (the most held at once and when first reached),
    /// "denials","transient_denials" (denials followed by a successful checkout within
    /// --transient seconds)}. Sessions spanning a period boundary are split at local midnight.
    Report(ReportArgs),
    /// Who holds licenses at the end of the log (or at --at), since when, how many
    Connected(ConnectedArgs),
    /// Takes a snapshot of the established connections to the vendor daemon's port with ss
    /// and appends it to the snapshot file that --snapshots reads
    Snapshot(SnapshotArgs),
}

/// Options of every subcommand that reads a log.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Debug log files, plain or gzip, in any order ("-" or none: standard input)
    #[arg(value_name = "LOG")]
    pub logs: Vec<PathBuf>,

    /// The date of lines before the first date anchor in the log (YYYY-MM-DD)
    #[arg(long, value_name = "DATE")]
    pub start_date: Option<chrono::NaiveDate>,

    /// The time zone of the log's clock: local, UTC, +HH:MM or a name such as Europe/Berlin
    #[arg(long, value_name = "ZONE", default_value = "local")]
    pub tz: Zone,

    /// Only from this time on (RFC 3339, or YYYY-MM-DD[ HH:MM[:SS]] in --tz)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,

    /// Only before this time (RFC 3339, or YYYY-MM-DD[ HH:MM[:SS]] in --tz)
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,

    /// Only this user (may be repeated)
    #[arg(long, value_name = "USER")]
    pub user: Vec<String>,

    /// Only this feature (may be repeated)
    #[arg(long, value_name = "FEATURE")]
    pub feature: Vec<String>,

    /// Treat user names that differ only in case as one user (reported in lower case)
    #[arg(long)]
    pub fold_case: bool,

    /// The site's snapshot side file (blocks of a date line, ss -n -t lines and the log line
    /// that triggered it): each checkout gets the peer address that appeared with it
    #[arg(long, value_name = "FILE")]
    pub snapshots: Option<PathBuf>,

    /// The vendor daemon's TCP port for --snapshots (default: the port the log announces)
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,

    /// ISC dhcpd.conf or dhcpd.leases files: addresses get the PC's name and MAC (put -- or
    /// another option between the list and the logs)
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub dhcpd: Vec<PathBuf>,

    /// Output format [default: table on a terminal, json otherwise]
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,

    /// Also write the records to this spreadsheet (.xlsx)
    #[arg(long, value_name = "FILE")]
    pub xlsx: Option<PathBuf>,

    /// Also write the records to this OpenDocument spreadsheet (.ods)
    #[arg(long, value_name = "FILE")]
    pub ods: Option<PathBuf>,

    /// Exit 65 when the input had malformed lines
    #[arg(long)]
    pub strict: bool,

    /// Keep the running date and the open sessions in FILE between runs (for a log fed
    /// piece by piece, e.g. by log-tail; events, sessions and connected only)
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// With --state: forget the saved state and start over
    #[arg(long, requires = "state")]
    pub reset: bool,
}

/// Options of `report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Group the rows by
    #[arg(long, value_enum, default_value_t = By::User)]
    pub by: By,

    /// Split the rows into periods [default: one row per group for the whole log]
    #[arg(long, value_enum)]
    pub per: Option<Per>,

    /// A denial followed within SECONDS by a successful checkout of the same user@host and
    /// feature is counted as transient, apart from the real denials
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub transient: u32,

    /// Log options
    #[command(flatten)]
    pub log: LogArgs,
}

/// Options of `connected`.
#[derive(Debug, Clone, Args)]
pub struct ConnectedArgs {
    /// Who was connected at this time (RFC 3339, or YYYY-MM-DD[ HH:MM[:SS]] in --tz)
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,

    /// Log options
    #[command(flatten)]
    pub log: LogArgs,
}

/// Options of `snapshot`.
#[derive(Debug, Clone, Args)]
pub struct SnapshotArgs {
    /// Append the block to this file (the file --snapshots reads)
    #[arg(long, value_name = "FILE")]
    pub output: PathBuf,

    /// The vendor daemon's TCP port
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,

    /// Take the port from this debug log's "VENDOR using TCP-port N" line
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,

    /// The log line that triggered the snapshot, written at the end of the block
    #[arg(long, value_name = "LINE")]
    pub trigger: Option<String>,

    /// The ss program to run
    #[arg(long, value_name = "PROGRAM", default_value = "ss")]
    pub ss: PathBuf,

    /// Read the debug log's lines from standard input (plain, or log-tail's line records) and
    /// take a snapshot after every OUT line, with that line as the trigger; the port may also
    /// come from the stream's announcement
    #[arg(long, conflicts_with = "trigger")]
    pub follow: bool,
}

/// Examples for the man page.
pub const EXAMPLES: &[Example] = &[
    Example {
        title: "Hours each user was connected, per day, as a table",
        command: "origin-tokens report --by user --per day --format table /var/log/orglabdebug.log*",
    },
    Example {
        title: "Peak concurrent licenses per feature and month, into a spreadsheet",
        command: "origin-tokens report --by feature --per month --xlsx usage.xlsx orglabdebug.log",
    },
    Example {
        title: "Who holds a license now, with the PC it was checked out from",
        command: "origin-tokens connected --snapshots /var/log/orglab-ss.log --dhcpd /etc/dhcp/dhcpd.conf /var/lib/dhcp/dhcpd.leases -- orglabdebug.log",
    },
    Example {
        title: "Live events from a followed log, keeping the running date between runs",
        command: "log-tail --follow orglabdebug.log | origin-tokens events --state /var/lib/origin-tokens/state.json",
    },
    Example {
        title: "Snapshot the daemon's connections after every checkout, for --snapshots",
        command: "log-tail --follow orglabdebug.log | origin-tokens snapshot --follow --log orglabdebug.log --output /var/log/orglab-ss.log",
    },
];
