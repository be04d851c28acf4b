//! The validated cluster definition. Everything here has been checked by `spec::load`; after that point
//! nothing sees an `Option<String>` where a pool name or a role belongs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use dcform_model::{PoolName, Role};

/// A whole validated cluster definition: one `cluster "name" { ... }` block with its variables applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterSpec {
    /// The cluster's name (`cluster "demo"`), used for the state folder and resource labels.
    pub name: String,
    /// Where machines come from.
    pub provider: ProviderSpec,
    /// How dcform reaches nodes over SSH (ignored by the `local` provider).
    pub ssh: SshSpec,
    /// Which core to install and its cluster-wide configuration.
    pub core: CoreSpec,
    /// Node pools in definition order. Names are unique; hosts are unique across pools.
    pub pools: Vec<PoolSpec>,
    /// Marathon services (`service "NAME" { ... }`) in definition order; app ids are unique.
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
    /// The folder the definition was loaded from; the default state lives in `<dir>/.dcform/<cluster>/`.
    pub definition_dir: PathBuf,
}

/// Where machines come from, with each provider's own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProviderSpec {
    /// Process sandboxes on this host: no root, no Docker.
    Local(LocalProvider),
    /// One container per node on a per-cluster Docker network.
    Docker(DockerProvider),
    /// Existing hosts reached over SSH; pools list `hosts`.
    Ssh(SshProvider),
    /// EC2 instances (boxed: many settings, and the other variants are small).
    Aws(Box<AwsProvider>),
}

impl ProviderSpec {
    /// Which provider this is, without its settings.
    pub fn kind(&self) -> ProviderKind {
        match self {
            ProviderSpec::Local(_) => ProviderKind::Local,
            ProviderSpec::Docker(_) => ProviderKind::Docker,
            ProviderSpec::Ssh(_) => ProviderKind::Ssh,
            ProviderSpec::Aws(_) => ProviderKind::Aws,
        }
    }
}

/// Which provider, without its settings: what the state records (as its HCL name) and what
/// commands that have no definition branch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// `provider "local"`.
    Local,
    /// `provider "docker"`.
    Docker,
    /// `provider "ssh"`.
    Ssh,
    /// `provider "aws"`.
    Aws,
}

impl ProviderKind {
    /// Every provider, in the order the docs list them.
    pub const ALL: [ProviderKind; 4] = [
        ProviderKind::Local,
        ProviderKind::Docker,
        ProviderKind::Ssh,
        ProviderKind::Aws,
    ];

