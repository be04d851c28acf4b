//! Services (the masters' Marathon API) on a `local` cluster, with the real `dccore` and `dcform`:
//! the local agents are told apart as hosts (each has its own loopback address as hostname, so
//! `hostname:UNIQUE` places one instance per agent) and offer host ports of their own (two
//! instances never get the same port), tasks run as `nobody` even when dcform runs as root from a
//! 0700 folder, and an instance on an agent that dies runs again on the agent that is left.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::text;
use serde_json::{Value, json};
use support::Access;
use support::local::{Cluster, agents_healthy, dcform, kill};

/// The operator's client of the master's Marathon API.
struct Marathon {
    http: reqwest::Client,
    master: String,
    token: String,
}

impl Marathon {
    fn of(status: &Value) -> Marathon {
        let master = status["outputs"]["master_url"]
            .as_str()
            .unwrap()
            .to_string();
        let token_file = Path::new(status["outputs"]["token_file"].as_str().unwrap());
        let access = Access::of(token_file.parent().unwrap());
        Marathon {
            http: support::mesos::client(access.ca_pem.as_deref()),
            master,
            token: access.operator_token,
        }
    }

    /// `METHOD /v2/PATH` with `body`: (status, JSON answer).
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.clone(), format!("{}/v2/{path}", self.master))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = tokio::time::timeout(Duration::from_secs(20), req.send())
            .await
            .unwrap_or_else(|_| panic!("{method} /v2/{path}: no answer in 20 s"))
            .unwrap_or_else(|e| panic!("{method} /v2/{path}: {e}"));
        let code = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> Value {
        let (code, v) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(code, 200, "GET /v2/{path}: {v}");
        v
    }

    /// The app's tasks.
    async fn tasks(&self, id: &str) -> Vec<Value> {
        self.get(&format!("apps/{id}/tasks")).await["tasks"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// A web server per instance on its first host port, health-checked over HTTP, one per host.
fn web_app(id: &str, instances: u32) -> Value {
    json!({
        "id": id,
        "cmd": "exec python3 -m http.server $PORT0",
        "instances": instances,
        "cpus": 0.1,
        "mem": 64,
        "constraints": [["hostname", "UNIQUE"]],
        "portDefinitions": [{"port": 0}],
        "healthChecks": [{"protocol": "HTTP", "path": "/", "portIndex": 0,
                          "gracePeriodSeconds": 15, "intervalSeconds": 1,
                          "timeoutSeconds": 2, "maxConsecutiveFailures": 3}],
    })
}

/// Polls `check` every 200 ms until it returns `Some`, failing with `what` (and the last value
/// seen) after `limit`.
async fn within<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => assert!(
                Instant::now() < deadline,
                "{what}: not within {limit:?}; last seen: {last}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `(host, first port)` of each running task.
fn placements(tasks: &[Value]) -> Vec<(String, u64)> {
    tasks
        .iter()
        .filter(|t| t["state"] == "TASK_RUNNING")
        .map(|t| {
            (
                t["host"].as_str().unwrap_or_default().to_string(),
                t["ports"][0].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Each agent node's name by its IP, from the state (`127.1.x.y:PORT` each).
fn agents_by_ip(c: &Cluster) -> Vec<(String, String)> {
    let state: Value = serde_json::from_slice(&std::fs::read(c.state_path()).unwrap()).unwrap();
    state["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["role"] == "agent")
        .map(|n| {
            let addr = n["addresses"][0].as_str().unwrap();
            let ip = addr.rsplit_once(':').unwrap().0.to_string();
            (ip, n["name"].as_str().unwrap().to_string())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn services_spread_over_local_agents_on_their_own_ports_and_move_off_a_dead_agent() {
    // The Cluster is destroyed when dropped, also when an assertion below fails.
    let c = Cluster::new("svc-local");
    // The definition's folder closed to others, as `mktemp -d` makes it: tasks run as nobody.
    let folder = Path::new(c.def()).parent().unwrap().to_path_buf();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let o = dcform(&["apply", "--auto-approve", "-var", "agents=3", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let status = c.status();
    assert_eq!(agents_healthy(&status), (4, 4), "{status:#}");
    let agents = agents_by_ip(&c);
    let ips: BTreeSet<&str> = agents.iter().map(|(ip, _)| ip.as_str()).collect();
    assert_eq!(ips.len(), 3, "each agent its own address: {agents:?}");
    assert!(ips.iter().all(|ip| ip.starts_with("127.1.")), "{agents:?}");
    // As root, dcform opens the 0700 folder for the task user (search only) and says so.
    if support_is_root() {
        let said = text(&o);
        assert!(
            said.contains("made searchable by others") && said.contains(folder.to_str().unwrap()),
            "{said}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&folder).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o701, "{}", folder.display());
    }

    let m = &Marathon::of(&status);
    let (code, v) = m
        .call(reqwest::Method::POST, "apps", Some(web_app("/spread", 3)))
        .await;
    assert_eq!(code, 201, "{v}");
    let started = Instant::now();
    within(
        Duration::from_secs(90),
        "3 healthy instances of /spread",
        || async move {
            let app = m.get("apps/spread").await;
            let healthy = app["app"]["tasksHealthy"].as_u64();
            if healthy == Some(3) {
                Ok(())
            } else {
                let queue = m.get("queue").await;
                Err(format!(
                    "tasksHealthy {healthy:?}; app {}; queue {queue}",
                    app["app"]
                ))
            }
        },
    )
    .await;
    eprintln!("/spread: 3 healthy instances after {:?}", started.elapsed());
    let placed = placements(&m.tasks("spread").await);
    let hosts: BTreeSet<&str> = placed.iter().map(|(h, _)| h.as_str()).collect();
    let ports: BTreeSet<u64> = placed.iter().map(|(_, p)| *p).collect();
    assert_eq!(
        hosts, ips,
        "one instance per agent, by its address: {placed:?}"
    );
    assert_eq!(ports.len(), 3, "distinct host ports: {placed:?}");
    // Each answers on its agent's address and port (what the health checks see too).
    for (host, port) in &placed {
        let r = reqwest::Client::new()
            .get(format!("http://{host}:{port}/"))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{host}:{port}: {e}"));
        assert_eq!(r.status().as_u16(), 200, "{host}:{port}");
    }
    let (code, v) = m.call(reqwest::Method::DELETE, "apps/spread", None).await;
    assert_eq!(code, 200, "{v}");

    // The task user reaches its sandbox by its absolute path (every folder above it searchable):
    // healthy only once the file written through $MESOS_SANDBOX is served. Found: under a 0700
    // folder such a task failed with "Permission denied", and so did every task's exit status file.
    let mut app = web_app("/sandbox", 1);
    app["cmd"] = json!("echo ok > \"$MESOS_SANDBOX/ok\" && exec python3 -m http.server $PORT0");
    app["healthChecks"][0]["path"] = json!("/ok");
    let (code, v) = m.call(reqwest::Method::POST, "apps", Some(app)).await;
    assert_eq!(code, 201, "{v}");
    within(
        Duration::from_secs(60),
        "a healthy /sandbox",
        || async move {
            let app = m.get("apps/sandbox").await;
            if app["app"]["tasksHealthy"] == 1 {
                Ok(())
            } else {
                Err(format!("{}", app["app"]))
            }
        },
    )
    .await;
    let (code, v) = m.call(reqwest::Method::DELETE, "apps/sandbox", None).await;
    assert_eq!(code, 200, "{v}");

    // Two instances on three agents: the one on a dead agent moves to the agent that is left.
    let (code, v) = m
        .call(reqwest::Method::POST, "apps", Some(web_app("/moves", 2)))
        .await;
    assert_eq!(code, 201, "{v}");
    let first = within(
        Duration::from_secs(90),
        "2 healthy instances of /moves",
        || async move {
            let app = m.get("apps/moves").await;
            let placed = placements(&m.tasks("moves").await);
            if app["app"]["tasksHealthy"] == 2 && placed.len() == 2 {
                Ok(placed)
            } else {
                Err(format!("{}", app["app"]))
            }
        },
    )
    .await;
    let (victim_ip, _) = &first[0];
    let victim = &agents.iter().find(|(ip, _)| ip == victim_ip).unwrap().1;
    let used: BTreeSet<&str> = first.iter().map(|(h, _)| h.as_str()).collect();
    let (spare_ip, _) = agents
        .iter()
        .find(|(ip, _)| !used.contains(ip.as_str()))
        .unwrap();
    // SIGKILL of the agent's supervisor and its process group (it leads one: setsid); its
    // tasks run in sessions of their own and live on, as on a partitioned host.
    let run = c
        .state_path()
        .parent()
        .unwrap()
        .join(format!("nodes/{victim}/run"));
    for f in std::fs::read_dir(&run).unwrap().flatten() {
        let pid = std::fs::read_to_string(f.path())
            .unwrap()
            .trim()
            .to_string();
        kill(&["-9", "--", &format!("-{pid}")]);
        kill(&["-9", &pid]);
    }
    let killed = Instant::now();
    let moved = within(
        Duration::from_secs(15),
        "the lost instance running on the spare agent",
        || async move {
            let placed = placements(&m.tasks("moves").await);
            let on_spare = placed.iter().any(|(h, _)| h == spare_ip);
            let on_victim = placed.iter().any(|(h, _)| h == victim_ip);
            if on_spare && !on_victim && placed.len() == 2 {
                Ok(placed)
            } else {
                Err(format!("{placed:?}"))
            }
        },
    )
    .await;
    eprintln!(
        "/moves: instance of dead agent {victim} ({victim_ip}) running on {spare_ip} after {:?}: {moved:?}",
        killed.elapsed()
    );
    let healthy = within(
        Duration::from_secs(60),
        "2 healthy instances again",
        || async move {
            let app = m.get("apps/moves").await;
            if app["app"]["tasksHealthy"] == 2 {
                Ok(killed.elapsed())
            } else {
                Err(format!("{}", app["app"]))
            }
        },
    )
    .await;
    eprintln!("/moves: healthy again {healthy:?} after the kill");

    let o = dcform(&["destroy", "--auto-approve", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// Whether this test runs as root (the owner of /proc/self is the effective user).
fn support_is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
