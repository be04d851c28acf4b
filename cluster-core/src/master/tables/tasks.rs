//! The tasks table: live tasks, the agent → tasks index, status updates waiting for
//! acknowledgement, and the bounded list of completed tasks.
//!
//! Invariants kept here (nothing outside this file can break them, as only [`super::apply`]
//! holds a `&mut Tasks`):
//! * `by_agent` holds exactly the keys of `live`, under each task's agent;
//! * `unacked` holds exactly the live tasks with a pending update;
//! * a terminal task whose updates are all acknowledged is moved to `completed` at once;
//! * a task holds resources only while it is neither terminal nor unreachable, and each hold or
//!   release is reported once (as a [`Hold`]) so the allocator counts it exactly once.

use crate::proto::{Resources, TaskInfo, TaskState, TaskStatus};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

/// Task key: (framework id, task id).
pub type TaskKey = (String, String);

/// Status history kept per task.
const STATUSES_KEPT: usize = 16;

/// One task as the master knows it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskRec {
    /// Framework id.
    pub framework_id: String,
    /// Agent id.
    pub agent_id: String,
    /// The task as launched (its verbose resource list dropped: `resources` has the parsed one).
    pub info: TaskInfo,
    /// What it uses.
    pub resources: Resources,
    /// Latest state.
    pub state: TaskState,
    /// Resources are counted in the allocator (false once terminal or unreachable).
    pub holds_resources: bool,
    /// Recent updates, oldest first.
    pub statuses: Vec<TaskStatus>,
    /// Updates to deliver, head first; the head is resent until acknowledged.
    pub pending: VecDeque<TaskStatus>,
    /// The latest `healthy` an update carried (`None`: never checked, or no health check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
}

impl TaskRec {
    /// A new task in `TASK_STAGING` that holds nothing yet.
    pub fn staging(framework_id: &str, agent_id: &str, info: TaskInfo, res: Resources) -> Self {
        TaskRec {
            framework_id: framework_id.to_string(),
            agent_id: agent_id.to_string(),
            info,
            resources: res,
            state: TaskState::Staging,
            holds_resources: false,
            statuses: Vec::new(),
            pending: VecDeque::new(),
            healthy: None,
        }
    }

    /// Discovery publishes the task: it runs and is healthy, or has no health check and none
    /// reported it unhealthy (an agent-run check not yet passed hides it).
    pub fn discoverable(&self) -> bool {
        self.state == TaskState::Running
            && match self.healthy {
                Some(h) => h,
                None => self.info.health_check.is_none(),
            }
    }

    fn may_hold(&self) -> bool {
        !self.state.is_terminal() && self.state != TaskState::Unreachable
    }
}

/// Resources a task started or stopped holding on an agent, for the allocator.
#[derive(Clone, Debug, PartialEq)]
pub struct Hold {
    /// Framework.
    pub framework_id: String,
    /// Agent.
    pub agent_id: String,
    /// How much.
    pub resources: Resources,
}

impl Hold {
    fn of(t: &TaskRec) -> Self {
        Hold {
            framework_id: t.framework_id.clone(),
            agent_id: t.agent_id.clone(),
            resources: t.resources.clone(),
        }
    }
}

/// What recording a status update did.
#[derive(Debug, Default, PartialEq)]
pub struct Recorded {
    /// The update carries a uuid and is now the head of the task's queue: deliver it.
    pub new_head: bool,
    /// The update carries no uuid: deliver it once, no acknowledgement expected.
    pub unreliable: Option<TaskStatus>,
    /// The task's resources were released.
    pub released: Option<Hold>,
    /// The task moved to the completed list.
    pub completed: bool,
}

/// The live and completed tasks. Serialised through [`TasksWire`] (JSON has no tuple keys and
/// no `&'static str` to borrow from).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(into = "TasksWire", from = "TasksWire")]
pub struct Tasks {
    // Arc: a view snapshot copies pointers, not tasks; a change copies only the task it touches
    // while a snapshot still holds it (`Arc::make_mut`).
    live: HashMap<TaskKey, Arc<TaskRec>>,
    by_agent: HashMap<String, HashSet<TaskKey>>,
    unacked: HashSet<TaskKey>,
    /// Killed while their agent was unreachable: killed when it re-registers.
    doomed: HashSet<TaskKey>,
    completed: CompletedTasks,
    completed_by_state: BTreeMap<&'static str, u64>,
}

