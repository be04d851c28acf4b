//! DNS forwarding (`dns_upstreams`) against a real master on 127.0.0.1: names of the cluster
//! domain are answered by the master itself; every other name is relayed to an upstream resolver
//! (here a small DNS responder of the test's own on 127.0.0.1, so nothing leaves the machine),
//! whose answer comes back as it was (records and code); an upstream that does not answer gives
//! SERVFAIL, not a hang.

mod support;

use hickory_server::proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::A;
use hickory_server::proto::rr::{RData, Record, RecordType};
use std::net::{Ipv4Addr, SocketAddr};
use support::dns::*;
use support::*;
use tokio::net::UdpSocket;

/// The upstream's one name and its address.
const OUTSIDE: &str = "outside.example.";
const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

/// A DNS responder over UDP: `OUTSIDE` answers `OUTSIDE_IP`, every other name NXDOMAIN. It
/// counts the queries it got, so the test can show which names reached it.
async fn upstream() -> (
    SocketAddr,
    tokio::task::JoinHandle<()>,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind upstream");
    let addr = sock.local_addr().expect("upstream addr");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let Some(query) = q.queries().first().cloned() else {
                continue;
            };
            log.lock()
                .expect("the log lock")
                .push(query.name().to_string());
            let mut a = Message::new();
            a.set_id(q.id())
                .set_message_type(MessageType::Response)
                .set_op_code(OpCode::Query)
                .set_recursion_desired(q.recursion_desired())
                .set_recursion_available(true);
            a.add_query(query.clone());
            if query.name().to_string().eq_ignore_ascii_case(OUTSIDE) {
                a.add_answer(Record::from_rdata(
                    query.name().clone(),
                    60,
                    RData::A(A(OUTSIDE_IP)),
                ));
            } else {
                a.set_response_code(ResponseCode::NXDomain);
            }
            let bytes = a.to_vec().expect("encode the upstream answer");
            let _ = sock.send_to(&bytes, from).await;
        }
    });
    (addr, task, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_outside_the_domain_are_relayed_to_the_upstream_and_cluster_names_are_not() {
    let (up, up_task, seen) = upstream().await;
    let mdir = tempfile::tempdir().expect("tempdir");
    let mut cfg = fast_master_config(mdir.path());
    cfg.discovery.dns_listen = Some("127.0.0.1:0".parse().expect("addr"));
    cfg.discovery.upstreams = vec![up];
    let _m = Master::start_on(mdir.path(), "127.0.0.1:0", cfg).await;
    let dns = dns_address(mdir.path()).await;

    let out = udp(dns, OUTSIDE, RecordType::A).await;
    assert_eq!(out.response_code(), ResponseCode::NoError, "{out:?}");
    assert_eq!(a_records(&out), vec![OUTSIDE_IP.to_string()]);
    assert!(out.recursion_available(), "a relayed answer says so");

    let nx = udp(dns, "missing.example.", RecordType::A).await;
    assert_eq!(nx.response_code(), ResponseCode::NXDomain, "{nx:?}");

    let leader = udp(dns, "leader.dccore.", RecordType::A).await;
    assert_eq!(a_records(&leader), vec!["127.0.0.1".to_string()]);
    assert!(leader.authoritative());

    let asked = seen.lock().expect("the log lock").clone();
    assert_eq!(
        asked,
        vec![OUTSIDE.to_string(), "missing.example.".to_string()],
        "only names outside the domain reach the upstream"
    );
    up_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_does_not_answer_gives_servfail() {
    // Bound and silent: queries are received by nobody.
    let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let mdir = tempfile::tempdir().expect("tempdir");
    let mut cfg = fast_master_config(mdir.path());
    cfg.discovery.dns_listen = Some("127.0.0.1:0".parse().expect("addr"));
    cfg.discovery.upstreams = vec![silent.local_addr().expect("addr")];
    let _m = Master::start_on(mdir.path(), "127.0.0.1:0", cfg).await;
    let dns = dns_address(mdir.path()).await;
    let a = udp(dns, OUTSIDE, RecordType::A).await;
    assert_eq!(a.response_code(), ResponseCode::ServFail, "{a:?}");
}

#[test]
fn the_config_file_key_dns_upstreams_is_read_and_a_bad_entry_names_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("master.json");
    std::fs::write(&path, r#"{"dns_upstreams": ["10.0.0.2", "10.0.0.3:5353"]}"#).expect("write");
    let cfg = dccore::master::MasterConfig::new(dir.path())
        .apply_file(&path)
        .expect("valid config");
    assert_eq!(
        cfg.discovery.upstreams,
        vec![
            "10.0.0.2:53".parse::<SocketAddr>().expect("addr"),
            "10.0.0.3:5353".parse().expect("addr")
        ]
    );
    std::fs::write(&path, r#"{"dns_upstreams": ["resolver.example"]}"#).expect("write");
    let e = dccore::master::MasterConfig::new(dir.path())
        .apply_file(&path)
        .expect_err("a name is not an address");
    let chain = dc_support::error::chain(&e);
    assert!(chain.contains("dns_upstreams"), "{chain}");
}
