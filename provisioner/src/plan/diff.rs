//! `diff`: definition vs state -> ordered node changes. Pure: no I/O, no clock.

#[cfg(test)]
use std::collections::BTreeMap;
use std::collections::{HashMap, HashSet};

use sha2::{Digest, Sha256};

use super::services::{LiveApps, diff_services};
use super::{Action, CoreTarget, NodeChange, Plan, PlanBase, Step};
use crate::spec::{ClusterSpec, PoolSize, PoolSpec, ProviderSpec, Role};
use crate::state::{NodeState, NodeStatus, State};

/// The configuration hash of a pool's nodes: what, when changed, means the node must be reconfigured.
/// Computed over a canonical JSON encoding (maps are sorted), so the order in the file does not matter.
pub fn config_hash(spec: &ClusterSpec, pool: &PoolSpec) -> String {
    let masters = master_set(spec);
    // Masters hold the principals' credentials and rules; every node has the TLS setting and
    // the task user. `identities: 2` is the node layout with separate operator and agent
    // credentials and the cluster CA: a node installed before it is reconfigured once.
    let principals = if pool.role == Role::Master {
        serde_json::to_value(&spec.core.principals).unwrap_or_default()
    } else {
        serde_json::Value::Null
    };
    let canonical = serde_json::json!({
        "role": pool.role,
        "core_config": spec.core.config,
        "attributes": pool.attributes,
        "resources": pool.resources,
        "identities": 2,
        "tls": spec.core.tls,
        "task_user": spec.core.task_user,
        "principals": principals,
    });
    let mut canonical = canonical;
    if pool.role == Role::Master {
        // Masters are members of the replicated group (`replica_*` in their config); a master
        // installed before is reconfigured once, and founds the group with its own data.
        canonical["replica"] = serde_json::json!(1);
    } else if masters.len() > 1 {
        // Agents are told every master: when the set changes, they are told the new one (and
        // restarted: the list is on their command line). With one master the hash stays what
        // it always was, so single-master clusters see no change.
        canonical["masters"] = serde_json::json!(masters);
    }
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    hex::encode(&digest[..8])
}

/// The masters the definition wants, by pool and index (count pools) or host (host pools): what
/// agents' configs list, in a form known before the machines exist.
pub fn master_set(spec: &ClusterSpec) -> Vec<String> {
    let mut out = Vec::new();
    for p in spec.pools.iter().filter(|p| p.role == Role::Master) {
        match &p.size {
            PoolSize::Count(n) => out.extend((1..=*n).map(|i| node_name(&p.name, i))),
            PoolSize::Hosts(h) => out.extend(h.iter().map(|h| format!("{}:{h}", p.name))),
        }
    }
    out
}

/// One node the definition wants.
struct Wanted<'a> {
    name: String,
    index: u32,
    host: Option<String>,
    pool: &'a PoolSpec,
    hash: &'a str,
}

