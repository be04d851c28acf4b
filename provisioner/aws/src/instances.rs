//! Instances: launched per pool and zone with one `RunInstances` for many nodes, found again by tag,
//! waited for, started and terminated.

use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, InstanceNetworkInterfaceSpecification,
    InstanceType, ResourceType, VolumeType,
};

use crate::network::Subnet;
use crate::tags::{self, INDICES, LINEAGE, NODE, POOL, ROLE, tag};
use crate::wait::{self, Poll, WaitPolicy};
use crate::{AwsError, Ec2};

/// How every instance of a pool is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolTemplate {
    /// Cluster name (tag `dcform:cluster`).
    pub cluster: String,
    /// Pool name (tag `dcform:pool`).
    pub pool: String,
    /// The pool's role (tag `dcform:role`).
    pub role: String,
    /// EC2 instance type, e.g. `m5.large`.
    pub instance_type: String,
    /// AMI id.
    pub ami: String,
    /// The AMI's root device name (`/dev/xvda`, `/dev/sda1`), for the root volume's size and type.
    pub root_device: String,
    /// Root volume size in GiB (`None`: the AMI's).
    pub root_volume_gb: Option<u32>,
    /// Root volume type (`gp3`, `gp2`, `io1`, ...).
    pub root_volume_type: Option<String>,
    /// Extra EBS volumes, deleted with the instance.
    pub extra_volumes: Vec<ExtraVolume>,
    /// User data (plain text; base64-encoded here as EC2 wants it).
    pub user_data: Option<String>,
    /// Give instances a public address (bootstrap from outside the VPC goes there).
    pub public_ip: bool,
    /// Security groups.
    pub security_groups: Vec<String>,
    /// Key pair to log in with.
    pub key_name: Option<String>,
}

/// An extra EBS volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraVolume {
    /// Device name, e.g. `/dev/sdf`.
    pub device: String,
    /// Size in GiB.
    pub size_gb: u32,
    /// Volume type (`gp3` when `None`).
    pub kind: Option<String>,
}

/// A node to launch: its name and index in the pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeSlot {
    /// `<pool>-<index>`.
    pub name: String,
    /// 1-based index in the pool.
    pub index: u32,
}

/// An instance as EC2 reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// `i-...`.
    pub id: String,
    /// The node it is (from `dcform:node`, or from `dcform:indices` and its launch index).
    pub node: Option<String>,
    /// Its pool (`dcform:pool`).
    pub pool: Option<String>,
    /// The lineage of the state that launched it (`dcform:lineage`; none before lineages were tagged).
    pub lineage: Option<String>,
    /// Whether it carries the `dcform:node` tag yet.
    pub node_tagged: bool,
    /// EC2 state name (`pending`, `running`, ...).
    pub state: String,
    /// Private address.
    pub private_ip: Option<String>,
    /// Public address.
    pub public_ip: Option<String>,
    /// Availability zone.
    pub zone: Option<String>,
}

impl Instance {
    fn from_sdk(i: &aws_sdk_ec2::types::Instance) -> Option<Instance> {
        let t = i.tags();
        let pool = tags::value(t, POOL).map(str::to_string);
        let tagged = tags::value(t, NODE).map(str::to_string);
        let node_tagged = tagged.is_some();
        // Not tagged yet (dcform stopped between RunInstances and CreateTags): the launch's
        // index list and this instance's launch index say which node it is.
        let node = tagged.or_else(|| {
            let indices = tags::decode_indices(tags::value(t, INDICES)?)?;
            let k = match i.ami_launch_index() {
                Some(k) => usize::try_from(k).ok()?,
                None if indices.len() == 1 => 0,
                None => return None,
            };
            Some(format!("{}-{}", pool.as_deref()?, indices.get(k)?))
        });
        Some(Instance {
            id: i.instance_id()?.to_string(),
            node,
            pool,
            lineage: tags::value(t, LINEAGE).map(str::to_string),
            node_tagged,
            state: i
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_string())
                .unwrap_or_default(),
            private_ip: i.private_ip_address().map(str::to_string),
            public_ip: i.public_ip_address().map(str::to_string),
            zone: i
                .placement()
                .and_then(|p| p.availability_zone())
                .map(str::to_string),
        })
    }
}

