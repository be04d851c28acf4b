//! The state lock: an OS lock on `state.json.lock`, whose content says who holds it.
//!
//! The OS lock dies with its process, so a crashed `apply` never leaves the state locked. `force-unlock ID`
//! removes the lock file: a stuck holder keeps a lock on an unlinked file, and the next command locks a new one.

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{StateError, StateFile};

/// Who holds a lock, written into the lock file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Random id, given to `dcform force-unlock`.
    pub id: String,
    /// Holder's process id.
    pub pid: u32,
    /// Holder's host name.
    pub host: String,
    /// The command holding it (`apply`, `destroy`, ...).
    pub operation: String,
    /// When it was taken (seconds since the Unix epoch).
    pub created: u64,
}

impl fmt::Display for LockInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pid {} on {} ({}, since unix time {}, lock id {})",
            self.pid, self.host, self.operation, self.created, self.id
        )
    }
}

/// A held state lock; released on drop.
#[derive(Debug)]
pub struct StateLock {
    file: File,
    path: PathBuf,
    info: LockInfo,
}

impl StateLock {
    /// Takes the lock for `operation`, failing at once (never waiting) with the holder's details.
    pub fn acquire(state: &StateFile, operation: &str) -> Result<StateLock, StateError> {
        let dir = state.dir();
        fs::create_dir_all(dir).map_err(StateError::io(dir, "cannot create the state folder"))?;
        let path = lock_path(state);
        // Retry a few times only for the race where the file is replaced between open and lock.
        for _ in 0..10 {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(StateError::io(&path, "cannot open the lock file"))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let holder = read_info(&path).unwrap_or_else(|| LockInfo {
                        id: "unknown".into(),
                        pid: 0,
                        host: "unknown".into(),
                        operation: "unknown".into(),
                        created: 0,
                    });
                    return Err(StateError::Locked {
                        path: state.path().to_path_buf(),
                        id: holder.id.clone(),
                        holder: Box::new(holder),
                    });
                }
                Err(TryLockError::Error(e)) => return Err(StateError::io(&path, "cannot lock")(e)),
            }
            if !same_file(&file, &path) {
                continue; // force-unlocked or released between our open and lock: lock the new file
            }
            let info = LockInfo {
                id: uuid::Uuid::new_v4().to_string(),
                pid: std::process::id(),
                host: hostname(),
                operation: operation.to_string(),
                created: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
            };
            let mut f = &file;
            let body = serde_json::to_vec(&info).expect("invariant: LockInfo always serialises");
            file.set_len(0)
                .map_err(StateError::io(&path, "cannot write the lock file"))?;
            f.write_all(&body)
                .map_err(StateError::io(&path, "cannot write the lock file"))?;
            return Ok(StateLock { file, path, info });
        }
        Err(StateError::io(&path, "the lock file keeps changing")(
            std::io::Error::other("lock race"),
        ))
    }

    /// The holder details written for this lock.
    pub fn info(&self) -> &LockInfo {
        &self.info
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // Remove the file only while it is still ours (force-unlock may have replaced it).
        if same_file(&self.file, &self.path) {
            let _ = fs::remove_file(&self.path);
        }
        let _ = self.file.unlock();
    }
}

/// `dcform force-unlock ID`: removes the lock if `id` matches the current holder's.
pub fn force_unlock(state: &StateFile, id: &str) -> Result<LockInfo, StateError> {
    let path = lock_path(state);
    match read_info(&path) {
        Some(info) if info.id == id => {
            fs::remove_file(&path).map_err(StateError::io(&path, "cannot remove the lock file"))?;
            Ok(info)
        }
        other => Err(StateError::LockIdMismatch {
            path: state.path().to_path_buf(),
            given: id.to_string(),
            actual: other.map(|i| i.id).unwrap_or_else(|| "none".into()),
        }),
    }
}

fn lock_path(state: &StateFile) -> PathBuf {
    let mut p = state.path().to_path_buf().into_os_string();
    p.push(".lock");
    PathBuf::from(p)
}

fn read_info(path: &Path) -> Option<LockInfo> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown-host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_fails_at_once_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateFile::at(dir.path().join("state.json"));
        let held = StateLock::acquire(&state, "apply").unwrap();
        let err = StateLock::acquire(&state, "apply").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("apply"), "{msg}");
        assert!(msg.contains(&held.info().id), "{msg}");
    }

    #[test]
    fn lock_is_free_again_after_drop() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateFile::at(dir.path().join("state.json"));
        drop(StateLock::acquire(&state, "apply").unwrap());
        StateLock::acquire(&state, "destroy").unwrap();
    }

    #[test]
    fn force_unlock_with_the_right_id_frees_a_stuck_lock() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateFile::at(dir.path().join("state.json"));
        let stuck = StateLock::acquire(&state, "apply").unwrap();
        let wrong = force_unlock(&state, "not-the-id").unwrap_err();
        assert!(matches!(wrong, StateError::LockIdMismatch { .. }));
        let id = stuck.info().id.clone();
        force_unlock(&state, &id).unwrap();
        let fresh = StateLock::acquire(&state, "apply").unwrap();
        // The stuck holder's drop must not remove the new holder's lock.
        drop(stuck);
        assert!(StateLock::acquire(&state, "apply").is_err());
        drop(fresh);
    }
}
