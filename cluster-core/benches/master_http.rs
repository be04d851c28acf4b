//! **End-to-end master launch rate**: the real `dccore master` binary, N simulated agents, and one
//! framework on the v1 scheduler HTTP API. Timed from the first OFFERS event to the moment the
//! master has answered the ACKNOWLEDGE of the last task's TASK_RUNNING, over the path a launch
//! takes in production: framework `ACCEPT` (HTTP) → master → agent `POST /internal/v1/launch`
//! (HTTP) → agent `POST /internal/v1/agents/status` TASK_RUNNING (HTTP) → UPDATE on the
//! framework's event stream → framework `ACKNOWLEDGE` (HTTP). Printed as `launches/s`, with the
//! masters' resident memory after the run.
//!
//! The agents are simulated: they register over the real agent API, and one in-process stub
//! serves all their launch requests and answers each task with TASK_RUNNING at once (no process is
//! started), at most 32 status calls in flight. The framework launches tasks of 0.1 cpu / 32 MiB,
//! at most 100 per offer, keeps at most 32 calls in flight and acknowledges every update; every
//! call must succeed.
//!
//! Each size runs plain HTTP, then TLS, side by side (a CA made here with rcgen; the master serves
//! HTTPS with `--tls-cert/--tls-key/--ca-file`, the stub agent serves HTTPS and presents an agent
//! certificate, the master presents its certificate when it calls the stub), and prints the ratio.
//! Every client keeps its connections alive; the stub counts the connections the master opened to
//! it, so a figure that paid for handshakes says so.
//!
//! Each mode runs with one unreplicated master, then with 3 replicated masters (`--masters 1,3`;
//! 5 too), side by side: N real `dccore master` processes on 127.0.0.1 configured by their config
//! files as dcform configures them (`common/masters.rs`, shared with `failover`; with TLS the
//! masters reach each other over HTTPS with the same certificate). The agents register with the
//! leader (the member whose `GET /replica` says it leads) and the framework subscribes there;
//! every change a launch makes is committed by a majority before its effects leave the leader.
//! After the run every master's VmRSS and VmHWM are printed, the followers' once they have
//! applied the whole log.
//!
//! ```text
//! cargo bench --workspace --bench master_http                              # 10,000 agents, 100,000 tasks
//! cargo bench --workspace --bench master_http -- --quick                   # 1,000 agents, 10,000 tasks
//! cargo bench --workspace --bench master_http -- --masters 1,3 --modes plain
//! cargo bench --workspace --bench master_http -- --agents 2000 --tasks 50000 --masters 3
//! ```

mod common;
#[path = "common/masters.rs"]
mod masters;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use dccore::proto::internal::{LaunchTasks, RegisterAgent, StatusMessage};
use dccore::proto::scheduler::take_records;
use dccore::proto::{Resources, TaskState, TaskStatus};
use masters::Masters;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

const TOKEN: &str = "bench-token";

/// The command line: `--agents N --tasks N` (default 10,000 / 100,000), `--quick` (1,000 /
/// 10,000), `--modes plain,tls` (default both), `--masters 1,3` (default both; 1, 3 or 5),
/// `--update-retry-secs S` (the masters' `status_update_retry_secs`; default: theirs, 5 s).
struct Flags {
    agents: usize,
    tasks: usize,
    modes: Vec<Mode>,
    masters: Vec<usize>,
    update_retry: Option<f64>,
}

const USAGE: &str = "usage: master_http [--quick] [--agents N] [--tasks N] [--modes plain,tls] [--masters 1,3] [--update-retry-secs S]";

