//! The cluster definition loader against real files: the shipped examples, variable precedence, and the
//! corpus of malformed definitions under `tests/corpus/` (each `NN-name.hcl` comes with `NN-name.expected`,
//! whose non-empty lines must all appear in the error output).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dcform::spec::{
    Diagnostic, LoadOptions, Loaded, PoolSize, ProviderSpec, Role, SpecError, load,
};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("provisioner/ has a parent")
        .to_path_buf()
}

fn opts() -> LoadOptions {
    let mut env = BTreeMap::new();
    env.insert("HOME".to_string(), "/home/tester".to_string());
    LoadOptions {
        env,
        ..LoadOptions::default()
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write test file");
    p
}

fn errors(r: Result<Loaded, SpecError>) -> (String, Vec<Diagnostic>) {
    match r {
        Ok(l) => panic!("expected an error, loaded {:?}", l.spec),
        Err(e) => (e.to_string(), e.diagnostics()),
    }
}

#[test]
fn local_example_loads_with_one_master_two_agents_one_public_agent() {
    let l =
        load(&repo_root().join("examples/local.hcl"), &opts()).expect("examples/local.hcl loads");
    assert_eq!(l.spec.name, "local");
    assert_eq!(l.spec.provider, ProviderSpec::Local(Default::default()));
    let roles: Vec<(Role, usize)> = l
        .spec
        .pools
        .iter()
        .map(|p| (p.role, p.size.len()))
        .collect();
    assert_eq!(
        roles,
        vec![(Role::Master, 1), (Role::Agent, 2), (Role::PublicAgent, 1)]
    );
    assert_eq!(
        l.spec.pools[1].attributes.get("rack").map(String::as_str),
        Some("r1")
    );
    assert_eq!(
        l.spec.core.config.get("agent_timeout_secs"),
        Some(&serde_json::json!(2.0)),
        "Mesos' agent_ping_timeout = \"2s\" becomes dccore's agent_timeout_secs"
    );
    assert_eq!(l.spec.definition_dir, repo_root().join("examples"));
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

#[test]
fn local_services_example_loads_with_an_hcl_service_and_a_marathon_json_one() {
    let l = load(&repo_root().join("examples/local-services.hcl"), &opts())
        .expect("examples/local-services.hcl loads");
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let services: Vec<(&str, &str, u32)> = l
        .spec
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.id.as_str(), s.instances))
        .collect();
    assert_eq!(services, [("web", "/web", 2), ("hello", "/hello", 1)]);
    let web = &l.spec.services[0].definition;
    assert_eq!(
        web["portDefinitions"],
        serde_json::json!([{"port": 0, "name": "http"}])
    );
    assert_eq!(web["healthChecks"][0]["portIndex"], 0);
    assert_eq!(web["upgradeStrategy"]["minimumHealthCapacity"], 0.5);
    let hello = &l.spec.services[1].definition;
    assert_eq!(hello["mem"], 32);
    assert_eq!(hello["env"]["GREETING"], "hello");
    // The same cluster as examples/local.hcl otherwise.
    let local = load(&repo_root().join("examples/local.hcl"), &opts()).expect("local.hcl");
    assert_eq!(l.spec.pools, local.spec.pools);
    assert!(local.spec.services.is_empty());
}

#[test]
fn docker_example_loads() {
    let l =
        load(&repo_root().join("examples/docker.hcl"), &opts()).expect("examples/docker.hcl loads");
    assert_eq!(l.spec.provider.kind().as_str(), "docker");
    assert_eq!(l.spec.pools.iter().map(|p| p.size.len()).sum::<usize>(), 4);
}

#[test]
fn onprem_example_loads_with_hosts_and_expanded_key() {
    let l =
        load(&repo_root().join("examples/onprem.hcl"), &opts()).expect("examples/onprem.hcl loads");
    assert_eq!(l.spec.provider.kind().as_str(), "ssh");
    assert_eq!(
        l.spec.pools[1].size,
        PoolSize::Hosts(vec!["192.0.2.20".into(), "192.0.2.21".into()])
    );
    assert_eq!(
        l.spec.ssh.private_key,
        Some(PathBuf::from("/home/tester/.ssh/id_ed25519"))
    );
}

