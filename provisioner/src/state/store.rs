//! Reading and writing the state file: atomic, backed up, never overwriting what this build cannot read.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{LockInfo, STATE_VERSION, State};

/// Errors of the state layer. Each names the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file exists but is not a state this build understands; it is left untouched.
    #[error(
        "{path}: the state file is corrupt ({reason}); it was not modified. Restore it from {path}.backup or fix it by hand"
    )]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// Written by a newer dcform; refusing to read or overwrite it.
    #[error(
        "{path}: state format version {found} is newer than this dcform supports ({supported}); upgrade dcform. The file was not modified"
    )]
    NewerVersion {
        /// The state file.
        path: PathBuf,
        /// Version in the file.
        found: u32,
        /// Newest version this build reads.
        supported: u32,
    },
    /// Another dcform process holds the lock.
    #[error(
        "the state {path} is locked by {holder}\nIf that process is gone, run `dcform force-unlock {id}` (with the same definition / --state)"
    )]
    Locked {
        /// The state file.
        path: PathBuf,
        /// Who holds it (pid, host, operation, since).
        holder: Box<LockInfo>,
        /// The lock id to pass to `force-unlock`.
        id: String,
    },
    /// `force-unlock` was given an id that does not match the current lock.
    #[error("{path}: lock id {given} does not match the current lock ({actual})")]
    LockIdMismatch {
        /// The state file.
        path: PathBuf,
        /// Id given on the command line.
        given: String,
        /// Id of the lock on disk, or "none".
        actual: String,
    },
    /// An I/O failure on a state file.
    #[error("{path}: {op}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl StateError {
    pub(crate) fn io<'a>(
        path: &'a Path,
        op: &'static str,
    ) -> impl FnOnce(std::io::Error) -> StateError + 'a {
        move |source| StateError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    }

    /// Whether the user can fix this (bad or foreign file, lock held) rather than an internal failure.
    pub fn is_user_error(&self) -> bool {
        !matches!(self, StateError::Io { .. })
    }
}

/// A state file on disk (it may not exist yet).
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state at an explicit path (`--state`).
    pub fn at(path: impl Into<PathBuf>) -> StateFile {
        StateFile { path: path.into() }
    }

    /// The default location for a cluster: `<definition dir>/.dcform/<cluster>/state.json`.
    pub fn default_for(definition_dir: &Path, cluster: &str) -> StateFile {
        StateFile {
            path: definition_dir
                .join(".dcform")
                .join(cluster)
                .join("state.json"),
        }
    }

    /// Path of the state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder holding the state, its backup, lock, logs and keys.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// Path of the previous version kept on every write.
    pub fn backup_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".backup");
        PathBuf::from(p)
    }

    /// Reads the state; `Ok(None)` when there is none yet.
    pub fn load(&self) -> Result<Option<State>, StateError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StateError::io(&self.path, "cannot read the state file")(e)),
        };
        parse(&self.path, &text).map(Some)
    }

    /// Writes `state` atomically with `serial` incremented; the previous file becomes `state.json.backup`.
    /// Refuses to overwrite a file this build cannot read (corrupt or newer), or one of another lineage.
    pub fn save(&self, state: &mut State) -> Result<(), StateError> {
        let dir = self.dir().to_path_buf();
        fs::create_dir_all(&dir).map_err(StateError::io(&dir, "cannot create the state folder"))?;
        let previous = match fs::read_to_string(&self.path) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(StateError::io(&self.path, "cannot read the state file")(e)),
        };
        if let Some(prev) = &previous {
            let on_disk = parse(&self.path, prev)?;
            if on_disk.lineage != state.lineage {
                return Err(StateError::Corrupt {
                    path: self.path.clone(),
                    reason: format!(
                        "it belongs to another cluster history (lineage {} on disk, {} in memory)",
                        on_disk.lineage, state.lineage
                    ),
                });
            }
        }
        state.version = STATE_VERSION;
        state.serial += 1;
        let mut body = serde_json::to_string_pretty(&*state).map_err(|e| StateError::Corrupt {
            path: self.path.clone(),
            reason: format!("cannot encode state: {e}"),
        })?;
        body.push('\n');
        if let Some(prev) = &previous {
            write_atomic(&self.backup_path(), prev.as_bytes())?;
        }
        write_atomic(&self.path, body.as_bytes())
    }
}

fn parse(path: &Path, text: &str) -> Result<State, StateError> {
    // Check the version before the shape: a newer file may have fields we cannot parse.
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| StateError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let version = value
        .get("version")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| StateError::Corrupt {
            path: path.to_path_buf(),
            reason: "no numeric \"version\" field".into(),
        })?;
    if version > u64::from(STATE_VERSION) {
        return Err(StateError::NewerVersion {
            path: path.to_path_buf(),
            found: u32::try_from(version).unwrap_or(u32::MAX),
            supported: STATE_VERSION,
        });
    }
    serde_json::from_value(value).map_err(|e| StateError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Writes a private file (mode 0600) atomically: saved plans and keys.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(StateError::io(dir, "cannot create the folder"))?;
    }
    write_atomic(path, bytes)
}

