//! Runs one task as a process in its sandbox: `stdout`/`stderr` files there, its own process
//! group, kill = SIGTERM to the group, grace period, SIGKILL.
//!
//! The task runs under a small `/bin/sh` wrapper (as root on a root agent it joins the task's
//! cgroup, then becomes the task's user through `setpriv`) that writes the task's exit code to
//! `SANDBOX/.exit_status`, so that an agent that restarted (and is no longer the parent) can
//! still tell how an adopted task ended.

use super::users::{self, TaskUsers};
use crate::proto::{TaskInfo, TaskState};
use dc_support::retry::{self, Backoff, Next, RetryError};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// File in the sandbox holding the task's exit code.
pub const EXIT_FILE: &str = ".exit_status";
/// How often an adopted (non-child) process is checked for exit: every 200 ms (jittered, so
/// the checks of many adopted tasks do not come in bursts).
const ADOPTED_POLL: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_millis(200));

/// Errors starting a task.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The task description cannot be run.
    #[error("task has no command to run")]
    NoCommand,
    /// The task's user cannot be used on this agent.
    #[error("cannot run the task as its user: {0}")]
    User(String),
    /// Sandbox setup or spawn failed.
    #[error("cannot start the task in {sandbox}")]
    Spawn {
        /// The sandbox.
        sandbox: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// How a task ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Exit {
    /// TASK_FINISHED, TASK_FAILED or TASK_KILLED.
    pub state: TaskState,
    /// Exit code or signal, for the status message.
    pub message: String,
}

/// A running task process: our child, or adopted from a previous agent run.
#[derive(Debug)]
pub enum Proc {
    /// Spawned by this agent.
    Child(Child),
    /// Found running after an agent restart: its pid and the start time recorded at launch, which
    /// tell it apart from a later process that was given the same pid.
    Adopted {
        /// Process (and process group) id.
        pid: u32,
        /// `/proc/PID/stat` starttime recorded at launch.
        start_time: u64,
    },
}

impl Proc {
    /// The process (and process group) id.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Proc::Child(c) => c.id(),
            Proc::Adopted { pid, .. } => Some(*pid),
        }
    }

    /// True while the process is the task's: a child not yet reaped cannot have its pid reused;
    /// an adopted one must still have the recorded start time.
    fn is_ours(&self) -> bool {
        match self {
            Proc::Child(_) => true,
            Proc::Adopted { pid, start_time } => same_process(*pid, *start_time),
        }
    }
}

