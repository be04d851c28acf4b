//! Service discovery: the master answers DNS (and `GET /v1/services`) for its running tasks,
//! from its own state, pushed on every change (Mesos-DNS polled the master every 60 s).
//!
//! ```text
//! owner loop ── apply(Change touching a task, agent or framework) ──▶ feed marked dirty
//!    └─ end of the loop turn (at most every PUBLISH_GAP) ──▶ Snapshot (a copy of pointers) ──watch──┐
//!                                                                                                 ▼
//!  DNS server (UDP + TCP, hickory) ◀── Directory::records(): Records built once per snapshot, off the owner task
//!  GET /v1/services               ◀──┘
//! ```
//!
//! * [`records`]: the pure model: names, sanitising, collisions ([`Records::build`]).
//! * [`dns`]: the DNS server: authoritative for the domain, REFUSED for other zones.
//! * [`Directory`]: the readers' side of the feed; builds [`Records`] lazily from the newest
//!   [`Snapshot`], once per snapshot, on the reader's task.
//!
//! The snapshot is built in `master/discovery_feed.rs` on the owner task; it copies only `Arc`s
//! of the running tasks and the (rarely changing) agent and framework maps, so the owner's work
//! per publish is a pass over the live tasks with no string work.

pub mod dns;
pub mod forward;
pub mod records;

pub use records::{Instance, Masters, RecordData, Records, Service, TaskEntry};

use crate::master::tables::TaskRec;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The default zone (Mesos-DNS' was `mesos`).
pub const DEFAULT_DOMAIN: &str = "dccore";
/// The default TTL of every answer, seconds: short, because records change as tasks do, and a
/// resolver that caches longer would hand out instances that have gone.
pub const DEFAULT_TTL: u32 = 5;

/// Bad discovery settings; each names the config field.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryConfigError {
    /// `dns_listen` is not `IP:PORT`.
    #[error("dns_listen {value:?} is not an address IP:PORT (e.g. 0.0.0.0:53 or 127.0.0.1:8053)")]
    Listen {
        /// What was given.
        value: String,
    },
    /// `dns_domain` is not a valid zone name.
    #[error(
        "dns_domain {value:?} is not a DNS name of labels [a-z0-9-] (1-63 bytes, no leading or trailing '-'), at most 200 bytes: {why}"
    )]
    Domain {
        /// What was given.
        value: String,
        /// What is wrong.
        why: &'static str,
    },
    /// `dns_ttl_secs` is out of range.
    #[error("dns_ttl_secs {value} is out of range: give 0 to 86400")]
    Ttl {
        /// What was given.
        value: u64,
    },
}

/// Discovery settings of a master (`dns_*` in its config file, `--dns-listen`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// Where the DNS server listens (UDP and TCP, same port; port 0 picks one, written to
    /// `WORK_DIR/dns_address`). `None` (the library's default): no DNS server.
    pub dns_listen: Option<SocketAddr>,
    /// The zone answered, lowercase, no final dot.
    pub domain: String,
    /// TTL of every record, seconds.
    pub ttl: u32,
    /// Resolvers that names outside the domain are relayed to (`dns_upstreams`); none: REFUSED.
    pub upstreams: Vec<SocketAddr>,
    /// The masters' addresses for `leader.` and `master.` (filled in by the server from its
    /// listen address and the replica peers).
    pub masters: Masters,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            dns_listen: None,
            domain: DEFAULT_DOMAIN.to_string(),
            ttl: DEFAULT_TTL,
            upstreams: Vec::new(),
            masters: Masters::default(),
        }
    }
}

impl DiscoveryConfig {
    /// Applies the config file's fields (each optional), validated.
    pub fn apply(
        &mut self,
        listen: Option<&str>,
        domain: Option<&str>,
        ttl: Option<u64>,
    ) -> Result<(), DiscoveryConfigError> {
        if let Some(l) = listen {
            self.dns_listen = Some(parse_listen(l)?);
        }
        if let Some(d) = domain {
            self.domain = parse_domain(d)?;
        }
        if let Some(t) = ttl {
            if t > 86_400 {
                return Err(DiscoveryConfigError::Ttl { value: t });
            }
            self.ttl = t as u32;
        }
        Ok(())
    }
}

/// `IP:PORT` for the DNS server.
pub fn parse_listen(value: &str) -> Result<SocketAddr, DiscoveryConfigError> {
    value
        .trim()
        .parse()
        .map_err(|_| DiscoveryConfigError::Listen {
            value: value.to_string(),
        })
}

