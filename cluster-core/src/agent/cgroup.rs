//! cgroups v2 limits for tasks, where the host offers them: each task gets a leaf cgroup
//! `BASE/dccore/<framework>_<task>` with `cpu.max` and `memory.max` from its resources, and the
//! task's wrapper shell moves itself into it before it runs the task. Where cgroups v2 with the
//! cpu and memory controllers is not available or not writable (cgroup v1 hosts, unprivileged
//! containers), tasks run without limits and resources are only accounted by the allocator.

use crate::proto::Resources;
use std::path::{Path, PathBuf};

/// The default cgroup v2 mount point.
pub const DEFAULT_BASE: &str = "/sys/fs/cgroup";
/// CFS period used for `cpu.max`.
const PERIOD_US: u64 = 100_000;

/// The agent's cgroup subtree.
#[derive(Clone, Debug)]
pub struct Cgroups {
    root: PathBuf,
}

impl Cgroups {
    /// Sets up `BASE/dccore` with the cpu and memory controllers delegated to it; `None` (with
    /// the reason logged) where that is not possible.
    pub fn detect(base: &Path) -> Option<Self> {
        let why = match Self::setup(base) {
            Ok(c) => return Some(c),
            Err(why) => why,
        };
        tracing::info!(base = %base.display(), %why, "cgroups v2 limits unavailable: tasks run without limits (resources are accounted only)");
        None
    }

    fn setup(base: &Path) -> Result<Self, String> {
        let controllers = std::fs::read_to_string(base.join("cgroup.controllers"))
            .map_err(|e| format!("no cgroup v2 hierarchy ({e})"))?;
        let have: Vec<&str> = controllers.split_whitespace().collect();
        for c in ["cpu", "memory"] {
            if !have.contains(&c) {
                return Err(format!("controller {c} not available"));
            }
        }
        let enable = |dir: &Path| {
            std::fs::write(dir.join("cgroup.subtree_control"), "+cpu +memory")
                .map_err(|e| format!("cannot enable controllers in {}: {e}", dir.display()))
        };
        enable(base)?;
        let root = base.join("dccore");
        std::fs::create_dir_all(&root)
            .map_err(|e| format!("cannot create {}: {e}", root.display()))?;
        enable(&root)?;
        Ok(Cgroups { root })
    }

    /// The directory of the task cgroup `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Creates the task's cgroup with its limits; returns its directory.
    pub fn create(&self, name: &str, res: &Resources) -> std::io::Result<PathBuf> {
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir)?;
        if res.mem > 0.0 {
            let bytes = (res.mem * 1024.0 * 1024.0) as u64;
            std::fs::write(dir.join("memory.max"), bytes.to_string())?;
        }
        if res.cpus > 0.0 {
            let quota = ((res.cpus * PERIOD_US as f64) as u64).max(1000);
            std::fs::write(dir.join("cpu.max"), format!("{quota} {PERIOD_US}"))?;
        }
        Ok(dir)
    }

    /// Removes a task's (empty) cgroup; errors are ignored (a busy cgroup stays until reboot).
    pub fn remove(dir: &Path) {
        let _ = std::fs::remove_dir(dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_written_from_the_task_resources() {
        let base = tempfile::tempdir().unwrap();
        std::fs::write(
            base.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        let cg = Cgroups::detect(base.path()).expect("fake v2 hierarchy is usable");
        assert_eq!(
            std::fs::read_to_string(base.path().join("cgroup.subtree_control")).unwrap(),
            "+cpu +memory"
        );
        let dir = cg.create("fw_t1", &Resources::new(0.5, 64.0, 0.0)).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("cpu.max")).unwrap(),
            "50000 100000"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("memory.max")).unwrap(),
            "67108864"
        );
    }

    #[test]
    fn hosts_without_the_controllers_get_no_limits() {
        let base = tempfile::tempdir().unwrap();
        assert!(
            Cgroups::detect(base.path()).is_none(),
            "no cgroup.controllers: v1 host"
        );
        std::fs::write(base.path().join("cgroup.controllers"), "pids\n").unwrap();
        assert!(Cgroups::detect(base.path()).is_none());
    }
}
