//! Golden conversions: every input file in `tests/data/` (real files from `../shared/compat-data/`, each
//! naming its source in its first line, and hand-written variants for the other shapes) converts to the
//! definition and report checked in beside it. `UPDATE_GOLDEN=1 cargo test -p terraform-compat` rewrites
//! them; review the diff. dcform's own tests load every `*.golden.hcl` with `spec::load`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};

use terraform_compat::{Conversion, installer, terraform, tfstate};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// Converts a data file by its name (so reports name `main.tf`, not a machine's path).
fn convert(name: &str) -> Conversion {
    let text = std::fs::read_to_string(data().join(name)).unwrap();
    let p = PathBuf::from(name);
    if name.ends_with(".tf") {
        terraform::convert(&[(p, text)]).unwrap_or_else(|e| panic!("{name}: {e}"))
    } else if name.ends_with(".yaml") {
        installer::convert(&p, &text).unwrap_or_else(|e| panic!("{name}: {e}"))
    } else {
        tfstate::import(&p, &text, &tfstate::ImportOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }
}

fn inputs() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(data())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tf") || n.ends_with(".yaml") || n.ends_with(".tfstate"))
        .collect();
    v.sort();
    v
}

fn check(path: &Path, got: &str, stale: &mut Vec<String>) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(path).unwrap_or_default();
    if want != got {
        stale.push(format!(
            "{}:\n--- want\n{want}\n--- got\n{got}",
            path.display()
        ));
    }
}

#[test]
fn every_data_file_converts_to_its_golden_definition_and_report() {
    let mut stale = Vec::new();
    let names = inputs();
    assert!(
        names.len() >= 3,
        "the shared compat-data files are in tests/data: {names:?}"
    );
    for name in &names {
        let c = convert(name);
        check(
            &data().join(format!("{name}.golden.hcl")),
            &c.definition,
            &mut stale,
        );
        check(
            &data().join(format!("{name}.report.txt")),
            &c.report.render_human(),
            &mut stale,
        );
    }
    assert!(
        stale.is_empty(),
        "{} golden file(s) differ (UPDATE_GOLDEN=1 rewrites them):\n{}",
        stale.len(),
        stale.join("\n")
    );
}

#[test]
fn every_real_data_file_names_its_source_in_its_first_line() {
    for name in inputs().iter().filter(|n| !n.ends_with(".tfstate")) {
        let text = std::fs::read_to_string(data().join(name)).unwrap();
        let first = text.lines().next().unwrap_or("");
        assert!(
            first.starts_with("# source:") || first.starts_with("# hand-written"),
            "{name}: first line {first:?}"
        );
    }
}

fn dropped(c: &Conversion) -> Vec<&str> {
    c.report
        .not_carried_over
        .iter()
        .map(|i| i.input.as_str())
        .collect()
}

#[test]
fn aws_simple_plans_four_nodes_and_names_the_enterprise_inputs() {
    let c = convert("dcos-terraform-examples_aws-simple_v0.3.main.tf");
    assert_eq!(c.report.cluster, "generic-dcos-ee-demo");
    assert_eq!(c.report.known_nodes(), 4);
    let d = dropped(&c);
    for input in [
        "module.dcos.dcos_license_key_contents",
        "module.dcos.dcos_superuser_password_hash",
        "module.dcos.dcos_superuser_username",
        "module.dcos.dcos_variant",
        "module.dcos.admin_ips",
        "module.dcos.bootstrap_instance_type",
        "data.http.whatismyip",
        "output.masters_dns_name",
    ] {
        assert!(d.contains(&input), "{input} not reported: {d:?}");
    }
    let ee = c
        .report
        .not_carried_over
        .iter()
        .find(|i| i.input.ends_with("dcos_license_key_contents"))
        .unwrap();
    assert!(ee.reason.starts_with("Enterprise-only"), "{}", ee.reason);
    assert_eq!(ee.line, 35, "the line of the input in main.tf");
    // The local was resolved into the label; the data source made admin_ips unknowable.
    assert!(c.definition.contains("cluster \"generic-dcos-ee-demo\""));
    let admin = c
        .report
        .not_carried_over
        .iter()
        .find(|i| i.input.ends_with("admin_ips"))
        .unwrap();
    assert!(admin.reason.contains("firewall"), "{}", admin.reason);
}

#[test]
fn terraform_0_11_quoted_numbers_and_variables_are_carried_over() {
    let c = convert("terraform-aws-dcos_docs-published.main.tf");
    assert!(
        c.definition.contains("count         = 1"),
        "{}",
        c.definition
    );
    assert!(
        c.definition.contains("user        = \"core\""),
        "coreos login user: {}",
        c.definition
    );
    assert!(
        c.definition.contains("region = \"us-east-1\""),
        "{}",
        c.definition
    );
    // dcos_install_mode only feeds an input with no dcform meaning: the variable is reported, not written.
    assert!(
        !c.definition.contains("variable \"dcos_install_mode\""),
        "{}",
        c.definition
    );
    assert!(dropped(&c).contains(&"var.dcos_install_mode"));
}

#[test]
fn the_installer_config_becomes_an_ssh_definition_with_its_six_hosts() {
    let c = convert("zivost_dcos-custom-setup-guide_genconf_config.yaml");
    assert_eq!(c.report.provider, "ssh");
    assert_eq!(c.report.known_nodes(), 6);
    assert!(
        c.definition.contains("user        = \"sysop\""),
        "{}",
        c.definition
    );
    assert!(
        c.definition
            .contains("hosts = [\"10.2.0.4\", \"10.2.0.5\", \"10.5.0.5\"]"),
        "{}",
        c.definition
    );
    let d = dropped(&c);
    for k in [
        "oauth_enabled",
        "bootstrap_url",
        "resolvers",
        "telemetry_enabled",
        "exhibitor_storage_backend",
    ] {
        assert!(d.contains(&k), "{k} not reported: {d:?}");
    }
}

