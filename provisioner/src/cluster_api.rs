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
    /// Whether the master currently hears from it.
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

/// Asks the master for its agents.
pub async fn agents(master: &str, token: &str) -> Result<Vec<AgentView>, ApiError> {
    let url = format!("{master}/api/v1");
    let unreachable = |reason: String| ApiError::Unreachable {
        url: url.clone(),
        reason,
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| unreachable(e.to_string()))?;
    let resp = client
        .post(&url)
        .bearer_auth(token)
        .json(&serde_json::json!({"type": "GET_AGENTS"}))
        .send()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(unreachable(format!("HTTP {}", resp.status())));
    }
    let body: Value = resp
        .json()
        .await
        .map_err(|e| unreachable(format!("not JSON: {e}")))?;
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
                Some(a) => ("unreachable".into(), Some(a.resources.clone())),
                None => ("not registered".into(), None),
            }
        }
    }
}
