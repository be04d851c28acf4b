//! Replicated masters on the docker provider, end to end against the real Docker Engine: an
//! `examples/docker.hcl` cluster with 3 masters applies; `status` names exactly one leader and
//! each master's log position; killing the leader's container gives a new leader that still
//! knows every agent; `apply` replaces the dead master (a new member with a new id) and all 3
//! are healthy again; `-var masters=5` grows the group to 5 with the agents kept. Agents resolve
//! through the 3 masters, and `leader.dccore` names the leader.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;
mod support;

use std::path::Path;
use std::time::Duration;

use common::ok;
use serde_json::Value;
use support::providers::{
    Leftovers, container_ip, dcform, docker_example, docker_ok, resolve_until, unique,
};

/// `examples/docker.hcl`, renamed, with the masters' count a variable (default 3).
fn definition(dir: &Path, cluster: &str) -> String {
    let masters = "pool \"masters\" {\n    role  = \"master\"\n    count = 1\n  }";
    let variable = "pool \"masters\" {\n    role  = \"master\"\n    count = var.masters\n  }";
    let file = docker_example(dir, cluster, "ha.hcl", &[(masters, variable)]);
    let def = std::fs::read_to_string(dir.join(&file)).expect("definition");
    let def = format!("variable \"masters\" {{\n  type    = number\n  default = 3\n}}\n\n{def}");
    std::fs::write(dir.join(&file), def).expect("write definition");
    file
}

