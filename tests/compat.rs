//! dcform and terraform-compat together: every converted golden definition loads with dcform's own
//! `spec::load` and has the pools the conversion reported; `convert`, `plan main.tf` (converted in
//! memory), `import-tfstate` and Terraform-shaped `output -json` as a user meets them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::text;
use dcform::spec::{self, LoadOptions, PoolSize};
use dcform::state::{NodeState, NodeStatus, State, StateFile};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../terraform-compat/tests/data")
}

/// `dcform ARGS` in `dir`, which is also its HOME (where the converted definitions' `~/.ssh` keys are).
fn dcform(dir: &Path, args: &[&str]) -> Output {
    common::run(common::command(args).current_dir(dir).env("HOME", dir))
}

/// A temp folder holding a copy of a data file under `as_name`.
fn with_file(name: &str, as_name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(data().join(name), dir.path().join(as_name)).unwrap();
    dir
}

fn opts() -> LoadOptions {
    LoadOptions {
        env: BTreeMap::from([("HOME".to_string(), "/home/ops".to_string())]),
        ..LoadOptions::default()
    }
}

#[test]
fn every_converted_golden_definition_loads_with_the_pools_its_report_names() {
    let mut checked = 0;
    for entry in std::fs::read_dir(data()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let Some(input) = name.strip_suffix(".golden.hcl") else {
            continue;
        };
        let text = std::fs::read_to_string(data().join(input)).unwrap();
        let p = PathBuf::from(input);
        let conv = if input.ends_with(".tf") {
            terraform_compat::terraform::convert(&[(p, text)])
        } else if input.ends_with(".yaml") {
            terraform_compat::installer::convert(&p, &text)
        } else {
            terraform_compat::tfstate::import(&p, &text, &Default::default())
        }
        .unwrap();
        let loaded = spec::load(&data().join(&name), &opts())
            .unwrap_or_else(|e| panic!("{name} does not load: {e}"));
        let got: Vec<(String, String, Option<u64>)> = loaded
            .spec
            .pools
            .iter()
            .map(|p| {
                let n = match &p.size {
                    PoolSize::Count(n) => u64::from(*n),
                    PoolSize::Hosts(h) => h.len() as u64,
                };
                (p.name.to_string(), p.role.to_string(), Some(n))
            })
            .collect();
        let want: Vec<(String, String, Option<u64>)> = conv
            .report
            .pools
            .iter()
            .map(|p| (p.name.clone(), p.role.clone(), p.nodes))
            .collect();
        assert_eq!(got, want, "{name}");
        assert_eq!(loaded.spec.name, conv.report.cluster, "{name}");
        assert_eq!(
            loaded.spec.provider.kind().as_str(),
            conv.report.provider,
            "{name}"
        );
        assert_eq!(
            conv.definition,
            std::fs::read_to_string(data().join(&name)).unwrap(),
            "{name} is stale: UPDATE_GOLDEN=1 cargo test -p terraform-compat"
        );
        checked += 1;
    }
    assert!(checked >= 8, "golden definitions checked: {checked}");
}

