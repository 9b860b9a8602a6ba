//! `archive-web`: the central log archive (the tree `ship-sftp mirror` fills, one folder per
//! agent) served read-only over HTTP for people to list, search, view and download logs, and
//! searched from the command line as records.

pub mod archive;
pub mod html;
pub mod server;

use std::net::SocketAddr;
use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};
use opsline::man::Example;
use opsline::{Code, CommonArgs, Context, Flush, Record, RecordWriter};

use crate::archive::{Archive, Entry, Query};

/// The tool's name.
pub const TOOL: &str = "archive-web";

/// Browse and search the central log archive, read-only.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Browse and search the central log archive, read-only",
    long_about = "Serves the tree that `ship-sftp mirror` fills on the central log server (ROOT/AGENT/path/to/file.log) \
read-only over HTTP: list agents and folders, search by name, agent and date, view a log (gzip-compressed ones \
too) and download it. `search` prints the same matches as records. Nothing is ever written; paths that lead \
out of the root, also through symbolic links, are refused. It listens on 127.0.0.1 by default: put a TLS \
reverse proxy with authentication in front of it to open it to a network."
)]
pub struct Cli {
    /// The archive root: one folder per agent
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,

    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub common: CommonArgs,
}

impl opsline::Tool for Cli {
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the archive over HTTP until stopped; prints one record with the address it listens on
    Serve(ServeArgs),
    /// Print the archived files that match as records, newest first
    Search(SearchArgs),
}

/// Options of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one)
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Requests served at once
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub threads: usize,
}

/// Options of `search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Part of the file's path under its agent (case-insensitive), or a glob with * and ?
    #[arg(long, value_name = "TEXT")]
    pub name: Option<String>,

    /// Only this agent's files
    #[arg(long, value_name = "ID")]
    pub agent: Option<String>,

    /// Modified on or after this day (YYYY-MM-DD, local time)
    #[arg(long, value_name = "DAY")]
    pub from: Option<NaiveDate>,

    /// Modified on or before this day (YYYY-MM-DD, local time)
    #[arg(long, value_name = "DAY")]
    pub to: Option<NaiveDate>,

    /// At most this many records
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub limit: usize,
}

/// Examples for the man page.
pub const EXAMPLES: &[Example] = &[
    Example {
        title: "Serve the archive the log agents fill, on the central server's loopback.",
        command: "archive-web --root /srv/log-archive serve --listen 127.0.0.1:8080",
    },
    Example {
        title: "List yesterday's nginx logs from node7.",
        command: "archive-web --root /srv/log-archive search --agent node7 --name nginx --from 2026-11-22 --to 2026-11-22",
    },
];

/// Runs the tool.
pub fn run(cli: Cli, ctx: &Context) -> anyhow::Result<Code> {
    let archive = Archive::open(&cli.root)?;
    match cli.command {
        Command::Serve(args) => serve(archive, &args, ctx),
        Command::Search(args) => search(&archive, &args, ctx),
    }
}

fn serve(archive: Archive, args: &ServeArgs, ctx: &Context) -> anyhow::Result<Code> {
    let server = server::bind(args.listen)?;
    let address =
        server.server_addr().to_ip().map_or_else(|| args.listen.to_string(), |a| a.to_string());
    let mut out = RecordWriter::stdout(ctx.tool, Flush::EachRecord)?;
    let mut listening = Record::new("listening");
    listening.insert("url", format!("http://{address}/"));
    listening.insert("root", archive.root().to_string_lossy().into_owned());
    out.write(&listening)?;
    server::serve(server, archive, args.threads, &ctx.shutdown);
    Ok(out.finish()?)
}

fn search(archive: &Archive, args: &SearchArgs, ctx: &Context) -> anyhow::Result<Code> {
    let query =
        Query { name: args.name.clone(), agent: args.agent.clone(), from: args.from, to: args.to };
    let found = archive.search(&query, args.limit)?;
    let mut out = RecordWriter::stdout(ctx.tool, Flush::Buffered)?;
    for entry in &found.entries {
        out.write(&record(archive, entry))?;
    }
    Ok(out.finish()?)
}

fn record(archive: &Archive, entry: &Entry) -> Record {
    let mut record = Record::new("archived");
    let path = archive.root().join(&entry.agent).join(&entry.file);
    record.insert("path", path.to_string_lossy().into_owned());
    record.insert(
        "archive",
        serde_json::json!({
            "agent": entry.agent,
            "file": entry.file,
            "size": entry.size,
            "modified": opsline::time::rfc3339(&entry.modified),
        }),
    );
    record
}