impl Tasks {
    /// No tasks; at most `max_completed_per_framework` completed ones kept per framework.
    pub fn new(max_completed_per_framework: usize) -> Self {
        Tasks {
            completed: CompletedTasks::new(max_completed_per_framework),
            ..Default::default()
        }
    }

    /// A live task.
    pub fn get(&self, key: &TaskKey) -> Option<&TaskRec> {
        self.live.get(key).map(|t| &**t)
    }

    /// Is the task live?
    pub fn contains(&self, key: &TaskKey) -> bool {
        self.live.contains_key(key)
    }

    /// Every live task.
    pub fn iter(&self) -> impl Iterator<Item = &TaskRec> {
        self.live.values().map(|t| &**t)
    }

    /// Live tasks as shared pointers (for view snapshots).
    pub fn shared(&self) -> impl Iterator<Item = &Arc<TaskRec>> {
        self.live.values()
    }

    /// The live tasks on an agent, sorted (so that whatever follows from the order, such as
    /// the order of the holds a change releases, is the same on every replica).
    pub fn on_agent(&self, agent_id: &str) -> Vec<TaskKey> {
        let mut keys: Vec<TaskKey> = self
            .by_agent
            .get(agent_id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }

    /// Live tasks of a framework, sorted (a teardown completes them in this order).
    pub fn of_framework(&self, framework_id: &str) -> Vec<TaskKey> {
        let mut keys: Vec<TaskKey> = self
            .live
            .keys()
            .filter(|k| k.0 == framework_id)
            .cloned()
            .collect();
        keys.sort();
        keys
    }

    /// Tasks with an update waiting for acknowledgement.
    pub fn unacked(&self) -> impl Iterator<Item = &TaskKey> {
        self.unacked.iter()
    }

    /// How many tasks wait for an acknowledgement.
    pub fn unacked_len(&self) -> usize {
        self.unacked.len()
    }

    /// Is the task to be killed when its agent re-registers?
    pub fn is_doomed(&self, key: &TaskKey) -> bool {
        self.doomed.contains(key)
    }

    /// A framework's completed tasks, oldest first.
    pub fn completed_of(&self, framework_id: &str) -> impl DoubleEndedIterator<Item = &TaskRec> {
        self.completed.of(framework_id)
    }

    /// Every completed task (for view snapshots).
    pub fn completed_shared(&self) -> impl Iterator<Item = &Arc<TaskRec>> {
        self.completed.iter()
    }

    /// How many completed tasks are kept.
    pub fn completed_len(&self) -> usize {
        self.completed.len()
    }

    /// Tasks completed since start, by final state.
    pub fn completed_by_state(&self) -> &BTreeMap<&'static str, u64> {
        &self.completed_by_state
    }

    /// Adds a task (keeps the agent index); false if the key is taken.
    pub(super) fn insert(&mut self, rec: TaskRec) -> bool {
        let key = (rec.framework_id.clone(), rec.info.task_id.value.clone());
        if self.live.contains_key(&key) {
            return false;
        }
        self.by_agent
            .entry(rec.agent_id.clone())
            .or_default()
            .insert(key.clone());
        self.live.insert(key, Arc::new(rec));
        true
    }

    fn get_mut(&mut self, key: &TaskKey) -> Option<&mut TaskRec> {
        self.live.get_mut(key).map(Arc::make_mut)
    }

    /// Removes a task from `live` and every index.
    fn remove(&mut self, key: &TaskKey) -> Option<TaskRec> {
        let rec = self.live.remove(key)?;
        if let Some(set) = self.by_agent.get_mut(&rec.agent_id) {
            set.remove(key);
            if set.is_empty() {
                self.by_agent.remove(&rec.agent_id);
            }
        }
        self.unacked.remove(key);
        Some(Arc::unwrap_or_clone(rec))
    }

    fn complete(&mut self, t: TaskRec) {
        *self.completed_by_state.entry(t.state.name()).or_default() += 1;
        self.completed.push(t);
    }

    /// Counts a live task's resources (idempotent); the hold, if it is new.
    pub(super) fn hold(&mut self, key: &TaskKey) -> Option<Hold> {
        let t = self.get_mut(key)?;
        if t.holds_resources || !t.may_hold() {
            return None;
        }
        t.holds_resources = true;
        Some(Hold::of(t))
    }

