//! The allocator: decides which framework is offered each agent's free resources.
//!
//! Pure: no I/O, no clock (callers pass `now`), no randomness. The master feeds it agents,
//! frameworks, declines and recoveries, calls [`Allocator::allocate`] each cycle and turns the
//! [`Grant`]s into offers. Who goes first is the [`Sorter`]'s decision (weighted DRF by default,
//! [`DrfSorter`]); public agents' resources are reserved for role [`PUBLIC_ROLE`]. Every cycle
//! also says, as data, why agents and frameworks got nothing ([`reasons`]).

pub mod reasons;
pub mod sorter;

pub use reasons::{AgentReason, FrameworkReason, PassedOver, Skips, Unoffered};
pub use sorter::{DrfSorter, Sorter};

use crate::proto::Resources;
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

/// The outcome of one allocation cycle.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Allocation {
    /// Offers to make.
    pub grants: Vec<Grant>,
    /// Agents with free resources that were offered to no framework, and why.
    pub unoffered: Vec<Unoffered>,
    /// Frameworks that were next in line for an agent but could not be offered it, and why.
    pub passed_over: Vec<PassedOver>,
    /// Agents not offered because they are unreachable (counted, not listed: the operator API
    /// lists unreachable agents already).
    pub unreachable: u64,
    /// Agents not offered because nothing on them is free (counted, not listed).
    pub nothing_free: u64,
}

