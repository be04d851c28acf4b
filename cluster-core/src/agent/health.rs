//! Health checks, run by the agent next to the task as Mesos does, within the check's timeout:
//! `COMMAND` (`/bin/sh -c VALUE` in the task's sandbox, as the task's user, with the task's
//! environment; exit 0 passes), `HTTP` (`GET path` at `127.0.0.1:port` answers 200-399, or one
//! of `statuses`) and `TCP` (a connection to `127.0.0.1:port` opens). The first result and every
//! change of health reach the framework as a `TASK_RUNNING` update with `healthy` set (reason
//! `REASON_TASK_HEALTH_CHECK_STATUS_UPDATED`); after `consecutive_failures` failures in a row
//! (failures within the grace period before the first success do not count) the task is killed
//! and ends `TASK_KILLED`, `healthy: false`. A check that cannot be run (an unknown type, a type
//! without its fields) fails every time: the agent never reports health it has not seen.
//!
//! HTTP checks are spoken by hand over a plain TCP stream, not through the agent's HTTP client:
//! that client carries the agent's TLS identity, which a task's server must never be shown.
//! `https` checks are not run (they fail, with a warning): Mesos runs them with certificate
//! checks off, which would prove nothing a TCP check does not.

use super::executor;
use super::tasks::{Agent, TaskKey};
use super::users;
use crate::proto::{CheckProbe, HealthCheckInfo, TaskInfo};
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

/// The health check of `task`, if it has one, and what running it means (or why it cannot run).
pub(super) fn check_of(task: &TaskInfo) -> Option<(&HealthCheckInfo, Result<CheckProbe, String>)> {
    let c = task.health_check.as_deref()?;
    Some((c, c.probe()))
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

/// Runs the task's check until `done` (the task ended) or a kill for failed checks.
pub(super) async fn run(agent: Arc<Agent>, key: TaskKey, task: TaskInfo, done: CancellationToken) {
    let Some((check, probe)) = check_of(&task) else {
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
            let once = match &probe {
                Ok(CheckProbe::Command(value)) => {
                    run_once(&agent, &key, &task, value, &sandbox, settings.timeout).await
                }
                Ok(CheckProbe::Tcp { port }) => Ok(tcp_once(*port, settings.timeout).await),
                Ok(CheckProbe::Http { https: true, .. }) => {
                    Err("https health checks are not run by this agent".to_string())
                }
                Ok(CheckProbe::Http {
                    port,
                    path,
                    statuses,
                    ..
                }) => Ok(http_once(*port, path, statuses, settings.timeout).await),
                Err(e) => Err(e.clone()),
            };
            let ok = match once {
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

/// `fut` within `timeout` (none: as long as it takes).
async fn within<T>(
    timeout: Option<Duration>,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    match timeout {
        Some(t) => tokio::time::timeout(t, fut).await.ok(),
        None => Some(fut.await),
    }
}

/// One TCP check: a connection to the task's port on the loopback opens.
async fn tcp_once(port: u16, timeout: Option<Duration>) -> bool {
    matches!(
        within(timeout, tokio::net::TcpStream::connect(("127.0.0.1", port))).await,
        Some(Ok(_))
    )
}

/// One HTTP check: `GET path` at the task's port on the loopback, healthy by [`healthy_status`].
async fn http_once(port: u16, path: &str, statuses: &[u32], timeout: Option<Duration>) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ask = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: dccore-health-check\r\n\
             Accept: */*\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await?;
        // The status line is all that counts; a server may send more or close early.
        let mut head = Vec::with_capacity(64);
        let mut buf = [0u8; 256];
        while !head.contains(&b'\n') && head.len() < 4096 {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(head)
    };
    match within(timeout, ask).await {
        Some(Ok(head)) => status_code(&head).is_some_and(|c| healthy_status(c, statuses)),
        _ => false,
    }
}

/// The status code of an HTTP/1.x status line (`HTTP/1.1 200 OK`).
fn status_code(head: &[u8]) -> Option<u32> {
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_ascii_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts
        .next()?
        .parse()
        .ok()
        .filter(|c| (100..600).contains(c))
}

/// Mesos' rule: one of `statuses` if the check lists them, else 200-399.
fn healthy_status(code: u32, statuses: &[u32]) -> bool {
    if statuses.is_empty() {
        (200..400).contains(&code)
    } else {
        statuses.contains(&code)
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
    fn a_status_line_is_healthy_by_mesos_rule_or_by_the_listed_statuses() {
        assert_eq!(status_code(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status_code(b"HTTP/1.0 302 Found\r\nLocation: /"), Some(302));
        assert_eq!(status_code(b"SSH-2.0-OpenSSH_9.2\r\n"), None);
        assert_eq!(status_code(b"HTTP/1.1 abc\r\n"), None);
        assert_eq!(status_code(b"HTTP/1.1 999 Odd\r\n"), None);
        assert_eq!(status_code(b""), None);
        assert!(healthy_status(200, &[]) && healthy_status(399, &[]));
        assert!(!healthy_status(400, &[]) && !healthy_status(199, &[]));
        assert!(healthy_status(503, &[503]) && !healthy_status(200, &[503]));
    }

    #[tokio::test]
    async fn tcp_and_http_checks_ask_the_loopback_port() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let mut asked = Vec::new();
            for code in [200, 500] {
                let (mut s, _) = l.accept().await.expect("accept");
                let mut buf = [0u8; 512];
                let n = s.read(&mut buf).await.expect("read");
                asked.push(String::from_utf8_lossy(&buf[..n]).to_string());
                let a = format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n");
                s.write_all(a.as_bytes()).await.expect("write");
            }
            asked
        });
        let t = Some(Duration::from_secs(5));
        assert!(http_once(port, "/ready", &[], t).await);
        assert!(!http_once(port, "/ready", &[], t).await);
        let asked = server.await.expect("server");
        assert!(asked[0].starts_with("GET /ready HTTP/1.1\r\n"), "{asked:?}");
        // Nothing listens any more: both kinds fail, neither hangs.
        assert!(!tcp_once(port, t).await);
        assert!(!http_once(port, "/", &[], t).await);
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
