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
    let file = if a.stderr { "stderr" } else { "stdout" };
    if a.follow {
        return follow(&access, &agent.url, task, file).await;
    }
    let text = access
        .sandbox_file(&agent.url, task, file)
        .await
        .map_err(CliError::internal)?;
    print!("{text}");
    Ok(exit::OK)
}

/// How often `--follow` looks for more output.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// `task logs --follow`: prints the file, then what is added to it, until the master says the
/// task ended (then what it wrote last). A file that got shorter was started again: printed from
/// its start.
async fn follow(
    access: &ClusterAccess,
    agent_url: &str,
    task: &crate::cluster_api::TaskView,
    file: &str,
) -> Result<u8, CliError> {
    use std::io::Write;
    let mut printed = 0usize;
    let mut out = std::io::stdout();
    loop {
        // Asked before the read: output written before the task ended is in this read.
        let ended = access
            .tasks()
            .await
            .map_err(CliError::internal)?
            .iter()
            .find(|t| t.id == task.id)
            .is_none_or(|t| t.terminal);
        let bytes = access
            .sandbox_bytes(agent_url, task, file)
            .await
            .map_err(CliError::internal)?;
        if bytes.len() < printed {
            printed = 0;
        }
        out.write_all(&bytes[printed..])
            .and_then(|()| out.flush())
            .map_err(|e| CliError::internal(anyhow!("writing the task's output: {e}")))?;
        printed = bytes.len();
        if ended {
            return Ok(exit::OK);
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}
