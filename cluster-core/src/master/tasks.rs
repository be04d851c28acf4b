//! Offers and the task life cycle: allocation cycles turned into OFFERS events, offer expiry and
//! rescinds, status updates delivered to frameworks and resent until acknowledged.

use super::state::{OfferRec, State, TaskKey};
use crate::allocator::PUBLIC_ROLE;
use crate::proto::scheduler::Event;
use crate::proto::{Id, Offer, TaskState, TaskStatus};
use std::collections::BTreeMap;
use tokio::time::Instant;

/// Status history kept per task.
const STATUSES_KEPT: usize = 16;

impl State {
    /// Records a status update and queues it for the framework. Updates carrying a uuid are
    /// delivered one at a time per task and resent until acknowledged.
    pub(super) fn update_task(&mut self, key: &TaskKey, status: TaskStatus, now: Instant) {
        let Some(t) = self.tasks.get_mut(key) else {
            return;
        };
        t.state = status.state;
        t.statuses.push(status.clone());
        if t.statuses.len() > STATUSES_KEPT {
            t.statuses.remove(0);
        }
        let releases = status.state.is_terminal() || status.state == TaskState::Unreachable;
        if status.uuid.is_some() {
            t.pending.push_back(status);
            if t.pending.len() == 1 {
                t.last_sent = None;
                self.unacked.insert(key.clone());
                self.send_head(key, now);
            }
        } else {
            self.send_to_framework(&key.0, Event::Update(status));
        }
        if releases {
            self.release_resources(key);
        }
        self.complete_if_done(key);
    }

    /// Sends the head of a task's pending updates, if its framework is connected.
    fn send_head(&mut self, key: &TaskKey, now: Instant) {
        let Some(t) = self.tasks.get_mut(key) else {
            return;
        };
        let Some(head) = t.pending.front() else {
            return;
        };
        let Some(f) = self.frameworks.get(&key.0) else {
            return;
        };
        if let Some(s) = &f.stream
            && s.send(&key.0, Event::Update(head.clone()))
        {
            t.last_sent = Some(now);
        }
    }

    /// ACKNOWLEDGE: the head update with this uuid is delivered; the next one goes out.
    pub(super) fn acknowledge(&mut self, key: &TaskKey, uuid: &str, now: Instant) {
        let Some(t) = self.tasks.get_mut(key) else {
            return;
        };
        if t.pending.front().and_then(|s| s.uuid.as_deref()) != Some(uuid) {
            return;
        }
        t.pending.pop_front();
        t.last_sent = None;
        if t.pending.is_empty() {
            // Most tasks sit idle with nothing pending: give the queue's buffer back.
            t.pending = Default::default();
            self.unacked.remove(key);
        } else {
            self.send_head(key, now);
        }
        self.complete_if_done(key);
    }

    /// Terminal tasks whose updates are all acknowledged move to the completed list.
    fn complete_if_done(&mut self, key: &TaskKey) {
        let done = self
            .tasks
            .get(key)
            .is_some_and(|t| t.state.is_terminal() && t.pending.is_empty());
        if done {
            self.unacked.remove(key);
            if let Some(t) = self.remove_task(key) {
                *self.completed_by_state.entry(t.state.name()).or_default() += 1;
                self.completed_tasks.push(t);
            }
        }
    }

    pub(super) fn retry_updates(&mut self, now: Instant) {
        let retry = self.cfg.status_update_retry;
        let due: Vec<TaskKey> = self
            .unacked
            .iter()
            .filter(|k| {
                self.tasks.get(*k).is_some_and(|t| match t.last_sent {
                    None => true,
                    Some(at) => now.saturating_duration_since(at) >= retry,
                })
            })
            .cloned()
            .collect();
        for k in due {
            self.send_head(&k, now);
        }
    }

