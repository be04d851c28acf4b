//! Shared by `providers_docker` and `providers_ssh`: finding Docker, the node image and `dccore`, running the
//! `dcform` binary under a timeout, reading `status --json`, running one task through the scheduler API
//! ([`super::mesos`]) and reading its stdout from the agent's sandbox, and label-based leftovers checks.
//!
//! Tests connect only to containers (and networks) that they or dcform created on this machine.

#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;

use super::Access;
use super::mesos::Scheduler;
use crate::common::ok;

/// Bound for one `dcform` run (a whole apply of a few containers on a 2-core machine, debug build).
pub const CLI_LIMIT: Duration = Duration::from_secs(300);

pub use dc_support::testing::within;
use dc_support::testing::{output_within, try_output_within};

/// Bound for one docker CLI call made by the tests themselves.
pub const DOCKER_LIMIT: Duration = Duration::from_secs(60);

/// `docker ARGS`, within [`DOCKER_LIMIT`], whatever its exit status.
pub fn docker(args: &[&str]) -> Output {
    output_within(
        DOCKER_LIMIT,
        std::process::Command::new("docker").args(args),
    )
}

/// `docker ARGS` (test set-up: what a user does behind dcform's back), insisting that it worked;
/// its stdout, trimmed.
pub fn docker_ok(args: &[&str]) -> String {
    let o = docker(args);
    assert!(
        o.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// What every provider test needs: the node image tag and the `dccore` binary dcform installs.
pub struct Env {
    /// Node image tag.
    pub image: String,
    /// The dccore binary.
    pub core: PathBuf,
}

/// A missing component fails the test unless skips are allowed (`DCFORM_TEST_ALLOW_SKIP=1`).
fn skip_or_panic(why: &str) -> Option<Env> {
    dc_support::testing::missing(why);
    None
}

/// What the tests need, or `None` (with a note) when something is missing and skips are allowed;
/// otherwise a missing component fails the test.
pub fn env() -> Option<Env> {
    let docker_ok = try_output_within(
        DOCKER_LIMIT,
        std::process::Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]),
    )
    .is_ok_and(|o| o.status.success());
    if !docker_ok {
        return skip_or_panic("Docker Engine is not usable: provider tests need real containers");
    }
    let core = crate::common::core_binary();
    let info = dcform_bootstrap::node_image::ensure(
        &dcform_bootstrap::node_image::NodeImageOptions::default(),
        &mut |l| eprintln!("node-image: {l}"),
    )
    .unwrap_or_else(|e| panic!("cannot build the node image: {e}"));
    Some(Env {
        image: info.tag,
        core,
    })
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A cluster name no other test (or parallel test run) uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

/// Runs `dcform ARGS` in `dir` with the test's dccore.
pub async fn dcform(env: &Env, dir: &Path, args: &[&str]) -> Output {
    let child = tokio::process::Command::from(crate::common::command(args))
        .current_dir(dir)
        .env("DCFORM_CORE_BINARY", &env.core)
        .kill_on_drop(true)
        .output();
    within(CLI_LIMIT, &format!("dcform {}", args.join(" ")), child)
        .await
        .expect("dcform runs")
}

/// Kills the core on `node` (supervisor and agent, SIGKILL) through `dcform exec`, leaving the
/// machine itself running. `args`: the definition and any `-var`s.
pub async fn kill_core(env: &Env, dir: &Path, node: &str, args: &[&str]) {
    let mut a = vec!["exec", node];
    a.extend_from_slice(args);
    a.extend([
        "--",
        "sh",
        "-c",
        "pkill -9 -f '[d]ccore supervise'; pkill -9 -f '[d]ccore agent'; true",
    ]);
    ok(
        &dcform(env, dir, &a).await,
        &format!("kill the core on {node}"),
    );
}

/// What broke is seen and mended: `plan --detailed-exitcode` exits 2 and names each of `expect`,
/// then `apply` succeeds and every one of `agents` agents is healthy right after. `def`: the
/// definition; `vars`: its `-var`s.
pub async fn plan_sees_and_apply_mends(
    env: &Env,
    dir: &Path,
    def: &str,
    vars: &[&str],
    expect: &[&str],
    agents: usize,
    what: &str,
) {
    let run = |first: &'static [&'static str]| {
        let mut a: Vec<&str> = first.to_vec();
        a.extend_from_slice(vars);
        a.push(def);
        a
    };
    let o = dcform(env, dir, &run(&["plan", "--detailed-exitcode"])).await;
    let t = crate::common::text(&o);
    assert_eq!(o.status.code(), Some(2), "plan after {what}: {t}");
    for e in expect {
        assert!(t.contains(e), "plan after {what} does not say {e:?}:\n{t}");
    }
    let o = dcform(env, dir, &run(&["apply", "--auto-approve"])).await;
    ok(&o, &format!("apply after {what}"));
    let (healthy, all, status) = agents_healthy(env, dir, def).await;
    assert_eq!(
        (healthy, all),
        (agents, agents),
        "right after the apply ({what}): {status}"
    );
}

