//! Forwarding of names outside the cluster domain to the node's own resolvers (`dns_upstreams`),
//! so a node whose `/etc/resolv.conf` points at the masters still resolves everything else.
//!
//! A small relay, not a recursive resolver: the question is re-asked of each upstream in turn
//! (UDP, then TCP when the UDP answer is truncated), each under [`UPSTREAM_TIMEOUT`]; the first
//! answer is relayed as it came (code, answer, authority and additional sections). Only the
//! configured upstreams are ever asked, and an answer is taken only from the address asked and
//! with the id sent, so a stray datagram cannot poison it. No upstream answering: SERVFAIL.

use hickory_server::proto::op::{Message, MessageType, OpCode, Query};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long one upstream gets to answer (per transport). Short: the node's resolver
/// (`options timeout:1` as dcform writes it) asks again on its own.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_millis(1500);

/// The DNS port an upstream without a port is asked on.
const DNS_PORT: u16 = 53;

/// A bad `dns_upstreams` entry or `dns_upstreams_file`.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// An entry is not an address.
    #[error(
        "dns_upstreams entry {value:?} is not an address IP or IP:PORT (e.g. 192.168.1.1, 10.0.0.2:53 or [fd00::1]:53)"
    )]
    Entry {
        /// What was given.
        value: String,
    },
    /// The resolv.conf file could not be read.
    #[error("dns_upstreams_file {path}: cannot read it (a resolv.conf with `nameserver IP` lines)")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A `nameserver` line of the file is not an address.
    #[error("dns_upstreams_file {path}:{line}: nameserver {value:?} is not an IP address")]
    Line {
        /// The file.
        path: std::path::PathBuf,
        /// 1-based line number.
        line: usize,
        /// What was given.
        value: String,
    },
}

/// The `nameserver` addresses of a resolv.conf (the node's original, saved by dcform's install
/// before it pointed the node at the masters), port 53 each. Other lines are ignored.
pub fn read_resolv_conf(path: &std::path::Path) -> Result<Vec<SocketAddr>, UpstreamError> {
    let text = std::fs::read_to_string(path).map_err(|source| UpstreamError::File {
        path: path.into(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let mut words = l.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let value = words.next().unwrap_or("");
        // A link-local IPv6 address may carry a zone (`fe80::1%eth0`), which a SocketAddr
        // cannot: such a line is refused like any other non-address.
        let ip: IpAddr = value.parse().map_err(|_| UpstreamError::Line {
            path: path.into(),
            line: i + 1,
            value: value.to_string(),
        })?;
        out.push(SocketAddr::new(ip, DNS_PORT));
    }
    Ok(out)
}

/// Parses `dns_upstreams`: each `IP` (port 53) or `IP:PORT` (`[IPv6]:PORT`).
pub fn parse_upstreams(values: &[String]) -> Result<Vec<SocketAddr>, UpstreamError> {
    values
        .iter()
        .map(|v| {
            let t = v.trim();
            t.parse::<SocketAddr>()
                .or_else(|_| t.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, DNS_PORT)))
                .map_err(|_| UpstreamError::Entry {
                    value: v.to_string(),
                })
        })
        .collect()
}

/// Why one upstream gave no answer (logged at debug; the client gets SERVFAIL).
#[derive(Debug, thiserror::Error)]
enum AskError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("socket error")]
    Io(#[from] std::io::Error),
    #[error("cannot encode or decode the message")]
    Proto(#[from] hickory_server::proto::ProtoError),
}

/// The upstream resolvers, asked in order.
#[derive(Clone, Debug, Default)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
}

impl Forwarder {
    /// Over these upstreams; none: nothing is forwarded (REFUSED, as before).
    pub fn new(upstreams: Vec<SocketAddr>) -> Self {
        Forwarder { upstreams }
    }

    /// Whether there is anyone to forward to.
    pub fn enabled(&self) -> bool {
        !self.upstreams.is_empty()
    }

    /// The first upstream's answer to `query`, or `None` if none answered.
    pub async fn ask(&self, query: &Query) -> Option<Message> {
        for &up in &self.upstreams {
            match ask_one(up, query).await {
                Ok(m) => return Some(m),
                Err(e) => {
                    tracing::debug!(upstream = %up, error = %dc_support::error::chain(&e), "DNS upstream gave no answer")
                }
            }
        }
        None
    }
}

