//! Marathon's REST API (`/v2/...`, `/ping`) over the built-in services framework
//! ([`crate::services`]): the same paths, JSON shapes, status codes and `{"message": ...}`
//! errors, so Marathon clients and scripts work unchanged. Handlers authenticate, parse and
//! forward a [`ServiceCommand`]; they never hold the framework's state.
//!
//! | route | answer |
//! |---|---|
//! | `GET /v2/apps`, `POST /v2/apps` | `{"apps": [...]}`; `201` with the app |
//! | `GET/PUT/PATCH/DELETE /v2/apps/{id}` | `{"app": ...}`; `{"version", "deploymentId"}` |
//! | `POST /v2/apps/{id}/restart`, `GET /v2/apps/{id}/tasks` | a deployment; `{"tasks": [...]}` |
//! | `GET /v2/tasks`, `POST /v2/tasks/delete` | `{"tasks": [...]}` |
//! | `GET /v2/queue` | waiting apps, with why offers were not used |
//! | `GET /v2/deployments`, `DELETE /v2/deployments/{id}` | running deployments; rollback |
//! | `GET /v2/info`, `GET /v2/leader`, `GET /ping` | framework info; this master; `pong` |
//!
//! Every answer is built from `dccore_api::marathon::answers`, the types dcform's client reads.
//!
//! Only the operator's credentials are admitted (Bearer, Basic is for frameworks, and
//! `token=` as DC/OS-era clients send it): apps run with the services framework's rights, so a
//! framework principal may not define them.

use super::{ApiState, Route, authenticate};
use crate::auth::Identity;
use crate::services::{
    App, AppError, AppId, AppView, Change, Instance, ServiceCommand, ServiceError, ServicesHandle,
    Snapshot, iso_time,
};
use crate::tls::PeerCert;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use dccore_api::marathon::answers::{
    AppAnswer, AppList, AppStatus, Deployment, DeploymentAction, DeploymentId, DeploymentRef,
    DeploymentStep, ErrorBody, HealthCheckResult, MarathonTask, OffersSummary, Queue, QueueDelay,
    QueueEntry, RejectSummary, TaskList, VersionInfo,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

/// What the `/v2` handlers hold.
#[derive(Clone)]
pub struct MarathonState {
    /// The master's API state (authentication).
    pub api: ApiState,
    /// The services framework.
    pub services: ServicesHandle,
}

/// The `/v2` routes and `/ping`.
pub fn routes(api: ApiState, services: ServicesHandle) -> Router {
    Router::new()
        .route("/v2/info", get(info))
        .route("/v2/leader", get(leader))
        .route("/v2/apps", get(list_apps).post(create_app))
        .route(
            "/v2/apps/{*id}",
            get(get_app)
                .put(put_app)
                .patch(patch_app)
                .delete(delete_app)
                .post(post_app_action),
        )
        .route("/v2/tasks", get(list_tasks))
        .route("/v2/tasks/delete", post(delete_tasks))
        .route("/v2/queue", get(queue))
        .route("/v2/deployments", get(deployments))
        .route("/v2/deployments/{id}", delete(cancel_deployment))
        .route_layer(axum::middleware::from_fn_with_state(
            api.clone(),
            operator_only,
        ))
        // With replicated masters the framework runs beside the leader: a follower sends Marathon
        // clients there (307), as it does framework and operator calls.
        .route_layer(axum::middleware::from_fn_with_state(
            api.clone(),
            super::replicated::to_leader,
        ))
        // Unauthenticated, like Marathon's and `/health`: added after the layers above.
        .route("/ping", get(ping))
        .with_state(MarathonState { api, services })
}

type Q = Query<HashMap<String, String>>;

fn message(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, axum::Json(ErrorBody::message(msg))).into_response()
}

fn forced(q: &Q) -> bool {
    q.get("force").is_some_and(|v| v == "true")
}

