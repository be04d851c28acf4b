//! Service planning: deploy, update (field by field, drift, scale only), remove, no-op, and how
//! the plan shows them.

use std::collections::BTreeMap;

use dccore_api::marathon::App;
use serde_json::{Map, Value, json};

use super::{applied, core, demo};
use crate::plan::{
    LiveApps, NO_CHANGES, ServiceAction, ServiceChange, diff, diff_services, render_human,
    render_json_lines,
};
use crate::spec::ServiceSpec;
use crate::state::ServiceState;

/// A service as the loader makes it: through dccore's parser.
fn service(name: &str, def: Value) -> ServiceSpec {
    let app = App::from_json(def, None).expect("a valid app");
    ServiceSpec {
        name: name.into(),
        id: app.id,
        instances: app.instances,
        definition: app.raw,
    }
}

fn web(instances: u32) -> ServiceSpec {
    service(
        "web",
        json!({"id": "/web", "cmd": "python3 -m http.server $PORT0", "instances": instances, "cpus": 0.1}),
    )
}

fn recorded(services: &[&ServiceSpec]) -> BTreeMap<String, ServiceState> {
    services
        .iter()
        .map(|s| {
            (
                s.id.to_string(),
                ServiceState {
                    definition: s.definition.clone(),
                    version: Some("v1".into()),
                },
            )
        })
        .collect()
}

/// What `GET /v2/apps` shows for a definition: dccore's `to_json` (defaults filled in) plus the
/// fields of an answer.
fn live_app(def: &Map<String, Value>) -> Map<String, Value> {
    let app = App::from_json(Value::Object(def.clone()), None).expect("a valid app");
    let mut out = app.to_json();
    out.insert("version".into(), json!("2026-12-03T10:00:00.000Z"));
    out.insert("tasksRunning".into(), json!(app.instances));
    out.insert("tasksHealthy".into(), json!(0));
    out
}

fn live(apps: &[Map<String, Value>]) -> LiveApps {
    apps.iter()
        .map(|a| (a["id"].as_str().expect("id").to_string(), a.clone()))
        .collect()
}

fn only(changes: &[ServiceChange]) -> &ServiceChange {
    let [c] = changes else {
        panic!("one change: {changes:?}");
    };
    c
}

#[test]
fn a_new_service_is_deployed_with_its_definition() {
    let w = web(3);
    let changes = diff_services(std::slice::from_ref(&w), &BTreeMap::new(), None);
    let c = only(&changes);
    assert_eq!(c.action, ServiceAction::Deploy);
    assert_eq!(c.instances, Some(3));
    assert_eq!(c.definition.as_ref(), Some(&w.definition));
    assert!(c.details.is_empty(), "{c:?}");
}

#[test]
fn a_service_running_as_defined_is_a_no_op_though_the_cluster_fills_in_defaults() {
    let w = web(3);
    let live = live(&[live_app(&w.definition)]);
    assert!(
        live["/web"].contains_key("disk"),
        "the cluster shows defaults"
    );
    let changes = diff_services(std::slice::from_ref(&w), &recorded(&[&w]), Some(&live));
    assert_eq!(only(&changes).action, ServiceAction::NoOp, "{changes:?}");
    // Numbers compare by value: the cluster writing 3.0 for 3 is no change.
    let mut floats = live.clone();
    floats
        .get_mut("/web")
        .expect("web")
        .insert("instances".into(), json!(3.0));
    let changes = diff_services(std::slice::from_ref(&w), &recorded(&[&w]), Some(&floats));
    assert_eq!(only(&changes).action, ServiceAction::NoOp, "{changes:?}");
}

#[test]
fn an_edited_definition_is_an_update_listing_each_field() {
    let before = web(3);
    let mut after = service(
        "web",
        json!({"id": "/web", "cmd": "sleep 1000", "instances": 5, "cpus": 0.2, "env": {"A": "1"}}),
    );
    after.name = "web".into();
    let changes = diff_services(std::slice::from_ref(&after), &recorded(&[&before]), None);
    let c = only(&changes);
    assert_eq!(c.action, ServiceAction::Update);
    assert_eq!(
        c.details,
        [
            "instances 3 -> 5",
            "cmd changed",
            "cpus 0.1 -> 0.2",
            "env changed"
        ]
    );
    assert!(!c.scale_only);
}

#[test]
fn an_update_of_instances_alone_is_scale_only() {
    let changes = diff_services(&[web(5)], &recorded(&[&web(3)]), None);
    let c = only(&changes);
    assert_eq!((c.action, c.scale_only), (ServiceAction::Update, true));
    assert_eq!(c.details, ["instances 3 -> 5"]);
}

