//! A DNS client for the discovery tests: real queries over UDP and TCP to a master's DNS server,
//! messages encoded with hickory's protocol crate.

use super::{eventually, within};
use hickory_server::proto::op::{Message, MessageType, OpCode, Query};
use hickory_server::proto::rr::{Name, RData, RecordType};
use std::net::SocketAddr;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The DNS server's address, from `WORK_DIR/dns_address`.
pub async fn dns_address(dir: &Path) -> SocketAddr {
    let path = dir.join(dccore::discovery::dns::ADDRESS_FILE);
    eventually("the DNS address file", || async {
        std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    })
    .await
}

/// A query with a random id, and that id.
fn query(name: &str, rtype: RecordType) -> (u16, Vec<u8>) {
    let id = (uuid::Uuid::new_v4().as_u128() & 0xffff) as u16;
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true);
    m.add_query(Query::query(
        Name::from_ascii(name).expect("a valid query name"),
        rtype,
    ));
    (id, m.to_vec().expect("encode the query"))
}

/// One query over UDP; the answer must carry the query's id.
pub async fn udp(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind a UDP socket");
    let (id, q) = query(name, rtype);
    let a = within("a UDP DNS answer", async {
        sock.send_to(&q, server).await.expect("send the query");
        let mut buf = vec![0u8; 4096];
        let (n, _) = sock.recv_from(&mut buf).await.expect("receive the answer");
        Message::from_vec(&buf[..n]).expect("decode the answer")
    })
    .await;
    assert_eq!(a.id(), id, "the answer carries the query's id");
    a
}

/// One query over TCP (two-byte length prefix, RFC 1035 4.2.2).
pub async fn tcp(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let (id, q) = query(name, rtype);
    let a = within("a TCP DNS answer", async {
        let mut s = tokio::net::TcpStream::connect(server)
            .await
            .expect("connect over TCP");
        s.write_all(&(q.len() as u16).to_be_bytes())
            .await
            .expect("send the length");
        s.write_all(&q).await.expect("send the query");
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.expect("read the length");
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).await.expect("read the answer");
        Message::from_vec(&buf).expect("decode the answer")
    })
    .await;
    assert_eq!(a.id(), id, "the answer carries the query's id");
    a
}

/// The addresses of the answer's `A` records.
pub fn a_records(m: &Message) -> Vec<String> {
    m.answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

/// The (port, target) of the answer's `SRV` records.
pub fn srv_records(m: &Message) -> Vec<(u16, String)> {
    m.answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::SRV(s) => Some((s.port(), s.target().to_string())),
            _ => None,
        })
        .collect()
}
