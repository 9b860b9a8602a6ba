fn main() -> std::process::ExitCode {
    opsline::cli::main::<ship_sftp::Cli>(ship_sftp::TOOL, ship_sftp::run)
}
