//! `service` blocks through the whole loader: both forms, the defaults, and every error with its
//! `file:line:col`.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::spec::{Diagnostic, LoadOptions, Loaded, SpecError, load};

/// The definition's first six lines (a cluster with one master); `body` starts on line 7.
const HEAD: &str = "cluster \"c\" {\n  provider \"local\" {}\n  pool \"masters\" {\n    role  = \"master\"\n    count = 1\n  }\n";

/// Writes `c.hcl` (HEAD, `body`, the closing brace) and the extra `files` into a fresh folder.
fn definition(body: &str, files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let def = dir.path().join("c.hcl");
    std::fs::write(&def, format!("{HEAD}{body}}}\n")).expect("write definition");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write file");
    }
    (dir, def)
}

fn load_ok(body: &str, files: &[(&str, &str)]) -> Loaded {
    let (_dir, def) = definition(body, files);
    match load(&def, &LoadOptions::default()) {
        Ok(l) => l,
        Err(e) => panic!("expected a valid definition:\n{e}"),
    }
}

/// The errors, each as `c.hcl:LINE:COL: message` (the folder left out) and with its hint.
fn load_err(body: &str, files: &[(&str, &str)]) -> Vec<(String, String)> {
    let (_dir, def) = definition(body, files);
    match load(&def, &LoadOptions::default()) {
        Ok(l) => panic!("expected an error, loaded {:?}", l.spec.services),
        Err(SpecError::Invalid { diagnostics, .. }) => diagnostics
            .iter()
            .map(|d| (short(d, &def), d.hint.clone()))
            .collect(),
        Err(e) => panic!("expected diagnostics, got {e}"),
    }
}

fn short(d: &Diagnostic, def: &Path) -> String {
    let file = if d.file == def {
        "c.hcl".to_string()
    } else {
        d.file.display().to_string()
    };
    format!("{file}:{}:{}: {}", d.line, d.col, d.message)
}

#[test]
fn the_hcl_form_maps_snake_case_attributes_to_marathon_fields() {
    let l = load_ok(
        r#"  service "web" {
    cmd       = "python3 -m http.server $PORT0"
    instances = 3
    cpus      = 0.1
    mem       = 64
    env       = { GREETING = "hi" }
    port_definitions = [{ port = 0, name = "http" }]
    health_checks = [{ protocol = "COMMAND", command = "true", interval_seconds = 5, max_consecutive_failures = 2 }]
    upgrade_strategy = { minimum_health_capacity = 0.5 }
    constraints = [["hostname", "UNIQUE"]]
    accepted_resource_roles = ["*"]
    labels = { team = "web" }
    backoff_seconds = 2
    max_launch_delay_seconds = 60
    user = "nobody"
  }
"#,
        &[],
    );
    let [svc] = l.spec.services.as_slice() else {
        panic!("one service: {:?}", l.spec.services);
    };
    assert_eq!(
        (svc.name.as_str(), svc.id.as_str(), svc.instances),
        ("web", "/web", 3)
    );
    let d = serde_json::Value::Object(svc.definition.clone());
    assert_eq!(
        d,
        json!({
            "id": "/web",
            "cmd": "python3 -m http.server $PORT0",
            "instances": 3,
            "cpus": 0.1,
            "mem": 64,
            "env": {"GREETING": "hi"},
            "portDefinitions": [{"port": 0, "name": "http"}],
            "healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"},
                              "intervalSeconds": 5, "maxConsecutiveFailures": 2}],
            "upgradeStrategy": {"minimumHealthCapacity": 0.5},
            "constraints": [["hostname", "UNIQUE"]],
            "acceptedResourceRoles": ["*"],
            "labels": {"team": "web"},
            "backoffSeconds": 2,
            "maxLaunchDelaySeconds": 60,
            "user": "nobody",
        })
    );
}

