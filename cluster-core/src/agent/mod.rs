//! The agent: registers with the master, heartbeats, runs tasks in sandboxes and reports their
//! status until the master has it.
//!
//! ```text
//! master ──launch/kill──▶ http.rs ──▶ tasks.rs (one monitor task per process) ──▶ executor.rs
//!    ▲                                        │ status updates (queued, retried)
//!    └──register/heartbeat/status── link.rs ◀─┘            checkpoint.rs: agent id, one file per task
//! ```

mod cgroup;
mod checkpoint;
mod executor;
mod health;
mod http;
pub mod leader;
mod link;
pub mod registration;
mod tasks;
mod users;

pub use checkpoint::{CheckpointError, cgroup_name, safe_name};
pub use executor::ExecError;

use crate::proto::{Attribute, Resources};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Errors that stop the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The HTTP server failed.
    #[error("agent HTTP server failed")]
    Serve(#[source] std::io::Error),
    /// The config file is unreadable or invalid.
    #[error("bad agent config {path}")]
    Config {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The agent's address could not be read.
    #[error("cannot read the listener address")]
    Address(#[source] std::io::Error),
    /// TLS could not be set up.
    #[error("cannot set up TLS")]
    Tls(#[source] dccore_api::tls::TlsError),
}

/// Agent settings.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Every master's base URL, e.g. `https://10.0.0.1:5050` (see [`leader`]): the agent finds
    /// the leader among them itself. At least one.
    pub masters: Vec<String>,
    /// Checkpoints and sandboxes live here.
    pub work_dir: PathBuf,
    /// The agent's credential for the master (an agent token, or the operator token). It also
    /// opens this agent's `/files` API (dcform reads task output with it); launch and kill take
    /// only the per-run secret the agent gives the master.
    pub token: String,
    /// Resources offered.
    pub resources: Resources,
    /// Attributes.
    pub attributes: Vec<Attribute>,
    /// Public agent.
    pub public: bool,
    /// Hostname shown in offers.
    pub hostname: String,
    /// Heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Kill grace period when the task gives none.
    pub kill_grace: Duration,
    /// URL the master uses to reach this agent; default `http://LISTEN_ADDRESS`.
    pub advertise_url: Option<String>,
    /// cgroup v2 mount used for task limits (`None`: no limits). Default `/sys/fs/cgroup`.
    pub cgroup_base: Option<PathBuf>,
    /// The user a task runs as when the master names none (a root agent; default `nobody`).
    pub default_task_user: String,
    /// The config file's `tls_cert_file`, `tls_key_file`, `ca_file` (resolved against its
    /// folder); the binary loads them into [`AgentConfig::tls`] (flags win).
    pub tls_files: dccore_api::tls::TlsFiles,
    /// HTTPS with the agent's certificate (also its client certificate for the master), and the
    /// CA the master's certificate is checked against. Default: plain HTTP.
    pub tls: dccore_api::tls::Tls,
}

impl AgentConfig {
    /// Defaults: detected resources, 1 s heartbeats, 3 s kill grace. `master` may be a
    /// comma-separated list of every master (the binary checks the list with
    /// [`leader::parse_masters`] first and reports a bad one).
    pub fn new(
        master: impl Into<String>,
        work_dir: impl Into<PathBuf>,
        token: impl Into<String>,
    ) -> Self {
        let master = master.into();
        // A bad list leaves none: the agent then says so on every registration attempt.
        let masters = leader::parse_masters(&[&master]).unwrap_or_default();
        AgentConfig {
            masters,
            work_dir: work_dir.into(),
            token: token.into(),
            resources: detect_resources(),
            attributes: Vec::new(),
            public: false,
            hostname: hostname(),
            heartbeat_interval: Duration::from_secs(1),
            kill_grace: Duration::from_secs(3),
            advertise_url: None,
            cgroup_base: Some(PathBuf::from(cgroup::DEFAULT_BASE)),
            default_task_user: crate::acl::DEFAULT_TASK_USER.to_string(),
            tls_files: Default::default(),
            tls: Default::default(),
        }
    }

    /// Overrides detected resources with those named in a `--resources` string.
    pub fn with_resources_spec(mut self, spec: &str) -> Result<Self, crate::proto::ProtoError> {
        let given = Resources::parse(spec)?;
        let named = |n: &str| spec.split(';').any(|p| p.trim().starts_with(n));
        if named("cpus") {
            self.resources.cpus = given.cpus;
        }
        if named("mem") {
            self.resources.mem = given.mem;
        }
        if named("disk") {
            self.resources.disk = given.disk;
        }
        if named("ports") {
            self.resources.ports = given.ports;
        }
        Ok(self)
    }

    /// Applies a JSON config file (see [`ConfigFile`]).
    pub fn apply_file(mut self, path: &Path) -> Result<Self, AgentError> {
        let bad = |source: Box<dyn std::error::Error + Send + Sync>| AgentError::Config {
            path: path.into(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(Box::new(e)))?;
        let f: ConfigFile = serde_json::from_str(&text).map_err(|e| bad(Box::new(e)))?;
        if let Some(r) = f.resources {
            self = self.with_resources_spec(&r).map_err(|e| bad(Box::new(e)))?;
        }
        if let Some(a) = f.attributes {
            self.attributes = crate::proto::parse_attributes(&a).map_err(|e| bad(Box::new(e)))?;
        }
        if let Some(p) = f.public {
            self.public = p;
        }
        if let Some(h) = f.hostname {
            self.hostname = h;
        }
        if let Some(s) = f
            .heartbeat_interval_secs
            .filter(|s| s.is_finite() && *s > 0.0)
        {
            self.heartbeat_interval = Duration::from_secs_f64(s.min(3600.0));
        }
        if let Some(s) = f.kill_grace_secs.filter(|s| s.is_finite() && *s >= 0.0) {
            self.kill_grace = Duration::from_secs_f64(s.min(86400.0));
        }
        if let Some(u) = f.advertise_url {
            self.advertise_url = Some(u);
        }
        if f.cgroups == Some(false) {
            self.cgroup_base = None;
        }
        if let Some(m) = f.masters {
            self.masters =
                leader::parse_masters(&m).map_err(|e| bad(format!("masters: {e}").into()))?;
        }
        if let Some(u) = f.default_task_user {
            if u.is_empty() {
                return Err(bad("default_task_user must name a user".into()));
            }
            self.default_task_user = u;
        }
        let beside = |t: PathBuf| path.parent().map(|d| d.join(&t)).unwrap_or(t);
        self.tls_files = dccore_api::tls::TlsFiles {
            cert: f.tls_cert_file.map(beside),
            key: f.tls_key_file.map(beside),
            ca: f.ca_file.map(beside),
        };
        Ok(self)
    }
}

/// The agent's `--config` file format (JSON; every field optional; command-line flags win).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Every master's URL (`--master` wins when given).
    pub masters: Option<Vec<String>>,
    /// Same syntax as `--resources`.
    pub resources: Option<String>,
    /// Same syntax as `--attributes`.
    pub attributes: Option<String>,
    /// Same as `--public`.
    pub public: Option<bool>,
    /// Hostname shown in offers.
    pub hostname: Option<String>,
    /// Heartbeat interval in seconds.
    pub heartbeat_interval_secs: Option<f64>,
    /// Default kill grace period in seconds.
    pub kill_grace_secs: Option<f64>,
    /// URL the master should use to reach this agent (NAT, containers).
    pub advertise_url: Option<String>,
    /// `false` disables cgroup v2 limits even where they are available.
    pub cgroups: Option<bool>,
    /// The user tasks run as when the master names none (default `nobody`).
    pub default_task_user: Option<String>,
    /// Same as `--tls-cert` (which wins); relative to the config file.
    pub tls_cert_file: Option<PathBuf>,
    /// Same as `--tls-key` (which wins); relative to the config file.
    pub tls_key_file: Option<PathBuf>,
    /// Same as `--ca-file` (which wins); relative to the config file.
    pub ca_file: Option<PathBuf>,
}

/// A fresh random secret (two v4 uuids: 244 random bits from the OS generator).
fn new_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Resources of this machine: all CPUs, memory less 512 MiB for the system, 10 GB disk, ports 31000-32000.
pub fn detect_resources() -> Resources {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as f64)
        .unwrap_or(1.0);
    let mem_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
    });
    let mem = mem_kib
        .map(|k| (k / 1024.0 - 512.0).max(256.0).floor())
        .unwrap_or(1024.0);
    Resources {
        cpus,
        mem,
        disk: 10_000.0,
        ports: vec![(31000, 32000)],
    }
}

