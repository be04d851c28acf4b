//! Which Unix user a task runs as on this agent, and how the agent switches to it.
//!
//! The master decides the user (`CommandInfo.user`, filled in from its rules); a task without one
//! (from a master of an older version) runs as the agent's `default_task_user`. An agent running
//! as root switches to that user; an agent that is not root cannot, and runs every task as its own
//! user (it reports that user to the master, which shows it in `GET_AGENTS` as `task_user`).
//!
//! Switching: `std`'s `CommandExt::uid/gid` change the user *before* the child changes into its
//! working directory and before the task wrapper joins the task's cgroup, so the sandbox's every
//! ancestor would have to be searchable by the task user (a work dir under a `mktemp -d` is not)
//! and cgroup limits could not be applied. So where util-linux `setpriv` exists (every Debian
//! node image has it), the wrapper stays root in the sandbox and runs the task through
//! `setpriv --reuid --regid --init-groups`; without it, `CommandExt::uid/gid` are used.
//! Users are looked up with `getpwnam_r` (nix, no unsafe code here), so NSS users work too.

use nix::unistd::{Gid, Uid, User};
use std::path::{Path, PathBuf};

/// Where `setpriv` may be.
const SETPRIV: &[&str] = &[
    "/usr/bin/setpriv",
    "/bin/setpriv",
    "/usr/sbin/setpriv",
    "/sbin/setpriv",
];

/// How this agent can run tasks.
#[derive(Clone, Debug)]
pub struct TaskUsers {
    /// The user for tasks that name none.
    default_user: String,
    /// `None` when the agent is root (it can switch); else the agent's own user name.
    own_user: Option<String>,
    /// util-linux `setpriv`, if installed.
    setpriv: Option<PathBuf>,
}

/// The user a task runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunAs {
    /// The agent's own user (no switch).
    Agent {
        /// Its name, for messages.
        name: String,
    },
    /// Another user.
    User {
        /// Name.
        name: String,
        /// Uid.
        uid: u32,
        /// Primary gid.
        gid: u32,
        /// Switch with this `setpriv`; `None`: with `CommandExt::uid/gid`.
        setpriv: Option<PathBuf>,
    },
}

impl RunAs {
    /// The user's name.
    pub fn name(&self) -> &str {
        match self {
            RunAs::Agent { name } | RunAs::User { name, .. } => name,
        }
    }
}

impl TaskUsers {
    /// Detects what this process can do.
    pub fn detect(default_user: &str) -> Self {
        let euid = nix::unistd::geteuid();
        let own_user = (!euid.is_root()).then(|| {
            User::from_uid(euid)
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_else(|| euid.to_string())
        });
        let setpriv = SETPRIV.iter().map(PathBuf::from).find(|p| p.is_file());
        if let Some(u) = &own_user {
            tracing::warn!(user = %u, "the agent is not root: every task runs as {u}, whatever user it asks for");
        }
        if own_user.is_none() && setpriv.is_none() {
            tracing::warn!(
                "setpriv (util-linux) not found: tasks switch user before entering their sandbox, so every folder above the work dir must be searchable by task users, and cgroup limits do not apply to them"
            );
        }
        TaskUsers {
            default_user: default_user.to_string(),
            own_user,
            setpriv,
        }
    }

    /// The user every task runs as when the agent is not root; `None` for a root agent.
    pub fn fixed_user(&self) -> Option<&str> {
        self.own_user.as_deref()
    }

    /// The user for a task that asks for `requested` (the master's decision).
    pub fn resolve(&self, requested: Option<&str>) -> Result<RunAs, String> {
        if let Some(own) = &self.own_user {
            return Ok(RunAs::Agent { name: own.clone() });
        }
        let name = requested
            .filter(|u| !u.is_empty())
            .unwrap_or(&self.default_user);
        let user = match User::from_name(name) {
            Ok(Some(u)) => u,
            Ok(None) => return Err(format!("there is no user {name:?} on this agent")),
            Err(e) => return Err(format!("cannot look up user {name:?}: {e}")),
        };
        if user.uid.is_root() {
            return Ok(RunAs::Agent {
                name: name.to_string(),
            });
        }
        Ok(RunAs::User {
            name: name.to_string(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            setpriv: self.setpriv.clone(),
        })
    }
}

/// Gives the sandbox folder to the task user, readable by it alone (and root). By path: callers
/// make sure no one but the agent can replace `dir` (its parent belongs to the agent).
pub fn give_dir(dir: &Path, run_as: &RunAs) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match run_as {
        RunAs::Agent { .. } => Ok(()),
        RunAs::User { uid, gid, .. } => {
            std::os::unix::fs::chown(dir, Some(*uid), Some(*gid))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        }
    }
}

