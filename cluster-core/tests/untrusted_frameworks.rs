//! What a framework cannot do to the cluster, however it is written: launch tasks whose ids or
//! resources cannot be honoured, kill another framework's task, hold offers after it vanished,
//! lose events by reading slowly, or exceed the master's limits. Real master and agents on
//! 127.0.0.1:0, driven through the HTTP APIs.

mod support;

use serde_json::{Value, json};
use std::collections::HashMap;
use support::*;

/// Collects updates (acknowledging them) until every task in `want` has reached a terminal state.
async fn terminal_states(fw: &mut Framework, want: usize) -> HashMap<String, Value> {
    let mut got = HashMap::new();
    within("terminal updates", async {
        while got.len() < want {
            let st = fw.update_acked().await;
            let state = st["state"].as_str().unwrap_or_default();
            if !matches!(state, "TASK_STAGING" | "TASK_STARTING" | "TASK_RUNNING") {
                let id = st["task_id"]["value"]
                    .as_str()
                    .expect("task id")
                    .to_string();
                got.insert(id, st);
            }
        }
    })
    .await;
    got
}

#[tokio::test]
async fn task_ids_and_resources_mesos_refuses_end_in_task_error_saying_why_and_never_run() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _a) = master_and_agent(dir.path()).await;
    let (mut fw, offer) = Framework::first_offer(&m.url, "careless").await;
    let long = "x".repeat(256);
    let mut tasks = Vec::new();
    for id in ["a/b", "a b", "..", ".", long.as_str()] {
        tasks.push(task(&offer, id, "touch ran"));
    }
    let mut neg = task(&offer, "neg", "touch ran");
    neg["resources"][0]["scalar"]["value"] = json!(-1);
    let mut zero = task(&offer, "zero", "touch ran");
    zero["resources"][1]["scalar"]["value"] = json!(0);
    let mut gpu = task(&offer, "gpu", "touch ran");
    gpu["resources"][0]["name"] = json!("gpus");
    let mut typed = task(&offer, "typed", "touch ran");
    typed["resources"][0]["name"] = json!("ports");
    let mut none = task(&offer, "none", "touch ran");
    none["resources"] = json!([]);
    tasks.extend([neg, zero, gpu, typed, none]);
    // Ids that shared one sandbox (and checkpoint and cgroup) with the old name mapping now
    // each run in their own.
    tasks.push(task(&offer, "a_b", "echo $MESOS_TASK_ID > ran"));
    tasks.push(task(&offer, "a:b", "echo $MESOS_TASK_ID > ran"));
    fw.launch(&offer, tasks).await;
    let got = terminal_states(&mut fw, 12).await;
    let message = |id: &str| {
        let st = &got[id];
        assert_eq!(st["state"], "TASK_ERROR", "{id}: {st}");
        assert_eq!(st["reason"], "REASON_TASK_INVALID", "{id}: {st}");
        st["message"].as_str().unwrap().to_string()
    };
    assert!(message("a/b").contains("invalid character '/'"));
    assert!(message("a b").contains("white space"));
    assert!(message("..").contains("not allowed"));
    assert!(message(".").contains("not allowed"));
    assert!(message(&long).contains("at most 255"));
    assert!(message("neg").contains("\"cpus\" must be a positive finite amount, not -1"));
    assert!(message("zero").contains("\"mem\" must be a positive finite amount, not 0"));
    assert!(message("gpu").contains("unknown resource \"gpus\""));
    assert!(message("typed").contains("must be of type RANGES"));
    assert!(message("none").contains("no resources"));
    assert_eq!(got["a_b"]["state"], "TASK_FINISHED", "{}", got["a_b"]);
    assert_eq!(got["a:b"]["state"], "TASK_FINISHED", "{}", got["a:b"]);
    let sandboxes = dir
        .path()
        .join("a1/sandboxes")
        .join(dccore::agent::safe_name(&fw.id));
    let mut ran: Vec<String> = std::fs::read_dir(&sandboxes)
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("ran")).ok())
        .map(|s| s.trim().to_string())
        .collect();
    ran.sort();
    assert_eq!(
        ran,
        ["a:b", "a_b"],
        "only the valid tasks ran, each in its own sandbox"
    );
    m.stop().await;
}

