//! Health checks run by the agent next to the task (COMMAND, HTTP, TCP), on an in-process cluster (a real
//! master with DNS, real agents on 127.0.0.1, real task and check processes): the health reaches
//! the framework as `TaskStatus.healthy`, a task failing its check is killed, and discovery (DNS
//! and `/v1/services`) publishes a checked task only while it is healthy.

mod support;

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::RecordType;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::dns::*;
use support::*;

/// The sandbox of task `task_id` under an agent's work dir (`sandboxes/FRAMEWORK/TASK`).
fn sandbox_of(agent_dir: &Path, task_id: &str) -> Option<PathBuf> {
    let root = agent_dir.join("sandboxes");
    std::fs::read_dir(root)
        .ok()?
        .filter_map(Result::ok)
        .map(|fw| fw.path().join(task_id))
        .find(|p| p.is_dir())
}

/// A master with DNS on 127.0.0.1 (and the services framework if `services`), and its DNS address.
async fn master(dir: &Path, services: bool) -> (Master, std::net::SocketAddr) {
    let mut cfg = fast_master_config(dir);
    cfg.discovery.dns_listen = Some("127.0.0.1:0".parse().expect("addr"));
    cfg.services = services;
    let m = Master::start_on(dir, "127.0.0.1:0", cfg).await;
    let dns = dns_address(dir).await;
    (m, dns)
}

async fn a_records_of(dns: std::net::SocketAddr, name: &str) -> Vec<String> {
    a_records(&udp(dns, name, RecordType::A).await)
}

