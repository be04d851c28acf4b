//! The tables' invariants and `apply`: every test drives the tables through changes only.

use super::*;
use crate::master::drain::{DrainConfig, DrainState};
use crate::proto::{Id, Resources, TaskInfo, TaskState, TaskStatus};

fn agent(id: &str) -> AgentInfo {
    AgentInfo {
        id: id.into(),
        hostname: format!("{id}.example"),
        url: format!("http://127.0.0.1:9/{id}"),
        total: Resources::new(4.0, 4096.0, 0.0),
        attributes: vec![],
        public: false,
        version: "test".into(),
        task_user: None,
    }
}

fn framework(id: &str) -> FrameworkRec {
    FrameworkRec {
        id: id.into(),
        info_raw: serde_json::json!({"name": id, "id": {"value": id}}),
        info: Default::default(),
        principal: Some("p".into()),
        failover_timeout: std::time::Duration::from_secs(60),
        registered_time: 100.0,
    }
}

fn task(fid: &str, tid: &str, agent_id: &str) -> TaskRec {
    let info: TaskInfo = serde_json::from_value(serde_json::json!({
        "name": tid, "task_id": {"value": tid}, "agent_id": {"value": agent_id}}))
    .expect("a task");
    TaskRec::staging(fid, agent_id, info, Resources::new(1.0, 128.0, 0.0))
}

/// A status update with a fixed uuid and time, as the owner loop puts it in a change.
fn status(fid: &str, tid: &str, state: TaskState, uuid: Option<&str>) -> Change {
    Change::TaskStatusUpdated {
        framework_id: fid.into(),
        status: TaskStatus {
            task_id: Id::new(tid),
            state,
            message: None,
            source: Some("SOURCE_AGENT".into()),
            reason: None,
            agent_id: None,
            timestamp: 1_000.0,
            uuid: uuid.map(str::to_string),
            healthy: None,
        },
    }
}

fn ack(fid: &str, tid: &str, uuid: &str) -> Change {
    Change::TaskStatusAcknowledged {
        framework_id: fid.into(),
        task_id: tid.into(),
        uuid: uuid.into(),
    }
}

fn fresh() -> Tables {
    Tables::new(2, 10)
}

/// A history touching every kind of change.
fn history() -> Vec<Change> {
    vec![
        Change::AgentRegistered {
            agent: agent("a1"),
            registered_time: 10.0,
        },
        Change::AgentRegistered {
            agent: agent("a2"),
            registered_time: 11.0,
        },
        Change::FrameworkAdded {
            framework: framework("f1"),
        },
        Change::TaskAdded {
            task: task("f1", "t1", "a1"),
            hold: true,
        },
        Change::TaskAdded {
            task: task("f1", "t2", "a2"),
            hold: true,
        },
        status("f1", "t1", TaskState::Running, Some("u1")),
        ack("f1", "t1", "u1"),
        status("f1", "t1", TaskState::Finished, Some("u2")),
        Change::AgentUnreachable {
            agent_id: "a2".into(),
        },
        status("f1", "t2", TaskState::Unreachable, None),
        Change::TaskDoomed {
            framework_id: "f1".into(),
            task_id: "t2".into(),
        },
        Change::AgentRegistered {
            agent: agent("a2"),
            registered_time: 20.0,
        },
        Change::TaskKillOrdered {
            framework_id: "f1".into(),
            task_id: "t2".into(),
        },
        Change::TaskReported {
            framework_id: "f1".into(),
            task_id: "t2".into(),
            state: TaskState::Running,
        },
        Change::AgentDeactivated {
            agent_id: "a1".into(),
        },
        Change::AgentReactivated {
            agent_id: "a1".into(),
        },
        Change::AgentDraining {
            agent_id: "a1".into(),
            config: DrainConfig {
                max_grace_period: None,
                mark_gone: true,
            },
        },
        Change::AgentDrained {
            agent_id: "a1".into(),
        },
        Change::AgentRemoved {
            agent_id: "a1".into(),
        },
        Change::FrameworkFailedOver {
            framework: FrameworkRec {
                registered_time: 200.0,
                ..framework("f1")
            },
        },
        Change::FrameworkAdded {
            framework: framework("f2"),
        },
        Change::FrameworkRemoved {
            framework_id: "f1".into(),
        },
    ]
}

