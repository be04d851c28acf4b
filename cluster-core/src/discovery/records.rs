//! The record set, pure: from the running tasks (name, framework name, agent address, host
//! ports) and the masters' addresses to DNS names and their `A`/`AAAA`/`SRV` data. No I/O, no
//! clock; the DNS server ([`super::dns`]) and `GET /v1/services` read the same [`Records`].
//!
//! Names (Mesos-DNS' conventions, domain `dccore` by default):
//!
//! | name | data |
//! |---|---|
//! | `<task labels>.<framework>.<domain>` | `A`/`AAAA`: the agent address of each instance |
//! | `_<task labels>._tcp.<framework>.<domain>`, `_udp` too | `SRV 0 0 <host port> <agent>.slave.<domain>`: one per host port of each instance |
//! | `<agent>.slave.<domain>` | `A`/`AAAA` of that agent (the SRV targets) |
//! | `slave.<domain>` | every agent that runs a published task |
//! | `leader.<domain>` | the leading master |
//! | `master.<domain>` | every master |
//! | `ns1.<domain>` | every master (the zone's `NS`) |
//!
//! Sanitising ([`task_labels`], [`label`]): a task name is split at `.` into labels (so
//! Marathon's `web.prod` for app `/prod/web` stays `web.prod`); each label is lowercased, every
//! byte outside `[a-z0-9-]` becomes `-`, leading and trailing `-` are cut, and it is cut to 63
//! bytes; empty labels are dropped. A name with no label left uses the task id the same way. The
//! framework name is one label (its dots become `-`); an empty one is `framework`. The agent label
//! is its id sanitised the same way. A name longer than 253 bytes gets no record (counted in
//! [`Records::skipped`]).
//!
//! Collisions are merged, as in Mesos-DNS: tasks whose names sanitise alike (`Web`, `web`,
//! `web_`) under frameworks whose names sanitise alike answer as one service, with every
//! instance's address and ports; that is also how the instances of one app share a name.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// The longest DNS label (RFC 1035).
const MAX_LABEL: usize = 63;
/// The longest DNS name in text form, without the final dot.
const MAX_NAME: usize = 253;

/// One running task as the feed sees it (borrowed from the master's tables).
#[derive(Clone, Debug)]
pub struct TaskEntry<'a> {
    /// Framework id.
    pub framework_id: &'a str,
    /// Framework name (`FrameworkInfo.name`).
    pub framework_name: &'a str,
    /// The framework's principal, if it has one (who may see the task over HTTP).
    pub framework_principal: Option<&'a str>,
    /// Task id.
    pub task_id: &'a str,
    /// Task name (`TaskInfo.name`).
    pub name: &'a str,
    /// The user the task runs as (who may see it over HTTP).
    pub user: &'a str,
    /// Only running tasks are published.
    pub running: bool,
    /// The latest status' health: `Some(false)` is not published; `None` (no health check) is.
    pub healthy: Option<bool>,
    /// Agent id.
    pub agent_id: &'a str,
    /// Agent hostname.
    pub agent_hostname: &'a str,
    /// Agent address: the task's instances answer with it. `None`: no address record (the
    /// agent's URL names a host, not an address).
    pub agent_ip: Option<IpAddr>,
    /// The task's host ports, ascending.
    pub ports: Vec<u16>,
}

/// One instance of a service.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Instance {
    /// Task id.
    pub task_id: String,
    /// Framework id.
    pub framework_id: String,
    /// Agent id.
    pub agent_id: String,
    /// Agent hostname.
    pub host: String,
    /// Agent address (null when the agent's URL names a host).
    pub ip: Option<IpAddr>,
    /// Host ports.
    pub ports: Vec<u16>,
    /// The `SRV` target: the agent's name under `slave.<domain>`.
    pub target: String,
    /// Latest health, if the task has a health check.
    pub healthy: Option<bool>,
    /// For the HTTP view's access check (not serialised).
    #[serde(skip)]
    pub framework_principal: Option<String>,
    /// For the HTTP view's access check (not serialised).
    #[serde(skip)]
    pub user: String,
}

/// One service: the instances that share an `A` name.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Service {
    /// The name under the domain, e.g. `web.prod.marathon` (what `/v1/services/{name}` takes).
    pub name: String,
    /// The `A` name, e.g. `web.prod.marathon.dccore`.
    pub dns: String,
    /// The `SRV` name, e.g. `_web.prod._tcp.marathon.dccore`.
    pub srv: String,
    /// Instances, by task id.
    pub instances: Vec<Instance>,
}

