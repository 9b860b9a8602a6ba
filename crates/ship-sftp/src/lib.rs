//! ship-sftp: uploads files to an SFTP server so that a reader never sees a partial file,
//! verifies them, prunes old backups, and mirrors a log tree per agent.
//!
//! Built on libssh2 (the `ssh2` crate). The modules: [`settings`] (target, config file),
//! [`connect`] and [`hostkeys`] (connection, trust, login), [`transfer`] and [`verify`] (one
//! file), [`pool`] (parallel sessions, retries), [`ship`] (upload mode and retention),
//! [`prune`] (which files are old), [`mirror`] (the log archive agent).

pub mod args;
pub mod bulk;
pub mod connect;
pub mod hostkeys;
pub mod limit;
pub mod mirror;
pub mod pool;
pub mod prune;
pub mod segments;
pub mod settings;
pub mod ship;
pub mod transfer;
pub mod verify;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use opsline::man::Example;
use opsline::{Code, CommonArgs, Context, InputArgs, RecordReader, exit::err};

use crate::args::{ConnectArgs, TransferArgs};
use crate::prune::PruneBy;

/// The tool's name.
pub const TOOL: &str = "ship-sftp";

const ABOUT: &str =
    "Upload files to an SFTP server safely, verify them, prune old backups, and mirror log trees";

const LONG_ABOUT: &str = "\
Uploads each input file (records with a \"path\", bare paths on standard input, or PATH \
arguments) into the target folder of an SFTP server, creating the folder with its parents. \
Each file is written under a hidden temporary name in that folder (.NAME.ship-sftp.part), its \
size (and with --verify sha256 its SHA-256) is checked after it is closed, its mtime is copied, \
and only then is it renamed to its final name: a reader on the server never sees a partial file \
under the final name.

Existing files: OpenSSH refuses to rename onto an existing name, so the policy is explicit. A \
file of the same name with the same size and mtime means \"already shipped\": it is skipped \
(\"skipped\": true). A different one is an error for that file unless --overwrite is given; \
then the old file is deleted just before the rename, so a reader may briefly find no file, but \
never a partial one.

Each record goes on with \"kind\": \"shipped\" and \"sftp\": {\"host\", \"remote\", \"bytes\", \
\"sha256\" (with --verify sha256), \"seconds\", \"skipped\" (when skipped)}. Records without a \
path or with an error pass through untouched.

Trust: the server's host key must be in --known-hosts (OpenSSH format, hashed names allowed, \
[host]:port for other ports). An unknown host is refused with its SHA256 fingerprint and the \
command that trusts it; --accept-new appends its key instead. A changed key is always refused \
(exit 77). A known_hosts line that cannot be parsed is warned about and skipped; the other \
lines are still checked.

Login: --identity KEY (with --passphrase-file), then every key of a running ssh-agent, then \
the password from --password-file or $SHIP_SFTP_PASSWORD. Secrets never go on the command line.

Connections: --connect-timeout bounds the TCP connect, --timeout any stalled operation; \
keepalives are sent while idle. A lost or stalled connection is reconnected with backoff and \
the file restarted from scratch; after --retries the file gets an error record and the exit \
status is 75, so cron tries again. Files go in parallel over --transfers separate SSH sessions, \
and a file of 64 MiB or more checked by size is written in ranges over up to --transfers \
sessions at once (libssh2 needs more CPU per byte than OpenSSH; this spreads it over cores). \
Files of 8 MiB or more are written over an SFTP channel of their own with requests as large as \
the server allows (255 KiB for OpenSSH, which says so through limits@openssh.com; 32 KiB for \
servers that do not say): with OpenSSH, an eighth of the requests libssh2's own 30,000-byte \
writes would take. A server that allows one channel per connection (MaxSessions 1) gets every \
file through libssh2's channel, over one session.

Encryption: the ciphers offered are, in this order, aes128-ctr, aes256-ctr, \
aes128-gcm@openssh.com, aes256-gcm@openssh.com and chacha20-poly1305@openssh.com, and the MACs \
hmac-sha2-256-etm@openssh.com, hmac-sha2-512-etm@openssh.com, hmac-sha2-256 and hmac-sha2-512 \
(AES-GCM and chacha20-poly1305 bring their own). On a CPU with AES and SHA instructions AES-CTR \
with HMAC-SHA-256 is what costs libssh2 and the server the least CPU together; chacha20-poly1305 \
comes last because both ends compute it in software. CBC modes, 3DES, Blowfish, CAST, arcfour, \
SHA-1 and MD5 are never offered. --ciphers replaces the cipher list, for example \
--ciphers chacha20-poly1305@openssh.com on machines without AES instructions.