fn request(query: &Query) -> (u16, Message) {
    // The id only has to be unpredictable enough that a blind reply does not match it.
    let id = (uuid::Uuid::new_v4().as_u128() & 0xffff) as u16;
    let mut m = Message::new();
    m.set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true);
    m.add_query(query.clone());
    (id, m)
}

async fn ask_one(up: SocketAddr, query: &Query) -> Result<Message, AskError> {
    let (id, m) = request(query);
    let bytes = m.to_vec()?;
    let local = match up.ip() {
        IpAddr::V4(_) => SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0),
        IpAddr::V6(_) => SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0),
    };
    let sock = UdpSocket::bind(local).await?;
    // Connected: the kernel drops datagrams from any other address.
    sock.connect(up).await?;
    sock.send(&bytes).await?;
    let udp_answer = tokio::time::timeout(UPSTREAM_TIMEOUT, async {
        let mut buf = vec![0u8; 4096];
        loop {
            let n = sock.recv(&mut buf).await?;
            match Message::from_vec(&buf[..n]) {
                Ok(a) if a.id() == id && a.message_type() == MessageType::Response => {
                    return Ok::<_, AskError>(a);
                }
                // Not our answer (stale or forged): keep waiting until the deadline.
                _ => continue,
            }
        }
    })
    .await
    .map_err(|_| AskError::Timeout(UPSTREAM_TIMEOUT))??;
    if !udp_answer.truncated() {
        return Ok(udp_answer);
    }
    tokio::time::timeout(UPSTREAM_TIMEOUT, ask_tcp(up, id, &bytes))
        .await
        .map_err(|_| AskError::Timeout(UPSTREAM_TIMEOUT))?
}

/// One query over TCP (two-byte length prefix, RFC 1035 4.2.2).
async fn ask_tcp(up: SocketAddr, id: u16, bytes: &[u8]) -> Result<Message, AskError> {
    let mut s = TcpStream::connect(up).await?;
    let len = u16::try_from(bytes.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "query over 64 KiB"))?;
    s.write_all(&len.to_be_bytes()).await?;
    s.write_all(bytes).await?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await?;
    let a = Message::from_vec(&buf)?;
    if a.id() != id {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the answer's id is not the query's",
        )
        .into());
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_take_an_ip_with_or_without_a_port_and_name_the_field_otherwise() {
        let ups = parse_upstreams(&["10.0.0.2".into(), "10.0.0.3:5353".into(), "[::1]:53".into()])
            .expect("valid");
        assert_eq!(
            ups,
            vec![
                "10.0.0.2:53".parse().expect("addr"),
                "10.0.0.3:5353".parse().expect("addr"),
                "[::1]:53".parse().expect("addr"),
            ]
        );
        let e = parse_upstreams(&["dns.example.com".into()]).expect_err("a name");
        assert!(e.to_string().contains("dns_upstreams"), "{e}");
    }

    #[test]
    fn a_resolv_conf_gives_its_nameservers_and_a_bad_one_names_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("resolv.conf.orig");
        std::fs::write(
            &p,
            "# comment\nsearch example\nnameserver 127.0.0.11\nnameserver ::1\noptions ndots:0\n",
        )
        .expect("write");
        assert_eq!(
            read_resolv_conf(&p).expect("valid"),
            vec![
                "127.0.0.11:53".parse().expect("addr"),
                "[::1]:53".parse().expect("addr")
            ]
        );
        std::fs::write(&p, "nameserver 10.0.0.1\nnameserver dns.example\n").expect("write");
        let e = read_resolv_conf(&p).expect_err("a name").to_string();
        assert!(e.contains("dns_upstreams_file") && e.contains(":2:"), "{e}");
        let e = read_resolv_conf(&dir.path().join("none")).expect_err("missing");
        assert!(e.to_string().contains("dns_upstreams_file"), "{e}");
    }

    #[tokio::test]
    async fn a_silent_upstream_gives_no_answer_within_the_deadline() {
        // A bound socket that never answers.
        let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let f = Forwarder::new(vec![silent.local_addr().expect("addr")]);
        let q = Query::query(
            hickory_server::proto::rr::Name::from_ascii("example.com.").expect("name"),
            hickory_server::proto::rr::RecordType::A,
        );
        let got = tokio::time::timeout(UPSTREAM_TIMEOUT * 4, f.ask(&q))
            .await
            .expect("ask ends by its own deadline");
        assert!(got.is_none());
    }
}
