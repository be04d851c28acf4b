//! Provider `local`: every node is a sandbox folder on this host running `dccore` as a supervised process.
//! No root, no Docker. It goes through the same steps as the other providers: "upload" is a file copy and
//! "remote exec" runs `sh -c` inside the sandbox, so the whole plan/apply machinery is exercised.
//!
//! Layout: `<state dir>/nodes/<node>/` holds the node's whole install (binary, config, work dir, logs, pid),
//! `<state dir>/nodes/<node>/port` the API port picked for it at creation: with `base_port = N` the lowest
//! port from N up that no other node of the cluster holds and that is free on loopback, else one the
//! system picks. Every node shares this host, so each gets its own port, kept for good, and its own
//! loopback address derived from it (`127.1.HI.LO`, see `local_reach.rs`). Ports are picked so that the
//! agents' task port ranges (`step_ops/sandbox_agent.rs`, derived from the API port too) stay apart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use super::local_reach;
use crate::apply::{CmdOutput, Machine, NodeRequest, Provider, ProviderError, Remote, RemoteError};
use crate::spec::ClusterSpec;
use crate::state::NodeState;

/// Sandboxes under one folder.
#[derive(Debug, Clone)]
pub struct LocalProvider {
    root: PathBuf,
    /// `provider "local" { base_port = N }`: the first API port handed to nodes (0: the system picks).
    base_port: u16,
    /// Held while a create picks and records a port, so that the nodes of one wave (created
    /// concurrently) never pick the same one.
    picking: Arc<tokio::sync::Mutex<()>>,
}

impl LocalProvider {
    /// Sandboxes live in `<state_dir>/nodes/`; API ports from `base_port` up (0: the system picks).
    pub fn new(state_dir: &Path, base_port: u16) -> LocalProvider {
        // Scripts run inside each sandbox, so every path handed to them must be absolute.
        let state_dir = std::path::absolute(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
        LocalProvider {
            root: state_dir.join("nodes"),
            base_port,
            picking: Arc::default(),
        }
    }

    /// The folder holding every node's sandbox.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn sandbox(&self, node: &str) -> PathBuf {
        self.root.join(node)
    }
}

fn io_err(node: &str, what: &str, e: std::io::Error) -> ProviderError {
    ProviderError {
        node: node.into(),
        message: format!("{what}: {e}"),
        transient: false,
        source: Some(Box::new(e)),
    }
}

impl LocalProvider {
    /// The ports the cluster's sandboxes hold (their `port` files).
    fn taken_ports(&self) -> Vec<u16> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("port")).ok())
            .filter_map(|s| s.trim().parse().ok())
            .collect()
    }

    /// A port for a new node: from `base_port` up past the ports other nodes hold, else one the system picks.
    fn pick_port(&self) -> std::io::Result<u16> {
        let taken = self.taken_ports();
        if self.base_port == 0 {
            local_reach::system_port(&taken)
        } else {
            local_reach::port_from(self.base_port, &taken)
        }
    }
}

impl Provider for LocalProvider {
    type Remote = LocalRemote;

    async fn prepare(
        &self,
        _spec: &ClusterSpec,
        resources: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, ProviderError> {
        tokio::fs::create_dir_all(&self.root)
            .await
            .map_err(|e| io_err("cluster", "cannot create the sandbox folder", e))?;
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || local_reach::prepare_for_task_users(&root))
            .await
            .map_err(|e| {
                ProviderError::permanent(
                    "cluster",
                    format!("internal: the folder permission check failed: {e}"),
                )
            })?;
        let mut r = resources.clone();
        r.insert("sandboxes".into(), self.root.display().to_string());
        Ok(r)
    }