/// A zone name: lowercased, a final dot dropped, every label valid.
pub fn parse_domain(value: &str) -> Result<String, DiscoveryConfigError> {
    let bad = |why| DiscoveryConfigError::Domain {
        value: value.to_string(),
        why,
    };
    let d = value.trim().trim_end_matches('.').to_ascii_lowercase();
    if d.is_empty() {
        return Err(bad("it is empty"));
    }
    // Leaves room under the zone for service names (253 bytes in all).
    if d.len() > 200 {
        return Err(bad("it is too long"));
    }
    for l in d.split('.') {
        if l.is_empty() || l.len() > 63 {
            return Err(bad("a label is empty or longer than 63 bytes"));
        }
        if !l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(bad("a label has a byte outside [a-z0-9-]"));
        }
        if l.starts_with('-') || l.ends_with('-') {
            return Err(bad("a label starts or ends with '-'"));
        }
    }
    Ok(d)
}

/// The masters' addresses from this master's listen address and the replica peers' URLs: every
/// peer is a master; this master is the leader (the owner loop that publishes runs on the
/// leader). A wildcard listen address without peers gives no address (and a warning).
pub fn masters_of(listen: SocketAddr, own_url: Option<&str>, peer_urls: &[&str]) -> Masters {
    let host_ip = |url: &str| AgentAddr::of(url, "").ip;
    let own = own_url
        .and_then(host_ip)
        .or_else(|| (!listen.ip().is_unspecified()).then(|| listen.ip()));
    let mut all: Vec<IpAddr> = peer_urls.iter().filter_map(|u| host_ip(u)).collect();
    if all.is_empty() {
        all.extend(own);
    }
    all.sort();
    all.dedup();
    if own.is_none() {
        tracing::warn!(
            %listen,
            "the master listens on a wildcard address: leader.<domain> and master.<domain> get no address record"
        );
    }
    Masters { leader: own, all }
}

/// What the feed knows of an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentAddr {
    /// Hostname it registered with.
    pub hostname: String,
    /// The address its tasks answer with: the host of its URL if that is an address, else its
    /// hostname if that is one; `None` otherwise (no address record, see the README).
    pub ip: Option<IpAddr>,
}

impl AgentAddr {
    /// From what the agent registered with.
    pub fn of(url: &str, hostname: &str) -> AgentAddr {
        let from_url = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            // An IPv6 host is written in brackets.
            .and_then(|h| h.trim_start_matches('[').trim_end_matches(']').parse().ok());
        AgentAddr {
            hostname: hostname.to_string(),
            ip: from_url.or_else(|| hostname.parse().ok()),
        }
    }
}

/// What the feed knows of a framework.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameworkName {
    /// `FrameworkInfo.name`.
    pub name: String,
    /// Its principal.
    pub principal: Option<String>,
}

/// What the owner loop publishes: pointers to the running tasks and the agent and framework
/// maps (shared until they change). [`Directory`] turns it into [`Records`].
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Counts the snapshots published (the SOA serial).
    pub version: u64,
    /// The masters.
    pub masters: Masters,
    /// Running tasks that are healthy or have no health check ([`TaskRec::discoverable`]).
    pub tasks: Vec<Arc<TaskRec>>,
    /// Agents by id.
    pub agents: Arc<BTreeMap<String, AgentAddr>>,
    /// Frameworks by id.
    pub frameworks: Arc<BTreeMap<String, FrameworkName>>,
    /// The user a task without `command.user` runs as.
    pub default_task_user: Arc<str>,
}

/// Most host ports published per task: a task that holds a huge range publishes its first ones.
const MAX_PORTS_PER_TASK: usize = 64;

impl Snapshot {
    /// The snapshot's tasks as the record model takes them.
    pub fn entries(&self) -> impl Iterator<Item = TaskEntry<'_>> {
        self.tasks.iter().map(|t| {
            let fw = self.frameworks.get(&t.framework_id);
            let agent = self.agents.get(&t.agent_id);
            TaskEntry {
                framework_id: &t.framework_id,
                framework_name: fw.map_or("", |f| f.name.as_str()),
                framework_principal: fw.and_then(|f| f.principal.as_deref()),
                task_id: &t.info.task_id.value,
                name: &t.info.name,
                user: t
                    .info
                    .command
                    .as_ref()
                    .and_then(|c| c.user.as_deref())
                    .unwrap_or(&*self.default_task_user),
                running: t.state == crate::proto::TaskState::Running,
                // The latest health an update carried (the feed left out unhealthy tasks and
                // checked ones not yet healthy).
                healthy: t.healthy,
                agent_id: &t.agent_id,
                agent_hostname: agent.map_or("", |a| a.hostname.as_str()),
                agent_ip: agent.and_then(|a| a.ip),
                ports: t
                    .resources
                    .ports
                    .iter()
                    .flat_map(|&(b, e)| b..=e)
                    .filter_map(|p| u16::try_from(p).ok())
                    .take(MAX_PORTS_PER_TASK)
                    .collect(),
            }
        })
    }
}

