use super::*;
use crate::proto::{Id, Resources};
use crate::services::placement::OfferView;
use serde_json::json;

fn app(v: Value) -> App {
    App::from_json(v, None).expect("valid app")
}

fn offer(n: u32) -> OfferView {
    OfferView {
        offer_id: format!("o{n}"),
        agent_id: format!("a{n}"),
        hostname: format!("h{n}"),
        attributes: BTreeMap::new(),
        by_role: [(
            "*".to_string(),
            Resources::parse("cpus:2;mem:1024;disk:100;ports:[31000-31010]").expect("resources"),
        )]
        .into(),
    }
}

/// Fresh task id suffixes, unique across every call (as the driver's UUIDs are).
fn ids() -> impl FnMut() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    || {
        format!(
            "id{}",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        )
    }
}

fn launched(actions: &[Action]) -> Vec<TaskInfo> {
    actions
        .iter()
        .flat_map(|a| match a {
            Action::Launch { tasks, .. } => tasks.clone(),
            _ => Vec::new(),
        })
        .collect()
}

fn status(task: &str, state: TaskState) -> TaskStatus {
    TaskStatus::new(Id::new(task), state, "SOURCE_AGENT", Some(Id::new("a1")))
}

fn web(instances: u32) -> App {
    app(
        json!({"id": "/prod/web", "cmd": "serve $PORT0", "instances": instances, "cpus": 0.1, "mem": 16,
        "portDefinitions": [{"port": 0, "name": "http"}], "constraints": [["hostname", "UNIQUE"]]}),
    )
}

#[test]
fn unique_instances_go_one_per_agent_and_the_extra_one_waits_with_the_reason() {
    let mut c = Core::default();
    let now = Instant::now();
    c.put_app(web(4), "v1".into(), "d1".into(), now);
    let acts = c.on_offers(&[offer(1), offer(2), offer(3)], now, 0.0, &mut ids());
    let tasks = launched(&acts);
    assert_eq!(tasks.len(), 3);
    let agents: std::collections::BTreeSet<_> =
        tasks.iter().map(|t| t.agent_id.value.clone()).collect();
    assert_eq!(agents.len(), 3, "one per agent");
    assert_eq!(tasks[0].name, "web.prod");
    assert!(tasks[0].task_id.value.starts_with("prod_web."));
    let vars = &tasks[0]
        .command
        .as_ref()
        .expect("command")
        .environment
        .as_ref()
        .expect("env")
        .variables;
    let get = |n: &str| vars.iter().find(|v| v.name == n).map(|v| v.value.clone());
    assert_eq!(get("PORT0").as_deref(), Some("31000"));
    assert_eq!(get("PORT_HTTP").as_deref(), Some("31000"));
    assert_eq!(
        c.waiting(),
        vec![(AppId::parse("/prod/web").expect("id"), 1)]
    );
    let acts = c.on_offers(&[offer(1)], now, 0.0, &mut ids());
    assert!(
        matches!(&acts[..], [Action::Decline { refuse_seconds, .. }] if *refuse_seconds == WAITING_REFUSE_SECS)
    );
    let e = &c.apps[&AppId::parse("/prod/web").expect("id")];
    // Each of the first three offers took one instance and refused a second; the fourth refused.
    assert_eq!(e.refusals.get("UnfulfilledConstraint"), Some(&4));
    assert!(
        e.last_refusal
            .as_deref()
            .is_some_and(|r| r.contains("hostname:UNIQUE"))
    );
}

#[test]
fn a_failed_instance_is_replaced_after_a_back_off_that_grows_by_the_factor() {
    let mut c = Core::default();
    let t0 = Instant::now();
    c.put_app(web(1), "v1".into(), "d1".into(), t0);
    let task = launched(&c.on_offers(&[offer(1)], t0, 0.0, &mut ids()))[0]
        .task_id
        .value
        .clone();
    let acts = c.on_update(&status(&task, TaskState::Failed), t0, 0.0);
    assert!(acts.iter().any(|a| matches!(a, Action::Acknowledge { .. })));
    let id = AppId::parse("/prod/web").expect("id");
    assert_eq!(c.apps[&id].delay, Duration::from_secs(1));
    assert!(
        launched(&c.on_offers(&[offer(2)], t0, 0.0, &mut ids())).is_empty(),
        "backing off"
    );
    let t1 = t0 + Duration::from_millis(1100);
    assert!(
        c.tick(t1).contains(&Action::Revive),
        "back-off over: offers wanted again"
    );
    let again = launched(&c.on_offers(&[offer(2)], t1, 0.0, &mut ids()));
    assert_eq!(again.len(), 1, "replaced");
    c.on_update(&status(&again[0].task_id.value, TaskState::Failed), t1, 0.0);
    let d = c.apps[&id].delay.as_secs_f64();
    assert!((d - 1.15).abs() < 1e-9, "{d}");
}

