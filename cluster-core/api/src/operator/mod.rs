//! The operator API (`POST /api/v1`) in the JSON mapping of Mesos' `master.proto`: the [`Call`]s
//! an operator sends and the [`Response`]s the master answers, field for field what dccore puts
//! on the wire (dccore's own additions, such as an agent's `url` and `task_user`, are marked).
//!
//! ```text
//! Call::GetHealth ──▶ Response::GetHealth     { get_health: GetHealth }
//! Call::GetAgents ──▶ Response::GetAgents     { get_agents: GetAgents { agents, recovered_agents, unreachable_agents } }
//! Call::GetFrameworks ▶ Response::GetFrameworks { get_frameworks: GetFrameworks }
//! Call::GetTasks  ──▶ Response::GetTasks      { get_tasks: GetTasks { tasks, unreachable_tasks, completed_tasks } }
//! Call::GetState  ──▶ Response::GetState      { get_state: GetState { get_tasks, get_executors, get_frameworks, get_agents } }
//! Call::GetAllocation ▶ Response::GetAllocation { get_allocation: GetAllocation } (dccore extension)
//! Call::DrainAgent / DeactivateAgent / ReactivateAgent / Teardown ──▶ 200 with an empty body
//! ```
//! Fields the master always writes are required when reading, so an answer that lacks one is
//! reported as unreadable rather than read as empty; `Option` fields are written as `null` and
//! read back from `null` or absence.

use crate::allocation::GetAllocation;
use crate::proto::{Attribute, CommandInfo, DurationInfo, Id, Resource, TaskState, TaskStatus};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

mod replica;
pub use replica::{AddMaster, MasterRef, RemoveMaster, ReplicaMember, ReplicaStatus};

/// An operator call: `{"type": "GET_AGENTS"}`, `{"type": "DRAIN_AGENT", "drain_agent": {...}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Call {
    /// `GET_HEALTH`: whether the master is healthy.
    GetHealth,
    /// `GET_STATE`: tasks, executors, frameworks and agents at once.
    GetState,
    /// `GET_AGENTS`: the agents, reachable or not.
    GetAgents,
    /// `GET_FRAMEWORKS`: the frameworks the caller may see.
    GetFrameworks,
    /// `GET_TASKS`: the tasks the caller may see.
    GetTasks,
    /// `GET_ALLOCATION` (dccore extension): why the last allocation cycle offered agents to
    /// nobody and passed frameworks over.
    GetAllocation,
    /// `DRAIN_AGENT`: deactivate an agent and kill its tasks.
    DrainAgent {
        /// Which agent, and how.
        drain_agent: DrainAgent,
    },
    /// `DEACTIVATE_AGENT`: no more offers of an agent (its tasks keep running).
    DeactivateAgent {
        /// Which agent.
        deactivate_agent: AgentRef,
    },
    /// `REACTIVATE_AGENT`: offers again; a drain (running or finished) is cancelled.
    ReactivateAgent {
        /// Which agent.
        reactivate_agent: AgentRef,
    },
    /// `TEARDOWN`: remove a framework and kill its tasks.
    Teardown {
        /// Which framework.
        teardown: Teardown,
    },
    /// `ADD_MASTER` (dccore extension, replicated masters; operator token, leader only): add
    /// a master to the group as a learner, wait until it has caught up, make it a voter.
    AddMaster {
        /// Which master.
        add_master: AddMaster,
    },
    /// `REMOVE_MASTER` (dccore extension): remove a master from the group (never the leader).
    RemoveMaster {
        /// Which master.
        remove_master: RemoveMaster,
    },
}

impl Call {
    /// Every call `type` dccore answers, as on the wire.
    pub const TYPES: [&'static str; 12] = [
        "GET_HEALTH",
        "GET_STATE",
        "GET_AGENTS",
        "GET_FRAMEWORKS",
        "GET_TASKS",
        "GET_ALLOCATION",
        "DRAIN_AGENT",
        "DEACTIVATE_AGENT",
        "REACTIVATE_AGENT",
        "TEARDOWN",
        "ADD_MASTER",
        "REMOVE_MASTER",
    ];