/// The readers' view of the feed: the newest [`Records`], built at most once per snapshot.
#[derive(Clone, Debug)]
pub struct Directory {
    rx: watch::Receiver<Arc<Snapshot>>,
    domain: Arc<str>,
    ttl: u32,
    /// The records of the snapshot with this version. A std mutex: held only to swap an `Arc`.
    cache: Arc<Mutex<Cached>>,
}

/// The snapshot version and the records built from it.
type Cached = Option<(u64, Arc<Records>)>;

impl Directory {
    /// A directory over the feed's receiver.
    pub fn new(rx: watch::Receiver<Arc<Snapshot>>, domain: &str, ttl: u32) -> Self {
        Directory {
            rx,
            domain: domain.into(),
            ttl,
            cache: Arc::new(Mutex::new(None)),
        }
    }

    /// The zone.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// TTL of the answers, seconds.
    pub fn ttl(&self) -> u32 {
        self.ttl
    }

    /// The records of the newest snapshot, and its version (the SOA serial).
    pub fn records(&self) -> (u64, Arc<Records>) {
        let snap = self.rx.borrow().clone();
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((v, r)) = cache.as_ref()
                && *v == snap.version
            {
                return (*v, r.clone());
            }
        }
        // Built outside the lock: two readers may build the same snapshot once each, which is
        // cheaper than making every reader wait behind one build.
        let built = Arc::new(Records::build(&self.domain, &snap.masters, snap.entries()));
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.as_ref().is_none_or(|(v, _)| *v < snap.version) {
            *cache = Some((snap.version, built.clone()));
        }
        (snap.version, built)
    }

    /// Waits for the next snapshot; `false` once the master has stopped.
    pub async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_domain_is_lowercased_and_bad_labels_are_refused_with_the_field_named() {
        assert_eq!(
            parse_domain("DCcore.Local.").expect("valid"),
            "dccore.local"
        );
        for bad in ["", "a..b", "-a", "a_b", &"x".repeat(64)] {
            let e = parse_domain(bad).expect_err(bad).to_string();
            assert!(e.contains("dns_domain"), "{e}");
        }
    }

    #[test]
    fn the_listen_address_and_ttl_are_checked() {
        let mut c = DiscoveryConfig::default();
        c.apply(Some("127.0.0.1:8053"), None, Some(2))
            .expect("valid");
        assert_eq!(c.dns_listen, Some("127.0.0.1:8053".parse().expect("addr")));
        assert_eq!(c.ttl, 2);
        let e = c.apply(Some("localhost"), None, None).expect_err("no port");
        assert!(e.to_string().contains("dns_listen"), "{e}");
        let e = c.apply(None, None, Some(100_000)).expect_err("too long");
        assert!(e.to_string().contains("dns_ttl_secs"), "{e}");
    }

    #[test]
    fn an_agent_answers_with_the_address_of_its_url_or_else_its_hostname() {
        let a = AgentAddr::of("https://10.0.0.7:5051", "node-7");
        assert_eq!(a.ip, Some("10.0.0.7".parse().expect("ip")));
        let a = AgentAddr::of("http://[::1]:5051", "node-7");
        assert_eq!(a.ip, Some("::1".parse().expect("ip")));
        let a = AgentAddr::of("http://node-7:5051", "10.0.0.8");
        assert_eq!(a.ip, Some("10.0.0.8".parse().expect("ip")));
        assert_eq!(AgentAddr::of("http://node-7:5051", "node-7").ip, None);
    }

    #[test]
    fn the_masters_are_the_peers_and_this_master_leads() {
        let listen: SocketAddr = "0.0.0.0:5050".parse().expect("addr");
        let m = masters_of(
            listen,
            Some("https://10.0.0.2:5050"),
            &["https://10.0.0.1:5050", "https://10.0.0.2:5050"],
        );
        assert_eq!(m.leader, Some("10.0.0.2".parse().expect("ip")));
        assert_eq!(m.all.len(), 2);
        let single = masters_of("127.0.0.1:5050".parse().expect("addr"), None, &[]);
        assert_eq!(single.leader, Some("127.0.0.1".parse().expect("ip")));
        assert_eq!(single.all, vec![single.leader.expect("leader")]);
        assert_eq!(masters_of(listen, None, &[]), Masters::default());
    }
}
