//! dcform-aws against a real moto server (EC2 Query API on 127.0.0.1). Never connects to the made-up
//! instance addresses moto hands out.

#[path = "../../../tests/moto_support/mod.rs"]
mod moto_support;

use std::sync::Arc;
use std::time::Duration;

use dcform_aws::{Ec2, Launcher, NetworkSpec, NodeSlot, PoolTemplate, Settings, WaitPolicy, tags};
use moto_support::{Fault, FaultProxy};

const T: Duration = Duration::from_secs(60);

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    dc_support::testing::within(T, what, f).await
}

fn settings(url: &str) -> Settings {
    Settings {
        region: Some("us-east-1".into()),
        endpoint: Some(url.into()),
        max_attempts: Some(4),
        initial_backoff: Some(Duration::from_millis(20)),
        static_credentials: Some(("testing".into(), "testing".into())),
        lineage: None,
    }
}

fn network(cluster: &str) -> NetworkSpec {
    NetworkSpec {
        cluster: cluster.into(),
        cidr: "10.0.0.0/16".into(),
        zones: vec![],
        subnet_ids: vec![],
        admin_cidrs: vec!["192.0.2.0/24".into()],
        admin_ports: vec![22, 5050],
        public_ports: vec![(80, 80), (443, 443), (10000, 10100)],
        public_key: Some(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test"
                .into(),
        ),
    }
}

fn template(cluster: &str, pool: &str, net: &dcform_aws::Network) -> PoolTemplate {
    PoolTemplate {
        cluster: cluster.into(),
        pool: pool.into(),
        role: "agent".into(),
        instance_type: "m5.large".into(),
        ami: "ami-1e749f67".into(),
        root_device: "/dev/sda1".into(),
        root_volume_gb: Some(40),
        root_volume_type: Some("gp3".into()),
        extra_volumes: vec![],
        user_data: Some("#!/bin/sh\necho hello\n".into()),
        public_ip: true,
        security_groups: vec![net.nodes_sg.clone(), net.admin_sg.clone()],
        key_name: net.key_name.clone(),
    }
}

fn slot(pool: &str, i: u32) -> NodeSlot {
    NodeSlot {
        name: format!("{pool}-{i}"),
        index: i,
    }
}

/// Launches `indices` of `pool` through one launcher, concurrently, as the executor does.
async fn launch_all(
    l: &Launcher,
    t: &Arc<PoolTemplate>,
    net: &dcform_aws::Network,
    pool: &str,
    indices: impl Iterator<Item = u32>,
) -> Vec<dcform_aws::Instance> {
    let calls = indices.map(|i| {
        let subnet = net.subnet_for(i).expect("subnets").clone();
        l.launch(t.clone(), subnet, slot(pool, i))
    });
    let mut out = Vec::new();
    let mut set = Vec::new();
    for c in calls {
        set.push(c);
    }
    // All at once (join), like the executor's node tasks.
    let results = join_all(set).await;
    for r in results {
        out.push(r.expect("launch"));
    }
    out
}

async fn join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (k, f) in pinned.iter_mut().enumerate() {
            if out[k].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[k] = Some(v),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("all ready")).collect()
}

#[tokio::test]
async fn the_network_is_created_once_tagged_and_found_again_by_the_next_apply() {
    let Some((_g, moto)) = moto_support::session().await else {
        return;
    };
    let ec2 = within("connect", Ec2::connect(&settings(&moto.url)))
        .await
        .unwrap();
    let first = within("ensure", ec2.ensure_network(&network("net")))
        .await
        .unwrap();
    assert_eq!(first.subnets.len(), 3, "{first:?}");
    let zones: Vec<&str> = first.subnets.iter().map(|s| s.zone.as_str()).collect();
    assert_eq!(zones, ["us-east-1a", "us-east-1b", "us-east-1c"]);
    assert_eq!(first.key_name.as_deref(), Some("dcform-net"));
    let again = within("ensure again", ec2.ensure_network(&network("net")))
        .await
        .unwrap();
    assert_eq!(again, first, "a second prepare must find, not create");

    assert_eq!(moto.tagged("DescribeVpcs", "net", "vpcId"), 1);
    assert_eq!(moto.tagged("DescribeSubnets", "net", "subnetId"), 3);
    assert_eq!(
        moto.tagged("DescribeInternetGateways", "net", "internetGatewayId"),
        1
    );
    let groups = moto
        .ec2("Action=DescribeSecurityGroups&Filter.1.Name=tag:dcform:cluster&Filter.1.Value.1=net");
    assert!(groups.matches("<groupId>").count() >= 3, "{groups}");
    // SSH only from the admin CIDR; the cluster's own group open to itself.
    assert!(groups.contains("<cidrIp>192.0.2.0/24</cidrIp>"), "{groups}");
    assert!(groups.contains(&first.nodes_sg), "{groups}");
    let routes = moto
        .ec2("Action=DescribeRouteTables&Filter.1.Name=tag:dcform:cluster&Filter.1.Value.1=net");
    assert!(
        routes.contains("<destinationCidrBlock>0.0.0.0/0</destinationCidrBlock>"),
        "{routes}"
    );
}

