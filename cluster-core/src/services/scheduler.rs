//! The services framework's decisions, pure: apps and their instances in, scheduler
//! [`Action`]s out. Offers are matched ([`placement`](super::placement)), status updates kept,
//! lost or failed instances replaced with back-off, surplus and unhealthy ones killed. The
//! driver ([`super::driver`]) does the I/O and passes `now` and fresh ids in.

use super::rolling::{self, Seen, Strategy};
use crate::proto::{TaskInfo, TaskState, TaskStatus};
use dccore_api::marathon::{App, AppId, HealthCheck, Protocol};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What the framework asks the master to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// ACCEPT `offer_id` with these tasks.
    Launch {
        /// The offer.
        offer_id: String,
        /// Tasks (all on the offer's agent).
        tasks: Vec<TaskInfo>,
    },
    /// DECLINE offers for `refuse_seconds`.
    Decline {
        /// The offers.
        offer_ids: Vec<String>,
        /// Filter.
        refuse_seconds: f64,
    },
    /// KILL a task.
    Kill {
        /// Task.
        task_id: String,
        /// Its agent.
        agent_id: String,
    },
    /// ACKNOWLEDGE an update.
    Acknowledge {
        /// Agent.
        agent_id: String,
        /// Task.
        task_id: String,
        /// The update's uuid.
        uuid: String,
    },
    /// REVIVE: something waits for offers again (declines filtered agents).
    Revive,
}

/// One instance: a task of an app.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Instance {
    /// Mesos task id (`prod_web.UUID`).
    pub task_id: String,
    /// The app.
    pub app: String,
    /// The app version it was launched with.
    pub version: String,
    /// Agent.
    pub agent_id: String,
    /// Agent hostname.
    pub host: String,
    /// Agent attributes (for constraints).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Host ports.
    pub ports: Vec<u64>,
    /// Last known state.
    pub state: TaskState,
    /// Epoch seconds of the launch.
    pub staged_at: f64,
    /// Epoch seconds it was first seen running.
    #[serde(default)]
    pub started_at: Option<f64>,
    /// A kill was sent (it no longer counts toward the app's instances).
    #[serde(default)]
    pub killing: bool,
    /// Health: `None` until the first check result (or without checks).
    #[serde(skip)]
    pub healthy: Option<bool>,
    #[serde(skip)]
    failures: u32,
    #[serde(skip)]
    running_since: Option<Instant>,
    #[serde(skip)]
    next_check: Option<Instant>,
}

impl Instance {
    /// Counts toward the app's instances: not finished, not being killed, not unreachable.
    pub fn active(&self) -> bool {
        !self.killing && !self.state.is_terminal() && self.state != TaskState::Unreachable
    }
}

/// Per-app bookkeeping beside the definition.
#[derive(Clone, Debug)]
pub struct AppEntry {
    /// The definition.
    pub app: App,
    /// Its version (ISO-8601 time of the change, Marathon's format).
    pub version: String,
    /// The definition before the last change (rollback target).
    pub previous: Option<(App, String)>,
    /// The running deployment: id, and the version it deploys.
    pub deployment: Option<String>,
    /// When the running deployment is rolled back if it has not finished (none: never).
    pub deadline: Option<Instant>,
    /// Current launch delay (zero: none).
    pub delay: Duration,
    /// No launch before this.
    pub launch_after: Option<Instant>,
    /// Offers not used for this app since it last needed instances, by refusal label.
    pub refusals: BTreeMap<&'static str, u64>,
    /// The last refusal's explanation.
    pub last_refusal: Option<String>,
    /// Offers looked at while the app waited.
    pub offers_processed: u64,
    /// The last failed instance (Marathon's `lastTaskFailure`).
    pub last_failure: Option<Value>,
}

/// Everything the framework decides from.
#[derive(Debug, Default)]
pub struct Core {
    /// Apps by id.
    pub apps: BTreeMap<AppId, AppEntry>,
    /// Instances by task id (of apps, and of removed apps until they end).
    pub instances: BTreeMap<String, Instance>,
    /// A deployment not finished this long after it started is rolled back (none: never).
    pub deployment_timeout: Option<Duration>,
}

