//! Provider `aws` end to end through the `dcform` binary, against a real moto server on 127.0.0.1
//! (the SDK's standard `AWS_ENDPOINT_URL_EC2` override, dummy static credentials). Every apply here is
//! `--infra-only`: moto's instances are not machines and their addresses are made up, so nothing
//! ever connects to them (no SSH, no ping). What EC2 holds is checked with moto's own Query API,
//! not with dcform's client.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;
mod moto_support;

use std::process::{Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::text;
use moto_support::{Fault, FaultProxy, Moto};

/// A public key for the example's key pair (the private half is never needed: nothing logs in).
const PUBLIC_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl dcform-test";

/// `examples/aws.hcl` in a folder of its own, with a private HOME holding the key the example's
/// default `~/.ssh/id_ed25519` names.
struct Cluster {
    dir: tempfile::TempDir,
}

impl Cluster {
    fn new() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(common::example("aws.hcl"), dir.path().join("aws.hcl")).unwrap();
        let ssh = dir.path().join(".ssh");
        std::fs::create_dir(&ssh).unwrap();
        std::fs::write(ssh.join("id_ed25519.pub"), PUBLIC_KEY).unwrap();
        std::fs::write(ssh.join("id_ed25519"), "not needed: nothing logs in\n").unwrap();
        Cluster { dir }
    }

    fn command(&self, endpoint: &str, args: &[&str]) -> Command {
        let mut c = common::command(args);
        c.current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env("AWS_ENDPOINT_URL_EC2", endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL");
        c
    }

    /// Runs dcform to completion (deadline: 120 s).
    fn run(&self, endpoint: &str, args: &[&str]) -> Output {
        dc_support::testing::output_within(
            Duration::from_secs(120),
            &mut self.command(endpoint, args),
        )
    }

    fn ok(&self, endpoint: &str, args: &[&str]) -> String {
        let o = self.run(endpoint, args);
        let t = text(&o);
        assert!(o.status.success(), "dcform {args:?} failed:\n{t}");
        t
    }

    /// `dcform apply --infra-only --auto-approve aws.hcl` and `extra`, which must succeed: its output.
    fn infra(&self, endpoint: &str, extra: &[&str]) -> String {
        let mut args = vec!["apply", "--infra-only", "--auto-approve", "aws.hcl"];
        args.extend_from_slice(extra);
        self.ok(endpoint, &args)
    }

    /// `dcform destroy --cluster aws-demo --provider aws --auto-approve` and `extra`: with no state.
    fn destroy_by_name(&self, endpoint: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "destroy",
            "--cluster",
            "aws-demo",
            "--provider",
            "aws",
            "--auto-approve",
        ];
        args.extend_from_slice(extra);
        self.run(endpoint, &args)
    }

    fn state(&self) -> serde_json::Value {
        let p = self.dir.path().join(".dcform/aws-demo/state.json");
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
    }
}

/// One live instance as moto reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    id: String,
    node: Option<String>,
    pool: Option<String>,
    instance_type: String,
    zone: String,
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = s.find(open)? + open.len();
    let end = s[start..].find(close)? + start;
    Some(&s[start..end])
}

/// The value of tag `key` in an instance's XML.
fn tag_value(chunk: &str, key: &str) -> Option<String> {
    let at = chunk.find(&format!("<key>{key}</key>"))?;
    between(&chunk[at..], "<value>", "</value>").map(str::to_string)
}

/// Live (pending/running/stopping/stopped) instances tagged with the cluster.
fn live(moto: &Moto, cluster: &str) -> Vec<Seen> {
    let xml = moto.ec2(&format!(
        "Action=DescribeInstances&Filter.1.Name=tag:dcform:cluster&Filter.1.Value.1={cluster}\
         &Filter.2.Name=instance-state-name&Filter.2.Value.1=pending&Filter.2.Value.2=running\
         &Filter.2.Value.3=stopping&Filter.2.Value.4=stopped"
    ));
    instance_items(&xml)
        .into_iter()
        .map(|item| Seen {
            id: between(item, "<instanceId>", "</instanceId>")
                .unwrap_or_default()
                .into(),
            node: tag_value(item, "dcform:node"),
            pool: tag_value(item, "dcform:pool"),
            instance_type: between(item, "<instanceType>", "</instanceType>")
                .unwrap_or_default()
                .into(),
            zone: between(item, "<availabilityZone>", "</availabilityZone>")
                .unwrap_or_default()
                .into(),
        })
        .collect()
}

