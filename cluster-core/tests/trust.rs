//! Identities and access rules through the real HTTP APIs: two framework principals, an agent
//! with its own credential, and the operator token.

mod support;

use dccore::auth::Authenticator;
use serde_json::{Value, json};
use std::path::Path;
use support::*;

const AGENT_TOKEN: &str = "agent-token";
const ALICE: (&str, &str) = ("alice", "a-secret");
const BOB: (&str, &str) = ("bob", "b-secret");
const OPS: (&str, &str) = ("ops", "o-secret");

fn auth() -> Authenticator {
    Authenticator::new(TOKEN)
        .with_agent_tokens([AGENT_TOKEN.to_string()])
        .with_principal(ALICE.0, ALICE.1)
        .with_principal(BOB.0, BOB.1)
        .with_principal(OPS.0, OPS.1)
}

fn alice() -> String {
    basic_for(ALICE.0, ALICE.1)
}

fn bob() -> String {
    basic_for(BOB.0, BOB.1)
}

async fn start(dir: &Path, acls: Option<&str>) -> (Master, Agent) {
    let mut cfg = fast_master_config(&dir.join("m"));
    if let Some(text) = acls {
        let f = dir.join("acls.json");
        std::fs::write(&f, text).expect("write the ACL file");
        cfg = cfg.with_acls_file(&f).expect("valid ACLs");
    }
    let m = Master::start_with_auth(&dir.join("m"), "127.0.0.1:0", cfg, auth()).await;
    // The agent proves itself with the agent token, not the operator token.
    let a = Agent::start_with(&m.url, &dir.join("a"), AGENT_RES, false, |c| {
        c.token = AGENT_TOKEN.into();
    })
    .await;
    m.wait_agents(1).await;
    (m, a)
}

/// POST `body` to `path` of `base` with the `Authorization` header `auth`: status and body.
async fn post(base: &str, path: &str, auth: &str, body: Value) -> (u16, String) {
    let r = within(
        &format!("POST {path}"),
        http()
            .post(format!("{base}{path}"))
            .header("authorization", auth)
            .json(&body)
            .send(),
    )
    .await
    .expect("request");
    let status = r.status().as_u16();
    (status, within("body", r.text()).await.expect("body"))
}

async fn get_tasks(m: &Master, auth: &str) -> Value {
    let (code, text) = post(&m.url, "/api/v1", auth, json!({"type": "GET_TASKS"})).await;
    assert_eq!(code, 200, "{text}");
    serde_json::from_str(&text).expect("JSON")
}

