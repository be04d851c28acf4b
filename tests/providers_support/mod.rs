//! Shared by `providers_docker` and `providers_ssh`: finding Docker, the node image and `dccore`, running the
//! `dcform` binary under a timeout, reading `status --json`, a minimal Mesos v1 scheduler client that runs one
//! task and reads its stdout from the agent's sandbox, and label-based leftovers checks.
//!
//! Tests connect only to containers (and networks) that they or dcform created on this machine.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

/// Bound for one `dcform` run (a whole apply of a few containers on a 2-core machine, debug build).
pub const CLI_LIMIT: Duration = Duration::from_secs(300);

pub use dc_support::testing::within;
use dc_support::testing::{output_within, try_output_within};

/// Bound for one docker CLI call made by the tests themselves.
pub const DOCKER_LIMIT: Duration = Duration::from_secs(60);

/// `docker ARGS`, within [`DOCKER_LIMIT`], whatever its exit status.
pub fn docker(args: &[&str]) -> Output {
    output_within(
        DOCKER_LIMIT,
        std::process::Command::new("docker").args(args),
    )
}

/// `docker ARGS` (test set-up: what a user does behind dcform's back), insisting that it worked;
/// its stdout, trimmed.
pub fn docker_ok(args: &[&str]) -> String {
    let o = docker(args);
    assert!(
        o.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// What every provider test needs: the node image tag and the `dccore` binary dcform installs.
pub struct Env {
    /// Node image tag.
    pub image: String,
    /// The dccore binary.
    pub core: PathBuf,
}

/// A missing component fails the test unless skips are allowed (`DCFORM_TEST_ALLOW_SKIP=1`).
fn skip_or_panic(why: &str) -> Option<Env> {
    dc_support::testing::missing(why);
    None
}

/// What the tests need, or `None` (with a note) when something is missing and skips are allowed;
/// otherwise a missing component fails the test.
pub fn env() -> Option<Env> {
    let docker_ok = try_output_within(
        DOCKER_LIMIT,
        std::process::Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]),
    )
    .is_ok_and(|o| o.status.success());
    if !docker_ok {
        return skip_or_panic("Docker Engine is not usable: provider tests need real containers");
    }
    let core = std::env::var_os("DCCORE_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            Path::new(env!("CARGO_BIN_EXE_dcform"))
                .parent()
                .map(|d| d.join("dccore"))
        })
        .filter(|p| p.is_file());
    let Some(core) = core else {
        return skip_or_panic(
            "no dccore binary beside dcform (run `cargo build -p dccore` first, or set DCCORE_BIN)",
        );
    };
    let info = dcform_bootstrap::node_image::ensure(
        &dcform_bootstrap::node_image::NodeImageOptions::default(),
        &mut |l| eprintln!("node-image: {l}"),
    )
    .unwrap_or_else(|e| panic!("cannot build the node image: {e}"));
    Some(Env {
        image: info.tag,
        core,
    })
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A cluster name no other test (or parallel test run) uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

/// Runs `dcform ARGS` in `dir` with the test's dccore.
pub async fn dcform(env: &Env, dir: &Path, args: &[&str]) -> Output {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_dcform"))
        .args(args)
        .current_dir(dir)
        .env("DCFORM_CORE_BINARY", &env.core)
        .kill_on_drop(true)
        .output();
    within(CLI_LIMIT, &format!("dcform {}", args.join(" ")), child)
        .await
        .expect("dcform runs")
}

/// stdout and stderr together, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts a successful run and returns its text.
pub fn ok(o: &Output, what: &str) -> String {
    let t = text(o);
    assert_eq!(o.status.code(), Some(0), "{what} failed:\n{t}");
    t
}

/// `status --json`: (healthy agents with resources, all agents), and the whole document.
pub async fn agents_healthy(env: &Env, dir: &Path, def: &str) -> (usize, usize, Value) {
    let o = dcform(env, dir, &["status", "--json", def]).await;
    let t = ok(&o, "status --json");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {t}"));
    let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
    let agents: Vec<&Value> = nodes
        .iter()
        .filter(|n| n["role"].as_str().is_some_and(|r| r.contains("agent")))
        .collect();
    let healthy = agents
        .iter()
        .filter(|n| n["health"] == "healthy" && n["resources"].is_array())
        .count();
    (healthy, agents.len(), v)
}

