//! The framework's event bus (Marathon's `/v2/events`): the driver tells the [`Publisher`]
//! what it just did, and the publisher turns state changes into [`MarathonEvent`]s on a
//! bounded broadcast channel. Subscribers get a receiver through
//! [`ServiceCommand::Events`](super::ServiceCommand::Events); the driver owns the only sender,
//! so every stream ends when the framework stops (shutdown, or a lost lead: the clients
//! reconnect and are sent to the new leader).
//!
//! Sending never waits: a subscriber more than [`EVENT_BUFFER`] events behind misses the
//! oldest and is told so by its receiver (`Lagged`), and the route ends its stream.
//!
//! Deployment events come from comparing each app's running deployment with the one seen last
//! ([`Publisher::deployments`], after every step of the driver), so every way a deployment
//! starts or ends (a change, a rollback at the deadline, convergence) is covered by one rule;
//! task and health events from the instance before and after an update or a check result.

use super::rolling;
use super::scheduler::{AppEntry, Core, Instance};
use super::{Change, iso_time};
use crate::proto::{TaskStatus, now_secs};
use dccore_api::marathon::answers::{DeploymentAction, DeploymentStep};
use dccore_api::marathon::events::{DeploymentPlan, MarathonEvent, PlanGroup};
use dccore_api::marathon::{App, AppId};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Events a subscriber may be behind before it misses some.
pub const EVENT_BUFFER: usize = 1024;

/// A subscription to the framework's events.
pub type EventReceiver = broadcast::Receiver<Arc<MarathonEvent>>;

/// A deployment seen running: its plan (kept for the event that ends it) and its step.
#[derive(Clone, Debug)]
struct Seen {
    plan: DeploymentPlan,
    /// 1-based step running when last looked at.
    step: usize,
}

/// Publishes the driver's state changes; owns the channel's only sender.
pub(super) struct Publisher {
    tx: broadcast::Sender<Arc<MarathonEvent>>,
    running: BTreeMap<AppId, Seen>,
}

impl Publisher {
    pub(super) fn new() -> Publisher {
        Publisher {
            tx: broadcast::channel(EVENT_BUFFER).0,
            running: BTreeMap::new(),
        }
    }

    /// A new subscription: the events from now on.
    pub(super) fn subscribe(&self) -> EventReceiver {
        self.tx.subscribe()
    }

    fn publish(&self, events: Vec<MarathonEvent>) {
        for e in events {
            // Err only when nobody listens: nothing to do.
            let _ = self.tx.send(Arc::new(e));
        }
    }

    /// After every step of the driver: the deployments that started, advanced or ended.
    pub(super) fn deployments(&mut self, core: &Core) {
        let events = diff_deployments(&mut self.running, core, &iso_time(now_secs()));
        self.publish(events);
    }

    /// A status update of `before` (none: not one of ours) was applied; `after` is the instance
    /// now (none once it ended).
    pub(super) fn task_update(
        &self,
        before: Option<&Instance>,
        after: Option<&Instance>,
        st: &TaskStatus,
    ) {
        let Some(b) = before else { return };
        let ts = iso_time(now_secs());
        let mut out = Vec::new();
        // Reconciliation repeats known states: only changes are events.
        if b.state != st.state {
            out.push(MarathonEvent::StatusUpdateEvent {
                slave_id: b.agent_id.clone(),
                task_id: b.task_id.clone(),
                task_status: st.state,
                message: st.message.clone().unwrap_or_default(),
                app_id: b.app.clone(),
                host: b.host.clone(),
                ip_addresses: Vec::new(),
                ports: b.ports.clone(),
                version: b.version.clone(),
                timestamp: ts.clone(),
            });
        }
        out.extend(health_change(b.healthy, after, &ts));
        self.publish(out);
    }

    /// A health check result was applied: `before` was the instance's health.
    pub(super) fn health(&self, before: Option<bool>, after: Option<&Instance>) {
        self.publish(
            health_change(before, after, &iso_time(now_secs()))
                .into_iter()
                .collect(),
        );
    }

    /// An app definition was posted through the API (Marathon's `api_post_event`).
    pub(super) fn posted(&self, app: &App) {
        self.publish(vec![MarathonEvent::ApiPostEvent {
            // The driver does not learn the client's address.
            client_ip: String::new(),
            uri: format!("/v2/apps{}", app.id),
            app_definition: app.to_json(),
            timestamp: iso_time(now_secs()),
        }]);
    }

