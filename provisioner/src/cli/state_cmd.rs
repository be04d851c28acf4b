//! Commands that read or edit the state: `status` (with what the masters say), `output`, `state list|show|rm`,
//! `force-unlock`.

use std::path::{Path, PathBuf};

use anyhow::anyhow;

use super::args::{ForceUnlockArgs, OutputArgs, ShowArgs, StateArgs};
use super::inputs::{find_node, load_def, read_state, read_state_and_spec, state_file};
use super::plan_cmd::check_cores;
use super::table::display_value;
use super::{CliError, exit, table};
use crate::cluster_api::{self, ClusterAccess};
use crate::providers;
use crate::state::{self, StateFile, StateLock};

pub(super) async fn status(a: &StateArgs) -> Result<u8, CliError> {
    let (file, mut state, spec) = read_state_and_spec(a)?;
    // Machines removed outside dcform show as gone (the master may not have noticed yet).
    if let Err(e) = providers::refresh(&mut state).await {
        eprintln!("Warning: cannot check the machines: {e}");
    }
    // And each running node's core, where the definition says how to reach the machines.
    if let Some(spec) = &spec {
        check_cores(spec, &file, &mut state).await;
    }
    // Ask each master for itself and the first for its agents; a node that does not answer is
    // "unreachable"/"unknown", not an error.
    let seen = match ClusterAccess::of(&state, file.dir()) {
        Ok(access) => access.look(&state).await,
        Err(cluster_api::AccessError::NoMaster) => cluster_api::Seen::default(),
        Err(e) => {
            eprintln!("Warning: {e}");
            cluster_api::Seen::default()
        }
    };
    for (m, r) in &seen.masters {
        if let Err(e) = r {
            eprintln!("Warning: {m}: {e}");
        }
    }
    let views: Vec<(String, Option<Vec<dccore_api::proto::Resource>>)> = state
        .nodes
        .iter()
        .map(|n| cluster_api::node_health(&state, n, &seen))
        .collect();
    if a.def.json {
        let nodes: Vec<serde_json::Value> = state
            .nodes
            .iter()
            .zip(&views)
            .map(|(n, (health, resources))| {
                let replica = seen
                    .replicas
                    .get(&n.name)
                    .and_then(|r| r.as_ref().ok())
                    .map(|v| {
                        serde_json::json!({
                            "id": v.id,
                            "is_leader": v.is_leader,
                            "leader": v.leader.as_ref().map(|l| l.id),
                            "term": v.term,
                            "last_log_index": v.last_log_index,
                            "applied_index": v.applied_index,
                        })
                    });
                serde_json::json!({
                    "name": n.name,
                    "pool": n.pool,
                    "role": n.role,
                    "status": n.status,
                    "health": health,
                    "address": n.addresses.first(),
                    "core_version": n.core_version,
                    "resources": resources,
                    "replica": replica,
                })
            })
            .collect();
        let out = serde_json::json!({"cluster": state.cluster, "provider": state.provider, "serial": state.serial, "nodes": nodes, "outputs": state.outputs});
        println!("{out}");
        return Ok(exit::OK);
    }
    println!(
        "cluster \"{}\" ({} provider), {} node(s)\n",
        state.cluster,
        state.provider,
        state.nodes.len()
    );
    let rows: Vec<Vec<String>> = state
        .nodes
        .iter()
        .zip(&views)
        .map(|(n, (health, resources))| {
            vec![
                n.name.clone(),
                n.role.to_string(),
                health.clone(),
                group_cell(seen.replicas.get(&n.name)),
                n.addresses.first().cloned().unwrap_or_else(|| "-".into()),
                n.core_version.clone().unwrap_or_else(|| "-".into()),
                resources
                    .as_deref()
                    .map(resources_summary)
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(
            &[
                "NODE",
                "ROLE",
                "HEALTH",
                "GROUP",
                "ADDRESS",
                "CORE",
                "RESOURCES"
            ],
            &rows
        )
    );
    Ok(exit::OK)
}

/// A master's place in the masters' group as it said this time: `leader #1 log 120/120`,
/// `follower #2 log 118/118`; `-` for agents and masters that did not answer.
fn group_cell(seen: Option<&Result<crate::replica_api::ReplicaView, String>>) -> String {
    match seen {
        Some(Ok(v)) => format!(
            "{} #{} log {}/{}",
            if v.is_leader {
                "leader"
            } else if v.voters.contains(&v.id) {
                "follower"
            } else {
                "non-voter"
            },
            v.id,
            position(v.applied_index),
            position(v.last_log_index)
        ),
        _ => "-".into(),
    }
}

/// A log index, `-` when the master has none yet.
fn position(i: Option<u64>) -> String {
    i.map_or_else(|| "-".into(), |i| i.to_string())
}

/// `cpus:2 mem:1024 disk:1000` from Mesos' resource list (scalars only).
fn resources_summary(list: &[dccore_api::proto::Resource]) -> String {
    let parts: Vec<String> = list
        .iter()
        .filter_map(|r| Some(format!("{}:{}", r.name, r.scalar.as_ref()?.value)))
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

pub(super) fn output(a: &OutputArgs) -> Result<u8, CliError> {
    // `output NAME [PATH]` as in Terraform; a lone argument naming an existing path is the definition.
    let mut target = a.target.clone();
    let mut name = a.name.clone();
    match &a.name_arg {
        Some(n) if target.def.path == Path::new(".") && Path::new(n).exists() => {
            target.def.path = PathBuf::from(n);
        }
        Some(n) => name = Some(n.clone()),
        None => {}
    }
    let (_file, state) = read_state(&target)?;
    let shaped = super::compat::terraform_outputs(&state);
    if let Some(name) = &name {
        // dcform's own outputs, then the dcos-terraform names (masters-ips, ...).
        let v = state
            .outputs
            .get(name)
            .cloned()
            .or_else(|| shaped.get(name).map(|o| o["value"].clone()))
            .ok_or_else(|| {
                let known: Vec<&str> = shaped
                    .as_object()
                    .map(|o| o.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                CliError::user(anyhow!(
                    "no output named {name:?}; the cluster has: {}",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                ))
            })?;
        println!(
            "{}",
            if target.def.json && !a.raw {
                v.to_string()
            } else {
                display_value(&v)
            }
        );
    } else if a.raw {
        return Err(CliError::user(anyhow!(
            "-raw prints one value: name it, e.g. dcform output -raw master_url"
        )));
    } else if target.def.json && a.flat {
        println!(
            "{}",
            serde_json::to_string(&state.outputs).map_err(CliError::internal)?
        );
    } else if target.def.json {
        println!("{shaped}");
    } else {
        for (k, v) in &state.outputs {
            println!("{k} = {}", display_value(v));
        }
    }
    Ok(exit::OK)
}

pub(super) fn state_list(a: &StateArgs) -> Result<u8, CliError> {
    let (_file, state) = read_state(a)?;
    for n in &state.nodes {
        if a.def.json {
            println!(
                "{}",
                serde_json::json!({"name": n.name, "pool": n.pool, "role": n.role, "status": n.status})
            );
        } else {
            println!("{}", n.name);
        }
    }
    Ok(exit::OK)
}

pub(super) fn state_show(a: &ShowArgs) -> Result<u8, CliError> {
    let (_file, state) = read_state(&a.target)?;
    let node = find_node(&state, &a.node)?;
    if a.target.def.json {
        println!(
            "{}",
            serde_json::to_string(&node).map_err(CliError::internal)?
        );
    } else {
        let v = serde_json::to_value(node).map_err(CliError::internal)?;
        if let serde_json::Value::Object(m) = v {
            let width = m.keys().map(|k| k.len()).max().unwrap_or(0);
            for (k, v) in m {
                println!("{k:<width$} = {}", display_value(&v));
            }
        }
    }
    Ok(exit::OK)
}

pub(super) fn state_rm(a: &ShowArgs) -> Result<u8, CliError> {
    let (file, _) = read_state(&a.target)?;
    let _lock = StateLock::acquire(&file, "state rm")?;
    // Read again under the lock: another command may have written since.
    let mut state = file
        .load()?
        .ok_or_else(|| CliError::user(anyhow!("no state at {}", file.path().display())))?;
    let node = find_node(&state, &a.node)?;
    state.remove_node(&node.name);
    file.save(&mut state)?;
    println!(
        "Removed {} from the state. Its machine ({}) was not touched; remove it by hand if it still exists.",
        node.name,
        node.provider_id
            .as_deref()
            .or(node.addresses.first().map(String::as_str))
            .unwrap_or("unknown")
    );
    Ok(exit::OK)
}

pub(super) fn force_unlock(a: &ForceUnlockArgs) -> Result<u8, CliError> {
    let file = match &a.target.state {
        Some(p) => StateFile::at(p),
        None => state_file(&load_def(&a.target.def)?, &None),
    };
    let info = state::force_unlock(&file, &a.id)?;
    println!("Unlocked {} (was held by {info}).", file.path().display());
    Ok(exit::OK)
}
