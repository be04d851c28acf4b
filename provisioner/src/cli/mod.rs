//! The `dcform` command line: parse (two phases: raw `args`, then checked in each command), run, map the
//! outcome to an exit code. `anyhow` is used here only, at the edge, to carry typed errors to one printer.

mod app_args;
mod app_cmd;
mod apply_cmd;
mod args;
mod commands;
mod compat;
mod inputs;
mod nodes;
mod plan_cmd;
mod state_cmd;
mod table;
mod task_cmd;

use std::io::IsTerminal;

use clap::Parser;

pub use args::{Cli, Command, normalise};

/// Process exit codes.
pub mod exit {
    /// Success (and `plan --detailed-exitcode`: no changes).
    pub const OK: u8 = 0;
    /// Bad input: definition, flags, state file, lock held.
    pub const USER: u8 = 1;
    /// Internal failure (a provider, a host, a bug). Also `plan --detailed-exitcode`: changes present.
    pub const INTERNAL: u8 = 2;
    /// `plan --detailed-exitcode`: changes present.
    pub const CHANGES: u8 = 2;
    /// Interrupted by Ctrl-C after in-flight steps were recorded.
    pub const INTERRUPTED: u8 = 130;
}

/// A failed command: the error to print and the exit code it maps to.
#[derive(Debug)]
pub struct CliError {
    /// Exit code.
    pub code: u8,
    /// The error and its causes.
    pub error: anyhow::Error,
}

impl CliError {
    /// Bad input (exit 1).
    pub fn user(error: impl Into<anyhow::Error>) -> CliError {
        CliError {
            code: exit::USER,
            error: error.into(),
        }
    }

    /// Internal failure (exit 2).
    pub fn internal(error: impl Into<anyhow::Error>) -> CliError {
        CliError {
            code: exit::INTERNAL,
            error: error.into(),
        }
    }
}

impl From<crate::spec::SpecError> for CliError {
    fn from(e: crate::spec::SpecError) -> Self {
        CliError::user(e)
    }
}

impl From<crate::state::StateError> for CliError {
    fn from(e: crate::state::StateError) -> Self {
        if e.is_user_error() {
            CliError::user(e)
        } else {
            CliError::internal(e)
        }
    }
}

/// Whether stdout is a terminal (colour, tables, spinners).
pub(crate) fn stdout_is_tty() -> bool {
    std::io::stdout().is_terminal()
}

/// Runs the command line `argv` and returns the exit code. Errors are printed once, here.
pub fn main_with_args(argv: impl IntoIterator<Item = String>) -> u8 {
    let cli = match Cli::try_parse_from(normalise(argv)) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    exit::OK
                }
                _ => exit::USER,
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return exit::INTERNAL;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => code,
        Err(CliError { code, error }) => {
            eprintln!("Error: {}", dc_support::error::chain(error.as_ref()));
            code
        }
    }
}
