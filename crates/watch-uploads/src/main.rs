fn main() -> std::process::ExitCode {
    opsline::cli::main::<watch_uploads::Cli>(watch_uploads::TOOL, watch_uploads::run)
}
