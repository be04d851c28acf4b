//! **Services**: an in-process master with the built-in services framework and its defaults
//! (agent timeout 5 s, allocation interval, back-off), N real agents on 127.0.0.1 with their
//! default 1 s heartbeats, each with its own loopback hostname, running real `sleep` processes.
//! The agents are `dccore agent` processes (as on nodes of their own); `--in-process-agents`
//! runs them as tasks of the benchmark's runtime instead, beside the master on its 2 worker
//! threads (a harsher setting: an agent's work delays the master's).
//!
//! 1. *Deploy*: `POST /v2/apps` of an app with `--instances` instances (default 1,000) → the
//!    app's `tasksRunning` equals them (polled every 20 ms through `GET /v2/apps/ID`).
//!    Target (issue 11): ≤ 10 s for 1,000 instances on 1 master + 10 agents. Also printed: when
//!    the first and the last instance were launched (the framework accepted offers for them)
//!    and when the first ran.
//! 2. *Agent lost*: an app of 2 instances per agent; an agent that runs some is stopped (SIGKILL
//!    for a process; in process its HTTP server and heartbeats stop at once, as in a crash; its
//!    task processes are left behind) →
//!    every instance it ran is running on another agent again (the app's running tasks on live
//!    agents equal the wanted count). A new agent takes the stopped one's place before the next
//!    round. Median and worst of `--rounds` (default 5). Target ≤ 5 s with the default agent
//!    timeout; anchor: Mesos' defaults (`agent_ping_timeout` 15 s × `max_agent_ping_timeouts` 5)
//!    take 75 s just to declare the agent lost, before Marathon starts a replacement.
//!
//! ```text
//! cargo bench --workspace --bench services
//! cargo bench --workspace --bench services -- --agents 10 --instances 1000 --rounds 5
//! cargo bench --workspace --bench services -- --agents 10 --instances 1000 --rounds 5 --in-process-agents
//! ```

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use dccore::master::MasterConfig;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use support::*;

/// Longest any one measured phase may take before the benchmark gives up (it then fails loudly).
const PHASE: Duration = Duration::from_secs(120);

struct Args {
    agents: usize,
    instances: u32,
    rounds: usize,
    /// Agents as tasks of the benchmark's own runtime (beside the master) instead of
    /// `dccore agent` processes.
    in_process: bool,
}

fn args() -> Args {
    let mut a = Args {
        agents: 10,
        instances: 1000,
        rounds: 5,
        in_process: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        let mut num = |what: &str| -> usize {
            it.next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{what} N: a number"))
        };
        match x.as_str() {
            "--bench" => {}
            "--agents" => a.agents = num("--agents"),
            "--instances" => a.instances = num("--instances") as u32,
            "--rounds" => a.rounds = num("--rounds"),
            "--in-process-agents" => a.in_process = true,
            other => panic!(
                "unknown argument {other:?}; usage: services [--agents N] [--instances N] [--rounds N] [--in-process-agents]"
            ),
        }
    }
    assert!(a.agents >= 2, "--agents: at least 2 (one is lost)");
    a
}

async fn call(m: &Master, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut r = m
        .http
        .request(method.clone(), format!("{}{path}", m.url))
        .header("authorization", bearer());
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = within(&format!("{method} {path}"), r.send())
        .await
        .expect("the master answers");
    let status = resp.status();
    let v: Value = within("body", resp.json()).await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{method} {path}: {status} {v}");
    v
}

