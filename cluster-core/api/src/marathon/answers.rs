//! What the Marathon-compatible `/v2` API answers, typed: dccore's handlers
//! (`cluster-core/src/api/marathon/`) build their JSON from these types and dcform's client
//! (`dcform app`, apply's services convergence) reads it back into them, so a field renamed on
//! one side breaks the other's build rather than a user's deploy.
//!
//! | route | answer |
//! |---|---|
//! | `GET /v2/apps` | [`AppList`] |
//! | `GET /v2/apps/{id}` | [`AppAnswer`] |
//! | `POST /v2/apps` | [`AppStatus`] (201) |
//! | `GET /v2/apps/{id}/tasks`, `GET /v2/tasks`, `POST /v2/tasks/delete` | [`TaskList`] |
//! | `PUT/PATCH/DELETE /v2/apps/{id}`, `POST /v2/apps/{id}/restart`, `DELETE /v2/deployments/{id}` | [`DeploymentRef`] |
//! | `GET /v2/deployments` | `[`[`Deployment`]`]` |
//! | `GET /v2/queue` | [`Queue`] |
//! | `GET /v2/groups`, `GET /v2/groups/{id}` | [`Group`] |
//! | `GET /v2/events` | [`super::events::MarathonEvent`]s (server-sent events) |
//! | every error | [`ErrorBody`] (`message`; `details` on 422, `deployments` on 409) |
//!
//! Names are Marathon's (camelCase on the wire). An app's definition fields (`cmd`, `cpus`, ...)
//! stay JSON ([`AppStatus::definition`]): they round-trip as the client sent them.

use crate::proto::TaskState;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `{"id": ...}`: a deployment named in an app or in a 409.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentId {
    /// The deployment's id.
    pub id: String,
}

/// An app as `/v2/apps` shows it: its definition and the counters of its instances.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    /// The app's path, e.g. `/prod/web`.
    pub id: String,
    /// Wanted instances.
    pub instances: u32,
    /// The definition's version (ISO-8601 time of the last change).
    pub version: String,
    /// When it was last scaled and last changed.
    pub version_info: VersionInfo,
    /// Instances in `TASK_RUNNING`.
    pub tasks_running: u32,
    /// Instances staging or starting.
    pub tasks_staged: u32,
    /// Running instances whose health checks pass (0 without health checks).
    pub tasks_healthy: u32,
    /// Running instances whose health checks fail.
    pub tasks_unhealthy: u32,
    /// The deployments running for the app (none once it has converged).
    pub deployments: Vec<DeploymentId>,
    /// The last instance that failed, as Marathon shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_task_failure: Option<Value>,
    /// The instances, with `?embed=apps.tasks` / `?embed=app.tasks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<MarathonTask>>,
    /// Every other field of the definition (`cmd`, `cpus`, `healthChecks`, ...), as sent, with
    /// Marathon's defaults.
    #[serde(flatten)]
    pub definition: Map<String, Value>,
}

/// The keys [`AppStatus`] types itself: never repeated in [`AppStatus::definition`].
const TYPED_KEYS: [&str; 11] = [
    "id",
    "instances",
    "version",
    "versionInfo",
    "tasksRunning",
    "tasksStaged",
    "tasksHealthy",
    "tasksUnhealthy",
    "deployments",
    "lastTaskFailure",
    "tasks",
];

impl AppStatus {
    /// Drops from `definition` the keys this type holds itself, so that the JSON has each once
    /// (serde's `flatten` would write both).
    pub fn without_typed_keys(mut definition: Map<String, Value>) -> Map<String, Value> {
        for k in TYPED_KEYS {
            definition.remove(k);
        }
        definition
    }

    /// Whether the definition has health checks (then an instance counts once healthy).
    pub fn has_health_checks(&self) -> bool {
        self.definition
            .get("healthChecks")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    }

    /// Whether the app runs as its definition wants: no deployment, every wanted instance
    /// running (and healthy, with health checks), nothing staging.
    pub fn is_converged(&self) -> bool {
        let ready = if self.has_health_checks() {
            self.tasks_healthy
        } else {
            self.tasks_running
        };
        self.deployments.is_empty()
            && self.tasks_running == self.instances
            && ready == self.instances
            && self.tasks_staged == 0
    }
}

/// `versionInfo`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionInfo {
    /// The version of the last change of the instance count.
    pub last_scaling_at: String,
    /// The version of the last change of anything else.
    pub last_config_change_at: String,
}

/// `GET /v2/apps`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppList {
    /// The apps, in id order.
    pub apps: Vec<AppStatus>,
}

/// `GET /v2/apps/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppAnswer {
    /// The app.
    pub app: AppStatus,
}

/// What a change answers: the app's new version and the deployment that carries it out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentRef {
    /// The app's version after the change.
    pub version: String,
    /// The deployment started (see `GET /v2/deployments`).
    pub deployment_id: String,
}

