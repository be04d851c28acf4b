//! Owner-state tests with injected time: the state's methods take `now`, so timeouts are tested
//! by passing later instants instead of waiting.

use super::MasterConfig;
use super::registry::Registry;
use super::state::State;
use crate::allocator::AgentReason;
use crate::proto::internal::RegisterAgent;
use crate::proto::scheduler::{Event, FrameworkInfo};
use crate::proto::{Resources, TaskState};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

fn state(dir: &std::path::Path) -> State {
    let cfg = MasterConfig::new(dir);
    let registry = Registry::load(dir).expect("empty registry");
    let (tx, _rx) = mpsc::channel(16);
    let http = crate::tls::Tls::default()
        .http_client()
        .expect("TLS config")
        .build()
        .expect("client");
    State::new(cfg, registry, None, tx, http)
}

fn agent_msg(id: Option<&str>) -> RegisterAgent {
    RegisterAgent {
        agent_id: id.map(crate::proto::Id::new),
        hostname: "h".into(),
        url: "http://127.0.0.1:9".into(),
        resources: Resources::new(2.0, 1024.0, 0.0).to_mesos(None, None),
        attributes: vec![],
        public: false,
        tasks: vec![],
        version: "test".into(),
        callback_token: Some("agent-secret".into()),
        task_user: None,
    }
}

fn subscribe(s: &mut State, now: Instant) -> (String, mpsc::Receiver<Event>) {
    let info = FrameworkInfo {
        name: "f".into(),
        ..Default::default()
    };
    let sub = s
        .subscribe(serde_json::json!({"name": "f"}), info, None, None, now)
        .expect("subscribe");
    (sub.framework_id, sub.events)
}

/// A master with one agent and one subscribed framework holding the agent's whole offer.
struct Offered {
    s: State,
    t0: Instant,
    fid: String,
    events: mpsc::Receiver<Event>,
    offer_id: String,
    agent: String,
}

fn offered(dir: &std::path::Path) -> Offered {
    let mut s = state(dir);
    let t0 = Instant::now();
    s.register_agent(agent_msg(None), t0).expect("registered");
    let (fid, events) = subscribe(&mut s, t0);
    s.allocate(t0);
    let (offer_id, agent) = only_offer(&s, &fid);
    Offered {
        s,
        t0,
        fid,
        events,
        offer_id,
        agent,
    }
}

/// The JSON of a task `id` on `agent` with `resources` (Mesos resource list) and, if given, a
/// shell command (without one the master refuses it).
fn task_json(
    id: &str,
    agent: &str,
    command: Option<&str>,
    resources: serde_json::Value,
) -> serde_json::Value {
    let mut t = serde_json::json!({"name": id, "task_id": {"value": id}, "agent_id": {"value": agent},
        "resources": resources});
    if let Some(c) = command {
        t["command"] = serde_json::json!({"value": c, "shell": true});
    }
    t
}

/// ACCEPTs `offer_id` for `fid` with one LAUNCH of `tasks`, filtering the rest `refuse_seconds`
/// (the master's default when `None`), on the framework's current stream.
fn accept(
    s: &mut State,
    fid: &str,
    offer_id: &str,
    tasks: Vec<serde_json::Value>,
    refuse_seconds: Option<f64>,
    now: Instant,
) {
    let mut accept = serde_json::json!({"offer_ids": [{"value": offer_id}],
        "operations": [{"type": "LAUNCH", "launch": {"task_infos": tasks}}]});
    if let Some(r) = refuse_seconds {
        accept["filters"] = serde_json::json!({"refuse_seconds": r});
    }
    let call: crate::proto::scheduler::Call = serde_json::from_value(
        serde_json::json!({"type": "ACCEPT", "framework_id": {"value": fid}, "accept": accept}),
    )
    .expect("an ACCEPT call");
    let sid = s.conns.current(fid).map(str::to_string);
    s.call(call, sid, now).expect("accept is valid");
}

#[tokio::test]
async fn silent_agent_becomes_unreachable_only_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = state(dir.path());
    let t0 = Instant::now();
    let id = s
        .register_agent(agent_msg(None), t0)
        .expect("registered")
        .agent_id
        .value;
    s.check_agents(t0 + Duration::from_secs(4));
    assert!(
        s.tables.agents.get(&id).unwrap().reachable,
        "within the 5 s default"
    );
    s.check_agents(t0 + Duration::from_secs(6));
    assert!(!s.tables.agents.get(&id).unwrap().reachable);
    // Re-registration with the same id brings it back.
    s.register_agent(agent_msg(Some(&id)), t0 + Duration::from_secs(7))
        .expect("registered");
    assert!(s.tables.agents.get(&id).unwrap().reachable);
}

