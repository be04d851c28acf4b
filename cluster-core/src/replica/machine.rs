//! openraft's state machine: the master's [`Tables`] and the replicated key space, changed only
//! by committed [`Command`]s in log order (the shape of openraft's `raft-kv-memstore` example
//! and hashicorp/raft's `FSM`).
//!
//! The applied state lives in memory behind an `Arc<RwLock<_>>` that the [`super::Replica`]
//! hands out read-only; the lock is held only while one batch is applied or the state copied,
//! never across an `.await`. Durability comes from the log: the state is written to disk only
//! as snapshots (JSON in the store's meta table), and a restarted replica loads its last
//! snapshot and re-applies the committed entries after it.

// redb's own error is large (160 bytes); it lives only from a storage call to the `AnyError`
// it becomes right after, so it is not boxed on the way.
#![allow(clippy::result_large_err)]

use super::log_store::{META, read_meta};
use super::{Command, KvOp, NodeId, TypeConfig};
use crate::master::tables::{self, Tables};
use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use redb::Database;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// The meta-table key of the current snapshot.
const SNAPSHOT: &str = "snapshot";

type Result<T> = std::result::Result<T, StorageError<NodeId>>;

/// What the log builds: the master's tables and the key space. Also the snapshot's data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateImage {
    /// The master's replicated tables.
    pub tables: Tables,
    /// The key space: namespace → key → value.
    pub kv: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

impl StateImage {
    /// Empty tables with the given limits, no keys.
    pub fn empty(
        max_completed_frameworks: usize,
        max_completed_tasks_per_framework: usize,
    ) -> Self {
        StateImage {
            tables: Tables::new(max_completed_frameworks, max_completed_tasks_per_framework),
            kv: BTreeMap::new(),
        }
    }

    /// Applies one command (deterministic: what it needs is in the command).
    pub fn apply(&mut self, command: &Command) {
        match command {
            // The outcome tells the leader's owner loop what to do; here nothing acts on it.
            Command::Cluster(change) => drop(tables::apply(&mut self.tables, change)),
            Command::Kv(KvOp::Put { ns, key, value }) => {
                self.kv
                    .entry(ns.clone())
                    .or_default()
                    .insert(key.clone(), value.clone());
            }
            Command::Kv(KvOp::Delete { ns, key }) => {
                if let Some(space) = self.kv.get_mut(ns) {
                    space.remove(key);
                    if space.is_empty() {
                        self.kv.remove(ns);
                    }
                }
            }
        }
    }
}

/// The applied state with the log position it reflects.
#[derive(Clone, Debug)]
pub struct MachineState {
    /// The last entry applied (None: nothing yet).
    pub last_applied: Option<LogId<NodeId>>,
    /// The membership as of `last_applied`.
    pub membership: StoredMembership<NodeId, BasicNode>,
    /// Tables and key space.
    pub image: StateImage,
}

/// A snapshot as stored: its meta and the state.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    image: StateImage,
}

/// The state machine handed to openraft (and, as the snapshot builder, a clone of it).
#[derive(Clone)]
pub struct StateMachine {
    state: Arc<RwLock<MachineState>>,
    db: Arc<Database>,
    limits: (usize, usize),
}

impl StateMachine {
    /// The state machine over `db`, starting from the stored snapshot if there is one.
    pub(super) fn load(
        db: Arc<Database>,
        limits: (usize, usize),
    ) -> std::result::Result<Self, AnyError> {
        let state = match read_meta::<StoredSnapshot>(&db, SNAPSHOT)? {
            Some(s) => MachineState {
                last_applied: s.meta.last_log_id,
                membership: s.meta.last_membership,
                image: s.image,
            },
            None => MachineState {
                last_applied: None,
                membership: StoredMembership::default(),
                image: StateImage::empty(limits.0, limits.1),
            },
        };
        Ok(StateMachine {
            state: Arc::new(RwLock::new(state)),
            db,
            limits,
        })
    }

    /// The shared applied state (read it; only this state machine writes it).
    pub(super) fn shared(&self) -> Arc<RwLock<MachineState>> {
        self.state.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, MachineState> {
        // A panic while applying is a bug in `tables::apply`; the state as it was is still
        // the best there is to read.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, MachineState> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    async fn store(&self, snapshot: StoredSnapshot) -> std::result::Result<(), AnyError> {
        let db = self.db.clone();
        let run = move || -> std::result::Result<(), AnyError> {
            let bytes = serde_json::to_vec(&snapshot).map_err(|e| AnyError::new(&e))?;
            let put = || -> std::result::Result<(), redb::Error> {
                let tx = db.begin_write()?;
                tx.open_table(META)?.insert(SNAPSHOT, bytes.as_slice())?;
                tx.commit()?;
                Ok(())
            };
            put().map_err(|e| AnyError::new(&e))
        };
        match tokio::task::spawn_blocking(run).await {
            Ok(r) => r,
            Err(join) => Err(AnyError::new(&join)),
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>> {
        // Copy under the read lock (tasks are behind Arcs: a cheap copy), serialise without it.
        let (meta, image) = {
            let s = self.read();
            let id = match s.last_applied {
                Some(l) => format!("{}-{}-{}", l.leader_id, l.index, uuid::Uuid::new_v4()),
                None => format!("empty-{}", uuid::Uuid::new_v4()),
            };
            let meta = SnapshotMeta {
                last_log_id: s.last_applied,
                last_membership: s.membership.clone(),
                snapshot_id: id,
            };
            (meta, s.image.clone())
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            image: image.clone(),
        };
        self.store(stored)
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(image),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let s = self.read();
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut s = self.write();
        let mut replies = Vec::new();
        for entry in entries {
            s.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(batch) => {
                    for command in &batch {
                        s.image.apply(command);
                    }
                }
                EntryPayload::Membership(m) => {
                    s.membership = StoredMembership::new(Some(entry.log_id), m);
                }
            }
            replies.push(());
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<StateImage>> {
        Ok(Box::new(StateImage::empty(self.limits.0, self.limits.1)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<StateImage>,
    ) -> Result<()> {
        let stored = StoredSnapshot {
            meta: meta.clone(),
            image: (*snapshot).clone(),
        };
        // On disk first: a crash right after must not leave a state newer than the store.
        self.store(stored)
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e))?;
        let mut s = self.write();
        s.last_applied = meta.last_log_id;
        s.membership = meta.last_membership.clone();
        s.image = *snapshot;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>> {
        let stored = read_meta::<StoredSnapshot>(&self.db, SNAPSHOT)
            .map_err(|e| StorageIOError::read_snapshot(None, e))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(s.image),
        }))
    }
}
