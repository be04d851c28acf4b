//! A v1 scheduler client for a replicated group of masters, written for the tests: it is given
//! every master, finds the leader itself and follows it. A follower's `307` is followed to its
//! `Location` (only to one of the masters it was given), a `503` or an unreachable master is
//! passed over; once subscribed, a stream that ends or goes silent, or a call redirected or
//! answered "not the leader", means a failover: the caller subscribes again, with the framework
//! id it was given, wherever the leader is now. What it does with offers and updates is the
//! test's (see `tests/ha_faults.rs`).
#![allow(dead_code)]

use crate::support::{basic, http};
use dccore::proto::scheduler::take_records;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Bound of one HTTP exchange with a master (a held reply waits for its commit, which takes up to
/// twice the election timeout on a leader that cannot reach the others).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// A stream without any event (HEARTBEATs come every second in the tests' config) for this long
/// is taken as dead, as a Mesos scheduler does after missing heartbeats.
const SILENCE: Duration = Duration::from_secs(5);

/// How a call (other than SUBSCRIBE) was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 202: the master took it (in the replicated mode: after its changes were committed).
    Accepted,
    /// 307 or 503: this master does not lead (any more); subscribe again.
    NotLeader(u16),
    /// No answer within [`CALL_TIMEOUT`], or no connection.
    Unreachable(String),
    /// Any other status, with the body.
    Refused(u16, String),
}

/// The subscription could not be made within its deadline, or was refused.
#[derive(Debug, Clone)]
pub struct SubscribeError(pub String);

impl std::fmt::Display for SubscribeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub struct HaScheduler {
    masters: Vec<String>,
    info: Value,
    auth: String,
    http: reqwest::Client,
    /// The master the current stream comes from (the leader when it subscribed).
    leader: Option<usize>,
    /// Given by the first SUBSCRIBED; sent with every later SUBSCRIBE (failover).
    pub framework_id: Option<String>,
    stream_id: Option<String>,
    events: Option<mpsc::UnboundedReceiver<Value>>,
    reader: Option<JoinHandle<()>>,
    /// Successful subscriptions so far (1 after the first).
    pub subscriptions: u64,
}

impl Drop for HaScheduler {
    fn drop(&mut self) {
        if let Some(r) = self.reader.take() {
            r.abort();
        }
    }
}

impl HaScheduler {
    /// A scheduler for the group `masters` (base URLs), not subscribed yet.
    pub fn new(masters: &[String], info: Value) -> HaScheduler {
        let _ = http(); // installs the TLS crypto provider reqwest needs
        HaScheduler {
            masters: masters.iter().map(|m| trim(m).to_string()).collect(),
            info,
            auth: basic(),
            // Redirects are followed here, not by reqwest: only to a master of the group, and
            // the framework's credential goes only there.
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            leader: None,
            framework_id: None,
            stream_id: None,
            events: None,
            reader: None,
            subscriptions: 0,
        }
    }

    /// The master the current subscription is with.
    pub fn leader(&self) -> Option<&str> {
        self.leader.map(|i| self.masters[i].as_str())
    }

    /// Whether a stream is open (it may have ended unnoticed: [`Self::next_event`] notices).
    pub fn subscribed(&self) -> bool {
        self.events.is_some()
    }

    /// Forgets the current stream (the next [`Self::subscribe`] finds the leader again).
    pub fn drop_stream(&mut self) {
        if let Some(r) = self.reader.take() {
            r.abort();
        }
        self.events = None;
        self.stream_id = None;
    }

