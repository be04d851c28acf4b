//! Frameworks: SUBSCRIBE (and failover), the other scheduler calls, disconnection and the
//! failover timeout, TEARDOWN.

use super::command::{CallError, Subscription};
use super::state::{FrameworkRec, STREAM_BUFFER, State, Stream, TaskKey, TaskRec};
use crate::proto::scheduler::{Call, Event, FrameworkInfo, Operation};
use crate::proto::{Id, Resources, TaskInfo, TaskState, TaskStatus};
use serde_json::Value;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

impl State {
    pub(super) fn subscribe(
        &mut self,
        info_raw: Value,
        info: FrameworkInfo,
        framework_id: Option<String>,
        principal: Option<String>,
        now: Instant,
    ) -> Result<Subscription, CallError> {
        if let (Some(p), Some(claimed)) = (&principal, &info.principal)
            && p != claimed
        {
            return Err(CallError::Forbidden(format!(
                "framework_info.principal {claimed:?} does not match the authenticated principal {p:?}"
            )));
        }
        let id = framework_id
            .or_else(|| info.id.as_ref().map(|i| i.value.clone()))
            .filter(|v| !v.is_empty());
        if let Some(id) = &id {
            if self.removed_frameworks.contains(id) {
                return Err(CallError::Forbidden(format!(
                    "framework {id} has been torn down"
                )));
            }
            match self.frameworks.get(id) {
                Some(f) if f.principal.is_some() && f.principal != principal => {
                    return Err(CallError::Forbidden(format!(
                        "framework {id} belongs to another principal"
                    )));
                }
                Some(_) => {}
                // Ids are issued by this master (and kept in the registry); accepting a
                // client-chosen one would let it claim a torn-down framework's id (once it has
                // left the bounded removed list) and adopt its orphaned tasks.
                None => {
                    return Err(CallError::Forbidden(format!(
                        "framework {id} is not known to this master: framework ids are assigned by the master; subscribe without framework_id to get a new one"
                    )));
                }
            }
        }
        let id = match id {
            Some(id) => id,
            None => {
                self.check_framework_limit(principal.as_deref())?;
                new_framework_id()
            }
        };
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let overflow = tokio_util::sync::CancellationToken::new();
        let stream_id = uuid::Uuid::new_v4().to_string();
        let _ = tx.try_send(Event::Subscribed {
            framework_id: Id::new(&id),
            heartbeat_interval_seconds: self.cfg.framework_heartbeat.as_secs_f64(),
            master_id: self.master_id.clone(),
        });
        let roles = info.effective_roles();
        let failover_timeout = self.failover_timeout(&info);
        let mut info_raw = info_raw;
        if let Some(obj) = info_raw.as_object_mut() {
            obj.insert("id".into(), serde_json::json!({"value": id}));
        }
        let failover = self.frameworks.contains_key(&id);
        tracing::info!(framework = %id, name = %info.name, failover, "framework subscribed");
        // Replacing the record drops the old stream's sender, which ends the old stream.
        let registered_time = self
            .frameworks
            .get(&id)
            .map(|f| f.registered_time)
            .filter(|t| *t > 0.0)
            .unwrap_or_else(crate::proto::now_secs);
        self.frameworks.insert(
            id.clone(),
            FrameworkRec {
                id: id.clone(),
                info_raw,
                info,
                principal,
                stream: Some(Stream {
                    id: stream_id.clone(),
                    tx,
                    overflow: overflow.clone(),
                }),
                disconnected_at: None,
                failover_timeout,
                registered_time,
            },
        );
        self.alloc.add_framework(&id, roles);
        self.alloc.set_framework_active(&id, true);
        // Offers made to the previous connection are void.
        let stale: Vec<String> = self
            .offers
            .iter()
            .filter(|(_, o)| o.framework_id == id)
            .map(|(oid, _)| oid.clone())
            .collect();
        for oid in stale {
            if let Some(o) = self.offers.remove(&oid) {
                self.alloc
                    .recover(&o.framework_id, &o.agent_id, &o.resources);
            }
        }
        // Resend every unacknowledged update on the new stream right away.
        for k in self.unacked.iter().filter(|k| k.0 == id) {
            if let Some(t) = self.tasks.get_mut(k) {
                t.last_sent = None;
            }
        }
        self.registry_dirty = true;
        self.alloc_pending = true;
        // SUBSCRIBED is already queued, so the resent updates follow it on the stream.
        self.retry_updates(now);
        Ok(Subscription {
            framework_id: id,
            stream_id,
            events: rx,
            overflow,
        })
    }

