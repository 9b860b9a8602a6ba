//! `watch-uploads`: report every finished upload into watched folders exactly once, as JSON
//! lines, with who uploaded it.
//!
//! The parts: [`select`] (which names count), [`tree`] (recursive inotify watches),
//! [`pending`] (the deadline queue for settling files), [`writers`] (who still has a file
//! open for writing), [`sftplog`] (the SFTP server's own log), [`users`] (who uploaded),
//! [`ledger`] (what was reported, kept across restarts), [`upload`] (the record), [`sanitize`]
//! and [`engine`], which ties them together.

pub mod engine;
pub mod ledger;
pub mod pending;
pub mod sanitize;
pub mod select;
pub mod sftplog;
pub mod tree;
pub mod upload;
pub mod users;
pub mod writers;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use opsline::man::Example;
use opsline::{Code, Context, Flush, RecordWriter, StateFile, WithCode};

use crate::engine::{Config, Engine, Mode, STATE_VERSION};
use crate::select::{DEFAULT_EXTENSIONS, DEFAULT_IGNORES, Selector};
use crate::sftplog::{Base, SftpLog};
use crate::users::{OwnerFrom, Owners, Users};

/// The tool's name.
pub const TOOL: &str = "watch-uploads";

/// Report every finished upload into the watched folders exactly once, with who uploaded it.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Report every finished upload into the watched folders exactly once, with who uploaded it",
    long_about = "Watches each DIR recursively with inotify and writes one JSON record per finished upload \
of the chosen types to standard output, flushed at once:\n\n\
{\"kind\":\"upload\",\"ts\":…,\"path\":…,\"size\":…,\"mtime\":…,\"user\":{\"login\",\"name\",\"email\",…},\"via\":\"close_write|moved_to|scan|poll\"}\n\n\
A file is finished when it is renamed or linked into its final name (IN_MOVED_TO; OpenSSH's plain SFTP \
rename is link+unlink, so a new name for an inode that was already closed counts too; when the watcher \
reads the events only after the old name is gone, as on a busy machine, such a new name counts once no \
process holds it open for writing), or when it was closed after writing and then stays quiet for --settle: same inode, size and mtime, and no process holding \
it open for writing (seen in /proc, as fuser does; processes of other users are seen only as root). A file \
written again while it settles starts over. Names that clients use while a transfer runs (--ignore) are \
never reported. With --sftp-log, the OpenSSH sftp-server's own log (run it as `sftp-server -l INFO`) vetoes \
uploads whose handle ended in a forced close or was never closed, and names the session user.\n\n\
Nothing is lost: a new folder is watched and then scanned (files written before the watch existed are \
reported), an inotify queue overflow triggers a rescan of every tree, and --rescan-every catches anything \
else. The state file remembers what was reported (device, inode, size, mtime, path), so after a restart \
the uploads that finished while the tool was down are reported, and nothing twice; a file replaced by a \
new upload under the same name is a new upload. State is saved at most a second after a report and on \
SIGTERM or SIGINT (a crash in that second may repeat a record, never lose one).\n\n\
inotify sees only changes made through this machine's kernel: run the watcher on the SFTP server itself. \
For trees that other machines change over NFS, use --poll, which scans instead.\n\n\
File names are data: a name that is not UTF-8 cannot travel in JSON and gives an error record (exit \
status 1 at the end) while the watcher goes on."
)]
pub struct Cli {
    /// Folders to watch, recursively
    #[arg(value_name = "DIR", required = true)]
    pub dirs: Vec<PathBuf>,

    /// Scan once, report every complete upload not yet reported, and exit (for cron or catch-up)
    #[arg(long, conflicts_with = "poll")]
    pub once: bool,

    /// Extensions to report, case-insensitive [default: avi,mov,mp4,mpg,wmv unless --glob is given]
    #[arg(long, value_delimiter = ',', value_name = "EXT,…")]
    pub ext: Vec<String>,