#[test]
fn replaying_the_same_changes_into_fresh_tables_gives_equal_tables() {
    let changes = history();
    let mut leader = fresh();
    let leader_out: Vec<Applied> = changes.iter().map(|c| apply(&mut leader, c)).collect();
    // What a follower receives: the changes as bytes, in log order.
    let log = serde_json::to_string(&changes).expect("changes serialize");
    let received: Vec<Change> = serde_json::from_str(&log).expect("changes deserialize");
    assert_eq!(received, changes);
    let mut follower = fresh();
    let follower_out: Vec<Applied> = received.iter().map(|c| apply(&mut follower, c)).collect();
    assert_eq!(follower, leader);
    assert_eq!(follower_out, leader_out, "the same outcome at every step");
    // And the outcome is a real state, not two empty ones.
    assert!(leader.agents.is_gone("a1"));
    assert!(leader.frameworks.is_removed("f1"));
    assert_eq!(leader.tasks.completed_of("f1").count(), 2);
}

#[test]
fn a_change_is_tagged_by_type_on_the_wire() {
    let c = Change::AgentUnreachable {
        agent_id: "a1".into(),
    };
    assert_eq!(
        serde_json::to_value(&c).unwrap(),
        serde_json::json!({"type": "AGENT_UNREACHABLE", "agent_id": "a1"})
    );
}

#[test]
fn the_agent_index_holds_exactly_the_live_tasks_of_each_agent() {
    let mut t = fresh();
    for c in &history()[..5] {
        apply(&mut t, c);
    }
    assert_eq!(
        t.tasks.on_agent("a1"),
        [("f1".to_string(), "t1".to_string())]
    );
    apply(&mut t, &status("f1", "t1", TaskState::Failed, Some("u1")));
    assert_eq!(
        t.tasks.on_agent("a1").len(),
        1,
        "still live until acknowledged"
    );
    assert_eq!(t.tasks.unacked_len(), 1);
    let out = apply(&mut t, &ack("f1", "t1", "u1"));
    assert_eq!(out.completed, [("f1".to_string(), "t1".to_string())]);
    assert!(t.tasks.on_agent("a1").is_empty());
    assert_eq!(t.tasks.unacked_len(), 0);
    assert_eq!(t.tasks.completed_by_state().get("TASK_FAILED"), Some(&1));
    assert_eq!(t.tasks.on_agent("a2").len(), 1, "other agents untouched");
}

#[test]
fn a_task_holds_its_resources_once_until_it_is_terminal_or_unreachable() {
    let mut t = fresh();
    apply(&mut t, &history()[0]);
    apply(&mut t, &history()[2]);
    let added = apply(
        &mut t,
        &Change::TaskAdded {
            task: task("f1", "t1", "a1"),
            hold: true,
        },
    );
    assert_eq!(added.held.len(), 1);
    let again = apply(
        &mut t,
        &Change::TaskReported {
            framework_id: "f1".into(),
            task_id: "t1".into(),
            state: TaskState::Running,
        },
    );
    assert!(again.held.is_empty(), "held already: not counted twice");
    let lost = apply(&mut t, &status("f1", "t1", TaskState::Unreachable, None));
    assert_eq!(lost.released.len(), 1);
    assert!(lost.deliver_once.is_some(), "no uuid: delivered once");
    // The agent comes back: re-registration releases nothing more, the report holds again.
    let back = apply(&mut t, &history()[0]);
    assert!(back.released.is_empty());
    let reported = apply(
        &mut t,
        &Change::TaskReported {
            framework_id: "f1".into(),
            task_id: "t1".into(),
            state: TaskState::Running,
        },
    );
    assert_eq!(reported.held[0].resources, Resources::new(1.0, 128.0, 0.0));
    let done = apply(&mut t, &status("f1", "t1", TaskState::Finished, Some("u9")));
    assert_eq!(done.released.len(), 1);
    assert_eq!(
        done.deliver_head,
        Some(("f1".to_string(), "t1".to_string()))
    );
}

