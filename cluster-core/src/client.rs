//! Operator client for `dccore probe` and `dccore drain`: what dcform runs on a node to check
//! that it joined the cluster, and to empty an agent before the node is removed.
//!
//! ```text
//! probe: GET_HEALTH healthy? ──▶ (--agent-url) GET_AGENTS lists that url active? ──▶ exit 0
//! drain: GET_AGENTS: url ─▶ agent id ──▶ DRAIN_AGENT ──▶ poll GET_AGENTS/GET_TASKS until
//!        DRAINED, gone, or no live task on it ──▶ exit 0 (timeout: exit 1)
//! ```
//! Agents are found by the `url` they registered with (what the master uses to reach them); URLs
//! compare without a trailing `/` and with `http://` assumed. The verdicts are pure functions of
//! the operator API's JSON ([`probe_verdict`], [`drain_progress`]) and tested as such.

use dc_support::retry::{self, Backoff, Next, RetryError};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;

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
        call: String,
        /// HTTP status.
        status: u16,
        /// The answer's text (the master says what is wrong).
        body: String,
    },
    /// The answer is not the JSON expected.
    #[error("master {master} sent an unreadable answer to {call}")]
    Body {
        /// Master URL.
        master: String,
        /// The operator call.
        call: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
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
    master: String,
    token: String,
}

impl OperatorClient {
    /// A client whose every request gives up after `timeout`; an `https://` master is checked
    /// against the system's roots.
    pub fn new(master: &str, token: &str, timeout: Duration) -> Self {
        Self::with_tls(master, token, timeout, &crate::tls::Tls::default())
            .expect("invariant: a client with the system roots and no certificate always builds")
    }

    /// A client whose every request gives up after `timeout`, trusting `tls.ca` (`--ca-file`)
    /// alone for an `https://` master (the system's roots without one).
    pub fn with_tls(
        master: &str,
        token: &str,
        timeout: Duration,
        tls: &crate::tls::Tls,
    ) -> Result<Self, crate::tls::TlsError> {
        let http = tls
            .http_client()?
            .timeout(timeout)
            .build()
            .map_err(crate::tls::TlsError::Client)?;
        Ok(OperatorClient {
            http,
            master: normalize_url(master),
            token: token.to_string(),
        })
    }

    /// Sends an operator call; the JSON answer (`Value::Null` for an empty 200).
    pub async fn call(&self, body: Value) -> Result<Value, ClientError> {
        let call = body["type"].as_str().unwrap_or("?").to_string();
        let r = self
            .http
            .post(format!("{}/api/v1", self.master))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                master: self.master.clone(),
                source,
            })?;
        let status = r.status();
        let bytes = r.bytes().await.map_err(|source| ClientError::Body {
            master: self.master.clone(),
            call: call.clone(),
            source,
        })?;
        let text = String::from_utf8_lossy(&bytes).trim().to_string();
        if !status.is_success() {
            return Err(ClientError::Status {
                master: self.master.clone(),
                call,
                status: status.as_u16(),
                body: text,
            });
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| {
            ClientError::Missing(format!(
                "master {} answered {call} with invalid JSON: {e}",
                self.master
            ))
        })
    }

    /// `probe`: the master is healthy and (with `agent_url`) lists that agent as active.
    pub async fn probe(&self, agent_url: Option<&str>) -> Result<(), ClientError> {
        let health = self.call(json!({"type": "GET_HEALTH"})).await?;
        let agents = match agent_url {
            Some(_) => self.call(json!({"type": "GET_AGENTS"})).await?,
            None => Value::Null,
        };
        probe_verdict(&self.master, &health, &agents, agent_url).map_err(ClientError::Missing)
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
        let agents = self.call(json!({"type": "GET_AGENTS"})).await?;
        let Some(id) = find_agent(&agents, &url).map(|(id, _)| id) else {
            return Ok(format!(
                "agent {url} is not registered with master {}: nothing to drain",
                self.master
            ));
        };
        let mut drain = json!({"agent_id": {"value": id}, "mark_gone": mark_gone});
        if let Some(g) = max_grace {
            drain["max_grace_period"] =
                json!({"nanoseconds": g.as_nanos().min(i64::MAX as u128) as i64});
        }
        self.call(json!({"type": "DRAIN_AGENT", "drain_agent": drain}))
            .await?;
        // The poll gets what is left of `wait` after the calls above.
        let poll = Backoff::new(Duration::from_millis(100), Duration::from_secs(1))
            .deadline(deadline.saturating_duration_since(Instant::now()));
        let (url, id) = (&url, &id);
        retry::run(poll, |at| async move {
            let progress = async {
                let agents = self.call(json!({"type": "GET_AGENTS"})).await?;
                let tasks = self.call(json!({"type": "GET_TASKS"})).await?;
                Ok::<_, ClientError>(drain_progress(&agents, &tasks, id))
            };
            match progress.await {
                Ok(Ok(done)) => Next::Done(format!("agent {url} ({id}) {done}")),
                // Still draining: what the operator reads if the deadline passes.
                Ok(Err(last)) => at.retry(ClientError::DrainTimeout {
                    agent_url: url.clone(),
                    secs: wait.as_secs(),
                    last,
                }),
                Err(e) => Next::Fail(e),
            }
        })
        .await
        .map_err(RetryError::into_error)
    }
}