/// Plans `apply`: what it takes to turn `state` into `spec`. `live` is what the cluster runs
/// (`GET /v2/apps`, by id), `None` when it was not asked: see [`diff_services`].
pub fn diff(spec: &ClusterSpec, state: &State, core: &CoreTarget, live: Option<&LiveApps>) -> Plan {
    let hashes: HashMap<&str, String> = spec
        .pools
        .iter()
        .map(|p| (p.name.as_str(), config_hash(spec, p)))
        .collect();
    let by_name: HashMap<&str, &NodeState> =
        state.nodes.iter().map(|n| (n.name.as_str(), n)).collect();

    // 1. The nodes the definition wants, with stable names.
    let mut wanted: Vec<Wanted<'_>> = Vec::new();
    for pool in &spec.pools {
        let hash = hashes[pool.name.as_str()].as_str();
        match &pool.size {
            PoolSize::Count(n) => {
                for index in 1..=*n {
                    wanted.push(Wanted {
                        name: node_name(&pool.name, index),
                        index,
                        host: None,
                        pool,
                        hash,
                    });
                }
            }
            PoolSize::Hosts(hosts) => {
                // Host pools match nodes by host, so removing a host from the middle of the list removes that
                // host's node and does not rename the others. New hosts take the lowest index never used.
                let existing: HashMap<&str, &NodeState> = state
                    .nodes
                    .iter()
                    .filter(|n| n.pool == pool.name)
                    .filter_map(|n| n.host.as_deref().map(|h| (h, n)))
                    .collect();
                // Indices of nodes still in the state (even those about to be removed) are not reused, so a
                // new host never takes the name of a node that is being drained in the same apply.
                let mut used: HashSet<u32> = state
                    .nodes
                    .iter()
                    .filter(|n| n.pool == pool.name)
                    .map(|n| n.index)
                    .collect();
                let mut next = 1;
                for host in hosts {
                    let index = match existing.get(host.as_str()) {
                        Some(n) => n.index,
                        None => {
                            while used.contains(&next) {
                                next += 1;
                            }
                            used.insert(next);
                            next
                        }
                    };
                    wanted.push(Wanted {
                        name: node_name(&pool.name, index),
                        index,
                        host: Some(host.clone()),
                        pool,
                        hash,
                    });
                }
            }
        }
    }
    let wanted_names: HashSet<&str> = wanted.iter().map(|w| w.name.as_str()).collect();
    let pool_sizes: HashMap<&str, (usize, usize)> = spec
        .pools
        .iter()
        .map(|p| {
            let have = state.nodes.iter().filter(|n| n.pool == p.name).count();
            (p.name.as_str(), (p.size.len(), have))
        })
        .collect();
    let uninstalls = !destroys_machines(&spec.provider);

    // 2. Each wanted node against what the state has.
    let mut master_changes = Vec::new();
    let mut agent_changes = Vec::new();
    for w in &wanted {
        let (want, have) = pool_sizes[w.pool.name.as_str()];
        let change = match by_name.get(w.name.as_str()) {
            None => {
                let reason = match &w.host {
                    Some(h) => format!("host {h} added to pool \"{}\"", w.pool.name),
                    None => format!("pool \"{}\" wants {want}, has {have}", w.pool.name),
                };
                change_for(
                    w,
                    Action::Create,
                    reason,
                    vec![
                        Step::CreateNode,
                        Step::Install,
                        Step::Start,
                        Step::WaitHealthy,
                    ],
                )
            }
            Some(node) => existing_node_change(w, node, core, uninstalls),
        };
        if w.pool.role == Role::Master {
            master_changes.push(change);
        } else {
            agent_changes.push(change);
        }
    }

    // 3. Nodes the state has that the definition no longer wants.
    let mut removals: Vec<NodeChange> = Vec::new();
    for node in &state.nodes {
        if wanted_names.contains(node.name.as_str()) {
            continue;
        }
        let reason = match (spec.pools.iter().find(|p| p.name == node.pool), &node.host) {
            (None, _) => format!("pool \"{}\" is no longer in the definition", node.pool),
            (Some(p), Some(h)) => format!("host {h} removed from pool \"{}\"", p.name),
            (Some(p), None) => {
                let (want, have) = pool_sizes[p.name.as_str()];
                format!("pool \"{}\" wants {want}, has {have}", p.name)
            }
        };
        let mut steps = Vec::new();
        if node.role.is_agent()
            && node.status <= NodeStatus::Draining
            && node.status >= NodeStatus::Running
        {
            steps.push(Step::Drain);
        }
        if uninstalls && node.status >= NodeStatus::Installed {
            steps.push(Step::Uninstall);
        }
        steps.push(Step::DestroyNode);
        removals.push(NodeChange {
            node: node.name.clone(),
            pool: node.pool.clone(),
            index: node.index,
            role: node.role,
            host: node.host.clone(),
            action: Action::Remove,
            reason,
            steps,
            wave: 0,
            config_hash: None,
            replica_id: None,
            leaves_replica_id: None,
            founds_group: false,
        });
    }

    // The masters' group: who founds it, who joins, which ids leave (see `group.rs`).
    super::group::plan_group(state, &mut master_changes, &mut removals);

    // 4. Waves: masters one at a time, then agents together, then agent removals, then master removals.
    let mut changes =
        Vec::with_capacity(master_changes.len() + agent_changes.len() + removals.len());
    let mut wave = 0;
    for mut c in master_changes {
        if c.action == Action::NoOp {
            c.wave = 0;
        } else {
            c.wave = wave;
            wave += 1;
        }
        changes.push(c);
    }
    push_wave(&mut changes, agent_changes, &mut wave);
    let (master_removals, agent_removals): (Vec<_>, Vec<_>) =
        removals.into_iter().partition(|c| c.role == Role::Master);
    push_wave(&mut changes, agent_removals, &mut wave);
    for mut c in master_removals {
        c.wave = wave;
        wave += 1;
        changes.push(c);
    }

    Plan {
        destroy: false,
        spec: spec.clone(),
        core: core.clone(),
        base: base_of(state),
        changes,
        services: diff_services(&spec.services, &state.services, live),
    }
}

