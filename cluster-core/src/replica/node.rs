//! [`Replica`]: one master's member of the Raft group, and everything the master does with it.
//!
//! How the leader's owner loop is meant to use it ("act after commit"):
//! 1. while [`Leadership::is_leader`], apply each [`Command`]'s change to its in-memory tables
//!    at once, collect the commands of one loop turn into a batch, and [`Replica::propose`] it;
//! 2. hold every effect visible outside (replies, deliveries, launches) until that batch's
//!    `propose` resolves `Ok`;
//! 3. when leadership is lost (`is_leader` false, or `propose` fails), drop the in-memory state
//!    and rebuild it from [`Replica::state`], which holds exactly the committed commands.

use super::log_store::{self, LogStore};
use super::machine::{MachineState, StateMachine};
use super::network::{Network, PeerLink, RpcKind, SnapshotRpc};
use super::{ClientWriteErrorOf, Command, NodeId, ReplicaConfig, ReplicaError, TypeConfig};
use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::{BasicNode, Raft, ServerState, Snapshot};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Who leads the group, as this replica sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leadership {
    /// The leader's id and URL, if one is known.
    pub leader: Option<(NodeId, String)>,
    /// This replica leads and a majority acknowledged it within the election timeout. A
    /// leader cut off from the majority turns false within about one election timeout, before
    /// the majority can have elected another: it must stop acting as leader then.
    pub is_leader: bool,
    /// The current term.
    pub term: u64,
}

/// A proposed batch is committed (and applied to this replica's state machine).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The log index of the entry that holds the batch.
    pub index: u64,
}

/// One master's member of the Raft group.
pub struct Replica {
    id: NodeId,
    raft: Raft<TypeConfig>,
    state: Arc<RwLock<MachineState>>,
    log: LogStore,
    leadership: watch::Receiver<Leadership>,
    watcher: JoinHandle<()>,
}

impl Replica {
    /// Opens the store `<work_dir>/raft.redb` (creating it empty) and starts the Raft core. A
    /// replica restarted from its disk resumes its term, log and snapshot; one with an empty
    /// disk waits to be initialised ([`Replica::initialize`]) or added by a leader.
    pub async fn start(
        config: ReplicaConfig,
        link: Arc<dyn PeerLink>,
    ) -> Result<Replica, ReplicaError> {
        let path = config.store_path();
        let store_error = |source: Box<dyn std::error::Error + Send + Sync>| ReplicaError::Store {
            path: path.clone(),
            source,
        };
        let db = log_store::open(&path).map_err(|e| store_error(Box::new(e)))?;
        let limits = (
            config.max_completed_frameworks,
            config.max_completed_tasks_per_framework,
        );
        let machine =
            StateMachine::load(db.clone(), limits).map_err(|e| store_error(Box::new(e)))?;
        let state = machine.shared();
        let log = LogStore::new(db);
        let raft_config = Arc::new(config.raft_config()?);
        let raft = Raft::new(
            config.id,
            raft_config,
            Network::new(link),
            log.clone(),
            machine,
        )
        .await
        .map_err(|e| ReplicaError::Stopped(Box::new(e)))?;
        let (tx, rx) = watch::channel(Leadership {
            leader: None,
            is_leader: false,
            term: 0,
        });
        let watcher = tokio::spawn(watch_leadership(
            raft.clone(),
            tx,
            config.heartbeat,
            config.election_timeout.0,
        ));
        Ok(Replica {
            id: config.id,
            raft,
            state,
            log,
            leadership: rx,
            watcher,
        })
    }