Retention (--keep-days N): after every file of the run arrived (never otherwise), files of the \
target folder older than N days are deleted: names matching --prune-glob (default: any name \
that carries a date in --date-format), judged by the date in the name or, with --prune-by \
mtime, by their mtime. A file that cannot be dated is never deleted, nor a hidden one, nor one \
shipped in this run. Each deletion is a \"kind\": \"pruned\" record; --dry-run only lists.

The mirror subcommand replicates a local log tree to DIR/AGENT_ID on the server (see \
ship-sftp-mirror(1)).";

/// Examples for the man page.
pub const EXAMPLES: &[Example] = &[
    Example {
        title: "Ship tonight's dump, check its SHA-256, and delete dumps older than 30 days.",
        command: "archive-dump ... | ship-sftp sftp://backup@backup.example.org/srv/backup/TSE-INFORX --verify sha256 --keep-days 30",
    },
    Example {
        title: "See what retention would delete, without uploading anything new.",
        command: "ship-sftp sftp://backup@backup.example.org/srv/backup --keep-days 30 --dry-run /var/backups/dumps/dump-20250630.zip",
    },
    Example {
        title: "Upload with a key and a throttle, settings in a file.",
        command: "ship-sftp --config /etc/opsline/ship.toml --identity ~/.ssh/backup_ed25519 --bwlimit 2M /var/backups/*.tar.gz",
    },
    Example {
        title: "Mirror the application logs of this node every minute.",
        command: "ship-sftp mirror /var/log/app sftp://logs@logs.example.org/archive --glob '*.log' --agent-id \"$(hostname)\" --every 60",
    },
];

/// Command line.
#[derive(Debug, clap::Parser)]
#[command(
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    args_conflicts_with_subcommands = true,
    args_override_self = true
)]
pub struct Cli {
    /// Mirror mode
    #[command(subcommand)]
    pub command: Option<Command>,

    /// sftp://[user@]host[:port][/dir]: the path is absolute, /~/dir is relative to the login
    /// folder, %XX escapes are decoded (may be left out with --host or --config)
    #[arg(value_name = "TARGET")]
    pub target: Option<String>,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub input: InputArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub connect: ConnectArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub transfer: TransferArgs,

    /// Replace an existing remote file that differs (size or mtime) from the one being shipped
    #[arg(long)]
    pub overwrite: bool,

    /// After a successful run, delete files of the target folder older than this many days
    #[arg(long, value_name = "N")]
    pub keep_days: Option<u32>,

    /// Which names retention may delete [default: names carrying a date in --date-format]
    #[arg(long, value_name = "GLOB", requires = "keep_days")]
    pub prune_glob: Option<String>,

    /// How dates are written in file names (%Y %y %m %d %j %H %M %S)
    #[arg(long, value_name = "FORMAT", default_value = "%Y%m%d")]
    pub date_format: String,

    /// Judge age by the date in the name or by the file's mtime
    #[arg(long, value_enum, value_name = "HOW", default_value_t = PruneBy::Name)]
    pub prune_by: PruneBy,

    /// List what retention would delete (as "pruned" records with "dry_run": true), delete
    /// nothing
    #[arg(long, requires = "keep_days")]
    pub dry_run: bool,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: CommonArgs,
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Replicate a local log tree to DIR/AGENT_ID on the server, remembering what was sent
    #[command(long_about = MIRROR_ABOUT, args_override_self = true)]
    Mirror(MirrorArgs),
}

const MIRROR_ABOUT: &str = "\
Replicates the files of LOCAL_DIR that match --glob to DIR/AGENT_ID/ on the server, with the \
same relative paths (folders are created). A file is sent when it is new or its size or mtime \
changed since the state file says it was sent (a log that grew is sent again whole, through a \
temporary name and a rename that replaces the old copy). Files modified within --min-age are \
still being written and wait for the next pass. The state is saved atomically at most 0.2 s after \
each verified file and before its record is written, so a restart misses nothing and re-sends \
at most the files verified in the moment before a crash. A pass with \
nothing new opens no connection.

