fn main() -> std::process::ExitCode {
    opsline::cli::main::<archive_web::Cli>(archive_web::TOOL, archive_web::run)
}