#[test]
fn an_unreachable_instance_is_replaced_and_the_surplus_killed_when_it_returns() {
    let mut c = Core::default();
    let now = Instant::now();
    c.put_app(web(1), "v1".into(), "d1".into(), now);
    let first = launched(&c.on_offers(&[offer(1)], now, 0.0, &mut ids()))[0]
        .task_id
        .value
        .clone();
    c.on_update(&status(&first, TaskState::Running), now, 0.0);
    let acts = c.on_update(&status(&first, TaskState::Unreachable), now, 0.0);
    assert!(acts.contains(&Action::Revive));
    let second = launched(&c.on_offers(&[offer(2)], now, 0.0, &mut ids()));
    assert_eq!(second.len(), 1, "replacement launched elsewhere");
    c.on_update(
        &status(&second[0].task_id.value, TaskState::Running),
        now,
        1.0,
    );
    let acts = c.on_update(&status(&first, TaskState::Running), now, 2.0);
    let killed: Vec<_> = acts
        .iter()
        .filter_map(|a| match a {
            Action::Kill { task_id, .. } => Some(task_id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(killed.len(), 1, "one surplus instance killed: {acts:?}");
}

#[test]
fn a_new_version_replaces_old_instances_as_new_ones_run() {
    let mut c = Core::default();
    let now = Instant::now();
    c.put_app(web(1), "v1".into(), "d1".into(), now);
    let old = launched(&c.on_offers(&[offer(1)], now, 0.0, &mut ids()))[0]
        .task_id
        .value
        .clone();
    c.on_update(&status(&old, TaskState::Running), now, 0.0);
    let changed = app(
        json!({"id": "/prod/web", "cmd": "serve2 $PORT0", "instances": 1, "cpus": 0.1, "mem": 16,
        "portDefinitions": [{"port": 0}]}),
    );
    let acts = c.put_app(changed, "v2".into(), "d2".into(), now);
    assert!(
        !acts.iter().any(|a| matches!(a, Action::Kill { .. })),
        "old kept until the new one runs"
    );
    let new = launched(&c.on_offers(&[offer(2)], now, 0.0, &mut ids()))[0]
        .task_id
        .value
        .clone();
    let acts = c.on_update(&status(&new, TaskState::Running), now, 1.0);
    assert!(
        acts.contains(&Action::Kill {
            task_id: old,
            agent_id: "a1".into()
        }),
        "{acts:?}"
    );
}

#[test]
fn scaling_keeps_the_version_and_kills_the_newest_surplus() {
    let mut c = Core::default();
    let now = Instant::now();
    c.put_app(web(2), "v1".into(), "d1".into(), now);
    let tasks = launched(&c.on_offers(&[offer(1), offer(2)], now, 0.0, &mut ids()));
    for (n, t) in tasks.iter().enumerate() {
        c.on_update(&status(&t.task_id.value, TaskState::Running), now, n as f64);
    }
    let acts = c.put_app(web(1), "v2".into(), "d2".into(), now);
    let id = AppId::parse("/prod/web").expect("id");
    assert_eq!(c.apps[&id].version, "v1", "a scale is not a new version");
    let kills: Vec<_> = acts
        .iter()
        .filter(|a| matches!(a, Action::Kill { .. }))
        .collect();
    assert_eq!(kills.len(), 1);
}

#[test]
fn an_instance_failing_its_health_check_past_the_grace_period_is_killed() {
    let mut c = Core::default();
    let t0 = Instant::now();
    let a = app(
        json!({"id": "/h", "cmd": "x", "cpus": 0.1, "mem": 16, "portDefinitions": [{"port": 0}],
        "healthChecks": [{"protocol": "TCP", "gracePeriodSeconds": 5, "intervalSeconds": 1, "maxConsecutiveFailures": 2}]}),
    );
    c.put_app(a, "v1".into(), "d1".into(), t0);
    let t = launched(&c.on_offers(&[offer(1)], t0, 0.0, &mut ids()))[0]
        .task_id
        .value
        .clone();
    c.on_update(&status(&t, TaskState::Running), t0, 0.0);
    let due = c.due_checks(t0);
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].1.as_str(), due[0].2), ("h1", 31000));
    assert!(c.due_checks(t0).is_empty(), "not again before the interval");
    assert!(
        c.health_result(&t, false, t0).is_empty(),
        "in the grace period"
    );
    let late = t0 + Duration::from_secs(6);
    assert!(c.health_result(&t, false, late).is_empty(), "first failure");
    let acts = c.health_result(&t, false, late);
    assert!(
        acts.iter().any(|a| matches!(a, Action::Kill { .. })),
        "{acts:?}"
    );
}

