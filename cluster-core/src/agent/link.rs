//! The agent's link to the master: register (with its tasks), heartbeat, deliver status updates
//! in order and retry them until the master has them. A 404 on heartbeat or 409 on a status
//! means the master does not know this agent (it restarted, or declared it unreachable): register
//! again.
//!
//! With several masters (a replicated group) the agent finds the leader itself ([`Masters`]):
//! registration tries the last known leader first, then the others, following a follower's
//! `307 Location` (at most [`MAX_HOPS`], only to a configured master) and passing over a `503`
//! (no leader yet) or an unreachable one. Once registered it talks to that leader only; a `307`,
//! `503` or connection error from it means it may no longer lead: register again (with every
//! task) wherever the leader is now. Queued status updates stay queued meanwhile and go to the
//! new leader. With a single master a `503` or connection error is retried on the next tick as
//! before: there is nobody else to ask.

use super::leader::Masters;
use super::registration::{self, Registration};
use super::tasks::{Agent, Outgoing};
use crate::proto::internal::{Heartbeat, HeartbeatAck, RegisterAgent, Registered, StatusMessage};
use crate::proto::{Id, TaskState};
use dc_support::retry::{self, Backoff};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// Registration attempts: unbounded (an agent waits for its master however long it takes),
/// jittered so that the agents of a restarted master do not all come back in the same instant.
const REGISTER_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

/// Redirects followed for one call: a follower names the leader, which answers itself; more
/// hops mean the masters disagree (an election in progress): try again later.
const MAX_HOPS: usize = 3;

/// What a flush of the queued status updates found.
enum Flushed {
    Continue,
    Reregister,
}

/// Records what the master said to this process in `WORK_DIR/registration.json` (what a probe on
/// the node reads). A failed write is logged: the probe then reports the agent as not registered,
/// which is the truth as far as anyone on the node can see.
fn record(agent: &Agent, reg: &Registration) {
    if let Err(e) = registration::write(&agent.cfg.work_dir, reg) {
        tracing::warn!(error = %e, "cannot write the registration file");
    }
}

pub(super) async fn run(agent: Arc<Agent>) {
    let Some(mut outbox) = agent.take_outbox() else {
        return;
    };
    let mut masters = Masters::new(agent.cfg.masters.clone());
    let mut pending: VecDeque<Outgoing> = VecDeque::new();
    loop {
        let attempts = retry::run(REGISTER_BACKOFF, |at| {
            let agent = &agent;
            let masters = masters.clone();
            async move {
                match register_anywhere(agent, &masters).await {
                    Ok(r) => retry::Next::Done(r),
                    Err(e) => {
                        tracing::warn!(error = %e, "registration failed; retrying in {:?}", at.backoff);
                        at.retry(e)
                    }
                }
            }
        });
        let (leader, registered) = tokio::select! {
            _ = agent.shutdown.cancelled() => return,
            r = attempts => match r {
                Ok(r) => r,
                // Unreachable with an unbounded policy; starting over is the safe answer anyway.
                Err(e) => {
                    tracing::warn!(error = %e.into_error(), "registration gave up; starting over");
                    continue;
                }
            },
        };
        masters.set_leader(leader);
        let id = registered.agent_id.value.clone();
        *agent.agent_id.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.clone());
        if let Err(e) = agent.checkpoints.save_agent_id(&id) {
            tracing::error!(error = %dc_support::error::chain(&e), "cannot checkpoint the agent id");
        }
        tracing::info!(agent = %id, master = %masters.leader(), "registered with the master");
        let now = registration::now_unix_ms();
        let mut reg = Registration {
            pid: std::process::id(),
            start_time: crate::proc::own_start_time(),
            agent_id: id.clone(),
            master: masters.leader().to_string(),
            url: agent.url.clone(),
            registered_unix_ms: now,
            acked_unix_ms: now,
            heartbeat_interval_ms: agent.cfg.heartbeat_interval.as_millis() as u64,
            deactivated: None,
            drain: None,
        };
        record(&agent, &reg);
        // Fill in the agent id on updates queued before the first registration.
        for o in pending.iter_mut() {
            o.status.agent_id.get_or_insert_with(|| Id::new(&id));
        }
        for k in &registered.kill_tasks {
            tracing::info!(framework = %k.framework_id.value, task = %k.task_id.value, "master asked to kill a task on re-registration");
            agent.kill(&k.framework_id.value, &k.task_id.value, None);
        }
        if !registered.kill.is_empty() {
            // An older master named tasks without their framework: act only where the id is
            // unambiguous, never on another framework's task of the same id.
            let reported = agent.reported();
            for t in &registered.kill {
                let mut owners = reported.iter().filter(|r| r.task.task_id == *t);
                match (owners.next(), owners.next()) {
                    (Some(r), None) => agent.kill(&r.framework_id.value, &t.value, None),
                    (Some(_), Some(_)) => {
                        tracing::warn!(task = %t.value, "master asked to kill a task id that several frameworks use, without naming the framework: ignored");
                    }
                    _ => {}
                }
            }
        }
        let mut tick = tokio::time::interval(agent.cfg.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut beat = false;
            tokio::select! {
                _ = agent.shutdown.cancelled() => return,
                _ = tick.tick() => beat = true,
                Some(o) = outbox.recv() => pending.push_back(o),
            }
            while let Ok(o) = outbox.try_recv() {
                pending.push_back(o);
            }
            if let Flushed::Reregister = flush(&agent, &mut masters, &id, &mut pending).await {
                break;
            }
            if beat {
                match heartbeat(&agent, &mut masters, &id).await {
                    Beat::Reregister => break,
                    Beat::Acked(ack) => {
                        reg.acked_unix_ms = registration::now_unix_ms();
                        reg.deactivated = Some(ack.deactivated);
                        reg.drain = ack.drain;
                        record(&agent, &reg);
                    }
                    Beat::Failed => {}
                }
            }
        }
    }
}

