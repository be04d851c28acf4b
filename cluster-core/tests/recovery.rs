//! In-process cluster tests of failure and recovery: one master and agents on 127.0.0.1:0,
//! driven through the real HTTP APIs, while agents go away and come back, the master restarts and
//! frameworks disconnect: status update retries, reconciliation, unreachable tasks, failover and
//! teardown. (`cluster.rs` has the same cluster working normally.)

mod support;

use serde_json::json;
use support::*;

/// KILLs `task` through the scheduler API and waits for its `TASK_KILLED`.
async fn kill(fw: &mut Framework, task: &str) {
    assert_eq!(
        fw.call(json!({"type": "KILL", "kill": {"task_id": {"value": task}}}))
            .await,
        202
    );
    fw.wait_state(task, "TASK_KILLED").await;
}

#[tokio::test]
async fn status_updates_are_resent_until_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _a) = master_and_agent(dir.path()).await;
    let (mut fw, offer) = Framework::first_offer(&m.url, "forgetful").await;
    fw.launch(&offer, vec![task(&offer, "t", "true")]).await;
    let first = fw.update().await;
    assert_eq!(first["state"], "TASK_RUNNING");
    // Not acknowledged: the same update comes again, and nothing overtakes it.
    let again = fw.update().await;
    assert_eq!(again["uuid"], first["uuid"]);
    assert_eq!(again["state"], "TASK_RUNNING");
    fw.ack(&again).await;
    let next = fw.update().await;
    assert_eq!(next["state"], "TASK_FINISHED");
    m.stop().await;
}

#[tokio::test]
async fn reconciliation_reports_known_and_unknown_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _a) = master_and_agent(dir.path()).await;
    let (mut fw, offer) = Framework::first_offer(&m.url, "reconciler").await;
    fw.launch(&offer, vec![task(&offer, "live", "sleep 1000")])
        .await;
    fw.wait_state("live", "TASK_RUNNING").await;
    let code = fw
        .call(json!({"type": "RECONCILE", "reconcile": {"tasks": [
            {"task_id": {"value": "live"}}, {"task_id": {"value": "ghost"}}]}}))
        .await;
    assert_eq!(code, 202);
    let a = fw.update().await;
    let b = fw.update().await;
    assert_eq!(
        (a["task_id"]["value"].as_str(), a["state"].as_str()),
        (Some("live"), Some("TASK_RUNNING"))
    );
    assert_eq!(
        (b["task_id"]["value"].as_str(), b["state"].as_str()),
        (Some("ghost"), Some("TASK_UNKNOWN"))
    );
    assert_eq!(a["reason"], "REASON_RECONCILIATION");
    assert!(
        a.get("uuid").is_none(),
        "reconciliation answers need no ack"
    );
    // Implicit: every live task.
    assert_eq!(
        fw.call(json!({"type": "RECONCILE", "reconcile": {"tasks": []}}))
            .await,
        202
    );
    let c = fw.update().await;
    assert_eq!(c["task_id"]["value"], "live");
    kill(&mut fw, "live").await;
    m.stop().await;
}

#[tokio::test]
async fn agent_loss_marks_tasks_unreachable_and_a_restarted_agent_recovers_them() {
    let dir = tempfile::tempdir().unwrap();
    let (m, a) = master_and_agent(dir.path()).await;
    let (mut fw, offer) = Framework::first_offer(&m.url, "survivor").await;
    fw.launch(&offer, vec![task(&offer, "long", "sleep 1000")])
        .await;
    fw.wait_state("long", "TASK_RUNNING").await;

    // The agent goes away (its task keeps running): the master reports the task unreachable.
    a.stop().await;
    let st = fw.wait_state("long", "TASK_UNREACHABLE").await;
    assert_eq!(st["reason"], "REASON_AGENT_REMOVED");
    let failure = fw.next("FAILURE").await;
    assert_eq!(failure["failure"]["agent_id"], offer["agent_id"]);
    m.wait_agents(0).await;
    let tasks = m.operator("GET_TASKS").await;
    assert_eq!(
        tasks["get_tasks"]["unreachable_tasks"][0]["task_id"]["value"],
        "long"
    );

    // A new agent process on the same work dir re-attaches to the task and re-registers.
    let a = Agent::start(&m.url, &dir.path().join("a1"), AGENT_RES, false).await;
    let st = fw.wait_state("long", "TASK_RUNNING").await;
    assert_eq!(
        st["agent_id"], offer["agent_id"],
        "same agent id after restart"
    );
    m.wait_agents(1).await;
    // The re-attached process can still be killed.
    kill(&mut fw, "long").await;
    a.stop().await;
    m.stop().await;
}