fn flags() -> Result<Flags, String> {
    let mut f = Flags {
        agents: 10_000,
        tasks: 100_000,
        modes: vec![Mode::Plain, Mode::Tls],
        masters: vec![1, 3],
        update_retry: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let number = |name: &str, v: String| {
            v.parse::<usize>()
                .map_err(|_| format!("{name}: {v:?} is not a number"))
        };
        match a.as_str() {
            // `cargo bench` passes `--bench` to every bench binary.
            "--bench" => {}
            "--quick" => (f.agents, f.tasks) = (1_000, 10_000),
            "--agents" => f.agents = number("--agents", value("--agents")?)?,
            "--tasks" => f.tasks = number("--tasks", value("--tasks")?)?,
            "--modes" => {
                f.modes = value("--modes")?
                    .split(',')
                    .map(|m| match m.trim() {
                        "plain" => Ok(Mode::Plain),
                        "tls" => Ok(Mode::Tls),
                        other => Err(format!("--modes: {other:?} is neither plain nor tls")),
                    })
                    .collect::<Result<_, _>>()?
            }
            "--masters" => {
                f.masters = value("--masters")?
                    .split(',')
                    .map(|m| match m.trim().parse::<usize>() {
                        // A group of an even size tolerates no more failures than the odd size
                        // below it: 1 (unreplicated), 3 and 5 are the sizes dcform deploys.
                        Ok(n @ (1 | 3 | 5)) => Ok(n),
                        _ => Err(format!(
                            "--masters: {:?} is not a master count this benchmark runs (1, 3 or 5)",
                            m.trim()
                        )),
                    })
                    .collect::<Result<_, _>>()?
            }
            "--update-retry-secs" => {
                let v = value("--update-retry-secs")?;
                f.update_retry =
                    Some(v.parse::<f64>().ok().filter(|s| *s > 0.0).ok_or_else(|| {
                        format!("--update-retry-secs: {v:?} is not a positive number")
                    })?)
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if f.agents == 0 || f.tasks == 0 {
        return Err("--agents and --tasks must be > 0".into());
    }
    Ok(f)
}

/// One measured run: the launch rate and every master's memory afterwards.
struct Run {
    mode: Mode,
    masters: usize,
    rate: f64,
    /// (VmRSS, VmHWM) in KiB per master.
    memory: Vec<(u64, u64)>,
}

#[tokio::main]
async fn main() {
    // The workspace's reqwest has rustls without a built-in provider: install ring first.
    dccore::tls::install_default_provider();
    let Flags {
        agents,
        tasks,
        modes,
        masters,
        update_retry,
    } = match flags() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("master_http: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    println!("machine: {}", common::describe());
    let mut runs = Vec::new();
    for &mode in &modes {
        for &n in &masters {
            runs.push(phase(agents, tasks, mode, n, update_retry).await);
        }
    }
    let mib = |kib: u64| kib as f64 / 1024.0;
    for r in &runs {
        println!(
            "END-TO-END MASTER LAUNCH RATE ({}, {} master{}): {:.0} launches/s \
             (ACCEPT -> agent launch -> TASK_RUNNING -> ACKNOWLEDGE, {agents} agents, {tasks} tasks)",
            r.mode.label(),
            r.masters,
            if r.masters == 1 { "" } else { "s" },
            r.rate,
        );
    }
    for r in runs.iter().filter(|r| r.masters > 1) {
        let rss = r.memory.iter().map(|m| m.0).max().unwrap_or(0);
        let hwm = r.memory.iter().map(|m| m.1).max().unwrap_or(0);
        println!(
            "MASTER MEMORY ({}, {} masters, {agents} agents, {tasks} tasks): largest VmRSS {:.1} MiB, \
             largest VmHWM {:.1} MiB of any master (target <= 300 MB per master)",
            r.mode.label(),
            r.masters,
            mib(rss),
            mib(hwm),
        );
    }
    let find = |mode: Mode, n: usize| {
        runs.iter()
            .find(|r| r.mode == mode && r.masters == n)
            .map(|r| r.rate)
    };
    for &mode in &modes {
        for &n in masters.iter().filter(|n| **n > 1) {
            if let (Some(one), Some(many)) = (find(mode, 1), find(mode, n)) {
                println!(
                    "{n} masters vs 1 ({}): {:.2}x ({many:.0} vs {one:.0} launches/s)",
                    mode.label(),
                    many / one
                );
            }
        }
    }
    for &n in &masters {
        if let (Some(plain), Some(tls)) = (find(Mode::Plain, n), find(Mode::Tls, n)) {
            println!(
                "TLS costs {:.1}% with {n} master{} ({tls:.0} vs {plain:.0} launches/s)",
                (1.0 - tls / plain) * 100.0,
                if n == 1 { "" } else { "s" },
            );
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Plain,
    Tls,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Plain => "plain HTTP",
            Mode::Tls => "HTTPS",
        }
    }
}

/// The TLS files of one run: a CA, the master's and the stub agent's certificates.
struct BenchPki {
    ca: std::path::PathBuf,
    master: (std::path::PathBuf, std::path::PathBuf),
    agent: (std::path::PathBuf, std::path::PathBuf),
}

fn make_pki(dir: &std::path::Path) -> BenchPki {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose, SanType,
    };
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write CA");
    let issuer = Issuer::new(ca, ca_key);
    let node = |name: &str, uri: &str| {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
        p.subject_alt_names
            .push(SanType::URI(uri.try_into().expect("uri")));
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = p.signed_by(&key, &issuer).expect("sign");
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).expect("write cert");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        (c, k)
    };
    BenchPki {
        ca: dir.join("ca.pem"),
        master: node("master", "urn:dcform:master:bench"),
        agent: node("agent", "urn:dcform:agent:bench"),
    }
}

/// The stub agent's listener: counts the connections the master opens to it.
struct Counting<L>(L, Arc<AtomicU64>);

impl<L: axum::serve::Listener> axum::serve::Listener for Counting<L> {
    type Io = L::Io;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let c = self.0.accept().await;
        self.1.fetch_add(1, Ordering::Relaxed);
        c
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
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

/// VmRSS and VmHWM (the peak) of process `pid`, in KiB (0 if unreadable).
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time (user + system, all threads) of process `pid` so far, in seconds (0 if unreadable).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces) close with ')'; utime and stime
    // are the 14th and 15th fields, in USER_HZ (100 per second on Linux).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    match (f.get(11), f.get(12)) {
        (Some(u), Some(s)) => (u + s) as f64 / 100.0,
        _ => 0.0,
    }
}

