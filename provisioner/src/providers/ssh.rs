//! Provider `ssh`: existing on-prem hosts listed in pools' `hosts`. There is no machine to create or
//! destroy: `create` records the host, `destroy` forgets it. The planner puts an `Uninstall` step before
//! every removal for this provider (`plan::diff`), so `dcform destroy` leaves the hosts as they were.

use std::collections::BTreeMap;

use crate::apply::{Machine, NodeRequest, Provider, ProviderError, RemoteError};
use crate::spec::ClusterSpec;
use crate::state::NodeState;

use super::ssh_remote::{SshConnector, SshRemote};

/// Existing hosts reached over SSH.
#[derive(Debug, Clone)]
pub struct SshProvider {
    connector: SshConnector,
}

impl SshProvider {
    /// A provider reaching hosts with `connector`.
    pub fn new(connector: SshConnector) -> SshProvider {
        SshProvider { connector }
    }

    /// How dcform's SSH reaches the hosts (see [`super::AnyProvider::ssh_connector`]).
    pub(super) fn connector(&self) -> &SshConnector {
        &self.connector
    }
}

impl Provider for SshProvider {
    type Remote = SshRemote;

    async fn prepare(
        &self,
        _spec: &ClusterSpec,
        resources: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, ProviderError> {
        // Before any node step: a changed bastion key stops the apply here.
        self.connector.prepare(resources).await
    }

    async fn create(&self, req: &NodeRequest) -> Result<Machine, ProviderError> {
        let host = req.host.clone().ok_or_else(|| {
            ProviderError::permanent(
                &req.name,
                "the ssh provider needs a host for every node (pool `hosts = [...]`, not `count`)",
            )
        })?;
        Ok(Machine {
            provider_id: host.clone(),
            addresses: vec![host],
            private_address: None,
        })
    }

    async fn start(&self, node: &NodeState) -> Result<Machine, ProviderError> {
        // An existing host is the user's to power on; dcform only finds it as recorded.
        Ok(Machine {
            provider_id: node.provider_id.clone().unwrap_or_default(),
            addresses: node.addresses.clone(),
            private_address: None,
        })
    }

    async fn connect(&self, node: &NodeState) -> Result<SshRemote, RemoteError> {
        self.connector.connect(node).await
    }

    async fn destroy(&self, _node: &NodeState) -> Result<(), ProviderError> {
        // The host is not ours to remove; the Uninstall step before this one cleaned it.
        Ok(())
    }

    async fn teardown(&self, _resources: &BTreeMap<String, String>) -> Result<(), ProviderError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Role, SshSpec};

    #[tokio::test]
    async fn create_records_the_host_and_refuses_a_node_without_one() {
        let p = SshProvider::new(SshConnector::from_spec(
            &SshSpec::default(),
            None,
            std::env::temp_dir(),
            false,
        ));
        let mut req = NodeRequest {
            cluster: "c".into(),
            name: "agents-1".into(),
            pool: crate::spec::PoolName::new("agents").unwrap(),
            index: 1,
            role: Role::Agent,
            host: Some("192.0.2.20".into()),
            instance_type: None,
        };
        let m = p.create(&req).await.unwrap();
        assert_eq!(m.addresses, vec!["192.0.2.20".to_string()]);
        assert_eq!(m.provider_id, "192.0.2.20");
        req.host = None;
        let e = p.create(&req).await.unwrap_err();
        assert!(!e.transient && e.message.contains("hosts"), "{e}");
    }
}
