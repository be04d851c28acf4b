//! The operator client: typed calls of the master's operator API ([`OperatorClient::get_agents`],
//! ...), and behind `dccore probe`, `dccore drain` and `dccore reactivate` what dcform runs on a
//! node to check that it joined the cluster, and to empty an agent before the node is removed.
//!
//! ```text
//! probe: GET_HEALTH healthy? ──▶ (--agent-url) GET_AGENTS lists that url active? ──▶ exit 0
//! drain: GET_AGENTS: url ─▶ agent id ──▶ DRAIN_AGENT ──▶ poll GET_AGENTS/GET_TASKS until
//!        DRAINED, gone, or no live task on it ──▶ exit 0 (timeout: exit 2)
//! ```
//! With replicated masters a follower answers `307` naming the leader: the client re-sends the
//! call there with its token, only to masters it was given (see `client/redirect.rs` for the
//! rule and why), at most [`MAX_HOPS`] times, and remembers the leader for the next calls. Given
//! several masters it also passes over one that is unreachable or has no leader (`503`).
//!
//! Agents are found by the `url` they registered with (what the master uses to reach them); URLs
//! compare without a trailing `/` and with `http://` assumed. The verdicts are pure functions of
//! the operator API's typed answers ([`probe_verdict`], [`drain_progress`]) and tested as such.

use crate::operator::{
    Call, DrainState, GetAgents, GetFrameworks, GetHealth, GetState, GetTasks, Response,
};
use crate::tls::{Tls, TlsError};
use dc_support::retry::{self, Backoff, Next, RetryError};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::time::Instant;

mod redirect;
pub use redirect::host_port;
/// Which master a `307 Location` names, by the rule of the module doc (dcform's services
/// client follows the same).
pub use redirect::target as redirect_target;

/// Redirects followed for one call: a follower names the leader, which answers itself; more
/// hops mean the masters disagree (an election in progress).
pub const MAX_HOPS: usize = 3;

/// The drain's polls: first after `DRAIN_POLL.0`, doubling up to `DRAIN_POLL.1`.
const DRAIN_POLL: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(1));

/// What went wrong talking to the master, or what the cluster is missing.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No HTTP answer.
    #[error("master {master} unreachable")]
    Unreachable {
        /// Master URL.
        master: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// A non-success HTTP status.
    #[error("master {master} answered {status} to {call}: {body}")]
    Status {
        /// Master URL.
        master: String,
        /// The operator call.
        call: &'static str,
        /// HTTP status.
        status: u16,
        /// The answer's text (the master says what is wrong).
        body: String,
    },
    /// The answer broke off.
    #[error("master {master} sent an unreadable answer to {call}")]
    Body {
        /// Master URL.
        master: String,
        /// The operator call.
        call: &'static str,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The answer is not the JSON of [`Response`] (another dccore version, or not a master).
    #[error("master {master} answered {call} with JSON this client does not read")]
    Json {
        /// Master URL.
        master: String,
        /// The operator call.
        call: &'static str,
        /// What does not fit.
        #[source]
        source: serde_json::Error,
    },
    /// The answer is of another call (or empty where an answer was due).
    #[error("master {master} answered {call} with {got}")]
    Unexpected {
        /// Master URL.
        master: String,
        /// The operator call.
        call: &'static str,
        /// What came instead.
        got: String,
    },
    /// A `307` this client does not follow (to a host it was not given, or without Location).
    #[error("master {master} redirected the {call} call: {reason}")]
    Redirect {
        /// The master that redirected.
        master: String,
        /// The operator call.
        call: &'static str,
        /// Why it was not followed.
        reason: String,
    },
    /// More than [`MAX_HOPS`] redirects in a row.
    #[error(
        "masters redirected the {call} call {hops} times in a row (no settled leader yet): last from {master}"
    )]
    TooManyRedirects {
        /// The last master that redirected.
        master: String,
        /// The operator call.
        call: &'static str,
        /// Redirects followed.
        hops: usize,
    },
    /// The probe's or the drain's verdict: what is missing.
    #[error("{0}")]
    Missing(String),
    /// The drain did not finish in time.
    #[error("agent {agent_url} not drained after {secs} s: {last}")]
    DrainTimeout {
        /// The agent.
        agent_url: String,
        /// The deadline.
        secs: u64,
        /// The last progress seen.
        last: String,
    },
}

