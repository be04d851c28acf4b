//! A cluster's network: VPC, one subnet per zone, internet gateway, route table, security groups and
//! the imported key pair. [`Ec2::ensure_network`] finds what a previous (maybe killed) apply made by
//! tag and creates only what is missing, so it is safe to call at the start of every apply.
//!
//! Security groups, all tagged:
//! - `nodes`: every node; all traffic between members of the group (the cluster talks to itself).
//! - `admin`: every node; SSH and the master API from `admin_cidrs` only.
//! - `public`: public agents; their service ports from anywhere.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, Filter, IpPermission, IpRange, ResourceType, UserIdGroupPair,
};

use crate::tags::{self, PART, tag};
use crate::{AwsError, Ec2};

/// What network a cluster wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    /// Cluster name: the `dcform:cluster` tag and the prefix of every name.
    pub cluster: String,
    /// CIDR of a VPC dcform creates (default `10.0.0.0/16`); each zone gets a slice 16 times smaller.
    pub cidr: String,
    /// Zones to spread nodes over; empty: the region's first three available zones.
    pub zones: Vec<String>,
    /// The user's own subnets (all in one VPC): then no VPC, subnet, gateway or route table is
    /// created, only the security groups (in that VPC) and the key pair.
    pub subnet_ids: Vec<String>,
    /// Who may reach SSH and the admin ports.
    pub admin_cidrs: Vec<String>,
    /// TCP ports open to `admin_cidrs` on every node (SSH, the master API).
    pub admin_ports: Vec<u16>,
    /// TCP port ranges open to the world on public agents.
    pub public_ports: Vec<(u16, u16)>,
    /// OpenSSH public key to import as the cluster's key pair; `None`: instances get no key pair.
    pub public_key: Option<String>,
}

/// One subnet nodes are launched in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    /// Availability zone.
    pub zone: String,
    /// Subnet id.
    pub id: String,
}

/// The network as it exists, recorded in the state's `resources` (keys `aws_*`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Network {
    /// Region it is in.
    pub region: String,
    /// The VPC.
    pub vpc_id: String,
    /// Subnets in zone order; node `i` of a pool goes to `subnets[(i - 1) % len]`.
    pub subnets: Vec<Subnet>,
    /// The group every node is in.
    pub nodes_sg: String,
    /// SSH and admin ports from `admin_cidrs`.
    pub admin_sg: String,
    /// Public agents' service ports.
    pub public_sg: String,
    /// The imported key pair's name.
    pub key_name: Option<String>,
}

impl Network {
    /// The records kept in the state (for `dcform state show`, outputs and the next apply).
    pub fn to_records(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("aws_region".into(), self.region.clone());
        m.insert("aws_vpc".into(), self.vpc_id.clone());
        m.insert(
            "aws_subnets".into(),
            self.subnets
                .iter()
                .map(|s| format!("{}={}", s.zone, s.id))
                .collect::<Vec<_>>()
                .join(","),
        );
        m.insert("aws_sg_nodes".into(), self.nodes_sg.clone());
        m.insert("aws_sg_admin".into(), self.admin_sg.clone());
        m.insert("aws_sg_public".into(), self.public_sg.clone());
        if let Some(k) = &self.key_name {
            m.insert("aws_key_pair".into(), k.clone());
        }
        m
    }

    /// The subnet node `index` (1-based) of a pool goes to: spread round-robin over the zones.
    pub fn subnet_for(&self, index: u32) -> Option<&Subnet> {
        let n = self.subnets.len();
        (n > 0).then(|| &self.subnets[(index.saturating_sub(1) as usize) % n])
    }
}

/// The name of the cluster's key pair: key pair names are unique in a region, so a cluster with a
/// lineage carries the start of it (two clusters of one name each get their own).
pub fn key_pair_name(cluster: &str, lineage: Option<&str>) -> String {
    match lineage {
        Some(l) => format!("dcform-{cluster}-{}", l.get(..8).unwrap_or(l)),
        None => format!("dcform-{cluster}"),
    }
}

/// Subnet `k` of `vpc_cidr`: 16 slices of prefix + 4 (a /16 gives /20s).
fn subnet_cidr(vpc_cidr: &str, k: usize) -> Option<String> {
    let (ip, prefix) = vpc_cidr.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let prefix: u32 = prefix.parse().ok()?;
    if prefix > 24 || k >= 16 {
        return None;
    }
    let sub = prefix + 4;
    let base = u32::from(ip) & (u32::MAX.checked_shl(32 - prefix).unwrap_or(0));
    let start = base + ((k as u32) << (32 - sub));
    Some(format!("{}/{sub}", Ipv4Addr::from(start)))
}