/// The app's tasks in `TASK_RUNNING`: (task id, host).
async fn running(m: &Master, id: &str) -> Vec<(String, String)> {
    let v = call(
        m,
        reqwest::Method::GET,
        &format!("/v2/apps{id}/tasks"),
        None,
    )
    .await;
    v["tasks"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter(|t| t["state"] == "TASK_RUNNING")
                .map(|t| {
                    (
                        t["id"].as_str().unwrap_or_default().to_string(),
                        t["host"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `check` every 20 ms until it holds; the time it took. Fails after [`PHASE`].
async fn until<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < PHASE, "{what}: not after {PHASE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// One agent of the benchmark: a `dccore agent` process (the default: its own runtime and
/// threads, as on a node of its own), or an agent task in the benchmark's runtime.
enum Node {
    Process(tokio::process::Child),
    InProcess(Agent),
}

impl Node {
    /// Stops the agent as a crash would: SIGKILL for a process, the server and heartbeats at
    /// once for an in-process one. Its task processes are left behind.
    async fn stop(self) {
        match self {
            Node::Process(mut c) => {
                let _ = c.start_kill();
                let _ = within("the agent process to exit", c.wait()).await;
            }
            Node::InProcess(a) => a.stop().await,
        }
    }
}

fn host_of(n: usize) -> String {
    format!("127.0.{}.{}", 1 + n / 250, 1 + n % 250)
}

const RESOURCES: &str = "cpus:64;mem:65536;disk:1000;ports:[31000-31100]";

async fn agent(m: &Master, root: &Path, n: usize, in_process: bool) -> Node {
    let host = host_of(n);
    let dir = root.join(format!("a{n}"));
    if in_process {
        return Node::InProcess(
            Agent::start_with(&m.url, &dir, RESOURCES, false, |c| {
                c.hostname = host;
                // The agent's own default, not the tests' 100 ms.
                c.heartbeat_interval = Duration::from_secs(1);
            })
            .await,
        );
    }
    std::fs::create_dir_all(&dir).expect("agent dir");
    let token = dir.join("token");
    std::fs::write(&token, TOKEN).expect("token file");
    let config = dir.join("agent.json");
    // Defaults (1 s heartbeats, cgroups where the host has them) but for the hostname.
    std::fs::write(&config, json!({"hostname": host}).to_string()).expect("agent config");
    let path = |p: &Path| p.to_str().expect("a UTF-8 temp path").to_string();
    let (wd, token, config) = (path(&dir), path(&token), path(&config));
    let (child, _url) = start_bin(
        &[
            "agent",
            "--master",
            &m.url,
            "--listen",
            "127.0.0.1:0",
            "--work-dir",
            &wd,
            "--token-file",
            &token,
            "--resources",
            RESOURCES,
            "--config",
            &config,
        ],
        std::process::Stdio::null(),
    )
    .await;
    Node::Process(child)
}

/// Kills what the benchmark's agents left running under `root` (tasks of stopped agents).
fn kill_leftovers(root: &Path) {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for p in procs.flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read_link(p.path().join("cwd")).is_ok_and(|c| c.starts_with(root)) {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
        }
    }
}

/// Times (since the POST) at which the deploy's counts first reached each mark.
#[derive(Default)]
struct Phases {
    first_launched: Option<Duration>,
    all_launched: Option<Duration>,
    first_running: Option<Duration>,
    /// When a half of the wanted instances were running.
    half_running: Option<Duration>,
}

impl Phases {
    fn seen(&mut self, at: Duration, launched: u64, running: u64, want: u64) {
        if launched > 0 {
            self.first_launched.get_or_insert(at);
        }
        if launched >= want {
            self.all_launched.get_or_insert(at);
        }
        if running > 0 {
            self.first_running.get_or_insert(at);
        }
        if running * 2 >= want {
            self.half_running.get_or_insert(at);
        }
    }
}

/// When the task processes (`sleep`, working in a sandbox under `root`) started, as seconds
/// since the Unix epoch, sorted: from `/proc` (10 ms resolution).
fn process_starts(root: &Path) -> Vec<f64> {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let boot: f64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    // USER_HZ is 100 on every Linux this runs on.
    let tick = 0.01;
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let path = p.path();
        let in_root = std::fs::read_link(path.join("cwd")).is_ok_and(|c| c.starts_with(root));
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !in_root || comm.trim() != "sleep" {
            continue;
        }
        let start = std::fs::read_to_string(path.join("stat"))
            .ok()
            .and_then(|s| {
                let (_, rest) = s.rsplit_once(')')?;
                rest.split_whitespace().nth(19)?.parse::<f64>().ok()
            });
        if let Some(t) = start {
            out.push(boot + t * tick);
        }
    }
    out.sort_by(f64::total_cmp);
    out
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    println!("machine: {}", common::describe());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at start: {}", load.trim());
    let root = tempfile::tempdir().expect("tempdir");
    let mdir = root.path().join("m");
    let mut cfg = MasterConfig::new(&mdir);
    cfg.services = true;
    let m = Master::start_on(&mdir, "127.0.0.1:0", cfg).await;
    let mut agents = Vec::new();
    for n in 0..a.agents {
        agents.push(Some(agent(&m, root.path(), n, a.in_process).await));
    }
    m.wait_agents(a.agents).await;
    println!(
        "master with the services framework (defaults), {} agents (1 s heartbeats) {}",
        a.agents,
        if a.in_process {
            "in the benchmark's process and runtime (2 worker threads, shared with the master)"
        } else {
            "as `dccore agent` processes"
        }
    );

    // 1. Deploy.
    let id = "/bench/deploy";
    let start = Instant::now();
    let epoch_start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    call(
        &m,
        reqwest::Method::POST,
        "/v2/apps",
        Some(json!({"id": id, "cmd": "sleep 3600", "instances": a.instances, "cpus": 0.01, "mem": 1})),
    )
    .await;
    // When the first and the last instance were launched (staged or running: the framework
    // accepted an offer for it) and ran, to tell the scheduling from the launching.
    let want = u64::from(a.instances);
    let phases = std::cell::RefCell::new(Phases::default());
    until("the deploy", || async {
        let v = call(&m, reqwest::Method::GET, &format!("/v2/apps{id}"), None).await;
        let running = v["app"]["tasksRunning"].as_u64().unwrap_or(0);
        let launched = running + v["app"]["tasksStaged"].as_u64().unwrap_or(0);
        phases
            .borrow_mut()
            .seen(start.elapsed(), launched, running, want);
        running == want
    })
    .await;
    let took = start.elapsed();
    let phases = phases.into_inner();
    println!(
        "deploy phases (framework's view): first launched {}, all launched {}, first running {}, half running {}, all running {}",
        phases.first_launched.map_or("-".into(), secs),
        phases.all_launched.map_or("-".into(), secs),
        phases.first_running.map_or("-".into(), secs),
        phases.half_running.map_or("-".into(), secs),
        secs(took)
    );
    let mut per_host: std::collections::BTreeMap<String, usize> = Default::default();
    for (_, h) in running(&m, id).await {
        *per_host.entry(h).or_default() += 1;
    }
    println!(
        "deploy: instances per agent {:?}",
        per_host.values().collect::<Vec<_>>()
    );
    // The processes' own start times tell the agents' launching from the status updates' way
    // back to the framework.
    let starts = process_starts(root.path());
    if let (Some(first), Some(last)) = (starts.first(), starts.last()) {
        let at = |t: f64| format!("{:.2} s", t - epoch_start);
        println!(
            "deploy: {} task processes started between {} and {} (half by {})",
            starts.len(),
            at(*first),
            at(*last),
            at(starts[starts.len() / 2])
        );
    }
    println!(
        "deploy: POST /v2/apps of {} instances -> all TASK_RUNNING in {} ({:.0} instances/s); target <= 10 s for 1,000 on 10 agents",
        a.instances,
        secs(took),
        f64::from(a.instances) / took.as_secs_f64()
    );
    call(&m, reqwest::Method::DELETE, &format!("/v2/apps{id}"), None).await;
    until("the deployed app's removal", || async {
        let r = m
            .http
            .get(format!("{}/v2/apps{id}", m.url))
            .header("authorization", bearer())
            .send()
            .await;
        r.is_ok_and(|r| r.status() == reqwest::StatusCode::NOT_FOUND)
    })
    .await;

    // 2. Agent lost.
    let id = "/bench/lost";
    let want = 2 * a.agents;
    call(
        &m,
        reqwest::Method::POST,
        "/v2/apps",
        Some(json!({"id": id, "cmd": "sleep 3600", "instances": want, "cpus": 0.01, "mem": 1})),
    )
    .await;
    until("the app to run", || async {
        running(&m, id).await.len() == want
    })
    .await;
    let mut times = Vec::new();
    // New agents get numbers after the first ones.
    for (round, next) in (0..a.rounds).zip(a.agents..) {
        let tasks = running(&m, id).await;
        // The agent with the most instances (ties: the first).
        let victim = (0..agents.len())
            .filter(|&i| agents[i].is_some())
            .max_by_key(|&i| {
                let host = host_of(i);
                (
                    tasks.iter().filter(|(_, h)| *h == host).count(),
                    usize::MAX - i,
                )
            })
            .expect("a live agent");
        let host = host_of(victim);
        let lost: Vec<String> = tasks
            .iter()
            .filter(|(_, h)| *h == host)
            .map(|(t, _)| t.clone())
            .collect();
        let stopped = agents[victim].take().expect("live");
        let start = Instant::now();
        stopped.stop().await;
        until("the lost instances elsewhere", || async {
            let now = running(&m, id).await;
            now.len() == want && now.iter().all(|(t, h)| *h != host && !lost.contains(t))
        })
        .await;
        let took = start.elapsed();
        println!(
            "round {}: agent {host} with {} instance(s) stopped -> all running elsewhere in {}",
            round + 1,
            lost.len(),
            secs(took)
        );
        times.push(took);
        // A new agent in its place, so every round starts with as many agents.
        agents.push(Some(agent(&m, root.path(), next, a.in_process).await));
        m.wait_agents(a.agents).await;
    }
    times.sort();
    println!(
        "agent lost -> its instances running elsewhere: median {}, worst {} over {} rounds (default agent timeout 5 s); target <= 5 s; Mesos defaults: 75 s to declare the agent lost",
        secs(times[times.len() / 2]),
        secs(*times.last().expect("rounds")),
        times.len()
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at the end: {}", load.trim());
    call(&m, reqwest::Method::DELETE, &format!("/v2/apps{id}"), None).await;
    for ag in agents.into_iter().flatten() {
        ag.stop().await;
    }
    m.stop().await;
    kill_leftovers(root.path());
}
