//! A minimal Mesos v1 HTTP scheduler client for end-to-end tests: subscribe, take an offer, launch a command
//! task, follow its status updates (acknowledging each), and read its stdout from the agent's sandbox API.
//! It speaks the same JSON and RecordIO a real framework library does, against a cluster dcform booted.
#![allow(dead_code)] // each test binary uses part of it

use std::time::Duration;

use serde_json::{Value, json};

/// A client that trusts `ca_pem` only (or the system roots without it).
pub fn client(ca_pem: Option<&[u8]>) -> reqwest::Client {
    // The workspace reqwest has rustls without a built-in crypto provider (dccore uses ring):
    // install ring as the process default, or building the client panics.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder();
    if let Some(pem) = ca_pem {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem).expect("CA PEM"));
    }
    b.build().expect("http client")
}

/// A subscribed framework.
pub struct Scheduler {
    base: String,
    token: String,
    client: reqwest::Client,
    resp: reqwest::Response,
    buf: Vec<u8>,
    stream_id: String,
    /// The framework id the master assigned.
    pub framework_id: String,
}

impl Scheduler {
    /// Subscribes to the master at `base` (`http(s)://host:port`) with the cluster's bearer
    /// token; `ca_pem` is the cluster CA for an `https://` master.
    pub async fn subscribe(
        base: &str,
        token: &str,
        ca_pem: Option<&[u8]>,
        name: &str,
    ) -> Scheduler {
        let client = client(ca_pem);
        let body = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "root", "name": name, "roles": ["*"], "capabilities": [{"type": "MULTI_ROLE"}]}}});
        let resp = client
            .post(format!("{base}/api/v1/scheduler"))
            .bearer_auth(token)
            .header("Accept", "application/json")
            .json(&body)
            .send()
            .await
            .expect("subscribe request");
        assert!(
            resp.status().is_success(),
            "subscribe answered {}",
            resp.status()
        );
        let stream_id = resp
            .headers()
            .get("Mesos-Stream-Id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let mut s = Scheduler {
            base: base.into(),
            token: token.into(),
            client,
            resp,
            buf: Vec::new(),
            stream_id,
            framework_id: String::new(),
        };
        let subscribed = s.next("SUBSCRIBED").await;
        s.framework_id = subscribed["subscribed"]["framework_id"]["value"]
            .as_str()
            .expect("framework id")
            .to_string();
        s
    }

    /// The next event of type `kind` (others are skipped; updates are acknowledged as they pass).
    pub async fn next(&mut self, kind: &str) -> Value {
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let e = self.event().await;
                if e["type"] == kind {
                    return e;
                }
                if e["type"] == "UPDATE" {
                    self.ack(&e).await;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {kind} event within 60 s"))
    }

    async fn event(&mut self) -> Value {
        loop {
            // RecordIO: "<length>\n<json of that length>".
            if let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
                let len: usize = std::str::from_utf8(&self.buf[..nl])
                    .expect("length")
                    .trim()
                    .parse()
                    .expect("length");
                if self.buf.len() > nl + len {
                    let record: Vec<u8> = self.buf.drain(..nl + 1 + len).skip(nl + 1).collect();
                    return serde_json::from_slice(&record).expect("event json");
                }
            }
            let chunk = self
                .resp
                .chunk()
                .await
                .expect("event stream")
                .expect("event stream ended");
            self.buf.extend_from_slice(&chunk);
        }
    }

    async fn call(&self, body: Value) {
        let resp = self
            .client
            .post(format!("{}/api/v1/scheduler", self.base))
            .bearer_auth(&self.token)
            .header("Mesos-Stream-Id", &self.stream_id)
            .json(&body)
            .send()
            .await
            .expect("scheduler call");
        assert!(
            resp.status().is_success(),
            "{} answered {}: {}",
            body["type"],
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
    }

    async fn ack(&self, update: &Value) {
        let status = &update["update"]["status"];
        let Some(uuid) = status.get("uuid") else {
            return;
        };
        self.call(json!({"framework_id": {"value": self.framework_id}, "type": "ACKNOWLEDGE", "acknowledge": {
            "agent_id": status["agent_id"], "task_id": status["task_id"], "uuid": uuid}}))
        .await;
    }

    /// Launches `cmd` as task `task_id` on the first offer; returns the agent id it went to.
    pub async fn launch(&mut self, task_id: &str, cmd: &str) -> String {
        let offers = self.next("OFFERS").await;
        let offer = offers["offers"]["offers"][0].clone();
        let agent = offer["agent_id"].clone();
        let task = json!({"name": task_id, "task_id": {"value": task_id}, "agent_id": agent,
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}}, {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}],
            "command": {"value": cmd, "shell": true}});
        self.call(json!({"framework_id": {"value": self.framework_id}, "type": "ACCEPT", "accept": {
            "offer_ids": [offer["id"]], "operations": [{"type": "LAUNCH", "launch": {"task_infos": [task]}}]}}))
        .await;
        agent["value"].as_str().expect("agent id").to_string()
    }

    /// Launches `cmd` as task `task_id` on the first offer from agent `agent_id` (any agent when
    /// `None`; offers of others are left to expire), with `kill_grace` as its kill policy's grace
    /// period (the agent's default when `None`); returns the agent id it went to.
    pub async fn launch_on(
        &mut self,
        task_id: &str,
        cmd: &str,
        agent_id: Option<&str>,
        kill_grace: Option<Duration>,
    ) -> String {
        let offer = loop {
            let offers = self.next("OFFERS").await;
            let found = offers["offers"]["offers"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|o| agent_id.is_none_or(|a| o["agent_id"]["value"] == a))
                .cloned();
            if let Some(o) = found {
                break o;
            }
        };
        let agent = offer["agent_id"].clone();
        let mut task = json!({"name": task_id, "task_id": {"value": task_id}, "agent_id": agent,
            "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}}, {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}],
            "command": {"value": cmd, "shell": true}});
        if let Some(g) = kill_grace {
            task["kill_policy"] = json!({"grace_period": {"nanoseconds": i64::try_from(g.as_nanos()).expect("grace fits i64")}});
        }
        self.call(json!({"framework_id": {"value": self.framework_id}, "type": "ACCEPT", "accept": {
            "offer_ids": [offer["id"]], "operations": [{"type": "LAUNCH", "launch": {"task_infos": [task]}}]}}))
        .await;
        agent["value"].as_str().expect("agent id").to_string()
    }

    /// Tears the framework down (TEARDOWN): its offers go back to the allocator at once. A
    /// framework that is merely dropped keeps its outstanding offers until the master sees the
    /// stream closed or the offer timeout (60 s) passes, starving the next framework of a test.
    pub async fn teardown(self) {
        self.call(json!({"framework_id": {"value": self.framework_id}, "type": "TEARDOWN"}))
            .await;
    }

    /// Waits for `task_id` to reach `state`, acknowledging every update; panics on another terminal state.
    pub async fn wait_state(&mut self, task_id: &str, state: &str) -> Value {
        loop {
            let u = self.next("UPDATE").await;
            self.ack(&u).await;
            let s = &u["update"]["status"];
            if s["task_id"]["value"] == task_id {
                let got = s["state"].as_str().unwrap_or_default();
                if got == state {
                    return u;
                }
                if matches!(
                    got,
                    "TASK_FAILED" | "TASK_LOST" | "TASK_ERROR" | "TASK_KILLED" | "TASK_FINISHED"
                ) {
                    panic!("task {task_id} ended {got}, wanted {state}: {s}");
                }
            }
        }
    }

    /// Reads a task's sandbox file (`stdout`) through the agent's files API, with `agent_token`
    /// (the agents' credential: an agent's files API does not take the operator token).
    pub async fn sandbox_file(
        &self,
        agent_url: &str,
        agent_token: &str,
        task_id: &str,
        file: &str,
    ) -> String {
        let path = format!("{}/{task_id}/{file}", self.framework_id);
        let resp = self
            .client
            .get(format!(
                "{agent_url}/files/download?path={}",
                path.replace('/', "%2F")
            ))
            .bearer_auth(agent_token)
            .send()
            .await
            .expect("files request");
        assert!(
            resp.status().is_success(),
            "files/download {path} answered {}",
            resp.status()
        );
        resp.text().await.expect("file body")
    }
}