/// Gives an open sandbox file (`stdout`, `stderr`) to the task user, through the file handle so
/// that no link planted by an earlier task of that id can redirect it. A file with other hard
/// links is refused: it could be any file of the system.
pub fn give_file(f: &std::fs::File, run_as: &RunAs) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if f.metadata()?.nlink() > 1 {
        return Err(std::io::Error::other(
            "sandbox file has other hard links: refusing to use it",
        ));
    }
    match run_as {
        RunAs::Agent { .. } => Ok(()),
        RunAs::User { uid, gid, .. } => std::os::unix::fs::fchown(f, Some(*uid), Some(*gid)),
    }
}

/// The command line prefix that switches to the user inside the (root) wrapper, if `setpriv` is
/// used.
pub fn setpriv_prefix(run_as: &RunAs) -> Vec<String> {
    match run_as {
        RunAs::User {
            uid,
            gid,
            setpriv: Some(p),
            ..
        } => vec![
            p.display().to_string(),
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--init-groups".into(),
            "--".into(),
        ],
        _ => Vec::new(),
    }
}

/// Uid and gid for `CommandExt::uid/gid`, when switching without `setpriv`.
pub fn std_switch(run_as: &RunAs) -> Option<(Uid, Gid)> {
    match run_as {
        RunAs::User {
            uid,
            gid,
            setpriv: None,
            ..
        } => Some((Uid::from_raw(*uid), Gid::from_raw(*gid))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_agent(setpriv: Option<&str>) -> TaskUsers {
        TaskUsers {
            default_user: "nobody".into(),
            own_user: None,
            setpriv: setpriv.map(PathBuf::from),
        }
    }

    #[test]
    fn a_root_agent_runs_tasks_as_the_requested_or_default_user() {
        let u = root_agent(Some("/usr/bin/setpriv"));
        let nobody = User::from_name("nobody").unwrap().expect("nobody exists");
        let got = u.resolve(None).unwrap();
        assert_eq!(
            got,
            RunAs::User {
                name: "nobody".into(),
                uid: nobody.uid.as_raw(),
                gid: nobody.gid.as_raw(),
                setpriv: Some("/usr/bin/setpriv".into()),
            }
        );
        assert_eq!(
            setpriv_prefix(&got)[1..],
            [
                format!("--reuid={}", nobody.uid),
                format!("--regid={}", nobody.gid),
                "--init-groups".into(),
                "--".into()
            ]
        );
        assert_eq!(std_switch(&got), None);
        assert_eq!(u.resolve(Some("")).unwrap().name(), "nobody");
        assert_eq!(
            u.resolve(Some("root")).unwrap(),
            RunAs::Agent {
                name: "root".into()
            },
            "root needs no switch"
        );
        assert!(
            u.resolve(Some("no-such-user-dccore"))
                .unwrap_err()
                .contains("no user \"no-such-user-dccore\"")
        );
    }

    #[test]
    fn without_setpriv_the_switch_is_done_by_std() {
        let u = root_agent(None);
        let got = u.resolve(Some("nobody")).unwrap();
        assert!(setpriv_prefix(&got).is_empty());
        assert!(std_switch(&got).is_some());
    }

    #[test]
    fn an_agent_that_is_not_root_runs_every_task_as_itself() {
        let u = TaskUsers {
            default_user: "nobody".into(),
            own_user: Some("dev".into()),
            setpriv: None,
        };
        assert_eq!(u.fixed_user(), Some("dev"));
        assert_eq!(
            u.resolve(Some("root")).unwrap(),
            RunAs::Agent { name: "dev".into() }
        );
    }
}
