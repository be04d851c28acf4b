//! Agents: registration and re-registration (with task reconciliation), heartbeats timing out
//! into unreachability, and status updates coming from agents.

use super::command::CallError;
use super::state::{AgentRec, State, TaskKey, TaskRec};
use crate::proto::internal::{KillTask, RegisterAgent, Registered, StatusMessage};
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
        if self.gone_agents.contains(&id) {
            return Err(CallError::Forbidden(format!(
                "agent {id} was drained and marked gone: start it with a fresh work dir to join as a new agent"
            )));
        }
        let total = Resources::from_mesos(&msg.resources);
        tracing::info!(agent = %id, url = %msg.url, resources = %total, public = msg.public, "agent registered");

        // Offers on a returning agent are void, and its tasks' allocations are rebuilt below
        // from what the agent reports.
        self.rescind_agent_offers(&id);
        let keys: Vec<TaskKey> = self.tasks_on(&id);
        for k in &keys {
            self.release_resources(k);
        }
        self.alloc.add_agent(&id, total.clone(), msg.public);
        // The operator's deactivation and drain outlive re-registrations.
        let (deactivated, drain) = self
            .agents
            .get(&id)
            .map(|a| (a.deactivated, a.drain.clone()))
            .unwrap_or((false, None));
        self.alloc
            .set_agent_hold(&id, Self::hold_of(deactivated, drain.as_ref()));
        let changed = match self.agents.get(&id) {
            Some(a) => {
                a.url != msg.url
                    || a.total != total
                    || a.public != msg.public
                    || a.hostname != msg.hostname
            }
            None => true,
        };
        self.agents.insert(
            id.clone(),
            AgentRec {
                id: id.clone(),
                hostname: msg.hostname.clone(),
                url: msg.url.clone(),
                total,
                attributes: msg.attributes.clone(),
                public: msg.public,
                last_seen: now,
                reachable: true,
                recovered: false,
                registered_time: crate::proto::now_secs(),
                version: msg.version.clone(),
                deactivated,
                drain,
                task_user: msg.task_user.clone(),
            },
        );
        if let Some(t) = &msg.callback_token {
            self.agent_call_tokens.insert(msg.url.clone(), t.clone());
        }

        let mut kill = Vec::new();
        let mut reported = std::collections::HashSet::new();
        for rt in msg.tasks {
            let key = (rt.framework_id.value.clone(), rt.task.task_id.value.clone());
            reported.insert(key.clone());
            let framework_known = self.frameworks.contains_key(&key.0);
            if self.doomed.remove(&key) {
                kill.push(kill_task(&key));
                continue;
            }
            match self.tasks.get_mut(&key) {
                Some(_) if !framework_known => {
                    kill.push(kill_task(&key));
                }
                // A terminal state is not applied here: the agent still holds the update with
                // the details (exit code) and sends it right after registering.
                Some(_) if rt.state.is_terminal() => {}
                Some(t) => {
                    let was = t.state;
                    t.state = rt.state;
                    self.hold_resources(&key);
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
                    let state = if rt.state.is_terminal() {
                        TaskState::Running
                    } else {
                        rt.state
                    };
                    self.insert_task(
                        key.clone(),
                        TaskRec {
                            framework_id: key.0.clone(),
                            agent_id: id.clone(),
                            info: rt.task.clone(),
                            resources: res,
                            state,
                            holds_resources: false,
                            statuses: Vec::new(),
                            pending: Default::default(),
                            last_sent: None,
                        },
                    );
                    self.hold_resources(&key);
                }
                None => kill.push(kill_task(&key)),
            }
        }
        // Tasks the master thought were on this agent but the agent no longer has.
        for k in keys {
            if reported.contains(&k) {
                continue;
            }
            let Some(t) = self.tasks.get(&k) else {
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
        if changed {
            self.registry_dirty = true;
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

    pub(super) fn agent_status(&mut self, msg: StatusMessage, now: Instant) {
        let key = (
            msg.framework_id.value.clone(),
            msg.status.task_id.value.clone(),
        );
        let Some(t) = self.tasks.get(&key) else {
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
            .agents
            .values()
            .filter(|a| a.reachable && now.saturating_duration_since(a.last_seen) > timeout)
            .map(|a| a.id.clone())
            .collect();
        for id in lost {
            tracing::warn!(agent = %id, "agent unreachable: no heartbeat within {:?}", timeout);
            if let Some(a) = self.agents.get_mut(&id) {
                a.reachable = false;
            }
            self.alloc.set_agent_active(&id, false);
            self.rescind_agent_offers(&id);
            let keys: Vec<TaskKey> = self
                .tasks_on(&id)
                .into_iter()
                .filter(|k| self.tasks.get(k).is_some_and(|t| !t.state.is_terminal()))
                .collect();
            for k in keys {
                let Some(t) = self.tasks.get(&k) else {
                    continue;
                };
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
            for f in self.frameworks.values() {
                if let Some(s) = &f.stream {
                    s.send(
                        &f.id,
                        Event::Failure {
                            agent_id: Id::new(&id),
                        },
                    );
                }
            }
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
