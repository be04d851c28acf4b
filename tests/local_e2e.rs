//! The `local` provider end to end, with the real `dccore`: apply examples/local.hcl, see every agent
//! registered through `dcform status`, run a task through the scheduler API and read its output, re-apply
//! (no changes), kill an apply half-way and converge, destroy and leave no process behind.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use dc_support::testing::output_within;
use support::mesos::Scheduler;

/// Bound of one dcform run here (the largest apply makes 7 local nodes).
const RUN: Duration = Duration::from_secs(300);

fn dcform(args: &[&str]) -> Output {
    output_within(RUN, Command::new(env!("CARGO_BIN_EXE_dcform")).args(args))
}

/// Sends a signal with kill(1), e.g. `kill(&["-9", "--", "-1234"])`; its exit status.
fn kill(args: &[&str]) -> std::process::ExitStatus {
    output_within(Duration::from_secs(10), Command::new("kill").args(args)).status
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A copy of examples/local.hcl in a fresh folder, destroyed (processes and all) when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    def: PathBuf,
}

impl Cluster {
    fn new(name: &str) -> Cluster {
        core_binary_is_built();
        let dir = tempfile::tempdir().unwrap();
        let def = dir.path().join("local.hcl");
        let src = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/local.hcl"),
        )
        .unwrap();
        std::fs::write(
            &def,
            src.replace("cluster \"local\"", &format!("cluster \"{name}\"")),
        )
        .unwrap();
        Cluster { dir, def }
    }

    fn def(&self) -> &str {
        self.def.to_str().unwrap()
    }

    fn status(&self) -> serde_json::Value {
        let o = dcform(&["status", "--json", self.def()]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        serde_json::from_slice(&o.stdout).expect("status json")
    }

    fn sandbox_pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        let Ok(walk) = glob_pid_files(self.dir.path()) else {
            return pids;
        };
        for f in walk {
            if let Some(p) = std::fs::read_to_string(&f)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                && Path::new(&format!("/proc/{p}")).exists()
            {
                pids.push(p);
            }
        }
        pids
    }
}

impl Cluster {
    /// Live `dccore supervise` processes whose command line points into this cluster's folder.
    fn supervisors(&self) -> usize {
        let root = self.dir.path().to_string_lossy().to_string();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains(" supervise ") && c.contains(&root))
            .count()
    }
}

impl Cluster {
    /// Starts `dcform apply -var VAR` in the background and returns once the state records an agent (the
    /// master is up and the agents' wave has begun), or the apply ended.
    async fn apply_until_agents_start(&self, var: &str, capture: bool) -> std::process::Child {
        let state = self
            .dir
            .path()
            .join(".dcform")
            .join(self.name())
            .join("state.json");
        let out = || {
            if capture {
                Stdio::piped()
            } else {
                Stdio::null()
            }
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_dcform"))
            .args(["apply", "--auto-approve", "-var", var, self.def()])
            .stdin(Stdio::null())
            .stdout(out())
            .stderr(out())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !std::fs::read_to_string(&state)
            .unwrap_or_default()
            .contains("\"agents-")
            && child.try_wait().unwrap().is_none()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "apply never got to the agents"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        child
    }

    /// The state file of this cluster.
    fn state_path(&self) -> PathBuf {
        self.dir
            .path()
            .join(".dcform")
            .join(self.name())
            .join("state.json")
    }

    fn name(&self) -> String {
        std::fs::read_to_string(&self.def)
            .unwrap()
            .lines()
            .find_map(|l| {
                l.strip_prefix("cluster \"")
                    .and_then(|r| r.split('"').next())
                    .map(String::from)
            })
            .unwrap()
    }
}

/// A framework subscribed to the cluster `status` describes, with the cluster access it used.
async fn framework(status: &serde_json::Value, name: &str) -> (Scheduler, Access) {
    let master = status["outputs"]["master_url"]
        .as_str()
        .unwrap()
        .to_string();
    let token_file = Path::new(status["outputs"]["token_file"].as_str().unwrap());
    let access = Access::of(token_file.parent().unwrap());
    let fw = tokio::time::timeout(
        Duration::from_secs(30),
        Scheduler::subscribe(
            &master,
            &access.operator_token,
            access.ca_pem.as_deref(),
            name,
        ),
    )
    .await
    .expect("subscribe");
    (fw, access)
}

/// A cluster's credentials and CA from its state folder.
struct Access {
    operator_token: String,
    agent_token: String,
    ca_pem: Option<Vec<u8>>,
    dir: PathBuf,
}

impl Access {
    /// dcform's own client of the cluster `c` (as `status` uses it).
    fn api(&self, c: &Cluster) -> dcform::cluster_api::ClusterAccess {
        let state: dcform::state::State =
            serde_json::from_slice(&std::fs::read(c.state_path()).unwrap()).unwrap();
        dcform::cluster_api::ClusterAccess::of(&state, &self.dir).unwrap()
    }