#[tokio::test]
async fn unanswered_offer_is_rescinded_at_the_offer_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = state(dir.path());
    let t0 = Instant::now();
    s.register_agent(agent_msg(None), t0).expect("registered");
    let (_fid, mut events) = subscribe(&mut s, t0);
    s.allocate(t0);
    assert_eq!(s.offers.len(), 1);
    s.expire_offers(t0 + Duration::from_secs(59));
    assert_eq!(s.offers.len(), 1);
    s.expire_offers(t0 + Duration::from_secs(60));
    assert_eq!(s.offers.len(), 0);
    let mut kinds = Vec::new();
    while let Ok(e) = events.try_recv() {
        kinds.push(e.to_json()["type"].as_str().unwrap_or_default().to_string());
    }
    assert_eq!(kinds, ["SUBSCRIBED", "OFFERS", "RESCIND"]);
}

#[tokio::test]
async fn disconnected_framework_survives_until_its_failover_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = state(dir.path());
    let t0 = Instant::now();
    let (fid, _events) = subscribe(&mut s, t0);
    let stream = s.conns.current(&fid).map(str::to_string).unwrap();
    s.stream_closed(&fid, &stream, t0);
    s.check_frameworks(t0 + Duration::from_secs(6 * 24 * 3600));
    assert!(
        s.tables.frameworks.contains(&fid),
        "default failover timeout is one week"
    );
    s.check_frameworks(t0 + Duration::from_secs(7 * 24 * 3600));
    assert!(!s.tables.frameworks.contains(&fid));
    assert!(s.tables.frameworks.is_removed(&fid));
}

#[tokio::test]
async fn terminal_state_is_kept_in_metrics_after_acknowledgement() {
    let dir = tempfile::tempdir().unwrap();
    let Offered {
        mut s,
        t0,
        fid,
        offer_id,
        agent,
        ..
    } = offered(dir.path());
    // A task the master refuses (no command) is recorded, reported and completed on ack.
    let x = task_json("x", &agent, None, serde_json::json!([]));
    accept(&mut s, &fid, &offer_id, vec![x], None, t0);
    let key = (fid.clone(), "x".to_string());
    assert_eq!(s.tables.tasks.get(&key).unwrap().state, TaskState::Error);
    let uuid = s.tables.tasks.get(&key).unwrap().pending[0]
        .uuid
        .clone()
        .unwrap();
    s.acknowledge(&key, &uuid, t0);
    assert!(!s.tables.tasks.contains(&key));
    assert_eq!(
        s.tables.tasks.completed_by_state().get("TASK_ERROR"),
        Some(&1)
    );
}

#[tokio::test]
async fn a_framework_subscribing_after_a_teardown_never_gets_a_live_or_removed_frameworks_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = state(dir.path());
    let t0 = Instant::now();
    let (a, _ea) = subscribe(&mut s, t0);
    let (b, _eb) = subscribe(&mut s, t0);
    s.teardown(&a, t0);
    // With ids counted from the number of frameworks, this one got b's id.
    let (c, _ec) = subscribe(&mut s, t0);
    assert_ne!(c, a, "a removed framework's id is never reissued");
    assert_ne!(c, b, "a live framework's id is never reissued");
    assert!(s.tables.frameworks.contains(&b) && s.tables.frameworks.contains(&c));
    for id in [&a, &b, &c] {
        let (uuid, suffix) = id.rsplit_once('-').expect("<uuid>-0000");
        assert_eq!(suffix, "0000", "{id}");
        assert!(
            uuid::Uuid::parse_str(uuid).is_ok(),
            "{id} starts with a uuid"
        );
    }
}