    /// Gives a task's resources back (idempotent); the release, if there was a hold.
    pub(super) fn release(&mut self, key: &TaskKey) -> Option<Hold> {
        let t = self.get_mut(key)?;
        if !t.holds_resources {
            return None;
        }
        t.holds_resources = false;
        Some(Hold::of(t))
    }

    /// Sets a task's state without an update (an agent re-registering reports it).
    pub(super) fn set_state(&mut self, key: &TaskKey, state: TaskState) {
        if let Some(t) = self.get_mut(key) {
            t.state = state;
        }
    }

    /// Records a status update. Updates with a uuid queue for delivery one at a time; a terminal
    /// or unreachable state releases the task's resources; a finished task completes.
    pub(super) fn record_status(&mut self, key: &TaskKey, status: TaskStatus) -> Recorded {
        let mut out = Recorded::default();
        let Some(t) = self.get_mut(key) else {
            return out;
        };
        t.state = status.state;
        if status.healthy.is_some() {
            t.healthy = status.healthy;
        }
        t.statuses.push(status.clone());
        if t.statuses.len() > STATUSES_KEPT {
            t.statuses.remove(0);
        }
        let releases = !t.may_hold();
        if status.uuid.is_some() {
            t.pending.push_back(status);
            if t.pending.len() == 1 {
                out.new_head = true;
                self.unacked.insert(key.clone());
            }
        } else {
            out.unreliable = Some(status);
        }
        if releases {
            out.released = self.release(key);
        }
        out.completed = self.complete_if_done(key);
        out
    }

    /// Records a task's health as its framework reports it; true if it changed.
    pub(super) fn set_healthy(&mut self, key: &TaskKey, healthy: bool) -> bool {
        if self.get(key).is_none_or(|t| t.healthy == Some(healthy)) {
            return false;
        }
        self.get_mut(key)
            .map(|t| t.healthy = Some(healthy))
            .is_some()
    }

    /// ACKNOWLEDGE of the head update with `uuid`. `None` if it is not the head; else whether
    /// another update now heads the queue, and whether the task completed.
    pub(super) fn acknowledge(&mut self, key: &TaskKey, uuid: &str) -> Option<(bool, bool)> {
        let t = self.get_mut(key)?;
        if t.pending.front().and_then(|s| s.uuid.as_deref()) != Some(uuid) {
            return None;
        }
        t.pending.pop_front();
        let more = !t.pending.is_empty();
        if !more {
            // Most tasks sit idle with nothing pending: give the queue's buffer back.
            t.pending = VecDeque::new();
            self.unacked.remove(key);
        }
        Some((more, self.complete_if_done(key)))
    }

    /// Terminal tasks whose updates are all acknowledged move to the completed list.
    fn complete_if_done(&mut self, key: &TaskKey) -> bool {
        let done = self
            .get(key)
            .is_some_and(|t| t.state.is_terminal() && t.pending.is_empty());
        if done && let Some(t) = self.remove(key) {
            self.complete(t);
        }
        done
    }

    /// Marks a task to be killed when its agent re-registers.
    pub(super) fn doom(&mut self, key: &TaskKey) {
        self.doomed.insert(key.clone());
    }

    /// The kill of a doomed task was ordered: it is no longer doomed. True if it was.
    pub(super) fn undoom(&mut self, key: &TaskKey) -> bool {
        self.doomed.remove(key)
    }

    /// Ends every task of a framework (torn down): live ones become `TASK_KILLED` and all move
    /// to the completed list. Returns the released holds.
    pub(super) fn end_framework(&mut self, framework_id: &str) -> Vec<Hold> {
        let mut released = Vec::new();
        for k in self.of_framework(framework_id) {
            released.extend(self.release(&k));
            if let Some(mut t) = self.remove(&k) {
                if !t.state.is_terminal() {
                    t.state = TaskState::Killed;
                }
                self.complete(t);
            }
        }
        released
    }

    /// Forgets a framework's completed tasks (the framework left the removed list).
    pub(super) fn forget_framework(&mut self, framework_id: &str) {
        self.completed.forget(framework_id);
    }
}

