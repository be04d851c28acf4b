//! The master: agent registry, allocator-driven offers, frameworks and the task life cycle.
//! It knows nothing of HTTP: [`crate::api`] parses requests and forwards [`MasterCommand`]s
//! through a [`MasterHandle`].
//!
//! ```text
//! api/ ──MasterCommand──▶ owner task (state.rs) ──Change──▶ tables/ (apply: the replicated state)
//!      ◀──oneshot reply──        │  ├─ agents.rs     registration, heartbeats, unreachable
//!                                │  ├─ frameworks.rs subscribe, failover, teardown
//!                                │  ├─ calls.rs      ACCEPT, DECLINE, KILL, RECONCILE, ...
//!                                │  ├─ delivery.rs   status updates resent until acknowledged
//!                                │  ├─ offers.rs     allocation cycles (allocator, pure) → offers
//!                                │  ├─ drain.rs      operator drain / deactivate / reactivate
//!                                │  ├─ streams.rs    framework connections
//!                                │  └─ views.rs      snapshots for the operator API (JSON built by the caller)
//!                                ├─▶ registry.rs writer task (fsync off the owner task), or
//!                                ├─▶ replicated.rs: batches proposed to the Raft group, effects held until commit
//!                                └─▶ I/O tasks (launch/kill pushed to agents), results come back as commands
//! ```
//! The state has exactly one owner (the task started by [`Master::start`]); cluster state
//! changes only through [`tables::apply`], one typed [`Change`] at a time.

mod access;
mod agents;
mod calls;
mod command;
mod delivery;
mod discovery_feed;
mod drain;
mod frameworks;
mod local;
mod offers;
mod registry;
mod replicated;
#[cfg(test)]
mod replicated_tests;
mod state;
mod streams;
pub mod tables;
#[cfg(test)]
mod tests;
mod views;

pub use command::{CallError, MasterCommand, MetricsSnapshot, OperatorQuery, Subscription, Viewer};
pub use drain::{AgentCall, DrainConfig, DrainInfo, DrainState};
pub use registry::RegistryError;
pub use streams::STREAM_BUFFER;
pub use tables::Change;
pub use views::View;