#[test]
fn misspelled_attribute_is_located_with_a_hint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        dir.path(),
        "bad.hcl",
        "cluster \"x\" {\n  provider \"local\" {}\n  pool \"masters\" {\n    role  = \"master\"\n    count = 1\n  }\n  pool \"agents\" {\n    role  = \"agent\"\n    cuont = 2\n  }\n}\n",
    );
    let (text, diags) = errors(load(&p, &opts()));
    assert!(
        text.contains("bad.hcl:9:5: unknown attribute \"cuont\" in pool \"agents\""),
        "{text}"
    );
    assert!(diags[0].hint.contains("did you mean \"count\"?"), "{text}");
}

/// Each corpus definition fails to load, without panicking, with every expected line in the output and a
/// `file:line:col` position on every diagnostic (unless its `.expected` says `# unplaced`).
#[test]
fn malformed_corpus_is_rejected_with_the_expected_messages() {
    let corpus = repo_root().join("tests/corpus");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .expect("tests/corpus exists")
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "hcl"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 40,
        "corpus has only {} definitions",
        cases.len()
    );
    let mut env = opts().env;
    env.remove("DCFORM_CORPUS_UNSET");
    let options = LoadOptions {
        env,
        ..LoadOptions::default()
    };
    let mut failures = Vec::new();
    for case in &cases {
        let expected = std::fs::read_to_string(case.with_extension("expected"))
            .unwrap_or_else(|e| panic!("{}: missing .expected file: {e}", case.display()));
        let result = std::panic::catch_unwind(|| load(case, &options));
        let name = case
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let err = match result {
            Err(_) => {
                failures.push(format!("{name}: PANICKED"));
                continue;
            }
            Ok(Ok(_)) => {
                failures.push(format!("{name}: loaded without error"));
                continue;
            }
            Ok(Err(e)) => e,
        };
        let text = err.to_string();
        let unplaced_ok = expected.lines().any(|l| l.trim() == "# unplaced");
        for want in expected
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        {
            if !text.contains(want) {
                failures.push(format!("{name}: output lacks {want:?}; got:\n{text}"));
            }
        }
        for d in err.diagnostics() {
            if !unplaced_ok && (d.line == 0 || !d.file.ends_with(&name)) {
                failures.push(format!(
                    "{name}: diagnostic without a position in this file: {d}"
                ));
            }
        }
        if std::env::var_os("DCFORM_CORPUS_SHOW").is_some() {
            eprintln!("=== {name}\n{text}");
        }
    }
    assert!(
        failures.is_empty(),
        "{} corpus failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

const COUNTED: &str = r#"
variable "n" {
  type    = number
  default = 1
}

cluster "c" {
  provider "local" {}
  pool "masters" {
    role  = "master"
    count = 1
  }
  pool "agents" {
    role  = "agent"
    count = var.n
  }
}
"#;

fn count_of(l: &Loaded, pool: &str) -> u32 {
    match l
        .spec
        .pools
        .iter()
        .find(|p| p.name == pool)
        .map(|p| &p.size)
    {
        Some(PoolSize::Count(n)) => *n,
        other => panic!("pool {pool}: {other:?}"),
    }
}

/// default < DCFORM_VAR_* < *.auto.hcl (alphabetical) < -var-file (in order) < -var (in order).
#[test]
fn variable_precedence_is_terraforms_with_later_sources_winning() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "main.hcl", COUNTED);
    let mut o = opts();
    let agents = |o: &LoadOptions| count_of(&load(dir.path(), o).expect("loads"), "agents");

    assert_eq!(agents(&o), 1, "default");
    o.env.insert("DCFORM_VAR_n".into(), "2".into());
    assert_eq!(agents(&o), 2, "environment beats default");
    write(dir.path(), "b.auto.hcl", "n = 4\n");
    write(dir.path(), "a.auto.hcl", "n = 3\n");
    assert_eq!(
        agents(&o),
        4,
        "auto files beat the environment, later name wins"
    );
    let vf = tempfile::tempdir().expect("tempdir");
    o.var_files = vec![
        write(vf.path(), "x.hcl", "n = 6\n"),
        write(vf.path(), "y.hcl", "n = 5\n"),
    ];
    assert_eq!(agents(&o), 5, "-var-file beats auto files, later file wins");
    o.vars = vec![("n".into(), "8".into()), ("n".into(), "7".into())];
    assert_eq!(agents(&o), 7, "-var beats everything, later -var wins");
}