/// Starts `task` in `sandbox` with `extra_env`, as the user the master chose for it
/// (`command.user`; see [`super::users`]). The sandbox and its output files belong to that user.
pub fn spawn(
    task: &TaskInfo,
    sandbox: &Path,
    extra_env: &[(String, String)],
    users: &TaskUsers,
) -> Result<Proc, ExecError> {
    let cmd = task.command.as_ref().ok_or(ExecError::NoCommand)?;
    let value = cmd.value.clone().ok_or(ExecError::NoCommand)?;
    let run_as = users
        .resolve(cmd.user.as_deref())
        .map_err(ExecError::User)?;
    let mut argv = if cmd.shell.unwrap_or(true) {
        vec!["/bin/sh".into(), "-c".into(), value]
    } else {
        // Mesos: `value` is the program, `arguments` the full argv (argv[0] included).
        let mut v = vec![value];
        v.extend(cmd.arguments.iter().skip(1).cloned());
        v
    };
    // Outer part (root on a root agent): join the cgroup, then become the task user (setpriv,
    // if that is how this agent switches) by exec, keeping the pid and process group. Inner part
    // (the task user): run the task and record its exit code. Nothing running as root writes
    // into the sandbox, which the task user owns: it could plant symlinks there.
    let mut wrapped = users::setpriv_prefix(&run_as);
    wrapped.extend([
        "/bin/sh".to_string(),
        "-c".into(),
        // `trap : TERM`: a kill signals the whole group, and this wrapper must outlive the
        // task to record how it ended; a shell runs a trap only once the command it waits for
        // has finished. (`trap '' TERM` would be inherited: the task could not be stopped.)
        r#"trap : TERM; rc=0; "$@" || rc=$?; echo "$rc" > "$DCCORE_EXIT_FILE.tmp" && mv "$DCCORE_EXIT_FILE.tmp" "$DCCORE_EXIT_FILE"; exit "$rc""#.into(),
        "dccore-task".into(),
    ]);
    wrapped.append(&mut argv);
    let spawn_err = |source| ExecError::Spawn {
        sandbox: sandbox.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(sandbox).map_err(spawn_err)?;
    let _ = std::fs::remove_file(sandbox.join(EXIT_FILE));
    // The sandbox may be left from an earlier task with this id, run by another user: open its
    // files without following links, and hand them over through the open file, never by path.
    let open = |name: &str| {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(sandbox.join(name))?;
        users::give_file(&f, &run_as)?;
        Ok::<_, std::io::Error>(f)
    };
    let stdout = open("stdout").map_err(spawn_err)?;
    let stderr = open("stderr").map_err(spawn_err)?;
    // The folder itself is safe to change by path: its parent belongs to the agent.
    users::give_dir(sandbox, &run_as).map_err(spawn_err)?;
    let mut c = Command::new("/bin/sh");
    c.arg("-c")
        .arg(r#"[ -z "$DCCORE_CGROUP" ] || echo $$ > "$DCCORE_CGROUP/cgroup.procs" 2>/dev/null || true; exec "$@""#)
        .arg("dccore-task")
        .args(&wrapped)
        .current_dir(sandbox)
        .env("MESOS_SANDBOX", sandbox)
        .env("USER", run_as.name())
        .env("LOGNAME", run_as.name())
        .env("DCCORE_EXIT_FILE", sandbox.join(EXIT_FILE))
        .envs(extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        .process_group(0)
        // The task must survive an agent restart: never kill it when the handle is dropped.
        .kill_on_drop(false);
    if let Some((uid, gid)) = users::std_switch(&run_as) {
        // No setpriv: the whole wrapper runs as the user (see `users`).
        c.uid(uid.as_raw()).gid(gid.as_raw());
    }
    if let Some(env) = &cmd.environment {
        c.envs(
            env.variables
                .iter()
                .map(|v| (v.name.as_str(), v.value.as_str())),
        );
    }
    c.spawn().map(Proc::Child).map_err(spawn_err)
}

/// The fields of `/proc/PID/stat` after the parenthesised command name (which may itself
/// contain spaces and parentheses): `[0]` is field 3 (state), `[19]` field 22 (starttime).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// True if `pid` is a live (non-zombie) process.
pub fn alive(pid: u32) -> bool {
    stat_fields(pid)
        .and_then(|f| f.first().cloned())
        .is_some_and(|st| st != "Z" && st != "X")
}

/// When `pid` started, in clock ticks since boot (`/proc/PID/stat` field 22). A pid is reused
/// once its process is gone; its start time is not, so (pid, start time) names one process.
pub fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// True if `pid` is alive with `dir` as its working directory.
pub fn runs_in(pid: u32, dir: &Path) -> bool {
    let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else {
        return false;
    };
    alive(pid) && std::fs::canonicalize(dir).is_ok_and(|d| d == cwd)
}

/// True if `pid` is alive and still the process that had `start_time`.
pub fn same_process(pid: u32, start_time: u64) -> bool {
    alive(pid) && self::start_time(pid) == Some(start_time)
}

/// How a task whose process is gone ended, from the exit file its wrapper wrote.
pub fn exit_of_gone(sandbox: &Path) -> Exit {
    exit_from_file(sandbox)
}

fn exit_from_file(sandbox: &Path) -> Exit {
    match std::fs::read_to_string(sandbox.join(EXIT_FILE))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    {
        Some(0) => Exit {
            state: TaskState::Finished,
            message: "exited with status 0".into(),
        },
        Some(code) => Exit {
            state: TaskState::Failed,
            message: format!("exited with status {code}"),
        },
        None => Exit {
            state: TaskState::Failed,
            message: "the task's process ended while the agent was down; exit status unknown"
                .into(),
        },
    }
}

/// Waits for the process to end.
pub async fn wait(proc: &mut Proc, sandbox: &Path) -> Exit {
    match proc {
        Proc::Child(child) => match child.wait().await {
            Ok(st) => match (
                st.code(),
                std::os::unix::process::ExitStatusExt::signal(&st),
            ) {
                (Some(0), _) => Exit {
                    state: TaskState::Finished,
                    message: "exited with status 0".into(),
                },
                (Some(code), _) => Exit {
                    state: TaskState::Failed,
                    message: format!("exited with status {code}"),
                },
                (None, Some(sig)) => Exit {
                    state: TaskState::Failed,
                    message: format!("terminated by signal {sig}"),
                },
                (None, None) => exit_from_file(sandbox),
            },
            Err(e) => Exit {
                state: TaskState::Failed,
                message: format!("cannot wait for the task: {e}"),
            },
        },
        Proc::Adopted { pid, start_time } => {
            // Not our child, so there is no exit to wait for: poll until the process is gone
            // (no budget: a task may run for months).
            let (pid, start_time) = (*pid, *start_time);
            let gone: Result<(), RetryError<()>> = retry::run(ADOPTED_POLL, |at| async move {
                if same_process(pid, start_time) {
                    at.retry(())
                } else {
                    Next::Done(())
                }
            })
            .await;
            debug_assert!(gone.is_ok(), "an unbounded poll only ends done");
            exit_from_file(sandbox)
        }
    }
}

/// Sends `signal` to the task's process group (ignoring a group that is already gone).
pub fn signal(pid: u32, signal: Signal) {
    if let Ok(p) = i32::try_from(pid) {
        let _ = killpg(Pid::from_raw(p), signal);
    }
}

/// Kills the task: SIGTERM to its group, then SIGKILL after `grace` if it is still there. An
/// adopted process is checked before every signal: once its pid belongs to another process, that
/// process group is never signalled.
pub async fn kill(proc: &mut Proc, sandbox: &Path, grace: Duration) -> Exit {
    let Some(pid) = proc.pid() else {
        return wait(proc, sandbox).await;
    };
    if proc.is_ours() {
        signal(pid, Signal::SIGTERM);
    }
    let exit = match tokio::time::timeout(grace, wait(proc, sandbox)).await {
        Ok(e) => e,
        Err(_) => {
            if proc.is_ours() {
                signal(pid, Signal::SIGKILL);
            }
            wait(proc, sandbox).await
        }
    };
    // Children of the task that ignored SIGTERM go too. The kernel does not reuse a pid while a
    // process group of that id has members, so with no live process of that pid (or still the
    // task's own) the group is the task's. A live process with another start time has taken the
    // pid: its group is left alone.
    if !alive(pid) || proc.is_ours() {
        signal(pid, Signal::SIGKILL);
    }
    Exit {
        state: TaskState::Killed,
        message: format!("killed ({})", exit.message),
    }
}
