//! Offer matching for [`Core`]: the instances apps wait for are dealt out over the offers of
//! one batch ([`placement`] says whether one fits), and the offers nothing fits are declined.

use super::{Action, Core, Instance};
use crate::proto::{Resources, TaskInfo, TaskState};
use crate::services::launch::{take, task_info};
use crate::services::placement::{self, OfferView, Placed, Refusal};
use dccore_api::marathon::AppId;
use std::collections::BTreeMap;
use std::time::Instant;

/// Refuse offers this long when nothing waits (a change REVIVEs).
pub(super) const IDLE_REFUSE_SECS: f64 = 30.0;
/// Refuse offers this long when an app waits but could not use them.
pub(super) const WAITING_REFUSE_SECS: f64 = 1.0;

impl Core {
    /// Uses offers: launches what fits, declines the rest.
    ///
    /// An app's instances are dealt out over the offers one at a time, round after round, until
    /// it has what it needs or every offer refused: a deploy spreads over the agents offered at
    /// once (their launches then run side by side, and losing one agent loses a share, not the
    /// app), as Marathon's per-offer instance cap spreads its launches.
    pub fn on_offers(
        &mut self,
        offers: &[OfferView],
        now: Instant,
        epoch_secs: f64,
        new_id: &mut dyn FnMut() -> String,
    ) -> Vec<Action> {
        // Per offer: what is left of it, and the tasks it launches.
        let mut left: Vec<BTreeMap<String, Resources>> =
            offers.iter().map(|o| o.by_role.clone()).collect();
        let mut tasks: Vec<Vec<TaskInfo>> = vec![Vec::new(); offers.len()];
        let ids: Vec<AppId> = self.apps.keys().cloned().collect();
        for id in ids {
            let Some(e) = self.apps.get(&id) else {
                continue;
            };
            let mut need = self.needed(&id, e);
            if need == 0 || e.launch_after.is_some_and(|t| now < t) {
                continue;
            }
            let (app, version) = (e.app.clone(), e.version.clone());
            // Where the app's instances are, for its constraints: built once, then each new
            // instance is added (rebuilding it per instance made a deploy quadratic).
            let mut placed: Vec<Placed> = self
                .instances_of(&id)
                .filter(|i| i.active())
                .map(|i| Placed {
                    hostname: i.host.clone(),
                    attributes: i.attributes.clone(),
                })
                .collect();
            // Offers that may still take an instance of this app, and whether each was looked at.
            let mut open = vec![true; offers.len()];
            let mut looked = vec![false; offers.len()];
            let mut refusals: Vec<Refusal> = Vec::new();
            while need > 0 && open.contains(&true) {
                for (k, offer) in offers.iter().enumerate() {
                    if need == 0 {
                        break;
                    }
                    if !open[k] {
                        continue;
                    }
                    looked[k] = true;
                    let fit = match placement::fit(&app, offer, &left[k], &placed) {
                        Ok(fit) => fit,
                        Err(r) => {
                            open[k] = false;
                            refusals.push(r);
                            continue;
                        }
                    };
                    take(&mut left[k], &app, &fit.resources);
                    let task_id = format!("{}.{}", id.task_prefix(), new_id());
                    tasks[k].push(task_info(&app, &version, &task_id, offer, &fit));
                    placed.push(Placed {
                        hostname: offer.hostname.clone(),
                        attributes: offer.attributes.clone(),
                    });
                    self.instances.insert(
                        task_id.clone(),
                        Instance {
                            task_id,
                            app: id.to_string(),
                            version: version.clone(),
                            agent_id: offer.agent_id.clone(),
                            host: offer.hostname.clone(),
                            attributes: offer.attributes.clone(),
                            ports: fit.ports,
                            state: TaskState::Staging,
                            staged_at: epoch_secs,
                            started_at: None,
                            killing: false,
                            healthy: None,
                            failures: 0,
                            running_since: None,
                            next_check: None,
                        },
                    );
                    need -= 1;
                }
            }
            if let Some(e) = self.apps.get_mut(&id) {
                e.offers_processed += looked.iter().filter(|l| **l).count() as u64;
                for r in refusals {
                    *e.refusals.entry(r.label).or_default() += 1;
                    e.last_refusal = Some(r.detail);
                }
            }
        }
        let mut out = Vec::new();
        let mut declined = Vec::new();
        for (offer, tasks) in offers.iter().zip(tasks) {
            if tasks.is_empty() {
                declined.push(offer.offer_id.clone());
            } else {
                out.push(Action::Launch {
                    offer_id: offer.offer_id.clone(),
                    tasks,
                });
            }
        }
        if !declined.is_empty() {
            let refuse_seconds = if self.waiting().is_empty() {
                IDLE_REFUSE_SECS
            } else {
                WAITING_REFUSE_SECS
            };
            out.push(Action::Decline {
                offer_ids: declined,
                refuse_seconds,
            });
        }
        out
    }
}
