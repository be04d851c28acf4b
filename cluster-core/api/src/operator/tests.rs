use super::*;
use serde_json::json;

#[test]
fn calls_have_the_mesos_json_shape() {
    let wire = |c: &Call| serde_json::to_value(c).unwrap();
    assert_eq!(wire(&Call::GetAgents), json!({"type": "GET_AGENTS"}));
    assert_eq!(
        wire(&Call::drain_agent("S1", None, false)),
        json!({"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": "S1"}, "mark_gone": false}})
    );
    assert_eq!(
        wire(&Call::drain_agent("S1", Some(Duration::from_secs(2)), true)),
        json!({"type": "DRAIN_AGENT", "drain_agent": {"agent_id": {"value": "S1"},
                "max_grace_period": {"nanoseconds": 2_000_000_000i64}, "mark_gone": true}})
    );
    assert_eq!(
        wire(&Call::reactivate_agent("S1")),
        json!({"type": "REACTIVATE_AGENT", "reactivate_agent": {"agent_id": {"value": "S1"}}})
    );
    assert_eq!(
        wire(&Call::deactivate_agent("S1")),
        json!({"type": "DEACTIVATE_AGENT", "deactivate_agent": {"agent_id": {"value": "S1"}}})
    );
    for c in [
        Call::GetHealth,
        Call::GetState,
        Call::GetFrameworks,
        Call::GetTasks,
        Call::drain_agent("x", None, true),
    ] {
        assert_eq!(wire(&c)["type"], c.name());
        assert_eq!(serde_json::from_value::<Call>(wire(&c)).unwrap(), c);
    }
}

#[test]
fn a_framework_info_keeps_the_fields_dccore_does_not_read() {
    let sent = json!({"name": "marathon", "user": "root", "roles": ["*"],
            "capabilities": [{"type": "MULTI_ROLE"}], "failover_timeout": 604800,
            "id": {"value": "F1"}});
    let echo: FrameworkInfoEcho = serde_json::from_value(sent.clone()).unwrap();
    assert_eq!(echo.name.as_deref(), Some("marathon"));
    assert_eq!(echo.id, Some(Id::new("F1")));
    assert_eq!(serde_json::to_value(&echo).unwrap(), sent);
}

#[test]
fn an_answer_without_a_field_the_master_always_writes_is_unreadable() {
    let missing_url = json!({"type": "GET_AGENTS", "get_agents": {"agents": [{
            "agent_info": {"id": {"value": "S1"}, "hostname": "h", "port": 1, "resources": [], "attributes": []},
            "active": true, "deactivated": false, "version": "0.1.0", "pid": "slave(1)@h:1",
            "public": false, "registered_time": {"nanoseconds": 1},
            "total_resources": [], "allocated_resources": [], "offered_resources": []}],
            "recovered_agents": [], "unreachable_agents": []}});
    let e = serde_json::from_value::<Response>(missing_url).unwrap_err();
    assert!(e.to_string().contains("url"), "{e}");
}