Paths that would leave the target are refused: symbolic links that point outside LOCAL_DIR \
get an error record, and relative paths are checked before they are joined. Each sent file is \
a \"kind\": \"shipped\" record with \"path\" and \"sftp\".

Without --every one pass is made (for cron); with it, passes repeat until SIGTERM or SIGINT, \
which finish the files in flight and save the state.";

/// Options of `ship-sftp mirror`.
#[derive(Debug, clap::Args)]
pub struct MirrorArgs {
    /// The local tree to replicate
    #[arg(value_name = "LOCAL_DIR")]
    pub local_dir: PathBuf,

    /// sftp://[user@]host[:port][/dir], as for upload mode
    #[arg(value_name = "TARGET")]
    pub target: Option<String>,

    /// Files to send, matched against the path relative to LOCAL_DIR (* crosses folders, so
    /// *.log matches a/b.log); may be repeated [default: every file]
    #[arg(long, value_name = "GLOB")]
    pub glob: Vec<String>,

    /// This node's folder under the target folder [default: the host name]
    #[arg(long, value_name = "ID")]
    pub agent_id: Option<String>,

    /// State file [default: $STATE_DIRECTORY, $XDG_STATE_HOME/opsline or
    /// ~/.local/state/opsline, under ship-sftp/]
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,

    /// Forget the saved state and send everything again
    #[arg(long)]
    pub reset: bool,

    /// Seconds a file must have been left unmodified before it is sent
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub min_age: f64,

    /// Repeat a pass every SECS seconds until stopped
    #[arg(long, value_name = "SECS")]
    pub every: Option<f64>,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub connect: ConnectArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub transfer: TransferArgs,
}

impl opsline::Tool for Cli {
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}

/// Runs the tool.
pub fn run(cli: Cli, ctx: &Context) -> anyhow::Result<Code> {
    match cli.command {
        Some(Command::Mirror(args)) => run_mirror(args, ctx),
        None => run_upload(cli, ctx),
    }
}

fn run_upload(mut cli: Cli, ctx: &Context) -> anyhow::Result<Code> {
    // With --host or --config the first positional argument may already be a file.
    if let Some(first) = cli.target.take_if(|t| !t.starts_with("sftp://")) {
        cli.input.paths.insert(0, PathBuf::from(first));
    }
    let settings = settings::resolve(ctx.tool, cli.target.as_deref(), &cli.connect, &cli.transfer)?;
    let retention = cli
        .keep_days
        .map(|days| -> anyhow::Result<ship::Retention> {
            let rules =
                prune::Rules::new(days, cli.prune_glob.as_deref(), &cli.date_format, cli.prune_by)?;
            Ok(ship::Retention { rules, dry_run: cli.dry_run })
        })
        .transpose()?;
    let plan =
        ship::UploadPlan { settings: Arc::new(settings), overwrite: cli.overwrite, retention };
    let reader = RecordReader::start(ctx.tool, &cli.input, &ctx.shutdown);
    ship::run(&plan, reader, &cli.input.field, ctx)
}

fn run_mirror(args: MirrorArgs, ctx: &Context) -> anyhow::Result<Code> {
    let settings =
        settings::resolve(ctx.tool, args.target.as_deref(), &args.connect, &args.transfer)?;
    let agent_id = match args.agent_id {
        Some(id) => id,
        None => host_name()?,
    };
    mirror::check_agent_id(&agent_id)?;
    let state = match args.state {
        Some(path) => path,
        None => {
            let key = format!("mirror {} {agent_id}", args.local_dir.display());
            opsline::state::default_path(ctx.tool, &key)?
        }
    };
    let plan = mirror::MirrorPlan {
        settings: Arc::new(settings),
        globs: mirror::glob_set(&args.glob)?,
        local_dir: args.local_dir,
        agent_id,
        state,
        min_age: seconds_or_zero(args.min_age, "--min-age")?,
        every: args.every.map(|s| seconds_or_zero(s, "--every")).transpose()?,
        reset: args.reset,
    };
    mirror::run(&plan, ctx)
}

fn seconds_or_zero(value: f64, option: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| err(Code::Usage, format!("{option} {value}: not a number of seconds")))
}

fn host_name() -> anyhow::Result<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .ok_or_else(|| err(Code::Usage, "cannot read the host name: give --agent-id"))
}
