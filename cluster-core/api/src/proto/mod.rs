//! Wire types in the JSON encoding of Mesos' v1 protobufs (`mesos.proto`, `scheduler.proto`).
//!
//! Only the fields dccore reads or writes are typed; unknown fields a client sends are ignored, and
//! the framework's `FrameworkInfo` is also kept verbatim so the operator API can echo it back.
//! [`Resources`] is the internal, arithmetic form of a Mesos resource list.

mod base64;
pub mod internal;
mod resources;
pub mod scheduler;
pub mod validate;

pub use base64::{decode as base64_decode, encode as base64_encode};
pub use resources::{PortRange, Resources, parse_attributes};

use serde::{Deserialize, Serialize};

/// Errors in data a client, config file or command line sent us.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// A resource string like `cpus:4;mem:8192` has a malformed part.
    #[error("bad resource {part:?}: {why}")]
    BadResource {
        /// The `name:value` part that failed.
        part: String,
        /// What would have been valid.
        why: String,
    },
    /// An attribute string like `rack:r1` has a malformed part.
    #[error("bad attribute {part:?}: expected name:value")]
    BadAttribute {
        /// The part that failed.
        part: String,
    },
}

/// A Mesos id message (`FrameworkID`, `AgentID`, `OfferID`, `TaskID`): `{"value": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Id {
    /// The id itself.
    pub value: String,
}

impl Id {
    /// Wraps a string as an id.
    pub fn new(value: impl Into<String>) -> Self {
        Id {
            value: value.into(),
        }
    }
}

/// `Value.Scalar`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scalar {
    /// The amount.
    pub value: f64,
}

/// `Value.Range` (inclusive).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Range {
    /// First value.
    pub begin: u64,
    /// Last value (inclusive).
    pub end: u64,
}

/// `Value.Ranges`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ranges {
    /// The ranges.
    #[serde(default)]
    pub range: Vec<Range>,
}

/// `Resource.AllocationInfo`: the role an offered resource is allocated to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AllocationInfo {
    /// The role.
    pub role: String,
}

/// `Resource.ReservationInfo` (only static reservations are produced).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReservationInfo {
    /// `STATIC` or `DYNAMIC`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// The role reserved for.
    #[serde(default)]
    pub role: Option<String>,
}

/// One Mesos `Resource`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    /// `cpus`, `mem`, `disk`, `ports`, ...
    pub name: String,
    /// `SCALAR`, `RANGES`, `SET` or `TEXT`.
    #[serde(rename = "type", default = "scalar_type")]
    pub kind: String,
    /// Set when `type` is `SCALAR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scalar: Option<Scalar>,
    /// Set when `type` is `RANGES`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranges: Option<Ranges>,
    /// Deprecated pre-reservation-refinement role (`*` = unreserved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Reservations (public agents: a static reservation for `slave_public`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reservations: Vec<ReservationInfo>,
    /// The role the resource is allocated to, set in offers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_info: Option<AllocationInfo>,
}

fn scalar_type() -> String {
    "SCALAR".into()
}

/// `Value.Text`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Text {
    /// The text.
    pub value: String,
}

/// A Mesos `Attribute` (only `TEXT` attributes are produced).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attribute {
    /// Attribute name, e.g. `rack`.
    pub name: String,
    /// Always `TEXT` here.
    #[serde(rename = "type")]
    pub kind: String,
    /// The value.
    pub text: Text,
}

/// `Environment.Variable`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Variable {
    /// Name.
    pub name: String,
    /// Value.
    #[serde(default)]
    pub value: String,
}

/// `Environment`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    /// Variables set for the task.
    #[serde(default)]
    pub variables: Vec<Variable>,
}

/// `CommandInfo`: what the agent runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CommandInfo {
    /// With `shell` (the default) a shell command line, else the program path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Run `value` through `/bin/sh -c` (Mesos default: true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<bool>,
    /// Arguments when `shell` is false (`arguments[0]` is argv[0]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arguments: Vec<String>,
    /// Extra environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    /// Unix user to run as. Frameworks may ask for one (the rules decide); the master always
    /// fills in the user it decided on before the task reaches the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// `DurationInfo`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DurationInfo {
    /// Nanoseconds.
    pub nanoseconds: i64,
}

