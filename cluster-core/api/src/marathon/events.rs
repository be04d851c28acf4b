//! What `GET /v2/events` streams: Marathon's event bus as server-sent events, one
//! `event: <eventType>` / `data: <json>` pair per event. The JSON is Marathon's (camelCase,
//! `eventType` and `timestamp` in every event), so clients written for Marathon's event stream
//! (load balancers, marathon-python's `event_stream()`) read it unchanged.
//!
//! | eventType | when |
//! |---|---|
//! | `event_stream_attached` | first, to the client that attached |
//! | `api_post_event` | an app was created or replaced through the API |
//! | `deployment_info` | a deployment started |
//! | `deployment_step_success` | a step of a running deployment finished |
//! | `deployment_success` / `deployment_failed` | a deployment finished / was replaced, cancelled or rolled back |
//! | `status_update_event` | an instance's task changed state |
//! | `health_status_changed_event` | an instance's health changed |

use super::answers::DeploymentStep;
use crate::proto::TaskState;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One event, tagged by `eventType` on the wire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "eventType")]
pub enum MarathonEvent {
    /// A client attached to the stream (sent to it first).
    #[serde(rename = "event_stream_attached", rename_all = "camelCase")]
    EventStreamAttached {
        /// The client's address as the master saw it.
        remote_address: String,
        /// ISO-8601.
        timestamp: String,
    },
    /// An app definition was posted (`POST /v2/apps`, `PUT /v2/apps/{id}`, `PATCH`).
    #[serde(rename = "api_post_event", rename_all = "camelCase")]
    ApiPostEvent {
        /// The client's address, if known.
        client_ip: String,
        /// The path the definition was sent to.
        uri: String,
        /// The definition, as sent (with Marathon's defaults).
        app_definition: Map<String, Value>,
        /// ISO-8601.
        timestamp: String,
    },
    /// A deployment started.
    #[serde(rename = "deployment_info", rename_all = "camelCase")]
    DeploymentInfo {
        /// Its plan.
        plan: DeploymentPlan,
        /// The step running now.
        current_step: DeploymentStep,
        /// ISO-8601.
        timestamp: String,
    },
    /// A step of a deployment finished.
    #[serde(rename = "deployment_step_success", rename_all = "camelCase")]
    DeploymentStepSuccess {
        /// The deployment's plan.
        plan: DeploymentPlan,
        /// The step that finished.
        current_step: DeploymentStep,
        /// ISO-8601.
        timestamp: String,
    },
    /// A deployment finished: every instance of its version runs (and is healthy).
    #[serde(rename = "deployment_success", rename_all = "camelCase")]
    DeploymentSuccess {
        /// The deployment's id.
        id: String,
        /// Its plan.
        plan: DeploymentPlan,
        /// ISO-8601.
        timestamp: String,
    },
    /// A deployment ended without finishing: replaced by a forced change, cancelled, rolled
    /// back at its deadline, or its app removed.
    #[serde(rename = "deployment_failed", rename_all = "camelCase")]
    DeploymentFailed {
        /// The deployment's id.
        id: String,
        /// Its plan.
        plan: DeploymentPlan,
        /// dccore: why, in words.
        #[serde(default)]
        reason: String,
        /// ISO-8601.
        timestamp: String,
    },
    /// An instance's task changed state.
    #[serde(rename = "status_update_event", rename_all = "camelCase")]
    StatusUpdateEvent {
        /// The agent (Marathon's name).
        slave_id: String,
        /// The task.
        task_id: String,
        /// Its new state (`TASK_RUNNING`, ...).
        task_status: TaskState,
        /// The status update's message.
        message: String,
        /// The app.
        app_id: String,
        /// The agent's hostname.
        host: String,
        /// Container addresses (none: tasks use the host's network).
        ip_addresses: Vec<Value>,
        /// Host ports.
        ports: Vec<u64>,
        /// The app version the task was launched with.
        version: String,
        /// ISO-8601.
        timestamp: String,
    },
    /// An instance's health changed (its first check result, or a change of it).
    #[serde(rename = "health_status_changed_event", rename_all = "camelCase")]
    HealthStatusChangedEvent {
        /// The app.
        app_id: String,
        /// The task.
        task_id: String,
        /// The instance (the task id: one task per instance).
        instance_id: String,
        /// The app version the task was launched with.
        version: String,
        /// Whether its health check passes now.
        alive: bool,
        /// ISO-8601.
        timestamp: String,
    },
}

