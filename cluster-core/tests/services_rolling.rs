//! Rolling deployments of the built-in services framework on an in-process cluster (a real
//! master with services and a real agent on 127.0.0.1, real task processes answering real HTTP
//! health checks): `upgradeStrategy` holds at every poll through an update, and a deployment
//! that does not finish within `services_deployment_timeout` is rolled back.

mod support;

use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use support::*;

/// Each test's agent gets its own host ports: the tasks listen on them, and tests (of this and
/// other binaries) run at the same time on one machine. The ports lie below the kernel's
/// ephemeral range (32768-60999) and below the local provider's agent ranges (20000-32699): a
/// port in the ephemeral range can be held at that moment by any outgoing connection (the
/// agent's own health checks among them), and the task then fails to bind (CI saw
/// `exited with status 1` on a rollback this way).
fn resources(first_port: u16) -> String {
    format!(
        "cpus:2;mem:1024;disk:1000;ports:[{first_port}-{}]",
        first_port + 19
    )
}

/// How often the tests look at the app during an update (the brief's 100 ms).
const POLL: Duration = Duration::from_millis(100);

async fn master(dir: &Path, deployment_timeout: Duration) -> Master {
    let mut cfg = fast_master_config(dir);
    cfg.services = true;
    cfg.services_deployment_timeout = deployment_timeout;
    Master::start_on(dir, "127.0.0.1:0", cfg).await
}

