//! What the running cluster says about itself: a small client of the master's operator API
//! (`POST /api/v1` with `GET_AGENTS`, bearer token), used by `status` to show health and agent
//! resources, and of an agent's files API (`task logs`).
//!
//! [`ClusterAccess`] holds what dcform needs to call a cluster it made: the operator token for the
//! master, the agents' credential for the files API, and, on a TLS cluster (recorded in the state
//! as `resources.tls`), a client that trusts the cluster CA and nothing else.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::state::{NodeState, NodeStatus, State};
use crate::step_ops::api_address;

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

/// Whether the cluster of `state` was installed with TLS (recorded by `apply`).
pub fn uses_tls(state: &State) -> bool {
    state.resources.get("tls").is_some_and(|v| v == "true")
}

fn scheme(state: &State) -> &'static str {
    if uses_tls(state) { "https" } else { "http" }
}

/// The master's URL for a state: its first master node.
pub fn master_url(state: &State) -> Option<String> {
    state
        .nodes
        .iter()
        .find(|n| n.role == crate::spec::Role::Master)
        .map(|m| format!("{}://{}", scheme(state), api_address(m)))
}

/// What dcform calls a cluster with: its master, the credentials kept in the state folder, and
/// an HTTP client that (on a TLS cluster) trusts only the cluster CA.
#[derive(Clone)]
pub struct ClusterAccess {
    http: reqwest::Client,
    /// The master's URL.
    pub master: String,
    operator_token: String,
    agent_token: String,
}

impl std::fmt::Debug for ClusterAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterAccess")
            .field("master", &self.master)
            .finish_non_exhaustive()
    }
}

/// Why a cluster cannot be called.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The state has no master node.
    #[error("the cluster has no master yet; run `dcform apply`")]
    NoMaster,
    /// A credential or the CA certificate in the state folder cannot be read.
    #[error("cannot read {} in the state folder", .path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The CA certificate is not usable.
    #[error("the cluster CA certificate {} is not a PEM certificate", .path.display())]
    Ca {
        /// The file.
        path: std::path::PathBuf,
    },
    /// The HTTP client could not be built.
    #[error("cannot build an HTTP client")]
    Client(#[source] reqwest::Error),
}

impl ClusterAccess {
    /// Access to the cluster of `state`, whose folder is `dir`.
    pub fn of(state: &State, dir: &Path) -> Result<ClusterAccess, AccessError> {
        let master = master_url(state).ok_or(AccessError::NoMaster)?;
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path)
                .map(|t| t.trim().to_string())
                .map_err(|source| AccessError::Read { path, source })
        };
        let operator_token = read(crate::pki::OPERATOR_TOKEN_FILE)?;
        // Clusters made before agents had their own credential have none: the files API of
        // those agents takes the operator token.
        let agent_token =
            read(crate::pki::AGENT_TOKEN_FILE).unwrap_or_else(|_| operator_token.clone());
        let ca = if uses_tls(state) {
            let path = dir.join(crate::pki::CA_CERT_FILE);
            let pem = std::fs::read(&path).map_err(|source| AccessError::Read {
                path: path.clone(),
                source,
            })?;
            Some((path, pem))
        } else {
            None
        };
        Ok(ClusterAccess {
            http: http_client(ca.as_ref().map(|(p, pem)| (p.as_path(), pem.as_slice())))?,
            master,
            operator_token,
            agent_token,
        })
    }
}

/// A client with a 5 s timeout; with `ca`, HTTPS trusting that CA only.
fn http_client(ca: Option<(&Path, &[u8])>) -> Result<reqwest::Client, AccessError> {
    // The workspace reqwest has rustls without a built-in crypto provider (dccore uses ring).
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder().timeout(Duration::from_secs(5));
    if let Some((path, pem)) = ca {
        use rustls::pki_types::pem::PemObject;
        let bad = || AccessError::Ca {
            path: path.to_path_buf(),
        };
        let mut roots = rustls::RootCertStore::empty();
        for der in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
            roots.add(der.map_err(|_| bad())?).map_err(|_| bad())?;
        }
        if roots.is_empty() {
            return Err(bad());
        }
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|_| bad())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        b = b.tls_backend_preconfigured(config);
    }
    b.build().map_err(AccessError::Client)
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