    /// Counts a live task's resources in the allocator (idempotent).
    pub(super) fn hold_resources(&mut self, key: &TaskKey) {
        let Some(t) = self.tasks.get_mut(key) else {
            return;
        };
        if t.holds_resources || t.state.is_terminal() || t.state == TaskState::Unreachable {
            return;
        }
        t.holds_resources = true;
        self.alloc
            .allocate_to(&t.framework_id, &t.agent_id, &t.resources);
    }

    /// Gives a task's resources back to the allocator (idempotent).
    pub(super) fn release_resources(&mut self, key: &TaskKey) {
        let Some(t) = self.tasks.get_mut(key) else {
            return;
        };
        if !t.holds_resources {
            return;
        }
        t.holds_resources = false;
        self.alloc
            .recover(&t.framework_id, &t.agent_id, &t.resources);
        self.alloc_pending = true;
    }

    pub(super) fn send_to_framework(&self, framework_id: &str, event: Event) -> bool {
        self.frameworks
            .get(framework_id)
            .and_then(|f| f.stream.as_ref())
            .is_some_and(|s| s.send(framework_id, event))
    }

    /// Runs an allocation cycle and sends the offers.
    pub(super) fn allocate(&mut self, now: Instant) {
        let started = std::time::Instant::now();
        let out = self.alloc.allocate(now);
        let took = started.elapsed().as_secs_f64();
        self.metrics.allocation_cycles += 1;
        self.metrics.allocation_last_seconds = took;
        self.metrics.allocation_seconds_total += took;
        self.alloc_pending = false;
        self.next_alloc = now + self.cfg.allocation_interval;
        for u in &out.unoffered {
            tracing::trace!(agent = %u.agent, reason = %u.message(), "agent not offered");
        }
        let mut by_framework: BTreeMap<String, Vec<Offer>> = BTreeMap::new();
        for g in out.grants {
            let Some(agent) = self.agents.get(&g.agent) else {
                continue;
            };
            let id = uuid::Uuid::new_v4().to_string();
            let reserved = (g.role == PUBLIC_ROLE && agent.public).then_some(PUBLIC_ROLE);
            by_framework
                .entry(g.framework.clone())
                .or_default()
                .push(Offer {
                    id: Id::new(&id),
                    framework_id: Id::new(&g.framework),
                    agent_id: Id::new(&g.agent),
                    hostname: agent.hostname.clone(),
                    resources: g.resources.to_mesos(reserved, Some(&g.role)),
                    attributes: agent.attributes.clone(),
                });
            self.offers.insert(
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
            self.metrics.offers_total += ids.len() as u64;
            if !self.send_to_framework(&fid, Event::Offers(offers)) {
                // Nobody to receive them: give the resources straight back.
                for id in ids {
                    if let Some(o) = self.offers.remove(&id) {
                        self.alloc
                            .recover(&o.framework_id, &o.agent_id, &o.resources);
                    }
                }
            }
        }
    }

    /// Withdraws an offer: resources back to the allocator, RESCIND to the framework.
    pub(super) fn rescind_offer(&mut self, offer_id: &str) {
        if let Some(o) = self.offers.remove(offer_id) {
            self.alloc
                .recover(&o.framework_id, &o.agent_id, &o.resources);
            self.send_to_framework(&o.framework_id, Event::Rescind(Id::new(offer_id)));
            self.alloc_pending = true;
        }
    }

    pub(super) fn rescind_agent_offers(&mut self, agent_id: &str) {
        let ids: Vec<String> = self
            .offers
            .iter()
            .filter(|(_, o)| o.agent_id == agent_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.rescind_offer(&id);
        }
    }

    pub(super) fn expire_offers(&mut self, now: Instant) {
        let timeout = self.cfg.offer_timeout;
        let ids: Vec<String> = self
            .offers
            .iter()
            .filter(|(_, o)| now.saturating_duration_since(o.created) >= timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            tracing::debug!(offer = %id, "offer timed out: rescinded");
            self.rescind_offer(&id);
        }
    }
}
