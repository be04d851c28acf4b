//! What each step renders, per role and layout.

pub(super) use super::*;
use crate::plan::{Action, CoreTarget, NodeChange};
use crate::spec::{
    ClusterSpec, CoreSpec, LocalProvider, PoolSize, PoolSpec, ProviderSpec, SshSpec,
};
use crate::state::NodeStatus;
use std::collections::BTreeMap;

pub(super) fn node(name: &str, pool: &str, role: Role, addr: &str) -> NodeState {
    NodeState {
        name: name.into(),
        pool: crate::spec::PoolName::new(pool).expect("valid pool name"),
        index: 1,
        role,
        host: None,
        provider_id: None,
        addresses: vec![addr.into()],
        private_address: None,
        ssh_host_key: None,
        core_version: None,
        config_hash: None,
        status: NodeStatus::Running,
        replica_id: None,
        replica_member: false,
    }
}

pub(super) fn ctx(n: NodeState, steps: Vec<Step>) -> NodeContext {
    let pool = |name: &str, role| PoolSpec {
        name: crate::spec::PoolName::new(name).expect("valid pool name"),
        role,
        size: PoolSize::Count(1),
        attributes: BTreeMap::new(),
        resources: None,
        instance_type: None,
    };
    NodeContext {
        spec: Arc::new(ClusterSpec {
            name: "demo".into(),
            provider: ProviderSpec::Local(LocalProvider::default()),
            ssh: SshSpec::default(),
            core: CoreSpec::default(),
            pools: vec![pool("masters", Role::Master), pool("agents", Role::Agent)],
            services: vec![],
            definition_dir: PathBuf::from("."),
        }),
        change: NodeChange {
            node: n.name.clone(),
            pool: n.pool.clone(),
            index: n.index,
            role: n.role,
            host: None,
            action: Action::Create,
            reason: "test".into(),
            steps,
            wave: 0,
            config_hash: None,
            // A master of these tests founds its group, as the first master of a new cluster.
            replica_id: (n.role == Role::Master).then_some(1),
            leaves_replica_id: None,
            founds_group: n.role == Role::Master,
        },
        node: n,
        core: CoreTarget {
            version: "1.0.0".into(),
        },
        masters: vec![node("masters-1", "masters", Role::Master, "10.0.0.2")],
        resources: BTreeMap::new(),
    }
}

pub(super) fn installer(layout: Layout) -> ScriptInstaller {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = crate::pki::ClusterCa::load_or_create(dir.path(), "demo").expect("CA");
    ScriptInstaller {
        core: Some(crate::core_binary::CoreBinary {
            path: PathBuf::from("/tmp/dccore"),
            version: "1.0.0".into(),
            sha256: "0".repeat(64),
            arch: "x86_64".into(),
        }),
        secrets: Arc::new(NodeSecrets {
            operator_token: b"operator-secret".to_vec(),
            agent_token: b"agent-secret".to_vec(),
            replica_secret: b"replica-secret".to_vec(),
            ca: Some(ca),
            credentials_json: b"{\"credentials\":[]}".to_vec(),
            acls_json: b"{}".to_vec(),
        }),
        layout,
        controller_epoch: 1_800_000_000,
    }
}

