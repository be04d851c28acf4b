//! Replicated masters as real `dccore master` processes configured by their config files
//! (`replica_id`, `replica_peers`, `replica_secret_file`, `replica_init`): one leader named by
//! all; the leader's process killed (SIGKILL) → the other two elect a new leader.

#[path = "support/ha.rs"]
mod ha;
mod support;

use serde_json::{Value, json};
use std::process::Stdio;
use std::time::Duration;
use support::{eventually, start_bin};

const TOKEN: &str = "ha-bin-token";

async fn replica(url: &str) -> Option<Value> {
    ha::no_redirects()
        .get(format!("{url}/replica"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Waits until every master of `among` names one leader that says it leads; its index.
async fn leader(urls: &[String], among: &[usize]) -> usize {
    eventually("one leader named by every master", || async {
        let mut ids = std::collections::BTreeSet::new();
        for &i in among {
            ids.insert(replica(&urls[i]).await?["leader"]["id"].as_u64()?);
        }
        let id = *ids.iter().next()?;
        let i = usize::try_from(id).ok()? - 1;
        let leads = replica(&urls[i]).await?["is_leader"] == true;
        (ids.len() == 1 && among.contains(&i) && leads).then_some(i)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_master_processes_elect_a_leader_and_elect_another_when_it_is_killed() {
    let root = tempfile::tempdir().expect("tmp");
    let token = root.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).expect("token");
    let secret = root.path().join("replica.secret");
    std::fs::write(&secret, "00112233445566778899aabbccddeeff").expect("secret");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    // Free ports for the three masters (each must know every URL before it starts).
    let mut ports = Vec::new();
    for _ in 0..3 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        ports.push(l.local_addr().expect("addr").port());
    }
    let urls: Vec<String> = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect();
    let peers: Vec<String> = urls
        .iter()
        .enumerate()
        .map(|(i, u)| format!("{}={u}", i + 1))
        .collect();
    let mut children = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let dir = root.path().join(format!("m{}", i + 1));
        std::fs::create_dir_all(&dir).expect("dir");
        let config = dir.join("master.json");
        let body = json!({
            "replica_id": i + 1,
            "replica_peers": peers,
            "replica_secret_file": "../replica.secret",
            "replica_init": i == 0,
        });
        std::fs::write(&config, body.to_string()).expect("config");
        let listen = format!("127.0.0.1:{port}");
        let (child, _addr) = start_bin(
            &[
                "master",
                "--listen",
                &listen,
                "--work-dir",
                &dir.display().to_string(),
                "--token-file",
                &token.display().to_string(),
                "--config",
                &config.display().to_string(),
            ],
            Stdio::null(),
        )
        .await;
        children.push(Some(child));
    }
    let l = leader(&urls, &[0, 1, 2]).await;
    for u in &urls {
        let loc = eventually("/redirect names the leader", || async {
            let r = ha::no_redirects()
                .get(format!("{u}/redirect"))
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .ok()?;
            r.headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .await;
        assert_eq!(loc, format!("{}/", urls[l]));
    }
    assert!(
        !root
            .path()
            .join(format!("m{}", l + 1))
            .join("registry.json")
            .exists(),
        "a replicated master writes no registry.json"
    );

    let mut dead = children[l].take().expect("child");
    dead.start_kill().expect("kill the leader");
    support::within("the leader exits", dead.wait())
        .await
        .expect("wait");
    let rest: Vec<usize> = (0..3).filter(|i| *i != l).collect();
    let n = leader(&urls, &rest).await;
    assert_ne!(n, l);
    let r = replica(&urls[n]).await.expect("replica");
    assert_eq!(r["voters"], json!([1, 2, 3]), "{r}");
}
