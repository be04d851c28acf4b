//! Agent maintenance by the operator (Mesos 1.9+ operator calls): `DRAIN_AGENT`,
//! `DEACTIVATE_AGENT`, `REACTIVATE_AGENT`.
//!
//! ```text
//! DEACTIVATE_AGENT ──▶ deactivated (no offers) ─────────────────────────────┐
//! DRAIN_AGENT ──▶ deactivated + DRAINING: offers rescinded, tasks killed     ├─ REACTIVATE_AGENT ─▶ offered again
//!                   └─ no live task left ─▶ DRAINED ─(mark_gone)─▶ agent gone (never re-admitted)
//! ```
//! A deactivated or draining agent keeps its tasks' resources in the totals but gets no offers (the
//! allocator reports it with a reason, counted in `/metrics` and shown by `GET_ALLOCATION`). Drain state is stored in the registry, so a
//! master restart resumes the drain when the agent re-registers. Tasks killed by a drain end in
//! `TASK_KILLED` (`TASK_GONE_BY_OPERATOR` with `mark_gone`) with reason `REASON_AGENT_DRAINING`.

use super::command::CallError;
use super::state::State;
use super::tables::Change;
use crate::proto::{TaskState, TaskStatus};
use dccore_api::operator::Call;
use tokio::time::Instant;

// The drain types are the operator API's own (one definition on both sides of the wire); the master
// keeps them in the registry too.
pub use dccore_api::operator::{DrainConfig, DrainInfo, DrainState};

/// An operator call that changes an agent.
#[derive(Clone, Debug, PartialEq)]
pub enum AgentCall {
    /// `DRAIN_AGENT`.
    Drain {
        /// The agent.
        agent_id: String,
        /// Grace bound and `mark_gone`.
        config: DrainConfig,
    },
    /// `DEACTIVATE_AGENT`.
    Deactivate {
        /// The agent.
        agent_id: String,
    },
    /// `REACTIVATE_AGENT`: offers again; a drain (running or finished) is cancelled.
    Reactivate {
        /// The agent.
        agent_id: String,
    },
}

impl AgentCall {
    /// The maintenance part of a typed operator call; `None` for the other calls.
    pub fn of(call: &Call) -> Option<AgentCall> {
        Some(match call {
            Call::DrainAgent { drain_agent: d } => AgentCall::Drain {
                agent_id: d.agent_id.value.clone(),
                config: DrainConfig {
                    max_grace_period: d.max_grace_period.clone(),
                    mark_gone: d.mark_gone,
                },
            },
            Call::DeactivateAgent { deactivate_agent } => AgentCall::Deactivate {
                agent_id: deactivate_agent.agent_id.value.clone(),
            },
            Call::ReactivateAgent { reactivate_agent } => AgentCall::Reactivate {
                agent_id: reactivate_agent.agent_id.value.clone(),
            },
            _ => return None,
        })
    }

    fn agent_id(&self) -> &str {
        match self {
            AgentCall::Drain { agent_id, .. }
            | AgentCall::Deactivate { agent_id }
            | AgentCall::Reactivate { agent_id } => agent_id,
        }
    }
}

impl State {
    /// Applies an operator call to an agent.
    pub(super) fn agent_call(&mut self, call: AgentCall, now: Instant) -> Result<(), CallError> {
        let id = call.agent_id().to_string();
        let Some(a) = self.tables.agents.get(&id) else {
            let why = if self.tables.agents.is_gone(&id) {
                "was drained and marked gone"
            } else {
                "is not known to the master"
            };
            return Err(CallError::BadRequest(format!("agent {id} {why}")));
        };
        match call {
            AgentCall::Drain { config, .. } => {
                if a.drain.as_ref().is_some_and(|d| d.config == config) {
                    // Same drain again (a retried `dccore drain`): nothing new to do.
                    return Ok(());
                }
                tracing::info!(agent = %id, mark_gone = config.mark_gone, max_grace = ?config.max_grace(), "draining agent");
                self.apply(
                    Change::AgentDraining {
                        agent_id: id.clone(),
                        config,
                    },
                    now,
                );
                self.rescind_agent_offers(&id);
                self.kill_for_drain(&id);
                self.check_drain(&id, now);
            }
            AgentCall::Deactivate { .. } => {
                tracing::info!(agent = %id, "agent deactivated");
                self.apply(
                    Change::AgentDeactivated {
                        agent_id: id.clone(),
                    },
                    now,
                );
                self.rescind_agent_offers(&id);
            }
            AgentCall::Reactivate { .. } => {
                tracing::info!(agent = %id, "agent reactivated");
                self.apply(Change::AgentReactivated { agent_id: id }, now);
            }
        }
        Ok(())
    }

