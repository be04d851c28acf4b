//! `/v2/apps`: list, create, show, replace, patch, remove and restart apps.

use super::tasks::task_json;
use super::{
    MarathonState, Q, change, change_json, forced, invalid, message, parse_body, snapshot,
};
use crate::services::{App, AppId, AppView, Instance, ServiceCommand, ServiceError};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dccore_api::marathon::answers::{
    AppAnswer, AppList, AppStatus, DeploymentId, TaskList, VersionInfo,
};
use serde_json::{Value, json};

fn is_running(i: &Instance) -> bool {
    i.state == crate::proto::TaskState::Running
}

/// An app as Marathon shows it: the definition plus its counters.
pub(super) fn app_json(v: &AppView, instances: &[Instance], embed_tasks: bool) -> AppStatus {
    let e = &v.entry;
    let mine: Vec<&Instance> = instances
        .iter()
        .filter(|i| i.app == e.app.id.as_str())
        .collect();
    let checked = !e.app.health_checks.is_empty();
    let count = |f: &dyn Fn(&Instance) -> bool| mine.iter().filter(|i| f(i)).count();
    let staged = count(&|i| {
        matches!(
            i.state,
            crate::proto::TaskState::Staging | crate::proto::TaskState::Starting
        )
    });
    let healthy = count(&|i| checked && is_running(i) && i.healthy == Some(true));
    let unhealthy = count(&|i| checked && is_running(i) && i.healthy == Some(false));
    let as_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    AppStatus {
        id: e.app.id.to_string(),
        instances: e.app.instances,
        version: e.version.clone(),
        version_info: VersionInfo {
            last_scaling_at: e.version.clone(),
            last_config_change_at: e.version.clone(),
        },
        tasks_running: as_u32(count(&is_running)),
        tasks_staged: as_u32(staged),
        tasks_healthy: as_u32(healthy),
        tasks_unhealthy: as_u32(unhealthy),
        deployments: e
            .deployment
            .iter()
            .map(|d| DeploymentId { id: d.clone() })
            .collect(),
        last_task_failure: e.last_failure.clone(),
        tasks: embed_tasks.then(|| mine.iter().map(|i| task_json(i, checked)).collect()),
        definition: AppStatus::without_typed_keys(e.app.to_json()),
    }
}

/// What the handlers return: an answer, or an error answer already shaped as Marathon's
/// (`{"message": ...}` or a 422 with its details), so each step can end a handler with `?`.
type Answer = Result<Response, Response>;

pub(super) async fn list_apps(State(h): State<MarathonState>, q: Q) -> Answer {
    let s = snapshot(&h).await?;
    let embed = q.get("embed").is_some_and(|e| e.contains("tasks"));
    let prefix = q.get("id").map(|p| p.trim_end_matches('/').to_string());
    let apps: Vec<AppStatus> = s
        .apps
        .iter()
        .filter(|a| {
            prefix
                .as_ref()
                .is_none_or(|p| a.entry.app.id.as_str().starts_with(p.as_str()))
        })
        .map(|a| app_json(a, &s.instances, embed))
        .collect();
    Ok(axum::Json(AppList { apps }).into_response())
}