#[tokio::test]
async fn master_restart_keeps_agents_frameworks_and_running_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let mdir = dir.path().join("m");
    let m = Master::start(&mdir).await;
    let _a = Agent::start(&m.url, &dir.path().join("a1"), AGENT_RES, false).await;
    m.wait_agents(1).await;
    let (mut fw, offer) = Framework::first_offer(&m.url, "durable").await;
    fw.launch(&offer, vec![task(&offer, "keep", "sleep 1000")])
        .await;
    fw.wait_state("keep", "TASK_RUNNING").await;
    let fid = fw.id.clone();
    drop(fw);

    // Same address (chosen by the OS the first time), same work dir.
    let addr = m.addr.to_string();
    m.stop().await;
    let m = Master::start_on(&mdir, &addr, fast_master_config(&mdir)).await;
    m.wait_agents(1).await;
    let tasks = eventually("task re-adopted", || async {
        let t = m.operator("GET_TASKS").await;
        (t["get_tasks"]["tasks"][0]["task_id"]["value"] == "keep").then_some(t)
    })
    .await;
    assert_eq!(tasks["get_tasks"]["tasks"][0]["state"], "TASK_RUNNING");
    let fws = m.operator("GET_FRAMEWORKS").await;
    assert_eq!(
        fws["get_frameworks"]["frameworks"][0]["framework_info"]["id"]["value"],
        fid.as_str()
    );

    // The framework fails over to the new master with its old id and still controls its task.
    let mut fw = Framework::subscribe_with(&m.url, framework_info("durable"), Some(&fid)).await;
    assert_eq!(fw.id, fid);
    kill(&mut fw, "keep").await;
    m.stop().await;
}

#[tokio::test]
async fn teardown_kills_the_frameworks_tasks_and_retires_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _a) = master_and_agent(dir.path()).await;
    let (mut fw, offer) = Framework::first_offer(&m.url, "shortlived").await;
    fw.launch(&offer, vec![task(&offer, "doomed", "sleep 1000")])
        .await;
    fw.wait_state("doomed", "TASK_RUNNING").await;
    assert_eq!(fw.call(json!({"type": "TEARDOWN"})).await, 202);
    let t = eventually("framework removed", || async {
        let t = m.operator("GET_STATE").await;
        t["get_state"]["get_frameworks"]["frameworks"]
            .as_array()
            .is_some_and(Vec::is_empty)
            .then_some(t)
    })
    .await;
    assert_eq!(
        t["get_state"]["get_tasks"]["completed_tasks"][0]["state"],
        "TASK_KILLED"
    );
    let r = within(
        "resubscribe",
        http()
            .post(format!("{}/api/v1/scheduler", m.url))
            .header("authorization", basic())
            .json(
                &json!({"type": "SUBSCRIBE", "framework_id": {"value": fw.id},
                          "subscribe": {"framework_info": framework_info("shortlived")}}),
            )
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    m.stop().await;
}

#[tokio::test]
async fn disconnected_framework_is_torn_down_after_its_failover_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _a) = master_and_agent(dir.path()).await;
    let mut info = framework_info("ephemeral");
    info["failover_timeout"] = json!(0.5);
    let mut fw = Framework::subscribe(&m.url, info).await;
    let offer = fw.offers().await.remove(0);
    fw.launch(&offer, vec![task(&offer, "orphan", "sleep 1000")])
        .await;
    fw.wait_state("orphan", "TASK_RUNNING").await;
    drop(fw);
    let state = eventually("framework torn down", || async {
        let s = m.operator("GET_STATE").await;
        let gone = s["get_state"]["get_frameworks"]["frameworks"]
            .as_array()
            .is_some_and(Vec::is_empty);
        gone.then_some(s)
    })
    .await;
    assert_eq!(
        state["get_state"]["get_tasks"]["completed_tasks"][0]["task_id"]["value"],
        "orphan"
    );
    assert_eq!(
        state["get_state"]["get_tasks"]["completed_tasks"][0]["state"],
        "TASK_KILLED"
    );
    m.stop().await;
}

#[tokio::test]
async fn a_task_killed_while_its_agent_is_away_is_stopped_when_the_agent_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (m, a) = master_and_agent(dir.path()).await;
    let (mut fw, offer) = Framework::first_offer(&m.url, "replacer").await;
    fw.launch(
        &offer,
        vec![task(&offer, "old", "echo $$ > pid; exec sleep 1000")],
    )
    .await;
    fw.wait_state("old", "TASK_RUNNING").await;
    let pid_file = dir
        .path()
        .join("a1/sandboxes")
        .join(dccore::agent::safe_name(&fw.id))
        .join("old/pid");
    let pid = eventually("task pid file", || async { pid_in(&pid_file) }).await;
    a.stop().await;
    fw.wait_state("old", "TASK_UNREACHABLE").await;
    assert_eq!(
        fw.call(json!({"type": "KILL", "kill": {"task_id": {"value": "old"}}}))
            .await,
        202
    );
    let st = fw.wait_state("old", "TASK_GONE").await;
    assert!(
        st["message"]
            .as_str()
            .unwrap()
            .contains("stopped when the agent returns"),
        "{st}"
    );
    assert!(alive(pid), "the process survives the agent's absence");
    let _a = Agent::start(&m.url, &dir.path().join("a1"), AGENT_RES, false).await;
    eventually("the killed task's process to end", || async {
        (!alive(pid)).then_some(())
    })
    .await;
    m.stop().await;
}

