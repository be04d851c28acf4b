//! TLS: the master and agents serve HTTPS with certificates of a cluster CA made here (rcgen),
//! authenticate each other by certificate, and refuse clients that do not trust or are not
//! trusted by that CA. In-process nodes on 127.0.0.1:0, plus the binary's flags.

mod support;

use dc_support::error::chain;
use serde_json::json;
use std::path::Path;
use std::process::Stdio;
use support::pki::{Pki, client, node_tls};
use support::*;
use tokio::process::Command;

/// A cluster CA with a master and an agent certificate.
struct Certs {
    pki: Pki,
    master: pki::NodeCert,
    agent: pki::NodeCert,
}

fn certs(dir: &Path) -> Certs {
    let pki = Pki::new(&dir.join("pki"), "test");
    let master = pki.issue("master", Some("urn:dcform:master:masters-0"));
    let agent = pki.issue("agent", Some("urn:dcform:agent:agents-0"));
    Certs { pki, master, agent }
}

/// A master serving HTTPS with its certificate, checking client certificates against the CA;
/// it knows no agent token, so agents can prove themselves only by certificate.
async fn tls_master(dir: &Path, c: &Certs) -> Master {
    let mut cfg = fast_master_config(&dir.join("m"));
    cfg.tls = node_tls(Some(&c.master), Some(&c.pki.ca));
    let auth = dccore::auth::Authenticator::new(TOKEN).with_principal(PRINCIPAL, SECRET);
    Master::start_with_auth(&dir.join("m"), "127.0.0.1:0", cfg, auth).await
}

/// An agent serving HTTPS, presenting its certificate to the master; its token is one the
/// master does not know.
async fn tls_agent(master: &str, dir: &Path, c: &Certs) -> Agent {
    let tls = node_tls(Some(&c.agent), Some(&c.pki.ca));
    Agent::start_with(master, &dir.join("a"), AGENT_RES, false, |cfg| {
        cfg.token = "not-a-token-the-master-knows".into();
        cfg.tls = tls;
    })
    .await
}

#[tokio::test]
async fn master_and_agent_over_tls_register_by_certificate_and_run_a_task() {
    let dir = tempfile::tempdir().unwrap();
    let c = certs(dir.path());
    let m = tls_master(dir.path(), &c).await;
    assert!(m.url.starts_with("https://127.0.0.1:"), "{}", m.url);
    let a = tls_agent(&m.url, dir.path(), &c).await;
    assert!(a.url.starts_with("https://127.0.0.1:"), "{}", a.url);
    m.wait_agents(1).await;
    assert!(
        m.agent_by_url(&a.url).await.is_some(),
        "the agent registered with its https URL"
    );

    let mut fw = Framework::subscribe_using(
        client(None, Some(&c.pki.ca)),
        &m.url,
        framework_info("tls"),
        None,
        &basic(),
    )
    .await;
    let offers = fw.offers().await;
    fw.launch(&offers[0], vec![task(&offers[0], "t1", "echo over-tls")])
        .await;
    // Launch went master -> agent over TLS, the updates agent -> master over TLS.
    fw.wait_state("t1", "TASK_RUNNING").await;
    fw.wait_state("t1", "TASK_FINISHED").await;
    a.stop().await;
    m.stop().await;
}

#[tokio::test]
async fn a_client_without_the_ca_cannot_connect_and_one_with_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let c = certs(dir.path());
    let m = tls_master(dir.path(), &c).await;
    let health = format!("{}/health", m.url);

    let err = within(
        "health without the CA",
        client(None, None).get(&health).send(),
    )
    .await
    .expect_err("the system roots do not know the cluster CA");
    let text = chain(&err);
    assert!(
        text.contains("UnknownIssuer") || text.contains("certificate"),
        "{text}"
    );
    let plain = within(
        "plain HTTP to an HTTPS port",
        http().get(health.replace("https://", "http://")).send(),
    )
    .await;
    assert!(
        !plain.is_ok_and(|r| r.status().is_success()),
        "plain HTTP gets no answer from the HTTPS port"
    );
    let ok = within(
        "health with the CA",
        client(None, Some(&c.pki.ca)).get(&health).send(),
    )
    .await
    .expect("with the CA the handshake succeeds");
    assert_eq!(ok.status(), 200);

    // curl, as an operator would use it (`.ci/run` installs it: missing, the test fails unless
    // skips are allowed).
    let curl = dc_support::testing::try_output_within(
        WAIT,
        std::process::Command::new("curl").arg("--version"),
    );
    match curl {
        Ok(o) if o.status.success() => {
            let run = |extra: &[&str]| {
                let mut cmd = Command::new("curl");
                cmd.args(["-sS", "--max-time", "20"])
                    .args(extra)
                    .arg(&health);
                within("curl", cmd.kill_on_drop(true).output())
            };
            let without = run(&[]).await.expect("run curl");
            assert_eq!(
                without.status.code(),
                Some(60),
                "curl without --cacert: {}",
                String::from_utf8_lossy(&without.stderr)
            );
            let with = run(&["--cacert", c.pki.ca.to_str().unwrap()])
                .await
                .expect("run curl");
            assert!(
                with.status.success(),
                "curl --cacert: {}",
                String::from_utf8_lossy(&with.stderr)
            );
            assert!(String::from_utf8_lossy(&with.stdout).contains("healthy"));
        }
        _ => dc_support::testing::missing("curl (for the curl half of this test)"),
    }
    m.stop().await;
}

