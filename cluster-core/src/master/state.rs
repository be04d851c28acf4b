//! The master's state and its owner loop. Only this task touches the state: handlers send
//! [`MasterCommand`]s, I/O runs in tracked tasks whose outcomes come back as commands.

use super::MasterConfig;
use super::command::{MasterCommand, MetricsSnapshot};
use super::drain::DrainInfo;
use super::registry::Registry;
use crate::allocator::Allocator;
use crate::proto::internal::HeartbeatAck;
use crate::proto::scheduler::{Event, FrameworkInfo};
use crate::proto::{Attribute, Resources, TaskInfo, TaskState, TaskStatus};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often the owner wakes up for timeouts, retries and pending allocations.
const HOUSEKEEPING: Duration = Duration::from_millis(100);
/// Events buffered per subscription. A framework that falls further behind is not silently
/// skipped: its stream ends with an ERROR event and it must re-subscribe.
/// The channel allocates as it fills, so the bound costs nothing until a framework lags.
pub const STREAM_BUFFER: usize = 100_000;

pub(super) struct AgentRec {
    pub id: String,
    pub hostname: String,
    pub url: String,
    pub total: Resources,
    pub attributes: Vec<Attribute>,
    pub public: bool,
    pub last_seen: Instant,
    pub reachable: bool,
    /// Loaded from the registry and not re-registered since this master started.
    pub recovered: bool,
    pub registered_time: f64,
    pub version: String,
    /// The operator took it out of offers (`DEACTIVATE_AGENT`, `DRAIN_AGENT`).
    pub deactivated: bool,
    /// Drain in progress or finished.
    pub drain: Option<DrainInfo>,
    /// Set when the agent is not root: every task there runs as this user.
    pub task_user: Option<String>,
}

pub(super) struct Stream {
    pub id: String,
    pub tx: mpsc::Sender<Event>,
    /// Cancelled when an event did not fit: the stream writer then sends ERROR and ends the
    /// stream, so the framework learns it missed events and re-subscribes.
    pub overflow: CancellationToken,
}

