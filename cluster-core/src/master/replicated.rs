//! The owner loop on the replicated log ("act after commit", see [`crate::replica::node`]).
//!
//! ```text
//! handle(cmd) ──apply(Change)──▶ Tables (at once) ──▶ batch: Vec<Command> ──propose (≤ 1 in flight)──▶ Replica
//!      │                                               held effects ◀── released when their batch commits
//!      └─ replies, status updates and offers to frameworks, launches/kills to agents ──▶ held
//! ```
//! Group commit: at most one batch is in flight; while it is, the next one accumulates, so
//! batches grow with load. An effect waits for the newest batch not yet committed when it was
//! made (the changes it may depend on are in that batch or before it); with nothing
//! uncommitted it goes out at once.
//!
//! Leadership: the loop leads only after it has committed a barrier (an empty batch) in its
//! term and rebuilt its state from the committed tables; it steps down when the replica says
//! it no longer leads, or a proposal fails or outlives the election timeout: offers and
//! framework streams are dropped, held replies answer "not the leader", held deliveries and
//! pushes are dropped (the new leader resends what is unacknowledged).

use super::command::{CallError, MasterCommand};
use super::offers::Offers;
use super::state::State;
use super::streams::Connections;
use super::tables::Tables;
use crate::allocator::Allocator;
use crate::proto::scheduler::Event;
use crate::replica::{Command, Committed, Leadership, Replica, ReplicaError};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// A reply held until its changes are durable: called with `None` then, or with the error to
/// answer instead (this master lost the lead).
pub(super) type Reply = Box<dyn FnOnce(Option<CallError>) + Send>;

/// A request to an agent, to be spawned once released.
pub(super) type Push = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The outcome of a proposal, tagged with its sequence number.
pub(super) type CommitResult = (u64, Result<Committed, ReplicaError>);

/// Effects visible outside the master, held for a batch.
#[derive(Default)]
pub(super) struct Held {
    replies: Vec<Reply>,
    events: Vec<(String, Event)>,
    pushes: Vec<Push>,
}

impl Held {
    fn is_empty(&self) -> bool {
        self.replies.is_empty() && self.events.is_empty() && self.pushes.is_empty()
    }

    fn extend(&mut self, other: Held) {
        self.replies.extend(other.replies);
        self.events.extend(other.events);
        self.pushes.extend(other.pushes);
    }

    /// Answers every held reply with `error`; deliveries and pushes are dropped.
    fn fail(self, error: impl Fn() -> CallError) {
        for r in self.replies {
            r(Some(error()));
        }
    }
}

/// The most commands one log entry holds. Unbounded, a turn with 10,000 agents' registrations
/// or a framework's thousands of launches made one entry of tens of megabytes, which must cross
/// in one AppendEntries within the RPC timeout (the likely cause of the leader stepping down at
/// the start of `master_http` at 10,000 agents on a loaded machine; not confirmed). Bounded
/// entries cross, and batching still carries the throughput (1,000 commands are ~100 KB to
/// ~1 MB of JSON).
pub const MAX_ENTRY_COMMANDS: usize = 1_000;

struct InFlight {
    seq: u64,
    held: Held,
}

/// The replicated master's part of the owner loop's state.
pub(super) struct Replicated {
    pub replica: Arc<Replica>,
    leadership: watch::Receiver<Leadership>,
    /// The loop acts as leader: barrier committed, state rebuilt, not stepped down since.
    pub leading: bool,
    /// Changes not yet proposed, and the effects that wait for them.
    batch: Vec<Command>,
    batch_held: Held,
    in_flight: Option<InFlight>,
    seq: u64,
    /// Effects of the current turn, collected by [`State::push_to_agent`] and replies.
    pub turn_pushes: std::cell::RefCell<Vec<Push>>,
    pub turn_replies: Vec<Reply>,
    commits: Option<mpsc::UnboundedSender<CommitResult>>,
    /// A proposal not committed within this is taken as lost leadership.
    propose_timeout: Duration,
    /// At most this many commands go in one log entry ([`MAX_ENTRY_COMMANDS`]; tests make it
    /// small).
    pub max_entry_commands: usize,
    /// The proposal in flight (at most one, and the finished ones not reaped yet). Owned here,
    /// so that a stopped master's owner loop takes them down with it: a detached one kept its
    /// handle on the replica up to `propose_timeout` after the master stopped, so the replica
    /// was never shut down and its store stayed open (a master restarted in the same process
    /// could not open it: `DatabaseAlreadyOpen`, found by `tests/ha_faults.rs`).
    proposals: tokio::task::JoinSet<()>,
}