    /// Report files matching this glob (on the name, or on the path under DIR when it has a
    /// `/`); repeatable; adds to --ext
    #[arg(long, value_name = "GLOB")]
    pub glob: Vec<String>,

    /// Names never reported, such as clients' temporary names; repeatable; replaces the default list
    #[arg(long, value_name = "GLOB", default_values_t = DEFAULT_IGNORES.iter().map(|s| (*s).to_owned()))]
    pub ignore: Vec<String>,

    /// Quiet time after the last close before a file counts as finished; 0 reports at the
    /// close itself, without looking for other writers
    #[arg(long, default_value = "2s", value_parser = opsline::units::parse_duration, value_name = "DURATION")]
    pub settle: Duration,

    /// The OpenSSH sftp-server log (`-l INFO`): veto cut-off uploads, name the session user;
    /// a file the log does not mention yet, or shows still open, waits once, 2 seconds, for
    /// the log to catch up
    #[arg(long, value_name = "FILE")]
    pub sftp_log: Option<PathBuf>,

    /// Rescan every tree this often, to catch anything inotify missed; 0 never
    #[arg(long, default_value = "10m", value_parser = opsline::units::parse_duration, value_name = "DURATION")]
    pub rescan_every: Duration,

    /// Scan every INTERVAL instead of using inotify (NFS trees written by other machines)
    #[arg(long, value_parser = opsline::units::parse_duration, value_name = "INTERVAL")]
    pub poll: Option<Duration>,

    /// State file remembering what was reported [default: under $STATE_DIRECTORY,
    /// $XDG_STATE_HOME or ~/.local/state, keyed by the DIRs]
    #[arg(long, value_name = "FILE", conflicts_with = "no_state")]
    pub state: Option<PathBuf>,

    /// Keep no state: every start reports every complete upload found
    #[arg(long)]
    pub no_state: bool,

    /// Forget the saved state first
    #[arg(long, conflicts_with = "no_state")]
    pub reset: bool,

    /// On a first run (no saved state yet), take the files already there as reported
    #[arg(long)]
    pub skip_existing: bool,

    /// Users file, JSON (array, or object keyed by login) or CSV with a header: login, name,
    /// email, home, and optional chroot/realpath
    #[arg(long, value_name = "FILE")]
    pub users: Option<PathBuf>,

    /// How to find the uploader: `uid` (the file owner's login) or `path:N` (the N-th folder
    /// under DIR); the SFTP log's session user wins when --sftp-log is given
    #[arg(long, default_value = "uid", value_parser = parse_owner_from, value_name = "uid|path:N")]
    pub owner_from: OwnerFrom,

    /// Also report deleted uploads as `"kind":"delete"` records (inotify mode only)
    #[arg(long)]
    pub deletes: bool,

    /// Rename uploads with spaces in their names to underscores (never replacing a file)
    #[arg(long)]
    pub sanitize_names: bool,

    #[command(flatten)]
    pub common: opsline::CommonArgs,
}

fn parse_owner_from(text: &str) -> Result<OwnerFrom, String> {
    text.parse()
}

impl opsline::Tool for Cli {
    fn common(&self) -> &opsline::CommonArgs {
        &self.common
    }
}

/// Examples for the man page.
pub const EXAMPLES: &[Example] = &[
    Example {
        title: "Watch the SFTP homes, attribute uploads from the server log and the users file, and convert them.",
        command: "watch-uploads --users /etc/opsline/users.json --sftp-log /var/log/sftp.log /srv/sftp | convert-video --to flv",
    },
    Example {
        title: "Catch up from cron: report what finished since the last run, then exit.",
        command: "watch-uploads --once --state /var/lib/opsline/uploads.json /srv/sftp",
    },
    Example {
        title: "An NFS tree written by other machines: scan every 30 seconds.",
        command: "watch-uploads --poll 30s --settle 10s /mnt/nfs/uploads",
    },
    Example {
        title: "Report ISO images and deletions too, and map uploads to users by the first folder under the root.",
        command: "watch-uploads --glob '*.iso' --deletes --owner-from path:1 --users users.csv /srv/upload",
    },
];

