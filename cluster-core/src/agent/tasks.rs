//! The agent's task table: launch, kill, monitor, recover after restart. The table is behind a
//! `std::sync::Mutex` held only for short sections, never across an `.await`.

use super::AgentConfig;
use super::cgroup::Cgroups;
use super::checkpoint::{Checkpoints, TaskCheckpoint, cgroup_name, safe_name};
use super::executor::{self, Proc};
use super::users::TaskUsers;
use crate::proto::internal::ReportedTask;
use crate::proto::{Id, TaskInfo, TaskState, TaskStatus};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(super) type TaskKey = (String, String);

/// A launch request's tasks are started on this many blocking threads side by side. Starting a
/// task is mostly waiting (fork and exec, the checkpoint's fsync), so a few at once finish a
/// large batch sooner than one after the other; and none of it holds up an async worker (the
/// HTTP server, the link to the master, the task monitors).
const LAUNCHERS: usize = 4;

struct Entry {
    cp: TaskCheckpoint,
    kill: CancellationToken,
    /// Upper bound of the kill grace period set by the kill request (operator drain), read when
    /// the kill starts.
    grace_cap: Option<Duration>,
    /// Killed after this many failed health checks in a row (see [`super::health`]).
    unhealthy_after: Option<u32>,
}

/// A status update waiting to reach the master.
#[derive(Debug)]
pub(super) struct Outgoing {
    pub framework_id: Id,
    pub status: TaskStatus,
}