/// One health check's last result of a task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckResult {
    /// Whether the check passed.
    pub alive: bool,
    /// The task checked.
    pub task_id: String,
}

/// A task (an instance of an app) as Marathon shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarathonTask {
    /// Mesos task id (`prod_web.UUID`).
    pub id: String,
    /// The app.
    pub app_id: String,
    /// The agent's hostname.
    pub host: String,
    /// Host ports.
    pub ports: Vec<u64>,
    /// The agent (Marathon's older name).
    pub slave_id: String,
    /// The agent.
    pub agent_id: String,
    /// Last known state.
    pub state: TaskState,
    /// When it was launched (ISO-8601).
    pub staged_at: String,
    /// When it was first seen running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// The app version it was launched with.
    pub version: String,
    /// Container addresses (none: tasks use the host's network).
    #[serde(default)]
    pub ip_addresses: Vec<Value>,
    /// With health checks, once checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_results: Option<Vec<HealthCheckResult>>,
}

/// `{"tasks": [...]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskList {
    /// The tasks.
    pub tasks: Vec<MarathonTask>,
}

/// One action of a deployment step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentAction {
    /// What (`ScaleApplication`, ...).
    pub action: String,
    /// The app.
    pub app: String,
    /// Readiness checks (only in `currentActions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_check_results: Option<Vec<Value>>,
}

/// One step of a deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentStep {
    /// Its actions.
    pub actions: Vec<DeploymentAction>,
}

/// A running deployment (`GET /v2/deployments`): it is gone from the list once done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// Its id.
    pub id: String,
    /// The version it deploys.
    pub version: String,
    /// The apps it changes.
    pub affected_apps: Vec<String>,
    /// Pods (never any: dccore has no pods).
    #[serde(default)]
    pub affected_pods: Vec<String>,
    /// The plan.
    pub steps: Vec<DeploymentStep>,
    /// What runs now.
    pub current_actions: Vec<DeploymentAction>,
    /// 1-based.
    pub current_step: u32,
    /// Of the plan.
    pub total_steps: u32,
}

/// A group of Marathon's tree (`GET /v2/groups`): the apps whose id is directly under its
/// path (`/prod/web` is app `web` of group `/prod`) and its subgroups. dccore has no group
/// definitions of its own: the tree is made from the app ids.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// The group's path (`/` for the root).
    pub id: String,
    /// Its apps, in id order.
    pub apps: Vec<AppStatus>,
    /// Its subgroups, in id order.
    pub groups: Vec<Group>,
    /// Pods (never any: dccore has no pods).
    #[serde(default)]
    pub pods: Vec<Value>,
    /// Groups this one depends on (never any: dccore has no group definitions).
    #[serde(default)]
    pub dependencies: Vec<String>,
    /// The newest version of the apps in the tree below it (the epoch for an empty group).
    pub version: String,
}

/// `delay` of a queue entry: the launch back-off after failures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueDelay {
    /// Seconds until the next launch may happen.
    pub time_left_seconds: u64,
    /// No delay (launches may happen now).
    pub overdue: bool,
}

/// Offers not used for an app, counted by why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectSummary {
    /// Why (`InsufficientMemory`, `UnfulfilledConstraint`, ...).
    pub reason: String,
    /// Offers declined for it.
    pub declined: u64,
    /// Offers looked at.
    pub processed: u64,
}

/// `processedOffersSummary` of a queue entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OffersSummary {
    /// Offers looked at while the app waited.
    pub processed_offers_count: u64,
    /// Of those, not used.
    pub unused_offers_count: u64,
    /// Not used, by reason.
    pub reject_summary_last_offers: Vec<RejectSummary>,
}

/// An app waiting for instances (`GET /v2/queue`), with why offers were not used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueEntry {
    /// The app.
    pub app: AppStatus,
    /// Instances still to launch.
    pub count: u32,
    /// The launch back-off.
    pub delay: QueueDelay,
    /// Offers seen and not used, by reason.
    pub processed_offers_summary: OffersSummary,
    /// dccore: the last refusal in words (which constraint, which resource, how much).
    #[serde(default)]
    pub last_unused_offer_reason: Option<String>,
}

impl QueueEntry {
    /// Why the app's instances do not start, in words: the last refusal, the counted reasons,
    /// the back-off.
    pub fn reasons(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = &self.last_unused_offer_reason {
            parts.push(format!("last offer not used: {r}"));
        }
        let counted: Vec<String> = self
            .processed_offers_summary
            .reject_summary_last_offers
            .iter()
            .filter(|r| r.declined > 0)
            .map(|r| format!("{} ({} offers)", r.reason, r.declined))
            .collect();
        if !counted.is_empty() {
            parts.push(format!("offers declined: {}", counted.join(", ")));
        }
        if !self.delay.overdue && self.delay.time_left_seconds > 0 {
            parts.push(format!(
                "launch delayed {} s after failures",
                self.delay.time_left_seconds
            ));
        }
        if parts.is_empty() {
            parts.push(format!(
                "{} instance(s) waiting; no offer looked at yet (are agents registered with enough free resources?)",
                self.count
            ));
        }
        parts.join("; ")
    }
}

