//! The SSH engine against real OpenSSH sshd in node-image containers.

use std::time::Duration;

use dcform_bootstrap::ssh::{
    Auth, Command, ExitStatus, HostKeyPolicy, JumpHost, OutputStream, Session, SshError, Target,
    Upload, UploadOutcome, UploadSource,
};
use sha2::{Digest, Sha256};

use crate::harness::{TestNet, auth, connect, connect_to, opts, run, within};

#[tokio::test]
async fn exec_reports_exit_codes_signals_and_streams_output() {
    let Some(net) = TestNet::new() else { return };
    let key = net.keygen("id", "ed25519", "");
    let node = net.node(&key.public, &[]);
    let log = net.dir.path().join("logs/node.log");
    let s = connect_to(
        "connect",
        Target::new(&node.ip, "root"),
        &key.path,
        HostKeyPolicy::TrustOnFirstUse,
        Some(log.clone()),
    )
    .await
    .expect("connect");
    assert!(s.host_key().fingerprint.starts_with("SHA256:"));

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let out = within(
        "exec",
        s.exec(&Command::new("echo", "echo one; echo two >&2; exit 3").sink(Some(tx))),
    )
    .await
    .expect("exec");
    assert_eq!(out.status, ExitStatus::Code(3));
    assert_eq!(out.stdout, "one\n");
    assert_eq!(out.stderr, "two\n");
    let mut lines = Vec::new();
    while let Ok(l) = rx.try_recv() {
        lines.push((l.stream, l.line));
    }
    assert!(lines.contains(&(OutputStream::Stdout, "one".into())));
    assert!(lines.contains(&(OutputStream::Stderr, "two".into())));

    let killed = within("exec", s.exec(&Command::new("kill", "kill -KILL $$"))).await;
    assert_eq!(
        killed.expect("exec").status,
        ExitStatus::Signal("KILL".into())
    );

    // run() turns a non-zero exit into an error carrying step, status and the output tail.
    let err = within(
        "run",
        s.run(&Command::new(
            "failing-step",
            "for i in $(seq 1 30); do echo line$i; done; exit 7",
        )),
    )
    .await
    .expect_err("must fail");
    match &err {
        SshError::CommandFailed {
            step,
            status,
            tail,
            log: l,
            ..
        } => {
            assert_eq!(step, "failing-step");
            assert_eq!(*status, ExitStatus::Code(7));
            assert_eq!(tail.lines().count(), 20);
            assert!(tail.starts_with("line11") && tail.ends_with("line30"));
            assert_eq!(l.as_deref(), Some(log.as_path()));
        }
        other => panic!("unexpected error {other}"),
    }

    // Per-command timeout.
    let err = within(
        "timeout",
        s.exec(&Command::new("slow", "sleep 30").timeout(Duration::from_millis(500))),
    )
    .await
    .expect_err("must time out");
    assert!(matches!(err, SshError::Timeout { .. }), "{err}");

    // Connection reuse: more concurrent commands than sshd's MaxSessions (10) on one session.
    let s = std::sync::Arc::new(s);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..25 {
        let s = s.clone();
        set.spawn(async move { (i, s.run(&Command::new("par", format!("echo {i}"))).await) });
    }
    let outs = within("parallel", set.join_all()).await;
    assert_eq!(outs.len(), 25);
    for (i, o) in outs {
        assert_eq!(o.expect("parallel exec").stdout.trim(), i.to_string());
    }

    let text = std::fs::read_to_string(&log).expect("session log");
    assert!(text.contains("[failing-step] exit status 7"), "{text}");
    assert!(text.contains("out| line30"));
}

#[tokio::test]
async fn large_upload_is_hash_checked_atomic_and_skipped_when_present() {
    let Some(net) = TestNet::new() else { return };
    let key = net.keygen("id", "ed25519", "");
    let node = net.node(&key.public, &[]);
    let s = connect(&node.ip, "root", &key.path).await;
    let file = net.dir.path().join("big.bin");
    let data: Vec<u8> = (0..24u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &data).expect("write");
    let want = hex::encode(Sha256::digest(&data));

    let up = Upload::new(
        "upload-dccore",
        UploadSource::File(file.clone()),
        "/opt/x/dccore",
        0o755,
    );
    let r = within("upload", s.upload(&up)).await.expect("upload");
    assert_eq!(
        r,
        UploadOutcome::Uploaded {
            sha256: want.clone(),
            bytes: data.len() as u64,
            attempts: 1
        }
    );
    assert_eq!(node.sh("sha256sum /opt/x/dccore | cut -c1-64"), want);
    assert_eq!(node.sh("stat -c %a /opt/x/dccore"), "755");
    // No temp files left beside it.
    assert_eq!(node.sh("ls /opt/x"), "dccore");

    let again = within("upload again", s.upload(&up)).await.expect("upload");
    assert_eq!(again, UploadOutcome::AlreadyPresent { sha256: want });
}

