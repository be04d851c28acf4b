//! The replicated log and state machine of the masters: [`Command`]s committed through Raft
//! (openraft) before they take effect, stored in redb on each master.
//!
//! ```text
//!  leader's owner loop ──propose(Vec<Command>)──▶ Replica ──▶ openraft core ──append──▶ log_store.rs (redb: log, vote, committed)
//!        ▲  (act after commit)                      │              │ replicate                 ▲ purge after snapshot
//!        └── Ok(Committed) / NotLeader{leader} ◀────┘              ▼                           │
//!                                                          network.rs ──HTTP POST /internal/raft/{append,vote,snapshot}──▶ api/raft.rs
//!                                                                 (PeerLink: HttpLink;           on the other masters ──▶ Replica::serve_rpc
//!                                                                  tests wrap it to partition)
//!              committed entries ──▶ machine.rs: tables::apply(Change) / KV ops ──▶ Arc<RwLock<MachineState>>
//!                                        └── snapshot (Tables + KV, JSON) ──▶ redb
//! ```
//!
//! What is in the log: every [`Change`] of the master's [`Tables`] (agents, frameworks, tasks
//! and their acknowledged status) and the generic key space ([`KvOp`]) for the built-in
//! frameworks. One log entry is a batch `Vec<Command>`: batching is what keeps throughput when
//! every change waits for a majority. What is not: offers, connections, heartbeat times, the
//! allocator's bookkeeping — a new leader starts those afresh.
//!
//! A master configured with `replica_*` runs its owner loop on this module
//! (`master/replicated.rs`); a single master without them writes its registry itself.
//!
//! * [`node`]: [`Replica`], the whole interface: start, propose, leadership, committed state,
//!   membership changes, RPCs from peers, shutdown.
//! * [`log_store`]: openraft's log storage on redb.
//! * [`machine`]: openraft's state machine over [`Tables`] and the key space; snapshots.
//! * [`settings`]: the replica fields of the master's config file.
//! * [`network`]: Raft RPCs to peers over HTTP(S) behind the [`PeerLink`] trait.
//!
//! [`Change`]: crate::master::Change
//! [`Tables`]: crate::master::tables::Tables

pub mod log_store;
pub mod machine;
pub mod network;
pub mod node;
pub mod settings;

pub use machine::{MachineState, StateImage};
pub use network::{HttpLink, LinkError, LinkFuture, PeerLink, RpcKind};
pub use node::{Committed, Leadership, Replica};
pub use settings::{ReplicaSettings, SettingsError};

use crate::master::Change;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// A master's id in the Raft group (stable for its life; never reused for another disk).
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The types of the masters' Raft group: a log entry carries one batch of commands; a
    /// snapshot is the whole applied state.
    pub TypeConfig:
        D = Vec<Command>,
        R = (),
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = StateImage,
);

/// One command in the log. A log entry holds a batch of them, applied in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
// Nearly every command is a `Cluster` change: boxing it would add an allocation to each and
// save no memory.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// A change of the master's tables, run by [`crate::master::tables::apply`].
    Cluster(Change),
    /// A change of the replicated key space.
    Kv(KvOp),
}

/// A change of the replicated key space: values under a namespace (one per built-in framework)
/// and a key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvOp {
    /// Sets `ns/key` to `value`.
    Put {
        /// Namespace.
        ns: String,
        /// Key.
        key: String,
        /// Value (opaque to the replicas).
        value: Vec<u8>,
    },
    /// Removes `ns/key` (no effect if absent).
    Delete {
        /// Namespace.
        ns: String,
        /// Key.
        key: String,
    },
}

