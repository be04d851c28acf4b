//! Agents: registration and re-registration (with task reconciliation), heartbeats timing out
//! into unreachability, and status updates coming from agents.

use super::command::{CallError, MasterCommand};
use super::state::State;
use super::tables::{AgentInfo, Change, TaskKey, TaskRec};
use crate::proto::internal::{HeartbeatAck, KillTask, RegisterAgent, Registered, StatusMessage};
use crate::proto::scheduler::Event;
use crate::proto::{Id, Resources, TaskState, TaskStatus};
use tokio::time::Instant;

impl State {
    pub(super) fn register_agent(
        &mut self,
        msg: RegisterAgent,
        now: Instant,
    ) -> Result<Registered, CallError> {
        let id = msg
            .agent_id
            .as_ref()
            .map(|i| i.value.clone())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(new_agent_id);
        if self.tables.agents.is_gone(&id) {
            return Err(CallError::Forbidden(format!(
                "agent {id} was drained and marked gone: start it with a fresh work dir to join as a new agent"
            )));
        }
        let total = Resources::from_mesos(&msg.resources);
        tracing::info!(agent = %id, url = %msg.url, resources = %total, public = msg.public, "agent registered");

        // Offers on a returning agent are void, and its tasks' allocations are rebuilt below
        // from what the agent reports (the change releases them).
        self.rescind_agent_offers(&id);
        let keys: Vec<TaskKey> = self.tables.tasks.on_agent(&id);
        let agent = AgentInfo {
            id: id.clone(),
            hostname: msg.hostname.clone(),
            url: msg.url.clone(),
            total,
            attributes: msg.attributes.clone(),
            public: msg.public,
            version: msg.version.clone(),
            task_user: msg.task_user.clone(),
        };
        self.apply(
            Change::AgentRegistered {
                agent,
                registered_time: crate::proto::now_secs(),
            },
            now,
        );
        self.local.last_seen.insert(id.clone(), now);
        self.local.registered_here.insert(id.clone());
        if let Some(t) = &msg.callback_token {
            self.local
                .agent_call_tokens
                .insert(msg.url.clone(), t.clone());
        }

        let mut kill = Vec::new();
        let mut reported = std::collections::HashSet::new();
        for rt in msg.tasks {
            let key = (rt.framework_id.value.clone(), rt.task.task_id.value.clone());
            reported.insert(key.clone());
            let framework_known = self.tables.frameworks.contains(&key.0);
            if self.tables.tasks.is_doomed(&key) {
                self.apply(
                    Change::TaskKillOrdered {
                        framework_id: key.0.clone(),
                        task_id: key.1.clone(),
                    },
                    now,
                );
                kill.push(kill_task(&key));
                continue;
            }
            match self.tables.tasks.get(&key).map(|t| t.state) {
                Some(_) if !framework_known => kill.push(kill_task(&key)),
                // A terminal state is not applied here: the agent still holds the update with
                // the details (exit code) and sends it right after registering.
                Some(_) if rt.state.is_terminal() => {}
                // The framework was told this task ended (TASK_GONE: killed while its agent was
                // away, or missing from an earlier re-registration): that word is final, so an
                // agent that still runs it stops it instead of the task coming back.
                Some(was) if was.is_terminal() => kill.push(kill_task(&key)),
                // Ended and acknowledged (in the completed list): likewise never adopted again
                // (it was, as if unknown, when its agent re-registered a second time before its
                // own terminal update went through: found by `tests/ha_faults.rs`).
                None if self
                    .tables
                    .tasks
                    .completed_of(&key.0)
                    .any(|t| t.info.task_id.value == key.1) =>
                {
                    if !rt.state.is_terminal() {
                        kill.push(kill_task(&key));
                    }
                }
                Some(was) => {
                    self.apply(
                        Change::TaskReported {
                            framework_id: key.0.clone(),
                            task_id: key.1.clone(),
                            state: rt.state,
                        },
                        now,
                    );
                    if was != rt.state {
                        let st = TaskStatus::new(
                            rt.task.task_id.clone(),
                            rt.state,
                            "SOURCE_MASTER",
                            Some(Id::new(&id)),
                        )
                        .with_message("agent re-registered")
                        .with_reason("REASON_AGENT_REREGISTERED");
                        self.update_task(&key, st, now);
                    }
                }
                None if framework_known => {
                    // Master restart: adopt the task the agent still runs (or ran: a terminal
                    // state arrives as the agent's own status update right after this).
                    let res = Resources::from_mesos(&rt.task.resources);
                    let mut task = TaskRec::staging(&key.0, &id, rt.task.clone(), res);
                    task.state = if rt.state.is_terminal() {
                        TaskState::Running
                    } else {
                        rt.state
                    };
                    let state = task.state;
                    self.apply(Change::TaskAdded { task, hold: true }, now);
                    // Told to the framework: one that dropped the task while the agent was away
                    // (a reconciliation answered TASK_UNKNOWN) kills it instead of leaving it to run.
                    if !rt.state.is_terminal() {
                        let st = TaskStatus::new(
                            rt.task.task_id.clone(),
                            state,
                            "SOURCE_MASTER",
                            Some(Id::new(&id)),
                        )
                        .with_message("agent re-registered")
                        .with_reason("REASON_AGENT_REREGISTERED");
                        self.update_task(&key, st, now);
                    }
                }
                None => kill.push(kill_task(&key)),
            }
        }
        // Tasks the master thought were on this agent but the agent no longer has.
        for k in keys {
            if reported.contains(&k) {
                continue;
            }
            let Some(t) = self.tables.tasks.get(&k) else {
                continue;
            };
            if !t.state.is_terminal() {
                let st = TaskStatus::new(
                    t.info.task_id.clone(),
                    TaskState::Gone,
                    "SOURCE_MASTER",
                    Some(Id::new(&id)),
                )
                .with_message("the agent re-registered without this task")
                .with_reason("REASON_AGENT_REREGISTERED");
                self.update_task(&k, st, now);
            }
        }
        // A drain that started while the agent was away goes on now.
        self.kill_for_drain(&id);
        self.alloc_pending = true;
        Ok(Registered {
            agent_id: Id::new(id),
            kill_tasks: kill,
            kill: Vec::new(),
        })
    }

