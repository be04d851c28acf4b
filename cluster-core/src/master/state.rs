//! The owner loop. Only this task touches the master's state: handlers send [`MasterCommand`]s,
//! I/O runs in tracked tasks whose outcomes come back as commands.
//!
//! The state is the replicated [`Tables`], changed only through [`State::apply`] (one
//! [`Change`] at a time, then the allocator and event delivery follow its [`Applied`] outcome),
//! plus what belongs to this master process alone: offers, the allocator's bookkeeping,
//! framework connections, heartbeat and delivery times, the agents' call tokens.

use super::MasterConfig;
use super::command::{MasterCommand, MetricsSnapshot};
use super::local::Local;
use super::offers::{AllocStats, Offers};
use super::registry::{AfterWrite, Registry, Writer};
use super::replicated::{CommitResult, Replicated, Reply, answer};
use super::streams::Connections;
use super::tables::{self, Applied, Change, Tables, TaskKey};
use crate::allocator::{AgentReason, Allocator, FrameworkReason};
use crate::proto::scheduler::Event;
use crate::proto::{Id, TaskState, TaskStatus};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often the owner wakes up for timeouts, retries and pending allocations.
const HOUSEKEEPING: Duration = Duration::from_millis(100);

/// The registry as the owner loop sees it: dirty or not, and the replies waiting for a write.
pub(super) struct Persist {
    writer: Option<Writer>,
    /// Changes not yet handed to the writer.
    dirty: bool,
    /// Counts registry-changing changes, so a command can tell whether it made one.
    version: u64,
    waiting: Vec<AfterWrite>,
}

pub(super) struct State {
    pub(super) cfg: MasterConfig,
    /// Access rules, shared with view snapshots.
    pub(super) acls: Arc<crate::acl::Acls>,
    pub(super) master_id: String,
    pub(super) tables: Tables,
    pub(super) alloc: Allocator,
    pub(super) offers: Offers,
    pub(super) conns: Connections,
    pub(super) local: Local,
    pub(super) persist: Persist,
    pub(super) stats: AllocStats,
    /// The replicated group's part (none: a single master with its registry).
    pub(super) repl: Option<Replicated>,
    pub(super) http: reqwest::Client,
    pub(super) tx: mpsc::Sender<MasterCommand>,
    pub(super) io: TaskTracker,
    pub(super) alloc_pending: bool,
    pub(super) next_alloc: Instant,
    /// When this master process started (recovered agents are on their way back for
    /// [`super::MasterConfig::agent_reregister_timeout`] from here).
    pub(super) started: Instant,
    /// Service discovery: snapshots for DNS and `/v1/services` (discovery_feed.rs).
    pub(super) discovery: super::discovery_feed::Feed,
}

impl State {
    /// The state recovered from `registry`; `writer` (none in tests) persists it from now on.
    pub fn new(
        cfg: MasterConfig,
        registry: Registry,
        writer: Option<Writer>,
        tx: mpsc::Sender<MasterCommand>,
        http: reqwest::Client,
    ) -> Self {
        let now = Instant::now();
        let mut tables = Tables::new(
            cfg.max_completed_frameworks,
            cfg.max_completed_tasks_per_framework,
        );
        tables.recover(&registry, |info| failover_timeout(&cfg, info));
        let mut s = State {
            discovery: super::discovery_feed::Feed::new(
                cfg.discovery.masters.clone(),
                cfg.acls.default_task_user(),
            ),
            alloc: Allocator::new(cfg.role_weights.clone()),
            acls: Arc::new(cfg.acls.clone()),
            master_id: uuid::Uuid::new_v4().to_string(),
            cfg,
            tables,
            offers: Offers::default(),
            conns: Connections::default(),
            local: Local::default(),
            persist: Persist {
                writer,
                dirty: false,
                version: 0,
                waiting: Vec::new(),
            },
            stats: AllocStats::default(),
            repl: None,
            http,
            tx,
            io: TaskTracker::new(),
            alloc_pending: false,
            next_alloc: now,
            started: now,
        };
        // Recovered agents wait (unreachable) for their re-registration, frameworks
        // (disconnected) for their failover.
        for a in s.tables.agents.iter() {
            s.alloc
                .add_agent(&a.info.id, a.info.total.clone(), a.info.public);
            s.alloc.set_agent_active(&a.info.id, false);
            s.alloc.set_agent_hold(&a.info.id, a.hold());
        }
        for f in s.tables.frameworks.iter() {
            s.alloc.add_framework(&f.id, f.info.effective_roles());
            s.alloc.set_framework_active(&f.id, false);
            s.conns.away_since(&f.id, now);
        }
        s
    }

