//! Status updates to frameworks: the head of each task's pending updates is sent, resent until
//! acknowledged — after `status_update_retry`, then twice, four, eight times that (Mesos' agents
//! back off their status update retries too) — then the next one goes out. What is pending is
//! cluster state (the tasks table); when it was sent, and how often, is this master's
//! (`Local::last_sent`).
//!
//! Why back off: a framework that acknowledges slower than the retry interval was sent every
//! pending update again each interval, and the duplicates slowed its acknowledgements further
//! (`master_http` at 10,000 agents: the rate fell to 496 launches/s and the framework's process
//! grew to 3.5 GB).

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
            // The entry goes when the head is acknowledged or replaced, so a count kept here
            // counts the sends of this head only.
            let times = self.local.last_sent.get(key).map_or(0, |(_, n)| *n);
            self.local
                .last_sent
                .insert(key.clone(), (now, times.saturating_add(1)));
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
                Some((at, times)) => now.saturating_duration_since(*at) >= backoff(retry, *times),
            })
            .cloned()
            .collect();
        for k in due {
            self.send_head(&k, now);
        }
    }
}

/// The wait before resending a head sent `times` times: `retry`, doubled with each send, at most
/// eight times `retry`.
fn backoff(retry: std::time::Duration, times: u32) -> std::time::Duration {
    retry * (1u32 << times.saturating_sub(1).min(3))
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn resends_back_off_from_the_retry_interval_to_eight_times_it() {
        let r = Duration::from_secs(5);
        let waits: Vec<u64> = (1..=6).map(|n| backoff(r, n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 40, 40]);
        assert_eq!(backoff(r, 0), r, "never sent counts as once");
    }
}