    /// A heartbeat: how the master sees the agent, or `None` if it must register again.
    pub(super) fn heartbeat(&mut self, agent_id: &str, now: Instant) -> Option<HeartbeatAck> {
        if !self.local.registered_here.contains(agent_id) {
            return None;
        }
        let a = self.tables.agents.reachable(agent_id)?;
        let ack = HeartbeatAck {
            deactivated: a.deactivated,
            drain: a.drain.as_ref().map(|d| d.state.name().to_string()),
        };
        self.local.last_seen.insert(agent_id.to_string(), now);
        Some(ack)
    }

    pub(super) fn agent_status(&mut self, msg: StatusMessage, now: Instant) {
        let key = (
            msg.framework_id.value.clone(),
            msg.status.task_id.value.clone(),
        );
        let Some(t) = self.tables.tasks.get(&key) else {
            tracing::debug!(task = %key.1, "status update for an unknown task dropped");
            return;
        };
        if t.agent_id != msg.agent_id.value {
            return;
        }
        // Agents resend until the master answers; the uuid makes the resend a no-op.
        if msg.status.uuid.is_some() && t.statuses.iter().any(|s| s.uuid == msg.status.uuid) {
            return;
        }
        if t.state.is_terminal() {
            return;
        }
        let mut status = msg.status;
        self.drain_rewrite(&msg.agent_id.value, &mut status);
        self.update_task(&key, status, now);
    }

    /// Silent agents become unreachable: offers on them are rescinded, their tasks reported
    /// `TASK_UNREACHABLE`, frameworks told with a FAILURE event. Agents silent for
    /// `agent_probe_after` are probed at their URL first (see [`State::probe_agent`]).
    pub(super) fn check_agents(&mut self, now: Instant) {
        let timeout = self.cfg.agent_timeout;
        let probe_after = self.cfg.agent_probe_after;
        let mut lost = Vec::new();
        let mut probe = Vec::new();
        for a in self.tables.agents.iter().filter(|a| a.reachable) {
            let silent = self
                .local
                .last_seen
                .get(&a.info.id)
                .map(|at| now.saturating_duration_since(*at));
            match silent {
                None => lost.push(a.info.id.clone()),
                Some(d) if d > timeout => lost.push(a.info.id.clone()),
                Some(d) if d > probe_after => {
                    let due = self
                        .local
                        .probed
                        .get(&a.info.id)
                        .is_none_or(|at| now.saturating_duration_since(*at) > probe_after);
                    if due {
                        probe.push((a.info.id.clone(), a.info.url.clone()));
                    }
                }
                Some(_) => {}
            }
        }
        for (id, url) in probe {
            self.local.probed.insert(id.clone(), now);
            self.probe_agent(id, &url, now);
        }
        for id in lost {
            tracing::warn!(agent = %id, "agent unreachable: no heartbeat within {:?}", timeout);
            self.agent_lost(
                &id,
                format!("agent {id} missed heartbeats for {timeout:?}"),
                now,
            );
        }
    }

