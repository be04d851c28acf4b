//! What only this master process knows: times and credentials that are not cluster state (a
//! new leader starts without them, as after a restart).

use super::tables::TaskKey;
use std::collections::{HashMap, HashSet};
use tokio::time::Instant;

/// What only this master process knows: times and credentials that are not cluster state.
#[derive(Default)]
pub(super) struct Local {
    /// Agent id -> its last heartbeat (or registration).
    pub last_seen: HashMap<String, Instant>,
    /// Agent id -> when a silent agent was last probed at its URL (one probe per
    /// `agent_probe_after`).
    pub probed: HashMap<String, Instant>,
    /// Task -> when the head of its pending updates was last sent, and how many times it has
    /// been sent (the resend interval doubles with each: see `delivery.rs`).
    pub last_sent: HashMap<TaskKey, (Instant, u32)>,
    /// Agent URL -> the bearer token that agent run asked to be called with (never persisted:
    /// a restarted agent sends a new one when it registers again).
    pub agent_call_tokens: HashMap<String, String>,
    /// Agents that registered with this master process: only they are heartbeated and heard
    /// (a new leader's agents must register with it first, so it has their call tokens).
    pub registered_here: HashSet<String>,
}
