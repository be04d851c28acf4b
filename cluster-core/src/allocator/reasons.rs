//! Why an allocation cycle offered an agent to nobody, or passed a framework over: data, so that
//! the master can count it (`/metrics`) and show it (`GET_ALLOCATION`), not only log it. The
//! reasons themselves are defined in `dccore-api` (its `allocation` module), so the answer a
//! client reads and what the allocator decides are one type.

use serde::Serialize;

pub use dccore_api::allocation::{AgentReason, FrameworkReason, Skips};

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
