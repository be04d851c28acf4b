//! The master over HTTP: the real `dccore master` binary, N simulated agents (registered over the
//! agent API; one in-process stub serves all their launch requests and answers TASK_RUNNING), and
//! one framework on the v1 scheduler API launching tasks of 0.1 cpu / 32 MiB and acknowledging
//! every update. Prints launches/s (ACCEPT to acknowledged TASK_RUNNING) and the master's
//! resident memory. Run with `cargo bench -p dccore --bench master_http`.

mod common;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use dccore::proto::internal::{LaunchTasks, RegisterAgent, StatusMessage};
use dccore::proto::scheduler::take_records;
use dccore::proto::{Resources, TaskState, TaskStatus};
use serde_json::{Value, json};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

const TOKEN: &str = "bench-token";

#[tokio::main]
async fn main() {
    // The workspace's reqwest has rustls without a built-in provider: install ring first.
    dccore::tls::install_default_provider();
    phase(1_000, 10_000).await;
    phase(10_000, 100_000).await;
}

struct Stub {
    master: String,
    http: reqwest::Client,
    /// Statuses in flight, like a real agent's sequential status link (one per agent) would be.
    inflight: Arc<Semaphore>,
}

async fn launch(State(stub): State<Arc<Stub>>, body: Bytes) -> StatusCode {
    let Ok(m) = serde_json::from_slice::<LaunchTasks>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    for t in m.tasks {
        let msg = StatusMessage {
            agent_id: t.agent_id.clone(),
            framework_id: m.framework_id.clone(),
            status: TaskStatus::new(
                t.task_id,
                TaskState::Running,
                "SOURCE_EXECUTOR",
                Some(t.agent_id),
            ),
        };
        let req = stub
            .http
            .post(format!("{}/internal/v1/agents/status", stub.master))
            .bearer_auth(TOKEN)
            .json(&msg);
        let permits = stub.inflight.clone();
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            let _ = req.send().await;
        });
    }
    StatusCode::ACCEPTED
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