#[test]
fn a_tag_filter_imports_only_the_matching_instances() {
    let text = std::fs::read_to_string(data().join("handwritten_v4_dcos-aws.tfstate")).unwrap();
    let opts = tfstate::ImportOptions {
        filters: vec!["tag:Role=agent".parse().unwrap()],
        ssh_user: Some("ec2-user".into()),
        ..Default::default()
    };
    let c = tfstate::import(Path::new("s.tfstate"), &text, &opts).unwrap();
    let hosts: Vec<(String, Option<u64>)> = c
        .report
        .pools
        .iter()
        .map(|p| (p.role.clone(), p.nodes))
        .collect();
    assert_eq!(
        hosts,
        [
            ("agent".to_string(), Some(2)),
            ("agent".to_string(), Some(1))
        ]
    );
    assert!(
        !c.definition.contains("198.51.100.11"),
        "the master is filtered out: {}",
        c.definition
    );
    assert!(
        c.definition.contains("default     = \"ec2-user\""),
        "{}",
        c.definition
    );
    let out: Vec<&str> = dropped(&c);
    assert!(
        out.iter().any(|i| i.contains("dcos-master-instances")),
        "{out:?}"
    );
}

#[test]
fn extra_pools_and_variables_of_0_12_are_carried_over() {
    let c = convert("handwritten_v0.12-variables-extra-pools.main.tf");
    let pools: Vec<(&str, &str)> = c
        .report
        .pools
        .iter()
        .map(|p| (p.name.as_str(), p.role.as_str()))
        .collect();
    assert_eq!(
        pools,
        [
            ("masters", "master"),
            ("agents", "agent"),
            ("public-agents", "public_agent"),
            ("gpuagent", "agent"),
            ("edge", "public_agent")
        ]
    );
    assert!(
        c.definition.contains("count         = var.num_gpu_agents"),
        "{}",
        c.definition
    );
    assert!(
        c.definition
            .contains("instance_type = var.gpu_agents_instance_type"),
        "{}",
        c.definition
    );
    assert!(
        c.definition.contains("variable \"num_gpu_agents\""),
        "{}",
        c.definition
    );
    // The extra pools carry the agents the main module was told about.
    assert!(
        c.report
            .notes
            .iter()
            .any(|n| n.input == "module.dcos.additional_private_agent_ips")
    );
    assert!(!dropped(&c).contains(&"module.dcos.additional_public_agent_ips"));
}

#[test]
fn the_decomposed_form_gives_one_pool_per_instance_module_and_reports_the_rest() {
    let c = convert("handwritten_v0.11-decomposed.main.tf");
    assert_eq!(c.report.pools.len(), 3);
    assert_eq!(c.report.known_nodes(), 4);
    let d = dropped(&c);
    for m in [
        "module.dcos-security-groups",
        "module.dcos-iam",
        "module.dcos-bootstrap-instance",
        "module.dcos-lb",
        "module.dcos-install.dcos_version",
    ] {
        assert!(d.contains(&m), "{m}: {d:?}");
    }
    // The install module's counts repeat the instance modules': not reported twice, not a second pool.
    assert!(
        !d.iter().any(|i| i.starts_with("module.dcos-install.num_")),
        "{d:?}"
    );
}

#[test]
fn a_cluster_name_variable_used_elsewhere_too_is_still_written() {
    let text = "variable \"name\" {\n  default = \"demo\"\n}\nmodule \"dcos\" {\n  source = \"dcos-terraform/dcos/aws\"\n  cluster_name = \"${var.name}\"\n  masters_instance_type = \"${var.name == \"demo\" ? \"m5.large\" : \"m5.xlarge\"}\"\n}\n";
    let c = terraform::convert(&[(PathBuf::from("main.tf"), text.to_string())]).unwrap();
    assert!(
        c.definition.contains("cluster \"demo\""),
        "{}",
        c.definition
    );
    assert!(
        c.definition.contains("variable \"name\""),
        "the instance type still uses it: {}",
        c.definition
    );
    assert!(
        c.definition
            .contains("var.name == \"demo\" ? \"m5.large\" : \"m5.xlarge\""),
        "{}",
        c.definition
    );
}

#[test]
fn terraform_tfvars_beside_main_tf_become_the_variables_defaults() {
    let dir = std::env::temp_dir().join(format!("tfcompat-tfvars-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        data().join("handwritten_v0.12-variables-extra-pools.main.tf"),
        dir.join("main.tf"),
    )
    .unwrap();
    std::fs::write(
        dir.join("terraform.tfvars"),
        "num_private_agents = 5\nnot_declared = 1\n",
    )
    .unwrap();
    std::fs::write(dir.join("b.auto.tfvars"), "num_gpu_agents = 4\n").unwrap();
    let c = terraform_compat::convert_path(&dir.join("main.tf")).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let agents = c.report.pools.iter().find(|p| p.name == "agents").unwrap();
    assert_eq!(agents.nodes, Some(5), "{}", c.definition);
    let gpu = c
        .report
        .pools
        .iter()
        .find(|p| p.name == "gpuagent")
        .unwrap();
    assert_eq!(gpu.nodes, Some(4));
    assert!(
        c.definition
            .contains("count         = var.num_private_agents"),
        "still a variable: {}",
        c.definition
    );
    let note = c
        .report
        .notes
        .iter()
        .find(|n| n.input == "var.num_private_agents")
        .unwrap();
    assert!(
        note.file.ends_with("terraform.tfvars") && note.line == 1,
        "{note:?}"
    );
    assert!(dropped(&c).contains(&"var.not_declared"));
}
