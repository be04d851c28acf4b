//! Property test of the definition loader: random and mutated HCL never makes `spec::load` panic, and
//! every error it reports carries a `file:line:col` inside the file it was given.

use std::path::{Path, PathBuf};

use dcform::spec::{LoadOptions, SpecError, load};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Fragments that exercise the parser, the evaluator and the validator rather than only the lexer.
const TOKENS: &[&str] = &[
    "cluster \"c\" {\n",
    "provider \"local\" {}\n",
    "provider \"ssh\" {}\n",
    "pool \"p\" {\n",
    "variable \"v\" {\n",
    "ssh {\n",
    "core {\n",
    "}\n",
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    "\"",
    "=",
    "\n",
    " ",
    ",",
    "role = \"master\"\n",
    "role = \"agent\"\n",
    "count = ",
    "hosts = [\"192.0.2.1\"]\n",
    "default = ",
    "type = number\n",
    "var.v",
    "var",
    "1",
    "0",
    "-1",
    "1.5",
    "9223372036854775807",
    "18446744073709551616",
    "1e308",
    " % 0",
    " / 0",
    " * ",
    " + ",
    "\"x\"",
    "${",
    "%{ for x in [1] }${x}%{ endfor }",
    "[for x in [0] : 1 % x]",
    "length(",
    "format(\"%d\", ",
    "file(\"nope\")",
    "env(\"X\")",
    "merge({a = 1}, ",
    "true",
    "null",
    "<<EOT\nx\nEOT\n",
    "# comment\n",
    "/*",
    "*/",
    "é",
    "\u{0}",
    "\t",
    "?",
    ":",
    ".",
    "...",
    "*",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..60).prop_map(|ts| ts.concat())
}

fn seeds() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("provisioner/ has a parent")
        .to_path_buf();
    let mut out = Vec::new();
    for ex in [
        "examples/local.hcl",
        "examples/docker.hcl",
        "examples/onprem.hcl",
        "examples/local-services.hcl",
    ] {
        out.push(std::fs::read_to_string(root.join(ex)).expect("example readable"));
    }
    out
}

/// A seed definition with a few random edits: deletions, insertions of tokens or arbitrary text, and
/// duplicated slices.
fn mutated() -> impl Strategy<Value = String> {
    let edit = (
        0usize..10_000,
        0usize..40,
        prop_oneof![
            prop::sample::select(TOKENS).prop_map(String::from),
            any::<String>()
        ],
        0u8..3,
    );
    (
        prop::sample::select(seeds()),
        prop::collection::vec(edit, 1..6),
    )
        .prop_map(|(seed, edits)| {
            let mut chars: Vec<char> = seed.chars().collect();
            for (pos, len, insert, kind) in edits {
                let at = pos % (chars.len() + 1);
                let end = (at + len).min(chars.len());
                match kind {
                    0 => {
                        chars.drain(at..end);
                    }
                    1 => {
                        chars.splice(at..at, insert.chars());
                    }
                    _ => {
                        let slice: Vec<char> = chars[at..end].to_vec();
                        chars.splice(at..at, slice);
                    }
                }
            }
            chars.into_iter().collect()
        })
}