/// Admits the operator only (see the module doc): a layer over every route of [`routes`], so
/// no handler can forget it.
async fn operator_only(
    State(api): State<ApiState>,
    peer: PeerCert,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match authenticate(&api, &peer, req.headers(), Route::Client) {
        Err(r) => r,
        Ok(Identity::Operator) => next.run(req).await,
        Ok(Identity::Principal(p)) => message(
            StatusCode::FORBIDDEN,
            format!("principal {p:?} may not use the services API: use the operator token"),
        ),
        Ok(Identity::Agent(_)) => {
            message(StatusCode::FORBIDDEN, "agents may not use the services API")
        }
    }
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let status = match &self {
            ServiceError::AppNotFound(_)
            | ServiceError::TaskNotFound(_)
            | ServiceError::DeploymentNotFound(_) => StatusCode::NOT_FOUND,
            ServiceError::Locked { deployments } => {
                let body = ErrorBody {
                    deployments: deployments
                        .iter()
                        .map(|d| DeploymentId { id: d.clone() })
                        .collect(),
                    ..ErrorBody::message(self.to_string())
                };
                return (StatusCode::CONFLICT, axum::Json(body)).into_response();
            }
            ServiceError::Exists(_) => StatusCode::CONFLICT,
            ServiceError::Store(e) => {
                tracing::error!(error = %dc_support::error::chain(e), "services state not saved");
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ServiceError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        message(status, self.to_string())
    }
}

fn invalid(e: AppError) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(e.to_json())).into_response()
}

fn parse_body(body: &[u8]) -> Result<Value, Response> {
    serde_json::from_slice(body)
        .map_err(|e| message(StatusCode::BAD_REQUEST, format!("Invalid JSON: {e}")))
}

async fn snapshot(h: &MarathonState) -> Result<Arc<Snapshot>, Response> {
    h.services
        .ask(|reply| ServiceCommand::Snapshot { reply })
        .await
        .map_err(IntoResponse::into_response)
}

async fn change(
    h: &MarathonState,
    make: impl FnOnce(tokio::sync::oneshot::Sender<Result<Change, ServiceError>>) -> ServiceCommand,
) -> Result<Change, Response> {
    match h.services.ask(make).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) | Err(e) => Err(e.into_response()),
    }
}

fn change_json(c: &Change) -> axum::Json<DeploymentRef> {
    axum::Json(DeploymentRef {
        version: c.version.clone(),
        deployment_id: c.deployment_id.clone(),
    })
}