/// The data of one DNS name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordData {
    /// Addresses (`A` for IPv4, `AAAA` for IPv6), without duplicates.
    pub addrs: BTreeSet<IpAddr>,
    /// `SRV` (port, target name), without duplicates.
    pub srv: BTreeSet<(u16, String)>,
}

/// Every published name and service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Records {
    /// The zone, e.g. `dccore`.
    pub domain: String,
    /// Fully qualified names (lowercase, no final dot) → their data.
    pub names: BTreeMap<String, RecordData>,
    /// Every name that has names below it (RFC 8020: such a name is NODATA, not NXDOMAIN).
    pub parents: BTreeSet<String>,
    /// Services by name under the domain.
    pub services: BTreeMap<String, Service>,
    /// Tasks that got no record (name too long).
    pub skipped: usize,
}

/// Where the masters are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Masters {
    /// The leading master (this one, for a single master).
    pub leader: Option<IpAddr>,
    /// Every master.
    pub all: Vec<IpAddr>,
}

/// One DNS label from free text: lowercase `[a-z0-9-]`, no leading or trailing `-`, at most 63
/// bytes; empty when nothing is left.
pub fn label(s: &str) -> String {
    let mapped: String = s
        .bytes()
        .map(|b| match b.to_ascii_lowercase() {
            c @ (b'a'..=b'z' | b'0'..=b'9' | b'-') => c as char,
            _ => '-',
        })
        .collect();
    let mut l = mapped.trim_matches('-').to_string();
    l.truncate(MAX_LABEL);
    // Cutting may leave a trailing `-` again.
    l.trim_end_matches('-').to_string()
}

/// A task name as DNS labels joined by `.`: split at `.`, each part a [`label`], empty parts
/// dropped; the task id the same way when the name gives nothing.
pub fn task_labels(name: &str, task_id: &str) -> String {
    let of = |s: &str| {
        s.split('.')
            .map(label)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(".")
    };
    let n = of(name);
    if n.is_empty() { of(task_id) } else { n }
}

/// The framework's label: its name as one [`label`] (dots too become `-`), `framework` if
/// nothing is left.
pub fn framework_label(name: &str) -> String {
    let l = label(name);
    if l.is_empty() {
        "framework".to_string()
    } else {
        l
    }
}