/// Normalizes a URL for comparison: `http://` assumed, no trailing `/`.
pub fn normalize_url(url: &str) -> String {
    let u = url.trim().trim_end_matches('/');
    if u.starts_with("http://") || u.starts_with("https://") {
        u.to_string()
    } else {
        format!("http://{u}")
    }
}

/// A bearer-token client of the master's operator API (`POST /api/v1`).
#[derive(Debug, Clone)]
pub struct OperatorClient {
    http: reqwest::Client,
    /// Every master this client was given (normalized), at least one.
    masters: Vec<String>,
    /// The one believed to lead (shared by clones: they talk to the same cluster).
    leader: Arc<AtomicUsize>,
    token: String,
}

/// One POST's outcome at one master.
enum Sent {
    /// A final answer (success or not) from `masters[at]`.
    Answer(usize, reqwest::StatusCode, Vec<u8>),
    /// Nothing usable from this master: the next may do (unreachable, or no leader: 503).
    Next(ClientError),
}

/// Picks one variant's answer out of a [`Response`].
macro_rules! answer {
    ($self:ident, $call:expr, $variant:ident, $field:ident) => {{
        let call = $call;
        match $self.send(&call).await? {
            Some(Response::$variant { $field }) => Ok($field),
            other => Err($self.unexpected(&call, other)),
        }
    }};
}

impl OperatorClient {
    /// A client whose every request gives up after `timeout`; an `https://` master is checked
    /// against the system's roots.
    pub fn new(master: &str, token: &str, timeout: Duration) -> Self {
        Self::with_tls(&[master], token, timeout, &Tls::default())
            .expect("invariant: a client with the system roots and no certificate always builds")
    }

    /// A client of `masters` (one, or every master of a replicated group: see
    /// [`Self::with_masters`]) whose every request gives up after `timeout`, trusting `tls.ca`
    /// (`--ca-file`) alone for an `https://` master (the system's roots without one).
    pub fn with_tls<S: AsRef<str>>(
        masters: &[S],
        token: &str,
        timeout: Duration,
        tls: &Tls,
    ) -> Result<Self, TlsError> {
        // Redirects are followed by `send`, with the token and only to given masters.
        let http = tls
            .http_client()?
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .build()
            .map_err(TlsError::Client)?;
        Ok(Self::with_masters(http, masters, token))
    }

    /// A client over `http` (its TLS set-up and timeouts), e.g. one HTTP client shared with
    /// other calls to the cluster. Build `http` with `redirect(Policy::none())`: reqwest's own
    /// policy follows a `307` itself but drops the token on the way (the call is then re-sent
    /// with it, one wasted request later).
    pub fn with_http(http: reqwest::Client, master: &str, token: &str) -> Self {
        Self::with_masters(http, &[master], token)
    }

    /// A client of a replicated group: every master's URL (the first is tried first). Calls
    /// follow a follower's `307` to the leader among them; see the module doc.
    pub fn with_masters<S: AsRef<str>>(http: reqwest::Client, masters: &[S], token: &str) -> Self {
        let mut list: Vec<String> = Vec::new();
        for m in masters {
            let m = normalize_url(m.as_ref());
            if !list.contains(&m) {
                list.push(m);
            }
        }
        if list.is_empty() {
            // No master: every call then fails naming the empty URL, rather than a panic here.
            list.push(String::new());
        }
        OperatorClient {
            http,
            masters: list,
            leader: Arc::new(AtomicUsize::new(0)),
            token: token.to_string(),
        }
    }