    /// The call's `type` as on the wire (`GET_AGENTS`), for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Call::GetHealth => "GET_HEALTH",
            Call::GetState => "GET_STATE",
            Call::GetAgents => "GET_AGENTS",
            Call::GetFrameworks => "GET_FRAMEWORKS",
            Call::GetTasks => "GET_TASKS",
            Call::GetAllocation => "GET_ALLOCATION",
            Call::DrainAgent { .. } => "DRAIN_AGENT",
            Call::DeactivateAgent { .. } => "DEACTIVATE_AGENT",
            Call::ReactivateAgent { .. } => "REACTIVATE_AGENT",
            Call::Teardown { .. } => "TEARDOWN",
            Call::AddMaster { .. } => "ADD_MASTER",
            Call::RemoveMaster { .. } => "REMOVE_MASTER",
        }
    }

    /// `DRAIN_AGENT` of agent `id`: kill grace bounded by `max_grace` (when given); with
    /// `mark_gone` the agent is removed for good once drained.
    pub fn drain_agent(id: &str, max_grace: Option<Duration>, mark_gone: bool) -> Call {
        Call::DrainAgent {
            drain_agent: DrainAgent {
                agent_id: Id::new(id),
                max_grace_period: max_grace.map(|g| DurationInfo {
                    nanoseconds: g.as_nanos().min(i64::MAX as u128) as i64,
                }),
                mark_gone,
            },
        }
    }

    /// `REACTIVATE_AGENT` of agent `id`.
    pub fn reactivate_agent(id: &str) -> Call {
        Call::ReactivateAgent {
            reactivate_agent: AgentRef {
                agent_id: Id::new(id),
            },
        }
    }

    /// `DEACTIVATE_AGENT` of agent `id`.
    pub fn deactivate_agent(id: &str) -> Call {
        Call::DeactivateAgent {
            deactivate_agent: AgentRef {
                agent_id: Id::new(id),
            },
        }
    }
}

/// `Call.DrainAgent`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrainAgent {
    /// The agent.
    pub agent_id: Id,
    /// Upper bound of the tasks' kill grace periods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_grace_period: Option<DurationInfo>,
    /// Remove the agent for good once drained (its tasks end `TASK_GONE_BY_OPERATOR`).
    #[serde(default)]
    pub mark_gone: bool,
}

/// `Call.DeactivateAgent` and `Call.ReactivateAgent`: just the agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRef {
    /// The agent.
    pub agent_id: Id,
}

/// `Call.Teardown`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Teardown {
    /// The framework.
    pub framework_id: Id,
}

/// The master's answer to a query call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(clippy::large_enum_variant)] // answers are read once and dropped; boxing buys nothing
pub enum Response {
    /// `GET_HEALTH`.
    GetHealth {
        /// The answer.
        get_health: GetHealth,
    },
    /// `GET_AGENTS`.
    GetAgents {
        /// The answer.
        get_agents: GetAgents,
    },
    /// `GET_FRAMEWORKS`.
    GetFrameworks {
        /// The answer.
        get_frameworks: GetFrameworks,
    },
    /// `GET_TASKS`.
    GetTasks {
        /// The answer.
        get_tasks: GetTasks,
    },
    /// `GET_STATE`.
    GetState {
        /// The answer.
        get_state: GetState,
    },
    /// `GET_ALLOCATION` (dccore extension).
    GetAllocation {
        /// The answer.
        get_allocation: GetAllocation,
    },
}

impl Response {
    /// The answer's `type` as on the wire, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Response::GetHealth { .. } => "GET_HEALTH",
            Response::GetAgents { .. } => "GET_AGENTS",
            Response::GetFrameworks { .. } => "GET_FRAMEWORKS",
            Response::GetTasks { .. } => "GET_TASKS",
            Response::GetState { .. } => "GET_STATE",
            Response::GetAllocation { .. } => "GET_ALLOCATION",
        }
    }
}

/// `Response.GetHealth`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetHealth {
    /// Whether the master is healthy.
    pub healthy: bool,
}