impl Core {
    /// Adds or replaces an app; a new deployment (id `deployment_id`) starts. Returns the
    /// actions to take now.
    pub fn put_app(
        &mut self,
        app: App,
        version: String,
        deployment_id: String,
        now: Instant,
    ) -> Vec<Action> {
        let id = app.id.clone();
        let entry = match self.apps.remove(&id) {
            Some(mut e) => {
                let scale_only = e.app.with_instances(app.instances).raw == app.raw;
                e.previous = Some((e.app.clone(), e.version.clone()));
                if !scale_only {
                    e.version = version;
                }
                e.app = app;
                e.deployment = Some(deployment_id);
                e.deadline = self.deployment_timeout.map(|t| now + t);
                e.delay = Duration::ZERO;
                e.launch_after = None;
                e
            }
            None => AppEntry {
                app,
                version,
                previous: None,
                deployment: Some(deployment_id),
                deadline: self.deployment_timeout.map(|t| now + t),
                delay: Duration::ZERO,
                launch_after: None,
                refusals: BTreeMap::new(),
                last_refusal: None,
                offers_processed: 0,
                last_failure: None,
            },
        };
        self.apps.insert(id, entry);
        let mut out = self.tick(now);
        out.push(Action::Revive);
        out
    }

    /// Replaces every instance of the app (a new version, same definition).
    pub fn restart(
        &mut self,
        id: &AppId,
        version: String,
        deployment_id: String,
        now: Instant,
    ) -> Vec<Action> {
        if let Some(e) = self.apps.get_mut(id) {
            e.previous = Some((e.app.clone(), e.version.clone()));
            e.version = version;
            e.deployment = Some(deployment_id);
            e.deadline = self.deployment_timeout.map(|t| now + t);
        }
        let mut out = self.tick(now);
        out.push(Action::Revive);
        out
    }

    /// Removes an app and kills its instances.
    pub fn remove_app(&mut self, id: &AppId) -> Vec<Action> {
        self.apps.remove(id);
        let mut out = Vec::new();
        for i in self.instances.values_mut().filter(|i| i.app == id.as_str()) {
            if !i.state.is_terminal() && !i.killing {
                i.killing = true;
                out.push(kill(i));
            }
        }
        out
    }

    /// Kills one instance; with `scale`, the app's instance count drops by one instead of the
    /// instance being replaced.
    pub fn kill_task(&mut self, task_id: &str, scale: bool) -> Option<Vec<Action>> {
        let i = self.instances.get_mut(task_id)?;
        let mut out = Vec::new();
        if !i.state.is_terminal() && !i.killing {
            i.killing = true;
            out.push(kill(i));
        }
        if scale
            && let Ok(id) = AppId::parse(&i.app)
            && let Some(e) = self.apps.get_mut(&id)
        {
            e.app = e.app.with_instances(e.app.instances.saturating_sub(1));
        }
        Some(out)
    }

