//! `MarathonClient`: the typed client of the masters' Marathon-compatible `/v2` API, with the
//! operator token (Bearer) and, on a TLS cluster, the cluster CA alone (as [`ClusterAccess`]).
//!
//! With replicated masters a follower answers `307` naming the leader (the services framework
//! runs beside it). The client re-sends the call there, with its token and body, only when the
//! Location is one of the masters of the state (`dccore_api::client::redirect_target`, the
//! operator client's own rule); a master that does not answer, or has no leader (`503`), is
//! passed over for the next. The master found leading is remembered for the next calls.
//!
//! [`ClusterAccess`]: crate::cluster_api::ClusterAccess

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dccore_api::client::{normalize_url, redirect_target};
use dccore_api::marathon::AppId;
use dccore_api::marathon::answers::{
    AppAnswer, AppList, AppStatus, Deployment, DeploymentRef, ErrorBody, MarathonTask, Queue,
    QueueEntry, TaskList,
};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::cluster_api::{AccessError, master_urls, masters_http, read_secret, uses_tls};
use crate::state::State;

/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Redirects followed for one call: a follower names the leader, which answers itself.
const MAX_HOPS: usize = 3;

/// What went wrong calling the services API.
#[derive(Debug, thiserror::Error)]
pub enum ServiceApiError {
    /// No master answered.
    #[error(
        "no master answered {method} {path} (tried {tried}): is the cluster running? See `dcform status`"
    )]
    Unreachable {
        /// The method.
        method: Method,
        /// The path asked.
        path: String,
        /// Every master URL tried.
        tried: String,
        /// The last cause.
        #[source]
        source: reqwest::Error,
    },
    /// The client was given no master to call.
    #[error("the cluster has no master to call; run `dcform apply`")]
    NoMaster,
    /// The app does not exist.
    #[error("no app {id} on this cluster")]
    AppNotFound {
        /// The app.
        id: String,
    },
    /// A deployment runs for the app: the change needs `force` (or a wait).
    #[error(
        "app {id} is being deployed (deployment {}): wait until it is done (`dcform app show {id}`), or force the change",
        .deployments.join(", ")
    )]
    Locked {
        /// The app.
        id: String,
        /// The deployments that lock it.
        deployments: Vec<String>,
    },
    /// The definition was refused (422: the invalid fields; 400: not JSON).
    #[error("the services API refused the definition of {id}: {body}")]
    Invalid {
        /// The app.
        id: String,
        /// Marathon's `message` and `details`.
        body: ErrorBody,
    },
    /// Any other error status, with what the master said.
    #[error("{master} answered {status} to {method} {path}: {body}")]
    Status {
        /// The master that answered.
        master: String,
        /// The method.
        method: Method,
        /// The path.
        path: String,
        /// HTTP status.
        status: u16,
        /// Marathon's `{"message": ...}` (or the text of the answer).
        body: ErrorBody,
    },
    /// A `307` not followed (to a host that is no master of the state, or too many).
    #[error("{master} redirected {method} {path}: {reason}")]
    Redirect {
        /// Who redirected.
        master: String,
        /// The method.
        method: Method,
        /// The path.
        path: String,
        /// Why it was not followed.
        reason: String,
    },
    /// The answer broke off or is not the JSON of `dccore_api::marathon::answers`.
    #[error("{master} sent an answer to {method} {path} that dcform does not read: {reason}")]
    Answer {
        /// The master.
        master: String,
        /// The method.
        method: Method,
        /// The path.
        path: String,
        /// What does not fit.
        reason: String,
    },
    /// A deployment did not finish in time: where each app stands and why it is not starting.
    #[error("not done after {secs} s: {status}")]
    Timeout {
        /// The time waited.
        secs: u64,
        /// Each app's counters and, for apps that wait for offers, the queue's reasons.
        status: String,
    },
}

impl ServiceApiError {
    /// Whether the user can fix it (an unknown app, a refused definition, a deployment in
    /// progress) rather than the cluster or the network failing.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            ServiceApiError::AppNotFound { .. }
                | ServiceApiError::Locked { .. }
                | ServiceApiError::Invalid { .. }
        )
    }
}

