//! The rendered install script run for real (with a stand-in dccore): one supervisor, whatever ran before.

use super::*;
use std::process::{Command, Stdio};

/// A sandboxed install of `masters-1` under `root` whose `dccore` is a stand-in for
/// `dccore supervise --pid-file F ...`: it records each start in `root/starts`, writes F, and
/// stays up a while with F in its command line (the install checks that the pid file's
/// process is a supervisor of F). Returns the install script and the pid file's path.
fn stand_in_install(root: &str) -> (String, String) {
    let bin = format!("{root}/dccore");
    std::fs::write(
        &bin,
        "#!/bin/sh\necho $$ >> \"$(dirname \"$0\")/starts\"\nsleep 0.5\necho $$ > \"$3\"\nexec sh -c 'sleep 20; :' supervise --pid-file \"$3\"\n",
    )
    .expect("stand-in");
    Command::new("chmod")
        .args(["+x", &bin])
        .status()
        .expect("chmod");
    let mut p = InstallParams::new("c", "masters-1", Role::Master, "127.0.0.1:1", 0);
    p.paths = InstallPaths {
        bin,
        config_dir: format!("{root}/etc"),
        work_root: format!("{root}/lib"),
        log_dir: format!("{root}/log"),
        run_dir: format!("{root}/run"),
        unit_dir: format!("{root}/systemd"),
    };
    let r = render(&p).expect("render");
    (r.install, r.paths.pid_file)
}

fn run_install(script: &str) -> std::process::Child {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("DCFORM_NO_SYSTEMD", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sh")
}

fn stop_starts(root: &str) -> String {
    let starts = std::fs::read_to_string(format!("{root}/starts")).unwrap_or_default();
    for pid in starts.split_whitespace() {
        let _ = Command::new("kill").arg(pid).status();
    }
    starts
}

/// Found on a fresh machine whose pid 1 never reaps: a killed supervisor stays a zombie, and
/// `kill -0` on it succeeds, so the install thought it running and started nothing. A stale
/// pid file naming a zombie, or a pid reused by another process, is not a running supervisor.
#[test]
fn a_pid_file_naming_a_zombie_or_a_reused_pid_is_not_a_running_supervisor() {
    for case in ["zombie", "reused"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().display().to_string();
        let (script, pid_file) = stand_in_install(&root);
        // Not waited for until the end: `true` exits and stays a zombie meanwhile.
        let mut other = match case {
            "zombie" => Command::new("true").spawn().expect("true"),
            _ => Command::new("sleep").arg("30").spawn().expect("sleep"),
        };
        std::fs::create_dir_all(format!("{root}/run")).expect("run dir");
        std::fs::write(&pid_file, format!("{}\n", other.id())).expect("pid file");
        let status = run_install(&script).wait().expect("wait");
        let starts = stop_starts(&root);
        let _ = other.kill();
        let _ = other.wait();
        assert!(status.success(), "{case}: install succeeds: {status:?}");
        assert_eq!(
            starts.lines().count(),
            1,
            "{case}: the install starts a supervisor"
        );
    }
}

/// An apply killed mid-install leaves its script running; the next apply's install must not start a
/// second supervisor beside the first. Two installs of one node at once start exactly one.
#[test]
fn concurrent_installs_of_one_node_start_one_supervisor() {
    if Command::new("flock").arg("-V").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI needs flock (util-linux)"
        );
        eprintln!("skip: no flock on this machine (the lock is skipped where flock is missing)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().display().to_string();
    let (script, _) = stand_in_install(&root);
    let (mut a, mut b) = (run_install(&script), run_install(&script));
    let (ra, rb) = (a.wait().expect("wait"), b.wait().expect("wait"));
    let starts = stop_starts(&root);
    assert!(
        ra.success() && rb.success(),
        "both installs succeed: {ra:?} {rb:?}"
    );
    assert_eq!(starts.lines().count(), 1, "supervisors started: {starts:?}");
}
