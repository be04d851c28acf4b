//! The refresh's look at the machines themselves: on every node the state calls running (docker
//! containers and ssh hosts; local sandboxes are checked on this host by `refresh`), is the core
//! running *now*? Connects like an apply does (pinned host keys), runs the role's liveness check
//! (`templates/running.sh.j2`) and marks a node whose core is not running `Stopped`, so the plan
//! starts it again. A node that cannot be reached is left as it is and reported: nothing is
//! claimed about what was not seen.

use std::time::Duration;

use tokio::task::JoinSet;

use super::AnyProvider;
use crate::apply::{Provider, Remote};
use crate::state::{NodeStatus, State};
use crate::step_ops::{Layout, running_check};

/// How long one node's connection and check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);
/// Nodes checked at once.
const PARALLEL: usize = 16;

/// What the check saw on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// The core runs.
    Running,
    /// The core does not run (the check says why).
    NotRunning(String),
    /// The node could not be asked (unreachable, refused, timed out).
    Unknown(String),
}

/// Checks every running docker/ssh node; marks those whose core is not running `Stopped` and
/// returns what it saw of each node it asked.
pub async fn check(
    provider: std::sync::Arc<AnyProvider>,
    layout: &Layout,
    state: &mut State,
) -> Vec<(String, Seen)> {
    if matches!(provider.as_ref(), AnyProvider::Local(_)) {
        return Vec::new();
    }
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut tasks = JoinSet::new();
    for n in state
        .nodes
        .iter()
        .filter(|n| n.status == NodeStatus::Running)
    {
        let script = match running_check(layout, &state.cluster, n) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(node = %n.name, error = %e, "no liveness check");
                continue;
            }
        };
        let (provider, node, sem) = (provider.clone(), n.clone(), sem.clone());
        tasks.spawn(async move {
            let _permit = sem.acquire().await;
            let seen = tokio::time::timeout(CHECK_TIMEOUT, async {
                let remote = match provider.connect(&node).await {
                    Ok(r) => r,
                    Err(e) => return Seen::Unknown(e.to_string()),
                };
                match remote.run(&script, CHECK_TIMEOUT).await {
                    Ok(out) if out.code == Some(0) => Seen::Running,
                    Ok(out) if out.code == Some(3) => {
                        Seen::NotRunning(out.stdout.trim().to_string())
                    }
                    Ok(out) => Seen::Unknown(format!(
                        "the check exited with {:?}: {}",
                        out.code,
                        out.stderr.trim()
                    )),
                    Err(e) => Seen::Unknown(e.to_string()),
                }
            })
            .await
            .unwrap_or_else(|_| Seen::Unknown(format!("no answer within {CHECK_TIMEOUT:?}")));
            (node.name, seen)
        });
    }
    let mut out = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Ok(pair) = r {
            out.push(pair);
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, seen) in &out {
        if let Seen::NotRunning(_) = seen
            && let Some(n) = state.nodes.iter_mut().find(|n| &n.name == name)
        {
            n.status = NodeStatus::Stopped;
        }
    }
    out
}
