//! In-process cluster tests: one master and agents on 127.0.0.1:0, driven through the real HTTP
//! APIs (scheduler, operator, agent files) with real task processes: registration, offers and
//! DRF, tasks running and being killed, authentication. (`recovery.rs` has the failures: agents
//! lost, the master restarted, frameworks failing over.)

mod support;

use serde_json::json;
use support::*;

#[tokio::test]
async fn agents_register_and_are_listed_by_the_operator_api() {
    let dir = tempfile::tempdir().unwrap();
    let m = Master::start(&dir.path().join("m")).await;
    let _a1 = Agent::start(&m.url, &dir.path().join("a1"), AGENT_RES, false).await;
    let _a2 = Agent::start(&m.url, &dir.path().join("a2"), AGENT_RES, false).await;
    m.wait_agents(2).await;
    let agents = m.operator("GET_AGENTS").await;
    let a = &agents["get_agents"]["agents"][0];
    let cpus = a["agent_info"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "cpus")
        .unwrap();
    assert_eq!(cpus["scalar"]["value"], 2.0);
    assert_eq!(
        m.operator("GET_HEALTH").await["get_health"]["healthy"],
        true
    );
    let state = m.operator("GET_STATE").await;
    assert_eq!(
        state["get_state"]["get_agents"]["agents"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    m.stop().await;
}

#[tokio::test]
async fn every_api_requires_authentication_and_rejections_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let m = Master::start(&dir.path().join("m")).await;
    let http = http();
    let post = |path: &str, auth: Option<&str>, body: serde_json::Value| {
        let mut r = http.post(format!("{}{path}", m.url)).json(&body);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send()
    };
    let cases = [
        ("/api/v1", None),
        ("/api/v1", Some("Bearer wrong")),
        ("/api/v1/scheduler", None),
        ("/api/v1/scheduler", Some("Basic Znc6d3Jvbmc=")), // fw:wrong
        ("/internal/v1/agents/register", Some(basic().as_str())), // frameworks may not act as agents
    ]
    .map(|(p, a)| (p.to_string(), a.map(str::to_string)));
    for (path, auth) in &cases {
        let r = within(
            "unauthenticated call",
            post(path, auth.as_deref(), json!({"type": "GET_AGENTS"})),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 401, "{path} with {auth:?}");
    }
    // A bad request says what is wrong.
    let r = within(
        "bad call",
        post("/api/v1", Some(&bearer()), json!({"type": "NOPE"})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let text = within("body", r.text()).await.unwrap();
    assert!(text.contains("supported are GET_HEALTH"), "{text}");
    let r = within(
        "garbage",
        http.post(format!("{}/api/v1/scheduler", m.url))
            .header("authorization", basic())
            .body("{")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let metrics = m.metrics().await;
    assert!(
        metrics.contains("dccore_http_unauthorized_total 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("dccore_agents{state=\"reachable\"} 0"),
        "{metrics}"
    );
    m.stop().await;
}

#[tokio::test]
async fn command_task_runs_to_finished_and_its_output_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let (m, a) = master_and_agent(dir.path()).await;
    let (mut fw, offer) = Framework::first_offer(&m.url, "runner").await;
    fw.launch(
        &offer,
        vec![task(&offer, "t1", "echo hello; echo oops >&2")],
    )
    .await;
    let running = fw.wait_state("t1", "TASK_RUNNING").await;
    assert_eq!(running["agent_id"], offer["agent_id"]);
    fw.wait_state("t1", "TASK_FINISHED").await;

    let path = format!("{}/t1/stdout", dccore::agent::safe_name(&fw.id));
    let r = within(
        "files/read",
        http()
            .get(format!("{}/files/read?path={path}", a.url))
            .header("authorization", bearer())
            .send(),
    )
    .await
    .unwrap();
    let body: serde_json::Value = within("files body", r.json()).await.unwrap();
    assert_eq!(body["data"], "hello\n");
    let r = within(
        "files without token",
        http()
            .get(format!("{}/files/read?path={path}", a.url))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 401);

    let tasks = eventually("task listed as completed", || async {
        let t = m.operator("GET_TASKS").await;
        let done = t["get_tasks"]["completed_tasks"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        done.iter()
            .any(|t| t["task_id"]["value"] == "t1")
            .then_some(t)
    })
    .await;
    assert!(tasks["get_tasks"]["tasks"].as_array().unwrap().is_empty());
    let metrics = m.metrics().await;
    assert!(
        metrics.contains("dccore_tasks{state=\"TASK_FINISHED\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("dccore_agents{state=\"reachable\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("# TYPE dccore_allocation_cycle_seconds gauge"),
        "{metrics}"
    );
    m.stop().await;
}

#[tokio::test]
async fn a_task_that_does_not_fit_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let m = Master::start(&dir.path().join("m")).await;
    let _a = Agent::start(&m.url, &dir.path().join("a1"), "cpus:1;mem:128", false).await;
    m.wait_agents(1).await;
    let (mut fw, offer) = Framework::first_offer(&m.url, "greedy").await;
    let mut big = task(&offer, "big", "true");
    big["resources"][1]["scalar"]["value"] = json!(512);
    fw.launch(&offer, vec![big]).await;
    let st = fw.wait_state("big", "TASK_ERROR").await;
    assert_eq!(
        st["message"],
        "insufficient mem: need 512 MiB, have 128 MiB"
    );
    m.stop().await;
}

#[tokio::test]
async fn kill_stops_a_running_task() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _a) = master_and_agent(dir.path()).await;
    let (mut fw, offer) = Framework::first_offer(&m.url, "killer").await;
    fw.launch(&offer, vec![task(&offer, "sleeper", "sleep 1000")])
        .await;
    fw.wait_state("sleeper", "TASK_RUNNING").await;
    assert_eq!(
        fw.call(json!({"type": "KILL", "kill": {"task_id": {"value": "sleeper"}}}))
            .await,
        202
    );
    let st = fw.wait_state("sleeper", "TASK_KILLED").await;
    assert!(
        st["message"].as_str().unwrap().starts_with("killed"),
        "{st}"
    );
    m.stop().await;
}

/// Found by the scale-down e2e: a task that ignores SIGTERM was killed at once, because dccore's
/// own wrapper shell died of the SIGTERM sent to the group and the agent then SIGKILLed the rest.
/// The task's kill grace period belongs to the task.
#[tokio::test]
async fn a_task_that_ignores_sigterm_keeps_running_until_its_grace_period_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _a) = master_and_agent(dir.path()).await;
    let (mut fw, offer) = Framework::first_offer(&m.url, "patient").await;
    let mut t = task(
        &offer,
        "stubborn",
        "trap '' TERM; echo $$ > \"$MESOS_SANDBOX/pid\"; while :; do sleep 0.1; done",
    );
    t["kill_policy"] = json!({"grace_period": {"nanoseconds": 4_000_000_000i64}});
    fw.launch(&offer, vec![t]).await;
    fw.wait_state("stubborn", "TASK_RUNNING").await;
    let pid = eventually("the task's pid file", || async {
        find_file(&dir.path().join("a1"), "pid")
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|s| s.trim().parse::<i32>().ok())
    })
    .await;
    assert_eq!(
        fw.call(json!({"type": "KILL", "kill": {"task_id": {"value": "stubborn"}}}))
            .await,
        202
    );
    // Well inside the 4 s grace: SIGTERM was sent and ignored, and the task still runs.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(
        alive(pid),
        "the task was killed before its grace period ended"
    );
    fw.wait_state("stubborn", "TASK_KILLED").await;
    assert!(!alive(pid), "the task outlived its kill");
    m.stop().await;
}

