//! The `local` provider end to end, with the real `dccore`: apply examples/local.hcl, see every agent
//! registered through `dcform status`, run a task through the scheduler API and read its output, re-apply
//! (no changes), scale up and down (draining what goes), serve HTTPS to the definition's principals only,
//! destroy and leave no process behind. Interrupted runs are in `local_interrupts.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;
mod support;

use std::path::Path;
use std::time::Duration;

use common::text;
use support::Access;
use support::local::{Cluster, agents_healthy, dcform, framework, is_zombie, kill, task_processes};

#[tokio::test(flavor = "multi_thread")]
async fn local_cluster_boots_runs_a_task_reapplies_as_no_op_and_destroys_cleanly() {
    let c = Cluster::new("e2e-local");
    let o = dcform(&["apply", "--auto-approve", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("Apply complete! Nodes: 4 added"),
        "{}",
        text(&o)
    );

    let status = c.status();
    assert_eq!(agents_healthy(&status), (3, 3), "{status:#}");
    let agent = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "agents-1")
        .unwrap();
    assert!(
        agent["resources"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x["name"] == "cpus")),
        "{agent}"
    );

    // A task through the scheduler API, its output through the agent's sandbox API.
    let (mut fw, access) = framework(&status, "e2e").await;
    fw.launch("hello-1", "echo hello-from-local").await;
    let finished = fw.wait_state("hello-1", "TASK_FINISHED").await;
    let agent_id = finished["update"]["status"]["agent_id"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let agents = access.api().agents().await.unwrap();
    let agent_url = agents
        .iter()
        .find(|a| a.id == agent_id)
        .expect("agent of the task")
        .url
        .clone();
    let out = fw
        .sandbox_file(&agent_url, &access.agent_token, "hello-1", "stdout")
        .await;
    assert!(out.contains("hello-from-local"), "stdout was {out:?}");
    let o = dcform(&["task", "logs", "hello-1", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("hello-from-local"),
        "{}",
        text(&o)
    );
    // --follow prints what a running task writes as it writes it, and ends with the task.
    fw.launch("tick-1", "for i in 1 2 3; do echo tick-$i; sleep 1; done")
        .await;
    fw.wait_state("tick-1", "TASK_RUNNING").await;
    let o = dcform(&["task", "logs", "--follow", "tick-1", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "tick-1\ntick-2\ntick-3\n",
        "{}",
        text(&o)
    );
    fw.wait_state("tick-1", "TASK_FINISHED").await;
    let o = dcform(&["task", "list", c.def()]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("TASK_FINISHED"),
        "{}",
        text(&o)
    );
    // Found in CI: left subscribed, this framework kept the offers of every agent unanswered,
    // and the next framework saw none within 60 s.
    fw.teardown().await;

    let o = dcform(&["apply", "--auto-approve", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("No changes. Your cluster matches the definition."),
        "{}",
        text(&o)
    );

    // agents-1's processes die (as on a host restart): the refresh sees it, apply starts it again.
    let run = c.state_path().parent().unwrap().join("nodes/agents-1/run");
    let mut killed = Vec::new();
    for f in std::fs::read_dir(&run).unwrap().flatten() {
        let pid = std::fs::read_to_string(f.path()).unwrap();
        let pid = pid.trim().to_string();
        // The supervisor leads its own process group (setsid): take the group, then the leader.
        kill(&["-9", "--", &format!("-{pid}")]);
        kill(&["-9", &pid]);
        killed.push(pid.parse::<u32>().unwrap());
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while killed
        .iter()
        .any(|p| Path::new(&format!("/proc/{p}")).exists() && !is_zombie(*p))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "agents-1's processes outlived SIGKILL: {killed:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let o = dcform(&["plan", "--detailed-exitcode", c.def()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("agents-1") && text(&o).contains("the core is not running"),
        "{}",
        text(&o)
    );
    let o = dcform(&["apply", "--auto-approve", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(agents_healthy(&c.status()), (3, 3));

    // A task that leaves a process in a session of its own behind, as daemons do: destroy must
    // take it too (found: tasks survived destroy with their folder deleted and parent pid 1).
    let status = c.status();
    let (mut fw, _) = framework(&status, "e2e-daemon").await;
    fw.launch("daemon-1", "setsid sleep 300 & sleep 300").await;
    fw.wait_state("daemon-1", "TASK_RUNNING").await;
    let root = c.state_path().parent().unwrap().to_path_buf();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while task_processes(&root).len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the task's processes never showed up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let running = c.sandbox_pids();
    assert!(running.len() >= 4, "a supervisor per node: {running:?}");
    let o = dcform(&["destroy", "--auto-approve", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let left = task_processes(&root);
    assert!(left.is_empty(), "task processes outlived destroy: {left:?}");
    for p in running {
        assert!(
            !Path::new(&format!("/proc/{p}")).exists() || is_zombie(p),
            "process {p} survived destroy"
        );
    }
    let o = dcform(&["state", "list", c.def()]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "",
        "no node left in the state"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scale_up_and_down_touch_only_the_changed_agents() {
    let c = Cluster::new("e2e-scale");
    let o = dcform(&["apply", "--auto-approve", "-var", "agents=1", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = dcform(&["apply", "--auto-approve", "-var", "agents=3", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("Nodes: 2 added, 0 changed, 0 destroyed"),
        "{}",
        text(&o)
    );
    assert_eq!(agents_healthy(&c.status()), (4, 4));
    let o = dcform(&["apply", "--auto-approve", "-var", "agents=2", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("- agents-3 (agent)"), "{}", text(&o));
    let names: Vec<String> = c.status()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["agents-1", "agents-2", "masters-1", "public-1"]);

    // Removing agents drains them first: a long-running task on one of them is killed, and its
    // framework hears TASK_KILLED from the drain, before the node goes.
    let status = c.status();
    let (mut fw, _) = framework(&status, "e2e-drain").await;
    // Only the private agents are offered to role "*": the task lands on agents-1 or agents-2.
    fw.launch("long-1", "sleep 1000").await;
    let running = fw.wait_state("long-1", "TASK_RUNNING").await;
    let on = running["update"]["status"]["agent_id"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let def = c.def().to_string();
    let apply = tokio::task::spawn_blocking(move || {
        dcform(&["apply", "--auto-approve", "-var", "agents=0", &def])
    });
    let killed = tokio::time::timeout(
        Duration::from_secs(120),
        fw.wait_state("long-1", "TASK_KILLED"),
    )
    .await
    .expect("TASK_KILLED during the scale-down");
    let o = apply.await.unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("- agents-1 (agent)"), "{}", text(&o));
    let st = &killed["update"]["status"];
    assert_eq!(st["agent_id"]["value"], on.as_str(), "{st}");
    assert_eq!(st["reason"], "REASON_AGENT_DRAINING", "{st}");
    let names: Vec<String> = c.status()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["masters-1", "public-1"]);
}

/// Framework principals come from the definition: dcform makes each a secret, says where it is,
/// and the masters let it subscribe only with its roles. Every API is HTTPS with the cluster CA.
#[tokio::test(flavor = "multi_thread")]
async fn a_definition_principal_subscribes_only_with_its_roles_over_https() {
    let c = Cluster::new("e2e-principal");
    let o = dcform(&["apply", "--auto-approve", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let status = c.status();
    let master = status["outputs"]["master_url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(master.starts_with("https://"), "{master}");
    let ca_file = status["outputs"]["ca_file"].as_str().unwrap().to_string();
    let secret_file = status["outputs"]["principal_secret_files"]["analytics"]
        .as_str()
        .unwrap()
        .to_string();
    {
        use std::os::unix::fs::PermissionsExt;
        for f in [&ca_file, &secret_file] {
            let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
    }
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    let access = Access::of(Path::new(&ca_file).parent().unwrap());
    let http = support::mesos::client(access.ca_pem.as_deref());
    let subscribe = |role: &'static str| {
        let http = http.clone();
        let (master, secret) = (master.clone(), secret.trim().to_string());
        async move {
            let body = serde_json::json!({"type": "SUBSCRIBE", "subscribe": {"framework_info": {
                "user": "nobody", "name": "analytics-fw", "roles": [role], "capabilities": [{"type": "MULTI_ROLE"}]}}});
            let r = tokio::time::timeout(
                Duration::from_secs(30),
                http.post(format!("{master}/api/v1/scheduler"))
                    .basic_auth("analytics", Some(secret))
                    .json(&body)
                    .send(),
            )
            .await
            .expect("subscribe answered in time")
            .expect("subscribe request");
            r.status().as_u16()
        }
    };
    assert_eq!(subscribe("analytics").await, 200, "its own role");
    assert_eq!(
        subscribe("other").await,
        403,
        "a role the definition did not give it"
    );
    // Without the cluster CA the master cannot even be reached.
    let plain = support::mesos::client(None);
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        plain.get(format!("{master}/health")).send(),
    )
    .await
    .expect("answered in time");
    assert!(
        r.is_err(),
        "reached the master without the cluster CA: {r:?}"
    );
    let o = dcform(&["destroy", "--auto-approve", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}