/// The client of the masters' `/v2` API. Cheap to clone (clones share the leader found).
#[derive(Clone)]
pub struct MarathonClient {
    http: reqwest::Client,
    masters: Vec<String>,
    leader: Arc<AtomicUsize>,
    token: String,
}

impl std::fmt::Debug for MarathonClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarathonClient")
            .field("masters", &self.masters)
            .finish_non_exhaustive()
    }
}

/// One call's answer: status and body, from the master at `master`.
struct Answer {
    master: String,
    status: StatusCode,
    body: Vec<u8>,
}

impl MarathonClient {
    /// The client of the cluster of `state`, whose folder is `dir`: every master of the state,
    /// the operator token kept there, and on a TLS cluster the cluster CA alone.
    pub fn of(state: &State, dir: &Path) -> Result<MarathonClient, AccessError> {
        let masters = master_urls(state);
        if masters.is_empty() {
            return Err(AccessError::NoMaster);
        }
        let token = read_secret(dir, crate::pki::OPERATOR_TOKEN_FILE)?;
        // Redirects are followed by `call`: with the token, only to masters of the state.
        let http = masters_http(dir, uses_tls(state), CALL_TIMEOUT, false)?;
        Ok(MarathonClient::with_http(http, &masters, &token))
    }

    /// A client over `http` (built with `redirect(Policy::none())`) of these masters.
    pub fn with_http<S: AsRef<str>>(
        http: reqwest::Client,
        masters: &[S],
        token: &str,
    ) -> MarathonClient {
        let mut list: Vec<String> = Vec::new();
        for m in masters {
            let m = normalize_url(m.as_ref());
            if !list.contains(&m) {
                list.push(m);
            }
        }
        MarathonClient {
            http,
            masters: list,
            leader: Arc::new(AtomicUsize::new(0)),
            token: token.to_string(),
        }
    }

    /// The masters, in the order first tried (the one found leading first).
    fn order(&self) -> Vec<usize> {
        let n = self.masters.len();
        let first = self.leader.load(Ordering::Relaxed) % n.max(1);
        std::iter::once(first)
            .chain((0..n).filter(|i| *i != first))
            .filter(|i| *i < n)
            .collect()
    }

    /// Sends one request, following redirects to masters of the state and passing over
    /// masters that do not answer or have no leader.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ServiceApiError> {
        let mut last_unreachable = None;
        let mut last_503 = None;
        for first in self.order() {
            let mut at = first;
            let mut hops = 0;
            loop {
                let master = &self.masters[at];
                let mut req = self
                    .http
                    .request(method.clone(), format!("{master}{path}"))
                    .bearer_auth(&self.token);
                if let Some(b) = body {
                    req = req.json(b);
                }
                let resp = match req.send().await {
                    Ok(r) => r,
                    Err(e) => {
                        last_unreachable = Some(e);
                        break;
                    }
                };
                let status = resp.status();
                if status == StatusCode::TEMPORARY_REDIRECT {
                    let redirect = |reason: String| ServiceApiError::Redirect {
                        master: master.clone(),
                        method: method.clone(),
                        path: path.to_string(),
                        reason,
                    };
                    let location = resp
                        .headers()
                        .get(reqwest::header::LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .ok_or_else(|| redirect("307 without a Location".into()))?;
                    hops += 1;
                    if hops > MAX_HOPS {
                        return Err(redirect(format!(
                            "{MAX_HOPS} redirects in a row (no settled leader yet)"
                        )));
                    }
                    at = redirect_target(&self.masters, master, location).map_err(redirect)?;
                    continue;
                }
                let bytes = resp.bytes().await.map_err(|e| ServiceApiError::Answer {
                    master: master.clone(),
                    method: method.clone(),
                    path: path.to_string(),
                    reason: dc_support::error::chain(&e),
                })?;
                if status == StatusCode::SERVICE_UNAVAILABLE && self.masters.len() > 1 {
                    last_503 = Some(Answer {
                        master: master.clone(),
                        status,
                        body: bytes.to_vec(),
                    });
                    break;
                }
                self.leader.store(at, Ordering::Relaxed);
                return Ok(Answer {
                    master: master.clone(),
                    status,
                    body: bytes.to_vec(),
                });
            }
        }
        if let Some(a) = last_503 {
            return Ok(a);
        }
        match last_unreachable {
            Some(source) => Err(ServiceApiError::Unreachable {
                method,
                path: path.to_string(),
                tried: self.masters.join(", "),
                source,
            }),
            // Only a client given no master gets here: every master tried answers or fails.
            None => Err(ServiceApiError::NoMaster),
        }
    }