/// One POST's outcome at the master it was sent to.
enum Answer {
    /// An HTTP answer other than a redirect (success or not: the caller judges).
    Got(reqwest::Response),
    /// `307`: not the leader; the index of the configured master its Location names, or why
    /// it is not followed.
    Redirect(Result<usize, String>),
    /// No HTTP answer.
    Unreachable(String),
}

async fn post<T: serde::Serialize + ?Sized>(
    agent: &Agent,
    masters: &Masters,
    at: usize,
    path: &str,
    body: &T,
) -> Answer {
    let r = agent
        .http
        .post(format!("{}{path}", masters.url(at)))
        .bearer_auth(&agent.cfg.token)
        .json(body)
        .send()
        .await;
    match r {
        Err(e) => Answer::Unreachable(dc_support::error::chain(&e)),
        Ok(r) if r.status() == reqwest::StatusCode::TEMPORARY_REDIRECT => {
            let location = r
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok());
            Answer::Redirect(match location {
                Some(l) => masters.follow(at, l),
                None => Err(format!(
                    "master {} answered 307 without a Location",
                    masters.url(at)
                )),
            })
        }
        Ok(r) => Answer::Got(r),
    }
}

/// Registers with whichever master leads: each in [`Masters::order`], following redirects.
/// The index of the master that accepted, and its answer; or every master's reason.
async fn register_anywhere(
    agent: &Agent,
    masters: &Masters,
) -> Result<(usize, Registered), String> {
    let msg = RegisterAgent {
        agent_id: agent.id().map(Id::new),
        hostname: agent.cfg.hostname.clone(),
        url: agent.url.clone(),
        resources: agent.cfg.resources.to_mesos(None, None),
        attributes: agent.cfg.attributes.clone(),
        public: agent.cfg.public,
        tasks: agent.reported(),
        version: crate::VERSION.into(),
        callback_token: Some(agent.callback_token.clone()),
        task_user: agent.users.fixed_user().map(str::to_string),
    };
    if masters.is_empty() {
        return Err("no master configured".into());
    }
    let mut why = Vec::new();
    for first in masters.order() {
        let mut at = first;
        for _ in 0..=MAX_HOPS {
            match post(agent, masters, at, "/internal/v1/agents/register", &msg).await {
                Answer::Redirect(Ok(next)) => at = next,
                Answer::Redirect(Err(e)) | Answer::Unreachable(e) => {
                    why.push(format!("{}: {e}", masters.url(at)));
                    break;
                }
                Answer::Got(r) if r.status().is_success() => {
                    return match r.json::<Registered>().await {
                        Ok(reg) => Ok((at, reg)),
                        Err(e) => Err(format!(
                            "{}: unreadable answer: {}",
                            masters.url(at),
                            dc_support::error::chain(&e)
                        )),
                    };
                }
                Answer::Got(r) => {
                    why.push(format!("{} answered {}", masters.url(at), r.status()));
                    break;
                }
            }
        }
    }
    Err(why.join("; "))
}

