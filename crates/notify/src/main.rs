fn main() -> std::process::ExitCode {
    opsline::cli::main::<notify::Cli>(notify::TOOL, notify::run)
}
