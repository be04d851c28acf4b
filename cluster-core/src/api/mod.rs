//! The master's HTTP server: one route table, one file per API.
//!
//! | route | who | identities admitted ([`Route`]) |
//! |---|---|---|
//! | `POST /api/v1/scheduler` | frameworks ([`scheduler`]) | operator token, framework principal (Basic) |
//! | `POST /api/v1` | operators ([`operator`]) | operator token, framework principal (what the rules allow) |
//! | `POST /internal/v1/agents/*` | agents ([`internal`]) | agent token or agent certificate, operator token |
//! | `POST /internal/raft/*` | other masters ([`raft`]; served beside a [`crate::replica::Replica`]) | the master secret only |
//! | `GET /redirect` | framework libraries, agents ([`replicated`]) | anyone |
//! | `GET /replica` | operators, dcform ([`replicated`]) | operator token |
//! | `GET /metrics` | Prometheus ([`metrics`]) | operator token, principal allowed `get_endpoints` `/metrics` |
//! | `GET /v1/services[/{name}]` | service discovery over HTTP ([`services`]) | operator token, framework principal (what the rules let it see) |
//! | `GET /health`, `GET /version` | probes, framework libraries | anyone |
//! | `/v2/*`, `GET /ping` | Marathon clients ([`marathon`], the built-in services framework) | operator token |
//!
//! With replicated masters, the scheduler, operator and agent routes answer 307 to the leader
//! on a follower ([`replicated::to_leader`]); the others are answered by each master itself.
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
pub mod marathon;
pub mod metrics;
pub mod operator;
pub mod raft;
pub mod replicated;
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
    /// The services framework's state could not be loaded.
    #[error("cannot start the services framework")]
    Services(#[source] crate::services::StoreError),
    /// The HTTP server failed.
    #[error("HTTP server failed")]
    Serve(#[source] std::io::Error),
    /// The masters' secret is unusable (the message names the file).
    #[error(transparent)]
    Secret(#[from] replicated::SecretError),
    /// The replica could not start or initialise its group.
    #[error("cannot start the replica")]
    Replica(#[from] crate::replica::ReplicaError),
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
    /// This master's member of the replicated group (none: a single master).
    pub replica: Option<Arc<crate::replica::Replica>>,
    /// This master's URL in the group (empty for a single master).
    pub self_url: String,
    /// Served over HTTPS.
    pub tls: bool,
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
    serve_with(listener, config, auth, None, shutdown).await
}

/// [`serve`], with the replicated masters' Raft RPCs going through `wrap(HttpLink)` when given
/// (tests cut a master off with it).
pub async fn serve_with(
    listener: TcpListener,
    config: MasterConfig,
    auth: Authenticator,
    wrap: Option<LinkWrapper>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let server_tls = config.tls.server_config().map_err(ServeError::Tls)?;
    if server_tls.is_none() {
        tracing::warn!("{}", crate::tls::PLAIN_HTTP_WARNING);
    }
    let acls = Arc::new(config.acls.clone());
    let framework_heartbeat = config.framework_heartbeat;
    let authenticate_frameworks = config.authenticate_frameworks;
    let services_on = config.services;
    let deployment_timeout = config.services_deployment_timeout;
    let services_store = crate::services::FileStore::in_dir(&config.work_dir);
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
        Some(at) => Some(
            crate::discovery::dns::DnsServer::bind(at, &config.work_dir)
                .await?
                .with_upstreams(config.discovery.upstreams.clone()),
        ),
        None => None,
    };
    let mut services_commit_timeout = std::time::Duration::from_secs(5);
    let (master, replica, raft_routes, self_url) = match config.replica.clone() {
        None => (
            Master::start(config, shutdown.clone())?,
            None,
            None,
            String::new(),
        ),
        Some(settings) => {
            let secret = replicated::read_secret(&settings.secret_file)?;
            let mut rc =
                crate::replica::ReplicaConfig::new(settings.id, settings.url(), &config.work_dir);
            rc.max_completed_frameworks = config.max_completed_frameworks;
            rc.max_completed_tasks_per_framework = config.max_completed_tasks_per_framework;
            let client = config
                .tls
                .http_client()
                .map_err(ServeError::Tls)?
                .build()
                .map_err(|e| ServeError::Tls(crate::tls::TlsError::Client(e)))?;
            let http: Arc<dyn crate::replica::PeerLink> =
                Arc::new(crate::replica::HttpLink::new(client, secret.as_str()));
            let link = match &wrap {
                Some(w) => w(http),
                None => http,
            };
            // A commit that takes longer than an election means this master lost the majority.
            let propose_timeout = rc.election_timeout.1 * 2;
            services_commit_timeout = propose_timeout;
            let replica = Arc::new(crate::replica::Replica::start(rc, link).await?);
            if config.replica_init {
                replica.initialize(settings.peers.clone()).await?;
            }
            let master = Master::start_replicated(
                config,
                replica.clone(),
                propose_timeout,
                shutdown.clone(),
            )?;
            let routes = raft::router(replica.clone(), secret);
            (
                master,
                Some(replica),
                Some(routes),
                settings.url().to_string(),
            )
        }
    };
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
        replica: replica.clone(),
        self_url,
        tls: server_tls.is_some(),
        discovery: master.discovery(),
    };
    // Services (issue 11): the built-in Marathon framework beside the master, and its /v2 routes.
    let services = if services_on {
        // Replicated masters keep the apps in the log and run the framework on the leader only.
        let s = match &replica {
            Some(r) => crate::services::Services::on_leader(
                master.handle(),
                r.clone(),
                services_commit_timeout,
                deployment_timeout,
                shutdown.clone(),
            ),
            None => crate::services::Services::start(
                master.handle(),
                Box::new(services_store),
                deployment_timeout,
                shutdown.clone(),
            )
            .map_err(ServeError::Services)?,
        };
        Some(s)
    } else {
        None
    };
    let mut app = router(state.clone());
    if let Some(s) = &services {
        app = app.merge(marathon::routes(state.clone(), s.handle()));
    }
    if let Some(r) = raft_routes {
        app = app.merge(r);
    }
    let served = crate::tls::serve(listener, server_tls, app, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(s) = services {
        s.stopped().await;
    }
    state.streams.close();
    state.streams.wait().await;
    drop(state);
    master.stopped().await;
    if let Some(d) = dns {
        let _ = d.await;
    }
    if let Some(r) = replica {
        // A request still being answered (a Raft RPC from a peer, a call waiting for its
        // commit) may hold the replica a moment longer: it is given a few seconds to let go.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while Arc::strong_count(&r) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let holders = Arc::strong_count(&r);
        match Arc::into_inner(r) {
            // Closes the store, so a master restarted in this process may open it again.
            Some(r) => {
                if let Err(e) = r.shutdown().await {
                    tracing::warn!(error = %dc_support::error::chain(&e), "replica shutdown");
                }
            }
            // A task that outlived the master still holds it: its Raft core runs on and its
            // store stays open until that task lets go (every task should be owned and stopped
            // by now; this says which invariant broke).
            None => tracing::warn!(
                holders,
                "the replica is still referenced after the master stopped: its store stays open"
            ),
        }
    }
    served.map_err(ServeError::Serve)
}

/// Wraps the Raft link of [`serve_with`].
pub type LinkWrapper = Box<
    dyn Fn(Arc<dyn crate::replica::PeerLink>) -> Arc<dyn crate::replica::PeerLink> + Send + Sync,
>;

/// Builds the master's router.
pub fn router(handle: ApiState) -> Router {
    // On a follower these answer 307 to the leader (see [`replicated`]).
    let led = Router::new()
        .route("/api/v1/scheduler", post(scheduler::handle))
        .route("/api/v1", post(operator::handle))
        .route("/internal/v1/agents/register", post(internal::register))
        .route("/internal/v1/agents/heartbeat", post(internal::heartbeat))
        .route("/internal/v1/agents/status", post(internal::status))
        // The records follow the leader's tables; a follower's are not kept current.
        .route("/v1/services", get(services::list))
        .route("/v1/services/{name}", get(services::one))
        .route_layer(axum::middleware::from_fn_with_state(
            handle.clone(),
            replicated::to_leader,
        ));
    Router::new()
        .merge(led)
        .route("/redirect", get(replicated::leader_redirect))
        .route("/replica", get(replicated::status))
        .route("/metrics", get(metrics::handle))
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
            // The caller raced a change of leader: it retries (redirected from then on).
            CallError::NotLeader(_) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    axum::Json(serde_json::json!({"message": self.to_string()})),
                )
                    .into_response();
            }
        };
        error(status, self.to_string())
    }
}
