//! Services declared in the definition (examples/local-services.hcl: one in HCL, one as Marathon
//! JSON from a file), end to end on a local cluster with the real `dccore`: `plan` shows the
//! deploys next to the nodes, `apply` runs them (healthy where they have health checks), a second
//! plan has nothing to do (no false drift from the defaults the cluster fills in), a changed
//! instance count plans and applies as an update, a change made outside dcform (`dcform app
//! scale`) shows as drift and the next apply undoes it, and a service taken out of the
//! definition is removed. The cluster is destroyed when the test ends (`Cluster`'s drop).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;
mod support;

use common::ok;
use serde_json::Value;
use support::local::{Cluster, dcform};

/// `dcform app list --json`, by id.
fn apps(c: &Cluster) -> std::collections::BTreeMap<String, Value> {
    let o = dcform(&["app", "list", "--json", c.def()]);
    ok(&o, "app list --json");
    let list: Vec<Value> = serde_json::from_slice(&o.stdout).expect("a JSON array of apps");
    list.into_iter()
        .map(|a| (a["id"].as_str().unwrap().to_string(), a))
        .collect()
}

/// `dcform plan`'s output; plan exits 0 whether or not there are changes.
fn plan(c: &Cluster) -> String {
    let o = dcform(&["plan", c.def()]);
    ok(&o, "plan")
}

#[tokio::test(flavor = "multi_thread")]
async fn declared_services_plan_apply_update_show_drift_and_are_removed() {
    let c = Cluster::of_example(
        "local-services.hcl",
        "local-services",
        &["hello-service.json"],
        "e2e-declared",
    );
    // Quicker health checks than the example's, so the apply's wait is short.
    c.edit(|s| {
        s.replace(
            "interval_seconds         = 10",
            "interval_seconds         = 1",
        )
    });

    let p = plan(&c);
    assert!(p.contains("+ service /web deploy: 2 instances"), "{p}");
    assert!(p.contains("+ service /hello deploy: 1 instance"), "{p}");

    let o = dcform(&[
        "apply",
        "--auto-approve",
        "--service-timeout",
        "120",
        c.def(),
    ]);
    let t = ok(&o, "apply");
    assert!(t.contains("Services: 2 deployed, 0 removed."), "{t}");
    let a = apps(&c);
    assert_eq!(a["/web"]["tasksRunning"], 2, "{:#}", a["/web"]);
    assert_eq!(
        a["/web"]["tasksHealthy"], 2,
        "health checked before apply returned"
    );
    assert_eq!(a["/hello"]["tasksRunning"], 1, "{:#}", a["/hello"]);
    assert_eq!(
        a["/hello"]["env"]["GREETING"], "hello",
        "the JSON file's fields"
    );
    assert_eq!(
        a["/web"]["labels"]["example"], "local-services",
        "the HCL's fields"
    );

    // Nothing changed: no service line (the cluster's defaults are no drift).
    let p = plan(&c);
    assert!(
        !p.contains("service /"),
        "a second plan changes a service:\n{p}"
    );

    // A changed count is an update of that service only.
    c.edit(|s| s.replace("instances = 2", "instances = 3"));
    let p = plan(&c);
    assert!(p.contains("~ service /web update: instances 2 -> 3"), "{p}");
    assert!(!p.contains("service /hello"), "{p}");
    ok(
        &dcform(&[
            "apply",
            "--auto-approve",
            "--service-timeout",
            "120",
            c.def(),
        ]),
        "apply of the update",
    );
    let a = apps(&c);
    assert_eq!(
        (
            a["/web"]["instances"].as_u64(),
            a["/web"]["tasksHealthy"].as_u64()
        ),
        (Some(3), Some(3)),
        "{:#}",
        a["/web"]
    );

    // A change outside dcform is drift, and apply puts the definition back.
    ok(
        &dcform(&["app", "scale", "--timeout", "60", "/hello", "2", c.def()]),
        "app scale",
    );
    let p = plan(&c);
    assert!(
        p.contains("~ service /hello update: instances 2 -> 1 (changed outside dcform)"),
        "{p}"
    );
    ok(
        &dcform(&[
            "apply",
            "--auto-approve",
            "--service-timeout",
            "120",
            c.def(),
        ]),
        "apply against drift",
    );
    assert_eq!(apps(&c)["/hello"]["instances"], 1);

    // Out of the definition: removed (dcform made it).
    c.edit(|s| {
        let start = s.find("  # A service as Marathon app JSON").unwrap();
        let end = s[start..].find("  }\n").unwrap() + start + 4;
        format!("{}{}", &s[..start], &s[end..])
    });
    let p = plan(&c);
    assert!(p.contains("- service /hello remove"), "{p}");
    let o = dcform(&[
        "apply",
        "--auto-approve",
        "--service-timeout",
        "120",
        c.def(),
    ]);
    let t = ok(&o, "apply of the removal");
    assert!(t.contains("0 deployed, 1 removed"), "{t}");
    let a = apps(&c);
    assert!(!a.contains_key("/hello"), "{:?}", a.keys());
    assert!(a.contains_key("/web"));
}
