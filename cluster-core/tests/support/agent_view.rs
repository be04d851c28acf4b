//! What the agents themselves say about tasks, read from their work dirs: the checkpoints
//! (state, pid and the pid's start time) and a launch marker each test task writes when its
//! command starts (`echo $$ >> "$MESOS_SANDBOX/launches"`, see [`LAUNCH_MARKER`]). So a test can
//! check that no task runs twice, or runs where the master does not say it does. And a
//! [`Reaper`] that kills what is left running when the test ends.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The start of a test task's command that leaves one line per start in its sandbox.
pub const LAUNCH_MARKER: &str = "echo $$ >> \"$MESOS_SANDBOX/launches\"";

/// One agent's record of a task.
#[derive(Clone, Debug)]
pub struct OnAgent {
    /// Index of its work dir among those given.
    pub agent: usize,
    /// The state its checkpoint records.
    pub state: String,
    /// The task's process still runs (its pid has the start time the checkpoint recorded).
    pub live: bool,
    /// Lines in the task's `launches` file: how many times its command started there.
    pub launches: usize,
}

/// Every task of `framework_id` that any agent's work dir knows of.
pub fn agents_view(dirs: &[PathBuf], framework_id: &str) -> BTreeMap<String, Vec<OnAgent>> {
    let fw = dccore::agent::safe_name(framework_id);
    let mut out: BTreeMap<String, Vec<OnAgent>> = BTreeMap::new();
    for (i, dir) in dirs.iter().enumerate() {
        let Ok(files) = std::fs::read_dir(dir.join("checkpoints/tasks").join(&fw)) else {
            continue;
        };
        for f in files.flatten() {
            let Ok(text) = std::fs::read_to_string(f.path()) else {
                continue;
            };
            let Ok(cp) = serde_json::from_str::<Value>(&text) else {
                continue; // being replaced (atomic rename): read again on the next round
            };
            let id = cp["task"]["task_id"]["value"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let live = match (cp["pid"].as_u64(), cp["start_time"].as_u64()) {
                (Some(pid), Some(t)) => dccore::proc::running_start_time(pid as u32) == Some(t),
                _ => false,
            };
            let launches = std::fs::read_to_string(
                dir.join("sandboxes")
                    .join(&fw)
                    .join(dccore::agent::safe_name(&id))
                    .join("launches"),
            )
            .map(|t| t.lines().count())
            .unwrap_or(0);
            out.entry(id).or_default().push(OnAgent {
                agent: i,
                state: cp["state"].as_str().unwrap_or_default().to_string(),
                live,
                launches,
            });
        }
    }
    out
}

/// Kills the process groups of the tasks still running under the agents' work dirs when the
/// test ends (also when it fails), so no `sleep 600` outlives it.
pub struct Reaper(pub Vec<PathBuf>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for dir in &self.0 {
            let Ok(fws) = std::fs::read_dir(dir.join("checkpoints/tasks")) else {
                continue;
            };
            for f in fws
                .flatten()
                .filter_map(|fw| std::fs::read_dir(fw.path()).ok())
            {
                for cp in f.flatten() {
                    let Some(cp) = std::fs::read_to_string(cp.path())
                        .ok()
                        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                    else {
                        continue;
                    };
                    if let (Some(pid), Some(t)) = (cp["pid"].as_u64(), cp["start_time"].as_u64())
                        && dccore::proc::running_start_time(pid as u32) == Some(t)
                    {
                        let _ = nix::sys::signal::killpg(
                            nix::unistd::Pid::from_raw(pid as i32),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
        }
    }
}
