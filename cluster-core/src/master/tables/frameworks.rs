//! The frameworks table: registered frameworks (connected or within their failover timeout)
//! and the bounded list of torn-down framework ids, which may never subscribe again.
//!
//! Whether a framework is connected is not here: a connection is this master process's, not
//! cluster state (see `streams.rs`).

use crate::proto::scheduler::FrameworkInfo;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// One framework as the master knows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrameworkRec {
    /// Framework id.
    pub id: String,
    /// `FrameworkInfo` as the framework sent it (with its id filled in).
    pub info_raw: Value,
    /// Its parsed fields.
    pub info: FrameworkInfo,
    /// Authenticated principal.
    pub principal: Option<String>,
    /// How long it may stay disconnected before it is torn down.
    pub failover_timeout: Duration,
    /// When it first subscribed (seconds since the epoch; 0 for a recovered framework).
    pub registered_time: f64,
}

/// The frameworks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Frameworks {
    by_id: BTreeMap<String, FrameworkRec>,
    /// Most recent last, at most `max_removed`.
    removed: VecDeque<String>,
    max_removed: usize,
}

impl Frameworks {
    /// No frameworks; at most `max_removed` torn-down ids remembered.
    pub fn new(max_removed: usize) -> Self {
        Frameworks {
            max_removed,
            ..Default::default()
        }
    }

    /// A framework.
    pub fn get(&self, id: &str) -> Option<&FrameworkRec> {
        self.by_id.get(id)
    }

    /// Is it registered?
    pub fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// Every framework, by id.
    pub fn iter(&self) -> impl Iterator<Item = &FrameworkRec> {
        self.by_id.values()
    }

    /// How many are registered.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// No frameworks at all?
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Was it torn down (and is still remembered)?
    pub fn is_removed(&self, id: &str) -> bool {
        self.removed.contains(&id.to_string())
    }

    /// Torn-down ids, oldest first.
    pub fn removed(&self) -> impl Iterator<Item = &String> {
        self.removed.iter()
    }

    /// Recovers the removed list (only the newest `max_removed` are kept).
    pub(super) fn recover_removed(&mut self, ids: &[String]) {
        let skip = ids.len().saturating_sub(self.max_removed);
        self.removed = ids.iter().skip(skip).cloned().collect();
    }

    /// Adds or replaces a framework (a failover keeps the first registration time).
    pub(super) fn upsert(&mut self, mut f: FrameworkRec) {
        if let Some(old) = self.by_id.get(&f.id)
            && old.registered_time > 0.0
        {
            f.registered_time = old.registered_time;
        }
        self.by_id.insert(f.id.clone(), f);
    }

    /// Removes a framework and remembers its id; returns the ids forgotten to keep the bound.
    pub(super) fn remove(&mut self, id: &str) -> Option<Vec<String>> {
        self.by_id.remove(id)?;
        self.removed.push_back(id.to_string());
        let mut forgotten = Vec::new();
        while self.removed.len() > self.max_removed {
            forgotten.extend(self.removed.pop_front());
        }
        Some(forgotten)
    }
}
