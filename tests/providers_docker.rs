//! Provider `docker` end to end against the real Docker Engine and real OpenSSH in the node image:
//! `examples/docker.hcl` boots, agents register with resources, a task runs and its stdout is served by the
//! agent, a second apply changes nothing, destroy leaves no labelled object; an apply killed with SIGKILL
//! converges when run again; `list` and `destroy --cluster` work from labels alone; a master container comes
//! back at its (fixed) address after a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;
mod support;

use std::path::Path;
use std::time::Duration;

use common::{ok, text};
use support::providers::{
    Leftovers, agents_healthy, dcform, docker_example, docker_ok, kill_core, labelled,
    plan_sees_and_apply_mends, unique, within,
};

/// `examples/docker.hcl` with its cluster renamed, so parallel runs never share objects.
fn definition(dir: &Path, cluster: &str) -> String {
    docker_example(dir, cluster, "docker.hcl", &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_example_boots_runs_a_task_is_idempotent_and_destroys_without_leftovers() {
    let Some(env) = support::providers::env() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = unique("dt");
    let _guard = Leftovers(cluster.clone());
    let def = definition(dir.path(), &cluster);

    let o = dcform(&env, dir.path(), &["apply", "--auto-approve", &def]).await;
    let t = ok(&o, "apply");
    assert!(t.contains("Apply complete! Nodes: 4 added"), "{t}");
    assert_eq!(labelled(&cluster).0, 4, "one container per node");

    let (healthy, agents, status) = agents_healthy(&env, dir.path(), &def).await;
    assert_eq!((healthy, agents), (3, 3), "{status}");

    let marker = format!("hello-{cluster}");
    assert_eq!(
        support::providers::marker_task(&status, dir.path(), &cluster, &marker)
            .await
            .trim(),
        marker
    );

    let o = dcform(&env, dir.path(), &["apply", "--auto-approve", &def]).await;
    assert!(
        ok(&o, "second apply").contains("No changes"),
        "{}",
        text(&o)
    );

    // A machine removed behind dcform's back is found by the refresh and created again.
    docker_ok(&["rm", "-f", &format!("dcform-{cluster}-agents-1")]);
    let o = dcform(&env, dir.path(), &["status", &def]).await;
    let t = ok(&o, "status after docker rm");
    assert!(
        t.lines()
            .any(|l| l.starts_with("agents-1") && l.contains("not running (gone)")),
        "{t}"
    );
    let o = dcform(&env, dir.path(), &["plan", &def]).await;
    let t = ok(&o, "plan after docker rm");
    assert!(
        t.contains("+ agents-1") && t.contains("the machine is gone"),
        "{t}"
    );
    let o = dcform(&env, dir.path(), &["apply", "--auto-approve", &def]).await;
    let t = ok(&o, "apply after docker rm");
    assert!(t.contains("1 added"), "{t}");
    assert_eq!(labelled(&cluster).0, 4, "one container per node again");
    let (healthy, agents, status) = agents_healthy(&env, dir.path(), &def).await;
    assert_eq!((healthy, agents), (3, 3), "{status}");

    // A restarted container (Docker Engine or host restart) brings its role back by itself, as a
    // systemd unit would: no apply needed.
    docker_ok(&["restart", "-t", "1", &format!("dcform-{cluster}-agents-2")]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let o = dcform(
            &env,
            dir.path(),
            // The agent process itself, not a pid file that could be left from before the restart.
            &[
                "exec",
                "agents-2",
                &def,
                "--",
                "pgrep",
                "-f",
                "dccore agent",
            ],
        )
        .await;
        let (healthy, _, status) = agents_healthy(&env, dir.path(), &def).await;
        if o.status.success() && healthy == 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "agents-2 did not come back after a container restart: {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }

    // Found: after `docker kill` of an agent `plan` said "No changes" and the cluster stayed
    // short. The refresh sees the stopped container; the plan starts it, then its core.
    docker_ok(&["kill", &format!("dcform-{cluster}-agents-1")]);
    let expect = ["~ agents-1", "the machine is stopped"];
    plan_sees_and_apply_mends(&env, dir.path(), &def, &[], &expect, 3, "docker kill").await;

    // And a core killed inside a running container (the container itself is fine): the
    // refresh asks the node over SSH whether its core runs.
    kill_core(&env, dir.path(), "agents-2", &[&def]).await;
    let expect = ["dccore is not running on agents-2", "~ agents-2"];
    plan_sees_and_apply_mends(&env, dir.path(), &def, &[], &expect, 3, "the core died").await;

    // The operator extras: exec exits with the remote code, list finds the cluster by label.
    let o = dcform(
        &env,
        dir.path(),
        &[
            "exec",
            "agents-1",
            &def,
            "--",
            "sh",
            "-c",
            "hostname; exit 3",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "agents-1");
    let o = dcform(
        &env,
        dir.path(),
        &["ssh", "masters-1", &def, "--", "hostname"],
    )
    .await;
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "masters-1",
        "{}",
        text(&o)
    );
    let o = dcform(&env, dir.path(), &["list", "--json"]).await;
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).expect("list --json");
    let mine = listed
        .as_array()
        .and_then(|a| a.iter().find(|c| c["cluster"] == cluster.as_str()))
        .unwrap_or_else(|| panic!("{cluster} not listed: {listed}"));
    assert_eq!(mine["nodes"].as_array().map(Vec::len), Some(4));

    let o = dcform(&env, dir.path(), &["destroy", "--auto-approve", &def]).await;
    ok(&o, "destroy");
    assert_eq!(
        labelled(&cluster),
        (0, 0, 0),
        "labelled objects left after destroy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_killed_midway_converges_and_destroy_by_label_needs_no_state() {
    let Some(env) = support::providers::env() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = unique("dk");
    let _guard = Leftovers(cluster.clone());
    let def = definition(dir.path(), &cluster);
    let state = dir.path().join(format!(".dcform/{cluster}/state.json"));

    // Kill the first apply once the state shows a node part-way (created or installed, not yet running).
    let mut child = tokio::process::Command::from(common::command(&[
        "apply",
        "--auto-approve",
        "-var",
        "agents=1",
        &def,
    ]))
    .current_dir(dir.path())
    .env("DCFORM_CORE_BINARY", &env.core)
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .kill_on_drop(true)
    .spawn()
    .expect("spawn apply");
    let midway = within(
        Duration::from_secs(240),
        "a node part-way in the state",
        async {
            loop {
                let s = std::fs::read_to_string(&state).unwrap_or_default();
                if s.contains("\"created\"") || s.contains("\"installed\"") {
                    return true;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        },
    )
    .await;
    assert!(midway, "apply finished before it could be killed");
    child.kill().await.expect("SIGKILL the apply");

    // The lock of the killed process is stale (its pid is gone), so the next apply proceeds and converges.
    let o = dcform(
        &env,
        dir.path(),
        &["apply", "--auto-approve", "-var", "agents=1", &def],
    )
    .await;
    ok(&o, "apply after the kill");
    let (healthy, agents, status) = agents_healthy(&env, dir.path(), &def).await;
    assert_eq!((healthy, agents), (2, 2), "{status}");
    assert_eq!(labelled(&cluster).0, 3, "no duplicate containers");

    // Lose the state, then clean up by label.
    std::fs::remove_dir_all(dir.path().join(".dcform")).expect("drop the state");
    let o = dcform(
        &env,
        dir.path(),
        &["destroy", "--cluster", &cluster, "--auto-approve"],
    )
    .await;
    let t = ok(&o, "destroy --cluster");
    assert!(t.contains("Removed 3 container(s), 1 network(s)"), "{t}");
    assert_eq!(labelled(&cluster), (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_finds_the_container_an_interrupted_create_made_and_teardown_removes_everything() {
    use dcform::apply::{NodeRequest, Provider};
    use dcform::spec::Role;
    let Some(_env) = support::providers::env() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = unique("dc");
    let _guard = Leftovers(cluster.clone());
    let (p, resources) = prepared_provider(dir.path(), &cluster).await;
    let limit = Duration::from_secs(120);
    let key = dir.path().join("ssh/id_ed25519");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key)
        .expect("cluster key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "cluster key must be private");

    let req = NodeRequest {
        cluster: cluster.clone(),
        name: "agents-1".into(),
        pool: dcform::spec::PoolName::new("agents").unwrap(),
        index: 1,
        role: Role::Agent,
        host: None,
        instance_type: None,
    };
    let first = within(limit, "create", p.create(&req))
        .await
        .expect("create");
    // The apply that made it died before recording it: the next create adopts the same container.
    let again = within(limit, "create again", p.create(&req))
        .await
        .expect("create again");
    assert_eq!(first, again);
    assert_eq!(labelled(&cluster), (1, 1, 0));

    within(limit, "teardown", p.teardown(&resources))
        .await
        .expect("teardown");
    assert_eq!(labelled(&cluster), (0, 0, 0));
}

/// A docker provider for `examples/docker.hcl` renamed to `cluster`, prepared (image, key,
/// network): the provider alone, without an apply around it.
async fn prepared_provider(
    dir: &Path,
    cluster: &str,
) -> (
    dcform::providers::docker::DockerProvider,
    std::collections::BTreeMap<String, String>,
) {
    use dcform::apply::Provider;
    use dcform::spec::{LoadOptions, ProviderSpec};
    let def = definition(dir, cluster);
    let spec = dcform::spec::load(&dir.join(def), &LoadOptions::default())
        .expect("definition loads")
        .spec;
    let ProviderSpec::Docker(settings) = &spec.provider else {
        panic!("not a docker definition")
    };
    let p = dcform::providers::docker::DockerProvider::new(&spec, settings, dir, false);
    let resources = within(
        Duration::from_secs(120),
        "prepare",
        p.prepare(&spec, &Default::default()),
    )
    .await
    .expect("prepare");
    assert_eq!(resources["network"], format!("dcform-{cluster}"));
    (p, resources)
}

/// Found: a master container stopped and started again came back at the next address Docker
/// handed out, while the Raft group, the agents and the resolvers still named the old one. A
/// master now has a fixed address (from the top of the network's subnet) that survives a
/// restart; an agent, which registers again wherever it is, still gets one from Docker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_container_comes_back_at_its_address_after_a_restart() {
    use dcform::apply::{NodeRequest, Provider};
    use dcform::spec::{PoolName, Role};
    use dcform::state::{NodeState, NodeStatus};
    let Some(_env) = support::providers::env() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = unique("pin");
    let _guard = Leftovers(cluster.clone());
    let (p, resources) = prepared_provider(dir.path(), &cluster).await;
    let limit = Duration::from_secs(120);
    let req = |name: &str, pool: &str, index: u32, role: Role| NodeRequest {
        cluster: cluster.clone(),
        name: name.into(),
        pool: PoolName::new(pool).unwrap(),
        index,
        role,
        host: None,
        instance_type: None,
    };
    let master = within(
        limit,
        "create master",
        p.create(&req("masters-1", "masters", 1, Role::Master)),
    )
    .await
    .expect("create master");
    within(
        limit,
        "create agent",
        p.create(&req("agents-1", "agents", 1, Role::Agent)),
    )
    .await
    .expect("create agent");
    let ip: std::net::Ipv4Addr = master.addresses[0].parse().expect("an IPv4 address");
    assert_eq!(ip.octets()[3], 254, "masters-1 takes the top address: {ip}");

    docker_ok(&["stop", "-t", "0", &format!("dcform-{cluster}-masters-1")]);
    // Docker hands out addresses in sequence: without a fixed one, the master would come back
    // at the address after this agent's.
    within(
        limit,
        "create agent 2",
        p.create(&req("agents-2", "agents", 2, Role::Agent)),
    )
    .await
    .expect("create agent 2");
    let node = NodeState {
        name: "masters-1".into(),
        pool: PoolName::new("masters").unwrap(),
        index: 1,
        role: Role::Master,
        host: None,
        provider_id: Some(master.provider_id.clone()),
        addresses: master.addresses.clone(),
        private_address: None,
        ssh_host_key: None,
        core_version: None,
        config_hash: None,
        status: NodeStatus::Running,
        replica_id: Some(1),
        replica_member: true,
    };
    let again = within(limit, "start master", p.start(&node))
        .await
        .expect("start master");
    assert_eq!(again.addresses, master.addresses, "the master moved");

    within(limit, "teardown", p.teardown(&resources))
        .await
        .expect("teardown");
    assert_eq!(labelled(&cluster), (0, 0, 0));
}