/// `KillPolicy`: how long to wait between SIGTERM and SIGKILL.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KillPolicy {
    /// Grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<DurationInfo>,
}

/// `TaskInfo` as sent by a framework in a LAUNCH operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// Human-readable name.
    #[serde(default)]
    pub name: String,
    /// Framework-chosen id, unique within the framework.
    pub task_id: Id,
    /// The agent of the offer.
    pub agent_id: Id,
    /// Resources the task uses.
    #[serde(default)]
    pub resources: Vec<Resource>,
    /// What to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandInfo>,
    /// Kill grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_policy: Option<KillPolicy>,
    /// A health check the agent runs next to the task (see [`HealthCheckInfo`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // Boxed: most tasks have none, and every task record and change carries the field.
    pub health_check: Option<Box<HealthCheckInfo>>,
}

/// `HealthCheck` (Mesos v1 JSON), run by the agent next to the task: `COMMAND` (a command exits
/// 0), `HTTP` (a GET on the task's port at the agent's loopback answers 2xx/3xx or one of
/// `statuses`) or `TCP` (a connection to the task's port opens).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthCheckInfo {
    /// `COMMAND`, `HTTP` or `TCP`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The command of a `COMMAND` check, run with `/bin/sh -c` as the task's user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandInfo>,
    /// Where an `HTTP` check asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheckInfo>,
    /// Where a `TCP` check connects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCheckInfo>,
    /// Seconds before the first check (Mesos default 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_seconds: Option<f64>,
    /// Seconds between checks (Mesos default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<f64>,
    /// A check slower than this fails (Mesos default 20; 0 = no timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    /// Failures in a row after which the task is killed (Mesos default 3; 0 = never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    /// Seconds from the task's start during which failures are not counted, until the first
    /// success (Mesos default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<f64>,
}

/// `HealthCheck.HTTPCheckInfo`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HttpCheckInfo {
    /// `http` (default) or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// The task's port, on the agent's loopback.
    pub port: u32,
    /// Request path (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Status codes that count as healthy; empty: 200-399 (Mesos' rule).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<u32>,
}

/// `HealthCheck.TCPCheckInfo`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TcpCheckInfo {
    /// The task's port, on the agent's loopback.
    pub port: u32,
}

/// What a [`HealthCheckInfo`] asks the agent to do, once its type and fields agree.
#[derive(Clone, Debug, PartialEq)]
pub enum CheckProbe {
    /// `/bin/sh -c VALUE`.
    Command(String),
    /// `GET path` at `127.0.0.1:port`.
    Http {
        /// `https` or `http`.
        https: bool,
        /// The port.
        port: u16,
        /// The path, starting with `/`.
        path: String,
        /// Healthy codes; empty: 200-399.
        statuses: Vec<u32>,
    },
    /// A connection to `127.0.0.1:port`.
    Tcp {
        /// The port.
        port: u16,
    },
}

impl HealthCheckInfo {
    /// The check's type: `type`, or the one its fields imply (Mesos requires `type`; older
    /// frameworks sent a bare `command`).
    fn kind(&self) -> Option<&str> {
        self.kind.as_deref().or(if self.command.is_some() {
            Some("COMMAND")
        } else if self.http.is_some() {
            Some("HTTP")
        } else if self.tcp.is_some() {
            Some("TCP")
        } else {
            None
        })
    }