/// `GET /v2/queue`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Queue {
    /// Waiting apps.
    pub queue: Vec<QueueEntry>,
}

/// One field that is not valid in a 422 answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// JSON pointer of the field.
    pub path: String,
    /// What is wrong with it.
    pub errors: Vec<String>,
}

/// Every error answer: `{"message": ...}`, with `details` on 422 and `deployments` on 409.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What is wrong.
    pub message: String,
    /// The fields that are not valid (422).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<ErrorDetail>,
    /// The deployments that lock the app (409).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deployments: Vec<DeploymentId>,
}

impl ErrorBody {
    /// An error with a message only.
    pub fn message(message: impl Into<String>) -> ErrorBody {
        ErrorBody {
            message: message.into(),
            details: Vec::new(),
            deployments: Vec::new(),
        }
    }
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        for d in &self.details {
            write!(f, "; {}: {}", d.path, d.errors.join(", "))?;
        }
        if !self.deployments.is_empty() {
            let ids: Vec<&str> = self.deployments.iter().map(|d| d.id.as_str()).collect();
            write!(f, " (deployments: {})", ids.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app_status(definition: Value) -> AppStatus {
        let Value::Object(def) = definition else {
            panic!("an object")
        };
        AppStatus {
            id: "/web".into(),
            instances: 2,
            version: "v1".into(),
            version_info: VersionInfo {
                last_scaling_at: "v1".into(),
                last_config_change_at: "v1".into(),
            },
            tasks_running: 2,
            tasks_staged: 0,
            tasks_healthy: 0,
            tasks_unhealthy: 0,
            deployments: vec![],
            last_task_failure: None,
            tasks: None,
            definition: AppStatus::without_typed_keys(def),
        }
    }

    #[test]
    fn an_app_writes_each_key_once_and_reads_back_its_definition() {
        let a = app_status(json!({"id": "/web", "instances": 2, "cmd": "sleep 9", "cpus": 0.1}));
        let v = serde_json::to_value(&a).expect("serializes");
        assert_eq!(v["id"], "/web");
        assert_eq!(v["cmd"], "sleep 9");
        assert_eq!(v["tasksRunning"], 2);
        let text = serde_json::to_string(&a).expect("serializes");
        assert_eq!(text.matches("\"id\"").count(), 1, "{text}");
        let back: AppStatus = serde_json::from_value(v).expect("parses");
        assert_eq!(back, a);
    }

    #[test]
    fn an_app_with_health_checks_converges_only_once_healthy() {
        let mut a = app_status(json!({"healthChecks": [{"protocol": "TCP"}]}));
        assert!(!a.is_converged(), "running but not healthy");
        a.tasks_healthy = 2;
        assert!(a.is_converged());
        a.deployments.push(DeploymentId { id: "d".into() });
        assert!(!a.is_converged(), "a deployment runs");
        let plain = app_status(json!({"healthChecks": []}));
        assert!(plain.is_converged());
    }

    #[test]
    fn a_queue_entry_says_why_its_instances_wait() {
        let e = QueueEntry {
            app: app_status(json!({})),
            count: 1,
            delay: QueueDelay {
                time_left_seconds: 0,
                overdue: true,
            },
            processed_offers_summary: OffersSummary {
                processed_offers_count: 4,
                unused_offers_count: 4,
                reject_summary_last_offers: vec![RejectSummary {
                    reason: "InsufficientMemory".into(),
                    declined: 4,
                    processed: 4,
                }],
            },
            last_unused_offer_reason: Some("insufficient mem: need 4096, agent has 512".into()),
        };
        let r = e.reasons();
        assert!(r.contains("need 4096"), "{r}");
        assert!(r.contains("InsufficientMemory (4 offers)"), "{r}");
    }

    #[test]
    fn an_error_body_reads_marathons_422_and_409() {
        let e: ErrorBody = serde_json::from_value(json!({"message": "Object is not valid",
            "details": [{"path": "/mem", "errors": ["must be a number >= 0"]}]}))
        .expect("422 body");
        assert_eq!(
            e.to_string(),
            "Object is not valid; /mem: must be a number >= 0"
        );
        let e: ErrorBody = serde_json::from_value(
            json!({"message": "App is locked", "deployments": [{"id": "d1"}]}),
        )
        .expect("409 body");
        assert_eq!(e.deployments, vec![DeploymentId { id: "d1".into() }]);
    }
}
