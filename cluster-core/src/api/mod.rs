//! The master's HTTP server: one route table, one file per API.
//!
//! | route | who | identities admitted ([`Route`]) |
//! |---|---|---|
//! | `POST /api/v1/scheduler` | frameworks ([`scheduler`]) | operator token, framework principal (Basic) |
//! | `POST /api/v1` | operators ([`operator`]) | operator token, framework principal (what the rules allow) |
//! | `POST /internal/v1/agents/*` | agents ([`internal`]) | agent token or agent certificate, operator token |
//! | `POST /internal/raft/*` | other masters ([`raft`]; served beside a [`crate::replica::Replica`]) | the master secret only |
//! | `GET /metrics` | Prometheus ([`metrics`]) | operator token, principal allowed `get_endpoints` `/metrics` |
//! | `GET /v1/services[/{name}]` | service discovery over HTTP ([`services`]) | operator token, framework principal (what the rules let it see) |
//! | `GET /health`, `GET /version` | probes, framework libraries | anyone |
//!
//! Unknown credentials get 401 (so do framework credentials on the agent routes); an agent token
//! or agent certificate on the scheduler or operator API or `/metrics` gets 403 with a message.
//! Over TLS with a CA, a connection with a verified `urn:dcform:agent:NODE` client certificate
//! counts as the agent's credential when the request has no valid `Authorization` header.
//! Handlers parse, authenticate and forward a [`MasterCommand`] to the owner task through a
//! [`MasterHandle`]; they never touch master state themselves. [`serve`] composes the two: it
//! starts the master ([`Master::start`]) and serves these routes for it.

// Handlers return `Result<_, Response>` so that `?`-style early returns carry a finished HTTP
// answer; the Response is moved out at once, so its size does not matter here.
#![allow(clippy::result_large_err)]

pub mod internal;
pub mod metrics;
pub mod operator;
pub mod raft;
pub mod scheduler;
pub mod services;

