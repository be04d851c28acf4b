//! Interrupted runs of the `local` provider, with the real `dccore`: an apply killed half-way or
//! interrupted with Ctrl-C, a destroy killed mid-way, a scale-down killed mid-drain. Each converges
//! on the next run, and none leaves a script of the killed dcform running.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;
mod support;

use std::process::Stdio;
use std::time::Duration;

use common::{RUN, text};
use support::local::{Cluster, agents_healthy, dcform, framework, kill, task_processes};

#[tokio::test(flavor = "multi_thread")]
async fn an_apply_killed_half_way_converges_on_the_next_apply() {
    let c = Cluster::new("e2e-kill");
    // Kill it once the master is up and agents are under way (the state has agents in it).
    let mut child = c.apply_until_agents_start("agents=4", false).await;
    let _ = child.kill(); // SIGKILL: no chance to clean up
    let _ = child.wait();

    let o = dcform(&["apply", "--auto-approve", "-var", "agents=4", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(agents_healthy(&c.status()), (5, 5));
    let o = dcform(&["plan", "--detailed-exitcode", "-var", "agents=4", c.def()]);
    assert_eq!(o.status.code(), Some(0), "converged: {}", text(&o));
    // One supervisor per node, not two: the killed apply's half-made nodes were taken over, not duplicated.
    assert_eq!(
        c.supervisors(),
        6,
        "dccore supervisors running for this cluster"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_finishes_in_flight_steps_saves_and_exits_130() {
    let c = Cluster::new("e2e-int");
    let child = c.apply_until_agents_start("agents=6", true).await;
    assert!(kill(&["-INT", &child.id().to_string()]).success());
    let o = tokio::time::timeout(
        RUN,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .expect("an interrupted apply exits")
    .unwrap()
    .unwrap();
    // The interrupt lands while agents are being made: in-flight steps finish, the state is saved, exit 130.
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    assert!(text(&o).contains("interrupted"), "{}", text(&o));
    let saved: dcform::state::State =
        serde_json::from_str(&std::fs::read_to_string(c.state_path()).unwrap()).unwrap();
    assert!(!saved.nodes.is_empty());
    let o = dcform(&["apply", "--auto-approve", "-var", "agents=6", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(agents_healthy(&c.status()), (7, 7));
}

/// `(pid, ppid, pgrp)` of every live (not zombie) process.
fn processes() -> Vec<(u32, u32, u32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // After the command name in parentheses: state, ppid, pgrp.
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() < 3 || matches!(f[0], "Z" | "X") {
            continue;
        }
        if let (Ok(ppid), Ok(pgrp)) = (f[1].parse(), f[2].parse()) {
            out.push((pid, ppid, pgrp));
        }
    }
    out
}

/// The process groups of the scripts `dcform_pid` is running now: each script leads its own group.
fn script_groups(dcform_pid: u32) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|(pid, ppid, pgrp)| *ppid == dcform_pid && pid == pgrp)
        .map(|(pid, _, _)| pid)
        .collect()
}

/// Waits (up to `limit`) until no live process is left in `groups`; panics naming those left.
fn assert_groups_die_within(groups: &[u32], limit: Duration, what: &str) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left: Vec<u32> = processes()
            .into_iter()
            .filter(|(_, _, g)| groups.contains(g))
            .map(|(p, _, _)| p)
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: processes of the killed dcform's scripts still running after {limit:?}: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (up to `limit`) until `dcform` runs a script, and returns the scripts' groups.
async fn until_a_script_runs(dcform: &mut std::process::Child, limit: Duration) -> Vec<u32> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let groups = script_groups(dcform.id());
        if !groups.is_empty() {
            return groups;
        }
        assert!(
            dcform.try_wait().unwrap().is_none(),
            "dcform ended before running a script"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "dcform ran no script within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A task that ignores SIGTERM (its `sleep` inherits the ignored signal), so only a KILL after its
/// grace period ends it: whatever stops it takes a while.
const STUBBORN: &str = "trap '' TERM; sleep 600";

#[tokio::test(flavor = "multi_thread")]
async fn a_destroy_killed_mid_way_leaves_none_of_its_scripts_running_and_a_rerun_finishes() {
    let c = Cluster::new("e2e-kill-destroy");
    let o = dcform(&["apply", "--auto-approve", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let status = c.status();
    let (mut fw, _) = framework(&status, "e2e-stubborn").await;
    tokio::time::timeout(
        Duration::from_secs(90),
        fw.launch_on("stubborn-1", STUBBORN, None, Some(Duration::from_secs(60))),
    )
    .await
    .expect("an offer to launch on");
    fw.wait_state("stubborn-1", "TASK_RUNNING").await;

    // The stop script of a sandbox waits up to 5 s for the node's processes (the agent waits for
    // the stubborn task's grace) and 3 s more for the task: it is running when dcform dies.
    let mut destroy = support::local::command(&["destroy", "--auto-approve", c.def()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let groups = until_a_script_runs(&mut destroy, Duration::from_secs(60)).await;
    destroy.kill().unwrap(); // SIGKILL: no chance to clean up
    destroy.wait().unwrap();
    // Far less than the 8 s such a script would go on for by itself.
    assert_groups_die_within(&groups, Duration::from_secs(2), "killed destroy");

    let o = dcform(&["destroy", "--auto-approve", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let root = c.state_path().parent().unwrap().to_path_buf();
    let left = task_processes(&root);
    assert!(left.is_empty(), "task processes outlived destroy: {left:?}");
    assert_eq!(c.supervisors(), 0, "dccore supervisors outlived destroy");
    let o = dcform(&["state", "list", c.def()]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "",
        "nodes left in the state"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scale_down_killed_mid_drain_is_undone_by_applying_the_old_count() {
    let c = Cluster::new("e2e-undrain");
    let o = dcform(&["apply", "--auto-approve", "-var", "agents=3", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let status = c.status();
    assert_eq!(agents_healthy(&status), (4, 4), "{status:#}");
    let address = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "agents-3")
        .and_then(|n| n["address"].as_str())
        .expect("agents-3 has an address")
        .to_string();
    let (mut fw, access) = framework(&status, "e2e-undrain").await;
    let api = access.api();
    let agent = api
        .agents()
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.url.ends_with(&address))
        .expect("the master knows agents-3");
    // On agents-3, the one the scale-down removes: its drain waits for the task's 60 s grace.
    tokio::time::timeout(
        Duration::from_secs(90),
        fw.launch_on(
            "stubborn-1",
            STUBBORN,
            Some(&agent.id),
            Some(Duration::from_secs(60)),
        ),
    )
    .await
    .expect("an offer from agents-3");
    fw.wait_state("stubborn-1", "TASK_RUNNING").await;
    // dccore runs a task under a wrapper shell of its own that does not ignore SIGTERM, so today
    // the wrapper's death ends a TERM-ignoring task at once (reported "terminated by signal 15")
    // instead of after its grace period. Stopped processes hold SIGTERM pending: frozen, the task
    // ignores it as a stubborn one should, and only the KILL after its 60 s grace ends it.
    let sandbox = c.state_path().parent().unwrap().join("nodes/agents-3");
    let sandbox = std::fs::canonicalize(&sandbox).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while task_processes(&sandbox).len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the task's wrapper and command never showed up on agents-3"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for p in task_processes(&sandbox) {
        kill(&["-STOP", &p.to_string()]);
    }

    let mut apply =
        support::local::command(&["apply", "--auto-approve", "-var", "agents=2", c.def()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    // Killed once the state says draining and the master has taken agents-3 out of its offers.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let saved: Option<dcform::state::State> = std::fs::read_to_string(c.state_path())
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok());
        let draining = saved.is_some_and(|s| {
            s.node("agents-3")
                .is_some_and(|n| n.status == dcform::state::NodeStatus::Draining)
        });
        if draining
            && api
                .agents()
                .await
                .is_ok_and(|a| a.iter().any(|a| a.id == agent.id && !a.active))
        {
            break;
        }
        assert!(
            apply.try_wait().unwrap().is_none(),
            "the scale-down ended before it drained"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "agents-3 was never seen draining"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let groups = until_a_script_runs(&mut apply, Duration::from_secs(30)).await;
    apply.kill().unwrap(); // SIGKILL, mid-drain
    apply.wait().unwrap();
    // The drain's script (a `dccore drain` waiting for the task) dies with the apply that ran it.
    assert_groups_die_within(&groups, Duration::from_secs(5), "killed scale-down");

    let o = dcform(&["apply", "--auto-approve", "-var", "agents=3", c.def()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("agents-3: reactivate"),
        "the drained agent was not reactivated:\n{}",
        text(&o)
    );
    let status = c.status();
    assert_eq!(agents_healthy(&status), (4, 4), "{status:#}");
    let o = dcform(&["plan", "--detailed-exitcode", "-var", "agents=3", c.def()]);
    assert_eq!(o.status.code(), Some(0), "converged: {}", text(&o));
}