    /// A principal may hold only `max_frameworks_per_principal` frameworks (connected or
    /// within their failover timeout), so one client cannot exhaust the master.
    fn check_framework_limit(&self, principal: Option<&str>) -> Result<(), CallError> {
        let max = self.cfg.max_frameworks_per_principal;
        let have = self
            .frameworks
            .values()
            .filter(|f| f.principal.as_deref() == principal)
            .count();
        if have < max {
            return Ok(());
        }
        let who = principal.map_or("frameworks without a principal".to_string(), |p| {
            format!("principal {p:?}")
        });
        Err(CallError::Forbidden(format!(
            "{who} already registered {have} frameworks (max_frameworks_per_principal is {max}): tear one down, or re-subscribe with an existing framework id"
        )))
    }

    pub(super) fn stream_closed(&mut self, framework_id: &str, stream_id: &str, now: Instant) {
        let Some(f) = self.frameworks.get_mut(framework_id) else {
            return;
        };
        if f.stream.as_ref().map(|s| s.id.as_str()) != Some(stream_id) {
            return; // an older stream, already replaced
        }
        tracing::info!(framework = %framework_id, "framework disconnected; failover timeout {:?}", f.failover_timeout);
        f.stream = None;
        f.disconnected_at = Some(now);
        self.alloc.set_framework_active(framework_id, false);
        let ids: Vec<String> = self
            .offers
            .iter()
            .filter(|(_, o)| o.framework_id == framework_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.rescind_offer(&id);
        }
    }

    pub(super) fn check_frameworks(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .frameworks
            .values()
            .filter(|f| {
                f.disconnected_at
                    .is_some_and(|at| now.saturating_duration_since(at) >= f.failover_timeout)
            })
            .map(|f| f.id.clone())
            .collect();
        for id in expired {
            tracing::warn!(framework = %id, "failover timeout expired: tearing down");
            self.teardown(&id);
        }
    }

