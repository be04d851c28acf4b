//! The masters' replicated log (`dccore::replica`): in-process groups of replicas on
//! 127.0.0.1 talking real HTTP to each other's `/internal/raft/*` routes, each with its own
//! redb store in a temporary folder. The only fake is at our own trait boundary: the test's
//! `PeerLink` wraps the real `HttpLink` with a switch that cuts a replica off (a partition).
//!
//! The tests run one at a time (a lock): each starts a group whose election timeouts must hold
//! on a loaded 2-core machine, and several groups at once would make that the test's subject.

use dc_support::testing::within;
use dccore::master::Change;
use dccore::master::tables::{AgentInfo, FrameworkRec, TaskRec};
use dccore::proto::{Resources, TaskInfo};
use dccore::replica::network::{LinkError, LinkFuture};
use dccore::replica::{
    Command, Committed, HttpLink, KvOp, NodeId, PeerLink, Replica, ReplicaConfig, ReplicaError,
    RpcKind,
};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "test-master-secret";
const DEADLINE: Duration = Duration::from_secs(20);

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Replicas cut off from all others (both directions).
#[derive(Clone, Default)]
struct Partition(Arc<Mutex<HashSet<NodeId>>>);

impl Partition {
    fn cut(&self, id: NodeId) {
        self.0.lock().expect("lock").insert(id);
    }
    fn heal(&self) {
        self.0.lock().expect("lock").clear();
    }
    fn blocks(&self, a: NodeId, b: NodeId) -> bool {
        let cut = self.0.lock().expect("lock");
        cut.contains(&a) || cut.contains(&b)
    }
}

/// The real link, behind the partition switch.
struct SwitchedLink {
    me: NodeId,
    inner: HttpLink,
    partition: Partition,
}

