//! The plan: a pure diff of the definition against the state, in the order the executor must follow.
//!
//! `diff(&ClusterSpec, &State, &CoreTarget, live apps) -> Plan` does no I/O and reads no clock. Each node gets one
//! [`Action`] with its reason and the [`Step`]s that carry it out; [`NodeChange::wave`] orders the work:
//! masters one at a time (each gated on health), agents together (bounded by `--parallelism`), removals after
//! additions (drain first), and on destroy agents before masters. `services.rs` plans the
//! definition's Marathon services ([`ServiceChange`]: deploy, update, remove) against the state and,
//! when the caller asked the cluster, its live apps.

mod diff;
mod group;
mod infra;
mod render;
mod saved;
mod services;

use serde::{Deserialize, Serialize};

use crate::spec::{ClusterSpec, PoolName, Role};

pub use diff::{config_hash, destroy, diff, master_set};
pub use infra::infra_only;
pub use render::{NO_CHANGES, Summary, render_human, render_json_lines};
pub use saved::{PLAN_FORMAT, SavedPlan};
pub use services::{LiveApps, ServiceAction, ServiceChange, diff_services};

/// The core every node should run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreTarget {
    /// Version string of the core to install (e.g. the bundled `dccore --version`).
    pub version: String,
}

/// What a node needs, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// A new machine (`+`).
    Create,
    /// The machine exists but an earlier apply stopped before the core ran (`~`).
    Install,
    /// The machine or the core was found stopped (outside dcform, or a host restart): start it (`~`).
    Start,
    /// The core version changes (`~`).
    Upgrade {
        /// Installed version.
        from: String,
        /// Wanted version.
        to: String,
    },
    /// The node's configuration changes (`~`).
    Reconfigure,
    /// The machine must be recreated, e.g. its role changed (`-/+`).
    Replace,
    /// Scale-down: drain, then remove (`-`).
    Remove,
    /// `dcform destroy` (`-`).
    Destroy,
    /// Nothing to do.
    NoOp,
}

impl Action {
    /// The Terraform-style symbol.
    pub fn symbol(&self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Install | Action::Start | Action::Upgrade { .. } | Action::Reconfigure => "~",
            Action::Replace => "-/+",
            Action::Remove | Action::Destroy => "-",
            Action::NoOp => " ",
        }
    }

    /// A short verb for the action.
    pub fn verb(&self) -> String {
        match self {
            Action::Create => "create".into(),
            Action::Install => "install".into(),
            Action::Start => "start".into(),
            Action::Upgrade { from, to } => format!("upgrade {from} -> {to}"),
            Action::Reconfigure => "reconfigure".into(),
            Action::Replace => "replace".into(),
            Action::Remove => "drain + remove".into(),
            Action::Destroy => "destroy".into(),
            Action::NoOp => "no-op".into(),
        }
    }
}

/// One unit of work on one node. The executor records the state after each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Provider creates the machine.
    CreateNode,
    /// Provider starts the (existing, stopped) machine again.
    StartNode,
    /// Upload the core, write its configuration, install the service.
    Install,
    /// Rewrite the configuration only.
    Configure,
    /// Start the core service.
    Start,
    /// Restart the core service (after an upgrade or reconfigure).
    Restart,
    /// Wait until the node reports healthy.
    WaitHealthy,
    /// Move tasks away (agents) before removal.
    Drain,
    /// Bring a drained or deactivated agent back into offers (REACTIVATE_AGENT): undoes the
    /// drain of an interrupted removal when the node is wanted again.
    Reactivate,
    /// Stop the service and remove every file and unit the install made.
    Uninstall,
    /// Provider destroys the machine.
    DestroyNode,
    /// Masters: add this (started) master to the masters' group through the leader
    /// (ADD_MASTER) and wait until it is a voter, caught up with the log.
    JoinGroup,
    /// Masters: take this master's id out of the group (REMOVE_MASTER) before its machine
    /// goes, or before a dead master's replacement joins under a new id.
    LeaveGroup,
}

impl Step {
    /// Lower-case name used in progress lines and logs.
    pub fn name(self) -> &'static str {
        match self {
            Step::CreateNode => "create",
            Step::StartNode => "start-machine",
            Step::Install => "install",
            Step::Configure => "configure",
            Step::Start => "start",
            Step::Restart => "restart",
            Step::WaitHealthy => "wait-healthy",
            Step::Drain => "drain",
            Step::Reactivate => "reactivate",
            Step::Uninstall => "uninstall",
            Step::DestroyNode => "destroy",
            Step::JoinGroup => "join-group",
            Step::LeaveGroup => "leave-group",
        }
    }
}

