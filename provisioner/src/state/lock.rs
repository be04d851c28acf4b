//! The state lock: an OS lock on `state.json.lock`, whose content says who holds it.
//!
//! The OS lock dies with its process, so a crashed `apply` never leaves the state locked. `force-unlock ID`
//! removes the lock file: a stuck holder keeps a lock on an unlinked file, and the next command locks a new one.

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dc_support::retry::{self, Backoff, Next};

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
        // Retries: the race where the file is replaced between open and lock (a few attempts
        // suffice), and the wait for a dead holder's descriptor to close (up to ORPHAN_GRACE).
        let policy = Backoff::new(Duration::from_millis(50), Duration::from_millis(50))
            .jitter(0)
            .deadline(ORPHAN_GRACE);
        let mut replaced = 0;
        let taken = retry::run_blocking(policy, |at| match try_lock(&path) {
            Ok(file) => Next::Done(file),
            Err(Busy::Replaced) if replaced < 10 => {
                // Force-unlocked or released between our open and lock: lock the new file.
                replaced += 1;
                Next::RetryAfter(Duration::ZERO, Busy::Replaced)
            }
            // A holder killed on this host (SIGKILL, OOM) leaves the lock to whichever of its
            // children was between fork and exec at that moment; exec closes the descriptor
            // within moments. Wait that out instead of sending the user to force-unlock.
            Err(Busy::HolderGone(info)) => at.retry(Busy::HolderGone(info)),
            Err(other) => Next::Fail(other),
        });
        let file = match taken.map_err(|e| e.into_error()) {
            Ok(file) => file,
            Err(Busy::Io(e)) => return Err(e),
            Err(Busy::Replaced) => {
                return Err(StateError::io(&path, "the lock file keeps changing")(
                    std::io::Error::other("lock race"),
                ));
            }
            Err(Busy::Held(holder) | Busy::HolderGone(holder)) => {
                let holder = holder.unwrap_or_else(|| LockInfo {
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
        };
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
        // The file is empty until this one small write lands; readers wait for it
        // (`read_info_of_holder`) rather than report an empty holder.
        file.set_len(0)
            .map_err(StateError::io(&path, "cannot write the lock file"))?;
        f.write_all(&body)
            .map_err(StateError::io(&path, "cannot write the lock file"))?;
        Ok(StateLock { file, path, info })
    }

    /// The holder details written for this lock.
    pub fn info(&self) -> &LockInfo {
        &self.info
    }
}

/// Why one attempt at the lock did not get it.
enum Busy {
    /// Another process holds it (its details, if it wrote them).
    Held(Option<LockInfo>),
    /// The recorded holder no longer runs, yet the lock is still held: one of its children has
    /// not closed the descriptor yet.
    HolderGone(Option<LockInfo>),
    /// The file was replaced between open and lock.
    Replaced,
    /// The file could not be opened or locked.
    Io(StateError),
}

/// One attempt: opens and locks the lock file, checking it is still the file at `path`.
fn try_lock(path: &Path) -> Result<File, Busy> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Busy::Io(StateError::io(path, "cannot open the lock file")(e)))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let recorded = read_info_of_holder(path);
            return Err(if recorded.as_ref().is_some_and(holder_is_gone) {
                Busy::HolderGone(recorded)
            } else {
                Busy::Held(recorded)
            });
        }
        Err(TryLockError::Error(e)) => {
            return Err(Busy::Io(StateError::io(path, "cannot lock")(e)));
        }
    }
    if !same_file(&file, path) {
        return Err(Busy::Replaced);
    }
    Ok(file)
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

/// How long a lock whose recorded holder no longer runs may stay held before we report it.
const ORPHAN_GRACE: Duration = Duration::from_secs(5);

/// Whether the recorded holder is a process on this host that has exited (or is a zombie).
/// Holders on other hosts (a shared folder) are never presumed gone.
fn holder_is_gone(info: &LockInfo) -> bool {
    if info.host != hostname() || info.pid == 0 || info.pid == std::process::id() {
        return false;
    }
    match fs::read_to_string(format!("/proc/{}/stat", info.pid)) {
        // The state is the field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        // No /proc/PID on a host that has /proc: the process is gone.
        Err(_) => Path::new("/proc/self").exists(),
    }
}

