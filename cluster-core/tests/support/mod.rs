//! In-process clusters for the integration tests: a master and agents on 127.0.0.1:0 with short
//! timeouts, and a minimal v1 scheduler client that speaks the real HTTP API.
#![allow(dead_code)]

pub mod dns;
mod fixture;
pub mod pki;

// Not every test file uses it; the ones that do take it with `support::*`.
#[allow(unused_imports)]
pub use fixture::master_and_agent;

use dccore::agent::{self, AgentConfig};
use dccore::auth::Authenticator;
use dccore::master::MasterConfig;
use dccore::proto::Resources;
use dccore::proto::scheduler::take_records;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "test-token";
pub const PRINCIPAL: &str = "fw";
pub const SECRET: &str = "fw-secret";
/// Upper bound for any single wait in a test (generous: the machine is shared).
pub const WAIT: Duration = Duration::from_secs(30);

/// Awaits `f` or panics with `what` after [`WAIT`].
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    dc_support::testing::within(WAIT, what, f).await
}

/// Polls `check` until it returns Some.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(what, async {
        loop {
            if let Some(v) = check().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// A reqwest client for plain HTTP. The workspace's reqwest has rustls without a built-in
/// crypto provider, so *ring* is installed as the process default first.
pub fn http() -> reqwest::Client {
    dccore::tls::install_default_provider();
    reqwest::Client::new()
}

pub fn basic() -> String {
    basic_for(PRINCIPAL, SECRET)
}

/// `Basic` header value for a principal and secret.
pub fn basic_for(principal: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        dccore::proto::base64_encode(format!("{principal}:{secret}").as_bytes())
    )
}

pub fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

pub fn fast_master_config(dir: &Path) -> MasterConfig {
    let mut c = MasterConfig::new(dir);
    // Short enough for the agent-loss tests, long enough that a loaded CI machine does not lose
    // agents that heartbeat every 100 ms.
    c.agent_timeout = Duration::from_secs(3);
    c.allocation_interval = Duration::from_millis(200);
    c.status_update_retry = Duration::from_millis(300);
    c.framework_heartbeat = Duration::from_secs(1);
    c.default_refuse = Duration::from_millis(200);
    // The built-in services framework would be one more framework in every test's state;
    // tests/services.rs turns it on.
    c.services = false;
    c
}

pub struct Master {
    pub url: String,
    /// The client the operator helpers use (one that trusts the CA for a TLS master).
    pub http: reqwest::Client,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    pub stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Master {
    pub async fn start(dir: &Path) -> Master {
        Self::start_on(dir, "127.0.0.1:0", fast_master_config(dir)).await
    }

    pub async fn start_on(dir: &Path, addr: &str, cfg: MasterConfig) -> Master {
        let auth = Authenticator::new(TOKEN).with_principal(PRINCIPAL, SECRET);
        Self::start_with_auth(dir, addr, cfg, auth).await
    }

    pub async fn start_with_auth(
        dir: &Path,
        addr: &str,
        cfg: MasterConfig,
        auth: Authenticator,
    ) -> Master {
        // A restart binds its old address again: meanwhile another test's outgoing connection may
        // hold that port as its local end for a moment, so a busy address is tried again.
        let listener = eventually(&format!("master bind {addr}"), || async {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => Some(l),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => None,
                Err(e) => panic!("bind master {addr}: {e}"),
            }
        })
        .await;
        let addr = listener.local_addr().expect("local addr");
        let scheme = cfg.tls.scheme();
        let http = match &cfg.tls.ca {
            Some(_) => {
                let ca = dccore::tls::Tls {
                    own: None,
                    ca: cfg.tls.ca.clone(),
                };
                ca.http_client()
                    .expect("TLS client")
                    .build()
                    .expect("client")
            }
            None => http(),
        };
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(async move {
            dccore::api::serve(listener, cfg, auth, s)
                .await
                .expect("master runs");
        });
        Master {
            url: format!("{scheme}://{addr}"),
            http,
            addr,
            dir: dir.to_path_buf(),
            stop,
            task,
        }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        within("master shutdown", self.task)
            .await
            .expect("master task");
    }

    /// Operator API call with the token.
    pub async fn operator(&self, kind: &str) -> Value {
        let r = within(
            "operator call",
            self.http
                .post(format!("{}/api/v1", self.url))
                .header("authorization", bearer())
                .json(&json!({"type": kind}))
                .send(),
        )
        .await
        .expect("operator call");
        assert!(r.status().is_success(), "{kind} answered {}", r.status());
        within("operator body", r.json())
            .await
            .expect("operator JSON")
    }

    /// `GET /metrics` with the operator token: the Prometheus text (the call must succeed).
    pub async fn metrics(&self) -> String {
        let (status, text) = self.metrics_as(&bearer()).await;
        assert!(status.is_success(), "/metrics answered {status}: {text}");
        text
    }