    /// Asks a reachable draining agent to kill every live task (an unreachable one is asked when
    /// it re-registers).
    pub(super) fn kill_for_drain(&mut self, agent_id: &str) {
        let Some(a) = self.tables.agents.reachable(agent_id) else {
            return;
        };
        let Some(drain) = &a.drain else {
            return;
        };
        if drain.state != DrainState::Draining {
            return;
        }
        let cap = drain.config.max_grace().map(|d| d.as_secs_f64());
        for key in self.tables.tasks.on_agent(agent_id) {
            if self
                .tables
                .tasks
                .get(&key)
                .is_some_and(|t| !t.state.is_terminal())
            {
                self.kill_on_agent(&key, cap);
            }
        }
    }

    /// A kill confirmed by a draining agent carries the drain's reason, and with `mark_gone`
    /// becomes `TASK_GONE_BY_OPERATOR` (Mesos rewrites it the same way).
    pub(super) fn drain_rewrite(&self, agent_id: &str, status: &mut TaskStatus) {
        let Some(drain) = self
            .tables
            .agents
            .get(agent_id)
            .and_then(|a| a.drain.as_ref())
        else {
            return;
        };
        if status.state == TaskState::Killed {
            if drain.config.mark_gone {
                status.state = TaskState::GoneByOperator;
            }
            status.reason = Some("REASON_AGENT_DRAINING".into());
        }
    }

    /// Moves draining agents with no live task left to DRAINED.
    pub(super) fn check_drains(&mut self, now: Instant) {
        let draining: Vec<String> = self
            .tables
            .agents
            .iter()
            .filter(|a| {
                a.drain
                    .as_ref()
                    .is_some_and(|d| d.state == DrainState::Draining)
            })
            .map(|a| a.info.id.clone())
            .collect();
        for id in draining {
            self.check_drain(&id, now);
        }
    }

    fn check_drain(&mut self, id: &str, now: Instant) {
        let live = self
            .tables
            .tasks
            .on_agent(id)
            .iter()
            .filter_map(|k| self.tables.tasks.get(k))
            .any(|t| !t.state.is_terminal());
        if live {
            return;
        }
        let Some(drain) = self.tables.agents.get(id).and_then(|a| a.drain.as_ref()) else {
            return;
        };
        if drain.state == DrainState::Drained {
            return;
        }
        let mark_gone = drain.config.mark_gone;
        self.apply(
            Change::AgentDrained {
                agent_id: id.to_string(),
            },
            now,
        );
        tracing::info!(agent = %id, mark_gone, "agent drained");
        if mark_gone {
            // Removed for good: it leaves the cluster's totals and may not register again.
            self.rescind_agent_offers(id);
            self.apply(
                Change::AgentRemoved {
                    agent_id: id.to_string(),
                },
                now,
            );
            tracing::info!(agent = %id, "agent marked gone");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn drain_agent_call_parses_in_mesos_shape() {
        let call: Call = serde_json::from_value(json!({"type": "DRAIN_AGENT", "drain_agent": {
            "agent_id": {"value": "a1"},
            "max_grace_period": {"nanoseconds": 2_000_000_000i64},
            "mark_gone": true,
        }}))
        .expect("a DRAIN_AGENT call");
        let parsed = AgentCall::of(&call);
        let Some(AgentCall::Drain { agent_id, config }) = parsed else {
            panic!("{parsed:?}");
        };
        assert_eq!(agent_id, "a1");
        assert!(config.mark_gone);
        assert_eq!(config.max_grace(), Some(Duration::from_secs(2)));
    }

    #[test]
    fn get_calls_are_not_maintenance() {
        assert!(AgentCall::of(&Call::GetAgents).is_none());
        assert_eq!(
            AgentCall::of(&Call::reactivate_agent("a1")),
            Some(AgentCall::Reactivate {
                agent_id: "a1".into()
            })
        );
    }

    #[test]
    fn drain_info_serializes_like_mesos() {
        let d = DrainInfo {
            state: DrainState::Draining,
            config: DrainConfig::default(),
        };
        assert_eq!(
            serde_json::to_value(d).expect("plain data"),
            json!({"state": "DRAINING", "config": {"mark_gone": false}})
        );
    }
}
