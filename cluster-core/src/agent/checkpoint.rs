//! Agent checkpoints: the agent id and one JSON file per task, written atomically, so a restarted
//! agent keeps its id and re-attaches to the tasks that are still running.

use crate::proto::{Id, TaskInfo, TaskState};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Errors reading or writing checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// I/O on a checkpoint file.
    #[error("checkpoint {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// One task's checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskCheckpoint {
    /// Framework.
    pub framework_id: Id,
    /// The task as launched.
    pub task: TaskInfo,
    /// Process id of the task's wrapper shell (its process group id too).
    pub pid: Option<u32>,
    /// Start time of `pid` (`/proc/PID/stat` field 22, clock ticks since boot), recorded at
    /// launch: after an agent restart a live `pid` is the task only if it still has this start
    /// time (the pid may have been reused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
    /// Last known state.
    pub state: TaskState,
    /// The terminal update reached the master: nothing more to report.
    #[serde(default)]
    pub done: bool,
}

/// Longest name [`safe_name`] and [`cgroup_name`] make; longer encodings end in a hash.
const SAFE_NAME_MAX: usize = 200;

/// The file-system name of an id (ids come from frameworks): one path component, never `.` or
/// `..`, at most 200 bytes, and injective — two different ids never share a sandbox, checkpoint or
/// cgroup. `[A-Za-z0-9._-]` stay as they are (so common ids are their own name); every other
/// byte, `%` included, becomes `%XX`. An encoding longer than 200 bytes is cut and ends in `~`
/// and 128 bits of the id's SHA-256 (`~` is always escaped, so only such names contain one).
pub fn safe_name(id: &str) -> String {
    let mut out = encode(id, false);
    if id == "." || id == ".." {
        out = id.replace('.', "%2E");
    }
    fit(out, id.as_bytes())
}

/// The name of a task's cgroup, `FRAMEWORK_TASK` in [`safe_name`]'s encoding, with `_` also
/// escaped in the framework part so the first `_` always separates the two.
pub fn cgroup_name(framework_id: &str, task_id: &str) -> String {
    let mut out = encode(framework_id, true);
    out.push('_');
    out.push_str(&safe_name(task_id));
    let mut key = (framework_id.len() as u64).to_le_bytes().to_vec();
    key.extend_from_slice(framework_id.as_bytes());
    key.extend_from_slice(task_id.as_bytes());
    fit(out, &key)
}

fn encode(id: &str, escape_underscore: bool) -> String {
    use std::fmt::Write;
    if id.is_empty() {
        // Every non-empty id encodes to something other than a lone `%`.
        return "%".into();
    }
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || b == b'.'
            || b == b'-'
            || (b == b'_' && !escape_underscore);
        if keep {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn fit(encoded: String, key: &[u8]) -> String {
    use sha2::Digest;
    if encoded.len() <= SAFE_NAME_MAX {
        return encoded;
    }
    let digest = sha2::Sha256::digest(key);
    let hash: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    // The encoding is ASCII, so any byte offset is a char boundary.
    format!("{}~{hash}", &encoded[..SAFE_NAME_MAX - 1 - hash.len()])
}

/// The checkpoint store under the agent's work dir.
#[derive(Clone, Debug)]
pub struct Checkpoints {
    root: PathBuf,
}

impl Checkpoints {
    /// Checkpoints under `work_dir/checkpoints`.
    pub fn new(work_dir: &Path) -> Self {
        Checkpoints {
            root: work_dir.join("checkpoints"),
        }
    }

    fn agent_file(&self) -> PathBuf {
        self.root.join("agent.json")
    }

    fn task_file(&self, framework_id: &str, task_id: &str) -> PathBuf {
        self.root
            .join("tasks")
            .join(safe_name(framework_id))
            .join(format!("{}.json", safe_name(task_id)))
    }

    /// The agent id from a previous run.
    pub fn agent_id(&self) -> Option<String> {
        let bytes = std::fs::read(self.agent_file()).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        v.get("agent_id")?.as_str().map(str::to_string)
    }

    /// Stores the agent id.
    pub fn save_agent_id(&self, id: &str) -> Result<(), CheckpointError> {
        let path = self.agent_file();
        let bytes = serde_json::to_vec(&serde_json::json!({"agent_id": id}))
            .expect("invariant: plain JSON");
        crate::atomic_file::write(&path, &bytes)
            .map_err(|source| CheckpointError::Io { path, source })
    }

    /// Stores a task's checkpoint.
    pub fn save_task(&self, t: &TaskCheckpoint) -> Result<(), CheckpointError> {
        let path = self.task_file(&t.framework_id.value, &t.task.task_id.value);
        let bytes = serde_json::to_vec_pretty(t).expect("invariant: plain JSON");
        crate::atomic_file::write(&path, &bytes)
            .map_err(|source| CheckpointError::Io { path, source })
    }

    /// All task checkpoints not marked done. Unreadable files are skipped with a warning.
    pub fn load_tasks(&self) -> Vec<TaskCheckpoint> {
        let mut out = Vec::new();
        let Ok(fws) = std::fs::read_dir(self.root.join("tasks")) else {
            return out;
        };
        for fw in fws.flatten() {
            let Ok(files) = std::fs::read_dir(fw.path()) else {
                continue;
            };
            for f in files.flatten() {
                let p = f.path();
                if p.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                match std::fs::read(&p).map(|b| serde_json::from_slice::<TaskCheckpoint>(&b)) {
                    Ok(Ok(t)) if !t.done => out.push(t),
                    Ok(Ok(_)) => {}
                    _ => tracing::warn!(path = %p.display(), "unreadable task checkpoint skipped"),
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_names_cannot_escape_the_directory() {
        assert_eq!(safe_name("../etc"), "..%2Fetc");
        assert_eq!(safe_name(".."), "%2E%2E");
        assert_eq!(safe_name("."), "%2E");
        assert_eq!(safe_name(""), "%");
        assert_eq!(safe_name("a/b"), "a%2Fb");
        assert_eq!(
            safe_name("ok-1.2_x"),
            "ok-1.2_x",
            "common ids are their own name"
        );
    }

    #[test]
    fn task_ids_that_differ_only_in_slash_and_underscore_get_different_names() {
        let ids = [
            "a/b", "a_b", "a%2Fb", "a%b", "a b", "a+b", "..", "%2E%2E", ".", "", "%", "a~b",
        ];
        let names: std::collections::HashSet<String> = ids.iter().map(|i| safe_name(i)).collect();
        assert_eq!(names.len(), ids.len(), "{names:?}");
        let cg: std::collections::HashSet<String> = [("a_b", "c"), ("a", "b_c"), ("a", "b/c")]
            .iter()
            .map(|(f, t)| cgroup_name(f, t))
            .collect();
        assert_eq!(cg.len(), 3, "{cg:?}");
        assert_eq!(cgroup_name("fw-1", "t1"), "fw-1_t1");
    }

    #[test]
    fn long_ids_get_short_distinct_names() {
        let a = "\u{e9}".repeat(127); // 254 bytes, 762 encoded
        let b = format!("{}x", "\u{e9}".repeat(127));
        for id in [&a, &b] {
            let n = safe_name(id);
            assert!(n.len() <= 200, "{}", n.len());
            assert!(n.contains('~'));
        }
        assert_ne!(safe_name(&a), safe_name(&b), "same prefix, different hash");
        assert!(cgroup_name(&"f".repeat(255), &"t".repeat(255)).len() <= 200);
    }
}