    /// The URL (normalized) of the master believed to lead: the first given until a call
    /// found another.
    pub fn master(&self) -> &str {
        let i = self.leader.load(Ordering::Relaxed);
        self.masters.get(i).unwrap_or(&self.masters[0])
    }

    /// Every master this client was given.
    pub fn masters(&self) -> &[String] {
        &self.masters
    }

    /// POSTs `call` to `masters[at]`, following redirects to given masters.
    async fn post_from(&self, first: usize, call: &Call) -> Result<Sent, ClientError> {
        let name = call.name();
        let mut at = first;
        for _ in 0..=MAX_HOPS {
            let master = &self.masters[at];
            let r = match self
                .http
                .post(format!("{master}/api/v1"))
                .bearer_auth(&self.token)
                .json(call)
                .send()
                .await
            {
                Ok(r) => r,
                Err(source) => {
                    return Ok(Sent::Next(ClientError::Unreachable {
                        master: master.clone(),
                        source,
                    }));
                }
            };
            let status = r.status();
            // An HTTP client with reqwest's default policy followed a redirect itself (and
            // dropped the token across hosts): judge the host it ended at as a Location.
            let ended = r.url().as_str().to_string();
            let location = if status == reqwest::StatusCode::TEMPORARY_REDIRECT {
                Some(
                    r.headers()
                        .get(reqwest::header::LOCATION)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                        .ok_or_else(|| ClientError::Redirect {
                            master: master.clone(),
                            call: name,
                            reason: "307 without a Location".into(),
                        })?,
                )
            } else if host_port(&ended) != host_port(master) {
                Some(ended)
            } else {
                None
            };
            if let Some(l) = location {
                at = redirect::target(&self.masters, master, &l).map_err(|reason| {
                    ClientError::Redirect {
                        master: master.clone(),
                        call: name,
                        reason,
                    }
                })?;
                continue;
            }
            let bytes = r.bytes().await.map_err(|source| ClientError::Body {
                master: master.clone(),
                call: name,
                source,
            })?;
            if status == reqwest::StatusCode::SERVICE_UNAVAILABLE && self.masters.len() > 1 {
                return Ok(Sent::Next(ClientError::Status {
                    master: master.clone(),
                    call: name,
                    status: status.as_u16(),
                    body: String::from_utf8_lossy(&bytes).trim().to_string(),
                }));
            }
            return Ok(Sent::Answer(at, status, bytes.to_vec()));
        }
        Err(ClientError::TooManyRedirects {
            master: self.masters[at].clone(),
            call: name,
            hops: MAX_HOPS,
        })
    }