/// `TimeInfo`: a point in time, nanoseconds since the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeInfo {
    /// Nanoseconds since the epoch.
    pub nanoseconds: i64,
}

impl TimeInfo {
    /// From seconds since the epoch (the master's clock readings).
    pub fn from_secs(secs: f64) -> TimeInfo {
        TimeInfo {
            nanoseconds: (secs * 1e9) as i64,
        }
    }
}

/// `Response.GetAgents`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GetAgents {
    /// Registered, reachable agents.
    pub agents: Vec<Agent>,
    /// Agents known from the registry after a master restart that have not re-registered yet.
    pub recovered_agents: Vec<RecoveredAgent>,
    /// Agents that stopped heartbeating (their tasks are unreachable).
    pub unreachable_agents: Vec<Agent>,
}

impl GetAgents {
    /// Every agent with a full entry: reachable ones first, then unreachable ones.
    pub fn all(&self) -> impl Iterator<Item = &Agent> {
        self.agents.iter().chain(&self.unreachable_agents)
    }
}

/// `Response.GetAgents.Agent`, with dccore's additions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    /// Id, hostname, port, resources, attributes.
    pub agent_info: AgentInfo,
    /// Whether its resources are offered: reachable and neither deactivated nor draining.
    pub active: bool,
    /// Deactivated by the operator (`DEACTIVATE_AGENT` or a drain).
    pub deactivated: bool,
    /// The drain, if one was asked for.
    #[serde(default)]
    pub drain_info: Option<DrainInfo>,
    /// The agent's dccore version.
    pub version: String,
    /// Mesos' `slave(1)@host:port`.
    pub pid: String,
    /// dccore: the URL the master reaches the agent at (what it registered with).
    pub url: String,
    /// dccore: a public agent (resources reserved for `slave_public`).
    pub public: bool,
    /// dccore: the user every task on this agent runs as, when the agent is not root; `null`
    /// when each task runs as the user the rules decide.
    #[serde(default)]
    pub task_user: Option<String>,
    /// dccore: why `task_user` is set, for the operator.
    #[serde(default)]
    pub task_user_note: Option<String>,
    /// When it registered.
    pub registered_time: TimeInfo,
    /// Everything it has.
    pub total_resources: Vec<Resource>,
    /// What its tasks use.
    pub allocated_resources: Vec<Resource>,
    /// What is offered to frameworks now.
    pub offered_resources: Vec<Resource>,
}

impl Agent {
    /// The agent's id.
    pub fn id(&self) -> &str {
        &self.agent_info.id.value
    }
}

/// `AgentInfo`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// Agent id.
    pub id: Id,
    /// Its hostname.
    pub hostname: String,
    /// The port of its URL.
    pub port: u64,
    /// Its resources (as `total_resources`).
    pub resources: Vec<Resource>,
    /// Its attributes (`rack:r1`).
    pub attributes: Vec<Attribute>,
}

/// An entry of `recovered_agents`: what the registry remembers of an agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveredAgent {
    /// Agent id.
    pub id: Id,
    /// Its hostname.
    pub hostname: String,
}

/// Mesos `DrainState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DrainState {
    /// Tasks are being killed.
    #[serde(rename = "DRAINING")]
    Draining,
    /// No live task is left on the agent.
    #[serde(rename = "DRAINED")]
    Drained,
}

impl DrainState {
    /// Mesos' name of the state, as on the wire.
    pub fn name(self) -> &'static str {
        match self {
            DrainState::Draining => "DRAINING",
            DrainState::Drained => "DRAINED",
        }
    }
}

/// Mesos `DrainConfig`: how the operator asked the agent to be drained.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DrainConfig {
    /// Upper bound of the tasks' kill grace periods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_grace_period: Option<DurationInfo>,
    /// Remove the agent for good once drained; its tasks end `TASK_GONE_BY_OPERATOR`.
    #[serde(default)]
    pub mark_gone: bool,
}

impl DrainConfig {
    /// The grace bound, if any (negative values count as zero).
    pub fn max_grace(&self) -> Option<Duration> {
        self.max_grace_period
            .as_ref()
            .map(|d| Duration::from_nanos(d.nanoseconds.max(0) as u64))
    }
}

