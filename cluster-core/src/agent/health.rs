//! COMMAND health checks, run by the agent next to the task as Mesos does: `/bin/sh -c VALUE`
//! in the task's sandbox, as the task's user, with the task's environment, within the check's
//! timeout. The first result and every change of health reach the framework as a `TASK_RUNNING`
//! update with `healthy` set (reason `REASON_TASK_HEALTH_CHECK_STATUS_UPDATED`); after
//! `consecutive_failures` failures in a row (failures within the grace period before the first
//! success do not count) the task is killed and ends `TASK_KILLED`, `healthy: false`.
//!
//! HTTP and TCP checks in a `TaskInfo` are not run by the agent (the built-in services framework
//! runs its own; see `services::health`).

use super::executor;
use super::tasks::{Agent, TaskKey};
use super::users;
use crate::proto::{HealthCheckInfo, TaskInfo};
use nix::sys::signal::Signal;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::process::Command;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The reason code of health updates and of a kill for failed checks.
pub const REASON: &str = "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED";

/// A check's settings with Mesos' defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Settings {
    pub delay: Duration,
    pub interval: Duration,
    /// `None`: no timeout (Mesos: `timeout_seconds: 0`).
    pub timeout: Option<Duration>,
    pub consecutive_failures: u32,
    pub grace: Duration,
}

fn secs(v: Option<f64>, default: f64) -> Duration {
    let s = v.unwrap_or(default);
    // A negative, NaN or absurd value from a framework falls back to the default.
    Duration::try_from_secs_f64(s).unwrap_or(Duration::from_secs_f64(default))
}

impl Settings {
    pub fn of(c: &HealthCheckInfo) -> Self {
        let timeout = secs(c.timeout_seconds, 20.0);
        Settings {
            delay: secs(c.delay_seconds, 15.0),
            // At least 10 ms between checks, so a zero interval cannot spin.
            interval: secs(c.interval_seconds, 10.0).max(Duration::from_millis(10)),
            timeout: (!timeout.is_zero()).then_some(timeout),
            consecutive_failures: c.consecutive_failures.unwrap_or(3),
            grace: secs(c.grace_period_seconds, 10.0),
        }
    }
}

/// The COMMAND check of `task`, if it has one the agent runs.
pub(super) fn command_check(task: &TaskInfo) -> Option<(&HealthCheckInfo, String)> {
    let c = task.health_check.as_ref().filter(|c| c.is_command())?;
    let value = c.command.as_ref()?.value.clone()?;
    Some((c, value))
}

/// Health bookkeeping of one task: what a result changes.
#[derive(Debug)]
pub(super) struct State {
    settings: Settings,
    started: Instant,
    healthy: Option<bool>,
    failures: u32,
}

/// What to do after a result.
#[derive(Debug, PartialEq)]
pub(super) enum Verdict {
    /// Nothing to report.
    Quiet,
    /// The health changed (or is known for the first time): report it.
    Report(bool),
    /// Too many failures in a row: kill the task (its end reports it unhealthy).
    Kill { failures: u32 },
}

impl State {
    pub fn new(settings: Settings, started: Instant) -> Self {
        State {
            settings,
            started,
            healthy: None,
            failures: 0,
        }
    }

    pub fn result(&mut self, ok: bool, now: Instant) -> Verdict {
        if ok {
            self.failures = 0;
            let changed = self.healthy != Some(true);
            self.healthy = Some(true);
            return if changed {
                Verdict::Report(true)
            } else {
                Verdict::Quiet
            };
        }
        // Mesos: failures within the grace period are ignored until the first success.
        if self.healthy.is_none() && now < self.started + self.settings.grace {
            return Verdict::Quiet;
        }
        self.failures += 1;
        let changed = self.healthy != Some(false);
        self.healthy = Some(false);
        if self.settings.consecutive_failures > 0
            && self.failures >= self.settings.consecutive_failures
        {
            return Verdict::Kill {
                failures: self.failures,
            };
        }
        if changed {
            Verdict::Report(false)
        } else {
            Verdict::Quiet
        }
    }
}

/// Runs the task's COMMAND check until `done` (the task ended) or a kill for failed checks.
pub(super) async fn run(agent: Arc<Agent>, key: TaskKey, task: TaskInfo, done: CancellationToken) {
    let Some((check, value)) = command_check(&task) else {
        return;
    };
    let settings = Settings::of(check);
    let sandbox = agent.sandbox_of(&key);
    let mut state = State::new(settings.clone(), Instant::now());
    let stop = async {
        tokio::select! {
            _ = done.cancelled() => {}
            _ = agent.shutdown.cancelled() => {}
        }
    };
    let work = async {
        tokio::time::sleep(settings.delay).await;
        loop {
            let ok = match run_once(&agent, &key, &task, &value, &sandbox, settings.timeout).await {
                Ok(ok) => ok,
                Err(e) => {
                    tracing::warn!(task = %key.1, error = %e, "cannot run the health check");
                    false
                }
            };
            match state.result(ok, Instant::now()) {
                Verdict::Quiet => {}
                Verdict::Report(h) => {
                    tracing::info!(task = %key.1, healthy = h, "task health changed");
                    agent.emit_health(&key, h);
                }
                Verdict::Kill { failures } => {
                    tracing::info!(task = %key.1, failures, "task unhealthy: killing it");
                    // The TASK_KILLED update that follows carries `healthy: false`.
                    agent.kill_unhealthy(&key, failures);
                    return;
                }
            }
            tokio::time::sleep(settings.interval).await;
        }
    };
    tokio::select! {
        _ = stop => {}
        _ = work => {}
    }
}

