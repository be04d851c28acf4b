//! dccore's own master <-> agent messages (JSON over HTTP). Not a Mesos API. The agent calls the
//! master with its agent token (or the operator token); the master calls the agent with the
//! per-run `callback_token` the agent sent in its registration.
//!
//! Agent -> master: `POST /internal/v1/agents/register` ([`RegisterAgent`] -> [`Registered`]),
//! `POST /internal/v1/agents/heartbeat` ([`Heartbeat`]; 404 means "register again"),
//! `POST /internal/v1/agents/status` ([`StatusMessage`]; 200 means the master has it).
//! Master -> agent: `POST /internal/v1/launch` ([`LaunchTasks`]), `POST /internal/v1/kill` ([`KillTask`]).

use super::{Attribute, Id, Resource, TaskInfo, TaskState, TaskStatus};
use serde::{Deserialize, Serialize};

/// A task an agent reports when it (re-)registers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReportedTask {
    /// The framework that launched it.
    pub framework_id: Id,
    /// Its description.
    pub task: TaskInfo,
    /// Its current state on the agent.
    pub state: TaskState,
}

/// Agent registration (first time: no `agent_id`; afterwards the checkpointed one).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RegisterAgent {
    /// Set on re-registration.
    #[serde(default)]
    pub agent_id: Option<Id>,
    /// Hostname shown in offers.
    pub hostname: String,
    /// Base URL where the agent's HTTP server listens, e.g. `http://127.0.0.1:5051`.
    pub url: String,
    /// Total resources.
    pub resources: Vec<Resource>,
    /// Attributes.
    #[serde(default)]
    pub attributes: Vec<Attribute>,
    /// Public agent (resources reserved for `slave_public`).
    #[serde(default)]
    pub public: bool,
    /// Tasks the agent is running (non-terminal) — the master adopts or kills them.
    #[serde(default)]
    pub tasks: Vec<ReportedTask>,
    /// dccore version of the agent.
    #[serde(default)]
    pub version: String,
    /// Bearer token the master must use to call this agent: a random secret of this agent run,
    /// so that the master needs no cluster-wide token to reach agents and an agent credential
    /// opens no other agent. Absent from older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_token: Option<String>,
    /// Set by an agent that is not root: every task on it runs as this user, whatever it asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_user: Option<String>,
}

/// The master's answer to a registration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Registered {
    /// The agent's id (new or confirmed).
    pub agent_id: Id,
    /// Tasks the agent must kill (their framework is gone or replaced them), each named with
    /// its framework: two frameworks may use the same task id.
    #[serde(default)]
    pub kill_tasks: Vec<KillTask>,
    /// Older masters' form of `kill_tasks` (task ids only). Not sent any more; an agent acts on
    /// an entry only when exactly one of its tasks has that id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kill: Vec<Id>,
}

/// A heartbeat.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The agent.
    pub agent_id: Id,
}

/// The master's answer to a heartbeat (200): how it sees the agent now. The agent records it in
/// its registration file, so that a probe on the node can tell "registered, and offered" from what
/// this agent process itself was told, not from the master's memory of an earlier process.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAck {
    /// The operator deactivated the agent (`DEACTIVATE_AGENT`, or a drain).
    #[serde(default)]
    pub deactivated: bool,
    /// The drain's state (`DRAINING`/`DRAINED`), if the agent is being or was drained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<String>,
}

/// A task status update from an agent.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusMessage {
    /// The agent.
    pub agent_id: Id,
    /// The task's framework.
    pub framework_id: Id,
    /// The update.
    pub status: TaskStatus,
}

/// Master -> agent: run tasks (those of one ACCEPT).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LaunchTasks {
    /// The framework.
    pub framework_id: Id,
    /// The tasks.
    pub tasks: Vec<TaskInfo>,
}

/// Master -> agent: kill a task.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KillTask {
    /// The framework.
    pub framework_id: Id,
    /// The task.
    pub task_id: Id,
    /// Upper bound of the kill grace period in seconds (an operator drain's `max_grace_period`);
    /// the task's own kill policy or the agent's default applies when shorter or unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_grace_secs: Option<f64>,
}