    /// `GET /metrics` with `authorization`: its status and body text.
    pub async fn metrics_as(&self, authorization: &str) -> (reqwest::StatusCode, String) {
        let r = within(
            "metrics",
            self.http
                .get(format!("{}/metrics", self.url))
                .header("authorization", authorization)
                .send(),
        )
        .await
        .expect("metrics call");
        let status = r.status();
        let text = within("metrics body", r.text())
            .await
            .expect("metrics body");
        (status, text)
    }

    /// Any operator call with the token: its status and body text.
    pub async fn operator_call(&self, body: Value) -> (reqwest::StatusCode, String) {
        let r = within(
            "operator call",
            self.http
                .post(format!("{}/api/v1", self.url))
                .header("authorization", bearer())
                .json(&body)
                .send(),
        )
        .await
        .expect("operator call");
        let status = r.status();
        let text = within("operator body", r.text())
            .await
            .expect("operator body");
        (status, text)
    }

    /// The GET_AGENTS entry (reachable agents) whose `url` is `url`.
    pub async fn agent_by_url(&self, url: &str) -> Option<Value> {
        self.operator("GET_AGENTS").await["get_agents"]["agents"]
            .as_array()?
            .iter()
            .find(|a| a["url"] == url)
            .cloned()
    }

    pub async fn agent_count(&self) -> usize {
        self.operator("GET_AGENTS").await["get_agents"]["agents"]
            .as_array()
            .map(Vec::len)
            .unwrap_or(0)
    }

    pub async fn wait_agents(&self, n: usize) {
        eventually(&format!("{n} agents registered"), || async {
            (self.agent_count().await == n).then_some(())
        })
        .await
    }
}

pub struct Agent {
    pub url: String,
    pub dir: PathBuf,
    pub stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Agent {
    pub async fn start(master: &str, dir: &Path, resources: &str, public: bool) -> Agent {
        Self::start_with(master, dir, resources, public, |_| {}).await
    }

    pub async fn start_with(
        master: &str,
        dir: &Path,
        resources: &str,
        public: bool,
        tweak: impl FnOnce(&mut AgentConfig),
    ) -> Agent {
        let listener = within("agent bind", tokio::net::TcpListener::bind("127.0.0.1:0"))
            .await
            .expect("bind agent");
        let addr = listener.local_addr().expect("local addr");
        let mut cfg = AgentConfig::new(master, dir, TOKEN);
        cfg.resources = Resources::parse(resources).expect("resources");
        cfg.public = public;
        cfg.heartbeat_interval = Duration::from_millis(100);
        cfg.kill_grace = Duration::from_millis(500);
        // Tests never touch the host's cgroups; the cgroup test passes a fake hierarchy.
        cfg.cgroup_base = None;
        tweak(&mut cfg);
        let scheme = cfg.tls.scheme();
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(async move {
            agent::run(listener, cfg, s).await.expect("agent runs");
        });
        Agent {
            url: format!("{scheme}://{addr}"),
            dir: dir.to_path_buf(),
            stop,
            task,
        }
    }

    /// Stops the agent process (its tasks keep running).
    pub async fn stop(self) {
        self.stop.cancel();
        within("agent shutdown", self.task)
            .await
            .expect("agent task");
    }
}

/// A v1 scheduler client over the real HTTP API.
pub struct Framework {
    pub id: String,
    pub stream_id: String,
    base: String,
    auth: String,
    http: reqwest::Client,
    events: mpsc::UnboundedReceiver<Value>,
    backlog: VecDeque<Value>,
    reader: JoinHandle<()>,
}

impl Drop for Framework {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Framework {
    pub async fn subscribe(base: &str, info: Value) -> Framework {
        Self::subscribe_with(base, info, None).await
    }

    pub async fn subscribe_with(base: &str, info: Value, framework_id: Option<&str>) -> Framework {
        Self::subscribe_as(base, info, framework_id, &basic()).await
    }

    /// Subscribes with the `Authorization` header `auth` (e.g. another principal's Basic).
    pub async fn subscribe_as(
        base: &str,
        info: Value,
        framework_id: Option<&str>,
        auth: &str,
    ) -> Framework {
        Self::subscribe_using(http(), base, info, framework_id, auth).await
    }

