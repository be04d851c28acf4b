//! Provider `aws`: EC2 instances through the `dcform-aws` crate (the only place naming aws-sdk-ec2
//! types). `prepare` finds or creates the cluster's network and key pair (recorded in the state's
//! `resources` as `aws_*`) and resolves the AMI; `create` hands each node to a per-pool, per-zone
//! batching [`Launcher`]: the executor's concurrent per-node calls of a wave become one
//! `RunInstances` per zone. Instances are tagged `dcform:cluster`, `dcform:pool`, `dcform:node` and
//! `Name`; an interrupted apply's instances are found by those tags and adopted, never launched
//! twice. `destroy` terminates (batched too); `teardown` removes everything tagged with the cluster,
//! in dependency order, which is also what `dcform destroy --cluster NAME` does with no state.
//! Nodes talk to each other at their private addresses (`NodeState::private_address`); dcform reaches
//! them at their public one, or, for private agents (`private_agents = true`: no public address),
//! through the declared bastion or the first master ([`super::route`]). At first contact
//! the host key is checked against the keys the instance printed on its console (`GetConsoleOutput`)
//! when EC2 has them, else trusted on first use and pinned, as everywhere.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dcform_aws::{
    AwsError, Ec2, ExtraVolume, Launcher, Network, NetworkSpec, NodeSlot, PoolTemplate, Settings,
    Terminator, WaitPolicy,
};
use dcform_bootstrap::ssh::HostKeyPolicy;
use tokio::sync::OnceCell;

use crate::apply::{Machine, NodeRequest, Provider, ProviderError, Remote, RemoteError};
use crate::spec::{AwsProvider as AwsSpec, ClusterSpec, PoolSpec, Role, SshSpec};
use crate::state::NodeState;
use crate::step_ops::MASTER_PORT;

pub use super::aws_inventory::{lineages, outputs, purge_cluster, refresh};
use super::route::{self, Route};
use super::ssh_remote::{SshConnector, SshRemote};

/// Instance type for pools and providers that set none: 4 vCPUs, 16 GiB, dcos-terraform's default class.
pub const DEFAULT_INSTANCE_TYPE: &str = "m5.xlarge";
/// Why a definition without `ami` or `ami_name` cannot be applied.
pub const NO_IMAGE: &str = "provider \"aws\" needs an image: set ami = \"ami-...\" (ids differ per region) or ami_name = \"...\" with ami_owners = [...]";
/// The state's record that the cluster's resources carry its lineage (see [`AwsProvider::set_lineage`]).
pub const LINEAGE_RECORD: &str = "aws_lineage";
/// How long concurrent `create` calls are gathered into one launch.
const GATHER: Duration = Duration::from_millis(50);

/// EC2 machines for one cluster.
pub struct AwsProvider {
    cluster: String,
    aws: AwsSpec,
    ssh: SshSpec,
    pools: Vec<PoolSpec>,
    connector: SshConnector,
    ec2: OnceCell<Ec2>,
    launcher: OnceCell<Launcher>,
    terminator: OnceCell<Terminator>,
    /// Set by `prepare`.
    prepared: Mutex<Option<Prepared>>,
    /// Where host keys read from consoles are kept as known_hosts files (`<state dir>/host-keys`).
    host_keys_dir: PathBuf,
    /// The state's lineage when the cluster's resources carry it (see [`AwsProvider::set_lineage`]).
    lineage: Option<String>,
    /// The masters as the state and this run know them (addresses, pinned host key): the jump
    /// hosts of private agents.
    masters: Mutex<BTreeMap<String, NodeState>>,
}

/// What `prepare` found or made: the network and each pool's template.
struct Prepared {
    net: Network,
    templates: HashMap<String, Arc<PoolTemplate>>,
}

/// How a provider error reads: the AWS error (call, code, hint) as the message.
pub(super) fn provider_error(node: &str, e: AwsError) -> ProviderError {
    ProviderError {
        node: node.to_string(),
        message: e.to_string(),
        transient: e.transient,
        source: None,
    }
}

/// known_hosts lines pinning `host` (at `port`) to `keys` (`TYPE BASE64`), in OpenSSH's syntax:
/// a port other than 22 is written `[host]:port`.
fn known_hosts_lines(host: &str, port: u16, keys: &[String]) -> String {
    let pattern = if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    };
    keys.iter().map(|k| format!("{pattern} {k}\n")).collect()
}