#[test]
fn the_id_defaults_to_the_name_and_a_relative_id_becomes_absolute() {
    let l = load_ok(
        "  service \"web\" {\n    cmd = \"sleep 100\"\n  }\n  service \"api\" {\n    id  = \"prod/api\"\n    cmd = \"sleep 100\"\n  }\n",
        &[],
    );
    let ids: Vec<&str> = l.spec.services.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        ["/web", "/prod/api"],
        "definition order, ids normalized"
    );
    assert_eq!(l.spec.services[1].definition["id"], "/prod/api");
    assert_eq!(l.spec.services[0].instances, 1, "the parser's default");
}

#[test]
fn marathon_json_is_read_with_its_own_id_winning_over_the_name() {
    let l = load_ok(
        "  service \"hello\" {\n    marathon_json = file(\"hello.json\")\n  }\n  service \"plain\" {\n    marathon_json = jsonencode({ cmd = \"sleep 1\", instances = 2 })\n  }\n",
        &[(
            "hello.json",
            r#"{"id": "demo/hello", "cmd": "echo hi; sleep 1000", "instances": 2, "cpus": 0.1, "mem": 32}"#,
        )],
    );
    let [hello, plain] = l.spec.services.as_slice() else {
        panic!("two services: {:?}", l.spec.services);
    };
    assert_eq!((hello.id.as_str(), hello.instances), ("/demo/hello", 2));
    assert_eq!(hello.definition["id"], "/demo/hello");
    assert_eq!(hello.definition["mem"], 32);
    assert_eq!((plain.id.as_str(), plain.instances), ("/plain", 2));
}

#[test]
fn marathon_json_and_hcl_attributes_are_not_mixed() {
    let errs = load_err(
        "  service \"web\" {\n    marathon_json = file(\"web.json\")\n    cpus = 0.5\n  }\n",
        &[("web.json", r#"{"cmd": "sleep 1"}"#)],
    );
    assert_eq!(
        errs[0].0,
        "c.hcl:9:5: service \"web\": marathon_json holds the whole app definition; \"cpus\" cannot be set beside it"
    );
    assert!(errs[0].1.contains("(as \"cpus\")"), "{errs:?}");
}

#[test]
fn an_unknown_attribute_is_named_with_the_valid_ones() {
    let errs = load_err(
        "  service \"web\" {\n    cmd = \"sleep 1\"\n    cpu = 1\n  }\n",
        &[],
    );
    assert_eq!(
        errs[0].0,
        "c.hcl:9:5: unknown attribute \"cpu\" in service \"web\""
    );
    assert!(errs[0].1.starts_with("did you mean \"cpus\"?"), "{errs:?}");
    assert!(errs[0].1.contains("marathon_json, id, cmd"), "{errs:?}");
    assert_eq!(errs.len(), 1, "{errs:?}");
}

#[test]
fn an_unknown_key_in_a_nested_object_is_named_with_the_valid_ones() {
    let errs = load_err(
        "  service \"web\" {\n    cmd = \"sleep 1\"\n    health_checks = [{ protocol = \"TCP\", intervall_seconds = 5 }]\n  }\n",
        &[],
    );
    assert_eq!(
        errs[0].0,
        "c.hcl:9:21: service \"web\": unknown key \"intervall_seconds\" in health_checks[0]"
    );
    assert!(
        errs[0].1.contains("did you mean \"interval_seconds\"?"),
        "{errs:?}"
    );
}

#[test]
fn marathon_field_errors_are_placed_at_the_hcl_attribute() {
    let errs = load_err(
        "  service \"web\" {\n    cmd  = \"sleep 1\"\n    cpus = -1\n    port_definitions = [{ port = 70000 }]\n  }\n",
        &[],
    );
    let lines: Vec<&str> = errs.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        lines,
        [
            "c.hcl:9:12: service \"web\": cpus: must be a number >= 0",
            "c.hcl:10:24: service \"web\": port_definitions[0].port: must be a port number 0..65535 (0 = any)",
        ]
    );
}

#[test]
fn a_missing_command_is_reported_at_the_service_label() {
    let errs = load_err("  service \"web\" {\n    instances = 2\n  }\n", &[]);
    assert_eq!(
        errs[0].0,
        "c.hcl:7:11: service \"web\": cmd: is required (or args): what the instances run"
    );
    assert!(errs[0].1.contains("add cmd = ..."), "{errs:?}");
}

#[test]
fn marathon_json_is_checked_by_the_dccore_parser_with_the_json_pointer() {
    let errs = load_err(
        "  service \"web\" {\n    marathon_json = file(\"web.json\")\n  }\n",
        &[(
            "web.json",
            r#"{"cmd": "sleep 1", "cpus": -0.5, "instances": 1.5}"#,
        )],
    );
    let lines: Vec<&str> = errs.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        lines,
        [
            "c.hcl:8:5: service \"web\": marathon_json /instances: must be a whole number between 0 and 100000",
            "c.hcl:8:5: service \"web\": marathon_json /cpus: must be a number >= 0",
        ]
    );
}

