//! EC2 infrastructure for 50 instances against a local moto server, through the `dcform` binary:
//! `apply --infra-only` (VPC, subnet, internet gateway, route table, security groups, key pair,
//! 50 instances waited for `running`) and `destroy` (instances terminated and waited for, then the
//! network deleted). Never connects to moto's made-up instance addresses.
//!
//! `cargo bench -p dcform --bench aws_moto` (needs moto: `. .ci/setup-moto.sh`, or DCFORM_TEST_MOTO;
//! and `dccore` built next to dcform: `cargo build -p dccore --release`). Prints each figure and the
//! machine it ran on. Anchor (docs/benchmarks.md): Terraform 1.11.4 + hashicorp/aws 5.100.0 against
//! the same moto, 66.5 s apply / 68.7 s destroy on a 2-core machine.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failure is a failed run

#[path = "../../tests/moto_support/mod.rs"]
mod moto_support;

use dc_support::testing::output_within;
use std::process::Command;
use std::time::{Duration, Instant};

const PUBLIC_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl dcform-bench";

/// One master and 49 agents in one zone: the anchor's shape (one VPC, one subnet, one group, 50 instances).
fn definition(key: &str) -> String {
    format!(
        r#"cluster "bench50" {{
  provider "aws" {{
    region             = "us-east-1"
    ami                = "ami-1e749f67"
    instance_type      = "t3.micro"
    availability_zones = ["us-east-1a"]
  }}
  ssh {{
    user        = "ubuntu"
    private_key = "{key}"
  }}
  pool "masters" {{
    role  = "master"
    count = 1
  }}
  pool "agents" {{
    role  = "agent"
    count = 49
  }}
}}
"#
    )
}

fn run(dir: &std::path::Path, endpoint: &str, args: &[&str]) -> f64 {
    let started = Instant::now();
    // A bench run that hangs is killed with what it printed, not left to block the run.
    let out = output_within(
        Duration::from_secs(600),
        Command::new(env!("CARGO_BIN_EXE_dcform"))
            .args(args)
            .current_dir(dir)
            .env("HOME", dir)
            .env("AWS_ENDPOINT_URL_EC2", endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_PROFILE"),
    );
    let secs = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "dcform {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    secs
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing special: run either way.
    let Some(moto) = moto_support::Moto::start() else {
        return;
    };
    let version = moto_support::moto_server_path()
        .and_then(|p| {
            let py = p.parent()?.join("python");
            let out = dc_support::testing::try_output_within(
                Duration::from_secs(60),
                Command::new(py).args(["-c", "import moto; print(moto.__version__)"]),
            )
            .ok()?;
            Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    println!("machine: {}", dc_support::testing::machine());
    println!("moto {version} on {}", moto.url);
    for parallelism in ["10", "50"] {
        let mut applies = Vec::new();
        let mut destroys = Vec::new();
        for _ in 0..3 {
            moto.reset();
            let dir = tempfile::tempdir().unwrap();
            let key = dir.path().join("id_ed25519");
            std::fs::write(key.with_extension("pub"), PUBLIC_KEY).unwrap();
            std::fs::write(
                dir.path().join("bench.hcl"),
                definition(&key.display().to_string()),
            )
            .unwrap();
            applies.push(run(
                dir.path(),
                &moto.url,
                &[
                    "apply",
                    "--infra-only",
                    "--auto-approve",
                    "--parallelism",
                    parallelism,
                    "bench.hcl",
                ],
            ));
            let running = moto.count(
                "Action=DescribeInstances&Filter.1.Name=tag:dcform:cluster&Filter.1.Value.1=bench50&Filter.2.Name=instance-state-name&Filter.2.Value.1=running",
                "instanceId",
            );
            assert_eq!(running, 50, "apply made {running} running instances");
            destroys.push(run(
                dir.path(),
                &moto.url,
                &[
                    "destroy",
                    "--auto-approve",
                    "--parallelism",
                    parallelism,
                    "bench.hcl",
                ],
            ));
            let vpcs = moto.count(
                "Action=DescribeVpcs&Filter.1.Name=tag:dcform:cluster&Filter.1.Value.1=bench50",
                "vpcId",
            );
            assert_eq!(vpcs, 0, "destroy left the VPC");
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        println!(
            "50 instances, --parallelism {parallelism}: apply --infra-only {:.2} s, destroy {:.2} s (median of 3; runs: apply {:?}, destroy {:?}); anchor Terraform 66.5 s / 68.7 s",
            median(&mut applies),
            median(&mut destroys),
            applies
                .iter()
                .map(|s| format!("{s:.2}"))
                .collect::<Vec<_>>(),
            destroys
                .iter()
                .map(|s| format!("{s:.2}"))
                .collect::<Vec<_>>(),
        );
    }
}
