//! Where the services state lives: apps (definition, version, the one before), the framework id
//! and the instance ↔ task mapping, behind [`ServiceStore`]. Two backends:
//!
//! * [`FileStore`] (a single master): `WORK_DIR/services.json`, replaced atomically, mode 0600
//!   (definitions carry environment values).
//! * [`ReplicatedStore`] (replicated masters): the masters' replicated key space, namespace
//!   [`NAMESPACE`], written through the Raft log and read from the local state machine, so the
//!   master that takes over the lead has what the old leader saved. Keys: `framework` (the
//!   framework id), `app:<id>` (definition, version and the previous one — the rollback target)
//!   and `instance:<task id>` (app, version, agent, ports of each instance). A save proposes only
//!   the keys that differ from the committed state, in one log entry.
//!
//! Why the instances are in the log too, though the master's replicated task table has every task
//! of the framework: the task table does not know which app *version* a task runs (what a
//! deployment counts), nor the host ports Marathon shows; the mapping is small and changes only
//! when an instance does (launch, state change, kill), and the driver writes it before it sends
//! the launch. Reconciliation with the master on takeover then corrects each instance's state
//! from the task table (and a task the master lost comes back `TASK_UNKNOWN`, so it is replaced).

use super::scheduler::Instance;
use crate::replica::{Command, KvOp, Replica, ReplicaError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The services' namespace in the replicated key space.
pub const NAMESPACE: &str = "services";
const FRAMEWORK_KEY: &str = "framework";
const APP_PREFIX: &str = "app:";
const INSTANCE_PREFIX: &str = "instance:";

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
    /// A value in the replicated key space is not what this version writes.
    #[error("replicated services state: key {ns}/{key} is not valid")]
    Entry {
        /// Namespace.
        ns: String,
        /// The key.
        key: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The replicated log refused the write (this master is not the leader, or stopped).
    #[error("cannot write the services state through the replicated log")]
    Replica(#[source] ReplicaError),
    /// The write was not committed in time (this master lost the majority).
    #[error("the services state was not committed within {0:?}")]
    Timeout(Duration),
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

/// [`ServiceStore`] in the replicated masters' key space (namespace [`NAMESPACE`]).
#[derive(Clone)]
pub struct ReplicatedStore {
    replica: Arc<Replica>,
    runtime: tokio::runtime::Handle,
    timeout: Duration,
}

impl ReplicatedStore {
    /// The store on `replica`; a write waits at most `timeout` for its commit. Must be created
    /// on the runtime (saves run on its blocking threads and wait for the commit there).
    pub fn new(replica: Arc<Replica>, timeout: Duration) -> ReplicatedStore {
        ReplicatedStore {
            replica,
            runtime: tokio::runtime::Handle::current(),
            timeout,
        }
    }
}

/// `state` as the key space holds it.
fn to_keys(state: &Saved) -> Result<BTreeMap<String, Vec<u8>>, StoreError> {
    let mut keys = BTreeMap::new();
    let entry = |key: &str, source| StoreError::Entry {
        ns: NAMESPACE.into(),
        key: key.into(),
        source,
    };
    if let Some(id) = &state.framework_id {
        let v = serde_json::to_vec(id).map_err(|e| entry(FRAMEWORK_KEY, e))?;
        keys.insert(FRAMEWORK_KEY.to_string(), v);
    }
    for app in &state.apps {
        let id = app
            .definition
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("");
        let key = format!("{APP_PREFIX}{id}");
        let v = serde_json::to_vec(app).map_err(|e| entry(&key, e))?;
        keys.insert(key, v);
    }
    for i in &state.instances {
        let key = format!("{INSTANCE_PREFIX}{}", i.task_id);
        let v = serde_json::to_vec(i).map_err(|e| entry(&key, e))?;
        keys.insert(key, v);
    }
    Ok(keys)
}

/// The key space back as [`Saved`]; unknown keys (a newer version's) are left alone.
fn from_keys(keys: &BTreeMap<String, Vec<u8>>) -> Result<Saved, StoreError> {
    let mut saved = Saved::default();
    for (key, value) in keys {
        let entry = |source| StoreError::Entry {
            ns: NAMESPACE.into(),
            key: key.clone(),
            source,
        };
        if key == FRAMEWORK_KEY {
            saved.framework_id = Some(serde_json::from_slice(value).map_err(entry)?);
        } else if key.starts_with(APP_PREFIX) {
            saved
                .apps
                .push(serde_json::from_slice(value).map_err(entry)?);
        } else if key.starts_with(INSTANCE_PREFIX) {
            saved
                .instances
                .push(serde_json::from_slice(value).map_err(entry)?);
        }
    }
    Ok(saved)
}

/// The commands that turn the key space `old` into `new`.
fn diff(old: &BTreeMap<String, Vec<u8>>, new: &BTreeMap<String, Vec<u8>>) -> Vec<Command> {
    let puts = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .map(|(k, v)| {
            Command::Kv(KvOp::Put {
                ns: NAMESPACE.into(),
                key: k.clone(),
                value: v.clone(),
            })
        });
    let deletes = old.keys().filter(|k| !new.contains_key(*k)).map(|k| {
        Command::Kv(KvOp::Delete {
            ns: NAMESPACE.into(),
            key: k.clone(),
        })
    });
    puts.chain(deletes).collect()
}

impl ServiceStore for ReplicatedStore {
    fn load(&self) -> Result<Saved, StoreError> {
        self.replica
            .with_state(|s| match s.image.kv.get(NAMESPACE) {
                Some(keys) => from_keys(keys),
                None => Ok(Saved::default()),
            })
    }

    fn save(&self, state: &Saved) -> Result<(), StoreError> {
        let new = to_keys(state)?;
        let batch = self
            .replica
            .with_state(|s| match s.image.kv.get(NAMESPACE) {
                Some(old) => diff(old, &new),
                None => diff(&BTreeMap::new(), &new),
            });
        if batch.is_empty() {
            return Ok(());
        }
        // Called on a blocking thread (the driver's flush): waiting here keeps the driver's
        // order "saved, then launched" without making the trait async.
        let propose = tokio::time::timeout(self.timeout, self.replica.propose(batch));
        match self.runtime.block_on(propose) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Replica(e)),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        }
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
    fn the_key_space_holds_one_key_per_app_and_instance_and_a_save_writes_only_changes() {
        let instance: Instance = serde_json::from_value(serde_json::json!({
            "task_id": "prod_web.1", "app": "/prod/web", "version": "v1", "agent_id": "a1",
            "host": "h", "ports": [31000], "state": "TASK_RUNNING", "staged_at": 1.0
        }))
        .expect("instance");
        let mut saved = Saved {
            framework_id: Some("f1".into()),
            apps: vec![SavedApp {
                definition: serde_json::json!({"id": "/prod/web", "cmd": "x"}),
                version: "v1".into(),
                previous: Some((
                    serde_json::json!({"id": "/prod/web", "cmd": "y"}),
                    "v0".into(),
                )),
            }],
            instances: vec![instance],
        };
        let keys = to_keys(&saved).expect("keys");
        let names: Vec<&str> = keys.keys().map(String::as_str).collect();
        assert_eq!(names, ["app:/prod/web", "framework", "instance:prod_web.1"]);
        let back = from_keys(&keys).expect("back");
        assert_eq!(back.framework_id.as_deref(), Some("f1"));
        assert_eq!(
            back.apps[0].previous.as_ref().map(|p| p.1.as_str()),
            Some("v0")
        );
        assert_eq!(back.instances[0].task_id, "prod_web.1");
        assert!(
            diff(&keys, &keys).is_empty(),
            "nothing changed, nothing written"
        );
        saved.instances.clear();
        let batch = diff(&keys, &to_keys(&saved).expect("keys"));
        assert_eq!(
            batch,
            [Command::Kv(KvOp::Delete {
                ns: NAMESPACE.into(),
                key: "instance:prod_web.1".into()
            })]
        );
    }

    #[test]
    fn a_corrupt_replicated_value_is_an_error_naming_its_key() {
        let keys = BTreeMap::from([("app:/x".to_string(), b"{".to_vec())]);
        let e = from_keys(&keys).expect_err("corrupt");
        assert!(e.to_string().contains("services/app:/x"), "{e}");
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("services.json"), b"{not json").expect("write");
        let e = FileStore::in_dir(dir.path()).load().expect_err("corrupt");
        assert!(e.to_string().contains("services.json"), "{e}");
    }
}