    /// This replica's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Makes a new group of `members` (id → URL), this replica among them. Only for the very
    /// first start of a group, on one replica; on an initialised replica it does nothing.
    pub async fn initialize(&self, members: BTreeMap<NodeId, String>) -> Result<(), ReplicaError> {
        let initialised = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| ReplicaError::Stopped(Box::new(e)))?;
        if initialised {
            return Ok(());
        }
        let nodes: BTreeMap<NodeId, BasicNode> = members
            .into_iter()
            .map(|(id, url)| (id, BasicNode::new(url)))
            .collect();
        match self.raft.initialize(nodes).await {
            Ok(()) => Ok(()),
            // Another replica's leader reached this one first: the group exists.
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(ReplicaError::Stopped(Box::new(e))),
        }
    }

    /// Appends `batch` as one log entry; resolves once a majority has it and it is applied
    /// here. [`ReplicaError::NotLeader`] at once on a follower (with the leader, if known). On
    /// a leader cut off from the majority it does not resolve until the leader learns of its
    /// successor (then `NotLeader`): callers bound it by a deadline.
    pub async fn propose(&self, batch: Vec<Command>) -> Result<Committed, ReplicaError> {
        match self.raft.client_write(batch).await {
            Ok(r) => Ok(Committed {
                index: r.log_id.index,
            }),
            Err(e) => Err(write_error(e)),
        }
    }

    /// Leadership as it changes.
    pub fn leadership(&self) -> watch::Receiver<Leadership> {
        self.leadership.clone()
    }

    /// A copy of the committed state: tables, key space, and the log position they reflect.
    /// Cheap: tasks are shared behind `Arc`s until changed.
    pub fn state(&self) -> MachineState {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs `f` on the committed state without copying it (do not block in `f`: the state
    /// machine waits for it).
    pub fn with_state<T>(&self, f: impl FnOnce(&MachineState) -> T) -> T {
        f(&self.state.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Adds `id` at `url` as a learner (it receives the log but does not vote) and waits until
    /// it has caught up with the leader's log. Only on the leader.
    pub async fn add_learner(&self, id: NodeId, url: &str) -> Result<(), ReplicaError> {
        self.raft
            .add_learner(id, BasicNode::new(url), true)
            .await
            .map(drop)
            .map_err(membership_error)
    }

    /// Makes `voters` the voting members (learners among them are promoted; voters not in it
    /// are removed from the group). Only on the leader; committed through the log (joint
    /// consensus) before it resolves.
    pub async fn set_voters(&self, voters: BTreeSet<NodeId>) -> Result<(), ReplicaError> {
        self.raft
            .change_membership(voters, false)
            .await
            .map(drop)
            .map_err(membership_error)
    }

    /// Removes `id` from the group, as voter and learner. Only on the leader.
    pub async fn remove(&self, id: NodeId) -> Result<(), ReplicaError> {
        let voters: BTreeSet<NodeId> = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .filter(|v| *v != id)
            .collect();
        self.set_voters(voters).await?;
        let learners = openraft::ChangeMembers::RemoveNodes(BTreeSet::from([id]));
        match self.raft.change_membership(learners, false).await {
            Ok(_) => Ok(()),
            // Already gone with the voter change.
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(_))) => Ok(()),
            Err(e) => Err(membership_error(e)),
        }
    }

    /// The voting members and learners (id → URL) as of the last membership entry.
    pub fn members(&self) -> (BTreeMap<NodeId, String>, BTreeMap<NodeId, String>) {
        let m = self.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let (mut v, mut l) = (BTreeMap::new(), BTreeMap::new());
        for (id, node) in membership.nodes() {
            let side = if voters.contains(id) { &mut v } else { &mut l };
            side.insert(*id, node.addr.clone());
        }
        (v, l)
    }

    /// Log position: last entry index, last applied index, last purged index.
    pub fn log_position(&self) -> (Option<u64>, Option<u64>, Option<u64>) {
        let m = self.raft.metrics();
        let m = m.borrow();
        (
            m.last_log_index,
            m.last_applied.map(|l| l.index),
            m.purged.map(|l| l.index),
        )
    }

    /// The last entry in this replica's latest snapshot, and the last entry purged from its
    /// log (`None`: none yet): what shows the log does not grow without bound.
    pub fn snapshot_position(&self) -> (Option<u64>, Option<u64>) {
        let m = self.raft.metrics();
        let m = m.borrow();
        (m.snapshot.map(|l| l.index), m.purged.map(|l| l.index))
    }

    /// On the leader: the last log index each member is known to hold (`None` inside: not
    /// known yet). `None` on a follower.
    pub fn matched(&self) -> Option<BTreeMap<NodeId, Option<u64>>> {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.replication.as_ref().map(|r| {
            r.iter()
                .map(|(id, log)| (*id, log.map(|l| l.index)))
                .collect()
        })
    }

    /// Resolves once the entry at `index` (e.g. a [`Committed::index`]) is applied here.
    pub async fn wait_applied(&self, index: u64) -> Result<(), ReplicaError> {
        let mut metrics = self.raft.metrics();
        loop {
            if metrics
                .borrow_and_update()
                .last_applied
                .is_some_and(|l| l.index >= index)
            {
                return Ok(());
            }
            metrics
                .changed()
                .await
                .map_err(|e| ReplicaError::Stopped(Box::new(e)))?;
        }
    }

    /// Entries now in the store's log (bounded by snapshots and purges).
    pub fn log_len(&self) -> Result<u64, ReplicaError> {
        self.log
            .len()
            .map_err(|e| ReplicaError::Stopped(Box::new(e)))
    }

    /// Answers a peer's RPC (`body` is its JSON request; the answer is JSON of
    /// `Result<reply, RaftError>`). [`ReplicaError::BadRpc`] for a body this version cannot
    /// read, [`ReplicaError::Stopped`] when the core has stopped.
    pub async fn serve_rpc(&self, kind: RpcKind, body: &[u8]) -> Result<Vec<u8>, ReplicaError> {
        let bad = |source| ReplicaError::BadRpc { kind, source };
        let out = match kind {
            RpcKind::Append => {
                let rpc: AppendEntriesRequest<TypeConfig> =
                    serde_json::from_slice(body).map_err(bad)?;
                let r = self.raft.append_entries(rpc).await;
                stopped_if_fatal(&r)?;
                serde_json::to_vec(&r)
            }
            RpcKind::Vote => {
                let rpc: VoteRequest<NodeId> = serde_json::from_slice(body).map_err(bad)?;
                let r = self.raft.vote(rpc).await;
                stopped_if_fatal(&r)?;
                serde_json::to_vec(&r)
            }
            RpcKind::Snapshot => {
                let rpc: SnapshotRpc = serde_json::from_slice(body).map_err(bad)?;
                let snapshot = Snapshot {
                    meta: rpc.meta,
                    snapshot: Box::new(rpc.image),
                };
                let r = self
                    .raft
                    .install_full_snapshot(rpc.vote, snapshot)
                    .await
                    .map_err(|e| ReplicaError::Stopped(Box::new(e)))?;
                serde_json::to_vec(&Ok::<_, openraft::error::Fatal<NodeId>>(r))
            }
        };
        // Serialising openraft's own serde types cannot fail (no maps with non-string keys).
        out.map_err(|e| ReplicaError::Stopped(Box::new(e)))
    }

    /// Stops the Raft core and the leadership watcher while others still hold this replica (see
    /// [`Replica::shutdown`], which also closes the store).
    pub async fn stop_core(&self) {
        self.watcher.abort();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("raft core shutdown: {e}");
        }
    }

    /// Stops the Raft core and the leadership watcher; the store is closed when this returns,
    /// so a new replica may open it.
    pub async fn shutdown(self) -> Result<(), ReplicaError> {
        self.watcher.abort();
        let _ = self.watcher.await;
        let db = self.log.database();
        let r = self.raft.shutdown().await;
        drop(self.raft);
        drop(self.log);
        // openraft's state machine worker holds the store too and is dropped by its own task,
        // which may finish after `shutdown` returned; and whoever drops the last handle closes
        // the file in that drop. So this waits to hold the last handle and closes it here: when
        // this returns the file is closed (a master restarted at once found it still locked,
        // `DatabaseAlreadyOpen`: `tests/ha.rs`, `tests/ha_faults.rs`).
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while Arc::strong_count(&db) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if Arc::strong_count(&db) > 1 {
            tracing::warn!("the Raft store is still held 10 s after the replica stopped");
        }
        drop(db);
        r.map_err(|e| ReplicaError::Stopped(Box::new(e)))
    }
}

