//! Tests of the `dccore` binary itself: command line, address reporting, `supervise`, and an
//! unmodified third-party Mesos framework library (pymesos) against a master and agent.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use support::{BIN, alive, start_bin};
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(60);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    dc_support::testing::within(WAIT, what, f).await
}

/// Starts `dccore ARGS`, returns the child and the address printed on its first stdout line.
async fn start(args: &[&str]) -> (Child, String) {
    start_bin(args, Stdio::null()).await
}

/// `dccore master` on a free port of 127.0.0.1 with work dir `wd`, the token file and `extra`.
async fn start_master(wd: &Path, token: &str, extra: &[&str]) -> (Child, String) {
    let wd = wd.to_str().expect("a UTF-8 temp path");
    let mut args = vec![
        "master",
        "--listen",
        "127.0.0.1:0",
        "--work-dir",
        wd,
        "--token-file",
        token,
    ];
    args.extend_from_slice(extra);
    start(&args).await
}

/// `dccore agent` of the master at `master`, working in `wd`, offering `resources`, with `extra`
/// arguments; the child and its URL.
async fn start_agent(
    master: &str,
    wd: &Path,
    token: &str,
    resources: &str,
    extra: &[&str],
) -> (Child, String) {
    let wd = wd.to_str().expect("a UTF-8 temp path");
    let mut args = vec![
        "agent",
        "--master",
        master,
        "--listen",
        "127.0.0.1:0",
        "--work-dir",
        wd,
        "--token-file",
        token,
        "--resources",
        resources,
    ];
    args.extend_from_slice(extra);
    start(&args).await
}

fn write_token(dir: &Path) -> String {
    let p = dir.join("token");
    std::fs::write(&p, "bin-token\n").expect("write the token file");
    p.display().to_string()
}

#[tokio::test]
async fn version_flag_prints_the_crate_version() {
    let out = within(
        "dccore --version",
        Command::new(BIN)
            .arg("--version")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("dccore {}", dccore::VERSION)
    );
}

