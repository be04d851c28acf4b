//! The allocator: decides which framework is offered each agent's free resources.
//!
//! Pure: no I/O, no clock (callers pass `now`), no randomness. The master feeds it agents,
//! frameworks, declines and recoveries, calls [`Allocator::allocate`] each cycle and turns the
//! [`Grant`]s into offers. Fairness is weighted DRF ([`sorter`]); public agents' resources are
//! reserved for role [`PUBLIC_ROLE`]. Every agent with free resources that got no offer comes back
//! with a reason ([`Unoffered`]).

pub mod sorter;

use crate::proto::Resources;
use sorter::{DrfKey, dominant_share};
use std::collections::{BTreeMap, HashMap};
use tokio::time::Instant;

/// The role public agents' resources are reserved for.
pub const PUBLIC_ROLE: &str = "slave_public";

/// Resources of one agent offered to one framework, allocated to `role`.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    /// Framework id.
    pub framework: String,
    /// Agent id.
    pub agent: String,
    /// What is offered.
    pub resources: Resources,
    /// The role the resources are allocated to.
    pub role: String,
}

/// An agent with free resources that was not offered this cycle, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Unoffered {
    /// Agent id.
    pub agent: String,
    /// Why (reaches the operator via logs/metrics).
    pub reason: String,
}

/// The outcome of one allocation cycle.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Allocation {
    /// Offers to make.
    pub grants: Vec<Grant>,
    /// Agents with free resources that no framework could be offered.
    pub unoffered: Vec<Unoffered>,
}

/// Why the operator keeps an agent out of offers (it stays in the totals: its tasks still count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentHold {
    /// `DEACTIVATE_AGENT`: no offers until `REACTIVATE_AGENT`.
    Deactivated,
    /// `DRAIN_AGENT`: its tasks are being killed; no offers until `REACTIVATE_AGENT`.
    Draining,
}

impl AgentHold {
    /// The reason reported for an agent held this way.
    pub fn reason(self) -> &'static str {
        match self {
            AgentHold::Deactivated => "agent not offered: deactivated by the operator",
            AgentHold::Draining => "agent not offered: draining",
        }
    }
}

#[derive(Debug)]
struct AgentEntry {
    total: Resources,
    /// Offered or used by tasks.
    allocated: Resources,
    public: bool,
    active: bool,
    hold: Option<AgentHold>,
}

#[derive(Debug)]
struct FrameworkEntry {
    roles: Vec<String>,
    /// Offered or used, over all agents.
    allocated: Resources,
    active: bool,
    suppressed: bool,
    /// agent id -> refuse until.
    filters: HashMap<String, Instant>,
}

impl FrameworkEntry {
    fn accounting_role(&self) -> &str {
        self.roles.first().map(String::as_str).unwrap_or("*")
    }
}

/// Weighted DRF allocator state.
#[derive(Debug, Default)]
pub struct Allocator {
    agents: BTreeMap<String, AgentEntry>,
    frameworks: BTreeMap<String, FrameworkEntry>,
    weights: HashMap<String, f64>,
    role_alloc: HashMap<String, Resources>,
    total: Resources,
}

impl Allocator {
    /// An empty allocator; roles not in `weights` weigh 1.
    pub fn new(weights: HashMap<String, f64>) -> Self {
        Allocator {
            weights,
            ..Default::default()
        }
    }

    /// Adds (or replaces) an agent with nothing allocated.
    pub fn add_agent(&mut self, id: &str, total: Resources, public: bool) {
        self.remove_agent(id);
        self.total.add(&total);
        self.agents.insert(
            id.to_string(),
            AgentEntry {
                total,
                allocated: Resources::default(),
                public,
                active: true,
                hold: None,
            },
        );
    }

    /// Removes an agent; whatever was allocated on it is released from its frameworks by the
    /// caller through [`Allocator::recover`] before this (tasks) or is simply dropped (offers).
    pub fn remove_agent(&mut self, id: &str) {
        if let Some(a) = self.agents.remove(id) {
            self.total.subtract(&a.total);
        }
    }

    /// Marks an agent (un)reachable: inactive agents are not offered and do not count in totals.
    pub fn set_agent_active(&mut self, id: &str, active: bool) {
        if let Some(a) = self.agents.get_mut(id) {
            if a.active != active {
                if active {
                    self.total.add(&a.total);
                } else {
                    self.total.subtract(&a.total);
                }
            }
            a.active = active;
        }
    }

