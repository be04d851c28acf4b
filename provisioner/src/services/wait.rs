//! Waiting for deployments: polls `GET /v2/deployments` and the apps until the deployments are
//! gone and every app runs as wanted (or, removed, is gone), through the workspace's one retry
//! loop. A wait that runs out says where each app stands and, from `GET /v2/queue`, why its
//! instances do not start (the offers' refusal reasons, the launch back-off).

use std::time::Duration;

use dc_support::retry::{self, Backoff, Next, RetryError};
use dccore_api::marathon::AppId;
use dccore_api::marathon::answers::{AppStatus, QueueEntry};
use serde_json::Value;
use tokio::time::Instant;

use super::client::{MarathonClient, ServiceApiError};

/// Polls: first after `POLL.0`, doubling up to `POLL.1`.
const POLL: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(2));

/// One change waited for: its app, the deployment carrying it out, and whether the app goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Awaited {
    /// The app.
    pub app: AppId,
    /// The deployment (from the change's [`DeploymentRef`](dccore_api::marathon::answers::DeploymentRef)).
    pub deployment_id: String,
    /// The change removes the app: done once it is gone.
    pub removed: bool,
}

/// Where a wait stands after one poll.
#[derive(Clone, Debug, PartialEq)]
pub struct WaitProgress {
    /// Of the awaited deployments, those still running.
    pub deployments_left: Vec<String>,
    /// Each awaited app as last seen (`None`: it does not exist).
    pub apps: Vec<(AppId, Option<AppStatus>)>,
}

impl WaitProgress {
    /// Whether everything waited for is done.
    fn done(&self, awaited: &[Awaited]) -> bool {
        self.deployments_left.is_empty()
            && awaited.iter().zip(&self.apps).all(|(w, (_, a))| match a {
                None => w.removed,
                Some(a) => !w.removed && a.is_converged(),
            })
    }

    /// One line per app: `/web: 1/2 running, 1 staging, deploying`.
    pub fn summary(&self) -> String {
        let lines: Vec<String> = self
            .apps
            .iter()
            .map(|(id, a)| match a {
                None => format!("{id}: gone"),
                Some(a) => app_line(a),
            })
            .collect();
        lines.join("; ")
    }
}

/// An app's counters in words: `/web: 1/2 running, 1 staging, deploying`.
pub fn app_line(a: &AppStatus) -> String {
    format!("{}: {}", a.id, counts_line(a))
}

/// An app's counters in words, without its id: `1/2 running, 1 healthy, deploying`.
pub fn counts_line(a: &AppStatus) -> String {
    let mut s = format!("{}/{} running", a.tasks_running, a.instances);
    if a.has_health_checks() {
        s.push_str(&format!(", {} healthy", a.tasks_healthy));
    }
    if a.tasks_staged > 0 {
        s.push_str(&format!(", {} staging", a.tasks_staged));
    }
    if !a.deployments.is_empty() {
        s.push_str(", deploying");
    }
    s
}

/// The last failed instance in words, if the app has one (`TASK_FAILED on host: message`).
fn last_failure(a: &AppStatus) -> Option<String> {
    let f = a.last_task_failure.as_ref()?;
    let field = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    Some(format!(
        "last failure: {} on {}: {}",
        field("state"),
        field("host"),
        field("message")
    ))
}

/// Whether a failed poll may succeed later (a master restarting, a leader being elected).
fn transient(e: &ServiceApiError) -> bool {
    match e {
        ServiceApiError::Unreachable { .. } | ServiceApiError::Redirect { .. } => true,
        ServiceApiError::Status { status, .. } => *status >= 500,
        _ => false,
    }
}

impl MarathonClient {
    /// One poll: the awaited deployments still running and the apps as they are.
    async fn poll(&self, awaited: &[Awaited]) -> Result<WaitProgress, ServiceApiError> {
        let running = self.deployments().await?;
        let deployments_left = awaited
            .iter()
            .filter(|w| running.iter().any(|d| d.id == w.deployment_id))
            .map(|w| w.deployment_id.clone())
            .collect();
        let mut apps = Vec::new();
        for w in awaited {
            apps.push((w.app.clone(), self.app(&w.app).await?));
        }
        Ok(WaitProgress {
            deployments_left,
            apps,
        })
    }