    /// What the agent runs, or why the check cannot be run (an unknown type, a type without its
    /// fields, a port out of range).
    pub fn probe(&self) -> Result<CheckProbe, String> {
        let port = |p: u32| {
            u16::try_from(p)
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("health_check port {p} is not in 1-65535"))
        };
        match self.kind() {
            Some("COMMAND") => self
                .command
                .as_ref()
                .and_then(|c| c.value.clone())
                .map(CheckProbe::Command)
                .ok_or_else(|| "a COMMAND health_check needs command.value".to_string()),
            Some("HTTP") => {
                let h = self
                    .http
                    .as_ref()
                    .ok_or_else(|| "an HTTP health_check needs http.port".to_string())?;
                let https = match h.scheme.as_deref().unwrap_or("http") {
                    "http" => false,
                    "https" => true,
                    s => return Err(format!("health_check http.scheme {s:?}: http or https")),
                };
                let path = h.path.clone().unwrap_or_else(|| "/".into());
                // It goes into a request line as it is.
                if path
                    .chars()
                    .any(|c| c.is_ascii_whitespace() || c.is_control())
                {
                    return Err(format!(
                        "health_check http.path {path:?} has spaces or control characters"
                    ));
                }
                Ok(CheckProbe::Http {
                    https,
                    port: port(h.port)?,
                    path: if path.starts_with('/') {
                        path
                    } else {
                        format!("/{path}")
                    },
                    statuses: h.statuses.clone(),
                })
            }
            Some("TCP") => {
                let t = self
                    .tcp
                    .as_ref()
                    .ok_or_else(|| "a TCP health_check needs tcp.port".to_string())?;
                Ok(CheckProbe::Tcp {
                    port: port(t.port)?,
                })
            }
            Some(k) => Err(format!("health_check type {k:?}: COMMAND, HTTP or TCP")),
            None => Err("health_check needs a type: COMMAND, HTTP or TCP".into()),
        }
    }
}

/// The Mesos task states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub enum TaskState {
    /// Accepted by the master, not yet started by the agent.
    #[serde(rename = "TASK_STAGING")]
    Staging,
    /// Being started by the agent.
    #[serde(rename = "TASK_STARTING")]
    Starting,
    /// Running.
    #[serde(rename = "TASK_RUNNING")]
    Running,
    /// Being killed.
    #[serde(rename = "TASK_KILLING")]
    Killing,
    /// Exited with status 0.
    #[serde(rename = "TASK_FINISHED")]
    Finished,
    /// Exited non-zero or could not start.
    #[serde(rename = "TASK_FAILED")]
    Failed,
    /// Killed on request.
    #[serde(rename = "TASK_KILLED")]
    Killed,
    /// Invalid task description.
    #[serde(rename = "TASK_ERROR")]
    Error,
    /// Lost (legacy state).
    #[serde(rename = "TASK_LOST")]
    Lost,
    /// Dropped before it was launched.
    #[serde(rename = "TASK_DROPPED")]
    Dropped,
    /// Its agent is unreachable; it may come back.
    #[serde(rename = "TASK_UNREACHABLE")]
    Unreachable,
    /// Known to be gone.
    #[serde(rename = "TASK_GONE")]
    Gone,
    /// Killed because the operator drained its agent with `mark_gone` (the agent is leaving for good).
    #[serde(rename = "TASK_GONE_BY_OPERATOR")]
    GoneByOperator,
    /// State not known to the master.
    #[serde(rename = "TASK_UNKNOWN")]
    Unknown,
}

impl TaskState {
    /// Terminal states never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Finished
                | TaskState::Failed
                | TaskState::Killed
                | TaskState::Error
                | TaskState::Lost
                | TaskState::Dropped
                | TaskState::Gone
                | TaskState::GoneByOperator
        )
    }

    /// The Mesos name, e.g. `TASK_RUNNING` (metrics labels).
    pub fn name(self) -> &'static str {
        match self {
            TaskState::Staging => "TASK_STAGING",
            TaskState::Starting => "TASK_STARTING",
            TaskState::Running => "TASK_RUNNING",
            TaskState::Killing => "TASK_KILLING",
            TaskState::Finished => "TASK_FINISHED",
            TaskState::Failed => "TASK_FAILED",
            TaskState::Killed => "TASK_KILLED",
            TaskState::Error => "TASK_ERROR",
            TaskState::Lost => "TASK_LOST",
            TaskState::Dropped => "TASK_DROPPED",
            TaskState::Unreachable => "TASK_UNREACHABLE",
            TaskState::Gone => "TASK_GONE",
            TaskState::GoneByOperator => "TASK_GONE_BY_OPERATOR",
            TaskState::Unknown => "TASK_UNKNOWN",
        }
    }
}

