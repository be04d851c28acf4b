//! `GET /v2/events`, Marathon's event stream, on an in-process cluster (a real master with
//! the services framework, a real agent, real task and COMMAND check processes): a deployment's
//! events arrive in the order Marathon sends them, a kill shows as a status update, the
//! `event_type` filter holds, and the stream is authenticated like every `/v2` route.

mod support;

use serde_json::{Value, json};
use std::path::Path;
use support::*;

/// Task ports of this test's agent: below 20000 (see the common test rules), apart from the
/// 31000-31100 the other tests' agents offer.
const RES: &str = "cpus:2;mem:1024;disk:1000;ports:[19200-19299]";

async fn master(dir: &Path) -> Master {
    let mut cfg = fast_master_config(dir);
    cfg.services = true;
    Master::start_on(dir, "127.0.0.1:0", cfg).await
}

/// A client's view of a server-sent event stream.
struct Events {
    resp: reqwest::Response,
    buf: String,
}

impl Events {
    async fn open(m: &Master, query: &str) -> Events {
        let r = m
            .http
            .get(format!("{}/v2/events{query}", m.url))
            .header("authorization", bearer())
            .header("accept", "text/event-stream")
            .send();
        let resp = within("GET /v2/events answered", r).await.expect("sent");
        assert_eq!(resp.status(), 200);
        let ct = resp.headers()["content-type"].to_str().expect("ascii");
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Events {
            resp,
            buf: String::new(),
        }
    }

    /// The next event: its `event:` name and its `data:` JSON (comments skipped). Its
    /// `eventType` must be its name.
    async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut name, mut data) = (None, String::new());
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event:") {
                        name = Some(n.trim().to_string());
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                let Some(name) = name else { continue }; // a keep-alive comment
                let v: Value = serde_json::from_str(&data).expect("data is JSON");
                assert_eq!(v["eventType"], name.as_str(), "{v}");
                assert!(v["timestamp"].is_string(), "{v}");
                return (name, v);
            }
            let chunk = within("the next server-sent event", self.resp.chunk())
                .await
                .expect("stream read")
                .expect("stream still open");
            self.buf
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    /// Events up to and including the first for which `last` holds.
    async fn until(&mut self, last: impl Fn(&str, &Value) -> bool) -> Vec<(String, Value)> {
        let mut seen = Vec::new();
        loop {
            let (n, v) = self.next().await;
            let done = last(&n, &v);
            seen.push((n, v));
            if done {
                return seen;
            }
        }
    }
}