    /// Asks a silent agent's `/health` whether anything listens at its URL. Only a refused
    /// connection counts (the agent's process is gone: the kernel said so); an answer, a
    /// timeout or any other error is no evidence and leaves the agent to its timeout.
    fn probe_agent(&self, agent_id: String, url: &str, probed_at: Instant) {
        let req = self
            .http
            .get(format!("{}/health", url.trim_end_matches('/')))
            .timeout(std::time::Duration::from_secs(1));
        let tx = self.tx.clone();
        self.io.spawn(async move {
            let Err(e) = req.send().await else {
                return;
            };
            if !refused(&e) {
                return;
            }
            let error = dc_support::error::chain(&e);
            let _ = tx
                .send(MasterCommand::AgentRefused {
                    agent_id,
                    probed_at,
                    error,
                })
                .await;
        });
    }

    /// A probe's refused connection: the agent is unreachable now, unless it was heard from
    /// after the probe went out (it restarted and registered, or a heartbeat was late).
    pub(super) fn agent_refused(
        &mut self,
        agent_id: &str,
        probed_at: Instant,
        error: &str,
        now: Instant,
    ) {
        let reachable = self
            .tables
            .agents
            .iter()
            .any(|a| a.info.id == agent_id && a.reachable);
        let heard_since = self
            .local
            .last_seen
            .get(agent_id)
            .is_some_and(|at| *at > probed_at);
        if !reachable || heard_since {
            return;
        }
        tracing::warn!(agent = %agent_id, %error, "agent unreachable: its URL refuses connections");
        self.agent_lost(
            agent_id,
            format!(
                "agent {agent_id} stopped heartbeating and its URL refuses connections ({error})"
            ),
            now,
        );
    }

    /// Marks `id` unreachable: its offers rescinded, its tasks `TASK_UNREACHABLE` with `message`,
    /// frameworks told with a FAILURE event.
    fn agent_lost(&mut self, id: &str, message: String, now: Instant) {
        self.local.probed.remove(id);
        self.apply(
            Change::AgentUnreachable {
                agent_id: id.to_string(),
            },
            now,
        );
        self.rescind_agent_offers(id);
        for k in self.tables.tasks.on_agent(id) {
            let Some(t) = self.tables.tasks.get(&k) else {
                continue;
            };
            if t.state.is_terminal() {
                continue;
            }
            let st = TaskStatus::new(
                t.info.task_id.clone(),
                TaskState::Unreachable,
                "SOURCE_MASTER",
                Some(Id::new(id)),
            )
            .with_message(message.clone())
            .with_reason("REASON_AGENT_REMOVED");
            self.update_task(&k, st, now);
        }
        self.conns.broadcast(&Event::Failure {
            agent_id: Id::new(id),
        });
    }
}

/// Whether `e` is a refused TCP connection (nothing listens there), looked for down its causes.
fn refused(e: &reqwest::Error) -> bool {
    if !e.is_connect() {
        return false;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// An agent id that is unique for the life of the cluster: a fresh uuid v4 (never derived from a
/// count, which repeats once an agent is removed), in Mesos' `<uuid>-S0` shape.
pub(super) fn new_agent_id() -> String {
    format!("{}-S0", uuid::Uuid::new_v4())
}

/// A kill order for the task `key` (framework, task): the framework is named, so an agent never
/// kills another framework's task that has the same id.
fn kill_task(key: &TaskKey) -> KillTask {
    KillTask {
        framework_id: Id::new(&key.0),
        task_id: Id::new(&key.1),
        max_grace_secs: None,
    }
}