/// The SDK settings of a provider block.
pub fn settings(aws: &AwsSpec) -> Settings {
    Settings {
        region: aws.region.clone(),
        endpoint: aws.endpoint.clone(),
        ..Settings::default()
    }
}

/// A node's machine as EC2 reports its instance: reached from outside at its public address (none for
/// a private agent), by the other nodes at its private one.
fn machine(i: dcform_aws::Instance) -> Machine {
    Machine {
        addresses: i.public_ip.into_iter().collect(),
        private_address: i.private_ip,
        provider_id: i.id,
    }
}

impl AwsProvider {
    /// A provider for `spec`, keeping SSH logs under `state_dir/logs`.
    pub fn new(
        spec: &ClusterSpec,
        aws: &AwsSpec,
        state_dir: &Path,
        insecure_skip_host_key: bool,
    ) -> AwsProvider {
        AwsProvider {
            cluster: spec.name.clone(),
            aws: aws.clone(),
            ssh: spec.ssh.clone(),
            pools: spec.pools.clone(),
            connector: SshConnector::from_spec(
                &spec.ssh,
                None,
                state_dir.join("logs"),
                insecure_skip_host_key,
            ),
            ec2: OnceCell::new(),
            launcher: OnceCell::new(),
            terminator: OnceCell::new(),
            prepared: Mutex::new(None),
            host_keys_dir: state_dir.join("host-keys"),
            masters: Mutex::default(),
            lineage: None,
        }
    }

    /// How dcform's SSH reaches this provider's machines (see [`super::AnyProvider::ssh_connector`]).
    pub(super) fn connector(&self) -> &SshConnector {
        &self.connector
    }

    /// Tags everything made with `lineage` (`dcform:lineage`) and finds only what carries it, so
    /// another cluster of the same name (another state) is never adopted or destroyed — unless the
    /// state's network was made before lineages were tagged (`aws_vpc` recorded without
    /// `aws_lineage`): that cluster stays found by name, as it was made.
    pub fn set_lineage(&mut self, lineage: &str, resources: &BTreeMap<String, String>) {
        let tagged = resources.get(LINEAGE_RECORD).is_some_and(|l| l == lineage);
        if tagged || !resources.contains_key("aws_vpc") {
            self.lineage = Some(lineage.to_string());
        }
    }

    /// Learns the masters of `nodes` (the state's), the jump hosts of private agents.
    pub fn know_masters(&self, nodes: &[NodeState]) {
        for n in nodes.iter().filter(|n| n.role == Role::Master) {
            self.know_master(n.clone());
        }
    }

    fn know_master(&self, n: NodeState) {
        let mut known = self.masters.lock().unwrap_or_else(|p| p.into_inner());
        // A key pinned earlier stays unless this record has one (a fresh create has none yet).
        let key = n
            .ssh_host_key
            .clone()
            .or_else(|| known.get(&n.name).and_then(|k| k.ssh_host_key.clone()));
        known.insert(
            n.name.clone(),
            NodeState {
                ssh_host_key: key,
                ..n
            },
        );
    }

    /// How dcform's SSH reaches `node` (see [`route::choose`]).
    pub fn route(&self, node: &NodeState) -> Result<Route, route::RouteError> {
        let masters: Vec<NodeState> = self
            .masters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        route::choose(node, self.ssh.bastion.as_ref(), &masters, self.ssh.port)
    }

    async fn ec2(&self) -> Result<&Ec2, ProviderError> {
        self.ec2
            .get_or_try_init(|| async {
                Ec2::connect(&Settings {
                    lineage: self.lineage.clone(),
                    ..settings(&self.aws)
                })
                .await
            })
            .await
            .map_err(|e| provider_error("cluster", e))
    }