    /// Makes this state a replicated master's, starting as a follower (its tables come from
    /// the log when it takes the lead).
    pub fn replicated(mut self, repl: Replicated) -> Self {
        self.conns = Connections::holding();
        self.repl = Some(repl);
        self
    }

    /// The framework's failover timeout, bounded by `max_failover_timeout`.
    pub fn failover_timeout(&self, info: &crate::proto::scheduler::FrameworkInfo) -> Duration {
        failover_timeout(&self.cfg, info)
    }

    /// Applies one change to the tables, then brings the allocator, event delivery and the
    /// registry in line with what it did. The only way cluster state changes.
    pub(super) fn apply(&mut self, change: Change, now: Instant) -> Applied {
        let applied = tables::apply(&mut self.tables, &change);
        if !applied.effective {
            return applied;
        }
        self.discovery.touched(&change);
        for h in &applied.released {
            self.alloc
                .recover(&h.framework_id, &h.agent_id, &h.resources);
            self.alloc_pending = true;
        }
        match &change {
            Change::AgentRegistered { agent, .. } => {
                self.alloc
                    .add_agent(&agent.id, agent.total.clone(), agent.public);
                let hold = self.tables.agents.get(&agent.id).and_then(|a| a.hold());
                self.alloc.set_agent_hold(&agent.id, hold);
                self.alloc_pending = true;
            }
            Change::AgentUnreachable { agent_id } => self.alloc.set_agent_active(agent_id, false),
            Change::AgentDeactivated { agent_id }
            | Change::AgentDraining { agent_id, .. }
            | Change::AgentDrained { agent_id }
            | Change::AgentReactivated { agent_id } => {
                let hold = self.tables.agents.get(agent_id).and_then(|a| a.hold());
                self.alloc.set_agent_hold(agent_id, hold);
                self.alloc_pending = true;
            }
            Change::AgentRemoved { agent_id } => {
                self.alloc.remove_agent(agent_id);
                self.local.last_seen.remove(agent_id);
            }
            Change::FrameworkAdded { framework } | Change::FrameworkFailedOver { framework } => {
                self.alloc
                    .add_framework(&framework.id, framework.info.effective_roles());
            }
            Change::FrameworkRemoved { framework_id } => {
                self.alloc.remove_framework(framework_id);
                self.conns.remove(framework_id);
            }
            Change::TaskStatusAcknowledged {
                framework_id,
                task_id,
                ..
            } => {
                self.local
                    .last_sent
                    .remove(&(framework_id.clone(), task_id.clone()));
            }
            _ => {}
        }
        for h in &applied.held {
            self.alloc
                .allocate_to(&h.framework_id, &h.agent_id, &h.resources);
        }
        if let Some((fid, status)) = &applied.deliver_once {
            self.conns.send(fid, Event::Update(status.clone()));
        }
        if let Some(key) = &applied.deliver_head {
            self.local.last_sent.remove(key);
            self.send_head(key, now);
        }
        for k in &applied.completed {
            self.local.last_sent.remove(k);
        }
        if applied.registry {
            self.persist.dirty = true;
            self.persist.version += 1;
        }
        self.log_change(change);
        applied
    }

    /// Records a status update for a task and delivers it.
    pub(super) fn update_task(&mut self, key: &TaskKey, status: TaskStatus, now: Instant) {
        self.apply(
            Change::TaskStatusUpdated {
                framework_id: key.0.clone(),
                status,
            },
            now,
        );
    }

