//! Service discovery on the docker provider, end to end against the real Docker Engine: a cluster of
//! one master and one agent applies; in the agent's container `/etc/resolv.conf` names the master
//! only, `leader.dccore` resolves to the master's address (answered by the master's DNS server),
//! and a name outside the cluster domain that the container resolved before (the master's container
//! name, which only Docker's embedded DNS knows) still resolves: the master relays it to the
//! resolver the node had. The master keeps that original beside its config. A service declared in
//! the definition is deployed by the next apply, its instance is found by name from the master's
//! container (`web.marathon.dccore` → the agent's address), and it goes with its block.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;
mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::ok;
use support::providers::{
    Env, Leftovers, container_ip, dcform, docker_example, docker_ok, labelled, resolve_until,
    unique,
};

/// `examples/docker.hcl`, renamed, without its public agent (1 master, `-var agents=1`: 1 agent).
fn definition(dir: &Path, cluster: &str) -> String {
    let public = "  pool \"public\" {\n    role  = \"public_agent\"\n    count = 1\n  }\n";
    docker_example(dir, cluster, "dns.hcl", &[(public, "")])
}

/// `getent hosts NAME` in `container` until it answers: the addresses it gave.
async fn resolve(container: &str, name: &str, limit: Duration) -> Vec<String> {
    resolve_until(container, name, limit, |code, _| code == Some(0)).await
}

/// `getent hosts NAME` in `container` until it finds nothing.
async fn unresolved(container: &str, name: &str, limit: Duration) {
    resolve_until(container, name, limit, |code, _| code == Some(2)).await;
}

/// `dcform ARGS -var agents=1 DEF` in `dir`: the definition with one agent.
async fn one_agent(env: &Env, dir: &Path, args: &[&str], def: &str) -> Output {
    let mut all = args.to_vec();
    all.extend(["-var", "agents=1", def]);
    dcform(env, dir, &all).await
}

/// A service of one instance, as a definition declares it.
const SERVICE: &str = "  service \"web\" {\n    cmd       = \"sleep 3600\"\n    instances = 1\n    cpus      = 0.1\n    mem       = 16\n  }\n";

/// The definition at `dir/def` with [`SERVICE`] in its cluster block (`with`) or without it.
fn with_service(dir: &Path, def: &str, with: bool) {
    let path = dir.join(def);
    let text = std::fs::read_to_string(&path).expect("definition");
    let text = if with {
        let end = text.rfind('}').expect("the cluster block's end");
        format!("{}{SERVICE}{}", &text[..end], &text[end..])
    } else {
        text.replace(SERVICE, "")
    };
    std::fs::write(&path, text).expect("write definition");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_resolve_the_cluster_domain_through_the_master_other_names_through_its_relay_and_a_declared_service_by_name()
 {
    let Some(env) = support::providers::env() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = unique("dns");
    let _guard = Leftovers(cluster.clone());
    let def = definition(dir.path(), &cluster);
    let o = one_agent(&env, dir.path(), &["apply", "--auto-approve"], &def).await;
    let t = ok(&o, "apply");
    assert!(t.contains("Apply complete! Nodes: 2 added"), "{t}");

    let master = format!("dcform-{cluster}-masters-1");
    let agent = format!("dcform-{cluster}-agents-1");
    let (master_ip, agent_ip) = (container_ip(&master), container_ip(&agent));

    // The agent asks the master and nobody else (not Docker's 127.0.0.11 directly).
    let resolv = docker_ok(&["exec", &agent, "cat", "/etc/resolv.conf"]);
    let nameservers: Vec<&str> = resolv
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver "))
        .collect();
    assert_eq!(nameservers, [master_ip.as_str()], "{resolv}");
    // The master relays to what the node had: Docker's embedded DNS.
    let orig = docker_ok(&["exec", &master, "cat", "/etc/dcform/resolv.conf.orig"]);
    assert!(orig.lines().any(|l| l == "nameserver 127.0.0.11"), "{orig}");

    let limit = Duration::from_secs(30);
    assert_eq!(
        resolve(&agent, "leader.dccore", limit).await,
        [master_ip.as_str()],
        "leader.dccore from the agent"
    );
    assert_eq!(
        resolve(&agent, "master.dccore", limit).await,
        [master_ip.as_str()],
        "master.dccore from the agent"
    );
    // Outside the cluster domain: names only Docker's DNS knows, relayed by the master.
    assert_eq!(resolve(&agent, &master, limit).await, [master_ip.as_str()]);
    assert_eq!(resolve(&agent, &agent, limit).await, [agent_ip.as_str()]);
    // The master resolves through itself too.
    assert_eq!(
        resolve(&master, "leader.dccore", limit).await,
        [master_ip.as_str()]
    );
    assert_eq!(resolve(&master, &agent, limit).await, [agent_ip.as_str()]);

    // A declared service: apply deploys it (and waits for it), DNS finds its instance.
    with_service(dir.path(), &def, true);
    let o = one_agent(&env, dir.path(), &["apply", "--auto-approve"], &def).await;
    let t = ok(&o, "apply with a service");
    assert!(t.contains("+ service /web deploy: 1 instance"), "{t}");
    assert_eq!(
        resolve(&master, "web.marathon.dccore", limit).await,
        [agent_ip.as_str()],
        "the instance's A record from the master's container"
    );
    let o = one_agent(&env, dir.path(), &["plan", "--detailed-exitcode"], &def).await;
    assert_eq!(o.status.code(), Some(0), "no drift: {}", common::text(&o));
    // Its block removed: apply removes the app, and the name goes with the instance.
    with_service(dir.path(), &def, false);
    let o = one_agent(&env, dir.path(), &["apply", "--auto-approve"], &def).await;
    let t = ok(&o, "apply without the service");
    assert!(t.contains("- service /web remove"), "{t}");
    unresolved(&master, "web.marathon.dccore", limit).await;

    let o = one_agent(&env, dir.path(), &["destroy", "--auto-approve"], &def).await;
    ok(&o, "destroy");
    assert_eq!(labelled(&cluster), (0, 0, 0), "labelled objects left");
}
