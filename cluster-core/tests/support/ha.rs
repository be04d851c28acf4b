//! Replicated masters in-process on 127.0.0.1: N `dccore` masters (the real server, Raft over
//! HTTP) whose Raft links the test can cut.
#![allow(dead_code)]

use crate::support::{TOKEN, bearer, fast_master_config, http, within};
use dccore::auth::Authenticator;
use dccore::replica::network::{LinkError, LinkFuture};
use dccore::replica::{NodeId, PeerLink, RpcKind};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The masters cut off from the others (both ways).
#[derive(Clone, Default)]
pub struct Partition(Arc<Mutex<BTreeSet<NodeId>>>);

impl Partition {
    pub fn cut(&self, id: NodeId) {
        self.0.lock().expect("lock").insert(id);
    }

    pub fn heal(&self) {
        self.0.lock().expect("lock").clear();
    }

    fn blocks(&self, a: NodeId, b: NodeId) -> bool {
        let cut = self.0.lock().expect("lock");
        cut.contains(&a) != cut.contains(&b)
    }
}

/// A master's Raft link through the partition.
struct Switched {
    me: NodeId,
    inner: Arc<dyn PeerLink>,
    partition: Partition,
}

impl PeerLink for Switched {
    fn call(
        &self,
        target: NodeId,
        url: &str,
        kind: RpcKind,
        body: Vec<u8>,
        timeout: Duration,
    ) -> LinkFuture {
        if self.partition.blocks(self.me, target) {
            let url = url.to_string();
            return Box::pin(async move {
                Err(LinkError::Unreachable {
                    target,
                    url,
                    source: "cut off by the test's partition".into(),
                })
            });
        }
        self.inner.call(target, url, kind, body, timeout)
    }
}

pub struct HaMaster {
    pub id: NodeId,
    pub url: String,
    pub dir: PathBuf,
    pub stop: CancellationToken,
    task: Option<JoinHandle<()>>,
    cfg: dccore::master::MasterConfig,
    partition: Partition,
}

impl HaMaster {
    /// Starts this (killed) master again on its address and its disk.
    pub async fn restart(&mut self) {
        let addr = self.url.trim_start_matches("http://").to_string();
        // While the master was down, an outgoing connection may have been given its (ephemeral)
        // port as its local end: a busy address is tried again (as `Master::start_with_auth`).
        let listener = crate::support::eventually(&format!("rebind {addr}"), || async {
            match tokio::net::TcpListener::bind(&addr).await {
                Ok(l) => Some(l),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => None,
                Err(e) => panic!("rebind the master's address {addr}: {e}"),
            }
        })
        .await;
        *self = start_one(
            self.id,
            listener,
            self.url.clone(),
            self.dir.clone(),
            self.cfg.clone(),
            &self.partition,
        );
    }

    /// Whether this master runs (not killed, or restarted since).
    pub fn running(&self) -> bool {
        self.task.is_some()
    }

    /// Stops this master (its server and replica).
    pub async fn kill(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            within("master shutdown", t).await.expect("master task");
        }
    }

    /// Any operator call with the token, without following redirects: status and body.
    pub async fn operator_call(
        &self,
        body: Value,
    ) -> (reqwest::StatusCode, Option<String>, String) {
        let r = within(
            "operator call",
            no_redirects()
                .post(format!("{}/api/v1", self.url))
                .header("authorization", bearer())
                .json(&body)
                .send(),
        )
        .await
        .expect("operator call");
        let status = r.status();
        let location = location(&r);
        let text = within("operator body", r.text()).await.expect("body");
        (status, location, text)
    }

    pub async fn operator(&self, kind: &str) -> Value {
        let (status, _, text) = self.operator_call(json!({"type": kind})).await;
        assert_eq!(
            status, 200,
            "{kind} on {} answered {status}: {text}",
            self.url
        );
        serde_json::from_str(&text).expect("operator JSON")
    }

    /// `GET /replica`.
    pub async fn replica(&self) -> Option<Value> {
        let r = no_redirects()
            .get(format!("{}/replica", self.url))
            .header("authorization", bearer())
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        r.json().await.ok()
    }

    /// `GET /redirect`: the `Location` of a 307, `None` for anything else.
    pub async fn redirect(&self) -> Option<String> {
        let r = no_redirects()
            .get(format!("{}/redirect", self.url))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        (r.status() == 307).then(|| location(&r)).flatten()
    }
}

