//! Which nodes are pointed at which masters, and what the masters are told to serve.

use super::super::tests::{ctx, installer, node};
use super::*;
use crate::apply::{Installer, RemoteOp};
use crate::plan::Step;
use crate::spec::{DockerProvider, LocalProvider, PoolSize, ProviderSpec, SshProvider};
use std::sync::Arc;

fn providers() -> [(ProviderKind, ProviderSpec); 4] {
    [
        (
            ProviderKind::Docker,
            ProviderSpec::Docker(DockerProvider::default()),
        ),
        (ProviderKind::Ssh, ProviderSpec::Ssh(SshProvider::default())),
        (
            ProviderKind::Local,
            ProviderSpec::Local(LocalProvider::default()),
        ),
        (ProviderKind::Aws, ProviderSpec::Aws(Box::default())),
    ]
}

/// A context for `n` on `provider` whose state has `masters` 10.0.0.2, .3, .4 (a 3-master definition).
fn on(provider: &ProviderSpec, n: NodeState) -> NodeContext {
    let mut c = ctx(n, vec![Step::Install]);
    let mut spec = (*c.spec).clone();
    spec.provider = provider.clone();
    spec.pools[0].size = PoolSize::Count(3);
    c.spec = Arc::new(spec);
    c.masters = (1..=3u32)
        .map(|i| {
            let mut m = node(
                &format!("masters-{i}"),
                "masters",
                Role::Master,
                &format!("10.0.0.{}", i + 1),
            );
            m.index = i;
            m
        })
        .collect();
    c
}

/// The master config (`master.json`) an Install of `c` writes.
fn master_json(c: &NodeContext) -> serde_json::Value {
    let ops = installer(Layout::Host).ops(Step::Install, c).expect("ops");
    let json = ops.iter().find_map(|op| match op {
        RemoteOp::Write { contents, dest, .. } if dest.ends_with("/master.json") => {
            Some(contents.clone())
        }
        _ => None,
    });
    serde_json::from_slice(&json.expect("a master config is written")).expect("valid JSON")
}

#[test]
fn agents_of_docker_and_ssh_resolve_through_every_master_and_others_are_left_alone() {
    for (kind, provider) in providers() {
        let c = on(
            &provider,
            node("agents-1", "agents", Role::Agent, "10.0.0.9"),
        );
        let p = installer(Layout::Host).params(&c).expect("params");
        let want: Vec<String> = match kind {
            ProviderKind::Docker | ProviderKind::Ssh => {
                vec!["10.0.0.2".into(), "10.0.0.3".into(), "10.0.0.4".into()]
            }
            ProviderKind::Local | ProviderKind::Aws => Vec::new(),
        };
        assert_eq!(p.resolvers, want, "{kind:?}");
        // The rendered install rewrites resolv.conf exactly where there are resolvers.
        let r = dcform_bootstrap::templates::render(&p).expect("render");
        assert_eq!(
            r.install.contains("nameserver 10.0.0.2"),
            !want.is_empty(),
            "{kind:?}"
        );
    }
}

#[test]
fn masters_of_docker_and_ssh_serve_dns_on_their_ip_port_53_relaying_to_the_saved_original() {
    for (kind, provider) in providers() {
        let mut me = node("masters-2", "masters", Role::Master, "10.0.0.3");
        me.index = 2;
        let mut c = on(&provider, me);
        c.change.founds_group = false;
        c.change.replica_id = Some(2);
        let json = master_json(&c);
        match kind {
            ProviderKind::Docker | ProviderKind::Ssh => {
                assert_eq!(
                    json["dns_listen"],
                    serde_json::json!("10.0.0.3:53"),
                    "{kind:?}"
                );
                assert_eq!(
                    json["dns_upstreams_file"],
                    serde_json::json!("resolv.conf.orig"),
                    "{kind:?}"
                );
            }
            ProviderKind::Local | ProviderKind::Aws => {
                assert!(json.get("dns_listen").is_none(), "{kind:?}: {json}");
                assert!(json.get("dns_upstreams_file").is_none(), "{kind:?}: {json}");
            }
        }
    }
}

