//! Where the services state lives: apps (definition, version, the one before), the framework id
//! and the instance ↔ task mapping, behind [`ServiceStore`]. [`FileStore`] keeps it in
//! `WORK_DIR/services.json` (replaced atomically, mode 0600: definitions carry environment
//! values); the replicated masters' key space gets its own backend when masters replicate.

use super::scheduler::Instance;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading or writing the file failed.
    #[error("services state file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not the services state.
    #[error("services state file {path} is not valid")]
    Format {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// One saved app.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SavedApp {
    /// The definition as the client sent it (validated again on load).
    pub definition: Value,
    /// Its version.
    pub version: String,
    /// The previous definition and version (rollback target).
    #[serde(default)]
    pub previous: Option<(Value, String)>,
}

/// Everything that survives a restart.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Saved {
    /// The framework id to re-subscribe with.
    #[serde(default)]
    pub framework_id: Option<String>,
    /// Apps.
    #[serde(default)]
    pub apps: Vec<SavedApp>,
    /// Instances (their states are refreshed by reconciliation).
    #[serde(default)]
    pub instances: Vec<Instance>,
}

/// A place to keep [`Saved`].
pub trait ServiceStore: Send + Sync + 'static {
    /// The saved state, or the empty state if nothing was saved yet.
    fn load(&self) -> Result<Saved, StoreError>;
    /// Replaces the saved state.
    fn save(&self, state: &Saved) -> Result<(), StoreError>;
}

/// [`ServiceStore`] in one JSON file.
#[derive(Clone, Debug)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// The state file in `work_dir` (`services.json`).
    pub fn in_dir(work_dir: &Path) -> FileStore {
        FileStore {
            path: work_dir.join("services.json"),
        }
    }

    fn io(&self, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

impl ServiceStore for FileStore {
    fn load(&self) -> Result<Saved, StoreError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StoreError::Format {
                path: self.path.clone(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Saved::default()),
            Err(e) => Err(self.io(e)),
        }
    }

    fn save(&self, state: &Saved) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(state).map_err(|source| StoreError::Format {
            path: self.path.clone(),
            source,
        })?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        // Created 0600 from the start (not chmod-ed after), then fsync-ed and renamed over the
        // old file, so a crash leaves the old or the new state and no reader ever sees more.
        let tmp = dir.join(format!(
            ".services.json.{}.tmp",
            uuid::Uuid::new_v4().simple()
        ));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.io(e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn saved_state_reads_back_and_the_file_is_private() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = FileStore::in_dir(dir.path());
        assert!(
            store.load().expect("empty").apps.is_empty(),
            "nothing saved yet"
        );
        let saved = Saved {
            framework_id: Some("f1".into()),
            apps: vec![SavedApp {
                definition: serde_json::json!({"id": "/a", "cmd": "x", "env": {"SECRET": "s"}}),
                version: "v1".into(),
                previous: None,
            }],
            instances: Vec::new(),
        };
        store.save(&saved).expect("save");
        let back = store.load().expect("load");
        assert_eq!(back.framework_id.as_deref(), Some("f1"));
        assert_eq!(back.apps[0].definition, saved.apps[0].definition);
        let mode = std::fs::metadata(dir.path().join("services.json"))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("services.json"), b"{not json").expect("write");
        let e = FileStore::in_dir(dir.path()).load().expect_err("corrupt");
        assert!(e.to_string().contains("services.json"), "{e}");
    }
}
