fn main() -> std::process::ExitCode {
    opsline::cli::main::<archive_dump::Cli>(archive_dump::TOOL, archive_dump::run)
}