/// Shared agent state.
pub(super) struct Agent {
    pub cfg: AgentConfig,
    pub url: String,
    pub shutdown: CancellationToken,
    pub checkpoints: Checkpoints,
    pub agent_id: Mutex<Option<String>>,
    tasks: Mutex<HashMap<TaskKey, Entry>>,
    /// Kills that arrived before their launch (the two requests race): such a launch is refused.
    killed_early: Mutex<std::collections::HashSet<TaskKey>>,
    /// Owns one monitor task per running process.
    pub monitors: TaskTracker,
    outbox: mpsc::UnboundedSender<Outgoing>,
    outbox_rx: Mutex<Option<mpsc::UnboundedReceiver<Outgoing>>>,
    pub http: reqwest::Client,
    /// Task limits, where the host supports cgroups v2.
    cgroups: Option<Cgroups>,
    /// Which user tasks run as.
    pub users: TaskUsers,
    /// The secret the master calls this agent run with (sent in the registration).
    pub callback_token: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep going with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Agent {
    pub fn new(
        cfg: AgentConfig,
        url: String,
        shutdown: CancellationToken,
        http: reqwest::Client,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let checkpoints = Checkpoints::new(&cfg.work_dir);
        let cgroups = cfg.cgroup_base.as_deref().and_then(Cgroups::detect);
        Agent {
            cgroups,
            users: TaskUsers::detect(&cfg.default_task_user),
            callback_token: super::new_secret(),
            agent_id: Mutex::new(checkpoints.agent_id()),
            checkpoints,
            cfg,
            url,
            shutdown,
            tasks: Mutex::new(HashMap::new()),
            killed_early: Mutex::new(Default::default()),
            monitors: TaskTracker::new(),
            outbox: tx,
            outbox_rx: Mutex::new(Some(rx)),
            http,
        }
    }

    pub fn take_outbox(&self) -> Option<mpsc::UnboundedReceiver<Outgoing>> {
        lock(&self.outbox_rx).take()
    }

    pub fn id(&self) -> Option<String> {
        lock(&self.agent_id).clone()
    }

    /// Root of all sandboxes (served by `/files`).
    pub fn sandbox_root(&self) -> PathBuf {
        self.cfg.work_dir.join("sandboxes")
    }

    /// The sandbox of a task.
    pub fn sandbox_of(&self, key: &TaskKey) -> PathBuf {
        self.sandbox(&key.0, &key.1)
    }

    fn sandbox(&self, framework_id: &str, task_id: &str) -> PathBuf {
        self.sandbox_root()
            .join(safe_name(framework_id))
            .join(safe_name(task_id))
    }

    /// Tasks to report when (re-)registering.
    pub fn reported(&self) -> Vec<ReportedTask> {
        lock(&self.tasks)
            .values()
            .map(|e| ReportedTask {
                framework_id: e.cp.framework_id.clone(),
                task: e.cp.task.clone(),
                state: e.cp.state,
            })
            .collect()
    }

    /// Records a new state, checkpoints it and queues the update for the master.
    fn emit(&self, key: &TaskKey, state: TaskState, message: String) {
        self.emit_status(key, state, message, None, None);
    }

    /// A health check's result changed: a `TASK_RUNNING` update with `healthy` (a task no
    /// longer running reports nothing).
    pub fn emit_health(&self, key: &TaskKey, healthy: bool) {
        let running = lock(&self.tasks)
            .get(key)
            .is_some_and(|e| e.cp.state == TaskState::Running);
        if running {
            let message = if healthy {
                "health check passed"
            } else {
                "health check failed"
            };
            self.emit_status(
                key,
                TaskState::Running,
                message.into(),
                Some(super::health::REASON),
                Some(healthy),
            );
        }
    }

    /// Kills a task whose health check failed `failures` times in a row; it ends TASK_KILLED,
    /// unhealthy.
    pub fn kill_unhealthy(&self, key: &TaskKey, failures: u32) {
        if let Some(e) = lock(&self.tasks).get_mut(key) {
            e.unhealthy_after = Some(failures);
            e.kill.cancel();
        }
    }

    fn emit_status(
        &self,
        key: &TaskKey,
        state: TaskState,
        message: String,
        reason: Option<&str>,
        healthy: Option<bool>,
    ) {
        let agent_id = self.id().map(Id::new);
        let mut tasks = lock(&self.tasks);
        let Some(e) = tasks.get_mut(key) else { return };
        e.cp.state = state;
        if let Err(err) = self.checkpoints.save_task(&e.cp) {
            tracing::error!(error = %dc_support::error::chain(&err), "cannot checkpoint task");
        }
        let status = TaskStatus::new(
            e.cp.task.task_id.clone(),
            state,
            "SOURCE_EXECUTOR",
            agent_id,
        )
        .with_message(message);
        let status = TaskStatus {
            reason: reason.map(str::to_string),
            healthy,
            ..status
        };
        let _ = self.outbox.send(Outgoing {
            framework_id: e.cp.framework_id.clone(),
            status,
        });
    }

    /// The master has the terminal update: forget the task (its sandbox stays on disk).
    pub fn mark_done(&self, framework_id: &str, task_id: &str) {
        let mut tasks = lock(&self.tasks);
        if let Some(mut e) = tasks.remove(&(framework_id.to_string(), task_id.to_string())) {
            e.cp.done = true;
            if let Err(err) = self.checkpoints.save_task(&e.cp) {
                tracing::error!(error = %dc_support::error::chain(&err), "cannot checkpoint task");
            }
        }
    }

    /// Takes a launch request's tasks into the table (staging) and starts them on the
    /// blocking pool (see [`LAUNCHERS`]); returns before they are started: each task's outcome
    /// reaches the master as its status update. Being in the table first matters: a
    /// re-registration racing the launches reports them, so the master does not take them for
    /// gone. Tasks not started when the agent stops stay unstarted (the next run does not
    /// report them, and the master learns they are gone).
    pub fn launch_all(self: &std::sync::Arc<Self>, framework_id: Id, tasks: Vec<TaskInfo>) {
        let admitted: Vec<_> = tasks
            .into_iter()
            .filter_map(|t| self.admit(&framework_id, t))
            .collect();
        let per = admitted.len().div_ceil(LAUNCHERS).max(1);
        let mut admitted = admitted.into_iter().peekable();
        while admitted.peek().is_some() {
            let chunk: Vec<_> = admitted.by_ref().take(per).collect();
            let me = self.clone();
            // Tracked like the monitors, so a stopping agent waits for the launches under way.
            self.monitors.spawn(async move {
                let launched = tokio::task::spawn_blocking(move || {
                    for (key, task, kill) in chunk {
                        if me.shutdown.is_cancelled() {
                            return;
                        }
                        me.start(key, task, kill);
                    }
                })
                .await;
                if let Err(e) = launched {
                    tracing::error!(error = %e, "a launch thread failed");
                }
            });
        }
    }

    /// Puts a task in the table, staging; `None` for a duplicate launch (ignored).
    fn admit(
        &self,
        framework_id: &Id,
        task: TaskInfo,
    ) -> Option<(TaskKey, TaskInfo, CancellationToken)> {
        let key = (framework_id.value.clone(), task.task_id.value.clone());
        let kill = CancellationToken::new();
        let mut tasks = lock(&self.tasks);
        if tasks.contains_key(&key) {
            return None;
        }
        tasks.insert(
            key.clone(),
            Entry {
                cp: TaskCheckpoint {
                    framework_id: framework_id.clone(),
                    task: task.clone(),
                    pid: None,
                    start_time: None,
                    state: TaskState::Staging,
                    done: false,
                },
                kill: kill.clone(),
                grace_cap: None,
                unhealthy_after: None,
            },
        );
        Some((key, task, kill))
    }

    /// Starts an admitted task. Blocks (sandbox, fork and exec, checkpoint): run on the
    /// blocking pool by [`Agent::launch_all`].
    fn start(self: &std::sync::Arc<Self>, key: TaskKey, task: TaskInfo, kill: CancellationToken) {
        let sandbox = self.sandbox(&key.0, &key.1);
        let mut env = vec![
            ("MESOS_TASK_ID".to_string(), key.1.clone()),
            ("MESOS_FRAMEWORK_ID".to_string(), key.0.clone()),
        ];
        if let Some(id) = self.id() {
            env.push(("MESOS_AGENT_ID".into(), id));
        }
        if lock(&self.killed_early).remove(&key) {
            self.emit(
                &key,
                TaskState::Killed,
                "killed before it was started".into(),
            );
            return;
        }
        let cgroup = self.cgroups.as_ref().and_then(|cg| {
            let res = crate::proto::Resources::from_mesos(&task.resources);
            match cg.create(&cgroup_name(&key.0, &key.1), &res) {
                Ok(dir) => Some(dir),
                Err(e) => {
                    tracing::warn!(task = %key.1, error = %e, "cannot create the task's cgroup; running it without limits");
                    None
                }
            }
        });
        if let Some(dir) = &cgroup {
            env.push(("DCCORE_CGROUP".into(), dir.display().to_string()));
        }
        match executor::spawn(&task, &sandbox, &env, &self.users) {
            Ok(proc) => {
                if let Some(e) = lock(&self.tasks).get_mut(&key) {
                    e.cp.pid = proc.pid();
                    // Read while the child is unreaped, so it is certainly the task's.
                    e.cp.start_time = proc.pid().and_then(executor::start_time);
                }
                tracing::info!(task = %key.1, pid = ?proc.pid(), "task started");
                self.emit(&key, TaskState::Running, "task started".into());
                self.monitor(key, proc, sandbox, kill, cgroup);
            }
            Err(err) => {
                if let Some(dir) = &cgroup {
                    Cgroups::remove(dir);
                }
                self.emit(&key, TaskState::Failed, dc_support::error::chain(&err));
            }
        }
    }

    /// Kills a task, its grace period bounded by `grace_cap` if given. An unknown task is
    /// remembered, so that a launch still in flight is refused.
    pub fn kill(&self, framework_id: &str, task_id: &str, grace_cap: Option<Duration>) {
        let key = (framework_id.to_string(), task_id.to_string());
        match lock(&self.tasks).get_mut(&key) {
            Some(e) => {
                if let Some(cap) = grace_cap {
                    e.grace_cap = Some(e.grace_cap.map_or(cap, |c| c.min(cap)));
                }
                e.kill.cancel();
            }
            None => {
                let mut early = lock(&self.killed_early);
                // Bounded: these are rare races, not a queue.
                if early.len() > 10_000 {
                    early.clear();
                }
                early.insert(key);
            }
        }
    }

    fn monitor(
        self: &std::sync::Arc<Self>,
        key: TaskKey,
        mut proc: Proc,
        sandbox: PathBuf,
        kill: CancellationToken,
        cgroup: Option<PathBuf>,
    ) {
        let me = self.clone();
        let grace = lock(&self.tasks)
            .get(&key)
            .and_then(|e| e.cp.task.kill_policy.as_ref())
            .and_then(|k| k.grace_period.as_ref())
            .map(|d| Duration::from_nanos(d.nanoseconds.max(0) as u64))
            .unwrap_or(self.cfg.kill_grace);
        let checks_done = CancellationToken::new();
        if let Some(task) = lock(&self.tasks)
            .get(&key)
            .map(|e| e.cp.task.clone())
            .filter(|t| t.health_check.is_some())
        {
            self.monitors.spawn(super::health::run(
                self.clone(),
                key.clone(),
                task,
                checks_done.clone(),
            ));
        }
        self.monitors.spawn(async move {
            // The checks end with the task (or the agent).
            let _stop_checks = checks_done.drop_guard();
            let exit = tokio::select! {
                // The agent stops but the task keeps running; the next agent run adopts it.
                _ = me.shutdown.cancelled() => return,
                e = executor::wait(&mut proc, &sandbox) => e,
                _ = kill.cancelled() => {
                    let cap = lock(&me.tasks).get(&key).and_then(|e| e.grace_cap);
                    let grace = cap.map_or(grace, |c| grace.min(c));
                    executor::kill(&mut proc, &sandbox, grace).await
                }
            };
            if let Some(dir) = &cgroup {
                Cgroups::remove(dir);
            }
            tracing::info!(task = %key.1, state = exit.state.name(), message = %exit.message, "task ended");
            let unhealthy = lock(&me.tasks).get(&key).and_then(|e| e.unhealthy_after);
            match unhealthy {
                Some(n) => me.emit_status(
                    &key,
                    exit.state,
                    format!("{} after {n} failed health checks in a row", exit.message),
                    Some(super::health::REASON),
                    Some(false),
                ),
                None => me.emit(&key, exit.state, exit.message),
            }
        });
    }

    /// After a restart: re-attaches to live task processes, reports the others as ended.
    pub fn recover(self: &std::sync::Arc<Self>) {
        for cp in self.checkpoints.load_tasks() {
            let key = (cp.framework_id.value.clone(), cp.task.task_id.value.clone());
            let sandbox = self.sandbox(&key.0, &key.1);
            let kill = CancellationToken::new();
            let pid = cp.pid;
            let start_time = cp.start_time;
            let state = cp.state;
            lock(&self.tasks).insert(
                key.clone(),
                Entry {
                    cp,
                    kill: kill.clone(),
                    grace_cap: None,
                    unhealthy_after: None,
                },
            );
            if state.is_terminal() {
                // Ended, but the master may not have heard: report again.
                self.emit(&key, state, "reported again after an agent restart".into());
                continue;
            }
            // A live pid is the task only if it is still the process that was started; anything
            // else (a later process given the same pid) is never adopted, so never signalled.
            let ours = match (pid, start_time) {
                (Some(p), Some(t)) => executor::same_process(p, t).then_some((p, t)),
                // Checkpoints written before start times were recorded: the task's wrapper runs
                // in its sandbox, a stranger given the same pid does not.
                (Some(p), None) => executor::runs_in(p, &sandbox)
                    .then(|| executor::start_time(p))
                    .flatten()
                    .map(|t| (p, t)),
                _ => None,
            };
            match (pid, ours) {
                (_, Some((pid, start_time))) => {
                    tracing::info!(task = %key.1, pid, "re-attached to a running task");
                    let name = cgroup_name(&key.0, &key.1);
                    let cgroup = self.cgroups.as_ref().map(|cg| cg.path(&name));
                    let proc = Proc::Adopted { pid, start_time };
                    self.monitor(key, proc, sandbox, kill, cgroup);
                }
                (Some(pid), None) if executor::alive(pid) => {
                    tracing::warn!(task = %key.1, pid, "the task's pid now belongs to another process (start time differs): not adopted");
                    let mut exit = executor::exit_of_gone(&sandbox);
                    exit.message = format!(
                        "{}; pid {pid} now belongs to another process, which is left alone",
                        exit.message
                    );
                    self.emit(&key, exit.state, exit.message);
                }
                _ => {
                    let exit = if pid.is_some() {
                        executor::exit_of_gone(&sandbox)
                    } else {
                        executor::Exit {
                            state: TaskState::Failed,
                            message: "the agent restarted before the task was started".into(),
                        }
                    };
                    self.emit(&key, exit.state, exit.message);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn agent(dir: &std::path::Path) -> Arc<Agent> {
        let mut cfg = AgentConfig::new("http://127.0.0.1:9", dir, "t");
        cfg.cgroup_base = None;
        let http = dccore_api::tls::Tls::default()
            .http_client()
            .expect("TLS config")
            .build()
            .expect("client");
        Arc::new(Agent::new(
            cfg,
            "http://127.0.0.1:9".into(),
            CancellationToken::new(),
            http,
        ))
    }

    /// A process in its own process group, like a task's wrapper.
    fn process_group_leader() -> tokio::process::Child {
        tokio::process::Command::new("sleep")
            .arg("60")
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn sleep")
    }

    fn checkpoint(agent: &Agent, pid: u32, start_time: u64) {
        let task: TaskInfo = serde_json::from_value(serde_json::json!({
            "task_id": {"value": "t"}, "agent_id": {"value": "a"},
            "command": {"value": "sleep 60"}}))
        .expect("task info");
        agent
            .checkpoints
            .save_task(&TaskCheckpoint {
                framework_id: Id::new("fw"),
                task,
                pid: Some(pid),
                start_time: Some(start_time),
                state: TaskState::Running,
                done: false,
            })
            .expect("checkpoint");
    }

    #[tokio::test]
    async fn a_checkpointed_pid_whose_start_time_differs_is_never_adopted_or_signalled() {
        let dir = tempfile::tempdir().unwrap();
        let agent = agent(dir.path());
        let mut stranger = process_group_leader();
        let pid = stranger.id().unwrap();
        let started = executor::start_time(pid).expect("start time of a live process");
        // The task's process ended while the agent was down and its pid went to `stranger`.
        checkpoint(&agent, pid, started + 1);
        let mut outbox = agent.take_outbox().unwrap();
        agent.recover();
        let o = outbox
            .try_recv()
            .expect("the task is reported ended at once");
        assert_eq!(o.status.state, TaskState::Failed);
        let msg = o.status.message.unwrap_or_default();
        assert!(msg.contains("belongs to another process"), "{msg}");
        agent.kill("fw", "t", Some(Duration::ZERO));
        // Killing a process with that pid but another start time sends no signal either.
        let sandbox = agent.sandbox("fw", "t");
        let mut proc = Proc::Adopted {
            pid,
            start_time: started + 1,
        };
        executor::kill(&mut proc, &sandbox, Duration::from_millis(100)).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(500), stranger.wait())
                .await
                .is_err(),
            "the stranger holding the reused pid was signalled"
        );
        assert!(executor::same_process(pid, started));
        stranger.start_kill().unwrap();
    }

    #[tokio::test]
    async fn a_checkpointed_task_still_running_is_adopted_and_killed() {
        let dir = tempfile::tempdir().unwrap();
        let agent = agent(dir.path());
        let mut task = process_group_leader();
        let pid = task.id().unwrap();
        checkpoint(&agent, pid, executor::start_time(pid).unwrap());
        let mut outbox = agent.take_outbox().unwrap();
        agent.recover();
        assert!(outbox.try_recv().is_err(), "adopted: nothing to report yet");
        agent.kill("fw", "t", Some(Duration::ZERO));
        let o = tokio::time::timeout(Duration::from_secs(10), outbox.recv())
            .await
            .expect("the kill is reported within 10 s")
            .expect("outbox open");
        assert_eq!(o.status.state, TaskState::Killed);
        let st = tokio::time::timeout(Duration::from_secs(10), task.wait())
            .await
            .expect("the adopted process ends within 10 s")
            .unwrap();
        assert!(!st.success());
    }
}
