//! Operator maintenance (Mesos 1.9+ DRAIN_AGENT, DEACTIVATE_AGENT, REACTIVATE_AGENT) on an
//! in-process cluster through the real HTTP APIs, with real task processes.

mod support;

use serde_json::{Value, json};
use support::*;

fn agent_id(agent: &Value) -> String {
    agent["agent_info"]["id"]["value"]
        .as_str()
        .expect("agent id")
        .to_string()
}

/// A master in `mdir` with one registered agent `a1` (in `dir`/a1): both, and the agent's id.
async fn one_agent(dir: &std::path::Path, mdir: &std::path::Path) -> (Master, Agent, String) {
    let m = Master::start(mdir).await;
    let a1 = Agent::start(&m.url, &dir.join("a1"), AGENT_RES, false).await;
    m.wait_agents(1).await;
    let id = agent_id(&m.agent_by_url(&a1.url).await.expect("a1 listed"));
    (m, a1, id)
}

/// Offers from the framework's next OFFERS events until one is on `agent`.
async fn offer_on(fw: &mut Framework, agent: &str) -> Value {
    within(&format!("an offer on {agent}"), async {
        loop {
            if let Some(o) = fw
                .offers()
                .await
                .into_iter()
                .find(|o| o["agent_id"]["value"] == agent)
            {
                return o;
            }
        }
    })
    .await
}

#[tokio::test]
async fn drain_kills_the_agents_tasks_rescinds_its_offers_and_ends_drained_until_reactivated() {
    let dir = tempfile::tempdir().unwrap();
    let (m, a1, id) = one_agent(dir.path(), &dir.path().join("m")).await;
    let mut fw = Framework::subscribe(&m.url, framework_info("drained")).await;
    let offer = offer_on(&mut fw, &id).await;
    fw.launch(&offer, vec![task(&offer, "long", "sleep 1000")])
        .await;
    fw.wait_state("long", "TASK_RUNNING").await;
    // The rest of the agent is offered again (refuse_seconds 0) and left outstanding.
    let outstanding = offer_on(&mut fw, &id).await;

    let (code, body) = m
        .operator_call(json!({"type": "DRAIN_AGENT", "drain_agent": {
            "agent_id": {"value": id}, "max_grace_period": {"nanoseconds": 1_000_000_000i64}}}))
        .await;
    assert_eq!(code, 200, "{body}");
    let rescind = fw.next("RESCIND").await;
    assert_eq!(rescind["rescind"]["offer_id"], outstanding["id"]);
    let st = fw.wait_state("long", "TASK_KILLED").await;
    assert_eq!(st["reason"], "REASON_AGENT_DRAINING", "{st}");

    let a = eventually("agent drained", || async {
        let a = m.agent_by_url(&a1.url).await?;
        (a["drain_info"]["state"] == "DRAINED").then_some(a)
    })
    .await;
    assert_eq!(a["deactivated"], true);
    assert_eq!(a["active"], false, "a deactivated agent is not active");
    assert_eq!(a["drain_info"]["config"]["mark_gone"], false);
    // Draining the same way again is a no-op, not an error (dcform retries).
    let (code, _) = m
        .operator_call(json!({"type": "DRAIN_AGENT", "drain_agent": {
            "agent_id": {"value": id}, "max_grace_period": {"nanoseconds": 1_000_000_000i64}}}))
        .await;
    assert_eq!(code, 200);

    let (code, body) = m
        .operator_call(
            json!({"type": "REACTIVATE_AGENT", "reactivate_agent": {"agent_id": {"value": id}}}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let again = offer_on(&mut fw, &id).await;
    assert_eq!(again["agent_id"]["value"], id.as_str());
    let a = m.agent_by_url(&a1.url).await.expect("a1 listed");
    assert_eq!(a["active"], true);
    assert_eq!(a["deactivated"], false);
    assert!(a["drain_info"].is_null(), "{a}");
    m.stop().await;
}

#[tokio::test]
async fn deactivated_agent_gets_no_offers_and_unknown_agents_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (m, a1, id) = one_agent(dir.path(), &dir.path().join("m")).await;
    let mut fw = Framework::subscribe(&m.url, framework_info("deact")).await;
    let offer = offer_on(&mut fw, &id).await;

    let (code, body) = m
        .operator_call(
            json!({"type": "DEACTIVATE_AGENT", "deactivate_agent": {"agent_id": {"value": id}}}),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let rescind = fw.next("RESCIND").await;
    assert_eq!(rescind["rescind"]["offer_id"], offer["id"]);
    let a = m.agent_by_url(&a1.url).await.expect("a1 listed");
    assert_eq!(a["deactivated"], true);
    assert!(a["drain_info"].is_null(), "{a}");

    let (code, body) = m
        .operator_call(
            json!({"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": "nope"}}}),
        )
        .await;
    assert_eq!(code, 400);
    assert!(body.contains("not known"), "{body}");
    let (code, body) = m.operator_call(json!({"type": "DRAIN_AGENT"})).await;
    assert_eq!(code, 400);
    assert!(body.contains("drain_agent"), "{body}");

    let (code, _) = m
        .operator_call(
            json!({"type": "REACTIVATE_AGENT", "reactivate_agent": {"agent_id": {"value": id}}}),
        )
        .await;
    assert_eq!(code, 200);
    offer_on(&mut fw, &id).await;
    m.stop().await;
}

