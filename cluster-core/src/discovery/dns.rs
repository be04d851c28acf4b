//! The DNS server: hickory-server's UDP and TCP transports, our own [`RequestHandler`] that
//! answers from the newest [`Records`] of a [`Directory`].
//!
//! * Authoritative (`AA`) for the domain: a known name answers its records; a name with names
//!   below it but no data of its own, or a known name without data of the asked type, answers
//!   NOERROR with no answer (NODATA); any other name under the domain answers NXDOMAIN. Both
//!   carry the zone's SOA in the authority section, so resolvers cache the negative answer for
//!   the SOA minimum (= the TTL).
//! * The apex answers `SOA` and `NS` (`ns1.<domain>`, whose `A` records are the masters).
//! * Other zones: relayed to the `dns_upstreams` ([`super::forward`]) when there are any
//!   (SERVFAIL if none answers), else REFUSED.
//! * `SRV` answers carry their targets' addresses in the additional section.
//! * Over UDP an answer that would not fit (512 bytes, or the client's EDNS size) is sent with
//!   the TC bit and no records, so the client asks again over TCP.
//! * Only queries are answered (NOTIMP for updates, notifies, ...); FORMERR for a message that
//!   does not hold exactly one question.

use super::forward::Forwarder;
use super::{Directory, RecordData, Records};
use hickory_server::ServerFuture;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::proto::op::{Edns, Header, MessageType, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA, NS, SOA, SRV};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::proto::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

/// The file in the master's work dir holding the DNS server's `IP:PORT` (written once bound).
pub const ADDRESS_FILE: &str = "dns_address";

/// A TCP connection that sends no query for this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Why the DNS server could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// A socket could not be bound.
    #[error("cannot listen for DNS on {addr} ({proto})")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// `udp` or `tcp`.
        proto: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The address file could not be written.
    #[error("cannot write the DNS address file {path}")]
    AddressFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A bound DNS server, not yet serving.
pub struct DnsServer {
    addr: SocketAddr,
    udp: UdpSocket,
    tcp: TcpListener,
    forward: Forwarder,
}

impl DnsServer {
    /// Binds UDP and TCP on `listen` (port 0: one free port for both) and writes
    /// `WORK_DIR/dns_address`.
    pub async fn bind(listen: SocketAddr, work_dir: &Path) -> Result<DnsServer, DnsError> {
        let (udp, tcp) = bind_pair(listen).await?;
        let addr = udp.local_addr().map_err(|source| DnsError::Bind {
            addr: listen,
            proto: "udp",
            source,
        })?;
        let path = work_dir.join(ADDRESS_FILE);
        crate::atomic_file::write(&path, format!("{addr}\n").as_bytes())
            .map_err(|source| DnsError::AddressFile { path, source })?;
        tracing::info!(%addr, "DNS server listening (UDP and TCP)");
        Ok(DnsServer {
            addr,
            udp,
            tcp,
            forward: Forwarder::default(),
        })
    }

    /// Names outside the domain are relayed to these resolvers (none: REFUSED). This server's
    /// own address is left out: relaying to itself would loop until every query timed out.
    pub fn with_upstreams(mut self, mut upstreams: Vec<SocketAddr>) -> DnsServer {
        let own = self.addr;
        upstreams.retain(|u| {
            let same = *u == own;
            if same {
                tracing::warn!(upstream = %u, "a DNS upstream is this server itself: left out");
            }
            !same
        });
        // Order is the user's preference: keep the first of each, wherever the repeats are.
        let mut seen = std::collections::HashSet::new();
        upstreams.retain(|u| seen.insert(*u));
        self.forward = Forwarder::new(upstreams);
        self
    }

    /// The bound address (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers from `dir` until `shutdown` is cancelled, then waits for the transports to stop.
    pub async fn run(self, dir: Directory, shutdown: CancellationToken) {
        let mut server = ServerFuture::new(Handler {
            dir,
            forward: self.forward,
        });
        server.register_socket(self.udp);
        server.register_listener(self.tcp, TCP_IDLE);
        shutdown.cancelled().await;
        if let Err(e) = server.shutdown_gracefully().await {
            tracing::warn!(error = %e, "DNS server stopped with an error");
        }
    }
}

