//! State: what dcform knows it created. One JSON file per cluster, `<definition dir>/.dcform/<cluster>/state.json`.
//!
//! The file carries `version` (format), `serial` (bumped on every write) and `lineage` (fixed at creation), so that
//! a saved plan can tell whether the state moved under it. Writes are atomic (temp file in the same folder, fsync,
//! rename) and keep the previous version as `state.json.backup`. Every command that writes holds a [`StateLock`].

mod lock;
pub use lock::force_unlock;
mod store;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::spec::{PoolName, ProviderKind, Role};

pub use lock::{LockInfo, StateLock};
pub use store::{StateError, StateFile, write_private};

/// The state file format this build reads and writes. A newer file is refused, never overwritten.
pub const STATE_VERSION: u32 = 1;

/// The whole state of one cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// File format version ([`STATE_VERSION`]).
    pub version: u32,
    /// Incremented on every write; a saved plan records it and refuses to apply after it moved.
    pub serial: u64,
    /// A uuid fixed when the state is first created; a different lineage is a different cluster's state.
    pub lineage: String,
    /// Cluster name from the definition.
    pub cluster: String,
    /// Provider kind that created the nodes (`local`, `docker`, `ssh`, `aws`).
    pub provider: ProviderKind,
    /// Cluster-wide records owned by the provider and the executor (network id, join token path, core hash...).
    #[serde(default)]
    pub resources: BTreeMap<String, String>,
    /// Nodes, kept sorted by (pool, index).
    #[serde(default)]
    pub nodes: Vec<NodeState>,
    /// Outputs shown by `dcform output` (master URL, ...).
    #[serde(default)]
    pub outputs: BTreeMap<String, serde_json::Value>,
    /// The Marathon services dcform deployed, by app id (`/web`): only these are ever updated or
    /// removed by a plan; apps made on the cluster by others are not dcform's. Absent in states
    /// written before services existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, ServiceState>,
}

/// A service dcform deployed, as it last put it on the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceState {
    /// The Marathon app JSON dcform last PUT (the definition's, `id` normalized).
    pub definition: serde_json::Map<String, serde_json::Value>,
    /// The app version the cluster answered that PUT with (Marathon's `version`), if it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl State {
    /// A fresh, empty state for `cluster` with a new lineage. Serial 0 means "never written".
    pub fn new(cluster: &str, provider: ProviderKind) -> State {
        State {
            version: STATE_VERSION,
            serial: 0,
            lineage: uuid::Uuid::new_v4().to_string(),
            cluster: cluster.to_string(),
            provider,
            resources: BTreeMap::new(),
            nodes: Vec::new(),
            outputs: BTreeMap::new(),
            services: BTreeMap::new(),
        }
    }

    /// The node called `name` (`agents-2`), if the state knows it.
    pub fn node(&self, name: &str) -> Option<&NodeState> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Inserts or replaces a node record, keeping the list sorted.
    pub fn upsert_node(&mut self, node: NodeState) {
        match self.nodes.iter_mut().find(|n| n.name == node.name) {
            Some(slot) => *slot = node,
            None => {
                self.nodes.push(node);
                self.nodes
                    .sort_by(|a, b| (&a.pool, a.index).cmp(&(&b.pool, b.index)));
            }
        }
    }

    /// Forgets a node (after its machine was destroyed).
    pub fn remove_node(&mut self, name: &str) {
        self.nodes.retain(|n| n.name != name);
    }
}

/// How far a node got. The executor records each finished step, so a killed apply resumes from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// The machine was removed outside dcform (found missing before planning). First in the
    /// order: nothing is installed on it, nothing to uninstall.
    Gone,
    /// The machine is being created; it may or may not exist (a create was interrupted).
    Creating,
    /// The machine exists; the core is not installed yet.
    Created,
    /// The core is installed and configured, not yet started (or stopped).
    Installed,
    /// Installed, but the machine itself was found stopped before planning (a container stopped
    /// or killed outside dcform): it is started again, then the core. Before `Running`: no drain.
    MachineStopped,
    /// Installed and started once, but found not running before planning (a local sandbox after a
    /// host restart, processes killed outside dcform). Before `Running` in the order: no drain.
    Stopped,
    /// The core is running and was seen healthy.
    Running,
    /// Tasks are being moved away before removal.
    Draining,
    /// Removal started: uninstall and destroy are in progress.
    Removing,
}

impl fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            NodeStatus::Gone => "gone",
            NodeStatus::Creating => "creating",
            NodeStatus::Created => "created",
            NodeStatus::Installed => "installed",
            NodeStatus::MachineStopped => "machine stopped",
            NodeStatus::Stopped => "stopped",
            NodeStatus::Running => "running",
            NodeStatus::Draining => "draining",
            NodeStatus::Removing => "removing",
        };
        f.write_str(s)
    }
}

