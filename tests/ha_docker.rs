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
    let t = ok(&o, "status --json");
    // stdout alone: warnings (a master that does not answer) go to stderr.
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {t}"));
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

/// `dcform task list --json`: the ids of the running tasks whose name starts with `prefix`,
/// once the call answers (it may not while the masters elect), within 30 s.
async fn running_tasks(
    env: &support::providers::Env,
    dir: &Path,
    def: &str,
    vars: &[&str],
    prefix: &str,
) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut args = vec!["task", "list", "--json"];
        args.extend_from_slice(vars);
        args.push(def);
        let o = dcform(env, dir, &args).await;
        if o.status.success() {
            let mut ids: Vec<String> = String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|t| {
                    t["state"] == "TASK_RUNNING"
                        && t["name"].as_str().is_some_and(|n| n.starts_with(prefix))
                })
                .filter_map(|t| t["id"].as_str().map(str::to_string))
                .collect();
            ids.sort();
            return ids;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "task list does not answer within 30 s: {}",
            common::text(&o)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The group changes size by apply, 1 → 3 → 5 → 3, and its leader is cut off from the network
/// and healed, while a service's two instances keep running: the same tasks throughout, never a
/// third. Cut off, the old leader is passed over (a new leader among the two others); healed
/// (reconnected at its fixed address), it follows and catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masters_grow_from_one_to_five_shrink_to_three_and_survive_a_partition_with_a_service_running()
 {
    let Some(env) = support::providers::env() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = unique("hagrow");
    let _guard = Leftovers(cluster.clone());
    let def = definition(dir.path(), &cluster);
    let path = dir.path().join(&def);
    let text = std::fs::read_to_string(&path).expect("definition");
    let end = text.rfind('}').expect("the cluster block's end");
    let service = "  service \"web\" {\n    cmd       = \"sleep 3600\"\n    instances = 2\n    cpus      = 0.1\n    mem       = 16\n  }\n";
    std::fs::write(&path, format!("{}{service}{}", &text[..end], &text[end..])).expect("write");
    let with = |n: &'static str| ["-var", n];

    let o = dcform(
        &env,
        dir.path(),
        &["apply", "--auto-approve", "-var", "masters=1", &def],
    )
    .await;
    let t = ok(&o, "apply with 1 master and a service");
    assert!(t.contains("+ service /web deploy: 2 instances"), "{t}");
    let web = running_tasks(&env, dir.path(), &def, &with("masters=1"), "web").await;
    assert_eq!(web.len(), 2, "two instances: {web:?}");

    // 1 → 3: two members join the group one at a time; the service's tasks are untouched.
    let o = dcform(
        &env,
        dir.path(),
        &["apply", "--auto-approve", "-var", "masters=3", &def],
    )
    .await;
    let t = ok(&o, "apply 1 -> 3 masters");
    assert!(
        t.contains("add master 2 to the masters' group")
            && t.contains("add master 3 to the masters' group"),
        "{t}"
    );
    let leader = one_leader(&env, dir.path(), &def, 3, Duration::from_secs(30)).await;
    assert_eq!(
        running_tasks(&env, dir.path(), &def, &[], "web").await,
        web,
        "1 -> 3"
    );

    // The leader cut off from the cluster network: the two others elect a new leader.
    let net = format!("dcform-{cluster}");
    let container = format!("dcform-{cluster}-{leader}");
    let ip = container_ip(&container);
    docker_ok(&["network", "disconnect", "-f", &net, &container]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let new_leader = loop {
        let ms = masters(&env, dir.path(), &def).await;
        if let Some((n, _, _)) = ms
            .iter()
            .find(|(n, _, r)| *n != leader && r["is_leader"] == true)
        {
            let cut = ms
                .iter()
                .find(|(n, _, _)| *n == leader)
                .map(|(_, h, _)| h.clone());
            assert_ne!(
                cut.as_deref(),
                Some("healthy"),
                "a master cut off is not healthy"
            );
            break n.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no new leader while {leader} is cut off: {ms:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_ne!(new_leader, leader);
    assert_eq!(
        running_tasks(&env, dir.path(), &def, &[], "web").await,
        web,
        "the new leader's services framework took the same tasks over"
    );
    // Healed at its own address: it follows the new leader and catches up.
    docker_ok(&["network", "connect", "--ip", &ip, &net, &container]);
    let back = one_leader(&env, dir.path(), &def, 3, Duration::from_secs(60)).await;
    assert_ne!(
        back, leader,
        "the healed master follows; it does not take over again at once"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ms = masters(&env, dir.path(), &def).await;
        let index = |name: &str| {
            ms.iter()
                .find(|(n, _, _)| n == name)
                .and_then(|(_, _, r)| r["applied_index"].as_u64())
        };
        if let (Some(healed), Some(lead)) = (index(&leader), index(&back))
            && healed >= lead
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{leader} does not catch up: {ms:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // 3 → 5 → 3: members added, then the two newest removed (never the leader first).
    let o = dcform(
        &env,
        dir.path(),
        &["apply", "--auto-approve", "-var", "masters=5", &def],
    )
    .await;
    ok(&o, "apply 3 -> 5 masters");
    one_leader(&env, dir.path(), &def, 5, Duration::from_secs(30)).await;
    assert_eq!(
        running_tasks(&env, dir.path(), &def, &with("masters=5"), "web").await,
        web,
        "3 -> 5"
    );
    let o = dcform(
        &env,
        dir.path(),
        &["apply", "--auto-approve", "-var", "masters=3", &def],
    )
    .await;
    let t = ok(&o, "apply 5 -> 3 masters");
    assert!(t.contains("2 destroyed") || t.contains("2 removed"), "{t}");
    one_leader(&env, dir.path(), &def, 3, Duration::from_secs(30)).await;
    assert_eq!(
        running_tasks(&env, dir.path(), &def, &[], "web").await,
        web,
        "5 -> 3"
    );
    let (healthy, agents, status) =
        support::providers::agents_healthy(&env, dir.path(), &def).await;
    assert_eq!((healthy, agents), (3, 3), "{status}");

    let o = dcform(&env, dir.path(), &["destroy", "--auto-approve", &def]).await;
    ok(&o, "destroy");
}