impl PeerLink for SwitchedLink {
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

/// One replica with its HTTP server.
struct Node {
    id: NodeId,
    url: String,
    addr: SocketAddr,
    dir: PathBuf,
    replica: Arc<Replica>,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// A client as a master builds it (its TLS settings; plain HTTP here).
fn http_client() -> reqwest::Client {
    dccore::tls::Tls::default()
        .http_client()
        .expect("client settings")
        .build()
        .expect("client")
}

fn config(id: NodeId, url: &str, dir: &Path) -> ReplicaConfig {
    ReplicaConfig::new(id, url, dir)
}

impl Node {
    async fn start(
        id: NodeId,
        listener: TcpListener,
        dir: PathBuf,
        partition: &Partition,
        tune: impl Fn(&mut ReplicaConfig),
    ) -> Node {
        let addr = listener.local_addr().expect("addr");
        let url = format!("http://{addr}");
        std::fs::create_dir_all(&dir).expect("dir");
        let mut cfg = config(id, &url, &dir);
        tune(&mut cfg);
        let link = SwitchedLink {
            me: id,
            inner: HttpLink::new(http_client(), SECRET),
            partition: partition.clone(),
        };
        let link: Arc<dyn PeerLink> = Arc::new(link);
        // A replica just stopped may still be closing its store (openraft's tasks end after
        // `shutdown` returns): retry the open for a moment.
        let replica = within(DEADLINE, "the replica's store opens", async {
            loop {
                match Replica::start(cfg.clone(), link.clone()).await {
                    Ok(r) => return r,
                    Err(ReplicaError::Store { .. }) => {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    Err(e) => panic!("replica {id} does not start: {e:?}"),
                }
            }
        })
        .await;
        let replica = Arc::new(replica);
        let stop = CancellationToken::new();
        let app = dccore::api::raft::router(replica.clone(), SECRET);
        let server = tokio::spawn(dccore::tls::serve(listener, None, app, stop.clone()));
        Node {
            id,
            url,
            addr,
            dir,
            replica,
            stop,
            server,
        }
    }

    /// Stops the server and the replica; returns what is needed to start it again.
    async fn stop(self) -> (NodeId, SocketAddr, PathBuf) {
        self.stop.cancel();
        within(DEADLINE, "the server stops", self.server)
            .await
            .expect("server task")
            .expect("server");
        let mut replica = self.replica;
        let replica = within(DEADLINE, "the server lets go of the replica", async {
            loop {
                match Arc::try_unwrap(replica) {
                    Ok(r) => return r,
                    Err(r) => {
                        replica = r;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        })
        .await;
        within(DEADLINE, "the replica stops", replica.shutdown())
            .await
            .expect("shutdown");
        (self.id, self.addr, self.dir)
    }

    async fn restart(
        (id, addr, dir): (NodeId, SocketAddr, PathBuf),
        partition: &Partition,
        tune: impl Fn(&mut ReplicaConfig),
    ) -> Node {
        let listener = within(DEADLINE, "the old port is free again", async {
            loop {
                match TcpListener::bind(addr).await {
                    Ok(l) => return l,
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        })
        .await;
        Node::start(id, listener, dir, partition, tune).await
    }
}

/// A test's group of replicas in its own folder, with the test lock held.
struct Group {
    _one: tokio::sync::MutexGuard<'static, ()>,
    dir: tempfile::TempDir,
    p: Partition,
    nodes: Vec<Node>,
}

impl Group {
    /// `n` replicas, initialised by the first.
    async fn start(n: u64, tune: impl Fn(&mut ReplicaConfig) + Copy) -> Group {
        let one = ONE_AT_A_TIME.lock().await;
        let dir = tempfile::tempdir().expect("tmp");
        let p = Partition::default();
        let mut nodes = Vec::new();
        for id in 1..=n {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let node_dir = dir.path().join(format!("m{id}"));
            nodes.push(Node::start(id, listener, node_dir, &p, tune).await);
        }
        let members: BTreeMap<NodeId, String> =
            nodes.iter().map(|n| (n.id, n.url.clone())).collect();
        within(DEADLINE, "initialise", nodes[0].replica.initialize(members))
            .await
            .expect("initialise");
        Group {
            _one: one,
            dir,
            p,
            nodes,
        }
    }

    fn all(&self) -> Vec<&Node> {
        self.nodes.iter().collect()
    }

    async fn stop(self) {
        for n in self.nodes {
            n.stop().await;
        }
    }
}

/// Waits until exactly one of `nodes` leads (confirmed by a majority) and every other one
/// names it; returns its index in `nodes`.
async fn leader(nodes: &[&Node]) -> usize {
    within(DEADLINE, "one leader that all name", async {
        loop {
            let views: Vec<_> = nodes
                .iter()
                .map(|n| n.replica.leadership().borrow().clone())
                .collect();
            let leaders: Vec<usize> = (0..nodes.len()).filter(|&i| views[i].is_leader).collect();
            if let [l] = leaders[..] {
                let id = nodes[l].id;
                if views
                    .iter()
                    .all(|v| v.leader.as_ref().map(|x| x.0) == Some(id))
                {
                    return l;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Commits `batch` through whichever of `nodes` leads, proposing again to the next leader if
/// leadership moves meanwhile (as a client does; a busy machine may delay a heartbeat past the
/// election timeout). Returns the leader's index in `nodes` and the commit.
async fn commit(nodes: &[&Node], batch: Vec<Command>) -> (usize, Committed) {
    within(DEADLINE, "a commit by the leader", async {
        loop {
            let l = leader(nodes).await;
            match nodes[l].replica.propose(batch.clone()).await {
                Ok(c) => return (l, c),
                Err(ReplicaError::NotLeader { .. }) => continue,
                Err(e) => panic!("proposal failed: {e:?}"),
            }
        }
    })
    .await
}

fn agent(id: &str) -> AgentInfo {
    AgentInfo {
        id: id.into(),
        hostname: format!("{id}.example"),
        url: format!("http://127.0.0.1:9/{id}"),
        total: Resources::new(4.0, 4096.0, 0.0),
        attributes: vec![],
        public: false,
        version: "test".into(),
        task_user: None,
    }
}

fn task(fid: &str, tid: &str, agent_id: &str) -> TaskRec {
    let info: TaskInfo = serde_json::from_value(serde_json::json!({
        "name": tid, "task_id": {"value": tid}, "agent_id": {"value": agent_id}}))
    .expect("a task");
    TaskRec::staging(fid, agent_id, info, Resources::new(0.001, 1.0, 0.0))
}

/// An agent, a framework and two tasks on it, and a key.
fn first_batch() -> Vec<Command> {
    vec![
        Command::Cluster(Change::AgentRegistered {
            agent: agent("a1"),
            // Not a round number: the replicas must agree on it bit for bit.
            registered_time: 1_764_600_000.123_456_7,
        }),
        Command::Cluster(Change::FrameworkAdded {
            framework: FrameworkRec {
                id: "f1".into(),
                info_raw: serde_json::json!({"name": "f1", "id": {"value": "f1"}}),
                info: Default::default(),
                principal: Some("p".into()),
                failover_timeout: Duration::from_secs(60),
                registered_time: 0.1 + 0.2,
            },
        }),
        Command::Cluster(Change::TaskAdded {
            task: task("f1", "t1", "a1"),
            hold: true,
        }),
        Command::Cluster(Change::TaskAdded {
            task: task("f1", "t2", "a1"),
            hold: true,
        }),
        put("services", "app", b"v1"),
    ]
}

fn put(ns: &str, key: &str, value: &[u8]) -> Command {
    Command::Kv(KvOp::Put {
        ns: ns.into(),
        key: key.into(),
        value: value.to_vec(),
    })
}

/// Waits until every node has applied `index`, then checks that their states are equal.
async fn all_equal(nodes: &[&Node], index: u64) {
    for n in nodes {
        within(
            DEADLINE,
            &format!("replica {} applies entry {index}", n.id),
            n.replica.wait_applied(index),
        )
        .await
        .expect("applied");
    }
    let first = nodes[0].replica.state();
    for n in &nodes[1..] {
        let s = n.replica.state();
        assert_eq!(
            s.image, first.image,
            "replica {} and {} differ",
            n.id, nodes[0].id
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_elect_one_leader_and_commit_a_batch_into_equal_tables() {
    let g = Group::start(3, |_| {}).await;
    let all = g.all();
    let (l, c) = commit(&all, first_batch()).await;
    all_equal(&all, c.index).await;
    let s = g.nodes[(l + 1) % 3].replica.state();
    assert!(
        s.image.tables.agents.get("a1").is_some(),
        "the agent is in a follower's tables"
    );
    assert_eq!(s.image.tables.tasks.iter().count(), 2);
    assert_eq!(s.image.kv["services"]["app"], b"v1");
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposing_to_a_follower_returns_not_leader_with_the_leaders_url() {
    let g = Group::start(3, |_| {}).await;
    let l = leader(&g.all()).await;
    let follower = &g.nodes[(l + 1) % 3];
    let e = within(DEADLINE, "refusal", follower.replica.propose(first_batch()))
        .await
        .expect_err("a follower does not accept proposals");
    match e {
        ReplicaError::NotLeader { leader } => {
            assert_eq!(leader, Some((g.nodes[l].id, g.nodes[l].url.clone())))
        }
        other => panic!("want NotLeader, got {other:?}"),
    }
    assert_eq!(
        follower.replica.state().image.kv.len(),
        0,
        "nothing was committed"
    );
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_leader_is_replaced_and_catches_up_from_its_disk_when_restarted() {
    let mut g = Group::start(3, |_| {}).await;
    let (_, c) = commit(&g.all(), first_batch()).await;
    all_equal(&g.all(), c.index).await;
    let l = leader(&g.all()).await;

    let old = g.nodes.remove(l);
    let old_id = old.id;
    let stopped = old.stop().await;
    let t0 = Instant::now();
    let rest: Vec<&Node> = g.nodes.iter().collect();
    let nl = leader(&rest).await;
    let failover = t0.elapsed();
    eprintln!("failover: new leader {} after {failover:?}", rest[nl].id);
    assert_ne!(rest[nl].id, old_id);
    let (_, c2) = commit(&rest, vec![put("services", "app", b"v2")]).await;
    all_equal(&rest, c2.index).await;

    let back = Node::restart(stopped, &g.p, |_| {}).await;
    g.nodes.push(back);
    let all = g.all();
    all_equal(&all, c2.index).await;
    assert_eq!(all[2].replica.state().image.kv["services"]["app"], b"v2");
    assert_eq!(all[2].replica.state().image.tables.tasks.iter().count(), 2);
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_cannot_commit_and_the_majority_elects_another() {
    let g = Group::start(3, |_| {}).await;
    let all = g.all();
    let l = leader(&all).await;
    let old = &g.nodes[l];
    g.p.cut(old.id);

    // The cut-off leader's own proposal never commits ...
    let lost = tokio::time::timeout(
        Duration::from_secs(3),
        old.replica.propose(vec![put("split", "brain", b"x")]),
    )
    .await;
    assert!(
        !matches!(lost, Ok(Ok(_))),
        "a leader without a majority committed: {lost:?}"
    );
    // ... it stops calling itself leader ...
    within(DEADLINE, "the cut-off leader steps back", async {
        let mut w = old.replica.leadership();
        while w.borrow_and_update().is_leader {
            w.changed().await.expect("watch");
        }
    })
    .await;
    // ... and the majority elects another that commits.
    let rest: Vec<&Node> = g.nodes.iter().filter(|n| n.id != old.id).collect();
    let (_, c) = commit(&rest, vec![put("services", "app", b"after")]).await;

    g.p.heal();
    all_equal(&all, c.index).await;
    let s = old.replica.state();
    assert_eq!(s.image.kv["services"]["app"], b"after");
    assert!(
        !s.image.kv.contains_key("split"),
        "the cut-off leader's entry was discarded"
    );
    g.stop().await;
}

/// Small snapshot settings so that the tests see snapshots and purges.
fn small_snapshots(c: &mut ReplicaConfig) {
    c.snapshot_every = 50;
    c.keep_behind_snapshot = 10;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_replica_joins_as_learner_then_voter_by_snapshot_and_a_follower_is_removed() {
    let mut g = Group::start(3, small_snapshots).await;
    let (mut l, mut last) = commit(&g.all(), first_batch()).await;
    for i in 0..200 {
        (l, last) = commit(&g.all(), vec![put("jobs", &format!("k{i}"), b"v")]).await;
    }
    within(DEADLINE, "the leader purges its log", async {
        while g.nodes[l].replica.log_position().2.is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let fresh = Node::start(4, listener, g.dir.path().join("m4"), &g.p, small_snapshots).await;
    within(
        DEADLINE,
        "the learner catches up",
        g.nodes[l].replica.add_learner(4, &fresh.url),
    )
    .await
    .expect("learner added");
    within(
        DEADLINE,
        "promote",
        g.nodes[l].replica.set_voters(BTreeSet::from([1, 2, 3, 4])),
    )
    .await
    .expect("voter");
    let (voters, learners) = g.nodes[l].replica.members();
    assert_eq!(voters.keys().copied().collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert!(learners.is_empty());
    // It started from a snapshot: entries before the leader's purge point never reached it.
    assert!(
        fresh.replica.log_position().2.is_some(),
        "the new replica installed a snapshot"
    );
    g.nodes.push(fresh);
    let all = g.all();
    all_equal(&all, last.index).await;
    assert_eq!(all[3].replica.state().image.kv["jobs"].len(), 200);

    // A follower removed from the group is neither voter nor learner any more.
    let gone = all
        .iter()
        .map(|n| n.id)
        .find(|&id| id != all[l].id && id != 4)
        .expect("a follower");
    within(DEADLINE, "remove", all[l].replica.remove(gone))
        .await
        .expect("removed");
    let (voters, learners) = all[l].replica.members();
    assert!(!voters.contains_key(&gone) && !learners.contains_key(&gone));
    assert_eq!(voters.len(), 3);
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_and_purges_keep_the_log_bounded_under_load() {
    let g = Group::start(3, small_snapshots).await;
    let all = g.all();
    let l = leader(&all).await;
    let leader = g.nodes[l].replica.clone();
    // 600 entries: a dozen snapshots and purges at 50 entries each, in seconds even on a busy
    // machine (every entry is fsync'd on each replica).
    let (batches, per_batch, in_flight) = (600u64, 20u64, 32u64);
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for w in 0..in_flight {
        let r = leader.clone();
        set.spawn(async move {
            let mut last = 0;
            for b in (w..batches).step_by(in_flight as usize) {
                let batch = (0..per_batch)
                    .map(|i| put("load", &format!("{b}-{i}"), b"v"))
                    .collect();
                last = last.max(r.propose(batch).await.expect("committed").index);
            }
            last
        });
    }
    let mut last = 0;
    while let Some(r) = within(DEADLINE * 6, "the load", set.join_next()).await {
        last = last.max(r.expect("writer"));
    }
    let took = t0.elapsed();
    eprintln!(
        "load: {batches} batches of {per_batch} commands, {in_flight} in flight, 3 replicas: {:.0} batches/s, {:.0} commands/s",
        batches as f64 / took.as_secs_f64(),
        (batches * per_batch) as f64 / took.as_secs_f64()
    );
    drop(leader);
    all_equal(&all, last).await;
    assert_eq!(
        g.nodes[0].replica.state().image.kv["load"].len() as u64,
        batches * per_batch
    );
    // Each replica snapshots every 50 entries and keeps 10 behind: its log settles at fewer
    // than 50 + 10 + what arrived while the last snapshot was built — far below 600.
    let bound = 2 * 50 + 10;
    for n in &all {
        within(
            DEADLINE,
            &format!("replica {}'s log shrinks below {bound}", n.id),
            async {
                while n.replica.log_len().expect("log length") > bound {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        )
        .await;
        let (_, _, purged) = n.replica.log_position();
        assert!(
            purged.is_some_and(|p| p > batches / 2),
            "replica {} purged its log up to {purged:?}",
            n.id
        );
    }
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_raft_routes_refuse_requests_without_the_master_secret() {
    let g = Group::start(1, |_| {}).await;
    let http = http_client();
    let url = format!("{}/internal/raft/vote", g.nodes[0].url);
    let vote = serde_json::json!({"vote": {"leader_id": {"term": 99, "node_id": 7}, "committed": false}, "last_log_id": null});
    let cases: [(&str, Option<&str>, u16); 4] = [
        ("no credentials", None, 401),
        ("another bearer token", Some("Bearer operator-token"), 401),
        ("framework credentials", Some("Basic cDpz"), 401),
        ("the master secret", Some("Bearer test-master-secret"), 200),
    ];
    for (what, auth, want) in cases {
        let mut rq = http.post(&url).json(&vote);
        if let Some(a) = auth {
            rq = rq.header("authorization", a);
        }
        let r = within(DEADLINE, what, rq.send()).await.expect("answer");
        assert_eq!(r.status().as_u16(), want, "{what}");
    }
    // With the secret, a body that is no Raft RPC is a 400 that says so.
    let r = within(
        DEADLINE,
        "bad body",
        http.post(&url)
            .bearer_auth(SECRET)
            .body("{\"not\": \"a vote\"}")
            .send(),
    )
    .await
    .expect("answer");
    assert_eq!(r.status().as_u16(), 400);
    assert!(
        r.text()
            .await
            .expect("text")
            .contains("bad Raft RPC body for vote")
    );
    g.stop().await;
}
