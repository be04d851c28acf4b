//! `dcform` binary: everything lives in the library's `cli` module; this maps its result to the exit code.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(dcform::cli::main_with_args(std::env::args()))
}