#[tokio::test]
async fn an_agent_registering_after_one_is_marked_gone_never_gets_a_known_agents_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = state(dir.path());
    let t0 = Instant::now();
    let first = s
        .register_agent(agent_msg(None), t0)
        .unwrap()
        .agent_id
        .value;
    let second = s
        .register_agent(agent_msg(None), t0)
        .unwrap()
        .agent_id
        .value;
    // What a drain with mark_gone does once the agent is drained.
    s.apply(
        super::Change::AgentRemoved {
            agent_id: first.clone(),
        },
        t0,
    );
    let third = s
        .register_agent(agent_msg(None), t0)
        .unwrap()
        .agent_id
        .value;
    assert_ne!(third, first);
    assert_ne!(
        third, second,
        "the counter scheme handed out the live agent's id"
    );
    assert_eq!(s.tables.agents.len(), 2);
    assert!(third.ends_with("-S0"), "{third}");
}

#[tokio::test]
async fn subscribing_with_a_framework_id_the_master_never_issued_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = state(dir.path());
    let t0 = Instant::now();
    let info = FrameworkInfo::default();
    let r = s.subscribe(
        serde_json::json!({}),
        info,
        Some("made-up-0000".into()),
        None,
        t0,
    );
    match r {
        Err(super::CallError::Forbidden(m)) => assert!(m.contains("not known"), "{m}"),
        other => panic!("expected 403, got {other:?}"),
    }
    assert_eq!(s.tables.frameworks.len(), 0);
}

#[tokio::test]
async fn a_framework_too_far_behind_has_its_stream_ended_with_an_error_not_events_dropped_silently()
{
    let dir = tempfile::tempdir().unwrap();
    let mut s = state(dir.path());
    let t0 = Instant::now();
    let sub = s
        .subscribe(
            serde_json::json!({"name": "slow"}),
            FrameworkInfo::default(),
            None,
            None,
            t0,
        )
        .expect("subscribe");
    let fid = sub.framework_id.clone();
    let ids: Vec<_> = (0..super::STREAM_BUFFER)
        .map(|i| serde_json::json!({"task_id": {"value": format!("t{i}")}}))
        .collect();
    let call: crate::proto::scheduler::Call = serde_json::from_value(serde_json::json!({
        "type": "RECONCILE", "framework_id": {"value": fid}, "reconcile": {"tasks": ids}}))
    .unwrap();
    s.call(call, Some(sub.stream_id.clone()), t0)
        .expect("reconcile");
    // SUBSCRIBED plus STREAM_BUFFER answers do not fit: the last one ends the stream.
    assert!(
        sub.overflow.is_cancelled(),
        "the writer is told to send ERROR and stop"
    );
    assert_eq!(sub.events.len(), super::STREAM_BUFFER);
}

fn limited(dir: &std::path::Path, tweak: impl FnOnce(&mut MasterConfig)) -> State {
    let mut cfg = MasterConfig::new(dir);
    tweak(&mut cfg);
    let registry = Registry::load(dir).expect("empty registry");
    let (tx, _rx) = mpsc::channel(16);
    let http = crate::tls::Tls::default()
        .http_client()
        .expect("TLS config")
        .build()
        .expect("client");
    State::new(cfg, registry, None, tx, http)
}

fn subscribe_as(
    s: &mut State,
    principal: &str,
    info: FrameworkInfo,
    now: Instant,
) -> Result<super::Subscription, super::CallError> {
    s.subscribe(
        serde_json::json!({}),
        info,
        None,
        Some(principal.into()),
        now,
    )
}

#[tokio::test]
async fn a_principal_cannot_register_more_frameworks_than_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = limited(dir.path(), |c| c.max_frameworks_per_principal = 2);
    let t0 = Instant::now();
    let a = subscribe_as(&mut s, "p", FrameworkInfo::default(), t0).unwrap();
    let _b = subscribe_as(&mut s, "p", FrameworkInfo::default(), t0).unwrap();
    match subscribe_as(&mut s, "p", FrameworkInfo::default(), t0) {
        Err(super::CallError::Forbidden(m)) => {
            assert!(m.contains("max_frameworks_per_principal is 2"), "{m}")
        }
        other => panic!("expected 403, got {other:?}"),
    }
    // Others are not affected, and failing over an existing framework is not a new one.
    subscribe_as(&mut s, "q", FrameworkInfo::default(), t0).expect("another principal");
    s.subscribe(
        serde_json::json!({}),
        FrameworkInfo::default(),
        Some(a.framework_id.clone()),
        Some("p".into()),
        t0,
    )
    .expect("failover");
    s.teardown(&a.framework_id, t0);
    subscribe_as(&mut s, "p", FrameworkInfo::default(), t0).expect("room again after a teardown");
}

