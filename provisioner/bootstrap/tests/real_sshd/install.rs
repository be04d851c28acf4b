//! The install templates on real sshd hosts without systemd, with a shell stand-in for the dccore
//! binary, carried out the way dcform's executor does it: what `step_ops` sends for each plan step
//! (install: preflight, upload dccore, write token and config; start: the install script with
//! `CHANGED=0`; restart: `CHANGED=1`; uninstall: the uninstall script), run as root over one session.

use std::path::{Path, PathBuf};

use dcform_bootstrap::ssh::{
    Command, ExecOutput, HostKeyPolicy, Session, Target, Upload, UploadOutcome, UploadSource,
};
use dcform_bootstrap::templates::{InstallParams, RenderedInstall, Role, render};

use crate::harness::{Node, TestNet, connect, connect_to, within};

fn standin() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/real_sshd/fixtures/dccore-standin.sh")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Paths in `after` but not in `before` and the other way round, for a readable failure.
fn diff(before: &str, after: &str) -> String {
    let b: std::collections::BTreeSet<&str> = before.lines().collect();
    let a: std::collections::BTreeSet<&str> = after.lines().collect();
    let mut out = String::new();
    for p in a.difference(&b) {
        out.push_str(&format!("+ {p}\n"));
    }
    for p in b.difference(&a) {
        out.push_str(&format!("- {p}\n"));
    }
    out
}

/// Every path under the directories an install may touch.
fn snapshot(node: &Node) -> String {
    node.sh("find /etc /usr/local /var/lib /var/log /run /opt -xdev 2>/dev/null | grep -v -e '^/run/sshd' -e '^/run/motd.dynamic' | sort")
}

fn state(node: &Node) -> String {
    node.sh(
        "stat -c '%n %Y %a' /usr/local/bin/dccore /etc/dcform/master.json /etc/dcform/master.token \
         /etc/dcform/manifest-master; cat /run/dcform/master.pid",
    )
}

/// A rendered script run as root, as the executor's `Remote::run` does (whatever its exit code).
async fn run(s: &Session, label: &str, script: &str) -> ExecOutput {
    let cmd = Command::new(label, script).privileged().idempotent();
    within(label, s.exec(&cmd)).await.expect(label)
}

/// A file written into place (atomically, skipped when the same), as `Remote::upload` does.
async fn write(s: &Session, src: UploadSource, dest: &str, mode: u32) -> UploadOutcome {
    let up = Upload::new(format!("upload {dest}"), src, dest, mode).privileged();
    within(dest, s.upload(&up)).await.expect(dest)
}

/// Step `install`: the preflight (its output when it fails), then the binary, token and config.
async fn install_step(
    s: &Session,
    r: &RenderedInstall,
    token: &str,
) -> Result<UploadOutcome, ExecOutput> {
    let pre = run(s, "preflight", &r.preflight).await;
    if !pre.success() {
        return Err(pre);
    }
    let core = write(s, UploadSource::File(standin()), &r.paths.bin, 0o755).await;
    write(
        s,
        UploadSource::Bytes(token.as_bytes().to_vec()),
        &r.paths.token_file,
        0o600,
    )
    .await;
    write(
        s,
        UploadSource::Bytes(r.config.clone().into_bytes()),
        &r.paths.config_file,
        0o644,
    )
    .await;
    Ok(core)
}

/// The install script's result line: `(changed, started, manager)`, and its output.
async fn start_step(
    s: &Session,
    r: &RenderedInstall,
    restart: bool,
) -> ((bool, bool, String), String) {
    let script = format!(
        "CHANGED={}\nexport CHANGED\n{}",
        u8::from(restart),
        r.install
    );
    let out = run(s, "install", &script).await;
    assert!(out.success(), "install failed: {}", out.tail.join("\n"));
    let f = |k: &str| field(&out.stdout, k).unwrap_or_default();
    (
        (f("changed") == "1", f("started") == "1", f("manager")),
        out.stdout,
    )
}

/// Step `uninstall`: how many paths the script removed.
async fn uninstall_step(s: &Session, r: &RenderedInstall) -> u32 {
    let out = run(s, "uninstall", &r.uninstall).await;
    assert!(out.success(), "uninstall failed: {}", out.tail.join("\n"));
    field(&out.stdout, "removed")
        .and_then(|v| v.parse().ok())
        .expect("removed=N")
}

