//! **docker provider, from nothing to a registered cluster**, beside its floor, in one run.
//!
//! * *apply*: the `dcform` binary applies `examples/docker.hcl` (renamed) with `-var agents=9`:
//!   1 master + 9 agents + 1 public agent = 11 node containers, from no container at all until
//!   `apply` returns, which is after every agent's wait-healthy step saw the master accept it.
//!   `status --json` then must show every agent healthy, else the round fails.
//! * *floor*: what no provider of this shape can beat: 11 bare node containers (the same image,
//!   entry command and init, on a network of their own) created and started at once through the
//!   Docker API, until each one's sshd has sent its banner.
//!
//! Each round runs the floor, then the apply, both from nothing (everything removed between);
//! the report gives each round's figures and ratio (the fairest comparison on a machine whose load
//! drifts), and the medians. Target (docs/benchmarks.md): apply ≤ 1.3x the floor.
//!
//! ```text
//! cargo build --release --workspace --all-targets   # dccore beside dcform, in target/release
//! cargo bench --workspace --bench docker_apply                 # 3 rounds
//! cargo bench --workspace --bench docker_apply -- --rounds 5
//! ```
//! The core binary is `DCFORM_CORE_BINARY`, else `dccore` beside the benchmarked `dcform`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark: a failure is a failed run

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, RemoveContainerOptions, StartContainerOptions,
};
use dc_support::testing::{load_average, machine, output_within};
use dcform::providers::docker::ENTRYPOINT;
use dcform_bootstrap::node_image::{self, AUTHORIZED_KEYS_ENV, NodeImageOptions};
use tokio::io::AsyncReadExt;

/// Nodes of both sides: 1 master + 9 agents + 1 public agent.
const NODES: usize = 11;
/// A round that takes longer has failed.
const LIMIT: Duration = Duration::from_secs(600);

fn rounds() -> usize {
    let mut args = std::env::args().skip(1);
    let mut rounds = 3;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bench" => {}
            "--rounds" => {
                rounds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n > 0)
                    .expect("--rounds needs a number > 0")
            }
            other => panic!("unknown argument {other:?}; usage: docker_apply [--rounds N]"),
        }
    }
    rounds
}

fn core_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("DCFORM_CORE_BINARY") {
        return PathBuf::from(p);
    }
    let beside = Path::new(env!("CARGO_BIN_EXE_dcform")).with_file_name("dccore");
    assert!(
        beside.exists(),
        "{} is missing: build it first (cargo build --release --workspace --all-targets) or set DCFORM_CORE_BINARY",
        beside.display()
    );
    beside
}

