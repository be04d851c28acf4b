//! Providers: where machines come from. [`build`] picks the one the definition names and pairs it with the
//! installer that puts the core on its machines. Every provider is a variant of [`AnyProvider`]; adding one
//! means adding a variant and following the compiler.

pub mod aws;
mod aws_inventory;
pub mod docker;
pub mod liveness;
pub mod local;
pub mod local_reach;
pub mod route;
pub mod ssh;
pub mod ssh_remote;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::apply::{CmdOutput, Machine, NodeRequest, Provider, ProviderError, Remote, RemoteError};
use crate::core_binary::{self, CoreBinary, CoreBinaryError};
use crate::pki;
use crate::plan::CoreTarget;
use crate::spec::{ClusterSpec, ProviderKind, ProviderSpec};
use crate::state::{NodeState, NodeStatus, State, StateFile};
use crate::step_ops::{Layout, NodeSecrets, ScriptInstaller};

/// Why the provider could not be set up. Nothing was touched when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The definition names a provider this build cannot drive yet.
    #[error("provider \"{0}\" is not available in this build yet; no machine was touched")]
    Unavailable(&'static str),
    /// The core binary is missing, broken or for another architecture.
    #[error(transparent)]
    Core(#[from] CoreBinaryError),
    /// The binary is not the version the plan installs.
    #[error("{}: dccore {found} found, but the plan installs {wanted}; pass the right binary with --core-binary", path.display())]
    CoreVersion {
        /// The binary.
        path: PathBuf,
        /// Its version.
        found: String,
        /// The plan's.
        wanted: String,
    },
    /// The cluster's secrets (tokens, CA, principals' secrets) could not be made or read.
    #[error("cannot prepare the cluster's secrets in the state folder")]
    Secrets(#[from] crate::pki::PkiError),
    /// The definition lacks something this provider needs to make machines.
    #[error("{0}; no machine was touched")]
    Incomplete(String),
}

impl BuildError {
    /// Whether the user can fix it (missing or wrong binary) rather than an internal failure.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            BuildError::Core(_) | BuildError::CoreVersion { .. } | BuildError::Incomplete(_)
        )
    }
}

/// Every provider this build can drive.
pub enum AnyProvider {
    /// Process sandboxes on this host.
    Local(local::LocalProvider),
    /// One container per node on a per-cluster Docker network.
    Docker(Box<docker::DockerProvider>),
    /// Existing hosts over SSH.
    Ssh(ssh::SshProvider),
    /// EC2 instances.
    Aws(Box<aws::AwsProvider>),
}

impl AnyProvider {
    /// The SSH connector of a provider whose machines dcform reaches over SSH (all but `local`): the
    /// one place the state's bastion record is pinned for aws, docker and ssh alike.
    pub fn ssh_connector(&self) -> Option<&ssh_remote::SshConnector> {
        match self {
            AnyProvider::Local(_) => None,
            AnyProvider::Docker(p) => Some(p.connector()),
            AnyProvider::Ssh(p) => Some(p.connector()),
            AnyProvider::Aws(p) => Some(p.connector()),
        }
    }
}

/// A connection to a machine of any provider.
pub enum AnyRemote {
    /// A sandbox on this host.
    Local(local::LocalRemote),
    /// A machine over SSH (docker and ssh providers).
    Ssh(ssh_remote::SshRemote),
}

/// Options the CLI passes down.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// `--core-binary` / `DCFORM_CORE_BINARY`.
    pub core_binary: Option<PathBuf>,
    /// `--insecure-skip-host-key`: accept any SSH host key (the CLI warns).
    pub insecure_skip_host_key: bool,
    /// The state's cluster-wide records: the bastion's pinned host key is among them. `prepare` is not run
    /// by a destroy, so the provider learns them here.
    pub resources: BTreeMap<String, String>,
    /// `apply --infra-only`: nothing is installed, so no core binary is looked for.
    pub infra_only: bool,
    /// The state's lineage: cloud resources are tagged and found by it (see
    /// [`aws::AwsProvider::set_lineage`]).
    pub lineage: Option<String>,
}

