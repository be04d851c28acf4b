//! Apply's last phase: the definition's services put on the running cluster, after its nodes.
//!
//! ```text
//! Plan.services ──> remove (DELETE) ─┐
//!                   deploy / update ─┼─> record in State.services (saved after each call) ──> wait for the
//!                   (PUT, or PATCH   ─┘                                                        deployments
//!                    when scale-only)
//! ```
//!
//! What the cluster accepted is recorded at once, before the wait: dcform made the app, so a
//! failed or interrupted wait leaves a state that knows it (the next plan compares against it and
//! a later removal from the definition removes it). Removals run first so their resources are
//! free for what is deployed next. dcform owns its apps: a deployment of one that is in progress
//! is overridden (`force`), as Marathon's clients do for a definition that is the source of truth.

use std::path::Path;
use std::time::Duration;

use dccore_api::marathon::answers::DeploymentRef;
use tokio::time::Instant;

use super::client::{MarathonClient, ServiceApiError};
use super::wait::{Awaited, WaitProgress};
use crate::plan::{LiveApps, ServiceAction, ServiceChange};
use crate::state::{ServiceState, State};

/// What converging did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Converged {
    /// Apps deployed or updated.
    pub deployed: usize,
    /// Apps removed.
    pub removed: usize,
}

/// Carries out the service changes of a plan on the cluster behind `client`, recording each in
/// `state` and calling `save` after it; then waits up to `timeout` for the deployments, telling
/// `progress` after every poll.
pub async fn converge(
    changes: &[ServiceChange],
    client: &MarathonClient,
    state: &mut State,
    mut save: impl FnMut(&mut State) -> anyhow::Result<()>,
    timeout: Duration,
    progress: impl FnMut(&WaitProgress),
) -> anyhow::Result<Converged> {
    let mut done = Converged::default();
    let mut awaited: Vec<Awaited> = Vec::new();
    let ordered = changes
        .iter()
        .filter(|c| c.action == ServiceAction::Remove)
        .chain(
            changes
                .iter()
                .filter(|c| matches!(c.action, ServiceAction::Deploy | ServiceAction::Update)),
        );
    for c in ordered {
        let id = &c.id;
        let answer: Result<DeploymentRef, ServiceApiError> = match c.action {
            ServiceAction::Remove => match client.delete(id, true).await {
                Err(ServiceApiError::AppNotFound { .. }) => {
                    // Gone already (removed outside dcform): nothing to wait for.
                    state.services.remove(id.as_str());
                    save(state)?;
                    done.removed += 1;
                    continue;
                }
                other => other,
            },
            _ => {
                let Some(definition) = &c.definition else {
                    anyhow::bail!("service {id}: the plan carries no definition to deploy");
                };
                match (c.scale_only, c.instances) {
                    (true, Some(n)) => client.patch_instances(id, n, true).await,
                    _ => client.put_app(id, definition, true).await,
                }
            }
        };
        let answer = answer.map_err(|e| {
            anyhow::Error::new(e).context(format!("service {id}: {} failed", c.action.verb()))
        })?;
        if c.action == ServiceAction::Remove {
            state.services.remove(id.as_str());
            done.removed += 1;
        } else {
            let definition = c.definition.clone().unwrap_or_default();
            state.services.insert(
                id.as_str().to_string(),
                ServiceState {
                    definition,
                    version: Some(answer.version.clone()),
                },
            );
            done.deployed += 1;
        }
        save(state)?;
        awaited.push(Awaited {
            app: id.clone(),
            deployment_id: answer.deployment_id.clone(),
            removed: c.action == ServiceAction::Remove,
        });
    }
    if !awaited.is_empty() {
        client
            .wait_deployment(&awaited, Instant::now() + timeout, progress)
            .await
            .map_err(|e| anyhow::Error::new(e).context("the services did not finish deploying"))?;
    }
    Ok(done)
}

/// The apps the cluster of `state` runs now, for the plan to compare the definition's services
/// with (drift). `None`, said on stderr, when the cluster was not asked or did not answer: the
/// plan then compares with the state only. Asked only when there is something to compare: the
/// definition has services or dcform deployed some.
pub async fn live_apps(state: &State, dir: &Path, wanted: usize) -> Option<LiveApps> {
    if (wanted == 0 && state.services.is_empty()) || state.nodes.is_empty() {
        return None;
    }
    let client = match MarathonClient::of(state, dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "Refresh: the cluster's services were not read ({e}); they are compared with the state only."
            );
            return None;
        }
    };
    match client.list_apps().await {
        Ok(apps) => Some(
            apps.into_iter()
                .map(|a| {
                    let mut json = a.definition;
                    json.insert("id".into(), a.id.clone().into());
                    json.insert("instances".into(), a.instances.into());
                    (a.id, json)
                })
                .collect(),
        ),
        Err(e) => {
            eprintln!(
                "Refresh: the cluster's services were not read ({e}); they are compared with the state only."
            );
            None
        }
    }
}