/// The top-level `<item>`s of every `<instancesSet>`: one per instance (moto puts an instance's
/// `tagSet` before its `instanceId`, so the item's bounds matter).
fn instance_items(xml: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(set) = between(rest, "<instancesSet>", "</instancesSet>") {
        let mut depth = 0usize;
        let mut start = 0;
        let mut i = 0;
        while i < set.len() {
            if set[i..].starts_with("<item>") {
                if depth == 0 {
                    start = i;
                }
                depth += 1;
                i += "<item>".len();
            } else if set[i..].starts_with("</item>") {
                depth = depth.saturating_sub(1);
                i += "</item>".len();
                if depth == 0 {
                    out.push(&set[start..i]);
                }
            } else {
                i += set[i..].chars().next().map_or(1, char::len_utf8);
            }
        }
        let end = rest.find("</instancesSet>").unwrap_or(rest.len()) + "</instancesSet>".len();
        rest = &rest[end.min(rest.len())..];
    }
    out
}

fn nodes_of(seen: &[Seen]) -> Vec<String> {
    let mut v: Vec<String> = seen
        .iter()
        .map(|s| {
            s.node
                .clone()
                .unwrap_or_else(|| format!("untagged {}", s.id))
        })
        .collect();
    v.sort();
    v
}

fn names(pool: &str, n: u32) -> Vec<String> {
    (1..=n).map(|i| format!("{pool}-{i}")).collect()
}

fn example_nodes(agents: u32) -> Vec<String> {
    let mut v: Vec<String> = names("masters", 3)
        .into_iter()
        .chain(names("agents", agents))
        .chain(names("public", 1))
        .collect();
    v.sort();
    v
}

