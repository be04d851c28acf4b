//! [`Launcher`]: coalesces the executor's per-node `create` calls into one `RunInstances` per pool
//! and zone.
//!
//! The executor creates the nodes of a wave concurrently (up to `--parallelism`), one call per node.
//! The first call for a (pool, subnet) opens a batch and becomes its leader: it waits a short
//! gathering window, during which the other calls of the same wave join, then launches the whole
//! batch at once and hands every member its instance. No task is spawned: the leader runs the batch
//! inside its own call, so a cancelled apply cancels it too (members then see a transient error and
//! the executor's retry finds the instances by tag).
//!
//! Before launching, the leader looks up the pool's live instances by tag, so nodes an earlier,
//! interrupted apply already launched are adopted (and tagged if they were not yet) instead of
//! launched twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::instances::{Instance, NodeSlot, PoolTemplate};
use crate::network::Subnet;
use crate::{AwsError, Ec2};

type Reply = oneshot::Sender<Result<Instance, AwsError>>;

struct Pending {
    template: Arc<PoolTemplate>,
    subnet: Subnet,
    members: Vec<(NodeSlot, Reply)>,
}

/// Launches instances in batches. One per apply, shared by all node tasks.
pub struct Launcher {
    ec2: Ec2,
    window: Duration,
    pending: Mutex<HashMap<(String, String), Pending>>,
    calls: std::sync::atomic::AtomicUsize,
}