    /// Removes a framework: its tasks are killed, its offers withdrawn, its id retired.
    pub(super) fn teardown(&mut self, framework_id: &str) {
        let ids: Vec<String> = self
            .offers
            .iter()
            .filter(|(_, o)| o.framework_id == framework_id)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.rescind_offer(&id);
        }
        let keys: Vec<TaskKey> = self
            .tasks
            .keys()
            .filter(|k| k.0 == framework_id)
            .cloned()
            .collect();
        for k in keys {
            self.release_resources(&k);
            self.unacked.remove(&k);
            if let Some(mut t) = self.remove_task(&k) {
                if !t.state.is_terminal() {
                    match self.agents.get(&t.agent_id) {
                        Some(a) if a.reachable => {
                            let body = serde_json::json!({"framework_id": {"value": framework_id}, "task_id": t.info.task_id});
                            self.push_to_agent(
                                &a.url,
                                "/internal/v1/kill",
                                body,
                                None::<fn(String) -> _>,
                            );
                        }
                        _ => {} // killed when the agent re-registers: its framework is unknown then
                    }
                    t.state = TaskState::Killed;
                }
                *self.completed_by_state.entry(t.state.name()).or_default() += 1;
                self.completed_tasks.push(t);
            }
        }
        self.frameworks.remove(framework_id);
        self.alloc.remove_framework(framework_id);
        self.removed_frameworks.push_back(framework_id.to_string());
        while self.removed_frameworks.len() > self.cfg.max_completed_frameworks {
            if let Some(old) = self.removed_frameworks.pop_front() {
                self.completed_tasks.forget(&old);
            }
        }
        self.registry_dirty = true;
    }

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
        let f = self
            .frameworks
            .get(&fid)
            .ok_or_else(|| CallError::BadRequest(format!("framework {fid} is not subscribed")))?;
        let current = f.stream.as_ref().map(|s| s.id.as_str());
        if current.is_none() || current != stream_id.as_deref() {
            return Err(CallError::BadRequest(format!(
                "Mesos-Stream-Id {:?} is not the current subscription of framework {fid}",
                stream_id.unwrap_or_default()
            )));
        }
        let missing =
            |what: &str| CallError::BadRequest(format!("{} needs the {what} field", call.kind));
        match call.kind.as_str() {
            "TEARDOWN" => self.teardown(&fid),
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
                    if let Some(o) = self.offers.remove(&oid.value) {
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
                self.reconcile(
                    &fid,
                    &rec.tasks
                        .iter()
                        .map(|t| t.task_id.clone())
                        .collect::<Vec<_>>(),
                );
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
                    if let Some(o) = self.offers.remove(&oid.value) {
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
        let agent_url = agent
            .as_ref()
            .and_then(|a| self.agents.get(a))
            .filter(|a| a.reachable)
            .map(|a| a.url.clone());
        let invalid = match (&invalid, &agent_url) {
            (Some(why), _) => Some(why.clone()),
            (None, None) => Some("the offer's agent is not reachable".to_string()),
            _ => None,
        };
        if let Some(why) = invalid {
            if let Some(a) = &agent {
                self.alloc.recover(fid, a, &avail);
                self.alloc_pending = true;
            }
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
            let error = if self.tasks.contains_key(&key) {
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
            self.insert_task(
                key.clone(),
                TaskRec {
                    framework_id: fid.to_string(),
                    agent_id: agent.clone(),
                    info: stored,
                    resources: res,
                    state: TaskState::Staging,
                    holds_resources: true, // already allocated as part of the offer
                    statuses: Vec::new(),
                    pending: Default::default(),
                    last_sent: None,
                },
            );
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
        // The unused rest goes back, filtered for this framework.
        let until = now + self.refuse_duration(refuse);
        self.alloc.decline(fid, &agent, &avail, Some(until));
        self.alloc_pending = true;
        Ok(())
    }

    /// A task refused before launch: recorded so its update is delivered and acknowledged.
    fn record_rejected(&mut self, fid: &str, t: TaskInfo, st: TaskStatus, now: Instant) {
        let key = (fid.to_string(), t.task_id.value.clone());
        if self.tasks.contains_key(&key) {
            // Duplicate id: report without disturbing the live task.
            self.send_to_framework(fid, Event::Update(st));
            return;
        }
        self.insert_task(
            key.clone(),
            TaskRec {
                framework_id: fid.to_string(),
                agent_id: t.agent_id.value.clone(),
                resources: Resources::from_mesos(&t.resources),
                info: t,
                state: TaskState::Staging,
                holds_resources: false,
                statuses: Vec::new(),
                pending: Default::default(),
                last_sent: None,
            },
        );
        self.update_task(&key, st, now);
    }

    fn kill(&mut self, fid: &str, task_id: &Id, now: Instant) {
        let key = (fid.to_string(), task_id.value.clone());
        let Some(t) = self.tasks.get(&key) else {
            let st = TaskStatus {
                uuid: None,
                ..TaskStatus::new(task_id.clone(), TaskState::Unknown, "SOURCE_MASTER", None)
            }
            .with_message("task is not known to the master")
            .with_reason("REASON_RECONCILIATION");
            self.send_to_framework(fid, Event::Update(st));
            return;
        };
        if t.state.is_terminal() {
            return;
        }
        match self.agents.get(&t.agent_id) {
            Some(a) if a.reachable => {
                let body = serde_json::json!({"framework_id": {"value": fid}, "task_id": task_id});
                let url = a.url.clone();
                self.push_to_agent(&url, "/internal/v1/kill", body, None::<fn(String) -> _>);
            }
            _ => {
                // The agent is away: the task is killed when it re-registers, and the framework
                // hears TASK_GONE now so it can replace it.
                self.doomed.insert(key.clone());
                let st = TaskStatus::new(
                    task_id.clone(),
                    TaskState::Gone,
                    "SOURCE_MASTER",
                    Some(Id::new(&t.agent_id)),
                )
                .with_message(
                    "killed while its agent is unreachable; it is stopped when the agent returns",
                )
                .with_reason("REASON_AGENT_REMOVED");
                self.update_task(&key, st, now);
            }
        }
    }

    /// Explicit (task ids given) or implicit (none: all non-terminal tasks) reconciliation.
    /// Answers carry no uuid, so they need no acknowledgement.
    fn reconcile(&mut self, fid: &str, task_ids: &[Id]) {
        let mut out = Vec::new();
        if task_ids.is_empty() {
            for t in self
                .tasks
                .values()
                .filter(|t| t.framework_id == fid && !t.state.is_terminal())
            {
                out.push(reconciled(&t.info.task_id, t.state, Some(&t.agent_id)));
            }
        } else {
            for id in task_ids {
                let key = (fid.to_string(), id.value.clone());
                let st = match self.tasks.get(&key) {
                    Some(t) => reconciled(id, t.state, Some(&t.agent_id)),
                    None => match self
                        .completed_tasks
                        .of(fid)
                        .rev()
                        .find(|t| t.info.task_id == *id)
                    {
                        Some(t) => reconciled(id, t.state, Some(&t.agent_id)),
                        None => reconciled(id, TaskState::Unknown, None),
                    },
                };
                out.push(st);
            }
        }
        for st in out {
            self.send_to_framework(fid, Event::Update(st));
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

/// A framework id that is unique for the life of the cluster: a fresh uuid v4 (never derived
/// from a count, which repeats once a framework is removed), in Mesos' `<uuid>-0000` shape.
pub(super) fn new_framework_id() -> String {
    format!("{}-0000", uuid::Uuid::new_v4())
}

fn reconciled(task_id: &Id, state: TaskState, agent: Option<&String>) -> TaskStatus {
    TaskStatus {
        uuid: None,
        ..TaskStatus::new(task_id.clone(), state, "SOURCE_MASTER", agent.map(Id::new))
    }
    .with_reason("REASON_RECONCILIATION")
}