/// A fatal Raft error (the core stopped) is ours to report, not the peer's to handle.
fn stopped_if_fatal<T>(r: &Result<T, RaftError<NodeId>>) -> Result<(), ReplicaError> {
    match r {
        Err(RaftError::Fatal(f)) => Err(ReplicaError::Stopped(Box::new(f.clone()))),
        _ => Ok(()),
    }
}

fn write_error(e: RaftError<NodeId, ClientWriteErrorOf>) -> ReplicaError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ReplicaError::NotLeader {
            leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)),
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(_)) => {
            ReplicaError::Membership(Box::new(e))
        }
        RaftError::Fatal(f) => ReplicaError::Stopped(Box::new(f)),
    }
}

fn membership_error(e: RaftError<NodeId, ClientWriteErrorOf>) -> ReplicaError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => write_error(e),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(_)) => {
            ReplicaError::Membership(Box::new(e))
        }
        RaftError::Fatal(f) => ReplicaError::Stopped(Box::new(f)),
    }
}

/// Keeps `tx` current on every metrics change. While this replica leads, it confirms with a
/// majority (openraft's `get_read_log_id`: one heartbeat round, bounded by `lease`) on becoming
/// leader and every `heartbeat` after, so a leader cut off turns `is_leader` false on its own;
/// other metrics changes (every commit) cost no extra round.
async fn watch_leadership(
    raft: Raft<TypeConfig>,
    tx: watch::Sender<Leadership>,
    heartbeat: Duration,
    lease: Duration,
) {
    let mut metrics = raft.metrics();
    let mut tick = tokio::time::interval(heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The term in which a majority last confirmed this replica as leader.
    let mut confirmed: Option<u64> = None;
    let mut check = true;
    loop {
        let (leads, leader, term) = {
            let m = metrics.borrow_and_update();
            let leader = m.current_leader.and_then(|id| {
                let url = m.membership_config.membership().get_node(&id)?.addr.clone();
                Some((id, url))
            });
            (m.state == ServerState::Leader, leader, m.current_term)
        };
        if !leads {
            confirmed = None;
        } else if check || confirmed != Some(term) {
            let ok = matches!(
                tokio::time::timeout(lease, raft.get_read_log_id()).await,
                Ok(Ok(_))
            );
            confirmed = ok.then_some(term);
        }
        let now = Leadership {
            leader,
            is_leader: leads && confirmed == Some(term),
            term,
        };
        tx.send_if_modified(|l| {
            let changed = *l != now;
            *l = now;
            changed
        });
        tokio::select! {
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
                check = false;
            }
            _ = tick.tick(), if leads => check = true,
        }
    }
}
