fn main() -> std::process::ExitCode {
    opsline::cli::main::<convert_video::Cli>(convert_video::TOOL, convert_video::run)
}