    /// Subscribes at the leader, with the framework id if it has one, trying the last leader
    /// first, then every master in turn, following redirects among them, until `within` has
    /// passed. Returns the SUBSCRIBED event. A framework id other than the one it had is an
    /// error (the group forgot the framework).
    pub async fn subscribe(&mut self, within: Duration) -> Result<Value, SubscribeError> {
        self.drop_stream();
        let deadline = Instant::now() + within;
        let mut next = self.leader.unwrap_or(0);
        let mut tried: Vec<String> = Vec::new();
        loop {
            if Instant::now() >= deadline {
                return Err(SubscribeError(format!(
                    "no master took the subscription within {within:?}; last answers: {}",
                    tried
                        .iter()
                        .rev()
                        .take(6)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join("; ")
                )));
            }
            let i = next;
            match self.try_subscribe(i).await {
                Ok(Attempt::Subscribed(ev)) => return Ok(ev),
                Ok(Attempt::Redirected(to)) => {
                    tried.push(format!("{} 307 -> {}", self.masters[i], self.masters[to]));
                    next = to;
                    continue;
                }
                Ok(Attempt::Passed(why)) => tried.push(format!("{}: {why}", self.masters[i])),
                Err(e) => return Err(e),
            }
            next = (i + 1) % self.masters.len();
            if next == self.leader.unwrap_or(0) {
                // A whole round without a leader: an election is under way.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    async fn try_subscribe(&mut self, i: usize) -> Result<Attempt, SubscribeError> {
        let mut body = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": self.info}});
        if let Some(id) = &self.framework_id {
            body["framework_id"] = json!({"value": id});
            body["subscribe"]["framework_info"]["id"] = json!({"value": id});
        }
        // No request timeout on the stream itself (it lasts); the answer's head is bounded.
        let send = self
            .http
            .post(format!("{}/api/v1/scheduler", self.masters[i]))
            .header("authorization", &self.auth)
            .json(&body)
            .send();
        let mut resp = match tokio::time::timeout(CALL_TIMEOUT, send).await {
            Err(_) => return Ok(Attempt::Passed("no answer".into())),
            Ok(Err(e)) => return Ok(Attempt::Passed(dc_support::error::chain(&e))),
            Ok(Ok(r)) => r,
        };
        match resp.status().as_u16() {
            200 => {}
            307 => {
                let loc = resp
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                let base = loc.trim_end_matches("/api/v1/scheduler");
                return match self.masters.iter().position(|m| m == trim(base)) {
                    Some(to) => Ok(Attempt::Redirected(to)),
                    None => Err(SubscribeError(format!(
                        "{} redirected to {loc:?}, which is not one of the masters {:?}",
                        self.masters[i], self.masters
                    ))),
                };
            }
            503 => return Ok(Attempt::Passed("503".into())),
            s => {
                let text = resp.text().await.unwrap_or_default();
                return Err(SubscribeError(format!(
                    "SUBSCRIBE at {} answered {s}: {text}",
                    self.masters[i]
                )));
            }
        }
        let Some(stream_id) = resp
            .headers()
            .get("mesos-stream-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
        else {
            return Err(SubscribeError("200 without Mesos-Stream-Id".into()));
        };
        let (tx, mut events) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut buf = Vec::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                buf.extend_from_slice(&chunk);
                for rec in take_records(&mut buf) {
                    if tx.send(rec).is_err() {
                        return;
                    }
                }
            }
        });
        let first = match tokio::time::timeout(CALL_TIMEOUT, events.recv()).await {
            Ok(Some(ev)) => ev,
            _ => {
                reader.abort();
                return Ok(Attempt::Passed("no SUBSCRIBED event on the stream".into()));
            }
        };
        if first["type"] != "SUBSCRIBED" {
            reader.abort();
            return Err(SubscribeError(format!(
                "the stream began with {first} instead of SUBSCRIBED"
            )));
        }
        let id = first["subscribed"]["framework_id"]["value"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if let Some(had) = &self.framework_id
            && *had != id
        {
            reader.abort();
            return Err(SubscribeError(format!(
                "re-subscribed as {had} but SUBSCRIBED names {id}"
            )));
        }
        self.framework_id = Some(id);
        self.stream_id = Some(stream_id);
        self.events = Some(events);
        self.reader = Some(reader);
        self.leader = Some(i);
        self.subscriptions += 1;
        Ok(Attempt::Subscribed(first))
    }

    /// The next event of the stream (HEARTBEATs included), or `None` once it ended, stayed
    /// silent for [`SILENCE`], or there is none: then subscribe again.
    pub async fn next_event(&mut self) -> Option<Value> {
        let events = self.events.as_mut()?;
        match tokio::time::timeout(SILENCE, events.recv()).await {
            Ok(Some(ev)) => Some(ev),
            _ => {
                self.drop_stream();
                None
            }
        }
    }

    /// A call on the current subscription (framework id and stream id added). A `NotLeader`
    /// or `Unreachable` outcome drops the stream: the caller subscribes again.
    pub async fn call(&mut self, mut body: Value) -> Outcome {
        let (Some(i), Some(sid), Some(fid)) = (self.leader, &self.stream_id, &self.framework_id)
        else {
            return Outcome::Unreachable("not subscribed".into());
        };
        body["framework_id"] = json!({"value": fid});
        let r = self
            .http
            .post(format!("{}/api/v1/scheduler", self.masters[i]))
            .header("authorization", &self.auth)
            .header("mesos-stream-id", sid)
            .timeout(CALL_TIMEOUT)
            .json(&body)
            .send()
            .await;
        let outcome = match r {
            Err(e) => Outcome::Unreachable(dc_support::error::chain(&e)),
            Ok(r) => match r.status().as_u16() {
                202 => Outcome::Accepted,
                s @ (307 | 503) => Outcome::NotLeader(s),
                s => Outcome::Refused(s, r.text().await.unwrap_or_default()),
            },
        };
        if matches!(outcome, Outcome::NotLeader(_) | Outcome::Unreachable(_)) {
            self.drop_stream();
        }
        outcome
    }
}

enum Attempt {
    Subscribed(Value),
    Redirected(usize),
    Passed(String),
}

fn trim(url: &str) -> &str {
    url.trim_end_matches('/')
}
