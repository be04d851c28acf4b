//! Offers: allocation cycles turned into OFFERS events, offer expiry and rescinds.
//!
//! Offers are this master process's, not cluster state (a new leader makes new ones). The
//! invariant kept here: the resources of every offer in [`Offers`] are counted as allocated in
//! the allocator, and an offer leaves the table only through [`State::take_offer`] (accepted:
//! the caller decides what goes back) or [`State::withdraw_offer`] (all goes back).

use super::state::State;
use crate::allocator::{AgentReason, Allocation, FrameworkReason, Outstanding, PUBLIC_ROLE};
use crate::proto::scheduler::Event;
use crate::proto::{Id, Offer, Resources};
use std::collections::{BTreeMap, HashMap};
use tokio::time::Instant;

/// One outstanding offer.
#[derive(Clone, Debug)]
pub(super) struct OfferRec {
    pub framework_id: String,
    pub agent_id: String,
    pub resources: Resources,
    pub created: Instant,
}

/// The outstanding offers, by offer id.
#[derive(Default)]
pub(super) struct Offers {
    by_id: HashMap<String, OfferRec>,
}

impl Offers {
    /// An offer.
    pub fn get(&self, id: &str) -> Option<&OfferRec> {
        self.by_id.get(id)
    }

    /// How many are outstanding.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Every offer.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = (&String, &OfferRec)> {
        self.by_id.iter()
    }

    /// Ids of the offers matching `f`.
    fn ids(&self, f: impl Fn(&OfferRec) -> bool) -> Vec<String> {
        self.by_id
            .iter()
            .filter(|(_, o)| f(o))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// What is offered, per agent and per framework.
    pub fn totals(&self) -> (HashMap<String, Resources>, HashMap<String, Resources>) {
        let (mut by_agent, mut by_framework) = (HashMap::new(), HashMap::new());
        for o in self.by_id.values() {
            by_agent
                .entry(o.agent_id.clone())
                .or_insert_with(Resources::default)
                .add(&o.resources);
            by_framework
                .entry(o.framework_id.clone())
                .or_insert_with(Resources::default)
                .add(&o.resources);
        }
        (by_agent, by_framework)
    }
}

/// Counters of the allocation cycles, and the last cycle's reasons (for `GET_ALLOCATION`).
#[derive(Default)]
pub(super) struct AllocStats {
    pub cycles: u64,
    pub last_seconds: f64,
    pub seconds_total: f64,
    pub offers_total: u64,
    pub agents_not_offered: BTreeMap<AgentReason, u64>,
    pub frameworks_passed_over: BTreeMap<FrameworkReason, u64>,
    /// The last cycle, grants left out.
    pub last: Allocation,
}

impl State {
    /// Takes an offer out of the table; its resources stay allocated (the caller recovers or
    /// uses them).
    pub(super) fn take_offer(&mut self, offer_id: &str) -> Option<OfferRec> {
        self.offers.by_id.remove(offer_id)
    }

    /// Withdraws an offer silently: its resources go back to the allocator.
    pub(super) fn withdraw_offer(&mut self, offer_id: &str) -> Option<OfferRec> {
        let o = self.offers.by_id.remove(offer_id)?;
        self.alloc
            .recover(&o.framework_id, &o.agent_id, &o.resources);
        self.alloc_pending = true;
        Some(o)
    }

    /// Withdraws an offer and tells its framework (RESCIND).
    pub(super) fn rescind_offer(&mut self, offer_id: &str) {
        if let Some(o) = self.withdraw_offer(offer_id) {
            self.conns
                .send(&o.framework_id, Event::Rescind(Id::new(offer_id)));
        }
    }

    pub(super) fn rescind_agent_offers(&mut self, agent_id: &str) {
        for id in self.offers.ids(|o| o.agent_id == agent_id) {
            self.rescind_offer(&id);
        }
    }

    pub(super) fn rescind_framework_offers(&mut self, framework_id: &str) {
        for id in self.offers.ids(|o| o.framework_id == framework_id) {
            self.rescind_offer(&id);
        }
    }