/// The address the master should use: the listen address, unless that is a wildcard (0.0.0.0 or
/// ::), in which case the local IP the kernel routes to the master from (a UDP "connect" sends
/// nothing) with the listen port.
async fn advertised_addr(listen: std::net::SocketAddr, master: &str) -> std::net::SocketAddr {
    if !listen.ip().is_unspecified() {
        return listen;
    }
    let hostport = master
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let local = async {
        let target = tokio::net::lookup_host(&hostport).await.ok()?.next()?;
        let bind = if target.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let sock = tokio::net::UdpSocket::bind(bind).await.ok()?;
        sock.connect(target).await.ok()?;
        sock.local_addr().ok()
    }
    .await;
    match local {
        Some(l) => std::net::SocketAddr::new(l.ip(), listen.port()),
        None => {
            tracing::warn!(%listen, "cannot tell which local address reaches the master; advertising the listen address");
            listen
        }
    }
}

/// Runs an agent on `listener` until `shutdown`. Running tasks are left running (and re-attached
/// by the next agent run on the same work dir).
pub async fn run(
    listener: TcpListener,
    config: AgentConfig,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let addr = listener.local_addr().map_err(AgentError::Address)?;
    let server_tls = config.tls.server_config().map_err(AgentError::Tls)?;
    if server_tls.is_none() {
        tracing::warn!("{}", crate::tls::PLAIN_HTTP_WARNING);
    }
    // Redirects are followed by the link itself, only to configured masters and keeping the
    // credential (reqwest's own policy would drop it, or follow anywhere).
    let http = config
        .tls
        .http_client()
        .map_err(AgentError::Tls)?
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| AgentError::Tls(dccore_api::tls::TlsError::Client(e)))?;
    let url = match &config.advertise_url {
        Some(u) => u.clone(),
        None => format!(
            "{}://{}",
            config.tls.scheme(),
            advertised_addr(
                addr,
                config
                    .masters
                    .first()
                    .map(String::as_str)
                    .unwrap_or_default()
            )
            .await
        ),
    };
    let shared = Arc::new(tasks::Agent::new(config, url, shutdown.clone(), http));
    shared.recover();
    let link = tokio::spawn(link::run(shared.clone()));
    let app = http::router(shared.clone());
    let served = crate::tls::serve(listener, server_tls, app, shutdown.clone()).await;
    shutdown.cancel();
    let _ = link.await;
    shared.monitors.close();
    shared.monitors.wait().await;
    served.map_err(AgentError::Serve)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wildcard_listen_address_advertises_the_ip_that_reaches_the_master() {
        let listen: std::net::SocketAddr = "0.0.0.0:5051".parse().unwrap();
        let got = tokio::time::timeout(
            Duration::from_secs(10),
            advertised_addr(listen, "http://127.0.0.1:5050"),
        )
        .await
        .expect("advertised_addr finishes");
        assert_eq!(got, "127.0.0.1:5051".parse().unwrap());
        let fixed: std::net::SocketAddr = "127.0.0.1:7".parse().unwrap();
        let got = tokio::time::timeout(
            Duration::from_secs(10),
            advertised_addr(fixed, "http://10.0.0.1:5050"),
        )
        .await
        .expect("advertised_addr finishes");
        assert_eq!(got, fixed);
    }

    #[test]
    fn tls_files_in_the_config_file_are_relative_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("agent.json");
        std::fs::write(
            &cfg,
            r#"{"tls_cert_file": "node.crt", "tls_key_file": "/etc/k.pem", "ca_file": "ca.pem"}"#,
        )
        .unwrap();
        let c = AgentConfig::new("127.0.0.1:1", "/tmp/x", "t")
            .apply_file(&cfg)
            .unwrap();
        assert_eq!(
            c.tls_files,
            dccore_api::tls::TlsFiles {
                cert: Some(dir.path().join("node.crt")),
                key: Some("/etc/k.pem".into()),
                ca: Some(dir.path().join("ca.pem")),
            }
        );
        let flags = dccore_api::tls::TlsFiles {
            ca: Some("/flag/ca.pem".into()),
            ..Default::default()
        };
        assert_eq!(
            flags.clone().or(&c.tls_files).ca,
            Some("/flag/ca.pem".into()),
            "flags win"
        );
        assert_eq!(
            flags.or(&c.tls_files).cert,
            Some(dir.path().join("node.crt"))
        );
    }

    #[test]
    fn resource_flags_override_only_what_they_name() {
        let c = AgentConfig::new("127.0.0.1:1", "/tmp/x", "t")
            .with_resources_spec("cpus:3")
            .unwrap();
        assert_eq!(c.resources.cpus, 3.0);
        assert_eq!(
            c.resources.ports,
            vec![(31000, 32000)],
            "ports keep the detected default"
        );
        assert_eq!(c.masters, vec!["http://127.0.0.1:1"]);
    }
}