fn find_file(root: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(root).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}

#[tokio::test]
async fn drf_splits_agents_evenly_between_two_idle_frameworks() {
    let dir = tempfile::tempdir().unwrap();
    let m = Master::start(&dir.path().join("m")).await;
    let mut agents = Vec::new();
    for i in 0..4 {
        agents
            .push(Agent::start(&m.url, &dir.path().join(format!("a{i}")), AGENT_RES, false).await);
    }
    m.wait_agents(4).await;
    let mut a = Framework::subscribe(&m.url, framework_info("a")).await;
    let mut got_a = Vec::new();
    while got_a.len() < 4 {
        got_a.extend(a.offers().await);
    }
    let mut b = Framework::subscribe(&m.url, framework_info("b")).await;
    // Everything is offered to A; when A declines it all, DRF alternates between the two.
    for o in &got_a {
        a.decline(o, 0.0).await;
    }
    let (mut na, mut nb) = (0, 0);
    within("4 offers split between a and b", async {
        while na + nb < 4 {
            tokio::select! {
                o = a.offers() => na += o.len(),
                o = b.offers() => nb += o.len(),
            }
        }
    })
    .await;
    assert_eq!((na, nb), (2, 2));
    m.stop().await;
}

#[tokio::test]
async fn declined_agent_is_not_reoffered_to_that_framework_until_revive() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _a) = master_and_agent(dir.path()).await;
    let (mut a, o) = Framework::first_offer(&m.url, "a").await;
    let mut b = Framework::subscribe(&m.url, framework_info("b")).await;
    a.decline(&o, 3600.0).await;
    let o = b.offers().await.remove(0);
    // With A filtered, B gets the agent again (whichever of the two would win a tie: framework
    // ids are uuids, so their order is random).
    b.decline(&o, 0.0).await;
    let o = b.offers().await.remove(0);
    assert_eq!(a.call(json!({"type": "REVIVE"})).await, 202);
    b.decline(&o, 3600.0).await;
    let o = a.offers().await.remove(0);
    assert_eq!(o["framework_id"]["value"], a.id.as_str());
    m.stop().await;
}