    /// A known_hosts file holding the host keys `node`'s instance printed on its console, when EC2 has
    /// them; `None` (with the reason logged) falls back to trusting the first key seen, as on any host.
    async fn console_known_hosts(&self, node: &NodeState) -> Option<PathBuf> {
        let id = node.provider_id.as_deref()?;
        let host = SshConnector::host_of(node)?;
        let keys = match self.ec2().await {
            Ok(ec2) => ec2.console_host_keys(id).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let keys = match keys {
            Ok(k) if !k.is_empty() => k,
            Ok(_) => {
                tracing::info!(node = %node.name, "the console output has no SSH host keys (yet): trusting the first key seen");
                return None;
            }
            Err(e) => {
                tracing::warn!(node = %node.name, "could not read the console output ({e}): trusting the first key seen");
                return None;
            }
        };
        let file = self
            .host_keys_dir
            .join(format!("{}.known_hosts", node.name));
        let written = std::fs::create_dir_all(&self.host_keys_dir).and_then(|()| {
            std::fs::write(&file, known_hosts_lines(&host, self.connector.port, &keys))
        });
        match written {
            Ok(()) => Some(file),
            Err(e) => {
                tracing::warn!(node = %node.name, "could not write {} ({e}): trusting the first key seen", file.display());
                None
            }
        }
    }

    /// The public key to import: `public_key`, else the private key's `.pub` beside it.
    fn public_key(&self) -> Result<Option<String>, ProviderError> {
        let path: Option<PathBuf> = self.aws.public_key.clone().or_else(|| {
            self.ssh.private_key.as_ref().map(|k| {
                let mut p = k.clone().into_os_string();
                p.push(".pub");
                PathBuf::from(p)
            })
        });
        let Some(path) = path else { return Ok(None) };
        match std::fs::read_to_string(&path) {
            Ok(k) if k.trim().starts_with("ssh-") || k.trim().starts_with("ecdsa-") => {
                Ok(Some(k.trim().to_string()))
            }
            Ok(_) => Err(ProviderError::permanent(
                "cluster",
                format!(
                    "{} is not an OpenSSH public key (ssh-ed25519 AAAA... / ssh-rsa AAAA...)",
                    path.display()
                ),
            )),
            Err(e) => Err(ProviderError::permanent(
                "cluster",
                format!(
                    "cannot read the public key {} to import as the cluster's key pair: {e}; \
                     make one with `ssh-keygen -t ed25519 -f {}` or set public_key in provider \"aws\"",
                    path.display(),
                    path.with_extension("").display()
                ),
            )),
        }
    }

    /// The AMI and its root device: `ami`, else the `ami_name` lookup (kept in the state so a
    /// later scale-up launches the same image as the rest of the cluster).
    async fn image(
        &self,
        ec2: &Ec2,
        records: &BTreeMap<String, String>,
    ) -> Result<(String, String), ProviderError> {
        let fallback_root = "/dev/sda1".to_string();
        if let Some(ami) = &self.aws.ami {
            if records.get("aws_ami") == Some(ami)
                && let Some(root) = records.get("aws_root_device")
            {
                return Ok((ami.clone(), root.clone()));
            }
            let root = ec2
                .root_device_of(ami)
                .await
                .map_err(|e| provider_error("cluster", e))?;
            return Ok((ami.clone(), root.unwrap_or(fallback_root)));
        }
        let Some(pattern) = &self.aws.ami_name else {
            return Err(ProviderError::permanent(
                "cluster",
                "provider \"aws\" has neither ami nor ami_name",
            ));
        };
        if records.get("aws_ami_name") == Some(pattern)
            && let (Some(ami), Some(root)) =
                (records.get("aws_ami"), records.get("aws_root_device"))
        {
            return Ok((ami.clone(), root.clone()));
        }
        let (ami, root) = ec2
            .find_image(pattern, &self.aws.ami_owners)
            .await
            .map_err(|e| provider_error("cluster", e))?;
        Ok((ami, root.unwrap_or(fallback_root)))
    }

    fn template(&self, pool: &PoolSpec, net: &Network, ami: &str, root: &str) -> PoolTemplate {
        let mut groups = vec![net.nodes_sg.clone(), net.admin_sg.clone()];
        if pool.role == Role::PublicAgent {
            groups.push(net.public_sg.clone());
        }
        PoolTemplate {
            cluster: self.cluster.clone(),
            pool: pool.name.to_string(),
            role: pool.role.as_str().to_string(),
            instance_type: pool
                .instance_type
                .clone()
                .or_else(|| self.aws.instance_type.clone())
                .unwrap_or_else(|| DEFAULT_INSTANCE_TYPE.to_string()),
            ami: ami.to_string(),
            root_device: root.to_string(),
            root_volume_gb: self.aws.root_volume_size,
            root_volume_type: self.aws.root_volume_type.clone(),
            extra_volumes: self
                .aws
                .extra_volumes
                .iter()
                .enumerate()
                .map(|(k, size)| ExtraVolume {
                    // /dev/sdf onwards, as the EC2 documentation recommends for data volumes.
                    device: format!("/dev/sd{}", char::from(b'f' + k as u8)),
                    size_gb: *size,
                    kind: None,
                })
                .collect(),
            user_data: self.aws.user_data.clone(),
            // Private agents are reached through a bastion; everything else at its public address.
            public_ip: !(self.aws.private_agents && pool.role == Role::Agent),
            security_groups: groups,
            key_name: net.key_name.clone(),
        }
    }

    fn prepared(
        &self,
        node: &str,
        pool: &str,
        index: u32,
    ) -> Result<(Arc<PoolTemplate>, dcform_aws::Subnet), ProviderError> {
        let guard = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
        let Some(Prepared { net, templates }) = guard.as_ref() else {
            return Err(ProviderError::permanent(
                node,
                "internal: create before prepare",
            ));
        };
        let t = templates.get(pool).cloned().ok_or_else(|| {
            ProviderError::permanent(node, format!("pool \"{pool}\" is not in the definition"))
        })?;
        let subnet = net
            .subnet_for(index)
            .cloned()
            .ok_or_else(|| ProviderError::permanent(node, "the cluster's network has no subnet"))?;
        Ok((t, subnet))
    }
}

impl Provider for AwsProvider {
    type Remote = SshRemote;

