//! The owner loop's side of service discovery: it notes which applied changes touch what DNS
//! shows, and publishes a [`Snapshot`] (pointers to the running, healthy tasks:
//! [`super::tables::TaskRec::discoverable`]; the agent and framework
//! maps) on a `watch` channel at the end of a loop turn. Readers build the records from it
//! ([`crate::discovery::Directory`]), off the owner task.
//!
//! Cheap on the owner task: a change that touches no task, agent or framework marks nothing; a
//! publish is one pass over the live tasks copying `Arc`s; the agent and framework maps are
//! rebuilt only after a change to them; and publishes are at least [`PUBLISH_GAP`] apart, so a
//! burst of thousands of updates costs a few publishes (the last change of a burst is published
//! by the next housekeeping tick at the latest, 100 ms).

use super::tables::{Change, Tables};
use crate::discovery::{AgentAddr, FrameworkName, Masters, Snapshot};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The least time between two publishes.
pub const PUBLISH_GAP: Duration = Duration::from_millis(10);

/// The feed: what changed since the last publish, and the channel.
pub struct Feed {
    tx: watch::Sender<Arc<Snapshot>>,
    masters: Masters,
    default_task_user: Arc<str>,
    version: u64,
    tasks_dirty: bool,
    agents_dirty: bool,
    frameworks_dirty: bool,
    agents: Arc<BTreeMap<String, AgentAddr>>,
    frameworks: Arc<BTreeMap<String, FrameworkName>>,
    last: Option<Instant>,
    /// This master's own address, `leader.<domain>` while it leads.
    own: Option<IpAddr>,
    /// A follower's last publish: the log index applied and the leader it named.
    followed: Option<(Option<u64>, Option<IpAddr>)>,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Feed {
    /// A feed whose first snapshot (published at the first loop turn) has the masters.
    pub fn new(masters: Masters, default_task_user: &str) -> Feed {
        let (tx, _) = watch::channel(Arc::new(Snapshot {
            masters: masters.clone(),
            default_task_user: default_task_user.into(),
            ..Default::default()
        }));
        Feed {
            tx,
            own: masters.leader,
            followed: None,
            masters,
            default_task_user: default_task_user.into(),
            version: 0,
            tasks_dirty: true,
            agents_dirty: true,
            frameworks_dirty: true,
            agents: Default::default(),
            frameworks: Default::default(),
            last: None,
        }
    }

    /// A receiver of the snapshots (the DNS server's and the HTTP API's).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    /// Notes what an applied (effective) change touched.
    pub fn touched(&mut self, change: &Change) {
        match change {
            // An agent's address or reachability: its tasks' records may change too (an
            // unreachable agent's tasks become TASK_UNREACHABLE through task changes).
            Change::AgentRegistered { .. }
            | Change::AgentUnreachable { .. }
            | Change::AgentRemoved { .. } => {
                self.agents_dirty = true;
                self.tasks_dirty = true;
            }
            Change::FrameworkAdded { .. }
            | Change::FrameworkFailedOver { .. }
            | Change::FrameworkRemoved { .. } => {
                self.frameworks_dirty = true;
                self.tasks_dirty = true;
            }
            Change::TaskAdded { .. }
            | Change::TaskReported { .. }
            | Change::TaskStatusUpdated { .. }
            | Change::TaskHealthReported { .. } => self.tasks_dirty = true,
            // Operator state and acknowledgements change nothing DNS shows.
            _ => {}
        }
    }

    /// A follower's publish. Its owner loop fills its own tables only when it takes the lead, so
    /// it shows the committed tables of its replica (which follow the log) and names the
    /// group's leader for `leader.<domain>`: once per newly applied entry or change of leader.
    /// (It answered from the tables it had, and named itself the leader.)
    pub fn publish_followed(
        &mut self,
        tables: &Tables,
        applied: Option<u64>,
        leader: Option<IpAddr>,
        now: Instant,
    ) {
        if self.followed == Some((applied, leader))
            || self
                .last
                .is_some_and(|l| now.duration_since(l) < PUBLISH_GAP)
        {
            return;
        }
        self.masters.leader = leader;
        self.tasks_dirty = true;
        self.agents_dirty = true;
        self.frameworks_dirty = true;
        self.publish(tables, now);
        self.followed = Some((applied, leader));
    }

    /// This master leads (again): `leader.<domain>` is its own address, and the next publish
    /// is from its own tables.
    pub fn lead(&mut self) {
        self.masters.leader = self.own;
        self.followed = None;
        self.tasks_dirty = true;
        self.agents_dirty = true;
        self.frameworks_dirty = true;
    }

    /// Publishes a snapshot if something changed and the last publish is [`PUBLISH_GAP`] ago.
    pub fn publish(&mut self, tables: &Tables, now: Instant) {
        if !(self.tasks_dirty || self.agents_dirty || self.frameworks_dirty) {
            return;
        }
        if self
            .last
            .is_some_and(|l| now.duration_since(l) < PUBLISH_GAP)
        {
            return;
        }
        if self.agents_dirty {
            self.agents = Arc::new(
                tables
                    .agents
                    .iter()
                    .map(|a| {
                        (
                            a.info.id.clone(),
                            AgentAddr::of(&a.info.url, &a.info.hostname),
                        )
                    })
                    .collect(),
            );
        }
        if self.frameworks_dirty {
            self.frameworks = Arc::new(
                tables
                    .frameworks
                    .iter()
                    .map(|f| {
                        (
                            f.id.clone(),
                            FrameworkName {
                                name: f.info.name.clone(),
                                principal: f.principal.clone(),
                            },
                        )
                    })
                    .collect(),
            );
        }
        self.version += 1;
        let snapshot = Snapshot {
            version: self.version,
            masters: self.masters.clone(),
            tasks: tables
                .tasks
                .shared()
                .filter(|t| t.discoverable())
                .cloned()
                .collect(),
            agents: self.agents.clone(),
            frameworks: self.frameworks.clone(),
            default_task_user: self.default_task_user.clone(),
        };
        // Kept even with no receiver: a reader that subscribes later sees the newest one.
        self.tx.send_replace(Arc::new(snapshot));
        self.tasks_dirty = false;
        self.agents_dirty = false;
        self.frameworks_dirty = false;
        self.last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_publish_happens_only_after_a_change_that_touches_dns_and_not_twice_within_the_gap() {
        let tables = Tables::new(10, 10);
        let mut feed = Feed::new(Masters::default(), "nobody");
        let rx = feed.subscribe();
        let t0 = Instant::now();
        feed.publish(&tables, t0);
        assert_eq!(rx.borrow().version, 1, "the first turn publishes");
        feed.publish(&tables, t0 + Duration::from_secs(1));
        assert_eq!(rx.borrow().version, 1, "nothing changed");
        feed.touched(&Change::AgentDeactivated {
            agent_id: "a".into(),
        });
        feed.publish(&tables, t0 + Duration::from_secs(2));
        assert_eq!(rx.borrow().version, 1, "operator state is not in DNS");
        feed.touched(&Change::FrameworkRemoved {
            framework_id: "f".into(),
        });
        feed.publish(&tables, t0 + Duration::from_secs(3));
        assert_eq!(rx.borrow().version, 2);
        feed.touched(&Change::FrameworkRemoved {
            framework_id: "f".into(),
        });
        feed.publish(&tables, t0 + Duration::from_secs(3) + PUBLISH_GAP / 2);
        assert_eq!(rx.borrow().version, 2, "within the gap: later");
        feed.publish(&tables, t0 + Duration::from_secs(3) + PUBLISH_GAP);
        assert_eq!(rx.borrow().version, 3);
    }

    #[tokio::test]
    async fn a_follower_publishes_per_applied_entry_naming_the_leader_and_a_leader_names_itself() {
        let ip = |s: &str| -> IpAddr { s.parse().expect("ip") };
        let tables = Tables::new(10, 10);
        let own = Masters {
            leader: Some(ip("10.0.0.1")),
            all: vec![ip("10.0.0.1"), ip("10.0.0.2")],
        };
        let mut feed = Feed::new(own, "nobody");
        let rx = feed.subscribe();
        let t0 = Instant::now();
        let later = |n: u32| t0 + PUBLISH_GAP * (2 * n);
        feed.publish_followed(&tables, Some(5), Some(ip("10.0.0.2")), later(1));
        assert_eq!(rx.borrow().version, 1);
        assert_eq!(
            rx.borrow().masters.leader,
            Some(ip("10.0.0.2")),
            "the leader, not itself"
        );
        feed.publish_followed(&tables, Some(5), Some(ip("10.0.0.2")), later(2));
        assert_eq!(rx.borrow().version, 1, "nothing new applied");
        feed.publish_followed(&tables, Some(6), Some(ip("10.0.0.2")), later(3));
        assert_eq!(rx.borrow().version, 2, "a newly applied entry");
        feed.publish_followed(&tables, Some(6), None, later(4));
        assert_eq!(rx.borrow().version, 3, "the leader changed (none known)");
        assert_eq!(rx.borrow().masters.leader, None);
        feed.lead();
        feed.publish(&tables, later(5));
        assert_eq!(rx.borrow().version, 4);
        assert_eq!(
            rx.borrow().masters.leader,
            Some(ip("10.0.0.1")),
            "itself again"
        );
    }
}