impl Records {
    /// Builds the records of `domain` (already validated, lowercase, no final dot) from the
    /// tasks; those not running or reported unhealthy are left out.
    pub fn build<'a>(
        domain: &str,
        masters: &Masters,
        tasks: impl IntoIterator<Item = TaskEntry<'a>>,
    ) -> Records {
        let mut r = Records {
            domain: domain.to_string(),
            ..Default::default()
        };
        let under = |rel: &str| format!("{rel}.{domain}");
        if let Some(ip) = masters.leader {
            r.add_addr(&under("leader"), ip);
        }
        for ip in &masters.all {
            r.add_addr(&under("master"), *ip);
            // The zone's name server (the apex's NS): every master answers DNS.
            r.add_addr(&under("ns1"), *ip);
        }
        for t in tasks {
            if !t.running || t.healthy == Some(false) {
                continue;
            }
            let labels = task_labels(t.name, t.task_id);
            if labels.is_empty() {
                r.skipped += 1;
                continue;
            }
            let fw = framework_label(t.framework_name);
            let rel = format!("{labels}.{fw}");
            let a_name = under(&rel);
            let agent = match label(t.agent_id) {
                l if l.is_empty() => "agent".to_string(),
                l => l,
            };
            let target = under(&format!("{agent}.slave"));
            let srv_tcp = under(&format!("_{labels}._tcp.{fw}"));
            let srv_udp = under(&format!("_{labels}._udp.{fw}"));
            if [&a_name, &target, &srv_tcp, &srv_udp]
                .iter()
                .any(|n| n.len() > MAX_NAME)
            {
                r.skipped += 1;
                continue;
            }
            if let Some(ip) = t.agent_ip {
                r.add_addr(&a_name, ip);
                r.add_addr(&target, ip);
                r.add_addr(&under("slave"), ip);
                for p in &t.ports {
                    r.add_srv(&srv_tcp, *p, &target);
                    r.add_srv(&srv_udp, *p, &target);
                }
            }
            let svc = r.services.entry(rel.clone()).or_insert_with(|| Service {
                name: rel.clone(),
                dns: a_name.clone(),
                srv: srv_tcp.clone(),
                instances: Vec::new(),
            });
            svc.instances.push(Instance {
                task_id: t.task_id.to_string(),
                framework_id: t.framework_id.to_string(),
                agent_id: t.agent_id.to_string(),
                host: t.agent_hostname.to_string(),
                ip: t.agent_ip,
                ports: t.ports.clone(),
                target: target.clone(),
                healthy: t.healthy,
                framework_principal: t.framework_principal.map(str::to_string),
                user: t.user.to_string(),
            });
        }
        for s in r.services.values_mut() {
            s.instances
                .sort_by(|a, b| (&a.framework_id, &a.task_id).cmp(&(&b.framework_id, &b.task_id)));
        }
        let suffix = format!(".{domain}");
        for n in r.names.keys() {
            // Every proper ancestor of a name, down to (not including) the zone apex.
            let mut rest = n.as_str();
            while let Some((_, parent)) = rest.split_once('.') {
                if !parent.ends_with(&suffix) {
                    break;
                }
                r.parents.insert(parent.to_string());
                rest = parent;
            }
        }
        r
    }

    fn add_addr(&mut self, name: &str, ip: IpAddr) {
        self.names
            .entry(name.to_string())
            .or_default()
            .addrs
            .insert(ip);
    }

    fn add_srv(&mut self, name: &str, port: u16, target: &str) {
        self.names
            .entry(name.to_string())
            .or_default()
            .srv
            .insert((port, target.to_string()));
    }

    /// The data of a fully qualified name (lowercase, no final dot).
    pub fn get(&self, name: &str) -> Option<&RecordData> {
        self.names.get(name)
    }

    /// Is `name` (lowercase, no final dot) in the zone: the apex or below it?
    pub fn in_zone(&self, name: &str) -> bool {
        name == self.domain
            || name
                .strip_suffix(&self.domain)
                .is_some_and(|rest| rest.ends_with('.'))
    }

    /// A name that exists without data of its own (an empty non-terminal, e.g.
    /// `marathon.dccore` when `web.marathon.dccore` exists): answered NODATA, not NXDOMAIN.
    pub fn is_parent(&self, name: &str) -> bool {
        self.parents.contains(name)
    }

    /// A service by its name under the domain (`web.prod.marathon`) or its `A` name
    /// (`web.prod.marathon.dccore`, a final dot allowed), case-insensitive.
    pub fn service(&self, name: &str) -> Option<&Service> {
        let n = name.trim_end_matches('.').to_ascii_lowercase();
        let rel = n
            .strip_suffix(&format!(".{}", self.domain))
            .unwrap_or(&n)
            .to_string();
        self.services.get(&rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(task_id: &'a str, name: &'a str, agent: &'a str, ip: &str) -> TaskEntry<'a> {
        TaskEntry {
            framework_id: "fw-1",
            framework_name: "marathon",
            framework_principal: Some("svc"),
            task_id,
            name,
            user: "nobody",
            running: true,
            healthy: None,
            agent_id: agent,
            agent_hostname: "node-1",
            agent_ip: Some(ip.parse().expect("test address")),
            ports: vec![31001],
        }
    }

    fn masters() -> Masters {
        Masters {
            leader: Some("10.0.0.1".parse().expect("ip")),
            all: vec![
                "10.0.0.1".parse().expect("ip"),
                "10.0.0.2".parse().expect("ip"),
            ],
        }
    }

    fn addrs(r: &Records, name: &str) -> Vec<String> {
        r.get(name)
            .map(|d| d.addrs.iter().map(|a| a.to_string()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_dotted_task_name_becomes_labels_under_the_framework_and_domain() {
        let r = Records::build(
            "dccore",
            &masters(),
            [entry("t1", "web.prod", "A1-S0", "10.0.1.5")],
        );
        assert_eq!(addrs(&r, "web.prod.marathon.dccore"), ["10.0.1.5"]);
        let srv = &r.get("_web.prod._tcp.marathon.dccore").expect("srv").srv;
        assert_eq!(
            srv.iter().cloned().collect::<Vec<_>>(),
            [(31001, "a1-s0.slave.dccore".to_string())]
        );
        assert!(r.get("_web.prod._udp.marathon.dccore").is_some());
        assert_eq!(addrs(&r, "a1-s0.slave.dccore"), ["10.0.1.5"]);
    }

    #[test]
    fn leader_is_the_leading_master_and_master_lists_every_master() {
        let r = Records::build("dccore", &masters(), Vec::<TaskEntry>::new());
        assert_eq!(addrs(&r, "leader.dccore"), ["10.0.0.1"]);
        assert_eq!(addrs(&r, "master.dccore"), ["10.0.0.1", "10.0.0.2"]);
    }

    #[test]
    fn tasks_not_running_or_reported_unhealthy_are_not_published() {
        let mut staging = entry("t1", "web", "a1", "10.0.1.5");
        staging.running = false;
        let mut sick = entry("t2", "web", "a2", "10.0.1.6");
        sick.healthy = Some(false);
        let mut well = entry("t3", "web", "a3", "10.0.1.7");
        well.healthy = Some(true);
        let r = Records::build("dccore", &masters(), [staging, sick, well]);
        assert_eq!(addrs(&r, "web.marathon.dccore"), ["10.0.1.7"]);
        let svc = r.service("web.marathon").expect("service");
        assert_eq!(svc.instances.len(), 1);
        assert_eq!(svc.instances[0].task_id, "t3");
    }

    #[test]
    fn instances_of_one_name_share_the_a_and_srv_records() {
        let mut b = entry("t2", "web", "a2", "10.0.1.6");
        b.ports = vec![31002, 31003];
        let r = Records::build(
            "dccore",
            &masters(),
            [entry("t1", "web", "a1", "10.0.1.5"), b],
        );
        assert_eq!(addrs(&r, "web.marathon.dccore"), ["10.0.1.5", "10.0.1.6"]);
        let srv: Vec<_> = r
            .get("_web._tcp.marathon.dccore")
            .expect("srv")
            .srv
            .iter()
            .cloned()
            .collect();
        assert_eq!(
            srv,
            [
                (31001, "a1.slave.dccore".to_string()),
                (31002, "a2.slave.dccore".to_string()),
                (31003, "a2.slave.dccore".to_string())
            ]
        );
        assert_eq!(addrs(&r, "slave.dccore"), ["10.0.1.5", "10.0.1.6"]);
    }

    #[test]
    fn labels_are_lowercase_letters_digits_and_inner_hyphens_of_at_most_63_bytes() {
        assert_eq!(label("Web_Server"), "web-server");
        assert_eq!(label("--x--"), "x");
        assert_eq!(label("ünï"), "n");
        assert_eq!(label(&"a".repeat(70)).len(), 63);
        assert_eq!(label(&format!("{}-b", "a".repeat(62))), "a".repeat(62));
        assert_eq!(task_labels("My App..v2", "id"), "my-app.v2");
        assert_eq!(task_labels("...", "Task.1"), "task.1");
        assert_eq!(framework_label("my.framework"), "my-framework");
        assert_eq!(framework_label("!!"), "framework");
    }

    #[test]
    fn names_that_sanitise_alike_merge_into_one_service() {
        let r = Records::build(
            "dccore",
            &masters(),
            [
                entry("t1", "Web", "a1", "10.0.1.5"),
                entry("t2", "web_", "a2", "10.0.1.6"),
            ],
        );
        let svc = r
            .service("WEB.marathon.dccore.")
            .expect("service by its A name");
        assert_eq!(svc.instances.len(), 2);
    }

    #[test]
    fn a_name_longer_than_253_bytes_gets_no_record() {
        let long = vec!["x".repeat(60); 5].join(".");
        let r = Records::build("dccore", &masters(), [entry("t1", &long, "a1", "10.0.1.5")]);
        assert_eq!(r.skipped, 1);
        assert!(r.services.is_empty());
    }

    #[test]
    fn ancestors_of_names_are_parents_and_the_zone_is_known() {
        let r = Records::build(
            "dccore",
            &masters(),
            [entry("t1", "web.prod", "a1", "10.0.1.5")],
        );
        assert!(r.is_parent("prod.marathon.dccore"));
        assert!(r.is_parent("marathon.dccore"));
        assert!(r.is_parent("_tcp.marathon.dccore"));
        assert!(!r.is_parent("dccore"), "the apex is answered on its own");
        assert!(r.in_zone("dccore") && r.in_zone("x.dccore"));
        assert!(!r.in_zone("xdccore") && !r.in_zone("example.com"));
    }
}
