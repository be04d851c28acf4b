//! The validated cluster definition. Everything here has been checked by `spec::load`; after that point
//! nothing sees an `Option<String>` where a pool name or a role belongs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
    /// The provider's name as written in the definition (`provider "docker"`).
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderSpec::Local(_) => "local",
            ProviderSpec::Docker(_) => "docker",
            ProviderSpec::Ssh(_) => "ssh",
            ProviderSpec::Aws(_) => "aws",
        }
    }
}

/// `provider "local" {}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LocalProvider {
    /// First port handed to node processes; each node gets its own (0: pick free ports).
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
    /// Optional jump host `user@host:port`.
    pub bastion: Option<String>,
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

/// The role every node of a pool plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs `dccore master`.
    Master,
    /// Runs `dccore agent`.
    Agent,
    /// Runs `dccore agent --public`: resources reserved for role `slave_public`.
    PublicAgent,
}

impl Role {
    /// All roles, in the order the HCL names them.
    pub const ALL: [Role; 3] = [Role::Master, Role::Agent, Role::PublicAgent];

    /// The name used in HCL and in the state.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Agent => "agent",
            Role::PublicAgent => "public_agent",
        }
    }

    /// Parses the HCL spelling.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether nodes of this role run an agent (public or not).
    pub fn is_agent(self) -> bool {
        matches!(self, Role::Agent | Role::PublicAgent)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
    pub name: String,
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