fn position(seen: &[(String, Value)], what: &str, f: impl Fn(&str, &Value) -> bool) -> usize {
    seen.iter()
        .position(|(n, v)| f(n, v))
        .unwrap_or_else(|| panic!("no {what} in {seen:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_streams_info_running_healthy_success_in_order_and_a_kill_streams_killed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = master(&dir.path().join("m")).await;
    let agent = Agent::start(&m.url, &dir.path().join("a"), RES, false).await;
    m.wait_agents(1).await;

    let mut all = Events::open(&m, "").await;
    let (first, attached) = all.next().await;
    assert_eq!(first, "event_stream_attached", "{attached}");
    let mut filtered = Events::open(
        &m,
        "?event_type=deployment_success&event_type=health_status_changed_event",
    )
    .await;

    let def = json!({"id": "/ev/web", "cmd": "sleep 120", "instances": 2, "cpus": 0.1, "mem": 16,
        "portDefinitions": [{"port": 0}],
        "healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"},
            "gracePeriodSeconds": 0, "intervalSeconds": 0.1, "timeoutSeconds": 5,
            "maxConsecutiveFailures": 3}]});
    let r = m
        .http
        .post(format!("{}/v2/apps", m.url))
        .header("authorization", bearer())
        .json(&def)
        .send();
    let r = within("POST /v2/apps", r).await.expect("sent");
    assert_eq!(r.status(), 201);
    let created: Value = within("its body", r.json()).await.expect("JSON");
    let deployment = created["deployments"][0]["id"]
        .as_str()
        .expect("a deployment id")
        .to_string();

    let seen = all
        .until(|n, v| n == "deployment_success" && v["id"] == deployment.as_str())
        .await;
    let posted = position(&seen, "api_post_event", |n, v| {
        n == "api_post_event" && v["uri"] == "/v2/apps/ev/web"
    });
    assert_eq!(seen[posted].1["appDefinition"]["cmd"], "sleep 120");
    let info = position(&seen, "deployment_info", |n, v| {
        n == "deployment_info" && v["plan"]["id"] == deployment.as_str()
    });
    let plan = &seen[info].1["plan"];
    assert_eq!(plan["target"]["apps"][0]["id"], "/ev/web", "{plan}");
    assert_eq!(
        seen[info].1["currentStep"]["actions"][0]["action"],
        "StartApplication"
    );
    let running: Vec<usize> = (0..seen.len())
        .filter(|&i| {
            seen[i].0 == "status_update_event" && seen[i].1["taskStatus"] == "TASK_RUNNING"
        })
        .collect();
    let alive: Vec<usize> = (0..seen.len())
        .filter(|&i| seen[i].0 == "health_status_changed_event" && seen[i].1["alive"] == true)
        .collect();
    assert_eq!(running.len(), 2, "both instances ran: {seen:#?}");
    assert_eq!(alive.len(), 2, "both became healthy: {seen:#?}");
    let success = seen.len() - 1;
    assert!(posted < info, "the post before its deployment");
    assert!(info < running[0], "deployment_info before TASK_RUNNING");
    assert!(running[0] < alive[0], "TASK_RUNNING before healthy");
    assert!(alive[1] < success, "healthy before deployment_success");
    let st = &seen[running[0]].1;
    assert_eq!(st["appId"], "/ev/web");
    assert_eq!(st["host"], seen[running[1]].1["host"]);
    assert!(
        st["slaveId"].is_string() && st["version"] == created["version"],
        "{st}"
    );
    let port = st["ports"][0].as_u64().expect("a host port");
    assert!((19200..=19299).contains(&port), "{st}");
    let health = &seen[alive[0]].1;
    assert_eq!(health["appId"], "/ev/web");
    assert_eq!(health["instanceId"], health["taskId"]);
    let step_success = position(&seen, "deployment_step_success", |n, _| {
        n == "deployment_step_success"
    });
    assert!(info < step_success && step_success < success);

    // The filtered stream saw only what it asked for, and the same success.
    let only = filtered.until(|n, _| n == "deployment_success").await;
    assert!(
        only.iter()
            .all(|(n, _)| n == "health_status_changed_event" || n == "deployment_success"),
        "{only:#?}"
    );
    assert_eq!(
        only.len(),
        3,
        "two health changes and the success: {only:#?}"
    );
    assert_eq!(only[2].1["id"], deployment.as_str());

    // Killing an instance with scale=true: its TASK_KILLED arrives.
    let victim = st["taskId"].as_str().expect("task id").to_string();
    let r = m
        .http
        .post(format!("{}/v2/tasks/delete?scale=true", m.url))
        .header("authorization", bearer())
        .json(&json!({"ids": [victim]}))
        .send();
    let r = within("POST /v2/tasks/delete", r).await.expect("sent");
    assert_eq!(r.status(), 200);
    let killed = all
        .until(|n, v| {
            n == "status_update_event"
                && v["taskId"] == victim.as_str()
                && v["taskStatus"] != "TASK_RUNNING"
        })
        .await;
    let (_, last) = killed.last().expect("one event at least");
    assert_eq!(last["taskStatus"], "TASK_KILLED", "{last}");

    drop((all, filtered));
    agent.stop().await;
    m.stop().await;
}

#[tokio::test]
async fn the_event_stream_needs_the_operator_token_in_any_of_its_forms() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = master(dir.path()).await;
    let get = |auth: Option<String>| {
        let mut r = m.http.get(format!("{}/v2/events", m.url));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        async move { within("GET /v2/events", r.send()).await.expect("sent") }
    };
    assert_eq!(get(None).await.status(), 401);
    assert_eq!(get(Some("Bearer wrong".into())).await.status(), 401);
    assert_eq!(
        get(Some(basic())).await.status(),
        403,
        "a framework principal"
    );
    for auth in [bearer(), format!("token={TOKEN}")] {
        let r = get(Some(auth.clone())).await;
        assert_eq!(r.status(), 200, "{auth}");
        let mut events = Events {
            resp: r,
            buf: String::new(),
        };
        let (name, _) = events.next().await;
        assert_eq!(name, "event_stream_attached", "{auth}");
    }
    m.stop().await;
}