#[test]
fn a_deployment_ends_when_all_instances_run_healthy() {
    let mut c = Core::default();
    let now = Instant::now();
    c.put_app(web(1), "v1".into(), "d1".into(), now);
    let id = AppId::parse("/prod/web").expect("id");
    assert_eq!(c.apps[&id].deployment.as_deref(), Some("d1"));
    let t = launched(&c.on_offers(&[offer(1)], now, 0.0, &mut ids()))[0]
        .task_id
        .value
        .clone();
    c.on_update(&status(&t, TaskState::Running), now, 0.0);
    assert_eq!(c.apps[&id].deployment, None);
}

#[test]
fn removing_an_app_kills_its_instances_and_unknown_tasks_are_killed() {
    let mut c = Core::default();
    let now = Instant::now();
    c.put_app(web(1), "v1".into(), "d1".into(), now);
    let t = launched(&c.on_offers(&[offer(1)], now, 0.0, &mut ids()))[0]
        .task_id
        .value
        .clone();
    let acts = c.remove_app(&AppId::parse("/prod/web").expect("id"));
    assert_eq!(
        acts,
        vec![Action::Kill {
            task_id: t,
            agent_id: "a1".into()
        }]
    );
    let acts = c.on_update(&status("stranger", TaskState::Running), now, 0.0);
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::Kill { task_id, .. } if task_id == "stranger"))
    );
}

#[test]
fn a_deployment_past_its_deadline_is_rolled_back_to_the_previous_version() {
    let mut c = Core {
        deployment_timeout: Some(Duration::from_secs(5)),
        ..Core::default()
    };
    let t0 = Instant::now();
    let def = |cmd: &str| {
        app(
            json!({"id": "/prod/web", "cmd": cmd, "instances": 3, "cpus": 0.1, "mem": 16,
            "upgradeStrategy": {"minimumHealthCapacity": 0.5}}),
        )
    };
    c.put_app(def("sleep 100"), "v1".into(), "d1".into(), t0);
    let old: Vec<String> = launched(&c.on_offers(&[offer(1)], t0, 0.0, &mut ids()))
        .iter()
        .map(|t| t.task_id.value.clone())
        .collect();
    assert_eq!(old.len(), 3);
    for t in &old {
        c.on_update(&status(t, TaskState::Running), t0, 0.0);
    }
    assert!(c.apps.values().all(|e| e.deployment.is_none()));

    let acts = c.put_app(def("exit 1"), "v2".into(), "d2".into(), t0);
    let kills = acts
        .iter()
        .filter(|a| matches!(a, Action::Kill { .. }))
        .count();
    assert_eq!(kills, 1, "3 * 0.5 rounded up stay: {acts:?}");
    let new = launched(&c.on_offers(&[offer(1)], t0, 0.0, &mut ids()));
    assert_eq!(new.len(), 3);
    for t in &new {
        c.on_update(&status(&t.task_id.value, TaskState::Failed), t0, 1.0);
    }
    c.tick(t0 + Duration::from_secs(4));
    assert_eq!(
        c.apps.values().next().map(|e| e.version.as_str()),
        Some("v2")
    );

    c.tick(t0 + Duration::from_secs(6));
    let e = c.apps.values().next().expect("the app");
    assert_eq!(e.version, "v1");
    assert_eq!(e.app.cmd.as_deref(), Some("sleep 100"));
    assert!(e.deployment.is_some(), "the rollback is a deployment");
    let msg = e.last_failure.as_ref().expect("a failure")["message"].clone();
    assert!(
        msg.as_str()
            .is_some_and(|m| m.contains("rolled back to version v1")),
        "{msg}"
    );
    // The two old instances left are current again; the third comes back.
    let need = c.waiting();
    assert_eq!(need.len(), 1);
    assert_eq!(need[0].1, 1);
}

fn plain(instances: u32) -> App {
    app(
        json!({"id": "/bench/plain", "cmd": "sleep 3600", "instances": instances, "cpus": 0.01, "mem": 1}),
    )
}