    fn of(dir: &Path) -> Access {
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .unwrap()
                .trim()
                .to_string()
        };
        Access {
            operator_token: read("token"),
            agent_token: read("agent-token"),
            ca_pem: std::fs::read(dir.join("ca.pem")).ok(),
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = dcform(&["destroy", "--auto-approve", self.def()]);
    }
}

fn glob_pid_files(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "pid") {
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// `dcform` finds `dccore` next to itself; cargo builds it for this package's tests only if asked, so check.
fn core_binary_is_built() {
    let dir = Path::new(env!("CARGO_BIN_EXE_dcform"))
        .parent()
        .unwrap()
        .to_path_buf();
    assert!(
        dir.join("dccore").is_file(),
        "{}/dccore is missing: build the workspace first (cargo build --workspace)",
        dir.display()
    );
}

fn agents_healthy(status: &serde_json::Value) -> (usize, usize) {
    let nodes = status["nodes"].as_array().unwrap();
    let agents: Vec<_> = nodes
        .iter()
        .filter(|n| n["role"].as_str().unwrap().contains("agent"))
        .collect();
    (
        agents.iter().filter(|n| n["health"] == "healthy").count(),
        agents.len(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn local_cluster_boots_runs_a_task_reapplies_as_no_op_and_destroys_cleanly() {
    let c = Cluster::new("e2e-local");
    let o = dcform(&["apply", "--auto-approve", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("Apply complete! Nodes: 4 added"),
        "{}",
        text(&o)
    );

    let status = c.status();
    assert_eq!(agents_healthy(&status), (3, 3), "{status:#}");
    let agent = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "agents-1")
        .unwrap();
    assert!(
        agent["resources"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x["name"] == "cpus")),
        "{agent}"
    );

    // A task through the scheduler API, its output through the agent's sandbox API.
    let (mut fw, access) = framework(&status, "e2e").await;
    fw.launch("hello-1", "echo hello-from-local").await;
    let finished = fw.wait_state("hello-1", "TASK_FINISHED").await;
    let agent_id = finished["update"]["status"]["agent_id"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let agents = access.api(&c).agents().await.unwrap();
    let agent_url = agents
        .iter()
        .find(|a| a.id == agent_id)
        .expect("agent of the task")
        .url
        .clone();
    let out = fw
        .sandbox_file(&agent_url, &access.agent_token, "hello-1", "stdout")
        .await;
    assert!(out.contains("hello-from-local"), "stdout was {out:?}");
    let o = dcform(&["task", "logs", "hello-1", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("hello-from-local"),
        "{}",
        text(&o)
    );
    let o = dcform(&["task", "list", c.def()]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("TASK_FINISHED"),
        "{}",
        text(&o)
    );

    let o = dcform(&["apply", "--auto-approve", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("No changes. Your cluster matches the definition."),
        "{}",
        text(&o)
    );

    // agents-1's processes die (as on a host restart): the refresh sees it, apply starts it again.
    let run = c.state_path().parent().unwrap().join("nodes/agents-1/run");
    for f in std::fs::read_dir(&run).unwrap().flatten() {
        let pid = std::fs::read_to_string(f.path()).unwrap();
        let pid = pid.trim();
        // The supervisor leads its own process group (setsid): take the group, then the leader.
        kill(&["-9", "--", &format!("-{pid}")]);
        kill(&["-9", pid]);
    }
    std::thread::sleep(Duration::from_millis(300));
    let o = dcform(&["plan", "--detailed-exitcode", c.def()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("agents-1") && text(&o).contains("the core is not running"),
        "{}",
        text(&o)
    );
    let o = dcform(&["apply", "--auto-approve", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(agents_healthy(&c.status()), (3, 3));

    // A task that leaves a process in a session of its own behind, as daemons do: destroy must
    // take it too (found: tasks survived destroy with their folder deleted and parent pid 1).
    let status = c.status();
    let (mut fw, _) = framework(&status, "e2e-daemon").await;
    fw.launch("daemon-1", "setsid sleep 300 & sleep 300").await;
    fw.wait_state("daemon-1", "TASK_RUNNING").await;
    let root = c.state_path().parent().unwrap().to_path_buf();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while task_processes(&root).len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the task's processes never showed up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let running = c.sandbox_pids();
    assert!(running.len() >= 4, "a supervisor per node: {running:?}");
    let o = dcform(&["destroy", "--auto-approve", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let left = task_processes(&root);
    assert!(left.is_empty(), "task processes outlived destroy: {left:?}");
    for p in running {
        assert!(
            !Path::new(&format!("/proc/{p}")).exists() || is_zombie(p),
            "process {p} survived destroy"
        );
    }
    let o = dcform(&["state", "list", c.def()]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "",
        "no node left in the state"
    );
}

/// Live processes (zombies excluded) that run in a task sandbox under `root`: their environment
/// has a MESOS_SANDBOX there.
fn task_processes(root: &Path) -> Vec<u32> {
    let want = format!("MESOS_SANDBOX={}/", root.display());
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        if env
            .split(|b| *b == 0)
            .any(|v| v.starts_with(want.as_bytes()))
            && !is_zombie(pid)
        {
            out.push(pid);
        }
    }
    out
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.contains(") Z "))
        .unwrap_or(true)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_apply_killed_half_way_converges_on_the_next_apply() {
    let c = Cluster::new("e2e-kill");
    // Kill it once the master is up and agents are under way (the state has agents in it).
    let mut child = c.apply_until_agents_start("agents=4", false).await;
    let _ = child.kill(); // SIGKILL: no chance to clean up
    let _ = child.wait();

    let o = dcform(&["apply", "--auto-approve", "-var", "agents=4", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(agents_healthy(&c.status()), (5, 5));
    let o = dcform(&["plan", "--detailed-exitcode", "-var", "agents=4", c.def()]);
    assert_eq!(o.status.code(), Some(0), "converged: {}", text(&o));
    // One supervisor per node, not two: the killed apply's half-made nodes were taken over, not duplicated.
    assert_eq!(
        c.supervisors(),
        6,
        "dccore supervisors running for this cluster"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scale_up_and_down_touch_only_the_changed_agents() {
    let c = Cluster::new("e2e-scale");
    let o = dcform(&["apply", "--auto-approve", "-var", "agents=1", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = dcform(&["apply", "--auto-approve", "-var", "agents=3", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("Nodes: 2 added, 0 changed, 0 destroyed"),
        "{}",
        text(&o)
    );
    assert_eq!(agents_healthy(&c.status()), (4, 4));
    let o = dcform(&["apply", "--auto-approve", "-var", "agents=2", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("- agents-3 (agent)"), "{}", text(&o));
    let names: Vec<String> = c.status()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["agents-1", "agents-2", "masters-1", "public-1"]);

    // Removing agents drains them first: a long-running task on one of them is killed, and its
    // framework hears TASK_KILLED from the drain, before the node goes.
    let status = c.status();
    let (mut fw, _) = framework(&status, "e2e-drain").await;
    // Only the private agents are offered to role "*": the task lands on agents-1 or agents-2.
    fw.launch("long-1", "sleep 1000").await;
    let running = fw.wait_state("long-1", "TASK_RUNNING").await;
    let on = running["update"]["status"]["agent_id"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let def = c.def().to_string();
    let apply = tokio::task::spawn_blocking(move || {
        dcform(&["apply", "--auto-approve", "-var", "agents=0", &def])
    });
    let killed = tokio::time::timeout(
        Duration::from_secs(120),
        fw.wait_state("long-1", "TASK_KILLED"),
    )
    .await
    .expect("TASK_KILLED during the scale-down");
    let o = apply.await.unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("- agents-1 (agent)"), "{}", text(&o));
    let st = &killed["update"]["status"];
    assert_eq!(st["agent_id"]["value"], on.as_str(), "{st}");
    assert_eq!(st["reason"], "REASON_AGENT_DRAINING", "{st}");
    let names: Vec<String> = c.status()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["masters-1", "public-1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_finishes_in_flight_steps_saves_and_exits_130() {
    let c = Cluster::new("e2e-int");
    let child = c.apply_until_agents_start("agents=6", true).await;
    assert!(kill(&["-INT", &child.id().to_string()]).success());
    let o = tokio::time::timeout(
        RUN,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .expect("an interrupted apply exits")
    .unwrap()
    .unwrap();
    // The interrupt lands while agents are being made: in-flight steps finish, the state is saved, exit 130.
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    assert!(text(&o).contains("interrupted"), "{}", text(&o));
    let saved: dcform::state::State =
        serde_json::from_str(&std::fs::read_to_string(c.state_path()).unwrap()).unwrap();
    assert!(!saved.nodes.is_empty());
    let o = dcform(&["apply", "--auto-approve", "-var", "agents=6", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(agents_healthy(&c.status()), (7, 7));
}

/// Framework principals come from the definition: dcform makes each a secret, says where it is,
/// and the masters let it subscribe only with its roles. Every API is HTTPS with the cluster CA.
#[tokio::test(flavor = "multi_thread")]
async fn a_definition_principal_subscribes_only_with_its_roles_over_https() {
    let c = Cluster::new("e2e-principal");
    let o = dcform(&["apply", "--auto-approve", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let status = c.status();
    let master = status["outputs"]["master_url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(master.starts_with("https://"), "{master}");
    let ca_file = status["outputs"]["ca_file"].as_str().unwrap().to_string();
    let secret_file = status["outputs"]["principal_secret_files"]["analytics"]
        .as_str()
        .unwrap()
        .to_string();
    {
        use std::os::unix::fs::PermissionsExt;
        for f in [&ca_file, &secret_file] {
            let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
    }
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    let access = Access::of(Path::new(&ca_file).parent().unwrap());
    let http = support::mesos::client(access.ca_pem.as_deref());
    let subscribe = |role: &'static str| {
        let http = http.clone();
        let (master, secret) = (master.clone(), secret.trim().to_string());
        async move {
            let body = serde_json::json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {
                "user": "nobody", "name": "analytics-fw", "roles": [role], "capabilities": [{"type": "MULTI_ROLE"}]}}});
            let r = tokio::time::timeout(
                Duration::from_secs(30),
                http.post(format!("{master}/api/v1/scheduler"))
                    .basic_auth("analytics", Some(secret))
                    .json(&body)
                    .send(),
            )
            .await
            .expect("subscribe answered in time")
            .expect("subscribe request");
            r.status().as_u16()
        }
    };
    assert_eq!(subscribe("analytics").await, 200, "its own role");
    assert_eq!(
        subscribe("other").await,
        403,
        "a role the definition did not give it"
    );
    // Without the cluster CA the master cannot even be reached.
    let plain = support::mesos::client(None);
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        plain.get(format!("{master}/health")).send(),
    )
    .await
    .expect("answered in time");
    assert!(
        r.is_err(),
        "reached the master without the cluster CA: {r:?}"
    );
    let o = dcform(&["destroy", "--auto-approve", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// `(pid, ppid, pgrp)` of every live (not zombie) process.
fn processes() -> Vec<(u32, u32, u32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // After the command name in parentheses: state, ppid, pgrp.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() < 3 || matches!(f[0], "Z" | "X") {
            continue;
        }
        if let (Ok(ppid), Ok(pgrp)) = (f[1].parse(), f[2].parse()) {
            out.push((pid, ppid, pgrp));
        }
    }
    out
}

/// The process groups of the scripts `dcform_pid` is running now: each script leads its own group.
fn script_groups(dcform_pid: u32) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|(pid, ppid, pgrp)| *ppid == dcform_pid && pid == pgrp)
        .map(|(pid, _, _)| pid)
        .collect()
}

/// Waits (up to `limit`) until no live process is left in `groups`; panics naming those left.
fn assert_groups_die_within(groups: &[u32], limit: Duration, what: &str) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left: Vec<u32> = processes()
            .into_iter()
            .filter(|(_, _, g)| groups.contains(g))
            .map(|(p, _, _)| p)
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: processes of the killed dcform's scripts still running after {limit:?}: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (up to `limit`) until `dcform` runs a script, and returns the scripts' groups.
async fn until_a_script_runs(dcform: &mut std::process::Child, limit: Duration) -> Vec<u32> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let groups = script_groups(dcform.id());
        if !groups.is_empty() {
            return groups;
        }
        assert!(
            dcform.try_wait().unwrap().is_none(),
            "dcform ended before running a script"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "dcform ran no script within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A task that ignores SIGTERM (its `sleep` inherits the ignored signal), so only a KILL after its
/// grace period ends it: whatever stops it takes a while.
const STUBBORN: &str = "trap '' TERM; sleep 600";

#[tokio::test(flavor = "multi_thread")]
async fn a_destroy_killed_mid_way_leaves_none_of_its_scripts_running_and_a_rerun_finishes() {
    let c = Cluster::new("e2e-kill-destroy");
    let o = dcform(&["apply", "--auto-approve", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let status = c.status();
    let (mut fw, _) = framework(&status, "e2e-stubborn").await;
    tokio::time::timeout(
        Duration::from_secs(90),
        fw.launch_on("stubborn-1", STUBBORN, None, Some(Duration::from_secs(60))),
    )
    .await
    .expect("an offer to launch on");
    fw.wait_state("stubborn-1", "TASK_RUNNING").await;

    // The stop script of a sandbox waits up to 5 s for the node's processes (the agent waits for
    // the stubborn task's grace) and 3 s more for the task: it is running when dcform dies.
    let mut destroy = Command::new(env!("CARGO_BIN_EXE_dcform"))
        .args(["destroy", "--auto-approve", c.def()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let groups = until_a_script_runs(&mut destroy, Duration::from_secs(60)).await;
    destroy.kill().unwrap(); // SIGKILL: no chance to clean up
    destroy.wait().unwrap();
    // Far less than the 8 s such a script would go on for by itself.
    assert_groups_die_within(&groups, Duration::from_secs(2), "killed destroy");

    let o = dcform(&["destroy", "--auto-approve", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let root = c.state_path().parent().unwrap().to_path_buf();
    let left = task_processes(&root);
    assert!(left.is_empty(), "task processes outlived destroy: {left:?}");
    assert_eq!(c.supervisors(), 0, "dccore supervisors outlived destroy");
    let o = dcform(&["state", "list", c.def()]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "",
        "nodes left in the state"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scale_down_killed_mid_drain_is_undone_by_applying_the_old_count() {
    let c = Cluster::new("e2e-undrain");
    let o = dcform(&["apply", "--auto-approve", "-var", "agents=3", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let status = c.status();
    assert_eq!(agents_healthy(&status), (4, 4), "{status:#}");
    let address = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "agents-3")
        .and_then(|n| n["address"].as_str())
        .expect("agents-3 has an address")
        .to_string();
    let (mut fw, access) = framework(&status, "e2e-undrain").await;
    let api = access.api(&c);
    let agent = api
        .agents()
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.url.ends_with(&address))
        .expect("the master knows agents-3");
    // On agents-3, the one the scale-down removes: its drain waits for the task's 60 s grace.
    tokio::time::timeout(
        Duration::from_secs(90),
        fw.launch_on(
            "stubborn-1",
            STUBBORN,
            Some(&agent.id),
            Some(Duration::from_secs(60)),
        ),
    )
    .await
    .expect("an offer from agents-3");
    fw.wait_state("stubborn-1", "TASK_RUNNING").await;
    // dccore runs a task under a wrapper shell of its own that does not ignore SIGTERM, so today
    // the wrapper's death ends a TERM-ignoring task at once (reported "terminated by signal 15")
    // instead of after its grace period. Stopped processes hold SIGTERM pending: frozen, the task
    // ignores it as a stubborn one should, and only the KILL after its 60 s grace ends it.
    let sandbox = c.state_path().parent().unwrap().join("nodes/agents-3");
    let sandbox = std::fs::canonicalize(&sandbox).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while task_processes(&sandbox).len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the task's wrapper and command never showed up on agents-3"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for p in task_processes(&sandbox) {
        kill(&["-STOP", &p.to_string()]);
    }

    let mut apply = Command::new(env!("CARGO_BIN_EXE_dcform"))
        .args(["apply", "--auto-approve", "-var", "agents=2", c.def()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed once the state says draining and the master has taken agents-3 out of its offers.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let saved: Option<dcform::state::State> = std::fs::read_to_string(c.state_path())
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok());
        let draining = saved.is_some_and(|s| {
            s.node("agents-3")
                .is_some_and(|n| n.status == dcform::state::NodeStatus::Draining)
        });
        if draining
            && api
                .agents()
                .await
                .is_ok_and(|a| a.iter().any(|a| a.id == agent.id && !a.active))
        {
            break;
        }
        assert!(
            apply.try_wait().unwrap().is_none(),
            "the scale-down ended before it drained"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "agents-3 was never seen draining"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let groups = until_a_script_runs(&mut apply, Duration::from_secs(30)).await;
    apply.kill().unwrap(); // SIGKILL, mid-drain
    apply.wait().unwrap();
    // The drain's script (a `dccore drain` waiting for the task) dies with the apply that ran it.
    assert_groups_die_within(&groups, Duration::from_secs(5), "killed scale-down");

    let o = dcform(&["apply", "--auto-approve", "-var", "agents=3", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("agents-3: reactivate"),
        "the drained agent was not reactivated:\n{}",
        text(&o)
    );
    let status = c.status();
    assert_eq!(agents_healthy(&status), (4, 4), "{status:#}");
    let o = dcform(&["plan", "--detailed-exitcode", "-var", "agents=3", c.def()]);
    assert_eq!(o.status.code(), Some(0), "converged: {}", text(&o));
}