#[test]
fn status_updates_are_delivered_one_at_a_time_in_order() {
    let mut t = fresh();
    for c in &history()[..4] {
        apply(&mut t, c);
    }
    let first = apply(&mut t, &status("f1", "t1", TaskState::Running, Some("u1")));
    assert!(first.deliver_head.is_some());
    let second = apply(&mut t, &status("f1", "t1", TaskState::Finished, Some("u2")));
    assert!(second.deliver_head.is_none(), "waits behind u1");
    let wrong = apply(&mut t, &ack("f1", "t1", "u2"));
    assert!(!wrong.effective, "only the head can be acknowledged");
    let next = apply(&mut t, &ack("f1", "t1", "u1"));
    assert!(next.deliver_head.is_some(), "u2 goes out now");
    assert!(next.completed.is_empty());
    assert!(apply(&mut t, &ack("f1", "t1", "u2")).completed.len() == 1);
}

#[test]
fn re_registration_keeps_the_operators_drain_and_a_gone_agent_never_returns() {
    let mut t = fresh();
    apply(&mut t, &history()[0]);
    apply(
        &mut t,
        &Change::AgentDraining {
            agent_id: "a1".into(),
            config: DrainConfig::default(),
        },
    );
    let again = apply(&mut t, &history()[0]);
    assert!(!again.registry, "nothing the registry stores changed");
    let a = t.agents.get("a1").unwrap();
    assert!(a.deactivated);
    assert_eq!(
        a.drain.as_ref().map(|d| d.state),
        Some(DrainState::Draining)
    );
    assert!(
        apply(
            &mut t,
            &Change::AgentDrained {
                agent_id: "a1".into()
            }
        )
        .effective
    );
    assert!(
        !apply(
            &mut t,
            &Change::AgentDrained {
                agent_id: "a1".into()
            }
        )
        .effective,
        "drained once"
    );
    apply(
        &mut t,
        &Change::AgentRemoved {
            agent_id: "a1".into(),
        },
    );
    let refused = apply(&mut t, &history()[0]);
    assert!(!refused.effective);
    assert!(t.agents.get("a1").is_none());
}

#[test]
fn a_removed_framework_completes_its_tasks_and_only_the_newest_removed_ids_are_kept() {
    let mut t = fresh();
    for c in &history()[..5] {
        apply(&mut t, c);
    }
    let out = apply(
        &mut t,
        &Change::FrameworkRemoved {
            framework_id: "f1".into(),
        },
    );
    assert_eq!(out.released.len(), 2, "both tasks held resources");
    assert!(t.tasks.iter().next().is_none());
    assert!(
        t.tasks
            .completed_of("f1")
            .all(|x| x.state == TaskState::Killed)
    );
    for id in ["f2", "f3"] {
        apply(
            &mut t,
            &Change::FrameworkAdded {
                framework: framework(id),
            },
        );
        apply(
            &mut t,
            &Change::FrameworkRemoved {
                framework_id: id.into(),
            },
        );
    }
    // At most 2 remembered: f1 is forgotten, and its completed tasks with it.
    assert_eq!(t.frameworks.removed().collect::<Vec<_>>(), ["f2", "f3"]);
    assert_eq!(t.tasks.completed_of("f1").count(), 0);
}

#[test]
fn the_registry_document_round_trips_through_recovery() {
    let mut t = fresh();
    for c in &history() {
        apply(&mut t, c);
    }
    let doc = t.registry();
    let mut back = fresh();
    back.recover(&doc, |_| std::time::Duration::from_secs(60));
    assert_eq!(back.registry().gone_agents, doc.gone_agents);
    assert_eq!(back.registry().removed_frameworks, doc.removed_frameworks);
    assert_eq!(
        back.agents.iter().map(|a| &a.info.id).collect::<Vec<_>>(),
        ["a2"]
    );
    assert!(back.agents.iter().all(|a| a.recovered && !a.reachable));
    assert!(back.frameworks.contains("f2"));
}