/// UDP and TCP on the same port. With port 0 the kernel picks the UDP port; TCP may find it
/// taken by another program, so a few ports are tried.
async fn bind_pair(listen: SocketAddr) -> Result<(UdpSocket, TcpListener), DnsError> {
    let attempts = if listen.port() == 0 { 10 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(listen)
            .await
            .map_err(|source| DnsError::Bind {
                addr: listen,
                proto: "udp",
                source,
            })?;
        let port = udp
            .local_addr()
            .map_err(|source| DnsError::Bind {
                addr: listen,
                proto: "udp",
                source,
            })?
            .port();
        let at = SocketAddr::new(listen.ip(), port);
        match TcpListener::bind(at).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(source) => {
                last = Some(DnsError::Bind {
                    addr: at,
                    proto: "tcp",
                    source,
                })
            }
        }
    }
    Err(last.expect("invariant: at least one attempt was made"))
}

/// Answers queries from the directory's newest records.
struct Handler {
    dir: Directory,
    forward: Forwarder,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(req_edns) = request.edns() {
            let mut e = Edns::new();
            e.set_max_payload(req_edns.max_payload().max(512));
            e.set_version(0);
            builder.edns(e);
        }
        let fail = |code: ResponseCode| {
            let mut h = Header::response_from_request(request.header());
            h.set_response_code(code);
            h
        };
        if request.message_type() != MessageType::Query || request.op_code() != OpCode::Query {
            let h = fail(ResponseCode::NotImp);
            return send(&mut response, builder.build_no_records(h), h).await;
        }
        let Ok(info) = request.request_info() else {
            let h = fail(ResponseCode::FormErr);
            return send(&mut response, builder.build_no_records(h), h).await;
        };
        let qname = info.query.name().to_string();
        let qname = qname.trim_end_matches('.').to_ascii_lowercase();
        let (serial, records) = self.dir.records();
        let answer = answer(
            &records,
            serial,
            self.dir.ttl(),
            &qname,
            info.query.query_type(),
        );
        let Some(mut answer) = answer else {
            if !self.forward.enabled() {
                let h = fail(ResponseCode::Refused);
                return send(&mut response, builder.build_no_records(h), h).await;
            }
            return self.relay(request, info.query.original(), response).await;
        };
        let mut h = Header::response_from_request(request.header());
        h.set_authoritative(true);
        h.set_recursion_available(false);
        h.set_response_code(answer.code);
        if request.protocol() == Protocol::Udp {
            let limit = request.max_payload() as usize;
            if answer.size(qname.len()) > limit {
                answer.additionals.clear();
            }
            if answer.size(qname.len()) > limit {
                // Better no answer and TC (the client retries over TCP) than a cut one.
                h.set_truncated(true);
                answer.answers.clear();
                answer.authority.clear();
            }
        }
        let msg = builder.build(
            h,
            answer.answers.iter(),
            std::iter::empty(),
            answer.authority.iter(),
            answer.additionals.iter(),
        );
        send(&mut response, msg, h).await
    }
}

impl Handler {
    /// A question outside the zone, relayed to the upstreams; their answer goes back as it
    /// came (same code and sections), SERVFAIL if none answered.
    async fn relay<R: ResponseHandler>(
        &self,
        request: &Request,
        query: &hickory_server::proto::op::Query,
        mut response: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let mut h = Header::response_from_request(request.header());
        h.set_recursion_available(true);
        let Some(up) = self.forward.ask(query).await else {
            h.set_response_code(ResponseCode::ServFail);
            return send(&mut response, builder.build_no_records(h), h).await;
        };
        h.set_response_code(up.response_code());
        h.set_authoritative(up.authoritative());
        h.set_truncated(up.truncated());
        let msg = builder.build(
            h,
            up.answers().iter(),
            std::iter::empty(),
            up.name_servers().iter(),
            up.additionals().iter(),
        );
        send(&mut response, msg, h).await
    }
}

