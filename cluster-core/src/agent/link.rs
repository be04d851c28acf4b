//! The agent's link to the master: register (with its tasks), heartbeat, deliver status updates
//! in order and retry them until the master has them. A 404 on heartbeat or 409 on a status
//! means the master does not know this agent (it restarted, or declared it unreachable): register
//! again.

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
    let mut pending: VecDeque<Outgoing> = VecDeque::new();
    loop {
        let attempts = retry::run(REGISTER_BACKOFF, |at| {
            let agent = &agent;
            async move {
                match register(agent).await {
                    Ok(r) => retry::Next::Done(r),
                    Err(e) => {
                        tracing::warn!(master = %agent.cfg.master, error = %e, "registration failed; retrying in {:?}", at.backoff);
                        at.retry(e)
                    }
                }
            }
        });
        let registered = tokio::select! {
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
        let id = registered.agent_id.value.clone();
        *agent.agent_id.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.clone());
        if let Err(e) = agent.checkpoints.save_agent_id(&id) {
            tracing::error!(error = %dc_support::error::chain(&e), "cannot checkpoint the agent id");
        }
        tracing::info!(agent = %id, "registered with the master");
        let now = registration::now_unix_ms();
        let mut reg = Registration {
            pid: std::process::id(),
            start_time: crate::proc::own_start_time(),
            agent_id: id.clone(),
            master: agent.cfg.master.clone(),
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
            if let Flushed::Reregister = flush(&agent, &id, &mut pending).await {
                break;
            }
            if beat {
                match heartbeat(&agent, &id).await {
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

async fn register(agent: &Agent) -> Result<Registered, String> {
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
    let r = agent
        .http
        .post(format!("{}/internal/v1/agents/register", agent.cfg.master))
        .bearer_auth(&agent.cfg.token)
        .json(&msg)
        .send()
        .await
        .map_err(|e| dc_support::error::chain(&e))?;
    if !r.status().is_success() {
        return Err(format!("master answered {}", r.status()));
    }
    r.json::<Registered>()
        .await
        .map_err(|e| dc_support::error::chain(&e))
}

/// A heartbeat's outcome.
enum Beat {
    /// The master knows the agent and says how it sees it.
    Acked(HeartbeatAck),
    /// The master does not know this agent: register again.
    Reregister,
    /// No usable answer (retried on the next tick).
    Failed,
}

async fn heartbeat(agent: &Agent, id: &str) -> Beat {
    let r = agent
        .http
        .post(format!("{}/internal/v1/agents/heartbeat", agent.cfg.master))
        .bearer_auth(&agent.cfg.token)
        .json(&Heartbeat {
            agent_id: Id::new(id),
        })
        .send()
        .await;
    match r {
        Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
            tracing::warn!("master does not know this agent: registering again");
            Beat::Reregister
        }
        Ok(r) if r.status().is_success() => match r.json::<HeartbeatAck>().await {
            Ok(ack) => Beat::Acked(ack),
            Err(e) => {
                tracing::warn!(error = %dc_support::error::chain(&e), "unreadable heartbeat answer");
                Beat::Failed
            }
        },
        Ok(r) => {
            tracing::warn!(status = %r.status(), "master refused a heartbeat");
            Beat::Failed
        }
        Err(e) => {
            tracing::warn!(error = %dc_support::error::chain(&e), "heartbeat failed");
            Beat::Failed
        }
    }
}

/// Sends queued updates in order; stops at the first failure (retried on the next wake-up).
async fn flush(agent: &Agent, id: &str, pending: &mut VecDeque<Outgoing>) -> Flushed {
    while let Some(o) = pending.front() {
        let msg = StatusMessage {
            agent_id: Id::new(id),
            framework_id: o.framework_id.clone(),
            status: o.status.clone(),
        };
        let r = agent
            .http
            .post(format!("{}/internal/v1/agents/status", agent.cfg.master))
            .bearer_auth(&agent.cfg.token)
            .json(&msg)
            .send()
            .await;
        match r {
            Ok(r) if r.status().is_success() => {
                if o.status.state.is_terminal() || o.status.state == TaskState::Unknown {
                    agent.mark_done(&o.framework_id.value, &o.status.task_id.value);
                }
                pending.pop_front();
            }
            Ok(r) if r.status() == reqwest::StatusCode::CONFLICT => return Flushed::Reregister,
            Ok(r) => {
                tracing::warn!(status = %r.status(), "master refused a status update; will retry");
                return Flushed::Continue;
            }
            Err(e) => {
                tracing::warn!(error = %dc_support::error::chain(&e), "status update not delivered; will retry");
                return Flushed::Continue;
            }
        }
    }
    Flushed::Continue
}
