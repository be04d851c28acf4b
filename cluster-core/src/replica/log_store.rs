//! openraft's log storage in redb: the log entries, the vote, the committed id and the last
//! purged id, in one file (`<work_dir>/raft.redb`) that the state machine's snapshots share.
//!
//! Each call is one redb write transaction: an `append` of many entries (openraft hands over
//! all it has under load) costs one commit, one fsync. Durability is what Raft needs, no more:
//! - entries and the vote are [`Durability::Immediate`] (fsync before `commit` returns): an
//!   entry reported flushed counts this replica towards a majority, and a vote answered must
//!   not be forgotten (else it could vote twice in a term);
//! - the committed id and purges are [`Durability::None`]: redb makes them durable with the next
//!   immediate commit (commits are ordered), and losing them in a crash is safe: the committed
//!   id is only a hint to re-apply early (openraft learns it again from the leader), and a purge
//!   not persisted leaves entries that the snapshot covers (they are purged again).
//!
//! The writes run on Tokio's blocking pool: an fsync must not stall the runtime's few worker
//! threads. Entries are JSON (the format of the RPCs too); a log id in the table key is its
//! index.

// redb's own error is large (160 bytes); it lives only from a storage call to the `AnyError`
// it becomes right after, so it is not boxed on the way.
#![allow(clippy::result_large_err)]

use super::{NodeId, TypeConfig};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError,
    Vote,
};
use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;

/// Log entries by index (JSON of openraft's `Entry`).
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// Single values by name (JSON): [`VOTE`], [`COMMITTED`], [`PURGED`], and the snapshot.
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "last_purged";

type Result<T> = std::result::Result<T, StorageError<NodeId>>;

/// Opens (or creates) the store and its tables.
pub(super) fn open(path: &Path) -> std::result::Result<Arc<Database>, redb::Error> {
    let db = Database::create(path)?;
    // Create the tables once so that readers never meet a missing table.
    let tx = db.begin_write()?;
    tx.open_table(LOG)?;
    tx.open_table(META)?;
    tx.commit()?;
    Ok(Arc::new(db))
}

/// Reads one JSON value of the meta table.
pub(super) fn read_meta<T: DeserializeOwned>(
    db: &Database,
    name: &str,
) -> std::result::Result<Option<T>, AnyError> {
    let tx = db.begin_read().map_err(|e| AnyError::new(&e))?;
    let table = tx.open_table(META).map_err(|e| AnyError::new(&e))?;
    let Some(v) = table.get(name).map_err(|e| AnyError::new(&e))? else {
        return Ok(None);
    };
    serde_json::from_slice(v.value())
        .map(Some)
        .map_err(|e| AnyError::new(&e))
}

/// Writes one JSON value of the meta table, durably, off the runtime's threads.
pub(super) async fn write_meta<T: Serialize>(
    db: &Arc<Database>,
    name: &'static str,
    value: &T,
) -> std::result::Result<(), AnyError> {
    write_meta_as(db, name, value, Durability::Immediate).await
}

async fn write_meta_as<T: Serialize>(
    db: &Arc<Database>,
    name: &'static str,
    value: &T,
    durability: Durability,
) -> std::result::Result<(), AnyError> {
    let bytes = serde_json::to_vec(value).map_err(|e| AnyError::new(&e))?;
    blocking(db, durability, move |tx| {
        tx.open_table(META)?.insert(name, bytes.as_slice())?;
        Ok(())
    })
    .await
}

/// Runs `f` in one write transaction on the blocking pool and commits it with `durability`.
async fn blocking(
    db: &Arc<Database>,
    durability: Durability,
    f: impl FnOnce(&redb::WriteTransaction) -> std::result::Result<(), redb::Error> + Send + 'static,
) -> std::result::Result<(), AnyError> {
    let db = db.clone();
    let run = move || -> std::result::Result<(), redb::Error> {
        let mut tx = db.begin_write()?;
        tx.set_durability(durability);
        f(&tx)?;
        tx.commit()?;
        Ok(())
    };
    match tokio::task::spawn_blocking(run).await {
        Ok(r) => r.map_err(|e| AnyError::new(&e)),
        Err(join) => Err(AnyError::new(&join)),
    }
}

