//! An AWS cluster seen from its state and its tags, with no provider built: `dcform destroy --cluster`
//! (everything tagged with the cluster, no state needed), the refresh before a plan (instances
//! terminated or stopped outside dcform) and the outputs of an apply. The `aws` side of what
//! `docker/inventory.rs` is for containers.

use std::collections::BTreeMap;

use dcform_aws::{Ec2, PurgeReport, Settings, WaitPolicy};

use crate::apply::ProviderError;
use crate::spec::{AwsProvider as AwsSpec, ClusterSpec, Role};
use crate::state::State;

use super::aws::{LINEAGE_RECORD, provider_error, settings};
use super::route::{self, Route};

/// `dcform destroy --cluster NAME` for AWS, no state needed: what carries the name, as `kind id`
/// lines grouped by lineage (`""`: resources tagged before lineages were).
pub async fn lineages(
    cluster: &str,
    aws: &AwsSpec,
) -> Result<BTreeMap<String, Vec<String>>, ProviderError> {
    let ec2 = Ec2::connect(&settings(aws))
        .await
        .map_err(|e| provider_error("cluster", e))?;
    ec2.lineages(cluster)
        .await
        .map_err(|e| provider_error("cluster", e))
}

/// `dcform destroy --cluster NAME` for AWS: everything tagged `dcform:cluster=NAME` (and
/// `dcform:lineage=L` when `lineage` is given), no state needed.
pub async fn purge_cluster(
    cluster: &str,
    aws: &AwsSpec,
    lineage: Option<&str>,
) -> Result<PurgeReport, ProviderError> {
    let ec2 = Ec2::connect(&Settings {
        lineage: lineage.map(str::to_string),
        ..settings(aws)
    })
    .await
    .map_err(|e| provider_error("cluster", e))?;
    ec2.purge_cluster(cluster, WaitPolicy::default())
        .await
        .map_err(|e| provider_error("cluster", e))
}

/// Refresh for `aws` states: the nodes whose instance was terminated outside dcform (gone) and those
/// whose instance is stopped, asked of EC2 by the cluster's tag in the region recorded by `prepare`
/// (and the endpoint, when the definition set one). If EC2 cannot be asked, nothing is marked and
/// the reason is logged: the plan is then the one the state alone gives.
pub async fn refresh(state: &State) -> (Vec<String>, Vec<String>) {
    let settings = Settings {
        region: state.resources.get("aws_region").cloned(),
        endpoint: state.resources.get("aws_endpoint").cloned(),
        lineage: state.resources.get(LINEAGE_RECORD).cloned(),
        ..Settings::default()
    };
    let found = async {
        let ec2 = Ec2::connect(&settings).await?;
        ec2.instances(
            &state.cluster,
            None,
            &["pending", "running", "stopping", "stopped"],
        )
        .await
    }
    .await;
    let found = match found {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(error = %e, "refresh: cannot list the cluster's instances; planning from the state alone");
            return (Vec::new(), Vec::new());
        }
    };
    let mut gone = Vec::new();
    let mut stopped = Vec::new();
    for n in state
        .nodes
        .iter()
        .filter(|n| n.status >= crate::state::NodeStatus::Created)
    {
        let Some(id) = n.provider_id.as_deref() else {
            continue;
        };
        match found.iter().find(|i| i.id == id) {
            None => gone.push(n.name.clone()),
            Some(i) if matches!(i.state.as_str(), "stopping" | "stopped") => {
                stopped.push(n.name.clone())
            }
            Some(_) => {}
        }
    }
    (gone, stopped)
}

/// Outputs of an AWS cluster: master and public-agent addresses, the instance ids per pool, and how
/// dcform's SSH reaches each node that has no public address (`ssh_routes`).
pub fn outputs(state: &State, spec: &ClusterSpec) -> BTreeMap<String, serde_json::Value> {
    let addresses = |role: Role| -> Vec<String> {
        state
            .nodes
            .iter()
            .filter(|n| n.role == role)
            .filter_map(|n| n.addresses.first().cloned())
            .collect()
    };
    let mut ids: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in &state.nodes {
        if let Some(id) = &n.provider_id {
            ids.entry(n.pool.to_string()).or_default().push(id.clone());
        }
    }
    let mut out = BTreeMap::new();
    out.insert(
        "master_addresses".into(),
        serde_json::json!(addresses(Role::Master)),
    );
    out.insert(
        "public_agent_addresses".into(),
        serde_json::json!(addresses(Role::PublicAgent)),
    );
    out.insert("instance_ids".into(), serde_json::json!(ids));
    let masters = state.masters();
    let ssh = &spec.ssh;
    let routes: BTreeMap<&str, String> = state
        .nodes
        .iter()
        .filter(|n| n.public_address().is_none())
        .map(|n| {
            let r = route::choose(n, ssh.bastion.as_ref(), &masters, ssh.port);
            let line = match (r, &ssh.bastion) {
                (Ok(Route::Direct { host }), Some(b)) => {
                    format!("{}@{}:{} -> {host}", b.user_or(&ssh.user), b.host, b.port)
                }
                (Ok(r), _) => r.describe(&ssh.user),
                (Err(e), _) => e.to_string(),
            };
            (n.name.as_str(), line)
        })
        .collect();
    if !routes.is_empty() {
        out.insert("ssh_routes".into(), serde_json::json!(routes));
    }
    if let Some(r) = state.resources.get("aws_region") {
        out.insert("aws_region".into(), serde_json::json!(r));
    }
    if let Some(v) = state.resources.get("aws_vpc") {
        out.insert("aws_vpc".into(), serde_json::json!(v));
    }
    out
}