#[tokio::test]
async fn concurrent_launches_of_a_pool_are_one_run_instances_per_zone_with_each_node_tagged() {
    let Some((_g, moto)) = moto_support::session().await else {
        return;
    };
    let ec2 = Ec2::connect(&settings(&moto.url)).await.unwrap();
    let net = within("ensure", ec2.ensure_network(&network("batch")))
        .await
        .unwrap();
    let launcher = Launcher::new(ec2.clone(), Duration::from_millis(50));
    let t = Arc::new(template("batch", "agents", &net));
    let got = within("launch", launch_all(&launcher, &t, &net, "agents", 1..=5)).await;
    assert_eq!(launcher.run_instances_calls(), 3, "5 nodes over 3 zones");
    let names: Vec<&str> = got
        .iter()
        .map(|i| i.node.as_deref().unwrap_or("?"))
        .collect();
    assert_eq!(
        names,
        ["agents-1", "agents-2", "agents-3", "agents-4", "agents-5"]
    );
    assert!(got.iter().all(|i| i.state == "running"), "{got:?}");
    assert_eq!(got[0].zone.as_deref(), Some("us-east-1a"));
    assert_eq!(got[3].zone.as_deref(), Some("us-east-1a"));
    assert_eq!(got[1].zone.as_deref(), Some("us-east-1b"));
    for i in &got {
        let x = moto.ec2(&format!("Action=DescribeInstances&InstanceId.1={}", i.id));
        let node = i.node.as_deref().unwrap_or_default();
        assert!(
            x.contains(&format!("<key>dcform:node</key><value>{node}</value>"))
                || x.contains(&format!("<value>{node}</value>")),
            "{x}"
        );
        assert!(x.contains("<instanceType>m5.large</instanceType>"), "{x}");
        assert!(x.contains(&format!("batch-{node}")), "Name tag: {x}");
    }
    assert_eq!(
        moto.tagged_with("DescribeInstances", tags::POOL, "agents", "instanceId"),
        5
    );
}

#[tokio::test]
async fn nodes_an_earlier_apply_launched_are_adopted_not_launched_again() {
    let Some((_g, moto)) = moto_support::session().await else {
        return;
    };
    let ec2 = Ec2::connect(&settings(&moto.url)).await.unwrap();
    let net = ec2.ensure_network(&network("adopt")).await.unwrap();
    let t = Arc::new(template("adopt", "agents", &net));
    let first = Launcher::new(ec2.clone(), Duration::from_millis(20));
    let before = within("launch 1-3", launch_all(&first, &t, &net, "agents", 1..=3)).await;
    // A later apply (a new launcher) asked for 1-4 again, e.g. after losing its state records.
    let second = Launcher::new(ec2.clone(), Duration::from_millis(20));
    let after = within("launch 1-4", launch_all(&second, &t, &net, "agents", 1..=4)).await;
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(
            a.id,
            b.id,
            "{} was launched twice",
            a.node.as_deref().unwrap_or("?")
        );
    }
    assert_eq!(second.run_instances_calls(), 1, "only agents-4 is new");
    assert_eq!(moto.tagged("DescribeInstances", "adopt", "instanceId"), 4);
}

#[tokio::test]
async fn a_console_without_host_keys_is_read_and_gives_none_to_pin() {
    let Some((_g, moto)) = moto_support::session().await else {
        return;
    };
    let ec2 = Ec2::connect(&settings(&moto.url)).await.unwrap();
    let net = ec2.ensure_network(&network("console")).await.unwrap();
    let t = Arc::new(template("console", "masters", &net));
    let l = Launcher::new(ec2.clone(), Duration::from_millis(20));
    let launched = within("launch", launch_all(&l, &t, &net, "masters", 1..=1)).await;
    // moto's console is a fixed kernel log with no cloud-init key block: the call must succeed (the
    // SDK decodes EC2's answer, we decode its base64) and find nothing, so the first contact falls back
    // to trust-on-first-use instead of failing.
    let keys = within("console", ec2.console_host_keys(&launched[0].id))
        .await
        .expect("GetConsoleOutput answers for a running instance");
    assert!(
        keys.is_empty(),
        "moto's sample console has no host keys, got {keys:?}"
    );
    let unknown = within(
        "console of an unknown id",
        ec2.console_host_keys("i-0123456789abcdef0"),
    )
    .await;
    let e = unknown.expect_err("an unknown instance is an error");
    assert!(e.is_code("InvalidInstanceID.NotFound"), "{e}");
}