fn location(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A client that shows redirects instead of following them.
pub fn no_redirects() -> reqwest::Client {
    let _ = http();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// `n` masters with ids 1..=n; the first initialises the group.
pub async fn start_masters(root: &Path, n: u64, partition: &Partition) -> Vec<HaMaster> {
    start_masters_with(root, n, partition, |_| {}).await
}

/// [`start_masters`], each master's config changed by `tweak` first.
pub async fn start_masters_with(
    root: &Path,
    n: u64,
    partition: &Partition,
    tweak: impl Fn(&mut dccore::master::MasterConfig),
) -> Vec<HaMaster> {
    let mut listeners = Vec::new();
    for _ in 0..n {
        let l = within("bind", tokio::net::TcpListener::bind("127.0.0.1:0"))
            .await
            .expect("bind");
        listeners.push(l);
    }
    let urls: Vec<String> = listeners
        .iter()
        .map(|l| format!("http://{}", l.local_addr().expect("addr")))
        .collect();
    let peers: Vec<String> = urls
        .iter()
        .enumerate()
        .map(|(i, u)| format!("{}={u}", i + 1))
        .collect();
    let secret = root.join("replica.secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef").expect("secret");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let mut masters = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let id = i as u64 + 1;
        let dir = root.join(format!("m{id}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut cfg = fast_master_config(&dir);
        cfg.replica =
            dccore::replica::ReplicaSettings::parse(Some(id), Some(&peers), Some(secret.clone()))
                .expect("settings");
        cfg.replica_init = id == 1;
        tweak(&mut cfg);
        masters.push(start_one(
            id,
            listener,
            urls[i].clone(),
            dir,
            cfg,
            partition,
        ));
    }
    masters
}

fn start_one(
    id: NodeId,
    listener: tokio::net::TcpListener,
    url: String,
    dir: PathBuf,
    cfg: dccore::master::MasterConfig,
    partition: &Partition,
) -> HaMaster {
    let auth =
        Authenticator::new(TOKEN).with_principal(crate::support::PRINCIPAL, crate::support::SECRET);
    let stop = CancellationToken::new();
    let s = stop.clone();
    let p = partition.clone();
    let wrap: dccore::api::LinkWrapper = Box::new(move |inner| {
        Arc::new(Switched {
            me: id,
            inner,
            partition: p.clone(),
        })
    });
    let kept = cfg.clone();
    let task = tokio::spawn(async move {
        dccore::api::serve_with(listener, cfg, auth, Some(wrap), s)
            .await
            .expect("master runs");
    });
    HaMaster {
        id,
        url,
        dir,
        stop,
        task: Some(task),
        cfg: kept,
        partition: partition.clone(),
    }
}

/// Waits until every master in `among` names the same leader (one of `among`) in
/// `GET /replica`, and that leader says it leads; its index in `masters`.
pub async fn wait_leader(masters: &[HaMaster], among: &[usize]) -> usize {
    crate::support::eventually("one leader named by every master", || async {
        let mut named = BTreeSet::new();
        for &i in among {
            let r = masters[i].replica().await?;
            named.insert(r["leader"]["id"].as_u64()?);
        }
        let id = *named.iter().next()?;
        let i = masters.iter().position(|m| m.id == id)?;
        let leads = masters[i].replica().await?["is_leader"] == true;
        (named.len() == 1 && among.contains(&i) && leads).then_some(i)
    })
    .await
}

/// A new master with an empty store that waits to be added (`replica_init` false): id `id`,
/// its peers the `existing` masters and itself.
pub async fn start_joiner(
    root: &Path,
    id: NodeId,
    existing: &[HaMaster],
    partition: &Partition,
) -> HaMaster {
    let listener = within("bind", tokio::net::TcpListener::bind("127.0.0.1:0"))
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let mut peers: Vec<String> = existing
        .iter()
        .map(|m| format!("{}={}", m.id, m.url))
        .collect();
    peers.push(format!("{id}={url}"));
    let dir = root.join(format!("m{id}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut cfg = fast_master_config(&dir);
    cfg.replica = dccore::replica::ReplicaSettings::parse(
        Some(id),
        Some(&peers),
        Some(root.join("replica.secret")),
    )
    .expect("settings");
    start_one(id, listener, url, dir, cfg, partition)
}