async fn req(m: &Master, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = m
        .http
        .request(method, format!("{}{path}", m.url))
        .header("authorization", bearer());
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = within(&format!("{path} answered"), r.send())
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    let text = within("body", resp.text()).await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn get(m: &Master, path: &str) -> Value {
    let (s, v) = req(m, reqwest::Method::GET, path, None).await;
    assert_eq!(s, 200, "GET {path}: {v}");
    v
}

/// A python that can serve HTTP and that the task's user may run: a system one (the CI venv's
/// python lives under a home directory other users cannot enter).
fn python() -> String {
    ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("python3")
        .to_string()
}

/// An app of `n` instances serving HTTP on PORT0 (`tag` makes versions differ), checked by HTTP.
fn web(n: u32, tag: &str, min: f64, max: f64) -> Value {
    json!({"id": "/roll/web", "instances": n, "cpus": 0.1, "mem": 32,
        // `timeout`: a server a failed test leaves behind ends by itself.
        "cmd": format!("exec timeout --foreground 180 {} -m http.server --bind 0.0.0.0 $PORT0", python()),
        "env": {"TAG": tag}, "portDefinitions": [{"port": 0}],
        "healthChecks": [{"protocol": "HTTP", "path": "/", "portIndex": 0, "gracePeriodSeconds": 20,
                          "intervalSeconds": 0.2, "timeoutSeconds": 1, "maxConsecutiveFailures": 3}],
        "upgradeStrategy": {"minimumHealthCapacity": min, "maximumOverCapacity": max}})
}

/// The app's tasks that have not ended (killed ones stay listed until they have).
async fn tasks(m: &Master) -> Vec<Value> {
    get(m, "/v2/apps/roll/web/tasks").await["tasks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn healthy(t: &Value) -> bool {
    t["state"] == "TASK_RUNNING" && t["healthCheckResults"][0]["alive"] == true
}

async fn put(m: &Master, def: Value) -> String {
    let (s, v) = req(m, reqwest::Method::PUT, "/v2/apps/roll/web", Some(def)).await;
    assert!(s == 200 || s == 201, "PUT: {s} {v}");
    v["version"].as_str().expect("a version").to_string()
}

/// Removes the app and waits until its tasks have ended (task processes outlive the test's
/// agent, and they listen on ports).
async fn remove(m: &Master) {
    let (s, v) = req(
        m,
        reqwest::Method::DELETE,
        "/v2/apps/roll/web?force=true",
        None,
    )
    .await;
    assert_eq!(s, 200, "DELETE: {v}");
    eventually("the app's tasks ended", || async {
        let all = get(m, "/v2/tasks").await;
        let left = all["tasks"]
            .as_array()?
            .iter()
            .any(|t| t["appId"] == "/roll/web");
        (!left).then_some(())
    })
    .await;
}

async fn no_deployment(m: &Master) -> bool {
    get(m, "/v2/deployments")
        .await
        .as_array()
        .is_some_and(|d| d.is_empty())
}

/// Waits until the app has exactly `n` tasks, all of `version` and `ok`, and no deployment.
async fn settled(m: &Master, n: usize, version: &str, ok: fn(&Value) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let t = tasks(m).await;
        let done = t.len() == n && t.iter().all(|t| ok(t) && t["version"] == version);
        if done && no_deployment(m).await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not {n} instances of {version} with the deployment done: {t:?} {} {} {}",
            get(m, "/v2/deployments").await,
            get(m, "/v2/apps/roll/web").await,
            get(m, "/v2/queue").await
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Polls every [`POLL`] from the PUT of `def` until `n` healthy instances of the new version
/// are all there is; returns each poll's (healthy, listed) counts and the steps seen.
async fn update_and_watch(m: &Master, def: Value, n: usize) -> (Vec<(usize, usize)>, Vec<Value>) {
    let version = put(m, def).await;
    let (mut polls, mut deployments) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        assert!(
            Instant::now() < deadline,
            "the update did not finish: {polls:?}"
        );
        let t = tasks(m).await;
        polls.push((t.iter().filter(|t| healthy(t)).count(), t.len()));
        let d = get(m, "/v2/deployments").await;
        let done = t.len() == n && t.iter().all(|t| healthy(t) && t["version"] == version);
        if done && d.as_array().is_some_and(|d| d.is_empty()) {
            return (polls, deployments);
        }
        if let Some(first) = d.as_array().and_then(|d| d.first()) {
            deployments.push(first.clone());
        }
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test]
async fn a_rolling_update_keeps_minimum_health_capacity_at_every_poll() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = master(&dir.path().join("m"), Duration::from_secs(300)).await;
    let _a = Agent::start(&m.url, &dir.path().join("a1"), &resources(19000), false).await;
    m.wait_agents(1).await;
    let v1 = put(&m, web(3, "v1", 0.5, 1.0)).await;
    settled(&m, 3, &v1, healthy).await;

    let (polls, deployments) = update_and_watch(&m, web(3, "v2", 0.5, 1.0), 3).await;
    // ceil(3 * 0.5) = 2 healthy at all times; at most 3 + floor(3 * 1.0) = 6 instances.
    for (n, (healthy, listed)) in polls.iter().enumerate() {
        assert!(*healthy >= 2, "poll {n}: {healthy} healthy: {polls:?}");
        assert!(*listed <= 6, "poll {n}: {listed} instances: {polls:?}");
    }
    assert!(polls.len() > 1, "the update was watched while it ran");
    let d = deployments.first().expect("the deployment was listed");
    assert_eq!(d["affectedApps"], json!(["/roll/web"]), "{d}");
    assert_eq!(
        d["currentActions"][0]["action"], "RestartApplication",
        "{d}"
    );
    assert!(d["currentStep"].as_u64() <= d["totalSteps"].as_u64(), "{d}");
    remove(&m).await;
    m.stop().await;
}

#[tokio::test]
async fn full_health_capacity_without_over_capacity_replaces_one_instance_at_a_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = master(&dir.path().join("m"), Duration::from_secs(300)).await;
    let _a = Agent::start(&m.url, &dir.path().join("a1"), &resources(19020), false).await;
    m.wait_agents(1).await;
    let v1 = put(&m, web(3, "v1", 1.0, 0.0)).await;
    settled(&m, 3, &v1, healthy).await;

    let (polls, _) = update_and_watch(&m, web(3, "v2", 1.0, 0.0), 3).await;
    // No capacity above 3 instances: a new one starts only in the place of an old one that
    // has ended, so (as in Marathon) one at a time is replaced and 2 stay healthy meanwhile;
    // never more than 3 instances at once.
    for (n, (healthy, listed)) in polls.iter().enumerate() {
        assert!(*listed <= 3, "poll {n}: {listed} instances: {polls:?}");
        assert!(*healthy >= 2, "poll {n}: {healthy} healthy: {polls:?}");
    }
    remove(&m).await;
    m.stop().await;
}

#[tokio::test]
async fn a_broken_new_version_is_rolled_back_at_its_deadline() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = master(&dir.path().join("m"), Duration::from_secs(5)).await;
    let _a = Agent::start(&m.url, &dir.path().join("a1"), &resources(19040), false).await;
    m.wait_agents(1).await;
    let good = web(3, "v1", 0.5, 1.0);
    let v1 = put(&m, good.clone()).await;
    settled(&m, 3, &v1, healthy).await;

    // The new version runs but never answers its health check (nothing listens on PORT0).
    // (Without health checks a version that runs for a moment counts as deployed, in Marathon
    // too, so `exit 1` alone would not do.)
    let mut broken = good.clone();
    broken["cmd"] = json!("sleep 120");
    let started = Instant::now();
    let v2 = put(&m, broken).await;
    assert_ne!(v1, v2);
    // Half the health capacity: one old instance goes at once.
    eventually("an old instance killed for the update", || async {
        let t = tasks(&m).await;
        (t.iter().filter(|t| t["version"] == v1.as_str()).count() < 3).then_some(())
    })
    .await;
    let app = get(&m, "/v2/apps/roll/web").await;
    assert_eq!(
        app["app"]["version"],
        v2.as_str(),
        "the update is under way"
    );

    settled(&m, 3, &v1, healthy).await;
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "rolled back at the deadline, not before"
    );
    let app = get(&m, "/v2/apps/roll/web").await["app"].clone();
    assert_eq!(app["version"], v1.as_str(), "{app}");
    assert_eq!(app["cmd"], good["cmd"], "the old definition is back: {app}");
    let failure = app["lastTaskFailure"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        failure.contains("rolled back to version") && failure.contains(v2.as_str()),
        "{app}"
    );
    remove(&m).await;
    m.stop().await;
}
