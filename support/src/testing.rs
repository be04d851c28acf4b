//! Test helpers that every test crate of the workspace shares (feature `testing`, enabled from
//! `[dev-dependencies]` only): a test cannot hang on a command or a future, and cannot pass by
//! quietly skipping what it was meant to test.
//!
//! **Skipping is opt-in.** A test that needs a component (Docker, sshd, moto, a python with
//! pymesos) and does not find it fails, because `bash .ci/run` installs every one of them. Only a
//! local run that says so with `DCFORM_TEST_ALLOW_SKIP=1` turns those failures into skips
//! ([`missing`]).

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The variable that allows tests to skip when a component is missing.
pub const ALLOW_SKIP: &str = "DCFORM_TEST_ALLOW_SKIP";

/// True when this run allows skips (`DCFORM_TEST_ALLOW_SKIP=1`).
pub fn skips_allowed() -> bool {
    std::env::var(ALLOW_SKIP).is_ok_and(|v| v == "1" || v == "true")
}

/// A component the test needs is missing: panics (the test fails) unless skips are allowed, in
/// which case it says so on stderr and returns, and the caller returns from the test.
pub fn missing(what: &str) {
    if skips_allowed() {
        eprintln!("SKIP: {what} ({ALLOW_SKIP} is set: a local-only run)");
    } else {
        panic!(
            "{what}: `bash .ci/run` installs it; set {ALLOW_SKIP}=1 to skip such tests in a local-only run"
        );
    }
}

/// Runs `cmd` to completion with its output captured, within `limit`. A command still running at
/// the limit is killed and the test fails with the command line and what it printed so far;
/// one that cannot start fails the test too.
pub fn output_within(limit: Duration, cmd: &mut Command) -> Output {
    try_output_within(limit, cmd).unwrap_or_else(|e| panic!("{e}"))
}

/// As [`output_within`], but failures are an `Err` for the caller to judge: one that cannot be
/// started (`ErrorKind::NotFound`: not installed, usually a case for [`missing`]), or one killed
/// at the limit (`ErrorKind::TimedOut`, the message says what it printed). For clean-up code in
/// `Drop`, which must not panic.
///
/// The command runs in its own process group with no stdin, so that on a timeout everything it
/// started is killed with it. The limit covers the output too: a leftover background process that
/// keeps the output pipes open is a timeout, not a hang.
pub fn try_output_within(limit: Duration, cmd: &mut Command) -> std::io::Result<Output> {
    use std::io::{Error, ErrorKind};
    use std::os::unix::process::CommandExt;
    let deadline = Instant::now() + limit;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| Error::new(e.kind(), format!("cannot run {}: {e}", describe(cmd))))?;
    let out = Pipe::read(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = Pipe::read(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let pid = child.id();
    let timed_out = |what: &str| {
        // The group id is the child's pid (process_group(0)); kill(1) reaches the whole group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status();
        Error::new(
            ErrorKind::TimedOut,
            format!(
                "{} {what} within {limit:?} (killed)\nstdout: {}\nstderr: {}",
                describe(cmd),
                out.text(),
                err.text()
            ),
        )
    };
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if Instant::now() >= deadline {
            let e = timed_out("did not finish");
            let _ = child.wait();
            return Err(e);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    while !(out.finished() && err.finished()) {
        if Instant::now() >= deadline {
            return Err(timed_out(
                "exited but something it started still holds its output open",
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(Output {
        status,
        stdout: out.bytes(),
        stderr: err.bytes(),
    })
}

/// One output pipe, read on its own thread (a child filling a pipe would otherwise never exit)
/// into a buffer that can be looked at before the end (what a killed command printed).
struct Pipe {
    buf: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Pipe {
    fn read(source: Option<Box<dyn Read + Send>>) -> Pipe {
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let reader = source.map(|mut r| {
            let buf = buf.clone();
            std::thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                while let Ok(n) = r.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    buf.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .extend_from_slice(&chunk[..n]);
                }
            })
        });
        Pipe { buf, reader }
    }

    fn finished(&self) -> bool {
        self.reader.as_ref().is_none_or(|r| r.is_finished())
    }

    fn bytes(&self) -> Vec<u8> {
        self.buf.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes()).into_owned()
    }
}

/// `program arg arg`, for messages.
fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Awaits `fut` for at most `limit`; past it the test fails, naming `what` it was waiting for.
pub async fn within<F: std::future::Future>(limit: Duration, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// The machine a benchmark ran on, for its report (`docs/benchmarks.md` names it beside every
/// figure): cores, CPU model, kernel and the load average at the time of the call, e.g.
/// `2 cores, AMD EPYC 7B13, Linux 6.1.0, load average 0.52 0.31 0.20`.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores, {cpu}, Linux {}, load average {}",
        kernel.trim(),
        load_average()
    )
}

/// `/proc/loadavg`'s 1, 5 and 15 minute figures (`?` when unreadable): a benchmark prints it
/// before and after its runs, since on a shared machine it says what a figure is worth.
pub fn load_average() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let three: Vec<&str> = l.split_whitespace().take(3).collect();
    if three.len() == 3 {
        three.join(" ")
    } else {
        "?".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_that_finishes_gives_its_output() {
        let o = output_within(
            Duration::from_secs(10),
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
        );
        assert_eq!(o.status.code(), Some(3));
        assert_eq!(o.stdout, b"out\n");
        assert_eq!(o.stderr, b"err\n");
    }

    #[test]
    fn a_command_that_hangs_fails_the_test_with_its_command_line() {
        let started = Instant::now();
        let panic = std::panic::catch_unwind(|| {
            output_within(
                Duration::from_millis(200),
                Command::new("sh").args(["-c", "echo started; sleep 30"]),
            )
        })
        .expect_err("a hanging command must fail the test");
        let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(
            msg.contains("sh -c echo started; sleep 30 did not finish within 200ms"),
            "{msg}"
        );
        assert!(msg.contains("stdout: started"), "{msg}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "killed, not waited for"
        );
    }

    #[test]
    fn a_background_process_holding_the_output_open_fails_the_test_too() {
        let panic = std::panic::catch_unwind(|| {
            output_within(
                Duration::from_millis(300),
                Command::new("sh").args(["-c", "sleep 30 & echo bye"]),
            )
        })
        .expect_err("must not wait 30 s for the pipe");
        let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("still holds its output open"), "{msg}");
        assert!(msg.contains("stdout: bye"), "{msg}");
    }

    #[test]
    fn a_command_that_is_not_installed_or_hangs_is_an_error_to_judge() {
        let r = try_output_within(
            Duration::from_secs(10),
            &mut Command::new("/nonexistent/dcform-test-tool"),
        );
        assert_eq!(
            r.map_err(|e| e.kind()).err(),
            Some(std::io::ErrorKind::NotFound)
        );
        let r = try_output_within(Duration::from_millis(100), Command::new("sleep").arg("30"));
        assert_eq!(
            r.map_err(|e| e.kind()).err(),
            Some(std::io::ErrorKind::TimedOut)
        );
    }
}