    /// Sends a request and reads a success as `T`; an error status becomes its typed error
    /// (404 of an app: [`ServiceApiError::AppNotFound`], 409: `Locked`, 400/422: `Invalid`).
    async fn typed<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        app: Option<&AppId>,
        body: Option<&Value>,
    ) -> Result<T, ServiceApiError> {
        let a = self.call(method.clone(), path, body).await?;
        if !a.status.is_success() {
            return Err(status_error(&a, method, path, app));
        }
        serde_json::from_slice(&a.body).map_err(|e| ServiceApiError::Answer {
            master: a.master,
            method,
            path: path.to_string(),
            reason: e.to_string(),
        })
    }

    /// Every app, with its counters.
    pub async fn list_apps(&self) -> Result<Vec<AppStatus>, ServiceApiError> {
        let l: AppList = self.typed(Method::GET, "/v2/apps", None, None).await?;
        Ok(l.apps)
    }

    /// The app `id` with its tasks embedded, or `None` when there is no such app.
    pub async fn app(&self, id: &AppId) -> Result<Option<AppStatus>, ServiceApiError> {
        let path = format!("/v2/apps{id}?embed=app.tasks");
        match self
            .typed::<AppAnswer>(Method::GET, &path, Some(id), None)
            .await
        {
            Ok(a) => Ok(Some(a.app)),
            Err(ServiceApiError::AppNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The tasks of app `id`.
    pub async fn tasks(&self, id: &AppId) -> Result<Vec<MarathonTask>, ServiceApiError> {
        let path = format!("/v2/apps{id}/tasks");
        let l: TaskList = self.typed(Method::GET, &path, Some(id), None).await?;
        Ok(l.tasks)
    }

    /// Creates or replaces app `id` with `definition` (PUT); `force` overrides a deployment
    /// in progress.
    pub async fn put_app(
        &self,
        id: &AppId,
        definition: &Map<String, Value>,
        force: bool,
    ) -> Result<DeploymentRef, ServiceApiError> {
        let path = format!("/v2/apps{id}{}", force_query(force));
        let body = Value::Object(definition.clone());
        self.typed(Method::PUT, &path, Some(id), Some(&body)).await
    }

    /// Sets the app's instance count (PATCH `{"instances": n}`).
    pub async fn patch_instances(
        &self,
        id: &AppId,
        n: u32,
        force: bool,
    ) -> Result<DeploymentRef, ServiceApiError> {
        let path = format!("/v2/apps{id}{}", force_query(force));
        let body = serde_json::json!({ "instances": n });
        self.typed(Method::PATCH, &path, Some(id), Some(&body))
            .await
    }

    /// Replaces every instance of the app.
    pub async fn restart(&self, id: &AppId, force: bool) -> Result<DeploymentRef, ServiceApiError> {
        let path = format!("/v2/apps{id}/restart{}", force_query(force));
        self.typed(Method::POST, &path, Some(id), None).await
    }

    /// Removes the app (its instances are killed).
    pub async fn delete(&self, id: &AppId, force: bool) -> Result<DeploymentRef, ServiceApiError> {
        let path = format!("/v2/apps{id}{}", force_query(force));
        self.typed(Method::DELETE, &path, Some(id), None).await
    }

    /// The running deployments.
    pub async fn deployments(&self) -> Result<Vec<Deployment>, ServiceApiError> {
        self.typed(Method::GET, "/v2/deployments", None, None).await
    }

    /// The apps waiting for instances, with why offers were not used.
    pub async fn queue(&self) -> Result<Vec<QueueEntry>, ServiceApiError> {
        let q: Queue = self.typed(Method::GET, "/v2/queue", None, None).await?;
        Ok(q.queue)
    }
}

fn force_query(force: bool) -> &'static str {
    if force { "?force=true" } else { "" }
}

/// The typed error of a non-success answer.
fn status_error(a: &Answer, method: Method, path: &str, app: Option<&AppId>) -> ServiceApiError {
    let body = serde_json::from_slice::<ErrorBody>(&a.body).unwrap_or_else(|_| {
        ErrorBody::message(String::from_utf8_lossy(&a.body).trim().to_string())
    });
    match (a.status, app) {
        (StatusCode::NOT_FOUND, Some(id)) => ServiceApiError::AppNotFound { id: id.to_string() },
        (StatusCode::CONFLICT, Some(id)) if !body.deployments.is_empty() => {
            ServiceApiError::Locked {
                id: id.to_string(),
                deployments: body.deployments.into_iter().map(|d| d.id).collect(),
            }
        }
        (StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY, Some(id)) => {
            ServiceApiError::Invalid {
                id: id.to_string(),
                body,
            }
        }
        (status, _) => ServiceApiError::Status {
            master: a.master.clone(),
            method,
            path: path.to_string(),
            status: status.as_u16(),
            body,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dccore_api::tls::Tls;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            master: "https://m1:5050".into(),
            status: StatusCode::from_u16(status).expect("a status"),
            body: body.as_bytes().to_vec(),
        }
    }

    fn web() -> AppId {
        AppId::parse("/web").expect("an app id")
    }

    #[test]
    fn a_404_of_an_app_is_app_not_found_naming_it() {
        let e = status_error(
            &answer(404, r#"{"message": "App '/web' does not exist"}"#),
            Method::GET,
            "/v2/apps/web",
            Some(&web()),
        );
        assert!(
            matches!(&e, ServiceApiError::AppNotFound { id } if id == "/web"),
            "{e:?}"
        );
        assert!(e.is_user_error());
        assert_eq!(e.to_string(), "no app /web on this cluster");
    }

    #[test]
    fn a_409_names_the_deployments_that_lock_the_app() {
        let e = status_error(
            &answer(
                409,
                r#"{"message": "App is locked", "deployments": [{"id": "d-1"}]}"#,
            ),
            Method::PUT,
            "/v2/apps/web",
            Some(&web()),
        );
        assert!(
            matches!(&e, ServiceApiError::Locked { deployments, .. } if deployments == &["d-1"]),
            "{e:?}"
        );
        assert!(e.to_string().contains("deployment d-1"), "{e}");
    }

    #[test]
    fn a_422_shows_marathons_message_and_every_invalid_field() {
        let e = status_error(
            &answer(
                422,
                r#"{"message": "Object is not valid", "details": [{"path": "/mem", "errors": ["must be a number >= 0"]}]}"#,
            ),
            Method::PUT,
            "/v2/apps/web",
            Some(&web()),
        );
        assert!(e.is_user_error());
        assert_eq!(
            e.to_string(),
            "the services API refused the definition of /web: Object is not valid; /mem: must be a number >= 0"
        );
    }

    #[test]
    fn another_status_keeps_the_masters_text_even_when_not_json() {
        let e = status_error(&answer(500, "boom\n"), Method::GET, "/v2/queue", None);
        assert!(!e.is_user_error());
        assert_eq!(
            e.to_string(),
            "https://m1:5050 answered 500 to GET /v2/queue: boom"
        );
    }

    #[tokio::test]
    async fn a_cluster_that_does_not_answer_is_unreachable_naming_every_master_tried() {
        // Two ports nothing listens on: bound, then closed.
        let ports: Vec<u16> = (0..2)
            .map(|_| {
                std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map(|a| a.port())
                    .expect("a free port")
            })
            .collect();
        let masters: Vec<String> = ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect();
        let http = Tls::default()
            .http_client()
            .expect("a client with the system roots")
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client");
        let c = MarathonClient::with_http(http, &masters, "t");
        let e = tokio::time::timeout(Duration::from_secs(20), c.list_apps())
            .await
            .expect("within 20 s")
            .expect_err("nothing listens");
        let text = e.to_string();
        assert!(matches!(e, ServiceApiError::Unreachable { .. }), "{e:?}");
        for m in &masters {
            assert!(text.contains(m.as_str()), "{text}");
        }
        assert!(text.contains("dcform status"), "{text}");
    }
}