impl Replicated {
    /// `propose_timeout` bounds each proposal.
    pub fn new(replica: Arc<Replica>, propose_timeout: Duration) -> Self {
        Replicated {
            leadership: replica.leadership(),
            replica,
            leading: false,
            batch: Vec::new(),
            batch_held: Held::default(),
            in_flight: None,
            seq: 0,
            turn_pushes: Default::default(),
            turn_replies: Vec::new(),
            commits: None,
            propose_timeout,
            max_entry_commands: MAX_ENTRY_COMMANDS,
            proposals: tokio::task::JoinSet::new(),
        }
    }

    /// Proposes the pending batch, or its first [`Self::max_entry_commands`] commands when it is
    /// longer: the rest, and every effect waiting for the batch, follow with the next proposal
    /// (an effect may depend on any change of its batch, so it waits for the last part).
    fn propose_pending(&mut self) {
        if self.batch.len() <= self.max_entry_commands.max(1) {
            let batch = std::mem::take(&mut self.batch);
            let held = std::mem::take(&mut self.batch_held);
            self.propose(batch, held);
        } else {
            let first: Vec<Command> = self.batch.drain(..self.max_entry_commands.max(1)).collect();
            self.propose(first, Held::default());
        }
    }

    /// Where the outcome of every proposal goes (the owner loop's channel).
    pub fn set_commits(&mut self, commits: mpsc::UnboundedSender<CommitResult>) {
        self.commits = Some(commits);
    }

    /// Ends the proposals still out and waits until they are gone (an aborted task lets go of
    /// its handle on the replica only when the runtime drops it, which may be after `JoinSet`'s
    /// own drop returned): when the owner loop returns, nothing of it holds the replica.
    pub async fn stop_proposals(&mut self) {
        self.proposals.shutdown().await;
    }

    /// A watch of the replica's leadership for the owner loop's `select!`.
    pub fn leadership(&self) -> watch::Receiver<Leadership> {
        self.leadership.clone()
    }

    /// The leader's URL as this replica knows it (none if it is this one).
    pub fn leader_url(&self) -> Option<String> {
        let l = self.leadership.borrow();
        l.leader
            .as_ref()
            .filter(|(id, _)| *id != self.replica.id())
            .map(|(_, url)| url.clone())
    }

    fn not_leader(&self) -> impl Fn() -> CallError + use<> {
        let url = self.leader_url();
        move || CallError::NotLeader(url.clone())
    }

    fn propose(&mut self, batch: Vec<Command>, held: Held) {
        self.seq += 1;
        let seq = self.seq;
        self.in_flight = Some(InFlight { seq, held });
        let replica = self.replica.clone();
        let tx = self
            .commits
            .clone()
            .expect("invariant: the owner loop sets the commit channel before it proposes");
        let timeout = self.propose_timeout;
        while self.proposals.try_join_next().is_some() {}
        self.proposals.spawn(async move {
            let r = match tokio::time::timeout(timeout, replica.propose(batch)).await {
                Ok(r) => r,
                Err(_) => Err(ReplicaError::NotLeader { leader: None }),
            };
            let _ = tx.send((seq, r));
        });
    }
}