/// `key` of the last `DCFORM_RESULT k=v ...` line.
fn field(stdout: &str, key: &str) -> Option<String> {
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("DCFORM_RESULT "))?;
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .map(String::from)
}

#[tokio::test]
async fn install_twice_is_a_no_op_and_uninstall_leaves_nothing() {
    let Some(net) = TestNet::new() else { return };
    let key = net.keygen("id", "ed25519", "");
    let node = net.node(&key.public, &[]);
    // A non-root login with passwordless sudo, as on most cloud images.
    let pubkey = &key.public;
    node.sh(&format!(
        "useradd -m -s /bin/sh deploy && mkdir -p /home/deploy/.ssh && \
         echo '{pubkey}' > /home/deploy/.ssh/authorized_keys && chown -R deploy /home/deploy/.ssh && \
         echo 'deploy ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/deploy"
    ));
    // After the first login: sshd has made its host keys, pam its motd.
    let log = net.dir.path().join("logs/masters-0.log");
    let s = connect_to(
        "connect",
        Target::new(&node.ip, "deploy"),
        &key.path,
        HostKeyPolicy::TrustOnFirstUse,
        Some(log.clone()),
    )
    .await
    .expect("connect");
    let before = snapshot(&node);
    let params = InstallParams::new("test", "masters-0", Role::Master, "0.0.0.0:5050", now());
    let r = render(&params).expect("render");
    let token = "tok-very-secret-42";

    let core = install_step(&s, &r, token).await.expect("preflight passes");
    assert!(matches!(core, UploadOutcome::Uploaded { .. }));
    let ((changed, started, manager), _) = start_step(&s, &r, false).await;
    assert!(changed && started);
    assert_eq!(manager, "supervise");
    let running = node.sh("cat /proc/$(cat /run/dcform/master.pid)/cmdline | tr '\\0' ' '");
    assert!(
        running.contains("supervise --pid-file /run/dcform/master.pid --log-file /var/log/dcform/master.log -- /usr/local/bin/dccore master --listen 0.0.0.0:5050 --work-dir /var/lib/dcform/master --token-file /etc/dcform/master.token"),
        "{running}"
    );
    assert_eq!(node.sh("cat /etc/dcform/master.token"), token);
    assert_eq!(
        node.sh("stat -c '%U %a' /etc/dcform/master.token"),
        "root 600"
    );
    let installed = state(&node);

    // Second run (a resumed or repeated apply): same inputs, nothing changes, and it says so.
    let core = install_step(&s, &r, token).await.expect("preflight passes");
    assert!(matches!(core, UploadOutcome::AlreadyPresent { .. }));
    let ((changed, started, _), said) = start_step(&s, &r, false).await;
    assert!(!changed && !started, "{said}");
    assert!(said.contains("install: no changes"), "{said}");
    assert_eq!(
        state(&node),
        installed,
        "a no-op install must not touch files or restart"
    );

    // Secrets never reach the session log.
    let log_text = std::fs::read_to_string(&log).expect("session log");
    assert!(
        !log_text.contains("tok-very-secret"),
        "the token leaked into the session log"
    );

    // A changed config: the plan's restart step restarts the role.
    let mut changed = params.clone();
    changed.config_json = "{\"offer_timeout_secs\": 5.0}\n".into();
    let r = render(&changed).expect("render");
    let core = install_step(&s, &r, token).await.expect("preflight passes");
    assert!(matches!(core, UploadOutcome::AlreadyPresent { .. }));
    let ((_, started, _), said) = start_step(&s, &r, true).await;
    assert!(started, "{said}");

    assert!(uninstall_step(&s, &r).await > 0);
    assert_eq!(
        diff(&before, &snapshot(&node)),
        "",
        "uninstall must remove everything the install made"
    );
    assert_eq!(
        node.sh("pgrep -f '[d]ccore supervise'; pgrep -x sleep; true"),
        ""
    );
    assert_eq!(
        uninstall_step(&s, &r).await,
        0,
        "a second uninstall finds nothing"
    );
}