/// The provider and installer for `spec`, keeping their files (token, keys, logs, sandboxes) beside `state`.
/// Checks the core binary first: a missing or wrong binary stops here, before any machine is touched.
/// `--infra-only` installs nothing: no binary is looked for (`None`).
pub fn build(
    spec: &ClusterSpec,
    state: &StateFile,
    core: &CoreTarget,
    opts: &BuildOptions,
) -> Result<(AnyProvider, ScriptInstaller, Option<CoreBinary>), BuildError> {
    let binary = if opts.infra_only {
        None
    } else {
        Some(checked_core(spec, core, opts)?)
    };
    if let ProviderSpec::Aws(a) = &spec.provider
        && a.ami.is_none()
        && a.ami_name.is_none()
    {
        // A definition converted from a main.tf has no image yet: refused before anything is touched.
        return Err(BuildError::Incomplete(aws::NO_IMAGE.to_string()));
    }
    let (mut provider, layout) =
        machines(spec, state, opts.insecure_skip_host_key, &opts.resources)?;
    if let (AnyProvider::Docker(p), Some(b)) = (&mut provider, &binary) {
        p.set_core(&b.path);
    }
    if let (AnyProvider::Aws(p), Some(l)) = (&mut provider, &opts.lineage) {
        p.set_lineage(l, &opts.resources);
    }
    let secrets = node_secrets(spec, state.dir())?;
    let installer = ScriptInstaller {
        core: binary.clone(),
        secrets: Arc::new(secrets),
        layout,
        controller_epoch: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    Ok((provider, installer, binary))
}

/// The core binary the plan installs, found and identified: the right version, and for sandboxes
/// and containers (which run on this host's kernel) this host's architecture.
fn checked_core(
    spec: &ClusterSpec,
    core: &CoreTarget,
    opts: &BuildOptions,
) -> Result<CoreBinary, BuildError> {
    let binary = core_binary::identify(&core_binary::locate(opts.core_binary.as_deref())?)?;
    if binary.version != core.version {
        return Err(BuildError::CoreVersion {
            path: binary.path.clone(),
            found: binary.version.clone(),
            wanted: core.version.clone(),
        });
    }
    match &spec.provider {
        // For ssh hosts and EC2 instances the preflight checks each machine's architecture.
        ProviderSpec::Local(_) | ProviderSpec::Docker(_) => {
            core_binary::check_arch(&binary, std::env::consts::ARCH)?;
        }
        _ => {}
    }
    Ok(binary)
}

/// The cluster's bearer token, made once (random, 0600) in the state folder and reused by every apply.
/// The provider of `spec`'s machines and where installs go on them, without a core binary:
/// enough to reach the machines (refresh, liveness checks), not to install on them. The state's
/// `resources` pin the bastion's host key (every connection, not only an apply's, checks it).
pub fn machines(
    spec: &ClusterSpec,
    state: &StateFile,
    insecure_skip_host_key: bool,
    resources: &BTreeMap<String, String>,
) -> Result<(AnyProvider, Layout), BuildError> {
    let (provider, layout) = match &spec.provider {
        ProviderSpec::Local(l) => {
            let p = local::LocalProvider::new(state.dir(), l.base_port);
            let root = p.root().to_path_buf();
            (AnyProvider::Local(p), Layout::Sandbox { root })
        }
        ProviderSpec::Docker(d) => {
            let p = docker::DockerProvider::new(spec, d, state.dir(), insecure_skip_host_key);
            (AnyProvider::Docker(Box::new(p)), Layout::Host)
        }
        ProviderSpec::Ssh(_) => {
            let c = ssh_remote::SshConnector::from_spec(
                &spec.ssh,
                None,
                state.dir().join("logs"),
                insecure_skip_host_key,
            );
            (AnyProvider::Ssh(ssh::SshProvider::new(c)), Layout::Host)
        }
        ProviderSpec::Aws(a) => {
            // The preflight checks each instance's architecture against the binary.
            let p = aws::AwsProvider::new(spec, a, state.dir(), insecure_skip_host_key);
            // The recorded masters are the jump hosts of private agents. An unreadable state
            // leaves none known: the apply itself reports that state error.
            if let Ok(Some(s)) = state.load() {
                p.know_masters(&s.nodes);
            }
            (AnyProvider::Aws(Box::new(p)), Layout::Host)
        }
    };
    if let Some(c) = provider.ssh_connector() {
        c.pin_recorded(resources);
    }
    Ok((provider, layout))
}

/// The cluster's secrets, made at the first apply and kept 0600 in the state folder (see
/// [`crate::pki`]), and what masters get of them: credentials and rules for the definition's
/// principals.
fn node_secrets(spec: &ClusterSpec, dir: &Path) -> Result<NodeSecrets, BuildError> {
    let operator_token = pki::load_or_create_secret(&dir.join(pki::OPERATOR_TOKEN_FILE))?;
    let agent_token = pki::load_or_create_secret(&dir.join(pki::AGENT_TOKEN_FILE))?;
    let replica_secret = pki::load_or_create_replica_secret(&dir.join(pki::REPLICA_SECRET_FILE))?;
    let ca = if spec.core.tls {
        Some(pki::ClusterCa::load_or_create(dir, &spec.name)?)
    } else {
        None
    };
    let mut credentials = Vec::new();
    for p in &spec.core.principals {
        let path = principal_secret_path(dir, &p.name);
        let secret = pki::load_or_create_secret(&path)?;
        credentials.push(serde_json::json!({"principal": p.name, "secret": secret}));
    }
    let credentials_json =
        serde_json::to_vec_pretty(&serde_json::json!({ "credentials": credentials }))
            .expect("invariant: JSON values always serialise");
    Ok(NodeSecrets {
        operator_token: operator_token.into_bytes(),
        agent_token: agent_token.into_bytes(),
        replica_secret: replica_secret.into_bytes(),
        ca,
        credentials_json,
        acls_json: acls_json(&spec.core.principals),
    })
}

/// Where the secret of framework principal `name` is kept (0600).
pub fn principal_secret_path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir
        .join(pki::PRINCIPALS_DIR)
        .join(format!("{name}.secret"))
}

