//! dccore's `GET_ALLOCATION` answer (an extension of the operator API): why the last allocation
//! cycle offered agents to nobody and passed frameworks over. The reasons are defined here once:
//! the master's allocator produces them, `/metrics` labels them, this answer carries them.
//!
//! ```text
//! {"type": "GET_ALLOCATION", "get_allocation": {"allocation_cycles": 42,
//!   "agents_not_offered": {"DRAINING": 1},
//!   "unoffered_agents": [{"agent_id": {"value": "…-S0"}, "reason": "DRAINING", "message": "…",
//!                         "frameworks_refusing": {"inactive": 0, …}}],
//!   "passed_over_frameworks": [{"framework_id": {"value": "…-0000"}, "reason": "SUPPRESSED", "agents": 4}]}}
//! ```

use crate::proto::Id;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Why an agent was offered to no framework.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AgentReason {
    /// Its heartbeats stopped (or it has not re-registered since the master started).
    Unreachable,
    /// `DEACTIVATE_AGENT`.
    Deactivated,
    /// `DRAIN_AGENT`.
    Draining,
    /// Everything on it is offered or used already.
    NothingFree,
    /// No framework is subscribed.
    NoFramework,
    /// Every framework refused it (see [`UnofferedAgent::frameworks_refusing`]).
    NoEligibleFramework,
}

impl AgentReason {
    /// Every reason, for counters that start at zero.
    pub const ALL: [AgentReason; 6] = [
        AgentReason::Unreachable,
        AgentReason::Deactivated,
        AgentReason::Draining,
        AgentReason::NothingFree,
        AgentReason::NoFramework,
        AgentReason::NoEligibleFramework,
    ];

    /// The metrics label (`reason="draining"`).
    pub fn label(self) -> &'static str {
        match self {
            AgentReason::Unreachable => "unreachable",
            AgentReason::Deactivated => "deactivated",
            AgentReason::Draining => "draining",
            AgentReason::NothingFree => "nothing_free",
            AgentReason::NoFramework => "no_framework",
            AgentReason::NoEligibleFramework => "no_eligible_framework",
        }
    }

    /// What it means, for people.
    pub fn message(self) -> &'static str {
        match self {
            AgentReason::Unreachable => "agent not offered: unreachable",
            AgentReason::Deactivated => "agent not offered: deactivated by the operator",
            AgentReason::Draining => "agent not offered: draining",
            AgentReason::NothingFree => "agent not offered: nothing left to offer",
            AgentReason::NoFramework => "no framework is subscribed",
            AgentReason::NoEligibleFramework => "no eligible framework",
        }
    }
}

/// Why a framework next in line for an agent was passed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FrameworkReason {
    /// Disconnected (within its failover timeout).
    Inactive,
    /// `SUPPRESS`ed until `REVIVE`.
    Suppressed,
    /// It declined this agent and the refuse filter has not expired.
    RefuseFilter,
    /// A public agent, and the framework is not in role `slave_public`.
    RoleMismatch,
}

impl FrameworkReason {
    /// Every reason, for counters that start at zero.
    pub const ALL: [FrameworkReason; 4] = [
        FrameworkReason::Inactive,
        FrameworkReason::Suppressed,
        FrameworkReason::RefuseFilter,
        FrameworkReason::RoleMismatch,
    ];

    /// The metrics label (`reason="suppressed"`).
    pub fn label(self) -> &'static str {
        match self {
            FrameworkReason::Inactive => "inactive",
            FrameworkReason::Suppressed => "suppressed",
            FrameworkReason::RefuseFilter => "refuse_filter",
            FrameworkReason::RoleMismatch => "role_mismatch",
        }
    }
}

/// How many frameworks refused an agent, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skips {
    /// Disconnected.
    pub inactive: u32,
    /// Suppressed.
    pub suppressed: u32,
    /// Refuse filter active.
    pub refuse_filter: u32,
    /// Not in role `slave_public` (public agent).
    pub role_mismatch: u32,
}

impl Skips {
    /// Counts one refusal.
    pub fn count(&mut self, why: FrameworkReason) {
        match why {
            FrameworkReason::Inactive => self.inactive += 1,
            FrameworkReason::Suppressed => self.suppressed += 1,
            FrameworkReason::RefuseFilter => self.refuse_filter += 1,
            FrameworkReason::RoleMismatch => self.role_mismatch += 1,
        }
    }
}

/// `GET_ALLOCATION`: the last allocation cycle's reasons.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GetAllocation {
    /// Allocation cycles since the master started.
    pub allocation_cycles: u64,
    /// Agents not offered in the last cycle, by reason (unreachable and fully used ones only
    /// counted here).
    pub agents_not_offered: BTreeMap<AgentReason, u64>,
    /// Agents with free resources that were offered to nobody, and why.
    pub unoffered_agents: Vec<UnofferedAgent>,
    /// Frameworks next in line that were passed over (only those the caller may see).
    pub passed_over_frameworks: Vec<PassedOverFramework>,
}

/// An entry of `unoffered_agents`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnofferedAgent {
    /// The agent.
    pub agent_id: Id,
    /// Why it was offered to nobody.
    pub reason: AgentReason,
    /// The reason in words, with the frameworks' refusals counted.
    pub message: String,
    /// With [`AgentReason::NoEligibleFramework`]: why the frameworks refused it.
    pub frameworks_refusing: Skips,
}

/// An entry of `passed_over_frameworks`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PassedOverFramework {
    /// The framework.
    pub framework_id: Id,
    /// Why it was passed over.
    pub reason: FrameworkReason,
    /// For how many agents.
    pub agents: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_answer_has_the_shape_the_readme_shows() {
        let wire = json!({"allocation_cycles": 42, "agents_not_offered": {"DRAINING": 1, "NOTHING_FREE": 3},
            "unoffered_agents": [{"agent_id": {"value": "a-S0"}, "reason": "DRAINING",
                "message": "agent not offered: draining",
                "frameworks_refusing": {"inactive": 0, "suppressed": 0, "refuse_filter": 0, "role_mismatch": 0}}],
            "passed_over_frameworks": [{"framework_id": {"value": "f-0000"}, "reason": "SUPPRESSED", "agents": 4}]});
        let typed: GetAllocation = serde_json::from_value(wire.clone()).unwrap();
        assert_eq!(typed.agents_not_offered[&AgentReason::NothingFree], 3);
        assert_eq!(
            typed.passed_over_frameworks[0].reason,
            FrameworkReason::Suppressed
        );
        assert_eq!(serde_json::to_value(&typed).unwrap(), wire);
    }
}
