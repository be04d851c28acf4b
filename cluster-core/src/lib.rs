//! `dccore`: the cluster core that dcform installs on every node, one binary with two roles.
//!
//! ```text
//!  framework ──SUBSCRIBE/ACCEPT/...──▶ api::scheduler ─┐            ┌─▶ allocator (pure DRF)
//!  operator  ──GET_STATE/...───────▶ api::operator  ──┼─▶ master ───┤   offers ◀─┘
//!  agent     ──register/heartbeat/status─▶ api::internal┘ (one task) └─▶ launch/kill ──▶ agent ──▶ sandbox processes
//! ```
//!
//! * [`proto`]: Mesos v1 JSON wire types and RecordIO framing (re-exported from `dccore-api`).
//! * [`allocator`]: weighted DRF over agents and frameworks; no I/O, no clock (takes `now`).
//! * [`master`]: the master's state, owned by one task fed by a command channel; persistent registry.
//! * [`acl`]: access rules in Mesos' ACL JSON and their evaluation (pure).
//! * [`api`]: the master's HTTP routes (scheduler, operator, agent-internal, metrics) and authentication.
//! * [`agent`]: registers with the master, runs tasks in per-task sandboxes, checkpoints them, serves files.
//! * [`tls`]: serving HTTPS (master, agent) and who a peer is by its certificate's SAN URI
//!   (`urn:dcform:agent:NODE`, `urn:dcform:master:NODE`); the TLS material and every client's
//!   set-up come from [`dccore_api::tls`].
//! * [`replica`]: the masters' replicated log (openraft) and state machine over the master's
//!   tables, stored in redb; Raft RPCs between masters over HTTP(S).
//! * [`discovery`]: service discovery from the master's own state: DNS (hickory-server, UDP and
//!   TCP) and `GET /v1/services`, pushed on every task change.
//! * [`proc`]: what `/proc` says about a pid (running or zombie, start time).
//! * [`services`]: the built-in Marathon-compatible services framework (apps, instances, health).
//! * [`supervise`]: a minimal process supervisor for hosts without systemd.
//!
//! What a client needs (wire types, [`dccore_api::operator`] calls and answers,
//! [`dccore_api::client::OperatorClient`] behind `dccore probe`, `drain` and `reactivate`) lives
//! in the small `dccore-api` crate (`cluster-core/api`), which dcform builds on too: a field
//! renamed here breaks dcform's build, not a user's cluster.

#![warn(missing_docs)]

pub mod acl;
pub mod agent;
pub mod allocator;
pub mod api;
mod atomic_file;
pub mod auth;
pub mod discovery;
pub mod master;
pub mod proc;
pub mod replica;
pub mod services;
pub mod supervise;
pub mod tls;

// Every `crate::proto::...` and `dccore::proto::...` path keeps working.
pub use dccore_api::MESOS_COMPAT_VERSION;
pub use dccore_api::proto;

/// The version reported by `dccore --version` and recorded by dcform in its state.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
