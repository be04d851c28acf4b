//! Removing a cluster by tag, in dependency order: instances (waited for until terminated), then
//! security groups, subnets, route tables, internet gateways (detached first), VPCs and the key
//! pair. Everything is found by `dcform:cluster` (and `dcform:lineage` when the client has one), so
//! this works with the state lost, and again after an interrupted run. [`Ec2::lineages`] says which
//! cluster histories carry a name before anything is removed.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, Tag};

use crate::network::key_pair_name;
use crate::tags::{self, LINEAGE};
use crate::wait::{self, Poll, WaitPolicy};
use crate::{AwsError, Ec2};

/// What [`Ec2::purge_cluster`] removed, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Terminated instances.
    pub instances: Vec<String>,
    /// Deleted security groups.
    pub security_groups: Vec<String>,
    /// Deleted subnets.
    pub subnets: Vec<String>,
    /// Deleted route tables.
    pub route_tables: Vec<String>,
    /// Deleted internet gateways.
    pub gateways: Vec<String>,
    /// Deleted VPCs.
    pub vpcs: Vec<String>,
    /// Deleted key pairs.
    pub key_pairs: Vec<String>,
}

impl PurgeReport {
    /// Everything removed, one `kind id` per entry.
    pub fn lines(&self) -> Vec<String> {
        let mut v = Vec::new();
        for (kind, ids) in [
            ("instance", &self.instances),
            ("security group", &self.security_groups),
            ("subnet", &self.subnets),
            ("route table", &self.route_tables),
            ("internet gateway", &self.gateways),
            ("vpc", &self.vpcs),
            ("key pair", &self.key_pairs),
        ] {
            v.extend(ids.iter().map(|id| format!("{kind} {id}")));
        }
        v
    }
}

/// Retries a delete EC2 refuses with `DependencyViolation` while it still releases what depends
/// on the resource; `*.NotFound` counts as deleted.
async fn delete_settled<F, Fut>(
    op: &'static str,
    id: &str,
    policy: WaitPolicy,
    mut call: F,
) -> Result<(), AwsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), AwsError>>,
{
    wait::until(op, id, policy, || {
        let f = call();
        async move {
            match f.await {
                Ok(()) => Ok(Poll::Done(())),
                Err(e) if e.is_not_found() => Ok(Poll::Done(())),
                Err(e) if e.is_code("DependencyViolation") => Ok(Poll::Pending(e.to_string())),
                Err(e) => Err(e),
            }
        }
    })
    .await
}

/// Instance states that still hold the instance (a terminated one keeps its tags for a while).
const ALL_BUT_TERMINATED: [&str; 5] =
    ["pending", "running", "stopping", "stopped", "shutting-down"];

impl Ec2 {
    /// What carries `cluster`'s tag, as `kind id` lines grouped by `dcform:lineage` (`""`: tagged
    /// before dcform tagged lineages): live instances and the network and key pair [`purge_cluster`]
    /// removes. Looks at the name only, whatever the client's lineage.
    ///
    /// [`purge_cluster`]: Ec2::purge_cluster
    pub async fn lineages(&self, cluster: &str) -> Result<BTreeMap<String, Vec<String>>, AwsError> {
        let c = &self.client;
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut by_name = self.clone();
        by_name.lineage = None;
        for i in by_name
            .instances(cluster, None, &ALL_BUT_TERMINATED)
            .await?
        {
            out.entry(i.lineage.unwrap_or_default())
                .or_default()
                .push(format!("instance {}", i.id));
        }
        // Each kind's own Describe call (not DescribeTags, which also answers for deleted
        // resources on some EC2-compatible endpoints).
        let scope = || Some(by_name.scope(cluster));
        let mut add = |kind: &str, id: Option<&str>, tags: &[Tag]| {
            if let Some(id) = id {
                out.entry(tags::value(tags, LINEAGE).unwrap_or_default().to_string())
                    .or_default()
                    .push(format!("{kind} {id}"));
            }
        };
        let r = c.describe_vpcs().set_filters(scope()).send().await;
        for v in r
            .map_err(|e| AwsError::from_sdk("DescribeVpcs", cluster, e))?
            .vpcs()
        {
            add("vpc", v.vpc_id(), v.tags());
        }
        let r = c.describe_subnets().set_filters(scope()).send().await;
        for v in r
            .map_err(|e| AwsError::from_sdk("DescribeSubnets", cluster, e))?
            .subnets()
        {
            add("subnet", v.subnet_id(), v.tags());
        }
        let r = c
            .describe_internet_gateways()
            .set_filters(scope())
            .send()
            .await;
        for v in r
            .map_err(|e| AwsError::from_sdk("DescribeInternetGateways", cluster, e))?
            .internet_gateways()
        {
            add("internet gateway", v.internet_gateway_id(), v.tags());
        }
        let r = c.describe_route_tables().set_filters(scope()).send().await;
        for v in r
            .map_err(|e| AwsError::from_sdk("DescribeRouteTables", cluster, e))?
            .route_tables()
        {
            add("route table", v.route_table_id(), v.tags());
        }
        let r = c
            .describe_security_groups()
            .set_filters(scope())
            .send()
            .await;
        for v in r
            .map_err(|e| AwsError::from_sdk("DescribeSecurityGroups", cluster, e))?
            .security_groups()
        {
            add("security group", v.group_id(), v.tags());
        }
        let r = c.describe_key_pairs().set_filters(scope()).send().await;
        for v in r
            .map_err(|e| AwsError::from_sdk("DescribeKeyPairs", cluster, e))?
            .key_pairs()
        {
            add("key pair", v.key_name(), v.tags());
        }
        Ok(out)
    }