#[tokio::test]
async fn a_framework_cannot_ask_for_a_failover_timeout_beyond_the_maximum() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = limited(dir.path(), |c| {
        c.max_failover_timeout = Duration::from_secs(60)
    });
    let t0 = Instant::now();
    let info = FrameworkInfo {
        failover_timeout: Some(1e9),
        ..Default::default()
    };
    let sub = subscribe_as(&mut s, "p", info, t0).unwrap();
    let fid = sub.framework_id.clone();
    assert_eq!(
        s.tables.frameworks.get(&fid).unwrap().failover_timeout,
        Duration::from_secs(60)
    );
    s.stream_closed(&fid, &sub.stream_id, t0);
    s.check_frameworks(t0 + Duration::from_secs(61));
    assert!(
        !s.tables.frameworks.contains(&fid),
        "torn down at the maximum"
    );
}

#[tokio::test]
async fn completed_tasks_and_frameworks_are_kept_only_up_to_their_limits() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = limited(dir.path(), |c| {
        c.max_completed_tasks_per_framework = 3;
        c.max_completed_frameworks = 2;
    });
    let t0 = Instant::now();
    s.register_agent(agent_msg(None), t0).expect("registered");
    let mut fids = Vec::new();
    for _ in 0..3 {
        let sub = subscribe_as(&mut s, "p", FrameworkInfo::default(), t0).unwrap();
        let fid = sub.framework_id.clone();
        // Tasks refused by the master complete once acknowledged.
        for i in 0..5 {
            s.allocate(t0);
            let Some(offer_id) = s
                .offers
                .iter()
                .find(|(_, o)| o.framework_id == fid)
                .map(|(k, _)| k.clone())
            else {
                panic!("an offer for {fid}");
            };
            let agent = s.offers.get(&offer_id).unwrap().agent_id.clone();
            let x = task_json(&format!("x{i}"), &agent, None, serde_json::json!([]));
            accept(&mut s, &fid, &offer_id, vec![x], Some(0.0), t0);
            let key = (fid.clone(), format!("x{i}"));
            let uuid = s.tables.tasks.get(&key).unwrap().pending[0]
                .uuid
                .clone()
                .unwrap();
            s.acknowledge(&key, &uuid, t0);
        }
        assert_eq!(
            s.tables.tasks.completed_of(&fid).count(),
            3,
            "the newest 3 of 5"
        );
        assert_eq!(
            s.tables
                .tasks
                .completed_of(&fid)
                .last()
                .map(|t| t.info.task_id.value.clone()),
            Some("x4".to_string())
        );
        s.teardown(&fid, t0);
        fids.push(fid);
    }
    assert_eq!(s.tables.frameworks.removed().count(), 2);
    assert!(
        !s.tables.frameworks.is_removed(&fids[0]),
        "the oldest is forgotten"
    );
    assert_eq!(
        s.tables.tasks.completed_of(&fids[0]).count(),
        0,
        "with its tasks"
    );
    assert_eq!(s.tables.tasks.completed_len(), 6);
}

#[tokio::test]
async fn a_drained_agent_is_reported_as_not_offered_because_it_is_draining() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = state(dir.path());
    let t0 = Instant::now();
    let id = s
        .register_agent(agent_msg(None), t0)
        .expect("registered")
        .agent_id
        .value;
    let (_fid, _events) = subscribe(&mut s, t0);
    s.agent_call(
        super::AgentCall::Drain {
            agent_id: id.clone(),
            config: super::DrainConfig::default(),
        },
        t0,
    )
    .expect("drain");
    s.allocate(t0);
    assert_eq!(s.offers.len(), 0);
    let reasons: Vec<_> = s
        .stats
        .last
        .unoffered
        .iter()
        .map(|u| (u.agent.clone(), u.reason))
        .collect();
    assert_eq!(reasons, [(id.clone(), AgentReason::Draining)]);
    // The operator sees it in /metrics ...
    let m = s.metrics_snapshot();
    let draining = m.agents_not_offered.iter().find(|(r, _)| *r == "draining");
    assert_eq!(draining, Some(&("draining", 1)));
    let text = crate::api::metrics::render(&m, 0);
    assert!(
        text.contains("dccore_allocation_agents_not_offered_total{reason=\"draining\"} 1"),
        "{text}"
    );
    // ... and in GET_ALLOCATION.
    let v = s
        .snapshot(super::OperatorQuery::Allocation, super::Viewer::Operator)
        .to_json();
    let a = &v["get_allocation"];
    assert_eq!(a["unoffered_agents"][0]["agent_id"]["value"], id.as_str());
    assert_eq!(a["unoffered_agents"][0]["reason"], "DRAINING");
    assert_eq!(a["agents_not_offered"]["DRAINING"], 1);
}