impl ClusterAccess {
    /// One operator call (`GET_AGENTS`, `GET_TASKS`...), its JSON answer.
    pub async fn operator(&self, call: &str) -> Result<Value, ApiError> {
        let url = format!("{}/api/v1", self.master);
        let unreachable = |reason: String| ApiError::Unreachable {
            url: url.clone(),
            reason,
        };
        let resp = self
            .http
            .post(&url)
            .bearer_auth(&self.operator_token)
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
    pub async fn tasks(&self) -> Result<Vec<TaskView>, ApiError> {
        let body = self.operator("GET_TASKS").await?;
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

    /// A file of a task's sandbox (`stdout`, `stderr`) through the agent's files API (with the
    /// agents' credential, which that API takes; never the operator token).
    pub async fn sandbox_file(
        &self,
        agent_url: &str,
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
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.agent_token)
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
    pub async fn agents(&self) -> Result<Vec<AgentView>, ApiError> {
        let body = self.operator("GET_AGENTS").await?;
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
}

/// What `status` saw this time: each master's own answer, and the agents as the first master
/// (the one agents join) lists them.
#[derive(Debug, Default)]
pub struct Seen {
    /// Master node name -> `Ok(healthy)` from its own `GET_HEALTH`, or why it did not answer.
    pub masters: std::collections::HashMap<String, Result<bool, String>>,
    /// The first master's `GET_AGENTS`, if it answered.
    pub agents: Option<Vec<AgentView>>,
}

impl ClusterAccess {
    /// `GET_HEALTH` of the master at `url` (not necessarily the first).
    pub async fn master_health(&self, url: &str) -> Result<bool, ApiError> {
        let one = ClusterAccess {
            master: url.to_string(),
            ..self.clone()
        };
        let v = one.operator("GET_HEALTH").await?;
        Ok(v.pointer("/get_health/healthy") == Some(&Value::Bool(true)))
    }

    /// Asks every running master for its health and the first master for its agents.
    pub async fn look(&self, state: &State) -> Seen {
        let mut seen = Seen::default();
        for m in state
            .nodes
            .iter()
            .filter(|n| n.role == crate::spec::Role::Master && n.status == NodeStatus::Running)
        {
            let url = format!("{}://{}", scheme(state), api_address(m));
            let r = self.master_health(&url).await.map_err(|e| e.to_string());
            seen.masters.insert(m.name.clone(), r);
        }
        if state
            .nodes
            .iter()
            .any(|n| n.role.is_agent() && n.status == NodeStatus::Running)
        {
            seen.agents = self.agents().await.ok();
        }
        seen
    }
}

/// A node's health as `status` shows it (from what was seen this time only), and the agent's
/// resources when the master lists it.
pub fn node_health(state: &State, node: &NodeState, seen: &Seen) -> (String, Option<Value>) {
    if node.status != NodeStatus::Running {
        return (format!("not running ({})", node.status), None);
    }
    if !node.role.is_agent() {
        return match seen.masters.get(&node.name) {
            Some(Ok(true)) => ("healthy".into(), None),
            Some(Ok(false)) => ("unhealthy".into(), None),
            Some(Err(_)) | None => ("unreachable".into(), None),
        };
    }
    let Some(agents) = &seen.agents else {
        return ("unknown (master unreachable)".into(), None);
    };
    let want = format!("{}://{}", scheme(state), api_address(node));
    match agents.iter().find(|a| a.url == want) {
        Some(a) if a.active => ("healthy".into(), Some(a.resources.clone())),
        Some(a) => (
            "inactive (unreachable or draining)".into(),
            Some(a.resources.clone()),
        ),
        None => ("not registered".into(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Role;

    fn node(name: &str, role: Role, addr: &str) -> NodeState {
        NodeState {
            name: name.into(),
            pool: "p".into(),
            index: 1,
            role,
            host: None,
            provider_id: None,
            addresses: vec![addr.into()],
            ssh_host_key: None,
            core_version: None,
            config_hash: None,
            status: NodeStatus::Running,
        }
    }

    /// Found: `status` called every master healthy when the first one answered. Each master is
    /// what it answered itself; agents are what the first master lists, over the right scheme.
    #[test]
    fn each_master_is_judged_by_its_own_answer_and_agents_by_the_masters_list() {
        let mut state = State::new("c", crate::spec::ProviderKind::Docker);
        state.resources.insert("tls".into(), "true".into());
        let m1 = node("masters-1", Role::Master, "10.0.0.2");
        let m2 = node("masters-2", Role::Master, "10.0.0.3");
        let a1 = node("agents-1", Role::Agent, "10.0.0.4");
        let a2 = node("agents-2", Role::Agent, "10.0.0.5");
        let mut seen = Seen::default();
        seen.masters.insert("masters-1".into(), Ok(true));
        seen.masters
            .insert("masters-2".into(), Err("connection refused".into()));
        seen.agents = Some(vec![AgentView {
            id: "x".into(),
            url: "https://10.0.0.4:5051".into(),
            active: true,
            resources: Value::Null,
        }]);
        let h = |n: &NodeState, seen: &Seen| node_health(&state, n, seen).0;
        assert_eq!(h(&m1, &seen), "healthy");
        assert_eq!(h(&m2, &seen), "unreachable");
        assert_eq!(h(&a1, &seen), "healthy");
        assert_eq!(h(&a2, &seen), "not registered");
        let mut stopped = a1.clone();
        stopped.status = NodeStatus::Stopped;
        assert_eq!(h(&stopped, &seen), "not running (stopped)");
        seen.agents = None;
        assert_eq!(h(&a1, &seen), "unknown (master unreachable)");
    }
}