    /// Holds an agent out of offers (operator deactivation or drain), or releases it (`None`).
    /// Unlike [`Allocator::set_agent_active`] the agent stays in the totals.
    pub fn set_agent_hold(&mut self, id: &str, hold: Option<AgentHold>) {
        if let Some(a) = self.agents.get_mut(id) {
            a.hold = hold;
        }
    }

    /// Free resources of an agent.
    pub fn available(&self, agent: &str) -> Option<Resources> {
        self.agents.get(agent).map(|a| {
            let mut r = a.total.clone();
            r.subtract(&a.allocated);
            r
        })
    }

    /// Adds a framework (or updates its roles, keeping its allocation).
    pub fn add_framework(&mut self, id: &str, roles: Vec<String>) {
        let roles = if roles.is_empty() {
            vec!["*".to_string()]
        } else {
            roles
        };
        match self.frameworks.get_mut(id) {
            Some(f) => {
                f.roles = roles;
                f.active = true;
            }
            None => {
                self.frameworks.insert(
                    id.to_string(),
                    FrameworkEntry {
                        roles,
                        allocated: Resources::default(),
                        active: true,
                        suppressed: false,
                        filters: HashMap::new(),
                    },
                );
            }
        }
    }

    /// Removes a framework. Its allocations must have been recovered first.
    pub fn remove_framework(&mut self, id: &str) {
        self.frameworks.remove(id);
    }

    /// Inactive (disconnected) frameworks keep their allocation but get no offers.
    pub fn set_framework_active(&mut self, id: &str, active: bool) {
        if let Some(f) = self.frameworks.get_mut(id) {
            f.active = active;
        }
    }

    /// SUPPRESS: no more offers until REVIVE.
    pub fn suppress(&mut self, id: &str) {
        if let Some(f) = self.frameworks.get_mut(id) {
            f.suppressed = true;
        }
    }

    /// REVIVE: offers again, and all decline filters are cleared.
    pub fn revive(&mut self, id: &str) {
        if let Some(f) = self.frameworks.get_mut(id) {
            f.suppressed = false;
            f.filters.clear();
        }
    }

    /// Records resources of `agent` as allocated to `framework` (offer made, or task adopted after
    /// a master restart).
    pub fn allocate_to(&mut self, framework: &str, agent: &str, res: &Resources) {
        if let Some(a) = self.agents.get_mut(agent) {
            a.allocated.add(res);
        }
        if let Some(f) = self.frameworks.get_mut(framework) {
            f.allocated.add(res);
            let role = f.accounting_role().to_string();
            self.role_alloc.entry(role).or_default().add(res);
        }
    }

    /// Gives resources back: an offer's unused part, or a finished task's resources.
    pub fn recover(&mut self, framework: &str, agent: &str, res: &Resources) {
        if let Some(a) = self.agents.get_mut(agent) {
            a.allocated.subtract(res);
        }
        if let Some(f) = self.frameworks.get_mut(framework) {
            f.allocated.subtract(res);
            let role = f.accounting_role().to_string();
            if let Some(r) = self.role_alloc.get_mut(&role) {
                r.subtract(res);
            }
        }
    }

    /// DECLINE (or the unused part of an ACCEPT): recover and do not re-offer this agent to the
    /// framework before `until`.
    pub fn decline(
        &mut self,
        framework: &str,
        agent: &str,
        res: &Resources,
        until: Option<Instant>,
    ) {
        self.recover(framework, agent, res);
        if let (Some(f), Some(until)) = (self.frameworks.get_mut(framework), until) {
            f.filters.insert(agent.to_string(), until);
        }
    }

    /// A framework's weighted dominant share (tests, metrics).
    pub fn share(&self, framework: &str) -> f64 {
        self.frameworks
            .get(framework)
            .map(|f| dominant_share(&f.allocated, &self.total, 1.0))
            .unwrap_or(0.0)
    }

    fn weight(&self, role: &str) -> f64 {
        self.weights.get(role).copied().unwrap_or(1.0)
    }

