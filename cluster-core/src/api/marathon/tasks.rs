//! `/v2/tasks`: every instance, and killing some (with `scale=true`, shrinking their apps).

use super::{MarathonState, Q, message, parse_body, snapshot};
use crate::services::{Instance, ServiceCommand, iso_time};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dccore_api::marathon::answers::{HealthCheckResult, MarathonTask, TaskList};
use serde_json::Value;

/// A task as Marathon shows it.
pub(super) fn task_json(i: &Instance, health_checked: bool) -> MarathonTask {
    MarathonTask {
        id: i.task_id.clone(),
        app_id: i.app.clone(),
        host: i.host.clone(),
        ports: i.ports.clone(),
        slave_id: i.agent_id.clone(),
        agent_id: i.agent_id.clone(),
        state: i.state,
        staged_at: iso_time(i.staged_at),
        started_at: i.started_at.map(iso_time),
        version: i.version.clone(),
        ip_addresses: Vec::new(),
        health_check_results: i.healthy.filter(|_| health_checked).map(|alive| {
            vec![HealthCheckResult {
                alive,
                task_id: i.task_id.clone(),
            }]
        }),
    }
}

pub(super) async fn list_tasks(State(h): State<MarathonState>) -> Response {
    let s = match snapshot(&h).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let checked = |i: &Instance| {
        s.apps
            .iter()
            .any(|a| a.entry.app.id.as_str() == i.app && !a.entry.app.health_checks.is_empty())
    };
    let tasks = s
        .instances
        .iter()
        .map(|i| task_json(i, checked(i)))
        .collect();
    axum::Json(TaskList { tasks }).into_response()
}

pub(super) async fn delete_tasks(State(h): State<MarathonState>, q: Q, body: Bytes) -> Response {
    let ids: Vec<String> = match parse_body(&body).map(|v| v.get("ids").cloned()) {
        Ok(Some(Value::Array(a))) if a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        Ok(_) => {
            return message(
                StatusCode::BAD_REQUEST,
                "body must be {\"ids\": [task ids]}",
            );
        }
        Err(r) => return r,
    };
    let scale = q.get("scale").is_some_and(|v| v == "true");
    let kill = |reply| ServiceCommand::KillTasks {
        task_ids: ids,
        scale,
        reply,
    };
    match h.services.ask(kill).await {
        Ok(Ok(killed)) => {
            let tasks = killed.iter().map(|i| task_json(i, false)).collect();
            axum::Json(TaskList { tasks }).into_response()
        }
        Ok(Err(e)) | Err(e) => e.into_response(),
    }
}