#[tokio::test]
async fn an_agent_certificate_is_an_agent_credential_and_gets_403_on_the_operator_and_scheduler_apis()
 {
    let dir = tempfile::tempdir().unwrap();
    let c = certs(dir.path());
    let m = tls_master(dir.path(), &c).await;
    let agent = client(Some(&c.agent), Some(&c.pki.ca));
    let post = |path: &str, body: serde_json::Value| {
        within(
            "a call with the agent's certificate",
            agent.post(format!("{}{path}", m.url)).json(&body).send(),
        )
    };
    for path in ["/api/v1", "/api/v1/scheduler"] {
        let r = post(path, json!({"type": "GET_HEALTH"}))
            .await
            .expect("answer");
        assert_eq!(r.status(), 403, "{path}");
        let text = r.text().await.unwrap();
        assert!(text.contains("agent credentials"), "{path}: {text}");
    }
    let r = within("metrics", agent.get(format!("{}/metrics", m.url)).send())
        .await
        .expect("answer");
    assert_eq!(r.status(), 403);
    // On the agent routes the certificate is a credential: an unknown agent's heartbeat is
    // "register again" (404), not "authentication required" (401).
    let r = post(
        "/internal/v1/agents/heartbeat",
        json!({"agent_id": {"value": "nobody-knows"}}),
    )
    .await
    .expect("answer");
    assert_eq!(r.status(), 404);
    // Without a certificate the same call is unauthenticated.
    let r = within(
        "heartbeat without a certificate",
        client(None, Some(&c.pki.ca))
            .post(format!("{}/internal/v1/agents/heartbeat", m.url))
            .json(&json!({"agent_id": {"value": "nobody-knows"}}))
            .send(),
    )
    .await
    .expect("answer");
    assert_eq!(r.status(), 401);
    // A master's certificate opens nothing on the master.
    let r = within(
        "heartbeat with a master certificate",
        client(Some(&c.master), Some(&c.pki.ca))
            .post(format!("{}/internal/v1/agents/heartbeat", m.url))
            .json(&json!({"agent_id": {"value": "nobody-knows"}}))
            .send(),
    )
    .await
    .expect("answer");
    assert_eq!(r.status(), 401);
    m.stop().await;
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused_in_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let c = certs(dir.path());
    let m = tls_master(dir.path(), &c).await;
    let other = Pki::new(&dir.path().join("other"), "other");
    let impostor = other.issue("impostor", Some("urn:dcform:agent:agents-0"));
    // It trusts the right CA for the server, but its own certificate is another CA's.
    let r = within(
        "a call with a foreign certificate",
        client(Some(&impostor), Some(&c.pki.ca))
            .post(format!("{}/internal/v1/agents/heartbeat", m.url))
            .json(&json!({"agent_id": {"value": "x"}}))
            .send(),
    )
    .await;
    let err = r.expect_err("the master refuses a certificate it cannot verify");
    let text = chain(&err);
    assert!(
        text.contains("UnknownCA") || text.contains("alert") || text.contains("certificate"),
        "{text}"
    );
    m.stop().await;
}

#[tokio::test]
async fn an_agent_serving_tls_takes_launch_only_from_a_master_certificate_or_its_secret() {
    let dir = tempfile::tempdir().unwrap();
    let c = certs(dir.path());
    let m = tls_master(dir.path(), &c).await;
    let a = tls_agent(&m.url, dir.path(), &c).await;
    m.wait_agents(1).await;
    let launch = json!({"framework_id": {"value": "f"}, "tasks": []});
    let call = |who: Option<&pki::NodeCert>, bearer: Option<&str>| {
        let mut r = client(who, Some(&c.pki.ca))
            .post(format!("{}/internal/v1/launch", a.url))
            .json(&launch);
        if let Some(b) = bearer {
            r = r.bearer_auth(b);
        }
        within("a launch call", r.send())
    };
    let status = |r: Result<reqwest::Response, reqwest::Error>| r.expect("answer").status();
    assert_eq!(
        status(call(Some(&c.master), None).await),
        202,
        "master cert"
    );
    assert_eq!(status(call(Some(&c.agent), None).await), 401, "agent cert");
    assert_eq!(status(call(None, None).await), 401, "no certificate");
    assert_eq!(
        status(call(None, Some(TOKEN)).await),
        401,
        "the operator token is not the master's proof"
    );
    a.stop().await;
    m.stop().await;
}

