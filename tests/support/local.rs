//! The `local` provider's clusters as the local end-to-end tests use them: a copy of examples/local.hcl
//! in a fresh folder (destroyed with all its processes when dropped), `dcform` run on it under a
//! deadline, the cluster's credentials, and the processes its nodes and tasks run on this host.

#![allow(dead_code)] // each test binary uses a different part

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use super::Access;
use super::mesos::Scheduler;
use crate::common::{self, text};

/// `dcform ARGS` with the test's dccore, within [`common::RUN`].
pub fn dcform(args: &[&str]) -> Output {
    common::run(&mut command(args))
}

/// `dcform ARGS`, not started yet, with the test's dccore (see [`common::core_binary`]).
pub fn command(args: &[&str]) -> std::process::Command {
    let mut c = common::command(args);
    c.env("DCFORM_CORE_BINARY", common::core_binary());
    c
}

/// Sends a signal with kill(1), e.g. `kill(&["-9", "--", "-1234"])`; its exit status.
pub fn kill(args: &[&str]) -> std::process::ExitStatus {
    dc_support::testing::output_within(
        Duration::from_secs(10),
        std::process::Command::new("kill").args(args),
    )
    .status
}

/// A copy of examples/local.hcl in a fresh folder, destroyed (processes and all) when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    def: PathBuf,
}

impl Cluster {
    pub fn new(name: &str) -> Cluster {
        Cluster::of_example("local.hcl", "local", &[], name)
    }

    /// A copy of `examples/EXAMPLE` (its `cluster "OLD"` renamed to `name`) and of the example
    /// files it reads (`with`, e.g. a service's JSON), side by side in a fresh folder.
    pub fn of_example(example: &str, old: &str, with: &[&str], name: &str) -> Cluster {
        // Checked before there is a cluster to drop: without the core, dcform can install nothing.
        common::core_binary();
        let dir = tempfile::tempdir().unwrap();
        let def = dir.path().join(example);
        let src = std::fs::read_to_string(common::example(example)).unwrap();
        std::fs::write(
            &def,
            src.replace(
                &format!("cluster \"{old}\""),
                &format!("cluster \"{name}\""),
            ),
        )
        .unwrap();
        for f in with {
            std::fs::copy(common::example(f), dir.path().join(f)).unwrap();
        }
        Cluster { dir, def }
    }

    /// Rewrites the definition: `edit` gets its text and returns the new one.
    pub fn edit(&self, edit: impl FnOnce(String) -> String) {
        let src = std::fs::read_to_string(&self.def).unwrap();
        std::fs::write(&self.def, edit(src)).unwrap();
    }

    pub fn def(&self) -> &str {
        self.def.to_str().unwrap()
    }

    pub fn status(&self) -> serde_json::Value {
        let o = dcform(&["status", "--json", self.def()]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        serde_json::from_slice(&o.stdout).expect("status json")
    }

    pub fn sandbox_pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        let Ok(walk) = glob_pid_files(self.dir.path()) else {
            return pids;
        };
        for f in walk {
            if let Some(p) = std::fs::read_to_string(&f)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                && Path::new(&format!("/proc/{p}")).exists()
            {
                pids.push(p);
            }
        }
        pids
    }
}

impl Cluster {
    /// Live `dccore supervise` processes whose command line points into this cluster's folder.
    pub fn supervisors(&self) -> usize {
        let root = self.dir.path().to_string_lossy().to_string();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| c.contains(" supervise ") && c.contains(&root))
            .count()
    }
}

impl Cluster {
    /// Starts `dcform apply -var VAR` in the background and returns once the state records an agent (the
    /// master is up and the agents' wave has begun), or the apply ended.
    pub async fn apply_until_agents_start(&self, var: &str, capture: bool) -> std::process::Child {
        let state = self
            .dir
            .path()
            .join(".dcform")
            .join(self.name())
            .join("state.json");
        let out = || {
            if capture {
                Stdio::piped()
            } else {
                Stdio::null()
            }
        };
        let mut child = command(&["apply", "--auto-approve", "-var", var, self.def()])
            .stdout(out())
            .stderr(out())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !std::fs::read_to_string(&state)
            .unwrap_or_default()
            .contains("\"agents-")
            && child.try_wait().unwrap().is_none()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "apply never got to the agents"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        child
    }

    /// The state file of this cluster.
    pub fn state_path(&self) -> PathBuf {
        self.dir
            .path()
            .join(".dcform")
            .join(self.name())
            .join("state.json")
    }

    pub fn name(&self) -> String {
        std::fs::read_to_string(&self.def)
            .unwrap()
            .lines()
            .find_map(|l| {
                l.strip_prefix("cluster \"")
                    .and_then(|r| r.split('"').next())
                    .map(String::from)
            })
            .unwrap()
    }
}

/// A framework subscribed to the cluster `status` describes, with the cluster access it used.
pub async fn framework(status: &serde_json::Value, name: &str) -> (Scheduler, Access) {
    let master = status["outputs"]["master_url"]
        .as_str()
        .unwrap()
        .to_string();
    let token_file = Path::new(status["outputs"]["token_file"].as_str().unwrap());
    let access = Access::of(token_file.parent().unwrap());
    let fw = tokio::time::timeout(
        Duration::from_secs(30),
        Scheduler::subscribe(
            &master,
            &access.operator_token,
            access.ca_pem.as_deref(),
            name,
        ),
    )
    .await
    .expect("subscribe");
    (fw, access)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = dcform(&["destroy", "--auto-approve", self.def()]);
    }
}

pub fn glob_pid_files(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "pid") {
                out.push(p);
            }
        }
    }
    Ok(out)
}

/// (healthy agents, all agents) of a `status --json` document.
pub fn agents_healthy(status: &serde_json::Value) -> (usize, usize) {
    let nodes = status["nodes"].as_array().unwrap();
    let agents: Vec<_> = nodes
        .iter()
        .filter(|n| n["role"].as_str().unwrap().contains("agent"))
        .collect();
    (
        agents.iter().filter(|n| n["health"] == "healthy").count(),
        agents.len(),
    )
}

/// Live processes (zombies excluded) that run in a task sandbox under `root`: their environment
/// has a MESOS_SANDBOX there.
pub fn task_processes(root: &Path) -> Vec<u32> {
    let want = format!("MESOS_SANDBOX={}/", root.display());
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        if env
            .split(|b| *b == 0)
            .any(|v| v.starts_with(want.as_bytes()))
            && !is_zombie(pid)
        {
            out.push(pid);
        }
    }
    out
}

pub fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.contains(") Z "))
        .unwrap_or(true)
}