/// Plans `destroy`: every node goes, agents together first, then masters one at a time.
pub fn destroy(spec: &ClusterSpec, state: &State, core: &CoreTarget) -> Plan {
    let uninstalls = !destroys_machines(&spec.provider);
    let to_change = |n: &NodeState| {
        let mut steps = Vec::new();
        if uninstalls && n.status >= NodeStatus::Installed {
            steps.push(Step::Uninstall);
        }
        steps.push(Step::DestroyNode);
        NodeChange {
            node: n.name.clone(),
            pool: n.pool.clone(),
            index: n.index,
            role: n.role,
            host: n.host.clone(),
            action: Action::Destroy,
            reason: "dcform destroy".into(),
            steps,
            wave: 0,
            config_hash: None,
            replica_id: n.replica_id,
            leaves_replica_id: None,
            founds_group: false,
        }
    };
    let mut changes: Vec<NodeChange> = Vec::with_capacity(state.nodes.len());
    let mut wave = 0;
    let agents: Vec<NodeChange> = state
        .nodes
        .iter()
        .filter(|n| n.role != Role::Master)
        .map(to_change)
        .collect();
    push_wave(&mut changes, agents, &mut wave);
    let mut masters: Vec<&NodeState> = state
        .nodes
        .iter()
        .filter(|n| n.role == Role::Master)
        .collect();
    masters.sort_by_key(|m| std::cmp::Reverse(m.index));
    for m in masters {
        let mut c = to_change(m);
        c.wave = wave;
        wave += 1;
        changes.push(c);
    }
    Plan {
        destroy: true,
        spec: spec.clone(),
        core: core.clone(),
        base: base_of(state),
        changes,
        services: Vec::new(),
    }
}