/// The serialised form of [`Tasks`]: every field as it is (none rebuilt from the invariants, so
/// a snapshot restores exactly what was saved), maps as lists of pairs.
#[derive(serde::Serialize, serde::Deserialize)]
struct TasksWire {
    live: Vec<TaskRec>,
    by_agent: Vec<(String, Vec<TaskKey>)>,
    unacked: Vec<TaskKey>,
    doomed: Vec<TaskKey>,
    completed: Vec<(String, Vec<TaskRec>)>,
    max_completed_per_framework: usize,
    completed_by_state: Vec<(TaskState, u64)>,
}

impl From<Tasks> for TasksWire {
    fn from(t: Tasks) -> Self {
        let unwrap = |a: Arc<TaskRec>| Arc::try_unwrap(a).unwrap_or_else(|a| (*a).clone());
        TasksWire {
            live: t.live.into_values().map(unwrap).collect(),
            by_agent: t
                .by_agent
                .into_iter()
                .map(|(a, keys)| (a, keys.into_iter().collect()))
                .collect(),
            unacked: t.unacked.into_iter().collect(),
            doomed: t.doomed.into_iter().collect(),
            completed: t
                .completed
                .by_framework
                .into_iter()
                .map(|(f, q)| (f, q.into_iter().map(unwrap).collect()))
                .collect(),
            max_completed_per_framework: t.completed.max_per_framework,
            completed_by_state: t
                .completed_by_state
                .into_iter()
                // Every key was a `TaskState::name`, so none is dropped here.
                .filter_map(|(name, n)| Some((state_named(name)?, n)))
                .collect(),
        }
    }
}

impl From<TasksWire> for Tasks {
    fn from(w: TasksWire) -> Self {
        let key = |t: &TaskRec| (t.framework_id.clone(), t.info.task_id.value.clone());
        Tasks {
            live: w.live.into_iter().map(|t| (key(&t), Arc::new(t))).collect(),
            by_agent: w
                .by_agent
                .into_iter()
                .map(|(a, keys)| (a, keys.into_iter().collect()))
                .collect(),
            unacked: w.unacked.into_iter().collect(),
            doomed: w.doomed.into_iter().collect(),
            completed: CompletedTasks {
                by_framework: w
                    .completed
                    .into_iter()
                    .map(|(f, q)| (f, q.into_iter().map(Arc::new).collect()))
                    .collect(),
                max_per_framework: w.max_completed_per_framework,
            },
            completed_by_state: w
                .completed_by_state
                .into_iter()
                .map(|(s, n)| (s.name(), n))
                .collect(),
        }
    }
}

/// The state whose [`TaskState::name`] is `name` (the counters are keyed by name).
fn state_named(name: &str) -> Option<TaskState> {
    use TaskState::*;
    [
        Staging,
        Starting,
        Running,
        Killing,
        Finished,
        Failed,
        Killed,
        Error,
        Lost,
        Dropped,
        Unreachable,
        Gone,
        GoneByOperator,
        Unknown,
    ]
    .into_iter()
    .find(|s| s.name() == name)
}

/// Completed tasks kept for the operator API and reconciliation, at most `max_per_framework` of
/// each framework (oldest dropped first); a removed framework's go when it is forgotten.
#[derive(Clone, Debug, Default, PartialEq)]
struct CompletedTasks {
    by_framework: HashMap<String, VecDeque<Arc<TaskRec>>>,
    max_per_framework: usize,
}

impl CompletedTasks {
    fn new(max_per_framework: usize) -> Self {
        CompletedTasks {
            by_framework: HashMap::new(),
            max_per_framework,
        }
    }

    fn push(&mut self, t: TaskRec) {
        if self.max_per_framework == 0 {
            return;
        }
        let q = self.by_framework.entry(t.framework_id.clone()).or_default();
        q.push_back(Arc::new(t));
        while q.len() > self.max_per_framework {
            q.pop_front();
        }
    }

    fn of(&self, framework_id: &str) -> impl DoubleEndedIterator<Item = &TaskRec> {
        self.by_framework
            .get(framework_id)
            .into_iter()
            .flatten()
            .map(|t| &**t)
    }

    fn iter(&self) -> impl Iterator<Item = &Arc<TaskRec>> {
        self.by_framework.values().flatten()
    }

    fn forget(&mut self, framework_id: &str) {
        self.by_framework.remove(framework_id);
    }

    fn len(&self) -> usize {
        self.by_framework.values().map(VecDeque::len).sum()
    }
}
