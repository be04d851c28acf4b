//! Provider `docker`: one container per node on a per-cluster network, talking to Docker Engine through its
//! API (bollard; its types stay in this file). Nodes are bootstrapped over real SSH like any other machine.
//!
//! ```text
//! prepare:  node image (built on first use) ─ per-cluster SSH key (0600, <state dir>/ssh/) ─ network dcform-<cluster>
//! create:   container dcform-<cluster>-<node> (found again by name after an interrupted apply) ─ its IP
//!           (a master's fixed, from the top of the subnet, so it keeps it across restarts: pin.rs)
//! connect:  SSH as root with the cluster key to the container IP (host key pinned after first use)
//! destroy:  remove the container (and its anonymous volumes)
//! teardown: every container, network and volume labelled dcform.cluster=<cluster>
//! ```
//! Every object carries the labels `dcform.cluster`, `dcform.pool`, `dcform.node`, so [`purge_cluster`] and
//! [`list_clusters`] work with no state at all.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, HostConfig, Ipam, IpamConfig, NetworkCreateRequest, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, InspectNetworkOptions, RemoveContainerOptions,
    StartContainerOptions,
};
use dc_support::retry::{self, Backoff, Next, RetryError};
use dcform_bootstrap::node_image::{self, AUTHORIZED_KEYS_ENV, NodeImageOptions};
use tokio::sync::OnceCell;

use crate::apply::{Machine, NodeRequest, Provider, ProviderError, RemoteError};
use crate::spec::{ClusterSpec, Role};
use crate::state::NodeState;

use super::ssh_remote::{SshConnector, SshRemote};

mod inventory;
mod pin;
mod tar;

pub use inventory::{FoundCluster, FoundNode, PurgeReport, list_clusters, purge_cluster};
use tar::single_file_tar;

/// Label naming the cluster of every container, network and volume dcform makes.
pub const LABEL_CLUSTER: &str = "dcform.cluster";
/// Label naming the pool of a node container.
pub const LABEL_POOL: &str = "dcform.pool";
/// Label naming the node of a node container.
pub const LABEL_NODE: &str = "dcform.node";
/// Label naming the role of a node container.
pub const LABEL_ROLE: &str = "dcform.role";

/// Entry command of node containers: the image's init (`dcform-node-init`), but with only an ed25519 host
/// key. The init's `ssh-keygen -A` also makes RSA and ECDSA keys, which takes seconds per container when ten
/// start at once on a busy 2-core machine; dcform only uses ed25519, and `-A` skips key files that exist.
pub const ENTRYPOINT: &str = r#"set -e
k=/etc/ssh/ssh_host_ed25519_key
[ -s "$k" ] || ssh-keygen -q -t ed25519 -N '' -f "$k" </dev/null
for t in rsa ecdsa; do [ -s "/etc/ssh/ssh_host_${t}_key" ] || echo unused > "/etc/ssh/ssh_host_${t}_key"; done
exec /usr/local/sbin/dcform-node-init -o HostKey="$k"
"#;

/// Errors of the Docker Engine API, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The engine could not be reached at all.
    #[error("cannot reach Docker Engine (is it running, and may this user use its socket?)")]
    Connect(#[source] BollardError),
    /// A started container never showed an address on the cluster network.
    #[error("docker: {0}")]
    NoAddress(String),
    /// A call failed.
    #[error("docker: cannot {what}")]
    Api {
        /// What was being done.
        what: String,
        /// The engine's answer.
        #[source]
        source: BollardError,
    },
}

/// The per-cluster private key, relative to the state folder.
pub fn key_path(state_dir: &Path) -> PathBuf {
    state_dir.join("ssh").join("id_ed25519")
}

/// The network of a cluster.
pub fn network_name(cluster: &str) -> String {
    format!("dcform-{cluster}")
}

/// The container of a node.
pub fn container_name(cluster: &str, node: &str) -> String {
    format!("dcform-{cluster}-{node}")
}

/// Connects to the local engine and agrees on an API version it speaks (older engines reject newer ones).
pub async fn client() -> Result<Docker, DockerError> {
    Docker::connect_with_local_defaults()
        .map_err(DockerError::Connect)?
        .negotiate_version()
        .await
        .map_err(DockerError::Connect)
}