#[test]
fn a_folder_is_one_definition_and_auto_files_are_values_not_definitions() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "variables.hcl",
        "variable \"n\" {\n  type = number\n}\n",
    );
    write(
        dir.path(),
        "cluster.hcl",
        &COUNTED.replace(
            "variable \"n\" {\n  type    = number\n  default = 1\n}\n",
            "",
        ),
    );
    // Were this file read as a definition, `n = 3` would be a stray top-level attribute.
    write(dir.path(), "values.auto.hcl", "n = 3\n");
    write(dir.path(), "notes.txt", "not HCL");
    let l = load(dir.path(), &opts()).expect("folder loads");
    assert_eq!(count_of(&l, "agents"), 3);
    assert_eq!(l.spec.definition_dir, dir.path());
}

#[test]
fn text_values_are_parsed_for_untyped_variables_and_kept_for_string_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        dir.path(),
        "main.hcl",
        &COUNTED
            .replace("  type    = number\n", "")
            .replace(
                "  provider \"local\" {}\n",
                "  provider \"local\" {}\n  core {\n    version = var.v\n  }\n",
            )
            .replace(
                "variable \"n\" {",
                "variable \"v\" {\n  type = string\n}\n\nvariable \"n\" {",
            ),
    );
    let mut o = opts();
    o.vars = vec![("n".into(), "3".into()), ("v".into(), "2".into())];
    let l = load(&p, &o).expect("loads");
    assert_eq!(
        count_of(&l, "agents"),
        3,
        "an untyped -var that looks like a number is a number"
    );
    assert_eq!(l.spec.core.version, "2", "a string variable keeps the text");
}

#[test]
fn unknown_var_names_the_declared_variables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(dir.path(), "main.hcl", COUNTED);
    let mut o = opts();
    o.vars = vec![("m".into(), "3".into())];
    let (text, _) = errors(load(&p, &o));
    assert!(
        text.contains("-var sets undeclared variable \"m\""),
        "{text}"
    );
    assert!(text.contains("valid variables: n"), "{text}");
}

#[test]
fn a_value_of_the_wrong_type_names_its_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(dir.path(), "main.hcl", COUNTED);
    let mut o = opts();
    o.env.insert("DCFORM_VAR_n".into(), "many".into());
    let (text, _) = errors(load(&p, &o));
    assert!(
        text.contains("<env DCFORM_VAR_n>: variable \"n\": expected number, got string \"many\""),
        "{text}"
    );

    let vf = write(dir.path(), "values.tfvars.hcl", "\n\nn = [1]\n");
    let o = LoadOptions {
        var_files: vec![vf],
        ..opts()
    };
    let (text, diags) = errors(load(&p, &o));
    assert!(
        text.contains("values.tfvars.hcl:3:5: variable \"n\": expected number, got list"),
        "{text}"
    );
    assert_eq!(diags.len(), 1);
}

#[test]
fn a_variable_without_value_says_how_to_set_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        dir.path(),
        "main.hcl",
        &COUNTED.replace("  default = 1\n", ""),
    );
    let (text, diags) = errors(load(&p, &opts()));
    assert_eq!((diags[0].line, diags[0].col), (2, 10));
    assert!(text.contains("variable \"n\" has no value"), "{text}");
    assert!(
        text.contains("-var n=VALUE") && text.contains("DCFORM_VAR_n"),
        "{text}"
    );
}

#[test]
fn undeclared_names_in_value_files_are_warnings_and_environment_extras_are_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "main.hcl", COUNTED);
    write(dir.path(), "x.auto.hcl", "nn = 2\n");
    let mut o = opts();
    o.env.insert("DCFORM_VAR_other".into(), "1".into());
    let l = load(dir.path(), &o).expect("loads");
    assert_eq!(l.warnings.len(), 1, "{:?}", l.warnings);
    assert!(
        l.warnings[0]
            .to_string()
            .contains("x.auto.hcl:1:1: value for undeclared variable \"nn\" is ignored")
    );
    assert!(l.warnings[0].hint.contains("did you mean \"n\"?"));
}

