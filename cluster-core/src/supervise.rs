//! `dccore supervise`: a minimal supervisor for hosts without systemd. Runs a command, appends its
//! output to a log file, restarts it with exponential backoff when it exits, writes its own pid
//! to a pid file, and on SIGTERM stops the child (SIGTERM, grace, SIGKILL) and exits.

use nix::sys::signal::Signal;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use dc_support::retry::{self, Attempt, Backoff, Next, RetryError};

/// Delays between restarts (unbounded: a supervisor never gives up).
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
/// A run at least this long was a success: the next exit starts the backoff afresh.
const STABLE: Duration = Duration::from_secs(60);
/// Grace between SIGTERM and SIGKILL when stopping the child.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Errors of the supervisor itself (the child failing is not an error: it is restarted).
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    /// The pid or log file could not be written.
    #[error("cannot write {path}")]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No command given.
    #[error("no command to supervise")]
    NoCommand,
}

/// A supervised command.
#[derive(Debug, Clone)]
pub struct Supervisor {
    cmd: Vec<String>,
    pid_file: PathBuf,
    log_file: PathBuf,
}

impl Supervisor {
    /// Supervises `cmd` (program and arguments).
    pub fn new(cmd: Vec<String>, pid_file: PathBuf, log_file: PathBuf) -> Self {
        Supervisor {
            cmd,
            pid_file,
            log_file,
        }
    }

    fn open_log(&self) -> Result<std::fs::File, SuperviseError> {
        if let Some(dir) = self.log_file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .map_err(|source| SuperviseError::File {
                path: self.log_file.clone(),
                source,
            })
    }

    /// Appends one line about the supervisor itself to the log file (best effort: the log is
    /// where an operator on a host without systemd looks).
    fn note(&self, line: &str) {
        use std::io::Write;
        if let Ok(mut f) = self.open_log() {
            let _ = writeln!(f, "dccore supervise: {line}");
        }
    }

    /// Runs until `shutdown`; then stops the child and removes the pid file.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), SuperviseError> {
        let (program, args) = self.cmd.split_first().ok_or(SuperviseError::NoCommand)?;
        if let Some(dir) = self.pid_file.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        crate::atomic_file::write(
            &self.pid_file,
            format!("{}\n", std::process::id()).as_bytes(),
        )
        .map_err(|source| SuperviseError::File {
            path: self.pid_file.clone(),
            source,
        })?;
        // One round of restarts per stable period: a child that ran for `STABLE` ends the round
        // (and is restarted at once, like the first start); quicker exits back off within it.
        loop {
            let round = retry::run_cancellable(BACKOFF, shutdown.cancelled(), |at| {
                self.run_once(program, args, at, &shutdown)
            });
            match round.await {
                Ok(Round::Stable) => continue,
                Ok(Round::Stopped) | Err(RetryError::Cancelled { .. }) => {
                    let _ = std::fs::remove_file(&self.pid_file);
                    return Ok(());
                }
                Err(e) => match e.into_error() {
                    Some(e) => return Err(e),
                    // Restarts are unbounded: the budget is never exhausted.
                    None => continue,
                },
            }
        }
    }

    /// Starts the child once and waits for it (or for `shutdown`, then stops it). A retry (its
    /// reason is `None`) restarts the child after the backoff; `Some` is an error of the supervisor.
    async fn run_once(
        &self,
        program: &str,
        args: &[String],
        at: Attempt,
        shutdown: &CancellationToken,
    ) -> Next<Round, Option<SuperviseError>> {
        let log = match self.open_log() {
            Ok(l) => l,
            Err(e) => return Next::Fail(Some(e)),
        };
        let log2 = match log.try_clone() {
            Ok(l) => l,
            Err(source) => {
                return Next::Fail(Some(SuperviseError::File {
                    path: self.log_file.clone(),
                    source,
                }));
            }
        };
        let started = tokio::time::Instant::now();
        let spawned = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                tracing::error!(error = %e, cmd = %program, "cannot start; retrying in {:?}", at.backoff);
                return at.retry(None);
            }
        };
        tracing::info!(pid = ?child.id(), cmd = %program, "started");
        self.note(&format!(
            "started {program} (pid {})",
            child.id().unwrap_or(0)
        ));
        tokio::select! {
            st = child.wait() => {
                let how = match st {
                    Ok(st) => st.to_string(),
                    Err(e) => e.to_string(),
                };
                if started.elapsed() >= STABLE {
                    tracing::warn!(status = %how, "supervised command exited after a stable run; restarting");
                    self.note(&format!("{program} exited ({how}); restarting"));
                    return Next::Done(Round::Stable);
                }
                tracing::warn!(status = %how, "supervised command exited; restarting in {:?}", at.backoff);
                self.note(&format!("{program} exited ({how}); restarting in {:?}", at.backoff));
                at.retry(None)
            }
            _ = shutdown.cancelled() => {
                if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
                }
                if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_err() {
                    let _ = child.kill().await;
                }
                self.note(&format!("stopped {program} on SIGTERM"));
                Next::Done(Round::Stopped)
            }
        }
    }
}

/// How a round of restarts ended.
enum Round {
    /// The child ran for [`STABLE`] before it exited: start a fresh round.
    Stable,
    /// Shutdown: the child is stopped.
    Stopped,
}
