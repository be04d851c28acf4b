//! `dcform task list` and `dcform task logs`: the running cluster's tasks, through its masters.

use anyhow::anyhow;

use super::args::{StateArgs, TaskLogsArgs};
use super::inputs::read_state;
use super::{CliError, exit, table};
use crate::cluster_api::ClusterAccess;

/// How to call an applied cluster, for commands that talk to it: through the masters' leader
/// (a follower redirects operator calls).
async fn cluster_access(a: &StateArgs) -> Result<ClusterAccess, CliError> {
    let (file, state) = read_state(a)?;
    let access = ClusterAccess::of(&state, file.dir()).map_err(|e| {
        CliError::user(anyhow::Error::new(e).context(format!(
            "cannot talk to the cluster of {}",
            file.path().display()
        )))
    })?;
    Ok(access.through_leader(&state).await)
}

pub(super) async fn task_list(a: &StateArgs) -> Result<u8, CliError> {
    let access = cluster_access(a).await?;
    let tasks = access.tasks().await.map_err(CliError::internal)?;
    if a.def.json {
        for t in &tasks {
            println!(
                "{}",
                serde_json::json!({"id": t.id, "name": t.name, "state": t.state, "framework_id": t.framework_id, "agent_id": t.agent_id})
            );
        }
        return Ok(exit::OK);
    }
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.name.clone(),
                t.state.clone(),
                t.agent_id.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table::render(&["TASK", "NAME", "STATE", "AGENT"], &rows)
    );
    Ok(exit::OK)
}

pub(super) async fn task_logs(a: &TaskLogsArgs) -> Result<u8, CliError> {
    let access = cluster_access(&a.target).await?;
    let tasks = access.tasks().await.map_err(CliError::internal)?;
    let task = tasks.iter().find(|t| t.id == a.task).ok_or_else(|| {
        let known: Vec<&str> = tasks.iter().map(|t| t.id.as_str()).take(20).collect();
        CliError::user(anyhow!(
            "no task {:?} on this cluster; tasks: {}",
            a.task,
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        ))
    })?;
    let agents = access.agents().await.map_err(CliError::internal)?;
    let agent = agents
        .iter()
        .find(|g| g.id == task.agent_id)
        .ok_or_else(|| {
            CliError::internal(anyhow!(
                "the master does not list agent {} of task {} (is it down?)",
                task.agent_id,
                task.id
            ))
        })?;
    let text = access
        .sandbox_file(&agent.url, task, if a.stderr { "stderr" } else { "stdout" })
        .await
        .map_err(CliError::internal)?;
    print!("{text}");
    Ok(exit::OK)
}
