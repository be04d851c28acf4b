//! The definition's core config as each role's dccore JSON.

use super::tests::{ctx, installer, node};
use super::*;

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
    assert_eq!(
        written(master),
        serde_json::json!({"agent_timeout_secs": 2.0, "default_task_user": "nobody"})
    );
    assert_eq!(
        written(agent),
        serde_json::json!({"kill_grace_secs": 1.0, "default_task_user": "nobody"})
    );
}