    /// Subscribes through `http` (e.g. a client that trusts a TLS master's CA).
    pub async fn subscribe_using(
        http: reqwest::Client,
        base: &str,
        info: Value,
        framework_id: Option<&str>,
        auth: &str,
    ) -> Framework {
        let mut body = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": info}});
        if let Some(id) = framework_id {
            body["framework_id"] = json!({"value": id});
        }
        let mut resp = within(
            "subscribe",
            http.post(format!("{base}/api/v1/scheduler"))
                .header("authorization", auth)
                .json(&body)
                .send(),
        )
        .await
        .expect("subscribe request");
        assert_eq!(resp.status(), 200, "subscribe answered {}", resp.status());
        let stream_id = resp
            .headers()
            .get("mesos-stream-id")
            .and_then(|v| v.to_str().ok())
            .expect("Mesos-Stream-Id header")
            .to_string();
        let (tx, events) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut buf = Vec::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                buf.extend_from_slice(&chunk);
                for rec in take_records(&mut buf) {
                    if tx.send(rec).is_err() {
                        return;
                    }
                }
            }
        });
        let mut fw = Framework {
            id: String::new(),
            stream_id,
            base: base.to_string(),
            auth: auth.to_string(),
            http,
            events,
            backlog: VecDeque::new(),
            reader,
        };
        let sub = fw.next("SUBSCRIBED").await;
        fw.id = sub["subscribed"]["framework_id"]["value"]
            .as_str()
            .expect("framework id")
            .to_string();
        fw
    }

    /// The next event of `kind` (HEARTBEATs skipped; other kinds kept for later).
    pub async fn next(&mut self, kind: &str) -> Value {
        if let Some(pos) = self.backlog.iter().position(|e| e["type"] == kind) {
            return self.backlog.remove(pos).expect("position is valid");
        }
        within(&format!("a {kind} event"), async {
            loop {
                let e = self.events.recv().await.expect("event stream ended");
                if e["type"] == kind {
                    return e;
                }
                if e["type"] != "HEARTBEAT" {
                    self.backlog.push_back(e);
                }
            }
        })
        .await
    }

    /// Next OFFERS event's offers.
    pub async fn offers(&mut self) -> Vec<Value> {
        self.next("OFFERS").await["offers"]["offers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Next status update (not acknowledged).
    pub async fn update(&mut self) -> Value {
        self.next("UPDATE").await["update"]["status"].clone()
    }

    /// Next status update, acknowledged if it carries a uuid.
    pub async fn update_acked(&mut self) -> Value {
        let st = self.update().await;
        if st.get("uuid").is_some() {
            self.ack(&st).await;
        }
        st
    }

    /// Waits for an update of `state` for `task`, acknowledging everything on the way.
    pub async fn wait_state(&mut self, task: &str, state: &str) -> Value {
        within(&format!("task {task} to reach {state}"), async {
            loop {
                let st = self.update_acked().await;
                if st["task_id"]["value"] == task && st["state"] == state {
                    return st;
                }
            }
        })
        .await
    }

    pub async fn call(&self, mut body: Value) -> reqwest::StatusCode {
        body["framework_id"] = json!({"value": self.id});
        within(
            "scheduler call",
            self.http
                .post(format!("{}/api/v1/scheduler", self.base))
                .header("authorization", &self.auth)
                .header("mesos-stream-id", &self.stream_id)
                .json(&body)
                .send(),
        )
        .await
        .expect("scheduler call")
        .status()
    }

    pub async fn ack(&self, status: &Value) {
        let code = self
            .call(json!({"type": "ACKNOWLEDGE", "acknowledge": {
                "agent_id": status["agent_id"], "task_id": status["task_id"], "uuid": status["uuid"]}}))
            .await;
        assert_eq!(code, 202);
    }

    pub async fn launch(&self, offer: &Value, tasks: Vec<Value>) {
        let code = self
            .call(json!({"type": "ACCEPT", "accept": {
                "offer_ids": [offer["id"]],
                "operations": [{"type": "LAUNCH", "launch": {"task_infos": tasks}}],
                "filters": {"refuse_seconds": 0.0}}}))
            .await;
        assert_eq!(code, 202);
    }

    pub async fn decline(&self, offer: &Value, refuse_seconds: f64) {
        let code = self
            .call(json!({"type": "DECLINE", "decline": {"offer_ids": [offer["id"]], "filters": {"refuse_seconds": refuse_seconds}}}))
            .await;
        assert_eq!(code, 202);
    }
}

/// A command task for `offer` using 0.1 cpus and 32 MiB.
pub fn task(offer: &Value, id: &str, cmd: &str) -> Value {
    json!({
        "name": id,
        "task_id": {"value": id},
        "agent_id": offer["agent_id"],
        "command": {"value": cmd, "shell": true},
        "resources": [
            {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}},
        ],
    })
}

pub fn framework_info(name: &str) -> Value {
    json!({"user": "root", "name": name, "failover_timeout": 3600.0})
}

pub const AGENT_RES: &str = "cpus:2;mem:1024;disk:1000;ports:[31000-31100]";

/// The pid a task wrote to `path` (`echo $$ > pid`).
pub fn pid_in(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// True if `pid` is a live, non-zombie process.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.split_whitespace().next() != Some("Z"))
        })
        .unwrap_or(false)
}

/// The `dccore` binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_dccore");

/// Starts `dccore ARGS` (killed when dropped) with its stderr going to `stderr`; returns the
/// child and the first line it prints on stdout (the address it listens on).
pub async fn start_bin(
    args: &[&str],
    stderr: std::process::Stdio,
) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(BIN)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn dccore");
    let out = child.stdout.take().expect("piped stdout");
    let first = within(
        "the address line",
        tokio::io::BufReader::new(out).lines().next_line(),
    )
    .await
    .expect("read stdout")
    .expect("a first stdout line");
    (child, first)
}
