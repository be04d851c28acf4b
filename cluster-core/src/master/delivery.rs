//! Status updates to frameworks: the head of each task's pending updates is sent, resent every
//! `status_update_retry` until acknowledged, then the next one goes out. What is pending is
//! cluster state (the tasks table); when it was sent is this master's (`Local::last_sent`).

use super::state::State;
use super::tables::{Change, TaskKey};
use crate::proto::scheduler::Event;
use tokio::time::Instant;

impl State {
    /// Sends the head of a task's pending updates, if its framework is connected.
    pub(super) fn send_head(&mut self, key: &TaskKey, now: Instant) {
        let Some(head) = self.tables.tasks.get(key).and_then(|t| t.pending.front()) else {
            return;
        };
        if self.conns.send(&key.0, Event::Update(head.clone())) {
            self.local.last_sent.insert(key.clone(), now);
        }
    }

    /// ACKNOWLEDGE: the head update with this uuid is delivered; the next one goes out.
    pub(super) fn acknowledge(&mut self, key: &TaskKey, uuid: &str, now: Instant) {
        self.apply(
            Change::TaskStatusAcknowledged {
                framework_id: key.0.clone(),
                task_id: key.1.clone(),
                uuid: uuid.to_string(),
            },
            now,
        );
    }

    /// Resends heads that were never sent (framework away) or not acknowledged in time.
    pub(super) fn retry_updates(&mut self, now: Instant) {
        let retry = self.cfg.status_update_retry;
        let due: Vec<TaskKey> = self
            .tables
            .tasks
            .unacked()
            .filter(|k| match self.local.last_sent.get(*k) {
                None => true,
                Some(at) => now.saturating_duration_since(*at) >= retry,
            })
            .cloned()
            .collect();
        for k in due {
            self.send_head(&k, now);
        }
    }
}