    /// One allocation cycle at time `now`: each agent's free resources go to the eligible framework
    /// with the lowest weighted dominant share; the grant is recorded as allocated at once, so the
    /// next agent sees updated shares.
    pub fn allocate(&mut self, now: Instant) -> Allocation {
        let mut out = Allocation::default();
        // Expired filters are dropped here so `filters` does not grow without bound.
        for f in self.frameworks.values_mut() {
            f.filters.retain(|_, until| *until > now);
        }
        let agent_ids: Vec<String> = self.agents.keys().cloned().collect();
        for agent_id in agent_ids {
            let Some(agent) = self.agents.get(&agent_id) else {
                continue;
            };
            if !agent.active {
                continue;
            }
            let mut free = agent.total.clone();
            free.subtract(&agent.allocated);
            if free.is_empty() {
                continue;
            }
            if let Some(hold) = agent.hold {
                out.unoffered.push(Unoffered {
                    agent: agent_id,
                    reason: hold.reason().to_string(),
                });
                continue;
            }
            let public = agent.public;
            let mut best: Option<DrfKey<'_>> = None;
            let mut blocked = (0usize, 0usize, 0usize); // (inactive/suppressed, filtered, wrong role)
            for (fid, f) in &self.frameworks {
                if !f.active || f.suppressed {
                    blocked.0 += 1;
                    continue;
                }
                if f.filters.contains_key(&agent_id) {
                    blocked.1 += 1;
                    continue;
                }
                if public && !f.roles.iter().any(|r| r == PUBLIC_ROLE) {
                    blocked.2 += 1;
                    continue;
                }
                let role = f.accounting_role();
                let role_share = self
                    .role_alloc
                    .get(role)
                    .map(|r| dominant_share(r, &self.total, self.weight(role)))
                    .unwrap_or(0.0);
                let key = DrfKey {
                    role_share,
                    framework_share: dominant_share(&f.allocated, &self.total, 1.0),
                    id: fid,
                };
                if best.as_ref().is_none_or(|b| key < *b) {
                    best = Some(key);
                }
            }
            match best.map(|b| b.id.to_string()) {
                Some(fid) => {
                    let role = match self.frameworks.get(&fid) {
                        Some(_) if public => PUBLIC_ROLE.to_string(),
                        Some(f) => f
                            .roles
                            .iter()
                            .find(|r| r.as_str() != PUBLIC_ROLE)
                            .unwrap_or(&f.roles[0])
                            .clone(),
                        None => continue,
                    };
                    self.allocate_to(&fid, &agent_id, &free);
                    out.grants.push(Grant {
                        framework: fid,
                        agent: agent_id,
                        resources: free,
                        role,
                    });
                }
                None => {
                    let reason = if self.frameworks.is_empty() {
                        "no framework is subscribed".to_string()
                    } else {
                        let mut why = Vec::new();
                        if blocked.0 > 0 {
                            why.push(format!("{} inactive or suppressed", blocked.0));
                        }
                        if blocked.1 > 0 {
                            why.push(format!("{} declined it (filter active)", blocked.1));
                        }
                        if blocked.2 > 0 {
                            why.push(format!(
                                "{} not in role {PUBLIC_ROLE} (public agent)",
                                blocked.2
                            ));
                        }
                        format!("no eligible framework: {}", why.join(", "))
                    };
                    out.unoffered.push(Unoffered {
                        agent: agent_id,
                        reason,
                    });
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn res(cpus: f64, mem: f64) -> Resources {
        Resources::new(cpus, mem, 0.0)
    }

    #[test]
    fn drf_offers_first_to_lowest_dominant_share() {
        let now = Instant::now();
        let mut a = Allocator::default();
        a.add_agent("a1", res(10.0, 1000.0), false);
        a.add_agent("a2", res(10.0, 1000.0), false);
        a.add_framework("f1", vec!["*".into()]);
        a.add_framework("f2", vec!["*".into()]);
        // f1 already holds 4 of the 20 cpus, so f2 (share 0) gets the first free agent; then f2
        // holds 6/20 > f1's 4/20 and the next agent goes to f1.
        a.allocate_to("f1", "a1", &res(4.0, 100.0));
        let out = a.allocate(now);
        assert_eq!(out.grants[0].agent, "a1");
        assert_eq!(out.grants[0].framework, "f2", "f2 has share 0 < f1's 0.2");
        assert_eq!(out.grants[1].agent, "a2");
        assert_eq!(
            out.grants[1].framework, "f1",
            "f2 now holds 6/20 > f1's 4/20"
        );
    }

    #[test]
    fn weights_favour_heavier_roles() {
        let mut a = Allocator::new(HashMap::from([("big".to_string(), 4.0)]));
        a.add_agent("a1", res(10.0, 1000.0), false);
        a.add_agent("a2", res(10.0, 1000.0), false);
        a.add_framework("f-big", vec!["big".into()]);
        a.add_framework("f-small", vec!["small".into()]);
        a.allocate_to("f-big", "a1", &res(2.0, 0.0));
        a.allocate_to("f-small", "a1", &res(1.0, 0.0));
        // big: 2/20/4 = 0.025 < small: 1/20 = 0.05
        let out = a.allocate(Instant::now());
        assert_eq!(out.grants[0].framework, "f-big");
    }

    #[test]
    fn declined_agent_is_not_reoffered_until_the_filter_expires() {
        let t0 = Instant::now();
        let mut a = Allocator::default();
        a.add_agent("a1", res(2.0, 1024.0), false);
        a.add_framework("f1", vec![]);
        let g = a.allocate(t0).grants.remove(0);
        a.decline("f1", "a1", &g.resources, Some(t0 + Duration::from_secs(5)));
        let out = a.allocate(t0 + Duration::from_secs(4));
        assert!(out.grants.is_empty());
        assert!(
            out.unoffered[0].reason.contains("declined it"),
            "{:?}",
            out.unoffered
        );
        assert_eq!(a.allocate(t0 + Duration::from_secs(5)).grants.len(), 1);
    }

    #[test]
    fn suppressed_framework_gets_nothing_until_revive() {
        let now = Instant::now();
        let mut a = Allocator::default();
        a.add_agent("a1", res(2.0, 1024.0), false);
        a.add_framework("f1", vec![]);
        a.suppress("f1");
        assert!(a.allocate(now).grants.is_empty());
        a.revive("f1");
        assert_eq!(a.allocate(now).grants.len(), 1);
    }

    #[test]
    fn public_agents_go_only_to_slave_public_frameworks() {
        let now = Instant::now();
        let mut a = Allocator::default();
        a.add_agent("pub", res(2.0, 1024.0), true);
        a.add_framework("plain", vec!["*".into()]);
        let out = a.allocate(now);
        assert!(out.grants.is_empty());
        assert!(
            out.unoffered[0].reason.contains("slave_public"),
            "{:?}",
            out.unoffered
        );
        a.add_framework("edge", vec!["*".into(), PUBLIC_ROLE.into()]);
        let out = a.allocate(now);
        assert_eq!(out.grants[0].framework, "edge");
        assert_eq!(out.grants[0].role, PUBLIC_ROLE);
    }

    #[test]
    fn recovered_resources_are_offered_again_and_inactive_agents_are_not() {
        let now = Instant::now();
        let mut a = Allocator::default();
        a.add_agent("a1", res(2.0, 1024.0), false);
        a.add_framework("f1", vec![]);
        let g = a.allocate(now).grants.remove(0);
        assert!(
            a.allocate(now).grants.is_empty(),
            "everything is offered already"
        );
        a.recover("f1", "a1", &g.resources);
        a.set_agent_active("a1", false);
        assert!(a.allocate(now).grants.is_empty());
        a.set_agent_active("a1", true);
        assert_eq!(a.allocate(now).grants[0].resources, res(2.0, 1024.0));
    }

    #[test]
    fn draining_agent_is_not_offered_and_says_why_until_released() {
        let now = Instant::now();
        let mut a = Allocator::default();
        a.add_agent("a1", res(2.0, 1024.0), false);
        a.add_agent("a2", res(2.0, 1024.0), false);
        a.add_framework("f1", vec![]);
        a.set_agent_hold("a1", Some(AgentHold::Draining));
        let out = a.allocate(now);
        assert_eq!(out.grants.len(), 1);
        assert_eq!(out.grants[0].agent, "a2");
        assert_eq!(
            out.unoffered,
            vec![Unoffered {
                agent: "a1".into(),
                reason: "agent not offered: draining".into()
            }]
        );
        a.set_agent_hold("a1", Some(AgentHold::Deactivated));
        assert!(a.allocate(now).unoffered[0].reason.contains("deactivated"));
        a.set_agent_hold("a1", None);
        let out = a.allocate(now);
        assert_eq!(out.grants[0].agent, "a1");
        assert!(out.unoffered.is_empty());
    }

    #[test]
    fn no_framework_is_a_reason() {
        let mut a = Allocator::default();
        a.add_agent("a1", res(1.0, 64.0), false);
        let out = a.allocate(Instant::now());
        assert_eq!(out.unoffered[0].reason, "no framework is subscribed");
    }
}
