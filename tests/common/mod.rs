//! What every root test binary shares (`mod common;` in each): running the `dcform` binary cargo built
//! for these tests under a deadline, reading its output, and the project's example definitions.

#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Bound of one dcform run in these tests (the largest: a local apply of 7 nodes, debug build, on 2 cores).
pub const RUN: Duration = Duration::from_secs(300);

/// `dcform ARGS`: the binary built for these tests, with no stdin (a prompt reads end of input).
pub fn command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dcform"));
    c.args(args).stdin(Stdio::null());
    c
}

/// Runs `cmd` to its end within [`RUN`] (a hang fails the test, naming the command line).
pub fn run(cmd: &mut Command) -> Output {
    dc_support::testing::output_within(RUN, cmd)
}

/// `dcform ARGS` run in `dir`.
pub fn dcform_in(dir: &Path, args: &[&str]) -> Output {
    run(command(args).current_dir(dir))
}

/// stdout and stderr together, for assertions and their messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts a successful run (exit 0) and returns its text.
pub fn ok(o: &Output, what: &str) -> String {
    let t = text(o);
    assert_eq!(o.status.code(), Some(0), "{what} failed:\n{t}");
    t
}

/// `examples/NAME` of the project.
pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

/// The `dccore` binary dcform installs: `DCCORE_BIN` (set by `.ci/run`), else the one cargo built beside
/// dcform. Missing, the test fails: dcform cannot install a node without it.
pub fn core_binary() -> PathBuf {
    let core = std::env::var_os("DCCORE_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            Path::new(env!("CARGO_BIN_EXE_dcform"))
                .parent()
                .map(|d| d.join("dccore"))
        })
        .expect("the dcform binary has a folder");
    assert!(
        core.is_file(),
        "{} is missing: build the workspace first (cargo build --workspace --all-targets) or set DCCORE_BIN",
        core.display()
    );
    core
}
