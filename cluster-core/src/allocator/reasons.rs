//! Why an allocation cycle offered an agent to nobody, or passed a framework over: data, so that
//! the master can count it (`/metrics`) and show it (`GET_ALLOCATION`), not only log it.

use serde::Serialize;

/// Why an agent was offered to no framework.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
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
    /// Every framework refused it (see [`Unoffered::skips`]).
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
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

/// An agent with free resources that was offered to no framework this cycle.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Unoffered {
    /// Agent id.
    pub agent: String,
    /// Why.
    pub reason: AgentReason,
    /// With [`AgentReason::NoEligibleFramework`]: why the frameworks refused it.
    pub skips: Skips,
}

impl Unoffered {
    /// An agent not offered for `reason`.
    pub fn new(agent: String, reason: AgentReason) -> Self {
        Unoffered {
            agent,
            reason,
            skips: Skips::default(),
        }
    }

    /// The reason in words, with the frameworks' refusals counted.
    pub fn message(&self) -> String {
        if self.reason != AgentReason::NoEligibleFramework {
            return self.reason.message().to_string();
        }
        let s = &self.skips;
        let why: Vec<String> = [
            (s.inactive, "inactive"),
            (s.suppressed, "suppressed"),
            (s.refuse_filter, "declined it (filter active)"),
            (s.role_mismatch, "not in role slave_public (public agent)"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        format!("no eligible framework: {}", why.join(", "))
    }
}

/// A framework passed over for `agents` agents this cycle (it was next in line, but `reason`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PassedOver {
    /// Framework id.
    pub framework: String,
    /// Why.
    pub reason: FrameworkReason,
    /// For how many agents.
    pub agents: u64,
}
