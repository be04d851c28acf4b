//! What the running cluster says about itself: the typed operator client of `dccore-api`
//! (`GET_HEALTH`, `GET_AGENTS`, `GET_TASKS`, bearer token), used by `status` to show health and
//! agent resources and by `task list`, and a client of an agent's files API (`task logs`).
//!
//! The answers are dccore's own types ([`dccore_api::operator`]): a field renamed in dccore
//! breaks this crate's build, not a user's `dcform status`.
//!
//! [`ClusterAccess`] holds what dcform needs to call a cluster it made: the operator token for the
//! master, the agents' credential for the files API, and, on a TLS cluster (recorded in the state
//! as `resources.tls`), a client that trusts the cluster CA and nothing else.

use std::path::Path;
use std::time::Duration;

use dccore_api::client::{ClientError, OperatorClient};
use dccore_api::proto::Resource;
use dccore_api::tls::{Ca, Tls, TlsError};

use crate::replica_api::ReplicaView;
use crate::state::{NodeState, NodeStatus, State};
use crate::step_ops::{api_address, public_api_address};

/// How long one call to the cluster may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors talking to the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The master's operator API failed (no answer, an error status, an answer of another shape).
    #[error(transparent)]
    Master(#[from] ClientError),
    /// An agent's files API did not answer, or not with a success.
    #[error("agent at {url} did not answer: {reason}")]
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
    /// Total resources, in Mesos' shape.
    pub resources: Vec<Resource>,
}

/// Whether the cluster of `state` was installed with TLS (recorded by `apply`).
pub fn uses_tls(state: &State) -> bool {
    state.resources.get("tls").is_some_and(|v| v == "true")
}

fn scheme(state: &State) -> &'static str {
    if uses_tls(state) { "https" } else { "http" }
}

/// Every master's URL (as dcform reaches it), in state order.
pub fn master_urls(state: &State) -> Vec<String> {
    state
        .nodes
        .iter()
        .filter(|n| n.role == crate::spec::Role::Master)
        .map(|m| format!("{}://{}", scheme(state), public_api_address(m)))
        .collect()
}

