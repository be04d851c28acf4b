//! How dcform's SSH reaches a node: straight to its public address, or through a jump host for a
//! machine that has none (an AWS private agent). Pure: chosen from the node, the definition's
//! `ssh { bastion }` and the masters as the state (or this run) knows them, so the route the
//! provider connects by and the one `apply` records in the outputs are the same decision.
//!
//! The order: a declared bastion carries every connection (as for any provider); else a node with a
//! public address is reached there; else the first master with a public address is the jump host
//! (it shares the cluster's security group, which lets every node reach every other), its host key
//! the one pinned for that master.

use crate::spec::{Bastion, Role};
use crate::state::NodeState;

/// The way to one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Straight to `host` (with the definition's bastion, if it declares one, as for every node).
    Direct {
        /// Address to connect to.
        host: String,
    },
    /// Through the master `master` (at `bastion`) to the node's private address `host`.
    ViaMaster {
        /// The master's node name (its pinned host key checks the jump).
        master: String,
        /// The master as a jump host: its public address, the nodes' user and port.
        bastion: Bastion,
        /// The node's private address, reachable from the master.
        host: String,
    },
}

impl Route {
    /// One line for the outputs: `user@jump:port -> host`, or the host alone.
    pub fn describe(&self, user: &str) -> String {
        match self {
            Route::Direct { host } => host.clone(),
            Route::ViaMaster {
                master,
                bastion,
                host,
            } => format!(
                "{}@{}:{} ({master}) -> {host}",
                bastion.user_or(user),
                bastion.host,
                bastion.port
            ),
        }
    }
}

/// Why a node cannot be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No address of any kind recorded (the machine was never created).
    #[error("{node}: no address recorded for this node")]
    NoAddress {
        /// The node.
        node: String,
    },
    /// A private-only node and nothing to jump through.
    #[error(
        "{node} has no public address and there is no bastion: no master with a public address is \
         known yet; apply the masters first, or set ssh {{ bastion = \"user@host\" }}"
    )]
    NoBastion {
        /// The node.
        node: String,
    },
}

/// The route to `node`. `declared`: the definition's bastion; `masters`: the cluster's masters as
/// known (the first by index with a public address is the jump host); `port`: the nodes' SSH port.
pub fn choose(
    node: &NodeState,
    declared: Option<&Bastion>,
    masters: &[NodeState],
    port: u16,
) -> Result<Route, RouteError> {
    let no_address = || RouteError::NoAddress {
        node: node.name.clone(),
    };
    if let Some(public) = node.public_address() {
        return Ok(Route::Direct {
            host: public.to_string(),
        });
    }
    let private = node.private_address.clone().ok_or_else(no_address)?;
    if declared.is_some() {
        return Ok(Route::Direct { host: private });
    }
    let master = masters
        .iter()
        .filter(|m| m.role == Role::Master && m.name != node.name)
        .filter(|m| m.public_address().is_some())
        .min_by_key(|m| m.index)
        .ok_or_else(|| RouteError::NoBastion {
            node: node.name.clone(),
        })?;
    Ok(Route::ViaMaster {
        master: master.name.clone(),
        bastion: Bastion {
            user: None,
            host: master
                .public_address()
                .expect("invariant: filtered on a public address")
                .to_string(),
            port,
        },
        host: private,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::NodeStatus;

    fn node(name: &str, role: Role, index: u32, public: Option<&str>, private: &str) -> NodeState {
        NodeState {
            name: name.into(),
            pool: crate::spec::PoolName::new(name.split('-').next().unwrap_or(name)).unwrap(),
            index,
            role,
            host: None,
            provider_id: Some(format!("i-{name}")),
            addresses: public.iter().map(|p| p.to_string()).collect(),
            private_address: Some(private.into()),
            ssh_host_key: None,
            core_version: None,
            config_hash: None,
            status: NodeStatus::Created,
            replica_id: None,
            replica_member: false,
        }
    }

    fn masters() -> Vec<NodeState> {
        vec![
            node(
                "masters-2",
                Role::Master,
                2,
                Some("203.0.113.12"),
                "10.0.1.12",
            ),
            node(
                "masters-1",
                Role::Master,
                1,
                Some("203.0.113.11"),
                "10.0.1.11",
            ),
            node(
                "masters-3",
                Role::Master,
                3,
                Some("203.0.113.13"),
                "10.0.1.13",
            ),
        ]
    }

    #[test]
    fn a_node_with_a_public_address_is_reached_there() {
        let n = node(
            "public-1",
            Role::PublicAgent,
            1,
            Some("198.51.100.7"),
            "10.0.2.7",
        );
        assert_eq!(
            choose(&n, None, &masters(), 22),
            Ok(Route::Direct {
                host: "198.51.100.7".into()
            })
        );
    }

    #[test]
    fn a_private_agent_is_reached_through_the_first_master_at_its_private_address() {
        let n = node("agents-4", Role::Agent, 4, None, "10.0.2.4");
        let r = choose(&n, None, &masters(), 2222).unwrap();
        assert_eq!(
            r,
            Route::ViaMaster {
                master: "masters-1".into(),
                bastion: Bastion {
                    user: None,
                    host: "203.0.113.11".into(),
                    port: 2222
                },
                host: "10.0.2.4".into(),
            }
        );
        assert_eq!(
            r.describe("ubuntu"),
            "ubuntu@203.0.113.11:2222 (masters-1) -> 10.0.2.4"
        );
    }

    #[test]
    fn a_master_without_a_public_address_is_no_jump_host() {
        let mut ms = masters();
        ms[1].addresses.clear(); // masters-1
        let n = node("agents-1", Role::Agent, 1, None, "10.0.2.1");
        let Ok(Route::ViaMaster { master, .. }) = choose(&n, None, &ms, 22) else {
            panic!("through a master");
        };
        assert_eq!(master, "masters-2");
    }

    #[test]
    fn a_declared_bastion_carries_private_nodes_to_their_private_address() {
        let b = Bastion::parse("ops@bastion.example:2200").unwrap();
        let n = node("agents-1", Role::Agent, 1, None, "10.0.2.1");
        assert_eq!(
            choose(&n, Some(&b), &masters(), 22),
            Ok(Route::Direct {
                host: "10.0.2.1".into()
            })
        );
    }

    #[test]
    fn a_private_node_with_no_master_known_and_no_bastion_is_a_clear_error() {
        let n = node("agents-1", Role::Agent, 1, None, "10.0.2.1");
        let e = choose(&n, None, &[], 22).unwrap_err();
        assert_eq!(
            e,
            RouteError::NoBastion {
                node: "agents-1".into()
            }
        );
        assert!(e.to_string().contains("bastion"), "{e}");
        let mut never = n.clone();
        never.private_address = None;
        assert!(matches!(
            choose(&never, None, &masters(), 22),
            Err(RouteError::NoAddress { .. })
        ));
    }
}