/// Next update of `task` (others acknowledged and skipped), acknowledged.
async fn next_of(fw: &mut Framework, task: &str) -> Value {
    loop {
        let st = fw.update_acked().await;
        if st["task_id"]["value"] == task {
            return st;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_check_reports_healthy_then_unhealthy_and_the_task_is_killed_after_n_failures() {
    let mdir = tempfile::tempdir().expect("tempdir");
    let adir = tempfile::tempdir().expect("tempdir");
    let (m, dns) = master(mdir.path(), false).await;
    let agent = Agent::start(&m.url, adir.path(), AGENT_RES, false).await;
    m.wait_agents(1).await;
    let mut fw = Framework::subscribe(&m.url, framework_info("marathon")).await;
    let offers = fw.offers().await;
    let mut t = task(&offers[0], "chk-1", "sleep 60");
    t["name"] = json!("chk.prod");
    // Passes while no `sick` file is in the sandbox (the check's working directory), and sees
    // the task's environment.
    t["command"]["environment"] = json!({"variables": [{"name": "SICK_FILE", "value": "sick"}]});
    t["health_check"] = json!({"type": "COMMAND",
        "command": {"value": "test -n \"$MESOS_TASK_ID\" && test ! -e \"$SICK_FILE\""},
        "delay_seconds": 0, "interval_seconds": 0.1, "timeout_seconds": 5,
        "consecutive_failures": 3, "grace_period_seconds": 0});
    fw.launch(&offers[0], vec![t]).await;
    fw.wait_state("chk-1", "TASK_RUNNING").await;

    let healthy = next_of(&mut fw, "chk-1").await;
    assert_eq!(healthy["state"], "TASK_RUNNING", "{healthy}");
    assert_eq!(healthy["healthy"], true, "{healthy}");
    assert_eq!(healthy["reason"], "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED");
    let a = eventually("the A record of the healthy task", || async {
        let r = a_records_of(dns, "chk.prod.marathon.dccore.").await;
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert_eq!(a, ["127.0.0.1"]);

    let sandbox = eventually("the task's sandbox", || async {
        sandbox_of(adir.path(), "chk-1")
    })
    .await;
    std::fs::write(sandbox.join("sick"), "").expect("write the sick file");
    let unhealthy = next_of(&mut fw, "chk-1").await;
    assert_eq!(unhealthy["state"], "TASK_RUNNING", "{unhealthy}");
    assert_eq!(unhealthy["healthy"], false, "{unhealthy}");
    // Only changes are reported: the next update is the end, after the third failure in a row.
    let end = next_of(&mut fw, "chk-1").await;
    assert_eq!(end["state"], "TASK_KILLED", "{end}");
    assert_eq!(end["healthy"], false, "{end}");
    assert_eq!(end["reason"], "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED");
    assert!(
        end["message"]
            .as_str()
            .is_some_and(|s| s.contains("3 failed health checks")),
        "{end}"
    );
    eventually("the A record to go after the kill", || async {
        let r = udp(dns, "chk.prod.marathon.dccore.", RecordType::A).await;
        (r.response_code() == ResponseCode::NXDomain).then_some(())
    })
    .await;

    drop(fw);
    agent.stop().await;
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_with_a_command_check_is_in_dns_only_once_healthy() {
    let mdir = tempfile::tempdir().expect("tempdir");
    let adir = tempfile::tempdir().expect("tempdir");
    let (m, dns) = master(mdir.path(), true).await;
    let agent = Agent::start(&m.url, adir.path(), AGENT_RES, false).await;
    m.wait_agents(1).await;
    // Healthy once `ready` exists in the sandbox; failures never kill it (maxConsecutiveFailures
    // 0), so the instance stays while it is unhealthy.
    let r = m
        .http
        .post(format!("{}/v2/apps", m.url))
        .header("authorization", bearer())
        .json(
            &json!({"id": "/prod/web", "cmd": "sleep 120", "cpus": 0.1, "mem": 16,
            "healthChecks": [{"protocol": "COMMAND", "command": {"value": "test -f ready"},
                "gracePeriodSeconds": 0, "intervalSeconds": 0.1, "timeoutSeconds": 5,
                "maxConsecutiveFailures": 0}]}),
        )
        .send();
    let r = within("POST /v2/apps", r).await.expect("POST");
    assert_eq!(r.status(), 201);
    let app = |m: &Master| {
        let req = m
            .http
            .get(format!("{}/v2/apps/prod/web?embed=app.tasks", m.url))
            .header("authorization", bearer())
            .send();
        async move {
            let r = within("GET the app", req).await.expect("GET");
            within("its body", r.json::<Value>()).await.expect("JSON")
        }
    };
    let task_id = eventually("the instance running and checked", || async {
        let v = app(&m).await;
        let t = &v["app"]["tasks"][0];
        (t["state"] == "TASK_RUNNING" && v["app"]["tasksUnhealthy"] == 1)
            .then(|| t["id"].as_str().map(str::to_string))
            .flatten()
    })
    .await;
    assert_eq!(app(&m).await["app"]["tasksHealthy"], 0);
    // Running but not healthy: not published, however long we look.
    for _ in 0..5 {
        let r = udp(dns, "web.prod.marathon.dccore.", RecordType::A).await;
        assert_eq!(r.response_code(), ResponseCode::NXDomain, "{r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sandbox = eventually("the instance's sandbox", || async {
        sandbox_of(adir.path(), &task_id)
    })
    .await;
    std::fs::write(sandbox.join("ready"), "").expect("write ready");
    let a = dc_support::testing::within(
        Duration::from_secs(2),
        "the A record within ~1 s of the file",
        async {
            loop {
                let r = a_records_of(dns, "web.prod.marathon.dccore.").await;
                if !r.is_empty() {
                    return r;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        },
    )
    .await;
    assert_eq!(a, ["127.0.0.1"]);
    let v = eventually("tasksHealthy to follow", || async {
        let v = app(&m).await;
        (v["app"]["tasksHealthy"] == 1).then_some(v)
    })
    .await;
    assert_eq!(v["app"]["tasksUnhealthy"], 0, "{v}");
    assert_eq!(
        v["app"]["tasks"][0]["healthCheckResults"][0]["alive"], true,
        "{v}"
    );

    agent.stop().await;
    m.stop().await;
}

/// Below 20000: outside the kernel's ephemeral range and the local provider's agent ports.
const QUIET_PORTS: &str = "cpus:2;mem:1024;disk:1000;ports:[19300-19399]";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_checked_by_the_framework_over_tcp_is_in_dns_only_once_healthy() {
    let mdir = tempfile::tempdir().expect("tempdir");
    let adir = tempfile::tempdir().expect("tempdir");
    let (m, dns) = master(mdir.path(), true).await;
    // The framework checks `hostname:port`: the agent's hostname must be reachable. The test
    // listens on the instance's port itself, so the ports are ones no other process here uses
    // (found: 31000-31100 lies in the local provider's range, and a local agent of a test run
    // beside this one answered the check before the test opened the port).
    let agent = Agent::start_with(&m.url, adir.path(), QUIET_PORTS, false, |c| {
        c.hostname = "127.0.0.1".into();
    })
    .await;
    m.wait_agents(1).await;
    // Nothing listens on PORT0 until the test does; failures never kill the instance.
    let r = m
        .http
        .post(format!("{}/v2/apps", m.url))
        .header("authorization", bearer())
        .json(
            &json!({"id": "/prod/tcp", "cmd": "sleep 120", "cpus": 0.1, "mem": 16,
            "portDefinitions": [{"port": 0}],
            "healthChecks": [{"protocol": "TCP", "portIndex": 0, "gracePeriodSeconds": 0,
                "intervalSeconds": 0.1, "timeoutSeconds": 1, "maxConsecutiveFailures": 0}]}),
        )
        .send();
    let r = within("POST /v2/apps", r).await.expect("POST");
    assert_eq!(r.status(), 201);
    let app = || {
        let req = m
            .http
            .get(format!("{}/v2/apps/prod/tcp?embed=app.tasks", m.url))
            .header("authorization", bearer())
            .send();
        async move {
            let r = within("GET the app", req).await.expect("GET");
            within("its body", r.json::<Value>()).await.expect("JSON")
        }
    };
    let port = eventually("the instance running and found unhealthy", || async {
        let v = app().await;
        let t = &v["app"]["tasks"][0];
        (t["state"] == "TASK_RUNNING" && v["app"]["tasksUnhealthy"] == 1)
            .then(|| t["ports"][0].as_u64())
            .flatten()
    })
    .await;
    for _ in 0..5 {
        let r = udp(dns, "tcp.prod.marathon.dccore.", RecordType::A).await;
        assert_eq!(r.response_code(), ResponseCode::NXDomain, "{r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let port = u16::try_from(port).expect("a port");
    let _listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("listen on the instance's port");
    let a = dc_support::testing::within(
        Duration::from_secs(2),
        "the A record within ~1 s of the port opening",
        async {
            loop {
                let r = a_records_of(dns, "tcp.prod.marathon.dccore.").await;
                if !r.is_empty() {
                    return r;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        },
    )
    .await;
    assert_eq!(a, ["127.0.0.1"]);
    let (code, all) = {
        let r = m
            .http
            .get(format!("{}/v1/services/tcp.prod.marathon", m.url))
            .header("authorization", bearer())
            .send();
        let r = within("GET /v1/services", r).await.expect("GET");
        let code = r.status();
        (
            code,
            within("its body", r.json::<Value>()).await.expect("JSON"),
        )
    };
    assert_eq!(code, 200, "{all}");
    assert_eq!(all["instances"][0]["healthy"], true, "{all}");

    agent.stop().await;
    m.stop().await;
}

/// Answers every HTTP request on `listener` with the status in `code` (read per request).
fn serve_status(
    listener: tokio::net::TcpListener,
    code: std::sync::Arc<std::sync::atomic::AtomicU16>,
) -> tokio::task::JoinHandle<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let code = code.load(std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let answer =
                    format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = s.write_all(answer.as_bytes()).await;
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_frameworks_http_and_tcp_checks_are_run_by_the_agent() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU16, Ordering};
    let mdir = tempfile::tempdir().expect("tempdir");
    let adir = tempfile::tempdir().expect("tempdir");
    let (m, dns) = master(mdir.path(), false).await;
    let agent = Agent::start(&m.url, adir.path(), AGENT_RES, false).await;
    m.wait_agents(1).await;
    // The servers the checks reach stand in for the tasks' own (the agent asks 127.0.0.1:port).
    let http = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let http_port = http.local_addr().expect("addr").port();
    let code = Arc::new(AtomicU16::new(200));
    let server = serve_status(http, code.clone());
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let tcp_port = tcp.local_addr().expect("addr").port();

    let mut fw = Framework::subscribe(&m.url, framework_info("marathon")).await;
    let offers = fw.offers().await;
    let mut h = task(&offers[0], "http-1", "sleep 60");
    h["name"] = json!("web.prod");
    h["health_check"] = json!({"type": "HTTP",
        "http": {"port": http_port, "path": "/health"},
        "delay_seconds": 0, "interval_seconds": 0.1, "timeout_seconds": 2,
        "consecutive_failures": 3, "grace_period_seconds": 0});
    let mut t = task(&offers[0], "tcp-1", "sleep 60");
    t["health_check"] = json!({"type": "TCP", "tcp": {"port": tcp_port},
        "delay_seconds": 0, "interval_seconds": 0.1, "timeout_seconds": 2,
        "consecutive_failures": 0, "grace_period_seconds": 0});
    fw.launch(&offers[0], vec![h, t]).await;

    // Each task's first health result is `healthy: true`.
    let mut seen = std::collections::HashMap::new();
    while seen.len() < 2 {
        let st = fw.update_acked().await;
        if st["healthy"].is_boolean() {
            let id = st["task_id"]["value"].as_str().expect("id").to_string();
            seen.entry(id).or_insert(st);
        }
    }
    for id in ["http-1", "tcp-1"] {
        assert_eq!(seen[id]["state"], "TASK_RUNNING", "{}", seen[id]);
        assert_eq!(seen[id]["healthy"], true, "{}", seen[id]);
    }
    let a = eventually("the A record of the HTTP-checked task", || async {
        let r = a_records_of(dns, "web.prod.marathon.dccore.").await;
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert_eq!(a, ["127.0.0.1"]);

    // The TCP port closes: unhealthy, never killed (consecutive_failures 0).
    drop(tcp);
    let st = next_of(&mut fw, "tcp-1").await;
    assert_eq!(
        (st["state"].clone(), st["healthy"].clone()),
        (json!("TASK_RUNNING"), json!(false)),
        "{st}"
    );

    // The HTTP server answers 503: unhealthy, then killed after 3 failures in a row.
    code.store(503, Ordering::SeqCst);
    let st = next_of(&mut fw, "http-1").await;
    assert_eq!(
        (st["state"].clone(), st["healthy"].clone()),
        (json!("TASK_RUNNING"), json!(false)),
        "{st}"
    );
    let end = next_of(&mut fw, "http-1").await;
    assert_eq!(end["state"], "TASK_KILLED", "{end}");
    assert_eq!(end["healthy"], false, "{end}");
    eventually("the A record to go after the kill", || async {
        let r = udp(dns, "web.prod.marathon.dccore.", RecordType::A).await;
        (r.response_code() == ResponseCode::NXDomain).then_some(())
    })
    .await;

    server.abort();
    drop(fw);
    agent.stop().await;
    m.stop().await;
}