/// Objects still labelled with the cluster: (containers, networks, volumes).
pub fn labelled(cluster: &str) -> (usize, usize, usize) {
    let count = |args: &[&str]| {
        let o = docker(args);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count()
    };
    let f = format!("label=dcform.cluster={cluster}");
    (
        count(&["ps", "-aq", "--filter", &f]),
        count(&["network", "ls", "-q", "--filter", &f]),
        count(&["volume", "ls", "-q", "--filter", &f]),
    )
}

/// Removes whatever a failed test left with the cluster's label.
pub struct Leftovers(pub String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        // Best effort and never a panic: this may run while a failed test unwinds.
        let docker = |args: &[&str]| {
            try_output_within(
                DOCKER_LIMIT,
                std::process::Command::new("docker").args(args),
            )
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default()
        };
        let f = format!("label=dcform.cluster={}", self.0);
        for id in docker(&["ps", "-aq", "--filter", &f]).split_whitespace() {
            docker(&["rm", "-f", "-v", id]);
        }
        for n in docker(&["network", "ls", "-q", "--filter", &f]).split_whitespace() {
            docker(&["network", "rm", n]);
        }
    }
}

fn records(buf: &mut Vec<u8>) -> Vec<Value> {
    let mut out = Vec::new();
    while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
        let len: usize = match std::str::from_utf8(&buf[..nl])
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            Some(l) => l,
            None => panic!("bad RecordIO length in {:?}", String::from_utf8_lossy(buf)),
        };
        if buf.len() < nl + 1 + len {
            break;
        }
        let rec: Vec<u8> = buf.drain(..nl + 1 + len).skip(nl + 1).collect();
        out.push(serde_json::from_slice(&rec).expect("event is JSON"));
    }
    out
}

/// Runs `echo MARKER` as a task through the master's v1 scheduler API (a framework of its own) and returns
/// what the agent's sandbox file API serves as the task's stdout.
pub async fn run_task(master: &str, access: &Access, marker: &str) -> String {
    let token = access.operator_token.as_str();
    let http = access.client();
    let url = format!("{master}/api/v1/scheduler");
    let mut resp = http
        .post(&url)
        .bearer_auth(token)
        .header("Accept", "application/json")
        .json(
            &json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {
            "user": "root", "name": "provider-test", "roles": ["*"]}}}),
        )
        .send()
        .await
        .expect("subscribe");
    assert_eq!(resp.status().as_u16(), 200, "SUBSCRIBE refused");
    let stream_id = resp
        .headers()
        .get("mesos-stream-id")
        .and_then(|v| v.to_str().ok())
        .expect("Mesos-Stream-Id header")
        .to_string();
    let mut buf = Vec::new();
    let mut framework = String::new();
    let task_id = format!("task-{marker}");
    let mut agent_id = String::new();
    let mut launched = false;
    loop {
        let chunk = resp
            .chunk()
            .await
            .expect("event stream")
            .expect("stream open");
        buf.extend_from_slice(&chunk);
        for ev in records(&mut buf) {
            let call = |body: Value| {
                http.post(&url)
                    .bearer_auth(token)
                    .header("Mesos-Stream-Id", &stream_id)
                    .json(&body)
                    .send()
            };
            match ev["type"].as_str().unwrap_or_default() {
                "SUBSCRIBED" => {
                    framework = ev["subscribed"]["framework_id"]["value"]
                        .as_str()
                        .expect("framework id")
                        .to_string();
                }
                "OFFERS" if !launched => {
                    let offer = &ev["offers"]["offers"][0];
                    agent_id = offer["agent_id"]["value"]
                        .as_str()
                        .expect("agent id")
                        .to_string();
                    let r = call(json!({"type": "ACCEPT", "framework_id": {"value": framework},
                        "accept": {"offer_ids": [offer["id"]], "operations": [{"type": "LAUNCH", "launch": {
                            "task_infos": [{"name": "echo", "task_id": {"value": task_id},
                                "agent_id": {"value": agent_id},
                                "resources": [
                                    {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                                    {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}],
                                "command": {"value": format!("echo {marker}")}}]}}]}}))
                    .await
                    .expect("accept");
                    assert_eq!(
                        r.status().as_u16(),
                        202,
                        "ACCEPT refused: {:?}",
                        r.text().await
                    );
                    launched = true;
                }
                "UPDATE" => {
                    let st = &ev["update"]["status"];
                    if let Some(uuid) = st["uuid"].as_str() {
                        let _ = call(json!({"type": "ACKNOWLEDGE", "framework_id": {"value": framework},
                            "acknowledge": {"agent_id": st["agent_id"], "task_id": st["task_id"], "uuid": uuid}}))
                        .await;
                    }
                    match st["state"].as_str().unwrap_or_default() {
                        "TASK_FINISHED" => {
                            return read_stdout(
                                &http, master, access, &agent_id, &framework, &task_id,
                            )
                            .await;
                        }
                        "TASK_FAILED" | "TASK_LOST" | "TASK_ERROR" | "TASK_KILLED"
                        | "TASK_DROPPED" => {
                            panic!("task did not finish: {st}")
                        }
                        _ => {}
                    }
                }
                "ERROR" => panic!("scheduler error: {ev}"),
                _ => {}
            }
        }
    }
}