/// The paced upload waits for a far side that consumes slowly (its window adjusts come late)
/// instead of piling the stream into sshd; the file must still arrive whole.
#[tokio::test]
async fn an_upload_to_a_host_starved_of_cpu_arrives_intact() {
    let Some(net) = TestNet::new() else { return };
    let key = net.keygen("id", "ed25519", "");
    let node = net.node(&key.public, &[]);
    let s = connect(&node.ip, "root", &key.path).await;
    crate::harness::docker(&["update", "--cpus", "0.1", &node.name]);
    let file = net.dir.path().join("slow.bin");
    let data: Vec<u8> = (0..8u32 << 20)
        .map(|i| (i.wrapping_mul(2246822519) >> 11) as u8)
        .collect();
    std::fs::write(&file, &data).expect("write");
    let want = hex::encode(Sha256::digest(&data));
    let up = Upload::new("slow", UploadSource::File(file), "/opt/slow/f", 0o644);
    let r = within("upload to a starved host", s.upload(&up))
        .await
        .expect("upload");
    assert!(r.changed(), "{r:?}");
    assert_eq!(node.sh("sha256sum /opt/slow/f | cut -c1-64"), want);
}

#[tokio::test]
async fn changed_host_key_is_refused_and_nothing_runs() {
    let Some(net) = TestNet::new() else { return };
    let key = net.keygen("id", "ed25519", "");
    let first = net.node(&key.public, &[]);
    let s = connect(&first.ip, "root", &key.path).await;
    let pinned = s.host_key().fingerprint.clone();
    within("close", s.close()).await;

    // Pinned to the first container's key, reconnecting to it works.
    let again = connect_to(
        "pinned connect",
        Target::new(&first.ip, "root"),
        &key.path,
        HostKeyPolicy::Pinned(pinned.clone()),
        None,
    )
    .await
    .expect("same key accepted");
    within("close", again.close()).await;

    // Another container has its own host key (generated at start): it must be refused.
    let other = net.node(&key.public, &[]);
    let err = connect_to(
        "mismatch",
        Target::new(&other.ip, "root"),
        &key.path,
        HostKeyPolicy::Pinned(pinned.clone()),
        None,
    )
    .await
    .expect_err("mismatch must fail");
    match &err {
        SshError::HostKeyMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &pinned);
            assert_ne!(actual, &pinned);
            assert!(err.to_string().contains("host key"));
        }
        other => panic!("expected a host key mismatch, got {other}"),
    }
    // The refusal happened before authentication: sshd never accepted a login.
    let logs = crate::harness::container_logs(&other.name);
    assert!(
        logs.contains("Server listening"),
        "sshd's log not captured: {logs}"
    );
    assert!(!logs.contains("Accepted publickey"), "{logs}");

    // known_hosts policy: learn on first use, refuse a changed key later.
    let kh = net.dir.path().join("known_hosts");
    let learn = connect_to(
        "known_hosts learn",
        Target::new(&first.ip, "root"),
        &key.path,
        HostKeyPolicy::KnownHosts(kh.clone()),
        None,
    )
    .await
    .expect("learned");
    within("close", learn.close()).await;
    let line = std::fs::read_to_string(&kh).expect("known_hosts written");
    std::fs::write(&kh, line.replace(&first.ip, &other.ip)).expect("rewrite");
    let err = connect_to(
        "known_hosts mismatch",
        Target::new(&other.ip, "root"),
        &key.path,
        HostKeyPolicy::KnownHosts(kh),
        None,
    )
    .await
    .expect_err("changed key");
    assert!(matches!(err, SshError::HostKeyMismatch { .. }), "{err}");
}

