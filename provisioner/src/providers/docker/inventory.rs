//! Docker objects found by label alone, with no state: `dcform list` and `dcform destroy --cluster NAME`.

use std::collections::BTreeMap;

use bollard::Docker;
use bollard::query_parameters::{
    ListContainersOptions, ListNetworksOptions, ListVolumesOptions, RemoveVolumeOptions,
};

use super::{
    DockerError, LABEL_CLUSTER, LABEL_NODE, LABEL_POOL, LABEL_ROLE, api, client, is_status,
    label_filter, remove_container,
};

/// What [`purge_cluster`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Container names.
    pub containers: Vec<String>,
    /// Network names.
    pub networks: Vec<String>,
    /// Volume names.
    pub volumes: Vec<String>,
}

pub(super) async fn purge(docker: &Docker, cluster: &str) -> Result<PurgeReport, DockerError> {
    let mut report = PurgeReport::default();
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(label_filter(Some(cluster))),
            ..Default::default()
        }))
        .await
        .map_err(api("list containers"))?;
    for c in containers {
        let name = c
            .names
            .and_then(|n| n.into_iter().next())
            .map(|n| n.trim_start_matches('/').to_string())
            .or(c.id)
            .unwrap_or_default();
        remove_container(docker, &name).await?;
        report.containers.push(name);
    }
    let networks = docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(label_filter(Some(cluster))),
        }))
        .await
        .map_err(api("list networks"))?;
    for n in networks {
        let name = n.name.or(n.id).unwrap_or_default();
        match docker.remove_network(&name).await {
            Ok(()) => {}
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(api(format!("remove network {name}"))(e)),
        }
        report.networks.push(name);
    }
    let volumes = docker
        .list_volumes(Some(ListVolumesOptions {
            filters: Some(label_filter(Some(cluster))),
        }))
        .await
        .map_err(api("list volumes"))?;
    for v in volumes.volumes.unwrap_or_default() {
        match docker
            .remove_volume(&v.name, Some(RemoveVolumeOptions { force: true }))
            .await
        {
            Ok(()) => {}
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(api(format!("remove volume {}", v.name))(e)),
        }
        report.volumes.push(v.name);
    }
    Ok(report)
}

/// Removes every container, network and volume labelled `dcform.cluster=<cluster>`: the way out when the
/// state is lost (`dcform destroy --cluster NAME`).
pub async fn purge_cluster(cluster: &str) -> Result<PurgeReport, DockerError> {
    purge(&client().await?, cluster).await
}

/// One node container found by label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundNode {
    /// Node name (`dcform.node`).
    pub node: String,
    /// Pool (`dcform.pool`).
    pub pool: String,
    /// Role (`dcform.role`).
    pub role: String,
    /// Container state (`running`, `exited`...).
    pub state: String,
    /// Container name.
    pub container: String,
}

/// A cluster found by label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FoundCluster {
    /// Cluster name.
    pub name: String,
    /// Its node containers, by node name.
    pub nodes: Vec<FoundNode>,
    /// Its networks.
    pub networks: Vec<String>,
}

/// Every cluster that has a container or network labelled `dcform.cluster` (`dcform list`).
pub async fn list_clusters() -> Result<Vec<FoundCluster>, DockerError> {
    let docker = client().await?;
    let mut out: BTreeMap<String, FoundCluster> = BTreeMap::new();
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(label_filter(None)),
            ..Default::default()
        }))
        .await
        .map_err(api("list containers"))?;
    for c in containers {
        let labels = c.labels.unwrap_or_default();
        let Some(cluster) = labels.get(LABEL_CLUSTER) else {
            continue;
        };
        let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
        let entry = out.entry(cluster.clone()).or_insert_with(|| FoundCluster {
            name: cluster.clone(),
            ..Default::default()
        });
        entry.nodes.push(FoundNode {
            node: get(LABEL_NODE),
            pool: get(LABEL_POOL),
            role: get(LABEL_ROLE),
            state: c.state.map(|s| s.to_string()).unwrap_or_default(),
            container: c
                .names
                .and_then(|n| n.into_iter().next())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default(),
        });
    }
    let networks = docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(label_filter(None)),
        }))
        .await
        .map_err(api("list networks"))?;
    for n in networks {
        let Some(cluster) = n
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_CLUSTER))
            .cloned()
        else {
            continue;
        };
        out.entry(cluster.clone())
            .or_insert_with(|| FoundCluster {
                name: cluster,
                ..Default::default()
            })
            .networks
            .push(n.name.unwrap_or_default());
    }
    let mut v: Vec<FoundCluster> = out.into_values().collect();
    for c in &mut v {
        c.nodes.sort_by(|a, b| a.node.cmp(&b.node));
    }
    Ok(v)
}