fn is_status(e: &BollardError, code: u16) -> bool {
    matches!(e, BollardError::DockerResponseServerError { status_code, .. } if *status_code == code)
}

fn api(what: impl Into<String>) -> impl FnOnce(BollardError) -> DockerError {
    let what = what.into();
    move |source| DockerError::Api { what, source }
}

fn provider_error(node: &str, e: DockerError) -> ProviderError {
    // A refused socket or a dropped connection may pass; an answer from the engine will not change.
    let transient = match &e {
        DockerError::Connect(_) => false,
        DockerError::NoAddress(_) => true,
        DockerError::Api { source, .. } => {
            !matches!(source, BollardError::DockerResponseServerError { status_code, .. } if *status_code < 500)
        }
    };
    ProviderError {
        node: node.into(),
        message: dc_support::error::chain(&e),
        transient,
        source: Some(Box::new(e)),
    }
}

fn label_filter(cluster: Option<&str>) -> HashMap<String, Vec<String>> {
    let v = match cluster {
        Some(c) => format!("{LABEL_CLUSTER}={c}"),
        None => LABEL_CLUSTER.to_string(),
    };
    HashMap::from([("label".to_string(), vec![v])])
}

/// Containers per node on one network per cluster.
pub struct DockerProvider {
    cluster: String,
    image: String,
    subnet: Option<String>,
    state_dir: PathBuf,
    connector: SshConnector,
    docker: OnceCell<Docker>,
    /// The dccore binary, placed into each new container before it starts (see [`DockerProvider::set_core`]).
    core: Option<PathBuf>,
    /// Its tar archive, made once for all containers.
    core_tar: OnceCell<bytes::Bytes>,
}

impl DockerProvider {
    /// A provider for cluster `spec.name`, keeping its key and logs in `state_dir`.
    pub fn new(
        spec: &ClusterSpec,
        settings: &crate::spec::DockerProvider,
        state_dir: &Path,
        insecure_skip_host_key: bool,
    ) -> DockerProvider {
        // Containers are made from our image with the cluster key for root: the definition's own key, if any,
        // is offered first so a user-supplied image keeps working.
        let connector = SshConnector::from_spec(
            &spec.ssh,
            Some(key_path(state_dir)),
            state_dir.join("logs"),
            insecure_skip_host_key,
        );
        DockerProvider {
            cluster: spec.name.clone(),
            image: settings
                .image
                .clone()
                .unwrap_or_else(|| node_image::DEFAULT_TAG.to_string()),
            subnet: settings.subnet.clone(),
            state_dir: state_dir.to_path_buf(),
            connector,
            docker: OnceCell::new(),
            core: None,
            core_tar: OnceCell::new(),
        }
    }

    /// How dcform's SSH reaches the containers (see [`super::AnyProvider::ssh_connector`]).
    pub(crate) fn connector(&self) -> &SshConnector {
        &self.connector
    }

    /// Places `binary` at `/usr/local/bin/dccore` (mode 0755) in each container it creates, the way kind bakes
    /// its binaries into the node: the install step's upload then finds the same sha256 and mode and skips the
    /// transfer, which takes the heaviest part of each node's bootstrap (sshd receiving ~6 MB) off the cores.
    /// Everything else still runs over SSH.
    pub fn set_core(&mut self, binary: &Path) {
        self.core = Some(binary.to_path_buf());
    }

    /// Copies the core binary into a created (not yet started) container through the Docker API.
    async fn preload_core(
        &self,
        docker: &Docker,
        node: &str,
        container: &str,
    ) -> Result<(), ProviderError> {
        let Some(path) = &self.core else {
            return Ok(());
        };
        let tar = self
            .core_tar
            .get_or_try_init(|| async {
                let bytes = tokio::fs::read(path).await?;
                Ok::<_, std::io::Error>(bytes::Bytes::from(single_file_tar(
                    "dccore", 0o755, &bytes,
                )))
            })
            .await
            .map_err(|e| {
                ProviderError::permanent(node, format!("cannot read {}: {e}", path.display()))
            })?;
        let opts = bollard::query_parameters::UploadToContainerOptionsBuilder::default()
            .path("/usr/local/bin")
            .build();
        docker
            .upload_to_container(container, Some(opts), bollard::body_full(tar.clone()))
            .await
            .map_err(|e| provider_error(node, api(format!("copy dccore into {container}"))(e)))
    }