impl Allocation {
    /// How many agents got no offer, by reason.
    pub fn agents_by_reason(&self) -> BTreeMap<AgentReason, u64> {
        let mut m = BTreeMap::new();
        for u in &self.unoffered {
            *m.entry(u.reason).or_default() += 1;
        }
        if self.unreachable > 0 {
            m.insert(AgentReason::Unreachable, self.unreachable);
        }
        if self.nothing_free > 0 {
            m.insert(AgentReason::NothingFree, self.nothing_free);
        }
        m
    }
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
    fn reason(self) -> AgentReason {
        match self {
            AgentHold::Deactivated => AgentReason::Deactivated,
            AgentHold::Draining => AgentReason::Draining,
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
    active: bool,
    suppressed: bool,
    /// agent id -> refuse until.
    filters: HashMap<String, Instant>,
}

impl FrameworkEntry {
    fn accounting_role(&self) -> &str {
        self.roles.first().map(String::as_str).unwrap_or("*")
    }

    /// Why this framework may not be offered `agent` now, if it may not.
    fn refuses(&self, agent: &str, public: bool) -> Option<FrameworkReason> {
        if !self.active {
            Some(FrameworkReason::Inactive)
        } else if self.suppressed {
            Some(FrameworkReason::Suppressed)
        } else if self.filters.contains_key(agent) {
            Some(FrameworkReason::RefuseFilter)
        } else if public && !self.roles.iter().any(|r| r == PUBLIC_ROLE) {
            Some(FrameworkReason::RoleMismatch)
        } else {
            None
        }
    }
}

/// Allocator state; `S` orders the frameworks (weighted DRF unless given another [`Sorter`]).
#[derive(Debug, Default)]
pub struct Allocator<S = DrfSorter> {
    agents: BTreeMap<String, AgentEntry>,
    frameworks: BTreeMap<String, FrameworkEntry>,
    sorter: S,
}

impl Allocator<DrfSorter> {
    /// An empty DRF allocator; roles not in `weights` weigh 1.
    pub fn new(weights: HashMap<String, f64>) -> Self {
        Allocator::with_sorter(DrfSorter::new(weights))
    }
}

impl<S: Sorter> Allocator<S> {
    /// An empty allocator ordering frameworks with `sorter`.
    pub fn with_sorter(sorter: S) -> Self {
        Allocator {
            agents: BTreeMap::new(),
            frameworks: BTreeMap::new(),
            sorter,
        }
    }

    /// Adds (or replaces) an agent with nothing allocated.
    pub fn add_agent(&mut self, id: &str, total: Resources, public: bool) {
        self.remove_agent(id);
        self.sorter.add_total(&total);
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
        if let Some(a) = self.agents.remove(id)
            && a.active
        {
            self.sorter.remove_total(&a.total);
        }
    }

    /// Marks an agent (un)reachable: inactive agents are not offered and do not count in totals.
    pub fn set_agent_active(&mut self, id: &str, active: bool) {
        if let Some(a) = self.agents.get_mut(id) {
            if a.active != active {
                if active {
                    self.sorter.add_total(&a.total);
                } else {
                    self.sorter.remove_total(&a.total);
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
        let f = self
            .frameworks
            .entry(id.to_string())
            .or_insert_with(|| FrameworkEntry {
                roles: Vec::new(),
                active: true,
                suppressed: false,
                filters: HashMap::new(),
            });
        f.roles = roles;
        f.active = true;
        self.sorter.add_client(id, f.accounting_role());
    }

    /// Removes a framework. Its allocations must have been recovered first.
    pub fn remove_framework(&mut self, id: &str) {
        self.frameworks.remove(id);
        self.sorter.remove_client(id);
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
        if self.frameworks.contains_key(framework) {
            self.sorter.allocated(framework, res);
        }
    }

    /// Gives resources back: an offer's unused part, or a finished task's resources.
    pub fn recover(&mut self, framework: &str, agent: &str, res: &Resources) {
        if let Some(a) = self.agents.get_mut(agent) {
            a.allocated.subtract(res);
        }
        if self.frameworks.contains_key(framework) {
            self.sorter.unallocated(framework, res);
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

    /// A framework's dominant share (tests, metrics).
    pub fn share(&self, framework: &str) -> f64 {
        self.sorter.share(framework)
    }

    /// One allocation cycle at time `now`: each agent's free resources go to the first eligible
    /// framework in the sorter's order; the grant is recorded as allocated at once, so the next
    /// agent sees updated shares.
    pub fn allocate(&mut self, now: Instant) -> Allocation {
        let mut out = Allocation::default();
        // Expired filters are dropped here so `filters` does not grow without bound.
        for f in self.frameworks.values_mut() {
            f.filters.retain(|_, until| *until > now);
        }
        // Framework -> passed-over counts by reason ([`FrameworkReason::ALL`] order); the id is
        // cloned once per framework and cycle, not once per agent.
        let mut passed: HashMap<String, [u64; 4]> = HashMap::new();
        let agent_ids: Vec<String> = self.agents.keys().cloned().collect();
        for agent_id in agent_ids {
            let Some(agent) = self.agents.get(&agent_id) else {
                continue;
            };
            if !agent.active {
                out.unreachable += 1;
                continue;
            }
            let mut free = agent.total.clone();
            free.subtract(&agent.allocated);
            if free.is_empty() {
                out.nothing_free += 1;
                continue;
            }
            if let Some(hold) = agent.hold {
                out.unoffered.push(Unoffered::new(agent_id, hold.reason()));
                continue;
            }
            if self.frameworks.is_empty() {
                out.unoffered
                    .push(Unoffered::new(agent_id, AgentReason::NoFramework));
                continue;
            }
            let public = agent.public;
            let mut skips = Skips::default();
            // The order is asked for each agent: the previous grant changed the shares.
            let winner = self.sorter.sort().into_iter().find_map(|fid| {
                let f = self.frameworks.get(fid)?;
                match f.refuses(&agent_id, public) {
                    None => Some((fid.to_string(), grant_role(f, public))),
                    Some(why) => {
                        skips.count(why);
                        let i = FrameworkReason::ALL
                            .iter()
                            .position(|r| *r == why)
                            .unwrap_or(0);
                        match passed.get_mut(fid) {
                            Some(c) => c[i] += 1,
                            None => {
                                let mut c = [0; 4];
                                c[i] = 1;
                                passed.insert(fid.to_string(), c);
                            }
                        }
                        None
                    }
                }
            });
            match winner {
                Some((fid, role)) => {
                    self.allocate_to(&fid, &agent_id, &free);
                    out.grants.push(Grant {
                        framework: fid,
                        agent: agent_id,
                        resources: free,
                        role,
                    });
                }
                None => out.unoffered.push(Unoffered {
                    agent: agent_id,
                    reason: AgentReason::NoEligibleFramework,
                    skips,
                }),
            }
        }
        let mut passed: Vec<(String, [u64; 4])> = passed.into_iter().collect();
        passed.sort_by(|a, b| a.0.cmp(&b.0));
        out.passed_over = passed
            .into_iter()
            .flat_map(|(framework, counts)| {
                FrameworkReason::ALL
                    .into_iter()
                    .zip(counts)
                    .filter(|(_, n)| *n > 0)
                    .map(move |(reason, agents)| PassedOver {
                        framework: framework.clone(),
                        reason,
                        agents,
                    })
            })
            .collect();
        out
    }
}

/// An outstanding offer as [`Allocator::reclaim`] sees it.
#[derive(Clone, Copy, Debug)]
pub struct Outstanding<'a> {
    /// The framework holding it.
    pub framework: &'a str,
    /// The agent it is on.
    pub agent: &'a str,
    /// What it offers.
    pub resources: &'a Resources,
}

impl<S: Sorter + Clone> Allocator<S> {
    /// The outstanding offers to take back so DRF can hold: `(framework, agent)` pairs.
    ///
    /// Offered resources count as allocated (so one agent is never offered twice), which lets a
    /// framework that sits on an offer keep an agent from a framework that subscribed later with
    /// a lower share: the cycle sees nothing free and the offer lasts until `offer_timeout`.
    /// Here the order is asked again with offers left out (what tasks use only); an offer is
    /// taken back when a framework that holds no offer, would be offered the agent and sorts
    /// before the holder wants it. Once it is offered the agent, the order no longer puts it
    /// before the holder, so offers do not bounce between frameworks.
    pub fn reclaim(&self, outstanding: &[Outstanding<'_>]) -> Vec<(String, String)> {
        let holders: std::collections::HashSet<&str> =
            outstanding.iter().map(|o| o.framework).collect();
        let waits = |(id, f): (&String, &FrameworkEntry)| {
            f.active && !f.suppressed && !holders.contains(id.as_str())
        };
        // The common case (everyone holds offers, or nobody is waiting) costs no sort.
        if outstanding.is_empty() || !self.frameworks.iter().any(waits) {
            return Vec::new();
        }
        let mut used = self.sorter.clone();
        for o in outstanding {
            used.unallocated(o.framework, o.resources);
        }
        let rank: HashMap<&str, usize> = used
            .sort()
            .into_iter()
            .enumerate()
            .map(|(i, id)| (id, i))
            .collect();
        let mut out: Vec<(String, String)> = Vec::new();
        for (id, w) in self.frameworks.iter().filter(|e| waits(*e)) {
            let Some(&mine) = rank.get(id.as_str()) else {
                continue;
            };
            for o in outstanding {
                let public = match self.agents.get(o.agent) {
                    Some(a) if a.active && a.hold.is_none() => a.public,
                    _ => continue,
                };
                let behind = rank.get(o.framework).is_some_and(|r| *r > mine);
                let pair = (o.framework.to_string(), o.agent.to_string());
                if behind && w.refuses(o.agent, public).is_none() && !out.contains(&pair) {
                    out.push(pair);
                }
            }
        }
        out
    }
}

/// The role a grant to `f` is allocated to.
fn grant_role(f: &FrameworkEntry, public: bool) -> String {
    if public {
        return PUBLIC_ROLE.to_string();
    }
    f.roles
        .iter()
        .find(|r| r.as_str() != PUBLIC_ROLE)
        .or(f.roles.first())
        .cloned()
        .unwrap_or_else(|| "*".to_string())
}

#[cfg(test)]
mod tests;