fn lock_path(state: &StateFile) -> PathBuf {
    let mut p = state.path().to_path_buf().into_os_string();
    p.push(".lock");
    PathBuf::from(p)
}

/// How long a reader waits for a holder that has just taken the lock to write who it is.
const INFO_GRACE: Duration = Duration::from_secs(2);

/// The holder's details, waiting (≤ [`INFO_GRACE`]) while the file is still empty or incomplete:
/// a holder writes them right after it takes the lock, so a reader that lost a race by a moment
/// would otherwise see an empty file and report "locked by pid 0 on unknown".
fn read_info_of_holder(path: &Path) -> Option<LockInfo> {
    let poll = Backoff::new(Duration::from_millis(10), Duration::from_millis(10))
        .jitter(0)
        .deadline(INFO_GRACE);
    retry::run_blocking(poll, |at| match read_info(path) {
        Some(info) => Next::Done(info),
        None => at.retry(()),
    })
    .ok()
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

    /// Found with two applies started at the same instant: the loser said `locked by pid 0 on
    /// unknown ... lock id unknown`, having read the lock file before the winner wrote it.
    #[test]
    fn a_lock_lost_by_a_moment_names_its_holder() {
        for round in 0..100 {
            let dir = tempfile::tempdir().unwrap();
            let state = StateFile::at(dir.path().join("state.json"));
            let barrier = std::sync::Barrier::new(2);
            let results: Vec<Result<String, String>> = std::thread::scope(|s| {
                let race = || {
                    barrier.wait();
                    match StateLock::acquire(&state, "apply") {
                        Ok(l) => {
                            // Hold it until the other has looked.
                            std::thread::sleep(std::time::Duration::from_millis(30));
                            Ok(l.info().id.clone())
                        }
                        Err(e) => Err(e.to_string()),
                    }
                };
                let a = s.spawn(race);
                let b = s.spawn(race);
                vec![a.join().unwrap(), b.join().unwrap()]
            });
            let won: Vec<&String> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
            for r in &results {
                if let Err(msg) = r {
                    assert!(!msg.contains("unknown"), "round {round}: {msg}");
                    assert!(
                        won.iter().any(|id| msg.contains(id.as_str())),
                        "round {round}: {msg}"
                    );
                }
            }
        }
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

    /// Writes lock-info naming `pid` on this host, then has `flock(1)` hold the lock for `hold`.
    fn held_by_another_process(state: &StateFile, pid: u32, hold: &str) -> std::process::Child {
        let info = LockInfo {
            id: "old".into(),
            pid,
            host: hostname(),
            operation: "apply".into(),
            created: 0,
        };
        let path = lock_path(state);
        fs::write(&path, serde_json::to_vec(&info).unwrap()).unwrap();
        let child = std::process::Command::new("flock")
            .args(["-x", path.to_str().unwrap(), "sleep", hold])
            .spawn()
            .expect("flock(1) from util-linux");
        // Wait until flock(1) has it.
        let probe = File::open(&path).unwrap();
        for _ in 0..200 {
            match probe.try_lock() {
                Ok(()) => probe.unlock().unwrap(),
                Err(_) => return child,
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("flock(1) never took the lock");
    }

    #[test]
    fn a_dead_holders_lock_kept_by_a_child_for_a_moment_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateFile::at(dir.path().join("state.json"));
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = gone.id();
        gone.wait().unwrap();
        let mut child = held_by_another_process(&state, dead_pid, "0.5");
        let lock = StateLock::acquire(&state, "apply").expect("taken once the child let go");
        assert_eq!(lock.info().pid, std::process::id());
        assert!(
            child.try_wait().unwrap().is_some(),
            "only after the child exited"
        );
    }

    #[test]
    fn a_live_holder_is_reported_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateFile::at(dir.path().join("state.json"));
        let mut child = held_by_another_process(&state, std::process::id(), "30");
        // Our own pid is alive: the holder is running, so no waiting.
        let started = std::time::Instant::now();
        let err = StateLock::acquire(&state, "apply").unwrap_err();
        assert!(matches!(err, StateError::Locked { .. }), "{err}");
        assert!(
            started.elapsed() < ORPHAN_GRACE,
            "reported without the grace wait"
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
