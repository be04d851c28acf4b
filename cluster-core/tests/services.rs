//! The built-in services framework through Marathon's REST API, on an in-process cluster (a
//! real master and real agents on 127.0.0.1, real task processes): placement with constraints,
//! the queue's reasons, replacement of instances whose agent is lost or whose health check
//! fails, Marathon's shapes and codes, and the state surviving a master restart.

mod support;

use serde_json::{Value, json};
use std::path::Path;
use support::*;

/// A master with the services framework on (the other tests' masters run without it).
async fn master(dir: &Path) -> Master {
    master_on(dir, "127.0.0.1:0").await
}

async fn master_on(dir: &Path, addr: &str) -> Master {
    let mut cfg = fast_master_config(dir);
    cfg.services = true;
    Master::start_on(dir, addr, cfg).await
}

/// Agents on one machine share a kernel hostname; each gets its own loopback address as
/// hostname so that `hostname:UNIQUE` can tell them apart (and a health check reaches it).
async fn agent(m: &Master, dir: &Path, n: u8) -> Agent {
    Agent::start_with(&m.url, &dir.join(format!("a{n}")), AGENT_RES, false, |c| {
        c.hostname = format!("127.0.0.{n}");
    })
    .await
}

async fn req(
    m: &Master,
    method: reqwest::Method,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (reqwest::StatusCode, Value) {
    let mut r = m.http.request(method, format!("{}{path}", m.url));
    if let Some(a) = auth {
        r = r.header("authorization", a);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = within(&format!("{path} answered"), r.send())
        .await
        .expect("request sent");
    let status = resp.status();
    let text = within("body", resp.text()).await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn get(m: &Master, path: &str) -> Value {
    let (s, v) = req(m, reqwest::Method::GET, path, Some(&bearer()), None).await;
    assert_eq!(s, 200, "GET {path}: {v}");
    v
}

fn running(tasks: &Value) -> Vec<Value> {
    tasks["tasks"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|t| t["state"] == "TASK_RUNNING")
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn unique_instances_spread_the_extra_one_waits_with_its_reason_and_a_lost_agent_is_replaced()
{
    let dir = tempfile::tempdir().expect("temp dir");
    let m = master(&dir.path().join("m")).await;
    let a1 = agent(&m, dir.path(), 1).await;
    let _a2 = agent(&m, dir.path(), 2).await;
    let _a3 = agent(&m, dir.path(), 3).await;
    m.wait_agents(3).await;

    let def = json!({"id": "/test/web", "cmd": "sleep 90", "instances": 4, "cpus": 0.1, "mem": 16,
        "portDefinitions": [{"port": 0, "name": "http"}], "constraints": [["hostname", "UNIQUE"]],
        "labels": {"team": "core"}, "aFieldMarathonMayAddLater": [1, 2]});
    let (s, created) = req(
        &m,
        reqwest::Method::POST,
        "/v2/apps",
        Some(&bearer()),
        Some(def.clone()),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    for (k, v) in def.as_object().expect("object") {
        assert_eq!(&created[k], v, "field {k} comes back as sent");
    }

    let tasks = eventually("3 instances running", || async {
        let t = get(&m, "/v2/apps/test/web/tasks").await;
        (running(&t).len() == 3).then_some(t)
    })
    .await;
    let mut hosts: Vec<String> = running(&tasks)
        .iter()
        .map(|t| t["host"].as_str().expect("host").to_string())
        .collect();
    hosts.sort();
    assert_eq!(
        hosts,
        ["127.0.0.1", "127.0.0.2", "127.0.0.3"],
        "one per agent"
    );
    assert!(running(&tasks).iter().all(|t| {
        t["ports"][0]
            .as_u64()
            .is_some_and(|p| (31000..=31100).contains(&p))
    }));
    let app = get(&m, "/v2/apps/test/web").await;
    assert_eq!(app["app"]["tasksRunning"], 3);

    let q = eventually("the 4th instance in the queue with a reason", || async {
        let q = get(&m, "/v2/queue").await;
        let entry = q["queue"].as_array()?.first()?.clone();
        entry["lastUnusedOfferReason"].is_string().then_some(entry)
    })
    .await;
    assert_eq!(q["count"], 1);
    assert_eq!(q["app"]["id"], "/test/web");
    let reason = q["lastUnusedOfferReason"].as_str().expect("reason");
    assert!(reason.contains("hostname:UNIQUE"), "{reason}");
    let summary = &q["processedOffersSummary"]["rejectSummaryLastOffers"];
    assert!(
        summary
            .as_array()
            .expect("summary")
            .iter()
            .any(|r| r["reason"] == "UnfulfilledConstraint"),
        "{summary}"
    );

    // While the 4th instance waits, the deployment runs: a change needs force.
    let (s, locked) = req(
        &m,
        reqwest::Method::PATCH,
        "/v2/apps/test/web",
        Some(&bearer()),
        Some(json!({"instances": 3})),
    )
    .await;
    assert_eq!(s, 409, "{locked}");
    assert!(
        locked["message"]
            .as_str()
            .is_some_and(|m| m.contains("force=true")),
        "{locked}"
    );
    let (s, ch) = req(
        &m,
        reqwest::Method::PATCH,
        "/v2/apps/test/web?force=true",
        Some(&bearer()),
        Some(json!({"instances": 3})),
    )
    .await;
    assert_eq!(s, 200, "{ch}");
    assert!(ch["deploymentId"].is_string());
    eventually("the deployment to end", || async {
        get(&m, "/v2/deployments")
            .await
            .as_array()
            .is_some_and(Vec::is_empty)
            .then_some(())
    })
    .await;

    // Agent 1 goes away (its task keeps running, unreachable): its instance runs on agent 4.
    let _a4 = agent(&m, dir.path(), 4).await;
    m.wait_agents(4).await;
    a1.stop().await;
    let tasks = eventually("3 instances running, none on the lost agent", || async {
        let t = get(&m, "/v2/apps/test/web/tasks").await;
        let r = running(&t);
        (r.len() == 3 && r.iter().all(|t| t["host"] != "127.0.0.1")).then_some(r)
    })
    .await;
    assert!(tasks.iter().any(|t| t["host"] == "127.0.0.4"), "{tasks:?}");
    m.stop().await;
}

#[tokio::test]
async fn marathon_errors_and_authentication_have_marathons_shapes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = master(&dir.path().join("m")).await;
    let (s, _) = req(&m, reqwest::Method::GET, "/v2/apps", None, None).await;
    assert_eq!(s, 401, "no credentials");
    let (s, v) = req(
        &m,
        reqwest::Method::GET,
        "/v2/apps",
        Some(&format!("token={TOKEN}")),
        None,
    )
    .await;
    assert_eq!(s, 200, "DC/OS-era token= form: {v}");
    assert_eq!(v, json!({"apps": []}));
    let (s, v) = req(&m, reqwest::Method::GET, "/v2/apps", Some(&basic()), None).await;
    assert_eq!(s, 403, "a framework principal may not define services: {v}");
    let (s, v) = req(
        &m,
        reqwest::Method::POST,
        "/v2/apps",
        Some(&bearer()),
        Some(json!({"id": "/Bad", "cmd": "x", "instances": -1})),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["message"], "Object is not valid");
    let paths: Vec<&str> = v["details"]
        .as_array()
        .expect("details")
        .iter()
        .filter_map(|d| d["path"].as_str())
        .collect();
    assert!(
        paths.contains(&"/id") && paths.contains(&"/instances"),
        "{paths:?}"
    );
    let (s, v) = req(
        &m,
        reqwest::Method::GET,
        "/v2/apps/nope",
        Some(&bearer()),
        None,
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(v["message"], "App '/nope' does not exist");
    let (s, v) = req(&m, reqwest::Method::GET, "/ping", None, None).await;
    assert_eq!((s.as_u16(), v), (200, json!("pong")));
    let info = get(&m, "/v2/info").await;
    assert_eq!(info["name"], "marathon");
    eventually("the framework subscribed", || async {
        (get(&m, "/v2/info").await["frameworkId"].is_string()).then_some(())
    })
    .await;
    let fw = m.operator("GET_FRAMEWORKS").await;
    let names: Vec<&str> = fw["get_frameworks"]["frameworks"]
        .as_array()
        .expect("frameworks")
        .iter()
        .filter_map(|f| f["framework_info"]["name"].as_str())
        .collect();
    assert!(
        names.contains(&"marathon"),
        "subscribed as any framework: {names:?}"
    );
    m.stop().await;
}

#[tokio::test]
async fn an_instance_failing_its_health_check_is_replaced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = master(&dir.path().join("m")).await;
    let _a1 = agent(&m, dir.path(), 1).await;
    m.wait_agents(1).await;
    // Nothing listens on PORT0: the TCP check fails from the start.
    let (s, v) = req(&m, reqwest::Method::POST, "/v2/apps", Some(&bearer()), Some(json!({
        "id": "/sick", "cmd": "sleep 90", "cpus": 0.1, "mem": 16, "portDefinitions": [{"port": 0}],
        "healthChecks": [{"protocol": "TCP", "portIndex": 0, "gracePeriodSeconds": 0,
                          "intervalSeconds": 0.2, "timeoutSeconds": 1, "maxConsecutiveFailures": 2}]}))).await;
    assert_eq!(s, 201, "{v}");
    let first = eventually("the first instance running", || async {
        let t = get(&m, "/v2/apps/sick/tasks").await;
        running(&t)
            .first()
            .map(|t| t["id"].as_str().unwrap_or_default().to_string())
    })
    .await;
    eventually(
        "the unhealthy instance killed and another launched",
        || async {
            let t = get(&m, "/v2/apps/sick/tasks").await;
            let ids: Vec<String> = t["tasks"]
                .as_array()?
                .iter()
                .filter_map(|t| t["id"].as_str().map(str::to_string))
                .collect();
            (!ids.contains(&first) && !ids.is_empty()).then_some(())
        },
    )
    .await;
    m.stop().await;
}

#[tokio::test]
async fn apps_survive_a_master_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mdir = dir.path().join("m");
    let m = master(&mdir).await;
    let (s, v) = req(
        &m,
        reqwest::Method::POST,
        "/v2/apps",
        Some(&bearer()),
        Some(json!({"id": "/keep/me", "cmd": "sleep 90", "instances": 2, "env": {"K": "v"}})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let before = get(&m, "/v2/apps/keep/me").await["app"].clone();
    let addr = m.addr.to_string();
    m.stop().await;
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(mdir.join("services.json"))
            .expect("state file")
            .permissions(),
    );
    assert_eq!(
        mode & 0o777,
        0o600,
        "the state (with env values) is private"
    );
    let m = master_on(&mdir, &addr).await;
    let after = get(&m, "/v2/apps/keep/me").await["app"].clone();
    for k in ["id", "cmd", "instances", "env", "version"] {
        assert_eq!(after[k], before[k], "{k} survives the restart");
    }
    m.stop().await;
}

#[tokio::test]
async fn put_creates_delete_tasks_replaces_and_delete_app_kills_every_instance() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = master(&dir.path().join("m")).await;
    let _a1 = agent(&m, dir.path(), 1).await;
    m.wait_agents(1).await;
    let def = json!({"cmd": "sleep 90", "instances": 2, "cpus": 0.1, "mem": 16});
    let (s, v) = req(
        &m,
        reqwest::Method::PUT,
        "/v2/apps/ops/worker",
        Some(&bearer()),
        Some(def),
    )
    .await;
    assert_eq!(s, 201, "PUT of a new id creates it: {v}");
    assert!(
        v["deploymentId"].is_string() && v["version"].is_string(),
        "{v}"
    );
    let first = eventually("2 instances running", || async {
        let r = running(&get(&m, "/v2/apps/ops/worker/tasks").await);
        (r.len() == 2).then(|| r[0]["id"].as_str().unwrap_or_default().to_string())
    })
    .await;
    let (s, v) = req(
        &m,
        reqwest::Method::POST,
        "/v2/tasks/delete",
        Some(&bearer()),
        Some(json!({"ids": [first]})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["tasks"][0]["id"], first);
    eventually("the killed instance replaced", || async {
        let r = running(&get(&m, "/v2/apps/ops/worker/tasks").await);
        (r.len() == 2 && r.iter().all(|t| t["id"] != first)).then_some(())
    })
    .await;
    let (s, v) = req(
        &m,
        reqwest::Method::DELETE,
        "/v2/apps/ops/worker?force=true",
        Some(&bearer()),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, _) = req(
        &m,
        reqwest::Method::GET,
        "/v2/apps/ops/worker",
        Some(&bearer()),
        None,
    )
    .await;
    assert_eq!(s, 404, "removed");
    eventually("every instance killed", || async {
        let t = m.operator("GET_TASKS").await;
        let live = t["get_tasks"]["tasks"].as_array().map_or(0, Vec::len);
        (live == 0).then_some(())
    })
    .await;
    m.stop().await;
}

/// The answers of a real master parse into `dccore_api::marathon::answers`, the types dcform's
/// client reads (`dcform app`): apps, tasks, deployments, the queue with its reasons, a 409.
#[tokio::test]
async fn answers_parse_into_the_shared_types_and_the_queue_says_why_an_app_waits() {
    use dccore_api::marathon::answers::{
        AppAnswer, AppList, Deployment, DeploymentRef, ErrorBody, Queue, TaskList,
    };
    fn parse<T: serde::de::DeserializeOwned>(what: &str, v: Value) -> T {
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{what}: {e}: {v}"))
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let m = master(&dir.path().join("m")).await;
    let _a = agent(&m, dir.path(), 1).await;
    m.wait_agents(1).await;

    let (s, v) = req(
        &m,
        reqwest::Method::PUT,
        "/v2/apps/fits",
        Some(&bearer()),
        Some(json!({"cmd": "sleep 90", "instances": 1, "cpus": 0.1, "mem": 16})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let created: DeploymentRef = parse("PUT answer", v);
    eventually("the app runs and its deployment ends", || async {
        let list: AppList = parse("GET /v2/apps", get(&m, "/v2/apps").await);
        let deployments: Vec<Deployment> =
            parse("GET /v2/deployments", get(&m, "/v2/deployments").await);
        (list
            .apps
            .iter()
            .any(|a| a.id == "/fits" && a.is_converged())
            && !deployments.iter().any(|d| d.id == created.deployment_id))
        .then_some(())
    })
    .await;
    let app: AppAnswer = parse(
        "GET /v2/apps/fits?embed=app.tasks",
        get(&m, "/v2/apps/fits?embed=app.tasks").await,
    );
    assert_eq!(app.app.definition["cmd"], "sleep 90");
    let tasks: TaskList = parse(
        "GET /v2/apps/fits/tasks",
        get(&m, "/v2/apps/fits/tasks").await,
    );
    assert_eq!(app.app.tasks.as_deref(), Some(&tasks.tasks[..]));

    // Too big for the agent: it waits in the queue with the reason, its deployment locks it.
    let (s, v) = req(
        &m,
        reqwest::Method::PUT,
        "/v2/apps/big",
        Some(&bearer()),
        Some(json!({"cmd": "sleep 90", "instances": 1, "cpus": 0.1, "mem": 9000})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let waiting = eventually("the big app is queued with a reason", || async {
        let q: Queue = parse("GET /v2/queue", get(&m, "/v2/queue").await);
        q.queue
            .into_iter()
            .find(|e| e.app.id == "/big" && e.processed_offers_summary.unused_offers_count > 0)
    })
    .await;
    assert!(
        waiting.reasons().to_lowercase().contains("mem"),
        "{}",
        waiting.reasons()
    );
    let deployments: Vec<Deployment> =
        parse("GET /v2/deployments", get(&m, "/v2/deployments").await);
    assert!(
        deployments.iter().any(|d| d.affected_apps == ["/big"]),
        "{deployments:?}"
    );
    let (s, v) = req(
        &m,
        reqwest::Method::PATCH,
        "/v2/apps/big",
        Some(&bearer()),
        Some(json!({"instances": 0})),
    )
    .await;
    assert_eq!(s, 409, "{v}");
    let locked: ErrorBody = parse("409", v);
    assert_eq!(locked.deployments.len(), 1, "{locked:?}");
    m.stop().await;
}

#[tokio::test]
async fn groups_are_the_tree_of_the_app_ids_and_an_unknown_group_is_404() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = master(&dir.path().join("m")).await;
    // No agent: the apps wait, which the tree does not care about.
    for id in ["/prod/web", "/prod/api/v1", "/db"] {
        let def = json!({"id": id, "cmd": "sleep 60", "instances": 1, "cpus": 0.1, "mem": 16});
        let (s, v) = req(
            &m,
            reqwest::Method::POST,
            "/v2/apps",
            Some(&bearer()),
            Some(def),
        )
        .await;
        assert_eq!(s, 201, "{v}");
    }
    let root: dccore_api::marathon::answers::Group =
        serde_json::from_value(get(&m, "/v2/groups").await).expect("the shared Group type");
    let ids = |g: &dccore_api::marathon::answers::Group| -> (Vec<String>, Vec<String>) {
        (
            g.apps.iter().map(|a| a.id.clone()).collect(),
            g.groups.iter().map(|g| g.id.clone()).collect(),
        )
    };
    assert_eq!(root.id, "/");
    assert_eq!(ids(&root), (vec!["/db".into()], vec!["/prod".into()]));
    let prod = &root.groups[0];
    assert_eq!(
        ids(prod),
        (vec!["/prod/web".into()], vec!["/prod/api".into()])
    );
    assert_eq!(prod.groups[0].apps[0].id, "/prod/api/v1");
    assert_eq!(prod.groups[0].apps[0].definition["cmd"], "sleep 60");
    let newest = [&prod.apps[0].version, &prod.groups[0].apps[0].version]
        .into_iter()
        .max()
        .expect("two");
    assert_eq!(
        &prod.version, newest,
        "a group's version is its newest app's"
    );

    let api = get(&m, "/v2/groups/prod/api").await;
    assert_eq!(api["id"], "/prod/api");
    assert_eq!(api["apps"][0]["id"], "/prod/api/v1");
    let only_groups = get(&m, "/v2/groups/prod?embed=group.groups").await;
    assert_eq!(only_groups["apps"], json!([]), "{only_groups}");
    assert_eq!(only_groups["groups"][0]["id"], "/prod/api");
    let with_tasks = get(&m, "/v2/groups?embed=group.apps&embed=group.apps.tasks").await;
    assert_eq!(with_tasks["apps"][0]["tasks"], json!([]), "{with_tasks}");

    for missing in ["/v2/groups/x", "/v2/groups/prod/web"] {
        let (s, v) = req(&m, reqwest::Method::GET, missing, Some(&bearer()), None).await;
        assert_eq!(s, 404, "{missing}: {v}");
        let name = missing.trim_start_matches("/v2/groups");
        assert_eq!(v["message"], format!("Group '{name}' does not exist"));
    }
    let (s, _) = req(&m, reqwest::Method::GET, "/v2/groups", None, None).await;
    assert_eq!(s, 401, "no credentials");
    let (s, v) = req(
        &m,
        reqwest::Method::GET,
        "/v2/groups/prod",
        Some(&format!("token={TOKEN}")),
        None,
    )
    .await;
    assert_eq!((s.as_u16(), &v["id"]), (200, &json!("/prod")), "{v}");
    m.stop().await;
}
