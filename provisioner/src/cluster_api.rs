//! What the running cluster says about itself: a small client of the master's operator API
//! (`POST /api/v1` with `GET_AGENTS`, bearer token), used by `status` to show health and agent resources.

use std::time::Duration;

use serde_json::Value;

use crate::install::api_address;
use crate::state::{NodeState, NodeStatus, State};

/// Errors talking to the master.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No answer, or not a success.
    #[error("master at {url} did not answer: {reason}")]
    Unreachable {
        /// The URL asked.
        url: String,
        /// Why.
        reason: String,
    },
}

/// An agent as the master reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentView {
    /// Agent id.
    pub id: String,
    /// The agent's API URL (`http://host:port`).
    pub url: String,
    /// Whether the master offers its resources (false when unreachable, deactivated or draining).
    pub active: bool,
    /// Total resources, in Mesos' JSON shape.
    pub resources: Value,
}

/// The master's URL for a state: its first master node.
pub fn master_url(state: &State) -> Option<String> {
    state
        .nodes
        .iter()
        .find(|n| n.role == crate::spec::Role::Master)
        .map(|m| format!("http://{}", api_address(m)))
}

/// A task as the master reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    /// Task id.
    pub id: String,
    /// Task name.
    pub name: String,
    /// Its framework.
    pub framework_id: String,
    /// The agent it runs (or ran) on.
    pub agent_id: String,
    /// Latest state (`TASK_RUNNING`...).
    pub state: String,
}

fn client(url: &str) -> Result<reqwest::Client, ApiError> {
    // The workspace reqwest has rustls without a built-in crypto provider (dccore uses ring):
    // install ring as the process default, or building the client panics.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| ApiError::Unreachable {
            url: url.to_string(),
            reason: e.to_string(),
        })
}

/// One operator call (`GET_AGENTS`, `GET_TASKS`...), its JSON answer.
pub async fn operator(master: &str, token: &str, call: &str) -> Result<Value, ApiError> {
    let url = format!("{master}/api/v1");
    let unreachable = |reason: String| ApiError::Unreachable {
        url: url.clone(),
        reason,
    };
    let resp = client(&url)?
        .post(&url)
        .bearer_auth(token)
        .json(&serde_json::json!({ "type": call }))
        .send()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(unreachable(format!("HTTP {}", resp.status())));
    }
    resp.json()
        .await
        .map_err(|e| unreachable(format!("not JSON: {e}")))
}

/// Every task the master knows: running, unreachable and completed.
pub async fn tasks(master: &str, token: &str) -> Result<Vec<TaskView>, ApiError> {
    let body = operator(master, token, "GET_TASKS").await?;
    let mut out = Vec::new();
    for list in ["tasks", "unreachable_tasks", "completed_tasks"] {
        for t in body
            .pointer(&format!("/get_tasks/{list}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let s = |p: &str| {
                t.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            out.push(TaskView {
                id: s("/task_id/value"),
                name: s("/name"),
                framework_id: s("/framework_id/value"),
                agent_id: s("/agent_id/value"),
                state: s("/state"),
            });
        }
    }
    Ok(out)
}

/// A file of a task's sandbox (`stdout`, `stderr`) through the agent's files API.
pub async fn sandbox_file(
    agent_url: &str,
    token: &str,
    task: &TaskView,
    file: &str,
) -> Result<String, ApiError> {
    let path = format!("{}/{}/{file}", task.framework_id, task.id);
    let query = path
        .replace('%', "%25")
        .replace('/', "%2F")
        .replace(' ', "%20")
        .replace('&', "%26");
    let url = format!("{agent_url}/files/download?path={query}");
    let unreachable = |reason: String| ApiError::Unreachable {
        url: url.clone(),
        reason,
    };
    let resp = client(&url)?
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        return Err(unreachable(format!("HTTP {status}: {}", body.trim())));
    }
    resp.text().await.map_err(|e| unreachable(e.to_string()))
}

/// Asks the master for its agents.
pub async fn agents(master: &str, token: &str) -> Result<Vec<AgentView>, ApiError> {
    let body = operator(master, token, "GET_AGENTS").await?;
    let list = body
        .pointer("/get_agents/agents")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Ok(list
        .iter()
        .map(|a| AgentView {
            id: a
                .pointer("/agent_info/id/value")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            url: a
                .get("url")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_string(),
            active: a.get("active").and_then(Value::as_bool).unwrap_or(false),
            resources: a.get("total_resources").cloned().unwrap_or(Value::Null),
        })
        .collect())
}

/// A node's health as `status` shows it, and the agent's resources when the master knows it.
pub fn node_health(
    node: &NodeState,
    master_ok: Option<bool>,
    agents: &[AgentView],
) -> (String, Option<Value>) {
    if node.status != NodeStatus::Running {
        return (format!("not running ({})", node.status), None);
    }
    match (node.role.is_agent(), master_ok) {
        (_, None) => ("unknown (master unreachable)".into(), None),
        (false, Some(ok)) => ((if ok { "healthy" } else { "unhealthy" }).into(), None),
        (true, Some(_)) => {
            let want = format!("http://{}", api_address(node));
            match agents.iter().find(|a| a.url == want) {
                Some(a) if a.active => ("healthy".into(), Some(a.resources.clone())),
                Some(a) => (
                    "inactive (unreachable or draining)".into(),
                    Some(a.resources.clone()),
                ),
                None => ("not registered".into(), None),
            }
        }
    }
}
