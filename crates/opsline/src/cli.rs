//! The main wrapper every tool's `main` calls: options (also from the environment), logging to
//! standard error, signals, and the mapping of the outcome to an exit status.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::exit::{Code, code_of, is_broken_pipe};
use crate::signal::Shutdown;

/// Options every tool has.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CommonArgs {
    /// More detail on standard error: -v info, -vv debug, -vvv trace
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Only errors on standard error
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Format of the log lines on standard error
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true, value_name = "FORMAT")]
    pub log_format: LogFormat,
}

/// How log lines on standard error look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `TOOL: warning: message key=value`, for people
    #[default]
    Text,
    /// one JSON object per line, for log collectors
    Json,
}

/// A tool's parsed command line.
pub trait Tool: clap::Parser {
    /// The options every tool has.
    fn common(&self) -> &CommonArgs;
}

/// What a tool's `run` gets besides its options.
#[derive(Debug, Clone)]
pub struct Context {
    /// The tool's name, as in `TOOL: error: …` and in records' `error.tool`.
    pub tool: &'static str,
    /// Set when SIGINT or SIGTERM arrives.
    pub shutdown: Shutdown,
}

/// The tool's clap command with every long option also readable from the environment as
/// `TOOL_OPTION` (`ship-sftp --host` ⇔ `SHIP_SFTP_HOST`).
pub fn command<T: CommandFactory>(tool: &str) -> Command {
    with_env(T::command(), &crate::secret::env_name(tool, "")).name(tool.to_owned())
}

fn with_env(command: Command, prefix: &str) -> Command {
    command
        .mut_args(|arg| {
            let skip = arg.is_positional()
                || arg.get_env().is_some()
                || matches!(
                    arg.get_action(),
                    ArgAction::Help
                        | ArgAction::HelpShort
                        | ArgAction::HelpLong
                        | ArgAction::Version
                        | ArgAction::Count
                );
            match arg.get_long().map(str::to_owned) {
                Some(long) if !skip => {
                    let name = format!("{prefix}{}", long.to_uppercase().replace('-', "_"));
                    arg.env(name)
                }
                _ => arg,
            }
        })
        .mut_subcommands(|sub| with_env(sub, prefix))
}

/// Parses the command line, sets up logging and signals, runs the tool and turns the outcome
/// into the exit status the contract defines. A tool's `main` is just this call.
pub fn main<T: Tool>(tool: &'static str, run: fn(T, &Context) -> anyhow::Result<Code>) -> ExitCode {
    let matches = command::<T>(tool).get_matches();
    let options = parse::<T>(&matches);
    init_logging(tool, options.common());
    let shutdown = match Shutdown::install() {
        Ok(shutdown) => shutdown,
        Err(e) => return fail(tool, options.common().log_format, &anyhow::Error::new(e)),
    };
    let format = options.common().log_format;
    let context = Context { tool, shutdown };
    let code = match run(options, &context) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => Code::Ok,
        Err(e) => return fail(tool, format, &e),
    };
    if context.shutdown.by_interrupt() {
        return ExitCode::from(130);
    }
    exit_code(code)
}

fn parse<T: FromArgMatches>(matches: &ArgMatches) -> T {
    T::from_arg_matches(matches).unwrap_or_else(|e| e.exit())
}

fn exit_code(code: Code) -> ExitCode {
    ExitCode::from(u8::try_from(code.as_i32()).unwrap_or(2))
}

#[allow(clippy::print_stderr)]
fn fail(tool: &str, format: LogFormat, error: &anyhow::Error) -> ExitCode {
    let code = code_of(error);
    match format {
        LogFormat::Text => eprintln!("{tool}: error: {error:#}"),
        LogFormat::Json => tracing::error!(exit = code.as_i32(), "{error:#}"),
    }
    exit_code(code)
}

/// Logging to standard error at the level -v/-q ask for; `OPSLINE_LOG` (an `EnvFilter`
/// directive such as `debug` or `log_tail=trace`) overrides it.
fn init_logging(tool: &'static str, common: &CommonArgs) {
    let level = match (common.quiet, common.verbose) {
        (true, _) => Level::ERROR,
        (false, 0) => Level::WARN,
        (false, 1) => Level::INFO,
        (false, 2) => Level::DEBUG,
        _ => Level::TRACE,
    };
    let filter =
        EnvFilter::try_from_env("OPSLINE_LOG").unwrap_or_else(|_| EnvFilter::new(level.as_str()));
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter);
    let installed = match common.log_format {
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .event_format(ToolFormat { tool })
            .try_init(),
    };
    drop(installed);
}

/// `TOOL: level: message key=value`, the form coreutils and ripgrep use for diagnostics.
struct ToolFormat {
    tool: &'static str,
}

impl<S, N> FormatEvent<S, N> for ToolFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        write!(writer, "{}: {level}: ", self.tool)?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Demo {
        #[arg(long)]
        remote_host: Option<String>,
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        common: CommonArgs,
    }

    #[test]
    fn long_options_read_the_environment() {
        let command = command::<Demo>("ship-sftp");
        let env: Vec<String> = command
            .get_arguments()
            .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
            .collect();
        assert!(env.contains(&"SHIP_SFTP_REMOTE_HOST".to_owned()), "{env:?}");
        assert!(env.contains(&"SHIP_SFTP_DRY_RUN".to_owned()));
        assert!(!env.iter().any(|e| e.ends_with("_VERBOSE")), "counts take no value: {env:?}");
    }
}