impl OperatorClient {
    /// `reactivate`: REACTIVATE_AGENT for every agent registered with `agent_url` that is
    /// deactivated or drained/draining (an interrupted removal that is undone). Returns what it did.
    pub async fn reactivate(&self, agent_url: &str) -> Result<String, ClientError> {
        let url = normalize_url(agent_url);
        let agents = self.call(json!({"type": "GET_AGENTS"})).await?;
        let held = held_agents(&agents, &url);
        if held.is_empty() {
            return Ok(format!(
                "agent {url}: not deactivated nor drained, nothing to do"
            ));
        }
        for id in &held {
            self.call(json!({"type": "REACTIVATE_AGENT", "reactivate_agent": {"agent_id": {"value": id}}}))
                .await?;
        }
        Ok(format!("agent {url}: reactivated {}", held.join(", ")))
    }
}

/// Ids of the agents registered with `url` (reachable, recovered or unreachable) that the master
/// holds out of offers: deactivated, or with a drain.
pub fn held_agents(get_agents: &Value, url: &str) -> Vec<String> {
    let url = normalize_url(url);
    ["agents", "recovered_agents", "unreachable_agents"]
        .iter()
        .flat_map(|l| {
            get_agents["get_agents"][*l]
                .as_array()
                .into_iter()
                .flatten()
        })
        .filter(|a| a["url"].as_str().map(normalize_url).as_deref() == Some(url.as_str()))
        .filter(|a| a["deactivated"] == true || a["drain_info"].is_object())
        .filter_map(|a| a["agent_info"]["id"]["value"].as_str().map(str::to_string))
        .collect()
}

/// The agent registered with `url` (normalized): its id and whether it is reachable. Looks in
/// `agents` and `unreachable_agents` of a GET_AGENTS answer.
pub fn find_agent(get_agents: &Value, url: &str) -> Option<(String, bool)> {
    let url = normalize_url(url);
    let lists = [("agents", true), ("unreachable_agents", false)];
    lists.iter().find_map(|(list, reachable)| {
        get_agents["get_agents"][*list]
            .as_array()?
            .iter()
            .find(|a| a["url"].as_str().map(normalize_url).as_deref() == Some(url.as_str()))
            .and_then(|a| a["agent_info"]["id"]["value"].as_str())
            .map(|id| (id.to_string(), *reachable))
    })
}