/// The masters' access rules (Mesos ACL JSON) for the definition's principals: each may subscribe
/// with its roles and run tasks as its users, and nothing else of either (the second rule of each
/// pair denies the rest). Everything else is dccore's built-in rules: frameworks see and stop only
/// their own work, operator calls need the operator token.
pub fn acls_json(principals: &[crate::spec::PrincipalSpec]) -> Vec<u8> {
    let entity = |values: &[String]| {
        if values.iter().any(|v| v == "*") {
            serde_json::json!({"type": "ANY"})
        } else {
            serde_json::json!({ "values": values })
        }
    };
    let mut register = Vec::new();
    let mut run = Vec::new();
    for p in principals {
        let who = serde_json::json!({"values": [p.name]});
        register.push(serde_json::json!({"principals": who, "roles": entity(&p.roles)}));
        register.push(serde_json::json!({"principals": who, "roles": {"type": "NONE"}}));
        run.push(serde_json::json!({"principals": who, "users": entity(&p.users)}));
        run.push(serde_json::json!({"principals": who, "users": {"type": "NONE"}}));
    }
    serde_json::to_vec_pretty(&serde_json::json!({
        "register_frameworks": register,
        "run_tasks": run,
    }))
    .expect("invariant: JSON values always serialise")
}

impl Provider for AnyProvider {
    type Remote = AnyRemote;

