//! **DNS answer change after a task starts** (and after it is killed): an in-process master with
//! its DNS server on 127.0.0.1, one real agent running real `sleep` tasks, one framework on the
//! v1 scheduler HTTP API. For each task, a poller sends a UDP `A` query for the task's name every
//! millisecond from the launch on; the figure is the time from the agent's `TASK_RUNNING`
//! status (its `timestamp`, taken by the agent when it saw the process start; same host, same
//! clock) to the first answer that holds the record. Then the task is killed and the same is
//! measured from the framework's `KILL` call to the first NXDOMAIN (the record goes when the
//! master records the task leaving `TASK_RUNNING`, which may be its `TASK_KILLING`). Printed as median / p90 /
//! max over the tasks. Anchor: Mesos-DNS refreshes from the master every 60 s (`refreshSeconds`),
//! so its answer changes up to 60 s after the task does.
//!
//! ```text
//! cargo bench --workspace --bench discovery                 # 20 tasks
//! cargo bench --workspace --bench discovery -- --tasks 50
//! ```

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use hickory_server::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RecordType};
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::*;

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Polls `name` every millisecond until `done(answer)`; returns the wall-clock time of the
/// answer that satisfied it. Bounded: gives up after [`WAIT`].
async fn poll_until(dns: SocketAddr, name: String, done: impl Fn(&Message) -> bool) -> f64 {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind a UDP socket");
    let mut q = Message::new();
    q.set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query);
    q.add_query(Query::query(
        Name::from_ascii(&name).expect("a query name"),
        RecordType::A,
    ));
    let bytes = q.to_vec().expect("encode");
    within(&format!("DNS for {name}"), async {
        let mut buf = vec![0u8; 4096];
        loop {
            sock.send_to(&bytes, dns).await.expect("send");
            // A lost datagram is asked again at the next tick.
            if let Ok(Ok((n, _))) =
                tokio::time::timeout(Duration::from_millis(50), sock.recv_from(&mut buf)).await
            {
                let seen = now_secs();
                if Message::from_vec(&buf[..n]).is_ok_and(|m| done(&m)) {
                    return seen;
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
}

fn stats(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize] * 1000.0;
    format!(
        "median {:.1} ms, p90 {:.1} ms, max {:.1} ms (n = {})",
        at(0.5),
        at(0.9),
        at(1.0),
        v.len()
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut tasks = 20usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bench" => {}
            "--tasks" => {
                tasks = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--tasks N: a number")
            }
            other => panic!("unknown argument {other:?}; usage: discovery [--tasks N]"),
        }
    }
    println!("machine: {}", common::describe());
    let mdir = tempfile::tempdir().expect("tempdir");
    let adir = tempfile::tempdir().expect("tempdir");
    let mut cfg = fast_master_config(mdir.path());
    cfg.discovery.dns_listen = Some("127.0.0.1:0".parse().expect("addr"));
    let m = Master::start_on(mdir.path(), "127.0.0.1:0", cfg).await;
    let path = mdir.path().join(dccore::discovery::dns::ADDRESS_FILE);
    let dns: SocketAddr = eventually("the DNS address file", || async {
        std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    })
    .await;
    let agent = Agent::start(
        &m.url,
        adir.path(),
        "cpus:8;mem:8192;disk:1000;ports:[31000-31100]",
        false,
    )
    .await;
    m.wait_agents(1).await;
    let mut fw = Framework::subscribe(&m.url, framework_info("bench")).await;
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for i in 0..tasks {
        let id = format!("t{i}");
        let fqdn = format!("web{i}.bench.dccore.");
        let offers = fw.offers().await;
        let seen_up = tokio::spawn(poll_until(dns, fqdn.clone(), |m| !m.answers().is_empty()));
        let mut t = task(&offers[0], &id, "sleep 600");
        t["name"] = json!(format!("web{i}"));
        fw.launch(&offers[0], vec![t]).await;
        let running = fw.wait_state(&id, "TASK_RUNNING").await;
        let seen = within("the poller", seen_up).await.expect("poller");
        up.push(seen - running["timestamp"].as_f64().expect("a timestamp"));

        let seen_down = tokio::spawn(poll_until(dns, fqdn, |m| {
            m.response_code() == ResponseCode::NXDomain
        }));
        let kill_sent = now_secs();
        let code = fw
            .call(json!({"type": "KILL", "kill": {"task_id": {"value": id}}}))
            .await;
        assert_eq!(code, 202, "KILL answered {code}");
        fw.wait_state(&id, "TASK_KILLED").await;
        let seen = within("the poller", seen_down).await.expect("poller");
        down.push(seen - kill_sent);
    }
    println!("DNS answer after TASK_RUNNING: {}", stats(up));
    println!("DNS answer after the KILL call: {}", stats(down));
    println!("anchor: Mesos-DNS refreshSeconds = 60 (up to 60 s)");
    drop(fw);
    agent.stop().await;
    m.stop().await;
}