#[tokio::test]
async fn wrong_key_is_an_auth_error_within_5_seconds_naming_user_host_and_keys() {
    let Some(net) = TestNet::new() else { return };
    let good = net.keygen("good", "ed25519", "");
    let wrong = net.keygen("wrong", "ed25519", "");
    let node = net.node(&good.public, &[]);
    // Make sure sshd is up, so the 5 s below measure authentication only.
    within("close", connect(&node.ip, "root", &good.path).await.close()).await;
    let err = tokio::time::timeout(
        Duration::from_secs(5),
        Session::connect(
            Target::new(&node.ip, "root"),
            auth(&wrong.path),
            HostKeyPolicy::TrustOnFirstUse,
            opts(None),
        ),
    )
    .await
    .expect("a wrong key must be reported within 5 s, not time out")
    .expect_err("wrong key must fail");
    match &err {
        SshError::AuthFailed { user, host, tried } => {
            assert_eq!(user, "root");
            assert_eq!(host, &node.ip);
            assert_eq!(tried.len(), 1);
            assert!(tried[0].contains(&wrong.path.display().to_string()));
        }
        other => panic!("expected auth failure, got {other}"),
    }
}

#[tokio::test]
async fn rsa_encrypted_and_agent_keys_authenticate() {
    let Some(net) = TestNet::new() else { return };
    let rsa = net.keygen("rsa", "rsa", "");
    let enc = net.keygen("enc", "ed25519", "s3cret phrase");
    let ag = net.keygen("agent", "ed25519", "");
    let node = net.node(
        &format!("{}\n{}\n{}", rsa.public, enc.public, ag.public),
        &[],
    );
    within("close", connect(&node.ip, "root", &rsa.path).await.close()).await;

    let connect_with = |a: Auth| {
        Session::connect(
            Target::new(&node.ip, "root"),
            a,
            HostKeyPolicy::TrustOnFirstUse,
            opts(None),
        )
    };
    let err = within(
        "encrypted without passphrase",
        connect_with(auth(&enc.path)),
    )
    .await
    .expect_err("needs passphrase");
    assert!(err.to_string().contains("DCFORM_SSH_PASSPHRASE"), "{err}");
    let with_pass = Auth {
        passphrase: Some("s3cret phrase".into()),
        ..auth(&enc.path)
    };
    let enc_session = within("encrypted", connect_with(with_pass))
        .await
        .expect("encrypted key works");
    within("close", enc_session.close()).await;

    // ssh-agent: started here, killed by its pid at the end.
    let sock = net.dir.path().join("agent.sock");
    let agent = std::process::Command::new("ssh-agent")
        .args(["-D", "-a"])
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _agent = Kill(agent);
    // The agent creates its socket asynchronously: poll (bounded) until ssh-add reaches it.
    let added = within("ssh-add", async {
        for _ in 0..50 {
            let st = run(std::process::Command::new("ssh-add")
                .arg(&ag.path)
                .env("SSH_AUTH_SOCK", &sock));
            if st.status.success() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    })
    .await;
    assert!(added, "ssh-add never reached the agent");
    let via_agent = Auth {
        key_files: vec![],
        passphrase: None,
        agent_socket: Some(sock),
    };
    let agent_session = within("agent", connect_with(via_agent))
        .await
        .expect("agent key works");
    within("close", agent_session.close()).await;
}

#[tokio::test]
async fn non_root_user_uses_passwordless_sudo_and_a_password_prompt_is_a_clear_error() {
    let Some(net) = TestNet::new() else { return };
    let key = net.keygen("id", "ed25519", "");
    let node = net.node(&key.public, &[]);
    let pubkey = &key.public;
    node.sh(&format!(
        "for u in deploy alice; do useradd -m -s /bin/sh $u; mkdir -p /home/$u/.ssh; \
         echo '{pubkey}' > /home/$u/.ssh/authorized_keys; chown -R $u /home/$u/.ssh; \
         chmod 700 /home/$u/.ssh; chmod 600 /home/$u/.ssh/authorized_keys; done; \
         echo 'alice:pw' | chpasswd; \
         echo 'deploy ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/deploy; \
         echo 'alice ALL=(ALL) ALL' > /etc/sudoers.d/alice"
    ));
    let s = connect(&node.ip, "deploy", &key.path).await;
    let plain = within("plain", s.run(&Command::new("id", "id -un")))
        .await
        .expect("id");
    assert_eq!(plain.stdout.trim(), "deploy");
    let root = within(
        "sudo",
        s.run(&Command::new("id", "id -un; echo \"it's $((1+1))\"").privileged()),
    )
    .await
    .expect("sudo id");
    assert_eq!(root.stdout, "root\nit's 2\n");
    let up = Upload::new(
        "cfg",
        UploadSource::Bytes(b"x=1\n".to_vec()),
        "/etc/dcform-test/c.toml",
        0o600,
    )
    .privileged();
    within("sudo upload", s.upload(&up))
        .await
        .expect("privileged upload");
    assert_eq!(
        node.sh("stat -c '%U %a' /etc/dcform-test/c.toml"),
        "root 600"
    );

    let a = connect(&node.ip, "alice", &key.path).await;
    let err = within(
        "sudo with password",
        a.run(&Command::new("install", "true").privileged()),
    )
    .await
    .expect_err("needs password");
    match &err {
        SshError::SudoNeedsPassword { user, step, .. } => {
            assert_eq!(user, "alice");
            assert_eq!(step, "install");
            assert!(err.to_string().contains("passwordless sudo"));
        }
        other => panic!("expected SudoNeedsPassword, got {other}"),
    }
}

#[tokio::test]
async fn a_host_that_starts_late_is_reached_after_retries() {
    let Some(net) = TestNet::new() else { return };
    let key = net.keygen("id", "ed25519", "");
    // sshd starts 3 s after the container: connections are refused until then.
    let node = net.node(
        &key.public,
        &["sh", "-c", "sleep 3; exec /usr/local/sbin/dcform-node-init"],
    );
    let log = net.dir.path().join("late.log");
    let s = connect_to(
        "late connect",
        Target::new(&node.ip, "root"),
        &key.path,
        HostKeyPolicy::TrustOnFirstUse,
        Some(log.clone()),
    )
    .await
    .expect("reached after retries");
    within("exec", s.run(&Command::new("true", "true")))
        .await
        .expect("runs");
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains("not ready"),
        "expected retry notes in the log:\n{text}"
    );
}