    async fn create(&self, req: &NodeRequest) -> Result<Machine, ProviderError> {
        let dir = self.sandbox(&req.name);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io_err(&req.name, "cannot create the sandbox", e))?;
        // An interrupted create may already have picked a port: keep it, so the node's address never changes.
        let port_file = dir.join("port");
        let port = match tokio::fs::read_to_string(&port_file)
            .await
            .ok()
            .and_then(|s| s.trim().parse::<u16>().ok())
        {
            Some(p) => p,
            None => {
                let _picking = self.picking.lock().await;
                let p = self
                    .pick_port()
                    .map_err(|e| io_err(&req.name, "cannot pick a free port", e))?;
                tokio::fs::write(&port_file, p.to_string())
                    .await
                    .map_err(|e| io_err(&req.name, "cannot record the port", e))?;
                p
            }
        };
        Ok(Machine {
            provider_id: dir.display().to_string(),
            addresses: vec![local_reach::node_address(port)],
            private_address: None,
        })
    }

    async fn start(&self, node: &NodeState) -> Result<Machine, ProviderError> {
        // A sandbox is a folder: there is no machine to start.
        Ok(Machine {
            provider_id: node.provider_id.clone().unwrap_or_default(),
            addresses: node.addresses.clone(),
            private_address: None,
        })
    }

    async fn connect(&self, node: &NodeState) -> Result<LocalRemote, RemoteError> {
        let dir = self.sandbox(&node.name);
        if !dir.is_dir() {
            return Err(RemoteError::Refused {
                host: node.name.clone(),
                message: format!(
                    "sandbox {} is missing (removed by hand?); run `dcform destroy` then apply again",
                    dir.display()
                ),
            });
        }
        Ok(LocalRemote {
            dir,
            node: node.name.clone(),
        })
    }

    async fn destroy(&self, node: &NodeState) -> Result<(), ProviderError> {
        let dir = self.sandbox(&node.name);
        stop_processes(&dir).await;
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&node.name, "cannot remove the sandbox", e)),
        }
    }

    async fn teardown(&self, _resources: &BTreeMap<String, String>) -> Result<(), ProviderError> {
        match tokio::fs::remove_dir_all(&self.root).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("cluster", "cannot remove the sandboxes folder", e)),
        }
    }
}

