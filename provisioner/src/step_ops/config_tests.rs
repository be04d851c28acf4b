//! The definition's core config as each role's dccore JSON.

use super::tests::{ctx, installer, node};
use super::*;
use crate::spec::PoolSize;

#[test]
fn each_role_gets_its_core_config_keys_as_dccore_json() {
    let master = node("masters-1", "masters", Role::Master, "10.0.0.2");
    let agent = node("agents-1", "agents", Role::Agent, "10.0.0.3");
    let written = |n: NodeState| -> serde_json::Value {
        let mut c = ctx(n, vec![Step::Install]);
        let mut spec = (*c.spec).clone();
        spec.core
            .config
            .insert("agent_timeout_secs".into(), serde_json::json!(2.0));
        spec.core
            .config
            .insert("kill_grace_secs".into(), serde_json::json!(1.0));
        c.spec = Arc::new(spec);
        let ops = installer(Layout::Host).ops(Step::Install, &c).expect("ops");
        let json = ops.iter().find_map(|op| match op {
            RemoteOp::Write { contents, dest, .. }
                if dest.ends_with("/master.json") || dest.ends_with("/agent.json") =>
            {
                Some(contents.clone())
            }
            _ => None,
        });
        serde_json::from_slice(&json.expect("a config file is written")).expect("valid JSON")
    };
    let mut m = written(master);
    for k in [
        "replica_id",
        "replica_peers",
        "replica_secret_file",
        "replica_init",
    ] {
        m.as_object_mut().expect("an object").remove(k);
    }
    assert_eq!(
        m,
        serde_json::json!({"agent_timeout_secs": 2.0, "default_task_user": "nobody"})
    );
    assert_eq!(
        written(agent),
        serde_json::json!({"kill_grace_secs": 1.0, "default_task_user": "nobody"})
    );
}

/// The master config (`master.json`) and the files of an Install of `c`.
fn master_install(c: &NodeContext) -> (serde_json::Value, Vec<(String, u32, Vec<u8>)>) {
    let ops = installer(Layout::Host).ops(Step::Install, c).expect("ops");
    let files: Vec<(String, u32, Vec<u8>)> = ops
        .iter()
        .filter_map(|op| match op {
            RemoteOp::Write {
                contents,
                dest,
                mode,
            } => Some((dest.clone(), *mode, contents.to_vec())),
            _ => None,
        })
        .collect();
    let json = files
        .iter()
        .find(|(d, _, _)| d.ends_with("/master.json"))
        .map(|(_, _, c)| serde_json::from_slice(c).expect("valid JSON"))
        .expect("a master config is written");
    (json, files)
}

#[test]
fn the_first_master_founds_the_group_alone_and_gets_the_secret_0600_beside_its_config() {
    let c = ctx(
        node("masters-1", "masters", Role::Master, "10.0.0.2"),
        vec![Step::Install],
    );
    let (json, files) = master_install(&c);
    let scheme = scheme(&c.spec);
    assert_eq!(json["replica_id"], serde_json::json!(1));
    assert_eq!(
        json["replica_peers"],
        serde_json::json!([format!("1={scheme}://10.0.0.2:5050")])
    );
    assert_eq!(json["replica_init"], serde_json::json!(true));
    assert_eq!(
        json["replica_secret_file"],
        serde_json::json!("replica.secret")
    );
    let secret = files
        .iter()
        .find(|(d, _, _)| d == "/etc/dcform/replica.secret")
        .expect("the secret is written beside the config");
    assert_eq!(secret.1, 0o600);
    assert_eq!(secret.2, b"replica-secret".to_vec());
}

#[test]
fn a_joining_master_lists_the_members_and_itself_and_never_initialises_a_group() {
    let mut m1 = node("masters-1", "masters", Role::Master, "10.0.0.2");
    m1.replica_id = Some(1);
    m1.replica_member = true;
    let mut m2 = node("masters-2", "masters", Role::Master, "10.0.0.3");
    m2.replica_id = Some(2);
    m2.replica_member = true;
    // Not yet a member: known to the state, not to the group.
    let mut m3 = node("masters-3", "masters", Role::Master, "10.0.0.4");
    m3.replica_id = Some(3);
    let mut me = node("masters-4", "masters", Role::Master, "10.0.0.5");
    me.private_address = Some("192.168.0.5".into());
    let mut c = ctx(me, vec![Step::Install]);
    c.masters = vec![m1, m2, m3];
    c.change.replica_id = Some(4);
    c.change.founds_group = false;
    let (json, _) = master_install(&c);
    let s = scheme(&c.spec);
    assert_eq!(json["replica_id"], serde_json::json!(4));
    assert_eq!(
        json["replica_peers"],
        serde_json::json!([
            format!("1={s}://10.0.0.2:5050"),
            format!("2={s}://10.0.0.3:5050"),
            format!("4={s}://192.168.0.5:5050"),
        ]),
        "in-cluster URLs (the private address), members only, itself included"
    );
    assert!(json.get("replica_init").is_none());
}

#[test]
fn an_agent_is_told_every_wanted_master_and_not_one_being_removed() {
    let mut c = ctx(
        node("agents-1", "agents", Role::Agent, "10.0.0.9"),
        vec![Step::Install],
    );
    let mut spec = (*c.spec).clone();
    spec.pools[0].size = PoolSize::Count(3);
    c.spec = Arc::new(spec);
    let mut masters = Vec::new();
    for i in 1..=4u32 {
        let mut m = node(
            &format!("masters-{i}"),
            "masters",
            Role::Master,
            &format!("10.0.0.{}", i + 1),
        );
        m.index = i;
        masters.push(m);
    }
    c.masters = masters;
    let p = installer(Layout::Host).params(&c).expect("params");
    let s = scheme(&c.spec);
    assert_eq!(
        p.master_url,
        Some(format!(
            "{s}://10.0.0.2:5050,{s}://10.0.0.3:5050,{s}://10.0.0.4:5050"
        )),
        "masters-4 is not wanted any more"
    );
}
