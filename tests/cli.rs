//! The `dcform` command line as a user meets it: exit codes, saved plans, locks, state safety.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

mod common;

use std::path::{Path, PathBuf};

use common::{dcform_in as dcform, text};
use dcform::state::{State, StateFile, StateLock};

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let def = dir.path().join("local.hcl");
    std::fs::copy(common::example("local.hcl"), &def).unwrap();
    (dir, def)
}

fn state_file(dir: &Path) -> StateFile {
    StateFile::default_for(dir, "local")
}

#[test]
fn plan_of_a_new_cluster_prints_the_summary_and_detailed_exitcode_says_changes() {
    let (dir, _def) = setup();
    let o = dcform(dir.path(), &["plan", "local.hcl"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("Plan: 4 to add, 0 to change, 0 to destroy."),
        "{}",
        text(&o)
    );
    let o = dcform(dir.path(), &["plan", "--detailed-exitcode", "local.hcl"]);
    assert_eq!(o.status.code(), Some(2));
    let o = dcform(
        dir.path(),
        &[
            "plan",
            "-detailed-exitcode",
            "-var",
            "agents=0",
            "local.hcl",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("Plan: 2 to add"), "{}", text(&o));
}

#[test]
fn detailed_exitcode_is_1_on_bad_input() {
    let (dir, _def) = setup();
    std::fs::write(
        dir.path().join("bad.hcl"),
        "cluster \"x\" {\n  provder \"local\" {}\n}\n",
    )
    .unwrap();
    let o = dcform(dir.path(), &["plan", "--detailed-exitcode", "bad.hcl"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("bad.hcl:2:3"), "{}", text(&o));
}

#[test]
fn applied_state_plans_no_changes_with_detailed_exitcode_0() {
    let (dir, _def) = setup();
    // Write the state a finished apply would leave, through the library.
    let plan_out = dcform(dir.path(), &["plan", "-out", "p.plan", "local.hcl"]);
    assert_eq!(plan_out.status.code(), Some(0), "{}", text(&plan_out));
    let plan: dcform::plan::SavedPlan =
        serde_json::from_slice(&std::fs::read(dir.path().join("p.plan")).unwrap()).unwrap();
    let mut state = State::new("local", dcform::spec::ProviderKind::Local);
    for c in &plan.changes {
        state.upsert_node(dcform::state::NodeState {
            name: c.node.clone(),
            pool: c.pool.clone(),
            index: c.index,
            role: c.role,
            host: None,
            provider_id: Some("x".into()),
            addresses: vec!["127.0.0.1".into()],
            private_address: None,
            ssh_host_key: None,
            core_version: Some(plan.core.version.clone()),
            config_hash: c.config_hash.clone(),
            status: dcform::state::NodeStatus::Running,
            // A finished apply leaves each master a member of the group, with the plan's id.
            replica_id: c.replica_id,
            replica_member: c.role == dcform::spec::Role::Master,
        });
    }
    state_file(dir.path()).save(&mut state).unwrap();
    let o = dcform(dir.path(), &["plan", "--detailed-exitcode", "local.hcl"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("No changes. Your cluster matches the definition."));
    let o = dcform(dir.path(), &["state", "list", "local.hcl"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "agents-1\nagents-2\nmasters-1\npublic-1\n"
    );
    let o = dcform(dir.path(), &["state", "show", "agents-9", "local.hcl"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("nodes: agents-1, agents-2, masters-1, public-1"),
        "{}",
        text(&o)
    );
    let o = dcform(dir.path(), &["state", "rm", "agents-2", "local.hcl"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("was not touched"), "{}", text(&o));
    let o = dcform(dir.path(), &["plan", "local.hcl"]);
    assert!(
        text(&o).contains("+ agents-2 (agent)"),
        "a forgotten node that is still wanted is planned anew: {}",
        text(&o)
    );
    let o = dcform(dir.path(), &["state", "rm", "agents-2", "local.hcl"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = dcform(dir.path(), &["status", "--json", "local.hcl"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["nodes"].as_array().unwrap().len(), 3);
}

#[test]
fn a_saved_plan_is_refused_once_the_state_moved() {
    let (dir, _def) = setup();
    let o = dcform(dir.path(), &["plan", "-out", "p.plan", "local.hcl"]);
    assert_eq!(o.status.code(), Some(0));
    // Someone else applies in between.
    state_file(dir.path())
        .save(&mut State::new("local", dcform::spec::ProviderKind::Local))
        .unwrap();
    let o = dcform(dir.path(), &["apply", "--auto-approve", "p.plan"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("the plan is stale"), "{}", text(&o));
}

#[test]
fn a_second_apply_fails_at_once_naming_the_lock_holder_and_force_unlock_frees_it() {
    let (dir, _def) = setup();
    let held = StateLock::acquire(&state_file(dir.path()), "apply").unwrap();
    let o = dcform(dir.path(), &["apply", "--auto-approve", "local.hcl"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains(&format!("pid {}", std::process::id())) && t.contains("force-unlock"),
        "{t}"
    );
    let o = dcform(dir.path(), &["force-unlock", "wrong-id", "local.hcl"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = dcform(dir.path(), &["force-unlock", &held.info().id, "local.hcl"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_corrupt_state_is_refused_and_left_as_it_was() {
    let (dir, _def) = setup();
    let f = state_file(dir.path());
    std::fs::create_dir_all(f.dir()).unwrap();
    std::fs::write(f.path(), "{\"version\": 1, \"serial\": ").unwrap();
    for args in [
        &["plan", "local.hcl"][..],
        &["apply", "--auto-approve", "local.hcl"][..],
        &["status", "local.hcl"][..],
    ] {
        let o = dcform(dir.path(), args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        assert!(text(&o).contains("corrupt"), "{}", text(&o));
    }
    assert_eq!(
        std::fs::read_to_string(f.path()).unwrap(),
        "{\"version\": 1, \"serial\": "
    );
}

#[test]
fn apply_without_a_terminal_or_auto_approve_asks_and_cancels_on_no_answer() {
    let (dir, _def) = setup();
    // common::command gives dcform no stdin: nobody answers the question.
    let o = dcform(dir.path(), &["apply", "local.hcl"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--auto-approve"), "{}", text(&o));
    assert!(
        !state_file(dir.path()).path().exists(),
        "nothing was written"
    );
}

#[test]
fn bad_flags_exit_1_and_help_shows_examples() {
    let (dir, _def) = setup();
    let o = dcform(dir.path(), &["plan", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(1));
    let o = dcform(dir.path(), &["plan", "-var", "novalue", "local.hcl"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("expected NAME=VALUE"), "{}", text(&o));
    let o = dcform(dir.path(), &["apply", "--help"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(text(&o).contains("Examples:"));
}

/// Found: a saved plan given to validate/plan/destroy was reported as an HCL syntax error.
#[test]
fn a_saved_plan_given_where_a_definition_belongs_says_to_apply_it() {
    let (dir, def) = setup();
    let plan = dir.path().join("scale.plan");
    let o = dcform(
        dir.path(),
        &[
            "plan",
            "-out",
            plan.to_str().unwrap(),
            def.to_str().unwrap(),
        ],
    );
    assert!(plan.is_file(), "{}", text(&o));
    for cmd in ["validate", "plan", "destroy"] {
        let o = dcform(dir.path(), &[cmd, plan.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {}", text(&o));
        assert!(
            text(&o).contains("is a saved plan") && text(&o).contains("dcform apply"),
            "{cmd}: {}",
            text(&o)
        );
    }
}

/// Found: a FIFO as the definition or as a `-var-file` hung dcform forever.
#[test]
fn a_fifo_as_definition_or_var_file_is_refused_at_once() {
    let (dir, def) = setup();
    let fifo = dir.path().join("pipe.hcl");
    assert!(
        common::run(std::process::Command::new("mkfifo").arg(&fifo))
            .status
            .success()
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let (d, f, p) = (dir.path().to_path_buf(), def.clone(), fifo.clone());
    std::thread::spawn(move || {
        let a = dcform(&d, &["validate", p.to_str().unwrap()]);
        let b = dcform(
            &d,
            &[
                "validate",
                f.to_str().unwrap(),
                "-var-file",
                p.to_str().unwrap(),
            ],
        );
        let _ = tx.send((a, b));
    });
    let (a, b) = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("dcform hung on a FIFO");
    for o in [a, b] {
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains("FIFO"), "{}", text(&o));
    }
}

/// Found: a 5 MB value was echoed whole in an error.
#[test]
fn a_huge_value_in_an_error_is_cut_with_a_note() {
    let (dir, _) = setup();
    let def = dir.path().join("huge.hcl");
    let huge = "p".repeat(5_000_000);
    std::fs::write(
        &def,
        format!("cluster \"x\" {{\n  provider \"{huge}\" {{}}\n}}\n"),
    )
    .unwrap();
    let o = dcform(dir.path(), &["validate", def.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        &text(&o)[..500.min(text(&o).len())]
    );
    let t = text(&o);
    assert!(t.len() < 5_000, "{} bytes of error", t.len());
    assert!(t.contains("more bytes not shown"), "{t}");
}

/// Found: `resources = "gpus:1"` passed `dcform validate` and failed on the node, where `dccore
/// agent --resources` refused it. Validate now runs dccore's own parser and says what is valid.
#[test]
fn validate_refuses_resources_and_attributes_the_agent_would_refuse() {
    let (dir, def) = setup();
    let text_of = |from: &str, to: &str| {
        let t = std::fs::read_to_string(&def).unwrap();
        assert!(t.contains(from), "the example has {from:?}");
        t.replacen(from, to, 1)
    };
    let gpus = dir.path().join("gpus.hcl");
    std::fs::write(
        &gpus,
        text_of(
            "    count = var.agents\n",
            "    count = var.agents\n    resources = \"gpus:1\"\n",
        ),
    )
    .unwrap();
    let o = dcform(dir.path(), &["validate", gpus.to_str().unwrap()]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("gpus.hcl:"), "names the file and line: {t}");
    assert!(
        t.contains("known resources are cpus, mem, disk, ports"),
        "says what is valid: {t}"
    );
    let ok = dir.path().join("ok.hcl");
    std::fs::write(
        &ok,
        text_of(
            "    count = var.agents\n",
            "    count = var.agents\n    resources = \"cpus:2;mem:1024;ports:[31000-32000]\"\n",
        ),
    )
    .unwrap();
    let o = dcform(dir.path(), &["validate", ok.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let attr = dir.path().join("attr.hcl");
    std::fs::write(&attr, text_of("rack = \"r1\"", "rack = \"r1;zone\"")).unwrap();
    let o = dcform(dir.path(), &["validate", attr.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("attribute rack"), "{}", text(&o));
}

/// Issue 10: the masters are one replicated group, so only 1, 3 or 5 of them make sense; validate
/// refuses the others, naming the file and saying why and what to use.
#[test]
fn validate_refuses_2_4_and_more_than_5_masters_saying_why() {
    let (dir, def) = setup();
    let t = std::fs::read_to_string(&def).unwrap();
    let one = "role  = \"master\"\n    count = 1";
    assert!(t.contains(one), "the example has one master");
    for (n, why) in [(2, "2 of 2"), (4, "like 3"), (7, "more than 5")] {
        let f = dir.path().join(format!("m{n}.hcl"));
        std::fs::write(
            &f,
            t.replacen(one, &format!("role  = \"master\"\n    count = {n}"), 1),
        )
        .unwrap();
        let o = dcform(dir.path(), &["validate", f.to_str().unwrap()]);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(1), "{n} masters: {out}");
        assert!(out.contains(&format!("m{n}.hcl:")), "names the file: {out}");
        assert!(out.contains(why), "{n} masters, says why: {out}");
    }
    for n in [1, 3, 5] {
        let f = dir.path().join(format!("ok{n}.hcl"));
        std::fs::write(
            &f,
            t.replacen(one, &format!("role  = \"master\"\n    count = {n}"), 1),
        )
        .unwrap();
        let o = dcform(dir.path(), &["validate", f.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{n} masters: {}", text(&o));
    }
}

// --- Saved plans are checked again on apply (issue 9) -------------------------------------------

/// A definition whose evaluation depends on a `-var`, a `-var-file` and `env()`.
const CHECKED_DEF: &str = r#"variable "agents" {
  type    = number
  default = 1
}
variable "rack" {
  type    = string
  default = "r0"
}
cluster "c" {
  provider "local" {}
  pool "masters" {
    role  = "master"
    count = 1
  }
  pool "agents" {
    role  = "agent"
    count = var.agents
    attributes = {
      rack = var.rack
      zone = env("DCFORM_TEST_ZONE")
    }
  }
}
"#;

/// dcform in `dir` with `DCFORM_TEST_ZONE` set to `zone` (the value `CHECKED_DEF` reads), no stdin,
/// under a deadline. (Written with full paths only, so it does not depend on this file's helpers.)
fn dcform_in_zone(dir: &Path, zone: &str, args: &[&str]) -> std::process::Output {
    dc_support::testing::output_within(
        std::time::Duration::from_secs(120),
        std::process::Command::new(env!("CARGO_BIN_EXE_dcform"))
            .args(args)
            .env("DCFORM_TEST_ZONE", zone)
            .stdin(std::process::Stdio::null())
            .current_dir(dir),
    )
}

/// `CHECKED_DEF` planned to `p.plan` with `-var rack=r1 -var-file v.hcl` (agents = 2) in zone z1.
fn checked_plan() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.hcl"), CHECKED_DEF).unwrap();
    std::fs::write(dir.path().join("v.hcl"), "agents = 2\n").unwrap();
    let o = dcform_in_zone(
        dir.path(),
        "z1",
        &[
            "plan",
            "-out",
            "p.plan",
            "-var",
            "rack=r1",
            "-var-file",
            "v.hcl",
            "c.hcl",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("Plan: 3 to add"), "{}", text(&o));
    dir
}

fn assert_refused(o: &std::process::Output, what: &str) {
    let t = text(o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("p.plan: the saved plan is not applied") && t.contains(what),
        "{t}"
    );
    assert!(t.contains("run `dcform plan` again"), "{t}");
    assert!(!t.contains("panicked"), "{t}");
}

#[test]
fn a_saved_plan_applies_with_the_variables_it_was_made_with() {
    let dir = checked_plan();
    let text_of_plan = std::fs::read_to_string(dir.path().join("p.plan")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text_of_plan).unwrap();
    assert_eq!(v["format"], 2);
    assert!(v.get("spec").is_none(), "no spec to trust: {text_of_plan}");
    assert_eq!(v["definition"]["files"][0]["text"], CHECKED_DEF);
    // Same folder, same files, same environment: applied (machines only: nothing to install).
    let o = dcform_in_zone(
        dir.path(),
        "z1",
        &["apply", "--auto-approve", "--infra-only", "p.plan"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("Apply complete! Nodes: 3 added"),
        "{}",
        text(&o)
    );
    let (_, state) = (
        (),
        StateFile::default_for(dir.path(), "c")
            .load()
            .unwrap()
            .unwrap(),
    );
    let names: Vec<&str> = state.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["agents-1", "agents-2", "masters-1"]);
    // The plan was made against no state: once applied, it is stale.
    let o = dcform_in_zone(dir.path(), "z1", &["apply", "--auto-approve", "p.plan"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("the plan is stale"), "{}", text(&o));
}

#[test]
fn a_saved_plan_edited_by_hand_is_refused() {
    let dir = checked_plan();
    let path = dir.path().join("p.plan");
    let original = std::fs::read_to_string(&path).unwrap();
    // An edit of the changes, and one of the definition's copy, each found by the file's hash.
    let edits = [
        original.replacen("\"create\"", "\"no_op\"", 1),
        original.replace("count = var.agents", "count = 9"),
    ];
    for edited in edits {
        assert_ne!(edited, original);
        std::fs::write(&path, edited).unwrap();
        let o = dcform_in_zone(dir.path(), "z1", &["apply", "--auto-approve", "p.plan"]);
        assert_refused(&o, "edited or damaged");
    }
    assert!(!dir.path().join(".dcform/c/state.json").exists());
}

#[test]
fn a_definition_or_var_file_changed_after_the_plan_is_refused_naming_it() {
    let dir = checked_plan();
    std::fs::write(
        dir.path().join("c.hcl"),
        CHECKED_DEF.replace("default = 1", "default = 4"),
    )
    .unwrap();
    let o = dcform_in_zone(dir.path(), "z1", &["apply", "--auto-approve", "p.plan"]);
    assert_refused(&o, "the definition changed since the plan was made (c.hcl)");
    std::fs::write(dir.path().join("c.hcl"), CHECKED_DEF).unwrap();
    std::fs::write(dir.path().join("v.hcl"), "agents = 3\n").unwrap();
    let o = dcform_in_zone(dir.path(), "z1", &["apply", "--auto-approve", "p.plan"]);
    assert_refused(&o, "the definition changed since the plan was made (v.hcl)");
    assert!(!dir.path().join(".dcform/c/state.json").exists());
}

#[test]
fn an_env_value_changed_after_the_plan_is_refused() {
    let dir = checked_plan();
    let o = dcform_in_zone(dir.path(), "z2", &["apply", "--auto-approve", "p.plan"]);
    assert_refused(&o, "evaluates differently");
    // Variables come from the plan, not from a new command line.
    let o = dcform_in_zone(dir.path(), "z1", &["apply", "-var", "rack=r2", "p.plan"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("a saved plan applies the variables it was made with"),
        "{}",
        text(&o)
    );
    // Relative paths are the plan folder's: from elsewhere it is refused, not misread.
    let elsewhere = tempfile::tempdir().unwrap();
    let plan = dir.path().join("p.plan");
    let o = dcform_in_zone(elsewhere.path(), "z1", &["apply", plan.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("names its files relative to that folder"),
        "{}",
        text(&o)
    );
    assert!(!dir.path().join(".dcform/c/state.json").exists());
}

#[test]
fn a_plan_of_format_1_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("old.plan"),
        r#"{"format": 1, "destroy": false, "spec": {"name": "c"}, "changes": []}"#,
    )
    .unwrap();
    let o = dcform(dir.path(), &["apply", "--auto-approve", "old.plan"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("old.plan: a plan of format 1")
            && text(&o).contains("run `dcform plan -out old.plan` again"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_saved_plan_of_a_converted_main_tf_round_trips_and_sees_its_tfvars_change() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("main.tf"),
        "variable \"n\" {}\nmodule \"dcos\" {\n  source      = \"dcos-terraform/dcos/aws\"\n  num_masters = var.n\n}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("terraform.tfvars"), "n = 1\n").unwrap();
    let o = dcform_in_zone(dir.path(), "z1", &["plan", "-out", "p.plan", "main.tf"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("Converted main.tf"), "{}", text(&o));
    // Unchanged: the checks pass and apply asks (no terminal, no answer: nothing is created, as
    // this aws definition must not reach a real cloud).
    let o = dcform_in_zone(dir.path(), "z1", &["apply", "p.plan"]);
    assert!(
        text(&o).contains("Do you want to perform these actions?")
            && text(&o).contains("no answer on standard input"),
        "{}",
        text(&o)
    );
    std::fs::write(dir.path().join("terraform.tfvars"), "n = 3\n").unwrap();
    let o = dcform_in_zone(dir.path(), "z1", &["apply", "--auto-approve", "p.plan"]);
    assert_refused(&o, "terraform.tfvars");
}