/// Polls `f` every 50 ms until it gives a value; panics naming `what` after `limit`.
async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> F,
) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < end, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One run with `count` masters; the rate and their memory.
async fn phase(
    agents: usize,
    tasks: usize,
    mode: Mode,
    count: usize,
    update_retry: Option<f64>,
) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = (mode == Mode::Tls).then(|| make_pki(dir.path()));
    let tls_args: Vec<String> = match &pki {
        Some(p) => [
            "--tls-cert",
            &p.master.0.display().to_string(),
            "--tls-key",
            &p.master.1.display().to_string(),
            "--ca-file",
            &p.ca.display().to_string(),
        ]
        .map(String::from)
        .to_vec(),
        None => vec![],
    };
    let mut members = Masters {
        dir: &dir.path().join("masters"),
        count,
        token: TOKEN,
        scheme: if pki.is_some() { "https" } else { "http" },
        // The simulated agents never heartbeat: neither time them out nor probe them (a probe
        // of every silent agent each 1.5 s would be a benchmark of the stub's /health). The
        // built-in services framework is off: as a second framework with a lower share it would
        // have the bench framework's offers rescinded for it, and its launches are not measured.
        config: json!({"agent_timeout_secs": 36000, "agent_probe_after_secs": 36000,
                       "allocation_interval_secs": 0.1, "offer_timeout_secs": 36000,
                       "services": false, "status_update_retry_secs": update_retry}),
        args: tls_args,
        env: vec![("RUST_LOG".into(), "warn".into())],
    }
    .members();
    for m in &mut members {
        m.start();
    }
    // The framework's and the registrations' client: trusts the CA (TLS) and keeps connections.
    let (http, agent_tls) = match &pki {
        Some(p) => (
            dccore::tls::Tls::load(None, None, Some(&p.ca))
                .expect("CA")
                .http_client()
                .expect("client")
                .build()
                .expect("client"),
            Some(
                dccore::tls::Tls::load(Some(&p.agent.0), Some(&p.agent.1), Some(&p.ca))
                    .expect("agent TLS"),
            ),
        ),
        None => (reqwest::Client::new(), None),
    };
    // The stub agent's status updates, with its agent certificate when TLS.
    let stub_http = match &agent_tls {
        Some(t) => t.http_client().expect("client").build().expect("client"),
        None => http.clone(),
    };

    // The master that serves: the only one, or the group's leader once its owner loop acts as
    // leader (the operator's GET_HEALTH goes through the owner loop, which refuses it before).
    let urls: Vec<&str> = members.iter().map(|m| m.url.as_str()).collect();
    let lead = wait_for("a master serving", Duration::from_secs(60), || async {
        let i = if count == 1 {
            0
        } else {
            masters::leader(&http, &urls, TOKEN).await?
        };
        let r = http
            .post(format!("{}/api/v1", urls[i]))
            .bearer_auth(TOKEN)
            .json(&json!({"type": "GET_HEALTH"}))
            .send()
            .await
            .ok()?;
        r.status().is_success().then_some(i)
    })
    .await;
    let url = urls[lead].to_string();
    let stub = Arc::new(Stub {
        master: url.clone(),
        http: stub_http,
        inflight: Arc::new(Semaphore::new(32)),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind stub");
    let stub_addr = listener.local_addr().expect("addr");
    let app = axum::Router::new()
        .route("/internal/v1/launch", axum::routing::post(launch))
        .with_state(stub);
    let stub_conns = Arc::new(AtomicU64::new(0));
    let server = match &agent_tls {
        Some(t) => {
            let cfg = t.server_config().expect("server config").expect("TLS");
            let l = Counting(
                dccore::tls::TlsListener::new(listener, cfg).expect("TLS listener"),
                stub_conns.clone(),
            );
            tokio::spawn(async move { axum::serve(l, app).await })
        }
        None => {
            let l = Counting(listener, stub_conns.clone());
            tokio::spawn(async move { axum::serve(l, app).await })
        }
    };
    let stub_url = format!(
        "{}://{stub_addr}",
        if agent_tls.is_some() { "https" } else { "http" }
    );

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
    // CPU seconds of every master (and, last, this process) when the clock starts.
    let pids: Vec<u32> = members
        .iter()
        .map(|m| m.pid().expect("master running"))
        .chain([std::process::id()])
        .collect();
    let mut cpu_at_start: Vec<f64> = Vec::new();
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
            // The master answers every accepted call with 202: anything else is a failed call.
            match req.send().await {
                Ok(r) if r.status() == StatusCode::ACCEPTED => Ok(()),
                Ok(r) => Err(format!("HTTP {}", r.status())),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    let mut failed: Vec<String> = Vec::new();
    let mut collect = |r: Result<Result<(), String>, tokio::task::JoinError>| match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => failed.push(e),
        Err(e) => failed.push(e.to_string()),
    };
    while running < tasks {
        let e = tokio::time::timeout(Duration::from_secs(120), events.recv())
            .await
            .expect("master stalled for 120 s")
            .unwrap_or_else(|| {
                panic!("the master closed the event stream ({running} of {tasks} tasks running)")
            });
        match e["type"].as_str() {
            Some("SUBSCRIBED") => {
                fid = e["subscribed"]["framework_id"]["value"]
                    .as_str()
                    .expect("id")
                    .to_string()
            }
            Some("OFFERS") => {
                if started.is_none() {
                    started = Some(Instant::now());
                    cpu_at_start = pids.iter().map(|p| cpu_secs(*p)).collect();
                }
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
            Some("ERROR") => panic!(
                "the master ended the event stream: {}",
                e["error"]["message"]
            ),
            Some("UPDATE") => {
                let st = &e["update"]["status"];
                match st["state"].as_str() {
                    Some("TASK_RUNNING") => running += 1,
                    Some(
                        s @ ("TASK_ERROR" | "TASK_FAILED" | "TASK_LOST" | "TASK_DROPPED"
                        | "TASK_KILLED" | "TASK_FINISHED"),
                    ) => {
                        panic!(
                            "task {} ended {s}: {}",
                            st["task_id"]["value"], st["message"]
                        )
                    }
                    _ => {}
                }
                calls.spawn(call(
                    json!({"type": "ACKNOWLEDGE", "framework_id": {"value": fid}, "acknowledge": {
                    "agent_id": st["agent_id"], "task_id": st["task_id"], "uuid": st["uuid"]}}),
                ));
            }
            _ => {}
        }
        while let Some(r) = calls.try_join_next() {
            collect(r);
        }
    }
    // The clock stops when the master has answered the last ACKNOWLEDGE.
    while let Some(r) = calls.join_next().await {
        collect(r);
    }
    let secs = started.map(|s| s.elapsed().as_secs_f64()).unwrap_or(0.0);
    let cpu: Vec<f64> = pids
        .iter()
        .zip(&cpu_at_start)
        .map(|(p, at)| cpu_secs(*p) - at)
        .collect();
    assert!(
        failed.is_empty(),
        "{} framework call(s) failed, first: {}",
        failed.len(),
        failed[0]
    );
    // The followers apply the same log: read their memory once they have applied all of it.
    let leader_applied = masters::replica(&http, &url, TOKEN)
        .await
        .and_then(|r| r["applied_index"].as_u64());
    let mut log = String::new();
    if let Some(applied) = leader_applied {
        for m in members.iter().filter(|m| m.url != url) {
            wait_for(
                "a follower applying the log",
                Duration::from_secs(120),
                || async {
                    let r = masters::replica(&http, &m.url, TOKEN).await?;
                    (r["applied_index"].as_u64()? >= applied).then_some(())
                },
            )
            .await;
        }
        log = format!(
            "; {applied} log entries ({:.1} tasks per entry)",
            tasks as f64 / applied as f64
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let memory: Vec<(u64, u64)> = members
        .iter()
        .map(|m| memory_kib(m.pid().expect("master running")))
        .collect();
    let rate = tasks as f64 / secs;
    let plural = if count == 1 { "" } else { "s" };
    println!(
        "{count} master{plural} over {}: {agents} agents registered in {reg_secs:.2} s; {tasks} tasks from first offer to \
         last ACKNOWLEDGE answered in {secs:.2} s = {rate:.0} launches/s; the leader opened {} connection(s) to the stub agent{log}",
        mode.label(),
        stub_conns.load(Ordering::Relaxed),
    );
    for (i, (rss, hwm)) in memory.iter().enumerate() {
        println!(
            "  master {} ({}): VmRSS {:.1} MiB, VmHWM {:.1} MiB with {agents} agents and {tasks} running tasks; \
             {:.2} s CPU while timed",
            i + 1,
            match (count, i == lead) {
                (1, _) => "alone",
                (_, true) => "leader",
                (_, false) => "follower",
            },
            *rss as f64 / 1024.0,
            *hwm as f64 / 1024.0,
            cpu[i],
        );
    }
    println!(
        "  this process (agents' stub and framework): {:.2} s CPU while timed",
        cpu.last().copied().unwrap_or(0.0)
    );
    server.abort();
    for m in &mut members {
        m.kill().await;
    }
    Run {
        mode,
        masters: count,
        rate,
        memory,
    }
}