    async fn prepare(
        &self,
        _spec: &ClusterSpec,
        resources: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, ProviderError> {
        self.connector.make_log_dir()?;
        let ec2 = self.ec2().await?;
        let spec = NetworkSpec {
            cluster: self.cluster.clone(),
            cidr: self
                .aws
                .vpc_cidr
                .clone()
                .unwrap_or_else(|| "10.0.0.0/16".into()),
            zones: self.aws.availability_zones.clone(),
            subnet_ids: self.aws.subnet_ids.clone(),
            admin_cidrs: if self.aws.admin_cidrs.is_empty() {
                vec!["0.0.0.0/0".into()]
            } else {
                self.aws.admin_cidrs.clone()
            },
            admin_ports: vec![self.ssh.port, MASTER_PORT],
            // Public agents: web traffic and the task port range agents offer (Mesos' 31000-32000).
            public_ports: vec![(80, 80), (443, 443), (31000, 32000)],
            public_key: self.public_key()?,
        };
        let (net, (ami, root)) = tokio::try_join!(
            async {
                ec2.ensure_network(&spec)
                    .await
                    .map_err(|e| provider_error("cluster", e))
            },
            self.image(ec2, resources)
        )?;
        let templates: HashMap<String, Arc<PoolTemplate>> = self
            .pools
            .iter()
            .map(|p| {
                (
                    p.name.to_string(),
                    Arc::new(self.template(p, &net, &ami, &root)),
                )
            })
            .collect();
        let mut records = resources.clone();
        records.retain(|k, _| !k.starts_with("aws_"));
        records.extend(net.to_records());
        records.insert("aws_ami".into(), ami);
        if let Some(l) = &self.lineage {
            records.insert(LINEAGE_RECORD.into(), l.clone());
        }
        records.insert("aws_root_device".into(), root);
        // For refresh, which has only the state: where to ask.
        if let Some(e) = &self.aws.endpoint {
            records.insert("aws_endpoint".into(), e.clone());
        }
        if let (None, Some(n)) = (&self.aws.ami, &self.aws.ami_name) {
            records.insert("aws_ami_name".into(), n.clone());
        }
        *self.prepared.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Prepared { net, templates });
        Ok(records)
    }

    async fn create(&self, req: &NodeRequest) -> Result<Machine, ProviderError> {
        let (template, subnet) = self.prepared(&req.name, &req.pool, req.index)?;
        let ec2 = self.ec2().await?;
        let launcher = self
            .launcher
            .get_or_init(|| async { Launcher::new(ec2.clone(), GATHER) })
            .await;
        let slot = NodeSlot {
            name: req.name.clone(),
            index: req.index,
        };
        let i = launcher
            .launch(template, subnet, slot)
            .await
            .map_err(|e| provider_error(&req.name, e))?;
        let m = machine(i);
        if req.role == Role::Master {
            self.know_master(NodeState {
                name: req.name.clone(),
                pool: req.pool.clone(),
                index: req.index,
                role: req.role,
                host: None,
                provider_id: Some(m.provider_id.clone()),
                addresses: m.addresses.clone(),
                private_address: m.private_address.clone(),
                ssh_host_key: None,
                core_version: None,
                config_hash: None,
                status: crate::state::NodeStatus::Created,
                replica_id: None,
                replica_member: false,
            });
        }
        Ok(m)
    }