impl MarathonEvent {
    /// The `eventType`: the SSE `event:` name, and what `?event_type=` filters on.
    pub fn event_type(&self) -> &'static str {
        match self {
            MarathonEvent::EventStreamAttached { .. } => "event_stream_attached",
            MarathonEvent::ApiPostEvent { .. } => "api_post_event",
            MarathonEvent::DeploymentInfo { .. } => "deployment_info",
            MarathonEvent::DeploymentStepSuccess { .. } => "deployment_step_success",
            MarathonEvent::DeploymentSuccess { .. } => "deployment_success",
            MarathonEvent::DeploymentFailed { .. } => "deployment_failed",
            MarathonEvent::StatusUpdateEvent { .. } => "status_update_event",
            MarathonEvent::HealthStatusChangedEvent { .. } => "health_status_changed_event",
        }
    }
}

/// A deployment's plan as events carry it: the root group before and after, and the steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeploymentPlan {
    /// The deployment's id.
    pub id: String,
    /// The version it deploys.
    pub version: String,
    /// The root group before, holding the affected app's previous definition (if any).
    pub original: PlanGroup,
    /// The root group after, holding the affected app's new definition (none: removed).
    pub target: PlanGroup,
    /// Its steps, in order.
    pub steps: Vec<DeploymentStep>,
}

/// A group inside a [`DeploymentPlan`]: app definitions without counters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanGroup {
    /// The group's path (`/`).
    pub id: String,
    /// App definitions, as sent (with Marathon's defaults).
    pub apps: Vec<Map<String, Value>>,
    /// Subgroups (none: a plan's groups are flat).
    #[serde(default)]
    pub groups: Vec<PlanGroup>,
    /// Pods (never any).
    #[serde(default)]
    pub pods: Vec<Value>,
    /// Dependencies (never any).
    #[serde(default)]
    pub dependencies: Vec<String>,
    /// The version.
    pub version: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_carries_its_type_and_camel_case_fields_as_marathon_sends_them() {
        let e = MarathonEvent::HealthStatusChangedEvent {
            app_id: "/prod/web".into(),
            task_id: "prod_web.1".into(),
            instance_id: "prod_web.1".into(),
            version: "2026-12-02T03:04:05.500Z".into(),
            alive: true,
            timestamp: "2026-12-02T03:04:06.000Z".into(),
        };
        let v = serde_json::to_value(&e).expect("serializes");
        assert_eq!(v["eventType"], "health_status_changed_event");
        assert_eq!(v["eventType"], e.event_type());
        assert_eq!(v["appId"], "/prod/web");
        assert_eq!(v["instanceId"], "prod_web.1");
        assert_eq!(v["alive"], true);
        let back: MarathonEvent = serde_json::from_value(v).expect("reads back");
        assert_eq!(back, e);
    }

    #[test]
    fn a_status_update_names_the_task_state_as_mesos_does() {
        let e = MarathonEvent::StatusUpdateEvent {
            slave_id: "a1".into(),
            task_id: "t".into(),
            task_status: TaskState::Killed,
            message: String::new(),
            app_id: "/web".into(),
            host: "127.0.0.1".into(),
            ip_addresses: Vec::new(),
            ports: vec![19200],
            version: "v".into(),
            timestamp: "ts".into(),
        };
        let v = serde_json::to_value(&e).expect("serializes");
        assert_eq!(v["taskStatus"], "TASK_KILLED");
        assert_eq!(v["slaveId"], "a1");
        assert_eq!(v["ports"][0], 19200);
    }
}
