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
        l.spec.core.config.get("agent_ping_timeout"),
        Some(&serde_json::json!("2s"))
    );
    assert_eq!(l.spec.definition_dir, repo_root().join("examples"));
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

#[test]
fn docker_example_loads() {
    let l =
        load(&repo_root().join("examples/docker.hcl"), &opts()).expect("examples/docker.hcl loads");
    assert_eq!(l.spec.provider.kind(), "docker");
    assert_eq!(l.spec.pools.iter().map(|p| p.size.len()).sum::<usize>(), 4);
}

#[test]
fn onprem_example_loads_with_hosts_and_expanded_key() {
    let l =
        load(&repo_root().join("examples/onprem.hcl"), &opts()).expect("examples/onprem.hcl loads");
    assert_eq!(l.spec.provider.kind(), "ssh");
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