#[tokio::test]
async fn failed_preflight_names_each_failed_check_and_installs_nothing() {
    let Some(net) = TestNet::new() else { return };
    let key = net.keygen("id", "ed25519", "");
    let node = net.node(&key.public, &[]);
    let s = connect(&node.ip, "root", &key.path).await;
    let before = snapshot(&node);
    // sshd listens on 22: ask for that port, the wrong architecture and an impossible clock.
    let mut params = InstallParams::new("test", "agents-0", Role::Agent, "0.0.0.0:22", 1_000);
    params.master_url = Some("http://10.0.0.1:5050".into());
    params.binary_arch = "riscv64".into();
    let r = render(&params).expect("render");
    // Once with `ss`, once with the /proc/net/tcp fallback of hosts without iproute2.
    for without_ss in [false, true] {
        if without_ss {
            node.sh("mv \"$(command -v ss)\" /root/ss.hidden");
        }
        let out = install_step(&s, &r, "t")
            .await
            .expect_err("preflight must fail");
        let text = out.stdout;
        assert!(text.contains("FAIL arch"), "{text}");
        assert!(text.contains("FAIL port: 22 is already in use"), "{text}");
        assert!(text.contains("FAIL clock"), "{text}");
        assert!(!text.contains("FAIL disk"), "{text}");
        if without_ss {
            node.sh("mv /root/ss.hidden /usr/bin/ss");
        }
    }
    assert_eq!(
        diff(&before, &snapshot(&node)),
        "",
        "a failed preflight must change nothing"
    );
}

#[tokio::test]
async fn systemd_hosts_get_a_unit_installed_once_and_removed_by_uninstall() {
    let Some(net) = TestNet::new() else { return };
    let key = net.keygen("id", "ed25519", "");
    let node = net.node(&key.public, &[]);
    let s = connect(&node.ip, "root", &key.path).await;
    // The scripts detect systemd by /run/systemd/system; systemctl is a recording stand-in.
    let fake = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/real_sshd/fixtures/fake-systemctl.sh"),
    )
    .expect("fixture");
    within(
        "setup",
        s.run(
            &Command::new(
                "setup",
                "mkdir -p /run/systemd/system && cat > /usr/local/sbin/systemctl && chmod 755 /usr/local/sbin/systemctl",
            )
            .stdin(fake.into_bytes()),
        ),
    )
    .await
    .expect("setup");
    let before = snapshot(&node);
    let mut params = InstallParams::new("test", "agents-1", Role::Agent, "0.0.0.0:5051", now());
    params.master_url = Some("http://10.9.9.9:5050".into());
    params.attributes = Some("rack:r1;zone:a".into());
    let r = render(&params).expect("render");

    install_step(&s, &r, "tok").await.expect("preflight passes");
    let ((changed, started, manager), _) = start_step(&s, &r, false).await;
    assert_eq!(manager, "systemd");
    assert!(changed && started);
    let unit = node.sh("cat /etc/systemd/system/dcform-agent.service");
    assert!(
        unit.contains("ExecStart=/usr/local/bin/dccore agent --master http://10.9.9.9:5050 --listen 0.0.0.0:5051 --work-dir /var/lib/dcform/agent --token-file /etc/dcform/agent.token --attributes \"rack:r1;zone:a\""),
        "{unit}"
    );
    let calls = node.sh("cat /root/systemctl.calls");
    assert!(
        calls.contains("enable --quiet dcform-agent.service"),
        "{calls}"
    );
    assert!(calls.contains("restart dcform-agent.service"), "{calls}");
    // Nothing was started outside systemd.
    assert_eq!(node.sh("ls /run/dcform"), "");

    node.sh(": > /root/systemctl.calls");
    install_step(&s, &r, "tok").await.expect("preflight passes");
    let ((changed, started, _), said) = start_step(&s, &r, false).await;
    assert!(!changed && !started, "{said}");
    let calls = node.sh("cat /root/systemctl.calls");
    assert!(
        !calls.contains("restart") && !calls.contains("daemon-reload"),
        "{calls}"
    );

    uninstall_step(&s, &r).await;
    assert!(
        node.sh("cat /root/systemctl.calls")
            .contains("disable --now --quiet dcform-agent.service")
    );
    assert_eq!(
        diff(&before, &snapshot(&node)),
        "",
        "uninstall must remove the unit and every file"
    );
}
