//! What an agent in a sandbox (the `local` provider, [`Layout::Sandbox`](super::Layout)) is told besides
//! what every agent is. All the sandboxes of a host share its network, so:
//!
//! - its **hostname** is its own loopback address (providers/local_reach.rs gives every node one): the
//!   master shows it as the agent's hostname, the services framework places `hostname` constraints by
//!   it and gives it to tasks as their `host`. The kernel hostname would be the same for every agent.
//! - it offers a **host port range of its own**, [`task_ports`] of its API port, unless the pool's
//!   `resources` name `ports`: a task binding its `$PORT0` on 0.0.0.0 (as most programs do) would
//!   otherwise collide with another agent's task given the same port.
//!
//! The ranges lie in 20000-32699: below Linux's ephemeral ports (32768-60999), where the provider's
//! system-picked API ports and outgoing connections are. The provider picks API ports whose range is
//! not another node's of the cluster and that lie in no node's range (`local.rs`), so within a cluster
//! ranges never overlap and never hold an API port. Two clusters on one host may share a range.

use std::ops::RangeInclusive;

use crate::state::NodeState;

/// The first host port of the task ranges.
pub const FIRST_TASK_PORT: u16 = 20_000;
/// Host ports each local agent offers.
pub const TASK_PORTS_PER_AGENT: u16 = 100;
/// How many ranges there are (20000-32699).
pub const TASK_PORT_RANGES: u16 = 127;

/// Which range the node with API port `api_port` offers: `api_port % 127`. Consecutive ports (a
/// `base_port`) get consecutive ranges.
pub fn task_range_index(api_port: u16) -> u16 {
    api_port % TASK_PORT_RANGES
}

/// The host ports a local agent with API port `api_port` offers:
/// `20000 + 100 * (api_port % 127)` and the 99 after it.
pub fn task_ports(api_port: u16) -> RangeInclusive<u16> {
    let first = FIRST_TASK_PORT + TASK_PORTS_PER_AGENT * task_range_index(api_port);
    first..=first + (TASK_PORTS_PER_AGENT - 1)
}

/// The node's API port and IP, from its cluster address (`IP:PORT` for every sandbox).
fn ip_and_port(node: &NodeState) -> Option<(String, u16)> {
    let addr = super::api_address(node);
    let (ip, port) = addr.rsplit_once(':')?;
    Some((ip.to_string(), port.parse().ok()?))
}

/// The agent's `--resources`: the pool's `resources` with `ports:[A-B]` ([`task_ports`]) added,
/// unless they already name ports (the user's choice is kept as written).
pub fn resources(pool_resources: Option<&str>, node: &NodeState) -> Option<String> {
    // The same test dccore's `--resources` applies to tell which resources a spec overrides.
    let names_ports = |s: &str| s.split(';').any(|p| p.trim().starts_with("ports"));
    match (pool_resources, ip_and_port(node)) {
        (Some(r), _) if names_ports(r) => Some(r.to_string()),
        (given, Some((_, port))) => {
            let range = task_ports(port);
            let ports = format!("ports:[{}-{}]", range.start(), range.end());
            Some(match given.map(str::trim).filter(|r| !r.is_empty()) {
                Some(r) => format!("{};{ports}", r.trim_end_matches(';')),
                None => ports,
            })
        }
        (given, None) => given.map(str::to_string),
    }
}

/// Sets the agent config's `hostname` to the node's IP (see the module doc).
pub fn set_hostname(node: &NodeState, config: &mut serde_json::Map<String, serde_json::Value>) {
    if let Some((ip, _)) = ip_and_port(node) {
        config.insert("hostname".into(), serde_json::Value::String(ip));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Role;
    use crate::step_ops::tests::{ctx, installer, node};
    use crate::step_ops::{Layout, api_address};

    #[test]
    fn ranges_are_disjoint_below_the_ephemeral_ports_and_follow_the_api_port() {
        assert_eq!(task_ports(15050), 26400..=26499);
        assert_eq!(task_ports(15051), 26500..=26599);
        let mut all: Vec<_> = (0..TASK_PORT_RANGES).map(task_ports).collect();
        all.sort_by_key(|r| *r.start());
        assert_eq!(*all[0].start(), 20_000);
        assert_eq!(*all.last().unwrap().end(), 32_699);
        assert!(all.windows(2).all(|w| w[0].end() + 1 == *w[1].start()));
    }

    #[test]
    fn an_agent_gets_its_own_range_added_to_the_pools_resources_unless_they_name_ports() {
        let n = node("agents-1", "agents", Role::Agent, "127.1.58.202:15050");
        assert_eq!(resources(None, &n).as_deref(), Some("ports:[26400-26499]"));
        assert_eq!(
            resources(Some("cpus:2;mem:1024"), &n).as_deref(),
            Some("cpus:2;mem:1024;ports:[26400-26499]")
        );
        assert_eq!(
            resources(Some("cpus:2; ports:[31000-31005]"), &n).as_deref(),
            Some("cpus:2; ports:[31000-31005]"),
            "the user's ports are kept"
        );
    }

    #[test]
    fn the_hostname_is_the_agents_own_address() {
        let n = node("agents-1", "agents", Role::Agent, "127.1.58.202:15050");
        let mut config = serde_json::Map::new();
        set_hostname(&n, &mut config);
        assert_eq!(config["hostname"], "127.1.58.202");
    }

    #[test]
    fn a_sandbox_agent_is_installed_with_its_hostname_and_ports_and_a_host_agent_is_not() {
        let n = node("agents-1", "agents", Role::Agent, "127.1.58.202:15050");
        let sandbox = installer(Layout::Sandbox {
            root: std::path::PathBuf::from("/tmp/c"),
        });
        let p = sandbox.params(&ctx(n.clone(), vec![])).expect("params");
        assert_eq!(p.resources.as_deref(), Some("ports:[26400-26499]"));
        assert_eq!(p.listen, "127.1.58.202:15050");
        assert_eq!(
            p.advertise_url.as_deref(),
            Some("https://127.1.58.202:15050")
        );
        let config: serde_json::Value = serde_json::from_str(&p.config_json).expect("JSON");
        assert_eq!(config["hostname"], "127.1.58.202");
        // A master in a sandbox keeps its config as it was.
        let m = node("masters-1", "masters", Role::Master, "127.1.58.201:15049");
        let p = sandbox.params(&ctx(m, vec![])).expect("params");
        assert!(!p.config_json.contains("hostname"), "{}", p.config_json);
        // An agent on a machine of its own keeps the kernel's hostname and all its ports.
        let h = node("agents-1", "agents", Role::Agent, "10.0.0.3");
        let p = installer(Layout::Host)
            .params(&ctx(h.clone(), vec![]))
            .expect("params");
        assert_eq!(
            (p.resources, api_address(&h)),
            (None, "10.0.0.3:5051".into())
        );
        assert!(!p.config_json.contains("hostname"), "{}", p.config_json);
    }
}
