//! Test harness: the node image, a docker network per test, containers running real sshd, keys.
//!
//! Everything created is labelled `dcform.test=bootstrap` and removed when the [`TestNet`] drops
//! (also when the test panics). Tests connect only to container IPs on networks they created.

use std::path::{Path, PathBuf};
use std::process::{Command as Proc, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use dc_support::testing::{output_within, try_output_within};
use dcform_bootstrap::node_image::{self, NodeImageOptions};
use dcform_bootstrap::ssh::{Auth, ConnectOptions, HostKeyPolicy, Session, SshError, Target};

pub const LABEL: &str = "dcform.test=bootstrap";

/// Bound for every `.await` on a test's happy path.
pub const T: Duration = Duration::from_secs(120);

/// Bound of one command the tests run themselves (docker, ssh-keygen).
pub const CMD: Duration = Duration::from_secs(60);

/// Awaits `fut` under [`T`], failing the test with `what` if it hangs.
pub async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    dc_support::testing::within(T, what, fut).await
}

/// Runs `cmd` within [`CMD`] (the test fails if it hangs).
pub fn run(cmd: &mut Proc) -> Output {
    output_within(CMD, cmd)
}

/// The node image tag, built once per machine (cached by recipe, serialised by a file lock).
/// Without Docker the test fails, unless skips are allowed (`DCFORM_TEST_ALLOW_SKIP=1`): `None`.
pub fn image() -> Option<String> {
    static IMG: OnceLock<Option<String>> = OnceLock::new();
    IMG.get_or_init(|| {
        let ok = try_output_within(
            CMD,
            Proc::new("docker").args(["version", "--format", "{{.Server.Version}}"]),
        )
        .is_ok_and(|o| o.status.success());
        if !ok {
            dc_support::testing::missing(
                "Docker Engine is not usable: these tests need real sshd in containers",
            );
            return None;
        }
        let info = node_image::ensure(&NodeImageOptions::default(), &mut |l| {
            eprintln!("node-image: {l}")
        })
        .unwrap_or_else(|e| panic!("cannot build the node image: {e}"));
        Some(info.tag)
    })
    .clone()
}

pub fn docker(args: &[&str]) -> String {
    let out = run(Proc::new("docker").args(args));
    assert!(
        out.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// What a container wrote, stdout and stderr: sshd (`-D -e`) logs to stderr, which `docker logs`
/// passes on as its own stderr, so [`docker`] alone would never see a login.
pub fn container_logs(name: &str) -> String {
    let out = run(Proc::new("docker").args(["logs", name]));
    assert!(out.status.success(), "docker logs {name} failed");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A docker network owned by one test; its containers and itself are removed on drop.
pub struct TestNet {
    pub name: String,
    pub image: String,
    containers: std::sync::Mutex<Vec<String>>,
    pub dir: tempfile::TempDir,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl TestNet {
    /// `None` when the test should skip (no Docker, and skips allowed).
    pub fn new() -> Option<TestNet> {
        let image = image()?;
        let name = format!(
            "dcform-boot-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        docker(&["network", "create", "--label", LABEL, &name]);
        Some(TestNet {
            name,
            image,
            containers: Default::default(),
            dir: tempfile::tempdir().expect("tempdir"),
        })
    }

    /// Starts a node container with `pubkey` authorized for root; `cmd` overrides the entry command.
    pub fn node(&self, pubkey: &str, cmd: &[&str]) -> Node {
        let name = format!("{}-n{}", self.name, SEQ.fetch_add(1, Ordering::SeqCst));
        let env = format!("DCFORM_AUTHORIZED_KEYS={pubkey}");
        let mut args = vec![
            "run",
            "-d",
            "--name",
            &name,
            "--hostname",
            &name,
            "--network",
            &self.name,
            "--label",
            LABEL,
            "-e",
            &env,
            &self.image,
        ];
        args.extend_from_slice(cmd);
        docker(&args);
        self.containers.lock().expect("lock").push(name.clone());
        let ip = docker(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            &name,
        ]);
        Node { name, ip }
    }

    /// Generates an ed25519 key pair (or `kind`) with an optional passphrase.
    pub fn keygen(&self, name: &str, kind: &str, passphrase: &str) -> Key {
        let path = self.dir.path().join(name);
        let mut args = vec!["-q", "-t", kind, "-N", passphrase, "-C", name, "-f"];
        let p = path.to_string_lossy().to_string();
        args.push(&p);
        if kind == "rsa" {
            args.extend_from_slice(&["-b", "2048"]);
        }
        let out = run(Proc::new("ssh-keygen").args(&args));
        assert!(
            out.status.success(),
            "ssh-keygen: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let public = std::fs::read_to_string(path.with_extension("pub"))
            .or_else(|_| std::fs::read_to_string(format!("{p}.pub")))
            .expect("read public key");
        Key {
            path,
            public: public.trim().to_string(),
        }
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let names = self
            .containers
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default();
        if !names.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(names.iter().map(String::as_str));
            // Never a panic here: this may run while a failed test unwinds.
            let _ = try_output_within(CMD, Proc::new("docker").args(&args));
        }
        let _ = try_output_within(CMD, Proc::new("docker").args(["network", "rm", &self.name]));
    }
}

pub struct Node {
    pub name: String,
    pub ip: String,
}

impl Node {
    /// Runs a shell command in the container as root (test setup and inspection only).
    pub fn sh(&self, script: &str) -> String {
        docker(&["exec", &self.name, "sh", "-c", script])
    }
}

pub struct Key {
    pub path: PathBuf,
    pub public: String,
}

pub fn auth(key: &Path) -> Auth {
    Auth {
        key_files: vec![key.to_path_buf()],
        passphrase: None,
        agent_socket: None,
    }
}

pub fn opts(log: Option<PathBuf>) -> ConnectOptions {
    ConnectOptions {
        log_path: log,
        ..ConnectOptions::default()
    }
}

/// Connects to `target` with `key` under `policy` (logging to `log`) within the test deadline
/// (`what` names the wait); the outcome, for the test to judge.
pub async fn connect_to(
    what: &str,
    target: Target,
    key: &Path,
    policy: HostKeyPolicy,
    log: Option<PathBuf>,
) -> Result<Session, SshError> {
    within(what, Session::connect(target, auth(key), policy, opts(log))).await
}

/// Connects as `user` with trust-on-first-use.
pub async fn connect(ip: &str, user: &str, key: &Path) -> Session {
    connect_to(
        "connect",
        Target::new(ip, user),
        key,
        HostKeyPolicy::TrustOnFirstUse,
        None,
    )
    .await
    .unwrap_or_else(|e| panic!("connect to {user}@{ip}: {e}"))
}