/// One node as dcform last saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    /// Stable name `<pool>-<index>`.
    pub name: String,
    /// Pool the node belongs to (checked again when a state is read: a hand-edited state cannot
    /// carry a name no definition could have).
    pub pool: PoolName,
    /// Index within the pool (1-based, stable: scale-down removes the highest).
    pub index: u32,
    /// Role the core was installed with.
    pub role: Role,
    /// For host-list pools: the host this node is. Nodes of host pools are matched by host, not index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The provider's id for the machine (container id, instance id, sandbox path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
    /// Addresses dcform reaches the node at from outside (first one used); empty for a machine with
    /// no public address (reached through a bastion at its `private_address`).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The address the cluster's other nodes reach it at, when it differs from `addresses` (an EC2
    /// instance's private IP: its public one is NAT, not on any interface). `None`: the first of
    /// `addresses` serves both (sandboxes, containers, on-prem hosts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_address: Option<String>,
    /// Pinned SSH host key fingerprint (trust on first use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_host_key: Option<String>,
    /// Installed core version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_version: Option<String>,
    /// Hash of the configuration the core was installed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// How far the node got.
    pub status: NodeStatus,
    /// Masters: this master's id in the masters' replicated group. Given once per machine (ids
    /// 1, 2, ... in creation order, [`REPLICA_LAST_ID`] keeps the highest ever given), never
    /// reused: a master on a new machine or an empty disk is a new member with a new id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_id: Option<u64>,
    /// Masters: the group has this master as a voter (it founded the group, or ADD_MASTER of it
    /// was committed). A master not yet a member joins through the leader before it is healthy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replica_member: bool,
}

/// `resources` key: the highest replica id ever given to a master of this cluster, so a removed
/// master's id is never given again.
pub const REPLICA_LAST_ID: &str = "replica_last_id";

impl State {
    /// The next unused replica id: above every id a master in the state has and every id given
    /// before ([`REPLICA_LAST_ID`]).
    pub fn next_replica_id(&self) -> u64 {
        next_replica_id(&self.resources, &self.nodes)
    }
}

/// [`State::next_replica_id`] from its parts (the executor's node tasks hold copies of them).
pub fn next_replica_id(resources: &BTreeMap<String, String>, nodes: &[NodeState]) -> u64 {
    let given = resources
        .get(REPLICA_LAST_ID)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let held = nodes.iter().filter_map(|n| n.replica_id).max().unwrap_or(0);
    given.max(held) + 1
}

impl State {
    /// The master nodes, in state order.
    pub fn masters(&self) -> Vec<NodeState> {
        self.nodes
            .iter()
            .filter(|n| n.role == crate::spec::Role::Master)
            .cloned()
            .collect()
    }
}

impl NodeState {
    /// Where dcform reaches the node from outside: its first address.
    pub fn public_address(&self) -> Option<&str> {
        self.addresses.first().map(String::as_str)
    }

    /// Where the cluster's other nodes reach it (agents' master URL, an agent's advertised URL, what
    /// a node listens on): its private address, else the one address it has.
    pub fn cluster_address(&self) -> Option<&str> {
        self.private_address
            .as_deref()
            .or_else(|| self.public_address())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_written_before_services_existed_loads_with_none() {
        // The shape of a state file from before `services` (version 1, one running master).
        let old = r#"{"version":1,"serial":4,"lineage":"3f0c","cluster":"demo","provider":"local",
            "resources":{},"nodes":[{"name":"masters-1","pool":"masters","index":1,"role":"master",
            "addresses":["127.0.0.1"],"status":"running"}],"outputs":{}}"#;
        let s: State = serde_json::from_str(old).expect("an old state loads");
        assert!(s.services.is_empty());
        assert_eq!(s.nodes.len(), 1);
        // And a state without services is written without the key, as before.
        let text = serde_json::to_string(&s).expect("encode");
        assert!(!text.contains("services"), "{text}");
    }

    #[test]
    fn recorded_services_round_trip() {
        let mut s = State::new("demo", ProviderKind::Local);
        let definition = serde_json::json!({"id": "/web", "cmd": "sleep 100", "instances": 2});
        s.services.insert(
            "/web".into(),
            ServiceState {
                definition: definition.as_object().cloned().expect("an object"),
                version: Some("2026-12-03T10:00:00.000Z".into()),
            },
        );
        let back: State =
            serde_json::from_str(&serde_json::to_string(&s).expect("encode")).expect("decode");
        assert_eq!(back, s);
        assert_eq!(back.services["/web"].definition["instances"], 2);
    }
}
