//! The cluster state that a replica of the master must agree on, as owned tables, and the one
//! way it changes: a [`Change`] run by [`apply`].
//!
//! ```text
//! owner loop decides ──Change──▶ apply(&mut Tables, &Change) ──▶ Applied (holds, deliveries, registry?)
//!                                   ├─ agents.rs      agents, operator state, gone agents
//!                                   ├─ frameworks.rs  frameworks, torn-down ids
//!                                   └─ tasks.rs       tasks, agent index, pending updates, completed
//! ```
//! Each table keeps its fields private; its mutating methods are visible only inside this
//! module, so nothing but [`apply`] changes cluster state. Offers, connections, heartbeat times
//! and the allocator's bookkeeping are this master process's and live outside (`state.rs`).

mod agents;
mod change;
mod frameworks;
mod tasks;
#[cfg(test)]
mod tests;

pub use agents::{AgentInfo, AgentRec, Agents};
pub use change::{Applied, Change, apply};
pub use frameworks::{FrameworkRec, Frameworks};
pub use tasks::{Hold, Recorded, TaskKey, TaskRec, Tasks};

use super::registry::{Registry, StoredAgent, StoredFramework};
use crate::proto::scheduler::FrameworkInfo;
use std::time::Duration;

/// The replicated state of the master. Serialised whole in the replicas' snapshots
/// (`crate::replica`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tables {
    /// Agents.
    pub agents: Agents,
    /// Frameworks.
    pub frameworks: Frameworks,
    /// Tasks.
    pub tasks: Tasks,
}

impl Tables {
    /// Empty tables with the master's retention limits.
    pub fn new(max_completed_frameworks: usize, max_completed_tasks_per_framework: usize) -> Self {
        Tables {
            agents: Agents::default(),
            frameworks: Frameworks::new(max_completed_frameworks),
            tasks: Tasks::new(max_completed_tasks_per_framework),
        }
    }

    /// Loads the registry into these (empty) tables: agents wait, unreachable, for their
    /// re-registration; frameworks wait, disconnected, for their failover. `failover` bounds
    /// each framework's failover timeout as a new subscription would.
    pub fn recover(&mut self, registry: &Registry, failover: impl Fn(&FrameworkInfo) -> Duration) {
        for a in &registry.agents {
            let info = AgentInfo {
                id: a.id.clone(),
                hostname: a.hostname.clone(),
                url: a.url.clone(),
                total: a.resources.clone(),
                attributes: a.attributes.clone(),
                public: a.public,
                version: String::new(),
                task_user: None,
            };
            self.agents
                .recover(info, a.deactivated, a.drain_info.clone());
        }
        for id in &registry.gone_agents {
            self.agents.recover_gone(id.clone());
        }
        for f in &registry.frameworks {
            let info: FrameworkInfo = serde_json::from_value(f.info.clone()).unwrap_or_default();
            let failover_timeout = failover(&info);
            self.frameworks.upsert(FrameworkRec {
                id: f.id.clone(),
                info_raw: f.info.clone(),
                info,
                principal: f.principal.clone(),
                failover_timeout,
                registered_time: 0.0,
            });
        }
        self.frameworks
            .recover_removed(&registry.removed_frameworks);
    }

    /// What the registry stores of these tables.
    pub fn registry(&self) -> Registry {
        Registry {
            agents: self
                .agents
                .iter()
                .map(|a| StoredAgent {
                    id: a.info.id.clone(),
                    hostname: a.info.hostname.clone(),
                    url: a.info.url.clone(),
                    resources: a.info.total.clone(),
                    attributes: a.info.attributes.clone(),
                    public: a.info.public,
                    deactivated: a.deactivated,
                    drain_info: a.drain.clone(),
                })
                .collect(),
            frameworks: self
                .frameworks
                .iter()
                .map(|f| StoredFramework {
                    id: f.id.clone(),
                    info: f.info_raw.clone(),
                    principal: f.principal.clone(),
                })
                .collect(),
            removed_frameworks: self.frameworks.removed().cloned().collect(),
            gone_agents: self.agents.gone().cloned().collect(),
        }
    }
}
