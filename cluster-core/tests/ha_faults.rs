//! The randomized fault test of the replicated masters (issue 10), in the manner of etcd's
//! functional tests: three in-process masters (Raft over HTTP on 127.0.0.1) and three real
//! agents running real `sleep` tasks, while a framework written for the test launches tasks on
//! offers and kills some, following the leader. Meanwhile masters (the leader or a follower) are
//! killed and restarted from their disk, cut off from the others' Raft traffic and healed, and
//! agents are stopped and restarted on their work dir (they re-attach to their tasks). At most
//! one master is down or cut off at a time, so a majority always remains.
//!
//! At the end everything is healed and restarted, the framework reconciles every task, and the
//! test checks what every party says against the others:
//! - every task the framework launched or heard of ends in a state the leader agrees with:
//!   `TASK_RUNNING` there and on its agent, or terminal at the leader (and on no agent still
//!   running), or `TASK_UNKNOWN` — only for a launch that was never acknowledged with 202
//!   (the ACCEPT's commit is what 202 means), and then no agent ever ran it;
//! - a terminal (or unknown) state is never followed by another one (nothing comes back);
//! - no task ran twice: one launch marker (each task appends its pid to a file in its sandbox)
//!   and one agent checkpoint at most, over all agents;
//! - nothing runs that the leader does not say runs, and nothing the leader says runs is
//!   missing on its agent;
//! - an update the framework acknowledged (202) is not delivered again on a later subscription.
//!
//! Replay: the seed is printed at the start and in every failure; `DCFORM_FAULT_SEED=N` runs
//! that schedule again (the schedule of faults and the framework's choices come from it; the
//! machine's timing still varies), `DCFORM_FAULT_SECS=N` lengthens the faults phase (45 s).

#[path = "support/agent_view.rs"]
mod agent_view;
#[path = "support/ha.rs"]
mod ha;
#[path = "support/ha_scheduler.rs"]
mod ha_scheduler;
mod support;

use agent_view::{OnAgent, Reaper, agents_view};
use dc_support::splitmix::SplitMix64;
use ha::{HaMaster, Partition, start_masters, wait_leader};
use ha_scheduler::{HaScheduler, Outcome};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use support::{Agent, WAIT, framework_info};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const AGENT_RES: &str = "cpus:4;mem:4096;disk:1000";
const AGENTS: usize = 3;
/// Tasks the framework keeps alive at most (each 0.1 cpus: the agents hold 120).
const MAX_LIVE: usize = 30;
/// Faults for this long unless `DCFORM_FAULT_SECS` says otherwise.
const FAULT_SECS: u64 = 45;
/// After the faults, how long everything may take to agree (the check is repeated until then).
const SETTLE: Duration = Duration::from_secs(60);

static SEED: OnceLock<u64> = OnceLock::new();

/// The replay hint that goes into every failure message.
fn replay() -> String {
    let seed = SEED.get().copied().unwrap_or_default();
    format!("[fault test seed {seed}: replay with DCFORM_FAULT_SEED={seed}]")
}

/// `what`, for the messages of the support helpers' deadlines.
fn w(what: &str) -> String {
    format!("{what} {}", replay())
}

/// The seed: `DCFORM_FAULT_SEED`, else a fresh one. A panic anywhere in the test (also in the
/// support helpers and the framework's task) prints it too.
fn seed() -> u64 {
    let seed = match std::env::var("DCFORM_FAULT_SEED") {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("DCFORM_FAULT_SEED={s:?} is not a u64: {e}")),
        Err(_) => SplitMix64::fresh_seed(),
    };
    SEED.set(seed).expect("one fault test per process");
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        eprintln!("{}", replay());
        default(info);
    }));
    seed
}

fn fault_secs() -> u64 {
    std::env::var("DCFORM_FAULT_SECS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(FAULT_SECS)
}

// ---------------------------------------------------------------------------------------------
// The framework: launches on offers, kills at random, follows the leader, writes down all it
// hears.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Launch and kill at random.
    Run,
    /// Launch nothing; reconcile every task every second; kill again what it killed and still
    /// runs (a Mesos scheduler must retry kills: a kill is not a durable order).
    Settle,
}