    /// Waits until the deployments of `awaited` are gone from `GET /v2/deployments` and each
    /// app runs every wanted instance (healthy, with health checks), or is gone when removed.
    /// `progress` is told after every poll. At `deadline`: [`ServiceApiError::Timeout`] with
    /// each app's counters, its last failure, and the queue's reasons it does not start.
    pub async fn wait_deployment(
        &self,
        awaited: &[Awaited],
        deadline: Instant,
        progress: impl FnMut(&WaitProgress),
    ) -> Result<(), ServiceApiError> {
        let started = Instant::now();
        let budget = deadline.saturating_duration_since(started);
        let policy = Backoff::new(POLL.0, POLL.1).deadline(budget);
        // The last progress seen, for the timeout's message (a poll that failed leaves it).
        // Behind locks so each attempt's future may borrow them (never held across an await).
        let last: std::sync::Mutex<Option<WaitProgress>> = std::sync::Mutex::new(None);
        let progress = std::sync::Mutex::new(progress);
        let (last_ref, progress_ref) = (&last, &progress);
        let outcome = retry::run(policy, |at| {
            let polled = self.poll(awaited);
            async move {
                match polled.await {
                    Ok(p) => {
                        if let Ok(mut f) = progress_ref.lock() {
                            (*f)(&p);
                        }
                        let done = p.done(awaited);
                        if let Ok(mut l) = last_ref.lock() {
                            *l = Some(p);
                        }
                        if done { Next::Done(()) } else { at.retry(None) }
                    }
                    Err(e) if transient(&e) => at.retry(Some(e)),
                    Err(e) => Next::Fail(Some(e)),
                }
            }
        })
        .await;
        match outcome {
            Ok(()) => Ok(()),
            Err(RetryError::Failed { error: Some(e), .. }) => Err(e),
            Err(e) => {
                let queue = self.queue().await.unwrap_or_default();
                let last = last.into_inner().ok().flatten();
                let mut status = match &last {
                    Some(p) => timeout_status(awaited, p, &queue),
                    None => "no poll succeeded".to_string(),
                };
                if let Some(cause) = e.into_error() {
                    status.push_str(&format!(
                        "; the last poll failed: {}",
                        dc_support::error::chain(&cause)
                    ));
                }
                Err(ServiceApiError::Timeout {
                    // Rounded: the deadline was set a moment before the wait began.
                    secs: budget.as_secs_f64().round() as u64,
                    status,
                })
            }
        }
    }
}

/// What a timed-out wait reports: per app its counters, its last failure, the queue's reasons.
fn timeout_status(awaited: &[Awaited], p: &WaitProgress, queue: &[QueueEntry]) -> String {
    let mut parts = Vec::new();
    for (w, (id, a)) in awaited.iter().zip(&p.apps) {
        let mut line = match a {
            None if w.removed => continue,
            None => format!("{id}: gone (removed meanwhile?)"),
            Some(a) if w.removed => format!("{}: still there", app_line(a)),
            Some(a) => app_line(a),
        };
        if let Some(f) = a.as_ref().and_then(last_failure) {
            line.push_str(&format!(", {f}"));
        }
        if let Some(q) = queue.iter().find(|q| q.app.id == id.as_str()) {
            line.push_str(&format!(
                "; {} instance(s) not started: {}",
                q.count,
                q.reasons()
            ));
        }
        parts.push(line);
    }
    if !p.deployments_left.is_empty() {
        parts.push(format!(
            "deployment(s) still running: {}",
            p.deployments_left.join(", ")
        ));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app(v: Value) -> AppStatus {
        let mut base = json!({"id": "/web", "instances": 2, "version": "v",
            "versionInfo": {"lastScalingAt": "v", "lastConfigChangeAt": "v"},
            "tasksRunning": 1, "tasksStaged": 0, "tasksHealthy": 0, "tasksUnhealthy": 0,
            "deployments": [{"id": "d1"}]});
        for (k, x) in v.as_object().expect("object") {
            base[k] = x.clone();
        }
        serde_json::from_value(base).expect("an app")
    }

    fn web(removed: bool) -> Awaited {
        Awaited {
            app: AppId::parse("/web").expect("id"),
            deployment_id: "d1".into(),
            removed,
        }
    }

    #[test]
    fn a_wait_is_done_once_the_deployment_is_gone_and_every_instance_runs() {
        let id = AppId::parse("/web").expect("id");
        let mut p = WaitProgress {
            deployments_left: vec!["d1".into()],
            apps: vec![(id.clone(), Some(app(json!({}))))],
        };
        assert!(!p.done(&[web(false)]));
        p.deployments_left.clear();
        p.apps[0].1 = Some(app(json!({"deployments": [], "tasksRunning": 2})));
        assert!(p.done(&[web(false)]));
        assert!(!p.done(&[web(true)]), "a removal waits for the app to go");
        p.apps[0].1 = None;
        assert!(p.done(&[web(true)]));
    }

    #[test]
    fn a_timeout_says_why_the_instances_do_not_start() {
        let id = AppId::parse("/web").expect("id");
        let failed = app(
            json!({"lastTaskFailure": {"state": "TASK_FAILED", "host": "h1",
            "message": "exit 127"}}),
        );
        let p = WaitProgress {
            deployments_left: vec!["d1".into()],
            apps: vec![(id, Some(failed.clone()))],
        };
        let q: QueueEntry = serde_json::from_value(json!({"app": failed, "count": 1,
            "delay": {"timeLeftSeconds": 0, "overdue": true},
            "processedOffersSummary": {"processedOffersCount": 3, "unusedOffersCount": 3,
                "rejectSummaryLastOffers": [{"reason": "InsufficientMemory", "declined": 3, "processed": 3}]},
            "lastUnusedOfferReason": "insufficient mem: need 9000 MiB, agent has 512 MiB"}))
        .expect("a queue entry");
        let s = timeout_status(&[web(false)], &p, &[q]);
        assert!(s.starts_with("/web: 1/2 running, deploying"), "{s}");
        assert!(
            s.contains("last failure: TASK_FAILED on h1: exit 127"),
            "{s}"
        );
        assert!(s.contains("need 9000 MiB"), "{s}");
        assert!(s.contains("InsufficientMemory (3 offers)"), "{s}");
        assert!(s.contains("deployment(s) still running: d1"), "{s}");
    }
}