#[tokio::test]
async fn drain_with_mark_gone_reports_gone_by_operator_and_the_agent_never_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mdir = dir.path().join("m");
    let (m, a1, id) = one_agent(dir.path(), &mdir).await;
    let mut fw = Framework::subscribe(&m.url, framework_info("gone")).await;
    let offer = offer_on(&mut fw, &id).await;
    fw.launch(&offer, vec![task(&offer, "doomed", "sleep 1000")])
        .await;
    fw.wait_state("doomed", "TASK_RUNNING").await;

    let (code, body) = m
        .operator_call(json!({"type": "DRAIN_AGENT", "drain_agent": {
            "agent_id": {"value": id}, "mark_gone": true}}))
        .await;
    assert_eq!(code, 200, "{body}");
    let st = fw.wait_state("doomed", "TASK_GONE_BY_OPERATOR").await;
    assert_eq!(st["reason"], "REASON_AGENT_DRAINING", "{st}");
    eventually("agent removed", || async {
        let agents = m.operator("GET_AGENTS").await;
        let listed = agents["get_agents"].to_string().contains(&id);
        (!listed).then_some(())
    })
    .await;
    let registry: Value = eventually("gone agent persisted", || async {
        let text = std::fs::read_to_string(mdir.join("registry.json")).ok()?;
        let r: Value = serde_json::from_str(&text).ok()?;
        (r["gone_agents"][0] == id.as_str()).then_some(r)
    })
    .await;
    assert!(
        registry["agents"].as_array().is_some_and(|a| a.is_empty()),
        "{registry}"
    );
    let (code, body) = m
        .operator_call(
            json!({"type": "REACTIVATE_AGENT", "reactivate_agent": {"agent_id": {"value": id}}}),
        )
        .await;
    assert_eq!(code, 400);
    assert!(body.contains("marked gone"), "{body}");
    a1.stop().await;
    m.stop().await;
}

#[tokio::test]
async fn a_drain_survives_a_master_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mdir = dir.path().join("m");
    let (m, a1, id) = one_agent(dir.path(), &mdir).await;
    let (code, body) = m
        .operator_call(json!({"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": id}}}))
        .await;
    assert_eq!(code, 200, "{body}");
    eventually("drain persisted", || async {
        let text = std::fs::read_to_string(mdir.join("registry.json")).ok()?;
        let r: Value = serde_json::from_str(&text).ok()?;
        (r["agents"][0]["drain_info"]["state"] == "DRAINED").then_some(())
    })
    .await;

    let addr = m.addr.to_string();
    m.stop().await;
    let m = Master::start_on(&mdir, &addr, fast_master_config(&mdir)).await;
    let a = eventually("agent re-registered", || async {
        m.agent_by_url(&a1.url).await
    })
    .await;
    assert_eq!(a["deactivated"], true);
    assert_eq!(a["drain_info"]["state"], "DRAINED");
    a1.stop().await;
    m.stop().await;
}

const BIN: &str = env!("CARGO_BIN_EXE_dccore");