async fn send<'a, R: ResponseHandler>(
    response: &mut R,
    msg: hickory_server::authority::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    header: Header,
) -> ResponseInfo {
    match response.send_response(msg).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!(error = %e, "cannot send a DNS answer");
            let mut h = header;
            h.set_response_code(ResponseCode::ServFail);
            h.into()
        }
    }
}

/// An answer to one question: code and sections.
#[derive(Debug, Default)]
pub struct Answer {
    /// NOERROR or NXDOMAIN.
    pub code: ResponseCode,
    /// The answer section.
    pub answers: Vec<Record>,
    /// The authority section (the SOA of a negative answer).
    pub authority: Vec<Record>,
    /// The additional section (SRV targets' addresses).
    pub additionals: Vec<Record>,
}

impl Answer {
    /// An upper bound of the encoded size (no name compression counted).
    fn size(&self, qname_len: usize) -> usize {
        let rec = |r: &Record| {
            let rdata = match r.data() {
                RData::A(_) => 4,
                RData::AAAA(_) => 16,
                RData::SRV(s) => 6 + s.target().len() + 2,
                RData::NS(n) => n.0.len() + 2,
                RData::SOA(s) => s.mname().len() + s.rname().len() + 4 + 20,
                _ => 512,
            };
            r.name().len() + 2 + 10 + rdata
        };
        // Header, the question (name, type, class), the EDNS OPT record.
        12 + qname_len
            + 2
            + 4
            + 11
            + self
                .answers
                .iter()
                .chain(&self.authority)
                .chain(&self.additionals)
                .map(rec)
                .sum::<usize>()
    }
}

fn fqdn(name: &str) -> Option<Name> {
    Name::from_ascii(format!("{name}.")).ok()
}

/// The answer to `qname` (lowercase, no final dot) and `qtype`; `None` for a name outside the
/// zone (REFUSED). Pure: the DNS handler and the tests call it alike.
pub fn answer(
    records: &Records,
    serial: u64,
    ttl: u32,
    qname: &str,
    qtype: RecordType,
) -> Option<Answer> {
    if !records.in_zone(qname) {
        return None;
    }
    let name = fqdn(qname)?;
    let domain = &records.domain;
    let ns1 = format!("ns1.{domain}");
    let soa = || {
        let mname = fqdn(&ns1)?;
        let rname = fqdn(&format!("root.{ns1}"))?;
        // The serial counts snapshots; it wraps (RFC 1982 serial arithmetic allows it).
        let rdata = SOA::new(mname, rname, serial as u32, 60, 60, 86_400, ttl);
        Some(Record::from_rdata(fqdn(domain)?, ttl, RData::SOA(rdata)))
    };
    let mut a = Answer::default();
    if qname == domain {
        if matches!(qtype, RecordType::SOA | RecordType::ANY) {
            a.answers.extend(soa());
        }
        if matches!(qtype, RecordType::NS | RecordType::ANY) {
            if let Some(target) = fqdn(&ns1) {
                a.answers
                    .push(Record::from_rdata(name.clone(), ttl, RData::NS(NS(target))));
            }
            if let Some(d) = records.get(&ns1) {
                a.additionals
                    .extend(addr_records(&ns1, d, ttl, RecordType::ANY));
            }
        }
        if a.answers.is_empty() {
            a.authority.extend(soa());
        }
        return Some(a);
    }
    match records.get(qname) {
        Some(d) => {
            a.answers.extend(addr_records(qname, d, ttl, qtype));
            if matches!(qtype, RecordType::SRV | RecordType::ANY) {
                for (port, target) in &d.srv {
                    let Some(t) = fqdn(target) else { continue };
                    let srv = SRV::new(0, 0, *port, t);
                    a.answers
                        .push(Record::from_rdata(name.clone(), ttl, RData::SRV(srv)));
                }
                let targets: std::collections::BTreeSet<&String> =
                    d.srv.iter().map(|(_, t)| t).collect();
                for t in targets {
                    if let Some(td) = records.get(t) {
                        a.additionals
                            .extend(addr_records(t, td, ttl, RecordType::ANY));
                    }
                }
            }
        }
        None if records.is_parent(qname) => {}
        None => a.code = ResponseCode::NXDomain,
    }
    if a.answers.is_empty() {
        a.authority.extend(soa());
    }
    Some(a)
}

