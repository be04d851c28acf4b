//! The master's interface: one enum of commands, each answered through its own oneshot.

use super::drain::AgentCall;
use super::views::View;
use crate::proto::internal::{HeartbeatAck, RegisterAgent, Registered, StatusMessage};
use crate::proto::scheduler::{Call, Event, FrameworkInfo};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// Why a scheduler call was refused. Client errors map to 4xx.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Malformed or inconsistent call.
    #[error("{0}")]
    BadRequest(String),
    /// The authenticated principal may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The master is shutting down.
    #[error("master is shutting down")]
    Unavailable,
    /// This master does not lead the replicated group (or lost the lead before the call's
    /// changes were committed): the caller retries with the leader, whose URL is given if known.
    #[error("this master is not the leader{}; retry", .0.as_deref().map(|u| format!(" (the leader is {u})")).unwrap_or_default())]
    NotLeader(Option<String>),
}

/// A new subscription: the stream's id and the events to write to it (SUBSCRIBED comes first).
#[derive(Debug)]
pub struct Subscription {
    /// Framework id.
    pub framework_id: String,
    /// The `Mesos-Stream-Id`.
    pub stream_id: String,
    /// Events for the stream.
    pub events: mpsc::Receiver<Event>,
    /// Cancelled when the framework fell [`STREAM_BUFFER`](super::STREAM_BUFFER) events
    /// behind: the writer sends ERROR and ends the stream instead of losing events unnoticed.
    pub overflow: tokio_util::sync::CancellationToken,
}

/// Operator API queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperatorQuery {
    /// `GET_HEALTH`.
    Health,
    /// `GET_STATE`.
    State,
    /// `GET_AGENTS`.
    Agents,
    /// `GET_FRAMEWORKS`.
    Frameworks,
    /// `GET_TASKS`.
    Tasks,
    /// `GET_ALLOCATION` (dccore extension): why agents and frameworks got no offer in the
    /// last allocation cycle.
    Allocation,
}

impl OperatorQuery {
    /// The query a typed operator call asks; `None` for the calls that change something.
    pub fn of(call: &dccore_api::operator::Call) -> Option<Self> {
        use dccore_api::operator::Call;
        Some(match call {
            Call::GetHealth => OperatorQuery::Health,
            Call::GetState => OperatorQuery::State,
            Call::GetAgents => OperatorQuery::Agents,
            Call::GetFrameworks => OperatorQuery::Frameworks,
            Call::GetTasks => OperatorQuery::Tasks,
            Call::GetAllocation => OperatorQuery::Allocation,
            Call::DrainAgent { .. }
            | Call::DeactivateAgent { .. }
            | Call::ReactivateAgent { .. }
            | Call::Teardown { .. }
            | Call::AddMaster { .. }
            | Call::RemoveMaster { .. } => return None,
        })
    }
}

/// Who reads the operator API: what they are shown depends on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Viewer {
    /// The operator token: everything.
    Operator,
    /// A framework principal: its own frameworks and tasks, and those of the users the
    /// `view_frameworks` / `view_tasks` rules let it see.
    Principal(String),
}

