//! Owner-state tests with injected time: the state's methods take `now`, so timeouts are tested
//! by passing later instants instead of waiting.

use super::MasterConfig;
use super::registry::Registry;
use super::state::State;
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
    State::new(cfg, registry, tx, http)
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
    assert!(s.agents[&id].reachable, "within the 5 s default");
    s.check_agents(t0 + Duration::from_secs(6));
    assert!(!s.agents[&id].reachable);
    // Re-registration with the same id brings it back.
    s.register_agent(agent_msg(Some(&id)), t0 + Duration::from_secs(7))
        .expect("registered");
    assert!(s.agents[&id].reachable);
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
    assert!(s.offers.is_empty());
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
    let stream = s.frameworks[&fid]
        .stream
        .as_ref()
        .map(|st| st.id.clone())
        .unwrap();
    s.stream_closed(&fid, &stream, t0);
    s.check_frameworks(t0 + Duration::from_secs(6 * 24 * 3600));
    assert!(
        s.frameworks.contains_key(&fid),
        "default failover timeout is one week"
    );
    s.check_frameworks(t0 + Duration::from_secs(7 * 24 * 3600));
    assert!(!s.frameworks.contains_key(&fid));
    assert!(s.removed_frameworks.contains(&fid));
}

#[tokio::test]
async fn terminal_state_is_kept_in_metrics_after_acknowledgement() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = state(dir.path());
    let t0 = Instant::now();
    s.register_agent(agent_msg(None), t0).expect("registered");
    let (fid, _events) = subscribe(&mut s, t0);
    s.allocate(t0);
    // A task the master refuses (no command) is recorded, reported and completed on ack.
    let offer_id = s.offers.keys().next().cloned().unwrap();
    let agent = s.offers[&offer_id].agent_id.clone();
    let call: crate::proto::scheduler::Call = serde_json::from_value(serde_json::json!({
        "type": "ACCEPT", "framework_id": {"value": fid},
        "accept": {"offer_ids": [{"value": offer_id}], "operations": [{"type": "LAUNCH", "launch": {"task_infos": [
            {"name": "x", "task_id": {"value": "x"}, "agent_id": {"value": agent}, "resources": []}]}}]}}))
    .unwrap();
    let sid = s.frameworks[&fid].stream.as_ref().map(|st| st.id.clone());
    s.call(call, sid, t0).expect("accept is valid");
    let key = (fid.clone(), "x".to_string());
    assert_eq!(s.tasks[&key].state, TaskState::Error);
    let uuid = s.tasks[&key].pending[0].uuid.clone().unwrap();
    s.acknowledge(&key, &uuid, t0);
    assert!(!s.tasks.contains_key(&key));
    assert_eq!(s.completed_by_state.get("TASK_ERROR"), Some(&1));
}