    pub async fn run(mut self, mut rx: mpsc::Receiver<MasterCommand>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(HOUSEKEEPING);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (commits_tx, mut commits) = tokio::sync::mpsc::unbounded_channel::<CommitResult>();
        let mut leadership = self.repl.as_ref().map(|r| r.leadership());
        if let Some(r) = &mut self.repl {
            r.set_commits(commits_tx);
        }
        loop {
            // A replica that leads but whose loop does not yet: take the lead (a barrier
            // commit, then the state from the log).
            let lead_now = leadership.as_mut().map(|l| l.borrow_and_update().is_leader);
            match (lead_now, self.follows()) {
                // Not this time (no majority, or another leader): try again shortly.
                (Some(true), true) if !self.take_lead().await => {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(HOUSEKEEPING) => {}
                    }
                    continue;
                }
                (Some(false), false) => self.step_down(Instant::now()),
                _ => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                cmd = rx.recv() => match cmd {
                    Some(cmd) => self.handle(cmd, Instant::now()),
                    None => break,
                },
                Some(done) = commits.recv() => self.committed(done, Instant::now()),
                changed = async { match leadership.as_mut() {
                    Some(l) => l.changed().await,
                    None => std::future::pending().await,
                } } => {
                    if changed.is_err() {
                        // The replica stopped: nothing can be committed any more.
                        self.step_down(Instant::now());
                        leadership = None;
                    }
                }
                _ = tick.tick() => {
                    if self.follows() {
                        self.follow_discovery(Instant::now());
                    } else {
                        self.housekeeping(Instant::now());
                    }
                }
            }
            self.end_turn();
            // Service discovery follows every loop turn that changed a task, agent or framework.
            self.discovery.publish(&self.tables, Instant::now());
        }
        self.flush_registry();
        // Held replies answer "not the leader"; dropping the streams' senders ends every
        // subscription stream.
        self.step_down(Instant::now());
        self.conns.close_all();
        if let Some(w) = self.persist.writer.take() {
            w.finish().await;
        }
        self.io.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.io.wait()).await;
        if let Some(r) = &mut self.repl {
            r.stop_proposals().await;
        }
    }

    /// Answers through `reply` once its effects are durable: with a registry, when every
    /// registry change made so far is on disk, if `registry` (the call's effect must survive a
    /// restart); replicated, when every change made so far is committed.
    fn reply_after(&mut self, version_before: u64, registry: bool, reply: Reply) {
        if let Some(r) = &mut self.repl {
            r.turn_replies.push(reply);
            return;
        }
        if !registry {
            reply(None);
            return;
        }
        self.reply_durably(version_before, Box::new(move || reply(None)));
    }

    /// Sends `reply` once every registry change made so far is on disk (at once if none is
    /// pending): the answer to a call whose effect must survive a master restart.
    fn reply_durably(&mut self, version_before: u64, reply: AfterWrite) {
        if self.persist.version == version_before || self.persist.writer.is_none() {
            reply();
            return;
        }
        self.persist.waiting.push(reply);
        self.flush_registry();
    }

    /// Hands the registry document to the writer (if anything changed), with the replies that
    /// wait for it. The document is built here, the fsync happens in the writer task.
    pub(super) fn flush_registry(&mut self) {
        let waiting = std::mem::take(&mut self.persist.waiting);
        if !self.persist.dirty {
            for f in waiting {
                f();
            }
            return;
        }
        self.persist.dirty = false;
        match &self.persist.writer {
            Some(w) => w.write(self.tables.registry(), waiting),
            None => waiting.into_iter().for_each(|f| f()),
        }
    }

    pub(super) fn handle(&mut self, cmd: MasterCommand, now: Instant) {
        if self.follows() {
            self.refuse(cmd);
            return;
        }
        let before = self.persist.version;
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
                self.reply_after(before, true, answer(reply, r));
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
                self.reply_after(before, true, answer(reply, r));
            }
            MasterCommand::StreamClosed {
                framework_id,
                stream_id,
            } => self.stream_closed(&framework_id, &stream_id, now),
            MasterCommand::TaskHealth {
                framework_id,
                task_id,
                healthy,
            } => {
                let change = Change::TaskHealthReported {
                    framework_id,
                    task_id,
                    healthy,
                };
                self.apply(change, now);
            }
            MasterCommand::RegisterAgent { msg, reply } => {
                // Not durable with a registry: an agent the registry does not know is admitted
                // again anyway.
                let r = self.register_agent(*msg, now);
                self.reply_after(before, false, answer(reply, r));
            }
            MasterCommand::Heartbeat { agent_id, reply } => {
                let r = self.heartbeat(&agent_id, now);
                self.reply_after(
                    before,
                    false,
                    Box::new(move |fail| {
                        let _ = reply.send(r.filter(|_| fail.is_none()));
                    }),
                );
            }
            MasterCommand::AgentStatus { msg, reply } => {
                let known = self.tables.agents.reachable(&msg.agent_id.value).is_some()
                    && self.local.registered_here.contains(&msg.agent_id.value);
                if known {
                    self.agent_status(*msg, now);
                }
                // Replicated, the agent hears "recorded" only once it is committed (it resends
                // until then).
                self.reply_after(
                    before,
                    false,
                    Box::new(move |fail| {
                        let _ = reply.send(known && fail.is_none());
                    }),
                );
            }
            MasterCommand::LaunchFailed {
                framework_id,
                task_ids,
                error,
            } => self.launch_failed(framework_id, task_ids, &error, now),
            MasterCommand::Operator {
                query,
                viewer,
                reply,
            } => {
                let view = self.snapshot(query, viewer);
                // A view may show uncommitted changes: it waits for them like any reply (on
                // failure the dropped sender answers 503).
                self.reply_after(
                    before,
                    false,
                    Box::new(move |fail| {
                        if fail.is_none() {
                            let _ = reply.send(view);
                        }
                    }),
                );
            }
            MasterCommand::Teardown {
                framework_id,
                principal,
                reply,
            } => {
                let r = self.operator_teardown(&framework_id, principal.as_deref(), now);
                self.reply_after(before, true, answer(reply, r));
            }
            MasterCommand::Agent { call, reply } => {
                let r = self.agent_call(call, now);
                self.reply_after(before, true, answer(reply, r));
            }
            MasterCommand::Metrics { reply } => {
                let _ = reply.send(self.metrics_snapshot());
            }
            MasterCommand::AgentRefused {
                agent_id,
                probed_at,
                error,
            } => self.agent_refused(&agent_id, probed_at, &error, now),
        }
    }

    fn launch_failed(
        &mut self,
        framework_id: String,
        task_ids: Vec<String>,
        error: &str,
        now: Instant,
    ) {
        for task_id in task_ids {
            let key = (framework_id.clone(), task_id);
            let Some(t) = self.tables.tasks.get(&key) else {
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

    pub(super) fn housekeeping(&mut self, now: Instant) {
        self.check_agents(now);
        self.check_frameworks(now);
        self.expire_offers(now);
        self.retry_updates(now);
        self.check_drains(now);
        if self.alloc_pending || now >= self.next_alloc {
            self.allocate(now);
        }
        self.flush_registry();
    }

    /// Sends a request to an agent from a tracked task; on failure `on_error` (with the error
    /// text filled in by `make`) comes back as a command.
    pub fn push_to_agent<F>(&self, agent_url: &str, path: &str, body: Value, on_error: Option<F>)
    where
        F: FnOnce(String) -> MasterCommand + Send + 'static,
    {
        let token = self.local.agent_call_tokens.get(agent_url).cloned();
        let req = self
            .http
            .post(format!("{}{}", agent_url.trim_end_matches('/'), path))
            .json(&body);
        let tx = self.tx.clone();
        let push = async move {
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
        };
        match &self.repl {
            // Replicated: the agent is told only once the change that made the request is
            // committed, so a new leader never finds a task running that its log lacks.
            Some(r) => r.turn_pushes.borrow_mut().push(Box::pin(push)),
            None => {
                self.io.spawn(push);
            }
        }
    }

    /// Asks a reachable agent to kill a task (`max_grace_secs` caps its grace period).
    pub(super) fn kill_on_agent(&self, key: &TaskKey, max_grace_secs: Option<f64>) -> bool {
        let Some(t) = self.tables.tasks.get(key) else {
            return false;
        };
        let Some(a) = self.tables.agents.reachable(&t.agent_id) else {
            return false;
        };
        let body = serde_json::to_value(crate::proto::internal::KillTask {
            framework_id: Id::new(&key.0),
            task_id: t.info.task_id.clone(),
            max_grace_secs,
        })
        .expect("invariant: a kill message is plain data");
        self.push_to_agent(
            &a.info.url,
            "/internal/v1/kill",
            body,
            None::<fn(String) -> _>,
        );
        true
    }

    pub(super) fn metrics_snapshot(&self) -> MetricsSnapshot {
        let agents = &self.tables.agents;
        let reachable = agents.iter().filter(|a| a.reachable).count() as u64;
        let mut by_state: BTreeMap<&'static str, u64> =
            self.tables.tasks.completed_by_state().clone();
        for t in self.tables.tasks.iter() {
            *by_state.entry(t.state.name()).or_default() += 1;
        }
        let st = &self.stats;
        MetricsSnapshot {
            agents_reachable: reachable,
            agents_unreachable: agents.len() as u64 - reachable,
            frameworks_connected: self.conns.connected() as u64,
            frameworks_total: self.tables.frameworks.len() as u64,
            offers_outstanding: self.offers.len() as u64,
            offers_total: st.offers_total,
            tasks_by_state: by_state.into_iter().collect(),
            allocation_cycles: st.cycles,
            allocation_last_seconds: st.last_seconds,
            allocation_seconds_total: st.seconds_total,
            status_updates_unacked: self.tables.tasks.unacked_len() as u64,
            agents_not_offered: AgentReason::ALL
                .iter()
                .map(|r| {
                    let n = st.agents_not_offered.get(r).copied().unwrap_or(0);
                    (r.label(), n)
                })
                .collect(),
            frameworks_passed_over: FrameworkReason::ALL
                .iter()
                .map(|r| {
                    let n = st.frameworks_passed_over.get(r).copied().unwrap_or(0);
                    (r.label(), n)
                })
                .collect(),
        }
    }
}

/// The framework's failover timeout, bounded by `max_failover_timeout` so that no client can
/// make the master keep its tasks and record for ever.
fn failover_timeout(cfg: &MasterConfig, info: &crate::proto::scheduler::FrameworkInfo) -> Duration {
    info.failover_timeout
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(1e9)))
        .unwrap_or(cfg.default_failover_timeout)
        .min(cfg.max_failover_timeout)
}