/// `dcform ARGS` in `dir`, within [`LIMIT`]; its stdout, or the run fails with its output.
fn dcform(dir: &Path, core: &Path, args: &[&str]) -> String {
    let o = output_within(
        LIMIT,
        Command::new(env!("CARGO_BIN_EXE_dcform"))
            .args(args)
            .current_dir(dir)
            .env("DCFORM_CORE_BINARY", core)
            .env("NO_COLOR", "1"),
    );
    assert!(
        o.status.success(),
        "dcform {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The apply side of one round: seconds from `apply` started to its return, all agents checked.
fn apply_round(dir: &Path, core: &Path, round: usize) -> f64 {
    let src = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/docker.hcl"),
    )
    .expect("examples/docker.hcl");
    let cluster = format!("bench-{}-{round}", std::process::id());
    let def = src.replace("cluster \"docker\"", &format!("cluster \"{cluster}\""));
    assert_ne!(def, src, "examples/docker.hcl changed shape");
    std::fs::write(dir.join("docker.hcl"), def).expect("write definition");
    let agents = ["-var", "agents=9", "docker.hcl"];
    let started = Instant::now();
    dcform(
        dir,
        core,
        &[&["apply", "--auto-approve"][..], &agents].concat(),
    );
    let took = started.elapsed().as_secs_f64();
    let status: serde_json::Value = serde_json::from_str(&dcform(
        dir,
        core,
        &[&["status", "--json"][..], &agents].concat(),
    ))
    .expect("status --json");
    let nodes = status["nodes"].as_array().expect("nodes");
    let healthy = nodes
        .iter()
        .filter(|n| n["role"] != "master" && n["health"] == "healthy")
        .count();
    assert_eq!(nodes.len(), NODES, "{status:#}");
    assert_eq!(healthy, NODES - 1, "every agent healthy: {status:#}");
    dcform(
        dir,
        core,
        &[&["destroy", "--auto-approve"][..], &agents].concat(),
    );
    took
}

/// The floor side of one round: seconds until 11 fresh node containers all have sshd answering.
async fn floor_round(docker: &Docker, image: &str, round: usize) -> f64 {
    let net = format!("dcform-floor-{}-{round}", std::process::id());
    docker
        .create_network(NetworkCreateRequest {
            name: net.clone(),
            driver: Some("bridge".into()),
            ..Default::default()
        })
        .await
        .expect("create the floor's network");
    let names: Vec<String> = (1..=NODES).map(|i| format!("{net}-{i}")).collect();
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for name in names.clone() {
        let (docker, image, net) = (docker.clone(), image.to_string(), net.clone());
        set.spawn(async move { bare_node(&docker, &image, &net, &name).await });
    }
    while let Some(r) = set.join_next().await {
        r.expect("a floor node");
    }
    let took = started.elapsed().as_secs_f64();
    for name in &names {
        let _ = docker
            .remove_container(
                name,
                Some(RemoveContainerOptions {
                    force: true,
                    v: true,
                    ..Default::default()
                }),
            )
            .await;
    }
    docker
        .remove_network(&net)
        .await
        .expect("remove the floor's network");
    took
}

/// One bare node: created and started as the docker provider does, then polled until its sshd
/// sends its banner.
async fn bare_node(docker: &Docker, image: &str, net: &str, name: &str) {
    let body = ContainerCreateBody {
        image: Some(image.into()),
        hostname: Some(name.into()),
        env: Some(vec![format!("{AUTHORIZED_KEYS_ENV}=")]),
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into(), ENTRYPOINT.into()]),
        labels: Some(HashMap::from([("dcform.bench".into(), "floor".into())])),
        host_config: Some(HostConfig {
            network_mode: Some(net.into()),
            init: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptions {
        name: Some(name.into()),
        ..Default::default()
    };
    docker
        .create_container(Some(opts), body)
        .await
        .expect("create a floor node");
    docker
        .start_container(name, None::<StartContainerOptions>)
        .await
        .expect("start a floor node");
    let deadline = Instant::now() + LIMIT;
    let ip = loop {
        let c = docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .expect("inspect a floor node");
        let ip = c
            .network_settings
            .and_then(|s| s.networks)
            .and_then(|mut n| n.remove(net))
            .and_then(|e| e.ip_address)
            .filter(|ip| !ip.is_empty());
        if let Some(ip) = ip {
            break ip;
        }
        assert!(Instant::now() < deadline, "{name} has no address");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    loop {
        if banner(&ip).await {
            return;
        }
        assert!(Instant::now() < deadline, "{name}'s sshd never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `ip:22` answers with an SSH banner.
async fn banner(ip: &str) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect((ip, 22)).await.ok()?;
        let mut buf = [0u8; 8];
        s.read_exact(&mut buf).await.ok()?;
        Some(buf.starts_with(b"SSH-"))
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[tokio::main]
async fn main() {
    let rounds = rounds();
    let core = core_binary();
    println!("machine: {}", machine());
    let image = node_image::ensure(&NodeImageOptions::default(), &mut |l| eprintln!("{l}"))
        .expect("the node image")
        .tag;
    let docker = Docker::connect_with_local_defaults().expect("Docker Engine");
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut floors, mut applies) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let load = load_average();
        let floor = floor_round(&docker, &image, round).await;
        let apply = {
            let (dir, core) = (dir.path().to_path_buf(), core.clone());
            tokio::task::spawn_blocking(move || apply_round(&dir, &core, round))
                .await
                .expect("apply round")
        };
        println!(
            "round {round}: floor {floor:.2} s, apply {apply:.2} s, {:.2}x (load before: {load})",
            apply / floor
        );
        floors.push(floor);
        applies.push(apply);
    }
    let ratios: Vec<f64> = applies.iter().zip(&floors).map(|(a, f)| a / f).collect();
    println!(
        "DOCKER PROVIDER, 1 master + 10 agents from nothing to all registered: apply median {:.2} s, \
         floor ({NODES} bare node containers with sshd answering) median {:.2} s; \
         median of per-round ratios {:.2}x (target <= 1.3x); load after: {}",
        median(&applies),
        median(&floors),
        median(&ratios),
        load_average()
    );
}
