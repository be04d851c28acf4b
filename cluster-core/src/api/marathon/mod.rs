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
//! | `GET /v2/groups`, `GET /v2/groups/{id}` | the group tree made from the app ids |
//! | `GET /v2/events` | server-sent events: deployments, status updates, health changes |
//! | `GET /v2/info`, `GET /v2/leader`, `GET /ping` | framework info; this master; `pong` |
//!
//! One file per resource (`apps.rs`, `tasks.rs`, `queue.rs`, `deployments.rs`, `groups.rs`,
//! `events.rs`); this one holds
//! the route table, the operator-only layer, the error mapping and the helpers they share.
//!
//! Every answer is built from `dccore_api::marathon::answers`, the types dcform's client reads.
//!
//! Only the operator's credentials are admitted (Bearer, Basic is for frameworks, and
//! `token=` as DC/OS-era clients send it): apps run with the services framework's rights, so a
//! framework principal may not define them.

mod apps;
mod deployments;
mod events;
mod groups;
mod queue;
mod tasks;

use super::{ApiState, Route, authenticate};
use crate::auth::Identity;
use crate::services::{Change, ServiceCommand, ServiceError, ServicesHandle, Snapshot};
use crate::tls::PeerCert;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use dccore_api::marathon::AppError;
use dccore_api::marathon::answers::{DeploymentId, DeploymentRef, ErrorBody};
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
        .route("/v2/apps", get(apps::list_apps).post(apps::create_app))
        .route(
            "/v2/apps/{*id}",
            get(apps::get_app)
                .put(apps::put_app)
                .patch(apps::patch_app)
                .delete(apps::delete_app)
                .post(apps::post_app_action),
        )
        .route("/v2/tasks", get(tasks::list_tasks))
        .route("/v2/tasks/delete", post(tasks::delete_tasks))
        .route("/v2/queue", get(queue::queue))
        .route("/v2/deployments", get(deployments::deployments))
        .route(
            "/v2/deployments/{id}",
            delete(deployments::cancel_deployment),
        )
        .route("/v2/groups", get(groups::root))
        .route("/v2/groups/{*id}", get(groups::group))
        .route("/v2/events", get(events::stream))
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

pub(super) type Q = Query<HashMap<String, String>>;

pub(super) fn message(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, axum::Json(ErrorBody::message(msg))).into_response()
}

pub(super) fn forced(q: &Q) -> bool {
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

pub(super) fn invalid(e: AppError) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(e.to_json())).into_response()
}

pub(super) fn parse_body(body: &[u8]) -> Result<Value, Response> {
    serde_json::from_slice(body)
        .map_err(|e| message(StatusCode::BAD_REQUEST, format!("Invalid JSON: {e}")))
}

pub(super) async fn snapshot(h: &MarathonState) -> Result<Arc<Snapshot>, Response> {
    h.services
        .ask(|reply| ServiceCommand::Snapshot { reply })
        .await
        .map_err(IntoResponse::into_response)
}

pub(super) async fn change(
    h: &MarathonState,
    make: impl FnOnce(tokio::sync::oneshot::Sender<Result<Change, ServiceError>>) -> ServiceCommand,
) -> Result<Change, Response> {
    match h.services.ask(make).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) | Err(e) => Err(e.into_response()),
    }
}

pub(super) fn change_json(c: &Change) -> axum::Json<DeploymentRef> {
    axum::Json(DeploymentRef {
        version: c.version.clone(),
        deployment_id: c.deployment_id.clone(),
    })
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
