//! Executor specifications, driven by the scripted fakes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::fake::{FakeInstaller, FakeMembership, FakeProvider, Fault, SharedWorld, world};
use super::*;
use crate::plan::{self, CoreTarget};
use crate::spec::{
    ClusterSpec, CoreSpec, LocalProvider, PoolName, PoolSize, PoolSpec, ProviderSpec, Role, SshSpec,
};
use crate::state::{NodeStatus, State, StateFile};

fn spec(masters: u32, agents: u32) -> ClusterSpec {
    let pool = |name: &str, role, n| PoolSpec {
        name: PoolName::new(name).expect("valid pool name"),
        role,
        size: PoolSize::Count(n),
        attributes: BTreeMap::new(),
        resources: None,
        instance_type: None,
    };
    ClusterSpec {
        name: "demo".into(),
        provider: ProviderSpec::Local(LocalProvider::default()),
        ssh: SshSpec::default(),
        core: CoreSpec::default(),
        pools: vec![
            pool("masters", Role::Master, masters),
            pool("agents", Role::Agent, agents),
        ],
        services: vec![],
        definition_dir: PathBuf::from("."),
    }
}

fn core() -> CoreTarget {
    CoreTarget {
        version: "1.0.0".into(),
    }
}

struct Harness {
    world: SharedWorld,
    store: StateFile,
    _dir: tempfile::TempDir,
    parallelism: usize,
}

impl Harness {
    /// Makes the fake world fail as `f` says.
    fn fault(&self, f: Fault) {
        self.world.lock().unwrap().faults.push(f);
    }

    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = StateFile::at(dir.path().join("state.json"));
        Harness {
            world: world(),
            store,
            _dir: dir,
            parallelism: 10,
        }
    }

    fn state(&self) -> State {
        self.store
            .load()
            .unwrap()
            .unwrap_or_else(|| State::new("demo", crate::spec::ProviderKind::Local))
    }

    async fn apply_with(
        &self,
        spec: &ClusterSpec,
        destroy: bool,
        token: CancellationToken,
    ) -> Result<ApplyReport, ApplyError> {
        let mut state = self.state();
        let plan = if destroy {
            plan::destroy(spec, &state, &core())
        } else {
            plan::diff(spec, &state, &core(), None)
        };
        let opts = ApplyOptions {
            parallelism: self.parallelism,
            ..ApplyOptions::default()
        };
        let exec = Executor::new(
            Arc::new(FakeProvider(self.world.clone())),
            Arc::new(FakeInstaller),
            Arc::new(QuietProgress),
            opts,
        )
        .with_membership(Arc::new(FakeMembership::new(self.world.clone())));
        tokio::time::timeout(
            Duration::from_secs(600),
            exec.apply(&plan, &mut state, &self.store, token),
        )
        .await
        .expect("apply did not finish")
    }

    async fn apply(&self, spec: &ClusterSpec) -> Result<ApplyReport, ApplyError> {
        self.apply_with(spec, false, CancellationToken::new()).await
    }

    fn log(&self) -> Vec<String> {
        self.world.lock().unwrap().log.clone()
    }

    fn pos(&self, entry: &str) -> usize {
        self.log()
            .iter()
            .position(|l| l == entry)
            .unwrap_or_else(|| panic!("{entry} not in log {:?}", self.log()))
    }
}

#[tokio::test(start_paused = true)]
async fn fresh_apply_creates_masters_one_at_a_time_each_healthy_before_the_next_then_agents() {
    let h = Harness::new();
    let report = h.apply(&spec(3, 4)).await.unwrap();
    assert_eq!(report.completed.len(), 7);
    assert!(h.pos("run:health masters-1") < h.pos("create masters-2"));
    assert!(h.pos("run:health masters-2") < h.pos("create masters-3"));
    for a in 1..=4 {
        assert!(h.pos("run:health masters-3") < h.pos(&format!("create agents-{a}")));
    }
    let state = h.state();
    assert_eq!(state.nodes.len(), 7);
    assert!(
        state
            .nodes
            .iter()
            .all(|n| n.status == NodeStatus::Running && n.core_version.as_deref() == Some("1.0.0"))
    );
    assert_eq!(
        state.node("agents-2").unwrap().ssh_host_key.as_deref(),
        Some("SHA256:key-of-agents-2")
    );
    assert_eq!(
        state.resources.get("network").map(String::as_str),
        Some("net-1")
    );
    // A second plan against the saved state has nothing to do.
    assert!(!plan::diff(&spec(3, 4), &state, &core(), None).has_changes());
}