    /// Terminates every instance tagged with `cluster`, waits until they are gone, then deletes the
    /// cluster's network resources in dependency order.
    pub async fn purge_cluster(
        &self,
        cluster: &str,
        policy: WaitPolicy,
    ) -> Result<PurgeReport, AwsError> {
        let c = &self.client;
        let mut report = PurgeReport::default();
        let instances = self.instances(cluster, None, &ALL_BUT_TERMINATED).await?;
        let ids: Vec<String> = instances.iter().map(|i| i.id.clone()).collect();
        self.terminate(&ids).await?;
        self.wait_for_state(&ids, "terminated", policy).await?;
        report.instances = ids;

        let out = c
            .describe_security_groups()
            .set_filters(Some(self.scope(cluster)))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeSecurityGroups", cluster, e))?;
        let groups: Vec<String> = out
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_string))
            .collect();
        // Rules naming another group would block that group's deletion: drop them all first.
        for g in out.security_groups() {
            let refs: Vec<_> = g
                .ip_permissions()
                .iter()
                .filter(|p| !p.user_id_group_pairs().is_empty())
                .cloned()
                .collect();
            if let (Some(id), false) = (g.group_id(), refs.is_empty()) {
                match c
                    .revoke_security_group_ingress()
                    .group_id(id)
                    .set_ip_permissions(Some(refs))
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("RevokeSecurityGroupIngress", id, e))
                {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
        }
        for id in &groups {
            delete_settled("DeleteSecurityGroup", id, policy, || async {
                c.delete_security_group()
                    .group_id(id)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| AwsError::from_sdk("DeleteSecurityGroup", id, e))
            })
            .await?;
        }
        report.security_groups = groups;

        let out = c
            .describe_subnets()
            .set_filters(Some(self.scope(cluster)))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeSubnets", cluster, e))?;
        let subnets: Vec<String> = out
            .subnets()
            .iter()
            .filter_map(|s| s.subnet_id().map(str::to_string))
            .collect();
        for id in &subnets {
            delete_settled("DeleteSubnet", id, policy, || async {
                c.delete_subnet()
                    .subnet_id(id)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| AwsError::from_sdk("DeleteSubnet", id, e))
            })
            .await?;
        }
        report.subnets = subnets;

        let out = c
            .describe_route_tables()
            .set_filters(Some(self.scope(cluster)))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeRouteTables", cluster, e))?;
        for t in out.route_tables() {
            let Some(id) = t.route_table_id() else {
                continue;
            };
            for a in t.associations() {
                if a.main() == Some(true) {
                    continue;
                }
                if let Some(aid) = a.route_table_association_id() {
                    match c
                        .disassociate_route_table()
                        .association_id(aid)
                        .send()
                        .await
                        .map_err(|e| AwsError::from_sdk("DisassociateRouteTable", aid, e))
                    {
                        Ok(_) => {}
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            delete_settled("DeleteRouteTable", id, policy, || async {
                c.delete_route_table()
                    .route_table_id(id)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| AwsError::from_sdk("DeleteRouteTable", id, e))
            })
            .await?;
            report.route_tables.push(id.to_string());
        }

        let out = c
            .describe_internet_gateways()
            .set_filters(Some(self.scope(cluster)))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeInternetGateways", cluster, e))?;
        for g in out.internet_gateways() {
            let Some(id) = g.internet_gateway_id() else {
                continue;
            };
            for a in g.attachments() {
                let Some(vpc) = a.vpc_id() else { continue };
                delete_settled("DetachInternetGateway", id, policy, || async {
                    c.detach_internet_gateway()
                        .internet_gateway_id(id)
                        .vpc_id(vpc)
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| AwsError::from_sdk("DetachInternetGateway", id, e))
                })
                .await?;
            }
            delete_settled("DeleteInternetGateway", id, policy, || async {
                c.delete_internet_gateway()
                    .internet_gateway_id(id)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| AwsError::from_sdk("DeleteInternetGateway", id, e))
            })
            .await?;
            report.gateways.push(id.to_string());
        }

        let out = c
            .describe_vpcs()
            .set_filters(Some(self.scope(cluster)))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeVpcs", cluster, e))?;
        for v in out.vpcs() {
            let Some(id) = v.vpc_id() else { continue };
            delete_settled("DeleteVpc", id, policy, || async {
                c.delete_vpc()
                    .vpc_id(id)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| AwsError::from_sdk("DeleteVpc", id, e))
            })
            .await?;
            report.vpcs.push(id.to_string());
        }

        // Key pairs: by tag, and by dcform's name for the cluster (tags on key pairs came late to EC2).
        let name = key_pair_name(cluster, self.lineage.as_deref());
        let mut keys: Vec<String> = Vec::new();
        for filters in [
            self.scope(cluster),
            vec![Filter::builder().name("key-name").values(&name).build()],
        ] {
            let out = c
                .describe_key_pairs()
                .set_filters(Some(filters))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("DescribeKeyPairs", cluster, e))?;
            for k in out.key_pairs() {
                if let Some(n) = k.key_name()
                    && !keys.iter().any(|x| x == n)
                {
                    keys.push(n.to_string());
                }
            }
        }
        for k in &keys {
            match c
                .delete_key_pair()
                .key_name(k)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("DeleteKeyPair", k, e))
            {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        report.key_pairs = keys;
        Ok(report)
    }
}