#[tokio::test]
async fn suppressed_framework_gets_offers_again_after_revive() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _a) = master_and_agent(dir.path()).await;
    let (mut a, o) = Framework::first_offer(&m.url, "a").await;
    assert_eq!(a.call(json!({"type": "SUPPRESS"})).await, 202);
    a.decline(&o, 0.0).await;
    let (b, o) = Framework::first_offer(&m.url, "b").await;
    assert_eq!(a.call(json!({"type": "REVIVE"})).await, 202);
    b.decline(&o, 3600.0).await;
    assert_eq!(a.offers().await.len(), 1);
    m.stop().await;
}

#[tokio::test]
async fn public_agents_are_offered_only_to_slave_public_frameworks() {
    let dir = tempfile::tempdir().unwrap();
    let m = Master::start(&dir.path().join("m")).await;
    let _private = Agent::start(&m.url, &dir.path().join("a1"), AGENT_RES, false).await;
    let _public = Agent::start(&m.url, &dir.path().join("a2"), AGENT_RES, true).await;
    m.wait_agents(2).await;
    let agents = m.operator("GET_AGENTS").await;
    let public_id = agents["get_agents"]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["public"] == true)
        .unwrap()["agent_info"]["id"]
        .clone();
    let mut plain = Framework::subscribe(&m.url, framework_info("plain")).await;
    let offers = plain.offers().await;
    assert_eq!(offers.len(), 1);
    assert_ne!(offers[0]["agent_id"], public_id);
    let mut info = framework_info("edge");
    info["roles"] = json!(["slave_public"]);
    info["capabilities"] = json!([{"type": "MULTI_ROLE"}]);
    let mut edge = Framework::subscribe(&m.url, info).await;
    let offers = edge.offers().await;
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0]["agent_id"], public_id);
    let r = &offers[0]["resources"][0];
    assert_eq!(r["role"], "slave_public");
    assert_eq!(r["allocation_info"]["role"], "slave_public");
    m.stop().await;
}

#[tokio::test]
async fn unanswered_offers_are_rescinded_after_the_offer_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mdir = dir.path().join("m");
    let mut cfg = fast_master_config(&mdir);
    cfg.offer_timeout = std::time::Duration::from_millis(300);
    let m = Master::start_on(&mdir, "127.0.0.1:0", cfg).await;
    let _a = Agent::start(&m.url, &dir.path().join("a1"), AGENT_RES, false).await;
    m.wait_agents(1).await;
    let (mut fw, offer) = Framework::first_offer(&m.url, "slow").await;
    let rescind = fw.next("RESCIND").await;
    assert_eq!(rescind["rescind"]["offer_id"], offer["id"]);
    // The resources come back in a new offer, and the old one can no longer be used.
    let again = fw.offers().await.remove(0);
    assert_ne!(again["id"], offer["id"]);
    fw.launch(&offer, vec![task(&offer, "late", "true")]).await;
    let st = fw.wait_state("late", "TASK_DROPPED").await;
    assert!(
        st["message"].as_str().unwrap().contains("no longer valid"),
        "{st}"
    );
    m.stop().await;
}