#[tokio::test(start_paused = true)]
async fn agents_run_in_parallel_but_never_more_than_the_parallelism() {
    let mut h = Harness::new();
    h.parallelism = 3;
    h.world.lock().unwrap().slow = Duration::from_secs(1);
    h.apply(&spec(1, 10)).await.unwrap();
    assert_eq!(h.world.lock().unwrap().max_in_flight, 3);
}

#[tokio::test(start_paused = true)]
async fn a_failed_step_stops_that_node_records_progress_and_the_next_apply_resumes_it() {
    let h = Harness::new();
    h.fault(Fault::on("agents-2", "run:install-agent", false, 1));
    let err = h.apply(&spec(1, 3)).await.unwrap_err();
    let ApplyError::Nodes {
        failures,
        completed,
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(failures.len(), 1);
    assert_eq!(
        (failures[0].node.as_str(), failures[0].step),
        ("agents-2", "install")
    );
    assert!(
        failures[0].error.contains("exited with exit code 3"),
        "{}",
        failures[0].error
    );
    assert!(
        failures[0].error.contains("install-agent broke"),
        "the output tail is shown: {}",
        failures[0].error
    );
    assert_eq!(completed.len(), 3, "the other nodes of the wave finished");
    let state = h.state();
    assert_eq!(state.node("agents-2").unwrap().status, NodeStatus::Created);
    assert_eq!(state.node("agents-3").unwrap().status, NodeStatus::Running);

    let plan = plan::diff(&spec(1, 3), &state, &core(), None);
    let resumed: Vec<&str> = plan.actions().map(|c| c.node.as_str()).collect();
    assert_eq!(resumed, vec!["agents-2"]);
    h.apply(&spec(1, 3)).await.unwrap();
    assert_eq!(
        h.state().node("agents-2").unwrap().status,
        NodeStatus::Running
    );
    assert_eq!(
        h.world.lock().unwrap().creates,
        4,
        "no machine was created twice"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_master_stops_before_any_agent_is_created() {
    let h = Harness::new();
    h.fault(Fault::on("masters-1", "create", false, u32::MAX));
    let err = h.apply(&spec(1, 2)).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("masters-1 (create): masters-1: injected create failure"),
        "{err}"
    );
    assert!(
        !h.log().iter().any(|l| l.contains("agents")),
        "{:?}",
        h.log()
    );
}

#[tokio::test(start_paused = true)]
async fn transient_provider_failures_are_retried_with_backoff() {
    let h = Harness::new();
    h.fault(Fault::on("agents-1", "create", true, 2));
    h.apply(&spec(1, 1)).await.unwrap();
    let creates = h.log().iter().filter(|l| *l == "create agents-1").count();
    assert_eq!(creates, 3);
}

#[tokio::test(start_paused = true)]
async fn the_second_create_failing_for_good_fails_that_node_and_stops_the_masters_after_it() {
    let h = Harness::new();
    // Masters are created one at a time, so the 2nd create of any node is masters-2's.
    h.fault(Fault::any("create", false, u32::MAX).starting_at(2));
    let err = h.apply(&spec(3, 0)).await.unwrap_err();
    let ApplyError::Nodes { failures, .. } = &err else {
        panic!("expected node failures, got {err}");
    };
    assert_eq!(
        failures,
        &[NodeFailure {
            node: "masters-2".into(),
            step: "create",
            error: "masters-2: injected create failure".into(),
        }]
    );
    let creates: Vec<String> = h
        .log()
        .into_iter()
        .filter(|l| l.starts_with("create "))
        .collect();
    assert_eq!(
        creates,
        ["create masters-1", "create masters-2"],
        "not retried, masters-3 never started"
    );
    let state = h.state();
    assert_eq!(
        state.node("masters-1").map(|n| n.status),
        Some(NodeStatus::Running)
    );
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_of_the_second_create_is_retried_and_the_apply_completes() {
    let h = Harness::new();
    h.fault(Fault::any("create", true, 1).starting_at(2));
    let report = h.apply(&spec(3, 0)).await.unwrap();
    assert_eq!(report.completed.len(), 3, "{report:?}");
    let creates: Vec<String> = h
        .log()
        .into_iter()
        .filter(|l| l.starts_with("create "))
        .collect();
    assert_eq!(
        creates,
        [
            "create masters-1",
            "create masters-2",
            "create masters-2",
            "create masters-3"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_lost_host_fails_after_bounded_retries_with_a_connect_error() {
    let h = Harness::new();
    h.world.lock().unwrap().lost.insert("agents-1".into());
    let err = h.apply(&spec(1, 1)).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("agents-1: cannot connect: no route to host"),
        "{err}"
    );
    let attempts = h.log().iter().filter(|l| *l == "connect agents-1").count();
    assert_eq!(
        attempts as u32,
        ApplyOptions::default()
            .connect_retry
            .max_attempts()
            .unwrap()
    );
}

#[tokio::test(start_paused = true)]
async fn health_is_polled_until_the_node_answers() {
    let h = Harness::new();
    h.fault(Fault::on("masters-1", "run:health", true, 3));
    h.apply(&spec(1, 0)).await.unwrap();
    assert_eq!(
        h.log()
            .iter()
            .filter(|l| *l == "run:health masters-1")
            .count(),
        4
    );
}

#[tokio::test(start_paused = true)]
async fn an_interrupted_apply_finishes_in_flight_steps_and_a_rerun_converges() {
    let h = Harness::new();
    let token = CancellationToken::new();
    // Cancel somewhere in the middle of the agents' wave.
    h.world.lock().unwrap().cancel_after = Some((14, token.clone()));
    let err = h.apply_with(&spec(1, 4), false, token).await.unwrap_err();
    assert!(matches!(err, ApplyError::Interrupted { .. }), "{err}");
    let partial = h.state();
    assert!(
        partial
            .nodes
            .iter()
            .any(|n| n.status != NodeStatus::Running)
            || partial.nodes.len() < 5,
        "{partial:?}"
    );
    h.world.lock().unwrap().cancel_after = None;
    h.apply(&spec(1, 4)).await.unwrap();
    let state = h.state();
    assert_eq!(state.nodes.len(), 5);
    assert!(state.nodes.iter().all(|n| n.status == NodeStatus::Running));
    assert_eq!(
        h.world.lock().unwrap().creates,
        5,
        "no machine was created twice"
    );
    assert!(!plan::diff(&spec(1, 4), &state, &core(), None).has_changes());
}

#[tokio::test(start_paused = true)]
async fn scale_down_drains_then_destroys_and_destroy_tears_everything_down() {
    let h = Harness::new();
    h.apply(&spec(1, 3)).await.unwrap();
    h.apply(&spec(1, 1)).await.unwrap();
    assert!(h.pos("run:drain agents-3") < h.pos("destroy agents-3"));
    assert_eq!(h.state().nodes.len(), 2);
    h.apply_with(&spec(1, 1), true, CancellationToken::new())
        .await
        .unwrap();
    let w = h.world.lock().unwrap();
    assert!(w.machines.is_empty(), "{:?}", w.machines);
    assert_eq!(w.torn_down, 1);
    drop(w);
    assert!(h.pos("destroy agents-1") < h.pos("destroy masters-1"));
    let state = h.state();
    assert!(state.nodes.is_empty() && state.resources.is_empty());
}

#[tokio::test(start_paused = true)]
async fn every_finished_step_is_on_disk_before_the_next_starts() {
    let h = Harness::new();
    h.apply(&spec(1, 0)).await.unwrap();
    // create, (host key), install, wait-healthy and the prepare: at least four saves for one node.
    assert!(h.state().serial >= 4, "serial {}", h.state().serial);
    let backup: State =
        serde_json::from_str(&std::fs::read_to_string(h.store.backup_path()).unwrap()).unwrap();
    assert_eq!(backup.serial + 1, h.state().serial);
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_agent_is_removed_without_its_drain() {
    let h = Harness::new();
    h.apply(&spec(1, 2)).await.unwrap();
    h.world.lock().unwrap().lost.insert("agents-2".into());
    h.apply(&spec(1, 1)).await.unwrap();
    assert!(!h.log().contains(&"run:drain agents-2".to_string()));
    assert!(
        !h.world.lock().unwrap().machines.contains_key("agents-2"),
        "the machine is gone"
    );
    assert!(h.state().node("agents-2").is_none());
}

/// The other half of the interrupted scale-down: the drain is recorded before it starts, so a
/// removal stopped mid-drain is known to need a reactivation when the node is wanted again.
#[tokio::test(start_paused = true)]
async fn a_drain_stopped_half_way_is_recorded_and_undone_when_the_node_is_wanted_again() {
    let h = Harness::new();
    h.apply(&spec(1, 2)).await.unwrap();
    h.fault(Fault::on("agents-2", "run:drain", false, 1));
    h.apply(&spec(1, 1)).await.unwrap_err();
    assert_eq!(
        h.state().node("agents-2").unwrap().status,
        NodeStatus::Draining
    );
    h.apply(&spec(1, 2)).await.unwrap();
    let log = h.log();
    let last_health = log.iter().rposition(|l| l == "run:health agents-2");
    assert!(
        h.pos("run:reactivate agents-2") < last_health.unwrap(),
        "{log:?}"
    );
    assert_eq!(
        h.state().node("agents-2").unwrap().status,
        NodeStatus::Running
    );
    assert!(!plan::diff(&spec(1, 2), &h.state(), &core(), None).has_changes());
}

#[tokio::test(start_paused = true)]
async fn a_stopped_machine_is_started_by_its_provider_before_its_core() {
    let h = Harness::new();
    h.apply(&spec(1, 2)).await.unwrap();
    h.world.lock().unwrap().stopped.insert("agents-2".into());
    let mut state = h.state();
    if let Some(n) = state.nodes.iter_mut().find(|n| n.name == "agents-2") {
        n.status = NodeStatus::MachineStopped;
    }
    h.store.save(&mut state).unwrap();
    h.apply(&spec(1, 2)).await.unwrap();
    let log = h.log();
    let started = h.pos("start-machine agents-2");
    let last_health = log
        .iter()
        .rposition(|l| l == "run:health agents-2")
        .unwrap();
    assert!(started < last_health, "{log:?}");
    assert_eq!(
        h.state().node("agents-2").unwrap().status,
        NodeStatus::Running
    );
}

#[tokio::test(start_paused = true)]
async fn masters_after_the_first_join_the_group_once_started_and_before_they_are_healthy() {
    let h = Harness::new();
    h.apply(&spec(3, 1)).await.expect("apply");
    // masters-1 founds the group: it joins no one.
    assert!(!h.log().iter().any(|l| l.starts_with("join masters-1")));
    for (name, via) in [
        ("masters-2 #2", "masters-1"),
        ("masters-3 #3", "masters-1,masters-2"),
    ] {
        let join = format!("join {name} via {via}");
        let node = name.split(' ').next().expect("name");
        assert!(
            h.pos(&format!("run:start {node}")) < h.pos(&join),
            "{:?}",
            h.log()
        );
        assert!(h.pos(&join) < h.pos(&format!("run:health {node}")));
    }
    assert!(h.pos("join masters-3 #3 via masters-1,masters-2") < h.pos("create agents-1"));
    let state = h.state();
    let ids: Vec<(Option<u64>, bool)> = state
        .masters()
        .iter()
        .map(|m| (m.replica_id, m.replica_member))
        .collect();
    assert_eq!(ids, [(Some(1), true), (Some(2), true), (Some(3), true)]);
    assert_eq!(
        state
            .resources
            .get(crate::state::REPLICA_LAST_ID)
            .map(String::as_str),
        Some("3")
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_join_stops_the_masters_and_the_next_apply_joins_without_recreating() {
    let h = Harness::new();
    h.fault(Fault::any("join", false, 1).starting_at(1));
    let err = h.apply(&spec(3, 1)).await.expect_err("the join fails");
    assert!(
        err.to_string()
            .contains("injected join failure of masters-2"),
        "{err}"
    );
    assert!(!h.log().iter().any(|l| l == "create masters-3"));
    let m2 = h
        .state()
        .node("masters-2")
        .cloned()
        .expect("masters-2 recorded");
    assert_eq!((m2.replica_id, m2.replica_member), (Some(2), false));
    h.apply(&spec(3, 1)).await.expect("second apply");
    let creates = h.log().iter().filter(|l| *l == "create masters-2").count();
    assert_eq!(creates, 1, "masters-2 keeps its machine and its id");
    assert!(
        h.log()
            .iter()
            .any(|l| l == "join masters-2 #2 via masters-1")
    );
    assert!(
        h.state()
            .node("masters-2")
            .is_some_and(|m| m.replica_member)
    );
}

#[tokio::test(start_paused = true)]
async fn shrinking_5_to_3_takes_each_master_out_of_the_group_before_its_machine_goes() {
    let h = Harness::new();
    h.apply(&spec(5, 1)).await.expect("5 masters");
    h.apply(&spec(3, 1)).await.expect("3 masters");
    for (id, node) in [(4, "masters-4"), (5, "masters-5")] {
        assert!(h.pos(&format!("leave #{id}")) < h.pos(&format!("destroy {node}")));
    }
    assert_eq!(h.state().masters().len(), 3);
}