/// Scripts with where they run: `(on_master, label, script)`.
fn scripts(ops: &[RemoteOp]) -> Vec<(bool, &str, &str)> {
    ops.iter()
        .filter_map(|op| match op {
            RemoteOp::Run { label, script, .. } => Some((false, label.as_str(), script.as_str())),
            RemoteOp::OnMaster(inner) => match inner.as_ref() {
                RemoteOp::Run { label, script, .. } => {
                    Some((true, label.as_str(), script.as_str()))
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// Files written: `(dest, mode, contents)`.
fn writes(ops: &[RemoteOp]) -> Vec<(&str, u32, String)> {
    ops.iter()
        .filter_map(|op| match op {
            RemoteOp::Write {
                contents,
                dest,
                mode,
            } => Some((
                dest.as_str(),
                *mode,
                String::from_utf8_lossy(contents).into_owned(),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn agent_waits_for_its_own_live_registration_and_drains_by_its_advertised_url() {
    let i = installer(Layout::Host);
    let c = ctx(node("agents-1", "agents", Role::Agent, "10.0.0.3"), vec![]);
    let ops = i.ops(Step::WaitHealthy, &c).expect("render");
    let [(false, _, wait)] = scripts(&ops)[..] else {
        panic!("one script on the node: {ops:?}");
    };
    // Judged from what the agent running now was told by the master, not from the master's
    // memory (which lists a dead agent as active until its timeout); no operator token needed.
    assert!(
        wait.contains("/usr/local/bin/dccore probe $pf --agent-work-dir /var/lib/dcform/agent\n"),
        "{wait}"
    );
    assert!(
        wait.contains("pf=\"--pid-file /run/dcform/agent.pid\""),
        "the supervisor must run (a stale pid file fails): {wait}"
    );
    assert!(!wait.contains("--token-file"), "{wait}");
    let RemoteOp::Run { until_ok, .. } = &ops[0] else {
        panic!("{ops:?}");
    };
    assert!(until_ok.is_some(), "health is retried");

    // Drain and reactivate are operator calls: they run on the master, with its token.
    for (step, verb) in [(Step::Drain, "drain"), (Step::Reactivate, "reactivate")] {
        let ops = i.ops(step, &c).expect("render");
        let [(true, label, script)] = scripts(&ops)[..] else {
            panic!("one script on the master: {ops:?}");
        };
        assert_eq!(label, verb);
        assert!(
            script.contains(&format!(
                "/usr/local/bin/dccore {verb} --master https://10.0.0.2:5050 --token-file /etc/dcform/master.token \
                 --agent-url https://10.0.0.3:5051 --ca-file /etc/dcform/ca.pem"
            )),
            "{script}"
        );
    }
    // The agent advertises the very URL the probe and the drain look for.
    let ops = i.ops(Step::Start, &c).expect("render");
    let [(false, _, install)] = scripts(&ops)[..] else {
        panic!("one script: {ops:?}");
    };
    assert!(
        install.contains("--advertise-url https://10.0.0.3:5051"),
        "{install}"
    );
    assert!(
        install.contains("--master https://10.0.0.2:5050"),
        "{install}"
    );
}

/// Found: one token was shared by operators and every agent. An agent node gets the agents'
/// credential, its own certificate and key (0600) and the CA; never the operator token.
#[test]
fn an_agent_node_never_receives_the_operator_token() {
    let i = installer(Layout::Host);
    let c = ctx(node("agents-1", "agents", Role::Agent, "10.0.0.3"), vec![]);
    let ops = i.ops(Step::Install, &c).expect("render");
    let w = writes(&ops);
    assert!(
        w.iter().all(|(_, _, c)| !c.contains("operator-secret")),
        "{:?}",
        w.iter().map(|(d, _, _)| d).collect::<Vec<_>>()
    );
    let file = |d: &str| w.iter().find(|(dest, _, _)| *dest == d).cloned();
    assert_eq!(
        file("/etc/dcform/agent.token").map(|(_, m, c)| (m, c)),
        Some((0o600, "agent-secret".to_string()))
    );
    let (_, mode, key) = file("/etc/dcform/agent.key").expect("a key");
    assert_eq!(mode, 0o600);
    assert!(key.contains("PRIVATE KEY"));
    assert!(file("/etc/dcform/agent.crt").is_some() && file("/etc/dcform/ca.pem").is_some());
    assert!(file("/etc/dcform/credentials.json").is_none());
}

#[test]
fn a_master_node_gets_the_operator_token_agent_credentials_and_the_principals() {
    let i = installer(Layout::Host);
    let c = ctx(
        node("masters-1", "masters", Role::Master, "10.0.0.2"),
        vec![],
    );
    let ops = i.ops(Step::Configure, &c).expect("render");
    let w = writes(&ops);
    for (dest, mode) in [
        ("/etc/dcform/master.token", 0o600),
        ("/etc/dcform/agent-tokens", 0o600),
        ("/etc/dcform/credentials.json", 0o600),
        ("/etc/dcform/acls.json", 0o600),
        ("/etc/dcform/master.key", 0o600),
    ] {
        assert!(
            w.iter().any(|(d, m, _)| *d == dest && *m == mode),
            "{dest} {mode:o} missing: {:?}",
            w.iter().map(|(d, m, _)| (d, m)).collect::<Vec<_>>()
        );
    }
}

#[test]
fn master_probes_itself_over_https_and_has_nothing_to_drain() {
    let i = installer(Layout::Host);
    let c = ctx(
        node("masters-1", "masters", Role::Master, "10.0.0.2"),
        vec![],
    );
    let ops = i.ops(Step::WaitHealthy, &c).expect("render");
    let [(false, _, wait)] = scripts(&ops)[..] else {
        panic!("one script: {ops:?}");
    };
    assert!(
        wait.contains("probe $pf --master https://10.0.0.2:5050 --token-file /etc/dcform/master.token --timeout-secs 5 --ca-file /etc/dcform/ca.pem\n"),
        "{wait}"
    );
    assert!(!wait.contains("--agent-url"), "{wait}");
    assert!(i.ops(Step::Drain, &c).expect("render").is_empty());
}

#[test]
fn plain_http_only_when_the_definition_asks_for_it() {
    let i = installer(Layout::Host);
    let mut c = ctx(node("agents-1", "agents", Role::Agent, "10.0.0.3"), vec![]);
    let mut spec = (*c.spec).clone();
    spec.core.tls = false;
    c.spec = Arc::new(spec);
    let ops = i.ops(Step::Drain, &c).expect("render");
    let [(true, _, drain)] = scripts(&ops)[..] else {
        panic!("{ops:?}");
    };
    assert!(drain.contains("--master http://10.0.0.2:5050"), "{drain}");
    assert!(!drain.contains("--ca-file"), "{drain}");
}

#[test]
fn sandbox_agent_is_drained_from_the_masters_sandbox() {
    let i = installer(Layout::Sandbox {
        root: PathBuf::from("/tmp/c"),
    });
    let c = ctx(
        node("agents-1", "agents", Role::Agent, "127.0.0.1:40001"),
        vec![],
    );
    let ops = i.ops(Step::Drain, &c).expect("render");
    let [(true, _, drain)] = scripts(&ops)[..] else {
        panic!("one script: {ops:?}");
    };
    assert!(
        drain.contains(
            "/tmp/c/masters-1/bin/dccore drain --master https://10.0.0.2:5050 --token-file /tmp/c/masters-1/etc/master.token \
             --agent-url https://127.0.0.1:40001"
        ),
        "{drain}"
    );
}

/// Found on EC2: agents were told the masters' public addresses (NAT, not on any interface of the
/// instance) and listened on their own. In-cluster URLs use the private address; dcform's own calls
/// from outside use the public one.
#[test]
fn nodes_with_a_private_address_talk_to_each_other_over_it_and_dcform_over_the_public_one() {
    let i = installer(Layout::Host);
    let private = |mut n: NodeState, p: &str| {
        n.private_address = Some(p.into());
        n
    };
    let agent = private(
        node("agents-1", "agents", Role::Agent, "203.0.113.3"),
        "10.0.1.3",
    );
    let master = private(
        node("masters-1", "masters", Role::Master, "203.0.113.2"),
        "10.0.1.2",
    );
    let mut c = ctx(agent.clone(), vec![]);
    c.masters = vec![master.clone()];
    let ops = i.ops(Step::Start, &c).expect("render");
    let [(false, _, install)] = scripts(&ops)[..] else {
        panic!("one script: {ops:?}");
    };
    assert!(
        install.contains("--master https://10.0.1.2:5050"),
        "{install}"
    );
    assert!(
        install.contains("--advertise-url https://10.0.1.3:5051"),
        "{install}"
    );
    assert!(!install.contains("203.0.113."), "{install}");
    let ops = i.ops(Step::Drain, &c).expect("render");
    let [(true, _, drain)] = scripts(&ops)[..] else {
        panic!("one script on the master: {ops:?}");
    };
    assert!(
        drain.contains("--master https://10.0.1.2:5050")
            && drain.contains("--agent-url https://10.0.1.3:5051"),
        "{drain}"
    );
    assert_eq!(api_address(&master), "10.0.1.2:5050");
    assert_eq!(public_api_address(&master), "203.0.113.2:5050");
    // One address (sandboxes, containers, on-prem hosts): both are it.
    let one = node("masters-1", "masters", Role::Master, "172.18.0.2");
    assert_eq!(api_address(&one), public_api_address(&one));
    // A private agent (no public address) is reached at its private one, from anywhere.
    let mut hidden = agent;
    hidden.addresses.clear();
    assert_eq!(public_api_address(&hidden), "10.0.1.3:5051");
}

/// With replicated masters the drain names every master (as the agents are told them), so the
/// call reaches the leader wherever it is and passes over a master that does not answer; it ran
/// against the first master alone, which fails whenever that one is down.
#[test]
fn an_agent_of_three_masters_is_drained_through_every_master() {
    let i = installer(Layout::Host);
    let mut c = ctx(node("agents-1", "agents", Role::Agent, "10.0.0.9"), vec![]);
    let spec = Arc::make_mut(&mut c.spec);
    spec.pools[0].size = PoolSize::Count(3);
    c.masters = (1..=3)
        .map(|k| {
            let mut m = node(
                &format!("masters-{k}"),
                "masters",
                Role::Master,
                &format!("10.0.0.{}", k + 1),
            );
            m.index = k;
            m
        })
        .collect();
    for step in [Step::Drain, Step::Reactivate] {
        let ops = i.ops(step, &c).expect("render");
        let [(true, _, script)] = scripts(&ops)[..] else {
            panic!("one script on a master: {ops:?}");
        };
        assert!(
            script.contains(
                "--master https://10.0.0.2:5050,https://10.0.0.3:5050,https://10.0.0.4:5050 "
            ),
            "{script}"
        );
    }
}