async fn phase(agents: usize, tasks: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("token"), TOKEN).expect("token file");
    std::fs::write(
        dir.path().join("master.json"),
        r#"{"agent_timeout_secs": 36000, "allocation_interval_secs": 0.1, "offer_timeout_secs": 36000}"#,
    )
    .expect("config file");
    let mut master = Command::new(env!("CARGO_BIN_EXE_dccore"))
        .arg("master")
        .args(["--listen", "127.0.0.1:0", "--work-dir"])
        .arg(dir.path().join("m"))
        .arg("--token-file")
        .arg(dir.path().join("token"))
        .arg("--config")
        .arg(dir.path().join("master.json"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn dccore master");
    let out = master.stdout.take().expect("stdout");
    let url = BufReader::new(out)
        .lines()
        .next_line()
        .await
        .expect("read")
        .expect("address line");
    let pid = master.id().expect("pid");
    let http = reqwest::Client::new();

    let stub = Arc::new(Stub {
        master: url.clone(),
        http: http.clone(),
        inflight: Arc::new(Semaphore::new(32)),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind stub");
    let stub_url = format!("http://{}", listener.local_addr().expect("addr"));
    let app = axum::Router::new()
        .route("/internal/v1/launch", axum::routing::post(launch))
        .with_state(stub);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let t = Instant::now();
    let res = Resources::parse("cpus:10;mem:3200;disk:1000")
        .expect("resources")
        .to_mesos(None, None);
    let mut set = JoinSet::new();
    for chunk in 0..64usize {
        let (http, url, stub_url, res) = (http.clone(), url.clone(), stub_url.clone(), res.clone());
        set.spawn(async move {
            for i in (chunk..agents).step_by(64) {
                let msg = RegisterAgent {
                    agent_id: None,
                    hostname: format!("sim-{i}"),
                    url: stub_url.clone(),
                    resources: res.clone(),
                    attributes: vec![],
                    public: false,
                    tasks: vec![],
                    version: "bench".into(),
                    // The operator token registers it, so the master calls back with that.
                    callback_token: None,
                    task_user: None,
                };
                let r = http
                    .post(format!("{url}/internal/v1/agents/register"))
                    .bearer_auth(TOKEN)
                    .json(&msg)
                    .send()
                    .await
                    .expect("register");
                assert!(r.status().is_success());
            }
        });
    }
    while set.join_next().await.is_some() {}
    let reg_secs = t.elapsed().as_secs_f64();

    // The framework.
    let mut resp = http
        .post(format!("{url}/api/v1/scheduler"))
        .bearer_auth(TOKEN)
        .json(&json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "bench", "name": "bench"}}}))
        .send()
        .await
        .expect("subscribe");
    let stream_id = resp.headers()["mesos-stream-id"]
        .to_str()
        .expect("stream id")
        .to_string();
    let (tx, mut events) = mpsc::unbounded_channel::<Value>();
    tokio::spawn(async move {
        let mut buf = Vec::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            buf.extend_from_slice(&chunk);
            for r in take_records(&mut buf) {
                if tx.send(r).is_err() {
                    return;
                }
            }
        }
    });
    let mut fid = String::new();
    let (mut launched, mut running) = (0usize, 0usize);
    let mut calls = JoinSet::new();
    let mut started: Option<Instant> = None;
    // Calls in flight from the framework (a real scheduler library sends them one by one).
    let calls_inflight = Arc::new(Semaphore::new(32));
    let call = |body: Value| {
        let req = http
            .post(format!("{url}/api/v1/scheduler"))
            .bearer_auth(TOKEN)
            .header("mesos-stream-id", &stream_id)
            .json(&body);
        let permits = calls_inflight.clone();
        async move {
            let _permit = permits.acquire_owned().await;
            req.send().await
        }
    };
    while running < tasks {
        let e = tokio::time::timeout(Duration::from_secs(120), events.recv())
            .await
            .expect("master stalled for 120 s")
            .expect("stream open");
        match e["type"].as_str() {
            Some("SUBSCRIBED") => {
                fid = e["subscribed"]["framework_id"]["value"]
                    .as_str()
                    .expect("id")
                    .to_string()
            }
            Some("OFFERS") => {
                started.get_or_insert_with(Instant::now);
                for o in e["offers"]["offers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                {
                    let n = (tasks - launched).min(100);
                    let infos: Vec<Value> = (0..n)
                        .map(|k| {
                            json!({"name": "b", "task_id": {"value": format!("t{}", launched + k)}, "agent_id": o["agent_id"],
                                   "command": {"value": "true"},
                                   "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                                                 {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}]})
                        })
                        .collect();
                    launched += n;
                    let body = if n == 0 {
                        json!({"type": "DECLINE", "framework_id": {"value": fid}, "decline": {"offer_ids": [o["id"]], "filters": {"refuse_seconds": 3600}}})
                    } else {
                        json!({"type": "ACCEPT", "framework_id": {"value": fid}, "accept": {"offer_ids": [o["id"]],
                               "operations": [{"type": "LAUNCH", "launch": {"task_infos": infos}}]}})
                    };
                    calls.spawn(call(body));
                }
            }
            Some("UPDATE") => {
                let st = &e["update"]["status"];
                if st["state"] == "TASK_RUNNING" {
                    running += 1;
                }
                calls.spawn(call(
                    json!({"type": "ACKNOWLEDGE", "framework_id": {"value": fid}, "acknowledge": {
                    "agent_id": st["agent_id"], "task_id": st["task_id"], "uuid": st["uuid"]}}),
                ));
            }
            _ => {}
        }
        while calls.try_join_next().is_some() {}
    }
    let secs = started.map(|s| s.elapsed().as_secs_f64()).unwrap_or(0.0);
    while calls.join_next().await.is_some() {}
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = rss_kib(pid);
    println!(
        "master over HTTP: {agents} agents registered in {reg_secs:.2} s; {tasks} tasks launched to acknowledged TASK_RUNNING in {secs:.2} s \
         = {:.0} launches/s; master RSS {:.1} MiB with {agents} agents and {tasks} running tasks; on {}",
        tasks as f64 / secs,
        rss as f64 / 1024.0,
        common::describe()
    );
    server.abort();
    let _ = master.start_kill();
}