    /// The name as written in the definition (`provider "docker"`) and in the state.
    pub const fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Local => "local",
            ProviderKind::Docker => "docker",
            ProviderKind::Ssh => "ssh",
            ProviderKind::Aws => "aws",
        }
    }

    /// Parses the definition's spelling.
    pub fn parse(s: &str) -> Option<ProviderKind> {
        ProviderKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `provider "local" {}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LocalProvider {
    /// First API port handed to the nodes: each gets its own, the lowest free one from here up that no
    /// other node holds, kept for good (0: the system picks free ports). At least 1024 (no root).
    pub base_port: u16,
}

/// `provider "docker" { image = ..., subnet = ... }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DockerProvider {
    /// Node image; default `dcform-node:bookworm` (built on first use).
    pub image: Option<String>,
    /// Subnet of the cluster network, e.g. `10.250.3.0/24`; default: Docker chooses.
    pub subnet: Option<String>,
}

/// `provider "ssh" {}`: existing hosts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SshProvider {}

/// `provider "aws" { region = ..., ... }`. Everything optional: credentials, region and endpoint
/// also come the AWS way (environment, profiles, SSO, instance roles).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AwsProvider {
    /// AWS region, e.g. `us-east-1` (else `AWS_REGION` / the profile's).
    pub region: Option<String>,
    /// Default instance type for pools that do not set one (else `m5.xlarge`).
    pub instance_type: Option<String>,
    /// AMI id for the nodes; else the newest image matching `ami_name` owned by `ami_owners`.
    pub ami: Option<String>,
    /// Endpoint override (e.g. a local moto server in tests); `AWS_ENDPOINT_URL_EC2` works too.
    pub endpoint: Option<String>,
    /// Image name pattern (`*` wildcards) looked up with DescribeImages when `ami` is not set.
    #[serde(default)]
    pub ami_name: Option<String>,
    /// Accounts whose images `ami_name` may match (e.g. Canonical's `099720109477`).
    #[serde(default)]
    pub ami_owners: Vec<String>,
    /// Zones to spread nodes over; empty: the region's first three.
    #[serde(default)]
    pub availability_zones: Vec<String>,
    /// CIDR of the VPC dcform creates (default `10.0.0.0/16`).
    #[serde(default)]
    pub vpc_cidr: Option<String>,
    /// Existing subnets (one VPC) to launch in instead of creating a network.
    #[serde(default)]
    pub subnet_ids: Vec<String>,
    /// Who may reach SSH and the master API (default `0.0.0.0/0`, as dcos-terraform's `admin_ips`).
    #[serde(default)]
    pub admin_cidrs: Vec<String>,
    /// OpenSSH public key file imported as the cluster's key pair (default: `ssh.private_key` + `.pub`).
    #[serde(default)]
    pub public_key: Option<PathBuf>,
    /// Root volume size in GiB (default: the AMI's).
    #[serde(default)]
    pub root_volume_size: Option<u32>,
    /// Root volume type (`gp3`, `gp2`, `io1`...).
    #[serde(default)]
    pub root_volume_type: Option<String>,
    /// Sizes in GiB of extra gp3 volumes per node (`/dev/sdf`, `/dev/sdg`, ...), deleted with it.
    #[serde(default)]
    pub extra_volumes: Vec<u32>,
    /// User data passed to every instance (e.g. a cloud-init script).
    #[serde(default)]
    pub user_data: Option<String>,
    /// Private agents (role `agent`) get no public address; dcform reaches them through the
    /// `ssh { bastion }`, else through the first master. Masters and public agents keep theirs.
    #[serde(default)]
    pub private_agents: bool,
}

/// The `ssh { ... }` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SshSpec {
    /// Login user; default `root`.
    pub user: String,
    /// Private key file (after `~` expansion); `None` = ssh-agent or the provider's generated key.
    pub private_key: Option<PathBuf>,
    /// SSH port; default 22.
    pub port: u16,
    /// A `known_hosts` file to check host keys against instead of trust-on-first-use.
    pub known_hosts: Option<PathBuf>,
    /// Optional jump host (`bastion = "[user@]host[:port]"`).
    pub bastion: Option<Bastion>,
}

/// A jump host, parsed from `[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bastion {
    /// Login user on the bastion; `None`: the `ssh` block's user.
    pub user: Option<String>,
    /// Host name or address.
    pub host: String,
    /// SSH port (default 22).
    pub port: u16,
}

impl Bastion {
    /// Parses `[user@]host[:port]`; `None` when a part is empty or the port is not a number.
    pub fn parse(s: &str) -> Option<Bastion> {
        let (user, rest) = match s.split_once('@') {
            Some((u, r)) => (Some(u.to_string()), r),
            None => (None, s),
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()?),
            None => (rest.to_string(), 22),
        };
        if host.is_empty() || user.as_deref() == Some("") {
            return None;
        }
        Some(Bastion { user, host, port })
    }

    /// The login user: its own, else `default` (the `ssh` block's).
    pub fn user_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.user.as_deref().unwrap_or(default)
    }
}

impl std::fmt::Display for Bastion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl Default for SshSpec {
    fn default() -> Self {
        SshSpec {
            user: "root".into(),
            private_key: None,
            port: 22,
            known_hosts: None,
            bastion: None,
        }
    }
}

/// The `core { ... }` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoreSpec {
    /// `bundled` (the dccore shipped with dcform) or an explicit version string.
    pub version: String,
    /// Cluster-wide core settings (`agent_ping_timeout = "2s"` ...), passed to every node's config.
    /// A `BTreeMap` so that the config hash does not depend on the order in the file.
    pub config: BTreeMap<String, serde_json::Value>,
    /// Every dccore API serves HTTPS with certificates of the cluster CA (`core { tls = false }`
    /// asks for plain HTTP, for clients that cannot do TLS; `plan` warns).
    #[serde(default = "yes")]
    pub tls: bool,
    /// The user tasks run as when they name none, and the only one a framework may use unless a
    /// `principal` block allows others (`core { task_user = "nobody" }`).
    #[serde(default = "nobody")]
    pub task_user: String,
    /// Framework principals (`principal "NAME" { roles = [...], users = [...] }`): each gets a
    /// secret made by dcform and only the roles and task users listed.
    #[serde(default)]
    pub principals: Vec<PrincipalSpec>,
}