#[tokio::test]
async fn a_kill_sent_on_reregistration_names_the_framework_so_another_frameworks_task_with_the_same_id_survives()
 {
    let dir = tempfile::tempdir().unwrap();
    let (m, a) = master_and_agent(dir.path()).await;
    let mut fws = Vec::new();
    let mut pids = Vec::new();
    for name in ["first", "second"] {
        let mut fw = Framework::subscribe(&m.url, framework_info(name)).await;
        let offer = fw.offers().await.remove(0);
        fw.launch(
            &offer,
            vec![task(&offer, "t", "echo $$ > pid; exec sleep 1000")],
        )
        .await;
        fw.wait_state("t", "TASK_RUNNING").await;
        let pid_file = dir
            .path()
            .join("a1/sandboxes")
            .join(dccore::agent::safe_name(&fw.id))
            .join("t/pid");
        pids.push(eventually("task pid file", || async { pid_in(&pid_file) }).await);
        fws.push(fw);
    }
    a.stop().await;
    for fw in &mut fws {
        fw.wait_state("t", "TASK_UNREACHABLE").await;
    }
    // The first framework kills its "t" while the agent is away: the master orders the kill
    // when the agent re-registers, and the agent reports both frameworks' "t".
    assert_eq!(
        fws[0]
            .call(json!({"type": "KILL", "kill": {"task_id": {"value": "t"}}}))
            .await,
        202
    );
    fws[0].wait_state("t", "TASK_GONE").await;
    let _a = Agent::start(&m.url, &dir.path().join("a1"), AGENT_RES, false).await;
    eventually("the first framework's process to end", || async {
        (!alive(pids[0])).then_some(())
    })
    .await;
    fws[1].wait_state("t", "TASK_RUNNING").await;
    assert!(
        alive(pids[1]),
        "the second framework's task with the same id runs on"
    );
    // And a kill while the agent is there stops only the caller's task too.
    assert_eq!(
        fws[1]
            .call(json!({"type": "KILL", "kill": {"task_id": {"value": "t"}}}))
            .await,
        202
    );
    fws[1].wait_state("t", "TASK_KILLED").await;
    assert!(!alive(pids[1]));
    m.stop().await;
}