/// Stops every process of the sandbox: those named by its pid files (SIGTERM, a grace period,
/// then SIGKILL of their process groups), then every task process the agent started, found by the
/// `MESOS_SANDBOX` under this sandbox that tasks (and whatever they fork, also in sessions of
/// their own) inherit: the agent leaves tasks running when it stops, so that a restarted agent
/// re-attaches to them, but nothing of a cluster may outlive its destroy. A zombie is not alive
/// (a pid 1 that never reaps keeps killed processes as zombies, and `kill -0` succeeds on them).
/// The same rule as the uninstall template's `signal_tasks` (templates/common.sh.j2) for
/// providers whose machines outlive a destroy.
async fn stop_processes(dir: &Path) {
    let script = r#"
alive() { st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1); case "$st" in ''|Z|X) return 1 ;; esac; }
signal_tasks() {
  n=0
  for e in /proc/[0-9]*/environ; do
    p=${e#/proc/}; p=${p%/environ}
    [ "$p" != "$$" ] || continue
    tr '\000' '\n' 2>/dev/null < "$e" | grep -qF -- "MESOS_SANDBOX=$PWD/" || continue
    alive "$p" || continue
    kill "-$1" "$p" 2>/dev/null && n=$((n + 1))
  done
  echo "$n"
}
pids=""
for f in $(find . -name '*.pid' 2>/dev/null); do p=$(cat "$f" 2>/dev/null); [ -n "$p" ] && pids="$pids $p"; done
for p in $pids; do kill -TERM "$p" 2>/dev/null; done
i=0
while [ -n "$pids" ] && [ $i -lt 50 ]; do
  up=0; for p in $pids; do alive "$p" && up=1; done
  [ $up = 0 ] && break
  sleep 0.1; i=$((i + 1))
done
for p in $pids; do alive "$p" && { kill -KILL -- "-$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null; }; done
[ "$(signal_tasks TERM)" = 0 ] && exit 0
i=0
while [ "$(signal_tasks 0)" != 0 ] && [ $i -lt 30 ]; do sleep 0.1; i=$((i + 1)); done
signal_tasks KILL >/dev/null
exit 0
"#;
    if dir.is_dir() {
        // An absolute working folder: the tasks' MESOS_SANDBOX is absolute, and $PWD must match it.
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let mut cmd = tied_to_dcform(script);
        cmd.current_dir(&dir)
            .env("PWD", &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Ok(mut child) = cmd.spawn() {
            let _lifeline = child.stdin.take();
            let _ = child.wait().await;
        }
    }
}

/// The wrapper of every script the local provider runs (see [`tied_to_dcform`]). `$1` is the script.
/// Its stdin is a pipe whose only writer is this dcform: the watchdog moves it to fd 3, the script
/// gets `/dev/null` as before, and the watchdog's `read` returns only when the writer is gone.
const TIED_WRAPPER: &str = r#"exec 3<&0 </dev/null
{ read -r _ <&3; kill -KILL 0; } >/dev/null 2>&1 &
watchdog=$!
exec 3<&-
sh -c "$1"
rc=$?
kill "$watchdog" 2>/dev/null
wait "$watchdog" 2>/dev/null
exit "$rc"
"#;

/// `sh -c script` that dies, with everything it started in its process group, when the dcform
/// that ran it dies: a destroy or apply that was SIGKILLed and run again must not find its first
/// run's uninstall, stop or drain scripts still at work beside the new ones.
///
/// How: the script runs in a process group of its own (which also keeps a Ctrl-C at the terminal
/// from reaching it: dcform lets the step finish) beside a watchdog subshell blocked on a pipe
/// whose write end only dcform holds (`Child::stdin`, which the caller keeps until the script is
/// over). When dcform dies, however it dies, the kernel closes that end, the watchdog's `read`
/// returns and it SIGKILLs the group. A step that timed out drops the end too, so a timed-out
/// script no longer leaves its children (a `sleep`, a `dccore drain`) behind either. Chosen over
/// the alternatives: `PR_SET_PDEATHSIG` needs an unsafe `pre_exec` (the workspace forbids unsafe
/// code), fires when the *thread* that spawned the child exits (tokio's threads come and go), and
/// only reaches the direct child; `setpriv --pdeathsig` has the same limits and needs util-linux;
/// a `kill -0 $PPID` poll costs a process per tick and can be fooled by pid reuse. The pipe costs
/// nothing while the script runs and leaves no window.
///
/// Killing a script half-way corrupts nothing: install scripts are idempotent (the next apply
/// resumes the step), write files through a temp file and `mv` so a reader never sees half of one,
/// and hold their lock with `flock`, which the kernel releases with the dead process. What a
/// script starts on purpose to outlive it (the `dccore supervise` of a node) is started with
/// `setsid`, in a session and process group of its own, so the kill never reaches it.
fn tied_to_dcform(script: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(TIED_WRAPPER)
        .arg("dcform-script")
        .arg(script)
        .stdin(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    cmd
}

/// Commands in a sandbox: `sh -c` with the sandbox as working folder.
#[derive(Debug)]
pub struct LocalRemote {
    dir: PathBuf,
    node: String,
}

impl Remote for LocalRemote {
    async fn run(&self, script: &str, timeout: Duration) -> Result<CmdOutput, RemoteError> {
        let mut child = tied_to_dcform(script)
            .current_dir(&self.dir)
            // Never a systemd unit for a sandbox, even on a host that runs systemd.
            .env("DCFORM_NO_SYSTEMD", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| RemoteError::Other {
                host: self.node.clone(),
                message: format!("cannot run sh: {e}"),
            })?;
        // Held until this function returns, after the script ended or timed out (see `tied_to_dcform`).
        let _lifeline = child.stdin.take();
        let label = script
            .lines()
            .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .unwrap_or("")
            .chars()
            .take(60)
            .collect::<String>();
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => Ok(CmdOutput {
                code: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }),
            Ok(Err(e)) => Err(RemoteError::Other {
                host: self.node.clone(),
                message: format!("sh failed: {e}"),
            }),
            Err(_) => Err(RemoteError::Timeout {
                host: self.node.clone(),
                command: label,
                after: timeout,
            }),
        }
    }

    async fn upload(
        &self,
        contents: Arc<Vec<u8>>,
        dest: &str,
        mode: u32,
    ) -> Result<(), RemoteError> {
        // Installers render absolute paths inside the sandbox; a relative one is relative to it.
        let dest = if Path::new(dest).starts_with(&self.dir) {
            PathBuf::from(dest)
        } else {
            self.dir.join(dest.trim_start_matches('/'))
        };
        let node = self.node.clone();
        tokio::task::spawn_blocking(move || write_file(&dest, &contents, mode))
            .await
            .map_err(|e| RemoteError::Other {
                host: node.clone(),
                message: format!("upload task failed: {e}"),
            })?
            .map_err(|e| RemoteError::Other {
                host: node,
                message: format!("upload failed: {e}"),
            })
    }

    fn host_key(&self) -> Option<String> {
        None
    }
}

/// Temp file beside the destination, mode set before the rename, so a reader never sees half a file.
fn write_file(dest: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".upload-")
        .tempfile_in(dir)?;
    tmp.write_all(contents)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))?;
    }
    tmp.persist(dest).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Role;

    fn req(name: &str) -> NodeRequest {
        NodeRequest {
            cluster: "c".into(),
            name: name.into(),
            pool: crate::spec::PoolName::new("agents").unwrap(),
            index: 1,
            role: Role::Agent,
            host: None,
            instance_type: None,
        }
    }

    #[tokio::test]
    async fn create_is_idempotent_and_keeps_the_port() {
        let dir = tempfile::tempdir().unwrap();
        let p = LocalProvider::new(dir.path(), 0);
        let a = p.create(&req("agents-1")).await.unwrap();
        let b = p.create(&req("agents-1")).await.unwrap();
        assert_eq!(a, b);
        // Its own loopback address, from its port.
        let port = port_of(&a);
        assert_eq!(a.addresses[0], local_reach::node_address(port));
        assert!(a.addresses[0].starts_with("127.1."), "{a:?}");
    }

    fn port_of(m: &Machine) -> u16 {
        m.addresses[0]
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .expect("IP:PORT")
    }

    #[tokio::test]
    async fn with_a_base_port_nodes_get_their_own_ports_from_it_skipping_busy_ones() {
        // A port held by someone else on loopback: the base, so the first node must skip it.
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = busy.local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let p = LocalProvider::new(dir.path(), base);
        // One wave: created concurrently, as the executor does.
        let (r1, r2) = (req("agents-1"), req("agents-2"));
        let (a, b) = tokio::join!(p.create(&r1), p.create(&r2));
        let (a, b) = (port_of(&a.unwrap()), port_of(&b.unwrap()));
        assert!(a > base && b > base, "{a} {b} from {base}");
        assert_ne!(a, b, "each node has its own port");
        // Kept for good, and a node created later does not take a port another node holds.
        assert_eq!(port_of(&p.create(&req("agents-1")).await.unwrap()), a);
        drop(busy);
        let c = port_of(&p.create(&req("agents-3")).await.unwrap());
        assert!(c >= base && c != a && c != b, "{c}");
    }

    #[tokio::test]
    async fn remote_runs_in_the_sandbox_and_uploads_atomically_with_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = LocalProvider::new(dir.path(), 0);
        p.create(&req("agents-1")).await.unwrap();
        let node = NodeState {
            name: "agents-1".into(),
            pool: crate::spec::PoolName::new("agents").expect("valid pool name"),
            index: 1,
            role: Role::Agent,
            host: None,
            provider_id: None,
            addresses: vec![],
            private_address: None,
            ssh_host_key: None,
            core_version: None,
            config_hash: None,
            status: crate::state::NodeStatus::Created,
            replica_id: None,
            replica_member: false,
        };
        let r = p.connect(&node).await.unwrap();
        r.upload(Arc::new(b"hello".to_vec()), "/etc/x/file", 0o600)
            .await
            .unwrap();
        let out = r
            .run(
                "cat etc/x/file; stat -c %a etc/x/file; exit 3",
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!((out.code, out.stdout.as_str()), (Some(3), "hello600\n"));
        let err = r
            .run("sleep 5", Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(err, RemoteError::Timeout { .. }), "{err}");
        p.destroy(&node).await.unwrap();
        assert!(!dir.path().join("nodes/agents-1").exists());
        p.destroy(&node).await.unwrap();
    }

    /// Live (not zombie) process `pid`.
    fn alive(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|st| {
                let state = st.rsplit_once(") ").map(|(_, r)| r.chars().next());
                !matches!(state, Some(Some('Z' | 'X')) | None)
            })
            .unwrap_or(false)
    }

    fn wait_for_file(path: &Path) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(s) = std::fs::read_to_string(path)
                && s.ends_with('\n')
            {
                return s.trim().to_string();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} never appeared",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn assert_dead_within(pids: &[&str], limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        while pids.iter().any(|p| alive(p)) {
            let left: Vec<_> = pids.iter().filter(|p| alive(p)).collect();
            assert!(
                std::time::Instant::now() < deadline,
                "script processes still running after {limit:?}: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    const LONG_SCRIPT: &str = "sleep 600 & echo $! > bg.pid; echo $$ > sh.pid; sleep 600";

    /// Run as a child of the test below (see `scripts_die_with_the_dcform_that_ran_them`): plays the
    /// dcform that is SIGKILLed while a script runs. Does nothing in a normal test run.
    #[tokio::test]
    async fn child_running_a_long_script() {
        let Some(dir) = std::env::var_os("DCFORM_TEST_LONG_SCRIPT_IN") else {
            return;
        };
        let r = LocalRemote {
            dir: PathBuf::from(dir),
            node: "agents-1".into(),
        };
        let _ = r.run(LONG_SCRIPT, Duration::from_secs(3600)).await;
    }

    #[test]
    fn scripts_die_with_the_dcform_that_ran_them() {
        let dir = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let mut dcform = std::process::Command::new(exe)
            .args([
                "--exact",
                "providers::local::tests::child_running_a_long_script",
                "--test-threads=1",
            ])
            .env("DCFORM_TEST_LONG_SCRIPT_IN", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let script = wait_for_file(&dir.path().join("sh.pid"));
        let background = wait_for_file(&dir.path().join("bg.pid"));
        assert!(alive(&script) && alive(&background));
        // SIGKILL: dcform gets no chance to clean up (as when an apply or destroy is killed).
        dcform.kill().unwrap();
        dcform.wait().unwrap();
        assert_dead_within(&[&script, &background], Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_timed_out_script_leaves_nothing_of_it_running() {
        let dir = tempfile::tempdir().unwrap();
        let r = LocalRemote {
            dir: dir.path().to_path_buf(),
            node: "agents-1".into(),
        };
        let err = r
            .run(LONG_SCRIPT, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(err, RemoteError::Timeout { .. }), "{err}");
        let script = wait_for_file(&dir.path().join("sh.pid"));
        let background = wait_for_file(&dir.path().join("bg.pid"));
        assert_dead_within(&[&script, &background], Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_script_keeps_its_exit_code_and_what_it_starts_with_setsid_survives_it() {
        let dir = tempfile::tempdir().unwrap();
        let r = LocalRemote {
            dir: dir.path().to_path_buf(),
            node: "agents-1".into(),
        };
        let out = r
            .run(
                "setsid sleep 30 </dev/null >/dev/null 2>&1 & echo $! > daemon.pid; echo out; echo err >&2; exit 7",
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (Some(7), "out\n", "err\n")
        );
        let daemon = wait_for_file(&dir.path().join("daemon.pid"));
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            alive(&daemon),
            "a daemon the script started on purpose was killed"
        );
        dc_support::testing::output_within(
            Duration::from_secs(10),
            std::process::Command::new("kill").arg(&daemon),
        );
    }
}