#[tokio::test]
async fn a_subscription_is_answered_only_once_the_new_framework_is_in_the_registry_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = MasterConfig::new(dir.path());
    let registry = Registry::load(dir.path()).expect("empty registry");
    let writer = super::registry::Writer::start(Registry::path(dir.path()));
    let (tx, _rx) = mpsc::channel(16);
    let http = crate::tls::Tls::default()
        .http_client()
        .expect("TLS config")
        .build()
        .expect("client");
    let mut s = State::new(cfg, registry, Some(writer), tx, http);
    let (reply, answer) = tokio::sync::oneshot::channel();
    s.handle(
        super::MasterCommand::Subscribe {
            info_raw: serde_json::json!({"name": "f"}),
            info: FrameworkInfo::default(),
            framework_id: None,
            principal: None,
            reply,
        },
        Instant::now(),
    );
    let sub = tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .expect("answered after the write")
        .expect("a reply")
        .expect("subscribed");
    let on_disk = Registry::load(dir.path()).expect("registry written");
    assert!(
        on_disk.frameworks.iter().any(|f| f.id == sub.framework_id),
        "the reply came before the registry had the framework"
    );
}

#[tokio::test]
async fn a_view_taken_before_a_change_still_shows_the_state_it_was_taken_in() {
    let dir = tempfile::tempdir().unwrap();
    let Offered {
        mut s,
        t0,
        fid,
        offer_id,
        agent,
        ..
    } = offered(dir.path());
    let cpus = serde_json::json!([{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.0}}]);
    let x = task_json("x", &agent, Some("true"), cpus);
    accept(&mut s, &fid, &offer_id, vec![x], None, t0);
    let before = s.snapshot(super::OperatorQuery::Tasks, super::Viewer::Operator);
    let expected = before.to_json();
    assert_eq!(expected["get_tasks"]["tasks"][0]["state"], "TASK_STAGING");
    // The agent goes silent: the task becomes unreachable in the tables...
    s.check_agents(t0 + Duration::from_secs(6));
    let after = s
        .snapshot(super::OperatorQuery::Tasks, super::Viewer::Operator)
        .to_json();
    assert_eq!(
        after["get_tasks"]["unreachable_tasks"][0]["state"],
        "TASK_UNREACHABLE"
    );
    // ... and the earlier snapshot still shows it as it was when taken.
    assert_eq!(before.to_json(), expected);
}

#[test]
fn limits_and_authenticate_frameworks_are_read_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m.json");
    std::fs::write(
        &f,
        r#"{"max_frameworks_per_principal": 3, "max_completed_frameworks": 4,
            "max_completed_tasks_per_framework": 5, "max_failover_timeout_secs": 60,
            "authenticate_frameworks": false, "services_deployment_timeout_secs": 7}"#,
    )
    .unwrap();
    let d = MasterConfig::new(dir.path());
    assert!(d.authenticate_frameworks, "on by default");
    assert_eq!(d.services_deployment_timeout, Duration::from_secs(300));
    assert_eq!(
        (
            d.max_completed_frameworks,
            d.max_completed_tasks_per_framework
        ),
        (50, 1000),
        "Mesos' defaults"
    );
    let c = d.apply_file(&f).expect("valid config");
    assert_eq!(c.max_frameworks_per_principal, 3);
    assert_eq!(c.max_completed_frameworks, 4);
    assert_eq!(c.max_completed_tasks_per_framework, 5);
    assert_eq!(c.max_failover_timeout, Duration::from_secs(60));
    assert!(!c.authenticate_frameworks);
    assert_eq!(c.services_deployment_timeout, Duration::from_secs(7));
}