    async fn start(&self, node: &NodeState) -> Result<Machine, ProviderError> {
        let Some(id) = node.provider_id.as_deref() else {
            return Err(ProviderError::permanent(
                &node.name,
                "no instance id recorded",
            ));
        };
        let i = self
            .ec2()
            .await?
            .start(id)
            .await
            .map_err(|e| provider_error(&node.name, e))?;
        let m = machine(i);
        if node.role == Role::Master {
            self.know_master(NodeState {
                addresses: m.addresses.clone(),
                private_address: m.private_address.clone(),
                ..node.clone()
            });
        }
        Ok(m)
    }

    async fn connect(&self, node: &NodeState) -> Result<SshRemote, RemoteError> {
        let route = self.route(node).map_err(|e| RemoteError::Refused {
            host: node.name.clone(),
            message: e.to_string(),
        })?;
        // Only a first contact can be helped by the console: a recorded key (or the user's known_hosts,
        // or --insecure-skip-host-key) already decides.
        let mut policy = self.connector.policy_for(node);
        if policy == HostKeyPolicy::TrustOnFirstUse
            && let Some(file) = self.console_known_hosts(node).await
        {
            policy = HostKeyPolicy::KnownHosts(file);
        }
        let remote = match route {
            Route::Direct { .. } => self.connector.connect_checking(node, policy).await?,
            Route::ViaMaster {
                master,
                bastion,
                host,
            } => {
                let key = self
                    .masters
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&master)
                    .and_then(|m| m.ssh_host_key.clone());
                self.connector
                    .connect_through(node, &host, &bastion, key, policy)
                    .await?
            }
        };
        if node.role == Role::Master {
            // The key seen now is the one a private agent's jump through this master must present.
            self.know_master(NodeState {
                ssh_host_key: node.ssh_host_key.clone().or_else(|| remote.host_key()),
                ..node.clone()
            });
        }
        Ok(remote)
    }

    async fn destroy(&self, node: &NodeState) -> Result<(), ProviderError> {
        let ec2 = self.ec2().await?;
        // No id recorded (an apply killed inside RunInstances): the instance, if EC2 made it, is
        // found by its tags.
        let ids: Vec<String> = match &node.provider_id {
            Some(id) => vec![id.clone()],
            None => ec2
                .live_instances(&self.cluster, Some(&node.pool))
                .await
                .map_err(|e| provider_error(&node.name, e))?
                .into_iter()
                .filter(|i| i.node.as_deref() == Some(node.name.as_str()))
                .map(|i| i.id)
                .collect(),
        };
        let terminator = self
            .terminator
            .get_or_init(|| async { Terminator::new(ec2.clone(), GATHER) })
            .await;
        for id in ids {
            terminator
                .terminate(id)
                .await
                .map_err(|e| provider_error(&node.name, e))?;
        }
        Ok(())
    }

    async fn teardown(&self, _resources: &BTreeMap<String, String>) -> Result<(), ProviderError> {
        let ec2 = self.ec2().await?;
        ec2.purge_cluster(&self.cluster, WaitPolicy::default())
            .await
            .map_err(|e| provider_error("cluster", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_keys_become_known_hosts_lines_with_the_port_in_brackets_unless_22() {
        let keys = vec!["ssh-ed25519 AAAA".to_string(), "ssh-rsa AAAB".to_string()];
        assert_eq!(
            known_hosts_lines("203.0.113.7", 22, &keys),
            "203.0.113.7 ssh-ed25519 AAAA\n203.0.113.7 ssh-rsa AAAB\n"
        );
        assert_eq!(
            known_hosts_lines("203.0.113.7", 2222, &keys[..1]),
            "[203.0.113.7]:2222 ssh-ed25519 AAAA\n"
        );
    }
}
