//! Typed changes of cluster state and the one function that applies them.
//!
//! [`apply`] is deterministic: no clock, no I/O, no randomness. Whatever a change needs from the
//! outside (the registration time, a status update's uuid and timestamp) is in the change, so a
//! follower that applies the same changes in the same order reaches the same [`Tables`] (the
//! shape of hashicorp/raft's `FSM.Apply` and openraft's state machine). The owner loop decides
//! what changes, applies it, then acts on the [`Applied`] outcome (allocator bookkeeping, event
//! delivery, the registry write): a follower ignores the outcome.

use super::super::drain::DrainConfig;
use super::{AgentInfo, FrameworkRec, Hold, Tables, TaskKey, TaskRec};
use crate::proto::{TaskState, TaskStatus};
use serde::{Deserialize, Serialize};

/// One change of cluster state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Change {
    /// An agent registered or re-registered: reachable, its tasks' holds released (they are
    /// rebuilt from what it reports). Refused (no effect) for a gone agent.
    AgentRegistered {
        /// What it said.
        agent: AgentInfo,
        /// When (seconds since the epoch).
        registered_time: f64,
    },
    /// An agent missed its heartbeats.
    AgentUnreachable {
        /// The agent.
        agent_id: String,
    },
    /// `DEACTIVATE_AGENT`.
    AgentDeactivated {
        /// The agent.
        agent_id: String,
    },
    /// `DRAIN_AGENT`: deactivated and DRAINING.
    AgentDraining {
        /// The agent.
        agent_id: String,
        /// How.
        config: DrainConfig,
    },
    /// A draining agent has no live task left: DRAINED.
    AgentDrained {
        /// The agent.
        agent_id: String,
    },
    /// `REACTIVATE_AGENT`: offered again, any drain cancelled.
    AgentReactivated {
        /// The agent.
        agent_id: String,
    },
    /// A drained agent marked gone: removed, never admitted again.
    AgentRemoved {
        /// The agent.
        agent_id: String,
    },
    /// A framework subscribed for the first time.
    FrameworkAdded {
        /// The record.
        framework: FrameworkRec,
    },
    /// A framework failed over: its info (roles, failover timeout, ...) as re-sent.
    FrameworkFailedOver {
        /// The record (its first registration time is kept).
        framework: FrameworkRec,
    },
    /// A framework was torn down: its tasks end (`TASK_KILLED` unless terminal) and complete,
    /// its id may never subscribe again.
    FrameworkRemoved {
        /// The framework.
        framework_id: String,
    },
    /// A task was added (launched from an offer, refused before launch, or adopted from a
    /// re-registering agent). `hold`: its resources count as used from now on.
    TaskAdded {
        /// The task.
        task: TaskRec,
        /// Count its resources.
        hold: bool,
    },
    /// A re-registering agent reports a known task in `state`: its resources count again.
    TaskReported {
        /// Framework.
        framework_id: String,
        /// Task.
        task_id: String,
        /// The state the agent reports.
        state: TaskState,
    },
    /// A status update (from an agent or the master itself).
    TaskStatusUpdated {
        /// Framework.
        framework_id: String,
        /// The update, uuid and timestamp included.
        status: TaskStatus,
    },
    /// The framework acknowledged the update with `uuid`.
    TaskStatusAcknowledged {
        /// Framework.
        framework_id: String,
        /// Task.
        task_id: String,
        /// The update's uuid.
        uuid: String,
    },
    /// Killed while its agent was unreachable: to be killed when the agent re-registers.
    TaskDoomed {
        /// Framework.
        framework_id: String,
        /// Task.
        task_id: String,
    },
    /// The framework's own health check of the task (services framework, HTTP/TCP) changed.
    TaskHealthReported {
        /// Framework.
        framework_id: String,
        /// Task.
        task_id: String,
        /// Passed.
        healthy: bool,
    },
    /// The kill of a doomed task was ordered.
    TaskKillOrdered {
        /// Framework.
        framework_id: String,
        /// Task.
        task_id: String,
    },
}

/// What applying a change did, for the owner loop to act on.
#[derive(Debug, Default, PartialEq)]
pub struct Applied {
    /// The change took effect (false: it did not apply, e.g. to an unknown agent).
    pub effective: bool,
    /// Resources tasks started holding.
    pub held: Vec<Hold>,
    /// Resources tasks stopped holding.
    pub released: Vec<Hold>,
    /// What the persistent registry stores changed: write it.
    pub registry: bool,
    /// A task's next update heads its queue: deliver it.
    pub deliver_head: Option<TaskKey>,
    /// An update that needs no acknowledgement: deliver it once.
    pub deliver_once: Option<(String, TaskStatus)>,
    /// Tasks that moved to the completed list.
    pub completed: Vec<TaskKey>,
}