impl Launcher {
    /// A launcher gathering concurrent calls for `window` (50 ms is plenty: the executor starts a
    /// wave's nodes within a few milliseconds of each other).
    pub fn new(ec2: Ec2, window: Duration) -> Launcher {
        Launcher {
            ec2,
            window,
            pending: Mutex::new(HashMap::new()),
            calls: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// How many `RunInstances` calls this launcher made.
    pub fn run_instances_calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The instance for `node` of pool `template` in `subnet`: an existing one if an earlier apply
    /// launched it, else a new one, launched together with the other nodes asked for meanwhile.
    pub async fn launch(
        &self,
        template: Arc<PoolTemplate>,
        subnet: Subnet,
        node: NodeSlot,
    ) -> Result<Instance, AwsError> {
        let key = (template.pool.clone(), subnet.id.clone());
        let (tx, rx) = oneshot::channel();
        let leader = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            match pending.get_mut(&key) {
                Some(p) => {
                    p.members.push((node.clone(), tx));
                    false
                }
                None => {
                    pending.insert(
                        key.clone(),
                        Pending {
                            template,
                            subnet,
                            members: vec![(node.clone(), tx)],
                        },
                    );
                    true
                }
            }
        };
        if leader {
            tokio::time::sleep(self.window).await;
            let batch = self
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            if let Some(batch) = batch {
                self.run(batch).await;
            }
        }
        match rx.await {
            Ok(r) => r,
            // The leader's call was dropped (the apply is being cancelled): nothing is lost, the
            // next attempt finds whatever was launched by its tags.
            Err(_) => Err(AwsError {
                transient: true,
                ..AwsError::other(
                    "RunInstances",
                    &node.name,
                    "the batch this node was in was cancelled",
                )
            }),
        }
    }

    async fn run(&self, batch: Pending) {
        let Pending {
            template: t,
            subnet,
            members,
        } = batch;
        let existing = match self.ec2.live_instances(&t.cluster, Some(&t.pool)).await {
            Ok(v) => v,
            Err(e) => {
                for (_, reply) in members {
                    let _ = reply.send(Err(e.clone()));
                }
                return;
            }
        };
        let mut to_launch: Vec<(NodeSlot, Reply)> = Vec::new();
        let mut adopted: Vec<(Instance, Reply)> = Vec::new();
        for (slot, reply) in members {
            // Should two instances ever claim one node, the first found is kept; destroy (by tag) removes both.
            match existing
                .iter()
                .find(|i| i.node.as_deref() == Some(slot.name.as_str()))
            {
                Some(i) => adopted.push((i.clone(), reply)),
                None => to_launch.push((slot, reply)),
            }
        }
        if !adopted.is_empty() {
            let untagged: Vec<Instance> = adopted
                .iter()
                .filter(|(i, _)| !i.node_tagged)
                .map(|(i, _)| i.clone())
                .collect();
            let ids: Vec<String> = adopted.iter().map(|(i, _)| i.id.clone()).collect();
            let result = async {
                self.ec2.tag_nodes(&t, &untagged).await?;
                // A stopped instance is started by `start` on a later apply; here only a pending
                // one is waited for.
                if adopted.iter().any(|(i, _)| i.state == "pending") {
                    self.ec2
                        .wait_for_state(&ids, "running", crate::WaitPolicy::default())
                        .await
                } else {
                    Ok(adopted.iter().map(|(i, _)| i.clone()).collect())
                }
            }
            .await;
            for (i, reply) in adopted {
                let _ = reply.send(match &result {
                    Ok(now) => Ok(now.iter().find(|n| n.id == i.id).cloned().unwrap_or(i)),
                    Err(e) => Err(e.clone()),
                });
            }
        }
        if to_launch.is_empty() {
            return;
        }
        // A fresh token per batch: a retried call (same token) is answered with the same
        // instances, but a later launch of the same node names (after a scale-down) is not.
        let token = uuid_like();
        let slots: Vec<NodeSlot> = to_launch.iter().map(|(s, _)| s.clone()).collect();
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.ec2.run_batch(&t, &subnet, &slots, &token).await {
            Ok(instances) => {
                for ((_, reply), i) in to_launch.into_iter().zip(instances) {
                    let _ = reply.send(Ok(i));
                }
            }
            Err(e) => {
                for (_, reply) in to_launch {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// 32 random hex digits: a client token (EC2 allows up to 64 ASCII characters).
fn uuid_like() -> String {
    use rand::RngExt;
    let mut r = rand::rng();
    format!("{:016x}{:016x}", r.random::<u64>(), r.random::<u64>())
}

/// An instance to terminate and who waits for it.
type Waiter = (String, oneshot::Sender<Result<(), AwsError>>);

/// Coalesces per-node terminations into one `TerminateInstances`, as [`Launcher`] does for launches.
/// Does not wait for the instances to be gone (teardown does, before deleting the network).
pub struct Terminator {
    ec2: Ec2,
    window: Duration,
    pending: Mutex<Option<Vec<Waiter>>>,
    calls: std::sync::atomic::AtomicUsize,
}

impl Terminator {
    /// A terminator gathering concurrent calls for `window`.
    pub fn new(ec2: Ec2, window: Duration) -> Terminator {
        Terminator {
            ec2,
            window,
            pending: Mutex::new(None),
            calls: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// How many `TerminateInstances` calls this terminator made.
    pub fn terminate_calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Terminates instance `id` together with the others asked for meanwhile. Gone already is fine.
    pub async fn terminate(&self, id: String) -> Result<(), AwsError> {
        let (tx, rx) = oneshot::channel();
        let leader = {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            match p.as_mut() {
                Some(v) => {
                    v.push((id.clone(), tx));
                    false
                }
                None => {
                    *p = Some(vec![(id.clone(), tx)]);
                    true
                }
            }
        };
        if leader {
            tokio::time::sleep(self.window).await;
            let batch = self
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or_default();
            let ids: Vec<String> = batch.iter().map(|(i, _)| i.clone()).collect();
            self.calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let r = self.ec2.terminate(&ids).await;
            for (_, reply) in batch {
                let _ = reply.send(r.clone());
            }
        }
        rx.await.unwrap_or_else(|_| {
            Err(AwsError {
                transient: true,
                ..AwsError::other(
                    "TerminateInstances",
                    &id,
                    "the batch this instance was in was cancelled",
                )
            })
        })
    }
}
