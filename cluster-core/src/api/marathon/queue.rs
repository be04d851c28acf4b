//! `/v2/queue`: the apps waiting for instances, with why offers were not used.

use super::apps::app_json;
use super::{MarathonState, snapshot};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use dccore_api::marathon::answers::{OffersSummary, Queue, QueueDelay, QueueEntry, RejectSummary};

pub(super) async fn queue(State(h): State<MarathonState>) -> Response {
    let s = match snapshot(&h).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let queue = s
        .apps
        .iter()
        .filter(|a| a.waiting > 0)
        .map(|a| {
            let e = &a.entry;
            let unused: u64 = e.refusals.values().sum();
            let summary = e
                .refusals
                .iter()
                .map(|(r, n)| RejectSummary {
                    reason: (*r).to_string(),
                    declined: *n,
                    processed: e.offers_processed,
                })
                .collect();
            QueueEntry {
                app: app_json(a, &s.instances, false),
                count: a.waiting,
                delay: QueueDelay {
                    time_left_seconds: a.delay_secs.map_or(0, |d| d.ceil() as u64),
                    overdue: a.delay_secs.is_none(),
                },
                processed_offers_summary: OffersSummary {
                    processed_offers_count: e.offers_processed,
                    unused_offers_count: unused,
                    reject_summary_last_offers: summary,
                },
                // dccore: the last refusal in words (which constraint, which resource).
                last_unused_offer_reason: e.last_refusal.clone(),
            }
        })
        .collect();
    axum::Json(Queue { queue }).into_response()
}