/// Subscribes over a raw TCP connection and reads until `until` appears in the stream.
async fn raw_subscribe(
    addr: std::net::SocketAddr,
    name: &str,
    until: &str,
) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": framework_info(name)}})
        .to_string();
    let mut s = within("raw connect", tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect");
    let req = format!(
        "POST /api/v1/scheduler HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        basic(),
        body.len()
    );
    within("raw request", s.write_all(req.as_bytes()))
        .await
        .expect("write");
    let mut seen = Vec::new();
    within(&format!("{until} on the raw stream"), async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains(until) {
            let n = s.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "stream ended early: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    s
}

#[tokio::test]
async fn a_framework_that_subscribes_and_vanishes_does_not_keep_its_offers_from_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let mdir = dir.path().join("m");
    let mut cfg = fast_master_config(&mdir);
    // Neither a heartbeat write nor the offer timeout may be what frees the offers.
    cfg.framework_heartbeat = std::time::Duration::from_secs(600);
    cfg.offer_timeout = std::time::Duration::from_secs(600);
    let m = Master::start_on(&mdir, "127.0.0.1:0", cfg).await;
    let _a = Agent::start(&m.url, &dir.path().join("a1"), AGENT_RES, false).await;
    m.wait_agents(1).await;
    let gone = raw_subscribe(m.addr, "vanishing", "\"OFFERS\"").await;
    drop(gone);
    let mut next = Framework::subscribe(&m.url, framework_info("next")).await;
    let offers = tokio::time::timeout(std::time::Duration::from_secs(10), next.offers())
        .await
        .expect("offers within 10 s of the first client going away");
    assert!(!offers.is_empty());
    let frameworks = m.operator("GET_FRAMEWORKS").await;
    let vanished = frameworks["get_frameworks"]["frameworks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["framework_info"]["name"] == "vanishing")
        .cloned()
        .expect("the vanished framework is still known (failover timeout)");
    assert_eq!(vanished["connected"], false, "{vanished}");
    m.stop().await;
}

#[tokio::test]
async fn reconcile_of_20000_task_ids_answers_every_one_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let m = Master::start(&dir.path().join("m")).await;
    let mut fw = Framework::subscribe(&m.url, framework_info("big")).await;
    let n = 20_000;
    let tasks: Vec<Value> = (0..n)
        .map(|i| json!({"task_id": {"value": format!("t{i}")}}))
        .collect();
    assert_eq!(
        fw.call(json!({"type": "RECONCILE", "reconcile": {"tasks": tasks}}))
            .await,
        202
    );
    let mut seen = std::collections::HashSet::new();
    within("20000 reconciliation answers", async {
        while seen.len() < n {
            let e = fw.next("UPDATE").await;
            let st = &e["update"]["status"];
            assert_eq!(st["state"], "TASK_UNKNOWN", "{st}");
            seen.insert(st["task_id"]["value"].as_str().expect("id").to_string());
        }
    })
    .await;
    assert_eq!(seen.len(), n);
    m.stop().await;
}

/// SUBSCRIBE without an `Authorization` header: the status, and the stream id if any.
async fn subscribe_without_credentials(m: &Master) -> (reqwest::StatusCode, Option<String>) {
    let body =
        json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": framework_info("anon")}});
    let r = within(
        "subscribe without credentials",
        reqwest::Client::new()
            .post(format!("{}/api/v1/scheduler", m.url))
            .json(&body)
            .send(),
    )
    .await
    .expect("subscribe request");
    let sid = r
        .headers()
        .get("mesos-stream-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (r.status(), sid)
}

#[tokio::test]
async fn scheduler_calls_without_credentials_get_401_unless_authenticate_frameworks_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let m = Master::start(&dir.path().join("m")).await;
    let (status, _) = subscribe_without_credentials(&m).await;
    assert_eq!(status, 401, "authenticate_frameworks is on by default");
    m.stop().await;

    let mdir = dir.path().join("m2");
    let cfg_file = dir.path().join("master.json");
    std::fs::write(&cfg_file, r#"{"authenticate_frameworks": false}"#).unwrap();
    let cfg = fast_master_config(&mdir)
        .apply_file(&cfg_file)
        .expect("config");
    let m = Master::start_on(&mdir, "127.0.0.1:0", cfg).await;
    let (status, sid) = subscribe_without_credentials(&m).await;
    assert_eq!(status, 200);
    assert!(
        sid.is_some(),
        "a stream id for the unauthenticated framework"
    );
    // Wrong credentials are still refused.
    let r = within(
        "subscribe with a wrong secret",
        reqwest::Client::new()
            .post(format!("{}/api/v1/scheduler", m.url))
            .header("authorization", "Basic Znc6d3Jvbmc=")
            .json(
                &json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": framework_info("x")}}),
            )
            .send(),
    )
    .await
    .expect("request");
    assert_eq!(r.status(), 401);
    m.stop().await;
}

/// Found when merging the rules with `authenticate_frameworks`: "no principal" means the
/// operator token to the master's checks, so an unauthenticated framework must not be given
/// "no principal". It is the anonymous principal: it cannot fail over (take over) a framework
/// subscribed with the operator token, nor see its tasks.
#[tokio::test]
async fn an_unauthenticated_framework_never_gets_the_operators_rights() {
    let dir = tempfile::tempdir().unwrap();
    let mdir = dir.path().join("m");
    let mut cfg = fast_master_config(&mdir);
    cfg.authenticate_frameworks = false;
    let m = Master::start_on(&mdir, "127.0.0.1:0", cfg).await;
    let op = Framework::subscribe_as(&m.url, framework_info("op"), None, &bearer()).await;
    let mut info = framework_info("thief");
    info["id"] = json!({"value": op.id});
    let body = json!({"type": "SUBSCRIBE", "framework_id": {"value": op.id}, "subscribe": {"framework_info": info}});
    let r = within(
        "anonymous failover of the operator's framework",
        reqwest::Client::new()
            .post(format!("{}/api/v1/scheduler", m.url))
            .json(&body)
            .send(),
    )
    .await
    .expect("request");
    // (Not reading the body on failure: a successful SUBSCRIBE's body is an endless stream.)
    assert_eq!(
        r.status(),
        403,
        "the anonymous framework took over the operator's"
    );
    // A teardown of the operator's framework from the anonymous side is refused too.
    let (status, sid) = subscribe_without_credentials(&m).await;
    assert_eq!(status, 200);
    let r = within(
        "anonymous teardown",
        reqwest::Client::new()
            .post(format!("{}/api/v1/scheduler", m.url))
            .header("mesos-stream-id", sid.unwrap_or_default())
            .json(&json!({"type": "TEARDOWN", "framework_id": {"value": op.id}}))
            .send(),
    )
    .await
    .expect("request");
    assert_eq!(r.status(), 403);
    m.stop().await;
}