#[tokio::test]
async fn port_zero_prints_the_chosen_address_and_writes_the_address_file() {
    let dir = tempfile::tempdir().unwrap();
    let token = write_token(dir.path());
    let wd = dir.path().join("m");
    let (mut m, addr) = start_master(&wd, &token, &[]).await;
    assert!(
        addr.starts_with("http://127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );
    assert_eq!(
        std::fs::read_to_string(wd.join("address")).unwrap().trim(),
        addr
    );
    // The workspace's reqwest has rustls without a built-in provider: install ring first.
    dccore::tls::install_default_provider();
    let health = within("GET /health", reqwest::get(format!("{addr}/health")))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let aw = dir.path().join("a");
    let (mut a, aaddr) = start_agent(
        &addr,
        &aw,
        &token,
        "cpus:1;mem:256",
        &["--attributes", "rack:r1"],
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(aw.join("address")).unwrap().trim(),
        aaddr
    );
    let _ = m.start_kill();
    let _ = a.start_kill();
}

/// `dccore probe ARGS`: its exit status and its output.
async fn probe(args: &[&str]) -> (bool, String) {
    let out = within(
        "dccore probe",
        Command::new(BIN)
            .arg("probe")
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("run dccore probe");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Found on a fresh machine: right after an agent died, wait-healthy passed because the master
/// still listed the dead agent as active (until its agent timeout). The node-side probe judges the
/// agent that runs now, from what the master told that very process.
#[tokio::test]
async fn the_agent_probe_passes_for_a_live_registered_agent_and_fails_as_soon_as_it_dies() {
    let dir = tempfile::tempdir().unwrap();
    let token = write_token(dir.path());
    let wd = dir.path().join("m");
    let (mut m, addr) = start_master(&wd, &token, &[]).await;
    let aw = dir.path().join("a");
    let (mut a, aaddr) = start_agent(&addr, &aw, &token, "cpus:1;mem:256", &[]).await;
    let work = aw.to_str().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (ok, text) = probe(&["--agent-work-dir", work]).await;
        if ok {
            assert!(text.contains("active"), "{text}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "probe never passed: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.kill().await.expect("kill the agent");
    // The master still lists it as active (it has not missed enough heartbeats yet) ...
    let (ok, text) = probe(&[
        "--master",
        &addr,
        "--token-file",
        &token,
        "--agent-url",
        &aaddr,
    ])
    .await;
    assert!(ok, "the master's memory of the agent: {text}");
    // ... but the agent that registered is gone, and the node-side probe says so at once.
    let (ok, text) = probe(&["--agent-work-dir", work]).await;
    assert!(!ok, "{text}");
    assert!(text.contains("not running"), "{text}");
    let _ = m.start_kill();
}

/// dccore used the reverse of dcform's exit codes: now 1 is bad usage (clap's own errors too) and
/// 2 a runtime failure, in both binaries.
#[tokio::test]
async fn usage_errors_exit_1_and_runtime_failures_exit_2_as_in_dcform() {
    let dir = tempfile::tempdir().unwrap();
    let token = write_token(dir.path());
    let run = |args: Vec<String>| async move {
        within(
            "dccore",
            Command::new(BIN).args(&args).kill_on_drop(true).output(),
        )
        .await
        .expect("run dccore")
    };
    let unknown_flag = run(vec!["probe".into(), "--no-such-flag".into()]).await;
    assert_eq!(unknown_flag.status.code(), Some(1), "clap usage error");
    let help = run(vec!["probe".into(), "--help".into()]).await;
    assert_eq!(help.status.code(), Some(0), "--help");
    // Nothing listens on port 9 of loopback: the probe runs and finds no master.
    let no_master = run(vec![
        "probe".into(),
        "--master".into(),
        "http://127.0.0.1:9".into(),
        "--token-file".into(),
        token.clone(),
        "--timeout-secs".into(),
        "2".into(),
    ])
    .await;
    let err = String::from_utf8_lossy(&no_master.stderr);
    assert_eq!(no_master.status.code(), Some(2), "{err}");
    assert!(err.contains("unreachable"), "{err}");
}

#[tokio::test]
async fn invalid_resources_are_a_usage_error_naming_what_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let token = write_token(dir.path());
    let out = within(
        "dccore agent with bad resources",
        Command::new(BIN)
            .args([
                "agent",
                "--master",
                "http://127.0.0.1:9",
                "--listen",
                "127.0.0.1:0",
                "--work-dir",
            ])
            .arg(dir.path().join("a"))
            .args(["--token-file", &token, "--resources", "gpus:1"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "bad usage exits 1, as with dcform"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("known resources are cpus, mem, disk, ports"),
        "{err}"
    );
}

#[tokio::test]
async fn supervise_restarts_the_command_and_stops_it_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("run/sup.pid");
    let log_file = dir.path().join("log/sup.log");
    let marker = dir.path().join("runs");
    let child_pid = dir.path().join("child.pid");
    // The first two runs crash; the third stays up.
    let script = format!(
        "echo run >> {m}; echo started; n=$(wc -l < {m}); if [ $n -lt 3 ]; then exit 1; fi; echo $$ > {c}; exec sleep 1000",
        m = marker.display(),
        c = child_pid.display()
    );
    let mut sup = Command::new(BIN)
        .args(["supervise", "--pid-file"])
        .arg(&pid_file)
        .arg("--log-file")
        .arg(&log_file)
        .args(["--", "/bin/sh", "-c", &script])
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = within("the third run", async {
        loop {
            if let Some(p) = std::fs::read_to_string(&child_pid)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
            {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        sup.id().unwrap().to_string()
    );
    let log = std::fs::read_to_string(&log_file).unwrap();
    assert_eq!(log.lines().filter(|l| *l == "started").count(), 3, "{log}");
    assert!(log.contains("dccore supervise: /bin/sh exited"), "{log}");
    // If an assertion below fails, the supervisor dies by SIGKILL (kill_on_drop) and cannot stop
    // its child: this guard does.
    struct Reap(i32);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let _reap = Reap(pid);
    let sup_pid = nix::unistd::Pid::from_raw(sup.id().unwrap() as i32);
    nix::sys::signal::kill(sup_pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = within("supervisor exit", sup.wait()).await.unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        !alive(pid),
        "the supervised command is stopped with the supervisor"
    );
    assert!(!pid_file.exists(), "pid file removed on exit");
    let log = std::fs::read_to_string(&log_file).unwrap();
    assert!(
        log.ends_with("dccore supervise: stopped /bin/sh on SIGTERM\n"),
        "{log}"
    );
}

const PYMESOS_FRAMEWORK: &str = r#"
import sys, threading, uuid
from pymesos import MesosSchedulerDriver, Scheduler
from addict import Dict
done = threading.Event(); result = {}
class S(Scheduler):
    launched = False
    def resourceOffers(self, driver, offers):
        for o in offers:
            if self.launched:
                driver.declineOffer(o.id, Dict(refuse_seconds=60)); continue
            t = Dict(); t.task_id.value = str(uuid.uuid4()); t.agent_id.value = o.agent_id.value; t.name = "py"
            t.command.value = "echo from-pymesos"; t.command.shell = True
            t.resources = [dict(name="cpus", type="SCALAR", scalar={"value": 0.1}), dict(name="mem", type="SCALAR", scalar={"value": 32})]
            driver.launchTasks(o.id, [t]); self.launched = True
    def statusUpdate(self, driver, update):
        result.setdefault("states", []).append(update.state)
        if update.state in ("TASK_FINISHED", "TASK_FAILED", "TASK_LOST", "TASK_ERROR", "TASK_KILLED", "TASK_DROPPED"):
            result["final"] = update.state; done.set()
fw = Dict(user="root", name="pymesos-test", hostname="localhost")
d = MesosSchedulerDriver(S(), fw, sys.argv[1], use_addict=True, principal="py", secret="pysecret")
d.start(); done.wait(40); d.stop()
print(result.get("final", "none"), ",".join(result.get("states", [])))
"#;

#[tokio::test]
async fn unmodified_pymesos_framework_runs_a_command_task() {
    let python = match std::env::var("DCFORM_TEST_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => {
            dc_support::testing::missing(
                "DCFORM_TEST_PYTHON (a python with pymesos, built by .ci/setup-python.sh) is not set",
            );
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let token = write_token(dir.path());
    let creds = dir.path().join("creds.json");
    std::fs::write(
        &creds,
        r#"{"credentials":[{"principal":"py","secret":"pysecret"}]}"#,
    )
    .unwrap();
    let mw = dir.path().join("m");
    let (_m, addr) = start_master(&mw, &token, &["--credentials", creds.to_str().unwrap()]).await;
    let aw = dir.path().join("a");
    let (_a, _) = start_agent(
        &addr,
        &aw,
        &token,
        "cpus:2;mem:1024;disk:1000;ports:[31000-31100]",
        &[],
    )
    .await;
    let script = dir.path().join("fw.py");
    std::fs::write(&script, PYMESOS_FRAMEWORK).unwrap();
    let out = within(
        "the pymesos framework",
        Command::new(&python)
            .arg(&script)
            .arg(addr.trim_start_matches("http://"))
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default().to_string();
    assert!(
        last.starts_with("TASK_FINISHED"),
        "pymesos result {last:?}; stderr tail: {}",
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .join(" | ")
    );
    assert!(last.contains("TASK_RUNNING"), "{last}");
}