#[tokio::test]
async fn tasks_get_cgroup_v2_limits_where_the_hierarchy_allows() {
    let dir = tempfile::tempdir().unwrap();
    // A stand-in for /sys/fs/cgroup: same files, plain directory (so nothing is enforced, but
    // every write the agent and the task wrapper make is visible).
    let cg = dir.path().join("cgroup");
    std::fs::create_dir_all(&cg).unwrap();
    std::fs::write(cg.join("cgroup.controllers"), "cpu io memory pids\n").unwrap();
    let m = Master::start(&dir.path().join("m")).await;
    let cgb = cg.clone();
    let _a = Agent::start_with(&m.url, &dir.path().join("a1"), AGENT_RES, false, move |c| {
        c.cgroup_base = Some(cgb);
    })
    .await;
    m.wait_agents(1).await;
    let (mut fw, offer) = Framework::first_offer(&m.url, "limited").await;
    fw.launch(&offer, vec![task(&offer, "capped", "echo $$ > pid")])
        .await;
    fw.wait_state("capped", "TASK_FINISHED").await;
    let task_cg = cg
        .join("dccore")
        .join(format!("{}_capped", dccore::agent::safe_name(&fw.id)));
    assert_eq!(
        std::fs::read_to_string(task_cg.join("cpu.max")).unwrap(),
        "10000 100000"
    );
    assert_eq!(
        std::fs::read_to_string(task_cg.join("memory.max")).unwrap(),
        (32u64 << 20).to_string()
    );
    let procs = std::fs::read_to_string(task_cg.join("cgroup.procs")).unwrap();
    assert!(
        procs.trim().parse::<u32>().is_ok(),
        "the wrapper moved itself in: {procs:?}"
    );
    m.stop().await;
}

#[tokio::test]
async fn launch_group_tasks_run_and_offers_carry_agent_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let m = Master::start(&dir.path().join("m")).await;
    let _a = Agent::start_with(&m.url, &dir.path().join("a1"), AGENT_RES, false, |c| {
        c.attributes = dccore::proto::parse_attributes("rack:r1;zone:a").unwrap();
    })
    .await;
    m.wait_agents(1).await;
    let (mut fw, offer) = Framework::first_offer(&m.url, "grouped").await;
    assert_eq!(offer["attributes"][0]["name"], "rack");
    assert_eq!(offer["attributes"][0]["text"]["value"], "r1");
    let code = fw
        .call(
            json!({"type": "ACCEPT", "accept": {"offer_ids": [offer["id"]], "operations": [
            {"type": "LAUNCH_GROUP", "launch_group": {"executor": {}, "task_group": {"tasks": [
                task(&offer, "g1", "true"), task(&offer, "g2", "true")]}}}]}}),
        )
        .await;
    assert_eq!(code, 202);
    let mut finished = std::collections::BTreeSet::new();
    within("both group tasks to finish", async {
        while finished.len() < 2 {
            let st = fw.update_acked().await;
            if st["state"] == "TASK_FINISHED" {
                finished.insert(st["task_id"]["value"].as_str().unwrap().to_string());
            }
        }
    })
    .await;
    assert_eq!(finished.into_iter().collect::<Vec<_>>(), ["g1", "g2"]);
    m.stop().await;
}

#[tokio::test]
async fn a_framework_may_not_claim_another_principal() {
    let dir = tempfile::tempdir().unwrap();
    let m = Master::start(&dir.path().join("m")).await;
    let mut info = framework_info("impostor");
    info["principal"] = json!("someone-else");
    let r = within(
        "subscribe",
        http()
            .post(format!("{}/api/v1/scheduler", m.url))
            .header("authorization", basic())
            .json(&json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": info}}))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    let text = within("body", r.text()).await.unwrap();
    assert!(
        text.contains("does not match the authenticated principal"),
        "{text}"
    );
    m.stop().await;
}