use crate::acl::{AclError, Acls};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Errors that stop the master.
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    /// The persistent registry could not be loaded.
    #[error("cannot load the registry")]
    Registry(#[from] RegistryError),
    /// TLS for the calls to agents could not be set up.
    #[error("cannot set up TLS")]
    Tls(#[source] crate::tls::TlsError),
    /// The config file is unreadable or invalid.
    #[error("bad master config {path}")]
    Config {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The ACL file is unreadable.
    #[error("cannot read the ACL file {path}")]
    AclRead {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The ACL file is not valid Mesos ACL JSON (the cause names the field).
    #[error("bad ACL file {path}")]
    Acls {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: AclError,
    },
}

/// Master settings. Defaults suit small clusters; `--config FILE` (JSON, all fields optional,
/// durations in seconds) overrides them.
#[derive(Clone, Debug)]
pub struct MasterConfig {
    /// Registry and address file live here.
    pub work_dir: PathBuf,
    /// A silent agent is unreachable after this long.
    pub agent_timeout: Duration,
    /// An agent silent for this long is asked at its URL whether it is there: a refused
    /// connection (nothing listens: its process is gone) makes it unreachable at once, without
    /// waiting out [`MasterConfig::agent_timeout`]; an answer or a timeout (the host or the
    /// network may be down: not seen) leaves it to the timeout.
    pub agent_probe_after: Duration,
    /// How long after this master's start an agent recovered from the registry counts as on its
    /// way back: until then a reconciliation of a task on it that the master does not know is
    /// not answered (Mesos' behaviour for agents that have not re-registered yet), as the agent
    /// reports its tasks when it re-registers. Mesos waits 10 minutes (`agent_reregister_timeout`);
    /// dccore's agents heartbeat every second.
    pub agent_reregister_timeout: Duration,
    /// Periodic allocation cycle (events also trigger a cycle at the next housekeeping tick).
    pub allocation_interval: Duration,
    /// Unanswered offers are rescinded after this long.
    pub offer_timeout: Duration,
    /// Unacknowledged status updates are resent this often.
    pub status_update_retry: Duration,
    /// HEARTBEAT events on subscription streams this often.
    pub framework_heartbeat: Duration,
    /// Decline filter when a framework gives no `refuse_seconds`.
    pub default_refuse: Duration,
    /// Failover timeout when a framework gives none.
    pub default_failover_timeout: Duration,
    /// DRF weights per role (default 1).
    pub role_weights: HashMap<String, f64>,
    /// Access rules for framework principals (`--acls`; built-in rules without a file). They
    /// carry the default task user.
    pub acls: Acls,
    /// The config file's `agent_token_file` (resolved against the config file's folder); the
    /// binary reads it unless `--agent-token-file` is given.
    pub agent_token_file: Option<PathBuf>,
    /// Frameworks one principal may have registered at once (connected or within their failover
    /// timeout); frameworks subscribed with the operator token share one such allowance, and
    /// unauthenticated ones (the anonymous principal) another.
    pub max_frameworks_per_principal: usize,
    /// Torn-down frameworks remembered (Mesos' `--max_completed_frameworks`).
    pub max_completed_frameworks: usize,
    /// Completed tasks kept per framework (Mesos' `--max_completed_tasks_per_framework`).
    pub max_completed_tasks_per_framework: usize,
    /// Upper bound of a framework's `failover_timeout` (and of the default).
    pub max_failover_timeout: Duration,
    /// Scheduler calls must authenticate (Mesos' `--authenticate_frameworks`). When false, a
    /// call without an `Authorization` header is accepted as from an unauthenticated framework.
    pub authenticate_frameworks: bool,
    /// The config file's `tls_cert_file`, `tls_key_file`, `ca_file` (resolved against its
    /// folder); the binary loads them into [`MasterConfig::tls`] (flags win).
    pub tls_files: crate::tls::TlsFiles,
    /// HTTPS with the master's certificate (also presented to agents it calls), and the CA that
    /// agents' certificates and agent URLs are checked against. Default: plain HTTP.
    pub tls: crate::tls::Tls,
    /// The replicated masters' group (`replica_*` in the config file); `None`: a single
    /// master with its registry. With it the owner loop runs on the replicated log
    /// ([`Master::start_replicated`], started by [`crate::api::serve`]).
    pub replica: Option<crate::replica::ReplicaSettings>,
    /// Run the built-in services framework (Marathon's `/v2` API) beside the master (default
    /// true; `services: false` in the config file or `--no-services` turns it off).
    pub services: bool,
    /// A services deployment not finished this long after it started is rolled back to the
    /// app's previous version (`services_deployment_timeout_secs`, default 300).
    pub services_deployment_timeout: Duration,
    /// The config file's `replica_init`: on an empty store, make a new group of
    /// `replica_peers` (only the first master of a new cluster); otherwise wait to be added.
    pub replica_init: bool,
    /// Replicated masters: a snapshot of the state is taken after this many log entries
    /// (`replica_snapshot_entries`, default 10,000), and the log behind it purged...
    pub replica_snapshot_entries: u64,
    /// ...but for this many entries (`replica_keep_entries`, default 1,000), so a follower that
    /// fell a little behind catches up from the log, not from a whole snapshot.
    pub replica_keep_entries: u64,
    /// Service discovery (`dns_*` in the config file, `--dns-listen`); no DNS server by default.
    pub discovery: crate::discovery::DiscoveryConfig,
}

impl MasterConfig {
    /// Defaults with the given work dir.
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        MasterConfig {
            work_dir: work_dir.into(),
            agent_timeout: Duration::from_secs(5),
            // Agents heartbeat every second: 1.5 s is one missed heartbeat and a half.
            agent_probe_after: Duration::from_millis(1500),
            agent_reregister_timeout: Duration::from_secs(30),
            allocation_interval: Duration::from_secs(1),
            offer_timeout: Duration::from_secs(60),
            status_update_retry: Duration::from_secs(5),
            framework_heartbeat: Duration::from_secs(15),
            default_refuse: Duration::from_secs(5),
            default_failover_timeout: Duration::from_secs(7 * 24 * 3600),
            role_weights: HashMap::new(),
            acls: Acls::default(),
            agent_token_file: None,
            max_frameworks_per_principal: 100,
            max_completed_frameworks: 50,
            max_completed_tasks_per_framework: 1000,
            max_failover_timeout: Duration::from_secs(7 * 24 * 3600),
            authenticate_frameworks: true,
            tls_files: Default::default(),
            tls: Default::default(),
            replica: None,
            services: true,
            services_deployment_timeout: Duration::from_secs(300),
            replica_init: false,
            replica_snapshot_entries: 10_000,
            replica_keep_entries: 1_000,
            discovery: Default::default(),
        }
    }

    /// Loads access rules from a Mesos ACL JSON file (evaluated with this config's default
    /// task user).
    pub fn with_acls_file(mut self, path: &std::path::Path) -> Result<Self, MasterError> {
        let text = std::fs::read_to_string(path).map_err(|source| MasterError::AclRead {
            path: path.into(),
            source,
        })?;
        self.acls = Acls::parse(&text, self.acls.default_task_user()).map_err(|source| {
            MasterError::Acls {
                path: path.into(),
                source,
            }
        })?;
        Ok(self)
    }

    /// Applies a JSON config file.
    pub fn apply_file(mut self, path: &std::path::Path) -> Result<Self, MasterError> {
        let bad = |source: Box<dyn std::error::Error + Send + Sync>| MasterError::Config {
            path: path.into(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(Box::new(e)))?;
        let f: ConfigFile = serde_json::from_str(&text).map_err(|e| bad(Box::new(e)))?;
        let secs = |v: Option<f64>, d: Duration| {
            v.filter(|s| s.is_finite() && *s >= 0.0)
                // Capped at ~31 years so no value can overflow a Duration or an Instant.
                .map(|s| Duration::from_secs_f64(s.min(1e9)))
                .unwrap_or(d)
        };
        self.agent_timeout = secs(f.agent_timeout_secs, self.agent_timeout);
        self.agent_probe_after = secs(f.agent_probe_after_secs, self.agent_probe_after);
        self.agent_reregister_timeout = secs(
            f.agent_reregister_timeout_secs,
            self.agent_reregister_timeout,
        );
        self.allocation_interval = secs(f.allocation_interval_secs, self.allocation_interval);
        self.offer_timeout = secs(f.offer_timeout_secs, self.offer_timeout);
        self.status_update_retry = secs(f.status_update_retry_secs, self.status_update_retry);
        self.framework_heartbeat = secs(f.framework_heartbeat_secs, self.framework_heartbeat);
        self.default_refuse = secs(f.default_refuse_secs, self.default_refuse);
        self.default_failover_timeout = secs(
            f.default_failover_timeout_secs,
            self.default_failover_timeout,
        );
        if let Some(w) = f.role_weights {
            self.role_weights = w;
        }
        if let Some(u) = f.default_task_user {
            if u.is_empty() {
                return Err(bad("default_task_user must name a user".into()));
            }
            self.acls = self.acls.with_default_task_user(&u);
        }
        let beside = |t: PathBuf| path.parent().map(|d| d.join(&t)).unwrap_or(t);
        if let Some(t) = f.agent_token_file {
            self.agent_token_file = Some(beside(t));
        }
        self.tls_files = crate::tls::TlsFiles {
            cert: f.tls_cert_file.map(beside),
            key: f.tls_key_file.map(beside),
            ca: f.ca_file.map(beside),
        };
        if let Some(a) = f.acls {
            // A relative path is relative to the config file, as a node's config is written
            // beside its ACL file.
            let a = path.parent().map(|d| d.join(&a)).unwrap_or(a);
            self = self.with_acls_file(&a)?;
        }
        if let Some(n) = f.max_frameworks_per_principal {
            self.max_frameworks_per_principal = n;
        }
        if let Some(n) = f.max_completed_frameworks {
            self.max_completed_frameworks = n;
        }
        if let Some(n) = f.max_completed_tasks_per_framework {
            self.max_completed_tasks_per_framework = n;
        }
        self.max_failover_timeout = secs(f.max_failover_timeout_secs, self.max_failover_timeout);
        if let Some(b) = f.authenticate_frameworks {
            self.authenticate_frameworks = b;
        }
        if let Some(b) = f.services {
            self.services = b;
        }
        self.services_deployment_timeout = secs(
            f.services_deployment_timeout_secs,
            self.services_deployment_timeout,
        );
        self.replica = crate::replica::ReplicaSettings::parse(
            f.replica_id,
            f.replica_peers.as_deref(),
            f.replica_secret_file.map(beside),
        )
        .map_err(|e| bad(Box::new(e)))?;
        self.replica_init = f.replica_init.unwrap_or(false);
        if let Some(n) = f.replica_snapshot_entries {
            if n == 0 {
                return Err(bad(
                    "replica_snapshot_entries must be at least 1 (entries between snapshots)"
                        .into(),
                ));
            }
            self.replica_snapshot_entries = n;
        }
        if let Some(n) = f.replica_keep_entries {
            self.replica_keep_entries = n;
        }
        if self.replica_init && self.replica.is_none() {
            return Err(bad(
                "replica_init needs replica_id, replica_peers and replica_secret_file".into(),
            ));
        }
        self.discovery
            .apply(
                f.dns_listen.as_deref(),
                f.dns_domain.as_deref(),
                f.dns_ttl_secs,
            )
            .map_err(|e| bad(Box::new(e)))?;
        if let Some(u) = &f.dns_upstreams {
            self.discovery.upstreams =
                crate::discovery::forward::parse_upstreams(u).map_err(|e| bad(Box::new(e)))?;
        }
        if let Some(file) = f.dns_upstreams_file.map(beside) {
            let more =
                crate::discovery::forward::read_resolv_conf(&file).map_err(|e| bad(Box::new(e)))?;
            self.discovery.upstreams.extend(more);
        }
        Ok(self)
    }
}

/// The master's `--config` file format.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// See [`MasterConfig::agent_timeout`].
    pub agent_timeout_secs: Option<f64>,
    /// See [`MasterConfig::agent_probe_after`].
    pub agent_probe_after_secs: Option<f64>,
    /// See [`MasterConfig::agent_reregister_timeout`].
    pub agent_reregister_timeout_secs: Option<f64>,
    /// See [`MasterConfig::allocation_interval`].
    pub allocation_interval_secs: Option<f64>,
    /// See [`MasterConfig::offer_timeout`].
    pub offer_timeout_secs: Option<f64>,
    /// See [`MasterConfig::status_update_retry`].
    pub status_update_retry_secs: Option<f64>,
    /// See [`MasterConfig::framework_heartbeat`].
    pub framework_heartbeat_secs: Option<f64>,
    /// See [`MasterConfig::default_refuse`].
    pub default_refuse_secs: Option<f64>,
    /// See [`MasterConfig::default_failover_timeout`].
    pub default_failover_timeout_secs: Option<f64>,
    /// See [`MasterConfig::role_weights`].
    pub role_weights: Option<HashMap<String, f64>>,
    /// Mesos ACL JSON file (same as `--acls`, which wins); relative to the config file.
    pub acls: Option<PathBuf>,
    /// The user tasks run as when they ask for none, and the only one the built-in rules allow
    /// (default `nobody`).
    pub default_task_user: Option<String>,
    /// Agents' token file (same as `--agent-token-file`, which wins); relative to the config file.
    pub agent_token_file: Option<PathBuf>,
    /// See [`MasterConfig::max_frameworks_per_principal`].
    pub max_frameworks_per_principal: Option<usize>,
    /// See [`MasterConfig::max_completed_frameworks`].
    pub max_completed_frameworks: Option<usize>,
    /// See [`MasterConfig::max_completed_tasks_per_framework`].
    pub max_completed_tasks_per_framework: Option<usize>,
    /// See [`MasterConfig::max_failover_timeout`].
    pub max_failover_timeout_secs: Option<f64>,
    /// See [`MasterConfig::authenticate_frameworks`].
    pub authenticate_frameworks: Option<bool>,
    /// Same as `--tls-cert` (which wins); relative to the config file.
    pub tls_cert_file: Option<PathBuf>,
    /// Same as `--tls-key` (which wins); relative to the config file.
    pub tls_key_file: Option<PathBuf>,
    /// Same as `--ca-file` (which wins); relative to the config file.
    pub ca_file: Option<PathBuf>,
    /// This master's id in the replicated group (with `replica_peers`, `replica_secret_file`).
    pub replica_id: Option<u64>,
    /// Every master of the group, this one included, as `"ID=URL"`.
    pub replica_peers: Option<Vec<String>>,
    /// The masters' shared secret (0600); relative to the config file.
    pub replica_secret_file: Option<PathBuf>,
    /// See [`MasterConfig::services`].
    pub services: Option<bool>,
    /// See [`MasterConfig::services_deployment_timeout`].
    pub services_deployment_timeout_secs: Option<f64>,
    /// See [`MasterConfig::replica_init`].
    pub replica_init: Option<bool>,
    /// See [`MasterConfig::replica_snapshot_entries`].
    pub replica_snapshot_entries: Option<u64>,
    /// See [`MasterConfig::replica_keep_entries`].
    pub replica_keep_entries: Option<u64>,
    /// DNS server address `IP:PORT`, UDP and TCP (same as `--dns-listen`, which wins).
    pub dns_listen: Option<String>,
    /// The zone the DNS server answers (default `dccore`).
    pub dns_domain: Option<String>,
    /// TTL of the DNS answers, seconds (default 5).
    pub dns_ttl_secs: Option<u64>,
    /// Resolvers (`IP` or `IP:PORT`) that names outside `dns_domain` are relayed to (default:
    /// none, REFUSED).
    pub dns_upstreams: Option<Vec<String>>,
    /// A resolv.conf whose `nameserver`s are upstreams too, after `dns_upstreams` (dcform points
    /// it at the node's original resolv.conf); relative to the config file.
    pub dns_upstreams_file: Option<PathBuf>,
}

/// The way in to a running master: its command channel. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MasterHandle {
    tx: mpsc::Sender<MasterCommand>,
}

impl MasterHandle {
    /// A handle over a command channel (a master started elsewhere, or a test's own receiver).
    pub fn new(tx: mpsc::Sender<MasterCommand>) -> Self {
        MasterHandle { tx }
    }

    /// Sends a command built around a reply channel and waits for the answer;
    /// [`CallError::Unavailable`] if the master has stopped.
    pub async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> MasterCommand,
    ) -> Result<T, CallError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| CallError::Unavailable)?;
        rx.await.map_err(|_| CallError::Unavailable)
    }

    /// Sends a command that has no answer.
    pub async fn tell(&self, cmd: MasterCommand) -> Result<(), CallError> {
        self.tx.send(cmd).await.map_err(|_| CallError::Unavailable)
    }
}