    async fn prepare(
        &self,
        spec: &ClusterSpec,
        r: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, ProviderError> {
        match self {
            AnyProvider::Local(p) => p.prepare(spec, r).await,
            AnyProvider::Docker(p) => p.prepare(spec, r).await,
            AnyProvider::Ssh(p) => p.prepare(spec, r).await,
            AnyProvider::Aws(p) => p.prepare(spec, r).await,
        }
    }
    async fn create(&self, req: &NodeRequest) -> Result<Machine, ProviderError> {
        match self {
            AnyProvider::Local(p) => p.create(req).await,
            AnyProvider::Docker(p) => p.create(req).await,
            AnyProvider::Ssh(p) => p.create(req).await,
            AnyProvider::Aws(p) => p.create(req).await,
        }
    }
    async fn start(&self, node: &NodeState) -> Result<Machine, ProviderError> {
        match self {
            AnyProvider::Local(p) => p.start(node).await,
            AnyProvider::Docker(p) => p.start(node).await,
            AnyProvider::Ssh(p) => p.start(node).await,
            AnyProvider::Aws(p) => p.start(node).await,
        }
    }
    async fn connect(&self, node: &NodeState) -> Result<AnyRemote, RemoteError> {
        match self {
            AnyProvider::Local(p) => p.connect(node).await.map(AnyRemote::Local),
            AnyProvider::Docker(p) => p.connect(node).await.map(AnyRemote::Ssh),
            AnyProvider::Ssh(p) => p.connect(node).await.map(AnyRemote::Ssh),
            AnyProvider::Aws(p) => p.connect(node).await.map(AnyRemote::Ssh),
        }
    }
    async fn destroy(&self, node: &NodeState) -> Result<(), ProviderError> {
        match self {
            AnyProvider::Local(p) => p.destroy(node).await,
            AnyProvider::Docker(p) => p.destroy(node).await,
            AnyProvider::Ssh(p) => p.destroy(node).await,
            AnyProvider::Aws(p) => p.destroy(node).await,
        }
    }
    async fn teardown(&self, r: &BTreeMap<String, String>) -> Result<(), ProviderError> {
        match self {
            AnyProvider::Local(p) => p.teardown(r).await,
            AnyProvider::Docker(p) => p.teardown(r).await,
            AnyProvider::Ssh(p) => p.teardown(r).await,
            AnyProvider::Aws(p) => p.teardown(r).await,
        }
    }
}

impl Remote for AnyRemote {
    async fn run(&self, script: &str, timeout: Duration) -> Result<CmdOutput, RemoteError> {
        match self {
            AnyRemote::Local(r) => r.run(script, timeout).await,
            AnyRemote::Ssh(r) => r.run(script, timeout).await,
        }
    }
    async fn upload(
        &self,
        contents: Arc<Vec<u8>>,
        dest: &str,
        mode: u32,
    ) -> Result<(), RemoteError> {
        match self {
            AnyRemote::Local(r) => r.upload(contents, dest, mode).await,
            AnyRemote::Ssh(r) => r.upload(contents, dest, mode).await,
        }
    }
    fn host_key(&self) -> Option<String> {
        match self {
            AnyRemote::Local(r) => r.host_key(),
            AnyRemote::Ssh(r) => r.host_key(),
        }
    }
}

/// Refresh before planning, as Terraform does: marks [`NodeStatus::Gone`] (in memory) every node
/// whose machine was removed outside dcform (a `docker rm`, a deleted sandbox folder), so the plan
/// creates it again instead of reporting "No changes" for a cluster that is not there. On-prem
/// hosts are never "gone" (unreachable is not removed). A local sandbox whose dccore is not running
/// is marked [`NodeStatus::Stopped`]. Returns the nodes marked, with their new status.
pub async fn refresh(state: &mut State) -> Result<Vec<(String, NodeStatus)>, docker::DockerError> {
    let mut stopped: Vec<String> = Vec::new();
    let gone: Vec<String> = match state.provider {
        ProviderKind::Local => state
            .nodes
            .iter()
            .filter(|n| n.status >= NodeStatus::Created)
            // Sandbox paths are recorded absolute; anything else is not ours to judge.
            .filter(|n| {
                n.provider_id
                    .as_deref()
                    .map(Path::new)
                    .is_some_and(|d| d.is_absolute() && !d.is_dir())
            })
            .map(|n| n.name.clone())
            .collect(),
        ProviderKind::Docker if state.nodes.iter().any(|n| n.status >= NodeStatus::Created) => {
            let found = docker::list_clusters().await?;
            let here: Vec<&str> = found
                .iter()
                .filter(|c| c.name == state.cluster)
                .flat_map(|c| c.nodes.iter().map(|n| n.node.as_str()))
                .collect();
            stopped = found
                .iter()
                .filter(|c| c.name == state.cluster)
                .flat_map(|c| c.nodes.iter())
                .filter(|n| n.state != "running")
                .map(|n| n.node.clone())
                .collect();
            state
                .nodes
                .iter()
                .filter(|n| n.status >= NodeStatus::Created && !here.contains(&n.name.as_str()))
                .map(|n| n.name.clone())
                .collect()
        }
        ProviderKind::Aws if state.nodes.iter().any(|n| n.status >= NodeStatus::Created) => {
            let (gone, machine_stopped) = aws::refresh(state).await;
            stopped = machine_stopped;
            gone
        }
        _ => Vec::new(),
    };
    let mut marked = Vec::new();
    for n in state.nodes.iter_mut().filter(|n| gone.contains(&n.name)) {
        n.status = NodeStatus::Gone;
        marked.push((n.name.clone(), NodeStatus::Gone));
    }
    // A container that exists but does not run (`docker stop`, `docker kill`, or it crashed): the
    // core on it cannot be running, whatever the master still remembers.
    for n in state.nodes.iter_mut() {
        if stopped.contains(&n.name)
            && matches!(
                n.status,
                NodeStatus::Installed | NodeStatus::Stopped | NodeStatus::Running
            )
        {
            n.status = NodeStatus::MachineStopped;
            marked.push((n.name.clone(), NodeStatus::MachineStopped));
        }
    }
    // Local sandboxes have no supervisor of their own across a host restart: a running node whose
    // sandbox has no live dccore process is started again.
    if state.provider == ProviderKind::Local {
        for n in state.nodes.iter_mut() {
            let sandbox = n.provider_id.as_deref().map(Path::new);
            if n.status == NodeStatus::Running
                && sandbox.is_some_and(|d| d.is_absolute() && d.is_dir() && !dccore_runs_in(d))
            {
                n.status = NodeStatus::Stopped;
                marked.push((n.name.clone(), NodeStatus::Stopped));
            }
        }
    }
    Ok(marked)
}

/// Whether any pid file under `<sandbox>/run` names a live `dccore` process.
fn dccore_runs_in(sandbox: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(sandbox.join("run")) else {
        return false;
    };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "pid"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|pid| pid.trim().parse::<u32>().ok())
        .any(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.windows(6).any(|w| w == b"dccore"))
        })
}