/// A task as Marathon shows it.
fn task_json(i: &Instance, health_checked: bool) -> MarathonTask {
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

fn is_running(i: &Instance) -> bool {
    i.state == crate::proto::TaskState::Running
}

/// An app as Marathon shows it: the definition plus its counters.
fn app_json(v: &AppView, instances: &[Instance], embed_tasks: bool) -> AppStatus {
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

async fn ping() -> Response {
    ([(header::CONTENT_TYPE, "text/plain")], "pong").into_response()
}

fn host_of(headers: &HeaderMap) -> String {
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

async fn info(State(h): State<MarathonState>, headers: HeaderMap) -> Response {
    let s = match snapshot(&h).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    axum::Json(json!({
        "name": crate::services::FRAMEWORK_NAME, "version": "1.11.0", "dccore": crate::VERSION,
        "frameworkId": s.framework_id, "leader": host_of(&headers), "elected": true,
        "connected": s.connected,
        "marathon_config": {"framework_name": crate::services::FRAMEWORK_NAME,
                            "mesos_role": "*", "principal": crate::services::PRINCIPAL},
    }))
    .into_response()
}

async fn leader(headers: HeaderMap) -> Response {
    // The framework runs beside the master that serves this request: that master leads it.
    axum::Json(json!({"leader": host_of(&headers)})).into_response()
}

async fn list_apps(State(h): State<MarathonState>, q: Q) -> Response {
    let s = match snapshot(&h).await {
        Ok(s) => s,
        Err(r) => return r,
    };
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
    axum::Json(AppList { apps }).into_response()
}

async fn create_app(State(h): State<MarathonState>, q: Q, body: Bytes) -> Response {
    let app = match parse_body(&body).and_then(|v| App::from_json(v, None).map_err(invalid)) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let id = app.id.clone();
    let force = forced(&q);
    let put = |reply| ServiceCommand::PutApp {
        app: Box::new(app),
        create_only: true,
        force,
        reply,
    };
    let c = match change(&h, put).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let s = match snapshot(&h).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(view) = s.apps.iter().find(|a| a.entry.app.id == id) else {
        return message(
            StatusCode::CONFLICT,
            format!("app {id} was removed meanwhile"),
        );
    };
    let mut body = app_json(view, &s.instances, false);
    body.deployments = vec![DeploymentId {
        id: c.deployment_id,
    }];
    let mut r = (StatusCode::CREATED, axum::Json(body)).into_response();
    if let Ok(loc) = HeaderValue::from_str(&format!("/v2/apps{id}")) {
        r.headers_mut().insert(header::LOCATION, loc);
    }
    r
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

async fn get_app(State(h): State<MarathonState>, Path(path): Path<String>, q: Q) -> Response {
    let (id, action) = match split(&path) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let s = match snapshot(&h).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let Some(view) = s.apps.iter().find(|a| a.entry.app.id == id) else {
        return ServiceError::AppNotFound(id.to_string()).into_response();
    };
    match action {
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
    }
}

async fn put_app(
    State(h): State<MarathonState>,
    Path(path): Path<String>,
    q: Q,
    body: Bytes,
) -> Response {
    update(h, path, q, body, false).await
}

async fn patch_app(
    State(h): State<MarathonState>,
    Path(path): Path<String>,
    q: Q,
    body: Bytes,
) -> Response {
    update(h, path, q, body, true).await
}

/// PUT (replace, or create: 201) and PATCH (merge the given fields into the definition).
async fn update(h: MarathonState, path: String, q: Q, body: Bytes, merge: bool) -> Response {
    let (id, _) = match split(&path) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut v = match parse_body(&body) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let existing = match snapshot(&h).await {
        Ok(s) => s
            .apps
            .iter()
            .find(|a| a.entry.app.id == id)
            .map(|a| a.entry.app.raw.clone()),
        Err(r) => return r,
    };
    if merge {
        let (Some(mut base), Some(patch)) = (existing.clone(), v.as_object()) else {
            return ServiceError::AppNotFound(id.to_string()).into_response();
        };
        for (k, x) in patch {
            base.insert(k.clone(), x.clone());
        }
        v = Value::Object(base);
    }
    let app = match App::from_json(v, Some(&id)) {
        Ok(a) => a,
        Err(e) => return invalid(e),
    };
    let force = forced(&q);
    let put = |reply| ServiceCommand::PutApp {
        app: Box::new(app),
        create_only: false,
        force,
        reply,
    };
    match change(&h, put).await {
        Ok(c) if existing.is_none() => (StatusCode::CREATED, change_json(&c)).into_response(),
        Ok(c) => change_json(&c).into_response(),
        Err(r) => r,
    }
}

async fn delete_app(State(h): State<MarathonState>, Path(path): Path<String>, q: Q) -> Response {
    let id = match split(&path) {
        Ok((id, None)) => id,
        Ok(_) => return message(StatusCode::METHOD_NOT_ALLOWED, "DELETE takes an app id"),
        Err(r) => return r,
    };
    let force = forced(&q);
    match change(&h, |reply| ServiceCommand::RemoveApp { id, force, reply }).await {
        Ok(c) => change_json(&c).into_response(),
        Err(r) => r,
    }
}

async fn post_app_action(
    State(h): State<MarathonState>,
    Path(path): Path<String>,
    q: Q,
) -> Response {
    let id = match split(&path) {
        Ok((id, Some("restart"))) => id,
        Ok(_) => {
            return message(
                StatusCode::METHOD_NOT_ALLOWED,
                "POST /v2/apps/{id}/restart, or POST /v2/apps to create an app",
            );
        }
        Err(r) => return r,
    };
    let force = forced(&q);
    match change(&h, |reply| ServiceCommand::Restart { id, force, reply }).await {
        Ok(c) => change_json(&c).into_response(),
        Err(r) => r,
    }
}

async fn list_tasks(State(h): State<MarathonState>) -> Response {
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

async fn delete_tasks(State(h): State<MarathonState>, q: Q, body: Bytes) -> Response {
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

async fn queue(State(h): State<MarathonState>) -> Response {
    let s = match snapshot(&h).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let queue = s
        .apps
        .iter()
        .filter(|a| a.waiting > 0)
        .map(|a| {
            let e = &a.entry;
            let unused: u64 = e.refusals.values().sum();
            let summary = e
                .refusals
                .iter()
                .map(|(r, n)| RejectSummary {
                    reason: (*r).to_string(),
                    declined: *n,
                    processed: e.offers_processed,
                })
                .collect();
            QueueEntry {
                app: app_json(a, &s.instances, false),
                count: a.waiting,
                delay: QueueDelay {
                    time_left_seconds: a.delay_secs.map_or(0, |d| d.ceil() as u64),
                    overdue: a.delay_secs.is_none(),
                },
                processed_offers_summary: OffersSummary {
                    processed_offers_count: e.offers_processed,
                    unused_offers_count: unused,
                    reject_summary_last_offers: summary,
                },
                // dccore: the last refusal in words (which constraint, which resource).
                last_unused_offer_reason: e.last_refusal.clone(),
            }
        })
        .collect();
    axum::Json(Queue { queue }).into_response()
}

async fn deployments(State(h): State<MarathonState>) -> Response {
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

async fn cancel_deployment(
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