#[test]
fn agents_get_no_dns_server_config() {
    let c = on(
        &ProviderSpec::Docker(DockerProvider::default()),
        node("agents-1", "agents", Role::Agent, "10.0.0.9"),
    );
    let p = installer(Layout::Host).params(&c).expect("params");
    let json: serde_json::Value = serde_json::from_str(&p.config_json).expect("valid JSON");
    assert!(json.get("dns_listen").is_none(), "{json}");
    assert!(json.get("dns_upstreams_file").is_none(), "{json}");
}

#[test]
fn a_master_lists_itself_first_even_before_the_state_lists_it() {
    let docker = ProviderSpec::Docker(DockerProvider::default());
    // The first master of a new cluster: the state has no master yet.
    let mut c = on(
        &docker,
        node("masters-1", "masters", Role::Master, "10.0.0.2"),
    );
    c.masters.clear();
    assert_eq!(
        node_resolvers(&Layout::Host, &c),
        vec!["10.0.0.2".to_string()]
    );
    // The third: itself, then the others in the state's order, each once.
    let mut me = node("masters-3", "masters", Role::Master, "10.0.0.4");
    me.index = 3;
    let c = on(&docker, me);
    assert_eq!(
        node_resolvers(&Layout::Host, &c),
        vec!["10.0.0.4".to_string(), "10.0.0.2".into(), "10.0.0.3".into()]
    );
}

#[test]
fn masters_known_by_host_name_or_going_away_are_not_nameservers() {
    let ssh = ProviderSpec::Ssh(SshProvider::default());
    let mut c = on(&ssh, node("agents-1", "agents", Role::Agent, "10.0.0.9"));
    c.masters[1].addresses = vec!["m2.example.com".into()];
    let mut leaving = node("masters-4", "masters", Role::Master, "10.0.0.5");
    leaving.index = 4;
    c.masters.push(leaving);
    assert_eq!(
        node_resolvers(&Layout::Host, &c),
        vec!["10.0.0.2".to_string(), "10.0.0.4".into()]
    );
    // No master with an IP: resolv.conf stays as it is, rather than naming nobody.
    for m in &mut c.masters {
        m.addresses = vec!["m.example.com".into()];
    }
    assert!(node_resolvers(&Layout::Host, &c).is_empty());
}

#[test]
fn the_private_address_is_the_nameserver_where_a_node_has_one() {
    let mut c = on(
        &ProviderSpec::Ssh(SshProvider::default()),
        node("agents-1", "agents", Role::Agent, "10.0.0.9"),
    );
    c.masters.truncate(1);
    c.masters[0].addresses = vec!["203.0.113.7".into()];
    c.masters[0].private_address = Some("192.168.0.2".into());
    assert_eq!(
        node_resolvers(&Layout::Host, &c),
        vec!["192.168.0.2".to_string()]
    );
}

#[test]
fn sandboxes_are_never_pointed_at_the_masters_whatever_the_provider() {
    let c = on(
        &ProviderSpec::Docker(DockerProvider::default()),
        node("agents-1", "agents", Role::Agent, "10.0.0.9"),
    );
    let layout = Layout::Sandbox {
        root: "/tmp/x".into(),
    };
    assert!(node_resolvers(&layout, &c).is_empty());
}

#[test]
fn node_ips_are_read_from_bare_and_port_carrying_addresses() {
    for (addr, want) in [
        ("10.0.0.2", Some("10.0.0.2")),
        ("10.0.0.2:5050", Some("10.0.0.2")),
        ("fd00::2", Some("fd00::2")),
        ("[fd00::2]:5050", Some("fd00::2")),
        ("m.example.com", None),
        ("m.example.com:5050", None),
    ] {
        let n = node("masters-1", "masters", Role::Master, addr);
        assert_eq!(
            node_ip(&n).map(|i| i.to_string()).as_deref(),
            want,
            "{addr}"
        );
    }
}