fn yes() -> bool {
    true
}

fn nobody() -> String {
    "nobody".into()
}

impl Default for CoreSpec {
    fn default() -> Self {
        CoreSpec {
            version: "bundled".into(),
            config: BTreeMap::new(),
            tls: true,
            task_user: nobody(),
            principals: Vec::new(),
        }
    }
}

/// A framework principal declared in the definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrincipalSpec {
    /// The principal (HTTP Basic user name of its frameworks).
    pub name: String,
    /// Roles its frameworks may subscribe with (`*`: any).
    pub roles: Vec<String>,
    /// Users its tasks may run as.
    pub users: Vec<String>,
}

/// How many nodes a pool has: a count (the provider creates machines) or a list of existing hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolSize {
    /// `count = N`.
    Count(u32),
    /// `hosts = ["192.0.2.10", ...]`: on-prem machines, unique across the whole cluster.
    Hosts(Vec<String>),
}

impl PoolSize {
    /// Number of nodes the pool should have.
    pub fn len(&self) -> usize {
        match self {
            PoolSize::Count(n) => *n as usize,
            PoolSize::Hosts(h) => h.len(),
        }
    }

    /// Whether the pool should have no node at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One `pool "name" { ... }` block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolSpec {
    /// Unique name; node names are `<pool>-<index>`.
    pub name: PoolName,
    /// Role of every node in the pool.
    pub role: Role,
    /// Count or host list.
    pub size: PoolSize,
    /// Agent attributes (`rack = "r1"`), passed to `dccore agent --attributes`.
    pub attributes: BTreeMap<String, String>,
    /// Agent resources override (`"cpus:2;mem:1024"`); `None` = detected on the node.
    pub resources: Option<String>,
    /// Provider-specific machine size (EC2 instance type); `None` = the provider's default.
    pub instance_type: Option<String>,
}

/// One `service "NAME" { ... }` block: a Marathon app dcform deploys on the cluster.
///
/// `definition` has been accepted by `dccore_api::marathon::App::from_json`, the parser the
/// master's `/v2/apps` uses, so what validates here is what the cluster accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// The block's label (`service "web"`), for messages.
    pub name: String,
    /// The app id (`/web`): the definition's `id`, else `/NAME`.
    #[serde(with = "app_id_serde")]
    pub id: dccore_api::marathon::AppId,
    /// The Marathon app JSON to PUT to `/v2/apps/ID` (camelCase keys, `id` normalized to the
    /// absolute path, read-only fields of a GET answer removed).
    pub definition: serde_json::Map<String, serde_json::Value>,
    /// Wanted instances (the parser's default, 1, when the definition sets none).
    pub instances: u32,
}

/// Serde for [`dccore_api::marathon::AppId`] as its path string (`"/prod/web"`); reading checks it
/// with `AppId::parse`, so a hand-edited state or plan cannot carry an id the cluster would refuse.
pub mod app_id_serde {
    use dccore_api::marathon::AppId;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the id as its path.
    pub fn serialize<S: Serializer>(id: &AppId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(id.as_str())
    }

    /// Reads a path and checks it.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<AppId, D::Error> {
        let raw = String::deserialize(d)?;
        AppId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bastions_parse_with_defaults() {
        let b = Bastion::parse("jump.example:2222").expect("valid");
        assert_eq!(
            (b.user_or("root"), b.host.as_str(), b.port),
            ("root", "jump.example", 2222)
        );
        let b = Bastion::parse("ops@jump").expect("valid");
        assert_eq!((b.user_or("root"), b.port), ("ops", 22));
        assert_eq!(b.to_string(), "ops@jump:22");
        for bad in ["ops@jump:x", "@jump", "ops@", ""] {
            assert_eq!(Bastion::parse(bad), None, "{bad:?}");
        }
    }
}
