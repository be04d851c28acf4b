//! The persistent registry: agents, frameworks and maintenance windows survive a master restart.
//! Stored as one JSON file written atomically (temp file + rename), so the master needs no
//! external service. Tasks are not stored: agents report them when they re-register.

use super::drain::DrainInfo;
use crate::proto::{Attribute, Resources};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Errors reading or writing the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// I/O on the registry file.
    #[error("registry file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a registry.
    #[error("registry file {path} is corrupt")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// A registered agent as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredAgent {
    /// Agent id.
    pub id: String,
    /// Hostname.
    pub hostname: String,
    /// Agent URL.
    pub url: String,
    /// Total resources.
    pub resources: Resources,
    /// Attributes.
    #[serde(default)]
    pub attributes: Vec<Attribute>,
    /// Public agent.
    #[serde(default)]
    pub public: bool,
    /// Deactivated by the operator (`DEACTIVATE_AGENT` or `DRAIN_AGENT`).
    #[serde(default)]
    pub deactivated: bool,
    /// Drain in progress or finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_info: Option<DrainInfo>,
}

/// A framework as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredFramework {
    /// Framework id.
    pub id: String,
    /// `FrameworkInfo` as the framework sent it.
    pub info: Value,
    /// Authenticated principal.
    #[serde(default)]
    pub principal: Option<String>,
}

/// The registry document.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Registry {
    /// Agents.
    #[serde(default)]
    pub agents: Vec<StoredAgent>,
    /// Frameworks.
    #[serde(default)]
    pub frameworks: Vec<StoredFramework>,
    /// Frameworks torn down (may not re-subscribe); most recent last, capped.
    #[serde(default)]
    pub removed_frameworks: Vec<String>,
    /// Agents drained with `mark_gone`: they may never register again.
    #[serde(default)]
    pub gone_agents: Vec<String>,
    /// Maintenance windows (kept verbatim; scheduling them is not implemented yet).
    #[serde(default)]
    pub maintenance: Vec<Value>,
    #[serde(skip)]
    path: PathBuf,
}

impl Registry {
    /// Loads `DIR/registry.json`, or an empty registry if there is none.
    pub fn load(work_dir: &Path) -> Result<Self, RegistryError> {
        let path = work_dir.join("registry.json");
        let mut r = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Registry>(&bytes).map_err(|source| {
                RegistryError::Corrupt {
                    path: path.clone(),
                    source,
                }
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Registry::default(),
            Err(source) => return Err(RegistryError::Io { path, source }),
        };
        r.path = path;
        Ok(r)
    }

    /// Writes the registry atomically.
    pub fn save(&self) -> Result<(), RegistryError> {
        let bytes = serde_json::to_vec_pretty(self).expect("invariant: registry is plain data");
        crate::atomic_file::write(&self.path, &bytes).map_err(|source| RegistryError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::load(dir.path()).unwrap();
        r.agents.push(StoredAgent {
            id: "a".into(),
            hostname: "h".into(),
            url: "http://x".into(),
            resources: Resources::new(1.0, 2.0, 3.0),
            attributes: vec![],
            public: true,
            deactivated: true,
            drain_info: None,
        });
        r.save().unwrap();
        let back = Registry::load(dir.path()).unwrap();
        assert_eq!(back.agents[0].id, "a");
        assert!(back.agents[0].public);
        assert!(back.agents[0].deactivated);
    }

    #[test]
    fn corrupt_file_is_an_error_not_an_empty_cluster() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("registry.json"), b"{nope").unwrap();
        assert!(matches!(
            Registry::load(dir.path()),
            Err(RegistryError::Corrupt { .. })
        ));
    }
}
