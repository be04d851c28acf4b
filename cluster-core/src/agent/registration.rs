//! The agent's registration file, `WORK_DIR/registration.json`: what this agent process was told
//! by the master, written after every successful registration and heartbeat.
//!
//! `dccore probe --agent-work-dir DIR` judges an agent on its node from this file alone: the
//! process that wrote it still runs (same pid and start time), the master acknowledged it
//! recently, and the master offers it (not deactivated or draining). That answers "is the agent
//! that runs *now* registered", which the master's `GET_AGENTS` cannot: right after an agent dies
//! the master still lists it as active until its agent timeout. It needs no operator credential.
//! The install removes the file before it starts a new agent, so a file left by a dead process
//! is never taken for a new one's.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// File name inside the agent's work dir.
pub const FILE: &str = "registration.json";

/// What the file holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The agent process.
    pub pid: u32,
    /// Its start time (`/proc/PID/stat` field 22), so that a reused pid is not taken for it.
    #[serde(default)]
    pub start_time: Option<u64>,
    /// The agent id the master gave.
    pub agent_id: String,
    /// The master it registered with.
    pub master: String,
    /// The URL it registered (the master reaches it there).
    pub url: String,
    /// When the master accepted this process's latest registration (Unix ms).
    pub registered_unix_ms: u64,
    /// When the master last answered a registration or heartbeat (Unix ms).
    pub acked_unix_ms: u64,
    /// The agent's heartbeat interval (ms): how fresh `acked_unix_ms` should be.
    pub heartbeat_interval_ms: u64,
    /// The master's view from the last heartbeat answer; `None` until the first one.
    #[serde(default)]
    pub deactivated: Option<bool>,
    /// The drain state from the last heartbeat answer (`DRAINING`/`DRAINED`), if any.
    #[serde(default)]
    pub drain: Option<String>,
}

/// The file's path in `work_dir`.
pub fn path(work_dir: &Path) -> PathBuf {
    work_dir.join(FILE)
}

/// Writes the file atomically (temp file + rename), so a reader never sees half of it.
pub fn write(work_dir: &Path, r: &Registration) -> std::io::Result<()> {
    let dest = path(work_dir);
    let tmp = work_dir.join(format!(".{FILE}.tmp"));
    let json = serde_json::to_vec(r).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, &dest)
}

/// Reads the file.
pub fn read(work_dir: &Path) -> Result<Registration, String> {
    let p = path(work_dir);
    let text = std::fs::read_to_string(&p).map_err(|e| {
        format!(
            "agent not registered: no {} ({e}); the agent has not registered since it started",
            p.display()
        )
    })?;
    serde_json::from_str(&text).map_err(|e| format!("{} is unreadable: {e}", p.display()))
}

/// How a process named by the file is doing, as seen in `/proc` now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessSeen {
    /// Running, with this start time.
    Running(u64),
    /// No such process, or a zombie.
    Gone,
}

/// The probe's verdict on an agent from its registration file, the process as seen now, and the
/// clock now (Unix ms). Pure. `Ok` with a one-line summary, `Err` saying what is missing.
pub fn verdict(r: &Registration, process: ProcessSeen, now_unix_ms: u64) -> Result<String, String> {
    match process {
        ProcessSeen::Gone => {
            return Err(format!(
                "agent process {} (which wrote the registration) is not running",
                r.pid
            ));
        }
        ProcessSeen::Running(t) if r.start_time.is_some_and(|s| s != t) => {
            return Err(format!(
                "pid {} is another process now: the agent that registered is gone",
                r.pid
            ));
        }
        ProcessSeen::Running(_) => {}
    }
    // Three heartbeats missed (at least 3 s) means the master no longer answers this agent.
    let fresh_ms = (3 * r.heartbeat_interval_ms).max(3000);
    let age = now_unix_ms.saturating_sub(r.acked_unix_ms);
    if age > fresh_ms {
        return Err(format!(
            "agent {} registered with {} but the master has not answered for {:.1} s",
            r.agent_id,
            r.master,
            age as f64 / 1000.0
        ));
    }
    if let Some(d) = &r.drain {
        return Err(format!(
            "agent {} is {d} on the master (a drain; REACTIVATE_AGENT undoes it)",
            r.agent_id
        ));
    }
    match r.deactivated {
        None => Err(format!(
            "agent {} registered; waiting for the master's first heartbeat answer",
            r.agent_id
        )),
        Some(true) => Err(format!(
            "agent {} is deactivated on the master (REACTIVATE_AGENT undoes it)",
            r.agent_id
        )),
        Some(false) => Ok(format!(
            "agent {} ({}) registered with {} and active",
            r.agent_id, r.url, r.master
        )),
    }
}

/// Unix time in ms.
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> Registration {
        Registration {
            pid: 42,
            start_time: Some(1000),
            agent_id: "a1".into(),
            master: "http://m:5050".into(),
            url: "http://a:5051".into(),
            registered_unix_ms: 10_000,
            acked_unix_ms: 20_000,
            heartbeat_interval_ms: 1000,
            deactivated: Some(false),
            drain: None,
        }
    }

    #[test]
    fn a_live_acknowledged_active_agent_passes() {
        assert!(verdict(&reg(), ProcessSeen::Running(1000), 21_000).is_ok());
    }

    #[test]
    fn a_dead_agents_registration_is_not_health() {
        let e = verdict(&reg(), ProcessSeen::Gone, 20_100).unwrap_err();
        assert!(e.contains("not running"), "{e}");
        let e = verdict(&reg(), ProcessSeen::Running(999), 20_100).unwrap_err();
        assert!(e.contains("another process"), "{e}");
    }

    #[test]
    fn a_registration_the_master_stopped_answering_is_stale() {
        let e = verdict(&reg(), ProcessSeen::Running(1000), 24_000).unwrap_err();
        assert!(e.contains("has not answered"), "{e}");
    }

    #[test]
    fn a_drained_or_deactivated_or_unconfirmed_agent_is_not_healthy() {
        let mut r = reg();
        r.drain = Some("DRAINED".into());
        assert!(
            verdict(&r, ProcessSeen::Running(1000), 20_100)
                .unwrap_err()
                .contains("DRAINED")
        );
        let mut r = reg();
        r.deactivated = Some(true);
        assert!(
            verdict(&r, ProcessSeen::Running(1000), 20_100)
                .unwrap_err()
                .contains("deactivated")
        );
        let mut r = reg();
        r.deactivated = None;
        assert!(
            verdict(&r, ProcessSeen::Running(1000), 20_100)
                .unwrap_err()
                .contains("first heartbeat")
        );
    }

    #[test]
    fn the_file_round_trips_and_is_replaced_whole() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), &reg()).unwrap();
        let mut r = reg();
        r.acked_unix_ms = 30_000;
        write(d.path(), &r).unwrap();
        assert_eq!(read(d.path()).unwrap(), r);
        assert!(
            read(&d.path().join("nope"))
                .unwrap_err()
                .contains("not registered")
        );
    }
}