/// Issue 10: the masters are one replicated group, so an even count is refused (it was a
/// warning): 2 survive no loss, 4 no more than 3.
#[test]
fn an_even_number_of_masters_is_refused_saying_why_at_the_master_pool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        dir.path(),
        "main.hcl",
        &COUNTED.replace(
            "count = 1\n  }\n  pool \"agents\"",
            "count = 2\n  }\n  pool \"agents\"",
        ),
    );
    let (text, diags) = errors(load(&p, &opts()));
    assert_eq!(diags.len(), 1, "{text}");
    assert!(diags[0].message.contains("2 masters"), "{text}");
    assert!(diags[0].message.contains("2 of 2"), "{text}");
    assert!(diags[0].hint.contains("count = 1, or 3"), "{text}");
    assert_eq!(diags[0].line, 9);
}

#[test]
fn functions_read_files_next_to_the_definition_and_the_injected_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "version.txt", "1.2.3");
    let p = write(
        dir.path(),
        "main.hcl",
        &COUNTED.replace(
            "  provider \"local\" {}\n",
            "  provider \"local\" {}\n  core {\n    version = trimmed\n    config  = { cgroups = upper(env(\"REGION\")) == \"EU\", offer_timeout = format(\"%ds\", max(var.n, 2)) }\n  }\n",
        )
        .replace("trimmed", "file(\"version.txt\")"),
    );
    let mut o = opts();
    o.env.insert("REGION".into(), "eu".into());
    let l = load(&p, &o).expect("loads");
    assert_eq!(l.spec.core.version, "1.2.3");
    assert_eq!(
        l.spec.core.config.get("cgroups"),
        Some(&serde_json::json!(true))
    );
    assert_eq!(
        l.spec.core.config.get("offer_timeout_secs"),
        Some(&serde_json::json!(2.0))
    );
}

#[test]
fn clusters_split_over_two_files_are_refused_with_both_places() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "a.hcl", COUNTED);
    write(
        dir.path(),
        "b.hcl",
        &COUNTED.replace("variable \"n\"", "variable \"m\""),
    );
    let (text, _) = errors(load(dir.path(), &opts()));
    assert!(
        text.contains("b.hcl:7:1: more than one cluster block"),
        "{text}"
    );
    assert!(text.contains("a.hcl:7:1"), "{text}");
}

#[test]
fn missing_paths_and_empty_folders_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        load(&dir.path().join("nope.hcl"), &opts()),
        Err(SpecError::Read { .. })
    ));
    let (text, _) = errors(load(dir.path(), &opts()));
    assert!(text.contains("no definition files"), "{text}");
}

#[test]
fn list_variables_take_hcl_lists_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        dir.path(),
        "main.hcl",
        "variable \"hosts\" {\n  type = list(string)\n}\n\ncluster \"c\" {\n  provider \"ssh\" {}\n  pool \"masters\" {\n    role  = \"master\"\n    hosts = var.hosts\n  }\n}\n",
    );
    let mut o = opts();
    o.vars = vec![(
        "hosts".into(),
        r#"["192.0.2.1", "192.0.2.2", "192.0.2.3"]"#.into(),
    )];
    let l = load(&p, &o).expect("loads");
    assert_eq!(l.spec.pools[0].size.len(), 3);

    o.vars = vec![("hosts".into(), "192.0.2.1".into())];
    let (text, _) = errors(load(&p, &o));
    assert!(
        text.contains("`192.0.2.1` is not a valid HCL list(string) value"),
        "{text}"
    );
}

#[test]
fn instance_type_outside_aws_is_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        dir.path(),
        "main.hcl",
        &COUNTED.replace(
            "    count = var.n\n",
            "    count = var.n\n    instance_type = \"m5.large\"\n",
        ),
    );
    let l = load(&p, &opts()).expect("loads");
    assert_eq!(l.warnings.len(), 1);
    assert!(
        l.warnings[0]
            .to_string()
            .contains("main.hcl:16:5: instance_type is ignored by provider \"local\""),
        "{}",
        l.warnings[0]
    );
    assert_eq!(l.spec.pools[1].instance_type.as_deref(), Some("m5.large"));
}