/// Mesos `DrainInfo`, shown in `GET_AGENTS` as `drain_info` and kept in the master's registry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DrainInfo {
    /// Where the drain is.
    pub state: DrainState,
    /// How it was asked for.
    pub config: DrainConfig,
}

/// `Response.GetFrameworks`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GetFrameworks {
    /// Subscribed (or recovered) frameworks.
    pub frameworks: Vec<Framework>,
    /// Removed frameworks (operator only; of those only the id is kept).
    pub completed_frameworks: Vec<CompletedFramework>,
}

/// `Response.GetFrameworks.Framework`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Framework {
    /// Its name.
    pub name: String,
    /// The `FrameworkInfo` it subscribed with, as it sent it (plus the id the master gave it).
    pub framework_info: FrameworkInfoEcho,
    /// Whether its event stream is open.
    pub active: bool,
    /// Whether its event stream is open.
    pub connected: bool,
    /// Known from the registry only: it has not subscribed again since the master started.
    pub recovered: bool,
    /// When it subscribed.
    pub registered_time: TimeInfo,
    /// What its tasks use.
    pub allocated_resources: Vec<Resource>,
    /// What is offered to it now.
    pub offered_resources: Vec<Resource>,
}

/// An entry of `completed_frameworks`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompletedFramework {
    /// Just `{"id": ...}`.
    pub framework_info: FrameworkInfoEcho,
}

/// A framework's `FrameworkInfo` echoed back as it was sent: the fields dccore reads are typed,
/// the rest (capabilities, labels, webui_url, ...: whatever the framework library put there) is
/// kept in `other` as sent, so nothing a framework said is lost on the way back.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FrameworkInfoEcho {
    /// The id the master gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Id>,
    /// Framework name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The Unix user it asked its tasks to run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The principal it claimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Legacy single role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// MULTI_ROLE roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// Every other field, as the framework sent it.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// `Response.GetTasks`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GetTasks {
    /// Live tasks (neither terminal nor unreachable), by framework and task id.
    pub tasks: Vec<Task>,
    /// Tasks on unreachable agents.
    pub unreachable_tasks: Vec<Task>,
    /// Terminal tasks (including those whose last update is not acknowledged yet).
    pub completed_tasks: Vec<Task>,
}

impl GetTasks {
    /// Every task: live, unreachable, completed.
    pub fn all(&self) -> impl Iterator<Item = &Task> {
        self.tasks
            .iter()
            .chain(&self.unreachable_tasks)
            .chain(&self.completed_tasks)
    }
}

/// `Task`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Its name.
    pub name: String,
    /// Its id, unique within the framework.
    pub task_id: Id,
    /// Its framework.
    pub framework_id: Id,
    /// The agent it runs (or ran) on.
    pub agent_id: Id,
    /// Latest state.
    pub state: TaskState,
    /// What it uses.
    pub resources: Vec<Resource>,
    /// Its status updates so far.
    pub statuses: Vec<TaskStatus>,
    /// What it runs.
    #[serde(default)]
    pub command: Option<CommandInfo>,
}

/// `Response.GetExecutors` (dccore runs tasks without executors: always empty).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GetExecutors {
    /// The executors.
    pub executors: Vec<Executor>,
}

/// `Response.GetExecutors.Executor`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Executor {
    /// `ExecutorInfo` (only the id).
    pub executor_info: ExecutorInfo,
    /// The agent it runs on.
    pub agent_id: Id,
}

/// `ExecutorInfo` (only the id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorInfo {
    /// Executor id.
    pub executor_id: Id,
}

/// `Response.GetState`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GetState {
    /// As GET_TASKS.
    pub get_tasks: GetTasks,
    /// As GET_EXECUTORS.
    pub get_executors: GetExecutors,
    /// As GET_FRAMEWORKS.
    pub get_frameworks: GetFrameworks,
    /// As GET_AGENTS.
    pub get_agents: GetAgents,
}

#[cfg(test)]
mod tests;
