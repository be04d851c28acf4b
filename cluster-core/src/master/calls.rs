//! Scheduler calls other than SUBSCRIBE: ACCEPT (launches), DECLINE, REVIVE, SUPPRESS, KILL,
//! ACKNOWLEDGE, RECONCILE, TEARDOWN.

use super::command::CallError;
use super::state::State;
use super::tables::{Change, TaskRec};
use crate::proto::scheduler::{Call, Event, Operation, ReconcileTask};
use crate::proto::{Id, Resources, TaskInfo, TaskState, TaskStatus};
use std::time::Duration;
use tokio::time::Instant;

impl State {
    /// Every scheduler call but SUBSCRIBE.
    pub(super) fn call(
        &mut self,
        call: Call,
        stream_id: Option<String>,
        now: Instant,
    ) -> Result<(), CallError> {
        let fid = call
            .framework_id
            .as_ref()
            .map(|i| i.value.clone())
            .ok_or_else(|| CallError::BadRequest(format!("{} needs framework_id", call.kind)))?;
        if !self.tables.frameworks.contains(&fid) {
            return Err(CallError::BadRequest(format!(
                "framework {fid} is not subscribed"
            )));
        }
        let current = self.conns.current(&fid);
        if current.is_none() || current != stream_id.as_deref() {
            return Err(CallError::BadRequest(format!(
                "Mesos-Stream-Id {:?} is not the current subscription of framework {fid}",
                stream_id.unwrap_or_default()
            )));
        }
        let missing =
            |what: &str| CallError::BadRequest(format!("{} needs the {what} field", call.kind));
        match call.kind.as_str() {
            "TEARDOWN" => self.teardown(&fid, now),
            "ACCEPT" => {
                let accept = call.accept.clone().ok_or_else(|| missing("accept"))?;
                let refuse = accept.filters.as_ref().and_then(|f| f.refuse_seconds);
                self.accept(&fid, &accept.offer_ids, &accept.operations, refuse, now)?;
            }
            "DECLINE" => {
                let decline = call.decline.clone().ok_or_else(|| missing("decline"))?;
                let until = now
                    + self.refuse_duration(decline.filters.as_ref().and_then(|f| f.refuse_seconds));
                for oid in &decline.offer_ids {
                    if let Some(o) = self.offers.get(&oid.value)
                        && o.framework_id != fid
                    {
                        continue;
                    }
                    if let Some(o) = self.take_offer(&oid.value) {
                        self.alloc
                            .decline(&fid, &o.agent_id, &o.resources, Some(until));
                    }
                }
            }
            "REVIVE" => {
                self.alloc.revive(&fid);
                self.alloc_pending = true;
            }
            "SUPPRESS" => self.alloc.suppress(&fid),
            "KILL" => {
                let kill = call.kill.clone().ok_or_else(|| missing("kill"))?;
                self.kill(&fid, &kill.task_id, now);
            }
            "ACKNOWLEDGE" => {
                let ack = call
                    .acknowledge
                    .clone()
                    .ok_or_else(|| missing("acknowledge"))?;
                self.acknowledge(&(fid.clone(), ack.task_id.value.clone()), &ack.uuid, now);
            }
            "RECONCILE" => {
                let rec = call.reconcile.clone().unwrap_or_default();
                self.reconcile(&fid, &rec.tasks, now);
            }
            "MESSAGE"
            | "REQUEST"
            | "ACCEPT_INVERSE_OFFERS"
            | "DECLINE_INVERSE_OFFERS"
            | "SHUTDOWN" => {
                tracing::debug!(framework = %fid, call = %call.kind, "call accepted and ignored (no executors, no inverse offers)");
            }
            other => {
                return Err(CallError::BadRequest(format!(
                    "unsupported call type {other:?}: supported are SUBSCRIBE, TEARDOWN, ACCEPT, DECLINE, REVIVE, SUPPRESS, KILL, ACKNOWLEDGE, RECONCILE"
                )));
            }
        }
        Ok(())
    }