/// Errors of the replication layer.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// This replica is not the leader; propose to `leader` (if one is known).
    #[error("not the leader; the leader is {}", leader_text(.leader))]
    NotLeader {
        /// The leader's id and URL, as far as this replica knows.
        leader: Option<(NodeId, String)>,
    },
    /// The store on disk could not be opened or read.
    #[error("cannot open the replica store {path}")]
    Store {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// openraft refused the configuration (e.g. election timeouts not above the heartbeat).
    #[error("bad Raft configuration")]
    Config(#[source] Box<openraft::ConfigError>),
    /// The HTTP client for the peers could not be built.
    #[error("cannot set up the HTTP client for the peers")]
    Client(#[source] crate::tls::TlsError),
    /// A peer's RPC body is not what this version sends (400 to the peer).
    #[error("bad Raft RPC body for {kind}")]
    BadRpc {
        /// Which RPC.
        kind: RpcKind,
        /// What is wrong.
        #[source]
        source: serde_json::Error,
    },
    /// A membership change was refused (e.g. another one is in progress).
    #[error("membership change refused")]
    Membership(#[source] Box<openraft::error::RaftError<NodeId, ClientWriteErrorOf>>),
    /// The Raft core stopped (storage failure or shutdown): this replica serves nothing more.
    #[error("the replica has stopped")]
    Stopped(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// openraft's error of a client write, for this group's types.
pub type ClientWriteErrorOf = openraft::error::ClientWriteError<NodeId, openraft::BasicNode>;

fn leader_text(leader: &Option<(NodeId, String)>) -> String {
    match leader {
        Some((id, url)) => format!("master {id} at {url}"),
        None => "not known yet".into(),
    }
}

/// How a replica runs: who it is, where its store lives, timing and snapshot policy.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// This master's id in the group.
    pub id: NodeId,
    /// This master's URL as the peers reach it (`https://host:port`).
    pub url: String,
    /// The store is `<work_dir>/raft.redb`.
    pub work_dir: PathBuf,
    /// Leader heartbeats this often.
    pub heartbeat: Duration,
    /// A follower that hears no leader for a random time in this range starts an election.
    /// Failover takes about this long plus one round of votes.
    pub election_timeout: (Duration, Duration),
    /// A snapshot is built after this many entries since the last one.
    pub snapshot_every: u64,
    /// Entries kept in the log behind the last snapshot (so a briefly lagging follower catches
    /// up from the log, not a snapshot); the rest is purged.
    pub keep_behind_snapshot: u64,
    /// Limits of the tables (see [`crate::master::MasterConfig`]); every replica must agree.
    pub max_completed_frameworks: usize,
    /// See [`crate::master::MasterConfig::max_completed_tasks_per_framework`].
    pub max_completed_tasks_per_framework: usize,
}

impl ReplicaConfig {
    /// Defaults: heartbeat 100 ms and elections after 400–800 ms of silence — failover well
    /// under 2 s, while a loaded 2-core machine's scheduling hiccups (tens of ms, a few missed
    /// heartbeats) do not depose a healthy leader; a snapshot every 10,000 entries with 1,000 kept behind it.
    pub fn new(id: NodeId, url: impl Into<String>, work_dir: impl Into<PathBuf>) -> Self {
        ReplicaConfig {
            id,
            url: url.into(),
            work_dir: work_dir.into(),
            heartbeat: Duration::from_millis(100),
            election_timeout: (Duration::from_millis(400), Duration::from_millis(800)),
            snapshot_every: 10_000,
            keep_behind_snapshot: 1_000,
            max_completed_frameworks: 50,
            max_completed_tasks_per_framework: 1000,
        }
    }

    /// The store's file.
    pub fn store_path(&self) -> PathBuf {
        self.work_dir.join("raft.redb")
    }

    fn raft_config(&self) -> Result<openraft::Config, ReplicaError> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        openraft::Config {
            cluster_name: "dccore-masters".into(),
            heartbeat_interval: ms(self.heartbeat),
            election_timeout_min: ms(self.election_timeout.0),
            election_timeout_max: ms(self.election_timeout.1),
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.keep_behind_snapshot,
            // Whole snapshots go in one request (`full_snapshot`): give a large one time to cross.
            install_snapshot_timeout: 10_000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ReplicaError::Config(Box::new(e)))
    }
}