    async fn docker(&self) -> Result<&Docker, DockerError> {
        self.docker.get_or_try_init(client).await
    }

    /// Builds the node image when the tag is missing, saying so (it takes about half a minute).
    async fn ensure_image(&self, docker: &Docker) -> Result<(), ProviderError> {
        match docker.inspect_image(&self.image).await {
            Ok(_) => return Ok(()),
            Err(e) if is_status(&e, 404) => {}
            Err(e) => {
                return Err(provider_error(
                    "cluster",
                    api(format!("inspect image {}", self.image))(e),
                ));
            }
        }
        eprintln!(
            "Node image {} not found: building it now (first use; `dcform node-image build` does this ahead of time).",
            self.image
        );
        let opts = NodeImageOptions {
            tag: self.image.clone(),
            ..NodeImageOptions::default()
        };
        let info = tokio::task::spawn_blocking(move || {
            node_image::ensure(&opts, &mut |line| eprintln!("  node image: {line}"))
        })
        .await
        .map_err(|e| {
            ProviderError::permanent("cluster", format!("node image build task failed: {e}"))
        })?
        .map_err(|e| ProviderError {
            node: "cluster".into(),
            message: format!(
                "cannot build the node image: {}",
                dc_support::error::chain(&e)
            ),
            transient: false,
            source: Some(Box::new(e)),
        })?;
        eprintln!("Node image {} ready ({}).", info.tag, info.path);
        Ok(())
    }

    /// The cluster key pair (made once, private half 0600); returns the public line.
    fn ensure_key(&self) -> Result<String, ProviderError> {
        let path = key_path(&self.state_dir);
        let pub_path = path.with_extension("pub");
        let io = |what: &str, e: String| {
            ProviderError::permanent("cluster", format!("{what} {}: {e}", path.display()))
        };
        if path.is_file()
            && let Ok(line) = std::fs::read_to_string(&pub_path)
            && !line.trim().is_empty()
        {
            return Ok(line.trim().to_string());
        }
        let key = dcform_bootstrap::ssh::generate_ed25519(&format!("dcform-{}", self.cluster))
            .map_err(|e| io("cannot generate the cluster SSH key", e.to_string()))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| io("cannot create the folder of", e.to_string()))?;
        }
        crate::state::write_private(&path, key.private_openssh.as_bytes())
            .map_err(|e| io("cannot write", e.to_string()))?;
        std::fs::write(&pub_path, format!("{}\n", key.public_line))
            .map_err(|e| io("cannot write the public half of", e.to_string()))?;
        Ok(key.public_line)
    }

    async fn ensure_network(&self, docker: &Docker) -> Result<String, DockerError> {
        let name = network_name(&self.cluster);
        match docker
            .inspect_network(&name, None::<InspectNetworkOptions>)
            .await
        {
            Ok(n) => return Ok(n.id.unwrap_or(name)),
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(api(format!("inspect network {name}"))(e)),
        }
        let req = NetworkCreateRequest {
            name: name.clone(),
            driver: Some("bridge".into()),
            labels: Some(HashMap::from([(
                LABEL_CLUSTER.to_string(),
                self.cluster.clone(),
            )])),
            ipam: self.subnet.as_ref().map(|s| Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(s.clone()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        let made = match self.subnet {
            Some(_) => docker.create_network(req).await.map(|r| r.id),
            // Masters get fixed addresses, which needs a subnet named at creation.
            None => pin::pinnable_network(docker, req).await,
        };
        match made {
            Ok(id) => Ok(id),
            // Made meanwhile by another run: use it.
            Err(e) if is_status(&e, 409) => Ok(name),
            Err(e) => Err(api(format!("create network {name}"))(e)),
        }
    }

    /// The container's address on the cluster network, once it runs (Docker fills it in
    /// shortly after the start; a container found stopped is started again).
    async fn address(&self, docker: &Docker, name: &str) -> Result<(String, String), DockerError> {
        let net = network_name(&self.cluster);
        let net = &net;
        retry::run(ADDRESS_POLL, |at| async move {
            let c = match docker
                .inspect_container(name, None::<InspectContainerOptions>)
                .await
            {
                Ok(c) => c,
                Err(e) => return Next::Fail(api(format!("inspect container {name}"))(e)),
            };
            let id = c.id.clone().unwrap_or_else(|| name.to_string());
            let running = c.state.as_ref().and_then(|s| s.running).unwrap_or(false);
            if !running
                && let Err(e) = docker
                    .start_container(name, None::<StartContainerOptions>)
                    .await
            {
                return Next::Fail(api(format!("start container {name}"))(e));
            }
            let ip = c
                .network_settings
                .and_then(|s| s.networks)
                .and_then(|mut n| n.remove(net))
                .and_then(|e| e.ip_address)
                .filter(|ip| !ip.is_empty());
            match (running, ip) {
                (true, Some(ip)) => Next::Done((id, ip)),
                _ => at.retry(DockerError::NoAddress(format!(
                    "container {name} has no address on {net} yet"
                ))),
            }
        })
        .await
        .map_err(RetryError::into_error)
    }
}

/// How long [`DockerProvider::address`] waits for a container's address: about 10 s, polling
/// often at first (it is usually there within a few hundred milliseconds).
const ADDRESS_POLL: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1))
    .deadline(Duration::from_secs(10));