    /// The app's instances.
    pub fn instances_of<'a>(&'a self, id: &'a AppId) -> impl Iterator<Item = &'a Instance> + 'a {
        self.instances
            .values()
            .filter(move |i| i.app == id.as_str())
    }

    /// The rolling step due for the app (see [`rolling`]): what to start and kill next.
    fn step(&self, id: &AppId, e: &AppEntry) -> rolling::Step {
        let checks = !e.app.health_checks.is_empty();
        let seen: Vec<Seen> = self
            .instances_of(id)
            .filter(|i| !i.state.is_terminal() && i.state != TaskState::Unreachable)
            .map(|i| Seen {
                task_id: i.task_id.clone(),
                current: i.version == e.version,
                ready: ready(i, checks),
                staged_at: i.staged_at,
                dying: i.killing,
            })
            .collect();
        let strategy = Strategy {
            instances: e.app.instances,
            minimum_health_capacity: e.app.minimum_health_capacity,
            maximum_over_capacity: e.app.maximum_over_capacity,
        };
        rolling::plan(&strategy, &seen)
    }

    fn needed(&self, id: &AppId, e: &AppEntry) -> u32 {
        self.step(id, e).start
    }

    /// Apps that want more instances than they have (in id order).
    pub fn waiting(&self) -> Vec<(AppId, u32)> {
        self.apps
            .iter()
            .map(|(id, e)| (id.clone(), self.needed(id, e)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// A status update: bookkeeping, replacement, back-off.
    pub fn on_update(&mut self, st: &TaskStatus, now: Instant, epoch_secs: f64) -> Vec<Action> {
        let mut out = self.record_update(st, now, epoch_secs);
        out.extend(self.tick(now));
        out
    }

    /// Status updates that arrived together: each one's bookkeeping, then one [`Core::tick`]
    /// for all. A tick walks every instance, so one per update made a deploy of N instances
    /// cost N² (its N RUNNING updates come in bursts).
    pub fn on_updates(
        &mut self,
        updates: &[TaskStatus],
        now: Instant,
        epoch_secs: f64,
    ) -> Vec<Action> {
        self.on_updates_seen(updates, now, epoch_secs, |_, _, _| {})
    }

    /// As [`Core::on_updates`], showing `seen` each update with its instance before and after it
    /// (`/v2/events` tells changes, and a batch may hold several of one task).
    pub fn on_updates_seen(
        &mut self,
        updates: &[TaskStatus],
        now: Instant,
        epoch_secs: f64,
        mut seen: impl FnMut(Option<&Instance>, Option<&Instance>, &TaskStatus),
    ) -> Vec<Action> {
        let mut out = Vec::new();
        for st in updates {
            let before = self.instances.get(&st.task_id.value).cloned();
            out.extend(self.record_update(st, now, epoch_secs));
            seen(before.as_ref(), self.instances.get(&st.task_id.value), st);
        }
        out.extend(self.tick(now));
        out
    }

    /// One update's bookkeeping, without the tick that follows it.
    fn record_update(&mut self, st: &TaskStatus, now: Instant, epoch_secs: f64) -> Vec<Action> {
        let mut out = Vec::new();
        let agent = st
            .agent_id
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        if let Some(uuid) = &st.uuid {
            out.push(Action::Acknowledge {
                agent_id: agent.clone(),
                task_id: st.task_id.value.clone(),
                uuid: uuid.clone(),
            });
        }
        let Some(i) = self.instances.get_mut(&st.task_id.value) else {
            // A task of ours nobody knows (its app was removed while the master was away): end it.
            if !st.state.is_terminal() {
                out.push(Action::Kill {
                    task_id: st.task_id.value.clone(),
                    agent_id: agent,
                });
            }
            return out;
        };
        let was = i.state;
        i.state = st.state;
        // COMMAND checks run on the agent: their results arrive as `healthy` on updates.
        if st.healthy.is_some() {
            i.healthy = st.healthy;
        }
        if st.state == TaskState::Running && i.started_at.is_none() {
            i.started_at = Some(epoch_secs);
        }
        if st.state == TaskState::Running && i.running_since.is_none() {
            i.running_since = Some(now);
        }
        let app_id = AppId::parse(&i.app).ok();
        // TASK_UNKNOWN (explicit reconciliation of a task the master never heard of) is gone too.
        if st.state.is_terminal() || st.state == TaskState::Unknown {
            let i = self
                .instances
                .remove(&st.task_id.value)
                .expect("invariant: looked up above");
            // Failures back off; lost, gone and finished instances are replaced at once.
            let failed = matches!(
                st.state,
                TaskState::Failed | TaskState::Error | TaskState::Dropped
            );
            if let Some(e) = app_id.and_then(|id| self.apps.get_mut(&id)) {
                if failed && !i.killing {
                    e.delay = e.app.backoff.after(e.delay);
                    e.launch_after = Some(now + e.delay);
                    e.last_failure = Some(serde_json::json!({
                        "appId": i.app, "taskId": i.task_id, "host": i.host, "version": i.version,
                        "state": st.state.name(), "message": st.message.clone().unwrap_or_default(),
                        "timestamp": crate::services::iso_time(epoch_secs),
                    }));
                }
                out.push(Action::Revive);
            }
        } else if st.state == TaskState::Running && was != TaskState::Running {
            if let Some(e) = app_id.and_then(|id| self.apps.get_mut(&id)) {
                // A launch that reached RUNNING ends the back-off (Marathon resets it too).
                e.delay = Duration::ZERO;
                e.launch_after = None;
            }
        } else if st.state == TaskState::Unreachable && was != TaskState::Unreachable {
            // Replaced now; the surplus is killed if the agent comes back (see `tick`).
            out.push(Action::Revive);
        }
        out
    }

    /// Kills surplus instances (old versions once enough new ones are ready, and returns from
    /// unreachable), ends finished deployments, and REVIVEs when a back-off has elapsed.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let ids: Vec<AppId> = self.apps.keys().cloned().collect();
        for id in ids {
            if self.apps[&id].deadline.is_some_and(|d| now >= d) {
                out.extend(self.roll_back(&id));
            }
            let e = &self.apps[&id];
            let (version, want, checks) = (
                e.version.clone(),
                e.app.instances as usize,
                !e.app.health_checks.is_empty(),
            );
            let ready = |i: &Instance| ready(i, checks);
            // Old versions go as new ones become ready, within the app's upgrade strategy.
            let victims = self.step(&id, e).kill;
            for t in victims {
                if let Some(i) = self.instances.get_mut(&t) {
                    i.killing = true;
                    out.push(kill(i));
                }
            }
            let e = &self.apps[&id];
            let converged = self.instances_of(&id).filter(|i| i.active()).count() == want
                && self
                    .instances_of(&id)
                    .filter(|i| i.active() && ready(i) && i.version == version)
                    .count()
                    == want;
            let backoff_over = e.launch_after.is_some_and(|t| now >= t);
            let e = self.apps.get_mut(&id).expect("invariant: id listed above");
            if converged {
                e.deployment = None;
                e.deadline = None;
                e.refusals.clear();
                e.last_refusal = None;
                e.offers_processed = 0;
            }
            if backoff_over {
                e.launch_after = None;
                out.push(Action::Revive);
            }
        }
        out
    }

    /// Health checks due now: task, host, port and the check; each is scheduled again after
    /// its interval.
    pub fn due_checks(&mut self, now: Instant) -> Vec<(String, String, u16, HealthCheck)> {
        let mut out = Vec::new();
        for i in self.instances.values_mut() {
            if i.state != TaskState::Running || i.killing {
                continue;
            }
            let Some(check) = AppId::parse(&i.app)
                .ok()
                .and_then(|id| self.apps.get(&id))
                .filter(|e| {
                    e.version == i.version || e.previous.as_ref().is_some_and(|p| p.1 == i.version)
                })
                .and_then(|e| {
                    e.app
                        .health_checks
                        .iter()
                        .find(|c| c.protocol != Protocol::Command)
                        .cloned()
                })
            else {
                continue;
            };
            if i.next_check.is_some_and(|t| now < t) {
                continue;
            }
            i.next_check = Some(now + Duration::from_secs_f64(check.interval_secs));
            let Some(port) = i
                .ports
                .get(check.port_index)
                .and_then(|p| u16::try_from(*p).ok())
            else {
                continue;
            };
            out.push((i.task_id.clone(), i.host.clone(), port, check));
        }
        out
    }

    /// A health check's result; an instance failing `maxConsecutiveFailures` times after its
    /// grace period is killed (and so replaced).
    pub fn health_result(&mut self, task_id: &str, ok: bool, now: Instant) -> Vec<Action> {
        let Some(i) = self.instances.get_mut(task_id) else {
            return Vec::new();
        };
        let Some(check) = AppId::parse(&i.app)
            .ok()
            .and_then(|id| self.apps.get(&id))
            .and_then(|e| e.app.health_checks.first().cloned())
        else {
            return Vec::new();
        };
        if ok {
            i.healthy = Some(true);
            i.failures = 0;
            return self.tick(now);
        }
        let in_grace = i.healthy.is_none()
            && i.running_since
                .is_some_and(|t| now < t + Duration::from_secs_f64(check.grace_period_secs));
        if in_grace {
            return Vec::new();
        }
        i.healthy = Some(false);
        i.failures += 1;
        if check.max_consecutive_failures > 0
            && i.failures >= check.max_consecutive_failures
            && !i.killing
        {
            tracing::info!(task = %i.task_id, failures = i.failures, "instance unhealthy: killing it");
            i.killing = true;
            let k = kill(i);
            return vec![k, Action::Revive];
        }
        Vec::new()
    }
}

/// Counts toward an app's health capacity: running and, with health checks, healthy.
fn ready(i: &Instance, checks: bool) -> bool {
    i.state == TaskState::Running && (!checks || i.healthy == Some(true))
}

fn kill(i: &Instance) -> Action {
    Action::Kill {
        task_id: i.task_id.clone(),
        agent_id: i.agent_id.clone(),
    }
}

// Offer matching: `Core::on_offers`.
#[path = "offers.rs"]
mod offers;
#[cfg(test)]
use offers::WAITING_REFUSE_SECS;

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
