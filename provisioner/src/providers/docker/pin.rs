//! Fixed addresses for master containers.
//!
//! Replicated masters know each other by URL: the Raft group holds every member's address, and
//! agents and resolvers are configured with them. Docker hands out addresses on start, in
//! sequence, so a master container that is stopped and started again (a crash, `docker kill` and a
//! later apply, an engine restart) comes back at a *new* address while the group and the agents
//! still call the old one. A master is therefore created with a fixed address, which Docker keeps
//! across restarts: counted down from the top of the network's subnet (`.254`, `.253`, ... of a
//! /24), by the node's index in its pool, where Docker's own allocator (counting up from `.2`)
//! does not reach until the subnet is nearly full. A replacement master of the same name gets the
//! same address back. Docker only takes fixed addresses on a network whose subnet was chosen by
//! its creator, so a network dcform makes without a `subnet` setting is made again with the subnet
//! Docker picked for it (see [`pinnable_network`]).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{
    EndpointIpamConfig, EndpointSettings, Ipam, IpamConfig, NetworkCreateRequest, NetworkingConfig,
};
use bollard::query_parameters::InspectNetworkOptions;

use super::{DockerError, api};

/// The IPv4 subnet of a network's IPAM entries (`172.18.0.0/16`), if it has one.
pub(super) async fn subnet_of(
    docker: &Docker,
    network: &str,
) -> Result<Option<String>, DockerError> {
    let n = docker
        .inspect_network(network, None::<InspectNetworkOptions>)
        .await
        .map_err(api(format!("inspect network {network}")))?;
    Ok(n.ipam
        .and_then(|i| i.config)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| c.subnet)
        .find(|s| parse_v4_cidr(s).is_some()))
}

/// Makes `req` (a network without an IPAM subnet) a network whose subnet counts as chosen by its
/// creator: created once so Docker picks a free subnet, then removed and created again naming
/// that subnet. Returns the network's id.
pub(super) async fn pinnable_network(
    docker: &Docker,
    req: NetworkCreateRequest,
) -> Result<String, BollardError> {
    let name = req.name.clone();
    let first = docker.create_network(req.clone()).await?;
    let subnet = docker
        .inspect_network(&name, None::<InspectNetworkOptions>)
        .await?
        .ipam
        .and_then(|i| i.config)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| c.subnet)
        .find(|s| parse_v4_cidr(s).is_some());
    let Some(subnet) = subnet else {
        // No IPv4 subnet to name (an unusual engine set-up): keep the network as Docker made
        // it; masters then get addresses from Docker as agents do.
        return Ok(first.id);
    };
    docker.remove_network(&name).await?;
    let again = NetworkCreateRequest {
        ipam: Some(Ipam {
            config: Some(vec![IpamConfig {
                subnet: Some(subnet),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..req
    };
    Ok(docker.create_network(again).await?.id)
}

/// The endpoint on `network` of master `index`: its fixed address, `None` when the subnet
/// (`subnet`, the definition's, else the network's) leaves no room for one.
pub(super) async fn master_endpoint(
    docker: &Docker,
    network: &str,
    subnet: Option<&str>,
    index: u32,
) -> Result<Option<NetworkingConfig>, DockerError> {
    let subnet = match subnet {
        Some(s) => Some(s.to_string()),
        None => subnet_of(docker, network).await?,
    };
    let Some(ip) = subnet.and_then(|s| master_address(&s, index)) else {
        return Ok(None);
    };
    let endpoint = EndpointSettings {
        ipam_config: Some(EndpointIpamConfig {
            ipv4_address: Some(ip.to_string()),
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(Some(NetworkingConfig {
        endpoints_config: Some(HashMap::from([(network.to_string(), endpoint)])),
    }))
}

/// The fixed address of the master with pool index `index` on `subnet`: the `index`-th address
/// below the broadcast address. `None` when the subnet is not IPv4 or too small for it (the
/// master then gets an address from Docker).
pub(super) fn master_address(subnet: &str, index: u32) -> Option<Ipv4Addr> {
    let (net, prefix) = parse_v4_cidr(subnet)?;
    let size = 1u64 << (32 - u32::from(prefix));
    // Keep the network, gateway (.1) and the low half for Docker's own allocator.
    if u64::from(index) == 0 || u64::from(index) >= size / 2 {
        return None;
    }
    let broadcast = u64::from(u32::from(net)) + size - 1;
    let ip = broadcast - u64::from(index);
    Some(Ipv4Addr::from(u32::try_from(ip).ok()?))
}

/// `a.b.c.d/len` with the host bits cleared, or `None`.
fn parse_v4_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    if !(1..=30).contains(&len) {
        return None;
    }
    let mask = u32::MAX << (32 - u32::from(len));
    Some((Ipv4Addr::from(u32::from(ip) & mask), len))
}

/// Docker's answer when a fixed address is asked on a network whose subnet it chose itself (a
/// network made by an older dcform, or by hand).
pub(super) fn refuses_fixed_address(e: &BollardError) -> bool {
    e.to_string().contains("user configured subnets")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masters_count_down_from_the_top_of_the_subnet() {
        assert_eq!(
            master_address("172.18.0.0/16", 1),
            Some(Ipv4Addr::new(172, 18, 255, 254))
        );
        assert_eq!(
            master_address("10.252.7.0/24", 3),
            Some(Ipv4Addr::new(10, 252, 7, 252))
        );
        // Host bits in the setting do not move the addresses.
        assert_eq!(
            master_address("10.252.7.9/24", 1),
            Some(Ipv4Addr::new(10, 252, 7, 254))
        );
    }

    #[test]
    fn no_fixed_address_where_it_would_crowd_dockers_own() {
        assert_eq!(master_address("10.0.0.0/29", 4), None);
        assert_eq!(master_address("10.0.0.0/24", 0), None);
        assert_eq!(master_address("fd00::/64", 1), None);
        assert_eq!(master_address("10.0.0.0/31", 1), None);
        assert_eq!(master_address("not a subnet", 1), None);
    }
}