impl State {
    /// Records a change for the log (leader only; the tables have it already).
    pub(super) fn log_change(&mut self, change: super::tables::Change) {
        if let Some(r) = &mut self.repl
            && r.leading
        {
            r.batch.push(Command::Cluster(change));
        }
    }

    /// Ends a turn of the owner loop: the turn's effects wait for the newest uncommitted batch
    /// (proposed now if none is in flight), or go out at once if nothing is uncommitted.
    pub(super) fn end_turn(&mut self) {
        let Some(r) = &mut self.repl else {
            return;
        };
        let turn = Held {
            replies: std::mem::take(&mut r.turn_replies),
            events: self.conns.take_held(),
            pushes: r.turn_pushes.take(),
        };
        if !r.leading {
            turn.fail(r.not_leader());
            return;
        }
        if !r.batch.is_empty() {
            r.batch_held.extend(turn);
            if r.in_flight.is_none() {
                r.propose_pending();
            }
        } else if let Some(f) = &mut r.in_flight {
            f.held.extend(turn);
        } else if !turn.is_empty() {
            self.release(turn);
        }
    }

    fn release(&mut self, held: Held) {
        for r in held.replies {
            r(None);
        }
        for (fid, ev) in held.events {
            self.conns.send_now(&fid, ev);
        }
        for p in held.pushes {
            self.io.spawn(p);
        }
    }

    /// A proposal's outcome: its effects go out and the next batch is proposed, or the master
    /// steps down.
    pub(super) fn committed(&mut self, (seq, result): CommitResult, now: Instant) {
        let Some(r) = &mut self.repl else {
            return;
        };
        let Some(f) = r.in_flight.take_if(|f| f.seq == seq) else {
            // A proposal from before a step-down: its effects are already failed.
            return;
        };
        match result {
            Ok(_) => {
                if !r.batch.is_empty() {
                    r.propose_pending();
                }
                self.release(f.held);
            }
            Err(e) => {
                tracing::warn!(error = %dc_support::error::chain(&e), "a batch was not committed: stepping down");
                r.in_flight = Some(f);
                self.step_down(now);
            }
        }
    }

    /// Stops acting as leader: no offers, no streams, held replies answer "not the leader".
    pub(super) fn step_down(&mut self, _now: Instant) {
        let Some(r) = &mut self.repl else {
            return;
        };
        if !r.leading {
            return;
        }
        tracing::warn!("this master no longer leads the group: following");
        r.leading = false;
        let error = r.not_leader();
        r.batch.clear();
        let mut held = std::mem::take(&mut r.batch_held);
        if let Some(f) = r.in_flight.take() {
            held.extend(f.held);
        }
        held.replies.append(&mut r.turn_replies);
        r.turn_pushes.take();
        let _ = self.conns.take_held();
        held.fail(error);
        // Dropping the senders ends every subscription stream: frameworks reconnect, and are
        // redirected to the new leader.
        self.conns = Connections::holding();
        self.offers = Offers::default();
        self.alloc = Allocator::new(self.cfg.role_weights.clone());
    }