#[tokio::test]
async fn purge_removes_everything_tagged_with_the_cluster_and_nothing_else() {
    let Some((_g, moto)) = moto_support::session().await else {
        return;
    };
    let ec2 = Ec2::connect(&settings(&moto.url)).await.unwrap();
    let net = ec2.ensure_network(&network("gone")).await.unwrap();
    let keep = ec2.ensure_network(&network("kept")).await.unwrap();
    let t = Arc::new(template("gone", "agents", &net));
    let l = Launcher::new(ec2.clone(), Duration::from_millis(20));
    within("launch", launch_all(&l, &t, &net, "agents", 1..=4)).await;
    let report = within("purge", ec2.purge_cluster("gone", WaitPolicy::default()))
        .await
        .unwrap();
    assert_eq!(report.instances.len(), 4, "{report:?}");
    assert_eq!(report.vpcs, vec![net.vpc_id.clone()]);
    assert_eq!(report.key_pairs, vec!["dcform-gone".to_string()]);
    let running = moto.count(
        "Action=DescribeInstances&Filter.1.Name=tag:dcform:cluster&Filter.1.Value.1=gone&Filter.2.Name=instance-state-name&Filter.2.Value.1=running&Filter.2.Value.2=pending",
        "instanceId",
    );
    assert_eq!(running, 0);
    assert_eq!(moto.network_left("gone"), vec![], "network resources left");
    assert_eq!(
        moto.count("Action=DescribeKeyPairs&KeyName.1=dcform-kept", "keyName"),
        1
    );
    assert_eq!(
        moto.tagged("DescribeVpcs", "kept", "vpcId"),
        1,
        "the other cluster's VPC {} stays",
        keep.vpc_id
    );
    // Again, with nothing left: fine.
    let again = ec2
        .purge_cluster("gone", WaitPolicy::default())
        .await
        .unwrap();
    assert!(again.lines().is_empty(), "{again:?}");
}

#[tokio::test]
async fn throttling_injected_in_front_of_moto_is_retried_until_the_launch_succeeds() {
    let Some((_g, moto)) = moto_support::session().await else {
        return;
    };
    let proxy = FaultProxy::start(
        moto.addr,
        Fault {
            action: "RunInstances".into(),
            fail: 2,
            code: "RequestLimitExceeded".into(),
            hold: Duration::ZERO,
        },
    );
    let ec2 = Ec2::connect(&settings(&proxy.url)).await.unwrap();
    let net = ec2.ensure_network(&network("slow")).await.unwrap();
    let t = Arc::new(template("slow", "masters", &net));
    let l = Launcher::new(ec2.clone(), Duration::from_millis(20));
    let got = within("launch", launch_all(&l, &t, &net, "masters", 1..=1)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(proxy.injected.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(
        l.run_instances_calls(),
        1,
        "retried by the SDK inside one call"
    );
    assert_eq!(
        moto.tagged("DescribeInstances", "slow", "instanceId"),
        1,
        "a retried call launches once"
    );
}

#[tokio::test]
async fn throttling_that_outlasts_the_retries_is_reported_with_the_aws_code_and_what_to_do() {
    let Some((_g, moto)) = moto_support::session().await else {
        return;
    };
    let proxy = FaultProxy::start(
        moto.addr,
        Fault {
            action: "RunInstances".into(),
            fail: usize::MAX,
            code: "RequestLimitExceeded".into(),
            hold: Duration::ZERO,
        },
    );
    let ec2 = Ec2::connect(&settings(&proxy.url)).await.unwrap();
    let net = ec2.ensure_network(&network("throttled")).await.unwrap();
    let t = Arc::new(template("throttled", "masters", &net));
    let l = Launcher::new(ec2.clone(), Duration::from_millis(20));
    let subnet = net.subnet_for(1).unwrap().clone();
    let e = within("launch", l.launch(t, subnet, slot("masters", 1)))
        .await
        .unwrap_err();
    assert_eq!(e.code.as_deref(), Some("RequestLimitExceeded"), "{e}");
    assert!(e.transient, "throttling is worth another apply: {e}");
    let s = e.to_string();
    assert!(s.starts_with("RunInstances pool masters"), "{s}");
    assert!(s.contains("Run `dcform apply` again"), "{s}");
    assert_eq!(
        proxy.injected.load(std::sync::atomic::Ordering::SeqCst),
        4,
        "max_attempts = 4"
    );
}