/// The ids of the live tasks in a GET_TASKS answer.
fn task_ids(v: &Value) -> Vec<String> {
    v["get_tasks"]["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["task_id"]["value"].as_str().map(str::to_string))
        .collect()
}

/// The first line of a task's stdout, once there is one.
async fn first_line(agent_dir: &Path, fw: &str, task: &str) -> String {
    let path = agent_dir
        .join("sandboxes")
        .join(dccore::agent::safe_name(fw))
        .join(dccore::agent::safe_name(task))
        .join("stdout");
    eventually(&format!("a line in {}", path.display()), || {
        let path = path.clone();
        async move {
            let s = std::fs::read_to_string(&path).ok()?;
            s.lines().next().map(str::to_string)
        }
    })
    .await
}

/// Alice's framework running one task `alice-task` that prints its uid and sleeps.
async fn alice_with_a_task(m: &Master) -> Framework {
    // Framework libraries send the local login user (root when the tests run as root).
    let mut fw = Framework::subscribe_as(&m.url, framework_info("alice-fw"), None, &alice()).await;
    let offer = fw.offers().await.remove(0);
    fw.launch(
        &offer,
        vec![task(&offer, "alice-task", "id -u; sleep 1000")],
    )
    .await;
    fw.wait_state("alice-task", "TASK_RUNNING").await;
    fw
}

#[tokio::test]
async fn a_framework_principal_cannot_see_kill_or_tear_down_another_principals_work() {
    let dir = tempfile::tempdir().unwrap();
    let (m, a) = start(dir.path(), None).await;
    let fw_a = alice_with_a_task(&m).await;
    let fw_b = Framework::subscribe_as(&m.url, framework_info("bob-fw"), None, &bob()).await;

    // Alice sees her task; bob sees neither it nor her framework, in any view.
    assert_eq!(task_ids(&get_tasks(&m, &alice()).await), ["alice-task"]);
    assert!(task_ids(&get_tasks(&m, &bob()).await).is_empty());
    for kind in ["GET_STATE", "GET_FRAMEWORKS", "GET_TASKS"] {
        let (code, text) = post(&m.url, "/api/v1", &bob(), json!({"type": kind})).await;
        assert_eq!(code, 200, "{kind}: {text}");
        assert!(
            !text.contains("alice-task"),
            "bob's {kind} shows alice's task: {text}"
        );
        assert!(
            !text.contains(&fw_a.id),
            "bob's {kind} shows alice's framework: {text}"
        );
        if kind != "GET_TASKS" {
            assert!(
                text.contains(&fw_b.id),
                "bob's {kind} lacks his own framework: {text}"
            );
        }
    }
    // The operator sees both.
    let all = m.operator("GET_FRAMEWORKS").await.to_string();
    assert!(all.contains(&fw_a.id) && all.contains(&fw_b.id), "{all}");

    // Scheduler calls naming alice's framework are refused, with bob's own stream id or not.
    for call in [
        json!({"type": "KILL", "kill": {"task_id": {"value": "alice-task"}}}),
        json!({"type": "TEARDOWN"}),
        json!({"type": "RECONCILE", "reconcile": {"tasks": []}}),
    ] {
        let mut body = call.clone();
        body["framework_id"] = json!({"value": fw_a.id});
        let r = within(
            "bob's call on alice's framework",
            http()
                .post(format!("{}/api/v1/scheduler", m.url))
                .header("authorization", bob())
                .header("mesos-stream-id", &fw_b.stream_id)
                .json(&body)
                .send(),
        )
        .await
        .expect("call");
        assert_eq!(r.status(), 403, "{call}");
        let text = within("body", r.text()).await.unwrap();
        assert!(text.contains("another principal"), "{text}");
    }
    // Nor may bob take over alice's framework by subscribing with its id.
    let (code, text) = post(
        &m.url,
        "/api/v1/scheduler",
        &bob(),
        json!({"type": "SUBSCRIBE", "framework_id": {"value": fw_a.id},
               "subscribe": {"framework_info": framework_info("bob-fw")}}),
    )
    .await;
    assert_eq!(code, 403, "{text}");
    // Or tear it down through the operator API.
    let (code, text) = post(
        &m.url,
        "/api/v1",
        &bob(),
        json!({"type": "TEARDOWN", "teardown": {"framework_id": {"value": fw_a.id}}}),
    )
    .await;
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("teardown_frameworks"), "{text}");

    // Agent maintenance and metrics need operator rights.
    let agent_id = m.agent_by_url(&a.url).await.expect("the agent")["agent_info"]["id"].clone();
    for (kind, field) in [
        ("DRAIN_AGENT", "drain_agent"),
        ("DEACTIVATE_AGENT", "deactivate_agent"),
        ("REACTIVATE_AGENT", "reactivate_agent"),
    ] {
        let (code, text) = post(
            &m.url,
            "/api/v1",
            &bob(),
            json!({"type": kind, field: {"agent_id": agent_id}}),
        )
        .await;
        assert_eq!(code, 403, "{kind}: {text}");
        assert!(text.contains("operator rights"), "{kind}: {text}");
    }
    let (status, _) = m.metrics_as(&bob()).await;
    assert_eq!(status, 403, "bob's metrics");

    // After all that alice's task still runs, and not as root.
    let tasks = get_tasks(&m, &alice()).await;
    assert_eq!(tasks["get_tasks"]["tasks"][0]["state"], "TASK_RUNNING");
    let uid = first_line(&a.dir, &fw_a.id, "alice-task").await;
    assert_ne!(uid, "0", "a task runs as root by default");
    assert_eq!(
        tasks["get_tasks"]["tasks"][0]["command"]["user"], "nobody",
        "framework_info.user root is not allowed by the built-in rules: the default task user"
    );
    // Bob may tear down his own framework.
    let (code, text) = post(
        &m.url,
        "/api/v1",
        &bob(),
        json!({"type": "TEARDOWN", "teardown": {"framework_id": {"value": fw_b.id}}}),
    )
    .await;
    assert_eq!(code, 200, "{text}");
    drop(fw_a);
    a.stop().await;
    m.stop().await;
}