#[test]
fn json_that_does_not_parse_is_reported_at_its_own_line_and_column() {
    let errs = load_err(
        "  service \"web\" {\n    marathon_json = file(\"web.json\")\n  }\n",
        &[(
            "web.json",
            "{\n  \"cmd\": \"sleep 1\"\n  \"instances\": 2\n}\n",
        )],
    );
    assert_eq!(
        errs[0].0,
        "c.hcl:8:5: service \"web\": marathon_json is not valid JSON: web.json:3:3: expected `,` or `}`"
    );
    let errs = load_err(
        "  service \"web\" {\n    marathon_json = \"[1]\"\n  }\n",
        &[],
    );
    assert_eq!(
        errs[0].0,
        "c.hcl:8:5: service \"web\": marathon_json must be a JSON object (one app), got an array"
    );
    let errs = load_err("  service \"web\" {\n    marathon_json = 5\n  }\n", &[]);
    assert!(
        errs[0]
            .0
            .contains("marathon_json must be a string of JSON, got number"),
        "{errs:?}"
    );
}

#[test]
fn two_services_with_one_app_id_are_an_error_naming_both() {
    let errs = load_err(
        "  service \"web\" {\n    cmd = \"sleep 1\"\n  }\n  service \"www\" {\n    id  = \"/web\"\n    cmd = \"sleep 2\"\n  }\n",
        &[],
    );
    assert_eq!(
        errs,
        [(
            "c.hcl:10:11: service \"www\": app id /web is also the id of service \"web\" (line 7)"
                .to_string(),
            "app ids are unique in a cluster: give one of them another id (id = \"/...\") or name"
                .to_string()
        )]
    );
}

#[test]
fn a_name_that_is_no_app_id_needs_an_id() {
    let errs = load_err("  service \"Web_1\" {\n    cmd = \"sleep 1\"\n  }\n", &[]);
    assert!(
        errs[0]
            .0
            .starts_with("c.hcl:7:11: service \"Web_1\": without an id the name is the app id"),
        "{errs:?}"
    );
    let l = load_ok(
        "  service \"Web_1\" {\n    id  = \"/web-1\"\n    cmd = \"sleep 1\"\n  }\n",
        &[],
    );
    assert_eq!(l.spec.services[0].id.as_str(), "/web-1");
    let errs = load_err(
        "  service \"web\" {\n    id  = \"/Web\"\n    cmd = \"sleep 1\"\n  }\n",
        &[],
    );
    assert!(
        errs[0]
            .0
            .starts_with("c.hcl:8:11: service \"web\": id: path label"),
        "{errs:?}"
    );
}

#[test]
fn services_are_part_of_the_spec_hash() {
    let a = load_ok("  service \"web\" {\n    cmd = \"sleep 1\"\n  }\n", &[]);
    let b = load_ok(
        "  service \"web\" {\n    cmd = \"sleep 1\"\n    instances = 2\n  }\n",
        &[],
    );
    let none = load_ok("", &[]);
    let sha = |l: &Loaded| crate::spec::saved::spec_sha256(&l.spec);
    assert_ne!(sha(&a), sha(&b));
    assert_ne!(sha(&a), sha(&none));
    // And the spec with services survives its JSON form (what the hash is computed over).
    let text = serde_json::to_string(&a.spec).expect("encode");
    let back: crate::spec::ClusterSpec = serde_json::from_str(&text).expect("decode");
    assert_eq!(back, a.spec);
}