/// The probe's verdict from GET_HEALTH and (with `agent_url`) GET_AGENTS answers: `Err` says what
/// is missing, in one line.
pub fn probe_verdict(
    master: &str,
    health: &Value,
    agents: &Value,
    agent_url: Option<&str>,
) -> Result<(), String> {
    if health["get_health"]["healthy"] != true {
        return Err(format!("master {master} is not healthy: {health}"));
    }
    let Some(url) = agent_url else {
        return Ok(());
    };
    let url = normalize_url(url);
    let listed = agents["get_agents"]["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["url"].as_str().map(normalize_url).as_deref() == Some(url.as_str()));
    match listed {
        Some(a) if a["active"] == true => Ok(()),
        Some(a) if a["deactivated"] == true => Err(format!(
            "agent {url} is registered with master {master} but deactivated by the operator (drain: {})",
            a["drain_info"]["state"].as_str().unwrap_or("none")
        )),
        Some(_) => Err(format!(
            "agent {url} is registered with master {master} but not active"
        )),
        None if find_agent(agents, &url).is_some() => Err(format!(
            "agent {url} is known to master {master} but unreachable"
        )),
        None => {
            let known: Vec<&str> = agents["get_agents"]["agents"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["url"].as_str())
                .collect();
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
pub fn drain_progress(get_agents: &Value, get_tasks: &Value, id: &str) -> Result<String, String> {
    let lists = ["agents", "unreachable_agents"];
    let agent = lists.iter().find_map(|l| {
        get_agents["get_agents"][*l]
            .as_array()?
            .iter()
            .find(|a| a["agent_info"]["id"]["value"] == id)
    });
    let Some(agent) = agent else {
        return Ok("drained and removed (marked gone)".into());
    };
    if agent["drain_info"]["state"] == "DRAINED" {
        return Ok("drained".into());
    }
    let live = get_tasks["get_tasks"]["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["agent_id"]["value"] == id)
        .count();
    if live == 0 {
        return Ok("has no live task left".into());
    }
    Err(format!(
        "{live} task(s) still live, drain state {}",
        agent["drain_info"]["state"].as_str().unwrap_or("none")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_held_agents_of_that_url_are_reactivated() {
        let a = json!({"get_agents": {
            "agents": [
                {"url": "http://a:1", "deactivated": true, "drain_info": {"state": "DRAINED"}, "agent_info": {"id": {"value": "x"}}},
                {"url": "http://b:1", "deactivated": true, "drain_info": null, "agent_info": {"id": {"value": "y"}}},
                {"url": "http://a:1/", "deactivated": false, "drain_info": null, "agent_info": {"id": {"value": "z"}}}
            ],
            "recovered_agents": [],
            "unreachable_agents": [
                {"url": "a:1", "deactivated": false, "drain_info": {"state": "DRAINING"}, "agent_info": {"id": {"value": "w"}}}
            ]
        }});
        assert_eq!(held_agents(&a, "http://a:1"), vec!["x", "w"]);
        assert!(held_agents(&a, "http://c:1").is_empty());
    }

    fn agents(list: Value) -> Value {
        json!({"get_agents": {"agents": list, "recovered_agents": [], "unreachable_agents": []}})
    }

    fn healthy() -> Value {
        json!({"get_health": {"healthy": true}})
    }

    #[test]
    fn probe_passes_for_a_healthy_master_and_an_active_agent_whatever_the_url_spelling() {
        let a = agents(json!([{"url": "http://10.0.0.3:5051", "active": true,
            "agent_info": {"id": {"value": "S1"}}}]));
        assert_eq!(probe_verdict("m", &healthy(), &Value::Null, None), Ok(()));
        assert_eq!(
            probe_verdict("m", &healthy(), &a, Some("10.0.0.3:5051/")),
            Ok(())
        );
    }

    #[test]
    fn probe_says_what_is_missing() {
        let a = agents(
            json!([{"url": "http://10.0.0.3:5051", "active": false, "deactivated": true,
            "drain_info": {"state": "DRAINING"}, "agent_info": {"id": {"value": "S1"}}}]),
        );
        let err = probe_verdict("m", &healthy(), &a, Some("http://10.0.0.3:5051"))
            .expect_err("deactivated");
        assert!(
            err.contains("deactivated") && err.contains("DRAINING"),
            "{err}"
        );
        let err = probe_verdict("m", &healthy(), &a, Some("http://10.0.0.4:5051"))
            .expect_err("not listed");
        assert!(
            err.contains("not registered") && err.contains("http://10.0.0.3:5051"),
            "{err}"
        );
        let err = probe_verdict("m", &json!({"get_health": {"healthy": false}}), &a, None)
            .expect_err("unhealthy");
        assert!(err.contains("not healthy"), "{err}");
    }

    #[test]
    fn drain_is_over_when_drained_gone_or_without_live_tasks() {
        let draining = agents(json!([{"url": "u", "agent_info": {"id": {"value": "S1"}},
            "drain_info": {"state": "DRAINING"}}]));
        let busy = json!({"get_tasks": {"tasks": [{"agent_id": {"value": "S1"}}]}});
        let idle = json!({"get_tasks": {"tasks": [{"agent_id": {"value": "S2"}}]}});
        let err = drain_progress(&draining, &busy, "S1").expect_err("still busy");
        assert!(
            err.contains("1 task(s)") && err.contains("DRAINING"),
            "{err}"
        );
        assert!(drain_progress(&draining, &idle, "S1").is_ok());
        let drained = agents(json!([{"url": "u", "agent_info": {"id": {"value": "S1"}},
            "drain_info": {"state": "DRAINED"}}]));
        assert_eq!(drain_progress(&drained, &busy, "S1"), Ok("drained".into()));
        assert!(
            drain_progress(&agents(json!([])), &busy, "S1")
                .is_ok_and(|s| s.contains("marked gone"))
        );
    }
}