/// One state the framework heard for a task.
#[derive(Clone, Debug)]
struct Heard {
    state: String,
    /// Updates carry one; reconciliation answers do not.
    uuid: Option<String>,
    reason: String,
    subscription: u64,
}

/// What the framework knows of one of its tasks.
#[derive(Clone, Debug, Default)]
struct Note {
    agent_id: String,
    /// The ACCEPT's outcome (`None` while the call is out).
    accept: Option<Outcome>,
    heard: Vec<Heard>,
    /// The framework killed it.
    want_dead: bool,
}

impl Note {
    fn last(&self) -> Option<&str> {
        self.heard.last().map(|h| h.state.as_str())
    }
}

/// Terminal, or `TASK_UNKNOWN` (the master has no such task: nothing can bring it back).
fn final_state(state: &str) -> bool {
    terminal(state) || state == "TASK_UNKNOWN"
}

fn terminal(state: &str) -> bool {
    matches!(
        state,
        "TASK_FINISHED"
            | "TASK_FAILED"
            | "TASK_KILLED"
            | "TASK_ERROR"
            | "TASK_LOST"
            | "TASK_DROPPED"
            | "TASK_GONE"
            | "TASK_GONE_BY_OPERATOR"
    )
}

/// The framework's record, shared with the test (short sections, no await inside).
#[derive(Debug, Default)]
struct Book {
    framework_id: Option<String>,
    tasks: BTreeMap<String, Note>,
    /// (task, uuid) acknowledged with 202, and on which subscription.
    acked: HashMap<(String, String), u64>,
    /// Updates delivered again on a later subscription after their 202 acknowledgement.
    redelivered: Vec<String>,
    /// Updates for tasks the framework never launched.
    strangers: Vec<String>,
    /// Subscriptions that found no leader within their deadline, or were refused.
    subscribe_errors: Vec<String>,
    /// Calls answered with anything but 202/307/503 or no answer.
    refused: Vec<String>,
    subscriptions: u64,
    accepts: u64,
    kills: u64,
}

type Shared = Arc<Mutex<Book>>;

fn lock(book: &Shared) -> std::sync::MutexGuard<'_, Book> {
    book.lock().expect("the framework's book")
}