/// The `A` and `AAAA` records of a name, as `qtype` asks (`ANY`: both).
fn addr_records(name: &str, d: &RecordData, ttl: u32, qtype: RecordType) -> Vec<Record> {
    let Some(n) = fqdn(name) else {
        return Vec::new();
    };
    d.addrs
        .iter()
        .filter_map(|ip| match (ip, qtype) {
            (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => Some(RData::A(A(*v4))),
            (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => Some(RData::AAAA(AAAA(*v6))),
            _ => None,
        })
        .map(|rd| Record::from_rdata(n.clone(), ttl, rd))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::records::{Masters, TaskEntry};
    use super::*;

    fn records() -> Records {
        let t = TaskEntry {
            framework_id: "f",
            framework_name: "marathon",
            framework_principal: None,
            task_id: "t1",
            name: "web.prod",
            user: "nobody",
            running: true,
            healthy: None,
            agent_id: "a1",
            agent_hostname: "h",
            agent_ip: Some("10.0.1.5".parse().expect("ip")),
            ports: vec![31001],
        };
        let m = Masters {
            leader: Some("10.0.0.1".parse().expect("ip")),
            all: vec!["10.0.0.1".parse().expect("ip")],
        };
        Records::build("dccore", &m, [t])
    }

    #[test]
    fn a_known_name_answers_its_address_and_srv_carries_the_target_address() {
        let r = records();
        let a = answer(&r, 1, 5, "web.prod.marathon.dccore", RecordType::A).expect("in zone");
        assert_eq!(a.code, ResponseCode::NoError);
        assert_eq!(a.answers.len(), 1);
        assert_eq!(a.answers[0].ttl(), 5);
        let s =
            answer(&r, 1, 5, "_web.prod._tcp.marathon.dccore", RecordType::SRV).expect("in zone");
        let RData::SRV(srv) = s.answers[0].data() else {
            panic!("not an SRV: {:?}", s.answers[0]);
        };
        assert_eq!(srv.port(), 31001);
        assert_eq!(srv.target().to_string(), "a1.slave.dccore.");
        assert_eq!(s.additionals.len(), 1, "{:?}", s.additionals);
    }

    #[test]
    fn unknown_names_are_nxdomain_parents_are_nodata_other_zones_refused() {
        let r = records();
        let nx = answer(&r, 1, 5, "nope.marathon.dccore", RecordType::A).expect("in zone");
        assert_eq!(nx.code, ResponseCode::NXDomain);
        assert_eq!(nx.authority.len(), 1, "negative answers carry the SOA");
        let nodata = answer(&r, 1, 5, "marathon.dccore", RecordType::A).expect("in zone");
        assert_eq!(nodata.code, ResponseCode::NoError);
        assert!(nodata.answers.is_empty());
        let wrong_type =
            answer(&r, 1, 5, "web.prod.marathon.dccore", RecordType::AAAA).expect("in zone");
        assert_eq!(wrong_type.code, ResponseCode::NoError);
        assert!(wrong_type.answers.is_empty());
        assert!(answer(&r, 1, 5, "example.com", RecordType::A).is_none());
    }

    #[test]
    fn the_apex_answers_soa_and_ns_and_ns1_is_a_master() {
        let r = records();
        let soa = answer(&r, 7, 5, "dccore", RecordType::SOA).expect("in zone");
        let RData::SOA(s) = soa.answers[0].data() else {
            panic!("not a SOA");
        };
        assert_eq!(s.serial(), 7);
        let ns = answer(&r, 7, 5, "dccore", RecordType::NS).expect("in zone");
        assert_eq!(ns.answers.len(), 1);
        assert_eq!(ns.additionals.len(), 1, "ns1's address");
        let leader = answer(&r, 7, 5, "leader.dccore", RecordType::A).expect("in zone");
        assert_eq!(leader.answers.len(), 1);
    }
}