#[tokio::test]
async fn a_task_that_ended_while_its_agent_was_down_is_reported_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (m, a) = master_and_agent(dir.path()).await;
    let (mut fw, offer) = Framework::first_offer(&m.url, "patient").await;
    let cmd = "echo $$ > pid; while [ ! -f stop ]; do sleep 0.05; done; exit 3";
    fw.launch(&offer, vec![task(&offer, "ends", cmd)]).await;
    fw.wait_state("ends", "TASK_RUNNING").await;
    let sandbox = dir
        .path()
        .join("a1/sandboxes")
        .join(dccore::agent::safe_name(&fw.id))
        .join("ends");
    let pid = eventually("task pid file", || async { pid_in(&sandbox.join("pid")) }).await;
    a.stop().await;
    std::fs::write(sandbox.join("stop"), "").unwrap();
    eventually("the task to exit", || async { (!alive(pid)).then_some(()) }).await;
    let _a = Agent::start(&m.url, &dir.path().join("a1"), AGENT_RES, false).await;
    let st = fw.wait_state("ends", "TASK_FAILED").await;
    assert!(st["message"].as_str().unwrap().contains("status 3"), "{st}");
    m.stop().await;
}

#[tokio::test]
async fn a_failed_over_framework_receives_the_updates_it_did_not_acknowledge() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _a) = master_and_agent(dir.path()).await;
    let (mut fw, offer) = Framework::first_offer(&m.url, "flaky").await;
    fw.launch(&offer, vec![task(&offer, "t", "true")]).await;
    let running = fw.update().await;
    assert_eq!(running["state"], "TASK_RUNNING");
    let fid = fw.id.clone();
    drop(fw); // disconnects without acknowledging
    let mut fw = Framework::subscribe_with(&m.url, framework_info("flaky"), Some(&fid)).await;
    let again = fw.update().await;
    assert_eq!(
        again["uuid"], running["uuid"],
        "the same update, resent on the new stream"
    );
    fw.ack(&again).await;
    fw.wait_state("t", "TASK_FINISHED").await;
    m.stop().await;
}

/// A master whose agent timeout is far away (60 s) and that probes silent agents after `probe`.
async fn probing_master(dir: &std::path::Path, probe: std::time::Duration) -> Master {
    let mut cfg = fast_master_config(dir);
    cfg.agent_timeout = std::time::Duration::from_secs(60);
    cfg.agent_probe_after = probe;
    Master::start_on(dir, "127.0.0.1:0", cfg).await
}

#[tokio::test]
async fn a_stopped_agent_whose_url_refuses_is_unreachable_without_waiting_for_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let m = probing_master(&dir.path().join("m"), std::time::Duration::from_millis(300)).await;
    let a = Agent::start(&m.url, &dir.path().join("a1"), AGENT_RES, false).await;
    m.wait_agents(1).await;
    let (mut fw, offer) = Framework::first_offer(&m.url, "prober").await;
    fw.launch(&offer, vec![task(&offer, "long", "sleep 1000")])
        .await;
    fw.wait_state("long", "TASK_RUNNING").await;

    // Its server goes with it: the probe's connection is refused, long before the 60 s timeout
    // (the wait's own deadline is 30 s).
    a.stop().await;
    let st = fw.wait_state("long", "TASK_UNREACHABLE").await;
    assert_eq!(st["reason"], "REASON_AGENT_REMOVED");
    let msg = st["message"].as_str().unwrap_or_default();
    assert!(msg.contains("refuses connections"), "{st}");
    m.wait_agents(0).await;

    // Back on the same work dir: registered again with its task.
    let a = Agent::start(&m.url, &dir.path().join("a1"), AGENT_RES, false).await;
    fw.wait_state("long", "TASK_RUNNING").await;
    m.wait_agents(1).await;
    kill(&mut fw, "long").await;
    a.stop().await;
    m.stop().await;
}

#[tokio::test]
async fn an_agent_that_answers_its_probes_stays_reachable() {
    let dir = tempfile::tempdir().unwrap();
    // Probed between almost every heartbeat (100 ms): each probe is answered.
    let m = probing_master(&dir.path().join("m"), std::time::Duration::from_millis(50)).await;
    let a = Agent::start(&m.url, &dir.path().join("a1"), AGENT_RES, false).await;
    m.wait_agents(1).await;
    let (mut fw, offer) = Framework::first_offer(&m.url, "probed").await;
    fw.launch(&offer, vec![task(&offer, "t", "sleep 1000")])
        .await;
    fw.wait_state("t", "TASK_RUNNING").await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(m.agent_count().await, 1, "the answering agent was dropped");
    let tasks = m.operator("GET_TASKS").await;
    assert_eq!(
        tasks["get_tasks"]["tasks"][0]["state"], "TASK_RUNNING",
        "{tasks}"
    );
    kill(&mut fw, "t").await;
    a.stop().await;
    m.stop().await;
}