    fn refuse_duration(&self, refuse_seconds: Option<f64>) -> Duration {
        refuse_seconds
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(1e9)))
            .unwrap_or(self.cfg.default_refuse)
    }

    fn accept(
        &mut self,
        fid: &str,
        offer_ids: &[Id],
        operations: &[Operation],
        refuse: Option<f64>,
        now: Instant,
    ) -> Result<(), CallError> {
        let mut tasks: Vec<TaskInfo> = Vec::new();
        for op in operations {
            match op.kind.as_str() {
                "LAUNCH" => {
                    tasks.extend(op.launch.iter().flat_map(|l| l.task_infos.iter().cloned()))
                }
                "LAUNCH_GROUP" => tasks.extend(
                    op.launch_group
                        .iter()
                        .flat_map(|l| l.task_group.tasks.iter().cloned()),
                ),
                other => {
                    return Err(CallError::BadRequest(format!(
                        "unsupported operation {other:?}: supported are LAUNCH, LAUNCH_GROUP"
                    )));
                }
            }
        }
        // Take the offers; all must be this framework's and on one agent.
        let mut agent: Option<String> = None;
        let mut avail = Resources::default();
        let mut invalid: Option<String> = None;
        for oid in offer_ids {
            match self.offers.get(&oid.value) {
                Some(o)
                    if o.framework_id == fid && agent.as_ref().is_none_or(|a| *a == o.agent_id) =>
                {
                    agent = Some(o.agent_id.clone());
                    if let Some(o) = self.take_offer(&oid.value) {
                        avail.add(&o.resources);
                    }
                }
                Some(_) => {
                    invalid = Some(format!(
                        "offer {} is for another framework or agent",
                        oid.value
                    ))
                }
                None => invalid = Some(format!("offer {} is no longer valid", oid.value)),
            }
        }
        // The offers' resources go back; the tasks launched below hold their part again.
        if let Some(a) = &agent {
            self.alloc.recover(fid, a, &avail);
            self.alloc_pending = true;
        }
        let agent_url = agent
            .as_ref()
            .and_then(|a| self.tables.agents.reachable(a))
            .map(|a| a.info.url.clone());
        let invalid = match (&invalid, &agent_url) {
            (Some(why), _) => Some(why.clone()),
            (None, None) => Some("the offer's agent is not reachable".to_string()),
            _ => None,
        };
        if let Some(why) = invalid {
            for t in tasks {
                let st = TaskStatus::new(
                    t.task_id.clone(),
                    TaskState::Dropped,
                    "SOURCE_MASTER",
                    Some(t.agent_id.clone()),
                )
                .with_message(why.clone())
                .with_reason("REASON_INVALID_OFFERS");
                self.record_rejected(fid, t, st, now);
            }
            return Ok(());
        }
        let (Some(agent), Some(url)) = (agent, agent_url) else {
            return Ok(()); // unreachable: `invalid` covers a missing agent
        };
        let mut batch: Vec<TaskInfo> = Vec::new();
        for mut t in tasks {
            let key = (fid.to_string(), t.task_id.value.clone());
            // Checked before anything else uses the id (sandbox, checkpoint and cgroup names)
            // or the amounts (a task must never run as if it had asked for nothing).
            let res = match crate::proto::validate::task_id(&t.task_id.value)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    crate::proto::validate::task_resources(&t.resources).map_err(|e| e.to_string())
                }) {
                Ok(res) => res,
                Err(why) => {
                    let st = task_error(&t, why);
                    self.record_rejected(fid, t, st, now);
                    continue;
                }
            };
            let user = self.task_user(fid, &t);
            let error = if self.tables.tasks.contains(&key) {
                Some(format!("task id {} is already in use", t.task_id.value))
            } else if t.agent_id.value != agent {
                Some(format!(
                    "task agent_id {} differs from the offer's agent {agent}",
                    t.agent_id.value
                ))
            } else if t.command.as_ref().and_then(|c| c.value.as_ref()).is_none() {
                Some("task has no command.value (custom executors are not supported)".to_string())
            } else if let Err(why) = &user {
                Some(why.clone())
            } else {
                avail.shortfall(&res)
            };
            if let Some(why) = error {
                let st = task_error(&t, why);
                self.record_rejected(fid, t, st, now);
                continue;
            }
            avail.subtract(&res);
            // The agent runs the task as the user decided here (see `access`).
            if let (Ok(u), Some(c)) = (user, t.command.as_mut()) {
                c.user = Some(u);
            }
            // The master keeps the parsed `res`; the verbose Mesos resource list goes to the agent
            // only (it is most of a task's memory at 100,000 tasks).
            let mut stored = t.clone();
            stored.resources = Vec::new();
            batch.push(t);
            let task = TaskRec::staging(fid, &agent, stored, res);
            self.apply(Change::TaskAdded { task, hold: true }, now);
        }
        if !batch.is_empty() {
            // One request per ACCEPT: all its tasks are on one agent.
            let ids: Vec<String> = batch.iter().map(|t| t.task_id.value.clone()).collect();
            let body = serde_json::json!({"framework_id": {"value": fid}, "tasks": batch});
            let fw = fid.to_string();
            self.push_to_agent(
                &url,
                "/internal/v1/launch",
                body,
                Some(move |error| super::MasterCommand::LaunchFailed {
                    framework_id: fw,
                    task_ids: ids,
                    error,
                }),
            );
        }
        // The unused rest went back above; it is filtered for this framework.
        let until = now + self.refuse_duration(refuse);
        self.alloc
            .decline(fid, &agent, &Resources::default(), Some(until));
        Ok(())
    }

    /// A task refused before launch: recorded so its update is delivered and acknowledged.
    fn record_rejected(&mut self, fid: &str, t: TaskInfo, st: TaskStatus, now: Instant) {
        let key = (fid.to_string(), t.task_id.value.clone());
        if self.tables.tasks.contains(&key) {
            // Duplicate id: report without disturbing the live task.
            self.conns.send(fid, Event::Update(st));
            return;
        }
        let agent_id = t.agent_id.value.clone();
        let res = Resources::from_mesos(&t.resources);
        let task = TaskRec::staging(fid, &agent_id, t, res);
        self.apply(Change::TaskAdded { task, hold: false }, now);
        self.update_task(&key, st, now);
    }

    fn kill(&mut self, fid: &str, task_id: &Id, now: Instant) {
        let key = (fid.to_string(), task_id.value.clone());
        let Some(t) = self.tables.tasks.get(&key) else {
            let st = TaskStatus {
                uuid: None,
                ..TaskStatus::new(task_id.clone(), TaskState::Unknown, "SOURCE_MASTER", None)
            }
            .with_message("task is not known to the master")
            .with_reason("REASON_RECONCILIATION");
            self.conns.send(fid, Event::Update(st));
            return;
        };
        if t.state.is_terminal() {
            return;
        }
        let agent_id = t.agent_id.clone();
        if !self.local.registered_here.contains(&agent_id)
            && self.tables.agents.reachable(&agent_id).is_some()
        {
            // Reachable as the log (or registry) has it, but not registered with this master
            // yet: a new leader gives agents one agent timeout to register again, and until then
            // has no credential to call it with, so a kill sent now was lost (found by
            // `tests/ha.rs`). It is remembered and ordered when the agent registers (its tasks
            // are checked then); the framework hears the end from the agent.
            self.apply(
                Change::TaskDoomed {
                    framework_id: key.0.clone(),
                    task_id: key.1.clone(),
                },
                now,
            );
            return;
        }
        if self.kill_on_agent(&key, None) {
            return;
        }
        // The agent is away: the task is killed when it re-registers, and the framework hears
        // TASK_GONE now so it can replace it.
        self.apply(
            Change::TaskDoomed {
                framework_id: key.0.clone(),
                task_id: key.1.clone(),
            },
            now,
        );
        let st = TaskStatus::new(
            task_id.clone(),
            TaskState::Gone,
            "SOURCE_MASTER",
            Some(Id::new(&agent_id)),
        )
        .with_message("killed while its agent is unreachable; it is stopped when the agent returns")
        .with_reason("REASON_AGENT_REMOVED");
        self.update_task(&key, st, now);
    }

    /// Explicit (task ids given) or implicit (none: all non-terminal tasks) reconciliation.
    /// Answers carry no uuid, so they need no acknowledgement. A task the master does not know
    /// is `TASK_UNKNOWN`, except while its agent (or, with no agent given, any agent) is
    /// recovered from the registry and not back yet: then nothing is said, as in Mesos, because
    /// the agent reports its tasks when it re-registers (answering `TASK_UNKNOWN` made the
    /// services framework launch a running instance again after a restart).
    fn reconcile(&mut self, fid: &str, tasks: &[ReconcileTask], now: Instant) {
        let coming_back =
            now.saturating_duration_since(self.started) < self.cfg.agent_reregister_timeout;
        let on_its_way = |agent: Option<&Id>| {
            coming_back
                && match agent {
                    Some(a) => self
                        .tables
                        .agents
                        .get(&a.value)
                        .is_some_and(|a| a.recovered),
                    None => self.tables.agents.iter().any(|a| a.recovered),
                }
        };
        let mut out = Vec::new();
        if tasks.is_empty() {
            for t in self
                .tables
                .tasks
                .iter()
                .filter(|t| t.framework_id == fid && !t.state.is_terminal())
            {
                out.push(reconciled(&t.info.task_id, t.state, Some(&t.agent_id)));
            }
        } else {
            for rt in tasks {
                let id = &rt.task_id;
                let key = (fid.to_string(), id.value.clone());
                let st = match self.tables.tasks.get(&key) {
                    Some(t) => reconciled(id, t.state, Some(&t.agent_id)),
                    None => match self
                        .tables
                        .tasks
                        .completed_of(fid)
                        .rev()
                        .find(|t| t.info.task_id == *id)
                    {
                        Some(t) => reconciled(id, t.state, Some(&t.agent_id)),
                        None if on_its_way(rt.agent_id.as_ref()) => continue,
                        None => reconciled(id, TaskState::Unknown, None),
                    },
                };
                out.push(st);
            }
        }
        for st in out {
            self.conns.send(fid, Event::Update(st));
        }
    }
}

/// The `TASK_ERROR` update of a task the master refuses to launch, saying why.
fn task_error(t: &TaskInfo, why: String) -> TaskStatus {
    TaskStatus::new(
        t.task_id.clone(),
        TaskState::Error,
        "SOURCE_MASTER",
        Some(t.agent_id.clone()),
    )
    .with_message(why)
    .with_reason("REASON_TASK_INVALID")
}

fn reconciled(task_id: &Id, state: TaskState, agent: Option<&String>) -> TaskStatus {
    TaskStatus {
        uuid: None,
        ..TaskStatus::new(task_id.clone(), state, "SOURCE_MASTER", agent.map(Id::new))
    }
    .with_reason("REASON_RECONCILIATION")
}