use crate::acl::Acls;
use crate::auth::{AgentProof, Authenticator, Identity};
use crate::master::{CallError, Master, MasterCommand, MasterConfig, MasterError, MasterHandle};
use crate::tls::PeerCert;
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Errors that stop the master's server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The master could not start.
    #[error("cannot start the master")]
    Master(#[from] MasterError),
    /// TLS for the server could not be set up.
    #[error("cannot set up TLS")]
    Tls(#[source] crate::tls::TlsError),
    /// The HTTP server failed.
    #[error("HTTP server failed")]
    Serve(#[source] std::io::Error),
    /// The DNS server could not start.
    #[error("cannot start the DNS server")]
    Dns(#[from] crate::discovery::dns::DnsError),
}

/// What HTTP handlers hold: the master's handle and the server's own, lock-free state.
#[derive(Clone)]
pub struct ApiState {
    /// Commands to the master.
    pub master: MasterHandle,
    /// Credentials.
    pub auth: Arc<Authenticator>,
    /// Access rules (operator calls are checked in the handlers).
    pub acls: Arc<Acls>,
    /// Requests rejected with 401 (reported in `/metrics`).
    pub unauthorized: Arc<AtomicU64>,
    /// Heartbeat interval for subscription streams.
    pub framework_heartbeat: Duration,
    /// Stops stream writers on shutdown.
    pub shutdown: CancellationToken,
    /// Owns the subscription stream writer tasks.
    pub streams: TaskTracker,
    /// See [`MasterConfig::authenticate_frameworks`].
    pub authenticate_frameworks: bool,
    /// Service discovery records (`/v1/services`).
    pub discovery: crate::discovery::Directory,
}

/// Runs a master on `listener` until `shutdown` is cancelled: starts the master, serves its
/// routes, then waits for the stream writers and the master to stop.
pub async fn serve(
    listener: TcpListener,
    config: MasterConfig,
    auth: Authenticator,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let server_tls = config.tls.server_config().map_err(ServeError::Tls)?;
    if server_tls.is_none() {
        tracing::warn!("{}", crate::tls::PLAIN_HTTP_WARNING);
    }
    let acls = Arc::new(config.acls.clone());
    let framework_heartbeat = config.framework_heartbeat;
    let authenticate_frameworks = config.authenticate_frameworks;
    // Service discovery: the masters' addresses, and the DNS server bound before the master starts.
    let mut config = config;
    if let Ok(listen) = listener.local_addr() {
        let own = config.replica.as_ref().map(|r| r.url().to_string());
        let peers: Vec<&str> = config
            .replica
            .iter()
            .flat_map(|r| r.peers.values())
            .map(String::as_str)
            .collect();
        config.discovery.masters = crate::discovery::masters_of(listen, own.as_deref(), &peers);
    }
    let dns = match config.discovery.dns_listen {
        Some(at) => Some(crate::discovery::dns::DnsServer::bind(at, &config.work_dir).await?),
        None => None,
    };
    let master = Master::start(config, shutdown.clone())?;
    let dns = dns.map(|d| tokio::spawn(d.run(master.discovery(), shutdown.clone())));
    let state = ApiState {
        master: master.handle(),
        auth: Arc::new(auth),
        acls,
        unauthorized: Arc::new(AtomicU64::new(0)),
        framework_heartbeat,
        shutdown: shutdown.clone(),
        streams: TaskTracker::new(),
        authenticate_frameworks,
        discovery: master.discovery(),
    };
    let app = router(state.clone());
    let served = crate::tls::serve(listener, server_tls, app, shutdown.clone()).await;
    shutdown.cancel();
    state.streams.close();
    state.streams.wait().await;
    drop(state);
    master.stopped().await;
    if let Some(d) = dns {
        let _ = d.await;
    }
    served.map_err(ServeError::Serve)
}

/// Builds the master's router.
pub fn router(handle: ApiState) -> Router {
    Router::new()
        .route("/api/v1/scheduler", post(scheduler::handle))
        .route("/api/v1", post(operator::handle))
        .route("/internal/v1/agents/register", post(internal::register))
        .route("/internal/v1/agents/heartbeat", post(internal::heartbeat))
        .route("/internal/v1/agents/status", post(internal::status))
        .route("/metrics", get(metrics::handle))
        .route("/v1/services", get(services::list))
        .route("/v1/services/{name}", get(services::one))
        .route("/health", get(health))
        .route("/version", get(version))
        .with_state(handle)
}

async fn health() -> Response {
    axum::Json(serde_json::json!({"healthy": true})).into_response()
}

async fn version() -> Response {
    axum::Json(
        serde_json::json!({"version": crate::MESOS_COMPAT_VERSION, "dccore": crate::VERSION}),
    )
    .into_response()
}

/// An error answer: status and a plain-text message saying what is wrong.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

/// Which identities a route admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// The scheduler and operator APIs and `/metrics`: the operator and framework principals.
    Client,
    /// `/internal/v1/agents/*`: agents and the operator (scripts that give agents the operator
    /// token keep working).
    Agent,
}

/// Authenticates a request for `route`: 401 (counted in the metrics) for missing or unknown
/// credentials, 403 for known credentials that this route does not admit.
///
/// A valid `Authorization` header decides; without one, a verified agent certificate on the
/// connection (`urn:dcform:agent:NODE`, see [`crate::tls`]) makes the request an agent's. So an
/// agent that has a certificate needs no token, and an operator's token on an agent's
/// connection is still the operator's.
pub(crate) fn authenticate(
    h: &ApiState,
    peer: &PeerCert,
    headers: &HeaderMap,
    route: Route,
) -> Result<Identity, Response> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let cert = match peer {
        PeerCert::Agent { node } => Some(Identity::Agent(AgentProof::Certificate {
            node: node.clone(),
        })),
        PeerCert::None | PeerCert::Master { .. } | PeerCert::Other => None,
    };
    let identity = match (h.auth.check(value), route) {
        // As before agent tokens existed: framework credentials are no credentials here (401),
        // unless the connection itself is an agent's.
        (Some(Identity::Principal(p)), Route::Agent) => {
            tracing::debug!(principal = %p, "framework credentials used on an agent route");
            cert
        }
        (Some(id), _) => Some(id),
        (None, _) => cert,
    };
    match (identity, route) {
        (Some(Identity::Agent(_)), Route::Client) => {
            return Err(error(
                StatusCode::FORBIDDEN,
                "agent credentials may call only the agent routes (/internal/v1/agents/*); use the operator token or framework credentials",
            ));
        }
        (Some(id), _) => return Ok(id),
        (None, _) => {}
    }
    h.unauthorized.fetch_add(1, Ordering::Relaxed);
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        "authentication required: Authorization: Bearer TOKEN or Basic credentials",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"dccore\""),
    );
    Err(r)
}

/// Sends a command and waits for its answer; 503 if the master is gone.
pub(crate) async fn ask<T>(
    h: &ApiState,
    make: impl FnOnce(oneshot::Sender<T>) -> MasterCommand,
) -> Result<T, Response> {
    h.master
        .ask(make)
        .await
        .map_err(IntoResponse::into_response)
}

/// Parses a JSON body into `T`, or a 400 that says what is wrong.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

impl IntoResponse for CallError {
    fn into_response(self) -> Response {
        let status = match self {
            CallError::BadRequest(_) => StatusCode::BAD_REQUEST,
            CallError::Forbidden(_) => StatusCode::FORBIDDEN,
            CallError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        error(status, self.to_string())
    }
}
