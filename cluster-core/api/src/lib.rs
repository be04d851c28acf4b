//! `dccore-api`: what a client needs to talk to a dccore master, shared by the server (`dccore`)
//! and its clients (`dcform`), so that a field renamed on one side breaks the other's build
//! instead of a user's cluster. No server code and no HTTP framework live here.
//!
//! ```text
//!  dcform (status, task list/logs) ─┐                         ┌─ dccore master: api::operator
//!  dccore probe / drain / reactivate ┴─▶ client::OperatorClient ─POST /api/v1─▶ answers built from
//!                                        operator::Call ──────▶   operator::Response (the same types)
//!                                        tls::Tls (CA, client certificate) ─ HTTPS ─┘
//! ```
//!
//! * [`proto`]: Mesos v1 JSON wire types (`mesos.proto`, `scheduler.proto`), the agent ↔ master
//!   messages, RecordIO framing, and the `--resources` / `--attributes` syntax
//!   ([`proto::Resources::parse`], [`proto::parse_attributes`]) that dcform validates with too.
//! * [`operator`]: the operator API (`master.proto`): [`operator::Call`] and the typed
//!   [`operator::Response`] of GET_HEALTH, GET_AGENTS, GET_FRAMEWORKS, GET_TASKS, GET_STATE.
//! * [`allocation`]: dccore's `GET_ALLOCATION` answer and the reasons an agent or framework got
//!   no offer (defined once here; the master's allocator produces them).
//! * [`marathon`]: Marathon app definitions ([`marathon::App`]), validated by the one parser
//!   that both the master's `/v2/apps` and `dcform validate` use.
//! * [`client`]: [`client::OperatorClient`] and the pure verdicts of `probe`, `drain` and
//!   `reactivate` over typed answers.
//! * [`tls`]: a node's TLS material (certificate and key, CA bundle) and the rustls
//!   configurations built from it; the server side that accepts connections stays in dccore.

#![warn(missing_docs)]

pub mod allocation;
pub mod client;
pub mod marathon;
pub mod operator;
pub mod proto;
pub mod tls;

pub use client::{ClientError, OperatorClient};

/// The Mesos version whose v1 API dccore speaks (reported at `GET /version` and in SUBSCRIBED,
/// as framework libraries such as pymesos use it to pick features).
pub const MESOS_COMPAT_VERSION: &str = "1.11.0";