#[tokio::test]
async fn the_binary_serves_https_with_tls_flags_and_probe_trusts_only_the_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let c = certs(dir.path());
    let token = dir.path().join("token");
    std::fs::write(&token, "bin-token\n").unwrap();
    let wd = dir.path().join("m");
    // The key and certificate come from the config file, the CA from the flag.
    let cfg = dir.path().join("master.json");
    std::fs::write(
        &cfg,
        json!({"tls_cert_file": "pki/master.crt", "tls_key_file": "pki/master.key"}).to_string(),
    )
    .unwrap();
    let (mut m, url) = start_bin(
        &[
            "master",
            "--listen",
            "127.0.0.1:0",
            "--work-dir",
            wd.to_str().unwrap(),
            "--token-file",
            token.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--ca-file",
            c.pki.ca.to_str().unwrap(),
        ],
        Stdio::piped(),
    )
    .await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    assert_eq!(
        std::fs::read_to_string(wd.join("address")).unwrap().trim(),
        url
    );
    let probe = |ca: Option<&Path>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["probe", "--master", &url, "--token-file"])
            .arg(&token)
            .args(["--timeout-secs", "10"]);
        if let Some(ca) = ca {
            cmd.arg("--ca-file").arg(ca);
        }
        within("dccore probe", cmd.kill_on_drop(true).output())
    };
    let ok = probe(Some(&c.pki.ca)).await.expect("run probe");
    assert!(
        ok.status.success(),
        "probe --ca-file: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let refused = probe(None).await.expect("run probe");
    assert_eq!(
        refused.status.code(),
        Some(2),
        "a master it cannot trust is a runtime failure"
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("unreachable"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // drain and reactivate take the same --ca-file (no agent has that URL: nothing to do).
    for sub in ["drain", "reactivate"] {
        let out = within(
            "dccore drain/reactivate",
            Command::new(BIN)
                .args([sub, "--master", &url, "--token-file"])
                .arg(&token)
                .args(["--agent-url", "https://127.0.0.1:1", "--ca-file"])
                .arg(&c.pki.ca)
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("run dccore");
        assert!(
            out.status.success(),
            "{sub} --ca-file: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _ = m.start_kill();
}

#[tokio::test]
async fn bad_tls_files_are_usage_errors_that_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let c = certs(dir.path());
    let other = c.pki.issue("other", None);
    let token = dir.path().join("token");
    std::fs::write(&token, "bin-token\n").unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "hello\n").unwrap();
    let run = |extra: Vec<String>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["master", "--listen", "127.0.0.1:0", "--work-dir"])
            .arg(dir.path().join("m"))
            .arg("--token-file")
            .arg(&token)
            .args(extra);
        within(
            "dccore master with bad TLS files",
            cmd.kill_on_drop(true).output(),
        )
    };
    let s = |p: &Path| p.display().to_string();
    let cases: Vec<(Vec<String>, String, &str)> = vec![
        (
            vec![
                "--tls-cert".into(),
                s(&garbage),
                "--tls-key".into(),
                s(&c.master.key),
            ],
            s(&garbage),
            "no PEM \"CERTIFICATE\"",
        ),
        (
            vec![
                "--tls-cert".into(),
                s(&c.master.cert),
                "--tls-key".into(),
                s(&garbage),
            ],
            s(&garbage),
            "no PEM private key",
        ),
        (
            vec![
                "--tls-cert".into(),
                s(&c.master.cert),
                "--tls-key".into(),
                s(&other.key),
            ],
            s(&other.key),
            "does not belong to the certificate",
        ),
        (
            vec!["--tls-cert".into(), s(&c.master.cert)],
            "--tls-key".into(),
            "go together",
        ),
        (
            vec!["--ca-file".into(), s(&dir.path().join("missing.pem"))],
            s(&dir.path().join("missing.pem")),
            "cannot read",
        ),
        (
            vec!["--ca-file".into(), s(dir.path())],
            s(dir.path()),
            "not a regular file",
        ),
    ];
    for (args, names, says) in cases {
        let out = run(args.clone()).await.expect("run dccore");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "bad TLS files are bad usage: {args:?}: {err}"
        );
        assert!(
            err.contains(&names) && err.contains(says),
            "{args:?}: {err}"
        );
    }
}

#[tokio::test]
async fn without_tls_flags_the_master_serves_plain_http_and_warns_once() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "bin-token\n").unwrap();
    let (mut m, url) = start_bin(
        &[
            "master",
            "--listen",
            "127.0.0.1:0",
            "--work-dir",
            dir.path().join("m").to_str().unwrap(),
            "--token-file",
            token.to_str().unwrap(),
        ],
        Stdio::piped(),
    )
    .await;
    assert!(url.starts_with("http://"), "{url}");
    // Serving means start-up (and its warning) is over.
    let health = within("plain health", http().get(format!("{url}/health")).send())
        .await
        .expect("plain HTTP answers");
    assert_eq!(health.status(), 200);
    let _ = m.start_kill();
    let out = within("the master's exit", m.wait_with_output())
        .await
        .expect("output");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("serving plain HTTP").count(), 1, "{err}");
    assert!(err.contains("--tls-cert"), "{err}");
}
