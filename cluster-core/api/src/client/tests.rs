use super::*;
use crate::operator::{Agent, AgentInfo, DrainConfig, DrainInfo, Task, TimeInfo};
use crate::proto::{Id, TaskState};

fn agent(url: &str, id: &str, active: bool, drain: Option<DrainState>) -> Agent {
    Agent {
        agent_info: AgentInfo {
            id: Id::new(id),
            hostname: "h".into(),
            port: 5051,
            resources: Vec::new(),
            attributes: Vec::new(),
        },
        active,
        deactivated: !active,
        drain_info: drain.map(|state| DrainInfo {
            state,
            config: DrainConfig::default(),
        }),
        version: "0.1.0".into(),
        pid: "slave(1)@h:5051".into(),
        url: url.into(),
        public: false,
        task_user: None,
        task_user_note: None,
        registered_time: TimeInfo { nanoseconds: 0 },
        total_resources: Vec::new(),
        allocated_resources: Vec::new(),
        offered_resources: Vec::new(),
    }
}

fn agents(list: Vec<Agent>) -> GetAgents {
    GetAgents {
        agents: list,
        recovered_agents: Vec::new(),
        unreachable_agents: Vec::new(),
    }
}

fn tasks_on(agent_ids: &[&str]) -> GetTasks {
    GetTasks {
        tasks: agent_ids
            .iter()
            .enumerate()
            .map(|(i, a)| Task {
                name: format!("t{i}"),
                task_id: Id::new(format!("t{i}")),
                framework_id: Id::new("F"),
                agent_id: Id::new(*a),
                state: TaskState::Running,
                resources: Vec::new(),
                statuses: Vec::new(),
                command: None,
            })
            .collect(),
        unreachable_tasks: Vec::new(),
        completed_tasks: Vec::new(),
    }
}

const HEALTHY: GetHealth = GetHealth { healthy: true };

#[test]
fn only_held_agents_of_that_url_are_reactivated() {
    let mut a = agents(vec![
        agent("http://a:1", "x", false, Some(DrainState::Drained)),
        agent("http://b:1", "y", false, None),
        agent("http://a:1/", "z", true, None),
    ]);
    let mut w = agent("a:1", "w", true, Some(DrainState::Draining));
    w.deactivated = false;
    a.unreachable_agents.push(w);
    assert_eq!(held_agents(&a, "http://a:1"), vec!["x", "w"]);
    assert!(held_agents(&a, "http://c:1").is_empty());
}

#[test]
fn probe_passes_for_a_healthy_master_and_an_active_agent_whatever_the_url_spelling() {
    let a = agents(vec![agent("http://10.0.0.3:5051", "S1", true, None)]);
    assert_eq!(probe_verdict("m", &HEALTHY, None, None), Ok(()));
    assert_eq!(
        probe_verdict("m", &HEALTHY, Some(&a), Some("10.0.0.3:5051/")),
        Ok(())
    );
}

#[test]
fn probe_says_what_is_missing() {
    let a = agents(vec![agent(
        "http://10.0.0.3:5051",
        "S1",
        false,
        Some(DrainState::Draining),
    )]);
    let err = probe_verdict("m", &HEALTHY, Some(&a), Some("http://10.0.0.3:5051"))
        .expect_err("deactivated");
    assert!(
        err.contains("deactivated") && err.contains("DRAINING"),
        "{err}"
    );
    let err = probe_verdict("m", &HEALTHY, Some(&a), Some("http://10.0.0.4:5051"))
        .expect_err("not listed");
    assert!(
        err.contains("not registered") && err.contains("http://10.0.0.3:5051"),
        "{err}"
    );
    let err =
        probe_verdict("m", &GetHealth { healthy: false }, Some(&a), None).expect_err("unhealthy");
    assert!(err.contains("not healthy"), "{err}");
}

#[test]
fn drain_is_over_when_drained_gone_or_without_live_tasks() {
    let draining = agents(vec![agent("u", "S1", false, Some(DrainState::Draining))]);
    let busy = tasks_on(&["S1"]);
    let idle = tasks_on(&["S2"]);
    let err = drain_progress(&draining, &busy, "S1").expect_err("still busy");
    assert!(
        err.contains("1 task(s)") && err.contains("DRAINING"),
        "{err}"
    );
    assert!(drain_progress(&draining, &idle, "S1").is_ok());
    let drained = agents(vec![agent("u", "S1", false, Some(DrainState::Drained))]);
    assert_eq!(drain_progress(&drained, &busy, "S1"), Ok("drained".into()));
    assert!(
        drain_progress(&agents(Vec::new()), &busy, "S1").is_ok_and(|s| s.contains("marked gone"))
    );
}

#[test]
fn urls_compare_without_a_trailing_slash_and_with_http_assumed() {
    assert_eq!(normalize_url("10.0.0.3:5051/"), "http://10.0.0.3:5051");
    assert_eq!(normalize_url(" https://m:5050 "), "https://m:5050");
}