/// States of an instance that is or may become a node again (not going away).
const LIVE: [&str; 4] = ["pending", "running", "stopping", "stopped"];

impl Ec2 {
    /// Instances tagged with the cluster (and `pool`, if given) in any of `states`.
    pub async fn instances(
        &self,
        cluster: &str,
        pool: Option<&str>,
        states: &[&str],
    ) -> Result<Vec<Instance>, AwsError> {
        let mut q = self
            .client
            .describe_instances()
            .set_filters(Some(self.scope(cluster)))
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .set_values(Some(states.iter().map(|s| s.to_string()).collect()))
                    .build(),
            );
        if let Some(p) = pool {
            q = q.filters(
                Filter::builder()
                    .name(format!("tag:{POOL}"))
                    .values(p)
                    .build(),
            );
        }
        let mut pages = q.into_paginator().send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("DescribeInstances", cluster, e))?;
            for r in page.reservations() {
                out.extend(r.instances().iter().filter_map(Instance::from_sdk));
            }
        }
        Ok(out)
    }

    /// Live instances of a cluster (pending, running, stopping, stopped).
    pub async fn live_instances(
        &self,
        cluster: &str,
        pool: Option<&str>,
    ) -> Result<Vec<Instance>, AwsError> {
        self.instances(cluster, pool, &LIVE).await
    }

    /// Launches `nodes` of pool `t` in `subnet` with one `RunInstances` (all or nothing:
    /// MinCount = MaxCount), tags each with its node name, and returns them in `nodes` order.
    /// `token` makes the call idempotent across the SDK's own retries.
    pub async fn run_batch(
        &self,
        t: &PoolTemplate,
        subnet: &Subnet,
        nodes: &[NodeSlot],
        token: &str,
    ) -> Result<Vec<Instance>, AwsError> {
        let target = format!(
            "pool {} ({} node(s) in {})",
            t.pool,
            nodes.len(),
            subnet.zone
        );
        let n = i32::try_from(nodes.len())
            .map_err(|_| AwsError::other("RunInstances", &target, "too many nodes in one call"))?;
        let indices: Vec<u32> = nodes.iter().map(|s| s.index).collect();
        let mut launch_tags = self.tagged(
            &t.cluster,
            vec![
                tag(POOL, &t.pool),
                tag(ROLE, &t.role),
                tag(INDICES, &tags::encode_indices(&indices)),
            ],
        );
        if let [only] = nodes {
            launch_tags.push(tag(NODE, &only.name));
            launch_tags.push(tag("Name", &format!("{}-{}", t.cluster, only.name)));
        } else {
            launch_tags.push(tag("Name", &format!("{}-{}", t.cluster, t.pool)));
        }
        let mut q = self
            .client
            .run_instances()
            .image_id(&t.ami)
            .instance_type(InstanceType::from(t.instance_type.as_str()))
            .min_count(n)
            .max_count(n)
            .client_token(token)
            .network_interfaces(
                InstanceNetworkInterfaceSpecification::builder()
                    .device_index(0)
                    .subnet_id(&subnet.id)
                    .associate_public_ip_address(t.public_ip)
                    .delete_on_termination(true)
                    .set_groups(Some(t.security_groups.clone()))
                    .build(),
            )
            .tag_specifications(tags::spec(ResourceType::Instance, launch_tags))
            .tag_specifications(tags::spec(
                ResourceType::Volume,
                self.tagged(&t.cluster, vec![tag(POOL, &t.pool)]),
            ));
        if let Some(k) = &t.key_name {
            q = q.key_name(k);
        }
        if let Some(u) = &t.user_data {
            q = q.user_data(aws_smithy_types::base64::encode(u.as_bytes()));
        }
        if t.root_volume_gb.is_some() || t.root_volume_type.is_some() {
            q = q.block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(&t.root_device)
                    .ebs(ebs(t.root_volume_gb, t.root_volume_type.as_deref()))
                    .build(),
            );
        }
        for v in &t.extra_volumes {
            q = q.block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(&v.device)
                    .ebs(ebs(Some(v.size_gb), v.kind.as_deref().or(Some("gp3"))))
                    .build(),
            );
        }
        let out = q
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("RunInstances", &target, e))?;
        let launched: Vec<Instance> = out
            .instances()
            .iter()
            .filter_map(Instance::from_sdk)
            .collect();
        if launched.len() != nodes.len() {
            return Err(AwsError::other(
                "RunInstances",
                &target,
                format!(
                    "asked for {} instances, EC2 answered with {}",
                    nodes.len(),
                    launched.len()
                ),
            ));
        }
        if nodes.len() > 1 {
            self.tag_nodes(t, &launched).await?;
        }
        let ids: Vec<String> = launched.iter().map(|i| i.id.clone()).collect();
        let running = self
            .wait_for_state(&ids, "running", WaitPolicy::default())
            .await?;
        // In `nodes` order, matched by what the instance says it is.
        nodes
            .iter()
            .map(|s| {
                running
                    .iter()
                    .find(|i| i.node.as_deref() == Some(s.name.as_str()))
                    .cloned()
                    .ok_or_else(|| {
                        AwsError::other(
                            "RunInstances",
                            &s.name,
                            "no launched instance is this node",
                        )
                    })
            })
            .collect()
    }

    /// Tags each instance with its node name (`dcform:node`, `Name`): one CreateTags per instance
    /// (the values differ), all at once.
    pub async fn tag_nodes(
        &self,
        t: &PoolTemplate,
        instances: &[Instance],
    ) -> Result<(), AwsError> {
        let mut calls = tokio::task::JoinSet::new();
        for i in instances {
            let Some(node) = i.node.clone() else { continue };
            let (client, id, name) = (
                self.client.clone(),
                i.id.clone(),
                format!("{}-{node}", t.cluster),
            );
            calls.spawn(async move {
                client
                    .create_tags()
                    .resources(id)
                    .tags(tag(NODE, &node))
                    .tags(tag("Name", &name))
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("CreateTags", node, e))
            });
        }
        while let Some(r) = calls.join_next().await {
            r.map_err(|e| {
                AwsError::other("CreateTags", &t.pool, format!("tagging task failed: {e}"))
            })??;
        }
        Ok(())
    }

    /// Waits until every instance in `ids` is in `state` (`running`, `terminated`), and returns them.
    pub async fn wait_for_state(
        &self,
        ids: &[String],
        state: &str,
        policy: WaitPolicy,
    ) -> Result<Vec<Instance>, AwsError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let target = if ids.len() == 1 {
            ids[0].clone()
        } else {
            format!("{} instances", ids.len())
        };
        let op = if state == "running" {
            "wait for running"
        } else {
            "wait for terminated"
        };
        wait::until(op, &target, policy, || async {
            let mut found = Vec::new();
            for chunk in ids.chunks(200) {
                let out = self
                    .client
                    .describe_instances()
                    .set_instance_ids(Some(chunk.to_vec()))
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("DescribeInstances", &target, e));
                match out {
                    Ok(out) => {
                        for r in out.reservations() {
                            found.extend(r.instances().iter().filter_map(Instance::from_sdk));
                        }
                    }
                    // Just launched: EC2 is eventually consistent and may not know it yet.
                    Err(e) if e.is_code("InvalidInstanceID.NotFound") && state != "terminated" => {
                        return Ok(Poll::Pending(e.to_string()));
                    }
                    Err(e) if e.is_code("InvalidInstanceID.NotFound") => {
                        return Ok(Poll::Done(found));
                    }
                    Err(e) => return Err(e),
                }
            }
            if let Some(bad) = found.iter().find(|i| {
                state == "running" && matches!(i.state.as_str(), "terminated" | "shutting-down")
            }) {
                return Err(AwsError {
                    hint: Some("see the instance's state reason in the EC2 console (a volume or capacity problem)"),
                    ..AwsError::other(op, &bad.id, format!("the instance is {} instead of running", bad.state))
                });
            }
            let waiting: Vec<String> = found
                .iter()
                .filter(|i| i.state != state)
                .map(|i| format!("{} is {}", i.id, i.state))
                .collect();
            Ok(if waiting.is_empty() {
                Poll::Done(found)
            } else {
                Poll::Pending(waiting.join(", "))
            })
        })
        .await
    }

    /// Starts a stopped instance and waits until it runs. A running one is returned as it is.
    pub async fn start(&self, id: &str) -> Result<Instance, AwsError> {
        self.client
            .start_instances()
            .instance_ids(id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("StartInstances", id, e))?;
        let mut v = self
            .wait_for_state(&[id.to_string()], "running", WaitPolicy::default())
            .await?;
        v.pop()
            .ok_or_else(|| AwsError::other("StartInstances", id, "the instance is gone"))
    }

    /// Terminates instances; ones already gone are fine. Does not wait.
    pub async fn terminate(&self, ids: &[String]) -> Result<(), AwsError> {
        for chunk in ids.chunks(500) {
            match self
                .client
                .terminate_instances()
                .set_instance_ids(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("TerminateInstances", chunk.join(","), e))
            {
                Ok(_) => {}
                Err(e) if e.is_code("InvalidInstanceID.NotFound") && chunk.len() == 1 => {}
                Err(e) if e.is_code("InvalidInstanceID.NotFound") => {
                    // One unknown id fails the whole call: terminate the rest one by one.
                    for id in chunk {
                        Box::pin(self.terminate(std::slice::from_ref(id))).await?;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The newest image whose name matches `pattern` (`*` wildcards) owned by one of `owners`, and
    /// its root device name.
    pub async fn find_image(
        &self,
        pattern: &str,
        owners: &[String],
    ) -> Result<(String, Option<String>), AwsError> {
        let out = self
            .client
            .describe_images()
            .set_owners((!owners.is_empty()).then(|| owners.to_vec()))
            .filters(Filter::builder().name("name").values(pattern).build())
            .filters(Filter::builder().name("state").values("available").build())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeImages", pattern, e))?;
        let newest = out
            .images()
            .iter()
            .filter(|i| i.image_id().is_some())
            .max_by_key(|i| i.creation_date().unwrap_or_default().to_string());
        match newest {
            Some(i) => Ok((
                i.image_id().unwrap_or_default().to_string(),
                i.root_device_name().map(str::to_string),
            )),
            None => Err(AwsError {
                hint: Some(
                    "check ami_name and ami_owners for this region, or set ami = \"ami-...\"",
                ),
                ..AwsError::other(
                    "DescribeImages",
                    pattern,
                    format!(
                        "no available image matches in {} (owners: {})",
                        self.region(),
                        if owners.is_empty() {
                            "any".to_string()
                        } else {
                            owners.join(", ")
                        }
                    ),
                )
            }),
        }
    }

    /// The root device name of `ami`, if EC2 knows the image.
    pub async fn root_device_of(&self, ami: &str) -> Result<Option<String>, AwsError> {
        let out = self
            .client
            .describe_images()
            .image_ids(ami)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeImages", ami, e))?;
        Ok(out
            .images()
            .first()
            .and_then(|i| i.root_device_name())
            .map(str::to_string))
    }
}

fn ebs(size: Option<u32>, kind: Option<&str>) -> EbsBlockDevice {
    EbsBlockDevice::builder()
        .set_volume_size(size.and_then(|s| i32::try_from(s).ok()))
        .set_volume_type(kind.map(VolumeType::from))
        .delete_on_termination(true)
        .build()
}

/// Whether `state` names a live instance (for callers matching [`Instance::state`]).
pub fn is_live(state: &str) -> bool {
    LIVE.contains(&state)
}

#[cfg(test)]
mod tests {
    #[test]
    fn user_data_is_base64_with_padding_as_ec2_wants_it() {
        assert_eq!(aws_smithy_types::base64::encode(b"fo"), "Zm8=");
        assert_eq!(
            aws_smithy_types::base64::encode(b"#!/bin/sh\n"),
            "IyEvYmluL3NoCg=="
        );
    }
}