/// A well-formed cluster whose attribute names and values are random: reaches evaluation and validation
/// instead of stopping at the parser.
fn structured() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        prop::sample::select(
            &[
                "0",
                "1",
                "2",
                "3",
                "-1",
                "1.5",
                "1e308",
                "9223372036854775807",
                "true",
                "null",
                "var.v",
                "var.w",
                "v",
                "\"master\"",
                "\"agent\"",
                "[\"192.0.2.1\"]"
            ][..]
        )
        .prop_map(String::from),
        "[a-z0-9_. -]{0,8}".prop_map(|s| format!("{s:?}")),
    ];
    let expr = leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            (inner.clone(), inner.clone()).prop_map(|(k, v)| format!("{{ k = {k}, v = {v} }}")),
            (
                inner.clone(),
                prop::sample::select(&["+", "-", "*", "/", "%", "==", "&&", "<"][..]),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            (
                prop::sample::select(
                    &[
                        "length",
                        "concat",
                        "merge",
                        "format",
                        "lower",
                        "upper",
                        "join",
                        "tostring",
                        "tonumber",
                        "min",
                        "max",
                        "env",
                        "file",
                        "pathexpand",
                        "nope"
                    ][..]
                ),
                prop::collection::vec(inner.clone(), 0..3)
            )
                .prop_map(|(f, args)| format!("{f}({})", args.join(", "))),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(c, a, b)| format!("{c} ? {a} : {b}")),
            inner.clone().prop_map(|e| format!("[for x in {e} : x]")),
            inner.prop_map(|e| format!("\"${{{e}}}\"")),
        ]
    });
    let keys = &[
        "role",
        "count",
        "hosts",
        "attributes",
        "resources",
        "instance_type",
        "cuont",
        "user",
        "port",
        "version",
        "config",
        "image",
        "subnet",
    ][..];
    let attrs = (
        prop::sample::subsequence(keys, 0..5),
        prop::collection::vec(expr.clone(), 5),
    )
        .prop_map(|(ks, vs)| {
            ks.iter()
                .zip(vs)
                .map(|(k, v)| format!("    {k} = {v}\n"))
                .collect::<String>()
        });
    let head = prop::sample::select(
        &[
            "pool \"p\"",
            "pool \"q\"",
            "pool \"p\"",
            "ssh",
            "core",
            "provider \"docker\"",
            "pool",
        ][..],
    );
    let block = (head, attrs).prop_map(|(head, attrs)| format!("  {head} {{\n{attrs}  }}\n"));
    let provider = prop::sample::select(&["local", "docker", "ssh", "aws", "nope"][..]);
    (expr, provider, prop::collection::vec(block, 0..5)).prop_map(|(default, provider, blocks)| {
        format!("variable \"v\" {{\n  default = {default}\n}}\n\ncluster \"c\" {{\n  provider \"{provider}\" {{}}\n{}}}\n", blocks.concat())
    })
}

fn check(path: &Path, text: &str) -> Result<(), TestCaseError> {
    std::fs::write(path, text).map_err(|e| TestCaseError::fail(format!("write: {e}")))?;
    match load(path, &LoadOptions::default()) {
        Ok(_) => {
            if std::env::var_os("DCFORM_FUZZ_SHOW").is_some() {
                eprintln!("FUZZ loaded");
            }
            Ok(())
        }
        Err(SpecError::Read { path, source }) => Err(TestCaseError::fail(format!(
            "read error on {}: {source}",
            path.display()
        ))),
        Err(e @ SpecError::Invalid { .. }) => {
            let diags = e.diagnostics();
            if std::env::var_os("DCFORM_FUZZ_SHOW").is_some() {
                eprintln!(
                    "FUZZ {}",
                    diags.first().map(|d| d.message.as_str()).unwrap_or("")
                );
            }
            prop_assert!(!diags.is_empty(), "Invalid without diagnostics");
            for d in diags {
                prop_assert!(
                    d.line >= 1 && d.col >= 1,
                    "no position: {d}\n--- input ---\n{text}"
                );
                prop_assert!(d.file == path, "diagnostic about another file: {d}");
            }
            Ok(())
        }
    }
}

fn run(strategy: impl Strategy<Value = String>, cases: u32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = dir.path().join("fuzz.hcl");
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    if let Err(e) = runner.run(&strategy, |text| check(&path, &text)) {
        panic!("{e}");
    }
}

#[test]
fn structured_definitions_with_random_values_never_panic_and_errors_carry_positions() {
    run(structured(), 2000);
}

#[test]
fn token_soup_never_panics_and_errors_carry_positions() {
    run(token_soup(), 2000);
}

#[test]
fn mutated_examples_never_panic_and_errors_carry_positions() {
    run(mutated(), 2000);
}