    /// Becomes the acting leader: commits a barrier in this term (so every entry of earlier
    /// terms is applied here), then rebuilds the state from the committed tables. False if the
    /// barrier did not commit (the loop stays a follower and tries again on the next change).
    pub(super) async fn take_lead(&mut self) -> bool {
        let Some(r) = &self.repl else {
            return false;
        };
        let replica = r.replica.clone();
        let timeout = r.propose_timeout;
        match tokio::time::timeout(timeout, replica.propose(Vec::new())).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::info!(error = %dc_support::error::chain(&e), "not taking the lead");
                return false;
            }
            Err(_) => return false,
        }
        let tables = replica.with_state(|s| s.image.tables.clone());
        self.rebuild(tables, Instant::now());
        if let Some(r) = &mut self.repl {
            r.leading = true;
        }
        self.discovery.lead();
        tracing::info!(id = replica.id(), "this master leads the group");
        true
    }

    /// The state of a new leader: the committed tables; no offers; frameworks disconnected
    /// until they subscribe again; agents kept as the log has them, given one agent timeout to
    /// register with this master (until then no launch reaches them).
    fn rebuild(&mut self, tables: Tables, now: Instant) {
        self.tables = tables;
        self.alloc = Allocator::new(self.cfg.role_weights.clone());
        self.offers = Offers::default();
        self.conns = Connections::holding();
        self.local = Default::default();
        for a in self.tables.agents.iter() {
            self.alloc
                .add_agent(&a.info.id, a.info.total.clone(), a.info.public);
            self.alloc.set_agent_active(&a.info.id, false);
            self.alloc.set_agent_hold(&a.info.id, a.hold());
            if a.reachable {
                self.local.last_seen.insert(a.info.id.clone(), now);
            }
        }
        for f in self.tables.frameworks.iter() {
            self.alloc.add_framework(&f.id, f.info.effective_roles());
            self.alloc.set_framework_active(&f.id, false);
            self.conns.away_since(&f.id, now);
        }
        for t in self.tables.tasks.iter() {
            if t.holds_resources {
                self.alloc
                    .allocate_to(&t.framework_id, &t.agent_id, &t.resources);
            }
        }
        self.alloc_pending = true;
        self.next_alloc = now;
    }

    /// A follower's service discovery: its DNS and `/v1/services` answer from the committed
    /// log, as the leader's do (see [`super::discovery_feed::Feed::publish_followed`]).
    pub(super) fn follow_discovery(&mut self, now: Instant) {
        let Some(r) = &self.repl else {
            return;
        };
        let replica = r.replica.clone();
        let leader = replica
            .leadership()
            .borrow()
            .leader
            .as_ref()
            .and_then(|(_, url)| crate::discovery::AgentAddr::of(url, "").ip);
        let applied = replica.log_position().1;
        let feed = &mut self.discovery;
        replica.with_state(|s| feed.publish_followed(&s.image.tables, applied, leader, now));
    }

    /// A follower's answer to every command: "not the leader" (the API layer redirects most
    /// callers before they get here; these raced a change of leader).
    pub(super) fn refuse(&mut self, cmd: MasterCommand) {
        let e = self.not_leader_error();
        match cmd {
            MasterCommand::Subscribe { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            MasterCommand::Call { reply, .. }
            | MasterCommand::Teardown { reply, .. }
            | MasterCommand::Agent { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            MasterCommand::RegisterAgent { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            MasterCommand::Heartbeat { reply, .. } => {
                let _ = reply.send(None);
            }
            MasterCommand::AgentStatus { reply, .. } => {
                let _ = reply.send(false);
            }
            // Dropping the sender answers 503.
            MasterCommand::Operator { .. } => {}
            MasterCommand::Metrics { reply } => {
                let _ = reply.send(self.metrics_snapshot());
            }
            MasterCommand::StreamClosed { .. }
            | MasterCommand::LaunchFailed { .. }
            | MasterCommand::AgentRefused { .. }
            | MasterCommand::TaskHealth { .. } => {}
        }
    }

    /// Whether this owner loop is a follower of a replicated group (answers nothing itself).
    pub(super) fn follows(&self) -> bool {
        self.repl.as_ref().is_some_and(|r| !r.leading)
    }

    /// The error a follower answers with.
    pub(super) fn not_leader_error(&self) -> CallError {
        CallError::NotLeader(self.repl.as_ref().and_then(|r| r.leader_url()))
    }
}

/// A held reply that sends `r`, or the error it failed with.
pub(super) fn answer<T: Send + 'static>(
    reply: tokio::sync::oneshot::Sender<Result<T, CallError>>,
    r: Result<T, CallError>,
) -> Reply {
    Box::new(move |fail| {
        let _ = reply.send(match fail {
            None => r,
            Some(e) => Err(e),
        });
    })
}
