fn main() -> std::process::ExitCode {
    opsline::cli::main::<log_tail::Cli>(log_tail::TOOL, log_tail::run)
}