/// Runs the tool.
pub fn run(cli: Cli, ctx: &Context) -> anyhow::Result<Code> {
    let roots = cli.dirs.iter().map(|dir| check_root(dir)).collect::<anyhow::Result<Vec<_>>>()?;
    let select = selector(&cli)?;
    let users = cli.users.as_deref().map(Users::load).transpose()?;
    let log = cli.sftp_log.as_deref().map(|path| SftpLog::new(path, sftp_bases(users.as_ref())));
    let owners = Owners::new(users, cli.owner_from);
    let state = open_state(&cli, &roots)?;
    let mode = match (cli.once, cli.poll) {
        (true, _) => Mode::Once,
        (false, Some(every)) if !every.is_zero() => Mode::Poll(every),
        (false, Some(_)) => {
            return Err(opsline::exit::err(Code::Usage, "--poll needs an interval above 0"));
        }
        (false, None) => Mode::Watch,
    };
    let config = Config {
        roots,
        select,
        settle: cli.settle,
        mode,
        rescan_every: Some(cli.rescan_every).filter(|d| !d.is_zero()),
        deletes: cli.deletes,
        sanitize: cli.sanitize_names,
        skip_existing: cli.skip_existing,
    };
    let out = RecordWriter::stdout(ctx.tool, Flush::EachRecord)?;
    Engine::new(ctx.tool, config, owners, log, state, out)?.run(&ctx.shutdown)
}

/// A watched root: it must exist, be a folder and be readable; symbolic links in its own path
/// are resolved once here (never inside the tree).
fn check_root(dir: &Path) -> anyhow::Result<PathBuf> {
    let root = fs::canonicalize(dir)
        .with_code(Code::NoInput, || format!("cannot watch {}", dir.display()))?;
    if !root.is_dir() {
        return Err(opsline::exit::err(
            Code::NoInput,
            format!("cannot watch {}: not a folder", dir.display()),
        ));
    }
    fs::read_dir(&root).with_code(Code::IoErr, || format!("cannot read {}", dir.display()))?;
    Ok(root)
}

fn selector(cli: &Cli) -> anyhow::Result<Selector> {
    let ext: Vec<String> = if cli.ext.is_empty() && cli.glob.is_empty() {
        DEFAULT_EXTENSIONS.iter().map(|s| (*s).to_owned()).collect()
    } else {
        cli.ext.clone()
    };
    Selector::new(&ext, &cli.glob, &cli.ignore).map_err(|e| opsline::exit::err(Code::Usage, e))
}

/// Where each user's SFTP paths live, from the users file: the chroot, else the real home.
fn sftp_bases(users: Option<&Users>) -> HashMap<String, Base> {
    let mut bases = HashMap::new();
    for (login, entry) in users.into_iter().flat_map(Users::iter) {
        let text = |key: &str| entry.get(key).and_then(|v| v.as_str()).filter(|s| !s.is_empty());
        if let Some(chroot) = text("chroot") {
            bases.insert(login.clone(), Base::Chroot(PathBuf::from(chroot)));
        } else if let Some(home) = text("realpath").or_else(|| text("home")) {
            bases.insert(login.clone(), Base::Home(PathBuf::from(home)));
        }
    }
    bases
}

fn open_state(cli: &Cli, roots: &[PathBuf]) -> anyhow::Result<Option<StateFile>> {
    if cli.no_state {
        return Ok(None);
    }
    let path = match &cli.state {
        Some(path) => path.clone(),
        None => {
            let key: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
            opsline::state::default_path(TOOL, &key.join(":"))?
        }
    };
    let state = StateFile::lock(&path, TOOL, STATE_VERSION)?;
    if cli.reset {
        state.reset()?;
    }
    Ok(Some(state))
}
