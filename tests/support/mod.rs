//! Shared helpers of the root integration tests that talk to a cluster dcform made (`mod support;`,
//! beside `mod common;`): its credentials ([`Access`]), a Mesos v1 scheduler client ([`mesos`]), local
//! clusters ([`local`]) and the docker/ssh providers' set-up ([`providers`]).

#![allow(dead_code)] // each test binary uses a different part

pub mod local;
pub mod mesos;
pub mod providers;

use std::path::{Path, PathBuf};

/// A cluster's credentials and CA, from its state folder (`.dcform/CLUSTER`).
pub struct Access {
    /// The operator token.
    pub operator_token: String,
    /// The agents' credential (what an agent's files API takes).
    pub agent_token: String,
    /// The cluster CA certificate, when the cluster serves HTTPS.
    pub ca_pem: Option<Vec<u8>>,
    dir: PathBuf,
}

impl Access {
    /// From the state folder `dir`.
    pub fn of(dir: &Path) -> Access {
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .unwrap_or_else(|e| panic!("{}/{f}: {e}", dir.display()))
                .trim()
                .to_string()
        };
        Access {
            operator_token: read("token"),
            agent_token: read("agent-token"),
            ca_pem: std::fs::read(dir.join("ca.pem")).ok(),
            dir: dir.to_path_buf(),
        }
    }

    /// dcform's own client of the cluster (as `dcform status` uses it), from the state in the folder.
    pub fn api(&self) -> dcform::cluster_api::ClusterAccess {
        let path = self.dir.join("state.json");
        let state: dcform::state::State = serde_json::from_slice(
            &std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        dcform::cluster_api::ClusterAccess::of(&state, &self.dir)
            .unwrap_or_else(|e| panic!("cluster access from {}: {e}", self.dir.display()))
    }
}