/// The log, as openraft's storage and as its readers (replication tasks hold clones).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    pub(super) fn new(db: Arc<Database>) -> Self {
        LogStore { db }
    }

    /// Another handle on the store (to be the last one that closes it).
    pub(super) fn database(&self) -> Arc<Database> {
        self.db.clone()
    }

    fn last_entry(&self) -> std::result::Result<Option<Entry<TypeConfig>>, AnyError> {
        let tx = self.db.begin_read().map_err(|e| AnyError::new(&e))?;
        let table = tx.open_table(LOG).map_err(|e| AnyError::new(&e))?;
        let Some((_, v)) = table.last().map_err(|e| AnyError::new(&e))? else {
            return Ok(None);
        };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| AnyError::new(&e))
    }

    /// Entries now in the log (they shrink with purges: the tests check the log stays bounded).
    pub fn len(&self) -> std::result::Result<u64, AnyError> {
        let tx = self.db.begin_read().map_err(|e| AnyError::new(&e))?;
        let table = tx.open_table(LOG).map_err(|e| AnyError::new(&e))?;
        table.len().map_err(|e| AnyError::new(&e))
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> std::result::Result<bool, AnyError> {
        self.len().map(|n| n == 0)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>> {
        let read = || -> std::result::Result<Vec<Entry<TypeConfig>>, AnyError> {
            let tx = self.db.begin_read().map_err(|e| AnyError::new(&e))?;
            let table = tx.open_table(LOG).map_err(|e| AnyError::new(&e))?;
            let mut out = Vec::new();
            for row in table.range(range).map_err(|e| AnyError::new(&e))? {
                let (_, v) = row.map_err(|e| AnyError::new(&e))?;
                out.push(serde_json::from_slice(v.value()).map_err(|e| AnyError::new(&e))?);
            }
            Ok(out)
        };
        read().map_err(|e| StorageIOError::read_logs(e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId<NodeId>> =
            read_meta(&self.db, PURGED).map_err(StorageIOError::read_logs)?;
        let last = self.last_entry().map_err(StorageIOError::read_logs)?;
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last.map(|e| e.log_id).or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<()> {
        write_meta(&self.db, VOTE, vote)
            .await
            .map_err(|e| StorageIOError::write_vote(e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>> {
        read_meta(&self.db, VOTE).map_err(|e| StorageIOError::read_vote(e).into())
    }

    // The committed id is kept so that a restarted replica re-applies its committed entries
    // at once, before it hears from a leader.
    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<()> {
        write_meta_as(&self.db, COMMITTED, &committed, Durability::None)
            .await
            .map_err(|e| StorageIOError::write(e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>> {
        read_meta::<Option<LogId<NodeId>>>(&self.db, COMMITTED)
            .map(Option::flatten)
            .map_err(|e| StorageIOError::read(e).into())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let rows = entries
            .into_iter()
            .map(|e| Ok((e.log_id.index, serde_json::to_vec(&e)?)))
            .collect::<std::result::Result<Vec<_>, serde_json::Error>>()
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        let written = blocking(&self.db, Durability::Immediate, move |tx| {
            let mut table = tx.open_table(LOG)?;
            for (index, bytes) in &rows {
                table.insert(*index, bytes.as_slice())?;
            }
            Ok(())
        })
        .await;
        // Flushed (committed to disk) before openraft hears of it: only then does this replica
        // count towards the entries' majority.
        callback.log_io_completed(
            written
                .as_ref()
                .map(|_| ())
                .map_err(|e| std::io::Error::other(e.to_string())),
        );
        written.map_err(|e| StorageIOError::write_logs(e).into())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        let from = log_id.index;
        // Durable: entries of a deposed leader must not come back after a crash once the ones
        // replacing them were reported flushed (the append after this is immediate anyway).
        blocking(&self.db, Durability::Immediate, move |tx| {
            tx.open_table(LOG)?.retain_in(from.., |_, _| false)?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(e).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<()> {
        let upto = log_id.index;
        let purged = serde_json::to_vec(&log_id)
            .map_err(|e| StorageIOError::write_logs(AnyError::new(&e)))?;
        // The purged id and the removal in one transaction: the log state read after a crash is
        // never "purged up to N" with entries at or below N, nor the reverse.
        blocking(&self.db, Durability::None, move |tx| {
            tx.open_table(META)?.insert(PURGED, purged.as_slice())?;
            tx.open_table(LOG)?.retain_in(..=upto, |_, _| false)?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(e).into())
    }
}
