//! Real `dccore master` processes for the benchmarks: one master alone, or N replicated masters
//! configured by their config files as dcform configures them (`replica_id`, `replica_peers`
//! with every member's URL, `replica_secret_file` beside them, `replica_init` on the first).
//! Used by `failover` (which also starts etcd members through [`Member`]) and `master_http`.
// Each bench takes what it needs of this module.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// `n` ports free on 127.0.0.1 now (each member must know every URL before any starts).
pub fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    ls.iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

/// One process of a group under test: how to start it (again) and where it answers.
pub struct Member {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub url: String,
    /// Environment variables set for it.
    pub env: Vec<(String, String)>,
    pub child: Option<Child>,
}

impl Member {
    pub fn start(&mut self) {
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.program.display()));
        self.child = Some(child);
    }

    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(10), c.wait()).await;
        }
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }
}

/// How to run a set of `dccore master` processes.
pub struct Masters<'a> {
    /// Their files: `token`, `replica.secret`, `m1/`, `m2/`, ... (work dir and `master.json`).
    pub dir: &'a Path,
    /// How many; more than one are one replicated group.
    pub count: usize,
    /// The operator token (`--token-file`).
    pub token: &'a str,
    /// `http` or `https` (then `args` must carry the TLS files).
    pub scheme: &'a str,
    /// Fields every master's config file gets besides the replica ones (a JSON object).
    pub config: Value,
    /// Arguments every master gets after `--config`.
    pub args: Vec<String>,
    /// Environment variables every master gets (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
}

impl Masters<'_> {
    /// The members, not started yet: [`Member::start`] each.
    pub fn members(&self) -> Vec<Member> {
        let dir = self.dir;
        std::fs::create_dir_all(dir).expect("dir");
        let token = dir.join("token");
        std::fs::write(&token, format!("{}\n", self.token)).expect("token");
        let ports = free_ports(self.count);
        let urls: Vec<String> = ports
            .iter()
            .map(|p| format!("{}://127.0.0.1:{p}", self.scheme))
            .collect();
        let peers: Vec<String> = urls
            .iter()
            .enumerate()
            .map(|(i, u)| format!("{}={u}", i + 1))
            .collect();
        if self.count > 1 {
            let secret = dir.join("replica.secret");
            std::fs::write(&secret, "00112233445566778899aabbccddeeff").expect("secret");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))
                .expect("chmod");
        }
        let mut members = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let wd = dir.join(format!("m{}", i + 1));
            std::fs::create_dir_all(&wd).expect("dir");
            let config = wd.join("master.json");
            let mut body = self.config.clone();
            if self.count > 1 {
                let fields = json!({
                    "replica_id": i + 1,
                    "replica_peers": peers,
                    "replica_secret_file": "../replica.secret",
                    "replica_init": i == 0,
                });
                let (Some(body), Value::Object(fields)) = (body.as_object_mut(), fields) else {
                    panic!("Masters::config must be a JSON object");
                };
                body.extend(fields);
            }
            std::fs::write(&config, body.to_string()).expect("config");
            let mut args: Vec<String> = [
                "master",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--work-dir",
                &wd.display().to_string(),
                "--token-file",
                &token.display().to_string(),
                "--config",
                &config.display().to_string(),
            ]
            .map(String::from)
            .to_vec();
            args.extend(self.args.iter().cloned());
            members.push(Member {
                program: PathBuf::from(env!("CARGO_BIN_EXE_dccore")),
                args,
                url: urls[i].clone(),
                env: self.env.clone(),
                child: None,
            });
        }
        members
    }
}

/// A master's `GET /replica` (its view of the group), or None if it does not answer.
pub async fn replica(http: &reqwest::Client, url: &str, token: &str) -> Option<Value> {
    http.get(format!("{url}/replica"))
        .bearer_auth(token)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// The index of the member that says it leads (the first one asked that does).
pub async fn leader(http: &reqwest::Client, urls: &[&str], token: &str) -> Option<usize> {
    for (i, url) in urls.iter().enumerate() {
        if let Some(r) = replica(http, url, token).await
            && r["is_leader"] == true
        {
            return Some(i);
        }
    }
    None
}