/// One check: true if the command exited 0 within the timeout.
async fn run_once(
    agent: &Agent,
    key: &TaskKey,
    task: &TaskInfo,
    value: &str,
    sandbox: &Path,
    timeout: Option<Duration>,
) -> Result<bool, String> {
    let user = task.command.as_ref().and_then(|c| c.user.as_deref());
    let run_as = agent.users.resolve(user)?;
    let mut argv = users::setpriv_prefix(&run_as);
    argv.extend(["/bin/sh".to_string(), "-c".into(), value.to_string()]);
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..])
        .current_dir(sandbox)
        .env("MESOS_SANDBOX", sandbox)
        .env("MESOS_TASK_ID", &key.1)
        .env("MESOS_FRAMEWORK_ID", &key.0)
        .env("USER", run_as.name())
        .env("LOGNAME", run_as.name())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own group: a timeout kills the check's children too.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(id) = agent.id() {
        c.env("MESOS_AGENT_ID", id);
    }
    if let Some((uid, gid)) = users::std_switch(&run_as) {
        c.uid(uid.as_raw()).gid(gid.as_raw());
    }
    // The task's environment, then the check's own (which wins, as in Mesos).
    let envs = [
        task.command.as_ref(),
        task.health_check.as_ref().and_then(|h| h.command.as_ref()),
    ];
    for env in envs
        .into_iter()
        .flatten()
        .filter_map(|c| c.environment.as_ref())
    {
        c.envs(env.variables.iter().map(|v| (&v.name, &v.value)));
    }
    let mut child = c
        .spawn()
        .map_err(|e| format!("cannot start /bin/sh in {}: {e}", sandbox.display()))?;
    let pid = child.id();
    let waited = match timeout {
        Some(t) => tokio::time::timeout(t, child.wait()).await.ok(),
        None => Some(child.wait().await),
    };
    match waited {
        Some(Ok(status)) => Ok(status.success()),
        Some(Err(e)) => Err(format!("cannot wait for the health check: {e}")),
        None => {
            if let Some(pid) = pid {
                executor::signal(pid, Signal::SIGKILL);
            }
            let _ = child.wait().await;
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(grace: u64, failures: u32) -> Settings {
        Settings {
            delay: Duration::ZERO,
            interval: Duration::from_millis(10),
            timeout: Some(Duration::from_secs(1)),
            consecutive_failures: failures,
            grace: Duration::from_secs(grace),
        }
    }

    #[test]
    fn failures_in_the_grace_period_are_ignored_until_the_first_success() {
        let t0 = Instant::now();
        let mut s = State::new(settings(10, 2), t0);
        assert_eq!(s.result(false, t0 + Duration::from_secs(1)), Verdict::Quiet);
        assert_eq!(
            s.result(true, t0 + Duration::from_secs(2)),
            Verdict::Report(true)
        );
        assert_eq!(s.result(true, t0 + Duration::from_secs(3)), Verdict::Quiet);
        // Past the first success the grace period no longer hides failures.
        assert_eq!(
            s.result(false, t0 + Duration::from_secs(4)),
            Verdict::Report(false)
        );
        assert_eq!(
            s.result(false, t0 + Duration::from_secs(5)),
            Verdict::Kill { failures: 2 }
        );
    }

    #[test]
    fn a_success_resets_the_count_and_zero_failures_never_kills() {
        let t0 = Instant::now();
        let mut s = State::new(settings(0, 2), t0);
        assert_eq!(s.result(false, t0), Verdict::Report(false));
        assert_eq!(s.result(true, t0), Verdict::Report(true));
        assert_eq!(s.result(false, t0), Verdict::Report(false));
        assert_eq!(s.result(false, t0), Verdict::Kill { failures: 2 });
        let mut never = State::new(settings(0, 0), t0);
        for _ in 0..10 {
            assert_ne!(never.result(false, t0), Verdict::Kill { failures: 0 });
        }
    }

    #[test]
    fn mesos_defaults_fill_what_the_check_leaves_out() {
        let c: HealthCheckInfo =
            serde_json::from_value(serde_json::json!({"type": "COMMAND", "command": {"value": "true"}, "timeout_seconds": 0}))
                .expect("parse");
        let s = Settings::of(&c);
        assert_eq!(s.delay, Duration::from_secs(15));
        assert_eq!(s.interval, Duration::from_secs(10));
        assert_eq!(s.timeout, None);
        assert_eq!(s.consecutive_failures, 3);
        assert_eq!(s.grace, Duration::from_secs(10));
    }
}