fn existing_node_change(
    w: &Wanted<'_>,
    node: &NodeState,
    core: &CoreTarget,
    uninstalls: bool,
) -> NodeChange {
    let full = vec![
        Step::CreateNode,
        Step::Install,
        Step::Start,
        Step::WaitHealthy,
    ];
    match node.status {
        NodeStatus::Gone => {
            return change_for(
                w,
                Action::Create,
                "the machine is gone (removed outside dcform)".into(),
                full,
            );
        }
        NodeStatus::Creating => {
            return change_for(w, Action::Create, "creation did not finish".into(), full);
        }
        NodeStatus::Created => {
            let steps = vec![Step::Install, Step::Start, Step::WaitHealthy];
            return change_for(
                w,
                Action::Install,
                "the core was never installed (an earlier apply stopped)".into(),
                steps,
            );
        }
        NodeStatus::Installed => {
            let steps = vec![Step::Start, Step::WaitHealthy];
            return change_for(
                w,
                Action::Install,
                "the core was installed but never started".into(),
                steps,
            );
        }
        NodeStatus::MachineStopped => {
            let steps = vec![Step::StartNode, Step::Start, Step::WaitHealthy];
            return change_for(
                w,
                Action::Start,
                "the machine is stopped (stopped or killed outside dcform)".into(),
                steps,
            );
        }
        NodeStatus::Stopped => {
            let steps = vec![Step::Start, Step::WaitHealthy];
            return change_for(
                w,
                Action::Start,
                "the core is not running (stopped outside dcform, or the host restarted)".into(),
                steps,
            );
        }
        NodeStatus::Removing => {
            // The removal drained the agent first; the master keeps a drain across
            // re-registrations, so the node only gets offers again once reactivated.
            let mut steps = vec![Step::Install, Step::Start];
            if w.pool.role.is_agent() && node.role.is_agent() {
                steps.push(Step::Reactivate);
            }
            steps.push(Step::WaitHealthy);
            return change_for(
                w,
                Action::Install,
                "a removal was interrupted and the node is wanted again".into(),
                steps,
            );
        }
        NodeStatus::Running | NodeStatus::Draining => {}
    }
    if node.role != w.pool.role {
        let mut steps = Vec::new();
        if node.role.is_agent() {
            steps.push(Step::Drain);
        }
        if uninstalls {
            steps.push(Step::Uninstall);
        }
        steps.extend(full);
        let reason = format!("role changes {} -> {}", node.role, w.pool.role);
        return change_for(w, Action::Replace, reason, steps);
    }
    match node.core_version.as_deref() {
        Some(v) if v == core.version => {}
        from => {
            let from = from.unwrap_or("unknown").to_string();
            let reason = format!("core version {from} installed, {} wanted", core.version);
            let action = Action::Upgrade {
                from,
                to: core.version.clone(),
            };
            return change_for(
                w,
                action,
                reason,
                vec![Step::Install, Step::Restart, Step::WaitHealthy],
            );
        }
    }
    if node.config_hash.as_deref() != Some(w.hash) {
        let reason = format!(
            "configuration of pool \"{}\" changed (attributes, resources or core config)",
            w.pool.name
        );
        return change_for(
            w,
            Action::Reconfigure,
            reason,
            vec![Step::Configure, Step::Restart, Step::WaitHealthy],
        );
    }
    if node.status == NodeStatus::Draining {
        // A scale-down was interrupted during or after the drain but the node is wanted again:
        // the master keeps the drain across re-registrations, so it must be undone there.
        let mut steps = vec![Step::Start];
        if node.role.is_agent() {
            steps.push(Step::Reactivate);
        }
        steps.push(Step::WaitHealthy);
        return change_for(
            w,
            Action::Install,
            "drained by an interrupted removal; wanted again".into(),
            steps,
        );
    }
    change_for(w, Action::NoOp, "up to date".into(), Vec::new())
}

fn change_for(w: &Wanted<'_>, action: Action, reason: String, steps: Vec<Step>) -> NodeChange {
    NodeChange {
        node: w.name.clone(),
        pool: w.pool.name.clone(),
        index: w.index,
        role: w.pool.role,
        host: w.host.clone(),
        action,
        reason,
        steps,
        wave: 0,
        config_hash: Some(w.hash.to_string()),
        replica_id: None,
        leaves_replica_id: None,
        founds_group: false,
    }
}

/// Appends `batch` as one wave (if it does anything), no-ops at wave 0.
fn push_wave(out: &mut Vec<NodeChange>, batch: Vec<NodeChange>, wave: &mut u32) {
    let mut any = false;
    for mut c in batch {
        if c.action == Action::NoOp {
            c.wave = 0;
        } else {
            c.wave = *wave;
            any = true;
        }
        out.push(c);
    }
    if any {
        *wave += 1;
    }
}

/// Providers whose machines disappear on destroy need no uninstall; on-prem hosts stay and must be cleaned.
fn destroys_machines(provider: &ProviderSpec) -> bool {
    !matches!(provider, ProviderSpec::Ssh(_))
}

fn base_of(state: &State) -> PlanBase {
    PlanBase {
        lineage: (state.serial > 0).then(|| state.lineage.clone()),
        serial: state.serial,
    }
}

/// `agents` + 2 -> `agents-2`.
pub(crate) fn node_name(pool: &str, index: u32) -> String {
    format!("{pool}-{index}")
}

/// Changes by wave (tests read plans this way).
#[cfg(test)]
pub(crate) fn by_wave(plan: &Plan) -> BTreeMap<u32, Vec<&NodeChange>> {
    let mut m: BTreeMap<u32, Vec<&NodeChange>> = BTreeMap::new();
    for c in plan.actions() {
        m.entry(c.wave).or_default().push(c);
    }
    m
}