/// Temp file in the same folder (so rename is atomic), mode 0600, fsync, rename, fsync the folder.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".state-")
        .tempfile_in(dir)
        .map_err(StateError::io(dir, "cannot create a temporary file"))?;
    set_private(tmp.path())?;
    tmp.write_all(bytes)
        .map_err(StateError::io(tmp.path(), "cannot write"))?;
    tmp.as_file()
        .sync_all()
        .map_err(StateError::io(tmp.path(), "cannot fsync"))?;
    tmp.persist(path).map_err(|e| StateError::Io {
        path: path.to_path_buf(),
        op: "cannot rename into place",
        source: e.error,
    })?;
    if let Ok(d) = fs::File::open(dir) {
        // Best effort: makes the rename durable; some filesystems refuse fsync on folders.
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(unix)]
fn set_private(path: &Path) -> Result<(), StateError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(StateError::io(path, "cannot set mode 0600"))
}

#[cfg(not(unix))]
fn set_private(_path: &Path) -> Result<(), StateError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> (tempfile::TempDir, StateFile) {
        let dir = tempfile::tempdir().unwrap();
        let f = StateFile::at(dir.path().join("c").join("state.json"));
        (dir, f)
    }

    #[test]
    fn missing_state_loads_as_none() {
        let (_d, f) = file();
        assert!(f.load().unwrap().is_none());
    }

    #[test]
    fn every_save_bumps_serial_and_keeps_a_backup() {
        let (_d, f) = file();
        let mut s = State::new("demo", crate::spec::ProviderKind::Local);
        f.save(&mut s).unwrap();
        assert_eq!(s.serial, 1);
        s.outputs.insert("x".into(), serde_json::json!(1));
        f.save(&mut s).unwrap();
        assert_eq!(f.load().unwrap().unwrap().serial, 2);
        let backup: State =
            serde_json::from_str(&fs::read_to_string(f.backup_path()).unwrap()).unwrap();
        assert_eq!(backup.serial, 1);
        assert!(backup.outputs.is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn state_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let (_d, f) = file();
        f.save(&mut State::new("demo", crate::spec::ProviderKind::Local))
            .unwrap();
        assert_eq!(
            fs::metadata(f.path()).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn corrupt_state_is_refused_and_left_untouched() {
        let (_d, f) = file();
        fs::create_dir_all(f.dir()).unwrap();
        fs::write(f.path(), "{ not json").unwrap();
        assert!(matches!(f.load(), Err(StateError::Corrupt { .. })));
        let err = f
            .save(&mut State::new("demo", crate::spec::ProviderKind::Local))
            .unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }));
        assert_eq!(fs::read_to_string(f.path()).unwrap(), "{ not json");
    }

    #[test]
    fn newer_state_is_refused_and_left_untouched() {
        let (_d, f) = file();
        fs::create_dir_all(f.dir()).unwrap();
        let newer = r#"{"version": 99, "serial": 4, "lineage": "x", "future_field": true}"#;
        fs::write(f.path(), newer).unwrap();
        let err = f.load().unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
        assert!(
            f.save(&mut State::new("demo", crate::spec::ProviderKind::Local))
                .is_err()
        );
        assert_eq!(fs::read_to_string(f.path()).unwrap(), newer);
    }

    #[test]
    fn state_of_another_lineage_is_not_overwritten() {
        let (_d, f) = file();
        f.save(&mut State::new("demo", crate::spec::ProviderKind::Local))
            .unwrap();
        let before = fs::read_to_string(f.path()).unwrap();
        let err = f
            .save(&mut State::new("demo", crate::spec::ProviderKind::Local))
            .unwrap_err();
        assert!(err.to_string().contains("lineage"), "{err}");
        assert_eq!(fs::read_to_string(f.path()).unwrap(), before);
    }

    /// A node's pool is a `PoolName` in memory and the same plain string in the file: a state written
    /// before (pool as a string) loads and is written back alike; a name no definition could have
    /// (a hand edit) is refused when the state is read, naming the file.
    #[test]
    fn pool_names_keep_their_json_and_an_invalid_one_is_refused() {
        let (_d, f) = file();
        fs::create_dir_all(f.dir()).unwrap();
        let written_before = r#"{"version": 1, "serial": 3, "lineage": "l-1", "cluster": "demo", "provider": "local",
            "nodes": [{"name": "agents-1", "pool": "agents", "index": 1, "role": "agent", "status": "running"}]}"#;
        fs::write(f.path(), written_before).unwrap();
        let mut s = f.load().unwrap().unwrap();
        assert_eq!(s.nodes[0].pool, "agents");
        f.save(&mut s).unwrap();
        let text = fs::read_to_string(f.path()).unwrap();
        assert!(text.contains(r#""pool": "agents""#), "{text}");

        fs::write(
            f.path(),
            written_before.replace(r#""pool": "agents""#, r#""pool": "Agents!""#),
        )
        .unwrap();
        let err = f.load().unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StateError::Corrupt { .. }), "{msg}");
        assert!(
            msg.contains("Agents!") && msg.contains("state.json"),
            "{msg}"
        );
    }
}
