//! `dccore`: the cluster core that dcform installs on every node, one binary with two roles.
//!
//! ```text
//!  framework ──SUBSCRIBE/ACCEPT/...──▶ api::scheduler ─┐            ┌─▶ allocator (pure DRF)
//!  operator  ──GET_STATE/...───────▶ api::operator  ──┼─▶ master ───┤   offers ◀─┘
//!  agent     ──register/heartbeat/status─▶ api::internal┘ (one task) └─▶ launch/kill ──▶ agent ──▶ sandbox processes
//! ```
//!
//! * [`proto`]: Mesos v1 JSON wire types and RecordIO framing.
//! * [`allocator`]: weighted DRF over agents and frameworks; no I/O, no clock (takes `now`).
//! * [`master`]: the master's state, owned by one task fed by a command channel; persistent registry.
//! * [`acl`]: access rules in Mesos' ACL JSON and their evaluation (pure).
//! * [`api`]: the master's HTTP routes (scheduler, operator, agent-internal, metrics) and authentication.
//! * [`agent`]: registers with the master, runs tasks in per-task sandboxes, checkpoints them, serves files.
//! * [`client`]: operator client behind `dccore probe` and `dccore drain` (what dcform runs on nodes).
//! * [`tls`]: HTTPS for both servers and every client (rustls, ring); who a peer is by its
//!   certificate's SAN URI (`urn:dcform:agent:NODE`, `urn:dcform:master:NODE`).
//! * [`proc`]: what `/proc` says about a pid (running or zombie, start time).
//! * [`supervise`]: a minimal process supervisor for hosts without systemd.

#![warn(missing_docs)]

pub mod acl;
pub mod agent;
pub mod allocator;
pub mod api;
mod atomic_file;
pub mod auth;
pub mod client;
pub mod master;
pub mod proc;
pub mod proto;
pub mod supervise;
pub mod tls;

/// The version reported by `dccore --version` and recorded by dcform in its state.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The Mesos version whose v1 API dccore speaks (reported at `GET /version`, as framework libraries
/// such as pymesos use it to pick features).
pub const MESOS_COMPAT_VERSION: &str = "1.11.0";