    /// Sends an operator call: its answer, `None` for the empty 200 of maintenance calls.
    pub async fn send(&self, call: &Call) -> Result<Option<Response>, ClientError> {
        let name = call.name();
        let leader = self.leader.load(Ordering::Relaxed) % self.masters.len();
        let order = std::iter::once(leader).chain((0..self.masters.len()).filter(|i| *i != leader));
        let mut last = None;
        let mut answer = None;
        for first in order {
            match self.post_from(first, call).await? {
                Sent::Answer(at, status, bytes) => {
                    answer = Some((at, status, bytes));
                    break;
                }
                Sent::Next(e) => last = Some(e),
            }
        }
        let Some((at, status, bytes)) = answer else {
            return Err(last.expect("invariant: at least one master was tried"));
        };
        let master = self.masters[at].clone();
        // It answered as leader (a refusal too): the next call goes there first.
        self.leader.store(at, Ordering::Relaxed);
        if !status.is_success() {
            return Err(ClientError::Status {
                master,
                call: name,
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).trim().to_string(),
            });
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| ClientError::Json {
                master: master.clone(),
                call: name,
                source,
            })
    }

    /// Sends a maintenance call (DRAIN_AGENT, DEACTIVATE_AGENT, REACTIVATE_AGENT, TEARDOWN),
    /// which the master answers with an empty 200.
    pub async fn execute(&self, call: &Call) -> Result<(), ClientError> {
        match self.send(call).await? {
            None => Ok(()),
            Some(r) => Err(self.unexpected(call, Some(r))),
        }
    }

    fn unexpected(&self, call: &Call, got: Option<Response>) -> ClientError {
        ClientError::Unexpected {
            master: self.master().to_string(),
            call: call.name(),
            got: match got {
                Some(r) => format!("a {} answer", r.name()),
                None => "an empty answer".into(),
            },
        }
    }

    /// `GET_HEALTH`.
    pub async fn get_health(&self) -> Result<GetHealth, ClientError> {
        answer!(self, Call::GetHealth, GetHealth, get_health)
    }

    /// `GET_AGENTS`.
    pub async fn get_agents(&self) -> Result<GetAgents, ClientError> {
        answer!(self, Call::GetAgents, GetAgents, get_agents)
    }

    /// `GET_FRAMEWORKS`.
    pub async fn get_frameworks(&self) -> Result<GetFrameworks, ClientError> {
        answer!(self, Call::GetFrameworks, GetFrameworks, get_frameworks)
    }

    /// `GET_TASKS`.
    pub async fn get_tasks(&self) -> Result<GetTasks, ClientError> {
        answer!(self, Call::GetTasks, GetTasks, get_tasks)
    }

    /// `GET_STATE`.
    pub async fn get_state(&self) -> Result<GetState, ClientError> {
        answer!(self, Call::GetState, GetState, get_state)
    }

    /// `probe`: the master is healthy and (with `agent_url`) lists that agent as active.
    pub async fn probe(&self, agent_url: Option<&str>) -> Result<(), ClientError> {
        let health = self.get_health().await?;
        let agents = match agent_url {
            Some(_) => Some(self.get_agents().await?),
            None => None,
        };
        probe_verdict(self.master(), &health, agents.as_ref(), agent_url)
            .map_err(ClientError::Missing)
    }

    /// `drain`: DRAIN_AGENT for the agent registered with `agent_url`, then waits (polling)
    /// until it is drained, gone or has no live task; [`ClientError::DrainTimeout`] after `wait`.
    /// Returns what happened, for the operator to read.
    pub async fn drain(
        &self,
        agent_url: &str,
        max_grace: Option<Duration>,
        mark_gone: bool,
        wait: Duration,
    ) -> Result<String, ClientError> {
        let deadline = Instant::now() + wait;
        let url = normalize_url(agent_url);
        let agents = self.get_agents().await?;
        let Some(id) = find_agent(&agents, &url).map(|(id, _)| id) else {
            return Ok(format!(
                "agent {url} is not registered with master {}: nothing to drain",
                self.master()
            ));
        };
        self.execute(&Call::drain_agent(&id, max_grace, mark_gone))
            .await?;
        let policy = Backoff::new(DRAIN_POLL.0, DRAIN_POLL.1)
            .deadline(deadline.saturating_duration_since(Instant::now()));
        let (url, id) = (&url, &id);
        retry::run(policy, |at| async move {
            let agents = match self.get_agents().await {
                Ok(a) => a,
                Err(e) => return Next::Fail(e),
            };
            let tasks = match self.get_tasks().await {
                Ok(t) => t,
                Err(e) => return Next::Fail(e),
            };
            match drain_progress(&agents, &tasks, id) {
                Ok(done) => Next::Done(format!("agent {url} ({id}) {done}")),
                // Still draining: the timeout error is what is left when the deadline passes.
                Err(last) => at.retry(ClientError::DrainTimeout {
                    agent_url: url.clone(),
                    secs: wait.as_secs(),
                    last,
                }),
            }
        })
        .await
        .map_err(RetryError::into_error)
    }

    /// `reactivate`: REACTIVATE_AGENT for every agent registered with `agent_url` that is
    /// deactivated or drained/draining (an interrupted removal that is undone). Returns what it did.
    pub async fn reactivate(&self, agent_url: &str) -> Result<String, ClientError> {
        let url = normalize_url(agent_url);
        let agents = self.get_agents().await?;
        let held = held_agents(&agents, &url);
        if held.is_empty() {
            return Ok(format!(
                "agent {url}: not deactivated nor drained, nothing to do"
            ));
        }
        for id in &held {
            self.execute(&Call::reactivate_agent(id)).await?;
        }
        Ok(format!("agent {url}: reactivated {}", held.join(", ")))
    }
}

