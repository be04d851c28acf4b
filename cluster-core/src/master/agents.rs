//! Agents: registration and re-registration (with task reconciliation), heartbeats timing out
//! into unreachability, and status updates coming from agents.

use super::command::CallError;
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
    /// `TASK_UNREACHABLE`, frameworks told with a FAILURE event.
    pub(super) fn check_agents(&mut self, now: Instant) {
        let timeout = self.cfg.agent_timeout;
        let lost: Vec<String> = self
            .tables
            .agents
            .iter()
            .filter(|a| a.reachable)
            .filter(|a| {
                self.local
                    .last_seen
                    .get(&a.info.id)
                    .is_none_or(|at| now.saturating_duration_since(*at) > timeout)
            })
            .map(|a| a.info.id.clone())
            .collect();
        for id in lost {
            tracing::warn!(agent = %id, "agent unreachable: no heartbeat within {:?}", timeout);
            self.apply(
                Change::AgentUnreachable {
                    agent_id: id.clone(),
                },
                now,
            );
            self.rescind_agent_offers(&id);
            for k in self.tables.tasks.on_agent(&id) {
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
                    Some(Id::new(&id)),
                )
                .with_message(format!("agent {id} missed heartbeats for {timeout:?}"))
                .with_reason("REASON_AGENT_REMOVED");
                self.update_task(&k, st, now);
            }
            self.conns.broadcast(&Event::Failure {
                agent_id: Id::new(&id),
            });
        }
    }
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
