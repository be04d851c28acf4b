//! The agents table: registered agents with their operator state (deactivation, drain), and the
//! agents drained with `mark_gone`, which may never register again.
//!
//! Invariants: an agent is never both in `by_id` and `gone`; the operator's deactivation and
//! drain outlive re-registrations; a drain implies deactivation.

use super::super::drain::{DrainConfig, DrainInfo, DrainState};
use crate::allocator::AgentHold;
use crate::proto::{Attribute, Resources};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// What an agent says about itself when it registers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// Agent id.
    pub id: String,
    /// Hostname.
    pub hostname: String,
    /// Base URL the master calls it at.
    pub url: String,
    /// Total resources.
    pub total: Resources,
    /// Attributes.
    pub attributes: Vec<Attribute>,
    /// Public agent (resources reserved for `slave_public`).
    pub public: bool,
    /// dccore version.
    pub version: String,
    /// Set when the agent is not root: every task there runs as this user.
    pub task_user: Option<String>,
}

/// One agent as the master knows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentRec {
    /// What the agent said at its last registration.
    pub info: AgentInfo,
    /// Heartbeats arrive (false once they stopped, or until a recovered agent re-registers).
    pub reachable: bool,
    /// Loaded from the registry and not re-registered since this master started.
    pub recovered: bool,
    /// When it registered (seconds since the epoch; 0 for a recovered agent).
    pub registered_time: f64,
    /// The operator took it out of offers (`DEACTIVATE_AGENT`, `DRAIN_AGENT`).
    pub deactivated: bool,
    /// Drain in progress or finished.
    pub drain: Option<DrainInfo>,
}

impl AgentRec {
    /// The allocator hold the operator's state calls for.
    pub fn hold(&self) -> Option<AgentHold> {
        match (self.deactivated, &self.drain) {
            (_, Some(_)) => Some(AgentHold::Draining),
            (true, None) => Some(AgentHold::Deactivated),
            (false, None) => None,
        }
    }
}

/// The agents.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Agents {
    by_id: BTreeMap<String, AgentRec>,
    gone: BTreeSet<String>,
}

impl Agents {
    /// An agent.
    pub fn get(&self, id: &str) -> Option<&AgentRec> {
        self.by_id.get(id)
    }

    /// A reachable agent.
    pub fn reachable(&self, id: &str) -> Option<&AgentRec> {
        self.by_id.get(id).filter(|a| a.reachable)
    }

    /// Every agent, by id.
    pub fn iter(&self) -> impl Iterator<Item = &AgentRec> {
        self.by_id.values()
    }

    /// How many agents are known.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// No agents at all?
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Was the agent drained and marked gone?
    pub fn is_gone(&self, id: &str) -> bool {
        self.gone.contains(id)
    }

    /// Agents marked gone, sorted.
    pub fn gone(&self) -> impl Iterator<Item = &String> {
        self.gone.iter()
    }

    /// An agent loaded from the registry: unreachable until it registers again.
    pub(super) fn recover(&mut self, info: AgentInfo, deactivated: bool, drain: Option<DrainInfo>) {
        let id = info.id.clone();
        self.by_id.insert(
            id,
            AgentRec {
                info,
                reachable: false,
                recovered: true,
                registered_time: 0.0,
                deactivated,
                drain,
            },
        );
    }

    /// Recovers the gone list.
    pub(super) fn recover_gone(&mut self, id: String) {
        self.gone.insert(id);
    }

    /// (Re-)registers an agent, keeping the operator's state. False for a gone agent; else
    /// whether anything the registry stores changed.
    pub(super) fn register(&mut self, info: AgentInfo, registered_time: f64) -> Option<bool> {
        if self.gone.contains(&info.id) {
            return None;
        }
        let (deactivated, drain, changed) = match self.by_id.get(&info.id) {
            Some(a) => (
                a.deactivated,
                a.drain.clone(),
                a.info.url != info.url
                    || a.info.total != info.total
                    || a.info.public != info.public
                    || a.info.hostname != info.hostname,
            ),
            None => (false, None, true),
        };
        self.by_id.insert(
            info.id.clone(),
            AgentRec {
                info,
                reachable: true,
                recovered: false,
                registered_time,
                deactivated,
                drain,
            },
        );
        Some(changed)
    }

    /// Marks an agent unreachable; true if it was reachable.
    pub(super) fn set_unreachable(&mut self, id: &str) -> bool {
        match self.by_id.get_mut(id) {
            Some(a) if a.reachable => {
                a.reachable = false;
                true
            }
            _ => false,
        }
    }

    /// `DEACTIVATE_AGENT`.
    pub(super) fn deactivate(&mut self, id: &str) -> bool {
        self.by_id
            .get_mut(id)
            .map(|a| a.deactivated = true)
            .is_some()
    }

    /// `DRAIN_AGENT`: deactivated and DRAINING.
    pub(super) fn start_drain(&mut self, id: &str, config: DrainConfig) -> bool {
        self.by_id
            .get_mut(id)
            .map(|a| {
                a.deactivated = true;
                a.drain = Some(DrainInfo {
                    state: DrainState::Draining,
                    config,
                });
            })
            .is_some()
    }

    /// DRAINING → DRAINED; true if the agent was draining.
    pub(super) fn finish_drain(&mut self, id: &str) -> bool {
        match self.by_id.get_mut(id).and_then(|a| a.drain.as_mut()) {
            Some(d) if d.state == DrainState::Draining => {
                d.state = DrainState::Drained;
                true
            }
            _ => false,
        }
    }

    /// `REACTIVATE_AGENT`: offered again; a drain is cancelled.
    pub(super) fn reactivate(&mut self, id: &str) -> bool {
        self.by_id
            .get_mut(id)
            .map(|a| {
                a.deactivated = false;
                a.drain = None;
            })
            .is_some()
    }

    /// Removes an agent for good: it may never register again.
    pub(super) fn remove_for_good(&mut self, id: &str) -> bool {
        let known = self.by_id.remove(id).is_some();
        self.gone.insert(id.to_string());
        known
    }
}