impl Stream {
    /// Queues an event for the framework. A full queue ends the stream with an ERROR rather than
    /// dropping the event unnoticed; false means the event was not queued.
    pub fn send(&self, framework_id: &str, event: Event) -> bool {
        match self.tx.try_send(event) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.overflow.is_cancelled() {
                    tracing::warn!(framework = %framework_id, "framework is {STREAM_BUFFER} events behind: ending its stream with an error");
                    self.overflow.cancel();
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

pub(super) struct FrameworkRec {
    pub id: String,
    pub info_raw: Value,
    pub info: FrameworkInfo,
    pub principal: Option<String>,
    pub stream: Option<Stream>,
    pub disconnected_at: Option<Instant>,
    pub failover_timeout: Duration,
    pub registered_time: f64,
}

/// Task key: (framework id, task id).
pub(super) type TaskKey = (String, String);

pub(super) struct TaskRec {
    pub framework_id: String,
    pub agent_id: String,
    pub info: TaskInfo,
    pub resources: Resources,
    pub state: TaskState,
    /// Resources are counted in the allocator (false once terminal or unreachable).
    pub holds_resources: bool,
    pub statuses: Vec<TaskStatus>,
    /// Updates to deliver, head first; the head is resent until acknowledged.
    pub pending: VecDeque<TaskStatus>,
    pub last_sent: Option<Instant>,
}

/// Completed tasks kept for the operator API and reconciliation, at most `max_per_framework` of
/// each framework (oldest dropped first); a removed framework's go when it is forgotten.
#[derive(Default)]
pub(super) struct CompletedTasks {
    by_framework: HashMap<String, VecDeque<TaskRec>>,
    max_per_framework: usize,
}

impl CompletedTasks {
    pub fn new(max_per_framework: usize) -> Self {
        CompletedTasks {
            by_framework: HashMap::new(),
            max_per_framework,
        }
    }

    pub fn push(&mut self, t: TaskRec) {
        if self.max_per_framework == 0 {
            return;
        }
        let q = self.by_framework.entry(t.framework_id.clone()).or_default();
        q.push_back(t);
        while q.len() > self.max_per_framework {
            q.pop_front();
        }
    }

    /// A framework's completed tasks, oldest first.
    pub fn of(&self, framework_id: &str) -> impl DoubleEndedIterator<Item = &TaskRec> {
        self.by_framework.get(framework_id).into_iter().flatten()
    }

    /// Every completed task.
    pub fn iter(&self) -> impl Iterator<Item = &TaskRec> {
        self.by_framework.values().flatten()
    }

    /// Forgets a framework's completed tasks.
    pub fn forget(&mut self, framework_id: &str) {
        self.by_framework.remove(framework_id);
    }

    /// How many are kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_framework.values().map(VecDeque::len).sum()
    }
}

pub(super) struct OfferRec {
    pub framework_id: String,
    pub agent_id: String,
    pub resources: Resources,
    pub created: Instant,
}

pub(super) struct State {
    pub cfg: MasterConfig,
    pub master_id: String,
    pub alloc: Allocator,
    pub agents: BTreeMap<String, AgentRec>,
    pub frameworks: BTreeMap<String, FrameworkRec>,
    pub removed_frameworks: VecDeque<String>,
    pub tasks: HashMap<TaskKey, TaskRec>,
    /// Index: agent id -> its tasks in `tasks` (registration and agent loss must not scan all tasks).
    pub agent_tasks: HashMap<String, HashSet<TaskKey>>,
    pub completed_tasks: CompletedTasks,
    /// Tasks with updates waiting for acknowledgement.
    pub unacked: HashSet<TaskKey>,
    /// Tasks killed while their agent was unreachable: killed when it re-registers.
    pub doomed: HashSet<TaskKey>,
    pub offers: HashMap<String, OfferRec>,
    /// Agents drained with `mark_gone`: never admitted again.
    pub gone_agents: HashSet<String>,
    pub registry: Registry,
    pub http: reqwest::Client,
    /// Agent URL -> the bearer token that agent run asked to be called with (never persisted:
    /// a restarted agent sends a new one when it registers again).
    pub agent_call_tokens: HashMap<String, String>,
    pub tx: mpsc::Sender<MasterCommand>,
    pub io: TaskTracker,
    pub alloc_pending: bool,
    /// The registry changed; written at the next housekeeping tick (at most 100 ms later), so a
    /// burst of registrations costs one write.
    pub registry_dirty: bool,
    pub next_alloc: Instant,
    pub metrics: MetricsSnapshot,
    pub completed_by_state: BTreeMap<&'static str, u64>,
}

impl State {
    pub fn new(
        cfg: MasterConfig,
        registry: Registry,
        tx: mpsc::Sender<MasterCommand>,
        http: reqwest::Client,
    ) -> Self {
        let now = Instant::now();
        // The newest are at the end; older ones beyond the limit are forgotten.
        let removed = &registry.removed_frameworks;
        let removed_frameworks = removed
            .iter()
            .skip(removed.len().saturating_sub(cfg.max_completed_frameworks))
            .cloned()
            .collect();
        let completed_tasks = CompletedTasks::new(cfg.max_completed_tasks_per_framework);
        let mut s = State {
            alloc: Allocator::new(cfg.role_weights.clone()),
            master_id: uuid::Uuid::new_v4().to_string(),
            cfg,
            agents: BTreeMap::new(),
            frameworks: BTreeMap::new(),
            removed_frameworks,
            tasks: HashMap::new(),
            agent_tasks: HashMap::new(),
            completed_tasks,
            unacked: HashSet::new(),
            doomed: HashSet::new(),
            offers: HashMap::new(),
            gone_agents: registry.gone_agents.iter().cloned().collect(),
            registry,
            http,
            agent_call_tokens: HashMap::new(),
            tx,
            io: TaskTracker::new(),
            alloc_pending: false,
            registry_dirty: false,
            next_alloc: now,
            metrics: MetricsSnapshot::default(),
            completed_by_state: BTreeMap::new(),
        };
        s.recover_from_registry(now);
        s
    }

    /// Agents from the registry wait (unreachable) for their re-registration; frameworks wait
    /// (disconnected) for their failover.
    fn recover_from_registry(&mut self, now: Instant) {
        for a in self.registry.agents.clone() {
            self.alloc.add_agent(&a.id, a.resources.clone(), a.public);
            self.alloc.set_agent_active(&a.id, false);
            self.alloc
                .set_agent_hold(&a.id, Self::hold_of(a.deactivated, a.drain_info.as_ref()));
            self.agents.insert(
                a.id.clone(),
                AgentRec {
                    id: a.id,
                    hostname: a.hostname,
                    url: a.url,
                    total: a.resources,
                    attributes: a.attributes,
                    public: a.public,
                    last_seen: now,
                    reachable: false,
                    recovered: true,
                    registered_time: 0.0,
                    version: String::new(),
                    deactivated: a.deactivated,
                    drain: a.drain_info,
                    task_user: None,
                },
            );
        }
        for f in self.registry.frameworks.clone() {
            let info: FrameworkInfo = serde_json::from_value(f.info.clone()).unwrap_or_default();
            let roles = info.effective_roles();
            self.alloc.add_framework(&f.id, roles);
            self.alloc.set_framework_active(&f.id, false);
            let failover_timeout = self.failover_timeout(&info);
            self.frameworks.insert(
                f.id.clone(),
                FrameworkRec {
                    id: f.id,
                    info_raw: f.info,
                    info,
                    principal: f.principal,
                    stream: None,
                    disconnected_at: Some(now),
                    failover_timeout,
                    registered_time: 0.0,
                },
            );
        }
    }

    /// The framework's failover timeout, bounded by `max_failover_timeout` so that no client
    /// can make the master keep its tasks and record for ever.
    pub fn failover_timeout(&self, info: &FrameworkInfo) -> Duration {
        info.failover_timeout
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(1e9)))
            .unwrap_or(self.cfg.default_failover_timeout)
            .min(self.cfg.max_failover_timeout)
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<MasterCommand>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(HOUSEKEEPING);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.handle(cmd, Instant::now()),
                    None => break,
                },
                _ = tick.tick() => self.housekeeping(Instant::now()),
            }
        }
        if self.registry_dirty {
            self.save_registry();
        }
        // Dropping the streams' senders ends every subscription stream.
        for f in self.frameworks.values_mut() {
            f.stream = None;
        }
        self.io.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.io.wait()).await;
    }

    fn handle(&mut self, cmd: MasterCommand, now: Instant) {
        match cmd {
            MasterCommand::Subscribe {
                info_raw,
                info,
                framework_id,
                principal,
                reply,
            } => {
                let r = self
                    .authorize_subscribe(&info, framework_id.as_deref(), principal.as_deref())
                    .and_then(|()| self.subscribe(info_raw, info, framework_id, principal, now));
                let _ = reply.send(r);
            }
            MasterCommand::Call {
                call,
                principal,
                stream_id,
                reply,
            } => {
                let r = self
                    .authorize_call(&call, principal.as_deref())
                    .and_then(|()| self.call(call, stream_id, now));
                let _ = reply.send(r);
            }
            MasterCommand::StreamClosed {
                framework_id,
                stream_id,
            } => self.stream_closed(&framework_id, &stream_id, now),
            MasterCommand::RegisterAgent { msg, reply } => {
                let r = self.register_agent(*msg, now);
                let _ = reply.send(r);
            }
            MasterCommand::Heartbeat { agent_id, reply } => {
                let ack = match self.agents.get_mut(&agent_id) {
                    Some(a) if a.reachable => {
                        a.last_seen = now;
                        Some(HeartbeatAck {
                            deactivated: a.deactivated,
                            drain: a.drain.as_ref().map(|d| d.state.name().to_string()),
                        })
                    }
                    _ => None,
                };
                let _ = reply.send(ack);
            }
            MasterCommand::AgentStatus { msg, reply } => {
                let known = self
                    .agents
                    .get(&msg.agent_id.value)
                    .is_some_and(|a| a.reachable);
                if known {
                    self.agent_status(*msg, now);
                }
                let _ = reply.send(known);
            }
            MasterCommand::LaunchFailed {
                framework_id,
                task_ids,
                error,
            } => {
                for task_id in task_ids {
                    let key = (framework_id.clone(), task_id);
                    let Some(t) = self.tasks.get(&key) else {
                        continue;
                    };
                    if t.state != TaskState::Staging {
                        continue;
                    }
                    let st = TaskStatus::new(
                        t.info.task_id.clone(),
                        TaskState::Dropped,
                        "SOURCE_MASTER",
                        Some(t.info.agent_id.clone()),
                    )
                    .with_message(format!("agent did not accept the task: {error}"))
                    .with_reason("REASON_AGENT_DISCONNECTED");
                    self.update_task(&key, st, now);
                }
            }
            MasterCommand::Operator {
                query,
                viewer,
                reply,
            } => {
                let _ = reply.send(self.operator(query, &viewer));
            }
            MasterCommand::Teardown {
                framework_id,
                principal,
                reply,
            } => {
                let _ = reply.send(self.operator_teardown(&framework_id, principal.as_deref()));
            }
            MasterCommand::Agent { call, reply } => {
                let _ = reply.send(self.agent_call(call));
            }
            MasterCommand::Metrics { reply } => {
                let _ = reply.send(self.metrics_snapshot());
            }
        }
    }

    fn housekeeping(&mut self, now: Instant) {
        self.check_agents(now);
        self.check_frameworks(now);
        self.expire_offers(now);
        self.retry_updates(now);
        self.check_drains();
        if self.alloc_pending || now >= self.next_alloc {
            self.allocate(now);
        }
        if self.registry_dirty {
            self.registry_dirty = false;
            self.save_registry();
        }
    }

    /// Persists agents and frameworks. A failed write is logged, not fatal: the in-memory state is
    /// still right and the next change retries the write.
    pub fn save_registry(&mut self) {
        self.registry.agents = self
            .agents
            .values()
            .map(|a| super::registry::StoredAgent {
                id: a.id.clone(),
                hostname: a.hostname.clone(),
                url: a.url.clone(),
                resources: a.total.clone(),
                attributes: a.attributes.clone(),
                public: a.public,
                deactivated: a.deactivated,
                drain_info: a.drain.clone(),
            })
            .collect();
        let mut gone: Vec<String> = self.gone_agents.iter().cloned().collect();
        gone.sort();
        self.registry.gone_agents = gone;
        self.registry.frameworks = self
            .frameworks
            .values()
            .map(|f| super::registry::StoredFramework {
                id: f.id.clone(),
                info: f.info_raw.clone(),
                principal: f.principal.clone(),
            })
            .collect();
        self.registry.removed_frameworks = self.removed_frameworks.iter().cloned().collect();
        if let Err(e) = self.registry.save() {
            tracing::error!(error = %dc_support::error::chain(&e), "cannot save the registry");
        }
    }

    /// Sends a request to an agent from a tracked task; on failure `on_error` (with the error
    /// text filled in by `make`) comes back as a command.
    pub fn push_to_agent<F>(&self, agent_url: &str, path: &str, body: Value, on_error: Option<F>)
    where
        F: FnOnce(String) -> MasterCommand + Send + 'static,
    {
        let token = self.agent_call_tokens.get(agent_url).cloned();
        let req = self
            .http
            .post(format!("{}{}", agent_url.trim_end_matches('/'), path))
            .json(&body);
        let tx = self.tx.clone();
        self.io.spawn(async move {
            // Only agents registered with this master run are called, and each sent its token.
            let result = match token {
                None => Err(
                    "no credential for this agent: it has not registered with this master"
                        .to_string(),
                ),
                Some(t) => match req.bearer_auth(t).send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("agent answered {}", r.status())),
                    Err(e) => Err(dc_support::error::chain(&e)),
                },
            };
            if let Err(error) = result {
                tracing::warn!(%error, "request to agent failed");
                if let Some(f) = on_error {
                    let _ = tx.send(f(error)).await;
                }
            }
        });
    }

    /// Adds a task (keeps the agent index).
    pub fn insert_task(&mut self, key: TaskKey, rec: TaskRec) {
        self.agent_tasks
            .entry(rec.agent_id.clone())
            .or_default()
            .insert(key.clone());
        self.tasks.insert(key, rec);
    }

    /// Removes a task (keeps the agent index).
    pub fn remove_task(&mut self, key: &TaskKey) -> Option<TaskRec> {
        let rec = self.tasks.remove(key)?;
        if let Some(set) = self.agent_tasks.get_mut(&rec.agent_id) {
            set.remove(key);
            if set.is_empty() {
                self.agent_tasks.remove(&rec.agent_id);
            }
        }
        Some(rec)
    }

    /// The tasks on an agent.
    pub fn tasks_on(&self, agent_id: &str) -> Vec<TaskKey> {
        self.agent_tasks
            .get(agent_id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn metrics_snapshot(&self) -> MetricsSnapshot {
        let mut m = self.metrics.clone();
        m.agents_reachable = self.agents.values().filter(|a| a.reachable).count() as u64;
        m.agents_unreachable = self.agents.len() as u64 - m.agents_reachable;
        m.frameworks_connected = self
            .frameworks
            .values()
            .filter(|f| f.stream.is_some())
            .count() as u64;
        m.frameworks_total = self.frameworks.len() as u64;
        m.offers_outstanding = self.offers.len() as u64;
        m.status_updates_unacked = self.unacked.len() as u64;
        let mut by_state = self.completed_by_state.clone();
        for t in self.tasks.values() {
            *by_state.entry(t.state.name()).or_default() += 1;
        }
        m.tasks_by_state = by_state.into_iter().collect();
        m
    }
}
