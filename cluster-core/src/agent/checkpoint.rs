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
    /// Last known state.
    pub state: TaskState,
    /// The terminal update reached the master: nothing more to report.
    #[serde(default)]
    pub done: bool,
}

/// A file-system-safe form of an id (ids come from frameworks).
pub fn safe_name(id: &str) -> String {
    let s: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s == "." || s == ".." {
        format!("_{s}")
    } else {
        s
    }
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
        crate::util::atomic_write(&path, &bytes)
            .map_err(|source| CheckpointError::Io { path, source })
    }

    /// Stores a task's checkpoint.
    pub fn save_task(&self, t: &TaskCheckpoint) -> Result<(), CheckpointError> {
        let path = self.task_file(&t.framework_id.value, &t.task.task_id.value);
        let bytes = serde_json::to_vec_pretty(t).expect("invariant: plain JSON");
        crate::util::atomic_write(&path, &bytes)
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
        assert_eq!(safe_name("../etc"), ".._etc");
        assert_eq!(safe_name(".."), "_..");
        assert_eq!(safe_name("a/b"), "a_b");
        assert_eq!(safe_name("ok-1.2_x"), "ok-1.2_x");
    }
}
