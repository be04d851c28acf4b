use super::*;

fn app(v: Value) -> Result<App, AppError> {
    App::from_json(v, None)
}

#[test]
fn a_full_marathon_definition_round_trips_with_unknown_fields_kept() {
    let v = json!({
        "id": "/prod/web", "cmd": "python3 -m http.server $PORT0", "instances": 3,
        "cpus": 0.5, "mem": 64.0, "disk": 0.0, "env": {"A": "b"},
        "portDefinitions": [{"port": 0, "name": "http", "protocol": "tcp"}],
        "constraints": [["hostname", "UNIQUE"], ["rack", "GROUP_BY", "2"], ["hostname", "LIKE", "a.*"]],
        "acceptedResourceRoles": ["*"], "labels": {"team": "x"},
        "healthChecks": [{"protocol": "HTTP", "path": "/", "portIndex": 0, "gracePeriodSeconds": 5,
                          "intervalSeconds": 1, "timeoutSeconds": 2, "maxConsecutiveFailures": 3}],
        "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.2},
        "backoffSeconds": 1, "backoffFactor": 1.15, "maxLaunchDelaySeconds": 300,
        "someFutureField": {"kept": true}
    });
    let a = app(v.clone()).expect("valid");
    assert_eq!(a.id.as_str(), "/prod/web");
    assert_eq!(a.instances, 3);
    assert_eq!(a.constraints.len(), 3);
    assert_eq!(a.health_checks[0].protocol, Protocol::Http);
    assert_eq!(
        Value::Object(a.to_json()),
        v,
        "every field comes back as sent"
    );
}

#[test]
fn defaults_are_marathons_and_the_id_is_normalized() {
    let a = app(json!({"id": "web", "cmd": "sleep 100"})).expect("valid");
    assert_eq!(a.id.as_str(), "/web");
    assert_eq!((a.instances, a.cpus, a.mem), (1, 1.0, 128.0));
    assert_eq!(
        a.backoff,
        LaunchDelay {
            seconds: 1.0,
            factor: 1.15,
            max_launch_delay_secs: 300.0
        }
    );
    assert_eq!(a.to_json()["id"], "/web");
}

#[test]
fn task_names_reverse_the_path_with_dots() {
    let id = AppId::parse("/prod/web").expect("valid");
    assert_eq!(id.task_name(), "web.prod");
    assert_eq!(id.task_prefix(), "prod_web");
}

#[test]
fn every_bad_field_is_named_with_what_is_valid() {
    let e = app(json!({"id": "/Bad_Id", "instances": -1, "cpus": "x",
            "constraints": [["hostname", "SOMETIMES"], ["rack", "MAX_PER", "0"], ["h", "LIKE", "("]],
            "portDefinitions": [{"port": 70000}],
            "healthChecks": [{"protocol": "HTTP", "portIndex": 3}]}))
        .expect_err("invalid");
    let paths: Vec<&str> = e.0.iter().map(|f| f.path.as_str()).collect();
    for p in [
        "/id",
        "/cmd",
        "/instances",
        "/cpus",
        "/constraints/0/1",
        "/constraints/1/2",
        "/constraints/2/2",
        "/portDefinitions/0/port",
        "/healthChecks/0/portIndex",
    ] {
        assert!(paths.contains(&p), "{p} missing from {paths:?}");
    }
    let body = e.to_json();
    assert_eq!(body["message"], "Object is not valid");
    assert!(body["details"][0]["errors"][0].is_string());
}

#[test]
fn the_url_id_fills_in_a_missing_id_and_must_match_a_given_one() {
    let id = AppId::parse("/a/b").expect("valid");
    let a = App::from_json(json!({"cmd": "x"}), Some(&id)).expect("valid");
    assert_eq!(a.id, id);
    let e = App::from_json(json!({"id": "/c", "cmd": "x"}), Some(&id)).expect_err("mismatch");
    assert_eq!(e.0[0].path, "/id");
}

#[test]
fn read_only_answer_fields_sent_back_are_dropped() {
    let a = app(json!({"id": "/a", "cmd": "x", "tasksRunning": 3, "version": "v"})).expect("valid");
    assert!(!a.raw.contains_key("tasksRunning"));
    assert!(!a.raw.contains_key("version"));
}

#[test]
fn a_command_health_check_needs_its_command() {
    let e = app(json!({"id": "/c", "cmd": "sleep 9", "healthChecks": [{"protocol": "COMMAND"}]}))
        .expect_err("invalid");
    assert_eq!(e.0[0].path, "/healthChecks/0/command", "{e:?}");
    let a = app(json!({"id": "/c", "cmd": "sleep 9",
        "healthChecks": [{"protocol": "COMMAND", "command": {"value": "test -f ready"}}]}))
    .expect("valid");
    assert_eq!(a.health_checks[0].command.as_deref(), Some("test -f ready"));
}