/// Ids of the agents registered with `url` (reachable or unreachable) that the master holds out
/// of offers: deactivated, or with a drain. (Recovered agents carry no URL until they
/// re-register.)
pub fn held_agents(get_agents: &GetAgents, url: &str) -> Vec<String> {
    let url = normalize_url(url);
    get_agents
        .all()
        .filter(|a| normalize_url(&a.url) == url)
        .filter(|a| a.deactivated || a.drain_info.is_some())
        .map(|a| a.id().to_string())
        .collect()
}

/// The agent registered with `url` (normalized): its id and whether it is reachable. Looks in
/// `agents` and `unreachable_agents` of a GET_AGENTS answer.
pub fn find_agent(get_agents: &GetAgents, url: &str) -> Option<(String, bool)> {
    let url = normalize_url(url);
    let lists = [
        (&get_agents.agents, true),
        (&get_agents.unreachable_agents, false),
    ];
    lists.iter().find_map(|(list, reachable)| {
        list.iter()
            .find(|a| normalize_url(&a.url) == url)
            .map(|a| (a.id().to_string(), *reachable))
    })
}

/// The probe's verdict from GET_HEALTH and (with `agent_url`) GET_AGENTS answers: `Err` says what
/// is missing, in one line.
pub fn probe_verdict(
    master: &str,
    health: &GetHealth,
    agents: Option<&GetAgents>,
    agent_url: Option<&str>,
) -> Result<(), String> {
    if !health.healthy {
        return Err(format!(
            "master {master} is not healthy: GET_HEALTH says healthy = false"
        ));
    }
    let Some(url) = agent_url else {
        return Ok(());
    };
    let url = normalize_url(url);
    let Some(agents) = agents else {
        return Err(format!(
            "agent {url}: no GET_AGENTS answer from master {master} to look for it in"
        ));
    };
    let listed = agents.agents.iter().find(|a| normalize_url(&a.url) == url);
    match listed {
        Some(a) if a.active => Ok(()),
        Some(a) if a.deactivated => Err(format!(
            "agent {url} is registered with master {master} but deactivated by the operator (drain: {})",
            a.drain_info.as_ref().map_or("none", |d| d.state.name())
        )),
        Some(_) => Err(format!(
            "agent {url} is registered with master {master} but not active"
        )),
        None if find_agent(agents, &url).is_some() => Err(format!(
            "agent {url} is known to master {master} but unreachable"
        )),
        None => {
            let known: Vec<&str> = agents.agents.iter().map(|a| a.url.as_str()).collect();
            Err(format!(
                "agent {url} is not registered with master {master} (registered: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        }
    }
}

/// Whether the drain of agent `id` is over, from GET_AGENTS and GET_TASKS answers: `Ok` says how
/// it ended, `Err` what is still going on.
pub fn drain_progress(
    get_agents: &GetAgents,
    get_tasks: &GetTasks,
    id: &str,
) -> Result<String, String> {
    let Some(agent) = get_agents.all().find(|a| a.id() == id) else {
        return Ok("drained and removed (marked gone)".into());
    };
    let state = agent.drain_info.as_ref().map(|d| d.state);
    if state == Some(DrainState::Drained) {
        return Ok("drained".into());
    }
    let live = get_tasks
        .tasks
        .iter()
        .filter(|t| t.agent_id.value == id)
        .count();
    if live == 0 {
        return Ok("has no live task left".into());
    }
    Err(format!(
        "{live} task(s) still live, drain state {}",
        state.map_or("none", DrainState::name)
    ))
}

#[cfg(test)]
mod tests;
