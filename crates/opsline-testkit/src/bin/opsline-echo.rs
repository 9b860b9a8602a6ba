//! A minimal record tool built on the shared crate, used by the contract tests; it is not
//! installed.

use std::path::PathBuf;

use clap::Parser;
use opsline::input::InputError;
use opsline::{
    Code, CommonArgs, Context, Flush, InputArgs, Record, RecordReader, RecordWriter, StateFile,
};
use serde::{Deserialize, Serialize};

/// Passes records through, noting the path each one names.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    input: InputArgs,

    /// Count the records in this state file
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,

    /// Fail on records that have this top-level field
    #[arg(long, value_name = "FIELD")]
    fail_on: Option<String>,

    /// Save a large state this many times, then exit (for crash tests)
    #[arg(long, value_name = "N", requires = "state")]
    churn: Option<u64>,

    #[command(flatten)]
    common: CommonArgs,
}

impl opsline::Tool for Cli {
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Counter {
    records: u64,
    padding: String,
}

fn main() -> std::process::ExitCode {
    opsline::cli::main::<Cli>("opsline-echo", run)
}

fn run(cli: Cli, ctx: &Context) -> anyhow::Result<Code> {
    let state = cli.state.as_deref().map(|p| StateFile::lock(p, ctx.tool, 1)).transpose()?;
    let mut counter: Counter = match &state {
        Some(state) => state.load()?.unwrap_or_default(),
        None => Counter::default(),
    };
    if let (Some(times), Some(state)) = (cli.churn, &state) {
        return churn(state, times);
    }
    let mut out = RecordWriter::stdout(ctx.tool, Flush::EachRecord)?;
    for item in RecordReader::start(ctx.tool, &cli.input, &ctx.shutdown) {
        let record = echo(item.map_err(InputError::into_fatal)?, &cli, ctx.tool);
        out.write(&record)?;
        counter.records += 1;
    }
    if let Some(state) = &state {
        state.save(&counter)?;
    }
    Ok(out.finish()?)
}

fn echo(mut record: Record, cli: &Cli, tool: &str) -> Record {
    if record.passes_through(&cli.input.field) {
        return record;
    }
    if let Some(Ok(path)) = record.input_path(&cli.input.field) {
        record.insert("echo", serde_json::json!({ "path": path }));
    }
    if cli.fail_on.as_deref().is_some_and(|field| record.get(field).is_some()) {
        record.set_error(tool, "asked to fail");
    }
    record
}

fn churn(state: &StateFile, times: u64) -> anyhow::Result<Code> {
    for generation in 1..=times {
        let padding = format!("{generation:x}").repeat(1 << 19);
        state.save(&Counter { records: generation, padding })?;
    }
    Ok(Code::Ok)
}
