//! The bootstrap sequence (preflight, upload, config, install, start, uninstall) on real sshd hosts
//! without systemd, with a shell stand-in for the dccore binary.

use std::path::PathBuf;
use std::sync::Mutex;

use dcform_bootstrap::bootstrap::{
    BootstrapError, JoinToken, Progress, ServiceManager, bootstrap_node, uninstall_node,
};
use dcform_bootstrap::templates::{InstallParams, Role};
use dcform_bootstrap::ssh::{HostKeyPolicy, Session, Target, UploadOutcome};

use crate::harness::{Node, TestNet, auth, connect, opts, within};

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
    let s = within(
        "connect",
        Session::connect(
            Target::new(&node.ip, "deploy"),
            auth(&key.path),
            HostKeyPolicy::TrustOnFirstUse,
            opts(Some(log.clone())),
        ),
    )
    .await
    .expect("connect");
    let before = snapshot(&node);
    let params = InstallParams::new("test", "masters-0", Role::Master, "0.0.0.0:5050", now());
    let token = JoinToken::new("tok-very-secret-42");
    let events = Mutex::new(Vec::<String>::new());
    let progress = |p: Progress<'_>| {
        events
            .lock()
            .expect("lock")
            .push(format!("{} {}", p.step, p.message));
    };

    let first = within(
        "bootstrap",
        bootstrap_node(&s, &params, &token, &standin(), &progress),
    )
    .await
    .expect("first install");
    assert!(first.changed && first.started);
    assert_eq!(first.manager, ServiceManager::Supervise);
    assert!(matches!(first.core, UploadOutcome::Uploaded { .. }));
    assert!(first.preflight.iter().any(|l| l.starts_with("PASS arch")));
    assert!(
        first
            .preflight
            .iter()
            .any(|l| l.starts_with("PASS port: 5050 is free"))
    );
    let running = node.sh("cat /proc/$(cat /run/dcform/master.pid)/cmdline | tr '\\0' ' '");
    assert!(
        running.contains("supervise --pid-file /run/dcform/master.pid --log-file /var/log/dcform/master.log -- /usr/local/bin/dccore master --listen 0.0.0.0:5050 --work-dir /var/lib/dcform/master --token-file /etc/dcform/master.token"),
        "{running}"
    );
    assert_eq!(
        node.sh("cat /etc/dcform/master.token"),
        "tok-very-secret-42"
    );
    assert_eq!(
        node.sh("stat -c '%U %a' /etc/dcform/master.token"),
        "root 600"
    );
    let installed = state(&node);

    // Second run: same inputs, nothing changes, and it says so.
    events.lock().expect("lock").clear();
    let second = within(
        "bootstrap again",
        bootstrap_node(&s, &params, &token, &standin(), &progress),
    )
    .await
    .expect("second install");
    assert!(!second.changed && !second.started, "{second:?}");
    assert!(matches!(second.core, UploadOutcome::AlreadyPresent { .. }));
    assert_eq!(
        state(&node),
        installed,
        "a no-op install must not touch files or restart"
    );
    let said = events.lock().expect("lock").join("\n");
    assert!(said.contains("install no changes"), "{said}");
    assert!(said.contains("dccore already installed"), "{said}");

    // Secrets never reach progress messages or the session log.
    assert!(!said.contains("tok-very-secret"));
    let log_text = std::fs::read_to_string(&log).expect("session log");
    assert!(log_text.contains("== install: no changes"), "{log_text}");
    assert!(
        !log_text.contains("tok-very-secret"),
        "the token leaked into the session log"
    );

    // A changed config restarts the role.
    let mut changed = params.clone();
    changed.config_json = "{\"offer_timeout_secs\": 5.0}\n".into();
    let third = within(
        "reconfigure",
        bootstrap_node(&s, &changed, &token, &standin(), &progress),
    )
    .await
    .expect("reconfigure");
    assert!(third.changed && third.started);
    assert!(matches!(third.core, UploadOutcome::AlreadyPresent { .. }));

    let un = within("uninstall", uninstall_node(&s, &changed, &progress))
        .await
        .expect("uninstall");
    assert!(un.removed > 0);
    assert_eq!(
        diff(&before, &snapshot(&node)),
        "",
        "uninstall must remove everything the install made"
    );
    assert_eq!(
        node.sh("pgrep -f '[d]ccore supervise'; pgrep -x sleep; true"),
        ""
    );
    let again = within("uninstall again", uninstall_node(&s, &changed, &progress))
        .await
        .expect("uninstall again");
    assert_eq!(again.removed, 0);
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
    // Once with `ss`, once with the /proc/net/tcp fallback of hosts without iproute2.
    for without_ss in [false, true] {
        if without_ss {
            node.sh("mv \"$(command -v ss)\" /root/ss.hidden");
        }
        let err = within(
            "bootstrap",
            bootstrap_node(&s, &params, &JoinToken::new("t"), &standin(), &|_| {}),
        )
        .await
        .expect_err("preflight must fail");
        match &err {
            BootstrapError::Preflight { failed, .. } => {
                let text = failed.join("\n");
                assert!(text.contains("FAIL arch"), "{text}");
                assert!(text.contains("FAIL port: 22 is already in use"), "{text}");
                assert!(text.contains("FAIL clock"), "{text}");
                assert!(!text.contains("FAIL disk"), "{text}");
            }
            other => panic!("expected a preflight failure, got {other}"),
        }
        assert!(err.is_user_error());
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
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/real_sshd/fixtures/fake-systemctl.sh"),
    )
    .expect("fixture");
    within(
        "setup",
        s.run(
            &dcform_bootstrap::ssh::Command::new(
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
    let token = JoinToken::new("tok");

    let first = within(
        "bootstrap",
        bootstrap_node(&s, &params, &token, &standin(), &|_| {}),
    )
    .await
    .expect("install");
    assert_eq!(first.manager, ServiceManager::Systemd);
    assert!(first.changed && first.started);
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
    let second = within(
        "bootstrap again",
        bootstrap_node(&s, &params, &token, &standin(), &|_| {}),
    )
    .await
    .expect("install again");
    assert!(!second.changed && !second.started, "{second:?}");
    let calls = node.sh("cat /root/systemctl.calls");
    assert!(
        !calls.contains("restart") && !calls.contains("daemon-reload"),
        "{calls}"
    );

    within("uninstall", uninstall_node(&s, &params, &|_| {}))
        .await
        .expect("uninstall");
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