/// `status --json`: (healthy agents with resources, all agents), and the whole document.
pub async fn agents_healthy(env: &Env, dir: &Path, def: &str) -> (usize, usize, Value) {
    let o = dcform(env, dir, &["status", "--json", def]).await;
    let t = ok(&o, "status --json");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {t}"));
    let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
    let agents: Vec<&Value> = nodes
        .iter()
        .filter(|n| n["role"].as_str().is_some_and(|r| r.contains("agent")))
        .collect();
    let healthy = agents
        .iter()
        .filter(|n| n["health"] == "healthy" && n["resources"].is_array())
        .count();
    (healthy, agents.len(), v)
}

/// Objects still labelled with the cluster: (containers, networks, volumes).
pub fn labelled(cluster: &str) -> (usize, usize, usize) {
    let count = |args: &[&str]| {
        let o = docker(args);
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count()
    };
    let f = format!("label=dcform.cluster={cluster}");
    (
        count(&["ps", "-aq", "--filter", &f]),
        count(&["network", "ls", "-q", "--filter", &f]),
        count(&["volume", "ls", "-q", "--filter", &f]),
    )
}

/// Removes whatever a failed test left with the cluster's label.
pub struct Leftovers(pub String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        // Best effort and never a panic: this may run while a failed test unwinds.
        let docker = |args: &[&str]| {
            try_output_within(
                DOCKER_LIMIT,
                std::process::Command::new("docker").args(args),
            )
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
            .unwrap_or_default()
        };
        let f = format!("label=dcform.cluster={}", self.0);
        for id in docker(&["ps", "-aq", "--filter", &f]).split_whitespace() {
            docker(&["rm", "-f", "-v", id]);
        }
        for n in docker(&["network", "ls", "-q", "--filter", &f]).split_whitespace() {
            docker(&["network", "rm", n]);
        }
    }
}

/// Runs a task printing `marker` on the cluster `status` (from `dcform status --json`) describes, through the
/// scheduler API, and returns its stdout as the agent's sandbox serves it.
pub async fn marker_task(status: &Value, dir: &Path, cluster: &str, marker: &str) -> String {
    let master = status["outputs"]["master_url"]
        .as_str()
        .expect("master_url")
        .to_string();
    let access = Access::of(&dir.join(format!(".dcform/{cluster}")));
    within(
        Duration::from_secs(120),
        "task through the scheduler API",
        async {
            let mut fw = Scheduler::subscribe(
                &master,
                &access.operator_token,
                access.ca_pem.as_deref(),
                "provider-test",
            )
            .await;
            let agent_id = fw.launch("echo", &format!("echo {marker}")).await;
            fw.wait_state("echo", "TASK_FINISHED").await;
            let agents = access.api().agents().await.expect("the master's agents");
            let agent = agents
                .iter()
                .find(|a| a.id == agent_id)
                .unwrap_or_else(|| panic!("agent {agent_id} of the task is not listed"));
            fw.sandbox_file(&agent.url, &access.agent_token, "echo", "stdout")
                .await
        },
    )
    .await
}

/// `examples/docker.hcl` written to `dir/file` with its cluster renamed to `cluster` and each
/// `(from, to)` of `edits` replaced (each must be in the example: a changed example fails here,
/// not as an odd cluster later). Returns `file`.
pub fn docker_example(dir: &Path, cluster: &str, file: &str, edits: &[(&str, &str)]) -> String {
    let src = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/docker.hcl"),
    )
    .expect("examples/docker.hcl");
    let mut def = src.replace("cluster \"docker\"", &format!("cluster \"{cluster}\""));
    assert_ne!(
        def, src,
        "examples/docker.hcl changed shape: no cluster \"docker\""
    );
    for (from, to) in edits {
        assert!(
            def.contains(from),
            "examples/docker.hcl changed shape: no {from:?}"
        );
        def = def.replace(from, to);
    }
    std::fs::write(dir.join(file), def).expect("write definition");
    file.into()
}

/// A node container's address on its (one) network.
pub fn container_ip(container: &str) -> String {
    docker_ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        container,
    ])
}

/// `getent hosts NAME` in `container` until `done` accepts its exit code (0 found, 2 not found)
/// and addresses (the masters' DNS follows elections and task changes), within `limit`; the
/// addresses of the last answer.
pub async fn resolve_until(
    container: &str,
    name: &str,
    limit: Duration,
    done: impl Fn(Option<i32>, &[String]) -> bool,
) -> Vec<String> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let o = docker(&["exec", container, "getent", "hosts", name]);
        let addrs: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect();
        if done(o.status.code(), &addrs) {
            return addrs;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{container}: `getent hosts {name}` not as wanted within {limit:?} (exit {:?}): {addrs:?} {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stderr)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