    /// A deployment was cancelled with `force` (stopped where it was, not rolled back).
    pub(super) fn cancelled(&mut self, id: &AppId) {
        if let Some(seen) = self.running.remove(id) {
            self.publish(vec![failed(seen, "cancelled", &iso_time(now_secs()))]);
        }
    }

    /// An app was removed (`definition`) by deployment `change`: its kills are sent, which is
    /// all a stop deployment does here, so it starts and succeeds at once.
    pub(super) fn removed(&mut self, definition: &App, change: &Change) {
        let ts = iso_time(now_secs());
        let mut out = Vec::new();
        if let Some(seen) = self.running.remove(&definition.id) {
            out.push(failed(seen, "its app was removed", &ts));
        }
        let step = step_of("StopApplication", definition.id.as_str());
        let plan = DeploymentPlan {
            id: change.deployment_id.clone(),
            version: change.version.clone(),
            original: root(Some(definition), &change.version),
            target: root(None, &change.version),
            steps: vec![step.clone()],
        };
        out.push(MarathonEvent::DeploymentInfo {
            plan: plan.clone(),
            current_step: step,
            timestamp: ts.clone(),
        });
        out.push(MarathonEvent::DeploymentSuccess {
            id: change.deployment_id.clone(),
            plan,
            timestamp: ts,
        });
        self.publish(out);
    }
}

fn health_change(
    before: Option<bool>,
    after: Option<&Instance>,
    ts: &str,
) -> Option<MarathonEvent> {
    let a = after?;
    let alive = a.healthy?;
    (before != Some(alive)).then(|| MarathonEvent::HealthStatusChangedEvent {
        app_id: a.app.clone(),
        task_id: a.task_id.clone(),
        instance_id: a.task_id.clone(),
        version: a.version.clone(),
        alive,
        timestamp: ts.to_string(),
    })
}

fn step_of(action: &str, app: &str) -> DeploymentStep {
    DeploymentStep {
        actions: vec![DeploymentAction {
            action: action.into(),
            app: app.into(),
            readiness_check_results: None,
        }],
    }
}

fn root(app: Option<&App>, version: &str) -> PlanGroup {
    PlanGroup {
        id: "/".into(),
        apps: app.map(App::to_json).into_iter().collect(),
        groups: Vec::new(),
        pods: Vec::new(),
        dependencies: Vec::new(),
        version: version.into(),
    }
}

fn plan_of(id: &str, e: &AppEntry) -> DeploymentPlan {
    let app = e.app.id.as_str();
    DeploymentPlan {
        id: id.into(),
        version: e.version.clone(),
        original: root(e.previous.as_ref().map(|(a, _)| a), &e.version),
        target: root(Some(&e.app), &e.version),
        steps: rolling::steps(e).iter().map(|s| step_of(s, app)).collect(),
    }
}

fn step_success(seen: &Seen, step: usize, ts: &str) -> MarathonEvent {
    MarathonEvent::DeploymentStepSuccess {
        plan: seen.plan.clone(),
        current_step: seen.plan.steps[step - 1].clone(),
        timestamp: ts.into(),
    }
}

fn failed(seen: Seen, reason: &str, ts: &str) -> MarathonEvent {
    MarathonEvent::DeploymentFailed {
        id: seen.plan.id.clone(),
        plan: seen.plan,
        reason: reason.into(),
        timestamp: ts.into(),
    }
}