impl Provider for DockerProvider {
    type Remote = SshRemote;

    async fn prepare(
        &self,
        _spec: &ClusterSpec,
        resources: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, ProviderError> {
        let docker = self
            .docker()
            .await
            .map_err(|e| provider_error("cluster", e))?;
        self.ensure_image(docker).await?;
        self.ensure_key()?;
        let id = self
            .ensure_network(docker)
            .await
            .map_err(|e| provider_error("cluster", e))?;
        // A bastion in the definition is pinned like the nodes, before any node step.
        let mut r = self.connector.prepare(resources).await?;
        r.insert("network".into(), network_name(&self.cluster));
        r.insert("network_id".into(), id);
        r.insert("image".into(), self.image.clone());
        r.insert(
            "ssh_key".into(),
            key_path(&self.state_dir).display().to_string(),
        );
        Ok(r)
    }

    async fn create(&self, req: &NodeRequest) -> Result<Machine, ProviderError> {
        let docker = self
            .docker()
            .await
            .map_err(|e| provider_error(&req.name, e))?;
        let name = container_name(&self.cluster, &req.name);
        let exists = match docker
            .inspect_container(&name, None::<InspectContainerOptions>)
            .await
        {
            Ok(_) => true,
            Err(e) if is_status(&e, 404) => false,
            Err(e) => {
                return Err(provider_error(
                    &req.name,
                    api(format!("inspect container {name}"))(e),
                ));
            }
        };
        if !exists {
            let public = self.ensure_key()?;
            let labels = HashMap::from([
                (LABEL_CLUSTER.to_string(), self.cluster.clone()),
                (LABEL_POOL.to_string(), req.pool.to_string()),
                (LABEL_NODE.to_string(), req.name.clone()),
                (LABEL_ROLE.to_string(), req.role.as_str().to_string()),
            ]);
            let body = ContainerCreateBody {
                image: Some(self.image.clone()),
                hostname: Some(req.name.clone()),
                env: Some(vec![format!("{AUTHORIZED_KEYS_ENV}={public}")]),
                entrypoint: Some(vec!["/bin/sh".into(), "-c".into(), ENTRYPOINT.into()]),
                labels: Some(labels),
                host_config: Some(HostConfig {
                    network_mode: Some(network_name(&self.cluster)),
                    // A real init as PID 1 reaps the daemons dccore's supervisor leaves behind.
                    init: Some(true),
                    // Back after a Docker Engine or host restart; the roles come back with it
                    // (the node image's entry command runs the installer's boot scripts).
                    restart_policy: Some(RestartPolicy {
                        name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                        maximum_retry_count: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let opts = CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            };
            let pinned = if req.role == Role::Master {
                pin::master_endpoint(
                    docker,
                    &network_name(&self.cluster),
                    self.subnet.as_deref(),
                    req.index,
                )
                .await
                .map_err(|e| provider_error(&req.name, e))?
            } else {
                None
            };
            let created = match pinned {
                Some(endpoint) => {
                    let fixed = ContainerCreateBody {
                        networking_config: Some(endpoint),
                        ..body.clone()
                    };
                    match docker.create_container(Some(opts.clone()), fixed).await {
                        Err(e) if pin::refuses_fixed_address(&e) => {
                            tracing::warn!(
                                node = %req.name,
                                "network {} takes no fixed address (made outside this dcform):                                  the master gets one from Docker and may come back at another after a restart",
                                network_name(&self.cluster)
                            );
                            docker.create_container(Some(opts), body).await
                        }
                        other => other,
                    }
                }
                None => docker.create_container(Some(opts), body).await,
            };
            match created {
                Ok(_) => self.preload_core(docker, &req.name, &name).await?,
                // Made meanwhile (a parallel or interrupted run): adopt it below.
                Err(e) if is_status(&e, 409) => {}
                Err(e) => {
                    return Err(provider_error(
                        &req.name,
                        api(format!("create container {name}"))(e),
                    ));
                }
            }
        }
        let (id, ip) = self
            .address(docker, &name)
            .await
            .map_err(|e| provider_error(&req.name, e))?;
        Ok(Machine {
            provider_id: id,
            addresses: vec![ip],
            private_address: None,
        })
    }

    async fn start(&self, node: &NodeState) -> Result<Machine, ProviderError> {
        let docker = self
            .docker()
            .await
            .map_err(|e| provider_error(&node.name, e))?;
        let name = container_name(&self.cluster, &node.name);
        // Starts it if it is not running and waits for its address on the cluster network.
        let (id, ip) = self
            .address(docker, &name)
            .await
            .map_err(|e| provider_error(&node.name, e))?;
        Ok(Machine {
            provider_id: id,
            addresses: vec![ip],
            private_address: None,
        })
    }

    async fn connect(&self, node: &NodeState) -> Result<SshRemote, RemoteError> {
        self.connector.connect(node).await
    }

    async fn destroy(&self, node: &NodeState) -> Result<(), ProviderError> {
        let docker = self
            .docker()
            .await
            .map_err(|e| provider_error(&node.name, e))?;
        remove_container(docker, &container_name(&self.cluster, &node.name))
            .await
            .map_err(|e| provider_error(&node.name, e))
    }

    async fn teardown(&self, _resources: &BTreeMap<String, String>) -> Result<(), ProviderError> {
        let docker = self
            .docker()
            .await
            .map_err(|e| provider_error("cluster", e))?;
        inventory::purge(docker, &self.cluster)
            .await
            .map(|_| ())
            .map_err(|e| provider_error("cluster", e))
    }
}

async fn remove_container(docker: &Docker, name: &str) -> Result<(), DockerError> {
    let opts = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    match docker.remove_container(name, Some(opts)).await {
        Ok(()) => Ok(()),
        Err(e) if is_status(&e, 404) => Ok(()),
        // Already being removed by someone else.
        Err(e) if is_status(&e, 409) => Ok(()),
        Err(e) => Err(api(format!("remove container {name}"))(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_filters_carry_the_cluster() {
        assert_eq!(network_name("demo"), "dcform-demo");
        assert_eq!(container_name("demo", "agents-2"), "dcform-demo-agents-2");
        assert_eq!(
            label_filter(Some("demo"))["label"],
            vec!["dcform.cluster=demo".to_string()]
        );
        assert_eq!(
            key_path(Path::new("/s")),
            PathBuf::from("/s/ssh/id_ed25519")
        );
    }

    #[test]
    fn engine_answers_below_500_are_not_retried() {
        let e = DockerError::Api {
            what: "x".into(),
            source: BollardError::DockerResponseServerError {
                status_code: 400,
                message: "bad".into(),
            },
        };
        assert!(!provider_error("n", e).transient);
        let e = DockerError::Api {
            what: "x".into(),
            source: BollardError::DockerResponseServerError {
                status_code: 503,
                message: "busy".into(),
            },
        };
        assert!(provider_error("n", e).transient);
    }
}