#[cfg(test)]
mod refresh_tests {
    use super::*;
    use crate::spec::Role;

    fn node(name: &str, provider_id: Option<String>, status: NodeStatus) -> NodeState {
        NodeState {
            name: name.into(),
            pool: crate::spec::PoolName::new("agents").expect("valid pool name"),
            index: 1,
            role: Role::Agent,
            host: None,
            provider_id,
            addresses: vec![],
            private_address: None,
            ssh_host_key: None,
            core_version: None,
            config_hash: None,
            status,
            replica_id: None,
            replica_member: false,
        }
    }

    #[tokio::test]
    async fn a_local_sandbox_deleted_outside_dcform_is_gone_and_others_are_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("agents-1");
        std::fs::create_dir(&kept).unwrap();
        let deleted = dir.path().join("agents-2").display().to_string();
        let mut state = State::new("demo", ProviderKind::Local);
        state.upsert_node(node(
            "agents-1",
            Some(kept.display().to_string()),
            NodeStatus::Running,
        ));
        state.upsert_node(node("agents-2", Some(deleted.clone()), NodeStatus::Running));
        // Never created: nothing to find missing.
        state.upsert_node(node("agents-3", Some(deleted), NodeStatus::Creating));
        // agents-1's sandbox is there but nothing runs in it.
        assert_eq!(
            refresh(&mut state).await.unwrap(),
            vec![
                ("agents-2".to_string(), NodeStatus::Gone),
                ("agents-1".to_string(), NodeStatus::Stopped)
            ]
        );
        let status = |n: &str| state.node(n).unwrap().status;
        assert_eq!(status("agents-1"), NodeStatus::Stopped);
        assert_eq!(status("agents-2"), NodeStatus::Gone);
        assert_eq!(status("agents-3"), NodeStatus::Creating);
    }

    #[tokio::test]
    async fn a_local_sandbox_with_a_live_dccore_stays_running() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = dir.path().join("agents-1");
        std::fs::create_dir_all(sandbox.join("run")).unwrap();
        // A process whose command line says dccore: a copy of sleep under that name.
        let bin = dir.path().join("dccore");
        std::fs::copy("/bin/sleep", &bin).unwrap();
        let mut child = std::process::Command::new(&bin).arg("30").spawn().unwrap();
        std::fs::write(sandbox.join("run/agent.pid"), child.id().to_string()).unwrap();
        // Setup: wait until the child shows its own command line (seen once to lag under load).
        for _ in 0..200 {
            if dccore_runs_in(&sandbox) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let mut state = State::new("demo", ProviderKind::Local);
        state.upsert_node(node(
            "agents-1",
            Some(sandbox.display().to_string()),
            NodeStatus::Running,
        ));
        let marked = refresh(&mut state).await.unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(marked.is_empty(), "{marked:?}");
        assert_eq!(state.node("agents-1").unwrap().status, NodeStatus::Running);
        // Once it is gone, the node is stopped.
        refresh(&mut state).await.unwrap();
        assert_eq!(state.node("agents-1").unwrap().status, NodeStatus::Stopped);
    }

    #[tokio::test]
    async fn on_prem_hosts_are_never_gone() {
        let mut state = State::new("demo", ProviderKind::Ssh);
        state.upsert_node(node("agents-1", None, NodeStatus::Running));
        assert!(refresh(&mut state).await.unwrap().is_empty());
        assert_eq!(state.node("agents-1").unwrap().status, NodeStatus::Running);
    }
}