/// `TaskStatus`: one status update.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    /// The task.
    pub task_id: Id,
    /// New state.
    pub state: TaskState,
    /// Human-readable detail (exit code, reason a task did not fit, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `SOURCE_MASTER`, `SOURCE_AGENT` or `SOURCE_EXECUTOR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `REASON_*` code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<Id>,
    /// Seconds since the epoch.
    #[serde(default)]
    pub timestamp: f64,
    /// Base64 of 16 random bytes; present iff the update must be acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// The task's health, set on updates of a task with a health check (Mesos: the first
    /// result, then every change, reason `REASON_TASK_HEALTH_CHECK_STATUS_UPDATED`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
}

impl TaskStatus {
    /// A new update that must be acknowledged (it carries a fresh uuid).
    pub fn new(task_id: Id, state: TaskState, source: &str, agent_id: Option<Id>) -> Self {
        TaskStatus {
            task_id,
            state,
            message: None,
            source: Some(source.into()),
            reason: None,
            agent_id,
            timestamp: now_secs(),
            uuid: Some(base64_encode(uuid::Uuid::new_v4().as_bytes())),
            healthy: None,
        }
    }

    /// Sets the health.
    pub fn with_healthy(mut self, healthy: bool) -> Self {
        self.healthy = Some(healthy);
        self
    }

    /// Sets the message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Sets the reason code.
    pub fn with_reason(mut self, reason: &str) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// Wall-clock seconds since the epoch, for timestamps shown to users (never for decisions).
pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `Offer`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    /// Offer id.
    pub id: Id,
    /// The framework it is for.
    pub framework_id: Id,
    /// The agent it is on.
    pub agent_id: Id,
    /// The agent's hostname.
    pub hostname: String,
    /// Offered resources.
    pub resources: Vec<Resource>,
    /// Agent attributes.
    #[serde(default)]
    pub attributes: Vec<Attribute>,
}

#[cfg(test)]
mod check_tests {
    use super::*;

    fn check(v: serde_json::Value) -> HealthCheckInfo {
        serde_json::from_value(v).expect("a health check")
    }

    #[test]
    fn a_check_says_what_the_agent_runs_or_why_it_cannot() {
        let c =
            check(serde_json::json!({"type": "HTTP", "http": {"port": 8080, "path": "health"}}));
        assert_eq!(
            c.probe(),
            Ok(CheckProbe::Http {
                https: false,
                port: 8080,
                path: "/health".into(),
                statuses: vec![]
            })
        );
        let c = check(serde_json::json!({"type": "TCP", "tcp": {"port": 22}}));
        assert_eq!(c.probe(), Ok(CheckProbe::Tcp { port: 22 }));
        // A bare command (frameworks before `type`) is a COMMAND check.
        let c = check(serde_json::json!({"command": {"value": "true"}}));
        assert_eq!(c.probe(), Ok(CheckProbe::Command("true".into())));
        for (bad, says) in [
            (serde_json::json!({"type": "HTTP"}), "http.port"),
            (
                serde_json::json!({"type": "TCP", "tcp": {"port": 70000}}),
                "1-65535",
            ),
            (
                serde_json::json!({"type": "HTTP", "http": {"port": 80, "scheme": "ftp"}}),
                "http or https",
            ),
            (
                serde_json::json!({"type": "HTTP", "http": {"port": 80, "path": "/a b\r\nX: y"}}),
                "spaces",
            ),
            (serde_json::json!({"type": "GRPC"}), "COMMAND, HTTP or TCP"),
            (serde_json::json!({}), "needs a type"),
        ] {
            let e = check(bad.clone()).probe().expect_err("refused");
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