/// Counters for `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct MetricsSnapshot {
    /// Agents currently registered and reachable.
    pub agents_reachable: u64,
    /// Agents known but unreachable (or not yet re-registered).
    pub agents_unreachable: u64,
    /// Frameworks with an open subscription.
    pub frameworks_connected: u64,
    /// All known frameworks.
    pub frameworks_total: u64,
    /// Outstanding offers.
    pub offers_outstanding: u64,
    /// Offers made since start.
    pub offers_total: u64,
    /// Tasks by state: current tasks plus completed ones since start.
    pub tasks_by_state: Vec<(&'static str, u64)>,
    /// Allocation cycles since start.
    pub allocation_cycles: u64,
    /// Duration of the last allocation cycle.
    pub allocation_last_seconds: f64,
    /// Sum of all allocation cycle durations.
    pub allocation_seconds_total: f64,
    /// Status updates waiting for acknowledgement.
    pub status_updates_unacked: u64,
    /// Agents not offered in an allocation cycle, summed over all cycles, by reason label
    /// (every reason listed, from zero).
    pub agents_not_offered: Vec<(&'static str, u64)>,
    /// Frameworks passed over for an agent, summed over all cycles, by reason label.
    pub frameworks_passed_over: Vec<(&'static str, u64)>,
}

/// Everything the owner task can be asked to do.
#[derive(Debug)]
pub enum MasterCommand {
    /// A framework subscribes (or fails over).
    Subscribe {
        /// `framework_info` as sent.
        info_raw: Value,
        /// Its parsed fields.
        info: FrameworkInfo,
        /// `framework_id` of the call (failover), if any.
        framework_id: Option<String>,
        /// Authenticated principal (Basic), if any.
        principal: Option<String>,
        /// Answer.
        reply: oneshot::Sender<Result<Subscription, CallError>>,
    },
    /// Any other scheduler call.
    Call {
        /// The call.
        call: Call,
        /// Authenticated principal (Basic), if any: it must be the framework's.
        principal: Option<String>,
        /// `Mesos-Stream-Id` header.
        stream_id: Option<String>,
        /// Answer.
        reply: oneshot::Sender<Result<(), CallError>>,
    },
    /// The built-in services framework's own (HTTP/TCP) health check result of one of its
    /// tasks, so that discovery publishes only healthy instances (no Mesos call does this; not
    /// reachable over HTTP).
    TaskHealth {
        /// Framework.
        framework_id: String,
        /// Task.
        task_id: String,
        /// Passed.
        healthy: bool,
    },
    /// A subscription stream ended (client went away or was replaced).
    StreamClosed {
        /// Framework.
        framework_id: String,
        /// The stream that ended.
        stream_id: String,
    },
    /// An agent (re-)registers.
    RegisterAgent {
        /// The message.
        msg: Box<RegisterAgent>,
        /// Answer (refused for an agent drained with `mark_gone`).
        reply: oneshot::Sender<Result<Registered, CallError>>,
    },
    /// An agent heartbeat; the answer is `None` if the agent must register again.
    Heartbeat {
        /// Agent id.
        agent_id: String,
        /// Answer: how the master sees the agent.
        reply: oneshot::Sender<Option<HeartbeatAck>>,
    },
    /// A status update from an agent.
    AgentStatus {
        /// The message.
        msg: Box<StatusMessage>,
        /// True once the update is recorded; false if the agent must register first.
        reply: oneshot::Sender<bool>,
    },
    /// Pushing a launch to an agent failed.
    LaunchFailed {
        /// Framework.
        framework_id: String,
        /// The tasks of the failed request.
        task_ids: Vec<String>,
        /// Why.
        error: String,
    },
    /// Operator API query.
    Operator {
        /// Which.
        query: OperatorQuery,
        /// Who asks.
        viewer: Viewer,
        /// Answer: a snapshot; [`View::to_json`] makes the Mesos JSON response.
        reply: oneshot::Sender<View>,
    },
    /// Operator call that changes an agent (drain, deactivate, reactivate).
    Agent {
        /// The call.
        call: AgentCall,
        /// Answer.
        reply: oneshot::Sender<Result<(), CallError>>,
    },
    /// Operator `TEARDOWN` of a framework: its own principal, a principal the
    /// `teardown_frameworks` rules allow, or the operator.
    Teardown {
        /// The framework.
        framework_id: String,
        /// Who asks: `None` is the operator.
        principal: Option<String>,
        /// Answer.
        reply: oneshot::Sender<Result<(), CallError>>,
    },
    /// Metrics snapshot.
    Metrics {
        /// Answer.
        reply: oneshot::Sender<MetricsSnapshot>,
    },
    /// A silent agent's URL refused the connection (see [`super::MasterConfig::agent_probe_after`]).
    AgentRefused {
        /// The agent.
        agent_id: String,
        /// When the probe was sent: a heartbeat heard since then wins.
        probed_at: tokio::time::Instant,
        /// What the connection said.
        error: String,
    },
}