/// The plan for one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeChange {
    /// Node name `<pool>-<index>`.
    pub node: String,
    /// Pool the node belongs (or belonged) to.
    pub pool: PoolName,
    /// Index in the pool.
    pub index: u32,
    /// Role the node will have (or had, when it goes away).
    pub role: Role,
    /// For host-list pools, the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// What happens.
    #[serde(flatten)]
    pub action: Action,
    /// Why, in words for the user.
    pub reason: String,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Execution order: all changes of wave N finish before wave N+1 starts.
    pub wave: u32,
    /// Configuration hash the node will carry once the change is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// Masters: the id the node has in the masters' group once the change is applied (a new
    /// machine gets a new one, see [`crate::state::NodeState::replica_id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_id: Option<u64>,
    /// Masters: the id `leave-group` takes out of the group (the old machine's, or this one's
    /// on removal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaves_replica_id: Option<u64>,
    /// Masters: this change starts a new masters' group with this master alone (the first
    /// master of a new cluster, or of one whose masters were all lost): its config says
    /// `replica_init`, and it joins no one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub founds_group: bool,
}

impl NodeChange {
    /// The change's membership steps in words, e.g. "add master 4 to the masters' group".
    pub fn group_steps(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.steps {
            match (s, self.leaves_replica_id, self.replica_id) {
                (Step::LeaveGroup, Some(old), Some(new)) if old != new => out.push(format!(
                    "remove master {old} (the lost machine) from the masters' group; the new machine joins as master {new}"
                )),
                (Step::LeaveGroup, Some(old), _) => {
                    out.push(format!("remove master {old} from the masters' group"))
                }
                (Step::JoinGroup, _, Some(new)) => out.push(format!(
                    "add master {new} to the masters' group (through the leader; waits until it has the log and votes)"
                )),
                _ => {}
            }
        }
        if self.founds_group
            && let Some(id) = self.replica_id
        {
            out.push(format!(
                "start the masters' group with master {id} as its first member"
            ));
        }
        out
    }
}

/// The state a plan was computed against; a saved plan only applies to exactly that state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanBase {
    /// State lineage (`None`: there was no state yet).
    pub lineage: Option<String>,
    /// State serial (0: there was no state yet).
    pub serial: u64,
}

/// A whole plan: printable, appliable, savable as a [`SavedPlan`] (which keeps the definition's
/// sources, not `spec`).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Whether this plan destroys the whole cluster.
    pub destroy: bool,
    /// The validated definition the plan was made from (for a saved plan: loaded and checked again).
    pub spec: ClusterSpec,
    /// The core the plan installs.
    pub core: CoreTarget,
    /// The state the plan was made against.
    pub base: PlanBase,
    /// Node changes including no-ops, in wave order.
    pub changes: Vec<NodeChange>,
    /// Service changes including no-ops: the definition's services in order, then removals.
    /// Empty on destroy (the services go with the cluster).
    pub services: Vec<ServiceChange>,
}

impl Plan {
    /// Changes that do something (no no-ops).
    pub fn actions(&self) -> impl Iterator<Item = &NodeChange> {
        self.changes.iter().filter(|c| c.action != Action::NoOp)
    }

    /// Service changes that do something (no no-ops).
    pub fn service_actions(&self) -> impl Iterator<Item = &ServiceChange> {
        self.services
            .iter()
            .filter(|c| c.action != ServiceAction::NoOp)
    }

    /// Whether applying the plan would change anything (a node or a service).
    pub fn has_changes(&self) -> bool {
        self.actions().next().is_some() || self.service_actions().next().is_some()
    }

    /// Counts for the closing `Plan: X to add, Y to change, Z to destroy.` line.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in self.actions() {
            match c.action {
                Action::Create => s.add += 1,
                Action::Install | Action::Start | Action::Upgrade { .. } | Action::Reconfigure => {
                    s.change += 1
                }
                Action::Replace => {
                    s.add += 1;
                    s.destroy += 1;
                }
                Action::Remove | Action::Destroy => s.destroy += 1,
                Action::NoOp => {}
            }
        }
        for c in self.service_actions() {
            match c.action {
                ServiceAction::Deploy => s.deploy += 1,
                ServiceAction::Update => s.update += 1,
                ServiceAction::Remove => s.remove += 1,
                ServiceAction::NoOp => {}
            }
        }
        s
    }

    /// Number of waves (the executor runs them in order).
    pub fn waves(&self) -> u32 {
        self.actions().map(|c| c.wave + 1).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests;