#[tokio::test]
async fn an_agent_credential_opens_only_the_agent_routes() {
    let dir = tempfile::tempdir().unwrap();
    let (m, a) = start(dir.path(), None).await;
    let agent = format!("Bearer {AGENT_TOKEN}");
    for path in ["/api/v1", "/api/v1/scheduler"] {
        let (code, text) = post(&m.url, path, &agent, json!({"type": "GET_STATE"})).await;
        assert_eq!(code, 403, "{path}: {text}");
        assert!(text.contains("agent routes"), "{text}");
    }
    let (status, _) = m.metrics_as(&agent).await;
    assert_eq!(status, 403, "agent's metrics");
    // Nor does it open other agents: launching needs the secret the agent gave the master.
    for auth in [agent.as_str(), &bearer()] {
        let (code, _) = post(
            &a.url,
            "/internal/v1/launch",
            auth,
            json!({"framework_id": {"value": "f"}, "tasks": []}),
        )
        .await;
        assert_eq!(code, 401, "launch on an agent with {auth}");
    }
    // An agent credential must come with a callback secret, or the master would have to call
    // the agent with the operator token.
    let reg = json!({"hostname": "h", "url": "http://127.0.0.1:9", "resources": []});
    let (code, text) = post(&m.url, "/internal/v1/agents/register", &agent, reg.clone()).await;
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("callback_token"), "{text}");
    // An agent that is not root says so, and GET_AGENTS shows it.
    let mut nonroot = reg;
    nonroot["callback_token"] = json!("s");
    nonroot["task_user"] = json!("dev");
    let (code, text) = post(&m.url, "/internal/v1/agents/register", &agent, nonroot).await;
    assert_eq!(code, 200, "{text}");
    let agents = m.operator("GET_AGENTS").await;
    let dev = agents["get_agents"]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["url"] == "http://127.0.0.1:9")
        .cloned()
        .expect("the registered agent");
    assert_eq!(dev["task_user"], "dev");
    assert!(dev["task_user_note"].as_str().unwrap().contains("not root"));
    let real = m.agent_by_url(&a.url).await.expect("the real agent");
    if nix_is_root() {
        assert_eq!(
            real["task_user"],
            Value::Null,
            "a root agent switches users"
        );
    }
    a.stop().await;
    m.stop().await;
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn a_task_asking_for_a_user_the_rules_do_not_allow_ends_task_error_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let (m, a) = start(dir.path(), None).await;
    let mut fw = Framework::subscribe_as(&m.url, framework_info("alice-fw"), None, &alice()).await;
    let offer = fw.offers().await.remove(0);
    let mut t = task(&offer, "as-root", "id -u");
    t["command"]["user"] = json!("root");
    fw.launch(&offer, vec![t]).await;
    let st = fw.wait_state("as-root", "TASK_ERROR").await;
    let msg = st["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("\"root\"") && msg.contains("run_tasks"),
        "{msg}"
    );
    a.stop().await;
    m.stop().await;
}

