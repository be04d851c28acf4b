//! Bad input of each kind gives an error naming where it is and what would be valid, never a panic.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use terraform_compat::{CompatError, installer, terraform, tfstate};

fn tf(text: &str) -> Result<terraform_compat::Conversion, CompatError> {
    terraform::convert(&[(PathBuf::from("main.tf"), text.to_string())])
}

#[test]
fn broken_hcl_is_refused_at_its_line_and_column() {
    let e =
        tf("module \"dcos\" {\n  source = \"dcos-terraform/dcos/aws\"\n  num_masters = = 3\n}\n")
            .unwrap_err();
    match &e {
        CompatError::Syntax { line, .. } => assert_eq!(*line, 3, "{e}"),
        other => panic!("{other}"),
    }
    assert!(e.to_string().starts_with("main.tf:3:"), "{e}");
}

#[test]
fn a_module_source_dcform_does_not_know_is_refused_with_the_known_ones() {
    let e = tf("module \"vpc\" {\n  source = \"terraform-aws-modules/vpc/aws\"\n}\n").unwrap_err();
    let s = e.to_string();
    assert!(s.starts_with("main.tf:2:"), "{s}");
    assert!(
        s.contains("terraform-aws-modules/vpc/aws") && s.contains("dcos-terraform/dcos/aws"),
        "{s}"
    );
    let e = tf("module \"dcos\" {\n  source = \"dcos-terraform/dcos/gcp\"\n}\n").unwrap_err();
    assert!(e.to_string().contains("no gcp provider"), "{e}");
}

#[test]
fn a_configuration_without_node_modules_is_refused() {
    let e = tf("provider \"aws\" {}\nmodule \"sg\" {\n  source = \"dcos-terraform/security-groups/aws\"\n}\n").unwrap_err();
    assert!(
        e.to_string()
            .contains("no dcos-terraform module that makes cluster nodes"),
        "{e}"
    );
}

#[test]
fn two_cluster_modules_in_one_configuration_are_refused_naming_both() {
    let m = |label: &str| {
        format!("module \"{label}\" {{\n  source = \"dcos-terraform/dcos/aws\"\n}}\n")
    };
    let e = tf(&format!("{}{}", m("a"), m("b"))).unwrap_err();
    let s = e.to_string();
    assert!(
        s.starts_with("main.tf:4:") && s.contains("\"a\" on line 1"),
        "{s}"
    );
}

#[test]
fn a_state_that_is_not_json_is_refused_at_its_line() {
    let e = tfstate::import(
        Path::new("t.tfstate"),
        "{\n  \"version\": 4,\n  oops\n}",
        &Default::default(),
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("t.tfstate:3:"), "{e}");
}

#[test]
fn absurdly_nested_input_is_refused_not_a_stack_overflow() {
    let deep = format!("x = {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(tf(&deep), Err(CompatError::Syntax { .. })));
    let deep_yaml = format!("master_list: {}\n", "[".repeat(100_000));
    assert!(matches!(
        installer::convert(Path::new("c.yaml"), &deep_yaml),
        Err(CompatError::Syntax { .. })
    ));
    let deep_yaml = format!("master_list:\n{}x\n", "- ".repeat(100_000));
    assert!(matches!(
        installer::convert(Path::new("c.yaml"), &deep_yaml),
        Err(CompatError::Syntax { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_any_parser(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let _ = tf(&text);
        let _ = installer::convert(Path::new("c.yaml"), &text);
        let _ = tfstate::import(Path::new("t.tfstate"), &text, &Default::default());
    }

    /// Mutations of a real file reach deeper than random bytes: the parser accepts most of them.
    #[test]
    fn mutated_real_files_never_panic(cut in 0usize..1500, insert in "[\\[\\]{}()\"$#=.a-z0-9 \n-]{0,12}") {
        for name in ["dcos-terraform-examples_aws-simple_v0.3.main.tf", "zivost_dcos-custom-setup-guide_genconf_config.yaml"] {
            let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)).unwrap();
            let at = text.char_indices().map(|(i, _)| i).nth(cut % text.chars().count()).unwrap_or(0);
            let mutated = format!("{}{insert}{}", &text[..at], &text[at..]);
            let _ = tf(&mutated);
            let _ = installer::convert(Path::new("c.yaml"), &mutated);
        }
    }
}