/// `status --json`, its master nodes `(name, health, replica)`.
async fn masters(
    env: &support::providers::Env,
    dir: &Path,
    def: &str,
) -> Vec<(String, String, Value)> {
    let o = dcform(env, dir, &["status", "--json", def]).await;
    let v: Value = serde_json::from_str(&ok(&o, "status --json")).expect("status --json is JSON");
    v["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|n| n["role"] == "master")
        .map(|n| {
            (
                n["name"].as_str().unwrap_or_default().to_string(),
                n["health"].as_str().unwrap_or_default().to_string(),
                n["replica"].clone(),
            )
        })
        .collect()
}

/// Polls `status` until exactly one master says it leads and every master in `want` is
/// healthy; returns the leader's node name. Fails after `limit`.
async fn one_leader(
    env: &support::providers::Env,
    dir: &Path,
    def: &str,
    want: usize,
    limit: Duration,
) -> String {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let ms = masters(env, dir, def).await;
        let leaders: Vec<&String> = ms
            .iter()
            .filter(|(_, _, r)| r["is_leader"] == true)
            .map(|(n, _, _)| n)
            .collect();
        let healthy = ms.iter().filter(|(_, h, _)| h == "healthy").count();
        if leaders.len() == 1 && healthy == want && ms.len() == want {
            return leaders[0].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no single leader with {want} healthy masters within {limit:?}: {ms:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_masters_elect_one_leader_survive_its_loss_are_restored_by_apply_and_grow_to_five() {
    let Some(env) = support::providers::env() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = unique("ha");
    let _guard = Leftovers(cluster.clone());
    let def = definition(dir.path(), &cluster);

    let o = dcform(&env, dir.path(), &["plan", &def]).await;
    let t = ok(&o, "plan");
    assert!(
        t.contains("start the masters' group with master 1")
            && t.contains("add master 2 to the masters' group")
            && t.contains("add master 3 to the masters' group"),
        "{t}"
    );
    let o = dcform(&env, dir.path(), &["apply", "--auto-approve", &def]).await;
    let t = ok(&o, "apply with 3 masters");
    assert!(t.contains("Apply complete! Nodes: 6 added"), "{t}");

    let leader = one_leader(&env, dir.path(), &def, 3, Duration::from_secs(30)).await;
    let ms = masters(&env, dir.path(), &def).await;
    let ids: Vec<u64> = ms.iter().filter_map(|(_, _, r)| r["id"].as_u64()).collect();
    assert_eq!(ids, [1, 2, 3], "ids in creation order: {ms:?}");
    for (n, _, r) in &ms {
        assert!(
            r["last_log_index"].as_u64().is_some_and(|i| i > 0),
            "{n}: {r}"
        );
    }
    let (healthy, agents, _) = support::providers::agents_healthy(&env, dir.path(), &def).await;
    assert_eq!((healthy, agents), (3, 3));
    // Service discovery: an agent resolves through the 3 masters, and `leader.dccore` is the leader.
    let ip = |node: &str| container_ip(&format!("dcform-{cluster}-{node}"));
    let master_ips: Vec<String> = (1..=3).map(|i| ip(&format!("masters-{i}"))).collect();
    let agent = format!("dcform-{cluster}-agents-1");
    let resolv = docker_ok(&["exec", &agent, "cat", "/etc/resolv.conf"]);
    let nameservers: Vec<&str> = resolv
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver "))
        .collect();
    assert_eq!(nameservers, master_ips, "{resolv}");
    let want = ip(&leader);
    // The leader's address, once the masters' DNS follows the election.
    resolve_until(&agent, "leader.dccore", Duration::from_secs(30), |_, a| {
        a.first() == Some(&want)
    })
    .await;

    // The leader's container dies: the other two elect a new leader that knows every agent.
    docker_ok(&["kill", &format!("dcform-{cluster}-{leader}")]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let new_leader = loop {
        let ms = masters(&env, dir.path(), &def).await;
        let l = ms
            .iter()
            .find(|(n, _, r)| *n != leader && r["is_leader"] == true)
            .map(|(n, _, _)| n.clone());
        let dead = ms
            .iter()
            .find(|(n, _, _)| *n == leader)
            .map(|(_, h, _)| h.clone());
        if let Some(l) = l {
            assert_ne!(
                dead.as_deref(),
                Some("healthy"),
                "a killed master is never healthy"
            );
            break l;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no new leader: {ms:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_ne!(new_leader, leader);
    // The agents notice the loss at their next heartbeat, find the new leader and register again.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (healthy, agents, status) =
            support::providers::agents_healthy(&env, dir.path(), &def).await;
        if (healthy, agents) == (3, 3) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new leader does not know every agent 20 s after the failover: {status}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // `apply` restarts the killed container (its disk is there: same member, same id).
    let o = dcform(&env, dir.path(), &["apply", "--auto-approve", &def]).await;
    ok(&o, "apply after the leader was killed");
    one_leader(&env, dir.path(), &def, 3, Duration::from_secs(30)).await;

    // A master whose machine is gone is replaced by a new member with a new id.
    let gone = "masters-2";
    docker_ok(&["rm", "-f", &format!("dcform-{cluster}-{gone}")]);
    let o = dcform(&env, dir.path(), &["plan", &def]).await;
    let t = ok(&o, "plan after a master was removed");
    assert!(
        t.contains("remove master 2 (the lost machine) from the masters' group; the new machine joins as master 4"),
        "{t}"
    );
    let o = dcform(&env, dir.path(), &["apply", "--auto-approve", &def]).await;
    ok(&o, "apply replacing a lost master");
    one_leader(&env, dir.path(), &def, 3, Duration::from_secs(30)).await;
    let ms = masters(&env, dir.path(), &def).await;
    let ids: Vec<u64> = ms.iter().filter_map(|(_, _, r)| r["id"].as_u64()).collect();
    assert_eq!(ids, [1, 4, 3], "{ms:?}");

    // Grow to 5 by apply: two more members, the agents kept (and told every master).
    let o = dcform(
        &env,
        dir.path(),
        &["apply", "--auto-approve", "-var", "masters=5", &def],
    )
    .await;
    let t = ok(&o, "apply with 5 masters");
    assert!(t.contains("2 added"), "{t}");
    one_leader(&env, dir.path(), &def, 5, Duration::from_secs(30)).await;
    let (healthy, agents, status) =
        support::providers::agents_healthy(&env, dir.path(), &def).await;
    assert_eq!((healthy, agents), (3, 3), "{status}");

    let o = dcform(&env, dir.path(), &["destroy", "--auto-approve", &def]).await;
    ok(&o, "destroy");
}
