//! The replicated log's throughput: a real 3-replica group (`dccore::replica`) on 127.0.0.1,
//! each replica with its redb store in a temporary folder and its `/internal/raft/*` routes
//! served over real HTTP, as in `tests/replica.rs`.
//!
//! For batches of 1, 10 and 100 commands per log entry (key-space puts of 100-byte values), the
//! leader is given proposals with 1 in flight (each waits for the previous one: the latency
//! bound) and with 32 in flight (openraft then hands several entries to one `append`: one fsync
//! for all of them). Each case runs for a fixed time; printed: entries/s, commands/s and the
//! entries' bytes/s (their JSON, as stored and sent).
//!
//! `cargo bench --workspace --bench raft_log [-- --quick]` (`--quick`: 2 s per case, else 5 s).

mod common;

use dccore::replica::{Command, HttpLink, KvOp, NodeId, PeerLink, Replica, ReplicaConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "bench-master-secret";
const VALUE_BYTES: usize = 100;

struct Node {
    replica: Arc<Replica>,
    stop: CancellationToken,
}

fn http_client() -> reqwest::Client {
    dccore::tls::Tls::default()
        .http_client()
        .expect("client settings")
        .build()
        .expect("client")
}

async fn start(n: NodeId, dir: &std::path::Path) -> Vec<Node> {
    let mut listeners = Vec::new();
    for _ in 0..n {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
    }
    let mut nodes = Vec::new();
    let mut members = BTreeMap::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let id = i as NodeId + 1;
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let node_dir = dir.join(format!("m{id}"));
        std::fs::create_dir_all(&node_dir).expect("dir");
        let link: Arc<dyn PeerLink> = Arc::new(HttpLink::new(http_client(), SECRET));
        let replica = Arc::new(
            Replica::start(ReplicaConfig::new(id, &url, &node_dir), link)
                .await
                .expect("replica starts"),
        );
        let stop = CancellationToken::new();
        let app = dccore::api::raft::router(replica.clone(), SECRET);
        tokio::spawn(dccore::tls::serve(listener, None, app, stop.clone()));
        members.insert(id, url);
        nodes.push(Node { replica, stop });
    }
    nodes[0]
        .replica
        .initialize(members)
        .await
        .expect("initialise");
    nodes
}

/// The leader's index, once one is elected (bounded wait).
async fn leader(nodes: &[Node]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(i) = nodes
            .iter()
            .position(|n| n.replica.leadership().borrow().is_leader)
        {
            return i;
        }
        assert!(Instant::now() < deadline, "no leader within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn batch(size: usize, seq: u64) -> Vec<Command> {
    (0..size)
        .map(|i| {
            Command::Kv(KvOp::Put {
                ns: "bench".into(),
                key: format!("k{seq}-{i}"),
                value: vec![b'x'; VALUE_BYTES],
            })
        })
        .collect()
}

/// One proposal longer than this: the group is stalled (reported, the case stops).
const STALL: Duration = Duration::from_secs(20);

/// Proposes batches of `size` with `in_flight` proposers for `secs`: (entries, bytes, elapsed),
/// or `None` if a proposal stalled.
async fn run_case(
    leader: &Arc<Replica>,
    size: usize,
    in_flight: usize,
    secs: Duration,
) -> Option<(u64, u64, Duration)> {
    let bytes_per_entry = serde_json::to_vec(&batch(size, 0)).expect("json").len() as u64;
    let t0 = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..in_flight {
        let leader = leader.clone();
        workers.spawn(async move {
            let mut done = 0u64;
            let mut seq = w as u64 * 1_000_000_000;
            while t0.elapsed() < secs {
                seq += 1;
                match tokio::time::timeout(STALL, leader.propose(batch(size, seq))).await {
                    Ok(r) => {
                        r.expect("committed");
                    }
                    Err(_) => return None,
                }
                done += 1;
            }
            Some(done)
        });
    }
    let mut entries = 0;
    let mut stalled = false;
    while let Some(r) = workers.join_next().await {
        match r.expect("proposer") {
            Some(n) => entries += n,
            None => stalled = true,
        }
    }
    (!stalled).then(|| (entries, entries * bytes_per_entry, t0.elapsed()))
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let secs = Duration::from_secs(if quick { 2 } else { 5 });
    dccore::tls::install_default_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tmp");
        let nodes = start(3, dir.path()).await;
        let l = leader(&nodes).await;
        let leader = nodes[l].replica.clone();
        println!("machine: {}", common::describe());
        println!(
            "3 replicas on 127.0.0.1, redb in {}, {} s per case",
            dir.path().display(),
            secs.as_secs()
        );
        println!(
            "{:>8} {:>9} {:>10} {:>12} {:>10}",
            "commands", "in flight", "entries/s", "commands/s", "KiB/s"
        );
        for size in [1usize, 10, 100] {
            for in_flight in [1usize, 32] {
                let Some((entries, bytes, took)) = run_case(&leader, size, in_flight, secs).await
                else {
                    println!(
                        "{size:>8} {in_flight:>9}   stalled: a proposal not committed within {} s",
                        STALL.as_secs()
                    );
                    return;
                };
                let s = took.as_secs_f64();
                println!(
                    "{size:>8} {in_flight:>9} {:>10.0} {:>12.0} {:>10.0}",
                    entries as f64 / s,
                    (entries * size as u64) as f64 / s,
                    bytes as f64 / 1024.0 / s
                );
            }
        }
        drop(leader);
        for n in nodes {
            n.stop.cancel();
        }
    });
    // A stalled case leaves proposals and store writes behind: do not wait for them forever.
    rt.shutdown_timeout(Duration::from_secs(5));
}
