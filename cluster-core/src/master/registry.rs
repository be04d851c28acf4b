//! The persistent registry: agents (with the operator's deactivation and drain), frameworks,
//! torn-down framework ids and agents marked gone survive a master restart. Stored as one JSON
//! file written atomically (temp file, fsync, rename), so the master needs no external service.
//! Tasks are not stored: agents report them when they re-register.
//!
//! The document is what [`Tables::registry`](super::tables::Tables::registry) makes of the
//! cluster state after changes; a [`Writer`] task owned by the master writes it, so the owner
//! loop never waits for an fsync.

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
}

impl Registry {
    /// The registry file in a work dir.
    pub fn path(work_dir: &Path) -> PathBuf {
        work_dir.join("registry.json")
    }

    /// Loads `DIR/registry.json`, or an empty registry if there is none.
    pub fn load(work_dir: &Path) -> Result<Self, RegistryError> {
        let path = Self::path(work_dir);
        let r = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Registry>(&bytes).map_err(|source| {
                RegistryError::Corrupt {
                    path: path.clone(),
                    source,
                }
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Registry::default(),
            Err(source) => return Err(RegistryError::Io { path, source }),
        };
        Ok(r)
    }

    /// Writes the registry atomically (and durably: fsync before the rename).
    pub fn save(&self, path: &Path) -> Result<(), RegistryError> {
        let bytes = serde_json::to_vec_pretty(self).expect("invariant: registry is plain data");
        crate::atomic_file::write(path, &bytes).map_err(|source| RegistryError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Runs once the write it waited for is done.
pub(super) type AfterWrite = Box<dyn FnOnce() + Send>;

/// The registry writer: a task that writes documents in the order they were queued. When
/// several are queued only the newest is written (it contains the others' changes), and every
/// queued callback runs after that write.
///
/// Durability ordering: a reply that needs its change to survive a restart (a new framework id,
/// a teardown, an operator's drain) is queued here as an [`AfterWrite`] together with the
/// document that contains the change, so it is sent only after that document is on disk.
pub(super) struct Writer {
    tx: tokio::sync::mpsc::UnboundedSender<(Registry, Vec<AfterWrite>)>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    /// Starts the writer task for `path`.
    pub fn start(path: PathBuf) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Registry, Vec<AfterWrite>)>();
        let task = tokio::spawn(async move {
            while let Some((mut doc, mut after)) = rx.recv().await {
                while let Ok((newer, more)) = rx.try_recv() {
                    doc = newer;
                    after.extend(more);
                }
                let path = path.clone();
                // A failed write is logged, not fatal: the in-memory state is still right and
                // the next change writes the whole document again.
                let written = tokio::task::spawn_blocking(move || doc.save(&path)).await;
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::error!(error = %dc_support::error::chain(&e), "cannot save the registry")
                    }
                    Err(e) => tracing::error!(error = %e, "registry write task failed"),
                }
                for f in after {
                    f();
                }
            }
        });
        Writer { tx, task }
    }

    /// Queues a document; `after` runs once it is written.
    pub fn write(&self, doc: Registry, after: Vec<AfterWrite>) {
        if let Err(e) = self.tx.send((doc, after)) {
            // The writer is gone (it never stops before the owner loop does): answer anyway.
            tracing::error!("registry writer stopped: the registry is not saved");
            for f in (e.0).1 {
                f();
            }
        }
    }

    /// Writes what is queued and stops.
    pub async fn finish(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::load(dir.path()).unwrap();
        let path = Registry::path(dir.path());
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
        r.save(&path).unwrap();
        let back = Registry::load(dir.path()).unwrap();
        assert_eq!(back.agents[0].id, "a");
        assert!(back.agents[0].public);
        assert!(back.agents[0].deactivated);
    }

    #[tokio::test]
    async fn the_writer_writes_the_newest_document_before_running_what_waited_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let w = Writer::start(Registry::path(dir.path()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let path = Registry::path(dir.path());
        let mut tx = Some(tx);
        for n in 0..3 {
            let doc = Registry {
                gone_agents: vec![format!("a{n}")],
                ..Default::default()
            };
            let after: Vec<AfterWrite> = if n == 2 {
                let path = path.clone();
                let tx = tx.take().unwrap();
                vec![Box::new(move || {
                    let on_disk = Registry::load(path.parent().unwrap()).unwrap();
                    let _ = tx.send(on_disk.gone_agents);
                })]
            } else {
                Vec::new()
            };
            w.write(doc, after);
        }
        let seen = tokio::time::timeout(std::time::Duration::from_secs(10), rx)
            .await
            .expect("the callback runs")
            .unwrap();
        assert_eq!(
            seen,
            ["a2"],
            "the document was on disk when the reply went out"
        );
        w.finish().await;
    }

    #[test]
    fn an_old_registry_with_maintenance_windows_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("registry.json"),
            br#"{"agents": [], "maintenance": [{"window": 1}]}"#,
        )
        .unwrap();
        assert!(Registry::load(dir.path()).unwrap().agents.is_empty());
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