#[test]
fn the_aws_example_validates_with_no_variables_set() {
    // No moto needed: validation never talks to AWS.
    let c = Cluster::new();
    let o = c.run("http://127.0.0.1:9", &["validate", "aws.hcl"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("cluster \"aws-demo\", 9 node(s) in 3 pool(s), provider \"aws\""),
        "{t}"
    );
}

#[tokio::test]
async fn apply_infra_only_creates_the_tagged_network_and_3_masters_5_agents_1_public_agent() {
    let Some((_g, moto)) = moto_support::session().await else {
        return;
    };
    let c = Cluster::new();
    let out = c.infra(&moto.url, &[]);
    assert!(out.contains("Apply complete! Nodes: 9 added"), "{out}");

    let seen = live(moto, "aws-demo");
    assert_eq!(nodes_of(&seen), example_nodes(5), "{seen:#?}");
    for s in &seen {
        let want = if s.pool.as_deref() == Some("agents") {
            "m5.xlarge"
        } else {
            "m5.large"
        };
        assert_eq!(s.instance_type, want, "{s:?}");
    }
    // Spread over three zones, round-robin by index.
    let zone = |n: &str| {
        seen.iter()
            .find(|s| s.node.as_deref() == Some(n))
            .map(|s| s.zone.clone())
            .unwrap()
    };
    assert_eq!(zone("masters-1"), "us-east-1a");
    assert_eq!(zone("masters-2"), "us-east-1b");
    assert_eq!(zone("masters-3"), "us-east-1c");
    assert_eq!(zone("agents-4"), "us-east-1a");

    assert_eq!(moto.tagged("DescribeVpcs", "aws-demo", "vpcId"), 1);
    assert_eq!(moto.tagged("DescribeSubnets", "aws-demo", "subnetId"), 3);
    assert_eq!(
        moto.tagged("DescribeInternetGateways", "aws-demo", "internetGatewayId"),
        1
    );
    assert_eq!(
        moto.tagged("DescribeRouteTables", "aws-demo", "routeTableId"),
        1
    );
    let groups = moto.ec2(
        "Action=DescribeSecurityGroups&Filter.1.Name=tag:dcform:cluster&Filter.1.Value.1=aws-demo",
    );
    for g in ["aws-demo-nodes", "aws-demo-admin", "aws-demo-public"] {
        assert!(
            groups.contains(&format!("<groupName>{g}</groupName>")),
            "{g} missing: {groups}"
        );
    }
    assert!(
        groups.contains("<fromPort>5050</fromPort>")
            && groups.contains("<fromPort>31000</fromPort>"),
        "{groups}"
    );
    // Named and tagged after the state's lineage: another cluster of this name has its own.
    let lineage = c.state()["lineage"].as_str().unwrap().to_string();
    assert_eq!(
        moto.count(
            &format!(
                "Action=DescribeKeyPairs&KeyName.1=dcform-aws-demo-{}",
                &lineage[..8]
            ),
            "keyName"
        ),
        1
    );
    assert_eq!(
        moto.count(
            "Action=DescribeKeyPairs&Filter.1.Name=key-name&Filter.1.Value.1=dcform-aws-demo*",
            "keyName"
        ),
        1,
        "the wildcard assert_nothing_left relies on"
    );
    for (action, elem) in [
        ("DescribeInstances", "instanceId"),
        ("DescribeVpcs", "vpcId"),
        ("DescribeSubnets", "subnetId"),
        ("DescribeSecurityGroups", "groupId"),
        ("DescribeInternetGateways", "internetGatewayId"),
        ("DescribeRouteTables", "routeTableId"),
        ("DescribeKeyPairs", "keyName"),
    ] {
        let by_name = moto.tagged(action, "aws-demo", elem);
        assert!(by_name > 0, "{action}");
        assert_eq!(
            moto.tagged_with(action, "dcform:lineage", &lineage, elem),
            by_name,
            "{action}: everything of the cluster carries its lineage"
        );
    }

    // The state: every node created (not bootstrapped), with its instance id and addresses; the
    // network recorded; outputs for the user.
    let st = c.state();
    let nodes = st["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 9);
    for n in nodes {
        assert_eq!(n["status"], "created", "{n}");
        assert!(n["provider_id"].as_str().unwrap().starts_with("i-"), "{n}");
    }
    assert!(
        st["resources"]["aws_vpc"]
            .as_str()
            .unwrap()
            .starts_with("vpc-"),
        "{st}"
    );
    assert_eq!(
        st["outputs"]["instance_ids"]["masters"]
            .as_array()
            .unwrap()
            .len(),
        3,
        "{st}"
    );
    assert_eq!(
        st["outputs"]["public_agent_addresses"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{st}"
    );

    // The next plain apply would bootstrap them (install), not create them again.
    let plan = c.run(&moto.url, &["plan", "aws.hcl"]);
    let p = text(&plan);
    assert!(
        p.contains("Plan: 0 to add, 9 to change, 0 to destroy."),
        "{p}"
    );
    // And another --infra-only apply has nothing to do.
    let again = c.infra(&moto.url, &[]);
    assert_eq!(live(moto, "aws-demo").len(), 9, "{again}");
}

#[tokio::test]
async fn scaling_a_pool_up_and_down_launches_or_terminates_only_those_instances() {
    let Some((_g, moto)) = moto_support::session().await else {
        return;
    };
    let c = Cluster::new();
    c.infra(&moto.url, &[]);
    let before = live(moto, "aws-demo");

    c.infra(&moto.url, &["-var", "agents=7"]);
    let up = live(moto, "aws-demo");
    assert_eq!(nodes_of(&up), example_nodes(7));
    for b in &before {
        assert!(
            up.iter().any(|u| u.id == b.id),
            "{:?} was replaced on scale-up",
            b.node
        );
    }

    c.infra(&moto.url, &["-var", "agents=3"]);
    let down = live(moto, "aws-demo");
    assert_eq!(nodes_of(&down), example_nodes(3));
    for d in &down {
        assert!(
            up.iter().any(|u| u.id == d.id),
            "{:?} is new after a scale-down",
            d.node
        );
    }
    assert_eq!(c.state()["nodes"].as_array().unwrap().len(), 7);
}

#[tokio::test]
async fn an_instance_terminated_outside_dcform_is_planned_again_and_relaunched() {
    let Some((_g, moto)) = moto_support::session().await else {
        return;
    };
    let c = Cluster::new();
    c.infra(&moto.url, &[]);
    let victim = live(moto, "aws-demo")
        .into_iter()
        .find(|s| s.node.as_deref() == Some("agents-2"))
        .unwrap();
    moto.ec2(&format!(
        "Action=TerminateInstances&InstanceId.1={}",
        victim.id
    ));
    let plan = text(&c.run(&moto.url, &["plan", "aws.hcl"]));
    assert!(plan.contains("agents-2"), "{plan}");
    assert!(plan.contains("Plan: 1 to add"), "{plan}");
    c.infra(&moto.url, &[]);
    let after = live(moto, "aws-demo");
    assert_eq!(nodes_of(&after), example_nodes(5));
    assert!(after.iter().all(|s| s.id != victim.id));
}

#[tokio::test]
async fn destroy_leaves_no_tagged_resource() {
    let Some((_g, moto)) = moto_support::session().await else {
        return;
    };
    let c = Cluster::new();
    c.infra(&moto.url, &[]);
    let out = c.ok(&moto.url, &["destroy", "--auto-approve", "aws.hcl"]);
    assert!(
        out.contains("Destroy complete! Nodes: 9 destroyed."),
        "{out}"
    );
    assert_nothing_left(moto, "aws-demo");
    let st = c.state();
    assert!(
        st["nodes"].as_array().unwrap().is_empty()
            && st["resources"].as_object().unwrap().is_empty(),
        "{st}"
    );
}

fn assert_nothing_left(moto: &Moto, cluster: &str) {
    assert_eq!(live(moto, cluster), vec![], "live instances left");
    assert_eq!(
        moto.network_left(cluster),
        vec![],
        "resources still tagged {cluster}"
    );
    assert_eq!(
        moto.count(
            &format!(
                "Action=DescribeKeyPairs&Filter.1.Name=key-name&Filter.1.Value.1=dcform-{cluster}*"
            ),
            "keyName"
        ),
        0
    );
}

#[tokio::test]
async fn destroy_by_cluster_name_with_the_state_lost_finds_everything_by_tag() {
    let Some((_g, moto)) = moto_support::session().await else {
        return;
    };
    let c = Cluster::new();
    c.infra(&moto.url, &[]);
    std::fs::remove_dir_all(c.dir.path().join(".dcform")).unwrap();
    let o = c.destroy_by_name(&moto.url, &[]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("Removed 9 instance(s)"), "{out}");
    assert_nothing_left(moto, "aws-demo");
}

#[tokio::test]
async fn an_apply_killed_inside_run_instances_then_applied_again_launches_no_duplicate() {
    let Some((_g, moto)) = moto_support::session().await else {
        return;
    };
    let c = Cluster::new();
    // moto creates the instances; the proxy holds the answer, so dcform never learns their ids.
    let proxy = FaultProxy::start(
        moto.addr,
        Fault {
            action: "RunInstances".into(),
            fail: 0,
            code: String::new(),
            hold: Duration::from_secs(30),
        },
    );
    let mut child = c
        .command(
            &proxy.url,
            &["apply", "--infra-only", "--auto-approve", "aws.hcl"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    // All three pools' launches made by moto, none answered.
    while proxy.forwarded.load(Ordering::SeqCst) < 3 {
        assert!(
            Instant::now() < deadline,
            "dcform did not get to RunInstances within 60 s"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "dcform exited before being killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: no chance to record anything
    child.wait().unwrap();
    drop(proxy);
    let orphans = live(moto, "aws-demo");
    assert!(orphans.len() >= 3, "moto made the instances: {orphans:?}");
    let st = c.state();
    assert!(
        st["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["provider_id"].is_null()),
        "the killed apply recorded no instance: {st}"
    );

    c.infra(&moto.url, &[]);
    let after = live(moto, "aws-demo");
    assert_eq!(
        nodes_of(&after),
        example_nodes(5),
        "one instance per node: {after:#?}"
    );
    for o in &orphans {
        assert!(
            after.iter().any(|a| a.id == o.id),
            "{} was not adopted",
            o.id
        );
    }
}

#[tokio::test]
async fn throttling_during_apply_is_retried_and_launches_each_node_once() {
    let Some((_g, moto)) = moto_support::session().await else {
        return;
    };
    let c = Cluster::new();
    let proxy = FaultProxy::start(
        moto.addr,
        Fault {
            action: "RunInstances".into(),
            fail: 3,
            code: "RequestLimitExceeded".into(),
            hold: Duration::ZERO,
        },
    );
    c.infra(&proxy.url, &[]);
    assert_eq!(proxy.injected.load(Ordering::SeqCst), 3);
    assert_eq!(nodes_of(&live(moto, "aws-demo")), example_nodes(5));
}

#[tokio::test]
async fn an_instance_limit_error_is_reported_with_the_aws_code_and_what_to_do() {
    let Some((_g, moto)) = moto_support::session().await else {
        return;
    };
    let c = Cluster::new();
    let proxy = FaultProxy::start(
        moto.addr,
        Fault {
            action: "RunInstances".into(),
            fail: usize::MAX,
            code: "InstanceLimitExceeded".into(),
            hold: Duration::ZERO,
        },
    );
    let o = c.run(
        &proxy.url,
        &["apply", "--infra-only", "--auto-approve", "aws.hcl"],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("RunInstances pool masters"), "{t}");
    assert!(t.contains("InstanceLimitExceeded"), "{t}");
    assert!(t.contains("Service Quotas"), "{t}");
    // Not retried: a quota does not go away by waiting. One call per pool and zone (3 + 3 + 1).
    assert_eq!(proxy.injected.load(Ordering::SeqCst), 7);
    assert_eq!(live(moto, "aws-demo"), vec![]);
}

/// Private agents (`private_agents = true`): launched with no public address; the state records the
/// private one, and the route dcform's SSH would take (recorded in the outputs, nothing connects)
/// goes through the first master's public address. Masters and the public agent keep theirs.
#[tokio::test]
async fn private_agents_have_no_public_address_and_are_routed_through_the_first_master() {
    let Some((_g, moto)) = moto_support::session().await else {
        return;
    };
    let c = Cluster::new();
    c.infra(&moto.url, &["-var", "private_agents=true"]);
    // EC2's own view: which instances have a public address.
    let xml = moto
        .ec2("Action=DescribeInstances&Filter.1.Name=tag:dcform:cluster&Filter.1.Value.1=aws-demo");
    for item in instance_items(&xml) {
        let node = tag_value(item, "dcform:node").unwrap();
        let public = between(item, "<ipAddress>", "</ipAddress>").filter(|a| !a.is_empty());
        assert_eq!(
            public.is_none(),
            node.starts_with("agents-"),
            "{node}: public address {public:?}"
        );
    }
    let state = c.state();
    let nodes = state["nodes"].as_array().unwrap();
    let find = |name: &str| nodes.iter().find(|n| n["name"] == name).unwrap();
    let m1 = find("masters-1");
    let m1_public = m1["addresses"][0].as_str().unwrap();
    assert!(m1["private_address"].as_str().is_some(), "{m1}");
    let routes = &state["outputs"]["ssh_routes"];
    for n in nodes {
        let name = n["name"].as_str().unwrap();
        if name.starts_with("agents-") {
            assert_eq!(n["addresses"], serde_json::json!([]), "{n}");
            let private = n["private_address"].as_str().unwrap();
            assert_eq!(
                routes[name],
                format!("ubuntu@{m1_public}:22 (masters-1) -> {private}"),
                "{routes}"
            );
        } else {
            assert!(n["addresses"][0].as_str().is_some(), "{n}");
            assert!(routes.get(name).is_none(), "{routes}");
        }
    }
}

/// Two clusters of one name in one account (two states, so two lineages): each gets its own network
/// and instances (neither adopts the other's), `destroy --cluster NAME` with the states lost refuses
/// to choose and lists both, `--lineage L` removes exactly one, and then the other is the only one.
#[tokio::test]
async fn destroy_by_cluster_name_with_two_lineages_needs_lineage_and_removes_only_that_one() {
    let Some((_g, moto)) = moto_support::session().await else {
        return;
    };
    let (a, b) = (Cluster::new(), Cluster::new());
    for c in [&a, &b] {
        c.infra(&moto.url, &[]);
    }
    let lineage = |c: &Cluster| c.state()["lineage"].as_str().unwrap().to_string();
    let (la, lb) = (lineage(&a), lineage(&b));
    assert_ne!(la, lb);
    assert_eq!(
        live(moto, "aws-demo").len(),
        18,
        "one set of 9 instances each"
    );
    assert_eq!(moto.tagged("DescribeVpcs", "aws-demo", "vpcId"), 2);
    for c in [&a, &b] {
        std::fs::remove_dir_all(c.dir.path().join(".dcform")).unwrap();
    }
    let destroy = |extra: &[&str]| a.destroy_by_name(&moto.url, extra);
    let o = destroy(&[]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("2 clusters named \"aws-demo\"")
            && t.contains(&format!("--lineage {la}"))
            && t.contains(&format!("--lineage {lb}")),
        "{t}"
    );
    assert_eq!(live(moto, "aws-demo").len(), 18, "nothing removed: {t}");

    let o = destroy(&["--lineage", &la]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("Removed 9 instance(s)"), "{t}");
    let left = live(moto, "aws-demo");
    assert_eq!(left.len(), 9, "{t}");
    assert_eq!(
        moto.tagged_with("DescribeInstances", "dcform:lineage", &la, "instanceId"),
        moto.tagged_with(
            "DescribeInstances&Filter.2.Name=instance-state-name&Filter.2.Value.1=terminated",
            "dcform:lineage",
            &la,
            "instanceId"
        ),
        "every instance of {la} is terminated"
    );
    assert_eq!(
        moto.tagged_with("DescribeVpcs", "dcform:lineage", &la, "vpcId"),
        0
    );
    assert_eq!(
        moto.tagged_with("DescribeVpcs", "dcform:lineage", &lb, "vpcId"),
        1
    );

    // An unknown lineage is refused, naming what there is.
    let o = destroy(&["--lineage", "not-a-lineage"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains(&format!("--lineage {lb}")), "{t}");
    assert_eq!(live(moto, "aws-demo").len(), 9);

    // One lineage left: no flag needed.
    let o = destroy(&[]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains(&format!("lineage {lb}:")), "{t}");
    assert_nothing_left(moto, "aws-demo");
}

/// `apply --infra-only` uploads nothing, so it needs no core binary: with `DCFORM_CORE_BINARY`
/// pointing nowhere it still makes the machines, where a plain apply refuses before touching EC2.
#[tokio::test]
async fn apply_infra_only_needs_no_core_binary() {
    let Some((_g, moto)) = moto_support::session().await else {
        return;
    };
    let c = Cluster::new();
    let nowhere = c.dir.path().join("no-such-dccore");
    let run = |args: &[&str]| {
        dc_support::testing::output_within(
            Duration::from_secs(120),
            c.command(&moto.url, args)
                .env("DCFORM_CORE_BINARY", &nowhere),
        )
    };
    let o = run(&["apply", "--auto-approve", "aws.hcl"]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("no-such-dccore"),
        "the error names the binary: {t}"
    );
    assert_eq!(live(moto, "aws-demo"), vec![], "nothing launched: {t}");

    let o = run(&["apply", "--infra-only", "--auto-approve", "aws.hcl"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert_eq!(live(moto, "aws-demo").len(), 9, "{t}");
    // Nothing was installed, so no core is recorded as installed.
    assert!(c.state()["resources"].get("core_version").is_none(), "{t}");
}