fn big_offer(n: u32) -> OfferView {
    OfferView {
        by_role: [(
            "*".to_string(),
            Resources::parse("cpus:64;mem:65536;disk:1000").expect("resources"),
        )]
        .into(),
        ..offer(n)
    }
}

fn per_agent(tasks: &[TaskInfo]) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for t in tasks {
        *n.entry(t.agent_id.value.clone()).or_default() += 1;
    }
    n
}

#[test]
fn a_deploy_is_dealt_out_over_the_offers_that_came_together() {
    let mut c = Core::default();
    let now = Instant::now();
    c.put_app(plain(10), "v1".into(), "d1".into(), now);
    let acts = c.on_offers(
        &[big_offer(1), big_offer(2), big_offer(3)],
        now,
        0.0,
        &mut ids(),
    );
    let counts = per_agent(&launched(&acts));
    assert_eq!(
        counts,
        [
            ("a1".to_string(), 4),
            ("a2".to_string(), 3),
            ("a3".to_string(), 3)
        ]
        .into(),
        "one instance per offer per round, though the first offer could take all ten"
    );
    assert_eq!(
        acts.iter()
            .filter(|a| matches!(a, Action::Launch { .. }))
            .count(),
        3,
        "one ACCEPT per offer, with all its tasks"
    );
    assert!(c.waiting().is_empty());
}

#[test]
fn offers_that_are_full_leave_the_rest_of_a_deploy_to_the_others() {
    let mut c = Core::default();
    let now = Instant::now();
    // 64 MiB each: the small offers (1024 MiB) hold 16 instances, the big one the rest.
    let mut v = Value::Object(plain(50).raw);
    v["mem"] = json!(64);
    c.put_app(app(v), "v1".into(), "d1".into(), now);
    let acts = c.on_offers(&[offer(1), big_offer(2), offer(3)], now, 0.0, &mut ids());
    let counts = per_agent(&launched(&acts));
    assert_eq!(
        counts,
        [
            ("a1".to_string(), 16),
            ("a2".to_string(), 18),
            ("a3".to_string(), 16)
        ]
        .into()
    );
    assert!(c.waiting().is_empty());
    let e = &c.apps[&AppId::parse("/bench/plain").expect("id")];
    assert_eq!(
        e.refusals.get("InsufficientMemory"),
        Some(&2),
        "each full offer refused once and was not tried again"
    );
    assert_eq!(e.offers_processed, 3);
}

#[test]
fn a_thousand_instances_are_placed_from_one_batch_of_offers() {
    let mut c = Core::default();
    let now = Instant::now();
    c.put_app(plain(1000), "v1".into(), "d1".into(), now);
    let offers: Vec<OfferView> = (1..=10).map(big_offer).collect();
    let tasks = launched(&c.on_offers(&offers, now, 0.0, &mut ids()));
    assert_eq!(tasks.len(), 1000);
    assert!(
        per_agent(&tasks).values().all(|n| *n == 100),
        "100 per agent"
    );
    let unique: std::collections::BTreeSet<_> = tasks.iter().map(|t| &t.task_id.value).collect();
    assert_eq!(unique.len(), 1000, "every task id is new");
}

#[test]
fn updates_that_arrive_together_are_kept_like_one_after_the_other_with_one_tick() {
    let now = Instant::now();
    let run = |batched: bool| {
        let mut c = Core::default();
        c.put_app(plain(3), "v1".into(), "d1".into(), now);
        let tasks = launched(&c.on_offers(&[big_offer(1)], now, 0.0, &mut ids()));
        let updates: Vec<TaskStatus> = tasks
            .iter()
            .map(|t| TaskStatus {
                uuid: Some(format!("u-{}", t.task_id.value)),
                ..status(&t.task_id.value, TaskState::Running)
            })
            .collect();
        let acts = if batched {
            c.on_updates(&updates, now, 1.0)
        } else {
            updates
                .iter()
                .flat_map(|u| c.on_update(u, now, 1.0))
                .collect()
        };
        let acks = acts
            .iter()
            .filter(|a| matches!(a, Action::Acknowledge { .. }))
            .count();
        let running = c
            .instances
            .values()
            .filter(|i| i.state == TaskState::Running)
            .count();
        let id = AppId::parse("/bench/plain").expect("id");
        (acks, running, c.apps[&id].deployment.is_none())
    };
    assert_eq!(
        run(true),
        (3, 3, true),
        "each acknowledged, all running, deployed"
    );
    assert_eq!(run(true), run(false));
}