#[test]
fn the_replicated_logs_snapshot_policy_is_read_from_the_config_file_and_zero_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m.json");
    let d = MasterConfig::new(dir.path());
    assert_eq!(
        (d.replica_snapshot_entries, d.replica_keep_entries),
        (10_000, 1_000)
    );
    std::fs::write(
        &f,
        r#"{"replica_snapshot_entries": 500, "replica_keep_entries": 0}"#,
    )
    .unwrap();
    let c = d.clone().apply_file(&f).expect("valid config");
    assert_eq!(
        (c.replica_snapshot_entries, c.replica_keep_entries),
        (500, 0)
    );
    std::fs::write(&f, r#"{"replica_snapshot_entries": 0}"#).unwrap();
    let e = d
        .apply_file(&f)
        .expect_err("no snapshot policy of 0 entries");
    assert!(
        e.to_string().contains("replica_snapshot_entries")
            || format!("{e:?}").contains("replica_snapshot_entries"),
        "{e:?}"
    );
}

/// The `untrusted_frameworks` flake: a framework accepted part of an agent with
/// `refuse_seconds: 0`, the rest was offered to it again and it sat on that offer, so a framework
/// subscribing later saw nothing free until the offer timeout (60 s), whatever DRF said.
#[tokio::test]
async fn a_framework_sitting_on_an_offer_does_not_keep_a_later_framework_with_a_lower_share_waiting()
 {
    let dir = tempfile::tempdir().unwrap();
    let Offered {
        mut s,
        t0,
        fid: first,
        events: mut first_events,
        offer_id,
        agent,
    } = offered(dir.path());
    let small = serde_json::json!([{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
        {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}]);
    let t = task_json("t", &agent, Some("sleep 1000"), small);
    let t1 = t0 + Duration::from_millis(100);
    accept(&mut s, &first, &offer_id, vec![t], Some(0.0), t1);
    s.allocate(t1);
    let (kept, _) = only_offer(&s, &first);
    // The first framework never answers; the second subscribes with nothing used (share 0).
    let t2 = t1 + Duration::from_secs(1);
    let (second, _second_events) = subscribe(&mut s, t2);
    s.allocate(t2);
    s.allocate(t2 + Duration::from_millis(200));
    let (_, on) = only_offer(&s, &second);
    assert_eq!(
        on, agent,
        "the agent's free part is offered to the lower share"
    );
    let kinds: Vec<String> = std::iter::from_fn(|| first_events.try_recv().ok())
        .map(|e| e.to_json())
        .filter(|e| e["type"] == "RESCIND")
        .map(|e| {
            e["rescind"]["offer_id"]["value"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(
        kinds,
        [kept],
        "the first framework is told its offer is gone"
    );
    // And it stays there: the first framework (0.1 cpus used) does not take it back.
    s.allocate(t2 + Duration::from_millis(400));
    only_offer(&s, &second);
}

/// The one outstanding offer, which must be `framework`'s: (offer id, agent id).
fn only_offer(s: &State, framework: &str) -> (String, String) {
    let all: Vec<_> = s.offers.iter().collect();
    assert_eq!(all.len(), 1, "one outstanding offer");
    let (id, o) = all[0];
    assert_eq!(o.framework_id, framework, "the offer's framework");
    (id.clone(), o.agent_id.clone())
}

/// Acknowledges every pending update of `key`, oldest first (the framework's ACKNOWLEDGEs).
fn acknowledge_all(s: &mut State, key: &super::tables::TaskKey, now: Instant) {
    while let Some(uuid) = s
        .tables
        .tasks
        .get(key)
        .and_then(|t| t.pending.front())
        .and_then(|st| st.uuid.clone())
    {
        s.acknowledge(key, &uuid, now);
    }
}

/// Regression (`tests/ha_faults.rs`): a task killed while its agent was unreachable ends
/// `TASK_GONE`; an agent that comes back still running it (its kill did not get through yet)
/// re-registers, and again later (a new leader, its own restart). The framework's final word
/// stands: the task is killed on the agent, never adopted again as if the master did not know
/// it, and no update brings it back to life.
#[tokio::test]
async fn a_task_killed_while_its_agent_was_away_is_not_brought_back_by_its_agent_re_registering() {
    use crate::proto::internal::ReportedTask;
    let dir = tempfile::tempdir().unwrap();
    let Offered {
        mut s,
        t0,
        fid,
        offer_id,
        agent,
        ..
    } = offered(dir.path());
    let res = serde_json::json!([
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
        {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}]);
    let t = task_json("t", &agent, Some("sleep 600"), res);
    accept(&mut s, &fid, &offer_id, vec![t], None, t0);
    let key = (fid.clone(), "t".to_string());
    let info = s.tables.tasks.get(&key).expect("launched").info.clone();
    let mut msg = agent_msg(Some(&agent));
    msg.tasks = vec![ReportedTask {
        framework_id: crate::proto::Id::new(&fid),
        task: info,
        state: TaskState::Running,
    }];
    s.register_agent(msg.clone(), t0).expect("registered");
    assert_eq!(s.tables.tasks.get(&key).unwrap().state, TaskState::Running);

    // The agent goes silent; the framework kills the task meanwhile: TASK_GONE.
    let away = t0 + Duration::from_secs(6);
    s.check_agents(away);
    let kill: crate::proto::scheduler::Call = serde_json::from_value(serde_json::json!({
        "type": "KILL", "framework_id": {"value": fid}, "kill": {"task_id": {"value": "t"}}}))
    .unwrap();
    let sid = s.conns.current(&fid).map(str::to_string);
    s.call(kill, sid, away).expect("kill is valid");
    assert_eq!(s.tables.tasks.get(&key).unwrap().state, TaskState::Gone);

    // Back before the GONE is acknowledged: killed on the agent, still GONE at the master.
    let back = away + Duration::from_secs(1);
    let r = s.register_agent(msg.clone(), back).expect("registered");
    assert_eq!(r.kill_tasks.len(), 1, "the doomed task is killed");
    let r = s.register_agent(msg.clone(), back).expect("registered");
    assert_eq!(r.kill_tasks.len(), 1, "killed again, not revived");
    assert_eq!(s.tables.tasks.get(&key).unwrap().state, TaskState::Gone);

    // Once acknowledged (completed), a re-registration still running it does not adopt it.
    acknowledge_all(&mut s, &key, back);
    assert!(!s.tables.tasks.contains(&key), "completed");
    let r = s.register_agent(msg.clone(), back).expect("registered");
    assert_eq!(r.kill_tasks.len(), 1, "killed, not adopted");
    assert!(!s.tables.tasks.contains(&key), "not adopted again");
    // Reported as ended by the agent: nothing to kill, nothing adopted.
    msg.tasks[0].state = TaskState::Killed;
    let r = s.register_agent(msg, back).expect("registered");
    assert!(r.kill_tasks.is_empty());
    assert!(!s.tables.tasks.contains(&key));
}

/// Regression (`tests/ha.rs`): a KILL for a task on an agent that has not registered with this
/// master yet (a new leader, or a restarted single master, waits one agent timeout for it)
/// cannot be sent (no credential for that agent yet); it is ordered when the agent registers.
#[tokio::test]
async fn a_kill_before_the_tasks_agent_registered_with_this_master_is_ordered_when_it_does() {
    use crate::proto::internal::ReportedTask;
    let dir = tempfile::tempdir().unwrap();
    let Offered {
        mut s,
        t0,
        fid,
        offer_id,
        agent,
        ..
    } = offered(dir.path());
    let res = serde_json::json!([
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
        {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}]);
    let t = task_json("t", &agent, Some("sleep 600"), res);
    accept(&mut s, &fid, &offer_id, vec![t], None, t0);
    let key = (fid.clone(), "t".to_string());
    let info = s.tables.tasks.get(&key).expect("launched").info.clone();
    // As a new leader sees it: the agent is in the tables, but has not registered here.
    s.local.registered_here.remove(&agent);
    s.local.agent_call_tokens.clear();
    let kill: crate::proto::scheduler::Call = serde_json::from_value(serde_json::json!({
        "type": "KILL", "framework_id": {"value": fid}, "kill": {"task_id": {"value": "t"}}}))
    .unwrap();
    let sid = s.conns.current(&fid).map(str::to_string);
    s.call(kill, sid, t0).expect("kill is valid");
    assert!(s.tables.tasks.is_doomed(&key), "remembered");
    assert_ne!(
        s.tables.tasks.get(&key).unwrap().state,
        TaskState::Gone,
        "the agent is not away: the framework hears the end from it"
    );
    let mut msg = agent_msg(Some(&agent));
    msg.tasks = vec![ReportedTask {
        framework_id: crate::proto::Id::new(&fid),
        task: info,
        state: TaskState::Running,
    }];
    let r = s.register_agent(msg, t0).expect("registered");
    assert_eq!(r.kill_tasks.len(), 1, "the kill is ordered at registration");
    assert!(!s.tables.tasks.is_doomed(&key));
}