#[test]
fn convert_writes_a_definition_that_validates_and_plans_and_names_what_it_left_out() {
    let dir = with_file("dcos-terraform-examples_aws-simple_v0.3.main.tf", "main.tf");
    let o = dcform(dir.path(), &["convert", "main.tf", "-o", "conv.hcl"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("main.tf:35: module.dcos.dcos_license_key_contents: Enterprise-only"),
        "{t}"
    );
    assert!(t.contains("dcos_superuser_password_hash"), "{t}");
    assert!(
        o.stdout.is_empty(),
        "with -o the definition goes to the file"
    );
    let o = dcform(dir.path(), &["validate", "conv.hcl"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = dcform(dir.path(), &["plan", "conv.hcl"]);
    assert!(
        text(&o).contains("Plan: 4 to add, 0 to change, 0 to destroy."),
        "{}",
        text(&o)
    );
    // Without -o the definition is on stdout and the report on stderr.
    let o = dcform(dir.path(), &["convert", "main.tf"]);
    assert!(
        String::from_utf8_lossy(&o.stdout)
            .starts_with("# Converted by `dcform convert` from main.tf")
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("Not carried over (10):"));
}

#[test]
fn plan_on_a_main_tf_converts_in_memory_and_says_so() {
    let dir = with_file("terraform-aws-dcos_docs-published.main.tf", "main.tf");
    let o = dcform(dir.path(), &["plan", "main.tf"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("Converted main.tf (Terraform configuration) to a dcform definition in memory"),
        "{t}"
    );
    assert!(t.contains("Plan: 4 to add"), "{t}");
    // A folder of .tf files (no .hcl) is a Terraform configuration too.
    let o = dcform(dir.path(), &["plan", "--detailed-exitcode", "."]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = dcform(dir.path(), &["validate", "--json", "main.tf"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["nodes"], 4);
    assert!(!dir.path().join(".dcform").exists(), "plan writes no state");
}

#[test]
fn apply_on_a_main_tf_says_it_converted_and_a_missing_value_names_the_converted_line() {
    let dir = with_file("dcos-terraform-examples_aws-simple_v0.3.main.tf", "main.tf");
    // No machine is made: the aws provider (or, before it, the core binary) stops the apply.
    let o = dcform(dir.path(), &["apply", "--auto-approve", "main.tf"]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains(
            "Converted main.tf (Terraform configuration) to a dcform definition in memory"
        ),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("Plan: 4 to add"), "{}", text(&o));
    std::fs::write(
        dir.path().join("req.tf"),
        "variable \"n\" {}\nmodule \"dcos\" {\n  source      = \"dcos-terraform/dcos/aws\"\n  num_masters = var.n\n}\n",
    )
    .unwrap();
    let o = dcform(dir.path(), &["plan", "req.tf"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("req.tf (converted):")
            && text(&o).contains("variable \"n\" has no value"),
        "{}",
        text(&o)
    );
    let o = dcform(dir.path(), &["plan", "req.tf", "-var", "n=3"]);
    assert!(
        text(&o).contains("Plan: 6 to add"),
        "variables of the converted definition take -var: {}",
        text(&o)
    );
}

#[test]
fn the_installer_config_converts_to_an_ssh_definition_with_its_hosts_and_user() {
    let dir = with_file(
        "zivost_dcos-custom-setup-guide_genconf_config.yaml",
        "config.yaml",
    );
    let o = dcform(dir.path(), &["convert", "--json", "config.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let def = v["definition"].as_str().unwrap();
    assert!(
        def.contains("provider \"ssh\" {}") && def.contains("\"sysop\""),
        "{def}"
    );
    let dropped: Vec<&str> = v["report"]["not_carried_over"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["input"].as_str().unwrap())
        .collect();
    assert!(
        dropped.contains(&"oauth_enabled") && dropped.contains(&"bootstrap_url"),
        "{dropped:?}"
    );
    std::fs::write(dir.path().join("onprem.hcl"), def).unwrap();
    let o = dcform(dir.path(), &["validate", "onprem.hcl"]);
    assert!(
        text(&o).contains("6 node(s) in 3 pool(s), provider \"ssh\""),
        "{}",
        text(&o)
    );
}

#[test]
fn plan_on_genconf_config_yaml_reads_the_key_beside_genconf_as_the_installer_did() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("genconf")).unwrap();
    std::fs::copy(
        data().join("zivost_dcos-custom-setup-guide_genconf_config.yaml"),
        dir.path().join("genconf/config.yaml"),
    )
    .unwrap();
    let o = dcform(dir.path(), &["validate", "--json", "genconf/config.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["provider"].as_str(), v["nodes"].as_u64()),
        (Some("ssh"), Some(6))
    );
    let o = dcform(dir.path(), &["plan", "genconf/config.yaml"]);
    assert!(text(&o).contains("Plan: 6 to add"), "{}", text(&o));
    // The in-memory definition lives beside genconf/ (where genconf/ssh-key is), and so does its state.
    let o = dcform(dir.path(), &["status", "genconf/config.yaml"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("no state at ./.dcform/trumpt-dcos/state.json"),
        "{}",
        text(&o)
    );
}

#[test]
fn import_tfstate_hands_running_instances_to_an_ssh_definition() {
    let dir = with_file("handwritten_v4_dcos-aws.tfstate", "terraform.tfstate");
    let o = dcform(
        dir.path(),
        &[
            "import-tfstate",
            "terraform.tfstate",
            "-o",
            "imported.hcl",
            "--ssh-user",
            "centos",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("bootstrap node"), "{}", text(&o));
    let o = dcform(dir.path(), &["plan", "imported.hcl"]);
    assert!(text(&o).contains("Plan: 5 to add"), "{}", text(&o));
    let o = dcform(
        dir.path(),
        &[
            "import-tfstate",
            "terraform.tfstate",
            "--filter",
            "tag:Role=agent",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let def = String::from_utf8_lossy(&o.stdout);
    assert!(
        def.contains("role  = \"agent\"") && !def.contains("role  = \"master\""),
        "{def}"
    );
}

#[test]
fn malformed_input_of_each_kind_exits_1_naming_where() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("broken.tf"),
        "module \"dcos\" {\n  source = \"dcos-terraform/dcos/aws\"\n  num_masters = = 1\n}\n",
    )
    .unwrap();
    std::fs::write(
        d.join("other.tf"),
        "module \"vpc\" {\n  source = \"terraform-aws-modules/vpc/aws\"\n}\n",
    )
    .unwrap();
    std::fs::write(d.join("app.yaml"), "apiVersion: v1\nkind: Pod\n").unwrap();
    std::fs::write(
        d.join("old.tfstate"),
        "{\"version\": 3, \"serial\": 1, \"modules\": []}\n",
    )
    .unwrap();
    for (args, want) in [
        (&["convert", "broken.tf"][..], "broken.tf:3:"),
        (&["plan", "broken.tf"][..], "broken.tf:3:"),
        (
            &["convert", "other.tf"][..],
            "other.tf:2: module \"vpc\": source \"terraform-aws-modules/vpc/aws\" is not a dcos-terraform module",
        ),
        (
            &["convert", "app.yaml"][..],
            "none of the DC/OS installer's keys",
        ),
        (
            &["import-tfstate", "old.tfstate"][..],
            "old.tfstate: version: a version 3 state",
        ),
        (&["convert", "old.tfstate"][..], "dcform import-tfstate"),
        (
            &["import-tfstate", "old.tfstate", "--filter", "Role"][..],
            "tag:KEY=VALUE",
        ),
    ] {
        let o = dcform(d, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(want), "{args:?}: {}", text(&o));
    }
}

#[test]
fn output_json_has_terraform_shape_with_dcos_terraform_names() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/local.hcl"),
        dir.path().join("local.hcl"),
    )
    .unwrap();
    let mut state = State::new("local", dcform::spec::ProviderKind::Local);
    for (name, pool, role, addr) in [
        (
            "masters-1",
            "masters",
            dcform::spec::Role::Master,
            "127.0.0.1:5050",
        ),
        (
            "agents-1",
            "agents",
            dcform::spec::Role::Agent,
            "127.0.0.1:5051",
        ),
    ] {
        state.upsert_node(NodeState {
            name: name.into(),
            pool: spec::PoolName::new(pool).expect("a valid pool name"),
            index: 1,
            role,
            host: None,
            provider_id: Some("x".into()),
            addresses: vec![addr.into()],
            private_address: None,
            ssh_host_key: None,
            core_version: None,
            config_hash: None,
            status: NodeStatus::Running,
            replica_id: None,
            replica_member: false,
        });
    }
    state.outputs.insert(
        "master_url".into(),
        serde_json::json!("https://127.0.0.1:5050"),
    );
    state.outputs.insert("agents".into(), serde_json::json!(1));
    StateFile::default_for(dir.path(), "local")
        .save(&mut state)
        .unwrap();

    let o = dcform(dir.path(), &["output", "-json", "local.hcl"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for (k, out) in v.as_object().unwrap() {
        assert_eq!(out["sensitive"], false, "{k}");
        assert!(
            out.get("type").is_some() && out.get("value").is_some(),
            "{k}: {out}"
        );
    }
    assert_eq!(v["master_url"]["type"], "string");
    assert_eq!(
        v["masters-ips"]["value"],
        serde_json::json!(["127.0.0.1:5050"])
    );
    assert_eq!(
        v["private-agents-ips"]["type"],
        serde_json::json!(["list", "string"])
    );
    assert_eq!(v["cluster-address"]["value"], "127.0.0.1:5050");
    // One raw value, as `terraform output NAME`; a dcos-terraform name works too.
    let o = dcform(dir.path(), &["output", "master_url", "local.hcl"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "https://127.0.0.1:5050\n"
    );
    let o = dcform(dir.path(), &["output", "-json", "masters-ips", "local.hcl"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "[\"127.0.0.1:5050\"]\n");
    let o = dcform(
        dir.path(),
        &["output", "-raw", "cluster-address", "local.hcl"],
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "127.0.0.1:5050\n",
        "{}",
        text(&o)
    );
    // The flat shape stays available.
    let o = dcform(dir.path(), &["output", "--json", "--flat", "local.hcl"]);
    let flat: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(flat["agents"], 1);
    let o = dcform(dir.path(), &["output", "nope", "local.hcl"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("masters-ips"),
        "the error lists what exists: {}",
        text(&o)
    );
}
