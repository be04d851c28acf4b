//! The rendered install script run for real (with a stand-in dccore): one supervisor, whatever ran before.

use super::*;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::time::Duration;

use dc_support::testing::{missing, output_within, try_output_within};

/// Bound of one install run here (the stand-in sleeps 0.5 s; the lock wait is the rest).
const INSTALL: Duration = Duration::from_secs(60);

/// A sandboxed install of `masters-1` under `root` whose `dccore` is a stand-in for
/// `dccore supervise --pid-file F ...`: it records each start in `root/starts`, writes F, and
/// stays up a while with F in its command line (the install checks that the pid file's
/// process is a supervisor of F). Returns the install script and the pid file's path.
fn stand_in_install(root: &str) -> (String, String) {
    let r = render(&stand_in_params(root)).expect("render");
    (r.install, r.paths.pid_file)
}

/// The parameters of [`stand_in_install`] (with the stand-in written), for tests that change some.
pub(super) fn stand_in_params(root: &str) -> InstallParams {
    let bin = format!("{root}/dccore");
    std::fs::write(
        &bin,
        "#!/bin/sh\necho $$ >> \"$(dirname \"$0\")/starts\"\nsleep 0.5\necho $$ > \"$3\"\nexec sh -c 'sleep 20; :' supervise --pid-file \"$3\"\n",
    )
    .expect("stand-in");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut p = InstallParams::new("c", "masters-1", Role::Master, "127.0.0.1:1", 0);
    p.paths = InstallPaths {
        bin,
        config_dir: format!("{root}/etc"),
        work_root: format!("{root}/lib"),
        log_dir: format!("{root}/log"),
        run_dir: format!("{root}/run"),
        unit_dir: format!("{root}/systemd"),
    };
    p
}

/// Runs the install script to its end (within [`INSTALL`]). The supervisor it starts is detached
/// from its output (the script's own redirections), so the run ends when the script does.
pub(super) fn run_install(script: &str) -> Output {
    output_within(
        INSTALL,
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("DCFORM_NO_SYSTEMD", "1"),
    )
}

/// Stops every stand-in supervisor the installs started; what `starts` recorded.
pub(super) fn stop_starts(root: &str) -> String {
    let starts = std::fs::read_to_string(format!("{root}/starts")).unwrap_or_default();
    for pid in starts.split_whitespace() {
        let _ = try_output_within(Duration::from_secs(10), Command::new("kill").arg(pid));
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
        let install = run_install(&script);
        let starts = stop_starts(&root);
        // Killed first, so the wait is immediate (`true` has long exited).
        let _ = other.kill();
        let _ = other.wait();
        assert!(
            install.status.success(),
            "{case}: install succeeds: {install:?}"
        );
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
    if try_output_within(Duration::from_secs(10), Command::new("flock").arg("-V")).is_err() {
        // The script skips its lock where flock is missing: this test would prove nothing there.
        missing("flock (util-linux) is not installed: the install lock cannot be tested");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().display().to_string();
    let (script, _) = stand_in_install(&root);
    // Both at once, each on its own thread under its own deadline.
    let (ra, rb) = std::thread::scope(|s| {
        let a = s.spawn(|| run_install(&script));
        let b = s.spawn(|| run_install(&script));
        (a.join(), b.join())
    });
    let starts = stop_starts(&root);
    let (ra, rb) = (ra.expect("first install"), rb.expect("second install"));
    assert!(
        ra.status.success() && rb.status.success(),
        "both installs succeed: {ra:?} {rb:?}"
    );
    assert_eq!(starts.lines().count(), 1, "supervisors started: {starts:?}");
}