    /// Offers made to a previous connection of a framework are void (no RESCIND: the new
    /// connection never saw them).
    pub(super) fn withdraw_framework_offers(&mut self, framework_id: &str) {
        for id in self.offers.ids(|o| o.framework_id == framework_id) {
            self.withdraw_offer(&id);
        }
    }

    pub(super) fn expire_offers(&mut self, now: Instant) {
        let timeout = self.cfg.offer_timeout;
        for id in self
            .offers
            .ids(|o| now.saturating_duration_since(o.created) >= timeout)
        {
            tracing::debug!(offer = %id, "offer timed out: rescinded");
            self.rescind_offer(&id);
        }
    }

    /// Runs an allocation cycle, counts its reasons and sends the offers.
    pub(super) fn allocate(&mut self, now: Instant) {
        let started = std::time::Instant::now();
        let mut out = self.alloc.allocate(now);
        let took = started.elapsed().as_secs_f64();
        let st = &mut self.stats;
        st.cycles += 1;
        st.last_seconds = took;
        st.seconds_total += took;
        for (reason, n) in out.agents_by_reason() {
            *st.agents_not_offered.entry(reason).or_default() += n;
        }
        for p in &out.passed_over {
            *st.frameworks_passed_over.entry(p.reason).or_default() += p.agents;
        }
        for u in &out.unoffered {
            tracing::trace!(agent = %u.agent, reason = %u.message(), "agent not offered");
        }
        self.alloc_pending = false;
        self.next_alloc = now + self.cfg.allocation_interval;
        let grants = std::mem::take(&mut out.grants);
        self.stats.last = out;
        let mut by_framework: BTreeMap<String, Vec<Offer>> = BTreeMap::new();
        for g in grants {
            let Some(agent) = self.tables.agents.get(&g.agent) else {
                continue;
            };
            let id = uuid::Uuid::new_v4().to_string();
            let reserved = (g.role == PUBLIC_ROLE && agent.info.public).then_some(PUBLIC_ROLE);
            by_framework
                .entry(g.framework.clone())
                .or_default()
                .push(Offer {
                    id: Id::new(&id),
                    framework_id: Id::new(&g.framework),
                    agent_id: Id::new(&g.agent),
                    hostname: agent.info.hostname.clone(),
                    resources: g.resources.to_mesos(reserved, Some(&g.role)),
                    attributes: agent.info.attributes.clone(),
                });
            self.offers.by_id.insert(
                id,
                OfferRec {
                    framework_id: g.framework,
                    agent_id: g.agent,
                    resources: g.resources,
                    created: now,
                },
            );
        }
        for (fid, offers) in by_framework {
            let ids: Vec<String> = offers.iter().map(|o| o.id.value.clone()).collect();
            self.stats.offers_total += ids.len() as u64;
            if !self.conns.send(&fid, Event::Offers(offers)) {
                // Nobody to receive them: give the resources straight back.
                for id in ids {
                    if let Some(o) = self.offers.by_id.remove(&id) {
                        self.alloc
                            .recover(&o.framework_id, &o.agent_id, &o.resources);
                    }
                }
            }
        }
        self.reclaim_for_fairness();
    }

    /// Rescinds the offers a framework sits on while one with a lower share waits with none
    /// (see [`crate::allocator::Allocator::reclaim`]); the next cycle offers them by DRF.
    fn reclaim_for_fairness(&mut self) {
        let outstanding: Vec<Outstanding<'_>> = self
            .offers
            .by_id
            .values()
            .map(|o| Outstanding {
                framework: &o.framework_id,
                agent: &o.agent_id,
                resources: &o.resources,
            })
            .collect();
        let reclaim = self.alloc.reclaim(&outstanding);
        for (framework, agent) in reclaim {
            let ids = self
                .offers
                .ids(|o| o.framework_id == framework && o.agent_id == agent);
            for id in ids {
                tracing::debug!(offer = %id, %framework, "offer rescinded: a framework with a lower share waits");
                self.rescind_offer(&id);
            }
        }
    }
}
