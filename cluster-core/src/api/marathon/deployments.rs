//! `/v2/deployments`: the running deployments with their steps, and cancelling one.

use super::{MarathonState, Q, change_json, forced, snapshot};
use crate::services::ServiceCommand;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dccore_api::marathon::answers::{Deployment, DeploymentAction, DeploymentStep};
use serde_json::Value;

pub(super) async fn deployments(State(h): State<MarathonState>) -> Response {
    let s = match snapshot(&h).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let list: Vec<Deployment> = s
        .apps
        .iter()
        .filter_map(|a| {
            let d = a.entry.deployment.as_ref()?;
            let id = a.entry.app.id.to_string();
            let action = |name: &str, readiness: Option<Vec<Value>>| DeploymentAction {
                action: name.into(),
                app: id.clone(),
                readiness_check_results: readiness,
            };
            // The plan and its progress come from the services' rolling logic.
            let steps = crate::services::rolling::steps(&a.entry);
            let mine = s.instances.iter().filter(|i| i.app == id).count();
            let current = crate::services::rolling::current_step(&a.entry, mine).min(steps.len());
            Some(Deployment {
                id: d.clone(),
                version: a.entry.version.clone(),
                affected_apps: vec![id.clone()],
                affected_pods: Vec::new(),
                steps: steps
                    .iter()
                    .map(|n| DeploymentStep {
                        actions: vec![action(n, None)],
                    })
                    .collect(),
                current_actions: vec![action(steps[current - 1], Some(Vec::new()))],
                current_step: u32::try_from(current).unwrap_or(u32::MAX),
                total_steps: u32::try_from(steps.len()).unwrap_or(u32::MAX),
            })
        })
        .collect();
    axum::Json(list).into_response()
}

pub(super) async fn cancel_deployment(
    State(h): State<MarathonState>,
    Path(id): Path<String>,
    q: Q,
) -> Response {
    let force = forced(&q);
    let cancel = |reply| ServiceCommand::CancelDeployment { id, force, reply };
    match h.services.ask(cancel).await {
        Ok(Ok(Some(c))) => change_json(&c).into_response(),
        // Marathon: a forced cancel answers 202 without a body.
        Ok(Ok(None)) => StatusCode::ACCEPTED.into_response(),
        Ok(Err(e)) | Err(e) => e.into_response(),
    }
}
