//! `dcform app` end to end on a local cluster (1 master, 1 agent, 1 public agent) with the real
//! `dccore`: deploy examples/apps/sleeper.json and wait for it, see it running in `app list
//! --json`, scale it up and down, show its tasks, restart it (new tasks), refuse an unknown app
//! naming the apps there are (exit 1), time out on an app too big for any agent saying why
//! (exit 2), refuse a change while its deployment runs unless forced, remove it. The cluster is destroyed when the test ends,
//! failed or not (`Cluster`'s drop).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;
mod support;

use std::collections::BTreeSet;

use common::{ok, text};
use serde_json::Value;
use support::local::{Cluster, dcform};

const APP: &str = "/examples/sleeper";

/// `dcform app list --json`: the app's entry, if listed.
fn listed(c: &Cluster) -> Option<Value> {
    let o = dcform(&["app", "list", "--json", c.def()]);
    ok(&o, "app list --json");
    let apps: Vec<Value> = serde_json::from_slice(&o.stdout).expect("a JSON array of apps");
    apps.into_iter().find(|a| a["id"] == APP)
}

/// The ids of the app's running tasks, from `dcform app show --json`.
fn running_tasks(c: &Cluster) -> BTreeSet<String> {
    let o = dcform(&["app", "show", "--json", APP, c.def()]);
    ok(&o, "app show --json");
    let app: Value = serde_json::from_slice(&o.stdout).expect("the app as JSON");
    app["tasks"]
        .as_array()
        .expect("tasks embedded")
        .iter()
        .filter(|t| t["state"] == "TASK_RUNNING")
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn apps_deploy_scale_restart_and_remove_through_dcform_app() {
    let c = Cluster::new("e2e-apps");
    ok(
        &dcform(&["apply", "--auto-approve", "-var", "agents=1", c.def()]),
        "apply",
    );
    let def = common::example("apps/sleeper.json");
    let def = def.to_str().unwrap();

    // Deploy waits until the instance runs.
    let o = dcform(&["app", "deploy", "--timeout", "120", def, c.def()]);
    let t = ok(&o, "app deploy");
    assert!(t.contains(&format!("{APP} deployed: 1/1 running")), "{t}");
    let app = listed(&c).expect("the app is listed");
    assert_eq!(app["tasksRunning"], 1, "{app:#}");
    assert_eq!(app["instances"], 1, "{app:#}");
    assert_eq!(app["deployments"], serde_json::json!([]), "{app:#}");
    assert_eq!(
        app["labels"]["example"], "sleeper",
        "the definition comes back"
    );

    let o = dcform(&["app", "list", c.def()]);
    let t = ok(&o, "app list");
    assert!(t.contains("ID") && t.contains("DEPLOYMENTS"), "{t}");
    assert!(t.contains(APP), "{t}");

    // Scale up, then down: each waits until the count runs.
    ok(
        &dcform(&["app", "scale", "--timeout", "120", APP, "2", c.def()]),
        "app scale 2",
    );
    assert_eq!(listed(&c).unwrap()["tasksRunning"], 2);
    assert_eq!(running_tasks(&c).len(), 2);
    ok(
        &dcform(&["app", "scale", "--timeout", "120", APP, "1", c.def()]),
        "app scale 1",
    );
    let app = listed(&c).unwrap();
    assert_eq!(
        (app["instances"].as_u64(), app["tasksRunning"].as_u64()),
        (Some(1), Some(1)),
        "{app:#}"
    );

    // Show: the task with its host.
    let before = running_tasks(&c);
    assert_eq!(before.len(), 1, "{before:?}");
    let o = dcform(&["app", "show", APP, c.def()]);
    let t = ok(&o, "app show");
    let task = before.iter().next().unwrap();
    assert!(
        t.contains(task.as_str()) && t.contains("TASK_RUNNING"),
        "{t}"
    );
    assert!(t.contains("1/1 running"), "{t}");

    // Restart replaces the task.
    ok(
        &dcform(&["app", "restart", "--timeout", "120", APP, c.def()]),
        "app restart",
    );
    let after = running_tasks(&c);
    assert_eq!(after.len(), 1, "{after:?}");
    assert!(
        before.is_disjoint(&after),
        "new task ids: {before:?} -> {after:?}"
    );

    // An unknown app: exit 1, naming the apps there are.
    for args in [
        vec!["app", "show", "/no/such"],
        vec!["app", "scale", "/no/such", "2"],
        vec!["app", "remove", "/no/such"],
    ] {
        let mut args = args.clone();
        args.push(c.def());
        let o = dcform(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        let t = text(&o);
        assert!(t.contains("no app /no/such"), "{t}");
        assert!(t.contains(&format!("apps: {APP}")), "{t}");
    }

    // Too big for any agent: the wait runs out (exit 2) saying why the instance does not start,
    // and the deployment in progress locks the app (exit 1) until forced.
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big.json");
    std::fs::write(
        &big,
        r#"{"id": "/examples/big", "cmd": "sleep 60", "instances": 1, "cpus": 0.1, "mem": 1000000}"#,
    )
    .unwrap();
    let o = dcform(&[
        "app",
        "deploy",
        "--timeout",
        "5",
        big.to_str().unwrap(),
        c.def(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("the deployment of /examples/big did not finish"),
        "{t}"
    );
    assert!(
        t.contains("not started") && t.to_lowercase().contains("mem"),
        "{t}"
    );
    let o = dcform(&["app", "scale", "/examples/big", "0", c.def()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("is being deployed"), "{}", text(&o));
    ok(
        &dcform(&[
            "app",
            "remove",
            "--force",
            "--timeout",
            "60",
            "/examples/big",
            c.def(),
        ]),
        "app remove --force",
    );

    // Remove waits until it is gone.
    let t = ok(
        &dcform(&["app", "remove", "--timeout", "120", APP, c.def()]),
        "app remove",
    );
    assert!(t.contains(&format!("{APP} removed")), "{t}");
    assert!(listed(&c).is_none(), "removed apps are not listed");
    let o = dcform(&["app", "show", APP, c.def()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("there are no apps"), "{}", text(&o));
}