pub(super) async fn create_app(State(h): State<MarathonState>, q: Q, body: Bytes) -> Answer {
    let app = App::from_json(parse_body(&body)?, None).map_err(invalid)?;
    let id = app.id.clone();
    let force = forced(&q);
    let put = |reply| ServiceCommand::PutApp {
        app: Box::new(app),
        create_only: true,
        force,
        reply,
    };
    let c = change(&h, put).await?;
    let s = snapshot(&h).await?;
    let Some(view) = s.apps.iter().find(|a| a.entry.app.id == id) else {
        return Err(message(
            StatusCode::CONFLICT,
            format!("app {id} was removed meanwhile"),
        ));
    };
    let mut body = app_json(view, &s.instances, false);
    body.deployments = vec![DeploymentId {
        id: c.deployment_id,
    }];
    let mut r = (StatusCode::CREATED, axum::Json(body)).into_response();
    if let Ok(loc) = HeaderValue::from_str(&format!("/v2/apps{id}")) {
        r.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(r)
}

/// Splits `prod/web/tasks` into the app id and the action (Marathon reads a trailing
/// `tasks`, `restart` or `versions` as one too).
fn split(path: &str) -> Result<(AppId, Option<&str>), Response> {
    let path = path.trim_end_matches('/');
    let (id, action) = match path.rsplit_once('/') {
        Some((id, a @ ("tasks" | "restart" | "versions"))) => (id, Some(a)),
        _ => (path, None),
    };
    let id = AppId::parse(id)
        .map_err(|e| message(StatusCode::BAD_REQUEST, format!("app id {id:?}: {e}")))?;
    Ok((id, action))
}

pub(super) async fn get_app(
    State(h): State<MarathonState>,
    Path(path): Path<String>,
    q: Q,
) -> Answer {
    let (id, action) = split(&path)?;
    let s = snapshot(&h).await?;
    let Some(view) = s.apps.iter().find(|a| a.entry.app.id == id) else {
        return Err(ServiceError::AppNotFound(id.to_string()).into_response());
    };
    Ok(match action {
        None => {
            let embed = q.get("embed").is_some_and(|e| e.contains("tasks"));
            let app = app_json(view, &s.instances, embed);
            axum::Json(AppAnswer { app }).into_response()
        }
        Some("tasks") => {
            let checked = !view.entry.app.health_checks.is_empty();
            let tasks = s
                .instances
                .iter()
                .filter(|i| i.app == id.as_str())
                .map(|i| task_json(i, checked))
                .collect();
            axum::Json(TaskList { tasks }).into_response()
        }
        Some("versions") => axum::Json(json!({"versions": [view.entry.version]})).into_response(),
        Some(_) => message(StatusCode::METHOD_NOT_ALLOWED, "restart takes POST"),
    })
}

pub(super) async fn put_app(
    State(h): State<MarathonState>,
    Path(path): Path<String>,
    q: Q,
    body: Bytes,
) -> Answer {
    update(h, path, q, body, false).await
}

pub(super) async fn patch_app(
    State(h): State<MarathonState>,
    Path(path): Path<String>,
    q: Q,
    body: Bytes,
) -> Answer {
    update(h, path, q, body, true).await
}

/// PUT (replace, or create: 201) and PATCH (merge the given fields into the definition).
async fn update(h: MarathonState, path: String, q: Q, body: Bytes, merge: bool) -> Answer {
    let (id, _) = split(&path)?;
    let mut v = parse_body(&body)?;
    let existing = snapshot(&h)
        .await?
        .apps
        .iter()
        .find(|a| a.entry.app.id == id)
        .map(|a| a.entry.app.raw.clone());
    if merge {
        let (Some(mut base), Some(patch)) = (existing.clone(), v.as_object()) else {
            return Err(ServiceError::AppNotFound(id.to_string()).into_response());
        };
        for (k, x) in patch {
            base.insert(k.clone(), x.clone());
        }
        v = Value::Object(base);
    }
    let app = App::from_json(v, Some(&id)).map_err(invalid)?;
    let force = forced(&q);
    let put = |reply| ServiceCommand::PutApp {
        app: Box::new(app),
        create_only: false,
        force,
        reply,
    };
    let c = change(&h, put).await?;
    Ok(match existing {
        None => (StatusCode::CREATED, change_json(&c)).into_response(),
        Some(_) => change_json(&c).into_response(),
    })
}

pub(super) async fn delete_app(
    State(h): State<MarathonState>,
    Path(path): Path<String>,
    q: Q,
) -> Answer {
    let (id, None) = split(&path)? else {
        return Err(message(
            StatusCode::METHOD_NOT_ALLOWED,
            "DELETE takes an app id",
        ));
    };
    let force = forced(&q);
    let c = change(&h, |reply| ServiceCommand::RemoveApp { id, force, reply }).await?;
    Ok(change_json(&c).into_response())
}

pub(super) async fn post_app_action(
    State(h): State<MarathonState>,
    Path(path): Path<String>,
    q: Q,
) -> Answer {
    let (id, Some("restart")) = split(&path)? else {
        return Err(message(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST /v2/apps/{id}/restart, or POST /v2/apps to create an app",
        ));
    };
    let force = forced(&q);
    let c = change(&h, |reply| ServiceCommand::Restart { id, force, reply }).await?;
    Ok(change_json(&c).into_response())
}