/// Runs `dccore ARGS`: exit success, stdout, stderr.
async fn dccore(args: &[&str]) -> (bool, String, String) {
    let out = within(
        &format!("dccore {}", args.join(" ")),
        tokio::process::Command::new(BIN)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("run dccore");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `dccore CMD --master MASTER --token-file TOKEN ARGS`: the operator commands dcform runs.
async fn dccore_on(cmd: &str, master: &str, token: &str, args: &[&str]) -> (bool, String, String) {
    let mut all = vec![cmd, "--master", master, "--token-file", token];
    all.extend_from_slice(args);
    dccore(&all).await
}

#[tokio::test]
async fn probe_and_drain_commands_check_membership_and_empty_an_agent() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let token = token.to_str().unwrap();
    let (m, a1) = master_and_agent(dir.path()).await;

    let (ok, out, err) = dccore_on("probe", &m.url, token, &[]).await;
    assert!(ok, "{out}{err}");
    let (ok, out, err) = dccore_on("probe", &m.url, token, &["--agent-url", &a1.url]).await;
    assert!(ok, "{out}{err}");
    let (ok, _, err) = dccore_on(
        "probe",
        &m.url,
        token,
        &["--agent-url", "http://127.0.0.1:9"],
    )
    .await;
    assert!(!ok);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("not registered") && err.contains(&a1.url),
        "{err}"
    );

    let id = agent_id(&m.agent_by_url(&a1.url).await.expect("a1 listed"));
    let mut fw = Framework::subscribe(&m.url, framework_info("bin-drain")).await;
    let offer = offer_on(&mut fw, &id).await;
    fw.launch(&offer, vec![task(&offer, "svc", "sleep 1000")])
        .await;
    fw.wait_state("svc", "TASK_RUNNING").await;
    let (ok, out, err) = dccore_on(
        "drain",
        &m.url,
        token,
        &["--agent-url", &a1.url, "--max-grace-secs", "1"],
    )
    .await;
    assert!(ok, "{out}{err}");
    // DRAINED, or caught a moment earlier with no live task left.
    assert!(
        out.contains(&a1.url) && (out.contains("drained") || out.contains("no live task")),
        "{out}"
    );
    fw.wait_state("svc", "TASK_KILLED").await;
    let (ok, _, err) = dccore_on("probe", &m.url, token, &["--agent-url", &a1.url]).await;
    assert!(!ok);
    assert!(err.contains("deactivated"), "{err}");
    m.stop().await;
}

#[tokio::test]
async fn drain_command_fails_with_what_is_left_and_the_drain_resumes_when_the_agent_returns() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let token = token.to_str().unwrap();
    let mdir = dir.path().join("m");
    // The agent must not be declared lost while it is down in this test.
    let mut cfg = fast_master_config(&mdir);
    cfg.agent_timeout = std::time::Duration::from_secs(3600);
    let m = Master::start_on(&mdir, "127.0.0.1:0", cfg).await;
    let a1 = Agent::start(&m.url, &dir.path().join("a1"), AGENT_RES, false).await;
    m.wait_agents(1).await;
    let url = a1.url.clone();
    let id = agent_id(&m.agent_by_url(&url).await.expect("a1 listed"));
    let mut fw = Framework::subscribe(&m.url, framework_info("stubborn")).await;
    let offer = offer_on(&mut fw, &id).await;
    fw.launch(&offer, vec![task(&offer, "stuck", "sleep 1000")])
        .await;
    fw.wait_state("stuck", "TASK_RUNNING").await;
    // The agent process stops (its task keeps running): the kill cannot reach it.
    a1.stop().await;
    let (ok, out, err) = dccore_on(
        "drain",
        &m.url,
        token,
        &["--agent-url", &url, "--timeout-secs", "0"],
    )
    .await;
    assert!(!ok, "{out}");
    assert!(
        err.contains("not drained") && err.contains("1 task(s) still live"),
        "{err}"
    );
    // Back with the same work dir: it re-registers, and the drain kills the task it reports.
    let _a1 = Agent::start(&m.url, &dir.path().join("a1"), AGENT_RES, false).await;
    let st = fw.wait_state("stuck", "TASK_KILLED").await;
    assert_eq!(st["reason"], "REASON_AGENT_DRAINING", "{st}");
    eventually("agent drained", || async {
        let a = m.operator("GET_AGENTS").await;
        let agent = a["get_agents"]["agents"]
            .as_array()?
            .iter()
            .find(|a| a["agent_info"]["id"]["value"] == id.as_str())?
            .clone();
        (agent["drain_info"]["state"] == "DRAINED").then_some(())
    })
    .await;
    m.stop().await;
}