/// A running master: the owner task and its handle.
pub struct Master {
    handle: MasterHandle,
    task: tokio::task::JoinHandle<()>,
    discovery: crate::discovery::Directory,
}

impl Master {
    /// Loads the registry and starts the owner task (and its registry writer); it runs until
    /// `shutdown` is cancelled. Needs a Tokio runtime.
    pub fn start(config: MasterConfig, shutdown: CancellationToken) -> Result<Master, MasterError> {
        let loaded = registry::Registry::load(&config.work_dir)?;
        let http = agent_client(&config)?;
        let writer = registry::Writer::start(registry::Registry::path(&config.work_dir));
        let (tx, rx) = mpsc::channel(4096);
        let (domain, ttl) = (config.discovery.domain.clone(), config.discovery.ttl);
        let owner = state::State::new(config, loaded, Some(writer), tx.clone(), http);
        let discovery = crate::discovery::Directory::new(owner.discovery.subscribe(), &domain, ttl);
        let task = tokio::spawn(owner.run(rx, shutdown));
        Ok(Master {
            handle: MasterHandle { tx },
            task,
            discovery,
        })
    }

    /// Starts the owner task of a replicated master on `replica` (no registry: the Raft store
    /// is the durable state). It follows until the replica leads, then rebuilds its state from
    /// the log; `propose_timeout` (about the election timeout) bounds each commit before the
    /// master steps down.
    pub fn start_replicated(
        config: MasterConfig,
        replica: std::sync::Arc<crate::replica::Replica>,
        propose_timeout: Duration,
        shutdown: CancellationToken,
    ) -> Result<Master, MasterError> {
        let http = agent_client(&config)?;
        let (tx, rx) = mpsc::channel(4096);
        let repl = replicated::Replicated::new(replica, propose_timeout);
        let (domain, ttl) = (config.discovery.domain.clone(), config.discovery.ttl);
        let owner = state::State::new(
            config,
            registry::Registry::default(),
            None,
            tx.clone(),
            http,
        )
        .replicated(repl);
        let discovery = crate::discovery::Directory::new(owner.discovery.subscribe(), &domain, ttl);
        let task = tokio::spawn(owner.run(rx, shutdown));
        Ok(Master {
            handle: MasterHandle { tx },
            task,
            discovery,
        })
    }

    /// The service discovery records, following the master's state (DNS, `/v1/services`).
    pub fn discovery(&self) -> crate::discovery::Directory {
        self.discovery.clone()
    }

    /// A handle to send commands with.
    pub fn handle(&self) -> MasterHandle {
        self.handle.clone()
    }

    /// Waits until the owner task has stopped (after `shutdown`), the registry written.
    pub async fn stopped(self) {
        drop(self.handle);
        let _ = self.task.await;
    }
}

/// The client the master calls its agents with (launch, kill), over TLS when configured.
fn agent_client(config: &MasterConfig) -> Result<reqwest::Client, MasterError> {
    config
        .tls
        .http_client()
        .map_err(MasterError::Tls)?
        .timeout(Duration::from_secs(10))
        // Few idle connections per agent: a burst of launches must not leave thousands open.
        .pool_max_idle_per_host(4)
        .build()
        .map_err(|e| MasterError::Tls(crate::tls::TlsError::Client(e)))
}
