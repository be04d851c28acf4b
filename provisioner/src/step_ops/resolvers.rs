//! Service discovery on machines of their own (the docker and ssh providers): every node
//! resolves through the masters. A master answers DNS on its node address, port 53, for the
//! cluster domain (`leader.dccore`, `<app>.marathon.dccore`, ...) and relays every other name to
//! the node's original resolvers, which the install saves beside the config
//! (`templates/install.sh.j2`; the uninstall writes them back).
//!
//! | provider | resolv.conf | master config |
//! |---|---|---|
//! | docker, ssh | `nameserver` = the masters' IPs (a master: itself first) | `dns_listen = "<node IP>:53"`, `dns_upstreams_file = "resolv.conf.orig"` |
//! | local | left alone: sandboxes share the host's resolv.conf and must not bind port 53 | nothing |
//! | aws | left alone: EC2 images run their own resolver service | nothing |
//!
//! The masters' relays read only the saved original, never the rewritten file, so masters do not
//! relay to each other; the install refuses to save a file it wrote itself as the original.

use std::net::{IpAddr, SocketAddr};

use dcform_bootstrap::templates::InstallParams;

use super::Layout;
use crate::apply::NodeContext;
use crate::spec::{ProviderKind, Role};
use crate::state::NodeState;

/// The port masters answer DNS on where dcform points nodes' resolvers at them (resolv.conf
/// cannot name another).
pub const DNS_PORT: u16 = 53;

/// The node's saved original resolv.conf, beside the config (`RolePaths::resolv_orig`); the
/// master's `dns_upstreams_file` (relative to its config file).
pub const RESOLV_ORIG_NAME: &str = "resolv.conf.orig";

/// Sets what the install of `ctx`'s node needs for service discovery: its resolvers (`p`) and,
/// on a master with an IP address, the DNS server and its upstreams (`config`). Nothing where
/// [`node_resolvers`] is empty.
pub(super) fn point_at_masters(
    layout: &Layout,
    ctx: &NodeContext,
    p: &mut InstallParams,
    config: &mut serde_json::Map<String, serde_json::Value>,
) {
    let resolvers = node_resolvers(layout, ctx);
    if resolvers.is_empty() {
        return;
    }
    p.resolvers = resolvers;
    if ctx.change.role == Role::Master
        && let Some(ip) = node_ip(&ctx.node)
    {
        config.insert(
            "dns_listen".into(),
            serde_json::json!(SocketAddr::new(ip, DNS_PORT).to_string()),
        );
        config.insert(
            "dns_upstreams_file".into(),
            serde_json::json!(RESOLV_ORIG_NAME),
        );
    }
}

/// The node's cluster address when it is an IP address (resolv.conf takes nothing else): a
/// bare IP, or the IP of an `IP:PORT` / `[v6]:PORT`.
fn node_ip(node: &NodeState) -> Option<IpAddr> {
    let a = node.cluster_address()?;
    a.parse()
        .ok()
        .or_else(|| a.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The nameservers a node of the docker and ssh providers is pointed at: the wanted masters of
/// the state that have an IP address (a master known by a host name cannot be a nameserver), in
/// the state's order; a master puts itself first (the first master is not in the state's list
/// yet), so its own lookups do not wait on another machine. Empty for other providers and
/// layouts (see the module doc), and when no master has an IP address.
///
/// Masters are installed one at a time, so a master lists the masters installed before it and
/// itself; agents, installed after the masters, list them all.
pub(super) fn node_resolvers(layout: &Layout, ctx: &NodeContext) -> Vec<String> {
    let own_machines = matches!(layout, Layout::Host)
        && matches!(
            ctx.spec.provider.kind(),
            ProviderKind::Docker | ProviderKind::Ssh
        );
    if !own_machines {
        return Vec::new();
    }
    let mut ips: Vec<IpAddr> = Vec::new();
    if ctx.change.role == Role::Master
        && let Some(ip) = node_ip(&ctx.node)
    {
        ips.push(ip);
    }
    for m in wanted_masters(ctx) {
        if let Some(ip) = node_ip(m)
            && !ips.contains(&ip)
        {
            ips.push(ip);
        }
    }
    ips.iter().map(IpAddr::to_string).collect()
}

/// The state's masters the definition still wants (as the agents' `--master` list has them), or
/// all of them when the definition wants none of those there are.
fn wanted_masters(ctx: &NodeContext) -> Vec<&NodeState> {
    let wanted = crate::plan::master_set(&ctx.spec);
    let kept: Vec<&NodeState> = ctx
        .masters
        .iter()
        .filter(|m| {
            let key = match &m.host {
                Some(h) => format!("{}:{h}", m.pool),
                None => m.name.clone(),
            };
            wanted.contains(&key)
        })
        .collect();
    if kept.is_empty() {
        ctx.masters.iter().collect()
    } else {
        kept
    }
}

#[cfg(test)]
mod tests;