/// The master's URL for a state: its first master node.
pub fn master_url(state: &State) -> Option<String> {
    state
        .nodes
        .iter()
        .find(|n| n.role == crate::spec::Role::Master)
        .map(|m| format!("{}://{}", scheme(state), public_api_address(m)))
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

/// A secret dcform keeps in `dir` (the state's folder), e.g. the operator token, trimmed.
pub fn read_secret(dir: &Path, name: &str) -> Result<String, AccessError> {
    let path = dir.join(name);
    std::fs::read_to_string(&path)
        .map(|t| t.trim().to_string())
        .map_err(|source| AccessError::Read { path, source })
}

/// The HTTP client of dcform's calls to a cluster's masters: the same TLS set-up as dccore's own
/// clients (on a TLS cluster the cluster CA in `dir` alone), each call bounded by `timeout`.
/// `follow_redirects: false` for the clients that follow a `307` themselves, only to masters of
/// the state and with the token.
pub fn masters_http(
    dir: &Path,
    tls: bool,
    timeout: std::time::Duration,
    follow_redirects: bool,
) -> Result<reqwest::Client, AccessError> {
    let ca = if tls { Some(cluster_ca(dir)?) } else { None };
    let mut b = Tls { own: None, ca }
        .http_client()
        .map_err(AccessError::Client)?
        .timeout(timeout);
    if !follow_redirects {
        b = b.redirect(reqwest::redirect::Policy::none());
    }
    b.build()
        .map_err(|e| AccessError::Client(TlsError::Client(e)))
}

/// The cluster CA dcform keeps in `dir` (the state's folder): what dcform trusts on a TLS cluster.
pub fn cluster_ca(dir: &Path) -> Result<Ca, AccessError> {
    let path = dir.join(crate::pki::CA_CERT_FILE);
    Ca::load(&path).map_err(|e| match e {
        TlsError::Read { path, source, .. } => AccessError::Read { path, source },
        source => AccessError::Ca { path, source },
    })
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
        /// What is wrong with it.
        #[source]
        source: TlsError,
    },
    /// The HTTP client could not be built.
    #[error("cannot build an HTTP client")]
    Client(#[source] TlsError),
}

impl ClusterAccess {
    /// Access to the cluster of `state`, whose folder is `dir`.
    pub fn of(state: &State, dir: &Path) -> Result<ClusterAccess, AccessError> {
        let master = master_url(state).ok_or(AccessError::NoMaster)?;
        let operator_token = read_secret(dir, crate::pki::OPERATOR_TOKEN_FILE)?;
        // Clusters made before agents had their own credential have none: the files API of
        // those agents takes the operator token.
        let agent_token = read_secret(dir, crate::pki::AGENT_TOKEN_FILE)
            .unwrap_or_else(|_| operator_token.clone());
        let http = masters_http(dir, uses_tls(state), CALL_TIMEOUT, true)?;
        Ok(ClusterAccess {
            http,
            master,
            operator_token,
            agent_token,
        })
    }

    /// The operator client of the master at `url` (not necessarily the first), over this
    /// access's HTTP client.
    fn operator_at(&self, url: &str) -> OperatorClient {
        OperatorClient::with_http(self.http.clone(), url, &self.operator_token)
    }

    /// The operator client of the first master.
    pub fn operator(&self) -> OperatorClient {
        self.operator_at(&self.master)
    }
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
    /// Whether that state is terminal (the task will write no more output).
    pub terminal: bool,
}

impl ClusterAccess {
    /// Every task the master knows: running, unreachable and completed.
    pub async fn tasks(&self) -> Result<Vec<TaskView>, ApiError> {
        let tasks = self.operator().get_tasks().await?;
        Ok(tasks
            .all()
            .map(|t| TaskView {
                id: t.task_id.value.clone(),
                name: t.name.clone(),
                framework_id: t.framework_id.value.clone(),
                agent_id: t.agent_id.value.clone(),
                state: t.state.name().to_string(),
                terminal: t.state.is_terminal(),
            })
            .collect())
    }

    /// A file of a task's sandbox (`stdout`, `stderr`) through the agent's files API (with the
    /// agents' credential, which that API takes; never the operator token).
    pub async fn sandbox_file(
        &self,
        agent_url: &str,
        task: &TaskView,
        file: &str,
    ) -> Result<String, ApiError> {
        let bytes = self.sandbox_bytes(agent_url, task, file).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// [`ClusterAccess::sandbox_file`] as it is on the agent, byte for byte (what `task logs
    /// --follow` counts its position in).
    pub async fn sandbox_bytes(
        &self,
        agent_url: &str,
        task: &TaskView,
        file: &str,
    ) -> Result<Vec<u8>, ApiError> {
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
        resp.bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| unreachable(e.to_string()))
    }

    /// Asks the master for its (reachable) agents.
    pub async fn agents(&self) -> Result<Vec<AgentView>, ApiError> {
        self.agents_at(&self.master).await
    }
}

/// What `status` saw this time: each master's own answer, and the agents as the leader (or,
/// with no group, the first master) lists them.
#[derive(Debug, Default)]
pub struct Seen {
    /// Master node name -> `Ok(healthy)` from its own `GET_HEALTH`, or why it did not answer.
    pub masters: std::collections::HashMap<String, Result<bool, String>>,
    /// Master node name -> what it said of the masters' group (`GET /replica`), or why not.
    pub replicas: std::collections::HashMap<String, Result<ReplicaView, String>>,
    /// The leader's (else the first master's) `GET_AGENTS`, if it answered.
    pub agents: Option<Vec<AgentView>>,
}

impl ClusterAccess {
    /// `GET_HEALTH` of the master at `url` (not necessarily the first).
    pub async fn master_health(&self, url: &str) -> Result<bool, ApiError> {
        Ok(self.operator_at(url).get_health().await?.healthy)
    }

    /// `GET /replica` of the master at `url`: what it says of itself and the masters' group
    /// (not redirected: each master answers for itself).
    pub async fn replica(&self, url: &str) -> Result<ReplicaView, String> {
        let resp = self
            .http
            .get(format!("{url}/replica"))
            .bearer_auth(&self.operator_token)
            .send()
            .await
            .map_err(|e| dc_support::error::chain(&e))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("GET /replica: HTTP {status}: {}", body.trim()));
        }
        serde_json::from_str(&body).map_err(|e| format!("GET /replica: unreadable answer: {e}"))
    }

    /// This access with its master set to the masters' leader, when one of the masters (asked
    /// in state order, `GET /replica`) says it leads; else as it was.
    pub async fn through_leader(mut self, state: &State) -> ClusterAccess {
        if state.masters().len() < 2 {
            return self;
        }
        for m in state.masters() {
            let url = format!("{}://{}", scheme(state), public_api_address(&m));
            if self.replica(&url).await.is_ok_and(|v| v.is_leader) {
                self.master = url;
                break;
            }
        }
        self
    }

    /// Asks every running master for its health and its view of the group, and the leader (or
    /// the first master) for its agents.
    pub async fn look(&self, state: &State) -> Seen {
        let mut seen = Seen::default();
        let masters: Vec<&NodeState> = state
            .nodes
            .iter()
            .filter(|n| n.role == crate::spec::Role::Master && n.status == NodeStatus::Running)
            .collect();
        let mut leader_url = None;
        for m in &masters {
            let url = format!("{}://{}", scheme(state), public_api_address(m));
            let rep = self.replica(&url).await;
            if let Ok(v) = &rep
                && v.is_leader
            {
                leader_url = Some(url.clone());
            }
            // The leader answers operator calls itself; a follower redirects them, so its own
            // health is what it says of the group (below), not a GET_HEALTH.
            let r = match &rep {
                Ok(v) if !v.is_leader => Ok(v.is_working_member()),
                _ => self.master_health(&url).await.map_err(|e| e.to_string()),
            };
            seen.masters.insert(m.name.clone(), r);
            seen.replicas.insert(m.name.clone(), rep);
        }
        if state
            .nodes
            .iter()
            .any(|n| n.role.is_agent() && n.status == NodeStatus::Running)
        {
            seen.agents = match &leader_url {
                Some(url) => self.agents_at(url).await.ok(),
                None => self.agents().await.ok(),
            };
        }
        seen
    }

    /// The agents as the master at `url` lists them.
    pub async fn agents_at(&self, url: &str) -> Result<Vec<AgentView>, ApiError> {
        let agents = self.operator_at(url).get_agents().await?;
        Ok(agents
            .agents
            .into_iter()
            .map(|a| AgentView {
                id: a.agent_info.id.value,
                url: a.url.trim_end_matches('/').to_string(),
                active: a.active,
                resources: a.total_resources,
            })
            .collect())
    }
}

/// A node's health as `status` shows it (from what was seen this time only), and the agent's
/// resources when the master lists it.
pub fn node_health(
    state: &State,
    node: &NodeState,
    seen: &Seen,
) -> (String, Option<Vec<Resource>>) {
    if node.status != NodeStatus::Running {
        return (format!("not running ({})", node.status), None);
    }
    if !node.role.is_agent() {
        if let Some(Ok(v)) = seen.replicas.get(&node.name)
            && !v.is_working_member()
        {
            let why = if v.leader.is_none() {
                "no leader known"
            } else {
                "not a voter"
            };
            return (format!("unhealthy ({why})"), None);
        }
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
            pool: crate::spec::PoolName::new("p").expect("valid pool name"),
            index: 1,
            role,
            host: None,
            provider_id: None,
            addresses: vec![addr.into()],
            private_address: None,
            ssh_host_key: None,
            core_version: None,
            config_hash: None,
            status: NodeStatus::Running,
            replica_id: None,
            replica_member: false,
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
            resources: Vec::new(),
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