#[test]
fn a_field_changed_on_the_cluster_is_drift_and_put_back() {
    let w = web(3);
    let mut scaled = live_app(&w.definition);
    scaled.insert("instances".into(), json!(5));
    let changes = diff_services(
        std::slice::from_ref(&w),
        &recorded(&[&w]),
        Some(&live(&[scaled])),
    );
    let c = only(&changes);
    assert_eq!((c.action, c.scale_only), (ServiceAction::Update, true));
    assert_eq!(c.details, ["instances 5 -> 3 (changed outside dcform)"]);
    // Fields the cluster shows that dcform did not set are not dcform's: no drift.
    let mut extra = live_app(&w.definition);
    extra.insert("fetch".into(), json!([{"uri": "http://example.invalid/x"}]));
    let changes = diff_services(
        std::slice::from_ref(&w),
        &recorded(&[&w]),
        Some(&live(&[extra])),
    );
    assert_eq!(only(&changes).action, ServiceAction::NoOp);
}

#[test]
fn a_service_removed_outside_dcform_is_deployed_again() {
    let w = web(3);
    let changes = diff_services(
        std::slice::from_ref(&w),
        &recorded(&[&w]),
        Some(&LiveApps::new()),
    );
    let c = only(&changes);
    assert_eq!(c.action, ServiceAction::Deploy);
    assert_eq!(c.details, ["removed outside dcform"]);
    // Without an answer from the cluster nothing is known to be gone.
    let changes = diff_services(std::slice::from_ref(&w), &recorded(&[&w]), None);
    assert_eq!(only(&changes).action, ServiceAction::NoOp);
}

#[test]
fn only_services_dcform_deployed_are_removed() {
    let old = service("old", json!({"id": "/old", "cmd": "sleep 1"}));
    let theirs = service("theirs", json!({"id": "/theirs", "cmd": "sleep 1"}));
    let live = live(&[live_app(&old.definition), live_app(&theirs.definition)]);
    let changes = diff_services(&[], &recorded(&[&old]), Some(&live));
    let c = only(&changes);
    assert_eq!((c.id.as_str(), c.action), ("/old", ServiceAction::Remove));
    assert!(c.details.is_empty() && c.definition.is_none(), "{c:?}");
    let changes = diff_services(&[], &recorded(&[&old]), Some(&LiveApps::new()));
    assert_eq!(only(&changes).details, ["already gone from the cluster"]);
}

#[test]
fn the_plan_shows_service_lines_after_the_nodes_and_counts_them() {
    let mut s = demo();
    let state = {
        let mut st = applied(&s);
        let old = service("old", json!({"id": "/old", "cmd": "sleep 1"}));
        let edited = service(
            "api",
            json!({"id": "/api", "cmd": "sleep 1", "instances": 3}),
        );
        st.services = recorded(&[&old, &edited]);
        st
    };
    s.services = vec![
        web(3),
        service(
            "api",
            json!({"id": "/api", "cmd": "sleep 2", "instances": 5}),
        ),
    ];
    let plan = diff(&s, &state, &core(), None);
    assert!(plan.actions().next().is_none(), "no node changes");
    assert!(plan.has_changes());
    let text = render_human(&plan, false);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "dcform will apply the following changes to cluster \"demo\" (local provider):",
            "",
            "   + service /web deploy: 3 instances",
            "   ~ service /api update: instances 3 -> 5, cmd changed",
            "   - service /old remove",
            "",
            "Plan: 0 to add, 0 to change, 0 to destroy.",
            "Services: 1 to deploy, 1 to update, 1 to remove.",
        ]
    );
    let s_ = plan.summary();
    assert_eq!((s_.deploy, s_.update, s_.remove), (1, 1, 1));

    let json_lines: Vec<Value> = render_json_lines(&plan)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let services: Vec<(&str, &str)> = json_lines
        .iter()
        .filter(|l| l["type"] == "service")
        .map(|l| {
            (
                l["id"].as_str().unwrap_or(""),
                l["action"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        services,
        [("/web", "deploy"), ("/api", "update"), ("/old", "remove")]
    );
    let summary = json_lines.last().expect("summary line");
    assert_eq!(
        summary["services"],
        json!({"deploy": 1, "update": 1, "remove": 1})
    );
    assert_eq!(summary["changes"], true);
}

#[test]
fn services_as_deployed_leave_nothing_to_do_and_destroy_plans_have_none() {
    let mut s = demo();
    s.services = vec![web(1)];
    let mut state = applied(&s);
    state.services = recorded(&[&s.services[0]]);
    let plan = diff(&s, &state, &core(), None);
    assert!(!plan.has_changes());
    assert_eq!(render_human(&plan, false).trim(), NO_CHANGES);
    let destroy = crate::plan::destroy(&s, &state, &core());
    assert!(destroy.services.is_empty());
    // One instance is said in the singular.
    let mut fresh = applied(&s);
    fresh.services.clear();
    let text = render_human(&diff(&s, &fresh, &core(), None), false);
    assert!(
        text.contains("   + service /web deploy: 1 instance\n"),
        "{text}"
    );
}

#[test]
fn infra_only_leaves_the_services_for_the_next_apply() {
    let mut s = demo();
    s.services = vec![web(1)];
    let state = applied(&s);
    let (plan, left_out) = crate::plan::infra_only(diff(&s, &state, &core(), None));
    assert!(!plan.has_changes());
    assert_eq!(
        left_out,
        [
            "service /web: deploy needs the running cluster; run `dcform apply` without --infra-only for it"
        ]
    );
}