#[tokio::test]
async fn a_connection_killed_mid_upload_is_retried_and_the_file_is_intact() {
    let Some(net) = TestNet::new() else { return };
    let key = net.keygen("id", "ed25519", "");
    let node = net.node(&key.public, &[]);
    // A loopback proxy we own cuts the first connection after 4 MiB from us to sshd.
    let proxy = crate::proxy::CuttingProxy::start(format!("{}:22", node.ip), 4 << 20).await;
    let target = Target {
        port: proxy.port,
        ..Target::new("127.0.0.1", "root")
    };
    let s = connect_to(
        "connect via proxy",
        target,
        &key.path,
        HostKeyPolicy::TrustOnFirstUse,
        None,
    )
    .await
    .expect("connect");
    let file = net.dir.path().join("big.bin");
    let data: Vec<u8> = (0..16u32 << 20)
        .map(|i| (i.wrapping_mul(40503) >> 7) as u8)
        .collect();
    std::fs::write(&file, &data).expect("write");
    let want = hex::encode(Sha256::digest(&data));
    let r = within(
        "upload across a cut",
        s.upload(&Upload::new(
            "upload",
            UploadSource::File(file),
            "/opt/up/blob",
            0o644,
        )),
    )
    .await
    .expect("upload survives the cut");
    match r {
        UploadOutcome::Uploaded {
            sha256, attempts, ..
        } => {
            assert_eq!(sha256, want);
            assert!(
                attempts >= 2,
                "the cut must have forced a retry (attempts {attempts})"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(proxy.cuts() >= 1);
    assert_eq!(node.sh("sha256sum /opt/up/blob | cut -c1-64"), want);
}

#[tokio::test]
async fn a_jump_host_tunnels_to_the_target() {
    let Some(net) = TestNet::new() else { return };
    let key = net.keygen("id", "ed25519", "");
    let bastion = net.node(&key.public, &[]);
    let inner = net.node(&key.public, &[]);
    let target = Target {
        jump: Some(Box::new(JumpHost {
            target: Target::new(&bastion.ip, "root"),
            host_key: HostKeyPolicy::TrustOnFirstUse,
        })),
        ..Target::new(&inner.ip, "root")
    };
    let s = connect_to(
        "connect via jump",
        target,
        &key.path,
        HostKeyPolicy::TrustOnFirstUse,
        None,
    )
    .await
    .expect("jump connect");
    let out = within("hostname", s.run(&Command::new("hostname", "hostname")))
        .await
        .expect("run");
    assert_eq!(out.stdout.trim(), inner.name);
}

#[test]
fn encrypted_keys_are_detected_before_connecting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keygen = |name: &str, pass: &str| {
        let p = dir.path().join(name);
        let out = run(std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", pass, "-f"])
            .arg(&p));
        assert!(out.status.success());
        p
    };
    let plain = keygen("plain", "");
    let enc = keygen("enc", "pw");
    assert!(!dcform_bootstrap::ssh::key_needs_passphrase(&plain).expect("read"));
    assert!(dcform_bootstrap::ssh::key_needs_passphrase(&enc).expect("read"));
}

#[tokio::test]
async fn a_changed_bastion_host_key_is_refused_and_nothing_reaches_the_target() {
    let Some(net) = TestNet::new() else { return };
    let key = net.keygen("id", "ed25519", "");
    let bastion = net.node(&key.public, &[]);
    let inner = net.node(&key.public, &[]);
    let via = |policy: HostKeyPolicy, bastion_ip: &str| Target {
        jump: Some(Box::new(JumpHost {
            target: Target::new(bastion_ip, "root"),
            host_key: policy,
        })),
        ..Target::new(&inner.ip, "root")
    };
    // First contact: the bastion's key is reported, for the caller to pin.
    let s = connect_to(
        "first connect via the bastion",
        via(HostKeyPolicy::TrustOnFirstUse, &bastion.ip),
        &key.path,
        HostKeyPolicy::TrustOnFirstUse,
        None,
    )
    .await
    .expect("jump connect");
    let pinned = s
        .jump_host_key()
        .expect("a session through a bastion reports its key")
        .fingerprint
        .clone();
    assert_ne!(
        pinned,
        s.host_key().fingerprint,
        "bastion and target keys mixed up"
    );
    within("close", s.close()).await;
    let accepted = |n: &crate::harness::Node| {
        crate::harness::container_logs(&n.name)
            .matches("Accepted publickey")
            .count()
    };
    let logins_before = accepted(&inner);

    // Pinned, the same bastion still works.
    let again = connect_to(
        "pinned bastion",
        via(HostKeyPolicy::Pinned(pinned.clone()), &bastion.ip),
        &key.path,
        HostKeyPolicy::TrustOnFirstUse,
        None,
    )
    .await
    .expect("same bastion key accepted");
    within("close", again.close()).await;
    let logins_before = {
        let n = accepted(&inner);
        assert_eq!(
            n,
            logins_before + 1,
            "the pinned connection did not reach the target"
        );
        n
    };

    // Another machine as the bastion (its own host key): refused, naming the bastion.
    let impostor = net.node(&key.public, &[]);
    let err = connect_to(
        "changed bastion",
        via(HostKeyPolicy::Pinned(pinned.clone()), &impostor.ip),
        &key.path,
        HostKeyPolicy::TrustOnFirstUse,
        None,
    )
    .await
    .expect_err("a changed bastion key must be refused");
    match &err {
        SshError::BastionHostKeyMismatch {
            bastion,
            expected,
            actual,
            ..
        } => {
            assert!(bastion.contains(&impostor.ip), "{err}");
            assert_eq!(expected, &pinned);
            assert_ne!(actual, &pinned);
            let msg = err.to_string();
            assert!(
                msg.contains("bastion") && msg.contains("recorded host key"),
                "{msg}"
            );
        }
        other => panic!("expected a bastion host key mismatch, got {other}"),
    }
    assert!(err.is_user_error());
    // Refused before logging in to the bastion, and so before any tunnel to the target.
    let logs = crate::harness::container_logs(&impostor.name);
    assert!(
        logs.contains("Server listening"),
        "sshd's log not captured: {logs}"
    );
    assert!(
        !logs.contains("Accepted publickey"),
        "logged in to the impostor bastion: {logs}"
    );
    assert_eq!(accepted(&inner), logins_before, "the target was reached");
}