/// A heartbeat's outcome.
enum Beat {
    /// The master knows the agent and says how it sees it.
    Acked(HeartbeatAck),
    /// The master does not know this agent, or no longer leads: register again.
    Reregister,
    /// No usable answer (retried on the next tick).
    Failed,
}

/// What to do when the leader did not take a call: a redirect names the leader to try first;
/// with other masters to ask, a `503` or no answer means it may have lost the lead.
fn lost_leader(masters: &mut Masters, a: &Answer, status: Option<reqwest::StatusCode>) -> bool {
    match a {
        Answer::Redirect(to) => {
            match to {
                Ok(i) => masters.set_leader(*i),
                Err(e) => tracing::warn!("{e}"),
            }
            true
        }
        Answer::Unreachable(_) => masters.len() > 1,
        Answer::Got(_) => {
            masters.len() > 1 && status == Some(reqwest::StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}

async fn heartbeat(agent: &Agent, masters: &mut Masters, id: &str) -> Beat {
    let at = masters.leader_index();
    let msg = Heartbeat {
        agent_id: Id::new(id),
    };
    let a = post(agent, masters, at, "/internal/v1/agents/heartbeat", &msg).await;
    let status = match &a {
        Answer::Got(r) => Some(r.status()),
        _ => None,
    };
    if lost_leader(masters, &a, status) {
        tracing::warn!(master = %masters.url(at), "the master no longer answers as leader: finding the leader");
        return Beat::Reregister;
    }
    match a {
        Answer::Got(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
            tracing::warn!("master does not know this agent: registering again");
            Beat::Reregister
        }
        Answer::Got(r) if r.status().is_success() => match r.json::<HeartbeatAck>().await {
            Ok(ack) => Beat::Acked(ack),
            Err(e) => {
                tracing::warn!(error = %dc_support::error::chain(&e), "unreadable heartbeat answer");
                Beat::Failed
            }
        },
        Answer::Got(r) => {
            tracing::warn!(status = %r.status(), "master refused a heartbeat");
            Beat::Failed
        }
        Answer::Unreachable(e) | Answer::Redirect(Err(e)) => {
            tracing::warn!(error = %e, "heartbeat failed");
            Beat::Failed
        }
        Answer::Redirect(Ok(_)) => Beat::Reregister,
    }
}

/// Sends queued updates in order to the leader; stops at the first failure (retried on the next
/// wake-up, or after registering with the new leader).
async fn flush(
    agent: &Agent,
    masters: &mut Masters,
    id: &str,
    pending: &mut VecDeque<Outgoing>,
) -> Flushed {
    while let Some(o) = pending.front() {
        let at = masters.leader_index();
        let msg = StatusMessage {
            agent_id: Id::new(id),
            framework_id: o.framework_id.clone(),
            status: o.status.clone(),
        };
        let a = post(agent, masters, at, "/internal/v1/agents/status", &msg).await;
        let status = match &a {
            Answer::Got(r) => Some(r.status()),
            _ => None,
        };
        if lost_leader(masters, &a, status) {
            tracing::warn!(master = %masters.url(at), "status update not taken by the leader; finding the leader");
            return Flushed::Reregister;
        }
        match a {
            Answer::Got(r) if r.status().is_success() => {
                if o.status.state.is_terminal() || o.status.state == TaskState::Unknown {
                    agent.mark_done(&o.framework_id.value, &o.status.task_id.value);
                }
                pending.pop_front();
            }
            Answer::Got(r) if r.status() == reqwest::StatusCode::CONFLICT => {
                return Flushed::Reregister;
            }
            Answer::Got(r) => {
                tracing::warn!(status = %r.status(), "master refused a status update; will retry");
                return Flushed::Continue;
            }
            Answer::Unreachable(e) | Answer::Redirect(Err(e)) => {
                tracing::warn!(error = %e, "status update not delivered; will retry");
                return Flushed::Continue;
            }
            Answer::Redirect(Ok(_)) => return Flushed::Reregister,
        }
    }
    Flushed::Continue
}