fn scalar(offer: &Value, name: &str) -> f64 {
    offer["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["name"] == name)
        .filter_map(|r| r["scalar"]["value"].as_f64())
        .sum()
}

struct Framework {
    s: HaScheduler,
    rng: SplitMix64,
    book: Shared,
    phase: watch::Receiver<Phase>,
    next_task: u64,
}

impl Framework {
    async fn run(mut self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut ticks = 0u64;
        while !stop.is_cancelled() {
            if !self.s.subscribed() {
                self.subscribe().await;
                continue;
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                ev = self.s.next_event() => {
                    if let Some(ev) = ev {
                        self.event(ev).await;
                    }
                }
                _ = tick.tick() => {
                    ticks += 1;
                    self.tick(ticks).await;
                }
            }
        }
    }

    async fn subscribe(&mut self) {
        match self.s.subscribe(WAIT).await {
            Ok(_) => {
                {
                    let mut b = lock(&self.book);
                    b.framework_id = self.s.framework_id.clone();
                    b.subscriptions = self.s.subscriptions;
                }
                // After a failover: ask where every task it has no final word on stands (a
                // launch whose ACCEPT got no 202 may or may not have been committed).
                self.reconcile(false).await;
            }
            Err(e) => {
                lock(&self.book)
                    .subscribe_errors
                    .push(format!("after {} subscriptions: {e}", self.s.subscriptions));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    /// A call's outcome written down when it is neither taken nor a failover.
    fn note_refused(&self, what: &str, o: &Outcome) {
        if let Outcome::Refused(status, text) = o {
            lock(&self.book)
                .refused
                .push(format!("{what}: {status} {text}"));
        }
    }

    async fn event(&mut self, ev: Value) {
        match ev["type"].as_str().unwrap_or_default() {
            "OFFERS" => {
                let offers = ev["offers"]["offers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for o in offers {
                    if !self.offer(&o).await {
                        break; // a failover: the stream is gone, so are its offers
                    }
                }
            }
            "UPDATE" => self.update(&ev["update"]["status"]).await,
            "ERROR" => self.s.drop_stream(),
            _ => {} // HEARTBEAT, RESCIND, FAILURE
        }
    }

    /// Launches one or two tasks on `offer`, or declines it; false on a failover.
    async fn offer(&mut self, offer: &Value) -> bool {
        let running = *self.phase.borrow() == Phase::Run;
        let live = lock(&self.book)
            .tasks
            .values()
            .filter(|n| !n.last().is_some_and(final_state))
            .count();
        let fits = ((scalar(offer, "cpus") + 1e-9) / 0.1)
            .min(scalar(offer, "mem") / 32.0)
            .floor() as u64;
        let n = if running && live < MAX_LIVE && fits > 0 && self.rng.chance(0.6) {
            (1 + self.rng.below(2)).min(fits)
        } else {
            0
        };
        if n == 0 {
            let refuse = if running { 0.5 } else { 5.0 };
            let o = self
                .s
                .call(json!({"type": "DECLINE", "decline": {
                    "offer_ids": [offer["id"]], "filters": {"refuse_seconds": refuse}}}))
                .await;
            self.note_refused("DECLINE", &o);
            return o == Outcome::Accepted || matches!(o, Outcome::Refused(..));
        }
        let mut tasks = Vec::new();
        let mut ids = Vec::new();
        for _ in 0..n {
            self.next_task += 1;
            let id = format!("t{}", self.next_task);
            // Most end by themselves, the rest run until killed.
            let secs = if self.rng.chance(0.6) {
                1 + self.rng.below(6)
            } else {
                600
            };
            let cmd = format!("{}; sleep {secs}", agent_view::LAUNCH_MARKER);
            tasks.push(support::task(offer, &id, &cmd));
            ids.push(id);
        }
        {
            let mut b = lock(&self.book);
            b.accepts += 1;
            for id in &ids {
                b.tasks.insert(
                    id.clone(),
                    Note {
                        agent_id: offer["agent_id"]["value"]
                            .as_str()
                            .unwrap_or_default()
                            .into(),
                        ..Note::default()
                    },
                );
            }
        }
        let o = self
            .s
            .call(json!({"type": "ACCEPT", "accept": {
                "offer_ids": [offer["id"]],
                "operations": [{"type": "LAUNCH", "launch": {"task_infos": tasks}}],
                "filters": {"refuse_seconds": 0.5}}}))
            .await;
        self.note_refused(&format!("ACCEPT {ids:?}"), &o);
        let mut b = lock(&self.book);
        for id in &ids {
            if let Some(n) = b.tasks.get_mut(id) {
                n.accept = Some(o.clone());
            }
        }
        o == Outcome::Accepted || matches!(o, Outcome::Refused(..))
    }

    async fn update(&mut self, st: &Value) {
        let id = st["task_id"]["value"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let state = st["state"].as_str().unwrap_or_default().to_string();
        let uuid = st["uuid"].as_str().map(str::to_string);
        let sub = self.s.subscriptions;
        {
            let mut b = lock(&self.book);
            if let Some(u) = &uuid
                && let Some(at) = b.acked.get(&(id.clone(), u.clone())).copied()
                && at < sub
            {
                b.redelivered.push(format!(
                    "{id} {state} uuid {u}: acknowledged on subscription {at}, delivered again on {sub}"
                ));
            }
            let heard = Heard {
                state: state.clone(),
                uuid: uuid.clone(),
                reason: st["reason"].as_str().unwrap_or_default().into(),
                subscription: sub,
            };
            match b.tasks.get_mut(&id) {
                Some(n) => n.heard.push(heard),
                None => b.strangers.push(format!("{id} {state}")),
            }
        }
        let Some(u) = uuid else {
            return; // a reconciliation answer: nothing to acknowledge
        };
        let o = self
            .s
            .call(json!({"type": "ACKNOWLEDGE", "acknowledge": {
                "agent_id": st["agent_id"], "task_id": st["task_id"], "uuid": u}}))
            .await;
        self.note_refused(&format!("ACKNOWLEDGE {id} {state}"), &o);
        if o == Outcome::Accepted {
            lock(&self.book).acked.insert((id, u), sub);
        }
    }

    async fn tick(&mut self, ticks: u64) {
        let phase = *self.phase.borrow();
        match phase {
            Phase::Run => {
                if self.rng.chance(0.35) {
                    self.kill_one().await;
                }
            }
            Phase::Settle => {
                if ticks.is_multiple_of(2) {
                    self.reconcile(true).await;
                    let again: Vec<String> = lock(&self.book)
                        .tasks
                        .iter()
                        .filter(|(_, n)| n.want_dead && !n.last().is_some_and(final_state))
                        .map(|(id, _)| id.clone())
                        .collect();
                    for id in again {
                        self.kill(&id).await;
                    }
                }
            }
        }
    }

    async fn kill_one(&mut self) {
        let live: Vec<String> = lock(&self.book)
            .tasks
            .iter()
            .filter(|(_, n)| !n.want_dead && !n.last().is_some_and(final_state))
            .map(|(id, _)| id.clone())
            .collect();
        if live.is_empty() {
            return;
        }
        let id = live[self.rng.below(live.len() as u64) as usize].clone();
        self.kill(&id).await;
    }

    async fn kill(&mut self, id: &str) {
        {
            let mut b = lock(&self.book);
            b.kills += 1;
            if let Some(n) = b.tasks.get_mut(id) {
                n.want_dead = true;
            }
        }
        let o = self
            .s
            .call(json!({"type": "KILL", "kill": {"task_id": {"value": id}}}))
            .await;
        self.note_refused(&format!("KILL {id}"), &o);
    }

    /// Explicit reconciliation of every task (`all`), or of those without a final word.
    async fn reconcile(&mut self, all: bool) {
        let tasks: Vec<Value> = lock(&self.book)
            .tasks
            .iter()
            .filter(|(_, n)| all || !n.last().is_some_and(final_state))
            .map(|(id, n)| json!({"task_id": {"value": id}, "agent_id": {"value": n.agent_id}}))
            .collect();
        if tasks.is_empty() {
            return;
        }
        let o = self
            .s
            .call(json!({"type": "RECONCILE", "reconcile": {"tasks": tasks}}))
            .await;
        self.note_refused("RECONCILE", &o);
    }
}

// ---------------------------------------------------------------------------------------------
// The faults.

struct Cluster {
    masters: Vec<HaMaster>,
    partition: Partition,
    master_list: String,
    agent_dirs: Vec<PathBuf>,
    agents: Vec<Option<Agent>>,
    /// The master that is down or cut off, and when it comes back.
    impaired: Option<(usize, Impairment, Instant)>,
    /// Agents that are down, and when they come back.
    agents_down: BTreeMap<usize, Instant>,
    started: Instant,
    /// How many faults of each kind were injected.
    faults: BTreeMap<&'static str, u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Impairment {
    Down,
    Cut,
}

impl Cluster {
    fn log(&self, what: String) {
        eprintln!(
            "[fault test {:>6.1}s] {what}",
            self.started.elapsed().as_secs_f64()
        );
    }

    fn running(&self) -> Vec<usize> {
        (0..self.masters.len())
            .filter(|i| self.masters[*i].running())
            .collect()
    }

    /// The master that says it leads, among those that run (none during an election).
    async fn leader(&self) -> Option<usize> {
        for i in self.running() {
            if self.masters[i]
                .replica()
                .await
                .is_some_and(|r| r["is_leader"] == true)
            {
                return Some(i);
            }
        }
        None
    }

    async fn start_agent(&mut self, i: usize) {
        let a = Agent::start(&self.master_list, &self.agent_dirs[i], AGENT_RES, false).await;
        self.agents[i] = Some(a);
    }

    async fn stop_agent(&mut self, i: usize) {
        if let Some(a) = self.agents[i].take() {
            a.stop().await;
        }
    }

    /// Brings back the impaired master (restart from its disk, or heal).
    async fn recover_master(&mut self) {
        if let Some((i, how, _)) = self.impaired.take() {
            match how {
                Impairment::Down => {
                    self.log(format!(
                        "restart master {} from its disk",
                        self.masters[i].id
                    ));
                    self.masters[i].restart().await;
                }
                Impairment::Cut => {
                    self.log(format!("heal master {}", self.masters[i].id));
                    self.partition.heal();
                }
            }
        }
    }

    async fn recover_agent(&mut self, i: usize) {
        self.agents_down.remove(&i);
        self.log(format!("restart agent {i} on its work dir"));
        self.start_agent(i).await;
    }

    /// What is due comes back; then maybe one more fault.
    async fn step(&mut self, rng: &mut SplitMix64) {
        let now = Instant::now();
        if self.impaired.is_some_and(|(_, _, until)| until <= now) {
            self.recover_master().await;
        }
        let due: Vec<usize> = self
            .agents_down
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(i, _)| *i)
            .collect();
        for i in due {
            self.recover_agent(i).await;
        }
        let until = |rng: &mut SplitMix64, lo: u64, hi: u64| {
            Instant::now() + Duration::from_millis(lo + rng.below(hi - lo))
        };
        match rng.below(10) {
            // The leader or a follower dies; back from its disk 1-6 s later.
            k @ 0..=4 if self.impaired.is_none() => {
                let leader = self.leader().await;
                let i = match leader {
                    Some(l) if k <= 2 => l,
                    _ => {
                        let others: Vec<usize> = self
                            .running()
                            .into_iter()
                            .filter(|i| Some(*i) != leader)
                            .collect();
                        others[rng.below(others.len() as u64) as usize]
                    }
                };
                let was = if Some(i) == leader {
                    "leader"
                } else {
                    "follower"
                };
                self.log(format!("kill master {} ({was})", self.masters[i].id));
                *self
                    .faults
                    .entry(if was == "leader" {
                        "kill leader"
                    } else {
                        "kill follower"
                    })
                    .or_default() += 1;
                self.masters[i].kill().await;
                self.impaired = Some((i, Impairment::Down, until(rng, 1000, 6000)));
            }
            // A master (the leader half of the time) is cut off from the others; healed 1-5 s later.
            5 | 6 if self.impaired.is_none() => {
                let leader = self.leader().await;
                let i = match leader {
                    Some(l) if rng.chance(0.5) => l,
                    _ => rng.below(self.masters.len() as u64) as usize,
                };
                let was = if Some(i) == leader {
                    "leader"
                } else {
                    "follower"
                };
                self.log(format!("cut master {} ({was}) off", self.masters[i].id));
                *self.faults.entry("cut").or_default() += 1;
                self.partition.cut(self.masters[i].id);
                self.impaired = Some((i, Impairment::Cut, until(rng, 1000, 5000)));
            }
            // An agent stops; back on its work dir 1-6 s later (past the 3 s agent timeout
            // half of the time: its tasks go TASK_UNREACHABLE and come back).
            7 | 8 if self.agents_down.len() < 2 => {
                let up: Vec<usize> = (0..AGENTS)
                    .filter(|i| !self.agents_down.contains_key(i))
                    .collect();
                let i = up[rng.below(up.len() as u64) as usize];
                self.log(format!("stop agent {i}"));
                *self.faults.entry("stop agent").or_default() += 1;
                self.stop_agent(i).await;
                self.agents_down.insert(i, until(rng, 1000, 6000));
            }
            _ => {}
        }
    }

    /// Everything back: healed, every master and agent running.
    async fn recover_all(&mut self) {
        self.recover_master().await;
        self.partition.heal();
        let down: Vec<usize> = self.agents_down.keys().copied().collect();
        for i in down {
            self.recover_agent(i).await;
        }
    }

    /// `GET_TASKS` and `GET_AGENTS` from the leader of all three, once it answers both.
    async fn leader_view(&self) -> (usize, Value, Value) {
        support::eventually(
            &w("the leader answers GET_TASKS and GET_AGENTS"),
            || async {
                let l = wait_leader(&self.masters, &[0, 1, 2]).await;
                let ask = |kind: &'static str| async move {
                    let (status, _, text) =
                        self.masters[l].operator_call(json!({"type": kind})).await;
                    (status == 200)
                        .then(|| serde_json::from_str::<Value>(&text).ok())
                        .flatten()
                };
                let tasks = ask("GET_TASKS").await?;
                let agents = ask("GET_AGENTS").await?;
                Some((l, tasks, agents))
            },
        )
        .await
    }
}

/// The leader's tasks by id: state and agent (live ones and completed ones).
fn leader_tasks(get_tasks: &Value) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for k in ["tasks", "completed_tasks"] {
        for t in get_tasks["get_tasks"][k].as_array().into_iter().flatten() {
            out.entry(t["task_id"]["value"].as_str().unwrap_or_default().into())
                .or_default()
                .push((
                    t["state"].as_str().unwrap_or_default().into(),
                    t["agent_id"]["value"].as_str().unwrap_or_default().into(),
                ));
        }
    }
    out
}

/// The states heard, in order, runs of the same one (reconciliation answers) counted once:
/// `STATE(reason)@subscription`, `/r` for a reconciliation answer.
fn heard(h: &[Heard]) -> String {
    let mut out: Vec<(String, usize)> = Vec::new();
    for x in h {
        let s = format!(
            "{}{}({})@{}",
            x.state,
            if x.uuid.is_some() { "" } else { "/r" },
            x.reason,
            x.subscription
        );
        match out.last_mut() {
            Some((last, n)) if *last == s => *n += 1,
            _ => out.push((s, 1)),
        }
    }
    out.iter()
        .map(|(s, n)| {
            if *n > 1 {
                format!("{s} x{n}")
            } else {
                s.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Everything that must hold at the end; the violations found (empty: all hold).
fn violations(
    book: &Book,
    leader: &BTreeMap<String, Vec<(String, String)>>,
    agents: &BTreeMap<String, Vec<OnAgent>>,
    agent_ids: &[Option<String>],
) -> Vec<String> {
    let mut v = Vec::new();
    v.extend(
        book.subscribe_errors
            .iter()
            .map(|e| format!("subscription: {e}")),
    );
    v.extend(book.redelivered.iter().map(|e| format!("redelivered: {e}")));
    v.extend(
        book.strangers
            .iter()
            .map(|e| format!("update for a task never launched: {e}")),
    );
    for (id, n) in &book.tasks {
        let on_leader = leader.get(id).cloned().unwrap_or_default();
        let on_agents = agents.get(id).cloned().unwrap_or_default();
        let ctx = || {
            format!(
                "accept {:?}, killed {}, heard {}, leader {on_leader:?}, agents {on_agents:?}",
                n.accept,
                n.want_dead,
                heard(&n.heard)
            )
        };
        // Nothing comes back after a final word: not in the ordered stream of updates (uuid),
        // not in the reconciliation answers (the latest state), and nothing at all after
        // TASK_UNKNOWN. (An update queued before the task ended may still arrive after a
        // reconciliation answer named its end: Mesos delivers updates in order, and answers
        // reconciliation with the latest state.)
        let updates: Vec<&Heard> = n.heard.iter().filter(|h| h.uuid.is_some()).collect();
        let answers: Vec<&Heard> = n.heard.iter().filter(|h| h.uuid.is_none()).collect();
        let unknown: Vec<&Heard> = match n.heard.iter().position(|h| h.state == "TASK_UNKNOWN") {
            Some(p) => n.heard[p..].iter().collect(),
            None => Vec::new(),
        };
        for seq in [updates, answers, unknown] {
            if let Some(p) = seq.iter().position(|h| final_state(&h.state))
                && let Some(later) = seq[p..].iter().find(|h| h.state != seq[p].state)
            {
                v.push(format!(
                    "{id}: {} after {}: {}",
                    later.state,
                    seq[p].state,
                    ctx()
                ));
            }
        }
        let launches: usize = on_agents.iter().map(|a| a.launches).sum();
        if launches > 1 || on_agents.len() > 1 {
            v.push(format!(
                "{id} started {launches} times on {} agents: {}",
                on_agents.len(),
                ctx()
            ));
        }
        if on_leader.len() > 1 {
            v.push(format!("{id} is listed twice by the leader: {}", ctx()));
        }
        let live: Vec<&OnAgent> = on_agents.iter().filter(|a| a.live).collect();
        match n.last() {
            Some("TASK_RUNNING") => {
                let agrees = on_leader.len() == 1 && on_leader[0].0 == "TASK_RUNNING";
                let runs = live.len() == 1
                    && live[0].state == "TASK_RUNNING"
                    && agent_ids[live[0].agent].as_deref() == Some(on_leader[0].1.as_str());
                if !agrees || !runs {
                    v.push(format!("{id} RUNNING to the framework: {}", ctx()));
                }
            }
            Some("TASK_UNKNOWN") => {
                let committed = n.accept == Some(Outcome::Accepted);
                if committed || !on_leader.is_empty() || launches > 0 || !on_agents.is_empty() {
                    v.push(format!("{id} UNKNOWN to the framework: {}", ctx()));
                }
            }
            Some(s) if terminal(s) => {
                let agrees = on_leader.len() == 1 && on_leader[0].0 == s;
                if !agrees || !live.is_empty() {
                    v.push(format!("{id} {s} to the framework: {}", ctx()));
                }
            }
            _ => v.push(format!("{id} has no final word yet: {}", ctx())),
        }
    }
    // The leader and the agents run nothing the framework does not know runs.
    for (id, on_leader) in leader {
        if on_leader.iter().any(|(s, _)| s == "TASK_RUNNING")
            && book.tasks.get(id).and_then(Note::last) != Some("TASK_RUNNING")
        {
            v.push(format!("{id} RUNNING at the leader only: {on_leader:?}"));
        }
    }
    for (id, on_agents) in agents {
        if on_agents.iter().any(|a| a.live)
            && book.tasks.get(id).and_then(Note::last) != Some("TASK_RUNNING")
        {
            v.push(format!(
                "{id} runs on an agent but not to the framework: {on_agents:?}, leader {:?}",
                leader.get(id)
            ));
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn masters_and_agents_killed_restarted_and_cut_off_at_random_lose_and_double_no_task() {
    let seed = seed();
    let secs = fault_secs();
    // RUST_LOG=dccore=info shows what the masters and agents did around a failure.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    eprintln!("{} faults for {secs} s", replay());
    let mut rng = SplitMix64::new(seed);
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().to_path_buf();
    let partition = Partition::default();
    let masters = start_masters(&root, 3, &partition).await;
    wait_leader(&masters, &[0, 1, 2]).await;
    let master_list = masters
        .iter()
        .map(|m| m.url.clone())
        .collect::<Vec<_>>()
        .join(",");
    let agent_dirs: Vec<PathBuf> = (0..AGENTS).map(|i| root.join(format!("a{i}"))).collect();
    let _reaper = Reaper(agent_dirs.clone());
    let mut c = Cluster {
        masters,
        partition: partition.clone(),
        master_list,
        agent_dirs: agent_dirs.clone(),
        agents: (0..AGENTS).map(|_| None).collect(),
        impaired: None,
        agents_down: BTreeMap::new(),
        started: Instant::now(),
        faults: BTreeMap::new(),
    };
    for i in 0..AGENTS {
        c.start_agent(i).await;
    }
    support::eventually(&w("every agent registered with the leader"), || async {
        let (_, _, agents) = c.leader_view().await;
        (agents["get_agents"]["agents"].as_array()?.len() == AGENTS).then_some(())
    })
    .await;

    let book: Shared = Arc::default();
    let (phase_tx, phase) = watch::channel(Phase::Run);
    let stop = CancellationToken::new();
    let urls: Vec<String> = c.masters.iter().map(|m| m.url.clone()).collect();
    let fw = Framework {
        s: HaScheduler::new(&urls, framework_info("faults")),
        rng: SplitMix64::new(seed ^ 0x00F4_A3E5_0000_0001),
        book: book.clone(),
        phase,
        next_task: 0,
    };
    let framework = tokio::spawn(fw.run(stop.clone()));

    // The faults, one step every 0.3-1.5 s.
    let end = Instant::now() + Duration::from_secs(secs);
    let mut steps = 0u64;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(300 + rng.below(1200))).await;
        c.step(&mut rng).await;
        steps += 1;
    }
    c.log(format!("{steps} steps done: everything back"));
    c.recover_all().await;
    let _ = phase_tx.send(Phase::Settle);

    // Everyone agrees, or the test fails with what they disagree on.
    let deadline = Instant::now() + SETTLE;
    let mut last: Vec<String>;
    loop {
        let (l, tasks, agents) = c.leader_view().await;
        let by_url: HashMap<String, String> = agents["get_agents"]["agents"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["active"] == true)
            .filter_map(|a| {
                Some((
                    a["url"].as_str()?.to_string(),
                    a["agent_info"]["id"]["value"]
                        .as_str()
                        .or(a["id"]["value"].as_str())?
                        .to_string(),
                ))
            })
            .collect();
        let agent_ids: Vec<Option<String>> = c
            .agents
            .iter()
            .map(|a| a.as_ref().and_then(|a| by_url.get(&a.url).cloned()))
            .collect();
        let fid = lock(&book).framework_id.clone().unwrap_or_default();
        let on_agents = agents_view(&agent_dirs, &fid);
        last = {
            let b = lock(&book);
            let mut v = violations(&b, &leader_tasks(&tasks), &on_agents, &agent_ids);
            if agent_ids.iter().any(Option::is_none) {
                v.push(format!(
                    "not every agent is registered with the leader (master {}): {agent_ids:?}",
                    c.masters[l].id
                ));
            }
            v
        };
        if last.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stop.cancel();
    support::within(&w("the framework stops"), framework)
        .await
        .unwrap_or_else(|e| panic!("the framework's task failed: {e} {}", replay()));
    let b = Arc::try_unwrap(book)
        .expect("the framework's task has ended")
        .into_inner()
        .expect("the framework's book");
    let states: BTreeMap<&str, usize> = b.tasks.values().fold(BTreeMap::new(), |mut m, n| {
        *m.entry(n.last().unwrap_or("none")).or_default() += 1;
        m
    });
    eprintln!(
        "{} {steps} fault steps {:?}; {} tasks in {} ACCEPTs, {} kills, {} subscriptions; final states {states:?}; refused calls {:?}",
        replay(),
        c.faults,
        b.tasks.len(),
        b.accepts,
        b.kills,
        b.subscriptions,
        b.refused
    );
    assert!(
        last.is_empty(),
        "{} violations after {SETTLE:?} of settling {}:\n{}",
        last.len(),
        replay(),
        last.join("\n")
    );
    let master_faults = c.faults.get("kill leader").unwrap_or(&0)
        + c.faults.get("kill follower").unwrap_or(&0)
        + c.faults.get("cut").unwrap_or(&0);
    assert!(
        b.tasks.len() >= 10 && master_faults > 0,
        "the test did too little to mean anything ({} tasks, faults {:?}) {}",
        b.tasks.len(),
        c.faults,
        replay()
    );
    for i in 0..AGENTS {
        c.stop_agent(i).await;
    }
    for m in c.masters.iter_mut() {
        m.kill().await;
    }
}