async fn read_stdout(
    http: &reqwest::Client,
    master: &str,
    access: &Access,
    agent_id: &str,
    framework: &str,
    task: &str,
) -> String {
    let agents: Value = http
        .post(format!("{master}/api/v1"))
        .bearer_auth(&access.operator_token)
        .json(&json!({"type": "GET_AGENTS"}))
        .send()
        .await
        .expect("GET_AGENTS")
        .json()
        .await
        .expect("agents JSON");
    let agent = agents["get_agents"]["agents"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|a| a["agent_info"]["id"]["value"] == agent_id)
        })
        .unwrap_or_else(|| panic!("agent {agent_id} not in {agents}"));
    let base = agent["url"]
        .as_str()
        .expect("agent url")
        .trim_end_matches('/');
    let v: Value = http
        // Ids are made of [A-Za-z0-9-]: no escaping needed in the query string.
        .get(format!(
            "{base}/files/read?path={framework}/{task}/stdout&offset=0&length=65536"
        ))
        // The agents' credential: an agent's files API does not take the operator token.
        .bearer_auth(&access.agent_token)
        .send()
        .await
        .expect("files/read")
        .json()
        .await
        .expect("files/read JSON");
    v["data"].as_str().unwrap_or_default().to_string()
}

/// Runs a task printing `marker` on the cluster `status` (from `dcform status --json`) describes, through the
/// scheduler API, and returns its stdout.
pub async fn marker_task(status: &Value, dir: &Path, cluster: &str, marker: &str) -> String {
    let master = status["outputs"]["master_url"]
        .as_str()
        .expect("master_url")
        .to_string();
    let access = Access::of(&dir.join(format!(".dcform/{cluster}")));
    within(
        Duration::from_secs(120),
        "task through the scheduler API",
        run_task(&master, &access, marker),
    )
    .await
}

/// What a test needs to call a cluster dcform made: its credentials and CA from the state folder.
pub struct Access {
    /// The operator token.
    pub operator_token: String,
    /// The agents' credential (what an agent's files API takes).
    pub agent_token: String,
    /// The cluster CA certificate, when the cluster serves HTTPS.
    pub ca_pem: Option<Vec<u8>>,
}

impl Access {
    /// From the state folder `dir`.
    pub fn of(dir: &Path) -> Access {
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .unwrap_or_else(|e| panic!("{}/{f}: {e}", dir.display()))
                .trim()
                .to_string()
        };
        Access {
            operator_token: read("token"),
            agent_token: read("agent-token"),
            ca_pem: std::fs::read(dir.join("ca.pem")).ok(),
        }
    }

    /// A client that trusts the cluster CA (and only it).
    pub fn client(&self) -> reqwest::Client {
        // The workspace reqwest has rustls without a built-in crypto provider (dccore uses ring):
        // install ring as the process default, or building the client panics.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = reqwest::Client::builder().timeout(Duration::from_secs(120));
        if let Some(pem) = &self.ca_pem {
            b = b.add_root_certificate(reqwest::Certificate::from_pem(pem).expect("CA PEM"));
        }
        b.build().expect("http client")
    }
}
