fn main() -> std::process::ExitCode {
    opsline::cli::main::<origin_tokens::Cli>(origin_tokens::TOOL, origin_tokens::run)
}