impl Applied {
    fn effective(effective: bool) -> Self {
        Applied {
            effective,
            registry: effective,
            ..Default::default()
        }
    }
}

/// Applies one change to the tables.
pub fn apply(t: &mut Tables, change: &Change) -> Applied {
    match change {
        Change::AgentRegistered {
            agent,
            registered_time,
        } => {
            let Some(changed) = t.agents.register(agent.clone(), *registered_time) else {
                return Applied::default();
            };
            let released = t
                .tasks
                .on_agent(&agent.id)
                .iter()
                .filter_map(|k| t.tasks.release(k))
                .collect();
            Applied {
                effective: true,
                registry: changed,
                released,
                ..Default::default()
            }
        }
        Change::AgentUnreachable { agent_id } => Applied {
            registry: false,
            ..Applied::effective(t.agents.set_unreachable(agent_id))
        },
        Change::AgentDeactivated { agent_id } => Applied::effective(t.agents.deactivate(agent_id)),
        Change::AgentDraining { agent_id, config } => {
            Applied::effective(t.agents.start_drain(agent_id, config.clone()))
        }
        Change::AgentDrained { agent_id } => Applied::effective(t.agents.finish_drain(agent_id)),
        Change::AgentReactivated { agent_id } => Applied::effective(t.agents.reactivate(agent_id)),
        Change::AgentRemoved { agent_id } => {
            t.agents.remove_for_good(agent_id);
            Applied::effective(true)
        }
        Change::FrameworkAdded { framework } | Change::FrameworkFailedOver { framework } => {
            t.frameworks.upsert(framework.clone());
            Applied::effective(true)
        }
        Change::FrameworkRemoved { framework_id } => {
            let Some(forgotten) = t.frameworks.remove(framework_id) else {
                return Applied::default();
            };
            let released = t.tasks.end_framework(framework_id);
            for old in forgotten {
                t.tasks.forget_framework(&old);
            }
            Applied {
                released,
                ..Applied::effective(true)
            }
        }
        Change::TaskAdded { task, hold } => {
            let key = (task.framework_id.clone(), task.info.task_id.value.clone());
            if !t.tasks.insert(task.clone()) {
                return Applied::default();
            }
            let held = if *hold { t.tasks.hold(&key) } else { None };
            Applied {
                effective: true,
                held: held.into_iter().collect(),
                ..Default::default()
            }
        }
        Change::TaskReported {
            framework_id,
            task_id,
            state,
        } => {
            let key = (framework_id.clone(), task_id.clone());
            if !t.tasks.contains(&key) {
                return Applied::default();
            }
            t.tasks.set_state(&key, *state);
            Applied {
                effective: true,
                held: t.tasks.hold(&key).into_iter().collect(),
                ..Default::default()
            }
        }
        Change::TaskStatusUpdated {
            framework_id,
            status,
        } => {
            let key = (framework_id.clone(), status.task_id.value.clone());
            if !t.tasks.contains(&key) {
                return Applied::default();
            }
            let r = t.tasks.record_status(&key, status.clone());
            Applied {
                effective: true,
                released: r.released.into_iter().collect(),
                deliver_head: (r.new_head && !r.completed).then(|| key.clone()),
                deliver_once: r.unreliable.map(|s| (framework_id.clone(), s)),
                completed: r.completed.then_some(key).into_iter().collect(),
                ..Default::default()
            }
        }
        Change::TaskStatusAcknowledged {
            framework_id,
            task_id,
            uuid,
        } => {
            let key = (framework_id.clone(), task_id.clone());
            let Some((more, completed)) = t.tasks.acknowledge(&key, uuid) else {
                return Applied::default();
            };
            Applied {
                effective: true,
                deliver_head: (more && !completed).then(|| key.clone()),
                completed: completed.then_some(key).into_iter().collect(),
                ..Default::default()
            }
        }
        Change::TaskDoomed {
            framework_id,
            task_id,
        } => {
            t.tasks.doom(&(framework_id.clone(), task_id.clone()));
            Applied {
                effective: true,
                ..Default::default()
            }
        }
        Change::TaskHealthReported {
            framework_id,
            task_id,
            healthy,
        } => Applied {
            effective: t
                .tasks
                .set_healthy(&(framework_id.clone(), task_id.clone()), *healthy),
            ..Default::default()
        },
        Change::TaskKillOrdered {
            framework_id,
            task_id,
        } => Applied {
            effective: t.tasks.undoom(&(framework_id.clone(), task_id.clone())),
            ..Default::default()
        },
    }
}