#[test]
fn tables_survive_a_json_round_trip_unchanged() {
    // Live, unacknowledged, doomed and completed tasks, a gone agent, a removed framework and
    // counters: everything a snapshot must carry.
    let mut t = Tables::new(10, 2);
    for c in [
        Change::AgentRegistered {
            agent: agent("a1"),
            registered_time: 1_764_600_000.123_456_7,
        },
        Change::AgentRegistered {
            agent: agent("a2"),
            registered_time: 0.1 + 0.2,
        },
        Change::FrameworkAdded {
            framework: framework("f1"),
        },
        Change::FrameworkAdded {
            framework: framework("f2"),
        },
        Change::TaskAdded {
            task: task("f1", "t1", "a1"),
            hold: true,
        },
        Change::TaskAdded {
            task: task("f1", "t2", "a1"),
            hold: true,
        },
        Change::TaskAdded {
            task: task("f2", "t3", "a2"),
            hold: true,
        },
        status("f1", "t1", TaskState::Running, Some("u1")),
        status("f1", "t2", TaskState::Finished, Some("u2")),
        ack("f1", "t2", "u2"),
        Change::TaskDoomed {
            framework_id: "f1".into(),
            task_id: "t1".into(),
        },
        Change::FrameworkRemoved {
            framework_id: "f2".into(),
        },
    ] {
        assert!(apply(&mut t, &c).effective, "{c:?}");
    }
    assert_eq!(t.tasks.unacked_len(), 1);
    assert_eq!(t.tasks.completed_len(), 2);
    let json = serde_json::to_vec(&t).expect("serialise");
    let back: Tables = serde_json::from_slice(&json).expect("deserialise");
    assert_eq!(back, t);
    assert_eq!(
        back.tasks.completed_by_state(),
        t.tasks.completed_by_state()
    );
    assert!(!back.tasks.completed_by_state().is_empty());
}

#[test]
fn discovery_shows_a_checked_task_only_once_healthy_and_hides_any_reported_unhealthy() {
    let mut t = fresh();
    for c in &history()[..5] {
        apply(&mut t, c);
    }
    let key = ("f1".to_string(), "t1".to_string());
    let running = |healthy: Option<bool>| {
        let mut s = status("f1", "t1", TaskState::Running, None);
        if let Change::TaskStatusUpdated { status, .. } = &mut s {
            status.healthy = healthy;
        }
        s
    };
    apply(&mut t, &running(None));
    assert!(t.tasks.get(&key).expect("live").discoverable(), "no check");
    apply(&mut t, &running(Some(false)));
    assert!(!t.tasks.get(&key).expect("live").discoverable());
    apply(&mut t, &running(None));
    assert_eq!(
        t.tasks.get(&key).expect("live").healthy,
        Some(false),
        "an update without `healthy` keeps the last one"
    );
    let told = |healthy| Change::TaskHealthReported {
        framework_id: "f1".into(),
        task_id: "t1".into(),
        healthy,
    };
    assert!(apply(&mut t, &told(true)).effective);
    assert!(t.tasks.get(&key).expect("live").discoverable());
    assert!(!apply(&mut t, &told(true)).effective, "no change");

    // A task with a health check in its TaskInfo waits for its first healthy result.
    let mut checked = task("f1", "t9", "a1");
    checked.info.health_check = Some(Box::new(
        serde_json::from_value(
            serde_json::json!({"type": "COMMAND", "command": {"value": "true"}}),
        )
        .expect("a check"),
    ));
    checked.state = TaskState::Running;
    assert!(!checked.discoverable());
    checked.healthy = Some(true);
    assert!(checked.discoverable());
}