impl Ec2 {
    /// Finds (by tag) or creates the cluster's network. Idempotent.
    pub async fn ensure_network(&self, spec: &NetworkSpec) -> Result<Network, AwsError> {
        let c = &self.client;
        let cluster = spec.cluster.as_str();
        let base_tags = |part: &str, name: String| {
            self.tagged(cluster, vec![tag(PART, part), tag("Name", &name)])
        };
        let mut net = Network {
            region: self.region().to_string(),
            ..Network::default()
        };

        if spec.subnet_ids.is_empty() {
            // VPC.
            let found = c
                .describe_vpcs()
                .set_filters(Some(self.scope(cluster)))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("DescribeVpcs", cluster, e))?;
            net.vpc_id = match found.vpcs().iter().find_map(|v| v.vpc_id()) {
                Some(id) => id.to_string(),
                None => {
                    let out = c
                        .create_vpc()
                        .cidr_block(&spec.cidr)
                        .tag_specifications(tags::spec(
                            ResourceType::Vpc,
                            base_tags("vpc", format!("{cluster}-vpc")),
                        ))
                        .send()
                        .await
                        .map_err(|e| AwsError::from_sdk("CreateVpc", cluster, e))?;
                    let id = out
                        .vpc()
                        .and_then(|v| v.vpc_id())
                        .ok_or_else(|| {
                            AwsError::other("CreateVpc", cluster, "no VPC id in the answer")
                        })?
                        .to_string();
                    // Instances get DNS names, as in a default VPC.
                    c.modify_vpc_attribute()
                        .vpc_id(&id)
                        .enable_dns_hostnames(AttributeBooleanValue::builder().value(true).build())
                        .send()
                        .await
                        .map_err(|e| AwsError::from_sdk("ModifyVpcAttribute", &id, e))?;
                    id
                }
            };

            // Zones and one subnet in each.
            let zones = if spec.zones.is_empty() {
                let out = c
                    .describe_availability_zones()
                    .filters(Filter::builder().name("state").values("available").build())
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("DescribeAvailabilityZones", cluster, e))?;
                let mut z: Vec<String> = out
                    .availability_zones()
                    .iter()
                    .filter_map(|z| z.zone_name().map(str::to_string))
                    .collect();
                z.sort();
                z.truncate(3);
                z
            } else {
                spec.zones.clone()
            };
            if zones.is_empty() {
                return Err(AwsError::other(
                    "DescribeAvailabilityZones",
                    cluster,
                    format!("region {} has no available zone", self.region()),
                ));
            }
            let existing = c
                .describe_subnets()
                .set_filters(Some(self.scope(cluster)))
                .filters(Filter::builder().name("vpc-id").values(&net.vpc_id).build())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("DescribeSubnets", cluster, e))?;
            for (k, zone) in zones.iter().enumerate() {
                if let Some(s) = existing
                    .subnets()
                    .iter()
                    .find(|s| s.availability_zone() == Some(zone.as_str()))
                    .and_then(|s| s.subnet_id())
                {
                    net.subnets.push(Subnet {
                        zone: zone.clone(),
                        id: s.to_string(),
                    });
                    continue;
                }
                let cidr = subnet_cidr(&spec.cidr, k).ok_or_else(|| {
                    AwsError::other(
                        "CreateSubnet",
                        cluster,
                        format!(
                            "cannot cut subnet {k} out of {} (a /8 to /24, at most 16 zones)",
                            spec.cidr
                        ),
                    )
                })?;
                let out = c
                    .create_subnet()
                    .vpc_id(&net.vpc_id)
                    .cidr_block(cidr)
                    .availability_zone(zone)
                    .tag_specifications(tags::spec(
                        ResourceType::Subnet,
                        base_tags("subnet", format!("{cluster}-{zone}")),
                    ))
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("CreateSubnet", zone, e))?;
                let id = out
                    .subnet()
                    .and_then(|s| s.subnet_id())
                    .ok_or_else(|| {
                        AwsError::other("CreateSubnet", zone, "no subnet id in the answer")
                    })?
                    .to_string();
                c.modify_subnet_attribute()
                    .subnet_id(&id)
                    .map_public_ip_on_launch(AttributeBooleanValue::builder().value(true).build())
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("ModifySubnetAttribute", &id, e))?;
                net.subnets.push(Subnet {
                    zone: zone.clone(),
                    id,
                });
            }

            // Internet gateway, attached.
            let found = c
                .describe_internet_gateways()
                .set_filters(Some(self.scope(cluster)))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("DescribeInternetGateways", cluster, e))?;
            let (igw, attached) = match found.internet_gateways().first() {
                Some(g) => (
                    g.internet_gateway_id().unwrap_or_default().to_string(),
                    g.attachments()
                        .iter()
                        .any(|a| a.vpc_id() == Some(net.vpc_id.as_str())),
                ),
                None => {
                    let out = c
                        .create_internet_gateway()
                        .tag_specifications(tags::spec(
                            ResourceType::InternetGateway,
                            base_tags("gateway", format!("{cluster}-gateway")),
                        ))
                        .send()
                        .await
                        .map_err(|e| AwsError::from_sdk("CreateInternetGateway", cluster, e))?;
                    let id = out
                        .internet_gateway()
                        .and_then(|g| g.internet_gateway_id())
                        .ok_or_else(|| {
                            AwsError::other(
                                "CreateInternetGateway",
                                cluster,
                                "no gateway id in the answer",
                            )
                        })?
                        .to_string();
                    (id, false)
                }
            };
            if !attached {
                c.attach_internet_gateway()
                    .internet_gateway_id(&igw)
                    .vpc_id(&net.vpc_id)
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("AttachInternetGateway", &igw, e))?;
            }

            // Route table: default route to the gateway, associated with every subnet.
            let found = c
                .describe_route_tables()
                .set_filters(Some(self.scope(cluster)))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("DescribeRouteTables", cluster, e))?;
            let (rt, has_route, associated): (String, bool, Vec<String>) =
                match found.route_tables().first() {
                    Some(t) => (
                        t.route_table_id().unwrap_or_default().to_string(),
                        t.routes()
                            .iter()
                            .any(|r| r.destination_cidr_block() == Some("0.0.0.0/0")),
                        t.associations()
                            .iter()
                            .filter_map(|a| a.subnet_id().map(str::to_string))
                            .collect(),
                    ),
                    None => {
                        let out = c
                            .create_route_table()
                            .vpc_id(&net.vpc_id)
                            .tag_specifications(tags::spec(
                                ResourceType::RouteTable,
                                base_tags("routes", format!("{cluster}-routes")),
                            ))
                            .send()
                            .await
                            .map_err(|e| AwsError::from_sdk("CreateRouteTable", cluster, e))?;
                        let id = out
                            .route_table()
                            .and_then(|t| t.route_table_id())
                            .ok_or_else(|| {
                                AwsError::other(
                                    "CreateRouteTable",
                                    cluster,
                                    "no route table id in the answer",
                                )
                            })?
                            .to_string();
                        (id, false, Vec::new())
                    }
                };
            if !has_route {
                c.create_route()
                    .route_table_id(&rt)
                    .destination_cidr_block("0.0.0.0/0")
                    .gateway_id(&igw)
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("CreateRoute", &rt, e))?;
            }
            for s in net.subnets.iter().filter(|s| !associated.contains(&s.id)) {
                c.associate_route_table()
                    .route_table_id(&rt)
                    .subnet_id(&s.id)
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("AssociateRouteTable", &s.id, e))?;
            }
        } else {
            // The user's subnets: learn their VPC and zones, create nothing there.
            let out = c
                .describe_subnets()
                .set_subnet_ids(Some(spec.subnet_ids.clone()))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("DescribeSubnets", spec.subnet_ids.join(","), e))?;
            for id in &spec.subnet_ids {
                let s = out
                    .subnets()
                    .iter()
                    .find(|s| s.subnet_id() == Some(id.as_str()))
                    .ok_or_else(|| AwsError::other("DescribeSubnets", id, "no such subnet"))?;
                let vpc = s.vpc_id().unwrap_or_default();
                if !net.vpc_id.is_empty() && net.vpc_id != vpc {
                    return Err(AwsError::other(
                        "DescribeSubnets",
                        id,
                        format!(
                            "is in {vpc}, the other subnet_ids in {}: list subnets of one VPC",
                            net.vpc_id
                        ),
                    ));
                }
                net.vpc_id = vpc.to_string();
                net.subnets.push(Subnet {
                    zone: s.availability_zone().unwrap_or_default().to_string(),
                    id: id.clone(),
                });
            }
        }

        self.ensure_groups(spec, &mut net).await?;

        if let Some(key) = &spec.public_key {
            let name = key_pair_name(cluster, self.lineage.as_deref());
            let found = c
                .describe_key_pairs()
                .filters(Filter::builder().name("key-name").values(&name).build())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("DescribeKeyPairs", &name, e))?;
            if found.key_pairs().is_empty() {
                c.import_key_pair()
                    .key_name(&name)
                    .public_key_material(Blob::new(key.trim().as_bytes()))
                    .tag_specifications(tags::spec(
                        ResourceType::KeyPair,
                        self.tagged(cluster, vec![tag(PART, "key")]),
                    ))
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("ImportKeyPair", &name, e))?;
            }
            net.key_name = Some(name);
        }
        Ok(net)
    }

    /// The three security groups and their rules (rules re-authorized every time: a duplicate is
    /// fine, and a group made by an apply killed before its rules gets them now).
    async fn ensure_groups(&self, spec: &NetworkSpec, net: &mut Network) -> Result<(), AwsError> {
        let c = &self.client;
        let cluster = spec.cluster.as_str();
        let found = c
            .describe_security_groups()
            .set_filters(Some(self.scope(cluster)))
            .filters(Filter::builder().name("vpc-id").values(&net.vpc_id).build())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeSecurityGroups", cluster, e))?;
        let mut ids: BTreeMap<&str, String> = BTreeMap::new();
        for part in ["nodes", "admin", "public"] {
            let existing = found
                .security_groups()
                .iter()
                .find(|g| tags::value(g.tags(), PART) == Some(part));
            let id = match existing.and_then(|g| g.group_id()) {
                Some(id) => id.to_string(),
                None => {
                    let name = format!("{cluster}-{part}");
                    let description = match part {
                        "nodes" => "dcform: traffic between the cluster's nodes",
                        "admin" => "dcform: SSH and admin ports from admin_cidrs",
                        _ => "dcform: public agents' service ports",
                    };
                    let out = c
                        .create_security_group()
                        .group_name(&name)
                        .description(description)
                        .vpc_id(&net.vpc_id)
                        .tag_specifications(tags::spec(
                            ResourceType::SecurityGroup,
                            self.tagged(cluster, vec![tag(PART, part), tag("Name", &name)]),
                        ))
                        .send()
                        .await
                        .map_err(|e| AwsError::from_sdk("CreateSecurityGroup", &name, e))?;
                    out.group_id()
                        .ok_or_else(|| {
                            AwsError::other(
                                "CreateSecurityGroup",
                                &name,
                                "no group id in the answer",
                            )
                        })?
                        .to_string()
                }
            };
            ids.insert(part, id);
        }
        let take = |ids: &mut BTreeMap<&str, String>, k| ids.remove(k).unwrap_or_default();
        net.nodes_sg = take(&mut ids, "nodes");
        net.admin_sg = take(&mut ids, "admin");
        net.public_sg = take(&mut ids, "public");

        let all_from_self = IpPermission::builder()
            .ip_protocol("-1")
            .user_id_group_pairs(UserIdGroupPair::builder().group_id(&net.nodes_sg).build())
            .build();
        let ranges = |cidrs: &[String]| {
            cidrs
                .iter()
                .map(|c| IpRange::builder().cidr_ip(c).build())
                .collect::<Vec<_>>()
        };
        let admin: Vec<IpPermission> = spec
            .admin_ports
            .iter()
            .map(|p| {
                IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(i32::from(*p))
                    .to_port(i32::from(*p))
                    .set_ip_ranges(Some(ranges(&spec.admin_cidrs)))
                    .build()
            })
            .collect();
        let public: Vec<IpPermission> = spec
            .public_ports
            .iter()
            .map(|(a, b)| {
                IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(i32::from(*a))
                    .to_port(i32::from(*b))
                    .set_ip_ranges(Some(ranges(&["0.0.0.0/0".to_string()])))
                    .build()
            })
            .collect();
        for (group, perms) in [
            (&net.nodes_sg, vec![all_from_self]),
            (&net.admin_sg, admin),
            (&net.public_sg, public),
        ] {
            if perms.is_empty() {
                continue;
            }
            match c
                .authorize_security_group_ingress()
                .group_id(group)
                .set_ip_permissions(Some(perms))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("AuthorizeSecurityGroupIngress", group, e))
            {
                Ok(_) => {}
                Err(e) if e.is_code("InvalidPermission.Duplicate") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_get_consecutive_slices_of_the_vpc() {
        assert_eq!(
            subnet_cidr("10.0.0.0/16", 0).as_deref(),
            Some("10.0.0.0/20")
        );
        assert_eq!(
            subnet_cidr("10.0.0.0/16", 2).as_deref(),
            Some("10.0.32.0/20")
        );
        assert_eq!(
            subnet_cidr("10.8.0.0/24", 1).as_deref(),
            Some("10.8.0.16/28")
        );
        assert_eq!(subnet_cidr("10.0.0.0/16", 16), None);
        assert_eq!(subnet_cidr("10.0.0.0/28", 0), None);
    }

    #[test]
    fn nodes_are_spread_round_robin_over_the_subnets() {
        let net = Network {
            subnets: ["a", "b", "c"]
                .iter()
                .map(|z| Subnet {
                    zone: z.to_string(),
                    id: format!("subnet-{z}"),
                })
                .collect(),
            ..Network::default()
        };
        let zones: Vec<&str> = (1..=5)
            .map(|i| net.subnet_for(i).map(|s| s.zone.as_str()).unwrap_or("-"))
            .collect();
        assert_eq!(zones, ["a", "b", "c", "a", "b"]);
    }
}