/// Compares each app's running deployment with `running` (what was seen last, updated here):
/// a new one is `deployment_info`, a step passed is `deployment_step_success`, one gone with
/// its app converged is `deployment_success` (after its remaining steps), one replaced by
/// another (a forced change, a rollback) or gone with its app is `deployment_failed`. Pure
/// but for `ts`, the events' timestamp.
fn diff_deployments(
    running: &mut BTreeMap<AppId, Seen>,
    core: &Core,
    ts: &str,
) -> Vec<MarathonEvent> {
    let mut out = Vec::new();
    let gone: Vec<AppId> = running
        .keys()
        .filter(|id| !core.apps.contains_key(*id))
        .cloned()
        .collect();
    for id in gone {
        if let Some(seen) = running.remove(&id) {
            out.push(failed(seen, "its app was removed", ts));
        }
    }
    for (id, e) in &core.apps {
        let seen = running.remove(id);
        let Some(d) = &e.deployment else {
            if let Some(s) = seen {
                // Ended without being replaced: the app converged.
                for step in s.step..=s.plan.steps.len() {
                    out.push(step_success(&s, step, ts));
                }
                out.push(MarathonEvent::DeploymentSuccess {
                    id: s.plan.id.clone(),
                    plan: s.plan,
                    timestamp: ts.into(),
                });
            }
            continue;
        };
        let mut s = match seen {
            Some(s) if s.plan.id == *d => s,
            other => {
                if let Some(old) = other {
                    let rolled_back = e.last_failure.as_ref().and_then(|f| {
                        (f["deploymentResult"] == "rolledBack")
                            .then(|| f["message"].as_str().unwrap_or_default().to_string())
                    });
                    let reason = rolled_back
                        .filter(|m| m.contains(old.plan.id.as_str()))
                        .unwrap_or_else(|| format!("replaced by deployment {d}"));
                    out.push(failed(old, &reason, ts));
                }
                let plan = plan_of(d, e);
                out.push(MarathonEvent::DeploymentInfo {
                    current_step: plan.steps[0].clone(),
                    plan: plan.clone(),
                    timestamp: ts.into(),
                });
                Seen { plan, step: 1 }
            }
        };
        // Only a new app's first step ends while it runs (once it has an instance): the scan
        // over the instances is skipped for every other deployment.
        let now_at = if s.step < s.plan.steps.len() && e.previous.is_none() {
            let started = usize::from(core.instances_of(id).next().is_some());
            rolling::current_step(e, started).min(s.plan.steps.len())
        } else {
            s.step
        };
        while s.step < now_at {
            out.push(step_success(&s, s.step, ts));
            s.step += 1;
        }
        running.insert(id.clone(), s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn app(id: &str, instances: u32, cmd: &str) -> App {
        let v = serde_json::json!({"id": id, "cmd": cmd, "instances": instances, "cpus": 0.1, "mem": 16});
        App::from_json(v, None).expect("valid app")
    }

    fn types(events: &[MarathonEvent]) -> Vec<&'static str> {
        events.iter().map(MarathonEvent::event_type).collect()
    }

    #[test]
    fn a_new_deployment_is_announced_once_and_its_end_is_its_remaining_steps_then_success() {
        let mut core = Core::default();
        let mut seen = BTreeMap::new();
        core.put_app(
            app("/prod/web", 2, "sleep 9"),
            "v1".into(),
            "d1".into(),
            Instant::now(),
        );
        let ev = diff_deployments(&mut seen, &core, "t");
        assert_eq!(types(&ev), ["deployment_info"]);
        let MarathonEvent::DeploymentInfo {
            plan, current_step, ..
        } = &ev[0]
        else {
            unreachable!("checked above")
        };
        assert_eq!(plan.id, "d1");
        assert_eq!(plan.target.apps[0]["id"], "/prod/web");
        assert!(
            plan.original.apps.is_empty(),
            "a new app had no definition before"
        );
        assert_eq!(current_step.actions[0].action, "StartApplication");
        assert!(
            diff_deployments(&mut seen, &core, "t").is_empty(),
            "nothing changed"
        );

        let id = AppId::parse("/prod/web").expect("id");
        core.apps.get_mut(&id).expect("app").deployment = None;
        let ev = diff_deployments(&mut seen, &core, "t");
        assert_eq!(
            types(&ev),
            [
                "deployment_step_success",
                "deployment_step_success",
                "deployment_success"
            ]
        );
        assert!(seen.is_empty());
    }

    #[test]
    fn a_replaced_deployment_fails_before_the_new_one_starts_and_a_removed_app_fails_its_own() {
        let mut core = Core::default();
        let mut seen = BTreeMap::new();
        let t = Instant::now();
        core.put_app(app("/web", 1, "sleep 9"), "v1".into(), "d1".into(), t);
        diff_deployments(&mut seen, &core, "t");
        core.put_app(app("/web", 1, "sleep 10"), "v2".into(), "d2".into(), t);
        let ev = diff_deployments(&mut seen, &core, "t");
        assert_eq!(types(&ev), ["deployment_failed", "deployment_info"]);
        assert!(
            matches!(&ev[0], MarathonEvent::DeploymentFailed { id, reason, .. }
            if id == "d1" && reason == "replaced by deployment d2")
        );
        let MarathonEvent::DeploymentInfo { plan, .. } = &ev[1] else {
            unreachable!("checked above")
        };
        assert_eq!(
            plan.original.apps[0]["cmd"], "sleep 9",
            "the definition before"
        );
        assert_eq!(plan.steps[0].actions[0].action, "RestartApplication");

        core.remove_app(&AppId::parse("/web").expect("id"));
        let ev = diff_deployments(&mut seen, &core, "t");
        assert!(matches!(&ev[..], [MarathonEvent::DeploymentFailed { id, .. }] if id == "d2"));
    }
}