#[tokio::test]
async fn acl_rules_grant_principals_other_users_and_operator_rights() {
    let dir = tempfile::tempdir().unwrap();
    let acls = r#"{
        "run_tasks": [{"principals": {"values": ["alice"]}, "users": {"values": ["daemon", "nobody"]}}],
        "view_tasks": [{"principals": {"values": ["ops"]}, "users": {"type": "ANY"}}],
        "drain_agents": [{"principals": {"values": ["ops"]}, "agents": {"type": "ANY"}}]
    }"#;
    let (m, a) = start(dir.path(), Some(acls)).await;
    let mut fw = Framework::subscribe_as(&m.url, framework_info("alice-fw"), None, &alice()).await;
    let offer = fw.offers().await.remove(0);
    let mut t = task(&offer, "as-daemon", "id -un; sleep 1000");
    t["command"]["user"] = json!("daemon");
    fw.launch(&offer, vec![t]).await;
    fw.wait_state("as-daemon", "TASK_RUNNING").await;
    if nix_is_root() {
        assert_eq!(first_line(&a.dir, &fw.id, "as-daemon").await, "daemon");
    }
    let ops = basic_for(OPS.0, OPS.1);
    assert_eq!(task_ids(&get_tasks(&m, &ops).await), ["as-daemon"]);
    assert!(task_ids(&get_tasks(&m, &bob()).await).is_empty());
    let agent_id = m.agent_by_url(&a.url).await.expect("the agent")["agent_info"]["id"].clone();
    let drain = json!({"type": "DRAIN_AGENT", "drain_agent": {"agent_id": agent_id}});
    let (code, text) = post(&m.url, "/api/v1", &bob(), drain.clone()).await;
    assert_eq!(code, 403, "{text}");
    let (code, text) = post(&m.url, "/api/v1", &ops, drain).await;
    assert_eq!(code, 200, "{text}");
    fw.wait_state("as-daemon", "TASK_KILLED").await;
    a.stop().await;
    m.stop().await;
}

#[tokio::test]
async fn a_bad_acl_file_is_a_usage_error_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "t").unwrap();
    std::fs::write(
        dir.path().join("acls.json"),
        r#"{"run_tasks": [{"principals": {"type": "ANY"}, "user": {"type": "ANY"}}]}"#,
    )
    .unwrap();
    let out = within(
        "dccore master with a bad ACL file",
        tokio::process::Command::new(env!("CARGO_BIN_EXE_dccore"))
            .args(["master", "--listen", "127.0.0.1:0", "--work-dir"])
            .arg(dir.path().join("m"))
            .arg("--token-file")
            .arg(dir.path().join("token"))
            .arg("--acls")
            .arg(dir.path().join("acls.json"))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("run dccore");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a bad ACL file is bad usage: {err}"
    );
    assert!(
        err.contains("run_tasks[0].users") && err.contains("is missing"),
        "{err}"
    );
}

#[tokio::test]
async fn links_planted_in_a_sandbox_by_a_task_do_not_redirect_the_agent() {
    if !nix_is_root() {
        eprintln!("skipped: only a root agent switches users");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (m, a) = start(dir.path(), None).await;
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "untouched\n").unwrap();
    let mut fw = Framework::subscribe_as(&m.url, framework_info("alice-fw"), None, &alice()).await;
    // The task (as nobody) replaces its sandbox files with links to a file only root may write.
    let plant = format!(
        "rm -f stdout stderr; ln -s {v} stdout; ln -s {v} stderr; ln -s {v} .exit_status.tmp",
        v = victim.display()
    );
    let offer = fw.offers().await.remove(0);
    fw.launch(&offer, vec![task(&offer, "reused", &plant)])
        .await;
    fw.wait_state("reused", "TASK_FINISHED").await;
    // A new task with the same id gets the same sandbox.
    let offer = fw.offers().await.remove(0);
    fw.launch(&offer, vec![task(&offer, "reused", "echo pwned")])
        .await;
    let st = within("the second task's end", async {
        loop {
            let st = fw.update_acked().await;
            if st["task_id"]["value"] == "reused"
                && st["state"].as_str().is_some_and(|s| s != "TASK_RUNNING")
            {
                return st;
            }
        }
    })
    .await;
    assert_eq!(st["state"], "TASK_FAILED", "{st}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&victim).unwrap().uid(),
        0,
        "victim re-owned"
    );
    a.stop().await;
    m.stop().await;
}
